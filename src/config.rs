//! Settings. For now: the base URL of every external API (real hosts by default; the sim's
//! loopback URLs in demo mode and tests). Settings files and secrets land with issue 3.

use serde::{Deserialize, Serialize};
use url::Url;

/// Where each API lives. Every client takes its base URL from here, never from a constant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Endpoints {
    /// Microsoft identity platform authority host (reference/external-apis.md §1.1).
    pub entra: Url,
    /// Microsoft Graph v1.0 (§2).
    pub graph: Url,
    /// Partner Center REST API with its `/v1` prefix (§3.1).
    pub partnercenter: Url,
    /// Dicker Data B2B API (§4.1).
    pub dickerdata: Url,
    /// ConnectWise Manage API base `https://{site}/{codebase}/apis/3.0` (§5.1); when unset it
    /// is built from the site in the PSA settings.
    pub connectwise: Option<Url>,
    /// Autotask zone discovery base (§6.1).
    pub autotask: Url,
    /// Xero authorize host (§7.1).
    pub xero_login: Url,
    /// Xero token host (§7.1).
    pub xero_identity: Url,
    /// Xero API host (§7.2, §7.3).
    pub xero_api: Url,
}

fn url(s: &str) -> Url {
    // Only called on the constants below, which are valid URLs (checked by a unit test).
    Url::parse(s).unwrap_or_else(|_| Url::parse("http://invalid.invalid").expect("literal URL"))
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            entra: url("https://login.microsoftonline.com"),
            graph: url("https://graph.microsoft.com/v1.0"),
            partnercenter: url("https://api.partnercenter.microsoft.com/v1"),
            dickerdata: url("https://b2b-api.dickerdata.com.au/api"),
            connectwise: None,
            autotask: url("https://webservices.autotask.net/atservicesrest"),
            xero_login: url("https://login.xero.com/identity/connect"),
            xero_identity: url("https://identity.xero.com/connect"),
            xero_api: url("https://api.xero.com"),
        }
    }
}

impl Endpoints {
    /// The endpoints of a running sim (`cspsync sim` prints the same URLs).
    pub fn from_sim(urls: &crate::sim::Urls) -> Result<Endpoints, url::ParseError> {
        Ok(Endpoints {
            entra: Url::parse(&urls.entra)?,
            graph: Url::parse(&urls.graph)?,
            partnercenter: Url::parse(&urls.partnercenter)?,
            dickerdata: Url::parse(&urls.dickerdata)?,
            connectwise: Some(Url::parse(&urls.connectwise)?),
            autotask: Url::parse(&urls.autotask)?,
            xero_login: Url::parse(&urls.xero_login)?,
            xero_identity: Url::parse(&urls.xero_identity)?,
            xero_api: Url::parse(&urls.xero_api)?,
        })
    }

    /// The `[endpoints]` table of a settings file.
    pub fn to_toml_snippet(&self) -> String {
        #[derive(Serialize)]
        struct Wrap<'a> {
            endpoints: &'a Endpoints,
        }
        toml::to_string(&Wrap { endpoints: self }).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_real_hosts() {
        let e = Endpoints::default();
        assert_eq!(e.graph.as_str(), "https://graph.microsoft.com/v1.0");
        assert_eq!(e.xero_api.host_str(), Some("api.xero.com"));
        let t = e.to_toml_snippet();
        assert!(t.starts_with("[endpoints]"), "{t}");
        let back: toml::Value = toml::from_str(&t).expect("toml");
        assert!(back.get("endpoints").is_some());
    }
}
