//! The shell around the panes: tab bar, footer, help, quit confirmation, the tabs built by later
//! versions, and the "terminal too small" notice — at 80x24 and 120x40.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crossterm::event::KeyCode;
use cspsync::tui::app::{App, Modal, Msg, Setup, Tab};
use cspsync::tui::testing::{ctrl, key, screen, send};

fn app() -> App {
    App::new(Setup::default(), false)
}

fn snap(name: &str, app: &App) {
    for (w, h) in [(80, 24), (120, 40)] {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(app, w, h));
    }
}

#[test]
fn help_lists_every_key() {
    let mut a = app();
    send(&mut a, key(KeyCode::Char('?')));
    assert_eq!(a.modal, Some(Modal::Help));
    snap("help", &a);
    // Any key closes it.
    send(&mut a, key(KeyCode::Char('x')));
    assert_eq!(a.modal, None);
}

#[test]
fn later_tabs_say_what_they_will_do() {
    let mut a = app();
    send(&mut a, key(KeyCode::Char('7')));
    assert_eq!(a.tab, Tab::Sync);
    snap("later_sync", &a);
}

#[test]
fn tab_and_shift_tab_cycle_through_every_tab() {
    let mut a = app();
    let mut seen = vec![a.tab];
    for _ in 0..7 {
        send(&mut a, key(KeyCode::Tab));
        seen.push(a.tab);
    }
    assert_eq!(&seen[..7], &Tab::ALL);
    assert_eq!(seen[7], seen[0], "wraps around");
    send(&mut a, key(KeyCode::BackTab));
    assert_eq!(a.tab, Tab::Sync);
}

#[test]
fn quitting_with_nothing_unsaved_does_not_ask() {
    let mut a = app();
    send(&mut a, key(KeyCode::Char('q')));
    assert!(a.quit);
    let mut a = app();
    send(&mut a, ctrl('c'));
    assert!(a.quit);
}

#[test]
fn quitting_with_unsaved_changes_asks_first() {
    let mut a = app();
    // Type into the Distributor's Account Code (Enter edits the focused field).
    send(&mut a, key(KeyCode::Char('2')));
    send(&mut a, key(KeyCode::Up));
    send(&mut a, key(KeyCode::Up));
    send(&mut a, key(KeyCode::Up));
    send(&mut a, key(KeyCode::Enter));
    send(&mut a, key(KeyCode::Char('9')));
    send(&mut a, key(KeyCode::Esc));
    assert!(a.unsaved(), "a typed value not yet tested is unsaved");
    send(&mut a, key(KeyCode::Char('q')));
    assert_eq!(a.modal, Some(Modal::ConfirmQuit));
    assert!(!a.quit);
    snap("confirm_quit", &a);
    // n stays; q again and y quits.
    send(&mut a, key(KeyCode::Char('n')));
    assert!(a.modal.is_none() && !a.quit);
    send(&mut a, key(KeyCode::Char('q')));
    send(&mut a, key(KeyCode::Char('y')));
    assert!(a.quit);
}

#[test]
fn a_fatal_error_is_shown_then_any_key_quits() {
    let mut a = app();
    send(
        &mut a,
        Msg::Fatal("a background task failed unexpectedly; see the log file".into()),
    );
    snap("fatal", &a);
    send(&mut a, key(KeyCode::Enter));
    assert!(a.quit);
}

#[test]
fn too_small_says_what_is_needed() {
    let a = app();
    insta::assert_snapshot!("too_small_79x24", screen(&a, 79, 24));
    insta::assert_snapshot!("too_small_40x10", screen(&a, 40, 10));
}
