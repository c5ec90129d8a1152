//! Access tokens the sim's identity endpoints issued, checked by the resource APIs.
//!
//! Entra (Microsoft) and Xero's identity server both issue tokens here; Graph, Partner Center
//! and Xero's API look them up. A token is valid for one audience (resource) and one tenant,
//! as a real access token is (reference/external-apis.md §1.3, §1.7).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// Who a token was issued by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Issuer {
    Microsoft,
    Xero,
}

/// What an access token grants.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub issuer: Issuer,
    /// Resource: `https://graph.microsoft.com`, `https://api.partnercenter.microsoft.com`,
    /// or `xero` for Xero tokens.
    pub audience: String,
    /// The tenant the token is for (a Microsoft tenant id; empty for Xero, whose tenant is
    /// chosen per request with `xero-tenant-id`).
    pub tenant_id: String,
    /// User object id (Microsoft `oid`) or Xero user id.
    pub subject: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub mfa: bool,
    pub expires_at: DateTime<Utc>,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Missing,
    Unknown,
    Expired,
    WrongAudience,
}

#[derive(Debug, Default, Serialize)]
pub struct Tokens {
    #[serde(skip)]
    access: HashMap<String, Grant>,
    /// Counted in the state dump instead of listing secrets.
    issued: u64,
}

impl Tokens {
    pub fn insert(&mut self, token: String, grant: Grant) {
        self.issued += 1;
        // Forget long-expired tokens so a long run does not grow without bound.
        if self.access.len() > 50_000 {
            let cutoff = Utc::now() - Duration::hours(2);
            self.access.retain(|_, g| g.expires_at > cutoff);
        }
        self.access.insert(token, grant);
    }

    /// The grant of a bearer token for `audience` (prefix match, so a token for
    /// `https://graph.microsoft.com` serves `https://graph.microsoft.com/v1.0/...`).
    pub fn check(&self, token: Option<&str>, audience: &str) -> Result<&Grant, TokenProblem> {
        let token = token.ok_or(TokenProblem::Missing)?;
        let grant = self.access.get(token).ok_or(TokenProblem::Unknown)?;
        if grant.expires_at <= Utc::now() {
            return Err(TokenProblem::Expired);
        }
        if !audience.starts_with(&grant.audience) && grant.audience != audience {
            return Err(TokenProblem::WrongAudience);
        }
        Ok(grant)
    }

    /// The grant of a token without checking audience or expiry (fault layer, limits).
    pub fn peek(&self, token: &str) -> Option<&Grant> {
        self.access.get(token)
    }

    /// Expire every access token now (the control surface's "expire tokens" fault): the next
    /// call with any of them gets 401 and the client must refresh.
    pub fn expire_all(&mut self) -> usize {
        let now = Utc::now() - Duration::seconds(1);
        for g in self.access.values_mut() {
            g.expires_at = now;
        }
        self.access.len()
    }
}
