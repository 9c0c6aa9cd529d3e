//! The dashboard's event loop: the only place that touches the terminal. One task owns the
//! terminal and the model; it turns terminal input and engine events into `Msg`s for
//! `update`, performs the `Action`s that come back, and redraws only when something changed,
//! at most once a frame. A ticker runs only while something animates, so an idle dashboard
//! sleeps.
//!
//! It also owns the run store's writer (`history::Saving`): every engine event is handed to it
//! as it is folded, every command to a run is recorded before it is sent, and a new run's row is
//! written before the engine is asked to start it. Its status is polled into the model for the
//! status line. `update` never sees the store.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use ratatui::crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
    EventStream,
};
use ratatui::crossterm::execute;
use tokio::sync::mpsc;

use crate::config::{Config, ProviderConfig};
use crate::display::now_ms;
use crate::engine::executor::{Engine, EngineHandle};
use crate::history::{self, Saving};
use crate::llm::Provider;
use crate::protocol::{Command, RunId};
use crate::sanitize::sanitize;
use crate::store::{RunMeta, StoreStatus};
use crate::tui::model::{Info, Model, Models, Saved};
use crate::tui::theme::Theme;
use crate::tui::update::{Action, Msg, update};
use crate::tui::view;

/// At most this often a frame (about 60 a second).
const FRAME: Duration = Duration::from_millis(16);
/// Spinners and timers move this often while work runs.
const TICK: Duration = Duration::from_millis(100);
/// How often the store's status is looked at while the store is on.
const STORE_POLL: Duration = Duration::from_millis(500);
/// How long a new run waits for its row to be saved before it starts anyway, unsaved.
const BEGIN_WAIT: Duration = Duration::from_secs(6);

/// Run the dashboard until the user quits. Returns the exit code.
pub async fn run(config: Config, provider: Arc<dyn Provider>) -> anyhow::Result<i32> {
    let info = Info {
        describe: config.describe(),
        demo: matches!(config.provider, ProviderConfig::Demo(_)),
        bell: config.bell,
        roles: config.run.roles.iter().map(|r| r.name.clone()).collect(),
    };
    let models = Models {
        provider: config.provider.kind().to_string(),
        planner: config.run.planner.model.clone(),
        worker: config.run.worker.model.clone(),
        synthesizer: config.run.synthesizer.model.clone(),
        preset: config.run.preset.name.clone(),
        presets: config
            .presets
            .entries
            .iter()
            .map(|e| crate::tui::model::PresetInfo {
                name: e.preset.name.clone(),
                description: e.preset.description.clone(),
                source: e.source.to_string(),
                roles: e.preset.roles.iter().map(|r| r.name.clone()).collect(),
            })
            .collect(),
        concurrency: Some(config.run.concurrency),
        prices: Arc::new(config.prices.clone()),
        max_subtasks: Some(config.run.max_subtasks),
        review: config.run.review,
        settings: Some(Arc::new(config.run.clone())),
        ..Models::default()
    };
    let mouse = config.mouse;
    // The engine calls the models; the app keeps the provider too, to list them for the picker.
    let lister = provider.clone();
    // Opened before the terminal is taken, so a slow file system cannot leave it half set up.
    // A database that cannot be opened never stops the dashboard: it says "unsaved".
    let (saving, warning) = Saving::open(&config.store);
    let store = Store {
        prices: Arc::new(config.prices.clone()),
        path: config.store.path.clone(),
        unsaved: warning,
        template: history::run_meta(
            RunId::new(),
            "",
            &config,
            &crate::cli::EngineArgs::default(),
            None,
        ),
        saving,
        context_max_bytes: config.context_max_bytes,
    };
    let (tools, mcp_servers) = config.toolbox();
    let (engine, events) = Engine::spawn_with_tools(provider, tools, config.run, config.executor);

    // Our own set-up instead of `ratatui::init`, whose panic hook restores the terminal when
    // any thread panics, even in a task whose panic is caught (tokio catches panics of spawned
    // tasks; the executor turns a provider's into a failed call) and the dashboard goes on.
    // Here only a panic of this, the UI thread, restores the terminal (mouse capture and
    // bracketed paste too) before the message is printed; others go to the log.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("main") {
            let _ = execute!(
                std::io::stdout(),
                DisableBracketedPaste,
                DisableMouseCapture
            );
            ratatui::restore();
            previous(info);
        } else {
            tracing::error!("panic in a background task: {info}");
        }
    }));
    ratatui::crossterm::terminal::enable_raw_mode().context("cannot set up the terminal")?;
    if let Err(e) = execute!(
        std::io::stdout(),
        ratatui::crossterm::terminal::EnterAlternateScreen
    ) {
        ratatui::restore();
        return Err(e).context("cannot set up the terminal");
    }
    let mut terminal =
        match ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout())) {
            Ok(t) => t,
            Err(e) => {
                ratatui::restore();
                return Err(e).context("cannot set up the terminal");
            }
        };
    let setup = if mouse {
        execute!(std::io::stdout(), EnableBracketedPaste, EnableMouseCapture)
    } else {
        execute!(std::io::stdout(), EnableBracketedPaste)
    };
    let result = match setup {
        Ok(()) => event_loop(&mut terminal, &engine, lister, events, info, models, store).await,
        Err(e) => Err(e).context("cannot set up the terminal"),
    };
    let _ = execute!(
        std::io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture
    );
    ratatui::restore();
    engine.send(Command::Shutdown);
    mcp_servers.stop().await;
    result.map(|end| match end {
        End::Quit => 0,
        End::Signal(code) => code,
    })
}

