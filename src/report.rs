//! A run as its events describe it, and the reports made from that: the markdown report, the
//! JSON object of `maestro run --format json`, and the figures progress lines show.
//!
//! `RunReport::apply` folds events in order; it is the one place that knows what each event
//! means for a consumer, shared by the headless printer and the dashboard. No I/O here.

use std::sync::Arc;

use serde::Serialize;

use crate::display::{duration, tokens};
use crate::engine::cost::{PriceTable, Spend, show_usd};
use crate::protocol::{
    BudgetReason, CallRole, Complexity, ContextFile, EarlierResult, Event, EventKind, FollowUp,
    Plan, PlannedSubtask, RunId, RunStatus, SkippedFile, Source, SubtaskId, SubtaskStatus, Usage,
};
use crate::sanitize::sanitize_line;
use crate::timeline::{Call, CallEnd, Head, Timeline, TrackKind};

/// One subtask as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubtaskReport {
    pub id: SubtaskId,
    pub title: String,
    pub worker: String,
    pub description: String,
    pub focus_areas: Vec<String>,
    pub depends_on: Vec<SubtaskId>,
    pub status: SubtaskStatus,
    /// Attempts made so far (every call, retries and re-runs included).
    pub attempts: u32,
    /// The model of the latest attempt.
    pub model: Option<String>,
    pub elapsed_ms: Option<u64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub usage_estimated: bool,
    pub result: Option<String>,
    /// The result stopped at the token limit (`cut off at the token limit`).
    pub cut_off: bool,
    /// The result was saved from an earlier identical call: no model was asked, no tokens
    /// spent.
    pub cached: bool,
    pub error: Option<String>,
    /// In a follow-up run: the earlier run's subtask whose result this one took without a
    /// call. Cleared when it is run after all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused: Option<SubtaskId>,
    /// The validator's verdicts and the flag they left, when validation is on.
    #[serde(skip_serializing_if = "Validation::is_empty")]
    pub validation: Validation,
    /// Why it did not run though the report was written (the budget was reached); its status
    /// is `cancelled`. Cleared when it runs after all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Text of the attempt in flight (or the partial text of a failed one).
    #[serde(skip)]
    pub output: String,
    /// Read from the planner's answer while it streams, not yet checked: `PlanReady` replaces
    /// it.
    #[serde(skip)]
    pub drafted: bool,
    /// Dependencies it is waiting on or blocked by.
    #[serde(skip)]
    pub waiting_on: Vec<SubtaskId>,
    /// Wait before the next attempt and why, while `Retrying`.
    #[serde(skip)]
    pub retry: Option<(u64, String)>,
    /// While `Running`: the call waits until this time (ms since the epoch) for a reason the
    /// provider's callers share (`provider rate-limited`).
    #[serde(skip)]
    pub waiting_until: Option<(u64, String)>,
    /// When the current attempt started (event time, ms since the epoch).
    #[serde(skip)]
    pub started_ts: Option<u64>,
    /// Every attempt so far, oldest first.
    #[serde(skip)]
    pub history: Vec<AttemptRecord>,
    /// What the latest attempt's tools read (pages fetched, files read), in the order the
    /// calls finished.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
    /// When it could first run: the plan was ready (no dependencies) or its last dependency
    /// succeeded (event time).
    #[serde(skip)]
    pub ready_ts: Option<u64>,
}

/// What the validator said of a subtask's answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Validation {
    /// Every verdict, oldest first (a re-run's verdicts follow the earlier ones).
    pub verdicts: Vec<VerdictRecord>,
    /// The current result failed validation twice and is kept: why.
    pub flagged: Option<String>,
}

impl Validation {
    pub fn is_empty(&self) -> bool {
        self.verdicts.is_empty() && self.flagged.is_none()
    }
}

/// One verdict: on which attempt, `pass` or `fail`, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictRecord {
    pub attempt: u32,
    pub verdict: &'static str,
    pub reason: String,
}

/// One planner call, for the detail view of the run: what it answered (streamed as it came,
/// or the whole answer once rejected) and what was wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannerAttempt {
    pub attempt: u32,
    pub model: String,
    /// The answer's text; unsanitised while streaming (the views sanitise), the sanitised and
    /// bounded copy `PlanRejected` carries once rejected.
    pub text: String,
    pub outcome: PlannerOutcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlannerOutcome {
    Running,
    /// The answer became the plan.
    Accepted,
    /// The answer was not a usable plan, for this reason.
    Rejected(String),
    /// The call failed (and was retried, or ended the run).
    Failed(String),
}

/// One attempt of a subtask, for the detail view.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub model: String,
    pub elapsed_ms: Option<u64>,
    pub started_ts: u64,
    pub outcome: AttemptOutcome,
    /// What the model reasoned apart from its answer, as streamed. Shown, never quoted.
    pub reasoning: String,
    /// The tool calls the attempt made, in the order they started.
    pub tools: Vec<ToolCallRecord>,
}

/// One tool call of an attempt, for the tree row and the detail view.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallRecord {
    pub call_id: String,
    pub tool: String,
    /// Short and sanitised by the engine.
    pub arguments: String,
    /// How much of the attempt's streamed text came before the call, so the detail view can
    /// show the call between the text.
    pub at: usize,
    pub started_ts: u64,
    /// `None` while it runs.
    pub finished: Option<ToolCallEnd>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallEnd {
    pub ok: bool,
    pub bytes: u64,
    pub ms: u64,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Running,
    Succeeded,
    /// Failed and retried after a delay.
    Retried {
        error: String,
        delay_ms: u64,
    },
    Failed {
        error: String,
    },
    Cancelled,
}

impl SubtaskReport {
    /// A subtask of a plan, before anything ran.
    fn planned(p: &PlannedSubtask) -> Self {
        Self {
            id: p.id.clone(),
            title: p.title.clone(),
            worker: p.worker.clone(),
            description: p.description.clone(),
            focus_areas: p.focus_areas.clone(),
            depends_on: p.depends_on.clone(),
            status: SubtaskStatus::Pending,
            attempts: 0,
            model: None,
            elapsed_ms: None,
            tokens_in: 0,
            tokens_out: 0,
            usage_estimated: false,
            result: None,
            cut_off: false,
            cached: false,
            error: None,
            reused: p.reuse.clone(),
            validation: Validation::default(),
            skipped: None,
            output: String::new(),
            drafted: false,
            waiting_on: p.depends_on.clone(),
            retry: None,
            waiting_until: None,
            started_ts: None,
            history: Vec::new(),
            sources: Vec::new(),
            ready_ts: None,
        }
    }

    /// The tool call the attempt in flight is waiting on (the latest started), if any.
    pub fn current_tool(&self) -> Option<&ToolCallRecord> {
        if self.status != SubtaskStatus::Running {
            return None;
        }
        let record = self.history.last()?;
        record.tools.iter().rev().find(|t| t.finished.is_none())
    }

    /// Record how `attempt` ended, if it is the one in flight.
    fn close_attempt(&mut self, attempt: u32, ts_ms: u64, outcome: AttemptOutcome) {
        if let Some(record) = self.history.last_mut()
            && record.attempt == attempt
            && record.outcome == AttemptOutcome::Running
        {
            record.elapsed_ms = Some(ts_ms.saturating_sub(record.started_ts));
            record.outcome = outcome;
        }
    }
}

/// What one model call spent (`CallUsage`), for pricing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallSpend {
    pub role: CallRole,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subtask: Option<SubtaskId>,
    pub attempt: u32,
    pub model: String,
    pub usage: Usage,
    /// The call gave no result (failed, retried, rejected): paid for all the same.
    pub failed: bool,
}

/// What a run's calls cost, by model, for the JSON report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostReport {
    /// Dollars of the calls whose model has a price; `null` when none has one. An estimate.
    pub usd: Option<f64>,
    /// Of `usd`, what calls that gave no result cost (failed, retried, rejected).
    pub failed_usd: Option<f64>,
    /// Tokens of calls whose model has no price (not in `usd`).
    pub unpriced_tokens: u64,
    /// When the shipped prices were copied (the config's `[prices]` may override them).
    pub prices_date: Option<String>,
    pub by_model: Vec<ModelCost>,
}

