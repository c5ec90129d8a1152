//! Access control through the app (issue 4 §2): for every standing — first setup, signed out,
//! admin, operator, viewer, not allowed — which tabs the keys open, through `App` and the pure
//! `update`, the way a person at the keyboard would find out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crossterm::event::KeyCode;

use cspsync::access::{self, Access};
use cspsync::config::{AllowedUser, Role, Settings};
use cspsync::secret::Secret;
use cspsync::tui::app::{App, Msg, Setup, Tab};
use cspsync::tui::panes::signin::{self, Account, MspDetails};
use cspsync::tui::testing::{key, screen, send};

const TENANT: &str = "84841066-274d-4ec0-a5c1-276be684bdd3";
const ADMIN: &str = "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e";
const OPERATOR: &str = "0d2f6a7e-1b8c-4e3f-9a5d-6c7b8e9f0a1b";
const VIEWER: &str = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b";
const STRANGER: &str = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";

fn upn(oid: &str) -> String {
    match oid {
        ADMIN => "alex.nguyen@contoso-it.com.au",
        OPERATOR => "olivia.chen@contoso-it.com.au",
        VIEWER => "victor.ross@contoso-it.com.au",
        _ => "eve.adams@contoso-it.com.au",
    }
    .to_string()
}

/// Set up by the admin; an operator and a viewer allowed; signed in as `who` (nobody: None).
fn setup(who: Option<&str>) -> Setup {
    let mut s = Setup::default();
    let m = &mut s.settings.microsoft;
    m.client_id = "9b3c5b1e-6d3a-4a8e-9f0a-2c1d4e5f6a7b".into();
    m.tenant_id = TENANT.into();
    m.tenant_name = "Contoso IT Pty Ltd".into();
    m.domain = "contoso-it.com.au".into();
    m.setup_user_oid = ADMIN.into();
    m.setup_user_name = upn(ADMIN);
    for (oid, role) in [(OPERATOR, Role::Operator), (VIEWER, Role::Viewer)] {
        s.settings.access.allowed.push(AllowedUser {
            oid: oid.into(),
            upn: upn(oid),
            name: String::new(),
            role,
        });
    }
    s.settings.access.saved_at = Some("2025-06-11T03:04:05Z".into());
    if let Some(oid) = who {
        s.settings.microsoft.signed_in_oid = oid.into();
        s.settings.microsoft.signed_in_name = upn(oid);
        s.secrets.microsoft_refresh_token = Some("rt".into());
    }
    s
}

/// Press 1..7 and Tab/BackTab; returns the tab each key left the app on.
fn tabs_opened(app: &mut App) -> Vec<Tab> {
    let mut opened = Vec::new();
    for c in '1'..='7' {
        send(app, key(KeyCode::Char(c)));
        opened.push(app.tab);
    }
    send(app, key(KeyCode::Char('1')));
    send(app, key(KeyCode::Tab));
    opened.push(app.tab);
    send(app, key(KeyCode::Char('1')));
    send(app, key(KeyCode::BackTab));
    opened.push(app.tab);
    opened
}

fn all_tabs() -> Vec<Tab> {
    let mut v = Tab::ALL.to_vec();
    v.push(Tab::Distributor);
    v.push(Tab::Sync);
    v
}

fn assert_all_tabs(app: &mut App, who: &str) {
    assert!(app.access().may_use_app(), "{who}: {:?}", app.access());
    assert_eq!(tabs_opened(app), all_tabs(), "{who}");
    assert!(
        app.notice.as_ref().is_none_or(|n| !n.error),
        "{who}: {:?}",
        app.notice
    );
}

fn assert_only_sign_in(app: &mut App, notice: &str) {
    assert!(!app.access().may_use_app(), "{:?}", app.access());
    assert_eq!(app.tab, Tab::SignIn, "opens on Sign in");
    assert_eq!(tabs_opened(app), vec![Tab::SignIn; 9]);
    let n = app.notice.clone().expect("a notice says why");
    assert!(n.error);
    assert!(n.text.contains(notice), "{}", n.text);
    // The notice is on the screen, at the smallest size too.
    let text = screen(app, 80, 24);
    assert!(text.contains(&notice[..notice.len().min(40)]), "{text}");
}

#[test]
fn first_setup_opens_every_tab() {
    let mut app = App::new(Setup::default(), false);
    assert_eq!(app.access(), Access::FirstSetup);
    assert_all_tabs(&mut app, "first setup");
}

#[test]
fn signed_out_opens_only_sign_in() {
    let mut app = App::new(setup(None), false);
    assert_eq!(app.access(), Access::SignedOut);
    assert_only_sign_in(&mut app, "Sign in first");
}