/// The store as the loop sees it.
struct Store {
    saving: Saving,
    /// The database history is read from (also with `--no-save`, when it exists).
    path: Option<std::path::PathBuf>,
    /// Why runs are not being saved, if they are not (and saving was not turned off).
    unsaved: Option<String>,
    /// A new run's row, but for its id, query and start.
    template: RunMeta,
    /// The most bytes of text a new run's attached files may have (`[context] max_bytes`).
    context_max_bytes: u64,
    /// Prices for the statistics panel's cost figures.
    prices: Arc<crate::engine::cost::PriceTable>,
}

impl Store {
    /// What the status line should say: `None` while saving works or with `--no-save`.
    fn problem(&self) -> Option<String> {
        match self.saving.status() {
            Some(StoreStatus::Saving) => None,
            Some(StoreStatus::Unsaved { reason }) => Some(reason),
            None => self.unsaved.clone(),
        }
    }
}

/// Why the loop ended.
enum End {
    /// The user quit, or the terminal's input ended.
    Quit,
    /// A signal asked us to stop: exit with this code (128 + the signal's number, as a shell
    /// reports a process killed by it), so whoever sent it sees it was obeyed.
    Signal(i32),
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    engine: &EngineHandle,
    provider: Arc<dyn Provider>,
    mut events: mpsc::UnboundedReceiver<crate::protocol::Event>,
    info: Info,
    models: Models,
    mut store: Store,
) -> anyhow::Result<End> {
    let size = terminal.size().context("cannot read the terminal size")?;
    let mut model = Model::new(info, Theme::from_env(), (size.width, size.height), now_ms());
    model.models = models;
    model.unsaved = store.problem();
    let mut store_poll = tokio::time::interval(STORE_POLL);
    store_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let polling = store.saving.is_on();
    let mut input = EventStream::new();
    let (internal_tx, mut internal) = mpsc::unbounded_channel::<Msg>();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let terminated = terminated();
    tokio::pin!(terminated);

    let mut dirty = true;
    let mut engine_alive = true;
    let mut last_draw: Option<Instant> = None;
    loop {
        let due = last_draw.map_or(Duration::ZERO, |t| FRAME.saturating_sub(t.elapsed()));
        if dirty && due.is_zero() {
            model.tick(now_ms());
            terminal
                .draw(|frame| view::draw(frame, &model))
                .context("cannot draw")?;
            last_draw = Some(Instant::now());
            dirty = false;
        }
        let mut actions = Vec::new();
        tokio::select! {
            next = input.next() => match next {
                Some(Ok(event)) => {
                    if let Some(msg) = to_msg(event) {
                        actions.extend(update(&mut model, msg));
                        dirty = true;
                    }
                }
                Some(Err(e)) => return Err(e).context("cannot read the terminal"),
                None => break,
            },
            event = events.recv(), if engine_alive => {
                match event {
                    Some(event) => {
                        store.saving.event(&event);
                        actions.extend(update(&mut model, Msg::Engine(event)));
                        // Drain the burst before drawing once.
                        while let Ok(event) = events.try_recv() {
                            store.saving.event(&event);
                            actions.extend(update(&mut model, Msg::Engine(event)));
                        }
                    }
                    None => {
                        engine_alive = false;
                        tracing::error!("the engine stopped while the dashboard was open");
                        model.toast(
                            "the engine stopped unexpectedly; finished work is still shown (see the log)"
                                .into(),
                            crate::tui::model::ToastLevel::Error,
                        );
                    }
                }
                dirty = true;
            }
            Some(msg) = internal.recv() => {
                actions.extend(update(&mut model, msg));
                dirty = true;
            }
            _ = ticker.tick(), if model.animating() => {
                actions.extend(update(&mut model, Msg::Tick(now_ms())));
                dirty = true;
            }
            _ = store_poll.tick(), if polling => {
                let problem = store.problem();
                if problem != model.unsaved {
                    model.unsaved = problem;
                    dirty = true;
                }
            }
            _ = tokio::time::sleep(due), if dirty => {}
            code = &mut terminated => return Ok(End::Signal(code)),
        }
        // An action may answer at once with a message (a new run's id), whose update may ask
        // for more: all of it happens before the next engine event is read.
        let mut pending = std::collections::VecDeque::from(actions);
        while let Some(action) = pending.pop_front() {
            if let Some(msg) = perform(action, engine, &provider, &internal_tx, &mut store) {
                pending.extend(update(&mut model, msg));
            }
        }
        if model.quit {
            break;
        }
    }
    Ok(End::Quit)
}

