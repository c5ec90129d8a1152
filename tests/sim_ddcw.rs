//! The simulated Dicker Data and ConnectWise Manage APIs, driven over loopback TCP with raw
//! HTTP (reference/external-apis.md §4 and §5), independent of the clients in `src/api`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use base64::Engine;
use chrono::{Duration, NaiveDate, NaiveDateTime, Utc};
use cspsync::sim::world::{
    ConnectWise, CustomerTenant, CwAddition, CwAgreement, CwCatalogItem, CwCompany, DdSubscription,
    DickerData, MsSubscription,
};
use cspsync::sim::{FaultSpec, SimHandle, World};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};

const ACCOUNT: &str = "325026";
const ACCESS_CODE: &str = "237082ED-EB96-4C1A-9F3B-0123456789AB";
const T1: &str = "b44bb1fb-c595-45b0-9e09-d657365580bf";
const T2: &str = "0f6c1d2e-3a4b-4c5d-8e9f-a0b1c2d3e4f5";
const SUB_A: &str = "83ef9d05-4169-4ef9-9657-0e86b1eab1de";
const SUB_B: &str = "5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const SUB_C: &str = "6b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e";
const BP_CODE: &str = "P1Y:CFQ7TTC0LCHC:0002:1:";

const CW_COMPANY: &str = "contoso";
const CW_PUBLIC: &str = "PubKeyAbc123";
const CW_PRIVATE: &str = "PrivKeyXyz789";
const CW_CLIENT: &str = "5e2b7d1a-9c3f-4e8a-b6d0-1f2e3d4c5b6a";

fn dd_line(
    tenant: &str,
    company: &str,
    reference: &str,
    stock: &str,
    sub: &str,
    qty: u32,
    cost: Decimal,
) -> DdSubscription {
    DdSubscription {
        tenant_id: tenant.into(),
        subscription_reference: reference.into(),
        company_name: company.into(),
        tenant_description: format!("{}.onmicrosoft.com", company.to_lowercase()),
        stock_code: stock.into(),
        stock_description: "MS NCE LICENCE".into(),
        manufacturer_stock_code: stock
            .split(':')
            .skip(1)
            .take(2)
            .collect::<Vec<_>>()
            .join(":"),
        subscription_id: sub.into(),
        parent_subscription_id: None,
        status: "ACTIVE".into(),
        billing_frequency: "Monthly".into(),
        confirmed_quantity: qty,
        last_billing_date: NaiveDate::from_ymd_opt(2026, 4, 1),
        next_billing_date: NaiveDate::from_ymd_opt(2026, 5, 1),
        expiry_date: NaiveDate::from_ymd_opt(2026, 8, 30),
        unit_cost: cost,
    }
}

fn ms_sub(id: &str, qty: u32, term: &str, created_days_ago: i64) -> MsSubscription {
    let created = Utc::now() - Duration::days(created_days_ago);
    MsSubscription {
        id: id.into(),
        quantity: qty,
        status: "active".into(),
        term_duration: term.into(),
        billing_cycle: "monthly".into(),
        creation_date: Some(created),
        effective_start_date: Some(created),
        ..MsSubscription::default()
    }
}

fn world(access_key_lifetime_secs: u32) -> World {
    let mut w = World {
        connectwise: cw_world(),
        ..World::default()
    };
    w.dicker_data = DickerData {
        account_code: ACCOUNT.into(),
        access_code: ACCESS_CODE.into(),
        access_key_lifetime_secs,
        subscriptions: vec![
            dd_line(
                T1,
                "ATLAS",
                "2F295B21",
                BP_CODE,
                SUB_A,
                25,
                Decimal::new(2819, 2),
            ),
            dd_line(
                T1,
                "ATLAS",
                "2F295B22",
                "P1M:CFQ7TTC0LH16:0001:1:",
                SUB_B,
                10,
                Decimal::new(660, 2),
            ),
            dd_line(
                T2,
                "BORON",
                "2F295B23",
                BP_CODE,
                SUB_C,
                5,
                Decimal::new(2819, 2),
            ),
        ],
    };
    w.customers = vec![
        CustomerTenant {
            tenant_id: T1.into(),
            company_name: "Atlas".into(),
            // Annual, bought 30 days ago: no reductions any more. Monthly, bought 2 days ago.
            subscriptions: vec![ms_sub(SUB_A, 25, "P1Y", 30), ms_sub(SUB_B, 10, "P1M", 2)],
            ..CustomerTenant::default()
        },
        CustomerTenant {
            tenant_id: T2.into(),
            company_name: "Boron".into(),
            subscriptions: vec![ms_sub(SUB_C, 5, "P1Y", 100)],
            ..CustomerTenant::default()
        },
    ];
    w
}

