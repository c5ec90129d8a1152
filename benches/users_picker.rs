//! `cargo bench --bench users_picker`: the Users tab at 50,000 users (issue 4 §4).
//!
//! - Loading: the 51 pages of 999 fed through the pure update, then the index built.
//! - Render: median time to draw the picker at 120x40 (ratatui `TestBackend`): the pane
//!   alone and the whole frame (tab bar, pane, footer, terminal diff).
//! - Filter: median time of one filter keystroke (the pure update) over 50,000 users,
//!   typing realistic queries one key at a time, and of a Backspace; the first key of a query
//!   (a full scan of every user) is reported on its own too.
//! - Moves: Enter on a user, `a` on a filtered column, `u`, PgDn.
//! - Memory: the real (release) binary, `cspsync --demo --msp-users 50000`, in a
//!   pseudo-terminal: sign in, open the Users tab, load every user, then VmRSS (and the
//!   peak, VmHWM) from /proc/<pid>/status. The process holds the simulated world too.
//!
//! Targets: ≤ 2 ms median render and keystroke, ≤ 60 MB resident. Timings are printed, never
//! asserted (DESIGN.md §6).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/pty.rs"]
mod pty;

use std::time::{Duration, Instant};

use crossterm::event::KeyCode;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;

use cspsync::sim::generate::staff_users;
use cspsync::sim::util::Rng;
use cspsync::tui::app::{App, Effect, Msg, Setup, Tab};
use cspsync::tui::panes::users::{self, Entry};
use cspsync::tui::render;
use cspsync::tui::testing::{key, send};
use cspsync::tui::theme::Theme;

