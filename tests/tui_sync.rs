//! The Sync tab (issue 6 §2): screens (insta snapshots at 80x24 and 120x40) of every state, the
//! keys through the pure update function (selection, confirmation, cautions, who may apply,
//! cancel, stale answers), and the coalescing of apply events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use crossterm::event::KeyCode;
use rust_decimal::Decimal;
use serde_json::json;

use cspsync::api::error::Api;
use cspsync::audit;
use cspsync::config::{AllowedUser, PsaKindSetting, Role};
use cspsync::domain::sync::{
    ApplyEvent, ApplyProgress, BillingStyle, BillingTiming, Caution, CustomerState, Op, Outcome,
    Plan, PlanSummary, Skipped, Write,
};
use cspsync::engine::fetch::FetchProgress;
use cspsync::tui::app::{App, Effect, Modal, Msg, Setup, Tab};
use cspsync::tui::panes::Step;
use cspsync::tui::panes::sync::{self, Cmd, Phase, Popup, Row};
use cspsync::tui::testing::{assert_shows, ctrl, key, screen, send, type_text};

mod support;

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-11T04:25:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn snap(name: &str, app: &App) {
    for (w, h) in SIZES {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(app, w, h));
    }
}

fn d(n: i64) -> Decimal {
    Decimal::from(n)
}

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, m, d).unwrap()
}

fn tenant(n: u8) -> String {
    format!("{n:08x}-0000-4000-8000-00000000000{n}")
}

#[allow(clippy::too_many_arguments)]
fn set_qty(
    t: u8,
    customer: &str,
    product: &str,
    addition: u64,
    before: i64,
    after: i64,
    per_seat: i64,
    cautions: Vec<Caution>,
) -> Write {
    Write {
        key: format!("cw:set:{addition}:{after}"),
        customer_tenant_id: tenant(t),
        customer_name: customer.into(),
        system: Api::ConnectWise,
        target: format!("addition {addition} on agreement 77"),
        product: product.into(),
        stock_code: Some("P1Y:CFQ7TTC0LCHC:0002:1:".into()),
        before: Some(d(before)),
        after: Some(d(after)),
        monthly_change: d((after - before) * per_seat),
        cautions,
        op: Op::CwSetQuantity {
            agreement_id: 77,
            addition_id: addition,
            quantity: d(after),
        },
    }
}

fn sample_plan() -> Plan {
    let writes = vec![
        set_qty(
            1,
            "Acme Plumbing",
            "Microsoft 365 Business Standard",
            9001,
            10,
            12,
            15,
            vec![],
        ),
        Write {
            key: "cw:add:77:exo1".into(),
            customer_tenant_id: tenant(1),
            customer_name: "Acme Plumbing".into(),
            system: Api::ConnectWise,
            target: "agreement 77".into(),
            product: "Exchange Online (Plan 1)".into(),
            stock_code: Some("P1Y:CFQ7TTC0LH16:0001:1:".into()),
            before: None,
            after: Some(d(5)),
            monthly_change: d(30),
            cautions: vec![],
            op: Op::CwCreateAddition {
                agreement_id: 77,
                catalog_item_id: 412,
                quantity: d(5),
                unit_price: Some(d(6)),
                unit_cost: Some(Decimal::new(480, 2)),
                description: "Exchange Online (Plan 1)".into(),
                effective_date: day(6, 11),
            },
        },
        set_qty(
            2,
            "Bayside Legal",
            "Microsoft 365 E3",
            9010,
            9,
            7,
            20,
            vec![Caution::BelowAssigned { assigned: 8 }],
        ),
        Write {
            key: "cw:cancel:9020".into(),
            customer_tenant_id: tenant(2),
            customer_name: "Bayside Legal".into(),
            system: Api::ConnectWise,
            target: "addition 9020 on agreement 78".into(),
            product: "Microsoft Teams Essentials".into(),
            stock_code: Some("P1Y:CFQ7TTC0RM8K:0001:1:".into()),
            before: Some(d(4)),
            after: None,
            monthly_change: d(-24),
            cautions: vec![Caution::OutsideCancelWindow],
            op: Op::CwCancelAddition {
                agreement_id: 78,
                addition_id: 9020,
                cancelled_date: day(6, 30),
            },
        },
        set_qty(
            3,
            "Harbour Dental",
            "Microsoft 365 Business Premium",
            9030,
            22,
            25,
            36,
            vec![],
        ),
    ];
    let skipped = vec![
        Skipped {
            customer_tenant_id: tenant(4),
            customer_name: "Zenith Accounting".into(),
            product: "Power BI Pro".into(),
            stock_code: Some("P1M:CFQ7TTC0L3PB:0001:1:".into()),
            reason: "no ConnectWise product for this stock code; map it in Reconcile".into(),
        },
        Skipped {
            customer_tenant_id: tenant(5),
            customer_name: "Koala Cafe".into(),
            product: "Microsoft 365 Business Basic".into(),
            stock_code: None,
            reason: "the customer is not mapped to a ConnectWise company".into(),
        },
    ];
    Plan {
        psa: Api::ConnectWise,
        created_at: t0(),
        style: BillingStyle::default(),
        period_start: day(6, 1),
        period_end: day(6, 30),
        summary: PlanSummary {
            writes: writes.len(),
            customers: 3,
            cautioned: 2,
            skipped: skipped.len(),
            monthly_change: writes.iter().map(|w| w.monthly_change).sum(),
        },
        writes,
        skipped,
    }
}

fn setup() -> Setup {
    let mut s = Setup::default();
    s.settings.psa.kind = PsaKindSetting::ConnectWise;
    s
}

fn on_tab(setup: Setup) -> App {
    let mut app = App::new(setup, false);
    send(&mut app, key(KeyCode::Char('7')));
    assert_eq!(app.tab, Tab::Sync);
    app
}

/// Enter, then the plan comes back.
fn planned(setup: Setup, plan: Plan) -> App {
    let mut app = on_tab(setup);
    let fx = send(&mut app, key(KeyCode::Enter));
    let generation = match fx.as_slice() {
        [Effect::Sync(Cmd::Plan { generation, .. })] => *generation,
        other => panic!("expected a plan command, got {other:?}"),
    };
    send(
        &mut app,
        Msg::Sync(sync::Msg::Planned {
            generation,
            result: Ok(Arc::new(plan)),
            rotated: None,
            xero: None,
        }),
    );
    assert_eq!(app.sync.phase, Phase::Review);
    app
}

/// Move the cursor to the row of write `i`.
fn goto_write(app: &mut App, i: usize) {
    let pos = app
        .sync
        .rows
        .iter()
        .position(|r| *r == Row::Write(i))
        .unwrap();
    send(app, key(KeyCode::Home));
    for _ in 0..pos {
        send(app, key(KeyCode::Down));
    }
    assert_eq!(app.sync.current_row(), Some(Row::Write(i)));
}

/// Deselect Bayside Legal's two cautioned writes (its header row toggles both).
fn deselect_cautioned(app: &mut App) {
    let g = app
        .sync
        .groups
        .iter()
        .position(|g| g.name == "Bayside Legal")
        .unwrap();
    let pos = app
        .sync
        .rows
        .iter()
        .position(|r| *r == Row::Customer(g))
        .unwrap();
    send(app, key(KeyCode::Home));
    for _ in 0..pos {
        send(app, key(KeyCode::Down));
    }
    send(app, key(KeyCode::Char(' ')));
}

