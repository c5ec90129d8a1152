//! The Distributor tab: screens (insta snapshots at 80x24 and 120x40), key-driven flows
//! through the pure update function, and its background work against the simulated world.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use crossterm::event::KeyCode;
use tokio::sync::mpsc;

use cspsync::api::error::{Api, ApiError, ErrorKind};
use cspsync::sim::World;
use cspsync::sim::generate::{GenOptions, generate};
use cspsync::tui::app::{App, Effect, Msg, Setup, Tab};
use cspsync::tui::panes::Step;
use cspsync::tui::panes::distributor::{
    self, Cmd, DickerDataPart, Focus, MpnPart, Severity, check_access_code, check_account_code,
    check_mpn_id,
};
use cspsync::tui::panes::partner::common::Rotated;
use cspsync::tui::testing::{SimEnv, ctrl, key, screen, send, type_text};

const ACCESS: &str = "237082ED-EB96-4D1B-A5B7-3C1F0E2D9A41";
const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn at() -> DateTime<Utc> {
    t("2025-06-11T04:22:00Z")
}

/// What a technician has typed or the demo pre-fills, signed in to Microsoft.
fn filled() -> Setup {
    let mut s = Setup::default();
    s.settings.distributor.account_code = "325026".into();
    s.settings.distributor.mpn_id = "4391507".into();
    s.settings.microsoft.setup_user_name = "alex.nguyen@contoso-it.com.au".into();
    s.secrets.dicker_data_access_code = Some(ACCESS.into());
    s.secrets.microsoft_refresh_token = Some("rt-1".into());
    s
}

fn app_on(setup: Setup) -> App {
    let mut app = App::new(setup, false);
    send(&mut app, key(KeyCode::Char('2')));
    assert_eq!(app.tab, Tab::Distributor);
    app
}

fn snap(name: &str, app: &App) {
    for (w, h) in SIZES {
        let text = screen(app, w, h);
        assert!(
            !text.contains(ACCESS),
            "{name}: the Access Code is on screen"
        );
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), text);
    }
}

/// Press Test connection (focus on the button, Enter); returns the command.
fn press_test(app: &mut App) -> Option<Cmd> {
    send(app, key(KeyCode::End));
    let effects = send(app, key(KeyCode::Enter));
    effects.into_iter().find_map(|e| match e {
        Effect::Distributor(c) => Some(c),
        _ => None,
    })
}

fn generation(cmd: &Cmd) -> u64 {
    match cmd {
        Cmd::Test { generation, .. } => *generation,
    }
}

fn dd_ok(generation: u64) -> Msg {
    Msg::Distributor(distributor::Msg::DickerData {
        generation,
        at: at(),
        result: Ok(at() + chrono::Duration::minutes(10)),
    })
}

fn dd_err(generation: u64, e: ApiError) -> Msg {
    Msg::Distributor(distributor::Msg::DickerData {
        generation,
        at: at(),
        result: Err(e),
    })
}

fn mpn(generation: u64, outcome: MpnPart) -> Msg {
    Msg::Distributor(distributor::Msg::Mpn {
        generation,
        at: at(),
        outcome,
        rotated: None,
    })
}

fn mpn_ok() -> MpnPart {
    MpnPart::Ok {
        mpn_id: "4391507".into(),
        partner_name: Some("Contoso IT Pty Ltd".into()),
    }
}

fn dd_refused() -> ApiError {
    ApiError::new(
        Api::DickerData,
        ErrorKind::Unauthorized,
        "did not accept the Account Code and Access Code (it said: Invalid credentials)",
    )
    .with_code("Failed")
    .with_operation("POST /api/AccessKeyRequest")
}

fn mpn_not_found(id: &str) -> ApiError {
    ApiError::new(
        Api::PartnerCenter,
        ErrorKind::NotFound,
        format!("said: Partner Organization with partner_id {id} could not be found"),
    )
    .with_status(404)
    .with_code("3000")
    .with_operation("GET /profiles/mpn")
}

fn pc_forbidden() -> ApiError {
    ApiError::new(
        Api::PartnerCenter,
        ErrorKind::Forbidden,
        "said: Access denied: alex.nguyen@contoso-it.com.au has neither the Admin agent nor the Global admin role in Partner Center.",
    )
    .with_status(403)
    .with_code("2032")
    .with_operation("GET /profiles/mpn")
}