const USERS: usize = 50_000;
const QUERIES: [&str; 6] = [
    "olivia smith",
    "nguyen",
    "jack.w",
    "chen priya",
    "admin",
    "guest",
];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let n = v.len();
    if n == 0 {
        return Duration::ZERO;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn report(what: &str, v: Vec<Duration>) {
    let n = v.len();
    let max = v.iter().max().copied().unwrap_or_default();
    println!(
        "{what}: median {:.3} ms (max {:.3} ms, {n} samples)",
        ms(median(v)),
        ms(max)
    );
}

/// The App on the Users tab with `USERS` users loaded, as the event loop would have it.
fn loaded_app() -> (App, Duration) {
    let mut rng = Rng::new(42);
    let staff = staff_users(
        &mut rng,
        USERS,
        "bassstrait.com.au",
        "bassstrait.onmicrosoft.com",
    );
    let mut setup = Setup::default();
    setup.settings.microsoft.tenant_name = "Bass Strait Technology Pty Ltd".into();
    setup.settings.microsoft.setup_user_oid = staff[0].id.clone();
    setup.settings.microsoft.setup_user_name = staff[0].user_principal_name.clone();
    setup.secrets.microsoft_refresh_token = Some("rt".into());
    let entries: Vec<Entry> = staff
        .iter()
        .map(|u| Entry {
            oid: u.id.clone(),
            name: u.display_name.clone(),
            upn: u.user_principal_name.clone(),
            disabled: !u.account_enabled,
            guest: u.user_type == "Guest",
        })
        .collect();
    drop(staff);
    let mut app = App::new(setup, false);
    send(&mut app, key(KeyCode::Char('5')));
    assert_eq!(app.tab, Tab::Users);
    let fx = send(&mut app, key(KeyCode::Enter));
    assert!(matches!(
        fx.as_slice(),
        [Effect::Users(users::Cmd::Load { .. })]
    ));
    let generation = app.users.generation;
    let t0 = Instant::now();
    for page in entries.chunks(999) {
        send(
            &mut app,
            Msg::Users(users::Msg::Page {
                generation,
                users: page.to_vec(),
            }),
        );
    }
    send(
        &mut app,
        Msg::Users(users::Msg::Loaded {
            generation,
            at: chrono::Utc::now(),
            result: Ok(()),
            rotated: None,
        }),
    );
    let took = t0.elapsed();
    assert_eq!(app.users.picker.as_ref().map(|p| p.len()), Some(USERS));
    (app, took)
}

fn main() {
    println!("users_picker: {USERS} users (sim::generate::staff_users, seed 42)");
    let (mut app, load) = loaded_app();
    println!(
        "load: 51 pages of 999 through the update + sorting and indexing: {:.1} ms",
        ms(load)
    );
    let theme = Theme::new(true);

    // ----- render at 120x40 ---------------------------------------------------------------
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let _ = term.draw(|f| render::draw(&app, &theme, f));
    let mut pane = Vec::new();
    let mut frame = Vec::new();
    for i in 0..400 {
        // Somewhere else in the list each time, so every frame has new rows to draw.
        send(&mut app, key(KeyCode::PageDown));
        if i % 2 == 0 {
            let t0 = Instant::now();
            term.draw(|f| {
                users::render(&app.users, &app.setup, &theme, f, Rect::new(1, 2, 118, 36))
            })
            .unwrap();
            pane.push(t0.elapsed());
        } else {
            let t0 = Instant::now();
            term.draw(|f| render::draw(&app, &theme, f)).unwrap();
            frame.push(t0.elapsed());
        }
    }
    report("render at 120x40, the Users pane", pane);
    report("render at 120x40, the whole frame", frame);

    // ----- filter keystrokes ----------------------------------------------------------------
    let mut keys = Vec::new();
    let mut first = Vec::new();
    let mut back = Vec::new();
    let mut with_draw = Vec::new();
    for round in 0..20 {
        for q in QUERIES {
            send(&mut app, key(KeyCode::Char('/')));
            assert!(app.users.typing);
            for (i, c) in q.chars().enumerate() {
                let t0 = Instant::now();
                send(&mut app, key(KeyCode::Char(c)));
                let d = t0.elapsed();
                if i == 0 {
                    first.push(d);
                }
                keys.push(d);
                if round == 0 {
                    let t0 = Instant::now();
                    term.draw(|f| render::draw(&app, &theme, f)).unwrap();
                    with_draw.push(d + t0.elapsed());
                }
            }
            for _ in 0..3 {
                let t0 = Instant::now();
                send(&mut app, key(KeyCode::Backspace));
                back.push(t0.elapsed());
            }
            // Esc clears the filter (not timed).
            send(&mut app, key(KeyCode::Esc));
            assert!(!app.users.typing);
        }
    }
    report("filter keystroke over 50,000 users (every key typed)", keys);
    report(
        "  of which the first key of a query (scans all users)",
        first,
    );
    report("  Backspace", back);
    report("  a keystroke and the frame drawn after it", with_draw);
    let shown = {
        send(&mut app, key(KeyCode::Char('/')));
        for c in "smith".chars() {
            send(&mut app, key(KeyCode::Char(c)));
        }
        let n = app.users.picker.as_ref().map_or(0, |p| p.matching());
        send(&mut app, key(KeyCode::Esc));
        n
    };
    println!("  (\"smith\" matches {shown} users)");

    // ----- moves ----------------------------------------------------------------------------
    let mut enter = Vec::new();
    let mut undo = Vec::new();
    let mut pgdn = Vec::new();
    for _ in 0..100 {
        let t0 = Instant::now();
        send(&mut app, key(KeyCode::Enter));
        enter.push(t0.elapsed());
        let t0 = Instant::now();
        send(&mut app, key(KeyCode::Char('u')));
        undo.push(t0.elapsed());
        let t0 = Instant::now();
        send(&mut app, key(KeyCode::PageDown));
        pgdn.push(t0.elapsed());
    }
    report("Enter (one user to Allowed)", enter);
    report("u (undo it)", undo);
    report("PgDn", pgdn);
    let mut all = Vec::new();
    for _ in 0..20 {
        send(&mut app, key(KeyCode::Char('/')));
        for c in "smith".chars() {
            send(&mut app, key(KeyCode::Char(c)));
        }
        send(&mut app, key(KeyCode::Enter));
        let t0 = Instant::now();
        send(&mut app, key(KeyCode::Char('a')));
        all.push(t0.elapsed());
        send(&mut app, key(KeyCode::Char('u')));
        send(&mut app, key(KeyCode::Esc));
    }
    report("a (every \"smith\" shown to Allowed)", all);

    rss();
}

fn vm(pid: u32) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.trim_start_matches(name).trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (utime + stime, clock ticks) of a process.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// Sign in (the simulated browser approves after a few seconds), open the Users tab, load
/// every user; prints the resident memory before and after loading, and the CPU time the
/// app (and `other`, the simulator's process when separate) used while loading.
fn walk(t: &mut pty::Term, what: &str, other: Option<u32>) {
    let wait = |t: &pty::Term, text: &str, secs: u64| {
        t.wait_for(text, Duration::from_secs(secs))
            .unwrap_or_else(|e| panic!("{e}\n--- screen ---\n{}", t.text()))
    };
    let pid = t.pid().expect("pid");
    wait(t, "Press Enter to get a sign-in code", 60);
    t.press(pty::Key::Enter);
    wait(t, "1 Sign in ✓", 60);
    std::thread::sleep(Duration::from_millis(500));
    t.press(pty::Key::Char('5'));
    wait(t, "Press Enter to load the users", 10);
    let (before, _) = vm(pid);
    let cpu0 = (cpu_ticks(pid), other.map(cpu_ticks));
    let t0 = Instant::now();
    t.press(pty::Key::Enter);
    wait(t, "50,000 users in", 600);
    let took = t0.elapsed();
    let cpu1 = (cpu_ticks(pid), other.map(cpu_ticks));
    std::thread::sleep(Duration::from_secs(1));
    let (rss, hwm) = vm(pid);
    println!("  {what}:");
    println!(
        "    loading every page (Enter to the list on screen): {:.1} s",
        took.as_secs_f64()
    );
    // Clock ticks are 1/100 s on Linux.
    let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / 100.0;
    match (cpu0.1, cpu1.1) {
        (Some(a), Some(b)) => println!(
            "    CPU while loading: the app {:.1} s, the simulator {:.1} s",
            secs(cpu0.0, cpu1.0),
            secs(a, b)
        ),
        _ => println!(
            "    CPU while loading (app and simulator together): {:.1} s",
            secs(cpu0.0, cpu1.0)
        ),
    }
    println!("    resident before loading: VmRSS {before}");
    println!("    resident with 50,000 users loaded: VmRSS {rss} (peak VmHWM {hwm})");
    t.press(pty::Key::Char('q'));
    if t.wait_exit(Duration::from_secs(5)).is_none() {
        t.press(pty::Key::Char('y'));
        let _ = t.wait_exit(Duration::from_secs(10));
    }
}

/// Resident memory of the real binary with 50,000 users loaded: the demo (the simulated
/// world runs inside the same process), then the app alone against `cspsync sim` in a
/// process of its own, to tell the app's share from the simulator's.
fn rss() {
    let bin = pty::cspsync_bin();
    println!("memory ({}):", bin.display());
    let mut t = pty::Term::cspsync(&["--demo", "--msp-users", "50000"], 120, 40);
    walk(
        &mut t,
        "cspsync --demo --msp-users 50000 (app + simulated world in one process)",
        None,
    );

    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.toml");
    let mut sim = std::process::Command::new(&bin)
        .args([
            "sim",
            "--msp-users",
            "50000",
            "--faults",
            "approve-after=3",
            "--write-config",
        ])
        .arg(&settings)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start cspsync sim");
    let t0 = Instant::now();
    while !settings.exists() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let dir_arg = dir.path().to_string_lossy().to_string();
    let mut t = pty::Term::cspsync(&["--config-dir", &dir_arg], 120, 40);
    walk(
        &mut t,
        "cspsync against `cspsync sim` in another process (the app alone)",
        Some(sim.id()),
    );
    let (sim_rss, _) = vm(sim.id());
    println!("    (the simulator's own process after serving the pages: VmRSS {sim_rss})");
    let _ = sim.kill();
    let _ = sim.wait();
}
