//! The Partner Center tab: screens (insta snapshots at 80x24 and 120x40), key-driven flows
//! through the pure update function, and its background work against the simulated world.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crossterm::event::KeyCode;
use tokio::sync::mpsc;

use cspsync::api::error::{Api, ApiError, ErrorKind};
use cspsync::api::graph::{DelegatedAdminRelationship, GdapCustomer};
use cspsync::sim::World;
use cspsync::sim::generate::{GenOptions, generate};
use cspsync::tui::app::{App, Effect, Msg, Setup, Tab};
use cspsync::tui::panes::Step;
use cspsync::tui::panes::partner::common::Rotated;
use cspsync::tui::panes::partner::{
    self, Cmd, Gdap, GdapState, PAGE_SIZE, Phase, Row, gdap_by_tenant,
};
use cspsync::tui::testing::{SimEnv, key, screen, send};

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-11T04:25:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn signed_in() -> Setup {
    let mut s = Setup::default();
    s.settings.microsoft.setup_user_name = "alex.nguyen@contoso-it.com.au".into();
    s.secrets.microsoft_refresh_token = Some("rt-1".into());
    s
}

fn app_on(setup: Setup) -> App {
    let mut app = App::new(setup, false);
    send(&mut app, key(KeyCode::Char('3')));
    assert_eq!(app.tab, Tab::PartnerCenter);
    app
}

fn snap(name: &str, app: &App) {
    for (w, h) in SIZES {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(app, w, h));
    }
}

const NAMES: [&str; 12] = [
    "Acme Dental Pty Ltd",
    "Blue Gum Accounting",
    "Coastal Physiotherapy Group",
    "Dingo Logistics Australia Pty Limited",
    "Eastside Legal",
    "Fernhill Primary School P&C",
    "Gecko Design Studio",
    "Harbour View Motors",
    "Ironbark Engineering Consultants",
    "Jacaranda Aged Care",
    "Kookaburra Cafe",
    "Lyrebird Wealth Management",
];

/// `n` customers with stable names, domains and tenant ids.
fn rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let base = NAMES[i % NAMES.len()];
            let name = if i < NAMES.len() {
                base.to_string()
            } else {
                format!("{base} {}", i / NAMES.len() + 1)
            };
            let slug: String = name
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(20)
                .collect::<String>()
                .to_lowercase();
            Row {
                name,
                domain: format!("{slug}.onmicrosoft.com"),
                tenant_id: format!(
                    "{:08x}-4b1c-4d2e-9f3a-{:012x}",
                    0x1a2b_0000 + i,
                    0xc0ffee + i
                ),
                relationship: if i % 5 == 4 { "advisor" } else { "reseller" }.into(),
            }
        })
        .collect()
}

/// GDAP: active for most, expired for every 4th, pending for the 6th, none for the 11th.
fn gdap_for(rows: &[Row]) -> HashMap<String, Gdap> {
    rows.iter()
        .enumerate()
        .filter(|(i, _)| *i != 10)
        .map(|(i, r)| {
            let g = if i % 4 == 3 {
                Gdap::Expired
            } else if i == 5 {
                Gdap::Pending
            } else {
                Gdap::Active
            };
            (r.tenant_id.to_ascii_lowercase(), g)
        })
        .collect()
}

fn press_enter(app: &mut App) -> Option<Cmd> {
    send(app, key(KeyCode::Enter))
        .into_iter()
        .find_map(|e| match e {
            Effect::Partner(c) => Some(c),
            _ => None,
        })
}

fn generation(cmd: &Cmd) -> u64 {
    match cmd {
        Cmd::Authorise { generation, .. } => *generation,
    }
}

fn page(generation: u64, customers: Vec<Row>) -> Msg {
    Msg::Partner(partner::Msg::Page {
        generation,
        customers,
    })
}

fn gdap(generation: u64, result: Result<HashMap<String, Gdap>, ApiError>) -> Msg {
    Msg::Partner(partner::Msg::Gdap { generation, result })
}

fn finished(generation: u64, result: Result<usize, ApiError>) -> Msg {
    Msg::Partner(partner::Msg::Finished {
        generation,
        at: at(),
        result,
        rotated: None,
    })
}

/// An app that listed `n` customers (and their GDAP) successfully.
fn listed(n: usize) -> App {
    let mut app = app_on(signed_in());
    let cmd = press_enter(&mut app).unwrap();
    let g = generation(&cmd);
    let all = rows(n);
    for chunk in all.chunks(200) {
        send(&mut app, page(g, chunk.to_vec()));
    }
    send(&mut app, gdap(g, Ok(gdap_for(&all))));
    send(&mut app, finished(g, Ok(n)));
    send(&mut app, key(KeyCode::Char('3')));
    app
}

