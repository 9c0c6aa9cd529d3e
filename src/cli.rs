//! Command-line definitions (clap). Parsing only: `main` dispatches, and the work happens in
//! `headless` (and the dashboard).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::EngineArgs;

/// maestro: ask a hard question; a planner splits it, workers answer in parallel, a
/// synthesiser writes the report.
#[derive(Debug, Parser)]
#[command(name = "maestro", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(subcommand)]
    pub command: Option<CommandLine>,
}

#[derive(Debug, Subcommand)]
pub enum CommandLine {
    /// Run a query headless: progress on stderr, the report on stdout.
    ///
    /// Exit codes: 0 every subtask and the synthesis succeeded; 3 a report was written with
    /// gaps (failed, blocked or cancelled subtasks, or an unsynthesised report); 1 the run
    /// failed; 2 usage or configuration error; 130 interrupted.
    Run(RunArgs),
    /// Print the plan the planner makes for a query, as JSON, and stop.
    Plan(PlanArgs),
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
    /// No progress on stderr
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// The question (use - to read it from standard input)
    pub query: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Markdown,
    Json,
}
