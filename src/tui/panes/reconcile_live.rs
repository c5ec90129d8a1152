//! The Reconcile tab's run: fetch everything, and while the fetch goes on, reconcile the
//! customers already in (with Dicker Data and the PSA complete) at most four times a second,
//! off the UI thread, so the table fills live (`Msg::Partial`); then the final
//! reconciliation of the whole snapshot (`Msg::Finished`, sent by the caller). Also the
//! fetch-and-reconcile both the Reconcile and the Sync tab start from ([`fetch_and_reconcile`]).

use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc::{self, Sender, UnboundedReceiver};
use tokio::task::{JoinError, JoinHandle};

use super::super::partner::common::{Rotated, rotated_by, setup_sentence};
use super::Msg;
use crate::api::dickerdata::DickerDataClient;
use crate::domain::{Options, Overrides, PriceBook, Reconciliation};
use crate::engine::fetch::{FetchEvent, FetchEvents, FetchProgress, LiveFetch, Snapshot, Sources};
use crate::engine::pipeline::{self, Priced};
use crate::tui::app::{self, Setup};
use crate::tui::runner::Services;

/// At most one partial reconciliation started per this long (≤ 4 a second).
const LIVE_EVERY: Duration = Duration::from_millis(250);

pub(super) async fn run_reconcile(
    generation: u64,
    setup: &Setup,
    svc: &Services,
    tx: &Sender<app::Msg>,
) -> (
    Result<Reconciliation, String>,
    Option<Rotated>,
    Option<Rotated>,
) {
    use crate::config::PsaKindSetting;
    // No PSA chosen: reconcile Dicker Data and Microsoft only.
    let psa =
        (setup.settings.psa.kind == PsaKindSetting::None).then_some(crate::demo::PsaKind::None);
    let overrides = setup.settings.mapping.clone();
    let progress = move |progress| {
        app::Msg::Reconcile(Msg::Progress {
            generation,
            progress,
        })
    };
    let (r, rotated, xero) = fetch_and_reconcile(setup, svc, psa, tx, progress, |sources| {
        let (etx, erx) = mpsc::unbounded_channel();
        let live = tokio::spawn(live_fill(
            generation,
            erx,
            sources.dicker_data.clone(),
            overrides,
            tx.clone(),
        ));
        Some((etx, live))
    })
    .await;
    (r.map(|(_, r)| r), rotated, xero)
}

/// What the Reconcile and Sync tabs start from: the clients from the settings, the fetch (its
/// progress sent to `tx` as `progress` makes it; its data to the task `live` starts, if any,
/// which is waited for), Dicker Data's prices and the reconciliation with the saved mapping
/// decisions ([`pipeline::fetch_and_reconcile`]); and the refresh tokens the sessions
/// rotated, whatever the outcome.
pub(crate) async fn fetch_and_reconcile(
    setup: &Setup,
    svc: &Services,
    psa: Option<crate::demo::PsaKind>,
    tx: &Sender<app::Msg>,
    progress: impl Fn(FetchProgress) -> app::Msg + Send + 'static,
    live: impl FnOnce(&Sources) -> Option<(FetchEvents, JoinHandle<()>)>,
) -> (
    Result<(Priced, Reconciliation), String>,
    Option<Rotated>,
    Option<Rotated>,
) {
    let c = match pipeline::connect(&svc.ctx, &setup.settings, &setup.secrets, psa).await {
        Ok(c) => c,
        Err(e) => return (Err(setup_sentence(e)), None, None),
    };
    let (ptx, mut prx) = tokio::sync::watch::channel(FetchProgress::default());
    let fwd_tx = tx.clone();
    let forward = tokio::spawn(async move {
        while prx.changed().await.is_ok() {
            let p = prx.borrow_and_update().clone();
            let _ = fwd_tx.send(progress(p)).await;
        }
    });
    let (events, live) = live(&c.sources).unzip();
    let r = pipeline::fetch_and_reconcile(&c.sources, &setup.settings.mapping, ptx, events).await;
    let _ = forward.await;
    // Every partial is sent (or dropped) before the final result.
    if let Some(live) = live {
        let _ = live.await;
    }
    let (rotated, xero) = rotated_by(&setup.secrets, &c);
    (r, rotated, xero)
}

/// Wait for a background task if there is one; never completes otherwise.
async fn joined<T>(h: &mut Option<JoinHandle<T>>) -> Result<T, JoinError> {
    match h {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

/// Fold the fetch's events and send the customers reconciled so far, at most every
/// [`LIVE_EVERY`], one reconciliation at a time on the blocking pool. Dicker Data's prices
/// for its own stock codes are asked for as soon as its lines are in, so the money shown
/// while fetching is what the end will show for those lines. Ends when the fetch does; a
/// partial still being computed then is dropped (the final result follows).
async fn live_fill(
    generation: u64,
    mut events: UnboundedReceiver<FetchEvent>,
    dicker_data: DickerDataClient,
    overrides: Overrides,
    tx: Sender<app::Msg>,
) {
    let mut live = LiveFetch::new(Utc::now());
    // Dicker Data's prices: asked for once, when its lines arrive.
    let mut prices: Option<JoinHandle<PriceBook>> = None;
    let mut asked = false;
    let mut book = PriceBook::default();
    // A partial reconciliation under way, and how many customers it has.
    let mut reconciling: Option<JoinHandle<Option<(Reconciliation, usize)>>> = None;
    let mut dirty = false;
    let mut tick = tokio::time::interval(LIVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(e) => {
                    if let FetchEvent::DickerData(Ok(lines)) = &e
                        && !asked
                    {
                        asked = true;
                        let only_dd = Snapshot {
                            started: live.started,
                            finished: Utc::now(),
                            customers: Vec::new(),
                            gdap: Ok(Vec::new()),
                            dicker_data: Ok(lines.clone()),
                            psa: None,
                        };
                        let client = dicker_data.clone();
                        prices = Some(tokio::spawn(async move {
                            pipeline::distributor_prices(&client, &only_dd)
                                .await
                                .unwrap_or_default()
                        }));
                    }
                    live.apply(e);
                    dirty = true;
                }
                None => break,
            },
            r = joined(&mut prices), if prices.is_some() => {
                prices = None;
                if let Ok(b) = r {
                    book = b;
                    dirty = true;
                }
            }
            r = joined(&mut reconciling), if reconciling.is_some() => {
                reconciling = None;
                if let Ok(Some((result, customers))) = r {
                    let _ = tx
                        .send(app::Msg::Reconcile(Msg::Partial {
                            generation,
                            result: std::sync::Arc::new(result),
                            customers,
                        }))
                        .await;
                }
            }
            _ = tick.tick(), if dirty && reconciling.is_none() && live.ready() => {
                dirty = false;
                if let Some(p) = live.partial(Utc::now()) {
                    let opts = Options {
                        overrides: overrides.clone(),
                        prices: book.clone(),
                        now: None,
                    };
                    let customers = p.snapshot.customers.len();
                    reconciling = Some(tokio::task::spawn_blocking(move || {
                        crate::domain::reconcile_partial(&p, &opts)
                            .ok()
                            .map(|r| (r, customers))
                    }));
                }
            }
        }
    }
    if let Some(h) = prices {
        h.abort();
    }
}
