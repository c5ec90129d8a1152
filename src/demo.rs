//! Demo mode: the real clients, connected to an in-process simulated world.
//!
//! Everything a technician would type in the setup wizard (Dicker Data codes, PSA keys) is
//! read from the world, as if typed; every sign-in runs the real OAuth flow against the sim:
//! the Microsoft device code is approved through the sim's control surface (the person at the
//! "browser"), and Xero's consent page is the sim's automatic one, whose redirect is read the
//! way the paste-the-redirect-URL fallback reads it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::api::autotask::{AutotaskClient, AutotaskCredentials};
use crate::api::connectwise::{ConnectWiseClient, ConnectWiseCredentials};
use crate::api::dickerdata::DickerDataClient;
use crate::api::error::{Api, ApiError, ErrorKind};
use crate::api::graph::GraphClient;
use crate::api::http::build_client;
use crate::api::partnercenter::PartnerCenterClient;
use crate::api::xero::XeroClient;
use crate::auth::entra::{EntraClient, Resource, Session};
use crate::auth::loopback::Redirect;
use crate::auth::xero::{XeroAuth, XeroSession};
use crate::config::Endpoints;
use crate::engine::fetch::{MicrosoftClients, PsaClient, Sources};
use crate::secret::Secret;
use crate::sim::{SimHandle, World};

/// Which PSA the demo connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PsaKind {
    #[value(name = "connectwise")]
    ConnectWise,
    Autotask,
    Xero,
    None,
}

/// Per-request timeout of the demo's HTTP client.
const TIMEOUT: Duration = Duration::from_secs(60);

fn sim_error(api: Api, what: impl std::fmt::Display) -> ApiError {
    ApiError::new(api, ErrorKind::Config, format!("demo: {what}"))
}

/// Sign in to Microsoft on the sim with the device code flow, approving it as the world's
/// setup admin through the control surface.
pub async fn sign_in_microsoft(sim: &SimHandle, world: &World) -> Result<Session, ApiError> {
    let urls = sim.urls();
    let endpoints = Endpoints::from_sim(&urls).map_err(|e| sim_error(Api::Entra, e))?;
    let http = build_client(TIMEOUT);
    let entra = EntraClient::new(endpoints.entra, world.app.client_id.clone(), http.clone());
    let start = entra.start_device_code().await?;
    let approved = http
        .post(format!("{}/device/approve", urls.control))
        .json(&serde_json::json!({"user_code": start.user_code}))
        .send()
        .await
        .map_err(|e| sim_error(Api::Entra, format!("approving the device code failed: {e}")))?;
    if !approved.status().is_success() {
        return Err(sim_error(
            Api::Entra,
            format!(
                "the sim refused to approve the device code (HTTP {})",
                approved.status()
            ),
        ));
    }
    let (_cancel_tx, cancel_rx) = watch::channel(false);
    let tokens = entra.wait_for_device_code(&start, cancel_rx).await?;
    Session::from_sign_in(entra, &tokens)
}

/// The sim's Xero consent, given (auth code + PKCE, §7.1): the consent page answers at once
/// with a redirect to our redirect URI, read as the paste-the-address fallback reads what a
/// person pastes. Returns the client and its session (whose refresh token a setup stores).
pub async fn xero_auto_consent(
    auth: XeroAuth,
    api_base: url::Url,
    http: reqwest::Client,
) -> Result<(XeroClient, Arc<XeroSession>), ApiError> {
    let redirect_uri =
        url::Url::parse("http://localhost:53682/callback").map_err(|e| sim_error(Api::Xero, e))?;
    let request = auth.start(&redirect_uri);
    let resp = http
        .get(request.url().clone())
        .send()
        .await
        .map_err(|e| sim_error(Api::Xero, format!("the consent page did not answer: {e}")))?;
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            sim_error(
                Api::Xero,
                format!("the consent page did not redirect (HTTP {})", resp.status()),
            )
        })?
        .to_string();
    let redirect = Redirect::from_url(&location).map_err(|e| sim_error(Api::Xero, e))?;
    let tokens = auth.complete(request, redirect).await?;
    let session = Arc::new(XeroSession::new(auth, tokens));
    Ok((XeroClient::new(api_base, http, session.clone()), session))
}

