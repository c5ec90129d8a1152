//! One typed error for every external API, carrying a sentence a person can act on.
//!
//! Each API module turns its own error body into a [`VendorError`] (code, message, details);
//! the shared HTTP core ([`super::http`]) wraps it with the API's name, the HTTP status and a
//! [`ErrorKind`] derived from the status, so callers branch on the kind and show `Display`.

use std::fmt;
use std::time::Duration;

/// The seven external APIs cspsync speaks to (plus Xero's two identity hosts folded into `Xero`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    Entra,
    Graph,
    PartnerCenter,
    DickerData,
    ConnectWise,
    Autotask,
    Xero,
}

impl Api {
    pub const ALL: [Api; 7] = [
        Api::Entra,
        Api::Graph,
        Api::PartnerCenter,
        Api::DickerData,
        Api::ConnectWise,
        Api::Autotask,
        Api::Xero,
    ];

    /// The name a person reads in a message.
    pub fn display_name(self) -> &'static str {
        match self {
            Api::Entra => "Microsoft sign-in",
            Api::Graph => "Microsoft Graph",
            Api::PartnerCenter => "Partner Center",
            Api::DickerData => "Dicker Data",
            Api::ConnectWise => "ConnectWise Manage",
            Api::Autotask => "Autotask",
            Api::Xero => "Xero",
        }
    }

    /// A short stable key (logs, statistics, config).
    pub fn key(self) -> &'static str {
        match self {
            Api::Entra => "entra",
            Api::Graph => "graph",
            Api::PartnerCenter => "partnercenter",
            Api::DickerData => "dickerdata",
            Api::ConnectWise => "connectwise",
            Api::Autotask => "autotask",
            Api::Xero => "xero",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// What went wrong, in the terms a caller branches on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// 401 or an auth failure reported in a 200 body: credentials or token rejected.
    Unauthorized,
    /// 403: signed in, but not allowed.
    Forbidden,
    /// 404.
    NotFound,
    /// 400/409/412/422: the request was refused as invalid.
    Rejected,
    /// 429 (after retries ran out).
    RateLimited { retry_after: Option<Duration> },
    /// 5xx (after retries ran out).
    Server,
    /// The connection failed, dropped or timed out (after retries ran out). `maybe_applied`
    /// is true when a non-idempotent write may have reached the server before the failure.
    Transport { maybe_applied: bool },
    /// The response could not be read: HTML instead of JSON, truncated JSON, wrong types,
    /// missing fields.
    Malformed,
    /// HTTP 2xx whose body says the call failed (Dicker Data's `Status: "Failed"`).
    Failed,
    /// An OAuth protocol outcome (device code expired, declined, invalid_grant, ...).
    OAuth,
    /// Bad configuration on our side (a base URL that is not a URL, a missing credential).
    Config,
}

/// What a vendor's error body said, already parsed by that API's module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VendorError {
    pub code: Option<String>,
    pub message: Option<String>,
    pub details: Vec<String>,
}

/// An error from one external API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub api: Api,
    pub kind: ErrorKind,
    /// HTTP status, where there was a response.
    pub status: Option<u16>,
    /// The vendor's error code (`InvalidAuthenticationToken`, `3000`, `InvalidObject`, ...).
    pub code: Option<String>,
    /// One sentence for a person, without the API name (Display adds it).
    pub message: String,
    /// Extra lines from the vendor (validation messages), each already cleaned.
    pub details: Vec<String>,
    /// The operation, e.g. `GET /users` (path only, never the query string, never secrets).
    pub operation: String,
}

