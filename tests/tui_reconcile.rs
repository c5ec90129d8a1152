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
use cspsync::domain::mapping::CustomerLink;
use cspsync::domain::{
    Billing, Explanation, Field, ImpactPart, Line, Mapping, MatchReason, PsaCustomerRef, PsaLink,
    PsaProductRef, Reconciliation, SourceRecord, Status, Suggestion, Summary, Term,
};
use cspsync::engine::fetch::{self, FetchEvent, FetchProgress, LiveFetch};
use cspsync::tui::app::{App, Effect, Msg, Setup, Tab};
use cspsync::tui::panes::Step;
use cspsync::tui::panes::reconcile::{self, Cmd, Format, Phase, Row, Sort};
use cspsync::tui::runner::Services;
use cspsync::tui::testing::{SimEnv, key, screen, send, type_text};

mod support;

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
        // The money as its part: seats × 36.00 a month.
        impact: statuses
            .iter()
            .find(|s| **s != Status::InLine)
            .map(|s| ImpactPart {
                status: *s,
                seats: money / Decimal::from(36),
                unit_amount: Some(Decimal::from(36)),
                unit_source: "ConnectWise catalog item 88 price".into(),
                amount: money,
            })
            .into_iter()
            .collect(),
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
    assert!(
        s.contains("Fetching: 17 of 40 customers · Dicker Data ✓ · PSA …"),
        "{s}"
    );
    assert!(s.contains("█"), "a progress bar: {s}");
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
            .shown_lines()
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

// ----- richer results: money parts, mappings, suggestions ------------------------------------

fn tenant(name: &str) -> String {
    let h = name
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("{h:08x}-0000-4000-8000-{:012x}", name.len())
}

/// A line of `customer` with its own tenant id, product and money parts.
fn rich(
    customer: &str,
    product: (&str, &str),
    counts: (i64, i64, i64),
    statuses: &[Status],
    parts: &[(Status, i64, &str, &str)],
) -> Line {
    let (dd, ms, psa) = counts;
    let mut l = line(customer, product.1, dd, ms, psa, statuses);
    l.customer_tenant_id = tenant(customer);
    l.product_id = product.0.into();
    l.stock_code = Some(format!("P1Y:{}:1:", product.0));
    l.impact = parts
        .iter()
        .map(|(st, seats, unit, source)| {
            let unit: Decimal = unit.parse().unwrap();
            ImpactPart {
                status: *st,
                seats: Decimal::from(*seats),
                unit_amount: Some(unit),
                unit_source: (*source).into(),
                amount: unit * Decimal::from(*seats),
            }
        })
        .collect();
    l.monthly_impact = l.impact.iter().map(|p| p.amount).sum();
    l
}

const BP: (&str, &str) = ("CFQ7TTC0LCHC:0002", "Microsoft 365 Business Premium");
const BB: (&str, &str) = ("CFQ7TTC0LH18:0001", "Microsoft 365 Business Basic");
const EXO: (&str, &str) = ("CFQ7TTC0LH16:0001", "Exchange Online (Plan 1)");
const APPS: (&str, &str) = ("CFQ7TTC0LH1G:0002", "Microsoft 365 Apps for business");

fn mapped(name: &str, id: u64) -> CustomerLink {
    CustomerLink {
        tenant_id: tenant(name),
        name: name.into(),
        at_microsoft: true,
        distributor_name: None,
        psa: PsaLink::Mapped {
            record: PsaCustomerRef::ConnectwiseCompany(id),
            name: name.to_uppercase(),
            reason: MatchReason::Name {
                normalised: name.to_lowercase().replace(' ', ""),
            },
        },
    }
}

