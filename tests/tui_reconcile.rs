//! The Reconcile tab (issue 5 §4): screens (insta snapshots at 80x24 and 120x40), the keys
//! through the pure update function, export, and a full run against the simulated demo world.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use crossterm::event::KeyCode;
use rust_decimal::Decimal;
use tokio::sync::mpsc;

use cspsync::api::error::Api;
use cspsync::config::{ConfigDir, Endpoints, PsaKindSetting};
use cspsync::connect::Context;
use cspsync::domain::{
    Billing, Explanation, Field, Line, Mapping, Reconciliation, SourceRecord, Status, Summary, Term,
};
use cspsync::engine::fetch::FetchProgress;
use cspsync::sim::FaultSpec;
use cspsync::tui::app::{App, Effect, Msg, Setup, Tab};
use cspsync::tui::panes::Step;
use cspsync::tui::panes::reconcile::{self, Cmd, Format, Phase, Sort};
use cspsync::tui::runner::Services;
use cspsync::tui::testing::{key, screen, send, type_text};

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-11T04:25:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn snap(name: &str, app: &App) {
    for (w, h) in SIZES {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(app, w, h));
    }
}

fn line(customer: &str, product: &str, dd: i64, ms: i64, psa: i64, statuses: &[Status]) -> Line {
    let money = Decimal::from((dd - psa).abs().max((dd - ms).abs()) * 36);
    Line {
        customer_tenant_id: format!("{:08x}-0000-4000-8000-000000000001", customer.len()),
        customer_name: customer.into(),
        product_id: "CFQ7TTC0LCHC:0002".into(),
        product_name: product.into(),
        term: Term::P1Y,
        billing: Billing::Monthly,
        stock_code: Some("MS-CFQ7TTC0LCHC-0002-P1Y-1".into()),
        distributor_qty: Some(dd),
        microsoft_qty: Some(ms),
        assigned: Some(ms),
        sku_purchased: Some(ms),
        psa_qty: Some(Decimal::from(psa)),
        statuses: statuses.to_vec(),
        monthly_impact: if statuses == [Status::InLine] {
            Decimal::ZERO
        } else {
            money
        },
        renewal_date: NaiveDate::from_ymd_opt(2025, 7, 1 + (dd as u32 % 20)),
        cancel_window_hours_left: (dd % 3 == 0).then_some(52),
        impact: Vec::new(),
        explain: vec![
            Explanation {
                field: Field::DistributorQty,
                value: dd.to_string(),
                how: "Dicker Data's confirmed quantity of the subscription.".into(),
                sources: vec![SourceRecord {
                    api: Api::DickerData,
                    record: "subscription".into(),
                    id: "DD-1001".into(),
                    detail: format!("ConfirmedQuantity {dd}, Status ACTIVE"),
                }],
                fetched_at: at(),
            },
            Explanation {
                field: Field::PsaQty,
                value: psa.to_string(),
                how: "The agreement addition's quantity.".into(),
                sources: vec![SourceRecord {
                    api: Api::ConnectWise,
                    record: "agreement addition".into(),
                    id: "addition 9012 on agreement 77".into(),
                    detail: format!("quantity {psa}"),
                }],
                fetched_at: at(),
            },
        ],
        suggestions: Vec::new(),
    }
}

fn recon(lines: Vec<Line>) -> Reconciliation {
    let mut by_status = BTreeMap::new();
    for l in &lines {
        for s in &l.statuses {
            *by_status.entry(*s).or_insert(0) += 1;
        }
    }
    let in_line = lines.iter().filter(|l| l.is_in_line()).count();
    Reconciliation {
        fetched_from: at(),
        fetched_at: at(),
        now: at(),
        summary: Summary {
            psa: Some(Api::ConnectWise),
            customers: 3,
            lines_audited: lines.len(),
            in_line,
            mismatched: lines.len() - in_line,
            by_status,
            monthly_at_risk: lines.iter().map(|l| l.monthly_impact).sum(),
            lines_without_price: 0,
            unmapped_customers: 0,
            unmapped_products: 0,
            customers_not_read: Vec::new(),
            customers_without_graph: Vec::new(),
            distributor_lines_skipped: 0,
        },
        lines,
        mapping: Mapping {
            psa: Some(Api::ConnectWise),
            customers: Vec::new(),
            unmapped_customers: 0,
            products: Vec::new(),
            stock_codes_without_psa_product: 0,
            unmapped_psa_products: Vec::new(),
            psa_records: Vec::new(),
            unclaimed_psa_customers: Vec::new(),
            notes: Vec::new(),
        },
    }
}

