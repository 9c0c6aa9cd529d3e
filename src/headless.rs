//! `maestro run`, `maestro resume` and `maestro plan`: the engine without the dashboard.
//!
//! Consumes the same events the dashboard does, and feeds them to the run store in order
//! (`history::Saving`). Progress goes to stderr (a line per event, or
//! a compact live view when stderr is a terminal), the report to stdout, every event to
//! `--events FILE`. Model text is sanitised before it reaches either stream; JSON output is
//! escaped by the serialiser. Ctrl-C, SIGTERM and SIGHUP cancel the run cleanly and still
//! print what finished; a second one quits at once.
//!
//! Output never panics: stderr is best effort (a failed write stops progress and is logged),
//! and a failed write of the report or the events file becomes exit code [`exit::OUTPUT`].
//! Nothing here uses the printing macros, which panic when a write fails.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use crossterm::style::Stylize;

use crate::cli::{EngineArgs, Format, ResumeArgs, RunArgs};
use crate::config::Config;
use crate::display::{clock, duration, now_ms, spinner, status_glyph, tokens, truncate};
use crate::engine::executor::{Engine, EngineHandle};
use crate::history::{self, Saving};
use crate::llm::Provider;
use crate::protocol::{
    Attachments, Command, Event, EventKind, FollowUp, ModelOverrides, Plan, RunCommand, RunId,
    RunStatus, SubtaskStatus,
};
use crate::report::RunReport;
use crate::sanitize::sanitize_line;

/// Exit codes of `maestro run` (and `plan`).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const PARTIAL: i32 = 3;
    /// The run ended, but the report (stdout) or the events file could not be written in
    /// full. Replaces `OK` and `PARTIAL` only: a failed or interrupted run keeps its own code.
    pub const OUTPUT: i32 = 4;
    /// Interrupted by SIGHUP (128 + 1).
    pub const HANGUP: i32 = 129;
    /// Interrupted by SIGINT, Ctrl-C (128 + 2).
    pub const INTERRUPTED: i32 = 130;
    /// Interrupted by SIGTERM (128 + 15).
    pub const TERMINATED: i32 = 143;
}

/// The exit code for how a run ended.
pub fn exit_code(status: Option<RunStatus>) -> i32 {
    match status {
        Some(RunStatus::Succeeded) => exit::OK,
        Some(RunStatus::Partial) => exit::PARTIAL,
        Some(RunStatus::Failed) | None => exit::FAILED,
        Some(RunStatus::Cancelled) => exit::INTERRUPTED,
    }
}

/// The code once output is accounted for: a report or events file that could not be written
/// turns success and partial success into [`exit::OUTPUT`]; worse outcomes keep their code.
fn with_output(code: i32, output_failed: bool) -> i32 {
    if output_failed && matches!(code, exit::OK | exit::PARTIAL) {
        exit::OUTPUT
    } else {
        code
    }
}

/// Write a line to stderr, ignoring failure: for the last words of the program (an error
/// message before exit), where there is nothing better to do. The line also goes to the log.
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    if let Err(e) = writeln!(err, "{line}").and_then(|()| err.flush()) {
        tracing::warn!(error = %e, message = line, "cannot write to stderr");
    }
}

/// Read the query, from standard input when it is `-`.
pub fn read_query(query: &str) -> anyhow::Result<String> {
    let text = if query == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the query from stdin")?
    } else {
        query.to_owned()
    };
    let text = text.trim().to_owned();
    anyhow::ensure!(!text.is_empty(), "the query is empty");
    Ok(text)
}

/// Read `--plan FILE` exactly as a planner's answer is read (same lenient defaults); the run
/// checks it. Values that had to be replaced are reported on stderr.
pub fn read_plan(path: &Path) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read plan file {}", path.display()))?;
    let (plan, warnings) = crate::engine::plan::read_plan_text(&text)
        .with_context(|| format!("plan file {} is not a valid plan", path.display()))?;
    for warning in warnings {
        say(&format!("maestro: plan file: {}", sanitize_line(&warning)));
    }
    Ok(plan)
}

/// Check a plan file the way the engine will, before anything runs, so that a cycle or a
/// duplicate id is a usage error (exit 2) and not a failed run.
pub fn validate_plan(plan: &Plan, path: &Path, config: &Config) -> anyhow::Result<()> {
    crate::engine::plan::check_plan(plan.clone(), &config.run.plan_rules())
        .map(|_| ())
        .with_context(|| format!("plan file {} is not a valid plan", path.display()))
}

/// `--events FILE`: one JSON object per line, each line written whole with one write and no
/// buffer, so a process that is killed leaves only whole lines behind.
pub struct EventsFile {
    file: std::fs::File,
    line: Vec<u8>,
}

impl EventsFile {
    /// Create (or truncate) the file. Called before the run starts: a path that cannot be
    /// created is a usage error.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create events file {}", path.display()))?;
        Ok(Self {
            file,
            line: Vec::new(),
        })
    }

    fn write(&mut self, event: &Event) -> std::io::Result<()> {
        self.line.clear();
        crate::sanitize::write_json_line(&mut self.line, event)?;
        self.line.push(b'\n');
        self.file.write_all(&self.line)
    }
}

/// Which signal interrupted the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    Int,
    Term,
    Hup,
}

impl Interrupt {
    fn code(self) -> i32 {
        match self {
            Self::Int => exit::INTERRUPTED,
            Self::Term => exit::TERMINATED,
            Self::Hup => exit::HANGUP,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Int => "Ctrl-C",
            Self::Term => "SIGTERM",
            Self::Hup => "SIGHUP",
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP as a stream. Installed before the run starts, so none of them
/// kills the process with the default action while a run is in flight.
struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for a signal");
                    None
                }
            };
            Self {
                int: listen(SignalKind::interrupt()),
                term: listen(SignalKind::terminate()),
                hup: listen(SignalKind::hangup()),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn next(&mut self) -> Interrupt {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        if s.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = recv(&mut self.int) => Interrupt::Int,
                () = recv(&mut self.term) => Interrupt::Term,
                () = recv(&mut self.hup) => Interrupt::Hup,
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            Interrupt::Int
        }
    }
}

