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
//!
//! Access (issue 4 §2): the first sign-in records the setup account (admin); later sign-ins of
//! the same tenant record only who is signed in now, and the pane shows their standing — their
//! role, or that they are not on the allowed users (the app then opens nothing but this tab).
//! Signing out forgets the session but keeps the setup account. Sign-ins, refusals and
//! sign-outs go to the audit log ([`crate::audit`]), written by [`run`].

use std::sync::{Arc, Mutex};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use tokio::sync::mpsc::Sender;
use tokio::sync::watch;

use serde_json::{Value, json};

use super::{Hint, Step};
use crate::access::{self, Access};
use crate::api::error::{ApiError, ErrorKind};
use crate::audit::{self, Actor};
use crate::auth::entra::{DeviceFlowStop, IdClaims, Session};
use crate::config::{Role, Settings};
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

    /// The sign-in name (`preferred_username`), else the display name, else the object id:
    /// what is recorded as who signed in.
    pub fn sign_in_name(&self) -> String {
        self.username
            .clone()
            .or_else(|| self.name.clone())
            .unwrap_or_else(|| self.oid.clone())
    }

    /// Who signed in, for the audit log.
    pub fn actor(&self) -> Actor {
        Actor::new(self.oid.clone(), self.sign_in_name())
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
    /// cspsync is set up already: whoever is allowed signs in, not only an admin.
    pub set_up: bool,
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
    /// An audit record could not be written (whatever the flow: shown, never dropped).
    AuditFailed {
        error: String,
    },
}

