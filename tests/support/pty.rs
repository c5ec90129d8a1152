//! Run a program in a pseudo-terminal and read its screen the way a person sees it.
//!
//! `Term::cspsync(&["--demo"], 80, 24)` starts the real binary in a PTY of that size; a reader
//! thread feeds everything it writes into a `vt100` parser (and answers the cursor-position
//! query ratatui makes, as a real terminal does). Tests then press keys, wait until text
//! appears, and check how the terminal was left when the program ended.
//!
//! ```ignore
//! let mut t = Term::demo(&[], 120, 40, Duration::from_secs(30))?;
//! t.press(Key::Char('2'));
//! t.wait_for("Account Code", Duration::from_secs(5))?;
//! t.type_text("325026");
//! t.press(Key::Char('q'));
//! assert!(t.wait_exit(Duration::from_secs(5)).unwrap().success());
//! t.check_restored()?;
//! ```
//!
//! Shared by the integration tests (`mod support;`) and `benches/tui_start.rs` (`#[path]`).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, ExitStatus, MasterPty, PtySize, native_pty_system};

/// A key as a terminal sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Ctrl(char),
    Enter,
    Tab,
    BackTab,
    Esc,
    Backspace,
    Up,
    Down,
    Left,
    Right,
}

impl Key {
    /// The bytes an xterm-like terminal sends for the key.
    pub fn bytes(self) -> Vec<u8> {
        match self {
            Key::Char(c) => c.to_string().into_bytes(),
            Key::Ctrl(c) => vec![(c.to_ascii_lowercase() as u8) & 0x1f],
            Key::Enter => b"\r".to_vec(),
            Key::Tab => b"\t".to_vec(),
            Key::BackTab => b"\x1b[Z".to_vec(),
            Key::Esc => b"\x1b".to_vec(),
            Key::Backspace => b"\x7f".to_vec(),
            Key::Up => b"\x1b[A".to_vec(),
            Key::Down => b"\x1b[B".to_vec(),
            Key::Right => b"\x1b[C".to_vec(),
            Key::Left => b"\x1b[D".to_vec(),
        }
    }
}

/// What the reader thread shares with the test.
struct Shared {
    parser: vt100::Parser,
    /// Bytes the program has written so far.
    bytes: u64,
    /// Everything written (for assertions on escape sequences and for failure messages).
    raw: Vec<u8>,
    /// The reader saw end of file: the program and everything holding the PTY are gone.
    eof: bool,
    /// When the latest bytes arrived.
    last_output: Option<Instant>,
}

type SharedState = Arc<(Mutex<Shared>, Condvar)>;
type Writer = Arc<Mutex<Box<dyn Write + Send>>>;

/// A program running in a pseudo-terminal.
pub struct Term {
    child: Box<dyn Child + Send + Sync>,
    master: Box<dyn MasterPty + Send>,
    writer: Writer,
    shared: SharedState,
    started: Instant,
    exit: Option<ExitStatus>,
    /// Pause after each key so each arrives as its own read (a lone Esc stays Esc, not Alt-).
    pub key_gap: Duration,
}

/// The cspsync binary cargo built for these tests.
pub fn cspsync_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cspsync"))
}

fn lock(shared: &SharedState) -> MutexGuard<'_, Shared> {
    shared.0.lock().unwrap_or_else(|p| p.into_inner())
}

impl Term {
    /// Start cspsync with `args` in a `cols`x`rows` terminal.
    pub fn cspsync(args: &[&str], cols: u16, rows: u16) -> Term {
        Term::spawn(&cspsync_bin(), args, cols, rows, &[])
    }

    /// Start `cspsync --demo` (plus `extra` arguments) and wait for its first frame (the tab
    /// bar): the starting point of the demo walk-throughs.
    pub fn demo(extra: &[&str], cols: u16, rows: u16, timeout: Duration) -> Result<Term, String> {
        let mut args = vec!["--demo"];
        args.extend_from_slice(extra);
        let t = Term::cspsync(&args, cols, rows);
        t.wait_for("1 Sign in", timeout)?;
        Ok(t)
    }