fn cw_world() -> ConnectWise {
    let companies = (1..=60u64)
        .map(|i| CwCompany {
            id: i,
            identifier: format!("Company{i:02}"),
            name: format!("Company {i:02}"),
            status: if i % 10 == 0 { "Inactive" } else { "Active" }.into(),
            types: vec!["Client".into()],
            website: (i % 2 == 0).then(|| format!("https://c{i}.example")),
            phone_number: None,
            deleted_flag: i == 7,
        })
        .collect();
    let agreement = |id: u64, company_id: u64, status: &str| CwAgreement {
        id,
        name: format!("Microsoft CSP {id}"),
        type_name: "Microsoft CSP".into(),
        company_id,
        agreement_status: status.into(),
        start_date: NaiveDate::from_ymd_opt(2025, 7, 1),
        billing_cycle: "Monthly".into(),
        cancelled_flag: status == "Cancelled",
        ..CwAgreement::default()
    };
    let item = |id: u64, identifier: &str, price: i64, cost: i64| CwCatalogItem {
        id,
        identifier: identifier.into(),
        description: format!("{identifier} licence"),
        customer_description: format!("{identifier} licence"),
        price: Decimal::new(price, 2),
        cost: Decimal::new(cost, 2),
        product_class: "NonInventory".into(),
        recurring_flag: true,
        ..CwCatalogItem::default()
    };
    ConnectWise {
        company_id: CW_COMPANY.into(),
        public_key: CW_PUBLIC.into(),
        private_key: CW_PRIVATE.into(),
        client_ids: vec![CW_CLIENT.into()],
        companies,
        agreements: vec![
            agreement(77, 1, "Active"),
            agreement(78, 2, "Active"),
            agreement(79, 3, "Cancelled"),
        ],
        additions: vec![CwAddition {
            id: 9012,
            agreement_id: 77,
            product_id: 731,
            quantity: Decimal::from(25),
            less_included: Decimal::ZERO,
            unit_price: Decimal::new(3455, 2),
            unit_cost: Decimal::new(2819, 2),
            bill_customer: "Billable".into(),
            effective_date: NaiveDate::from_ymd_opt(2025, 7, 1),
            cancelled_date: None,
            description: "Microsoft 365 Business Premium (annual)".into(),
            invoice_description: None,
            taxable_flag: true,
            last_updated: None,
        }],
        catalog: vec![
            item(731, "CFQ7TTC0LCHC-P1Y", 3455, 2819),
            item(732, "CFQ7TTC0LH16-P1M", 792, 660),
            item(733, "CFQ7TTC0LF8Q-P1Y", 1100, 900),
        ],
    }
}