impl Msg {
    fn generation(&self) -> Option<u64> {
        match self {
            Msg::Code { generation, .. }
            | Msg::Verifying { generation, .. }
            | Msg::SignedIn { generation, .. }
            | Msg::Refused { generation, .. }
            | Msg::Expired { generation, .. }
            | Msg::Failed { generation, .. } => Some(*generation),
            Msg::AuditFailed { .. } => None,
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
    /// Append to the audit log ([`audit::record`], stamped with the time it is written).
    Record {
        actor: Actor,
        action: &'static str,
        details: Value,
    },
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

/// Forget the session and who is signed in; the setup account, the tenant and the app
/// registration stay (cspsync stays set up, and the next person signs in to it).
fn sign_out(s: &mut State, setup: &mut Setup) -> Vec<Effect> {
    let actor = Actor::signed_in(&setup.settings);
    setup.secrets.microsoft_refresh_token = None;
    let m = &mut setup.settings.microsoft;
    m.signed_in_oid.clear();
    m.signed_in_name.clear();
    s.saved = false;
    s.phase = Phase::Idle;
    s.note = Some("Signed out: cspsync forgot the Microsoft sign-in.".to_string());
    vec![
        Effect::Save(Box::new(setup.clone())),
        record(actor, audit::SIGN_OUT, json!({})),
    ]
}

fn record(actor: Actor, action: &'static str, details: Value) -> Effect {
    Effect::SignIn(Cmd::Record {
        actor,
        action,
        details,
    })
}

fn refusal_record(account: &Account, refusal: &Refusal) -> Effect {
    let details = match refusal {
        Refusal::OnMicrosoftDomain => json!({
            "reason": "onmicrosoft_domain",
            "tenant_id": account.tenant_id,
        }),
        Refusal::OtherTenant { expected } => json!({
            "reason": "other_tenant",
            "tenant_id": account.tenant_id,
            "expected_tenant_id": expected,
        }),
    };
    record(account.actor(), audit::SIGN_IN_REFUSED, details)
}

pub fn on_msg(s: &mut State, setup: &mut Setup, msg: Msg) -> Vec<Effect> {
    if let Msg::AuditFailed { error } = &msg {
        s.note = Some(format!("Not recorded in the audit log: {error}"));
        return Vec::new();
    }
    if msg.generation() != Some(s.generation) || !s.busy() {
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
                    set_up: is_set_up(setup),
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
                let effect = refusal_record(&account, &refusal);
                s.phase = Phase::Refused { account, refusal };
                return vec![effect];
            }
            let m = &mut setup.settings.microsoft;
            // The first sign-in sets cspsync up: its account is the admin. Later sign-ins
            // (the same tenant) only say who is signed in now.
            let first = m.setup_user_oid.trim().is_empty();
            if first || m.tenant_id.trim().is_empty() {
                m.tenant_id = if details.tenant_id.trim().is_empty() {
                    account.tenant_id.clone()
                } else {
                    details.tenant_id.trim().to_string()
                };
                m.tenant_name = details.tenant_name.trim().to_string();
                m.domain = details.domain.trim().to_string();
            }
            if first {
                m.setup_user_oid = account.oid.clone();
                m.setup_user_name = account.sign_in_name();
            }
            m.signed_in_oid = account.oid.clone();
            m.signed_in_name = account.sign_in_name();
            setup.secrets.microsoft_refresh_token = Some(refresh_token.expose().to_string());
            s.saved = is_saved(setup);
            let standing = access::decide(&setup.settings, true);
            let audit = match &standing {
                Access::Denied { .. } => record(
                    account.actor(),
                    audit::SIGN_IN_REFUSED,
                    json!({
                        "reason": "not_allowed",
                        "tenant_id": account.tenant_id,
                    }),
                ),
                a => record(
                    account.actor(),
                    audit::SIGN_IN,
                    json!({
                        "role": a.label(),
                        "first_setup": first,
                        "tenant_id": account.tenant_id,
                        "mfa": account.mfa,
                    }),
                ),
            };
            s.phase = Phase::SignedIn {
                account: Some(account),
            };
            vec![Effect::Save(Box::new(setup.clone())), audit]
        }
        Msg::Refused {
            account, refusal, ..
        } => {
            let effect = refusal_record(&account, &refusal);
            s.phase = Phase::Refused { account, refusal };
            vec![effect]
        }
        Msg::Expired { valid_secs, .. } => {
            s.phase = Phase::Expired { valid_secs };
            Vec::new()
        }
        Msg::Failed { failure, .. } => {
            s.phase = Phase::Failed(failure);
            Vec::new()
        }
        Msg::AuditFailed { .. } => Vec::new(),
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
        Cmd::Record {
            actor,
            action,
            details,
        } => {
            let event = audit::Event::now(actor, action, details);
            let config = svc.config.clone();
            let written = tokio::task::spawn_blocking(move || audit::record(&config, &event))
                .await
                .unwrap_or_else(|e| Err(format!("the audit task failed: {e}")));
            if let Err(error) = written {
                tracing::warn!("audit record {action} not written: {error}");
                let _ = tx.send(app::Msg::SignIn(Msg::AuditFailed { error })).await;
            }
        }
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
        Phase::Idle if is_set_up(setup) => set_up_idle_lines(setup, theme, &mut lines, s),
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
            refused_lines(account, refusal, setup, theme, &mut lines);
            note_lines(s, theme, &mut lines);
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

/// cspsync has a setup account: whoever signs in now signs in to it.
fn is_set_up(setup: &Setup) -> bool {
    !setup.settings.microsoft.setup_user_oid.trim().is_empty()
}

/// The setup account's sign-in name, for "ask … to add you".
fn setup_account_name(setup: &Setup) -> String {
    let name = setup.settings.microsoft.setup_user_name.trim();
    if name.is_empty() {
        "the account that set cspsync up".to_string()
    } else {
        name.to_string()
    }
}

/// `Alex Nguyen <alex@contoso.com>`, or whichever of the two is known.
fn who(account: &Account) -> String {
    match (&account.name, &account.username) {
        (Some(n), Some(u)) if n != u => format!("{n} <{u}>"),
        _ => account.sign_in_name(),
    }
}

/// Signed out of a cspsync that is set up: who may sign in.
fn set_up_idle_lines(setup: &Setup, theme: &Theme, lines: &mut Vec<Line<'static>>, s: &State) {
    let m = &setup.settings.microsoft;
    let tenant = match (m.tenant_name.trim(), m.domain.trim()) {
        ("", "") => "your MSP's Microsoft tenant".to_string(),
        (n, "") => n.to_string(),
        ("", d) => d.to_string(),
        (n, d) => format!("{n} ({d})"),
    };
    lines.push(Line::from(format!("cspsync is set up for {tenant}.")));
    lines.push(Line::from(format!(
        "Sign in with your Microsoft account there: {} (who set cspsync up) and the users allowed in its Users tab may use cspsync.",
        setup_account_name(setup)
    )));
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::raw("Press "),
        Span::styled("Enter", theme.key()),
        Span::raw(" to get a sign-in code."),
    ]));
    note_lines(s, theme, lines);
}

