//! `cspsync config show` and `cspsync doctor` (issue 3 §6): what is set up, and whether each
//! configured connection and permission still works, one line each.
//!
//! Every client comes from [`crate::connect`], exactly as the wizard and later commands build
//! them. The checks run concurrently; rotated refresh tokens (Xero rotates on every use, §7.1;
//! Microsoft may, §1.4) are written back to the secrets file so the next run still works.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::api::error::{Api, ApiError, ErrorKind};
use crate::api::xero::XeroClient;
use crate::config::{ConfigDir, PsaKindSetting, Secrets, Settings};
use crate::connect::{self, Context};
use crate::tui::app::Setup;

/// The longest one check may take (each request already has its own timeout and retries;
/// this bounds a check made of several).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Configured and working.
    Ok,
    /// Configured and not working: the doctor exits non-zero.
    Failed,
    /// Not configured, or not checkable because something it depends on failed.
    Skipped,
}

impl Status {
    pub fn mark(self) -> &'static str {
        match self {
            Status::Ok => "✓",
            Status::Failed => "✗",
            Status::Skipped => "-",
        }
    }
}

/// One line of the doctor's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub status: Status,
    /// What was found, or what is wrong and what to do (never a secret).
    pub detail: String,
}

impl Check {
    fn ok(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
        }
    }

    fn failed(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Failed,
            detail: detail.into(),
        }
    }

    fn skipped(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Skipped,
            detail: detail.into(),
        }
    }

    /// An API error as `<error>. <hint>`; the API's name is left out when the line already
    /// starts with it ("✗ Dicker Data: refused …", not "✗ Dicker Data: Dicker Data refused …").
    fn error(name: &str, e: &ApiError) -> Check {
        let text = e.to_string();
        let text = match text.strip_prefix(e.api.display_name()) {
            Some(rest) if e.api.display_name() == name => {
                // "ConnectWise Manage said: X" reads "✗ ConnectWise Manage: X".
                let rest = rest.trim_start();
                rest.strip_prefix("said:")
                    .unwrap_or(rest)
                    .trim_start()
                    .to_string()
            }
            _ => text,
        };
        Check::failed(
            name,
            format!("{}. {}", text.trim_end_matches('.'), e.hint()),
        )
    }

    /// `✓ Name: detail`.
    pub fn line(&self) -> String {
        format!("{} {}: {}", self.status.mark(), self.name, self.detail)
    }
}

/// Everything the doctor found, in a fixed order.
#[derive(Debug, Clone)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Refresh tokens that rotated while checking (persist them).
    pub rotated: Rotated,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Failed)
            .count()
    }
}

/// Refresh tokens that changed during the checks.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub microsoft: Option<String>,
    pub xero: Option<String>,
}

impl std::fmt::Debug for Rotated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotated")
            .field("microsoft", &self.microsoft.is_some())
            .field("xero", &self.xero.is_some())
            .finish()
    }
}

impl Rotated {
    pub fn is_empty(&self) -> bool {
        self.microsoft.is_none() && self.xero.is_none()
    }

