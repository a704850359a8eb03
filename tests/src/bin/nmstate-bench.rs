//! `nmstate-bench SCENARIO [--quick] [--json] [--peer crd]`: measures nmstate-apiserver
//! against a baseline taken in the same run; see `docs/benchmarks.md`.

use std::process::ExitCode;

use clap::Parser;
use nmstate_e2e::bench::{self, Args};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if cfg!(debug_assertions) && !args.quick {
        eprintln!(
            "nmstate-bench: this is a debug build; its figures mean little \
             (cargo build --release -p nmstate-apiserver -p nmstate-e2e)"
        );
    }
    // The render scenario runs in this process and needs no server.
    let apiserver = match args.scenario {
        bench::Scenario::Render => Ok(std::path::PathBuf::new()),
        _ => bench::apiserver_binary(),
    };
    let result = match apiserver {
        Ok(apiserver) => bench::run(args.scenario, args.quick, args.peer, &apiserver).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(report) => {
            print!("{report}");
            if args.json {
                println!("{}", report.json());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("nmstate-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
