//! What maestro learns from its saved runs: per role and per model, how many calls and
//! subtasks, how often they succeed, how long they take (median, 90th percentile), tokens and
//! estimated cost; per provider, errors by class. `maestro stats` prints it, the dashboard's
//! statistics panel shows it, and [`estimate`] gives a plan review the typical tokens and time
//! of a (role, model), from which [`plan_estimate`] says what a plan under review will likely
//! spend.
//!
//! The figures are computed from `store::CallRecord`s by pure functions; only `command` and
//! `load` read the database, and never create it (a missing one is an error). Must not import
//! a front end.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

use serde::Serialize;

use crate::cli::StatsArgs;
use crate::config::StoreConfig;
use crate::display::{duration, now_ms, tokens, truncate};
use crate::engine::cost::{PriceTable, Spend};
use crate::history::{Failure, FailureKind, open_store};
use crate::protocol::{CallRole, Plan, SubtaskId, Usage};
use crate::store::{AttemptOutcome, CallRecord};

/// Everything `maestro stats` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Calls that started at or after this time (ms since the epoch); `None` for all.
    pub since_ms: Option<u64>,
    /// Runs with at least one call in the window.
    pub runs: usize,
    pub calls: usize,
    /// By role: `planner`, `synthesizer`, and each worker role by name.
    pub roles: Vec<GroupStats>,
    /// By model.
    pub models: Vec<GroupStats>,
    /// By provider, the failed calls by class of error.
    pub providers: Vec<ProviderErrors>,
    /// Dollars of the calls whose model has a price (an estimate); `None` when none has one.
    pub cost_usd: Option<f64>,
}

/// The figures of one role or one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    pub name: String,
    /// Model calls, retries and re-runs included.
    pub calls: usize,
    /// Distinct subtasks (worker calls) or runs (planner and synthesis calls).
    pub subtasks: usize,
    pub succeeded: usize,
    /// Succeeded calls among those that ended (0–1); `None` when none has ended.
    pub success_rate: Option<f64>,
    /// Time of the calls that succeeded.
    pub median_ms: Option<u64>,
    pub p90_ms: Option<u64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Median tokens of the calls that succeeded.
    pub median_tokens_in: Option<u64>,
    pub median_tokens_out: Option<u64>,
    /// Estimated dollars, failed calls included; `None` when no call's model has a price.
    pub cost_usd: Option<f64>,
    /// Tokens of calls whose model has no price (not in `cost_usd`).
    pub unpriced_tokens: u64,
}

/// One provider's failed calls, by class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderErrors {
    pub provider: String,
    pub calls: usize,
    pub failed: usize,
    /// Class (`429`, `5xx`, `timeout`, `stream cut`, …) → count, most frequent first.
    pub errors: Vec<(String, usize)>,
}

/// The typical tokens and time of a call of one role on one model, from saved runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Successful calls it is made from.
    pub samples: usize,
    pub median_tokens_in: u64,
    pub median_tokens_out: u64,
    pub median_ms: u64,
}

/// The name a call's role is grouped under: its worker role, or `planner` / `synthesizer`.
fn role_name(call: &CallRecord) -> String {
    match call.role {
        CallRole::Worker => call.worker.clone().unwrap_or_else(|| "worker".to_owned()),
        CallRole::Planner => "planner".to_owned(),
        CallRole::Synthesizer => "synthesizer".to_owned(),
        CallRole::Validator => "validator".to_owned(),
    }
}

fn ended(outcome: AttemptOutcome) -> bool {
    match outcome {
        AttemptOutcome::Running | AttemptOutcome::Interrupted | AttemptOutcome::Cancelled => false,
        AttemptOutcome::Succeeded
        | AttemptOutcome::Retried
        | AttemptOutcome::Rejected
        | AttemptOutcome::Failed => true,
    }
}

fn failed(outcome: AttemptOutcome) -> bool {
    matches!(
        outcome,
        AttemptOutcome::Retried | AttemptOutcome::Rejected | AttemptOutcome::Failed
    )
}

/// The value at percentile `p` (0–100) of `values`, nearest rank; `None` when empty.
pub fn percentile(values: &mut [u64], p: u32) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (u64::from(p.min(100)) * values.len() as u64)
        .div_ceil(100)
        .max(1);
    values.get(rank as usize - 1).copied()
}

