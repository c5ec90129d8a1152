//! One module per tab. Each pane module has the same shape, so panes are built side by side:
//!
//! - `State` (`new(&Setup)`), `Msg` (its background results), `Cmd` (its background work);
//! - `on_key(&mut State, &mut Setup, KeyEvent) -> Vec<Effect>` and
//!   `on_msg(&mut State, &mut Setup, Msg) -> Vec<Effect>`: pure;
//! - `editing(&State) -> bool` (a text field has the keys), `unsaved(&State) -> bool`,
//!   `status(&State, &Setup) -> Step`, `hints(&State) -> Vec<Hint>`;
//! - `render(&State, &Setup, &Theme, &mut Frame, Rect)`;
//! - `run(Cmd, Arc<Services>, Sender<app::Msg>)`: the I/O, spawned by the runner;
//! - `Runtime`: what the pane's background work keeps between commands (in `Services`).
//!
//! Background results carry the generation of the command that asked for them; a pane drops
//! a result whose generation is not its current one (a stale answer never overwrites a newer).

pub mod distributor;
pub mod mapping;
pub mod partner;
pub mod psa;
pub mod reconcile;
pub mod signin;
pub mod sync;
pub mod users;

/// A wizard step's state, shown in its tab title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    ToDo,
    Busy,
    Done,
}

impl Step {
    pub fn mark(self) -> &'static str {
        match self {
            Step::Done => "✓",
            Step::Busy => "…",
            Step::ToDo => "•",
        }
    }
}

/// The first row to show of `len` in `rows` lines so that `cursor` is on screen, moving
/// `offset` (the last one shown) as little as possible.
pub(crate) fn scroll_offset(offset: usize, cursor: usize, rows: usize, len: usize) -> usize {
    let offset = if cursor < offset {
        cursor
    } else if cursor >= offset + rows {
        cursor + 1 - rows
    } else {
        offset
    };
    offset.min(len.saturating_sub(rows))
}

/// A detail view's keys (the Reconcile and Sync tabs'): the arrows, j/k, the page keys and
/// Home scroll it; Esc, Enter or Backspace close it (true; the scroll goes back to the top).
pub(crate) fn detail_key(scroll: &mut u16, key: crossterm::event::KeyEvent) -> bool {
    use crossterm::event::KeyCode;
    match key.code {
        KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace => {
            *scroll = 0;
            return true;
        }
        KeyCode::Down | KeyCode::Char('j') => *scroll = scroll.saturating_add(1),
        KeyCode::Up | KeyCode::Char('k') => *scroll = scroll.saturating_sub(1),
        KeyCode::PageDown => *scroll = scroll.saturating_add(10),
        KeyCode::PageUp => *scroll = scroll.saturating_sub(10),
        KeyCode::Home => *scroll = 0,
        _ => {}
    }
    false
}

/// One key hint: `key` and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub key: &'static str,
    pub action: &'static str,
}

impl Hint {
    pub const fn new(key: &'static str, action: &'static str) -> Hint {
        Hint { key, action }
    }
}
