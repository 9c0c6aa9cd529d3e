//! End-to-end engine benchmark: how close a run gets to the latency floor its model calls set,
//! and how much CPU the engine spends per subtask.
//!
//! Run with `cargo bench --bench engine` (`BENCH_REPEATS=N` to change the number of measured
//! runs per case; default 5, after one unmeasured warm-up run).
//!
//! # What runs
//!
//! The real engine (`Engine::spawn`, the run state machine, the executor with its default delta
//! coalescing) on a multi-thread tokio runtime with the default number of worker threads, with
//! `retries = 0` (a failure cannot hide behind a retry: every run must end `Succeeded` with
//! every subtask succeeded, or the benchmark panics) and a generous call timeout. Each scenario
//! runs against two providers:
//!
//! - **`mock-http`**: the real OpenAI-compatible adapter (`llm::openai`, streaming SSE with
//!   `include_usage`) over HTTP/1.1 to the in-process mock server (`tests/common/mock.rs`). Each
//!   reply waits its latency with `Reply::delay` (before the response headers), then writes its
//!   text as four content chunks back to back (`gap` = 0). So the latency is "request received
//!   to last byte written" with a single timer per call; spreading the text with `gap` would add
//!   one timer overshoot (up to ~1 ms each) per chunk, which measures tokio's timer wheel rather
//!   than the engine.
//! - **`in-process`**: a fixed-latency `Provider` implemented here, with no HTTP at all. It sends
//!   the same four chunks as deltas at 1/4, 2/4, 3/4 and 4/4 of the latency (absolute deadlines,
//!   so timer overshoot does not accumulate) and returns right after the last one. This isolates
//!   the engine's own overhead.
//!
//! Scenarios (latencies: worker `L_w` = 250 ms, planner `L_p` and synthesis `L_s` = 100 ms;
//! `BENCH_WORKER_MS` sets `L_w`, and `L_p` = `L_s` = 40 % of it). A tokio timer ends about
//! 1.3 ms late (1 ms wheel ticks, deadlines rounded up), so at `L_w` = 100 ms the ratio carries
//! about 1.3 % of timer overshoot that is no one's overhead; "ideal(obs)" below separates it.
//!
//! - **A**: the planner returns a plan of 200 independent subtasks (`max_subtasks` = 200), run
//!   at concurrency 16.
//! - **B**: an 8-subtask plan with a 3-level dependency chain (4 independent subtasks; 3 that
//!   depend on level-1 ones; 1 that depends on the 3 of level 2), concurrency 8.
//!
//! # What is reported
//!
//! - **wall**: from `start_run` to the bench receiving `RunFinished`.
//! - **ideal**: the critical path of model latency alone, `L_p + levels × L_w + L_s`, where
//!   `levels` = ⌈200 / 16⌉ = 13 for A (16 slots each run 12 or 13 subtasks back to back) and 3
//!   for B. **wall ÷ ideal** is the figure to watch (target ≤ 1.02).
//! - **CPU per subtask**: process CPU time (user + system, all threads, from the first field of
//!   `/proc/self/task/*/schedstat`, in ns; `/proc/self/stat` ticks as a fallback when a thread
//!   exited mid-run) over the run, divided by the number of subtasks (target ≤ 0.2 ms). The
//!   mock server runs on a runtime of its own (threads named `mock-server`), and its CPU is
//!   reported apart, so the `mock-http` figure is maestro's: engine, HTTP client, SSE and JSON
//!   parsing (and this bench draining the event channel). The `in-process` figure is the
//!   engine alone.
//! - Diagnostics per case: the latency the providers actually delivered (mean per call kind;
//!   a tokio timer fires about 1–1.5 ms late, as its wheel has 1 ms ticks and rounds deadlines
//!   up), the ideal recomputed from those delivered latencies ("ideal(obs)", which separates
//!   timer overshoot from engine overhead), the median time of each phase (start → `PlanReady`,
//!   → `SynthesisStarted`, → `RunFinished`) over its delivered latency, and the mean per-call
//!   overhead on top of the provider: the engine's own `elapsed_ms` for a subtask minus the
//!   delivered worker latency.
//!
//! With `mock-http` the whole answer arrives at once after the delay, so all of a call's
//! HTTP/SSE/JSON work (client and mock server) lands on the critical path, and the replies of
//! the subtasks started together all land in the same millisecond: a pessimistic case for
//! wall time on few cores.
//!
//! # The binary, from outside
//!
//! The in-process figures leave out what only a real process pays: runtime start-up, thread
//! wake-ups between the runtime's workers, the progress printer, logging, exit. So the last
//! case, **C**, runs the release binary itself as a child process, the way a user would:
//!
//! ```text
//! maestro --provider openai --base-url <mock> --concurrency 16 --max-subtasks 200 --retries 0 \
//!     run --plan <200-subtask plan file> "<query>"   (stdout and stderr to files)
//! ```
//!
//! against the same mock server (in this process, so its CPU is not the child's), with the
//! plan of scenario A given as a file (so there is no planner call) and the child's HOME and
//! XDG directories in a temporary directory (no user config; its log goes there). Progress goes
//! to a file, which is the line-per-event printer. It runs twice: with A's mock (each answer
//! at once after its latency) and with answers streamed the way a model sends them (16
//! pieces spread over the second half of the latency, so each piece wakes maestro on its own;
//! the mock's timers end ~1 ms late per piece, which shows in the wall time, not in maestro's
//! CPU). The child's CPU (user + system, all its
//! threads, start to exit) comes from `wait4`'s resource usage; voluntary and involuntary
//! context switches are printed beside it (thread wake-ups are most of them). Target: the whole
//! run in ≤ 0.1 s of CPU. `BENCH_ONLY=headless` runs this case alone; `BENCH_BINARY=PATH`
//! measures another build of the binary.
//!
//! # Saving
//!
//! Scenarios A and B run again (both providers) with the run store on: a `StoreWriter` on a
//! database in a temporary directory, the run's row written and waited for before the run
//! starts (as the front ends do), and every event the bench receives handed to the writer. The
//! wall time stops at `RunFinished` as usual; the CPU figure waits until the writer has
//! committed the run, so the writer thread's work is counted. Target: within 3 % of the same
//! case with the store off. Then the store's own figures: the events of one run of A (recorded
//! with the in-process provider), with each result made 3 000 bytes long like a real worker's
//! answer, replayed into a fresh database as 5 runs (1 000 subtasks): events written per second
//! (from the first send to the commit of the last, stream deltas not counted as the writer
//! drops them) and the size of the database per 1 000 subtasks. `BENCH_ONLY=store` runs only
//! these cases.
//!
//! # Start spacing
//!
//! Cases A and B run with the provider's shared limits off, as before they existed. Case
//! **S** is A (in process) with a real provider's defaults (`defaults::STARTS_PER_SECOND`
//! starts a second, `defaults::PROVIDER_MAX_IN_FLIGHT` in flight): what the spacing costs a
//! 200-subtask fan-out, against A's ideal and against the floor the spacing itself sets
//! (`L_p + 200 / rate + L_w + L_s`). `BENCH_ONLY=spacing` runs it alone.
//!
//! Median and best of the measured runs are printed per case, then a summary table. The
//! benchmark reports; it never fails on a missed target.