/// The class of a saved error message: the HTTP status (`429`, `5xx` grouped as `5xx` but
/// `529`), `timeout`, `idle timeout`, `stream cut`, `no text`, `context length`, `plan`
/// (a rejected plan), or `other`.
pub fn error_class(call: &CallRecord) -> String {
    if call.outcome == AttemptOutcome::Rejected {
        return "plan rejected".to_owned();
    }
    let message = call.error.as_deref().unwrap_or("").to_lowercase();
    if let Some(rest) = message.strip_prefix("http ") {
        let status: String = rest.chars().take_while(char::is_ascii_digit).collect();
        return match status.as_str() {
            "529" | "429" => status,
            s if s.starts_with('5') => "5xx".to_owned(),
            s if !s.is_empty() => s.to_owned(),
            _ => "other".to_owned(),
        };
    }
    let class = if message.contains("went silent") {
        "idle timeout"
    } else if message.contains("no complete answer within") || message.contains("timed out") {
        "timeout"
    } else if message.contains("no text") {
        "no text"
    } else if message.contains("context") && message.contains("long") {
        "context length"
    } else if message.contains("stream") || message.contains("connection") {
        "stream cut"
    } else {
        "other"
    };
    class.to_owned()
}

#[derive(Default)]
struct Acc {
    calls: usize,
    subtasks: BTreeSet<(String, String)>,
    succeeded: usize,
    ended: usize,
    times: Vec<u64>,
    ins: Vec<u64>,
    outs: Vec<u64>,
    tokens_in: u64,
    tokens_out: u64,
    spend: Spend,
}

impl Acc {
    fn add(&mut self, call: &CallRecord, prices: &PriceTable) {
        self.calls += 1;
        let unit = match call.role {
            CallRole::Worker => call
                .subtask
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            CallRole::Planner | CallRole::Synthesizer | CallRole::Validator => String::new(),
        };
        self.subtasks.insert((call.run.to_string(), unit));
        if ended(call.outcome) {
            self.ended += 1;
        }
        let usage = call.usage.unwrap_or_default();
        if call.outcome == AttemptOutcome::Succeeded {
            self.succeeded += 1;
            if let Some(ms) = call.elapsed_ms {
                self.times.push(ms);
            }
            if call.usage.is_some() {
                self.ins.push(usage.tokens_in);
                self.outs.push(usage.tokens_out);
            }
        }
        self.tokens_in += usage.tokens_in;
        self.tokens_out += usage.tokens_out;
        if !usage.is_zero() {
            self.spend
                .add(prices, call.model.as_deref().unwrap_or(""), &usage);
        }
    }

    fn finish(mut self, name: String) -> GroupStats {
        GroupStats {
            name,
            calls: self.calls,
            subtasks: self.subtasks.len(),
            succeeded: self.succeeded,
            success_rate: (self.ended > 0).then(|| self.succeeded as f64 / self.ended as f64),
            median_ms: percentile(&mut self.times, 50),
            p90_ms: percentile(&mut self.times, 90),
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            median_tokens_in: percentile(&mut self.ins, 50),
            median_tokens_out: percentile(&mut self.outs, 50),
            cost_usd: self.spend.usd(),
            unpriced_tokens: self.spend.unpriced_tokens,
        }
    }
}

/// The statistics of `calls` (already limited to the window starting at `since_ms`).
pub fn compute(calls: &[CallRecord], prices: &PriceTable, since_ms: Option<u64>) -> Stats {
    let mut roles: BTreeMap<String, Acc> = BTreeMap::new();
    let mut models: BTreeMap<String, Acc> = BTreeMap::new();
    let mut providers: BTreeMap<String, (usize, usize, BTreeMap<String, usize>)> = BTreeMap::new();
    let mut runs = BTreeSet::new();
    let mut total = Spend::default();
    for call in calls {
        runs.insert(call.run);
        roles.entry(role_name(call)).or_default().add(call, prices);
        models
            .entry(call.model.clone().unwrap_or_else(|| "(unknown)".to_owned()))
            .or_default()
            .add(call, prices);
        let usage = call.usage.unwrap_or_default();
        if !usage.is_zero() {
            total.add(prices, call.model.as_deref().unwrap_or(""), &usage);
        }
        let provider = providers
            .entry(if call.provider.is_empty() {
                "(unknown)".to_owned()
            } else {
                call.provider.clone()
            })
            .or_default();
        provider.0 += 1;
        if failed(call.outcome) {
            provider.1 += 1;
            *provider.2.entry(error_class(call)).or_default() += 1;
        }
    }
    Stats {
        since_ms,
        runs: runs.len(),
        calls: calls.len(),
        roles: roles.into_iter().map(|(k, a)| a.finish(k)).collect(),
        models: models.into_iter().map(|(k, a)| a.finish(k)).collect(),
        providers: providers
            .into_iter()
            .map(|(provider, (calls, failed, classes))| {
                let mut errors: Vec<(String, usize)> = classes.into_iter().collect();
                errors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                ProviderErrors {
                    provider,
                    calls,
                    failed,
                    errors,
                }
            })
            .collect(),
        cost_usd: total.usd(),
    }
}

