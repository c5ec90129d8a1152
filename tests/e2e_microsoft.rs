//! End to end: the real Microsoft clients (Entra sign-in, Graph, Partner Center) against the
//! real simulated world, over loopback TCP (reference/external-apis.md §1–§3).
//!
//! Each test starts the sim in-process with a generated world (or a copy modified by hand),
//! drives the clients a user would drive, and checks what that user would notice against the
//! world the test passed in, read here independently of both the clients and the sim.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use url::Url;
use uuid::Uuid;

use cspsync::api::error::{Api, ApiError, ErrorKind};
use cspsync::api::graph::{CompanySubscription, GraphClient, Organization, SubscribedSku};
use cspsync::api::http::{RetryPolicy, build_client};
use cspsync::api::partnercenter::{Customer, PartnerCenterClient, Subscription};
use cspsync::auth::entra::{DeviceFlowStop, EntraClient, Resource, Session, TokenSet};
use cspsync::auth::loopback::{LoopbackListener, Redirect};
use cspsync::config::Endpoints;
use cspsync::sim::generate::{GenOptions, generate};
use cspsync::sim::world::{CustomerTenant, MsSubscription, User, World};
use cspsync::sim::{FaultSpec, SimHandle};

// ----- harness ------------------------------------------------------------------------------

/// A generated world with 12 customers (three pages of five), a one-second device-code
/// interval, and at least one customer with GDAP and one without.
fn base_world() -> World {
    let today = chrono::Utc::now().date_naive();
    let mut w = generate(&GenOptions::new(12, 20_250_611, today));
    w.app.device_code_interval_secs = 1;
    w.customers[0].gdap_active = true;
    w.customers[1].gdap_active = false;
    assert!(
        w.msp.users.len() >= 15,
        "the generator promises 15+ staff users"
    );
    w
}

struct Env {
    /// Keeps the server running for the test (dropping it stops the sim).
    _sim: SimHandle,
    /// The world the sim was started with (the test's independent copy).
    world: World,
    ep: Endpoints,
    http: reqwest::Client,
    control: String,
    /// The retry policy of every client the test builds.
    retry: RetryPolicy,
}

async fn start(world: World, faults: FaultSpec) -> Env {
    let sim = cspsync::sim::start(world.clone(), faults, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let urls = sim.urls();
    Env {
        ep: Endpoints::from_sim(&urls).unwrap(),
        control: urls.control.clone(),
        _sim: sim,
        world,
        http: build_client(Duration::from_secs(30)),
        retry: RetryPolicy::default(),
    }
}

impl Env {
    fn entra(&self) -> EntraClient {
        EntraClient::new(
            self.ep.entra.clone(),
            self.world.app.client_id.clone(),
            self.http.clone(),
        )
        .with_retry(self.retry)
    }

    async fn control_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.control))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The sim's state dump (`GET {control}/state`).
    async fn state(&self) -> Value {
        reqwest::get(format!("{}/state", self.control))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn sim_stats(&self) -> Value {
        reqwest::get(format!("{}/stats", self.control))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A browser that does not follow redirects: the Location header of the authorize
    /// endpoint is what the person would paste.
    async fn authorize_location(&self, url: &Url) -> String {
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = browser.get(url.clone()).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 302, "authorize should redirect");
        r.headers()["location"].to_str().unwrap().to_string()
    }

    /// Sign in with auth code + PKCE, pasting the redirect URL (no waiting): the session
    /// every data test starts from.
    async fn sign_in(&self) -> Session {
        self.sign_in_as(None).await
    }

    async fn sign_in_as(&self, login_hint: Option<&str>) -> Session {
        let entra = self.entra();
        let redirect = Url::parse("http://localhost:53682/").unwrap();
        let req = entra.begin_auth_code(&redirect, login_hint).unwrap();
        let location = self.authorize_location(req.authorize_url()).await;
        let tokens = entra
            .finish_auth_code(req, Redirect::from_url(&location).unwrap())
            .await
            .unwrap();
        Session::from_sign_in(entra, &tokens).unwrap()
    }

    fn graph(&self, session: &Session) -> GraphClient {
        GraphClient::new(
            self.ep.graph.clone(),
            self.http.clone(),
            session.token_source(Resource::Graph, None),
        )
        .with_retry(self.retry)
    }

    fn graph_for(&self, home: &GraphClient, session: &Session, tenant: &str) -> GraphClient {
        home.for_tenant(tenant, session.token_source(Resource::Graph, Some(tenant)))
    }

    fn partner_center(&self, session: &Session) -> PartnerCenterClient {
        PartnerCenterClient::new(
            self.ep.partnercenter.clone(),
            self.http.clone(),
            session.token_source(Resource::PartnerCenter, None),
        )
        .with_retry(self.retry)
    }
}

/// The user the world says signs in by default: the first enabled MSP user holding the
/// Global admin or Admin agent role (the generator's setup admin).
fn world_admin(w: &World) -> &User {
    let admin = w
        .msp
        .users
        .iter()
        .find(|u| {
            u.account_enabled
                && u.partner_roles
                    .iter()
                    .any(|r| r == "GlobalAdmin" || r == "AdminAgent")
        })
        .expect("an admin");
    assert_eq!(admin.id, w.msp.users[0].id, "the setup admin comes first");
    admin
}

fn assert_signed_in_as(tokens: &TokenSet, w: &World, user: &User) {
    let claims = tokens.id_claims().unwrap();
    assert_eq!(claims.tid, w.msp.tenant_id, "tid is the MSP tenant");
    assert_eq!(claims.oid, user.id, "oid is the user's object id");
    assert_eq!(
        claims.preferred_username.as_deref(),
        Some(user.user_principal_name.as_str())
    );
    assert_eq!(claims.name.as_deref(), Some(user.display_name.as_str()));
    assert_eq!(claims.has_mfa(), user.mfa);
    assert!(
        tokens.refresh_token.is_some(),
        "offline_access was asked for"
    );
}

