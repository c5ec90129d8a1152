//! The PSA tab's background work: test ConnectWise and Autotask, and run the Xero sign-in
//! (auth code + PKCE, reference/external-apis.md §7.1) with its lists (§7.2, §7.4, §7.5).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc::{self, Receiver, Sender};
use url::Url;

use super::{AtFound, Cmd, CwFound, Item, Msg};
use crate::api::autotask::Filter;
use crate::api::error::{Api, ApiError, ErrorKind};
use crate::api::xero::{self, XeroClient};
use crate::auth::loopback::{LoopbackListener, Redirect};
use crate::auth::xero::{AuthorizationRequest, XeroSession};
use crate::config::{Secrets, Settings};
use crate::connect;
use crate::secret::Secret;
use crate::tui::app;
use crate::tui::runner::Services;

/// How long the sign-in waits for the browser (or a pasted address).
const SIGN_IN_WAIT: Duration = Duration::from_secs(15 * 60);
/// Demo mode: the "person at the browser" allows access after this long, so the address
/// can be seen on screen first.
const DEMO_CONSENT_DELAY: Duration = Duration::from_millis(1500);

/// What the Xero sign-in keeps between commands: the pending sign-in's paste channel and,
/// once signed in, the client and its session (whose refresh token rotates).
#[derive(Debug, Default)]
pub struct Runtime {
    xero: Mutex<XeroRuntime>,
}

#[derive(Debug, Default)]
struct XeroRuntime {
    /// The generation of the sign-in the rest belongs to.
    generation: u64,
    /// Delivers a pasted address to the waiting sign-in; dropping it cancels the wait.
    paste: Option<Sender<Secret>>,
    client: Option<XeroClient>,
    session: Option<Arc<XeroSession>>,
}