fn to_msg(event: Event) -> Option<Msg> {
    match event {
        Event::Key(key) => Some(Msg::Key(key)),
        Event::Paste(text) => Some(Msg::Paste(text)),
        Event::Mouse(mouse) => Some(Msg::Mouse(mouse)),
        Event::Resize(w, h) => Some(Msg::Resize(w, h)),
        Event::FocusGained | Event::FocusLost => None,
    }
}

/// Carry out an action; a message for `update` when the action answers at once.
fn perform(
    action: Action,
    engine: &EngineHandle,
    provider: &Arc<dyn Provider>,
    internal: &mpsc::UnboundedSender<Msg>,
    store: &mut Store,
) -> Option<Msg> {
    match action {
        Action::Send(command) => {
            if let Command::Run { id, command } = &command {
                store.saving.command(*id, command);
            }
            engine.send(command);
        }
        Action::ReadContext {
            query,
            models,
            follow_up,
        } => {
            let internal = internal.clone();
            let max = store.context_max_bytes;
            // A folder can be large: walked off the drawing path.
            tokio::task::spawn_blocking(move || {
                let result = crate::context::gather(&query, &[], max).map_err(|e| e.to_string());
                let _ = internal.send(Msg::ContextRead {
                    query,
                    models,
                    follow_up,
                    result,
                });
            });
        }
        Action::StartRun {
            query,
            models,
            follow_up,
            context,
        } => {
            let parent = follow_up.as_ref().map(|f| f.parent);
            // The id is made here, not in `update`, which stays free of clocks and randomness.
            let id = RunId::new();
            // The row names the models this run uses: those picked in the dashboard, if any.
            let template = &store.template;
            let meta = RunMeta {
                id,
                query: query.clone(),
                started_ms: now_ms(),
                planner_model: models.planner.clone().or(template.planner_model.clone()),
                worker_model: models.worker.clone().or(template.worker_model.clone()),
                synthesizer_model: models
                    .synthesizer
                    .clone()
                    .or(template.synthesizer_model.clone()),
                preset: models.preset.clone().or(template.preset.clone()),
                parent,
                context: context.clone(),
                ..template.clone()
            };
            let start = Command::StartRun {
                id,
                query: query.clone(),
                plan: None,
                models,
                follow_up,
                context,
            };
            match store.saving.begin_pending(meta) {
                // The run starts once its row is saved (or could not be), waited for off the
                // drawing path; the run shows as starting meanwhile.
                Some(pending) => {
                    let engine = engine.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = pending.wait(BEGIN_WAIT) {
                            tracing::warn!("a run's row could not be saved: {e}");
                        }
                        engine.send(start);
                    });
                }
                None => engine.send(start),
            }
            return Some(Msg::RunStarting { id, query, parent });
        }
        Action::ListModels => {
            let provider = provider.clone();
            let internal = internal.clone();
            // Off the drawing path, and bounded: a server that never answers leaves the
            // picker saying so instead of loading forever.
            tokio::spawn(async move {
                let limit = Duration::from_secs(crate::defaults::CHECK_TIMEOUT_SECS);
                let listed = tokio::time::timeout(limit, provider.list_models()).await;
                let result = match listed {
                    Ok(Ok(ids)) => Ok(ids),
                    Ok(Err(e)) => Err(e.message),
                    Err(_) => Err(crate::llm::CallError::timeout(limit).message),
                };
                let _ = internal.send(Msg::ModelsListed(result));
            });
        }
        Action::Copy(text) => {
            let clean = sanitize(&text).into_owned();
            let _ = execute!(
                std::io::stdout(),
                ratatui::crossterm::clipboard::CopyToClipboard::to_clipboard_from(clean)
            );
        }
        Action::Write { path, text } => {
            let internal = internal.clone();
            // The disk is never touched on the drawing path.
            tokio::task::spawn_blocking(move || {
                let result = std::fs::write(&path, text)
                    .map(|()| std::path::absolute(&path).unwrap_or(path.clone()))
                    .map_err(|e| format!("{}: {e}", path.display()));
                let _ = internal.send(Msg::ReportWritten(result));
            });
        }
        Action::Bell => {
            let mut out = std::io::stdout();
            let _ = out.write_all(b"\x07").and_then(|()| out.flush());
        }
        Action::ListHistory { search } => {
            let path = store.path.clone();
            let internal = internal.clone();
            tokio::task::spawn_blocking(move || {
                let result = list_saved(path.as_deref(), &search);
                let _ = internal.send(Msg::HistoryListed { search, result });
            });
        }
        Action::ReadStats => {
            let path = store.path.clone();
            let prices = store.prices.clone();
            let internal = internal.clone();
            tokio::task::spawn_blocking(move || {
                let result = read_stats(path.as_deref(), &prices);
                let _ = internal.send(Msg::StatsRead(result));
            });
        }
        Action::ReadCalls => {
            let path = store.path.clone();
            let internal = internal.clone();
            tokio::task::spawn_blocking(move || {
                let result = read_calls(path.as_deref()).map(Arc::new);
                let _ = internal.send(Msg::CallsRead(result));
            });
        }
        Action::OpenSaved(id) => {
            let path = store.path.clone();
            let internal = internal.clone();
            tokio::task::spawn_blocking(move || {
                let result = open_saved(path.as_deref(), id);
                let _ = internal.send(Msg::SavedOpened(result));
            });
        }
        Action::Resume {
            id,
            query,
            saved,
            asked,
            then,
        } => {
            // As `maestro resume` does it: the row is running again (its start kept), the
            // restated facts are not saved twice, the key's command is on record.
            let meta = RunMeta {
                id,
                query: query.clone(),
                started_ms: now_ms(),
                ..store.template.clone()
            };
            if let Some(saved) = &saved {
                store.saving.resuming(id, saved);
            }
            let pending = store.saving.begin_pending(meta);
            if let Some(command) = &asked {
                store.saving.command(id, command);
            }
            let then = asked.filter(|_| then);
            let engine = engine.clone();
            let send = move || {
                match saved {
                    Some(saved) => engine.send(Command::ResumeRun { id, saved }),
                    None => engine.send(Command::StartRun {
                        id,
                        query,
                        plan: None,
                        models: crate::protocol::ModelOverrides::default(),
                        follow_up: None,
                        context: Default::default(),
                    }),
                }
                if let Some(command) = then {
                    engine.send(Command::Run { id, command });
                }
            };
            match pending {
                Some(pending) => {
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = pending.wait(BEGIN_WAIT) {
                            tracing::warn!("a resumed run's row could not be saved: {e}");
                        }
                        send();
                    });
                }
                None => send(),
            }
        }
        Action::Quit => {}
        Action::ReadSourceText {
            run,
            subtask,
            source,
        } => {
            let path = store.path.clone();
            let internal = internal.clone();
            tokio::task::spawn_blocking(move || {
                let result =
                    crate::history::saved_source_text(path.as_deref(), run, &subtask, &source);
                let _ = internal.send(Msg::SourceTextRead {
                    run,
                    location: source.location,
                    result,
                });
            });
        }
    }
    None
}

