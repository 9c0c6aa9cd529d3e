//! Knowing the server: `maestro models` lists what the configured provider offers with the
//! configured models marked, and `maestro doctor` checks the configuration end to end, one
//! line per check with the fix for each failure.
//!
//! A front end like `headless`: it reads the config, asks the provider through
//! `llm::Provider` (`list_models`, one tiny `complete` per configured model) and prints. Every
//! network step is bounded by [`CHECK_TIMEOUT`], so neither command can hang. The doctor
//! asks the server afresh (it does not load what earlier runs learnt about it) and replaces
//! that memory in the database with what it found. It never prints
//! a key (only the name of its variable), sanitises whatever a server sent before printing it,
//! and does not use the printing macros (they panic when a write fails).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::EngineArgs;
use crate::config::{Config, ConfigError, FileConfig, ProviderConfig, ProviderKind};
use crate::defaults;
use crate::engine::run::RunSettings;
use crate::headless::{exit, say};
use crate::llm::{CallError, ChatRequest, Completion, DeltaSink, Message, Provider};
use crate::protocol::CallRole;
use crate::sanitize::{sanitize_line, write_json};

/// The longest any one check may take: listing the models, or one tiny call.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(defaults::CHECK_TIMEOUT_SECS);

/// Tokens a check call may spend: enough for a one-word answer (and a short preamble from a
/// chatty model), small enough to cost nothing.
const CHECK_MAX_TOKENS: u32 = 32;

// ---- what is configured ---------------------------------------------------------------------

/// A model the configuration uses, and where: config keys (`planner`, `worker`,
/// `synthesizer`, `roles.NAME`), in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    pub model: String,
    pub uses: Vec<String>,
}

/// Every distinct model the run settings name, in the order planner, worker, synthesiser,
/// then worker roles with a model of their own.
pub fn configured_models(run: &RunSettings) -> Vec<Configured> {
    let mut out: Vec<Configured> = Vec::new();
    let mut add = |model: &str, use_: String| match out.iter_mut().find(|c| c.model == model) {
        Some(c) => c.uses.push(use_),
        None => out.push(Configured {
            model: model.to_owned(),
            uses: vec![use_],
        }),
    };
    add(&run.planner.model, "planner".to_owned());
    add(&run.worker.model, "worker".to_owned());
    add(&run.synthesizer.model, "synthesizer".to_owned());
    for role in &run.roles {
        if let Some(model) = &role.model {
            add(model, format!("roles.{}", role.name));
        }
    }
    out
}

/// Whether the server's list has `model`. Ollama lists `llama3.1:latest` and answers to
/// `llama3.1`, so the implicit `:latest` tag counts.
pub fn offers(ids: &[String], model: &str) -> bool {
    ids.iter()
        .any(|id| id == model || id.strip_suffix(":latest") == Some(model))
}

/// Up to three listed ids that look like `model` (one contains the other), for a fix line.
fn close_matches<'a>(ids: &'a [String], model: &str) -> Vec<&'a str> {
    let wanted = model.to_ascii_lowercase();
    ids.iter()
        .filter(|id| {
            let id = id.to_ascii_lowercase();
            id.contains(&wanted) || wanted.contains(&id)
        })
        .take(3)
        .map(String::as_str)
        .collect()
}

/// The provider's base URL fit to print: no credentials or query (some proxies take a key
/// there). `None` for the demo provider.
fn shown_url(provider: &ProviderConfig) -> Option<String> {
    let url = match provider {
        ProviderConfig::Demo(_) => return None,
        ProviderConfig::OpenAi(c) => &c.base_url,
        ProviderConfig::Anthropic(c) => &c.base_url,
    };
    Some(match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.to_string().trim_end_matches('/').to_owned()
        }
        Err(_) => "the configured URL".to_owned(),
    })
}

/// List the provider's models within [`CHECK_TIMEOUT`], and how long it took.
async fn list(provider: &dyn Provider) -> (Result<Vec<String>, CallError>, Duration) {
    let started = Instant::now();
    let result = match tokio::time::timeout(CHECK_TIMEOUT, provider.list_models()).await {
        Ok(result) => result,
        Err(_) => Err(CallError::transient(
            "timeout",
            format!(
                "no answer to the model list request within {}s",
                CHECK_TIMEOUT.as_secs()
            ),
        )),
    };
    (result, started.elapsed())
}

