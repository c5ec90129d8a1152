//! Simulated Microsoft Graph v1.0, standing in for `https://graph.microsoft.com/v1.0`
//! (reference/external-apis.md §2).
//!
//! Tokens must be for `https://graph.microsoft.com`; the token's tenant decides whose data a
//! call sees: the MSP tenant, or a customer tenant reached under GDAP (§3.7). Endpoints:
//! `/organization` (§2.1), `/users` (§2.2), `/subscribedSkus` (§2.3),
//! `/directory/subscriptions` (§2.3a) and `/tenantRelationships/delegatedAdminRelationships`
//! (§2.6). Errors use the §2.4 shape.
//!
//! Customer tenants list no users in the dataset, only `user_count`: the sim makes that many
//! users, derived deterministically from the tenant id (same ids and names on every call and
//! every run), enabled members on the tenant's default domain. The licences of
//! `assigned[sku]` go to the first `assigned[sku]` of them (capped at the user count), so a
//! count of users by licence agrees with `subscribedSkus.consumedUnits` unless the dataset
//! assigns more seats than the tenant has users.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::Router;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::entra::GRAPH_RESOURCE;
use super::tokens::TokenProblem;
use super::util::{self, Rng};
use super::world::{CustomerTenant, MsSubscription, MspTenant, User, World};
use super::{Sim, State};

/// Runtime records of this API that are not part of the dataset (Graph keeps none: its
/// paging tokens carry their own position).
#[derive(Debug, Default, Serialize)]
pub struct Runtime {}

pub fn router() -> Router<Sim> {
    Router::new()
        .route("/organization", get(organization))
        .route("/users", get(users))
        .route("/subscribedSkus", get(subscribed_skus))
        .route("/directory/subscriptions", get(directory_subscriptions))
        .route("/directory/subscriptions/{id}", get(directory_subscription))
        .route("/directory/{segment}", get(directory_segment))
        .route(
            "/tenantRelationships/delegatedAdminRelationships",
            get(delegated_admin_relationships),
        )
        .fallback(unknown_segment)
}

const PAGE_USERS: usize = 100;
const PAGE_GDAP: usize = 300;
/// Synthetic users per customer tenant are capped so a hostile dataset cannot exhaust memory.
const MAX_SYNTHETIC_USERS: usize = 50_000;

/// Scopes (permission names) that grant each kind of read (§2.1–§2.3a, §2.6, §1.7).
const ORG_BASIC: &[&str] = &[
    "User.Read",
    "User.ReadBasic.All",
    "User.Read.All",
    "Organization.Read.All",
    "Organization.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const ORG_FULL: &[&str] = &[
    "Organization.Read.All",
    "Organization.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const USERS_BASIC: &[&str] = &[
    "User.ReadBasic.All",
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const USERS_FULL: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const GDAP_READ: &[&str] = &[
    "DelegatedAdminRelationship.Read.All",
    "DelegatedAdminRelationship.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

// ---------------------------------------------------------------------------------------------
// Request context and errors (§2.4)

struct Ctx {
    request_id: String,
    client_request_id: String,
    base: String,
}

impl Ctx {
    fn new(sim: &Sim, headers: &HeaderMap) -> Ctx {
        let request_id = util::guid();
        Ctx {
            client_request_id: util::header(headers, "client-request-id")
                .map(str::to_string)
                .unwrap_or_else(|| request_id.clone()),
            request_id,
            base: format!("{}{}", sim.origin, super::prefix::GRAPH),
        }
    }

    fn headers(&self, r: &mut Response) {
        let h = r.headers_mut();
        for (k, v) in [
            ("request-id", &self.request_id),
            ("client-request-id", &self.client_request_id),
        ] {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(k, v);
            }
        }
    }

    /// `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`.
    fn error(&self, status: StatusCode, code: &str, message: &str) -> Fail {
        let body = json!({"error": {"code": code, "message": message, "innerError": {
            "date": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            "request-id": self.request_id,
            "client-request-id": self.client_request_id,
        }}});
        let mut r = (status, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self.headers(&mut r);
        Box::new(r)
    }

    fn bad_request(&self, code: &str, message: &str) -> Fail {
        self.error(StatusCode::BAD_REQUEST, code, message)
    }

    fn ok(&self, body: Value) -> Response {
        let mut r = (StatusCode::OK, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(
                "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
            ),
        );
        self.headers(&mut r);
        r
    }
}

/// An error response, boxed (a `Response` is large).
type Fail = Box<Response>;

/// Who is calling: the tenant of the token and its permissions.
struct Caller {
    tenant_id: String,
    scopes: Vec<String>,
}

impl Caller {
    fn has_any(&self, wanted: &[&str]) -> bool {
        self.scopes
            .iter()
            .any(|s| wanted.iter().any(|w| w.eq_ignore_ascii_case(s)))
    }

    fn require(&self, wanted: &[&str], ctx: &Ctx) -> Result<(), Fail> {
        if self.has_any(wanted) {
            Ok(())
        } else {
            Err(denied(ctx))
        }
    }
}

fn denied(ctx: &Ctx) -> Fail {
    ctx.error(
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
}

/// Check the bearer token: 401 `InvalidAuthenticationToken` when missing, unknown, expired
/// or for another resource (§2.4); 403 when the token's customer tenant has lost GDAP.
fn caller(state: &State, headers: &HeaderMap, ctx: &Ctx) -> Result<Caller, Fail> {
    let unauthorized = |msg: &str| {
        let mut r = ctx.error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", msg);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
            ),
        );
        r
    };
    let grant = match state.tokens.check(util::bearer(headers), GRAPH_RESOURCE) {
        Ok(g) => g,
        Err(TokenProblem::Missing) => return Err(unauthorized("Access token is empty.")),
        Err(TokenProblem::Expired) => {
            return Err(unauthorized(
                "Lifetime validation failed, the token is expired.",
            ));
        }
        Err(TokenProblem::WrongAudience) => {
            return Err(unauthorized(
                "Access token validation failure. Invalid audience.",
            ));
        }
        Err(TokenProblem::Unknown) => {
            return Err(unauthorized("Access token validation failure."));
        }
    };
    let world = &state.world;
    if grant.tenant_id != world.msp.tenant_id {
        match customer(world, &grant.tenant_id) {
            Some(c) if c.gdap_active => {}
            // GDAP ended after the token was issued: the partner user has no role there.
            Some(_) => return Err(denied(ctx)),
            None => {
                return Err(unauthorized(
                    "Access token validation failure. Invalid tenant.",
                ));
            }
        }
    }
    Ok(Caller {
        tenant_id: grant.tenant_id.clone(),
        scopes: grant.scopes.clone(),
    })
}

fn customer<'a>(world: &'a World, tenant_id: &str) -> Option<&'a CustomerTenant> {
    world
        .customers
        .iter()
        .find(|c| c.tenant_id.eq_ignore_ascii_case(tenant_id))
}

