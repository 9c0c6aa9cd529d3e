//! The `maestro` binary: parse the command line, set up logging to a file, check every input,
//! dispatch. Thin on purpose; everything it calls lives in the library.
//!
//! Every usage or input error (config, query, plan file, events path) is found here, before
//! anything runs, and exits 2. Messages go through `headless::say`, never the printing macros,
//! which panic when stderr cannot be written.

// The printing macros panic when a write fails (a full disk, a closed pipe); output that can
// fail is written through `Write` and its errors handled.
#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use maestro::cli::{Cli, CommandLine};
use maestro::config::{Config, StoreConfig};
use maestro::headless::{self, exit, say};
use maestro::sanitize::sanitize_line;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log_guard = init_logging();
    // Headless commands take a single-thread runtime. Their work is tiny per event (an SSE chunk
    // parsed, a state-machine step, a progress line) and mostly waiting, so a pool of workers
    // buys no speed; it only costs a cross-thread wake-up (futex, context switch) for nearly
    // every event handed between the engine, the calls and the printer. The dashboard keeps
    // the multi-thread runtime, so drawing a frame never delays reading a stream.
    let runtime = match cli.command {
        Some(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        None => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            say(&format!("maestro: cannot start the async runtime: {e}"));
            return ExitCode::from(exit::FAILED as u8);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    // Calls still in flight (a cancelled run's) must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code as u8)
}

async fn dispatch(cli: Cli) -> i32 {
    // The doctor reads the configuration itself: a broken one is what it reports on.
    if let Some(CommandLine::Doctor) = cli.command {
        return maestro::doctor::doctor(&cli.engine).await;
    }
    // Presets need only the config file and the presets folder, never a provider or its key.
    if let Some(CommandLine::Presets(args)) = &cli.command {
        return presets(&cli.engine, args);
    }
    // Saved runs: these need only the database, never a provider or its key.
    if let Some(code) = saved_runs(&cli) {
        return code;
    }
    if let Some(CommandLine::Resume(args)) = &cli.command {
        return resume(&cli, args).await;
    }
    // MCP servers need the config file only, never a provider or its key.
    if let Some(CommandLine::Mcp(args)) = &cli.command {
        return mcp(&cli, args).await;
    }
    let config = match Config::resolve(&cli.engine, &|var| std::env::var(var).ok()) {
        Ok(c) => c,
        Err(e) => {
            say(&format!("maestro: {e}"));
            return exit::USAGE;
        }
    };
    tracing::info!(provider = %config.describe(), "starting");
    let provider = maestro::cache::wrap(config.provider.build(), &config);
    let result = match cli.command {
        Some(CommandLine::Run(args)) => {
            let query = match headless::read_query(&args.query) {
                Ok(q) => q,
                Err(e) => return usage_error(e),
            };
            let mut config = config;
            if args.review || config.run.review {
                let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
                if !terminal {
                    if args.review {
                        say(&headless::review_needs_terminal(&query));
                        return exit::USAGE;
                    }
                    say(
                        "maestro: note: [planner] review is on, but there is no terminal to \
                         review the plan on; it runs unreviewed",
                    );
                }
                config.run.review = terminal;
            }
            let plan = match args.plan.as_deref().map(|path| {
                let plan = headless::read_plan(path)?;
                headless::validate_plan(&plan, path, &config)?;
                Ok(plan)
            }) {
                None => None,
                Some(Ok(plan)) => Some(plan),
                Some(Err(e)) => return usage_error(e),
            };
            let follow_up = match args
                .follow_up
                .as_deref()
                .map(|id| follow_up_of(&cli.engine, id))
            {
                None => None,
                Some(Ok(follow_up)) => Some(follow_up),
                Some(Err(code)) => return code,
            };
            let context =
                match maestro::context::gather(&query, &args.context, config.context_max_bytes) {
                    Ok(context) => context,
                    Err(e) => return usage_error(e.into()),
                };
            let events = match args.events.as_deref().map(headless::EventsFile::create) {
                None => None,
                Some(Ok(file)) => Some(file),
                Some(Err(e)) => return usage_error(e),
            };
            headless::run(
                config,
                provider,
                query,
                plan,
                follow_up,
                context,
                events,
                &args,
                &cli.engine,
            )
            .await
        }
        Some(CommandLine::Plan(args)) => {
            let query = match headless::read_query(&args.query) {
                Ok(q) => q,
                Err(e) => return usage_error(e),
            };
            let context =
                match maestro::context::gather(&query, &args.context, config.context_max_bytes) {
                    Ok(context) => context,
                    Err(e) => return usage_error(e.into()),
                };
            headless::plan(config, provider, query, context).await
        }
        Some(CommandLine::Models(args)) => {
            Ok(maestro::doctor::models(&config, provider, args.json).await)
        }
        Some(CommandLine::Doctor) => Ok(maestro::doctor::doctor(&cli.engine).await),
        // Handled above, before the config is resolved without the saved settings.
        Some(CommandLine::Resume(_))
        | Some(CommandLine::History(_))
        | Some(CommandLine::Show(_))
        | Some(CommandLine::Rm(_))
        | Some(CommandLine::Gc(_))
        | Some(CommandLine::Export(_))
        | Some(CommandLine::Diff(_))
        | Some(CommandLine::Cache(_))
        | Some(CommandLine::Presets(_))
        | Some(CommandLine::Stats(_))
        | Some(CommandLine::Mcp(_)) => return exit::USAGE,
        None => {
            let mut config = config;
            config.run.review |= cli.review;
            maestro::tui::run(config, provider).await
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            say(&format!("maestro: {}", sanitize_line(&format!("{e:#}"))));
            exit::FAILED
        }
    }
}

/// `history`, `show`, `rm`, `gc`, `export`, `diff` and `cache`; `None` for the other commands.
fn saved_runs(cli: &Cli) -> Option<i32> {
    use maestro::history::{self, Failure, FailureKind};
    let command = cli.command.as_ref()?;
    match command {
        CommandLine::History(_)
        | CommandLine::Show(_)
        | CommandLine::Rm(_)
        | CommandLine::Gc(_)
        | CommandLine::Export(_)
        | CommandLine::Diff(_)
        | CommandLine::Cache(_)
        | CommandLine::Stats(_) => {}
        CommandLine::Resume(_)
        | CommandLine::Run(_)
        | CommandLine::Plan(_)
        | CommandLine::Models(_)
        | CommandLine::Doctor
        | CommandLine::Presets(_)
        | CommandLine::Mcp(_) => return None,
    }
    let store = match StoreConfig::resolve(&cli.engine) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("maestro: {e}"));
            return Some(exit::USAGE);
        }
    };
    let prices = match maestro::config::resolve_prices(&cli.engine) {
        Ok(p) => p,
        Err(e) => {
            say(&format!("maestro: {e}"));
            return Some(exit::USAGE);
        }
    };
    let mut stdout = std::io::stdout().lock();
    let result = match command {
        CommandLine::History(args) => history::history(&store, &prices, args, &mut stdout),
        CommandLine::Show(args) => {
            history::show(&store, &prices, &args.id, args.format, &mut stdout)
        }
        CommandLine::Rm(args) => history::rm(&store, args, &mut stdout),
        CommandLine::Gc(args) => history::gc(&store, args, &mut stdout),
        CommandLine::Export(args) => maestro::export::export(&store, args, &mut stdout),
        CommandLine::Diff(args) => {
            maestro::compare::diff(&store, args, colour_stdout(), &mut stdout)
        }
        CommandLine::Cache(args) => maestro::cache::command(&store, args, &mut stdout),
        CommandLine::Stats(args) => maestro::stats::command(&store, &prices, args, &mut stdout),
        CommandLine::Resume(_)
        | CommandLine::Run(_)
        | CommandLine::Plan(_)
        | CommandLine::Models(_)
        | CommandLine::Doctor
        | CommandLine::Presets(_)
        | CommandLine::Mcp(_) => return None,
    };
    Some(match result {
        Ok(()) => exit::OK,
        Err(Failure { kind, message }) => {
            say(&format!("maestro: {}", sanitize_line(&message)));
            match kind {
                FailureKind::Usage => exit::USAGE,
                FailureKind::Store => exit::FAILED,
                FailureKind::Output => exit::OUTPUT,
            }
        }
    })
}

