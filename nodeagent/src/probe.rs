//! Checks run after an apply and before its commit: if one fails, the
//! change is rolled back, so a policy cannot cut the node off.
//!
//! Each probe first says, from the state before the apply, whether it
//! applies at all (upstream skips the default-gateway probe when there is no
//! default route or the gateway did not answer before the apply), then
//! checks the state after the apply, within its own timeout.
//!
//! - [`ApiServerProbe`]: a GET `/version` through the agent's own client
//!   (every backend); any answer passes, an error status too (a busy
//!   server's 429 still came over the network);
//! - [`GatewayProbe`]: an ICMP echo to the next hop of the main table's
//!   default route, sent over that route's interface; it applies only when
//!   the gateway answered before the apply (as upstream);
//! - [`DnsProbe`]: resolving a name through each running name server; it
//!   applies only when that worked before the apply. One answering server
//!   is enough.
//!
//! The hollow backend's network is simulated, so it runs only the API-server
//! probe ([`for_backend`]).

use std::{fmt::Debug, net::IpAddr, time::Duration};

use async_trait::async_trait;
use nmstate_openapi::State;
use serde_json::Value;

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
            Ok(answer) => reached(answer.map(drop)),
            Err(_) => Err(format!(
                "the API server did not answer within {:?}",
                self.timeout
            )),
        }
    }
}

/// Whether the API server was reached, from what the agent's request got.
/// Any answer counts, an error `Status` too: a busy server's 429 (its
/// priority level had no room), a 403 or a 503 all came over the network
/// the probe is about. Rolling a node back because the API server was busy
/// would blame the policy for the server's load. Only no answer at all
/// (no connection, TLS failed, the connection cut) fails the probe.
fn reached(answer: Result<(), kube::Error>) -> Result<(), String> {
    match answer {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(status)) => {
            tracing::debug!(
                code = status.code,
                "the API server answered the probe with an error"
            );
            Ok(())
        }
        Err(error) => Err(format!("the API server is not reachable: {error}")),
    }
}

/// The probes for a backend: all three for a real network, the API-server
/// probe alone for a simulated one.
pub fn for_backend(
    simulated: bool,
    client: &kube::Client,
    timeout: Duration,
    dns_probe_host: &str,
) -> Vec<Box<dyn Probe>> {
    let api: Box<dyn Probe> = Box::new(ApiServerProbe::new(client.clone(), timeout));
    if simulated {
        return vec![api];
    }
    vec![
        Box::new(GatewayProbe::new(timeout)),
        Box::new(DnsProbe::new(dns_probe_host, timeout)),
        api,
    ]
}

/// The default gateway of a state: the next hop and interface of the
/// running IPv4 default route in the main table (IPv6 if there is no IPv4
/// one), lowest metric first.
pub fn default_gateway(state: &State) -> Option<(IpAddr, String)> {
    let routes = state.0["routes"]["running"].as_array()?;
    let main_table = |route: &&Value| {
        route["table-id"]
            .as_u64()
            .is_none_or(|table| table == 0 || table == 254)
    };
    for destination in ["0.0.0.0/0", "::/0"] {
        let best = routes
            .iter()
            .filter(|route| route["destination"] == destination)
            .filter(main_table)
            .filter_map(|route| {
                let hop: IpAddr = route["next-hop-address"].as_str()?.parse().ok()?;
                let interface = route["next-hop-interface"].as_str()?.to_owned();
                (!hop.is_unspecified()).then_some((
                    route["metric"].as_u64().unwrap_or(0),
                    hop,
                    interface,
                ))
            })
            .min_by_key(|(metric, _, _)| *metric);
        if let Some((_, hop, interface)) = best {
            return Some((hop, interface));
        }
    }
    None
}

/// The running name servers of a state.
pub fn name_servers(state: &State) -> Vec<IpAddr> {
    state.0["dns-resolver"]["running"]["server"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|server| server.as_str()?.split('%').next()?.parse().ok())
        .collect()
}

/// ICMP echo to the default gateway over its interface.
#[derive(Clone, Debug)]
pub struct GatewayProbe {
    timeout: Duration,
}

impl GatewayProbe {
    /// A probe that waits at most `timeout` for an answer.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// Pings `gateway` over `interface` until it answers or the probe's
    /// timeout passes (one echo a second).
    pub async fn ping(&self, gateway: IpAddr, interface: &str) -> Result<(), String> {
        self.ping_within(gateway, interface, self.timeout).await
    }

    async fn ping_within(
        &self,
        gateway: IpAddr,
        interface: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence};
        let kind = if gateway.is_ipv4() {
            ICMP::V4
        } else {
            ICMP::V6
        };
        let config = Config::builder().kind(kind).interface(interface).build();
        let client = Client::new(&config)
            .map_err(|error| format!("opening an ICMP socket on {interface}: {error}"))?;
        let mut pinger = client
            .pinger(gateway, PingIdentifier(std::process::id() as u16))
            .await;
        pinger.timeout(Duration::from_secs(1).min(timeout));
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_error = String::new();
        for sequence in 0u16.. {
            match pinger.ping(PingSequence(sequence), &[0; 8]).await {
                Ok(_) => return Ok(()),
                Err(error) => last_error = error.to_string(),
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep_until(
                (tokio::time::Instant::now() + Duration::from_millis(200)).min(deadline),
            )
            .await;
        }
        Err(format!(
            "the default gateway {gateway} did not answer on {interface} within {timeout:?}: {last_error}"
        ))
    }
}

