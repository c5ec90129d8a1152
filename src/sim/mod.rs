//! The simulated world: one loopback HTTP server speaking all seven APIs' wire formats over a
//! stateful dataset (DESIGN.md §2).
//!
//! Every API is mounted under its own path prefix on one port; [`Urls`] gives the base URL
//! that stands in for each real host. Requests pass through the fault layer ([`faults`]):
//! latency, injected 429/5xx/dropped connections and each vendor's documented limits. The
//! control surface lives under `/_sim`, a path no real API uses.
//!
//! This module never imports `api/`, `auth/` or `domain/`: it is an independent reading of
//! reference/external-apis.md, so a wire mistake on either side shows up as a failing test.

pub mod autotask;
pub mod connectwise;
pub mod control;
pub mod dickerdata;
pub mod entra;
pub mod faults;
pub mod generate;
pub mod graph;
pub mod partnercenter;
pub mod tokens;
pub mod util;
pub mod world;
pub mod xero;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use faults::FaultSpec;
pub use world::World;

/// Everything mutable in the sim, behind one lock (held briefly, never across an await).
#[derive(Debug, Default, Serialize)]
pub struct State {
    pub world: World,
    /// Access tokens issued by the sim's Entra and Xero identity endpoints.
    pub tokens: tokens::Tokens,
    pub entra: entra::Runtime,
    pub graph: graph::Runtime,
    pub partnercenter: partnercenter::Runtime,
    pub dickerdata: dickerdata::Runtime,
    pub connectwise: connectwise::Runtime,
    pub autotask: autotask::Runtime,
    pub xero: xero::Runtime,
}

/// Shared by every handler (axum state).
#[derive(Debug)]
pub struct SimInner {
    state: Mutex<State>,
    /// `http://127.0.0.1:PORT`, for absolute URLs in responses (nextLink, Link, nextPageUrl).
    pub origin: String,
    pub faults: faults::FaultLayer,
}

pub type Sim = Arc<SimInner>;

impl SimInner {
    /// Lock the state. A handler that panicked while holding the lock leaves the data as it
    /// was; the sim keeps serving rather than failing every later request.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn urls(&self) -> Urls {
        Urls::for_origin(&self.origin)
    }
}

/// Path prefixes of each API on the sim's server.
pub mod prefix {
    pub const ENTRA: &str = "/entra";
    pub const GRAPH: &str = "/graph/v1.0";
    pub const PARTNER_CENTER: &str = "/partnercenter/v1";
    pub const DICKER_DATA: &str = "/dickerdata/api";
    pub const CONNECTWISE: &str = "/connectwise/v4_6_release/apis/3.0";
    /// Autotask: discovery at `/autotask/atservicesrest/v1.0/zoneInformation`, the zone itself
    /// at `/autotask/zone{n}/atservicesrest/v1.0/...`.
    pub const AUTOTASK: &str = "/autotask";
    pub const XERO_LOGIN: &str = "/xero-login/identity/connect";
    pub const XERO_IDENTITY: &str = "/xero-identity/connect";
    pub const XERO_API: &str = "/xero-api";
    pub const CONTROL: &str = "/_sim";
}

/// The base URL standing in for each real host (issue 2 §3 names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Urls {
    /// Replaces `https://login.microsoftonline.com`.
    pub entra: String,
    /// Replaces `https://graph.microsoft.com/v1.0`.
    pub graph: String,
    /// Replaces `https://api.partnercenter.microsoft.com/v1`.
    pub partnercenter: String,
    /// Replaces `https://b2b-api.dickerdata.com.au/api`.
    pub dickerdata: String,
    /// Replaces `https://{site}/v4_6_release/apis/3.0`.
    pub connectwise: String,
    /// Replaces `https://webservices.autotask.net/atservicesrest`.
    pub autotask: String,
    /// Replaces `https://login.xero.com/identity/connect`.
    pub xero_login: String,
    /// Replaces `https://identity.xero.com/connect`.
    pub xero_identity: String,
    /// Replaces `https://api.xero.com`.
    pub xero_api: String,
    pub control: String,
}

impl Urls {
    pub fn for_origin(origin: &str) -> Urls {
        Urls {
            entra: format!("{origin}{}", prefix::ENTRA),
            graph: format!("{origin}{}", prefix::GRAPH),
            partnercenter: format!("{origin}{}", prefix::PARTNER_CENTER),
            dickerdata: format!("{origin}{}", prefix::DICKER_DATA),
            connectwise: format!("{origin}{}", prefix::CONNECTWISE),
            autotask: format!("{origin}{}/atservicesrest", prefix::AUTOTASK),
            xero_login: format!("{origin}{}", prefix::XERO_LOGIN),
            xero_identity: format!("{origin}{}", prefix::XERO_IDENTITY),
            xero_api: format!("{origin}{}", prefix::XERO_API),
            control: format!("{origin}{}", prefix::CONTROL),
        }
    }

    /// `NAME URL` lines, as `cspsync sim` prints them.
    pub fn lines(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("entra", &self.entra),
            ("graph", &self.graph),
            ("partnercenter", &self.partnercenter),
            ("dickerdata", &self.dickerdata),
            ("connectwise", &self.connectwise),
            ("autotask", &self.autotask),
            ("xero-login", &self.xero_login),
            ("xero-identity", &self.xero_identity),
            ("xero-api", &self.xero_api),
            ("control", &self.control),
        ]
    }
}

/// A running sim. Dropping the handle stops the server.
#[derive(Debug)]
pub struct SimHandle {
    pub addr: SocketAddr,
    pub sim: Sim,
    shutdown: watch::Sender<bool>,
}

impl SimHandle {
    pub fn urls(&self) -> Urls {
        self.sim.urls()
    }

    /// Stop accepting connections (open ones finish their current request).
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The router of every API plus the control surface, without the fault layer.
pub fn router(sim: Sim) -> Router {
    Router::new()
        .nest(prefix::ENTRA, entra::router())
        .nest(prefix::GRAPH, graph::router())
        .nest(prefix::PARTNER_CENTER, partnercenter::router())
        .nest(prefix::DICKER_DATA, dickerdata::router())
        .nest(prefix::CONNECTWISE, connectwise::router())
        .nest(prefix::AUTOTASK, autotask::router())
        .nest(prefix::XERO_LOGIN, xero::login_router())
        .nest(prefix::XERO_IDENTITY, xero::identity_router())
        .nest(prefix::XERO_API, xero::api_router())
        .nest(prefix::CONTROL, control::router())
        .with_state(sim)
}

/// Start the sim on `listen` (use `127.0.0.1:0` for an ephemeral port).
pub async fn start(
    world: World,
    faults: FaultSpec,
    listen: SocketAddr,
) -> std::io::Result<SimHandle> {
    if !listen.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "the simulated world listens on loopback only; {listen} is not a loopback address (use 127.0.0.1:PORT)"
            ),
        ));
    }
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let sim: Sim = Arc::new(SimInner {
        state: Mutex::new(State {
            world,
            ..State::default()
        }),
        origin: format!("http://{addr}"),
        faults: faults::FaultLayer::new(faults),
    });
    let app = router(sim.clone());
    let (tx, mut rx) = watch::channel(false);
    let accept_sim = sim.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _peer)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let app = app.clone();
                    let sim = accept_sim.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            faults::handle(sim.clone(), app.clone(), req)
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                _ = rx.changed() => break,
            }
        }
    });
    Ok(SimHandle {
        addr,
        sim,
        shutdown: tx,
    })
}