/// One model's calls in a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelCost {
    pub model: String,
    pub calls: u32,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cached_in: u64,
    /// `null` when the model has no price.
    pub usd: Option<f64>,
}

/// A run folded from its events.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunReport {
    pub id: Option<RunId>,
    /// The earlier run this one follows up on. No event carries it: whoever starts or loads
    /// the run sets it.
    pub parent: Option<RunId>,
    pub query: String,
    /// The preset (team of worker roles) the run used; empty when unknown. No event carries
    /// it: whoever starts or loads the run sets it.
    pub preset: String,
    pub started_ts: Option<u64>,
    pub planning_model: Option<String>,
    /// Every planner call, oldest first.
    pub planning: Vec<PlannerAttempt>,
    pub plan: Option<Plan>,
    pub subtasks: Vec<SubtaskReport>,
    /// The synthesis as far as it has streamed, or the finished report.
    pub synthesis: String,
    pub synthesis_model: Option<String>,
    pub synthesizing: bool,
    /// False when the report is the unsynthesised fallback.
    pub synthesized: bool,
    /// A subtask changed since the synthesis was written.
    pub synthesis_stale: bool,
    /// The synthesis attempt in flight has streamed text (until then the previous report
    /// stays on screen).
    synthesis_fresh: bool,
    /// The last finished report, shown again if a newer synthesis is dropped half-way.
    synthesis_done: String,
    /// Usage of the calls finished since the last `RunFinished` (which carries the total).
    usage_since: Usage,
    pub status: Option<RunStatus>,
    pub error: Option<String>,
    pub usage: Usage,
    pub elapsed_ms: Option<u64>,
    pub notices: Vec<String>,
    /// The run answers a straightforward query with its one subtask's answer: no synthesis.
    pub direct: bool,
    /// The files attached to the run (`ContextAttached`): path and size.
    pub context: Vec<ContextFile>,
    /// Files found with them but left out, and why.
    pub context_skipped: Vec<SkippedFile>,
    /// Every planner call, with its times, for the timeline.
    pub planner_calls: Vec<Call>,
    /// Every synthesis call, with its times, for the timeline.
    pub synthesis_calls: Vec<Call>,
    /// When the plan was ready (event time).
    pub plan_ts: Option<u64>,
    /// The concurrency limit the run's workers had. No event carries it: whoever starts or
    /// loads the run sets it.
    pub limit: Option<usize>,
    /// What each model call spent, in the order the calls ended.
    pub calls: Vec<CallSpend>,
    /// Prices for the cost figures. Empty (no figure shown) unless whoever makes the report
    /// sets them.
    pub prices: Arc<PriceTable>,
    /// The budget limit reached, until the budget is raised.
    pub budget_reached: Option<BudgetReason>,
    /// Why the provider is paused, until it is resumed.
    pub provider_paused: Option<String>,
    /// The saved sources of a resumed run's results, by subtask and attempt: a result the
    /// engine restates (`SubtaskSucceeded` of that attempt) gets them back, as no tool call
    /// is made again. No event carries them: whoever resumes the run sets them.
    pub restored_sources: Vec<(SubtaskId, u32, Vec<Source>)>,
}

/// Close the last of `calls` if it is still running.
fn close_call(calls: &mut [Call], ts_ms: u64, end: CallEnd) {
    if let Some(call) = calls.last_mut()
        && call.end == CallEnd::Running
    {
        call.end_ts = Some(ts_ms.max(call.start_ts));
        call.end = end;
    }
}

impl RunReport {
    /// A report that prices its calls with `prices`.
    pub fn priced(prices: Arc<PriceTable>) -> Self {
        Self {
            prices,
            ..Self::default()
        }
    }

