//! `cspsync bench fetch`: the full fetch against the simulated world at a fixed latency, with
//! the calls each API received, the wall time, and the lower bound the latency and the
//! concurrency limits imply.
//!
//! The bound: every API call costs at least the sim's latency `L`; an API serving `n` calls
//! `c` at a time needs at least `ceil(n / c) × L`, after the calls it depends on (a customer's
//! Graph token needs the customer list, which needs the Partner Center token). `c` is the
//! vendor's documented limit where there is one (Autotask 3 threads per endpoint, Xero 5 per
//! organisation), else the cap cspsync's client sets for itself (printed with its source), since
//! no real service should get unbounded parallel calls from one integration.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::api::autotask::AutotaskClient;
use crate::api::error::ApiError;
use crate::api::graph::GraphClient;
use crate::api::partnercenter::PartnerCenterClient;
use crate::api::{connectwise, dickerdata, xero};
use crate::auth::entra::{EntraClient, Session};
use crate::demo::{self, PsaKind};
use crate::engine::fetch::{self, FetchProgress, Snapshot};
use crate::sim::faults::SimApi;
use crate::sim::{self, FaultSpec, World};

/// What the world asks of each API, counted from the dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    pub customers: u64,
    /// Customers whose tenant Graph can reach (active GDAP): one token and two Graph calls each.
    pub graph_tenants: u64,
    pub psa: PsaWorkload,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PsaWorkload {
    #[default]
    None,
    ConnectWise {
        companies: u64,
        agreements: u64,
        /// Agreements that are not cancelled or expired: one additions listing each.
        open_agreements: u64,
        catalog: u64,
    },
    Autotask {
        companies: u64,
        /// Recurring-service contracts.
        contracts: u64,
        services: u64,
        contract_services: u64,
        /// Unit records covering today.
        current_units: u64,
    },
    Xero {
        contacts: u64,
        invoices: u64,
    },
}

impl Workload {
    pub fn of(world: &World, psa: PsaKind, today: chrono::NaiveDate) -> Workload {
        let psa = match psa {
            PsaKind::None => PsaWorkload::None,
            PsaKind::ConnectWise => {
                let cw = &world.connectwise;
                PsaWorkload::ConnectWise {
                    companies: cw.companies.len() as u64,
                    agreements: cw.agreements.len() as u64,
                    open_agreements: cw
                        .agreements
                        .iter()
                        .filter(|a| {
                            // As `connectwise::Agreement::is_closed` (the world is read
                            // independently of the client's types).
                            !a.cancelled_flag
                                && !["cancelled", "expired", "inactive"]
                                    .iter()
                                    .any(|c| a.agreement_status.eq_ignore_ascii_case(c))
                        })
                        .count() as u64,
                    catalog: cw.catalog.len() as u64,
                }
            }
            PsaKind::Autotask => {
                let at = &world.autotask;
                let contracts: Vec<u64> = at
                    .contracts
                    .iter()
                    .filter(|c| c.contract_type == 7)
                    .map(|c| c.id)
                    .collect();
                let cs: Vec<u64> = at
                    .contract_services
                    .iter()
                    .filter(|s| contracts.contains(&s.contract_id))
                    .map(|s| s.id)
                    .collect();
                let current = at
                    .contract_service_units
                    .iter()
                    .filter(|u| {
                        cs.contains(&u.contract_service_id)
                            && u.start_date.is_some_and(|d| d <= today)
                            && u.end_date.is_some_and(|d| d >= today)
                    })
                    .count() as u64;
                PsaWorkload::Autotask {
                    companies: at.companies.len() as u64,
                    contracts: contracts.len() as u64,
                    services: at.services.len() as u64,
                    contract_services: cs.len() as u64,
                    current_units: current,
                }
            }
            PsaKind::Xero => {
                let org = world.xero.organisations.first();
                PsaWorkload::Xero {
                    contacts: org.map_or(0, |o| {
                        o.contacts
                            .iter()
                            .filter(|c| c.contact_status == "ACTIVE")
                            .count() as u64
                    }),
                    invoices: org.map_or(0, |o| {
                        o.invoices.iter().filter(|i| i.created_by_app).count() as u64
                    }),
                }
            }
        };
        Workload {
            customers: world.customers.len() as u64,
            graph_tenants: world.customers.iter().filter(|c| c.gdap_active).count() as u64,
            psa,
        }
    }
}

