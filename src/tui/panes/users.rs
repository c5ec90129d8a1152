//! The Users tab (issue 4 §1, §3, §4): who in the MSP tenant may operate cspsync, chosen in
//! two columns — Disallowed and Allowed — with the keyboard. The users are read from Graph
//! /users of the MSP tenant (reference/external-apis.md §2.2, every page, 999 at a time) with
//! the Microsoft sign-in; the setup account is admin (always allowed, never moved); allowed
//! users are viewers or operators. Saving (after a confirmation) writes
//! `settings.access.{allowed, saved_at}`. Only an admin may change or save the list; others
//! see it read-only. On every (re)load, new tenant users appear in Disallowed and allowed
//! users deleted from the tenant leave the list (reported, to be saved).
//!
//! Keys: ↑/↓ j/k PgUp/PgDn Home/End move; ←/→ h/l switch columns; Space marks; Enter moves
//! the marked users (or the current one) to the other column; `a` moves every user shown;
//! `/` filters both columns as you type (Enter keeps the filter, Esc clears it); `r` toggles
//! the role of the marked (or current) allowed users; `u` undoes; `s` saves; `R` reloads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;
use tokio::sync::mpsc::Sender;

#[path = "users_model.rs"]
pub mod model;
#[path = "users_view.rs"]
mod view;

use super::partner::common::{Rotated, signed_in};
use super::{Hint, Step};
use crate::access;
use crate::api::error::ApiError;
use crate::api::graph::{MAX_USERS_PAGE, User};
use crate::config::{AllowedUser, Role};
use crate::connect;
use crate::tui::app::{self, Effect, Setup};
use crate::tui::runner::Services;
use crate::tui::theme::Theme;
pub use model::{Changes, Entry, Side};
use model::{Directory, LoadReport, Outcome, Picker};

/// The user properties read (§2.2: `accountEnabled` and `userType` are not default
/// properties, so they are named in `$select`).
pub const SELECT: [&str; 5] = [
    "id",
    "displayName",
    "userPrincipalName",
    "accountEnabled",
    "userType",
];

/// Where loading is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Nothing loaded yet (Enter loads).
    Idle,
    /// Enter was pressed without a Microsoft sign-in.
    NotSignedIn,
    /// Reading pages; `so_far` users arrived.
    Loading {
        so_far: usize,
    },
    Loaded {
        at: DateTime<Utc>,
    },
    /// The last (re)load failed; a list loaded before stays.
    Failed(ApiError),
}

/// The line under the title: what the last key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub kind: NoteKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    Ok,
    Warn,
    Error,
}

/// The save confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub changes: Changes,
    /// After saving: operators and viewers allowed.
    pub operators: usize,
    pub viewers: usize,
}

#[derive(Debug, Clone)]
pub struct State {
    pub phase: Phase,
    /// Of the current load; results of older ones are dropped.
    pub generation: u64,
    /// Of the current save.
    pub save_generation: u64,
    /// The pages of the load under way.
    incoming: Directory,
    /// The users, once a load completed.
    pub picker: Option<Picker>,
    /// The filter has the keys.
    pub typing: bool,
    pub confirm: Option<Confirm>,
    /// A save is being recorded.
    pub saving: bool,
    pub note: Option<Note>,
    /// What the last load found (users gone from the tenant, new users).
    pub report: LoadReport,
    /// Whether the person may change the list (cached for `hints`/`unsaved`, which see no
    /// settings; refreshed on every key and message).
    pub admin: bool,
    /// Rows a column showed at the last draw (layout feedback, like ratatui's own table
    /// state; atomic so the state stays `Send + Sync`).
    view_rows: ViewRows,
}

#[derive(Debug)]
struct ViewRows(AtomicU16);

impl ViewRows {
    fn get(&self) -> u16 {
        self.0.load(Ordering::Relaxed)
    }
    fn set(&self, n: u16) {
        self.0.store(n, Ordering::Relaxed);
    }
}

impl Clone for ViewRows {
    fn clone(&self) -> ViewRows {
        ViewRows(AtomicU16::new(self.get()))
    }
}

impl Default for State {
    fn default() -> Self {
        State {
            phase: Phase::Idle,
            generation: 0,
            save_generation: 0,
            incoming: Directory::default(),
            picker: None,
            typing: false,
            confirm: None,
            saving: false,
            note: None,
            report: LoadReport::default(),
            admin: true,
            view_rows: ViewRows(AtomicU16::new(10)),
        }
    }
}