    fn spend_of<'a>(&self, calls: impl Iterator<Item = &'a CallSpend>) -> Spend {
        let mut spend = Spend::default();
        for c in calls {
            spend.add(&self.prices, &c.model, &c.usage);
        }
        spend
    }

    /// What the whole run's calls cost, as far as their models have prices.
    pub fn spend(&self) -> Spend {
        self.spend_of(self.calls.iter())
    }

    /// What calls that gave no result cost.
    pub fn failed_spend(&self) -> Spend {
        self.spend_of(self.calls.iter().filter(|c| c.failed))
    }

    /// What one subtask's calls cost, every attempt included.
    pub fn subtask_spend(&self, id: &SubtaskId) -> Spend {
        self.spend_of(self.calls.iter().filter(|c| c.subtask.as_ref() == Some(id)))
    }

    /// Of one subtask's calls, those that gave no result.
    pub fn subtask_failed_spend(&self, id: &SubtaskId) -> Spend {
        self.spend_of(
            self.calls
                .iter()
                .filter(|c| c.failed && c.subtask.as_ref() == Some(id)),
        )
    }

    /// Tokens of one subtask's failed calls.
    pub fn subtask_failed_tokens(&self, id: &SubtaskId) -> u64 {
        self.calls
            .iter()
            .filter(|c| c.failed && c.subtask.as_ref() == Some(id))
            .map(|c| c.usage.total())
            .sum()
    }

    /// The cost section of the JSON report.
    pub fn cost_report(&self) -> CostReport {
        let mut by_model: Vec<ModelCost> = Vec::new();
        for c in &self.calls {
            let i = match by_model.iter().position(|m| m.model == c.model) {
                Some(i) => i,
                None => {
                    by_model.push(ModelCost {
                        model: c.model.clone(),
                        calls: 0,
                        tokens_in: 0,
                        tokens_out: 0,
                        cached_in: 0,
                        usd: None,
                    });
                    by_model.len() - 1
                }
            };
            let m = &mut by_model[i];
            m.calls += 1;
            m.tokens_in += c.usage.tokens_in;
            m.tokens_out += c.usage.tokens_out;
            m.cached_in += c.usage.cached_in;
            if let Some(usd) = self.prices.cost(&c.model, &c.usage) {
                *m.usd.get_or_insert(0.0) += usd;
            }
        }
        let spend = self.spend();
        CostReport {
            usd: spend.usd(),
            failed_usd: spend.usd().map(|_| self.failed_spend().usd),
            unpriced_tokens: spend.unpriced_tokens,
            prices_date: self.prices.date().map(str::to_owned),
            by_model,
        }
    }

    /// What a follow-up to this run is given: its query, its report and its subtasks'
    /// results. `None` before the run has an id or while it is still going.
    pub fn follow_up(&self) -> Option<FollowUp> {
        let parent = self.id?;
        self.status?;
        Some(FollowUp {
            parent,
            query: self.query.clone(),
            report: self.synthesis.clone(),
            results: self
                .subtasks
                .iter()
                .filter(|s| s.status == SubtaskStatus::Succeeded)
                .filter_map(|s| {
                    Some(EarlierResult {
                        id: s.id.clone(),
                        title: s.title.clone(),
                        text: s.result.clone()?,
                    })
                })
                .collect(),
        })
    }

    pub fn subtask(&self, id: &SubtaskId) -> Option<&SubtaskReport> {
        self.subtasks.iter().find(|s| &s.id == id)
    }

    fn planner_attempt(&mut self, attempt: u32) -> Option<&mut PlannerAttempt> {
        self.planning
            .iter_mut()
            .rev()
            .find(|p| p.attempt == attempt)
    }

    /// Subtasks drafted from a planner answer that will not become the plan.
    fn drop_drafts(&mut self) {
        if self.plan.is_none() {
            self.subtasks.retain(|s| !s.drafted);
        }
    }

    fn subtask_mut(&mut self, id: &SubtaskId) -> Option<&mut SubtaskReport> {
        self.subtasks.iter_mut().find(|s| &s.id == id)
    }

    pub fn count(&self, status: SubtaskStatus) -> usize {
        self.subtasks.iter().filter(|s| s.status == status).count()
    }

    /// Tokens of every subtask, the planner and the synthesis, as far as known: the run's
    /// final total once it finished, the sum of finished calls before.
    pub fn tokens(&self) -> Usage {
        // The last total the engine reported (planner included), plus what finished since.
        let mut total = self.usage;
        total.add(self.usage_since);
        total
    }

    pub fn apply(&mut self, event: &Event) {
        self.id.get_or_insert(event.run);
        self.reopen_if_working(event);
        match &event.kind {
            EventKind::RunStarted { query } => {
                self.query = query.clone();
                self.started_ts = Some(event.ts_ms);
            }
            EventKind::PlanningStarted { attempt, model } => {
                self.planning_model = Some(model.clone());
                // A run planned again after it failed: the old failure no longer stands.
                self.error = None;
                self.drop_drafts();
                self.planning.push(PlannerAttempt {
                    attempt: *attempt,
                    model: model.clone(),
                    text: String::new(),
                    outcome: PlannerOutcome::Running,
                });
                self.planner_calls.push(Call {
                    start_ts: event.ts_ms,
                    end_ts: None,
                    end: CallEnd::Running,
                });
            }
            EventKind::PlanningDelta { attempt, text } => {
                if let Some(p) = self.planner_attempt(*attempt) {
                    p.text.push_str(text);
                }
            }
            EventKind::PlanDrafted { subtasks, .. } => {
                if self.plan.is_none() {
                    self.subtasks = subtasks
                        .iter()
                        .map(|p| SubtaskReport {
                            drafted: true,
                            ..SubtaskReport::planned(p)
                        })
                        .collect();
                }
            }
            EventKind::PlanningRetrying {
                attempt,
                reason,
                delay_ms,
            } => {
                if let Some(p) = self.planner_attempt(*attempt) {
                    p.outcome = PlannerOutcome::Failed(reason.clone());
                }
                close_call(
                    &mut self.planner_calls,
                    event.ts_ms,
                    CallEnd::Retried {
                        delay_ms: *delay_ms,
                    },
                );
                self.drop_drafts();
            }
            EventKind::PlanRejected {
                attempt,
                error,
                answer,
            } => {
                if let Some(p) = self.planner_attempt(*attempt) {
                    p.outcome = PlannerOutcome::Rejected(error.clone());
                    p.text = answer.clone();
                }
                close_call(&mut self.planner_calls, event.ts_ms, CallEnd::Failed);
                self.drop_drafts();
            }
            EventKind::PlanReady { plan } => {
                if let Some(p) = self.planning.last_mut()
                    && p.outcome == PlannerOutcome::Running
                {
                    p.outcome = PlannerOutcome::Accepted;
                }
                self.subtasks = plan.subtasks.iter().map(SubtaskReport::planned).collect();
                self.plan = Some(plan.clone());
                close_call(&mut self.planner_calls, event.ts_ms, CallEnd::Succeeded);
                self.plan_ts = Some(event.ts_ms);
                self.mark_ready(event.ts_ms);
            }
            EventKind::Notice { message } => self.notices.push(message.clone()),
            EventKind::CommandRefused { refusal, .. } => self.notices.push(refusal.to_string()),
            EventKind::SubtaskQueued {
                subtask,
                waiting_on,
            } => {
                if let Some(s) = self.subtask_mut(subtask) {
                    s.status = SubtaskStatus::Pending;
                    s.waiting_on = waiting_on.clone();
                    s.retry = None;
                    if waiting_on.is_empty() {
                        s.ready_ts.get_or_insert(event.ts_ms);
                    }
                    s.skipped = None;
                }
                self.mark_stale();
            }
            EventKind::SubtaskStarted {
                subtask,
                attempt,
                worker,
                model,
            } => {
                if let Some(s) = self.subtask_mut(subtask) {
                    s.status = SubtaskStatus::Running;
                    s.attempts = *attempt;
                    s.worker = worker.clone();
                    s.model = Some(model.clone());
                    s.output.clear();
                    s.error = None;
                    s.reused = None;
                    s.retry = None;
                    s.waiting_on.clear();
                    s.started_ts = Some(event.ts_ms);
                    s.elapsed_ms = None;
                    s.validation.flagged = None;
                    s.sources.clear();
                    s.history.push(AttemptRecord {
                        attempt: *attempt,
                        model: model.clone(),
                        elapsed_ms: None,
                        started_ts: event.ts_ms,
                        outcome: AttemptOutcome::Running,
                        reasoning: String::new(),
                        tools: Vec::new(),
                    });
                }
            }
            EventKind::SubtaskDelta {
                subtask,
                attempt,
                text,
            } => {
                if let Some(s) = self.subtask_mut(subtask)
                    && s.attempts == *attempt
                {
                    s.output.push_str(text);
                }
            }
            EventKind::ToolCallStarted {
                subtask,
                attempt,
                call_id,
                tool,
                arguments,
            } => {
                if let Some(s) = self.subtask_mut(subtask)
                    && s.attempts == *attempt
                {
                    let at = s.output.len();
                    if let Some(record) = s.history.last_mut()
                        && record.attempt == *attempt
                    {
                        record.tools.push(ToolCallRecord {
                            call_id: call_id.clone(),
                            tool: tool.clone(),
                            arguments: arguments.clone(),
                            at,
                            started_ts: event.ts_ms,
                            finished: None,
                        });
                    }
                }
            }
            EventKind::ToolCallFinished {
                subtask,
                attempt,
                call_id,
                ok,
                bytes,
                ms,
                summary,
                source,
                text: _,
            } => {
                if let Some(s) = self.subtask_mut(subtask)
                    && s.attempts == *attempt
                {
                    if let Some(source) = source {
                        s.sources.push(source.clone());
                    }
                    if let Some(call) = s
                        .history
                        .last_mut()
                        .filter(|r| r.attempt == *attempt)
                        .and_then(|r| r.tools.iter_mut().find(|t| &t.call_id == call_id))
                    {
                        call.finished = Some(ToolCallEnd {
                            ok: *ok,
                            bytes: *bytes,
                            ms: *ms,
                            summary: summary.clone(),
                        });
                    }
                }
            }
            EventKind::SubtaskReasoning {
                subtask,
                attempt,
                text,
            } => {
                if let Some(record) = self
                    .subtask_mut(subtask)
                    .and_then(|s| s.history.iter_mut().rev().find(|r| r.attempt == *attempt))
                {
                    record.reasoning.push_str(text);
                }
            }
            EventKind::SubtaskRetrying {
                subtask,
                attempt,
                delay_ms,
                reason,
                error,
            } => {
                if let Some(s) = self.subtask_mut(subtask) {
                    s.status = SubtaskStatus::Retrying;
                    s.retry = Some((*delay_ms, reason.clone()));
                    s.error = Some(error.clone());
                    s.close_attempt(
                        *attempt,
                        event.ts_ms,
                        AttemptOutcome::Retried {
                            error: error.clone(),
                            delay_ms: *delay_ms,
                        },
                    );
                }
            }
            EventKind::SubtaskSucceeded {
                subtask,
                attempt,
                elapsed_ms,
                usage,
                result,
                cut_off,
                cached,
            } => {
                self.usage_since.add(*usage);
                let restored = self
                    .restored_sources
                    .iter()
                    .find(|(id, a, _)| id == subtask && a == attempt)
                    .map(|(_, _, sources)| sources.clone());
                if let Some(s) = self.subtask_mut(subtask) {
                    if let Some(sources) = restored
                        && s.sources.is_empty()
                    {
                        s.sources = sources;
                    }
                    s.close_attempt(*attempt, event.ts_ms, AttemptOutcome::Succeeded);
                    s.status = SubtaskStatus::Succeeded;
                    s.elapsed_ms = Some(*elapsed_ms);
                    s.tokens_in += usage.tokens_in;
                    s.tokens_out += usage.tokens_out;
                    s.usage_estimated |= usage.estimated;
                    s.result = Some(result.clone());
                    s.cut_off = *cut_off;
                    s.cached = *cached;
                    s.output.clear();
                }
                self.mark_ready(event.ts_ms);
            }
            EventKind::SubtaskFailed {
                subtask,
                attempt,
                elapsed_ms,
                error,
                partial,
            } => {
                if let Some(s) = self.subtask_mut(subtask) {
                    s.close_attempt(
                        *attempt,
                        event.ts_ms,
                        AttemptOutcome::Failed {
                            error: error.clone(),
                        },
                    );
                    s.status = SubtaskStatus::Failed;
                    s.elapsed_ms = Some(*elapsed_ms);
                    s.error = Some(error.clone());
                    s.output = partial.clone();
                    s.result = None;
                    s.cut_off = false;
                    s.cached = false;
                }
            }
            EventKind::SubtaskBlocked {
                subtask,
                waiting_on,
            } => {
                if let Some(s) = self.subtask_mut(subtask) {
                    s.status = SubtaskStatus::Blocked;
                    s.waiting_on = waiting_on.clone();
                }
            }
            EventKind::SubtaskCancelled { subtask, attempt } => {
                if let Some(s) = self.subtask_mut(subtask) {
                    s.close_attempt(*attempt, event.ts_ms, AttemptOutcome::Cancelled);
                    s.status = SubtaskStatus::Cancelled;
                    s.retry = None;
                }
            }
            EventKind::SubtaskEdited {
                subtask,
                description,
                worker,
            } => {
                if let Some(s) = self.subtask_mut(subtask) {
                    s.description = description.clone();
                    s.worker = worker.clone();
                }
            }
            EventKind::SynthesisStarted { model, .. } => {
                // The previous report stays readable until the new one has text.
                self.synthesizing = true;
                self.synthesis_fresh = false;
                self.synthesis_model = Some(model.clone());
                self.synthesis_calls.push(Call {
                    start_ts: event.ts_ms,
                    end_ts: None,
                    end: CallEnd::Running,
                });
            }
            EventKind::SynthesisDelta { text, .. } => {
                if !self.synthesis_fresh {
                    self.synthesis.clear();
                    self.synthesis_fresh = true;
                    self.synthesis_stale = false;
                }
                self.synthesis.push_str(text);
            }
            EventKind::SynthesisRetrying { delay_ms, .. } => close_call(
                &mut self.synthesis_calls,
                event.ts_ms,
                CallEnd::Retried {
                    delay_ms: *delay_ms,
                },
            ),
            EventKind::SynthesisCancelled { .. } => {
                close_call(&mut self.synthesis_calls, event.ts_ms, CallEnd::Cancelled);
                self.synthesizing = false;
                self.synthesis_fresh = false;
                if self.synthesis != self.synthesis_done {
                    self.synthesis = self.synthesis_done.clone();
                }
                self.synthesis_stale = !self.synthesis.is_empty();
            }
            EventKind::SynthesisFinished {
                text,
                synthesized,
                usage,
                ..
            } => {
                self.usage_since.add(*usage);
                close_call(
                    &mut self.synthesis_calls,
                    event.ts_ms,
                    if *synthesized {
                        CallEnd::Succeeded
                    } else {
                        CallEnd::Failed
                    },
                );
                self.synthesis_done = text.clone();
                self.synthesis = text.clone();
                self.synthesized = *synthesized;
                self.synthesizing = false;
                self.synthesis_stale = false;
                self.synthesis_fresh = false;
            }
            EventKind::DirectAnswer { .. } => self.direct = true,
            EventKind::SubtaskValidating {
                subtask, attempt, ..
            } => {
                if let Some(s) = self.subtask_mut(subtask) {
                    // The worker call is over: its attempt reads as answered while checked.
                    s.close_attempt(*attempt, event.ts_ms, AttemptOutcome::Succeeded);
                    s.status = SubtaskStatus::Validating;
                }
            }
            EventKind::SubtaskValidated {
                subtask,
                attempt,
                passed,
                reason,
                usage,
                flagged,
            } => {
                self.usage_since.add(*usage);
                if let Some(s) = self.subtask_mut(subtask) {
                    s.validation.verdicts.push(VerdictRecord {
                        attempt: *attempt,
                        verdict: if *passed { "pass" } else { "fail" },
                        reason: reason.clone(),
                    });
                    if *flagged {
                        s.validation.flagged = Some(reason.clone());
                    } else if !*passed
                        && let Some(record) =
                            s.history.iter_mut().rev().find(|r| r.attempt == *attempt)
                    {
                        record
                            .elapsed_ms
                            .get_or_insert(event.ts_ms.saturating_sub(record.started_ts));
                        record.outcome = AttemptOutcome::Failed {
                            error: format!("rejected by the validator: {reason}"),
                        };
                    }
                }
            }
            EventKind::ContextAttached { files, skipped } => {
                self.context = files.clone();
                self.context_skipped = skipped.clone();
            }
            EventKind::CallUsage {
                role,
                subtask,
                attempt,
                model,
                usage,
                failed,
            } => self.calls.push(CallSpend {
                role: *role,
                subtask: subtask.clone(),
                attempt: *attempt,
                model: model.clone(),
                usage: *usage,
                failed: *failed,
            }),
            EventKind::BudgetReached { reason, .. } => {
                self.notices.push(reason.to_string());
                self.budget_reached = Some(reason.clone());
            }
            EventKind::BudgetRaised {
                max_tokens,
                deadline_ms,
                max_cost_micros,
            } => {
                self.notices.push(crate::protocol::budget_raised_words(
                    *max_tokens,
                    *deadline_ms,
                    *max_cost_micros,
                ));
                self.budget_reached = None;
            }
            EventKind::SubtasksSkipped { subtasks, reason } => {
                for id in subtasks {
                    if let Some(s) = self.subtask_mut(id) {
                        s.status = SubtaskStatus::Cancelled;
                        s.skipped = Some(reason.clone());
                        s.retry = None;
                    }
                }
            }
            EventKind::ProviderPaused { message } => {
                self.notices.push(message.clone());
                self.provider_paused = Some(message.clone());
            }
            EventKind::SubtaskWaiting {
                subtask,
                delay_ms,
                reason,
                ..
            } => {
                if let Some(s) = self.subtask_mut(subtask) {
                    s.waiting_until = Some((event.ts_ms.saturating_add(*delay_ms), reason.clone()));
                }
            }
            EventKind::ProviderResumed => {
                self.notices.push("provider resumed".to_owned());
                self.provider_paused = None;
            }
            // Shown as a draft until approved: `PlanReady` makes it the plan.
            EventKind::PlanAwaitingReview { plan } => {
                if self.plan.is_none() {
                    self.subtasks = plan
                        .subtasks
                        .iter()
                        .map(|p| SubtaskReport {
                            drafted: true,
                            ..SubtaskReport::planned(p)
                        })
                        .collect();
                }
            }
            EventKind::RunFinished {
                status,
                elapsed_ms,
                usage,
                error,
                ..
            } => {
                self.provider_paused = None;
                if let Some(p) = self.planning.last_mut()
                    && p.outcome == PlannerOutcome::Running
                {
                    p.outcome = PlannerOutcome::Failed(
                        error.clone().unwrap_or_else(|| status.word().to_owned()),
                    );
                }
                self.drop_drafts();
                // A call still open when the run ends was cut short with it.
                let end = match status {
                    RunStatus::Cancelled => CallEnd::Cancelled,
                    RunStatus::Succeeded | RunStatus::Partial | RunStatus::Failed => {
                        CallEnd::Failed
                    }
                };
                close_call(&mut self.planner_calls, event.ts_ms, end);
                close_call(&mut self.synthesis_calls, event.ts_ms, end);
                self.status = Some(*status);
                self.elapsed_ms = Some(*elapsed_ms);
                self.usage = *usage;
                self.usage_since = Usage::default();
                self.error = error.clone();
                self.synthesizing = false;
            }
        }
    }

    /// The finished results joined under their titles, marked as interrupted, with what is
    /// missing and why.
    fn interrupted_report(&self) -> String {
        use crate::engine::prompt::{Finding, Gap, joined_report};
        let mut findings = Vec::new();
        let mut gaps = Vec::new();
        for s in &self.subtasks {
            match (s.status, &s.result) {
                (SubtaskStatus::Succeeded, Some(result)) => findings.push(Finding {
                    title: &s.title,
                    result,
                    cut_off: s.cut_off,
                    flagged: s.validation.flagged.as_deref(),
                }),
                (status, _) => gaps.push(Gap {
                    title: &s.title,
                    why: match status {
                        SubtaskStatus::Failed => s.error.as_deref().unwrap_or("failed"),
                        SubtaskStatus::Blocked => "blocked: a subtask it depends on has no result",
                        SubtaskStatus::Pending => "not started",
                        SubtaskStatus::Running
                        | SubtaskStatus::Retrying
                        | SubtaskStatus::Validating
                        | SubtaskStatus::Cancelled
                        | SubtaskStatus::Succeeded => "cancelled",
                    },
                }),
            }
        }
        joined_report(
            &self.query,
            &findings,
            &gaps,
            "**Interrupted:** the run was cancelled before it finished; below are the worker \
             results that finished by then, unsynthesised.",
        )
    }

    /// Subtasks that can run from `ts_ms` on: every dependency has succeeded (none for those
    /// without). The first time counts; a re-run does not move it.
    fn mark_ready(&mut self, ts_ms: u64) {
        let succeeded = |subtasks: &[SubtaskReport], id: &SubtaskId| {
            subtasks
                .iter()
                .any(|d| &d.id == id && d.status == SubtaskStatus::Succeeded)
        };
        for i in 0..self.subtasks.len() {
            let s = &self.subtasks[i];
            if s.ready_ts.is_none() && s.depends_on.iter().all(|d| succeeded(&self.subtasks, d)) {
                self.subtasks[i].ready_ts = Some(ts_ms);
            }
        }
    }

    fn mark_stale(&mut self) {
        if !self.synthesis.is_empty() {
            self.synthesis_stale = true;
        }
    }

    fn reopen_if_working(&mut self, event: &Event) {
        // A run that gets more work after it finished is active again.
        if matches!(
            event.kind,
            EventKind::SubtaskQueued { .. }
                | EventKind::SubtaskStarted { .. }
                | EventKind::SynthesisStarted { .. }
                | EventKind::PlanningStarted { .. }
        ) {
            self.status = None;
        }
    }
}

