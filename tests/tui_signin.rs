//! The Sign in tab: screens (insta snapshots at 80x24 and 120x40), key-driven flows through
//! the pure update function, and the device code sign-in against the simulated world.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use crossterm::event::KeyCode;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::mpsc;

use cspsync::access::Access;
use cspsync::audit::{self, Actor};
use cspsync::config::{AllowedUser, ConfigDir, Endpoints, Role, Settings};
use cspsync::connect::Context;
use cspsync::secret::Secret;
use cspsync::sim::generate::{GenOptions, generate};
use cspsync::sim::{FaultSpec, SimHandle, World};
use cspsync::tui::app::{self, App, Effect, Msg, Setup, Tab};
use cspsync::tui::panes::Step;
use cspsync::tui::panes::signin::{
    self, Account, Cmd, Failure, MspDetails, ONMICROSOFT_REASON, Phase, Refusal, Stage,
    check_account,
};
use cspsync::tui::runner::{self, Demo, Services};
use cspsync::tui::testing::{key, screen, send};
use cspsync::tui::theme::Theme;

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];
const URL: &str = "https://microsoft.com/devicelogin";
const CODE: &str = "FJXK7QZRL";
const TENANT: &str = "84841066-274d-4ec0-a5c1-276be684bdd3";
const OTHER_TENANT: &str = "b44bb1fb-c595-4bd2-a0c4-1c6e2a4a7f02";
const RT: &str = "0.AVEA-refresh-token-that-must-never-be-shown";

fn snap(name: &str, app: &App) {
    for (w, h) in SIZES {
        let text = screen(app, w, h);
        assert!(!text.contains(RT), "{name}: the refresh token is on screen");
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), text);
    }
}

fn fresh() -> App {
    let mut setup = Setup::default();
    setup.settings.microsoft.client_id = "9b3c5b1e-6d3a-4a8e-9f0a-2c1d4e5f6a7b".into();
    App::new(setup, false)
}

/// A setup signed in earlier (as the saved files have it).
fn saved() -> Setup {
    let mut s = Setup::default();
    let m = &mut s.settings.microsoft;
    m.client_id = "9b3c5b1e-6d3a-4a8e-9f0a-2c1d4e5f6a7b".into();
    m.tenant_id = TENANT.into();
    m.tenant_name = "Contoso IT Pty Ltd".into();
    m.domain = "contoso-it.com.au".into();
    m.setup_user_oid = "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e".into();
    m.setup_user_name = "alex.nguyen@contoso-it.com.au".into();
    s.secrets.microsoft_refresh_token = Some(RT.into());
    s
}

fn account(upn: &str, tenant: &str) -> Account {
    Account {
        tenant_id: tenant.into(),
        oid: "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e".into(),
        username: Some(upn.into()),
        name: Some("Alex Nguyen".into()),
        mfa: true,
    }
}

fn details() -> MspDetails {
    MspDetails {
        tenant_id: TENANT.into(),
        tenant_name: "Contoso IT Pty Ltd".into(),
        domain: "contoso-it.com.au".into(),
    }
}

fn sign_in_effect(effects: &[Effect]) -> Option<&Cmd> {
    effects.iter().find_map(|e| match e {
        Effect::SignIn(c) => Some(c),
        _ => None,
    })
}

/// Press Enter; returns the new flow's generation (and checks the command).
fn press_enter(app: &mut App) -> u64 {
    let effects = send(app, key(KeyCode::Enter));
    match sign_in_effect(&effects) {
        Some(Cmd::Start {
            generation,
            settings,
        }) => {
            assert_eq!(**settings, app.setup.settings, "the flow gets the settings");
            *generation
        }
        other => panic!("Enter should start a sign-in, got {other:?}"),
    }
}

fn code(generation: u64, demo: bool) -> Msg {
    Msg::SignIn(signin::Msg::Code {
        generation,
        user_code: CODE.into(),
        verification_uri: URL.into(),
        expires_in_secs: 900,
        demo,
    })
}

fn signed_in(generation: u64, account: Account) -> Msg {
    Msg::SignIn(signin::Msg::SignedIn {
        generation,
        account,
        details: details(),
        refresh_token: Secret::new(RT),
    })
}

fn waiting(demo: bool) -> App {
    let mut app = fresh();
    let g = press_enter(&mut app);
    send(&mut app, code(g, demo));
    app
}

fn saves(effects: &[Effect]) -> Vec<Setup> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Save(s) => Some((**s).clone()),
            _ => None,
        })
        .collect()
}

fn hint_keys(app: &App) -> Vec<&'static str> {
    app.hints().iter().map(|h| h.key).collect()
}

// ----- screens -------------------------------------------------------------------------------

#[test]
fn idle_screen() {
    let app = fresh();
    assert_eq!(app.tab, Tab::SignIn);
    let text = screen(&app, 80, 24);
    assert!(text.contains("Global Administrator"), "{text}");
    assert!(text.contains("MFA"), "{text}");
    assert!(text.contains(".onmicrosoft.com"), "{text}");
    snap("idle", &app);
}

#[test]
fn starting_screen() {
    let mut app = fresh();
    press_enter(&mut app);
    assert!(screen(&app, 80, 24).contains("Asking Microsoft for a sign-in code"));
    snap("starting", &app);
}

#[test]
fn waiting_screen_shows_url_big_code_qr_and_countdown() {
    let app = waiting(false);
    let big = screen(&app, 120, 40);
    assert!(big.contains(URL) && big.contains(CODE), "{big}");
    assert!(big.contains("Code expires in 15:00"), "{big}");
    assert!(big.contains("Or scan with your phone"), "{big}");
    assert!(
        big.contains('▀') || big.contains('▄'),
        "no QR drawn:\n{big}"
    );
    // The code is drawn large: five rows of block glyphs.
    assert!(big.lines().filter(|l| l.contains("█████")).count() >= 3);
    // 80x24: the code and the page still fit; the QR does not, and the screen says so.
    let small = screen(&app, 80, 24);
    assert!(small.contains(URL) && small.contains(CODE), "{small}");
    assert!(
        small.contains("Enlarge the terminal to see a QR code"),
        "{small}"
    );
    assert!(small.contains("Code expires in 15:00"), "{small}");
    snap("waiting", &app);
}

#[test]
fn waiting_screen_in_demo_says_the_sim_approves() {
    let app = waiting(true);
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("Demo: the simulated browser approves this code in a few seconds."),
        "{text}"
    );
    snap("waiting_demo", &app);
}

