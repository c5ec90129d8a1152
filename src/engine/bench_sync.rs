//! `cspsync bench sync`: apply a whole plan (default 1,000 customers) against the simulated
//! world at a fixed latency, with the calls the PSA received, the wall time, and the lower bound
//! the latency and the PSA's documented limits imply (issue 6 §7).
//!
//! The world has every PSA charge one seat off ([`one_seat_off`]), so the plan touches
//! (nearly) every customer. The plan is made once, the real way (fetch, Dicker Data's prices, reconcile, plan) on a sim
//! without latency; each timed run then applies all of it (cautioned writes confirmed) to a
//! fresh sim of the same world (so every run starts from the same PSA state, with fresh rate
//! windows), with a journal on the disk as a real apply has and no audit log, from the first
//! write to the last answer.
//!
//! The bound, in units of the sim's latency `L` (every call costs at least `L`), using the
//! concurrency caps of the fetch benchmark ([`bench::Caps`]):
//! - ConnectWise: `max(ceil(n / c), longest customer)` with `c` cspsync's own cap (§5.5
//!   documents none) — a customer's writes go one after another;
//! - Autotask: the same with `c` = 3 threads per object endpoint (§6.5): every write is under
//!   `Contracts`;
//! - Xero: drafts go at most [`xero::INVOICE_BATCH`] per request and a customer's writes (its
//!   invoice, then its bill) in successive requests, so the fewest requests are
//!   `m = sum_r ceil(n_r / 50)` with `n_r` the customers with an `r`-th write; 5 at a time per
//!   organisation (§7.8): `max(ceil(m / 5), longest customer)`; past 60 requests, the
//!   60-per-minute window adds a minute per 60.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::api::xero;
use crate::audit::Actor;
use crate::demo::{self, PsaKind};
use crate::domain::sync::{ApplyProgress, Plan};
use crate::engine::apply::{self, ApplyContext};
use crate::engine::bench::{self, ApiEstimate, Caps, ceil};
use crate::engine::fetch::FetchProgress;
use crate::engine::journal::Journal;
use crate::engine::pipeline;
use crate::sim::faults::SimApi;
use crate::sim::{self, FaultSpec, World};

/// Options of `cspsync bench sync`.
#[derive(Debug, Clone)]
pub struct BenchSyncOptions {
    pub customers: usize,
    pub seed: u64,
    pub latency: Duration,
    pub runs: usize,
    pub psas: Vec<PsaKind>,
}

/// One timed apply.
#[derive(Debug, Clone)]
pub struct SyncRun {
    pub wall: Duration,
    /// Calls the PSA received (retries included), from the sim's statistics.
    pub calls: u64,
    pub throttled: u64,
}

/// What `cspsync bench sync` prints for one PSA.
#[derive(Debug, Clone)]
pub struct SyncReport {
    pub psa: PsaKind,
    pub customers: usize,
    pub latency: Duration,
    pub writes: usize,
    pub customers_with_writes: usize,
    /// Writes by kind (`change quantity`, `draft invoice`, ...).
    pub kinds: BTreeMap<&'static str, usize>,
    pub estimate: ApiEstimate,
    pub runs: Vec<SyncRun>,
}

/// Xero's documented window: 60 calls per minute per organisation (§7.8).
const XERO_PER_MINUTE: u64 = 60;