/// A subtask's status in the report's table, with the mark of a result that was cut off or
/// reused from the earlier run.
fn status_cell(s: &SubtaskReport) -> String {
    if s.status == SubtaskStatus::Succeeded
        && let Some(earlier) = &s.reused
    {
        format!("{} (reused `{}`)", s.status.word(), cell(earlier.as_str()))
    } else if s.status == SubtaskStatus::Succeeded && s.validation.flagged.is_some() {
        format!("{} (flagged)", s.status.word())
    } else if s.status == SubtaskStatus::Succeeded && s.cut_off {
        format!("{} ({})", s.status.word(), crate::display::CUT_OFF)
    } else if s.status == SubtaskStatus::Succeeded && s.cached {
        format!("{} ({})", s.status.word(), crate::display::CACHED)
    } else if s.status == SubtaskStatus::Cancelled && s.skipped.is_some() {
        "skipped (budget)".to_owned()
    } else {
        s.status.word().to_owned()
    }
}

impl AttemptOutcome {
    /// How the timeline draws the end of an attempt that ended so.
    pub fn call_end(&self) -> CallEnd {
        match self {
            AttemptOutcome::Running => CallEnd::Running,
            AttemptOutcome::Succeeded => CallEnd::Succeeded,
            AttemptOutcome::Retried { delay_ms, .. } => CallEnd::Retried {
                delay_ms: *delay_ms,
            },
            AttemptOutcome::Failed { .. } => CallEnd::Failed,
            AttemptOutcome::Cancelled => CallEnd::Cancelled,
        }
    }
}