#[test]
fn the_qr_code_on_screen_is_the_verification_url() {
    let app = waiting(false);
    let text = screen(&app, 120, 40);
    let rows: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
    let code = qrcode::QrCode::new(URL.as_bytes()).unwrap();
    let w = code.width();
    let colors = code.to_colors();
    // Find the QR: the first row that is a run of full blocks as wide as symbol + quiet zone.
    let size = w + 4;
    let (top, left) = rows
        .iter()
        .enumerate()
        .find_map(|(y, r)| {
            (0..(r.len() + 1).saturating_sub(size))
                .find(|x| r[*x..*x + size].iter().all(|c| *c == '█'))
                .filter(|x| *x > 60)
                .map(|x| (y, x))
        })
        .expect("a QR code on screen");
    let ink = |mx: usize, my: usize| -> bool {
        let (x, y) = (left + 2 + mx, 2 + my);
        let c = rows[top + y / 2][x];
        if y % 2 == 0 {
            matches!(c, '█' | '▀')
        } else {
            matches!(c, '█' | '▄')
        }
    };
    for my in 0..w {
        for mx in 0..w {
            let light = colors[my * w + mx] == qrcode::Color::Light;
            assert_eq!(ink(mx, my), light, "module ({mx},{my})");
        }
    }
}

#[test]
fn verifying_screen() {
    let mut app = waiting(false);
    let g = app.signin.generation;
    send(
        &mut app,
        Msg::SignIn(signin::Msg::Verifying {
            generation: g,
            account: account("alex.nguyen@contoso-it.com.au", TENANT),
        }),
    );
    let text = screen(&app, 80, 24);
    assert!(text.contains("Signed in as Alex Nguyen (alex.nguyen@contoso-it.com.au)"));
    assert!(text.contains("Reading your MSP details"));
    assert_eq!(app.status(Tab::SignIn), Step::Busy);
    snap("verifying", &app);
}

#[test]
fn done_screen_shows_the_msp_details() {
    let mut app = waiting(false);
    let g = app.signin.generation;
    send(
        &mut app,
        signed_in(g, account("alex.nguyen@contoso-it.com.au", TENANT)),
    );
    send(&mut app, Msg::Saved(Ok(())));
    send(&mut app, key(KeyCode::Char('1')));
    let text = screen(&app, 80, 24);
    for want in [
        "Signed in as Alex Nguyen <alex.nguyen@contoso-it.com.au> (admin).",
        "Contoso IT Pty Ltd",
        TENANT,
        "contoso-it.com.au",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    assert!(!text.contains("did not use MFA"));
    snap("done", &app);
}

#[test]
fn done_without_mfa_warns() {
    let mut app = waiting(false);
    let g = app.signin.generation;
    let mut a = account("alex.nguyen@contoso-it.com.au", TENANT);
    a.mfa = false;
    send(&mut app, signed_in(g, a));
    send(&mut app, key(KeyCode::Char('1')));
    let text = screen(&app, 80, 24);
    assert!(text.contains("did not use MFA"), "{text}");
    assert!(text.contains("aka.ms/mfasetup"), "{text}");
}

#[test]
fn remembered_screen() {
    let mut app = App::new(saved(), false);
    // Signed in already: the wizard opens on the next step.
    assert_eq!(app.tab, Tab::Distributor);
    assert_eq!(app.status(Tab::SignIn), Step::Done);
    send(&mut app, key(KeyCode::Char('1')));
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("Signed in as alex.nguyen@contoso-it.com.au (admin, remembered)."),
        "{text}"
    );
    assert!(text.contains("You set cspsync up"), "{text}");
    assert!(text.contains("Contoso IT Pty Ltd"));
    assert!(!app.wants_tick());
    assert!(hint_keys(&app).contains(&"o"));
    snap("remembered", &app);
}

#[test]
fn refused_onmicrosoft_screen() {
    let mut app = waiting(false);
    let g = app.signin.generation;
    send(
        &mut app,
        Msg::SignIn(signin::Msg::Refused {
            generation: g,
            account: account("admin@contosoit.onmicrosoft.com", TENANT),
            refusal: Refusal::OnMicrosoftDomain,
        }),
    );
    let text = screen(&app, 120, 40);
    assert!(text.contains(ONMICROSOFT_REASON), "{text}");
    assert!(text.contains("admin@contosoit.onmicrosoft.com"));
    assert!(text.contains("Nothing was saved."));
    snap("refused_onmicrosoft", &app);
}

#[test]
fn refused_other_tenant_screen() {
    let mut app = App::new(saved(), false);
    send(&mut app, key(KeyCode::Char('1')));
    let g = press_enter(&mut app);
    send(&mut app, code(g, false));
    send(
        &mut app,
        Msg::SignIn(signin::Msg::Refused {
            generation: g,
            account: account("sam@fabrikam.com", OTHER_TENANT),
            refusal: Refusal::OtherTenant {
                expected: TENANT.into(),
            },
        }),
    );
    let text = screen(&app, 120, 40);
    assert!(text.contains("another Microsoft tenant"), "{text}");
    assert!(text.contains("Contoso IT Pty Ltd") && text.contains(OTHER_TENANT));
    // The saved sign-in is untouched; it can still be signed out.
    assert_eq!(app.setup, saved());
    assert!(hint_keys(&app).contains(&"o"));
    snap("refused_other_tenant", &app);
}

#[test]
fn expired_screen() {
    let mut app = waiting(false);
    for _ in 0..900 {
        send(&mut app, Msg::Tick);
    }
    let text = screen(&app, 80, 24);
    assert!(text.contains("The sign-in code expired."), "{text}");
    assert!(text.contains("15 minutes"), "{text}");
    assert!(text.contains("Enter"));
    snap("expired", &app);
}

fn failed(app: &mut App, failure: Failure) {
    let g = app.signin.generation;
    send(
        app,
        Msg::SignIn(signin::Msg::Failed {
            generation: g,
            failure,
        }),
    );
}

#[test]
fn error_screens() {
    let mut app = waiting(false);
    failed(
        &mut app,
        Failure {
            stage: Stage::SignIn,
            message: "Microsoft sign-in could not be reached after 6 attempt(s) [POST /organizations/oauth2/v2.0/devicecode].".into(),
            hint: "Check the network connection and the service's base URL.".into(),
        },
    );
    let text = screen(&app, 80, 24);
    assert!(text.contains("The sign-in did not finish."), "{text}");
    assert!(
        text.contains("What to do: Check the network connection"),
        "{text}"
    );
    assert!(hint_keys(&app).contains(&"Enter"));
    snap("error_network", &app);

    let mut app = waiting(false);
    failed(
        &mut app,
        Failure {
            stage: Stage::Details,
            message: "Microsoft Graph said: The service is temporarily unavailable. (HTTP 502, generalException) [GET /organization].".into(),
            hint: "The service is having trouble; try again later.".into(),
        },
    );
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("Signed in, but your MSP details could not be read."),
        "{text}"
    );
    snap("error_graph", &app);

    let mut app = waiting(false);
    failed(&mut app, Failure::declined());
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("The sign-in was declined in the browser."),
        "{text}"
    );
    snap("error_declined", &app);
}