/// Concurrency each API is allowed, and where that number comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    pub entra: u64,
    pub graph: u64,
    pub partnercenter: u64,
    pub dickerdata: u64,
    pub connectwise: u64,
    /// Per object endpoint.
    pub autotask: u64,
    /// Per organisation.
    pub xero: u64,
}

impl Caps {
    /// The caps the clients actually use.
    pub fn of_clients() -> Caps {
        Caps {
            entra: EntraClient::limits().global_concurrency as u64,
            graph: GraphClient::limits().global_concurrency as u64,
            partnercenter: PartnerCenterClient::limits().global_concurrency as u64,
            dickerdata: dickerdata::LIMITS.global_concurrency as u64,
            connectwise: connectwise::LIMITS.global_concurrency as u64,
            autotask: AutotaskClient::limits().per_key_concurrency.unwrap_or(3) as u64,
            xero: xero::XeroClient::limits().per_key_concurrency.unwrap_or(5) as u64,
        }
    }
}

/// One API's share of the estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEstimate {
    pub api: &'static str,
    /// The fewest calls the API allows for this fetch (largest pages, no retries).
    pub min_calls: u64,
    pub concurrency: u64,
    pub concurrency_source: &'static str,
    /// Latency units (`L`) this API needs at least, its prerequisites included.
    pub bound_units: u64,
}

pub(crate) fn ceil(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { a.div_ceil(b) }
}

// The report machinery shared with the sync benchmark (bench_sync).

/// The middle of `v` once sorted (the median); zero when empty.
pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// The run of median wall time, if any.
pub(crate) fn median_run<T>(runs: &[T], wall: impl Fn(&T) -> Duration) -> Option<&T> {
    let mut r: Vec<&T> = runs.iter().collect();
    r.sort_by_key(|x| wall(x));
    r.get(r.len() / 2).copied()
}

/// `n / min`; 0 when there is no minimum.
fn ratio(n: u64, min: u64) -> f64 {
    if min == 0 { 0.0 } else { n as f64 / min as f64 }
}

/// The header of the per-API table, its first column `width` wide.
pub(crate) fn write_api_header(s: &mut String, width: usize) {
    use std::fmt::Write;
    let _ = writeln!(
        s,
        "  {:<width$} {:>7} {:>8} {:>6} {:>5}  {:>9}  concurrency source",
        "api", "calls", "minimum", "ratio", "conc", "bound"
    );
}

/// One API's row: the calls made against the minimum, and its lower bound at `latency`.
pub(crate) fn write_api_row(
    s: &mut String,
    width: usize,
    e: &ApiEstimate,
    calls: u64,
    latency: Duration,
) {
    use std::fmt::Write;
    let _ = writeln!(
        s,
        "  {:<width$} {:>7} {:>8} {:>6.2} {:>5}  {:>7} ms  {}",
        e.api,
        calls,
        e.min_calls,
        ratio(calls, e.min_calls),
        e.concurrency,
        (latency * e.bound_units as u32).as_millis(),
        e.concurrency_source
    );
}

/// The runs' wall times against the lower bound (naming the binding API, when given).
pub(crate) fn write_walls(
    s: &mut String,
    walls: &[Duration],
    bound: Duration,
    binding: Option<&str>,
) {
    use std::fmt::Write;
    let median = median(walls.to_vec());
    let runs: Vec<String> = walls
        .iter()
        .map(|w| format!("{:.3}", w.as_secs_f64()))
        .collect();
    let _ = writeln!(
        s,
        "  wall: median {:.3} s (runs: {} s)",
        median.as_secs_f64(),
        runs.join(", ")
    );
    match binding {
        Some(b) => {
            let _ = writeln!(
                s,
                "  lower bound: {:.3} s (binding: {b})",
                bound.as_secs_f64()
            );
        }
        None => {
            let _ = writeln!(s, "  lower bound: {:.3} s", bound.as_secs_f64());
        }
    }
    if !bound.is_zero() {
        let _ = writeln!(
            s,
            "  wall / bound: {:.2} (target ≤ 1.30)",
            median.as_secs_f64() / bound.as_secs_f64()
        );
    }
}

/// Partner Center's largest customers page (§3.2), ConnectWise's (§5.2), Autotask's (§6.2),
/// Xero's pageSize for contacts and invoices (§7.4, community).
const PC_PAGE: u64 = 500;
const CW_PAGE: u64 = 1000;
const AT_PAGE: u64 = 500;
const XERO_PAGE: u64 = 1000;
const GDAP_PAGE: u64 = 300;

