//! `kubectl-nmstate`: parses flags, runs the command, exits with its code.

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};
use kubectl_nmstate::{ColorChoice, Command, GraphFormat, OutputFormat, client::Connection};

/// kubectl nmstate: look at and follow nmstate.io policies, enactments and
/// node network states.
#[derive(Debug, Parser)]
#[command(name = "kubectl nmstate", version)]
struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// What a policy would give one node: its captures and desired state.
    Render {
        /// The policy (NAME or nncp/NAME).
        policy: String,
        /// The node whose reported state the policy is rendered against.
        #[arg(long)]
        node: String,
        /// Print the API's answer as yaml or json.
        #[arg(short = 'o', long)]
        output: Option<OutputFormat>,
    },
    /// What applying a policy file would change, node by node, and the
    /// rollout waves.
    DryRun {
        /// The policy file (YAML or JSON; - for standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Print the API's answer as yaml or json.
        #[arg(short = 'o', long)]
        output: Option<OutputFormat>,
        /// Colour the diff: auto (when standard output is a terminal),
        /// always or never.
        #[arg(long, default_value = "auto")]
        color: ColorChoice,
    },
    /// Rollout commands.
    Rollout {
        #[command(subcommand)]
        command: Rollout,
    },
    /// Why an enactment fails: its error, rendered state and captures.
    Why {
        /// The enactment (NODE.POLICY or nnce/NODE.POLICY).
        enactment: String,
        /// Print the enactment as yaml or json.
        #[arg(short = 'o', long)]
        output: Option<OutputFormat>,
        /// Colour: auto, always or never.
        #[arg(long, default_value = "auto")]
        color: ColorChoice,
    },
    /// A node's interfaces, as a table or a picture.
    Show {
        /// The node (its NodeNetworkState's name).
        node: String,
        /// Draw the interfaces as dot text, SVG or PNG instead of the table.
        #[arg(long)]
        graph: Option<GraphFormat>,
        /// Print the NodeNetworkState as yaml or json.
        #[arg(short = 'o', long, conflicts_with = "graph")]
        output: Option<OutputFormat>,
    },
}

#[derive(Debug, Subcommand)]
enum Rollout {
    /// Follow a policy's rollout until it is Available (exit 0) or
    /// Degraded (exit 1, with the failing nodes' errors).
    Status {
        /// The policy (nncp/NAME or NAME).
        policy: String,
        /// Give up after this long (e.g. 30s, 5m; 0 waits for ever).
        #[arg(long, value_parser = parse_duration, default_value = "0s")]
        timeout: Duration,
        /// Follow the rollout (--watch=false prints the status once).
        #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set)]
        watch: bool,
    },
}

/// A kubectl duration: a number with `s`, `m` or `h` (a bare number is
/// seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(index) => text.split_at(index),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    let seconds = match unit {
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        _ => return Err(format!("invalid duration {text:?}: use s, m or h")),
    };
    Ok(Duration::from_secs(seconds))
}

/// The error and its causes, each cause left out when the text so far
/// already says it (kube's errors repeat their source in their message).
fn message(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    let connection = Connection {
        kubeconfig: cli.kubeconfig,
        context: cli.context,
    };
    let command = match cli.command {
        Sub::Render {
            policy,
            node,
            output,
        } => Command::Render {
            policy,
            node,
            output,
        },
        Sub::DryRun {
            file,
            output,
            color,
        } => Command::DryRun {
            file,
            output,
            color,
        },
        Sub::Rollout {
            command:
                Rollout::Status {
                    policy,
                    timeout,
                    watch,
                },
        } => Command::RolloutStatus {
            policy,
            timeout: (!timeout.is_zero()).then_some(timeout),
            watch,
        },
        Sub::Why {
            enactment,
            output,
            color,
        } => Command::Why {
            enactment,
            output,
            color,
        },
        Sub::Show {
            node,
            graph,
            output,
        } => Command::Show {
            node,
            graph,
            output,
        },
    };
    let mut stdout = std::io::stdout();
    match kubectl_nmstate::run(&connection, command, &mut stdout).await {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("error: {}", message(&error));
            std::process::exit(1);
        }
    }
}
