//! The Distributor tab (issue 3 §3): the Dicker Data Account Code, Access Code and the MPN ID,
//! validated as they are typed. "Test connection" obtains a Dicker Data AccessKey with the
//! codes (reference/external-apis.md §4.2) and checks the MPN ID against Partner Center's MPN
//! profile (§3.4) with the Microsoft sign-in; the step is saved when both pass.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use tokio::sync::mpsc::Sender;

use super::partner::common::{self, Rotated};
use super::{Hint, Step};
use crate::api::error::{ApiError, ErrorKind};
use crate::connect;
use crate::tui::app::{self, Effect, Setup};
use crate::tui::runner::Services;
use crate::tui::theme::Theme;
use crate::tui::widgets::{InputOutcome, TextInput, field_row};

/// The form's rows: three fields, then the button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    AccountCode,
    AccessCode,
    MpnId,
    Test,
}

impl Focus {
    const ORDER: [Focus; 4] = [
        Focus::AccountCode,
        Focus::AccessCode,
        Focus::MpnId,
        Focus::Test,
    ];

    fn index(self) -> usize {
        Focus::ORDER.iter().position(|f| *f == self).unwrap_or(0)
    }

    fn next(self) -> Focus {
        Focus::ORDER[(self.index() + 1).min(Focus::ORDER.len() - 1)]
    }

    fn prev(self) -> Focus {
        Focus::ORDER[self.index().saturating_sub(1)]
    }

    fn label(self) -> &'static str {
        match self {
            Focus::AccountCode => "Account Code",
            Focus::AccessCode => "Access Code",
            Focus::MpnId => "MPN ID",
            Focus::Test => "Test connection",
        }
    }
}

/// How bad a field's problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Allowed, but probably a mistake.
    Warning,
    /// Test connection refuses to run until it is fixed.
    Error,
}

/// A field's problem: one sentence saying what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub text: String,
}

impl Problem {
    fn error(text: impl Into<String>) -> Option<Problem> {
        Some(Problem {
            severity: Severity::Error,
            text: text.into(),
        })
    }

    fn warning(text: impl Into<String>) -> Option<Problem> {
        Some(Problem {
            severity: Severity::Warning,
            text: text.into(),
        })
    }
}

/// The Account Code: required; digits in practice (letters are allowed with a warning).
pub fn check_account_code(v: &str) -> Option<Problem> {
    let v = v.trim();
    if v.is_empty() {
        Problem::error("Required: enter your Dicker Data portal login.")
    } else if v.chars().any(char::is_whitespace) {
        Problem::error("No spaces: type it as your portal login shows it.")
    } else if !v.chars().all(|c| c.is_ascii_digit()) {
        Problem::warning("Usually digits only: check it is your portal login.")
    } else {
        None
    }
}

/// The Access Code: required, no spaces.
pub fn check_access_code(v: &str) -> Option<Problem> {
    let v = v.trim();
    if v.is_empty() {
        Problem::error("Required: the API token Dicker Data issued you.")
    } else if v.chars().any(char::is_whitespace) {
        Problem::error("No spaces: paste it again without them.")
    } else {
        None
    }
}

/// The MPN ID: required, digits only.
pub fn check_mpn_id(v: &str) -> Option<Problem> {
    let v = v.trim();
    if v.is_empty() {
        return Problem::error("Required: your MPN ID (Partner ID), digits only.");
    }
    match v.chars().find(|c| !c.is_ascii_digit()) {
        Some(c) if c.is_whitespace() => Problem::error("Digits only: remove the space."),
        Some(c) => Problem::error(format!("Digits only: remove “{}”.", c.escape_debug())),
        None => None,
    }
}

/// The Dicker Data half of a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DickerDataPart {
    Idle,
    Running,
    /// An AccessKey was obtained at `at`, valid until `expires_at`.
    Ok {
        at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    Failed(ApiError),
}

/// The MPN half of a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MpnPart {
    Idle,
    Running,
    Ok {
        mpn_id: String,
        partner_name: Option<String>,
    },
    /// No Microsoft sign-in yet: only the Dicker Data half ran.
    NotSignedIn,
    Failed {
        error: ApiError,
        /// The signed-in partner's own MPN ID, when Partner Center knew no partner with the
        /// one typed.
        own_mpn: Option<String>,
    },
}

