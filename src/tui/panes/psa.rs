//! The PSA tab (issue 3 §5): choose ConnectWise, Autotask or Xero, enter what that PSA needs,
//! and prove it works. ConnectWise and Autotask have a form and "Test connection"; Xero signs
//! in with auth code + PKCE (a loopback listener, or the address pasted over SSH) and then
//! asks for the organisation, a contact, an expense and a revenue account from live lists.
//! A success is saved at once (settings + the secret) and completes the step.
//!
//! Split over inline submodules: `picker` (the filtered list), `view` (drawing) and `io`
//! (the background work: [`run`]).

use std::fmt;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;
use tokio::sync::mpsc::Sender;

use super::{Hint, Step};
use crate::api::error::{ApiError, ErrorKind};
use crate::config::{PsaKindSetting, Secrets, Settings};
use crate::secret::Secret;
use crate::tui::app::{self, Effect, Setup};
use crate::tui::runner::Services;
use crate::tui::theme::Theme;
use crate::tui::widgets::{InputOutcome, TextInput};

#[path = "psa_io.rs"]
mod io;
#[path = "psa_picker.rs"]
pub mod picker;
#[path = "psa_view.rs"]
mod view;

pub use io::Runtime;
pub use picker::{Item, PickOutcome, Picker};

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// The PSA being set up (the selector at the top).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ConnectWise,
    Autotask,
    Xero,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::ConnectWise, Kind::Autotask, Kind::Xero];

    pub fn title(self) -> &'static str {
        match self {
            Kind::ConnectWise => "ConnectWise",
            Kind::Autotask => "Autotask",
            Kind::Xero => "Xero",
        }
    }

    pub fn setting(self) -> PsaKindSetting {
        match self {
            Kind::ConnectWise => PsaKindSetting::ConnectWise,
            Kind::Autotask => PsaKindSetting::Autotask,
            Kind::Xero => PsaKindSetting::Xero,
        }
    }

    fn index(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// A text field of the tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    CwCompany,
    CwSite,
    CwPublicKey,
    CwPrivateKey,
    CwClientId,
    AtUser,
    AtSecret,
    AtCode,
    XeroPaste,
}

impl Field {
    /// The field's name inside a sentence.
    pub fn noun(self) -> &'static str {
        match self {
            Field::CwCompany => "company id",
            Field::CwSite => "site",
            Field::CwPublicKey => "public key",
            Field::CwPrivateKey => "private key",
            Field::CwClientId => "client id",
            Field::AtUser => "API user",
            Field::AtSecret => "secret",
            Field::AtCode => "integration code",
            Field::XeroPaste => "pasted address",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Field::CwCompany => "Company id",
            Field::CwSite => "Site",
            Field::CwPublicKey => "Public key",
            Field::CwPrivateKey => "Private key",
            Field::CwClientId => "Client id",
            Field::AtUser => "API user (e-mail)",
            Field::AtSecret => "Secret",
            Field::AtCode => "Integration code",
            Field::XeroPaste => "Pasted address",
        }
    }
}

/// A list to choose from (Xero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickerId {
    Tenant,
    Contact,
    Expense,
    Revenue,
}

impl PickerId {
    pub fn label(self) -> &'static str {
        match self {
            PickerId::Tenant => "Organisation",
            PickerId::Contact => "Contact",
            PickerId::Expense => "Expense account",
            PickerId::Revenue => "Revenue account",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Button {
    /// "Test connection" (ConnectWise, Autotask).
    Test,
    XeroAuthenticate,
    /// Reload the lists with the saved Xero sign-in.
    XeroChange,
    XeroCancel,
    XeroSave,
}

impl Button {
    pub fn label(self) -> &'static str {
        match self {
            Button::Test => "Test connection",
            Button::XeroAuthenticate => "Authenticate with Xero",
            Button::XeroChange => "Change organisation, contact or accounts",
            Button::XeroCancel => "Cancel sign-in",
            Button::XeroSave => "Save",
        }
    }
}

/// A row the focus can be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    Kind,
    Field(Field),
    Picker(PickerId),
    Button(Button),
}

/// The result of the last background action of one PSA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Outcome {
    #[default]
    None,
    Running(String),
    Ok(String),
    Failed {
        error: String,
        hint: String,
        /// The fields the error points at.
        blame: Vec<Field>,
    },
}

impl Outcome {
    fn failed(kind: Kind, e: &ApiError, blame: Vec<Field>) -> Outcome {
        Outcome::Failed {
            error: e.to_string(),
            hint: hint_for(kind, e, &blame),
            blame,
        }
    }

    fn running(&self) -> bool {
        matches!(self, Outcome::Running(_))
    }
}

/// One of the ConnectWise / Autotask forms.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Form {
    pub inputs: Vec<(Field, TextInput)>,
    /// Fields a person has changed (their "required" problems are shown).
    pub touched: Vec<Field>,
    /// Every problem shown (after pressing Test).
    pub show_all: bool,
    /// The values last saved, in `inputs` order.
    pub saved: Vec<String>,
    pub outcome: Outcome,
    /// Generation of the last Test: older answers are dropped.
    pub generation: u64,
}

impl Form {
    fn new(values: Vec<(Field, String)>) -> Form {
        let saved = values.iter().map(|(_, v)| v.trim().to_string()).collect();
        Form {
            inputs: values
                .into_iter()
                .map(|(f, v)| {
                    let input = if is_masked(f) {
                        TextInput::masked(&v)
                    } else {
                        TextInput::new(&v)
                    };
                    (f, input)
                })
                .collect(),
            touched: Vec::new(),
            show_all: false,
            saved,
            outcome: Outcome::None,
            generation: 0,
        }
    }

    pub fn value(&self, f: Field) -> &str {
        self.inputs
            .iter()
            .find(|(g, _)| *g == f)
            .map_or("", |(_, i)| i.trimmed())
    }