#[path = "../tests/common/mock.rs"]
mod mock;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use maestro::engine::executor::{Engine, EngineHandle, ExecutorSettings};
use maestro::engine::limits::RateSettings;
use maestro::engine::plan::{Plan, PlannedSubtask, Priority};
use maestro::engine::prompt::CallSpec;
use maestro::engine::roles::builtin_roles;
use maestro::engine::run::RunSettings;
use maestro::llm::openai::{OpenAi, OpenAiConfig};
use maestro::llm::{CallFuture, ChatRequest, Completion, DeltaSink, Provider};
use maestro::protocol::{
    CallRole, Command, Event, EventKind, ModelOverrides, RunId, RunStatus, SubtaskId, Usage,
};
use maestro::store::{RunMeta, StoreWriter};
use mock::{Call, MockRequest, MockServer, Reply};
use tokio::sync::mpsc::UnboundedReceiver;

const PLANNER_MODEL: &str = "bench-planner";
const WORKER_MODEL: &str = "bench-worker";
const SYNTH_MODEL: &str = "bench-synth";

/// Chunks each answer is streamed in.
const CHUNKS: usize = 4;

const WALL_TARGET: f64 = 1.02;
const CPU_TARGET_MS: f64 = 0.2;
/// CPU of the whole headless run of case C, in ms.
const HEADLESS_CPU_TARGET_MS: f64 = 100.0;

const WORKER_TEXT: &str = "## Finding\n\nThe measured effect is moderate and consistent across \
    the sources consulted. Two factors dominate: cost per unit, which fell steadily over the \
    period, and the availability of infrastructure, which lagged behind demand in most regions. \
    Confidence is medium; the data for the last two years is preliminary.\n";

const SYNTH_TEXT: &str = "# Report\n\nAcross all parts of the work the picture is consistent: \
    costs fell, adoption followed with a lag set by infrastructure, and the remaining \
    uncertainty is concentrated in the most recent data. The sections below summarise each \
    finding and what it means for the question asked.\n";

#[derive(Debug, Clone, Copy)]
struct Latency {
    planner: Duration,
    worker: Duration,
    synthesis: Duration,
}

impl Latency {
    fn of(&self, role: CallRole) -> Duration {
        match role {
            CallRole::Planner => self.planner,
            // The benchmark never turns validation on.
            CallRole::Worker | CallRole::Validator => self.worker,
            CallRole::Synthesizer => self.synthesis,
        }
    }
}

struct Scenario {
    name: &'static str,
    plan: Plan,
    concurrency: usize,
    /// Worker calls on the critical path.
    levels: u32,
    latency: Latency,
    /// The provider's shared limits; off but in the spacing case, so A and B measure the
    /// engine as before.
    rate: RateSettings,
}

impl Scenario {
    fn subtasks(&self) -> usize {
        self.plan.subtasks.len()
    }

    fn ideal(&self) -> Duration {
        self.latency.planner + self.latency.worker * self.levels + self.latency.synthesis
    }

    fn settings(&self) -> RunSettings {
        let spec = |model: &str| CallSpec {
            model: model.to_owned(),
            max_tokens: 1024,
            temperature: None,
        };
        RunSettings {
            max_subtasks: self.subtasks(),
            concurrency: self.concurrency,
            retries: 0,
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(5),
            retry_after_limit: Duration::from_secs(5),
            planner: spec(PLANNER_MODEL),
            worker: spec(WORKER_MODEL),
            synthesizer: spec(SYNTH_MODEL),
            roles: builtin_roles(),
            seed: 1,
            stop_after_plan: false,
            max_dependency_chars: None,
            structured: maestro::llm::structured::Structured::Auto,
            direct: true,
            validate: false,
            validator: spec(WORKER_MODEL),
            preset: Default::default(),
            budget: Default::default(),
            review: false,
        }
    }

    /// The planner's answer: the plan as JSON, in `CHUNKS` pieces.
    fn plan_chunks(&self) -> Vec<String> {
        split_even(
            &serde_json::to_string(&self.plan).expect("a plan serialises"),
            CHUNKS,
        )
    }
}

fn subtask(id: String, depends_on: Vec<SubtaskId>) -> PlannedSubtask {
    PlannedSubtask {
        title: format!("Part {id}"),
        description: format!(
            "Investigate part {id} of the question and report the findings with sources."
        ),
        id: SubtaskId::new(id),
        worker: "analysis".to_owned(),
        focus_areas: vec!["evidence".to_owned(), "uncertainty".to_owned()],
        depends_on,
        priority: Priority::Medium,
        reuse: None,
        role_prompt: None,
        model: None,
    }
}

fn plan_of(subtasks: Vec<PlannedSubtask>) -> Plan {
    Plan {
        query_analysis: "A benchmark query, split into parts.".to_owned(),
        subtasks,
        synthesis_guidance: "Join the findings into one report.".to_owned(),
        complexity: None,
    }
}

fn scenario_a(latency: Latency) -> Scenario {
    let (n, concurrency): (usize, usize) = (200, 16);
    Scenario {
        name: "A: 200 indep., c=16",
        plan: plan_of((1..=n).map(|i| subtask(format!("t{i}"), vec![])).collect()),
        concurrency,
        levels: n.div_ceil(concurrency) as u32,
        latency,
        rate: RateSettings::default(),
    }
}

/// A with the default start spacing and in-flight limit of a real provider: what the spacing
/// costs a 200-subtask fan-out.
fn scenario_spaced(latency: Latency) -> Scenario {
    Scenario {
        name: "S: A, default spacing",
        rate: RateSettings {
            max_in_flight: Some(maestro::defaults::PROVIDER_MAX_IN_FLIGHT as usize),
            starts_per_second: Some(maestro::defaults::STARTS_PER_SECOND),
            breaker: true,
        },
        ..scenario_a(latency)
    }
}

