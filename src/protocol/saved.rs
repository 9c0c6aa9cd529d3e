//! A run as it was saved, to be restored later (`Command::ResumeRun`, `Run::restore`): the
//! plan, what each subtask had achieved, the last report, and the totals so far.
//!
//! Plain data with a serde shape, so a store can fill it from its tables and a test can write
//! it by hand. It holds facts only: a saved result is never asked for again, and everything
//! without a result is run again. This module must not import anything of the crate but the
//! protocol.

use serde::{Deserialize, Serialize};

use crate::protocol::{Attachments, FollowUp, Plan, Source, SubtaskId, Usage};

/// What a restored run starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedRun {
    pub query: String,
    /// The plan as it last stood, edits included.
    pub plan: Plan,
    /// What is known of the plan's subtasks. A subtask missing here, or saved without a
    /// result (it failed, was cancelled or blocked, or was still running), runs again.
    #[serde(default)]
    pub subtasks: Vec<SavedSubtask>,
    /// Synthesis calls made so far, so a new one is numbered after them.
    #[serde(default)]
    pub synthesis_attempts: u32,
    /// The last report written, if any. It is taken as current when every subtask has a
    /// result, so a store must leave out a report older than a saved result.
    #[serde(default)]
    pub report: Option<SavedReport>,
    /// Tokens spent so far by every call of the run, the planner's included.
    #[serde(default)]
    pub usage: Usage,
    /// How long the run had taken; the restored run's elapsed times go on from there.
    #[serde(default)]
    pub elapsed_ms: u64,
    /// The earlier run this one follows up, as context for what still runs.
    #[serde(default)]
    pub follow_up: Option<FollowUp>,
    /// The files attached to the run, so what still runs sees the same material.
    #[serde(default)]
    pub context: Attachments,
    /// Every source the run's tools read so far (every attempt's, oldest first), with the
    /// number it was given: new sources are numbered after the highest one here, and a
    /// location read before keeps its number. Empty for a run saved before sources were.
    #[serde(default)]
    pub sources: Vec<SavedSource>,
}

/// A source a saved run's tool call read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSource {
    pub subtask: SubtaskId,
    pub attempt: u32,
    pub source: Source,
}

/// One subtask as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSubtask {
    pub id: SubtaskId,
    /// Attempts made so far, so a new attempt is numbered after them.
    #[serde(default)]
    pub attempts: u32,
    /// Its result, if it succeeded.
    #[serde(default)]
    pub result: Option<SavedResult>,
}

/// A subtask's successful answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedResult {
    pub text: String,
    #[serde(default)]
    pub usage: Usage,
    /// How long the successful attempt took.
    #[serde(default)]
    pub elapsed_ms: u64,
    /// The model stopped at the token limit.
    #[serde(default)]
    pub cut_off: bool,
    /// The answer came from the result cache.
    #[serde(default)]
    pub cached: bool,
    /// The validator failed it twice; why. It is kept, flagged.
    #[serde(default)]
    pub flagged: Option<String>,
}

/// The last report, as `SynthesisFinished` carried it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedReport {
    pub text: String,
    /// False when the synthesis call failed and the text is the results joined unsynthesised.
    pub synthesized: bool,
    #[serde(default)]
    pub usage: Usage,
}