/// The typical tokens and time of a successful call of `role` (a worker role's name, or
/// `planner` / `synthesizer`) on `model`, from `calls`; `None` without any such call. For a
/// plan review that wants to say what a plan will likely spend.
pub fn estimate(calls: &[CallRecord], role: &str, model: &str) -> Option<Estimate> {
    let mut ins = Vec::new();
    let mut outs = Vec::new();
    let mut times = Vec::new();
    for call in calls.iter().filter(|c| {
        c.outcome == AttemptOutcome::Succeeded
            && c.model.as_deref() == Some(model)
            && role_name(c) == role
    }) {
        if let Some(usage) = call.usage {
            ins.push(usage.tokens_in);
            outs.push(usage.tokens_out);
        }
        if let Some(ms) = call.elapsed_ms {
            times.push(ms);
        }
    }
    let samples = ins.len().max(times.len());
    if samples == 0 {
        return None;
    }
    Some(Estimate {
        samples,
        median_tokens_in: percentile(&mut ins, 50).unwrap_or(0),
        median_tokens_out: percentile(&mut outs, 50).unwrap_or(0),
        median_ms: percentile(&mut times, 50).unwrap_or(0),
    })
}

// ---- a plan's estimate ----------------------------------------------------------------------

/// The rule of thumb used for a call whose role and model have no history (no successful
/// saved call of that worker role on that model):
///
/// - worker: its prompt's characters / 4 (title, description and focus areas) + 1 200 tokens
///   in (the instructions and the query), plus what its dependencies are estimated to write
///   (their results are quoted); 700 tokens out; 25 s;
/// - validator: the answer it checks + 600 tokens in, 150 out, 8 s;
/// - synthesis: what the workers are estimated to write + 1 000 tokens in, 1 200 out, 30 s.
///
/// A subtask that reuses an earlier run's result makes no call. The README states the same.
pub mod rule_of_thumb {
    pub const WORKER_BASE_IN: u64 = 1_200;
    pub const WORKER_OUT: u64 = 700;
    pub const WORKER_MS: u64 = 25_000;
    pub const VALIDATOR_BASE_IN: u64 = 600;
    pub const VALIDATOR_OUT: u64 = 150;
    pub const VALIDATOR_MS: u64 = 8_000;
    pub const SYNTHESIS_BASE_IN: u64 = 1_000;
    pub const SYNTHESIS_OUT: u64 = 1_200;
    pub const SYNTHESIS_MS: u64 = 30_000;
    /// Characters a token, for prompt text.
    pub const CHARS_PER_TOKEN: u64 = 4;
}

/// What [`plan_estimate`] needs besides the plan and the history.
#[derive(Debug, Clone)]
pub struct EstimateInputs<'a> {
    /// The model of each subtask's worker calls, in plan order (its own `model`, else its
    /// role's, else the run's worker model, after the run's overrides). A subtask without an
    /// entry is taken to use the last one given.
    pub worker_models: Vec<String>,
    /// The synthesiser's model.
    pub synthesis_model: String,
    /// The validator's model when validation is on; `None` when it is off.
    pub validator_model: Option<String>,
    /// A straightforward one-subtask plan is answered without a synthesis (`RunSettings::direct`).
    pub direct: bool,
    pub prices: &'a PriceTable,
    /// Worker calls in flight at once.
    pub concurrency: usize,
}

impl<'a> EstimateInputs<'a> {
    /// The inputs of a run with `settings` (after its overrides) for `plan`.
    pub fn for_run(
        settings: &crate::engine::run::RunSettings,
        plan: &Plan,
        prices: &'a PriceTable,
    ) -> Self {
        Self {
            worker_models: plan
                .subtasks
                .iter()
                .map(|s| settings.subtask_model(s))
                .collect(),
            synthesis_model: settings.synthesizer.model.clone(),
            validator_model: settings.validate.then(|| settings.validator.model.clone()),
            direct: settings.direct,
            prices,
            concurrency: settings.concurrency,
        }
    }
}

/// Where an estimated figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Basis {
    /// The median of this many successful saved calls of the same role on the same model.
    History { samples: usize },
    /// [`rule_of_thumb`].
    RuleOfThumb,
    /// The subtask takes an earlier run's result: no call.
    Reused,
}

/// The estimate of one call (or of the calls of one subtask).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallEstimate {
    pub model: String,
    pub calls: u32,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Dollars by the price table; `None` when the model has no price.
    pub cost_usd: Option<f64>,
    pub ms: u64,
    pub basis: Basis,
}

