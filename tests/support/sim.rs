//! The simulated world for the integration tests: the worlds they use, a sim of one on
//! loopback, a settings directory set up against it, and the sim's control endpoints.
#![allow(dead_code)]

use cspsync::config::ConfigDir;
use cspsync::sim::generate::{GenOptions, generate};
use cspsync::sim::{self, FaultSpec, SimHandle, World};
use cspsync::tui::app::Setup;
use serde_json::Value;

/// The demo's world, its sign-in polled every second.
pub fn demo_world() -> World {
    let mut w = cspsync::run::build_world(&cspsync::cli::WorldArgs::default()).unwrap();
    w.app.device_code_interval_secs = 1;
    w
}

/// A generated world of `customers` as of today, its sign-in polled every second.
pub fn generated(customers: usize, seed: u64) -> World {
    let mut w = generate(&GenOptions::new(
        customers,
        seed,
        chrono::Utc::now().date_naive(),
    ));
    w.app.device_code_interval_secs = 1;
    w
}

/// A sim of `w` on a free loopback port, without faults.
pub async fn start(w: &World) -> SimHandle {
    sim::start(
        w.clone(),
        FaultSpec::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

/// The setup the demo completes against `sim`, saved (settings and secrets) to a new
/// settings directory.
pub async fn saved_setup(sim: &SimHandle, w: &World) -> (Setup, tempfile::TempDir) {
    let setup = cspsync::doctor::complete_demo_setup(sim, w).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    save(&dir, &setup);
    (setup, dir)
}

/// Save `setup`'s settings and secrets in `dir`.
pub fn save(dir: &tempfile::TempDir, setup: &Setup) {
    let c = ConfigDir {
        dir: dir.path().to_path_buf(),
    };
    c.save_settings(&setup.settings).unwrap();
    c.save_secrets(&setup.secrets).unwrap();
}

/// The sim's state dump (`GET {control}/state`).
pub async fn state(sim: &SimHandle) -> Value {
    reqwest::get(format!("{}/state", sim.urls().control))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Set the sim's faults (`POST {control}/faults`), e.g. `latency=60ms`.
pub async fn faults(sim: &SimHandle, spec: &str) {
    let r = reqwest::Client::new()
        .post(format!("{}/faults", sim.urls().control))
        .body(spec.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}
