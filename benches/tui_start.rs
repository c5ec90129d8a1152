//! `cargo bench --bench tui_start`: the real (release) binary in a pseudo-terminal (issue 3,
//! "Measure and report").
//!
//! - First frame: time from spawning `cspsync --demo` until its tab bar is on the screen
//!   (the in-process simulated world is started before the first frame); median of 10 runs.
//! - Idle: after start-up, no input for 10 s: the CPU time the process used in that window
//!   (utime + stime from /proc/<pid>/stat) as a percentage of the window, and the bytes it
//!   wrote to the terminal (it must not redraw when nothing changes: ~0).
//!
//! Timings are printed, never asserted (DESIGN.md §6).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/pty.rs"]
mod pty;

use std::time::{Duration, Instant};

use pty::{Key, Term};

const RUNS: usize = 10;
const IDLE: Duration = Duration::from_secs(10);
/// Let start-up settle (logging set up, any follow-up frame) before the idle window opens.
const SETTLE: Duration = Duration::from_secs(1);

fn main() {
    // `cargo bench -- <filter>` passes extra arguments; `--bench` among them. Nothing to filter.
    let (cols, rows) = (80, 24);
    println!(
        "tui_start: {} (release binary), demo mode, {cols}x{rows} terminal",
        pty::cspsync_bin().display()
    );

    // Warm the page cache once, untimed.
    quit(start(cols, rows).0);

    let mut times = Vec::with_capacity(RUNS);
    let mut first_bytes = 0;
    for _ in 0..RUNS {
        let (t, first) = start(cols, rows);
        times.push(first);
        // Let the frame finish arriving before counting what it took.
        std::thread::sleep(Duration::from_millis(200));
        first_bytes = t.bytes();
        quit(t);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "first frame: median {:.1} ms (min {:.1}, max {:.1}) over {RUNS} runs",
        ms(times[RUNS / 2 - 1] / 2 + times[RUNS / 2] / 2),
        ms(times[0]),
        ms(times[RUNS - 1])
    );
    println!("first screen: {first_bytes} bytes written to the terminal");

    idle(cols, rows, "first tab, nothing pressed", &[]);
    idle(cols, rows, "key help open", &[Key::Char('?')]);
}

/// Spawn the demo; the time until the tab bar shows.
fn start(cols: u16, rows: u16) -> (Term, Duration) {
    let t0 = Instant::now();
    let t = Term::cspsync(&["--demo"], cols, rows);
    t.wait_for("1 Sign in", Duration::from_secs(30))
        .expect("first frame");
    (t, t0.elapsed())
}

fn quit(mut t: Term) {
    t.press(Key::Char('q'));
    if t.wait_exit(Duration::from_secs(2)).is_none() {
        // A popup took the `q`: close it, then quit.
        t.press(Key::Esc);
        t.press(Key::Char('q'));
    }
    let status = t.wait_exit(Duration::from_secs(10)).expect("q quits");
    assert!(status.success(), "exit status {status:?}");
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU and terminal output over an idle window after start-up (and after `keys`).
fn idle(cols: u16, rows: u16, what: &str, keys: &[Key]) {
    let (t, _) = start(cols, rows);
    t.keys(keys);
    std::thread::sleep(SETTLE);
    let (Some(cpu0), bytes0) = (t.cpu_ticks(), t.bytes()) else {
        println!("idle ({what}): /proc/<pid>/stat is not readable here; skipped");
        quit(t);
        return;
    };
    let w0 = Instant::now();
    std::thread::sleep(IDLE);
    let window = w0.elapsed();
    let cpu1 = t.cpu_ticks().expect("still running");
    let bytes1 = t.bytes();
    let hz = clock_ticks_per_second();
    let ticks = cpu1.saturating_sub(cpu0);
    let cpu_pct = ticks as f64 / hz as f64 / window.as_secs_f64() * 100.0;
    println!(
        "idle ({what}): {:.1} s with no input: CPU {ticks} ticks (1/{hz} s) = {cpu_pct:.2}% of one core; {} bytes written to the terminal",
        window.as_secs_f64(),
        bytes1.saturating_sub(bytes0)
    );
    quit(t);
}