/// One subtask's estimate: its worker call and, with validation on, the validator's (whose
/// figures are included in the subtask's).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubtaskEstimate {
    pub id: SubtaskId,
    /// The worker call(s) and validator call together.
    pub total: CallEstimate,
    /// The validator's part, when validation is on and a call is made.
    pub validation: Option<CallEstimate>,
}

/// What a plan will likely spend before it runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanEstimate {
    pub subtasks: Vec<SubtaskEstimate>,
    /// `None` for a plan answered directly (no synthesis call).
    pub synthesis: Option<CallEstimate>,
    /// Worker, validator and synthesis calls.
    pub calls: u32,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// `None` when any call's model has no price (see `unpriced_models`).
    pub cost_usd: Option<f64>,
    /// Models without a price, each once, sorted.
    pub unpriced_models: Vec<String>,
    /// Wall time: the dependencies' critical path, with at most `concurrency` workers at once
    /// (a list schedule in plan order), then the synthesis.
    pub ms: u64,
    /// Subtasks whose worker figures come from history, of those that make a call.
    pub from_history: usize,
    pub with_calls: usize,
    /// The synthesis figures come from history.
    pub synthesis_from_history: bool,
}

impl PlanEstimate {
    /// One line: `≈ 9 calls · ~14.0k tokens · ≈$0.04 · ~1m20s (history: 6 of 8 subtasks)`;
    /// the cost reads `cost unknown (no price: m)` when a model has no price.
    pub fn line(&self) -> String {
        let cost = match self.cost_usd {
            Some(usd) => crate::engine::cost::show_usd(usd),
            None => format!(
                "cost unknown (no price: {})",
                self.unpriced_models.join(", ")
            ),
        };
        let basis = if self.with_calls == 0 {
            "no calls".to_owned()
        } else if self.from_history == 0 {
            "rule of thumb".to_owned()
        } else {
            format!(
                "history: {} of {} subtasks",
                self.from_history, self.with_calls
            )
        };
        format!(
            "≈ {} calls · ~{} tokens · {cost} · ~{} ({basis})",
            self.calls,
            tokens(self.tokens_in + self.tokens_out),
            duration(self.ms)
        )
    }
}

fn call_estimate(
    model: &str,
    history: Option<Estimate>,
    rule: (u64, u64, u64),
    prices: &PriceTable,
) -> CallEstimate {
    let (tokens_in, tokens_out, ms, basis) = match history {
        Some(e) => (
            e.median_tokens_in,
            e.median_tokens_out,
            e.median_ms,
            Basis::History { samples: e.samples },
        ),
        None => (rule.0, rule.1, rule.2, Basis::RuleOfThumb),
    };
    let usage = Usage {
        tokens_in,
        tokens_out,
        estimated: true,
        cached_in: 0,
    };
    CallEstimate {
        model: model.to_owned(),
        calls: 1,
        tokens_in,
        tokens_out,
        cost_usd: prices.cost(model, &usage),
        ms,
        basis,
    }
}