enum Tenant<'a> {
    Msp(&'a MspTenant),
    Customer(&'a CustomerTenant),
}

fn tenant<'a>(world: &'a World, id: &str) -> Option<Tenant<'a>> {
    if world.msp.tenant_id.eq_ignore_ascii_case(id) {
        Some(Tenant::Msp(&world.msp))
    } else {
        customer(world, id).map(Tenant::Customer)
    }
}

async fn unknown_segment(AxState(sim): AxState<Sim>, uri: Uri, headers: HeaderMap) -> Response {
    let ctx = Ctx::new(&sim, &headers);
    let seg = uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    *ctx.bad_request(
        "BadRequest",
        &format!("Resource not found for the segment '{seg}'."),
    )
}

// ---------------------------------------------------------------------------------------------
// OData query options

/// The decoded query options of a request, keyed by lower-cased name.
struct Options {
    map: HashMap<String, String>,
    /// The raw `key=value` pieces as sent, for `@odata.nextLink`.
    raw: Vec<String>,
}

fn parse_options(raw: Option<&str>, allowed: &[&str], ctx: &Ctx) -> Result<Options, Fail> {
    let raw = raw.unwrap_or("");
    let mut map = HashMap::new();
    let mut pieces = Vec::new();
    for piece in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = url::form_urlencoded::parse(piece.as_bytes())
            .next()
            .unwrap_or_default();
        let key = k.to_ascii_lowercase();
        if key.starts_with('$') {
            if !allowed.contains(&key.as_str()) {
                if key == "$skip" {
                    // §2.2: `$skip` is not supported.
                    return Err(ctx.bad_request(
                        "Request_BadRequest",
                        "'$skip' is not supported by the service.",
                    ));
                }
                return Err(ctx.bad_request(
                    "Request_BadRequest",
                    &format!("Query option '{k}' is not supported on this resource."),
                ));
            }
            if map.insert(key.clone(), v.into_owned()).is_some() {
                return Err(ctx.bad_request(
                    "Request_BadRequest",
                    &format!("Query option '{k}' was specified more than once, but it must be specified at most once."),
                ));
            }
        }
        if !key.eq_ignore_ascii_case("$skiptoken") {
            pieces.push(piece.to_string());
        }
    }
    Ok(Options { map, raw: pieces })
}

impl Options {
    fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str)
    }

    /// `$select` names in canonical casing, validated against `known`.
    fn select(
        &self,
        known: &[&str],
        type_name: &str,
        ctx: &Ctx,
    ) -> Result<Option<Vec<String>>, Fail> {
        let Some(sel) = self.get("$select") else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for name in sel.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some(canon) = known.iter().find(|k| k.eq_ignore_ascii_case(name)) else {
                return Err(ctx.bad_request(
                    "Request_BadRequest",
                    &format!("Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'."),
                ));
            };
            if !out.iter().any(|o: &String| o == canon) {
                out.push((*canon).to_string());
            }
        }
        Ok(Some(out))
    }

    /// The absolute nextLink: every original option plus a fresh skip token (§2.2).
    fn next_link(&self, base_path: &str, token_key: &str, token: &str) -> String {
        let mut parts = self.raw.clone();
        parts.push(format!("{token_key}={token}"));
        format!("{base_path}?{}", parts.join("&"))
    }
}

fn project(obj: &Map<String, Value>, names: &[String]) -> Value {
    let mut out = Map::new();
    for n in names {
        out.insert(n.clone(), obj.get(n).cloned().unwrap_or(Value::Null));
    }
    Value::Object(out)
}

fn eventual(headers: &HeaderMap) -> bool {
    util::header(headers, "consistencylevel")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"))
}

/// Opaque skip token: the position and the tenant, base64url (followed verbatim, never parsed
/// by clients).
fn skip_token(offset: usize, tenant: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "cspsync-sim:{offset}:{}",
        tenant.to_ascii_lowercase()
    ))
}

fn read_skip_token(token: &str, tenant: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.splitn(3, ':');
    (parts.next()? == "cspsync-sim").then_some(())?;
    let offset = parts.next()?.parse().ok()?;
    parts.next()?.eq_ignore_ascii_case(tenant).then_some(offset)
}

// ---------------------------------------------------------------------------------------------
// $filter: a small OData subset

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    Str(String),
    Word(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("a string literal is not closed".into()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            v.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            v.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            c if c.is_alphanumeric() || "_./-:@$".contains(c) => {
                let mut v = String::new();
                while let Some(ch) = chars.get(i) {
                    if ch.is_alphanumeric() || "_./-:@$".contains(*ch) {
                        v.push(*ch);
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push(Tok::Word(v));
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    StartsWith(String, String),
    EndsWith(String, String),
    Cmp(String, Op, Value),
    /// `collection/any(x:x/prop op value)`.
    Any(String, String, Op, Value),
}

impl Filter {
    /// Whether the filter needs an advanced query (§2.2: ConsistencyLevel + $count).
    fn advanced(&self) -> bool {
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => a.advanced() || b.advanced(),
            Filter::Not(_) | Filter::EndsWith(..) => true,
            Filter::Cmp(_, op, _) | Filter::Any(_, _, op, _) => *op == Op::Ne,
            Filter::StartsWith(..) => false,
        }
    }

    fn props(&self, out: &mut Vec<String>) {
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.props(out);
                b.props(out);
            }
            Filter::Not(a) => a.props(out),
            Filter::StartsWith(p, _) | Filter::EndsWith(p, _) | Filter::Cmp(p, _, _) => {
                out.push(p.clone())
            }
            Filter::Any(c, p, _, _) => out.push(format!("{c}/{p}")),
        }
    }

    fn eval(&self, obj: &Map<String, Value>) -> bool {
        match self {
            Filter::And(a, b) => a.eval(obj) && b.eval(obj),
            Filter::Or(a, b) => a.eval(obj) || b.eval(obj),
            Filter::Not(a) => !a.eval(obj),
            Filter::StartsWith(p, v) => lookup(obj, p)
                .and_then(Value::as_str)
                .is_some_and(|s| s.to_lowercase().starts_with(&v.to_lowercase())),
            Filter::EndsWith(p, v) => lookup(obj, p)
                .and_then(Value::as_str)
                .is_some_and(|s| s.to_lowercase().ends_with(&v.to_lowercase())),
            Filter::Cmp(p, op, v) => compare(lookup(obj, p).unwrap_or(&Value::Null), *op, v),
            Filter::Any(c, p, op, v) => {
                lookup(obj, c)
                    .and_then(Value::as_array)
                    .is_some_and(|items| {
                        items.iter().any(|item| {
                            item.as_object()
                                .map(|o| compare(lookup(o, p).unwrap_or(&Value::Null), *op, v))
                                .unwrap_or(false)
                        })
                    })
            }
        }
    }
}

fn lookup<'a>(obj: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('/');
    let first = parts.next()?;
    let mut cur = obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(first))
        .map(|(_, v)| v)?;
    for p in parts {
        cur = cur
            .as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(p))
            .map(|(_, v)| v)?;
    }
    Some(cur)
}