fn no_cancel() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    // Keep the sender alive for the whole test: nobody cancels.
    std::mem::forget(tx);
    rx
}

// ----- device code (§1.2) -------------------------------------------------------------------

#[tokio::test]
async fn device_code_approved_through_the_control_surface() {
    let env = start(base_world(), FaultSpec::default()).await;
    let entra = env.entra();
    let start = entra.start_device_code().await.unwrap();
    assert_eq!(start.interval, Duration::from_secs(1));
    assert!(
        start.message.contains(&start.user_code),
        "{}",
        start.message
    );
    assert!(
        start.verification_uri.starts_with("http://127.0.0.1"),
        "{}",
        start.verification_uri
    );

    let waiter = {
        let (entra, start) = (entra.clone(), start.clone());
        tokio::spawn(async move { entra.wait_for_device_code(&start, no_cancel()).await })
    };
    // Let the client poll (and hear authorization_pending) at least once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!waiter.is_finished(), "nothing approved yet");
    let (status, body) = env
        .control_post("/device/approve", json!({"user_code": start.user_code}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["approved"], 1);

    let tokens = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the sign-in finishes soon after approval")
        .unwrap()
        .unwrap();
    assert_signed_in_as(&tokens, &env.world, world_admin(&env.world));
    assert_eq!(tokens.resource, Some(Resource::Graph));

    // The access token works: Graph's organization is the tenant of the id_token (§2.1).
    let session = Session::from_sign_in(entra.clone(), &tokens).unwrap();
    let org = env.graph(&session).organization().await.unwrap();
    assert_eq!(org.id, env.world.msp.tenant_id);
    assert_eq!(entra.stats().refreshes, 0);
    // Polled at least twice (pending, then success), never told to slow down.
    let stats = env.sim_stats().await;
    let polls = stats["POST /entra/organizations/oauth2/v2.0/token"]["calls"]
        .as_u64()
        .unwrap();
    assert!(polls >= 2, "{stats}");
}

#[tokio::test]
async fn device_code_auto_approved_by_the_fault_spec() {
    let env = start(base_world(), FaultSpec::parse("approve-after=1").unwrap()).await;
    let entra = env.entra();
    let start = entra.start_device_code().await.unwrap();
    let tokens = tokio::time::timeout(
        Duration::from_secs(15),
        entra.wait_for_device_code(&start, no_cancel()),
    )
    .await
    .expect("auto-approval within seconds")
    .unwrap();
    assert_signed_in_as(&tokens, &env.world, world_admin(&env.world));
}

#[tokio::test]
async fn device_code_declined_is_a_typed_stop() {
    let env = start(base_world(), FaultSpec::default()).await;
    let entra = env.entra();
    let start = entra.start_device_code().await.unwrap();
    let waiter = {
        let (entra, start) = (entra.clone(), start.clone());
        tokio::spawn(async move { entra.wait_for_device_code(&start, no_cancel()).await })
    };
    let (status, body) = env
        .control_post(
            "/device/approve",
            json!({"user_code": start.user_code, "decline": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["declined"], 1);
    let e = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        DeviceFlowStop::of(&e),
        Some(DeviceFlowStop::Declined),
        "{e}"
    );
    assert_eq!((e.api, &e.kind), (Api::Entra, &ErrorKind::OAuth));
    assert!(e.to_string().contains("declined"), "{e}");
}

#[tokio::test]
async fn device_code_expires_when_nobody_approves() {
    let mut world = base_world();
    world.app.device_code_expires_secs = 3;
    let env = start(world, FaultSpec::default()).await;
    let entra = env.entra();
    let start = entra.start_device_code().await.unwrap();
    assert_eq!(start.expires_in, Duration::from_secs(3));
    let began = std::time::Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(15),
        entra.wait_for_device_code(&start, no_cancel()),
    )
    .await
    .expect("the wait ends when the code expires")
    .unwrap_err();
    assert_eq!(DeviceFlowStop::of(&e), Some(DeviceFlowStop::Expired), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
    assert!(began.elapsed() < Duration::from_secs(6));
    // The code can no longer be approved.
    let (status, _) = env
        .control_post("/device/approve", json!({"user_code": start.user_code}))
        .await;
    assert_eq!(status, 400);
}

// ----- auth code + PKCE (§1.3) --------------------------------------------------------------

#[tokio::test]
async fn auth_code_pkce_through_the_loopback_listener() {
    let env = start(base_world(), FaultSpec::default()).await;
    let entra = env.entra();
    // Sign in as someone other than the default admin, through login_hint.
    let agent = env
        .world
        .msp
        .users
        .iter()
        .skip(1)
        .find(|u| u.account_enabled && u.user_type == "Member")
        .unwrap()
        .clone();

    let listener = LoopbackListener::bind("/").await.unwrap();
    let redirect_uri = listener.redirect_uri().clone();
    assert_eq!(redirect_uri.host_str(), Some("localhost"));
    let (tx, rx) = tokio::sync::oneshot::channel::<Url>();
    // The "browser": follows the sim's 302 to the loopback listener.
    let browser = tokio::spawn(async move {
        let url = rx.await.unwrap();
        let r = reqwest::Client::new().get(url).send().await.unwrap();
        let final_url = r.url().clone();
        (r.status().as_u16(), final_url, r.text().await.unwrap())
    });
    let mut shown = None;
    let tokens = entra
        .sign_in_with_browser(
            listener,
            Some(&agent.user_principal_name),
            Duration::from_secs(20),
            |u| {
                shown = Some(u.clone());
                tx.send(u.clone()).unwrap();
            },
        )
        .await
        .unwrap();
    let (status, final_url, text) = browser.await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Signed in"), "{text}");
    assert_eq!(final_url.port(), redirect_uri.port());
    assert!(final_url.query_pairs().any(|(k, _)| k == "code"));

    let shown = shown.unwrap();
    assert!(shown.as_str().starts_with(env.ep.entra.as_str()), "{shown}");
    assert_signed_in_as(&tokens, &env.world, &agent);
}

#[tokio::test]
async fn auth_code_pkce_with_the_pasted_redirect_url() {
    let env = start(base_world(), FaultSpec::default()).await;
    let entra = env.entra();
    let redirect = Url::parse("http://localhost:53682/").unwrap();

    // The person pastes the address the browser ended on.
    let req = entra.begin_auth_code(&redirect, None).unwrap();
    let location = env.authorize_location(req.authorize_url()).await;
    assert!(
        location.starts_with("http://localhost:53682/?"),
        "{location}"
    );
    let pasted = format!("  \"{location}\" ");
    let tokens = entra
        .finish_auth_code(req, Redirect::from_url(&pasted).unwrap())
        .await
        .unwrap();
    assert_signed_in_as(&tokens, &env.world, world_admin(&env.world));

    // An answer from another sign-in (its state differs) is refused before redeeming.
    let first = entra.begin_auth_code(&redirect, None).unwrap();
    let second = entra.begin_auth_code(&redirect, None).unwrap();
    let location = env.authorize_location(first.authorize_url()).await;
    let e = entra
        .finish_auth_code(second, Redirect::from_url(&location).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.code.as_deref(), Some("state_mismatch"), "{e}");

    // A code redeemed once cannot be redeemed again (§1.3): a typed refusal from the sim.
    let req = entra.begin_auth_code(&redirect, None).unwrap();
    let location = env.authorize_location(req.authorize_url()).await;
    let state = Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    assert!(!state.is_empty());
    entra
        .finish_auth_code(req, Redirect::from_url(&location).unwrap())
        .await
        .unwrap();
    let again = entra.begin_auth_code(&redirect, None).unwrap();
    let code = Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let again_state = again
        .authorize_url()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let e = entra
        .finish_auth_code(
            again,
            Redirect::Code {
                code,
                state: Some(again_state),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.api, Api::Entra);
    assert_eq!(e.code.as_deref(), Some("invalid_grant"), "{e}");
    assert_eq!(e.status, Some(400));
    assert!(e.to_string().contains("AADSTS"), "{e}");
}

// ----- Graph (§2) ---------------------------------------------------------------------------

/// The fields cspsync reads of a user, as a comparable tuple.
type UserRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<String>,
    Vec<String>,
    Option<String>,
);

fn world_user_row(u: &User) -> UserRow {
    (
        u.id.clone(),
        Some(u.display_name.clone()),
        Some(u.user_principal_name.clone()),
        u.mail.clone(),
        Some(u.account_enabled),
        Some(u.user_type.clone()),
        u.assigned_licenses.clone(),
        u.job_title.clone(),
    )
}

fn graph_user_row(u: &cspsync::api::graph::User) -> UserRow {
    (
        u.id.clone(),
        u.display_name.clone(),
        u.user_principal_name.clone(),
        u.mail.clone(),
        u.account_enabled,
        u.user_type.clone(),
        u.assigned_licenses
            .as_ref()
            .expect("assignedLicenses was selected")
            .iter()
            .map(|l| l.sku_id.clone())
            .collect(),
        u.job_title.clone(),
    )
}

#[tokio::test]
async fn graph_msp_tenant_organization_and_users_across_pages() {
    let env = start(base_world(), FaultSpec::default()).await;
    let session = env.sign_in().await;
    let graph = env.graph(&session);
    let w = &env.world;

    let org: Organization = graph.organization().await.unwrap();
    assert_eq!(org.id, w.msp.tenant_id);
    assert_eq!(
        org.display_name.as_deref(),
        Some(w.msp.display_name.as_str())
    );
    let default = w
        .msp
        .verified_domains
        .iter()
        .find(|d| d.is_default)
        .unwrap();
    assert_eq!(org.default_domain(), Some(default.name.as_str()));
    let domains: BTreeSet<&str> = org
        .verified_domains
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    let expected: BTreeSet<&str> = w
        .msp
        .verified_domains
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(domains, expected);

    // Five a page: at least three pages, every user exactly once, equal to the world.
    let mut pager = graph.users_pager(&[], 5).unwrap();
    let mut all = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        assert!(page.len() <= 5);
        all.extend(page);
    }
    assert!(pager.pages() >= 3, "{} pages", pager.pages());
    assert_eq!(pager.pages(), w.msp.users.len().div_ceil(5));
    let ids: HashSet<&str> = all.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "no user twice");
    let got: Vec<UserRow> = all.iter().map(graph_user_row).collect();
    let want: Vec<UserRow> = w.msp.users.iter().map(world_user_row).collect();
    assert_eq!(got, want);
    // The same through the one-call form.
    let again = graph.users(&[], 999).await.unwrap();
    assert_eq!(again.iter().map(graph_user_row).collect::<Vec<_>>(), want);

    // An invalid page size is refused by the client before any request.
    let e = graph.users(&[], 1000).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config);
}

