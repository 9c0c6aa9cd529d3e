//! The contract between the engine and whoever watches or steers it (the dashboard, the
//! headless printer, tests): commands in, events out.
//!
//! This module owns only plain data. It must not import anything of the crate but itself (not
//! the engine, the providers or any terminal code), so that every side can depend on it
//! without depending on each other; `tests/layering.rs` checks this.

pub mod plan;
pub mod saved;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use plan::{Complexity, Plan, PlannedSubtask, Priority};
pub use saved::{SavedReport, SavedResult, SavedRun, SavedSource, SavedSubtask};

/// Identifies one run (one query and everything done for it). Time-sortable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub uuid::Uuid);

impl RunId {
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A subtask's id as the plan names it (`task_1`, `emissions`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubtaskId(pub String);

impl SubtaskId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubtaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SubtaskId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// Token counts. `estimated` is true when a provider reported no usage and the figures were
/// derived from text length (about four characters a token).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub tokens_in: u64,
    pub tokens_out: u64,
    #[serde(default)]
    pub estimated: bool,
    /// Of `tokens_in`, those the provider read from its prompt cache (priced lower). 0 when
    /// the provider reported none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_in: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.tokens_in += other.tokens_in;
        self.tokens_out += other.tokens_out;
        self.estimated |= other.estimated;
        self.cached_in += other.cached_in;
    }
    pub fn is_zero(&self) -> bool {
        self.tokens_in == 0 && self.tokens_out == 0
    }
    pub fn total(&self) -> u64 {
        self.tokens_in + self.tokens_out
    }
}

/// Where a subtask stands. Terminal states can be left again by a re-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubtaskStatus {
    /// Waiting for its dependencies or for a free worker slot.
    Pending,
    /// A worker call is in flight.
    Running,
    /// The last attempt failed and another is scheduled.
    Retrying,
    Succeeded,
    Failed,
    /// A dependency failed, was cancelled or is itself blocked; runs if that changes.
    Blocked,
    Cancelled,
    /// The worker answered and a validator call checks the answer; dependents wait for it.
    Validating,
}

impl SubtaskStatus {
    /// No work is in flight or scheduled for it.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Blocked | Self::Cancelled
        )
    }
    pub fn word(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "done",
            Self::Failed => "failed",
            Self::Blocked => "blocked",
            Self::Cancelled => "cancelled",
            Self::Validating => "validating",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every subtask and the synthesis succeeded.
    Succeeded,
    /// A report was written, with gaps: some subtasks failed, were blocked or cancelled, or the
    /// synthesis failed and the worker results were joined unsynthesised.
    Partial,
    /// Nothing worth a report: planning failed or every subtask failed.
    Failed,
    /// The user cancelled the run.
    Cancelled,
}

impl RunStatus {
    pub fn word(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The three kinds of model call a run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallRole {
    Planner,
    Worker,
    Synthesizer,
    /// The quality gate: checks one subtask's result (`RunSettings::validate`).
    Validator,
}

/// Requests into the engine. Each says which events answer it.
// A few commands per run, moved once each: `StartRun`'s size costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start a new run. Answered by `RunStarted`, then planning events (or `PlanReady` at once
    /// when a plan is given), subtask events, synthesis events and `RunFinished`.
    StartRun {
        id: RunId,
        query: String,
        plan: Option<Plan>,
        /// Models for this run instead of the configured ones (the dashboard's picker).
        models: ModelOverrides,
        /// The earlier run this one follows up on, as context for its planner and workers.
        follow_up: Option<Box<FollowUp>>,
        /// Files the person attached (`@path`, `--context`), read by the front end: quoted in
        /// the planner's and workers' prompts, announced by `ContextAttached`.
        context: Attachments,
    },
    /// Go on with a saved run under its old id (see `SavedRun`). Answered by `RunStarted`,
    /// `PlanReady`, `SubtaskSucceeded` for each saved result and `SynthesisFinished` for the
    /// saved report, then as any run for what is left. Refused (`run_open`) when a run with
    /// this id is open.
    ResumeRun { id: RunId, saved: Box<SavedRun> },
    /// Forget a run: cancel it if it is open (answered by `RunFinished(cancelled)`), then drop
    /// its state, so later commands to it are refused (`unknown_run`).
    CloseRun { id: RunId },
    /// Steer a run that exists. Unknown run ids are answered by `CommandRefused(unknown_run)`.
    Run { id: RunId, command: RunCommand },
    /// Cancel everything and stop the engine. Answered by `RunFinished(cancelled)` for every
    /// active run; the event channel closes afterwards.
    Shutdown,
    /// Stop the tool calls a running subtask is waiting on, without failing it: each is
    /// answered `ToolCallFinished` (not ok) and the model is told the user cancelled it. Does
    /// nothing when none is in flight.
    CancelTools { id: RunId, subtask: SubtaskId },
}

/// Models one run uses instead of the engine's configured ones; `None` keeps the configured
/// model. A worker model applies to every worker role, those with a model of their own too:
/// whoever picks the workers' model for a run means all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOverrides {
    pub planner: Option<String>,
    pub worker: Option<String>,
    pub synthesizer: Option<String>,
    /// The preset (team of worker roles) by name, one the engine was given; `None` keeps the
    /// configured preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Pause the run after planning for the plan to be reviewed (`PlanAwaitingReview`), or
    /// not; `None` keeps the configured choice (`[planner] review`, `--review`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<bool>,
}