impl State {
    pub fn new(setup: &Setup) -> State {
        State {
            admin: is_admin(setup),
            ..State::default()
        }
    }

    pub fn loading(&self) -> bool {
        matches!(self.phase, Phase::Loading { .. })
    }
}

/// Whether the signed-in person may change the list (issue 4 §2).
pub fn is_admin(setup: &Setup) -> bool {
    access::decide(
        &setup.settings,
        setup.secrets.microsoft_refresh_token.is_some(),
    )
    .is_admin()
}

#[derive(Debug, Clone)]
pub enum Msg {
    /// One page of /users (§2.2).
    Page { generation: u64, users: Vec<Entry> },
    /// Every page was read, or why not.
    Loaded {
        generation: u64,
        at: DateTime<Utc>,
        result: Result<(), ApiError>,
        rotated: Option<Rotated>,
    },
    /// There is no Microsoft sign-in to use.
    NotSignedIn { generation: u64 },
    /// The save was stamped at `at` and recorded in the audit log (or why it could not be):
    /// write the list.
    Committed {
        generation: u64,
        at: DateTime<Utc>,
        audit: Result<(), String>,
    },
}

#[derive(Debug, Clone)]
pub enum Cmd {
    Load {
        generation: u64,
        setup: Box<Setup>,
    },
    /// Record the change in the audit log and stamp the time.
    Commit {
        generation: u64,
        /// Who saves: the signed-in account's object id and sign-in name.
        by_oid: String,
        by: String,
        changes: Box<Changes>,
    },
}

/// Kept between commands by the runner.
#[derive(Debug, Default)]
pub struct Runtime {}

const READ_ONLY: &str = "You can look, not change: this list is read-only for you.";

