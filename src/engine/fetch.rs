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
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::api::autotask::{self as at, AutotaskClient, Filter, Query};
use crate::api::connectwise::{self as cw, ConnectWiseClient};
use crate::api::dickerdata::{self as dd, DickerDataClient, SubscriptionType};
use crate::api::error::{Api, ApiError, ErrorKind};
use crate::api::graph::{
    CompanySubscription, DelegatedAdminRelationship, GraphClient, SubscribedSku,
};
use crate::api::partnercenter::{self as pc, PartnerCenterClient};
use crate::api::xero::{self as xe, InvoiceQuery, XeroClient};
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
    Autotask(AutotaskClient),
    /// Xero: the client and the organisation (`xero-tenant-id`) chosen at setup.
    Xero {
        client: XeroClient,
        tenant_id: String,
    },
}

impl PsaClient {
    pub fn api(&self) -> Api {
        match self {
            PsaClient::ConnectWise(_) => Api::ConnectWise,
            PsaClient::Autotask(_) => Api::Autotask,
            PsaClient::Xero { .. } => Api::Xero,
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

/// Autotask state: companies, recurring-service contracts, the service catalogue, the
/// contracts' services and the unit records in force today.
#[derive(Debug, Clone, Default)]
pub struct AutotaskSnapshot {
    pub companies: Vec<at::Company>,
    pub contracts: Vec<at::Contract>,
    pub services: Vec<at::Service>,
    pub contract_services: Vec<at::ContractService>,
    /// Unit records whose period covers the fetch date (§6.3: the current quantity).
    pub current_units: Vec<at::ContractServiceUnit>,
}

/// Xero state: contacts, accounts and the invoices cspsync created.
#[derive(Debug, Clone, Default)]
pub struct XeroSnapshot {
    pub tenant_id: String,
    pub contacts: Vec<xe::Contact>,
    pub accounts: Vec<xe::Account>,
    pub invoices: Vec<xe::Invoice>,
}

/// The PSA's state.
#[derive(Debug, Clone)]
pub enum PsaSnapshot {
    ConnectWise(ConnectWiseSnapshot),
    Autotask(AutotaskSnapshot),
    Xero(XeroSnapshot),
}

/// Everything fetched, with when.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub customers: Vec<CustomerFetch>,
    /// The MSP's GDAP relationships (§2.6); customers without an active one are not asked for
    /// Graph data.
    pub gdap: Result<Vec<DelegatedAdminRelationship>, ApiError>,
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
    fetch_streaming(sources, progress, None).await
}

/// What a streaming fetch reports as it goes ([`fetch_streaming`]), so a caller can show
/// results before the end. Each item is a copy of what goes into the final [`Snapshot`],
/// which is the same with or without a listener.
#[derive(Debug, Clone)]
pub enum FetchEvent {
    /// A page of Partner Center customers; each one's data follows as a `Customer` event.
    Listed(Vec<pc::Customer>),
    /// Partner Center's customer list is complete (every customer has been `Listed`).
    ListingDone,
    /// One customer's Microsoft data, complete (subscriptions and Graph).
    Customer(Box<CustomerFetch>),
    /// Dicker Data's CSP subscriptions.
    DickerData(Result<Vec<dd::Subscription>, ApiError>),
    /// The PSA's state; `None` when no PSA is fetched.
    Psa(Option<Result<PsaSnapshot, ApiError>>),
}

/// A listener for [`FetchEvent`]s. Unbounded on purpose: the fetch never waits for a slow
/// listener, and what it holds is at most the snapshot itself.
pub type FetchEvents = mpsc::UnboundedSender<FetchEvent>;

fn emit(events: Option<&FetchEvents>, make: impl FnOnce() -> FetchEvent) {
    if let Some(tx) = events {
        // A listener that went away only stops the copies, never the fetch.
        let _ = tx.send(make());
    }
}

/// [`fetch`], also sending each piece to `events` as soon as it is complete: every page of
/// customers listed, each customer's Microsoft data, Dicker Data's lines and the PSA's state.
/// Fold them into a [`LiveFetch`] to reconcile what has arrived so far.
pub async fn fetch_streaming(
    sources: &Sources,
    progress: &watch::Sender<FetchProgress>,
    events: Option<&FetchEvents>,
) -> Result<Snapshot, ApiError> {
    let started = Utc::now();
    let ms = fetch_microsoft(&sources.microsoft, progress, events);
    let ddf = async {
        let r = sources
            .dicker_data
            .subscriptions(SubscriptionType::Csp, None)
            .await;
        emit(events, || FetchEvent::DickerData(r.clone()));
        progress.send_modify(|p| p.dicker_data_done = true);
        r
    };
    let psaf = async {
        let r = match &sources.psa {
            None => None,
            Some(psa) => Some(fetch_psa(psa).await),
        };
        emit(events, || FetchEvent::Psa(r.clone()));
        progress.send_modify(|p| p.psa_done = true);
        r
    };
    let (microsoft, dicker_data, psa) = tokio::join!(ms, ddf, psaf);
    let (customers, gdap) = microsoft?;
    Ok(Snapshot {
        started,
        finished: Utc::now(),
        customers,
        gdap,
        dicker_data,
        psa,
    })
}

/// A snapshot taken while the fetch runs: Dicker Data and the PSA complete, Microsoft's data
/// for the customers done so far (`snapshot.customers`), and who is still to come.
#[derive(Debug, Clone)]
pub struct PartialSnapshot {
    pub snapshot: Snapshot,
    /// Customers Partner Center listed whose data has not arrived yet.
    pub pending: Vec<pc::Customer>,
    /// Whether Partner Center's customer list is complete. Until it is, a tenant only Dicker
    /// Data knows may still turn out to be a Partner Center customer.
    pub listing_complete: bool,
}

/// What a [`fetch_streaming`] has delivered so far: fold its events in with [`LiveFetch::apply`].
#[derive(Debug, Clone)]
pub struct LiveFetch {
    pub started: DateTime<Utc>,
    /// Every customer listed so far, in listing order.
    pub listed: Vec<pc::Customer>,
    pub listing_complete: bool,
    /// Customers whose Microsoft data is in, in arrival order.
    pub customers: Vec<CustomerFetch>,
    pub dicker_data: Option<Result<Vec<dd::Subscription>, ApiError>>,
    /// `Some(None)`: no PSA is fetched.
    pub psa: Option<Option<Result<PsaSnapshot, ApiError>>>,
}

impl LiveFetch {
    pub fn new(started: DateTime<Utc>) -> LiveFetch {
        LiveFetch {
            started,
            listed: Vec::new(),
            listing_complete: false,
            customers: Vec::new(),
            dicker_data: None,
            psa: None,
        }
    }

    pub fn apply(&mut self, event: FetchEvent) {
        match event {
            FetchEvent::Listed(page) => self.listed.extend(page),
            FetchEvent::ListingDone => self.listing_complete = true,
            FetchEvent::Customer(c) => self.customers.push(*c),
            FetchEvent::DickerData(r) => self.dicker_data = Some(r),
            FetchEvent::Psa(r) => self.psa = Some(r),
        }
    }

    /// Dicker Data and the PSA are in (whether or not they could be read): what a partial
    /// reconciliation needs besides the customers.
    pub fn ready(&self) -> bool {
        self.dicker_data.is_some() && self.psa.is_some()
    }

    /// The data so far as a [`PartialSnapshot`] taken at `at`; `None` until [`Self::ready`].
    pub fn partial(&self, at: DateTime<Utc>) -> Option<PartialSnapshot> {
        let dicker_data = self.dicker_data.clone()?;
        let psa = self.psa.clone()?;
        let done: std::collections::HashSet<&str> =
            self.customers.iter().map(|c| c.tenant_id()).collect();
        let pending = self
            .listed
            .iter()
            .filter(|c| !done.contains(c.id.as_str()))
            .cloned()
            .collect();
        // In listing order, as the final snapshot has them.
        let position: std::collections::HashMap<&str, usize> = self
            .listed
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.as_str(), i))
            .collect();
        let mut customers: Vec<&CustomerFetch> = self.customers.iter().collect();
        customers.sort_by_key(|c| position.get(c.tenant_id()).copied().unwrap_or(usize::MAX));
        Some(PartialSnapshot {
            snapshot: Snapshot {
                started: self.started,
                finished: at,
                customers: customers.into_iter().cloned().collect(),
                // Not read by the reconciliation: each customer's Graph result already says
                // whether GDAP let cspsync in.
                gdap: Ok(Vec::new()),
                dicker_data,
                psa,
            },
            pending,
            listing_complete: self.listing_complete,
        })
    }
}

