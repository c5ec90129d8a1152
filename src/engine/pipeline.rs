//! The one path from the saved settings to a reconciliation, shared by the `reconcile` and
//! `sync` commands, the Reconcile and Sync tabs and the benchmarks: the clients from the
//! settings ([`connect`]), the fetch with Dicker Data's prices ([`fetch_priced`]), and the
//! reconciliation with the saved manual mapping decisions ([`reconcile`]).

use std::sync::Arc;

use tokio::sync::watch;

use crate::api::dickerdata::DickerDataClient;
use crate::api::error::ApiError;
use crate::auth::xero::XeroSession;
use crate::config::{PsaKindSetting, Secrets, Settings};
use crate::demo::PsaKind;
use crate::domain::{Options, Overrides, PriceBook, ProductKey, Reconciliation};
use crate::engine::fetch::{
    self, FetchEvents, FetchProgress, MicrosoftClients, PsaClient, Snapshot, Sources,
};

/// Stock codes per `PricingRequest` call (the codes travel in the query string, §4.4).
const PRICE_CHUNK: usize = 40;

/// The clients of a run, from the saved settings.
pub struct Connected {
    pub sources: Sources,
    /// The Xero session, when Xero is the PSA: it rotates its refresh token on every use
    /// (§7.1), so the one it holds after the run must be saved.
    pub xero: Option<Arc<XeroSession>>,
}

/// The clients, from the saved settings; refuses with what to do when setup is incomplete.
/// `psa`: the PSA to reconcile against (default: the one set up).
pub async fn connect(
    ctx: &crate::connect::Context,
    settings: &Settings,
    secrets: &Secrets,
    psa: Option<PsaKind>,
) -> Result<Connected, String> {
    use crate::connect;
    let setup = |e: ApiError| {
        format!(
            "{e}; finish the setup (run `cspsync` and complete the wizard) or check it with `cspsync doctor`"
        )
    };
    let session = connect::session(ctx, settings, secrets).map_err(setup)?;
    let dicker_data = connect::dicker_data(ctx, settings, secrets).map_err(setup)?;
    let kind = match psa {
        Some(k) => k,
        None => match settings.psa.kind {
            PsaKindSetting::ConnectWise => PsaKind::ConnectWise,
            PsaKindSetting::Autotask => PsaKind::Autotask,
            PsaKindSetting::Xero => PsaKind::Xero,
            PsaKindSetting::None => {
                return Err("the PSA is not set up: finish the setup wizard's PSA step, or pass `--psa none` to reconcile Dicker Data and Microsoft only".into());
            }
        },
    };
    let mut xero = None;
    let psa = match kind {
        PsaKind::None => None,
        PsaKind::ConnectWise => Some(PsaClient::ConnectWise(
            connect::connectwise(ctx, settings, secrets).map_err(setup)?,
        )),
        PsaKind::Autotask => Some(PsaClient::Autotask(
            connect::autotask(ctx, settings, secrets)
                .await
                .map_err(setup)?,
        )),
        PsaKind::Xero => {
            let tenant_id = settings.psa.xero.tenant_id.trim().to_string();
            if tenant_id.is_empty() {
                return Err("Xero is not set up: no organisation is chosen; finish the setup wizard's PSA step".into());
            }
            let (client, session) = connect::xero(ctx, settings, secrets).map_err(setup)?;
            xero = Some(session);
            Some(PsaClient::Xero { client, tenant_id })
        }
    };
    let microsoft = MicrosoftClients {
        partner_center: connect::partner_center(ctx, &session),
        graph: connect::graph(ctx, &session),
        session,
    };
    Ok(Connected {
        sources: Sources {
            microsoft,
            dicker_data,
            psa,
        },
        xero,
    })
}