fn note(s: &mut State, kind: NoteKind, text: impl Into<String>) {
    s.note = Some(Note {
        text: text.into(),
        kind,
    });
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// `50,000`.
pub fn thousands(n: usize) -> String {
    let d = n.to_string();
    let mut out = String::with_capacity(d.len() + d.len() / 3);
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn on_key(s: &mut State, setup: &mut Setup, key: KeyEvent) -> Vec<Effect> {
    if key.kind == KeyEventKind::Release {
        return Vec::new();
    }
    s.admin = is_admin(setup);
    let rows = usize::from(s.view_rows.get().max(1));
    if let Some(p) = s.picker.as_mut() {
        p.view_rows = rows;
    }
    if s.confirm.is_some() {
        return confirm_key(s, setup, key);
    }
    if s.typing {
        filter_key(s, key);
        return Vec::new();
    }
    s.note = None;
    if key
        .modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
    {
        return Vec::new();
    }
    let Some(p) = s.picker.as_mut() else {
        return match key.code {
            KeyCode::Enter | KeyCode::Char('R') => load(s, setup),
            _ => Vec::new(),
        };
    };
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => p.move_by(-1),
        KeyCode::Down | KeyCode::Char('j') => p.move_by(1),
        KeyCode::PageUp => p.page(false),
        KeyCode::PageDown => p.page(true),
        KeyCode::Home => p.home(),
        KeyCode::End => p.end(),
        KeyCode::Left | KeyCode::Char('h') => p.switch_to(Side::Disallowed),
        KeyCode::Right | KeyCode::Char('l') => p.switch_to(Side::Allowed),
        KeyCode::Char('/') => s.typing = true,
        KeyCode::Esc => {
            if !p.query().is_empty() {
                p.set_query("");
            } else {
                p.clear_marks();
            }
        }
        KeyCode::Char('R') => return load(s, setup),
        KeyCode::Char(' ' | 'a' | 'r' | 'u' | 's') | KeyCode::Enter => {
            return change_key(s, setup, key.code);
        }
        _ => {}
    }
    Vec::new()
}

/// The keys that change the list: admins only, and not while a save is being recorded.
fn change_key(s: &mut State, setup: &Setup, code: KeyCode) -> Vec<Effect> {
    if !s.admin {
        note(s, NoteKind::Warn, READ_ONLY);
        return Vec::new();
    }
    if s.saving {
        note(s, NoteKind::Warn, "Saving… one moment.");
        return Vec::new();
    }
    let Some(p) = s.picker.as_mut() else {
        return Vec::new();
    };
    let outcome = match code {
        KeyCode::Char(' ') => match p.toggle_mark() {
            Some(o) => o,
            None => return Vec::new(),
        },
        KeyCode::Enter => p.transfer(),
        KeyCode::Char('a') => p.transfer_shown(),
        KeyCode::Char('r') => p.toggle_role(),
        KeyCode::Char('u') => p.undo(),
        KeyCode::Char('s') => return ask_to_save(s, setup),
        _ => return Vec::new(),
    };
    let (kind, text) = describe(&outcome);
    note(s, kind, text);
    Vec::new()
}

fn describe(o: &Outcome) -> (NoteKind, String) {
    let users = |n: usize| plural(n, "user", "users");
    match o {
        Outcome::Moved { count, to } => (
            NoteKind::Ok,
            format!(
                "Moved {} to {}{} (u undoes, s saves).",
                users(*count),
                to.title(),
                if *to == Side::Allowed {
                    " as viewers"
                } else {
                    ""
                }
            ),
        ),
        Outcome::Roles { count, to } => (
            NoteKind::Ok,
            format!(
                "{} {} (u undoes, s saves).",
                users(*count),
                match (to, *count == 1) {
                    (Role::Operator, true) => "is now an operator",
                    (Role::Operator, false) => "are now operators",
                    (Role::Viewer, true) => "is now a viewer",
                    (Role::Viewer, false) => "are now viewers",
                }
            ),
        ),
        Outcome::Undone { kind, count } => (
            NoteKind::Ok,
            match kind {
                model::ActionKind::Move { to } => {
                    format!("Undone: {} back from {}.", users(*count), to.title())
                }
                model::ActionKind::Role { .. } => {
                    format!("Undone: the role change of {}.", users(*count))
                }
            },
        ),
        Outcome::Nothing(why) => (NoteKind::Warn, (*why).to_string()),
    }
}

/// Keys while the filter is being typed: characters filter at once; ↑/↓ PgUp/PgDn Home/End
/// and ←/→ still move; Enter keeps the filter, Esc clears it.
fn filter_key(s: &mut State, key: KeyEvent) {
    let Some(p) = s.picker.as_mut() else {
        s.typing = false;
        return;
    };
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Esc => {
            p.set_query("");
            s.typing = false;
        }
        KeyCode::Enter => s.typing = false,
        KeyCode::Char('u') if ctrl => p.set_query(""),
        KeyCode::Char(c)
            if !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
        {
            p.push_query_char(c)
        }
        KeyCode::Backspace => {
            if p.query().is_empty() {
                s.typing = false;
            } else {
                p.pop_query_char();
            }
        }
        KeyCode::Up => p.move_by(-1),
        KeyCode::Down => p.move_by(1),
        KeyCode::PageUp => p.page(false),
        KeyCode::PageDown => p.page(true),
        KeyCode::Home => p.home(),
        KeyCode::End => p.end(),
        KeyCode::Left => p.switch_to(Side::Disallowed),
        KeyCode::Right => p.switch_to(Side::Allowed),
        _ => {}
    }
}

fn load(s: &mut State, setup: &Setup) -> Vec<Effect> {
    if s.loading() {
        return Vec::new();
    }
    s.generation += 1;
    if !signed_in(setup) {
        s.phase = Phase::NotSignedIn;
        return Vec::new();
    }
    s.phase = Phase::Loading { so_far: 0 };
    s.incoming = Directory::default();
    vec![Effect::Users(Cmd::Load {
        generation: s.generation,
        setup: Box::new(setup.clone()),
    })]
}

fn ask_to_save(s: &mut State, setup: &Setup) -> Vec<Effect> {
    let Some(p) = s.picker.as_ref() else {
        return Vec::new();
    };
    if !p.unsaved() && setup.settings.access.saved_at.is_some() {
        note(s, NoteKind::Ok, "Nothing to save: the list is as saved.");
        return Vec::new();
    }
    let list = p.allowed_list();
    let operators = list.iter().filter(|u| u.role == Role::Operator).count();
    s.confirm = Some(Confirm {
        changes: p.changes(),
        operators,
        viewers: list.len() - operators,
    });
    Vec::new()
}

