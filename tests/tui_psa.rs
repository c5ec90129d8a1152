//! The PSA tab: snapshots of every main state (80x24 and 120x40), key-driven flows through
//! the pure update function, and the tab's background work (`psa::run`) against the
//! simulated world over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use crossterm::event::KeyCode;
use cspsync::api::error::{Api, ApiError, ErrorKind};
use cspsync::config::{ConfigDir, Endpoints, PsaKindSetting};
use cspsync::connect;
use cspsync::secret::Secret;
use cspsync::sim::generate::{GenOptions, generate};
use cspsync::sim::{SimHandle, World};
use cspsync::tui::app::{self, App, Effect, Modal, Msg, Setup, Tab};
use cspsync::tui::panes::Step;
use cspsync::tui::panes::psa::{
    self, AtFound, Button, Cmd, CwFound, Field, Item, Kind, Outcome, PickerId, Row, XeroPhase,
};
use cspsync::tui::runner::{Demo, Services};
use cspsync::tui::testing::{ctrl, key, screen, send, type_text};
use tokio::sync::mpsc;

mod support;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const COMPANY: &str = "contoso";
const SITE: &str = "api-au.myconnectwise.net";
const PUBLIC: &str = "AbCdPub123456789";
const PRIVATE: &str = "XyZPrivKey0987654321";
const CLIENT: &str = "3f2a9c1e-0b4d-4e8f-9a7c-5d6e1f2a3b4c";
const AT_USER: &str = "cspsync-api@contoso.com.au";
const AT_SECRET: &str = "S3cr3t-At-Value-42";
const AT_CODE: &str = "7DKZ3V2X9QHE4M7TJ6P0WC5RN1B";
const REFRESH: &str = "xero-refresh-token-value-1";
const AUTH_URL: &str = "https://login.xero.com/identity/connect/authorize?response_type=code&client_id=CSPSYNCXEROCLIENTID00000000000000&state=Zm9vYmFyYmF6cXV4&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&redirect_uri=http%3A%2F%2Flocalhost%3A53682%2Fcallback&scope=openid+profile+email+offline_access+accounting.contacts+accounting.settings+accounting.invoices";
const REDIRECT: &str = "http://localhost:53682/callback";

fn filled() -> Setup {
    let mut s = Setup::default();
    let p = &mut s.settings.psa;
    p.connectwise.company_id = COMPANY.into();
    p.connectwise.site = SITE.into();
    p.connectwise.public_key = PUBLIC.into();
    p.connectwise.client_id = CLIENT.into();
    p.autotask.username = AT_USER.into();
    p.autotask.integration_code = AT_CODE.into();
    s.secrets.connectwise_private_key = Some(PRIVATE.into());
    s.secrets.autotask_secret = Some(AT_SECRET.into());
    s
}

fn app_with(setup: Setup) -> App {
    let mut a = App::new(setup, false);
    a.tab = Tab::Psa;
    a
}

/// Both sizes; never a secret on screen.
fn shot(name: &str, app: &App) {
    for (w, h) in [(80, 24), (120, 40)] {
        let text = screen(app, w, h);
        for secret in [PRIVATE, AT_SECRET, REFRESH] {
            assert!(
                !text.contains(secret),
                "{name}: a secret is on screen:\n{text}"
            );
        }
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), text);
    }
}

fn press(app: &mut App, code: KeyCode) -> Vec<Effect> {
    send(app, key(code))
}

/// Move the focus to `row` with ↑/↓.
fn go(app: &mut App, row: Row) {
    for _ in 0..20 {
        press(app, KeyCode::Up);
    }
    for _ in 0..20 {
        if app.psa.focused() == row {
            return;
        }
        press(app, KeyCode::Down);
    }
    panic!("row {row:?} not found; rows: {:?}", psa::rows(&app.psa));
}

/// Choose the PSA on the selector row.
fn choose(app: &mut App, kind: Kind) {
    go(app, Row::Kind);
    for _ in 0..3 {
        if app.psa.kind == kind {
            return;
        }
        press(app, KeyCode::Right);
    }
    assert_eq!(app.psa.kind, kind);
}

/// Replace a field's value by typing.
fn edit(app: &mut App, field: Field, text: &str) {
    go(app, Row::Field(field));
    press(app, KeyCode::Enter);
    assert!(app.editing(), "Enter starts editing {field:?}");
    send(app, ctrl('u'));
    type_text(app, text);
    press(app, KeyCode::Enter);
    assert!(!app.editing(), "Enter stops editing");
}

fn psa_cmds(effects: &[Effect]) -> Vec<&Cmd> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Psa(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn saves(effects: &[Effect]) -> Vec<&Setup> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Save(s) => Some(&**s),
            _ => None,
        })
        .collect()
}

fn one_save(effects: &[Effect]) -> &Setup {
    match saves(effects).as_slice() {
        [one] => one,
        _ => panic!("expected one save: {effects:?}"),
    }
}

fn now() -> String {
    "2026-05-04T09:30:00Z".to_string()
}

fn cw_401() -> ApiError {
    ApiError::new(
        Api::ConnectWise,
        ErrorKind::Unauthorized,
        "refused the credentials: The company id, public key or private key is not valid.",
    )
    .with_status(401)
    .with_code("Unauthorized")
    .with_operation("GET /company/companies/count")
}

fn at_401() -> ApiError {
    ApiError::new(
        Api::Autotask,
        ErrorKind::Unauthorized,
        "refused the credentials: The UserName or Secret is not valid for this Autotask database.",
    )
    .with_status(401)
    .with_operation("POST Companies/query/count")
}

/// Press "Test connection" and return its generation.
fn press_test(app: &mut App) -> u64 {
    go(app, Row::Button(Button::Test));
    let effects = press(app, KeyCode::Enter);
    match psa_cmds(&effects).as_slice() {
        [Cmd::TestConnectWise { generation, .. }] | [Cmd::TestAutotask { generation, .. }] => {
            *generation
        }
        other => panic!("expected one test command, got {other:?}"),
    }
}

fn tenants() -> Vec<Item> {
    vec![
        Item::new("t-au", "Bass Strait Technology Pty Ltd (AU)", ""),
        Item::new("t-nz", "Bass Strait Technology (NZ) Ltd", ""),
        Item::new("t-demo", "Demo Company (AU)", ""),
    ]
}