impl AttemptRecord {
    fn call(&self) -> Call {
        Call {
            start_ts: self.started_ts,
            end_ts: self.elapsed_ms.map(|ms| self.started_ts.saturating_add(ms)),
            end: self.outcome.call_end(),
        }
    }
}

impl RunReport {
    /// Where the timeline's clock starts: the run's first call (the planner's), else its
    /// `RunStarted`, else its first worker call. The first call rather than `RunStarted`
    /// because a saved run's start is when its row was written, a moment earlier, and the
    /// times of a run and of the same run read back must agree.
    fn start_ts(&self) -> Option<u64> {
        let first_worker = || {
            self.subtasks
                .iter()
                .filter_map(|s| s.history.first())
                .map(|a| a.started_ts)
                .min()
        };
        self.planner_calls
            .first()
            .map(|c| c.start_ts)
            .or(self.started_ts)
            .or_else(first_worker)
    }

    /// When the run ended (its start plus its elapsed time, or its last call's end if that
    /// is later), or `now_ms` while it goes on.
    pub fn end_ts(&self, now_ms: u64) -> u64 {
        let start = self.start_ts().unwrap_or(now_ms);
        match (self.status, self.elapsed_ms) {
            (Some(_), Some(elapsed)) => {
                let last_call = self
                    .planner_calls
                    .iter()
                    .chain(&self.synthesis_calls)
                    .filter_map(|c| c.end_ts)
                    .chain(
                        self.subtasks
                            .iter()
                            .flat_map(|s| &s.history)
                            .filter_map(|a| a.call().end_ts),
                    )
                    .max()
                    .unwrap_or(start);
                start.saturating_add(elapsed).max(last_call)
            }
            _ => now_ms.max(start),
        }
    }

    /// The run as a timeline: the planner, each subtask in plan order, the synthesis. `now_ms`
    /// is where what still runs reaches.
    pub fn timeline(&self, now_ms: u64) -> Timeline<'_> {
        let start = self.start_ts().unwrap_or(now_ms);
        let mut t = Timeline::new(start, self.end_ts(now_ms), self.limit);
        let live = self.status.is_none();
        let planner_glyph = match self.planning.last().map(|p| &p.outcome) {
            _ if self.plan.is_some() => crate::display::status_glyph(SubtaskStatus::Succeeded),
            Some(PlannerOutcome::Running) => crate::display::status_glyph(SubtaskStatus::Running),
            Some(PlannerOutcome::Rejected(_) | PlannerOutcome::Failed(_)) if live => {
                crate::display::status_glyph(SubtaskStatus::Retrying)
            }
            Some(_) => crate::display::status_glyph(SubtaskStatus::Failed),
            None => crate::display::status_glyph(SubtaskStatus::Pending),
        };
        t.push(
            Head {
                kind: TrackKind::Planner,
                label: "planner",
                glyph: planner_glyph,
                ready_ts: Some(start),
                open: live && self.plan.is_none(),
                succeeded: self.plan.is_some(),
            },
            self.planner_calls.iter().copied(),
            [],
        );
        for s in &self.subtasks {
            let deps = s
                .depends_on
                .iter()
                .filter_map(|d| self.subtasks.iter().position(|o| &o.id == d))
                .map(|i| i + 1);
            let open = !s.drafted
                && matches!(
                    s.status,
                    SubtaskStatus::Pending | SubtaskStatus::Running | SubtaskStatus::Retrying
                );
            t.push(
                Head {
                    kind: TrackKind::Subtask,
                    label: s.id.as_str(),
                    glyph: crate::display::status_glyph(s.status),
                    ready_ts: s.ready_ts,
                    open: open && live,
                    succeeded: s.status == SubtaskStatus::Succeeded,
                },
                s.history.iter().map(AttemptRecord::call),
                deps,
            );
        }
        let synthesis_glyph = if self.synthesizing {
            SubtaskStatus::Running
        } else if self.synthesis_calls.is_empty() && self.synthesis.is_empty() {
            SubtaskStatus::Pending
        } else if self.synthesized {
            SubtaskStatus::Succeeded
        } else {
            SubtaskStatus::Failed
        };
        // A direct answer has no synthesis step: its report is the one worker's answer.
        if self.direct {
            return t;
        }
        t.push(
            Head {
                kind: TrackKind::Synthesis,
                label: "synthesis",
                glyph: crate::display::status_glyph(synthesis_glyph),
                ready_ts: None,
                open: live && self.plan.is_some(),
                succeeded: self.synthesized && !self.synthesizing,
            },
            self.synthesis_calls.iter().copied(),
            [],
        );
        t
    }

    /// Each subtask with its times for the JSON report, in ms from the run's start (its first
    /// call), in plan order.
    pub fn subtask_times(&self) -> Vec<JsonSubtask<'_>> {
        let end = self.end_ts(self.start_ts().unwrap_or(0));
        let timeline = self.timeline(end);
        let since = |ts: u64| ts.saturating_sub(timeline.start_ts);
        self.subtasks
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let track = i + 1;
                let mut previous: Option<&AttemptRecord> = None;
                let attempt_times = s
                    .history
                    .iter()
                    .map(|a| {
                        let call = a.call();
                        // The back-off before it: from the retried attempt's end to its start.
                        let wait_ms = match previous {
                            Some(
                                p @ AttemptRecord {
                                    outcome: AttemptOutcome::Retried { .. },
                                    ..
                                },
                            ) => p
                                .call()
                                .end_ts
                                .map_or(0, |end| a.started_ts.saturating_sub(end)),
                            _ => 0,
                        };
                        previous = Some(a);
                        AttemptTime {
                            attempt: a.attempt,
                            start_ms: since(call.start_ts),
                            end_ms: call.end_ts.map(since),
                            wait_ms,
                        }
                    })
                    .collect();
                JsonSubtask {
                    subtask: s,
                    ready_ms: timeline.ready(track).map(since),
                    started_ms: s.history.first().map(|a| since(a.started_ts)),
                    finished_ms: timeline.finish(track).map(since),
                    attempt_times,
                    cost_usd: self.subtask_spend(&s.id).usd(),
                }
            })
            .collect()
    }
}