fn sample() -> Reconciliation {
    recon(vec![
        line(
            "Harbour Dental",
            "Microsoft 365 Business Premium",
            25,
            25,
            22,
            &[Status::PsaUnderbilled],
        ),
        line(
            "Acme Plumbing",
            "Microsoft 365 Business Standard",
            10,
            12,
            10,
            &[Status::DistributorMicrosoftMismatch],
        ),
        line(
            "Zenith Accounting",
            "Exchange Online (Plan 1)",
            5,
            5,
            5,
            &[Status::InLine],
        ),
        line(
            "Bayside Legal",
            "Microsoft 365 E3",
            8,
            8,
            9,
            &[Status::PsaOverbilled, Status::UnassignedSeats],
        ),
    ])
}

fn on_tab() -> App {
    let mut app = App::new(Setup::default(), false);
    app.tab = Tab::Reconcile;
    app
}

/// Press Enter and answer with `result`.
fn ran(result: Result<Reconciliation, String>) -> App {
    let mut app = on_tab();
    let fx = send(&mut app, key(KeyCode::Enter));
    let generation = match fx.as_slice() {
        [Effect::Reconcile(Cmd::Run { generation, .. })] => *generation,
        other => panic!("expected a run, got {other:?}"),
    };
    send(
        &mut app,
        Msg::Reconcile(reconcile::Msg::Finished {
            generation,
            result: result.map(Arc::new),
            rotated: None,
            xero: None,
        }),
    );
    app
}

