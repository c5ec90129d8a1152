//! The Sign in tab (issue 3 §2): the MSP's Microsoft sign-in with the device code flow
//! (reference/external-apis.md §1.2).
//!
//! Enter asks Entra for a code; the page to open and the code are shown large, with a QR code
//! of the page for a phone and a countdown to the code's expiry. When the person has signed in
//! in the browser, the id_token's claims (§1.6) are checked — an account on a
//! `.onmicrosoft.com` domain, or from another tenant than the one set up, is refused without
//! saving anything (domain.md §1(a)) — and the MSP details are read from Graph
//! `/organization` (§2.1). The tenant and the refresh token are then saved, so the next start
//! needs no sign-in until the session lapses. `o` signs out.

use std::sync::{Arc, Mutex};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use tokio::sync::mpsc::Sender;
use tokio::sync::watch;

use super::{Hint, Step};
use crate::api::error::{ApiError, ErrorKind};
use crate::auth::entra::{DeviceFlowStop, IdClaims, Session};
use crate::config::{MicrosoftSettings, Settings};
use crate::connect;
use crate::secret::Secret;
use crate::tui::app::{self, Effect, Setup};
use crate::tui::runner::Services;
use crate::tui::theme::Theme;

#[path = "signin_bigtext.rs"]
mod bigtext;
#[path = "signin_qr.rs"]
mod qr;

/// The domain suffix of a tenant's initial domain: such an account is refused (domain.md §1(a)).
const INITIAL_DOMAIN_SUFFIX: &str = ".onmicrosoft.com";

/// The reason given for refusing a `.onmicrosoft.com` account, after the setup guide
/// (domain.md §1(a), seeds: "This must be an account associated with your MSP Tenancy";
/// "this account should not have a .onmicrosoft.com domain").
pub const ONMICROSOFT_REASON: &str =
    "This must be an account associated with your MSP tenancy, not a .onmicrosoft.com one.";

// ----- state ---------------------------------------------------------------------------------

/// Who signed in: the id_token claims cspsync uses (§1.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// `tid`: the tenant signed in to.
    pub tenant_id: String,
    /// `oid`: the user's object id.
    pub oid: String,
    /// `preferred_username`: the sign-in name (usually the UPN).
    pub username: Option<String>,
    /// `name`: the display name.
    pub name: Option<String>,
    /// The sign-in used multi-factor authentication (`amr` has `mfa`).
    pub mfa: bool,
}

impl Account {
    pub fn from_claims(c: &IdClaims) -> Account {
        let nonempty = |o: &Option<String>| {
            o.as_ref()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        Account {
            tenant_id: c.tid.trim().to_string(),
            oid: c.oid.trim().to_string(),
            username: nonempty(&c.preferred_username),
            name: nonempty(&c.name),
            mfa: c.has_mfa(),
        }
    }

    /// `Megan Bowen (megan@contoso.com)`, or whichever of the two is known.
    pub fn label(&self) -> String {
        match (&self.name, &self.username) {
            (Some(n), Some(u)) if n != u => format!("{n} ({u})"),
            (_, Some(u)) => u.clone(),
            (Some(n), None) => n.clone(),
            (None, None) => format!("user {}", self.oid),
        }
    }
}

/// The MSP details read from Graph `/organization` (§2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MspDetails {
    pub tenant_id: String,
    pub tenant_name: String,
    /// The default verified domain.
    pub domain: String,
}

/// Why a signed-in account is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The sign-in name is on the tenant's initial `.onmicrosoft.com` domain.
    OnMicrosoftDomain,
    /// The account is from another tenant than the one cspsync is set up for.
    OtherTenant { expected: String },
}

/// Whether `account` may set up cspsync for the tenant already saved (`set_up_tenant`, empty
/// when none): `None` when it may.
pub fn check_account(account: &Account, set_up_tenant: &str) -> Option<Refusal> {
    let on_initial_domain = account.username.as_deref().is_some_and(|u| {
        u.rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or(u)
            .trim()
            .to_ascii_lowercase()
            .ends_with(INITIAL_DOMAIN_SUFFIX)
    });
    if on_initial_domain {
        return Some(Refusal::OnMicrosoftDomain);
    }
    let expected = set_up_tenant.trim();
    if !expected.is_empty() && !expected.eq_ignore_ascii_case(account.tenant_id.trim()) {
        return Some(Refusal::OtherTenant {
            expected: expected.to_string(),
        });
    }
    None
}

/// Which part of the sign-in failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Getting a code or the sign-in itself.
    SignIn,
    /// Reading the MSP details from Graph after signing in.
    Details,
}

/// A failure to show: what went wrong and what to do, one sentence each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub stage: Stage,
    pub message: String,
    pub hint: String,
}