/// How many saved runs the history pop-up lists at most.
const HISTORY_LIMIT: usize = 500;

/// The saved runs whose query or report has `search`, newest first. A database that does not
/// exist yet has none (it is not created for reading).
fn list_saved(
    path: Option<&std::path::Path>,
    search: &str,
) -> Result<Vec<crate::store::RunSummary>, String> {
    let Some(path) = path else {
        return Err("no data folder is known; name a database with --db".into());
    };
    if !path.exists() {
        return Ok(Vec::new());
    }
    let db = crate::store::Store::open(path).map_err(|e| e.to_string())?;
    let search = search.trim();
    db.list_runs(&crate::store::RunFilter {
        limit: Some(HISTORY_LIMIT),
        status: None,
        search: (!search.is_empty()).then(|| search.to_owned()),
    })
    .map_err(|e| e.to_string())
}

/// The statistics of every saved call, without creating the database.
fn read_stats(
    path: Option<&std::path::Path>,
    prices: &crate::engine::cost::PriceTable,
) -> Result<Box<crate::stats::Stats>, String> {
    let Some(path) = path else {
        return Err("no data folder is known; name a database with --db".into());
    };
    if !path.exists() {
        return Err("no runs have been saved yet".into());
    }
    let db = crate::store::Store::open(path).map_err(|e| e.to_string())?;
    let calls = db.calls(None).map_err(|e| e.to_string())?;
    Ok(Box::new(crate::stats::compute(&calls, prices, None)))
}