fn confirm_key(s: &mut State, setup: &Setup, key: KeyEvent) -> Vec<Effect> {
    match key.code {
        KeyCode::Char('y' | 'Y') | KeyCode::Enter => {
            let Some(c) = s.confirm.take() else {
                return Vec::new();
            };
            if !s.admin {
                note(s, NoteKind::Warn, READ_ONLY);
                return Vec::new();
            }
            s.save_generation += 1;
            s.saving = true;
            note(s, NoteKind::Ok, "Saving…");
            // The signed-in person (older settings record only the setup account).
            let m = &setup.settings.microsoft;
            let (by_oid, by) = if m.signed_in_oid.trim().is_empty() {
                (m.setup_user_oid.trim(), m.setup_user_name.trim())
            } else {
                (m.signed_in_oid.trim(), m.signed_in_name.trim())
            };
            vec![Effect::Users(Cmd::Commit {
                generation: s.save_generation,
                by_oid: by_oid.to_string(),
                by: by.to_string(),
                changes: Box::new(c.changes),
            })]
        }
        KeyCode::Char('n' | 'N') | KeyCode::Esc => {
            s.confirm = None;
            note(
                s,
                NoteKind::Warn,
                "Not saved: the changes are still here (s saves).",
            );
            Vec::new()
        }
        _ => Vec::new(),
    }
}

pub fn on_msg(s: &mut State, setup: &mut Setup, msg: Msg) -> Vec<Effect> {
    s.admin = is_admin(setup);
    match msg {
        Msg::Page { generation, users } if generation == s.generation => {
            if let Phase::Loading { so_far } = &mut s.phase {
                *so_far += users.len();
                for u in &users {
                    s.incoming.push(u);
                }
            }
        }
        Msg::NotSignedIn { generation } if generation == s.generation => {
            s.phase = Phase::NotSignedIn;
            s.incoming = Directory::default();
        }
        Msg::Loaded {
            generation,
            at,
            result,
            rotated,
        } if generation == s.generation => {
            let incoming = std::mem::take(&mut s.incoming);
            let mut effects = Vec::new();
            if let Some(r) = rotated
                && r.apply(setup)
            {
                effects.push(Effect::Save(Box::new(setup.clone())));
            }
            match result {
                Ok(()) => {
                    let (picker, report) = Picker::build(
                        incoming.finish(),
                        &setup.settings.microsoft.setup_user_oid,
                        &setup.settings.access.allowed,
                        s.picker.as_ref(),
                    );
                    s.picker = Some(picker);
                    s.report = report;
                    s.phase = Phase::Loaded { at };
                }
                Err(e) => s.phase = Phase::Failed(e),
            }
            return effects;
        }
        Msg::Committed {
            generation,
            at,
            audit,
        } if generation == s.save_generation && s.saving => {
            s.saving = false;
            let Some(p) = s.picker.as_mut() else {
                return Vec::new();
            };
            let list = p.allowed_list();
            let n = list.len();
            let access = &mut setup.settings.access;
            access.allowed = list;
            access.saved_at = Some(at.to_rfc3339_opts(SecondsFormat::Secs, true));
            p.commit();
            s.report.gone.clear();
            let saved = format!(
                "✓ Saved: the setup account and {} may use cspsync.",
                plural(n, "allowed user", "allowed users")
            );
            match audit {
                Ok(()) => note(s, NoteKind::Ok, saved),
                Err(e) => note(
                    s,
                    NoteKind::Error,
                    format!("{saved} The change could not be written to the audit log: {e}"),
                ),
            }
            return vec![Effect::Save(Box::new(setup.clone()))];
        }
        // A result of an earlier load or save: dropped.
        _ => {}
    }
    Vec::new()
}

pub fn editing(s: &State) -> bool {
    s.typing || s.confirm.is_some()
}

pub fn unsaved(s: &State) -> bool {
    s.admin && s.picker.as_ref().is_some_and(Picker::unsaved)
}

pub fn status(_s: &State, setup: &Setup) -> Step {
    if setup.settings.access.saved_at.is_some() {
        Step::Done
    } else {
        Step::ToDo
    }
}