    fn input_mut(&mut self, f: Field) -> Option<&mut TextInput> {
        self.inputs
            .iter_mut()
            .find(|(g, _)| *g == f)
            .map(|(_, i)| i)
    }

    pub fn input(&self, f: Field) -> Option<&TextInput> {
        self.inputs.iter().find(|(g, _)| *g == f).map(|(_, i)| i)
    }

    /// The problem to show next to `f`, if any.
    pub fn problem(&self, f: Field) -> Option<&'static str> {
        let v = self.value(f);
        let p = validate(f, v)?;
        if v.is_empty() && !self.show_all && !self.touched.contains(&f) {
            return None;
        }
        Some(p)
    }

    fn first_invalid(&self) -> Option<Field> {
        self.inputs
            .iter()
            .map(|(f, _)| *f)
            .find(|f| validate(*f, self.value(*f)).is_some())
    }

    fn unsaved(&self) -> bool {
        self.inputs
            .iter()
            .zip(&self.saved)
            .any(|((_, i), s)| i.trimmed() != s)
    }

    fn mark_saved(&mut self) {
        self.saved = self
            .inputs
            .iter()
            .map(|(_, i)| i.trimmed().to_string())
            .collect();
    }
}

/// Where the Xero sign-in stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum XeroPhase {
    #[default]
    SignedOut,
    /// Binding the loopback listener.
    Starting,
    /// The authorize URL is shown; waiting for the browser (or a pasted address).
    Waiting { url: String, redirect_uri: String },
    /// The code is being exchanged / the organisations are being read.
    Connecting,
    /// Signed in: choose the organisation, contact and accounts.
    Choosing,
}

#[derive(Clone, Default)]
pub struct XeroForm {
    pub phase: XeroPhase,
    pub paste: TextInput,
    /// Why the pasted address was not accepted.
    pub paste_problem: Option<String>,
    /// A pasted address is being checked.
    pub paste_sent: bool,
    pub tenants: Picker,
    pub contact: Picker,
    pub expense: Picker,
    pub revenue: Picker,
    /// Contacts and accounts of the chosen organisation are loading.
    pub loading: bool,
    pub outcome: Outcome,
    /// The newest refresh token of the session (rotates; persisted on every save).
    pub refresh: Option<Secret>,
    /// The saved organisation, contact, expense and revenue account (ids and codes).
    pub saved: [String; 4],
    pub generation: u64,
}

impl XeroForm {
    pub fn picker(&self, id: PickerId) -> &Picker {
        match id {
            PickerId::Tenant => &self.tenants,
            PickerId::Contact => &self.contact,
            PickerId::Expense => &self.expense,
            PickerId::Revenue => &self.revenue,
        }
    }

    fn picker_mut(&mut self, id: PickerId) -> &mut Picker {
        match id {
            PickerId::Tenant => &mut self.tenants,
            PickerId::Contact => &mut self.contact,
            PickerId::Expense => &mut self.expense,
            PickerId::Revenue => &mut self.revenue,
        }
    }

    fn open_picker(&self) -> Option<PickerId> {
        [
            PickerId::Tenant,
            PickerId::Contact,
            PickerId::Expense,
            PickerId::Revenue,
        ]
        .into_iter()
        .find(|p| self.picker(*p).open)
    }

    /// A sign-in or its choices are under way (until they are saved).
    fn busy(&self) -> bool {
        match self.phase {
            XeroPhase::Starting | XeroPhase::Waiting { .. } | XeroPhase::Connecting => true,
            XeroPhase::Choosing => !matches!(self.outcome, Outcome::Ok(_)),
            XeroPhase::SignedOut => false,
        }
    }
}

#[derive(Clone)]
pub struct State {
    pub kind: Kind,
    /// Index into [`rows`].
    pub focus: usize,
    /// A text field has the keys.
    pub editing: bool,
    pub cw: Form,
    pub at: Form,
    /// The Autotask zone found by discovery: (name, url).
    pub zone: Option<(String, String)>,
    pub xero: XeroForm,
}

/// Never prints a field's value (keys and secrets live in the forms).
impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("psa::State")
            .field("kind", &self.kind)
            .field("focus", &self.focus)
            .field("editing", &self.editing)
            .field("cw", &self.cw.outcome)
            .field("at", &self.at.outcome)
            .field("xero", &self.xero.phase)
            .finish_non_exhaustive()
    }
}

fn is_masked(f: Field) -> bool {
    matches!(f, Field::CwPrivateKey | Field::AtSecret)
}

impl State {
    pub fn new(setup: &Setup) -> State {
        let p = &setup.settings.psa;
        let kind = match p.kind {
            PsaKindSetting::Autotask => Kind::Autotask,
            PsaKindSetting::Xero => Kind::Xero,
            PsaKindSetting::ConnectWise | PsaKindSetting::None => Kind::ConnectWise,
        };
        let secret = |o: &Option<String>| o.clone().unwrap_or_default();
        let cw = Form::new(vec![
            (Field::CwCompany, p.connectwise.company_id.clone()),
            (Field::CwSite, p.connectwise.site.clone()),
            (Field::CwPublicKey, p.connectwise.public_key.clone()),
            (
                Field::CwPrivateKey,
                secret(&setup.secrets.connectwise_private_key),
            ),
            (Field::CwClientId, p.connectwise.client_id.clone()),
        ]);
        let at = Form::new(vec![
            (Field::AtUser, p.autotask.username.clone()),
            (Field::AtSecret, secret(&setup.secrets.autotask_secret)),
            (Field::AtCode, p.autotask.integration_code.clone()),
        ]);
        let zone = (!p.autotask.zone_url.trim().is_empty())
            .then(|| (p.autotask.zone_name.clone(), p.autotask.zone_url.clone()));
        State {
            kind,
            focus: 0,
            editing: false,
            cw,
            at,
            zone,
            xero: XeroForm {
                refresh: Secrets::get(&setup.secrets.xero_refresh_token),
                saved: [
                    p.xero.tenant_id.clone(),
                    p.xero.contact_id.clone(),
                    p.xero.expense_account_code.clone(),
                    p.xero.revenue_account_code.clone(),
                ],
                ..XeroForm::default()
            },
        }
    }