#[test]
fn tiny_and_odd_areas_never_panic() {
    let theme = Theme::new(true);
    let mut apps = vec![fresh(), waiting(true), App::new(saved(), false)];
    let mut refused = waiting(false);
    let g = refused.signin.generation;
    send(
        &mut refused,
        Msg::SignIn(signin::Msg::Refused {
            generation: g,
            account: account("a@b.onmicrosoft.com", TENANT),
            refusal: Refusal::OnMicrosoftDomain,
        }),
    );
    apps.push(refused);
    // Standings: signed out of a set-up cspsync, a viewer, someone not allowed.
    apps.push(App::new(with_allowed_users(), false));
    let mut viewing = App::new(with_allowed_users(), false);
    sign_in_as(&mut viewing, viewer());
    apps.push(viewing);
    let mut denied = App::new(with_allowed_users(), false);
    sign_in_as(&mut denied, stranger());
    apps.push(denied);
    for app in &apps {
        for w in (0..=130).step_by(7).chain([1, 2, 33, 36, 37, 79, 80]) {
            for h in (0..=45).step_by(3).chain([1, 2, 17, 18, 19, 20]) {
                let mut t = Terminal::new(TestBackend::new(w.max(1), h.max(1))).unwrap();
                t.draw(|f| {
                    let area = ratatui::layout::Rect {
                        width: w,
                        height: h,
                        ..f.area()
                    };
                    signin::render(&app.signin, &app.setup, &theme, f, area)
                })
                .unwrap();
            }
        }
    }
}

// ----- flows through the pure update ---------------------------------------------------------

#[test]
fn enter_starts_a_flow_and_the_code_counts_down() {
    let mut app = fresh();
    assert_eq!(app.status(Tab::SignIn), Step::ToDo);
    assert_eq!(hint_keys(&app)[0], "Enter");
    let g = press_enter(&mut app);
    assert_eq!(app.status(Tab::SignIn), Step::Busy);
    assert_eq!(hint_keys(&app)[0], "Esc/c");
    // Enter again while busy does not start a second flow.
    assert!(sign_in_effect(&send(&mut app, key(KeyCode::Enter))).is_none());
    assert!(!app.wants_tick(), "no countdown before the code arrives");
    send(&mut app, code(g, false));
    assert!(app.wants_tick());
    send(&mut app, Msg::Tick);
    send(&mut app, Msg::Tick);
    assert!(screen(&app, 80, 24).contains("Code expires in 14:58"));
    assert!(
        !app::update(&mut app, Msg::Tick)
            .iter()
            .any(|e| matches!(e, Effect::Save(_)))
    );
}

#[test]
fn the_countdown_expires_the_code_and_stops_the_wait() {
    let mut app = waiting(false);
    let g = app.signin.generation;
    let mut last = Vec::new();
    for _ in 0..900 {
        last = send(&mut app, Msg::Tick);
    }
    // At zero: expired, and the background wait is told to stop.
    assert!(matches!(app.signin.phase, Phase::Expired { .. }));
    assert!(
        matches!(sign_in_effect(&last), Some(Cmd::Cancel { generation }) if *generation == g),
        "{last:?}"
    );
    assert!(!app.wants_tick());
    // A late answer of the expired flow changes nothing.
    send(
        &mut app,
        signed_in(g, account("alex.nguyen@contoso-it.com.au", TENANT)),
    );
    assert!(matches!(app.signin.phase, Phase::Expired { .. }));
    assert_eq!(app.setup.secrets.microsoft_refresh_token, None);
    // Enter retries with a new flow.
    let g2 = press_enter(&mut app);
    assert!(g2 > g);
    send(&mut app, code(g2, false));
    assert!(screen(&app, 80, 24).contains("Code expires in 15:00"));
}

#[test]
fn expired_from_the_background_shows_expired() {
    let mut app = waiting(false);
    let g = app.signin.generation;
    send(
        &mut app,
        Msg::SignIn(signin::Msg::Expired {
            generation: g,
            valid_secs: Some(90),
        }),
    );
    assert!(screen(&app, 80, 24).contains("within the 90 seconds it was valid"));
    assert_eq!(hint_keys(&app)[0], "Enter");
}

#[test]
fn success_saves_the_tenant_and_the_refresh_token_and_moves_on() {
    let mut app = waiting(false);
    let g = app.signin.generation;
    let effects = send(
        &mut app,
        Msg::SignIn(signin::Msg::Verifying {
            generation: g,
            account: account("alex.nguyen@contoso-it.com.au", TENANT),
        }),
    );
    assert!(effects.is_empty());
    let effects = send(
        &mut app,
        signed_in(g, account("alex.nguyen@contoso-it.com.au", TENANT)),
    );
    let saved_setup = saves(&effects);
    assert_eq!(saved_setup.len(), 1, "{effects:?}");
    let s = &saved_setup[0];
    assert_eq!(s, &app.setup);
    let m = &s.settings.microsoft;
    assert_eq!(m.tenant_id, TENANT);
    assert_eq!(m.tenant_name, "Contoso IT Pty Ltd");
    assert_eq!(m.domain, "contoso-it.com.au");
    assert_eq!(m.setup_user_oid, "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e");
    assert_eq!(m.setup_user_name, "alex.nguyen@contoso-it.com.au");
    assert_eq!(
        m.client_id, "9b3c5b1e-6d3a-4a8e-9f0a-2c1d4e5f6a7b",
        "the app id is kept"
    );
    assert_eq!(s.secrets.microsoft_refresh_token.as_deref(), Some(RT));
    assert_eq!(app.status(Tab::SignIn), Step::Done);
    // The wizard moves on to the next open step.
    assert_eq!(app.tab, Tab::Distributor);
    // The result message never shows the token.
    let dbg = format!("{:?}", signed_in(g, account("a@b.com", TENANT)));
    assert!(!dbg.contains(RT), "{dbg}");
    // A restart remembers the sign-in.
    let again = App::new(app.setup.clone(), false);
    assert!(matches!(
        again.signin.phase,
        Phase::SignedIn { account: None }
    ));
}

