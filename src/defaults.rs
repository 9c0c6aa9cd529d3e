//! Every default setting, written once. The config merge, the command-line help and the
//! engine's own `Default`s all read these constants, so a default cannot drift between what
//! runs, what `--help` says and what the engine assumes.
//!
//! Plain constants only: this module depends on nothing, so any layer may read it.

/// How long a worker's answer in the result cache may stand in for an identical call
/// (`[cache] ttl`): 7 days, in seconds.
pub const CACHE_TTL_SECS: u64 = 7 * 86_400;
/// Worker calls in flight at once, per run (`--concurrency`, `limits.concurrency`).
pub const CONCURRENCY: u64 = 4;
/// Most subtasks a plan may have (`--max-subtasks`, `limits.max_subtasks`).
pub const MAX_SUBTASKS: u64 = 8;
/// Seconds one model call may take, streaming included (`--timeout`, `limits.timeout_secs`).
pub const TIMEOUT_SECS: u64 = 120;
/// Seconds a stream may stay silent before the call fails (`limits.idle_timeout_secs`).
pub const IDLE_TIMEOUT_SECS: u64 = 30;
/// Further attempts after a retryable failure (`--retries`, `limits.retries`).
pub const RETRIES: u32 = 2;
/// `max_tokens` of every call (`limits.max_tokens`).
pub const MAX_TOKENS: u64 = 4096;
/// The most characters of each dependency's result quoted in a worker's prompt
/// (`limits.max_dependency_chars`); `None`: quoted in full.
pub const MAX_DEPENDENCY_CHARS: Option<u64> = None;
/// The first backoff delay between retries, in seconds; it doubles per retry.
pub const RETRY_BASE_SECS: u64 = 1;
/// The longest backoff delay, in seconds.
pub const RETRY_MAX_SECS: u64 = 30;
/// The longest `Retry-After` that is honoured, in seconds; a longer one fails the call.
pub const RETRY_AFTER_LIMIT_SECS: u64 = 120;
/// Streamed text is gathered this long (ms) before it becomes one event.
pub const COALESCE_MS: u64 = 40;
/// Finished runs the engine keeps reachable (for re-runs) before it drops the oldest. A
/// finished run holds its plan, results and report (tens of KB): a day's work in the dashboard
/// stays reachable for a few MB.
pub const KEEP_FINISHED_RUNS: usize = 64;
/// Seconds a model list or one check call may take (`maestro models`, `maestro doctor`, the
/// dashboard's model picker), so none of them can hang on a silent server.
pub const CHECK_TIMEOUT_SECS: u64 = 15;
/// The lowest and highest sampling temperature accepted (`limits.temperature`).
pub const TEMPERATURE_RANGE: std::ops::RangeInclusive<f32> = 0.0..=2.0;

/// How the planner asks for structured output (`planner.structured`): `auto` tries a JSON
/// schema, then JSON mode, then plain text, remembering what the server accepted.
pub const PLANNER_STRUCTURED: &str = "auto";

/// The most bytes of text the files attached to one run may have (`[context] max_bytes`):
/// 200 KB. More is an error that lists the files, never a silent cut.
pub const CONTEXT_MAX_BYTES: u64 = 200 * 1024;

/// Demo provider: the share of worker attempts that fail (`demo.failure_rate`).
pub const DEMO_FAILURE_RATE: f64 = 0.2;
/// Demo provider: failures at most per subtask (`demo.failures_per_subtask`).
pub const DEMO_FAILURES_PER_SUBTASK: u32 = 3;
/// Demo provider: simulated streaming speed (`demo.tokens_per_second`).
pub const DEMO_TOKENS_PER_SECOND: u64 = 60;

