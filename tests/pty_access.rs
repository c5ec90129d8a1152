//! Access control end to end (issue 4 §5), in the real binary in a pseudo-terminal: a demo
//! whose settings survive restarts (`--demo --config-dir DIR`), the admin signing in, allowed
//! users kept across a restart, and a user who is not on the list refused at sign-in and kept
//! on the Sign in tab whatever they press.
//!
//! The demo approves device codes as the default admin by itself; to sign in as someone else
//! a run starts with `--faults approve-after=600` (no automatic approval within the test) and
//! the test approves the code shown on screen as the chosen user through the sim's control
//! surface (`POST {control}/device/approve`), whose URL the demo writes to its log in DIR.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use cspsync::audit;
use cspsync::cli::WorldArgs;
use cspsync::config::{AllowedUser, ConfigDir, Role};
use cspsync::sim::World;
use cspsync::sim::world::User;
use support::pty::{Key, Term};

/// The first start of a debug binary on a busy machine; then each step.
const START: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_secs(20);

/// No automatic approval during a test: the test approves as the user it chooses.
const MANUAL_APPROVAL: &str = "approve-after=600";

fn wait(t: &Term, text: &str) {
    t.wait_for(text, STEP)
        .unwrap_or_else(|e| panic!("{e}\n--- screen ---\n{}", t.text()));
}

/// Wait until `text` is on the screen, whatever line wrapping split it.
fn wait_words(t: &Term, text: &str) {
    let want = text.split_whitespace().collect::<Vec<_>>().join(" ");
    t.wait_until(&format!("`{text}`"), STEP, |s| {
        s.contents()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(&want)
    })
    .unwrap_or_else(|e| panic!("{e}\n--- screen ---\n{}", t.text()));
}

fn demo(dir: &Path, extra: &[&str]) -> Term {
    let mut args = vec!["--config-dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    Term::demo(&args, 120, 40, START).unwrap()
}

fn quit(mut t: Term) {
    t.press(Key::Char('q'));
    let status = t.wait_exit(STEP).expect("cspsync exits");
    assert!(status.success(), "{status:?}");
    t.check_restored().unwrap();
}

/// The world every demo run generates (the same seed each time).
fn world() -> World {
    cspsync::run::build_world(&WorldArgs::default()).unwrap()
}

fn admin(w: &World) -> User {
    cspsync::sim::entra::default_admin(w).unwrap().clone()
}

/// Ordinary colleagues: enabled members on the MSP's own domain, not admins.
fn colleagues(w: &World) -> Vec<User> {
    let admin = admin(w).id;
    w.msp
        .users
        .iter()
        .filter(|u| {
            u.id != admin
                && u.account_enabled
                && u.user_type == "Member"
                && u.partner_roles.is_empty()
                && !u.user_principal_name.contains(".onmicrosoft.com")
        })
        .cloned()
        .collect()
}

/// The sim's control surface of the latest demo run in `dir` (from its log).
fn control_url(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("cspsync.log")).unwrap();
    log.lines()
        .rev()
        .find(|l| l.contains("the simulated world is serving"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("control="))
        })
        .unwrap_or_else(|| panic!("no control URL in the log:\n{log}"))
        .to_string()
}

/// The user code on the screen ("2. Enter this code:  FJXK7QZRL").
fn user_code(t: &Term) -> String {
    wait(t, "Enter this code:");
    let text = t.text();
    text.lines()
        .find_map(|l| l.split("Enter this code:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no code on screen:\n{text}"))
        .to_string()
}