/// What `plan` will likely spend: per subtask from the history of its (role, model) in
/// `calls` when there is any ([`estimate`]), otherwise from the [`rule_of_thumb`]; each
/// figure says which. Pure.
pub fn plan_estimate(plan: &Plan, calls: &[CallRecord], inputs: &EstimateInputs) -> PlanEstimate {
    use rule_of_thumb as r;
    let prices = inputs.prices;
    let index: HashMap<&str, usize> = plan
        .subtasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut subtasks: Vec<SubtaskEstimate> = Vec::with_capacity(plan.subtasks.len());
    let mut unpriced = BTreeSet::new();
    for (i, task) in plan.subtasks.iter().enumerate() {
        let model = inputs
            .worker_models
            .get(i)
            .or(inputs.worker_models.last())
            .cloned()
            .unwrap_or_default();
        if task.reuse.is_some() {
            subtasks.push(SubtaskEstimate {
                id: task.id.clone(),
                total: CallEstimate {
                    model,
                    calls: 0,
                    tokens_in: 0,
                    tokens_out: 0,
                    cost_usd: Some(0.0),
                    ms: 0,
                    basis: Basis::Reused,
                },
                validation: None,
            });
            continue;
        }
        let prompt_chars = task.title.chars().count()
            + task.description.chars().count()
            + task
                .focus_areas
                .iter()
                .map(|f| f.chars().count())
                .sum::<usize>();
        // Dependencies come earlier in any plan worth estimating; a later one counts as not
        // yet estimated.
        let quoted: u64 = task
            .depends_on
            .iter()
            .filter_map(|d| index.get(d.as_str()))
            .filter_map(|&j| subtasks.get(j))
            .map(|d| d.total.tokens_out - d.validation.as_ref().map_or(0, |v| v.tokens_out))
            .sum();
        let rule_in = prompt_chars as u64 / r::CHARS_PER_TOKEN + r::WORKER_BASE_IN + quoted;
        let worker = call_estimate(
            &model,
            estimate(calls, &task.worker, &model),
            (rule_in, r::WORKER_OUT, r::WORKER_MS),
            prices,
        );
        if worker.cost_usd.is_none() {
            unpriced.insert(model.clone());
        }
        let validation = inputs.validator_model.as_ref().map(|v| {
            let call = call_estimate(
                v,
                estimate(calls, "validator", v),
                (
                    worker.tokens_out + r::VALIDATOR_BASE_IN,
                    r::VALIDATOR_OUT,
                    r::VALIDATOR_MS,
                ),
                prices,
            );
            if call.cost_usd.is_none() {
                unpriced.insert(v.clone());
            }
            call
        });
        let mut total = worker;
        if let Some(v) = &validation {
            total.calls += v.calls;
            total.tokens_in += v.tokens_in;
            total.tokens_out += v.tokens_out;
            total.ms += v.ms;
            total.cost_usd = total.cost_usd.zip(v.cost_usd).map(|(a, b)| a + b);
        }
        subtasks.push(SubtaskEstimate {
            id: task.id.clone(),
            total,
            validation,
        });
    }

    let direct = inputs.direct
        && plan.subtasks.len() == 1
        && plan.complexity == Some(crate::protocol::Complexity::Straightforward);
    let synthesis = (!direct).then(|| {
        let written: u64 = subtasks
            .iter()
            .map(|s| s.total.tokens_out - s.validation.as_ref().map_or(0, |v| v.tokens_out))
            .sum();
        let call = call_estimate(
            &inputs.synthesis_model,
            estimate(calls, "synthesizer", &inputs.synthesis_model),
            (
                written + r::SYNTHESIS_BASE_IN,
                r::SYNTHESIS_OUT,
                r::SYNTHESIS_MS,
            ),
            prices,
        );
        if call.cost_usd.is_none() {
            unpriced.insert(inputs.synthesis_model.clone());
        }
        call
    });

    let all = subtasks.iter().map(|s| &s.total).chain(synthesis.as_ref());
    let (mut calls_n, mut tokens_in, mut tokens_out, mut cost) = (0, 0, 0, Some(0.0));
    for c in all {
        calls_n += c.calls;
        tokens_in += c.tokens_in;
        tokens_out += c.tokens_out;
        cost = cost.zip(c.cost_usd).map(|(a, b)| a + b);
    }
    let durations: Vec<u64> = subtasks.iter().map(|s| s.total.ms).collect();
    let ms =
        schedule(plan, &durations, inputs.concurrency) + synthesis.as_ref().map_or(0, |s| s.ms);
    let with_calls = subtasks.iter().filter(|s| s.total.calls > 0).count();
    let from_history = subtasks
        .iter()
        .filter(|s| s.total.calls > 0 && matches!(s.total.basis, Basis::History { .. }))
        .count();
    PlanEstimate {
        synthesis_from_history: synthesis
            .as_ref()
            .is_some_and(|s| matches!(s.basis, Basis::History { .. })),
        subtasks,
        synthesis,
        calls: calls_n,
        tokens_in,
        tokens_out,
        cost_usd: cost,
        unpriced_models: unpriced.into_iter().collect(),
        ms,
        from_history,
        with_calls,
    }
}

/// When the last subtask ends if each takes `durations[i]`, starts once its dependencies
/// have ended, and at most `concurrency` run at once; ready subtasks start by priority,
/// then in plan order, as the run starts them. Unknown dependencies and cycles are ignored
/// (a plan with them does not run anyway).
fn schedule(plan: &Plan, durations: &[u64], concurrency: usize) -> u64 {
    let n = plan.subtasks.len();
    let index: HashMap<&str, usize> = plan
        .subtasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = plan
        .subtasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    let slots = concurrency.max(1);
    let mut end: Vec<Option<u64>> = vec![None; n];
    // (end time, subtask) of those running.
    let mut running: Vec<(u64, usize)> = Vec::new();
    let mut started = vec![false; n];
    let mut now = 0;
    loop {
        let mut ready: Vec<usize> = (0..n)
            .filter(|&i| !started[i] && deps[i].iter().all(|&j| end[j].is_some_and(|e| e <= now)))
            .collect();
        ready.sort_by_key(|&i| plan.subtasks[i].priority);
        for i in ready {
            if running.len() >= slots {
                break;
            }
            started[i] = true;
            running.push((now + durations.get(i).copied().unwrap_or(0), i));
        }
        // The next end moves time on; with nothing running, what is left cannot start.
        let Some(pos) = (0..running.len()).min_by_key(|&k| running[k].0) else {
            break;
        };
        let (t, i) = running.swap_remove(pos);
        now = t;
        end[i] = Some(t);
    }
    end.iter().flatten().copied().max().unwrap_or(0)
}