fn rich_sample() -> Reconciliation {
    let cw = "ConnectWise addition 9012 unitPrice";
    let dd = "Dicker Data price list (PricingRequest) for P1Y:CFQ7TTC0LCHC:0002:1:";
    let mut hunter = rich(
        "Hunter Property",
        APPS,
        (40, 40, 0),
        &[Status::UnmappedProduct],
        &[],
    );
    hunter.psa_qty = None;
    hunter.suggestions = vec![Suggestion {
        target: PsaProductRef::ConnectwiseCatalogItem(747),
        label:
            "Microsoft 365 Apps for business licences (legacy item) (addition 9301 on agreement 88)"
                .into(),
        score: 70,
        reasons: vec![
            "it charges 40 seats, exactly the seats this line is short".into(),
            "its name shares 'apps business'".into(),
        ],
    }];
    let mut redgum = rich(
        "Redgum Wealth",
        EXO,
        (2, 2, 0),
        &[Status::UnmappedCustomer],
        &[],
    );
    redgum.psa_qty = None;
    let lines = vec![
        rich(
            "Harbour Dental",
            BP,
            (25, 25, 22),
            &[Status::PsaUnderbilled],
            &[(Status::PsaUnderbilled, 3, "36.00", cw)],
        ),
        rich(
            "Harbour Dental",
            BB,
            (10, 12, 10),
            &[Status::DistributorMicrosoftMismatch],
            &[(Status::DistributorMicrosoftMismatch, 2, "7.20", dd)],
        ),
        rich("Harbour Dental", EXO, (5, 5, 5), &[Status::InLine], &[]),
        hunter,
        rich(
            "Acme Plumbing",
            BP,
            (8, 8, 9),
            &[Status::PsaOverbilled, Status::UnassignedSeats],
            &[
                (Status::PsaOverbilled, 1, "36.00", cw),
                (Status::UnassignedSeats, 2, "31.20", dd),
            ],
        ),
        redgum,
        rich("Zenith Accounting", EXO, (5, 5, 5), &[Status::InLine], &[]),
    ];
    let mut r = recon(lines);
    r.summary.customers = 5;
    r.summary.unmapped_customers = 1;
    r.summary.unmapped_products = 2;
    r.mapping.unmapped_customers = 1;
    r.mapping.customers = vec![
        mapped("Acme Plumbing", 301),
        mapped("Harbour Dental", 302),
        mapped("Hunter Property", 303),
        CustomerLink {
            tenant_id: tenant("Redgum Wealth"),
            name: "Redgum Wealth".into(),
            at_microsoft: true,
            distributor_name: Some("REDGUM WEALTH PTY LTD".into()),
            psa: PsaLink::Unmapped {
                suggestions: vec![
                    Suggestion {
                        target: PsaCustomerRef::ConnectwiseCompany(512),
                        label: "City Wealth".into(),
                        score: 75,
                        reasons: vec![
                            "it is billed for exactly the customer's 1 Dicker Data stock code(s), with the same quantities".into(),
                            "its name shares the word 'wealth'".into(),
                        ],
                    },
                    Suggestion {
                        target: PsaCustomerRef::ConnectwiseCompany(640),
                        label: "Redgum Landscaping".into(),
                        score: 15,
                        reasons: vec!["its name shares the word 'redgum'".into()],
                    },
                ],
            },
        },
        mapped("Zenith Accounting", 305),
    ];
    r
}

fn line_at(app: &App, name: &str, product: &str) -> usize {
    app.reconcile
        .view
        .iter()
        .position(|row| match row {
            Row::Line(i) => {
                let l = &app.reconcile.result.as_ref().unwrap().lines[*i];
                l.customer_name == name && l.product_name == product
            }
            Row::Group(_) => false,
        })
        .unwrap_or_else(|| panic!("{name} {product} is not shown"))
}

#[test]
fn the_summary_always_shows_the_unmapped_counts_and_each_status() {
    let app = ran(Ok(rich_sample()));
    let s = screen(&app, 120, 40);
    assert!(s.contains("unmapped: 1 customer, 2 products"), "{s}");
    for label in [
        "underbilled 1",
        "DD≠MS 1",
        "overbilled 1",
        "unassigned 1",
        "unmapped customer 1",
        "unmapped product 1",
    ] {
        assert!(s.contains(label), "{label}: {s}");
    }
    assert!(!s.contains("over-assigned 0"), "only statuses present: {s}");
    snap("unmapped", &app);
    // Nothing unmapped is still said.
    let app = ran(Ok(sample()));
    assert!(screen(&app, 80, 24).contains("unmapped: 0 customers, 0 products"));
    // And with 0 lines audited.
    let app = ran(Ok(recon(Vec::new())));
    assert!(screen(&app, 80, 24).contains("unmapped: 0 customers, 0 products"));
}