#[test]
fn cancel_with_esc_or_c_drops_later_results() {
    for cancel_key in [KeyCode::Esc, KeyCode::Char('c')] {
        let mut app = waiting(false);
        let g = app.signin.generation;
        let effects = send(&mut app, key(cancel_key));
        assert!(
            matches!(sign_in_effect(&effects), Some(Cmd::Cancel { generation }) if *generation == g),
            "{effects:?}"
        );
        assert_eq!(app.signin.phase, Phase::Idle);
        assert!(screen(&app, 80, 24).contains("Sign-in cancelled."));
        assert_eq!(app.status(Tab::SignIn), Step::ToDo);
        // The cancelled flow's results are stale.
        let effects = send(
            &mut app,
            signed_in(g, account("alex.nguyen@contoso-it.com.au", TENANT)),
        );
        assert!(effects.is_empty());
        assert_eq!(app.setup.secrets.microsoft_refresh_token, None);
        assert_eq!(app.signin.phase, Phase::Idle);
    }
    // Esc while nothing runs does nothing.
    let mut app = fresh();
    assert!(send(&mut app, key(KeyCode::Esc)).is_empty());
}

#[test]
fn a_result_of_an_older_flow_is_ignored() {
    let mut app = waiting(false);
    let g1 = app.signin.generation;
    send(&mut app, key(KeyCode::Esc));
    let g2 = press_enter(&mut app);
    // The first flow's code arrives late: the new flow still waits for its own.
    send(&mut app, code(g1, false));
    assert_eq!(app.signin.phase, Phase::Starting);
    send(&mut app, code(g2, false));
    assert!(matches!(app.signin.phase, Phase::Waiting(_)));
}

#[test]
fn an_onmicrosoft_account_is_refused_without_saving() {
    let mut app = waiting(false);
    let g = app.signin.generation;
    let before = app.setup.clone();
    let effects = send(
        &mut app,
        signed_in(g, account("Admin@ContosoIT.OnMicrosoft.com", TENANT)),
    );
    assert!(saves(&effects).is_empty(), "{effects:?}");
    assert_eq!(app.setup, before);
    assert!(matches!(
        app.signin.phase,
        Phase::Refused {
            refusal: Refusal::OnMicrosoftDomain,
            ..
        }
    ));
    assert!(screen(&app, 120, 40).contains(ONMICROSOFT_REASON));
    assert_eq!(app.status(Tab::SignIn), Step::ToDo);
    // Enter gets a new code.
    press_enter(&mut app);
}

#[test]
fn an_account_of_another_tenant_is_refused_without_saving() {
    let mut app = App::new(saved(), false);
    send(&mut app, key(KeyCode::Char('1')));
    let g = press_enter(&mut app);
    send(&mut app, code(g, false));
    let effects = send(
        &mut app,
        signed_in(g, account("sam@fabrikam.com", OTHER_TENANT)),
    );
    assert!(saves(&effects).is_empty());
    assert_eq!(app.setup, saved());
    assert!(matches!(
        app.signin.phase,
        Phase::Refused {
            refusal: Refusal::OtherTenant { .. },
            ..
        }
    ));
    assert_eq!(
        app.status(Tab::SignIn),
        Step::Done,
        "the saved sign-in stays"
    );
    // The same tenant (any case) signs in again and replaces the token.
    let g = press_enter(&mut app);
    send(&mut app, code(g, false));
    let effects = send(
        &mut app,
        Msg::SignIn(signin::Msg::SignedIn {
            generation: g,
            account: account("alex.nguyen@contoso-it.com.au", &TENANT.to_uppercase()),
            details: details(),
            refresh_token: Secret::new("new-refresh-token"),
        }),
    );
    let s = saves(&effects);
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0].secrets.microsoft_refresh_token.as_deref(),
        Some("new-refresh-token")
    );
}

#[test]
fn check_account_rules() {
    let ok = account("alex@contoso-it.com.au", TENANT);
    assert_eq!(check_account(&ok, ""), None);
    assert_eq!(check_account(&ok, TENANT), None);
    assert_eq!(
        check_account(&ok, &format!(" {} ", TENANT.to_uppercase())),
        None
    );
    assert_eq!(
        check_account(&account("a@x.onmicrosoft.com", TENANT), ""),
        Some(Refusal::OnMicrosoftDomain)
    );
    assert_eq!(
        check_account(&account("a@X.ONMICROSOFT.COM", TENANT), TENANT),
        Some(Refusal::OnMicrosoftDomain)
    );
    // A custom domain that merely contains the word is fine.
    assert_eq!(
        check_account(&account("a@onmicrosoft.com.au", TENANT), ""),
        None
    );
    assert_eq!(
        check_account(&ok, OTHER_TENANT),
        Some(Refusal::OtherTenant {
            expected: OTHER_TENANT.into()
        })
    );
}

#[test]
fn sign_out_forgets_the_session_but_keeps_the_setup_account() {
    let mut setup = saved();
    setup.settings.microsoft.signed_in_oid = "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e".into();
    setup.settings.microsoft.signed_in_name = "alex.nguyen@contoso-it.com.au".into();
    let mut app = App::new(setup, false);
    send(&mut app, key(KeyCode::Char('1')));
    let effects = send(&mut app, key(KeyCode::Char('o')));
    let s = saves(&effects);
    assert_eq!(s.len(), 1, "{effects:?}");
    let m = &s[0].settings.microsoft;
    assert_eq!(s[0].secrets.microsoft_refresh_token, None);
    assert_eq!(m.signed_in_oid, "");
    assert_eq!(m.signed_in_name, "");
    // cspsync stays set up: the tenant and the setup account (admin) are kept.
    assert_eq!(m.tenant_id, TENANT);
    assert_eq!(m.tenant_name, "Contoso IT Pty Ltd");
    assert_eq!(m.setup_user_oid, "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e");
    assert_eq!(m.setup_user_name, "alex.nguyen@contoso-it.com.au");
    assert_eq!(m.client_id, "9b3c5b1e-6d3a-4a8e-9f0a-2c1d4e5f6a7b");
    assert_eq!(s[0], app.setup);
    // The sign-out goes to the audit log, by whoever was signed in.
    let r = records(&effects);
    assert_eq!(r.len(), 1, "{effects:?}");
    assert_eq!(r[0].1, audit::SIGN_OUT);
    assert_eq!(
        r[0].0,
        Actor::new(
            "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e",
            "alex.nguyen@contoso-it.com.au"
        )
    );
    assert_eq!(app.status(Tab::SignIn), Step::ToDo);
    assert_eq!(app.access(), Access::SignedOut);
    let text = screen(&app, 80, 24);
    assert!(text.contains("Signed out"), "{text}");
    assert!(
        text.contains("cspsync is set up for Contoso IT Pty Ltd (contoso-it.com.au)."),
        "{text}"
    );
    snap("signed_out_set_up", &app);
    // Not signed in: o does nothing.
    assert!(send(&mut app, key(KeyCode::Char('o'))).is_empty());
    assert!(!hint_keys(&app).contains(&"o"));
    // Signed out, only Sign in opens.
    send(&mut app, key(KeyCode::Char('2')));
    assert_eq!(app.tab, Tab::SignIn);
    // The code screen no longer asks for the MSP admin: anyone allowed may sign in.
    let g = press_enter(&mut app);
    send(&mut app, code(g, false));
    let text = screen(&app, 120, 40);
    assert!(
        text.contains("3. Sign in with your work account and accept"),
        "{text}"
    );
    assert!(!text.contains("Global Administrator"), "{text}");
    snap("waiting_set_up", &app);
}