/// A subtask in the JSON report: its fields, and when it became ready, started and finished,
/// in ms from the run's start.
#[derive(Debug, Serialize)]
pub struct JsonSubtask<'a> {
    #[serde(flatten)]
    pub subtask: &'a SubtaskReport,
    pub ready_ms: Option<u64>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// Every attempt's times, oldest first.
    pub attempt_times: Vec<AttemptTime>,
    /// What every attempt's calls cost, failed ones included; `null` when its model has no
    /// price.
    pub cost_usd: Option<f64>,
}

/// One attempt's times, in ms from the run's start; `wait_ms` is the back-off before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AttemptTime {
    pub attempt: u32,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub wait_ms: u64,
}

/// `maestro run --format json`: one object for the whole run.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    pub run_id: Option<RunId>,
    /// The run this one follows up on (`--follow-up`); absent for a run of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<RunId>,
    pub query: &'a str,
    /// The preset (team of worker roles) the run used; absent when unknown.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub preset: &'a str,
    pub status: Option<RunStatus>,
    pub error: Option<&'a str>,
    pub plan: Option<&'a Plan>,
    pub subtasks: Vec<JsonSubtask<'a>>,
    pub synthesis: &'a str,
    pub synthesized: bool,
    pub usage: Usage,
    pub elapsed_ms: Option<u64>,
    pub notices: &'a [String],
    /// How the planner classified the query (`straightforward`, `breadth_first`,
    /// `depth_first`), when it said.
    pub complexity: Option<Complexity>,
    /// The report is the one subtask's answer, with no synthesis step.
    pub direct: bool,
    /// The files attached to the run (`@path`, `--context`); absent when there were none.
    #[serde(skip_serializing_if = "JsonContext::is_empty")]
    pub context: JsonContext<'a>,
    /// What the calls cost, estimated from the price table.
    pub cost: CostReport,
    /// The budget limit that stopped the run starting subtasks, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_reached: Option<&'a BudgetReason>,
    /// Subtasks that did not run because the budget was reached.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_for_budget: Vec<&'a SubtaskId>,
}

/// `context` of the JSON report: each attached file's path and size, and the files left out
/// with why.
#[derive(Debug, Serialize)]
pub struct JsonContext<'a> {
    pub files: &'a [ContextFile],
    pub skipped: &'a [SkippedFile],
}

impl JsonContext<'_> {
    fn is_empty(&self) -> bool {
        self.files.is_empty() && self.skipped.is_empty()
    }
}

impl RunReport {
    /// How the planner classified the query, when it said.
    pub fn complexity(&self) -> Option<Complexity> {
        self.plan.as_ref().and_then(|p| p.complexity)
    }

    /// `direct answer · straightforward`, `breadth_first`…: how the run was shaped, for the
    /// report's footer and the front ends; `None` when the planner did not classify the query
    /// and the run is not direct.
    pub fn shape(&self) -> Option<String> {
        match (self.direct, self.complexity()) {
            (true, Some(c)) => Some(format!("direct answer · {}", c.word())),
            (true, None) => Some("direct answer".to_owned()),
            (false, Some(c)) => Some(c.word().to_owned()),
            (false, None) => None,
        }
    }