fn contacts() -> Vec<Item> {
    let mut v = vec![
        Item::new("c-dd", "Dicker Data Limited", "supplier"),
        Item::new("c-ms", "Microsoft Pty Ltd", "supplier"),
    ];
    for (i, n) in [
        "Apex Dental Group",
        "Bellarine Accounting",
        "Coastal Freight Co",
        "Derwent Legal",
        "Eastside Physio",
        "Flinders Engineering",
        "Glenelg Motors",
        "Hobart Architects",
        "Inverloch Surf Club",
        "Jindabyne Lodge",
        "Kiama Vets",
        "Launceston Dental",
        "Mornington Bakery",
        "Noosa Realty",
    ]
    .iter()
    .enumerate()
    {
        v.push(Item::new(format!("c-{i}"), *n, "customer"));
    }
    v.sort_by_key(|i| i.label.to_lowercase());
    v
}

fn expense() -> Vec<Item> {
    vec![
        Item::new("310", "310  Cost of Goods Sold", "DIRECTCOSTS"),
        Item::new("400", "400  Advertising", "OVERHEADS"),
        Item::new("429", "429  General Expenses", "OVERHEADS"),
        Item::new("489", "489  Telephone & Internet", "OVERHEADS"),
    ]
}

fn revenue() -> Vec<Item> {
    vec![
        Item::new("200", "200  Sales", "REVENUE"),
        Item::new("260", "260  Other Revenue", "OTHERINCOME"),
    ]
}

/// A Xero sign-in up to the choices (organisation chosen, lists loaded). Returns the
/// generation.
fn xero_signed_in(app: &mut App) -> u64 {
    choose(app, Kind::Xero);
    go(app, Row::Button(Button::XeroAuthenticate));
    let effects = press(app, KeyCode::Enter);
    let generation = match psa_cmds(&effects).as_slice() {
        [Cmd::XeroStart { generation, .. }] => *generation,
        other => panic!("expected XeroStart, got {other:?}"),
    };
    send(
        app,
        Msg::Psa(psa::Msg::XeroWaiting {
            generation,
            url: AUTH_URL.into(),
            redirect_uri: REDIRECT.into(),
        }),
    );
    send(app, Msg::Psa(psa::Msg::XeroConnecting { generation }));
    send(
        app,
        Msg::Psa(psa::Msg::XeroTenants {
            generation,
            tenants: tenants(),
            refresh: Secret::new(REFRESH),
        }),
    );
    // The organisation list is open: choose the second.
    assert!(app.psa.xero.tenants.open);
    press(app, KeyCode::Down);
    let effects = press(app, KeyCode::Enter);
    assert!(
        matches!(
            psa_cmds(&effects).as_slice(),
            [Cmd::XeroLoad { tenant_id, .. }] if tenant_id == "t-nz"
        ),
        "{effects:?}"
    );
    send(
        app,
        Msg::Psa(psa::Msg::XeroLists {
            generation,
            tenant_id: "t-nz".into(),
            contacts: contacts(),
            expense: expense(),
            revenue: revenue(),
            refresh: Secret::new(REFRESH),
        }),
    );
    generation
}

// ---------------------------------------------------------------------------------------------
// Snapshots: ConnectWise
// ---------------------------------------------------------------------------------------------

#[test]
fn snapshots_connectwise() {
    let mut app = app_with(Setup::default());
    shot("cw_empty", &app);

    // Validation as the person types: a site that is no address, a client id that is no GUID.
    edit(&mut app, Field::CwSite, "ftp://my connectwise");
    edit(&mut app, Field::CwClientId, "3f2a9c1e0b4d");
    go(&mut app, Row::Button(Button::Test));
    press(&mut app, KeyCode::Enter);
    shot("cw_validation", &app);

    let mut app = app_with(filled());
    shot("cw_filled", &app);
    let generation = press_test(&mut app);
    shot("cw_testing", &app);

    let mut ok = app.clone();
    send(
        &mut ok,
        Msg::Psa(psa::Msg::ConnectWise {
            generation,
            result: Ok(CwFound {
                companies: 14,
                agreements: 12,
                verified_at: now(),
            }),
        }),
    );
    ok.tab = Tab::Psa;
    shot("cw_success", &ok);

    send(
        &mut app,
        Msg::Psa(psa::Msg::ConnectWise {
            generation,
            result: Err(cw_401()),
        }),
    );
    shot("cw_failure", &app);
}

// ---------------------------------------------------------------------------------------------
// Snapshots: Autotask
// ---------------------------------------------------------------------------------------------

#[test]
fn snapshots_autotask() {
    let mut app = app_with(Setup::default());
    choose(&mut app, Kind::Autotask);
    shot("at_empty", &app);

    edit(&mut app, Field::AtUser, "cspsync-api at contoso");
    shot("at_validation", &app);

    let mut app = app_with(filled());
    choose(&mut app, Kind::Autotask);
    shot("at_filled", &app);
    let generation = press_test(&mut app);
    shot("at_testing", &app);

    let mut ok = app.clone();
    send(
        &mut ok,
        Msg::Psa(psa::Msg::Autotask {
            generation,
            result: Ok(AtFound {
                zone_name: "Australia / New Zealand".into(),
                zone_url: "https://webservices6.autotask.net/atservicesrest/".into(),
                companies: 13,
                verified_at: now(),
            }),
        }),
    );
    ok.tab = Tab::Psa;
    shot("at_success", &ok);

    send(
        &mut app,
        Msg::Psa(psa::Msg::Autotask {
            generation,
            result: Err(at_401()),
        }),
    );
    shot("at_failure", &app);
}

// ---------------------------------------------------------------------------------------------
// Snapshots: Xero
// ---------------------------------------------------------------------------------------------

