//! Build the API clients from saved settings and secrets: one place for the wizard's "Test
//! connection", `cspsync doctor` and every later command.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::api::autotask::{AutotaskClient, AutotaskCredentials};
use crate::api::connectwise::{self, ConnectWiseClient, ConnectWiseCredentials};
use crate::api::dickerdata::DickerDataClient;
use crate::api::error::{Api, ApiError};
use crate::api::graph::GraphClient;
use crate::api::http::build_client;
use crate::api::partnercenter::PartnerCenterClient;
use crate::api::xero::XeroClient;
use crate::auth::entra::{EntraClient, Resource, Session};
use crate::auth::xero::{XeroAuth, XeroSession};
use crate::config::{Endpoints, Secrets, Settings};
use crate::secret::Secret;

/// The Entra app (public client) cspsync signs in with when the settings name none.
/// A real deployment registers its own app (Microsoft Graph + Partner Center delegated
/// permissions, `http://localhost` redirect) and sets `microsoft.client_id`.
pub const DEFAULT_CLIENT_ID: &str = "9b3c5b1e-6d3a-4a8e-9f0a-2c1d4e5f6a7b";

/// The Xero app ("Auth Code with PKCE") cspsync uses when the settings name none.
pub const DEFAULT_XERO_CLIENT_ID: &str = "CSPSYNCXEROCLIENTID00000000000000";

/// Per-request timeout of interactive calls.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// What every client is built from.
#[derive(Debug, Clone)]
pub struct Context {
    pub endpoints: Endpoints,
    pub http: reqwest::Client,
}

impl Context {
    pub fn new(settings: &Settings) -> Context {
        Context {
            endpoints: settings.endpoints.clone().unwrap_or_default(),
            http: build_client(TIMEOUT),
        }
    }

    pub fn with_endpoints(endpoints: Endpoints) -> Context {
        Context {
            endpoints,
            http: build_client(TIMEOUT),
        }
    }
}

fn missing(api: Api, what: &str) -> ApiError {
    ApiError::config(api, format!("is not set up: {what} is missing"))
}

fn nonempty<'a>(api: Api, v: &'a str, what: &str) -> Result<&'a str, ApiError> {
    let t = v.trim();
    if t.is_empty() {
        Err(missing(api, what))
    } else {
        Ok(t)
    }
}

pub fn entra(ctx: &Context, settings: &Settings) -> EntraClient {
    let id = if settings.microsoft.client_id.trim().is_empty() {
        DEFAULT_CLIENT_ID.to_string()
    } else {
        settings.microsoft.client_id.trim().to_string()
    };
    EntraClient::new(ctx.endpoints.entra.clone(), id, ctx.http.clone())
}

/// The Microsoft session from the stored refresh token.
pub fn session(ctx: &Context, settings: &Settings, secrets: &Secrets) -> Result<Session, ApiError> {
    let rt = secrets
        .microsoft_refresh_token
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| missing(Api::Entra, "the Microsoft sign-in"))?;
    Ok(Session::new(
        entra(ctx, settings),
        oauth2::RefreshToken::new(rt.to_string()),
    ))
}

pub fn graph(ctx: &Context, session: &Session) -> GraphClient {
    GraphClient::new(
        ctx.endpoints.graph.clone(),
        ctx.http.clone(),
        session.token_source(Resource::Graph, None),
    )
}

pub fn partner_center(ctx: &Context, session: &Session) -> PartnerCenterClient {
    PartnerCenterClient::new(
        ctx.endpoints.partnercenter.clone(),
        ctx.http.clone(),
        session.token_source(Resource::PartnerCenter, None),
    )
}

pub fn dicker_data(
    ctx: &Context,
    settings: &Settings,
    secrets: &Secrets,
) -> Result<DickerDataClient, ApiError> {
    let account = nonempty(
        Api::DickerData,
        &settings.distributor.account_code,
        "the Account Code",
    )?;
    let access = secrets
        .dicker_data_access_code
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| missing(Api::DickerData, "the Access Code"))?;
    Ok(DickerDataClient::new(
        ctx.endpoints.dickerdata.clone(),
        ctx.http.clone(),
        account.to_string(),
        Secret::new(access.trim().to_string()),
    ))
}