// ---- maestro models -------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct ListedModel<'a> {
    id: &'a str,
    /// Config keys that name this model; empty when none does.
    configured_for: &'a [String],
    /// Whether the server lists it (false only for a configured model it does not).
    offered: bool,
}

#[derive(Debug, Serialize)]
struct Listing<'a> {
    provider: String,
    base_url: Option<String>,
    models: Vec<ListedModel<'a>>,
}

/// `maestro models`: the provider's models, sorted, the configured ones marked (`*`) and a
/// configured one the server does not offer flagged (`✗`). Returns the exit code.
pub async fn models(config: &Config, provider: Arc<dyn Provider>, json: bool) -> i32 {
    let (result, _) = list(provider.as_ref()).await;
    let ids = match result {
        Ok(ids) => ids,
        Err(e) => {
            let whom = shown_url(&config.provider).unwrap_or_else(|| provider.name().to_owned());
            say(&format!(
                "maestro: cannot list the models of {whom}: {}",
                sanitize_line(&e.message)
            ));
            return exit::FAILED;
        }
    };
    let configured = configured_models(&config.run);
    let no_uses: &[String] = &[];
    let mut rows: Vec<ListedModel> = ids
        .iter()
        .map(|id| ListedModel {
            id,
            configured_for: configured
                .iter()
                .find(|c| c.model == *id || format!("{}:latest", c.model) == *id)
                .map_or(no_uses, |c| c.uses.as_slice()),
            offered: true,
        })
        .collect();
    rows.extend(
        configured
            .iter()
            .filter(|c| !offers(&ids, &c.model))
            .map(|c| ListedModel {
                id: &c.model,
                configured_for: &c.uses,
                offered: false,
            }),
    );
    rows.sort_by(|a, b| a.id.cmp(b.id));
    let missing = rows.iter().filter(|r| !r.offered).count();

    let mut out = std::io::stdout().lock();
    let written = if json {
        let listing = Listing {
            provider: config.provider.kind().to_string(),
            base_url: shown_url(&config.provider),
            models: rows,
        };
        write_json(&mut out, &listing)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_rows(&mut out, &rows)
    }
    .and_then(|()| out.flush());
    drop(out);
    if let Err(e) = written {
        say(&format!("maestro: cannot write the model list: {e}"));
        return exit::FAILED;
    }
    if !json && missing > 0 {
        say(&format!(
            "maestro: {missing} configured model{} not offered by the server (marked ✗); \
             `maestro doctor` checks whether {} answer{}",
            if missing == 1 { " is" } else { "s are" },
            if missing == 1 { "it" } else { "they" },
            if missing == 1 { "s" } else { "" },
        ));
    }
    exit::OK
}

fn write_rows(out: &mut impl Write, rows: &[ListedModel]) -> std::io::Result<()> {
    if rows.is_empty() {
        return writeln!(out, "(the server lists no models)");
    }
    let width = rows
        .iter()
        .map(|r| sanitize_line(r.id).chars().count())
        .max()
        .unwrap_or(0);
    for row in rows {
        let mark = match (row.offered, row.configured_for.is_empty()) {
            (false, _) => "✗",
            (true, false) => "*",
            (true, true) => " ",
        };
        let id = sanitize_line(row.id);
        if row.configured_for.is_empty() {
            writeln!(out, "{mark} {id}")?;
        } else {
            let mut uses = row.configured_for.join(", ");
            if !row.offered {
                uses.push_str(" (not offered by the server)");
            }
            writeln!(out, "{mark} {id:<width$}  {uses}")?;
        }
    }
    Ok(())
}

// ---- maestro doctor -------------------------------------------------------------------------

/// How a check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Pass,
    Fail,
    /// Works, with something worth knowing (usage is estimated); does not fail the doctor.
    Note,
    /// Not tried, because an earlier check failed or there is nothing to check.
    Skipped,
}

/// Writes the check lines as they finish, coloured on a terminal, and counts the failures.
struct Report {
    color: bool,
    failed: usize,
    checks: usize,
}

impl Report {
    fn new() -> Self {
        Self {
            color: std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            failed: 0,
            checks: 0,
        }
    }