// ----- who is signed in (issue 4 §2) ---------------------------------------------------------

const ADMIN_OID: &str = "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e";
const OP_OID: &str = "0d2f6a7e-1b8c-4e3f-9a5d-6c7b8e9f0a1b";
const VIEW_OID: &str = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b";
const EVE_OID: &str = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";

fn person(oid: &str, upn: &str, name: &str) -> Account {
    Account {
        tenant_id: TENANT.into(),
        oid: oid.into(),
        username: Some(upn.into()),
        name: Some(name.into()),
        mfa: true,
    }
}

fn operator() -> Account {
    person(OP_OID, "olivia.chen@contoso-it.com.au", "Olivia Chen")
}

fn viewer() -> Account {
    person(VIEW_OID, "victor.ross@contoso-it.com.au", "Victor Ross")
}

fn stranger() -> Account {
    person(EVE_OID, "eve.adams@contoso-it.com.au", "Eve Adams")
}

/// Set up by Alex (admin), with Olivia (operator) and Victor (viewer) allowed, and signed out.
fn with_allowed_users() -> Setup {
    let mut s = saved();
    s.secrets.microsoft_refresh_token = None;
    for (a, role) in [(operator(), Role::Operator), (viewer(), Role::Viewer)] {
        s.settings.access.allowed.push(AllowedUser {
            oid: a.oid.clone(),
            upn: a.username.clone().unwrap(),
            name: a.name.clone().unwrap(),
            role,
        });
    }
    s.settings.access.saved_at = Some("2025-06-11T03:04:05Z".into());
    s
}

/// Who the audit effects record: (actor, action, details).
fn records(effects: &[Effect]) -> Vec<(Actor, &'static str, serde_json::Value)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SignIn(Cmd::Record {
                actor,
                action,
                details,
            }) => Some((actor.clone(), *action, details.clone())),
            _ => None,
        })
        .collect()
}

/// Sign in as `who` through the pure update; returns the effects of the result.
fn sign_in_as(app: &mut App, who: Account) -> Vec<Effect> {
    send(app, key(KeyCode::Char('1')));
    let g = press_enter(app);
    send(app, code(g, false));
    send(
        app,
        Msg::SignIn(signin::Msg::SignedIn {
            generation: g,
            account: who,
            details: details(),
            refresh_token: Secret::new(RT),
        }),
    )
}

#[test]
fn the_first_sign_in_records_the_setup_account_and_who_is_signed_in() {
    let mut app = fresh();
    assert_eq!(app.access(), Access::FirstSetup);
    let effects = sign_in_as(&mut app, account("alex.nguyen@contoso-it.com.au", TENANT));
    let m = &app.setup.settings.microsoft;
    assert_eq!(m.setup_user_oid, ADMIN_OID);
    assert_eq!(m.setup_user_name, "alex.nguyen@contoso-it.com.au");
    assert_eq!(m.signed_in_oid, ADMIN_OID);
    assert_eq!(m.signed_in_name, "alex.nguyen@contoso-it.com.au");
    assert_eq!(app.access(), Access::Admin);
    let r = records(&effects);
    assert_eq!(r.len(), 1, "{effects:?}");
    assert_eq!(r[0].1, audit::SIGN_IN);
    assert_eq!(r[0].0.oid, ADMIN_OID);
    assert_eq!(r[0].2["role"], "admin");
    assert_eq!(r[0].2["first_setup"], true);
    assert_eq!(r[0].2["tenant_id"], TENANT);
    // Nothing secret in the record.
    assert!(!format!("{r:?}").contains(RT));
}

#[test]
fn a_later_sign_in_of_an_allowed_user_keeps_the_setup_account() {
    for (who, role, label) in [
        (operator(), Role::Operator, "operator"),
        (viewer(), Role::Viewer, "viewer"),
    ] {
        let mut app = App::new(with_allowed_users(), false);
        assert_eq!(app.access(), Access::SignedOut);
        assert_eq!(app.tab, Tab::SignIn);
        let effects = sign_in_as(&mut app, who.clone());
        let m = &app.setup.settings.microsoft;
        assert_eq!(m.setup_user_oid, ADMIN_OID, "the admin stays the admin");
        assert_eq!(m.setup_user_name, "alex.nguyen@contoso-it.com.au");
        assert_eq!(m.signed_in_oid, who.oid);
        assert_eq!(m.signed_in_name, who.username.clone().unwrap());
        assert_eq!(
            app.setup.secrets.microsoft_refresh_token.as_deref(),
            Some(RT)
        );
        assert_eq!(app.access(), Access::Allowed(role));
        assert_eq!(saves(&effects).len(), 1);
        let r = records(&effects);
        assert_eq!(r[0].1, audit::SIGN_IN);
        assert_eq!(
            r[0].0,
            Actor::new(who.oid.clone(), who.username.clone().unwrap())
        );
        assert_eq!(r[0].2["role"], label);
        assert_eq!(r[0].2["first_setup"], false);
        // Every step was done already: the wizard stays where the person is.
        send(&mut app, key(KeyCode::Char('1')));
        let text = screen(&app, 80, 24);
        let want = format!(
            "Signed in as {} <{}> ({label}).",
            who.name.clone().unwrap(),
            who.username.clone().unwrap()
        );
        assert!(text.contains(&want), "{want}:\n{text}");
        snap(&format!("standing_{label}"), &app);
        // Remembered on the next start.
        let mut again = App::new(app.setup.clone(), false);
        send(&mut again, key(KeyCode::Char('1')));
        let text = screen(&again, 80, 24);
        let want = format!(
            "Signed in as {} ({label}, remembered).",
            who.username.clone().unwrap()
        );
        assert!(text.contains(&want), "{want}:\n{text}");
    }
}