/// Every saved call, for plan estimates; none when nothing was saved yet (the database is not
/// created for reading).
fn read_calls(path: Option<&std::path::Path>) -> Result<Vec<crate::store::CallRecord>, String> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    if !path.exists() {
        return Ok(Vec::new());
    }
    let db = crate::store::Store::open(path).map_err(|e| e.to_string())?;
    db.calls(None).map_err(|e| e.to_string())
}

/// A saved run as the panes show it, and what it resumes from.
fn open_saved(
    path: Option<&std::path::Path>,
    id: RunId,
) -> Result<Box<(crate::report::RunReport, Saved)>, String> {
    let Some(path) = path else {
        return Err("no data folder is known; name a database with --db".into());
    };
    let db = crate::store::Store::open(path).map_err(|e| e.to_string())?;
    let saved = db.load_run(id).map_err(|e| e.to_string())?;
    let report = history::report_of(&saved);
    let state = Saved {
        status: saved.summary.status,
        resume: history::resume_input(&saved, history::parent_of(&db, &saved).as_ref())
            .map(Box::new),
    };
    Ok(Box::new((report, state)))
}

/// Exit code after SIGTERM (128 + 15).
pub const EXIT_SIGTERM: i32 = 143;
/// Exit code after SIGHUP (128 + 1).
pub const EXIT_SIGHUP: i32 = 129;

/// Resolves on SIGTERM or SIGHUP (a closed terminal) with the exit code that reports it, so
/// the terminal is restored on those too; Ctrl-C arrives as a key in raw mode. Never resolves
/// where there are no such signals.
async fn terminated() -> i32 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(mut term), Ok(mut hup)) => {
                tokio::select! {
                    _ = term.recv() => EXIT_SIGTERM,
                    _ = hup.recv() => EXIT_SIGHUP,
                }
            }
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<i32>().await
}