#[async_trait]
impl Probe for GatewayProbe {
    fn name(&self) -> &'static str {
        "default-gateway"
    }

    async fn applies(&self, before: &State) -> bool {
        match default_gateway(before) {
            Some((gateway, interface)) => self
                .ping_within(gateway, &interface, precheck(self.timeout))
                .await
                .is_ok(),
            None => false,
        }
    }

    async fn check(&self, after: &State) -> Result<(), String> {
        let (gateway, interface) =
            default_gateway(after).ok_or_else(|| "the default route is gone".to_owned())?;
        self.ping(gateway, &interface).await
    }
}

/// Resolves a name through each running name server.
#[derive(Clone, Debug)]
pub struct DnsProbe {
    host: String,
    timeout: Duration,
}

impl DnsProbe {
    /// A probe resolving `host`, waiting at most `timeout` per server.
    pub fn new(host: &str, timeout: Duration) -> Self {
        Self {
            host: host.to_owned(),
            timeout,
        }
    }

    /// Resolves the host through `server` (port 53, UDP then TCP) within
    /// the probe's timeout.
    pub async fn resolve_through(&self, server: IpAddr) -> Result<(), String> {
        self.resolve_within(server, self.timeout).await
    }

    async fn resolve_within(&self, server: IpAddr, timeout: Duration) -> Result<(), String> {
        use hickory_resolver::{
            Resolver,
            config::{NameServerConfigGroup, ResolverConfig},
            name_server::TokioConnectionProvider,
        };
        let servers = NameServerConfigGroup::from_ips_clear(&[server], 53, true);
        let config = ResolverConfig::from_parts(None, vec![], servers);
        let mut builder = Resolver::builder_with_config(config, TokioConnectionProvider::default());
        let options = builder.options_mut();
        options.timeout = timeout;
        options.attempts = 1;
        options.cache_size = 0;
        let resolver = builder.build();
        match tokio::time::timeout(timeout, resolver.lookup_ip(self.host.as_str())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("{server}: {error}")),
            Err(_) => Err(format!("{server}: no answer within {timeout:?}")),
        }
    }

    async fn resolve_any(&self, servers: &[IpAddr], timeout: Duration) -> Result<(), String> {
        let mut errors = Vec::new();
        for server in servers {
            match self.resolve_within(*server, timeout).await {
                Ok(()) => return Ok(()),
                Err(error) => errors.push(error),
            }
        }
        Err(format!(
            "resolving {} failed through every name server: {}",
            self.host,
            errors.join("; ")
        ))
    }
}

#[async_trait]
impl Probe for DnsProbe {
    fn name(&self) -> &'static str {
        "dns"
    }

    async fn applies(&self, before: &State) -> bool {
        let servers = name_servers(before);
        !servers.is_empty()
            && self
                .resolve_any(&servers, precheck(self.timeout))
                .await
                .is_ok()
    }

    async fn check(&self, after: &State) -> Result<(), String> {
        let servers = name_servers(after);
        if servers.is_empty() {
            return Err("no name server is running any more".to_owned());
        }
        self.resolve_any(&servers, self.timeout).await
    }
}

/// How long the check before an apply may wait: it only decides whether a
/// probe applies (did the gateway answer, did DNS work), so an unreachable
/// gateway or name server must not hold every apply for the whole probe
/// timeout.
const PRECHECK_TIMEOUT: Duration = Duration::from_secs(5);

fn precheck(timeout: Duration) -> Duration {
    timeout.min(PRECHECK_TIMEOUT)
}

/// The first probe that failed: its index among the probes, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The probe's index in the list the probes ran from.
    pub probe: usize,
    /// `probe <name> failed: <message>`.
    pub message: String,
}

/// Runs every probe that applies, in order, and returns the first failure.
pub async fn run_all(
    probes: &[Box<dyn Probe>],
    applicable: &[bool],
    after: &State,
) -> Result<(), Failure> {
    for (index, (probe, applies)) in probes.iter().zip(applicable).enumerate() {
        if !applies {
            tracing::debug!(probe = probe.name(), "probe skipped");
            continue;
        }
        probe.check(after).await.map_err(|message| Failure {
            probe: index,
            message: format!("probe {} failed: {message}", probe.name()),
        })?;
    }
    Ok(())
}

/// Of the `applicable` probes, only the one that `failed` (all of them when
/// it is unknown): after a rollback, whether the rollback cures what the
/// new state broke is that probe's question alone. Another probe failing
/// then (the API server restarting, say) says nothing about the new state.
pub fn only_failed(applicable: &[bool], failed: Option<usize>) -> Vec<bool> {
    let Some(failed) = failed else {
        return applicable.to_vec();
    };
    applicable
        .iter()
        .enumerate()
        .map(|(index, applies)| *applies && index == failed)
        .collect()
}