#[test]
fn detail_shows_the_money_parts_the_customer_link_and_suggestions() {
    let mut app = ran(Ok(rich_sample()));
    app.reconcile.cursor = line_at(&app, "Acme Plumbing", BP.1);
    send(&mut app, key(KeyCode::Enter));
    let s = screen(&app, 120, 40);
    assert!(s.contains("Money at risk: 98.40 a month"), "{s}");
    assert!(s.contains("overbilled: 1 seat × 36.00 = 36.00"), "{s}");
    assert!(s.contains("unassigned: 2 seats × 31.20 = 62.40"), "{s}");
    assert!(
        s.contains("unit amount: Dicker Data price list (PricingRequest)"),
        "{s}"
    );
    assert!(
        s.contains("Linked to ACME PLUMBING (ConnectWise company 301) because the names are equal once normalised"),
        "{s}"
    );
    snap("detail_impact", &app);
    send(&mut app, key(KeyCode::Esc));

    // An unmapped customer: ranked suggestions with their reasons.
    app.reconcile.cursor = line_at(&app, "Redgum Wealth", EXO.1);
    send(&mut app, key(KeyCode::Enter));
    let s = screen(&app, 120, 40);
    assert!(
        s.contains("Not linked to a ConnectWise Manage record"),
        "{s}"
    );
    assert!(s.contains("1. City Wealth (score 75)"), "{s}");
    assert!(s.contains("2. Redgum Landscaping (score 15)"), "{s}");
    assert!(s.contains("its name shares the word 'wealth'"), "{s}");
    assert!(
        s.contains("Dicker Data calls it REDGUM WEALTH PTY LTD"),
        "{s}"
    );
    snap("detail_unmapped_customer", &app);
    send(&mut app, key(KeyCode::Esc));

    // An unmapped product: the PSA products that may be its billing.
    app.reconcile.cursor = line_at(&app, "Hunter Property", APPS.1);
    send(&mut app, key(KeyCode::Enter));
    let s = screen(&app, 120, 40);
    assert!(s.contains("Product mapping"), "{s}");
    assert!(
        s.contains("1. Microsoft 365 Apps for business licences (legacy item)"),
        "{s}"
    );
    assert!(
        s.contains("it charges 40 seats, exactly the seats this line is short"),
        "{s}"
    );
    snap("detail_suggestions", &app);
}

#[test]
fn g_groups_by_customer_with_a_header_per_customer() {
    let mut app = ran(Ok(rich_sample()));
    assert!(
        reconcile::hints(&app.reconcile)
            .iter()
            .any(|h| h.key == "g" && h.action == "group")
    );
    send(&mut app, key(KeyCode::Char('g')));
    assert!(app.reconcile.grouped);
    // Customers in name order, each header before its lines (in-line lines hidden).
    let rows: Vec<String> = app
        .reconcile
        .view
        .iter()
        .map(|r| match r {
            Row::Group(g) => format!("# {}", app.reconcile.groups[*g].name),
            Row::Line(i) => app.reconcile.result.as_ref().unwrap().lines[*i]
                .product_name
                .clone(),
        })
        .collect();
    assert_eq!(
        rows,
        [
            "# Acme Plumbing",
            BP.1,
            "# Harbour Dental",
            BP.1,
            BB.1,
            "# Hunter Property",
            APPS.1,
            "# Redgum Wealth",
            EXO.1,
        ]
    );
    // The header counts the customer's lines (in line too), its mismatches and its money.
    let harbour = &app.reconcile.groups[1];
    assert_eq!(
        (harbour.lines, harbour.mismatched, harbour.money.to_string()),
        (3, 2, "122.40".to_string())
    );
    let s = screen(&app, 120, 40);
    assert!(
        s.contains("▾ Harbour Dental · 3 lines, 2 mismatched · 122.40 a month at risk"),
        "{s}"
    );
    snap("grouped", &app);

    // Enter on a header collapses it, and again expands it; the cursor stays on it.
    app.reconcile.cursor = 2;
    assert_eq!(
        app.reconcile.current_group().unwrap().name,
        "Harbour Dental"
    );
    assert!(
        reconcile::hints(&app.reconcile)
            .iter()
            .any(|h| h.key == "Enter" && h.action == "collapse")
    );
    send(&mut app, key(KeyCode::Enter));
    assert_eq!(app.reconcile.view.len(), 7, "its two lines are folded");
    assert_eq!(app.reconcile.cursor, 2);
    assert!(app.reconcile.detail.is_none(), "a header has no detail");
    let s = screen(&app, 120, 40);
    assert!(s.contains("▸ Harbour Dental"), "{s}");
    snap("grouped_collapsed", &app);
    // Still collapsed after a sort and with in-line lines shown.
    send(&mut app, key(KeyCode::Char('a')));
    assert_eq!(
        app.reconcile.current_group().unwrap().name,
        "Harbour Dental"
    );
    assert!(app.reconcile.groups.iter().any(|g| g.collapsed));
    send(&mut app, key(KeyCode::Enter));
    assert!(!app.reconcile.groups.iter().any(|g| g.collapsed));
    send(&mut app, key(KeyCode::Char('a')));

    // Sorting by money: customers by their money, lines by theirs within each customer.
    for _ in 0..3 {
        send(&mut app, key(KeyCode::Char('s')));
    }
    assert_eq!(app.reconcile.sort, Sort::Money);
    let names: Vec<&str> = app
        .reconcile
        .groups
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "Harbour Dental",
            "Acme Plumbing",
            "Hunter Property",
            "Redgum Wealth"
        ]
    );
    assert_eq!(app.reconcile.view[0], Row::Group(0));
    let first_two: Vec<String> = app.reconcile.view[1..3]
        .iter()
        .map(|r| match r {
            Row::Line(i) => app.reconcile.result.as_ref().unwrap().lines[*i]
                .monthly_impact
                .to_string(),
            Row::Group(_) => "header".into(),
        })
        .collect();
    assert_eq!(first_two, ["108.00", "14.40"]);
    // Reversed: the smallest first, groups too.
    send(&mut app, key(KeyCode::Char('S')));
    assert_eq!(app.reconcile.groups[0].name, "Redgum Wealth");
    assert_eq!(app.reconcile.groups.last().unwrap().name, "Harbour Dental");

    // The filter still works: only the customers with a matching line, counted by it.
    send(&mut app, key(KeyCode::Char('/')));
    type_text(&mut app, "premium");
    let names: Vec<&str> = app
        .reconcile
        .groups
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(names, ["Acme Plumbing", "Harbour Dental"]);
    assert!(app.reconcile.groups.iter().all(|g| g.lines == 1));
    send(&mut app, key(KeyCode::Enter));

    // g again: the flat table, the cursor on the same line.
    app.reconcile.cursor = 3;
    let current = app.reconcile.current().unwrap().customer_name.clone();
    send(&mut app, key(KeyCode::Char('g')));
    assert!(!app.reconcile.grouped);
    assert!(app.reconcile.view.iter().all(|r| matches!(r, Row::Line(_))));
    assert_eq!(app.reconcile.current().unwrap().customer_name, current);
}

