//! `/healthz`, `/livez` and `/readyz`, answered as Kubernetes' own servers
//! do: `ok` when every check passes, `?verbose` lists the checks, and
//! `/readyz/<check>` runs one check.
//!
//! Liveness only says the process serves requests: restarting the server
//! would not bring a lost store back. Readiness adds the store and turns
//! false as soon as shutdown starts, so load balancers stop sending traffic
//! before the listener closes.

use std::time::Duration;

use http::StatusCode;

use crate::state::AppState;

/// How long the store check may take before readiness fails.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Which endpoint is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Healthz,
    Livez,
    Readyz,
}

impl Endpoint {
    /// The endpoint for a path and the single check asked for, if any
    /// (`/readyz/storage` → `(Readyz, Some("storage"))`).
    pub(crate) fn parse(path: &str) -> Option<(Endpoint, Option<&str>)> {
        let path = path.strip_prefix('/')?;
        let (name, check) = match path.split_once('/') {
            Some((name, check)) => (name, Some(check)),
            None => (path, None),
        };
        let endpoint = match name {
            "healthz" => Endpoint::Healthz,
            "livez" => Endpoint::Livez,
            "readyz" => Endpoint::Readyz,
            _ => return None,
        };
        Some((endpoint, check))
    }

    fn name(self) -> &'static str {
        match self {
            Endpoint::Healthz => "healthz",
            Endpoint::Livez => "livez",
            Endpoint::Readyz => "readyz",
        }
    }

    fn checks(self) -> &'static [Check] {
        match self {
            Endpoint::Livez => &[Check::Ping],
            Endpoint::Healthz | Endpoint::Readyz => {
                &[Check::Ping, Check::Storage, Check::Cache, Check::ShutDown]
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Ping,
    Storage,
    /// The watch caches have finished their first list (lists and watches
    /// are served from them).
    Cache,
    ShutDown,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::Ping => "ping",
            Check::Storage => "storage",
            Check::Cache => "watch-cache",
            Check::ShutDown => "shutdown",
        }
    }

    /// `Err` carries the reason, logged on the server; like Kubernetes, the
    /// response only says "reason withheld".
    async fn run(self, state: &AppState) -> Result<(), String> {
        match self {
            Check::Ping => Ok(()),
            Check::Storage => {
                match tokio::time::timeout(STORE_CHECK_TIMEOUT, state.store.current_revision())
                    .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {STORE_CHECK_TIMEOUT:?}")),
                }
            }
            Check::Cache => {
                if state.caches.all_ready() {
                    Ok(())
                } else {
                    Err("a watch cache has not finished its first list".to_string())
                }
            }
            Check::ShutDown => {
                if state.shutting_down() {
                    Err("server is shutting down".to_string())
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Runs the checks of `endpoint` (or the one named `only`) and renders the
/// answer: status code and plain-text body.
pub(crate) async fn respond(
    state: &AppState,
    endpoint: Endpoint,
    only: Option<&str>,
    verbose: bool,
) -> (StatusCode, String) {
    let checks: Vec<Check> = match only {
        None => endpoint.checks().to_vec(),
        Some(name) => match endpoint.checks().iter().find(|c| c.name() == name) {
            Some(check) => vec![*check],
            None => return (StatusCode::NOT_FOUND, format!("no such check {name:?}\n")),
        },
    };
    let mut lines = String::new();
    let mut failed = false;
    for check in checks {
        match check.run(state).await {
            Ok(()) => lines.push_str(&format!("[+]{} ok\n", check.name())),
            Err(reason) => {
                failed = true;
                tracing::warn!(endpoint = endpoint.name(), check = check.name(), %reason, "health check failed");
                lines.push_str(&format!("[-]{} failed: reason withheld\n", check.name()));
            }
        }
    }
    if failed {
        lines.push_str(&format!("{} check failed\n", endpoint.name()));
        (StatusCode::INTERNAL_SERVER_ERROR, lines)
    } else if verbose {
        lines.push_str(&format!("{} check passed\n", endpoint.name()));
        (StatusCode::OK, lines)
    } else {
        (StatusCode::OK, "ok".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(Endpoint::parse("/readyz"), Some((Endpoint::Readyz, None)));
        assert_eq!(Endpoint::parse("/livez"), Some((Endpoint::Livez, None)));
        assert_eq!(
            Endpoint::parse("/readyz/storage"),
            Some((Endpoint::Readyz, Some("storage")))
        );
        assert_eq!(Endpoint::parse("/apis"), None);
    }
}