/// `a` then the confirmation's answer; returns the apply command.
fn apply_cmd(fx: Vec<Effect>) -> (u64, Vec<usize>, bool) {
    match fx.as_slice() {
        [
            Effect::Sync(Cmd::Apply {
                generation,
                selected,
                confirm_cautions,
                plan,
                ..
            }),
        ] => {
            assert_eq!(plan.writes.len(), 5);
            (*generation, selected.clone(), *confirm_cautions)
        }
        other => panic!("expected an apply command, got {other:?}"),
    }
}

fn write_event(secs: i64, index: usize, outcome: Outcome) -> ApplyEvent {
    ApplyEvent::Write {
        at: t0() + Duration::seconds(secs),
        index,
        key: format!("k{index}"),
        outcome,
    }
}

fn progress(total: usize, finished: usize, failed: usize) -> ApplyProgress {
    ApplyProgress {
        total,
        finished,
        failed,
        started_at: Some(t0()),
    }
}

fn applying(app: &mut App, generation: u64, secs: i64, events: Vec<ApplyEvent>, p: ApplyProgress) {
    send(
        app,
        Msg::Sync(sync::Msg::Applying {
            generation,
            events,
            progress: p,
            now: t0() + Duration::seconds(secs),
        }),
    );
}

/// A plan reviewed, everything selected and confirmed with `yes`: the apply has started.
fn started() -> (App, u64) {
    let mut app = planned(setup(), sample_plan());
    send(&mut app, key(KeyCode::Char('a')));
    type_text(&mut app, "yes");
    let (generation, selected, confirm) = apply_cmd(send(&mut app, key(KeyCode::Enter)));
    assert_eq!(selected, vec![0, 1, 2, 3, 4]);
    assert!(confirm);
    assert_eq!(app.sync.phase, Phase::Applying);
    (app, generation)
}

/// Halfway through: Acme done, Bayside running (one retry), Harbour queued.
fn halfway() -> (App, u64) {
    let (mut app, generation) = started();
    applying(
        &mut app,
        generation,
        1,
        vec![
            ApplyEvent::Started {
                at: t0(),
                writes: 5,
                customers: 3,
            },
            ApplyEvent::Customer {
                tenant_id: tenant(1),
                state: CustomerState::Running,
            },
            write_event(0, 0, Outcome::Done { id: "9001".into() }),
        ],
        progress(5, 1, 0),
    );
    applying(
        &mut app,
        generation,
        2,
        vec![
            write_event(1, 1, Outcome::AlreadyDone { id: "9044".into() }),
            ApplyEvent::Customer {
                tenant_id: tenant(1),
                state: CustomerState::Done,
            },
            ApplyEvent::Customer {
                tenant_id: tenant(2),
                state: CustomerState::Running,
            },
            ApplyEvent::Retry {
                at: t0() + Duration::seconds(1),
                message: "ConnectWise Manage answered 429; waited 2 s as Retry-After asked".into(),
            },
        ],
        progress(5, 2, 0),
    );
    applying(
        &mut app,
        generation,
        4,
        vec![write_event(3, 2, Outcome::Done { id: "9010".into() })],
        progress(5, 3, 0),
    );
    (app, generation)
}

// ---------------------------------------------------------------------------------------------
// Screens
// ---------------------------------------------------------------------------------------------

#[test]
fn idle_explains_the_sync_and_shows_the_billing_style() {
    let app = on_tab(setup());
    assert_eq!(app.status(Tab::Sync), Step::ToDo);
    let s = screen(&app, 80, 24);
    assert!(s.contains("Dicker Data is the source of truth"), "{s}");
    assert!(s.contains("in advance, not prorated"), "{s}");
    assert!(s.contains("Press Enter to make the plan"), "{s}");
    snap("idle", &app);
    // Without a PSA there is nothing to sync to: Enter says so.
    let mut app = on_tab(Setup::default());
    assert!(send(&mut app, key(KeyCode::Enter)).is_empty());
    assert!(screen(&app, 80, 24).contains("No PSA is set up"));
}

#[test]
fn planning_shows_a_gauge_and_esc_stops_it() {
    let mut app = on_tab(setup());
    send(&mut app, key(KeyCode::Enter));
    assert_eq!(app.status(Tab::Sync), Step::Busy);
    let generation = app.sync.generation;
    send(
        &mut app,
        Msg::Sync(sync::Msg::Progress {
            generation,
            progress: FetchProgress {
                customers_found: 40,
                customers_listed: true,
                customers_done: 17,
                dicker_data_done: true,
                psa_done: false,
            },
        }),
    );
    let s = screen(&app, 80, 24);
    assert!(s.contains("17 of 40 customers read"), "{s}");
    snap("planning", &app);
    // Esc abandons the run; its late answer is dropped.
    send(&mut app, key(KeyCode::Esc));
    assert_eq!(app.sync.phase, Phase::Idle);
    send(
        &mut app,
        Msg::Sync(sync::Msg::Planned {
            generation,
            result: Ok(Arc::new(sample_plan())),
            rotated: None,
            xero: None,
        }),
    );
    assert_eq!(app.sync.phase, Phase::Idle);
    assert!(app.sync.plan.is_none());
}

#[test]
fn a_failed_plan_says_why() {
    let mut app = on_tab(setup());
    send(&mut app, key(KeyCode::Enter));
    let generation = app.sync.generation;
    send(
        &mut app,
        Msg::Sync(sync::Msg::Planned {
            generation,
            result: Err(
                "Dicker Data refused the access code (401). Check it on the Distributor tab."
                    .into(),
            ),
            rotated: None,
            xero: None,
        }),
    );
    assert_eq!(app.sync.phase, Phase::Idle);
    let s = screen(&app, 80, 24);
    assert!(s.contains("Planning failed: Dicker Data refused"), "{s}");
}

#[test]
fn review_groups_by_customer_with_money_and_cautions() {
    let mut app = planned(setup(), sample_plan());
    let s = screen(&app, 120, 40);
    assert!(
        s.contains("5 of 5 writes selected · 3 customers · +$104.00 a month"),
        "{s}"
    );
    assert!(s.contains("⚠ 2 need confirmation"), "{s}");
    assert!(
        s.contains("[x] Acme Plumbing — 2 of 2 writes, +$60.00 a month"),
        "{s}"
    );
    assert!(s.contains("22 → 25"), "{s}");
    assert!(s.contains("– → 5"), "{s}");
    assert!(s.contains("4 → –"), "{s}");
    assert!(s.contains("Skipped: 2 lines the plan leaves alone"), "{s}");
    assert!(s.contains("not mapped to a ConnectWise company"), "{s}");
    // Deselect Harbour Dental's write: its header and the summary follow.
    goto_write(&mut app, 4);
    send(&mut app, key(KeyCode::Char(' ')));
    assert!(!app.sync.selected[4]);
    let s = screen(&app, 120, 40);
    assert!(
        s.contains("4 of 5 writes selected · 2 customers · -$4.00 a month"),
        "{s}"
    );
    assert!(s.contains("[ ] Harbour Dental — 0 of 1 write"), "{s}");
    send(&mut app, key(KeyCode::Up));
    snap("review", &app);
}

