//! The Sync tab's background work: plan (fetch + reconcile + plan), apply (the engine, its
//! events coalesced to at most 10 updates a second), cancel, and reading the audit log.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Cmd, Msg};
use crate::domain::sync::{ApplyEvent, ApplyProgress, Plan};
use crate::engine::pipeline;
use crate::tui::app;
use crate::tui::app::Setup;
use crate::tui::panes::partner::common::{Rotated, setup_sentence, xero_rotated};
use crate::tui::runner::Services;

/// Apply updates reach the screen at most this often (10 a second).
pub const COALESCE_MS: u64 = 100;
/// With nothing new, an update still goes out this often (the elapsed time moves on).
const HEARTBEAT: Duration = Duration::from_secs(1);

pub async fn run(cmd: Cmd, svc: Arc<Services>, tx: Sender<app::Msg>) {
    match cmd {
        Cmd::Plan { generation, setup } => {
            let (result, rotated, xero) = make_plan(generation, &setup, &svc, &tx).await;
            let _ = tx
                .send(app::Msg::Sync(Msg::Planned {
                    generation,
                    result: result.map(Arc::new),
                    rotated,
                    xero,
                }))
                .await;
        }
        Cmd::Apply {
            generation,
            setup,
            plan,
            selected,
            confirm_cautions,
        } => {
            let (result, xero) = apply(
                generation,
                &setup,
                &svc,
                &tx,
                &plan,
                &selected,
                confirm_cautions,
            )
            .await;
            // Cancelling a finished apply does nothing.
            {
                let mut guard = svc.sync.cancel.lock().unwrap_or_else(|p| p.into_inner());
                if guard.as_ref().is_some_and(|(g, _)| *g == generation) {
                    *guard = None;
                }
            }
            let _ = tx
                .send(app::Msg::Sync(Msg::Applied {
                    generation,
                    result,
                    now: Utc::now(),
                    xero,
                }))
                .await;
        }
        Cmd::Cancel { generation } => {
            let guard = svc.sync.cancel.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((g, cancel)) = guard.as_ref()
                && *g == generation
            {
                let _ = cancel.send(true);
            }
        }
        Cmd::ReadAudit => {
            let config = svc.config.clone();
            let r = tokio::task::spawn_blocking(move || crate::audit::read(&config, None))
                .await
                .unwrap_or_else(|e| Err(format!("reading the audit log failed: {e}")));
            let _ = tx.send(app::Msg::Sync(Msg::Audit(r))).await;
        }
    }
}

/// Forward an apply's events and progress to the tab, coalesced: at most one update every
/// [`COALESCE_MS`] (10 a second), one a second when nothing happens, and a last one when the
/// events end. Returns when `events` is closed and everything was sent.
pub async fn forward(
    generation: u64,
    mut events: Receiver<ApplyEvent>,
    progress: watch::Receiver<ApplyProgress>,
    tx: Sender<app::Msg>,
) {
    let period = Duration::from_millis(COALESCE_MS);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut batch: Vec<ApplyEvent> = Vec::new();
    let mut last_progress: Option<ApplyProgress> = None;
    let mut last_sent = Instant::now();
    let send = |batch: Vec<ApplyEvent>, p: ApplyProgress| {
        tx.send(app::Msg::Sync(Msg::Applying {
            generation,
            events: batch,
            progress: p,
            now: Utc::now(),
        }))
    };
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Some(e) => batch.push(e),
                None => break,
            },
            _ = tick.tick() => {
                let p = progress.borrow().clone();
                let changed = last_progress.as_ref() != Some(&p);
                if batch.is_empty() && !changed && last_sent.elapsed() < HEARTBEAT {
                    continue;
                }
                last_progress = Some(p.clone());
                last_sent = Instant::now();
                if send(std::mem::take(&mut batch), p).await.is_err() {
                    return;
                }
            }
        }
    }
    // Whatever is left, at once (the summary must not wait for a tick).
    let p = progress.borrow().clone();
    let _ = send(batch, p).await;
}