fn pc_forbidden() -> ApiError {
    ApiError::new(
        Api::PartnerCenter,
        ErrorKind::Forbidden,
        "said: Access denied: alex.nguyen@contoso-it.com.au has neither the Admin agent nor the Global admin role in Partner Center.",
    )
    .with_status(403)
    .with_code("2032")
    .with_operation("GET /customers")
}

fn pc_no_mfa() -> ApiError {
    ApiError::new(
        Api::PartnerCenter,
        ErrorKind::Unauthorized,
        "said: Multi-factor authentication is required: the access token does not show MFA (its amr claim lacks mfa). Sign in again with MFA to use Partner Center.",
    )
    .with_status(401)
    .with_code("900419")
    .with_operation("GET /customers")
}

fn lapsed() -> ApiError {
    ApiError::new(
        Api::Entra,
        ErrorKind::OAuth,
        "said: The refresh token has expired due to inactivity. Sign in again.",
    )
    .with_status(400)
    .with_code("invalid_grant")
    .with_operation("POST /organizations/oauth2/v2.0/token")
}

/// Feed one failed authorisation.
fn failed_with(e: ApiError) -> App {
    let mut app = app_on(signed_in());
    let cmd = press_enter(&mut app).unwrap();
    let g = generation(&cmd);
    send(&mut app, gdap(g, Ok(HashMap::new())));
    send(&mut app, finished(g, Err(e)));
    app
}

// ----- snapshots ------------------------------------------------------------------------------

#[test]
fn snapshot_idle() {
    snap("idle", &app_on(signed_in()));
}

#[test]
fn snapshot_restored_done() {
    let mut setup = signed_in();
    setup.settings.partner_center.authorised_at = Some("2025-06-10T23:10:00Z".into());
    setup.settings.partner_center.customers_found = Some(42);
    let mut app = App::new(setup, false);
    app.tab = Tab::PartnerCenter;
    assert_eq!(app.status(Tab::PartnerCenter), Step::Done);
    snap("restored_done", &app);
}

#[test]
fn snapshot_not_signed_in() {
    let mut app = app_on(Setup::default());
    assert!(press_enter(&mut app).is_none());
    snap("not_signed_in", &app);
}

#[test]
fn snapshot_authorising() {
    let mut app = app_on(signed_in());
    let cmd = press_enter(&mut app).unwrap();
    snap("authorising", &app);
    send(&mut app, page(generation(&cmd), rows(5)));
    snap("authorising_first_page", &app);
}

#[test]
fn snapshot_customer_list_with_gdap() {
    let app = listed(12);
    assert_eq!(app.partner.without_gdap(), Some(5));
    snap("listed", &app);
}

#[test]
fn snapshot_long_list_scrolled() {
    let mut app = listed(60);
    send(&mut app, key(KeyCode::PageDown));
    send(&mut app, key(KeyCode::Down));
    snap("listed_scrolled", &app);
    // The pane pages by what it drew last: draw at the size checked.
    let _ = screen(&app, 80, 24);
    send(&mut app, key(KeyCode::End));
    let text = screen(&app, 80, 24);
    assert!(text.contains("of 60"), "{text}");
    assert!(
        text.contains("rows 51–60 of 60"),
        "the last row shows: {text}"
    );
}

#[test]
fn snapshot_refusals() {
    snap("fail_403", &failed_with(pc_forbidden()));
    snap("fail_401_mfa", &failed_with(pc_no_mfa()));
    snap("fail_signin_lapsed", &failed_with(lapsed()));
    let net = ApiError::new(
        Api::PartnerCenter,
        ErrorKind::Transport {
            maybe_applied: false,
        },
        "could not be reached (connection refused)",
    )
    .with_operation("GET /customers");
    snap("fail_network", &failed_with(net));
}

#[test]
fn snapshot_gdap_unknown() {
    let mut app = app_on(signed_in());
    let cmd = press_enter(&mut app).unwrap();
    let g = generation(&cmd);
    send(&mut app, page(g, rows(4)));
    let e = ApiError::new(
        Api::Graph,
        ErrorKind::Forbidden,
        "said: Insufficient privileges to complete the operation.",
    )
    .with_status(403)
    .with_code("Authorization_RequestDenied")
    .with_operation("GET /tenantRelationships/delegatedAdminRelationships");
    send(&mut app, gdap(g, Err(e)));
    send(&mut app, finished(g, Ok(4)));
    send(&mut app, key(KeyCode::Char('3')));
    assert_eq!(app.status(Tab::PartnerCenter), Step::Done);
    snap("gdap_unknown", &app);
}

