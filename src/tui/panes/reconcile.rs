//! The Reconcile tab (issue 5 §4): Enter (or `r`) fetches Dicker Data, Microsoft and the PSA in
//! the background (progress: customers done / found) and reconciles them with the pure domain
//! (`domain::reconcile`); the summary bar reads `Summary::headline()` and the table lists the
//! mismatched lines (only the rows on screen are drawn, so 20,000 lines stay fast). Enter on a
//! line opens its explanation: every number with the API records it came from and when.
//!
//! Keys: Enter/r run (Enter on a line: detail); ↑/↓ j/k PgUp/PgDn Home/End move; `a` shows or
//! hides in-line lines; `s` cycles the sort column, `S` reverses; `/` filters by customer,
//! product or status as you type (Enter keeps it, Esc clears it); `e` exports CSV, `E` JSON
//! to the data directory; Esc closes the detail.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;
use tokio::sync::mpsc::Sender;

#[path = "reconcile_view.rs"]
mod view;

use super::partner::common::Rotated;
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
    pub result: Option<Arc<Reconciliation>>,
    /// In-line lines shown too.
    pub show_all: bool,
    pub sort: Sort,
    pub reverse: bool,
    pub filter: String,
    /// `/` pressed: keys go to the filter.
    pub typing: bool,
    /// Indices into `result.lines` shown, in order.
    pub view: Vec<usize>,
    pub cursor: usize,
    /// First row drawn (kept by render so the cursor stays on screen).
    pub offset: Cell<usize>,
    /// Table rows the last render had room for (for PgUp/PgDn).
    pub view_rows: Cell<usize>,
    /// The line whose explanation is open.
    pub detail: Option<usize>,
    pub detail_scroll: u16,
    /// The outcome of the last export (path, or error).
    pub note: Option<(String, bool)>,
}

impl State {
    pub fn new(_setup: &Setup) -> State {
        State::default()
    }

    pub fn running(&self) -> bool {
        matches!(self.phase, Phase::Running(_))
    }

    /// The line under the cursor.
    pub fn current(&self) -> Option<&Line> {
        let i = *self.view.get(self.cursor)?;
        self.result.as_ref()?.lines.get(i)
    }

    /// Rebuild `view` from the result, the in-line toggle, the filter and the sort.
    pub fn rebuild(&mut self) {
        let Some(r) = self.result.clone() else {
            self.view.clear();
            self.cursor = 0;
            return;
        };
        let needle = self.filter.trim().to_lowercase();
        let mut v: Vec<usize> = r
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| self.show_all || !l.is_in_line())
            .filter(|(_, l)| needle.is_empty() || matches(l, &needle))
            .map(|(i, _)| i)
            .collect();
        let key = |i: &usize| r.lines.get(*i);
        match self.sort {
            Sort::Default => {}
            Sort::Customer => v.sort_by_cached_key(|i| {
                key(i).map(|l| {
                    (
                        l.customer_name.to_lowercase(),
                        l.product_name.to_lowercase(),
                    )
                })
            }),
            Sort::Product => v.sort_by_cached_key(|i| {
                key(i).map(|l| {
                    (
                        l.product_name.to_lowercase(),
                        l.customer_name.to_lowercase(),
                    )
                })
            }),
            // Biggest money first: the default direction is the useful one.
            Sort::Money => {
                v.sort_by_cached_key(|i| std::cmp::Reverse(key(i).map(|l| l.monthly_impact)))
            }
            Sort::Renews => {
                v.sort_by_cached_key(|i| key(i).map(|l| (l.renewal_date.is_none(), l.renewal_date)))
            }
            Sort::Statuses => v.sort_by_cached_key(|i| key(i).map(|l| l.statuses.clone())),
        }
        if self.reverse {
            v.reverse();
        }
        self.view = v;
        self.cursor = self.cursor.min(self.view.len().saturating_sub(1));
    }
}

fn matches(l: &Line, needle: &str) -> bool {
    l.customer_name.to_lowercase().contains(needle)
        || l.product_name.to_lowercase().contains(needle)
        || l.statuses
            .iter()
            .any(|s| s.label().to_lowercase().contains(needle) || s.as_str().contains(needle))
}