// ----- the table fills while the run fetches -------------------------------------------------

fn progress(done: usize, found: usize) -> Msg {
    Msg::Reconcile(reconcile::Msg::Progress {
        generation: 1,
        progress: FetchProgress {
            customers_found: found,
            customers_listed: true,
            customers_done: done,
            dicker_data_done: true,
            psa_done: true,
        },
    })
}

/// The rich sample restricted to `customers`, as a partial result.
fn partial(customers: &[&str]) -> Msg {
    let full = rich_sample();
    let lines: Vec<Line> = full
        .lines
        .into_iter()
        .filter(|l| customers.contains(&l.customer_name.as_str()))
        .collect();
    let mut r = recon(lines);
    r.summary.unmapped_customers = usize::from(customers.contains(&"Redgum Wealth"));
    Msg::Reconcile(reconcile::Msg::Partial {
        generation: 1,
        result: Arc::new(r),
        customers: customers.len(),
    })
}

#[test]
fn the_table_fills_while_fetching_and_the_cursor_stays_on_its_line() {
    let mut app = on_tab();
    send(&mut app, key(KeyCode::Enter));
    assert!(app.reconcile.running());
    send(&mut app, progress(0, 5));
    let s = screen(&app, 80, 24);
    assert!(s.contains("The table fills as customers arrive"), "{s}");

    send(&mut app, progress(2, 5));
    send(&mut app, partial(&["Harbour Dental", "Redgum Wealth"]));
    assert!(app.reconcile.partial);
    let s = screen(&app, 120, 40);
    assert!(s.contains("Fetching: 2 of 5 customers"), "{s}");
    assert!(
        s.contains("So far: 4 lines audited from 2 of 5 customers, 1 in line, 3 with mismatches"),
        "{s}"
    );
    let narrow = screen(&app, 80, 24);
    assert!(
        narrow.contains("122.40 a month at risk"),
        "wrapped, not cut: {narrow}"
    );
    assert!(s.contains("Redgum Wealth"), "{s}");
    assert!(
        !s.contains("e/E export"),
        "no export of a half-filled table: {s}"
    );
    snap("running_partial", &app);

    // The person moves to Redgum Wealth's line; customers arrive above and below it.
    app.reconcile.cursor = line_at(&app, "Redgum Wealth", EXO.1);
    assert_eq!(app.reconcile.cursor, 2);
    let screen_row = app.reconcile.cursor - app.reconcile.offset.get();
    send(&mut app, progress(4, 5));
    send(
        &mut app,
        partial(&[
            "Harbour Dental",
            "Redgum Wealth",
            "Acme Plumbing",
            "Hunter Property",
        ]),
    );
    let current = app.reconcile.current().unwrap();
    assert_eq!(
        (
            current.customer_name.as_str(),
            current.product_name.as_str()
        ),
        ("Redgum Wealth", EXO.1),
        "the cursor stays on its line"
    );
    assert_eq!(app.reconcile.cursor, 4, "two lines arrived above it");
    assert_eq!(
        app.reconcile.cursor - app.reconcile.offset.get(),
        screen_row,
        "and it stays on the same screen row"
    );
    screen(&app, 120, 40);

    // Its explanation stays open on the same line as more arrive, and when the run ends.
    send(&mut app, key(KeyCode::Enter));
    assert!(screen(&app, 120, 40).contains("Redgum Wealth — Exchange Online"));
    send(&mut app, progress(5, 5));
    send(
        &mut app,
        partial(&[
            "Harbour Dental",
            "Redgum Wealth",
            "Acme Plumbing",
            "Hunter Property",
            "Zenith Accounting",
        ]),
    );
    assert!(screen(&app, 120, 40).contains("Redgum Wealth — Exchange Online"));
    send(
        &mut app,
        Msg::Reconcile(reconcile::Msg::Finished {
            generation: 1,
            result: Ok(Arc::new(rich_sample())),
            rotated: None,
            xero: None,
        }),
    );
    assert!(!app.reconcile.partial);
    assert_eq!(app.reconcile.phase, Phase::Done);
    let s = screen(&app, 120, 40);
    assert!(s.contains("Redgum Wealth — Exchange Online"), "{s}");
    send(&mut app, key(KeyCode::Esc));
    assert_eq!(
        app.reconcile.current().unwrap().customer_name,
        "Redgum Wealth"
    );
    assert!(screen(&app, 120, 40).contains("e/E export"));
}