/// GDAP state per customer tenant (lower-case id), once the relationships are listed.
type GdapMap = BTreeMap<String, Vec<DelegatedAdminRelationship>>;

/// `Some(map)` when listed; `None` inside means listing failed and every tenant is tried.
type GdapState = Option<Arc<Option<GdapMap>>>;

async fn fetch_microsoft(
    ms: &MicrosoftClients,
    progress: &watch::Sender<FetchProgress>,
    events: Option<&FetchEvents>,
) -> Result<
    (
        Vec<CustomerFetch>,
        Result<Vec<DelegatedAdminRelationship>, ApiError>,
    ),
    ApiError,
> {
    // The GDAP list and the customer list side by side; per-customer Graph work waits for the
    // first, subscriptions only for the second.
    let (gdap_tx, gdap_rx) = watch::channel::<GdapState>(None);
    let gdap = async {
        let r = ms.graph.gdap_relationships().await;
        let map = r.as_ref().ok().map(|list| {
            let mut m = GdapMap::new();
            for rel in list {
                if let Some(t) = rel.tenant_id() {
                    m.entry(t.to_ascii_lowercase())
                        .or_default()
                        .push(rel.clone());
                }
            }
            m
        });
        let _ = gdap_tx.send(Some(Arc::new(map)));
        r
    };
    let customers = async {
        let mut pager = ms.partner_center.customers_pager(CUSTOMERS_PAGE)?;
        let mut tasks: JoinSet<(usize, CustomerFetch)> = JoinSet::new();
        let mut index = 0usize;
        while let Some(page) = pager.next_page().await? {
            progress.send_modify(|p| p.customers_found += page.len());
            emit(events, || FetchEvent::Listed(page.clone()));
            for customer in page {
                let ms = ms.clone();
                let rx = gdap_rx.clone();
                let i = index;
                index += 1;
                tasks.spawn(async move { (i, fetch_customer(&ms, customer, rx).await) });
            }
        }
        emit(events, || FetchEvent::ListingDone);
        progress.send_modify(|p| p.customers_listed = true);
        let mut out: Vec<Option<CustomerFetch>> = (0..index).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((i, c)) => {
                    emit(events, || FetchEvent::Customer(Box::new(c.clone())));
                    if let Some(slot) = out.get_mut(i) {
                        *slot = Some(c);
                    }
                    progress.send_modify(|p| p.customers_done += 1);
                }
                // A panicked task is a bug, not a data problem: surface it rather than
                // silently dropping a customer (DESIGN.md §3).
                Err(e) => return Err(task_failed(Api::PartnerCenter, e)),
            }
        }
        Ok(out.into_iter().flatten().collect::<Vec<_>>())
    };
    let (gdap, customers) = tokio::join!(gdap, customers);
    Ok((customers?, gdap))
}

