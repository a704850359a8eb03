//! Checks run after an apply and before its commit: if one fails, the
//! change is rolled back, so a policy cannot cut the node off.
//!
//! Each probe first says, from the state before the apply, whether it
//! applies at all (upstream skips the default-gateway probe when there is no
//! default route or the gateway did not answer before the apply), then
//! checks the state after the apply, within its own timeout.
//!
//! Built here: the API-server probe (a GET `/version` through the agent's
//! own client), which every backend runs. The default-gateway (ICMP) and
//! DNS probes need a real network and are not built yet; the hollow backend
//! would skip them anyway ([`crate::backend::BackendKind::is_simulated`]).

use std::{fmt::Debug, time::Duration};

use async_trait::async_trait;
use nmstate_openapi::State;

/// One post-apply check.
#[async_trait]
pub trait Probe: Send + Sync + Debug {
    /// A short name for logs and failure messages.
    fn name(&self) -> &'static str;

    /// Whether the probe applies to this apply, judged on the state before
    /// it (and, for reachability probes, on whether the target answered
    /// then).
    async fn applies(&self, _before: &State) -> bool {
        true
    }

    /// Checks the node after the apply. The message says what failed.
    async fn check(&self, after: &State) -> Result<(), String>;
}

/// The API server answers a GET `/version` through the agent's client.
#[derive(Clone)]
pub struct ApiServerProbe {
    client: kube::Client,
    timeout: Duration,
}

impl Debug for ApiServerProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServerProbe")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ApiServerProbe {
    /// A probe through `client` that fails after `timeout`.
    pub fn new(client: kube::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }
}

#[async_trait]
impl Probe for ApiServerProbe {
    fn name(&self) -> &'static str {
        "api-server"
    }

    async fn check(&self, _after: &State) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.client.apiserver_version()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("the API server is not reachable: {error}")),
            Err(_) => Err(format!(
                "the API server did not answer within {:?}",
                self.timeout
            )),
        }
    }
}

/// Runs every probe that applies, in order, and returns the first failure
/// as `probe <name> failed: <message>`.
pub async fn run_all(
    probes: &[Box<dyn Probe>],
    applicable: &[bool],
    after: &State,
) -> Result<(), String> {
    for (probe, applies) in probes.iter().zip(applicable) {
        if !applies {
            tracing::debug!(probe = probe.name(), "probe skipped");
            continue;
        }
        probe
            .check(after)
            .await
            .map_err(|message| format!("probe {} failed: {message}", probe.name()))?;
    }
    Ok(())
}

/// Which of `probes` apply to an apply starting from `before`.
pub async fn applicable(probes: &[Box<dyn Probe>], before: &State) -> Vec<bool> {
    let mut result = Vec::with_capacity(probes.len());
    for probe in probes {
        result.push(probe.applies(before).await);
    }
    result
}
