//! The `tern` binary. Installed as `envoy`, it behaves the same: pilot-agent execs it with
//! Envoy's command line.
#![warn(clippy::unwrap_used)]

use clap::Parser;
use tern::server::{self, Options, ServerError};

fn main() -> std::process::ExitCode {
    let options = Options::parse();
    if options.hot_restart_version {
        println!("disabled");
        return std::process::ExitCode::SUCCESS;
    }
    if let Err(e) = server::init_logging(&options) {
        eprintln!("tern: {e}");
        return std::process::ExitCode::from(1);
    }
    let validate = options.mode == "validate";
    match server::run(options) {
        Ok(()) => {
            if validate {
                println!("configuration OK");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            let e: anyhow::Error = match e {
                ServerError::Config(c) => anyhow::anyhow!("invalid configuration: {c}"),
                other => other.into(),
            };
            eprintln!("tern: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
