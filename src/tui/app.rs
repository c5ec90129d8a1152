//! The app's state and its pure update function (DESIGN.md §3 action loop): every key and every
//! background result is a [`Msg`]; [`update`] changes the state and returns [`Effect`]s, which
//! the runner turns into background tasks whose results come back as messages.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::config::{Secrets, Settings};

use super::panes::{Hint, Step, distributor, partner, psa, reconcile, signin, sync, users};
use crate::access::{self, Access};

/// The tabs, in wizard order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tab {
    SignIn,
    Distributor,
    PartnerCenter,
    Psa,
    Users,
    Reconcile,
    Sync,
}

impl Tab {
    pub const ALL: [Tab; 7] = [
        Tab::SignIn,
        Tab::Distributor,
        Tab::PartnerCenter,
        Tab::Psa,
        Tab::Users,
        Tab::Reconcile,
        Tab::Sync,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::SignIn => "Sign in",
            Tab::Distributor => "Distributor",
            Tab::PartnerCenter => "Partner Center",
            Tab::Psa => "PSA",
            Tab::Users => "Users",
            Tab::Reconcile => "Reconcile",
            Tab::Sync => "Sync",
        }
    }

    /// The setup wizard's steps, in order (what `first_open_step` walks).
    pub const WIZARD: [Tab; 5] = [
        Tab::SignIn,
        Tab::Distributor,
        Tab::PartnerCenter,
        Tab::Psa,
        Tab::Users,
    ];

    pub fn is_wizard_step(self) -> bool {
        Tab::WIZARD.contains(&self)
    }

    /// Whether the wizard moves on by itself when this step completes. Partner Center's
    /// result is its customer list, and the tabs outside the wizard (Reconcile, Sync) are
    /// where the work is read: those stay on screen.
    pub fn moves_on_when_done(self) -> bool {
        matches!(self, Tab::SignIn | Tab::Distributor | Tab::Psa | Tab::Users)
    }

    /// A short title for narrow terminals.
    pub fn short_title(self) -> &'static str {
        match self {
            Tab::SignIn => "Sign in",
            Tab::Distributor => "Distrib",
            Tab::PartnerCenter => "Partner",
            Tab::Psa => "PSA",
            Tab::Users => "Users",
            Tab::Reconcile => "Reconcile",
            Tab::Sync => "Sync",
        }
    }

    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    pub fn next(self) -> Tab {
        Tab::ALL[(self.index() + 1) % Tab::ALL.len()]
    }

    pub fn prev(self) -> Tab {
        Tab::ALL[(self.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]
    }
}

/// What the setup has produced so far: written by the panes, persisted by [`Effect::Save`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    pub settings: Settings,
    pub secrets: Secrets,
}

/// A popup over the panes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modal {
    Help,
    ConfirmQuit,
    /// `q` while a sync is being applied: stop it cleanly and then quit, or stay.
    ConfirmQuitApplying,
    /// A fatal problem: shown, then any key quits.
    Fatal(String),
}

/// A line at the bottom: the outcome of the last action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
}

/// Everything the screen shows.
#[derive(Debug, Clone)]
pub struct App {
    pub tab: Tab,
    pub setup: Setup,
    pub signin: signin::State,
    pub distributor: distributor::State,
    pub partner: partner::State,
    pub psa: psa::State,
    pub users: users::State,
    pub reconcile: reconcile::State,
    pub sync: sync::State,
    pub modal: Option<Modal>,
    pub notice: Option<Notice>,
    pub demo: bool,
    pub quit: bool,
    /// Quit once the apply being cancelled has stopped.
    pub quit_after_apply: bool,
}

/// Inputs: keys, terminal events, background results.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Resize,
    /// Once a second while something counts down.
    Tick,
    SignIn(signin::Msg),
    Distributor(distributor::Msg),
    Partner(partner::Msg),
    Psa(psa::Msg),
    Users(users::Msg),
    Reconcile(reconcile::Msg),
    Sync(sync::Msg),
    /// The settings/secrets were written (or not).
    Saved(Result<(), String>),
    /// A background task panicked or the runtime failed: show it, then quit.
    Fatal(String),
}

