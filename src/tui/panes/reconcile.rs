//! The Reconcile tab (issue 5 §4): Enter (or `r`) fetches Dicker Data, Microsoft and the PSA in
//! the background (progress: customers done / found) and reconciles them with the pure domain
//! (`domain::reconcile`); the summary bar reads `Summary::headline()` and the table lists the
//! mismatched lines (only the rows on screen are drawn, so 20,000 lines stay fast). Enter on a
//! line opens its explanation: every number with the API records it came from and when.
//!
//! Keys: Enter/r run (Enter on a line: detail); ↑/↓ j/k PgUp/PgDn Home/End move; `a` shows or
//! hides in-line lines; `s` cycles the sort column, `S` reverses; `/` filters by customer,
//! product or status as you type (Enter keeps it, Esc clears it); `g` groups by customer;
//! `m` opens the Mapping view (`panes::mapping`: accept suggestions, link by hand — a saved
//! decision runs the reconciliation again); `e` exports CSV, `E` JSON to the data directory;
//! Esc closes the detail.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;
use tokio::sync::mpsc::Sender;

#[path = "reconcile_live.rs"]
pub(crate) mod live;
#[path = "reconcile_table.rs"]
mod table;
#[path = "reconcile_view.rs"]
mod view;

use table::Index;
pub use table::{Group, LineKey, Row};

use super::partner::common::{Rotated, keep_rotated};
use super::{Hint, Step};
use crate::domain::{Line, Reconciliation};
use crate::engine::fetch::FetchProgress;
use crate::tui::app::{self, Effect, Setup};
use crate::tui::runner::Services;
use crate::tui::theme::Theme;

/// Where the run is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Phase {
    /// Nothing run yet.
    #[default]
    Idle,
    Running(FetchProgress),
    /// The last run failed (one sentence and what to do); results of an earlier run stay.
    Failed(String),
    Done,
}

/// The column the table is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// The reconciliation's own order.
    #[default]
    Default,
    Customer,
    Product,
    Money,
    Renews,
    Statuses,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Default => Sort::Customer,
            Sort::Customer => Sort::Product,
            Sort::Product => Sort::Money,
            Sort::Money => Sort::Renews,
            Sort::Renews => Sort::Statuses,
            Sort::Statuses => Sort::Default,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Sort::Default => "default",
            Sort::Customer => "customer",
            Sort::Product => "product",
            Sort::Money => "$/month",
            Sort::Renews => "renews",
            Sort::Statuses => "statuses",
        }
    }
}

/// Export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

#[derive(Debug, Clone, Default)]
pub struct State {
    pub generation: u64,
    pub phase: Phase,
    /// What the table shows: the last result, or — while a run fetches — the customers
    /// reconciled so far.
    pub result: Option<Arc<Reconciliation>>,
    /// `result` is a partial reconciliation of a run still fetching.
    pub partial: bool,
    /// Customers whose data the partial result has.
    pub partial_customers: usize,
    /// The last complete result (shown again if a new run fails).
    pub complete: Option<Arc<Reconciliation>>,
    /// Sort and filter keys of `result`.
    index: Arc<Index>,
    /// In-line lines shown too.
    pub show_all: bool,
    pub sort: Sort,
    pub reverse: bool,
    pub filter: String,
    /// `/` pressed: keys go to the filter.
    pub typing: bool,
    /// One header row per customer, its lines under it.
    pub grouped: bool,
    /// Customers (tenant ids) whose group is collapsed.
    pub collapsed: BTreeSet<String>,
    /// The rows shown, in order.
    pub view: Vec<Row>,
    /// The customers' headers (grouped view); `Row::Group` indexes it.
    pub groups: Vec<Group>,
    pub cursor: usize,
    /// First row drawn (kept by render so the cursor stays on screen).
    pub offset: Cell<usize>,
    /// Table rows the last render had room for (for PgUp/PgDn).
    pub view_rows: Cell<usize>,
    /// The line whose explanation is open (an index into `result.lines`).
    pub detail: Option<usize>,
    pub detail_scroll: u16,
    /// The outcome of the last export (path, or error).
    pub note: Option<(String, bool)>,
    /// The Mapping view (`m`), open over the table.
    pub mapping: Option<super::mapping::State>,
}

