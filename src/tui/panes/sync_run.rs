//! The Sync tab's background work: plan (fetch + reconcile + plan), apply (the engine, its
//! events coalesced to at most 10 updates a second), cancel, and reading the audit log.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Cmd, Msg};
use crate::domain::sync::{ApplyEvent, ApplyProgress};
use crate::tui::app;
use crate::tui::runner::Services;

/// Apply updates reach the screen at most this often (10 a second).
pub const COALESCE_MS: u64 = 100;
/// With nothing new, an update still goes out this often (the elapsed time moves on).
const HEARTBEAT: Duration = Duration::from_secs(1);

pub async fn run(cmd: Cmd, svc: Arc<Services>, tx: Sender<app::Msg>) {
    match cmd {
        Cmd::Plan { generation, setup } => {
            let _ = (&setup, &svc);
            let _ = tx
                .send(app::Msg::Sync(Msg::Planned {
                    generation,
                    result: Err("planning is not in this build of cspsync yet".into()),
                    rotated: None,
                    xero: None,
                }))
                .await;
        }
        Cmd::Apply { generation, .. } => {
            let _ = tx
                .send(app::Msg::Sync(Msg::Applied {
                    generation,
                    result: Err("applying is not in this build of cspsync yet".into()),
                    now: Utc::now(),
                    xero: None,
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
