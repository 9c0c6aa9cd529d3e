//! One run as a pure state machine: `Run::handle(input, now) -> Vec<Effect>`.
//!
//! Every decision lives here: when a subtask may start (all dependencies succeeded, a free
//! slot, higher priority first), what a failure means (retry with backoff, fail, block the
//! dependents), what a command does to a run in any phase, when to synthesise and how the run
//! ends. It performs no I/O and reads no clock: time comes in as `now_ms` (milliseconds since
//! the run was created) and everything that must happen goes out as an `Effect` for the
//! executor. That is what lets the rules be tested as short stories without a network.
//!
//! Every call carries a `CallId` (what it is for and which attempt); a reply, delta or timer
//! whose attempt is not the one in flight is dropped, so a late answer from a cancelled or
//! timed-out attempt never overwrites a newer one.

use std::collections::HashMap;
use std::time::Duration;

use crate::defaults::{FOLLOW_UP_EXCERPT_CHARS, FOLLOW_UP_REPORT_CHARS};
use crate::engine::budget::{Budget, Spent};
use crate::engine::plan::{self, CheckedPlan, Plan, PlanRules, PlannedSubtask};
use crate::engine::preset::Preset;
use crate::engine::prompt::{self, CallSpec, Finding, Gap};
use crate::engine::roles::{self, WorkerRole};
use crate::llm::structured::{Structured, StructuredOutput};
use crate::llm::{CONTEXT_LENGTH, CachePolicy, CallError, ChatRequest, Completion};
use crate::protocol::{
    Attachments, CallRole, CommandName, Complexity, EarlierResult, EventKind, FollowUp, Refusal,
    RunCommand, RunStatus, SKIPPED_FOR_BUDGET, SavedRun, SubtaskId, SubtaskStatus, Usage,
};

/// What a run needs to know to make its decisions.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub max_subtasks: usize,
    /// Worker calls in flight at once, for this run.
    pub concurrency: usize,
    /// Further attempts after a retryable failure (so `1 + retries` calls at most per start).
    pub retries: u32,
    /// First backoff delay; doubled for each further retry, with jitter.
    pub retry_base: Duration,
    /// Longest backoff delay.
    pub retry_max: Duration,
    /// A `Retry-After` longer than this is not waited for: the call fails instead.
    pub retry_after_limit: Duration,
    pub planner: CallSpec,
    /// The worker model; a role's own `model` overrides it.
    pub worker: CallSpec,
    pub synthesizer: CallSpec,
    /// Worker roles, the default first.
    pub roles: Vec<WorkerRole>,
    /// Seed for the backoff jitter, so tests are repeatable.
    pub seed: u64,
    /// End the run as soon as the plan is ready (`maestro plan`).
    pub stop_after_plan: bool,
    /// The most characters of each dependency's result a worker's prompt quotes; `None`:
    /// all of it.
    pub max_dependency_chars: Option<usize>,
    /// How the planner is asked for structured output (`[planner] structured`).
    pub structured: Structured,
    /// A plan of one subtask for a query the planner calls straightforward is answered
    /// directly: that subtask's answer is the report, with no synthesis call (`--no-direct`
    /// turns it off).
    pub direct: bool,
    /// Check each subtask's result with a validator call before it counts as done
    /// (`--validate`, `[validation] enabled`).
    pub validate: bool,
    /// The validator's model and limits.
    pub validator: CallSpec,
    /// The preset `roles` come from: its name and what the planner and synthesiser are told.
    pub preset: RunPreset,
    /// What the run may spend before it stops starting subtasks (`[budget]`).
    pub budget: Budget,
    /// Pause after planning until the plan is approved (`RunCommand::ApprovePlan`) or the
    /// run cancelled (`--review`, `[planner] review`). Ignored with `stop_after_plan`.
    pub review: bool,
}

/// What a run keeps of its preset besides the roles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunPreset {
    /// Its name, for the reports and saved runs; empty when the roles were given directly.
    pub name: String,
    /// Added to the planner's prompt.
    pub planner_guidance: String,
    /// The report's structure, added to the synthesis prompt.
    pub synthesis_guidance: String,
}

impl RunSettings {
    /// What plans of this run are checked against; see [`PlanRules::for_roles`].
    pub fn plan_rules(&self) -> PlanRules {
        PlanRules::for_roles(&self.roles, self.max_subtasks)
    }

    /// The model `spec`'s worker calls use: the subtask's own (the most specific choice),
    /// else its role's, else the run's worker model.
    pub fn subtask_model(&self, spec: &PlannedSubtask) -> String {
        if let Some(model) = &spec.model {
            return model.clone();
        }
        if plan::custom_role_prompt(spec).is_some() {
            return self.worker.model.clone();
        }
        roles::find(&self.roles, &spec.worker)
            .or(self.roles.first())
            .and_then(|r| r.model.clone())
            .unwrap_or_else(|| self.worker.model.clone())
    }

    /// Use `preset`'s roles and guidance.
    pub fn use_preset(&mut self, preset: &Preset) {
        self.roles.clone_from(&preset.roles);
        self.preset = RunPreset {
            name: preset.name.clone(),
            planner_guidance: preset.planner_guidance.clone(),
            synthesis_guidance: preset.synthesis_guidance.clone(),
        };
    }
}

/// What a call is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CallTarget {
    Planner,
    Subtask(SubtaskId),
    Synthesis,
    /// The validator's check of a subtask's answer; the attempt is the worker attempt it
    /// judges.
    Validation(SubtaskId),
}

/// One call: its purpose and its attempt number (1-based, counting every call for the target).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallId {
    pub target: CallTarget,
    pub attempt: u32,
}

/// What reaches the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The run begins: plan it (or use the plan it was given).
    Start,
    /// Text streamed by a call, coalesced by the executor.
    Delta {
        call: CallId,
        text: String,
    },
    /// Reasoning streamed by a call, coalesced apart from its text.
    Reasoning {
        call: CallId,
        text: String,
    },
    /// A call ended.
    Reply {
        call: CallId,
        result: Result<Completion, CallError>,
    },
    /// A backoff delay requested by `Effect::Wake` is over.
    Wake {
        call: CallId,
    },
    Command(RunCommand),
    /// Something happened in a call's tool loop (run by the executor).
    Tool {
        call: CallId,
        event: ToolEvent,
    },
    /// The provider keeps failing the same way (the executor's circuit breaker tripped): start
    /// nothing more until `RunCommand::ResumeProvider`. `message` is one line for people.
    ProviderPaused {
        message: String,
    },
    /// The call waits before it goes out, for a reason shared by the provider's callers.
    Waiting {
        call: CallId,
        delay: Duration,
        reason: String,
    },
}

/// What the executor reports of a call's tool loop; the run turns it into events for the
/// attempt, if the attempt is still current.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolEvent {
    Started {
        call_id: String,
        tool: String,
        /// Already short and sanitised.
        arguments: String,
    },
    Finished {
        call_id: String,
        ok: bool,
        bytes: u64,
        ms: u64,
        summary: String,
        source: Option<crate::protocol::Source>,
        /// The content handed back to the model.
        text: String,
    },
    /// The server refused the request for its tools; the call goes on without them.
    Unsupported { message: String },
    /// Something about the tools themselves (an MCP server that did not start or stopped),
    /// told once per process, whichever call came upon it.
    Notice { message: String },
}

/// What the executor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Publish an event (the executor adds the run id and a timestamp).
    Emit(EventKind),
    /// Make a provider call; answer with `Delta`s and one `Reply` tagged with `call`.
    /// `tools` names the tools the call may be offered (its worker role's: tool or group
    /// names, `all`); empty for every call but a worker's.
    Call {
        call: CallId,
        request: ChatRequest,
        tools: Vec<String>,
    },
    /// Stop a call in flight; its late `Delta`/`Reply` are ignored anyway.
    Abort(CallId),
    /// Feed `Input::Wake { call }` back after `after`.
    Wake { call: CallId, after: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Planning,
    /// The plan waits for the person's approval (`RunSettings::review`); nothing runs.
    Reviewing,
    Working,
    Synthesizing,
    Finished(RunStatus),
}

#[derive(Debug, Clone)]
struct Task {
    spec: PlannedSubtask,
    status: SubtaskStatus,
    /// The latest attempt number used (0 before the first start).
    attempt: u32,
    /// Retryable failures since the last start by the scheduler or the user.
    failures: u32,
    started_ms: u64,
    prompt_chars: usize,
    /// What the current attempt has streamed.
    output: String,
    result: Option<String>,
    /// The result stopped at the token limit.
    cut_off: bool,
    error: Option<String>,
    /// The user asked for this subtask again (re-run, edit): its attempts call the model
    /// rather than take a cached answer, whose repetition is what the user turned down.
    bypass_cache: bool,
    /// The answer the validator is judging, while `Validating`.
    judged: Option<Answer>,
    /// Validator FAILs since the subtask was last started by the scheduler or the user.
    rejections: u32,
    /// Why the validator rejected the last answer: the next attempt's prompt says it.
    fix: Option<String>,
    /// The validator failed the current result twice, for this reason; it is kept, flagged.
    flagged: Option<String>,
    /// The model of the current attempt, to say what its tokens were spent on.
    model: String,
    /// Settled without running because the report was asked for when the budget was reached.
    skipped: bool,
}

/// A worker's answer waiting for the validator's verdict.
#[derive(Debug, Clone)]
struct Answer {
    text: String,
    cut_off: bool,
    cached: bool,
    usage: Usage,
    elapsed_ms: u64,
}

/// Planner or synthesis call state.
#[derive(Debug, Clone, Default)]
struct Single {
    attempt: u32,
    failures: u32,
    in_flight: bool,
    waiting: bool,
    prompt_chars: usize,
    output: String,
    /// Subtasks of the streaming plan already announced as drafted (planner only).
    drafted: usize,
    /// The model of the current attempt.
    model: String,
}