impl Runtime {
    fn xero(&self) -> MutexGuard<'_, XeroRuntime> {
        // A panic while holding this lock is already fatal for the app; the data stays usable.
        self.xero.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn send(tx: &Sender<app::Msg>, m: Msg) {
    let _ = tx.send(app::Msg::Psa(m)).await;
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub async fn run(cmd: Cmd, svc: Arc<Services>, tx: Sender<app::Msg>) {
    match cmd {
        Cmd::TestConnectWise {
            generation,
            settings,
            secrets,
        } => {
            let result = test_connectwise(&svc, &settings, &secrets).await;
            send(&tx, Msg::ConnectWise { generation, result }).await;
        }
        Cmd::TestAutotask {
            generation,
            settings,
            secrets,
        } => {
            let result = test_autotask(&svc, &settings, &secrets).await;
            send(&tx, Msg::Autotask { generation, result }).await;
        }
        Cmd::XeroStart {
            generation,
            settings,
        } => {
            if let Err(error) = xero_sign_in(&svc, &settings, generation, &tx).await {
                // A cancelled sign-in says nothing: the pane already moved on.
                if current(&svc, generation) {
                    send(&tx, Msg::XeroFailed { generation, error }).await;
                }
            }
        }
        Cmd::XeroPaste { generation, url } => {
            let paste = {
                let rt = svc.psa.xero();
                (rt.generation == generation)
                    .then(|| rt.paste.clone())
                    .flatten()
            };
            match paste {
                Some(p) => {
                    let _ = p.send(url).await;
                }
                None => {
                    send(
                        &tx,
                        Msg::XeroPasteRejected {
                            generation,
                            reason: "This sign-in is no longer waiting: press Authenticate and start again.".into(),
                        },
                    )
                    .await;
                }
            }
        }
        Cmd::XeroCancel { generation } => {
            let mut rt = svc.psa.xero();
            rt.generation = rt.generation.max(generation);
            rt.paste = None;
        }
        Cmd::XeroResume {
            generation,
            settings,
            secrets,
        } => {
            {
                let mut rt = svc.psa.xero();
                if rt.generation > generation {
                    return;
                }
                rt.generation = generation;
                rt.paste = None;
            }
            let r = async {
                let (client, session) = connect::xero(&svc.ctx, &settings, &secrets)?;
                let tenants = tenants(&client).await?;
                Ok::<_, ApiError>((client, session, tenants))
            }
            .await;
            match r {
                Ok((client, session, tenants)) => {
                    let refresh = Secret::new(session.refresh_token().secret().clone());
                    if store(&svc, generation, client, session) {
                        send(
                            &tx,
                            Msg::XeroTenants {
                                generation,
                                tenants,
                                refresh,
                            },
                        )
                        .await;
                    }
                }
                Err(error) => send(&tx, Msg::XeroFailed { generation, error }).await,
            }
        }
        Cmd::XeroLoad {
            generation,
            tenant_id,
        } => {
            let msg = match load_lists(&svc, &tenant_id).await {
                Ok((contacts, expense, revenue, refresh)) => Msg::XeroLists {
                    generation,
                    tenant_id,
                    contacts,
                    expense,
                    revenue,
                    refresh,
                },
                Err(error) => Msg::XeroFailed { generation, error },
            };
            send(&tx, msg).await;
        }
        Cmd::XeroSave { generation } => {
            let session = svc.psa.xero().session.clone();
            let msg = match session {
                Some(s) => Msg::XeroSaved {
                    generation,
                    refresh: Secret::new(s.refresh_token().secret().clone()),
                    verified_at: now(),
                },
                None => Msg::XeroFailed {
                    generation,
                    error: not_signed_in(),
                },
            };
            send(&tx, msg).await;
        }
    }
}

fn current(svc: &Services, generation: u64) -> bool {
    svc.psa.xero().generation == generation
}

fn not_signed_in() -> ApiError {
    ApiError::new(
        Api::Xero,
        ErrorKind::OAuth,
        "is not signed in any more: authenticate again",
    )
}

/// Keep the signed-in client when its sign-in is still the current one.
fn store(svc: &Services, generation: u64, client: XeroClient, session: Arc<XeroSession>) -> bool {
    let mut rt = svc.psa.xero();
    if rt.generation != generation {
        return false;
    }
    rt.client = Some(client);
    rt.session = Some(session);
    true
}

// ---------------------------------------------------------------------------------------------
// ConnectWise and Autotask
// ---------------------------------------------------------------------------------------------

/// Two cheap reads (§5.2 `/count`): they prove company id, keys and clientId together.
async fn test_connectwise(
    svc: &Services,
    settings: &Settings,
    secrets: &Secrets,
) -> Result<CwFound, ApiError> {
    let client = connect::connectwise(&svc.ctx, settings, secrets)?;
    let companies = client.count("company/companies", None).await?;
    let agreements = client.count("finance/agreements", None).await?;
    Ok(CwFound {
        companies,
        agreements,
        verified_at: now(),
    })
}

/// Zone discovery (§6.1) does not check the secret, so a count of companies (§6.2
/// `/query/count`) is what proves the credentials.
async fn test_autotask(
    svc: &Services,
    settings: &Settings,
    secrets: &Secrets,
) -> Result<AtFound, ApiError> {
    let mut s = settings.clone();
    // Always discover: the zone is part of what the test finds.
    s.psa.autotask.zone_url.clear();
    s.psa.autotask.zone_name.clear();
    let client = connect::autotask(&svc.ctx, &s, secrets).await?;
    let zone = client.zone().cloned();
    let companies = client.count("Companies", &[Filter::gte("id", 0)]).await?;
    let (zone_name, zone_url) = match zone {
        Some(z) => (
            if z.zone_name.trim().is_empty() {
                "(unnamed)".to_string()
            } else {
                z.zone_name
            },
            z.url,
        ),
        None => (String::new(), client.base().to_string()),
    };
    Ok(AtFound {
        zone_name,
        zone_url,
        companies,
        verified_at: now(),
    })
}

// ---------------------------------------------------------------------------------------------
// Xero
// ---------------------------------------------------------------------------------------------

fn sign_in_error(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        Api::Xero,
        ErrorKind::OAuth,
        format!("sign-in did not complete: {what}"),
    )
}

/// The organisations connected to the app (§7.2), as picker items.
async fn tenants(client: &XeroClient) -> Result<Vec<Item>, ApiError> {
    let mut items: Vec<Item> = client
        .connections()
        .await?
        .into_iter()
        .filter(|c| c.is_organisation())
        .map(|c| {
            let name = c
                .tenant_name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| c.tenant_id.clone());
            Item::new(c.tenant_id, name, "")
        })
        .collect();
    items.sort_by_key(|i| i.label.to_lowercase());
    items.dedup_by(|a, b| a.id.eq_ignore_ascii_case(&b.id));
    Ok(items)
}

