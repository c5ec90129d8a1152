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

// ---------------------------------------------------------------------------------------------
// Settings and secrets (DESIGN.md §5)
// ---------------------------------------------------------------------------------------------

use std::path::{Path, PathBuf};

use crate::secret::Secret;

/// The MSP tenant, filled from Graph /organization at sign-in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MicrosoftSettings {
    pub tenant_id: String,
    pub tenant_name: String,
    /// The default verified domain.
    pub domain: String,
    /// Who ran the setup (the admin; id_token `oid` and `preferred_username`).
    pub setup_user_oid: String,
    pub setup_user_name: String,
    /// The Entra app (public client) cspsync signs in with.
    pub client_id: String,
    /// Who is signed in now (the stored session's user; may differ from the setup user).
    pub signed_in_oid: String,
    pub signed_in_name: String,
}

/// What an allowed user may do (issue 4). The setup account is admin and needs no entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reconcile, read-only.
    #[default]
    Viewer,
    /// May also apply syncs.
    Operator,
}

/// One user on the allowed list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AllowedUser {
    /// Graph user id (= id_token `oid`): the key, since sign-in names can change.
    pub oid: String,
    pub upn: String,
    pub name: String,
    pub role: Role,
}

/// Who may operate cspsync besides the setup account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessSettings {
    pub allowed: Vec<AllowedUser>,
    /// When the list was last saved (RFC 3339).
    pub saved_at: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DistributorSettings {
    pub account_code: String,
    pub mpn_id: String,
    /// When "Test connection" last succeeded (RFC 3339).
    pub verified_at: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartnerCenterSettings {
    /// When Partner Center was last authorised (RFC 3339).
    pub authorised_at: Option<String>,
    pub customers_found: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PsaKindSetting {
    #[default]
    None,
    ConnectWise,
    Autotask,
    Xero,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectWiseSettings {
    pub company_id: String,
    /// The site a technician logs in to, e.g. `api-au.myconnectwise.net`.
    pub site: String,
    pub public_key: String,
    pub client_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutotaskSettings {
    pub username: String,
    pub integration_code: String,
    /// Found by zone discovery.
    pub zone_url: String,
    pub zone_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct XeroSettings {
    pub client_id: String,
    pub tenant_id: String,
    pub tenant_name: String,
    pub contact_id: String,
    pub contact_name: String,
    pub expense_account_code: String,
    pub revenue_account_code: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PsaSettings {
    pub kind: PsaKindSetting,
    pub connectwise: ConnectWiseSettings,
    pub autotask: AutotaskSettings,
    pub xero: XeroSettings,
    pub verified_at: Option<String>,
}

/// Everything cspsync remembers that is not a secret (`settings.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub microsoft: MicrosoftSettings,
    pub distributor: DistributorSettings,
    pub partner_center: PartnerCenterSettings,
    pub psa: PsaSettings,
    pub access: AccessSettings,
    /// Manual customer and product mapping decisions (issue 5 §2), used by every
    /// reconciliation and sync.
    pub mapping: crate::domain::Overrides,
    /// How the PSA is brought in line with Dicker Data (issue 6 §1).
    pub sync: SyncSettings,
    /// Base URLs; absent means the real hosts.
    pub endpoints: Option<Endpoints>,
}

/// Sync settings: billing style and per-customer sell prices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncSettings {
    pub style: crate::domain::sync::BillingStyle,
    pub price_overrides: Vec<crate::domain::sync::PriceOverride>,
}

/// The secrets (`secrets.toml`, created 0600; never printed, never logged).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Secrets {
    pub microsoft_refresh_token: Option<String>,
    pub dicker_data_access_code: Option<String>,
    pub connectwise_private_key: Option<String>,
    pub autotask_secret: Option<String>,
    pub xero_refresh_token: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "[set]" } else { "[unset]" };
        f.debug_struct("Secrets")
            .field(
                "microsoft_refresh_token",
                &set(&self.microsoft_refresh_token),
            )
            .field(
                "dicker_data_access_code",
                &set(&self.dicker_data_access_code),
            )
            .field(
                "connectwise_private_key",
                &set(&self.connectwise_private_key),
            )
            .field("autotask_secret", &set(&self.autotask_secret))
            .field("xero_refresh_token", &set(&self.xero_refresh_token))
            .finish()
    }
}

impl Secrets {
    pub fn get(o: &Option<String>) -> Option<Secret> {
        o.as_ref().map(|s| Secret::new(s.clone()))
    }
}

/// Where settings and secrets live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDir {
    pub dir: PathBuf,
}

pub const SETTINGS_FILE: &str = "settings.toml";
pub const SECRETS_FILE: &str = "secrets.toml";

impl ConfigDir {
    /// `--config-dir` / `CSPSYNC_CONFIG_DIR`, else the platform config directory.
    pub fn resolve(explicit: Option<&Path>) -> Result<ConfigDir, String> {
        if let Some(d) = explicit {
            return Ok(ConfigDir {
                dir: d.to_path_buf(),
            });
        }
        directories::ProjectDirs::from("au", "cspsync", "cspsync")
            .map(|p| ConfigDir {
                dir: p.config_dir().to_path_buf(),
            })
            .ok_or_else(|| {
                "cannot find a home directory for the settings; pass --config-dir DIR".to_string()
            })
    }

