//! The Sync tab (issue 6 §2): bring the PSA in line with Dicker Data, the way a careful
//! technician would — every write listed before anything is written, applied only after a
//! confirmation that states what will be written, with live progress, and recorded.
//!
//! States: Idle (what the sync does, the billing style, Enter makes the plan) → Planning (fetch,
//! reconcile and plan in the background, a gauge) → Review (the plan grouped by customer: select
//! writes, read a write's detail, `a` applies after a confirmation; cautioned writes need an
//! explicit `yes`) → Applying (gauge, customers' states, writes per second, elapsed and ETA, the
//! event log; Esc cancels cleanly) → Done (the summary; `R` re-runs Reconcile). `l` shows the
//! audit log in every state.
//!
//! Keys: Enter/r plan · b advance/arrears · p prorate on/off · ↑/↓ j/k PgUp/PgDn Home/End move ·
//! Space select a write (or a customer's) · A all/none · Enter a write's (or skipped line's)
//! detail · `$` the customer's price for that product (saved in `settings.sync.price_overrides`,
//! then a new plan) · a apply · Esc cancel an apply · R reconcile again · l audit log.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;
use rust_decimal::Decimal;
use tokio::sync::mpsc::Sender;

#[path = "sync_progress.rs"]
pub mod progress;
#[path = "sync_run.rs"]
mod run_impl;
#[path = "sync_view.rs"]
mod view;

use super::partner::common::{Rotated, keep_rotated};
use super::{Hint, Step};
use crate::access::{self, Access};
use crate::api::error::Api;
use crate::audit;
use crate::config::PsaKindSetting;
use crate::domain::model::display_quantity;
use crate::domain::sync::{
    ApplyEvent, ApplyProgress, BillingStyle, BillingTiming, Plan, PriceOverride, Write,
};
use crate::engine::fetch::FetchProgress;
use crate::tui::app::{self, Effect, Setup};
use crate::tui::runner::Services;
use crate::tui::theme::Theme;

pub use progress::ApplyView;
pub use run_impl::{COALESCE_MS, forward};

/// Where the tab is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Phase {
    /// No plan yet (or the last one was dropped).
    #[default]
    Idle,
    /// Fetching, reconciling and planning.
    Planning(FetchProgress),
    /// A plan to review.
    Review,
    /// The selected writes are being applied.
    Applying,
    /// The apply ended (see `apply` for the summary).
    Done,
}

/// A row of the review list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// A customer's header (index into `groups`).
    Customer(usize),
    /// A write (index into `Plan::writes`).
    Write(usize),
    /// The header of the lines the plan leaves alone.
    SkippedHeader,
    /// A line left alone (index into `Plan::skipped`).
    Skipped(usize),
}

/// One customer's writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub tenant_id: String,
    pub name: String,
    /// Indices into `Plan::writes`, in plan order.
    pub writes: Vec<usize>,
}

/// A question over the tab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Popup {
    /// "Apply N writes to the PSA for M customers?" `typed`: the `yes` that includes the
    /// cautioned writes; `problem`: what was wrong with the last Enter.
    Confirm {
        typed: String,
        problem: Option<String>,
    },
    /// "Cancel the apply?"
    Cancel,
    /// `$`: this customer's sell price per seat per month for one product, winning over the
    /// PSA catalogue (saved in `settings.sync.price_overrides`; empty removes it).
    Price {
        tenant_id: String,
        customer: String,
        product: String,
        stock_code: String,
        typed: String,
        problem: Option<String>,
    },
}

/// The audit log view (`l`).
#[derive(Debug, Clone, Default)]
pub struct AuditView {
    pub loading: bool,
    pub events: Vec<audit::Event>,
    pub error: Option<String>,
    /// Rows up from the newest (0 = the newest at the bottom).
    pub scroll: usize,
    /// Rows the last render had room for (PgUp/PgDn).
    pub view_rows: Cell<usize>,
}

/// What the selection amounts to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Selected writes, in plan order.
    pub writes: Vec<usize>,
    pub customers: usize,
    /// Selected writes that need their own confirmation.
    pub cautioned: Vec<usize>,
    pub monthly_change: Decimal,
}

