//! A run as its events describe it, and the reports made from that: the markdown report, the
//! JSON object of `maestro run --format json`, and the figures progress lines show.
//!
//! `RunReport::apply` folds events in order; it is the one place that knows what each event
//! means for a consumer, shared by the headless printer and the dashboard. No I/O here.

use serde::Serialize;

use crate::display::{duration, tokens};
use crate::protocol::{
    BudgetReason, EarlierResult, Event, EventKind, FollowUp, Plan, PlannedSubtask, RunId,
    RunStatus, SubtaskId, SubtaskStatus, Usage,
};
use crate::sanitize::sanitize_line;

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
            skipped: None,
            output: String::new(),
            drafted: false,
            waiting_on: p.depends_on.clone(),
            retry: None,
            waiting_until: None,
            started_ts: None,
            history: Vec::new(),
        }
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

/// A run folded from its events.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunReport {
    pub id: Option<RunId>,
    /// The earlier run this one follows up on. No event carries it: whoever starts or loads
    /// the run sets it.
    pub parent: Option<RunId>,
    pub query: String,
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
    /// The budget limit reached, until the budget is raised.
    pub budget_reached: Option<BudgetReason>,
    /// Why the provider is paused, until it is resumed.
    pub provider_paused: Option<String>,
}

impl RunReport {
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
                attempt, reason, ..
            } => {
                if let Some(p) = self.planner_attempt(*attempt) {
                    p.outcome = PlannerOutcome::Failed(reason.clone());
                }
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
                    s.history.push(AttemptRecord {
                        attempt: *attempt,
                        model: model.clone(),
                        elapsed_ms: None,
                        started_ts: event.ts_ms,
                        outcome: AttemptOutcome::Running,
                        reasoning: String::new(),
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
                if let Some(s) = self.subtask_mut(subtask) {
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
            }
            EventKind::SynthesisDelta { text, .. } => {
                if !self.synthesis_fresh {
                    self.synthesis.clear();
                    self.synthesis_fresh = true;
                    self.synthesis_stale = false;
                }
                self.synthesis.push_str(text);
            }
            EventKind::SynthesisRetrying { .. } => {}
            EventKind::SynthesisCancelled { .. } => {
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
                self.synthesis_done = text.clone();
                self.synthesis = text.clone();
                self.synthesized = *synthesized;
                self.synthesizing = false;
                self.synthesis_stale = false;
                self.synthesis_fresh = false;
            }
            EventKind::BudgetReached { reason, .. } => {
                self.notices.push(reason.to_string());
                self.budget_reached = Some(reason.clone());
            }
            EventKind::BudgetRaised {
                max_tokens,
                deadline_ms,
            } => {
                self.notices.push(crate::protocol::budget_raised_words(
                    *max_tokens,
                    *deadline_ms,
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
                }),
                (status, _) => gaps.push(Gap {
                    title: &s.title,
                    why: match status {
                        SubtaskStatus::Failed => s.error.as_deref().unwrap_or("failed"),
                        SubtaskStatus::Blocked => "blocked: a subtask it depends on has no result",
                        SubtaskStatus::Pending => "not started",
                        SubtaskStatus::Running
                        | SubtaskStatus::Retrying
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

/// `maestro run --format json`: one object for the whole run.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    pub run_id: Option<RunId>,
    /// The run this one follows up on (`--follow-up`); absent for a run of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<RunId>,
    pub query: &'a str,
    pub status: Option<RunStatus>,
    pub error: Option<&'a str>,
    pub plan: Option<&'a Plan>,
    pub subtasks: &'a [SubtaskReport],
    pub synthesis: &'a str,
    pub synthesized: bool,
    pub usage: Usage,
    pub elapsed_ms: Option<u64>,
    pub notices: &'a [String],
    /// The budget limit that stopped the run starting subtasks, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_reached: Option<&'a BudgetReason>,
    /// Subtasks that did not run because the budget was reached.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_for_budget: Vec<&'a SubtaskId>,
}

impl RunReport {
    pub fn to_json(&self) -> JsonReport<'_> {
        JsonReport {
            run_id: self.id,
            parent: self.parent,
            query: &self.query,
            status: self.status,
            error: self.error.as_deref(),
            plan: self.plan.as_ref(),
            subtasks: &self.subtasks,
            synthesis: &self.synthesis,
            synthesized: self.synthesized,
            usage: self.usage,
            elapsed_ms: self.elapsed_ms,
            notices: &self.notices,
            budget_reached: self.budget_reached.as_ref(),
            skipped_for_budget: self.skipped_for_budget(),
        }
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
        if self.subtasks.is_empty() {
            return out;
        }
        let _ = writeln!(out, "---\n\n## Subtasks\n");
        let _ = writeln!(
            out,
            "| id | title | role | status | time | tokens in/out | attempts |"
        );
        let _ = writeln!(out, "|---|---|---|---|---:|---:|---:|");
        for s in &self.subtasks {
            let est = if s.usage_estimated { "~" } else { "" };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {est}{}/{est}{} | {} |",
                cell(s.id.as_str()),
                cell(&s.title),
                cell(&s.worker),
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
        let _ = writeln!(
            out,
            "\n_{} of {} subtasks succeeded · {} tokens in, {} out{est} · {}_",
            self.count(SubtaskStatus::Succeeded),
            self.subtasks.len(),
            tokens(usage.tokens_in),
            tokens(usage.tokens_out),
            self.elapsed_ms.map(duration).unwrap_or_else(|| "—".into()),
        );
        out
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
            }],
            synthesis_guidance: String::new(),
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