#[derive(Clone)]
pub struct State {
    pub focus: Focus,
    pub editing: bool,
    pub account_code: TextInput,
    pub access_code: TextInput,
    pub mpn_id: TextInput,
    /// The generation of the current test; results of any other are dropped.
    pub generation: u64,
    pub dicker_data: DickerDataPart,
    pub mpn: MpnPart,
    /// A field was changed since the values were last verified (or loaded).
    pub edited: bool,
    /// Test connection was refused before it ran (a field has an error).
    pub blocked: Option<String>,
    /// The test just passed and was saved (this session).
    pub just_saved: bool,
    /// The values as saved (account code, access code, MPN ID), trimmed.
    saved: (String, String, String),
    /// A rotated Microsoft refresh token to keep when the step completes.
    rotated: Option<Rotated>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The Access Code is a secret: never in Debug output (logs).
        f.debug_struct("State")
            .field("focus", &self.focus)
            .field("editing", &self.editing)
            .field("account_code", &self.account_code.value)
            .field("access_code", &"[redacted]")
            .field("mpn_id", &self.mpn_id.value)
            .field("generation", &self.generation)
            .field("dicker_data", &self.dicker_data)
            .field("mpn", &self.mpn)
            .field("edited", &self.edited)
            .finish_non_exhaustive()
    }
}

impl Default for State {
    fn default() -> Self {
        State::new(&Setup::default())
    }
}

fn saved_values(setup: &Setup) -> (String, String, String) {
    let d = &setup.settings.distributor;
    (
        d.account_code.trim().to_string(),
        setup
            .secrets
            .dicker_data_access_code
            .as_deref()
            .unwrap_or("")
            .trim()
            .to_string(),
        d.mpn_id.trim().to_string(),
    )
}

impl State {
    pub fn new(setup: &Setup) -> State {
        let saved = saved_values(setup);
        let first_empty = [&saved.0, &saved.1, &saved.2]
            .iter()
            .position(|v| v.is_empty())
            .map_or(Focus::Test, |i| Focus::ORDER[i]);
        State {
            focus: first_empty,
            editing: false,
            account_code: TextInput::new(&saved.0),
            access_code: TextInput::masked(&saved.1),
            mpn_id: TextInput::new(&saved.2),
            generation: 0,
            dicker_data: DickerDataPart::Idle,
            mpn: MpnPart::Idle,
            edited: false,
            blocked: None,
            just_saved: false,
            saved,
            rotated: None,
        }
    }

    fn input_mut(&mut self, f: Focus) -> Option<&mut TextInput> {
        match f {
            Focus::AccountCode => Some(&mut self.account_code),
            Focus::AccessCode => Some(&mut self.access_code),
            Focus::MpnId => Some(&mut self.mpn_id),
            Focus::Test => None,
        }
    }

    fn typed(&self) -> (String, String, String) {
        (
            self.account_code.trimmed().to_string(),
            self.access_code.trimmed().to_string(),
            self.mpn_id.trimmed().to_string(),
        )
    }

    /// The problem of a field as typed now.
    pub fn problem(&self, f: Focus) -> Option<Problem> {
        match f {
            Focus::AccountCode => check_account_code(&self.account_code.value),
            Focus::AccessCode => check_access_code(&self.access_code.value),
            Focus::MpnId => check_mpn_id(&self.mpn_id.value),
            Focus::Test => None,
        }
    }

    pub fn running(&self) -> bool {
        self.dicker_data == DickerDataPart::Running || self.mpn == MpnPart::Running
    }

    fn stop_editing(&mut self) {
        self.editing = false;
        self.access_code.revealed = false;
    }

    /// A value changed: earlier results no longer describe it.
    fn changed(&mut self) {
        self.generation += 1;
        self.dicker_data = DickerDataPart::Idle;
        self.mpn = MpnPart::Idle;
        self.edited = true;
        self.blocked = None;
        self.just_saved = false;
        self.rotated = None;
    }
}

#[derive(Debug, Clone)]
pub enum Msg {
    /// The Dicker Data half: an AccessKey's expiry, or why none was issued.
    DickerData {
        generation: u64,
        at: DateTime<Utc>,
        result: Result<DateTime<Utc>, ApiError>,
    },
    /// The MPN half.
    Mpn {
        generation: u64,
        at: DateTime<Utc>,
        outcome: MpnPart,
        /// The Microsoft refresh token, when the session replaced it.
        rotated: Option<Rotated>,
    },
}

#[derive(Debug, Clone)]
pub enum Cmd {
    /// Test the codes in `setup` (the typed values put in place); the MPN ID too when
    /// `check_mpn` (there is a Microsoft sign-in).
    Test {
        generation: u64,
        setup: Box<Setup>,
        check_mpn: bool,
    },
}