#[test]
fn someone_not_on_the_list_is_told_so_and_kept_on_sign_in() {
    let mut app = App::new(with_allowed_users(), false);
    let effects = sign_in_as(&mut app, stranger());
    // The session is kept (so the refusal survives a restart), the admin is unchanged.
    let m = &app.setup.settings.microsoft;
    assert_eq!(m.setup_user_oid, ADMIN_OID);
    assert_eq!(m.signed_in_oid, EVE_OID);
    assert_eq!(saves(&effects).len(), 1);
    assert_eq!(
        app.access(),
        Access::Denied {
            name: "eve.adams@contoso-it.com.au".into()
        }
    );
    let r = records(&effects);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1, audit::SIGN_IN_REFUSED);
    assert_eq!(r[0].0.oid, EVE_OID);
    assert_eq!(r[0].2["reason"], "not_allowed");
    assert_eq!(app.tab, Tab::SignIn);
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("✗ Eve Adams <eve.adams@contoso-it.com.au> is not on cspsync's allowed"),
        "{text}"
    );
    assert!(
        text.contains("ask alex.nguyen@contoso-it.com.au to add you in the Users tab."),
        "{text}"
    );
    assert!(
        !text.contains("Tenant name"),
        "no MSP details for a refused person:\n{text}"
    );
    snap("denied", &app);
    // Every other tab sends the person back here, with a notice.
    for c in '2'..='7' {
        send(&mut app, key(KeyCode::Char(c)));
        assert_eq!(app.tab, Tab::SignIn, "key {c}");
        assert!(app.notice.as_ref().is_some_and(|n| n.error));
    }
    send(&mut app, key(KeyCode::Tab));
    assert_eq!(app.tab, Tab::SignIn);
    let text = screen(&app, 80, 24);
    assert!(text.contains("is not on cspsync's allowed users"), "{text}");
    // After a restart too.
    let mut again = App::new(app.setup.clone(), false);
    assert_eq!(again.tab, Tab::SignIn);
    let text = screen(&again, 120, 40);
    assert!(
        text.contains("✗ eve.adams@contoso-it.com.au is not on cspsync's allowed users"),
        "{text}"
    );
    snap("denied_remembered", &again);
    // Sign out, then someone allowed signs in: every tab opens again.
    let effects = send(&mut again, key(KeyCode::Char('o')));
    assert_eq!(records(&effects)[0].1, audit::SIGN_OUT);
    assert_eq!(records(&effects)[0].0.oid, EVE_OID);
    assert_eq!(again.access(), Access::SignedOut);
    sign_in_as(&mut again, operator());
    assert_eq!(again.access(), Access::Allowed(Role::Operator));
    send(&mut again, key(KeyCode::Char('4')));
    assert_eq!(again.tab, Tab::Psa);
}

#[test]
fn a_denied_person_may_sign_in_as_someone_else_without_signing_out() {
    let mut app = App::new(with_allowed_users(), false);
    sign_in_as(&mut app, stranger());
    assert!(!app.access().may_use_app());
    assert!(hint_keys(&app).contains(&"Enter"));
    sign_in_as(&mut app, account("alex.nguyen@contoso-it.com.au", TENANT));
    assert_eq!(app.access(), Access::Admin);
    assert_eq!(
        app.setup.settings.microsoft.signed_in_name,
        "alex.nguyen@contoso-it.com.au"
    );
    send(&mut app, key(KeyCode::Char('5')));
    assert_eq!(app.tab, Tab::Users);
}

#[test]
fn refusals_go_to_the_audit_log() {
    let mut app = waiting(false);
    let g = app.signin.generation;
    let effects = send(
        &mut app,
        Msg::SignIn(signin::Msg::Refused {
            generation: g,
            account: account("admin@contosoit.onmicrosoft.com", TENANT),
            refusal: Refusal::OnMicrosoftDomain,
        }),
    );
    let r = records(&effects);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1, audit::SIGN_IN_REFUSED);
    assert_eq!(r[0].0.name, "admin@contosoit.onmicrosoft.com");
    assert_eq!(r[0].2["reason"], "onmicrosoft_domain");

    let mut app = App::new(saved(), false);
    let effects = sign_in_as(&mut app, {
        let mut a = stranger();
        a.tenant_id = OTHER_TENANT.into();
        a
    });
    assert!(saves(&effects).is_empty());
    let r = records(&effects);
    assert_eq!(r[0].1, audit::SIGN_IN_REFUSED);
    assert_eq!(r[0].2["reason"], "other_tenant");
    assert_eq!(r[0].2["expected_tenant_id"], TENANT);
    // A stale result records nothing.
    let mut app = waiting(false);
    let g = app.signin.generation;
    send(&mut app, key(KeyCode::Esc));
    assert!(records(&send(&mut app, signed_in(g, stranger()))).is_empty());
}

#[test]
fn an_audit_failure_is_shown() {
    let mut app = App::new(saved(), false);
    send(&mut app, key(KeyCode::Char('1')));
    send(
        &mut app,
        Msg::SignIn(signin::Msg::AuditFailed {
            error: "cannot open the audit log /data/audit.jsonl: Permission denied (os error 13)"
                .into(),
        }),
    );
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("Not recorded in the audit log: cannot open the audit log"),
        "{text}"
    );
}

// ----- run() against the simulated world -----------------------------------------------------

fn world() -> World {
    let today = chrono::Utc::now().date_naive();
    let mut w = generate(&GenOptions::new(3, 20_250_611, today));
    w.app.device_code_interval_secs = 1;
    w
}

fn default_admin(w: &World) -> &cspsync::sim::world::User {
    cspsync::sim::entra::default_admin(w).unwrap()
}

struct Env {
    _sim: SimHandle,
    _dir: tempfile::TempDir,
    svc: Arc<Services>,
    settings: Settings,
    control: String,
    http: reqwest::Client,
}

