//! Command line (clap derive).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cspsync",
    version,
    about = "Microsoft CSP licences via Dicker Data, reconciled and synced to your PSA"
)]
pub struct Cli {
    /// Run against the built-in simulated world instead of the real APIs, in a throw-away
    /// config directory (or in --config-dir DIR, which keeps the demo's settings across runs).
    #[arg(long, global = true)]
    pub demo: bool,

    /// Settings directory (default: the platform config directory). With --demo (given on
    /// the command line, not by CSPSYNC_CONFIG_DIR): where the demo keeps its settings across
    /// runs, never a directory with real settings; each run starts the same simulated world,
    /// so sign in again after a restart.
    #[arg(long, global = true, env = "CSPSYNC_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,

    /// No colours (NO_COLOR is respected too).
    #[arg(long, global = true)]
    pub no_color: bool,

    #[command(flatten)]
    pub world: WorldArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Which simulated world to build (for `sim`, `--demo` and `bench`).
#[derive(Debug, Clone, Args, Default)]
pub struct WorldArgs {
    /// Load the world from a JSON dataset (docs/dataset.md).
    #[arg(long, global = true, value_name = "FILE", conflicts_with_all = ["customers", "seed"])]
    pub dataset: Option<PathBuf>,

    /// Generate a world with this many customers instead of the shipped demo world.
    #[arg(long, global = true, value_name = "N")]
    pub customers: Option<usize>,

    /// Seed of the generated world (same seed, same world).
    #[arg(long, global = true, value_name = "S")]
    pub seed: Option<u64>,

    /// Give the MSP tenant this many staff users (its admin first), e.g. 50000 to try the
    /// Users tab at scale.
    #[arg(long, global = true, value_name = "N")]
    pub msp_users: Option<usize>,

    /// Faults: `latency=40ms,jitter=5ms,429=0.1,5xx=0.05,drop=0.01,retry-after=1,limits=on`;
    /// scope a key to one API with a prefix: `xero-api.429=0.2`.
    #[arg(long, global = true, value_name = "SPEC")]
    pub faults: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the simulated world (all seven APIs) on loopback and print each API's base URL.
    Sim(SimArgs),
    /// Sign in to the simulated world and fetch everything reconciliation needs, through the
    /// real clients; prints what arrived from each system.
    Fetch(FetchArgs),
    /// Benchmarks against the simulated world.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The saved settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check every configured connection and permission, one line each; exits non-zero when
    /// any configured check fails. With --demo: against the simulated world, fully set up.
    Doctor,
    /// Reconcile what Dicker Data bills, what Microsoft has and what the PSA charges, line by
    /// line. Exits 0 when every line is in line, 1 when mismatches exist, 2 on an error (or
    /// when nothing, or not everything, could be audited). With --demo: against the simulated
    /// world.
    Reconcile(ReconcileArgs),
    /// Bring the PSA in line with Dicker Data. `--plan` prints every write it would make
    /// (exits 0 when none is needed, 1 when some are, 2 on an error); `--apply --yes` makes
    /// them (exits 0 when every write succeeded, 1 when some failed or were skipped, 2 on an
    /// error). Only an operator may apply. With --demo: against the simulated world.
    Sync(SyncArgs),
    /// Print the audit log: sign-ins, allowed-user changes and every PSA write a sync made,
    /// newest last.
    Audit(AuditArgs),
}

/// Output format of `sync --plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// The writes grouped by customer, before → after (120 columns).
    Table,
    /// `{summary, writes[]}` (docs/sync.md).
    Json,
    /// One row per write.
    Csv,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["plan", "apply"])))]
pub struct SyncArgs {
    /// Print the plan: every write that would bring the PSA to Dicker Data's quantities.
    #[arg(long)]
    pub plan: bool,
    /// Plan, then make the writes (needs --yes). Progress goes to stderr, one line per
    /// customer, then a summary.
    #[arg(long)]
    pub apply: bool,
    /// With --apply: yes, make the writes without asking.
    #[arg(long)]
    pub yes: bool,
    /// With --apply: also make the writes that need their own confirmation (a decrease below
    /// the licences assigned, or outside the NCE cancellation window); without it they are
    /// skipped.
    #[arg(long)]
    pub confirm_cautions: bool,
    /// Output format of --plan.
    #[arg(long, value_enum, default_value = "table")]
    pub format: PlanFormat,
    /// The PSA to sync (default: the one set up; ConnectWise with --demo).
    #[arg(long, value_enum)]
    pub psa: Option<crate::demo::PsaKind>,
}

/// Output format of `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    /// One line per record (time, operator, action, details).
    Table,
    /// The records as a JSON array, as stored.
    Json,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records at or after this: a date (2026-05-01), a time (2026-05-01T09:00:00Z) or an
    /// age (7d, 24h, 30m).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: AuditFormat,
}

/// Output format of `reconcile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReconcileFormat {
    /// A report for a terminal (120 columns).
    Table,
    /// Everything, with the explanation of every number (docs/reconcile.md).
    Json,
    /// One row per line.
    Csv,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReconcileFormat,
    /// The PSA to reconcile against (default: the one set up; ConnectWise with --demo).
    /// `none` reconciles Dicker Data and Microsoft only.
    #[arg(long, value_enum)]
    pub psa: Option<crate::demo::PsaKind>,
    /// Table: list the lines that are in line too.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the settings (TOML); secrets are listed as set or not set, never shown.
    Show,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The PSA to fetch from.
    #[arg(long, value_enum, default_value = "connectwise")]
    pub psa: crate::demo::PsaKind,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Fetch the full world (default 1,000 customers) at a simulated latency; print calls per
    /// API, wall time and the lower bound the latency and concurrency limits imply.
    Fetch(BenchFetchArgs),
    /// Apply a whole plan (default 1,000 customers) at a simulated latency; print the wall
    /// time, the calls made against the minimum, and the lower bound each PSA's documented
    /// limits imply.
    Sync(BenchSyncArgs),
}

#[derive(Debug, Args)]
pub struct BenchSyncArgs {
    /// Simulated latency per call, in milliseconds.
    #[arg(long, default_value_t = 40)]
    pub latency_ms: u64,
    /// Timed runs per PSA (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Which PSA to apply to (all three by default).
    #[arg(long, value_enum)]
    pub psa: Option<crate::demo::PsaKind>,
}

#[derive(Debug, Args)]
pub struct BenchFetchArgs {
    /// Simulated latency per call, in milliseconds.
    #[arg(long, default_value_t = 40)]
    pub latency_ms: u64,
    /// Timed runs per PSA (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Which PSA to fetch (all three by default).
    #[arg(long, value_enum)]
    pub psa: Option<crate::demo::PsaKind>,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// Also write the endpoints as a cspsync settings snippet to this file.
    #[arg(long, value_name = "FILE")]
    pub write_config: Option<PathBuf>,
}