/// The fewest calls and the lower bound (in latency units) of applying `plan`.
pub fn estimate(plan: &Plan, caps: &Caps, latency: Duration) -> ApiEstimate {
    // Each customer's writes, in plan order.
    let mut chains: Vec<usize> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for w in &plan.writes {
        let k = *index
            .entry(w.customer_tenant_id.to_ascii_lowercase())
            .or_insert_with(|| {
                chains.push(0);
                chains.len() - 1
            });
        chains[k] += 1;
    }
    let n = plan.writes.len() as u64;
    let longest = chains.iter().copied().max().unwrap_or(0) as u64;
    match plan.psa {
        crate::api::error::Api::Xero => {
            // The fewest requests: every customer's r-th write in batches of 50, per r.
            let mut requests = 0u64;
            for r in 0..longest {
                let in_round = chains.iter().filter(|&&c| c as u64 > r).count() as u64;
                requests += ceil(in_round, xero::INVOICE_BATCH as u64);
            }
            // 5 at a time, and a customer's writes one request after another.
            let units = ceil(requests, caps.xero).max(longest);
            // Request k cannot start before minute floor(k / 60).
            let minute = ceil(60_000, latency.as_millis().max(1) as u64);
            let by_rate = if requests > XERO_PER_MINUTE {
                ((requests - 1) / XERO_PER_MINUTE) * minute + 1
            } else {
                0
            };
            ApiEstimate {
                api: "xero-api",
                min_calls: requests,
                concurrency: caps.xero,
                concurrency_source: "documented: 5 per organisation, 60/min (§7.8); 50 drafts per request",
                bound_units: units.max(by_rate),
            }
        }
        crate::api::error::Api::Autotask => ApiEstimate {
            api: "autotask",
            min_calls: n,
            concurrency: caps.autotask,
            concurrency_source: "documented: 3 threads per endpoint (§6.5)",
            bound_units: ceil(n, caps.autotask).max(longest),
        },
        _ => ApiEstimate {
            api: "connectwise",
            min_calls: n,
            concurrency: caps.connectwise,
            concurrency_source: "cspsync's cap (none documented, §5.5)",
            bound_units: ceil(n, caps.connectwise).max(longest),
        },
    }
}

impl SyncReport {
    pub fn median_wall(&self) -> Duration {
        bench::median(self.runs.iter().map(|r| r.wall).collect())
    }

    pub fn bound(&self) -> Duration {
        self.latency * self.estimate.bound_units as u32
    }

    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let e = &self.estimate;
        let kinds: Vec<String> = self.kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(
            s,
            "PSA {:?}: {} customers, plan of {} write(s) for {} customer(s) ({}), sim latency {} ms, {} run(s)",
            self.psa,
            self.customers,
            self.writes,
            self.customers_with_writes,
            kinds.join(", "),
            self.latency.as_millis(),
            self.runs.len()
        );
        let median_run = bench::median_run(&self.runs, |r| r.wall);
        let calls = median_run.map_or(0, |r| r.calls);
        bench::write_api_header(&mut s, 12);
        bench::write_api_row(&mut s, 12, e, calls, self.latency);
        let walls: Vec<Duration> = self.runs.iter().map(|r| r.wall).collect();
        bench::write_walls(&mut s, &walls, self.bound(), None);
        let _ = writeln!(s, "  429s seen: {}", median_run.map_or(0, |r| r.throttled));
        s
    }
}

fn bench_err(e: impl std::fmt::Display) -> String {
    format!("bench sync: {e}")
}

/// The world served with `faults` and the clients signed in to it.
async fn connected(
    world: &World,
    faults: FaultSpec,
    psa: PsaKind,
) -> Result<(sim::SimHandle, crate::engine::fetch::Sources), String> {
    let handle = sim::start(
        world.clone(),
        faults,
        "127.0.0.1:0".parse().map_err(bench_err)?,
    )
    .await
    .map_err(bench_err)?;
    let sources = demo::connect(&handle, world, psa)
        .await
        .map_err(bench_err)?;
    Ok((handle, sources))
}

/// Plan the world the real way: fetch, Dicker Data's prices, reconcile, plan.
async fn make_plan(world: &World, psa: PsaKind) -> Result<Plan, String> {
    let (_handle, sources) = connected(world, FaultSpec::default(), psa).await?;
    let (tx, _rx) = watch::channel(FetchProgress::default());
    let p = pipeline::fetch_priced(&sources, &tx, None)
        .await
        .map_err(bench_err)?;
    if let Some(e) = p.prices_error {
        return Err(bench_err(e));
    }
    let rec = pipeline::reconcile(&p.snap, &p.prices, &crate::domain::Overrides::default())
        .map_err(bench_err)?;
    let opts = crate::run::demo_sync_options(world);
    let today = chrono::Utc::now().date_naive();
    crate::domain::plan::plan(&rec, &p.snap, &p.prices, &opts, today).map_err(bench_err)
}