/// The whole browser sign-in: listener, authorize URL, wait for the redirect or a pasted
/// address, code exchange, then the organisations.
async fn xero_sign_in(
    svc: &Arc<Services>,
    settings: &Settings,
    generation: u64,
    tx: &Sender<app::Msg>,
) -> Result<(), ApiError> {
    let listener = LoopbackListener::bind("/callback").await.map_err(|e| {
        ApiError::config(
            Api::Xero,
            format!("sign-in cannot listen on localhost for the browser's answer: {e}"),
        )
    })?;
    let auth = connect::xero_auth(&svc.ctx, settings);
    let request = auth.start(listener.redirect_uri());
    let (paste_tx, paste_rx) = mpsc::channel::<Secret>(4);
    {
        let mut rt = svc.psa.xero();
        if rt.generation > generation {
            return Ok(()); // cancelled before it started
        }
        rt.generation = generation;
        rt.paste = Some(paste_tx.clone());
        rt.client = None;
        rt.session = None;
    }
    // The address holds no secret (state and PKCE challenge are public by design, §7.1); in
    // the log it can be copied in one piece.
    tracing::info!(url = %request.url(), "Xero sign-in: waiting for the browser");
    send(
        tx,
        Msg::XeroWaiting {
            generation,
            url: request.url().to_string(),
            redirect_uri: listener.redirect_uri().to_string(),
        },
    )
    .await;
    if svc.demo.is_some() {
        tokio::spawn(demo_consent(
            svc.ctx.http.clone(),
            request.url().clone(),
            paste_tx,
        ));
    } else {
        drop(paste_tx);
    }
    let Some(redirect) = wait_for_redirect(listener, paste_rx, &request, generation, tx).await?
    else {
        return Ok(()); // cancelled
    };
    {
        // The wait is over: pasting again has nowhere to go.
        let mut rt = svc.psa.xero();
        if rt.generation == generation {
            rt.paste = None;
        }
    }
    if !current(svc, generation) {
        return Ok(());
    }
    send(tx, Msg::XeroConnecting { generation }).await;
    let tokens = auth.complete(request, redirect).await?;
    let session = Arc::new(XeroSession::new(auth, tokens));
    let client = XeroClient::new(
        svc.ctx.endpoints.xero_api.clone(),
        svc.ctx.http.clone(),
        session.clone(),
    );
    let tenants = tenants(&client).await?;
    let refresh = Secret::new(session.refresh_token().secret().clone());
    if store(svc, generation, client, session) {
        send(
            tx,
            Msg::XeroTenants {
                generation,
                tenants,
                refresh,
            },
        )
        .await;
    }
    Ok(())
}

/// Wait for the browser's redirect at the listener, or for an address pasted by the person.
/// A pasted address that cannot be used is explained and waiting goes on. `None` when the
/// sign-in was cancelled (the paste channel closed).
async fn wait_for_redirect(
    listener: LoopbackListener,
    mut paste: Receiver<Secret>,
    request: &AuthorizationRequest,
    generation: u64,
    tx: &Sender<app::Msg>,
) -> Result<Option<Redirect>, ApiError> {
    let wait = listener.wait(SIGN_IN_WAIT);
    tokio::pin!(wait);
    loop {
        tokio::select! {
            r = &mut wait => return r.map(Some).map_err(sign_in_error),
            p = paste.recv() => {
                let Some(pasted) = p else { return Ok(None) };
                match check_pasted(pasted.expose(), request.state()) {
                    Ok(r) => return Ok(Some(r)),
                    Err(reason) => {
                        send(tx, Msg::XeroPasteRejected { generation, reason }).await;
                    }
                }
            }
        }
    }
}

