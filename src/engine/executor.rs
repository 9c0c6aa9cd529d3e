//! The engine task: owns every run's state machine and performs their effects.
//!
//! It receives `Command`s, turns them and call results into `Input`s for `Run::handle`, and
//! carries out the `Effect`s that come back: provider calls in their own tasks (each with a
//! cancellation token, the overall timeout and delta coalescing), backoff timers, and events
//! out. It makes no decisions of its own; concurrency limits, retries and staleness are the
//! state machine's. Events leave in the order the state machine produced them.
//!
//! A run's state is kept while commands may still reach it: a finished run can be reopened (a
//! re-run, an edit, a new synthesis), which the dashboard offers for every run it shows. It is
//! dropped when a `CloseRun` names it, when the engine stops, or when more than
//! `ExecutorSettings::keep_finished` runs have finished, the one that finished longest ago
//! first. Commands to a dropped run are refused as `unknown_run`. Runs that have not finished
//! are never dropped but by `CloseRun`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::limits::{Permit, ProviderLimiter, RateSettings, Wait};
use crate::engine::run::{CallId, CallTarget, Effect, Input, Run, RunSettings};
use crate::llm::{CallError, ChatRequest, Delta, DeltaSink, Provider};
use crate::protocol::{
    Command, CommandName, Event, EventKind, ModelOverrides, Plan, Refusal, RunCommand, RunId,
    SavedRun,
};

/// How the executor treats calls.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    /// The longest one call may take, streaming included.
    pub call_timeout: Duration,
    /// Streamed text is gathered for this long before it becomes one event, so a fast model
    /// does not send one event per token across the channel.
    pub coalesce: Duration,
    /// Finished runs kept so commands can still reopen them; beyond this, the one that
    /// finished longest ago is dropped. 0 drops a run as soon as it finishes.
    pub keep_finished: usize,
    /// The provider's base URL: every executor of the process with the same one shares
    /// `rate` (see `engine::limits`).
    pub provider_key: String,
    /// Limits shared by every run that calls this provider; the default shares nothing.
    pub rate: RateSettings,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(crate::defaults::TIMEOUT_SECS),
            coalesce: Duration::from_millis(crate::defaults::COALESCE_MS),
            keep_finished: crate::defaults::KEEP_FINISHED_RUNS,
            provider_key: String::new(),
            rate: RateSettings::default(),
        }
    }
}

/// A handle to a running engine: send commands; events arrive on the receiver that
/// `Engine::spawn` returned. Cloning is cheap. The engine stops on `Command::Shutdown` or
/// when every handle is dropped.
#[derive(Clone)]
pub struct EngineHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl EngineHandle {
    /// Start a run and return its id. `plan` skips the planner.
    pub fn start_run(&self, query: impl Into<String>, plan: Option<Plan>) -> RunId {
        let id = RunId::new();
        self.send(Command::StartRun {
            id,
            query: query.into(),
            plan,
            models: ModelOverrides::default(),
            follow_up: None,
        });
        id
    }

    /// Go on with a saved run under its old id; see `Command::ResumeRun`.
    pub fn resume_run(&self, id: RunId, saved: SavedRun) {
        self.send(Command::ResumeRun {
            id,
            saved: Box::new(saved),
        });
    }

    pub fn steer(&self, id: RunId, command: RunCommand) {
        self.send(Command::Run { id, command });
    }

    /// Never blocks; a command sent after the engine stopped is dropped.
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }
}

pub struct Engine;

impl Engine {
    /// Start the engine on the current tokio runtime.
    pub fn spawn(
        provider: Arc<dyn Provider>,
        settings: RunSettings,
        executor: ExecutorSettings,
    ) -> (EngineHandle, mpsc::UnboundedReceiver<Event>) {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (input_tx, input_rx) = mpsc::unbounded_channel();
        let limiter = ProviderLimiter::shared(&executor.provider_key, &executor.rate);
        let state = Executor {
            limiter,
            provider,
            settings,
            executor,
            runs: HashMap::new(),
            finishes: 0,
            calls: HashMap::new(),
            events: event_tx,
            inputs: input_tx,
            root: CancellationToken::new(),
        };
        tokio::spawn(state.run(cmd_rx, input_rx));
        (EngineHandle { commands: cmd_tx }, event_rx)
    }
}