/// What the world implies `subscribedSkus` shows for a customer (§2.3): one entry per Graph
/// SKU of its subscriptions; enabled units are the active quantities summed (two
/// subscriptions of one SKU share the entry), consumed units the assigned count.
fn expected_skus(c: &CustomerTenant) -> BTreeMap<String, (String, i64, i64, BTreeSet<String>)> {
    let mut m: BTreeMap<String, (String, i64, i64, BTreeSet<String>)> = BTreeMap::new();
    for s in &c.subscriptions {
        if s.graph_sku_id.is_empty() {
            continue;
        }
        let e = m.entry(s.graph_sku_id.clone()).or_insert_with(|| {
            (
                s.sku_part_number.clone(),
                0,
                i64::from(c.assigned.get(&s.graph_sku_id).copied().unwrap_or(0)),
                BTreeSet::new(),
            )
        });
        if s.status == "active" {
            e.1 += i64::from(s.quantity);
        }
        let dir = if s.directory_id.is_empty() {
            &s.id
        } else {
            &s.directory_id
        };
        e.3.insert(dir.clone());
    }
    m
}

fn got_skus(skus: &[SubscribedSku]) -> BTreeMap<String, (String, i64, i64, BTreeSet<String>)> {
    skus.iter()
        .map(|s| {
            (
                s.sku_id.clone(),
                (
                    s.sku_part_number.clone(),
                    s.prepaid_units.enabled,
                    s.consumed_units,
                    s.subscription_ids.iter().cloned().collect(),
                ),
            )
        })
        .collect()
}