    /// Start `program` in a `cols`x`rows` terminal (TERM=xterm-256color; `env` added; the
    /// settings directory variable removed so nothing real is touched).
    pub fn spawn(
        program: &Path,
        args: &[&str],
        cols: u16,
        rows: u16,
        env: &[(&str, &str)],
    ) -> Term {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pty");
        let mut cmd = CommandBuilder::new(program);
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        cmd.env_remove("CSPSYNC_CONFIG_DIR");
        cmd.env_remove("NO_COLOR");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.cwd(std::env::temp_dir());
        let child = pair.slave.spawn_command(cmd).expect("spawn in the pty");
        // Only the child holds the slave now: its exit ends the reader with EOF.
        drop(pair.slave);
        let master = pair.master;
        let reader = master.try_clone_reader().expect("pty reader");
        let writer: Writer = Arc::new(Mutex::new(master.take_writer().expect("pty writer")));
        let shared: SharedState = Arc::new((
            Mutex::new(Shared {
                parser: vt100::Parser::new(rows, cols, 0),
                bytes: 0,
                raw: Vec::new(),
                eof: false,
                last_output: None,
            }),
            Condvar::new(),
        ));
        let (s2, w2) = (shared.clone(), writer.clone());
        std::thread::spawn(move || read_loop(reader, s2, w2));
        Term {
            child,
            master,
            writer,
            shared,
            started: Instant::now(),
            exit: None,
            key_gap: Duration::from_millis(30),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.process_id()
    }

    /// Time since the program was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Send raw bytes as typed.
    pub fn send(&self, bytes: &[u8]) {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.write_all(bytes).expect("write to the pty");
        w.flush().expect("flush the pty");
    }

    /// Press one key.
    pub fn press(&self, key: Key) {
        self.send(&key.bytes());
        std::thread::sleep(self.key_gap);
    }

    /// Press keys one after another.
    pub fn keys(&self, keys: &[Key]) {
        for k in keys {
            self.press(*k);
        }
    }

    /// Type text, one character at a time.
    pub fn type_text(&self, text: &str) {
        for c in text.chars() {
            self.press(Key::Char(c));
        }
    }

    /// Resize the terminal (the program gets SIGWINCH).
    pub fn resize(&self, cols: u16, rows: u16) {
        self.master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("resize the pty");
        lock(&self.shared).parser.screen_mut().set_size(rows, cols);
    }

    /// Look at the screen.
    pub fn with_screen<R>(&self, f: impl FnOnce(&vt100::Screen) -> R) -> R {
        f(lock(&self.shared).parser.screen())
    }

    /// The screen as text, one line per row.
    pub fn text(&self) -> String {
        self.with_screen(|s| s.contents())
    }

    /// One row of the screen (0 is the top).
    pub fn row(&self, n: u16) -> String {
        self.with_screen(|s| {
            let (_, cols) = s.size();
            s.rows(0, cols).nth(usize::from(n)).unwrap_or_default()
        })
    }

    /// The bold text on row `n`, in runs (the active tab is the bold run on the tab bar).
    pub fn bold_runs(&self, n: u16) -> Vec<String> {
        self.with_screen(|s| bold_runs(s, n))
    }

    /// Bytes the program has written so far.
    pub fn bytes(&self) -> u64 {
        lock(&self.shared).bytes
    }

    /// Everything the program has written so far.
    pub fn raw(&self) -> Vec<u8> {
        lock(&self.shared).raw.clone()
    }

    /// When the program last wrote anything.
    pub fn last_output(&self) -> Option<Instant> {
        lock(&self.shared).last_output
    }

    /// Wait until `pred` holds for the screen; `Err` carries the screen as it was.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&vt100::Screen) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if pred(g.parser.screen()) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline || g.eof {
                return Err(format!(
                    "{what}: not seen within {timeout:?}{}; the screen:\n{}",
                    if g.eof { " (the program ended)" } else { "" },
                    g.parser.screen().contents()
                ));
            }
            g = cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Wait until `text` is on the screen.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> Result<(), String> {
        self.wait_until(&format!("`{text}`"), timeout, |s| {
            s.contents().contains(text)
        })
    }

    /// Wait until `text` is gone from the screen.
    pub fn wait_gone(&self, text: &str, timeout: Duration) -> Result<(), String> {
        self.wait_until(&format!("`{text}` gone"), timeout, |s| {
            !s.contents().contains(text)
        })
    }