impl Selection {
    /// The writes applied when the cautioned ones are left out.
    pub fn without_cautioned(&self) -> Vec<usize> {
        let c: BTreeSet<usize> = self.cautioned.iter().copied().collect();
        self.writes
            .iter()
            .copied()
            .filter(|i| !c.contains(i))
            .collect()
    }
}

#[derive(Debug, Clone, Default)]
pub struct State {
    pub generation: u64,
    pub phase: Phase,
    pub plan: Option<Arc<Plan>>,
    /// Parallel to `plan.writes`.
    pub selected: Vec<bool>,
    pub groups: Vec<Group>,
    pub rows: Vec<Row>,
    pub cursor: usize,
    /// First row drawn (kept by render so the cursor stays on screen).
    pub offset: Cell<usize>,
    /// List rows the last render had room for (PgUp/PgDn).
    pub view_rows: Cell<usize>,
    /// The write (or skipped line) whose detail is open.
    pub detail: Option<Row>,
    pub detail_scroll: u16,
    pub popup: Option<Popup>,
    /// The apply under way or finished.
    pub apply: Option<ApplyView>,
    /// First customer row shown in the progress view.
    pub customer_scroll: usize,
    /// Log rows up from the newest (0 = follow the newest).
    pub log_scroll: usize,
    pub audit: Option<AuditView>,
    /// The last action's outcome (text, is an error).
    pub note: Option<(String, bool)>,
}

impl State {
    pub fn new(_setup: &Setup) -> State {
        State::default()
    }

    pub fn planning(&self) -> bool {
        matches!(self.phase, Phase::Planning(_))
    }

    pub fn applying(&self) -> bool {
        self.phase == Phase::Applying
    }

    pub fn current_row(&self) -> Option<Row> {
        self.rows.get(self.cursor).copied()
    }

    fn set_plan(&mut self, plan: Arc<Plan>) {
        let mut groups: Vec<Group> = Vec::new();
        // Tenant ids are GUIDs: compared without case, as the engine does.
        let mut by_tenant: HashMap<String, usize> = HashMap::new();
        for (i, w) in plan.writes.iter().enumerate() {
            let g = *by_tenant
                .entry(w.customer_tenant_id.to_ascii_lowercase())
                .or_insert_with(|| {
                    groups.push(Group {
                        tenant_id: w.customer_tenant_id.clone(),
                        name: w.customer_name.clone(),
                        writes: Vec::new(),
                    });
                    groups.len() - 1
                });
            if let Some(g) = groups.get_mut(g) {
                g.writes.push(i);
            }
        }
        let mut rows = Vec::with_capacity(plan.writes.len() + groups.len() + plan.skipped.len());
        for (gi, g) in groups.iter().enumerate() {
            rows.push(Row::Customer(gi));
            rows.extend(g.writes.iter().map(|i| Row::Write(*i)));
        }
        if !plan.skipped.is_empty() {
            rows.push(Row::SkippedHeader);
            rows.extend((0..plan.skipped.len()).map(Row::Skipped));
        }
        self.selected = vec![true; plan.writes.len()];
        self.groups = groups;
        self.rows = rows;
        self.cursor = 0;
        self.offset.set(0);
        self.detail = None;
        self.popup = None;
        self.apply = None;
        self.plan = Some(plan);
        self.phase = Phase::Review;
    }

    /// The selected writes and what they add up to.
    pub fn selection(&self) -> Selection {
        let Some(plan) = &self.plan else {
            return Selection::default();
        };
        let mut sel = Selection::default();
        let mut customers: BTreeSet<String> = BTreeSet::new();
        for (i, w) in plan.writes.iter().enumerate() {
            if !self.selected.get(i).copied().unwrap_or(false) {
                continue;
            }
            sel.writes.push(i);
            customers.insert(w.customer_tenant_id.to_ascii_lowercase());
            sel.monthly_change += w.monthly_change;
            if w.needs_confirmation() {
                sel.cautioned.push(i);
            }
        }
        sel.customers = customers.len();
        sel
    }