    fn form(&self) -> Option<&Form> {
        match self.kind {
            Kind::ConnectWise => Some(&self.cw),
            Kind::Autotask => Some(&self.at),
            Kind::Xero => None,
        }
    }

    fn form_mut(&mut self) -> Option<&mut Form> {
        match self.kind {
            Kind::ConnectWise => Some(&mut self.cw),
            Kind::Autotask => Some(&mut self.at),
            Kind::Xero => None,
        }
    }

    /// The row under the focus.
    pub fn focused(&self) -> Row {
        let rows = rows(self);
        rows.get(self.focus.min(rows.len().saturating_sub(1)))
            .copied()
            .unwrap_or(Row::Kind)
    }

    fn focus_row(&mut self, row: Row) {
        if let Some(i) = rows(self).iter().position(|r| *r == row) {
            self.focus = i;
        }
    }

    fn input_mut(&mut self, f: Field) -> Option<&mut TextInput> {
        if f == Field::XeroPaste {
            return Some(&mut self.xero.paste);
        }
        self.form_mut().and_then(|form| form.input_mut(f))
    }
}

/// The focusable rows of the current state, top to bottom.
pub fn rows(s: &State) -> Vec<Row> {
    let mut r = vec![Row::Kind];
    match s.kind {
        Kind::ConnectWise | Kind::Autotask => {
            if let Some(form) = s.form() {
                r.extend(form.inputs.iter().map(|(f, _)| Row::Field(*f)));
            }
            r.push(Row::Button(Button::Test));
        }
        Kind::Xero => match &s.xero.phase {
            XeroPhase::SignedOut => {
                if s.xero.refresh.is_some() {
                    r.push(Row::Button(Button::XeroChange));
                }
                r.push(Row::Button(Button::XeroAuthenticate));
            }
            XeroPhase::Starting | XeroPhase::Connecting => {
                r.push(Row::Button(Button::XeroCancel));
            }
            XeroPhase::Waiting { .. } => {
                r.push(Row::Field(Field::XeroPaste));
                r.push(Row::Button(Button::XeroCancel));
            }
            XeroPhase::Choosing => {
                r.push(Row::Picker(PickerId::Tenant));
                if !s.xero.loading && !s.xero.tenants.items.is_empty() {
                    r.push(Row::Picker(PickerId::Contact));
                    r.push(Row::Picker(PickerId::Expense));
                    r.push(Row::Picker(PickerId::Revenue));
                    r.push(Row::Button(Button::XeroSave));
                }
                r.push(Row::Button(Button::XeroAuthenticate));
            }
        },
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Validation (as the person types)
// ---------------------------------------------------------------------------------------------

/// A GUID in its usual 8-4-4-4-12 form.
fn is_guid(v: &str) -> bool {
    v.len() == 36 && uuid::Uuid::try_parse(v).is_ok()
}

/// Roughly `name@domain.tld`, no spaces.
fn is_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain.contains('.')
        && !domain.contains('@')
        && !v.chars().any(char::is_whitespace)
}

/// What is wrong with `value` for `field` (one sentence: what, and what to do), or None.
pub fn validate(field: Field, value: &str) -> Option<&'static str> {
    let v = value.trim();
    let spaced = v.chars().any(char::is_whitespace);
    match field {
        Field::CwCompany if v.is_empty() => {
            Some("Required: the company you log in to ConnectWise as.")
        }
        Field::CwCompany if spaced || v.contains(['+', ':']) => {
            Some("No spaces, '+' or ':': type the company from the login page.")
        }
        Field::CwSite if v.is_empty() => Some("Required: the site, e.g. api-au.myconnectwise.net."),
        Field::CwSite if spaced || crate::api::connectwise::base_from_site(v).is_err() => {
            Some("Not a site address: type e.g. api-au.myconnectwise.net.")
        }
        Field::CwPublicKey | Field::CwPrivateKey if v.is_empty() => {
            Some("Required: see System → Members → API Members.")
        }
        Field::CwPublicKey | Field::CwPrivateKey if spaced => {
            Some("A key has no spaces: copy it again from the API key.")
        }
        Field::CwClientId if v.is_empty() => {
            Some("Required: a GUID from developer.connectwise.com.")
        }
        Field::CwClientId if !is_guid(v) => {
            Some("Not a GUID: type 8-4-4-4-12 hex digits with the dashes.")
        }
        Field::AtUser if v.is_empty() => Some("Required: the API user's login name (an e-mail)."),
        Field::AtUser if !is_email(v) => {
            Some("Not an e-mail address: type e.g. api@yourmsp.com.au.")
        }
        Field::AtSecret if v.is_empty() => Some("Required: the API user's password."),
        Field::AtCode if v.is_empty() => Some("Required: the API user's API Tracking Identifier."),
        Field::AtCode if spaced => Some("No spaces: copy it again from the API user."),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Messages and commands
// ---------------------------------------------------------------------------------------------

/// What a ConnectWise test found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CwFound {
    pub companies: u64,
    pub agreements: u64,
    /// When it succeeded (RFC 3339).
    pub verified_at: String,
}

/// What an Autotask test found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtFound {
    pub zone_name: String,
    pub zone_url: String,
    pub companies: u64,
    pub verified_at: String,
}