    /// One check: its mark, its name, what was found, and for a failure the fix.
    fn line(&mut self, mark: Mark, name: &str, found: &str, fix: Option<&str>) {
        let (glyph, color) = match mark {
            Mark::Pass => ("✓", "32"),
            Mark::Fail => ("✗", "31"),
            Mark::Note => ("!", "33"),
            Mark::Skipped => ("-", "2"),
        };
        if mark != Mark::Skipped {
            self.checks += 1;
        }
        if mark == Mark::Fail {
            self.failed += 1;
        }
        let glyph = if self.color {
            format!("\x1b[{color}m{glyph}\x1b[0m")
        } else {
            glyph.to_owned()
        };
        let mut text = format!("{glyph} {name:<8} {}\n", sanitize_line(found));
        if let Some(fix) = fix {
            text.push_str(&format!("  {:<8} fix: {}\n", "", sanitize_line(fix)));
        }
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            tracing::warn!(error = %e, "cannot write a doctor line");
        }
    }

    fn pass(&mut self, name: &str, found: &str) {
        self.line(Mark::Pass, name, found, None);
    }

    fn fail(&mut self, name: &str, found: &str, fix: &str) {
        self.line(Mark::Fail, name, found, Some(fix));
    }

    /// The last line, and the exit code.
    fn finish(&mut self, code_if_failed: i32) -> i32 {
        let text = if self.failed == 0 {
            format!("all {} checks passed", self.checks)
        } else {
            format!("{} of {} checks failed", self.failed, self.checks)
        };
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "\n{text}").and_then(|()| out.flush()) {
            tracing::warn!(error = %e, "cannot write the doctor's summary");
        }
        if self.failed == 0 {
            exit::OK
        } else {
            code_if_failed
        }
    }
}

/// The variable the key is read from, as the config merge picks it.
fn key_variable(args: &EngineArgs, file: &FileConfig, kind: ProviderKind) -> Option<String> {
    let (from_file, default) = match kind {
        ProviderKind::Demo => return None,
        ProviderKind::OpenAi => (&file.openai.api_key_env, defaults::OPENAI_KEY_ENV),
        ProviderKind::Anthropic => (&file.anthropic.api_key_env, defaults::ANTHROPIC_KEY_ENV),
    };
    Some(
        args.api_key_env
            .clone()
            .or(from_file.as_ref().map(|v| v.0.clone()))
            .unwrap_or_else(|| default.to_owned()),
    )
}