/// Outputs: work for the runner.
#[derive(Debug, Clone)]
pub enum Effect {
    SignIn(signin::Cmd),
    Distributor(distributor::Cmd),
    Partner(partner::Cmd),
    Psa(psa::Cmd),
    Users(users::Cmd),
    Reconcile(reconcile::Cmd),
    Sync(sync::Cmd),
    /// Show the Reconcile tab and run it again (after an apply). Handled by [`update`]; it
    /// never reaches the runner.
    RunReconcile,
    /// Persist `setup` (settings and secrets).
    Save(Box<Setup>),
    /// Append a record to the audit log (a failure is logged, never shown as a save error).
    Audit(Box<crate::audit::Event>),
}

impl App {
    /// A new app over saved settings: resumes at the first step not done yet.
    pub fn new(setup: Setup, demo: bool) -> App {
        let mut app = App {
            tab: Tab::SignIn,
            signin: signin::State::new(&setup),
            distributor: distributor::State::new(&setup),
            partner: partner::State::new(&setup),
            psa: psa::State::new(&setup),
            users: users::State::new(&setup),
            reconcile: reconcile::State::new(&setup),
            sync: sync::State::new(&setup),
            setup,
            modal: None,
            notice: None,
            demo,
            quit: false,
            quit_after_apply: false,
        };
        app.tab = app.first_open_step();
        app
    }

    /// Who is using the app (issue 4), derived from the settings.
    pub fn access(&self) -> Access {
        access::decide(
            &self.setup.settings,
            self.setup.secrets.microsoft_refresh_token.is_some(),
        )
    }

    /// The first wizard step not done, or Sign in when all are (or when the person may use
    /// nothing else).
    pub fn first_open_step(&self) -> Tab {
        if !self.access().may_use_app() {
            return Tab::SignIn;
        }
        Tab::WIZARD
            .into_iter()
            .find(|t| self.status(*t) != Step::Done)
            .unwrap_or(Tab::SignIn)
    }

    pub fn status(&self, tab: Tab) -> Step {
        match tab {
            Tab::SignIn => signin::status(&self.signin, &self.setup),
            Tab::Distributor => distributor::status(&self.distributor, &self.setup),
            Tab::PartnerCenter => partner::status(&self.partner, &self.setup),
            Tab::Psa => psa::status(&self.psa, &self.setup),
            Tab::Users => users::status(&self.users, &self.setup),
            Tab::Reconcile => reconcile::status(&self.reconcile, &self.setup),
            Tab::Sync => sync::status(&self.sync, &self.setup),
        }
    }

    /// A form has focus: keys go to it, not to tab switching.
    pub fn editing(&self) -> bool {
        match self.tab {
            Tab::SignIn => signin::editing(&self.signin),
            Tab::Distributor => distributor::editing(&self.distributor),
            Tab::PartnerCenter => partner::editing(&self.partner),
            Tab::Psa => psa::editing(&self.psa),
            Tab::Users => users::editing(&self.users),
            Tab::Reconcile => reconcile::editing(&self.reconcile),
            Tab::Sync => sync::editing(&self.sync),
        }
    }

    /// Changes typed but not yet saved by completing a step.
    pub fn unsaved(&self) -> bool {
        signin::unsaved(&self.signin)
            || distributor::unsaved(&self.distributor)
            || partner::unsaved(&self.partner)
            || psa::unsaved(&self.psa)
            || users::unsaved(&self.users)
            || reconcile::unsaved(&self.reconcile)
            || sync::unsaved(&self.sync)
    }