fn pc_no_mfa() -> ApiError {
    ApiError::new(
        Api::PartnerCenter,
        ErrorKind::Unauthorized,
        "said: Multi-factor authentication is required: the access token does not show MFA (its amr claim lacks mfa). Sign in again with MFA to use Partner Center.",
    )
    .with_status(401)
    .with_code("900419")
    .with_operation("GET /profiles/mpn")
}

// ----- snapshots ------------------------------------------------------------------------------

#[test]
fn snapshot_empty_form() {
    let app = app_on(Setup::default());
    assert_eq!(app.distributor.focus, Focus::AccountCode);
    snap("empty", &app);
}

#[test]
fn snapshot_filled_form() {
    let app = app_on(filled());
    assert_eq!(app.distributor.focus, Focus::Test);
    snap("filled", &app);
}

#[test]
fn snapshot_validation_errors() {
    let mut app = app_on(filled());
    // Account Code with letters (a warning), an Access Code with a space, an MPN ID with a
    // letter (errors).
    send(&mut app, key(KeyCode::Home));
    send(&mut app, key(KeyCode::Enter));
    type_text(&mut app, "AB");
    send(&mut app, key(KeyCode::Enter));
    send(&mut app, key(KeyCode::Enter));
    send(&mut app, ctrl('u'));
    type_text(&mut app, "2370 82ED");
    send(&mut app, key(KeyCode::Enter));
    send(&mut app, key(KeyCode::Enter));
    type_text(&mut app, "x");
    assert!(app.editing());
    snap("validation_typing", &app);
    send(&mut app, key(KeyCode::Esc));
    assert!(press_test(&mut app).is_none(), "errors must block the test");
    assert_eq!(app.distributor.focus, Focus::AccessCode);
    snap("validation_blocked", &app);
}

#[test]
fn snapshot_empty_fields_explained() {
    let mut app = app_on(Setup::default());
    assert!(press_test(&mut app).is_none());
    assert_eq!(app.distributor.focus, Focus::AccountCode);
    snap("empty_test_blocked", &app);
}

#[test]
fn snapshot_testing() {
    let mut app = app_on(filled());
    let cmd = press_test(&mut app).unwrap();
    snap("testing", &app);
    send(&mut app, dd_ok(generation(&cmd)));
    snap("testing_half_done", &app);
}

#[test]
fn snapshot_success() {
    let mut app = app_on(filled());
    let cmd = press_test(&mut app).unwrap();
    send(&mut app, dd_ok(generation(&cmd)));
    send(&mut app, mpn(generation(&cmd), mpn_ok()));
    // The wizard moved on; come back to see the result.
    assert_ne!(app.tab, Tab::Distributor);
    send(&mut app, key(KeyCode::Char('2')));
    snap("success", &app);
}

#[test]
fn snapshot_restored_done_and_edited() {
    let mut setup = filled();
    setup.settings.distributor.verified_at = Some("2025-06-10T23:05:00Z".into());
    let mut app = App::new(setup, false);
    app.tab = Tab::Distributor;
    snap("restored_done", &app);
    send(&mut app, key(KeyCode::Up));
    send(&mut app, key(KeyCode::Enter));
    type_text(&mut app, "8");
    send(&mut app, key(KeyCode::Enter));
    snap("edited_after_success", &app);
}

#[test]
fn snapshot_access_code_refused() {
    let mut app = app_on(filled());
    let cmd = press_test(&mut app).unwrap();
    send(&mut app, dd_err(generation(&cmd), dd_refused()));
    send(&mut app, mpn(generation(&cmd), mpn_ok()));
    snap("fail_access_refused", &app);
}

#[test]
fn snapshot_unknown_mpn() {
    let mut app = app_on(filled());
    let cmd = press_test(&mut app).unwrap();
    send(&mut app, dd_ok(generation(&cmd)));
    send(
        &mut app,
        mpn(
            generation(&cmd),
            MpnPart::Failed {
                error: mpn_not_found("4391507"),
                own_mpn: Some("4391508".into()),
            },
        ),
    );
    snap("fail_unknown_mpn", &app);
}