/// One run's state. Create with `Run::new` (or `Run::restore`), then feed `Input::Start`.
#[derive(Debug, Clone)]
pub struct Run {
    query: String,
    settings: RunSettings,
    phase: Phase,
    given_plan: Option<Plan>,
    /// What a restored run starts from, until `Input::Start` takes it.
    saved: Option<SavedRun>,
    /// Added to every `now_ms`: a restored run's time goes on from where it was saved.
    base_ms: u64,
    plan: Option<Plan>,
    tasks: Vec<Task>,
    index: HashMap<SubtaskId, usize>,
    planner: Single,
    /// The first unusable planner answer and what was wrong with it, once the planner has
    /// been asked to correct itself (it is asked once).
    plan_reask: Option<(String, String)>,
    synthesis: Single,
    synthesis_text: Option<String>,
    usage: Usage,
    rng: u64,
    /// The earlier run this one follows up on (see [`Run::following`]).
    follow_up: Option<FollowUp>,
    /// The plan's one subtask answers the query: its result is the report (see
    /// [`RunSettings::direct`]).
    direct: bool,
    /// The files attached to the run (see [`Run::attaching`]).
    context: Attachments,
    /// `BudgetReached` was announced and nothing has raised the budget since: subtasks
    /// wait.
    budget_reached: bool,
    /// What the run's calls cost so far by the budget's prices (counted only under a cost
    /// limit), US dollars.
    cost: f64,
    /// Why the provider was paused, until `ResumeProvider`: subtasks wait.
    provider_paused: Option<String>,
    /// When the plan review began, while the run waits for it.
    review_started: Option<u64>,
    /// Time spent waiting for plan reviews: not counted against the budget's deadline, which
    /// is about the run's work, not the person's reading.
    reviewed_ms: u64,
}

impl Run {
    /// A run for `query`. With `plan`, planning is skipped (the plan is still checked).
    pub fn new(query: impl Into<String>, settings: RunSettings, plan: Option<Plan>) -> Self {
        let rng = settings.seed | 1;
        Self {
            query: query.into(),
            settings,
            phase: Phase::Planning,
            given_plan: plan,
            saved: None,
            base_ms: 0,
            plan: None,
            tasks: Vec::new(),
            index: HashMap::new(),
            planner: Single::default(),
            plan_reask: None,
            synthesis: Single::default(),
            synthesis_text: None,
            usage: Usage::default(),
            rng,
            follow_up: None,
            direct: false,
            context: Attachments::default(),
            budget_reached: false,
            cost: 0.0,
            provider_paused: None,
            review_started: None,
            reviewed_ms: 0,
        }
    }

    /// The run follows up on an earlier one: its planner and workers see the earlier query
    /// and report (the report cut to `defaults::FOLLOW_UP_REPORT_CHARS`, with a notice), the
    /// planner also the earlier subtasks with an excerpt of each result, and a plan subtask
    /// that names one of them in `reuse` takes its result without a call.
    pub fn following(mut self, follow_up: Option<FollowUp>) -> Self {
        self.follow_up = follow_up;
        self
    }

    /// The person attached files to the run: the planner and every worker see their text
    /// (before the rest of their first message, the same for every call), and the run
    /// announces them with `ContextAttached` after `RunStarted`.
    pub fn attaching(mut self, context: Attachments) -> Self {
        self.context = context;
        self
    }

    /// A run rebuilt from what was saved, to go on where it stopped. On `Input::Start` it checks
    /// the saved plan as any given plan and restates the saved facts as the events a consumer
    /// folds: `RunStarted`, `PlanReady`, `SubtaskSucceeded` for each saved result and
    /// `SynthesisFinished` for the saved report. Saved results are never asked for again.
    /// Then it goes on like any run: subtasks without a result (failed, cancelled, blocked or
    /// unfinished when saved) run again, dependents after their dependencies, then a new
    /// synthesis. A run whose every subtask has a result and whose report was written by the
    /// model (not joined after a failed synthesis) makes no call at all: it ends with
    /// `RunFinished(succeeded)` at once, and a `Resynthesize` can still ask for a new report.
    pub fn restore(saved: SavedRun, settings: RunSettings) -> Self {
        let mut run = Self::new(saved.query.clone(), settings, None)
            .following(saved.follow_up.clone())
            .attaching(saved.context.clone());
        run.base_ms = saved.elapsed_ms;
        run.saved = Some(saved);
        run
    }

    /// The status of a subtask, if the plan has it.
    pub fn subtask_status(&self, id: &SubtaskId) -> Option<SubtaskStatus> {
        self.index.get(id).map(|&i| self.tasks[i].status)
    }

