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
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use cspsync::demo::PsaKind;
use cspsync::sim::{SimHandle, World};
use serde_json::Value;

mod support;
use support::cli::run_async;
use support::sim::{faults, saved_setup, start};

fn world() -> World {
    let w = support::sim::generated(40, 42);
    let mut w = cspsync::engine::bench_sync::one_seat_off(&w, PsaKind::Autotask);
    w.app.device_code_interval_secs = 1;
    w
}

/// A sim of `w` and a settings directory set up against it.
async fn setup(w: &World) -> (SimHandle, tempfile::TempDir) {
    let handle = start(w).await;
    let (_, d) = saved_setup(&handle, w).await;
    (handle, d)
}

fn apply_args(dir: &Path) -> Vec<String> {
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

async fn apply_to_the_end(dir: PathBuf) -> (i32, String, String) {
    let out = run_async(apply_args(&dir)).await;
    (out.code, out.stdout, out.stderr)
}

/// What an apply that was stopped in the middle left: how many customers had finished when it
/// was stopped, its exit status, its stdout and every line of its stderr.
struct Stopped {
    finished: usize,
    status: ExitStatus,
    stdout: String,
    seen: Vec<String>,
}

/// `sync --apply` on `dir`, its progress read from stderr until `n` customers have finished
/// (their lines start with `[`), then `stop`ped and read to the end.
async fn apply_until(dir: PathBuf, n: usize, stop: fn(&mut Child)) -> Stopped {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cspsync"))
            .args(apply_args(&dir))
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
            if finished == n {
                stop(&mut child);
                break;
            }
        }
        seen.extend(lines.map_while(Result::ok));
        let out = child.wait_with_output().unwrap();
        Stopped {
            finished,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            seen,
        }
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
    let state = &support::sim::state(h).await;
    let at = &state["world"]["autotask"];
    let services = support::sim::at_contract_services(state);
    let adjustments = support::sim::at_adjustments(state);
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
    faults(&sim, "latency=60ms").await;
    let Stopped {
        finished,
        status,
        seen,
        ..
    } = apply_until(dir.path().to_path_buf(), 8, |child| {
        // SIGKILL: no destructor, no flush, no goodbye.
        child.kill().unwrap()
    })
    .await;
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
    faults(&sim, "").await;
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
    faults(&sim, "latency=60ms").await;
    let Stopped {
        status,
        stdout,
        seen,
        ..
    } = apply_until(dir.path().to_path_buf(), 3, |child| {
        let ok = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    })
    .await;
    let code = status.code().unwrap_or(-1);
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

    faults(&sim, "").await;
    let (code, stdout, stderr) = apply_to_the_end(dir.path().to_path_buf()).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(autotask_state(&sim).await, clean);
    drop(clean_sim);
    drop(sim);
}