/// The ConnectWise API base: the endpoints override (the sim), else built from the site.
pub fn connectwise_base(ctx: &Context, settings: &Settings) -> Result<Url, ApiError> {
    match &ctx.endpoints.connectwise {
        Some(u) => Ok(u.clone()),
        None => connectwise::base_from_site(nonempty(
            Api::ConnectWise,
            &settings.psa.connectwise.site,
            "the ConnectWise site",
        )?),
    }
}

pub fn connectwise(
    ctx: &Context,
    settings: &Settings,
    secrets: &Secrets,
) -> Result<ConnectWiseClient, ApiError> {
    let cw = &settings.psa.connectwise;
    let api = Api::ConnectWise;
    let creds = ConnectWiseCredentials {
        company_id: nonempty(api, &cw.company_id, "the company id")?.to_string(),
        public_key: nonempty(api, &cw.public_key, "the public key")?.to_string(),
        private_key: Secret::new(
            secrets
                .connectwise_private_key
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| missing(api, "the private key"))?
                .trim()
                .to_string(),
        ),
        client_id: nonempty(api, &cw.client_id, "the client id")?.to_string(),
    };
    Ok(ConnectWiseClient::new(
        connectwise_base(ctx, settings)?,
        ctx.http.clone(),
        creds,
    ))
}

fn autotask_creds(settings: &Settings, secrets: &Secrets) -> Result<AutotaskCredentials, ApiError> {
    let at = &settings.psa.autotask;
    let api = Api::Autotask;
    Ok(AutotaskCredentials::new(
        nonempty(api, &at.username, "the API user name")?.to_string(),
        secrets
            .autotask_secret
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| missing(api, "the API secret"))?
            .trim()
            .to_string(),
        nonempty(api, &at.integration_code, "the API integration code")?.to_string(),
    ))
}

/// Autotask: the saved zone when there is one, else zone discovery (§6.1).
pub async fn autotask(
    ctx: &Context,
    settings: &Settings,
    secrets: &Secrets,
) -> Result<AutotaskClient, ApiError> {
    let creds = autotask_creds(settings, secrets)?;
    let zone = settings.psa.autotask.zone_url.trim();
    if !zone.is_empty()
        && let Ok(u) = Url::parse(zone)
    {
        return Ok(AutotaskClient::from_zone_url(&u, ctx.http.clone(), creds));
    }
    AutotaskClient::discover(&ctx.endpoints.autotask, ctx.http.clone(), creds).await
}

pub fn xero_auth(ctx: &Context, settings: &Settings) -> XeroAuth {
    let id = if settings.psa.xero.client_id.trim().is_empty() {
        DEFAULT_XERO_CLIENT_ID.to_string()
    } else {
        settings.psa.xero.client_id.trim().to_string()
    };
    XeroAuth::new(
        ctx.endpoints.xero_login.clone(),
        ctx.endpoints.xero_identity.clone(),
        id,
        ctx.http.clone(),
    )
}

/// Xero from the stored (rotating) refresh token; the caller persists the rotated one from
/// `session.refresh_token()`.
pub fn xero(
    ctx: &Context,
    settings: &Settings,
    secrets: &Secrets,
) -> Result<(XeroClient, Arc<XeroSession>), ApiError> {
    let rt = secrets
        .xero_refresh_token
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| missing(Api::Xero, "the Xero sign-in"))?;
    let session = Arc::new(XeroSession::from_refresh_token(
        xero_auth(ctx, settings),
        oauth2::RefreshToken::new(rt.to_string()),
    ));
    Ok((
        XeroClient::new(
            ctx.endpoints.xero_api.clone(),
            ctx.http.clone(),
            session.clone(),
        ),
        session,
    ))
}