#[test]
fn partial_results_of_an_old_run_or_after_the_end_are_ignored() {
    let mut app = ran(Ok(sample()));
    // Late partials of the finished run change nothing.
    send(&mut app, partial(&["Harbour Dental"]));
    assert!(!app.reconcile.partial);
    assert_eq!(app.reconcile.result.as_ref().unwrap().lines.len(), 4);
    // A new run: partials of the previous generation are dropped.
    send(&mut app, key(KeyCode::Char('r')));
    assert_eq!(app.reconcile.generation, 2);
    send(&mut app, partial(&["Harbour Dental"]));
    assert!(!app.reconcile.partial);
}

#[test]
fn a_failed_run_goes_back_to_the_last_complete_result_and_export_waits_for_the_end() {
    let mut app = ran(Ok(sample()));
    send(&mut app, key(KeyCode::Char('r')));
    let generation = app.reconcile.generation;
    let p = |customers: &[&str]| match partial(customers) {
        Msg::Reconcile(reconcile::Msg::Partial {
            result, customers, ..
        }) => Msg::Reconcile(reconcile::Msg::Partial {
            generation,
            result,
            customers,
        }),
        _ => unreachable!(),
    };
    send(&mut app, p(&["Harbour Dental"]));
    assert!(app.reconcile.partial);
    assert!(
        send(&mut app, key(KeyCode::Char('e'))).is_empty(),
        "no export while fetching"
    );
    assert!(screen(&app, 80, 24).contains("export once it has finished"));
    send(
        &mut app,
        Msg::Reconcile(reconcile::Msg::Finished {
            generation,
            result: Err("Partner Center timed out. Try again.".into()),
            rotated: None,
            xero: None,
        }),
    );
    assert!(!app.reconcile.partial);
    assert_eq!(app.reconcile.result.as_ref().unwrap().lines.len(), 4);
    // A first run that fails leaves nothing half-filled either.
    let mut app = on_tab();
    send(&mut app, key(KeyCode::Enter));
    send(&mut app, partial(&["Harbour Dental"]));
    send(
        &mut app,
        Msg::Reconcile(reconcile::Msg::Finished {
            generation: 1,
            result: Err("Dicker Data timed out. Try again.".into()),
            rotated: None,
            xero: None,
        }),
    );
    assert!(app.reconcile.result.is_none());
    assert!(screen(&app, 80, 24).contains("Failed: Dicker Data timed out"));
}