/// `maestro run`. Returns the exit code. The run is saved as it happens unless saving is off
/// or the database cannot be opened (then a one-line warning, and the run goes on). With
/// `follow_up` (`--follow-up ID`) it builds on that earlier run and records it as its parent.
/// `context` holds the files attached with `@path` and `--context`, saved with the run.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    config: Config,
    provider: Arc<dyn Provider>,
    query: String,
    plan: Option<Plan>,
    follow_up: Option<FollowUp>,
    context: Attachments,
    events_file: Option<EventsFile>,
    args: &RunArgs,
    engine_args: &EngineArgs,
) -> anyhow::Result<i32> {
    let signals = Signals::install();
    let mut saving = open_saving(&config);
    let id = RunId::new();
    let parent = follow_up.as_ref().map(|f| f.parent);
    // The run's row is written before the engine can make its first call.
    let mut meta = history::run_meta(id, &query, &config, engine_args, parent);
    meta.context = context.clone();
    if let Some(why) = saving.begin(meta) {
        say(&format!(
            "maestro: warning: this run is not saved: {}",
            sanitize_line(&why)
        ));
    }
    let mut output = Output::new(args.format, args.quiet, parent, Vec::new());
    if config.run.review {
        output.review = Some(ReviewSetup::for_config(&config));
    }
    let (engine, events, output, describe, servers) = spawn(config, provider, output);
    engine.send(Command::StartRun {
        id,
        query,
        plan,
        models: ModelOverrides::default(),
        follow_up: follow_up.map(Box::new),
        context,
    });
    let code = drive(
        engine,
        events,
        id,
        signals,
        saving,
        events_file,
        output,
        describe,
    )
    .await;
    servers.stop().await;
    code
}

/// `maestro resume`: go on with a saved run under its old id. Saved results are facts; only
/// what has none is called again. A run saved before it had a plan is planned again.
pub async fn resume(
    mut config: Config,
    provider: Arc<dyn Provider>,
    saved: &crate::store::SavedRun,
    parent: Option<&crate::store::SavedRun>,
    events_file: Option<EventsFile>,
    args: &ResumeArgs,
    engine_args: &EngineArgs,
) -> anyhow::Result<i32> {
    // A resumed run was reviewed when it started, if it was to be.
    config.run.review = false;
    let signals = Signals::install();
    let mut saving = open_saving(&config);
    let id = saved.summary.id;
    let meta = history::run_meta(
        id,
        &saved.summary.query,
        &config,
        engine_args,
        saved.summary.parent,
    );
    if let Some(why) = saving.begin(meta) {
        say(&format!(
            "maestro: warning: this run is not saved: {}",
            sanitize_line(&why)
        ));
    }
    // What the saved calls spent, and the sources behind the saved results: the resumed run
    // restates results, not calls.
    let mut output = Output::new(
        args.format,
        args.quiet,
        saved.summary.parent,
        history::saved_calls(saved),
    );
    output.restored_sources = history::restored_sources(saved);
    let (engine, events, output, describe, servers) = spawn(config, provider, output);
    match history::resume_input(saved, parent) {
        Some(input) => {
            saving.resuming(id, &input);
            engine.resume_run(id, input);
        }
        None => engine.send(Command::StartRun {
            id,
            query: saved.summary.query.clone(),
            plan: None,
            models: ModelOverrides::default(),
            follow_up: None,
            context: history::context_of(saved),
        }),
    }
    let code = drive(
        engine,
        events,
        id,
        signals,
        saving,
        events_file,
        output,
        describe,
    )
    .await;
    servers.stop().await;
    code
}

fn open_saving(config: &Config) -> Saving {
    let (saving, warning) = Saving::open(&config.store);
    if let Some(why) = warning {
        say(&format!(
            "maestro: warning: runs are not saved: {}",
            sanitize_line(&why)
        ));
    }
    saving
}

/// The engine of one headless run (with the tools the configuration gives workers), the
/// report's settings completed from the configuration, the one line describing the setup,
/// and the MCP servers to stop when the run is over.
fn spawn(
    config: Config,
    provider: Arc<dyn Provider>,
    mut output: Output,
) -> (
    crate::engine::executor::EngineHandle,
    tokio::sync::mpsc::UnboundedReceiver<Event>,
    Output,
    String,
    crate::toolbox::McpServers,
) {
    let describe = config.describe();
    output.prices = Arc::new(config.prices.clone());
    output.preset = config.run.preset.name.clone();
    output.limit = Some(config.run.concurrency);
    let (tools, servers) = config.toolbox();
    let (engine, events) = Engine::spawn_with_tools(provider, tools, config.run, config.executor);
    (engine, events, output, describe, servers)
}

/// How the report is printed.
struct Output {
    format: Format,
    quiet: bool,
    /// The run this one follows up on, for the report.
    parent: Option<RunId>,
    /// The preset the run uses, for the report.
    preset: String,
    /// The workers' concurrency limit, for the report's timeline.
    limit: Option<usize>,
    /// Prices for the report's cost figures.
    prices: Arc<crate::engine::cost::PriceTable>,
    /// Calls made before this process (a resumed run's), so its cost is the whole run's.
    earlier_calls: Vec<crate::report::CallSpend>,
    /// The sources of a resumed run's saved results, so its report still lists them.
    restored_sources: Vec<(
        crate::protocol::SubtaskId,
        u32,
        Vec<crate::protocol::Source>,
    )>,
    /// The plan is reviewed on the terminal before the run goes on (`--review`).
    review: Option<ReviewSetup>,
}

impl Output {
    /// How to print; `spawn` fills in what the configuration says (prices, preset, limit).
    fn new(
        format: Format,
        quiet: bool,
        parent: Option<RunId>,
        earlier_calls: Vec<crate::report::CallSpend>,
    ) -> Self {
        Self {
            format,
            quiet,
            parent,
            preset: String::new(),
            limit: None,
            prices: Arc::default(),
            earlier_calls,
            restored_sources: Vec::new(),
            review: None,
        }
    }
}

