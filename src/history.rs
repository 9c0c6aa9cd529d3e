//! Saved runs as the front ends use them: saving a run while it happens ([`Saving`], which also
//! carries what the providers learnt about servers across processes), reading
//! one back as the `RunReport` every front end shows ([`report_of`]), turning one into what the
//! engine resumes from ([`resume_input`]), and the commands that only read or delete saved runs
//! (`maestro history`, `show`, `rm`, `gc`).
//!
//! The store records events and answers queries; the engine decides what a resumed run does.
//! This module only translates between them, so it must not decide anything about a run nor
//! talk to a provider. Output goes through `Write` (never the printing macros) and model text is
//! sanitised before it reaches a terminal.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::{EngineArgs, Format, GcArgs, HistoryArgs, HistoryStatus, ProviderKind, RmArgs};
use crate::config::{Config, ProviderConfig, StoreConfig};
use crate::display::{duration, now_ms, tokens, truncate};
use crate::engine::cost::{PriceTable, Spend};
use crate::protocol::{
    CallRole, Event, EventKind, Plan, RunCommand, RunId, RunStatus, SubtaskId, SubtaskStatus,
};
use crate::report::{
    AttemptOutcome, AttemptRecord, CallSpend, RunReport, ToolCallEnd, ToolCallRecord,
};
use crate::sanitize::sanitize_line;
use crate::store::{
    self, CommandRecord, RunFilter, RunMeta, SavedRunStatus, SavedSubtaskStatus, Store,
    StoreStatus, StoreWriter,
};

/// How long a front end waits for the run's row before the first provider call. Longer than
/// the store's busy timeout, so another process's long write is waited out, not failed.
const BEGIN_WAIT: Duration = Duration::from_secs(6);

// ---- saving ---------------------------------------------------------------------------------

/// A front end's link to the store writer: opened once, fed every event in order. When the
/// database cannot be opened (or `--no-save`), it is off and every call does nothing.
pub struct Saving {
    writer: Option<StoreWriter>,
    /// Per resumed run, the saved facts the engine restates, which are saved already.
    restated: HashMap<RunId, Restated>,
}

impl Saving {
    /// Nothing is saved.
    pub fn off() -> Self {
        Self {
            writer: None,
            restated: HashMap::new(),
        }
    }

    /// Opens the writer, or explains in one line why runs are not saved. `--no-save` is not a
    /// problem, so it gives no warning.
    pub fn open(store: &StoreConfig) -> (Self, Option<String>) {
        if !store.save {
            return (Self::off(), None);
        }
        let Some(path) = &store.path else {
            return (
                Self::off(),
                Some("no data folder is known; name a database with --db".to_owned()),
            );
        };
        match StoreWriter::spawn(path) {
            Ok(writer) => {
                load_server_facts(path);
                (
                    Self {
                        writer: Some(writer),
                        restated: HashMap::new(),
                    },
                    None,
                )
            }
            Err(e) => {
                tracing::warn!("runs are not saved: {e}");
                (Self::off(), Some(e.to_string()))
            }
        }
    }

    pub fn is_on(&self) -> bool {
        self.writer.is_some()
    }

    /// Writes the run's row and waits for it (briefly), so that a run is on record before its
    /// first provider call. On failure the writer is dropped: the run goes on unsaved. Returns
    /// why, if so.
    pub fn begin(&mut self, meta: RunMeta) -> Option<String> {
        let writer = self.writer.as_ref()?;
        match writer.begin_run(meta).wait(BEGIN_WAIT) {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!("the run's row could not be saved: {e}");
                self.writer = None;
                Some(e.to_string())
            }
        }
    }

    /// Sends the run's row without waiting: the caller waits on the answer where blocking is
    /// fine (the dashboard, off its drawing path). `None` when saving is off.
    pub fn begin_pending(&self, meta: RunMeta) -> Option<store::Pending> {
        self.writer.as_ref().map(|w| w.begin_run(meta))
    }

    /// A resumed run restates what was saved as events; those are not written again.
    pub fn resuming(&mut self, id: RunId, saved: &crate::protocol::SavedRun) {
        self.restated.insert(id, Restated::new(saved));
    }

    pub fn event(&mut self, event: &Event) {
        let Some(writer) = &self.writer else { return };
        if let Some(restated) = self.restated.get_mut(&event.run)
            && restated.take(event)
        {
            return;
        }
        if matches!(event.kind, EventKind::RunFinished { .. })
            && let Some(restated) = self.restated.get_mut(&event.run)
        {
            // Anything restated later would be a new fact.
            restated.clear();
        }
        writer.event(event);
        if matches!(event.kind, EventKind::RunFinished { .. }) {
            self.save_server_facts();
        }
    }

    /// Queues what the providers have learnt about servers and models so far; rows change
    /// only where a value is new.
    fn save_server_facts(&self) {
        let Some(writer) = &self.writer else { return };
        let now = now_ms();
        writer.server_facts(
            crate::llm::learnt_facts()
                .into_iter()
                .map(|f| store::ServerFact {
                    base_url: f.base_url,
                    model: f.model,
                    fact: f.fact,
                    value: f.value,
                    learnt_at_ms: now,
                })
                .collect(),
        );
    }

    /// Records a user's command to a run. Call it before sending the command to the engine,
    /// so an edit's old text is read before the engine's answer changes it.
    pub fn command(&self, run: RunId, command: &RunCommand) {
        if let Some(writer) = &self.writer {
            writer.command(CommandRecord {
                run,
                at_ms: now_ms(),
                command: command.clone(),
            });
        }
    }

    /// `None` when saving is off; the writer's status otherwise.
    pub fn status(&self) -> Option<StoreStatus> {
        self.writer.as_ref().map(|w| w.status())
    }

    /// Commits what was sent (and what the providers learnt) and stops the writer.
    pub fn close(mut self) {
        self.save_server_facts();
        if let Some(writer) = self.writer.take() {
            writer.close();
        }
    }
}