fn check_directory_subscriptions(c: &CustomerTenant, msp: &str, got: &[CompanySubscription]) {
    assert_eq!(got.len(), c.subscriptions.len(), "{}", c.company_name);
    let by_commerce: BTreeMap<&str, &CompanySubscription> = got
        .iter()
        .map(|s| (s.commerce_subscription_id.as_deref().unwrap(), s))
        .collect();
    for s in &c.subscriptions {
        let g = by_commerce
            .get(s.id.as_str())
            .unwrap_or_else(|| panic!("{} missing from /directory/subscriptions", s.id));
        assert_eq!(g.sku_id.as_deref(), Some(s.graph_sku_id.as_str()));
        assert_eq!(g.total_licenses, Some(i64::from(s.quantity)));
        assert_eq!(g.owner_tenant_id.as_deref(), Some(msp));
        // §2.3a: an active subscription is Enabled; nothing else is.
        assert_eq!(
            g.status.as_deref() == Some("Enabled"),
            s.status == "active",
            "{} is {} in Partner Center, {:?} in Graph",
            s.id,
            s.status,
            g.status
        );
    }
}

#[tokio::test]
async fn graph_customer_tenants_follow_gdap() {
    let env = start(base_world(), FaultSpec::default()).await;
    let session = env.sign_in().await;
    let home = env.graph(&session);
    let w = &env.world;
    let mut checked = 0;
    for c in w.customers.iter().filter(|c| c.gdap_active) {
        let g = env.graph_for(&home, &session, &c.tenant_id);
        let org = g.organization().await.unwrap();
        assert_eq!(org.id, c.tenant_id);
        assert_eq!(org.display_name.as_deref(), Some(c.company_name.as_str()));
        let default = c.custom_domains.first().unwrap_or(&c.domain);
        assert_eq!(org.default_domain(), Some(default.as_str()));

        let skus = g.subscribed_skus().await.unwrap();
        assert_eq!(got_skus(&skus), expected_skus(c), "{}", c.company_name);
        let subs = g.directory_subscriptions().await.unwrap();
        check_directory_subscriptions(c, &w.msp.tenant_id, &subs);

        let users = g.users(&[], 999).await.unwrap();
        assert_eq!(users.len(), c.user_count as usize, "{}", c.company_name);
        checked += 1;
    }
    assert!(checked >= 2, "the world has customers under GDAP");

    // No GDAP: a clear typed error, not data and not a panic.
    let c = &w.customers[1];
    assert!(!c.gdap_active);
    let g = env.graph_for(&home, &session, &c.tenant_id);
    let e: ApiError = g.subscribed_skus().await.unwrap_err();
    eprintln!("no-GDAP error: {e} / {:?} / hint: {}", e.kind, e.hint());
    assert_eq!(e.kind, ErrorKind::Forbidden, "{e}");
    assert!(e.to_string().contains(&c.tenant_id), "{e}");
    assert!(e.to_string().contains("GDAP"), "{e}");
    // The MSP tenant keeps working after that refusal.
    home.organization().await.unwrap();
}

// ----- Partner Center (§3) ------------------------------------------------------------------

fn check_customer(got: &Customer, c: &CustomerTenant) {
    assert_eq!(got.id, c.tenant_id);
    let p = got.company_profile.as_ref().unwrap();
    assert_eq!(p.tenant_id.as_deref(), Some(c.tenant_id.as_str()));
    assert_eq!(p.company_name.as_deref(), Some(c.company_name.as_str()));
    assert_eq!(p.domain.as_deref(), Some(c.domain.as_str()));
    assert_eq!(got.commerce_id.as_deref(), Some(c.commerce_id.as_str()));
    assert_eq!(
        got.relationship_to_partner.as_deref(),
        Some(c.relationship_to_partner.as_str())
    );
    assert_eq!(got.allow_delegated_access, Some(c.allow_delegated_access));
    assert_eq!(got.custom_domains, c.custom_domains);
}

fn check_subscription(got: &Subscription, s: &MsSubscription) {
    assert_eq!(got.id, s.id);
    assert_eq!(got.quantity, s.quantity, "{}", s.id);
    assert_eq!(got.status.as_deref(), Some(s.status.as_str()));
    assert_eq!(got.offer_id.as_deref(), Some(s.offer_id.as_str()));
    assert_eq!(got.offer_name.as_deref(), Some(s.offer_name.as_str()));
    assert_eq!(got.friendly_name.as_deref(), Some(s.friendly_name.as_str()));
    assert_eq!(got.term_duration.as_deref(), Some(s.term_duration.as_str()));
    assert_eq!(got.billing_cycle.as_deref(), Some(s.billing_cycle.as_str()));
    assert_eq!(got.auto_renew_enabled, Some(s.auto_renew_enabled));
    assert_eq!(got.is_trial, Some(s.is_trial));
    assert_eq!(got.order_id.as_deref(), Some(s.order_id.as_str()));
    let secs = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.timestamp());
    assert_eq!(secs(got.creation_date), secs(s.creation_date));
    assert_eq!(secs(got.commitment_end_date), secs(s.commitment_end_date));
    assert!(got.etag().is_some(), "§3.3: attributes.etag");
}

