//! A real `kill -9` of the `cspsync` binary in the middle of `sync --apply` (issue 6 §3, §6):
//! the next `sync --apply` converges to the same PSA state as an apply that was never
//! interrupted — no adjustment duplicated, none lost.
//!
//! The simulated world runs in this test's process (it outlives the killed one, as a real PSA
//! would); the binary runs against it from saved settings, with a journal in its data
//! directory. Autotask is the PSA: every one of its writes is a create that cannot be queried
//! (§6.3), the hardest case.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use cspsync::config::ConfigDir;
use cspsync::demo::PsaKind;
use cspsync::sim::{self, FaultSpec, SimHandle, World};
use serde_json::Value;

fn world() -> World {
    let today = chrono::Utc::now().date_naive();
    let w =
        cspsync::sim::generate::generate(&cspsync::sim::generate::GenOptions::new(40, 42, today));
    let mut w = cspsync::engine::bench_sync::one_seat_off(&w, PsaKind::Autotask);
    w.app.device_code_interval_secs = 1;
    w
}

/// A sim of `w` and a settings directory set up against it.
async fn setup(w: &World) -> (SimHandle, tempfile::TempDir) {
    let handle = sim::start(
        w.clone(),
        FaultSpec::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let s = cspsync::doctor::complete_demo_setup(&handle, w)
        .await
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let c = ConfigDir {
        dir: d.path().to_path_buf(),
    };
    c.save_settings(&s.settings).unwrap();
    c.save_secrets(&s.secrets).unwrap();
    (handle, d)
}

fn apply_args(dir: &std::path::Path) -> Vec<String> {
    [
        "--config-dir",
        dir.to_str().unwrap(),
        "sync",
        "--apply",
        "--yes",
        "--confirm-cautions",
        "--psa",
        "autotask",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn apply_to_the_end(dir: std::path::PathBuf) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_cspsync"))
            .args(apply_args(&dir))
            .env_remove("CSPSYNC_CONFIG_DIR")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// Autotask as the state dump shows it: (contract, service) pairs, adjustments (contract,
/// service, change, date) and the units in force today, ids and times left out.
async fn autotask_state(
    h: &SimHandle,
) -> (
    Vec<(u64, u64)>,
    Vec<(u64, u64, i64, String)>,
    BTreeMap<u64, i64>,
) {
    let s: Value = reqwest::get(format!("{}/state", h.urls().control))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let at = &s["world"]["autotask"];
    let mut services: Vec<(u64, u64)> = at["contract_services"]
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
    let mut adjustments: Vec<(u64, u64, i64, String)> = at["contract_service_adjustments"]
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
    let today = chrono::Utc::now().date_naive().to_string();
    let mut units = BTreeMap::new();
    for u in at["contract_service_units"].as_array().unwrap() {
        let (Some(s), Some(e)) = (u["start_date"].as_str(), u["end_date"].as_str()) else {
            continue;
        };
        if s <= today.as_str() && e >= today.as_str() {
            units.insert(
                u["contract_service_id"].as_u64().unwrap(),
                u["units"].as_i64().unwrap(),
            );
        }
    }
    (services, adjustments, units)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_apply_then_apply_again_converges() {
    let w = world();

    // The reference: the same world applied without interruption.
    let (clean_sim, clean_dir) = setup(&w).await;
    let (code, stdout, stderr) = apply_to_the_end(clean_dir.path().to_path_buf()).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let clean = autotask_state(&clean_sim).await;
    let adjusted = clean.1.len();
    assert!(adjusted >= 40, "only {adjusted} adjustments planned");

    // The victim: slow enough to be killed in the middle.
    let (sim, dir) = setup(&w).await;
    reqwest::Client::new()
        .post(format!("{}/faults", sim.urls().control))
        .body("latency=60ms")
        .send()
        .await
        .unwrap();
    let args = apply_args(dir.path());
    let progress = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cspsync"))
            .args(&args)
            .env_remove("CSPSYNC_CONFIG_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut finished = 0;
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.starts_with('[') {
                finished += 1;
            }
            seen.push(line);
            if finished == 8 {
                // SIGKILL: no destructor, no flush, no goodbye.
                child.kill().unwrap();
                break;
            }
        }
        let status = child.wait().unwrap();
        (status, finished, seen)
    })
    .await
    .unwrap();
    let (status, finished, seen) = progress;
    assert_eq!(
        finished, 8,
        "the apply ended before it could be killed: {seen:?}"
    );
    assert!(!status.success());
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }
    // Writes were under way: some key's last journal record is `sending`.
    let journal = std::fs::read_to_string(dir.path().join("sync-journal.jsonl")).unwrap();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for l in journal.lines().filter(|l| !l.trim().is_empty()) {
        if let Ok(v) = serde_json::from_str::<Value>(l) {
            last.insert(
                v["key"].as_str().unwrap().to_string(),
                v["state"].as_str().unwrap().to_string(),
            );
        }
    }
    let sending = last.values().filter(|s| *s == "sending").count();
    let done = last.values().filter(|s| *s == "done").count();
    assert!(sending >= 1, "nothing in flight at the kill: {journal}");
    assert!(done >= 8 && done < adjusted, "{done} done of {adjusted}");
    let partial = autotask_state(&sim).await;
    assert!(
        partial.1.len() < adjusted,
        "the kill came after the last write"
    );

    // A new process: plan from fresh PSA state, journal read back, apply the rest.
    reqwest::Client::new()
        .post(format!("{}/faults", sim.urls().control))
        .body("")
        .send()
        .await
        .unwrap();
    let (code, stdout, stderr) = apply_to_the_end(dir.path().to_path_buf()).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("Checked: a fresh plan has nothing to do"),
        "{stdout}"
    );
    let after = autotask_state(&sim).await;
    assert_eq!(after.1.len(), adjusted, "no adjustment duplicated or lost");
    assert_eq!(after, clean);
    drop(clean_sim);
    drop(sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_cleanly_and_a_new_apply_finishes() {
    let w = world();
    let (clean_sim, clean_dir) = setup(&w).await;
    let (code, stdout, stderr) = apply_to_the_end(clean_dir.path().to_path_buf()).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let clean = autotask_state(&clean_sim).await;

    let (sim, dir) = setup(&w).await;
    reqwest::Client::new()
        .post(format!("{}/faults", sim.urls().control))
        .body("latency=60ms")
        .send()
        .await
        .unwrap();
    let args = apply_args(dir.path());
    let (code, stdout, seen) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cspsync"))
            .args(&args)
            .env_remove("CSPSYNC_CONFIG_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let mut finished = 0;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.starts_with('[') {
                finished += 1;
            }
            seen.push(line);
            if finished == 3 {
                let ok = Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status()
                    .unwrap();
                assert!(ok.success());
                break;
            }
        }
        seen.extend(lines.map_while(Result::ok));
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            seen,
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{stdout}{seen:?}");
    assert!(stdout.contains("(cancelled)"), "{stdout}");
    assert!(seen.iter().any(|l| l.contains("cancelling")), "{seen:?}");
    // Every customer is done or untouched: none half-done (its lines say done or skipped).
    assert!(
        seen.iter()
            .filter(|l| l.starts_with('['))
            .all(|l| l.contains(": done (") || l.contains(": skipped (")),
        "{seen:?}"
    );
    let partial = autotask_state(&sim).await;
    assert!(partial.1.len() < clean.1.len());

    reqwest::Client::new()
        .post(format!("{}/faults", sim.urls().control))
        .body("")
        .send()
        .await
        .unwrap();
    let (code, stdout, stderr) = apply_to_the_end(dir.path().to_path_buf()).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(autotask_state(&sim).await, clean);
    drop(clean_sim);
    drop(sim);
}
