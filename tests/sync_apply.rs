//! Applying sync plans (issue 6 §2, §3, §6) through the real clients against the simulated
//! world over loopback TCP; every effect is checked in the sim's state dump
//! (`GET {control}/state`), every expectation read from the world the test generated.
//!
//! The plans here are built by hand from the world, so each PSA's writes are exercised on
//! their own; `sync_e2e` (below, with the planner) goes fetch → reconcile → plan → apply.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Datelike, NaiveDate, Utc};
use cspsync::api::error::Api;
use cspsync::audit::Actor;
use cspsync::demo::{self, PsaKind};
use cspsync::domain::sync::{
    ApplyEvent, ApplyProgress, BillingStyle, Caution, CustomerState, Op, Outcome, Plan,
    PlanSummary, Write, XeroInvoiceKind, XeroLine,
};
use cspsync::engine::apply::{self, ApplyContext, ApplyReport, Hook, HookAction, HookPoint, Stage};
use cspsync::engine::fetch::{PsaClient, Sources};
use cspsync::engine::journal::Journal;
use cspsync::sim::{SimHandle, World};
use rust_decimal::Decimal;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

mod support;

// ---------------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------------

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn world(customers: usize, seed: u64) -> World {
    support::sim::generated(customers, seed)
}

struct Env {
    handle: SimHandle,
    world: World,
    sources: Sources,
}

impl Env {
    async fn start(psa: PsaKind, customers: usize) -> Env {
        Env::with_world(psa, world(customers, 42)).await
    }

    async fn with_world(psa: PsaKind, world: World) -> Env {
        let handle = support::sim::start(&world).await;
        let sources = demo::connect(&handle, &world, psa).await.unwrap();
        Env {
            handle,
            world,
            sources,
        }
    }

    fn psa(&self) -> &PsaClient {
        self.sources.psa.as_ref().unwrap()
    }

    async fn state(&self) -> Value {
        support::sim::state(&self.handle).await
    }

    async fn faults(&self, spec: &str) {
        support::sim::faults(&self.handle, spec).await
    }

    /// Injected failures the sim counted (429s, 5xx, dropped connections).
    async fn injected(&self) -> u64 {
        let stats: Value = reqwest::get(format!("{}/stats", self.handle.urls().control))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats
            .as_object()
            .unwrap()
            .values()
            .map(|s| {
                ["throttled", "server_errors", "dropped"]
                    .iter()
                    .map(|k| s[*k].as_u64().unwrap_or(0))
                    .sum::<u64>()
            })
            .sum()
    }
}

fn actor() -> Actor {
    Actor::new("test-oid", "tester@msp.example")
}

fn dec(n: i64) -> Decimal {
    Decimal::from(n)
}

fn write(
    key: &str,
    tenant: &str,
    system: Api,
    op: Op,
    before: Option<i64>,
    after: Option<i64>,
) -> Write {
    Write {
        key: key.to_string(),
        customer_tenant_id: tenant.to_string(),
        customer_name: format!("Customer {tenant}"),
        system,
        target: key.to_string(),
        product: "test product".to_string(),
        stock_code: None,
        before: before.map(dec),
        after: after.map(dec),
        monthly_change: Decimal::ZERO,
        cautions: Vec::new(),
        op,
    }
}

fn plan(psa: Api, writes: Vec<Write>) -> Plan {
    let t = today();
    let start = t.with_day(1).unwrap();
    Plan {
        psa,
        created_at: Utc::now(),
        style: BillingStyle::default(),
        period_start: start,
        period_end: start
            .checked_add_months(chrono::Months::new(1))
            .unwrap()
            .pred_opt()
            .unwrap(),
        summary: PlanSummary {
            writes: writes.len(),
            ..PlanSummary::default()
        },
        writes,
        skipped: Vec::new(),
    }
}

/// What an apply sent out, with its report.
struct Applied {
    report: ApplyReport,
    events: Vec<ApplyEvent>,
}

/// Apply every write of `plan`, collecting the events; with `cancel_after`, cancel once that
/// many writes were reported (`Some(0)`: cancelled before it starts).
async fn run(
    psa: &PsaClient,
    plan: &Plan,
    ctx: ApplyContext,
    cancel_after: Option<usize>,
) -> Applied {
    let (tx, mut rx) = mpsc::channel(4096);
    let (ptx, _prx) = watch::channel(ApplyProgress::default());
    let (ctx_tx, crx) = watch::channel(cancel_after == Some(0));
    let selected = vec![true; plan.writes.len()];
    let collect = async {
        let mut events = Vec::new();
        let mut writes = 0;
        while let Some(e) = rx.recv().await {
            if matches!(e, ApplyEvent::Write { .. }) {
                writes += 1;
                if cancel_after == Some(writes) {
                    let _ = ctx_tx.send(true);
                }
            }
            events.push(e);
        }
        events
    };
    let (report, events) = tokio::join!(
        apply::apply(psa, plan, &selected, ctx, tx, &ptx, crx),
        collect
    );
    Applied { report, events }
}

fn memory_ctx() -> ApplyContext {
    ApplyContext::new(Arc::new(Journal::memory()), actor())
}

fn assert_all_done(r: &ApplyReport) {
    for (i, o) in r.outcomes.iter().enumerate() {
        assert!(
            matches!(o, Outcome::Done { .. }),
            "write {i}: {o:?}\n{r:#?}"
        );
    }
    assert!(r.all_succeeded());
}