impl Failure {
    /// The person (or Entra, for a disabled account) declined the sign-in (§1.2
    /// `authorization_declined`).
    pub fn declined() -> Failure {
        Failure {
            stage: Stage::SignIn,
            message: "The sign-in was declined in the browser.".into(),
            hint: "If that was not intended, get a new code and approve the sign-in, accepting the permissions cspsync asks for.".into(),
        }
    }

    /// Entra no longer knows the device code (§1.2 `bad_verification_code`).
    pub fn unknown_code() -> Failure {
        Failure {
            stage: Stage::SignIn,
            message: "Microsoft no longer recognises this sign-in code.".into(),
            hint: "Get a new code and sign in with it.".into(),
        }
    }
}

/// A code being shown while the person signs in in a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub user_code: String,
    pub verification_uri: String,
    /// The code's lifetime (`expires_in`, §1.2), seconds.
    pub expires_in: u64,
    /// Seconds left; counted down by [`on_tick`].
    pub remaining: u64,
    /// The simulated world approves the code by itself.
    pub demo: bool,
    /// The QR code of `verification_uri`, as text rows.
    qr: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not signed in.
    Idle,
    /// Asking Entra for a code.
    Starting,
    /// Showing the code; the background waits for the browser.
    Waiting(Code),
    /// Signed in; reading the MSP details from Graph.
    Verifying {
        account: Account,
    },
    /// Signed in and saved. `account` is known after a sign-in in this run (absent when
    /// remembered from an earlier one).
    SignedIn {
        account: Option<Account>,
    },
    /// The account was refused; nothing saved.
    Refused {
        account: Account,
        refusal: Refusal,
    },
    /// The code expired before the sign-in finished.
    Expired {
        valid_secs: Option<u64>,
    },
    Failed(Failure),
}

#[derive(Debug, Clone)]
pub struct State {
    /// The current flow's generation: results of older flows are dropped.
    pub generation: u64,
    pub phase: Phase,
    /// A sign-in is saved (tenant id and refresh token).
    pub saved: bool,
    /// A line about the last action ("Sign-in cancelled.").
    pub note: Option<String>,
}

impl Default for State {
    fn default() -> Self {
        State {
            generation: 0,
            phase: Phase::Idle,
            saved: false,
            note: None,
        }
    }
}

/// The sign-in is done: a tenant and a refresh token are saved.
fn is_saved(setup: &Setup) -> bool {
    !setup.settings.microsoft.tenant_id.trim().is_empty()
        && setup
            .secrets
            .microsoft_refresh_token
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty())
}

impl State {
    /// A saved sign-in is remembered: no sign-in needed.
    pub fn new(setup: &Setup) -> State {
        let saved = is_saved(setup);
        State {
            generation: 0,
            phase: if saved {
                Phase::SignedIn { account: None }
            } else {
                Phase::Idle
            },
            saved,
            note: None,
        }
    }

    /// A flow is running in the background.
    pub fn busy(&self) -> bool {
        matches!(
            self.phase,
            Phase::Starting | Phase::Waiting(_) | Phase::Verifying { .. }
        )
    }

    /// Where the pane rests when no flow runs.
    fn resting(&self) -> Phase {
        if self.saved {
            Phase::SignedIn { account: None }
        } else {
            Phase::Idle
        }
    }
}

// ----- messages and commands -----------------------------------------------------------------

/// Background results; each carries the generation of the flow it belongs to.
#[derive(Debug, Clone)]
pub enum Msg {
    /// The code to show (§1.2).
    Code {
        generation: u64,
        user_code: String,
        verification_uri: String,
        expires_in_secs: u64,
        demo: bool,
    },
    /// Signed in and accepted; the MSP details are being read.
    Verifying {
        generation: u64,
        account: Account,
    },
    /// Done: the details and the session's refresh token (redacted in `Debug`).
    SignedIn {
        generation: u64,
        account: Account,
        details: MspDetails,
        refresh_token: Secret,
    },
    Refused {
        generation: u64,
        account: Account,
        refusal: Refusal,
    },
    Expired {
        generation: u64,
        valid_secs: Option<u64>,
    },
    Failed {
        generation: u64,
        failure: Failure,
    },
}

