//! Walking the demo setup in the real binary with the keyboard, step by step: shared by the
//! pseudo-terminal tests (tests/pty_wizard.rs, tests/pty_reconcile.rs).
#![allow(dead_code)]

use std::time::Duration;

use super::pty::{Key, Term};

/// The first start of a debug binary on a busy machine; then each step.
pub const START: Duration = Duration::from_secs(30);
pub const STEP: Duration = Duration::from_secs(20);

/// Wait for `text` on screen; fails the test with the screen.
pub fn wait(t: &Term, text: &str) {
    wait_long(t, text, STEP);
}

/// [`wait`] with its own time limit.
pub fn wait_long(t: &Term, text: &str, timeout: Duration) {
    t.wait_for(text, timeout)
        .unwrap_or_else(|e| panic!("{e}\n--- screen ---\n{}", t.text()));
}

/// Answer the Sync tab's confirmation of an apply: type `yes` where cautioned writes ask for
/// it, else press `y`. The popup has `timeout` to show.
pub fn confirm_apply(t: &Term, timeout: Duration) {
    // The popup's last line: `Confirm:` (cautions: type yes) or `y apply`.
    t.wait_until("the confirmation", timeout, |s| {
        s.contents().contains("Confirm:") || s.contents().contains("y apply")
    })
    .unwrap_or_else(|e| panic!("{e}"));
    if t.text().contains("Confirm:") {
        t.type_text("yes");
        t.press(Key::Enter);
    } else {
        t.press(Key::Char('y'));
    }
}

/// Step 1, sign in: a code, then the simulated browser approves it within seconds; the
/// wizard moves on to the Distributor step by itself.
pub fn sign_in(t: &Term) {
    wait(t, "Press Enter to get a sign-in code");
    t.press(Key::Enter);
    wait(t, "Enter this code");
    wait(t, "1 Sign in ✓");
    wait(t, "Test connection");
}

/// Step 2, Distributor: the demo's codes are filled in; test them.
pub fn distributor(t: &Term) {
    t.press(Key::Enter);
    wait(t, "2 Distributor ✓");
}

/// Step 3, Partner Center: authorise and see the demo's customers.
pub fn partner_center(t: &Term) {
    wait(t, "Authorise");
    t.press(Key::Enter);
    wait(t, "3 Partner Center ✓");
    wait(t, "12 customers found");
}

/// Step 4, PSA: ConnectWise, its fields filled in; Enter goes to Test connection, Enter runs
/// it; done, the wizard moves on to the Users step.
pub fn psa_connectwise(t: &Term) {
    t.press(Key::Char('4'));
    wait(t, "Connect the PSA you bill from");
    t.press(Key::Enter);
    t.press(Key::Enter);
    wait(t, "4 PSA ✓");
}

/// Steps 1–4 from the first screen: what reconciling needs.
pub fn set_up_through_psa(t: &Term) {
    sign_in(t);
    distributor(t);
    partner_center(t);
    psa_connectwise(t);
}

/// `q`: nothing unsaved, so no question; the program exits 0 and hands the terminal back.
pub fn quit(t: &mut Term) {
    t.press(Key::Char('q'));
    let status = t.wait_exit(STEP).expect("cspsync exits");
    assert!(status.success(), "{status:?}");
    t.check_restored().unwrap_or_else(|e| panic!("{e}"));
}
