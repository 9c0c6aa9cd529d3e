//! maestro: a terminal dashboard for the LLM orchestrator-workers pattern.
//!
//! A planner model splits a question into subtasks with dependencies, worker models answer
//! them in parallel, a synthesiser merges the results into a report.
//!
//! - [`protocol`]: the contract between the engine and front ends: `Command`s in, `Event`s
//!   out, each tagged with run id, subtask id and attempt.
//! - [`engine`]: `run` is a pure state machine (input → effects) holding every decision;
//!   `executor` performs the effects (provider calls, timers, cancellation); `plan`, `prompt`,
//!   `roles` and `preset` (teams of roles) are its pure helpers.
//! - [`llm`]: provider-neutral requests and classified errors; adapters for OpenAI-compatible
//!   servers and Anthropic (SSE streaming), and the offline demo provider.
//! - [`config`]: TOML file + environment + flags, checked with errors naming file and line;
//!   [`defaults`] holds every default value once.
//! - [`context`]: the files a person attaches to a run (`@path`, `--context`), read with
//!   `.gitignore` respected and a size limit, handed to the engine as plain data.
//! - [`report`]: folds events into a `RunReport`, the model every front end shares; markdown
//!   and JSON reports.
//! - [`display`]: how durations, clocks, token counts, glyphs and the spinner read, shared by
//!   every front end and the reports.
//! - [`headless`]: `maestro run`, `maestro plan` and `maestro resume`.
//! - [`doctor`]: `maestro models` and `maestro doctor`, what the configured server offers and
//!   whether the configuration works end to end.
//! - [`history`]: saved runs for the front ends: saving as a run happens, reading one back as a
//!   `RunReport`, what a resume starts from; `maestro history`, `show`, `rm`, `gc`.
//! - [`export`]: `maestro export`, a saved run's full report; [`compare`]: `maestro diff`;
//!   [`diff`]: comparing two runs as data (plans, outcomes, a line diff of the reports).
//! - [`presets`]: the presets a run may use (built in, the user's files) and `maestro presets`.
//! - [`tui`]: the dashboard (model / update / view, and the loop that owns the terminal).
//! - [`sanitize`]: strips escape sequences from model text before it reaches a terminal.
//! - [`mcp`]: MCP servers as a tool source: started on demand, their tools listed and called.
//! - [`store`]: saved runs in SQLite: a writer thread fed by events, history queries.
//! - [`tools`]: the built-in tools a worker model may call (`fetch_url`, `read_file`,
//!   `list_dir`) and their policies: which hosts and folders, what sizes.
//!
//! The engine never imports terminal code, and front ends never do network or disk I/O on
//! their drawing path. See `docs/ARCHITECTURE.md` for the reasons behind the shape.

// The printing macros panic when a write fails (a full disk, a closed pipe); output that can
// fail is written through `Write` and its errors handled.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod cache;
pub mod cli;
pub mod compare;
pub mod config;
pub mod context;
pub mod defaults;
pub mod diff;
pub mod display;
pub mod doctor;
pub mod engine;
pub mod export;
pub mod headless;
pub mod history;
pub mod llm;
pub mod mcp;
pub mod presets;
pub mod protocol;
pub mod report;
pub mod sanitize;
pub mod stats;
pub mod store;
pub mod timeline;
pub mod toolbox;
pub mod tools;
pub mod tui;
