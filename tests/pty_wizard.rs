//! The whole demo setup in the real binary, in a pseudo-terminal, with the keyboard alone
//! (issue 3 §8): sign in (the simulated browser approves the code), test the Dicker Data codes,
//! authorise Partner Center, connect ConnectWise (or Xero, with its contact and accounts), allow
//! a colleague in the Users tab — every step marked done — and quit with the terminal restored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::pty::{Key, Term};
use support::walk::{self, START, quit, wait};

#[test]
fn a_newcomer_completes_the_demo_setup_with_the_keyboard() {
    let mut t = Term::demo(&[], 120, 40, START).unwrap();

    // 1. Sign in (the simulated browser approves the code; the wizard moves on by itself),
    // 2. test the Distributor's codes, 3. authorise Partner Center, 4. connect ConnectWise
    // (the wizard then moves on to the Users step by itself).
    walk::sign_in(&t);
    walk::distributor(&t);
    walk::partner_center(&t);
    walk::psa_connectwise(&t);

    // 5. Users: load the tenant's users, allow one colleague, save after the confirmation.
    wait(&t, "Press Enter to load");
    t.press(Key::Enter);
    // Every page is in ("✓ 25 users in …, loaded hh:mm UTC").
    wait(&t, ", loaded ");
    t.press(Key::Enter);
    // The admin is always allowed: one colleague more makes two.
    wait(&t, "Moved 1 user to Allowed");
    wait(&t, "Allowed (2)");
    t.press(Key::Char('s'));
    t.press(Key::Char('y'));
    wait(&t, "5 Users ✓");

    // Every wizard step is done.
    for step in [
        "1 Sign in ✓",
        "2 Distributor ✓",
        "3 Partner Center ✓",
        "4 PSA ✓",
    ] {
        assert!(t.row(0).contains(step), "{step}: {}", t.row(0));
    }

    // Quit: nothing unsaved, so no question; the terminal is handed back.
    quit(&mut t);
}

#[test]
fn xero_is_set_up_with_the_keyboard() {
    let mut t = Term::demo(&[], 120, 40, START).unwrap();
    wait(&t, "Press Enter to get a sign-in code");
    t.press(Key::Char('4'));
    wait(&t, "Connect the PSA you bill from");
    // The selector row has the focus: → → picks Xero; Enter moves to its button, Enter
    // authenticates (the demo's consent is automatic) and the organisation and the Dicker
    // Data contact are chosen for us.
    t.keys(&[Key::Right, Key::Right]);
    wait(&t, "Authenticate with Xero");
    t.press(Key::Enter);
    t.press(Key::Enter);
    wait(&t, "Dicker Data Limited");
    wait(&t, "(choose one of");
    // Expense account: open the list, filter by typing, choose.
    t.press(Key::Enter);
    wait(&t, "Choose the expense account");
    t.type_text("310");
    t.press(Key::Enter);
    wait(&t, "310  Cost of Goods Sold");
    // Revenue account likewise; then Save.
    t.press(Key::Enter);
    wait(&t, "Choose the revenue account");
    t.type_text("200");
    t.press(Key::Enter);
    wait(&t, "200  Sales");
    t.press(Key::Enter);
    wait(&t, "4 PSA ✓");
    quit(&mut t);
}