/// The minimum calls and the lower bound, in latency units, per API.
pub fn estimate(w: &Workload, caps: &Caps) -> Vec<ApiEstimate> {
    let c = w.customers;
    let g = w.graph_tenants;
    let pages = ceil(c, PC_PAGE).max(1);
    // GDAP relationships, 300 a page (§2.6), on the MSP's Graph token.
    let gdap_pages = ceil(c, GDAP_PAGE).max(1);
    // Customer Graph work starts once its customer is listed (Partner Center token, first
    // page: 2 L) and the GDAP list is in (MSP Graph token, then its pages).
    let start = 2u64.max(1 + gdap_pages);
    let entra_units = start + ceil(g, caps.entra);
    let mut out = vec![
        ApiEstimate {
            api: "entra",
            // Partner Center, the MSP's Graph, then one per customer tenant with GDAP.
            min_calls: 2 + g,
            concurrency: caps.entra,
            concurrency_source: "cspsync's cap (none documented)",
            bound_units: if g == 0 { 1 } else { entra_units },
        },
        ApiEstimate {
            api: "partnercenter",
            min_calls: pages + c,
            concurrency: caps.partnercenter,
            concurrency_source: "cspsync's cap (500/min per tenant documented)",
            bound_units: 1 + (pages + 1).max(1 + ceil(c, caps.partnercenter)),
        },
        ApiEstimate {
            api: "graph",
            min_calls: gdap_pages + 2 * g,
            concurrency: caps.graph,
            concurrency_source: "cspsync's cap (resource units documented)",
            bound_units: if g == 0 {
                1 + gdap_pages
            } else {
                (start + 1 + ceil(2 * g, caps.graph)).max(entra_units + 1)
            },
        },
        ApiEstimate {
            api: "dickerdata",
            min_calls: 2,
            concurrency: caps.dickerdata,
            concurrency_source: "cspsync's cap (none documented)",
            bound_units: 2,
        },
    ];
    match w.psa {
        PsaWorkload::None => {}
        PsaWorkload::ConnectWise {
            companies,
            agreements,
            open_agreements,
            catalog,
        } => {
            let (a, b, k) = (
                ceil(companies, CW_PAGE).max(1),
                ceil(agreements, CW_PAGE).max(1),
                ceil(catalog, CW_PAGE).max(1),
            );
            out.push(ApiEstimate {
                api: "connectwise",
                min_calls: a + b + k + open_agreements,
                concurrency: caps.connectwise,
                concurrency_source: "cspsync's cap (none documented)",
                bound_units: a.max(k).max(b + ceil(open_agreements, caps.connectwise)),
            });
        }
        PsaWorkload::Autotask {
            companies,
            contracts,
            services,
            contract_services,
            current_units,
        } => {
            let a = ceil(companies, AT_PAGE).max(1);
            let k = ceil(contracts, AT_PAGE).max(1);
            let s = ceil(services, AT_PAGE).max(1);
            // `in` lists hold at most 500 values (§6.2): one query per 500 parents at least.
            let cs_pages = ceil(contract_services, AT_PAGE).max(ceil(contracts, AT_PAGE));
            let unit_pages = ceil(current_units, AT_PAGE).max(ceil(contract_services, AT_PAGE));
            let chain = k + ceil(cs_pages, caps.autotask) + ceil(unit_pages, caps.autotask);
            out.push(ApiEstimate {
                api: "autotask",
                min_calls: 1 + a + k + s + cs_pages + unit_pages,
                concurrency: caps.autotask,
                concurrency_source: "documented: 3 threads per endpoint (§6.5)",
                bound_units: 1 + a.max(s).max(chain),
            });
        }
        PsaWorkload::Xero { contacts, invoices } => {
            let cp = ceil(contacts, XERO_PAGE).max(1);
            let ip = ceil(invoices, XERO_PAGE).max(1);
            out.push(ApiEstimate {
                api: "xero-api",
                min_calls: cp + 1 + ip,
                concurrency: caps.xero,
                concurrency_source: "documented: 5 per organisation, 60/min (§7.8)",
                bound_units: cp.max(ip),
            });
        }
    }
    out
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The fetch alone.
    pub wall: Duration,
    /// After the fetch: Dicker Data's prices for the stock codes seen, then the reconciliation
    /// (what `cspsync reconcile` and the Reconcile tab do next).
    pub prices: Duration,
    pub reconcile: Duration,
    pub lines: usize,
    /// Calls the sim received per API during the fetch (retries included).
    pub calls: BTreeMap<String, u64>,
    pub throttled: u64,
}