/// Sign in to Xero on the sim and pick the first connected organisation.
pub async fn sign_in_xero(
    sim: &SimHandle,
    world: &World,
) -> Result<(XeroClient, String), ApiError> {
    let endpoints = Endpoints::from_sim(&sim.urls()).map_err(|e| sim_error(Api::Xero, e))?;
    let http = build_client(TIMEOUT);
    let auth = XeroAuth::new(
        endpoints.xero_login,
        endpoints.xero_identity,
        world.app.xero_client_id.clone(),
        http.clone(),
    );
    let (client, _session) = xero_auto_consent(auth, endpoints.xero_api, http).await?;
    let connections = client.connections().await?;
    let tenant = connections
        .first()
        .map(|c| c.tenant_id.clone())
        .ok_or_else(|| sim_error(Api::Xero, "no organisation is connected"))?;
    Ok((client, tenant))
}

/// Connect every client to the sim: Microsoft (signed in), Dicker Data, and `psa`.
pub async fn connect(sim: &SimHandle, world: &World, psa: PsaKind) -> Result<Sources, ApiError> {
    let session = sign_in_microsoft(sim, world).await?;
    sources(sim, world, session, psa).await
}

/// Every client, on a Microsoft session signed in already (a fresh `Session` from a stored
/// refresh token behaves as a new process does: no access token cached).
pub async fn sources(
    sim: &SimHandle,
    world: &World,
    session: Session,
    psa: PsaKind,
) -> Result<Sources, ApiError> {
    let endpoints = Endpoints::from_sim(&sim.urls()).map_err(|e| sim_error(Api::Entra, e))?;
    let http = build_client(TIMEOUT);
    let microsoft = MicrosoftClients {
        partner_center: PartnerCenterClient::new(
            endpoints.partnercenter.clone(),
            http.clone(),
            session.token_source(Resource::PartnerCenter, None),
        ),
        graph: GraphClient::new(
            endpoints.graph.clone(),
            http.clone(),
            session.token_source(Resource::Graph, None),
        ),
        session,
    };
    let dd = &world.dicker_data;
    let dicker_data = DickerDataClient::new(
        endpoints.dickerdata.clone(),
        http.clone(),
        dd.account_code.clone(),
        Secret::new(dd.access_code.clone()),
    );
    let psa = match psa {
        PsaKind::None => None,
        PsaKind::ConnectWise => {
            let cw = &world.connectwise;
            let base = endpoints
                .connectwise
                .clone()
                .ok_or_else(|| sim_error(Api::ConnectWise, "the sim has no ConnectWise URL"))?;
            Some(PsaClient::ConnectWise(ConnectWiseClient::new(
                base,
                http.clone(),
                ConnectWiseCredentials {
                    company_id: cw.company_id.clone(),
                    public_key: cw.public_key.clone(),
                    private_key: Secret::new(cw.private_key.clone()),
                    client_id: cw.client_ids.first().cloned().unwrap_or_default(),
                },
            )))
        }
        PsaKind::Autotask => {
            let at = &world.autotask;
            let creds = AutotaskCredentials::new(
                at.username.clone(),
                at.secret.clone(),
                at.integration_codes.first().cloned().unwrap_or_default(),
            );
            Some(PsaClient::Autotask(
                AutotaskClient::discover(&endpoints.autotask, http.clone(), creds).await?,
            ))
        }
        PsaKind::Xero => {
            let (client, tenant_id) = sign_in_xero(sim, world).await?;
            Some(PsaClient::Xero { client, tenant_id })
        }
    };
    Ok(Sources {
        microsoft,
        dicker_data,
        psa,
    })
}
