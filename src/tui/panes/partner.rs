//! The Partner Center tab (issue 3 §4): "Authorise" obtains a Partner Center token with the
//! Microsoft sign-in and lists the customers found (reference/external-apis.md §3.2, page by
//! page), each with its GDAP status from Graph (§2.6): customers without an active GDAP
//! relationship cannot be reconciled. A 401/403 is explained with what to check (the Admin
//! agent or Global administrator role, MFA). Done, and saved, once authorised.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use tokio::sync::mpsc::Sender;

#[path = "partner_common.rs"]
pub mod common;

use super::{Hint, Step};
use crate::api::error::{ApiError, ErrorKind};
use crate::api::graph::DelegatedAdminRelationship;
use crate::api::partnercenter::Customer;
use crate::connect;
use crate::tui::app::{self, Effect, Setup};
use crate::tui::runner::Services;
use crate::tui::theme::Theme;
use common::Rotated;

/// Customers asked for per page (§3.2 allows 1..500).
pub const PAGE_SIZE: u32 = 200;

/// A customer's GDAP relationship with the MSP (§2.6), as the table shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gdap {
    Active,
    /// Approval pending (or activating): not usable yet.
    Pending,
    /// Expired or terminated.
    Expired,
    /// No relationship at all.
    None,
}

impl Gdap {
    pub fn label(self) -> &'static str {
        match self {
            Gdap::Active => "active",
            Gdap::Pending => "pending",
            Gdap::Expired => "expired",
            Gdap::None => "none",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Gdap::Active => 3,
            Gdap::Pending => 2,
            Gdap::Expired => 1,
            Gdap::None => 0,
        }
    }

    fn of_status(status: Option<&str>) -> Gdap {
        let s = status.unwrap_or("").trim().to_ascii_lowercase();
        match s.as_str() {
            "active" => Gdap::Active,
            "approvalpending" | "activating" | "created" | "approved" => Gdap::Pending,
            _ => Gdap::Expired,
        }
    }
}

/// Each customer tenant's best GDAP status (a customer can have several relationships: any
/// active one makes it active). Keys are lower-case tenant ids.
pub fn gdap_by_tenant(rels: &[DelegatedAdminRelationship]) -> HashMap<String, Gdap> {
    let mut out: HashMap<String, Gdap> = HashMap::new();
    for r in rels {
        let Some(t) = r.tenant_id() else { continue };
        let g = Gdap::of_status(r.status.as_deref());
        let e = out.entry(t.trim().to_ascii_lowercase()).or_insert(g);
        if g.rank() > e.rank() {
            *e = g;
        }
    }
    out
}

/// One customer row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub domain: String,
    pub tenant_id: String,
    pub relationship: String,
}

impl Row {
    pub fn of(c: &Customer) -> Row {
        Row {
            name: c.name().trim().to_string(),
            domain: c.domain().unwrap_or("").trim().to_string(),
            tenant_id: c.id.trim().to_string(),
            relationship: c
                .relationship_to_partner
                .as_deref()
                .unwrap_or("")
                .trim()
                .to_string(),
        }
    }
}

/// Where the authorisation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Idle,
    /// Enter was pressed without a Microsoft sign-in.
    NotSignedIn,
    Authorising,
    /// Every customer page was read.
    Listed {
        at: DateTime<Utc>,
    },
    Failed(ApiError),
}

/// The GDAP column's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GdapState {
    Idle,
    Loading,
    Known(HashMap<String, Gdap>),
    Failed(ApiError),
}

#[derive(Debug, Clone)]
pub struct State {
    pub phase: Phase,
    pub generation: u64,
    pub customers: Vec<Row>,
    pub pages: usize,
    pub gdap: GdapState,
    /// The first table row shown.
    pub scroll: usize,
    /// The step was saved this session.
    pub just_saved: bool,
    /// Table rows visible at the last draw (for PgUp/PgDn); layout feedback, like
    /// ratatui's own table state.
    view_rows: ViewRows,
}

impl Default for State {
    fn default() -> Self {
        State {
            phase: Phase::Idle,
            generation: 0,
            customers: Vec::new(),
            pages: 0,
            gdap: GdapState::Idle,
            scroll: 0,
            just_saved: false,
            view_rows: ViewRows::new(10),
        }
    }
}