    /// Customers among `writes`.
    pub fn customers_of(&self, writes: &[usize]) -> usize {
        let Some(plan) = &self.plan else { return 0 };
        writes
            .iter()
            .filter_map(|i| plan.writes.get(*i))
            .map(|w| w.customer_tenant_id.to_ascii_lowercase())
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Selected writes of a customer.
    pub fn group_selected(&self, g: &Group) -> usize {
        g.writes
            .iter()
            .filter(|i| self.selected.get(**i).copied().unwrap_or(false))
            .count()
    }

    fn toggle_row(&mut self) {
        match self.current_row() {
            Some(Row::Write(i)) => {
                if let Some(s) = self.selected.get_mut(i) {
                    *s = !*s;
                }
            }
            Some(Row::Customer(g)) => {
                let Some(group) = self.groups.get(g) else {
                    return;
                };
                let on = self.group_selected(group) < group.writes.len();
                for i in group.writes.clone() {
                    if let Some(s) = self.selected.get_mut(i) {
                        *s = on;
                    }
                }
            }
            _ => {}
        }
    }

    fn toggle_all(&mut self) {
        let on = !self.selected.iter().all(|s| *s);
        self.selected.iter_mut().for_each(|s| *s = on);
    }
}

/// Background results.
#[derive(Debug, Clone)]
pub enum Msg {
    /// Fetch progress while planning.
    Progress {
        generation: u64,
        progress: FetchProgress,
    },
    Planned {
        generation: u64,
        result: Result<Arc<Plan>, String>,
        /// The Microsoft sign-in rotated during the fetch: keep the new refresh token.
        rotated: Option<Rotated>,
        /// Xero rotates its refresh token on every use (§7.1): keep the new one.
        xero: Option<Rotated>,
    },
    /// Apply events and the gauge's counters, coalesced (at most 10 a second).
    Applying {
        generation: u64,
        events: Vec<ApplyEvent>,
        progress: ApplyProgress,
        /// When the update was sent (the clock of elapsed time and ETA).
        now: DateTime<Utc>,
    },
    /// The apply task ended: `Err` when it could not run or stopped early.
    Applied {
        generation: u64,
        result: Result<(), String>,
        now: DateTime<Utc>,
        xero: Option<Rotated>,
    },
    Audit(Result<Vec<audit::Event>, String>),
}

/// Background work.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// Fetch + reconcile + plan.
    Plan {
        generation: u64,
        setup: Box<Setup>,
    },
    /// Apply the `selected` writes of `plan` (indices into `plan.writes`, plan order);
    /// `confirm_cautions`: the operator typed `yes` for the cautioned writes among them.
    Apply {
        generation: u64,
        setup: Box<Setup>,
        plan: Arc<Plan>,
        selected: Vec<usize>,
        confirm_cautions: bool,
    },
    /// Stop the apply of `generation` cleanly (in-flight writes finish).
    Cancel {
        generation: u64,
    },
    ReadAudit,
}

/// What the apply keeps between commands: how to cancel the one running.
#[derive(Debug, Default)]
pub struct Runtime {
    pub(crate) cancel: std::sync::Mutex<Option<(u64, tokio::sync::watch::Sender<bool>)>>,
    /// The demo's journal, in memory for the session (its world starts afresh every run).
    pub(crate) journal: std::sync::Mutex<Option<Arc<crate::engine::journal::Journal>>>,
}

/// The PSA the settings sync to.
pub fn psa_of(setup: &Setup) -> Option<Api> {
    match setup.settings.psa.kind {
        PsaKindSetting::None => None,
        PsaKindSetting::ConnectWise => Some(Api::ConnectWise),
        PsaKindSetting::Autotask => Some(Api::Autotask),
        PsaKindSetting::Xero => Some(Api::Xero),
    }
}

fn access_of(setup: &Setup) -> Access {
    access::decide(
        &setup.settings,
        setup.secrets.microsoft_refresh_token.is_some(),
    )
}

/// Why this person may not apply (`None`: they may).
pub fn apply_refusal(setup: &Setup) -> Option<String> {
    let a = access_of(setup);
    if a.may_apply_sync() {
        return None;
    }
    Some(match a {
        Access::Allowed(_) => "Only operators may apply a sync, and you are a viewer: ask the admin to make you an operator in the Users tab.".into(),
        _ => "Sign in as an operator to apply a sync.".into(),
    })
}

/// `22 → 25`, `– → 5` (created), `9 → –` (cancelled).
pub fn before_after(w: &Write) -> String {
    let q = |d: Option<Decimal>| d.map(display_quantity).unwrap_or_else(|| "–".into());
    format!("{} → {}", q(w.before), q(w.after))
}