/// What the cursor is on, kept across a rebuild or a new result.
enum Anchor {
    Line(LineKey),
    Group(String),
}

impl State {
    pub fn new(_setup: &Setup) -> State {
        State::default()
    }

    pub fn running(&self) -> bool {
        matches!(self.phase, Phase::Running(_))
    }

    /// The line under the cursor (none on a customer's header).
    pub fn current(&self) -> Option<&Line> {
        match self.view.get(self.cursor)? {
            Row::Line(i) => self.result.as_ref()?.lines.get(*i),
            Row::Group(_) => None,
        }
    }

    /// The customer's header under the cursor.
    pub fn current_group(&self) -> Option<&Group> {
        match self.view.get(self.cursor)? {
            Row::Group(g) => self.groups.get(*g),
            Row::Line(_) => None,
        }
    }

    /// The lines shown (not the headers), as indices into `result.lines`, in order.
    pub fn shown_lines(&self) -> Vec<usize> {
        self.view
            .iter()
            .filter_map(|r| match r {
                Row::Line(i) => Some(*i),
                Row::Group(_) => None,
            })
            .collect()
    }

    fn anchor(&self) -> Option<Anchor> {
        match self.view.get(self.cursor)? {
            Row::Line(i) => Some(Anchor::Line(LineKey::of(
                self.result.as_ref()?.lines.get(*i)?,
            ))),
            Row::Group(g) => Some(Anchor::Group(self.groups.get(*g)?.tenant_id.clone())),
        }
    }

    /// Show `r` (a partial result while the run fetches, else the final one). The cursor and
    /// an open explanation stay on the same line as rows arrive.
    pub fn set_result(&mut self, r: Arc<Reconciliation>, partial: bool) {
        let anchor = self.anchor();
        let detail = self
            .detail
            .and_then(|i| self.result.as_ref()?.lines.get(i).map(LineKey::of));
        self.index = Arc::new(Index::build(&r));
        self.detail = detail.and_then(|k| r.lines.iter().position(|l| k.is(l)));
        if self.detail.is_none() {
            self.detail_scroll = 0;
        }
        self.result = Some(r.clone());
        self.partial = partial;
        if !partial {
            self.complete = Some(r);
        }
        self.rebuild_at(anchor, true);
    }

    /// Rebuild `view` from the result, the in-line toggle, the filter, the sort and the
    /// grouping; the cursor stays on the row it was on when that row is still shown.
    pub fn rebuild(&mut self) {
        let anchor = self.anchor();
        self.rebuild_at(anchor, false);
    }

    /// `same_screen_row`: new data arrived (not a key), so the cursor's row stays where it
    /// is on screen rather than the rows moving under it.
    fn rebuild_at(&mut self, anchor: Option<Anchor>, same_screen_row: bool) {
        let Some(r) = self.result.clone() else {
            self.view.clear();
            self.groups.clear();
            self.cursor = 0;
            return;
        };
        let needle = self.filter.trim().to_lowercase();
        let (view, groups) = table::rows(
            &r,
            &self.index,
            &table::View {
                show_all: self.show_all,
                sort: self.sort,
                reverse: self.reverse,
                needle: &needle,
                grouped: self.grouped,
                collapsed: &self.collapsed,
            },
        );
        self.view = view;
        self.groups = groups;
        let old = self.cursor;
        let found = match anchor {
            Some(Anchor::Line(k)) => self.view.iter().position(|row| match row {
                Row::Line(i) => r.lines.get(*i).is_some_and(|l| k.is(l)),
                Row::Group(_) => false,
            }),
            Some(Anchor::Group(t)) => self.view.iter().position(|row| match row {
                Row::Group(g) => self.groups.get(*g).is_some_and(|g| g.tenant_id == t),
                Row::Line(_) => false,
            }),
            None => None,
        };
        match found {
            Some(c) => {
                if same_screen_row {
                    // Rows arriving above it push the first row shown down by as many.
                    let off = self.offset.get();
                    let moved = if c >= old {
                        off.saturating_add(c - old)
                    } else {
                        off.saturating_sub(old - c)
                    };
                    self.offset.set(moved);
                }
                self.cursor = c;
            }
            None => self.cursor = old.min(self.view.len().saturating_sub(1)),
        }
    }