/// Background results (each carries the generation of the command that asked).
#[derive(Debug, Clone)]
pub enum Msg {
    ConnectWise {
        generation: u64,
        result: Result<CwFound, ApiError>,
    },
    Autotask {
        generation: u64,
        result: Result<AtFound, ApiError>,
    },
    /// The sign-in is open: show `url`; the listener waits at `redirect_uri`.
    XeroWaiting {
        generation: u64,
        url: String,
        redirect_uri: String,
    },
    /// The pasted address cannot be used (the sign-in keeps waiting).
    XeroPasteRejected {
        generation: u64,
        reason: String,
    },
    /// The browser came back: signing in.
    XeroConnecting {
        generation: u64,
    },
    /// Signed in: the organisations connected to the app.
    XeroTenants {
        generation: u64,
        tenants: Vec<Item>,
        refresh: Secret,
    },
    /// The contacts and the accounts (already filtered by type) of `tenant_id`.
    XeroLists {
        generation: u64,
        tenant_id: String,
        contacts: Vec<Item>,
        expense: Vec<Item>,
        revenue: Vec<Item>,
        refresh: Secret,
    },
    XeroSaved {
        generation: u64,
        refresh: Secret,
        verified_at: String,
    },
    XeroFailed {
        generation: u64,
        error: ApiError,
    },
}

/// Background work for [`run`].
#[derive(Debug, Clone)]
pub enum Cmd {
    /// Build the ConnectWise client and count companies and agreements.
    TestConnectWise {
        generation: u64,
        settings: Box<Settings>,
        secrets: Box<Secrets>,
    },
    /// Zone discovery, then count companies.
    TestAutotask {
        generation: u64,
        settings: Box<Settings>,
        secrets: Box<Secrets>,
    },
    /// Start the Xero sign-in and wait for the browser (or a pasted address).
    XeroStart {
        generation: u64,
        settings: Box<Settings>,
    },
    /// The address the person pasted (carries a one-time code: never printed).
    XeroPaste {
        generation: u64,
        url: Secret,
    },
    XeroCancel {
        generation: u64,
    },
    /// Sign in with the saved refresh token and list the organisations.
    XeroResume {
        generation: u64,
        settings: Box<Settings>,
        secrets: Box<Secrets>,
    },
    /// Read the contacts and accounts of an organisation.
    XeroLoad {
        generation: u64,
        tenant_id: String,
    },
    /// Hand back the newest refresh token so the choices can be saved.
    XeroSave {
        generation: u64,
    },
}

pub async fn run(cmd: Cmd, svc: Arc<Services>, tx: Sender<app::Msg>) {
    io::run(cmd, svc, tx).await
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

fn ctrl(key: &KeyEvent, c: char) -> bool {
    key.code == KeyCode::Char(c) && key.modifiers.contains(KeyModifiers::CONTROL)
}

fn move_focus(s: &mut State, down: bool) {
    let n = rows(s).len();
    s.focus = if down {
        (s.focus + 1).min(n.saturating_sub(1))
    } else {
        s.focus.saturating_sub(1).min(n.saturating_sub(1))
    };
}

pub fn on_key(s: &mut State, setup: &mut Setup, key: KeyEvent) -> Vec<Effect> {
    s.focus = s.focus.min(rows(s).len().saturating_sub(1));
    if s.kind == Kind::Xero
        && let Some(id) = s.xero.open_picker()
    {
        return picker_key(s, id, key);
    }
    if s.editing {
        return edit_key(s, key);
    }
    let row = s.focused();
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => move_focus(s, false),
        KeyCode::Down | KeyCode::Char('j') => move_focus(s, true),
        KeyCode::Left | KeyCode::Char('h') if row == Row::Kind => switch_kind(s, false),
        KeyCode::Right | KeyCode::Char('l') if row == Row::Kind => switch_kind(s, true),
        KeyCode::Char('r') if ctrl(&key, 'r') => {
            if let Row::Field(f) = row
                && is_masked(f)
                && let Some(i) = s.input_mut(f)
            {
                i.revealed = !i.revealed;
            }
        }
        KeyCode::Enter => return activate(s, setup, row),
        _ => {}
    }
    Vec::new()
}

fn switch_kind(s: &mut State, next: bool) {
    let i = s.kind.index();
    let n = Kind::ALL.len();
    s.kind = Kind::ALL[if next { (i + 1) % n } else { (i + n - 1) % n }];
    s.focus = 0;
}

fn activate(s: &mut State, setup: &mut Setup, row: Row) -> Vec<Effect> {
    match row {
        Row::Kind => {
            // Continue to the first field needing attention, else the first action.
            let target = match s.form() {
                Some(form) => Some(
                    form.first_invalid()
                        .map_or(Row::Button(Button::Test), Row::Field),
                ),
                None => rows(s).get(1).copied(),
            };
            if let Some(t) = target {
                s.focus_row(t);
            }
            Vec::new()
        }
        Row::Field(_) => {
            s.editing = true;
            Vec::new()
        }
        Row::Picker(id) => {
            s.xero.picker_mut(id).open();
            Vec::new()
        }
        Row::Button(b) => press(s, setup, b),
    }
}