    pub fn settings_path(&self) -> PathBuf {
        self.dir.join(SETTINGS_FILE)
    }

    pub fn secrets_path(&self) -> PathBuf {
        self.dir.join(SECRETS_FILE)
    }

    /// The platform's data directory when these settings are the platform's own; else (an
    /// explicit `--config-dir`, the demo's temporary directory) the settings directory itself.
    pub fn data_dir(&self) -> PathBuf {
        match directories::ProjectDirs::from("au", "cspsync", "cspsync") {
            Some(p) if p.config_dir() == self.dir => p.data_dir().to_path_buf(),
            _ => self.dir.clone(),
        }
    }

    /// Where logs go (never the screen): `cspsync.log` in the data directory.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir().join("cspsync.log")
    }

    /// Read the settings; a missing file is the empty default (first run).
    pub fn load_settings(&self) -> Result<Settings, String> {
        let path = self.settings_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                format!(
                    "{} is not valid cspsync settings: {}; fix or delete the file and run the setup again",
                    path.display(),
                    e.message()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Read the secrets, refusing a file others can read (as ssh does with private keys).
    pub fn load_secrets(&self) -> Result<Secrets, String> {
        let path = self.secrets_path();
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Secrets::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{} can be read by other users (mode {mode:o}); cspsync will not use it. Run: chmod 600 {}",
                    path.display(),
                    path.display()
                ));
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            format!(
                "{} is not a valid cspsync secrets file: {}; delete it and sign in again",
                path.display(),
                e.message()
            )
        })
    }

    /// Write the settings atomically (a temporary file renamed over the old one: never a
    /// half-written file).
    pub fn save_settings(&self, s: &Settings) -> Result<(), String> {
        let text =
            toml::to_string_pretty(s).map_err(|e| format!("cannot write the settings: {e}"))?;
        write_atomic(&self.dir, &self.settings_path(), text.as_bytes(), 0o644)
    }

    /// Write the secrets atomically, created 0600 before any byte is written.
    pub fn save_secrets(&self, s: &Secrets) -> Result<(), String> {
        let text =
            toml::to_string_pretty(s).map_err(|e| format!("cannot write the secrets: {e}"))?;
        write_atomic(&self.dir, &self.secrets_path(), text.as_bytes(), 0o600)
    }
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".cspsync-")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // tempfile creates 0600; widen only where asked (settings), before writing.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set permissions in {}: {e}", dir.display()))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| format!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

#[cfg(test)]
mod persistence_tests {
    use super::*;

    #[test]
    fn settings_and_secrets_round_trip_with_safe_permissions() {
        let d = tempfile::tempdir().unwrap();
        let c = ConfigDir {
            dir: d.path().join("cfg"),
        };
        assert_eq!(c.load_settings().unwrap(), Settings::default());
        assert_eq!(c.load_secrets().unwrap(), Secrets::default());
        let mut s = Settings::default();
        s.distributor.account_code = "325026".into();
        s.psa.kind = PsaKindSetting::Xero;
        // Mapping decisions and sync settings survive the TOML round trip.
        use crate::domain::{CustomerOverride, ProductOverride, PsaCustomerRef, PsaProductRef};
        s.mapping.customers = vec![
            CustomerOverride {
                tenant_id: "t-1".into(),
                psa: Some(PsaCustomerRef::XeroContact("c-9".into())),
            },
            CustomerOverride {
                tenant_id: "t-2".into(),
                psa: None,
            },
        ];
        s.mapping.products = vec![ProductOverride {
            psa_product: PsaProductRef::ConnectwiseCatalogItem(731),
            stock_code: "P1Y:CFQ7TTC0LCHC:0002:1:".into(),
        }];
        s.sync.style.prorate = true;
        s.sync.price_overrides = vec![crate::domain::sync::PriceOverride {
            tenant_id: "t-1".into(),
            stock_code: "P1Y:CFQ7TTC0LCHC:0002:1:".into(),
            unit_price: rust_decimal::Decimal::new(3455, 2),
        }];
        c.save_settings(&s).unwrap();
        assert_eq!(c.load_settings().unwrap(), s);
        let sec = Secrets {
            dicker_data_access_code: Some("237082ED".into()),
            ..Secrets::default()
        };
        c.save_secrets(&sec).unwrap();
        assert_eq!(c.load_secrets().unwrap(), sec);
        assert!(!format!("{sec:?}").contains("237082ED"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(c.secrets_path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(c.secrets_path(), std::fs::Permissions::from_mode(0o644))
                .unwrap();
            let e = c.load_secrets().unwrap_err();
            assert!(e.contains("chmod 600"), "{e}");
        }
    }

    #[test]
    fn a_broken_settings_file_is_explained() {
        let d = tempfile::tempdir().unwrap();
        let c = ConfigDir {
            dir: d.path().to_path_buf(),
        };
        std::fs::write(c.settings_path(), "[psa\nkind = 3").unwrap();
        let e = c.load_settings().unwrap_err();
        assert!(e.contains("not valid cspsync settings"), "{e}");
    }
}