/// Dicker Data's buy prices for every licence stock code the snapshot involves
/// (`PricingRequest`, §4.4), for the money figures of distributor gaps.
pub async fn distributor_prices(
    client: &DickerDataClient,
    snap: &Snapshot,
) -> Result<PriceBook, ApiError> {
    let codes: Vec<String> = crate::domain::stock_codes(snap).into_iter().collect();
    let mut book = PriceBook {
        fetched_at: Some(chrono::Utc::now()),
        ..PriceBook::default()
    };
    let calls = codes.chunks(PRICE_CHUNK).map(|chunk| {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        async move { client.prices(&refs).await }
    });
    for prices in futures_util::future::join_all(calls).await {
        for p in prices? {
            if let (Some(code), Some(price)) = (
                p.part_number
                    .as_deref()
                    .and_then(ProductKey::from_stock_code)
                    .and_then(|k| k.stock_code()),
                p.unit_price,
            ) {
                book.unit_costs.insert(code, price);
            }
        }
    }
    Ok(book)
}

/// A fetch and Dicker Data's prices for it.
pub struct Priced {
    pub snap: Snapshot,
    /// Empty when they could not be read ([`Priced::prices_error`]): the money then comes from
    /// the PSA.
    pub prices: PriceBook,
    pub prices_error: Option<ApiError>,
}

/// Fetch everything (progress on `progress`; each source's data on `events` as it arrives,
/// when given), then Dicker Data's prices.
pub async fn fetch_priced(
    sources: &Sources,
    progress: &watch::Sender<FetchProgress>,
    events: Option<&FetchEvents>,
) -> Result<Priced, ApiError> {
    let snap = fetch::fetch_streaming(sources, progress, events).await?;
    Ok(priced(sources, snap).await)
}

/// The snapshot with Dicker Data's prices for it; without them (said in `prices_error`) the
/// money comes from the PSA.
async fn priced(sources: &Sources, snap: Snapshot) -> Priced {
    let (prices, prices_error) = match distributor_prices(&sources.dicker_data, &snap).await {
        Ok(p) => (p, None),
        Err(e) => (PriceBook::default(), Some(e)),
    };
    Priced {
        snap,
        prices,
        prices_error,
    }
}

/// The reconciliation of a snapshot with Dicker Data's prices and the manual mapping
/// decisions (`settings.mapping`).
pub fn reconcile(
    snap: &Snapshot,
    prices: &PriceBook,
    overrides: &Overrides,
) -> Result<Reconciliation, ApiError> {
    let opts = Options {
        overrides: overrides.clone(),
        prices: prices.clone(),
        ..Options::default()
    };
    crate::domain::reconcile(snap, &opts)
}

/// [`fetch_priced`] then [`reconcile`] (on the blocking pool), for a screen: errors are one
/// sentence with what to do. `progress` and `events` are dropped once the fetch has ended, so
/// their listeners end before the prices are asked for.
pub async fn fetch_and_reconcile(
    sources: &Sources,
    overrides: &Overrides,
    progress: watch::Sender<FetchProgress>,
    events: Option<FetchEvents>,
) -> Result<(Priced, Reconciliation), String> {
    let snap = fetch::fetch_streaming(sources, &progress, events.as_ref()).await;
    drop(events);
    drop(progress);
    let snap = snap.map_err(|e| sentence(&e))?;
    let priced = priced(sources, snap).await;
    let overrides = overrides.clone();
    tokio::task::spawn_blocking(move || {
        let r = reconcile(&priced.snap, &priced.prices, &overrides);
        r.map(|r| (priced, r))
    })
    .await
    .map_err(|e| format!("The reconciliation failed unexpectedly ({e})."))?
    .map_err(|e| sentence(&e))
}

/// An API error and its hint.
fn sentence(e: &ApiError) -> String {
    format!("{e}. {}", e.hint())
}

/// What the sync planner is given besides the reconciliation, from the settings.
pub fn sync_options(settings: &Settings) -> crate::domain::sync::SyncOptions {
    let chosen = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
    crate::domain::sync::SyncOptions {
        style: settings.sync.style,
        price_overrides: settings.sync.price_overrides.clone(),
        xero_supplier_contact_id: chosen(&settings.psa.xero.contact_id),
        xero_revenue_account: chosen(&settings.psa.xero.revenue_account_code),
        xero_expense_account: chosen(&settings.psa.xero.expense_account_code),
    }
}