/// Follow one run to its end: progress, events file, store, signals, then the report.
#[allow(clippy::too_many_arguments)]
async fn drive(
    engine: EngineHandle,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    id: RunId,
    mut signals: Signals,
    mut saving: Saving,
    mut events_file: Option<EventsFile>,
    args: Output,
    describe: String,
) -> anyhow::Result<i32> {
    let mut progress = Progress::new(
        !args.quiet,
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        describe,
    );
    let mut report = RunReport::priced(args.prices.clone());
    report.parent = args.parent;
    report.preset = args.preset;
    report.limit = args.limit;
    report.calls = args.earlier_calls.clone();
    report.restored_sources = args.restored_sources.clone();
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut interrupted: Option<Interrupt> = None;
    let mut events_error = None;
    // The provider was paused: nobody is here to resume it, so the run ends, its finished
    // work saved, and the exit code says it failed.
    let mut provider_paused = false;
    // The person's answer to the plan under review, while it is awaited.
    let mut reviewing: Option<tokio::sync::oneshot::Receiver<Option<Plan>>> = None;

    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                if let Some(file) = events_file.as_mut()
                    && let Err(e) = file.write(&event)
                {
                    // One failure is enough: the file would have a hole from here on.
                    tracing::error!(error = %e, "writing the events file failed");
                    events_error = Some(e.to_string());
                    events_file = None;
                }
                saving.event(&event);
                report.apply(&event);
                progress.on_event(&event, &report);
                // Headless, a budget that is reached means: write the report from what
                // succeeded, naming what was skipped.
                let answer = match &event.kind {
                    EventKind::RunFinished { .. } => break,
                    EventKind::BudgetReached { .. } => Some(RunCommand::SynthesizeNow),
                    EventKind::ProviderPaused { .. } if event.run == id => {
                        provider_paused = true;
                        Some(RunCommand::CancelRun)
                    }
                    EventKind::PlanAwaitingReview { plan } if event.run == id => {
                        match &args.review {
                            Some(setup) => {
                                // The live block would draw over the dialogue.
                                progress.clear();
                                reviewing = Some(start_review(setup.clone(), plan.clone()));
                                None
                            }
                            // Nobody asked to review here: the plan runs as it is.
                            None => Some(RunCommand::ApprovePlan { plan: plan.clone() }),
                        }
                    }
                    // The dialogue approves only plans without problems, so the engine should
                    // never refuse one; if it did, nobody could answer again: end the run
                    // rather than wait forever.
                    EventKind::CommandRefused {
                        refusal: crate::protocol::Refusal::PlanInvalid { .. },
                        ..
                    } if event.run == id => Some(RunCommand::CancelRun),
                    _ => None,
                };
                if let Some(command) = answer {
                    saving.command(id, &command);
                    engine.steer(id, command);
                }
            }
            answer = async {
                match reviewing.as_mut() {
                    Some(rx) => rx.await.ok().flatten(),
                    None => std::future::pending().await,
                }
            }, if reviewing.is_some() => {
                reviewing = None;
                let command = match answer {
                    Some(plan) => RunCommand::ApprovePlan { plan },
                    None => {
                        progress.note("plan review cancelled");
                        RunCommand::CancelRun
                    }
                };
                saving.command(id, &command);
                engine.steer(id, command);
            }
            signal = signals.next() => {
                if interrupted.is_some() {
                    progress.clear();
                    progress.say("maestro: interrupted");
                    return Ok(signal.code());
                }
                interrupted = Some(signal);
                progress.note(&format!(
                    "cancelling ({}; send it again to quit at once)…",
                    signal.name()
                ));
                saving.command(id, &RunCommand::CancelRun);
                engine.steer(id, RunCommand::CancelRun);
            }
            _ = ticker.tick(), if progress.live && reviewing.is_none() => progress.redraw(&report),
        }
    }
    engine.send(crate::protocol::Command::Shutdown);
    saving.close();
    progress.finish(&report);
    let mut output_failed = false;
    if let Some(e) = events_error {
        output_failed = true;
        progress.say(&format!(
            "maestro: writing the events file failed, it is incomplete: {}",
            sanitize_line(&e)
        ));
    }

    let printed = {
        let mut stdout = std::io::stdout().lock();
        let written = match args.format {
            Format::Markdown => write!(stdout, "{}", report.to_markdown()),
            Format::Json => crate::sanitize::write_json(&mut stdout, &report.to_json())
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(stdout)),
        };
        written.and_then(|()| stdout.flush())
    };
    if let Err(e) = printed {
        tracing::error!(error = %e, "writing the report failed");
        output_failed = true;
        progress.say(&format!("maestro: cannot write the report to stdout: {e}"));
    }
    let code = match interrupted {
        Some(signal) => signal.code(),
        None if provider_paused => exit::FAILED,
        None => exit_code(report.status),
    };
    Ok(with_output(code, output_failed))
}

/// `maestro plan`: plan only, print the plan JSON. The planner sees the attached files.
pub async fn plan(
    mut config: Config,
    provider: Arc<dyn Provider>,
    query: String,
    context: Attachments,
) -> anyhow::Result<i32> {
    config.run.stop_after_plan = true;
    let (engine, mut events) = Engine::spawn(provider, config.run, config.executor);
    engine.send(Command::StartRun {
        id: RunId::new(),
        query,
        plan: None,
        models: ModelOverrides::default(),
        follow_up: None,
        context,
    });
    let mut plan = None;
    let mut failure = None;
    while let Some(event) = events.recv().await {
        match event.kind {
            EventKind::PlanReady { plan: p } => plan = Some(p),
            EventKind::Notice { message } => say(&format!("maestro: {}", sanitize_line(&message))),
            EventKind::ContextAttached { files, skipped } => {
                say(&format!("maestro: {}", context_line(&files, &skipped)));
            }
            EventKind::PlanRejected { error, .. } => say(&format!(
                "maestro: the planner's answer was rejected: {}",
                sanitize_line(&error)
            )),
            EventKind::PlanningRetrying {
                delay_ms, reason, ..
            } => say(&format!(
                "maestro: planner call failed ({reason}); retrying in {}",
                duration(delay_ms)
            )),
            EventKind::RunFinished { error, .. } => {
                failure = error;
                break;
            }
            _ => {}
        }
    }
    engine.send(crate::protocol::Command::Shutdown);
    match plan {
        Some(plan) => {
            let mut stdout = std::io::stdout().lock();
            let printed = crate::sanitize::write_json(&mut stdout, &plan)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(stdout))
                .and_then(|()| stdout.flush());
            match printed {
                Ok(()) => Ok(exit::OK),
                Err(e) => {
                    tracing::error!(error = %e, "writing the plan failed");
                    say(&format!("maestro: cannot write the plan to stdout: {e}"));
                    Ok(exit::OUTPUT)
                }
            }
        }
        None => {
            say(&format!(
                "maestro: {}",
                sanitize_line(failure.as_deref().unwrap_or("planning failed"))
            ));
            Ok(exit::FAILED)
        }
    }
}