    /// Collapse or expand the customer under the cursor (grouped view).
    fn toggle_group(&mut self) {
        if let Some(g) = self.current_group() {
            let t = g.tenant_id.clone();
            if !self.collapsed.remove(&t) {
                self.collapsed.insert(t);
            }
            self.rebuild();
        }
    }
}

/// Background results.
#[derive(Debug, Clone)]
pub enum Msg {
    Progress {
        generation: u64,
        progress: FetchProgress,
    },
    /// The customers fetched so far, reconciled (Dicker Data and the PSA complete): the table
    /// fills while the run goes on.
    Partial {
        generation: u64,
        result: Arc<Reconciliation>,
        /// Customers whose Microsoft data is in it.
        customers: usize,
    },
    Finished {
        generation: u64,
        result: Result<Arc<Reconciliation>, String>,
        /// The Microsoft sign-in rotated during the run: keep the new refresh token.
        rotated: Option<Rotated>,
        /// Xero rotates its refresh token on every use (§7.1): keep the new one.
        xero: Option<Rotated>,
    },
    Exported(Result<PathBuf, String>),
}

/// Background work.
#[derive(Debug, Clone)]
pub enum Cmd {
    Run {
        generation: u64,
        setup: Box<Setup>,
    },
    Export {
        format: Format,
        result: Arc<Reconciliation>,
    },
}

/// Nothing is kept between runs.
#[derive(Debug, Default)]
pub struct Runtime {}

fn start(s: &mut State, setup: &Setup) -> Vec<Effect> {
    s.generation += 1;
    s.phase = Phase::Running(FetchProgress::default());
    s.note = None;
    vec![Effect::Reconcile(Cmd::Run {
        generation: s.generation,
        setup: Box::new(setup.clone()),
    })]
}

/// A run asked for from elsewhere (the Sync tab, after an apply): the detail and the filter
/// typing close, and a run starts unless one is under way or the mapping view is open.
pub fn run_again(s: &mut State, setup: &Setup) -> Vec<Effect> {
    s.detail = None;
    s.typing = false;
    if s.running() || s.mapping.is_some() {
        return Vec::new();
    }
    start(s, setup)
}