fn press(s: &mut State, setup: &mut Setup, b: Button) -> Vec<Effect> {
    match b {
        Button::Test => test(s, setup),
        Button::XeroAuthenticate => {
            s.xero.generation += 1;
            s.xero.phase = XeroPhase::Starting;
            s.xero.paste = TextInput::default();
            s.xero.paste_problem = None;
            s.xero.paste_sent = false;
            s.xero.outcome = Outcome::None;
            s.xero.loading = false;
            s.focus_row(Row::Button(Button::XeroCancel));
            vec![Effect::Psa(Cmd::XeroStart {
                generation: s.xero.generation,
                settings: Box::new(setup.settings.clone()),
            })]
        }
        Button::XeroChange => {
            s.xero.generation += 1;
            s.xero.phase = XeroPhase::Connecting;
            s.xero.outcome = Outcome::None;
            s.focus_row(Row::Button(Button::XeroCancel));
            // The newest refresh token this session holds (it may not be saved yet).
            let mut secrets = setup.secrets.clone();
            if let Some(r) = &s.xero.refresh {
                secrets.xero_refresh_token = Some(r.expose().to_string());
            }
            vec![Effect::Psa(Cmd::XeroResume {
                generation: s.xero.generation,
                settings: Box::new(setup.settings.clone()),
                secrets: Box::new(secrets),
            })]
        }
        Button::XeroCancel => {
            s.xero.generation += 1;
            s.xero.phase = XeroPhase::SignedOut;
            s.xero.paste = TextInput::default();
            s.xero.paste_problem = None;
            s.xero.paste_sent = false;
            s.focus = 0;
            vec![Effect::Psa(Cmd::XeroCancel {
                generation: s.xero.generation,
            })]
        }
        Button::XeroSave => {
            if s.xero.outcome.running() {
                return Vec::new();
            }
            let missing: Vec<&str> = [PickerId::Contact, PickerId::Expense, PickerId::Revenue]
                .into_iter()
                .filter(|p| s.xero.picker(*p).selected_item().is_none())
                .map(|p| p.label())
                .collect();
            if s.xero.tenants.selected_item().is_none() || !missing.is_empty() {
                s.xero.outcome = Outcome::Failed {
                    error: format!(
                        "Choose the {} first (Enter on a row opens its list).",
                        join_words(&missing).to_lowercase()
                    ),
                    hint: String::new(),
                    blame: Vec::new(),
                };
                return Vec::new();
            }
            s.xero.outcome = Outcome::Running("Saving the Xero settings…".into());
            vec![Effect::Psa(Cmd::XeroSave {
                generation: s.xero.generation,
            })]
        }
    }
}

/// "a, b and c".
fn join_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// "Test connection": validate, then ask the runner to test these values.
fn test(s: &mut State, setup: &Setup) -> Vec<Effect> {
    let kind = s.kind;
    let Some(form) = s.form_mut() else {
        return Vec::new();
    };
    if form.outcome.running() {
        return Vec::new();
    }
    form.show_all = true;
    if let Some(f) = form.first_invalid() {
        form.outcome = Outcome::None;
        s.focus_row(Row::Field(f));
        return Vec::new();
    }
    form.generation += 1;
    let generation = form.generation;
    let mut settings = setup.settings.clone();
    let mut secrets = setup.secrets.clone();
    match kind {
        Kind::ConnectWise => {
            form.outcome = Outcome::Running("Testing the connection to ConnectWise…".into());
            apply_cw(form, &mut settings, &mut secrets);
            vec![Effect::Psa(Cmd::TestConnectWise {
                generation,
                settings: Box::new(settings),
                secrets: Box::new(secrets),
            })]
        }
        Kind::Autotask => {
            form.outcome =
                Outcome::Running("Finding your Autotask zone and testing the connection…".into());
            apply_at(form, &mut settings, &mut secrets);
            vec![Effect::Psa(Cmd::TestAutotask {
                generation,
                settings: Box::new(settings),
                secrets: Box::new(secrets),
            })]
        }
        Kind::Xero => Vec::new(),
    }
}

fn apply_cw(form: &Form, settings: &mut Settings, secrets: &mut Secrets) {
    let cw = &mut settings.psa.connectwise;
    cw.company_id = form.value(Field::CwCompany).to_string();
    cw.site = form.value(Field::CwSite).to_string();
    cw.public_key = form.value(Field::CwPublicKey).to_string();
    cw.client_id = form.value(Field::CwClientId).to_string();
    secrets.connectwise_private_key = Some(form.value(Field::CwPrivateKey).to_string());
}

fn apply_at(form: &Form, settings: &mut Settings, secrets: &mut Secrets) {
    let at = &mut settings.psa.autotask;
    at.username = form.value(Field::AtUser).to_string();
    at.integration_code = form.value(Field::AtCode).to_string();
    secrets.autotask_secret = Some(form.value(Field::AtSecret).to_string());
}

/// Keys while a text field is being edited.
fn edit_key(s: &mut State, key: KeyEvent) -> Vec<Effect> {
    let Row::Field(f) = s.focused() else {
        s.editing = false;
        return Vec::new();
    };
    match key.code {
        KeyCode::Esc => s.editing = false,
        KeyCode::Enter if f == Field::XeroPaste => {
            s.editing = false;
            let url = s.xero.paste.trimmed().to_string();
            if !url.is_empty() {
                s.xero.paste_sent = true;
                s.xero.paste_problem = None;
                return vec![Effect::Psa(Cmd::XeroPaste {
                    generation: s.xero.generation,
                    url: Secret::new(url),
                })];
            }
        }
        KeyCode::Enter => {
            s.editing = false;
            move_focus(s, true);
        }
        KeyCode::Up => {
            s.editing = false;
            move_focus(s, false);
        }
        KeyCode::Down => {
            s.editing = false;
            move_focus(s, true);
        }
        KeyCode::Char('r') if ctrl(&key, 'r') => {
            if is_masked(f)
                && let Some(i) = s.input_mut(f)
            {
                i.revealed = !i.revealed;
            }
        }
        _ => {
            let changed = s
                .input_mut(f)
                .is_some_and(|i| i.handle(key) == InputOutcome::Changed);
            if changed {
                if f == Field::XeroPaste {
                    s.xero.paste_problem = None;
                } else if let Some(form) = s.form_mut() {
                    if !form.touched.contains(&f) {
                        form.touched.push(f);
                    }
                    // A test of the old values no longer says anything about these.
                    form.generation += 1;
                    form.outcome = Outcome::None;
                }
            }
        }
    }
    Vec::new()
}

/// Keys while a picker's list is open.
fn picker_key(s: &mut State, id: PickerId, key: KeyEvent) -> Vec<Effect> {
    match s.xero.picker_mut(id).handle(key) {
        PickOutcome::Chosen { changed } => {
            if id == PickerId::Tenant {
                if changed || s.xero.contact.items.is_empty() {
                    return load_lists(s);
                }
            } else {
                if changed && !s.xero.outcome.running() {
                    s.xero.outcome = Outcome::None;
                }
                move_focus(s, true);
            }
            Vec::new()
        }
        PickOutcome::Closed | PickOutcome::Moved | PickOutcome::Ignored => Vec::new(),
    }
}