/// `--since`: an age (`7d`, `12h`) before `now_ms`, or a date (`2026-11-01`, midnight UTC).
pub fn parse_since(text: &str, now_ms: u64) -> Option<u64> {
    if let Some(age) = crate::display::parse_age(text) {
        return Some(now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)));
    }
    let mut parts = text.trim().splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    u64::try_from(days).ok().map(|d| d * 86_400_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The saved calls since `since_ms`, read without creating the database.
pub fn load(store: &StoreConfig, since_ms: Option<u64>) -> Result<Vec<CallRecord>, Failure> {
    let db = open_store(store)?;
    db.calls(since_ms).map_err(|e| Failure {
        kind: FailureKind::Store,
        message: e.to_string(),
    })
}

/// `maestro stats`.
pub fn command(
    store: &StoreConfig,
    prices: &PriceTable,
    args: &StatsArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let since = match &args.since {
        Some(text) => Some(parse_since(text, now_ms()).ok_or_else(|| Failure {
            kind: FailureKind::Usage,
            message: format!(
                "--since {text:?}: expected an age (7d, 12h, 2w) or a date (2026-11-01)"
            ),
        })?),
        None => None,
    };
    let calls = load(store, since)?;
    let stats = compute(&calls, prices, since);
    let bytes = if args.json {
        let mut bytes = Vec::new();
        let _ = crate::sanitize::write_json(&mut bytes, &stats);
        bytes.push(b'\n');
        bytes
    } else {
        render(&stats).join("\n").into_bytes()
    };
    out.write_all(&bytes)
        .and_then(|()| {
            if args.json {
                Ok(())
            } else {
                out.write_all(b"\n")
            }
        })
        .and_then(|()| out.flush())
        .map_err(|e| Failure {
            kind: FailureKind::Output,
            message: format!("cannot write to stdout: {e}"),
        })
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_owned(), |r| format!("{:.0}%", r * 100.0))
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "–".to_owned(), duration)
}

fn cost(group: &GroupStats) -> String {
    let spend = Spend {
        usd: group.cost_usd.unwrap_or(0.0),
        priced_calls: u32::from(group.cost_usd.is_some()),
        unpriced_tokens: group.unpriced_tokens,
    };
    spend.label().unwrap_or_else(|| "–".to_owned())
}

fn table(title: &str, groups: &[GroupStats], lines: &mut Vec<String>) {
    let name_w = groups
        .iter()
        .map(|g| g.name.chars().count().min(28))
        .max()
        .unwrap_or(4)
        .max(title.len());
    lines.push(format!(
        "{:<name_w$}  {:>5}  {:>8}  {:>5}  {:>7}  {:>7}  {:>7}  {:>9}",
        title.to_uppercase(),
        "CALLS",
        "SUBTASKS",
        "OK",
        "MEDIAN",
        "P90",
        "TOKENS",
        "COST"
    ));
    for g in groups {
        lines.push(format!(
            "{:<name_w$}  {:>5}  {:>8}  {:>5}  {:>7}  {:>7}  {:>7}  {:>9}",
            truncate(&crate::sanitize::sanitize_line(&g.name), name_w),
            g.calls,
            g.subtasks,
            rate(g.success_rate),
            ms(g.median_ms),
            ms(g.p90_ms),
            tokens(g.tokens_in + g.tokens_out),
            cost(g)
        ));
    }
}