#[tokio::test]
async fn partner_center_customers_across_pages_and_their_subscriptions() {
    let env = start(base_world(), FaultSpec::default()).await;
    let session = env.sign_in().await;
    let pc = env.partner_center(&session);
    let w = &env.world;

    let mut pager = pc.customers_pager(5).unwrap();
    let mut all = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        assert!(page.len() <= 5);
        all.extend(page);
    }
    assert_eq!(pager.pages(), 3, "12 customers, 5 a page");
    let ids: HashSet<&str> = all.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "no customer twice");
    assert_eq!(all.len(), w.customers.len());
    for (got, c) in all.iter().zip(&w.customers) {
        check_customer(got, c);
    }
    // The one-call form agrees; so does a single customer.
    let again = pc.customers(500).await.unwrap();
    assert_eq!(again, all);
    check_customer(
        &pc.customer(&w.customers[3].tenant_id).await.unwrap(),
        &w.customers[3],
    );

    let mut subs_seen = 0;
    for c in &w.customers {
        let subs = pc.subscriptions(&c.tenant_id).await.unwrap();
        assert_eq!(subs.len(), c.subscriptions.len(), "{}", c.company_name);
        for (got, s) in subs.iter().zip(&c.subscriptions) {
            check_subscription(got, s);
        }
        subs_seen += subs.len();
    }
    assert!(subs_seen > 12);

    // Unknown customer: NotFound with Partner Center's own words.
    let e = pc
        .subscriptions("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert_eq!(
        (e.api, &e.kind),
        (Api::PartnerCenter, &ErrorKind::NotFound),
        "{e}"
    );
    assert!(e.to_string().contains("was not found"), "{e}");
}

#[tokio::test]
async fn partner_center_quantity_change_is_visible_and_idempotent() {
    let env = start(base_world(), FaultSpec::default()).await;
    let session = env.sign_in().await;
    let pc = env.partner_center(&session);
    let w = &env.world;
    let (ci, si) = w
        .customers
        .iter()
        .enumerate()
        .find_map(|(ci, c)| {
            c.subscriptions
                .iter()
                .position(|s| s.status == "active")
                .map(|si| (ci, si))
        })
        .unwrap();
    let c = &w.customers[ci];
    let before = &c.subscriptions[si];
    let sub = pc.subscription(&c.tenant_id, &before.id).await.unwrap();
    check_subscription(&sub, before);

    // Adding seats is always allowed under NCE.
    let first_id = Uuid::new_v4();
    let target = before.quantity + 2;
    let updated = pc
        .set_subscription_quantity(&c.tenant_id, &sub, target, first_id)
        .await
        .unwrap();
    assert_eq!(updated.quantity, target);
    assert_eq!(updated.id, before.id);

    // Later reads and the state dump show it.
    let read = pc.subscriptions(&c.tenant_id).await.unwrap();
    let read = read.iter().find(|s| s.id == before.id).unwrap();
    assert_eq!(read.quantity, target);
    let state = env.state().await;
    assert_eq!(
        state["world"]["customers"][ci]["subscriptions"][si]["quantity"],
        json!(target)
    );
    assert_eq!(state["partnercenter"]["quantity_changes_applied"], json!(1));

    // The same request again (a retry after a lost answer): the first result, nothing more.
    let replay = pc
        .set_subscription_quantity(&c.tenant_id, &sub, target, first_id)
        .await
        .unwrap();
    assert_eq!(replay.quantity, target);
    let state = env.state().await;
    assert_eq!(state["partnercenter"]["quantity_changes_applied"], json!(1));
    assert_eq!(state["partnercenter"]["idempotent_replays"], json!(1));

    // A newer change, then a late replay of the first: the newer quantity stays.
    let newer = pc
        .set_subscription_quantity(&c.tenant_id, &read.clone(), target + 1, Uuid::new_v4())
        .await
        .unwrap();
    assert_eq!(newer.quantity, target + 1);
    pc.set_subscription_quantity(&c.tenant_id, &sub, target, first_id)
        .await
        .unwrap();
    let now = pc.subscription(&c.tenant_id, &before.id).await.unwrap();
    assert_eq!(
        now.quantity,
        target + 1,
        "a late replay must not undo a newer change"
    );
    let state = env.state().await;
    assert_eq!(
        state["world"]["customers"][ci]["subscriptions"][si]["quantity"],
        json!(target + 1)
    );
    assert_eq!(state["partnercenter"]["quantity_changes_applied"], json!(2));
    // Nothing else in the world moved.
    for (cj, other) in w.customers.iter().enumerate() {
        for (sj, s) in other.subscriptions.iter().enumerate() {
            if (cj, sj) != (ci, si) {
                assert_eq!(
                    state["world"]["customers"][cj]["subscriptions"][sj]["quantity"],
                    json!(s.quantity)
                );
            }
        }
    }
}

