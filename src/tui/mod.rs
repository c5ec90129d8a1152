//! The terminal app: one event loop on the tokio runtime. Keys and background results become
//! [`app::Msg`]s, [`app::update`] turns them into state changes and effects, the runner does the
//! I/O in the background, and a frame is drawn only when something changed (at most ~30 a
//! second, wrapped in synchronized updates). The terminal is restored on quit, on error, on a
//! panic anywhere and on SIGTERM.

pub mod app;
pub mod panes;
pub mod render;
pub mod runner;
pub mod testing;
pub mod text;
pub mod theme;
pub mod widgets;

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{
    DisableBracketedPaste, EnableBracketedPaste, Event, EventStream, KeyCode, KeyEvent,
    KeyModifiers,
};
use crossterm::terminal::{
    BeginSynchronizedUpdate, Clear, ClearType, EndSynchronizedUpdate, EnterAlternateScreen,
    LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute, queue};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;
use tokio::time::Instant;

use app::{App, Msg};
use runner::Services;
use theme::Theme;

/// Frames are at least this far apart (~30 fps).
const FRAME: Duration = Duration::from_millis(33);

/// Restore the terminal: leave the alternate screen, show the cursor, cooked mode. Safe to
/// call more than once.
pub fn restore_terminal() {
    let _ = disable_raw_mode();
    let mut out = io::stdout();
    let _ = execute!(
        out,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        cursor::Show
    );
    let _ = out.flush();
}

/// Restores the terminal when dropped (normal exit, error, unwinding panic).
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        enable_raw_mode()?;
        if let Err(e) = execute!(
            io::stdout(),
            EnterAlternateScreen,
            cursor::Hide,
            EnableBracketedPaste
        ) {
            restore_terminal();
            return Err(e);
        }
        // A panic anywhere (this thread or a task's) restores the screen before the message
        // is printed, so the person can read it.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        Ok(TerminalGuard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Run the app until the person quits. `setup` is what was saved before (resumed).
pub async fn run(app: App, services: Services, theme: Theme) -> Result<(), String> {
    let _guard =
        TerminalGuard::enter().map_err(|e| format!("cannot take over the terminal: {e}"))?;
    let backend = CrosstermBackend::new(io::stdout());
    let mut terminal =
        Terminal::new(backend).map_err(|e| format!("cannot draw on the terminal: {e}"))?;
    // Clear without asking the terminal where its cursor is (ratatui's clear() asks, and a
    // terminal that never answers would stall the start for seconds).
    execute!(io::stdout(), Clear(ClearType::All))
        .map_err(|e| format!("cannot draw on the terminal: {e}"))?;
    event_loop(&mut terminal, app, Arc::new(services), theme).await
}

async fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<io::Stdout>>,
    mut app: App,
    services: Arc<Services>,
    theme: Theme,
) -> Result<(), String> {
    let (tx, mut rx) = mpsc::channel::<Msg>(256);
    let mut events = EventStream::new();
    let mut sigterm = sigterm_stream();
    let mut dirty = true;
    let mut last_draw = Instant::now() - FRAME;
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    loop {
        if dirty && last_draw.elapsed() >= FRAME {
            draw(terminal, &app, &theme)?;
            last_draw = Instant::now();
            dirty = false;
        }
        let draw_at = last_draw + FRAME;
        let msg = tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(Event::Key(k))) => Msg::Key(k),
                Some(Ok(Event::Paste(text))) => {
                    // A paste (a redirect address over SSH) arrives as one event: typed into
                    // the focused field character by character, line breaks dropped so a
                    // trailing newline never acts as Enter.
                    for c in text.chars().filter(|c| !c.is_control()) {
                        let key = KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
                        for effect in app::update(&mut app, Msg::Key(key)) {
                            runner::spawn(effect, services.clone(), tx.clone());
                        }
                    }
                    Msg::Resize
                }
                Some(Ok(Event::Resize(_, _))) => {
                    // ratatui resizes its buffers on the next draw.
                    Msg::Resize
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("cannot read the keyboard: {e}")),
                None => return Ok(()),
            },
            Some(m) = rx.recv() => m,
            _ = tokio::time::sleep_until(next_tick), if app.wants_tick() => {
                next_tick = Instant::now() + Duration::from_secs(1);
                Msg::Tick
            },
            _ = tokio::time::sleep_until(draw_at), if dirty => continue,
            _ = sigterm.recv() => return Ok(()),
        };
        if !app.wants_tick() {
            next_tick = Instant::now() + Duration::from_secs(1);
        }
        for effect in app::update(&mut app, msg) {
            runner::spawn(effect, services.clone(), tx.clone());
        }
        dirty = true;
        if app.quit {
            return Ok(());
        }
    }
}

fn draw(
    terminal: &mut Terminal<CrosstermBackend<io::Stdout>>,
    app: &App,
    theme: &Theme,
) -> Result<(), String> {
    let io_err = |e: io::Error| format!("cannot draw on the terminal: {e}");
    queue!(terminal.backend_mut(), BeginSynchronizedUpdate).map_err(io_err)?;
    terminal
        .draw(|f| render::draw(app, theme, f))
        .map_err(|e| format!("cannot draw on the terminal: {e}"))?;
    execute!(terminal.backend_mut(), EndSynchronizedUpdate).map_err(io_err)?;
    Ok(())
}

/// SIGTERM as a stream (never fires where there is no such signal).
fn sigterm_stream() -> SigTerm {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        SigTerm(signal(SignalKind::terminate()).ok())
    }
    #[cfg(not(unix))]
    SigTerm(None)
}

#[cfg(unix)]
struct SigTerm(Option<tokio::signal::unix::Signal>);
#[cfg(not(unix))]
struct SigTerm(Option<()>);

impl SigTerm {
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.0.as_mut() {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}