/// `+$108.00`, `-$36.00`, `$0.00`.
pub fn money(d: Decimal) -> String {
    let r = d.round_dp(2);
    let sign = if r > Decimal::ZERO {
        "+"
    } else if r < Decimal::ZERO {
        "-"
    } else {
        ""
    };
    format!("{sign}${:.2}", r.abs())
}

fn start_plan(s: &mut State, setup: &Setup) -> Vec<Effect> {
    if psa_of(setup).is_none() {
        s.note = Some((
            "No PSA is set up: connect ConnectWise, Autotask or Xero in the PSA tab (4) first."
                .into(),
            true,
        ));
        return Vec::new();
    }
    s.generation += 1;
    s.phase = Phase::Planning(FetchProgress::default());
    s.plan = None;
    s.selected.clear();
    s.groups.clear();
    s.rows.clear();
    s.apply = None;
    s.detail = None;
    s.popup = None;
    s.note = None;
    s.log_scroll = 0;
    s.customer_scroll = 0;
    vec![Effect::Sync(Cmd::Plan {
        generation: s.generation,
        setup: Box::new(setup.clone()),
    })]
}

/// `a`: ask for the confirmation, or say why not.
fn ask_apply(s: &mut State, setup: &Setup) {
    if let Some(why) = apply_refusal(setup) {
        s.note = Some((why, true));
        return;
    }
    let Some(plan) = &s.plan else { return };
    if plan.style != setup.settings.sync.style {
        s.note = Some((
            format!(
                "The billing style changed after this plan was made (it used {}): press r to plan again.",
                plan.style.describe()
            ),
            true,
        ));
        return;
    }
    if s.selection().writes.is_empty() {
        s.note = Some((
            "Nothing is selected: Space selects a write, A selects them all.".into(),
            true,
        ));
        return;
    }
    s.note = None;
    s.popup = Some(Popup::Confirm {
        typed: String::new(),
        problem: None,
    });
}

fn start_apply(
    s: &mut State,
    setup: &Setup,
    selected: Vec<usize>,
    confirm_cautions: bool,
) -> Vec<Effect> {
    let Some(plan) = s.plan.clone() else {
        return Vec::new();
    };
    s.generation += 1;
    s.popup = None;
    s.detail = None;
    s.note = None;
    s.apply = Some(ApplyView::new(&plan, &selected));
    s.phase = Phase::Applying;
    s.log_scroll = 0;
    s.customer_scroll = 0;
    vec![Effect::Sync(Cmd::Apply {
        generation: s.generation,
        setup: Box::new(setup.clone()),
        plan,
        selected,
        confirm_cautions,
    })]
}

/// Send the cancel of the running apply (the app calls this too, to quit cleanly).
pub fn cancel(s: &mut State) -> Vec<Effect> {
    s.popup = None;
    match &mut s.apply {
        Some(a) if s.phase == Phase::Applying && !a.cancelling => {
            a.cancelling = true;
            vec![Effect::Sync(Cmd::Cancel {
                generation: s.generation,
            })]
        }
        _ => Vec::new(),
    }
}

fn change_style(s: &mut State, setup: &mut Setup, style: BillingStyle) -> Vec<Effect> {
    if !access_of(setup).is_admin() {
        s.note = Some((
            "Only the admin (the account that set cspsync up) may change the billing style.".into(),
            true,
        ));
        return Vec::new();
    }
    if let Err(e) = style.validate() {
        s.note = Some((e, true));
        return Vec::new();
    }
    setup.settings.sync.style = style;
    let mut text = format!("Billing style: {}.", style.describe());
    if let Some(plan) = &s.plan
        && plan.style != style
        && s.phase == Phase::Review
    {
        text.push_str(" The plan was made with another style: press r to plan again.");
    }
    s.note = Some((text, false));
    vec![Effect::Save(Box::new(setup.clone()))]
}

fn same_override(o: &PriceOverride, tenant_id: &str, stock_code: &str) -> bool {
    o.tenant_id.eq_ignore_ascii_case(tenant_id) && o.stock_code.eq_ignore_ascii_case(stock_code)
}