async fn start(w: World) -> SimHandle {
    cspsync::sim::start(w, FaultSpec::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn body(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, v)
}

async fn state(sim: &SimHandle) -> Value {
    let resp = http()
        .get(format!("{}/state", sim.urls().control))
        .send()
        .await
        .unwrap();
    body(resp).await.1
}

// ---------------------------------------------------------------------------------------------
// Dicker Data
// ---------------------------------------------------------------------------------------------

async fn dd_post(sim: &SimHandle, path: &str, req: &Value) -> (StatusCode, Value) {
    let resp = http()
        .post(format!("{}{path}", sim.urls().dickerdata))
        .json(req)
        .send()
        .await
        .unwrap();
    body(resp).await
}

async fn access_key(sim: &SimHandle) -> String {
    let (status, v) = dd_post(
        sim,
        "/AccessKeyRequest",
        &json!({"TransactionID": uuid::Uuid::new_v4().to_string(), "AccessToken": ACCESS_CODE, "AccountCode": ACCOUNT}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["Status"], "GRANTED", "{v}");
    v["AccessKey"].as_str().unwrap().to_string()
}

/// A call authorised the (a) way: Bearer + DD headers.
async fn dd_bearer(sim: &SimHandle, key: &str, path: &str, req: &Value) -> (StatusCode, Value) {
    let resp = http()
        .post(format!("{}{path}", sim.urls().dickerdata))
        .bearer_auth(key)
        .header("DD-TransactionID", uuid::Uuid::new_v4().to_string())
        .header("DD-ApiVersion", "v1")
        .json(req)
        .send()
        .await
        .unwrap();
    body(resp).await
}

/// A call authorised the (b) way: RequestHeader in the body.
async fn dd_in_body(sim: &SimHandle, key: &str, path: &str, input: Value) -> (StatusCode, Value) {
    let req = json!({
        "RequestHeader": {"TransactionID": uuid::Uuid::new_v4().to_string(), "Token": ACCESS_CODE, "AccessKey": key},
        "In": input,
    });
    dd_post(sim, path, &req).await
}

#[tokio::test]
async fn dd_access_key_is_granted_only_for_the_right_credentials() {
    let sim = start(world(0)).await;
    let (status, v) = dd_post(
        &sim,
        "/AccessKeyRequest",
        &json!({"TransactionID": "5b7c8f0e-2c51-4d0e-9a7a-1c2d3e4f5a6b", "AccessToken": ACCESS_CODE, "AccountCode": ACCOUNT}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["Status"], "GRANTED");
    assert_eq!(v["Message"], Value::Null);
    assert!(!v["AccessKey"].as_str().unwrap().is_empty());
    // §4.2 format, no offset; the sim writes UTC, lifetime 600 s by default.
    let exp =
        NaiveDateTime::parse_from_str(v["ExpireDateTime"].as_str().unwrap(), "%Y-%m-%dT%H:%M:%S")
            .unwrap()
            .and_utc();
    let secs = (exp - Utc::now()).num_seconds();
    assert!((590..=601).contains(&secs), "lifetime {secs}");

    // AccountCode is optional (D3 omits it).
    let (_, v) = dd_post(
        &sim,
        "/AccessKeyRequest",
        &json!({"TransactionID": "x", "AccessToken": ACCESS_CODE}),
    )
    .await;
    assert_eq!(v["Status"], "GRANTED");

    for bad in [
        json!({"TransactionID": "x", "AccessToken": "WRONG", "AccountCode": ACCOUNT}),
        json!({"TransactionID": "x", "AccessToken": ACCESS_CODE, "AccountCode": "999999"}),
        json!({"TransactionID": "x"}),
    ] {
        let (status, v) = dd_post(&sim, "/AccessKeyRequest", &bad).await;
        assert_eq!(status, StatusCode::OK, "failures are HTTP 200 (§4.2)");
        assert_eq!(
            v,
            json!({"Status": "Failed", "Message": "Invalid credentials"})
        );
    }
    let st = state(&sim).await;
    assert_eq!(st["dickerdata"]["access_keys_issued"], 2);
    assert_eq!(st["dickerdata"]["access_key_requests_refused"], 3);
}

#[tokio::test]
async fn dd_both_auth_styles_work_and_bad_keys_are_refused_each_way() {
    let sim = start(world(0)).await;
    let key = access_key(&sim).await;
    let input = json!({"In": {"SubscriptionType": "CSP"}});

    // (a) headers.
    let (status, v) = dd_bearer(&sim, &key, "/Subscriptions/GetSubscriptionDetails", &input).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["Out"].as_array().unwrap().len(), 3);
    // (b) RequestHeader in the body.
    let (status, v) = dd_in_body(
        &sim,
        &key,
        "/Subscriptions/GetSubscriptionDetails",
        json!({"SubscriptionType": "CSP"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["Out"].as_array().unwrap().len(), 3);
    // (b) on a GET: query parameters, both the generic and the pricingRequest prefix.
    for prefix in ["request.requestHeader", "pricingRequest"] {
        let resp = http()
            .get(format!("{}/PricingRequest", sim.urls().dickerdata))
            .query(&[
                ("pricingRequest.messageID", "m1"),
                (&format!("{prefix}.token"), ACCESS_CODE),
                (&format!("{prefix}.accessKey"), &key),
                ("pricingRequest.products", BP_CODE),
            ])
            .send()
            .await
            .unwrap();
        let (status, v) = body(resp).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["SearchResult"][0]["PartNumber"], BP_CODE, "{prefix}: {v}");
    }

    // Unknown key: 401 via headers, 200 Failed via the body.
    let (status, v) = dd_bearer(
        &sim,
        "NOT-A-KEY",
        "/Subscriptions/GetSubscriptionDetails",
        &input,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        v["Message"],
        "Authorization has been denied for this request."
    );
    let (status, v) = dd_in_body(
        &sim,
        "NOT-A-KEY",
        "/Subscriptions/GetSubscriptionDetails",
        json!({"SubscriptionType": "CSP"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["Status"], "Failed");
    assert_eq!(v["Message"], "Invalid or expired AccessKey");
    assert!(v.get("Out").is_none());
    // No credentials at all.
    let (status, _) = dd_post(&sim, "/Subscriptions/GetSubscriptionDetails", &input).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // (a) without the DD headers.
    let resp = http()
        .post(format!(
            "{}/Subscriptions/GetSubscriptionDetails",
            sim.urls().dickerdata
        ))
        .bearer_auth(&key)
        .header("DD-TransactionID", "t")
        .json(&input)
        .send()
        .await
        .unwrap();
    let (status, v) = body(resp).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["Message"].as_str().unwrap().contains("DD-ApiVersion"));

    // The state dump counts keys but never shows one.
    let dump = state(&sim).await.to_string();
    assert!(!dump.contains(&key));
}

#[tokio::test]
async fn dd_expired_key_is_refused_both_ways() {
    let sim = start(world(1)).await;
    let key = access_key(&sim).await;
    let input = json!({"In": {"SubscriptionType": "CSP"}});
    let (status, _) = dd_bearer(&sim, &key, "/Subscriptions/GetSubscriptionDetails", &input).await;
    assert_eq!(status, StatusCode::OK, "fresh key works");
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let (status, v) = dd_bearer(&sim, &key, "/Subscriptions/GetSubscriptionDetails", &input).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        v["Message"],
        "Authorization has been denied for this request."
    );
    let (status, v) = dd_in_body(
        &sim,
        &key,
        "/Subscriptions/GetSubscriptionDetails",
        json!({"SubscriptionType": "CSP"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["Message"], "Invalid or expired AccessKey");
    // A new key works again.
    let key = access_key(&sim).await;
    let (status, _) = dd_bearer(&sim, &key, "/Subscriptions/GetSubscriptionDetails", &input).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn dd_subscription_details_filter_and_have_exactly_the_known_fields() {
    let sim = start(world(0)).await;
    let key = access_key(&sim).await;
    let get = |input: Value| {
        let sim = &sim;
        let key = key.clone();
        async move {
            dd_bearer(
                sim,
                &key,
                "/Subscriptions/GetSubscriptionDetails",
                &json!({"In": input}),
            )
            .await
        }
    };
    let ids = |v: &Value| -> BTreeSet<String> {
        v["Out"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["SubscriptionId"].as_str().unwrap().to_string())
            .collect()
    };

    let (_, v) = get(json!({"SubscriptionType": "CSP", "TenantID": T1})).await;
    assert_eq!(
        ids(&v),
        BTreeSet::from([SUB_A.to_string(), SUB_B.to_string()])
    );
    let (_, v) = get(json!({"SubscriptionType": "CSP", "StockCode": BP_CODE})).await;
    assert_eq!(
        ids(&v),
        BTreeSet::from([SUB_A.to_string(), SUB_C.to_string()])
    );
    let (_, v) =
        get(json!({"SubscriptionType": "csp", "SubscriptionId": SUB_C.to_uppercase()})).await;
    assert_eq!(ids(&v), BTreeSet::from([SUB_C.to_string()]));
    let (_, v) = get(
        json!({"SubscriptionType": "CSP", "SubscriptionReference": "2F295B22", "TenantID": ""}),
    )
    .await;
    assert_eq!(ids(&v), BTreeSet::from([SUB_B.to_string()]));
    let (_, v) = get(json!({"SubscriptionType": "ADY"})).await;
    assert_eq!(v, json!({"Out": []}));

    let (_, v) = get(json!({"SubscriptionType": "CSP", "SubscriptionId": SUB_A})).await;
    let item = &v["Out"][0];
    let keys: BTreeSet<&str> = item
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "AccountCode",
        "TenantId",
        "SubscriptionReference",
        "CompanyName",
        "TenantDescription",
        "StockCode",
        "ParentSubscriptionId",
        "SubscriptionId",
        "Status",
        "BillingFrequency",
        "LastBillingDate",
        "NextBillingDate",
        "ConfirmedQuantity",
        "Serials",
        "ExpiryDate",
        "StockDescription",
        "ManufacturerStockCode",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, expected);
    assert_eq!(item["AccountCode"], ACCOUNT);
    assert_eq!(item["ConfirmedQuantity"], 25);
    assert_eq!(item["LastBillingDate"], "2026-04-01T00:00:00");
    assert_eq!(item["ManufacturerStockCode"], "CFQ7TTC0LCHC:0002");

    // Bad input: HTTP 200, Status Failed, naming the field.
    let (status, v) = get(json!({"TenantID": T1})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["Status"], "Failed");
    assert!(v["Message"].as_str().unwrap().contains("SubscriptionType"));
    let (_, v) = get(json!({"SubscriptionType": "XYZ"})).await;
    assert!(v["Message"].as_str().unwrap().contains("SubscriptionType"));
    let (_, v) = get(json!({"SubscriptionType": "CSP", "TenantID": "not-a-guid"})).await;
    assert!(v["Message"].as_str().unwrap().contains("TenantID"));
    let (_, v) = dd_bearer(
        &sim,
        &key,
        "/Subscriptions/GetSubscriptionDetails",
        &json!({}),
    )
    .await;
    assert!(v["Message"].as_str().unwrap().contains("In"));

    // Tenants.
    let (_, v) = dd_bearer(
        &sim,
        &key,
        "/Subscriptions/GetTenant",
        &json!({"In": {"SubscriptionType": "CSP"}}),
    )
    .await;
    let tenants: Vec<&str> = v["Out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["TenantId"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, vec![T1, T2]);
}

#[tokio::test]
async fn dd_pricing_uses_the_lines_unit_cost() {
    let sim = start(world(0)).await;
    let key = access_key(&sim).await;
    let resp = http()
        .get(format!("{}/PricingRequest", sim.urls().dickerdata))
        .bearer_auth(&key)
        .header("DD-TransactionID", "t")
        .header("DD-ApiVersion", "1.0")
        .query(&[(
            "pricingRequest.products",
            format!("{BP_CODE},NOPE123,P1M:CFQ7TTC0LH16:0001:1:"),
        )])
        .send()
        .await
        .unwrap();
    let (status, v) = body(resp).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v,
        json!({"SearchResult": [
            {"PartNumber": BP_CODE, "UnitPrice": 28.19, "SOH": 0},
            {"PartNumber": "P1M:CFQ7TTC0LH16:0001:1:", "UnitPrice": 6.6, "SOH": 0},
        ]})
    );
}

fn ms_subscription<'a>(st: &'a Value, tenant: &str, id: &str) -> &'a Value {
    st["world"]["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tenant_id"] == tenant)
        .and_then(|c| {
            c["subscriptions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == id)
        })
        .unwrap()
}

#[tokio::test]
async fn dd_quantity_change_reaches_microsoft_and_follows_the_nce_window() {
    let sim = start(world(0)).await;
    let key = access_key(&sim).await;
    let update = |id: &str, qty: Value| {
        let sim = &sim;
        let key = key.clone();
        let req = json!({"In": {"SubscriptionId": id, "Quantity": qty}});
        async move { dd_bearer(sim, &key, "/Subscriptions/UpdateSubscriptionQuantity", &req).await }
    };

    // Increase: DD and Microsoft both change; the added seats are recorded.
    let (status, v) = update(SUB_A, json!(30)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["Status"], "Success", "{v}");
    assert_eq!(v["Out"]["ConfirmedQuantity"], 30);
    assert_eq!(v["Out"]["SubscriptionId"], SUB_A);
    let (_, d) = dd_bearer(
        &sim,
        &key,
        "/Subscriptions/GetSubscriptionDetails",
        &json!({"In": {"SubscriptionType": "CSP", "SubscriptionId": SUB_A}}),
    )
    .await;
    assert_eq!(d["Out"][0]["ConfirmedQuantity"], 30);
    let st = state(&sim).await;
    let ms = ms_subscription(&st, T1, SUB_A);
    assert_eq!(ms["quantity"], 30);
    assert_eq!(ms["seat_additions"].as_array().unwrap().len(), 1);
    assert_eq!(ms["seat_additions"][0]["quantity"], 5);
    assert_eq!(st["dickerdata"]["quantity_changes"][0]["from"], 25);
    assert_eq!(st["dickerdata"]["quantity_changes"][0]["to"], 30);

    // The annual subscription is 30 days old: only the 5 seats just added can go.
    let (status, v) = update(SUB_A, json!(20)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["Status"], "Failed");
    let msg = v["Message"].as_str().unwrap();
    assert!(
        msg.contains("168 hours") && msg.contains("5 of the 30"),
        "{msg}"
    );
    let (_, v) = update(SUB_A, json!(27)).await;
    assert_eq!(v["Status"], "Success", "{v}");
    let st = state(&sim).await;
    let ms = ms_subscription(&st, T1, SUB_A);
    assert_eq!(ms["quantity"], 27);
    assert_eq!(ms["seat_additions"][0]["quantity"], 2);
    // A reduction of the original seats is refused after the window.
    let (_, v) = update(SUB_A, json!(24)).await;
    assert_eq!(v["Status"], "Failed");

    // The monthly subscription was bought 2 days ago: any reduction is allowed.
    let (_, v) = update(SUB_B, json!("3")).await;
    assert_eq!(v["Status"], "Success", "{v}");
    let st = state(&sim).await;
    assert_eq!(ms_subscription(&st, T1, SUB_B)["quantity"], 3);

    // Bad input names the field.
    let (_, v) = update(SUB_B, json!(0)).await;
    assert!(v["Message"].as_str().unwrap().contains("Quantity"));
    let (_, v) = update("3f1e0c7a-0000-4000-8000-000000000000", json!(4)).await;
    assert_eq!(v["Status"], "Failed");
    assert!(v["Message"].as_str().unwrap().contains("not found"));
}

// ---------------------------------------------------------------------------------------------
// ConnectWise
// ---------------------------------------------------------------------------------------------

fn basic(company: &str, public: &str, private: &str) -> String {
    let raw = format!("{company}+{public}:{private}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn cw(sim: &SimHandle, method: reqwest::Method, path_and_query: &str) -> reqwest::RequestBuilder {
    let url = if path_and_query.starts_with("http") {
        path_and_query.to_string()
    } else {
        format!("{}{path_and_query}", sim.urls().connectwise)
    };
    http()
        .request(method, url)
        .header("Authorization", basic(CW_COMPANY, CW_PUBLIC, CW_PRIVATE))
        .header("clientId", CW_CLIENT)
}

async fn cw_get(sim: &SimHandle, path_and_query: &str) -> (StatusCode, Value, Option<String>) {
    let resp = cw(sim, reqwest::Method::GET, path_and_query)
        .send()
        .await
        .unwrap();
    let link = resp
        .headers()
        .get("link")
        .map(|l| l.to_str().unwrap().to_string());
    let (s, v) = body(resp).await;
    (s, v, link)
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect()
}

/// `rel` → URL from a Link header.
fn rels(link: &str) -> Vec<(String, String)> {
    link.split(", <")
        .map(|part| {
            let part = part.trim_start_matches('<');
            let (url, rel) = part.split_once(">; rel=\"").unwrap();
            (rel.trim_end_matches('"').to_string(), url.to_string())
        })
        .collect()
}

fn rel(link: &str, name: &str) -> Option<String> {
    rels(link)
        .into_iter()
        .find(|(r, _)| r == name)
        .map(|(_, u)| u)
}

#[tokio::test]
async fn cw_auth_failures_are_401_without_echoing_secrets() {
    let sim = start(world(0)).await;
    let url = format!("{}/company/companies", sim.urls().connectwise);
    let cases = [
        (
            Some(basic(CW_COMPANY, CW_PUBLIC, "WrongPrivate")),
            Some(CW_CLIENT),
        ),
        (
            Some(basic("otherco", CW_PUBLIC, CW_PRIVATE)),
            Some(CW_CLIENT),
        ),
        (Some(basic(CW_COMPANY, CW_PUBLIC, CW_PRIVATE)), None),
        (
            Some(basic(CW_COMPANY, CW_PUBLIC, CW_PRIVATE)),
            Some("0000-unknown"),
        ),
        (None, Some(CW_CLIENT)),
        (Some("Basic !!!notbase64".to_string()), Some(CW_CLIENT)),
    ];
    for (auth, client) in cases {
        let mut req = http().get(&url);
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        if let Some(c) = client {
            req = req.header("clientId", c);
        }
        let (status, v) = body(req.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?} {client:?}");
        assert_eq!(v["code"], "Unauthorized");
        let msg = v["message"].as_str().unwrap();
        assert!(!msg.is_empty());
        for secret in [CW_PRIVATE, CW_PUBLIC, "WrongPrivate", "0000-unknown"] {
            assert!(!msg.contains(secret), "{msg}");
        }
        if client.is_none() {
            assert!(msg.contains("clientId"), "{msg}");
        }
    }
    // The company id is not case-sensitive; the right credentials pass.
    let (status, _) = body(
        http()
            .get(&url)
            .header("Authorization", basic("CONTOSO", CW_PUBLIC, CW_PRIVATE))
            .header("clientid", CW_CLIENT)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn cw_paging_follows_link_headers_to_the_end() {
    let sim = start(world(0)).await;
    let origin = format!("http://{}", sim.addr);
    // First page: default size 25 of 60; conditions and orderBy carried along in the links.
    let mut url =
        "/company/companies?conditions=deletedFlag%20%3D%20false&orderBy=id%20desc".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (status, v, link) = cw_get(&sim, &url).await;
        assert_eq!(status, StatusCode::OK);
        pages += 1;
        seen.extend(ids(&v));
        let link = link.expect("a Link header on every page of a multi-page list");
        for (_, u) in rels(&link) {
            assert!(u.starts_with(&origin), "absolute URL: {u}");
            assert!(u.contains("conditions=") && u.contains("orderBy="), "{u}");
            assert!(regex_like_page_last(&u), "page= is the last parameter: {u}");
        }
        assert!(rel(&link, "last").unwrap().ends_with("page=3"));
        if pages == 1 {
            assert!(rel(&link, "first").is_none() && rel(&link, "prev").is_none());
        } else {
            assert!(rel(&link, "first").unwrap().ends_with("page=1"));
            assert!(
                rel(&link, "prev")
                    .unwrap()
                    .ends_with(&format!("page={}", pages - 1))
            );
        }
        match rel(&link, "next") {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<u64> = (1..=60).rev().filter(|i| *i != 7).collect();
    assert_eq!(seen, expected, "every company once, in orderBy order");

    // pageSize above 1000 is clamped: one page, no Link.
    let (_, v, link) = cw_get(&sim, "/company/companies?pageSize=5000").await;
    assert_eq!(ids(&v).len(), 60);
    assert!(link.is_none());
    // Bad paging values are 400s in the §5.4 shape.
    let (status, v, _) = cw_get(&sim, "/company/companies?page=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["code"].is_string() && v["message"].as_str().unwrap().contains("page"));
    let (status, _, _) = cw_get(&sim, "/company/companies?pageSize=ten").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

fn regex_like_page_last(url: &str) -> bool {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.rsplit('&')
        .next()
        .is_some_and(|last| last.starts_with("page=") || last.starts_with("pageId="))
}

#[tokio::test]
async fn cw_forward_only_paging_walks_ids_upward() {
    let sim = start(world(0)).await;
    let mut url = "/company/companies?pageSize=25".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let resp = cw(&sim, reqwest::Method::GET, &url)
            .header("pagination-type", "forward-only")
            .send()
            .await
            .unwrap();
        let link = resp
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_string());
        let (status, v) = body(resp).await;
        assert_eq!(status, StatusCode::OK);
        pages += 1;
        let page = ids(&v);
        if let Some(l) = &link {
            let next = rel(l, "next").unwrap();
            assert!(
                next.ends_with(&format!("pageId={}", page.last().unwrap())),
                "{next}"
            );
            assert!(rel(l, "last").is_none(), "forward-only has no last");
            url = next;
        }
        seen.extend(page);
        if link.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (1..=60).collect::<Vec<u64>>());
    // pageId alone starts after that id.
    let resp = cw(
        &sim,
        reqwest::Method::GET,
        "/company/companies?pageSize=5&pageId=57",
    )
    .header("pagination-type", "forward-only")
    .send()
    .await
    .unwrap();
    assert_eq!(ids(&body(resp).await.1), vec![58, 59, 60]);
}

#[tokio::test]
async fn cw_conditions_order_and_fields() {
    let sim = start(world(0)).await;
    let q = |c: &str| {
        format!(
            "/company/companies?pageSize=1000&conditions={}",
            url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
        )
    };
    let cases: Vec<(&str, Vec<u64>)> = vec![
        ("status/name = \"Inactive\"", vec![10, 20, 30, 40, 50, 60]),
        (
            "(id < 3 or id > 58) and deletedFlag = false",
            vec![1, 2, 59, 60],
        ),
        ("id in (1, 7, 99)", vec![1, 7]),
        (
            "name like \"Company 1*\" and not id = 10",
            (11..=19).collect(),
        ),
        ("identifier contains \"pany5\"", (50..=59).collect()),
        ("website = null and id <= 5", vec![1, 3, 5]),
        ("website != null and id <= 5", vec![2, 4]),
        (
            "deletedFlag = true or (status/name = \"inactive\" and id > 50)",
            vec![7, 60],
        ),
        (
            "types/name = \"Client\" and _info/lastUpdated > [2025-01-01T00:00:00Z] and id < 3",
            vec![1, 2],
        ),
    ];
    for (cond, expected) in cases {
        let (status, v, _) = cw_get(&sim, &q(cond)).await;
        assert_eq!(status, StatusCode::OK, "{cond}: {v}");
        assert_eq!(ids(&v), expected, "{cond}");
    }
    // Errors: 400 in the §5.4 shape, naming the problem.
    for (cond, needle) in [
        ("id = ", "expected a value"),
        ("(id = 1", "expected )"),
        ("nosuchfield = 1", "nosuchfield"),
        ("name = Contoso", "double quotes"),
    ] {
        let (status, v, _) = cw_get(&sim, &q(cond)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{cond}");
        assert_eq!(v["code"], "InvalidObject");
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{cond}: {v}"
        );
    }
    // orderBy and fields.
    let (_, v, _) = cw_get(
        &sim,
        "/company/companies?orderBy=name%20desc&pageSize=2&fields=id,name,status/name",
    )
    .await;
    assert_eq!(
        v,
        json!([{"id": 60, "name": "Company 60", "status": {"name": "Inactive"}},
               {"id": 59, "name": "Company 59", "status": {"name": "Active"}}])
    );
    let (status, _, _) = cw_get(&sim, "/company/companies?orderBy=bogus%20asc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Conditions on agreements by company, as the PSA sync uses them.
    let (_, v, _) = cw_get(
        &sim,
        "/finance/agreements?conditions=company/id=1%20and%20agreementStatus=%22Active%22",
    )
    .await;
    assert_eq!(ids(&v), vec![77]);
    assert_eq!(
        v[0]["company"],
        json!({"id": 1, "identifier": "Company01", "name": "Company 01"})
    );
    assert_eq!(v[0]["type"]["name"], "Microsoft CSP");
    assert_eq!(v[0]["billingCycle"]["name"], "Monthly");
    assert_eq!(v[0]["startDate"], "2025-07-01T00:00:00Z");
}

#[tokio::test]
async fn cw_count_endpoints() {
    let sim = start(world(0)).await;
    for (path, n) in [
        ("/company/companies/count", 60),
        (
            "/company/companies/count?conditions=status/name=%22Inactive%22",
            6,
        ),
        ("/finance/agreements/count", 3),
        (
            "/finance/agreements/count?conditions=agreementStatus!=%22Cancelled%22",
            2,
        ),
        ("/finance/agreements/77/additions/count", 1),
        ("/finance/agreements/78/additions/count", 0),
        ("/procurement/catalog/count", 3),
        ("/procurement/catalog/count?conditions=price%3E10", 2),
    ] {
        let (status, v, _) = cw_get(&sim, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(v, json!({"count": n}), "{path}");
    }
    let (_, v, _) = cw_get(&sim, "/procurement/catalog/731").await;
    assert_eq!(v["identifier"], "CFQ7TTC0LCHC-P1Y");
    assert_eq!(v["price"], 34.55);
    assert_eq!(v["customerDescription"], "CFQ7TTC0LCHC-P1Y licence");
}

#[tokio::test]
async fn cw_unknown_ids_are_404_in_the_cw_shape() {
    let sim = start(world(0)).await;
    for path in [
        "/company/companies/99999",
        "/company/companies/abc",
        "/finance/agreements/1",
        "/finance/agreements/999/additions",
        "/finance/agreements/77/additions/1",
        "/finance/agreements/78/additions/9012",
        "/procurement/catalog/1",
        "/no/such/thing",
    ] {
        let (status, v, _) = cw_get(&sim, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(v["code"], "NotFound", "{path}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

fn sim_addition(st: &Value, id: u64) -> Option<&Value> {
    st["world"]["connectwise"]["additions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
}

#[tokio::test]
async fn cw_additions_are_written_and_validated() {
    let sim = start(world(0)).await;
    // The seeded addition, with computed money.
    let (_, v, _) = cw_get(&sim, "/finance/agreements/77/additions/9012").await;
    assert_eq!(v["extPrice"], 863.75);
    assert_eq!(v["extCost"], 704.75);
    assert_eq!(v["margin"], 159);
    assert_eq!(
        v["product"],
        json!({"id": 731, "identifier": "CFQ7TTC0LCHC-P1Y"})
    );
    assert_eq!(v["agreementId"], 77);
    assert_eq!(v["agreementStatus"], "Active");
    assert_eq!(v["effectiveDate"], "2025-07-01T00:00:00Z");
    assert_eq!(v["cancelledDate"], Value::Null);

    // POST.
    let resp = cw(
        &sim,
        reqwest::Method::POST,
        "/finance/agreements/77/additions",
    )
    .json(
        &json!({"product": {"id": 732}, "billCustomer": "Billable", "quantity": 12,
                      "unitPrice": 7.92, "effectiveDate": "2026-04-01T00:00:00Z"}),
    )
    .send()
    .await
    .unwrap();
    let (status, created) = body(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    assert!(id > 9012);
    assert_eq!(created["quantity"], 12);
    assert_eq!(created["unitCost"], 6.6, "cost defaults to the catalog's");
    assert_eq!(created["extPrice"], 95.04);
    assert_eq!(created["product"]["identifier"], "CFQ7TTC0LH16-P1M");
    let (_, list, _) = cw_get(&sim, "/finance/agreements/77/additions").await;
    assert_eq!(ids(&list), vec![9012, id]);
    let (_, v, _) = cw_get(
        &sim,
        "/finance/agreements/77/additions?conditions=product/identifier%20like%20%22*P1M%22",
    )
    .await;
    assert_eq!(ids(&v), vec![id]);

    // Validation: required fields, unknown product, cancelled agreement, missing agreement.
    let post = |path: &str, b: Value| {
        let req = cw(&sim, reqwest::Method::POST, path).json(&b);
        async move { body(req.send().await.unwrap()).await }
    };
    let (status, v) = post("/finance/agreements/77/additions", json!({"quantity": 3})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["code"], "InvalidObject");
    assert_eq!(v["message"], "addition object is invalid");
    let fields: BTreeSet<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, BTreeSet::from(["product", "billCustomer"]));
    for e in v["errors"].as_array().unwrap() {
        assert_eq!(e["resource"], "addition");
        assert!(e["code"].is_string() && e["message"].is_string());
    }
    let (status, v) = post(
        "/finance/agreements/77/additions",
        json!({"product": {"id": 4242}, "billCustomer": "Billable"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("4242"));
    let (status, v) = post(
        "/finance/agreements/77/additions",
        json!({"product": {"identifier": "CFQ7TTC0LF8Q-P1Y"}, "billCustomer": "Sometimes"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["errors"][0]["field"], "billCustomer");
    let (status, v) = post(
        "/finance/agreements/79/additions",
        json!({"product": {"id": 731}, "billCustomer": "Billable"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cancelled")
    );
    let (status, _) = post(
        "/finance/agreements/5555/additions",
        json!({"product": {"id": 731}, "billCustomer": "Billable"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // PATCH (with and without a leading slash), visible to later GETs and in the world.
    let before = created["_info"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let resp = cw(&sim, reqwest::Method::PATCH, &format!("/finance/agreements/77/additions/{id}"))
        .json(&json!([{"op": "replace", "path": "quantity", "value": 30},
                      {"op": "replace", "path": "/cancelledDate", "value": "2026-05-01T00:00:00Z"}]))
        .send()
        .await
        .unwrap();
    let (status, v) = body(resp).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["quantity"], 30);
    assert_eq!(v["extPrice"], 237.6);
    assert_eq!(v["cancelledDate"], "2026-05-01T00:00:00Z");
    assert_ne!(v["_info"]["lastUpdated"].as_str().unwrap(), before);
    let (_, v, _) = cw_get(&sim, &format!("/finance/agreements/77/additions/{id}")).await;
    assert_eq!(v["quantity"], 30);
    let st = state(&sim).await;
    assert_eq!(sim_addition(&st, id).unwrap()["quantity"], "30");
    assert_eq!(
        sim_addition(&st, id).unwrap()["cancelled_date"],
        "2026-05-01"
    );

    // A bad PATCH changes nothing.
    let resp = cw(
        &sim,
        reqwest::Method::PATCH,
        &format!("/finance/agreements/77/additions/{id}"),
    )
    .json(&json!([{"op": "replace", "path": "quantity", "value": 31},
                      {"op": "replace", "path": "/agreementId", "value": 78}]))
    .send()
    .await
    .unwrap();
    let (status, v) = body(resp).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["code"], "InvalidObject");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("agreementId")
    );
    let (_, v, _) = cw_get(&sim, &format!("/finance/agreements/77/additions/{id}")).await;
    assert_eq!(v["quantity"], 30);
    let resp = cw(
        &sim,
        reqwest::Method::PATCH,
        &format!("/finance/agreements/77/additions/{id}"),
    )
    .json(&json!({"quantity": 5}))
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // PUT replaces.
    let resp = cw(
        &sim,
        reqwest::Method::PUT,
        &format!("/finance/agreements/77/additions/{id}"),
    )
    .json(&json!({"product": {"id": 733}, "billCustomer": "NoCharge", "quantity": 2}))
    .send()
    .await
    .unwrap();
    let (status, v) = body(resp).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["product"]["id"], 733);
    assert_eq!(v["billCustomer"], "NoCharge");
    assert_eq!(
        v["cancelledDate"],
        Value::Null,
        "PUT replaces the whole addition"
    );

    // DELETE, then it is gone; ids are not reused.
    let resp = cw(
        &sim,
        reqwest::Method::DELETE,
        &format!("/finance/agreements/77/additions/{id}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, _, _) = cw_get(&sim, &format!("/finance/agreements/77/additions/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, v) = post(
        "/finance/agreements/78/additions",
        json!({"product": {"id": 731}, "billCustomer": "Billable"}),
    )
    .await;
    assert!(v["id"].as_u64().unwrap() > id);
    let st = state(&sim).await;
    assert!(sim_addition(&st, id).is_none());
    assert_eq!(st["connectwise"]["additions_created"], 2);
    assert_eq!(st["connectwise"]["additions_deleted"], 1);
}