/// What `cspsync bench fetch` prints for one PSA.
#[derive(Debug, Clone)]
pub struct Report {
    pub psa: PsaKind,
    pub customers: usize,
    pub latency: Duration,
    pub estimates: Vec<ApiEstimate>,
    pub runs: Vec<RunResult>,
}

impl Report {
    pub fn median_wall(&self) -> Duration {
        median(self.runs.iter().map(|r| r.wall).collect())
    }

    pub fn bound(&self) -> Duration {
        let units = self
            .estimates
            .iter()
            .map(|e| e.bound_units)
            .max()
            .unwrap_or(0);
        self.latency * units as u32
    }

    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "PSA {:?}: {} customers, sim latency {} ms, {} run(s)",
            self.psa,
            self.customers,
            self.latency.as_millis(),
            self.runs.len()
        );
        write_api_header(&mut s, 14);
        let median_run = median_run(&self.runs, |r| r.wall);
        for e in &self.estimates {
            let calls = median_run
                .and_then(|r| r.calls.get(e.api))
                .copied()
                .unwrap_or(0);
            write_api_row(&mut s, 14, e, calls, self.latency);
        }
        let walls: Vec<Duration> = self.runs.iter().map(|r| r.wall).collect();
        let bound = self.bound();
        let binding = self
            .estimates
            .iter()
            .max_by_key(|e| e.bound_units)
            .map(|e| e.api)
            .unwrap_or("-");
        write_walls(&mut s, &walls, bound, Some(binding));
        // Fetch, prices and reconciliation together: the time a technician waits for the table.
        let whole_median = median(
            self.runs
                .iter()
                .map(|r| r.wall + r.prices + r.reconcile)
                .collect(),
        );
        let rec_median = median(self.runs.iter().map(|r| r.reconcile).collect());
        let _ = writeln!(
            s,
            "  fetch + prices + reconcile: median {:.3} s (reconcile alone {:.1} ms, {} lines)",
            whole_median.as_secs_f64(),
            rec_median.as_secs_f64() * 1000.0,
            median_run.map_or(0, |r| r.lines)
        );
        if !bound.is_zero() {
            let _ = writeln!(
                s,
                "  (fetch + prices + reconcile) / bound: {:.2} (target ≤ 1.30)",
                whole_median.as_secs_f64() / bound.as_secs_f64()
            );
        }
        let total: u64 = median_run.map(|r| r.calls.values().sum()).unwrap_or(0);
        let min: u64 = self.estimates.iter().map(|e| e.min_calls).sum();
        let _ = writeln!(
            s,
            "  calls: {total} of a minimum {min} ({:.2}×, target ≤ 1.10); 429s seen: {}",
            ratio(total, min),
            median_run.map_or(0, |r| r.throttled)
        );
        s
    }
}

/// Options of `cspsync bench fetch`.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub customers: usize,
    pub seed: u64,
    pub latency: Duration,
    pub runs: usize,
    pub psas: Vec<PsaKind>,
}

fn bench_err(e: impl std::fmt::Display) -> String {
    format!("bench: {e}")
}