/// `maestro doctor`. Returns the exit code: 0 when every check passed, 1 when one failed, 2
/// when the configuration itself is wrong (then nothing is called).
pub async fn doctor(args: &EngineArgs) -> i32 {
    let mut report = Report::new();
    let env = |var: &str| std::env::var(var).ok();

    // The file.
    let (file, source) = match FileConfig::load(args.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            report.fail(
                "config",
                &e.to_string(),
                "correct the file (the message names the key and the line), or pass another \
                 with --config",
            );
            return report.finish(exit::USAGE);
        }
    };
    match &source {
        Some(path) => report.pass("config", &format!("{} (read)", path.display())),
        None => {
            let looked = crate::config::default_config_path()
                .map(|p| format!(" (no file at {})", p.display()))
                .unwrap_or_default();
            report.pass("config", &format!("defaults and flags{looked}"));
        }
    }
    let kind = args
        .provider
        .or(file.provider)
        .unwrap_or(ProviderKind::Demo);
    let variable = key_variable(args, &file, kind);

    // Everything merged: a bad value or a missing key ends here.
    let config = match Config::merge(args, file, &env) {
        Ok(mut config) => {
            config.source = source;
            config
        }
        Err(ConfigError::MissingKey { var, .. }) => {
            report.fail(
                "key",
                &format!("{var} is not set"),
                &format!(
                    "export {var}=<your key>, or name the variable that holds it with \
                     api_key_env / --api-key-env"
                ),
            );
            return report.finish(exit::USAGE);
        }
        Err(ConfigError::EmptyKey { var, .. }) => {
            report.fail(
                "key",
                &format!("{var} is set but empty"),
                &format!("put the key in {var}, or name another variable with api_key_env"),
            );
            return report.finish(exit::USAGE);
        }
        Err(e) => {
            report.fail(
                "config",
                &e.to_string(),
                "correct the value named above (in the file, a MAESTRO_* variable or a flag)",
            );
            return report.finish(exit::USAGE);
        }
    };

    let url = match shown_url(&config.provider) {
        Some(url) => url,
        None => {
            report.pass(
                "provider",
                "demo: simulated and offline, so there is no key, server or model to check",
            );
            return report.finish(exit::FAILED);
        }
    };
    report.pass("provider", &format!("{kind} at {url}"));
    match (&config.provider, variable) {
        (ProviderConfig::OpenAi(c), Some(var)) if c.api_key.is_none() => report.pass(
            "key",
            &format!("none needed for a local server ({var} is not set, no key is sent)"),
        ),
        (_, Some(var)) => report.pass("key", &format!("{var} is set (its value is not shown)")),
        (_, None) => {}
    }
    let provider = config.provider.build();
    let key_hint = match &config.provider {
        ProviderConfig::OpenAi(c) if c.api_key.is_none() => {
            "the server wants a key: put it in a variable and name it with api_key_env"
        }
        _ => "the key was refused: check the key in the variable named above",
    };

    // The server, through its model list.
    let (listed, took) = list(provider.as_ref()).await;
    let ids = match listed {
        Ok(ids) => {
            report.pass(
                "server",
                &format!(
                    "answered in {} and lists {} model{}",
                    crate::display::duration(took.as_millis() as u64),
                    ids.len(),
                    if ids.len() == 1 { "" } else { "s" }
                ),
            );
            Some(ids)
        }
        Err(e) if e.reason == "no model list" => {
            report.line(
                Mark::Note,
                "server",
                &format!(
                    "answered in {}, but has no model list, so the models are checked by \
                     calling them",
                    crate::display::duration(took.as_millis() as u64)
                ),
                None,
            );
            None
        }
        Err(e) if unreachable(&e) => {
            report.fail(
                "server",
                &e.message,
                &format!(
                    "is the server running at {url}? Check base_url in [{kind}] (or --base-url)"
                ),
            );
            report.line(
                Mark::Skipped,
                "calls",
                "not tried: the server cannot be reached",
                None,
            );
            return report.finish(exit::FAILED);
        }
        Err(e) => {
            let fix = if matches!(e.reason.as_str(), "401" | "403") {
                key_hint.to_owned()
            } else {
                format!("check that {url} is the API's base URL")
            };
            report.fail("server", &format!("listing models: {}", e.message), &fix);
            None
        }
    };

    // Each configured model: listed, and answering a tiny call.
    let mut usage_seen: Option<bool> = None;
    let mut planner_answered = false;
    for configured in configured_models(&config.run) {
        let uses = configured.uses.join(", ");
        let model = &configured.model;
        let role = role_of(&configured.uses);
        let (answer, took) = tiny_call(provider.as_ref(), model, role).await;
        let listed = ids.as_deref().map(|ids| offers(ids, model));
        match (listed, answer.is_ok()) {
            (Some(true), _) => report.pass("model", &format!("{model} is offered ({uses})")),
            (Some(false), true) => report.line(
                Mark::Note,
                "model",
                &format!(
                    "{model} ({uses}) is not in the server's list, but it answers (the \
                     server may take any name)"
                ),
                None,
            ),
            (Some(false), false) => {
                let similar = ids
                    .as_deref()
                    .map(|ids| close_matches(ids, model))
                    .unwrap_or_default();
                let fix = if similar.is_empty() {
                    format!("set {uses} to a model that `maestro models` lists")
                } else {
                    format!(
                        "set {uses} to one the server lists, such as {}",
                        similar.join(", ")
                    )
                };
                report.fail(
                    "model",
                    &format!("{model} is not offered by the server ({uses})"),
                    &fix,
                );
            }
            (None, _) => {}
        }
        let took = crate::display::duration(took.as_millis() as u64);
        match answer {
            Ok(completion) => {
                report.pass("call", &format!("{model} answered in {took} ({uses})"));
                usage_seen = Some(usage_seen.unwrap_or(false) || completion.usage.is_some());
                planner_answered |= configured.uses.iter().any(|u| u == "planner");
            }
            Err(e) => {
                let fix = match e.reason.as_str() {
                    "401" | "403" => key_hint.to_owned(),
                    "404" => format!(
                        "the server does not know {model}: set {uses} to a model that `maestro models` lists"
                    ),
                    "timeout" => format!(
                        "the model took longer than {}s for a few tokens: is it loaded? try again, or pick a smaller one",
                        CHECK_TIMEOUT.as_secs()
                    ),
                    _ => "see the server's message above".to_owned(),
                };
                report.fail("call", &format!("{model} ({uses}): {}", e.message), &fix);
            }
        }
    }

    // Structured output: how the planner will be asked for its plan.
    if planner_answered {
        structured_check(&mut report, provider.as_ref(), &config).await;
        remember_server(&config);
    } else {
        report.line(
            Mark::Skipped,
            "plans",
            "structured output not checked: the planner model did not answer",
            None,
        );
    }

    // Usage: what the token figures will be based on.
    let streaming = match &config.provider {
        ProviderConfig::OpenAi(c) => c.stream,
        ProviderConfig::Anthropic(c) => c.stream,
        ProviderConfig::Demo(_) => false,
    };
    let how = if streaming {
        "the stream"
    } else {
        "the answer"
    };
    match usage_seen {
        Some(true) => report.pass("usage", &format!("{how} reports token usage")),
        Some(false) => {
            let advice = match &config.provider {
                ProviderConfig::OpenAi(c) if streaming && !c.include_usage => {
                    " ([openai] include_usage = false: set it to true if the server accepts it)"
                }
                _ => "",
            };
            report.line(
                Mark::Note,
                "usage",
                &format!(
                    "{how} reports no token usage, so token counts will be estimated (marked \
                     ~){advice}"
                ),
                None,
            )
        }
        None => report.line(Mark::Skipped, "usage", "not known: no call succeeded", None),
    }
    report.finish(exit::FAILED)
}