#[test]
fn snapshot_partner_center_refusals() {
    for (name, e) in [
        ("fail_mpn_forbidden", pc_forbidden()),
        ("fail_mpn_no_mfa", pc_no_mfa()),
    ] {
        let mut app = app_on(filled());
        let cmd = press_test(&mut app).unwrap();
        send(&mut app, dd_ok(generation(&cmd)));
        send(
            &mut app,
            mpn(
                generation(&cmd),
                MpnPart::Failed {
                    error: e,
                    own_mpn: None,
                },
            ),
        );
        snap(name, &app);
    }
}

#[test]
fn snapshot_network_failure() {
    let mut app = app_on(filled());
    let cmd = press_test(&mut app).unwrap();
    let e = ApiError::new(
        Api::DickerData,
        ErrorKind::Transport {
            maybe_applied: false,
        },
        "could not be reached (connection refused)",
    )
    .with_operation("POST /api/AccessKeyRequest");
    send(&mut app, dd_err(generation(&cmd), e));
    send(&mut app, mpn(generation(&cmd), mpn_ok()));
    snap("fail_network", &app);
}

#[test]
fn snapshot_not_signed_in() {
    let mut setup = filled();
    setup.secrets.microsoft_refresh_token = None;
    let mut app = app_on(setup);
    let cmd = press_test(&mut app).unwrap();
    send(&mut app, dd_ok(generation(&cmd)));
    snap("not_signed_in", &app);
}

#[test]
fn snapshot_revealed_while_editing() {
    let mut setup = filled();
    setup.secrets.dicker_data_access_code = Some("DEMO-REVEALED-CODE".into());
    let mut app = app_on(setup);
    send(&mut app, key(KeyCode::Home));
    send(&mut app, key(KeyCode::Down));
    send(&mut app, key(KeyCode::Enter));
    send(&mut app, ctrl('r'));
    let text = screen(&app, 80, 24);
    assert!(text.contains("DEMO-REVEALED-CODE"), "{text}");
    insta::assert_snapshot!("revealed_80x24", text);
    send(&mut app, key(KeyCode::Esc));
    assert!(!screen(&app, 80, 24).contains("DEMO-REVEALED-CODE"));
}

// ----- flows ----------------------------------------------------------------------------------

#[test]
fn validation_follows_typing() {
    assert!(check_account_code("325026").is_none());
    assert_eq!(
        check_account_code("DD325026").unwrap().severity,
        Severity::Warning
    );
    assert_eq!(check_account_code(" ").unwrap().severity, Severity::Error);
    assert_eq!(check_access_code("").unwrap().severity, Severity::Error);
    assert_eq!(
        check_access_code("ab cd").unwrap().severity,
        Severity::Error
    );
    assert!(check_access_code(" abcd ").is_none());
    assert!(check_mpn_id("4391507").is_none());
    assert!(check_mpn_id("43915o7").unwrap().text.contains("“o”"));

    let mut app = app_on(filled());
    send(&mut app, key(KeyCode::Up));
    send(&mut app, key(KeyCode::Enter));
    assert!(app.editing(), "Enter on a field edits it");
    // While editing, digits go to the field, not to tab switching.
    type_text(&mut app, "1");
    assert_eq!(app.tab, Tab::Distributor);
    assert_eq!(app.distributor.mpn_id.value, "43915071");
    assert!(app.distributor.problem(Focus::MpnId).is_none());
    type_text(&mut app, "z");
    assert!(screen(&app, 80, 24).contains("Digits only: remove “z”."));
    send(&mut app, key(KeyCode::Backspace));
    assert!(!screen(&app, 80, 24).contains("Digits only"));
    send(&mut app, ctrl('u'));
    assert_eq!(app.distributor.mpn_id.value, "");
    assert!(screen(&app, 80, 24).contains("Required"));
    // Esc stops editing; q then means quit (asks first: unsaved changes).
    send(&mut app, key(KeyCode::Esc));
    assert!(!app.editing());
    assert!(app.unsaved());
    send(&mut app, key(KeyCode::Char('q')));
    assert!(app.modal.is_some() && !app.quit);
}