/// Which of `probes` apply to an apply starting from `before`.
pub async fn applicable(probes: &[Box<dyn Probe>], before: &State) -> Vec<bool> {
    let mut result = Vec::with_capacity(probes.len());
    for probe in probes {
        result.push(probe.applies(before).await);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn finds_the_main_table_default_gateway() {
        let state = State(json!({"routes": {"running": [
            {"destination": "10.0.0.0/8", "next-hop-address": "10.0.0.1", "next-hop-interface": "eth1"},
            {"destination": "0.0.0.0/0", "next-hop-address": "192.0.2.9", "next-hop-interface": "eth9", "table-id": 100},
            {"destination": "0.0.0.0/0", "next-hop-address": "192.0.2.2", "next-hop-interface": "eth2", "metric": 200, "table-id": 254},
            {"destination": "0.0.0.0/0", "next-hop-address": "192.0.2.1", "next-hop-interface": "eth0", "metric": 100, "table-id": 254},
            {"destination": "::/0", "next-hop-address": "2001:db8::1", "next-hop-interface": "eth0"},
        ]}}));
        assert_eq!(
            default_gateway(&state),
            Some(("192.0.2.1".parse().unwrap(), "eth0".to_owned()))
        );
        let v6_only = State(json!({"routes": {"running": [
            {"destination": "::/0", "next-hop-address": "2001:db8::1", "next-hop-interface": "eth0"},
        ]}}));
        assert_eq!(
            default_gateway(&v6_only),
            Some(("2001:db8::1".parse().unwrap(), "eth0".to_owned()))
        );
        assert_eq!(default_gateway(&State(json!({}))), None);
        let no_hop = State(json!({"routes": {"running": [
            {"destination": "0.0.0.0/0", "next-hop-interface": "eth0"},
        ]}}));
        assert_eq!(default_gateway(&no_hop), None);
    }

    #[test]
    fn any_answer_of_the_api_server_reaches_it() {
        let status = |code: u16| {
            kube::Error::Api(Box::new(
                serde_json::from_value(json!({"status": "Failure", "code": code,
                    "reason": "TooManyRequests", "message": "busy"}))
                .unwrap(),
            ))
        };
        assert_eq!(reached(Ok(())), Ok(()));
        assert_eq!(reached(Err(status(429))), Ok(()));
        assert_eq!(reached(Err(status(503))), Ok(()));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let cut = reached(Err(kube::Error::Service(Box::new(refused))));
        assert!(
            cut.unwrap_err()
                .starts_with("the API server is not reachable: ")
        );
    }

    #[test]
    fn after_a_rollback_only_the_failed_probe_runs_again() {
        let applicable = [true, false, true];
        assert_eq!(only_failed(&applicable, Some(2)), [false, false, true]);
        assert_eq!(only_failed(&applicable, Some(0)), [true, false, false]);
        // A probe that did not apply is not run, even if named.
        assert_eq!(only_failed(&applicable, Some(1)), [false, false, false]);
        assert_eq!(only_failed(&applicable, None), applicable);
    }

    #[test]
    fn reads_running_name_servers() {
        let state = State(json!({"dns-resolver": {"running": {"server": [
            "192.0.2.53", "fe80::1%eth0", "not-an-address"]}}}));
        assert_eq!(
            name_servers(&state),
            [
                "192.0.2.53".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        assert!(name_servers(&State(json!({}))).is_empty());
    }

    #[tokio::test]
    async fn gateway_probe_pings_over_loopback() {
        // Loopback answers echo requests; nothing leaves the machine.
        let probe = GatewayProbe::new(Duration::from_secs(5));
        probe
            .ping("127.0.0.1".parse().unwrap(), "lo")
            .await
            .unwrap();
        let state = State(json!({"routes": {"running": [
            {"destination": "0.0.0.0/0", "next-hop-address": "127.0.0.1", "next-hop-interface": "lo"},
        ]}}));
        assert!(probe.applies(&state).await);
        probe.check(&state).await.unwrap();
        // No default route after the apply: the probe fails and says why.
        assert_eq!(
            probe.check(&State(json!({}))).await.unwrap_err(),
            "the default route is gone"
        );
        // No default route before: the probe does not apply.
        assert!(!probe.applies(&State(json!({}))).await);
    }

    #[tokio::test]
    async fn dns_probe_reports_an_unanswering_server() {
        // Nothing listens on port 53 of 127.0.0.9 (loopback): refused.
        let probe = DnsProbe::new("root-servers.net", Duration::from_secs(2));
        let state = State(json!({"dns-resolver": {"running": {"server": ["127.0.0.9"]}}}));
        assert!(!probe.applies(&state).await);
        let error = probe.check(&state).await.unwrap_err();
        assert!(
            error.starts_with(
                "resolving root-servers.net failed through every name server: 127.0.0.9: "
            ),
            "{error}"
        );
        assert_eq!(
            probe.check(&State(json!({}))).await.unwrap_err(),
            "no name server is running any more"
        );
    }
}