#[test]
fn enter_on_a_write_opens_its_detail() {
    let mut app = planned(setup(), sample_plan());
    goto_write(&mut app, 2);
    send(&mut app, key(KeyCode::Enter));
    assert_eq!(app.sync.detail, Some(Row::Write(2)));
    let s = screen(&app, 120, 40);
    assert!(s.contains("Bayside Legal — Microsoft 365 E3"), "{s}");
    assert!(
        s.contains("lowers the charge below the 8 licences assigned"),
        "{s}"
    );
    assert!(
        s.contains("PATCH /finance/agreements/77/additions/9010"),
        "{s}"
    );
    assert!(s.contains("addition_id"), "{s}");
    assert!(s.contains("Key cw:set:9010:7"), "{s}");
    snap("detail", &app);
    send(&mut app, key(KeyCode::Esc));
    assert_eq!(app.sync.detail, None);
    // On a customer's header Enter opens nothing.
    send(&mut app, key(KeyCode::Home));
    send(&mut app, key(KeyCode::Enter));
    assert_eq!(app.sync.detail, None);
    // A skipped line: its whole reason.
    send(&mut app, key(KeyCode::End));
    send(&mut app, key(KeyCode::Enter));
    assert_eq!(app.sync.detail, Some(Row::Skipped(1)));
    let s = screen(&app, 80, 24);
    assert!(
        s.contains("Not planned: the customer is not mapped to a ConnectWise company"),
        "{s}"
    );
}

#[test]
fn space_on_a_header_toggles_the_customer_and_a_toggles_all() {
    let mut app = planned(setup(), sample_plan());
    // Row 0 is Acme's header.
    send(&mut app, key(KeyCode::Char(' ')));
    assert_eq!(app.sync.selected, [false, false, true, true, true]);
    // Partly selected → the header selects all of it.
    send(&mut app, key(KeyCode::Down));
    send(&mut app, key(KeyCode::Char(' ')));
    assert_eq!(app.sync.selected, [true, false, true, true, true]);
    assert!(screen(&app, 120, 40).contains("[-] Acme Plumbing — 1 of 2 writes"));
    send(&mut app, key(KeyCode::Up));
    send(&mut app, key(KeyCode::Char(' ')));
    assert_eq!(app.sync.selected, [true; 5]);
    // A: none (all were selected), then all.
    send(&mut app, key(KeyCode::Char('A')));
    assert_eq!(app.sync.selected, [false; 5]);
    // Nothing selected: `a` says so instead of asking.
    send(&mut app, key(KeyCode::Char('a')));
    assert_eq!(app.sync.popup, None);
    assert!(screen(&app, 120, 40).contains("Nothing is selected"));
    send(&mut app, key(KeyCode::Char('A')));
    assert_eq!(app.sync.selected, [true; 5]);
}

#[test]
fn the_confirmation_counts_the_selected_writes() {
    let mut app = planned(setup(), sample_plan());
    deselect_cautioned(&mut app);
    goto_write(&mut app, 4);
    send(&mut app, key(KeyCode::Char(' ')));
    send(&mut app, key(KeyCode::Char('a')));
    assert!(matches!(app.sync.popup, Some(Popup::Confirm { .. })));
    assert!(app.editing(), "the popup has the keys");
    let s = screen(&app, 80, 24);
    assert!(
        s.contains("Apply 2 writes to ConnectWise Manage for 1 customer?"),
        "{s}"
    );
    assert!(s.contains("+$60.00 a month"), "{s}");
    // Re-select Harbour Dental for the snapshot: 3 writes, 2 customers.
    send(&mut app, key(KeyCode::Esc));
    assert_eq!(app.sync.popup, None);
    send(&mut app, key(KeyCode::Char(' ')));
    send(&mut app, key(KeyCode::Char('a')));
    let s = screen(&app, 120, 40);
    assert!(
        s.contains("Apply 3 writes to ConnectWise Manage for 2 customers?"),
        "{s}"
    );
    snap("confirm", &app);
    // `q` and digits belong to the popup: no quitting, no tab switch.
    send(&mut app, key(KeyCode::Char('q')));
    send(&mut app, key(KeyCode::Char('6')));
    assert!(!app.quit);
    assert_eq!(app.tab, Tab::Sync);
    let (_, selected, confirm) = apply_cmd(send(&mut app, key(KeyCode::Char('y'))));
    assert_eq!(selected, vec![0, 1, 4]);
    assert!(!confirm);
    assert_eq!(app.sync.phase, Phase::Applying);
    assert_eq!(app.sync.apply.as_ref().unwrap().total, 3);
}

#[test]
fn cautioned_writes_need_yes_or_are_left_out() {
    let mut app = planned(setup(), sample_plan());
    send(&mut app, key(KeyCode::Char('a')));
    let s = screen(&app, 120, 40);
    assert_shows(
        &s,
        &[
            "Apply 5 writes to ConnectWise Manage for 3 customers?",
            "2 of them need your explicit confirmation",
            "lowers the charge below the 8 licences assigned",
            "⚠ Bayside Legal · cancel addition 4 → – Microsoft Teams Essentials",
            "a decrease outside the 7-day NCE cancellation window",
            "Enter alone applies the other 3 (for 2 customers) and leaves these out",
        ],
    );
    snap("confirm_cautions", &app);
    // `y` is not a confirmation here: it is typed.
    assert!(send(&mut app, key(KeyCode::Char('y'))).is_empty());
    assert!(send(&mut app, key(KeyCode::Enter)).is_empty());
    assert!(screen(&app, 80, 24).contains("Type yes to include the writes listed"));
    // Cleared: Enter applies without the cautioned writes.
    send(&mut app, ctrl('u'));
    let (_, selected, confirm) = apply_cmd(send(&mut app, key(KeyCode::Enter)));
    assert_eq!(selected, vec![0, 1, 4]);
    assert!(!confirm);

    // With yes: all of them, cautions confirmed.
    let mut app = planned(setup(), sample_plan());
    send(&mut app, key(KeyCode::Char('a')));
    type_text(&mut app, "YES");
    let (_, selected, confirm) = apply_cmd(send(&mut app, key(KeyCode::Enter)));
    assert_eq!(selected, vec![0, 1, 2, 3, 4]);
    assert!(confirm);

    // Only cautioned writes selected: Enter alone has nothing to apply.
    let mut app = planned(setup(), sample_plan());
    send(&mut app, key(KeyCode::Char('A')));
    deselect_cautioned(&mut app);
    send(&mut app, key(KeyCode::Char('a')));
    assert!(send(&mut app, key(KeyCode::Enter)).is_empty());
    assert!(screen(&app, 80, 24).contains("Every selected write needs your confirmation"));
}

#[test]
fn only_an_operator_may_apply() {
    let mut s = setup();
    s.settings.microsoft.setup_user_oid = "admin-oid".into();
    s.settings.microsoft.setup_user_name = "alex@msp.example".into();
    s.settings.microsoft.signed_in_oid = "view-oid".into();
    s.settings.microsoft.signed_in_name = "vic@msp.example".into();
    s.settings.access.allowed.push(AllowedUser {
        oid: "view-oid".into(),
        upn: "vic@msp.example".into(),
        name: "Vic".into(),
        role: Role::Viewer,
    });
    s.secrets.microsoft_refresh_token = Some("rt".into());
    let mut app = planned(s.clone(), sample_plan());
    assert!(send(&mut app, key(KeyCode::Char('a'))).is_empty());
    assert_eq!(app.sync.popup, None);
    let screen80 = screen(&app, 80, 24);
    assert!(
        screen80.contains("Only operators may apply a sync"),
        "{screen80}"
    );
    // A viewer does not change the billing style either.
    assert!(send(&mut app, key(KeyCode::Char('b'))).is_empty());
    assert_eq!(app.setup.settings.sync.style, BillingStyle::default());

    // The same person as an operator may.
    s.settings.access.allowed[0].role = Role::Operator;
    let mut app = planned(s, sample_plan());
    send(&mut app, key(KeyCode::Char('a')));
    assert!(matches!(app.sync.popup, Some(Popup::Confirm { .. })));
}