#[test]
fn j_k_move_when_not_editing_and_type_when_editing() {
    let mut app = app_on(Setup::default());
    assert_eq!(app.distributor.focus, Focus::AccountCode);
    send(&mut app, key(KeyCode::Char('j')));
    assert_eq!(app.distributor.focus, Focus::AccessCode);
    send(&mut app, key(KeyCode::Char('k')));
    assert_eq!(app.distributor.focus, Focus::AccountCode);
    send(&mut app, key(KeyCode::Enter));
    type_text(&mut app, "jk");
    assert_eq!(app.distributor.account_code.value, "jk");
    // Enter ends editing and moves on.
    send(&mut app, key(KeyCode::Enter));
    assert!(!app.editing());
    assert_eq!(app.distributor.focus, Focus::AccessCode);
    let hints: Vec<_> = app.hints().iter().map(|h| h.action).collect();
    assert!(hints.contains(&"edit"), "{hints:?}");
    send(&mut app, key(KeyCode::Enter));
    let hints: Vec<_> = app.hints().iter().map(|h| h.key).collect();
    assert!(hints.contains(&"Ctrl-R"), "{hints:?}");
    assert!(
        !hints.contains(&"q"),
        "no quit hint while editing: {hints:?}"
    );
}

#[test]
fn a_passing_test_saves_and_moves_on() {
    let mut app = app_on(filled());
    // Change the MPN ID before testing: what is saved is what was tested.
    send(&mut app, key(KeyCode::Up));
    send(&mut app, key(KeyCode::Enter));
    send(&mut app, key(KeyCode::Backspace));
    type_text(&mut app, "8");
    send(&mut app, key(KeyCode::Enter));
    let cmd = press_test(&mut app).unwrap();
    let Cmd::Test {
        generation,
        setup,
        check_mpn,
    } = cmd.clone();
    assert!(check_mpn);
    assert_eq!(setup.settings.distributor.mpn_id, "4391508");
    assert_eq!(setup.settings.distributor.account_code, "325026");
    assert_eq!(
        setup.secrets.dicker_data_access_code.as_deref(),
        Some(ACCESS)
    );
    assert_eq!(app.status(Tab::Distributor), Step::Busy);
    // A second Enter while testing starts nothing.
    assert!(send(&mut app, key(KeyCode::Enter)).is_empty());

    assert!(send(&mut app, dd_ok(generation)).is_empty());
    assert_eq!(app.status(Tab::Distributor), Step::Busy);
    let effects = send(
        &mut app,
        Msg::Distributor(distributor::Msg::Mpn {
            generation,
            at: at(),
            outcome: MpnPart::Ok {
                mpn_id: "4391508".into(),
                partner_name: Some("Contoso IT Pty Ltd".into()),
            },
            rotated: Rotated::of(Some("rt-1"), "rt-2"),
        }),
    );
    let saved = effects
        .iter()
        .find_map(|e| match e {
            Effect::Save(s) => Some(s.clone()),
            _ => None,
        })
        .expect("a Save effect");
    let d = &saved.settings.distributor;
    assert_eq!(d.account_code, "325026");
    assert_eq!(d.mpn_id, "4391508");
    assert_eq!(d.verified_at.as_deref(), Some("2025-06-11T04:22:00Z"));
    assert_eq!(
        saved.secrets.dicker_data_access_code.as_deref(),
        Some(ACCESS)
    );
    assert_eq!(
        saved.secrets.microsoft_refresh_token.as_deref(),
        Some("rt-2"),
        "the rotated refresh token is kept"
    );
    assert_eq!(app.setup, *saved);
    assert_eq!(app.status(Tab::Distributor), Step::Done);
    assert!(!app.unsaved());
    // The wizard moves on to the first step still open.
    assert_ne!(app.tab, Tab::Distributor);
    assert_eq!(app.tab, app.first_open_step());

    // A restart resumes: the step stays done.
    let again = App::new((*saved).clone(), false);
    assert_eq!(again.status(Tab::Distributor), Step::Done);
}