fn compare(a: &Value, op: Op, b: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .and_then(|x| y.as_f64().and_then(|y| x.partial_cmp(&y))),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    };
    match (op, ord) {
        (Op::Eq, o) => o == Some(Ordering::Equal),
        (Op::Ne, o) => o != Some(Ordering::Equal),
        (_, None) => false,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, t: Tok) -> Result<(), String> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            _ => Err(format!("expected {t:?}")),
        }
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, String> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Filter, String> {
        match self.next() {
            Some(Tok::LParen) => {
                let f = self.or()?;
                self.expect(Tok::RParen)?;
                Ok(f)
            }
            Some(Tok::Word(w)) => {
                let lower = w.to_ascii_lowercase();
                if (lower == "startswith" || lower == "endswith")
                    && self.toks.get(self.pos) == Some(&Tok::LParen)
                {
                    self.pos += 1;
                    let prop = self.word()?;
                    self.expect(Tok::Comma)?;
                    let Some(Tok::Str(v)) = self.next() else {
                        return Err(format!("{w} needs a string value"));
                    };
                    self.expect(Tok::RParen)?;
                    return Ok(if lower == "startswith" {
                        Filter::StartsWith(prop, v)
                    } else {
                        Filter::EndsWith(prop, v)
                    });
                }
                if let Some(coll) = w.strip_suffix("/any").or_else(|| w.strip_suffix("/ANY")) {
                    self.expect(Tok::LParen)?;
                    // x:x/skuId
                    let lambda = self.word()?;
                    let (var, body) = lambda
                        .split_once(':')
                        .ok_or("any() needs a lambda like x:x/skuId")?;
                    let prop = body
                        .strip_prefix(&format!("{var}/"))
                        .ok_or("any() needs a lambda like x:x/skuId")?
                        .to_string();
                    let op = self.op()?;
                    let v = self.literal()?;
                    self.expect(Tok::RParen)?;
                    return Ok(Filter::Any(coll.to_string(), prop, op, v));
                }
                let op = self.op()?;
                let v = self.literal()?;
                Ok(Filter::Cmp(w, op, v))
            }
            _ => Err("expected a property, a function or '('".into()),
        }
    }

    fn word(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(w),
            _ => Err("expected a property name".into()),
        }
    }

    fn op(&mut self) -> Result<Op, String> {
        let w = self.word()?.to_ascii_lowercase();
        Ok(match w.as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            other => return Err(format!("unknown operator '{other}'")),
        })
    }

    fn literal(&mut self) -> Result<Value, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Value::String(s)),
            Some(Tok::Word(w)) => Ok(match w.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => match w.parse::<i64>() {
                    Ok(n) => json!(n),
                    // Bare GUIDs (`skuId eq 6fd2c87f-...`) are literals too.
                    Err(_) => Value::String(w),
                },
            }),
            _ => Err("expected a value".into()),
        }
    }
}

/// Parse `$filter`, allowing only `filterable` properties.
fn parse_filter(text: &str, filterable: &[&str], ctx: &Ctx) -> Result<Filter, Fail> {
    let invalid = |why: &str| {
        ctx.bad_request(
            "Request_UnsupportedQuery",
            &format!("Invalid filter clause: {why}."),
        )
    };
    let toks = tokenize(text).map_err(|e| invalid(&e))?;
    let mut p = Parser { toks, pos: 0 };
    let f = p.or().map_err(|e| invalid(&e))?;
    if p.pos < p.toks.len() {
        return Err(invalid("unexpected text after the end of the expression"));
    }
    let mut props = Vec::new();
    f.props(&mut props);
    for prop in props {
        if !filterable.iter().any(|k| k.eq_ignore_ascii_case(&prop)) {
            return Err(ctx.bad_request(
                "Request_UnsupportedQuery",
                &format!(
                    "Unsupported or invalid query filter clause specified for property '{prop}'."
                ),
            ));
        }
    }
    Ok(f)
}

fn parse_top(opts: &Options, max: usize, default: usize, ctx: &Ctx) -> Result<usize, Fail> {
    match opts.get("$top") {
        None => Ok(default),
        Some(t) => match t.trim().parse::<i64>() {
            Ok(n) if n >= 1 && usize::try_from(n).is_ok_and(|n| n <= max) => {
                Ok(usize::try_from(n).unwrap_or(default))
            }
            // §2.2: "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive."
            _ => Err(ctx.bad_request(
                "Request_UnsupportedQuery",
                &format!(
                    "Invalid page size specified: '{t}'. Must be between 1 and {max} inclusive."
                ),
            )),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// GET /organization (§2.1)

const ORG_PROPS: &[&str] = &[
    "id",
    "deletedDateTime",
    "businessPhones",
    "city",
    "country",
    "countryLetterCode",
    "createdDateTime",
    "displayName",
    "marketingNotificationEmails",
    "onPremisesLastSyncDateTime",
    "onPremisesSyncEnabled",
    "postalCode",
    "preferredLanguage",
    "privacyProfile",
    "securityComplianceNotificationMails",
    "securityComplianceNotificationPhones",
    "state",
    "street",
    "technicalNotificationMails",
    "tenantType",
    "assignedPlans",
    "provisionedPlans",
    "verifiedDomains",
];

fn domain_json(name: &str, is_default: bool, is_initial: bool) -> Value {
    json!({"capabilities": "Email, OfficeCommunicationsOnline", "isDefault": is_default,
        "isInitial": is_initial, "name": name, "type": "Managed"})
}

fn fmt_time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(SecondsFormat::Secs, true))
    })
}