/// Kept between commands by the runner.
#[derive(Debug, Default)]
pub struct Runtime {}

pub fn on_key(s: &mut State, setup: &mut Setup, key: KeyEvent) -> Vec<Effect> {
    if s.editing {
        return edit_key(s, key);
    }
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => s.focus = s.focus.prev(),
        KeyCode::Down | KeyCode::Char('j') => s.focus = s.focus.next(),
        KeyCode::Home => s.focus = Focus::AccountCode,
        KeyCode::End => s.focus = Focus::Test,
        KeyCode::Enter => {
            if s.focus == Focus::Test {
                return start_test(s, setup);
            }
            s.editing = true;
            s.blocked = None;
        }
        _ => {}
    }
    Vec::new()
}

fn edit_key(s: &mut State, key: KeyEvent) -> Vec<Effect> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Enter => {
            s.stop_editing();
            s.focus = s.focus.next();
        }
        KeyCode::Esc => s.stop_editing(),
        KeyCode::Down | KeyCode::Tab => {
            s.stop_editing();
            s.focus = s.focus.next();
        }
        KeyCode::Up | KeyCode::BackTab => {
            s.stop_editing();
            s.focus = s.focus.prev();
        }
        KeyCode::Char('r') | KeyCode::Char('R') if ctrl => {
            if s.focus == Focus::AccessCode {
                s.access_code.revealed = !s.access_code.revealed;
            }
        }
        _ => {
            let focus = s.focus;
            if let Some(input) = s.input_mut(focus)
                && input.handle(key) == InputOutcome::Changed
            {
                s.changed();
            }
        }
    }
    Vec::new()
}

fn start_test(s: &mut State, setup: &Setup) -> Vec<Effect> {
    if s.running() {
        return Vec::new();
    }
    if let Some(f) = [Focus::AccountCode, Focus::AccessCode, Focus::MpnId]
        .into_iter()
        .find(|f| s.problem(*f).is_some_and(|p| p.severity == Severity::Error))
    {
        s.focus = f;
        let why = s.problem(f).map(|p| p.text).unwrap_or_default();
        s.blocked = Some(format!("Fix the {} first. {why}", f.label()));
        return Vec::new();
    }
    s.generation += 1;
    s.blocked = None;
    s.just_saved = false;
    s.rotated = None;
    let (account, access, mpn) = s.typed();
    let check_mpn = common::signed_in(setup);
    s.dicker_data = DickerDataPart::Running;
    s.mpn = if check_mpn {
        MpnPart::Running
    } else {
        MpnPart::NotSignedIn
    };
    let mut test = setup.clone();
    test.settings.distributor.account_code = account;
    test.settings.distributor.mpn_id = mpn;
    test.secrets.dicker_data_access_code = Some(access);
    vec![Effect::Distributor(Cmd::Test {
        generation: s.generation,
        setup: Box::new(test),
        check_mpn,
    })]
}

pub fn on_msg(s: &mut State, setup: &mut Setup, msg: Msg) -> Vec<Effect> {
    let at = match msg {
        Msg::DickerData {
            generation,
            at,
            result,
        } => {
            if generation != s.generation {
                return Vec::new();
            }
            s.dicker_data = match result {
                Ok(expires_at) => DickerDataPart::Ok { at, expires_at },
                Err(e) => DickerDataPart::Failed(e),
            };
            at
        }
        Msg::Mpn {
            generation,
            at,
            outcome,
            rotated,
        } => {
            if generation != s.generation {
                return Vec::new();
            }
            s.mpn = outcome;
            s.rotated = rotated;
            at
        }
    };
    let passed =
        matches!(s.dicker_data, DickerDataPart::Ok { .. }) && matches!(s.mpn, MpnPart::Ok { .. });
    if !passed {
        return Vec::new();
    }
    // Both halves passed: save the values as tested.
    let (account, access, mpn) = s.typed();
    let d = &mut setup.settings.distributor;
    d.account_code = account.clone();
    d.mpn_id = mpn.clone();
    d.verified_at = Some(at.to_rfc3339_opts(SecondsFormat::Secs, true));
    setup.secrets.dicker_data_access_code = Some(access.clone());
    if let Some(r) = s.rotated.take() {
        r.apply(setup);
    }
    s.saved = (account, access, mpn);
    s.edited = false;
    s.just_saved = true;
    vec![Effect::Save(Box::new(setup.clone()))]
}

