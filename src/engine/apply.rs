//! Applying a sync plan (issue 6 §2–§4): every selected write sent to the PSA, customers side
//! by side, each customer's writes one after another in plan order, idempotent across retries,
//! crashes and re-runs, every outcome journalled and audited.
//!
//! - **Order and failure.** A customer's writes depend on each other (a contract service before
//!   its adjustment, an invoice with its bill), so they are sent in plan order, one at a time;
//!   the first that fails leaves the customer's remaining writes `Skipped("an earlier write
//!   for this customer failed")`.
//! - **Concurrency.** Customers are worked on by as many workers as the PSA's limit lets run at
//!   once (ConnectWise: cspsync's own cap of 10, §5.5 documents none; Autotask: 3 threads per
//!   object endpoint, §6.5 — every write goes to `Contracts`; the clients' limiters enforce the
//!   same numbers). Xero drafts are **batched**: customers go in groups of
//!   [`xero::INVOICE_BATCH`]; a group sends its customers' first writes in one
//!   `POST /Invoices` (§7.6), then their second writes in the next, 5 groups at a time per
//!   organisation (§7.8), so 1,000 customers' invoices and bills take 40 requests instead of
//!   2,000.
//! - **Cancel** (`cancel` turns true): no customer starts any more (for Xero: no group of
//!   customers); a customer already started finishes its writes (so none is left half-done);
//!   the rest are `Skipped("cancelled")`.
//! - **Idempotency** (§3): before a create is sent its `sending` record is flushed to the
//!   [`Journal`]; a key whose last record is `done` is never sent again
//!   ([`Outcome::AlreadyDone`]); a create left `sending` by a crash, or whose answer was lost
//!   (dropped connection, 5xx on a write, a cut-off body), is looked up in the PSA before it is
//!   sent again — ConnectWise: the agreement's additions for the product without a
//!   cancelledDate; Autotask: the contract's service, and for an adjustment (which cannot be
//!   queried, §6.3) the units in force on its effective date against the journal's before and
//!   after; Xero: the draft by Reference (ACCREC) or InvoiceNumber (ACCPAY), and every request
//!   carries an `Idempotency-Key` (§7.3).
//! - **Retries** on 429/5xx honour Retry-After inside the HTTP core; the core reports them only
//!   as counters, so the apply watches those counters and reports each increase as an
//!   [`ApplyEvent::Retry`] (within half a second, not per request).
//! - **Cautions**: a write with cautions is sent only when the caller confirmed them
//!   ([`ApplyContext::confirm_cautions`]), else `Skipped("needs confirmation")`.
//! - **Audit** (§4): every selected write's outcome is appended to the audit log with the
//!   operator, then one `sync.apply` summary record.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::api::autotask::{
    self as at, AutotaskClient, ContractService, ContractServiceUnit, Filter, NewAdjustment, Query,
};
use crate::api::connectwise::{self as cw, BillCustomer, ConnectWiseClient, NewAddition};
use crate::api::error::{Api, ApiError, ErrorKind};
use crate::api::http::StatsSnapshot;
use crate::api::xero::{
    self, ContactRef, InvoiceQuery, InvoiceStatus, InvoiceType, LineAmountTypes, NewInvoice,
    NewLineItem, XeroClient,
};
use crate::audit::{self, Actor, Appender};
use crate::config::ConfigDir;
use crate::domain::sync::{
    ApplyEvent, ApplyProgress, CustomerState, Op, Outcome, Plan, Write, XeroInvoiceKind,
};
use crate::engine::fetch::PsaClient;
use crate::engine::journal::{Entry, Journal, State};

/// Why a write was not sent.
pub const SKIP_NOT_SELECTED: &str = "not selected";
pub const SKIP_NEEDS_CONFIRMATION: &str = "needs confirmation";
pub const SKIP_CANCELLED: &str = "cancelled";
pub const SKIP_EARLIER_FAILED: &str = "an earlier write for this customer failed";

/// Sends of one write (or batch) when its answer is lost and the PSA shows it was not applied.
const MAX_SENDS: u32 = 4;

/// Where a write is, for [`Hook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The `sending` record is on the disk; the request is about to leave.
    BeforeSend,
    /// The PSA answered (or the request failed); nothing about the answer is recorded yet.
    AfterResponse,
}

/// What [`Hook`] is told: the stage and the writes (indices into `Plan::writes`; a Xero
/// batch has several).
#[derive(Debug, Clone, Copy)]
pub struct HookPoint<'a> {
    pub stage: Stage,
    pub indices: &'a [usize],
}

/// What the apply does after a [`Hook`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAction {
    Continue,
    /// Stop this worker dead, as a crash would (it never returns: abort the apply's task).
    Halt,
}

/// A callback at each stage of each write, for tests that crash an apply at a chosen point
/// (e.g. right after a create was sent, before its answer is recorded). `None` in the app.
pub type Hook = Arc<dyn Fn(&HookPoint<'_>) -> HookAction + Send + Sync>;

/// What an apply needs besides the PSA client and the plan.
#[derive(Clone)]
pub struct ApplyContext {
    /// The journal ([`Journal::open`] on the data directory; [`Journal::memory`] in the demo,
    /// whose world starts afresh every run).
    pub journal: Arc<Journal>,
    /// Where the audit log is (`None`: no audit log, e.g. benchmarks).
    pub audit: Option<ConfigDir>,
    /// Who approved the apply (the signed-in operator).
    pub actor: Actor,
    /// The person confirmed the writes with cautions (decrease below the assigned seats,
    /// outside the NCE window); without it they are skipped.
    pub confirm_cautions: bool,
    /// Tests only.
    pub hook: Option<Hook>,
}

impl std::fmt::Debug for ApplyContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyContext")
            .field("journal", &self.journal.path())
            .field("audit", &self.audit)
            .field("actor", &self.actor)
            .field("confirm_cautions", &self.confirm_cautions)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl ApplyContext {
    pub fn new(journal: Arc<Journal>, actor: Actor) -> ApplyContext {
        ApplyContext {
            journal,
            audit: None,
            actor,
            confirm_cautions: false,
            hook: None,
        }
    }

    pub fn with_audit(mut self, dir: ConfigDir) -> ApplyContext {
        self.audit = Some(dir);
        self
    }

    pub fn confirming_cautions(mut self, yes: bool) -> ApplyContext {
        self.confirm_cautions = yes;
        self
    }

    pub fn with_hook(mut self, hook: Hook) -> ApplyContext {
        self.hook = Some(hook);
        self
    }
}

/// The result of an apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// One per write of the plan, in plan order.
    pub outcomes: Vec<Outcome>,
    /// Selected writes.
    pub selected: usize,
    pub done: usize,
    pub already_done: usize,
    pub failed: usize,
    /// Selected writes not sent (cancelled, needing confirmation, after a failure).
    pub skipped: usize,
    pub cancelled: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// HTTP attempts sent to the PSA (retries included).
    pub requests: u64,
    /// The journal or the audit log could not be written (each once).
    pub problems: Vec<String>,
}