impl ModelOverrides {
    pub fn is_empty(&self) -> bool {
        self.planner.is_none()
            && self.worker.is_none()
            && self.synthesizer.is_none()
            && self.preset.is_none()
            && self.review.is_none()
    }
}

/// A follow-up run's context: the earlier run's question, its report and its subtasks' results.
/// The engine decides how much of each its prompts quote; a plan subtask may take one of
/// `results` as its own (`PlannedSubtask::reuse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    pub parent: RunId,
    pub query: String,
    /// The earlier run's last report; empty when it has none.
    pub report: String,
    /// Its subtasks that have a result, in plan order.
    pub results: Vec<EarlierResult>,
}

/// One subtask result of the earlier run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlierResult {
    pub id: SubtaskId,
    pub title: String,
    pub text: String,
}

/// The files a person attached to a run (`@path` in the query, `--context`), as the front end
/// read them. The engine quotes `files` to the planner and the workers and announces both
/// lists with `ContextAttached`; it never reads a file itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachments {
    /// In the order they were named (a folder's files sorted by path), each once.
    #[serde(default)]
    pub files: Vec<AttachedFile>,
    /// Files that were found but not attached (binary, not UTF-8, unreadable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedFile>,
    /// The files and folders as named, absolute and with links resolved: where the run's
    /// `read_file` and `list_dir` may read (besides `--allow-dir`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roots: Vec<String>,
}

impl Attachments {
    /// Nothing attached and nothing skipped.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.skipped.is_empty()
    }

    /// Path and size of each attached file, as `ContextAttached` lists them.
    pub fn listed(&self) -> Vec<ContextFile> {
        self.files
            .iter()
            .map(|f| ContextFile {
                path: f.path.clone(),
                bytes: f.text.len() as u64,
            })
            .collect()
    }

    /// Bytes of text attached, over every file.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.text.len() as u64).sum()
    }
}

/// One attached file: its path as the person named it (a folder's files under the folder's
/// name, with `/`), and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedFile {
    pub path: String,
    pub text: String,
}

/// A file that was not attached, and why (`binary`, `not UTF-8 text`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

/// An attached file as events and reports list it: its path and size, not its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextFile {
    pub path: String,
    pub bytes: u64,
}

