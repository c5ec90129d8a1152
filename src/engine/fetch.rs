//! Fetch everything reconciliation needs, from every source at once, as fast as the APIs'
//! limits allow.
//!
//! Three branches run side by side: Microsoft (Partner Center customers, then per customer its
//! subscriptions and — through a token for that tenant — Graph subscribedSkus and
//! directory/subscriptions), Dicker Data (one call for every CSP subscription), and the PSA.
//! Per-customer work is started as soon as each page of customers arrives; each client's own
//! limiter paces its API, so the engine never has to guess a concurrency.
//!
//! A failure for one customer (no GDAP, a 403) is kept with that customer and the rest goes on;
//! only a failure that leaves nothing to reconcile (the customer list itself) fails the fetch.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::connectwise::{self as cw, ConnectWiseClient};
use crate::api::dickerdata::{self as dd, DickerDataClient, SubscriptionType};
use crate::api::error::{Api, ApiError, ErrorKind};
use crate::api::graph::{CompanySubscription, GraphClient, SubscribedSku};
use crate::api::partnercenter::{self as pc, PartnerCenterClient};
use crate::auth::entra::{Resource, Session};

/// Largest page Partner Center allows for customers (§3.2, SDK MAX_PAGE_SIZE).
pub const CUSTOMERS_PAGE: u32 = 500;

/// The Microsoft side: the signed-in session (tokens for every tenant) and its two APIs.
#[derive(Clone)]
pub struct MicrosoftClients {
    pub session: Session,
    pub partner_center: PartnerCenterClient,
    /// Graph client of the MSP tenant; customer tenants get `for_tenant` copies sharing its
    /// limits and statistics.
    pub graph: GraphClient,
}

/// The PSA the MSP bills from.
#[derive(Clone)]
pub enum PsaClient {
    ConnectWise(ConnectWiseClient),
}

impl PsaClient {
    pub fn api(&self) -> Api {
        match self {
            PsaClient::ConnectWise(_) => Api::ConnectWise,
        }
    }
}

/// Everything the fetch talks to.
#[derive(Clone)]
pub struct Sources {
    pub microsoft: MicrosoftClients,
    pub dicker_data: DickerDataClient,
    pub psa: Option<PsaClient>,
}

/// What Graph shows inside one customer tenant.
#[derive(Debug, Clone)]
pub struct GraphTenant {
    pub skus: Vec<SubscribedSku>,
    pub subscriptions: Vec<CompanySubscription>,
}

/// One customer as Microsoft holds it.
#[derive(Debug, Clone)]
pub struct CustomerFetch {
    pub customer: pc::Customer,
    pub subscriptions: Result<Vec<pc::Subscription>, ApiError>,
    pub graph: Result<GraphTenant, ApiError>,
}

impl CustomerFetch {
    pub fn tenant_id(&self) -> &str {
        &self.customer.id
    }
}

/// ConnectWise state: companies, agreements with their additions, and the catalogue.
#[derive(Debug, Clone, Default)]
pub struct ConnectWiseSnapshot {
    pub companies: Vec<cw::Company>,
    pub agreements: Vec<cw::Agreement>,
    /// Additions per agreement id.
    pub additions: BTreeMap<u64, Vec<cw::Addition>>,
    pub catalog: Vec<cw::CatalogItem>,
}

/// The PSA's state.
#[derive(Debug, Clone)]
pub enum PsaSnapshot {
    ConnectWise(ConnectWiseSnapshot),
}

/// Everything fetched, with when.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub customers: Vec<CustomerFetch>,
    pub dicker_data: Result<Vec<dd::Subscription>, ApiError>,
    pub psa: Option<Result<PsaSnapshot, ApiError>>,
}

/// Live progress, for a progress bar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchProgress {
    /// Customers found so far (final once `customers_listed`).
    pub customers_found: usize,
    pub customers_listed: bool,
    pub customers_done: usize,
    pub dicker_data_done: bool,
    pub psa_done: bool,
}