    /// The run has ended (it can still be reopened by a command).
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }

    pub fn handle(&mut self, input: Input, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        let now_ms = now_ms.saturating_add(self.base_ms);
        match input {
            Input::Start => self.start(now_ms, &mut out),
            Input::Delta { call, text } => self.on_delta(call, text, &mut out),
            Input::Reasoning { call, text } => self.on_reasoning(call, text, &mut out),
            Input::Reply { call, result } => self.on_reply(call, result, now_ms, &mut out),
            Input::Wake { call } => self.on_wake(call, now_ms, &mut out),
            Input::Command(command) => self.on_command(command, now_ms, &mut out),
            Input::Tool { call, event } => self.on_tool(call, event, &mut out),
            Input::ProviderPaused { message } => self.pause_provider(message, &mut out),
            Input::Waiting {
                call,
                delay,
                reason,
            } => {
                if let CallTarget::Subtask(subtask) = &call.target
                    && self.is_current(&call)
                {
                    out.push(Effect::Emit(EventKind::SubtaskWaiting {
                        subtask: subtask.clone(),
                        attempt: call.attempt,
                        delay_ms: millis(delay),
                        reason,
                    }));
                }
            }
        }
        self.cost += self.cost_of(&out);
        out
    }

    /// Tool calls are shown with the attempt that made them; those of a stale attempt are
    /// dropped like its text. Only workers are offered tools.
    fn on_tool(&mut self, call: CallId, event: ToolEvent, out: &mut Vec<Effect>) {
        if !self.is_current(&call) {
            return;
        }
        let subtask = match call.target {
            CallTarget::Subtask(id) => id,
            CallTarget::Planner | CallTarget::Synthesis | CallTarget::Validation(_) => return,
        };
        let attempt = call.attempt;
        out.push(Effect::Emit(match event {
            ToolEvent::Started {
                call_id,
                tool,
                arguments,
            } => EventKind::ToolCallStarted {
                subtask,
                attempt,
                call_id,
                tool,
                arguments,
            },
            ToolEvent::Finished {
                call_id,
                ok,
                bytes,
                ms,
                summary,
                source,
                text,
            } => EventKind::ToolCallFinished {
                subtask,
                attempt,
                call_id,
                ok,
                bytes,
                ms,
                summary,
                source,
                text,
            },
            ToolEvent::Unsupported { message } => EventKind::Notice {
                message: format!("subtask `{subtask}`: {message}"),
            },
            ToolEvent::Notice { message } => EventKind::Notice { message },
        }));
    }

    // ---- planning -------------------------------------------------------------------------

    fn start(&mut self, now: u64, out: &mut Vec<Effect>) {
        out.push(Effect::Emit(EventKind::RunStarted {
            query: self.query.clone(),
        }));
        if !self.context.is_empty() {
            out.push(Effect::Emit(EventKind::ContextAttached {
                files: self.context.listed(),
                skipped: self.context.skipped.clone(),
            }));
        }
        if let Some(saved) = self.saved.take() {
            self.resume(saved, now, out);
            return;
        }
        if let Some(follow_up) = &self.follow_up {
            let chars = follow_up.report.chars().count();
            if chars > FOLLOW_UP_REPORT_CHARS {
                out.push(Effect::Emit(EventKind::Notice {
                    message: format!(
                        "the earlier run's report has {chars} characters; this follow-up's \
                         prompts quote the first {FOLLOW_UP_REPORT_CHARS}"
                    ),
                }));
            }
        }
        match self.given_plan.take() {
            Some(given) => match plan::check_plan(given, &self.settings.plan_rules()) {
                Ok(checked) => self.accept_plan(checked, now, out),
                Err(e) => self.finish(
                    RunStatus::Failed,
                    Some(format!("the given plan is invalid: {e}")),
                    now,
                    out,
                ),
            },
            None => self.call_planner(out),
        }
    }

    /// Go on from a saved run; see [`Run::restore`].
    fn resume(&mut self, saved: SavedRun, now: u64, out: &mut Vec<Effect>) {
        let checked = match plan::check_plan(saved.plan, &self.settings.plan_rules()) {
            Ok(checked) => checked,
            Err(e) => {
                let error = format!("the saved plan is invalid: {e}");
                self.finish(RunStatus::Failed, Some(error), now, out);
                return;
            }
        };
        self.usage = saved.usage;
        self.install_plan(checked, out);
        for subtask in saved.subtasks {
            let Some(&i) = self.index.get(&subtask.id) else {
                out.push(Effect::Emit(EventKind::Notice {
                    message: format!(
                        "the saved subtask `{}` is not in the plan; dropped",
                        subtask.id
                    ),
                }));
                continue;
            };
            let task = &mut self.tasks[i];
            task.attempt = subtask.attempts;
            if let Some(result) = subtask.result {
                task.attempt = task.attempt.max(1);
                task.status = SubtaskStatus::Succeeded;
                task.result = Some(result.text.clone());
                task.cut_off = result.cut_off;
                task.flagged = result.flagged.clone();
                // The flag is restated as the verdict that set it, so consumers keep it.
                if let Some(reason) = result.flagged {
                    out.push(Effect::Emit(EventKind::SubtaskValidated {
                        subtask: subtask.id.clone(),
                        attempt: task.attempt,
                        passed: false,
                        reason,
                        usage: Usage::default(),
                        flagged: true,
                    }));
                }
                out.push(Effect::Emit(EventKind::SubtaskSucceeded {
                    subtask: subtask.id,
                    attempt: task.attempt,
                    elapsed_ms: result.elapsed_ms,
                    usage: result.usage,
                    result: result.text,
                    cut_off: result.cut_off,
                    cached: result.cached,
                }));
            }
        }
        self.synthesis.attempt = saved.synthesis_attempts;
        self.phase = Phase::Working;
        if let Some(report) = saved.report {
            self.synthesis.attempt = self.synthesis.attempt.max(1);
            self.synthesis_text = Some(report.text.clone());
            out.push(Effect::Emit(EventKind::SynthesisFinished {
                attempt: self.synthesis.attempt,
                text: report.text,
                synthesized: report.synthesized,
                usage: report.usage,
                error: None,
            }));
            let complete = self
                .tasks
                .iter()
                .all(|t| t.status == SubtaskStatus::Succeeded);
            if report.synthesized && complete {
                self.finish(RunStatus::Succeeded, None, now, out);
                return;
            }
        }
        self.pump(now, out);
    }

    fn call_planner(&mut self, out: &mut Vec<Effect>) {
        self.planner.attempt += 1;
        self.planner.in_flight = true;
        self.planner.waiting = false;
        self.planner.output.clear();
        self.planner.drafted = 0;
        let mut request = prompt::planner_request(
            &self.query,
            &self.settings.roles,
            &self.settings.preset.planner_guidance,
            &self.settings.plan_rules(),
            &self.settings.planner,
            self.plan_reask
                .as_ref()
                .map(|(answer, error)| (answer.as_str(), error.as_str())),
        );
        if let Some(follow_up) = &self.follow_up {
            with_earlier(follow_up, true, |earlier| {
                prompt::planner_follow_up(&mut request, earlier);
            });
        }
        prompt::attach_files(&mut request, &self.context.files);
        if self.settings.structured != Structured::Off {
            let mut schema = plan::plan_schema(&self.settings.plan_rules());
            if self.follow_up.is_some()
                && let Some(fields) = schema
                    .pointer_mut("/properties/subtasks/items/properties")
                    .and_then(|v| v.as_object_mut())
            {
                fields.insert("reuse".into(), serde_json::json!({ "type": "string" }));
            }
            request.structured = Some(StructuredOutput {
                name: "plan".into(),
                description: "Submit the plan: the subtasks, their worker roles and dependencies."
                    .into(),
                schema,
                mode: self.settings.structured,
            });
        }
        self.planner.prompt_chars = request_chars(&request);
        self.planner.model = request.model.clone();
        out.push(Effect::Emit(EventKind::PlanningStarted {
            attempt: self.planner.attempt,
            model: request.model.clone(),
        }));
        out.push(Effect::Call {
            call: CallId {
                target: CallTarget::Planner,
                attempt: self.planner.attempt,
            },
            request,
            tools: Vec::new(),
        });
    }

    fn on_planner_reply(
        &mut self,
        result: Result<Completion, CallError>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        self.planner.in_flight = false;
        match result {
            Ok(done) => {
                let usage = usage_or_estimate(&done, self.planner.prompt_chars);
                self.usage.add(usage);
                let parsed = plan::parse_plan(&done.text, &self.settings.plan_rules());
                out.push(spent(
                    CallRole::Planner,
                    None,
                    self.planner.attempt,
                    &self.planner.model,
                    usage,
                    parsed.is_err(),
                ));
                match parsed {
                    Ok(checked) => self.accept_plan(checked, now, out),
                    Err(e) => {
                        let error = e.to_string();
                        out.push(Effect::Emit(EventKind::PlanRejected {
                            attempt: self.planner.attempt,
                            error: error.clone(),
                            answer: bounded_answer(&done.text),
                        }));
                        if self.plan_reask.is_some() {
                            self.finish(
                                RunStatus::Failed,
                                Some(format!(
                                    "the planner gave no usable plan twice; last problem: {error}"
                                )),
                                now,
                                out,
                            );
                        } else {
                            self.plan_reask = Some((done.text, error));
                            self.planner.failures = 0;
                            self.call_planner(out);
                        }
                    }
                }
            }
            Err(mut e) => {
                let paid = self.failed_usage(&e, self.planner.prompt_chars, "");
                let call = CallId {
                    target: CallTarget::Planner,
                    attempt: self.planner.attempt,
                };
                if let Some(delay) = self.retry_delay(&mut e, self.planner.failures) {
                    self.planner.failures += 1;
                    self.planner.waiting = true;
                    out.push(Effect::Emit(EventKind::PlanningRetrying {
                        attempt: self.planner.attempt,
                        delay_ms: millis(delay),
                        reason: e.reason.clone(),
                    }));
                    self.spent_failed(CallRole::Planner, None, paid, out);
                    out.push(Effect::Wake { call, after: delay });
                } else {
                    self.spent_failed(CallRole::Planner, None, paid, out);
                    self.finish(
                        RunStatus::Failed,
                        Some(format!("planning failed: {}", e.message)),
                        now,
                        out,
                    );
                }
            }
        }
    }

    fn accept_plan(&mut self, mut checked: CheckedPlan, now: u64, out: &mut Vec<Effect>) {
        self.check_reuse(&mut checked, out);
        if self.settings.review && !self.settings.stop_after_plan {
            // What the check repaired is said now, while the person can still change it.
            for message in checked.warnings {
                out.push(Effect::Emit(EventKind::Notice { message }));
            }
            self.phase = Phase::Reviewing;
            self.review_started = Some(now);
            out.push(Effect::Emit(EventKind::PlanAwaitingReview {
                plan: checked.plan,
            }));
            return;
        }
        self.go_on_with(checked, now, out);
    }

    /// The plan is accepted (checked, reuse checked, approved if reviewed): install it and
    /// start.
    fn go_on_with(&mut self, checked: CheckedPlan, now: u64, out: &mut Vec<Effect>) {
        self.install_plan(checked, out);
        if self.settings.stop_after_plan {
            self.finish(RunStatus::Succeeded, None, now, out);
            return;
        }
        self.phase = Phase::Working;
        self.take_reused(out);
        self.pump(now, out);
    }

    /// A subtask may only reuse a result the earlier run has; any other `reuse` is dropped
    /// with a notice, and the subtask runs.
    fn check_reuse(&self, checked: &mut CheckedPlan, out: &mut Vec<Effect>) {
        for spec in &mut checked.plan.subtasks {
            let Some(wanted) = &spec.reuse else { continue };
            let known = self
                .follow_up
                .as_ref()
                .is_some_and(|f| f.results.iter().any(|r| &r.id == wanted));
            if !known {
                let message = match self.follow_up {
                    Some(_) => format!(
                        "subtask `{}` would reuse `{wanted}`, which the earlier run has no \
                         result for; it runs instead",
                        spec.id
                    ),
                    None => format!(
                        "subtask `{}` would reuse `{wanted}`, but this run follows up on no \
                         earlier run; it runs instead",
                        spec.id
                    ),
                };
                out.push(Effect::Emit(EventKind::Notice { message }));
                spec.reuse = None;
            }
        }
    }

    /// Subtasks that reuse an earlier result succeed at once with it, without a call.
    fn take_reused(&mut self, out: &mut Vec<Effect>) {
        let Some(follow_up) = &self.follow_up else {
            return;
        };
        for task in &mut self.tasks {
            let Some(wanted) = &task.spec.reuse else {
                continue;
            };
            let Some(earlier) = follow_up.results.iter().find(|r| &r.id == wanted) else {
                continue;
            };
            task.status = SubtaskStatus::Succeeded;
            task.result = Some(earlier.text.clone());
            out.push(Effect::Emit(EventKind::SubtaskSucceeded {
                subtask: task.spec.id.clone(),
                attempt: task.attempt,
                elapsed_ms: 0,
                usage: Usage::default(),
                result: earlier.text.clone(),
                cut_off: false,
                cached: false,
            }));
        }
    }

    /// Take the plan: its warnings become notices, its subtasks pending tasks.
    fn install_plan(&mut self, checked: CheckedPlan, out: &mut Vec<Effect>) {
        for message in checked.warnings {
            out.push(Effect::Emit(EventKind::Notice { message }));
        }
        let plan = checked.plan;
        self.tasks = plan
            .subtasks
            .iter()
            .map(|spec| Task {
                model: String::new(),
                spec: spec.clone(),
                status: SubtaskStatus::Pending,
                attempt: 0,
                failures: 0,
                started_ms: 0,
                prompt_chars: 0,
                output: String::new(),
                result: None,
                cut_off: false,
                error: None,
                bypass_cache: false,
                judged: None,
                rejections: 0,
                fix: None,
                flagged: None,
                skipped: false,
            })
            .collect();
        self.index = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.spec.id.clone(), i))
            .collect();
        out.push(Effect::Emit(EventKind::PlanReady { plan: plan.clone() }));
        self.decide_direct(&plan, out);
        self.plan = Some(plan);
    }

    /// Whether the run answers directly: the planner called the query straightforward and
    /// planned one subtask, and direct answers are on. A plan checked only to be printed
    /// (`maestro plan`) is not run, so it is not announced as direct.
    fn decide_direct(&mut self, plan: &Plan, out: &mut Vec<Effect>) {
        self.direct = false;
        if !self.settings.direct
            || self.settings.stop_after_plan
            || plan.complexity != Some(Complexity::Straightforward)
        {
            return;
        }
        match plan.subtasks.as_slice() {
            [only] => {
                self.direct = true;
                out.push(Effect::Emit(EventKind::DirectAnswer {
                    subtask: only.id.clone(),
                }));
            }
            more => out.push(Effect::Emit(EventKind::Notice {
                message: format!(
                    "the planner called the query straightforward but planned {} subtasks; \
                     they run and are synthesised as usual",
                    more.len()
                ),
            })),
        }
    }

    // ---- scheduling -----------------------------------------------------------------------

    /// Bring the run forward: block or unblock, start what may start, synthesise or finish
    /// when everything is settled. Called after every change.
    fn pump(&mut self, now: u64, out: &mut Vec<Effect>) {
        if self.phase != Phase::Working {
            return;
        }
        self.propagate_blocking(out);
        if self.held(now, out) {
            // Running subtasks finish; the report waits for a raise or `SynthesizeNow`.
            return;
        }

        let running = self
            .tasks
            .iter()
            .filter(|t| t.status == SubtaskStatus::Running)
            .count();
        let free = self.settings.concurrency.max(1).saturating_sub(running);
        let mut ready: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| self.tasks[i].status == SubtaskStatus::Pending && self.deps_done(i))
            .collect();
        // Stable sort: plan order breaks ties between equal priorities.
        ready.sort_by_key(|&i| self.tasks[i].spec.priority);
        for i in ready.into_iter().take(free) {
            self.start_task(i, now, out);
        }

        if self.tasks.iter().all(|t| t.status.is_settled()) {
            if self
                .tasks
                .iter()
                .any(|t| t.status == SubtaskStatus::Succeeded)
            {
                if self.direct {
                    self.direct_report(now, out);
                } else {
                    self.start_synthesis(out);
                }
            } else {
                self.finish(
                    RunStatus::Failed,
                    Some("no subtask succeeded, so there is nothing to synthesise".into()),
                    now,
                    out,
                );
            }
        }
    }

    /// A subtask waits while its dependencies may still succeed and is blocked once one of
    /// them cannot (failed, cancelled or itself blocked). Repeated to a fixpoint because
    /// blocking travels down chains.
    fn propagate_blocking(&mut self, out: &mut Vec<Effect>) {
        loop {
            let mut changed = false;
            for i in 0..self.tasks.len() {
                let dead: Vec<SubtaskId> = self.tasks[i]
                    .spec
                    .depends_on
                    .iter()
                    .filter(|d| {
                        self.status_of(d).is_some_and(|s| {
                            matches!(
                                s,
                                SubtaskStatus::Failed
                                    | SubtaskStatus::Cancelled
                                    | SubtaskStatus::Blocked
                            )
                        })
                    })
                    .cloned()
                    .collect();
                let status = self.tasks[i].status;
                if status == SubtaskStatus::Pending && !dead.is_empty() {
                    self.tasks[i].status = SubtaskStatus::Blocked;
                    out.push(Effect::Emit(EventKind::SubtaskBlocked {
                        subtask: self.tasks[i].spec.id.clone(),
                        waiting_on: dead,
                    }));
                    changed = true;
                } else if status == SubtaskStatus::Blocked && dead.is_empty() {
                    self.tasks[i].status = SubtaskStatus::Pending;
                    self.tasks[i].failures = 0;
                    out.push(Effect::Emit(EventKind::SubtaskQueued {
                        subtask: self.tasks[i].spec.id.clone(),
                        waiting_on: self.unfinished_deps(i),
                    }));
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    fn status_of(&self, id: &SubtaskId) -> Option<SubtaskStatus> {
        self.index.get(id).map(|&i| self.tasks[i].status)
    }

    fn deps_done(&self, i: usize) -> bool {
        self.tasks[i]
            .spec
            .depends_on
            .iter()
            .all(|d| self.status_of(d) == Some(SubtaskStatus::Succeeded))
    }

    fn unfinished_deps(&self, i: usize) -> Vec<SubtaskId> {
        self.tasks[i]
            .spec
            .depends_on
            .iter()
            .filter(|d| self.status_of(d) != Some(SubtaskStatus::Succeeded))
            .cloned()
            .collect()
    }

    /// The role subtask `spec` runs as: the planner's own for a custom subtask, else the
    /// preset's role of that name, else the default role.
    fn role(&self, spec: &PlannedSubtask) -> WorkerRole {
        if let Some(custom) = plan::custom_role_prompt(spec) {
            return prompt::custom_role(custom);
        }
        roles::find(&self.settings.roles, &spec.worker)
            .or(self.settings.roles.first())
            .cloned()
            .unwrap_or_else(|| WorkerRole::new(&spec.worker, "", ""))
    }

    fn start_task(&mut self, i: usize, now: u64, out: &mut Vec<Effect>) {
        let role = self.role(&self.tasks[i].spec);
        let mut spec = self.settings.worker.clone();
        // One rule for the model, shared with what a plan review shows.
        spec.model = self.settings.subtask_model(&self.tasks[i].spec);
        if let Some(temperature) = role.temperature {
            spec.temperature = Some(temperature);
        }
        if let Some(max_tokens) = role.max_tokens {
            spec.max_tokens = max_tokens;
        }
        let bound = self.settings.max_dependency_chars;
        let bounded: Vec<(&PlannedSubtask, std::borrow::Cow<'_, str>)> = self.tasks[i]
            .spec
            .depends_on
            .iter()
            .filter_map(|d| self.index.get(d))
            .map(|&j| {
                let t = &self.tasks[j];
                let result = t.result.as_deref().unwrap_or("");
                (&t.spec, prompt::bound_result(result, bound))
            })
            .collect();
        let deps: Vec<(&PlannedSubtask, &str)> =
            bounded.iter().map(|(s, r)| (*s, r.as_ref())).collect();
        let mut request =
            prompt::worker_request(&self.query, &self.tasks[i].spec, &role, &deps, &spec);
        if let Some(follow_up) = &self.follow_up {
            with_earlier(follow_up, false, |earlier| {
                prompt::worker_follow_up(&mut request, earlier);
            });
        }
        prompt::attach_files(&mut request, &self.context.files);
        let task = &mut self.tasks[i];
        if let Some(reason) = &task.fix {
            prompt::worker_revision(&mut request, reason);
        }
        if task.bypass_cache {
            request.cache = CachePolicy::Bypass;
        }
        task.attempt += 1;
        task.status = SubtaskStatus::Running;
        task.started_ms = now;
        task.prompt_chars = request_chars(&request);
        task.model = request.model.clone();
        task.output.clear();
        task.error = None;
        task.flagged = None;
        task.judged = None;
        out.push(Effect::Emit(EventKind::SubtaskStarted {
            subtask: task.spec.id.clone(),
            attempt: task.attempt,
            worker: role.name.clone(),
            model: request.model.clone(),
        }));
        out.push(Effect::Call {
            call: CallId {
                target: CallTarget::Subtask(task.spec.id.clone()),
                attempt: task.attempt,
            },
            request,
            tools: role.tools.clone(),
        });
    }

    fn on_task_reply(
        &mut self,
        i: usize,
        result: Result<Completion, CallError>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        let elapsed_ms = now.saturating_sub(self.tasks[i].started_ms);
        let result = self.answer_or_empty(result, self.tasks[i].prompt_chars);
        match result {
            Ok(done) => {
                // A cached answer cost nothing now, whatever its first call spent.
                let usage = if done.cached {
                    Usage::default()
                } else {
                    usage_or_estimate(&done, self.tasks[i].prompt_chars)
                };
                self.usage.add(usage);
                let task = &self.tasks[i];
                if !done.cached {
                    out.push(spent(
                        CallRole::Worker,
                        Some(&task.spec.id),
                        task.attempt,
                        &task.model,
                        usage,
                        false,
                    ));
                }
                let answer = Answer {
                    text: done.text,
                    cut_off: done.cut_off,
                    cached: done.cached,
                    usage,
                    elapsed_ms,
                };
                if self.settings.validate {
                    self.call_validator(i, answer, out);
                } else {
                    self.succeed(i, answer, out);
                }
            }
            Err(mut e) => {
                if e.reason == CONTEXT_LENGTH {
                    let task = &self.tasks[i];
                    e.message = too_long(
                        &format!("subtask `{}` ({})", task.spec.id, task.spec.title),
                        task.prompt_chars,
                        !task.spec.depends_on.is_empty(),
                        &e.message,
                    );
                }
                let paid = self.failed_usage(&e, self.tasks[i].prompt_chars, &self.tasks[i].output);
                let delay = self.retry_delay(&mut e, self.tasks[i].failures);
                let id = self.tasks[i].spec.id.clone();
                self.spent_failed(CallRole::Worker, Some(&id), paid, out);
                let task = &mut self.tasks[i];
                let call = CallId {
                    target: CallTarget::Subtask(task.spec.id.clone()),
                    attempt: task.attempt,
                };
                if let Some(delay) = delay {
                    task.failures += 1;
                    task.status = SubtaskStatus::Retrying;
                    task.error = Some(e.message.clone());
                    out.push(Effect::Emit(EventKind::SubtaskRetrying {
                        subtask: task.spec.id.clone(),
                        attempt: task.attempt,
                        delay_ms: millis(delay),
                        reason: e.reason.clone(),
                        error: e.message.clone(),
                    }));
                    out.push(Effect::Wake { call, after: delay });
                } else {
                    task.status = SubtaskStatus::Failed;
                    task.error = Some(e.message.clone());
                    out.push(Effect::Emit(EventKind::SubtaskFailed {
                        subtask: task.spec.id.clone(),
                        attempt: task.attempt,
                        elapsed_ms,
                        error: e.message,
                        partial: std::mem::take(&mut task.output),
                    }));
                }
            }
        }
        self.pump(now, out);
    }

    fn succeed(&mut self, i: usize, answer: Answer, out: &mut Vec<Effect>) {
        let task = &mut self.tasks[i];
        task.status = SubtaskStatus::Succeeded;
        task.output.clear();
        task.judged = None;
        task.fix = None;
        task.result = Some(answer.text.clone());
        task.cut_off = answer.cut_off;
        out.push(Effect::Emit(EventKind::SubtaskSucceeded {
            subtask: task.spec.id.clone(),
            attempt: task.attempt,
            elapsed_ms: answer.elapsed_ms,
            usage: answer.usage,
            result: answer.text,
            cut_off: answer.cut_off,
            cached: answer.cached,
        }));
    }

    // ---- validation -----------------------------------------------------------------------

    /// Ask the validator about the answer; the subtask is `Validating` (not done, so no
    /// dependent starts) until its verdict. The call takes no worker slot: it is not a
    /// worker's.
    fn call_validator(&mut self, i: usize, answer: Answer, out: &mut Vec<Effect>) {
        let request = prompt::validator_request(
            &self.query,
            &self.tasks[i].spec,
            &answer.text,
            &self.settings.validator,
        );
        let task = &mut self.tasks[i];
        task.status = SubtaskStatus::Validating;
        task.prompt_chars = request_chars(&request);
        task.judged = Some(answer);
        out.push(Effect::Emit(EventKind::SubtaskValidating {
            subtask: task.spec.id.clone(),
            attempt: task.attempt,
            model: request.model.clone(),
        }));
        out.push(Effect::Call {
            call: CallId {
                target: CallTarget::Validation(task.spec.id.clone()),
                attempt: task.attempt,
            },
            request,
            tools: Vec::new(),
        });
    }

    /// The verdict: PASS keeps the answer; a first FAIL runs the subtask again with the
    /// reason in its prompt; a second keeps the answer, flagged. A verdict that cannot be read
    /// counts as a pass, and a failed validator call keeps the answer unchecked, each with a
    /// notice: the gate never fails a subtask by itself.
    fn on_validation_reply(
        &mut self,
        i: usize,
        result: Result<Completion, CallError>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        let Some(answer) = self.tasks[i].judged.take() else {
            return;
        };
        let id = self.tasks[i].spec.id.clone();
        let attempt = self.tasks[i].attempt;
        let done = match result {
            Ok(done) => done,
            Err(e) => {
                out.push(Effect::Emit(EventKind::Notice {
                    message: format!(
                        "the validator's check of `{id}` failed ({}); its result is kept \
                         unchecked",
                        e.message
                    ),
                }));
                self.succeed(i, answer, out);
                self.pump(now, out);
                return;
            }
        };
        let usage = usage_or_estimate(&done, self.tasks[i].prompt_chars);
        self.usage.add(usage);
        out.push(spent(
            CallRole::Validator,
            Some(&id),
            attempt,
            &self.settings.validator.model,
            usage,
            false,
        ));
        let verdict = prompt::parse_verdict(&done.text).unwrap_or_else(|| {
            out.push(Effect::Emit(EventKind::Notice {
                message: format!(
                    "the validator's answer on `{id}` has no PASS or FAIL; taken as a pass"
                ),
            }));
            prompt::Verdict {
                passed: true,
                reason: format!(
                    "no verdict found in: {}",
                    crate::sanitize::sanitize_line(done.text.trim())
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            }
        });
        let final_fail = !verdict.passed && self.tasks[i].rejections >= 1;
        out.push(Effect::Emit(EventKind::SubtaskValidated {
            subtask: id,
            attempt,
            passed: verdict.passed,
            reason: verdict.reason.clone(),
            usage,
            flagged: final_fail,
        }));
        if verdict.passed {
            self.succeed(i, answer, out);
        } else if final_fail {
            self.tasks[i].flagged = Some(verdict.reason);
            self.succeed(i, answer, out);
        } else {
            let task = &mut self.tasks[i];
            task.rejections += 1;
            task.fix = Some(verdict.reason);
            task.status = SubtaskStatus::Pending;
            task.failures = 0;
            task.bypass_cache = true;
        }
        self.pump(now, out);
    }

    // ---- synthesis and the end ------------------------------------------------------------

    fn findings_and_gaps(&self) -> (Vec<Finding<'_>>, Vec<Gap<'_>>) {
        let mut findings = Vec::new();
        let mut gaps = Vec::new();
        for t in &self.tasks {
            match (&t.status, &t.result) {
                (SubtaskStatus::Succeeded, Some(result)) => findings.push(Finding {
                    title: &t.spec.title,
                    result,
                    cut_off: t.cut_off,
                    flagged: t.flagged.as_deref(),
                }),
                (status, _) => gaps.push(Gap {
                    title: &t.spec.title,
                    why: match status {
                        SubtaskStatus::Failed => t.error.as_deref().unwrap_or("failed"),
                        SubtaskStatus::Blocked => "blocked: a subtask it depends on has no result",
                        SubtaskStatus::Cancelled if t.skipped => SKIPPED_FOR_BUDGET,
                        SubtaskStatus::Cancelled => "cancelled",
                        _ => status.word(),
                    },
                }),
            }
        }
        (findings, gaps)
    }

    /// A direct run's report is its one subtask's answer, as it came: no synthesis call. It
    /// is published as a finished synthesis (with no `SynthesisStarted` and no tokens) so
    /// every consumer and the store keep it as the report.
    fn direct_report(&mut self, now: u64, out: &mut Vec<Effect>) {
        let Some(text) = self.tasks.first().and_then(|t| t.result.clone()) else {
            return;
        };
        self.synthesis.attempt += 1;
        self.synthesis_text = Some(text.clone());
        out.push(Effect::Emit(EventKind::SynthesisFinished {
            attempt: self.synthesis.attempt,
            text,
            synthesized: true,
            usage: Usage::default(),
            error: None,
        }));
        self.finish(RunStatus::Succeeded, None, now, out);
    }

    fn start_synthesis(&mut self, out: &mut Vec<Effect>) {
        self.phase = Phase::Synthesizing;
        self.synthesis.failures = 0;
        self.call_synthesis(out);
    }

    fn call_synthesis(&mut self, out: &mut Vec<Effect>) {
        let guidance = self
            .plan
            .as_ref()
            .map(|p| p.synthesis_guidance.as_str())
            .unwrap_or("");
        let (findings, gaps) = self.findings_and_gaps();
        let request = prompt::synthesis_request(
            &self.query,
            &self.settings.preset.synthesis_guidance,
            guidance,
            &findings,
            &gaps,
            &self.settings.synthesizer,
        );
        self.synthesis.attempt += 1;
        self.synthesis.in_flight = true;
        self.synthesis.waiting = false;
        self.synthesis.prompt_chars = request_chars(&request);
        self.synthesis.model = request.model.clone();
        self.synthesis.output.clear();
        out.push(Effect::Emit(EventKind::SynthesisStarted {
            attempt: self.synthesis.attempt,
            model: request.model.clone(),
        }));
        out.push(Effect::Call {
            call: CallId {
                target: CallTarget::Synthesis,
                attempt: self.synthesis.attempt,
            },
            request,
            tools: Vec::new(),
        });
    }

    fn on_synthesis_reply(
        &mut self,
        result: Result<Completion, CallError>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        self.synthesis.in_flight = false;
        let attempt = self.synthesis.attempt;
        let result = self.answer_or_empty(result, self.synthesis.prompt_chars);
        match result {
            Ok(done) => {
                let usage = usage_or_estimate(&done, self.synthesis.prompt_chars);
                self.usage.add(usage);
                out.push(spent(
                    CallRole::Synthesizer,
                    None,
                    attempt,
                    &self.synthesis.model,
                    usage,
                    false,
                ));
                self.synthesis_text = Some(done.text.clone());
                out.push(Effect::Emit(EventKind::SynthesisFinished {
                    attempt,
                    text: done.text,
                    synthesized: true,
                    usage,
                    error: None,
                }));
                let status = if self
                    .tasks
                    .iter()
                    .all(|t| t.status == SubtaskStatus::Succeeded)
                {
                    RunStatus::Succeeded
                } else {
                    RunStatus::Partial
                };
                self.finish(status, None, now, out);
            }
            Err(mut e) => {
                if e.reason == CONTEXT_LENGTH {
                    e.message = too_long(
                        "the synthesis",
                        self.synthesis.prompt_chars,
                        false,
                        &e.message,
                    );
                }
                let paid =
                    self.failed_usage(&e, self.synthesis.prompt_chars, &self.synthesis.output);
                self.spent_failed(CallRole::Synthesizer, None, paid, out);
                if let Some(delay) = self.retry_delay(&mut e, self.synthesis.failures) {
                    self.synthesis.failures += 1;
                    self.synthesis.waiting = true;
                    out.push(Effect::Emit(EventKind::SynthesisRetrying {
                        attempt,
                        delay_ms: millis(delay),
                        reason: e.reason.clone(),
                    }));
                    out.push(Effect::Wake {
                        call: CallId {
                            target: CallTarget::Synthesis,
                            attempt,
                        },
                        after: delay,
                    });
                    return;
                }
                let (findings, gaps) = self.findings_and_gaps();
                let text = prompt::unsynthesized_report(&self.query, &findings, &gaps, &e.message);
                self.synthesis_text = Some(text.clone());
                out.push(Effect::Emit(EventKind::SynthesisFinished {
                    attempt,
                    text,
                    synthesized: false,
                    usage: Usage::default(),
                    error: Some(e.message.clone()),
                }));
                self.finish(
                    RunStatus::Partial,
                    Some(format!("the synthesis failed: {}", e.message)),
                    now,
                    out,
                );
            }
        }
    }

    fn finish(
        &mut self,
        status: RunStatus,
        error: Option<String>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        self.phase = Phase::Finished(status);
        let total = self.tasks.len() as u32;
        let succeeded = self
            .tasks
            .iter()
            .filter(|t| t.status == SubtaskStatus::Succeeded)
            .count() as u32;
        out.push(Effect::Emit(EventKind::RunFinished {
            status,
            elapsed_ms: now,
            usage: self.usage,
            succeeded,
            failed: total - succeeded,
            total,
            error,
        }));
    }

    // ---- streamed text, timers, commands --------------------------------------------------

    fn is_current(&self, call: &CallId) -> bool {
        match &call.target {
            CallTarget::Planner => {
                self.phase == Phase::Planning
                    && self.planner.in_flight
                    && call.attempt == self.planner.attempt
            }
            CallTarget::Synthesis => {
                self.phase == Phase::Synthesizing
                    && self.synthesis.in_flight
                    && call.attempt == self.synthesis.attempt
            }
            CallTarget::Subtask(id) => self.index.get(id).is_some_and(|&i| {
                self.tasks[i].status == SubtaskStatus::Running
                    && self.tasks[i].attempt == call.attempt
            }),
            CallTarget::Validation(id) => self.index.get(id).is_some_and(|&i| {
                self.tasks[i].status == SubtaskStatus::Validating
                    && self.tasks[i].attempt == call.attempt
            }),
        }
    }

    fn on_delta(&mut self, call: CallId, text: String, out: &mut Vec<Effect>) {
        if !self.is_current(&call) || text.is_empty() {
            return;
        }
        match call.target {
            CallTarget::Planner => {
                self.planner.output.push_str(&text);
                out.push(Effect::Emit(EventKind::PlanningDelta {
                    attempt: call.attempt,
                    text,
                }));
                self.draft_plan(out);
            }
            CallTarget::Synthesis => {
                self.synthesis.output.push_str(&text);
                out.push(Effect::Emit(EventKind::SynthesisDelta {
                    attempt: call.attempt,
                    text,
                }));
            }
            // The verdict is read whole from the reply.
            CallTarget::Validation(_) => {}
            CallTarget::Subtask(id) => {
                if let Some(&i) = self.index.get(&id) {
                    self.tasks[i].output.push_str(&text);
                }
                out.push(Effect::Emit(EventKind::SubtaskDelta {
                    subtask: id,
                    attempt: call.attempt,
                    text,
                }));
            }
        }
    }

    /// Reasoning is shown with its subtask and goes nowhere else: not into `output` (which a
    /// failed attempt keeps as its partial answer) and not into any prompt. The planner's and
    /// the synthesis's reasoning are counted in their usage only.
    fn on_reasoning(&mut self, call: CallId, text: String, out: &mut Vec<Effect>) {
        if !self.is_current(&call) || text.is_empty() {
            return;
        }
        match call.target {
            CallTarget::Planner | CallTarget::Synthesis | CallTarget::Validation(_) => {}
            CallTarget::Subtask(id) => out.push(Effect::Emit(EventKind::SubtaskReasoning {
                subtask: id,
                attempt: call.attempt,
                text,
            })),
        }
    }

    /// What a failed call spent: the usage the provider reported before it failed, else an
    /// estimate when it had streamed text (the prompt was read and the text written, so they
    /// were paid for), else nothing (a refused request costs nothing).
    fn failed_usage(&self, e: &CallError, prompt_chars: usize, streamed: &str) -> Usage {
        e.usage.unwrap_or_else(|| {
            if streamed.is_empty() {
                Usage::default()
            } else {
                Usage {
                    tokens_in: prompt_chars.div_ceil(4) as u64,
                    tokens_out: streamed.chars().count().div_ceil(4) as u64,
                    estimated: true,
                    cached_in: 0,
                }
            }
        })
    }

    /// Count a failed call's tokens in the run's total and say what they were spent on.
    fn spent_failed(
        &mut self,
        role: CallRole,
        subtask: Option<&SubtaskId>,
        usage: Usage,
        out: &mut Vec<Effect>,
    ) {
        if usage.is_zero() {
            return;
        }
        self.usage.add(usage);
        let (attempt, model) = match (role, subtask.and_then(|id| self.index.get(id))) {
            (CallRole::Worker, Some(&i)) => (self.tasks[i].attempt, &self.tasks[i].model),
            (CallRole::Planner, _) => (self.planner.attempt, &self.planner.model),
            (CallRole::Validator, Some(&i)) => {
                (self.tasks[i].attempt, &self.settings.validator.model)
            }
            (CallRole::Synthesizer | CallRole::Validator, _) | (CallRole::Worker, None) => {
                (self.synthesis.attempt, &self.synthesis.model)
            }
        };
        out.push(spent(role, subtask, attempt, model, usage, true));
    }

    /// A reply with no answer text (empty, whitespace, or only reasoning) is not an answer:
    /// it becomes a failure retried like a cut stream, decided here once for every provider,
    /// so it never reaches a dependent or the synthesis. Its tokens were spent all the same
    /// and count in the run's total.
    fn answer_or_empty(
        &mut self,
        result: Result<Completion, CallError>,
        prompt_chars: usize,
    ) -> Result<Completion, CallError> {
        match result {
            Ok(done) if done.text.trim().is_empty() => {
                let usage = usage_or_estimate(&done, prompt_chars);
                let why = if done.reasoning.trim().is_empty() {
                    "the model returned no text"
                } else {
                    "the model returned no text (only reasoning)"
                };
                let mut error = CallError::transient("no text", why);
                if done.cut_off {
                    error.message.push_str(", stopped at the token limit");
                }
                // Counted where the failure is handled, with the call's model.
                Err(error.with_usage(Some(usage)))
            }
            other => other,
        }
    }

    fn on_reply(
        &mut self,
        call: CallId,
        result: Result<Completion, CallError>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        if !self.is_current(&call) {
            return;
        }
        match &call.target {
            CallTarget::Planner => self.on_planner_reply(result, now, out),
            CallTarget::Synthesis => self.on_synthesis_reply(result, now, out),
            CallTarget::Subtask(id) => {
                if let Some(&i) = self.index.get(id) {
                    self.on_task_reply(i, result, now, out);
                }
            }
            CallTarget::Validation(id) => {
                if let Some(&i) = self.index.get(id) {
                    self.on_validation_reply(i, result, now, out);
                }
            }
        }
    }

    fn on_wake(&mut self, call: CallId, now: u64, out: &mut Vec<Effect>) {
        match &call.target {
            CallTarget::Planner => {
                if self.phase == Phase::Planning
                    && self.planner.waiting
                    && call.attempt == self.planner.attempt
                {
                    self.call_planner(out);
                }
            }
            CallTarget::Synthesis => {
                if self.phase == Phase::Synthesizing
                    && self.synthesis.waiting
                    && call.attempt == self.synthesis.attempt
                {
                    self.call_synthesis(out);
                }
            }
            // Validator calls are not retried, so never wait.
            CallTarget::Validation(_) => {}
            CallTarget::Subtask(id) => {
                if let Some(&i) = self.index.get(id)
                    && self.tasks[i].status == SubtaskStatus::Retrying
                    && self.tasks[i].attempt == call.attempt
                {
                    self.tasks[i].status = SubtaskStatus::Pending;
                    self.pump(now, out);
                }
            }
        }
    }

    fn on_command(&mut self, command: RunCommand, now: u64, out: &mut Vec<Effect>) {
        let name = command.name();
        if self.phase == Phase::Reviewing {
            match command {
                RunCommand::ApprovePlan { plan } => self.approve_plan(plan, now, out),
                RunCommand::CancelRun => self.cancel_run(now, out),
                RunCommand::RetrySubtask(_)
                | RunCommand::RetryFailed
                | RunCommand::CancelSubtask(_)
                | RunCommand::EditSubtask { .. }
                | RunCommand::Resynthesize
                | RunCommand::Replan
                | RunCommand::RaiseBudget { .. }
                | RunCommand::SynthesizeNow
                | RunCommand::ResumeProvider => refuse(out, name, Refusal::PlanInReview),
            }
            return;
        }
        match command {
            RunCommand::RetrySubtask(id) => {
                if let Some(i) = self.lookup(name, &id, out) {
                    self.rerun(name, i, now, out);
                }
            }
            RunCommand::RetryFailed => {
                let targets: Vec<usize> = (0..self.tasks.len())
                    .filter(|&i| {
                        matches!(
                            self.tasks[i].status,
                            SubtaskStatus::Failed | SubtaskStatus::Cancelled
                        )
                    })
                    .collect();
                if targets.is_empty() {
                    refuse(out, name, Refusal::NothingToRetry);
                }
                for i in targets {
                    self.rerun(name, i, now, out);
                }
            }
            RunCommand::CancelSubtask(id) => {
                if let Some(i) = self.lookup(name, &id, out) {
                    self.cancel_task(name, i, out);
                    self.pump(now, out);
                }
            }
            RunCommand::CancelRun => self.cancel_run(now, out),
            RunCommand::EditSubtask {
                id,
                description,
                worker,
            } => {
                if let Some(i) = self.lookup(name, &id, out) {
                    self.edit(i, description, worker, now, out);
                }
            }
            RunCommand::Resynthesize => self.resynthesize(out),
            RunCommand::Replan => self.replan(out),
            RunCommand::RaiseBudget {
                tokens,
                time_ms,
                cost_micros,
            } => {
                self.raise_budget(
                    tokens,
                    time_ms.map(Duration::from_millis),
                    cost_micros.map(|m| m as f64 / 1e6),
                    now,
                    out,
                );
            }
            RunCommand::SynthesizeNow => self.synthesize_now(now, out),
            RunCommand::ResumeProvider => self.resume_provider(now, out),
            RunCommand::ApprovePlan { .. } => refuse(out, name, Refusal::NotReviewing),
        }
    }

    /// The person approved `plan` (the one under review, possibly edited): it must have no
    /// problem a review would show ([`plan::review_problems`]), which covers everything
    /// [`plan::check_plan`] rejects; then it is checked as any plan and the run goes on. A
    /// refused plan leaves the run waiting for another.
    fn approve_plan(&mut self, plan: Plan, now: u64, out: &mut Vec<Effect>) {
        let rules = self.settings.plan_rules();
        let problems = plan::review_problems(&plan, &rules);
        let checked = if problems.is_empty() {
            plan::check_plan(plan, &rules).map_err(|e| e.to_string())
        } else {
            Err(problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "))
        };
        match checked {
            Ok(mut checked) => {
                if let Some(started) = self.review_started.take() {
                    self.reviewed_ms += now.saturating_sub(started);
                }
                self.check_reuse(&mut checked, out);
                self.go_on_with(checked, now, out);
            }
            Err(error) => refuse(
                out,
                CommandName::ApprovePlan,
                Refusal::PlanInvalid { error },
            ),
        }
    }

    // ---- budget and provider pauses -------------------------------------------------------

    /// Whether subtasks must wait: the provider is paused, or the budget is reached while
    /// some have not started (announced once, with those that wait). A reached budget with
    /// nothing left to start holds nothing: the synthesis is never held back.
    fn held(&mut self, now: u64, out: &mut Vec<Effect>) -> bool {
        let waiting: Vec<SubtaskId> = self
            .tasks
            .iter()
            .filter(|t| matches!(t.status, SubtaskStatus::Pending | SubtaskStatus::Retrying))
            .map(|t| t.spec.id.clone())
            .collect();
        if waiting.is_empty() {
            return false;
        }
        if self.provider_paused.is_some() {
            return true;
        }
        if self.budget_reached {
            return true;
        }
        let spent = Spent {
            tokens: self.usage.total(),
            elapsed: Duration::from_millis(now.saturating_sub(self.reviewed_ms)),
            cost: self.cost + self.cost_of(out),
        };
        let Some(reason) = self.settings.budget.exceeded(&spent) else {
            return false;
        };
        self.budget_reached = true;
        out.push(Effect::Emit(EventKind::BudgetReached { reason, waiting }));
        true
    }

    /// What the calls announced in `out` (not yet counted in `self.cost`) cost, when the
    /// budget has a cost limit; nothing otherwise (no need to price).
    fn cost_of(&self, out: &[Effect]) -> f64 {
        if self.settings.budget.max_cost.is_none() {
            return 0.0;
        }
        out.iter()
            .filter_map(|e| match e {
                Effect::Emit(EventKind::CallUsage { model, usage, .. }) => {
                    self.settings.budget.prices.cost(model, usage)
                }
                _ => None,
            })
            .sum()
    }

    fn raise_budget(
        &mut self,
        tokens: Option<u64>,
        time: Option<Duration>,
        cost: Option<f64>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        if self.is_finished() {
            refuse(out, CommandName::RaiseBudget, Refusal::RunFinished);
            return;
        }
        let budget = self.settings.budget.raised(tokens, time, cost);
        out.push(Effect::Emit(EventKind::BudgetRaised {
            max_tokens: budget.max_tokens,
            deadline_ms: budget.deadline_ms(),
            max_cost_micros: budget.max_cost_micros(),
        }));
        self.settings.budget = budget;
        self.budget_reached = false;
        self.pump(now, out);
    }

    /// Skip what has not started, let what runs finish, then synthesise (in `pump`, once
    /// everything is settled).
    fn synthesize_now(&mut self, now: u64, out: &mut Vec<Effect>) {
        let name = CommandName::SynthesizeNow;
        match self.phase {
            Phase::Reviewing => refuse(out, name, Refusal::PlanInReview),
            Phase::Planning => refuse(out, name, Refusal::StillPlanning),
            Phase::Finished(_) => refuse(out, name, Refusal::RunFinished),
            // The report is being written already.
            Phase::Synthesizing => {}
            Phase::Working => {
                let mut skipped = Vec::new();
                for task in &mut self.tasks {
                    if matches!(
                        task.status,
                        SubtaskStatus::Pending | SubtaskStatus::Retrying
                    ) {
                        task.status = SubtaskStatus::Cancelled;
                        task.skipped = true;
                        skipped.push(task.spec.id.clone());
                    }
                }
                if !skipped.is_empty() {
                    out.push(Effect::Emit(EventKind::SubtasksSkipped {
                        subtasks: skipped,
                        reason: SKIPPED_FOR_BUDGET.to_owned(),
                    }));
                }
                self.pump(now, out);
            }
        }
    }

    fn pause_provider(&mut self, message: String, out: &mut Vec<Effect>) {
        if self.is_finished() || self.provider_paused.is_some() {
            return;
        }
        self.provider_paused = Some(message.clone());
        out.push(Effect::Emit(EventKind::ProviderPaused { message }));
    }

    fn resume_provider(&mut self, now: u64, out: &mut Vec<Effect>) {
        if self.provider_paused.take().is_none() {
            refuse(out, CommandName::ResumeProvider, Refusal::NotPaused);
            return;
        }
        out.push(Effect::Emit(EventKind::ProviderResumed));
        self.pump(now, out);
    }

    /// Announce the subtasks complete so far in the streaming planner answer, when there are
    /// more than last time. Roles are given as the check would give them, but nothing else is
    /// checked: these are a preview that `PlanReady` replaces.
    fn draft_plan(&mut self, out: &mut Vec<Effect>) {
        let mut drafted = plan::draft_subtasks(&self.planner.output);
        if drafted.len() <= self.planner.drafted {
            return;
        }
        self.planner.drafted = drafted.len();
        let rules = self.settings.plan_rules();
        for subtask in &mut drafted {
            if !rules.roles.contains(&subtask.worker) && plan::custom_role_prompt(subtask).is_none()
            {
                subtask.worker = rules.default_role.clone();
            }
        }
        out.push(Effect::Emit(EventKind::PlanDrafted {
            attempt: self.planner.attempt,
            subtasks: drafted,
        }));
    }

    /// Plan again a run that ended without a plan (the planner failed, or it was cancelled
    /// while planning). The re-ask memory is cleared: the planner starts afresh, with attempt
    /// numbers going on from the last.
    fn replan(&mut self, out: &mut Vec<Effect>) {
        let name = CommandName::Replan;
        match self.phase {
            Phase::Reviewing => refuse(out, name, Refusal::PlanInReview),
            Phase::Planning => refuse(out, name, Refusal::StillPlanning),
            Phase::Working | Phase::Synthesizing => refuse(out, name, Refusal::RunActive),
            Phase::Finished(_) if self.plan.is_some() => refuse(out, name, Refusal::PlanExists),
            Phase::Finished(_) => {
                self.phase = Phase::Planning;
                self.plan_reask = None;
                self.planner.failures = 0;
                self.call_planner(out);
            }
        }
    }

    fn lookup(&self, name: CommandName, id: &SubtaskId, out: &mut Vec<Effect>) -> Option<usize> {
        let found = self.index.get(id).copied();
        if found.is_none() {
            refuse(
                out,
                name,
                Refusal::UnknownSubtask {
                    subtask: id.clone(),
                },
            );
        }
        found
    }

    /// Run a settled subtask again. Its dependents that were blocked wait for it; the run
    /// reopens if it had finished, and a synthesis in flight is dropped (it would be stale).
    fn rerun(&mut self, name: CommandName, i: usize, now: u64, out: &mut Vec<Effect>) {
        let status = self.tasks[i].status;
        let id = self.tasks[i].spec.id.clone();
        match status {
            SubtaskStatus::Succeeded | SubtaskStatus::Failed | SubtaskStatus::Cancelled => {}
            SubtaskStatus::Blocked => {
                let waiting_on = self.unfinished_deps(i);
                refuse(
                    out,
                    name,
                    Refusal::SubtaskBlocked {
                        subtask: id,
                        waiting_on,
                    },
                );
                return;
            }
            SubtaskStatus::Pending
            | SubtaskStatus::Running
            | SubtaskStatus::Retrying
            | SubtaskStatus::Validating => {
                refuse(
                    out,
                    name,
                    Refusal::SubtaskBusy {
                        subtask: id,
                        status,
                    },
                );
                return;
            }
        }
        if self.phase == Phase::Planning {
            return;
        }
        self.abort_synthesis(out);
        self.phase = Phase::Working;
        let task = &mut self.tasks[i];
        task.status = SubtaskStatus::Pending;
        task.failures = 0;
        task.result = None;
        task.bypass_cache = true;
        task.rejections = 0;
        task.fix = None;
        task.skipped = false;
        out.push(Effect::Emit(EventKind::SubtaskQueued {
            subtask: id,
            waiting_on: self.unfinished_deps(i),
        }));
        self.pump(now, out);
    }

    fn abort_synthesis(&mut self, out: &mut Vec<Effect>) {
        if self.phase == Phase::Synthesizing {
            if self.synthesis.in_flight {
                out.push(Effect::Abort(CallId {
                    target: CallTarget::Synthesis,
                    attempt: self.synthesis.attempt,
                }));
            }
            out.push(Effect::Emit(EventKind::SynthesisCancelled {
                attempt: self.synthesis.attempt,
            }));
            self.synthesis.in_flight = false;
            self.synthesis.waiting = false;
        }
    }

    fn cancel_task(&mut self, name: CommandName, i: usize, out: &mut Vec<Effect>) {
        let task = &mut self.tasks[i];
        match task.status {
            SubtaskStatus::Running => {
                out.push(Effect::Abort(CallId {
                    target: CallTarget::Subtask(task.spec.id.clone()),
                    attempt: task.attempt,
                }));
            }
            SubtaskStatus::Validating => {
                out.push(Effect::Abort(CallId {
                    target: CallTarget::Validation(task.spec.id.clone()),
                    attempt: task.attempt,
                }));
                task.judged = None;
            }
            SubtaskStatus::Pending | SubtaskStatus::Retrying | SubtaskStatus::Blocked => {}
            SubtaskStatus::Succeeded | SubtaskStatus::Failed | SubtaskStatus::Cancelled => {
                let refusal = Refusal::SubtaskSettled {
                    subtask: task.spec.id.clone(),
                    status: task.status,
                };
                refuse(out, name, refusal);
                return;
            }
        }
        task.status = SubtaskStatus::Cancelled;
        task.output.clear();
        out.push(Effect::Emit(EventKind::SubtaskCancelled {
            subtask: task.spec.id.clone(),
            attempt: task.attempt,
        }));
    }

    fn cancel_run(&mut self, now: u64, out: &mut Vec<Effect>) {
        if self.is_finished() {
            refuse(out, CommandName::CancelRun, Refusal::RunFinished);
            return;
        }
        if self.phase == Phase::Planning && self.planner.in_flight {
            out.push(Effect::Abort(CallId {
                target: CallTarget::Planner,
                attempt: self.planner.attempt,
            }));
        }
        self.planner.in_flight = false;
        self.planner.waiting = false;
        self.abort_synthesis(out);
        for i in 0..self.tasks.len() {
            if !self.tasks[i].status.is_settled() {
                self.cancel_task(CommandName::CancelRun, i, out);
            }
        }
        self.finish(
            RunStatus::Cancelled,
            Some("cancelled by the user".into()),
            now,
            out,
        );
    }

    fn edit(
        &mut self,
        i: usize,
        description: Option<String>,
        worker: Option<String>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        let worker = match worker {
            // A custom subtask keeps the role the planner wrote for it.
            Some(name)
                if roles::same_name(&name, roles::CUSTOM_ROLE)
                    && plan::custom_role_prompt(&self.tasks[i].spec).is_some() =>
            {
                Some(roles::CUSTOM_ROLE.to_owned())
            }
            Some(name) => match roles::find(&self.settings.roles, &name) {
                Some(role) => Some(role.name.clone()),
                None => {
                    let roles = self.settings.roles.iter().map(|r| r.name.clone()).collect();
                    refuse(
                        out,
                        CommandName::EditSubtask,
                        Refusal::UnknownRole { role: name, roles },
                    );
                    return;
                }
            },
            None => None,
        };
        let task = &mut self.tasks[i];
        if let Some(d) = description
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty())
        {
            task.spec.description = d;
        }
        if let Some(w) = worker {
            task.spec.worker = w;
        }
        out.push(Effect::Emit(EventKind::SubtaskEdited {
            subtask: task.spec.id.clone(),
            description: task.spec.description.clone(),
            worker: task.spec.worker.clone(),
        }));
        if let Some(plan) = self.plan.as_mut()
            && let Some(p) = plan.subtasks.get_mut(i)
        {
            *p = self.tasks[i].spec.clone();
        }
        match self.tasks[i].status {
            // Not started yet: the edit is used when it starts.
            SubtaskStatus::Pending | SubtaskStatus::Blocked => {}
            SubtaskStatus::Running | SubtaskStatus::Retrying | SubtaskStatus::Validating => {
                self.cancel_task(CommandName::EditSubtask, i, out);
                self.rerun(CommandName::EditSubtask, i, now, out);
            }
            SubtaskStatus::Succeeded | SubtaskStatus::Failed | SubtaskStatus::Cancelled => {
                self.rerun(CommandName::EditSubtask, i, now, out);
            }
        }
    }

    fn resynthesize(&mut self, out: &mut Vec<Effect>) {
        let name = CommandName::Resynthesize;
        match self.phase {
            Phase::Reviewing => refuse(out, name, Refusal::PlanInReview),
            Phase::Planning => refuse(out, name, Refusal::StillPlanning),
            Phase::Working => refuse(out, name, Refusal::SubtasksRunning),
            Phase::Synthesizing | Phase::Finished(_) => {
                if !self
                    .tasks
                    .iter()
                    .any(|t| t.status == SubtaskStatus::Succeeded)
                {
                    refuse(out, name, Refusal::NoResults);
                    return;
                }
                if self.tasks.iter().any(|t| !t.status.is_settled()) {
                    refuse(out, name, Refusal::SubtasksRunning);
                    return;
                }
                self.abort_synthesis(out);
                self.start_synthesis(out);
            }
        }
    }

    // ---- helpers --------------------------------------------------------------------------

    /// How long to wait before the next attempt, or `None` when the failure is final: not
    /// retryable, retries used up, or a `Retry-After` longer than we are willing to wait (the
    /// message then says so, since the server's own text rarely does).
    fn retry_delay(&mut self, error: &mut CallError, failures_so_far: u32) -> Option<Duration> {
        if !error.retryable || failures_so_far >= self.settings.retries {
            return None;
        }
        if let Some(after) = error.retry_after {
            let limit = self.settings.retry_after_limit;
            if after > limit {
                error.message = format!(
                    "{} (the server asked to wait {} s before trying again, longer than the {} s \
                     a retry may wait)",
                    error.message,
                    after.as_secs_f64().ceil(),
                    limit.as_secs()
                );
                return None;
            }
            return Some(after);
        }
        let exp = self
            .settings
            .retry_base
            .saturating_mul(1u32 << failures_so_far.min(16));
        let cap = exp.min(self.settings.retry_max);
        // "Equal jitter": half fixed, half random, so retries of many subtasks that failed
        // together spread out without ever retrying at once.
        let half = cap / 2;
        let jitter = half.mul_f64(self.next_unit());
        Some(half + jitter)
    }

    /// xorshift64*: a uniform number in [0, 1), reproducible from the seed.
    fn next_unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The message of a call whose prompt did not fit the model's context window: what was too
/// long, by how much, and (for a worker that quotes dependencies) the key that bounds them.
fn too_long(what: &str, prompt_chars: usize, quotes_results: bool, server: &str) -> String {
    let hint = if quotes_results {
        "; set `limits.max_dependency_chars` to bound each dependency result quoted in worker \
         prompts, or use a model with a larger context"
    } else {
        "; use a model with a larger context"
    };
    format!(
        "the prompt of {what} does not fit the model's context window: {prompt_chars} \
         characters, about {} tokens{hint} (the server said: {server})",
        prompt_chars.div_ceil(4)
    )
}

/// The most of a rejected planner answer an event carries; a longer one is cut with a note.
pub const REJECTED_ANSWER_MAX_BYTES: usize = 4096;

/// A planner answer as `PlanRejected` carries it: sanitised (it is shown in terminals) and cut
/// to [`REJECTED_ANSWER_MAX_BYTES`] on a character boundary.
/// The earlier run as prompts quote it: the report cut to `FOLLOW_UP_REPORT_CHARS`; with
/// `subtasks`, each result as an excerpt of `FOLLOW_UP_EXCERPT_CHARS`.
fn with_earlier(follow_up: &FollowUp, subtasks: bool, f: impl FnOnce(&prompt::Earlier<'_>)) {
    let (report, _) = prompt::cut_text(
        &follow_up.report,
        FOLLOW_UP_REPORT_CHARS,
        "the earlier report",
    );
    let excerpts: Vec<(&EarlierResult, std::borrow::Cow<'_, str>)> = if subtasks {
        follow_up
            .results
            .iter()
            .map(|r| {
                let (excerpt, _) =
                    prompt::cut_text(&r.text, FOLLOW_UP_EXCERPT_CHARS, "this result");
                (r, excerpt)
            })
            .collect()
    } else {
        Vec::new()
    };
    let listed: Vec<prompt::EarlierSubtask<'_>> = excerpts
        .iter()
        .map(|(r, excerpt)| prompt::EarlierSubtask {
            id: r.id.as_str(),
            title: &r.title,
            excerpt,
        })
        .collect();
    f(&prompt::Earlier {
        query: &follow_up.query,
        report: &report,
        subtasks: &listed,
    });
}

fn bounded_answer(text: &str) -> String {
    let clean = crate::sanitize::sanitize(text);
    if clean.len() <= REJECTED_ANSWER_MAX_BYTES {
        return clean.into_owned();
    }
    let mut cut = REJECTED_ANSWER_MAX_BYTES;
    while !clean.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n… ({} more bytes not shown)",
        &clean[..cut],
        clean.len() - cut
    )
}

fn refuse(out: &mut Vec<Effect>, command: CommandName, refusal: Refusal) {
    out.push(Effect::Emit(EventKind::CommandRefused { command, refusal }));
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

fn request_chars(request: &ChatRequest) -> usize {
    request.system.chars().count()
        + request
            .messages
            .iter()
            .map(|m| m.content.chars().count())
            .sum::<usize>()
}

/// What one finished call spent, for pricing.
fn spent(
    role: CallRole,
    subtask: Option<&SubtaskId>,
    attempt: u32,
    model: &str,
    usage: Usage,
    failed: bool,
) -> Effect {
    Effect::Emit(EventKind::CallUsage {
        role,
        subtask: subtask.cloned(),
        attempt,
        model: model.to_owned(),
        usage,
        failed,
    })
}

/// The provider's usage, or an estimate (about four characters a token) marked as such.
fn usage_or_estimate(done: &Completion, prompt_chars: usize) -> Usage {
    // Reasoning is output the model wrote: it is counted.
    let written = done.text.chars().count() + done.reasoning.chars().count();
    done.usage.unwrap_or(Usage {
        tokens_in: prompt_chars.div_ceil(4) as u64,
        tokens_out: written.div_ceil(4) as u64,
        estimated: true,
        cached_in: 0,
    })
}

#[cfg(test)]
#[path = "run_tests.rs"]
pub(crate) mod tests;
