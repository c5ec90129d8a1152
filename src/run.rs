//! Running a parsed command line.

use std::process::ExitCode;

use crate::cli::{
    AuditArgs, AuditFormat, BenchCommand, BenchFetchArgs, BenchSyncArgs, Cli, Command,
    ConfigCommand, FetchArgs, PlanFormat, ReconcileArgs, ReconcileFormat, SimArgs, SyncArgs,
    WorldArgs,
};
use crate::config::Endpoints;
use crate::sim::{self, FaultSpec, World};

/// Run a command; an `Err` is one sentence for the person at the terminal.
pub fn run(cli: Cli) -> Result<ExitCode, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    match cli.command {
        Some(Command::Sim(args)) => rt.block_on(serve_sim(&cli.world, args)),
        Some(Command::Fetch(args)) => {
            if !cli.demo {
                return Err("`fetch` needs settings from the setup wizard, which is not built yet; run `cspsync --demo fetch` to fetch from the simulated world".into());
            }
            rt.block_on(demo_fetch(&cli.world, args))
        }
        Some(Command::Bench(BenchCommand::Fetch(args))) => {
            rt.block_on(bench_fetch(&cli.world, args))
        }
        Some(Command::Config(ConfigCommand::Show)) => {
            crate::doctor::config_show(cli.config_dir.as_deref(), cli.demo)
        }
        Some(Command::Doctor) => rt.block_on(crate::doctor::doctor_main(&cli)),
        Some(Command::Reconcile(ref args)) => rt.block_on(reconcile_main(&cli, args)),
        Some(Command::Sync(ref args)) => rt.block_on(sync_main(&cli, args)),
        Some(Command::Audit(ref args)) => audit_main(&cli, args),
        Some(Command::Bench(BenchCommand::Sync(ref args))) => {
            rt.block_on(bench_sync(&cli.world, args))
        }
        None => rt.block_on(tui_main(&cli)),
    }
}

/// The world the options ask for: a dataset file, a generated world, or the shipped demo.
pub fn build_world(args: &WorldArgs) -> Result<World, String> {
    let mut world = if let Some(path) = &args.dataset {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the dataset {}: {e}", path.display()))?;
        World::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        let today = chrono::Utc::now().date_naive();
        let opts = sim::generate::GenOptions {
            customers: args.customers.unwrap_or(12),
            seed: args.seed.unwrap_or(42),
            today,
        };
        sim::generate::generate(&opts)
    };
    if let Some(n) = args.msp_users {
        set_msp_users(&mut world, n, args.seed.unwrap_or(42));
    }
    Ok(world)
}

/// `--msp-users N`: the MSP tenant gets `n` staff users, generated (deterministic in `seed`),
/// keeping its admin (the account the demo signs in as) first.
pub fn set_msp_users(world: &mut World, n: usize, seed: u64) {
    let msp = &mut world.msp;
    let domain_of = |initial: bool| {
        msp.verified_domains
            .iter()
            .find(|d| if initial { d.is_initial } else { d.is_default })
            .map(|d| d.name.clone())
    };
    let initial = domain_of(true).unwrap_or_else(|| "msp.onmicrosoft.com".into());
    let domain = domain_of(false).unwrap_or_else(|| initial.clone());
    let mut rng = sim::util::Rng::new(seed ^ 0x5354_4146_4655_5345);
    // A few spare users, in case some collide with the world's admin.
    let mut staff = sim::generate::staff_users(&mut rng, n.saturating_add(4), &domain, &initial);
    if let Some(admin) = msp.users.first().cloned() {
        // The generated admin goes: the world's own stays first.
        if !staff.is_empty() {
            staff.remove(0);
        }
        staff.retain(|u| {
            !u.user_principal_name
                .eq_ignore_ascii_case(&admin.user_principal_name)
                && u.id != admin.id
        });
        staff.insert(0, admin);
    }
    staff.truncate(n);
    msp.users = staff;
}

pub fn fault_spec(args: &WorldArgs) -> Result<FaultSpec, String> {
    match &args.faults {
        Some(s) => FaultSpec::parse(s).map_err(|e| format!("--faults: {e}")),
        None => Ok(FaultSpec::default()),
    }
}