/// Read a pasted address; one from another sign-in (its `state` differs) is refused here so
/// the person can paste the right one without starting again.
fn check_pasted(pasted: &str, state: &str) -> Result<Redirect, String> {
    let r = Redirect::from_url(pasted)?;
    let their = match &r {
        Redirect::Code { state, .. } | Redirect::Error { state, .. } => state.as_deref(),
    };
    if their != Some(state) {
        return Err("That address belongs to another sign-in: paste the address the browser showed after this sign-in, or cancel and authenticate again.".into());
    }
    Ok(r)
}

/// Demo mode: the sim's consent page allows access at once and answers with a redirect to
/// the listener. Follow it the way a browser would (to 127.0.0.1, where the listener is);
/// when that fails, hand the address over as if pasted.
async fn demo_consent(http: reqwest::Client, authorize: Url, paste: Sender<Secret>) {
    tokio::time::sleep(DEMO_CONSENT_DELAY).await;
    let Ok(resp) = http.get(authorize).send().await else {
        return;
    };
    let Some(location) = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return;
    };
    if let Ok(mut u) = Url::parse(&location)
        && u.host_str() == Some("localhost")
        && u.set_host(Some("127.0.0.1")).is_ok()
        && http
            .get(u)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    {
        return;
    }
    let _ = paste.send(Secret::new(location)).await;
}

type Lists = (Vec<Item>, Vec<Item>, Vec<Item>, Secret);

/// Contacts (§7.4) and accounts (§7.5) of the organisation; the accounts split into the
/// expense and revenue lists by type (only active accounts with a code: invoice and bill
/// lines name their account by code, §7.6).
async fn load_lists(svc: &Services, tenant: &str) -> Result<Lists, ApiError> {
    let (client, session) = {
        let rt = svc.psa.xero();
        (rt.client.clone(), rt.session.clone())
    };
    let (Some(client), Some(session)) = (client, session) else {
        return Err(not_signed_in());
    };
    let (contacts, accounts) =
        tokio::join!(client.contacts(tenant, None), client.accounts(tenant, None));
    let (contacts, accounts) = (contacts?, accounts?);
    let mut contacts: Vec<Item> = contacts
        .into_iter()
        .filter(|c| {
            c.contact_status
                .is_none_or(|s| s == xero::ContactStatus::Active)
        })
        .filter_map(|c| {
            let id = c.contact_id?;
            let name = c.name.filter(|n| !n.trim().is_empty())?;
            let detail = match (c.is_supplier, c.is_customer) {
                (Some(true), _) => "supplier",
                (_, Some(true)) => "customer",
                _ => "",
            };
            Some(Item::new(id, name, detail))
        })
        .collect();
    contacts.sort_by_key(|i| i.label.to_lowercase());
    let account_items = |list: Vec<&xero::Account>| -> Vec<Item> {
        let mut v: Vec<Item> = list
            .into_iter()
            .filter_map(|a| {
                let code = a.code.clone().filter(|c| !c.trim().is_empty())?;
                let name = a.name.clone().unwrap_or_default();
                let kind = a
                    .account_type
                    .and_then(|t| serde_json::to_value(t).ok())
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                Some(Item::new(code.clone(), format!("{code}  {name}"), kind))
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    };
    let expense = account_items(xero::expense_accounts(&accounts));
    let revenue = account_items(xero::revenue_accounts(&accounts));
    let refresh = Secret::new(session.refresh_token().secret().clone());
    Ok((contacts, expense, revenue, refresh))
}
