//! The live picture of an apply (pure): counts, each customer's state, writes per second, the
//! event log and the summary, built from the engine's [`ApplyEvent`]s and [`ApplyProgress`].
//!
//! Terminal output while an apply runs must stay small (issue 6 §7: ≤ 4 KB/s at 10 updates a
//! second). The gauge and the counters change with every update; the parts that would repaint
//! many rows when they move — the customer list (re-sorted: running and failed first), the event
//! log (scrolling) and the sparkline (shifting) — are refreshed at most once a second
//! ([`REFRESH_MS`], by the time the updates carry). While many lines arrive (a refresh then
//! repaints whole panels) the log and the customer list take turns: each is refreshed every
//! other second. The sparkline shows completed seconds only.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};

use crate::domain::sync::{ApplyEvent, ApplyProgress, CustomerState, Outcome, Plan};

/// The slow parts (customer list, log, sparkline) are redrawn at most this often.
pub const REFRESH_MS: i64 = 1_000;
/// More new log lines than this since the log was shown: the log and the customer list take
/// turns.
pub const BUSY_LINES: usize = 8;
/// The event log keeps this many lines (older ones are dropped; the audit log keeps all).
pub const LOG_CAP: usize = 5_000;
/// Seconds of writes-per-second history kept (a day).
const MAX_SECONDS: usize = 86_400;

/// One customer of the apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRow {
    pub tenant_id: String,
    pub name: String,
    pub state: CustomerState,
    /// Writes of this customer in the apply.
    pub writes: usize,
    /// Of those, finished (any outcome).
    pub finished: usize,
    pub failed: usize,
}

/// A write that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Index into `Plan::writes`.
    pub write: usize,
    pub error: String,
}

/// The engine's last word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub at: DateTime<Utc>,
    pub done: usize,
    pub already_done: usize,
    pub failed: usize,
    pub skipped: usize,
    pub cancelled: bool,
}

/// Writes finished, by outcome (counted from the events).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub done: usize,
    pub already_done: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Counts {
    pub fn finished(&self) -> usize {
        self.done + self.already_done + self.failed + self.skipped
    }
}

#[derive(Debug, Clone, Default)]
pub struct ApplyView {
    /// Writes in the apply (the selected ones).
    pub total: usize,
    pub counts: Counts,
    pub progress: ApplyProgress,
    pub started_at: Option<DateTime<Utc>>,
    /// The time of the latest update (the clock the screen shows elapsed time by).
    pub now: Option<DateTime<Utc>>,
    /// The latest time an event carried (for events without one).
    last_at: Option<DateTime<Utc>>,
    /// In plan order.
    pub customers: Vec<CustomerRow>,
    by_tenant: HashMap<String, usize>,
    /// Writes finished in each second since the start.
    pub per_second: Vec<u64>,
    pub log: VecDeque<String>,
    /// Lines ever logged (`log` keeps the newest [`LOG_CAP`]).
    pub log_total: usize,
    pub failures: Vec<Failure>,
    /// Esc was confirmed: in-flight writes finish, nothing new starts.
    pub cancelling: bool,
    pub finished: Option<Finished>,
    /// The apply could not run (or ended without its summary).
    pub error: Option<String>,
    /// After the summary: what could not be recorded (journal, audit log).
    pub problems: Vec<String>,
    /// What the slow parts show, as of `refreshed_at`.
    pub shown_customers: Vec<CustomerRow>,
    /// The running customers' rows, kept in place between refreshes (indices into
    /// `customers`): a customer that finishes hands its row to the next one.
    slots: Vec<usize>,
    /// While busy: whose turn it is (the log's when true).
    turn: bool,
    pub shown_log_total: usize,
    pub shown_seconds: usize,
    pub refreshed_at: Option<DateTime<Utc>>,
}