/// The configured base URL as the providers key what they learn (`None` for the demo).
fn base_url(provider: &ProviderConfig) -> Option<&str> {
    match provider {
        ProviderConfig::Demo(_) => None,
        ProviderConfig::OpenAi(c) => Some(&c.base_url),
        ProviderConfig::Anthropic(c) => Some(&c.base_url),
    }
}

/// Which structured-output mode the planner model ends up with: one tiny structured call
/// within [`CHECK_TIMEOUT`], stepping down from the best mode as a run would. This process
/// did not load what earlier runs learnt, so the server is asked afresh.
async fn structured_check(report: &mut Report, provider: &dyn Provider, config: &Config) {
    use crate::llm::structured::{Structured, StructuredMode, is_rejection, probe};
    let Some(url) = base_url(&config.provider) else {
        return;
    };
    let model = &config.run.planner.model;
    let wanted = config.run.structured;
    let probed =
        match tokio::time::timeout(CHECK_TIMEOUT, probe(provider, url, model, wanted)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::timeout(CHECK_TIMEOUT)),
        };
    match probed {
        Ok(StructuredMode::Text) if wanted == Structured::Off => report.pass(
            "plans",
            &format!("{model} is asked for plans in plain text ([planner] structured = \"off\")"),
        ),
        Ok(StructuredMode::Text) => report.line(
            Mark::Note,
            "plans",
            &format!(
                "{model} takes no structured output here (the server rejected JSON schema \
                 and JSON mode), so plans are read from plain text"
            ),
            Some(
                "a model that cannot write JSON unaided may fail to plan: use a bigger \
                 planner model, or a server that takes `response_format` (then \
                 [planner] structured = \"schema\" or \"json\" insists on it)",
            ),
        ),
        Ok(mode) => {
            let how = match mode {
                StructuredMode::JsonSchema => "a JSON schema (`response_format` json_schema)",
                StructuredMode::JsonObject => {
                    "JSON mode with the schema (`response_format` json_object; the server \
                     rejects json_schema)"
                }
                StructuredMode::Tool => "a forced tool call (`submit_plan`)",
                StructuredMode::Text => "plain text",
            };
            report.pass("plans", &format!("{model} is asked for plans with {how}"));
        }
        Err(e) => {
            let fix = match wanted {
                Structured::Schema | Structured::Json
                    if is_rejection(&e, StructuredMode::JsonSchema)
                        || is_rejection(&e, StructuredMode::Tool) =>
                {
                    format!(
                        "the server refuses [planner] structured = \"{}\": set it to \"auto\" \
                         to step down to what it takes",
                        wanted.word()
                    )
                }
                _ if e.reason == "timeout" => format!(
                    "a structured answer of a few tokens took longer than {}s: try again, or \
                     set [planner] structured = \"off\"",
                    CHECK_TIMEOUT.as_secs()
                ),
                _ => "see the server's message above".to_owned(),
            };
            report.fail(
                "plans",
                &format!("{model}: a structured call failed: {}", e.message),
                &fix,
            );
        }
    }
}

