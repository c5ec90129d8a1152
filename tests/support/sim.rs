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

/// Remove these Autotask contract services (ids) and their unit records from `w`.
pub fn remove_contract_services(w: &mut World, gone: &[u64]) {
    w.autotask
        .contract_services
        .retain(|c| !gone.contains(&c.id));
    w.autotask
        .contract_service_units
        .retain(|u| !gone.contains(&u.contract_service_id));
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

/// Autotask's contract services in a state dump as (contract, service), sorted.
pub fn at_contract_services(state: &Value) -> Vec<(u64, u64)> {
    let mut services: Vec<(u64, u64)> = state["world"]["autotask"]["contract_services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["contract_id"].as_u64().unwrap(),
                c["service_id"].as_u64().unwrap(),
            )
        })
        .collect();
    services.sort();
    services
}

/// Autotask's unit adjustments in a state dump as (contract, service, change, effective
/// date), sorted; ids and times left out.
pub fn at_adjustments(state: &Value) -> Vec<(u64, u64, i64, String)> {
    let mut adjustments: Vec<(u64, u64, i64, String)> =
        state["world"]["autotask"]["contract_service_adjustments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["contract_id"].as_u64().unwrap(),
                    a["service_id"].as_u64().unwrap(),
                    a["unit_change"].as_i64().unwrap(),
                    a["effective_date"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    adjustments.sort();
    adjustments
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