/// Steering a run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunCommand {
    /// Run a failed, cancelled or blocked-by-nothing subtask again. Answered by
    /// `SubtaskStarted` (or `SubtaskBlocked` when a dependency is still missing), then as
    /// any subtask; blocked dependents follow, then a new synthesis and `RunFinished`.
    /// Refused (`CommandRefused`) for a subtask that is pending, running or retrying.
    RetrySubtask(SubtaskId),
    /// Re-run every failed or cancelled subtask. Answered as `RetrySubtask` for each.
    RetryFailed,
    /// Stop a subtask. Answered by `SubtaskCancelled`; its dependents get `SubtaskBlocked`.
    CancelSubtask(SubtaskId),
    /// Stop the whole run. Answered by `SubtaskCancelled` for unfinished subtasks and
    /// `RunFinished(cancelled)`.
    CancelRun,
    /// Change a subtask's description and/or worker role, then run it again (cancelling an
    /// attempt in flight). Answered by `SubtaskEdited`, then as `RetrySubtask`.
    EditSubtask {
        id: SubtaskId,
        description: Option<String>,
        worker: Option<String>,
    },
    /// Write the synthesis again from the current results. Answered by `SynthesisStarted`…
    /// `SynthesisFinished` and `RunFinished`; refused (`CommandRefused`) while subtasks still run.
    Resynthesize,
    /// Plan a run again whose planning failed (or was cancelled): the planner is asked afresh,
    /// as at the start. Answered by `PlanningStarted`, then as any run. Refused while the run
    /// goes on (`still_planning`, `run_active`) and for a run that has a plan (`plan_exists`).
    Replan,
    /// Raise the run's budget by these amounts (a limit that was not set stays unset) and go
    /// on. Answered by `BudgetRaised`, then subtasks start again (or `BudgetReached` once more
    /// when the new budget is spent too). Refused for a finished run (`run_finished`).
    RaiseBudget {
        tokens: Option<u64>,
        time_ms: Option<u64>,
        /// Millionths of a US dollar added to a cost limit.
        cost_micros: Option<u64>,
    },
    /// Write the report now from what succeeded: subtasks that have not started are skipped
    /// (`SubtasksSkipped`), those running finish, then the synthesis follows as usual.
    /// Refused while planning (`still_planning`) and for a finished run (`run_finished`).
    SynthesizeNow,
    /// Start calls again after the provider was paused (`ProviderPaused`). Answered by
    /// `ProviderResumed`, then as any run; refused when the run is not paused (`not_paused`).
    ResumeProvider,
    /// Go on with a run waiting for its plan to be reviewed (`PlanAwaitingReview`), with this
    /// plan (the one shown, possibly edited). It is checked as a plan file is, and more
    /// strictly (see `engine::plan::review_problems`): a plan with problems is refused
    /// (`plan_invalid`, naming every problem) and the run keeps waiting; a good one is
    /// answered by `PlanReady`, then as any run. Refused for a run not in review
    /// (`not_reviewing`). While a run is in review, only this and `CancelRun` are taken;
    /// anything else is refused (`plan_in_review`).
    ApprovePlan { plan: Plan },
}

impl RunCommand {
    /// The command's name, for `CommandRefused`.
    pub fn name(&self) -> CommandName {
        match self {
            Self::RetrySubtask(_) => CommandName::RetrySubtask,
            Self::RetryFailed => CommandName::RetryFailed,
            Self::CancelSubtask(_) => CommandName::CancelSubtask,
            Self::CancelRun => CommandName::CancelRun,
            Self::EditSubtask { .. } => CommandName::EditSubtask,
            Self::Resynthesize => CommandName::Resynthesize,
            Self::Replan => CommandName::Replan,
            Self::RaiseBudget { .. } => CommandName::RaiseBudget,
            Self::SynthesizeNow => CommandName::SynthesizeNow,
            Self::ResumeProvider => CommandName::ResumeProvider,
            Self::ApprovePlan { .. } => CommandName::ApprovePlan,
        }
    }
}

/// Names of the commands that address a run, as `CommandRefused` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandName {
    RetrySubtask,
    RetryFailed,
    CancelSubtask,
    CancelRun,
    EditSubtask,
    Resynthesize,
    Replan,
    ResumeRun,
    CloseRun,
    RaiseBudget,
    SynthesizeNow,
    ResumeProvider,
    ApprovePlan,
}