pub fn editing(s: &State) -> bool {
    s.editing
}

pub fn unsaved(s: &State) -> bool {
    s.typed() != s.saved
}

pub fn status(s: &State, setup: &Setup) -> Step {
    if s.running() {
        Step::Busy
    } else if setup.settings.distributor.verified_at.is_some() && !s.edited {
        Step::Done
    } else {
        Step::ToDo
    }
}

pub fn hints(s: &State) -> Vec<Hint> {
    if s.editing {
        let mut h = vec![
            Hint::new("Enter", "done"),
            Hint::new("Esc", "stop editing"),
            Hint::new("↑↓", "other field"),
        ];
        if s.focus == Focus::AccessCode {
            h.push(Hint::new(
                "Ctrl-R",
                if s.access_code.revealed {
                    "hide"
                } else {
                    "reveal"
                },
            ));
        }
        h.push(Hint::new("Ctrl-U", "clear"));
        return h;
    }
    let mut h = vec![Hint::new("↑↓", "move")];
    match s.focus {
        Focus::Test if s.running() => {}
        Focus::Test => h.push(Hint::new("Enter", "test connection")),
        _ => h.push(Hint::new("Enter", "edit")),
    }
    h
}

// ---------------------------------------------------------------------------------------------
// Drawing

const LABEL_WIDTH: u16 = 14;
/// The column of the `▸` that marks the row under the cursor (readable without colour).
const MARK_WIDTH: u16 = 2;
/// The widest a value box gets (room for a GUID-shaped Access Code).
const VALUE_WIDTH: u16 = 40;

const ACCOUNT_HELP: &str =
    "Account Code: your login for portal.dickerdata.com.au (AU) or portal.dickerdata.co.nz (NZ).";
const ACCESS_HELP: &str = "Access Code: Dicker Data issues it once API access is enabled. AU partners ask their Dicker Data account manager or email integration.support@dickerdata.com.au (company name, account number, technical contact). NZ partners generate it in the Dicker Data portal → MY ACCOUNT → BRANDING → Integration → \"Generate New Token\".";
/// Shorter forms, for the lines under a refusal.
const ACCOUNT_TIP: &str =
    "Account Code = your login for portal.dickerdata.com.au (AU) or portal.dickerdata.co.nz (NZ).";
const ACCESS_TIP: &str = "Access Code: AU partners ask their Dicker Data account manager or integration.support@dickerdata.com.au for API access; NZ partners use the portal → MY ACCOUNT → BRANDING → Integration → \"Generate New Token\".";
const MPN_HELP: &str = "MPN ID: your Microsoft Partner Network ID (Partner ID), shown in Partner Center → Account settings → Identifiers.";
const TEST_HELP: &str = "Test connection obtains a Dicker Data AccessKey with these codes and checks the MPN ID with Partner Center (this needs the Microsoft sign-in of tab 1). The step is saved when both pass.";

fn field_help(f: Focus) -> &'static str {
    match f {
        Focus::AccountCode => ACCOUNT_HELP,
        Focus::AccessCode => ACCESS_HELP,
        Focus::MpnId => MPN_HELP,
        Focus::Test => TEST_HELP,
    }
}

/// Draw the cursor mark of a row; the rest of the row, right of it.
fn marked(frame: &mut Frame, r: Rect, focused: bool, theme: &Theme) -> Rect {
    if focused {
        frame.render_widget(Paragraph::new(Span::styled("▸", theme.accent())), r);
    }
    Rect {
        x: r.x.saturating_add(MARK_WIDTH.min(r.width)),
        width: r.width.saturating_sub(MARK_WIDTH),
        ..r
    }
}

/// A field's note: its problem as typed, else what the last test said about it.
fn field_note(s: &State, f: Focus) -> Option<(String, Severity)> {
    if let Some(p) = s.problem(f) {
        return Some((p.text, p.severity));
    }
    let refused = |e: &ApiError| e.kind == ErrorKind::Unauthorized;
    match (f, &s.dicker_data, &s.mpn) {
        (Focus::AccountCode | Focus::AccessCode, DickerDataPart::Failed(e), _) if refused(e) => {
            Some((
                "Refused by Dicker Data: check it (see below).".into(),
                Severity::Error,
            ))
        }
        (Focus::MpnId, _, MpnPart::Failed { error, .. }) if error.kind == ErrorKind::NotFound => {
            Some((
                "Unknown to Partner Center: check it (see below).".into(),
                Severity::Error,
            ))
        }
        _ => None,
    }
}