impl Msg {
    fn generation(&self) -> u64 {
        match self {
            Msg::Code { generation, .. }
            | Msg::Verifying { generation, .. }
            | Msg::SignedIn { generation, .. }
            | Msg::Refused { generation, .. }
            | Msg::Expired { generation, .. }
            | Msg::Failed { generation, .. } => *generation,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Cmd {
    /// Run a sign-in: code, wait, check, details. `settings` gives the app (client id), the
    /// endpoints and the tenant already set up.
    Start {
        generation: u64,
        settings: Box<Settings>,
    },
    /// Stop the flow of this generation (and any older one).
    Cancel { generation: u64 },
}

/// Kept between commands by the runner: the cancel switch of the running flow.
#[derive(Debug, Default)]
pub struct Runtime {
    flow: Mutex<FlowSlot>,
}

#[derive(Debug, Default)]
struct FlowSlot {
    running: Option<(u64, watch::Sender<bool>)>,
    /// Flows up to this generation were cancelled (a cancel may overtake its start).
    cancelled_up_to: u64,
}

impl Runtime {
    fn slot(&self) -> std::sync::MutexGuard<'_, FlowSlot> {
        self.flow.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register flow `generation`; `None` if it was cancelled already. A running older flow is
    /// stopped: only one sign-in runs at a time.
    fn register(&self, generation: u64) -> Option<watch::Receiver<bool>> {
        let mut f = self.slot();
        if generation <= f.cancelled_up_to {
            return None;
        }
        if let Some((_, old)) = f.running.take() {
            let _ = old.send(true);
        }
        let (tx, rx) = watch::channel(false);
        f.running = Some((generation, tx));
        Some(rx)
    }

    fn cancel(&self, generation: u64) {
        let mut f = self.slot();
        f.cancelled_up_to = f.cancelled_up_to.max(generation);
        if f.running.as_ref().is_some_and(|(g, _)| *g <= generation)
            && let Some((_, tx)) = f.running.take()
        {
            let _ = tx.send(true);
        }
    }

    fn finish(&self, generation: u64) {
        let mut f = self.slot();
        if f.running.as_ref().is_some_and(|(g, _)| *g == generation) {
            f.running = None;
        }
    }

    /// A flow is registered and not finished (tests).
    pub fn running(&self) -> Option<u64> {
        self.slot().running.as_ref().map(|(g, _)| *g)
    }
}

// ----- update (pure) -------------------------------------------------------------------------

pub fn on_key(s: &mut State, setup: &mut Setup, key: KeyEvent) -> Vec<Effect> {
    if key
        .modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
    {
        return Vec::new();
    }
    match key.code {
        KeyCode::Enter if !s.busy() => start(s, setup),
        KeyCode::Esc | KeyCode::Char('c') if s.busy() => {
            let effects = stop(s);
            s.note = Some("Sign-in cancelled.".into());
            effects
        }
        KeyCode::Char('o') if !s.busy() && s.saved => sign_out(s, setup),
        _ => Vec::new(),
    }
}

fn start(s: &mut State, setup: &Setup) -> Vec<Effect> {
    s.generation += 1;
    s.phase = Phase::Starting;
    s.note = None;
    vec![Effect::SignIn(Cmd::Start {
        generation: s.generation,
        settings: Box::new(setup.settings.clone()),
    })]
}

/// End the running flow: its later results are stale, and the background wait stops.
fn stop(s: &mut State) -> Vec<Effect> {
    let old = s.generation;
    s.generation += 1;
    s.phase = s.resting();
    vec![Effect::SignIn(Cmd::Cancel { generation: old })]
}

fn sign_out(s: &mut State, setup: &mut Setup) -> Vec<Effect> {
    setup.secrets.microsoft_refresh_token = None;
    // The app registration is configuration, not the account: it stays.
    setup.settings.microsoft = MicrosoftSettings {
        client_id: std::mem::take(&mut setup.settings.microsoft.client_id),
        ..MicrosoftSettings::default()
    };
    s.saved = false;
    s.phase = Phase::Idle;
    s.note =
        Some("Signed out: cspsync forgot the Microsoft sign-in and the MSP details.".to_string());
    vec![Effect::Save(Box::new(setup.clone()))]
}

pub fn on_msg(s: &mut State, setup: &mut Setup, msg: Msg) -> Vec<Effect> {
    if msg.generation() != s.generation || !s.busy() {
        return Vec::new();
    }
    match msg {
        Msg::Code {
            user_code,
            verification_uri,
            expires_in_secs,
            demo,
            ..
        } => {
            if s.phase == Phase::Starting {
                s.phase = Phase::Waiting(Code {
                    qr: qr::lines(&verification_uri),
                    user_code,
                    verification_uri,
                    expires_in: expires_in_secs,
                    remaining: expires_in_secs,
                    demo,
                });
            }
            Vec::new()
        }
        Msg::Verifying { account, .. } => {
            s.phase = Phase::Verifying { account };
            Vec::new()
        }
        Msg::SignedIn {
            account,
            details,
            refresh_token,
            ..
        } => {
            // Checked again against what is saved now (the background checked the settings
            // it started with).
            if let Some(refusal) = check_account(&account, &setup.settings.microsoft.tenant_id) {
                s.phase = Phase::Refused { account, refusal };
                return Vec::new();
            }
            let m = &mut setup.settings.microsoft;
            m.tenant_id = if details.tenant_id.trim().is_empty() {
                account.tenant_id.clone()
            } else {
                details.tenant_id.trim().to_string()
            };
            m.tenant_name = details.tenant_name.trim().to_string();
            m.domain = details.domain.trim().to_string();
            m.setup_user_oid = account.oid.clone();
            m.setup_user_name = account
                .username
                .clone()
                .or_else(|| account.name.clone())
                .unwrap_or_default();
            setup.secrets.microsoft_refresh_token = Some(refresh_token.expose().to_string());
            s.saved = is_saved(setup);
            s.phase = Phase::SignedIn {
                account: Some(account),
            };
            vec![Effect::Save(Box::new(setup.clone()))]
        }
        Msg::Refused {
            account, refusal, ..
        } => {
            s.phase = Phase::Refused { account, refusal };
            Vec::new()
        }
        Msg::Expired { valid_secs, .. } => {
            s.phase = Phase::Expired { valid_secs };
            Vec::new()
        }
        Msg::Failed { failure, .. } => {
            s.phase = Phase::Failed(failure);
            Vec::new()
        }
    }
}

pub fn editing(_s: &State) -> bool {
    false
}

/// Nothing is typed here: a sign-in is saved as soon as it completes.
pub fn unsaved(_s: &State) -> bool {
    false
}

/// Done while a sign-in is saved, even during a new sign-in (which keeps the person on this
/// tab to see how it ends); busy while the first one runs.
pub fn status(s: &State, setup: &Setup) -> Step {
    if is_saved(setup) {
        Step::Done
    } else if s.busy() {
        Step::Busy
    } else {
        Step::ToDo
    }
}

pub fn hints(s: &State) -> Vec<Hint> {
    let mut h = Vec::new();
    match &s.phase {
        Phase::Starting | Phase::Waiting(_) | Phase::Verifying { .. } => {
            h.push(Hint::new("Esc/c", "cancel"));
        }
        Phase::Idle => h.push(Hint::new("Enter", "sign in")),
        Phase::SignedIn { .. } => h.push(Hint::new("Enter", "sign in again")),
        Phase::Refused { .. } | Phase::Expired { .. } | Phase::Failed(_) => {
            h.push(Hint::new("Enter", "new code"));
        }
    }
    if !s.busy() && s.saved {
        h.push(Hint::new("o", "sign out"));
    }
    h
}

/// The countdown runs while a code is shown.
pub fn wants_tick(s: &State) -> bool {
    matches!(s.phase, Phase::Waiting(_))
}

/// One second passed: count down; at zero the code has expired and the wait stops.
pub fn on_tick(s: &mut State) -> Vec<Effect> {
    let Phase::Waiting(code) = &mut s.phase else {
        return Vec::new();
    };
    code.remaining = code.remaining.saturating_sub(1);
    if code.remaining > 0 {
        return Vec::new();
    }
    let valid_secs = Some(code.expires_in);
    let effects = stop(s);
    s.phase = Phase::Expired { valid_secs };
    effects
}

// ----- background ----------------------------------------------------------------------------

pub async fn run(cmd: Cmd, svc: Arc<Services>, tx: Sender<app::Msg>) {
    match cmd {
        Cmd::Cancel { generation } => svc.signin.cancel(generation),
        Cmd::Start {
            generation,
            settings,
        } => {
            let Some(cancel) = svc.signin.register(generation) else {
                return;
            };
            let outcome = sign_in(generation, &settings, &svc, &tx, cancel).await;
            svc.signin.finish(generation);
            if let Some(msg) = outcome {
                let _ = tx.send(app::Msg::SignIn(msg)).await;
            }
        }
    }
}

/// Resolves once `cancel` is true (or its sender is gone: nobody waits for this flow).
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    let _ = cancel.wait_for(|c| *c).await;
}

/// The whole flow; `None` when cancelled (the pane has moved on and expects nothing).
async fn sign_in(
    generation: u64,
    settings: &Settings,
    svc: &Services,
    tx: &Sender<app::Msg>,
    mut cancel: watch::Receiver<bool>,
) -> Option<Msg> {
    let entra = connect::entra(&svc.ctx, settings);
    let start = tokio::select! {
        _ = cancelled(&mut cancel) => return None,
        r = entra.start_device_code() => match r {
            Ok(s) => s,
            Err(e) => return Some(failed(generation, Stage::SignIn, &e)),
        },
    };
    let code = Msg::Code {
        generation,
        user_code: start.user_code.clone(),
        verification_uri: start.verification_uri.clone(),
        expires_in_secs: start.expires_in.as_secs(),
        demo: svc.demo.is_some(),
    };
    let _ = tx.send(app::Msg::SignIn(code)).await;
    let tokens = match entra.wait_for_device_code(&start, cancel.clone()).await {
        Ok(t) => t,
        Err(e) => {
            return match DeviceFlowStop::of(&e) {
                Some(DeviceFlowStop::Cancelled) => None,
                Some(DeviceFlowStop::Expired) => Some(Msg::Expired {
                    generation,
                    valid_secs: Some(start.expires_in.as_secs()),
                }),
                Some(DeviceFlowStop::Declined) => Some(Msg::Failed {
                    generation,
                    failure: Failure::declined(),
                }),
                Some(DeviceFlowStop::BadVerificationCode) => Some(Msg::Failed {
                    generation,
                    failure: Failure::unknown_code(),
                }),
                None => Some(failed(generation, Stage::SignIn, &e)),
            };
        }
    };
    let account = match tokens.id_claims() {
        Ok(c) => Account::from_claims(&c),
        Err(e) => return Some(failed(generation, Stage::SignIn, &e)),
    };
    if let Some(refusal) = check_account(&account, &settings.microsoft.tenant_id) {
        tracing::info!(tenant = %account.tenant_id, "sign-in refused: {refusal:?}");
        return Some(Msg::Refused {
            generation,
            account,
            refusal,
        });
    }
    let _ = tx
        .send(app::Msg::SignIn(Msg::Verifying {
            generation,
            account: account.clone(),
        }))
        .await;
    let session = match Session::from_sign_in(entra, &tokens) {
        Ok(s) => s,
        Err(e) => return Some(failed(generation, Stage::SignIn, &e)),
    };
    let graph = connect::graph(&svc.ctx, &session);
    // §2.1: GET /organization, the one organisation of the signed-in tenant.
    let org = tokio::select! {
        _ = cancelled(&mut cancel) => return None,
        r = graph.organization() => match r {
            Ok(o) => o,
            Err(e) => return Some(failed(generation, Stage::Details, &e)),
        },
    };
    let details = MspDetails {
        tenant_id: org.id.trim().to_string(),
        tenant_name: org.display_name.clone().unwrap_or_default(),
        domain: org.default_domain().unwrap_or_default().to_string(),
    };
    tracing::info!(tenant = %details.tenant_id, "signed in to Microsoft");
    Some(Msg::SignedIn {
        generation,
        account,
        details,
        refresh_token: Secret::new(session.refresh_token().secret().clone()),
    })
}

fn failed(generation: u64, stage: Stage, e: &ApiError) -> Msg {
    tracing::warn!("sign-in failed: {e}");
    let hint = match (stage, &e.kind) {
        (Stage::Details, ErrorKind::Forbidden | ErrorKind::Unauthorized) => {
            "Sign in with a Global Administrator of your MSP tenant and accept the permissions cspsync asks for (it reads your organisation's profile)."
        }
        _ => e.hint(),
    };
    Msg::Failed {
        generation,
        failure: Failure {
            stage,
            message: format!("{e}."),
            hint: hint.to_string(),
        },
    }
}

// ----- drawing -------------------------------------------------------------------------------

/// Rows `lines` take in `width` columns when word-wrapped (close to what `Paragraph` does).
fn rows(lines: &[Line], width: u16) -> usize {
    let width = usize::from(width.max(1));
    lines
        .iter()
        .map(|l| {
            let text: String = l.spans.iter().map(|s| s.content.as_ref()).collect();
            wrapped_rows(&text, width)
        })
        .sum()
}

fn wrapped_rows(text: &str, width: usize) -> usize {
    let mut rows = 1;
    let mut col = 0usize;
    for word in text.split(' ') {
        let w = word.chars().count();
        let need = if col == 0 { w } else { col + 1 + w };
        if need <= width {
            col = need;
        } else if w > width {
            // A word longer than the line is broken across rows.
            rows += usize::from(col > 0) + (w - 1) / width;
            col = (w - 1) % width + 1;
        } else {
            rows += 1;
            col = w;
        }
    }
    rows
}

fn title(theme: &Theme, text: &str) -> Line<'static> {
    Line::from(Span::styled(text.to_string(), theme.title()))
}

fn note_lines(s: &State, theme: &Theme, out: &mut Vec<Line<'static>>) {
    if let Some(n) = &s.note {
        out.push(Line::from(""));
        out.push(Line::from(Span::styled(n.clone(), theme.warn())));
    }
}

fn prerequisites(theme: &Theme) -> Vec<Line<'static>> {
    // The seed guides' prerequisites (domain.md §1(a)).
    vec![
        Line::from("Before you start, the account you sign in with needs:"),
        Line::from("  • the Global Administrator role, or at least Admin Agent (Partner Center)"),
        Line::from("  • two-factor authentication (MFA) turned on; check it at aka.ms/mfasetup"),
        Line::from(
            "  • to be on your MSP's own domain (you@yourcompany.com), not .onmicrosoft.com",
        ),
        Line::from(Span::styled(
            "If the consent page offers \"Consent on behalf of your organization\", tick it.",
            theme.dim(),
        )),
    ]
}