/// Why a command changed nothing. Serialised flat into `CommandRefused` with a snake_case
/// `reason` tag; `Display` gives the sentence people read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// No run has this id (never started, closed, or dropped long after it finished).
    UnknownRun { run: RunId },
    /// A resumed run's id is that of a run that is open.
    RunOpen { run: RunId },
    /// The run's plan has no such subtask.
    UnknownSubtask { subtask: SubtaskId },
    /// An edit named a worker role that does not exist; `roles` are those that do.
    UnknownRole { role: String, roles: Vec<String> },
    /// A re-run of a subtask that is pending, running or retrying.
    SubtaskBusy {
        subtask: SubtaskId,
        status: SubtaskStatus,
    },
    /// A re-run of a subtask whose dependencies have no result; those must be re-run first.
    SubtaskBlocked {
        subtask: SubtaskId,
        waiting_on: Vec<SubtaskId>,
    },
    /// A cancel of a subtask that has succeeded, failed or been cancelled.
    SubtaskSettled {
        subtask: SubtaskId,
        status: SubtaskStatus,
    },
    /// `RetryFailed` with no failed or cancelled subtask.
    NothingToRetry,
    /// `CancelRun` of a run that has ended.
    RunFinished,
    /// The run has no plan yet.
    StillPlanning,
    /// A new synthesis while subtasks still run (it follows by itself when they finish).
    SubtasksRunning,
    /// A new synthesis with no subtask result to write it from.
    NoResults,
    /// A new plan for a run that has not ended.
    RunActive,
    /// A new plan for a run that has one; its subtasks can be re-run instead.
    PlanExists,
    /// `ResumeProvider` for a run whose provider is not paused.
    NotPaused,
    /// An approved plan that cannot run; `error` names every problem, `; `-separated.
    PlanInvalid { error: String },
    /// The run waits for its plan to be approved or the run cancelled; nothing else is taken.
    PlanInReview,
    /// `ApprovePlan` for a run that is not waiting for a review.
    NotReviewing,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = |ids: &[SubtaskId]| {
            ids.iter()
                .map(|i| format!("`{i}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Self::UnknownRun { run } => write!(f, "there is no run {run}"),
            Self::RunOpen { run } => write!(f, "run {run} is open already"),
            Self::UnknownSubtask { subtask } => {
                write!(f, "there is no subtask `{subtask}` in this run")
            }
            Self::UnknownRole { role, roles } => write!(
                f,
                "there is no worker role `{role}` (roles: {})",
                roles.join(", ")
            ),
            Self::SubtaskBusy { subtask, status } => {
                write!(f, "`{subtask}` is {} already", status.word())
            }
            Self::SubtaskBlocked {
                subtask,
                waiting_on,
            } => write!(
                f,
                "`{subtask}` is blocked on {}; re-run that first",
                ids(waiting_on)
            ),
            Self::SubtaskSettled { subtask, status } => {
                write!(f, "`{subtask}` is {}; nothing to cancel", status.word())
            }
            Self::NothingToRetry => f.write_str("no failed or cancelled subtask to re-run"),
            Self::RunFinished => f.write_str("the run has already finished"),
            Self::StillPlanning => f.write_str("the run is still being planned"),
            Self::SubtasksRunning => {
                f.write_str("subtasks are still running; the synthesis follows when they finish")
            }
            Self::NoResults => f.write_str("no subtask has a result to synthesise"),
            Self::RunActive => f.write_str("the run is still going"),
            Self::PlanExists => {
                f.write_str("the run has a plan already; re-run its subtasks instead")
            }
            Self::NotPaused => f.write_str("the run's provider is not paused"),
            Self::PlanInvalid { error } => write!(f, "the plan cannot run: {error}"),
            Self::PlanInReview => {
                f.write_str("the plan is waiting for review; approve it or cancel the run")
            }
            Self::NotReviewing => f.write_str("the run is not waiting for a plan review"),
        }
    }
}