async fn env(world: World, faults: FaultSpec, demo: bool) -> Env {
    let sim = cspsync::sim::start(world.clone(), faults, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let urls = sim.urls();
    let endpoints = Endpoints::from_sim(&urls).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigDir {
        dir: dir.path().to_path_buf(),
    };
    let demo = demo.then(|| Demo {
        control: urls.control.clone(),
    });
    let svc = Services::new(Context::with_endpoints(endpoints.clone()), config, demo);
    let mut settings = Settings {
        endpoints: Some(endpoints),
        ..Settings::default()
    };
    settings.microsoft.client_id = world.app.client_id.clone();
    Env {
        _sim: sim,
        _dir: dir,
        svc: Arc::new(svc),
        settings,
        control: urls.control,
        http: reqwest::Client::new(),
    }
}

impl Env {
    fn start(&self, generation: u64) -> (tokio::task::JoinHandle<()>, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel(16);
        let h = tokio::spawn(signin::run(
            Cmd::Start {
                generation,
                settings: Box::new(self.settings.clone()),
            },
            self.svc.clone(),
            tx,
        ));
        (h, rx)
    }

    async fn approve(&self, body: serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/device/approve", self.control))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
}

async fn next(rx: &mut mpsc::Receiver<Msg>) -> signin::Msg {
    match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
        Ok(Some(Msg::SignIn(m))) => m,
        other => panic!("expected a sign-in message, got {other:?}"),
    }
}

async fn user_code(rx: &mut mpsc::Receiver<Msg>) -> (String, signin::Msg) {
    let m = next(rx).await;
    match &m {
        signin::Msg::Code { user_code, .. } => (user_code.clone(), m.clone()),
        other => panic!("expected the code, got {other:?}"),
    }
}

#[tokio::test]
async fn run_signs_in_reads_the_msp_details_and_the_app_saves_them() {
    let w = world();
    let admin = default_admin(&w).clone();
    let e = env(w.clone(), FaultSpec::default(), false).await;
    let (task, mut rx) = e.start(1);
    let (uc, code_msg) = user_code(&mut rx).await;
    match &code_msg {
        signin::Msg::Code {
            generation,
            verification_uri,
            expires_in_secs,
            demo,
            ..
        } => {
            assert_eq!(*generation, 1);
            assert!(verification_uri.contains("devicelogin"));
            assert_eq!(*expires_in_secs, w.app.device_code_expires_secs);
            assert!(!demo);
        }
        _ => unreachable!(),
    }
    e.approve(serde_json::json!({ "user_code": uc })).await;
    let verifying = next(&mut rx).await;
    let signed_in = next(&mut rx).await;
    task.await.unwrap();
    assert_eq!(e.svc.signin.running(), None);
    match &signed_in {
        signin::Msg::SignedIn {
            account,
            details,
            refresh_token,
            ..
        } => {
            assert_eq!(account.tenant_id, w.msp.tenant_id);
            assert_eq!(account.oid, admin.id);
            assert_eq!(
                account.username.as_deref(),
                Some(admin.user_principal_name.as_str())
            );
            assert_eq!(details.tenant_id, w.msp.tenant_id);
            assert_eq!(details.tenant_name, w.msp.display_name);
            let default = w
                .msp
                .verified_domains
                .iter()
                .find(|d| d.is_default)
                .unwrap();
            assert_eq!(details.domain, default.name);
            assert!(!refresh_token.is_empty());
        }
        other => panic!("expected SignedIn, got {other:?}"),
    }

    // Through the app: the details are saved, and written to the config directory.
    let mut app = App::new(
        Setup {
            settings: e.settings.clone(),
            ..Setup::default()
        },
        false,
    );
    let g = press_enter(&mut app);
    assert_eq!(g, 1);
    send(&mut app, Msg::SignIn(code_msg));
    send(&mut app, Msg::SignIn(verifying));
    let effects = send(&mut app, Msg::SignIn(signed_in));
    let save = effects
        .into_iter()
        .find(|e| matches!(e, Effect::Save(_)))
        .unwrap();
    let (tx, mut saved_rx) = mpsc::channel(4);
    runner::spawn(save, e.svc.clone(), tx);
    match tokio::time::timeout(Duration::from_secs(10), saved_rx.recv()).await {
        Ok(Some(Msg::Saved(Ok(())))) => {}
        other => panic!("expected Saved(Ok), got {other:?}"),
    }
    let settings = e.svc.config.load_settings().unwrap();
    let secrets = e.svc.config.load_secrets().unwrap();
    assert_eq!(settings.microsoft.tenant_id, w.msp.tenant_id);
    assert_eq!(settings.microsoft.tenant_name, w.msp.display_name);
    assert!(secrets.microsoft_refresh_token.is_some());
    // The next start remembers it.
    let restarted = App::new(Setup { settings, secrets }, false);
    assert_eq!(restarted.status(Tab::SignIn), Step::Done);
    let mut restarted = restarted;
    send(&mut restarted, key(KeyCode::Char('1')));
    assert!(screen(&restarted, 80, 24).contains("(admin, remembered)"));
}

#[tokio::test]
async fn run_in_demo_waits_for_the_simulated_approval() {
    let w = world();
    let faults = FaultSpec {
        auto_approve_secs: Some(1),
        ..FaultSpec::default()
    };
    let e = env(w, faults, true).await;
    let (task, mut rx) = e.start(7);
    let (_, code_msg) = user_code(&mut rx).await;
    assert!(matches!(code_msg, signin::Msg::Code { demo: true, .. }));
    assert!(matches!(next(&mut rx).await, signin::Msg::Verifying { .. }));
    assert!(matches!(
        next(&mut rx).await,
        signin::Msg::SignedIn { generation: 7, .. }
    ));
    task.await.unwrap();
}

#[tokio::test]
async fn run_reports_a_declined_sign_in() {
    let e = env(world(), FaultSpec::default(), false).await;
    let (task, mut rx) = e.start(1);
    let (uc, _) = user_code(&mut rx).await;
    e.approve(serde_json::json!({ "user_code": uc, "decline": true }))
        .await;
    match next(&mut rx).await {
        signin::Msg::Failed { failure, .. } => {
            assert_eq!(failure.stage, Stage::SignIn);
            assert_eq!(failure, Failure::declined());
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    task.await.unwrap();
}

#[tokio::test]
async fn run_refuses_an_onmicrosoft_admin_before_reading_anything() {
    let mut w = world();
    let initial = w
        .msp
        .verified_domains
        .iter()
        .find(|d| d.is_initial)
        .unwrap()
        .name
        .clone();
    assert!(initial.ends_with(".onmicrosoft.com"), "{initial}");
    let admin_id = default_admin(&w).id.clone();
    let upn = format!("admin@{initial}");
    for u in &mut w.msp.users {
        if u.id == admin_id {
            u.user_principal_name = upn.clone();
            u.mail = Some(upn.clone());
        }
    }
    let e = env(w, FaultSpec::default(), false).await;
    let (task, mut rx) = e.start(1);
    let (uc, _) = user_code(&mut rx).await;
    e.approve(serde_json::json!({ "user_code": uc })).await;
    match next(&mut rx).await {
        signin::Msg::Refused {
            account, refusal, ..
        } => {
            assert_eq!(refusal, Refusal::OnMicrosoftDomain);
            assert_eq!(account.username.as_deref(), Some(upn.as_str()));
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    task.await.unwrap();
    assert!(rx.try_recv().is_err(), "nothing after the refusal");
}

#[tokio::test]
async fn run_refuses_an_account_of_another_tenant() {
    let mut e = env(world(), FaultSpec::default(), false).await;
    e.settings.microsoft.tenant_id = OTHER_TENANT.into();
    let (task, mut rx) = e.start(1);
    let (uc, _) = user_code(&mut rx).await;
    e.approve(serde_json::json!({ "user_code": uc })).await;
    match next(&mut rx).await {
        signin::Msg::Refused { refusal, .. } => assert_eq!(
            refusal,
            Refusal::OtherTenant {
                expected: OTHER_TENANT.into()
            }
        ),
        other => panic!("expected Refused, got {other:?}"),
    }
    task.await.unwrap();
}

#[tokio::test]
async fn run_stops_when_cancelled() {
    let e = env(world(), FaultSpec::default(), false).await;
    let (task, mut rx) = e.start(3);
    user_code(&mut rx).await;
    assert_eq!(e.svc.signin.running(), Some(3));
    let (tx, _rx2) = mpsc::channel(4);
    signin::run(Cmd::Cancel { generation: 3 }, e.svc.clone(), tx).await;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the wait stops at once")
        .unwrap();
    assert!(rx.try_recv().is_err(), "a cancelled flow reports nothing");
    assert_eq!(e.svc.signin.running(), None);
    // A cancel that overtakes its start: the flow never begins.
    let (tx, _rx3) = mpsc::channel(4);
    signin::run(Cmd::Cancel { generation: 4 }, e.svc.clone(), tx).await;
    let (task, mut rx) = e.start(4);
    task.await.unwrap();
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn run_reports_an_expired_code() {
    let mut w = world();
    w.app.device_code_expires_secs = 2;
    let e = env(w, FaultSpec::default(), false).await;
    let (task, mut rx) = e.start(1);
    user_code(&mut rx).await;
    match next(&mut rx).await {
        signin::Msg::Expired { valid_secs, .. } => assert_eq!(valid_secs, Some(2)),
        other => panic!("expected Expired, got {other:?}"),
    }
    task.await.unwrap();
}

#[tokio::test]
async fn run_reports_a_graph_failure_after_signing_in() {
    let faults = FaultSpec::parse("graph.5xx=1").unwrap();
    let e = env(world(), faults, false).await;
    let (task, mut rx) = e.start(1);
    let (uc, _) = user_code(&mut rx).await;
    e.approve(serde_json::json!({ "user_code": uc })).await;
    assert!(matches!(next(&mut rx).await, signin::Msg::Verifying { .. }));
    match next(&mut rx).await {
        signin::Msg::Failed { failure, .. } => {
            assert_eq!(failure.stage, Stage::Details);
            assert!(failure.message.contains("Microsoft Graph"), "{failure:?}");
            assert!(!failure.hint.is_empty());
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    task.await.unwrap();
}

#[tokio::test]
async fn run_reports_an_unreachable_sign_in_service() {
    // Nothing listens on this port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let endpoints = Endpoints {
        entra: url::Url::parse(&format!("http://127.0.0.1:{port}/entra")).unwrap(),
        ..Endpoints::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let svc = Arc::new(Services::new(
        Context::with_endpoints(endpoints),
        ConfigDir {
            dir: dir.path().to_path_buf(),
        },
        None,
    ));
    let (tx, mut rx) = mpsc::channel(4);
    signin::run(
        Cmd::Start {
            generation: 1,
            settings: Box::default(),
        },
        svc,
        tx,
    )
    .await;
    match next(&mut rx).await {
        signin::Msg::Failed { failure, .. } => {
            assert_eq!(failure.stage, Stage::SignIn);
            assert!(failure.hint.contains("network"), "{failure:?}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

/// A member of the MSP tenant who is not an admin, on its own domain.
fn colleague(w: &World) -> cspsync::sim::world::User {
    let admin = default_admin(w).id.clone();
    w.msp
        .users
        .iter()
        .find(|u| {
            u.id != admin
                && u.account_enabled
                && u.user_type == "Member"
                && u.partner_roles.is_empty()
                && !u.user_principal_name.contains(".onmicrosoft.com")
        })
        .unwrap()
        .clone()
}

#[tokio::test]
async fn run_signs_in_a_colleague_who_is_not_on_the_list_and_the_app_refuses_them() {
    let w = world();
    let admin = default_admin(&w).clone();
    let eve = colleague(&w);
    let mut e = env(w.clone(), FaultSpec::default(), false).await;
    // Set up by the admin earlier.
    e.settings.microsoft.tenant_id = w.msp.tenant_id.clone();
    e.settings.microsoft.setup_user_oid = admin.id.clone();
    e.settings.microsoft.setup_user_name = admin.user_principal_name.clone();
    let (task, mut rx) = e.start(1);
    let (uc, code_msg) = user_code(&mut rx).await;
    e.approve(serde_json::json!({ "user_code": uc, "upn": eve.user_principal_name }))
        .await;
    let verifying = next(&mut rx).await;
    let signed_in = next(&mut rx).await;
    task.await.unwrap();
    assert!(
        matches!(&signed_in, signin::Msg::SignedIn { account, .. } if account.oid == eve.id),
        "{signed_in:?}"
    );
    let mut app = App::new(
        Setup {
            settings: e.settings.clone(),
            ..Setup::default()
        },
        false,
    );
    assert_eq!(app.access(), Access::SignedOut);
    press_enter(&mut app);
    send(&mut app, Msg::SignIn(code_msg));
    send(&mut app, Msg::SignIn(verifying));
    let effects = send(&mut app, Msg::SignIn(signed_in));
    assert_eq!(
        app.access(),
        Access::Denied {
            name: eve.user_principal_name.clone()
        }
    );
    assert_eq!(app.setup.settings.microsoft.setup_user_oid, admin.id);
    // The refusal is written to the audit log in the config directory by run().
    let (tx, mut rx) = mpsc::channel(4);
    for effect in effects {
        if let Effect::SignIn(cmd @ Cmd::Record { .. }) = effect {
            signin::run(cmd, e.svc.clone(), tx.clone()).await;
        }
    }
    assert!(rx.try_recv().is_err(), "written without complaint");
    let log = audit::read(&e.svc.config, None).unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].action, audit::SIGN_IN_REFUSED);
    assert_eq!(log[0].actor.oid, eve.id);
    assert_eq!(log[0].actor.name, eve.user_principal_name);
    assert_eq!(log[0].details["reason"], "not_allowed");
    let raw = std::fs::read_to_string(audit::path(&e.svc.config)).unwrap();
    assert!(
        !raw.contains(
            app.setup
                .secrets
                .microsoft_refresh_token
                .as_deref()
                .unwrap()
        ),
        "no token in the audit log"
    );
}

#[tokio::test]
async fn run_reports_an_audit_record_it_cannot_write() {
    let e = env(world(), FaultSpec::default(), false).await;
    // A directory where the log file should be.
    std::fs::create_dir_all(audit::path(&e.svc.config)).unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    signin::run(
        Cmd::Record {
            actor: Actor::new("oid", "alex@contoso-it.com.au"),
            action: audit::SIGN_OUT,
            details: serde_json::json!({}),
        },
        e.svc.clone(),
        tx,
    )
    .await;
    match rx.try_recv() {
        Ok(Msg::SignIn(signin::Msg::AuditFailed { error })) => {
            assert!(error.contains("audit log"), "{error}")
        }
        other => panic!("expected AuditFailed, got {other:?}"),
    }
}