impl ApplyReport {
    /// Every selected write is done (now or earlier).
    pub fn all_succeeded(&self) -> bool {
        self.done + self.already_done == self.selected
    }

    /// One line: `12 writes: 10 done, 1 already done, 1 failed, 0 skipped in 3.2 s`.
    pub fn summary_line(&self) -> String {
        let secs = (self.finished_at - self.started_at).num_milliseconds() as f64 / 1000.0;
        format!(
            "{} write(s): {} done, {} already done, {} failed, {} skipped{} in {secs:.1} s",
            self.selected,
            self.done,
            self.already_done,
            self.failed,
            self.skipped,
            if self.cancelled { " (cancelled)" } else { "" }
        )
    }
}

/// One customer's writes, in plan order.
#[derive(Debug, Clone)]
struct Customer {
    tenant: String,
    /// Selected writes still to be decided.
    work: Vec<usize>,
    /// Every selected write of the customer (those decided before anything is sent too).
    selected: Vec<usize>,
}

/// Apply the selected writes of `plan` (`selected[i]` for `plan.writes[i]`; missing = not
/// selected). Events and progress are sent as they happen; `cancel` turning true stops new
/// customers from starting. Never fails as a whole: every problem is an outcome.
pub async fn apply(
    psa: &PsaClient,
    plan: &Plan,
    selected: &[bool],
    ctx: ApplyContext,
    events: mpsc::Sender<ApplyEvent>,
    progress: &watch::Sender<ApplyProgress>,
    cancel: watch::Receiver<bool>,
) -> ApplyReport {
    let started_at = Utc::now();
    let stats0 = psa_stats(psa);
    let audit = ctx.audit.as_ref().map(Appender::open);
    let mut problems = Vec::new();
    let audit = match audit {
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            problems.push(e);
            None
        }
        None => None,
    };
    let run = Run {
        psa,
        plan,
        ctx: &ctx,
        events: &events,
        progress,
        cancel,
        outcomes: Mutex::new(vec![None; plan.writes.len()]),
        audit: Mutex::new(audit),
        problems: Mutex::new(problems),
        cancel_announced: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        wake: tokio::sync::Notify::new(),
    };
    let customers = run.prepare(selected);
    let selected_count = (0..plan.writes.len())
        .filter(|&i| selected.get(i).copied().unwrap_or(false))
        .count();
    progress.send_modify(|p| {
        *p = ApplyProgress {
            total: selected_count,
            finished: 0,
            failed: 0,
            started_at: Some(started_at),
        };
    });
    run.emit(ApplyEvent::Started {
        at: started_at,
        writes: selected_count,
        customers: customers.len(),
    })
    .await;
    // Writes decided before anything is sent (needing confirmation).
    run.flush_predecided(selected).await;

    let work = run.run_all(&customers);
    let monitor = run.watch_retries(stats0);
    tokio::join!(work, monitor);

    let outcomes: Vec<Outcome> = run
        .outcomes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|o| {
            o.clone().unwrap_or(Outcome::Skipped {
                reason: SKIP_NOT_SELECTED.to_string(),
            })
        })
        .collect();
    let mut report = ApplyReport {
        selected: selected_count,
        done: 0,
        already_done: 0,
        failed: 0,
        skipped: 0,
        cancelled: run.cancel_announced.load(Ordering::Relaxed),
        started_at,
        finished_at: Utc::now(),
        requests: psa_stats(psa).attempts.saturating_sub(stats0.attempts),
        problems: Vec::new(),
        outcomes,
    };
    for (i, o) in report.outcomes.iter().enumerate() {
        if !selected.get(i).copied().unwrap_or(false) {
            continue;
        }
        match o {
            Outcome::Done { .. } => report.done += 1,
            Outcome::AlreadyDone { .. } => report.already_done += 1,
            Outcome::Failed { .. } => report.failed += 1,
            Outcome::Skipped { .. } => report.skipped += 1,
        }
    }
    run.emit(ApplyEvent::Finished {
        at: report.finished_at,
        done: report.done,
        already_done: report.already_done,
        failed: report.failed,
        skipped: report.skipped,
        cancelled: report.cancelled,
    })
    .await;
    run.close(&report).await;
    report.problems = run
        .problems
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    report
}

/// The PSA client's request counters.
pub fn psa_stats(psa: &PsaClient) -> StatsSnapshot {
    match psa {
        PsaClient::ConnectWise(c) => c.stats(),
        PsaClient::Autotask(c) => c.stats(),
        PsaClient::Xero { client, .. } => client.stats(),
    }
}

/// Customers worked on at once for a PSA (see the module comment).
pub fn workers_for(psa: &PsaClient) -> usize {
    match psa {
        PsaClient::ConnectWise(c) => c.limits().global_concurrency.max(1),
        PsaClient::Autotask(_) => AutotaskClient::limits()
            .per_key_concurrency
            .unwrap_or(3)
            .max(1),
        PsaClient::Xero { .. } => XeroClient::limits().per_key_concurrency.unwrap_or(5).max(1),
    }
}

/// `items` (customer, write) failed with `error`.
fn failed_all(items: &[(usize, usize)], error: &str, out: &mut Vec<(usize, usize, Outcome)>) {
    out.extend(items.iter().map(|&(c, i)| {
        (
            c,
            i,
            Outcome::Failed {
                error: error.to_string(),
            },
        )
    }));
}

/// A failure whose write may have been applied all the same: a dropped connection or a
/// timeout after sending, a server error on a write (the core does not resend those), or an
/// answer that could not be read.
fn maybe_applied(e: &ApiError) -> bool {
    matches!(
        e.kind,
        ErrorKind::Transport {
            maybe_applied: true
        } | ErrorKind::Server
            | ErrorKind::Malformed
    )
}