#[test]
fn editing_after_success_needs_a_new_test() {
    let mut setup = filled();
    setup.settings.distributor.verified_at = Some("2025-06-10T23:05:00Z".into());
    let mut app = app_on(setup);
    assert_eq!(app.status(Tab::Distributor), Step::Done);
    send(&mut app, key(KeyCode::Home));
    send(&mut app, key(KeyCode::Enter));
    type_text(&mut app, "9");
    assert_eq!(app.status(Tab::Distributor), Step::ToDo);
    assert!(app.unsaved());
    send(&mut app, key(KeyCode::Backspace));
    // Back to the saved value: nothing to lose, but still to be re-tested.
    assert!(!app.unsaved());
    assert_eq!(app.status(Tab::Distributor), Step::ToDo);
    send(&mut app, key(KeyCode::Esc));
    let cmd = press_test(&mut app).unwrap();
    send(&mut app, dd_ok(generation(&cmd)));
    let effects = send(&mut app, mpn(generation(&cmd), mpn_ok()));
    assert!(effects.iter().any(|e| matches!(e, Effect::Save(_))));
    assert_eq!(app.status(Tab::Distributor), Step::Done);
}

#[test]
fn stale_results_are_dropped() {
    let mut app = app_on(filled());
    let cmd = press_test(&mut app).unwrap();
    let old = generation(&cmd);
    // The person edits the Access Code while the test runs.
    send(&mut app, key(KeyCode::Up));
    send(&mut app, key(KeyCode::Up));
    send(&mut app, key(KeyCode::Enter));
    type_text(&mut app, "0");
    send(&mut app, key(KeyCode::Esc));
    assert_eq!(app.distributor.dicker_data, DickerDataPart::Idle);
    assert!(send(&mut app, dd_ok(old)).is_empty());
    assert!(send(&mut app, mpn(old, mpn_ok())).is_empty());
    assert_eq!(app.distributor.dicker_data, DickerDataPart::Idle);
    assert_eq!(app.distributor.mpn, MpnPart::Idle);
    assert_eq!(app.status(Tab::Distributor), Step::ToDo);
    assert_eq!(app.setup.settings.distributor.verified_at, None);
}

#[test]
fn not_signed_in_tests_dicker_data_only_and_is_not_done() {
    let mut setup = filled();
    setup.secrets.microsoft_refresh_token = None;
    let mut app = app_on(setup);
    let cmd = press_test(&mut app).unwrap();
    let Cmd::Test { check_mpn, .. } = &cmd;
    assert!(!check_mpn);
    assert_eq!(app.distributor.mpn, MpnPart::NotSignedIn);
    let effects = send(&mut app, dd_ok(generation(&cmd)));
    assert!(effects.is_empty(), "not done without the MPN check");
    assert_eq!(app.status(Tab::Distributor), Step::ToDo);
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("Sign in first (tab 1) to check the MPN ID"),
        "{text}"
    );
    assert!(text.contains("AccessKey obtained"), "{text}");
}

#[test]
fn failures_name_the_field_and_where_to_get_it() {
    let mut app = app_on(filled());
    let cmd = press_test(&mut app).unwrap();
    send(&mut app, dd_err(generation(&cmd), dd_refused()));
    let effects = send(&mut app, mpn(generation(&cmd), mpn_ok()));
    assert!(effects.is_empty());
    assert_eq!(app.status(Tab::Distributor), Step::ToDo);
    let text = screen(&app, 120, 40);
    assert!(text.contains("Refused by Dicker Data"), "{text}");
    assert!(
        text.contains("integration.support@dickerdata.com.au"),
        "{text}"
    );
    assert!(text.contains("Generate New Token"), "{text}");
    assert!(text.contains("portal.dickerdata.com.au"), "{text}");

    let mut app = app_on(filled());
    let cmd = press_test(&mut app).unwrap();
    send(&mut app, dd_ok(generation(&cmd)));
    send(
        &mut app,
        mpn(
            generation(&cmd),
            MpnPart::Failed {
                error: mpn_not_found("4391507"),
                own_mpn: Some("4391508".into()),
            },
        ),
    );
    let text = screen(&app, 120, 40);
    assert!(text.contains("Unknown to Partner Center"), "{text}");
    assert!(text.contains("is 4391508"), "{text}");
}

#[test]
fn the_access_code_never_leaks_into_debug_output() {
    let mut app = app_on(filled());
    let cmd = press_test(&mut app).unwrap();
    assert!(!format!("{app:?}").contains(ACCESS));
    assert!(!format!("{cmd:?}").contains(ACCESS));
}