/// `maestro presets` and `maestro presets show NAME`.
fn presets(engine: &maestro::cli::EngineArgs, args: &maestro::cli::PresetsArgs) -> i32 {
    use maestro::presets::{self, ShowError};
    let (catalogue, in_use) = match maestro::config::preset_catalogue(engine) {
        Ok(found) => found,
        Err(e) => {
            say(&format!("maestro: {e}"));
            return exit::USAGE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    match &args.action {
        None => match presets::list(&catalogue, &in_use, args.json, &mut stdout) {
            Ok(()) => exit::OK,
            Err(e) => {
                say(&format!("maestro: cannot write the list: {e}"));
                exit::OUTPUT
            }
        },
        Some(maestro::cli::PresetsAction::Show { name }) => {
            match presets::show(&catalogue, name, &mut stdout) {
                Ok(()) => exit::OK,
                Err(e @ ShowError::Unknown(_)) => {
                    say(&format!("maestro: {e}"));
                    exit::USAGE
                }
                Err(e @ ShowError::Output(_)) => {
                    say(&format!("maestro: {e}"));
                    exit::OUTPUT
                }
            }
        }
    }
}

/// `maestro mcp list`: the configured MCP servers and their tools.
async fn mcp(cli: &Cli, args: &maestro::cli::McpArgs) -> i32 {
    let maestro::cli::McpAction::List { json } = args.action;
    let file = match maestro::config::FileConfig::load(cli.engine.config.as_deref()) {
        Ok((file, _)) => file,
        Err(e) => {
            say(&format!("maestro: {e}"));
            return exit::USAGE;
        }
    };
    if let Err(e) = file.mcp.validate() {
        say(&format!("maestro: {e}"));
        return exit::USAGE;
    }
    if file.mcp.servers.is_empty() {
        say("maestro: no MCP servers are configured (add [[mcp.servers]] to the config file)");
        return exit::OK;
    }
    let mut stdout = std::io::stdout().lock();
    match maestro::mcp::list(&file.mcp, json, &mut stdout).await {
        Ok(notices) if notices.is_empty() => exit::OK,
        Ok(notices) => {
            for notice in notices {
                say(&format!("maestro: {notice}"));
            }
            exit::FAILED
        }
        Err(e) => {
            say(&format!("maestro: cannot write the list: {e}"));
            exit::OUTPUT
        }
    }
}

/// `maestro resume`: the saved run, its settings under the flags, then the run.
async fn resume(cli: &Cli, args: &maestro::cli::ResumeArgs) -> i32 {
    use maestro::history;
    let store = match StoreConfig::resolve(&cli.engine) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("maestro: {e}"));
            return exit::USAGE;
        }
    };
    let found = history::open_store(&store).and_then(|db| {
        let saved = history::resolve(&db, &args.id)?;
        let parent = history::parent_of(&db, &saved);
        Ok((saved, parent))
    });
    let (saved, parent) = match found {
        Ok(found) => found,
        Err(failure) => {
            say(&format!("maestro: {}", sanitize_line(&failure.message)));
            return match failure.kind {
                history::FailureKind::Usage => exit::USAGE,
                history::FailureKind::Store | history::FailureKind::Output => exit::FAILED,
            };
        }
    };
    if saved.summary.status == maestro::store::SavedRunStatus::Running {
        say(&format!(
            "maestro: run {} is running in another maestro process; resume it when that ends",
            saved.summary.short_id
        ));
        return exit::USAGE;
    }
    let settings: history::SavedSettings =
        serde_json::from_value(saved.settings.clone()).unwrap_or_default();
    let mut engine_args = settings.under(&cli.engine);
    // The saved run's preset, unless the command line names one.
    if engine_args.preset.is_none() {
        engine_args.preset = saved.preset.clone();
    }
    let config = match Config::resolve(&engine_args, &|var| std::env::var(var).ok()) {
        Ok(c) => c,
        Err(e) => {
            say(&format!("maestro: {e}"));
            return exit::USAGE;
        }
    };
    let events = match args.events.as_deref().map(headless::EventsFile::create) {
        None => None,
        Some(Ok(file)) => Some(file),
        Some(Err(e)) => return usage_error(e),
    };
    tracing::info!(provider = %config.describe(), run = %saved.summary.id, "resuming");
    let provider = maestro::cache::wrap(config.provider.build(), &config);
    match headless::resume(
        config,
        provider,
        &saved,
        parent.as_ref(),
        events,
        args,
        &engine_args,
    )
    .await
    {
        Ok(code) => code,
        Err(e) => {
            say(&format!("maestro: {}", sanitize_line(&format!("{e:#}"))));
            exit::FAILED
        }
    }
}

