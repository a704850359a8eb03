//! `nmstate-agent`: the per-node agent (DaemonSet). The reporter and the
//! enactor are not built yet; this binary only validates its flags.

use std::process::ExitCode;

use clap::Parser;

/// Reports this node's network state and applies its enactments.
#[derive(Debug, Parser)]
#[command(name = "nmstate-agent", version, about)]
struct Args {
    /// The node this agent runs on.
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    eprintln!(
        "nmstate-agent: node {}: the reporter and enactor are not implemented yet",
        args.node_name
    );
    ExitCode::from(2)
}