pub fn on_key(s: &mut State, setup: &mut Setup, key: KeyEvent) -> Vec<Effect> {
    if key.kind == KeyEventKind::Release {
        return Vec::new();
    }
    if let Some(m) = &mut s.mapping {
        return match super::mapping::on_key(m, setup, key) {
            super::mapping::Action::None => Vec::new(),
            super::mapping::Action::Close => {
                s.mapping = None;
                Vec::new()
            }
            // A decision was saved: reconcile again so the table shows it.
            super::mapping::Action::Changed(mut effects) => {
                if !s.running() {
                    effects.extend(start(s, setup));
                }
                effects
            }
        };
    }
    if key.code == KeyCode::Char('m') && !s.typing && s.detail.is_none() && !s.partial {
        if let Some(r) = &s.complete {
            s.mapping = Some(super::mapping::State::new(r.clone(), setup));
        }
        return Vec::new();
    }
    if s.typing {
        match key.code {
            KeyCode::Enter => s.typing = false,
            KeyCode::Esc => {
                s.typing = false;
                s.filter.clear();
                s.rebuild();
            }
            KeyCode::Backspace => {
                s.filter.pop();
                s.rebuild();
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                s.filter.clear();
                s.rebuild();
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                s.filter.push(c);
                s.rebuild();
            }
            _ => {}
        }
        return Vec::new();
    }
    if s.detail.is_some() {
        if super::detail_key(&mut s.detail_scroll, key) {
            s.detail = None;
        }
        return Vec::new();
    }
    let page = s.view_rows.get().max(1);
    let last = s.view.len().saturating_sub(1);
    match key.code {
        KeyCode::Enter if s.current_group().is_some() => s.toggle_group(),
        KeyCode::Enter if s.current().is_some() => {
            s.detail = s.view.get(s.cursor).and_then(|r| match r {
                Row::Line(i) => Some(*i),
                Row::Group(_) => None,
            });
            s.detail_scroll = 0;
        }
        KeyCode::Enter | KeyCode::Char('r') if !s.running() => return start(s, setup),
        KeyCode::Down | KeyCode::Char('j') => s.cursor = (s.cursor + 1).min(last),
        KeyCode::Up | KeyCode::Char('k') => s.cursor = s.cursor.saturating_sub(1),
        KeyCode::PageDown => s.cursor = (s.cursor + page).min(last),
        KeyCode::PageUp => s.cursor = s.cursor.saturating_sub(page),
        KeyCode::Home => s.cursor = 0,
        KeyCode::End => s.cursor = last,
        KeyCode::Char('a') if s.result.is_some() => {
            s.show_all = !s.show_all;
            s.rebuild();
        }
        KeyCode::Char('g') if s.result.is_some() => {
            s.grouped = !s.grouped;
            s.rebuild();
        }
        KeyCode::Char('s') if s.result.is_some() => {
            s.sort = s.sort.next();
            s.reverse = false;
            s.rebuild();
        }
        KeyCode::Char('S') if s.result.is_some() => {
            s.reverse = !s.reverse;
            s.rebuild();
        }
        KeyCode::Char('/') if s.result.is_some() => s.typing = true,
        KeyCode::Esc if !s.filter.is_empty() => {
            s.filter.clear();
            s.rebuild();
        }
        KeyCode::Char('e' | 'E') if s.partial => {
            s.note = Some((
                "The run is still fetching: export once it has finished.".into(),
                true,
            ));
        }
        KeyCode::Char(c @ ('e' | 'E')) => {
            if let Some(r) = &s.result {
                s.note = Some(("Exporting…".into(), false));
                return vec![Effect::Reconcile(Cmd::Export {
                    format: if c == 'e' { Format::Csv } else { Format::Json },
                    result: r.clone(),
                })];
            }
        }
        _ => {}
    }
    Vec::new()
}

pub fn on_msg(s: &mut State, setup: &mut Setup, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Progress {
            generation,
            progress,
        } if generation == s.generation && s.running() => {
            s.phase = Phase::Running(progress);
            Vec::new()
        }
        Msg::Partial {
            generation,
            result,
            customers,
        } if generation == s.generation && s.running() => {
            s.partial_customers = customers;
            s.set_result(result, true);
            Vec::new()
        }
        Msg::Finished {
            generation,
            result,
            rotated,
            xero,
        } if generation == s.generation => {
            let effects = keep_rotated(setup, rotated, xero);
            match result {
                Ok(r) => {
                    s.phase = Phase::Done;
                    if let Some(m) = &mut s.mapping {
                        super::mapping::refresh(m, r.clone());
                    }
                    s.set_result(r, false);
                }
                Err(e) => {
                    s.phase = Phase::Failed(e);
                    // A half-filled table is not a result: back to the last complete one.
                    if s.partial {
                        match s.complete.clone() {
                            Some(c) => s.set_result(c, false),
                            None => {
                                s.result = None;
                                s.partial = false;
                                s.detail = None;
                                s.rebuild();
                            }
                        }
                    }
                }
            }
            effects
        }
        Msg::Exported(r) => {
            s.note = Some(match r {
                Ok(p) => (format!("Exported to {}", p.display()), false),
                Err(e) => (e, true),
            });
            Vec::new()
        }
        _ => Vec::new(),
    }
}