    /// Write the rotated tokens into `secrets`.
    pub fn apply(&self, secrets: &mut Secrets) {
        if let Some(t) = &self.microsoft {
            secrets.microsoft_refresh_token = Some(t.clone());
        }
        if let Some(t) = &self.xero {
            secrets.xero_refresh_token = Some(t.clone());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// config show
// ---------------------------------------------------------------------------------------------

/// The text `cspsync config show` prints, or `Err` (exit 2) when a file cannot be used (a
/// secrets file others can read is refused with the chmod to run). `Ok(None)`: no settings
/// yet.
pub fn config_text(config: &ConfigDir) -> Result<Option<String>, String> {
    // The secrets file is checked first: one readable by others is a problem even before
    // the settings exist.
    let secrets = config.load_secrets()?;
    if !config.settings_path().exists() {
        return Ok(None);
    }
    let settings = config.load_settings()?;
    let body =
        toml::to_string_pretty(&settings).map_err(|e| format!("cannot show the settings: {e}"))?;
    let mut out = String::new();
    out.push_str(&format!(
        "# Settings: {}\n",
        config.settings_path().display()
    ));
    if settings.endpoints.is_none() {
        out.push_str("# Endpoints: the real services (no [endpoints] table)\n");
    }
    out.push('\n');
    out.push_str(body.trim_end());
    out.push_str("\n\n");
    out.push_str(&format!(
        "# Secrets: {}; values are never shown\n",
        secrets_file_state(config)
    ));
    out.push_str("[secrets]\n");
    for (name, value) in secret_fields(&secrets) {
        let state = if value.is_some_and(|v| !v.trim().is_empty()) {
            "[set]"
        } else {
            "[not set]"
        };
        out.push_str(&format!("{name} = {state}\n"));
    }
    Ok(Some(out))
}

fn secret_fields(s: &Secrets) -> [(&'static str, Option<&str>); 5] {
    [
        (
            "microsoft_refresh_token",
            s.microsoft_refresh_token.as_deref(),
        ),
        (
            "dicker_data_access_code",
            s.dicker_data_access_code.as_deref(),
        ),
        (
            "connectwise_private_key",
            s.connectwise_private_key.as_deref(),
        ),
        ("autotask_secret", s.autotask_secret.as_deref()),
        ("xero_refresh_token", s.xero_refresh_token.as_deref()),
    ]
}

/// `path (mode 600)` or `path (none yet)`.
fn secrets_file_state(config: &ConfigDir) -> String {
    let path = config.secrets_path();
    match std::fs::metadata(&path) {
        Ok(_meta) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                format!(
                    "{} (mode {:o})",
                    path.display(),
                    _meta.permissions().mode() & 0o777
                )
            }
            #[cfg(not(unix))]
            format!("{}", path.display())
        }
        Err(_) => format!("{} (none yet)", path.display()),
    }
}

fn not_set_up(dir: &Path) -> String {
    format!(
        "No settings in {}: the setup has not been run yet. Start it with `cspsync` (or try `cspsync --demo` first).",
        dir.display()
    )
}

/// `cspsync config show`.
pub fn config_show(explicit_dir: Option<&Path>, demo: bool) -> Result<ExitCode, String> {
    if demo && explicit_dir.is_none() {
        return Err("`config show` reads the real settings (or those in --config-dir DIR); the demo keeps its settings in a temporary directory that is gone when it ends, unless it was started with --config-dir DIR: pass that DIR".into());
    }
    let config = ConfigDir::resolve(explicit_dir)?;
    match config_text(&config)? {
        Some(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            println!("{}", not_set_up(&config.dir));
            Ok(ExitCode::from(1))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// doctor: the checks
// ---------------------------------------------------------------------------------------------

const SECRETS: &str = "Secrets file";
const SIGN_IN: &str = "Microsoft sign-in";
const PARTNER: &str = "Partner Center";
const GDAP: &str = "GDAP relationships";
const DICKER: &str = "Dicker Data";

/// The secrets file check: private, or refused with the chmod to run.
pub fn check_secrets_file(config: &ConfigDir) -> (Check, Option<Secrets>) {
    let exists = config.secrets_path().exists();
    match config.load_secrets() {
        Ok(s) if exists => (
            Check::ok(
                SECRETS,
                secrets_file_state(config) + ", readable only by you",
            ),
            Some(s),
        ),
        Ok(s) => (
            Check::skipped(
                SECRETS,
                format!(
                    "{} does not exist yet (nothing signed in)",
                    config.secrets_path().display()
                ),
            ),
            Some(s),
        ),
        Err(e) => (Check::failed(SECRETS, e), None),
    }
}

/// Run `fut`, turning a hang into a failed check.
async fn bounded<F>(name: &str, fut: F) -> Check
where
    F: std::future::Future<Output = Check>,
{
    match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(c) => c,
        Err(_) => timed_out(name),
    }
}

fn timed_out(name: &str) -> Check {
    Check::failed(
        name,
        format!(
            "no answer within {} s. Check the network connection and the service's base URL.",
            CHECK_TIMEOUT.as_secs()
        ),
    )
}

/// Every connection check, concurrently, in a fixed order: Microsoft sign-in, Partner Center,
/// GDAP relationships, Dicker Data, the PSA.
pub async fn check_connections(ctx: &Context, settings: &Settings, secrets: &Secrets) -> Report {
    let (ms, dd, (psa, xero_rt)) = tokio::join!(
        microsoft(ctx, settings, secrets),
        bounded(DICKER, dicker_data(ctx, settings, secrets)),
        psa(ctx, settings, secrets),
    );
    let (signin, partner, gdap, ms_rt) = ms;
    Report {
        checks: vec![signin, partner, gdap, dd, psa],
        rotated: Rotated {
            microsoft: ms_rt,
            xero: xero_rt,
        },
    }
}

/// Microsoft: the refresh token works (Graph /organization, §2.1) in the configured tenant;
/// then Partner Center (a customers page of one, §3.2, and the MPN profile, §3.4) and the GDAP
/// relationships (§2.6) concurrently. Returns the rotated refresh token, if it changed.
async fn microsoft(
    ctx: &Context,
    settings: &Settings,
    secrets: &Secrets,
) -> (Check, Check, Check, Option<String>) {
    let Ok(session) = connect::session(ctx, settings, secrets) else {
        return (
            Check::skipped(
                SIGN_IN,
                "not signed in (the Sign in tab of `cspsync` does it)",
            ),
            Check::skipped(PARTNER, "not checked: it needs the Microsoft sign-in"),
            Check::skipped(GDAP, "not checked: it needs the Microsoft sign-in"),
            None,
        );
    };
    let graph = connect::graph(ctx, &session);
    let ms = &settings.microsoft;
    let org = tokio::time::timeout(CHECK_TIMEOUT, graph.organization()).await;
    let (signin, go_on) = match org {
        Err(_) => (timed_out(SIGN_IN), false),
        Ok(Err(e)) => {
            // A refused refresh token fails everything after it: say so once.
            let go_on = e.api != Api::Entra;
            (Check::error(SIGN_IN, &e), go_on)
        }
        Ok(Ok(org)) => {
            let name = org.display_name.clone().unwrap_or_else(|| org.id.clone());
            if !ms.tenant_id.trim().is_empty() && !ms.tenant_id.trim().eq_ignore_ascii_case(&org.id)
            {
                let want = if ms.tenant_name.is_empty() {
                    ms.tenant_id.clone()
                } else {
                    format!("{} ({})", ms.tenant_name, ms.tenant_id)
                };
                (
                    Check::failed(
                        SIGN_IN,
                        format!(
                            "signed in to {name} ({}), but the settings are for {want}. Sign in again with an account of {}.",
                            org.id,
                            if ms.tenant_name.is_empty() {
                                &ms.tenant_id
                            } else {
                                &ms.tenant_name
                            }
                        ),
                    ),
                    false,
                )
            } else {
                let who = if ms.setup_user_name.trim().is_empty() {
                    "signed in".to_string()
                } else {
                    ms.setup_user_name.trim().to_string()
                };
                let domain = org
                    .default_domain()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                (Check::ok(SIGN_IN, format!("{who} in {name}{domain}")), true)
            }
        }
    };
    let (partner, gdap) = if go_on {
        tokio::join!(
            bounded(PARTNER, partner_center(ctx, settings, &session)),
            bounded(GDAP, gdap_check(&graph)),
        )
    } else {
        (
            Check::skipped(PARTNER, "not checked: the Microsoft sign-in failed"),
            Check::skipped(GDAP, "not checked: the Microsoft sign-in failed"),
        )
    };
    let now = session.refresh_token().secret().clone();
    let rotated = (secrets.microsoft_refresh_token.as_deref() != Some(now.as_str())).then_some(now);
    (signin, partner, gdap, rotated)
}

async fn partner_center(
    ctx: &Context,
    settings: &Settings,
    session: &crate::auth::entra::Session,
) -> Check {
    let pc = connect::partner_center(ctx, session);
    let mpn = settings.distributor.mpn_id.trim();
    let customers = async {
        let mut pager = pc.customers_pager(1)?;
        pager.next_page().await
    };
    let profile = async {
        if mpn.is_empty() {
            Ok(None)
        } else {
            pc.mpn_profile(Some(mpn)).await.map(Some)
        }
    };
    let (customers, profile) = tokio::join!(customers, profile);
    let found = match customers {
        Ok(page) => page.map(|p| p.len()).unwrap_or(0),
        Err(e) => return Check::error(PARTNER, &e),
    };
    let customers_text = if found == 0 {
        "authorised, but no customers are listed (check that this is the CSP partner tenant)"
            .to_string()
    } else {
        match settings.partner_center.customers_found {
            Some(n) => format!("authorised, customers readable ({n} at setup)"),
            None => "authorised, customers readable".to_string(),
        }
    };
    match profile {
        Ok(None) => Check::ok(
            PARTNER,
            format!("{customers_text}; no MPN ID set (the Distributor tab sets it)"),
        ),
        Ok(Some(p)) if p.mpn_id.trim() == mpn => Check::ok(
            PARTNER,
            format!(
                "{customers_text}; MPN ID {mpn} is {}",
                p.partner_name.as_deref().unwrap_or("a known partner")
            ),
        ),
        Ok(Some(p)) => Check::failed(
            PARTNER,
            format!(
                "asked for MPN ID {mpn} and Partner Center answered with {}. Check the MPN ID on the Distributor tab (Partner Center → Account settings → Identifiers).",
                p.mpn_id
            ),
        ),
        Err(e) if e.kind == ErrorKind::NotFound => Check::failed(
            PARTNER,
            format!(
                "{customers_text}, but no partner has MPN ID {mpn}. Check the MPN ID on the Distributor tab (Partner Center → Account settings → Identifiers)."
            ),
        ),
        Err(e) => Check::error(PARTNER, &e),
    }
}

async fn gdap_check(graph: &crate::api::graph::GraphClient) -> Check {
    match graph.gdap_relationships().await {
        Ok(rels) => {
            let active = rels.iter().filter(|r| r.is_active()).count();
            let total = rels.len();
            if active == 0 {
                Check::ok(
                    GDAP,
                    format!(
                        "readable; none of {total} is active, so no customer's users and licences can be read (approve GDAP relationships in Partner Center)"
                    ),
                )
            } else {
                Check::ok(GDAP, format!("{active} active (of {total})"))
            }
        }
        Err(e) => Check::error(GDAP, &e),
    }
}

/// Dicker Data: an AccessKey is granted for the Account Code and Access Code (§4.2).
async fn dicker_data(ctx: &Context, settings: &Settings, secrets: &Secrets) -> Check {
    let account = settings.distributor.account_code.trim();
    let has_code = secrets
        .dicker_data_access_code
        .as_deref()
        .is_some_and(|s| !s.trim().is_empty());
    if account.is_empty() && !has_code {
        return Check::skipped(
            DICKER,
            "not configured (the Distributor tab of `cspsync` sets it up)",
        );
    }
    let client = match connect::dicker_data(ctx, settings, secrets) {
        Ok(c) => c,
        Err(e) => return Check::error(DICKER, &e),
    };
    match client.test_connection().await {
        Ok(expires) => Check::ok(
            DICKER,
            format!(
                "account {account}, AccessKey granted (valid until {})",
                expires.with_timezone(&chrono::Local).format("%H:%M")
            ),
        ),
        Err(e) => Check::error(DICKER, &e),
    }
}

/// The configured PSA; for Xero also the rotated refresh token.
async fn psa(ctx: &Context, settings: &Settings, secrets: &Secrets) -> (Check, Option<String>) {
    match settings.psa.kind {
        PsaKindSetting::None => (
            Check::skipped(
                "PSA",
                "not configured (the PSA tab of `cspsync` sets up ConnectWise, Autotask or Xero)",
            ),
            None,
        ),
        PsaKindSetting::ConnectWise => (
            bounded(
                Api::ConnectWise.display_name(),
                connectwise(ctx, settings, secrets),
            )
            .await,
            None,
        ),
        PsaKindSetting::Autotask => (
            bounded(
                Api::Autotask.display_name(),
                autotask(ctx, settings, secrets),
            )
            .await,
            None,
        ),
        PsaKindSetting::Xero => xero(ctx, settings, secrets).await,
    }
}

fn psa_not_configured(api: Api) -> Check {
    Check::skipped(
        api.display_name(),
        "not configured (the PSA tab of `cspsync` sets it up)",
    )
}

/// ConnectWise: the companies count (§5.2 `/count`).
async fn connectwise(ctx: &Context, settings: &Settings, secrets: &Secrets) -> Check {
    let name = Api::ConnectWise.display_name();
    let cw = &settings.psa.connectwise;
    if cw.company_id.trim().is_empty()
        && cw.public_key.trim().is_empty()
        && secrets.connectwise_private_key.is_none()
    {
        return psa_not_configured(Api::ConnectWise);
    }
    let client = match connect::connectwise(ctx, settings, secrets) {
        Ok(c) => c,
        Err(e) => return Check::error(name, &e),
    };
    match client.count("company/companies", None).await {
        Ok(n) => Check::ok(
            name,
            format!("company {}, {n} companies readable", cw.company_id.trim()),
        ),
        Err(e) => Check::error(name, &e),
    }
}

/// Autotask: the API user's zone (discovered again, §6.1, and compared with the saved one)
/// and the companies count (§6.2 `/query/count`).
async fn autotask(ctx: &Context, settings: &Settings, secrets: &Secrets) -> Check {
    let name = Api::Autotask.display_name();
    let at = &settings.psa.autotask;
    if at.username.trim().is_empty()
        && at.integration_code.trim().is_empty()
        && secrets.autotask_secret.is_none()
    {
        return psa_not_configured(Api::Autotask);
    }
    // Discover the zone afresh: the saved one may be stale.
    let mut fresh = settings.clone();
    fresh.psa.autotask.zone_url.clear();
    let client = match connect::autotask(ctx, &fresh, secrets).await {
        Ok(c) => c,
        Err(e) => return Check::error(name, &e),
    };
    let (zone_name, zone_url) = client
        .zone()
        .map(|z| (z.zone_name.clone(), z.url.clone()))
        .unwrap_or_default();
    let saved = at.zone_url.trim();
    let norm = |s: &str| s.trim().trim_end_matches('/').to_ascii_lowercase();
    if !saved.is_empty() && norm(saved) != norm(&zone_url) {
        return Check::failed(
            name,
            format!(
                "the API user's zone is now {zone_name} ({zone_url}) but the settings say {saved}. Run Test connection on the PSA tab to save the new zone."
            ),
        );
    }
    match client.count("Companies", &[]).await {
        Ok(n) => {
            let zone = if zone_name.is_empty() {
                zone_url
            } else {
                zone_name
            };
            Check::ok(name, format!("zone {zone}, {n} companies readable"))
        }
        Err(e) => Check::error(name, &e),
    }
}

/// Xero: the connections (§7.2) include the configured organisation, and its contact (§7.4)
/// and accounts (§7.5) still exist. Xero rotates the refresh token on use: the new one is
/// returned whatever the outcome (the old one stops working soon, §7.1).
async fn xero(ctx: &Context, settings: &Settings, secrets: &Secrets) -> (Check, Option<String>) {
    let x = &settings.psa.xero;
    if secrets.xero_refresh_token.is_none() && x.tenant_id.trim().is_empty() {
        return (psa_not_configured(Api::Xero), None);
    }
    let (client, session) = match connect::xero(ctx, settings, secrets) {
        Ok(c) => c,
        Err(e) => return (Check::error(Api::Xero.display_name(), &e), None),
    };
    let check = bounded(Api::Xero.display_name(), xero_checks(&client, settings)).await;
    let now = session.refresh_token().secret().clone();
    let rotated = (secrets.xero_refresh_token.as_deref() != Some(now.as_str())).then_some(now);
    (check, rotated)
}

async fn xero_checks(client: &XeroClient, settings: &Settings) -> Check {
    let name = Api::Xero.display_name();
    let x = &settings.psa.xero;
    let connections = match client.connections().await {
        Ok(c) => c,
        Err(e) => return Check::error(name, &e),
    };
    let tenant = x.tenant_id.trim();
    if tenant.is_empty() {
        return Check::failed(
            name,
            format!(
                "signed in ({} organisations connected) but no organisation is chosen. Choose one on the PSA tab.",
                connections.len()
            ),
        );
    }
    let Some(conn) = connections
        .iter()
        .find(|c| c.tenant_id.trim().eq_ignore_ascii_case(tenant))
    else {
        let org = if x.tenant_name.is_empty() {
            tenant.to_string()
        } else {
            x.tenant_name.clone()
        };
        return Check::failed(
            name,
            format!(
                "the organisation {org} is no longer connected to cspsync. Sign in to Xero again on the PSA tab and choose it."
            ),
        );
    };
    let org = conn
        .tenant_name
        .clone()
        .unwrap_or_else(|| x.tenant_name.clone());
    let contact_id = x.contact_id.trim();
    let contact = async {
        if contact_id.is_empty() {
            return Ok(None);
        }
        // Only a GUID goes into the where clause (§7.4); anything else cannot name a contact.
        let Ok(id) = uuid::Uuid::parse_str(contact_id) else {
            return Ok(Some(Vec::new()));
        };
        let filter = format!("ContactID==Guid(\"{id}\")");
        client.contacts(tenant, Some(&filter)).await.map(Some)
    };
    let (contact, accounts) = tokio::join!(contact, client.accounts(tenant, None));
    let mut problems = Vec::new();
    let contact_name = if x.contact_name.is_empty() {
        contact_id.to_string()
    } else {
        x.contact_name.clone()
    };
    match contact {
        Err(e) => return Check::error(name, &e),
        Ok(None) => problems.push("no contact is chosen".to_string()),
        Ok(Some(found)) if found.is_empty() => {
            problems.push(format!("the contact {contact_name} no longer exists"));
        }
        Ok(Some(_)) => {}
    }
    let accounts = match accounts {
        Ok(a) => a,
        Err(e) => return Check::error(name, &e),
    };
    let mut check_account =
        |what: &str, code: &str, fits: fn(&crate::api::xero::Account) -> bool| {
            let code = code.trim();
            if code.is_empty() {
                problems.push(format!("no {what} account is chosen"));
                return;
            }
            match accounts
                .iter()
                .find(|a| a.code.as_deref().is_some_and(|c| c.trim() == code))
            {
                None => problems.push(format!("the {what} account {code} no longer exists")),
                Some(a) if !a.is_active() => {
                    problems.push(format!("the {what} account {code} is archived"));
                }
                Some(a) if !fits(a) => {
                    problems.push(format!("the account {code} is no longer an {what} account"));
                }
                Some(_) => {}
            }
        };
    check_account(
        "expense",
        &x.expense_account_code,
        crate::api::xero::Account::is_expense_like,
    );
    check_account(
        "revenue",
        &x.revenue_account_code,
        crate::api::xero::Account::is_revenue_like,
    );
    if problems.is_empty() {
        Check::ok(
            name,
            format!(
                "{org}; contact {contact_name}; expense account {}, revenue account {}",
                x.expense_account_code.trim(),
                x.revenue_account_code.trim()
            ),
        )
    } else {
        Check::failed(
            name,
            format!(
                "in {org}, {}. Choose again on the PSA tab.",
                problems.join(", ")
            ),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// doctor: the command
// ---------------------------------------------------------------------------------------------

/// `cspsync doctor`: every check in `config`, printed one line each; persists rotated tokens.
/// Exit 0 when nothing configured failed, 1 otherwise.
pub async fn doctor(config: &ConfigDir) -> Result<ExitCode, String> {
    if !config.settings_path().exists() {
        // A refused secrets file is still worth saying first.
        let (secrets_check, _) = check_secrets_file(config);
        if secrets_check.status == Status::Failed {
            println!("{}", secrets_check.line());
        }
        println!("{}", not_set_up(&config.dir));
        return Ok(ExitCode::from(1));
    }
    let settings = config.load_settings()?;
    let (secrets_check, secrets) = check_secrets_file(config);
    let Some(secrets) = secrets else {
        println!("{}", secrets_check.line());
        println!(
            "The connection checks need the secrets file: fix it (above) and run `cspsync doctor` again."
        );
        return Ok(ExitCode::from(1));
    };
    let ctx = Context::new(&settings);
    let mut report = check_connections(&ctx, &settings, &secrets).await;
    report.checks.push(secrets_check);
    if !report.rotated.is_empty() {
        // Re-read, so only the rotated tokens change.
        let saved = config.load_secrets().and_then(|mut s| {
            report.rotated.apply(&mut s);
            config.save_secrets(&s)
        });
        if let Err(e) = saved {
            report.checks.push(Check::failed(
                SECRETS,
                format!(
                    "a renewed sign-in could not be saved ({e}); the next run may need a new sign-in"
                ),
            ));
        }
    }
    for c in &report.checks {
        println!("{}", c.line());
    }
    let failed = report.failed();
    if failed == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{failed} check{} failed.",
            if failed == 1 { "" } else { "s" }
        );
        Ok(ExitCode::from(1))
    }
}

/// `cspsync doctor` from the command line (`--demo`: against an in-process sim with the whole
/// setup completed in a temporary directory).
pub async fn doctor_main(cli: &crate::cli::Cli) -> Result<ExitCode, String> {
    if !cli.demo {
        let config = ConfigDir::resolve(cli.config_dir.as_deref())?;
        return doctor(&config).await;
    }
    let mut world = crate::run::build_world(&cli.world)?;
    // The demo signs in at once (the device code is approved, then polled every second).
    world.app.device_code_interval_secs = 1;
    let faults = crate::run::fault_spec(&cli.world)?;
    let handle = crate::sim::start(
        world.clone(),
        faults,
        "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
    )
    .await
    .map_err(|e| format!("cannot start the simulated world: {e}"))?;
    let tmp =
        tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let config = ConfigDir {
        dir: tmp.path().to_path_buf(),
    };
    eprintln!("demo: setting up against the simulated world in a temporary directory…");
    let setup = complete_demo_setup(&handle, &world).await?;
    config.save_settings(&setup.settings)?;
    config.save_secrets(&setup.secrets)?;
    let code = doctor(&config).await;
    drop(handle);
    code
}

fn api_err(e: ApiError) -> String {
    format!("{e}. {}", e.hint())
}

/// The demo's setup with every step completed, as a newcomer would finish it in the wizard:
/// [`crate::run::demo_setup`]'s typed values, signed in to Microsoft (device code approved
/// through the sim) and Xero (the sim's automatic consent), the MSP details from Graph, the
/// Partner Center customers counted, and a Xero organisation, contact and accounts chosen from
/// the lists Xero returns.
pub async fn complete_demo_setup(
    sim: &crate::sim::SimHandle,
    world: &crate::sim::World,
) -> Result<Setup, String> {
    let urls = sim.urls();
    let mut setup = crate::run::demo_setup(world, &urls)?;
    let ctx = Context::new(&setup.settings);
    let now = chrono::Utc::now().to_rfc3339();

    // 1. Sign in.
    let session = crate::demo::sign_in_microsoft(sim, world)
        .await
        .map_err(api_err)?;
    let org = connect::graph(&ctx, &session)
        .organization()
        .await
        .map_err(api_err)?;
    let ms = &mut setup.settings.microsoft;
    ms.tenant_id = org.id.clone();
    ms.tenant_name = org.display_name.clone().unwrap_or_default();
    ms.domain = org.default_domain().unwrap_or_default().to_string();
    if let Some(admin) = crate::sim::entra::default_admin(world) {
        ms.setup_user_oid = admin.id.clone();
        ms.setup_user_name = admin.user_principal_name.clone();
    }

    // 2. Distributor (the typed values are the world's; tested below by the doctor).
    setup.settings.distributor.verified_at = Some(now.clone());

    // 3. Partner Center.
    let customers = connect::partner_center(&ctx, &session)
        .customers(100)
        .await
        .map_err(api_err)?;
    setup.settings.partner_center.authorised_at = Some(now.clone());
    setup.settings.partner_center.customers_found = Some(customers.len() as u64);
    setup.secrets.microsoft_refresh_token = Some(session.refresh_token().secret().clone());

    // 4. PSA: Xero.
    let (client, xero_session) = crate::demo::xero_auto_consent(
        connect::xero_auth(&ctx, &setup.settings),
        ctx.endpoints.xero_api.clone(),
        ctx.http.clone(),
    )
    .await
    .map_err(api_err)?;
    let connections = client.connections().await.map_err(api_err)?;
    let conn = connections
        .iter()
        .find(|c| c.is_organisation())
        .or_else(|| connections.first())
        .ok_or("demo: no Xero organisation is connected")?;
    let tenant = conn.tenant_id.clone();
    let (contacts, accounts) = tokio::join!(
        client.contacts(&tenant, None),
        client.accounts(&tenant, None)
    );
    let contacts = contacts.map_err(api_err)?;
    let accounts = accounts.map_err(api_err)?;
    let contact = contacts
        .iter()
        .find(|c| {
            c.name
                .as_deref()
                .is_some_and(|n| n.to_ascii_lowercase().contains("dicker"))
        })
        .or_else(|| contacts.first())
        .ok_or("demo: the Xero organisation has no contacts")?;
    let code_of = |list: Vec<&crate::api::xero::Account>, what: &str| {
        list.first()
            .and_then(|a| a.code.clone())
            .ok_or(format!("demo: the Xero organisation has no {what} account"))
    };
    let expense = code_of(crate::api::xero::expense_accounts(&accounts), "expense")?;
    let revenue = code_of(crate::api::xero::revenue_accounts(&accounts), "revenue")?;
    let x = &mut setup.settings.psa.xero;
    x.tenant_id = tenant;
    x.tenant_name = conn.tenant_name.clone().unwrap_or_default();
    x.contact_id = contact.contact_id.clone().unwrap_or_default();
    x.contact_name = contact.name.clone().unwrap_or_default();
    x.expense_account_code = expense;
    x.revenue_account_code = revenue;
    setup.settings.psa.kind = PsaKindSetting::Xero;
    setup.settings.psa.verified_at = Some(now);
    setup.secrets.xero_refresh_token = Some(xero_session.refresh_token().secret().clone());
    Ok(setup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_a_mark_a_name_and_no_repeated_api_name() {
        let e = ApiError::new(
            Api::DickerData,
            ErrorKind::Unauthorized,
            "refused the Account Code and Access Code",
        )
        .with_status(401);
        let c = Check::error(DICKER, &e);
        assert_eq!(c.status, Status::Failed);
        let line = c.line();
        assert!(
            line.starts_with("✗ Dicker Data: refused the Account Code"),
            "{line}"
        );
        assert!(line.contains("(HTTP 401)"), "{line}");
        assert!(line.contains("account manager"), "the hint: {line}");
        // Another API's error under this name keeps its own name.
        let g = ApiError::new(Api::Graph, ErrorKind::Forbidden, "refused the request");
        assert!(
            Check::error(GDAP, &g)
                .line()
                .starts_with("✗ GDAP relationships: Microsoft Graph refused"),
        );
        assert_eq!(
            Check::skipped("PSA", "not configured").line(),
            "- PSA: not configured"
        );
    }

    #[test]
    fn config_text_lists_secrets_without_values() {
        let d = tempfile::tempdir().unwrap();
        let c = ConfigDir {
            dir: d.path().to_path_buf(),
        };
        assert_eq!(c.load_settings().unwrap(), Settings::default());
        assert!(config_text(&c).unwrap().is_none(), "no settings yet");
        let mut s = Settings::default();
        s.distributor.account_code = "325026".into();
        c.save_settings(&s).unwrap();
        c.save_secrets(&Secrets {
            autotask_secret: Some("hunter2-autotask".into()),
            ..Secrets::default()
        })
        .unwrap();
        let t = config_text(&c).unwrap().unwrap();
        assert!(t.contains("account_code = \"325026\""), "{t}");
        assert!(t.contains("autotask_secret = [set]"), "{t}");
        assert!(t.contains("xero_refresh_token = [not set]"), "{t}");
        assert!(!t.contains("hunter2"), "{t}");
    }

    #[test]
    fn rotated_tokens_replace_only_what_changed() {
        let mut s = Secrets {
            microsoft_refresh_token: Some("old-ms".into()),
            xero_refresh_token: Some("old-xero".into()),
            ..Secrets::default()
        };
        let r = Rotated {
            microsoft: None,
            xero: Some("new-xero".into()),
        };
        assert!(!format!("{r:?}").contains("new-xero"));
        r.apply(&mut s);
        assert_eq!(s.microsoft_refresh_token.as_deref(), Some("old-ms"));
        assert_eq!(s.xero_refresh_token.as_deref(), Some("new-xero"));
    }
}