// ---- plan review ------------------------------------------------------------------------------

/// `maestro run --review` without a terminal: what to do instead, with the query quoted for a
/// POSIX shell.
pub fn review_needs_terminal(query: &str) -> String {
    format!(
        "maestro: --review needs a terminal (stdin and stderr) to review the plan on; \
         review it in a file instead:\n  maestro plan {} > plan.json; $EDITOR plan.json; \
         maestro run --plan plan.json",
        shell_quote(&sanitize_line(query))
    )
}

/// `text` as one word for a POSIX shell: in single quotes, each `'` written `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// What a headless review needs: the run's settings (roles, models, limits), prices and the
/// saved calls the estimate learns from.
#[derive(Clone)]
pub struct ReviewSetup {
    pub settings: crate::engine::run::RunSettings,
    pub prices: Arc<crate::engine::cost::PriceTable>,
    pub history: Arc<Vec<crate::store::CallRecord>>,
}

impl ReviewSetup {
    /// For `config`, with the saved calls of its store (none when it cannot be read).
    pub fn for_config(config: &Config) -> Self {
        let history = crate::stats::load(&config.store, None).unwrap_or_default();
        Self {
            settings: config.run.clone(),
            prices: Arc::new(config.prices.clone()),
            history: Arc::new(history),
        }
    }
}

/// Review `plan` on the terminal in a thread of its own (reading stdin blocks); the answer
/// is the plan to approve, or `None` to cancel. A thread rather than a blocking task, so a
/// signal that ends the run does not wait for the person's next key.
fn start_review(setup: ReviewSetup, plan: Plan) -> tokio::sync::oneshot::Receiver<Option<Plan>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("plan-review".into())
        .spawn(move || {
            let mut input = std::io::stdin().lock();
            let mut err = std::io::stderr();
            let answer = review_session(&setup, plan, &mut input, &mut err, &run_editor);
            let _ = tx.send(answer);
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the plan review");
    }
    rx
}

/// The plan as a compact table: id, role, model, dependencies, title; sanitised.
pub fn review_table(plan: &Plan, settings: &crate::engine::run::RunSettings) -> Vec<String> {
    let rows: Vec<[String; 5]> = plan
        .subtasks
        .iter()
        .map(|s| {
            let deps: Vec<&str> = s.depends_on.iter().map(|d| d.as_str()).collect();
            [
                sanitize_line(s.id.as_str()).into_owned(),
                sanitize_line(&s.worker).into_owned(),
                sanitize_line(&settings.subtask_model(s)).into_owned(),
                if deps.is_empty() {
                    "-".to_owned()
                } else {
                    sanitize_line(&deps.join(",")).into_owned()
                },
                truncate(&sanitize_line(&s.title), 60),
            ]
        })
        .collect();
    let header = ["id", "role", "model", "deps", "title"].map(str::to_owned);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let mut line = String::from("  ");
            for (w, cell) in widths.iter().zip(row.iter()) {
                line.push_str(&format!("{cell:<w$}  "));
            }
            line.push_str(&row[4]);
            line
        })
        .collect()
}

/// Runs the editor on a file; `Err` says why it could not.
type Editor<'a> = dyn Fn(&Path) -> Result<(), String> + 'a;

/// `$VISUAL`, else `$EDITOR`, else `vi`, through `sh` (so `EDITOR="code -w"` works), on the
/// terminal: its output goes to stderr, as the report owns stdout.
fn run_editor(path: &Path) -> Result<(), String> {
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".to_owned());
    #[cfg(unix)]
    let mut command = {
        use std::os::fd::AsFd;
        let stdout = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?;
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(path)
            .stdout(std::process::Stdio::from(stdout));
        command
    };
    #[cfg(not(unix))]
    let mut command = {
        let mut command = std::process::Command::new(&editor);
        command.arg(path);
        command
    };
    let status = command
        .status()
        .map_err(|e| format!("cannot run {editor}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{editor} exited with {status}"))
    }
}

/// The review dialogue: show the plan and its estimate, then `a` approves, `e` edits it in the
/// editor (read back as `--plan` is, every problem shown), `c` or the end of input cancels.
/// Returns the plan to approve, which has no problem.
fn review_session(
    setup: &ReviewSetup,
    plan: Plan,
    input: &mut dyn std::io::BufRead,
    out: &mut dyn Write,
    editor: &Editor<'_>,
) -> Option<Plan> {
    let rules = setup.settings.plan_rules();
    let mut plan = plan;
    // The text last edited, so a plan with problems is edited again where it was left.
    let mut text: Option<String> = None;
    let mut problems = crate::engine::plan::review_problems(&plan, &rules);
    let mut show = true;
    loop {
        if show {
            let _ = writeln!(out, "\nplan for review: {} subtasks", plan.subtasks.len());
            for line in review_table(&plan, &setup.settings) {
                let _ = writeln!(out, "{line}");
            }
            let inputs =
                crate::stats::EstimateInputs::for_run(&setup.settings, &plan, &setup.prices);
            let estimate = crate::stats::plan_estimate(&plan, &setup.history, &inputs);
            let _ = writeln!(out, "{}", estimate.line());
            show_problems(&problems, out);
        }
        show = false;
        let _ = write!(out, "approve [a] · edit in $EDITOR [e] · cancel [c] › ");
        let _ = out.flush();
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => {
                let _ = writeln!(out);
                return None;
            }
            Ok(_) => {}
        }
        match line.trim().to_lowercase().as_str() {
            "a" | "approve" => {
                if problems.is_empty() {
                    return Some(plan);
                }
                let _ = writeln!(out, "the plan cannot run yet:");
                show_problems(&problems, out);
            }
            "c" | "cancel" | "q" => return None,
            "e" | "edit" => {
                let current = match text.take() {
                    Some(t) => t,
                    None => match serde_json::to_string_pretty(&plan) {
                        Ok(t) => t + "\n",
                        Err(e) => {
                            let _ = writeln!(out, "cannot write the plan: {e}");
                            continue;
                        }
                    },
                };
                match edit_text(&current, editor) {
                    Err(e) => {
                        let _ = writeln!(out, "{}", sanitize_line(&e));
                        text = Some(current);
                    }
                    Ok(edited) => match crate::engine::plan::read_plan_text(&edited) {
                        Err(e) => {
                            let _ = writeln!(
                                out,
                                "the edited plan is not valid: {}",
                                sanitize_line(&e.to_string())
                            );
                            text = Some(edited);
                        }
                        Ok((edited_plan, warnings)) => {
                            for warning in warnings {
                                let _ = writeln!(out, "note: {}", sanitize_line(&warning));
                            }
                            problems = crate::engine::plan::review_problems(&edited_plan, &rules);
                            if !problems.is_empty() {
                                text = Some(edited);
                            }
                            plan = edited_plan;
                            show = true;
                        }
                    },
                }
            }
            "" => {}
            other => {
                let _ = writeln!(out, "unknown answer `{}`", sanitize_line(other));
            }
        }
    }
}

