//! The Sync tab in the real binary, in a pseudo-terminal, with the keyboard alone (issue 6 §6):
//! set the demo up, make the plan, review it, apply it after the confirmation (typing `yes` for
//! the cautioned write), watch the progress end in the summary, and re-run Reconcile from there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::pty::{Key, Term};
use support::walk::{self, START, STEP, wait};

/// A 400-customer fetch at the slower PSA.
const LONG: Duration = Duration::from_secs(120);

#[test]
fn plan_apply_progress_done_in_the_demo() {
    let mut t = Term::demo(&[], 120, 40, START).unwrap();
    walk::set_up_through_psa(&t);

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

    // The summary (the demo's two writes take a moment: the progress view is watched in the
    // test below).
    wait(&t, "Finished");
    let screen = t.text();
    assert!(
        screen.contains("2 done · 0 already done · 0 failed · 0 skipped"),
        "{screen}"
    );
    assert!(screen.contains("2 of 2"), "{screen}");
    assert!(
        screen.contains("Reconcile should now show these lines in line"),
        "{screen}"
    );
    wait(&t, "7 Sync ✓");

    // The audit log has the writes.
    t.press(Key::Char('l'));
    wait(&t, "Audit log");
    t.press(Key::Char('l'));

    // R: the Reconcile tab runs again, and the synced lines are in line.
    t.press(Key::Char('R'));
    wait(&t, "lines audited");

    walk::quit(&mut t);
}

/// A slower PSA and more customers: the progress view runs for a while (gauge, customers,
/// rate, log). `q` asks first; `y` stops the apply cleanly (writes in flight finish, nothing new
/// starts) and then quits: the audit log ends with the apply's summary record.
#[test]
fn progress_then_quitting_while_applying_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().to_str().unwrap().to_string();
    let mut t = Term::demo(
        &[
            "--config-dir",
            &config,
            "--customers",
            "400",
            "--faults",
            "connectwise.latency=150ms",
        ],
        120,
        40,
        START,
    )
    .unwrap();
    walk::sign_in(&t);
    walk::distributor(&t);
    wait(&t, "Authorise");
    t.press(Key::Enter);
    walk::wait_long(&t, "3 Partner Center ✓", LONG);
    walk::psa_connectwise(&t);
    t.press(Key::Char('7'));
    t.press(Key::Enter);
    walk::wait_long(&t, "writes selected", LONG);
    t.press(Key::Char('a'));
    walk::confirm_apply(&t, STEP);
    // The progress view: status, gauge, customers, log.
    wait(&t, "Applying to ConnectWise Manage");
    wait(&t, "Customers (");
    wait(&t, "running  ");
    wait(&t, "Log (");
    wait(&t, " ✓ ");
    t.press(Key::Char('q'));
    wait(&t, "Quit while applying?");
    t.press(Key::Char('y'));
    let status = t
        .wait_exit(LONG)
        .expect("cspsync exits once the apply stopped");
    assert!(status.success(), "{status:?}");
    t.check_restored().unwrap();
    // The engine ended its apply (it was not cut off): its summary is the last record.
    let log = cspsync::audit::read(
        &cspsync::config::ConfigDir {
            dir: dir.path().to_path_buf(),
        },
        None,
    )
    .unwrap();
    let last = log.last().expect("audit records");
    assert_eq!(last.action, cspsync::audit::SYNC_APPLY, "{last:?}");
    assert!(
        log.iter()
            .any(|e| e.action == cspsync::audit::SYNC_WRITE && e.details["result"] == "done"),
        "some writes were done before the cancel"
    );
}
