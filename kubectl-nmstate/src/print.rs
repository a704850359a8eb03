//! Turning the API's answers into what a user reads. Plain functions from
//! values to text, with no IO, so every format is unit-tested and the end
//! to end test compares the binary's output with golden files.

use std::{collections::BTreeMap, fmt::Write as _};

use nmstate_openapi::{
    ConditionType, NodeNetworkConfigurationEnactment, NodeNetworkConfigurationPolicy,
    condition::find_condition,
    subresources::{NodeNetworkConfigurationPolicyDryRun, NodeNetworkConfigurationPolicyRender},
};
use serde_json::Value;

use crate::diff;

/// ANSI colours, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Palette {
    /// Whether to colour at all.
    pub enabled: bool,
}

impl Palette {
    fn paint(self, code: &str, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn green(self, text: &str) -> String {
        self.paint("32", text)
    }
    fn red(self, text: &str) -> String {
        self.paint("31", text)
    }
    fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
}

/// YAML of any serialisable value, without serde_yaml's leading `---`.
pub fn yaml<T: serde::Serialize>(value: &T) -> String {
    let text = serde_yaml::to_string(value).unwrap_or_default();
    text.strip_prefix("---\n").unwrap_or(&text).to_owned()
}

/// `render`'s default output: the node, the captures and the desired state.
pub fn render(answer: &NodeNetworkConfigurationPolicyRender) -> String {
    let mut out = String::new();
    let name = answer.metadata.name.as_deref().unwrap_or_default();
    let node = answer.node.as_deref().unwrap_or("(given state)");
    let _ = writeln!(out, "# policy {name} rendered for node {node}");
    if let Some(generation) = answer.policy_generation {
        let _ = writeln!(out, "# policy generation {generation}");
    }
    let _ = writeln!(out, "captured states:");
    out.push_str(&captures(&answer.captured_states));
    let _ = writeln!(out, "desired state:");
    out.push_str(&indent(&yaml(&answer.desired_state), "  "));
    out
}

/// Each capture's state, indented under its name (without its meta
/// information, whose time changes with every report).
fn captures(
    captured: &std::collections::BTreeMap<String, nmstate_openapi::CapturedState>,
) -> String {
    let mut out = String::new();
    if captured.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for (capture, captured) in captured {
        let _ = writeln!(out, "  {capture}:");
        match &captured.state {
            Some(state) => out.push_str(&indent(&yaml(state), "    ")),
            None => {
                let _ = writeln!(out, "    (empty)");
            }
        }
    }
    out
}

/// `dry-run`'s default output: per node what would change, as a diff of
/// the node's current values (`current`, its reported state by node name;
/// `-` lines) against nmstate's difference document (`+` lines), with the
/// lines both share as context (see [`diff`]); the nodes that cannot be
/// rendered with nmstate's message; then the rollout waves.
pub fn dry_run(
    answer: &NodeNetworkConfigurationPolicyDryRun,
    current: &BTreeMap<String, Value>,
    palette: Palette,
) -> String {
    let mut out = String::new();
    let name = answer.metadata.name.as_deref().unwrap_or_default();
    let _ = writeln!(
        out,
        "policy {name}: {} matching node(s), maxUnavailable {}",
        answer.matching_nodes.len(),
        answer.max_unavailable
    );
    for node in &answer.nodes {
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", palette.bold(&format!("--- node {}", node.node)));
        if let Some(error) = &node.error {
            for line in error.lines() {
                let _ = writeln!(out, "{}", palette.red(&format!("! {line}")));
            }
            continue;
        }
        let difference = node
            .difference
            .as_ref()
            .map(|state| state.0.clone())
            .unwrap_or_default();
        let empty = difference.as_object().is_none_or(serde_json::Map::is_empty);
        if empty {
            let _ = writeln!(out, "  (no change)");
            continue;
        }
        let before =
            diff::current_side(&difference, current.get(&node.node).unwrap_or(&Value::Null));
        let before = if before.as_object().is_none_or(serde_json::Map::is_empty) {
            String::new()
        } else {
            yaml(&before)
        };
        for line in diff::lines(&before, &yaml(&difference)) {
            let text = match line {
                diff::Line::Same(line) => format!("  {line}"),
                diff::Line::Removed(line) => palette.red(&format!("- {line}")),
                diff::Line::Added(line) => palette.green(&format!("+ {line}")),
            };
            let _ = writeln!(out, "{text}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "rollout waves:");
    for (index, wave) in answer.batches.iter().enumerate() {
        let _ = writeln!(out, "  {}: {}", index + 1, wave.join(", "));
    }
    if answer.batches.is_empty() {
        let _ = writeln!(out, "  (none: the policy matches no node)");
    }
    out
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|line| format!("{prefix}{line}\n"))
        .collect()
}

/// How a rollout stands, from the policy's status counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Nodes the policy matches.
    pub matching: usize,
    /// Configured.
    pub available: usize,
    /// In flight.
    pub progressing: usize,
    /// Waiting for their turn.
    pub pending: usize,
    /// Failed.
    pub failing: usize,
    /// Given up after too many failures.
    pub aborted: usize,
}

/// Where a rollout ended, or that it has not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still going (or the controller has not seen this generation yet).
    Running,
    /// `Available` for the current generation.
    Available(String),
    /// `Degraded` for the current generation: some node failed or aborted.
    Degraded(String),
    /// `Ignored`: no node matches.
    Ignored(String),
}

/// The rollout's progress and outcome, from the policy alone.
pub fn rollout(policy: &NodeNetworkConfigurationPolicy) -> (Progress, Outcome) {
    let status = policy.status.clone().unwrap_or_default();
    let count = |value: Option<i32>| usize::try_from(value.unwrap_or(0)).unwrap_or(0);
    let progress = Progress {
        matching: count(status.matching_nodes),
        available: count(status.available_nodes),
        progressing: count(status.progressing_nodes),
        pending: count(status.pending_nodes),
        failing: count(status.failing_nodes),
        aborted: count(status.aborted_nodes),
    };
    let generation = policy.metadata.generation;
    let current = |type_: ConditionType| {
        find_condition(&status.conditions, &type_).filter(|condition| {
            condition.is_true()
                && (generation.is_none()
                    || condition.observed_generation.is_none()
                    || condition.observed_generation == generation)
        })
    };
    // A degraded rollout has ended only once no node is in flight or
    // waiting: the nodes still applying decide what the user must fix.
    let ended = progress.progressing == 0 && progress.pending == 0;
    let outcome = if let Some(condition) = current(ConditionType::Degraded).filter(|_| ended) {
        Outcome::Degraded(condition.message.clone())
    } else if let Some(condition) = current(ConditionType::Available) {
        Outcome::Available(condition.message.clone())
    } else if let Some(condition) = current(ConditionType::Ignored) {
        Outcome::Ignored(condition.message.clone())
    } else {
        Outcome::Running
    };
    (progress, outcome)
}

/// Width of the progress bar in characters.
const BAR_WIDTH: usize = 20;

/// The progress line: a bar with a character per share of the nodes
/// (`#` available, `>` progressing, `.` pending, `!` failing, `x` aborted)
/// and the counts.
pub fn progress_line(name: &str, progress: &Progress) -> String {
    let total = progress.matching.max(
        progress.available
            + progress.progressing
            + progress.pending
            + progress.failing
            + progress.aborted,
    );
    let mut bar = String::new();
    if total > 0 {
        let parts = [
            (progress.available, '#'),
            (progress.failing, '!'),
            (progress.aborted, 'x'),
            (progress.progressing, '>'),
            (progress.pending, '.'),
        ];
        let mut used = 0;
        for (count, symbol) in parts {
            // Rounded up so that one node of many still shows.
            let width = (count * BAR_WIDTH).div_ceil(total).min(BAR_WIDTH - used);
            bar.extend(std::iter::repeat_n(symbol, width));
            used += width;
        }
        bar.extend(std::iter::repeat_n(' ', BAR_WIDTH - used));
    } else {
        bar.extend(std::iter::repeat_n(' ', BAR_WIDTH));
    }
    format!(
        "nncp/{name} [{bar}] {}/{} available, {} progressing, {} pending, {} failing, {} aborted",
        progress.available,
        progress.matching,
        progress.progressing,
        progress.pending,
        progress.failing,
        progress.aborted
    )
}

/// The failing nodes of a degraded rollout: each enactment whose `Failing`
/// condition is true, with its message (the agent's or the renderer's
/// error), and the aborted ones.
pub fn failures(enactments: &[NodeNetworkConfigurationEnactment]) -> String {
    let mut sorted: Vec<&NodeNetworkConfigurationEnactment> = enactments.iter().collect();
    sorted.sort_by_key(|enactment| enactment.metadata.name.clone());
    let mut out = String::new();
    for enactment in sorted {
        let name = enactment.metadata.name.as_deref().unwrap_or_default();
        let node = enactment.node_name().unwrap_or(name);
        let conditions = enactment
            .status
            .as_ref()
            .map(|status| status.conditions.as_slice())
            .unwrap_or_default();
        if let Some(failing) =
            find_condition(conditions, &ConditionType::Failing).filter(|c| c.is_true())
        {
            let _ = writeln!(out, "node {node} failed (nnce/{name}):");
            out.push_str(&indent(&failing.message, "  "));
        } else if find_condition(conditions, &ConditionType::Aborted).is_some_and(|c| c.is_true()) {
            let _ = writeln!(out, "node {node} aborted (nnce/{name})");
        }
    }
    out
}

/// `why`: the enactment's state, its error, its rendered desired state and
/// its captured states.
pub fn why(enactment: &NodeNetworkConfigurationEnactment, palette: Palette) -> String {
    let mut out = String::new();
    let name = enactment.metadata.name.as_deref().unwrap_or_default();
    let status = enactment.status.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "nnce/{name}: node {}, policy {}, generation {}",
        enactment.node_name().unwrap_or("?"),
        enactment.policy_name().unwrap_or("?"),
        status
            .policy_generation
            .map_or_else(|| "?".to_owned(), |generation| generation.to_string()),
    );
    let _ = writeln!(out, "phase: {:?}", status.phase());
    let _ = writeln!(out);
    match find_condition(&status.conditions, &ConditionType::Failing).filter(|c| c.is_true()) {
        Some(failing) => {
            let reason = failing.reason.as_ref().map_or("", |reason| reason.as_str());
            let _ = writeln!(out, "{}", palette.bold(&format!("error ({reason}):")));
            for line in failing.message.lines() {
                let _ = writeln!(out, "  {}", palette.red(line));
            }
            for (generation, count) in &status.retry_count {
                let _ = writeln!(out, "  (generation {generation}: {count} retries)");
            }
        }
        None => {
            let _ = writeln!(out, "error: none (the enactment is not failing)");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", palette.bold("desired state (rendered):"));
    match &status.desired_state {
        Some(state) => out.push_str(&indent(&yaml(state), "  ")),
        None => {
            let _ = writeln!(
                out,
                "  (none: the policy could not be rendered for this node)"
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", palette.bold("captured states:"));
    out.push_str(&captures(&status.captured_states));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn progress_bar_shares() {
        let cases = [
            (
                "half done",
                Progress {
                    matching: 4,
                    available: 2,
                    progressing: 1,
                    pending: 1,
                    ..Progress::default()
                },
                "nncp/p [##########>>>>>.....] 2/4 available, 1 progressing, 1 pending, 0 failing, 0 aborted",
            ),
            (
                "nothing yet",
                Progress::default(),
                "nncp/p [                    ] 0/0 available, 0 progressing, 0 pending, 0 failing, 0 aborted",
            ),
            (
                "one of three failed",
                Progress {
                    matching: 3,
                    available: 1,
                    failing: 1,
                    aborted: 1,
                    ..Progress::default()
                },
                "nncp/p [#######!!!!!!!xxxxxx] 1/3 available, 0 progressing, 0 pending, 1 failing, 1 aborted",
            ),
        ];
        for (case, progress, expected) in cases {
            assert_eq!(progress_line("p", &progress), expected, "{case}");
        }
    }

    #[test]
    fn colours_only_when_enabled() {
        assert_eq!(Palette { enabled: false }.red("x"), "x");
        assert_eq!(Palette { enabled: true }.red("x"), "\x1b[31mx\x1b[0m");
    }
}