    /// Wait until the program ends and everything it wrote has been read; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.exit.is_none() {
            match self.child.try_wait() {
                Ok(Some(status)) => self.exit = Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => return None,
            }
        }
        // The last bytes (leaving the alternate screen) may still be in flight.
        let _ = self.wait_eof(Duration::from_secs(2));
        self.exit.clone()
    }

    fn wait_eof(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        while !g.eof {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Send a signal (`TERM`, `INT`, …) to the program with `kill`.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().expect("the child's pid");
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} {pid} failed");
    }

    /// The terminal was handed back as it was found: the alternate screen left and the cursor
    /// shown. `Err` says what is wrong.
    pub fn check_restored(&self) -> Result<(), String> {
        let (alt, hidden) = self.with_screen(|s| (s.alternate_screen(), s.hide_cursor()));
        let mut problems = Vec::new();
        if alt {
            problems.push("still on the alternate screen");
        }
        if hidden {
            problems.push("the cursor is still hidden");
        }
        #[cfg(target_os = "linux")]
        if let Some(modes) = self.tty_modes()
            && (modes.contains("-icanon") || modes.contains("-echo "))
        {
            problems.push("the terminal is still in raw mode");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{}; the screen:\n{}",
                problems.join(", "),
                self.text()
            ))
        }
    }

    /// `stty -a` of the terminal (Linux), to see whether raw mode was left.
    #[cfg(target_os = "linux")]
    pub fn tty_modes(&self) -> Option<String> {
        let tty = self.master.tty_name()?;
        let out = std::process::Command::new("stty")
            .arg("-a")
            .arg("-F")
            .arg(tty)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).replace('\n', " ") + " ")
    }

    /// CPU time the program has used so far, in clock ticks (utime + stime of
    /// /proc/<pid>/stat; Linux).
    #[cfg(target_os = "linux")]
    pub fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?)).ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: count after it.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // rest starts at field 3 (state); utime and stime are fields 14 and 15.
        let utime: u64 = f.get(11)?.parse().ok()?;
        let stime: u64 = f.get(12)?.parse().ok()?;
        Some(utime + stime)
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        if self.exit.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The bold text on `row`, in runs.
pub fn bold_runs(s: &vt100::Screen, row: u16) -> Vec<String> {
    let (_, cols) = s.size();
    let mut runs = Vec::new();
    let mut cur = String::new();
    for col in 0..cols {
        match s.cell(row, col) {
            Some(c) if c.bold() => cur.push_str(c.contents()),
            _ => {
                if !cur.trim().is_empty() {
                    runs.push(cur.trim().to_string());
                }
                cur.clear();
            }
        }
    }
    if !cur.trim().is_empty() {
        runs.push(cur.trim().to_string());
    }
    runs
}

/// Feed the program's output to the parser; answer cursor-position queries (`ESC [ 6 n`)
/// as a terminal does, or crossterm waits for an answer.
fn read_loop(mut reader: Box<dyn Read + Send>, shared: SharedState, writer: Writer) {
    const DSR: &[u8] = b"\x1b[6n";
    let mut buf = [0u8; 16 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let replies = {
            let mut g = lock(&shared);
            g.parser.process(chunk);
            g.bytes += n as u64;
            g.raw.extend_from_slice(chunk);
            g.last_output = Some(Instant::now());
            // A query split across reads is found with the tail of the previous read.
            let mut window = std::mem::take(&mut tail);
            window.extend_from_slice(chunk);
            let queries = window.windows(DSR.len()).filter(|w| *w == DSR).count();
            tail = window[window.len().saturating_sub(DSR.len() - 1)..].to_vec();
            let (row, col) = g.parser.screen().cursor_position();
            (0..queries)
                .map(|_| format!("\x1b[{};{}R", row + 1, col + 1))
                .collect::<Vec<_>>()
        };
        shared.1.notify_all();
        if !replies.is_empty() {
            let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
            for r in replies {
                let _ = w.write_all(r.as_bytes());
            }
            let _ = w.flush();
        }
    }
    lock(&shared).eof = true;
    shared.1.notify_all();
}