async fn serve_sim(world_args: &WorldArgs, args: SimArgs) -> Result<ExitCode, String> {
    let world = build_world(world_args)?;
    let faults = fault_spec(world_args)?;
    let handle = sim::start(world, faults, args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let urls = handle.urls();
    for (name, url) in urls.lines() {
        println!("{name} {url}");
    }
    if let Some(path) = &args.write_config {
        let endpoints = Endpoints::from_sim(&urls).map_err(|e| format!("bad sim URL: {e}"))?;
        std::fs::write(path, endpoints.to_toml_snippet())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote the endpoints to {}", path.display());
    }
    eprintln!("serving the simulated world; Ctrl-C stops it");
    wait_for_shutdown().await;
    handle.stop();
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn demo_fetch(world_args: &WorldArgs, args: FetchArgs) -> Result<ExitCode, String> {
    use crate::engine::fetch::{self, FetchProgress, PsaSnapshot};
    let mut world = build_world(world_args)?;
    // The demo signs in at once: the sim approves the device code, polled every second.
    world.app.device_code_interval_secs = 1;
    let faults = fault_spec(world_args)?;
    let handle = sim::start(
        world.clone(),
        faults,
        "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
    )
    .await
    .map_err(|e| format!("cannot start the simulated world: {e}"))?;
    eprintln!("signing in to the simulated world…");
    let sources = crate::demo::connect(&handle, &world, args.psa)
        .await
        .map_err(|e| format!("{e}. {}", e.hint()))?;
    let (tx, _rx) = tokio::sync::watch::channel(FetchProgress::default());
    let t0 = std::time::Instant::now();
    let snap = fetch::fetch(&sources, &tx)
        .await
        .map_err(|e| format!("{e}. {}", e.hint()))?;
    let elapsed = t0.elapsed();
    println!(
        "{:<36} {:>5} {:>6} {:>7} {:>6}",
        "customer", "subs", "seats", "graph", "dicker"
    );
    let dd = snap
        .dicker_data
        .as_ref()
        .map_err(|e| format!("{e}. {}", e.hint()))?;
    for c in &snap.customers {
        let name = c
            .customer
            .company_profile
            .as_ref()
            .and_then(|p| p.company_name.clone())
            .unwrap_or_else(|| c.customer.id.clone());
        let (subs, seats) = match &c.subscriptions {
            Ok(s) => (
                s.len().to_string(),
                s.iter()
                    .map(|x| u64::from(x.quantity))
                    .sum::<u64>()
                    .to_string(),
            ),
            Err(_) => ("error".into(), "-".into()),
        };
        let graph = match &c.graph {
            Ok(g) => format!("{} skus", g.skus.len()),
            Err(_) => "no GDAP".into(),
        };
        let lines = dd
            .iter()
            .filter(|l| {
                l.tenant_id
                    .as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case(&c.customer.id))
            })
            .count();
        println!(
            "{:<36} {:>5} {:>6} {:>7} {:>6}",
            truncate(&name, 36),
            subs,
            seats,
            graph,
            lines
        );
    }
    match &snap.psa {
        Some(Ok(PsaSnapshot::ConnectWise(cw))) => println!(
            "ConnectWise: {} companies, {} agreements, {} additions, {} catalog items",
            cw.companies.len(),
            cw.agreements.len(),
            cw.additions.values().map(Vec::len).sum::<usize>(),
            cw.catalog.len()
        ),
        Some(Ok(PsaSnapshot::Autotask(at))) => println!(
            "Autotask: {} companies, {} contracts, {} contract services, {} current unit records",
            at.companies.len(),
            at.contracts.len(),
            at.contract_services.len(),
            at.current_units.len()
        ),
        Some(Ok(PsaSnapshot::Xero(x))) => println!(
            "Xero: {} contacts, {} accounts, {} invoices created by cspsync",
            x.contacts.len(),
            x.accounts.len(),
            x.invoices.len()
        ),
        Some(Err(e)) => println!("PSA: {e}. {}", e.hint()),
        None => {}
    }
    println!(
        "{} customers, {} Dicker Data lines, fetched in {:.2} s",
        snap.customers.len(),
        dd.len(),
        elapsed.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

async fn bench_fetch(world_args: &WorldArgs, args: BenchFetchArgs) -> Result<ExitCode, String> {
    use crate::demo::PsaKind;
    use crate::engine::bench;
    if world_args.dataset.is_some() || world_args.faults.is_some() {
        return Err(
            "bench fetch builds its own world and faults; use --customers, --seed and --latency-ms"
                .into(),
        );
    }
    let opts = bench::BenchOptions {
        customers: world_args.customers.unwrap_or(1000),
        seed: world_args.seed.unwrap_or(42),
        latency: std::time::Duration::from_millis(args.latency_ms),
        runs: args.runs,
        psas: match args.psa {
            Some(p) => vec![p],
            None => vec![PsaKind::ConnectWise, PsaKind::Autotask, PsaKind::Xero],
        },
    };
    eprintln!(
        "bench fetch: generating {} customers (seed {}), sim latency {} ms…",
        opts.customers, opts.seed, args.latency_ms
    );
    bench::run(&opts, |r| print!("{}", r.render())).await?;
    Ok(ExitCode::SUCCESS)
}

/// Colours unless `--no-color` or NO_COLOR (set and not empty, no-color.org).
pub fn use_color(no_color_flag: bool) -> bool {
    !no_color_flag && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Logs go to a file, never to the screen.
fn init_file_log(path: &std::path::Path) {
    use tracing_subscriber::EnvFilter;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let filter = EnvFilter::try_from_env("CSPSYNC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}

/// The demo's setup: the sim's endpoints, and what a technician would type from the world's
/// credentials (the steps are done only once each is tested in the app).
pub fn demo_setup(world: &World, urls: &sim::Urls) -> Result<crate::tui::app::Setup, String> {
    use crate::config::{PsaKindSetting, Secrets, Settings};
    let endpoints = Endpoints::from_sim(urls).map_err(|e| format!("bad sim URL: {e}"))?;
    let mut s = Settings {
        endpoints: Some(endpoints),
        ..Settings::default()
    };
    s.microsoft.client_id = world.app.client_id.clone();
    s.distributor.account_code = world.dicker_data.account_code.clone();
    s.distributor.mpn_id = world.msp.mpn_id.clone();
    s.psa.kind = PsaKindSetting::None;
    let cw = &world.connectwise;
    s.psa.connectwise.company_id = cw.company_id.clone();
    s.psa.connectwise.site = "api-au.myconnectwise.net".into();
    s.psa.connectwise.public_key = cw.public_key.clone();
    s.psa.connectwise.client_id = cw.client_ids.first().cloned().unwrap_or_default();
    let at = &world.autotask;
    s.psa.autotask.username = at.username.clone();
    s.psa.autotask.integration_code = at.integration_codes.first().cloned().unwrap_or_default();
    s.psa.xero.client_id = world.app.xero_client_id.clone();
    let secrets = Secrets {
        dicker_data_access_code: Some(world.dicker_data.access_code.clone()),
        connectwise_private_key: Some(cw.private_key.clone()),
        autotask_secret: Some(at.secret.clone()),
        ..Secrets::default()
    };
    Ok(crate::tui::app::Setup {
        settings: s,
        secrets,
    })
}

/// Where the demo keeps its settings: `--config-dir DIR` given on the command line (the
/// `CSPSYNC_CONFIG_DIR` variable names the real settings and is not used by the demo), else a
/// temporary directory removed when the demo ends (returned to be kept alive until then).
fn demo_config_dir(
    cli: &Cli,
) -> Result<(crate::config::ConfigDir, Option<tempfile::TempDir>), String> {
    use crate::config::ConfigDir;
    let from_env = std::env::var_os("CSPSYNC_CONFIG_DIR").map(std::path::PathBuf::from);
    let explicit = cli
        .config_dir
        .as_ref()
        .filter(|d| from_env.as_ref() != Some(*d));
    let Some(dir) = explicit else {
        let tmp =
            tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let config = ConfigDir {
            dir: tmp.path().to_path_buf(),
        };
        return Ok((config, Some(tmp)));
    };
    let config = ConfigDir { dir: dir.clone() };
    std::fs::create_dir_all(&config.dir)
        .map_err(|e| format!("cannot create {}: {e}", config.dir.display()))?;
    // Never run the demo over real settings: a demo's endpoints are the sim's, on loopback.
    if config.settings_path().exists() {
        let settings = config.load_settings()?;
        let simulated = settings.endpoints.as_ref().is_some_and(|e| {
            matches!(
                e.entra.host_str(),
                Some("127.0.0.1" | "localhost" | "[::1]")
            )
        });
        if !simulated {
            return Err(format!(
                "{} holds settings for the real services; the demo will not touch them. Give --demo an empty directory (or one an earlier demo used)",
                config.dir.display()
            ));
        }
    }
    Ok((config, None))
}

/// The demo's setup: what an earlier demo saved in `config` (pointed at this run's sim, whose
/// world is generated the same but whose sessions are new: the saved ones are dropped, so the
/// person signs in again — `true` then), else [`demo_setup`].
fn demo_resume(
    config: &crate::config::ConfigDir,
    world: &World,
    urls: &sim::Urls,
) -> Result<(crate::tui::app::Setup, bool), String> {
    if !config.settings_path().exists() {
        return Ok((demo_setup(world, urls)?, false));
    }
    let mut settings = config.load_settings()?;
    let mut secrets = config.load_secrets()?;
    settings.endpoints = Some(Endpoints::from_sim(urls).map_err(|e| format!("bad sim URL: {e}"))?);
    let had_session =
        secrets.microsoft_refresh_token.is_some() || secrets.xero_refresh_token.is_some();
    // The earlier sim's tokens mean nothing to this one.
    secrets.microsoft_refresh_token = None;
    secrets.xero_refresh_token = None;
    settings.microsoft.signed_in_oid.clear();
    settings.microsoft.signed_in_name.clear();
    tracing::info!(
        dir = %config.dir.display(),
        "demo: resumed the saved settings; the earlier sessions were dropped"
    );
    Ok((crate::tui::app::Setup { settings, secrets }, had_session))
}

async fn tui_main(cli: &Cli) -> Result<ExitCode, String> {
    use crate::config::ConfigDir;
    use crate::tui::app::{App, Setup};
    use crate::tui::runner::{Demo, Services};
    let theme = crate::tui::theme::Theme::new(use_color(cli.no_color));
    if cli.demo {
        // A throw-away directory, unless `--config-dir DIR` keeps the demo's settings.
        let (config, _tmp) = demo_config_dir(cli)?;
        init_file_log(&config.log_path());
        let world = build_world(&cli.world)?;
        let mut faults = fault_spec(&cli.world)?;
        // The person at the "browser" approves the device code after a few seconds.
        faults.auto_approve_secs.get_or_insert(3);
        let handle = sim::start(
            world.clone(),
            faults,
            "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        )
        .await
        .map_err(|e| format!("cannot start the simulated world: {e}"))?;
        let urls = handle.urls();
        // Not on screen: scripts (and the PTY tests) find the sim's control surface here.
        tracing::info!(control = %urls.control, dir = %config.dir.display(), "demo: the simulated world is serving");
        let (setup, resumed) = demo_resume(&config, &world, &urls)?;
        // The sim holds its own copy; this one is not needed any more (50,000 users are MBs).
        drop(world);
        let ctx = crate::connect::Context::new(&setup.settings);
        let services = Services::new(
            ctx,
            config.clone(),
            Some(Demo {
                control: urls.control.clone(),
            }),
        );
        let mut app = App::new(setup, true);
        if resumed {
            app.notice = Some(crate::tui::app::Notice {
                text: format!(
                    "Demo resumed from {}: the simulated world restarted, so sign in again.",
                    config.dir.display()
                ),
                error: false,
            });
        }
        crate::tui::run(app, services, theme).await?;
        drop(handle);
        return Ok(ExitCode::SUCCESS);
    }
    let config = ConfigDir::resolve(cli.config_dir.as_deref())?;
    let settings = config.load_settings()?;
    let secrets = config.load_secrets()?;
    init_file_log(&config.log_path());
    let ctx = crate::connect::Context::new(&settings);
    let services = Services::new(ctx, config, None);
    crate::tui::run(
        App::new(Setup { settings, secrets }, false),
        services,
        theme,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// reconcile
// ---------------------------------------------------------------------------------------------

fn api_err(e: crate::api::error::ApiError) -> String {
    format!("{e}. {}", e.hint())
}

/// Save refresh tokens the run rotated (Xero rotates on every use, §7.1), re-reading the file
/// so only those change.
fn save_rotated(
    config: &crate::config::ConfigDir,
    before: &crate::config::Secrets,
    sources: &crate::engine::fetch::Sources,
    xero: Option<&crate::auth::xero::XeroSession>,
) -> Result<(), String> {
    let ms = sources.microsoft.session.refresh_token().secret().clone();
    let ms = (before.microsoft_refresh_token.as_deref() != Some(ms.as_str())).then_some(ms);
    let xe = xero.map(|s| s.refresh_token().secret().clone());
    let xe = xe.filter(|t| before.xero_refresh_token.as_deref() != Some(t.as_str()));
    if ms.is_none() && xe.is_none() {
        return Ok(());
    }
    let mut s = config.load_secrets()?;
    if let Some(t) = ms {
        s.microsoft_refresh_token = Some(t);
    }
    if let Some(t) = xe {
        s.xero_refresh_token = Some(t);
    }
    config.save_secrets(&s)
}

// ---------------------------------------------------------------------------------------------
// Shared by reconcile and sync: the sources, the fetch, Dicker Data's prices, the settings
// ---------------------------------------------------------------------------------------------

/// A `--demo` command's simulated world, serving while the command runs.
pub(crate) struct DemoWorld {
    /// Serving until dropped.
    pub _handle: sim::SimHandle,
    pub world: World,
}

/// Real settings in use: where they are, the secrets as read, and the Xero session (whose
/// rotated refresh token must be saved).
pub(crate) struct RealSetup {
    pub config: crate::config::ConfigDir,
    pub secrets: crate::config::Secrets,
    pub xero: Option<std::sync::Arc<crate::auth::xero::XeroSession>>,
}

/// Everything a reconciliation (and a sync plan) starts from.
pub(crate) struct Fetched {
    pub sources: crate::engine::fetch::Sources,
    pub snap: crate::engine::fetch::Snapshot,
    pub prices: crate::domain::PriceBook,
    /// The settings in force (the demo's own with --demo).
    pub settings: crate::config::Settings,
    pub real: Option<RealSetup>,
    pub demo: Option<DemoWorld>,
}

/// Connect to every source — the simulated world with `--demo`, else the saved settings —
/// and fetch everything, then Dicker Data's prices. `psa`: the PSA asked for on the command
/// line (default: the one set up; ConnectWise with --demo).
pub(crate) async fn fetch_all(
    cli: &Cli,
    command: &str,
    psa: Option<crate::demo::PsaKind>,
) -> Result<Fetched, String> {
    use crate::engine::fetch::FetchProgress;
    use crate::engine::pipeline;
    let (tx, _rx) = tokio::sync::watch::channel(FetchProgress::default());
    let f = if cli.demo {
        let mut world = build_world(&cli.world)?;
        world.app.device_code_interval_secs = 1;
        let faults = fault_spec(&cli.world)?;
        let handle = sim::start(
            world.clone(),
            faults,
            "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        )
        .await
        .map_err(|e| format!("cannot start the simulated world: {e}"))?;
        eprintln!("signing in to the simulated world…");
        let psa = psa.unwrap_or(crate::demo::PsaKind::ConnectWise);
        let sources = crate::demo::connect(&handle, &world, psa)
            .await
            .map_err(api_err)?;
        let settings = demo_setup(&world, &handle.urls())?.settings;
        eprintln!("fetching…");
        let priced = pipeline::fetch_priced(&sources, &tx, None)
            .await
            .map_err(api_err)?;
        Fetched {
            sources,
            snap: priced.snap,
            prices: prices_or_warn(priced.prices, priced.prices_error),
            settings,
            real: None,
            demo: Some(DemoWorld {
                _handle: handle,
                world,
            }),
        }
    } else {
        let config = crate::config::ConfigDir::resolve(cli.config_dir.as_deref())?;
        if !config.settings_path().exists() {
            return Err(format!(
                "cspsync is not set up yet (no settings in {}); run `cspsync` to start the setup wizard, or try `cspsync --demo {command}`",
                config.dir.display()
            ));
        }
        let settings = config.load_settings()?;
        let secrets = config.load_secrets()?;
        let ctx = crate::connect::Context::new(&settings);
        let pipeline::Connected { sources, xero } =
            pipeline::connect(&ctx, &settings, &secrets, psa).await?;
        eprintln!("fetching…");
        let priced = pipeline::fetch_priced(&sources, &tx, None).await;
        let real = RealSetup {
            config,
            secrets,
            xero,
        };
        // Save rotated sign-ins whatever the outcome: the old Xero token stops working soon.
        real.save_rotated(&sources);
        let priced = priced.map_err(api_err)?;
        Fetched {
            sources,
            snap: priced.snap,
            prices: prices_or_warn(priced.prices, priced.prices_error),
            settings,
            real: Some(real),
            demo: None,
        }
    };
    Ok(f)
}

impl RealSetup {
    /// Save refresh tokens the run rotated; a failure is said, not fatal.
    fn save_rotated(&self, sources: &crate::engine::fetch::Sources) {
        if let Err(e) = save_rotated(&self.config, &self.secrets, sources, self.xero.as_deref()) {
            eprintln!(
                "cspsync: a renewed sign-in could not be saved ({e}); the next run may need a new sign-in"
            );
        }
    }
}

/// Dicker Data's prices, or (said on stderr) none: the costs then come from the PSA.
fn prices_or_warn(
    prices: crate::domain::PriceBook,
    error: Option<crate::api::error::ApiError>,
) -> crate::domain::PriceBook {
    if let Some(e) = error {
        eprintln!(
            "cspsync: Dicker Data's prices could not be read ({e}); costs come from the PSA instead"
        );
    }
    prices
}

impl Fetched {
    /// Fetch again through the same clients (after an apply, to check the result).
    pub(crate) async fn refetch(&mut self) -> Result<(), String> {
        use crate::engine::fetch::FetchProgress;
        let (tx, _rx) = tokio::sync::watch::channel(FetchProgress::default());
        let priced = crate::engine::pipeline::fetch_priced(&self.sources, &tx, None)
            .await
            .map_err(api_err)?;
        self.snap = priced.snap;
        self.prices = prices_or_warn(priced.prices, priced.prices_error);
        Ok(())
    }

    /// The reconciliation, with the saved manual mapping decisions and Dicker Data's prices.
    pub(crate) fn reconcile(&self) -> Result<crate::domain::Reconciliation, String> {
        crate::engine::pipeline::reconcile(&self.snap, &self.prices, &self.settings.mapping)
            .map_err(api_err)
    }
}

async fn reconcile_main(cli: &Cli, args: &ReconcileArgs) -> Result<ExitCode, String> {
    let f = fetch_all(cli, "reconcile", args.psa).await?;
    let r = f.reconcile()?;
    let text = match args.format {
        ReconcileFormat::Json => {
            let mut t = crate::domain::export::to_json(&r);
            t.push('\n');
            t
        }
        ReconcileFormat::Csv => crate::domain::export::to_csv(&r),
        ReconcileFormat::Table => crate::domain::export::to_table(
            &r,
            crate::domain::export::TableOptions {
                all: args.all,
                ..Default::default()
            },
        ),
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
    if let Some(gap) = not_audited(&r.summary) {
        eprintln!("cspsync: {gap}");
        return Ok(ExitCode::from(2));
    }
    Ok(if r.summary.mismatched > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Why a reconciliation did not audit everything (nothing at all, or customers not read).
fn not_audited(s: &crate::domain::Summary) -> Option<String> {
    if s.lines_audited == 0 {
        return Some(
            "0 lines audited: nothing was checked (no subscriptions at Microsoft or Dicker Data)"
                .into(),
        );
    }
    if !s.customers_not_read.is_empty() {
        return Some(format!(
            "{} customer(s) could not be read and were not audited: {}",
            s.customers_not_read.len(),
            s.customers_not_read
                .iter()
                .map(|c| format!("{} ({})", c.name, c.reason))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// sync
// ---------------------------------------------------------------------------------------------

/// The planner's options from the settings. With --demo, the Xero choices the setup wizard
/// would make on the seed's organisation ([`demo_sync_options`]) where the settings have none.
fn sync_options(f: &Fetched) -> crate::domain::sync::SyncOptions {
    let mut o = crate::engine::pipeline::sync_options(&f.settings);
    if let Some(d) = &f.demo {
        let demo = demo_sync_options(&d.world);
        o.xero_supplier_contact_id = o.xero_supplier_contact_id.or(demo.xero_supplier_contact_id);
        o.xero_revenue_account = o.xero_revenue_account.or(demo.xero_revenue_account);
        o.xero_expense_account = o.xero_expense_account.or(demo.xero_expense_account);
    }
    o
}

/// The sync options of a simulated world: its Xero organisation's Dicker Data supplier
/// contact, first Revenue account and first direct-cost (else expense) account — the seed's
/// Xero setup, as the wizard would choose it.
pub fn demo_sync_options(world: &World) -> crate::domain::sync::SyncOptions {
    let mut o = crate::domain::sync::SyncOptions::default();
    if let Some(org) = world.xero.organisations.first() {
        let active = |a: &&crate::sim::world::XeroAccount| a.status == "ACTIVE";
        o.xero_supplier_contact_id = org
            .contacts
            .iter()
            .find(|c| c.is_supplier && c.contact_status == "ACTIVE")
            .map(|c| c.contact_id.clone());
        o.xero_revenue_account = org
            .accounts
            .iter()
            .filter(active)
            .find(|a| a.account_type == "REVENUE")
            .map(|a| a.code.clone());
        o.xero_expense_account = org
            .accounts
            .iter()
            .filter(active)
            .find(|a| a.account_type == "DIRECTCOSTS")
            .or_else(|| {
                org.accounts
                    .iter()
                    .filter(active)
                    .find(|a| a.account_type == "EXPENSE")
            })
            .map(|a| a.code.clone());
    }
    o
}

/// Reconcile and plan what was fetched.
fn plan_of(
    f: &Fetched,
) -> Result<(crate::domain::Reconciliation, crate::domain::sync::Plan), String> {
    let r = f.reconcile()?;
    let today = chrono::Utc::now().date_naive();
    let plan = crate::domain::plan::plan(&r, &f.snap, &f.prices, &sync_options(f), today)
        .map_err(|e| e.to_string())?;
    Ok((r, plan))
}

fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Who applies, and whether they may: only an operator (issue 6 §3). In the demo the person
/// signed in is the world's setup admin.
fn sync_actor(cli: &Cli, f: Option<&Fetched>) -> Result<crate::audit::Actor, String> {
    use crate::access::Access;
    use crate::audit::Actor;
    if cli.demo {
        let admin = f
            .and_then(|f| f.demo.as_ref())
            .and_then(|d| crate::sim::entra::default_admin(&d.world));
        return Ok(admin.map_or_else(
            || Actor::new("", "demo admin"),
            |u| Actor::new(u.id.clone(), u.user_principal_name.clone()),
        ));
    }
    let config = crate::config::ConfigDir::resolve(cli.config_dir.as_deref())?;
    let settings = config.load_settings()?;
    let secrets = config.load_secrets()?;
    let access = crate::access::decide(&settings, secrets.microsoft_refresh_token.is_some());
    let actor = Actor::signed_in(&settings);
    if access.may_apply_sync() {
        return Ok(actor);
    }
    let who = if actor.name.is_empty() {
        actor.oid.clone()
    } else {
        actor.name.clone()
    };
    Err(match access {
        Access::SignedOut => "nobody is signed in, so no sync can be applied: run `cspsync` and sign in as an operator first".to_string(),
        Access::Allowed(_) => format!(
            "only an operator may apply a sync, and {who} is a viewer: ask the admin to make you an operator in the Users tab (`cspsync sync --plan` shows the plan meanwhile)"
        ),
        Access::Denied { name } => format!(
            "{name} is not one of cspsync's allowed users, so no sync can be applied: ask the admin to add you as an operator in the Users tab"
        ),
        _ => format!("{who} may not apply a sync: only an operator may"),
    })
}

async fn sync_main(cli: &Cli, args: &SyncArgs) -> Result<ExitCode, String> {
    if args.apply && !args.yes {
        return Err(
            "`sync --apply` writes to the PSA: add --yes to confirm (see the writes first with `cspsync sync --plan`)"
                .into(),
        );
    }
    // Refuse a viewer before fetching anything (the demo's admin may).
    if args.apply && !cli.demo {
        sync_actor(cli, None)?;
    }
    let mut f = fetch_all(cli, "sync --plan", args.psa).await?;
    let (r, plan) = plan_of(&f)?;
    let gap = not_audited(&r.summary);
    if let Some(g) = &gap {
        eprintln!("cspsync: {g}; the plan covers only what was read");
    }
    if args.plan {
        let text = match args.format {
            PlanFormat::Json => {
                let mut t = crate::domain::plan_export::to_json(&plan);
                t.push('\n');
                t
            }
            PlanFormat::Csv => crate::domain::plan_export::to_csv(&plan),
            PlanFormat::Table => crate::domain::plan_export::to_table(&plan, 120),
        };
        print_stdout(&text);
        if plan.writes.is_empty() && gap.is_none() {
            eprintln!(
                "cspsync: nothing to do: {} is in line with Dicker Data",
                plan.psa.display_name()
            );
        }
        return Ok(if gap.is_some() {
            ExitCode::from(2)
        } else if plan.writes.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let actor = sync_actor(cli, Some(&f))?;
    let code = apply_headless(cli, args, &mut f, &plan, actor).await;
    if let Some(real) = &f.real {
        real.save_rotated(&f.sources);
    }
    code
}

/// Apply `plan` with progress on stderr (one line per customer finished), the summary on
/// stdout, then fetch again to show what a fresh plan still holds.
async fn apply_headless(
    cli: &Cli,
    args: &SyncArgs,
    f: &mut Fetched,
    plan: &crate::domain::sync::Plan,
    actor: crate::audit::Actor,
) -> Result<ExitCode, String> {
    use crate::domain::sync::{ApplyEvent, ApplyProgress, CustomerState, Outcome};
    use crate::engine::apply::{self, ApplyContext};
    use crate::engine::journal::Journal;
    use std::collections::HashMap;
    let psa_name = plan.psa.display_name();
    if plan.writes.is_empty() {
        print_stdout(&format!(
            "Nothing to do: {psa_name} is in line with Dicker Data.\n"
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let psa = f
        .sources
        .psa
        .clone()
        .ok_or_else(|| "no PSA is connected, so there is nothing to apply".to_string())?;
    // The journal and the audit log: in the data directory; in the demo (a world that starts
    // afresh every run) the journal in memory and the audit log in the demo's directory.
    let (_tmp, journal, audit_dir) = match &f.real {
        Some(real) => (None, Journal::open(&real.config)?, real.config.clone()),
        None => {
            let (config, tmp) = demo_config_dir(cli)?;
            (tmp, Journal::memory(), config)
        }
    };
    let ctx = ApplyContext::new(std::sync::Arc::new(journal), actor)
        .with_audit(audit_dir.clone())
        .confirming_cautions(args.confirm_cautions);
    let selected = vec![true; plan.writes.len()];
    let customers: Vec<&str> = {
        let mut seen = std::collections::BTreeSet::new();
        plan.writes
            .iter()
            .filter(|w| seen.insert(w.customer_tenant_id.to_ascii_lowercase()))
            .map(|w| w.customer_tenant_id.as_str())
            .collect()
    };
    eprintln!(
        "applying {} write(s) for {} customer(s) to {psa_name}…",
        plan.writes.len(),
        customers.len()
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ApplyEvent>(1024);
    let (ptx, _prx) = tokio::sync::watch::channel(ApplyProgress::default());
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    // Ctrl-C cancels cleanly: customers under way finish, no new one starts. A second Ctrl-C
    // stops at once (the journal lets the next apply check what was under way).
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "cspsync: cancelling: the customers under way finish, no new one starts (Ctrl-C again stops at once)"
            );
            let _ = cancel_tx.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "cspsync: stopped; the next `sync --apply` checks the writes that were under way before sending them"
                );
                std::process::exit(130);
            }
        }
        std::future::pending::<std::convert::Infallible>().await
    };
    let total = customers.len();
    let names: HashMap<String, (&str, usize)> = {
        let mut m: HashMap<String, (&str, usize)> = HashMap::new();
        for w in &plan.writes {
            m.entry(w.customer_tenant_id.to_ascii_lowercase())
                .or_insert((w.customer_name.as_str(), 0))
                .1 += 1;
        }
        m
    };
    let printer = async {
        let mut finished = 0usize;
        let mut errors: HashMap<String, String> = HashMap::new();
        let mut last_retry: Option<std::time::Instant> = None;
        while let Some(e) = rx.recv().await {
            match e {
                ApplyEvent::Write {
                    index,
                    outcome: Outcome::Failed { error },
                    ..
                } => {
                    if let Some(w) = plan.writes.get(index) {
                        errors
                            .entry(w.customer_tenant_id.to_ascii_lowercase())
                            .or_insert(format!("{} {}: {error}", w.op.kind(), w.target));
                    }
                }
                ApplyEvent::Customer { tenant_id, state }
                    if state != CustomerState::Running && state != CustomerState::Queued =>
                {
                    finished += 1;
                    let key = tenant_id.to_ascii_lowercase();
                    let (name, n) = names.get(&key).copied().unwrap_or((tenant_id.as_str(), 0));
                    let mut line = format!("[{finished}/{total}] {name}: {state} ({n} write(s))");
                    if let Some(err) = errors.get(&key) {
                        line.push_str(&format!(": {err}"));
                    }
                    eprintln!("{line}");
                }
                // At most one line every few seconds: a throttled API is said, not shouted.
                ApplyEvent::Retry { message, .. }
                    if last_retry
                        .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(5)) =>
                {
                    eprintln!("cspsync: {message}");
                    last_retry = Some(std::time::Instant::now());
                }
                _ => {}
            }
        }
    };
    let work = apply::apply(&psa, plan, &selected, ctx, tx, &ptx, cancel_rx);
    let report = tokio::select! {
        (r, ()) = async { tokio::join!(work, printer) } => r,
        never = ctrl_c => match never {},
    };
    let mut out = format!("Applied to {psa_name}: {}\n", report.summary_line());
    for (w, o) in plan.writes.iter().zip(&report.outcomes) {
        match o {
            Outcome::Failed { error } => out.push_str(&format!(
                "  failed: {} · {} {}: {error}\n",
                w.customer_name,
                w.op.kind(),
                w.target
            )),
            Outcome::Skipped { reason } if reason == apply::SKIP_NEEDS_CONFIRMATION => out
                .push_str(&format!(
                    "  needs confirmation (--confirm-cautions): {} · {} {}: {}\n",
                    w.customer_name,
                    w.op.kind(),
                    w.target,
                    w.cautions
                        .iter()
                        .map(|c| c.describe())
                        .collect::<Vec<_>>()
                        .join("; ")
                )),
            _ => {}
        }
    }
    for p in &report.problems {
        out.push_str(&format!("  problem: {p}\n"));
    }
    out.push_str(&match (&f.real, &_tmp) {
        (Some(_), _) => "Every write is in the audit log: `cspsync audit`.\n".to_string(),
        (None, Some(_)) => "The demo kept its audit log in a temporary directory, now removed; give --config-dir DIR to keep it (then `cspsync --demo --config-dir DIR audit`).\n".to_string(),
        (None, None) => format!(
            "Every write is in the audit log: `cspsync --demo --config-dir {} audit`.\n",
            audit_dir.dir.display()
        ),
    });
    print_stdout(&out);
    // Check the result the way the technician would: fetch, reconcile and plan again.
    if !report.cancelled {
        eprintln!("checking: fetching again…");
        match f.refetch().await.and_then(|_| plan_of(f)) {
            Ok((_, again)) if again.writes.is_empty() => print_stdout(&format!(
                "Checked: a fresh plan has nothing to do; {psa_name} is in line with Dicker Data.\n"
            )),
            Ok((_, again)) => print_stdout(&format!(
                "Checked: a fresh plan still has {} write(s); see them with `cspsync sync --plan`.\n",
                again.writes.len()
            )),
            Err(e) => eprintln!("cspsync: the result could not be checked: {e}"),
        }
    }
    Ok(if report.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

// ---------------------------------------------------------------------------------------------
// audit
// ---------------------------------------------------------------------------------------------

fn audit_main(cli: &Cli, args: &AuditArgs) -> Result<ExitCode, String> {
    let (config, _tmp) = if cli.demo {
        demo_config_dir(cli)?
    } else {
        (
            crate::config::ConfigDir::resolve(cli.config_dir.as_deref())?,
            None,
        )
    };
    let since = match &args.since {
        Some(s) => Some(
            crate::audit::parse_since(s, chrono::Utc::now())
                .map_err(|e| format!("--since: {e}"))?,
        ),
        None => None,
    };
    let path = crate::audit::path(&config);
    let events = crate::audit::read(&config, since)?;
    if events.is_empty() {
        let all = if since.is_some() {
            crate::audit::read(&config, None)?.len()
        } else {
            0
        };
        if all > 0 {
            eprintln!(
                "cspsync: no audit records since {} ({all} older one(s) in {})",
                args.since.as_deref().unwrap_or(""),
                path.display()
            );
        } else {
            eprintln!(
                "cspsync: the audit log is empty: nothing has been recorded in {} yet",
                path.display()
            );
        }
        if args.format == AuditFormat::Json {
            print_stdout("[]\n");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let text = match args.format {
        AuditFormat::Table => crate::audit::to_table(&events),
        AuditFormat::Json => {
            let mut t = serde_json::to_string_pretty(&events)
                .map_err(|e| format!("cannot write the audit log as JSON: {e}"))?;
            t.push('\n');
            t
        }
    };
    print_stdout(&text);
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// bench sync
// ---------------------------------------------------------------------------------------------

async fn bench_sync(world_args: &WorldArgs, args: &BenchSyncArgs) -> Result<ExitCode, String> {
    use crate::demo::PsaKind;
    use crate::engine::bench_sync;
    if world_args.dataset.is_some() || world_args.faults.is_some() {
        return Err(
            "bench sync builds its own world and faults; use --customers, --seed and --latency-ms"
                .into(),
        );
    }
    let opts = bench_sync::BenchSyncOptions {
        customers: world_args.customers.unwrap_or(1000),
        seed: world_args.seed.unwrap_or(42),
        latency: std::time::Duration::from_millis(args.latency_ms),
        runs: args.runs,
        psas: match args.psa {
            Some(PsaKind::None) => {
                return Err("bench sync needs a PSA: connectwise, autotask or xero".into());
            }
            Some(p) => vec![p],
            None => vec![PsaKind::ConnectWise, PsaKind::Autotask, PsaKind::Xero],
        },
    };
    eprintln!(
        "bench sync: {} customers, {} ms latency, {} run(s) per PSA (planning first, then timing the apply)…",
        opts.customers,
        args.latency_ms,
        opts.runs.max(1)
    );
    bench_sync::run(&opts, |r| print_stdout(&r.render())).await?;
    Ok(ExitCode::SUCCESS)
}