#[test]
fn render_survives_any_size() {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::layout::Rect;
    let theme = cspsync::tui::theme::Theme::new(true);
    let mut app = app_on(filled());
    let cmd = press_test(&mut app).unwrap();
    send(&mut app, dd_err(generation(&cmd), dd_refused()));
    send(
        &mut app,
        mpn(
            generation(&cmd),
            MpnPart::Failed {
                error: pc_forbidden(),
                own_mpn: None,
            },
        ),
    );
    for (w, h) in [
        (1, 1),
        (5, 3),
        (20, 10),
        (40, 7),
        (79, 23),
        (200, 60),
        (300, 100),
    ] {
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        term.draw(|f| {
            distributor::render(
                &app.distributor,
                &app.setup,
                &theme,
                f,
                Rect::new(0, 0, w, h),
            );
        })
        .unwrap();
        for h0 in 0..h.min(4) {
            term.draw(|f| {
                distributor::render(
                    &app.distributor,
                    &app.setup,
                    &theme,
                    f,
                    Rect::new(0, 0, w, h0),
                );
            })
            .unwrap();
        }
    }
}

// ----- background work against the simulated world -------------------------------------------

fn world() -> World {
    let today = Utc::now().date_naive();
    let mut w = generate(&GenOptions::new(12, 20_250_611, today));
    w.app.device_code_interval_secs = 1;
    w
}

type Env = SimEnv;

async fn start_env(world: World, sign_in: bool) -> Env {
    SimEnv::start(world, sign_in).await
}