/// The statistics as lines of text, for `maestro stats` and the dashboard's panel.
pub fn render(stats: &Stats) -> Vec<String> {
    let mut lines = Vec::new();
    let total = stats
        .cost_usd
        .map(|usd| format!(" · {} estimated", crate::engine::cost::show_usd(usd)))
        .unwrap_or_default();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    lines.push(format!(
        "{} · {}{total}",
        plural(stats.runs, "run"),
        plural(stats.calls, "call")
    ));
    if stats.calls == 0 {
        lines.push("(no saved calls in this window)".to_owned());
        return lines;
    }
    lines.push(String::new());
    table("role", &stats.roles, &mut lines);
    lines.push(String::new());
    table("model", &stats.models, &mut lines);
    lines.push(String::new());
    lines.push("ERRORS BY PROVIDER".to_owned());
    for p in &stats.providers {
        let classes = if p.errors.is_empty() {
            "none".to_owned()
        } else {
            p.errors
                .iter()
                .map(|(class, n)| format!("{class} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        lines.push(format!(
            "{}: {} of {} calls failed · {classes}",
            crate::sanitize::sanitize_line(&p.provider),
            p.failed,
            p.calls
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{RunId, SubtaskId, Usage};

    fn call(role: CallRole, worker: &str, model: &str, outcome: AttemptOutcome) -> CallRecord {
        CallRecord {
            run: RunId(uuid::Uuid::nil()),
            provider: "openai".to_owned(),
            role,
            worker: (!worker.is_empty()).then(|| worker.to_owned()),
            subtask: (role == CallRole::Worker).then(|| SubtaskId::new(worker)),
            model: Some(model.to_owned()),
            started_ms: 0,
            elapsed_ms: Some(1000),
            outcome,
            error: None,
            usage: Some(Usage {
                tokens_in: 1000,
                tokens_out: 100,
                ..Usage::default()
            }),
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&mut v, 50), Some(5));
        assert_eq!(percentile(&mut v, 90), Some(9));
        assert_eq!(percentile(&mut [7], 90), Some(7));
        assert_eq!(percentile(&mut [], 50), None);
    }

    #[test]
    fn since_reads_ages_and_dates() {
        assert_eq!(parse_since("2d", 10 * 86_400_000), Some(8 * 86_400_000));
        assert_eq!(parse_since("1970-01-02", 0), Some(86_400_000));
        assert_eq!(parse_since("2026-11-01", 0), Some(1_793_491_200_000));
        assert_eq!(parse_since("2026-13-01", 0), None);
        assert_eq!(parse_since("yesterday", 0), None);
    }

    #[test]
    fn errors_are_classed_and_failed_calls_count_against_success() {
        let mut failed = call(CallRole::Worker, "research", "m", AttemptOutcome::Retried);
        failed.error = Some("HTTP 503: overloaded".to_owned());
        let mut cut = call(CallRole::Worker, "research", "m", AttemptOutcome::Failed);
        cut.error = Some("the stream ended before the answer was complete".to_owned());
        let ok = call(CallRole::Worker, "research", "m", AttemptOutcome::Succeeded);
        let stats = compute(&[failed, cut, ok], &PriceTable::empty(), None);
        let role = &stats.roles[0];
        assert_eq!((role.calls, role.succeeded), (3, 1));
        assert_eq!(role.success_rate, Some(1.0 / 3.0));
        assert_eq!(
            stats.providers[0].errors,
            [("5xx".to_owned(), 1), ("stream cut".to_owned(), 1)]
        );
        assert_eq!(role.cost_usd, None, "no price, no cost");
    }

    #[test]
    fn an_estimate_is_the_median_of_successful_calls_of_that_role_and_model() {
        let mut long = call(CallRole::Worker, "research", "m", AttemptOutcome::Succeeded);
        long.elapsed_ms = Some(9000);
        let calls = [
            call(CallRole::Worker, "research", "m", AttemptOutcome::Succeeded),
            call(CallRole::Worker, "research", "m", AttemptOutcome::Succeeded),
            long,
            call(CallRole::Worker, "research", "m", AttemptOutcome::Failed),
            call(CallRole::Worker, "analysis", "m", AttemptOutcome::Succeeded),
        ];
        let e = estimate(&calls, "research", "m").expect("three samples");
        assert_eq!(e.samples, 3);
        assert_eq!(e.median_ms, 1000);
        assert_eq!(e.median_tokens_in, 1000);
        assert_eq!(estimate(&calls, "research", "other"), None);
    }

    // ---- plan estimates ----------------------------------------------------------------------

    fn subtask(id: &str, worker: &str, deps: &[&str]) -> crate::protocol::PlannedSubtask {
        crate::protocol::PlannedSubtask {
            id: SubtaskId::new(id),
            worker: worker.to_owned(),
            title: "T".repeat(40),
            description: "D".repeat(360),
            focus_areas: Vec::new(),
            depends_on: deps.iter().map(|d| SubtaskId::new(*d)).collect(),
            priority: crate::protocol::Priority::Medium,
            reuse: None,
            role_prompt: None,
            model: None,
        }
    }

    fn plan(subtasks: Vec<crate::protocol::PlannedSubtask>) -> Plan {
        Plan {
            query_analysis: String::new(),
            subtasks,
            synthesis_guidance: String::new(),
            complexity: None,
        }
    }

    fn inputs<'a>(
        models: &[&str],
        prices: &'a PriceTable,
        concurrency: usize,
    ) -> EstimateInputs<'a> {
        EstimateInputs {
            worker_models: models.iter().map(|m| (*m).to_owned()).collect(),
            synthesis_model: "gpt-4o-mini".to_owned(),
            validator_model: None,
            direct: true,
            prices,
            concurrency,
        }
    }

    #[test]
    fn a_plan_estimate_uses_history_where_there_is_some_and_the_rule_elsewhere() {
        let prices = PriceTable::shipped();
        let history = [
            call(
                CallRole::Worker,
                "research",
                "gpt-4o-mini",
                AttemptOutcome::Succeeded,
            ),
            call(
                CallRole::Worker,
                "research",
                "gpt-4o-mini",
                AttemptOutcome::Succeeded,
            ),
        ];
        let p = plan(vec![
            subtask("a", "research", &[]),
            subtask("b", "analysis", &["a"]),
        ]);
        let e = plan_estimate(&p, &history, &inputs(&["gpt-4o-mini"; 2], &prices, 4));
        let a = &e.subtasks[0].total;
        assert_eq!(a.basis, Basis::History { samples: 2 });
        assert_eq!((a.tokens_in, a.tokens_out, a.ms), (1000, 100, 1000));
        let b = &e.subtasks[1].total;
        assert_eq!(b.basis, Basis::RuleOfThumb);
        // 400 characters / 4 + 1 200, plus what `a` writes (quoted as its dependency).
        assert_eq!(
            (b.tokens_in, b.tokens_out, b.ms),
            (100 + 1200 + 100, 700, 25_000)
        );
        let synthesis = e.synthesis.as_ref().expect("a synthesis");
        assert_eq!(synthesis.basis, Basis::RuleOfThumb);
        assert_eq!(synthesis.tokens_in, 100 + 700 + 1000);
        assert_eq!(e.calls, 3);
        assert_eq!(
            e.ms,
            1000 + 25_000 + 30_000,
            "a chain runs one after another"
        );
        assert!(e.cost_usd.is_some_and(|c| c > 0.0));
        assert!(e.unpriced_models.is_empty());
        assert_eq!((e.from_history, e.with_calls), (1, 2));
        let line = e.line();
        assert!(line.starts_with("≈ 3 calls · ~"), "{line}");
        assert!(
            line.ends_with("· ~56.0s (history: 1 of 2 subtasks)"),
            "{line}"
        );
    }

    #[test]
    fn a_model_without_a_price_has_no_cost_and_is_named() {
        let prices = PriceTable::shipped();
        let p = plan(vec![
            subtask("a", "research", &[]),
            subtask("b", "research", &[]),
        ]);
        let e = plan_estimate(
            &p,
            &[],
            &inputs(&["gpt-4o-mini", "local-llama"], &prices, 4),
        );
        assert!(e.subtasks[0].total.cost_usd.is_some());
        assert_eq!(e.subtasks[1].total.cost_usd, None, "never a made-up price");
        assert_eq!(e.cost_usd, None);
        assert_eq!(e.unpriced_models, vec!["local-llama".to_owned()]);
        assert!(
            e.line().contains("cost unknown (no price: local-llama)"),
            "{}",
            e.line()
        );
        assert!(e.line().ends_with("(rule of thumb)"), "{}", e.line());
    }

    #[test]
    fn wall_time_follows_the_critical_path_within_the_concurrency_limit() {
        let prices = PriceTable::empty();
        // Three independent subtasks and one after all of them.
        let p = plan(vec![
            subtask("a", "research", &[]),
            subtask("b", "research", &[]),
            subtask("c", "research", &[]),
            subtask("d", "research", &["a", "b", "c"]),
        ]);
        let wide = plan_estimate(&p, &[], &inputs(&["m"], &prices, 4));
        assert_eq!(wide.ms, 25_000 * 2 + 30_000);
        let narrow = plan_estimate(&p, &[], &inputs(&["m"], &prices, 2));
        assert_eq!(narrow.ms, 25_000 * 3 + 30_000, "c waits for a free slot");
        let mut validated = inputs(&["m"], &prices, 4);
        validated.validator_model = Some("m".to_owned());
        let checked = plan_estimate(&p, &[], &validated);
        assert_eq!(checked.calls, 4 * 2 + 1);
        assert_eq!(checked.ms, (25_000 + 8_000) * 2 + 30_000);
    }

    #[test]
    fn a_direct_answer_has_no_synthesis_and_a_reused_result_no_call() {
        let prices = PriceTable::empty();
        let mut one = plan(vec![subtask("a", "research", &[])]);
        one.complexity = Some(crate::protocol::Complexity::Straightforward);
        let e = plan_estimate(&one, &[], &inputs(&["m"], &prices, 4));
        assert_eq!((e.calls, e.synthesis.is_none()), (1, true));
        let mut reused = subtask("r", "research", &[]);
        reused.reuse = Some(SubtaskId::new("old"));
        let e = plan_estimate(&plan(vec![reused]), &[], &inputs(&["m"], &prices, 4));
        assert_eq!(e.subtasks[0].total.basis, Basis::Reused);
        assert_eq!(e.calls, 1, "the synthesis only");
    }
}