fn error_text(e: &ApiError) -> String {
    let mut s = e.to_string();
    for d in e.details.iter().take(3) {
        s.push_str("; ");
        s.push_str(d);
    }
    s
}

struct Run<'a> {
    psa: &'a PsaClient,
    plan: &'a Plan,
    ctx: &'a ApplyContext,
    events: &'a mpsc::Sender<ApplyEvent>,
    progress: &'a watch::Sender<ApplyProgress>,
    cancel: watch::Receiver<bool>,
    outcomes: Mutex<Vec<Option<Outcome>>>,
    audit: Mutex<Option<Appender>>,
    problems: Mutex<Vec<String>>,
    cancel_announced: AtomicBool,
    finished: AtomicBool,
    wake: tokio::sync::Notify,
}

impl Run<'_> {
    async fn emit(&self, e: ApplyEvent) {
        // A closed receiver (the screen went away) does not stop the apply.
        let _ = self.events.send(e).await;
    }

    fn problem(&self, p: String) {
        let mut v = self.problems.lock().unwrap_or_else(|p| p.into_inner());
        if !v.contains(&p) {
            v.push(p);
        }
    }

    /// True once cancel was asked for (announced once).
    async fn cancelled(&self) -> bool {
        if !*self.cancel.borrow() {
            return false;
        }
        if !self.cancel_announced.swap(true, Ordering::Relaxed) {
            self.emit(ApplyEvent::Cancelling).await;
        }
        true
    }

    /// Decide what needs no PSA call (deselected, needing confirmation, a plan for another
    /// PSA) and group the rest by customer.
    fn prepare(&self, selected: &[bool]) -> Vec<Customer> {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        let mut customers: Vec<Customer> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let api = self.psa.api();
        for (i, w) in self.plan.writes.iter().enumerate() {
            let c = *index
                .entry(w.customer_tenant_id.to_ascii_lowercase())
                .or_insert_with(|| {
                    customers.push(Customer {
                        tenant: w.customer_tenant_id.clone(),
                        work: Vec::new(),
                        selected: Vec::new(),
                    });
                    customers.len() - 1
                });
            if !selected.get(i).copied().unwrap_or(false) {
                outcomes[i] = Some(Outcome::Skipped {
                    reason: SKIP_NOT_SELECTED.to_string(),
                });
                continue;
            }
            customers[c].selected.push(i);
            if w.system != api {
                outcomes[i] = Some(Outcome::Failed {
                    error: format!(
                        "this write is for {}, but the PSA connected is {}; plan again",
                        w.system, api
                    ),
                });
                continue;
            }
            if w.needs_confirmation() && !self.ctx.confirm_cautions {
                outcomes[i] = Some(Outcome::Skipped {
                    reason: SKIP_NEEDS_CONFIRMATION.to_string(),
                });
                continue;
            }
            customers[c].work.push(i);
        }
        // A customer with nothing to send still shows as finished (its writes were decided).
        customers.retain(|c| !c.selected.is_empty());
        customers
    }

    /// Report the outcomes `prepare` decided for selected writes.
    async fn flush_predecided(&self, selected: &[bool]) {
        let decided: Vec<(usize, Outcome)> = {
            let o = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
            o.iter()
                .enumerate()
                .filter(|(i, _)| selected.get(*i).copied().unwrap_or(false))
                .filter_map(|(i, x)| x.clone().map(|x| (i, x)))
                .collect()
        };
        for (i, o) in decided {
            self.report(i, o).await;
        }
    }

    /// Record a decided outcome: progress, audit, event.
    async fn report(&self, i: usize, outcome: Outcome) {
        let Some(w) = self.plan.writes.get(i) else {
            return;
        };
        let failed = matches!(outcome, Outcome::Failed { .. });
        self.progress.send_modify(|p| {
            p.finished += 1;
            if failed {
                p.failed += 1;
            }
        });
        {
            let mut audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(a) = audit.as_mut()
                && let Err(e) = a.append(&audit::sync_write_event(&self.ctx.actor, w, &outcome))
            {
                drop(audit);
                self.problem(e);
            }
        }
        self.emit(ApplyEvent::Write {
            at: Utc::now(),
            index: i,
            key: w.key.clone(),
            outcome,
        })
        .await;
    }

    async fn finish(&self, i: usize, outcome: Outcome) {
        {
            let mut o = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = o.get_mut(i) {
                *slot = Some(outcome.clone());
            }
        }
        self.report(i, outcome).await;
    }

    async fn customer_state(&self, tenant: &str, state: CustomerState) {
        self.emit(ApplyEvent::Customer {
            tenant_id: tenant.to_string(),
            state,
        })
        .await;
    }

    async fn close(&self, report: &ApplyReport) {
        let summary = audit::Event::now(
            self.ctx.actor.clone(),
            audit::SYNC_APPLY,
            serde_json::json!({
                "psa": self.psa.api().key(),
                "writes": report.selected,
                "done": report.done,
                "already_done": report.already_done,
                "failed": report.failed,
                "skipped": report.skipped,
                "cancelled": report.cancelled,
            }),
        );
        let result = {
            let mut audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
            match audit.as_mut() {
                Some(a) => a.append(&summary).and_then(|_| a.sync()),
                None => Ok(()),
            }
        };
        if let Err(e) = result {
            self.problem(e);
        }
        let journal = self.ctx.journal.clone();
        if let Err(e) = blocking(move || journal.flush()).await {
            self.problem(e);
        }
    }

    /// Append to the journal off the async threads (a durable record waits for the disk).
    async fn journal(&self, entry: Entry, durable: bool) -> Result<(), String> {
        let journal = self.ctx.journal.clone();
        let r = blocking(move || journal.record(entry, durable)).await;
        if let Err(e) = &r {
            self.problem(e.clone());
        }
        r
    }

    async fn journal_many(&self, entries: Vec<Entry>, durable: bool) -> Result<(), String> {
        let journal = self.ctx.journal.clone();
        let r = blocking(move || journal.record_many(entries, durable)).await;
        if let Err(e) = &r {
            self.problem(e.clone());
        }
        r
    }

    async fn hook(&self, stage: Stage, indices: &[usize]) {
        if let Some(h) = &self.ctx.hook
            && h(&HookPoint { stage, indices }) == HookAction::Halt
        {
            std::future::pending::<()>().await;
        }
    }

    /// Report retries and throttling the HTTP core counted, as they happen.
    async fn watch_retries(&self, start: StatsSnapshot) {
        let mut seen = start;
        loop {
            let done = self.finished.load(Ordering::Relaxed);
            let now = psa_stats(self.psa);
            let throttled = now.throttled.saturating_sub(seen.throttled);
            let retries = now.retries.saturating_sub(seen.retries);
            if retries > 0 || throttled > 0 {
                let api = self.psa.api();
                let message = if throttled > 0 {
                    format!(
                        "{api} asked cspsync to slow down {throttled} time(s) (HTTP 429); waiting as its Retry-After says, {retries} request(s) sent again"
                    )
                } else {
                    format!(
                        "{retries} request(s) to {api} sent again after a server error or a dropped connection"
                    )
                };
                self.emit(ApplyEvent::Retry {
                    at: Utc::now(),
                    message,
                })
                .await;
                seen = now;
            }
            if done {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    async fn run_all(&self, customers: &[Customer]) {
        match self.psa {
            PsaClient::Xero { client, tenant_id } => {
                self.run_xero(client, tenant_id, customers).await
            }
            _ => {
                let next = AtomicUsize::new(0);
                let workers = (0..workers_for(self.psa).min(customers.len().max(1))).map(|_| {
                    let next = &next;
                    async move {
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some(c) = customers.get(k) else { break };
                            self.run_customer(c).await;
                        }
                    }
                });
                futures_util::future::join_all(workers).await;
            }
        }
        self.finished.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    fn final_state(&self, c: &Customer) -> CustomerState {
        let o = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        let mine: Vec<&Outcome> = c
            .selected
            .iter()
            .filter_map(|&i| o.get(i).and_then(Option::as_ref))
            .collect();
        if mine.iter().any(|x| matches!(x, Outcome::Failed { .. })) {
            CustomerState::Failed
        } else if mine.iter().any(|x| x.is_ok()) {
            CustomerState::Done
        } else {
            CustomerState::Skipped
        }
    }

    /// ConnectWise and Autotask: one customer's writes, in order.
    async fn run_customer(&self, c: &Customer) {
        if c.work.is_empty() || self.cancelled().await {
            for &i in &c.work {
                self.finish(
                    i,
                    Outcome::Skipped {
                        reason: SKIP_CANCELLED.to_string(),
                    },
                )
                .await;
            }
            let st = self.final_state(c);
            self.customer_state(&c.tenant, st).await;
            return;
        }
        self.customer_state(&c.tenant, CustomerState::Running).await;
        let mut failed = false;
        let mut services: HashMap<(i64, i64), i64> = HashMap::new();
        for &i in &c.work {
            let outcome = if failed {
                Outcome::Skipped {
                    reason: SKIP_EARLIER_FAILED.to_string(),
                }
            } else {
                self.apply_one(i, &mut services).await
            };
            if matches!(outcome, Outcome::Failed { .. }) {
                failed = true;
            }
            self.finish(i, outcome).await;
        }
        let st = self.final_state(c);
        self.customer_state(&c.tenant, st).await;
    }

    /// One ConnectWise or Autotask write, idempotently.
    async fn apply_one(&self, i: usize, services: &mut HashMap<(i64, i64), i64>) -> Outcome {
        let w = &self.plan.writes[i];
        let creates = w.op.creates();
        let mut before = w.before;
        let mut after = w.after;
        match self.ctx.journal.last(&w.key) {
            Some(e) if e.state == State::Done => {
                return Outcome::AlreadyDone {
                    id: e.id.unwrap_or_default(),
                };
            }
            Some(e) if e.state == State::Sending && creates => {
                // An earlier apply sent this and never recorded the answer: ask the PSA.
                before = e.before.or(before);
                after = e.after.or(after);
                match self.verify(w, before, after, services).await {
                    Ok(Some(id)) => {
                        let _ = self
                            .journal(Entry::new(&w.key, State::Done).with_id(&id), false)
                            .await;
                        return Outcome::AlreadyDone { id };
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Outcome::Failed {
                            error: format!(
                                "an earlier apply sent this write without recording the answer, and checking {} for it failed: {}; nothing was sent, the next apply checks again",
                                w.system,
                                error_text(&e)
                            ),
                        };
                    }
                }
            }
            _ => {}
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sending = Entry::new(&w.key, State::Sending).with_quantities(before, after);
            if let Err(e) = self.journal(sending, creates).await {
                return Outcome::Failed {
                    error: format!("not sent: {e}"),
                };
            }
            self.hook(Stage::BeforeSend, &[i]).await;
            let result = self.send(w, services).await;
            self.hook(Stage::AfterResponse, &[i]).await;
            match result {
                Ok(id) => {
                    let _ = self
                        .journal(Entry::new(&w.key, State::Done).with_id(&id), false)
                        .await;
                    return Outcome::Done { id };
                }
                Err(e) if creates && maybe_applied(&e) => {
                    match self.verify(w, before, after, services).await {
                        Ok(Some(id)) => {
                            let _ = self
                                .journal(Entry::new(&w.key, State::Done).with_id(&id), false)
                                .await;
                            return Outcome::Done { id };
                        }
                        Ok(None) if attempt < MAX_SENDS => {
                            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt)))
                                .await;
                            continue;
                        }
                        Ok(None) => {
                            let text = error_text(&e);
                            let _ = self
                                .journal(Entry::new(&w.key, State::Failed).with_error(&text), false)
                                .await;
                            return Outcome::Failed { error: text };
                        }
                        Err(ve) => {
                            // Unknown whether it landed: the journal keeps `sending`.
                            return Outcome::Failed {
                                error: format!(
                                    "{}; checking whether it was applied failed too ({}); the next apply checks again before sending",
                                    error_text(&e),
                                    error_text(&ve)
                                ),
                            };
                        }
                    }
                }
                Err(e) => {
                    let text = error_text(&e);
                    if !maybe_applied(&e) {
                        let _ = self
                            .journal(Entry::new(&w.key, State::Failed).with_error(&text), false)
                            .await;
                    }
                    return Outcome::Failed { error: text };
                }
            }
        }
    }

    /// Send one ConnectWise or Autotask write; the id of the record written.
    async fn send(
        &self,
        w: &Write,
        services: &mut HashMap<(i64, i64), i64>,
    ) -> Result<String, ApiError> {
        match (&w.op, self.psa) {
            (
                Op::CwSetQuantity {
                    agreement_id,
                    addition_id,
                    quantity,
                },
                PsaClient::ConnectWise(c),
            ) => c
                .set_addition_quantity(*agreement_id, *addition_id, *quantity)
                .await
                .map(|a| a.id.to_string()),
            (
                Op::CwCreateAddition {
                    agreement_id,
                    catalog_item_id,
                    quantity,
                    unit_price,
                    unit_cost,
                    description,
                    effective_date,
                },
                PsaClient::ConnectWise(c),
            ) => {
                let new = NewAddition {
                    product: cw::Reference::id(*catalog_item_id),
                    bill_customer: BillCustomer::Billable,
                    quantity: *quantity,
                    unit_price: *unit_price,
                    unit_cost: *unit_cost,
                    // Midnight UTC of the day, ISO 8601 with `Z` (§5.3).
                    effective_date: effective_date.and_hms_opt(0, 0, 0).map(|d| d.and_utc()),
                    description: Some(description.clone()),
                    ..NewAddition::default()
                };
                c.create_addition(*agreement_id, &new)
                    .await
                    .map(|a| a.id.to_string())
            }
            (
                Op::CwCancelAddition {
                    agreement_id,
                    addition_id,
                    cancelled_date,
                },
                PsaClient::ConnectWise(c),
            ) => c
                .cancel_addition(*agreement_id, *addition_id, *cancelled_date)
                .await
                .map(|a| a.id.to_string()),
            (
                Op::AtAddContractService {
                    contract_id,
                    service_id,
                    unit_price,
                    invoice_description,
                },
                PsaClient::Autotask(c),
            ) => {
                // §6.3 ContractServices create: only the fields given (the catalogue price
                // applies when the plan names none).
                let mut body = serde_json::json!({
                    "contractID": contract_id,
                    "serviceID": service_id,
                    "invoiceDescription": invoice_description,
                });
                if let (Some(p), serde_json::Value::Object(m)) = (unit_price, &mut body) {
                    m.insert("unitPrice".into(), cw::decimal_json(*p));
                    m.insert("adjustedPrice".into(), cw::decimal_json(*p));
                }
                let id = c
                    .create_raw(&format!("Contracts/{contract_id}/Services"), &body)
                    .await?;
                services.insert((*contract_id, *service_id), id);
                Ok(id.to_string())
            }
            (
                Op::AtAdjustUnits {
                    contract_id,
                    service_id,
                    contract_service_id,
                    unit_change,
                    effective_date,
                    adjusted_unit_price,
                },
                PsaClient::Autotask(c),
            ) => {
                let cs = contract_service_id
                    .or_else(|| services.get(&(*contract_id, *service_id)).copied());
                let adj = NewAdjustment {
                    contract_id: *contract_id,
                    service_id: *service_id,
                    contract_service_id: cs,
                    unit_change: *unit_change,
                    adjusted_unit_price: *adjusted_unit_price,
                    adjusted_unit_cost: None,
                    effective_date: *effective_date,
                };
                c.create_adjustment(&adj).await.map(|id| id.to_string())
            }
            (op, psa) => Err(ApiError::new(
                psa.api(),
                ErrorKind::Config,
                format!(
                    "cannot {} through {}: the plan was made for another PSA",
                    op.kind(),
                    psa.api()
                ),
            )),
        }
    }

    /// Whether a create reached the PSA: `Some(id)` of the record it made, `None` when the
    /// PSA shows it was not applied.
    async fn verify(
        &self,
        w: &Write,
        before: Option<Decimal>,
        after: Option<Decimal>,
        services: &mut HashMap<(i64, i64), i64>,
    ) -> Result<Option<String>, ApiError> {
        match (&w.op, self.psa) {
            (
                Op::CwCreateAddition {
                    agreement_id,
                    catalog_item_id,
                    ..
                },
                PsaClient::ConnectWise(c),
            ) => verify_cw_addition(c, *agreement_id, *catalog_item_id).await,
            (
                Op::AtAddContractService {
                    contract_id,
                    service_id,
                    ..
                },
                PsaClient::Autotask(c),
            ) => {
                let id = find_contract_service(c, *contract_id, *service_id).await?;
                if let Some(id) = id {
                    services.insert((*contract_id, *service_id), id);
                }
                Ok(id.map(|id| id.to_string()))
            }
            (
                Op::AtAdjustUnits {
                    contract_id,
                    service_id,
                    contract_service_id,
                    unit_change,
                    effective_date,
                    ..
                },
                PsaClient::Autotask(c),
            ) => {
                let known = contract_service_id
                    .or_else(|| services.get(&(*contract_id, *service_id)).copied());
                let cs = match known {
                    Some(cs) => cs,
                    None => match find_contract_service(c, *contract_id, *service_id).await? {
                        Some(cs) => cs,
                        // The adjustment would have created the service (§6.3): not applied.
                        None => return Ok(None),
                    },
                };
                let units = units_on(c, cs, *effective_date).await?;
                let before = before.unwrap_or_default();
                let after = after.unwrap_or(before + Decimal::from(*unit_change));
                let now = Decimal::from(units);
                if now == before {
                    Ok(None)
                } else if now == after {
                    Ok(Some(cs.to_string()))
                } else {
                    Err(ApiError::new(
                        Api::Autotask,
                        ErrorKind::Rejected,
                        format!(
                            "shows {now} unit(s) on contract service {cs} on {effective_date}, neither the {before} before nor the {after} after this adjustment: it changed meanwhile, so review the contract and plan again"
                        ),
                    ))
                }
            }
            _ => Ok(None),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Xero: batched drafts
    // -----------------------------------------------------------------------------------------

    /// Xero: customers in groups of up to [`xero::INVOICE_BATCH`]; each group sends its
    /// customers' first writes in one request, then their second writes in the next, and so
    /// on; up to 5 groups at a time (§7.6, §7.8). A group's next request leaves as soon as its
    /// last one is answered, so the requests of different groups never wait for each other.
    async fn run_xero(&self, client: &XeroClient, tenant: &str, customers: &[Customer]) {
        let mut busy: Vec<&Customer> = Vec::new();
        for c in customers {
            if c.work.is_empty() {
                let st = self.final_state(c);
                self.customer_state(&c.tenant, st).await;
            } else {
                busy.push(c);
            }
        }
        // Drafts cspsync made in Xero, listed once when an interrupted write needs checking.
        let listed: tokio::sync::Mutex<Option<Result<Vec<xero::Invoice>, String>>> =
            tokio::sync::Mutex::new(None);
        let listed = &listed;
        // By index: a closure over borrowed slices would make the apply's future not `Send`.
        let groups: Vec<Vec<&Customer>> = busy
            .chunks(xero::INVOICE_BATCH)
            .map(<[&Customer]>::to_vec)
            .collect();
        let groups = &groups;
        futures_util::stream::iter(0..groups.len())
            .map(|g| self.run_xero_group(client, tenant, &groups[g], listed))
            .buffer_unordered(workers_for(self.psa))
            .collect::<Vec<()>>()
            .await;
    }

    async fn run_xero_group(
        &self,
        client: &XeroClient,
        tenant: &str,
        group: &[&Customer],
        listed: &tokio::sync::Mutex<Option<Result<Vec<xero::Invoice>, String>>>,
    ) {
        if self.cancelled().await {
            for c in group {
                for &i in &c.work {
                    self.finish(
                        i,
                        Outcome::Skipped {
                            reason: SKIP_CANCELLED.to_string(),
                        },
                    )
                    .await;
                }
                let st = self.final_state(c);
                self.customer_state(&c.tenant, st).await;
            }
            return;
        }
        for c in group {
            self.customer_state(&c.tenant, CustomerState::Running).await;
        }
        let n = group.len();
        let mut pos = vec![0usize; n];
        let mut failed = vec![false; n];
        loop {
            // This round: the next write of every customer still going.
            let round: Vec<(usize, usize)> = (0..n)
                .filter(|&c| !failed[c])
                .filter_map(|c| group[c].work.get(pos[c]).map(|&i| (c, i)))
                .collect();
            if round.is_empty() {
                break;
            }
            // The journal first: done → not sent; sending → looked up in Xero.
            let mut to_send: Vec<(usize, usize)> = Vec::new();
            let mut to_check: Vec<(usize, usize)> = Vec::new();
            for &(c, i) in &round {
                let w = &self.plan.writes[i];
                match self.ctx.journal.last(&w.key) {
                    Some(e) if e.state == State::Done => {
                        self.finish(
                            i,
                            Outcome::AlreadyDone {
                                id: e.id.unwrap_or_default(),
                            },
                        )
                        .await;
                        pos[c] += 1;
                    }
                    Some(e) if e.state == State::Sending && w.op.creates() => to_check.push((c, i)),
                    _ => to_send.push((c, i)),
                }
            }
            if !to_check.is_empty() {
                let found: Result<Vec<Option<String>>, String> = {
                    let mut l = listed.lock().await;
                    if l.is_none() {
                        *l = Some(
                            list_drafts(client, tenant)
                                .await
                                .map_err(|e| error_text(&e)),
                        );
                    }
                    match l.as_ref() {
                        Some(Ok(list)) => Ok(to_check
                            .iter()
                            .map(|&(_, i)| find_draft(list, &self.plan.writes[i].op))
                            .collect()),
                        Some(Err(e)) => Err(e.clone()),
                        None => Ok(vec![None; to_check.len()]),
                    }
                };
                for (k, &(c, i)) in to_check.iter().enumerate() {
                    let w = &self.plan.writes[i];
                    match &found {
                        Ok(ids) => match ids.get(k).cloned().flatten() {
                            Some(id) => {
                                let _ = self
                                    .journal(Entry::new(&w.key, State::Done).with_id(&id), false)
                                    .await;
                                self.finish(i, Outcome::AlreadyDone { id }).await;
                                pos[c] += 1;
                            }
                            None => to_send.push((c, i)),
                        },
                        Err(e) => {
                            self.finish(
                                i,
                                Outcome::Failed {
                                    error: format!(
                                        "an earlier apply sent this draft without recording the answer, and listing cspsync's drafts in Xero to check failed: {e}; nothing was sent, the next apply checks again"
                                    ),
                                },
                            )
                            .await;
                            failed[c] = true;
                            pos[c] += 1;
                        }
                    }
                }
            }
            for batch in to_send.chunks(xero::INVOICE_BATCH) {
                for (c, i, outcome) in self.send_batch(client, tenant, batch).await {
                    if matches!(outcome, Outcome::Failed { .. }) {
                        failed[c] = true;
                    }
                    // Reported as each request ends, for live progress.
                    self.finish(i, outcome).await;
                    pos[c] += 1;
                }
            }
        }
        for (c, customer) in group.iter().enumerate() {
            for &i in customer.work.iter().skip(pos[c]) {
                self.finish(
                    i,
                    Outcome::Skipped {
                        reason: SKIP_EARLIER_FAILED.to_string(),
                    },
                )
                .await;
            }
            let st = self.final_state(customer);
            self.customer_state(&customer.tenant, st).await;
        }
    }

    /// `items` (customer, write) failed with `error`, journalled as such.
    async fn fail_journalled(
        &self,
        items: &[(usize, usize)],
        error: &str,
        out: &mut Vec<(usize, usize, Outcome)>,
    ) {
        let entries = items
            .iter()
            .map(|&(_, i)| Entry::new(&self.plan.writes[i].key, State::Failed).with_error(error))
            .collect();
        failed_all(items, error, out);
        let _ = self.journal_many(entries, false).await;
    }

    /// One `POST /Invoices` of several customers' drafts; resent (the part not applied) when
    /// the answer was lost.
    async fn send_batch(
        &self,
        client: &XeroClient,
        tenant: &str,
        batch: &[(usize, usize)],
    ) -> Vec<(usize, usize, Outcome)> {
        let mut pending: Vec<(usize, usize)> = batch.to_vec();
        let mut out: Vec<(usize, usize, Outcome)> = Vec::new();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            let indices: Vec<usize> = pending.iter().map(|&(_, i)| i).collect();
            let invoices: Vec<NewInvoice> = indices
                .iter()
                .filter_map(|&i| new_invoice(&self.plan.writes[i].op))
                .collect();
            if invoices.len() != indices.len() {
                failed_all(
                    &pending,
                    "not a Xero draft: the plan was made for another PSA",
                    &mut out,
                );
                break;
            }
            let entries: Vec<Entry> = indices
                .iter()
                .map(|&i| {
                    let w = &self.plan.writes[i];
                    Entry::new(&w.key, State::Sending).with_quantities(w.before, w.after)
                })
                .collect();
            if let Err(e) = self.journal_many(entries, true).await {
                failed_all(&pending, &format!("not sent: {e}"), &mut out);
                break;
            }
            let key = batch_key(&indices, self.plan, &invoices);
            self.hook(Stage::BeforeSend, &indices).await;
            let result = client.upsert_invoices_each(tenant, &invoices, &key).await;
            self.hook(Stage::AfterResponse, &indices).await;
            match result {
                Ok(items) => {
                    let mut entries = Vec::new();
                    for (&(c, i), item) in pending.iter().zip(items) {
                        let key = &self.plan.writes[i].key;
                        match item {
                            Ok(id) => {
                                entries.push(Entry::new(key, State::Done).with_id(&id));
                                out.push((c, i, Outcome::Done { id }));
                            }
                            Err(msgs) => {
                                let error = format!("Xero refused the draft: {}", msgs.join("; "));
                                entries.push(Entry::new(key, State::Failed).with_error(&error));
                                out.push((c, i, Outcome::Failed { error }));
                            }
                        }
                    }
                    let _ = self.journal_many(entries, false).await;
                    pending.clear();
                }
                Err(e) if maybe_applied(&e) => {
                    // Which of the new drafts landed? Updates are safe to send again.
                    let listed = match list_drafts(client, tenant).await {
                        Ok(l) => l,
                        Err(le) => {
                            let error = format!(
                                "{}; checking whether it was applied failed too ({}); the next apply checks again before sending",
                                error_text(&e),
                                error_text(&le)
                            );
                            failed_all(&pending, &error, &mut out);
                            break;
                        }
                    };
                    let mut still = Vec::new();
                    let mut entries = Vec::new();
                    for &(c, i) in &pending {
                        let w = &self.plan.writes[i];
                        match w.op.creates().then(|| find_draft(&listed, &w.op)).flatten() {
                            Some(id) => {
                                entries.push(Entry::new(&w.key, State::Done).with_id(&id));
                                out.push((c, i, Outcome::Done { id }));
                            }
                            None => still.push((c, i)),
                        }
                    }
                    let _ = self.journal_many(entries, false).await;
                    if attempt >= MAX_SENDS {
                        self.fail_journalled(&still, &error_text(&e), &mut out)
                            .await;
                        break;
                    }
                    pending = still;
                    if !pending.is_empty() {
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    }
                }
                Err(e) => {
                    self.fail_journalled(&pending, &error_text(&e), &mut out)
                        .await;
                    break;
                }
            }
        }
        out
    }
}

