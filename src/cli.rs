//! Command-line definitions (clap). Parsing only: `main` dispatches, `config` merges the
//! engine flags with the environment and the file, and the work happens in `headless` (and
//! the dashboard). Defaults shown in `--help` come from [`crate::defaults`], never literals.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::defaults;

/// Which provider runs the calls (`--provider`, `provider` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Demo,
    #[value(name = "openai")]
    #[serde(rename = "openai")]
    OpenAi,
    Anthropic,
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Demo => "demo",
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        })
    }
}

/// maestro: ask a hard question; a planner splits it, workers answer in parallel, a
/// synthesiser writes the report.
#[derive(Debug, Parser)]
#[command(name = "maestro", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(subcommand)]
    pub command: Option<CommandLine>,
    /// The dashboard: runs pause after planning for their plan to be reviewed (`V` turns it
    /// off and on again; `[planner] review`)
    #[arg(long)]
    pub review: bool,
}

#[derive(Debug, Subcommand)]
pub enum CommandLine {
    /// Run a query headless: progress on stderr, the report on stdout.
    ///
    /// Exit codes: 0 every subtask and the synthesis succeeded; 3 a report was written with
    /// gaps (failed, blocked, cancelled or skipped for the budget subtasks, or an
    /// unsynthesised report); 1 the run failed (or its provider was paused: a refused key,
    /// rate limits that outlast the retries); 2 usage or configuration error (nothing was
    /// run); 4 the run ended but the
    /// report or the events file could not be written in full; 130 / 143 / 129 interrupted by
    /// SIGINT (Ctrl-C) / SIGTERM / SIGHUP, after printing what finished.
    Run(RunArgs),
    /// Print the plan the planner makes for a query, as JSON, and stop.
    Plan(PlanArgs),
    /// List the models the configured provider offers, marking the configured ones.
    ///
    /// `*` marks a model a role is configured to use, `✗` a configured model the server does
    /// not offer. Exit codes: 0 listed; 1 the server could not be asked or refused; 2 usage or
    /// configuration error.
    Models(ModelsArgs),
    /// Check the configuration end to end: config file, key, server, models, one tiny call
    /// per model, streamed usage.
    ///
    /// One line per check, ✓ or ✗, with the fix for each ✗. Exit codes: 0 every check
    /// passed; 1 a check failed; 2 the configuration itself is wrong (nothing was called).
    Doctor,
    /// List saved runs, newest first: id (a unique prefix is accepted everywhere), when,
    /// status, query, subtasks ok/failed/total, tokens, duration.
    History(HistoryArgs),
    /// Print a saved run's report, in the same shapes as `maestro run`.
    Show(ShowArgs),
    /// Continue an interrupted or partly failed saved run headless: only subtasks without a
    /// result are called again, then their dependents, then a new synthesis.
    ///
    /// Provider, model and limit options default to those the run was saved with; API keys
    /// always come from the environment. Exit codes as `maestro run`.
    Resume(ResumeArgs),
    /// Delete saved runs.
    Rm(RmArgs),
    /// Delete saved runs that started longer ago than an age (running runs are kept).
    Gc(GcArgs),
    /// Write a saved run's full report: query, plan, synthesis, a table of timings, tokens
    /// and attempts, and every subtask's result.
    ///
    /// Exit codes: 0 written; 1 the database could not be read; 2 an unknown id or an `--out`
    /// in a folder that does not exist; 4 the output could not be written.
    Export(ExportArgs),
    /// Compare two saved runs: plan differences, each subtask's status, time and tokens side by
    /// side, and a line diff of the reports.
    ///
    /// Coloured on a terminal unless NO_COLOR is set. Exit codes: 0 compared (whether or not
    /// they differ); 1 the database could not be read; 2 an unknown id.
    Diff(DiffArgs),
    /// The result cache of worker answers: `clear` deletes them, `stats` counts them.
    Cache(CacheArgs),
    /// List the presets (teams of worker roles) with their roles and where each comes from;
    /// `show NAME` prints one as TOML, a starting point for a preset of your own.
    ///
    /// Your presets are `*.toml` files in the `presets` folder beside the config file; one with
    /// a built-in preset's name replaces it.
    Presets(PresetsArgs),
    /// What the saved runs tell: per role and per model, calls, success rate, median and 90th
    /// percentile time, tokens and estimated cost; per provider, errors by class.
    ///
    /// Exit codes: 0 printed; 1 the database could not be read (it is never created); 2 a bad
    /// `--since`.
    Stats(StatsArgs),
    /// MCP servers (`[[mcp.servers]]` in the config): `list` starts each and lists its tools.
    Mcp(McpArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct PresetsArgs {
    #[command(subcommand)]
    pub action: Option<PresetsAction>,
    /// Print one JSON object instead of a list
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum PresetsAction {
    /// Print a preset's TOML
    Show {
        /// The preset's name
        name: String,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// Only calls since an age ago (7d, 12h, 2w) or a date (2026-11-01, UTC)
    #[arg(long, value_name = "AGE|DATE")]
    pub since: Option<String>,
    /// One JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The run's id, or a unique prefix of it
    pub id: String,
    /// Write the report to FILE (replaced if it exists) instead of stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Report format
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    pub format: Format,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// The earlier run's id, or a unique prefix of it
    #[arg(value_name = "ID1")]
    pub old: String,
    /// The later run's id, or a unique prefix of it
    #[arg(value_name = "ID2")]
    pub new: String,
    /// One JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct McpArgs {
    #[command(subcommand)]
    pub action: McpAction,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum McpAction {
    /// Start every configured MCP server, list its tools (`mcp:SERVER/TOOL`), stop it.
    ///
    /// Exit codes: 0 every server started; 1 one did not (the reason is on stderr); 2 the
    /// configuration is wrong.
    List {
        /// One JSON array of tool specs (name, description, parameters)
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: CacheAction,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CacheAction {
    /// Delete every cached answer.
    Clear,
    /// Entries, size, oldest and newest, hits and the tokens they saved.
    Stats {
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct ModelsArgs {
    /// Print one JSON object instead of a list
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// One JSON array, newest first
    #[arg(long)]
    pub json: bool,
    /// At most N runs
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Only runs whose query or report contains TEXT (case-insensitive)
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// Only runs with this status
    #[arg(long, value_enum)]
    pub status: Option<HistoryStatus>,
}

/// A saved run's status, as `--status` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryStatus {
    Running,
    Succeeded,
    Partial,
    Failed,
    Cancelled,
    Interrupted,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// The run's id, or a unique prefix of it
    pub id: String,
    /// Report format on stdout
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    pub format: Format,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ResumeArgs {
    /// The run's id, or a unique prefix of it
    pub id: String,
    /// Report format on stdout
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    pub format: Format,
    /// Write every event as one JSON object per line to FILE
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// No progress on stderr
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RmArgs {
    /// Ids of runs, or unique prefixes
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GcArgs {
    /// An age: a number and a unit, s, m, h, d or w (`30d`, `12h`)
    #[arg(long, value_name = "AGE")]
    pub older_than: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The question (use - to read it from standard input)
    pub query: String,
    /// Report format on stdout
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    pub format: Format,
    /// Write every event as one JSON object per line to FILE
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Run this plan (JSON, as `maestro plan` prints) instead of asking the planner
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Ask this as a follow-up to a saved run (its id, or a unique prefix): the planner and
    /// the workers see that run's query and report, and the plan may reuse its results
    #[arg(long, value_name = "ID")]
    pub follow_up: Option<String>,
    /// No progress on stderr
    #[arg(long, short)]
    pub quiet: bool,
    /// Attach a file, or a folder's text files (its .gitignore respected), for the planner and
    /// the workers to read; repeatable. `@path` in the query does the same
    #[arg(long, value_name = "PATH")]
    pub context: Vec<PathBuf>,
    /// Pause after planning to review the plan and its estimate on the terminal: approve it,
    /// edit it in $EDITOR, or cancel (`[planner] review`). Needs a terminal
    #[arg(long)]
    pub review: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// The question (use - to read it from standard input)
    pub query: String,
    /// Attach a file, or a folder's text files (its .gitignore respected), for the planner to
    /// read; repeatable. `@path` in the query does the same
    #[arg(long, value_name = "PATH")]
    pub context: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Markdown,
    Json,
}

/// Options shared by every command that runs the engine. Each can also come from a
/// `MAESTRO_*` environment variable; a flag wins over the variable, which wins over the file.
///
/// Limits are `Option`s, not clap defaults, so that a value from the config file can still
/// apply when neither the flag nor the variable is given; the help text names the default.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EngineArgs {
    /// Config file [default: the platform config dir's maestro/config.toml]
    #[arg(long, env = "MAESTRO_CONFIG", value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Model provider [default: demo]
    #[arg(long, env = "MAESTRO_PROVIDER", global = true)]
    pub provider: Option<ProviderKind>,
    /// Provider base URL (openai: ends in /v1; anthropic: the host root)
    #[arg(long, env = "MAESTRO_BASE_URL", value_name = "URL", global = true)]
    pub base_url: Option<String>,
    /// Environment variable that holds the API key
    #[arg(long, env = "MAESTRO_API_KEY_ENV", value_name = "VAR", global = true)]
    pub api_key_env: Option<String>,
    /// Model for every role (planner, workers, synthesiser)
    #[arg(long, env = "MAESTRO_MODEL", global = true)]
    pub model: Option<String>,
    /// Model for the planner
    #[arg(
        long,
        env = "MAESTRO_PLANNER_MODEL",
        value_name = "MODEL",
        global = true
    )]
    pub planner_model: Option<String>,
    /// Model for the workers
    #[arg(
        long,
        env = "MAESTRO_WORKER_MODEL",
        value_name = "MODEL",
        global = true
    )]
    pub worker_model: Option<String>,
    /// Model for the synthesiser
    #[arg(long, env = "MAESTRO_SYNTH_MODEL", value_name = "MODEL", global = true)]
    pub synth_model: Option<String>,
    #[arg(long, env = "MAESTRO_CONCURRENCY", value_name = "N", global = true,
          help = with_default("Worker calls in flight at once", defaults::CONCURRENCY),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrency: Option<u64>,
    #[arg(long, env = "MAESTRO_MAX_SUBTASKS", value_name = "N", global = true,
          help = with_default("Most subtasks a plan may have", defaults::MAX_SUBTASKS),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_subtasks: Option<u64>,
    #[arg(long, env = "MAESTRO_TIMEOUT", value_name = "SECS", global = true,
          help = with_default("Seconds one model call may take", defaults::TIMEOUT_SECS),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    #[arg(long, env = "MAESTRO_RETRIES", value_name = "N", global = true,
          help = with_default(
              "Retries of a failed call (429, 5xx, timeouts, cut streams)",
              defaults::RETRIES,
          ))]
    pub retries: Option<u32>,
    /// The run history database [default: maestro.db in the platform data dir]
    #[arg(long, env = "MAESTRO_DB", value_name = "PATH", global = true)]
    pub db: Option<PathBuf>,
    /// Do not save runs in the history
    #[arg(long, global = true)]
    pub no_save: bool,
    /// Token budget of a run (in and out, every call): when it is spent no subtask starts;
    /// headless runs then write the report from what succeeded [default: no limit]
    #[arg(long, env = "MAESTRO_MAX_TOKENS", value_name = "N", global = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tokens: Option<u64>,
    /// Cost budget of a run in US dollars, estimated from the price table (every model the
    /// run uses needs a price), as --max-tokens [default: no limit]
    #[arg(long, env = "MAESTRO_MAX_COST", value_name = "USD", global = true)]
    pub max_cost: Option<f64>,
    /// Time budget of a run (`90s`, `5m`, `1h`), as --max-tokens [default: no limit]
    #[arg(long, env = "MAESTRO_DEADLINE", value_name = "TIME", global = true)]
    pub deadline: Option<String>,
    /// Call the model for every worker subtask, even when an identical earlier call's
    /// answer is cached
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Plan, work and synthesise even a query the planner calls straightforward, instead of
    /// answering it with one worker call
    #[arg(long, global = true)]
    pub no_direct: bool,
    /// Check each subtask's result with a validator call; a failed check runs the subtask
    /// once more with the reason, then keeps the result flagged
    #[arg(long, global = true)]
    pub validate: bool,
    /// Model for the validator [default: the workers' model]
    #[arg(
        long,
        env = "MAESTRO_VALIDATOR_MODEL",
        value_name = "MODEL",
        global = true
    )]
    pub validator_model: Option<String>,
    #[arg(long, env = "MAESTRO_TOOLS", value_name = "WHICH", global = true,
          help = with_default(
              "Tools workers may call: none, fetch (web pages), files (local files), mcp (every \
               MCP server's), mcp:SERVER/* or mcp:SERVER/TOOL, all; several with commas",
              defaults::TOOLS_ENABLED,
          ))]
    pub tools: Option<String>,
    #[arg(long, env = "MAESTRO_PRESET", value_name = "NAME|PATH", global = true,
          help = with_default(
              "The team of worker roles: a preset's name (see `maestro presets`) or a preset file",
              defaults::PRESET,
          ))]
    pub preset: Option<String>,
    /// Let the fetch_url tool reach HOST even when it is a private or loopback address
    /// (repeatable; a name, an IP address or *.domain)
    #[arg(long = "allow-host", value_name = "HOST", global = true)]
    pub allow_host: Vec<String>,
    /// Let the read_file and list_dir tools read under DIR (repeatable)
    #[arg(long = "allow-dir", value_name = "DIR", global = true)]
    pub allow_dir: Vec<PathBuf>,
}

/// `what [default: N]`, clap's own wording for defaults it knows about.
fn with_default(what: &str, default: impl std::fmt::Display) -> String {
    format!("{what} [default: {default}]")
}