impl Scenario {
    /// The floor the start spacing sets: every call starts `1 / rate` after the one before
    /// (planner, 200 workers, synthesis), so the last worker starts `200 / rate` after the
    /// planner's answer, and the synthesis waits for it. The larger of this and `ideal`.
    fn spaced_ideal(&self) -> Option<Duration> {
        let rate = self.rate.starts_per_second?;
        let workers = Duration::from_secs_f64(self.subtasks() as f64 / rate);
        Some(
            (self.latency.planner + workers + self.latency.worker + self.latency.synthesis)
                .max(self.ideal()),
        )
    }
}

fn scenario_b(latency: Latency) -> Scenario {
    let id = |s: &str| SubtaskId::new(s);
    let subtasks = vec![
        subtask("a1".into(), vec![]),
        subtask("a2".into(), vec![]),
        subtask("a3".into(), vec![]),
        subtask("a4".into(), vec![]),
        subtask("b1".into(), vec![id("a1"), id("a2")]),
        subtask("b2".into(), vec![id("a2"), id("a3")]),
        subtask("b3".into(), vec![id("a4")]),
        subtask("c1".into(), vec![id("b1"), id("b2"), id("b3")]),
    ];
    Scenario {
        rate: RateSettings::default(),
        name: "B: 8, 3-level chain, c=8",
        plan: plan_of(subtasks),
        concurrency: 8,
        levels: 3,
        latency,
    }
}

/// `text` cut into `n` pieces of about equal length, on char boundaries.
fn split_even(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(n).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

// ---------------------------------------------------------------------------------------------
// Providers
// ---------------------------------------------------------------------------------------------

/// Per call kind: (sum of delivered latencies, count).
#[derive(Debug, Default, Clone)]
struct Observed(HashMap<&'static str, (Duration, u32)>);

impl Observed {
    fn add(&mut self, kind: &'static str, d: Duration) {
        let e = self.0.entry(kind).or_default();
        e.0 += d;
        e.1 += 1;
    }
    fn mean(&self, kind: &str) -> Option<Duration> {
        self.0
            .get(kind)
            .filter(|(_, n)| *n > 0)
            .map(|(sum, n)| *sum / *n)
    }
}

/// The same labels the mock's classifier gives (`mock::Call::label`), so both variants'
/// tallies line up.
fn kind_of(role: CallRole) -> &'static str {
    match role {
        CallRole::Planner => Call::Planner,
        CallRole::Worker => Call::Worker(String::new()),
        CallRole::Synthesizer => Call::Synthesis,
        CallRole::Validator => Call::Unknown,
    }
    .label()
}

/// A provider that answers after a fixed latency, streaming its answer as deltas spread evenly
/// over that latency, without any I/O.
struct FixedLatency {
    latency: Latency,
    plan: Vec<String>,
    worker: Vec<String>,
    synthesis: Vec<String>,
    observed: Mutex<Observed>,
}

impl FixedLatency {
    fn new(scenario: &Scenario) -> Self {
        Self {
            latency: scenario.latency,
            plan: scenario.plan_chunks(),
            worker: split_even(WORKER_TEXT, CHUNKS),
            synthesis: split_even(SYNTH_TEXT, CHUNKS),
            observed: Mutex::new(Observed::default()),
        }
    }

    fn take_observed(&self) -> Observed {
        std::mem::take(&mut *self.observed.lock().expect("not poisoned"))
    }
}

impl Provider for FixedLatency {
    fn name(&self) -> &str {
        "fixed-latency"
    }

    fn complete(&self, request: ChatRequest, sink: DeltaSink) -> CallFuture<'_> {
        Box::pin(async move {
            let start = tokio::time::Instant::now();
            let latency = self.latency.of(request.role);
            let chunks = match request.role {
                CallRole::Planner => &self.plan,
                CallRole::Worker | CallRole::Validator => &self.worker,
                CallRole::Synthesizer => &self.synthesis,
            };
            let n = chunks.len() as u32;
            let mut text = String::new();
            for (i, chunk) in chunks.iter().enumerate() {
                tokio::time::sleep_until(start + latency * (i as u32 + 1) / n).await;
                sink.send(chunk);
                text.push_str(chunk);
            }
            self.observed
                .lock()
                .expect("not poisoned")
                .add(kind_of(request.role), start.elapsed());
            Ok(Completion {
                usage: Some(Usage {
                    tokens_in: 100,
                    tokens_out: (text.len() / 4) as u64,
                    estimated: false,
                    cached_in: 0,
                }),
                text,
                ..Default::default()
            })
        })
    }
}

/// The mock server's script for a scenario: the latency as a delay before the headers, then
/// the answer in `CHUNKS` chunks written back to back.
async fn start_mock(scenario: &Scenario, runtime: &tokio::runtime::Handle) -> MockServer {
    let latency = scenario.latency;
    let plan = scenario.plan_chunks();
    runtime
        .spawn(serve(latency, plan))
        .await
        .expect("the mock server starts")
}

/// Runs on the mock's own runtime (see `MOCK_THREAD`).
async fn serve(latency: Latency, plan: Vec<String>) -> MockServer {
    let worker = split_even(WORKER_TEXT, CHUNKS);
    let synthesis = split_even(SYNTH_TEXT, CHUNKS);
    MockServer::start(
        move |request: &MockRequest| match request.model().as_str() {
            PLANNER_MODEL => Reply::chunks(plan.clone()).delay(latency.planner),
            WORKER_MODEL => Reply::chunks(worker.clone()).delay(latency.worker),
            SYNTH_MODEL => Reply::chunks(synthesis.clone()).delay(latency.synthesis),
            other => Reply::status(400, format!("bench: unexpected model `{other}`")),
        },
    )
    .await
}

/// Case C's second shape: worker and synthesis answers arrive as a model streams them, in
/// `STREAMED_CHUNKS` pieces spread over the second half of the latency (the first half is the
/// wait for the first token), so every piece reaches maestro on its own.
async fn serve_streamed(latency: Latency, plan: Vec<String>) -> MockServer {
    let spread = |total: Duration| {
        let gap = total / 2 / (STREAMED_CHUNKS as u32 - 1);
        (total - gap * (STREAMED_CHUNKS as u32 - 1), gap)
    };
    let worker = split_even(WORKER_TEXT, STREAMED_CHUNKS);
    let synthesis = split_even(SYNTH_TEXT, STREAMED_CHUNKS);
    MockServer::start(
        move |request: &MockRequest| match request.model().as_str() {
            PLANNER_MODEL => Reply::chunks(plan.clone()).delay(latency.planner),
            WORKER_MODEL => {
                let (delay, gap) = spread(latency.worker);
                Reply::chunks(worker.clone()).delay(delay).gap(gap)
            }
            SYNTH_MODEL => {
                let (delay, gap) = spread(latency.synthesis);
                Reply::chunks(synthesis.clone()).delay(delay).gap(gap)
            }
            other => Reply::status(400, format!("bench: unexpected model `{other}`")),
        },
    )
    .await
}

