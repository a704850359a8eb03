//! `nmpolicyctl`: the nmpolicy command line. Rendering is
//! `nmstate_agent::nmpolicyctl::generate`; this file reads and writes files.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use nmstate_agent::nmpolicyctl::generate;
use nmstate_openapi::{Time, render::RenderOptions};

/// Generates nmstate desired states from nmpolicy documents.
#[derive(Debug, Parser)]
#[command(name = "nmpolicyctl", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Renders POLICY against a current state: the desired state goes to
    /// stdout, the captured states to a file.
    Gen {
        /// The policy file (capture + desiredState).
        policy: PathBuf,
        /// The current state (default: stdin).
        #[arg(short = 's', long)]
        current_state: Option<PathBuf>,
        /// Captured states to use instead of running those captures.
        #[arg(short = 'c', long)]
        captured_states: Option<PathBuf>,
        /// Where to write the captured states (default:
        /// ~/.cache/nmpolicy/cache.yaml).
        #[arg(short = 'o', long)]
        output_captured: Option<PathBuf>,
        /// Give ports of up linux-bridges without a `vlan` section the
        /// default trunk 2-4094, as the nmstate.io server does.
        #[arg(long)]
        default_bridge_vlan_filtering: bool,
    },
}

fn main() -> ExitCode {
    let Args { command } = Args::parse();
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("nmpolicyctl: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    let Command::Gen {
        policy,
        current_state,
        captured_states,
        output_captured,
        default_bridge_vlan_filtering,
    } = command;
    let policy = read(&policy)?;
    let current = match current_state {
        Some(path) => read(&path)?,
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|error| format!("reading the current state from stdin: {error}"))?;
            text
        }
    };
    let captured = captured_states.as_deref().map(read).transpose()?;
    let output = match output_captured {
        Some(path) => path,
        None => default_cache_path()?,
    };
    let options = RenderOptions {
        default_bridge_vlan_filtering,
    };
    let now = Time(jiff::Timestamp::now());
    let generated = generate(&policy, &current, captured.as_deref(), &options, &now)
        .map_err(|error| error.to_string())?;
    if let Some(parent) = output
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .map_err(|error| format!("creating {}: {error}", parent.display()))?;
    }
    std::fs::write(&output, &generated.captured_states)
        .map_err(|error| format!("writing {}: {error}", output.display()))?;
    print!("{}", generated.desired_state);
    Ok(())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|error| format!("reading {}: {error}", path.display()))
}

/// `$HOME/.cache/nmpolicy/cache.yaml`, where Go nmpolicyctl keeps it.
fn default_cache_path() -> Result<PathBuf, String> {
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .ok_or("HOME is not set; give the captured-states file with --output-captured")?;
    Ok(PathBuf::from(home).join(".cache/nmpolicy/cache.yaml"))
}
