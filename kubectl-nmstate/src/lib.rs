//! `kubectl nmstate`: a kubectl plugin over the nmstate.io API.
//!
//! - [`client`] is the only module that talks to the cluster;
//! - [`print`], [`diff`] and [`show`] turn answers into text, SVG or dot,
//!   with no IO;
//! - [`raster`] draws the SVG as PNG with the system's fonts;
//! - [`run`] ties a parsed command to them and says how the process ends.

pub mod client;
pub mod diff;
pub mod print;
pub mod raster;
pub mod show;

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nmstate_openapi::subresources::NodeNetworkConfigurationPolicyDryRun;

use crate::{
    client::{Connection, NmstateClient},
    print::{Outcome, Palette},
};

/// `-o`: the answer as the API gave it, or the human format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// The object as YAML.
    Yaml,
    /// The object as JSON.
    Json,
}

/// `--color`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when standard output is a terminal.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    fn palette(self) -> Palette {
        let enabled = match self {
            Self::Auto => std::io::stdout().is_terminal(),
            Self::Always => true,
            Self::Never => false,
        };
        Palette { enabled }
    }
}

/// `show --graph`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz dot text.
    Dot,
    /// An SVG picture, laid out by the plugin itself.
    Svg,
    /// The same picture as PNG (needs a font installed on the machine).
    Png,
}

/// One command, its flags parsed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Command {
    /// `render POLICY --node N`.
    Render {
        /// The policy.
        policy: String,
        /// The node whose state it is rendered against.
        node: String,
        /// `-o`.
        output: Option<OutputFormat>,
    },
    /// `dry-run -f FILE`.
    DryRun {
        /// The proposed policy (`-` for standard input).
        file: PathBuf,
        /// `-o`.
        output: Option<OutputFormat>,
        /// `--color`.
        color: ColorChoice,
    },
    /// `rollout status nncp/NAME`.
    RolloutStatus {
        /// The policy.
        policy: String,
        /// `--timeout`; none waits for ever.
        timeout: Option<Duration>,
        /// `--watch=false`: print the status once and exit.
        watch: bool,
    },
    /// `why nnce/NAME`.
    Why {
        /// The enactment.
        enactment: String,
        /// `-o`.
        output: Option<OutputFormat>,
        /// `--color`.
        color: ColorChoice,
    },
    /// `show NODE`.
    Show {
        /// The node.
        node: String,
        /// `--graph`.
        graph: Option<GraphFormat>,
        /// `-o`.
        output: Option<OutputFormat>,
    },
}

/// How often `rollout status` reads the policy again.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

fn encode<T: serde::Serialize>(value: &T, format: OutputFormat) -> Result<String> {
    Ok(match format {
        OutputFormat::Yaml => print::yaml(value),
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(value)?),
    })
}

/// Strips `TYPE/` off `TYPE/NAME` when TYPE is one of `names`; refuses
/// another type.
fn object_name(argument: &str, names: &[&str]) -> Result<String> {
    match argument.split_once('/') {
        Some((kind, name)) if names.contains(&kind) => Ok(name.to_owned()),
        Some((kind, _)) => bail!(
            "unsupported resource type {kind:?}: expected {}",
            names.join(", ")
        ),
        None => Ok(argument.to_owned()),
    }
}

const POLICY_NAMES: [&str; 4] = [
    "nncp",
    "nodenetworkconfigurationpolicy",
    "nodenetworkconfigurationpolicies",
    "nodenetworkconfigurationpolicy.nmstate.io",
];
const ENACTMENT_NAMES: [&str; 4] = [
    "nnce",
    "nodenetworkconfigurationenactment",
    "nodenetworkconfigurationenactments",
    "nodenetworkconfigurationenactment.nmstate.io",
];

