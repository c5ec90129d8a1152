//! Helpers for screen tests: render an [`App`] into a text grid, build key events.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

use super::app::{self, App, Effect, Msg};
use super::render;
use super::theme::Theme;

/// The screen as text, one line per row (trailing spaces kept, so snapshots show the layout).
pub fn screen(app: &App, width: u16, height: u16) -> String {
    let Ok(mut terminal) = Terminal::new(TestBackend::new(width, height));
    let theme = Theme::new(false);
    let _ = terminal.draw(|f| render::draw(app, &theme, f));
    buffer_text(terminal.backend().buffer())
}

/// A drawn buffer as text, one line per row (trailing spaces kept).
pub fn buffer_text(buf: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

/// Fails the test, showing the screen, unless every one of `texts` is on it.
#[track_caller]
pub fn assert_shows(screen: &str, texts: &[&str]) {
    for text in texts {
        assert!(
            screen.contains(text),
            "no {text:?} on the screen:\n{screen}"
        );
    }
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

/// A simulated world serving `world`, the demo's pre-filled setup for it (signed in to
/// Microsoft when `sign_in`), and the runner's `Services` pointed at it with a throw-away
/// settings directory: what a pane's background work needs in a test.
pub struct SimEnv {
    pub sim: crate::sim::SimHandle,
    pub world: crate::sim::World,
    pub svc: std::sync::Arc<super::runner::Services>,
    pub setup: super::app::Setup,
    pub dir: tempfile::TempDir,
}

impl SimEnv {
    /// Panics on failure: for tests only.
    pub async fn start(world: crate::sim::World, sign_in: bool) -> SimEnv {
        let sim = crate::sim::start(
            world.clone(),
            crate::sim::FaultSpec::default(),
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .unwrap_or_else(|e| panic!("the sim starts: {e}"));
        let urls = sim.urls();
        let mut setup =
            crate::run::demo_setup(&world, &urls).unwrap_or_else(|e| panic!("demo setup: {e}"));
        if sign_in {
            let session = crate::demo::sign_in_microsoft(&sim, &world)
                .await
                .unwrap_or_else(|e| panic!("sign-in: {e}"));
            setup.secrets.microsoft_refresh_token =
                Some(session.refresh_token().secret().to_string());
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory: {e}"));
        let endpoints =
            crate::config::Endpoints::from_sim(&urls).unwrap_or_else(|e| panic!("sim URLs: {e}"));
        let svc = super::runner::Services::new(
            crate::connect::Context::with_endpoints(endpoints),
            crate::config::ConfigDir {
                dir: dir.path().to_path_buf(),
            },
            None,
        );
        SimEnv {
            sim,
            world,
            svc: std::sync::Arc::new(svc),
            setup,
            dir,
        }
    }
}