#[test]
fn billing_style_is_changed_saved_and_arrears_with_prorate_refused() {
    let mut app = on_tab(setup());
    let fx = send(&mut app, key(KeyCode::Char('b')));
    assert!(
        matches!(fx.as_slice(), [Effect::Save(s)] if s.settings.sync.style.timing == BillingTiming::Arrears)
    );
    assert!(screen(&app, 80, 24).contains("in arrears, not prorated"));
    // Arrears + prorate: refused with the reason, nothing saved.
    assert!(send(&mut app, key(KeyCode::Char('p'))).is_empty());
    assert!(!app.setup.settings.sync.style.prorate);
    let s = screen(&app, 120, 40);
    assert!(
        s.contains("Billing in arrears with prorate is not supported"),
        "{s}"
    );
    // Back to advance, then prorated.
    send(&mut app, key(KeyCode::Char('b')));
    let fx = send(&mut app, key(KeyCode::Char('p')));
    assert!(matches!(fx.as_slice(), [Effect::Save(s)] if s.settings.sync.style.prorate));
    assert!(screen(&app, 80, 24).contains("in advance, prorated"));

    // A plan made with another style is not applied: plan again first.
    let mut app = planned(setup(), sample_plan());
    send(&mut app, key(KeyCode::Char('b')));
    send(&mut app, key(KeyCode::Char('a')));
    assert_eq!(app.sync.popup, None);
    let s = screen(&app, 120, 40);
    assert!(s.contains("press r to plan again"), "{s}");
}

#[test]
fn applying_shows_gauge_customers_rate_and_log() {
    let (app, _) = halfway();
    assert_eq!(app.status(Tab::Sync), Step::Busy);
    let a = app.sync.apply.as_ref().unwrap();
    assert_eq!(a.counts.done, 2);
    assert_eq!(a.counts.already_done, 1);
    assert_eq!(a.per_second, vec![1, 1, 0, 1]);
    let s = screen(&app, 120, 40);
    assert_shows(
        &s,
        &[
            "Applying to ConnectWise Manage: 2 done · 1 already done · 0 failed",
            "3 of 5",
            "Elapsed 0:04 · about 0:02 left · 1 write/s",
            "running  Bayside Legal",
            "retry: ConnectWise Manage answered 429",
            "= Acme Plumbing          add addition          – → 5",
        ],
    );
    snap("applying", &app);
}

#[test]
fn the_slow_parts_refresh_once_a_second() {
    let (mut app, generation) = halfway();
    let shown = |a: &App| a.sync.apply.as_ref().unwrap().shown_log().len();
    let before = shown(&app);
    // 300 ms later: the gauge moves, the log and the customer list wait.
    send(
        &mut app,
        Msg::Sync(sync::Msg::Applying {
            generation,
            events: vec![write_event(4, 3, Outcome::Done { id: "9020".into() })],
            progress: progress(5, 4, 0),
            now: t0() + Duration::milliseconds(4_300),
        }),
    );
    assert_eq!(shown(&app), before);
    assert!(screen(&app, 120, 40).contains("4 of 5"));
    // A second after the last refresh: in.
    applying(&mut app, generation, 5, vec![], progress(5, 4, 0));
    assert_eq!(shown(&app), before + 1);
}

#[test]
fn esc_asks_then_cancels_cleanly() {
    let (mut app, generation) = halfway();
    assert!(send(&mut app, key(KeyCode::Esc)).is_empty());
    assert_eq!(app.sync.popup, Some(Popup::Cancel));
    let s = screen(&app, 80, 24);
    assert!(
        s.contains("Writes in flight finish, nothing is left half-done"),
        "{s}"
    );
    snap("cancel_popup", &app);
    // n keeps going.
    send(&mut app, key(KeyCode::Char('n')));
    assert_eq!(app.sync.popup, None);
    send(&mut app, key(KeyCode::Esc));
    let fx = send(&mut app, key(KeyCode::Char('y')));
    assert!(
        matches!(fx.as_slice(), [Effect::Sync(Cmd::Cancel { generation: g })] if *g == generation),
        "{fx:?}"
    );
    applying(
        &mut app,
        generation,
        5,
        vec![ApplyEvent::Cancelling],
        progress(5, 3, 0),
    );
    let s = screen(&app, 120, 40);
    assert!(s.contains("Cancelling… 2 done"), "{s}");
    assert!(s.contains("Cancel asked: writes in flight finish"), "{s}");
    snap("cancelling", &app);
    // A second Esc does not ask again.
    send(&mut app, key(KeyCode::Esc));
    assert_eq!(app.sync.popup, None);
    applying(
        &mut app,
        generation,
        6,
        vec![
            write_event(
                5,
                3,
                Outcome::Skipped {
                    reason: "cancelled".into(),
                },
            ),
            write_event(
                5,
                4,
                Outcome::Skipped {
                    reason: "cancelled".into(),
                },
            ),
            ApplyEvent::Customer {
                tenant_id: tenant(3),
                state: CustomerState::Skipped,
            },
            ApplyEvent::Finished {
                at: t0() + Duration::seconds(6),
                done: 2,
                already_done: 1,
                failed: 0,
                skipped: 2,
                cancelled: true,
            },
        ],
        progress(5, 5, 0),
    );
    assert_eq!(app.sync.phase, Phase::Done);
    assert_eq!(
        app.status(Tab::Sync),
        Step::ToDo,
        "a cancelled apply is not done"
    );
    assert!(screen(&app, 80, 24).contains("Cancelled 04:25:06 UTC (0:06)"));
}

#[test]
fn done_summarises_and_r_reruns_reconcile() {
    let (mut app, generation) = halfway();
    applying(
        &mut app,
        generation,
        6,
        vec![
            write_event(
                4,
                3,
                Outcome::Failed {
                    error: "ConnectWise Manage refused the change (400): the addition is closed."
                        .into(),
                },
            ),
            ApplyEvent::Customer {
                tenant_id: tenant(2),
                state: CustomerState::Failed,
            },
            ApplyEvent::Customer {
                tenant_id: tenant(3),
                state: CustomerState::Running,
            },
            write_event(5, 4, Outcome::Done { id: "9030".into() }),
            ApplyEvent::Customer {
                tenant_id: tenant(3),
                state: CustomerState::Done,
            },
            ApplyEvent::Finished {
                at: t0() + Duration::seconds(6),
                done: 3,
                already_done: 1,
                failed: 1,
                skipped: 0,
                cancelled: false,
            },
        ],
        progress(5, 5, 1),
    );
    assert_eq!(app.sync.phase, Phase::Done);
    assert_eq!(app.status(Tab::Sync), Step::ToDo, "a write failed");
    let s = screen(&app, 120, 40);
    assert_shows(
        &s,
        &[
            "Finished 04:25:06 UTC (0:06): 3 done · 1 already done · 1 failed · 0 skipped",
            "Failed writes (1):",
            "✗ Bayside Legal: cancel addition 4 → –, Microsoft Teams Essentials",
            "  ConnectWise Manage refused the change (400): the addition is closed.",
            "Reconcile should now show these lines in line: press R",
        ],
    );
    snap("done", &app);
    // The engine's task ends after its summary: nothing changes.
    send(
        &mut app,
        Msg::Sync(sync::Msg::Applied {
            generation,
            result: Ok(()),
            now: t0() + Duration::seconds(7),
            xero: None,
        }),
    );
    assert!(app.sync.apply.as_ref().unwrap().error.is_none());
    // R: the Reconcile tab, running.
    let fx = send(&mut app, key(KeyCode::Char('R')));
    assert_eq!(app.tab, Tab::Reconcile);
    assert!(
        matches!(
            fx.as_slice(),
            [Effect::Reconcile(
                cspsync::tui::panes::reconcile::Cmd::Run { .. }
            )]
        ),
        "{fx:?}"
    );
    assert!(app.reconcile.running());
}

