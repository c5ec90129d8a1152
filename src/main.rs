//! cspsync binary: parse the command line, then run a command. Nothing else lives here.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cspsync::cli::Cli::parse();
    match cspsync::run::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cspsync: {e}");
            ExitCode::from(2)
        }
    }
}