pub const OPENAI_URL: &str = "https://api.openai.com/v1";
pub const OPENAI_KEY_ENV: &str = "OPENAI_API_KEY";
pub const OPENAI_MODEL: &str = "gpt-4o-mini";
pub const ANTHROPIC_URL: &str = "https://api.anthropic.com";
pub const ANTHROPIC_KEY_ENV: &str = "ANTHROPIC_API_KEY";
pub const ANTHROPIC_MODEL: &str = "claude-sonnet-4-5";

/// The most characters of an earlier run's report that a follow-up's planner and workers see;
/// a longer report is cut, with a notice.
pub const FOLLOW_UP_REPORT_CHARS: usize = 8_000;
/// The most characters of each earlier subtask's result shown to a follow-up's planner, so it
/// can judge what to reuse (a reused result is passed on whole).
pub const FOLLOW_UP_EXCERPT_CHARS: usize = 600;

/// Whether a straightforward query planned as one subtask is answered by that one worker call,
/// with no synthesis (`planner.direct`; `--no-direct` turns it off).
pub const DIRECT: bool = true;
/// Whether each subtask's result is checked by a validator call (`validation.enabled`,
/// `--validate`).
pub const VALIDATE: bool = false;
/// `[tools] max_rounds`: how many times a worker's model may call tools before it is asked for
/// a final answer without them.
pub const TOOL_MAX_ROUNDS: u32 = 6;
/// `[tools] enabled` / `--tools` unset: each worker role gets the tools its preset gives it
/// (`tools = ["fetch"]`); the flag gives every worker the same (`none`, `fetch`, `files`, `all`).
pub const TOOLS_ENABLED: &str = "each role's own";
/// The preset (team of worker roles) a run uses when none is chosen.
pub const PRESET: &str = "research";
/// Calls in flight at once to one provider (one base URL), over every run of the process
/// (`[openai] max_in_flight`, `[anthropic] max_in_flight`): four runs at the default
/// concurrency of 4 each.
pub const PROVIDER_MAX_IN_FLIGHT: u64 = 16;
/// Call starts per second to one provider (`starts_per_second` in the provider's section).
/// Rate limits are quoted per minute but enforced over short windows: OpenAI's first tier
/// allows 500 requests a minute, about 8 a second, and Anthropic's token bucket refills
/// continuously. At 8 a second a 16-wide fan-out starts over 2 s instead of in one burst,
/// which stays under such a window, and costs a single-run fan-out at most that.
pub const STARTS_PER_SECOND: f64 = 8.0;
/// 401 / 403 replies in a row from one provider that pause it (the key is wrong: every
/// further call would be refused too).
pub const BREAKER_AUTH_FAILURES: u32 = 3;
/// 429 replies to retried calls within `BREAKER_WINDOW_SECS` that pause a provider.
pub const BREAKER_RATE_LIMITED: usize = 5;
/// The window, in seconds, in which repeated 429s are counted.
pub const BREAKER_WINDOW_SECS: u64 = 60;
/// Built-in tools: the most characters of one tool result a model sees (`[tools]
/// max_result_chars`); a longer result is cut, with a marker saying so.
pub const TOOL_MAX_RESULT_CHARS: u64 = 20_000;
/// `fetch_url`: seconds one fetch may take, redirects and body included (`[tools]
/// fetch_timeout_secs`).
pub const FETCH_TIMEOUT_SECS: u64 = 20;
/// `fetch_url`: the most bytes of a body read; the rest is never downloaded (`[tools]
/// max_fetch_bytes`). 2 MiB.
pub const FETCH_MAX_BYTES: u64 = 2 * 1024 * 1024;
/// `fetch_url`: redirects followed before giving up; each target is checked like the first URL.
pub const FETCH_MAX_REDIRECTS: usize = 5;
/// `read_file`: the most bytes of a file read (`[tools] max_file_bytes`). 1 MiB.
pub const FILE_MAX_BYTES: u64 = 1024 * 1024;
/// `list_dir`: the most entries listed (`[tools] max_list_entries`).
pub const LIST_MAX_ENTRIES: u64 = 500;