#[test]
fn snapshots_xero() {
    let mut app = app_with(Setup::default());
    choose(&mut app, Kind::Xero);
    shot("xero_signed_out", &app);

    go(&mut app, Row::Button(Button::XeroAuthenticate));
    let effects = press(&mut app, KeyCode::Enter);
    let [Cmd::XeroStart { generation, .. }] = psa_cmds(&effects).as_slice() else {
        panic!("{effects:?}")
    };
    let generation = *generation;
    send(
        &mut app,
        Msg::Psa(psa::Msg::XeroWaiting {
            generation,
            url: AUTH_URL.into(),
            redirect_uri: REDIRECT.into(),
        }),
    );
    shot("xero_waiting", &app);

    // Over SSH: a pasted address that is not the redirect.
    press(&mut app, KeyCode::Enter);
    type_text(&mut app, "https://go.xero.com/Dashboard");
    let effects = press(&mut app, KeyCode::Enter);
    assert_eq!(psa_cmds(&effects).len(), 1);
    send(
        &mut app,
        Msg::Psa(psa::Msg::XeroPasteRejected {
            generation,
            reason:
                "the address has no `code`: sign in again and paste the address the browser ends on"
                    .into(),
        }),
    );
    shot("xero_paste_rejected", &app);

    send(&mut app, Msg::Psa(psa::Msg::XeroConnecting { generation }));
    shot("xero_connecting", &app);

    send(
        &mut app,
        Msg::Psa(psa::Msg::XeroTenants {
            generation,
            tenants: tenants(),
            refresh: Secret::new(REFRESH),
        }),
    );
    shot("xero_choose_tenant", &app);

    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Enter);
    shot("xero_loading_lists", &app);

    send(
        &mut app,
        Msg::Psa(psa::Msg::XeroLists {
            generation,
            tenant_id: "t-nz".into(),
            contacts: contacts(),
            expense: expense(),
            revenue: revenue(),
            refresh: Secret::new(REFRESH),
        }),
    );
    shot("xero_choose_accounts", &app);

    // The contact list, filtered as the person types.
    go(&mut app, Row::Picker(PickerId::Contact));
    press(&mut app, KeyCode::Enter);
    shot("xero_contacts_open", &app);
    type_text(&mut app, "dent");
    shot("xero_contacts_filtered", &app);
    press(&mut app, KeyCode::Esc);

    // The expense list only has expense-like accounts.
    go(&mut app, Row::Picker(PickerId::Expense));
    press(&mut app, KeyCode::Enter);
    shot("xero_expense_open", &app);
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Enter);

    go(&mut app, Row::Button(Button::XeroSave));
    let effects = press(&mut app, KeyCode::Enter);
    assert!(matches!(
        psa_cmds(&effects).as_slice(),
        [Cmd::XeroSave { .. }]
    ));
    send(
        &mut app,
        Msg::Psa(psa::Msg::XeroSaved {
            generation,
            refresh: Secret::new(REFRESH),
            verified_at: now(),
        }),
    );
    app.tab = Tab::Psa;
    shot("xero_done", &app);

    // A restart: the saved choices, and the ways to change them.
    let restarted = app_with(app.setup.clone());
    shot("xero_saved_restart", &restarted);
}

#[test]
fn snapshots_xero_failure() {
    let mut app = app_with(Setup::default());
    choose(&mut app, Kind::Xero);
    go(&mut app, Row::Button(Button::XeroAuthenticate));
    let effects = press(&mut app, KeyCode::Enter);
    let [Cmd::XeroStart { generation, .. }] = psa_cmds(&effects).as_slice() else {
        panic!()
    };
    let generation = *generation;
    send(
        &mut app,
        Msg::Psa(psa::Msg::XeroFailed {
            generation,
            error: ApiError::new(
                Api::Xero,
                ErrorKind::OAuth,
                "sign-in did not complete: sign-in failed: access_denied: The user declined.",
            ),
        }),
    );
    assert_eq!(app.psa.xero.phase, XeroPhase::SignedOut);
    shot("xero_failure", &app);
}

// ---------------------------------------------------------------------------------------------
// Flows through the pure update function
// ---------------------------------------------------------------------------------------------

#[test]
fn connectwise_typed_tested_and_saved() {
    let mut app = app_with(Setup::default());
    assert_eq!(app.status(Tab::Psa), Step::ToDo);
    assert!(!app.unsaved());

    // Enter on the selector goes to the first field needing a value.
    go(&mut app, Row::Kind);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.psa.focused(), Row::Field(Field::CwCompany));

    edit(&mut app, Field::CwCompany, COMPANY);
    edit(&mut app, Field::CwSite, SITE);
    edit(&mut app, Field::CwPublicKey, PUBLIC);
    edit(&mut app, Field::CwPrivateKey, PRIVATE);
    edit(&mut app, Field::CwClientId, "not-a-guid");
    assert!(app.unsaved(), "typed values are unsaved");
    assert!(
        screen(&app, 80, 24).contains("Not a GUID"),
        "the problem shows next to the field as it is typed"
    );

    // Test with a bad field: nothing runs, the focus goes to the field.
    go(&mut app, Row::Button(Button::Test));
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert_eq!(app.psa.focused(), Row::Field(Field::CwClientId));

    edit(&mut app, Field::CwClientId, CLIENT);
    go(&mut app, Row::Button(Button::Test));
    let effects = press(&mut app, KeyCode::Enter);
    let [
        Cmd::TestConnectWise {
            generation,
            settings,
            secrets,
        },
    ] = psa_cmds(&effects).as_slice()
    else {
        panic!("{effects:?}")
    };
    assert_eq!(settings.psa.connectwise.company_id, COMPANY);
    assert_eq!(settings.psa.connectwise.site, SITE);
    assert_eq!(settings.psa.connectwise.public_key, PUBLIC);
    assert_eq!(settings.psa.connectwise.client_id, CLIENT);
    assert_eq!(secrets.connectwise_private_key.as_deref(), Some(PRIVATE));
    assert!(!format!("{effects:?}").contains(PRIVATE), "Debug redacts");
    let generation = *generation;
    assert_eq!(app.status(Tab::Psa), Step::Busy);
    assert!(screen(&app, 80, 24).contains("Testing the connection to ConnectWise"));

    let effects = send(
        &mut app,
        Msg::Psa(psa::Msg::ConnectWise {
            generation,
            result: Ok(CwFound {
                companies: 1,
                agreements: 12,
                verified_at: now(),
            }),
        }),
    );
    let saved = one_save(&effects);
    assert_eq!(saved.settings.psa.kind, PsaKindSetting::ConnectWise);
    assert_eq!(
        saved.settings.psa.verified_at.as_deref(),
        Some(now().as_str())
    );
    assert_eq!(saved.settings.psa.connectwise.client_id, CLIENT);
    assert_eq!(
        saved.secrets.connectwise_private_key.as_deref(),
        Some(PRIVATE)
    );
    assert_eq!(app.status(Tab::Psa), Step::Done);
    assert!(!app.unsaved());
    // The wizard moves on to the first open step.
    assert_eq!(app.tab, Tab::SignIn);
    app.tab = Tab::Psa;
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("Connected to ConnectWise: 1 company, 12 agreements."),
        "{text}"
    );

    // A restart resumes: the step stays done, the form is filled.
    let again = app_with(app.setup.clone());
    assert_eq!(again.status(Tab::Psa), Step::Done);
    assert!(screen(&again, 80, 24).contains("Saved: cspsync uses ConnectWise"));
}