/// One thing that happened, in order, for one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub run: RunId,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. Subtask events carry the subtask's id and the attempt they belong to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    RunStarted {
        query: String,
    },
    PlanningStarted {
        attempt: u32,
        model: String,
    },
    /// The planner call failed with `reason`; it is tried again after `delay_ms`.
    PlanningRetrying {
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// Streamed text of the planner's answer, coalesced (for a forced tool call, the tool's
    /// input as it arrives).
    PlanningDelta {
        attempt: u32,
        text: String,
    },
    /// The subtasks whose objects are complete so far in the streamed answer (all of them, in
    /// order, each time one more completes): planned, not yet checked. `PlanReady` replaces
    /// them; `PlanRejected` and a new `PlanningStarted` drop them.
    PlanDrafted {
        attempt: u32,
        subtasks: Vec<PlannedSubtask>,
    },
    /// The planner's answer was unusable; it is asked again (or the run fails). `answer` is
    /// what the planner said, sanitised and cut to a few KB.
    PlanRejected {
        attempt: u32,
        error: String,
        #[serde(default)]
        answer: String,
    },
    PlanReady {
        plan: Plan,
    },
    /// Something worth telling the user that changes nothing by itself (an unknown worker role
    /// replaced by the default, a plan cut to `max_subtasks`).
    Notice {
        message: String,
    },
    /// A command changed nothing, and why. The refusal's `Display` is the sentence to show.
    CommandRefused {
        command: CommandName,
        #[serde(flatten)]
        refusal: Refusal,
    },
    /// The subtask is waiting again (re-run requested, or a dependency it was blocked on is
    /// being re-run). `waiting_on` lists unfinished dependencies; empty means "for a free slot".
    SubtaskQueued {
        subtask: SubtaskId,
        waiting_on: Vec<SubtaskId>,
    },
    SubtaskStarted {
        subtask: SubtaskId,
        attempt: u32,
        worker: String,
        model: String,
    },
    /// Streamed text of one attempt, coalesced (not one event per token).
    SubtaskDelta {
        subtask: SubtaskId,
        attempt: u32,
        text: String,
    },
    /// Reasoning streamed by one attempt (a `<think>` block, `reasoning_content`, Anthropic
    /// thinking), coalesced. An event of its own rather than a kind of `SubtaskDelta`, so a
    /// consumer that does not know it cannot take reasoning for the answer.
    SubtaskReasoning {
        subtask: SubtaskId,
        attempt: u32,
        text: String,
    },
    /// `attempt` failed with `reason`; attempt `attempt + 1` starts after `delay_ms`.
    SubtaskRetrying {
        subtask: SubtaskId,
        attempt: u32,
        delay_ms: u64,
        reason: String,
        /// The failed attempt's error, in full.
        error: String,
    },
    SubtaskSucceeded {
        subtask: SubtaskId,
        attempt: u32,
        elapsed_ms: u64,
        usage: Usage,
        result: String,
        /// The model stopped at the token limit: the result may be incomplete.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cut_off: bool,
        /// The result was saved from an earlier identical call (the result cache): no model
        /// was asked and `usage` is zero.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cached: bool,
    },
    SubtaskFailed {
        subtask: SubtaskId,
        attempt: u32,
        elapsed_ms: u64,
        error: String,
        /// Text the attempt streamed before it failed; kept, never merged into a later attempt.
        partial: String,
    },
    SubtaskBlocked {
        subtask: SubtaskId,
        waiting_on: Vec<SubtaskId>,
    },
    SubtaskCancelled {
        subtask: SubtaskId,
        attempt: u32,
    },
    SubtaskEdited {
        subtask: SubtaskId,
        description: String,
        worker: String,
    },
    SynthesisStarted {
        attempt: u32,
        model: String,
    },
    SynthesisDelta {
        attempt: u32,
        text: String,
    },
    SynthesisRetrying {
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// The synthesis in flight was dropped (a subtask is being re-run, or the run was
    /// cancelled); its partial text is void and the last finished report stands, stale.
    SynthesisCancelled {
        attempt: u32,
    },
    /// The report. `synthesized` is false when the synthesis call failed and `text` is the
    /// worker results joined under their titles.
    SynthesisFinished {
        attempt: u32,
        text: String,
        synthesized: bool,
        usage: Usage,
        error: Option<String>,
    },
    RunFinished {
        status: RunStatus,
        elapsed_ms: u64,
        usage: Usage,
        succeeded: u32,
        /// Subtasks without a result: failed, blocked or cancelled.
        failed: u32,
        total: u32,
        /// Why the run failed or was cut short, for `Failed` (and `Partial` when the synthesis
        /// failed).
        error: Option<String>,
    },
    /// The plan is one subtask for a straightforward query: its answer is the report, with
    /// no synthesis (`SynthesisFinished` carries it when it succeeds, with no
    /// `SynthesisStarted` before). Follows `PlanReady`.
    DirectAnswer {
        subtask: SubtaskId,
    },
    /// `attempt` answered and a validator call (`model`) checks the answer before the subtask
    /// counts as done; its dependents wait. `SubtaskValidated` follows (or a notice when the
    /// validator call fails, and the subtask succeeds unchecked).
    SubtaskValidating {
        subtask: SubtaskId,
        attempt: u32,
        model: String,
    },
    /// The validator's verdict on `attempt`, and why. A first FAIL runs the subtask again
    /// with the reason; a FAIL of that re-run keeps the result, `flagged` with the reason.
    /// `SubtaskSucceeded` follows a PASS and a flagged FAIL. `usage` is the validator call's.
    SubtaskValidated {
        subtask: SubtaskId,
        attempt: u32,
        passed: bool,
        reason: String,
        usage: Usage,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        flagged: bool,
    },
    /// The files attached to the run, which its planner and workers see, and those found but
    /// left out. Right after `RunStarted`, when anything was attached (a resumed run says it
    /// again).
    ContextAttached {
        files: Vec<ContextFile>,
        #[serde(default)]
        skipped: Vec<SkippedFile>,
    },
    /// A worker's model asked for a tool; `arguments` is a short, sanitised rendering of what
    /// it passed. `call_id` is the model's id of the call, unique within the attempt.
    ToolCallStarted {
        subtask: SubtaskId,
        attempt: u32,
        call_id: String,
        tool: String,
        arguments: String,
    },
    /// The tool call ended: `ok` false for an error result (which the model sees too, so
    /// the subtask goes on), `bytes` of content handed back, `summary` one sanitised line
    /// about the outcome, `source` what was read, when something was.
    ToolCallFinished {
        subtask: SubtaskId,
        attempt: u32,
        call_id: String,
        ok: bool,
        bytes: u64,
        ms: u64,
        summary: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<Source>,
        /// The content handed back to the model (already bounded by the tool's own limit),
        /// raw: sanitise it before it reaches a terminal. What a source's reader is shown.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
    },
    /// What one model call spent and on which model, once it ended: every planner call and
    /// every worker and synthesis attempt that spent tokens, failed ones included (they are
    /// paid for). A call cut off by a cancel is not known to have spent anything; an answer
    /// from the result cache spent nothing. For pricing: the tokens are also in the usual
    /// totals (`SubtaskSucceeded`, `SynthesisFinished`, `RunFinished`).
    CallUsage {
        role: CallRole,
        /// The subtask, for worker calls.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subtask: Option<SubtaskId>,
        attempt: u32,
        model: String,
        usage: Usage,
        /// The call gave no result: it failed, was retried, returned no text, or its plan was
        /// rejected.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        failed: bool,
    },
    /// A limit of the run's budget was reached: no subtask starts until the budget is raised
    /// (`RaiseBudget`) or the report is written from what succeeded (`SynthesizeNow`).
    /// Subtasks already running finish. `waiting` are those that have not started.
    BudgetReached {
        reason: BudgetReason,
        waiting: Vec<SubtaskId>,
    },
    /// The budget was raised; these are its new limits (`None`: no such limit).
    BudgetRaised {
        max_tokens: Option<u64>,
        deadline_ms: Option<u64>,
        /// The cost limit now, in millionths of a US dollar.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_cost_micros: Option<u64>,
    },
    /// These subtasks will not run (they were waiting when the report was asked for);
    /// `reason` says why, as the report and the synthesis prompt name it.
    SubtasksSkipped {
        subtasks: Vec<SubtaskId>,
        reason: String,
    },
    /// The provider keeps failing the same way (its key is refused, or it stays rate-limited
    /// after retries): no call starts on it until `ResumeProvider`. `message` is one line.
    ProviderPaused {
        message: String,
    },
    /// Calls start again after `ProviderPaused`.
    ProviderResumed,
    /// The attempt's call waits `delay_ms` before it goes out, for a reason shared by every
    /// caller of the provider (`provider rate-limited`: a `Retry-After` it sent); no attempt
    /// is spent meanwhile.
    SubtaskWaiting {
        subtask: SubtaskId,
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// The run is paused after planning (the plan parsed and checked, reuse checked) for the
    /// plan to be reviewed: no subtask has started. `RunCommand::ApprovePlan` (with the plan,
    /// possibly edited) goes on with `PlanReady`; `CancelRun` ends the run.
    PlanAwaitingReview {
        plan: Plan,
    },
}

/// Which limit of a run's budget was reached, with the figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "limit", rename_all = "snake_case")]
pub enum BudgetReason {
    /// The run's tokens (in and out, every call) reached `max`.
    Tokens { spent: u64, max: u64 },
    /// The run's time reached its deadline.
    Deadline { elapsed_ms: u64, deadline_ms: u64 },
    /// What the run's calls cost (an estimate, by the price table) reached `max_micros`;
    /// both in millionths of a US dollar.
    Cost { spent_micros: u64, max_micros: u64 },
}

impl fmt::Display for BudgetReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tokens { spent, max } => {
                write!(f, "token budget reached: {spent} of {max} tokens used")
            }
            Self::Cost {
                spent_micros,
                max_micros,
            } => write!(
                f,
                "cost budget reached: ≈${:.4} of ${:.4} spent (estimate)",
                *spent_micros as f64 / 1e6,
                *max_micros as f64 / 1e6
            ),
            Self::Deadline { deadline_ms, .. } => {
                let secs = deadline_ms / 1000;
                if secs >= 60 && secs.is_multiple_of(60) {
                    write!(f, "deadline reached: {}m", secs / 60)
                } else {
                    write!(f, "deadline reached: {secs}s")
                }
            }
        }
    }
}

