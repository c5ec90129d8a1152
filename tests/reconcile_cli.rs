//! `cspsync reconcile`, run as the real binary: the demo, the saved settings, the formats and
//! the exit codes (0 all in line, 1 mismatches, 2 error or nothing audited).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use cspsync::config::{ConfigDir, PsaKindSetting};

mod support;
use support::cli::{run, run_async};

/// The one-customer, one-consistent-line dataset of docs/dataset.md.
fn example_dataset() -> serde_json::Value {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/dataset.md")).unwrap();
    let start = doc.find("<!-- example-dataset -->").unwrap();
    let body = &doc[start..];
    let json_start = body.find("```json").unwrap() + "```json".len();
    let json_end = body[json_start..].find("```").unwrap() + json_start;
    serde_json::from_str(&body[json_start..json_end]).unwrap()
}

fn write(dir: &Path, name: &str, v: &serde_json::Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string(v).unwrap()).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn demo_reconcile_reports_the_planted_mismatches_and_exits_1() {
    let out = run(&["--demo", "reconcile", "--format", "json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let s = &j["summary"];
    assert!(s["lines_audited"].as_u64().unwrap() > 0);
    assert!(s["mismatched"].as_u64().unwrap() > 0);
    assert_eq!(s["psa"], "connectwise");
    let lines = j["lines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["statuses"] == serde_json::json!(["in_line"]))
    );
    for l in lines {
        assert!(l["product_id"].as_str().unwrap().contains(':'));
        assert!(["monthly", "annual"].contains(&l["billing"].as_str().unwrap()));
        assert!(l["monthly_impact"].as_str().unwrap().contains('.'));
    }

    let out = run(&["--demo", "reconcile", "--format", "csv", "--psa", "xero"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.starts_with(
        "customer_tenant_id,customer_name,product_id,product_name,term,billing,distributor_qty,microsoft_qty,assigned,psa_qty,statuses,monthly_impact,renewal_date,cancel_window_hours_left\r\n"
    ));

    let out = run(&["--demo", "reconcile"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.lines().all(|l| l.chars().count() <= 120),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("lines audited"), "{}", out.stdout);
}

#[test]
fn a_world_where_everything_agrees_exits_0_and_an_empty_one_exits_2() {
    let d = tempfile::tempdir().unwrap();
    let clean = write(d.path(), "clean.json", &example_dataset());
    let out = run(&["--demo", "--dataset", &clean, "reconcile", "--all"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("1 lines audited, 1 in line"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Atlas Outsourcing"), "{}", out.stdout);

    let mut empty = example_dataset();
    empty["customers"] = serde_json::json!([]);
    empty["dicker_data"]["subscriptions"] = serde_json::json!([]);
    let empty = write(d.path(), "empty.json", &empty);
    let out = run(&["--demo", "--dataset", &empty, "reconcile"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("0 lines audited"), "{}", out.stderr);
    assert!(out.stdout.contains("nothing was checked"), "{}", out.stdout);
}

#[test]
fn without_settings_it_says_how_to_set_up() {
    let d = tempfile::tempdir().unwrap();
    let out = run(&["--config-dir", d.path().to_str().unwrap(), "reconcile"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("not set up"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_settings_reconcile_and_the_rotated_xero_sign_in_is_kept() {
    let w = support::sim::demo_world();
    let sim = support::sim::start(&w).await;
    let (mut setup, d) = support::sim::saved_setup(&sim, &w).await;
    assert_eq!(setup.settings.psa.kind, PsaKindSetting::Xero);
    let c = ConfigDir {
        dir: d.path().to_path_buf(),
    };
    let dir = d.path().to_str().unwrap().to_string();
    let before = setup.secrets.xero_refresh_token.clone().unwrap();

    let out = run_async(vec![
        "--config-dir".into(),
        dir.clone(),
        "reconcile".into(),
        "--format".into(),
        "json".into(),
    ])
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(j["summary"]["psa"], "xero");
    let planted_xero = w
        .planted
        .iter()
        .filter(|p| p.psa.as_deref().is_none_or(|x| x == "xero"))
        .count();
    assert!(planted_xero > 0);
    assert!(j["summary"]["mismatched"].as_u64().unwrap() > 0);
    let after = c.load_secrets().unwrap().xero_refresh_token.unwrap();
    assert_ne!(after, before, "the rotated Xero refresh token is saved");
    // No secret reaches the output.
    for s in [
        &after,
        &before,
        setup.secrets.dicker_data_access_code.as_ref().unwrap(),
    ] {
        assert!(!out.stdout.contains(s.as_str()) && !out.stderr.contains(s.as_str()));
    }

    // The saved token works again; another PSA by flag (its credentials are in the setup).
    let out = run_async(vec![
        "--config-dir".into(),
        dir.clone(),
        "reconcile".into(),
        "--psa".into(),
        "connectwise".into(),
        "--format".into(),
        "csv".into(),
    ])
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.lines().count() > 2);

    // No PSA chosen in the setup: refused, unless asked for none.
    setup.settings.psa.kind = PsaKindSetting::None;
    c.save_settings(&setup.settings).unwrap();
    let out = run_async(vec!["--config-dir".into(), dir.clone(), "reconcile".into()]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("PSA is not set up"), "{}", out.stderr);
    let out = run_async(vec![
        "--config-dir".into(),
        dir.clone(),
        "reconcile".into(),
        "--psa".into(),
        "none".into(),
    ])
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.contains("no PSA"), "{}", out.stdout);

    // No Dicker Data access code: refused with what is missing.
    let mut s = c.load_secrets().unwrap();
    s.dicker_data_access_code = None;
    c.save_secrets(&s).unwrap();
    let out = run_async(vec![
        "--config-dir".into(),
        dir,
        "reconcile".into(),
        "--psa".into(),
        "none".into(),
    ])
    .await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("Access Code"), "{}", out.stderr);
    drop(sim);
}