fn signed_in_lines(
    account: Option<&Account>,
    setup: &Setup,
    theme: &Theme,
    lines: &mut Vec<Line<'static>>,
    s: &State,
) {
    let m = &setup.settings.microsoft;
    let remembered = || {
        [m.signed_in_name.trim(), m.setup_user_name.trim()]
            .into_iter()
            .find(|n| !n.is_empty())
            .unwrap_or("your MSP admin")
            .to_string()
    };
    let name = account.map(who).unwrap_or_else(remembered);
    let standing = access::decide(&setup.settings, is_saved(setup));
    if let Access::Denied { .. } = standing {
        lines.push(Line::from(Span::styled(
            format!(
                "✗ {name} is not on cspsync's allowed users; ask {} to add you in the Users tab.",
                setup_account_name(setup)
            ),
            theme.error(),
        )));
        lines.push(Line::from(""));
        lines.push(Line::from(
            "Until you are added, cspsync opens nothing but this tab.",
        ));
        lines.push(Line::from(vec![
            Span::raw("Press "),
            Span::styled("Enter", theme.key()),
            Span::raw(" to sign in as someone else, or "),
            Span::styled("o", theme.key()),
            Span::raw(" to sign out."),
        ]));
        note_lines(s, theme, lines);
        return;
    }
    let role = match &standing {
        Access::Admin | Access::Allowed(_) => {
            let again = if account.is_none() {
                ", remembered"
            } else {
                ""
            };
            format!(" ({}{again})", standing.label())
        }
        _ if account.is_none() => " (remembered)".to_string(),
        _ => String::new(),
    };
    lines.push(Line::from(vec![
        Span::styled("✓ ", theme.ok()),
        Span::styled(format!("Signed in as {name}{role}."), theme.ok()),
    ]));
    let what = match &standing {
        Access::Admin => Some(
            "You set cspsync up: every tab is yours, and you choose who else may use it (tab 5, Users)."
                .to_string(),
        ),
        Access::Allowed(Role::Operator) => {
            Some("As an operator you may reconcile and apply syncs.".to_string())
        }
        Access::Allowed(Role::Viewer) => Some(format!(
            "As a viewer you may reconcile, read-only; to apply syncs, ask {} to make you an operator.",
            setup_account_name(setup)
        )),
        _ => None,
    };
    if let Some(w) = what {
        lines.push(Line::from(Span::styled(w, theme.dim())));
    }
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
        Span::raw(" to sign out (cspsync stays set up for the next person)."),
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
                Span::raw(format!(
                    "sign in with your account of {set_up}. To set cspsync up for another tenant, start it with an empty settings directory (--config-dir DIR)."
                )),
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
    v.push(Line::from(if code.set_up {
        "3. Sign in with your work account and accept the permissions."
    } else {
        "3. Sign in as your MSP admin and accept the permissions."
    }));
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
    if full && !code.set_up {
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