pub fn render(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.width == 0 || area.height == 0 {
        return;
    }
    if let Phase::Waiting(code) = &s.phase {
        render_waiting(code, theme, frame, area);
        return;
    }
    let mut lines: Vec<Line<'static>> = vec![title(theme, "Sign in to Microsoft"), Line::from("")];
    match &s.phase {
        Phase::Idle => {
            lines.push(Line::from(
                "cspsync signs in to your MSP's Microsoft 365 tenant with a code you type into",
            ));
            lines.push(Line::from(
                "a browser, on this computer or on your phone. It fills in your MSP details",
            ));
            lines.push(Line::from(
                "(tenant name, id and default domain) and remembers the sign-in.",
            ));
            lines.push(Line::from(""));
            lines.extend(prerequisites(theme));
            lines.push(Line::from(""));
            lines.push(Line::from(vec![
                Span::raw("Press "),
                Span::styled("Enter", theme.key()),
                Span::raw(" to get a sign-in code."),
            ]));
            note_lines(s, theme, &mut lines);
        }
        Phase::Starting => {
            lines.push(Line::from(Span::styled(
                "Asking Microsoft for a sign-in code…",
                theme.warn(),
            )));
        }
        Phase::Verifying { account } => {
            lines.push(Line::from(vec![
                Span::styled("✓ ", theme.ok()),
                Span::raw(format!("Signed in as {}.", account.label())),
            ]));
            lines.push(Line::from(Span::styled(
                "Reading your MSP details (tenant name, id and domain) from Microsoft Graph…",
                theme.warn(),
            )));
        }
        Phase::SignedIn { account } => {
            signed_in_lines(account.as_ref(), setup, theme, &mut lines, s)
        }
        Phase::Refused { account, refusal } => {
            refused_lines(account, refusal, setup, theme, &mut lines)
        }
        Phase::Expired { valid_secs } => {
            lines.push(Line::from(Span::styled(
                "The sign-in code expired.",
                theme.error(),
            )));
            let valid = match valid_secs {
                Some(v) if *v >= 120 => format!("the {} minutes it was valid", v / 60),
                Some(v) => format!("the {v} seconds it was valid"),
                None => "the time it was valid".to_string(),
            };
            lines.push(Line::from(format!(
                "Nobody finished the sign-in in the browser within {valid}."
            )));
            lines.push(Line::from(""));
            lines.push(Line::from(vec![
                Span::raw("Press "),
                Span::styled("Enter", theme.key()),
                Span::raw(" for a new code."),
            ]));
        }
        Phase::Failed(f) => {
            let what = match f.stage {
                Stage::SignIn => "The sign-in did not finish.",
                Stage::Details => "Signed in, but your MSP details could not be read.",
            };
            lines.push(Line::from(Span::styled(what, theme.error())));
            lines.push(Line::from(f.message.clone()));
            lines.push(Line::from(""));
            lines.push(Line::from(vec![
                Span::styled("What to do: ", theme.title()),
                Span::raw(f.hint.clone()),
            ]));
            lines.push(Line::from("Nothing was saved."));
            lines.push(Line::from(""));
            lines.push(Line::from(vec![
                Span::raw("Press "),
                Span::styled("Enter", theme.key()),
                Span::raw(" to try again with a new code."),
            ]));
        }
        Phase::Waiting(_) => {}
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

fn details_lines(setup: &Setup, theme: &Theme, lines: &mut Vec<Line<'static>>) {
    let m = &setup.settings.microsoft;
    let row = |label: &str, value: &str| {
        let v = if value.trim().is_empty() {
            "(not given)".to_string()
        } else {
            value.to_string()
        };
        Line::from(vec![
            Span::raw(format!("  {label:<13}")),
            Span::styled(v, theme.accent()),
        ])
    };
    lines.push(Line::from(
        "Your MSP details, filled in from your Microsoft tenant:",
    ));
    lines.push(row("Tenant name", &m.tenant_name));
    lines.push(row("Tenant id", &m.tenant_id));
    lines.push(row("Domain", &m.domain));
}

fn signed_in_lines(
    account: Option<&Account>,
    setup: &Setup,
    theme: &Theme,
    lines: &mut Vec<Line<'static>>,
    s: &State,
) {
    let who = match account {
        Some(a) => format!("Signed in as {}.", a.label()),
        None => {
            let name = &setup.settings.microsoft.setup_user_name;
            let name = if name.trim().is_empty() {
                "your MSP admin"
            } else {
                name.as_str()
            };
            format!("Signed in as {name} (remembered).")
        }
    };
    lines.push(Line::from(vec![
        Span::styled("✓ ", theme.ok()),
        Span::styled(who, theme.ok()),
    ]));
    lines.push(Line::from(""));
    details_lines(setup, theme, lines);
    lines.push(Line::from(""));
    if let Some(a) = account
        && !a.mfa
    {
        lines.push(Line::from(Span::styled(
            "This sign-in did not use MFA; Partner Center will refuse it. Turn MFA on",
            theme.warn(),
        )));
        lines.push(Line::from(Span::styled(
            "(aka.ms/mfasetup), then sign in again.",
            theme.warn(),
        )));
        lines.push(Line::from(""));
    }
    lines.push(Line::from(
        "The sign-in is kept in the secrets file: the next start needs no sign-in",
    ));
    lines.push(Line::from("until Microsoft ends the session."));
    lines.push(Line::from(vec![
        Span::raw("Press "),
        Span::styled("o", theme.key()),
        Span::raw(" to sign out (forget the sign-in and the MSP details)."),
    ]));
    note_lines(s, theme, lines);
}

fn refused_lines(
    account: &Account,
    refusal: &Refusal,
    setup: &Setup,
    theme: &Theme,
    lines: &mut Vec<Line<'static>>,
) {
    let name = account.username.clone().unwrap_or_else(|| account.label());
    lines.push(Line::from(vec![
        Span::styled("✗ This account cannot be used: ", theme.error()),
        Span::styled(name, theme.error()),
    ]));
    match refusal {
        Refusal::OnMicrosoftDomain => {
            lines.push(Line::from(ONMICROSOFT_REASON));
            lines.push(Line::from(""));
            lines.push(Line::from(vec![
                Span::styled("What to do: ", theme.title()),
                Span::raw(
                    "sign in with your admin account on your MSP's own domain (e.g. you@yourcompany.com).",
                ),
            ]));
        }
        Refusal::OtherTenant { expected } => {
            let m = &setup.settings.microsoft;
            let set_up = if m.tenant_name.trim().is_empty() {
                "your MSP's tenant".to_string()
            } else {
                m.tenant_name.trim().to_string()
            };
            lines.push(Line::from(format!(
                "It is from another Microsoft tenant: {}.",
                account.tenant_id
            )));
            lines.push(Line::from(format!(
                "cspsync is set up for {set_up}: tenant {expected}."
            )));
            lines.push(Line::from(""));
            lines.push(Line::from(vec![
                Span::styled("What to do: ", theme.title()),
                Span::raw(
                    "sign in with an admin account of the tenant set up, or sign out first (o) to set cspsync up for another tenant.",
                ),
            ]));
        }
    }
    lines.push(Line::from("Nothing was saved."));
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::raw("Press "),
        Span::styled("Enter", theme.key()),
        Span::raw(" for a new code."),
    ]));
}