/// Ask for the contacts and accounts of the chosen organisation.
fn load_lists(s: &mut State) -> Vec<Effect> {
    let Some(tenant) = s.xero.tenants.selected_id().map(str::to_string) else {
        return Vec::new();
    };
    s.xero.loading = true;
    s.xero.outcome = Outcome::None;
    s.xero.contact.clear();
    s.xero.expense.clear();
    s.xero.revenue.clear();
    s.focus_row(Row::Picker(PickerId::Tenant));
    vec![Effect::Psa(Cmd::XeroLoad {
        generation: s.xero.generation,
        tenant_id: tenant,
    })]
}

// ---------------------------------------------------------------------------------------------
// Background results
// ---------------------------------------------------------------------------------------------

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn mentions(e: &ApiError, words: &[&str]) -> bool {
    let m = e.message.to_lowercase();
    words.iter().any(|w| m.contains(w))
}

/// The ConnectWise fields an error points at.
fn blame_cw(e: &ApiError) -> Vec<Field> {
    match e.kind {
        ErrorKind::Unauthorized if mentions(e, &["clientid", "client id"]) => {
            vec![Field::CwClientId]
        }
        ErrorKind::Unauthorized
            if mentions(e, &["company id", "public key", "private key", "companyid"]) =>
        {
            vec![Field::CwCompany, Field::CwPublicKey, Field::CwPrivateKey]
        }
        ErrorKind::Unauthorized => vec![
            Field::CwCompany,
            Field::CwPublicKey,
            Field::CwPrivateKey,
            Field::CwClientId,
        ],
        ErrorKind::NotFound | ErrorKind::Malformed | ErrorKind::Transport { .. } => {
            vec![Field::CwSite]
        }
        _ => Vec::new(),
    }
}

/// The Autotask fields an error points at.
fn blame_at(e: &ApiError) -> Vec<Field> {
    let zone_lookup = e.operation.to_lowercase().contains("zoneinformation");
    match e.kind {
        // Zone discovery knows no such API user (§6.1).
        ErrorKind::NotFound | ErrorKind::Rejected if zone_lookup => vec![Field::AtUser],
        ErrorKind::Unauthorized | ErrorKind::Forbidden
            if mentions(e, &["integrationcode", "integration code", "tracking"]) =>
        {
            vec![Field::AtCode]
        }
        ErrorKind::Unauthorized if mentions(e, &["username", "user name", "secret"]) => {
            vec![Field::AtUser, Field::AtSecret]
        }
        ErrorKind::Unauthorized => vec![Field::AtUser, Field::AtSecret, Field::AtCode],
        _ => Vec::new(),
    }
}

/// The sentence naming the fields to check (they are also marked ✗).
pub fn blame_sentence(kind: Kind, blame: &[Field]) -> Option<String> {
    if blame.is_empty() {
        return None;
    }
    let names: Vec<&str> = blame.iter().map(|f| f.noun()).collect();
    let what = join_words(&names);
    Some(match (kind, blame) {
        (Kind::Autotask, [Field::AtUser]) => {
            "Autotask knows no API user by that name: check the API user (✗).".to_string()
        }
        _ => format!("✗ marks what to check: the {what}."),
    })
}

/// What to do next: the error's own hint, or a better one where the pane knows more.
fn hint_for(kind: Kind, e: &ApiError, blame: &[Field]) -> String {
    match (kind, &e.kind) {
        (Kind::Autotask, _) if blame == [Field::AtUser] => {
            "Type the API user's login name exactly as Autotask shows it (an e-mail address)."
                .into()
        }
        (Kind::Xero, ErrorKind::OAuth) if e.code.as_deref() != Some("invalid_grant") => {
            "Authenticate again: sign in with a Xero user who can grant application access, and allow cspsync."
                .into()
        }
        _ => e.hint().to_string(),
    }
}

pub fn on_msg(s: &mut State, setup: &mut Setup, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::ConnectWise { generation, result } => {
            if generation != s.cw.generation {
                return Vec::new();
            }
            match result {
                Ok(found) => {
                    s.cw.outcome = Outcome::Ok(format!(
                        "✓ Connected to ConnectWise: {}, {}.",
                        plural(found.companies, "company", "companies"),
                        plural(found.agreements, "agreement", "agreements")
                    ));
                    apply_cw(&s.cw, &mut setup.settings, &mut setup.secrets);
                    setup.settings.psa.kind = PsaKindSetting::ConnectWise;
                    setup.settings.psa.verified_at = Some(found.verified_at);
                    s.cw.mark_saved();
                    s.cw.show_all = false;
                    vec![Effect::Save(Box::new(setup.clone()))]
                }
                Err(e) => {
                    s.cw.outcome = Outcome::failed(Kind::ConnectWise, &e, blame_cw(&e));
                    Vec::new()
                }
            }
        }
        Msg::Autotask { generation, result } => {
            if generation != s.at.generation {
                return Vec::new();
            }
            match result {
                Ok(found) => {
                    s.at.outcome = Outcome::Ok(format!(
                        "✓ Connected to Autotask: {} in zone {}.",
                        plural(found.companies, "company", "companies"),
                        found.zone_name
                    ));
                    apply_at(&s.at, &mut setup.settings, &mut setup.secrets);
                    let at = &mut setup.settings.psa.autotask;
                    at.zone_url = found.zone_url.clone();
                    at.zone_name = found.zone_name.clone();
                    s.zone = Some((found.zone_name, found.zone_url));
                    setup.settings.psa.kind = PsaKindSetting::Autotask;
                    setup.settings.psa.verified_at = Some(found.verified_at);
                    s.at.mark_saved();
                    s.at.show_all = false;
                    vec![Effect::Save(Box::new(setup.clone()))]
                }
                Err(e) => {
                    s.at.outcome = Outcome::failed(Kind::Autotask, &e, blame_at(&e));
                    Vec::new()
                }
            }
        }
        m => xero_msg(s, setup, m),
    }
}

