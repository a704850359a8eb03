//! Reading the apiserver's `/metrics` text.

/// How many NodeNetworkState writes (every verb but get, list and watch,
/// on the object and its status) the apiserver's `/metrics` text counts.
pub fn state_writes(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("nmstate_apiserver_requests_total{"))
        .filter(|line| line.contains(r#"resource="nodenetworkstates"#))
        .filter(|line| {
            !["get", "list", "watch"]
                .iter()
                .any(|verb| line.contains(&format!(r#"verb="{verb}""#)))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_writes_of_states_and_their_status_only() {
        let metrics = r#"# TYPE nmstate_apiserver_requests_total counter
nmstate_apiserver_requests_total{verb="create",resource="nodenetworkstates",code="201"} 3
nmstate_apiserver_requests_total{verb="update",resource="nodenetworkstates/status",code="200"} 4
nmstate_apiserver_requests_total{verb="get",resource="nodenetworkstates",code="200"} 9
nmstate_apiserver_requests_total{verb="watch",resource="nodenetworkstates",code="200"} 1
nmstate_apiserver_requests_total{verb="update",resource="nodenetworkconfigurationenactments/status",code="200"} 5
"#;
        assert_eq!(state_writes(metrics), 7);
    }
}