impl Drop for Saving {
    /// A front end that quits mid-run keeps what its calls learnt.
    fn drop(&mut self) {
        self.save_server_facts();
    }
}

/// Hands what earlier processes learnt about servers and models (saved in the database at
/// `path`) to the providers, so a server that refuses a parameter or a structured-output
/// mode costs one refused request per database, not one per process. A failure only means
/// the facts are learnt again.
fn load_server_facts(path: &std::path::Path) {
    let facts = match Store::open(path).and_then(|db| db.server_facts()) {
        Ok(facts) => facts,
        Err(e) => {
            tracing::warn!("what was learnt about servers could not be read: {e}");
            return;
        }
    };
    let facts: Vec<crate::llm::LearntFact> = facts
        .into_iter()
        .map(|f| crate::llm::LearntFact {
            base_url: f.base_url,
            model: f.model,
            fact: f.fact,
            value: f.value,
        })
        .collect();
    crate::llm::import_facts(&facts);
}

/// The facts a restored run restates (`SubtaskSucceeded` for each saved result,
/// `SynthesisFinished` for the saved report), each recognised once by its attempt number.
#[derive(Debug, Default)]
struct Restated {
    results: HashMap<SubtaskId, u32>,
    report: Option<u32>,
}

impl Restated {
    fn new(saved: &crate::protocol::SavedRun) -> Self {
        Self {
            results: saved
                .subtasks
                .iter()
                .filter(|s| s.result.is_some())
                .map(|s| (s.id.clone(), s.attempts.max(1)))
                .collect(),
            report: saved
                .report
                .as_ref()
                .map(|_| saved.synthesis_attempts.max(1)),
        }
    }

    /// Whether `event` restates a saved fact (and forgets that fact).
    fn take(&mut self, event: &Event) -> bool {
        match &event.kind {
            EventKind::SubtaskSucceeded {
                subtask, attempt, ..
            } if self.results.get(subtask) == Some(attempt) => {
                self.results.remove(subtask);
                true
            }
            EventKind::SynthesisFinished { attempt, .. } if self.report == Some(*attempt) => {
                self.report = None;
                true
            }
            _ => false,
        }
    }

    fn clear(&mut self) {
        self.results.clear();
        self.report = None;
    }
}

/// The settings saved with a run (`runs.settings`): what a resume starts from. Never a key;
/// `api_key_env` is the name of a variable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedSettings {
    pub provider: Option<String>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub planner_model: Option<String>,
    pub worker_model: Option<String>,
    pub synth_model: Option<String>,
    pub concurrency: Option<u64>,
    pub max_subtasks: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub retries: Option<u32>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

impl SavedSettings {
    /// The effective settings of `config`; `args` gives the key variable's name if a flag
    /// named it.
    pub fn of(config: &Config, args: &EngineArgs) -> Self {
        let base_url = match &config.provider {
            ProviderConfig::Demo(_) => None,
            ProviderConfig::OpenAi(c) => Some(c.base_url.clone()),
            ProviderConfig::Anthropic(c) => Some(c.base_url.clone()),
        };
        let r = &config.run;
        Self {
            provider: Some(config.provider.kind().to_string()),
            base_url,
            api_key_env: args.api_key_env.clone(),
            planner_model: Some(r.planner.model.clone()),
            worker_model: Some(r.worker.model.clone()),
            synth_model: Some(r.synthesizer.model.clone()),
            concurrency: Some(r.concurrency as u64),
            max_subtasks: Some(r.max_subtasks as u64),
            timeout_secs: Some(config.executor.call_timeout.as_secs()),
            retries: Some(r.retries),
            max_tokens: Some(r.worker.max_tokens),
            temperature: r.worker.temperature,
        }
    }