/// Approve the code on screen as `upn`, as that person would in the browser.
fn approve_as(t: &Term, dir: &Path, upn: &str) {
    let code = user_code(t);
    let control = control_url(dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{control}/device/approve"))
            .json(&serde_json::json!({ "user_code": code, "upn": upn }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert!(status.is_success(), "{status}: {}", r.text().await.unwrap());
    });
}

/// The active (bold) tab on the tab bar.
fn active_tab(t: &Term) -> String {
    t.bold_runs(0).join(" ")
}

/// Wait until `pred` holds for the settings saved in `dir`.
fn wait_saved(dir: &Path, what: &str, pred: impl Fn(&cspsync::config::Settings) -> bool) {
    let config = ConfigDir {
        dir: dir.to_path_buf(),
    };
    let deadline = Instant::now() + STEP;
    loop {
        if let Ok(s) = config.load_settings()
            && pred(&s)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not saved in {STEP:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Tab 5, its users loaded from Microsoft 365 (Enter loads them when the tab asks).
fn open_users_tab(t: &Term) {
    t.press(Key::Char('5'));
    t.wait_until("the Users tab", STEP, |s| {
        let c = s.contents();
        c.contains("Press Enter to load") || c.contains("Disallowed (")
    })
    .unwrap_or_else(|e| panic!("{e}"));
    if t.text().contains("Press Enter to load") {
        t.press(Key::Enter);
    }
    wait(t, "Disallowed (");
}

/// First run: the admin signs in (the demo approves as the default admin) and nothing else.
fn first_run_admin_signs_in(dir: &Path, w: &World) -> Term {
    let t = demo(dir, &[]);
    wait(&t, "Press Enter to get a sign-in code");
    t.press(Key::Enter);
    wait(&t, "Enter this code");
    wait(&t, "1 Sign in ✓");
    let admin = admin(w);
    wait_saved(dir, "the setup account", |s| {
        s.microsoft.setup_user_oid == admin.id && s.microsoft.signed_in_oid == admin.id
    });
    t
}

/// Someone not on the list signs in: told so, and every other tab key leaves them on Sign in.
fn refused_and_kept_on_sign_in(t: &Term, dir: &Path, stranger: &User, admin: &User) {
    t.press(Key::Enter);
    approve_as(t, dir, &stranger.user_principal_name);
    wait(t, "is not on cspsync's allowed users");
    wait_words(
        t,
        &format!(
            "{} <{}> is not on cspsync's allowed users; ask {} to add you in the Users tab.",
            stranger.display_name, stranger.user_principal_name, admin.user_principal_name
        ),
    );
    assert!(
        active_tab(t).contains("Sign in"),
        "{}\n{}",
        active_tab(t),
        t.text()
    );
    for c in ['2', '3', '4', '5', '6', '7'] {
        t.press(Key::Char(c));
        // The key is handled (the notice appears), and the person is back on Sign in.
        // The notice row (just above the key line) says why.
        t.wait_until("the refusal notice", STEP, |s| {
            let rows: Vec<String> = s.contents().lines().map(str::to_string).collect();
            rows.iter()
                .rev()
                .take(3)
                .any(|r| r.contains("is not on cspsync's allowed users; ask"))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", t.text()));
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            active_tab(t).contains("Sign in"),
            "key {c}: {}\n{}",
            active_tab(t),
            t.text()
        );
        assert!(t.text().contains("Sign in to Microsoft"), "key {c}");
    }
    t.press(Key::Tab);
    std::thread::sleep(Duration::from_millis(200));
    assert!(active_tab(t).contains("Sign in"), "Tab: {}", t.text());
}

#[test]
fn a_user_not_on_the_list_is_refused_and_an_allowed_one_gets_in_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let w = world();
    let admin = admin(&w);
    let people = colleagues(&w);
    let (viewer, stranger) = (&people[0], &people[1]);

    // 1. The admin signs in; the settings are saved in DIR.
    let t = first_run_admin_signs_in(&dir, &w);
    quit(t);

    // The admin allows a viewer (as the Users tab saves it).
    let config = ConfigDir { dir: dir.clone() };
    let mut settings = config.load_settings().unwrap();
    settings.access.allowed.push(AllowedUser {
        oid: viewer.id.clone(),
        upn: viewer.user_principal_name.clone(),
        name: viewer.display_name.clone(),
        role: Role::Viewer,
    });
    settings.access.saved_at = Some("2025-06-11T03:04:05Z".into());
    config.save_settings(&settings).unwrap();

    // 2. Restart on the same DIR: still set up (the sessions of the old sim are gone).
    let t = demo(&dir, &["--faults", MANUAL_APPROVAL]);
    wait(&t, "Demo resumed from");
    wait_words(
        &t,
        &format!("{} (who set cspsync up)", admin.user_principal_name),
    );
    // Signed out: nothing but Sign in.
    t.press(Key::Char('3'));
    wait(&t, "Sign in first");
    assert!(active_tab(&t).contains("Sign in"), "{}", t.text());

    // Someone not on the list is refused and kept on Sign in.
    refused_and_kept_on_sign_in(&t, &dir, stranger, &admin);

    // They sign out; the allowed viewer signs in and may use every tab.
    t.press(Key::Char('1'));
    t.press(Key::Char('o'));
    wait(&t, "Signed out: cspsync forgot the Microsoft sign-in.");
    t.press(Key::Enter);
    approve_as(&t, &dir, &viewer.user_principal_name);
    // Let in: the wizard moves on to the first open step; the Sign in tab shows the role.
    wait(&t, "Test connection");
    t.press(Key::Char('1'));
    wait_words(
        &t,
        &format!(
            "Signed in as {} <{}> (viewer).",
            viewer.display_name, viewer.user_principal_name
        ),
    );
    t.press(Key::Char('4'));
    wait(&t, "Connect the PSA you bill from");
    assert!(active_tab(&t).contains("PSA"), "{}", t.text());
    quit(t);

    // Every sign-in, refusal and sign-out is in the audit log, by who did it.
    let log = audit::read(&config, None).unwrap();
    let seen: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.action.as_str(), e.actor.oid.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (audit::SIGN_IN, admin.id.as_str()),
            (audit::SIGN_IN_REFUSED, stranger.id.as_str()),
            (audit::SIGN_OUT, stranger.id.as_str()),
            (audit::SIGN_IN, viewer.id.as_str()),
        ],
        "{log:#?}"
    );
    assert_eq!(log[1].details["reason"], "not_allowed");
    assert_eq!(log[3].details["role"], "viewer");
    // The setup account survived everything.
    let settings = config.load_settings().unwrap();
    assert_eq!(settings.microsoft.setup_user_oid, admin.id);
    assert_eq!(settings.microsoft.signed_in_oid, viewer.id);
}

#[test]
fn three_users_allowed_in_the_users_tab_survive_a_restart_and_others_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let w = world();
    let admin = admin(&w);
    let config = ConfigDir { dir: dir.clone() };

    // 1. The admin signs in, completes nothing else, and allows three users in tab 5: mark
    // three with Space (moving down between them), move them with Enter, save with `s` and
    // confirm with `y` (issue 4 §1 keys).
    let t = first_run_admin_signs_in(&dir, &w);
    open_users_tab(&t);
    // The cursor to the Disallowed column, then mark three and move them.
    t.press(Key::Left);
    t.keys(&[
        Key::Char(' '),
        Key::Down,
        Key::Char(' '),
        Key::Down,
        Key::Char(' '),
        Key::Enter,
    ]);
    t.press(Key::Char('s'));
    std::thread::sleep(Duration::from_millis(300));
    t.press(Key::Char('y'));
    wait_saved(&dir, "three allowed users", |s| s.access.allowed.len() == 3);
    quit(t);
    let allowed = config.load_settings().unwrap().access.allowed;
    assert_eq!(allowed.len(), 3, "{allowed:?}");
    // Who saved it, and whom, is in the audit log.
    let log = audit::read(&config, None).unwrap();
    let saved = log
        .iter()
        .find(|e| e.action == audit::ALLOWED_USERS_SAVED)
        .unwrap_or_else(|| {
            panic!("no list save in the audit log (the Users tab calls audit::allowed_users_saved): {log:#?}")
        });
    assert_eq!(saved.actor.oid, admin.id);
    assert_eq!(saved.details["added"].as_array().map(Vec::len), Some(3));

    // 2. Restart: the admin signs in again and sees the three users still allowed.
    let t = demo(&dir, &[]);
    wait(&t, "Demo resumed from");
    t.press(Key::Enter);
    wait(&t, "1 Sign in ✓");
    open_users_tab(&t);
    for u in &allowed {
        let name = if u.name.is_empty() { &u.upn } else { &u.name };
        wait(&t, name);
    }
    quit(t);
    assert_eq!(config.load_settings().unwrap().access.allowed, allowed);

    // 3. Restart: a user not on the list signs in, is refused, and stays on Sign in.
    let stranger = colleagues(&w)
        .into_iter()
        .find(|u| !allowed.iter().any(|a| a.oid.eq_ignore_ascii_case(&u.id)))
        .unwrap();
    let t = demo(&dir, &["--faults", MANUAL_APPROVAL]);
    wait(&t, "Demo resumed from");
    refused_and_kept_on_sign_in(&t, &dir, &stranger, &admin);
    quit(t);
}