/// Pieces a streamed answer of case C comes in.
const STREAMED_CHUNKS: usize = 16;

fn mock_observed(requests: &[MockRequest]) -> Observed {
    let mut observed = Observed::default();
    for request in requests {
        if let Some(d) = request.duration() {
            observed.add(request.call().label(), d);
        }
    }
    observed
}

// ---------------------------------------------------------------------------------------------
// CPU time
// ---------------------------------------------------------------------------------------------

/// The process's CPU time at one moment: per thread (ns, from schedstat) and in total (clock
/// ticks, from `/proc/self/stat`, which also counts threads that have exited).
struct CpuSnapshot {
    /// Thread id → (CPU ns, whether it is one of the mock server's threads).
    threads: HashMap<String, (u64, bool)>,
    ticks: u64,
}

/// The mock server runs on a runtime of its own whose threads carry this name, so its CPU
/// can be told apart from maestro's (engine and HTTP client).
const MOCK_THREAD: &str = "mock-server";

fn cpu_snapshot() -> CpuSnapshot {
    let mut threads = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.flatten() {
            let path = entry.path().join("schedstat");
            let mock = std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|c| c.trim().starts_with(MOCK_THREAD));
            if let Some(ns) = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            {
                threads.insert(entry.file_name().to_string_lossy().into_owned(), (ns, mock));
            }
        }
    }
    // Fields 14 and 15 (utime, stime), counted after the `)` that ends the command name.
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_owned();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // `rest` starts at field 3 (state), so field k is at index k - 3.
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    CpuSnapshot { threads, ticks }
}

/// CPU time between two snapshots, in all and of the mock server's threads: schedstat when
/// every thread of `before` is still there (exact to the ns), else the coarser tick count (and
/// then the mock's share is unknown, reported as zero).
fn cpu_between(
    before: &CpuSnapshot,
    after: &CpuSnapshot,
    ticks_per_sec: u64,
) -> (Duration, Duration, bool) {
    let complete = !after.threads.is_empty()
        && before
            .threads
            .keys()
            .all(|tid| after.threads.contains_key(tid));
    if complete {
        let mut all = 0u64;
        let mut mock = 0u64;
        for (tid, &(ns, is_mock)) in &after.threads {
            let spent = ns.saturating_sub(before.threads.get(tid).map_or(0, |t| t.0));
            all += spent;
            if is_mock {
                mock += spent;
            }
        }
        (Duration::from_nanos(all), Duration::from_nanos(mock), true)
    } else {
        let ticks = after.ticks.saturating_sub(before.ticks);
        (
            Duration::from_nanos(ticks * 1_000_000_000 / ticks_per_sec.max(1)),
            Duration::ZERO,
            false,
        )
    }
}

fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

// ---------------------------------------------------------------------------------------------
// Running and reporting
// ---------------------------------------------------------------------------------------------

struct Sample {
    wall: Duration,
    /// maestro's CPU: every thread but the mock server's (engine, HTTP client, this bench's
    /// event loop).
    cpu: Duration,
    /// The mock server's threads.
    mock_cpu: Duration,
    /// CPU came from schedstat (ns), not from ticks.
    precise: bool,
    /// Mean of the engine's `elapsed_ms` over the subtasks.
    engine_subtask_ms: f64,
    /// From `start_run` to `PlanReady`.
    planning: Duration,
    /// From `PlanReady` to `SynthesisStarted`.
    working: Duration,
    /// From `SynthesisStarted` to `RunFinished`.
    synthesis: Duration,
}

const BENCH_QUERY: &str = "How do the benchmark's parts fit together?";

fn run_meta(id: RunId) -> RunMeta {
    RunMeta {
        id,
        query: BENCH_QUERY.to_owned(),
        provider: "openai".to_owned(),
        planner_model: Some(PLANNER_MODEL.to_owned()),
        worker_model: Some(WORKER_MODEL.to_owned()),
        synthesizer_model: Some(SYNTH_MODEL.to_owned()),
        preset: None,
        settings: serde_json::json!({ "concurrency": 16 }),
        parent: None,
        started_ms: 0,
        context: Default::default(),
    }
}

/// One run, from `start_run` to `RunFinished`; panics unless it succeeded in full. With a
/// store, the run's row is written (and waited for) first and every event goes to the writer;
/// the CPU figure includes the writer committing the run. `record` keeps the run's events.
async fn run_once(
    handle: &EngineHandle,
    events: &mut UnboundedReceiver<Event>,
    subtasks: usize,
    ticks_per_sec: u64,
    store: Option<&StoreWriter>,
    mut record: Option<&mut Vec<Event>>,
) -> Sample {
    let cpu_before = cpu_snapshot();
    let start = Instant::now();
    let id = RunId::new();
    if let Some(store) = store {
        store
            .begin_run(run_meta(id))
            .wait(Duration::from_secs(10))
            .expect("the run's row is saved");
    }
    handle.send(Command::StartRun {
        id,
        query: BENCH_QUERY.to_owned(),
        plan: None,
        models: ModelOverrides::default(),
        follow_up: None,
        context: Default::default(),
    });
    let mut succeeded = 0usize;
    let mut elapsed_sum = 0u64;
    let (mut plan_ready, mut synthesis_started) = (None, None);
    let wall = loop {
        let event = events.recv().await.expect("the engine stopped mid-run");
        if event.run != id {
            continue;
        }
        if let Some(store) = store {
            store.event(&event);
        }
        if let Some(record) = record.as_deref_mut() {
            record.push(event.clone());
        }
        match event.kind {
            EventKind::SubtaskSucceeded { elapsed_ms, .. } => {
                succeeded += 1;
                elapsed_sum += elapsed_ms;
            }
            EventKind::SubtaskFailed { subtask, error, .. } => {
                panic!("subtask {subtask} failed: {error}")
            }
            EventKind::PlanRejected { error, .. } => panic!("the plan was rejected: {error}"),
            EventKind::PlanReady { .. } => plan_ready = Some(start.elapsed()),
            EventKind::SynthesisStarted { .. } => synthesis_started = Some(start.elapsed()),
            EventKind::RunFinished {
                status,
                succeeded: ok,
                total,
                error,
                ..
            } => {
                let wall = start.elapsed();
                assert_eq!(
                    status,
                    RunStatus::Succeeded,
                    "the run ended {status:?}: {error:?}"
                );
                assert_eq!(
                    (ok as usize, total as usize, succeeded),
                    (subtasks, subtasks, subtasks),
                    "every subtask must succeed"
                );
                break wall;
            }
            _ => {}
        }
    };
    if let Some(store) = store {
        store
            .flush()
            .wait(Duration::from_secs(30))
            .expect("the run is committed");
    }
    let (all_cpu, mock_cpu, precise) = cpu_between(&cpu_before, &cpu_snapshot(), ticks_per_sec);
    let plan_ready = plan_ready.expect("PlanReady came");
    let synthesis_started = synthesis_started.expect("SynthesisStarted came");
    Sample {
        planning: plan_ready,
        working: synthesis_started - plan_ready,
        synthesis: wall - synthesis_started,
        wall,
        cpu: all_cpu.saturating_sub(mock_cpu),
        mock_cpu,
        precise,
        engine_subtask_ms: elapsed_sum as f64 / subtasks as f64,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    MockHttp,
    InProcess,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::MockHttp => "mock-http",
            Variant::InProcess => "in-process",
        }
    }
}