/// A run's settings with the models it was started with in place of the configured ones.
fn with_models(mut settings: RunSettings, models: &ModelOverrides) -> RunSettings {
    if let Some(model) = &models.planner {
        settings.planner.model = model.clone();
    }
    if let Some(model) = &models.worker {
        settings.worker.model = model.clone();
        for role in &mut settings.roles {
            role.model = None;
        }
    }
    if let Some(model) = &models.synthesizer {
        settings.synthesizer.model = model.clone();
    }
    settings
}

struct Slot {
    run: Run,
    created: Instant,
    /// When the run last finished, in the order runs finished; `None` while it is open.
    finished: Option<u64>,
}

struct Executor {
    /// This provider's shared limits, if any are on.
    limiter: Option<Arc<ProviderLimiter>>,
    provider: Arc<dyn Provider>,
    settings: RunSettings,
    executor: ExecutorSettings,
    runs: HashMap<RunId, Slot>,
    /// Counts run ends, to order finished runs for dropping.
    finishes: u64,
    calls: HashMap<(RunId, CallId), CancellationToken>,
    events: mpsc::UnboundedSender<Event>,
    inputs: mpsc::UnboundedSender<(RunId, Input)>,
    root: CancellationToken,
}

impl Executor {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut inputs: mpsc::UnboundedReceiver<(RunId, Input)>,
    ) {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
                Some((id, input)) = inputs.recv() => {
                    if let Input::Reply { call, result } = &input {
                        self.calls.remove(&(id, call.clone()));
                        // Paused before the reply is taken, so the subtask the reply frees
                        // a slot for is not started (it would only wait in the limiter).
                        if let Some(message) = self.record(call, result) {
                            self.pause_runs(message);
                        }
                    }
                    self.feed(id, input);
                }
            }
        }
        self.shutdown();
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::StartRun {
                id,
                query,
                plan,
                models,
                follow_up,
            } => {
                let settings = with_models(self.settings_for(id), &models);
                self.runs.insert(
                    id,
                    Slot {
                        run: Run::new(query, settings, plan).following(follow_up.map(|f| *f)),
                        created: Instant::now(),
                        finished: None,
                    },
                );
                self.feed(id, Input::Start);
            }
            Command::ResumeRun { id, saved } => {
                if self.runs.contains_key(&id) {
                    self.emit(
                        id,
                        EventKind::CommandRefused {
                            command: CommandName::ResumeRun,
                            refusal: Refusal::RunOpen { run: id },
                        },
                    );
                    return;
                }
                let settings = self.settings_for(id);
                self.runs.insert(
                    id,
                    Slot {
                        run: Run::restore(*saved, settings),
                        created: Instant::now(),
                        finished: None,
                    },
                );
                self.feed(id, Input::Start);
            }
            Command::CloseRun { id } => {
                let open = self.runs.get(&id).map(|slot| !slot.run.is_finished());
                match open {
                    Some(true) => {
                        self.feed(id, Input::Command(RunCommand::CancelRun));
                        self.drop_run(id);
                    }
                    Some(false) => self.drop_run(id),
                    None => self.emit(
                        id,
                        EventKind::CommandRefused {
                            command: CommandName::CloseRun,
                            refusal: Refusal::UnknownRun { run: id },
                        },
                    ),
                }
            }
            Command::Run { id, command } => {
                if command == RunCommand::ResumeProvider
                    && let Some(limiter) = &self.limiter
                {
                    limiter.reset();
                }
                if self.runs.contains_key(&id) {
                    self.feed(id, Input::Command(command));
                } else {
                    self.emit(
                        id,
                        EventKind::CommandRefused {
                            command: command.name(),
                            refusal: Refusal::UnknownRun { run: id },
                        },
                    );
                }
            }
            Command::Shutdown => {}
        }
    }

    /// Tell the shared limiter how a call ended; its breaker's reason when this tripped it.
    /// A call counts as retried when it was not its target's first attempt.
    fn record(
        &self,
        call: &CallId,
        result: &Result<crate::llm::Completion, CallError>,
    ) -> Option<String> {
        let limiter = self.limiter.as_ref()?;
        // A cached answer asked nothing of the provider.
        if let Ok(done) = result
            && done.cached
        {
            return None;
        }
        let retried = call.attempt > 1 && !matches!(call.target, CallTarget::Planner);
        limiter.record(result.as_ref().map(|_| ()), retried)
    }

    /// The breaker tripped: every open run of this provider stops starting subtasks.
    fn pause_runs(&mut self, message: String) {
        let open: Vec<RunId> = self
            .runs
            .iter()
            .filter(|(_, slot)| !slot.run.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in open {
            self.feed(
                id,
                Input::ProviderPaused {
                    message: message.clone(),
                },
            );
        }
    }

    /// The settings of run `id`: the engine's, with a backoff seed of the run's own so runs
    /// that fail together do not retry in step.
    fn settings_for(&self, id: RunId) -> RunSettings {
        let mut settings = self.settings.clone();
        let (hi, lo) = id.0.as_u64_pair();
        settings.seed ^= hi ^ lo;
        settings
    }

    /// Cancel every active run (so each ends with `RunFinished`) and every call in flight.
    fn shutdown(&mut self) {
        let active: Vec<RunId> = self
            .runs
            .iter()
            .filter(|(_, slot)| !slot.run.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in active {
            self.feed(id, Input::Command(RunCommand::CancelRun));
        }
        self.root.cancel();
    }

    fn feed(&mut self, id: RunId, input: Input) {
        let Some(slot) = self.runs.get_mut(&id) else {
            return;
        };
        let now = slot.created.elapsed().as_millis() as u64;
        let effects = slot.run.handle(input, now);
        let just_finished = match (slot.run.is_finished(), slot.finished) {
            (true, None) => {
                self.finishes += 1;
                slot.finished = Some(self.finishes);
                true
            }
            (false, Some(_)) => {
                slot.finished = None;
                false
            }
            (true, Some(_)) | (false, None) => false,
        };
        for effect in effects {
            self.perform(id, effect);
        }
        if just_finished {
            self.drop_old_runs();
        }
    }

    /// Keep at most `keep_finished` finished runs, dropping those that finished first.
    fn drop_old_runs(&mut self) {
        let mut finished: Vec<(u64, RunId)> = self
            .runs
            .iter()
            .filter_map(|(id, slot)| slot.finished.map(|seq| (seq, *id)))
            .collect();
        let Some(excess) = finished.len().checked_sub(self.executor.keep_finished) else {
            return;
        };
        if excess == 0 {
            return;
        }
        finished.sort_unstable();
        for (_, id) in finished.into_iter().take(excess) {
            self.drop_run(id);
        }
    }

    /// Forget a run: its state, and any call of it still in flight.
    fn drop_run(&mut self, id: RunId) {
        self.runs.remove(&id);
        self.calls.retain(|(run, _), token| {
            if *run == id {
                token.cancel();
            }
            *run != id
        });
    }

    fn emit(&self, run: RunId, kind: EventKind) {
        let ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // A consumer that went away is not the engine's failure; runs go on to their end.
        let _ = self.events.send(Event { run, ts_ms, kind });
    }

    fn perform(&mut self, id: RunId, effect: Effect) {
        match effect {
            Effect::Emit(kind) => self.emit(id, kind),
            Effect::Call { call, request } => {
                let token = self.root.child_token();
                self.calls.insert((id, call.clone()), token.clone());
                tokio::spawn(perform_call(
                    self.limiter.clone(),
                    self.provider.clone(),
                    request,
                    token,
                    self.inputs.clone(),
                    id,
                    call,
                    self.executor.clone(),
                ));
            }
            Effect::Abort(call) => {
                if let Some(token) = self.calls.remove(&(id, call)) {
                    token.cancel();
                }
            }
            Effect::Wake { call, after } => {
                let inputs = self.inputs.clone();
                let stop = self.root.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::time::sleep(after) => {
                            let _ = inputs.send((id, Input::Wake { call }));
                        }
                        _ = stop.cancelled() => {}
                    }
                });
            }
        }
    }
}