pub fn editing(s: &State) -> bool {
    // The Mapping view has its own keys (digits, Tab, q) until Esc closes it.
    s.typing || s.mapping.is_some()
}

pub fn unsaved(_s: &State) -> bool {
    false
}

/// Done once a reconciliation ran (this session); never a wizard step to complete.
pub fn status(s: &State, _setup: &Setup) -> Step {
    if s.running() {
        Step::Busy
    } else if s.result.is_some() {
        Step::Done
    } else {
        Step::ToDo
    }
}

pub fn hints(s: &State) -> Vec<Hint> {
    if let Some(m) = &s.mapping {
        return super::mapping::hints(m);
    }
    if s.typing {
        return vec![
            Hint::new("type", "filter"),
            Hint::new("Enter", "keep"),
            Hint::new("Esc", "clear"),
        ];
    }
    if s.detail.is_some() {
        return vec![Hint::new("↑/↓", "scroll"), Hint::new("Esc", "close")];
    }
    let mut h = Vec::new();
    if let Some(g) = s.current_group() {
        h.push(Hint::new(
            "Enter",
            if g.collapsed { "expand" } else { "collapse" },
        ));
    } else if s.current().is_some() {
        h.push(Hint::new("Enter", "explain"));
    }
    if !s.running() {
        h.push(Hint::new(
            if s.result.is_some() { "r" } else { "Enter/r" },
            "run",
        ));
    }
    if s.result.is_some() {
        h.push(Hint::new(
            "a",
            if s.show_all {
                "hide in-line"
            } else {
                "show all"
            },
        ));
        h.push(Hint::new("g", if s.grouped { "ungroup" } else { "group" }));
        h.push(Hint::new("s/S", "sort"));
        h.push(Hint::new("/", "filter"));
        if !s.partial {
            h.push(Hint::new("m", "mapping"));
            h.push(Hint::new("e/E", "export"));
        }
    }
    h
}

pub fn render(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    if let Some(m) = &s.mapping {
        return super::mapping::render(m, setup, theme, frame, area);
    }
    view::render(s, setup, theme, frame, area);
}

pub async fn run(cmd: Cmd, svc: Arc<Services>, tx: Sender<app::Msg>) {
    match cmd {
        Cmd::Run { generation, setup } => {
            let (result, rotated, xero) = live::run_reconcile(generation, &setup, &svc, &tx).await;
            let _ = tx
                .send(app::Msg::Reconcile(Msg::Finished {
                    generation,
                    result: result.map(Arc::new),
                    rotated,
                    xero,
                }))
                .await;
        }
        Cmd::Export { format, result } => {
            let dir = svc.config.data_dir();
            let r = tokio::task::spawn_blocking(move || export(&dir, format, &result, Utc::now()))
                .await
                .unwrap_or_else(|e| Err(format!("the export task failed: {e}")));
            let _ = tx.send(app::Msg::Reconcile(Msg::Exported(r))).await;
        }
    }
}

/// Write the reconciliation to `dir` as `reconcile-<time>.csv|json`; returns the path.
pub fn export(
    dir: &std::path::Path,
    format: Format,
    r: &Reconciliation,
    at: DateTime<Utc>,
) -> Result<PathBuf, String> {
    let (ext, text) = match format {
        Format::Csv => ("csv", crate::domain::export::to_csv(r)),
        Format::Json => {
            let mut t = crate::domain::export::to_json(r);
            t.push('\n');
            ("json", t)
        }
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "Cannot create {} ({e}); check its permissions.",
            dir.display()
        )
    })?;
    let path = dir.join(format!("reconcile-{}.{ext}", at.format("%Y%m%d-%H%M%S")));
    std::fs::write(&path, text).map_err(|e| {
        format!(
            "Cannot write {} ({e}); check its permissions.",
            path.display()
        )
    })?;
    Ok(path)
}