    pub fn to_json(&self) -> JsonReport<'_> {
        JsonReport {
            run_id: self.id,
            parent: self.parent,
            query: &self.query,
            preset: &self.preset,
            status: self.status,
            error: self.error.as_deref(),
            plan: self.plan.as_ref(),
            subtasks: self.subtask_times(),
            synthesis: &self.synthesis,
            synthesized: self.synthesized,
            usage: self.usage,
            elapsed_ms: self.elapsed_ms,
            notices: &self.notices,
            complexity: self.complexity(),
            direct: self.direct,
            context: JsonContext {
                files: &self.context,
                skipped: &self.context_skipped,
            },
            cost: self.cost_report(),
            budget_reached: self.budget_reached.as_ref(),
            skipped_for_budget: self.skipped_for_budget(),
        }
    }

    /// `## Attached files`: each file with its size, then those left out and why; empty when
    /// nothing was attached. Paths are sanitised: a file name can hold anything.
    pub fn context_markdown(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        if self.context.is_empty() && self.context_skipped.is_empty() {
            return out;
        }
        let total: u64 = self.context.iter().map(|f| f.bytes).sum();
        let _ = writeln!(
            out,
            "## Attached files\n\n{} file{}, {}, read by the planner and the workers.\n",
            self.context.len(),
            if self.context.len() == 1 { "" } else { "s" },
            crate::display::bytes(total)
        );
        for f in &self.context {
            let _ = writeln!(
                out,
                "- `{}` ({})",
                cell(&f.path),
                crate::display::bytes(f.bytes)
            );
        }
        for s in &self.context_skipped {
            let _ = writeln!(
                out,
                "- `{}`: skipped ({})",
                cell(&s.path),
                sanitize_line(&s.reason)
            );
        }
        out
    }

    /// Subtasks that did not run because the budget was reached, in plan order.
    pub fn skipped_for_budget(&self) -> Vec<&SubtaskId> {
        self.subtasks
            .iter()
            .filter(|s| s.status == SubtaskStatus::Cancelled && s.skipped.is_some())
            .map(|s| &s.id)
            .collect()
    }

    /// The synthesis, then a table of subtasks with status, role, time, tokens and attempts,
    /// then the errors. Model text is sanitised: this goes to terminals and files alike.
    /// A subtask's role, with the model the plan gave it of its own (`research · gpt-4o`):
    /// the one model that differs from what the run's settings say.
    fn role_and_model(&self, s: &SubtaskReport) -> String {
        let own = self
            .plan
            .as_ref()
            .and_then(|p| p.subtasks.iter().find(|t| t.id == s.id))
            .and_then(|t| t.model.as_deref());
        match own {
            Some(model) => format!("{} · {model}", s.worker),
            None => s.worker.clone(),
        }
    }

    pub fn to_markdown(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let cancelled = self.status == Some(RunStatus::Cancelled);
        // Cancelled before a synthesis: what finished is still worth printing, joined the way
        // a failed synthesis joins it.
        let joined = (cancelled && self.synthesis.trim().is_empty() && !self.subtasks.is_empty())
            .then(|| self.interrupted_report());
        let synthesis =
            crate::sanitize::sanitize(joined.as_deref().unwrap_or(&self.synthesis).trim_end());
        if cancelled && joined.is_none() {
            let _ = writeln!(
                out,
                "> **Incomplete:** the run was cancelled before it finished; below is what was \
                 done by then.\n"
            );
        }
        if synthesis.is_empty() {
            let _ = writeln!(out, "# {}\n", sanitize_line(&self.query));
            let why = self
                .error
                .as_deref()
                .unwrap_or("the run produced no report");
            let _ = writeln!(out, "_No report: {}._\n", sanitize_line(why));
        } else {
            let _ = writeln!(out, "{synthesis}\n");
        }
        let context = self.context_markdown();
        if !context.is_empty() {
            let _ = writeln!(out, "---\n\n{context}");
        }
        if self.subtasks.is_empty() {
            return out;
        }
        let _ = writeln!(out, "---\n\n## Subtasks\n");
        if !self.preset.is_empty() {
            let _ = writeln!(out, "Preset: {}\n", cell(&self.preset));
        }
        let spend = self.spend();
        // A cost column only when some call has a price: otherwise it would say nothing.
        let priced = spend.usd().is_some();
        let (cost_head, cost_rule) = if priced {
            (" cost |", "---:|")
        } else {
            ("", "")
        };
        let _ = writeln!(
            out,
            "| id | title | role | status | time | tokens in/out | attempts |{cost_head}"
        );
        let _ = writeln!(out, "|---|---|---|---|---:|---:|---:|{cost_rule}");
        for s in &self.subtasks {
            let est = if s.usage_estimated { "~" } else { "" };
            let cost = if priced {
                let label = self.subtask_spend(&s.id).label();
                format!(" {} |", label.as_deref().unwrap_or("—"))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {est}{}/{est}{} | {} |{cost}",
                cell(s.id.as_str()),
                cell(&s.title),
                cell(&self.role_and_model(s)),
                status_cell(s),
                s.elapsed_ms.map(duration).unwrap_or_else(|| "—".into()),
                tokens(s.tokens_in),
                tokens(s.tokens_out),
                s.attempts
            );
        }
        let problems: Vec<&SubtaskReport> =
            self.subtasks.iter().filter(|s| s.error.is_some()).collect();
        if !problems.is_empty() {
            let _ = writeln!(out, "\n### Errors\n");
            for s in problems {
                let _ = writeln!(
                    out,
                    "- **{}**: {}",
                    cell(s.id.as_str()),
                    sanitize_line(s.error.as_deref().unwrap_or(""))
                );
            }
        }
        let flagged: Vec<(&SubtaskReport, &str)> = self
            .subtasks
            .iter()
            .filter_map(|s| s.validation.flagged.as_deref().map(|why| (s, why)))
            .collect();
        if !flagged.is_empty() {
            let _ = writeln!(out, "\n### Flagged by the validator\n");
            for (s, why) in flagged {
                let _ = writeln!(out, "- **{}**: {}", cell(s.id.as_str()), sanitize_line(why));
            }
        }
        let sourced: Vec<&SubtaskReport> = self
            .subtasks
            .iter()
            .filter(|s| !s.sources.is_empty())
            .collect();
        let skipped = self.skipped_for_budget();
        if !skipped.is_empty() {
            let ids: Vec<String> = skipped
                .iter()
                .map(|id| format!("`{}`", cell(id.as_str())))
                .collect();
            let why = self
                .budget_reached
                .as_ref()
                .map_or_else(|| "the budget was reached".to_owned(), |r| r.to_string());
            let _ = writeln!(
                out,
                "\n_Skipped for the budget ({}): {}_",
                sanitize_line(&why),
                ids.join(", ")
            );
        }
        let usage = self.tokens();
        let est = if usage.estimated {
            " (partly estimated)"
        } else {
            ""
        };
        let shape = self.shape().map(|s| format!("{s} · ")).unwrap_or_default();
        let _ = writeln!(
            out,
            "\n_{shape}{} of {} subtasks succeeded · {} tokens in, {} out{est} · {}{}_",
            self.count(SubtaskStatus::Succeeded),
            self.subtasks.len(),
            tokens(usage.tokens_in),
            tokens(usage.tokens_out),
            self.elapsed_ms.map(duration).unwrap_or_else(|| "—".into()),
            self.cost_sentence(),
        );
        if !sourced.is_empty() {
            let _ = writeln!(out, "\n## Sources\n");
            let mut n = 0;
            for s in sourced {
                for source in &s.sources {
                    n += 1;
                    let status = source
                        .status
                        .map(|code| format!("HTTP {code}, "))
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "{n}. {} ({status}{} bytes, {}) — subtask `{}`",
                        cell(&source.location),
                        source.bytes,
                        crate::display::utc(source.retrieved_ms),
                        cell(s.id.as_str())
                    );
                }
            }
        }
        if let Some(chart) = self.timeline_chart() {
            let _ = writeln!(out, "\n## Timeline\n\n```text\n{chart}```");
        }
        out
    }

    /// The timeline as fixed-width text, for a run that has started and has a plan.
    pub fn timeline_chart(&self) -> Option<String> {
        let start = self.start_ts()?;
        self.plan.as_ref()?;
        let chart =
            crate::timeline::text_chart(&self.timeline(self.end_ts(start)), TEXT_CHART_WIDTH);
        // Subtask ids are the planner's words.
        Some(crate::sanitize::sanitize(&chart).into_owned())
    }
}

/// The width of the timeline in the markdown report: a terminal's 80 columns, less a margin.
const TEXT_CHART_WIDTH: usize = 78;

impl RunReport {
    /// ` · ≈$0.012 estimated (≈$0.001 on failed attempts)`, or nothing when no call has a
    /// price.
    pub fn cost_sentence(&self) -> String {
        let spend = self.spend();
        let Some(label) = spend.label() else {
            return String::new();
        };
        let mut text = format!(" · {label} estimated");
        let failed = self.failed_spend();
        if failed.usd > 0.0 {
            text.push_str(&format!(" ({} on failed attempts)", show_usd(failed.usd)));
        }
        if spend.partial() {
            text.push_str(&format!(
                ", {} tokens of models without a price",
                tokens(spend.unpriced_tokens)
            ));
        }
        text
    }
}