/// The saved run `id` as a follow-up's context, or the exit code when it cannot be read: an id
/// that names no run (or several) is a usage error.
fn follow_up_of(
    engine: &maestro::cli::EngineArgs,
    id: &str,
) -> Result<maestro::protocol::FollowUp, i32> {
    use maestro::history;
    let store = StoreConfig::resolve(engine).map_err(|e| {
        say(&format!("maestro: {e}"));
        exit::USAGE
    })?;
    let saved = history::open_store(&store)
        .and_then(|db| history::resolve(&db, id))
        .map_err(|failure| {
            say(&format!(
                "maestro: --follow-up: {}",
                sanitize_line(&failure.message)
            ));
            match failure.kind {
                history::FailureKind::Usage => exit::USAGE,
                history::FailureKind::Store | history::FailureKind::Output => exit::FAILED,
            }
        })?;
    Ok(history::follow_up_of(&saved))
}

/// Colour on stdout: a terminal, and `NO_COLOR` unset or empty.
fn colour_stdout() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn usage_error(e: anyhow::Error) -> i32 {
    // Errors can quote a plan file or stdin, which may hold anything.
    say(&format!("maestro: {}", sanitize_line(&format!("{e:#}"))));
    exit::USAGE
}

/// Logs go to `maestro.log` in the platform data dir (never to the screen). `MAESTRO_LOG`
/// sets the filter (default `info`). If the directory cannot be made, there are no logs.
fn init_logging() -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let dir = maestro::config::data_dir()?;
    std::fs::create_dir_all(&dir).ok()?;
    let appender = tracing_appender::rolling::never(&dir, "maestro.log");
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAESTRO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .try_init()
        .ok()?;
    Some(guard)
}
