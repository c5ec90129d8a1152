//! The Sync tab in the real binary, in a pseudo-terminal, with the keyboard alone (issue 6 §6):
//! set the demo up, make the plan, review it, apply it after the confirmation (typing `yes` for
//! the cautioned write), watch the progress end in the summary, and re-run Reconcile from there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::pty::{Key, Term};

/// The first start of a debug binary on a busy machine; then each step.
const START: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_secs(30);

fn wait(t: &Term, text: &str) {
    t.wait_for(text, STEP)
        .unwrap_or_else(|e| panic!("{e}\n--- screen ---\n{}", t.text()));
}

/// Sign in, test the Dicker Data codes, authorise Partner Center and connect ConnectWise: what
/// a plan needs.
fn set_up(t: &Term) {
    wait(t, "Press Enter to get a sign-in code");
    t.press(Key::Enter);
    wait(t, "1 Sign in ✓");
    wait(t, "Test connection");
    t.press(Key::Enter);
    wait(t, "2 Distributor ✓");
    wait(t, "Authorise");
    t.press(Key::Enter);
    wait(t, "3 Partner Center ✓");
    t.press(Key::Char('4'));
    wait(t, "Connect the PSA you bill from");
    t.press(Key::Enter);
    t.press(Key::Enter);
    wait(t, "4 PSA ✓");
}

#[test]
fn plan_apply_progress_done_in_the_demo() {
    let mut t = Term::demo(&[], 120, 40, START).unwrap();
    set_up(&t);

    // The Sync tab: what it does, then the plan.
    t.press(Key::Char('7'));
    wait(&t, "Dicker Data is the source of truth");
    t.press(Key::Enter);
    wait(&t, "writes selected");
    let screen = t.text();
    assert!(screen.contains("Plan for ConnectWise Manage"), "{screen}");
    assert!(screen.contains("⚠ 1 need confirmation"), "{screen}");

    // Apply: the confirmation states the writes and the PSA; the cautioned one needs `yes`.
    t.press(Key::Char('a'));
    wait(&t, "Apply 2 writes to ConnectWise Manage for 2 customers?");
    wait(&t, "1 of them needs your explicit confirmation");
    t.type_text("yes");
    t.press(Key::Enter);

    // Progress, then the summary.
    wait(&t, "Finished");
    let screen = t.text();
    assert!(screen.contains("2 done · 0 already done · 0 failed · 0 skipped"), "{screen}");
    assert!(screen.contains("2 of 2"), "{screen}");
    assert!(screen.contains("Reconcile should now show these lines in line"), "{screen}");
    wait(&t, "7 Sync ✓");

    // The audit log has the writes.
    t.press(Key::Char('l'));
    wait(&t, "Audit log");
    t.press(Key::Char('l'));

    // R: the Reconcile tab runs again, and the synced lines are in line.
    t.press(Key::Char('R'));
    wait(&t, "lines audited");

    t.press(Key::Char('q'));
    let status = t.wait_exit(STEP).expect("cspsync exits");
    assert!(status.success(), "{status:?}");
    t.check_restored().unwrap();
}