#[test]
fn stale_results_are_ignored() {
    let mut app = app_with(filled());
    let generation = press_test(&mut app);
    // The person edits a field while the test runs: its answer says nothing about it.
    edit(&mut app, Field::CwPublicKey, "AnotherPublicKey");
    let effects = send(
        &mut app,
        Msg::Psa(psa::Msg::ConnectWise {
            generation,
            result: Ok(CwFound {
                companies: 3,
                agreements: 4,
                verified_at: now(),
            }),
        }),
    );
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(app.status(Tab::Psa), Step::ToDo);
    assert_eq!(app.psa.cw.outcome, Outcome::None);

    // A newer test's answer counts.
    let newer = press_test(&mut app);
    assert!(newer > generation);
    let effects = send(
        &mut app,
        Msg::Psa(psa::Msg::ConnectWise {
            generation: newer,
            result: Ok(CwFound {
                companies: 3,
                agreements: 4,
                verified_at: now(),
            }),
        }),
    );
    assert_eq!(saves(&effects).len(), 1);
    assert_eq!(
        app.setup.settings.psa.connectwise.public_key,
        "AnotherPublicKey"
    );
}

#[test]
fn connectwise_refusal_names_the_fields() {
    let mut app = app_with(filled());
    let generation = press_test(&mut app);
    let effects = send(
        &mut app,
        Msg::Psa(psa::Msg::ConnectWise {
            generation,
            result: Err(cw_401()),
        }),
    );
    assert!(saves(&effects).is_empty());
    assert_eq!(app.status(Tab::Psa), Step::ToDo);
    let Outcome::Failed { blame, .. } = &app.psa.cw.outcome else {
        panic!("{:?}", app.psa.cw.outcome)
    };
    assert_eq!(
        blame,
        &vec![Field::CwCompany, Field::CwPublicKey, Field::CwPrivateKey]
    );
    let text = screen(&app, 120, 40);
    assert!(text.contains("HTTP 401"), "{text}");
    assert!(
        text.contains("✗ marks what to check: the company id, public key and private key."),
        "{text}"
    );
    assert!(text.contains(cw_401().hint()), "the hint says what to do");

    // A refused clientId points at the client id only.
    let generation = press_test(&mut app);
    let e = ApiError::new(
        Api::ConnectWise,
        ErrorKind::Unauthorized,
        "refused the credentials: The clientId is not registered or has been disabled.",
    )
    .with_status(401);
    send(
        &mut app,
        Msg::Psa(psa::Msg::ConnectWise {
            generation,
            result: Err(e),
        }),
    );
    let Outcome::Failed { blame, .. } = &app.psa.cw.outcome else {
        panic!()
    };
    assert_eq!(blame, &vec![Field::CwClientId]);
}

#[test]
fn autotask_success_saves_the_zone_and_failures_name_fields() {
    let mut app = app_with(filled());
    choose(&mut app, Kind::Autotask);
    let generation = press_test(&mut app);
    assert!(screen(&app, 80, 24).contains("Finding your Autotask zone"));

    // Zone discovery knows no such user: the user field is named.
    let nf = ApiError::new(
        Api::Autotask,
        ErrorKind::NotFound,
        "has no such record: No Autotask zone is known for the user 'x'.",
    )
    .with_status(404)
    .with_operation("GET /v1.0/zoneInformation");
    send(
        &mut app,
        Msg::Psa(psa::Msg::Autotask {
            generation,
            result: Err(nf),
        }),
    );
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("Autotask knows no API user by that name"),
        "{text}"
    );

    let generation = press_test(&mut app);
    send(
        &mut app,
        Msg::Psa(psa::Msg::Autotask {
            generation,
            result: Err(at_401()),
        }),
    );
    let Outcome::Failed { blame, .. } = &app.psa.at.outcome else {
        panic!()
    };
    assert_eq!(blame, &vec![Field::AtUser, Field::AtSecret]);

    let generation = press_test(&mut app);
    let effects = send(
        &mut app,
        Msg::Psa(psa::Msg::Autotask {
            generation,
            result: Ok(AtFound {
                zone_name: "Australia / New Zealand".into(),
                zone_url: "https://webservices6.autotask.net/atservicesrest/".into(),
                companies: 13,
                verified_at: now(),
            }),
        }),
    );
    let saved = one_save(&effects);
    let at = &saved.settings.psa.autotask;
    assert_eq!(saved.settings.psa.kind, PsaKindSetting::Autotask);
    assert_eq!(at.zone_name, "Australia / New Zealand");
    assert_eq!(
        at.zone_url,
        "https://webservices6.autotask.net/atservicesrest/"
    );
    assert_eq!(at.username, AT_USER);
    assert_eq!(at.integration_code, AT_CODE);
    assert_eq!(saved.secrets.autotask_secret.as_deref(), Some(AT_SECRET));
    assert_eq!(app.status(Tab::Psa), Step::Done);
}

#[test]
fn editing_keeps_the_keys_and_secrets_stay_hidden() {
    let mut app = app_with(filled());
    go(&mut app, Row::Field(Field::CwPrivateKey));
    press(&mut app, KeyCode::Enter);
    assert!(app.editing());
    // Digits go to the field, not to the tab bar.
    type_text(&mut app, "12");
    assert_eq!(app.tab, Tab::Psa);
    assert_eq!(
        app.psa.cw.value(Field::CwPrivateKey),
        format!("{PRIVATE}12")
    );
    assert!(!screen(&app, 80, 24).contains(PRIVATE));
    // Ctrl-R reveals while editing, and hides again.
    send(&mut app, ctrl('r'));
    assert!(screen(&app, 120, 40).contains(&format!("{PRIVATE}12")));
    send(&mut app, ctrl('r'));
    assert!(!screen(&app, 120, 40).contains(PRIVATE));
    // Ctrl-U clears; the problem shows.
    send(&mut app, ctrl('u'));
    press(&mut app, KeyCode::Esc);
    assert!(!app.editing());
    assert!(screen(&app, 80, 24).contains("Required: see System → Members → API Members."));
    // Unsaved changes: quitting asks first.
    assert!(app.unsaved());
    press(&mut app, KeyCode::Char('q'));
    assert_eq!(app.modal, Some(Modal::ConfirmQuit));
}

#[test]
fn selector_switches_only_on_its_row_and_digits_switch_tabs() {
    let mut app = app_with(filled());
    go(&mut app, Row::Kind);
    press(&mut app, KeyCode::Right);
    assert_eq!(app.psa.kind, Kind::Autotask);
    press(&mut app, KeyCode::Right);
    assert_eq!(app.psa.kind, Kind::Xero);
    press(&mut app, KeyCode::Right);
    assert_eq!(app.psa.kind, Kind::ConnectWise);
    press(&mut app, KeyCode::Left);
    assert_eq!(app.psa.kind, Kind::Xero);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Right);
    assert_eq!(app.psa.kind, Kind::Xero, "←/→ only act on the selector row");
    press(&mut app, KeyCode::Char('2'));
    assert_eq!(app.tab, Tab::Distributor);
    let hints = app.hints();
    assert!(hints.iter().any(|h| h.key == "1-7/Tab"));
}