pub fn hints(s: &State) -> Vec<Hint> {
    if s.confirm.is_some() {
        return vec![Hint::new("y/Enter", "save"), Hint::new("n/Esc", "cancel")];
    }
    if s.typing {
        return vec![
            Hint::new("type", "filter"),
            Hint::new("↑↓", "move"),
            Hint::new("Enter", "keep filter"),
            Hint::new("Esc", "clear filter"),
        ];
    }
    let Some(p) = &s.picker else {
        return if s.loading() {
            Vec::new()
        } else {
            vec![Hint::new("Enter", "load users")]
        };
    };
    if !s.admin {
        return vec![
            Hint::new("↑↓←→", "move"),
            Hint::new("/", "filter"),
            Hint::new("R", "reload"),
        ];
    }
    let mut h = vec![
        Hint::new("Space", "mark"),
        Hint::new(
            "Enter",
            match p.focus {
                Side::Disallowed => "allow",
                Side::Allowed => "disallow",
            },
        ),
    ];
    if p.focus == Side::Allowed {
        h.push(Hint::new("r", "role"));
    }
    h.push(Hint::new("u", "undo"));
    h.push(Hint::new("s", "save"));
    h
}

pub fn render(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    let rows = view::render(s, setup, theme, frame, area);
    s.view_rows.set(rows.max(1));
}

pub async fn run(cmd: Cmd, svc: Arc<Services>, tx: Sender<app::Msg>) {
    match cmd {
        Cmd::Load { generation, setup } => load_run(generation, &setup, &svc, &tx).await,
        Cmd::Commit {
            generation,
            by_oid,
            by,
            changes,
        } => {
            let audit = audit(&svc, &by_oid, &by, &changes);
            let _ = tx
                .send(app::Msg::Users(Msg::Committed {
                    generation,
                    at: Utc::now(),
                    audit,
                }))
                .await;
        }
    }
}

/// Issue 4 §2: changes to the list and roles go to the audit log with who made them. Users
/// gone from the tenant are recorded as removed.
fn audit(svc: &Services, by_oid: &str, by: &str, changes: &Changes) -> Result<(), String> {
    let actor = crate::audit::Actor::new(by_oid, by);
    let removed: Vec<AllowedUser> = changes
        .removed
        .iter()
        .chain(&changes.gone)
        .cloned()
        .collect();
    let roles: Vec<crate::audit::RoleChange> = changes
        .roles
        .iter()
        .map(|(user, from)| crate::audit::RoleChange {
            user: user.clone(),
            from: *from,
        })
        .collect();
    crate::audit::allowed_users_saved(&svc.config, &actor, &changes.added, &removed, &roles)
}

/// A Graph user as the picker keeps it.
pub fn entry_of(u: &User) -> Entry {
    let upn = u
        .user_principal_name
        .clone()
        .or_else(|| u.mail.clone())
        .unwrap_or_default();
    Entry {
        oid: u.id.clone(),
        name: u.display_name.clone().unwrap_or_default(),
        guest: match &u.user_type {
            Some(t) => t.eq_ignore_ascii_case("guest"),
            // `userType` unreadable (User.ReadBasic.All): a guest's sign-in name has #EXT#.
            None => upn.contains("#EXT#"),
        },
        disabled: u.account_enabled == Some(false),
        upn,
    }
}

async fn load_run(generation: u64, setup: &Setup, svc: &Services, tx: &Sender<app::Msg>) {
    let send = |m: Msg| async move {
        let _ = tx.send(app::Msg::Users(m)).await;
    };
    let session = match connect::session(&svc.ctx, &setup.settings, &setup.secrets) {
        Ok(s) => s,
        Err(_) => return send(Msg::NotSignedIn { generation }).await,
    };
    let graph = connect::graph(&svc.ctx, &session);
    let result = async {
        // §2.2: $select names accountEnabled and userType; $top at its maximum (999); every
        // page followed through @odata.nextLink, each reaching the screen as it arrives.
        let mut pager = graph.users_pager(&SELECT, MAX_USERS_PAGE)?;
        while let Some(page) = pager.next_page().await? {
            let users = page.iter().map(entry_of).collect();
            send(Msg::Page { generation, users }).await;
        }
        Ok::<(), ApiError>(())
    }
    .await;
    let current = session.refresh_token();
    let rotated = Rotated::of(
        setup.secrets.microsoft_refresh_token.as_deref(),
        current.secret(),
    );
    send(Msg::Loaded {
        generation,
        at: Utc::now(),
        result,
        rotated,
    })
    .await;
}