struct CaseResult {
    scenario: &'static str,
    store: bool,
    variant: &'static str,
    ideal: Duration,
    wall_median: Duration,
    wall_best: Duration,
    cpu_median_ms: f64,
    cpu_best_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median<T: Copy + PartialOrd>(values: &[T]) -> T {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    sorted[sorted.len() / 2]
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

async fn run_case(
    scenario: &Scenario,
    variant: Variant,
    repeats: usize,
    ticks_per_sec: u64,
    mock_runtime: &tokio::runtime::Handle,
    store: bool,
    mut record: Option<&mut Vec<Event>>,
) -> CaseResult {
    let store_dir = tempfile::tempdir().expect("a temp dir");
    let writer = store
        .then(|| StoreWriter::spawn(&store_dir.path().join("bench.db")).expect("the store opens"));
    let executor = ExecutorSettings {
        call_timeout: Duration::from_secs(60),
        // A key of each case's own, so no two cases share a limiter.
        provider_key: format!("bench:{}:{}", scenario.name, variant.name()),
        rate: scenario.rate.clone(),
        ..ExecutorSettings::default()
    };
    let mut server = None;
    let mut fixed = None;
    let provider: Arc<dyn Provider> = match variant {
        Variant::MockHttp => {
            let mock = start_mock(scenario, mock_runtime).await;
            let openai = OpenAi::new(OpenAiConfig {
                base_url: mock.openai_base_url(),
                api_key: None,
                stream: true,
                include_usage: true,
                idle_timeout: Duration::from_secs(30),
                token_param: None,
            });
            server = Some(mock);
            Arc::new(openai)
        }
        Variant::InProcess => {
            let provider = Arc::new(FixedLatency::new(scenario));
            fixed = Some(provider.clone());
            provider
        }
    };
    let (handle, mut events) = Engine::spawn(provider, scenario.settings(), executor);
    let n = scenario.subtasks();
    let ideal = scenario.ideal();
    println!(
        "\n{} / {}{}: {} subtasks, concurrency {}, ideal {:.0} ms \
         (L_p {:.0} + {} x L_w {:.0} + L_s {:.0})",
        scenario.name,
        variant.name(),
        if store { " / store on" } else { "" },
        n,
        scenario.concurrency,
        ms(ideal),
        ms(scenario.latency.planner),
        scenario.levels,
        ms(scenario.latency.worker),
        ms(scenario.latency.synthesis),
    );

    let mut samples = Vec::new();
    let mut observed = Observed::default();
    for i in 0..=repeats {
        let first_request = server.as_ref().map_or(0, MockServer::request_count);
        if let Some(f) = &fixed {
            f.take_observed();
        }
        // The last run is the one recorded.
        let record = if i == repeats {
            record.as_deref_mut()
        } else {
            None
        };
        let sample = run_once(
            &handle,
            &mut events,
            n,
            ticks_per_sec,
            writer.as_ref(),
            record,
        )
        .await;
        let run_observed = match (&server, &fixed) {
            (Some(s), _) => mock_observed(&s.requests()[first_request..]),
            (_, Some(f)) => f.take_observed(),
            _ => unreachable!(),
        };
        let label = if i == 0 {
            "warm-up".to_owned()
        } else {
            format!("run {i}")
        };
        println!(
            "  {label:>7}: wall {:7.1} ms  wall/ideal {:.4}  CPU {:7.2} ms = {:.3} ms/subtask \
             (mock server: {:.2} ms more){}",
            ms(sample.wall),
            ms(sample.wall) / ms(ideal),
            ms(sample.cpu),
            ms(sample.cpu) / n as f64,
            ms(sample.mock_cpu),
            if sample.precise {
                ""
            } else {
                " (ticks: mock not separated)"
            },
        );
        if i > 0 {
            for (kind, (sum, count)) in run_observed.0 {
                let e = observed.0.entry(kind).or_default();
                e.0 += sum;
                e.1 += count;
            }
            samples.push(sample);
        }
    }
    // Stop the engine, then the server.
    handle.send(maestro::protocol::Command::Shutdown);
    drop(server);
    if let Some(writer) = writer {
        writer.close();
    }

    let walls: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
    let cpus: Vec<f64> = samples.iter().map(|s| ms(s.cpu) / n as f64).collect();
    let wall_median = median(&walls);
    let wall_best = *walls.iter().min().expect("at least one run");
    let cpu_median_ms = median(&cpus);
    let cpu_best_ms = cpus.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "  median: wall {:.1} ms, wall/ideal {:.4} [target <= {WALL_TARGET}: {}], \
         CPU {:.3} ms/subtask [target <= {CPU_TARGET_MS} ms: {}]",
        ms(wall_median),
        ms(wall_median) / ms(ideal),
        mark(ms(wall_median) / ms(ideal) <= WALL_TARGET),
        cpu_median_ms,
        mark(cpu_median_ms <= CPU_TARGET_MS),
    );
    println!(
        "  best:   wall {:.1} ms, wall/ideal {:.4}, CPU {:.3} ms/subtask",
        ms(wall_best),
        ms(wall_best) / ms(ideal),
        cpu_best_ms,
    );
    let (p, w, s) = (
        observed.mean("planner").unwrap_or_default(),
        observed.mean("worker").unwrap_or_default(),
        observed.mean("synthesis").unwrap_or_default(),
    );
    let ideal_obs = p + w * scenario.levels + s;
    let engine_subtask_ms =
        samples.iter().map(|s| s.engine_subtask_ms).sum::<f64>() / samples.len() as f64;
    let phase = |f: fn(&Sample) -> Duration| ms(median(&samples.iter().map(f).collect::<Vec<_>>()));
    let (planning, working, synthesis) = (
        phase(|x| x.planning),
        phase(|x| x.working),
        phase(|x| x.synthesis),
    );
    println!(
        "  delivered latency (mean): planner {:.2}, worker {:.2}, synthesis {:.2} ms; \
         ideal(obs) {:.1} ms; median wall/ideal(obs) {:.4}",
        ms(p),
        ms(w),
        ms(s),
        ms(ideal_obs),
        ms(wall_median) / ms(ideal_obs),
    );
    println!(
        "  phases (median): planning {planning:.1} ms (+{:.2} over delivered), working \
         {working:.1} ms (+{:.2} over {} x delivered), synthesis {synthesis:.1} ms (+{:.2}); \
         a subtask as the engine timed it: worker latency + {:.2} ms",
        planning - ms(p),
        working - ms(w) * scenario.levels as f64,
        scenario.levels,
        synthesis - ms(s),
        engine_subtask_ms - ms(w),
    );

    CaseResult {
        scenario: scenario.name,
        store,
        variant: variant.name(),
        ideal,
        wall_median,
        wall_best,
        cpu_median_ms,
        cpu_best_ms,
    }
}

// ---------------------------------------------------------------------------------------------
// Case C: the release binary as a child process
// ---------------------------------------------------------------------------------------------

/// One headless run of the binary, measured from outside.
struct ChildSample {
    wall: Duration,
    user: Duration,
    system: Duration,
    voluntary_switches: i64,
    involuntary_switches: i64,
    /// Progress lines the child wrote to stderr.
    progress_lines: usize,
}

impl ChildSample {
    fn cpu(&self) -> Duration {
        self.user + self.system
    }
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

/// Spawn the binary, wait for it with `wait4` (which returns its resource usage: every thread
/// of it, start to exit) and panic unless it exited 0.
fn run_child(binary: &str, args: &[String], home: &std::path::Path) -> ChildSample {
    let stderr_path = home.join("progress.txt");
    let stdout = std::fs::File::create(home.join("report.md")).expect("a report file");
    let stderr = std::fs::File::create(&stderr_path).expect("a progress file");
    let mut command = std::process::Command::new(binary);
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // No user config, and the log goes to the temporary directory.
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env_remove("OPENAI_API_KEY")
        .env_remove("NO_COLOR");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MAESTRO_") {
            command.env_remove(name);
        }
    }
    let start = Instant::now();
    let child = command.spawn().expect("the maestro binary starts");
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a plain FFI call with pointers to two live locals; `rusage` is plain data, for
    // which all-zero bytes are a valid value. `child` is never waited on by std afterwards (its
    // drop does not wait), so the pid is reaped exactly once, here.
    let (reaped, usage) = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let reaped = libc::wait4(pid, &mut status, 0, &mut usage);
        (reaped, usage)
    };
    let wall = start.elapsed();
    drop(child);
    assert_eq!(
        reaped,
        pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    let progress = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let exited_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    assert!(
        exited_ok,
        "maestro run did not succeed (wait status {status}); its stderr ends:\n{}",
        progress
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    ChildSample {
        wall,
        user: timeval(usage.ru_utime),
        system: timeval(usage.ru_stime),
        voluntary_switches: usage.ru_nvcsw,
        involuntary_switches: usage.ru_nivcsw,
        progress_lines: progress.lines().count(),
    }
}

/// How case C's mock sends an answer.
#[derive(Clone, Copy)]
enum Shape {
    /// As in A: the whole answer at once, after the latency.
    Burst,
    /// Spread over the latency (see `serve_streamed`).
    Streamed,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Burst => "answers at once",
            Shape::Streamed => "answers streamed",
        }
    }
}

