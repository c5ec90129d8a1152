//! Running a parsed command line.

use std::process::ExitCode;

use crate::cli::{Cli, Command, SimArgs, WorldArgs};
use crate::config::Endpoints;
use crate::sim::{self, FaultSpec, World};

/// Run a command; an `Err` is one sentence for the person at the terminal.
pub fn run(cli: Cli) -> Result<ExitCode, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    match cli.command {
        Some(Command::Sim(args)) => rt.block_on(serve_sim(&cli.world, args)),
        None => Err("no command given; try `cspsync sim` or `cspsync --help`".into()),
    }
}

/// The world the options ask for: a dataset file, a generated world, or the shipped demo.
pub fn build_world(args: &WorldArgs) -> Result<World, String> {
    if let Some(path) = &args.dataset {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the dataset {}: {e}", path.display()))?;
        return World::from_json(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    let today = chrono::Utc::now().date_naive();
    let opts = sim::generate::GenOptions {
        customers: args.customers.unwrap_or(12),
        seed: args.seed.unwrap_or(42),
        today,
    };
    Ok(sim::generate::generate(&opts))
}

pub fn fault_spec(args: &WorldArgs) -> Result<FaultSpec, String> {
    match &args.faults {
        Some(s) => FaultSpec::parse(s).map_err(|e| format!("--faults: {e}")),
        None => Ok(FaultSpec::default()),
    }
}

async fn serve_sim(world_args: &WorldArgs, args: SimArgs) -> Result<ExitCode, String> {
    let world = build_world(world_args)?;
    let faults = fault_spec(world_args)?;
    let handle = sim::start(world, faults, args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let urls = handle.urls();
    for (name, url) in urls.lines() {
        println!("{name} {url}");
    }
    if let Some(path) = &args.write_config {
        let endpoints = Endpoints::from_sim(&urls).map_err(|e| format!("bad sim URL: {e}"))?;
        std::fs::write(path, endpoints.to_toml_snippet())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote the endpoints to {}", path.display());
    }
    eprintln!("serving the simulated world; Ctrl-C stops it");
    wait_for_shutdown().await;
    handle.stop();
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