fn show_problems(problems: &[crate::engine::plan::PlanProblem], out: &mut dyn Write) {
    for problem in problems {
        let _ = writeln!(out, "  ✗ {}", sanitize_line(&problem.message));
    }
}

/// Write `text` to a new temporary file, let the editor change it, read it back; the file is
/// removed either way.
fn edit_text(text: &str, editor: &Editor<'_>) -> Result<String, String> {
    let path = std::env::temp_dir().join(format!(
        "maestro-plan-{}-{}.json",
        std::process::id(),
        now_ms()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        file.write_all(text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        drop(file);
        editor(&path)?;
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// Progress on stderr: a line per event, or a live block redrawn in place on a terminal.
///
/// Stderr is best effort: the first failed write (a full disk, a closed pipe, a terminal that
/// went away) turns progress off for the rest of the run and is logged, so progress can never
/// take the run, or its report on stdout, down with it.
struct Progress {
    enabled: bool,
    live: bool,
    color: bool,
    /// False once a write to stderr failed: nothing more is written there.
    stderr_ok: bool,
    describe: String,
    /// Lines of the live block on screen now.
    drawn: u16,
    spinner: usize,
}

impl Progress {
    fn new(enabled: bool, terminal: bool, color: bool, describe: String) -> Self {
        Self {
            enabled,
            live: enabled && terminal,
            color: color && terminal,
            stderr_ok: true,
            describe,
            drawn: 0,
            spinner: 0,
        }
    }

    /// Write `text` (whole lines) to stderr, or give stderr up on the first error.
    fn emit(&mut self, text: &[u8]) {
        if !self.stderr_ok {
            return;
        }
        let mut err = std::io::stderr().lock();
        if let Err(e) = err.write_all(text).and_then(|()| err.flush()) {
            tracing::warn!(error = %e, "cannot write to stderr; progress output stops");
            self.stderr_ok = false;
            self.enabled = false;
            self.live = false;
            self.drawn = 0;
        }
    }

    /// A message that is shown even with `--quiet` (errors, interruption), if stderr works.
    fn say(&mut self, line: &str) {
        self.emit(format!("{line}\n").as_bytes());
        if !self.stderr_ok {
            tracing::warn!(message = line, "not shown: stderr is unwritable");
        }
    }

    fn on_event(&mut self, event: &Event, report: &RunReport) {
        if !self.enabled {
            return;
        }
        if self.live {
            // Notices and failures also stay in the scrollback above the live block.
            match &event.kind {
                EventKind::Notice { .. }
                | EventKind::CommandRefused { .. }
                | EventKind::PlanRejected { .. }
                | EventKind::SubtaskFailed { .. }
                | EventKind::ContextAttached { .. }
                | EventKind::BudgetReached { .. }
                | EventKind::SubtasksSkipped { .. }
                | EventKind::ProviderPaused { .. } => {
                    if let Some(line) = event_line(event, report) {
                        self.note(&line);
                    }
                }
                _ => {}
            }
            if !matches!(
                event.kind,
                EventKind::SubtaskDelta { .. }
                    | EventKind::SubtaskReasoning { .. }
                    | EventKind::SynthesisDelta { .. }
                    | EventKind::PlanningDelta { .. }
            ) {
                self.redraw(report);
            }
        } else if let Some(line) = event_line(event, report) {
            let at = report
                .started_ts
                .map(|t| event.ts_ms.saturating_sub(t))
                .unwrap_or(0);
            self.emit(format!("[{}] {line}\n", clock(at)).as_bytes());
        }
    }

    /// A line above the live block (or a plain line).
    fn note(&mut self, line: &str) {
        if !self.enabled {
            return;
        }
        self.clear();
        self.emit(format!("maestro: {line}\n").as_bytes());
    }

    fn clear(&mut self) {
        if self.drawn > 0 {
            let mut buf = Vec::new();
            let _ = crossterm::queue!(
                buf,
                crossterm::cursor::MoveToPreviousLine(self.drawn),
                crossterm::terminal::Clear(crossterm::terminal::ClearType::FromCursorDown)
            );
            self.drawn = 0;
            self.emit(&buf);
        }
    }

    fn redraw(&mut self, report: &RunReport) {
        if !self.live {
            return;
        }
        self.spinner = self.spinner.wrapping_add(1);
        let (columns, rows) = crossterm::terminal::size().unwrap_or((80, 24));
        let width = (columns as usize).saturating_sub(1).max(20);
        let mut lines = live_lines(report, &self.describe, self.spinner, now_ms());
        // A block taller than the screen could not be moved back over: keep it to the screen.
        let room = (rows as usize).saturating_sub(1).max(3);
        if lines.len() > room {
            let hidden = lines.len() - (room - 1);
            lines.truncate(room - 1);
            lines.push((None, format!("  … {hidden} more")));
        }
        self.clear();
        // One write for the whole block, so a failure cannot leave half of it behind.
        let mut block = String::new();
        for (status, line) in &lines {
            let line = truncate(line, width);
            let styled = match status {
                Some(s) if self.color => paint(*s, &line),
                _ => line,
            };
            block.push_str(&styled);
            block.push('\n');
        }
        self.emit(block.as_bytes());
        if self.live {
            self.drawn = lines.len() as u16;
        }
    }

    fn finish(&mut self, report: &RunReport) {
        if !self.enabled {
            return;
        }
        if self.live {
            self.redraw(report);
        }
        let succeeded = report.count(SubtaskStatus::Succeeded);
        let usage = report.tokens();
        let status = report.status.map(|s| s.word()).unwrap_or("stopped");
        let mut line = format!(
            "{status}: {succeeded}/{} subtasks · {} tokens · {}",
            report.subtasks.len(),
            tokens(usage.total()),
            report.elapsed_ms.map(duration).unwrap_or_default()
        );
        if let Some(e) = &report.error {
            line.push_str(&format!(" · {}", sanitize_line(e)));
        }
        self.drawn = 0;
        self.emit(format!("maestro: {line}\n").as_bytes());
    }
}

fn paint(status: SubtaskStatus, line: &str) -> String {
    match status {
        SubtaskStatus::Succeeded => line.green().to_string(),
        SubtaskStatus::Failed => line.red().to_string(),
        SubtaskStatus::Retrying => line.yellow().to_string(),
        SubtaskStatus::Blocked | SubtaskStatus::Cancelled => line.dark_grey().to_string(),
        SubtaskStatus::Pending | SubtaskStatus::Running => line.to_owned(),
        SubtaskStatus::Validating => line.cyan().to_string(),
    }
}

/// The live block: a header, a line per subtask, the synthesis.
fn live_lines(
    report: &RunReport,
    describe: &str,
    tick: usize,
    now: u64,
) -> Vec<(Option<SubtaskStatus>, String)> {
    let elapsed = report
        .elapsed_ms
        .or(report.started_ts.map(|t| now.saturating_sub(t)))
        .unwrap_or(0);
    let phase = if let Some(s) = report.status {
        s.word().to_owned()
    } else if report.plan.is_none() {
        "planning…".to_owned()
    } else if report.synthesizing {
        "synthesising…".to_owned()
    } else {
        format!(
            "{}/{} done",
            report.count(SubtaskStatus::Succeeded),
            report.subtasks.len()
        )
    };
    let mut lines = vec![(
        None,
        format!("maestro · {describe} · {} · {phase}", clock(elapsed)),
    )];
    let title_w = report
        .subtasks
        .iter()
        .map(|s| s.title.chars().count())
        .max()
        .unwrap_or(0)
        .min(36);
    for s in &report.subtasks {
        let glyph = if s.status == SubtaskStatus::Running {
            spinner(tick as u64)
        } else {
            status_glyph(s.status)
        };
        let title: String = sanitize_line(&s.title).chars().take(title_w).collect();
        let detail = match s.status {
            // Read from the planner's answer as it streams; not checked yet.
            _ if s.drafted => "planned".to_owned(),
            SubtaskStatus::Running => {
                let ms = s.started_ts.map(|t| now.saturating_sub(t)).unwrap_or(0);
                match s.current_tool() {
                    // The tool call it waits on, cut so the line stays one line.
                    Some(call) => format!(
                        "{:>6} · {}",
                        duration(ms),
                        sanitize_line(&format!("{} {}", call.tool, call.arguments))
                            .chars()
                            .take(60)
                            .collect::<String>()
                    ),
                    None => format!("{:>6}", duration(ms)),
                }
            }
            SubtaskStatus::Succeeded => format!(
                "{:>6} {:>6} tok{}",
                s.elapsed_ms.map(duration).unwrap_or_default(),
                tokens(s.tokens_in + s.tokens_out),
                if s.validation.flagged.is_some() {
                    " ⚑ flagged"
                } else {
                    ""
                }
            ),
            SubtaskStatus::Retrying => match &s.retry {
                Some((delay, reason)) => format!("retry in {} ({reason})", duration(*delay)),
                None => "retrying".into(),
            },
            SubtaskStatus::Failed => format!(
                "failed: {}",
                sanitize_line(s.error.as_deref().unwrap_or(""))
            ),
            SubtaskStatus::Blocked | SubtaskStatus::Pending if !s.waiting_on.is_empty() => format!(
                "after {}",
                s.waiting_on
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            other => other.word().to_owned(),
        };
        let attempts = if s.attempts > 1 {
            format!(" ×{}", s.attempts)
        } else {
            String::new()
        };
        lines.push((
            Some(s.status),
            format!(
                "  {glyph} {:<8} {:<9} {:<title_w$}  {detail}{attempts}",
                s.id.as_str(),
                s.worker,
                title
            ),
        ));
    }
    if report.synthesizing {
        let words = report.synthesis.split_whitespace().count();
        lines.push((
            None,
            format!("  {} synthesis · {words} words", spinner(tick as u64)),
        ));
    }
    lines
}

/// One progress line for an event, or `None` for events that are not worth a line (deltas).
fn event_line(event: &Event, report: &RunReport) -> Option<String> {
    let title = |id: &crate::protocol::SubtaskId| {
        report
            .subtask(id)
            .map(|s| format!("{id} \"{}\"", sanitize_line(&s.title)))
            .unwrap_or_else(|| id.to_string())
    };
    Some(match &event.kind {
        EventKind::RunStarted { query } => format!("run {}: {}", event.run, sanitize_line(query)),
        EventKind::PlanningStarted { attempt, model } => {
            format!("planning with {model} (attempt {attempt})")
        }
        EventKind::PlanningRetrying {
            delay_ms, reason, ..
        } => {
            format!(
                "planner call failed ({reason}); retrying in {}",
                duration(*delay_ms)
            )
        }
        EventKind::PlanRejected { error, .. } => {
            format!("plan rejected: {}", sanitize_line(error))
        }
        EventKind::PlanReady { plan } => format!("plan ready: {} subtasks", plan.subtasks.len()),
        EventKind::Notice { message } => format!("note: {}", sanitize_line(message)),
        EventKind::CommandRefused { refusal, .. } => {
            format!("note: {}", sanitize_line(&refusal.to_string()))
        }
        EventKind::SubtaskQueued {
            subtask,
            waiting_on,
        } => {
            if waiting_on.is_empty() {
                format!("· {} queued", title(subtask))
            } else {
                let ids: Vec<&str> = waiting_on.iter().map(|d| d.as_str()).collect();
                format!("· {} queued after {}", title(subtask), ids.join(", "))
            }
        }
        EventKind::SubtaskStarted {
            subtask,
            attempt,
            worker,
            model,
        } => {
            format!(
                "▶ {} started ({worker}, {model}, attempt {attempt})",
                title(subtask)
            )
        }
        EventKind::SubtaskDelta { .. }
        | EventKind::SubtaskReasoning { .. }
        | EventKind::SynthesisDelta { .. }
        | EventKind::PlanningDelta { .. }
        | EventKind::PlanDrafted { .. } => return None,
        EventKind::ToolCallStarted {
            subtask,
            tool,
            arguments,
            ..
        } => format!(
            "  {subtask} calls {} {}",
            sanitize_line(tool),
            sanitize_line(arguments)
        ),
        EventKind::ToolCallFinished {
            subtask,
            ok,
            ms,
            bytes,
            summary,
            ..
        } => format!(
            "  {subtask} tool {} ({}, {bytes} bytes): {}",
            if *ok { "done" } else { "failed" },
            duration(*ms),
            sanitize_line(summary)
        ),
        EventKind::SubtaskRetrying {
            subtask,
            attempt,
            delay_ms,
            reason,
            ..
        } => format!(
            "↻ {} attempt {attempt} failed ({reason}); retrying in {}",
            title(subtask),
            duration(*delay_ms)
        ),
        EventKind::SubtaskSucceeded {
            subtask,
            elapsed_ms,
            usage,
            cut_off,
            cached: false,
            ..
        } => format!(
            "✓ {} done in {} ({} in, {} out{}){}",
            title(subtask),
            duration(*elapsed_ms),
            tokens(usage.tokens_in),
            tokens(usage.tokens_out),
            if usage.estimated { ", estimated" } else { "" },
            if *cut_off {
                format!(", {}", crate::display::CUT_OFF)
            } else {
                String::new()
            }
        ),
        EventKind::SubtaskSucceeded {
            subtask,
            cached: true,
            ..
        } => format!(
            "✓ {} done ({}: an earlier identical call's answer, no tokens spent)",
            title(subtask),
            crate::display::CACHED
        ),
        EventKind::SubtaskFailed {
            subtask,
            attempt,
            error,
            ..
        } => format!(
            "✗ {} failed after {attempt} attempt{}: {}",
            title(subtask),
            if *attempt == 1 { "" } else { "s" },
            sanitize_line(error)
        ),
        EventKind::SubtaskBlocked {
            subtask,
            waiting_on,
        } => {
            let ids: Vec<&str> = waiting_on.iter().map(|d| d.as_str()).collect();
            format!("⊘ {} blocked by {}", title(subtask), ids.join(", "))
        }
        EventKind::SubtaskCancelled { subtask, .. } => format!("⊗ {} cancelled", title(subtask)),
        EventKind::SubtaskEdited {
            subtask, worker, ..
        } => {
            format!("✎ {} edited (role {worker})", title(subtask))
        }
        EventKind::SynthesisStarted { attempt, model } => {
            format!("synthesising with {model} (attempt {attempt})")
        }
        EventKind::SynthesisRetrying {
            delay_ms, reason, ..
        } => {
            format!(
                "synthesis call failed ({reason}); retrying in {}",
                duration(*delay_ms)
            )
        }
        EventKind::CallUsage { .. } => return None,
        EventKind::SynthesisCancelled { .. } => {
            "synthesis dropped (its subtasks changed, or the run was cancelled)".to_owned()
        }
        EventKind::SynthesisFinished {
            synthesized, error, ..
        } => {
            if *synthesized {
                "synthesis written".to_owned()
            } else {
                format!(
                    "synthesis failed ({}); the report joins the worker results unsynthesised",
                    sanitize_line(error.as_deref().unwrap_or("unknown error"))
                )
            }
        }
        EventKind::SubtaskValidating { subtask, model, .. } => {
            format!("◎ {} validating ({model})", title(subtask))
        }
        EventKind::SubtaskValidated {
            subtask,
            passed: true,
            reason,
            ..
        } => format!(
            "✓ {} passed validation: {}",
            title(subtask),
            sanitize_line(reason)
        ),
        EventKind::SubtaskValidated {
            subtask,
            flagged: false,
            reason,
            ..
        } => format!(
            "✗ {} failed validation: {}; running it again with the reason",
            title(subtask),
            sanitize_line(reason)
        ),
        EventKind::SubtaskValidated {
            subtask, reason, ..
        } => format!(
            "⚑ {} failed validation again; result kept, flagged: {}",
            title(subtask),
            sanitize_line(reason)
        ),
        EventKind::DirectAnswer { subtask } => format!(
            "direct answer: the query is straightforward; {}'s answer is the report, with no \
             synthesis",
            title(subtask)
        ),
        EventKind::RunFinished {
            status,
            elapsed_ms,
            succeeded,
            total,
            ..
        } => format!(
            "run {}: {succeeded}/{total} subtasks in {}",
            status.word(),
            duration(*elapsed_ms)
        ),
        EventKind::ContextAttached { files, skipped } => context_line(files, skipped),
        EventKind::BudgetReached { reason, waiting } => format!(
            "{reason}; {} subtask{} not started",
            waiting.len(),
            if waiting.len() == 1 { "" } else { "s" }
        ),
        EventKind::BudgetRaised {
            max_tokens,
            deadline_ms,
            max_cost_micros,
        } => crate::protocol::budget_raised_words(*max_tokens, *deadline_ms, *max_cost_micros),
        EventKind::SubtasksSkipped { subtasks, .. } => {
            let ids: Vec<&str> = subtasks.iter().map(|d| d.as_str()).collect();
            format!(
                "⊗ skipped for the budget: {}; writing the report from what succeeded",
                ids.join(", ")
            )
        }
        EventKind::ProviderPaused { message } => sanitize_line(message).into_owned(),
        EventKind::ProviderResumed => "provider resumed".to_owned(),
        EventKind::SubtaskWaiting {
            subtask,
            delay_ms,
            reason,
            ..
        } => format!(
            "… {} waiting {}: {}",
            title(subtask),
            duration(*delay_ms),
            sanitize_line(reason)
        ),
        EventKind::PlanAwaitingReview { plan } => {
            format!("plan awaiting review: {} subtasks", plan.subtasks.len())
        }
    })
}

/// `attached 2 files (3.1 KB): notes.md, docs/a.md; skipped logo.png (binary)`.
fn context_line(
    files: &[crate::protocol::ContextFile],
    skipped: &[crate::protocol::SkippedFile],
) -> String {
    let total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut line = format!(
        "attached {} file{} ({})",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        crate::display::bytes(total)
    );
    if !files.is_empty() {
        let names: Vec<String> = files
            .iter()
            .map(|f| sanitize_line(&f.path).into_owned())
            .collect();
        line.push_str(&format!(": {}", names.join(", ")));
    }
    if !skipped.is_empty() {
        let names: Vec<String> = skipped
            .iter()
            .map(|s| format!("{} ({})", sanitize_line(&s.path), sanitize_line(&s.reason)))
            .collect();
        line.push_str(&format!("; skipped {}", names.join(", ")));
    }
    line
}

#[cfg(test)]
mod validation_tests {
    use super::*;
    use crate::protocol::{
        Event, EventKind, Plan, PlannedSubtask, Priority, RunId, SubtaskId, Usage,
    };

    fn report_with_flag() -> (RunReport, Event) {
        let run = RunId::new();
        let event = |kind| Event {
            run,
            ts_ms: 1_000,
            kind,
        };
        let mut report = RunReport::default();
        report.apply(&event(EventKind::PlanReady {
            plan: Plan {
                query_analysis: String::new(),
                subtasks: vec![PlannedSubtask {
                    id: SubtaskId::new("a"),
                    worker: "research".into(),
                    title: "A".into(),
                    description: "A.".into(),
                    focus_areas: vec![],
                    depends_on: vec![],
                    priority: Priority::Medium,
                    reuse: None,
                    role_prompt: None,
                    model: None,
                }],
                synthesis_guidance: String::new(),
                complexity: None,
            },
        }));
        let flagged = event(EventKind::SubtaskValidated {
            subtask: SubtaskId::new("a"),
            attempt: 2,
            passed: false,
            reason: "no sources".into(),
            usage: Usage::default(),
            flagged: true,
        });
        report.apply(&flagged);
        report.apply(&event(EventKind::SubtaskSucceeded {
            subtask: SubtaskId::new("a"),
            attempt: 2,
            elapsed_ms: 10,
            usage: Usage::default(),
            result: "A".into(),
            cut_off: false,
            cached: false,
        }));
        (report, flagged)
    }

    #[test]
    fn a_flagged_result_is_marked_in_the_live_view_and_its_progress_line() {
        let (report, flagged) = report_with_flag();
        let lines = live_lines(&report, "demo", 0, 2_000);
        assert!(
            lines.iter().any(|(_, l)| l.contains("⚑ flagged")),
            "{lines:?}"
        );
        let line = event_line(&flagged, &report).expect("a progress line");
        assert!(line.contains("flagged: no sources"), "{line}");
    }
}

#[cfg(test)]
mod review_tests {
    use super::*;
    use crate::protocol::{PlannedSubtask, Priority, SubtaskId};

    fn subtask(id: &str, deps: &[&str]) -> PlannedSubtask {
        PlannedSubtask {
            id: SubtaskId::new(id),
            worker: "research".to_owned(),
            title: format!("Title {id}"),
            description: format!("Do {id}."),
            focus_areas: Vec::new(),
            depends_on: deps.iter().map(|d| SubtaskId::new(*d)).collect(),
            priority: Priority::Medium,
            reuse: None,
            role_prompt: None,
            model: None,
        }
    }

    fn setup() -> ReviewSetup {
        ReviewSetup {
            settings: crate::engine::run::tests::settings(),
            prices: Arc::default(),
            history: Arc::default(),
        }
    }

    fn plan(subtasks: Vec<PlannedSubtask>) -> Plan {
        Plan {
            query_analysis: String::new(),
            subtasks,
            synthesis_guidance: String::new(),
            complexity: None,
        }
    }

    /// Runs the dialogue on `answers`, with an editor that writes `edits` in turn.
    fn session(answers: &str, edits: Vec<String>) -> (Option<Plan>, String) {
        let edits = std::cell::RefCell::new(edits.into_iter());
        let editor = |path: &Path| -> Result<(), String> {
            let next = edits.borrow_mut().next().ok_or("no more edits")?;
            std::fs::write(path, next).map_err(|e| e.to_string())
        };
        let mut out = Vec::new();
        let answer = review_session(
            &setup(),
            plan(vec![subtask("a", &[]), subtask("b", &["a"])]),
            &mut answers.as_bytes(),
            &mut out,
            &editor,
        );
        (answer, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn an_edit_with_problems_lists_them_all_and_only_a_plan_without_any_is_approved() {
        let broken = r#"{"subtasks": [
            {"id": "a", "title": "A", "description": "Do a.", "depends_on": ["b"]},
            {"id": "b", "title": "B", "description": "Do b.", "depends_on": ["a", "x"]}
        ]}"#;
        let fixed = r#"{"subtasks": [
            {"id": "a", "title": "A", "description": "Do a."},
            {"id": "c", "title": "C", "description": "Do c.", "depends_on": ["a"],
             "model": "big-model"}
        ]}"#;
        let (answer, out) = session("e\na\ne\na\n", vec![broken.into(), fixed.into()]);
        assert!(
            out.contains("✗ subtask `b` depends on `x`, which is not in the plan"),
            "{out}"
        );
        assert!(
            out.contains("✗ the dependencies form a cycle: a → b → a"),
            "{out}"
        );
        assert!(out.contains("the plan cannot run yet:"), "{out}");
        let approved = answer.expect("approved after the fix");
        let ids: Vec<&str> = approved.subtasks.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(approved.subtasks[1].model.as_deref(), Some("big-model"));
        assert!(
            out.contains("big-model"),
            "the table names the model: {out}"
        );
    }

    #[test]
    fn the_end_of_input_or_c_cancels_and_a_failed_editor_asks_again() {
        assert_eq!(session("", vec![]).0, None);
        let (answer, out) = session("e\nc\n", vec![]);
        assert_eq!(answer, None);
        assert!(out.contains("no more edits"), "{out}");
        let (answer, out) = session("x\na\n", vec![]);
        assert!(out.contains("unknown answer `x`"), "{out}");
        assert_eq!(answer.map(|p| p.subtasks.len()), Some(2));
    }

    #[test]
    fn the_file_workflow_quotes_the_query_for_the_shell() {
        let text = review_needs_terminal("it's \u{1b}[31mred");
        assert!(
            text.ends_with(
                r#"maestro plan 'it'\''s red' > plan.json; $EDITOR plan.json; maestro run --plan plan.json"#
            ),
            "{text}"
        );
    }
}
