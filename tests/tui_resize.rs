//! Every tab, with and without the help popup, the quit dialog and a fatal error, drawn at
//! hundreds of terminal sizes from 1x1 to 300x100 (issue 3 §8): never a panic; from 80x24 up
//! the tab bar and the footer are there; below it the "terminal too small" notice instead of a
//! broken layout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cspsync::tui::app::{App, Modal, Notice, Setup, Tab};
use cspsync::tui::render::{MIN_HEIGHT, MIN_WIDTH};
use cspsync::tui::testing::screen;

/// A small deterministic generator (xorshift64*): the same sizes on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn between(&mut self, lo: u16, hi: u16) -> u16 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u16
    }
}

/// How many edge sizes `sizes` starts with.
const EDGES: usize = 11;

/// The edges, then random sizes in 1..=300 x 1..=100.
fn sizes(n: usize) -> Vec<(u16, u16)> {
    let mut v = vec![
        (1, 1),
        (2, 1),
        (1, 2),
        (300, 100),
        (300, 1),
        (1, 100),
        (MIN_WIDTH, MIN_HEIGHT),
        (MIN_WIDTH - 1, MIN_HEIGHT),
        (MIN_WIDTH, MIN_HEIGHT - 1),
        (MIN_WIDTH + 1, MIN_HEIGHT + 1),
        (120, 40),
    ];
    assert_eq!(v.len(), EDGES);
    let mut rng = Rng(0x5EED_CAFE_F00D_0003);
    while v.len() < n {
        v.push((rng.between(1, 300), rng.between(1, 100)));
    }
    v
}

fn modals() -> Vec<Option<Modal>> {
    vec![
        None,
        Some(Modal::Help),
        Some(Modal::ConfirmQuit),
        Some(Modal::Fatal(
            "a background task failed unexpectedly (task 7 panicked with a long message that has to wrap inside the popup); see the log file".into(),
        )),
    ]
}

fn app(tab: Tab, modal: Option<Modal>, demo: bool) -> App {
    let mut a = App::new(Setup::default(), demo);
    a.tab = tab;
    a.modal = modal;
    a
}

fn rows(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn every_tab_and_popup_draws_at_every_size_without_panicking() {
    let sizes = sizes(300);
    let mut drawn = 0usize;
    for (i, tab) in Tab::ALL.into_iter().enumerate() {
        for modal in modals() {
            // Alternate demo and normal, and a long notice, to vary the bars.
            let mut a = app(tab, modal.clone(), i % 2 == 0);
            if i % 3 == 0 {
                a.notice = Some(Notice {
                    text: "Not saved: cannot write /home/someone/.config/cspsync/settings.toml: permission denied (os error 13)".into(),
                    error: true,
                });
            }
            // Every size for the bare panes; the edges and every third under a popup.
            let chosen = sizes
                .iter()
                .enumerate()
                .filter(|(n, _)| modal.is_none() || *n < EDGES || n % 3 == 0);
            for (_, &(w, h)) in chosen {
                let s = screen(&a, w, h);
                let r = rows(&s);
                assert_eq!(r.len(), usize::from(h), "{tab:?} at {w}x{h}");
                assert!(
                    r.iter().all(|l| l.chars().count() == usize::from(w)),
                    "{tab:?} at {w}x{h}: every row is exactly the width"
                );
                if w >= MIN_WIDTH && h >= MIN_HEIGHT {
                    assert!(
                        r[0].contains("1 Sign in"),
                        "{tab:?} {modal:?} at {w}x{h}: tab bar missing:\n{s}"
                    );
                    assert!(
                        r[1].contains('─'),
                        "{tab:?} at {w}x{h}: the rule under the tabs"
                    );
                    let footer = r[usize::from(h) - 1];
                    let first = a.hints().first().map(|h| h.key).unwrap();
                    assert!(
                        footer.contains(first),
                        "{tab:?} {modal:?} at {w}x{h}: footer missing `{first}`:\n{s}"
                    );
                    assert!(!s.contains("Terminal too small"), "{w}x{h}:\n{s}");
                } else {
                    assert!(
                        !s.contains("1 Sign in"),
                        "{tab:?} at {w}x{h}: no broken layout below the minimum:\n{s}"
                    );
                    if w >= 20 {
                        assert!(
                            r[0].starts_with("Terminal too small"),
                            "{tab:?} {modal:?} at {w}x{h}:\n{s}"
                        );
                    } else {
                        // Even one cell says something.
                        assert!(r[0].starts_with('T'), "{w}x{h}:\n{s}");
                    }
                }
                drawn += 1;
            }
        }
    }
    let per_popup = (0..sizes.len())
        .filter(|n| *n < EDGES || n % 3 == 0)
        .count();
    assert_eq!(
        drawn,
        Tab::ALL.len() * (sizes.len() + (modals().len() - 1) * per_popup)
    );
}

#[test]
fn the_too_small_notice_names_the_size_and_the_minimum() {
    let a = app(Tab::SignIn, None, true);
    let s = screen(&a, 79, 30);
    let text = s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(text.contains("Terminal too small: 79x30."), "{s}");
    assert!(text.contains("at least 80x24"), "{s}");
    assert!(text.contains("q quits"), "{s}");
}

#[test]
fn at_80x24_tabs_footer_and_popups_are_readable() {
    for tab in Tab::ALL {
        let s = screen(&app(tab, None, false), 80, 24);
        let r = rows(&s);
        assert!(r[0].contains("1 Sign in") && r[0].contains("4 PSA"), "{s}");
        let footer = r[23];
        assert!(
            footer.contains("? help") && footer.contains("q quit"),
            "{tab:?}: {footer}"
        );
    }
    // The whole key help fits.
    let s = screen(&app(Tab::Distributor, Some(Modal::Help), true), 80, 24);
    for k in ["1-7", "Tab / Shift-Tab", "Ctrl-R", "Ctrl-U", "q / Ctrl-C"] {
        assert!(s.contains(k), "help at 80x24 lacks {k}:\n{s}");
    }
    // The quit question and its answers.
    let s = screen(&app(Tab::Psa, Some(Modal::ConfirmQuit), true), 80, 24);
    assert!(
        s.contains("Quit?") && s.contains("quit anyway") && s.contains("stay"),
        "{s}"
    );
}

/// Every tab's title should be on the tab bar at 80 columns.
#[test]
fn at_80_columns_every_tab_title_is_on_the_tab_bar() {
    for demo in [false, true] {
        let s = screen(&app(Tab::SignIn, None, demo), 80, 24);
        let bar = rows(&s)[0].to_string();
        for (i, t) in Tab::ALL.iter().enumerate() {
            assert!(
                bar.contains(&format!("{} {}", i + 1, t.title())),
                "demo={demo}: `{}` missing from the tab bar: {bar}",
                t.title()
            );
        }
    }
}