/// `$` on a write or a skipped line of one product: ask for the customer's price.
fn open_price(s: &mut State, setup: &Setup) {
    if !access_of(setup).is_admin() {
        s.note = Some((
            "Only the admin (the account that set cspsync up) may set prices.".into(),
            true,
        ));
        return;
    }
    let Some(plan) = s.plan.clone() else {
        return;
    };
    let target = match s.current_row() {
        Some(Row::Write(i)) => plan.writes.get(i).and_then(|w| {
            Some((
                w.customer_tenant_id.clone(),
                w.customer_name.clone(),
                w.product.clone(),
                w.stock_code.clone()?,
            ))
        }),
        Some(Row::Skipped(k)) => plan.skipped.get(k).and_then(|sk| {
            Some((
                sk.customer_tenant_id.clone(),
                sk.customer_name.clone(),
                sk.product.clone(),
                sk.stock_code.clone()?,
            ))
        }),
        _ => None,
    };
    let Some((tenant_id, customer, product, stock_code)) = target else {
        s.note = Some((
            "Put the cursor on a write or a skipped line of one product to set its price for that customer.".into(),
            true,
        ));
        return;
    };
    let typed = setup
        .settings
        .sync
        .price_overrides
        .iter()
        .find(|o| same_override(o, &tenant_id, &stock_code))
        .map(|o| o.unit_price.normalize().to_string())
        .unwrap_or_default();
    s.popup = Some(Popup::Price {
        tenant_id,
        customer,
        product,
        stock_code,
        typed,
        problem: None,
    });
}

/// Keys of the price popup: digits and `.`; Enter saves (empty: removes) and plans again.
fn price_key(s: &mut State, setup: &mut Setup, key: KeyEvent) -> Vec<Effect> {
    let Some(Popup::Price {
        tenant_id,
        customer,
        stock_code,
        typed,
        problem,
        ..
    }) = &mut s.popup
    else {
        return Vec::new();
    };
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Esc => s.popup = None,
        KeyCode::Backspace => {
            typed.pop();
            *problem = None;
        }
        KeyCode::Char('u') if ctrl => {
            typed.clear();
            *problem = None;
        }
        KeyCode::Char(c) if !ctrl && (c.is_ascii_digit() || c == '.') => {
            if typed.len() < 12 {
                typed.push(c);
            }
            *problem = None;
        }
        KeyCode::Char(_) => {
            *problem = Some("Only digits and a decimal point, e.g. 34.55.".into());
        }
        KeyCode::Enter => {
            let t = typed.trim().to_string();
            let price = if t.is_empty() {
                None
            } else {
                match t.parse::<Decimal>() {
                    Ok(p) if p > Decimal::ZERO && p.scale() <= 4 => Some(p),
                    _ => {
                        *problem = Some(
                            "Type the price per seat per month, e.g. 34.55 (more than 0, at most 4 decimal places); leave it empty to remove the override.".into(),
                        );
                        return Vec::new();
                    }
                }
            };
            let (tenant_id, customer, stock_code) =
                (tenant_id.clone(), customer.clone(), stock_code.clone());
            s.popup = None;
            let list = &mut setup.settings.sync.price_overrides;
            let had = list.len();
            list.retain(|o| !same_override(o, &tenant_id, &stock_code));
            let text = match price {
                Some(unit_price) => {
                    list.push(PriceOverride {
                        tenant_id,
                        stock_code: stock_code.clone(),
                        unit_price,
                    });
                    format!(
                        "{customer}: {stock_code} at {unit_price} a seat a month. Planning again…"
                    )
                }
                None if list.len() < had => {
                    format!(
                        "{customer}: the price override of {stock_code} is removed. Planning again…"
                    )
                }
                None => return Vec::new(),
            };
            let mut effects = vec![Effect::Save(Box::new(setup.clone()))];
            effects.extend(start_plan(s, setup));
            if s.note.as_ref().is_none_or(|(_, err)| !err) {
                s.note = Some((text, false));
            }
            return effects;
        }
        _ => {}
    }
    Vec::new()
}

fn open_audit(s: &mut State) -> Vec<Effect> {
    s.audit = Some(AuditView {
        loading: true,
        ..AuditView::default()
    });
    vec![Effect::Sync(Cmd::ReadAudit)]
}