/// The world with one active subscription (customer 2's first) bought 60 days into a
/// one-year term, with no recent seat additions: mid-term, so it cannot be reduced (NCE).
fn world_with_mid_term_subscription() -> (World, usize, usize) {
    let mut w = base_world();
    let ci = 2;
    let si = w.customers[ci]
        .subscriptions
        .iter()
        .position(|s| s.status == "active")
        .unwrap();
    let s = &mut w.customers[ci].subscriptions[si];
    let bought = chrono::Utc::now() - chrono::Duration::days(60);
    s.creation_date = Some(bought);
    s.effective_start_date = Some(bought);
    s.commitment_end_date = bought.checked_add_months(chrono::Months::new(12));
    s.term_duration = "P1Y".into();
    s.seat_additions.clear();
    s.quantity = s.quantity.max(3);
    (w, ci, si)
}

#[tokio::test]
async fn partner_center_refuses_a_mid_term_reduction_but_allows_cancelling_new_seats() {
    let (world, ci, si) = world_with_mid_term_subscription();
    let env = start(world, FaultSpec::default()).await;
    let session = env.sign_in().await;
    let pc = env.partner_center(&session);
    let c = &env.world.customers[ci];
    let q = c.subscriptions[si].quantity;
    let sub = pc
        .subscription(&c.tenant_id, &c.subscriptions[si].id)
        .await
        .unwrap();
    assert_eq!(sub.quantity, q);

    let e = pc
        .set_subscription_quantity(&c.tenant_id, &sub, q - 1, Uuid::new_v4())
        .await
        .unwrap_err();
    assert_eq!(
        (e.api, &e.kind),
        (Api::PartnerCenter, &ErrorKind::Rejected),
        "{e}"
    );
    assert_eq!(e.status, Some(400));
    assert!(e.to_string().contains("7 days"), "{e}");
    assert_eq!(pc.stats().retries, 0, "a refusal is not retried");
    let state = env.state().await;
    assert_eq!(
        state["world"]["customers"][ci]["subscriptions"][si]["quantity"],
        json!(q)
    );

    // Seats added now have their own 7-day window: two added, one of them removed again.
    let added = pc
        .set_subscription_quantity(&c.tenant_id, &sub, q + 2, Uuid::new_v4())
        .await
        .unwrap();
    let cut = pc
        .set_subscription_quantity(&c.tenant_id, &added, q + 1, Uuid::new_v4())
        .await
        .unwrap();
    assert_eq!(cut.quantity, q + 1);
    // But not below what was there before the additions.
    let e = pc
        .set_subscription_quantity(&c.tenant_id, &cut, q - 1, Uuid::new_v4())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected, "{e}");
    let state = env.state().await;
    assert_eq!(
        state["world"]["customers"][ci]["subscriptions"][si]["quantity"],
        json!(q + 1)
    );
    assert_eq!(state["partnercenter"]["quantity_changes_applied"], json!(2));
}

#[tokio::test]
async fn quantity_change_through_dropped_connections_and_5xx_applies_once() {
    let world = base_world();
    let env = start(
        world,
        FaultSpec::parse("partnercenter.5xx=0.2,partnercenter.drop=0.2,seed=11").unwrap(),
    )
    .await;
    let session = env.sign_in().await;
    // Short backoff keeps the test quick; the retry decisions are the client's own.
    let pc = env.partner_center(&session).with_retry(RetryPolicy {
        max_attempts: 8,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..RetryPolicy::default()
    });
    let w = &env.world;
    let mut changed = Vec::new();
    for (ci, c) in w.customers.iter().enumerate() {
        let Some(si) = c.subscriptions.iter().position(|s| s.status == "active") else {
            continue;
        };
        let s = &c.subscriptions[si];
        let sub = pc.subscription(&c.tenant_id, &s.id).await.unwrap();
        let updated = pc
            .set_subscription_quantity(&c.tenant_id, &sub, s.quantity + 1, Uuid::new_v4())
            .await
            .unwrap();
        assert_eq!(updated.quantity, s.quantity + 1);
        changed.push((ci, si, s.quantity + 1));
    }
    assert!(changed.len() >= 5);
    let stats = pc.stats();
    assert!(stats.retries > 0, "the faults were felt: {stats:?}");
    // Some of the PATCHes themselves failed and were sent again (same MS-RequestId).
    let sim = env.sim_stats().await;
    let patch = &sim["PATCH /partnercenter/v1/customers/{id}/subscriptions/{id}"];
    let failed = patch["dropped"].as_u64().unwrap() + patch["server_errors"].as_u64().unwrap();
    assert!(failed > 0, "{sim}");
    assert_eq!(
        patch["calls"].as_u64().unwrap(),
        changed.len() as u64 + failed,
        "{sim}"
    );
    let state = env.state().await;
    for (ci, si, q) in &changed {
        assert_eq!(
            state["world"]["customers"][ci]["subscriptions"][si]["quantity"],
            json!(q)
        );
    }
    assert_eq!(
        state["partnercenter"]["quantity_changes_applied"],
        json!(changed.len())
    );
}

#[tokio::test]
async fn partner_center_needs_mfa_and_an_admin_role() {
    let env = start(base_world(), FaultSpec::default()).await;
    let w = &env.world;
    let no_mfa = w
        .msp
        .users
        .iter()
        .find(|u| u.account_enabled && !u.mfa && u.partner_roles.iter().any(|r| r == "AdminAgent"))
        .expect("the generator makes an Admin agent without MFA");
    let plain = w
        .msp
        .users
        .iter()
        .find(|u| {
            u.account_enabled && u.mfa && u.user_type == "Member" && u.partner_roles.is_empty()
        })
        .expect("an ordinary member");

    let session = env.sign_in_as(Some(&no_mfa.user_principal_name)).await;
    let pc = env.partner_center(&session);
    let e = pc.mpn_profile(None).await.unwrap_err();
    assert_eq!(
        (e.api, &e.kind),
        (Api::PartnerCenter, &ErrorKind::Unauthorized),
        "{e}"
    );
    assert!(e.to_string().contains("Multi-factor"), "{e}");
    // Graph does not ask for MFA: the same sign-in reads the MSP tenant.
    env.graph(&session).organization().await.unwrap();

    let session = env.sign_in_as(Some(&plain.user_principal_name)).await;
    let pc = env.partner_center(&session);
    let e = pc.customers(5).await.unwrap_err();
    assert_eq!(
        (e.api, &e.kind),
        (Api::PartnerCenter, &ErrorKind::Forbidden),
        "{e}"
    );
    assert!(e.to_string().contains("Admin agent"), "{e}");
    assert!(e.hint().contains("Admin Agent"), "{}", e.hint());
}

