//! `cspsync config show` and `cspsync doctor`, run as the real binary (issue 3 §6).
//!
//! The doctor tests start the simulated world in this process, complete the setup against it
//! the way the demo does, write the settings (with the sim's endpoints) to a temporary config
//! directory, change what the test is about, and run the binary on that directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use cspsync::config::{ConfigDir, PsaKindSetting, Secrets, Settings};
use cspsync::sim::{SimHandle, World};
use cspsync::tui::app::Setup;

mod support;
use support::cli::{Out, run, run_async};

impl Out {
    /// The report line of one check (`✓ Name: …`), whatever its mark.
    fn line(&self, name: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| {
                l.split_once(' ')
                    .is_some_and(|(_, r)| r.starts_with(&format!("{name}:")))
            })
            .unwrap_or_else(|| panic!("no `{name}` line in:\n{}", self.stdout))
    }
}

fn dir_arg(dir: &Path) -> String {
    dir.to_str().unwrap().to_string()
}

fn config_in(dir: &Path) -> ConfigDir {
    ConfigDir {
        dir: dir.to_path_buf(),
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ----- config show ----------------------------------------------------------------------------

#[test]
fn config_show_without_settings_says_how_to_start_the_setup() {
    let d = tempfile::tempdir().unwrap();
    let out = run(&["--config-dir", &dir_arg(d.path()), "config", "show"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("the setup has not been run"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("`cspsync`"), "{}", out.stdout);
    assert!(out.stdout.contains(&dir_arg(d.path())), "{}", out.stdout);
}

#[test]
fn config_show_prints_the_settings_and_only_which_secrets_are_set() {
    let d = tempfile::tempdir().unwrap();
    let c = config_in(d.path());
    let mut s = Settings::default();
    s.microsoft.tenant_name = "Contoso Pty Ltd".into();
    s.distributor.account_code = "325026".into();
    s.distributor.mpn_id = "4391507".into();
    s.psa.kind = PsaKindSetting::Xero;
    s.psa.xero.contact_name = "Dicker Data Limited".into();
    c.save_settings(&s).unwrap();
    let secrets = Secrets {
        microsoft_refresh_token: Some("0.AAAA-microsoft-refresh-SECRET".into()),
        dicker_data_access_code: Some("237082ED-EB96-SECRET".into()),
        xero_refresh_token: Some("xero-refresh-SECRET".into()),
        ..Secrets::default()
    };
    c.save_secrets(&secrets).unwrap();

    let out = run(&["--config-dir", &dir_arg(d.path()), "config", "show"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let t = &out.stdout;
    assert!(t.contains("account_code = \"325026\""), "{t}");
    assert!(t.contains("mpn_id = \"4391507\""), "{t}");
    assert!(t.contains("kind = \"xero\""), "{t}");
    assert!(t.contains("Dicker Data Limited"), "{t}");
    assert!(t.contains("microsoft_refresh_token = [set]"), "{t}");
    assert!(t.contains("dicker_data_access_code = [set]"), "{t}");
    assert!(t.contains("xero_refresh_token = [set]"), "{t}");
    assert!(t.contains("connectwise_private_key = [not set]"), "{t}");
    assert!(t.contains("autotask_secret = [not set]"), "{t}");
    assert!(!t.contains("SECRET"), "a secret value was printed:\n{t}");
    assert!(!out.stderr.contains("SECRET"), "{}", out.stderr);
    // What is printed is TOML a person could paste back (the secrets table only names them).
    let settings_part = t.split("# Secrets:").next().unwrap();
    let back: Settings = toml::from_str(settings_part).expect("settings part is TOML");
    assert_eq!(back, s);
}

#[cfg(unix)]
#[test]
fn config_show_refuses_a_secrets_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let c = config_in(d.path());
    c.save_settings(&Settings::default()).unwrap();
    c.save_secrets(&Secrets {
        autotask_secret: Some("at-SECRET".into()),
        ..Secrets::default()
    })
    .unwrap();
    std::fs::set_permissions(c.secrets_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&["--config-dir", &dir_arg(d.path()), "config", "show"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    let want = format!("chmod 600 {}", c.secrets_path().display());
    assert!(out.stderr.contains(&want), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "nothing shown: {}", out.stdout);
    assert!(!out.stderr.contains("SECRET"));
}

#[test]
fn config_show_is_not_a_demo_command() {
    let out = run(&["--demo", "config", "show"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("reads the real settings"),
        "{}",
        out.stderr
    );
}

// ----- doctor ---------------------------------------------------------------------------------

#[test]
fn demo_doctor_is_all_green() {
    let out = run(&["--demo", "doctor"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for name in [
        "Microsoft sign-in",
        "Partner Center",
        "GDAP relationships",
        "Dicker Data",
        "Xero",
        "Secrets file",
    ] {
        let l = out.line(name);
        assert!(l.starts_with('✓'), "{l}");
    }
    assert!(!out.stdout.contains('✗'), "{}", out.stdout);
    assert!(out.line("GDAP relationships").contains("active"));
    assert!(out.line("Partner Center").contains("MPN ID"));
}

#[test]
fn doctor_without_settings_says_how_to_start_the_setup() {
    let d = tempfile::tempdir().unwrap();
    let out = run(&["--config-dir", &dir_arg(d.path()), "doctor"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("the setup has not been run"),
        "{}",
        out.stdout
    );
}

/// A sim and a fully completed setup against it (the demo's).
async fn set_up() -> (SimHandle, World, Setup) {
    let w = support::sim::demo_world();
    let sim = support::sim::start(&w).await;
    let setup = cspsync::doctor::complete_demo_setup(&sim, &w)
        .await
        .unwrap();
    (sim, w, setup)
}

fn save(dir: &Path, setup: &Setup) {
    let c = config_in(dir);
    c.save_settings(&setup.settings).unwrap();
    c.save_secrets(&setup.secrets).unwrap();
}

/// Every secret value of the setup and the world (none may appear in any output).
fn secret_values(setup: &Setup, w: &World) -> Vec<String> {
    let s = &setup.secrets;
    [
        s.microsoft_refresh_token.clone(),
        s.dicker_data_access_code.clone(),
        s.connectwise_private_key.clone(),
        s.autotask_secret.clone(),
        s.xero_refresh_token.clone(),
        Some(w.dicker_data.access_code.clone()),
    ]
    .into_iter()
    .flatten()
    .filter(|v| v.len() >= 6)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_a_wrong_dicker_data_access_code_and_exits_1() {
    let (_sim, w, mut setup) = set_up().await;
    setup.secrets.dicker_data_access_code = Some("DEADBEEF-0000-WRONG".into());
    setup.settings.psa.kind = PsaKindSetting::Autotask;
    let d = tempfile::tempdir().unwrap();
    save(d.path(), &setup);

    let out = run_async(vec![
        "--config-dir".into(),
        dir_arg(d.path()),
        "doctor".into(),
    ])
    .await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let dd = out.line("Dicker Data");
    assert!(dd.starts_with('✗'), "{dd}");
    assert!(
        dd.contains("Account Code and Access Code"),
        "the line says what to check: {dd}"
    );
    // Everything else is still checked, and works.
    for name in [
        "Microsoft sign-in",
        "Partner Center",
        "GDAP relationships",
        "Secrets file",
    ] {
        assert!(out.line(name).starts_with('✓'), "{}", out.line(name));
    }
    let at = out.line("Autotask");
    assert!(
        at.starts_with('✓') && at.contains("zone") && at.contains("companies"),
        "{at}"
    );
    assert!(out.stdout.contains("1 check failed."), "{}", out.stdout);
    for v in secret_values(&setup, &w) {
        assert!(
            !out.stdout.contains(&v) && !out.stderr.contains(&v),
            "a secret was printed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_connectwise() {
    let (_sim, w, mut setup) = set_up().await;
    setup.settings.psa.kind = PsaKindSetting::ConnectWise;
    let d = tempfile::tempdir().unwrap();
    save(d.path(), &setup);
    let out = run_async(vec![
        "--config-dir".into(),
        dir_arg(d.path()),
        "doctor".into(),
    ])
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let cw = out.line("ConnectWise Manage");
    let n = w.connectwise.companies.len();
    assert!(
        cw.starts_with('✓') && cw.contains(&format!("{n} companies")),
        "{cw}"
    );

    // A wrong private key: a ✗ line with what to check.
    setup.secrets.connectwise_private_key = Some("wrongprivatekey".into());
    save(d.path(), &setup);
    let out = run_async(vec![
        "--config-dir".into(),
        dir_arg(d.path()),
        "doctor".into(),
    ])
    .await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let cw = out.line("ConnectWise Manage");
    assert!(cw.starts_with('✗') && cw.contains("private key"), "{cw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_saves_the_rotated_xero_sign_in() {
    let (_sim, _w, setup) = set_up().await;
    assert_eq!(setup.settings.psa.kind, PsaKindSetting::Xero);
    let d = tempfile::tempdir().unwrap();
    save(d.path(), &setup);
    let before = setup.secrets.xero_refresh_token.clone().unwrap();

    let out = run_async(vec![
        "--config-dir".into(),
        dir_arg(d.path()),
        "doctor".into(),
    ])
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.line("Xero").starts_with('✓'), "{}", out.stdout);
    let c = config_in(d.path());
    let after = c.load_secrets().unwrap().xero_refresh_token.unwrap();
    assert_ne!(
        after, before,
        "Xero rotates the refresh token on use: the new one is saved"
    );
    #[cfg(unix)]
    assert_eq!(mode(&c.secrets_path()), 0o600);
    // The other secrets are untouched.
    let s = c.load_secrets().unwrap();
    assert_eq!(
        s.dicker_data_access_code,
        setup.secrets.dicker_data_access_code
    );

    // The saved one works the next time.
    let out = run_async(vec![
        "--config-dir".into(),
        dir_arg(d.path()),
        "doctor".into(),
    ])
    .await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.line("Xero").starts_with('✓'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_refuses_another_tenant_and_skips_what_depends_on_it() {
    let (_sim, _w, mut setup) = set_up().await;
    setup.settings.microsoft.tenant_id = "00000000-0000-4000-8000-000000000001".into();
    setup.settings.microsoft.tenant_name = "Other MSP Pty Ltd".into();
    let d = tempfile::tempdir().unwrap();
    save(d.path(), &setup);
    let out = run_async(vec![
        "--config-dir".into(),
        dir_arg(d.path()),
        "doctor".into(),
    ])
    .await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let l = out.line("Microsoft sign-in");
    assert!(l.starts_with('✗') && l.contains("Other MSP Pty Ltd"), "{l}");
    assert!(
        out.line("Partner Center").starts_with('-'),
        "{}",
        out.stdout
    );
    assert!(
        out.line("GDAP relationships").starts_with('-'),
        "{}",
        out.stdout
    );
    // Not counted twice.
    assert!(out.stdout.contains("1 check failed."), "{}", out.stdout);
}

#[cfg(unix)]
#[test]
fn doctor_reports_a_readable_secrets_file_with_the_chmod() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let c = config_in(d.path());
    c.save_settings(&Settings::default()).unwrap();
    c.save_secrets(&Secrets::default()).unwrap();
    std::fs::set_permissions(c.secrets_path(), std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = run(&["--config-dir", &dir_arg(d.path()), "doctor"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let l = out.line("Secrets file");
    assert!(l.starts_with('✗') && l.contains("chmod 600"), "{l}");
}

#[test]
fn doctor_on_empty_settings_lists_everything_as_not_configured() {
    let d = tempfile::tempdir().unwrap();
    config_in(d.path())
        .save_settings(&Settings::default())
        .unwrap();
    let out = run(&["--config-dir", &dir_arg(d.path()), "doctor"]);
    assert_eq!(
        out.code, 0,
        "nothing configured, nothing failed: {}",
        out.stdout
    );
    for name in ["Microsoft sign-in", "Partner Center", "Dicker Data", "PSA"] {
        assert!(out.line(name).starts_with('-'), "{}", out.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_says_sign_in_again_when_the_microsoft_session_is_refused() {
    let (_sim, _w, mut setup) = set_up().await;
    setup.secrets.microsoft_refresh_token = Some("0.not-a-refresh-token-the-sim-issued".into());
    let d = tempfile::tempdir().unwrap();
    save(d.path(), &setup);
    let out = run_async(vec![
        "--config-dir".into(),
        dir_arg(d.path()),
        "doctor".into(),
    ])
    .await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let l = out.line("Microsoft sign-in");
    assert!(l.starts_with('✗') && l.contains("Sign in again"), "{l}");
    assert!(!l.contains("not-a-refresh-token"), "{l}");
    assert!(
        out.line("Partner Center").starts_with('-'),
        "{}",
        out.stdout
    );
    assert!(
        out.line("GDAP relationships").starts_with('-'),
        "{}",
        out.stdout
    );
    // What does not need Microsoft is still checked.
    assert!(out.line("Dicker Data").starts_with('✓'), "{}", out.stdout);
    assert!(out.line("Xero").starts_with('✓'), "{}", out.stdout);
}
