//! The Users tab: who may operate cspsync (being built).

use std::sync::Arc;

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::Paragraph;
use tokio::sync::mpsc::Sender;

use super::{Hint, Step};
use crate::tui::app::{self, Effect, Setup};
use crate::tui::runner::Services;
use crate::tui::theme::Theme;

#[derive(Debug, Clone, Default)]
pub struct State {}

impl State {
    pub fn new(_setup: &Setup) -> State {
        State {}
    }
}

#[derive(Debug, Clone)]
pub enum Msg {}

#[derive(Debug, Clone)]
pub enum Cmd {}

/// Kept between commands by the runner.
#[derive(Debug, Default)]
pub struct Runtime {}

pub fn on_key(_s: &mut State, _setup: &mut Setup, _key: KeyEvent) -> Vec<Effect> {
    Vec::new()
}

pub fn on_msg(_s: &mut State, _setup: &mut Setup, msg: Msg) -> Vec<Effect> {
    match msg {}
}

pub fn editing(_s: &State) -> bool {
    false
}

pub fn unsaved(_s: &State) -> bool {
    false
}

pub fn status(_s: &State, setup: &Setup) -> Step {
    if setup.settings.access.saved_at.is_some() {
        Step::Done
    } else {
        Step::ToDo
    }
}

pub fn hints(_s: &State) -> Vec<Hint> {
    Vec::new()
}

pub fn render(_s: &State, _setup: &Setup, _theme: &Theme, frame: &mut Frame, area: Rect) {
    frame.render_widget(Paragraph::new("Users"), area);
}

pub async fn run(cmd: Cmd, _svc: Arc<Services>, _tx: Sender<app::Msg>) {
    match cmd {}
}