    /// The keys valid right now (the footer).
    pub fn hints(&self) -> Vec<Hint> {
        if let Some(m) = &self.modal {
            return match m {
                Modal::Help => vec![Hint::new("any key", "close")],
                Modal::ConfirmQuit => vec![
                    Hint::new("y", "quit without saving"),
                    Hint::new("n/Esc", "stay"),
                ],
                Modal::ConfirmQuitApplying => vec![
                    Hint::new("y", "stop and quit"),
                    Hint::new("n/Esc", "stay"),
                    Hint::new("Ctrl-C", "quit at once"),
                ],
                Modal::Fatal(_) => vec![Hint::new("any key", "quit")],
            };
        }
        let mut h = match self.tab {
            Tab::SignIn => signin::hints(&self.signin),
            Tab::Distributor => distributor::hints(&self.distributor),
            Tab::PartnerCenter => partner::hints(&self.partner),
            Tab::Psa => psa::hints(&self.psa),
            Tab::Users => users::hints(&self.users),
            Tab::Reconcile => reconcile::hints(&self.reconcile),
            Tab::Sync => sync::hints(&self.sync),
        };
        if !self.editing() {
            h.push(Hint::new("1-7/Tab", "switch tab"));
            h.push(Hint::new("?", "help"));
            h.push(Hint::new("q", "quit"));
        }
        h
    }

    /// Whether a second-by-second tick is needed (a countdown on screen).
    pub fn wants_tick(&self) -> bool {
        signin::wants_tick(&self.signin)
    }

    fn request_quit(&mut self) {
        if self.sync.applying() {
            self.modal = Some(Modal::ConfirmQuitApplying);
        } else if self.unsaved() {
            self.modal = Some(Modal::ConfirmQuit);
        } else {
            self.quit = true;
        }
    }
}

/// Apply one message. Pure: no I/O, no clock beyond what the message carries. When the
/// current step completes, the wizard moves on to the next open one.
pub fn update(app: &mut App, msg: Msg) -> Vec<Effect> {
    let tab = app.tab;
    let before = app.status(tab);
    let effects = apply(app, msg);
    let effects = run_reconcile_now(app, effects);
    // Quitting waited for the apply to stop cleanly.
    if app.quit_after_apply && !app.sync.applying() {
        app.quit = true;
    }
    // Someone not (or no longer) allowed can use nothing but Sign in (issue 4 §2).
    let access = app.access();
    if !access.may_use_app() && app.tab != Tab::SignIn {
        app.tab = Tab::SignIn;
        app.notice = Some(Notice {
            text: match access {
                Access::Denied { name } => format!(
                    "{name} is not on cspsync's allowed users; ask {} to add you.",
                    setup_user(&app.setup)
                ),
                _ => "Sign in first: only cspsync's allowed users may use it.".into(),
            },
            error: true,
        });
        return effects;
    }
    // Reconcile is not a setup step: finishing a run never moves the person away.
    if before != Step::Done && app.tab == tab && app.status(tab) == Step::Done {
        let next = app.first_open_step();
        if !tab.moves_on_when_done() || app.status(next) == Step::Done {
            // The step's result is worth reading (or every step is done): stay, and point to
            // the next open step.
            if tab.is_wizard_step()
                && app.notice.is_none()
                && next != tab
                && app.status(next) != Step::Done
            {
                app.notice = Some(Notice {
                    text: format!(
                        "Done. Next step: {} (press {}).",
                        next.title(),
                        next.index() + 1
                    ),
                    error: false,
                });
            }
        } else {
            app.tab = next;
        }
    }
    effects
}

/// [`Effect::RunReconcile`]: show the Reconcile tab and start a run there (unless one runs).
fn run_reconcile_now(app: &mut App, effects: Vec<Effect>) -> Vec<Effect> {
    let mut out = Vec::with_capacity(effects.len());
    for e in effects {
        match e {
            Effect::RunReconcile => {
                app.tab = Tab::Reconcile;
                out.extend(reconcile::run_again(&mut app.reconcile, &app.setup));
            }
            other => out.push(other),
        }
    }
    out
}

