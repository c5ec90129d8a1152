//! Helpers for screen tests: render an [`App`] into a text grid, build key events.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{self, App, Effect, Msg};
use super::render;
use super::theme::Theme;

/// The screen as text, one line per row (trailing spaces kept, so snapshots show the layout).
pub fn screen(app: &App, width: u16, height: u16) -> String {
    let Ok(mut terminal) = Terminal::new(TestBackend::new(width, height));
    let theme = Theme::new(false);
    let _ = terminal.draw(|f| render::draw(app, &theme, f));
    let buf = terminal.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

pub fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

pub fn ctrl(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

/// Type `text` key by key; returns every effect produced.
pub fn type_text(app: &mut App, text: &str) -> Vec<Effect> {
    text.chars()
        .flat_map(|c| app::update(app, key(KeyCode::Char(c))))
        .collect()
}

/// Send a message; returns its effects.
pub fn send(app: &mut App, msg: Msg) -> Vec<Effect> {
    app::update(app, msg)
}