fn xero_generation(m: &Msg) -> u64 {
    match m {
        Msg::ConnectWise { generation, .. }
        | Msg::Autotask { generation, .. }
        | Msg::XeroWaiting { generation, .. }
        | Msg::XeroPasteRejected { generation, .. }
        | Msg::XeroConnecting { generation }
        | Msg::XeroTenants { generation, .. }
        | Msg::XeroLists { generation, .. }
        | Msg::XeroSaved { generation, .. }
        | Msg::XeroFailed { generation, .. } => *generation,
    }
}

/// Keep the saved Xero sign-in current: a refresh token that rotated replaces the saved one
/// at once (the old one stops working 30 minutes after its use, §7.1).
fn keep_refresh(s: &mut State, setup: &mut Setup, refresh: Secret) -> Vec<Effect> {
    let new = refresh.expose().to_string();
    s.xero.refresh = Some(refresh);
    match &setup.secrets.xero_refresh_token {
        Some(old) if *old != new && !new.is_empty() => {
            setup.secrets.xero_refresh_token = Some(new);
            vec![Effect::Save(Box::new(setup.clone()))]
        }
        _ => Vec::new(),
    }
}

fn xero_msg(s: &mut State, setup: &mut Setup, msg: Msg) -> Vec<Effect> {
    if xero_generation(&msg) != s.xero.generation {
        return Vec::new();
    }
    let x = &mut s.xero;
    match msg {
        Msg::XeroWaiting {
            url, redirect_uri, ..
        } => {
            x.phase = XeroPhase::Waiting { url, redirect_uri };
            s.focus_row(Row::Field(Field::XeroPaste));
            Vec::new()
        }
        Msg::XeroPasteRejected { reason, .. } => {
            x.paste_sent = false;
            x.paste_problem = Some(reason);
            Vec::new()
        }
        Msg::XeroConnecting { .. } => {
            x.phase = XeroPhase::Connecting;
            if s.editing && s.focused() == Row::Field(Field::XeroPaste) {
                s.editing = false;
            }
            s.focus_row(Row::Button(Button::XeroCancel));
            Vec::new()
        }
        Msg::XeroTenants {
            tenants, refresh, ..
        } => {
            let effects = keep_refresh(s, setup, refresh);
            let x = &mut s.xero;
            if tenants.is_empty() {
                x.phase = XeroPhase::SignedOut;
                x.outcome = Outcome::Failed {
                    error: "Xero signed in, but no organisation is connected to cspsync.".into(),
                    hint: "Authenticate again and allow access to at least one organisation."
                        .into(),
                    blame: Vec::new(),
                };
                s.focus_row(Row::Button(Button::XeroAuthenticate));
                return effects;
            }
            x.phase = XeroPhase::Choosing;
            let saved = setup.settings.psa.xero.tenant_id.clone();
            let only = (tenants.len() == 1).then(|| tenants[0].id.clone());
            let pre = tenants
                .iter()
                .find(|t| !saved.is_empty() && t.id.eq_ignore_ascii_case(&saved))
                .map(|t| t.id.clone())
                .or(only);
            x.tenants.set_items(tenants, pre.as_deref());
            x.contact.clear();
            x.expense.clear();
            x.revenue.clear();
            let mut effects = effects;
            if pre.is_some() {
                effects.extend(load_lists(s));
            } else if s.kind == Kind::Xero && !s.editing {
                // The person is on this form: open the list of organisations for them.
                s.focus_row(Row::Picker(PickerId::Tenant));
                s.xero.tenants.open();
            }
            effects
        }
        Msg::XeroLists {
            tenant_id,
            contacts,
            expense,
            revenue,
            refresh,
            ..
        } => {
            if s.xero.tenants.selected_id() != Some(tenant_id.as_str()) {
                return Vec::new();
            }
            let effects = keep_refresh(s, setup, refresh);
            let saved = &setup.settings.psa.xero;
            let same_tenant = saved.tenant_id.eq_ignore_ascii_case(&tenant_id);
            let x = &mut s.xero;
            x.loading = false;
            // The saved choices when this is the saved organisation; else suggest the
            // distributor as the contact bills are raised against.
            let contact_pre = if same_tenant && !saved.contact_id.is_empty() {
                Some(saved.contact_id.clone())
            } else {
                contacts
                    .iter()
                    .find(|c| c.label.to_lowercase().contains("dicker data"))
                    .map(|c| c.id.clone())
            };
            let keep = |code: &str| (same_tenant && !code.is_empty()).then(|| code.to_string());
            x.contact.set_items(contacts, contact_pre.as_deref());
            x.expense
                .set_items(expense, keep(&saved.expense_account_code).as_deref());
            x.revenue
                .set_items(revenue, keep(&saved.revenue_account_code).as_deref());
            let next = [PickerId::Contact, PickerId::Expense, PickerId::Revenue]
                .into_iter()
                .find(|p| s.xero.picker(*p).selected_item().is_none())
                .map(Row::Picker)
                .unwrap_or(Row::Button(Button::XeroSave));
            s.focus_row(next);
            effects
        }
        Msg::XeroSaved {
            refresh,
            verified_at,
            ..
        } => {
            let (Some(t), Some(c), Some(e), Some(r)) = (
                x.tenants.selected_item(),
                x.contact.selected_item(),
                x.expense.selected_item(),
                x.revenue.selected_item(),
            ) else {
                x.outcome = Outcome::None;
                return Vec::new();
            };
            let xs = &mut setup.settings.psa.xero;
            xs.tenant_id = t.id.clone();
            xs.tenant_name = t.label.clone();
            xs.contact_id = c.id.clone();
            xs.contact_name = c.label.clone();
            xs.expense_account_code = e.id.clone();
            xs.revenue_account_code = r.id.clone();
            setup.settings.psa.kind = PsaKindSetting::Xero;
            setup.settings.psa.verified_at = Some(verified_at);
            setup.secrets.xero_refresh_token = Some(refresh.expose().to_string());
            x.outcome = Outcome::Ok(format!(
                "✓ Xero is set up for {}: bills to {}, expense account {}, revenue account {}.",
                t.label, c.label, e.id, r.id
            ));
            x.saved = [t.id.clone(), c.id.clone(), e.id.clone(), r.id.clone()];
            x.refresh = Some(refresh);
            vec![Effect::Save(Box::new(setup.clone()))]
        }
        Msg::XeroFailed { error, .. } => {
            let signing_in = !matches!(x.phase, XeroPhase::Choosing | XeroPhase::SignedOut);
            if signing_in {
                x.phase = XeroPhase::SignedOut;
                x.paste_sent = false;
            }
            x.loading = false;
            x.outcome = Outcome::failed(Kind::Xero, &error, Vec::new());
            if signing_in {
                s.editing = false;
                s.focus_row(Row::Button(Button::XeroAuthenticate));
            }
            Vec::new()
        }
        Msg::ConnectWise { .. } | Msg::Autotask { .. } => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The pane contract: editing, unsaved, status, hints, render
// ---------------------------------------------------------------------------------------------

pub fn editing(s: &State) -> bool {
    s.editing || (s.kind == Kind::Xero && s.xero.open_picker().is_some())
}

pub fn unsaved(s: &State) -> bool {
    s.cw.unsaved() || s.at.unsaved() || xero_unsaved(s)
}

/// Choices made in a Xero sign-in that differ from the saved ones.
fn xero_unsaved(s: &State) -> bool {
    let x = &s.xero;
    if x.phase != XeroPhase::Choosing {
        return false;
    }
    let chosen = [&x.tenants, &x.contact, &x.expense, &x.revenue].map(|p| p.selected_id());
    chosen
        .iter()
        .zip(&x.saved)
        .any(|(c, saved)| c.is_some_and(|c| !c.eq_ignore_ascii_case(saved)))
}

/// The step is done when a PSA was verified and saved (Xero: with its choices and sign-in).
pub fn saved_done(setup: &Setup) -> bool {
    let p = &setup.settings.psa;
    if p.verified_at.is_none() {
        return false;
    }
    match p.kind {
        PsaKindSetting::None => false,
        PsaKindSetting::ConnectWise => setup.secrets.connectwise_private_key.is_some(),
        PsaKindSetting::Autotask => setup.secrets.autotask_secret.is_some(),
        PsaKindSetting::Xero => {
            let x = &p.xero;
            setup.secrets.xero_refresh_token.is_some()
                && !x.tenant_id.is_empty()
                && !x.contact_id.is_empty()
                && !x.expense_account_code.is_empty()
                && !x.revenue_account_code.is_empty()
        }
    }
}

pub fn status(s: &State, setup: &Setup) -> Step {
    if s.cw.outcome.running() || s.at.outcome.running() || s.xero.busy() {
        return Step::Busy;
    }
    if saved_done(setup) {
        Step::Done
    } else {
        Step::ToDo
    }
}

pub fn hints(s: &State) -> Vec<Hint> {
    if s.kind == Kind::Xero && s.xero.open_picker().is_some() {
        return vec![
            Hint::new("↑↓", "move"),
            Hint::new("type", "filter"),
            Hint::new("Enter", "choose"),
            Hint::new("Esc", "close"),
        ];
    }
    let row = s.focused();
    if s.editing {
        let mut h = match row {
            Row::Field(Field::XeroPaste) => vec![Hint::new("Enter", "use this address")],
            _ => vec![Hint::new("Enter", "done")],
        };
        h.push(Hint::new("Esc", "stop editing"));
        if let Row::Field(f) = row
            && is_masked(f)
        {
            h.push(Hint::new("Ctrl-R", "reveal"));
        }
        h.push(Hint::new("Ctrl-U", "clear"));
        return h;
    }
    let mut h = vec![Hint::new("↑↓", "move")];
    match row {
        Row::Kind => {
            h.push(Hint::new("←→", "choose PSA"));
            h.push(Hint::new("Enter", "continue"));
        }
        Row::Field(_) => h.push(Hint::new("Enter", "edit")),
        Row::Picker(_) => h.push(Hint::new("Enter", "choose")),
        Row::Button(b) => h.push(Hint::new(
            "Enter",
            match b {
                Button::Test => "test connection",
                Button::XeroAuthenticate => "authenticate",
                Button::XeroChange => "change choices",
                Button::XeroCancel => "cancel",
                Button::XeroSave => "save",
            },
        )),
    }
    h
}

pub fn render(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    view::render(s, setup, theme, frame, area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_sentences() {
        assert!(validate(Field::CwClientId, "3f2a9c1e-0b4d-4e8f-9a7c-5d6e1f2a3b4c").is_none());
        assert!(validate(Field::CwClientId, "3f2a9c1e0b4d4e8f9a7c5d6e1f2a3b4c").is_some());
        assert!(validate(Field::CwSite, "api-au.myconnectwise.net").is_none());
        assert!(validate(Field::CwSite, "ftp://x").is_some());
        assert!(validate(Field::AtUser, "api@msp.com.au").is_none());
        assert!(validate(Field::AtUser, "api@msp").is_some());
        assert!(validate(Field::AtUser, "a b@msp.com").is_some());
        assert!(validate(Field::CwCompany, "contoso+x").is_some());
    }

    #[test]
    fn debug_never_prints_values() {
        let mut setup = Setup::default();
        setup.secrets.connectwise_private_key = Some("PRIVATE-KEY-VALUE".into());
        setup.secrets.autotask_secret = Some("AT-SECRET-VALUE".into());
        let s = State::new(&setup);
        let d = format!("{s:?}");
        assert!(
            !d.contains("PRIVATE-KEY-VALUE") && !d.contains("AT-SECRET-VALUE"),
            "{d}"
        );
    }
}