pub fn render(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.width == 0 || area.height == 0 {
        return;
    }
    let mut y: u16 = 0;
    if let Some(r) = common::row(area, y) {
        let mut spans = vec![Span::styled("Dicker Data", theme.title())];
        spans.push(Span::styled(
            "  the codes Dicker Data issued for API access, and your MPN ID",
            theme.dim(),
        ));
        frame.render_widget(Paragraph::new(Line::from(spans)), r);
    }
    y += 2;
    for f in [Focus::AccountCode, Focus::AccessCode, Focus::MpnId] {
        let input = match f {
            Focus::AccountCode => &s.account_code,
            Focus::AccessCode => &s.access_code,
            _ => &s.mpn_id,
        };
        if let Some(r) = common::row(area, y) {
            let focused = s.focus == f;
            let r = marked(frame, r, focused, theme);
            let r = Rect {
                width: r.width.min(LABEL_WIDTH + 2 + VALUE_WIDTH),
                ..r
            };
            field_row(
                frame,
                r,
                theme,
                f.label(),
                LABEL_WIDTH,
                input,
                focused,
                s.editing,
                None,
            );
        }
        if let Some(r) = common::row(area, y + 1)
            && let Some((text, sev)) = field_note(s, f)
        {
            let style = match sev {
                Severity::Error => theme.error(),
                Severity::Warning => theme.warn(),
            };
            let mark = match sev {
                Severity::Error => "✗ ",
                Severity::Warning => "! ",
            };
            let indent = " ".repeat(usize::from(MARK_WIDTH + LABEL_WIDTH + 2));
            frame.render_widget(
                Paragraph::new(Line::from(vec![
                    Span::raw(indent),
                    Span::styled(format!("{mark}{text}"), style),
                ])),
                r,
            );
        }
        y += 2;
    }
    if let Some(r) = common::row(area, y) {
        let label = if s.running() {
            "[ Testing… ]"
        } else {
            "[ Test connection ]"
        };
        let focused = s.focus == Focus::Test;
        let style = if focused {
            theme.selected()
        } else {
            theme.text()
        };
        let r = marked(frame, r, focused, theme);
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::raw(" ".repeat(usize::from(LABEL_WIDTH + 2))),
                Span::styled(label, style),
            ])),
            r,
        );
    }
    y += 2;
    let rest = common::rows_from(area, y, u16::MAX);
    let lines = result_lines(s, setup, theme);
    let width = usize::from(rest.width);
    let used = if lines.is_empty() {
        0
    } else {
        common::lines_rows(&lines, width) + 1
    };
    common::draw_wrapped(frame, rest, lines);
    // Where to get the value under the cursor, when there is room left.
    let help = vec![Line::from(Span::styled(field_help(s.focus), theme.dim()))];
    let need = common::lines_rows(&help, width);
    let left = usize::from(rest.height).saturating_sub(used);
    if need <= left {
        let at = rest.height.saturating_sub(need as u16);
        common::draw_wrapped(frame, common::rows_from(rest, at, need as u16), help);
    }
}

