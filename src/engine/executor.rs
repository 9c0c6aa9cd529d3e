//! The engine task: owns every run's state machine and performs their effects.
//!
//! It receives `Command`s, turns them and call results into `Input`s for `Run::handle`, and
//! carries out the `Effect`s that come back: provider calls in their own tasks (each with a
//! cancellation token, the overall timeout and delta coalescing), backoff timers, and events
//! out. It makes no decisions of its own; concurrency limits, retries and staleness are the
//! state machine's. Events leave in the order the state machine produced them.
//!
//! A worker call whose model asks for tools becomes a loop here (`call_with_tools`): model,
//! then the tools it asked for (in parallel, through the `ToolBox`), then the model again with
//! their results, at most `max_tool_rounds` times and within the one overall timeout; then
//! the model is asked for a final answer without tools. Tool calls are reported to the run as
//! `Input::Tool`, in order with the streamed text, and the usage of every round is summed into
//! the one `Reply`.
//!
//! A run's state is kept while commands may still reach it: a finished run can be reopened (a
//! re-run, an edit, a new synthesis), which the dashboard offers for every run it shows. It is
//! dropped when a `CloseRun` names it, when the engine stops, or when more than
//! `ExecutorSettings::keep_finished` runs have finished, the one that finished longest ago
//! first. Commands to a dropped run are refused as `unknown_run`. Runs that have not finished
//! are never dropped but by `CloseRun`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::limits::{Permit, ProviderLimiter, RateSettings, Wait};
use crate::engine::preset::{self, Preset};
use crate::engine::run::{CallId, CallTarget, Effect, Input, Run, RunSettings, ToolEvent};
use crate::llm::tools::{NoTools, ToolBox, ToolCall, ToolOutcome, ToolResult, malformed_message};
use crate::llm::{
    CallError, ChatRequest, Completion, Delta, DeltaSink, Message, MessageRole, Provider,
    TOOLS_UNSUPPORTED,
};
use crate::protocol::{
    CallRole, Command, CommandName, Event, EventKind, ModelOverrides, Plan, Refusal, RunCommand,
    RunId, SavedRun, Usage,
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
    /// Rounds of tool calls one worker call may make before it must answer without tools.
    pub max_tool_rounds: u32,
    /// The tools every worker is offered, as names for `ToolBox::specs` (tools, groups or
    /// `all`), when the person chose them for the run (`--tools`, `[tools] enabled`); `None`:
    /// each worker role's own `tools`, from its preset.
    pub tools: Option<Vec<String>>,
    /// The presets a run may be started with instead of the configured one
    /// (`ModelOverrides::preset`, the dashboard's picker).
    pub presets: Vec<Preset>,
    /// Validation as the person set it (`--validate`, `[validation] enabled`); `None`: each
    /// preset's own `validate` decides, also for a preset picked for one run.
    pub validate: Option<bool>,
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
            max_tool_rounds: crate::defaults::TOOL_MAX_ROUNDS,
            tools: None,
            presets: Vec::new(),
            validate: None,
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
            context: Default::default(),
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
        Self::spawn_with_tools(provider, Arc::new(NoTools), settings, executor)
    }

    /// Start the engine with tools for workers to call.
    pub fn spawn_with_tools(
        provider: Arc<dyn Provider>,
        tools: Arc<dyn ToolBox>,
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
            tools,
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

/// A run's settings with the models (and the preset) it was started with in place of the
/// configured ones. A preset that is not among `presets` leaves the configured one.
fn with_models(
    mut settings: RunSettings,
    models: &ModelOverrides,
    executor: &ExecutorSettings,
) -> RunSettings {
    if let Some(chosen) = models
        .preset
        .as_deref()
        .and_then(|n| preset::find(&executor.presets, n))
    {
        settings.use_preset(chosen);
        settings.validate = executor.validate.unwrap_or(chosen.validate);
    }
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
    if let Some(review) = models.review {
        settings.review = review;
    }
    settings
}

struct Slot {
    run: Run,
    /// The run's tool box: the engine's, or one reading the run's attached files too.
    tools: Arc<dyn ToolBox>,
    created: Instant,
    /// When the run last finished, in the order runs finished; `None` while it is open.
    finished: Option<u64>,
}

/// A call in flight: its cancellation, and the stop for the tool calls of its current round.
struct InFlight {
    token: CancellationToken,
    tools: ToolStop,
}

/// Cancels the tool calls a call is waiting on now (the user's key), not the call: each
/// round of tool calls gets a fresh token.
type ToolStop = Arc<Mutex<CancellationToken>>;

struct Executor {
    /// This provider's shared limits, if any are on.
    limiter: Option<Arc<ProviderLimiter>>,
    provider: Arc<dyn Provider>,
    tools: Arc<dyn ToolBox>,
    settings: RunSettings,
    executor: ExecutorSettings,
    runs: HashMap<RunId, Slot>,
    /// Counts run ends, to order finished runs for dropping.
    finishes: u64,
    calls: HashMap<(RunId, CallId), InFlight>,
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
                context,
            } => {
                let settings = with_models(self.settings_for(id), &models, &self.executor);
                let tools = self.tools_for(&context);
                self.runs.insert(
                    id,
                    Slot {
                        tools,
                        run: Run::new(query, settings, plan)
                            .following(follow_up.map(|f| *f))
                            .attaching(context),
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
                let tools = self.tools_for(&saved.context);
                self.runs.insert(
                    id,
                    Slot {
                        tools,
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
            Command::CancelTools { id, subtask } => {
                // At most one call of a subtask is in flight: the current attempt's.
                for ((run, call), in_flight) in &self.calls {
                    if *run == id
                        && call.target == CallTarget::Subtask(subtask.clone())
                        && let Ok(stop) = in_flight.tools.lock()
                    {
                        stop.cancel();
                    }
                }
            }
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

    /// The tool box of a run given `context`.
    fn tools_for(&self, context: &crate::protocol::Attachments) -> Arc<dyn ToolBox> {
        self.tools
            .for_run(context)
            .unwrap_or_else(|| self.tools.clone())
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
        self.calls.retain(|(run, _), in_flight| {
            if *run == id {
                in_flight.token.cancel();
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
            Effect::Call {
                call,
                request,
                tools: role_tools,
            } => {
                let token = self.root.child_token();
                let tools: ToolStop = Arc::new(Mutex::new(CancellationToken::new()));
                self.calls.insert(
                    (id, call.clone()),
                    InFlight {
                        token: token.clone(),
                        tools: tools.clone(),
                    },
                );
                tokio::spawn(perform_call(
                    Caller {
                        limiter: self.limiter.clone(),
                        provider: self.provider.clone(),
                        tools: self
                            .runs
                            .get(&id)
                            .map_or_else(|| self.tools.clone(), |slot| slot.tools.clone()),
                        tool_stop: tools,
                        role_tools,
                        settings: self.executor.clone(),
                    },
                    request,
                    token,
                    self.inputs.clone(),
                    id,
                    call,
                ));
            }
            Effect::Abort(call) => {
                if let Some(in_flight) = self.calls.remove(&(id, call)) {
                    in_flight.token.cancel();
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

/// What a call task needs besides its request.
struct Caller {
    /// The provider's shared limits, when the configuration sets any.
    limiter: Option<Arc<ProviderLimiter>>,
    provider: Arc<dyn Provider>,
    tools: Arc<dyn ToolBox>,
    tool_stop: ToolStop,
    /// The tools the call's worker role may use (see `Effect::Call`).
    role_tools: Vec<String>,
    settings: ExecutorSettings,
}

/// What the call's work reports besides streamed text: tool events, in order with the text.
type Notes = mpsc::UnboundedSender<ToolEvent>;

/// One provider call (a loop of them when its model calls tools): stream deltas (coalesced)
/// and tool events, then the reply back to the engine, unless cancelled, in which case
/// nothing more is sent.
async fn perform_call(
    caller: Caller,
    request: ChatRequest,
    cancel: CancellationToken,
    inputs: mpsc::UnboundedSender<(RunId, Input)>,
    run: RunId,
    call: CallId,
) {
    let settings = caller.settings.clone();
    let limiter = caller.limiter.clone();
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
    let (notes, mut tool_events) = mpsc::unbounded_channel();
    let work = call_with_tools(caller, request, sink, notes, cancel.clone());
    // A panic inside a provider or a tool must become a failed call, not a call that never
    // answers (which would leave its run waiting forever).
    let guarded = std::panic::AssertUnwindSafe(work)
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
            Some(event) = tool_events.recv() => {
                // The text streamed before a tool call goes out before it, so the call is
                // shown where it happened.
                while let Ok(delta) = deltas.try_recv() {
                    gather(delta, &mut pending, &mut pending_reasoning);
                }
                send_delta(&mut pending, &mut pending_reasoning);
                let _ = inputs.send((run, Input::Tool { call: call.clone(), event }));
            }
            _ = flush.tick(), if !pending.is_empty() || !pending_reasoning.is_empty() => {
                send_delta(&mut pending, &mut pending_reasoning);
            }
        }
    };
    while let Ok(delta) = deltas.try_recv() {
        gather(delta, &mut pending, &mut pending_reasoning);
    }
    send_delta(&mut pending, &mut pending_reasoning);
    while let Ok(event) = tool_events.try_recv() {
        let _ = inputs.send((
            run,
            Input::Tool {
                call: call.clone(),
                event,
            },
        ));
    }
    let _ = inputs.send((run, Input::Reply { call, result }));
}

/// The model, and while it asks for tools (and rounds are left) the tools and the model again.
/// Workers only: other calls are one call. The last round offers no tools, so the model has to
/// answer; a server that refuses tools is asked once more without them, with a notice.
async fn call_with_tools(
    caller: Caller,
    mut request: ChatRequest,
    sink: DeltaSink,
    notes: Notes,
    cancel: CancellationToken,
) -> Result<Completion, CallError> {
    let specs = match request.role {
        CallRole::Worker => {
            let names = caller
                .settings
                .tools
                .as_deref()
                .unwrap_or(&caller.role_tools);
            // MCP servers start here, at the first call that needs them, inside the call's
            // timeout and cancellation.
            caller.tools.prepare(names).await;
            tell_notices(&caller, &notes);
            caller.tools.specs(names)
        }
        CallRole::Planner | CallRole::Synthesizer | CallRole::Validator => Vec::new(),
    };
    if specs.is_empty() {
        return caller.provider.complete(request, sink).await;
    }
    let max_rounds = caller.settings.max_tool_rounds;
    let mut tools_refused = false;
    let mut rounds = Rounds::default();
    let mut tool_rounds = 0;
    loop {
        let offer = !tools_refused && tool_rounds < max_rounds;
        if offer {
            request.tools = specs.clone();
        } else {
            request.tools = Vec::new();
            request.messages = without_tool_turns(&request.messages);
        }
        let prompt_chars = prompt_chars(&request);
        let done = match caller
            .provider
            .complete(request.clone(), sink.clone())
            .await
        {
            Err(e) if e.reason == TOOLS_UNSUPPORTED && offer => {
                tools_refused = true;
                let _ = notes.send(ToolEvent::Unsupported {
                    message: format!(
                        "the server does not take tools for this model ({}); answering \
                         without them",
                        e.message
                    ),
                });
                continue;
            }
            other => other?,
        };
        rounds.add(&done, prompt_chars);
        if done.tool_calls.is_empty() || !offer {
            return Ok(rounds.finish(done));
        }
        tool_rounds += 1;
        let calls = done.tool_calls.clone();
        request
            .messages
            .push(Message::tool_calls(done.text.clone(), calls.clone()));
        let stop = match caller.tool_stop.lock() {
            Ok(mut current) => {
                *current = CancellationToken::new();
                current.clone()
            }
            Err(_) => CancellationToken::new(),
        };
        let results = futures_util::future::join_all(
            calls
                .into_iter()
                .map(|c| run_tool(&caller, c, &notes, &cancel, &stop)),
        )
        .await;
        // A tool source that stopped during the round says so once.
        tell_notices(&caller, &notes);
        request.messages.push(Message::tool_results(results));
    }
}

fn tell_notices(caller: &Caller, notes: &Notes) {
    for message in caller.tools.take_notices() {
        let _ = notes.send(ToolEvent::Notice { message });
    }
}

/// The usage and reasoning of the rounds so far.
#[derive(Default)]
struct Rounds {
    usage: Usage,
    reported: bool,
    reasoning: String,
    /// Every round so far was answered from the result cache.
    all_cached: bool,
    count: u32,
}

impl Rounds {
    fn add(&mut self, done: &Completion, prompt_chars: usize) {
        self.all_cached = self.count == 0 || self.all_cached;
        self.all_cached &= done.cached;
        self.count += 1;
        if !done.reasoning.is_empty() {
            if !self.reasoning.is_empty() {
                self.reasoning.push('\n');
            }
            self.reasoning.push_str(&done.reasoning);
        }
        match done.usage {
            Some(usage) if !done.cached => {
                self.reported = true;
                self.usage.add(usage);
            }
            Some(_) => {}
            // Estimated the way the run estimates a whole call without usage.
            None => self.usage.add(Usage {
                tokens_in: prompt_chars.div_ceil(4) as u64,
                tokens_out: (done.text.len() + done.reasoning.len()).div_ceil(4) as u64,
                estimated: true,
                cached_in: 0,
            }),
        }
    }

    /// The last round's answer with the usage and reasoning of them all. One round is left
    /// as it came (the run estimates a missing usage itself).
    fn finish(self, last: Completion) -> Completion {
        if self.count <= 1 {
            return last;
        }
        Completion {
            usage: Some(self.usage),
            reasoning: self.reasoning,
            cached: self.all_cached,
            ..last
        }
    }
}

fn prompt_chars(request: &ChatRequest) -> usize {
    request.system.len()
        + request
            .messages
            .iter()
            .map(|m| {
                m.content.len()
                    + m.tool_results
                        .iter()
                        .map(|r| r.content.len())
                        .sum::<usize>()
                    + m.tool_calls
                        .iter()
                        .map(|c| c.arguments_text().len())
                        .sum::<usize>()
            })
            .sum::<usize>()
}

/// The conversation with tool turns written out as text, for the final answer without tools:
/// some APIs refuse tool-call turns in a request that offers no tools.
fn without_tool_turns(messages: &[Message]) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 1);
    for m in messages {
        let mut text = m.content.clone();
        for c in &m.tool_calls {
            text.push_str(&format!(
                "\n[called {} with {}]",
                c.name,
                c.arguments_text()
            ));
        }
        for r in &m.tool_results {
            let kind = if r.is_error { "error" } else { "result" };
            text.push_str(&format!("\n[tool {kind} for {}]\n{}", r.call_id, r.content));
        }
        let text = text.trim().to_owned();
        match out.last_mut() {
            // Two turns of the same side in a row are merged: APIs want them alternating.
            Some(last) if last.role == m.role => {
                last.content.push_str("\n\n");
                last.content.push_str(&text);
            }
            _ => out.push(Message {
                role: m.role,
                content: text,
                tool_calls: Vec::new(),
                tool_results: Vec::new(),
            }),
        }
    }
    if messages.iter().any(|m| !m.tool_calls.is_empty()) {
        let note = "You have used every tool call allowed. Answer now from what you have, \
                    without calling tools.";
        match out.last_mut() {
            Some(last) if last.role == MessageRole::User => {
                last.content.push_str("\n\n");
                last.content.push_str(note);
            }
            _ => out.push(Message::user(note)),
        }
    }
    out
}

/// Longest rendering of a call's arguments in events.
const ARGUMENTS_CHARS: usize = 120;
/// Longest summary of a tool's outcome in events.
const SUMMARY_CHARS: usize = 120;

/// One tool call: reported as it starts and ends; the result the model reads. Broken
/// arguments, an unknown tool, a failing tool and the user's cancel are all results, never a
/// failed call.
async fn run_tool(
    caller: &Caller,
    call: ToolCall,
    notes: &Notes,
    cancel: &CancellationToken,
    stop: &CancellationToken,
) -> ToolResult {
    let call_id = call.id.clone();
    let _ = notes.send(ToolEvent::Started {
        call_id: call_id.clone(),
        tool: crate::sanitize::sanitize_line(&caller.tools.label(&call.name)).into_owned(),
        arguments: short_arguments(&call),
    });
    let started = tokio::time::Instant::now();
    let outcome = match &call.malformed {
        Some(malformed) => ToolOutcome::error(malformed_message(malformed)),
        None => {
            let token = cancel.child_token();
            let running = caller.tools.call(call, token.clone());
            let guarded = std::panic::AssertUnwindSafe(running).catch_unwind();
            tokio::select! {
                outcome = guarded => outcome.unwrap_or_else(|_| {
                    ToolOutcome::error("the tool failed unexpectedly (a bug in maestro)")
                }),
                _ = stop.cancelled() => {
                    token.cancel();
                    ToolOutcome::error("cancelled by the user")
                }
            }
        }
    };
    let ms = started.elapsed().as_millis() as u64;
    let _ = notes.send(ToolEvent::Finished {
        call_id: call_id.clone(),
        ok: !outcome.is_error,
        bytes: outcome.content.len() as u64,
        ms,
        summary: summary(&outcome),
        source: outcome.source.clone(),
        text: outcome.content.clone(),
    });
    ToolResult {
        call_id,
        content: outcome.content,
        is_error: outcome.is_error,
    }
}

/// The arguments in one short line: a lone string argument (a URL, a path) as itself,
/// anything else as compact JSON; what did not parse as the text the model wrote.
fn short_arguments(call: &ToolCall) -> String {
    let text = match (&call.malformed, &call.arguments) {
        (Some(m), _) => m.raw.clone(),
        (None, serde_json::Value::Object(map)) if map.len() == 1 => match map.values().next() {
            Some(serde_json::Value::String(one)) => one.clone(),
            _ => call.arguments.to_string(),
        },
        (None, other) => other.to_string(),
    };
    cut(&crate::sanitize::sanitize_line(&text), ARGUMENTS_CHARS)
}

/// One line about a tool's outcome: for a source, its status and location; else the
/// content's first line (an error's message). The size travels apart (`bytes`).
fn summary(outcome: &ToolOutcome) -> String {
    if let Some(source) = &outcome.source
        && !outcome.is_error
    {
        let status = source
            .status
            .map(|s| format!("HTTP {s} · "))
            .unwrap_or_default();
        return cut(
            &crate::sanitize::sanitize_line(&format!("{status}{}", source.location)),
            SUMMARY_CHARS,
        );
    }
    let first = outcome
        .content
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    cut(&crate::sanitize::sanitize_line(first), SUMMARY_CHARS)
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::tools::ToolCall;

    #[test]
    fn a_review_asked_for_one_run_overrides_the_configured_choice_either_way() {
        let executor = ExecutorSettings::default();
        let mut settings = crate::engine::run::tests::settings();
        let review = |on: Option<bool>| ModelOverrides {
            review: on,
            ..ModelOverrides::default()
        };
        assert!(with_models(settings.clone(), &review(Some(true)), &executor).review);
        assert!(!with_models(settings.clone(), &review(None), &executor).review);
        settings.review = true;
        assert!(with_models(settings.clone(), &review(None), &executor).review);
        assert!(!with_models(settings, &review(Some(false)), &executor).review);
    }

    #[test]
    fn a_preset_picked_for_one_run_brings_its_validation_unless_the_person_set_it() {
        let settings = crate::engine::run::tests::settings();
        let general = ModelOverrides {
            preset: Some("general".into()),
            ..ModelOverrides::default()
        };
        let research = ModelOverrides {
            preset: Some("research".into()),
            ..ModelOverrides::default()
        };
        let mut executor = ExecutorSettings {
            presets: preset::builtin(),
            ..ExecutorSettings::default()
        };
        assert!(with_models(settings.clone(), &general, &executor).validate);
        let mut on = settings.clone();
        on.validate = true;
        assert!(!with_models(on, &research, &executor).validate);
        executor.validate = Some(false);
        assert!(!with_models(settings.clone(), &general, &executor).validate);
        executor.validate = Some(true);
        assert!(with_models(settings, &research, &executor).validate);
    }

    #[test]
    fn tool_turns_are_written_out_for_the_final_answer() {
        let messages = vec![
            Message::user("Q"),
            Message::tool_calls(
                "",
                vec![ToolCall::from_text(
                    "c1".into(),
                    "fetch_url".into(),
                    r#"{"url":"u"}"#,
                )],
            ),
            Message::tool_results(vec![ToolResult {
                call_id: "c1".into(),
                content: "page".into(),
                is_error: false,
            }]),
        ];
        let flat = without_tool_turns(&messages);
        assert_eq!(flat.len(), 3);
        assert!(
            flat.iter()
                .all(|m| m.tool_calls.is_empty() && m.tool_results.is_empty())
        );
        assert!(
            flat[1]
                .content
                .contains("[called fetch_url with {\"url\":\"u\"}]")
        );
        assert!(flat[2].content.contains("page"));
        assert!(flat[2].content.contains("Answer now"));
    }

    #[test]
    fn arguments_are_short_and_sanitised() {
        let one = ToolCall::from_text(
            "c".into(),
            "t".into(),
            r#"{"url":"https://e.org/\u001b[31m"}"#,
        );
        assert_eq!(short_arguments(&one), "https://e.org/");
        let long = ToolCall::from_text(
            "c".into(),
            "t".into(),
            &format!("{{\"a\":\"{}\"", "x".repeat(300)),
        );
        assert!(short_arguments(&long).ends_with('…'));
    }
}