fn cell(text: &str) -> String {
    sanitize_line(text).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{PlannedSubtask, Priority};

    fn event(kind: EventKind) -> Event {
        Event {
            run: RunId(uuid::Uuid::nil()),
            ts_ms: 0,
            kind,
        }
    }

    fn usage(n: u64) -> Usage {
        Usage {
            tokens_in: n,
            tokens_out: n,
            estimated: false,
            cached_in: 0,
        }
    }

    /// A finished run with one subtask and a report.
    fn finished() -> RunReport {
        let mut r = RunReport::default();
        let plan = Plan {
            query_analysis: String::new(),
            subtasks: vec![PlannedSubtask {
                id: "a".into(),
                worker: "research".into(),
                title: "A".into(),
                description: "a".into(),
                focus_areas: vec![],
                depends_on: vec![],
                priority: Priority::Medium,
                reuse: None,
                role_prompt: None,
                model: None,
            }],
            synthesis_guidance: String::new(),
            complexity: None,
        };
        for kind in [
            EventKind::RunStarted { query: "q".into() },
            EventKind::PlanReady { plan },
            EventKind::SubtaskSucceeded {
                subtask: "a".into(),
                attempt: 1,
                elapsed_ms: 10,
                usage: usage(10),
                result: "A".into(),
                cut_off: false,
                cached: false,
            },
            EventKind::SynthesisStarted {
                attempt: 1,
                model: "m".into(),
            },
            EventKind::SynthesisFinished {
                attempt: 1,
                text: "first report".into(),
                synthesized: true,
                usage: usage(5),
                error: None,
            },
            EventKind::RunFinished {
                status: RunStatus::Succeeded,
                elapsed_ms: 100,
                usage: usage(20),
                succeeded: 1,
                failed: 0,
                total: 1,
                error: None,
            },
        ] {
            r.apply(&event(kind));
        }
        r
    }

    fn at(ts_ms: u64, kind: EventKind) -> Event {
        Event {
            run: RunId(uuid::Uuid::nil()),
            ts_ms,
            kind,
        }
    }

    fn planned(id: &str, deps: &[&str]) -> PlannedSubtask {
        PlannedSubtask {
            id: id.into(),
            worker: "research".into(),
            title: id.to_uppercase(),
            description: id.into(),
            focus_areas: vec![],
            depends_on: deps.iter().map(|d| (*d).into()).collect(),
            priority: Priority::Medium,
            reuse: None,
            role_prompt: None,
            model: None,
        }
    }

    fn started(id: &str, attempt: u32) -> EventKind {
        EventKind::SubtaskStarted {
            subtask: id.into(),
            attempt,
            worker: "research".into(),
            model: "m".into(),
        }
    }

    fn succeeded(id: &str, attempt: u32) -> EventKind {
        EventKind::SubtaskSucceeded {
            subtask: id.into(),
            attempt,
            elapsed_ms: 0,
            usage: usage(1),
            result: "r".into(),
            cut_off: false,
            cached: false,
        }
    }

    /// A run from t=1000: planned in 1s; `a` fails once, backs off 1s and succeeds at 5s;
    /// `b` and `c` wait for it, `b` succeeds at 8s, `c` fails at 6s; synthesis to 10s.
    fn timed() -> RunReport {
        let mut r = RunReport {
            limit: Some(2),
            ..RunReport::default()
        };
        let plan = Plan {
            query_analysis: String::new(),
            subtasks: vec![
                planned("a", &[]),
                planned("b", &["a"]),
                planned("c", &["a"]),
            ],
            synthesis_guidance: String::new(),
            complexity: None,
        };
        for (ts, kind) in [
            (1_000, EventKind::RunStarted { query: "q".into() }),
            (
                1_000,
                EventKind::PlanningStarted {
                    attempt: 1,
                    model: "m".into(),
                },
            ),
            (2_000, EventKind::PlanReady { plan }),
            (2_000, started("a", 1)),
            (
                3_000,
                EventKind::SubtaskRetrying {
                    subtask: "a".into(),
                    attempt: 1,
                    delay_ms: 1_000,
                    reason: "HTTP 500".into(),
                    error: "HTTP 500".into(),
                },
            ),
            (4_000, started("a", 2)),
            (5_000, succeeded("a", 2)),
            (5_000, started("b", 1)),
            (5_000, started("c", 1)),
            (
                6_000,
                EventKind::SubtaskFailed {
                    subtask: "c".into(),
                    attempt: 1,
                    elapsed_ms: 1_000,
                    error: "HTTP 400".into(),
                    partial: String::new(),
                },
            ),
            (8_000, succeeded("b", 1)),
            (
                8_000,
                EventKind::SynthesisStarted {
                    attempt: 1,
                    model: "m".into(),
                },
            ),
            (
                10_000,
                EventKind::SynthesisFinished {
                    attempt: 1,
                    text: "report".into(),
                    synthesized: true,
                    usage: usage(1),
                    error: None,
                },
            ),
            (
                10_000,
                EventKind::RunFinished {
                    status: RunStatus::Partial,
                    elapsed_ms: 9_000,
                    usage: usage(4),
                    succeeded: 2,
                    failed: 1,
                    total: 3,
                    error: None,
                },
            ),
        ] {
            r.apply(&at(ts, kind));
        }
        r
    }

    #[test]
    fn ready_times_are_when_the_plan_came_or_the_dependencies_succeeded() {
        let r = timed();
        let ready: Vec<Option<u64>> = r.subtasks.iter().map(|s| s.ready_ts).collect();
        assert_eq!(ready, [Some(2_000), Some(5_000), Some(5_000)]);
        assert_eq!(r.plan_ts, Some(2_000));
        assert_eq!(r.planner_calls.len(), 1);
        assert_eq!(r.synthesis_calls[0].end_ts, Some(10_000));
    }

    #[test]
    fn the_json_report_has_each_subtasks_times_from_the_runs_start() {
        let r = timed();
        let json = serde_json::to_value(r.to_json()).unwrap();
        let a = &json["subtasks"][0];
        assert_eq!(a["id"], "a");
        assert_eq!(
            (&a["ready_ms"], &a["started_ms"], &a["finished_ms"]),
            (&1_000.into(), &1_000.into(), &4_000.into())
        );
        assert_eq!(
            a["attempt_times"],
            serde_json::json!([
                {"attempt": 1, "start_ms": 1000, "end_ms": 2000, "wait_ms": 0},
                {"attempt": 2, "start_ms": 3000, "end_ms": 4000, "wait_ms": 1000},
            ])
        );
        assert_eq!(json["subtasks"][2]["finished_ms"], 5_000);
    }

    #[test]
    fn the_markdown_report_ends_with_the_timeline() {
        let md = timed().to_markdown();
        let chart = md.split("## Timeline").nth(1).expect(&md);
        insta::assert_snapshot!(chart.trim(), @r"
        ```text
        *✓ planner   ███████▏
        *✓ a                ▓▓▓▓▓▓▓✗╌╌╌╌╌╌███████▉
        *✓ b                                     ██████████████████████▌
         ✗ c                                     ▓▓▓▓▓▓▓✗
        *✓ synthesis                                                   ███████████████
                     0      1s     2s     3s     4s      5s     6s     7s     8s

        critical path: planner → a → b → synthesis
        critical path 9.0s of 9.0s · in flight mean 1.0, peak 2 of 2
        █ call  ▓✗ failed call  ░ queued for a slot  ╌ back-off  * critical path
        ```
        ");
    }

    #[test]
    fn a_refused_command_is_kept_as_a_notice_in_its_sentence() {
        let mut r = finished();
        r.apply(&event(EventKind::CommandRefused {
            command: crate::protocol::CommandName::CancelRun,
            refusal: crate::protocol::Refusal::RunFinished,
        }));
        assert_eq!(r.notices, ["the run has already finished"]);
    }

    #[test]
    fn a_dropped_synthesis_brings_back_the_last_report_marked_stale() {
        let mut r = finished();
        r.apply(&event(EventKind::SubtaskQueued {
            subtask: "a".into(),
            waiting_on: vec![],
        }));
        r.apply(&event(EventKind::SynthesisStarted {
            attempt: 2,
            model: "m".into(),
        }));
        r.apply(&event(EventKind::SynthesisDelta {
            attempt: 2,
            text: "half a new rep".into(),
        }));
        assert_eq!(r.synthesis, "half a new rep");
        r.apply(&event(EventKind::SynthesisCancelled { attempt: 2 }));
        assert_eq!(r.synthesis, "first report");
        assert!(r.synthesis_stale && !r.synthesizing);
    }

    #[test]
    fn resynthesising_a_finished_run_makes_it_active_again() {
        let mut r = finished();
        assert!(r.status.is_some());
        r.apply(&event(EventKind::SynthesisStarted {
            attempt: 2,
            model: "m".into(),
        }));
        assert_eq!(r.status, None);
    }

    #[test]
    fn token_totals_never_drop_when_a_finished_run_is_reopened() {
        let mut r = finished();
        assert_eq!(r.tokens().total(), 40);
        r.apply(&event(EventKind::SubtaskStarted {
            subtask: "a".into(),
            attempt: 2,
            worker: "research".into(),
            model: "m".into(),
        }));
        assert_eq!(r.tokens().total(), 40, "reopening keeps the total");
        r.apply(&event(EventKind::SubtaskSucceeded {
            subtask: "a".into(),
            attempt: 2,
            elapsed_ms: 10,
            usage: usage(3),
            result: "A2".into(),
            cut_off: false,
            cached: false,
        }));
        assert_eq!(r.tokens().total(), 46);
    }

    #[test]
    fn a_cancelled_run_says_its_report_is_incomplete() {
        let mut r = finished();
        r.status = Some(RunStatus::Cancelled);
        assert!(r.to_markdown().contains("Incomplete"));
        r.status = Some(RunStatus::Succeeded);
        assert!(!r.to_markdown().contains("Incomplete"));
    }

    #[test]
    fn a_run_cancelled_before_its_synthesis_still_prints_the_finished_results() {
        let mut r = finished();
        r.synthesis.clear();
        r.status = Some(RunStatus::Cancelled);
        r.error = Some("cancelled by the user".into());
        r.subtasks[0].result = Some("The finished finding.".into());
        let mut b = r.subtasks[0].clone();
        b.id = "b".into();
        b.title = "B".into();
        b.status = SubtaskStatus::Cancelled;
        b.result = None;
        r.subtasks.push(b);
        let md = r.to_markdown();
        assert!(md.contains("Interrupted"), "{md}");
        assert!(md.contains("The finished finding."), "{md}");
        assert!(md.contains("- **B**: cancelled"), "{md}");
        assert!(!md.contains("No report"), "{md}");
        assert!(md.contains("| b | B |"), "the table follows: {md}");
    }
}