#[test]
fn xero_flow_chooses_and_saves_with_the_refresh_token() {
    let mut app = app_with(Setup::default());
    let generation = xero_signed_in(&mut app);
    assert_eq!(app.psa.xero.phase, XeroPhase::Choosing);
    assert_eq!(app.status(Tab::Psa), Step::Busy, "in progress until saved");
    // The distributor is suggested as the contact; the focus waits on the expense account.
    assert_eq!(app.psa.xero.contact.selected_id(), Some("c-dd"));
    assert_eq!(app.psa.focused(), Row::Picker(PickerId::Expense));

    // Saving before choosing the accounts says what is missing.
    go(&mut app, Row::Button(Button::XeroSave));
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("Choose the expense account and revenue account first"),
        "{text}"
    );

    // Type-to-filter in the expense list.
    go(&mut app, Row::Picker(PickerId::Expense));
    press(&mut app, KeyCode::Enter);
    assert!(app.editing(), "an open list has the keys");
    type_text(&mut app, "tele");
    assert_eq!(app.psa.xero.expense.filtered().len(), 1);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.psa.xero.expense.selected_id(), Some("489"));
    assert_eq!(app.psa.focused(), Row::Picker(PickerId::Revenue));
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.psa.xero.revenue.selected_id(), Some("260"));
    assert!(app.unsaved());

    go(&mut app, Row::Button(Button::XeroSave));
    let effects = press(&mut app, KeyCode::Enter);
    assert!(matches!(
        psa_cmds(&effects).as_slice(),
        [Cmd::XeroSave { generation: g }] if *g == generation
    ));
    let effects = send(
        &mut app,
        Msg::Psa(psa::Msg::XeroSaved {
            generation,
            refresh: Secret::new("rotated-refresh-2"),
            verified_at: now(),
        }),
    );
    let saved = one_save(&effects);
    let x = &saved.settings.psa.xero;
    assert_eq!(saved.settings.psa.kind, PsaKindSetting::Xero);
    assert_eq!(x.tenant_id, "t-nz");
    assert_eq!(x.tenant_name, "Bass Strait Technology (NZ) Ltd");
    assert_eq!(x.contact_id, "c-dd");
    assert_eq!(x.contact_name, "Dicker Data Limited");
    assert_eq!(x.expense_account_code, "489");
    assert_eq!(x.revenue_account_code, "260");
    assert_eq!(
        saved.secrets.xero_refresh_token.as_deref(),
        Some("rotated-refresh-2"),
        "the newest refresh token is saved"
    );
    assert_eq!(app.status(Tab::Psa), Step::Done);
    assert!(!app.unsaved());
}