/// The setup account, for "ask X" sentences.
fn setup_user(setup: &Setup) -> String {
    let n = setup.settings.microsoft.setup_user_name.trim();
    if n.is_empty() {
        "the account that set cspsync up".into()
    } else {
        n.to_string()
    }
}

fn apply(app: &mut App, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Key(key) => on_key(app, key),
        Msg::Resize => Vec::new(),
        Msg::Tick => signin::on_tick(&mut app.signin),
        Msg::SignIn(m) => signin::on_msg(&mut app.signin, &mut app.setup, m),
        Msg::Distributor(m) => distributor::on_msg(&mut app.distributor, &mut app.setup, m),
        Msg::Partner(m) => partner::on_msg(&mut app.partner, &mut app.setup, m),
        Msg::Psa(m) => psa::on_msg(&mut app.psa, &mut app.setup, m),
        Msg::Users(m) => users::on_msg(&mut app.users, &mut app.setup, m),
        Msg::Reconcile(m) => reconcile::on_msg(&mut app.reconcile, &mut app.setup, m),
        Msg::Sync(m) => sync::on_msg(&mut app.sync, &mut app.setup, m),
        Msg::Saved(r) => {
            app.notice = Some(match (r, app.notice.take()) {
                // Keep a pointer to the next step ("Done. Next step: …") and add to it.
                (Ok(()), Some(n)) if !n.error && !n.text.ends_with("Saved.") => Notice {
                    text: format!("{} Saved.", n.text),
                    error: false,
                },
                (Ok(()), _) => Notice {
                    text: "Saved.".into(),
                    error: false,
                },
                (Err(e), _) => Notice {
                    text: format!("Not saved: {e}"),
                    error: true,
                },
            });
            Vec::new()
        }
        Msg::Fatal(e) => {
            app.modal = Some(Modal::Fatal(e));
            Vec::new()
        }
    }
}

fn on_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    if key.kind == KeyEventKind::Release {
        return Vec::new();
    }
    let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
    if let Some(modal) = &app.modal {
        match modal {
            Modal::Help => app.modal = None,
            Modal::Fatal(_) => app.quit = true,
            Modal::ConfirmQuit => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => app.quit = true,
                _ if ctrl_c => app.quit = true,
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => app.modal = None,
                _ => {}
            },
            Modal::ConfirmQuitApplying => match key.code {
                _ if ctrl_c => app.quit = true,
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    app.modal = None;
                    app.quit_after_apply = true;
                    return sync::cancel(&mut app.sync);
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => app.modal = None,
                _ => {}
            },
        }
        return Vec::new();
    }
    if ctrl_c {
        app.request_quit();
        return Vec::new();
    }
    if app.editing() {
        return pane_key(app, key);
    }
    match key.code {
        KeyCode::Char('q') => {
            app.request_quit();
            Vec::new()
        }
        KeyCode::Char('?') => {
            app.modal = Some(Modal::Help);
            Vec::new()
        }
        KeyCode::Char(c @ '1'..='7') => {
            let i = (c as usize) - ('1' as usize);
            app.tab = Tab::ALL[i];
            Vec::new()
        }
        KeyCode::Tab => {
            app.tab = app.tab.next();
            Vec::new()
        }
        KeyCode::BackTab => {
            app.tab = app.tab.prev();
            Vec::new()
        }
        _ => pane_key(app, key),
    }
}

fn pane_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    app.notice = None;
    match app.tab {
        Tab::SignIn => signin::on_key(&mut app.signin, &mut app.setup, key),
        Tab::Distributor => distributor::on_key(&mut app.distributor, &mut app.setup, key),
        Tab::PartnerCenter => partner::on_key(&mut app.partner, &mut app.setup, key),
        Tab::Psa => psa::on_key(&mut app.psa, &mut app.setup, key),
        Tab::Users => users::on_key(&mut app.users, &mut app.setup, key),
        Tab::Reconcile => reconcile::on_key(&mut app.reconcile, &mut app.setup, key),
        Tab::Sync => sync::on_key(&mut app.sync, &mut app.setup, key),
    }
}