#[test]
fn the_admin_operator_and_viewer_use_every_tab() {
    for (oid, standing) in [
        (ADMIN, Access::Admin),
        (OPERATOR, Access::Allowed(Role::Operator)),
        (VIEWER, Access::Allowed(Role::Viewer)),
    ] {
        let mut app = App::new(setup(Some(oid)), false);
        assert_eq!(app.access(), standing);
        assert_all_tabs(&mut app, &upn(oid));
    }
    // What each may do beyond opening tabs.
    let of = |oid| App::new(setup(Some(oid)), false).access();
    assert!(of(ADMIN).is_admin() && of(ADMIN).may_apply_sync());
    assert!(!of(OPERATOR).is_admin() && of(OPERATOR).may_apply_sync());
    assert!(!of(VIEWER).is_admin() && !of(VIEWER).may_apply_sync());
}

#[test]
fn someone_not_allowed_opens_only_sign_in_with_a_notice() {
    let mut app = App::new(setup(Some(STRANGER)), false);
    assert_eq!(
        app.access(),
        Access::Denied {
            name: upn(STRANGER)
        }
    );
    assert_only_sign_in(
        &mut app,
        "eve.adams@contoso-it.com.au is not on cspsync's allowed users",
    );
    // The Sign in pane itself says what to do.
    let text = screen(&app, 120, 40);
    assert!(
        text.contains("ask alex.nguyen@contoso-it.com.au to add you in the"),
        "{text}"
    );
}

/// A sign-in through the pure update, as the background would report it.
fn sign_in(app: &mut App, oid: &str) {
    send(app, key(KeyCode::Char('1')));
    send(app, key(KeyCode::Enter));
    let g = app.signin.generation;
    send(
        app,
        Msg::SignIn(signin::Msg::Code {
            generation: g,
            user_code: "FJXK7QZRL".into(),
            verification_uri: "https://microsoft.com/devicelogin".into(),
            expires_in_secs: 900,
            demo: false,
        }),
    );
    send(
        app,
        Msg::SignIn(signin::Msg::SignedIn {
            generation: g,
            account: Account {
                tenant_id: TENANT.into(),
                oid: oid.into(),
                username: Some(upn(oid)),
                name: None,
                mfa: true,
            },
            details: MspDetails {
                tenant_id: TENANT.into(),
                tenant_name: "Contoso IT Pty Ltd".into(),
                domain: "contoso-it.com.au".into(),
            },
            refresh_token: Secret::new("rt-2"),
        }),
    );
}

#[test]
fn a_refused_person_signs_out_and_a_permitted_one_signs_in() {
    let mut app = App::new(setup(None), false);
    sign_in(&mut app, STRANGER);
    assert_only_sign_in(&mut app, "is not on cspsync's allowed users");
    // Sign out: still only Sign in, now asking for a sign-in.
    send(&mut app, key(KeyCode::Char('1')));
    send(&mut app, key(KeyCode::Char('o')));
    assert_eq!(app.access(), Access::SignedOut);
    assert_only_sign_in(&mut app, "Sign in first");
    // The viewer signs in: every tab again.
    sign_in(&mut app, VIEWER);
    assert_eq!(app.access(), Access::Allowed(Role::Viewer));
    assert_all_tabs(&mut app, "viewer after the refused person");
    // A restart remembers the viewer.
    let mut again = App::new(app.setup.clone(), false);
    assert_all_tabs(&mut again, "viewer, restarted");
}

#[test]
fn the_first_sign_in_makes_the_admin_and_the_wizard_goes_on() {
    let mut s = Setup::default();
    s.settings.microsoft.client_id = "9b3c5b1e-6d3a-4a8e-9f0a-2c1d4e5f6a7b".into();
    let mut app = App::new(s, false);
    sign_in(&mut app, STRANGER);
    // Whoever sets cspsync up is its admin (the first sign-in has no list to be on).
    assert_eq!(app.access(), Access::Admin);
    assert_eq!(app.setup.settings.microsoft.setup_user_oid, STRANGER);
    assert_eq!(app.tab, Tab::Distributor, "the wizard moved on");
}

#[test]
fn decide_treats_older_settings_without_a_signed_in_user_as_the_setup_account() {
    let mut s = Settings::default();
    s.microsoft.setup_user_oid = ADMIN.into();
    assert_eq!(access::decide(&s, true), Access::Admin);
    assert_eq!(access::decide(&s, false), Access::SignedOut);
    // Object ids compare case-insensitively.
    s.microsoft.signed_in_oid = ADMIN.to_uppercase();
    assert_eq!(access::decide(&s, true), Access::Admin);
}
