//! The Reconcile tab in the real binary, in a pseudo-terminal, with the keyboard alone (issue 5
//! §8): set the demo up, open Reconcile, run it and see the mismatches the demo world planted
//! arrive, open a line's explanation (the APIs each number came from), export CSV into the
//! data directory, and quit with the terminal restored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use cspsync::cli::WorldArgs;
use support::pty::{Key, Term};
use support::walk::{self, START, quit, wait, wait_long};

/// The world every demo run generates (the same seed each time).
fn world() -> cspsync::sim::World {
    cspsync::run::build_world(&WorldArgs::default()).unwrap()
}

fn customer_name(w: &cspsync::sim::World, tenant: &str) -> String {
    w.customers
        .iter()
        .find(|c| c.tenant_id == tenant)
        .map(|c| c.company_name.clone())
        .unwrap_or_else(|| panic!("no customer {tenant}"))
}

#[test]
fn reconcile_in_the_demo_shows_the_planted_mismatches_explains_and_exports() {
    let w = world();
    // A mismatch the demo world planted for ConnectWise: the customer it was planted on.
    let overbilled = w
        .planted
        .iter()
        .find(|p| {
            p.status == "psa_overbilled" && p.psa.as_deref().is_none_or(|k| k == "connectwise")
        })
        .expect("the demo plants an overbilled line");
    let name = customer_name(&w, &overbilled.customer_tenant_id);
    // The table's customer column is wide enough for the start of the name at 120 columns.
    let shown: String = name.chars().take(15).collect();

    let dir = tempfile::tempdir().unwrap();
    let mut t = Term::demo(
        &["--config-dir", dir.path().to_str().unwrap()],
        120,
        40,
        START,
    )
    .unwrap();
    walk::set_up_through_psa(&t);

    // Open Reconcile and run it: the progress, then the lines.
    t.press(Key::Char('6'));
    wait(
        &t,
        "Press Enter to fetch Dicker Data, Microsoft and the PSA",
    );
    t.press(Key::Enter);
    wait(&t, &shown);
    wait_long(&t, "6 Reconcile ✓", Duration::from_secs(60));
    let screen = t.text();
    let row = screen
        .lines()
        .find(|l| l.contains(&shown))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(row.contains("overbilled"), "{row}");
    assert!(
        screen.contains("lines audited") && screen.contains("a month at risk"),
        "{screen}"
    );
    assert!(screen.contains("unmapped: "), "{screen}");

    // Its explanation: filter to the customer, keep the filter, Enter on its line.
    t.press(Key::Char('/'));
    t.type_text(&name.to_lowercase().chars().take(10).collect::<String>());
    wait(&t, "1 line(s) match");
    t.press(Key::Enter);
    t.press(Key::Enter);
    wait(&t, "Where each number comes from");
    wait(&t, "Money at risk");
    wait(&t, "overbilled: ");
    // The sources name the APIs and the records read.
    wait(&t, "Partner Center subscription");
    wait(&t, "Dicker Data CSP subscription line");
    wait(&t, "Linked to ");
    t.press(Key::Esc);
    wait(&t, "Filter: ");
    t.press(Key::Esc);
    t.wait_gone("Filter: ", walk::STEP).unwrap();

    // Export CSV: the file is in the data directory (here the demo's --config-dir).
    t.press(Key::Char('e'));
    wait(&t, "Exported to");
    let csv = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("reconcile-") && n.ends_with(".csv"))
        })
        .unwrap_or_else(|| panic!("no CSV in {}", dir.path().display()));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text.starts_with("customer_tenant_id,customer_name,product_id,"),
        "{text}"
    );
    // Every mismatch planted for ConnectWise (or for no PSA) is a row with its status.
    for p in w
        .planted
        .iter()
        .filter(|p| p.psa.as_deref().is_none_or(|k| k == "connectwise"))
    {
        let found = text.lines().any(|l| {
            l.contains(&p.customer_tenant_id)
                && (p.product_id.is_empty() || l.contains(&p.product_id))
                && l.contains(&p.status)
        });
        assert!(
            found,
            "planted {} {} {} not in the CSV:\n{text}",
            p.status, p.customer_tenant_id, p.product_id
        );
    }

    quit(&mut t);
}
