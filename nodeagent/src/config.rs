//! The agent's settings as a plain struct. `main.rs` builds it from flags;
//! library code never reads the environment or argv, and tests build it
//! directly.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use crate::{
    backend::{BackendKind, HollowOptions},
    helper::{Helper, StatisticFn},
};

/// Everything the agent needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The node this agent runs on.
    pub node_name: String,
    /// The kubeconfig; `None` for the in-cluster configuration.
    pub kubeconfig: Option<PathBuf>,
    /// Labels for the NodeNetworkState (standalone nodes; in a cluster the
    /// Node object's labels are added).
    pub node_labels: BTreeMap<String, String>,
    /// The backend.
    pub backend: BackendKind,
    /// How long an uncommitted apply lives before it rolls back by itself.
    pub checkpoint_timeout: Duration,
    /// Timeout of each probe.
    pub probe_timeout: Duration,
    /// The name the DNS probe resolves.
    pub dns_probe_host: String,
    /// Full state re-read period.
    pub resync: Duration,
    /// The `Ready` heartbeat is renewed when older than this.
    pub ready_interval: Duration,
    /// Where `/healthz` and `/metrics` are served; `None` serves nothing
    /// (many hollow agents in one process, which has no kubelet probing
    /// it).
    pub health_address: Option<SocketAddr>,
    /// Options of the hollow backend.
    pub hollow: HollowOptions,
    /// Kernel backend: the snapshot file that lets a restarted agent roll
    /// back an apply its predecessor left open (`None`: in memory only).
    pub kernel_snapshot_file: Option<PathBuf>,
    /// The nmstate helper: reads and applies for the `nm` and `kernel`
    /// backends, and nmstate's statistic of each apply.
    pub helper: Helper,
    /// nmstate's statistic computed in this process instead of by the
    /// helper (the hollow fleet).
    pub in_process_statistic: Option<StatisticFn>,
}

impl Config {
    /// A configuration with the flags' defaults for node `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            kubeconfig: None,
            node_labels: BTreeMap::new(),
            backend: BackendKind::Nm,
            checkpoint_timeout: Duration::from_secs(480),
            probe_timeout: Duration::from_secs(120),
            dns_probe_host: "root-servers.net".to_owned(),
            resync: Duration::from_secs(300),
            ready_interval: Duration::from_secs(60),
            health_address: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            hollow: HollowOptions::default(),
            kernel_snapshot_file: None,
            helper: Helper::default(),
            in_process_statistic: None,
        }
    }
}

/// Parses `k=v,k2=v2` (`k=` gives an empty value, as Kubernetes' role
/// labels); keys and values are checked as Kubernetes label keys and values.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("{pair:?} is not key=value"));
        };
        let errors = nmstate_openapi::validation::names::is_qualified_name(key);
        if !errors.is_empty() {
            return Err(format!("label key {key:?}: {}", errors.join("; ")));
        }
        let errors = nmstate_openapi::validation::names::is_valid_label_value(value);
        if !errors.is_empty() {
            return Err(format!("label value {value:?}: {}", errors.join("; ")));
        }
        labels.insert(key.to_owned(), value.to_owned());
    }
    Ok(labels)
}

/// Parses `30s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => value.split_at(at),
        None => (value, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration such as 30s, 500ms, 2m or 1h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(number.saturating_mul(3600))),
        _ => Err(format!(
            "{value:?} has unknown unit {unit:?} (use ms, s, m or h)"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("480s", Ok(Duration::from_secs(480))),
            ("5m", Ok(Duration::from_secs(300))),
            ("500ms", Ok(Duration::from_millis(500))),
            ("1h", Ok(Duration::from_secs(3600))),
            ("7", Ok(Duration::from_secs(7))),
            (
                "5d",
                Err(r#""5d" has unknown unit "d" (use ms, s, m or h)"#.to_owned()),
            ),
            (
                "m",
                Err(r#""m" is not a duration such as 30s, 500ms, 2m or 1h"#.to_owned()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_duration(input), expected, "{input}");
        }
    }

    #[test]
    fn labels() {
        assert_eq!(
            parse_labels("kubernetes.io/hostname=node-1, node-role.kubernetes.io/worker="),
            Ok(BTreeMap::from([
                ("kubernetes.io/hostname".to_owned(), "node-1".to_owned()),
                ("node-role.kubernetes.io/worker".to_owned(), String::new()),
            ]))
        );
        assert_eq!(parse_labels(""), Ok(BTreeMap::new()));
        assert_eq!(
            parse_labels("novalue"),
            Err(r#""novalue" is not key=value"#.to_owned())
        );
        assert!(
            parse_labels("bad key=x")
                .unwrap_err()
                .starts_with("label key")
        );
        assert!(
            parse_labels("k=bad value")
                .unwrap_err()
                .starts_with("label value")
        );
    }
}
