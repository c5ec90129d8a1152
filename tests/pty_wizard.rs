//! The whole demo setup in the real binary, in a pseudo-terminal, with the keyboard alone
//! (issue 3 §8): sign in (the simulated browser approves the code), test the Dicker Data codes,
//! authorise Partner Center, connect ConnectWise (or Xero, with its contact and accounts), allow
//! a colleague in the Users tab — every step marked done — and quit with the terminal restored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::pty::{Key, Term};

/// The first start of a debug binary on a busy machine; then each step.
const START: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_secs(20);

fn wait(t: &Term, text: &str) {
    t.wait_for(text, STEP)
        .unwrap_or_else(|e| panic!("{e}\n--- screen ---\n{}", t.text()));
}

#[test]
fn a_newcomer_completes_the_demo_setup_with_the_keyboard() {
    let mut t = Term::demo(&[], 120, 40, START).unwrap();
    wait(&t, "Press Enter to get a sign-in code");

    // 1. Sign in: a code, then the simulated browser approves it within seconds.
    t.press(Key::Enter);
    wait(&t, "Enter this code");
    wait(&t, "1 Sign in ✓");
    // The wizard moved on by itself.
    wait(&t, "Test connection");

    // 2. Distributor: the demo's codes are filled in; test them.
    t.press(Key::Enter);
    wait(&t, "2 Distributor ✓");

    // 3. Partner Center: authorise and see the customers.
    wait(&t, "Authorise");
    t.press(Key::Enter);
    wait(&t, "3 Partner Center ✓");
    wait(&t, "12 customers found");

    // 4. PSA: ConnectWise, its fields filled in; Enter goes to Test connection, Enter runs it.
    t.press(Key::Char('4'));
    wait(&t, "Connect the PSA you bill from");
    t.press(Key::Enter);
    t.press(Key::Enter);
    // Done: the wizard moves on to the Users step by itself.
    wait(&t, "4 PSA ✓");

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
    t.press(Key::Char('q'));
    let status = t.wait_exit(STEP).expect("cspsync exits");
    assert!(status.success(), "{status:?}");
    t.check_restored().unwrap();
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
    t.press(Key::Char('q'));
    let status = t.wait_exit(STEP).expect("cspsync exits");
    assert!(status.success(), "{status:?}");
    t.check_restored().unwrap();
}