struct HeadlessResult {
    shape: Shape,
    ideal: Duration,
    wall_median: Duration,
    wall_best: Duration,
    cpu_median: Duration,
    cpu_best: Duration,
}

/// Case C: scenario A's plan as a file, run by the release binary against the mock server.
fn run_headless_case(
    scenario: &Scenario,
    shape: Shape,
    repeats: usize,
    runtime: &tokio::runtime::Runtime,
    mock_runtime: &tokio::runtime::Handle,
) -> HeadlessResult {
    // `BENCH_BINARY` measures another build of the binary (an older release, say).
    let binary =
        std::env::var("BENCH_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_maestro").to_owned());
    let binary = binary.as_str();
    let mock = match shape {
        Shape::Burst => runtime.block_on(start_mock(scenario, mock_runtime)),
        Shape::Streamed => runtime.block_on(async {
            mock_runtime
                .spawn(serve_streamed(scenario.latency, scenario.plan_chunks()))
                .await
                .expect("the mock server starts")
        }),
    };
    let home = tempfile::tempdir().expect("a temporary directory");
    let plan_path = home.path().join("plan.json");
    std::fs::write(
        &plan_path,
        serde_json::to_string(&scenario.plan).expect("a plan serialises"),
    )
    .expect("write the plan file");
    let n = scenario.subtasks();
    let args: Vec<String> = [
        "--provider",
        "openai",
        "--base-url",
        &mock.openai_base_url(),
        "--planner-model",
        PLANNER_MODEL,
        "--worker-model",
        WORKER_MODEL,
        "--synth-model",
        SYNTH_MODEL,
        "--concurrency",
        &scenario.concurrency.to_string(),
        "--max-subtasks",
        &n.to_string(),
        "--retries",
        "0",
        // Every repeat must ask the workers: the same run again would be answered from the
        // result cache.
        "--no-cache",
        "run",
        "--plan",
        &plan_path.to_string_lossy(),
        "How do the benchmark's parts fit together?",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // No planner call: the plan comes from the file.
    let ideal = scenario.latency.worker * scenario.levels + scenario.latency.synthesis;
    println!(
        "\nC: {} / release binary, headless, {}: {} subtasks, concurrency {}, ideal {:.0} ms \
         ({} x L_w {:.0} + L_s {:.0}); CPU target <= {HEADLESS_CPU_TARGET_MS:.0} ms for the run",
        scenario.name,
        shape.name(),
        n,
        scenario.concurrency,
        ms(ideal),
        scenario.levels,
        ms(scenario.latency.worker),
        ms(scenario.latency.synthesis),
    );
    let mut samples = Vec::new();
    for i in 0..=repeats {
        let sample = run_child(binary, &args, home.path());
        let label = if i == 0 {
            "warm-up".to_owned()
        } else {
            format!("run {i}")
        };
        println!(
            "  {label:>7}: wall {:7.1} ms  wall/ideal {:.4}  CPU {:6.1} ms (user {:.1} + sys \
             {:.1}) = {:.2} x target, {:.3} ms/subtask; context switches {} voluntary, {} \
             involuntary; {} progress lines",
            ms(sample.wall),
            ms(sample.wall) / ms(ideal),
            ms(sample.cpu()),
            ms(sample.user),
            ms(sample.system),
            ms(sample.cpu()) / HEADLESS_CPU_TARGET_MS,
            ms(sample.cpu()) / n as f64,
            sample.voluntary_switches,
            sample.involuntary_switches,
            sample.progress_lines,
        );
        if i > 0 {
            samples.push(sample);
        }
    }
    // What the mock delivered (its timers end late, per piece when streaming), for an ideal
    // that leaves the mock's lateness out.
    let observed = mock_observed(&mock.requests());
    drop(mock);
    let ideal_obs = observed.mean("worker").unwrap_or_default() * scenario.levels
        + observed.mean("synthesis").unwrap_or_default();
    let walls: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
    let cpus: Vec<Duration> = samples.iter().map(ChildSample::cpu).collect();
    let result = HeadlessResult {
        shape,
        ideal,
        wall_median: median(&walls),
        wall_best: *walls.iter().min().expect("at least one run"),
        cpu_median: median(&cpus),
        cpu_best: *cpus.iter().min().expect("at least one run"),
    };
    println!(
        "  median: wall {:.1} ms, wall/ideal {:.4}, CPU {:.1} ms = {:.2} x target \
         [target <= {HEADLESS_CPU_TARGET_MS:.0} ms: {}] ({:.3} ms/subtask)",
        ms(result.wall_median),
        ms(result.wall_median) / ms(ideal),
        ms(result.cpu_median),
        ms(result.cpu_median) / HEADLESS_CPU_TARGET_MS,
        mark(ms(result.cpu_median) <= HEADLESS_CPU_TARGET_MS),
        ms(result.cpu_median) / n as f64,
    );
    println!(
        "  delivered latency (mean): worker {:.2}, synthesis {:.2} ms; ideal(obs) {:.1} ms; \
         median wall/ideal(obs) {:.4} (process start and exit included)",
        ms(observed.mean("worker").unwrap_or_default()),
        ms(observed.mean("synthesis").unwrap_or_default()),
        ms(ideal_obs),
        ms(result.wall_median) / ms(ideal_obs),
    );
    result
}

