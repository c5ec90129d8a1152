//! The real binary in a pseudo-terminal (issue 3 §1, §8): `cspsync --demo` draws its tab bar,
//! switches tabs with 1–7 and Tab/Shift-Tab, opens and closes the help, and hands the terminal
//! back as it found it — on `q`, on Ctrl-C and on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::pty::{Key, Term, bold_runs};

/// Generous: the first start of a debug binary on a busy machine.
const START: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_secs(5);

fn start_demo(cols: u16, rows: u16) -> Term {
    let t = Term::demo(&[], cols, rows, START).unwrap();
    t.wait_until("the alternate screen", STEP, |s| s.alternate_screen())
        .unwrap();
    t
}

/// The active tab: the bold run on the tab bar.
fn active_tab(t: &Term) -> String {
    t.bold_runs(0).into_iter().next().unwrap_or_default()
}

fn wait_active(t: &Term, label: &str) {
    t.wait_until(&format!("tab `{label}` active"), STEP, |s| {
        bold_runs(s, 0)
            .first()
            .is_some_and(|b| b.starts_with(label))
    })
    .unwrap_or_else(|e| panic!("{e}\nbold on the tab bar: {:?}", t.bold_runs(0)));
}

#[test]
fn demo_tabs_help_and_quit() {
    let mut t = start_demo(120, 40);
    // Demo mode says so on the footer's key line (the bottom row).
    t.wait_until("DEMO on the footer", STEP, |s| {
        s.contents()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("DEMO"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", t.row(39)));
    assert!(
        t.with_screen(|s| s.hide_cursor()),
        "the cursor is hidden while the app runs"
    );
    assert!(
        active_tab(&t).starts_with("1 Sign in"),
        "{:?}",
        t.bold_runs(0)
    );

    // Number keys go straight to a tab.
    for (key, label) in [
        ('2', "2 Distributor"),
        ('3', "3 Partner Center"),
        ('4', "4 PSA"),
        ('5', "5 Users"),
        ('6', "6 Reconcile"),
        ('7', "7 Sync"),
        ('1', "1 Sign in"),
    ] {
        t.press(Key::Char(key));
        wait_active(&t, label);
    }
    // Tab and Shift-Tab step through them, wrapping around.
    t.press(Key::Tab);
    wait_active(&t, "2 Distributor");
    t.press(Key::BackTab);
    wait_active(&t, "1 Sign in");
    t.press(Key::BackTab);
    wait_active(&t, "7 Sync");
    t.press(Key::Tab);
    wait_active(&t, "1 Sign in");

    // `?` opens the key help; any key closes it.
    t.press(Key::Char('?'));
    t.wait_for("q / Ctrl-C", STEP).unwrap();
    t.wait_for("any key close", STEP).unwrap();
    t.press(Key::Esc);
    t.wait_gone("q / Ctrl-C", STEP).unwrap();
    // Closing the help did not switch tabs or quit.
    wait_active(&t, "1 Sign in");

    t.press(Key::Char('q'));
    let status = t.wait_exit(STEP).expect("q quits");
    assert!(status.success(), "exit status {status:?}");
    t.check_restored().unwrap();
}

#[test]
fn first_frame_at_80x24_has_the_tab_bar_and_the_footer() {
    let mut t = start_demo(80, 24);
    t.wait_for("? help", STEP).unwrap();
    assert!(t.row(23).contains("q quit"), "footer: {}", t.row(23));
    assert!(t.row(1).contains('─'), "{}", t.text());
    t.press(Key::Char('q'));
    assert!(t.wait_exit(STEP).expect("q quits").success());
    t.check_restored().unwrap();
}

#[test]
fn ctrl_c_quits_and_restores_the_terminal() {
    let mut t = start_demo(100, 30);
    t.press(Key::Ctrl('c'));
    let status = t.wait_exit(STEP).expect("Ctrl-C quits");
    assert!(status.success(), "exit status {status:?}");
    t.check_restored().unwrap();
}

#[cfg(unix)]
#[test]
fn sigterm_restores_the_terminal() {
    let mut t = start_demo(100, 30);
    t.press(Key::Char('?'));
    t.wait_for("q / Ctrl-C", STEP).unwrap();
    t.signal("TERM");
    let status = t.wait_exit(STEP).expect("SIGTERM ends the app");
    assert!(status.success(), "a clean exit after SIGTERM: {status:?}");
    t.check_restored().unwrap();
}

#[test]
fn shrinking_below_80x24_shows_the_notice_and_growing_brings_the_app_back() {
    let mut t = start_demo(100, 30);
    t.resize(60, 20);
    t.wait_for("Terminal too small: 60x20", STEP).unwrap();
    t.resize(90, 26);
    t.wait_for("1 Sign in", STEP).unwrap();
    t.wait_gone("Terminal too small", STEP).unwrap();
    t.press(Key::Char('q'));
    assert!(t.wait_exit(STEP).expect("q quits").success());
    t.check_restored().unwrap();
}

/// Cells drawn with a colour (foreground or background other than the terminal's default).
fn coloured_cells(t: &Term) -> usize {
    t.with_screen(|s| {
        let (rows, cols) = s.size();
        let mut n = 0;
        for r in 0..rows {
            for c in 0..cols {
                if let Some(cell) = s.cell(r, c)
                    && (cell.fgcolor() != vt100::Color::Default
                        || cell.bgcolor() != vt100::Color::Default)
                {
                    n += 1;
                }
            }
        }
        n
    })
}

/// NO_COLOR (no-color.org) and `--no-color` draw without any colour; by default the active
/// tab and the keys are coloured.
#[test]
fn no_color_is_respected() {
    let coloured = Term::demo(&[], 100, 30, START).unwrap();
    coloured
        .wait_until("a coloured cell", STEP, |_| true)
        .unwrap();
    assert!(coloured_cells(&coloured) > 0, "colours by default");

    let bin = support::pty::cspsync_bin();
    let plain = Term::spawn(&bin, &["--demo"], 100, 30, &[("NO_COLOR", "1")]);
    plain.wait_for("1 Sign in", START).unwrap();
    plain.wait_for("q quit", STEP).unwrap();
    assert_eq!(coloured_cells(&plain), 0, "NO_COLOR: no colour at all");

    let flag = Term::demo(&["--no-color"], 100, 30, START).unwrap();
    flag.wait_for("q quit", STEP).unwrap();
    assert_eq!(coloured_cells(&flag), 0, "--no-color: no colour at all");
}