    fn provider_kind(&self) -> Option<ProviderKind> {
        use clap::ValueEnum;
        self.provider
            .as_deref()
            .and_then(|p| ProviderKind::from_str(p, true).ok())
    }

    /// The command line's engine options with these settings as defaults: a flag (or its
    /// `MAESTRO_*` variable) still wins. A different `--provider` keeps only the limits.
    pub fn under(&self, args: &EngineArgs) -> EngineArgs {
        let saved_kind = self.provider_kind();
        let same_provider = args.provider.is_none() || args.provider == saved_kind;
        let mut out = args.clone();
        out.provider = args.provider.or(saved_kind);
        if same_provider {
            out.base_url = args.base_url.clone().or(self.base_url.clone());
            out.api_key_env = args.api_key_env.clone().or(self.api_key_env.clone());
            // `--model` names every role: a saved per-role model must not beat it.
            if args.model.is_none() {
                out.planner_model = args.planner_model.clone().or(self.planner_model.clone());
                out.worker_model = args.worker_model.clone().or(self.worker_model.clone());
                out.synth_model = args.synth_model.clone().or(self.synth_model.clone());
            }
        }
        out.concurrency = args.concurrency.or(self.concurrency);
        out.max_subtasks = args.max_subtasks.or(self.max_subtasks);
        out.timeout = args.timeout.or(self.timeout_secs);
        out.retries = args.retries.or(self.retries);
        out
    }
}

/// The run's row: query, provider, models and the effective settings (no secrets).
pub fn run_meta(
    id: RunId,
    query: &str,
    config: &Config,
    args: &EngineArgs,
    parent: Option<RunId>,
) -> RunMeta {
    let settings = serde_json::to_value(SavedSettings::of(config, args))
        .unwrap_or_else(|_| serde_json::json!({}));
    RunMeta {
        id,
        query: query.to_owned(),
        provider: config.provider.kind().to_string(),
        planner_model: Some(config.run.planner.model.clone()),
        worker_model: Some(config.run.worker.model.clone()),
        synthesizer_model: Some(config.run.synthesizer.model.clone()),
        preset: Some(config.run.preset.name.clone()).filter(|n| !n.is_empty()),
        settings,
        parent,
        started_ms: now_ms(),
        context: Default::default(),
    }
}

// ---- reading back ---------------------------------------------------------------------------

/// A saved run as the context of a follow-up to it: its query, its last report and its
/// subtasks' results.
pub fn follow_up_of(saved: &store::SavedRun) -> crate::protocol::FollowUp {
    let mut follow_up = report_of(saved)
        .follow_up()
        .unwrap_or_else(|| crate::protocol::FollowUp {
            parent: saved.summary.id,
            query: saved.summary.query.clone(),
            report: String::new(),
            results: Vec::new(),
        });
    // A run still going in another process has no status in its report; its id stands.
    follow_up.parent = saved.summary.id;
    follow_up
}

/// The short ids of the parents among `runs` (a parent may be outside a filtered list).
fn parent_shorts(
    db: &Store,
    runs: &[store::RunSummary],
) -> Result<HashMap<RunId, String>, Failure> {
    if runs.iter().all(|r| r.parent.is_none()) {
        return Ok(Default::default());
    }
    let all = db
        .list_runs(&RunFilter::default())
        .map_err(|e| failed(e.to_string()))?;
    Ok(all.into_iter().map(|r| (r.id, r.short_id)).collect())
}