// ---------------------------------------------------------------------------------------------
// The store's own figures
// ---------------------------------------------------------------------------------------------

/// Bytes of a worker's result and of a report in the store's figures: a real worker answers in
/// a few hundred words, a report in a few pages.
const RESULT_BYTES: usize = 3_000;
const REPORT_BYTES: usize = 8_000;
/// Subtasks written for the store's figures.
const FIGURE_SUBTASKS: usize = 1_000;

struct StoreFigures {
    runs: usize,
    subtasks: usize,
    messages: u64,
    elapsed: Duration,
    commits: u64,
    bytes: u64,
}

fn text_of(len: usize) -> String {
    WORKER_TEXT.repeat(len / WORKER_TEXT.len() + 1)[..len].to_owned()
}

/// Replays `recorded` (one run's events) as new runs into a fresh database until
/// [`FIGURE_SUBTASKS`] subtasks are written, results and report made realistically long.
fn store_figures(recorded: &[Event], subtasks_per_run: usize) -> StoreFigures {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("figures.db");
    let writer = StoreWriter::spawn(&path).expect("the store opens");
    let (result, report) = (text_of(RESULT_BYTES), text_of(REPORT_BYTES));
    let runs = FIGURE_SUBTASKS.div_ceil(subtasks_per_run.max(1));
    // Built before the clock starts: only the writing is timed.
    let batches: Vec<(RunId, Vec<Event>)> = (0..runs)
        .map(|_| {
            let id = RunId::new();
            let events = recorded
                .iter()
                .map(|e| {
                    let mut e = e.clone();
                    e.run = id;
                    match &mut e.kind {
                        EventKind::SubtaskSucceeded { result: r, .. } => *r = result.clone(),
                        EventKind::SynthesisFinished { text, .. } => *text = report.clone(),
                        _ => {}
                    }
                    e
                })
                .collect();
            (id, events)
        })
        .collect();
    let before = writer.stats();
    let start = Instant::now();
    for (id, events) in batches {
        // Not waited for: the writer keeps the order, and this measures its throughput.
        drop(writer.begin_run(run_meta(id)));
        for e in events {
            writer.event_owned(e);
        }
    }
    writer
        .flush()
        .wait(Duration::from_secs(120))
        .expect("everything is committed");
    let elapsed = start.elapsed();
    let after = writer.stats();
    writer.close();
    let size = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    let bytes = size(path.clone())
        + size(path.with_extension("db-wal"))
        + size(path.with_extension("db-shm"));
    StoreFigures {
        runs,
        subtasks: runs * subtasks_per_run,
        messages: after.saved - before.saved,
        elapsed,
        commits: after.commits - before.commits,
        bytes,
    }
}