/// Run blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(format!("the journal writer stopped: {e}")),
    }
}

/// The addition a create made: the product on the agreement without a cancelledDate (§5.3).
async fn verify_cw_addition(
    c: &ConnectWiseClient,
    agreement_id: u64,
    catalog_item_id: u64,
) -> Result<Option<String>, ApiError> {
    let additions = c.additions(agreement_id, None).await?;
    Ok(additions
        .iter()
        .filter(|a| {
            a.product
                .as_ref()
                .is_some_and(|p| p.id == Some(catalog_item_id))
                && a.cancelled_date.is_none()
        })
        .map(|a| a.id)
        .max()
        .map(|id| id.to_string()))
}

/// The contract service linking `service` to `contract` (§6.3), if any.
async fn find_contract_service(
    c: &AutotaskClient,
    contract: i64,
    service: i64,
) -> Result<Option<i64>, ApiError> {
    let q = Query::new(vec![
        Filter::eq("contractID", contract),
        Filter::eq("serviceID", service),
    ]);
    let list: Vec<ContractService> = c.query("ContractServices", &q).await?;
    Ok(list.iter().map(|s| s.id).min())
}

/// The units of a contract service in force on `day` (§6.3 ContractServiceUnits); 0 when no
/// period covers it.
async fn units_on(
    c: &AutotaskClient,
    contract_service: i64,
    day: chrono::NaiveDate,
) -> Result<i64, ApiError> {
    let d = day.format("%Y-%m-%dT00:00:00").to_string();
    let q = Query::new(vec![
        Filter::eq("contractServiceID", contract_service),
        Filter::lte("startDate", d.clone()),
        Filter::gte("endDate", d),
    ]);
    let units: Vec<ContractServiceUnit> = c.query("ContractServiceUnits", &q).await?;
    Ok(at::current_units_from(&units, day)
        .get(&contract_service)
        .copied()
        .unwrap_or(0))
}