/// Why Graph is not asked about a tenant, if it is not.
fn gdap_refusal(customer: &pc::Customer, gdap: &GdapState) -> Option<ApiError> {
    let map = gdap.as_ref()?.as_ref().as_ref()?;
    let rels = map.get(&customer.id.to_ascii_lowercase());
    if rels.is_some_and(|r| r.iter().any(DelegatedAdminRelationship::is_active)) {
        return None;
    }
    let name = customer
        .company_profile
        .as_ref()
        .and_then(|p| p.company_name.clone())
        .unwrap_or_else(|| customer.id.clone());
    let why = match rels.and_then(|r| r.iter().max_by_key(|x| x.end_date_time)) {
        Some(r) => {
            let status = r.status.as_deref().unwrap_or("unknown");
            match r.end_date_time {
                Some(end) => format!(
                    "the GDAP relationship with {name} is {status} (ended {})",
                    end.format("%Y-%m-%d")
                ),
                None => format!("the GDAP relationship with {name} is {status}"),
            }
        }
        None => format!("there is no GDAP relationship with {name}"),
    };
    Some(
        ApiError::new(
            Api::Graph,
            ErrorKind::Forbidden,
            format!("cannot read the tenant: {why}"),
        )
        .with_operation("GDAP check"),
    )
}

async fn fetch_customer(
    ms: &MicrosoftClients,
    customer: pc::Customer,
    mut gdap: watch::Receiver<GdapState>,
) -> CustomerFetch {
    let tenant = customer.id.clone();
    let subs = ms.partner_center.subscriptions(&tenant);
    let graph = async {
        let state = match gdap.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        if let Some(refused) = gdap_refusal(&customer, &state) {
            return Err(refused);
        }
        // The tenant's token first, once: both Graph calls then use the cached token.
        ms.session
            .access_token(Resource::Graph, Some(&tenant), false)
            .await?;
        let token = ms.session.token_source(Resource::Graph, Some(&tenant));
        let g = ms.graph.for_tenant(&tenant, token);
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
        PsaClient::Autotask(c) => fetch_autotask(c, Utc::now().date_naive())
            .await
            .map(PsaSnapshot::Autotask),
        PsaClient::Xero { client, tenant_id } => {
            fetch_xero(client, tenant_id).await.map(PsaSnapshot::Xero)
        }
    }
}