fn countdown(secs: u64) -> String {
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// The code screen's text column; `big` draws the code in the block font, `full` keeps the
/// spacing and the prerequisites (dropped when rows are short).
fn waiting_lines(
    code: &Code,
    theme: &Theme,
    big: Option<&[String]>,
    full: bool,
    qr_note: bool,
) -> Vec<Line<'static>> {
    let blank = |v: &mut Vec<Line<'static>>| {
        if full {
            v.push(Line::from(""));
        }
    };
    let mut v = vec![title(theme, "Sign in to Microsoft")];
    blank(&mut v);
    v.push(Line::from("1. On your phone or computer, open this page:"));
    v.push(Line::from(Span::styled(
        format!("   {}", code.verification_uri),
        theme.accent(),
    )));
    v.push(Line::from(vec![
        Span::raw("2. Enter this code:  "),
        Span::styled(code.user_code.clone(), theme.accent()),
    ]));
    if let Some(rows) = big {
        blank(&mut v);
        for r in rows {
            v.push(Line::from(Span::styled(format!("   {r}"), theme.accent())));
        }
        blank(&mut v);
    }
    v.push(Line::from(
        "3. Sign in as your MSP admin and accept the permissions.",
    ));
    blank(&mut v);
    let left = code.remaining;
    let clock_style = if left <= 60 {
        theme.warn()
    } else {
        theme.title()
    };
    v.push(Line::from(vec![
        Span::raw("Code expires in "),
        Span::styled(countdown(left), clock_style),
        Span::styled(" · waiting for you in the browser…", theme.dim()),
    ]));
    if code.demo {
        v.push(Line::from(Span::styled(
            "Demo: the simulated browser approves this code in a few seconds.",
            theme.warn(),
        )));
    }
    if full {
        v.push(Line::from(Span::styled(
            "Account needed: Global Administrator or Admin Agent, with MFA,",
            theme.dim(),
        )));
        v.push(Line::from(Span::styled(
            "on your MSP's own domain, not .onmicrosoft.com.",
            theme.dim(),
        )));
    }
    if qr_note {
        v.push(Line::from(Span::styled(
            "Enlarge the terminal to see a QR code of the page for your phone.",
            theme.dim(),
        )));
    }
    v
}