impl ApiError {
    pub fn new(api: Api, kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            api,
            kind,
            status: None,
            code: None,
            message: message.into(),
            details: Vec::new(),
            operation: String::new(),
        }
    }

    pub fn with_operation(mut self, op: impl Into<String>) -> Self {
        self.operation = op.into();
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn malformed(api: Api, what: impl fmt::Display) -> Self {
        ApiError::new(
            api,
            ErrorKind::Malformed,
            format!("returned a response cspsync could not read ({what})"),
        )
    }

    pub fn config(api: Api, what: impl Into<String>) -> Self {
        ApiError::new(api, ErrorKind::Config, what)
    }

    /// What a person should do next, in one sentence.
    pub fn hint(&self) -> &'static str {
        match (&self.kind, self.api) {
            (ErrorKind::Unauthorized, Api::DickerData) => {
                "Check the Dicker Data Account Code and Access Code (AU: ask your Dicker Data account manager; NZ: portal → Integration → Generate New Token)."
            }
            (ErrorKind::Unauthorized, Api::ConnectWise) => {
                "Check the ConnectWise company id, public and private key of the API member, and the clientId."
            }
            (ErrorKind::Unauthorized, Api::Autotask) => {
                "Check the Autotask API user name, secret and API integration code."
            }
            (ErrorKind::Unauthorized, Api::Entra | Api::Graph | Api::PartnerCenter | Api::Xero) => {
                "Sign in again."
            }
            (ErrorKind::Forbidden, Api::Entra) => {
                "Check that the GDAP relationship with this customer is active and includes a role that can read it (e.g. Directory Readers)."
            }
            (ErrorKind::OAuth, Api::Entra | Api::Xero)
                if self.code.as_deref() == Some("invalid_grant") =>
            {
                "Sign in again."
            }
            (ErrorKind::Forbidden, Api::PartnerCenter) => {
                "The signed-in account needs the Admin Agent (or Global Administrator) role in Partner Center, with MFA."
            }
            (ErrorKind::Forbidden, _) => {
                "The account lacks a permission this needs: check its roles and the consented scopes."
            }
            (ErrorKind::RateLimited { .. }, _) => "Wait a minute and try again.",
            (ErrorKind::Server, _) => "The service is having trouble; try again later.",
            (ErrorKind::Transport { .. }, _) => {
                "Check the network connection and the service's base URL."
            }
            (ErrorKind::Malformed, _) => {
                "Check that the base URL points at the real API, not a proxy or login page."
            }
            (ErrorKind::Config, _) => "Fix the setting named above and try again.",
            _ => "See the message above for what the service refused.",
        }
    }

    /// True for errors worth retrying later (not for bad credentials or invalid requests).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::RateLimited { .. } | ErrorKind::Server | ErrorKind::Transport { .. }
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.api, self.message)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status}")?;
            if let Some(code) = &self.code {
                write!(f, ", {code}")?;
            }
            f.write_str(")")?;
        } else if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        if !self.operation.is_empty() {
            write!(f, " [{}]", self.operation)?;
        }
        for d in &self.details {
            write!(f, "; {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Make a vendor string safe to show: one line, no control characters, bounded length, and
/// long token-like runs (anything that might be a secret echoed back) masked.
pub fn clean_text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        let tokenish = word.len() >= 40
            && word.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | '/' | '+')
            });
        if tokenish {
            out.push_str("[redacted]");
        } else {
            out.extend(word.chars().filter(|c| !c.is_control()));
        }
        if out.len() >= max {
            break;
        }
    }
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_sentence_with_status_and_code() {
        let e = ApiError::new(
            Api::Graph,
            ErrorKind::Unauthorized,
            "refused the access token",
        )
        .with_status(401)
        .with_code("InvalidAuthenticationToken")
        .with_operation("GET /users");
        assert_eq!(
            e.to_string(),
            "Microsoft Graph refused the access token (HTTP 401, InvalidAuthenticationToken) [GET /users]"
        );
    }

    #[test]
    fn clean_text_masks_tokens_and_control_chars() {
        let s = "bad token eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9abcdefghijklmnop\r\nTrace ID: 1";
        let c = clean_text(s, 200);
        assert!(!c.contains("eyJ0"));
        assert!(!c.contains('\r'));
        assert!(c.contains("[redacted]"));
        assert!(clean_text(&"é".repeat(500), 10).chars().count() <= 11);
    }
}