/// Run one Test connection with `setup`; the messages it sent back.
async fn run_test(env: &Env, setup: Setup, check_mpn: bool) -> Vec<distributor::Msg> {
    let (tx, mut rx) = mpsc::channel(16);
    let cmd = Cmd::Test {
        generation: 7,
        setup: Box::new(setup),
        check_mpn,
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        distributor::run(cmd, env.svc.clone(), tx),
    )
    .await
    .expect("the test finishes");
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        match m {
            Msg::Distributor(d) => out.push(d),
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

fn dd_result(msgs: &[distributor::Msg]) -> Result<DateTime<Utc>, ApiError> {
    msgs.iter()
        .find_map(|m| match m {
            distributor::Msg::DickerData {
                generation, result, ..
            } => {
                assert_eq!(*generation, 7);
                Some(result.clone())
            }
            _ => None,
        })
        .expect("a Dicker Data result")
}

fn mpn_result(msgs: &[distributor::Msg]) -> Option<MpnPart> {
    msgs.iter().find_map(|m| match m {
        distributor::Msg::Mpn {
            generation,
            outcome,
            ..
        } => {
            assert_eq!(*generation, 7);
            Some(outcome.clone())
        }
        _ => None,
    })
}

#[tokio::test]
async fn run_right_codes_pass_both_checks_and_the_app_saves() {
    let env = start_env(world(), true).await;
    let before = Utc::now();
    let msgs = run_test(&env, env.setup.clone(), true).await;
    let expires = dd_result(&msgs).expect("an AccessKey");
    assert!(expires > before, "the key expires in the future");
    assert_eq!(
        mpn_result(&msgs),
        Some(MpnPart::Ok {
            mpn_id: env.world.msp.mpn_id.clone(),
            partner_name: Some(env.world.msp.partner_name.clone()),
        })
    );
    // Fed to the app, the results complete the step.
    let mut app = app_on(env.setup.clone());
    let cmd = press_test(&mut app).unwrap();
    let g = generation(&cmd);
    let mut effects = Vec::new();
    for m in msgs {
        let m = match m {
            distributor::Msg::DickerData { at, result, .. } => distributor::Msg::DickerData {
                generation: g,
                at,
                result,
            },
            distributor::Msg::Mpn {
                at,
                outcome,
                rotated,
                ..
            } => distributor::Msg::Mpn {
                generation: g,
                at,
                outcome,
                rotated,
            },
        };
        effects.extend(send(&mut app, Msg::Distributor(m)));
    }
    assert!(effects.iter().any(|e| matches!(e, Effect::Save(_))));
    assert_eq!(app.status(Tab::Distributor), Step::Done);
    app.tab = Tab::Distributor;
    let text = screen(&app, 120, 40);
    assert!(
        text.contains(&format!(
            "MPN {} = {}",
            env.world.msp.mpn_id, env.world.msp.partner_name
        )),
        "{text}"
    );
}

#[tokio::test]
async fn run_wrong_access_code_is_refused() {
    let env = start_env(world(), true).await;
    let mut setup = env.setup.clone();
    setup.secrets.dicker_data_access_code = Some("00000000-0000-0000-0000-000000000000".into());
    let msgs = run_test(&env, setup, true).await;
    let e = dd_result(&msgs).unwrap_err();
    assert_eq!(e.api, Api::DickerData);
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert!(
        e.to_string().contains("Account Code and Access Code"),
        "{e}"
    );
    assert!(matches!(mpn_result(&msgs), Some(MpnPart::Ok { .. })));
    // A wrong Account Code is refused the same way.
    let mut setup = env.setup.clone();
    setup.settings.distributor.account_code = "999999".into();
    let e = dd_result(&run_test(&env, setup, true).await).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
}

#[tokio::test]
async fn run_unknown_mpn_names_the_partners_own() {
    let env = start_env(world(), true).await;
    let mut setup = env.setup.clone();
    setup.settings.distributor.mpn_id = "1000001".into();
    let msgs = run_test(&env, setup, true).await;
    assert!(dd_result(&msgs).is_ok());
    match mpn_result(&msgs) {
        Some(MpnPart::Failed { error, own_mpn }) => {
            assert_eq!(error.kind, ErrorKind::NotFound);
            assert_eq!(own_mpn.as_deref(), Some(env.world.msp.mpn_id.as_str()));
        }
        other => panic!("expected an unknown MPN, got {other:?}"),
    }
}

#[tokio::test]
async fn run_without_sign_in_checks_dicker_data_only() {
    let env = start_env(world(), false).await;
    let msgs = run_test(&env, env.setup.clone(), false).await;
    assert!(dd_result(&msgs).is_ok());
    assert_eq!(mpn_result(&msgs), None);
    // Asked to check without a sign-in (it lapsed from the secrets): says so.
    let msgs = run_test(&env, env.setup.clone(), true).await;
    assert_eq!(mpn_result(&msgs), Some(MpnPart::NotSignedIn));
}

#[tokio::test]
async fn run_admin_without_mfa_or_role_is_refused_with_what_to_check() {
    // MFA off for the admin who signs in: Partner Center refuses the token (401).
    let mut w = world();
    let admin = cspsync::sim::entra::default_admin(&w).unwrap().id.clone();
    let u = w.msp.users.iter_mut().find(|u| u.id == admin).unwrap();
    u.mfa = false;
    let env = start_env(w, true).await;
    let msgs = run_test(&env, env.setup.clone(), true).await;
    match mpn_result(&msgs) {
        Some(MpnPart::Failed { error, .. }) => {
            assert_eq!(error.api, Api::PartnerCenter);
            assert_eq!(error.kind, ErrorKind::Unauthorized);
            let help = cspsync::tui::panes::partner::common::microsoft_refusal(&error, "").unwrap();
            assert!(
                help.iter().any(|l| l.contains("aka.ms/mfasetup")),
                "{help:?}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The admin loses the Partner Center roles after signing in: 403.
    let env = start_env(world(), true).await;
    {
        let mut st = env.sim.sim.state();
        let admin = cspsync::sim::entra::default_admin(&st.world)
            .unwrap()
            .id
            .clone();
        let u = st
            .world
            .msp
            .users
            .iter_mut()
            .find(|u| u.id == admin)
            .unwrap();
        u.partner_roles.clear();
    }
    let msgs = run_test(&env, env.setup.clone(), true).await;
    match mpn_result(&msgs) {
        Some(MpnPart::Failed { error, .. }) => {
            assert_eq!(error.kind, ErrorKind::Forbidden);
            let help = cspsync::tui::panes::partner::common::microsoft_refusal(&error, "").unwrap();
            assert!(help.iter().any(|l| l.contains("Admin agent")), "{help:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