fn main() {
    // `cargo bench` passes `--bench` (and any filter); this benchmark has no options but the
    // environment, so arguments are ignored.
    let repeats = std::env::var("BENCH_REPEATS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5);
    let ticks_per_sec = clock_ticks_per_sec();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // The mock server gets its own runtime and thread, so its CPU is measured apart.
    let mock_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(MOCK_THREAD)
        .enable_all()
        .build()
        .expect("the mock's runtime");
    // Latencies far below any real model call's, yet long enough that tokio's timer wheel
    // (1 ms ticks, deadlines rounded up: every timed wait ends ~1.3 ms late) does not dominate
    // the ratio. `BENCH_WORKER_MS` changes the worker latency (planner and synthesis: 40 %).
    let worker_ms = std::env::var("BENCH_WORKER_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(250);
    let latency = Latency {
        planner: Duration::from_millis(worker_ms * 2 / 5),
        worker: Duration::from_millis(worker_ms),
        synthesis: Duration::from_millis(worker_ms * 2 / 5),
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "maestro engine benchmark: {repeats} measured runs per case after 1 warm-up; {} CPUs \
         (tokio's default worker threads); load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    let scenarios = [scenario_a(latency), scenario_b(latency)];
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let only_headless = only.trim() == "headless";
    let only_store = only.trim() == "store";
    let only_spacing = only.trim() == "spacing";
    let spaced = scenario_spaced(latency);
    let mut recorded = Vec::new();
    let results: Vec<CaseResult> = runtime.block_on(async {
        let mut results = Vec::new();
        for scenario in scenarios.iter().filter(|_| !only_headless && !only_spacing) {
            for variant in [Variant::MockHttp, Variant::InProcess] {
                for store in [false, true] {
                    let record = (store
                        && variant == Variant::InProcess
                        && std::ptr::eq(scenario, &scenarios[0]))
                    .then_some(&mut recorded);
                    results.push(
                        run_case(
                            scenario,
                            variant,
                            repeats,
                            ticks_per_sec,
                            mock_runtime.handle(),
                            store,
                            record,
                        )
                        .await,
                    );
                }
            }
        }
        // In process only: the spacing, not HTTP, sets this case's time.
        if only.trim().is_empty() || only_spacing {
            results.push(
                run_case(
                    &spaced,
                    Variant::InProcess,
                    repeats,
                    ticks_per_sec,
                    mock_runtime.handle(),
                    false,
                    None,
                )
                .await,
            );
        }
        results
    });
    if let Some(r) = results.iter().find(|r| r.scenario == spaced.name) {
        let floor = spaced.spaced_ideal().unwrap_or(r.ideal);
        println!(
            "\nstart spacing ({} starts/s, {} in flight): {} subtasks take {:.0} ms (median) \
             against an ideal of {:.0} ms without spacing (x{:.2}) and a floor of {:.0} ms \
             with it (x{:.3})",
            spaced.rate.starts_per_second.unwrap_or(0.0),
            spaced.rate.max_in_flight.unwrap_or(0),
            spaced.subtasks(),
            ms(r.wall_median),
            ms(r.ideal),
            ms(r.wall_median) / ms(r.ideal),
            ms(floor),
            ms(r.wall_median) / ms(floor),
        );
    }
    let figures = (!recorded.is_empty()).then(|| store_figures(&recorded, scenarios[0].subtasks()));
    let headless: Vec<HeadlessResult> = [Shape::Burst, Shape::Streamed]
        .into_iter()
        .filter(|_| !only_store && !only_spacing)
        .map(|shape| {
            run_headless_case(
                &scenarios[0],
                shape,
                repeats,
                &runtime,
                mock_runtime.handle(),
            )
        })
        .collect();

    println!(
        "\nSummary (median, best in brackets; targets: wall/ideal <= {WALL_TARGET}, CPU <= {CPU_TARGET_MS} ms/subtask)"
    );
    println!(
        "{:<26} {:<11} {:>8} {:>20} {:>22} {:>26}",
        "scenario", "provider", "ideal", "wall ms", "wall/ideal", "CPU ms/subtask"
    );
    for r in &results {
        let ratio = ms(r.wall_median) / ms(r.ideal);
        println!(
            "{:<26} {:<11} {:>8.0} {:>20} {:>22} {:>26}",
            if r.store {
                format!("{} +store", r.scenario)
            } else {
                r.scenario.to_owned()
            },
            r.variant,
            ms(r.ideal),
            format!("{:.1} ({:.1})", ms(r.wall_median), ms(r.wall_best)),
            format!(
                "{:.4} ({:.4}) {}",
                ratio,
                ms(r.wall_best) / ms(r.ideal),
                mark(ratio <= WALL_TARGET)
            ),
            format!(
                "{:.3} ({:.3}) {}",
                r.cpu_median_ms,
                r.cpu_best_ms,
                mark(r.cpu_median_ms <= CPU_TARGET_MS)
            ),
        );
    }
    for on in results.iter().filter(|r| r.store) {
        let Some(off) = results
            .iter()
            .find(|r| !r.store && r.scenario == on.scenario && r.variant == on.variant)
        else {
            continue;
        };
        let wall = ms(on.wall_median) / ms(off.wall_median) - 1.0;
        let cpu = on.cpu_median_ms / off.cpu_median_ms - 1.0;
        println!(
            "store on vs off, {} / {}: wall {:+.2} %, CPU per subtask {:+.2} % \
             [target within 3 %: {}]",
            on.scenario,
            on.variant,
            wall * 100.0,
            cpu * 100.0,
            mark(wall <= 0.03 && cpu <= 0.03),
        );
    }
    if let Some(f) = &figures {
        println!(
            "store: {} runs, {} subtasks ({RESULT_BYTES}-byte results, {REPORT_BYTES}-byte \
             reports): {} messages in {:.1} ms, {} commits = {:.0} events/s; database {:.2} MB \
             = {:.2} MB per 1 000 subtasks",
            f.runs,
            f.subtasks,
            f.messages,
            ms(f.elapsed),
            f.commits,
            f.messages as f64 / f.elapsed.as_secs_f64(),
            f.bytes as f64 / 1e6,
            f.bytes as f64 / 1e6 * 1000.0 / f.subtasks as f64,
        );
    }
    for h in &headless {
        let ratio = ms(h.wall_median) / ms(h.ideal);
        println!(
            "{:<26} {:<11} {:>8.0} {:>20} {:>22} {:>26}",
            format!(
                "C: A's plan, {}",
                h.shape.name().trim_start_matches("answers ")
            ),
            "binary",
            ms(h.ideal),
            format!("{:.1} ({:.1})", ms(h.wall_median), ms(h.wall_best)),
            format!("{:.4} ({:.4})", ratio, ms(h.wall_best) / ms(h.ideal)),
            format!(
                "{:.3} ({:.3})",
                ms(h.cpu_median) / scenarios[0].subtasks() as f64,
                ms(h.cpu_best) / scenarios[0].subtasks() as f64,
            ),
        );
        println!(
            "C, {}: CPU of the whole run (user + sys of the child): median {:.1} ms, best {:.1} ms; \
             {:.2} x the target of {HEADLESS_CPU_TARGET_MS:.0} ms [{}]",
            h.shape.name(),
            ms(h.cpu_median),
            ms(h.cpu_best),
            ms(h.cpu_median) / HEADLESS_CPU_TARGET_MS,
            mark(ms(h.cpu_median) <= HEADLESS_CPU_TARGET_MS),
        );
    }
}