#[test]
fn xero_paste_cancel_and_stale_answers() {
    let mut app = app_with(Setup::default());
    choose(&mut app, Kind::Xero);
    go(&mut app, Row::Button(Button::XeroAuthenticate));
    let effects = press(&mut app, KeyCode::Enter);
    let [Cmd::XeroStart { generation, .. }] = psa_cmds(&effects).as_slice() else {
        panic!()
    };
    let generation = *generation;
    assert_eq!(app.status(Tab::Psa), Step::Busy);
    send(
        &mut app,
        Msg::Psa(psa::Msg::XeroWaiting {
            generation,
            url: AUTH_URL.into(),
            redirect_uri: REDIRECT.into(),
        }),
    );
    let text = screen(&app, 120, 40);
    assert!(text.contains("client_id=CSPSYNCXEROCLIENTID"), "{text}");
    assert!(
        text.contains("Waiting for the browser to come back to http://localhost:53682/callback")
    );
    assert_eq!(app.psa.focused(), Row::Field(Field::XeroPaste));

    // Paste the address; Enter hands it over.
    press(&mut app, KeyCode::Enter);
    type_text(
        &mut app,
        "http://localhost:53682/callback?code=abc&state=Zm9vYmFyYmF6cXV4",
    );
    let effects = press(&mut app, KeyCode::Enter);
    match psa_cmds(&effects).as_slice() {
        [Cmd::XeroPaste { generation: g, url }] => {
            assert_eq!(*g, generation);
            assert!(url.expose().contains("code=abc"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !format!("{effects:?}").contains("code=abc"),
        "Debug redacts"
    );

    // Cancel: the sign-in's later answers are dropped.
    go(&mut app, Row::Button(Button::XeroCancel));
    let effects = press(&mut app, KeyCode::Enter);
    assert!(matches!(
        psa_cmds(&effects).as_slice(),
        [Cmd::XeroCancel { .. }]
    ));
    assert_eq!(app.psa.xero.phase, XeroPhase::SignedOut);
    send(
        &mut app,
        Msg::Psa(psa::Msg::XeroTenants {
            generation,
            tenants: tenants(),
            refresh: Secret::new(REFRESH),
        }),
    );
    assert_eq!(app.psa.xero.phase, XeroPhase::SignedOut);
    assert_eq!(app.status(Tab::Psa), Step::ToDo);
}

#[test]
fn xero_resume_keeps_the_rotated_refresh_token() {
    // A saved Xero setup.
    let mut setup = Setup::default();
    setup.settings.psa.kind = PsaKindSetting::Xero;
    setup.settings.psa.verified_at = Some(now());
    let x = &mut setup.settings.psa.xero;
    x.tenant_id = "t-au".into();
    x.tenant_name = "Bass Strait Technology Pty Ltd (AU)".into();
    x.contact_id = "c-ms".into();
    x.contact_name = "Microsoft Pty Ltd".into();
    x.expense_account_code = "310".into();
    x.revenue_account_code = "200".into();
    setup.secrets.xero_refresh_token = Some(REFRESH.into());
    let mut app = app_with(setup);
    assert_eq!(app.status(Tab::Psa), Step::Done);
    assert_eq!(app.psa.kind, Kind::Xero);

    go(&mut app, Row::Button(Button::XeroChange));
    let effects = press(&mut app, KeyCode::Enter);
    let [
        Cmd::XeroResume {
            generation,
            secrets,
            ..
        },
    ] = psa_cmds(&effects).as_slice()
    else {
        panic!("{effects:?}")
    };
    assert_eq!(secrets.xero_refresh_token.as_deref(), Some(REFRESH));
    let generation = *generation;
    // Signing in with the refresh token rotated it: saved at once.
    let effects = send(
        &mut app,
        Msg::Psa(psa::Msg::XeroTenants {
            generation,
            tenants: tenants(),
            refresh: Secret::new("rotated-refresh-3"),
        }),
    );
    let saved = one_save(&effects);
    assert_eq!(
        saved.secrets.xero_refresh_token.as_deref(),
        Some("rotated-refresh-3")
    );
    // The saved organisation is chosen again and its lists are asked for.
    assert!(matches!(
        psa_cmds(&effects).as_slice(),
        [Cmd::XeroLoad { tenant_id, .. }] if tenant_id == "t-au"
    ));
    send(
        &mut app,
        Msg::Psa(psa::Msg::XeroLists {
            generation,
            tenant_id: "t-au".into(),
            contacts: contacts(),
            expense: expense(),
            revenue: revenue(),
            refresh: Secret::new("rotated-refresh-3"),
        }),
    );
    // The saved choices come back selected; nothing differs from what is saved.
    assert_eq!(app.psa.xero.contact.selected_id(), Some("c-ms"));
    assert_eq!(app.psa.xero.expense.selected_id(), Some("310"));
    assert_eq!(app.psa.xero.revenue.selected_id(), Some("200"));
    assert!(!app.unsaved());
    assert_eq!(app.psa.focused(), Row::Button(Button::XeroSave));
}

#[test]
fn never_panics_at_any_size() {
    let mut states = vec![app_with(Setup::default()), app_with(filled())];
    let mut x = app_with(Setup::default());
    xero_signed_in(&mut x);
    states.push(x.clone());
    go(&mut x, Row::Picker(PickerId::Contact));
    press(&mut x, KeyCode::Enter);
    states.push(x);
    let mut waiting = app_with(Setup::default());
    choose(&mut waiting, Kind::Xero);
    go(&mut waiting, Row::Button(Button::XeroAuthenticate));
    let effects = press(&mut waiting, KeyCode::Enter);
    let [Cmd::XeroStart { generation, .. }] = psa_cmds(&effects).as_slice() else {
        panic!()
    };
    let generation = *generation;
    send(
        &mut waiting,
        Msg::Psa(psa::Msg::XeroWaiting {
            generation,
            url: AUTH_URL.into(),
            redirect_uri: REDIRECT.into(),
        }),
    );
    states.push(waiting);
    for app in &states {
        for (w, h) in [
            (1, 1),
            (2, 3),
            (80, 24),
            (81, 25),
            (90, 26),
            (300, 100),
            (80, 60),
        ] {
            let _ = screen(app, w, h);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// psa::run against the simulated world
// ---------------------------------------------------------------------------------------------

fn world() -> World {
    generate(&GenOptions::new(12, 42, Utc::now().date_naive()))
}

struct Sim {
    _handle: SimHandle,
    world: World,
    svc: Arc<Services>,
    setup: Setup,
    _dir: tempfile::TempDir,
}

async fn start(world: World, demo: bool) -> Sim {
    let handle = support::sim::start(&world).await;
    let urls = handle.urls();
    let setup = cspsync::run::demo_setup(&world, &urls).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = connect::Context::with_endpoints(Endpoints::from_sim(&urls).unwrap());
    let svc = Services::new(
        ctx,
        ConfigDir {
            dir: dir.path().to_path_buf(),
        },
        demo.then(|| Demo {
            control: urls.control.clone(),
        }),
    );
    Sim {
        _handle: handle,
        world,
        svc: Arc::new(svc),
        setup,
        _dir: dir,
    }
}

type Rx = mpsc::Receiver<Msg>;

async fn next(rx: &mut Rx) -> psa::Msg {
    match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
        Ok(Some(Msg::Psa(m))) => m,
        Ok(other) => panic!("unexpected message {other:?}"),
        Err(_) => panic!("no message in time"),
    }
}

async fn run_one(sim: &Sim, cmd: Cmd) -> psa::Msg {
    let (tx, mut rx) = mpsc::channel(16);
    psa::run(cmd, sim.svc.clone(), tx).await;
    next(&mut rx).await
}

fn test_cw(setup: &Setup) -> Cmd {
    Cmd::TestConnectWise {
        generation: 7,
        settings: Box::new(setup.settings.clone()),
        secrets: Box::new(setup.secrets.clone()),
    }
}

fn test_at(setup: &Setup) -> Cmd {
    Cmd::TestAutotask {
        generation: 8,
        settings: Box::new(setup.settings.clone()),
        secrets: Box::new(setup.secrets.clone()),
    }
}

#[tokio::test]
async fn run_connectwise_right_and_wrong_private_key() {
    let sim = start(world(), false).await;
    match run_one(&sim, test_cw(&sim.setup)).await {
        psa::Msg::ConnectWise {
            generation: 7,
            result: Ok(found),
        } => {
            assert_eq!(
                found.companies,
                sim.world.connectwise.companies.len() as u64
            );
            assert_eq!(
                found.agreements,
                sim.world.connectwise.agreements.len() as u64
            );
            assert!(chrono::DateTime::parse_from_rfc3339(&found.verified_at).is_ok());
        }
        other => panic!("{other:?}"),
    }

    let mut wrong = sim.setup.clone();
    wrong.secrets.connectwise_private_key = Some("NotThePrivateKey".into());
    let msg = run_one(&sim, test_cw(&wrong)).await;
    let psa::Msg::ConnectWise { result: Err(e), .. } = &msg else {
        panic!("{msg:?}")
    };
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert!(!e.to_string().contains("NotThePrivateKey"));

    // Fed to the pane: the keys are named, nothing is saved.
    let mut app = app_with(wrong.clone());
    let generation = press_test(&mut app);
    let psa::Msg::ConnectWise { result, .. } = msg else {
        unreachable!()
    };
    let effects = send(
        &mut app,
        Msg::Psa(psa::Msg::ConnectWise { generation, result }),
    );
    assert!(saves(&effects).is_empty());
    let text = screen(&app, 120, 40);
    assert!(text.contains("private key"), "{text}");
    assert!(!text.contains("NotThePrivateKey"));
}

#[tokio::test]
async fn run_autotask_right_wrong_secret_and_unknown_user() {
    let sim = start(world(), false).await;
    match run_one(&sim, test_at(&sim.setup)).await {
        psa::Msg::Autotask {
            generation: 8,
            result: Ok(found),
        } => {
            assert_eq!(found.zone_name, sim.world.autotask.zone_name);
            assert!(
                found
                    .zone_url
                    .contains(&format!("zone{}", sim.world.autotask.zone_number)),
                "{}",
                found.zone_url
            );
            assert_eq!(found.companies, sim.world.autotask.companies.len() as u64);
        }
        other => panic!("{other:?}"),
    }

    // Zone discovery does not check the secret: the count does.
    let mut wrong = sim.setup.clone();
    wrong.secrets.autotask_secret = Some("not-the-secret".into());
    match run_one(&sim, test_at(&wrong)).await {
        psa::Msg::Autotask { result: Err(e), .. } => {
            assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
            assert!(e.operation.contains("Companies"), "{e}");
            assert!(!e.to_string().contains("not-the-secret"));
        }
        other => panic!("{other:?}"),
    }

    let mut unknown = sim.setup.clone();
    unknown.settings.psa.autotask.username = "nobody@example.com".into();
    let msg = run_one(&sim, test_at(&unknown)).await;
    let psa::Msg::Autotask { result: Err(e), .. } = &msg else {
        panic!("{msg:?}")
    };
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    let mut app = app_with(unknown);
    choose(&mut app, Kind::Autotask);
    let generation = press_test(&mut app);
    send(
        &mut app,
        Msg::Psa(psa::Msg::Autotask {
            generation,
            result: Err(e.clone()),
        }),
    );
    let Outcome::Failed { blame, .. } = &app.psa.at.outcome else {
        panic!()
    };
    assert_eq!(blame, &vec![Field::AtUser]);
}

/// Run the pane's effects for real and feed the answers back until `done`.
async fn pump(
    app: &mut App,
    svc: &Arc<Services>,
    effects: Vec<Effect>,
    done: impl Fn(&App) -> bool,
) -> Vec<Setup> {
    let (tx, mut rx) = mpsc::channel::<Msg>(64);
    let mut saved = Vec::new();
    let mut queue = effects;
    loop {
        for e in queue.drain(..) {
            match e {
                Effect::Psa(c) => {
                    tokio::spawn(psa::run(c, svc.clone(), tx.clone()));
                }
                Effect::Save(s) => saved.push(*s),
                other => panic!("unexpected effect {other:?}"),
            }
        }
        if done(app) {
            return saved;
        }
        let m = next(&mut rx).await;
        queue = app::update(app, Msg::Psa(m));
    }
}

#[tokio::test]
async fn run_xero_demo_sign_in_lists_and_save() {
    let sim = start(world(), true).await;
    let mut app = App::new(sim.setup.clone(), true);
    app.tab = Tab::Psa;
    choose(&mut app, Kind::Xero);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.psa.focused(), Row::Button(Button::XeroAuthenticate));
    let effects = press(&mut app, KeyCode::Enter);
    // The demo's consent is automatic: signed in, the one organisation chosen, lists loaded.
    pump(&mut app, &sim.svc, effects, |a| {
        a.psa.xero.phase == XeroPhase::Choosing && !a.psa.xero.loading
    })
    .await;
    let org = &sim.world.xero.organisations[0];
    assert_eq!(
        app.psa.xero.tenants.selected_id(),
        Some(org.tenant_id.as_str())
    );
    assert_eq!(
        app.psa.xero.tenants.selected_item().unwrap().label,
        org.name
    );
    // Contacts: the active ones; accounts split by type.
    let active: usize = org
        .contacts
        .iter()
        .filter(|c| c.contact_status == "ACTIVE" && !c.name.is_empty())
        .count();
    assert_eq!(app.psa.xero.contact.items.len(), active);
    let of_types = |types: &[&str]| {
        org.accounts
            .iter()
            .filter(|a| a.status == "ACTIVE" && !a.code.is_empty())
            .filter(|a| types.contains(&a.account_type.as_str()))
            .count()
    };
    assert_eq!(
        app.psa.xero.expense.items.len(),
        of_types(&["EXPENSE", "DIRECTCOSTS", "OVERHEADS"])
    );
    assert_eq!(
        app.psa.xero.revenue.items.len(),
        of_types(&["REVENUE", "SALES", "OTHERINCOME"])
    );
    assert!(!app.psa.xero.expense.items.is_empty() && !app.psa.xero.revenue.items.is_empty());
    assert!(
        app.psa
            .xero
            .revenue
            .items
            .iter()
            .all(|i| ["REVENUE", "SALES", "OTHERINCOME"].contains(&i.detail.as_str()))
    );

    // Choose the accounts (and a contact, if none was suggested) and save.
    for p in [PickerId::Contact, PickerId::Expense, PickerId::Revenue] {
        if app.psa.xero.picker(p).selected_item().is_none() {
            go(&mut app, Row::Picker(p));
            press(&mut app, KeyCode::Enter);
            press(&mut app, KeyCode::Enter);
        }
    }
    go(&mut app, Row::Button(Button::XeroSave));
    let effects = press(&mut app, KeyCode::Enter);
    let saved = pump(&mut app, &sim.svc, effects, |a| {
        matches!(a.psa.xero.outcome, Outcome::Ok(_))
    })
    .await;
    assert_eq!(app.status(Tab::Psa), Step::Done);
    let setup = saved.last().expect("saved");
    assert_eq!(setup.settings.psa.kind, PsaKindSetting::Xero);
    assert_eq!(setup.settings.psa.xero.tenant_id, org.tenant_id);
    assert!(setup.settings.psa.verified_at.is_some());

    // The saved refresh token works for a later start (connect::xero, as other commands do).
    let (client, _session) = connect::xero(&sim.svc.ctx, &setup.settings, &setup.secrets).unwrap();
    let accounts = client
        .accounts(&setup.settings.psa.xero.tenant_id, None)
        .await
        .unwrap();
    assert!(
        accounts
            .iter()
            .any(|a| a.code.as_deref()
                == Some(setup.settings.psa.xero.revenue_account_code.as_str()))
    );
}

#[tokio::test]
async fn run_xero_pasted_redirect_url() {
    let sim = start(world(), false).await;
    let (tx, mut rx) = mpsc::channel::<Msg>(16);
    let generation = 3;
    let task = tokio::spawn(psa::run(
        Cmd::XeroStart {
            generation,
            settings: Box::new(sim.setup.settings.clone()),
        },
        sim.svc.clone(),
        tx,
    ));
    let url = match next(&mut rx).await {
        psa::Msg::XeroWaiting {
            generation: 3,
            url,
            redirect_uri,
        } => {
            assert!(
                redirect_uri.starts_with("http://localhost:"),
                "{redirect_uri}"
            );
            assert!(redirect_uri.ends_with("/callback"));
            url
        }
        other => panic!("{other:?}"),
    };

    // The person's browser (elsewhere) allows access and ends on the redirect address: fetch
    // the authorize URL the way that browser would, without following the redirect.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("code="), "{location}");

    // First a wrong paste: explained, and the sign-in keeps waiting.
    let (ptx, mut prx) = mpsc::channel::<Msg>(4);
    psa::run(
        Cmd::XeroPaste {
            generation,
            url: Secret::new("https://go.xero.com/Dashboard"),
        },
        sim.svc.clone(),
        ptx,
    )
    .await;
    assert!(
        prx.try_recv().is_err(),
        "the paste goes to the waiting sign-in"
    );
    match next(&mut rx).await {
        psa::Msg::XeroPasteRejected { reason, .. } => {
            assert!(reason.contains("code"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // An address from another sign-in (its state differs) is refused too.
    let other_state = location.replace("state=", "state=x");
    let (ptx, _prx) = mpsc::channel::<Msg>(4);
    psa::run(
        Cmd::XeroPaste {
            generation,
            url: Secret::new(other_state),
        },
        sim.svc.clone(),
        ptx,
    )
    .await;
    match next(&mut rx).await {
        psa::Msg::XeroPasteRejected { reason, .. } => {
            assert!(reason.contains("another sign-in"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    // The right address, pasted with surrounding spaces.
    let (ptx, _prx) = mpsc::channel::<Msg>(4);
    psa::run(
        Cmd::XeroPaste {
            generation,
            url: Secret::new(format!("  {location}  ")),
        },
        sim.svc.clone(),
        ptx,
    )
    .await;
    assert!(matches!(
        next(&mut rx).await,
        psa::Msg::XeroConnecting { generation: 3 }
    ));
    match next(&mut rx).await {
        psa::Msg::XeroTenants {
            tenants, refresh, ..
        } => {
            let org = &sim.world.xero.organisations[0];
            assert_eq!(tenants.len(), 1);
            assert_eq!(tenants[0].id, org.tenant_id);
            assert_eq!(tenants[0].label, org.name);
            assert!(!refresh.expose().is_empty());
        }
        other => panic!("{other:?}"),
    }
    task.await.unwrap();

    // The lists of that organisation, through the signed-in client kept in the runtime.
    let org = sim.world.xero.organisations[0].tenant_id.clone();
    match run_one(
        &sim,
        Cmd::XeroLoad {
            generation,
            tenant_id: org.clone(),
        },
    )
    .await
    {
        psa::Msg::XeroLists {
            tenant_id,
            contacts,
            expense,
            revenue,
            ..
        } => {
            assert_eq!(tenant_id, org);
            assert!(!contacts.is_empty());
            assert!(
                expense
                    .iter()
                    .all(|i| ["EXPENSE", "DIRECTCOSTS", "OVERHEADS"].contains(&i.detail.as_str()))
            );
            assert!(
                revenue
                    .iter()
                    .all(|i| ["REVENUE", "SALES", "OTHERINCOME"].contains(&i.detail.as_str()))
            );
        }
        other => panic!("{other:?}"),
    }
    let saved_refresh = match run_one(&sim, Cmd::XeroSave { generation }).await {
        psa::Msg::XeroSaved { refresh, .. } => refresh,
        other => panic!("{other:?}"),
    };
    assert!(!saved_refresh.expose().is_empty());

    // A later start resumes from the saved refresh token (a fresh runtime, as after a
    // restart): the token rotates, and the new one comes back to be saved.
    let fresh = Sim {
        svc: Arc::new(Services::new(
            sim.svc.ctx.clone(),
            sim.svc.config.clone(),
            None,
        )),
        ..sim
    };
    let mut secrets = fresh.setup.secrets.clone();
    secrets.xero_refresh_token = Some(saved_refresh.expose().to_string());
    match run_one(
        &fresh,
        Cmd::XeroResume {
            generation: 1,
            settings: Box::new(fresh.setup.settings.clone()),
            secrets: Box::new(secrets),
        },
    )
    .await
    {
        psa::Msg::XeroTenants {
            tenants, refresh, ..
        } => {
            assert_eq!(tenants.len(), 1);
            assert_ne!(refresh.expose(), saved_refresh.expose(), "rotated");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        run_one(
            &fresh,
            Cmd::XeroLoad {
                generation: 1,
                tenant_id: org,
            },
        )
        .await,
        psa::Msg::XeroLists { .. }
    ));
}

#[tokio::test]
async fn run_xero_cancel_ends_the_wait_quietly() {
    let sim = start(world(), false).await;
    let (tx, mut rx) = mpsc::channel::<Msg>(16);
    let task = tokio::spawn(psa::run(
        Cmd::XeroStart {
            generation: 5,
            settings: Box::new(sim.setup.settings.clone()),
        },
        sim.svc.clone(),
        tx,
    ));
    assert!(matches!(next(&mut rx).await, psa::Msg::XeroWaiting { .. }));
    let (ctx, _crx) = mpsc::channel::<Msg>(4);
    psa::run(Cmd::XeroCancel { generation: 6 }, sim.svc.clone(), ctx).await;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the sign-in stops waiting")
        .unwrap();
    assert!(
        rx.recv().await.is_none(),
        "a cancelled sign-in sends nothing"
    );
    // A paste for it now is answered: nothing waits any more.
    let (ptx, mut prx) = mpsc::channel::<Msg>(4);
    psa::run(
        Cmd::XeroPaste {
            generation: 5,
            url: Secret::new("http://localhost/?code=x&state=y"),
        },
        sim.svc.clone(),
        ptx,
    )
    .await;
    assert!(matches!(
        next(&mut prx).await,
        psa::Msg::XeroPasteRejected { .. }
    ));
}

#[test]
fn xero_answers_never_take_the_keys_from_another_form() {
    let mut app = app_with(filled());
    choose(&mut app, Kind::Xero);
    go(&mut app, Row::Button(Button::XeroAuthenticate));
    let effects = press(&mut app, KeyCode::Enter);
    let [Cmd::XeroStart { generation, .. }] = psa_cmds(&effects).as_slice() else {
        panic!()
    };
    let generation = *generation;
    // While the browser is open, the person goes back to ConnectWise and edits a field.
    choose(&mut app, Kind::ConnectWise);
    go(&mut app, Row::Field(Field::CwCompany));
    press(&mut app, KeyCode::Enter);
    send(
        &mut app,
        Msg::Psa(psa::Msg::XeroTenants {
            generation,
            tenants: tenants(),
            refresh: Secret::new(REFRESH),
        }),
    );
    type_text(&mut app, "x");
    assert_eq!(app.psa.cw.value(Field::CwCompany), format!("{COMPANY}x"));
    press(&mut app, KeyCode::Esc);
    assert!(!app.editing());
    // Back on Xero the organisations wait to be chosen.
    choose(&mut app, Kind::Xero);
    assert_eq!(app.psa.xero.phase, XeroPhase::Choosing);
    go(&mut app, Row::Picker(PickerId::Tenant));
    press(&mut app, KeyCode::Enter);
    let effects = press(&mut app, KeyCode::Enter);
    assert!(matches!(
        psa_cmds(&effects).as_slice(),
        [Cmd::XeroLoad { tenant_id, .. }] if tenant_id == "t-au"
    ));
}