fn render_waiting(code: &Code, theme: &Theme, frame: &mut Frame, area: Rect) {
    let qr = code.qr.as_deref().unwrap_or(&[]);
    let qr_w = qr
        .first()
        .map_or(0, |r| u16::try_from(r.chars().count()).unwrap_or(u16::MAX));
    let qr_h = u16::try_from(qr.len()).unwrap_or(u16::MAX);
    // The block font, with wider gaps when there is room.
    let big_for = |width: u16| -> Option<Vec<String>> {
        [2usize, 1]
            .into_iter()
            .find(|g| bigtext::width(&code.user_code, *g) + 3 <= usize::from(width))
            .and_then(|g| bigtext::render(&code.user_code, g))
    };
    // Try: QR to the right, then QR below, then no QR; within each, big code with spacing,
    // big code compact, plain code with spacing, plain compact.
    struct Plan {
        lines: Vec<Line<'static>>,
        text: Rect,
        qr: Option<Rect>,
    }
    let fit = |text_w: u16, text_h: u16, qr_note: bool| -> Option<Vec<Line<'static>>> {
        let big = big_for(text_w);
        let options = [
            (big.as_deref(), true),
            (big.as_deref(), false),
            (None, true),
            (None, false),
        ];
        options.into_iter().find_map(|(b, full)| {
            let lines = waiting_lines(code, theme, b, full, qr_note);
            (rows(&lines, text_w) <= usize::from(text_h)).then_some(lines)
        })
    };
    let mut plan: Option<Plan> = None;
    if qr_h > 0 {
        // Right: caption row + QR, next to a text column wide enough for the big code.
        let text_w = area.width.saturating_sub(qr_w + 3);
        let min_text = u16::try_from(bigtext::width(&code.user_code, 1) + 3)
            .unwrap_or(u16::MAX)
            .max(56);
        if text_w >= min_text
            && area.height >= qr_h + 3
            && let Some(lines) = fit(text_w, area.height, false)
        {
            plan = Some(Plan {
                lines,
                text: Rect {
                    width: text_w,
                    ..area
                },
                qr: Some(Rect {
                    x: area.x + area.width - qr_w,
                    y: area.y + 2,
                    width: qr_w,
                    height: qr_h + 1,
                }),
            });
        }
        // Below: the text first, then the QR.
        if plan.is_none() && area.width >= qr_w {
            let text_h = area.height.saturating_sub(qr_h + 2);
            if let Some(lines) = fit(area.width, text_h, false) {
                let used = u16::try_from(rows(&lines, area.width)).unwrap_or(u16::MAX);
                plan = Some(Plan {
                    lines,
                    text: Rect {
                        height: used,
                        ..area
                    },
                    qr: Some(Rect {
                        x: area.x,
                        y: area.y + used + 1,
                        width: qr_w,
                        height: qr_h + 1,
                    }),
                });
            }
        }
    }
    let plan = plan.unwrap_or_else(|| {
        let lines = fit(area.width, area.height, qr_h > 0)
            .unwrap_or_else(|| waiting_lines(code, theme, None, false, false));
        Plan {
            lines,
            text: area,
            qr: None,
        }
    });
    frame.render_widget(
        Paragraph::new(plan.lines).wrap(Wrap { trim: false }),
        plan.text,
    );
    if let Some(r) = plan.qr {
        let r = r.intersection(area);
        // Pinned colours: light modules white, dark black, whatever the terminal's theme.
        let style = if theme.color {
            Style::default().fg(Color::White).bg(Color::Black)
        } else {
            Style::default()
        };
        let mut q: Vec<Line<'static>> = vec![Line::from(Span::styled(
            "Or scan with your phone:",
            theme.dim(),
        ))];
        q.extend(
            qr.iter()
                .map(|row| Line::from(Span::styled(row.clone(), style))),
        );
        frame.render_widget(Paragraph::new(q), r);
    }
}