// ----- a run against the simulated demo world ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_the_demo_world_finds_the_planted_statuses() {
    let today = Utc::now().date_naive();
    let mut world = cspsync::sim::generate::demo(today);
    world.app.device_code_interval_secs = 1;
    let env = SimEnv::start(world, true).await;
    let mut setup = env.setup.clone();
    setup.settings.psa.kind = PsaKindSetting::ConnectWise;
    let (tx, mut rx) = mpsc::channel(100_000);
    let cmd = Cmd::Run {
        generation: 3,
        setup: Box::new(setup),
    };
    tokio::time::timeout(
        Duration::from_secs(240),
        reconcile::run(cmd, env.svc.clone(), tx),
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
            Msg::Reconcile(reconcile::Msg::Partial { generation, .. }) => {
                assert_eq!(generation, 3);
                assert!(finished.is_none(), "no partial after the final result");
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
    for p in &env.world.planted {
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

// ----- partial reconciliations against generated worlds ---------------------------------------

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Fetch a generated world with a listener, then replay the events: at every stage the
/// partial reconciliation has exactly the final lines of the customers in — the same counts,
/// statuses, money and explanations — and nothing for the customers still to come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_reconciliation_is_the_final_one_restricted_to_the_customers_in() {
    use cspsync::demo::PsaKind;
    use cspsync::domain::{self, Options};
    let today = Utc::now().date_naive();
    for (seed, psa) in [
        (3, PsaKind::ConnectWise),
        (4, PsaKind::Autotask),
        (5, PsaKind::Xero),
    ] {
        let mut w = cspsync::sim::generate::generate(&cspsync::sim::generate::GenOptions::new(
            60, seed, today,
        ));
        w.app.device_code_interval_secs = 1;
        // A tenant only Dicker Data knows (Partner Center does not list it): its line shows
        // once the customer list is complete, never before.
        let mut stray = w.dicker_data.subscriptions[0].clone();
        stray.tenant_id = "0d0d0d0d-1111-4222-8333-444444444444".into();
        stray.company_name = "STRAY TENANT PTY LTD".into();
        stray.subscription_reference = "5A5A5A5A".into();
        stray.subscription_id = "9e9e9e9e-0000-4000-8000-000000000001".into();
        stray.status = "ACTIVE".into();
        w.dicker_data.subscriptions.push(stray);
        let sim = support::sim::start(&w).await;
        let sources = cspsync::demo::connect(&sim, &w, psa).await.unwrap();
        let (ptx, _prx) = tokio::sync::watch::channel(FetchProgress::default());
        let (etx, mut erx) = mpsc::unbounded_channel();
        let snap = fetch::fetch_streaming(&sources, &ptx, Some(&etx))
            .await
            .unwrap();
        drop(etx);
        let mut events = Vec::new();
        while let Some(e) = erx.recv().await {
            events.push(e);
        }
        let customers = events
            .iter()
            .filter(|e| matches!(e, FetchEvent::Customer(_)))
            .count();
        assert_eq!(customers, snap.customers.len(), "one event per customer");
        let opts = Options {
            now: Some(snap.finished),
            ..Options::default()
        };
        let full = domain::reconcile(&snap, &opts).unwrap();
        assert!(full.summary.mismatched > 0, "the world has mismatches");
        // Customers Partner Center does not list (known from Dicker Data only).
        let dd_only: std::collections::BTreeSet<String> = full
            .mapping
            .customers
            .iter()
            .filter(|c| !c.at_microsoft)
            .map(|c| lower(&c.tenant_id))
            .collect();

        assert_eq!(dd_only.len(), 1, "the stray tenant");
        // Replayed with the customers last, so every stage from none to all of them is seen
        // (in a real fetch they may arrive before or after Dicker Data and the PSA).
        let (firsts, customer_events): (Vec<&FetchEvent>, Vec<&FetchEvent>) = events
            .iter()
            .partition(|e| !matches!(e, FetchEvent::Customer(_)));
        for listing in [true, false] {
            let mut live = LiveFetch::new(snap.started);
            for e in &firsts {
                if listing || !matches!(e, FetchEvent::ListingDone) {
                    live.apply((*e).clone());
                }
            }
            let mut checked = 0;
            for fetched in 0..=customers {
                if fetched > 0 {
                    live.apply(customer_events[fetched - 1].clone());
                }
                if fetched % 9 != 0 && fetched != customers {
                    continue;
                }
                // Dicker Data and the PSA are in: a partial reconciliation can be made.
                let p = live.partial(snap.finished).unwrap();
                assert_eq!(p.snapshot.customers.len(), fetched);
                assert_eq!(p.pending.len(), customers - fetched);
                assert_eq!(p.listing_complete, listing);
                let part = domain::reconcile_partial(&p, &opts).unwrap();
                let done: std::collections::BTreeSet<String> = p
                    .snapshot
                    .customers
                    .iter()
                    .map(|c| lower(&c.customer.id))
                    .collect();
                let expected: Vec<&Line> = full
                    .lines
                    .iter()
                    .filter(|l| {
                        let t = lower(&l.customer_tenant_id);
                        done.contains(&t) || (listing && dd_only.contains(&t))
                    })
                    .collect();
                let got: Vec<&Line> = part.lines.iter().collect();
                assert_eq!(
                    got.len(),
                    expected.len(),
                    "{psa:?} listing {listing}, {} customers in",
                    done.len()
                );
                for (g, x) in got.iter().zip(&expected) {
                    assert_eq!(g, x, "{psa:?}: a line differs from the final one");
                }
                if listing {
                    // The mapping already sees every customer listed.
                    assert_eq!(
                        part.summary.unmapped_customers,
                        full.summary.unmapped_customers
                    );
                }
                checked += 1;
            }
            assert_eq!(checked, customers / 9 + 1 + usize::from(customers % 9 != 0));
        }
        // Everything in and the listing complete: the partial is the final reconciliation.
        let mut live = LiveFetch::new(snap.started);
        for e in events {
            live.apply(e);
        }
        let p = live.partial(snap.finished).unwrap();
        assert!(p.pending.is_empty());
        let part = domain::reconcile_partial(&p, &opts).unwrap();
        assert_eq!(part.lines, full.lines);
        assert_eq!(part.summary, full.summary);
    }
}

/// The run against a world with latency: the lines arrive in partial results before the final
/// one, at most four a second, each line already as the end shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_sends_the_lines_so_far_while_it_fetches() {
    let env = SimEnv::start(support::sim::generated(80, 9), true).await;
    support::sim::faults(&env.sim, "latency=25ms").await;
    let mut setup = env.setup.clone();
    setup.settings.psa.kind = PsaKindSetting::ConnectWise;
    let (tx, mut rx) = mpsc::channel(100_000);
    let cmd = Cmd::Run {
        generation: 7,
        setup: Box::new(setup),
    };
    let t0 = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(240),
        reconcile::run(cmd, env.svc.clone(), tx),
    )
    .await
    .expect("the run finishes");
    let took = t0.elapsed();
    let mut partials: Vec<Arc<Reconciliation>> = Vec::new();
    let mut finished = None;
    while let Ok(m) = rx.try_recv() {
        match m {
            Msg::Reconcile(reconcile::Msg::Partial {
                generation,
                result,
                customers,
            }) => {
                assert_eq!(generation, 7);
                assert!(customers <= env.world.customers.len());
                assert!(finished.is_none(), "no partial after the final result");
                partials.push(result);
            }
            Msg::Reconcile(reconcile::Msg::Finished { result, .. }) => finished = Some(result),
            _ => {}
        }
    }
    let full = finished.expect("a result").expect("the run succeeds");
    assert!(!partials.is_empty(), "lines arrived before the end");
    let most = (took.as_secs_f64() * 4.0).ceil() as usize + 1;
    assert!(
        partials.len() <= most,
        "{} partials in {took:?}: at most 4 a second",
        partials.len()
    );
    let key = |l: &Line| {
        (
            l.customer_tenant_id.clone(),
            l.product_id.clone(),
            l.term,
            l.billing,
        )
    };
    let finals: BTreeMap<_, &Line> = full.lines.iter().map(|l| (key(l), l)).collect();
    let mut last = 0;
    for p in &partials {
        assert!(p.lines.len() >= last, "lines only ever arrive");
        last = p.lines.len();
        for l in &p.lines {
            let f = finals.get(&key(l)).unwrap_or_else(|| {
                panic!(
                    "{} {} is not in the final result",
                    l.customer_name, l.product_name
                )
            });
            assert_eq!(
                (
                    &l.statuses,
                    l.distributor_qty,
                    l.microsoft_qty,
                    l.assigned,
                    l.psa_qty
                ),
                (
                    &f.statuses,
                    f.distributor_qty,
                    f.microsoft_qty,
                    f.assigned,
                    f.psa_qty
                ),
                "{} {}: no mismatch invented",
                l.customer_name,
                l.product_name
            );
        }
    }
    assert!(
        partials.first().unwrap().lines.len() < full.lines.len(),
        "the first partial has only some of the lines"
    );
}