fn confirm_key(s: &mut State, setup: &Setup, key: KeyEvent) -> Vec<Effect> {
    let sel = s.selection();
    let Some(Popup::Confirm { typed, problem }) = &mut s.popup else {
        return Vec::new();
    };
    if sel.cautioned.is_empty() {
        return match key.code {
            KeyCode::Enter | KeyCode::Char('y') | KeyCode::Char('Y') => {
                start_apply(s, setup, sel.writes, false)
            }
            KeyCode::Esc | KeyCode::Char('n') | KeyCode::Char('N') => {
                s.popup = None;
                Vec::new()
            }
            _ => Vec::new(),
        };
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Esc => s.popup = None,
        KeyCode::Backspace => {
            typed.pop();
            *problem = None;
        }
        KeyCode::Char('u') if ctrl => {
            typed.clear();
            *problem = None;
        }
        KeyCode::Char(c) if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) => {
            if typed.chars().count() < 16 {
                typed.push(c);
            }
            *problem = None;
        }
        KeyCode::Enter => {
            let t = typed.trim().to_lowercase();
            if t == "yes" {
                return start_apply(s, setup, sel.writes, true);
            }
            if !t.is_empty() {
                *problem = Some(
                    "Type yes to include the writes listed, or clear the field (Ctrl-U) to leave them out."
                        .into(),
                );
                return Vec::new();
            }
            let rest = sel.without_cautioned();
            if rest.is_empty() {
                *problem = Some(
                    "Every selected write needs your confirmation: type yes to apply them, or Esc."
                        .into(),
                );
                return Vec::new();
            }
            return start_apply(s, setup, rest, false);
        }
        _ => {}
    }
    Vec::new()
}

pub fn on_key(s: &mut State, setup: &mut Setup, key: KeyEvent) -> Vec<Effect> {
    if key.kind == KeyEventKind::Release {
        return Vec::new();
    }
    match s.popup {
        Some(Popup::Confirm { .. }) => return confirm_key(s, setup, key),
        Some(Popup::Price { .. }) => return price_key(s, setup, key),
        Some(Popup::Cancel) => {
            return match key.code {
                KeyCode::Enter | KeyCode::Char('y') | KeyCode::Char('Y') => cancel(s),
                KeyCode::Esc | KeyCode::Char('n') | KeyCode::Char('N') => {
                    s.popup = None;
                    Vec::new()
                }
                _ => Vec::new(),
            };
        }
        None => {}
    }
    if let Some(a) = &mut s.audit {
        let page = a.view_rows.get().max(1);
        match key.code {
            KeyCode::Char('l') | KeyCode::Esc => s.audit = None,
            KeyCode::Up | KeyCode::Char('k') => a.scroll = a.scroll.saturating_add(1),
            KeyCode::Down | KeyCode::Char('j') => a.scroll = a.scroll.saturating_sub(1),
            KeyCode::PageUp => a.scroll = a.scroll.saturating_add(page),
            KeyCode::PageDown => a.scroll = a.scroll.saturating_sub(page),
            KeyCode::Home => a.scroll = a.events.len(),
            KeyCode::End => a.scroll = 0,
            KeyCode::Char('r') if !a.loading => return open_audit(s),
            _ => {}
        }
        if let Some(a) = &mut s.audit {
            a.scroll = a.scroll.min(a.events.len().saturating_sub(1));
        }
        return Vec::new();
    }
    if s.detail.is_some() {
        if super::detail_key(&mut s.detail_scroll, key) {
            s.detail = None;
        }
        return Vec::new();
    }
    if key.code == KeyCode::Char('l') {
        return open_audit(s);
    }
    let style = setup.settings.sync.style;
    match s.phase.clone() {
        Phase::Idle => match key.code {
            KeyCode::Enter | KeyCode::Char('r') => return start_plan(s, setup),
            KeyCode::Char('b') => return change_style(s, setup, toggled_timing(style)),
            KeyCode::Char('p') => return change_style(s, setup, toggled_prorate(style)),
            _ => {}
        },
        Phase::Planning(_) => {
            if key.code == KeyCode::Esc {
                // The answer of the abandoned run is dropped by its generation.
                s.generation += 1;
                s.phase = Phase::Idle;
                s.note = Some(("Planning stopped; nothing was written.".into(), false));
            }
        }
        Phase::Review => {
            let page = s.view_rows.get().max(1);
            let last = s.rows.len().saturating_sub(1);
            match key.code {
                KeyCode::Down | KeyCode::Char('j') => s.cursor = (s.cursor + 1).min(last),
                KeyCode::Up | KeyCode::Char('k') => s.cursor = s.cursor.saturating_sub(1),
                KeyCode::PageDown => s.cursor = (s.cursor + page).min(last),
                KeyCode::PageUp => s.cursor = s.cursor.saturating_sub(page),
                KeyCode::Home => s.cursor = 0,
                KeyCode::End => s.cursor = last,
                KeyCode::Char(' ') => s.toggle_row(),
                KeyCode::Char('A') => s.toggle_all(),
                KeyCode::Enter => {
                    if let Some(r @ (Row::Write(_) | Row::Skipped(_))) = s.current_row() {
                        s.detail = Some(r);
                        s.detail_scroll = 0;
                    }
                }
                KeyCode::Char('a') => ask_apply(s, setup),
                KeyCode::Char('$') => open_price(s, setup),
                KeyCode::Char('r') => return start_plan(s, setup),
                KeyCode::Char('b') => return change_style(s, setup, toggled_timing(style)),
                KeyCode::Char('p') => return change_style(s, setup, toggled_prorate(style)),
                _ => {}
            }
        }
        Phase::Applying | Phase::Done => {
            let applying = s.phase == Phase::Applying;
            match key.code {
                KeyCode::Esc if applying && s.apply.as_ref().is_some_and(|a| !a.cancelling) => {
                    s.popup = Some(Popup::Cancel);
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    let n = s.apply.as_ref().map_or(0, |a| a.customers.len());
                    s.customer_scroll = (s.customer_scroll + 1).min(n.saturating_sub(1));
                }
                KeyCode::Up | KeyCode::Char('k') => {
                    s.customer_scroll = s.customer_scroll.saturating_sub(1)
                }
                KeyCode::PageUp => {
                    let n = s.apply.as_ref().map_or(0, |a| a.shown_log().len());
                    s.log_scroll = (s.log_scroll + 10).min(n.saturating_sub(1));
                }
                KeyCode::PageDown => s.log_scroll = s.log_scroll.saturating_sub(10),
                KeyCode::End => s.log_scroll = 0,
                KeyCode::Char('r') if !applying => return start_plan(s, setup),
                KeyCode::Char('R') if !applying => return vec![Effect::RunReconcile],
                KeyCode::Char('b') if !applying => {
                    return change_style(s, setup, toggled_timing(style));
                }
                KeyCode::Char('p') if !applying => {
                    return change_style(s, setup, toggled_prorate(style));
                }
                _ => {}
            }
        }
    }
    Vec::new()
}