impl State {
    pub fn new(_setup: &Setup) -> State {
        State::default()
    }

    /// A customer's GDAP status, when known.
    pub fn gdap_of(&self, tenant_id: &str) -> Option<Gdap> {
        match &self.gdap {
            GdapState::Known(m) => Some(
                m.get(&tenant_id.trim().to_ascii_lowercase())
                    .copied()
                    .unwrap_or(Gdap::None),
            ),
            _ => None,
        }
    }

    /// Customers without an active GDAP relationship, when known.
    pub fn without_gdap(&self) -> Option<usize> {
        match &self.gdap {
            GdapState::Known(_) => Some(
                self.customers
                    .iter()
                    .filter(|c| self.gdap_of(&c.tenant_id) != Some(Gdap::Active))
                    .count(),
            ),
            _ => None,
        }
    }

    fn max_scroll(&self) -> usize {
        self.customers
            .len()
            .saturating_sub(usize::from(self.view_rows.get().max(1)))
    }

    fn scroll_by(&mut self, delta: isize) {
        let to = if delta < 0 {
            self.scroll.saturating_sub(delta.unsigned_abs())
        } else {
            self.scroll.saturating_add(delta.unsigned_abs())
        };
        self.scroll = to.min(self.max_scroll());
    }
}

/// How many table rows the last draw showed. Written while drawing (layout feedback, as
/// ratatui's own table state is), so atomic: the state stays `Send + Sync`.
#[derive(Debug)]
struct ViewRows(AtomicU16);

impl ViewRows {
    fn new(n: u16) -> ViewRows {
        ViewRows(AtomicU16::new(n))
    }

    fn get(&self) -> u16 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, n: u16) {
        self.0.store(n, Ordering::Relaxed);
    }
}

impl Clone for ViewRows {
    fn clone(&self) -> ViewRows {
        ViewRows::new(self.get())
    }
}

#[derive(Debug, Clone)]
pub enum Msg {
    /// One page of customers (§3.2).
    Page {
        generation: u64,
        customers: Vec<Row>,
    },
    /// The GDAP relationships (§2.6), per customer tenant.
    Gdap {
        generation: u64,
        result: Result<HashMap<String, Gdap>, ApiError>,
    },
    /// Every page was read (the count), or why not.
    Finished {
        generation: u64,
        at: DateTime<Utc>,
        result: Result<usize, ApiError>,
        rotated: Option<Rotated>,
    },
    /// There is no Microsoft sign-in to use.
    NotSignedIn { generation: u64 },
}

#[derive(Debug, Clone)]
pub enum Cmd {
    Authorise {
        generation: u64,
        setup: Box<Setup>,
        page_size: u32,
    },
}

/// Kept between commands by the runner.
#[derive(Debug, Default)]
pub struct Runtime {}

pub fn on_key(s: &mut State, setup: &mut Setup, key: KeyEvent) -> Vec<Effect> {
    let page = s.view_rows.get().saturating_sub(1).max(1) as isize;
    match key.code {
        KeyCode::Enter => return authorise(s, setup),
        KeyCode::Up | KeyCode::Char('k') => s.scroll_by(-1),
        KeyCode::Down | KeyCode::Char('j') => s.scroll_by(1),
        KeyCode::PageUp => s.scroll_by(-page),
        KeyCode::PageDown => s.scroll_by(page),
        KeyCode::Home => s.scroll = 0,
        KeyCode::End => s.scroll = s.max_scroll(),
        _ => {}
    }
    Vec::new()
}

fn authorise(s: &mut State, setup: &Setup) -> Vec<Effect> {
    if s.phase == Phase::Authorising {
        return Vec::new();
    }
    s.generation += 1;
    s.just_saved = false;
    if !common::signed_in(setup) {
        s.phase = Phase::NotSignedIn;
        return Vec::new();
    }
    s.phase = Phase::Authorising;
    s.customers.clear();
    s.pages = 0;
    s.scroll = 0;
    s.gdap = GdapState::Loading;
    vec![Effect::Partner(Cmd::Authorise {
        generation: s.generation,
        setup: Box::new(setup.clone()),
        page_size: PAGE_SIZE,
    })]
}