/// Replaces what the database remembers about this server with what the checks just learnt
/// (only after the planner model answered: a server that is down teaches nothing),
/// so a server that changed (an upgrade now takes `json_schema`) is not held to its old
/// refusals. Nothing is written when runs are not saved (`--no-save`).
fn remember_server(config: &Config) {
    let (Some(url), Some(path), true) = (
        base_url(&config.provider),
        config.store.path.as_deref(),
        config.store.save,
    ) else {
        return;
    };
    let url = url.trim_end_matches('/');
    let now = crate::display::now_ms();
    let facts: Vec<crate::store::ServerFact> = crate::llm::learnt_facts()
        .into_iter()
        .filter(|f| f.base_url == url)
        .map(|f| crate::store::ServerFact {
            base_url: f.base_url,
            model: f.model,
            fact: f.fact,
            value: f.value,
            learnt_at_ms: now,
        })
        .collect();
    let saved = crate::store::Store::open(path).and_then(|db| {
        db.forget_server_facts(Some(url))?;
        db.save_server_facts(&facts)
    });
    if let Err(e) = saved {
        tracing::warn!("what the checks learnt could not be saved: {e}");
    }
}

/// The server was not reached at all: nothing else can be learnt from it.
fn unreachable(e: &CallError) -> bool {
    matches!(
        e.reason.as_str(),
        "connection" | "no response" | "tls" | "timeout" | "not the API"
    )
}

/// The call role a check call stands for (the first use of the model).
fn role_of(uses: &[String]) -> CallRole {
    match uses.first().map(String::as_str) {
        Some("planner") => CallRole::Planner,
        Some("synthesizer") => CallRole::Synthesizer,
        _ => CallRole::Worker,
    }
}

/// One call of a few tokens to `model`, within [`CHECK_TIMEOUT`], and how long it took.
async fn tiny_call(
    provider: &dyn Provider,
    model: &str,
    role: CallRole,
) -> (Result<Completion, CallError>, Duration) {
    let request = ChatRequest {
        model: model.to_owned(),
        role,
        system: String::new(),
        messages: vec![Message::user("Reply with the single word: ready")],
        max_tokens: CHECK_MAX_TOKENS,
        temperature: None,
        structured: None,
        cache: crate::llm::CachePolicy::Bypass,
        tools: Vec::new(),
    };
    let started = Instant::now();
    let call = provider.complete(request, DeltaSink::discard());
    let result = match tokio::time::timeout(CHECK_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(CallError::timeout(CHECK_TIMEOUT)),
    };
    (result, started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_implicit_latest_tag_counts_as_offered() {
        let ids = vec!["llama3.1:latest".to_owned(), "qwen2.5:7b".to_owned()];
        assert!(offers(&ids, "llama3.1"));
        assert!(offers(&ids, "qwen2.5:7b"));
        assert!(!offers(&ids, "qwen2.5"));
        assert_eq!(close_matches(&ids, "qwen2.5"), ["qwen2.5:7b"]);
    }

    #[test]
    fn configured_models_are_grouped_by_model_in_role_order() {
        let mut run = crate::config::Config::merge(
            &EngineArgs::default(),
            FileConfig::default(),
            &|_: &str| None,
        )
        .expect("defaults")
        .run;
        run.planner.model = "big".into();
        run.worker.model = "small".into();
        run.synthesizer.model = "big".into();
        run.roles[1].model = Some("small".into());
        let name = run.roles[1].name.clone();
        assert_eq!(
            configured_models(&run),
            [
                Configured {
                    model: "big".into(),
                    uses: vec!["planner".into(), "synthesizer".into()]
                },
                Configured {
                    model: "small".into(),
                    uses: vec!["worker".into(), format!("roles.{name}")]
                },
            ]
        );
    }
}