/// Run the benchmark: one sim, one Microsoft sign-in, then per PSA `runs` timed fetches, each
/// from a fresh session (the stored refresh token only, as a new process starts).
pub async fn run(
    opts: &BenchOptions,
    mut on_report: impl FnMut(&Report),
) -> Result<Vec<Report>, String> {
    let today = chrono::Utc::now().date_naive();
    let mut world = sim::generate::generate(&sim::generate::GenOptions::new(
        opts.customers,
        opts.seed,
        today,
    ));
    world.app.device_code_interval_secs = 1;
    let faults = FaultSpec::parse(&format!("latency={}ms", opts.latency.as_millis()))?;
    let handle = sim::start(
        world.clone(),
        faults,
        "127.0.0.1:0".parse().map_err(bench_err)?,
    )
    .await
    .map_err(bench_err)?;
    let signed_in = demo::sign_in_microsoft(&handle, &world)
        .await
        .map_err(|e: ApiError| bench_err(e))?;
    let control = handle.urls().control;
    let http = reqwest::Client::new();
    let mut reports = Vec::new();
    for &psa in &opts.psas {
        let estimates = estimate(&Workload::of(&world, psa, today), &Caps::of_clients());
        let mut runs = Vec::new();
        for _ in 0..opts.runs.max(1) {
            let session = Session::new(signed_in.client().clone(), signed_in.refresh_token());
            let sources = demo::sources(&handle, &world, session, psa)
                .await
                .map_err(bench_err)?;
            http.post(format!("{control}/stats/reset"))
                .send()
                .await
                .map_err(bench_err)?;
            let (tx, _rx) = tokio::sync::watch::channel(FetchProgress::default());
            let t0 = Instant::now();
            let snap: Snapshot = fetch::fetch(&sources, &tx).await.map_err(bench_err)?;
            let wall = t0.elapsed();
            check_complete(&snap)?;
            // The calls counted are the fetch's (the prices' one call per 50 codes comes after).
            let stats: BTreeMap<String, sim::faults::EndpointStats> = handle.sim.faults.stats();
            let t1 = Instant::now();
            let prices = crate::engine::pipeline::distributor_prices(&sources.dicker_data, &snap)
                .await
                .map_err(bench_err)?;
            let t2 = Instant::now();
            let rec = crate::engine::pipeline::reconcile(
                &snap,
                &prices,
                &crate::domain::Overrides::default(),
            )
            .map_err(bench_err)?;
            let t3 = Instant::now();
            let mut calls: BTreeMap<String, u64> = BTreeMap::new();
            let mut throttled = 0;
            for (key, st) in &stats {
                let path = key.split_once(' ').map_or(key.as_str(), |(_, p)| p);
                let api = SimApi::of_path(path).name().to_string();
                *calls.entry(api).or_default() += st.calls;
                throttled += st.throttled;
            }
            runs.push(RunResult {
                wall,
                prices: t2 - t1,
                reconcile: t3 - t2,
                lines: rec.lines.len(),
                calls,
                throttled,
            });
        }
        let report = Report {
            psa,
            customers: opts.customers,
            latency: opts.latency,
            estimates,
            runs,
        };
        on_report(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// A benchmark of a fetch that failed part-way would measure nothing: refuse it.
fn check_complete(s: &Snapshot) -> Result<(), String> {
    if let Err(e) = &s.dicker_data {
        return Err(bench_err(e));
    }
    if let Some(Err(e)) = &s.psa {
        return Err(bench_err(e));
    }
    if let Some(e) = s
        .customers
        .iter()
        .find_map(|c| c.subscriptions.as_ref().err())
    {
        return Err(bench_err(e));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Fixed caps, so the estimates tested do not move with the clients' own (also used by
    /// bench_sync's tests).
    pub(crate) fn caps() -> Caps {
        Caps {
            entra: 8,
            graph: 32,
            partnercenter: 32,
            dickerdata: 8,
            connectwise: 10,
            autotask: 3,
            xero: 5,
        }
    }

    #[test]
    fn minimum_calls_follow_page_sizes() {
        let w = Workload {
            customers: 1000,
            graph_tenants: 950,
            psa: PsaWorkload::ConnectWise {
                companies: 1000,
                agreements: 1000,
                open_agreements: 1000,
                catalog: 40,
            },
        };
        let e = estimate(&w, &caps());
        let get = |n: &str| e.iter().find(|x| x.api == n).cloned().expect(n);
        assert_eq!(get("partnercenter").min_calls, 2 + 1000);
        assert_eq!(get("entra").min_calls, 2 + 950);
        assert_eq!(get("graph").min_calls, 4 + 1900);
        assert_eq!(get("dickerdata").min_calls, 2);
        assert_eq!(get("connectwise").min_calls, 1 + 1 + 1 + 1000);
        // 950 tokens 8 at a time, after the GDAP list (token + 4 pages).
        assert_eq!(get("entra").bound_units, 5 + 119);
        assert_eq!(get("graph").bound_units, 5 + 119 + 1);
        assert_eq!(get("connectwise").bound_units, 1 + 100);
    }

    #[test]
    fn autotask_respects_the_500_value_in_lists() {
        let w = Workload {
            customers: 0,
            graph_tenants: 0,
            psa: PsaWorkload::Autotask {
                companies: 1000,
                contracts: 1000,
                services: 60,
                contract_services: 3000,
                current_units: 3000,
            },
        };
        let e = estimate(&w, &caps());
        let at = e.iter().find(|x| x.api == "autotask").expect("autotask");
        // zone + companies 2 + contracts 2 + services 1 + cs 6 + units 6.
        assert_eq!(at.min_calls, 1 + 2 + 2 + 1 + 6 + 6);
        // zone, then contracts 2 → cs 6/3 → units 6/3.
        assert_eq!(at.bound_units, 1 + 2 + 2 + 2);
    }
}
