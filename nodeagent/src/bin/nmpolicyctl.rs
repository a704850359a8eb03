//! `nmpolicyctl`: the nmpolicy command line. `gen` is not built yet.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// Generates nmstate desired states from nmpolicy documents.
#[derive(Debug, Parser)]
#[command(name = "nmpolicyctl", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Renders POLICY against a current state.
    Gen {
        /// The policy file (capture + desiredState).
        policy: PathBuf,
        /// The current state (default: stdin).
        #[arg(short = 's', long)]
        current_state: Option<PathBuf>,
        /// The captured-states cache file.
        #[arg(short = 'c', long)]
        captured_states: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let Args { command } = Args::parse();
    match command {
        Command::Gen { policy, .. } => {
            eprintln!("nmpolicyctl: gen {}: not implemented yet", policy.display());
            ExitCode::from(2)
        }
    }
}