impl ApplyView {
    /// Before the first event: every customer with a selected write is queued.
    pub fn new(plan: &Plan, selected: &[usize]) -> ApplyView {
        let mut v = ApplyView {
            total: selected.len(),
            ..ApplyView::default()
        };
        for &i in selected {
            let Some(w) = plan.writes.get(i) else {
                continue;
            };
            let at = *v
                .by_tenant
                .entry(w.customer_tenant_id.to_ascii_lowercase())
                .or_insert_with(|| {
                    v.customers.push(CustomerRow {
                        tenant_id: w.customer_tenant_id.clone(),
                        name: w.customer_name.clone(),
                        state: CustomerState::Queued,
                        writes: 0,
                        finished: 0,
                        failed: 0,
                    });
                    v.customers.len() - 1
                });
            if let Some(c) = v.customers.get_mut(at) {
                c.writes += 1;
            }
        }
        v.refresh_customers();
        v
    }

    pub fn running(&self) -> bool {
        self.finished.is_none() && self.error.is_none()
    }

    /// Writes finished so far (the gauge).
    pub fn finished_writes(&self) -> usize {
        self.counts.finished().max(self.progress.finished)
    }

    pub fn total_writes(&self) -> usize {
        if self.progress.total > 0 {
            self.progress.total
        } else {
            self.total
        }
    }

    /// Take in one coalesced update.
    pub fn absorb(
        &mut self,
        plan: &Plan,
        events: Vec<ApplyEvent>,
        progress: ApplyProgress,
        now: DateTime<Utc>,
    ) {
        if self.started_at.is_none() {
            self.started_at = progress.started_at;
        }
        self.progress = progress;
        for e in events {
            self.event(plan, e);
        }
        self.now = Some(self.now.map_or(now, |n| n.max(now)));
        self.refresh_if_due();
    }

    fn customer_name(&self, tenant: &str) -> String {
        self.by_tenant
            .get(&tenant.to_ascii_lowercase())
            .and_then(|i| self.customers.get(*i))
            .map(|c| c.name.clone())
            .unwrap_or_else(|| tenant.to_string())
    }

    fn event(&mut self, plan: &Plan, e: ApplyEvent) {
        let line = match &e {
            ApplyEvent::Started {
                at,
                writes,
                customers,
            } => {
                self.last_at = Some(*at);
                if self.started_at.is_none() {
                    self.started_at = Some(*at);
                }
                format!(
                    "{} started: {} for {}",
                    clock(*at),
                    plural(*writes, "write"),
                    plural(*customers, "customer")
                )
            }
            ApplyEvent::Customer { tenant_id, state } => {
                let i = match self.by_tenant.get(&tenant_id.to_ascii_lowercase()) {
                    Some(i) => *i,
                    None => {
                        // A customer the selection did not list (the engine knows best).
                        let name = plan
                            .writes
                            .iter()
                            .find(|w| w.customer_tenant_id.eq_ignore_ascii_case(tenant_id))
                            .map(|w| w.customer_name.clone())
                            .unwrap_or_else(|| tenant_id.clone());
                        self.customers.push(CustomerRow {
                            tenant_id: tenant_id.clone(),
                            name,
                            state: CustomerState::Queued,
                            writes: 0,
                            finished: 0,
                            failed: 0,
                        });
                        self.by_tenant
                            .insert(tenant_id.to_ascii_lowercase(), self.customers.len() - 1);
                        self.customers.len() - 1
                    }
                };
                if let Some(c) = self.customers.get_mut(i) {
                    c.state = *state;
                }
                // The customer list shows every state; the log keeps what went wrong (a
                // customer done is its writes' lines already, and fewer kinds of lines
                // scroll with fewer changed cells).
                match state {
                    CustomerState::Queued | CustomerState::Running | CustomerState::Done => {
                        return;
                    }
                    _ => format!(
                        "{} {}: {state}",
                        self.last_at.map(clock).unwrap_or_else(|| "--:--:--".into()),
                        self.customer_name(tenant_id)
                    ),
                }
            }
            ApplyEvent::Write {
                at, index, outcome, ..
            } => {
                self.last_at = Some(*at);
                self.count(*at, *index, plan, outcome);
                write_line(plan, *at, *index, outcome)
            }
            ApplyEvent::Retry { at, message } => {
                self.last_at = Some(*at);
                format!("{} retry: {message}", clock(*at))
            }
            ApplyEvent::Cancelling => {
                self.cancelling = true;
                format!(
                    "{} cancelling: writes in flight finish, nothing new starts",
                    self.last_at.map(clock).unwrap_or_else(|| "--:--:--".into())
                )
            }
            ApplyEvent::Finished {
                at,
                done,
                already_done,
                failed,
                skipped,
                cancelled,
            } => {
                self.last_at = Some(*at);
                self.finished = Some(Finished {
                    at: *at,
                    done: *done,
                    already_done: *already_done,
                    failed: *failed,
                    skipped: *skipped,
                    cancelled: *cancelled,
                });
                format!(
                    "{} {}: {done} done, {already_done} already done, {failed} failed, {skipped} skipped",
                    clock(*at),
                    if *cancelled { "cancelled" } else { "finished" }
                )
            }
        };
        self.push_log(line);
    }