/// Every invoice cspsync made in the organisation (`createdByMyApp`, §7.6).
async fn list_drafts(client: &XeroClient, tenant: &str) -> Result<Vec<xero::Invoice>, ApiError> {
    let q = InvoiceQuery {
        created_by_my_app: true,
        ..InvoiceQuery::default()
    };
    client.invoices(tenant, &q).await
}

/// The draft a Xero create made: same type and contact, its Reference (ACCREC) or
/// InvoiceNumber (ACCPAY) naming cspsync, the period and the customer; not deleted or voided.
fn find_draft(invoices: &[xero::Invoice], op: &Op) -> Option<String> {
    let Op::XeroDraft {
        kind,
        contact_id,
        reference,
        ..
    } = op
    else {
        return None;
    };
    let want = match kind {
        XeroInvoiceKind::SalesInvoice => InvoiceType::AccRec,
        XeroInvoiceKind::Bill => InvoiceType::AccPay,
    };
    invoices
        .iter()
        .filter(|i| i.invoice_type == Some(want))
        .filter(|i| {
            !matches!(
                i.status,
                Some(InvoiceStatus::Deleted | InvoiceStatus::Voided)
            )
        })
        .filter(|i| {
            i.contact
                .as_ref()
                .and_then(|c| c.contact_id.as_deref())
                .is_none_or(|id| id.eq_ignore_ascii_case(contact_id))
        })
        .find(|i| {
            let field = match kind {
                XeroInvoiceKind::SalesInvoice => i.reference.as_deref(),
                XeroInvoiceKind::Bill => i.invoice_number.as_deref(),
            };
            field == Some(reference.as_str())
        })
        .and_then(|i| i.invoice_id.clone())
}