/// The plan as the engine's type (the saved plan has the same JSON shape).
fn engine_plan(plan: &store::SavedPlan) -> Option<Plan> {
    serde_json::to_value(plan)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

/// How long the run had taken: as measured when it finished, else up to its last saved call.
fn elapsed_of(saved: &store::SavedRun) -> u64 {
    if let Some(ms) = saved.summary.elapsed_ms {
        return ms;
    }
    let started = saved.summary.started_ms;
    let last = saved
        .attempts
        .iter()
        .map(|a| a.finished_ms.unwrap_or(a.started_ms))
        .chain(saved.syntheses.iter().map(|s| s.finished_ms))
        .max()
        .unwrap_or(started);
    last.saturating_sub(started)
}

/// A saved run folded into the report the front ends show, as if its events had been seen:
/// the plan, each subtask as it was saved (attempts included), the last report and the
/// outcome. A run that never finished (interrupted) reads as cancelled.
pub fn report_of(saved: &store::SavedRun) -> RunReport {
    let id = saved.summary.id;
    let event = |ts_ms: u64, kind: EventKind| Event {
        run: id,
        ts_ms,
        kind,
    };
    let started = saved.summary.started_ms;
    let mut report = RunReport::default();
    report.parent = saved.summary.parent;
    report.preset = saved.preset.clone().unwrap_or_default();
    report.calls = saved_calls(saved);
    // Kept through a resume of this report, which restates the results.
    report.restored_sources = restored_sources(saved);
    report.apply(&event(
        started,
        EventKind::RunStarted {
            query: saved.summary.query.clone(),
        },
    ));
    if !saved.context.is_empty() {
        report.apply(&event(
            started,
            EventKind::ContextAttached {
                files: saved.context.listed(),
                skipped: saved.context.skipped.clone(),
            },
        ));
    }
    report.planning_model = saved.planner_model.clone();
    if let Some(plan) = saved.plan.as_ref().and_then(engine_plan) {
        // No row says a run answered directly; a run the planner called straightforward
        // with one subtask and no synthesis call did.
        let direct = plan.complexity == Some(crate::protocol::Complexity::Straightforward)
            && plan.subtasks.len() == 1
            && !saved
                .attempts
                .iter()
                .any(|a| a.role == CallRole::Synthesizer);
        let only = plan.subtasks.first().map(|s| s.id.clone());
        report.apply(&event(started, EventKind::PlanReady { plan }));
        if let (true, Some(subtask)) = (direct, only) {
            report.apply(&event(started, EventKind::DirectAnswer { subtask }));
        }
    }
    for s in &saved.subtasks {
        let Some(r) = report.subtasks.iter_mut().find(|r| r.id == s.id) else {
            continue;
        };
        r.worker = s.worker.clone();
        r.description = s.description.clone();
        r.status = subtask_status(s.status);
        r.attempts = s.attempts;
        r.model = s.model.clone();
        r.elapsed_ms = s.elapsed_ms;
        r.tokens_in = s.usage.tokens_in;
        r.tokens_out = s.usage.tokens_out;
        r.usage_estimated = s.usage.estimated;
        r.result = s.result.clone();
        r.cut_off = s.cut_off;
        r.cached = s.cached;
        r.validation.flagged = s.flagged.clone();
        r.error = match s.status {
            SavedSubtaskStatus::Interrupted => Some(
                s.error
                    .clone()
                    .unwrap_or_else(|| "interrupted: maestro stopped while it ran".to_owned()),
            ),
            _ => s.error.clone(),
        };
        r.waiting_on = s.waiting_on.clone();
        r.started_ts = s.started_ms;
        // Not saved (the plan above was applied at the row's time): the timeline derives it
        // from the saved calls, as they were.
        r.ready_ts = None;
        r.history = saved
            .attempts
            .iter()
            .filter(|a| a.role == CallRole::Worker && a.subtask.as_ref() == Some(&s.id))
            .map(|a| AttemptRecord {
                attempt: a.attempt,
                model: a.model.clone().unwrap_or_default(),
                // As the live report measures it (event times), so both agree.
                elapsed_ms: a
                    .finished_ms
                    .map(|f| f.saturating_sub(a.started_ms))
                    .or(a.elapsed_ms),
                started_ts: a.started_ms,
                outcome: attempt_outcome(a),
                // Reasoning streams but is not saved.
                reasoning: String::new(),
                tools: tools_of(
                    saved,
                    &s.id,
                    a.attempt,
                    a.outcome == store::AttemptOutcome::Running,
                ),
            })
            .collect();
        // As the live report keeps them: the latest attempt's.
        r.sources = saved.sources_of(&s.id, s.attempts);
    }
    if let Some(last) = saved.syntheses.last() {
        report.apply(&event(
            last.finished_ms,
            EventKind::SynthesisFinished {
                attempt: last.attempt,
                text: last.text.clone(),
                synthesized: last.synthesized,
                usage: last.usage,
                error: last.error.clone(),
            },
        ));
        report.synthesis_model = last.model.clone();
    }
    let status = match saved.summary.status {
        SavedRunStatus::Succeeded => RunStatus::Succeeded,
        SavedRunStatus::Partial => RunStatus::Partial,
        SavedRunStatus::Failed => RunStatus::Failed,
        SavedRunStatus::Cancelled | SavedRunStatus::Interrupted | SavedRunStatus::Running => {
            RunStatus::Cancelled
        }
    };
    let elapsed = elapsed_of(saved);
    report.apply(&event(
        started.saturating_add(elapsed),
        EventKind::RunFinished {
            status,
            elapsed_ms: elapsed,
            usage: saved.summary.usage,
            succeeded: saved.summary.succeeded,
            failed: saved.summary.failed,
            total: saved.summary.total,
            error: saved.error.clone(),
        },
    ));
    if saved.summary.status == SavedRunStatus::Running {
        // Another process is running it right now.
        report.status = None;
    }
    // The planner's and synthesis' calls as saved, for the timeline.
    let calls = |role: CallRole| -> Vec<crate::timeline::Call> {
        saved
            .attempts
            .iter()
            .filter(|a| a.role == role)
            .map(|a| crate::timeline::Call {
                start_ts: a.started_ms,
                end_ts: a.finished_ms,
                end: attempt_outcome(a).call_end(),
            })
            .collect()
    };
    report.planner_calls = calls(CallRole::Planner);
    report.synthesis_calls = calls(CallRole::Synthesizer);
    report
}

/// A subtask attempt's saved tool calls as the detail view lists them. Where a call stood in
/// the streamed text is not saved: a finished attempt lists its calls above the result. A
/// call of an attempt that ended without its answer (its process stopped) ended unanswered.
fn tools_of(
    saved: &store::SavedRun,
    subtask: &SubtaskId,
    attempt: u32,
    running: bool,
) -> Vec<ToolCallRecord> {
    saved
        .tool_calls
        .iter()
        .filter(|c| &c.subtask == subtask && c.attempt == attempt)
        .map(|c| ToolCallRecord {
            call_id: c.call_id.clone(),
            tool: c.tool.clone(),
            arguments: c.arguments.clone(),
            at: 0,
            started_ts: c.started_ms,
            finished: match c.finished_ms {
                Some(finished) => Some(ToolCallEnd {
                    ok: c.ok.unwrap_or(false),
                    bytes: c.bytes.unwrap_or(0),
                    ms: c
                        .elapsed_ms
                        .unwrap_or_else(|| finished.saturating_sub(c.started_ms)),
                    summary: c.summary.clone().unwrap_or_default(),
                }),
                None if running => None,
                None => Some(ToolCallEnd {
                    ok: false,
                    bytes: 0,
                    ms: 0,
                    summary: "no answer was saved".to_owned(),
                }),
            },
        })
        .collect()
}

fn subtask_status(status: SavedSubtaskStatus) -> SubtaskStatus {
    status.live().unwrap_or(SubtaskStatus::Cancelled)
}

/// What each saved call spent, for pricing: the calls whose usage was saved (finished calls;
/// a call cut off by a cancel reported none).
pub fn saved_calls(saved: &store::SavedRun) -> Vec<CallSpend> {
    saved
        .attempts
        .iter()
        .filter_map(|a| {
            let usage = a.usage.filter(|u| !u.is_zero())?;
            Some(CallSpend {
                role: a.role,
                subtask: a.subtask.clone(),
                attempt: a.attempt,
                model: a.model.clone().unwrap_or_default(),
                usage,
                failed: a.outcome != store::AttemptOutcome::Succeeded,
            })
        })
        .collect()
}

/// What saved calls cost, per run.
pub fn run_costs(
    calls: &[store::CallRecord],
    prices: &PriceTable,
) -> HashMap<crate::protocol::RunId, Spend> {
    let mut costs: HashMap<crate::protocol::RunId, Spend> = HashMap::new();
    for c in calls {
        if let Some(usage) = c.usage.filter(|u| !u.is_zero()) {
            costs
                .entry(c.run)
                .or_default()
                .add(prices, c.model.as_deref().unwrap_or(""), &usage);
        }
    }
    costs
}

fn attempt_outcome(a: &store::SavedAttempt) -> AttemptOutcome {
    let error = || a.error.clone().unwrap_or_default();
    match a.outcome {
        store::AttemptOutcome::Running => AttemptOutcome::Running,
        store::AttemptOutcome::Succeeded => AttemptOutcome::Succeeded,
        store::AttemptOutcome::Retried => AttemptOutcome::Retried {
            error: error(),
            delay_ms: a.retry_delay_ms.unwrap_or(0),
        },
        store::AttemptOutcome::Rejected | store::AttemptOutcome::Failed => {
            AttemptOutcome::Failed { error: error() }
        }
        store::AttemptOutcome::Cancelled | store::AttemptOutcome::Interrupted => {
            AttemptOutcome::Cancelled
        }
    }
}

/// The JSON of `maestro show`: `maestro run --format json`'s object, with the saved status
/// words (`interrupted`, `running`) where the engine has none.
pub fn show_json(saved: &store::SavedRun, report: &RunReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report.to_json()).unwrap_or_default();
    value["status"] = saved.summary.status.word().into();
    if let Some(subtasks) = value["subtasks"].as_array_mut() {
        for entry in subtasks {
            let id = entry["id"].as_str().unwrap_or_default().to_owned();
            if let Some(s) = saved.subtasks.iter().find(|s| s.id.as_str() == id) {
                entry["status"] = s.status.word().into();
            }
        }
    }
    value
}