    fn count(&mut self, at: DateTime<Utc>, index: usize, plan: &Plan, outcome: &Outcome) {
        match outcome {
            Outcome::Done { .. } => self.counts.done += 1,
            Outcome::AlreadyDone { .. } => self.counts.already_done += 1,
            Outcome::Failed { error } => {
                self.counts.failed += 1;
                self.failures.push(Failure {
                    write: index,
                    error: error.clone(),
                });
            }
            Outcome::Skipped { .. } => self.counts.skipped += 1,
        }
        if let Some(w) = plan.writes.get(index)
            && let Some(c) = self
                .by_tenant
                .get(&w.customer_tenant_id.to_ascii_lowercase())
                .and_then(|i| self.customers.get_mut(*i))
        {
            c.finished += 1;
            if matches!(outcome, Outcome::Failed { .. }) {
                c.failed += 1;
            }
        }
        // Skipped writes were never sent: they are not throughput.
        if matches!(outcome, Outcome::Skipped { .. }) {
            return;
        }
        let Some(start) = self.started_at else {
            return;
        };
        let second = usize::try_from((at - start).num_milliseconds().max(0) / 1000).unwrap_or(0);
        if second < MAX_SECONDS {
            if self.per_second.len() <= second {
                self.per_second.resize(second + 1, 0);
            }
            if let Some(b) = self.per_second.get_mut(second) {
                *b += 1;
            }
        }
    }

    fn push_log(&mut self, line: String) {
        self.log.push_back(line);
        self.log_total += 1;
        while self.log.len() > LOG_CAP {
            self.log.pop_front();
        }
    }

    /// Seconds elapsed (by the updates' clock).
    pub fn elapsed_secs(&self) -> i64 {
        let end = self.finished.as_ref().map(|f| f.at).or(self.now);
        match (self.started_at, end) {
            (Some(s), Some(n)) => (n - s).num_seconds().max(0),
            _ => 0,
        }
    }

    /// Seconds left at the rate so far (`None` before the rate is known).
    pub fn eta_secs(&self) -> Option<i64> {
        let done = self.finished_writes();
        let elapsed = self.elapsed_secs();
        if done == 0 || elapsed == 0 || !self.running() {
            return None;
        }
        let left = self.total_writes().saturating_sub(done) as i64;
        Some(left * elapsed / done as i64)
    }

    /// Completed seconds: those before the current one.
    fn complete_seconds(&self) -> usize {
        if !self.running() {
            return self.per_second.len();
        }
        usize::try_from(self.elapsed_secs())
            .unwrap_or(0)
            .min(MAX_SECONDS)
    }

    /// Writes finished in each completed second, as shown.
    pub fn shown_rates(&self) -> Vec<u64> {
        let mut r: Vec<u64> = self
            .per_second
            .iter()
            .copied()
            .take(self.shown_seconds)
            .collect();
        r.resize(self.shown_seconds, 0);
        r
    }

    /// Writes in the last completed second shown.
    pub fn rate(&self) -> Option<u64> {
        self.shown_rates().last().copied()
    }

    /// The shown log: the lines as of the last refresh (newest last).
    pub fn shown_log(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        let hidden = self.log_total.saturating_sub(self.shown_log_total);
        let n = self.log.len().saturating_sub(hidden);
        self.log.iter().take(n)
    }