/// The invoice to send for a Xero draft write (§7.6): DRAFT, amounts exclusive of tax, the
/// reference as `Reference` on a sales invoice and as `InvoiceNumber` on a bill (ACCPAY has no
/// Reference; an existing bill with that number is updated rather than duplicated).
pub fn new_invoice(op: &Op) -> Option<NewInvoice> {
    let Op::XeroDraft {
        kind,
        contact_id,
        invoice_id,
        reference,
        date,
        due_date,
        lines,
    } = op
    else {
        return None;
    };
    let (invoice_type, invoice_number, reference) = match kind {
        XeroInvoiceKind::SalesInvoice => (InvoiceType::AccRec, None, Some(reference.clone())),
        XeroInvoiceKind::Bill => (InvoiceType::AccPay, Some(reference.clone()), None),
    };
    Some(NewInvoice {
        invoice_id: invoice_id.clone(),
        invoice_type,
        contact: ContactRef::id(contact_id.clone()),
        date: Some(*date),
        due_date: Some(*due_date),
        line_amount_types: Some(LineAmountTypes::Exclusive),
        invoice_number,
        reference,
        currency_code: None,
        status: Some(InvoiceStatus::Draft),
        line_items: lines
            .iter()
            .map(|l| NewLineItem {
                description: l.description.clone(),
                quantity: l.quantity,
                unit_amount: l.unit_amount,
                item_code: l.item_code.clone(),
                account_code: Some(l.account_code.clone()),
                ..NewLineItem::default()
            })
            .collect(),
    })
}