pub fn on_msg(s: &mut State, setup: &mut Setup, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Page {
            generation,
            customers,
        } if generation == s.generation => {
            s.customers.extend(customers);
            s.pages += 1;
        }
        Msg::Gdap { generation, result } if generation == s.generation => {
            s.gdap = match result {
                Ok(m) => GdapState::Known(m),
                Err(e) => GdapState::Failed(e),
            };
        }
        Msg::NotSignedIn { generation } if generation == s.generation => {
            s.phase = Phase::NotSignedIn;
            s.gdap = GdapState::Idle;
        }
        Msg::Finished {
            generation,
            at,
            result,
            rotated,
        } if generation == s.generation => match result {
            Ok(count) => {
                s.phase = Phase::Listed { at };
                let pc = &mut setup.settings.partner_center;
                pc.authorised_at = Some(at.to_rfc3339_opts(SecondsFormat::Secs, true));
                pc.customers_found = Some(count as u64);
                if let Some(r) = rotated {
                    r.apply(setup);
                }
                s.just_saved = true;
                return vec![Effect::Save(Box::new(setup.clone()))];
            }
            Err(e) => {
                s.phase = Phase::Failed(e);
                if s.gdap == GdapState::Loading {
                    s.gdap = GdapState::Idle;
                }
            }
        },
        // A result of an earlier Authorise: dropped.
        _ => {}
    }
    Vec::new()
}

pub fn editing(_s: &State) -> bool {
    false
}

pub fn unsaved(_s: &State) -> bool {
    false
}

pub fn status(s: &State, setup: &Setup) -> Step {
    if s.phase == Phase::Authorising {
        Step::Busy
    } else if setup.settings.partner_center.authorised_at.is_some() {
        Step::Done
    } else {
        Step::ToDo
    }
}

pub fn hints(s: &State) -> Vec<Hint> {
    let mut h = Vec::new();
    match s.phase {
        Phase::Authorising => {}
        Phase::Listed { .. } => h.push(Hint::new("Enter", "authorise again")),
        _ => h.push(Hint::new("Enter", "authorise")),
    }
    if !s.customers.is_empty() {
        h.push(Hint::new("↑↓ PgUp PgDn", "scroll"));
    }
    h
}

// ---------------------------------------------------------------------------------------------
// Drawing

const INTRO: &str = "cspsync reads your customers' tenants from Partner Center with the Microsoft sign-in of tab 1. The account needs the Admin agent role (or Global administrator) in Partner Center, and MFA.";
const GDAP_REFUSED: &str = "Reading GDAP relationships needs the Admin agent role and the DelegatedAdminRelationship.Read.All permission consented for cspsync; the customers are listed without it.";
const GDAP_TIP: &str = "set one up in Partner Center → Customers → Admin relationships.";

/// Column widths for a table `width` wide: name, domain, tenant id, relationship, GDAP.
fn columns(width: usize) -> [usize; 5] {
    const REL: usize = 12;
    const GDAP: usize = 7;
    const SEPS: usize = 8;
    let fixed = REL + GDAP + SEPS;
    let tenant = if width.saturating_sub(fixed + 36) >= 40 {
        36
    } else {
        9
    };
    let rest = width.saturating_sub(fixed + tenant);
    let name = if tenant == 36 {
        rest / 2
    } else {
        rest * 60 / 100
    };
    [name, rest - name, tenant, REL, GDAP]
}

fn table_line(cells: [&str; 5], w: [usize; 5]) -> String {
    let mut out = String::new();
    for (i, (c, n)) in cells.iter().zip(w).enumerate() {
        if i > 0 {
            out.push_str("  ");
        }
        out.push_str(&common::cell(c, n));
    }
    out
}

