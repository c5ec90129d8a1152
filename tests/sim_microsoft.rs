//! The simulated Microsoft APIs (Entra, Graph, Partner Center) over real HTTP, with raw
//! requests (reference/external-apis.md §1–§3): what a client written from the spec sees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use cspsync::sim::world::{
    AppRegistration, CustomerTenant, Domain, MsSubscription, MspTenant, User, World,
};
use cspsync::sim::{FaultSpec, SimHandle, Urls};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const MSP_TENANT: &str = "6f3c1f5e-8d2a-4b51-9a8e-1c2b3d4e5f60";
const CUST_A: &str = "b44bb1fb-c595-45b0-9e09-d657365580bf";
const CUST_B: &str = "c55cc2fc-d606-46c1-8f1a-e768476691c0";
const SKU_SPB: &str = "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46";
const SKU_EXO: &str = "4b9405b0-7788-4568-add1-99614e613b69";
const SUB_MONTHLY: &str = "83ef9d05-4169-4ef9-9657-0e86b1eab1de";
const SUB_ANNUAL: &str = "93ef9d05-4169-4ef9-9657-0e86b1eab1df";
const SUB_SUSPENDED: &str = "a3ef9d05-4169-4ef9-9657-0e86b1eab1e0";
const SUB_DELETED: &str = "b3ef9d05-4169-4ef9-9657-0e86b1eab1e1";
const GRAPH_ALL: &str = "openid profile offline_access https://graph.microsoft.com/.default";
const PC_SCOPE: &str =
    "openid offline_access https://api.partnercenter.microsoft.com/user_impersonation";

fn user(n: u32, name: &str, upn: &str, roles: &[&str], mfa: bool, enabled: bool) -> User {
    User {
        id: format!("00000000-0000-4000-8000-{n:012}"),
        display_name: name.into(),
        given_name: name.split(' ').next().map(str::to_string),
        surname: name.split(' ').nth(1).map(str::to_string),
        user_principal_name: upn.into(),
        mail: Some(upn.into()),
        job_title: None,
        account_enabled: enabled,
        user_type: "Member".into(),
        assigned_licenses: vec![],
        partner_roles: roles.iter().map(|r| r.to_string()).collect(),
        mfa,
    }
}

#[allow(clippy::too_many_arguments)]
fn sub(
    id: &str,
    sku: &str,
    part: &str,
    quantity: u32,
    status: &str,
    term: &str,
    created_days_ago: i64,
) -> MsSubscription {
    let created = Utc::now() - chrono::Duration::days(created_days_ago);
    let months = if term == "P1M" { 1 } else { 12 };
    MsSubscription {
        id: id.into(),
        directory_id: format!("d{}", &id[1..]),
        offer_id: "CFQ7TTC0LCHC:0002:CFQ7TTC0K5DJ".into(),
        offer_name: "Microsoft 365 Business Premium".into(),
        friendly_name: part.into(),
        product_id: "CFQ7TTC0LCHC".into(),
        sku_id: "0002".into(),
        graph_sku_id: sku.into(),
        sku_part_number: part.into(),
        quantity,
        status: status.into(),
        billing_cycle: if term == "P1M" { "monthly" } else { "annual" }.into(),
        term_duration: term.into(),
        creation_date: Some(created),
        effective_start_date: Some(created),
        commitment_end_date: created.checked_add_months(chrono::Months::new(months)),
        auto_renew_enabled: true,
        is_trial: false,
        order_id: "6183db3d-6318-4e52-877e-25806e4971be".into(),
        seat_additions: vec![],
    }
}

/// A small world: an MSP with 25 users (5 named, 20 staff) and 7 customers, the first with
/// GDAP and four subscriptions.
fn world() -> World {
    let mut users = vec![
        user(
            1,
            "Ada Admin",
            "ada@msp.example",
            &["GlobalAdmin"],
            true,
            true,
        ),
        user(
            2,
            "Alan Agent",
            "alan@msp.example",
            &["AdminAgent"],
            true,
            true,
        ),
        user(
            3,
            "Nora NoMfa",
            "nora@msp.example",
            &["AdminAgent"],
            false,
            true,
        ),
        user(4, "Paul Plain", "paul@msp.example", &[], true, true),
        user(
            5,
            "Dora Disabled",
            "dora@msp.example",
            &["AdminAgent"],
            true,
            false,
        ),
    ];
    for i in 0..20 {
        users.push(user(
            100 + i,
            &format!("Staff {i:02}"),
            &format!("staff{i:02}@msp.example"),
            &[],
            true,
            true,
        ));
    }
    let mut a = CustomerTenant {
        tenant_id: CUST_A.into(),
        commerce_id: "9dd78b4f-f98a-44b4-a2fa-2b82ac58d24c".into(),
        company_name: "Contoso Pty Ltd".into(),
        domain: "contoso.onmicrosoft.com".into(),
        custom_domains: vec!["contoso.com.au".into()],
        relationship_to_partner: "reseller".into(),
        allow_delegated_access: true,
        gdap_active: true,
        country: "AU".into(),
        user_count: 30,
        assigned: BTreeMap::from([(SKU_SPB.to_string(), 12), (SKU_EXO.to_string(), 2)]),
        subscriptions: vec![
            sub(SUB_MONTHLY, SKU_SPB, "SPB", 10, "active", "P1M", 45),
            sub(SUB_ANNUAL, SKU_SPB, "SPB", 5, "active", "P1Y", 3),
            sub(
                SUB_SUSPENDED,
                SKU_EXO,
                "EXCHANGESTANDARD",
                4,
                "suspended",
                "P1Y",
                100,
            ),
            sub(
                SUB_DELETED,
                SKU_EXO,
                "EXCHANGESTANDARD",
                9,
                "deleted",
                "P1Y",
                400,
            ),
        ],
    };
    // The monthly subscription renews monthly; keep its term start outside the window.
    a.subscriptions[0].commitment_end_date = Some(Utc::now() + chrono::Duration::days(20));
    let mut customers = vec![a];
    let names = [
        "Fabrikam Ltd",
        "Contoso Holdings",
        "Northwind Traders",
        "Tailspin Toys",
        "Wingtip Partners",
        "Adatum Corp",
    ];
    for (i, n) in names.iter().enumerate() {
        customers.push(CustomerTenant {
            tenant_id: if i == 0 {
                CUST_B.into()
            } else {
                format!("{i:08}-0000-4000-8000-00000000000{i}")
            },
            company_name: n.to_string(),
            domain: format!(
                "{}.onmicrosoft.com",
                n.split(' ').next().unwrap().to_lowercase()
            ),
            relationship_to_partner: "reseller".into(),
            gdap_active: false,
            country: "AU".into(),
            ..CustomerTenant::default()
        });
    }
    World {
        app: AppRegistration {
            device_code_interval_secs: 1,
            ..AppRegistration::default()
        },
        msp: MspTenant {
            tenant_id: MSP_TENANT.into(),
            display_name: "Example MSP".into(),
            country: "AU".into(),
            verified_domains: vec![
                Domain {
                    name: "examplemsp.onmicrosoft.com".into(),
                    is_default: false,
                    is_initial: true,
                },
                Domain {
                    name: "msp.example".into(),
                    is_default: true,
                    is_initial: false,
                },
            ],
            users,
            mpn_id: "4391507".into(),
            partner_name: "Example MSP Pty Ltd".into(),
        },
        customers,
        ..World::default()
    }
}