// ----- flows ----------------------------------------------------------------------------------

#[test]
fn not_signed_in_says_so_and_starts_nothing() {
    let mut app = app_on(Setup::default());
    assert!(press_enter(&mut app).is_none());
    assert_eq!(app.partner.phase, Phase::NotSignedIn);
    assert_eq!(app.status(Tab::PartnerCenter), Step::ToDo);
    assert!(screen(&app, 80, 24).contains("Sign in first (tab 1)"));
}

#[test]
fn authorise_lists_saves_and_points_to_the_next_step() {
    let mut app = app_on(signed_in());
    let cmd = press_enter(&mut app).unwrap();
    let Cmd::Authorise {
        generation: g,
        setup,
        page_size,
    } = cmd.clone();
    assert_eq!(page_size, PAGE_SIZE);
    assert_eq!(
        setup.secrets.microsoft_refresh_token.as_deref(),
        Some("rt-1")
    );
    assert_eq!(app.status(Tab::PartnerCenter), Step::Busy);
    assert!(
        press_enter(&mut app).is_none(),
        "one authorisation at a time"
    );

    let all = rows(7);
    send(&mut app, page(g, all[..5].to_vec()));
    assert!(screen(&app, 80, 24).contains("5 so far"));
    send(&mut app, page(g, all[5..].to_vec()));
    send(&mut app, gdap(g, Ok(gdap_for(&all))));
    let effects = send(
        &mut app,
        Msg::Partner(partner::Msg::Finished {
            generation: g,
            at: at(),
            result: Ok(7),
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
    let pc = &saved.settings.partner_center;
    assert_eq!(pc.authorised_at.as_deref(), Some("2025-06-11T04:25:00Z"));
    assert_eq!(pc.customers_found, Some(7));
    assert_eq!(
        saved.secrets.microsoft_refresh_token.as_deref(),
        Some("rt-2")
    );
    assert_eq!(app.status(Tab::PartnerCenter), Step::Done);
    // The result is the customer list: the wizard stays to show it and names the next step.
    assert_eq!(app.tab, Tab::PartnerCenter, "the list stays on screen");
    let next = app.first_open_step();
    assert_ne!(next, Tab::PartnerCenter);
    let notice = app.notice.as_ref().expect("a notice naming the next step");
    assert!(notice.text.contains(next.title()), "{}", notice.text);
    assert_eq!(app.partner.customers.len(), 7);
    // Customers without active GDAP: #3 expired, #5 pending.
    assert_eq!(app.partner.without_gdap(), Some(2));
    let again = App::new((*saved).clone(), false);
    assert_eq!(again.status(Tab::PartnerCenter), Step::Done);
}

#[test]
fn failures_explain_what_to_check_and_are_not_done() {
    let app = failed_with(pc_forbidden());
    assert_eq!(app.status(Tab::PartnerCenter), Step::ToDo);
    let text = screen(&app, 120, 40);
    assert!(text.contains("Admin agent"), "{text}");
    assert!(text.contains("User management"), "{text}");
    assert!(text.contains("aka.ms/mfasetup"), "{text}");
    assert!(
        text.contains("The signed-in account (alex.nguyen@contoso-it.com.au) is not allowed"),
        "{text}"
    );
    let text = screen(&failed_with(lapsed()), 120, 40);
    assert!(text.contains("sign in again (tab 1)"), "{text}");
}

#[test]
fn stale_results_are_dropped() {
    let mut app = app_on(signed_in());
    let first = generation(&press_enter(&mut app).unwrap());
    send(
        &mut app,
        finished(
            first,
            Err(ApiError::new(
                Api::PartnerCenter,
                ErrorKind::Server,
                "had an internal error",
            )),
        ),
    );
    let second = generation(&press_enter(&mut app).unwrap());
    assert_ne!(first, second);
    // A late page and a late success of the first attempt change nothing.
    send(&mut app, page(first, rows(3)));
    assert!(send(&mut app, finished(first, Ok(3))).is_empty());
    assert!(app.partner.customers.is_empty());
    assert_eq!(app.partner.phase, Phase::Authorising);
    assert_eq!(app.setup.settings.partner_center.authorised_at, None);
    send(&mut app, page(second, rows(2)));
    assert_eq!(app.partner.customers.len(), 2);
}

#[test]
fn the_table_scrolls_by_row_and_page() {
    let mut app = listed(60);
    // Draw once so the pane knows how many rows fit (PgDn moves by that).
    let _ = screen(&app, 80, 24);
    assert_eq!(app.partner.scroll, 0);
    send(&mut app, key(KeyCode::Down));
    send(&mut app, key(KeyCode::Char('j')));
    assert_eq!(app.partner.scroll, 2);
    send(&mut app, key(KeyCode::Char('k')));
    assert_eq!(app.partner.scroll, 1);
    send(&mut app, key(KeyCode::PageDown));
    let after_page = app.partner.scroll;
    assert!(after_page > 3, "a page is more than a row: {after_page}");
    send(&mut app, key(KeyCode::PageUp));
    assert_eq!(app.partner.scroll, 1);
    send(&mut app, key(KeyCode::End));
    let end = app.partner.scroll;
    for _ in 0..5 {
        send(&mut app, key(KeyCode::Down));
    }
    assert_eq!(app.partner.scroll, end, "no scrolling past the last row");
    let text = screen(&app, 80, 24);
    assert!(text.contains("–60 of 60"), "{text}");
    send(&mut app, key(KeyCode::Home));
    assert_eq!(app.partner.scroll, 0);
    assert!(screen(&app, 80, 24).contains("rows 1–"));
}

#[test]
fn gdap_status_per_customer() {
    let rel = |tenant: &str, status: &str| DelegatedAdminRelationship {
        id: format!("{tenant}-{status}"),
        display_name: None,
        duration: None,
        customer: Some(GdapCustomer {
            tenant_id: Some(tenant.into()),
            display_name: None,
        }),
        status: Some(status.into()),
        end_date_time: None,
        access_details: None,
    };
    let m = gdap_by_tenant(&[
        rel("AAA", "expired"),
        rel("aaa", "active"),
        rel("bbb", "terminated"),
        rel("ccc", "approvalPending"),
    ]);
    assert_eq!(m.get("aaa"), Some(&Gdap::Active), "any active one wins");
    assert_eq!(m.get("bbb"), Some(&Gdap::Expired));
    assert_eq!(m.get("ccc"), Some(&Gdap::Pending));
    let mut s = partner::State::default();
    s.customers = ["AAA", "bbb", "ccc", "ddd"]
        .iter()
        .map(|t| Row {
            name: t.to_string(),
            domain: String::new(),
            tenant_id: t.to_string(),
            relationship: String::new(),
        })
        .collect();
    assert_eq!(s.without_gdap(), None, "unknown until Graph answered");
    s.gdap = GdapState::Known(m);
    assert_eq!(s.gdap_of("ddd"), Some(Gdap::None));
    assert_eq!(s.without_gdap(), Some(3));
}

#[test]
fn render_survives_any_size() {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::layout::Rect;
    let theme = cspsync::tui::theme::Theme::new(true);
    let mut apps = vec![listed(60), failed_with(pc_forbidden())];
    send(&mut apps[0], key(KeyCode::End));
    for app in &apps {
        for (w, h) in [
            (1, 1),
            (3, 2),
            (20, 5),
            (40, 7),
            (79, 23),
            (200, 60),
            (300, 100),
        ] {
            for h0 in [0, 1, 3, 5, h] {
                let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
                term.draw(|f| {
                    partner::render(
                        &app.partner,
                        &app.setup,
                        &theme,
                        f,
                        Rect::new(0, 0, w, h0.min(h)),
                    );
                })
                .unwrap();
            }
        }
    }
}

// ----- background work against the simulated world -------------------------------------------

fn world() -> World {
    let today = Utc::now().date_naive();
    let mut w = generate(&GenOptions::new(12, 20_250_611, today));
    w.app.device_code_interval_secs = 1;
    w.customers[0].gdap_active = true;
    w.customers[1].gdap_active = false;
    w
}

type Env = SimEnv;

async fn start_env(world: World, sign_in: bool) -> Env {
    SimEnv::start(world, sign_in).await
}

async fn run_authorise(env: &Env, page_size: u32) -> Vec<partner::Msg> {
    let (tx, mut rx) = mpsc::channel(64);
    let cmd = Cmd::Authorise {
        generation: 3,
        setup: Box::new(env.setup.clone()),
        page_size,
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        partner::run(cmd, env.svc.clone(), tx),
    )
    .await
    .expect("authorising finishes");
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        match m {
            Msg::Partner(p) => out.push(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

fn finished_result(msgs: &[partner::Msg]) -> Result<usize, ApiError> {
    match msgs.last() {
        Some(partner::Msg::Finished {
            generation, result, ..
        }) => {
            assert_eq!(*generation, 3);
            result.clone()
        }
        other => panic!("the last message should be Finished, got {other:?}"),
    }
}

#[tokio::test]
async fn run_lists_every_customer_page_by_page_with_gdap() {
    let env = start_env(world(), true).await;
    let msgs = run_authorise(&env, 5).await;
    assert_eq!(finished_result(&msgs), Ok(12));
    let pages: Vec<&Vec<Row>> = msgs
        .iter()
        .filter_map(|m| match m {
            partner::Msg::Page { customers, .. } => Some(customers),
            _ => None,
        })
        .collect();
    assert_eq!(pages.len(), 3, "12 customers in pages of 5");
    let listed: Vec<&Row> = pages.into_iter().flatten().collect();
    for c in &env.world.customers {
        let row = listed
            .iter()
            .find(|r| r.tenant_id.eq_ignore_ascii_case(&c.tenant_id))
            .unwrap_or_else(|| panic!("{} is listed", c.company_name));
        assert_eq!(row.name, c.company_name);
        assert_eq!(row.domain, c.domain);
        assert_eq!(row.relationship, c.relationship_to_partner);
    }
    let gdap = msgs
        .iter()
        .find_map(|m| match m {
            partner::Msg::Gdap { result, .. } => Some(result.clone().unwrap()),
            _ => None,
        })
        .expect("the GDAP relationships");
    for c in &env.world.customers {
        let want = if c.gdap_active {
            Gdap::Active
        } else {
            Gdap::Expired
        };
        assert_eq!(
            gdap.get(&c.tenant_id.to_ascii_lowercase()),
            Some(&want),
            "{}",
            c.company_name
        );
    }
    // Fed to the app: done, saved, and the table shows the GDAP column.
    let mut app = app_on(env.setup.clone());
    let g = generation(&press_enter(&mut app).unwrap());
    let mut effects = Vec::new();
    for m in msgs {
        let m = match m {
            partner::Msg::Page { customers, .. } => partner::Msg::Page {
                generation: g,
                customers,
            },
            partner::Msg::Gdap { result, .. } => partner::Msg::Gdap {
                generation: g,
                result,
            },
            partner::Msg::Finished {
                at,
                result,
                rotated,
                ..
            } => partner::Msg::Finished {
                generation: g,
                at,
                result,
                rotated,
            },
            partner::Msg::NotSignedIn { .. } => partner::Msg::NotSignedIn { generation: g },
        };
        effects.extend(send(&mut app, Msg::Partner(m)));
    }
    let saved = effects
        .iter()
        .find_map(|e| match e {
            Effect::Save(s) => Some(s.clone()),
            _ => None,
        })
        .expect("saved");
    assert_eq!(saved.settings.partner_center.customers_found, Some(12));
    let inactive = env
        .world
        .customers
        .iter()
        .filter(|c| !c.gdap_active)
        .count();
    assert_eq!(app.partner.without_gdap(), Some(inactive));
    app.tab = Tab::PartnerCenter;
    let text = screen(&app, 120, 40);
    assert!(text.contains("GDAP"), "{text}");
    assert!(text.contains("expired"), "{text}");
    assert!(
        text.contains(&format!("{inactive} of 12 customers")),
        "{text}"
    );
}

#[tokio::test]
async fn run_without_sign_in_says_so() {
    let env = start_env(world(), false).await;
    let msgs = run_authorise(&env, 100).await;
    assert!(
        matches!(
            msgs.as_slice(),
            [partner::Msg::NotSignedIn { generation: 3 }]
        ),
        "{msgs:?}"
    );
}

#[tokio::test]
async fn run_admin_without_mfa_is_refused_401() {
    let mut w = world();
    let admin = cspsync::sim::entra::default_admin(&w).unwrap().id.clone();
    w.msp.users.iter_mut().find(|u| u.id == admin).unwrap().mfa = false;
    let env = start_env(w, true).await;
    let e = finished_result(&run_authorise(&env, 100).await).unwrap_err();
    assert_eq!(e.api, Api::PartnerCenter);
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert_eq!(e.status, Some(401));
    let app = failed_with(e);
    let text = screen(&app, 120, 40);
    assert!(text.contains("aka.ms/mfasetup"), "{text}");
}

#[tokio::test]
async fn run_admin_without_partner_role_is_refused_403() {
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
    let e = finished_result(&run_authorise(&env, 100).await).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert_eq!(e.status, Some(403));
    let text = screen(&failed_with(e), 120, 40);
    assert!(text.contains("Admin agent role"), "{text}");
}