/// What the test said, per part, with what to do about each failure.
fn result_lines(s: &State, setup: &Setup, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    if let Some(b) = &s.blocked {
        out.push(Line::from(Span::styled(b.clone(), theme.error())));
        return out;
    }
    let ok = |t: String| Line::from(Span::styled(format!("✓ {t}"), theme.ok()));
    let bad = |t: String| Line::from(Span::styled(format!("✗ {t}"), theme.error()));
    let busy = |t: String| Line::from(Span::styled(format!("… {t}"), theme.accent()));
    let tip = |t: String| Line::from(Span::raw(format!("  {t}")));
    match &s.dicker_data {
        DickerDataPart::Idle => {}
        DickerDataPart::Running => out.push(busy("Dicker Data: obtaining an AccessKey…".into())),
        DickerDataPart::Ok { at, expires_at } => out.push(ok(format!(
            "Dicker Data: AccessKey obtained, expires {} ({}).",
            common::fmt_in(*at, *expires_at),
            common::fmt_clock(*expires_at)
        ))),
        DickerDataPart::Failed(e) => {
            out.push(bad(e.to_string()));
            if e.kind == ErrorKind::Unauthorized {
                out.push(tip(ACCOUNT_TIP.into()));
                out.push(tip(ACCESS_TIP.into()));
            } else {
                out.push(tip(e.hint().into()));
            }
        }
    }
    let mpn = s.mpn_id.trimmed().to_string();
    match &s.mpn {
        MpnPart::Idle => {}
        MpnPart::Running => out.push(busy(format!("Partner Center: checking MPN ID {mpn}…"))),
        MpnPart::Ok {
            mpn_id,
            partner_name,
        } => out.push(ok(format!(
            "MPN {} = {}",
            mpn_id,
            partner_name
                .as_deref()
                .unwrap_or("(Partner Center gave no name)")
        ))),
        MpnPart::NotSignedIn => out.push(Line::from(Span::styled(
            "! Sign in first (tab 1) to check the MPN ID.".to_string(),
            theme.warn(),
        ))),
        MpnPart::Failed { error, own_mpn } => {
            if error.kind == ErrorKind::NotFound {
                out.push(bad(error.to_string()));
                out.push(tip(format!(
                    "Check the MPN ID {mpn}: your Partner ID is shown in Partner Center → Account settings → Identifiers."
                )));
                if let Some(own) = own_mpn {
                    out.push(tip(format!(
                        "The MPN ID of the signed-in Partner Center account is {own}."
                    )));
                }
            } else {
                out.push(bad(error.to_string()));
                match common::microsoft_refusal(error, &common::signed_in_name(setup)) {
                    Some(lines) => out.extend(lines.into_iter().map(tip)),
                    None => out.push(tip(error.hint().into())),
                }
            }
        }
    }
    if s.running() {
        return out;
    }
    let verified = setup.settings.distributor.verified_at.as_deref();
    if s.just_saved {
        out.push(ok("Verified and saved.".into()));
    } else if let Some(v) = verified {
        if s.edited {
            out.push(Line::from(Span::styled(
                "Changed since it was verified: Test connection again to save the change."
                    .to_string(),
                theme.warn(),
            )));
        } else if out.is_empty() {
            out.push(ok(format!(
                "Verified {}. Edit a field and test again to change it.",
                common::fmt_stored(v)
            )));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Background work

pub async fn run(cmd: Cmd, svc: Arc<Services>, tx: Sender<app::Msg>) {
    match cmd {
        Cmd::Test {
            generation,
            setup,
            check_mpn,
        } => {
            let dd = async {
                let result = match connect::dicker_data(&svc.ctx, &setup.settings, &setup.secrets) {
                    Ok(client) => client.test_connection().await,
                    Err(e) => Err(e),
                };
                let msg = Msg::DickerData {
                    generation,
                    at: Utc::now(),
                    result,
                };
                let _ = tx.send(app::Msg::Distributor(msg)).await;
            };
            let mpn = async {
                if !check_mpn {
                    return;
                }
                let (outcome, rotated) = lookup_mpn(&svc, &setup).await;
                let msg = Msg::Mpn {
                    generation,
                    at: Utc::now(),
                    outcome,
                    rotated,
                };
                let _ = tx.send(app::Msg::Distributor(msg)).await;
            };
            tokio::join!(dd, mpn);
        }
    }
}

/// `GET /profiles/mpn?mpnId=` (§3.4) with the Microsoft sign-in; on a 404, the partner's own
/// profile, so the person is told the MPN ID their account has.
async fn lookup_mpn(svc: &Services, setup: &Setup) -> (MpnPart, Option<Rotated>) {
    let session = match connect::session(&svc.ctx, &setup.settings, &setup.secrets) {
        Ok(s) => s,
        Err(_) => return (MpnPart::NotSignedIn, None),
    };
    let pc = connect::partner_center(&svc.ctx, &session);
    let mpn = setup.settings.distributor.mpn_id.trim().to_string();
    let outcome = match pc.mpn_profile(Some(&mpn)).await {
        Ok(p) => MpnPart::Ok {
            mpn_id: p.mpn_id,
            partner_name: p.partner_name.filter(|n| !n.trim().is_empty()),
        },
        Err(error) if error.kind == ErrorKind::NotFound => {
            let own_mpn = pc
                .mpn_profile(None)
                .await
                .ok()
                .map(|p| p.mpn_id)
                .filter(|m| !m.trim().is_empty() && *m != mpn);
            MpnPart::Failed { error, own_mpn }
        }
        Err(error) => MpnPart::Failed {
            error,
            own_mpn: None,
        },
    };
    let current = session.refresh_token();
    let rotated = Rotated::of(
        setup.secrets.microsoft_refresh_token.as_deref(),
        current.secret(),
    );
    (outcome, rotated)
}