struct T {
    _h: SimHandle,
    urls: Urls,
    c: reqwest::Client,
    client_id: String,
}

async fn start_with(w: World, faults: FaultSpec) -> T {
    let client_id = w.app.client_id.clone();
    let h = cspsync::sim::start(w, faults, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    T {
        urls: h.urls(),
        _h: h,
        c,
        client_id,
    }
}

async fn start() -> T {
    start_with(world(), FaultSpec::default()).await
}

async fn json_of(r: reqwest::Response) -> (StatusCode, Value) {
    let s = r.status();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

impl T {
    async fn devicecode(&self, tenant: &str, scope: &str) -> (StatusCode, Value) {
        json_of(
            self.c
                .post(format!(
                    "{}/{tenant}/oauth2/v2.0/devicecode",
                    self.urls.entra
                ))
                .form(&[("client_id", self.client_id.as_str()), ("scope", scope)])
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn token(&self, tenant: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut f: Vec<(&str, &str)> = vec![("client_id", self.client_id.as_str())];
        f.extend_from_slice(form);
        json_of(
            self.c
                .post(format!("{}/{tenant}/oauth2/v2.0/token", self.urls.entra))
                .form(&f)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn poll(&self, tenant: &str, device_code: &str) -> (StatusCode, Value) {
        self.token(
            tenant,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code),
            ],
        )
        .await
    }

    async fn approve(&self, body: Value) -> (StatusCode, Value) {
        json_of(
            self.c
                .post(format!("{}/device/approve", self.urls.control))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Sign in with the device flow as `upn` and return the token response.
    async fn sign_in(&self, tenant: &str, scope: &str, upn: &str) -> Value {
        let (s, dc) = self.devicecode(tenant, scope).await;
        assert_eq!(s, StatusCode::OK, "{dc}");
        let (s, a) = self
            .approve(json!({"user_code": dc["user_code"], "upn": upn}))
            .await;
        assert_eq!(s, StatusCode::OK, "{a}");
        let (s, t) = self.poll(tenant, dc["device_code"].as_str().unwrap()).await;
        assert_eq!(s, StatusCode::OK, "{t}");
        t
    }

    async fn access(&self, scope: &str, upn: &str) -> String {
        self.sign_in("organizations", scope, upn).await["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn refresh(&self, tenant: &str, rt: &str, scope: &str) -> (StatusCode, Value) {
        self.token(
            tenant,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("scope", scope),
            ],
        )
        .await
    }

    async fn graph(&self, token: &str, path_and_query: &str) -> (StatusCode, Value) {
        self.graph_url(token, &format!("{}{path_and_query}", self.urls.graph), &[])
            .await
    }

    async fn graph_url(
        &self,
        token: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut r = self.c.get(url).bearer_auth(token);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        json_of(r.send().await.unwrap()).await
    }

    async fn pc(&self, token: &str, path: &str) -> (StatusCode, Value) {
        json_of(
            self.c
                .get(format!("{}{path}", self.urls.partnercenter))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn pc_patch(
        &self,
        token: &str,
        path: &str,
        request_id: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        json_of(
            self.c
                .patch(format!("{}{path}", self.urls.partnercenter))
                .bearer_auth(token)
                .header("MS-RequestId", request_id)
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The §1.5 error body.
fn assert_oauth_error(body: &Value, error: &str, code: u64) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let desc = body["error_description"].as_str().unwrap();
    assert!(desc.starts_with(&format!("AADSTS{code}: ")), "{desc}");
    for line in ["\r\nTrace ID: ", "\r\nCorrelation ID: ", "\r\nTimestamp: "] {
        assert!(desc.contains(line), "{desc}");
    }
    for k in ["timestamp", "trace_id", "correlation_id"] {
        assert!(body[k].is_string(), "{k} missing in {body}");
    }
}

// ---------------------------------------------------------------------------------------------
// Entra (§1)

#[tokio::test]
async fn device_code_flow_end_to_end() {
    let t = start().await;
    let (s, dc) = t.devicecode("organizations", GRAPH_ALL).await;
    assert_eq!(s, StatusCode::OK);
    let user_code = dc["user_code"].as_str().unwrap().to_string();
    let device_code = dc["device_code"].as_str().unwrap().to_string();
    assert_eq!(
        dc["verification_uri"],
        format!("{}/devicelogin", t.urls.entra)
    );
    assert_eq!(dc["expires_in"], 900);
    assert_eq!(dc["interval"], 1);
    assert!(dc["message"].as_str().unwrap().contains(&user_code));
    assert!(dc.get("verification_uri_complete").is_none());

    // Not approved yet: pending; polling again at once: slow_down (RFC 8628).
    let (s, p) = t.poll("organizations", &device_code).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_oauth_error(&p, "authorization_pending", 70016);
    let (_, p) = t.poll("organizations", &device_code).await;
    assert_eq!(p["error"], "slow_down", "{p}");

    // The person approves on the control surface; the next poll gets the tokens.
    let (s, a) = t.approve(json!({"user_code": user_code})).await;
    assert_eq!(
        (s, a),
        (StatusCode::OK, json!({"approved": 1, "declined": 0}))
    );
    let (s, tok) = t.poll("organizations", &device_code).await;
    assert_eq!(s, StatusCode::OK, "{tok}");
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 3599);
    assert!(
        tok["refresh_token"].is_string(),
        "offline_access → refresh token"
    );
    assert!(
        tok["scope"]
            .as_str()
            .unwrap()
            .contains("https://graph.microsoft.com/Organization.Read.All")
    );
    let id = claims(tok["id_token"].as_str().unwrap());
    assert_eq!(id["tid"], MSP_TENANT);
    assert_eq!(id["preferred_username"], "ada@msp.example");
    assert_eq!(id["oid"], "00000000-0000-4000-8000-000000000001");
    assert_eq!(id["aud"], t.client_id);
    assert_eq!(id["ver"], "2.0");
    assert_eq!(id["amr"], json!(["pwd", "mfa"]));
    assert!(
        id.get("upn").is_none(),
        "no upn claim in v2.0 id_tokens (§1.6)"
    );

    // The code is spent.
    let (_, again) = t.poll("organizations", &device_code).await;
    assert_oauth_error(&again, "bad_verification_code", 70018);

    // The token works on Graph, in the MSP tenant.
    let at = tok["access_token"].as_str().unwrap();
    let (s, org) = t.graph(at, "/organization").await;
    assert_eq!(s, StatusCode::OK, "{org}");
    assert_eq!(org["value"][0]["id"], MSP_TENANT);
    assert_eq!(org["value"].as_array().unwrap().len(), 1);

    // Declined by the person.
    let (_, dc) = t.devicecode("organizations", GRAPH_ALL).await;
    let (s, _) = t
        .approve(json!({"user_code": dc["user_code"], "decline": true}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, p) = t
        .poll("organizations", dc["device_code"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_oauth_error(&p, "authorization_declined", 70017);

    // Approved for a disabled user → declined.
    let (_, dc) = t.devicecode("organizations", GRAPH_ALL).await;
    t.approve(json!({"user_code": dc["user_code"], "upn": "dora@msp.example"}))
        .await;
    let (_, p) = t
        .poll("organizations", dc["device_code"].as_str().unwrap())
        .await;
    assert_eq!(p["error"], "authorization_declined", "{p}");

    // Unknown codes, users, clients and tenants.
    let (_, p) = t.poll("organizations", "not-a-device-code").await;
    assert_oauth_error(&p, "bad_verification_code", 70018);
    let (s, a) = t.approve(json!({"user_code": "NOPE12345"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{a}");
    let (s, a) = t.approve(json!({"upn": "nobody@msp.example"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{a}");
    let (s, e) = json_of(
        t.c.post(format!(
            "{}/organizations/oauth2/v2.0/devicecode",
            t.urls.entra
        ))
        .form(&[
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_oauth_error(&e, "unauthorized_client", 700016);
    let (_, e) = t.devicecode("nosuchtenant.example", GRAPH_ALL).await;
    assert_oauth_error(&e, "invalid_request", 90002);
    // The MSP's verified domain is an authority too.
    let (s, _) = t.devicecode("msp.example", GRAPH_ALL).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn device_login_page_signs_in_by_hand() {
    let t = start().await;
    let (_, dc) = t.devicecode("organizations", GRAPH_ALL).await;
    let page =
        t.c.get(dc["verification_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("<form"));
    let code = dc["user_code"].as_str().unwrap().to_lowercase();
    let r =
        t.c.post(dc["verification_uri"].as_str().unwrap())
            .form(&[
                ("user_code", code.as_str()),
                ("upn", "alan@msp.example"),
                ("decision", "approve"),
            ])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, tok) = t
        .poll("organizations", dc["device_code"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::OK, "{tok}");
    assert_eq!(
        claims(tok["id_token"].as_str().unwrap())["preferred_username"],
        "alan@msp.example"
    );
}

#[tokio::test]
async fn device_codes_expire() {
    let mut w = world();
    w.app.device_code_expires_secs = 1;
    let t = start_with(w, FaultSpec::default()).await;
    let (_, dc) = t.devicecode("organizations", GRAPH_ALL).await;
    assert_eq!(dc["expires_in"], 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (s, p) = t
        .poll("organizations", dc["device_code"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_oauth_error(&p, "expired_token", 70019);
    // An expired code can no longer be approved.
    let (s, _) = t.approve(json!({"user_code": dc["user_code"]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn auto_approve_signs_in_as_the_default_admin() {
    let faults = FaultSpec {
        auto_approve_secs: Some(0),
        token_ttl_secs: Some(120),
        ..FaultSpec::default()
    };
    let t = start_with(world(), faults).await;
    let (_, dc) = t.devicecode("organizations", GRAPH_ALL).await;
    let (s, tok) = t
        .poll("organizations", dc["device_code"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::OK, "{tok}");
    assert_eq!(tok["expires_in"], 120);
    assert_eq!(
        claims(tok["id_token"].as_str().unwrap())["preferred_username"],
        "ada@msp.example"
    );
}

#[tokio::test]
async fn no_refresh_token_without_offline_access_and_no_id_token_without_openid() {
    let t = start().await;
    let tok = t
        .sign_in(
            "organizations",
            "https://graph.microsoft.com/User.Read",
            "ada@msp.example",
        )
        .await;
    assert!(tok.get("refresh_token").is_none(), "{tok}");
    assert!(tok.get("id_token").is_none(), "{tok}");
    assert_eq!(tok["scope"], "https://graph.microsoft.com/User.Read");
}

fn pkce() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

#[tokio::test]
async fn auth_code_with_pkce() {
    let t = start().await;
    let redirect = "http://localhost:53999/callback";
    let (verifier, challenge) = pkce();
    let authorize = |redirect: &str, extra: &[(&str, &str)]| {
        let mut q: Vec<(String, String)> = vec![
            ("client_id".into(), t.client_id.clone()),
            ("response_type".into(), "code".into()),
            ("redirect_uri".into(), redirect.into()),
            ("scope".into(), GRAPH_ALL.into()),
            ("state".into(), "st8".into()),
            ("login_hint".into(), "alan@msp.example".into()),
        ];
        for (k, v) in extra {
            q.retain(|(x, _)| x != k);
            q.push((k.to_string(), v.to_string()));
        }
        t.c.get(format!(
            "{}/organizations/oauth2/v2.0/authorize",
            t.urls.entra
        ))
        .query(&q)
        .send()
    };
    let code_of = |r: &reqwest::Response| {
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let u = url::Url::parse(&loc).unwrap();
        let q: BTreeMap<String, String> = u.query_pairs().into_owned().collect();
        (loc, q)
    };

    let r = authorize(
        redirect,
        &[
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let (loc, q) = code_of(&r);
    assert!(loc.starts_with("http://localhost:53999/callback?"), "{loc}");
    assert_eq!(q["state"], "st8");
    let code = q["code"].clone();

    // A wrong verifier is refused.
    let (s, e) = t
        .token(
            "organizations",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
                (
                    "code_verifier",
                    "not-the-verifier-not-the-verifier-not-the-verifier",
                ),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_oauth_error(&e, "invalid_grant", 501481);
    // A different redirect URI is refused.
    let (_, e) = t
        .token(
            "organizations",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://localhost:53999/other"),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(e["error"], "invalid_grant", "{e}");
    // The right verifier works, once.
    let redeem = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", verifier.as_str()),
    ];
    let (s, tok) = t.token("organizations", &redeem).await;
    assert_eq!(s, StatusCode::OK, "{tok}");
    assert!(tok["refresh_token"].is_string());
    assert_eq!(
        claims(tok["id_token"].as_str().unwrap())["preferred_username"],
        "alan@msp.example"
    );
    let (_, e) = t.token("organizations", &redeem).await;
    assert_oauth_error(&e, "invalid_grant", 54005);

    // plain PKCE and 127.0.0.1 with another port.
    let r = authorize(
        "http://127.0.0.1:40001/",
        &[
            (
                "code_challenge",
                "plain-verifier-plain-verifier-plain-verifier-123",
            ),
            ("code_challenge_method", "plain"),
        ],
    )
    .await
    .unwrap();
    let (_, q) = code_of(&r);
    let (s, tok) = t
        .token(
            "organizations",
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("redirect_uri", "http://127.0.0.1:40001/"),
                (
                    "code_verifier",
                    "plain-verifier-plain-verifier-plain-verifier-123",
                ),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{tok}");

    // Errors: a non-loopback redirect gets a page, not a redirect; other errors redirect.
    let r = authorize("https://evil.example/cb", &[]).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    let r = authorize(
        redirect,
        &[("client_id", "11111111-2222-3333-4444-555555555555")],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("AADSTS700016"));
    let r = authorize(redirect, &[("response_type", "token")])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let (_, q) = code_of(&r);
    assert_eq!(q["error"], "unsupported_response_type");
    assert_eq!(q["state"], "st8");
    assert!(q["error_description"].starts_with("AADSTS"));
    let r = authorize(redirect, &[("login_hint", "dora@msp.example")])
        .await
        .unwrap();
    let (_, q) = code_of(&r);
    assert_eq!(q["error"], "access_denied", "disabled user");
}

#[tokio::test]
async fn one_refresh_token_reaches_customer_tenants_under_gdap_only() {
    let t = start().await;
    let tok = t
        .sign_in("organizations", GRAPH_ALL, "ada@msp.example")
        .await;
    let rt = tok["refresh_token"].as_str().unwrap();

    // At the customer's authority: a token for the customer tenant.
    let (s, c) = t
        .refresh(CUST_A, rt, "openid https://graph.microsoft.com/.default")
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let new_rt = c["refresh_token"].as_str().unwrap();
    assert_ne!(new_rt, rt, "refresh tokens rotate");
    assert_eq!(claims(c["id_token"].as_str().unwrap())["tid"], CUST_A);
    let (s, org) = t
        .graph(c["access_token"].as_str().unwrap(), "/organization")
        .await;
    assert_eq!(s, StatusCode::OK, "{org}");
    assert_eq!(org["value"][0]["id"], CUST_A);
    assert_eq!(org["value"][0]["displayName"], "Contoso Pty Ltd");
    let domains = org["value"][0]["verifiedDomains"].as_array().unwrap();
    assert!(
        domains
            .iter()
            .any(|d| d["name"] == "contoso.com.au" && d["isDefault"] == true)
    );

    // Without GDAP: refused (§3.7).
    let (s, e) = t
        .refresh(CUST_B, rt, "https://graph.microsoft.com/.default")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_oauth_error(&e, "invalid_grant", 50020);
    let (_, e) = t
        .refresh("00000000-dead-beef-0000-000000000000", rt, "openid")
        .await;
    assert_oauth_error(&e, "invalid_request", 90002);

    // The old refresh token still works, and mints a Partner Center token (§1.4).
    let (s, pc) = t.refresh("organizations", rt, PC_SCOPE).await;
    assert_eq!(s, StatusCode::OK, "{pc}");
    assert_eq!(
        pc["scope"],
        "https://api.partnercenter.microsoft.com/user_impersonation"
    );
    let (s, _) = t
        .pc(pc["access_token"].as_str().unwrap(), "/customers?size=2")
        .await;
    assert_eq!(s, StatusCode::OK);
    // The rotated one works too.
    let (s, _) = t.refresh("organizations", new_rt, GRAPH_ALL).await;
    assert_eq!(s, StatusCode::OK);
    let (_, e) = t
        .refresh("organizations", "1.AVEA-garbage", GRAPH_ALL)
        .await;
    assert_eq!(e["error"], "invalid_grant");
}

// ---------------------------------------------------------------------------------------------
// Graph (§2)

#[tokio::test]
async fn graph_users_paging_select_and_count() {
    let t = start().await;
    let at = t.access(GRAPH_ALL, "ada@msp.example").await;
    let sel = "id,displayName,accountEnabled";
    let first = format!("{}/users?$select={sel}&$top=10", t.urls.graph);
    let mut url = Some(first);
    let mut pages = 0;
    let mut ids = HashSet::new();
    while let Some(u) = url {
        let (s, page) = t.graph_url(&at, &u, &[]).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        pages += 1;
        assert!(
            page["@odata.context"]
                .as_str()
                .unwrap()
                .ends_with("/$metadata#users(id,displayName,accountEnabled)")
        );
        for item in page["value"].as_array().unwrap() {
            let keys: HashSet<&str> = item
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, HashSet::from(["id", "displayName", "accountEnabled"]));
            assert!(ids.insert(item["id"].as_str().unwrap().to_string()));
        }
        url = page["@odata.nextLink"].as_str().map(|l| {
            assert!(l.starts_with(&format!("{}/users?", t.urls.graph)), "{l}");
            assert!(l.contains(&format!("$select={sel}")) && l.contains("$top=10"));
            assert!(l.contains("$skiptoken="));
            l.to_string()
        });
    }
    assert_eq!((pages, ids.len()), (3, 25));

    // Default properties when $select is absent.
    let (_, page) = t.graph(&at, "/users").await;
    let first = page["value"][0].as_object().unwrap();
    assert!(first.contains_key("userPrincipalName") && first.contains_key("businessPhones"));
    assert!(!first.contains_key("accountEnabled"));
    assert!(
        page.get("@odata.nextLink").is_none(),
        "25 users fit the default page of 100"
    );

    // $count with ConsistencyLevel: on the first page only.
    let cl = [("ConsistencyLevel", "eventual")];
    let (s, p1) = t
        .graph_url(
            &at,
            &format!("{}/users?$count=true&$top=20", t.urls.graph),
            &cl,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p1}");
    assert_eq!(p1["@odata.count"], 25);
    let (_, p2) = t
        .graph_url(&at, p1["@odata.nextLink"].as_str().unwrap(), &cl)
        .await;
    assert!(p2.get("@odata.count").is_none());
    assert_eq!(p2["value"].as_array().unwrap().len(), 5);

    // Filters.
    let (_, f) = t
        .graph(
            &at,
            "/users?$filter=startswith(displayName,'staff')&$top=999",
        )
        .await;
    assert_eq!(f["value"].as_array().unwrap().len(), 20);
    let (_, f) = t
        .graph(&at, "/users?$filter=accountEnabled%20eq%20true&$select=id")
        .await;
    assert_eq!(f["value"].as_array().unwrap().len(), 24);
    let (_, f) = t
        .graph(&at, "/users?$filter=startswith(userPrincipalName,'nora@')")
        .await;
    assert_eq!(f["value"][0]["displayName"], "Nora NoMfa");

    // Refusals.
    let (s, e) = t.graph(&at, "/users?$top=1000").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        e["error"]["message"],
        "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive."
    );
    let (s, _) = t.graph(&at, "/users?$skip=10").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, e) = t.graph(&at, "/users?$select=id,shoeSize").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
}

#[tokio::test]
async fn graph_401_and_403_shapes() {
    let t = start().await;
    let check_401 = |(s, e): (StatusCode, Value)| {
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{e}");
        assert_eq!(e["error"]["code"], "InvalidAuthenticationToken");
        assert!(e["error"]["message"].is_string());
        assert!(e["error"]["innerError"]["request-id"].is_string());
        assert!(e["error"]["innerError"]["date"].is_string());
    };
    let r =
        t.c.get(format!("{}/users", t.urls.graph))
            .send()
            .await
            .unwrap();
    check_401(json_of(r).await);
    check_401(t.graph("not-a-token", "/users").await);
    let pc = t.access(PC_SCOPE, "ada@msp.example").await;
    check_401(t.graph(&pc, "/organization").await);

    // User.Read only: the basic organization, nothing else.
    let basic = t
        .access("https://graph.microsoft.com/User.Read", "ada@msp.example")
        .await;
    let (s, org) = t.graph(&basic, "/organization").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(org["value"][0]["displayName"], "Example MSP");
    assert!(org["value"][0]["countryLetterCode"].is_null());
    for path in ["/users", "/subscribedSkus", "/directory/subscriptions"] {
        let (s, e) = t.graph(&basic, path).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(e["error"]["code"], "Authorization_RequestDenied");
        assert_eq!(
            e["error"]["message"],
            "Insufficient privileges to complete the operation."
        );
        assert!(e["error"]["innerError"]["request-id"].is_string());
    }

    // Expired tokens (control surface): 401.
    let full = t.access(GRAPH_ALL, "ada@msp.example").await;
    let (s, _) = t.graph(&full, "/organization").await;
    assert_eq!(s, StatusCode::OK);
    t.c.post(format!("{}/tokens/expire", t.urls.control))
        .send()
        .await
        .unwrap();
    check_401(t.graph(&full, "/organization").await);
}

async fn customer_graph_token(t: &T) -> String {
    let tok = t
        .sign_in("organizations", GRAPH_ALL, "ada@msp.example")
        .await;
    let (s, c) = t
        .refresh(CUST_A, tok["refresh_token"].as_str().unwrap(), GRAPH_ALL)
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    c["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn graph_in_a_customer_tenant() {
    let t = start().await;
    let at = customer_graph_token(&t).await;

    // Synthetic users: user_count of them on the default domain, stable across calls.
    let (_, u1) = t
        .graph(
            &at,
            "/users?$select=id,userPrincipalName,assignedLicenses&$top=999",
        )
        .await;
    let list = u1["value"].as_array().unwrap();
    assert_eq!(list.len(), 30);
    assert!(list.iter().all(|u| {
        u["userPrincipalName"]
            .as_str()
            .unwrap()
            .ends_with("@contoso.com.au")
    }));
    let spb = list
        .iter()
        .filter(|u| {
            u["assignedLicenses"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["skuId"] == SKU_SPB)
        })
        .count();
    assert_eq!(spb, 12);
    let (_, u2) = t
        .graph(
            &at,
            "/users?$select=id,userPrincipalName,assignedLicenses&$top=999",
        )
        .await;
    assert_eq!(u1["value"], u2["value"]);

    // subscribedSkus: one entry per sku, quantities summed by status (§2.3).
    let (s, skus) = t.graph(&at, "/subscribedSkus").await;
    assert_eq!(s, StatusCode::OK, "{skus}");
    let skus = skus["value"].as_array().unwrap();
    assert_eq!(skus.len(), 2);
    let spb = skus.iter().find(|k| k["skuId"] == SKU_SPB).unwrap();
    assert_eq!(spb["id"], format!("{CUST_A}_{SKU_SPB}"));
    assert_eq!(spb["skuPartNumber"], "SPB");
    assert_eq!(spb["capabilityStatus"], "Enabled");
    assert_eq!(spb["consumedUnits"], 12);
    assert_eq!(
        spb["prepaidUnits"],
        json!({"enabled": 15, "lockedOut": 0, "suspended": 0, "warning": 0})
    );
    assert_eq!(spb["subscriptionIds"].as_array().unwrap().len(), 2);
    assert_eq!(spb["appliesTo"], "User");
    assert_eq!(spb["accountName"], "Contoso Pty Ltd");
    let exo = skus.iter().find(|k| k["skuId"] == SKU_EXO).unwrap();
    assert_eq!(exo["capabilityStatus"], "Suspended");
    assert_eq!(exo["prepaidUnits"]["enabled"], 0);
    assert_eq!(exo["prepaidUnits"]["suspended"], 4);
    assert_eq!(exo["consumedUnits"], 2);
    let (_, sel) = t
        .graph(&at, "/subscribedSkus?$select=skuId,consumedUnits")
        .await;
    let keys: HashSet<&str> = sel["value"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, HashSet::from(["skuId", "consumedUnits"]));
    let (s, _) = t.graph(&at, "/subscribedSkus?$filter=skuId%20eq%201").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // directory/subscriptions: one per subscription, status mapped (§2.3a).
    let (_, subs) = t.graph(&at, "/directory/subscriptions").await;
    let subs = subs["value"].as_array().unwrap();
    assert_eq!(subs.len(), 4);
    let by_commerce = |id: &str| {
        subs.iter()
            .find(|s| s["commerceSubscriptionId"] == id)
            .unwrap()
    };
    assert_eq!(by_commerce(SUB_MONTHLY)["status"], "Enabled");
    assert_eq!(by_commerce(SUB_MONTHLY)["totalLicenses"], 10);
    assert_eq!(by_commerce(SUB_MONTHLY)["ownerTenantId"], MSP_TENANT);
    assert_eq!(by_commerce(SUB_SUSPENDED)["status"], "Suspended");
    assert_eq!(by_commerce(SUB_DELETED)["status"], "Deleted");
    let (s, one) = t
        .graph(
            &at,
            &format!("/directory/subscriptions(commerceSubscriptionId='{SUB_ANNUAL}')"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(one["totalLicenses"], 5);
}

#[tokio::test]
async fn graph_gdap_relationships_page() {
    let t = start().await;
    let at = t.access(GRAPH_ALL, "ada@msp.example").await;
    let mut url = Some(format!(
        "{}/tenantRelationships/delegatedAdminRelationships?$top=3",
        t.urls.graph
    ));
    let mut all = Vec::new();
    while let Some(u) = url {
        let (s, page) = t.graph_url(&at, &u, &[]).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        all.extend(page["value"].as_array().unwrap().iter().cloned());
        url = page["@odata.nextLink"].as_str().map(str::to_string);
    }
    assert_eq!(all.len(), 7);
    let active: Vec<_> = all.iter().filter(|r| r["status"] == "active").collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["customer"]["tenantId"], CUST_A);
    let (s, _) = t
        .graph(
            &at,
            "/tenantRelationships/delegatedAdminRelationships?$top=301",
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------------------------------------
// Partner Center (§3)

#[tokio::test]
async fn partner_center_customers_page_with_continuation_headers() {
    let t = start().await;
    let at = t.access(PC_SCOPE, "alan@msp.example").await;
    let r =
        t.c.get(format!("{}/customers?size=3", t.urls.partnercenter))
            .bearer_auth(&at)
            .header("MS-RequestId", "11111111-1111-1111-1111-111111111111")
            .header("MS-CorrelationId", "22222222-2222-2222-2222-222222222222")
            .send()
            .await
            .unwrap();
    assert_eq!(
        r.headers()["ms-requestid"],
        "11111111-1111-1111-1111-111111111111"
    );
    assert_eq!(
        r.headers()["ms-correlationid"],
        "22222222-2222-2222-2222-222222222222"
    );
    let (s, mut page) = json_of(r).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert_eq!(
            page["totalCount"],
            items.len(),
            "totalCount is this page's count"
        );
        assert_eq!(page["attributes"]["objectType"], "Collection");
        for c in items {
            assert_eq!(c["id"], c["companyProfile"]["tenantId"]);
            assert_eq!(c["attributes"]["objectType"], "Customer");
            names.push(
                c["companyProfile"]["companyName"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        let Some(next) = page["links"].get("next") else {
            assert!(page.get("continuationToken").is_none());
            break;
        };
        assert_eq!(next["uri"], "/customers?size=3&seekOperation=Next");
        assert_eq!(next["method"], "GET");
        let h = &next["headers"][0];
        assert_eq!(h["key"], "MS-ContinuationToken");
        assert_eq!(h["value"], page["continuationToken"]);
        let r =
            t.c.get(format!(
                "{}{}",
                t.urls.partnercenter,
                next["uri"].as_str().unwrap()
            ))
            .bearer_auth(&at)
            .header(h["key"].as_str().unwrap(), h["value"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert!(
            r.headers().contains_key("ms-requestid"),
            "generated when absent"
        );
        let (s, p) = json_of(r).await;
        assert_eq!(s, StatusCode::OK, "{p}");
        page = p;
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 7);
    assert_eq!(names.iter().collect::<HashSet<_>>().len(), 7);

    // An unknown continuation token is a 400 in the §3.5 shape.
    let r =
        t.c.get(format!(
            "{}/customers?size=3&seekOperation=Next",
            t.urls.partnercenter
        ))
        .bearer_auth(&at)
        .header("MS-ContinuationToken", "not-a-token")
        .send()
        .await
        .unwrap();
    let (s, e) = json_of(r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["code"].is_number() && e["description"].is_string(), "{e}");
    assert_eq!(e["source"], "PartnerFD");
    assert!(e["data"].is_array());
    for bad in ["0", "501", "x"] {
        let (s, _) = t.pc(&at, &format!("/customers?size={bad}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "size={bad}");
    }

    // filter: CompanyName starts_with, case-insensitive.
    let filter = r#"{"Field":"CompanyName","Value":"contoso","Operator":"starts_with"}"#;
    let r =
        t.c.get(format!("{}/customers", t.urls.partnercenter))
            .query(&[("size", "0"), ("filter", filter)])
            .bearer_auth(&at)
            .send()
            .await
            .unwrap();
    let (s, f) = json_of(r).await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_eq!(f["totalCount"], 2);

    // Single customer and company profile.
    let (s, c) = t.pc(&at, &format!("/customers/{CUST_A}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c["commerceId"], "9dd78b4f-f98a-44b4-a2fa-2b82ac58d24c");
    let (_, p) = t
        .pc(&at, &format!("/customers/{CUST_A}/profiles/company"))
        .await;
    assert_eq!(p["domain"], "contoso.onmicrosoft.com");
    assert_eq!(p["attributes"]["objectType"], "CustomerCompanyProfile");
    let (s, e) = t
        .pc(&at, "/customers/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["source"], "PartnerFD");
}

#[tokio::test]
async fn partner_center_requires_mfa_and_an_admin_role() {
    let t = start().await;
    let nomfa = t.access(PC_SCOPE, "nora@msp.example").await;
    let (s, e) = t.pc(&nomfa, "/customers?size=10").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        e["description"]
            .as_str()
            .unwrap()
            .contains("Multi-factor authentication"),
        "{e}"
    );
    assert_eq!(e["source"], "PartnerFD");

    let plain = t.access(PC_SCOPE, "paul@msp.example").await;
    let (s, e) = t.pc(&plain, "/customers?size=10").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert!(e["description"].as_str().unwrap().contains("Admin agent"));

    let graph = t.access(GRAPH_ALL, "ada@msp.example").await;
    let (s, _) = t.pc(&graph, "/customers?size=10").await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a Graph token is not for Partner Center"
    );
    let (s, _) = t.pc("", "/customers?size=10").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn partner_center_quantity_changes() {
    let t = start().await;
    let at = t.access(PC_SCOPE, "ada@msp.example").await;
    let path = |id: &str| format!("/customers/{CUST_A}/subscriptions/{id}");

    let (s, list) = t
        .pc(&at, &format!("/customers/{CUST_A}/subscriptions"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["totalCount"], 4);
    let (_, annual) = t.pc(&at, &path(SUB_ANNUAL)).await;
    assert_eq!(annual["quantity"], 5);
    assert_eq!(annual["termDuration"], "P1Y");
    assert_eq!(annual["attributes"]["objectType"], "Subscription");
    let etag0 = annual["attributes"]["etag"].clone();
    assert!(etag0.is_string());

    // Increase: the whole subscription with a new quantity.
    let mut body = annual.clone();
    body["quantity"] = json!(8);
    let (s, r1) = t.pc_patch(&at, &path(SUB_ANNUAL), "req-1", &body).await;
    assert_eq!(s, StatusCode::OK, "{r1}");
    assert_eq!(r1["quantity"], 8);
    assert_ne!(r1["attributes"]["etag"], etag0);
    // Another change, then a retry of the first request: the first result comes back and
    // nothing is applied again.
    body["quantity"] = json!(9);
    let (_, r2) = t.pc_patch(&at, &path(SUB_ANNUAL), "req-2", &body).await;
    assert_eq!(r2["quantity"], 9);
    body["quantity"] = json!(8);
    let (s, replay) = t.pc_patch(&at, &path(SUB_ANNUAL), "req-1", &body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(replay, r1);
    let (_, now) = t.pc(&at, &path(SUB_ANNUAL)).await;
    assert_eq!(now["quantity"], 9, "the replay changed nothing");
    let (_, w) = json_of(
        t.c.get(format!("{}/world", t.urls.control))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let additions = &w["customers"][0]["subscriptions"][1]["seat_additions"];
    assert_eq!(additions.as_array().unwrap().len(), 2, "{additions}");

    // Graph sees the new quantity.
    let gt = customer_graph_token(&t).await;
    let (_, skus) = t.graph(&gt, "/subscribedSkus").await;
    let spb = skus["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["skuId"] == SKU_SPB)
        .unwrap()
        .clone();
    assert_eq!(spb["prepaidUnits"]["enabled"], 19);
    let (_, one) = t
        .graph(
            &gt,
            &format!("/directory/subscriptions(commerceSubscriptionId='{SUB_ANNUAL}')"),
        )
        .await;
    assert_eq!(one["totalLicenses"], 9);

    // Within 168 h of purchase: any reduction.
    body["quantity"] = json!(2);
    let (s, r) = t.pc_patch(&at, &path(SUB_ANNUAL), "req-3", &body).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["quantity"], 2);

    // Mid-term: no reduction, except of seats added in the last 168 h.
    let (_, monthly) = t.pc(&at, &path(SUB_MONTHLY)).await;
    let mut m = monthly.clone();
    m["quantity"] = json!(9);
    let (s, e) = t.pc_patch(&at, &path(SUB_MONTHLY), "req-4", &m).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        e["description"].as_str().unwrap().contains("168 hours"),
        "{e}"
    );
    assert_eq!(e["source"], "PartnerFD");
    m["quantity"] = json!(12);
    let (s, _) = t.pc_patch(&at, &path(SUB_MONTHLY), "req-5", &m).await;
    assert_eq!(s, StatusCode::OK);
    m["quantity"] = json!(10);
    let (s, r) = t.pc_patch(&at, &path(SUB_MONTHLY), "req-6", &m).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    m["quantity"] = json!(9);
    let (s, _) = t.pc_patch(&at, &path(SUB_MONTHLY), "req-7", &m).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "the added seats are gone; the original ones stay"
    );

    // Suspended subscriptions, bad bodies, unknown ids.
    let (s, e) = t
        .pc_patch(&at, &path(SUB_SUSPENDED), "req-8", &json!({"quantity": 5}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["description"].as_str().unwrap().contains("suspended"));
    let (s, _) = t
        .pc_patch(&at, &path(SUB_ANNUAL), "req-9", &json!({"quantity": 0}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, e) = t
        .pc_patch(
            &at,
            &path("00000000-0000-0000-0000-000000000000"),
            "req-10",
            &json!({"quantity": 5}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["code"], 20003);
}

#[tokio::test]
async fn partner_center_mpn_profile() {
    let t = start().await;
    let at = t.access(PC_SCOPE, "ada@msp.example").await;
    let (s, p) = t.pc(&at, "/profiles/mpn").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["mpnId"], "4391507");
    assert_eq!(p["partnerName"], "Example MSP Pty Ltd");
    assert_eq!(p["profileType"], "MpnProfile");
    let (s, _) = t.pc(&at, "/profiles/mpn?mpnId=4391507").await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = t.pc(&at, "/profiles/mpn?mpnId=9999999").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        e,
        json!({"code": 3000, "description": "Partner Organization with partner_id 9999999 could not be found", "data": [], "source": "PartnerFD"})
    );
}

#[tokio::test]
async fn state_dump_counts_but_never_shows_secrets() {
    let t = start().await;
    let tok = t
        .sign_in("organizations", GRAPH_ALL, "ada@msp.example")
        .await;
    let (_, state) = json_of(
        t.c.get(format!("{}/state", t.urls.control))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let text = state.to_string();
    assert!(!text.contains(tok["refresh_token"].as_str().unwrap()));
    assert!(!text.contains(tok["access_token"].as_str().unwrap()));
    assert_eq!(state["entra"]["refresh_tokens_issued"], 1);
}