/// The run `saved` follows up, when it is one and that run is still in `db`.
pub fn parent_of(db: &Store, saved: &store::SavedRun) -> Option<store::SavedRun> {
    db.load_run(saved.summary.parent?).ok()
}

/// What the engine resumes from: the plan as it stands (edits applied), every saved result,
/// the last report unless a result is newer than it, and the earlier run's context when it
/// follows one up (`parent`, see [`parent_of`]). `None` when the run stopped before it had a
/// plan (it is planned again).
pub fn resume_input(
    saved: &store::SavedRun,
    parent: Option<&store::SavedRun>,
) -> Option<crate::protocol::SavedRun> {
    use crate::protocol::{SavedReport, SavedResult, SavedSubtask};
    let state = saved.resume_state();
    let plan = engine_plan(state.plan.as_ref()?)?;
    let subtasks = saved
        .subtasks
        .iter()
        .map(|s| SavedSubtask {
            id: s.id.clone(),
            attempts: s.attempts,
            result: match (s.status, &s.result) {
                (SavedSubtaskStatus::Succeeded, Some(text)) => Some(SavedResult {
                    text: text.clone(),
                    usage: s.usage,
                    elapsed_ms: s.elapsed_ms.unwrap_or(0),
                    cut_off: s.cut_off,
                    cached: s.cached,
                    flagged: s.flagged.clone(),
                }),
                _ => None,
            },
        })
        .collect();
    let newest_result = saved
        .subtasks
        .iter()
        .filter(|s| s.status == SavedSubtaskStatus::Succeeded)
        .filter_map(|s| s.finished_ms)
        .max()
        .unwrap_or(0);
    let report = saved
        .syntheses
        .last()
        .filter(|s| s.finished_ms >= newest_result)
        .map(|s| SavedReport {
            text: s.text.clone(),
            synthesized: s.synthesized,
            usage: s.usage,
        });
    let synthesis_attempts = saved
        .attempts
        .iter()
        .filter(|a| a.role == CallRole::Synthesizer)
        .map(|a| a.attempt)
        .chain(saved.syntheses.iter().map(|s| s.attempt))
        .max()
        .unwrap_or(0);
    Some(crate::protocol::SavedRun {
        query: saved.summary.query.clone(),
        plan,
        subtasks,
        synthesis_attempts,
        report,
        usage: saved.summary.usage,
        elapsed_ms: elapsed_of(saved),
        follow_up: parent.map(follow_up_of),
        context: context_of(saved),
        sources: saved
            .sources
            .iter()
            .map(|s| crate::protocol::SavedSource {
                subtask: s.subtask.clone(),
                attempt: s.attempt,
                source: s.source.clone(),
            })
            .collect(),
    })
}