#[test]
fn a_clean_apply_marks_the_tab_done() {
    let (mut app, generation) = started();
    let events = (0..5)
        .map(|i| write_event(0, i, Outcome::Done { id: format!("{i}") }))
        .chain([ApplyEvent::Finished {
            at: t0() + Duration::seconds(1),
            done: 5,
            already_done: 0,
            failed: 0,
            skipped: 0,
            cancelled: false,
        }])
        .collect();
    applying(&mut app, generation, 1, events, progress(5, 5, 0));
    assert_eq!(app.status(Tab::Sync), Step::Done);
}

#[test]
fn an_apply_that_cannot_run_says_why() {
    let (mut app, generation) = started();
    send(
        &mut app,
        Msg::Sync(sync::Msg::Applied {
            generation,
            result: Err(
                "ConnectWise Manage refused the API keys (401). Check them on the PSA tab.".into(),
            ),
            now: t0(),
            xero: None,
        }),
    );
    assert_eq!(app.sync.phase, Phase::Done);
    let s = screen(&app, 80, 24);
    assert!(
        s.contains("Stopped: ConnectWise Manage refused the API keys"),
        "{s}"
    );
}

#[test]
fn quitting_while_applying_stops_cleanly_first() {
    let (mut app, generation) = halfway();
    send(&mut app, key(KeyCode::Char('q')));
    assert!(!app.quit);
    assert_eq!(app.modal, Some(Modal::ConfirmQuitApplying));
    snap("quit_while_applying", &app);
    send(&mut app, key(KeyCode::Char('n')));
    assert_eq!(app.modal, None);
    // From another tab too.
    send(&mut app, key(KeyCode::Char('1')));
    send(&mut app, key(KeyCode::Char('q')));
    let fx = send(&mut app, key(KeyCode::Char('y')));
    assert!(
        matches!(fx.as_slice(), [Effect::Sync(Cmd::Cancel { .. })]),
        "{fx:?}"
    );
    assert!(!app.quit, "not before the apply stopped");
    applying(
        &mut app,
        generation,
        6,
        vec![ApplyEvent::Finished {
            at: t0() + Duration::seconds(6),
            done: 2,
            already_done: 1,
            failed: 0,
            skipped: 2,
            cancelled: true,
        }],
        progress(5, 5, 0),
    );
    assert!(app.quit);
    // Ctrl-C in the question quits at once.
    let (mut app, _) = halfway();
    send(&mut app, ctrl('c'));
    assert_eq!(app.modal, Some(Modal::ConfirmQuitApplying));
    send(&mut app, ctrl('c'));
    assert!(app.quit);
}

#[test]
fn stale_generations_are_ignored() {
    // A plan answered after a newer plan was asked for.
    let mut app = planned(setup(), sample_plan());
    let old = app.sync.generation;
    send(&mut app, key(KeyCode::Char('r')));
    send(
        &mut app,
        Msg::Sync(sync::Msg::Planned {
            generation: old,
            result: Ok(Arc::new(sample_plan())),
            rotated: None,
            xero: None,
        }),
    );
    assert!(
        app.sync.planning(),
        "the old answer does not end the new run"
    );
    // Apply events of an earlier apply.
    let (mut app, generation) = halfway();
    applying(
        &mut app,
        generation - 1,
        9,
        vec![ApplyEvent::Finished {
            at: t0(),
            done: 0,
            already_done: 0,
            failed: 0,
            skipped: 0,
            cancelled: false,
        }],
        progress(5, 5, 0),
    );
    assert_eq!(app.sync.phase, Phase::Applying);
    send(
        &mut app,
        Msg::Sync(sync::Msg::Applied {
            generation: generation - 1,
            result: Err("old".into()),
            now: t0(),
            xero: None,
        }),
    );
    assert_eq!(app.sync.phase, Phase::Applying);
}

#[test]
fn the_audit_log_view() {
    let mut app = planned(setup(), sample_plan());
    let fx = send(&mut app, key(KeyCode::Char('l')));
    assert!(
        matches!(fx.as_slice(), [Effect::Sync(Cmd::ReadAudit)]),
        "{fx:?}"
    );
    assert!(screen(&app, 80, 24).contains("Audit log: reading…"));
    let actor = audit::Actor::new("admin-oid", "alex@contoso-it.com.au");
    let mut events: Vec<audit::Event> = (0..50)
        .map(|i| {
            let mut w = sample_plan().writes[4].clone();
            w.target = format!("addition {} on agreement 77", 9000 + i);
            let outcome = if i == 49 {
                Outcome::Failed {
                    error: "ConnectWise Manage answered 500".into(),
                }
            } else {
                Outcome::Done {
                    id: (9000 + i).to_string(),
                }
            };
            let mut e = audit::sync_write_event(&actor, &w, &outcome);
            e.time = t0() + Duration::seconds(i);
            e
        })
        .collect();
    events.insert(
        0,
        audit::Event {
            time: t0() - Duration::hours(1),
            actor: actor.clone(),
            action: audit::SIGN_IN.into(),
            details: json!({"role": "admin"}),
        },
    );
    send(&mut app, Msg::Sync(sync::Msg::Audit(Ok(events))));
    let s = screen(&app, 120, 40);
    assert!(s.contains("51 records in audit.jsonl"), "{s}");
    assert!(
        s.contains("04:25:49  alex@contoso-it.com…  sync.write          failed       Harbour Dental · change quantity 22 → 25"),
        "{s} newest at the bottom"
    );
    assert!(
        !s.contains("access.sign_in"),
        "{s} the oldest is above the screen"
    );
    snap("audit", &app);
    send(&mut app, key(KeyCode::Home));
    assert!(screen(&app, 120, 40).contains("access.sign_in"));
    send(&mut app, key(KeyCode::Char('l')));
    assert!(app.sync.audit.is_none());
    assert_eq!(app.sync.phase, Phase::Review, "the plan is still there");
    // An unreadable log says so.
    send(&mut app, key(KeyCode::Char('l')));
    send(
        &mut app,
        Msg::Sync(sync::Msg::Audit(Err(
            "cannot read the audit log /x/audit.jsonl: permission denied".into(),
        ))),
    );
    assert!(screen(&app, 80, 24).contains("permission denied"));
}

#[test]
fn thousands_of_writes_stay_fast() {
    let base = sample_plan();
    let writes: Vec<Write> = (0..6_000)
        .map(|i| {
            let mut w = base.writes[i % 5].clone();
            w.customer_tenant_id = format!("tenant-{:05}", i / 3);
            w.customer_name = format!("Customer {:05}", i / 3);
            w
        })
        .collect();
    let plan = Plan { writes, ..base };
    let mut app = planned(setup(), plan);
    assert_eq!(app.sync.groups.len(), 2_000);
    let t = Instant::now();
    for _ in 0..20 {
        screen(&app, 120, 40);
    }
    send(&mut app, key(KeyCode::End));
    let s = screen(&app, 120, 40);
    assert!(s.contains("Koala Cafe"), "{s}");
    let last = app.sync.cursor;
    send(&mut app, key(KeyCode::PageUp));
    assert_eq!(app.sync.cursor, last - app.sync.view_rows.get());
    assert!(screen(&app, 120, 40).contains("Customer 01999"));
    send(&mut app, key(KeyCode::Char('A')));
    send(&mut app, key(KeyCode::Char('A')));
    send(&mut app, key(KeyCode::Char('a')));
    let s = screen(&app, 120, 40);
    assert!(
        s.contains("Apply 6000 writes to ConnectWise Manage for 2000 customers?"),
        "{s}"
    );
    // 2,400 cautioned writes: as many listed as fit, the question and the field always shown.
    for (w, h) in SIZES {
        let s = screen(&app, w, h);
        assert!(
            s.contains("2400 of them need your explicit confirmation"),
            "{s}"
        );
        assert!(s.contains("more (marked ⚠ in the list)"), "{s}");
        assert!(s.contains("Enter alone applies the other 3600"), "{s}");
        assert!(s.contains("Confirm: ▏"), "{s}");
    }
    snap("confirm_many_cautions", &app);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?} for 23 frames of 6,000 writes",
        t.elapsed()
    );
}