/// One provider call: stream deltas (coalesced) and then the reply back to the engine, unless
/// cancelled, in which case nothing more is sent.
#[allow(clippy::too_many_arguments)]
async fn perform_call(
    limiter: Option<Arc<ProviderLimiter>>,
    provider: Arc<dyn Provider>,
    request: ChatRequest,
    cancel: CancellationToken,
    inputs: mpsc::UnboundedSender<(RunId, Input)>,
    run: RunId,
    call: CallId,
    settings: ExecutorSettings,
) {
    // Held until the call ends, so the slot frees only then. The wait for it is not part of
    // the call's timeout.
    let _permit: Option<Permit> = match &limiter {
        Some(limiter) => {
            // Said once, before the wait: every call held by the server's `Retry-After`
            // shows the shared wait rather than look stuck.
            if let Some(Wait::RateLimited(delay)) = limiter.cooldown() {
                let _ = inputs.send((
                    run,
                    Input::Waiting {
                        call: call.clone(),
                        delay,
                        reason: "provider rate-limited".into(),
                    },
                ));
            }
            match limiter.acquire(&cancel).await {
                Some(permit) => Some(permit),
                None => return,
            }
        }
        None => None,
    };
    let (sink, mut deltas) = DeltaSink::new();
    // A panic inside a provider must become a failed call, not a call that never answers
    // (which would leave its run waiting forever).
    let guarded = std::panic::AssertUnwindSafe(provider.complete(request, sink))
        .catch_unwind()
        .map(|outcome| {
            outcome.unwrap_or_else(|_| {
                Err(CallError::fatal(
                    "internal error",
                    "the provider call failed unexpectedly (a bug in maestro; see the log)",
                ))
            })
        });
    let completion = tokio::time::timeout(settings.call_timeout, guarded);
    tokio::pin!(completion);
    // Answer and reasoning are gathered apart, so one event never mixes them.
    let mut pending = String::new();
    let mut pending_reasoning = String::new();
    let mut flush = tokio::time::interval(settings.coalesce.max(Duration::from_millis(1)));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let send_delta = |text: &mut String, reasoning: &mut String| {
        if !reasoning.is_empty() {
            let text = std::mem::take(reasoning);
            let _ = inputs.send((
                run,
                Input::Reasoning {
                    call: call.clone(),
                    text,
                },
            ));
        }
        if !text.is_empty() {
            let text = std::mem::take(text);
            let _ = inputs.send((
                run,
                Input::Delta {
                    call: call.clone(),
                    text,
                },
            ));
        }
    };
    let gather = |delta: Delta, text: &mut String, reasoning: &mut String| match delta {
        Delta::Answer(piece) => text.push_str(&piece),
        Delta::Reasoning(piece) => reasoning.push_str(&piece),
    };
    let result = loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            result = &mut completion => {
                break result.unwrap_or_else(|_| Err(CallError::timeout(settings.call_timeout)));
            }
            Some(delta) = deltas.recv() => gather(delta, &mut pending, &mut pending_reasoning),
            _ = flush.tick(), if !pending.is_empty() || !pending_reasoning.is_empty() => {
                send_delta(&mut pending, &mut pending_reasoning);
            }
        }
    };
    while let Ok(delta) = deltas.try_recv() {
        gather(delta, &mut pending, &mut pending_reasoning);
    }
    send_delta(&mut pending, &mut pending_reasoning);
    let _ = inputs.send((run, Input::Reply { call, result }));
}
