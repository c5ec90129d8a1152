//! The effect runner: turns [`Effect`]s into background tasks on the tokio runtime and sends
//! their results back as messages. A task that panics is reported as fatal, never swallowed.

use std::sync::Arc;

use tokio::sync::mpsc::Sender;

use crate::config::ConfigDir;
use crate::connect;

use super::app::{Effect, Msg, Setup};
use super::panes::{distributor, partner, psa, reconcile, signin, sync, users};

/// Demo mode: what the runner knows about the in-process simulated world.
#[derive(Debug, Clone)]
pub struct Demo {
    /// The sim's control surface (`…/_sim`).
    pub control: String,
}

/// What background work needs: where the APIs are, where settings go, and each pane's
/// runtime (kept between its commands).
#[derive(Debug)]
pub struct Services {
    pub ctx: connect::Context,
    pub config: ConfigDir,
    pub demo: Option<Demo>,
    pub signin: signin::Runtime,
    pub distributor: distributor::Runtime,
    pub partner: partner::Runtime,
    pub psa: psa::Runtime,
    pub users: users::Runtime,
    pub reconcile: reconcile::Runtime,
    pub sync: sync::Runtime,
}

impl Services {
    pub fn new(ctx: connect::Context, config: ConfigDir, demo: Option<Demo>) -> Services {
        Services {
            ctx,
            config,
            demo,
            signin: signin::Runtime::default(),
            distributor: distributor::Runtime::default(),
            partner: partner::Runtime::default(),
            psa: psa::Runtime::default(),
            users: users::Runtime::default(),
            reconcile: reconcile::Runtime::default(),
            sync: sync::Runtime::default(),
        }
    }
}

/// Start one effect in the background.
pub fn spawn(effect: Effect, svc: Arc<Services>, tx: Sender<Msg>) {
    let tx_task = tx.clone();
    let handle = match effect {
        Effect::SignIn(c) => tokio::spawn(signin::run(c, svc, tx_task)),
        Effect::Distributor(c) => tokio::spawn(distributor::run(c, svc, tx_task)),
        Effect::Partner(c) => tokio::spawn(partner::run(c, svc, tx_task)),
        Effect::Psa(c) => tokio::spawn(psa::run(c, svc, tx_task)),
        Effect::Users(c) => tokio::spawn(users::run(c, svc, tx_task)),
        Effect::Reconcile(c) => tokio::spawn(reconcile::run(c, svc, tx_task)),
        Effect::Sync(c) => tokio::spawn(sync::run(c, svc, tx_task)),
        Effect::Save(setup) => tokio::spawn(save(*setup, svc, tx_task)),
        Effect::Audit(event) => tokio::spawn(audit(*event, svc)),
        // Handled by `app::update`; nothing to run.
        Effect::RunReconcile => return,
    };
    // A panicked task is a bug: the person sees it and the app stops cleanly (DESIGN.md §3).
    tokio::spawn(async move {
        if let Err(e) = handle.await
            && e.is_panic()
        {
            let _ = tx
                .send(Msg::Fatal(format!(
                    "a background task failed unexpectedly ({e}); see the log file"
                )))
                .await;
        }
    });
}

async fn audit(event: crate::audit::Event, svc: Arc<Services>) {
    let config = svc.config.clone();
    match tokio::task::spawn_blocking(move || crate::audit::record(&config, &event)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("audit log: {e}"),
        Err(e) => tracing::warn!("audit log: the task failed: {e}"),
    }
}

async fn save(setup: Setup, svc: Arc<Services>, tx: Sender<Msg>) {
    let config = svc.config.clone();
    let r = tokio::task::spawn_blocking(move || {
        config.save_settings(&setup.settings)?;
        config.save_secrets(&setup.secrets)
    })
    .await
    .unwrap_or_else(|e| Err(format!("the save task failed: {e}")));
    let _ = tx.send(Msg::Saved(r)).await;
}