pub fn render(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.width == 0 || area.height == 0 {
        return;
    }
    let width = usize::from(area.width);
    if let Some(r) = common::row(area, 0) {
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled("Partner Center", theme.title()),
                Span::styled(
                    "  your customers' tenants, read with your Microsoft sign-in",
                    theme.dim(),
                ),
            ])),
            r,
        );
    }
    if let Some(r) = common::row(area, 2) {
        let busy = s.phase == Phase::Authorising;
        let label = if busy {
            "[ Authorising… ]"
        } else {
            "[ Authorise ]"
        };
        let style = if busy { theme.text() } else { theme.selected() };
        let mut spans = vec![Span::styled(label, style), Span::raw("  ")];
        spans.extend(status_spans(s, setup, theme));
        frame.render_widget(Paragraph::new(Line::from(spans)), r);
    }
    let body = common::rows_from(area, 4, u16::MAX);
    let mut y: u16 = 0;
    let mut top: Vec<Line<'static>> = Vec::new();
    match &s.phase {
        Phase::Idle if setup.settings.partner_center.authorised_at.is_some() => {
            top.push(Line::from("Press Enter to list the customers again."));
            top.push(Line::from(Span::styled(INTRO, theme.dim())));
        }
        Phase::Idle => top.push(Line::from(Span::raw(INTRO))),
        Phase::NotSignedIn => {
            top.push(Line::from(Span::styled(
                "! Sign in first (tab 1): Partner Center is reached with your Microsoft sign-in.",
                theme.warn(),
            )));
            top.push(Line::from(Span::styled(INTRO, theme.dim())));
        }
        Phase::Failed(e) => {
            top.push(Line::from(Span::styled(format!("✗ {e}"), theme.error())));
            let who = &common::signed_in_name(setup);
            match common::microsoft_refusal(e, who) {
                Some(lines) => top.extend(lines.into_iter().map(|l| Line::from(format!("  {l}")))),
                None => top.push(Line::from(format!("  {}", e.hint()))),
            }
        }
        Phase::Authorising | Phase::Listed { .. } => {}
    }
    if let Some(line) = gdap_summary(s, theme) {
        top.push(line);
    }
    if !top.is_empty() {
        let rows = common::lines_rows(&top, width) as u16;
        common::draw_wrapped(frame, common::rows_from(body, y, rows), top);
        y = y.saturating_add(rows).saturating_add(1);
    }
    if s.customers.is_empty() {
        s.view_rows.set(10);
        return;
    }
    // The table: header, the visible slice only (50,000 rows scroll as fast as 50), position.
    let w = columns(width);
    if let Some(r) = common::row(body, y) {
        let head = table_line(
            ["Company", "Domain", "Tenant ID", "Relationship", "GDAP"],
            w,
        );
        frame.render_widget(Paragraph::new(Span::styled(head, theme.title())), r);
    }
    y = y.saturating_add(1);
    let visible = body.height.saturating_sub(y).saturating_sub(1);
    s.view_rows.set(visible.max(1));
    let max_scroll = s
        .customers
        .len()
        .saturating_sub(usize::from(visible.max(1)));
    let first = s.scroll.min(max_scroll);
    let shown = s.customers.iter().skip(first).take(usize::from(visible));
    let mut n = 0usize;
    for (i, c) in shown.enumerate() {
        let Some(r) = common::row(body, y.saturating_add(i as u16)) else {
            break;
        };
        let gdap = match (&s.gdap, s.gdap_of(&c.tenant_id)) {
            (_, Some(g)) => g.label(),
            (GdapState::Loading, _) => "…",
            _ => "?",
        };
        let rel = if c.relationship.is_empty() {
            "—"
        } else {
            c.relationship.as_str()
        };
        let line = table_line([&c.name, &c.domain, &c.tenant_id, rel, gdap], w);
        let style = match s.gdap_of(&c.tenant_id) {
            Some(Gdap::Active) | None => theme.text(),
            Some(_) => theme.warn(),
        };
        frame.render_widget(Paragraph::new(Span::styled(line, style)), r);
        n += 1;
    }
    if let Some(r) = common::row(body, y.saturating_add(n as u16)) {
        let pos = if n == 0 {
            String::new()
        } else {
            format!("rows {}–{} of {}", first + 1, first + n, s.customers.len())
        };
        frame.render_widget(Paragraph::new(Span::styled(pos, theme.dim())), r);
    }
}