/// Fetch (progress to the tab), reconcile exactly as the Reconcile tab does (with the saved
/// mapping decisions), and plan.
async fn make_plan(
    generation: u64,
    setup: &Setup,
    svc: &Services,
    tx: &Sender<app::Msg>,
) -> (Result<Plan, String>, Option<Rotated>, Option<Rotated>) {
    let progress = move |progress| {
        app::Msg::Sync(Msg::Progress {
            generation,
            progress,
        })
    };
    let (r, rotated, xero) = crate::tui::panes::reconcile::live::fetch_and_reconcile(
        setup,
        svc,
        None,
        tx,
        progress,
        |_| None,
    )
    .await;
    let today = Utc::now().date_naive();
    let plan = r.and_then(|(p, rec)| {
        crate::domain::plan::plan(
            &rec,
            &p.snap,
            &p.prices,
            &pipeline::sync_options(&setup.settings),
            today,
        )
        .map_err(|e| e.to_string())
    });
    (plan, rotated, xero)
}

/// Apply the selected writes with the engine: the PSA client from the settings, the journal
/// (in memory in the demo, whose world starts afresh every run; else in the data directory),
/// the audit log of the data directory, the signed-in operator; events forwarded coalesced
/// ([`forward`]); `Cmd::Cancel` reaches the engine through the runtime's cancel switch. `Err`:
/// the apply could not start, or the journal or the audit log could not be written.
async fn apply(
    generation: u64,
    setup: &Setup,
    svc: &Services,
    tx: &Sender<app::Msg>,
    plan: &Plan,
    selected: &[usize],
    confirm_cautions: bool,
) -> (Result<(), String>, Option<Rotated>) {
    use crate::engine::apply::{self, ApplyContext};
    use crate::engine::journal::Journal;
    let settings = &setup.settings;
    let secrets = &setup.secrets;
    // Refused here too: the tab asks first, but the runner is the last line.
    if let Some(why) = super::apply_refusal(setup) {
        return (Err(why), None);
    }
    let c = match pipeline::connect(&svc.ctx, settings, secrets, None).await {
        Ok(c) => c,
        Err(e) => return (Err(setup_sentence(e)), None),
    };
    let rotated_xero = |c: &pipeline::Connected| xero_rotated(secrets, c);
    let Some(psa) = c.sources.psa.as_ref() else {
        return (
            Err("No PSA is set up: connect one in the PSA tab (4) first.".into()),
            None,
        );
    };
    if psa.api() != plan.psa {
        return (
            Err(format!(
                "This plan is for {} but the PSA set up is {}: press r to plan again.",
                plan.psa.display_name(),
                psa.api().display_name()
            )),
            rotated_xero(&c),
        );
    }
    let journal = if svc.demo.is_some() {
        let mut j = svc.sync.journal.lock().unwrap_or_else(|p| p.into_inner());
        j.get_or_insert_with(|| Arc::new(Journal::memory())).clone()
    } else {
        let config = svc.config.clone();
        match tokio::task::spawn_blocking(move || Journal::open(&config)).await {
            Ok(Ok(j)) => Arc::new(j),
            Ok(Err(e)) => return (Err(e), rotated_xero(&c)),
            Err(e) => {
                return (
                    Err(format!("opening the journal failed: {e}")),
                    rotated_xero(&c),
                );
            }
        }
    };
    let ctx = ApplyContext::new(journal, crate::audit::Actor::signed_in(settings))
        .with_audit(svc.config.clone())
        .confirming_cautions(confirm_cautions);
    let mut chosen = vec![false; plan.writes.len()];
    for i in selected {
        if let Some(c) = chosen.get_mut(*i) {
            *c = true;
        }
    }
    let (etx, erx) = tokio::sync::mpsc::channel(1024);
    let (ptx, prx) = watch::channel(ApplyProgress::default());
    let (cancel_tx, cancel_rx) = watch::channel(false);
    *svc.sync.cancel.lock().unwrap_or_else(|p| p.into_inner()) = Some((generation, cancel_tx));
    let fwd = tokio::spawn(forward(generation, erx, prx, tx.clone()));
    let report = apply::apply(psa, plan, &chosen, ctx, etx, &ptx, cancel_rx).await;
    // The engine dropped its sender: the forwarder sends what is left and ends.
    let _ = fwd.await;
    let result = if report.problems.is_empty() {
        Ok(())
    } else {
        Err(report.problems.join("; "))
    };
    (result, rotated_xero(&c))
}