/// The manual mapping decisions saved in the settings are used by the tab's run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_uses_the_saved_mapping_decisions() {
    use cspsync::domain::{CustomerOverride, PsaCustomerRef};
    let env = SimEnv::start(cspsync::sim::generate::demo(Utc::now().date_naive()), true).await;
    let mut setup = env.setup.clone();
    setup.settings.psa.kind = PsaKindSetting::ConnectWise;
    // The demo's unmapped customer, linked by hand to the company the suggestion names.
    let redgum = env
        .world
        .customers
        .iter()
        .find(|c| c.company_name.starts_with("Redgum Wealth"))
        .unwrap()
        .tenant_id
        .clone();
    let city = env
        .world
        .connectwise
        .companies
        .iter()
        .find(|c| c.name == "City Wealth")
        .unwrap()
        .id;
    setup.settings.mapping.customers = vec![CustomerOverride {
        tenant_id: redgum.clone(),
        psa: Some(PsaCustomerRef::ConnectwiseCompany(city)),
    }];
    let (tx, mut rx) = mpsc::channel(100_000);
    reconcile::run(
        Cmd::Run {
            generation: 1,
            setup: Box::new(setup),
        },
        env.svc.clone(),
        tx,
    )
    .await;
    let mut result = None;
    while let Ok(m) = rx.try_recv() {
        if let Msg::Reconcile(reconcile::Msg::Finished { result: r, .. }) = m {
            result = Some(r.unwrap());
        }
    }
    let r = result.expect("a result");
    let link = r
        .mapping
        .customers
        .iter()
        .find(|c| c.tenant_id == redgum)
        .unwrap();
    assert!(
        matches!(
            &link.psa,
            PsaLink::Mapped {
                reason: MatchReason::Manual,
                ..
            }
        ),
        "{:?}",
        link.psa
    );
    assert_eq!(r.summary.unmapped_customers, 0);
    assert!(
        r.lines
            .iter()
            .filter(|l| l.customer_tenant_id == redgum)
            .all(|l| !l.has(Status::UnmappedCustomer))
    );
}