#[test]
fn every_state_draws_at_every_size_without_panicking() {
    let (app, _) = halfway();
    let mut review = planned(setup(), sample_plan());
    send(&mut review, key(KeyCode::Char('a')));
    for a in [&app, &review] {
        for (w, h) in [(1, 1), (20, 5), (80, 24), (79, 23), (200, 60), (81, 25)] {
            screen(a, w, h);
        }
    }
}

/// At most 10 updates a second reach the tab however fast the engine reports, none is lost,
/// and the last arrives when the events end.
#[tokio::test(start_paused = true)]
async fn apply_events_are_coalesced_to_ten_updates_a_second() {
    let (etx, erx) = tokio::sync::mpsc::channel(1024);
    let (ptx, prx) = tokio::sync::watch::channel(ApplyProgress::default());
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let fwd = tokio::spawn(sync::forward(7, erx, prx, tx));
    // 2,000 writes over 2 seconds: one every millisecond.
    for i in 0..2_000usize {
        etx.send(write_event(0, i, Outcome::Done { id: i.to_string() }))
            .await
            .unwrap();
        ptx.send_modify(|p| p.finished = i + 1);
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    drop(etx);
    fwd.await.unwrap();
    let mut updates = 0;
    let mut events = 0;
    let mut last = None;
    while let Ok(m) = rx.try_recv() {
        let Msg::Sync(sync::Msg::Applying {
            generation,
            events: e,
            progress,
            ..
        }) = m
        else {
            panic!("unexpected {m:?}");
        };
        assert_eq!(generation, 7);
        updates += 1;
        events += e.len();
        last = Some(progress);
    }
    assert_eq!(events, 2_000, "every event arrives");
    assert_eq!(
        last.unwrap().finished,
        2_000,
        "the last update has the final count"
    );
    assert!(
        (15..=22).contains(&updates),
        "{updates} updates for 2 s of events"
    );
}

// ----- the background work against the simulated demo world -----------------------------------

/// The demo world, signed in, syncing to `psa`.
async fn demo_env(psa: PsaKindSetting) -> cspsync::tui::testing::SimEnv {
    let today = Utc::now().date_naive();
    let mut world = cspsync::sim::generate::demo(today);
    world.app.device_code_interval_secs = 1;
    let mut env = cspsync::tui::testing::SimEnv::start(world, true).await;
    env.setup.settings.psa.kind = psa;
    env
}

/// Run one command to its end; every message it sent.
async fn run_cmd(env: &cspsync::tui::testing::SimEnv, cmd: Cmd) -> Vec<Msg> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(100_000);
    tokio::time::timeout(
        std::time::Duration::from_secs(240),
        sync::run(cmd, env.svc.clone(), tx),
    )
    .await
    .expect("the command finishes");
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        out.push(m);
    }
    out
}