/// Values per `in` filter: Autotask allows at most 500 OR conditions per query (§6.2).
const AUTOTASK_IN_CHUNK: usize = 500;

fn task_failed(api: Api, e: tokio::task::JoinError) -> ApiError {
    ApiError::new(
        api,
        ErrorKind::Malformed,
        format!("a fetch task failed: {e}"),
    )
}

/// Run one query per chunk of ids side by side (the client's limiter keeps Autotask's three
/// threads per entity, §6.5) and concatenate in chunk order.
async fn autotask_chunked<T, F>(
    c: &AutotaskClient,
    entity: &'static str,
    ids: Vec<i64>,
    filters: F,
) -> Result<Vec<T>, ApiError>
where
    T: serde::de::DeserializeOwned + Send + 'static,
    F: Fn(Vec<i64>) -> Vec<Filter>,
{
    let mut tasks: JoinSet<(usize, Result<Vec<T>, ApiError>)> = JoinSet::new();
    for (i, chunk) in ids.chunks(AUTOTASK_IN_CHUNK).enumerate() {
        let c = c.clone();
        let q = Query::new(filters(chunk.to_vec()));
        tasks.spawn(async move { (i, c.query::<T>(entity, &q).await) });
    }
    let mut parts: BTreeMap<usize, Vec<T>> = BTreeMap::new();
    while let Some(j) = tasks.join_next().await {
        let (i, r) = j.map_err(|e| task_failed(Api::Autotask, e))?;
        parts.insert(i, r?);
    }
    Ok(parts.into_values().flatten().collect())
}

async fn fetch_autotask(
    c: &AutotaskClient,
    today: chrono::NaiveDate,
) -> Result<AutotaskSnapshot, ApiError> {
    // Recurring Service contracts (contractType 7, §6.3) are where licences are billed.
    let (companies, contracts, services) = tokio::join!(
        c.companies(Vec::new()),
        c.contracts(vec![Filter::eq("contractType", 7)]),
        c.services(Vec::new()),
    );
    let contracts = contracts?;
    let contract_ids: Vec<i64> = contracts.iter().map(|k| k.id).collect();
    let contract_services: Vec<at::ContractService> =
        autotask_chunked(c, "ContractServices", contract_ids, |ids| {
            vec![Filter::is_in("contractID", ids)]
        })
        .await?;
    let cs_ids: Vec<i64> = contract_services.iter().map(|s| s.id).collect();
    // Only the records in force today (§6.3 "current quantity"), not every past period.
    let day = today.format("%Y-%m-%dT00:00:00").to_string();
    let current_units: Vec<at::ContractServiceUnit> =
        autotask_chunked(c, "ContractServiceUnits", cs_ids, move |ids| {
            vec![
                Filter::is_in("contractServiceID", ids),
                Filter::lte("startDate", day.clone()),
                Filter::gte("endDate", day.clone()),
            ]
        })
        .await?;
    Ok(AutotaskSnapshot {
        companies: companies?,
        contracts,
        services: services?,
        contract_services,
        current_units,
    })
}

async fn fetch_xero(c: &XeroClient, tenant: &str) -> Result<XeroSnapshot, ApiError> {
    let q = InvoiceQuery {
        created_by_my_app: true,
        ..InvoiceQuery::default()
    };
    let (contacts, accounts, invoices) = tokio::join!(
        c.contacts(tenant, None),
        c.accounts(tenant, None),
        c.invoices(tenant, &q)
    );
    Ok(XeroSnapshot {
        tenant_id: tenant.to_string(),
        contacts: contacts?,
        accounts: accounts?,
        invoices: invoices?,
    })
}

async fn fetch_connectwise(c: &ConnectWiseClient) -> Result<ConnectWiseSnapshot, ApiError> {
    let (companies, agreements, catalog) =
        tokio::join!(c.companies(None), c.agreements(None), c.catalog(None));
    let agreements = agreements?;
    // Additions live under each agreement (§5.3): one listing per agreement, run side by side
    // (the client's limiter paces them).
    let mut tasks: JoinSet<(u64, Result<Vec<cw::Addition>, ApiError>)> = JoinSet::new();
    for a in agreements.iter().filter(|a| !a.is_closed()) {
        let c = c.clone();
        let id = a.id;
        tasks.spawn(async move { (id, c.additions(id, None).await) });
    }
    let mut additions = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (id, r) = joined.map_err(|e| task_failed(Api::ConnectWise, e))?;
        additions.insert(id, r?);
    }
    Ok(ConnectWiseSnapshot {
        companies: companies?,
        agreements,
        additions,
        catalog: catalog?,
    })
}