/// The sources behind a saved run's results (each succeeded subtask's last attempt), for
/// [`RunReport::restored_sources`]: a resumed run's report lists them with the new ones.
pub fn restored_sources(
    saved: &store::SavedRun,
) -> Vec<(SubtaskId, u32, Vec<crate::protocol::Source>)> {
    saved
        .subtasks
        .iter()
        .filter(|s| s.status == SavedSubtaskStatus::Succeeded && s.result.is_some())
        .map(|s| {
            // The engine restates a result as its attempt, at least the first.
            let attempt = s.attempts.max(1);
            (s.id.clone(), attempt, saved.sources_of(&s.id, s.attempts))
        })
        .filter(|(_, _, sources)| !sources.is_empty())
        .collect()
}

/// The text a saved run's source was read with (as `subtask`'s report lists `source`), for a
/// source reader; `Ok(None)` when none was saved (a run saved before sources were, or a
/// database that does not exist). Raw: sanitise it before it reaches a terminal. Blocking:
/// call it off the drawing path.
pub fn saved_source_text(
    path: Option<&std::path::Path>,
    run: RunId,
    subtask: &SubtaskId,
    source: &crate::protocol::Source,
) -> Result<Option<String>, String> {
    let Some(path) = path.filter(|p| p.exists()) else {
        return Ok(None);
    };
    let db = Store::open(path).map_err(|e| e.to_string())?;
    db.text_of_source(run, subtask, source)
        .map_err(|e| e.to_string())
}