#[test]
fn idle_and_loading_screens() {
    let mut app = on_tab();
    assert_eq!(app.status(Tab::Reconcile), Step::ToDo);
    snap("idle", &app);
    send(&mut app, key(KeyCode::Enter));
    assert_eq!(app.status(Tab::Reconcile), Step::Busy);
    let generation = app.reconcile.generation;
    send(
        &mut app,
        Msg::Reconcile(reconcile::Msg::Progress {
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
    snap("loading", &app);
    // A second Enter while running does not start another run.
    assert!(send(&mut app, key(KeyCode::Enter)).is_empty());
}

#[test]
fn results_show_the_summary_and_only_mismatches() {
    let mut app = ran(Ok(sample()));
    assert_eq!(app.status(Tab::Reconcile), Step::Done);
    assert_eq!(app.reconcile.phase, Phase::Done);
    let s = screen(&app, 120, 40);
    assert!(
        s.contains("4 lines audited, 1 in line, 3 with mismatches"),
        "{s}"
    );
    assert!(!s.contains("Zenith"), "in-line lines are hidden by default");
    snap("results", &app);
    send(&mut app, key(KeyCode::Char('a')));
    assert!(screen(&app, 120, 40).contains("Zenith"));
    send(&mut app, key(KeyCode::Char('a')));
    assert!(!screen(&app, 120, 40).contains("Zenith"));
}

#[test]
fn enter_explains_a_line_and_esc_closes() {
    let mut app = ran(Ok(sample()));
    send(&mut app, key(KeyCode::Down));
    let current = app.reconcile.current().unwrap().customer_name.clone();
    assert_eq!(current, "Acme Plumbing");
    send(&mut app, key(KeyCode::Enter));
    let s = screen(&app, 120, 40);
    assert!(s.contains("DD-1001"), "{s}");
    assert!(s.contains("addition 9012 on agreement 77"), "{s}");
    assert!(s.contains("2025-06-11 04:25 UTC"), "{s}");
    snap("detail", &app);
    send(&mut app, key(KeyCode::Esc));
    assert!(app.reconcile.detail.is_none());
    assert_eq!(app.tab, Tab::Reconcile);
}

#[test]
fn filter_by_customer_product_or_status() {
    let mut app = ran(Ok(sample()));
    send(&mut app, key(KeyCode::Char('/')));
    assert!(app.editing(), "keys go to the filter");
    type_text(&mut app, "under");
    assert_eq!(app.reconcile.view.len(), 1);
    snap("filtered", &app);
    send(&mut app, key(KeyCode::Enter));
    assert!(!app.editing());
    assert_eq!(app.reconcile.view.len(), 1, "Enter keeps the filter");
    send(&mut app, key(KeyCode::Char('/')));
    send(&mut app, key(KeyCode::Esc));
    assert_eq!(app.reconcile.view.len(), 3, "Esc clears it");
    send(&mut app, key(KeyCode::Char('/')));
    type_text(&mut app, "nothing like this");
    assert!(screen(&app, 80, 24).contains("No line matches the filter"));
}

#[test]
fn sort_cycles_and_reverses() {
    let mut app = ran(Ok(sample()));
    send(&mut app, key(KeyCode::Char('s')));
    assert_eq!(app.reconcile.sort, Sort::Customer);
    let names = |a: &App| {
        a.reconcile
            .view
            .iter()
            .map(|i| {
                a.reconcile.result.as_ref().unwrap().lines[*i]
                    .customer_name
                    .clone()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&app),
        ["Acme Plumbing", "Bayside Legal", "Harbour Dental"]
    );
    snap("sorted", &app);
    send(&mut app, key(KeyCode::Char('S')));
    assert_eq!(
        names(&app),
        ["Harbour Dental", "Bayside Legal", "Acme Plumbing"]
    );
    send(&mut app, key(KeyCode::Char('s')));
    send(&mut app, key(KeyCode::Char('s')));
    assert_eq!(app.reconcile.sort, Sort::Money);
    assert_eq!(names(&app)[0], "Harbour Dental", "biggest money first");
}

#[test]
fn zero_lines_audited_never_looks_clean() {
    let app = ran(Ok(recon(Vec::new())));
    let s = screen(&app, 80, 24);
    assert!(s.contains("0 lines audited: nothing was checked"), "{s}");
    assert!(!s.contains("No mismatches"), "{s}");
    snap("empty", &app);
}

#[test]
fn errors_are_shown_and_an_earlier_result_stays() {
    let app = ran(Err(
        "Dicker Data refused the access code (401). Check the access code on the Distributor tab."
            .into(),
    ));
    assert!(matches!(app.reconcile.phase, Phase::Failed(_)));
    snap("error", &app);
    let mut app = ran(Ok(sample()));
    send(&mut app, key(KeyCode::Char('r')));
    let generation = app.reconcile.generation;
    send(
        &mut app,
        Msg::Reconcile(reconcile::Msg::Finished {
            generation,
            result: Err("Partner Center timed out. Try again.".into()),
            rotated: None,
            xero: None,
        }),
    );
    assert!(app.reconcile.result.is_some());
    assert!(screen(&app, 80, 24).contains("Failed: Partner Center timed out"));
}

#[test]
fn stale_results_are_ignored() {
    let mut app = ran(Ok(sample()));
    let old = app.reconcile.generation;
    send(&mut app, key(KeyCode::Char('r')));
    send(
        &mut app,
        Msg::Reconcile(reconcile::Msg::Finished {
            generation: old,
            result: Ok(Arc::new(recon(Vec::new()))),
            rotated: None,
            xero: None,
        }),
    );
    assert!(
        app.reconcile.running(),
        "the old answer does not end the new run"
    );
    assert_eq!(app.reconcile.result.as_ref().unwrap().lines.len(), 4);
}

#[test]
fn the_tab_never_blocks_the_wizard() {
    let app = App::new(Setup::default(), false);
    assert_ne!(app.first_open_step(), Tab::Reconcile);
    assert_ne!(app.status(Tab::Reconcile), Step::Later);
}

#[test]
fn twenty_thousand_lines_stay_fast() {
    let lines: Vec<Line> = (0..20_000)
        .map(|i| {
            line(
                &format!("Customer {i:05}"),
                "Microsoft 365 Business Premium",
                10 + i % 7,
                10,
                10,
                &[Status::DistributorMicrosoftMismatch],
            )
        })
        .collect();
    let mut app = ran(Ok(recon(lines)));
    let t = Instant::now();
    for _ in 0..20 {
        screen(&app, 120, 40);
    }
    send(&mut app, key(KeyCode::End));
    let s = screen(&app, 120, 40);
    assert!(s.contains("Customer 19999"), "{s}");
    send(&mut app, key(KeyCode::PageUp));
    assert!(app.reconcile.cursor < 19_999);
    send(&mut app, key(KeyCode::Home));
    assert!(screen(&app, 120, 40).contains("Customer 00000"));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "drawing took {:?}",
        t.elapsed()
    );
}

#[test]
fn export_writes_csv_and_json_to_the_data_directory() {
    let mut app = ran(Ok(sample()));
    let fx = send(&mut app, key(KeyCode::Char('e')));
    assert!(matches!(
        fx.as_slice(),
        [Effect::Reconcile(Cmd::Export {
            format: Format::Csv,
            ..
        })]
    ));
    let fx = send(&mut app, key(KeyCode::Char('E')));
    assert!(matches!(
        fx.as_slice(),
        [Effect::Reconcile(Cmd::Export {
            format: Format::Json,
            ..
        })]
    ));
    let dir = tempfile::tempdir().unwrap();
    let r = sample();
    let csv = reconcile::export(dir.path(), Format::Csv, &r, at()).unwrap();
    assert!(
        std::fs::read_to_string(&csv)
            .unwrap()
            .contains("Harbour Dental")
    );
    let json = reconcile::export(dir.path(), Format::Json, &r, at()).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(v.is_object());
    send(
        &mut app,
        Msg::Reconcile(reconcile::Msg::Exported(Ok(csv.clone()))),
    );
    assert!(screen(&app, 120, 40).contains("Exported to"));
}

// ----- a run against the simulated demo world ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_the_demo_world_finds_the_planted_statuses() {
    let today = Utc::now().date_naive();
    let mut world = cspsync::sim::generate::demo(today);
    world.app.device_code_interval_secs = 1;
    let sim = cspsync::sim::start(
        world.clone(),
        FaultSpec::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let urls = sim.urls();
    let mut setup = cspsync::run::demo_setup(&world, &urls).unwrap();
    setup.settings.psa.kind = PsaKindSetting::ConnectWise;
    let session = cspsync::demo::sign_in_microsoft(&sim, &world)
        .await
        .unwrap();
    setup.secrets.microsoft_refresh_token = Some(session.refresh_token().secret().to_string());
    let dir = tempfile::tempdir().unwrap();
    let svc = Services::new(
        Context::with_endpoints(Endpoints::from_sim(&urls).unwrap()),
        ConfigDir {
            dir: dir.path().to_path_buf(),
        },
        None,
    );
    let (tx, mut rx) = mpsc::channel(100_000);
    let cmd = Cmd::Run {
        generation: 3,
        setup: Box::new(setup),
    };
    tokio::time::timeout(
        Duration::from_secs(240),
        reconcile::run(cmd, Arc::new(svc), tx),
    )
    .await
    .expect("the run finishes");
    let mut progress = 0;
    let mut finished = None;
    while let Ok(m) = rx.try_recv() {
        match m {
            Msg::Reconcile(reconcile::Msg::Progress { generation, .. }) => {
                assert_eq!(generation, 3);
                progress += 1;
            }
            Msg::Reconcile(reconcile::Msg::Finished {
                generation, result, ..
            }) => {
                assert_eq!(generation, 3);
                finished = Some(result);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(progress > 0, "progress was reported");
    let r = finished.expect("a result").expect("the run succeeds");
    assert!(r.summary.lines_audited > 0);
    let found: std::collections::BTreeSet<&str> = r
        .lines
        .iter()
        .flat_map(|l| l.statuses.iter().map(|s| s.as_str()))
        .collect();
    for p in &world.planted {
        if p.psa.as_deref().is_none_or(|k| k == "connectwise") {
            assert!(
                found.contains(p.status.as_str()),
                "planted {} not found ({})",
                p.status,
                p.detail
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_a_setup_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Services::new(
        Context::with_endpoints(Endpoints::default()),
        ConfigDir {
            dir: dir.path().to_path_buf(),
        },
        None,
    );
    let (tx, mut rx) = mpsc::channel(16);
    let cmd = Cmd::Run {
        generation: 1,
        setup: Box::new(Setup::default()),
    };
    reconcile::run(cmd, Arc::new(svc), tx).await;
    match rx.try_recv().unwrap() {
        Msg::Reconcile(reconcile::Msg::Finished { result: Err(e), .. }) => {
            assert!(e.contains("finish the setup tabs first"), "{e}")
        }
        other => panic!("unexpected {other:?}"),
    }
}
