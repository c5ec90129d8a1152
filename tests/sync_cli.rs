//! `cspsync sync` and `cspsync audit`, run as the real binary (issue 6 §4, §5): the demo, saved
//! settings against a simulated world that outlives each process, the formats, the exit codes,
//! who may apply, and the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cspsync::config::{AllowedUser, ConfigDir, Role, Secrets, Settings};

mod support;
use support::cli::{run, run_async};

#[test]
fn demo_plan_formats_and_exit_codes() {
    let out = run(&["--demo", "sync", "--plan"]);
    assert_eq!(out.code, 1, "writes are needed: {}", out.stderr);
    assert!(
        out.stdout.starts_with("Sync plan for ConnectWise Manage"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.lines().all(|l| l.chars().count() <= 120),
        "{}",
        out.stdout
    );

    let out = run(&[
        "--demo", "sync", "--plan", "--format", "json", "--psa", "autotask",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let writes = j["writes"].as_array().unwrap();
    assert!(!writes.is_empty());
    assert_eq!(
        j["summary"]["writes"].as_u64().unwrap() as usize,
        writes.len()
    );
    assert!(
        writes.iter().all(|w| w["system"] == "autotask"),
        "{writes:?}"
    );

    let out = run(&[
        "--demo", "sync", "--plan", "--format", "csv", "--psa", "xero",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let mut lines = out.stdout.lines();
    assert!(lines.next().unwrap().starts_with("key,"), "{}", out.stdout);
    assert!(lines.all(|l| l.contains(",xero,")), "{}", out.stdout);
}

#[test]
fn apply_needs_yes_and_a_mode() {
    let out = run(&["--demo", "sync", "--apply"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let out = run(&["--demo", "sync"]);
    assert_eq!(out.code, 2, "neither --plan nor --apply");
}

#[test]
fn demo_apply_prints_progress_and_a_summary_and_checks_the_result() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    // Without --confirm-cautions the decrease outside the NCE window is skipped: exit 1.
    let out = run(&["--demo", "--config-dir", dir, "sync", "--apply", "--yes"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("needs confirmation (--confirm-cautions)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("still has 1 write(s)"),
        "{}",
        out.stdout
    );

    let out = run(&[
        "--demo",
        "--config-dir",
        dir,
        "sync",
        "--apply",
        "--yes",
        "--confirm-cautions",
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // One progress line per customer, on stderr; the summary on stdout.
    let progress: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with('[')).collect();
    assert!(!progress.is_empty(), "{}", out.stderr);
    let n = progress.len();
    assert!(
        progress.last().unwrap().starts_with(&format!("[{n}/{n}]")),
        "{progress:?}"
    );
    assert!(
        progress.iter().all(|l| l.contains(": done (")),
        "{progress:?}"
    );
    assert!(
        out.stdout.contains("Applied to ConnectWise Manage:"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("0 failed, 0 skipped"), "{}", out.stdout);
    // The same process fetched, reconciled and planned again (each demo run starts a fresh
    // world, so a second `--demo sync --plan` would see the planted drift again).
    assert!(
        out.stdout
            .contains("Checked: a fresh plan has nothing to do"),
        "{}",
        out.stdout
    );

    // Every write of both runs is in the demo directory's audit log.
    let out = run(&["--demo", "--config-dir", dir, "audit"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let writes: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("sync.write"))
        .collect();
    assert!(writes.len() >= 3, "{}", out.stdout);
    assert!(
        writes
            .iter()
            .any(|l| l.contains("skipped") && l.contains("needs confirmation"))
    );
    assert!(
        writes.iter().any(|l| l.contains("· done (id ")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("sync.apply"), "{}", out.stdout);
    let out = run(&[
        "--demo",
        "--config-dir",
        dir,
        "audit",
        "--format",
        "json",
        "--since",
        "1h",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    let w = j.iter().find(|e| e["action"] == "sync.write").unwrap();
    for k in [
        "customer",
        "system",
        "entity_id",
        "before",
        "after",
        "result",
    ] {
        assert!(w["details"].get(k).is_some(), "{k}: {w}");
    }
    assert!(!w["actor"]["name"].as_str().unwrap().is_empty(), "{w}");
    // Newest last.
    let times: Vec<&str> = j.iter().map(|e| e["time"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
}

#[test]
fn audit_says_when_the_log_is_empty_or_damaged() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let out = run(&["--config-dir", dir, "audit"]);
    assert_eq!(out.code, 0);
    assert!(out.stderr.contains("audit log is empty"), "{}", out.stderr);
    let out = run(&["--config-dir", dir, "audit", "--format", "json"]);
    assert_eq!(out.stdout.trim(), "[]");
    std::fs::write(d.path().join("audit.jsonl"), "{\"time\":\"2026-01-01T00:00:00Z\",\"actor\":{\"oid\":\"a\",\"name\":\"b\"},\"action\":\"access.sign_out\"}\nnot json\n").unwrap();
    let out = run(&["--config-dir", dir, "audit"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("line 2"), "{}", out.stderr);
    std::fs::write(d.path().join("audit.jsonl"), "{\"time\":\"2026-01-01T00:00:00Z\",\"actor\":{\"oid\":\"a\",\"name\":\"b\"},\"action\":\"access.sign_out\"}\n").unwrap();
    let out = run(&["--config-dir", dir, "audit", "--since", "7d"]);
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains("no audit records since 7d (1 older"),
        "{}",
        out.stderr
    );
    let out = run(&["--config-dir", dir, "audit", "--since", "last week"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--since"), "{}", out.stderr);
}

#[test]
fn only_an_operator_may_apply() {
    let d = tempfile::tempdir().unwrap();
    let c = ConfigDir {
        dir: d.path().to_path_buf(),
    };
    let mut s = Settings::default();
    s.microsoft.setup_user_oid = "admin-oid".into();
    s.microsoft.signed_in_oid = "viewer-oid".into();
    s.microsoft.signed_in_name = "vera@msp.example".into();
    s.access.allowed.push(AllowedUser {
        oid: "viewer-oid".into(),
        upn: "vera@msp.example".into(),
        name: "Vera".into(),
        role: Role::Viewer,
    });
    c.save_settings(&s).unwrap();
    c.save_secrets(&Secrets {
        microsoft_refresh_token: Some("not-a-real-token".into()),
        ..Secrets::default()
    })
    .unwrap();
    let dir = d.path().to_str().unwrap();
    let out = run(&["--config-dir", dir, "sync", "--apply", "--yes"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("only an operator"), "{}", out.stderr);
    assert!(
        out.stderr.contains("vera@msp.example is a viewer"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("fetching"),
        "refused before fetching: {}",
        out.stderr
    );
}

/// Saved settings against a world that outlives each process: plan, apply, then a second plan
/// in a new process finds nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_settings_plan_apply_then_nothing_to_do() {
    let w = support::sim::demo_world();
    let sim = support::sim::start(&w).await;
    let (setup, d) = support::sim::saved_setup(&sim, &w).await;
    let dir = d.path().to_str().unwrap().to_string();
    let args = |rest: &[&str]| {
        let mut v = vec!["--config-dir".to_string(), dir.clone()];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    for psa in ["xero", "connectwise", "autotask"] {
        let out = run_async(args(&["sync", "--plan", "--psa", psa, "--format", "json"])).await;
        assert_eq!(out.code, 1, "{psa}: {}", out.stderr);
        let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let planned = j["writes"].as_array().unwrap().len();
        assert!(planned > 0);

        let out = run_async(args(&[
            "sync",
            "--apply",
            "--yes",
            "--confirm-cautions",
            "--psa",
            psa,
        ]))
        .await;
        assert_eq!(out.code, 0, "{psa}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stdout
                .contains(&format!("{planned} write(s): {planned} done")),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("`cspsync audit`"), "{}", out.stdout);

        let out = run_async(args(&["sync", "--plan", "--psa", psa])).await;
        assert_eq!(out.code, 0, "{psa}: {}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains("nothing to do"), "{}", out.stderr);

        // Applying again has nothing to send.
        let out = run_async(args(&["sync", "--apply", "--yes", "--psa", psa])).await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("Nothing to do"), "{}", out.stdout);
    }
    // The audit log of the real settings: every write, by the signed-in admin.
    let out = run_async(args(&["audit", "--format", "json"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    let writes: Vec<&serde_json::Value> =
        j.iter().filter(|e| e["action"] == "sync.write").collect();
    assert!(!writes.is_empty());
    assert!(writes.iter().all(|e| e["details"]["result"] == "done"));
    let admin = &setup.settings.microsoft.setup_user_name;
    assert!(
        writes.iter().all(|e| &e["actor"]["name"] == admin),
        "{writes:?}"
    );
    let systems: std::collections::BTreeSet<&str> = writes
        .iter()
        .map(|e| e["details"]["system"].as_str().unwrap())
        .collect();
    assert_eq!(systems.len(), 3, "{systems:?}");
    // The journal is in the data directory (the settings directory here).
    assert!(d.path().join("sync-journal.jsonl").exists());
    drop(sim);
}