/// The files attached to a saved run, with their text: what its workers saw, and see again
/// when it is resumed.
pub fn context_of(saved: &store::SavedRun) -> crate::protocol::Attachments {
    saved.context.clone()
}

// ---- commands -------------------------------------------------------------------------------

/// A failure of a history command, and what kind, for the exit code.
#[derive(Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A bad argument: an unknown or ambiguous id, a bad age (exit 2).
    Usage,
    /// The database could not be read or changed (exit 1).
    Store,
    /// Stdout could not be written (exit 4).
    Output,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        kind: FailureKind::Usage,
        message: message.into(),
    }
}

fn failed(message: impl Into<String>) -> Failure {
    Failure {
        kind: FailureKind::Store,
        message: message.into(),
    }
}

/// Opens the database for reading or deleting. A file that does not exist is not created.
pub fn open_store(store: &StoreConfig) -> Result<Store, Failure> {
    let Some(path) = &store.path else {
        return Err(usage(
            "no data folder is known; name the database with --db",
        ));
    };
    if !path.exists() {
        return Err(failed(format!(
            "{}: no runs have been saved there (the database does not exist)",
            path.display()
        )));
    }
    Store::open(path).map_err(|e| failed(e.to_string()))
}

/// The run an id or a unique prefix names. An unknown or ambiguous prefix is a usage error.
pub fn resolve(store: &Store, prefix: &str) -> Result<store::SavedRun, Failure> {
    use crate::store::StoreError;
    let id = store.resolve(prefix).map_err(|e| match e {
        StoreError::NotFound { .. }
        | StoreError::Ambiguous { .. }
        | StoreError::InvalidId { .. } => usage(e.to_string()),
        other => failed(other.to_string()),
    })?;
    store.load_run(id).map_err(|e| failed(e.to_string()))
}

fn write_out(out: &mut dyn Write, text: &[u8]) -> Result<(), Failure> {
    out.write_all(text)
        .and_then(|()| out.flush())
        .map_err(|e| Failure {
            kind: FailureKind::Output,
            message: format!("cannot write to stdout: {e}"),
        })
}

fn json_bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    // Serialising plain data into memory cannot fail.
    let _ = crate::sanitize::write_json(&mut buf, value);
    buf.push(b'\n');
    buf
}

fn saved_status(status: HistoryStatus) -> SavedRunStatus {
    match status {
        HistoryStatus::Running => SavedRunStatus::Running,
        HistoryStatus::Succeeded => SavedRunStatus::Succeeded,
        HistoryStatus::Partial => SavedRunStatus::Partial,
        HistoryStatus::Failed => SavedRunStatus::Failed,
        HistoryStatus::Cancelled => SavedRunStatus::Cancelled,
        HistoryStatus::Interrupted => SavedRunStatus::Interrupted,
    }
}

/// `12s ago`, `5m ago`, `3h ago`, `2d ago`.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// `maestro history`.
pub fn history(
    store: &StoreConfig,
    prices: &PriceTable,
    args: &HistoryArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let filter = RunFilter {
        limit: args.limit,
        status: args.status.map(saved_status),
        search: args.search.clone(),
    };
    let db = open_store(store)?;
    let runs = db.list_runs(&filter).map_err(|e| failed(e.to_string()))?;
    let shorts = parent_shorts(&db, &runs)?;
    let parent_of = |r: &store::RunSummary| r.parent.and_then(|p| shorts.get(&p).cloned());
    let since = runs.iter().map(|r| r.started_ms).min();
    let calls = match since {
        Some(since) => db.calls(Some(since)).map_err(|e| failed(e.to_string()))?,
        None => Vec::new(),
    };
    let costs = run_costs(&calls, prices);
    let cost_of = |r: &store::RunSummary| costs.get(&r.id).copied().unwrap_or_default();
    if args.json {
        // `parent` is the parent's short id, like the ids people read in the table.
        let mut list = serde_json::to_value(&runs).unwrap_or_default();
        if let Some(entries) = list.as_array_mut() {
            for (entry, run) in entries.iter_mut().zip(&runs) {
                entry["parent"] = parent_of(run).into();
                // An estimate from the price table; null when no call's model has a price.
                entry["cost_usd"] = cost_of(run).usd().into();
            }
        }
        return write_out(out, &json_bytes(&list));
    }
    let now = now_ms();
    let mut text = String::new();
    let id_w = runs
        .iter()
        .map(|r| r.short_id.len())
        .max()
        .unwrap_or(8)
        .max(2);
    text.push_str(&format!(
        "{:<id_w$}  {:<id_w$}  {:<8}  {:<11}  {:>8}  {:>6}  {:>9}  {:>7}  QUERY\n",
        "ID", "PARENT", "WHEN", "STATUS", "OK/FAIL/N", "TOKENS", "COST", "TIME"
    ));
    for r in &runs {
        let counts = format!("{}/{}/{}", r.succeeded, r.failed, r.total);
        text.push_str(&format!(
            "{:<id_w$}  {:<id_w$}  {:<8}  {:<11}  {:>9}  {:>6}  {:>9}  {:>7}  {}\n",
            r.short_id,
            parent_of(r).unwrap_or_else(|| "–".into()),
            age(now.saturating_sub(r.started_ms)),
            r.status.word(),
            counts,
            tokens(r.usage.total()),
            cost_of(r).label().unwrap_or_else(|| "–".into()),
            r.elapsed_ms.map(duration).unwrap_or_else(|| "–".into()),
            truncate(&sanitize_line(&r.query), 48),
        ));
    }
    if runs.is_empty() {
        text.push_str("(no saved runs)\n");
    }
    write_out(out, text.as_bytes())
}