/// Fetch everything. `progress` receives updates as work completes.
pub async fn fetch(
    sources: &Sources,
    progress: &watch::Sender<FetchProgress>,
) -> Result<Snapshot, ApiError> {
    let started = Utc::now();
    let ms = fetch_microsoft(&sources.microsoft, progress);
    let ddf = async {
        let r = sources
            .dicker_data
            .subscriptions(SubscriptionType::Csp, None)
            .await;
        progress.send_modify(|p| p.dicker_data_done = true);
        r
    };
    let psaf = async {
        let r = match &sources.psa {
            None => None,
            Some(psa) => Some(fetch_psa(psa).await),
        };
        progress.send_modify(|p| p.psa_done = true);
        r
    };
    let (customers, dicker_data, psa) = tokio::join!(ms, ddf, psaf);
    Ok(Snapshot {
        started,
        finished: Utc::now(),
        customers: customers?,
        dicker_data,
        psa,
    })
}

async fn fetch_microsoft(
    ms: &MicrosoftClients,
    progress: &watch::Sender<FetchProgress>,
) -> Result<Vec<CustomerFetch>, ApiError> {
    let mut pager = ms.partner_center.customers_pager(CUSTOMERS_PAGE)?;
    let mut tasks: JoinSet<(usize, CustomerFetch)> = JoinSet::new();
    let mut index = 0usize;
    while let Some(page) = pager.next_page().await? {
        progress.send_modify(|p| p.customers_found += page.len());
        for customer in page {
            let ms = ms.clone();
            let i = index;
            index += 1;
            tasks.spawn(async move { (i, fetch_customer(&ms, customer).await) });
        }
    }
    progress.send_modify(|p| p.customers_listed = true);
    let mut out: Vec<Option<CustomerFetch>> = (0..index).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, c)) => {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(c);
                }
                progress.send_modify(|p| p.customers_done += 1);
            }
            // A panicked task is a bug, not a data problem: surface it rather than silently
            // dropping a customer (DESIGN.md §3).
            Err(e) => {
                return Err(ApiError::new(
                    Api::PartnerCenter,
                    ErrorKind::Malformed,
                    format!("a customer fetch task failed: {e}"),
                ));
            }
        }
    }
    Ok(out.into_iter().flatten().collect())
}

async fn fetch_customer(ms: &MicrosoftClients, customer: pc::Customer) -> CustomerFetch {
    let tenant = customer.id.clone();
    let subs = ms.partner_center.subscriptions(&tenant);
    let graph = async {
        let token = ms.session.token_source(Resource::Graph, Some(&tenant));
        let g: Arc<GraphClient> = Arc::new(ms.graph.for_tenant(&tenant, token));
        let (skus, dir) = tokio::join!(g.subscribed_skus(), g.directory_subscriptions());
        Ok(GraphTenant {
            skus: skus?,
            subscriptions: dir?,
        })
    };
    let (subscriptions, graph) = tokio::join!(subs, graph);
    CustomerFetch {
        customer,
        subscriptions,
        graph,
    }
}

async fn fetch_psa(psa: &PsaClient) -> Result<PsaSnapshot, ApiError> {
    match psa {
        PsaClient::ConnectWise(c) => fetch_connectwise(c).await.map(PsaSnapshot::ConnectWise),
    }
}

async fn fetch_connectwise(c: &ConnectWiseClient) -> Result<ConnectWiseSnapshot, ApiError> {
    let (companies, agreements, catalog) =
        tokio::join!(c.companies(None), c.agreements(None), c.catalog(None));
    let agreements = agreements?;
    // Additions live under each agreement (§5.3): one listing per agreement, run side by side
    // (the client's limiter paces them).
    let mut tasks: JoinSet<(u64, Result<Vec<cw::Addition>, ApiError>)> = JoinSet::new();
    for a in agreements.iter().filter(|a| !is_closed_agreement(a)) {
        let c = c.clone();
        let id = a.id;
        tasks.spawn(async move { (id, c.additions(id, None).await) });
    }
    let mut additions = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (id, r) = joined.map_err(|e| {
            ApiError::new(
                Api::ConnectWise,
                ErrorKind::Malformed,
                format!("an additions fetch task failed: {e}"),
            )
        })?;
        additions.insert(id, r?);
    }
    Ok(ConnectWiseSnapshot {
        companies: companies?,
        agreements,
        additions,
        catalog: catalog?,
    })
}

fn is_closed_agreement(a: &cw::Agreement) -> bool {
    a.cancelled_flag.unwrap_or(false)
        || matches!(
            a.agreement_status.as_deref(),
            Some("Cancelled") | Some("Expired")
        )
}