fn organization_json(t: &Tenant<'_>) -> Map<String, Value> {
    let (id, name, country, domains, created) = match t {
        Tenant::Msp(m) => (
            m.tenant_id.clone(),
            m.display_name.clone(),
            m.country.clone(),
            m.verified_domains
                .iter()
                .map(|d| domain_json(&d.name, d.is_default, d.is_initial))
                .collect::<Vec<_>>(),
            None,
        ),
        Tenant::Customer(c) => {
            let mut d = vec![domain_json(&c.domain, c.custom_domains.is_empty(), true)];
            for (i, cd) in c.custom_domains.iter().enumerate() {
                d.push(domain_json(cd, i == 0, false));
            }
            let created = c.subscriptions.iter().filter_map(|s| s.creation_date).min();
            (
                c.tenant_id.clone(),
                c.company_name.clone(),
                c.country.clone(),
                d,
                created,
            )
        }
    };
    let v = json!({
        "id": id, "deletedDateTime": null, "businessPhones": [], "city": null,
        "country": null, "countryLetterCode": country, "createdDateTime": fmt_time(created),
        "displayName": name, "marketingNotificationEmails": [], "onPremisesLastSyncDateTime": null,
        "onPremisesSyncEnabled": null, "postalCode": null, "preferredLanguage": "en",
        "privacyProfile": null, "securityComplianceNotificationMails": [],
        "securityComplianceNotificationPhones": [], "state": null, "street": null,
        "technicalNotificationMails": [], "tenantType": "AAD", "assignedPlans": [],
        "provisionedPlans": [], "verifiedDomains": domains,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

async fn organization(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let ctx = Ctx::new(&sim, &headers);
    let state = sim.state();
    let caller = match caller(&state, &headers, &ctx) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if let Err(r) = caller.require(ORG_BASIC, &ctx) {
        return *r;
    }
    let opts = match parse_options(q.as_deref(), &["$select"], &ctx) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let select = match opts.select(ORG_PROPS, "organization", &ctx) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some(t) = tenant(&state.world, &caller.tenant_id) else {
        return ctx.ok(
            json!({"@odata.context": format!("{}/$metadata#organization", ctx.base), "value": []}),
        );
    };
    let mut org = organization_json(&t);
    // §2.1: with User.Read only, just id, displayName and verifiedDomains are populated.
    if !caller.has_any(ORG_FULL) {
        for (k, v) in org.iter_mut() {
            if !matches!(k.as_str(), "id" | "displayName" | "verifiedDomains") {
                *v = Value::Null;
            }
        }
    }
    let (item, ctx_suffix) = match &select {
        Some(names) => (project(&org, names), format!("({})", names.join(","))),
        None => (Value::Object(org), String::new()),
    };
    ctx.ok(json!({
        "@odata.context": format!("{}/$metadata#organization{ctx_suffix}", ctx.base),
        "value": [item],
    }))
}

// ---------------------------------------------------------------------------------------------
// GET /users (§2.2)

/// §2.2 default properties, in Graph's order.
const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];
/// What `User.ReadBasic.All` alone may read.
const USER_BASIC: &[&str] = &[
    "id",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "userPrincipalName",
];
const USER_PROPS: &[&str] = &[
    "id",
    "accountEnabled",
    "ageGroup",
    "assignedLicenses",
    "assignedPlans",
    "businessPhones",
    "city",
    "companyName",
    "country",
    "createdDateTime",
    "creationType",
    "department",
    "displayName",
    "employeeId",
    "externalUserState",
    "givenName",
    "identities",
    "imAddresses",
    "jobTitle",
    "mail",
    "mailNickname",
    "mobilePhone",
    "officeLocation",
    "onPremisesImmutableId",
    "onPremisesSyncEnabled",
    "otherMails",
    "preferredLanguage",
    "proxyAddresses",
    "surname",
    "usageLocation",
    "userPrincipalName",
    "userType",
];
const USER_FILTERABLE: &[&str] = &[
    "id",
    "displayName",
    "givenName",
    "surname",
    "userPrincipalName",
    "mail",
    "jobTitle",
    "accountEnabled",
    "userType",
    "usageLocation",
    "assignedLicenses/skuId",
];

fn user_json(u: &User, usage_location: &str) -> Map<String, Value> {
    let licences: Vec<Value> = u
        .assigned_licenses
        .iter()
        .map(|s| json!({"disabledPlans": [], "skuId": s}))
        .collect();
    let nickname = u
        .user_principal_name
        .split('@')
        .next()
        .unwrap_or_default()
        .to_string();
    let v = json!({
        "id": u.id, "accountEnabled": u.account_enabled, "ageGroup": null,
        "assignedLicenses": licences, "assignedPlans": [], "businessPhones": [], "city": null,
        "companyName": null, "country": null, "createdDateTime": null, "creationType": null,
        "department": null, "displayName": u.display_name, "employeeId": null,
        "externalUserState": null, "givenName": u.given_name, "identities": [],
        "imAddresses": [], "jobTitle": u.job_title, "mail": u.mail, "mailNickname": nickname,
        "mobilePhone": null, "officeLocation": null, "onPremisesImmutableId": null,
        "onPremisesSyncEnabled": null, "otherMails": [], "preferredLanguage": null,
        "proxyAddresses": u.mail.iter().map(|m| format!("SMTP:{m}")).collect::<Vec<_>>(),
        "surname": u.surname,
        "usageLocation": if usage_location.is_empty() { Value::Null } else { json!(usage_location) },
        "userPrincipalName": u.user_principal_name,
        "userType": if u.user_type.is_empty() { "Member" } else { u.user_type.as_str() },
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

// Names for synthetic users come from the generator's lists (one set of names in the sim).
use super::generate::{GIVEN_NAMES as GIVEN, SURNAMES};

/// FNV-1a: a stable seed from a tenant id (independent of any hasher's randomisation).
fn seed_of(s: &str) -> u64 {
    s.to_ascii_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// The customer tenant's users (see the module docs): deterministic from the tenant id.
pub fn customer_users(c: &CustomerTenant) -> Vec<User> {
    let n = usize::try_from(c.user_count)
        .unwrap_or(MAX_SYNTHETIC_USERS)
        .min(MAX_SYNTHETIC_USERS);
    let domain = c
        .custom_domains
        .first()
        .cloned()
        .unwrap_or_else(|| c.domain.clone());
    let mut rng = Rng::new(seed_of(&c.tenant_id));
    let mut seen: HashSet<String> = HashSet::new();
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        let given = *rng.pick(&GIVEN);
        let sur = *rng.pick(&SURNAMES);
        let mut local = format!("{}.{}", given.to_lowercase(), sur.to_lowercase());
        if !seen.insert(local.clone()) {
            local = format!("{local}{}", i + 1);
            seen.insert(local.clone());
        }
        let upn = format!("{local}@{domain}");
        users.push(User {
            id: rng.guid(),
            display_name: format!("{given} {sur}"),
            given_name: Some(given.to_string()),
            surname: Some(sur.to_string()),
            user_principal_name: upn.clone(),
            mail: Some(upn),
            job_title: None,
            account_enabled: true,
            user_type: "Member".into(),
            assigned_licenses: Vec::new(),
            partner_roles: Vec::new(),
            mfa: true,
        });
    }
    for (sku, count) in &c.assigned {
        let k = usize::try_from(*count).unwrap_or(n).min(n);
        for u in users.iter_mut().take(k) {
            u.assigned_licenses.push(sku.clone());
        }
    }
    users
}

async fn users(AxState(sim): AxState<Sim>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let ctx = Ctx::new(&sim, &headers);
    let state = sim.state();
    match users_inner(&state, &headers, q.as_deref(), &ctx) {
        Ok(v) => ctx.ok(v),
        Err(r) => *r,
    }
}

fn users_inner(
    state: &State,
    headers: &HeaderMap,
    q: Option<&str>,
    ctx: &Ctx,
) -> Result<Value, Fail> {
    let caller = caller(state, headers, ctx)?;
    caller.require(USERS_BASIC, ctx)?;
    let opts = parse_options(
        q,
        &[
            "$select",
            "$top",
            "$filter",
            "$count",
            "$skiptoken",
            "$orderby",
            "$search",
            "$expand",
        ],
        ctx,
    )?;
    let advanced = eventual(headers);
    let select = opts.select(USER_PROPS, "user", ctx)?;
    let top = parse_top(&opts, 999, PAGE_USERS, ctx)?;
    let count = match opts.get("$count") {
        None => false,
        Some(c) if c.eq_ignore_ascii_case("true") => true,
        Some(c) if c.eq_ignore_ascii_case("false") => false,
        Some(c) => {
            return Err(ctx.bad_request(
                "Request_BadRequest",
                &format!("The value '{c}' is not valid for $count; use true or false."),
            ));
        }
    };
    if count && !advanced {
        // §2.2: $count is an advanced query, which needs ConsistencyLevel: eventual.
        return Err(ctx.bad_request(
            "Request_BadRequest",
            "$count is not currently supported without the 'ConsistencyLevel: eventual' header.",
        ));
    }
    if opts.get("$search").is_some() || opts.get("$expand").is_some() {
        return Err(ctx.bad_request(
            "Request_UnsupportedQuery",
            "The simulated Graph does not support $search or $expand on users.",
        ));
    }
    let filter = match opts.get("$filter") {
        Some(f) => {
            let f = parse_filter(f, USER_FILTERABLE, ctx)?;
            if f.advanced() && !(advanced && count) {
                return Err(ctx.bad_request(
                    "Request_UnsupportedQuery",
                    "Unsupported Query: this filter needs an advanced query ('ConsistencyLevel: eventual' header and $count=true).",
                ));
            }
            Some(f)
        }
        None => None,
    };
    let order = match opts.get("$orderby") {
        None => None,
        Some(o) => {
            let mut parts = o.split_whitespace();
            let prop = parts.next().unwrap_or("");
            let dir = parts.next().unwrap_or("asc");
            let Some(p) = ["displayName", "userPrincipalName"]
                .iter()
                .find(|p| p.eq_ignore_ascii_case(prop))
            else {
                return Err(ctx.bad_request(
                    "Request_UnsupportedQuery",
                    &format!("Sorting by '{prop}' is not supported; use displayName or userPrincipalName."),
                ));
            };
            if !(dir.eq_ignore_ascii_case("asc") || dir.eq_ignore_ascii_case("desc"))
                || parts.next().is_some()
            {
                return Err(ctx.bad_request(
                    "Request_UnsupportedQuery",
                    &format!("Invalid $orderby '{o}'."),
                ));
            }
            Some((*p, dir.eq_ignore_ascii_case("desc")))
        }
    };
    let offset = match opts.get("$skiptoken") {
        None => 0,
        Some(t) => read_skip_token(t, &caller.tenant_id).ok_or_else(|| {
            ctx.bad_request(
                "Request_BadRequest",
                "The $skiptoken is not valid for this request; follow @odata.nextLink verbatim.",
            )
        })?,
    };

    let world = &state.world;
    // Without $filter or $orderby only the requested page is turned into JSON: listing 50,000
    // users a page at a time must not rebuild all of them for every page.
    let page_of = |users: &[super::world::User], country: &str| {
        let total = users.len();
        let end = offset.saturating_add(top).min(total);
        let page: Vec<Map<String, Value>> = users
            .get(offset.min(total)..end)
            .unwrap_or_default()
            .iter()
            .map(|u| user_json(u, country))
            .collect();
        (page, total)
    };
    let (page, total): (Vec<Map<String, Value>>, usize) = if filter.is_none() && order.is_none() {
        match tenant(world, &caller.tenant_id) {
            Some(Tenant::Msp(m)) => page_of(&m.users, &m.country),
            Some(Tenant::Customer(c)) => page_of(&customer_users(c), &c.country),
            None => (Vec::new(), 0),
        }
    } else {
        let all: Vec<Map<String, Value>> = match tenant(world, &caller.tenant_id) {
            Some(Tenant::Msp(m)) => m.users.iter().map(|u| user_json(u, &m.country)).collect(),
            Some(Tenant::Customer(c)) => customer_users(c)
                .iter()
                .map(|u| user_json(u, &c.country))
                .collect(),
            None => Vec::new(),
        };
        let mut list: Vec<Map<String, Value>> = match &filter {
            Some(f) => all.into_iter().filter(|u| f.eval(u)).collect(),
            None => all,
        };
        if let Some((prop, desc)) = order {
            list.sort_by(|a, b| {
                let x = a
                    .get(prop)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_lowercase();
                let y = b
                    .get(prop)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_lowercase();
                if desc { y.cmp(&x) } else { x.cmp(&y) }
            });
        }
        let total = list.len();
        let end = offset.saturating_add(top).min(total);
        let page = list
            .get(offset.min(total)..end)
            .unwrap_or_default()
            .to_vec();
        (page, total)
    };
    let end = offset.saturating_add(top).min(total);
    let basic_only = !caller.has_any(USERS_FULL);
    let names: Vec<String> = select
        .clone()
        .unwrap_or_else(|| USER_DEFAULT.iter().map(|s| s.to_string()).collect());
    let value: Vec<Value> = page
        .iter()
        .map(|u| {
            let mut v = project(u, &names);
            if basic_only && let Value::Object(m) = &mut v {
                for (k, val) in m.iter_mut() {
                    if !USER_BASIC.contains(&k.as_str()) {
                        *val = Value::Null;
                    }
                }
            }
            v
        })
        .collect();
    let context = match &select {
        Some(n) => format!("{}/$metadata#users({})", ctx.base, n.join(",")),
        None => format!("{}/$metadata#users", ctx.base),
    };
    let mut body = Map::new();
    body.insert("@odata.context".into(), json!(context));
    if count && offset == 0 {
        body.insert("@odata.count".into(), json!(total));
    }
    if end < total {
        let link = opts.next_link(
            &format!("{}/users", ctx.base),
            "$skiptoken",
            &skip_token(end, &caller.tenant_id),
        );
        body.insert("@odata.nextLink".into(), json!(link));
    }
    body.insert("value".into(), Value::Array(value));
    Ok(Value::Object(body))
}

// ---------------------------------------------------------------------------------------------
// GET /subscribedSkus (§2.3)

const SKU_PROPS: &[&str] = &[
    "accountName",
    "accountId",
    "appliesTo",
    "capabilityStatus",
    "consumedUnits",
    "id",
    "prepaidUnits",
    "servicePlans",
    "skuId",
    "skuPartNumber",
    "subscriptionIds",
];

fn directory_id(s: &MsSubscription) -> &str {
    if s.directory_id.is_empty() {
        &s.id
    } else {
        &s.directory_id
    }
}

/// One subscribedSku per Graph sku across the tenant's subscriptions: active quantities are
/// `prepaidUnits.enabled`, suspended ones `suspended`, pending ones `warning` (as the
/// companySubscription status mapping, §2.3a), `disabled` ones `lockedOut`; deleted and
/// expired subscriptions count nowhere. consumedUnits = `assigned[sku]`.
pub fn subscribed_skus_of(c: &CustomerTenant) -> Vec<Value> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_sku: BTreeMap<&str, Vec<&MsSubscription>> = BTreeMap::new();
    for s in &c.subscriptions {
        if s.graph_sku_id.is_empty() {
            continue;
        }
        let key = s.graph_sku_id.as_str();
        if !by_sku.contains_key(key) {
            order.push(key);
        }
        by_sku.entry(key).or_default().push(s);
    }
    order
        .into_iter()
        .map(|sku| {
            let subs = by_sku.get(sku).cloned().unwrap_or_default();
            let (mut enabled, mut suspended, mut warning, mut locked) = (0u64, 0u64, 0u64, 0u64);
            for s in &subs {
                let q = u64::from(s.quantity);
                match s.status.to_ascii_lowercase().as_str() {
                    "active" => enabled += q,
                    "suspended" => suspended += q,
                    "pending" => warning += q,
                    "disabled" => locked += q,
                    _ => {}
                }
            }
            let status = if enabled > 0 {
                "Enabled"
            } else if warning > 0 {
                "Warning"
            } else if suspended > 0 {
                "Suspended"
            } else if locked > 0 {
                "LockedOut"
            } else {
                "Deleted"
            };
            let part = subs
                .iter()
                .map(|s| s.sku_part_number.as_str())
                .find(|p| !p.is_empty())
                .unwrap_or("");
            json!({
                "accountName": c.company_name,
                "accountId": if c.commerce_id.is_empty() { &c.tenant_id } else { &c.commerce_id },
                "appliesTo": "User",
                "capabilityStatus": status,
                "consumedUnits": c.assigned.get(sku).copied().unwrap_or(0),
                "id": format!("{}_{sku}", c.tenant_id),
                "prepaidUnits": {"enabled": enabled, "lockedOut": locked, "suspended": suspended, "warning": warning},
                "servicePlans": [],
                "skuId": sku,
                "skuPartNumber": part,
                "subscriptionIds": subs.iter().map(|s| directory_id(s)).collect::<Vec<_>>(),
            })
        })
        .collect()
}

async fn subscribed_skus(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let ctx = Ctx::new(&sim, &headers);
    let state = sim.state();
    let run = || -> Result<Value, Fail> {
        let caller = caller(&state, &headers, &ctx)?;
        caller.require(ORG_FULL, &ctx)?;
        // §2.3: only $select.
        let opts = parse_options(q.as_deref(), &["$select"], &ctx)?;
        let select = opts.select(SKU_PROPS, "subscribedSku", &ctx)?;
        let items = match tenant(&state.world, &caller.tenant_id) {
            Some(Tenant::Customer(c)) => subscribed_skus_of(c),
            _ => Vec::new(),
        };
        let (value, suffix) = select_all(items, select.as_deref());
        Ok(
            json!({"@odata.context": format!("{}/$metadata#subscribedSkus{suffix}", ctx.base), "value": value}),
        )
    };
    match run() {
        Ok(v) => ctx.ok(v),
        Err(r) => *r,
    }
}

fn select_all(items: Vec<Value>, select: Option<&[String]>) -> (Vec<Value>, String) {
    match select {
        None => (items, String::new()),
        Some(names) => (
            items
                .iter()
                .map(|v| match v {
                    Value::Object(m) => project(m, names),
                    other => other.clone(),
                })
                .collect(),
            format!("({})", names.join(",")),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// GET /directory/subscriptions (§2.3a)

const COMPANY_SUB_PROPS: &[&str] = &[
    "id",
    "commerceSubscriptionId",
    "createdDateTime",
    "isTrial",
    "nextLifecycleDateTime",
    "ownerId",
    "ownerTenantId",
    "ownerType",
    "serviceStatus",
    "skuId",
    "skuPartNumber",
    "status",
    "totalLicenses",
];

/// §2.3a status mapping: active → Enabled, suspended → Suspended, deleted/expired → Deleted,
/// pending → Warning, disabled → LockedOut.
fn company_status(pc_status: &str) -> &'static str {
    match pc_status.to_ascii_lowercase().as_str() {
        "active" => "Enabled",
        "suspended" => "Suspended",
        "pending" => "Warning",
        "disabled" => "LockedOut",
        _ => "Deleted",
    }
}

fn company_subscription(s: &MsSubscription, msp_tenant: &str) -> Value {
    json!({
        "id": directory_id(s),
        "commerceSubscriptionId": s.id,
        "createdDateTime": fmt_time(s.creation_date),
        "isTrial": s.is_trial,
        "nextLifecycleDateTime": fmt_time(s.commitment_end_date),
        "ownerId": msp_tenant,
        "ownerTenantId": msp_tenant,
        "ownerType": "Company",
        "serviceStatus": [],
        "skuId": s.graph_sku_id,
        "skuPartNumber": s.sku_part_number,
        "status": company_status(&s.status),
        "totalLicenses": s.quantity,
    })
}

fn tenant_subscriptions(state: &State, tenant_id: &str) -> Vec<Value> {
    let msp = &state.world.msp.tenant_id;
    match tenant(&state.world, tenant_id) {
        Some(Tenant::Customer(c)) => c
            .subscriptions
            .iter()
            .map(|s| company_subscription(s, msp))
            .collect(),
        _ => Vec::new(),
    }
}

async fn directory_subscriptions(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let ctx = Ctx::new(&sim, &headers);
    let state = sim.state();
    let run = || -> Result<Value, Fail> {
        let caller = caller(&state, &headers, &ctx)?;
        caller.require(ORG_FULL, &ctx)?;
        let opts = parse_options(q.as_deref(), &["$select"], &ctx)?;
        let select = opts.select(COMPANY_SUB_PROPS, "companySubscription", &ctx)?;
        let items = tenant_subscriptions(&state, &caller.tenant_id);
        let (value, suffix) = select_all(items, select.as_deref());
        Ok(
            json!({"@odata.context": format!("{}/$metadata#directory/subscriptions{suffix}", ctx.base), "value": value}),
        )
    };
    match run() {
        Ok(v) => ctx.ok(v),
        Err(r) => *r,
    }
}

/// One companySubscription by `id`, or by commerce id (`(commerceSubscriptionId='..')`).
fn one_subscription(
    state: &State,
    headers: &HeaderMap,
    q: Option<&str>,
    ctx: &Ctx,
    by: &str,
    key: &str,
) -> Result<Value, Fail> {
    let caller = caller(state, headers, ctx)?;
    caller.require(ORG_FULL, ctx)?;
    let opts = parse_options(q, &["$select"], ctx)?;
    let select = opts.select(COMPANY_SUB_PROPS, "companySubscription", ctx)?;
    let found = tenant_subscriptions(state, &caller.tenant_id)
        .into_iter()
        .find(|s| {
            s.get(by)
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case(key))
        })
        .ok_or_else(|| {
            ctx.error(
                StatusCode::NOT_FOUND,
                "Request_ResourceNotFound",
                &format!("Resource '{key}' does not exist or one of its queried reference-property objects are not present."),
            )
        })?;
    let (mut value, suffix) = select_all(vec![found], select.as_deref());
    let mut item = value.pop().unwrap_or(Value::Null);
    if let Value::Object(m) = &mut item {
        m.insert(
            "@odata.context".into(),
            json!(format!(
                "{}/$metadata#directory/subscriptions{suffix}/$entity",
                ctx.base
            )),
        );
    }
    Ok(item)
}

async fn directory_subscription(
    AxState(sim): AxState<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let ctx = Ctx::new(&sim, &headers);
    let state = sim.state();
    match one_subscription(&state, &headers, q.as_deref(), &ctx, "id", &id) {
        Ok(v) => ctx.ok(v),
        Err(r) => *r,
    }
}

/// `/directory/subscriptions(commerceSubscriptionId='{id}')` (§2.3a).
async fn directory_segment(
    AxState(sim): AxState<Sim>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let ctx = Ctx::new(&sim, &headers);
    let key = segment
        .strip_prefix("subscriptions(")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|inner| {
            let (k, v) = inner.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("commerceSubscriptionId")
                .then(|| v.trim().trim_matches('\'').to_string())
        });
    let Some(key) = key else {
        return *ctx.bad_request(
            "BadRequest",
            &format!("Resource not found for the segment '{segment}'."),
        );
    };
    let state = sim.state();
    match one_subscription(
        &state,
        &headers,
        q.as_deref(),
        &ctx,
        "commerceSubscriptionId",
        &key,
    ) {
        Ok(v) => ctx.ok(v),
        Err(r) => *r,
    }
}

// ---------------------------------------------------------------------------------------------
// GET /tenantRelationships/delegatedAdminRelationships (§2.6)

const GDAP_PROPS: &[&str] = &[
    "id",
    "displayName",
    "duration",
    "customer",
    "accessDetails",
    "status",
    "autoExtendDuration",
    "createdDateTime",
    "lastModifiedDateTime",
    "activatedDateTime",
    "endDateTime",
];
const GDAP_FILTERABLE: &[&str] = &[
    "id",
    "displayName",
    "status",
    "customer/tenantId",
    "customer/displayName",
];

/// One relationship per customer: `active` while `gdap_active`, else `expired`. Dates are
/// derived from the tenant id and the world's "today", so they are stable.
fn gdap_relationship(c: &CustomerTenant, today: NaiveDate) -> Value {
    let mut rng = Rng::new(seed_of(&c.tenant_id) ^ 0x6D61_7021);
    let id = format!("{}-{}", rng.guid(), c.tenant_id.to_ascii_lowercase());
    let base = today
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc())
        .unwrap_or_else(Utc::now);
    let back = i64::try_from(rng.range(30, 600)).unwrap_or(100);
    let days_back = if c.gdap_active { back } else { 731 + back };
    let created = base
        .checked_sub_signed(Duration::days(days_back))
        .unwrap_or(base);
    let end = created
        .checked_add_signed(Duration::days(730))
        .unwrap_or(created);
    json!({
        "@odata.type": "#microsoft.graph.delegatedAdminRelationship",
        "id": id,
        "displayName": format!("cspsync-{}", c.company_name.chars().filter(|ch| ch.is_alphanumeric()).take(40).collect::<String>()),
        "duration": "P730D",
        "customer": {"tenantId": c.tenant_id, "displayName": c.company_name},
        "accessDetails": {"unifiedRoles": [
            {"roleDefinitionId": "88d8e3e3-8f55-4a1e-953a-9b9898b8876b"},
            {"roleDefinitionId": "4d6ac14f-3453-41d0-bef9-a3e0c569773a"}
        ]},
        "status": if c.gdap_active { "active" } else { "expired" },
        "autoExtendDuration": "PT0S",
        "createdDateTime": fmt_time(Some(created)),
        "lastModifiedDateTime": fmt_time(Some(created)),
        "activatedDateTime": fmt_time(created.checked_add_signed(Duration::hours(2))),
        "endDateTime": fmt_time(Some(end)),
    })
}

async fn delegated_admin_relationships(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let ctx = Ctx::new(&sim, &headers);
    let state = sim.state();
    let run = || -> Result<Value, Fail> {
        let caller = caller(&state, &headers, &ctx)?;
        caller.require(GDAP_READ, &ctx)?;
        let opts = parse_options(
            q.as_deref(),
            &["$top", "$filter", "$skiptoken", "$select"],
            &ctx,
        )?;
        let select = opts.select(GDAP_PROPS, "delegatedAdminRelationship", &ctx)?;
        let top = parse_top(&opts, PAGE_GDAP, PAGE_GDAP, &ctx)?;
        let filter = match opts.get("$filter") {
            Some(f) => Some(parse_filter(f, GDAP_FILTERABLE, &ctx)?),
            None => None,
        };
        let offset = match opts.get("$skiptoken") {
            None => 0,
            Some(t) => read_skip_token(t, &caller.tenant_id).ok_or_else(|| {
                ctx.bad_request(
                    "BadRequest",
                    "The $skipToken is not valid; follow @odata.nextLink verbatim.",
                )
            })?,
        };
        let world = &state.world;
        let today = world.meta.today.unwrap_or_else(|| Utc::now().date_naive());
        // The partner side lists its customers; a customer tenant has none of its own here.
        let all: Vec<Value> = if caller.tenant_id.eq_ignore_ascii_case(&world.msp.tenant_id) {
            world
                .customers
                .iter()
                .map(|c| gdap_relationship(c, today))
                .collect()
        } else {
            Vec::new()
        };
        let list: Vec<Value> = all
            .into_iter()
            .filter(|v| match (&filter, v.as_object()) {
                (Some(f), Some(m)) => f.eval(m),
                _ => true,
            })
            .collect();
        let total = list.len();
        let end = offset.saturating_add(top).min(total);
        let page = list
            .get(offset.min(total)..end)
            .unwrap_or_default()
            .to_vec();
        let (value, suffix) = select_all(page, select.as_deref());
        let mut body = Map::new();
        body.insert(
            "@odata.context".into(),
            json!(format!(
                "{}/$metadata#tenantRelationships/delegatedAdminRelationships{suffix}",
                ctx.base
            )),
        );
        if end < total {
            body.insert(
                "@odata.nextLink".into(),
                json!(opts.next_link(
                    &format!(
                        "{}/tenantRelationships/delegatedAdminRelationships",
                        ctx.base
                    ),
                    "$skipToken",
                    &skip_token(end, &caller.tenant_id),
                )),
            );
        }
        body.insert("value".into(), Value::Array(value));
        Ok(Value::Object(body))
    };
    match run() {
        Ok(v) => ctx.ok(v),
        Err(r) => *r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn parse(s: &str) -> Filter {
        let toks = tokenize(s).unwrap_or_default();
        let mut p = Parser { toks, pos: 0 };
        p.or().unwrap_or(Filter::Not(Box::new(Filter::Cmp(
            "parse-failed".into(),
            Op::Eq,
            Value::Null,
        ))))
    }

    #[test]
    fn filters_evaluate() {
        let u = obj(
            json!({"displayName": "Olivia Smith", "accountEnabled": true,
            "userPrincipalName": "o.smith@contoso.com",
            "assignedLicenses": [{"skuId": "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46", "disabledPlans": []}]}),
        );
        assert!(parse("startswith(displayName,'oli')").eval(&u));
        assert!(!parse("startswith(displayName,'Smith')").eval(&u));
        assert!(parse("accountEnabled eq true").eval(&u));
        assert!(!parse("accountEnabled eq false").eval(&u));
        assert!(parse("startswith(userPrincipalName,'o.s') and accountEnabled eq true").eval(&u));
        assert!(parse("accountEnabled eq false or (displayName eq 'olivia smith')").eval(&u));
        assert!(
            parse("assignedLicenses/any(x:x/skuId eq cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46)")
                .eval(&u)
        );
        assert!(!parse("assignedLicenses/any(x:x/skuId eq 'nope')").eval(&u));
        assert!(parse("not(accountEnabled eq false)").advanced());
        assert!(tokenize("displayName eq 'unterminated").is_err());
    }

    #[test]
    fn skip_tokens_round_trip_per_tenant() {
        let t = skip_token(200, "ABC");
        assert_eq!(read_skip_token(&t, "abc"), Some(200));
        assert_eq!(read_skip_token(&t, "other"), None);
        assert_eq!(read_skip_token("garbage!", "abc"), None);
    }

    #[test]
    fn customer_users_are_deterministic_and_licensed() {
        let mut c = CustomerTenant {
            tenant_id: "b44bb1fb-c595-45b0-9e09-d657365580bf".into(),
            domain: "contoso.onmicrosoft.com".into(),
            user_count: 40,
            ..CustomerTenant::default()
        };
        c.assigned.insert("sku-a".into(), 12);
        c.assigned.insert("sku-b".into(), 99);
        let a = customer_users(&c);
        let b = customer_users(&c);
        assert_eq!(a.len(), 40);
        assert_eq!(
            a.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
            b.iter().map(|u| u.id.clone()).collect::<Vec<_>>()
        );
        let upns: HashSet<_> = a.iter().map(|u| u.user_principal_name.clone()).collect();
        assert_eq!(upns.len(), 40, "UPNs are unique");
        assert!(
            a.iter()
                .all(|u| u.user_principal_name.ends_with("@contoso.onmicrosoft.com"))
        );
        let with_a = a
            .iter()
            .filter(|u| u.assigned_licenses.iter().any(|s| s == "sku-a"))
            .count();
        let with_b = a
            .iter()
            .filter(|u| u.assigned_licenses.iter().any(|s| s == "sku-b"))
            .count();
        assert_eq!((with_a, with_b), (12, 40));
    }
}