/// The line beside the button: progress, success, or the saved authorisation.
fn status_spans(s: &State, setup: &Setup, theme: &Theme) -> Vec<Span<'static>> {
    let pc = &setup.settings.partner_center;
    match &s.phase {
        Phase::Authorising if s.pages == 0 => vec![Span::styled(
            "… Obtaining a Partner Center token and listing customers…",
            theme.accent(),
        )],
        Phase::Authorising => vec![Span::styled(
            format!("… Listing customers: {} so far…", s.customers.len()),
            theme.accent(),
        )],
        Phase::Listed { at } => {
            let saved = if s.just_saved { " Saved." } else { "" };
            vec![Span::styled(
                format!(
                    "✓ Authorised {}: {} customer{} found.{saved}",
                    common::fmt_time(*at),
                    s.customers.len(),
                    if s.customers.len() == 1 { "" } else { "s" }
                ),
                theme.ok(),
            )]
        }
        _ => match (&pc.authorised_at, pc.customers_found) {
            (Some(at), found) => vec![Span::styled(
                format!(
                    "✓ Authorised {}{}.",
                    common::fmt_stored(at),
                    found
                        .map(|n| format!(": {n} customer{} found", if n == 1 { "" } else { "s" }))
                        .unwrap_or_default()
                ),
                theme.ok(),
            )],
            (None, _) => vec![Span::styled("Not authorised yet.", theme.dim())],
        },
    }
}

/// How many customers lack an active GDAP relationship, and what that means.
fn gdap_summary(s: &State, theme: &Theme) -> Option<Line<'static>> {
    if s.customers.is_empty() && !matches!(s.phase, Phase::Listed { .. }) {
        return None;
    }
    match &s.gdap {
        GdapState::Known(_) => {
            let without = s.without_gdap().unwrap_or(0);
            if without == 0 {
                (!s.customers.is_empty()).then(|| {
                    Line::from(Span::styled(
                        "✓ Every customer has an active GDAP relationship.",
                        theme.ok(),
                    ))
                })
            } else {
                Some(Line::from(Span::styled(
                    format!(
                        "! {without} of {} customer{} no active GDAP relationship and cannot be reconciled (cspsync cannot read their licences): {GDAP_TIP}",
                        s.customers.len(),
                        if s.customers.len() == 1 {
                            " has"
                        } else {
                            "s have"
                        }
                    ),
                    theme.warn(),
                )))
            }
        }
        GdapState::Failed(e) => {
            let what = if matches!(e.kind, ErrorKind::Unauthorized | ErrorKind::Forbidden) {
                GDAP_REFUSED
            } else {
                e.hint()
            };
            Some(Line::from(Span::styled(
                format!("! GDAP status unknown: {e}. {what}"),
                theme.warn(),
            )))
        }
        GdapState::Loading => Some(Line::from(Span::styled(
            "… Reading GDAP relationships from Graph…",
            theme.accent(),
        ))),
        GdapState::Idle => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Background work

pub async fn run(cmd: Cmd, svc: Arc<Services>, tx: Sender<app::Msg>) {
    match cmd {
        Cmd::Authorise {
            generation,
            setup,
            page_size,
        } => authorise_run(generation, &setup, page_size, &svc, &tx).await,
    }
}

async fn authorise_run(
    generation: u64,
    setup: &Setup,
    page_size: u32,
    svc: &Services,
    tx: &Sender<app::Msg>,
) {
    let send = |m: Msg| async move {
        let _ = tx.send(app::Msg::Partner(m)).await;
    };
    let session = match connect::session(&svc.ctx, &setup.settings, &setup.secrets) {
        Ok(s) => s,
        Err(_) => return send(Msg::NotSignedIn { generation }).await,
    };
    let pc = connect::partner_center(&svc.ctx, &session);
    let graph = connect::graph(&svc.ctx, &session);
    let customers = async {
        // The client's paging (§3.2): each page reaches the screen as it arrives.
        let mut pager = pc.customers_pager(page_size)?;
        let mut count = 0usize;
        while let Some(page) = pager.next_page().await? {
            count += page.len();
            let rows = page.iter().map(Row::of).collect();
            send(Msg::Page {
                generation,
                customers: rows,
            })
            .await;
        }
        Ok::<usize, ApiError>(count)
    };
    let gdap = async {
        let result = graph.gdap_relationships().await.map(|r| gdap_by_tenant(&r));
        send(Msg::Gdap { generation, result }).await;
    };
    let (result, ()) = tokio::join!(customers, gdap);
    let current = session.refresh_token();
    let rotated = Rotated::of(
        setup.secrets.microsoft_refresh_token.as_deref(),
        current.secret(),
    );
    send(Msg::Finished {
        generation,
        at: Utc::now(),
        result,
        rotated,
    })
    .await;
}