/// The `Idempotency-Key` of a request (§7.3, ≤128 visible characters): a request of one
/// draft carries that write's key (the planner's Xero keys include a digest of the draft's
/// content, docs/sync.md "Keys"); a batch of several carries a digest of its writes' keys and of
/// the body, since it cannot be any one write's key. Either way the same writes with the same
/// content get the same key in every attempt (a resend is answered from Xero's cache), and
/// different content never reuses a key (which Xero refuses with 400).
fn batch_key(indices: &[usize], plan: &Plan, invoices: &[NewInvoice]) -> String {
    if let [i] = indices
        && let Some(w) = plan.writes.get(*i)
        && !w.key.is_empty()
        && w.key.len() <= xero::MAX_IDEMPOTENCY_KEY
        && w.key.bytes().all(|b| b.is_ascii_graphic())
    {
        return w.key.clone();
    }
    let mut h = Sha256::new();
    for &i in indices {
        if let Some(w) = plan.writes.get(i) {
            h.update(w.key.as_bytes());
            h.update(b"\n");
        }
    }
    h.update(serde_json::to_vec(invoices).unwrap_or_default());
    let digest = h.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("cspsync-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sync::XeroLine;
    use chrono::NaiveDate;

    fn draft(kind: XeroInvoiceKind, reference: &str) -> Op {
        Op::XeroDraft {
            kind,
            contact_id: "c-1".into(),
            invoice_id: None,
            reference: reference.into(),
            date: NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
            due_date: NaiveDate::from_ymd_opt(2026, 5, 31).unwrap(),
            lines: vec![XeroLine {
                description: "M365 BP".into(),
                item_code: None,
                quantity: Decimal::from(3),
                unit_amount: Decimal::new(3455, 2),
                account_code: "200".into(),
            }],
        }
    }

    #[test]
    fn drafts_carry_their_reference_where_xero_keeps_it() {
        let inv = new_invoice(&draft(XeroInvoiceKind::SalesInvoice, "cspsync 2026-05 A")).unwrap();
        assert_eq!(inv.invoice_type, InvoiceType::AccRec);
        assert_eq!(inv.reference.as_deref(), Some("cspsync 2026-05 A"));
        assert_eq!(inv.invoice_number, None);
        assert_eq!(inv.status, Some(InvoiceStatus::Draft));
        let bill = new_invoice(&draft(XeroInvoiceKind::Bill, "cspsync 2026-05 A")).unwrap();
        assert_eq!(bill.invoice_type, InvoiceType::AccPay);
        assert_eq!(bill.invoice_number.as_deref(), Some("cspsync 2026-05 A"));
        assert_eq!(bill.reference, None);
        assert_eq!(bill.line_items[0].account_code.as_deref(), Some("200"));
    }

    #[test]
    fn a_lost_draft_is_found_by_type_contact_and_reference() {
        let inv = |t: InvoiceType, number: Option<&str>, reference: Option<&str>, id: &str| {
            serde_json::from_value::<xero::Invoice>(serde_json::json!({
                "InvoiceID": id, "Type": t, "Status": "DRAFT",
                "Contact": {"ContactID": "c-1", "Name": "A"},
                "InvoiceNumber": number, "Reference": reference,
            }))
            .unwrap()
        };
        let list = vec![
            inv(
                InvoiceType::AccRec,
                Some("INV-0001"),
                Some("cspsync 2026-05 A"),
                "r1",
            ),
            inv(InvoiceType::AccPay, Some("cspsync 2026-05 A"), None, "p1"),
        ];
        assert_eq!(
            find_draft(
                &list,
                &draft(XeroInvoiceKind::SalesInvoice, "cspsync 2026-05 A")
            ),
            Some("r1".into())
        );
        assert_eq!(
            find_draft(&list, &draft(XeroInvoiceKind::Bill, "cspsync 2026-05 A")),
            Some("p1".into())
        );
        assert_eq!(
            find_draft(&list, &draft(XeroInvoiceKind::Bill, "cspsync 2026-06 A")),
            None
        );
    }

    #[test]
    fn batch_keys_are_stable_short_and_content_bound() {
        let plan_of = |keys: &[&str]| Plan {
            psa: Api::Xero,
            created_at: Utc::now(),
            style: Default::default(),
            period_start: NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
            period_end: NaiveDate::from_ymd_opt(2026, 5, 31).unwrap(),
            summary: Default::default(),
            writes: keys
                .iter()
                .map(|k| Write {
                    key: (*k).into(),
                    customer_tenant_id: "t".into(),
                    customer_name: "T".into(),
                    system: Api::Xero,
                    target: String::new(),
                    product: String::new(),
                    stock_code: None,
                    before: None,
                    after: None,
                    monthly_change: Decimal::ZERO,
                    cautions: vec![],
                    op: draft(XeroInvoiceKind::Bill, k),
                })
                .collect(),
            skipped: vec![],
        };
        let p = plan_of(&["a", "b"]);
        let inv: Vec<NewInvoice> = p.writes.iter().filter_map(|w| new_invoice(&w.op)).collect();
        let k1 = batch_key(&[0, 1], &p, &inv);
        assert_eq!(k1, batch_key(&[0, 1], &p, &inv));
        assert!(k1.len() <= xero::MAX_IDEMPOTENCY_KEY);
        // One draft: its write key.
        assert_eq!(batch_key(&[0], &p, &inv[..1]), "a");
    }
}