    fn refresh_if_due(&mut self) {
        let due = match (self.refreshed_at, self.now) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(r), Some(n)) => (n - r).num_milliseconds() >= REFRESH_MS,
        };
        if !self.running() {
            self.refresh();
        } else if due {
            let busy = self.log_total.saturating_sub(self.shown_log_total) > BUSY_LINES;
            self.turn = !self.turn;
            if !busy || self.turn {
                self.shown_log_total = self.log_total;
            }
            if !busy || !self.turn {
                self.refresh_customers();
            }
            self.shown_seconds = self.complete_seconds();
            self.refreshed_at = self.now;
        }
    }

    /// Bring the slow parts up to date now.
    pub fn refresh(&mut self) {
        self.refresh_customers();
        self.shown_log_total = self.log_total;
        self.shown_seconds = self.complete_seconds();
        self.refreshed_at = self.now;
    }

    /// Running customers first (each keeps its row while it runs; one that starts takes the
    /// row of one that finished), then failed, queued, done and skipped, in plan order.
    fn refresh_customers(&mut self) {
        let running = |i: &usize| {
            self.customers
                .get(*i)
                .is_some_and(|c| c.state == CustomerState::Running)
        };
        let mut slots: Vec<Option<usize>> = self
            .slots
            .iter()
            .map(|i| Some(*i).filter(running))
            .collect();
        let kept: std::collections::HashSet<usize> = slots.iter().flatten().copied().collect();
        let mut starting = (0..self.customers.len()).filter(|i| running(i) && !kept.contains(i));
        for slot in slots.iter_mut().filter(|s| s.is_none()) {
            *slot = starting.next();
        }
        slots.extend(starting.map(Some));
        self.slots = slots.into_iter().flatten().collect();
        let mut shown: Vec<CustomerRow> = self
            .slots
            .iter()
            .filter_map(|i| self.customers.get(*i).cloned())
            .collect();
        for state in [
            CustomerState::Failed,
            CustomerState::Queued,
            CustomerState::Done,
            CustomerState::Skipped,
        ] {
            shown.extend(self.customers.iter().filter(|c| c.state == state).cloned());
        }
        self.shown_customers = shown;
    }

    /// The apply ended without its summary (the engine stopped or could not start).
    pub fn fail(&mut self, error: String) {
        self.push_log(format!(
            "{} stopped: {error}",
            self.now.map(clock).unwrap_or_else(|| "--:--:--".into())
        ));
        self.error = Some(error);
        self.refresh();
    }

    /// Customers in each state (as shown).
    pub fn state_counts(&self) -> [(CustomerState, usize); 5] {
        let n = |s| self.customers.iter().filter(|c| c.state == s).count();
        [
            (CustomerState::Running, n(CustomerState::Running)),
            (CustomerState::Failed, n(CustomerState::Failed)),
            (CustomerState::Queued, n(CustomerState::Queued)),
            (CustomerState::Done, n(CustomerState::Done)),
            (CustomerState::Skipped, n(CustomerState::Skipped)),
        ]
    }
}

/// `04:25:01` (UTC).
pub fn clock(at: DateTime<Utc>) -> String {
    at.format("%H:%M:%S").to_string()
}

pub fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `m:ss` (or `h:mm:ss`).
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// One log line for a finished write, in columns (lines that scroll past each other then
/// differ in fewer cells): `04:25:01 ✓ Acme Plumbing  change quantity  10 → 12  Microsoft 365
/// Business Standard`.
fn write_line(plan: &Plan, at: DateTime<Utc>, index: usize, outcome: &Outcome) -> String {
    let what = match plan.writes.get(index) {
        Some(w) => format!(
            "{} {} {:>11}  {}",
            fit(&w.customer_name, 22),
            fit(w.op.kind(), 15),
            super::before_after(w),
            w.product
        ),
        None => format!("write {index}"),
    };
    let result = match outcome {
        Outcome::Done { .. } => format!("✓ {what}"),
        Outcome::AlreadyDone { .. } => format!("= {what} (already done)"),
        Outcome::Failed { error } => format!("✗ {what}: {error}"),
        Outcome::Skipped { reason } => format!("– {what} (skipped: {reason})"),
    };
    format!("{} {result}", clock(at))
}

/// `text` in exactly `width` characters (cut with `…`, or padded).
fn fit(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n > width {
        let mut t: String = text.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    } else {
        format!("{text:<width$}")
    }
}