/// `BudgetRaised` in the words people read: `budget raised: 150000 tokens, deadline 10m`.
pub fn budget_raised_words(
    max_tokens: Option<u64>,
    deadline_ms: Option<u64>,
    max_cost_micros: Option<u64>,
) -> String {
    let mut limits = Vec::new();
    if let Some(tokens) = max_tokens {
        limits.push(format!("{tokens} tokens"));
    }
    if let Some(micros) = max_cost_micros {
        limits.push(format!("${:.4}", micros as f64 / 1e6));
    }
    if let Some(ms) = deadline_ms {
        let secs = ms / 1000;
        if secs >= 60 && secs.is_multiple_of(60) {
            limits.push(format!("deadline {}m", secs / 60));
        } else {
            limits.push(format!("deadline {secs}s"));
        }
    }
    if limits.is_empty() {
        "budget raised: no limit".to_owned()
    } else {
        format!("budget raised: {}", limits.join(", "))
    }
}

/// Why subtasks were skipped for the budget, in the words reports and prompts use.
pub const SKIPPED_FOR_BUDGET: &str = "skipped: the run's budget was reached";

impl EventKind {
    /// The subtask this event is about, if any.
    pub fn subtask(&self) -> Option<&SubtaskId> {
        match self {
            Self::SubtaskQueued { subtask, .. }
            | Self::SubtaskStarted { subtask, .. }
            | Self::SubtaskDelta { subtask, .. }
            | Self::SubtaskReasoning { subtask, .. }
            | Self::SubtaskRetrying { subtask, .. }
            | Self::SubtaskSucceeded { subtask, .. }
            | Self::SubtaskFailed { subtask, .. }
            | Self::SubtaskBlocked { subtask, .. }
            | Self::SubtaskCancelled { subtask, .. }
            | Self::SubtaskEdited { subtask, .. }
            | Self::DirectAnswer { subtask }
            | Self::SubtaskValidating { subtask, .. }
            | Self::SubtaskValidated { subtask, .. }
            | Self::ToolCallStarted { subtask, .. }
            | Self::ToolCallFinished { subtask, .. }
            | Self::SubtaskWaiting { subtask, .. } => Some(subtask),
            Self::CallUsage { subtask, .. } => subtask.as_ref(),
            Self::RunStarted { .. }
            | Self::PlanningStarted { .. }
            | Self::PlanningRetrying { .. }
            | Self::PlanningDelta { .. }
            | Self::PlanDrafted { .. }
            | Self::PlanRejected { .. }
            | Self::PlanReady { .. }
            | Self::Notice { .. }
            | Self::CommandRefused { .. }
            | Self::SynthesisStarted { .. }
            | Self::SynthesisDelta { .. }
            | Self::SynthesisRetrying { .. }
            | Self::SynthesisCancelled { .. }
            | Self::SynthesisFinished { .. }
            | Self::RunFinished { .. }
            | Self::ContextAttached { .. }
            | Self::BudgetReached { .. }
            | Self::BudgetRaised { .. }
            | Self::SubtasksSkipped { .. }
            | Self::ProviderPaused { .. }
            | Self::ProviderResumed
            | Self::PlanAwaitingReview { .. } => None,
        }
    }
}

/// Where a tool's content came from: a page fetched or a file read. Protocol data because
/// `ToolCallFinished` carries it; the reports list each subtask's sources from these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The source's number in the run, from 1, as workers cite it (`[n]`) and the report's
    /// Sources list numbers it; the same location read twice keeps one number. 0: not
    /// numbered (a source recorded before numbering).
    #[serde(default, skip_serializing_if = "is_unnumbered")]
    pub number: u32,
    pub kind: SourceKind,
    /// The URL fetched (after redirects) or the file's path as the model named it.
    pub location: String,
    /// How many bytes were read.
    pub bytes: u64,
    /// The HTTP status of a fetch; `None` for files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// When it was read, milliseconds since the Unix epoch.
    pub retrieved_ms: u64,
}

/// What kind of thing a [`Source`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Url,
    File,
}

fn is_unnumbered(n: &u32) -> bool {
    *n == 0
}
