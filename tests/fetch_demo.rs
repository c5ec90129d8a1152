//! The whole fetch, through the real clients, against the simulated world.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cspsync::demo::{self, PsaKind};
use cspsync::engine::fetch::{self, FetchProgress, PsaSnapshot};
use cspsync::sim::{self, FaultSpec};

mod support;

#[tokio::test]
async fn fetch_every_psa() {
    let w = support::sim::generated(12, 42);
    let handle = support::sim::start(&w).await;
    for psa in [PsaKind::ConnectWise, PsaKind::Autotask, PsaKind::Xero] {
        let sources = demo::connect(&handle, &w, psa)
            .await
            .unwrap_or_else(|e| panic!("{psa:?}: {e}"));
        let (tx, rx) = tokio::sync::watch::channel(FetchProgress::default());
        let snap = fetch::fetch(&sources, &tx).await.unwrap();
        assert_eq!(snap.customers.len(), w.customers.len());
        for c in &snap.customers {
            let subs = c.subscriptions.as_ref().unwrap_or_else(|e| panic!("{e}"));
            let wc = w
                .customers
                .iter()
                .find(|x| x.tenant_id == c.customer.id)
                .unwrap();
            assert_eq!(subs.len(), wc.subscriptions.len());
            match (&c.graph, wc.gdap_active) {
                (Ok(_), true) => {}
                (Err(_), false) => {}
                (g, gdap) => panic!("graph {g:?} with gdap {gdap}"),
            }
        }
        assert_eq!(
            snap.dicker_data.as_ref().unwrap().len(),
            w.dicker_data.subscriptions.len()
        );
        match snap.psa.unwrap().unwrap() {
            PsaSnapshot::ConnectWise(cw) => {
                assert_eq!(cw.companies.len(), w.connectwise.companies.len());
                let n: usize = cw.additions.values().map(Vec::len).sum();
                assert_eq!(n, w.connectwise.additions.len());
            }
            PsaSnapshot::Autotask(at) => {
                assert_eq!(
                    at.contract_services.len(),
                    w.autotask.contract_services.len()
                );
                // Exactly the unit records in force today (§6.3), counted from the world.
                let today = chrono::Utc::now().date_naive();
                let expected = match cspsync::engine::bench::Workload::of(&w, psa, today).psa {
                    cspsync::engine::bench::PsaWorkload::Autotask { current_units, .. } => {
                        current_units
                    }
                    other => panic!("{other:?}"),
                };
                assert!(expected > 0);
                assert_eq!(at.current_units.len() as u64, expected);
            }
            PsaSnapshot::Xero(x) => {
                // Archived contacts are left out unless asked for (§7.4 includeArchived).
                let active = w.xero.organisations[0]
                    .contacts
                    .iter()
                    .filter(|c| c.contact_status == "ACTIVE")
                    .count();
                assert_eq!(x.contacts.len(), active);
                // Reconciliation reads quantities from invoice lines: every invoice has them.
                let created = w.xero.organisations[0]
                    .invoices
                    .iter()
                    .filter(|i| i.created_by_app)
                    .count();
                assert_eq!(x.invoices.len(), created);
                assert!(x.invoices.iter().all(|i| !i.line_items.is_empty()));
            }
        }
        let p = rx.borrow().clone();
        assert!(p.customers_listed && p.dicker_data_done && p.psa_done);
        assert_eq!(p.customers_done, w.customers.len());
    }
}

/// Everything fetched, without the timestamps, as comparable text (Debug of every field:
/// ids, quantities, dates, prices — and any per-customer error).
fn fingerprint(s: &fetch::Snapshot) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}",
        s.customers, s.gdap, s.dicker_data, s.psa
    )
}

async fn fetch_with(w: &sim::World, faults: &str, psa: PsaKind) -> (String, u64) {
    let handle = sim::start(
        w.clone(),
        FaultSpec::parse(faults).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let sources = demo::connect(&handle, w, psa)
        .await
        .unwrap_or_else(|e| panic!("{psa:?}: {e}"));
    let (tx, _rx) = tokio::sync::watch::channel(FetchProgress::default());
    let snap = fetch::fetch(&sources, &tx).await.unwrap();
    let stats = handle.sim.faults.stats();
    let faults_seen: u64 = stats
        .values()
        .map(|s| s.throttled + s.server_errors + s.dropped)
        .sum();
    (fingerprint(&snap), faults_seen)
}

/// 429s with Retry-After, 5xx and dropped connections on every API: the fetch returns exactly
/// what a clean fetch returns, for every PSA.
#[tokio::test]
async fn a_faulty_fetch_returns_the_same_data_as_a_clean_one() {
    let w = support::sim::generated(30, 7);
    for psa in [PsaKind::ConnectWise, PsaKind::Autotask, PsaKind::Xero] {
        let (clean, none) = fetch_with(&w, "", psa).await;
        assert_eq!(none, 0);
        let (faulty, seen) =
            fetch_with(&w, "429=0.1,5xx=0.05,drop=0.01,retry-after=0,seed=11", psa).await;
        assert!(seen > 10, "{psa:?}: faults were injected ({seen})");
        assert_eq!(clean, faulty, "{psa:?}: the faulty fetch differs");
        // The only errors: Graph in tenants without GDAP, one each.
        let no_gdap = w.customers.iter().filter(|c| !c.gdap_active).count();
        assert!(no_gdap > 0, "the world has a customer without GDAP");
        assert_eq!(clean.matches("Err(").count(), no_gdap, "{psa:?}");
    }
}