/// The world with every PSA charge one seat off, so that (nearly) every customer's plan has
/// writes: a generated world plants only a few mismatches, and a "1,000-customer plan" should
/// touch the 1,000 customers. ConnectWise: every open addition +1; Autotask: every unit record
/// +1; Xero: every invoice line +1 (the latest invoice is what the PSA charges).
pub fn one_seat_off(world: &World, psa: PsaKind) -> World {
    let mut w = world.clone();
    match psa {
        PsaKind::ConnectWise => {
            for a in w
                .connectwise
                .additions
                .iter_mut()
                .filter(|a| a.cancelled_date.is_none())
            {
                a.quantity += rust_decimal::Decimal::ONE;
            }
        }
        PsaKind::Autotask => {
            for u in &mut w.autotask.contract_service_units {
                u.units += 1;
            }
        }
        PsaKind::Xero => {
            for org in &mut w.xero.organisations {
                for l in org
                    .invoices
                    .iter_mut()
                    .flat_map(|i| i.line_items.iter_mut())
                {
                    l.quantity += rust_decimal::Decimal::ONE;
                }
            }
        }
        PsaKind::None => {}
    }
    w
}

/// Run the benchmark: per PSA one plan, then `runs` timed applies, each on a fresh sim.
pub async fn run(
    opts: &BenchSyncOptions,
    mut on_report: impl FnMut(&SyncReport),
) -> Result<Vec<SyncReport>, String> {
    let today = chrono::Utc::now().date_naive();
    let mut world = sim::generate::generate(&sim::generate::GenOptions::new(
        opts.customers,
        opts.seed,
        today,
    ));
    world.app.device_code_interval_secs = 1;
    let caps = Caps::of_clients();
    let mut reports = Vec::new();
    for &psa in &opts.psas {
        let world = one_seat_off(&world, psa);
        let world = &world;
        let plan = make_plan(world, psa).await?;
        let estimate = estimate(&plan, &caps, opts.latency);
        let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
        for w in &plan.writes {
            *kinds.entry(w.op.kind()).or_default() += 1;
        }
        let customers_with_writes = {
            let mut c: Vec<String> = plan
                .writes
                .iter()
                .map(|w| w.customer_tenant_id.to_ascii_lowercase())
                .collect();
            c.sort();
            c.dedup();
            c.len()
        };
        let mut runs = Vec::new();
        for _ in 0..opts.runs.max(1) {
            runs.push(timed_apply(world, psa, &plan, opts.latency).await?);
        }
        let report = SyncReport {
            psa,
            customers: opts.customers,
            latency: opts.latency,
            writes: plan.writes.len(),
            customers_with_writes,
            kinds,
            estimate,
            runs,
        };
        on_report(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// One apply of `plan` on a fresh sim of `world`, timed from the first write to the last answer.
async fn timed_apply(
    world: &World,
    psa: PsaKind,
    plan: &Plan,
    latency: Duration,
) -> Result<SyncRun, String> {
    let faults = FaultSpec::parse(&format!("latency={}ms", latency.as_millis()))?;
    let (handle, sources) = connected(world, faults, psa).await?;
    let client = sources.psa.ok_or_else(|| bench_err("no PSA client"))?;
    handle.sim.faults.reset_stats();
    // A journal on the disk, flushed before every create, as in a real apply; every write
    // applied, those with cautions too.
    let dir = tempfile::tempdir().map_err(bench_err)?;
    let journal = Journal::open_path(&dir.path().join(crate::engine::journal::FILE))?;
    let ctx = ApplyContext::new(std::sync::Arc::new(journal), Actor::new("", "bench"))
        .confirming_cautions(true);
    let (tx, mut rx) = mpsc::channel(4096);
    let drain = async { while rx.recv().await.is_some() {} };
    let (ptx, _prx) = watch::channel(ApplyProgress::default());
    let (_cancel, crx) = watch::channel(false);
    let selected = vec![true; plan.writes.len()];
    let t0 = Instant::now();
    let (report, ()) = tokio::join!(
        apply::apply(&client, plan, &selected, ctx, tx, &ptx, crx),
        drain
    );
    let wall = t0.elapsed();
    if !report.all_succeeded() {
        let first = report
            .outcomes
            .iter()
            .find(|o| !o.is_ok())
            .map(|o| format!("{o:?}"))
            .unwrap_or_default();
        return Err(bench_err(format!(
            "the apply did not complete ({}): {first}",
            report.summary_line()
        )));
    }
    let want = match psa {
        PsaKind::Xero => SimApi::XeroApi,
        PsaKind::Autotask => SimApi::Autotask,
        _ => SimApi::ConnectWise,
    };
    let mut calls = 0;
    let mut throttled = 0;
    for (key, st) in handle.sim.faults.stats() {
        let path = key.split_once(' ').map_or(key.as_str(), |(_, p)| p);
        if SimApi::of_path(path) == want {
            calls += st.calls;
            throttled += st.throttled;
        }
    }
    Ok(SyncRun {
        wall,
        calls,
        throttled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::Api;
    use crate::domain::sync::{Op, Write, XeroInvoiceKind};
    use crate::engine::bench::tests::caps;
    use rust_decimal::Decimal;

    fn plan(psa: Api, per_customer: &[usize]) -> Plan {
        let mut writes = Vec::new();
        for (c, &n) in per_customer.iter().enumerate() {
            for k in 0..n {
                writes.push(Write {
                    key: format!("{c}:{k}"),
                    customer_tenant_id: format!("t{c}"),
                    customer_name: String::new(),
                    system: psa,
                    target: String::new(),
                    product: String::new(),
                    stock_code: None,
                    before: None,
                    after: None,
                    monthly_change: Decimal::ZERO,
                    cautions: vec![],
                    op: Op::XeroDraft {
                        kind: XeroInvoiceKind::Bill,
                        contact_id: String::new(),
                        invoice_id: None,
                        reference: String::new(),
                        date: chrono::NaiveDate::MIN,
                        due_date: chrono::NaiveDate::MIN,
                        lines: vec![],
                    },
                });
            }
        }
        Plan {
            psa,
            created_at: chrono::Utc::now(),
            style: Default::default(),
            period_start: chrono::NaiveDate::MIN,
            period_end: chrono::NaiveDate::MIN,
            summary: Default::default(),
            writes,
            skipped: vec![],
        }
    }

    #[test]
    fn xero_batches_fifty_drafts_per_request_per_round() {
        // 1,000 customers with an invoice and a bill: 20 requests per round, 40 in all, 4
        // latency units per round at 5 at a time.
        let e = estimate(
            &plan(Api::Xero, &[2; 1000]),
            &caps(),
            Duration::from_millis(40),
        );
        assert_eq!(e.min_calls, 40);
        assert_eq!(e.bound_units, 8);
        // 4,000 single drafts: 80 requests, past the minute window.
        let e = estimate(
            &plan(Api::Xero, &[1; 4000]),
            &caps(),
            Duration::from_millis(40),
        );
        assert_eq!(e.min_calls, 80);
        assert_eq!(e.bound_units, 1500 + 1);
    }

    #[test]
    fn connectwise_and_autotask_are_bounded_by_concurrency_and_the_longest_customer() {
        let e = estimate(&plan(Api::Autotask, &[1; 300]), &caps(), Duration::ZERO);
        assert_eq!((e.min_calls, e.bound_units), (300, 100));
        let e = estimate(&plan(Api::ConnectWise, &[3, 1, 1]), &caps(), Duration::ZERO);
        assert_eq!((e.min_calls, e.bound_units), (5, 3));
    }
}