/// `maestro show`.
pub fn show(
    store: &StoreConfig,
    prices: &PriceTable,
    id: &str,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let db = open_store(store)?;
    let saved = resolve(&db, id)?;
    let mut report = report_of(&saved);
    report.prices = std::sync::Arc::new(prices.clone());
    let parent = parent_shorts(&db, std::slice::from_ref(&saved.summary))?;
    let parent = saved.summary.parent.and_then(|p| parent.get(&p).cloned());
    match format {
        Format::Markdown => {
            let mut text = report.to_markdown();
            if let Some(parent) = &parent {
                text.insert_str(0, &format!("> Follow-up to run `{parent}`.\n\n"));
            }
            write_out(out, text.as_bytes())
        }
        Format::Json => write_out(out, &json_bytes(&show_json(&saved, &report))),
    }
}

/// `maestro rm`: every id is resolved before anything is deleted.
pub fn rm(store: &StoreConfig, args: &RmArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let db = open_store(store)?;
    let mut ids = Vec::new();
    for prefix in &args.ids {
        let id = db.resolve(prefix).map_err(|e| usage(e.to_string()))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let deleted = db.delete_runs(&ids).map_err(|e| failed(e.to_string()))?;
    write_out(
        out,
        format!(
            "deleted {deleted} run{}\n",
            if deleted == 1 { "" } else { "s" }
        )
        .as_bytes(),
    )
}

pub use crate::display::parse_age;

/// `maestro gc`.
pub fn gc(store: &StoreConfig, args: &GcArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let Some(age) = parse_age(&args.older_than) else {
        return Err(usage(format!(
            "--older-than {:?}: expected a number and a unit, s, m, h, d or w (`30d`)",
            args.older_than
        )));
    };
    let db = open_store(store)?;
    let deleted = db
        .gc_older_than(age, now_ms())
        .map_err(|e| failed(e.to_string()))?;
    write_out(
        out,
        format!(
            "deleted {deleted} run{} older than {}\n",
            if deleted == 1 { "" } else { "s" },
            args.older_than.trim()
        )
        .as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_a_number_and_a_unit() {
        assert_eq!(parse_age("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("12h"), Some(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_age("2w"), Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_age("45s"), Some(Duration::from_secs(45)));
        for bad in ["", "30", "d", "30x", "-1d", "1.5d", "99999999999999999999d"] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
    }

    #[test]
    fn saved_settings_are_defaults_under_the_flags() {
        let saved = SavedSettings {
            provider: Some("openai".into()),
            base_url: Some("http://localhost:1/v1".into()),
            planner_model: Some("p".into()),
            worker_model: Some("w".into()),
            synth_model: Some("s".into()),
            concurrency: Some(3),
            ..SavedSettings::default()
        };
        let args = EngineArgs {
            concurrency: Some(9),
            ..EngineArgs::default()
        };
        let merged = saved.under(&args);
        assert_eq!(merged.provider, Some(ProviderKind::OpenAi));
        assert_eq!(merged.base_url.as_deref(), Some("http://localhost:1/v1"));
        assert_eq!(merged.worker_model.as_deref(), Some("w"));
        assert_eq!(merged.concurrency, Some(9));

        let all = EngineArgs {
            model: Some("m".into()),
            ..EngineArgs::default()
        };
        let merged = saved.under(&all);
        assert_eq!(merged.model.as_deref(), Some("m"));
        assert_eq!(merged.worker_model, None, "--model names every role");

        let other = EngineArgs {
            provider: Some(ProviderKind::Demo),
            ..EngineArgs::default()
        };
        let merged = saved.under(&other);
        assert_eq!(merged.base_url, None);
        assert_eq!(merged.planner_model, None);
        assert_eq!(merged.concurrency, Some(3));
    }
}