// ---------------------------------------------------------------------------------------------
// Reading the state dump
// ---------------------------------------------------------------------------------------------

fn d(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.to_string().parse().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

/// ConnectWise additions as (agreement, product, quantity, cancelled date), sorted, ids and
/// timestamps left out; duplicates stay visible as repeated rows.
fn cw_rows(state: &Value) -> Vec<(u64, u64, Decimal, Option<String>)> {
    let mut rows: Vec<_> = state["world"]["connectwise"]["additions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agreement_id"].as_u64().unwrap(),
                a["product_id"].as_u64().unwrap(),
                d(&a["quantity"]),
                a["cancelled_date"].as_str().map(str::to_string),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn cw_addition(state: &Value, id: u64) -> &Value {
    state["world"]["connectwise"]["additions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"].as_u64() == Some(id))
        .unwrap()
}

/// Autotask: contract services (contract, service), adjustments (contract, service, change,
/// date) and the units in force today per (contract, service).
type AtRows = (
    Vec<(u64, u64)>,
    Vec<(u64, u64, i64, String)>,
    BTreeMap<(u64, u64), i64>,
);

fn at_rows(state: &Value) -> AtRows {
    let at = &state["world"]["autotask"];
    let services = support::sim::at_contract_services(state);
    let by_id: BTreeMap<u64, (u64, u64)> = at["contract_services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_u64().unwrap(),
                (
                    c["contract_id"].as_u64().unwrap(),
                    c["service_id"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    let adjustments = support::sim::at_adjustments(state);
    let t = today().to_string();
    let mut units: BTreeMap<(u64, u64), (String, i64)> = BTreeMap::new();
    for u in at["contract_service_units"].as_array().unwrap() {
        let (Some(s), Some(e)) = (u["start_date"].as_str(), u["end_date"].as_str()) else {
            continue;
        };
        if s > t.as_str() || e < t.as_str() {
            continue;
        }
        let key = by_id[&u["contract_service_id"].as_u64().unwrap()];
        let n = u["units"].as_i64().unwrap();
        let slot = units.entry(key).or_insert((s.to_string(), n));
        if s >= slot.0.as_str() {
            *slot = (s.to_string(), n);
        }
    }
    (
        services,
        adjustments,
        units.into_iter().map(|(k, (_, n))| (k, n)).collect(),
    )
}

/// Xero drafts cspsync made: (type, contact, reference or bill number, lines), sorted; the
/// generated ids and sales-invoice numbers left out.
type XeroRow = (
    String,
    String,
    String,
    String,
    Vec<(String, Decimal, Decimal, String)>,
);

fn xero_rows(state: &Value) -> Vec<XeroRow> {
    let mut rows: Vec<XeroRow> = state["world"]["xero"]["organisations"][0]["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "DRAFT")
        .map(|i| {
            let t = i["invoice_type"].as_str().unwrap().to_string();
            let r = if t == "ACCPAY" {
                i["invoice_number"].as_str().unwrap_or("").to_string()
            } else {
                i["reference"].as_str().unwrap_or("").to_string()
            };
            let lines = i["line_items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        l["description"].as_str().unwrap().to_string(),
                        d(&l["quantity"]),
                        d(&l["unit_amount"]),
                        l["account_code"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            (
                t,
                i["contact_id"].as_str().unwrap().to_string(),
                r,
                i["date"].as_str().unwrap_or("").to_string(),
                lines,
            )
        })
        .collect();
    rows.sort();
    rows
}

// ---------------------------------------------------------------------------------------------
// Hand-built plans, one per PSA
// ---------------------------------------------------------------------------------------------

/// ConnectWise: a quantity change on every open agreement's first addition, a new addition of a
/// catalogue item the agreement lacks, and a cancellation of its second addition where it has
/// one. One customer per agreement (its company).
fn cw_plan(w: &World, agreements: usize) -> Plan {
    let cw = &w.connectwise;
    let mut writes = Vec::new();
    let t = today();
    for a in cw
        .agreements
        .iter()
        .filter(|a| !a.cancelled_flag && a.agreement_status == "Active")
        .take(agreements)
    {
        let tenant = format!("cw-company-{}", a.company_id);
        let adds: Vec<_> = cw
            .additions
            .iter()
            .filter(|x| x.agreement_id == a.id)
            .collect();
        if let Some(first) = adds.iter().find(|x| x.cancelled_date.is_none()) {
            let q = first.quantity + dec(2);
            writes.push(write(
                &format!("cw:{}:{}:qty:{q}", a.id, first.id),
                &tenant,
                Api::ConnectWise,
                Op::CwSetQuantity {
                    agreement_id: a.id,
                    addition_id: first.id,
                    quantity: q,
                },
                Some(i64::try_from(first.quantity).unwrap()),
                Some(i64::try_from(q).unwrap()),
            ));
        }
        let item = cw
            .catalog
            .iter()
            .find(|c| !c.inactive_flag && !adds.iter().any(|x| x.product_id == c.id))
            .unwrap();
        writes.push(write(
            &format!("cw:{}:add:{}", a.id, item.id),
            &tenant,
            Api::ConnectWise,
            Op::CwCreateAddition {
                agreement_id: a.id,
                catalog_item_id: item.id,
                quantity: dec(5),
                unit_price: Some(item.price),
                unit_cost: Some(item.cost),
                description: item.description.clone(),
                effective_date: t.with_day(1).unwrap(),
            },
            None,
            Some(5),
        ));
        if let Some(second) = adds.iter().filter(|x| x.cancelled_date.is_none()).nth(1) {
            writes.push(write(
                &format!("cw:{}:{}:cancel", a.id, second.id),
                &tenant,
                Api::ConnectWise,
                Op::CwCancelAddition {
                    agreement_id: a.id,
                    addition_id: second.id,
                    cancelled_date: t,
                },
                Some(i64::try_from(second.quantity).unwrap()),
                None,
            ));
        }
    }
    plan(Api::ConnectWise, writes)
}

/// Autotask: +3 units on every contract's first service from the start of this month, and a
/// service the contract lacks added, then given 4 units.
fn at_plan(w: &World, contracts: usize) -> Plan {
    let at = &w.autotask;
    let t = today();
    let month = t.with_day(1).unwrap();
    let mut writes = Vec::new();
    for k in at
        .contracts
        .iter()
        .filter(|k| k.contract_type == 7 && k.start_date.is_some_and(|s| s <= month))
        .filter(|k| k.end_date.is_none_or(|e| e >= t))
        .take(contracts)
    {
        let tenant = format!("at-company-{}", k.company_id);
        let mine: Vec<_> = at
            .contract_services
            .iter()
            .filter(|s| s.contract_id == k.id)
            .collect();
        if let Some(cs) = mine.first() {
            let current = at
                .contract_service_units
                .iter()
                .filter(|u| u.contract_service_id == cs.id)
                .filter(|u| {
                    u.start_date.is_some_and(|s| s <= t) && u.end_date.is_some_and(|e| e >= t)
                })
                .map(|u| u.units)
                .next_back()
                .unwrap_or(0);
            writes.push(write(
                &format!("at:{}:{}:units:{}", k.id, cs.service_id, current + 3),
                &tenant,
                Api::Autotask,
                Op::AtAdjustUnits {
                    contract_id: k.id as i64,
                    service_id: cs.service_id as i64,
                    contract_service_id: Some(cs.id as i64),
                    unit_change: 3,
                    effective_date: month,
                    adjusted_unit_price: None,
                },
                Some(current),
                Some(current + 3),
            ));
        }
        let service = at
            .services
            .iter()
            .find(|s| s.is_active && !mine.iter().any(|m| m.service_id == s.id))
            .unwrap();
        writes.push(write(
            &format!("at:{}:{}:add", k.id, service.id),
            &tenant,
            Api::Autotask,
            Op::AtAddContractService {
                contract_id: k.id as i64,
                service_id: service.id as i64,
                unit_price: Some(service.unit_price),
                invoice_description: service.name.clone(),
            },
            None,
            Some(0),
        ));
        writes.push(write(
            &format!("at:{}:{}:units:4", k.id, service.id),
            &tenant,
            Api::Autotask,
            Op::AtAdjustUnits {
                contract_id: k.id as i64,
                service_id: service.id as i64,
                contract_service_id: None,
                unit_change: 4,
                effective_date: month,
                adjusted_unit_price: Some(service.unit_price),
            },
            Some(0),
            Some(4),
        ));
    }
    plan(Api::Autotask, writes)
}

/// Xero: per customer contact, a DRAFT sales invoice (two lines, Revenue 200) and a DRAFT bill
/// to Dicker Data (Expense 310).
fn xero_plan(w: &World, customers: usize, period: &str) -> Plan {
    let org = &w.xero.organisations[0];
    let supplier = org
        .contacts
        .iter()
        .find(|c| c.is_supplier && c.contact_status == "ACTIVE")
        .unwrap();
    let t = today();
    let date = t.with_day(1).unwrap();
    let mut writes = Vec::new();
    for c in org
        .contacts
        .iter()
        .filter(|c| c.is_customer && c.contact_status == "ACTIVE")
        .take(customers)
    {
        let reference = format!("cspsync {period} {}", &c.contact_id[..8]);
        let line = |desc: &str, q: i64, p: i64, acct: &str| XeroLine {
            description: format!("{desc} ({})", c.name),
            item_code: None,
            quantity: dec(q),
            unit_amount: Decimal::new(p, 2),
            account_code: acct.to_string(),
        };
        writes.push(write(
            &format!("xero:{period}:{}:accrec", c.contact_id),
            &c.contact_id,
            Api::Xero,
            Op::XeroDraft {
                kind: XeroInvoiceKind::SalesInvoice,
                contact_id: c.contact_id.clone(),
                invoice_id: None,
                reference: reference.clone(),
                date,
                due_date: date + chrono::Duration::days(14),
                lines: vec![
                    line("Microsoft 365 Business Premium", 12, 3290, "200"),
                    line("Exchange Online Plan 1", 3, 590, "200"),
                ],
            },
            None,
            None,
        ));
        writes.push(write(
            &format!("xero:{period}:{}:accpay", c.contact_id),
            &c.contact_id,
            Api::Xero,
            Op::XeroDraft {
                kind: XeroInvoiceKind::Bill,
                contact_id: supplier.contact_id.clone(),
                invoice_id: None,
                reference,
                date,
                due_date: date + chrono::Duration::days(30),
                lines: vec![line(
                    "Dicker Data: Microsoft 365 Business Premium",
                    12,
                    2895,
                    "310",
                )],
            },
            None,
            None,
        ));
    }
    plan(Api::Xero, writes)
}

// ---------------------------------------------------------------------------------------------
// Each PSA's writes land exactly
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn connectwise_writes_land_in_the_sim() {
    let env = Env::start(PsaKind::ConnectWise, 12).await;
    let p = cw_plan(&env.world, 4);
    assert!(p.writes.len() >= 8, "{}", p.writes.len());
    let before = env.state().await;
    let applied = run(env.psa(), &p, memory_ctx(), None).await;
    assert_all_done(&applied.report);
    let after = env.state().await;
    let added = cw_rows(&after).len() - cw_rows(&before).len();
    let creates = p
        .writes
        .iter()
        .filter(|w| matches!(w.op, Op::CwCreateAddition { .. }))
        .count();
    assert_eq!(added, creates, "one addition per create, no more");
    for (w, o) in p.writes.iter().zip(&applied.report.outcomes) {
        let Outcome::Done { id } = o else {
            unreachable!()
        };
        let id: u64 = id.parse().unwrap();
        let a = cw_addition(&after, id);
        match &w.op {
            Op::CwSetQuantity {
                addition_id,
                quantity,
                ..
            } => {
                assert_eq!(id, *addition_id);
                assert_eq!(d(&a["quantity"]), *quantity);
                assert!(a["cancelled_date"].is_null());
            }
            Op::CwCreateAddition {
                agreement_id,
                catalog_item_id,
                quantity,
                unit_price,
                effective_date,
                ..
            } => {
                assert_eq!(a["agreement_id"].as_u64(), Some(*agreement_id));
                assert_eq!(a["product_id"].as_u64(), Some(*catalog_item_id));
                assert_eq!(d(&a["quantity"]), *quantity);
                assert_eq!(d(&a["unit_price"]), unit_price.unwrap());
                assert_eq!(a["bill_customer"], "Billable");
                assert_eq!(
                    a["effective_date"].as_str(),
                    Some(effective_date.to_string().as_str())
                );
                assert!(a["cancelled_date"].is_null());
            }
            Op::CwCancelAddition {
                addition_id,
                cancelled_date,
                ..
            } => {
                assert_eq!(id, *addition_id);
                assert_eq!(
                    a["cancelled_date"].as_str(),
                    Some(cancelled_date.to_string().as_str())
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // Events: started, one per write, each customer running then done, finished.
    let writes = applied
        .events
        .iter()
        .filter(|e| matches!(e, ApplyEvent::Write { .. }))
        .count();
    assert_eq!(writes, p.writes.len());
    let done: Vec<_> = applied
        .events
        .iter()
        .filter_map(|e| match e {
            ApplyEvent::Customer {
                tenant_id,
                state: CustomerState::Done,
            } => Some(tenant_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), 4);
    assert!(
        matches!(applied.events.last(), Some(ApplyEvent::Finished { done, failed: 0, .. }) if *done == p.writes.len())
    );
}

#[tokio::test]
async fn autotask_writes_land_in_the_sim() {
    let env = Env::start(PsaKind::Autotask, 12).await;
    let p = at_plan(&env.world, 4);
    assert!(p.writes.len() >= 9, "{}", p.writes.len());
    let (services0, adjustments0, units0) = at_rows(&env.state().await);
    assert!(adjustments0.is_empty());
    let applied = run(env.psa(), &p, memory_ctx(), None).await;
    assert_all_done(&applied.report);
    let (services, adjustments, units) = at_rows(&env.state().await);
    let month = today().with_day(1).unwrap().to_string();
    let mut want_adjustments = Vec::new();
    let mut want_services = services0.clone();
    for w in &p.writes {
        match &w.op {
            Op::AtAdjustUnits {
                contract_id,
                service_id,
                unit_change,
                ..
            } => {
                let key = (*contract_id as u64, *service_id as u64);
                want_adjustments.push((key.0, key.1, *unit_change, month.clone()));
                let before = units0.get(&key).copied().unwrap_or(0);
                assert_eq!(units[&key], before + unit_change, "{key:?}");
                assert_eq!(Decimal::from(units[&key]), w.after.unwrap());
            }
            Op::AtAddContractService {
                contract_id,
                service_id,
                ..
            } => {
                want_services.push((*contract_id as u64, *service_id as u64));
            }
            other => panic!("{other:?}"),
        }
    }
    want_adjustments.sort();
    want_services.sort();
    assert_eq!(
        adjustments, want_adjustments,
        "exactly the adjustments planned"
    );
    assert_eq!(
        services, want_services,
        "exactly one new contract service each"
    );
}

#[tokio::test]
async fn xero_drafts_land_in_the_sim_in_few_requests() {
    let env = Env::start(PsaKind::Xero, 12).await;
    let p = xero_plan(&env.world, 12, "2026-11");
    let customers = p.writes.len() / 2;
    assert!(customers >= 8, "{customers}");
    let drafts0 = xero_rows(&env.state().await);
    let applied = run(env.psa(), &p, memory_ctx(), None).await;
    assert_all_done(&applied.report);
    // Every customer's invoice in one request, then every bill in another (§7.6 batches).
    assert_eq!(applied.report.requests, 2, "{:?}", applied.report);
    let drafts = xero_rows(&env.state().await);
    assert_eq!(drafts.len(), drafts0.len() + p.writes.len());
    for w in &p.writes {
        let Op::XeroDraft {
            kind,
            contact_id,
            reference,
            date,
            lines,
            ..
        } = &w.op
        else {
            unreachable!()
        };
        let t = match kind {
            XeroInvoiceKind::SalesInvoice => "ACCREC",
            XeroInvoiceKind::Bill => "ACCPAY",
        };
        let want_lines: Vec<_> = lines
            .iter()
            .map(|l| {
                (
                    l.description.clone(),
                    l.quantity,
                    l.unit_amount,
                    l.account_code.clone(),
                )
            })
            .collect();
        let found: Vec<_> = drafts
            .iter()
            .filter(|r| r.0 == t && r.1 == *contact_id && r.2 == *reference)
            .collect();
        assert_eq!(found.len(), 1, "{t} {reference}");
        assert_eq!(found[0].3, date.to_string());
        assert_eq!(found[0].4, want_lines);
    }
}

// ---------------------------------------------------------------------------------------------
// Idempotency: the journal, faults, cancel, crashes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_second_apply_sends_nothing_again() {
    let env = Env::start(PsaKind::ConnectWise, 12).await;
    let p = cw_plan(&env.world, 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let ctx = || ApplyContext::new(Arc::new(Journal::open_path(&path).unwrap()), actor());
    let first = run(env.psa(), &p, ctx(), None).await;
    assert_all_done(&first.report);
    let state = cw_rows(&env.state().await);
    let second = run(env.psa(), &p, ctx(), None).await;
    assert_eq!(
        second.report.already_done,
        p.writes.len(),
        "{:?}",
        second.report
    );
    assert_eq!(second.report.requests, 0);
    assert_eq!(cw_rows(&env.state().await), state);
    // The ids recorded the first time are reported again.
    for (a, b) in first.report.outcomes.iter().zip(&second.report.outcomes) {
        let (Outcome::Done { id: x }, Outcome::AlreadyDone { id: y }) = (a, b) else {
            panic!("{a:?} {b:?}")
        };
        assert_eq!(x, y);
    }
}

#[tokio::test]
async fn cautions_are_applied_only_when_confirmed() {
    let env = Env::start(PsaKind::ConnectWise, 12).await;
    let mut p = cw_plan(&env.world, 2);
    p.writes[0].cautions.push(Caution::OutsideCancelWindow);
    let not = run(env.psa(), &p, memory_ctx(), None).await;
    assert_eq!(
        not.report.outcomes[0],
        Outcome::Skipped {
            reason: apply::SKIP_NEEDS_CONFIRMATION.into()
        }
    );
    assert!(!not.report.all_succeeded());
    let yes = run(env.psa(), &p, memory_ctx().confirming_cautions(true), None).await;
    assert!(
        matches!(yes.report.outcomes[0], Outcome::Done { .. }),
        "{:?}",
        yes.report
    );
}

#[tokio::test]
async fn a_failed_write_skips_the_rest_of_its_customer_only() {
    let env = Env::start(PsaKind::ConnectWise, 12).await;
    let mut p = cw_plan(&env.world, 3);
    // The first customer's first write names an addition that does not exist.
    let Op::CwSetQuantity { addition_id, .. } = &mut p.writes[0].op else {
        panic!()
    };
    *addition_id = 1;
    let first_customer = p.writes[0].customer_tenant_id.clone();
    let r = run(env.psa(), &p, memory_ctx(), None).await.report;
    assert!(
        matches!(r.outcomes[0], Outcome::Failed { .. }),
        "{:?}",
        r.outcomes[0]
    );
    for (w, o) in p.writes.iter().zip(&r.outcomes).skip(1) {
        if w.customer_tenant_id == first_customer {
            assert_eq!(
                o,
                &Outcome::Skipped {
                    reason: apply::SKIP_EARLIER_FAILED.into()
                }
            );
        } else {
            assert!(matches!(o, Outcome::Done { .. }), "{o:?}");
        }
    }
    assert_eq!(r.failed, 1);
}

/// The PSA state after a clean apply of `p` on a fresh sim.
async fn clean_state(psa: PsaKind, p_of: fn(&World) -> Plan) -> Value {
    let env = Env::start(psa, 12).await;
    let p = p_of(&env.world);
    let r = run(env.psa(), &p, memory_ctx(), None).await.report;
    assert!(r.all_succeeded(), "{r:?}");
    env.state().await
}

fn cw_big(w: &World) -> Plan {
    cw_plan(w, 12)
}
fn at_big(w: &World) -> Plan {
    at_plan(w, 12)
}
fn xero_big(w: &World) -> Plan {
    xero_plan(w, 40, "2026-11")
}

fn same_psa_state(psa: PsaKind, a: &Value, b: &Value) {
    match psa {
        PsaKind::ConnectWise => assert_eq!(cw_rows(a), cw_rows(b)),
        PsaKind::Autotask => assert_eq!(at_rows(a), at_rows(b)),
        PsaKind::Xero => assert_eq!(xero_rows(a), xero_rows(b)),
        PsaKind::None => {}
    }
}

/// Apply `p` under `faults`; with `reruns`, apply again (same journal) while writes remain
/// failed, as an operator would. The state must end as a clean apply's. Returns the faults
/// the sim injected.
async fn faulty_apply_matches_clean(
    psa: PsaKind,
    p_of: fn(&World) -> Plan,
    faults: &str,
    reruns: usize,
) -> u64 {
    let clean = clean_state(psa, p_of).await;
    let env = Env::start(psa, 12).await;
    let p = p_of(&env.world);
    env.faults(faults).await;
    let journal = Arc::new(Journal::memory());
    let ctx = || ApplyContext::new(journal.clone(), actor());
    let mut r = run(env.psa(), &p, ctx(), None).await.report;
    for _ in 0..reruns {
        if r.all_succeeded() {
            break;
        }
        r = run(env.psa(), &p, ctx(), None).await.report;
    }
    env.faults("").await;
    assert!(r.all_succeeded(), "{faults}: {r:#?}");
    same_psa_state(psa, &env.state().await, &clean);
    env.injected().await
}

#[tokio::test]
async fn faults_end_in_the_same_state_as_a_clean_apply() {
    let spec = "429=0.1,5xx=0.05,drop=0.01";
    let mut injected = 0;
    for (psa, p_of) in [
        (PsaKind::ConnectWise, cw_big as fn(&World) -> Plan),
        (PsaKind::Autotask, at_big),
        (PsaKind::Xero, xero_big),
    ] {
        injected += faulty_apply_matches_clean(psa, p_of, spec, 0).await;
    }
    assert!(injected > 0, "no fault was injected at all");
}

#[tokio::test]
async fn heavy_faults_on_every_write_still_converge() {
    // Far more failures than the brief's mix, so every recovery path runs: lost answers to
    // creates (5xx on a write, dropped connections) are checked in the PSA and resent. At
    // these rates a write can fail even after its retries; the operator's re-run then
    // completes it, and nothing is ever duplicated.
    for (psa, p_of, spec) in [
        (
            PsaKind::ConnectWise,
            cw_big as fn(&World) -> Plan,
            "connectwise.5xx=0.3,connectwise.drop=0.1,seed=7",
        ),
        (
            PsaKind::Autotask,
            at_big,
            "autotask.5xx=0.3,autotask.drop=0.1,seed=7",
        ),
        (
            PsaKind::Xero,
            xero_big,
            "xero-api.5xx=0.4,xero-api.drop=0.2,seed=7",
        ),
    ] {
        let injected = faulty_apply_matches_clean(psa, p_of, spec, 3).await;
        // Xero sends the whole plan in two requests (one per round), so fewer dice are cast.
        let least = if psa == PsaKind::Xero { 1 } else { 4 };
        assert!(
            injected >= least,
            "{psa:?}: only {injected} fault(s) injected"
        );
    }
}

#[tokio::test]
async fn cancel_leaves_no_customer_half_done_and_a_rerun_completes() {
    for (psa, p_of) in [
        (PsaKind::ConnectWise, cw_big as fn(&World) -> Plan),
        (PsaKind::Autotask, at_big),
    ] {
        let clean = clean_state(psa, p_of).await;
        let env = Env::start(psa, 12).await;
        let p = p_of(&env.world);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let ctx = || ApplyContext::new(Arc::new(Journal::open_path(&path).unwrap()), actor());
        let first = run(env.psa(), &p, ctx(), Some(2)).await;
        let r = &first.report;
        assert!(r.cancelled, "{psa:?}");
        assert!(r.skipped > 0 && r.done >= 2, "{psa:?}: {r:?}");
        assert!(
            first
                .events
                .iter()
                .any(|e| matches!(e, ApplyEvent::Cancelling))
        );
        // Per customer: all its writes done, or none sent.
        let mut per: BTreeMap<&str, Vec<&Outcome>> = BTreeMap::new();
        for (w, o) in p.writes.iter().zip(&r.outcomes) {
            per.entry(&w.customer_tenant_id).or_default().push(o);
        }
        for (c, os) in &per {
            let done = os.iter().filter(|o| o.is_ok()).count();
            assert!(
                done == 0 || done == os.len(),
                "{psa:?} {c} half done: {os:?}"
            );
            if done == 0 {
                assert!(os.iter().all(
                    |o| matches!(o, Outcome::Skipped { reason } if reason == apply::SKIP_CANCELLED)
                ));
            }
        }
        let second = run(env.psa(), &p, ctx(), None).await.report;
        assert!(second.all_succeeded(), "{second:?}");
        assert_eq!(second.already_done, r.done);
        same_psa_state(psa, &env.state().await, &clean);
    }
}

#[tokio::test]
async fn xero_cancel_stops_customers_that_had_not_started() {
    let env = Env::start(PsaKind::Xero, 12).await;
    let p = xero_plan(&env.world, 40, "2026-11");
    let r = run(env.psa(), &p, memory_ctx(), Some(0)).await.report;
    assert!(r.cancelled);
    assert_eq!(r.skipped, p.writes.len());
    assert_eq!(r.requests, 0);
}

/// Run an apply in its own task that halts (as a crash would) at the `k`-th hook call of
/// `stage`, then abort it: the PSA may have the write, the journal not its answer.
async fn crash_at(
    psa: &PsaClient,
    p: &Plan,
    path: &std::path::Path,
    stage: Stage,
    k: usize,
) -> bool {
    let calls = Arc::new(AtomicUsize::new(0));
    let (halted_tx, halted_rx) = tokio::sync::oneshot::channel::<()>();
    let halted_tx = std::sync::Mutex::new(Some(halted_tx));
    let c = calls.clone();
    let hook: Hook = Arc::new(move |h: &HookPoint<'_>| {
        if h.stage != stage {
            return HookAction::Continue;
        }
        if c.fetch_add(1, Ordering::SeqCst) + 1 >= k {
            if let Some(tx) = halted_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            return HookAction::Halt;
        }
        HookAction::Continue
    });
    let journal = Arc::new(Journal::open_path(path).unwrap());
    let ctx = ApplyContext::new(journal, actor()).with_hook(hook);
    let psa = psa.clone();
    let plan = p.clone();
    let task = tokio::spawn(async move { run(&psa, &plan, ctx, None).await.report });
    let halted = tokio::time::timeout(std::time::Duration::from_secs(120), halted_rx)
        .await
        .is_ok_and(|r| r.is_ok());
    if halted {
        // Let the other workers run on a little, as a real process would until it dies.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    task.abort();
    let _ = task.await;
    halted
}

async fn crashes_converge(psa: PsaKind, p_of: fn(&World) -> Plan, points: &[(Stage, usize)]) {
    let clean = clean_state(psa, p_of).await;
    for &(stage, k) in points {
        let env = Env::start(psa, 12).await;
        let p = p_of(&env.world);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let crashed = crash_at(env.psa(), &p, &path, stage, k).await;
        assert!(
            crashed,
            "{psa:?}: the apply finished before the crash point {stage:?} {k}"
        );
        // A new apply (a new process: the journal read from the disk).
        let ctx = ApplyContext::new(Arc::new(Journal::open_path(&path).unwrap()), actor());
        let r = run(env.psa(), &p, ctx, None).await.report;
        assert!(r.all_succeeded(), "{psa:?} {stage:?} {k}: {r:#?}");
        same_psa_state(psa, &env.state().await, &clean);
    }
}

#[tokio::test]
async fn connectwise_crashes_anywhere_converge() {
    crashes_converge(
        PsaKind::ConnectWise,
        cw_big,
        &[
            (Stage::AfterResponse, 1),
            (Stage::AfterResponse, 2),
            (Stage::BeforeSend, 5),
            (Stage::AfterResponse, 9),
            (Stage::AfterResponse, 20),
        ],
    )
    .await;
}

#[tokio::test]
async fn autotask_crashes_anywhere_converge() {
    crashes_converge(
        PsaKind::Autotask,
        at_big,
        &[
            (Stage::AfterResponse, 1),
            (Stage::AfterResponse, 2),
            (Stage::AfterResponse, 3),
            (Stage::BeforeSend, 6),
            (Stage::AfterResponse, 14),
        ],
    )
    .await;
}

#[tokio::test]
async fn xero_crashes_anywhere_converge() {
    crashes_converge(
        PsaKind::Xero,
        xero_big,
        &[
            (Stage::BeforeSend, 1),
            (Stage::AfterResponse, 1),
            (Stage::AfterResponse, 2),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// End to end with the planner: fetch → reconcile → plan → apply → fetch again
// ---------------------------------------------------------------------------------------------

use cspsync::domain::{Options, Reconciliation, Status};
use cspsync::engine::fetch::{self, FetchProgress};

/// A world whose PSA is off for most customers, so the plan has every kind of write: every
/// open ConnectWise addition one seat up and every third one gone (new additions); every
/// Autotask unit record one up and every fourth contract service gone (services added, then
/// adjusted); every Xero invoice line one up (new drafts).
fn drifted(customers: usize, psa: PsaKind) -> World {
    let mut w = cspsync::engine::bench_sync::one_seat_off(&world(customers, 42), psa);
    match psa {
        PsaKind::ConnectWise => {
            let mut n = 0;
            w.connectwise.additions.retain(|a| {
                n += 1;
                a.cancelled_date.is_some() || n % 3 != 0
            });
        }
        PsaKind::Autotask => {
            let gone: Vec<u64> = w
                .autotask
                .contract_services
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 4 == 3)
                .map(|(_, c)| c.id)
                .collect();
            support::sim::remove_contract_services(&mut w, &gone);
        }
        _ => {}
    }
    w
}

async fn plan_now(env: &Env) -> (Reconciliation, Plan) {
    let (tx, _rx) = watch::channel(FetchProgress::default());
    let snap = fetch::fetch(&env.sources, &tx).await.unwrap();
    let prices = cspsync::engine::pipeline::distributor_prices(&env.sources.dicker_data, &snap)
        .await
        .unwrap();
    let rec = cspsync::domain::reconcile(
        &snap,
        &Options {
            prices: prices.clone(),
            ..Options::default()
        },
    )
    .unwrap();
    let opts = cspsync::run::demo_sync_options(&env.world);
    let p = cspsync::domain::plan::plan(&rec, &snap, &prices, &opts, today()).unwrap();
    (rec, p)
}

fn confirmed(journal: Arc<Journal>) -> ApplyContext {
    ApplyContext::new(journal, actor()).confirming_cautions(true)
}

#[tokio::test]
async fn planned_writes_bring_every_psa_in_line_and_a_fresh_plan_is_empty() {
    for psa in [PsaKind::ConnectWise, PsaKind::Autotask, PsaKind::Xero] {
        let env = Env::with_world(psa, drifted(12, psa)).await;
        let (rec, p) = plan_now(&env).await;
        let kinds: std::collections::BTreeSet<&str> =
            p.writes.iter().map(|w| w.op.kind()).collect();
        match psa {
            PsaKind::ConnectWise => {
                assert!(
                    kinds.contains("change quantity") && kinds.contains("add addition"),
                    "{kinds:?}"
                )
            }
            PsaKind::Autotask => {
                assert!(
                    kinds.contains("adjust units") && kinds.contains("add contract service"),
                    "{kinds:?}"
                )
            }
            _ => assert!(
                kinds.contains("draft invoice") && kinds.contains("draft bill"),
                "{kinds:?}"
            ),
        }
        // The PSA lines the plan touches.
        let off: Vec<(String, String)> = rec
            .lines
            .iter()
            .filter(|l| l.has(Status::PsaUnderbilled) || l.has(Status::PsaOverbilled))
            .filter(|l| {
                p.writes.iter().any(|w| {
                    w.customer_tenant_id
                        .eq_ignore_ascii_case(&l.customer_tenant_id)
                        && (w.stock_code.is_none() || w.stock_code == l.stock_code)
                })
            })
            .map(|l| (l.customer_tenant_id.clone(), l.product_id.clone()))
            .collect();
        assert!(!off.is_empty(), "{psa:?}");
        let r = run(env.psa(), &p, confirmed(Arc::new(Journal::memory())), None)
            .await
            .report;
        assert!(r.all_succeeded(), "{psa:?}: {r:#?}");
        let (rec2, again) = plan_now(&env).await;
        assert!(again.writes.is_empty(), "{psa:?}: {:#?}", again.writes);
        for (tenant, product) in &off {
            for l in rec2
                .lines
                .iter()
                .filter(|l| &l.customer_tenant_id == tenant && &l.product_id == product)
            {
                assert!(
                    !l.has(Status::PsaUnderbilled) && !l.has(Status::PsaOverbilled),
                    "{psa:?} {tenant} {product}: {:?}",
                    l.statuses
                );
            }
        }
    }
}

/// The state after planning and applying `world` uninterrupted.
async fn planned_clean_state(psa: PsaKind, world: &World) -> Value {
    let env = Env::with_world(psa, world.clone()).await;
    let (_, p) = plan_now(&env).await;
    let r = run(env.psa(), &p, confirmed(Arc::new(Journal::memory())), None)
        .await
        .report;
    assert!(r.all_succeeded(), "{r:?}");
    env.state().await
}

/// Crash an apply of the plan at each point, then plan again from fresh PSA state and apply
/// with the journal read back from the disk: the same PSA state as an uninterrupted apply, and
/// a plan after that has nothing left.
async fn replanned_crashes_converge(psa: PsaKind, points: &[(Stage, usize)]) {
    let w = drifted(12, psa);
    let clean = planned_clean_state(psa, &w).await;
    for &(stage, k) in points {
        let env = Env::with_world(psa, w.clone()).await;
        let (_, p) = plan_now(&env).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        assert!(
            crash_at_confirmed(env.psa(), &p, &path, stage, k).await,
            "{psa:?}: the apply ended before {stage:?} #{k}"
        );
        let (_, again) = plan_now(&env).await;
        assert!(again.writes.len() <= p.writes.len());
        let r = run(
            env.psa(),
            &again,
            confirmed(Arc::new(Journal::open_path(&path).unwrap())),
            None,
        )
        .await
        .report;
        assert!(r.all_succeeded(), "{psa:?} {stage:?} {k}: {r:#?}");
        same_psa_state(psa, &env.state().await, &clean);
        let (_, last) = plan_now(&env).await;
        assert!(
            last.writes.is_empty(),
            "{psa:?} {stage:?} {k}: {:#?}",
            last.writes
        );
    }
}

async fn crash_at_confirmed(
    psa: &PsaClient,
    p: &Plan,
    path: &std::path::Path,
    stage: Stage,
    k: usize,
) -> bool {
    // Cautioned writes are part of the plan being crashed too.
    let mut p = p.clone();
    for w in &mut p.writes {
        w.cautions.clear();
    }
    crash_at(psa, &p, path, stage, k).await
}

#[tokio::test]
async fn connectwise_replanned_after_crashes_converges() {
    replanned_crashes_converge(
        PsaKind::ConnectWise,
        &[
            (Stage::AfterResponse, 1),
            (Stage::BeforeSend, 3),
            (Stage::AfterResponse, 7),
        ],
    )
    .await;
}

#[tokio::test]
async fn autotask_replanned_after_crashes_converges() {
    replanned_crashes_converge(
        PsaKind::Autotask,
        &[
            (Stage::AfterResponse, 1),
            (Stage::AfterResponse, 2),
            (Stage::BeforeSend, 4),
            (Stage::AfterResponse, 8),
        ],
    )
    .await;
}

#[tokio::test]
async fn xero_replanned_after_crashes_converges() {
    replanned_crashes_converge(
        PsaKind::Xero,
        &[
            (Stage::BeforeSend, 1),
            (Stage::AfterResponse, 1),
            (Stage::AfterResponse, 2),
        ],
    )
    .await;
}