// ----- the Mapping view, opened from the table ---------------------------------------------

#[test]
fn m_opens_the_mapping_view_and_an_accepted_suggestion_is_saved_and_reconciled_again() {
    let mut app = ran(Ok(rich_sample()));
    assert!(screen(&app, 80, 24).contains("m mapping"));
    send(&mut app, key(KeyCode::Char('m')));
    let s = screen(&app, 120, 40);
    assert!(s.contains("Redgum Wealth"), "{s}");
    assert!(s.contains("City Wealth"), "{s}");
    // The view has the keys: a digit picks a suggestion there (7: none), never a tab.
    let fx = send(&mut app, key(KeyCode::Char('7')));
    assert_eq!(app.tab, Tab::Reconcile);
    assert!(fx.is_empty(), "{fx:?}");
    // The unmapped customer is listed first; `a` accepts its top suggestion.
    let fx = send(&mut app, key(KeyCode::Char('a')));
    assert!(
        fx.iter().any(|e| matches!(e, Effect::Save(_))),
        "the decision is saved: {fx:?}"
    );
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Reconcile(Cmd::Run { .. }))),
        "and the reconciliation runs again: {fx:?}"
    );
    // Who decided what goes to the audit log.
    let audited = fx.iter().find_map(|e| match e {
        Effect::Audit(ev) if ev.action == cspsync::audit::MAPPING_CHANGED => Some(ev.clone()),
        _ => None,
    });
    let audited = audited.unwrap_or_else(|| panic!("no audit record: {fx:?}"));
    let line = cspsync::audit::describe(&audited);
    assert!(line.contains("City Wealth"), "{line}");
    assert!(
        line.contains("1 customer and 0 product decision(s)"),
        "{line}"
    );
    let saved = &app.setup.settings.mapping.customers;
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert_eq!(saved[0].tenant_id, tenant("Redgum Wealth"));
    assert_eq!(saved[0].psa, Some(PsaCustomerRef::ConnectwiseCompany(512)));
    // Esc (twice at most: a filter first) closes the view; the table is back.
    send(&mut app, key(KeyCode::Esc));
    if app.reconcile.mapping.is_some() {
        send(&mut app, key(KeyCode::Esc));
    }
    assert!(app.reconcile.mapping.is_none());
    assert!(screen(&app, 80, 24).contains("unmapped:"));
}