fn toggled_timing(s: BillingStyle) -> BillingStyle {
    BillingStyle {
        timing: match s.timing {
            BillingTiming::Advance => BillingTiming::Arrears,
            BillingTiming::Arrears => BillingTiming::Advance,
        },
        ..s
    }
}

fn toggled_prorate(s: BillingStyle) -> BillingStyle {
    BillingStyle {
        prorate: !s.prorate,
        ..s
    }
}

pub fn on_msg(s: &mut State, setup: &mut Setup, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Progress {
            generation,
            progress,
        } if generation == s.generation && s.planning() => {
            s.phase = Phase::Planning(progress);
            Vec::new()
        }
        Msg::Planned {
            generation,
            result,
            rotated,
            xero,
        } if generation == s.generation && s.planning() => {
            let effects = keep_rotated(setup, rotated, xero);
            match result {
                Ok(plan) => s.set_plan(plan),
                Err(e) => {
                    s.phase = Phase::Idle;
                    s.note = Some((format!("Planning failed: {e}"), true));
                }
            }
            effects
        }
        Msg::Applying {
            generation,
            events,
            progress,
            now,
        } if generation == s.generation && s.applying() => {
            if let (Some(a), Some(plan)) = (&mut s.apply, &s.plan) {
                a.absorb(plan, events, progress, now);
                if !a.running() {
                    s.phase = Phase::Done;
                }
            }
            Vec::new()
        }
        Msg::Applied {
            generation,
            result,
            now,
            xero,
        } if generation == s.generation => {
            let effects = keep_rotated(setup, None, xero);
            if let (Some(a), Phase::Done, Err(e)) = (&mut s.apply, &s.phase, &result) {
                // The apply finished, but its journal or audit log could not be written.
                a.problems.push(e.clone());
            }
            if let Some(a) = &mut s.apply
                && s.phase == Phase::Applying
            {
                a.now = Some(now);
                match result {
                    Err(e) => a.fail(e),
                    Ok(()) if a.running() => a.fail(
                        "the apply ended without its summary; the audit log (l) has every write"
                            .into(),
                    ),
                    Ok(()) => {}
                }
                s.phase = Phase::Done;
            }
            effects
        }
        Msg::Audit(r) => {
            if let Some(a) = &mut s.audit {
                a.loading = false;
                a.scroll = 0;
                match r {
                    Ok(events) => {
                        a.events = events;
                        a.error = None;
                    }
                    Err(e) => a.error = Some(e),
                }
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// A popup takes every key (so `q`, digits and Tab do not leave it).
pub fn editing(s: &State) -> bool {
    s.popup.is_some()
}

pub fn unsaved(_s: &State) -> bool {
    false
}

/// Busy while planning or applying; done when the last apply wrote everything it was given.
pub fn status(s: &State, _setup: &Setup) -> Step {
    match s.phase {
        Phase::Planning(_) | Phase::Applying => Step::Busy,
        Phase::Done
            if s.apply.as_ref().is_some_and(|a| {
                a.error.is_none()
                    && a.counts.failed == 0
                    && a.finished.as_ref().is_some_and(|f| !f.cancelled)
            }) =>
        {
            Step::Done
        }
        _ => Step::ToDo,
    }
}

pub fn hints(s: &State) -> Vec<Hint> {
    match &s.popup {
        Some(Popup::Confirm { .. }) => {
            let sel = s.selection();
            return if sel.cautioned.is_empty() {
                vec![Hint::new("y/Enter", "apply"), Hint::new("n/Esc", "back")]
            } else {
                vec![
                    Hint::new("yes Enter", "apply all"),
                    Hint::new("Enter", "leave the ⚠ out"),
                    Hint::new("Esc", "back"),
                ]
            };
        }
        Some(Popup::Cancel) => {
            return vec![
                Hint::new("y", "cancel the apply"),
                Hint::new("n/Esc", "keep going"),
            ];
        }
        Some(Popup::Price { .. }) => {
            return vec![
                Hint::new("Enter", "save and plan again"),
                Hint::new("Esc", "back"),
            ];
        }
        None => {}
    }
    if s.audit.is_some() {
        return vec![
            Hint::new("↑/↓ PgUp/PgDn", "scroll"),
            Hint::new("r", "reload"),
            Hint::new("l/Esc", "close"),
        ];
    }
    if s.detail.is_some() {
        return vec![Hint::new("↑/↓", "scroll"), Hint::new("Esc", "close")];
    }
    // Short: at 80 columns the footer also holds the app's own keys.
    let mut h = Vec::new();
    match s.phase {
        Phase::Idle => {
            h.push(Hint::new("Enter", "plan"));
            h.push(Hint::new("b/p", "billing"));
        }
        Phase::Planning(_) => h.push(Hint::new("Esc", "stop")),
        Phase::Review => {
            h.push(Hint::new("Space", "select"));
            h.push(Hint::new("A", "all"));
            h.push(Hint::new("a", "apply"));
            if matches!(s.current_row(), Some(Row::Write(_) | Row::Skipped(_))) {
                h.push(Hint::new("Enter", "detail"));
                h.push(Hint::new("$", "price"));
            }
            h.push(Hint::new("r", "re-plan"));
        }
        Phase::Applying => {
            if s.apply.as_ref().is_some_and(|a| !a.cancelling) {
                h.push(Hint::new("Esc", "cancel"));
            }
            h.push(Hint::new("↑/↓", "customers"));
            h.push(Hint::new("PgUp/PgDn", "log"));
        }
        Phase::Done => {
            h.push(Hint::new("R", "reconcile"));
            h.push(Hint::new("r", "re-plan"));
            h.push(Hint::new("PgUp/PgDn", "log"));
        }
    }
    h.push(Hint::new("l", "audit log"));
    h
}

pub fn render(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    view::render(s, setup, theme, frame, area);
}

pub async fn run(cmd: Cmd, svc: Arc<Services>, tx: Sender<app::Msg>) {
    run_impl::run(cmd, svc, tx).await
}