/// Background results.
#[derive(Debug, Clone)]
pub enum Msg {
    Progress {
        generation: u64,
        progress: FetchProgress,
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

pub fn on_key(s: &mut State, setup: &mut Setup, key: KeyEvent) -> Vec<Effect> {
    if key.kind == KeyEventKind::Release {
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
                s.cursor = 0;
                s.rebuild();
            }
            _ => {}
        }
        return Vec::new();
    }
    if s.detail.is_some() {
        match key.code {
            KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace => {
                s.detail = None;
                s.detail_scroll = 0;
            }
            KeyCode::Down | KeyCode::Char('j') => {
                s.detail_scroll = s.detail_scroll.saturating_add(1)
            }
            KeyCode::Up | KeyCode::Char('k') => s.detail_scroll = s.detail_scroll.saturating_sub(1),
            KeyCode::PageDown => s.detail_scroll = s.detail_scroll.saturating_add(10),
            KeyCode::PageUp => s.detail_scroll = s.detail_scroll.saturating_sub(10),
            KeyCode::Home => s.detail_scroll = 0,
            _ => {}
        }
        return Vec::new();
    }
    let page = s.view_rows.get().max(1);
    let last = s.view.len().saturating_sub(1);
    match key.code {
        KeyCode::Enter if s.result.is_some() && !s.view.is_empty() && !s.running() => {
            s.detail = s.view.get(s.cursor).copied();
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
        Msg::Finished {
            generation,
            result,
            rotated,
            xero,
        } if generation == s.generation => {
            let mut effects = Vec::new();
            let mut changed = rotated.is_some_and(|r| r.apply(setup));
            if let Some(x) = xero
                && setup.secrets.xero_refresh_token.as_deref() == Some(x.used.expose())
                && !x.new.is_empty()
            {
                setup.secrets.xero_refresh_token = Some(x.new.expose().to_string());
                changed = true;
            }
            if changed {
                effects.push(Effect::Save(Box::new(setup.clone())));
            }
            match result {
                Ok(r) => {
                    s.result = Some(r);
                    s.phase = Phase::Done;
                    s.detail = None;
                    s.cursor = 0;
                    s.rebuild();
                }
                Err(e) => s.phase = Phase::Failed(e),
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
    s.typing
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
    if s.result.is_some() && !s.view.is_empty() {
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
        h.push(Hint::new("s/S", "sort"));
        h.push(Hint::new("/", "filter"));
        h.push(Hint::new("e/E", "export"));
    }
    h
}

pub fn render(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    view::render(s, setup, theme, frame, area);
}

pub async fn run(cmd: Cmd, svc: Arc<Services>, tx: Sender<app::Msg>) {
    match cmd {
        Cmd::Run { generation, setup } => {
            let (result, rotated, xero) = run_reconcile(generation, &setup, &svc, &tx).await;
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

async fn run_reconcile(
    generation: u64,
    setup: &Setup,
    svc: &Services,
    tx: &Sender<app::Msg>,
) -> (
    Result<Reconciliation, String>,
    Option<Rotated>,
    Option<Rotated>,
) {
    use crate::config::PsaKindSetting;
    use crate::engine::fetch;
    let settings = &setup.settings;
    let secrets = &setup.secrets;
    // No PSA chosen: reconcile Dicker Data and Microsoft only.
    let psa = (settings.psa.kind == PsaKindSetting::None).then_some(crate::demo::PsaKind::None);
    let (sources, xero) =
        match crate::run::reconcile_sources(&svc.ctx, settings, secrets, psa).await {
            Ok(s) => s,
            Err(e) => return (Err(sentence(e)), None, None),
        };
    let (ptx, mut prx) = tokio::sync::watch::channel(FetchProgress::default());
    let fwd_tx = tx.clone();
    let forward = tokio::spawn(async move {
        while prx.changed().await.is_ok() {
            let progress = prx.borrow_and_update().clone();
            let _ = fwd_tx
                .send(app::Msg::Reconcile(Msg::Progress {
                    generation,
                    progress,
                }))
                .await;
        }
    });
    let snap = fetch::fetch(&sources, &ptx).await;
    drop(ptx);
    let _ = forward.await;
    let rotated = Rotated::of(
        secrets.microsoft_refresh_token.as_deref(),
        sources.microsoft.session.refresh_token().secret(),
    );
    let xero = xero.and_then(|x| {
        Rotated::of(
            secrets.xero_refresh_token.as_deref(),
            x.refresh_token().secret(),
        )
    });
    let snap = match snap {
        Ok(s) => s,
        Err(e) => return (Err(format!("{e}. {}", e.hint())), rotated, xero),
    };
    // Without Dicker Data's prices the money comes from the PSA (as the reconcile command).
    let prices = crate::run::distributor_prices(&sources.dicker_data, &snap)
        .await
        .unwrap_or_default();
    let opts = crate::domain::Options {
        prices,
        ..crate::domain::Options::default()
    };
    let r = crate::domain::reconcile(&snap, &opts).map_err(|e| format!("{e}. {}", e.hint()));
    (r, rotated, xero)
}

/// The setup message as one sentence pointing at the tabs, not the command line.
fn sentence(e: String) -> String {
    let e = e.replace(
        "finish the setup (run `cspsync` and complete the wizard) or check it with `cspsync doctor`",
        "finish the setup tabs first",
    );
    let mut e = e.trim_end_matches('.').to_string();
    e.push('.');
    e
}