#[tokio::test]
async fn mpn_profile_found_and_not_found() {
    let env = start(base_world(), FaultSpec::default()).await;
    let session = env.sign_in().await;
    let pc = env.partner_center(&session);
    let w = &env.world;

    let own = pc.mpn_profile(None).await.unwrap();
    assert_eq!(own.mpn_id, w.msp.mpn_id);
    assert_eq!(
        own.partner_name.as_deref(),
        Some(w.msp.partner_name.as_str())
    );
    let by_id = pc.mpn_profile(Some(&w.msp.mpn_id)).await.unwrap();
    assert_eq!(by_id, own);

    let e = pc.mpn_profile(Some("9999999")).await.unwrap_err();
    assert_eq!(
        (e.api, &e.kind),
        (Api::PartnerCenter, &ErrorKind::NotFound),
        "{e}"
    );
    assert_eq!(e.code.as_deref(), Some("3000"));
    assert!(e.to_string().contains("9999999 could not be found"), "{e}");
}

// ----- refresh (§1.4) -----------------------------------------------------------------------

#[tokio::test]
async fn expired_tokens_are_refreshed_once() {
    let env = start(base_world(), FaultSpec::default()).await;
    let session = env.sign_in().await;
    let graph = env.graph(&session);
    let pc = env.partner_center(&session);
    let gdap = env.world.customers.iter().find(|c| c.gdap_active).unwrap();
    let customer = env.graph_for(&graph, &session, &gdap.tenant_id);
    let rt_before = session.refresh_token().secret().clone();

    // Warm every token source.
    graph.organization().await.unwrap();
    pc.mpn_profile(None).await.unwrap();
    customer.organization().await.unwrap();
    let entra_before = session.client().stats();

    let (status, body) = env.control_post("/tokens/expire", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_tokens"].as_u64().unwrap() >= 3, "{body}");

    // 401 → one refresh → success, for each resource and tenant.
    let org = graph.organization().await.unwrap();
    assert_eq!(org.id, env.world.msp.tenant_id);
    assert_eq!(graph.stats().refreshes, 1);
    let me = pc.mpn_profile(None).await.unwrap();
    assert_eq!(me.mpn_id, env.world.msp.mpn_id);
    assert_eq!(pc.stats().refreshes, 1);
    let corg = customer.organization().await.unwrap();
    assert_eq!(corg.id, gdap.tenant_id);
    // The home and customer Graph clients share statistics: two refreshes in all.
    assert_eq!(customer.stats().refreshes, 2);
    // Exactly one token request per source, none repeated.
    let entra_after = session.client().stats();
    assert_eq!(entra_after.requests - entra_before.requests, 3);
    // §1.4: the refresh answers carried a new refresh token, which replaced the stored one.
    assert_ne!(session.refresh_token().secret(), &rt_before);

    // And the calls after that need no refresh.
    graph.organization().await.unwrap();
    pc.mpn_profile(None).await.unwrap();
    assert_eq!(graph.stats().refreshes, 2);
    assert_eq!(pc.stats().refreshes, 1);
}

#[tokio::test]
async fn many_requests_meeting_the_same_401_refresh_once() {
    let env = start(base_world(), FaultSpec::default()).await;
    let session = env.sign_in().await;
    let graph = env.graph(&session);
    let pc = env.partner_center(&session);
    graph.organization().await.unwrap();
    pc.mpn_profile(None).await.unwrap();
    env.control_post("/tokens/expire", json!({})).await;
    let before = session.client().stats().requests;

    // Eight Graph and eight Partner Center reads at once, all with the expired tokens.
    let graph_calls = (0..8).map(|_| graph.organization());
    let pc_calls = (0..8).map(|_| pc.mpn_profile(None));
    let (orgs, mpns) = tokio::join!(
        futures_util::future::join_all(graph_calls),
        futures_util::future::join_all(pc_calls)
    );
    for o in orgs {
        assert_eq!(o.unwrap().id, env.world.msp.tenant_id);
    }
    for m in mpns {
        assert_eq!(m.unwrap().mpn_id, env.world.msp.mpn_id);
    }
    // One token request per resource, however many requests heard the 401.
    assert_eq!(session.client().stats().requests - before, 2);
}

#[tokio::test]
async fn short_lived_tokens_are_renewed_before_they_expire() {
    // The sim issues access tokens that live 4 seconds.
    let env = start(base_world(), FaultSpec::parse("token-ttl=4").unwrap()).await;
    let session = env.sign_in().await;
    let graph = env.graph(&session);
    let pc = env.partner_center(&session);
    let began = std::time::Instant::now();
    while began.elapsed() < Duration::from_secs(6) {
        graph.organization().await.unwrap();
        pc.mpn_profile(None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Renewed ahead of expiry (expires_in honoured), so no request was ever refused.
    assert_eq!(graph.stats().refreshes, 0, "no 401 from Graph");
    assert_eq!(pc.stats().refreshes, 0, "no 401 from Partner Center");
    let stats = env.sim_stats().await;
    let refused: u64 = stats
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["client_errors"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(refused, 0, "{stats}");
    assert!(
        session.client().stats().requests >= 4,
        "tokens were renewed"
    );
}

#[tokio::test]
async fn browser_sign_in_errors_are_readable() {
    let env = start(base_world(), FaultSpec::default()).await;
    let entra = env.entra();
    let redirect = Url::parse("http://localhost:53682/").unwrap();
    let disabled = env
        .world
        .msp
        .users
        .iter()
        .find(|u| !u.account_enabled)
        .expect("the generator makes disabled accounts");

    for (hint, error, words) in [
        (
            disabled.user_principal_name.as_str(),
            "access_denied",
            "disabled",
        ),
        (
            "nobody@nowhere.example",
            "invalid_request",
            "does not exist",
        ),
    ] {
        let req = entra.begin_auth_code(&redirect, Some(hint)).unwrap();
        let location = env.authorize_location(req.authorize_url()).await;
        let e = entra
            .finish_auth_code(req, Redirect::from_url(&location).unwrap())
            .await
            .unwrap_err();
        assert_eq!((e.api, &e.kind), (Api::Entra, &ErrorKind::OAuth), "{e}");
        assert_eq!(e.code.as_deref(), Some(error), "{e}");
        let text = e.to_string();
        assert!(text.contains(words), "{text}");
        assert!(!text.contains("Trace ID"), "{text}");
    }
    // Nothing was redeemed: no token request reached the sim.
    let stats = env.sim_stats().await;
    assert!(
        stats
            .get("POST /entra/organizations/oauth2/v2.0/token")
            .is_none(),
        "{stats}"
    );
}

// ----- throttling (§2.5, §3.6) --------------------------------------------------------------

/// Id, quantity and status of a Partner Center subscription.
type SubRow = (String, u32, Option<String>);

/// Everything the Microsoft side of a reconciliation reads.
#[derive(Debug, PartialEq)]
struct Snapshot {
    users: Vec<UserRow>,
    org: Organization,
    customers: Vec<Customer>,
    subscriptions: Vec<(String, Vec<SubRow>)>,
    skus: Vec<(String, Vec<SubscribedSku>)>,
    directory: Vec<(String, Vec<CompanySubscription>)>,
    mpn: String,
}

async fn snapshot(env: &Env) -> (Snapshot, u64) {
    let session = env.sign_in().await;
    let graph = env.graph(&session);
    let pc = env.partner_center(&session);
    let users = graph
        .users(&[], 5)
        .await
        .unwrap()
        .iter()
        .map(graph_user_row)
        .collect();
    let org = graph.organization().await.unwrap();
    let customers = pc.customers(4).await.unwrap();
    let mut subscriptions = Vec::new();
    let mut skus = Vec::new();
    let mut directory = Vec::new();
    for c in &customers {
        let subs = pc.subscriptions(&c.id).await.unwrap();
        subscriptions.push((
            c.id.clone(),
            subs.iter()
                .map(|s| (s.id.clone(), s.quantity, s.status.clone()))
                .collect(),
        ));
        let gdap = env
            .world
            .customers
            .iter()
            .any(|w| w.tenant_id == c.id && w.gdap_active);
        if gdap {
            let g = env.graph_for(&graph, &session, &c.id);
            skus.push((c.id.clone(), g.subscribed_skus().await.unwrap()));
            directory.push((c.id.clone(), g.directory_subscriptions().await.unwrap()));
        }
    }
    let mpn = pc.mpn_profile(None).await.unwrap().mpn_id;
    let throttled =
        graph.stats().throttled + pc.stats().throttled + session.client().stats().throttled;
    (
        Snapshot {
            users,
            org,
            customers,
            subscriptions,
            skus,
            directory,
            mpn,
        },
        throttled,
    )
}

#[tokio::test]
async fn throttling_returns_exactly_the_same_data() {
    let world = base_world();
    let clean = start(world.clone(), FaultSpec::default()).await;
    let (want, clean_throttled) = snapshot(&clean).await;
    assert_eq!(clean_throttled, 0);

    let mut faulty = start(
        world,
        FaultSpec::parse("graph.429=0.3,partnercenter.429=0.3,entra.429=0.3,retry-after=0,seed=5")
            .unwrap(),
    )
    .await;
    // Ten attempts: six 429s in a row (p = 0.3^6 per request) must not end the run here; the
    // give-up path is checked below.
    faulty.retry = RetryPolicy {
        max_attempts: 10,
        ..RetryPolicy::default()
    };
    let (got, throttled) = snapshot(&faulty).await;
    assert!(throttled > 5, "the faults were felt: {throttled} 429s");
    assert_eq!(got, want);
    // The sim counted the same 429s the clients saw.
    let stats = faulty.sim_stats().await;
    let sim_throttled: u64 = stats
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["throttled"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(sim_throttled, throttled, "{stats}");
    // Nothing was written by reading.
    let state = faulty.state().await;
    assert_eq!(state["partnercenter"]["quantity_changes_applied"], json!(0));

    // Throttled on every attempt: the client gives up after its attempts with a typed error.
    let session = clean.sign_in().await;
    let pc = clean.partner_center(&session);
    let r = reqwest::Client::new()
        .post(format!("{}/faults", clean.control))
        .body("partnercenter.429=1,retry-after=0")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let e = pc.mpn_profile(None).await.unwrap_err();
    assert_eq!(
        (e.api, &e.kind),
        (
            Api::PartnerCenter,
            &ErrorKind::RateLimited {
                retry_after: Some(Duration::ZERO)
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("Rate limit is exceeded"), "{e}");
    assert!(e.is_transient());
    assert_eq!(
        pc.stats().attempts,
        u64::from(RetryPolicy::default().max_attempts)
    );
}