/// Runs `command` and returns the process's exit code; what it prints goes
/// to `out`, the live progress of `rollout status` included.
pub async fn run(connection: &Connection, command: Command, out: &mut dyn Write) -> Result<i32> {
    let client = NmstateClient::connect(connection).await?;
    match command {
        Command::Render {
            policy,
            node,
            output,
        } => {
            let policy = object_name(&policy, &POLICY_NAMES)?;
            let answer = client.render(&policy, &node).await?;
            let text = match output {
                Some(format) => encode(&answer, format)?,
                None => print::render(&answer),
            };
            out.write_all(text.as_bytes())?;
        }
        Command::DryRun {
            file,
            output,
            color,
        } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let body: serde_json::Value = serde_yaml::from_str(&text)
                .with_context(|| format!("{} is no YAML or JSON", file.display()))?;
            let Some(name) = body["metadata"]["name"].as_str() else {
                bail!("{}: the policy has no metadata.name", file.display());
            };
            let answer = client.dry_run(name, &body).await?;
            let text = match output {
                Some(format) => encode(&answer, format)?,
                None => {
                    let current = current_states(&client, &answer).await?;
                    print::dry_run(&answer, &current, color.palette())
                }
            };
            out.write_all(text.as_bytes())?;
        }
        Command::RolloutStatus {
            policy,
            timeout,
            watch,
        } => {
            let policy = object_name(&policy, &POLICY_NAMES)?;
            return rollout_status(&client, &policy, timeout, watch, out).await;
        }
        Command::Why {
            enactment,
            output,
            color,
        } => {
            let name = object_name(&enactment, &ENACTMENT_NAMES)?;
            let enactment = client.enactment(&name).await?;
            let text = match output {
                Some(format) => encode(&enactment, format)?,
                None => print::why(&enactment, color.palette()),
            };
            out.write_all(text.as_bytes())?;
        }
        Command::Show {
            node,
            graph,
            output,
        } => {
            let state = client.node_state(&node).await?;
            let current = state
                .status
                .as_ref()
                .and_then(|status| status.current_state.as_ref())
                .map(|state| state.0.clone())
                .unwrap_or_default();
            let interfaces = show::interfaces(&current);
            let bytes = match (graph, output) {
                (Some(GraphFormat::Dot), _) => show::dot(&node, &show::graph(&interfaces)).into(),
                (Some(GraphFormat::Svg), _) => show::svg(&node, &show::graph(&interfaces)).into(),
                (Some(GraphFormat::Png), _) => {
                    if std::io::stdout().is_terminal() {
                        bail!(
                            "not writing a PNG to a terminal: redirect it to a file (> {node}.png)"
                        );
                    }
                    raster::png(&show::svg(&node, &show::graph(&interfaces)))?
                }
                (None, Some(format)) => encode(&state, format)?.into_bytes(),
                (None, None) => show::table(&interfaces).into_bytes(),
            };
            out.write_all(&bytes)?;
        }
    }
    Ok(0)
}

/// The reported current state of each node a dry run would change, by
/// node name, for the `-` side of its diff. A node whose state is gone
/// since the dry run has none (its diff shows only additions).
async fn current_states(
    client: &NmstateClient,
    answer: &NodeNetworkConfigurationPolicyDryRun,
) -> Result<BTreeMap<String, serde_json::Value>> {
    let mut states = BTreeMap::new();
    for node in &answer.nodes {
        let changes = node
            .difference
            .as_ref()
            .and_then(|difference| difference.0.as_object())
            .is_some_and(|difference| !difference.is_empty());
        if !changes {
            continue;
        }
        let state = match client.node_state(&node.node).await {
            Ok(state) => state,
            Err(error) if error.is_not_found() => continue,
            Err(error) => {
                return Err(error).with_context(|| format!("reading node {}'s state", node.node));
            }
        };
        if let Some(current) = state.status.and_then(|status| status.current_state) {
            states.insert(node.node.clone(), current.0);
        }
    }
    Ok(states)
}

/// Follows a policy's rollout until it is `Available` (0), `Degraded` (1,
/// with the failing nodes' errors) or `Ignored` (1), or the timeout passes
/// (1). On a terminal the progress line is redrawn in place; otherwise a
/// line is printed each time it changes.
async fn rollout_status(
    client: &NmstateClient,
    name: &str,
    timeout: Option<Duration>,
    watch: bool,
    out: &mut dyn Write,
) -> Result<i32> {
    let terminal = std::io::stdout().is_terminal();
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let mut last = String::new();
    loop {
        let policy = client.policy(name).await?;
        let (progress, outcome) = print::rollout(&policy);
        let line = print::progress_line(name, &progress);
        if line != last {
            if terminal {
                write!(out, "\r\x1b[2K{line}")?;
            } else {
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            last = line;
        }
        let end = |out: &mut dyn Write| -> std::io::Result<()> {
            if terminal {
                writeln!(out)?;
            }
            Ok(())
        };
        match outcome {
            Outcome::Available(message) => {
                end(out)?;
                writeln!(out, "policy {name:?} successfully rolled out: {message}")?;
                return Ok(0);
            }
            Outcome::Degraded(message) => {
                end(out)?;
                writeln!(out, "error: policy {name:?} is degraded: {message}")?;
                let enactments = client.enactments_of(name).await?;
                out.write_all(print::failures(&enactments).as_bytes())?;
                return Ok(1);
            }
            Outcome::Ignored(message) => {
                end(out)?;
                writeln!(out, "error: policy {name:?} is ignored: {message}")?;
                return Ok(1);
            }
            Outcome::Running => {}
        }
        if !watch {
            end(out)?;
            return Ok(0);
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            end(out)?;
            writeln!(
                out,
                "error: timed out waiting for the rollout of policy {name:?}"
            )?;
            return Ok(1);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_with_and_without_type() {
        assert_eq!(object_name("nncp/br1", &POLICY_NAMES).unwrap(), "br1");
        assert_eq!(object_name("br1", &POLICY_NAMES).unwrap(), "br1");
        assert_eq!(
            object_name("deploy/br1", &POLICY_NAMES)
                .unwrap_err()
                .to_string(),
            "unsupported resource type \"deploy\": expected nncp, nodenetworkconfigurationpolicy, nodenetworkconfigurationpolicies, nodenetworkconfigurationpolicy.nmstate.io"
        );
    }
}