/// Plan in the demo world: every message through the pure update of an app on the Sync tab.
async fn plan_in_demo(env: &cspsync::tui::testing::SimEnv) -> App {
    let mut app = on_tab(env.setup.clone());
    let fx = send(&mut app, key(KeyCode::Enter));
    let [Effect::Sync(cmd @ Cmd::Plan { .. })] = fx.as_slice() else {
        panic!("expected a plan command, got {fx:?}");
    };
    let msgs = run_cmd(env, cmd.clone()).await;
    assert!(
        msgs.iter()
            .any(|m| matches!(m, Msg::Sync(sync::Msg::Progress { .. }))),
        "fetch progress was reported"
    );
    for m in msgs {
        send(&mut app, m);
    }
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_plans_the_demo_world() {
    let env = demo_env(PsaKindSetting::ConnectWise).await;
    let app = plan_in_demo(&env).await;
    assert_eq!(app.sync.phase, Phase::Review, "{:?}", app.sync.note);
    let plan = app.sync.plan.as_ref().unwrap();
    assert_eq!(plan.psa, Api::ConnectWise);
    assert!(
        !plan.writes.is_empty(),
        "the demo world has mismatches to sync"
    );
    assert_eq!(plan.summary.writes, plan.writes.len());
    let s = screen(&app, 120, 40);
    assert!(s.contains("Plan for ConnectWise Manage"), "{s}");
    assert!(
        s.contains(&format!("{0} of {0} writes selected", plan.writes.len())),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_a_setup_says_what_to_do() {
    let env = demo_env(PsaKindSetting::ConnectWise).await;
    let mut setup = env.setup.clone();
    setup.secrets.dicker_data_access_code = None;
    let msgs = run_cmd(
        &env,
        Cmd::Plan {
            generation: 4,
            setup: Box::new(setup),
        },
    )
    .await;
    match msgs.as_slice() {
        [
            Msg::Sync(sync::Msg::Planned {
                generation: 4,
                result: Err(e),
                ..
            }),
        ] => {
            assert!(e.contains("finish the setup tabs first"), "{e}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reads_the_audit_log() {
    let env = demo_env(PsaKindSetting::ConnectWise).await;
    let config = env.svc.config.clone();
    audit::record(
        &config,
        &audit::Event::now(
            audit::Actor::new("oid", "alex@msp.example"),
            audit::SIGN_IN,
            json!({"role": "admin"}),
        ),
    )
    .unwrap();
    let msgs = run_cmd(&env, Cmd::ReadAudit).await;
    match msgs.as_slice() {
        [Msg::Sync(sync::Msg::Audit(Ok(events)))] => {
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].actor.name, "alex@msp.example");
        }
        other => panic!("expected the log, got {other:?}"),
    }
}

// ----- terminal output while the progress view runs ---------------------------------------------

/// A 1,000-customer apply simulated at 10 updates a second (10 customers at a time, 0.4 s a
/// write), each update drawn by ratatui into a crossterm backend as the app draws (colours on,
/// synchronized updates): the bytes a terminal would receive each second stay ≤ 4 KB.
#[test]
fn the_progress_view_sends_little_to_the_terminal() {
    use crossterm::terminal::{BeginSynchronizedUpdate, EndSynchronizedUpdate};
    use crossterm::{execute, queue};
    use ratatui::Terminal;
    use ratatui::backend::CrosstermBackend;

    // Real names and products: the generated world's customers, the sample's writes.
    let base = sample_plan();
    let customers = 1_000;
    let world = cspsync::sim::generate::generate(&cspsync::sim::generate::GenOptions::new(
        customers,
        42,
        day(6, 11),
    ));
    let writes: Vec<Write> = (0..customers * 2)
        .map(|i| {
            let c = &world.customers[(i / 2) % world.customers.len()];
            let mut w = base.writes[(i * 7 + i / 3) % base.writes.len()].clone();
            w.customer_tenant_id = format!("{:08x}-0000-4000-8000-{:012x}", i / 2, i / 2);
            w.customer_name = c.company_name.clone();
            w.key = format!("k{i}");
            w.before = Some(d((i % 40) as i64));
            w.after = Some(d((i % 37) as i64));
            w
        })
        .collect();
    let plan = Plan {
        writes,
        skipped: Vec::new(),
        ..base
    };
    for (cols, rows) in SIZES {
        let mut app = planned(setup(), plan.clone());
        send(&mut app, key(KeyCode::Char('a')));
        type_text(&mut app, "yes");
        let (generation, selected, _) = apply_cmd_any(send(&mut app, key(KeyCode::Enter)));
        assert_eq!(selected.len(), customers * 2);
        let theme = cspsync::tui::theme::Theme::new(true);
        let bytes = Counter::default();
        let mut term = Terminal::with_options(
            CrosstermBackend::new(bytes.clone()),
            ratatui::TerminalOptions {
                viewport: ratatui::Viewport::Fixed(ratatui::layout::Rect::new(0, 0, cols, rows)),
            },
        )
        .unwrap();
        let draw = |app: &App, term: &mut Terminal<CrosstermBackend<Counter>>| {
            queue!(term.backend_mut(), BeginSynchronizedUpdate).unwrap();
            term.draw(|f| cspsync::tui::render::draw(app, &theme, f))
                .unwrap();
            execute!(term.backend_mut(), EndSynchronizedUpdate).unwrap();
        };
        draw(&app, &mut term);
        assert_eq!(term.get_frame().area().width, cols);
        // 10 customers at a time; each write 0.4 s.
        let mut next = 0usize;
        let mut slots: Vec<Option<(usize, usize, u32)>> = vec![None; 10];
        let mut tick = 0i64;
        let mut finished = 0usize;
        let mut per_second: Vec<usize> = Vec::new();
        let mut events = vec![ApplyEvent::Started {
            at: t0(),
            writes: customers * 2,
            customers,
        }];
        while finished < customers * 2 {
            tick += 1;
            let at = t0() + Duration::milliseconds(tick * 100);
            for slot in &mut slots {
                if slot.is_none() && next < customers {
                    *slot = Some((next, 0, 4));
                    events.push(ApplyEvent::Customer {
                        tenant_id: plan.writes[next * 2].customer_tenant_id.clone(),
                        state: CustomerState::Running,
                    });
                    next += 1;
                }
                if let Some((c, w, left)) = slot {
                    *left -= 1;
                    if *left == 0 {
                        let index = *c * 2 + *w;
                        events.push(ApplyEvent::Write {
                            at,
                            index,
                            key: format!("k{index}"),
                            outcome: Outcome::Done {
                                id: index.to_string(),
                            },
                        });
                        finished += 1;
                        if *w == 1 {
                            events.push(ApplyEvent::Customer {
                                tenant_id: plan.writes[index].customer_tenant_id.clone(),
                                state: CustomerState::Done,
                            });
                            *slot = None;
                        } else {
                            *w = 1;
                            *left = 4;
                        }
                    }
                }
            }
            if finished == customers * 2 {
                events.push(ApplyEvent::Finished {
                    at,
                    done: finished,
                    already_done: 0,
                    failed: 0,
                    skipped: 0,
                    cancelled: false,
                });
            }
            let before = bytes.get();
            send(
                &mut app,
                Msg::Sync(sync::Msg::Applying {
                    generation,
                    events: std::mem::take(&mut events),
                    progress: ApplyProgress {
                        total: customers * 2,
                        finished,
                        failed: 0,
                        started_at: Some(t0()),
                    },
                    now: at,
                }),
            );
            draw(&app, &mut term);
            let second = usize::try_from((tick - 1) / 10).unwrap();
            if per_second.len() <= second {
                per_second.push(0);
            }
            per_second[second] += bytes.get() - before;
        }
        assert_eq!(app.sync.phase, Phase::Done);
        // The last second holds the summary's redraw; the first three fill the empty panels.
        let running = &per_second[..per_second.len() - 1];
        let mut sorted = running.to_vec();
        sorted.sort_unstable();
        let median = sorted[sorted.len() / 2];
        let mean = running.iter().sum::<usize>() / running.len();
        let steady = running[3..].iter().copied().max().unwrap();
        println!(
            "{cols}x{rows}: {} s of progress, bytes/s mean {mean}, median {median}, max after the first 3 s {steady}: {running:?}",
            running.len()
        );
        assert!(mean <= 4_096, "{cols}x{rows}: mean {mean} B/s: {running:?}");
        assert!(
            median <= 4_096,
            "{cols}x{rows}: median {median} B/s: {running:?}"
        );
        assert!(steady <= 4_096, "{cols}x{rows}: {steady} B/s: {running:?}");
    }
}

/// A terminal that counts the bytes it receives.
#[derive(Clone, Default)]
struct Counter(Arc<std::sync::atomic::AtomicUsize>);

impl Counter {
    fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .fetch_add(buf.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The apply command, whatever was selected.
fn apply_cmd_any(fx: Vec<Effect>) -> (u64, Vec<usize>, bool) {
    match fx.as_slice() {
        [
            Effect::Sync(Cmd::Apply {
                generation,
                selected,
                confirm_cautions,
                ..
            }),
        ] => (*generation, selected.clone(), *confirm_cautions),
        other => panic!("expected an apply command, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_applies_the_demo_plan_and_a_new_plan_is_empty() {
    let env = demo_env(PsaKindSetting::ConnectWise).await;
    let mut app = plan_in_demo(&env).await;
    assert_eq!(app.sync.phase, Phase::Review, "{:?}", app.sync.note);
    let writes = app.sync.plan.as_ref().unwrap().writes.len();
    assert!(writes > 0);
    // Everything, the cautioned writes confirmed.
    send(&mut app, key(KeyCode::Char('a')));
    let cautioned = !app.sync.selection().cautioned.is_empty();
    if cautioned {
        type_text(&mut app, "yes");
    }
    let answer = if cautioned {
        KeyCode::Enter
    } else {
        KeyCode::Char('y')
    };
    let fx = send(&mut app, key(answer));
    let [Effect::Sync(cmd @ Cmd::Apply { .. })] = fx.as_slice() else {
        panic!("expected an apply command, got {fx:?}");
    };
    let msgs = run_cmd(&env, cmd.clone()).await;
    assert!(
        matches!(
            msgs.last(),
            Some(Msg::Sync(sync::Msg::Applied { result: Ok(()), .. }))
        ),
        "{:?}",
        msgs.last()
    );
    for m in msgs {
        send(&mut app, m);
    }
    assert_eq!(app.sync.phase, Phase::Done);
    let a = app.sync.apply.as_ref().unwrap();
    assert_eq!(a.counts.done, writes, "{:?}", a.failures);
    assert_eq!(app.status(Tab::Sync), Step::Done);
    let s = screen(&app, 120, 40);
    assert!(
        s.contains(&format!("{writes} done · 0 already done · 0 failed")),
        "{s}"
    );
    // Every write is in the audit log, with the operator.
    let log = audit::read(&env.svc.config, None).unwrap();
    let written = log.iter().filter(|e| e.action == audit::SYNC_WRITE).count();
    assert_eq!(written, writes);
    // The PSA is now in line: a new plan has nothing to write.
    let again = plan_in_demo(&env).await;
    assert_eq!(
        again.sync.plan.as_ref().unwrap().writes.len(),
        0,
        "{:?}",
        again.sync.plan.as_ref().unwrap().writes
    );
    assert!(screen(&again, 80, 24).contains("Nothing to write"));
}

/// A generated world of `customers`, its ConnectWise answering after `cw_latency`, signed in
/// and syncing to ConnectWise; the runner's services pointed at it.
async fn slow_cw_env(customers: usize, cw_latency: &str) -> cspsync::tui::testing::SimEnv {
    let world = support::sim::generated(customers, 42);
    let mut env = cspsync::tui::testing::SimEnv::start(world, true).await;
    support::sim::faults(&env.sim, &format!("connectwise.latency={cw_latency}")).await;
    env.setup.settings.psa.kind = PsaKindSetting::ConnectWise;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esc_cancels_a_running_apply_cleanly() {
    let env = slow_cw_env(500, "80ms").await;
    let (setup, svc) = (env.setup.clone(), env.svc.clone());
    let mut app = on_tab(setup);
    let fx = send(&mut app, key(KeyCode::Enter));
    let [Effect::Sync(plan_cmd)] = fx.as_slice() else {
        panic!("expected a plan command, got {fx:?}");
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(100_000);
    sync::run(plan_cmd.clone(), svc.clone(), tx.clone()).await;
    while let Ok(m) = rx.try_recv() {
        send(&mut app, m);
    }
    assert_eq!(app.sync.phase, Phase::Review, "{:?}", app.sync.note);
    let writes = app.sync.plan.as_ref().unwrap().writes.len();
    assert!(
        writes >= 30,
        "{writes} writes: too few to cancel in the middle"
    );
    send(&mut app, key(KeyCode::Char('a')));
    if !app.sync.selection().cautioned.is_empty() {
        type_text(&mut app, "yes");
    }
    let answer = if app.sync.selection().cautioned.is_empty() {
        KeyCode::Char('y')
    } else {
        KeyCode::Enter
    };
    let fx = send(&mut app, key(answer));
    let [Effect::Sync(apply_cmd @ Cmd::Apply { .. })] = fx.as_slice() else {
        panic!("expected an apply command, got {fx:?}");
    };
    let task = tokio::spawn(sync::run(apply_cmd.clone(), svc.clone(), tx.clone()));
    // Some writes in: Esc, y.
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(120), rx.recv())
            .await
            .expect("the apply reports")
            .expect("a message");
        send(&mut app, m);
        if app.sync.apply.as_ref().unwrap().counts.done > 0 {
            break;
        }
    }
    send(&mut app, key(KeyCode::Esc));
    let fx = send(&mut app, key(KeyCode::Char('y')));
    let [Effect::Sync(cancel @ Cmd::Cancel { .. })] = fx.as_slice() else {
        panic!("expected a cancel, got {fx:?}");
    };
    // A cancel of another apply changes nothing; this one stops it.
    sync::run(Cmd::Cancel { generation: 999 }, svc.clone(), tx.clone()).await;
    sync::run(cancel.clone(), svc.clone(), tx.clone()).await;
    tokio::time::timeout(std::time::Duration::from_secs(120), task)
        .await
        .expect("the apply stops")
        .unwrap();
    while let Ok(m) = rx.try_recv() {
        send(&mut app, m);
    }
    assert_eq!(app.sync.phase, Phase::Done);
    let a = app.sync.apply.as_ref().unwrap();
    let f = a.finished.as_ref().expect("a summary");
    assert!(f.cancelled, "{f:?}");
    assert!(f.skipped > 0, "writes not started were skipped: {f:?}");
    assert_eq!(f.failed, 0, "{:?}", a.failures);
    assert_eq!(
        f.done + f.skipped,
        writes,
        "every write accounted for: {f:?}"
    );
    // Nothing half-done: a customer has all of its writes done or none.
    let plan = app.sync.plan.as_ref().unwrap();
    for c in &a.customers {
        let n = plan
            .writes
            .iter()
            .filter(|w| w.customer_tenant_id.eq_ignore_ascii_case(&c.tenant_id))
            .count();
        assert!(
            c.finished == n,
            "{}: {} of {n} writes decided",
            c.name,
            c.finished
        );
    }
    let s = screen(&app, 120, 40);
    assert!(s.contains("Cancelled"), "{s}");
}

#[test]
fn dollar_sets_a_customers_price_saves_it_and_plans_again() {
    let plan = sample_plan();
    let exo = plan
        .writes
        .iter()
        .position(|w| w.key == "cw:add:77:exo1")
        .unwrap();
    let mut app = planned(setup(), plan);
    goto_write(&mut app, exo);
    send(&mut app, key(KeyCode::Char('$')));
    assert!(matches!(app.sync.popup, Some(Popup::Price { .. })));
    // Letters are refused with the reason; a malformed number is not saved.
    send(&mut app, key(KeyCode::Char('x')));
    assert!(screen(&app, 80, 24).contains("Only digits"));
    type_text(&mut app, "1.2.3");
    assert!(send(&mut app, key(KeyCode::Enter)).is_empty());
    assert!(screen(&app, 120, 40).contains("Type the price per seat per month"));
    assert!(app.setup.settings.sync.price_overrides.is_empty());
    send(&mut app, ctrl('u'));
    type_text(&mut app, "31.50");
    snap("price_popup", &app);
    let fx = send(&mut app, key(KeyCode::Enter));
    assert!(
        matches!(fx.first(), Some(Effect::Save(s)) if s.settings.sync.price_overrides.len() == 1),
        "{fx:?}"
    );
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Sync(Cmd::Plan { .. }))),
        "a saved price plans again: {fx:?}"
    );
    let saved = &app.setup.settings.sync.price_overrides;
    assert_eq!(saved[0].tenant_id, tenant(1));
    assert_eq!(saved[0].stock_code, "P1Y:CFQ7TTC0LH16:0001:1:");
    assert_eq!(saved[0].unit_price, Decimal::new(3150, 2));

    // The same line again: the saved price is shown; a new one replaces it, never a second.
    let mut setup2 = setup();
    setup2.settings.sync.price_overrides = saved.clone();
    let plan = sample_plan();
    let mut app = planned(setup2, plan);
    goto_write(&mut app, exo);
    send(&mut app, key(KeyCode::Char('$')));
    assert!(screen(&app, 120, 40).contains("Price: 31.5"));
    send(&mut app, ctrl('u'));
    type_text(&mut app, "29");
    send(&mut app, key(KeyCode::Enter));
    let saved = &app.setup.settings.sync.price_overrides;
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert_eq!(saved[0].unit_price, Decimal::from(29));
    // Empty removes it.
    let mut setup3 = setup();
    setup3.settings.sync.price_overrides = saved.clone();
    let mut app = planned(setup3, sample_plan());
    goto_write(&mut app, exo);
    send(&mut app, key(KeyCode::Char('$')));
    send(&mut app, ctrl('u'));
    let fx = send(&mut app, key(KeyCode::Enter));
    assert!(matches!(fx.first(), Some(Effect::Save(_))), "{fx:?}");
    assert!(app.setup.settings.sync.price_overrides.is_empty());

    // A skipped line of one product takes a price too (the plan's stock code, not its label);
    // one without a stock code says where to put the cursor.
    let mut app = planned(setup(), sample_plan());
    for (k, opens) in [(0, true), (1, false)] {
        app.sync.cursor = app
            .sync
            .rows
            .iter()
            .position(|r| *r == Row::Skipped(k))
            .unwrap();
        send(&mut app, key(KeyCode::Char('$')));
        match &app.sync.popup {
            Some(Popup::Price { stock_code, .. }) => {
                assert!(opens);
                assert_eq!(stock_code, "P1M:CFQ7TTC0L3PB:0001:1:");
            }
            other => {
                assert!(!opens, "{other:?}");
                assert!(screen(&app, 120, 40).contains("Put the cursor on a write"));
            }
        }
        send(&mut app, key(KeyCode::Esc));
    }
}
