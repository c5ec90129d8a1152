//! `cargo bench --bench sync_output`: the bytes a terminal receives while the Sync tab's
//! progress view runs (issue 6 §7: target ≤ 4 KB/s at 10 updates a second), measured in a
//! pseudo-terminal on the real (release) binary.
//!
//! The demo with a generated world of `CUSTOMERS` customers and `LATENCY` of simulated latency
//! per call: set up with the keyboard, plan, apply everything (cautioned writes confirmed), and
//! from the first progress frame to the summary count the bytes written to the terminal each
//! second. Printed: the apply's length, the writes, and bytes per second (median, mean, max) at
//! 120x40 and 80x24. Figures are printed, never asserted (DESIGN.md §6).
//!
//! Measured (1,000 customers, ConnectWise at 1 s a call: 75 writes, 8 s of progress): 120x40
//! median 1.7 KB/s, mean 1.5 KB/s, max 4.4 KB/s (the first full refresh of the log); 80x24
//! median 0.3 KB/s, mean 0.5 KB/s, max 1.6 KB/s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::pty::{Key, Term};

const CUSTOMERS: &str = "1000";
/// Per simulated call: long enough for the apply to run several seconds.
const LATENCY: &str = "connectwise.latency=1000ms";
const STEP: Duration = Duration::from_secs(120);
/// A 1,000-customer fetch (and plan) at this latency.
const PLAN: Duration = Duration::from_secs(600);

fn wait(t: &Term, text: &str, timeout: Duration) {
    t.wait_for(text, timeout)
        .unwrap_or_else(|e| panic!("{e}\n--- screen ---\n{}", t.text()));
}

/// A step marked done on the tab bar (`2 Distributor ✓`, or `2 Distributor✓` at 80 columns).
fn wait_done(t: &Term, step: &str, timeout: Duration) {
    let (wide, tight) = (format!("{step} ✓"), format!("{step}✓"));
    t.wait_until(step, timeout, |s| {
        let c = s.contents();
        c.contains(&wide) || c.contains(&tight)
    })
    .unwrap_or_else(|e| panic!("{e}\n--- screen ---\n{}", t.text()));
}

fn set_up(t: &Term) {
    wait(t, "Press Enter to get a sign-in code", STEP);
    t.press(Key::Enter);
    wait_done(t, "1 Sign in", STEP);
    wait(t, "Test connection", STEP);
    t.press(Key::Enter);
    wait_done(t, "2 Distributor", STEP);
    wait(t, "Authorise", STEP);
    t.press(Key::Enter);
    wait_done(t, "3 Partner Center", PLAN);
    t.press(Key::Char('4'));
    wait(t, "Connect the PSA you bill from", STEP);
    t.press(Key::Enter);
    t.press(Key::Enter);
    wait_done(t, "4 PSA", STEP);
}

struct Run {
    cols: u16,
    rows: u16,
    plan_secs: f64,
    writes: String,
    seconds: f64,
    per_second: Vec<u64>,
}

fn measure(cols: u16, rows: u16) -> Run {
    let t = Term::cspsync(
        &["--demo", "--customers", CUSTOMERS, "--faults", LATENCY],
        cols,
        rows,
    );
    wait(&t, "1 Sign in", STEP);
    set_up(&t);
    t.press(Key::Char('7'));
    wait(&t, "Press Enter to make the plan", STEP);
    t.press(Key::Enter);
    let planning = Instant::now();
    // "N of M writes selected" (wide) or "N/M writes" (narrow).
    t.wait_until("the plan", PLAN, |s| {
        s.contents().contains("writes selected") || s.contents().contains("/month")
    })
    .unwrap_or_else(|e| panic!("{e}\n--- screen ---\n{}", t.text()));
    let plan_secs = planning.elapsed().as_secs_f64();
    let writes = t
        .text()
        .lines()
        .find(|l| l.contains(" writes"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    t.press(Key::Char('a'));
    support::walk::confirm_apply(&t, STEP);
    t.wait_until("the progress view", STEP, |s| {
        s.contents().contains("Applying to") || s.contents().contains("Finished")
    })
    .unwrap_or_else(|e| panic!("{e}\n--- screen ---\n{}", t.text()));
    let t0 = Instant::now();
    let mut last = t.bytes();
    let mut per_second = Vec::new();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = t.bytes();
        let done = t.text().contains("Finished") || t.text().contains("Stopped");
        if !done {
            per_second.push(now.saturating_sub(last));
        }
        last = now;
        if done || t0.elapsed() > PLAN {
            break;
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    t.press(Key::Char('q'));
    let mut t = t;
    let _ = t.wait_exit(Duration::from_secs(20));
    Run {
        cols,
        rows,
        plan_secs,
        writes,
        seconds,
        per_second,
    }
}

fn main() {
    println!(
        "sync_output: {} (release binary), demo with {CUSTOMERS} customers, {LATENCY}",
        support::pty::cspsync_bin().display()
    );
    for (cols, rows) in [(120, 40), (80, 24)] {
        let r = measure(cols, rows);
        let mut v = r.per_second.clone();
        v.sort_unstable();
        let median = match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2] as f64,
            n => (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0,
        };
        let mean = if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<u64>() as f64 / v.len() as f64
        };
        println!(
            "{}x{}: plan \"{}\" (made in {:.0} s); progress view for {:.1} s; bytes/s over {} full seconds: median {:.0}, mean {:.0}, max {} (target ≤ 4096)",
            r.cols,
            r.rows,
            r.writes,
            r.plan_secs,
            r.seconds,
            v.len(),
            median,
            mean,
            v.last().copied().unwrap_or(0)
        );
        println!("  per second: {:?}", r.per_second);
    }
}
