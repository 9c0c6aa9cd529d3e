//! Configuration: the TOML file, environment variables and command-line flags, merged with
//! the precedence flags > environment > file > defaults, and checked with errors that name the
//! key, the file and the line.
//!
//! Values are validated while they are deserialised (through small checked types), so the
//! TOML parser can point at the offending line. API keys are read from the environment
//! variable the config names, kept in an `ApiKey` (which never prints) and never written
//! anywhere. This module reads files and the environment; it starts nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::cli::EngineArgs;
pub use crate::cli::ProviderKind;
use crate::defaults;
use crate::engine::executor::ExecutorSettings;
use crate::engine::prompt::CallSpec;
use crate::engine::roles::{self, WorkerRole};
use crate::engine::run::RunSettings;
use crate::llm::ApiKey;
use crate::llm::anthropic::AnthropicConfig;
use crate::llm::demo::DemoConfig;
use crate::llm::openai::OpenAiConfig;
use crate::llm::quirks::TokenParam;

/// A configuration problem. Every one is a usage error (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "the {provider} provider needs an API key, but the environment variable {var} is not set \
         (set it, or name another variable with `api_key_env` / --api-key-env)"
    )]
    MissingKey { provider: &'static str, var: String },
    #[error(
        "the {provider} provider needs an API key, but the environment variable {var} is empty \
         (put the key in it, or name another variable with `api_key_env` / --api-key-env)"
    )]
    EmptyKey { provider: &'static str, var: String },
}

// ---- the file --------------------------------------------------------------------------

/// The config file as written. Every section and key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub provider: Option<ProviderKind>,
    #[serde(default)]
    pub openai: OpenAiSection,
    #[serde(default)]
    pub anthropic: AnthropicSection,
    #[serde(default)]
    pub demo: DemoSection,
    #[serde(default)]
    pub models: ModelsSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub roles: BTreeMap<String, RoleSection>,
    #[serde(default)]
    pub ui: UiSection,
    #[serde(default)]
    pub planner: PlannerSection,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub cache: CacheSection,
    /// `[[mcp.servers]]`: MCP servers whose tools roles may use.
    #[serde(default)]
    pub mcp: crate::mcp::McpConfig,
}

/// `[cache]`: the result cache of worker answers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    pub enabled: Option<bool>,
    /// How long an answer stays usable: `7d`, `12h`, `30m`.
    pub ttl: Option<Age>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerSection {
    /// How the planner asks for structured output.
    pub structured: Option<crate::llm::structured::Structured>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSection {
    pub base_url: Option<HttpUrl>,
    pub api_key_env: Option<EnvName>,
    pub stream: Option<bool>,
    pub include_usage: Option<bool>,
    /// `max_tokens` or `max_completion_tokens`; by server when absent.
    pub token_param: Option<TokenParam>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnthropicSection {
    pub base_url: Option<HttpUrl>,
    pub api_key_env: Option<EnvName>,
    pub stream: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSection {
    pub failure_rate: Option<Fraction>,
    pub failures_per_subtask: Option<u32>,
    pub tokens_per_second: Option<Positive>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsSection {
    pub planner: Option<NonEmpty>,
    pub worker: Option<NonEmpty>,
    pub synthesizer: Option<NonEmpty>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub concurrency: Option<Positive>,
    pub max_subtasks: Option<Positive>,
    pub timeout_secs: Option<Positive>,
    pub idle_timeout_secs: Option<Positive>,
    pub retries: Option<u32>,
    pub max_tokens: Option<Positive>,
    pub temperature: Option<Temperature>,
    pub max_dependency_chars: Option<Positive>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSection {
    pub description: Option<String>,
    pub system_prompt: Option<String>,
    pub model: Option<NonEmpty>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiSection {
    pub bell: Option<bool>,
    pub mouse: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// The run history database.
    pub path: Option<PathBuf>,
}

/// Where runs are saved, and whether.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// `None` when no data folder is known and none was named.
    pub path: Option<PathBuf>,
    /// False with `--no-save`.
    pub save: bool,
    /// The result cache, kept in the same database.
    pub cache: CacheConfig,
}

/// Whether worker answers are reused, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// False with `--no-cache`, `[cache] enabled = false`, or `--no-save` (nothing is read
    /// from or written to the database then).
    pub enabled: bool,
    pub ttl: Duration,
}

impl StoreConfig {
    /// `--db` (or `MAESTRO_DB`) over the file's `[store] path` over the platform default.
    fn merge(args: &EngineArgs, file: &FileConfig) -> Self {
        Self {
            path: args
                .db
                .clone()
                .or_else(|| file.store.path.clone())
                .or_else(crate::store::default_path),
            save: !args.no_save,
            cache: CacheConfig {
                enabled: !args.no_save && !args.no_cache && file.cache.enabled.unwrap_or(true),
                ttl: file
                    .cache
                    .ttl
                    .as_ref()
                    .map_or(Duration::from_secs(defaults::CACHE_TTL_SECS), |a| a.0),
            },
        }
    }

    /// Only the file's store settings, for commands that run nothing (history, show, rm,
    /// gc): they must work without a provider's key.
    pub fn resolve(args: &EngineArgs) -> Result<Self, ConfigError> {
        let (file, _) = FileConfig::load(args.config.as_deref())?;
        Ok(Self::merge(args, &file))
    }
}

/// Checked value types: a bad value fails deserialisation, so the error carries its line.
macro_rules! checked {
    ($name:ident, $inner:ty, $expect:literal, $ok:expr) => {
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name(pub $inner);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = <$inner>::deserialize(d)?;
                let ok: fn(&$inner) -> bool = $ok;
                if ok(&v) {
                    Ok(Self(v))
                } else {
                    Err(serde::de::Error::custom(format!(
                        concat!("invalid value {:?}: expected ", $expect),
                        v
                    )))
                }
            }
        }
    };
}

checked!(Positive, u64, "a whole number above 0", |v| *v > 0);

/// An age such as `7d`, `12h`, `30m`, `45s`, `2w`.
#[derive(Debug, Clone, PartialEq)]
pub struct Age(pub Duration);
impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = String::deserialize(d)?;
        crate::display::parse_age(&v).map(Self).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid value {v:?}: expected an age such as \"7d\", \"12h\" or \"30m\""
            ))
        })
    }
}
checked!(Fraction, f64, "a number from 0.0 to 1.0", |v| (0.0..=1.0)
    .contains(v));
checked!(Temperature, f32, "a number from 0 to 2", |v| {
    defaults::TEMPERATURE_RANGE.contains(v)
});
checked!(NonEmpty, String, "a non-empty string", |v| !v
    .trim()
    .is_empty());
checked!(
    HttpUrl,
    String,
    "an http:// or https:// URL with a host",
    |v| is_http_url(v)
);
checked!(
    EnvName,
    String,
    "an environment variable name (letters, digits, _)",
    |v| is_env_name(v)
);

/// Checked here, not at the first call, so that `http://[::1` is a configuration error
/// before anything runs rather than a failed run later.
fn is_http_url(v: &str) -> bool {
    (v.starts_with("http://") || v.starts_with("https://"))
        && reqwest::Url::parse(v).is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty()))
}

fn is_env_name(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where the config file is looked for when `--config` is not given.
pub fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "maestro").map(|d| d.config_dir().join("config.toml"))
}

/// Where logs (and later the run history) go.
pub fn data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "maestro").map(|d| d.data_dir().to_path_buf())
}

impl FileConfig {
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_owned(),
        })
    }

    /// Read `explicit` (which must exist) or the default path (which may not).
    pub fn load(explicit: Option<&Path>) -> Result<(Self, Option<PathBuf>), ConfigError> {
        let (path, required) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => match default_config_path() {
                Some(p) => (p, false),
                None => return Ok((Self::default(), None)),
            },
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((Self::parse(&text, &path)?, Some(path))),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok((Self::default(), None))
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }
}

// ---- the resolved config ---------------------------------------------------------------

/// Which provider, fully configured.
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    Demo(DemoConfig),
    OpenAi(OpenAiConfig),
    Anthropic(AnthropicConfig),
}

impl ProviderConfig {
    /// The provider this config describes.
    pub fn build(&self) -> std::sync::Arc<dyn crate::llm::Provider> {
        use crate::llm::{anthropic::Anthropic, demo::Demo, openai::OpenAi};
        match self {
            Self::Demo(c) => std::sync::Arc::new(Demo::new(c.clone())),
            Self::OpenAi(c) => std::sync::Arc::new(OpenAi::new(c.clone())),
            Self::Anthropic(c) => std::sync::Arc::new(Anthropic::new(c.clone())),
        }
    }

    /// The server's base URL; empty for the demo provider, which has none.
    pub fn base_url(&self) -> &str {
        match self {
            Self::Demo(_) => "",
            Self::OpenAi(c) => &c.base_url,
            Self::Anthropic(c) => &c.base_url,
        }
    }

    pub fn kind(&self) -> ProviderKind {
        match self {
            Self::Demo(_) => ProviderKind::Demo,
            Self::OpenAi(_) => ProviderKind::OpenAi,
            Self::Anthropic(_) => ProviderKind::Anthropic,
        }
    }
}

/// Everything the engine and the front ends need, after merging and checking.
#[derive(Debug, Clone)]
pub struct Config {
    pub provider: ProviderConfig,
    pub run: RunSettings,
    pub executor: ExecutorSettings,
    /// Ring the terminal bell when a long run ends (dashboard).
    pub bell: bool,
    /// Capture the mouse in the dashboard (click, wheel).
    pub mouse: bool,
    /// The file the settings came from, if any.
    pub source: Option<PathBuf>,
    /// Where runs are saved.
    pub store: StoreConfig,
    /// The MCP servers (started only when a role uses their tools).
    pub mcp: crate::mcp::McpConfig,
}

pub const DEFAULT_OPENAI_URL: &str = defaults::OPENAI_URL;
pub const DEFAULT_ANTHROPIC_URL: &str = defaults::ANTHROPIC_URL;

impl Config {
    /// Load the file named by the flags (or the default one) and merge everything. `env`
    /// looks up environment variables (the real environment outside tests).
    pub fn resolve(
        args: &EngineArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let (file, source) = FileConfig::load(args.config.as_deref())?;
        let mut config = Self::merge(args, file, env)?;
        config.source = source;
        Ok(config)
    }

    /// Merge flags (already combined with `MAESTRO_*` variables by clap) over the file over
    /// the defaults.
    pub fn merge(
        args: &EngineArgs,
        file: FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let kind = args
            .provider
            .or(file.provider)
            .unwrap_or(ProviderKind::Demo);
        let limits = &file.limits;
        let timeout = Duration::from_secs(
            args.timeout
                .or(limits.timeout_secs.as_ref().map(|v| v.0))
                .unwrap_or(defaults::TIMEOUT_SECS),
        );
        let idle = Duration::from_secs(
            limits
                .idle_timeout_secs
                .as_ref()
                .map_or(defaults::IDLE_TIMEOUT_SECS, |v| v.0),
        );
        if let Some(url) = &args.base_url
            && !is_http_url(url)
        {
            return Err(ConfigError::Invalid(format!(
                "--base-url {url:?}: expected an http:// or https:// URL with a host"
            )));
        }
        if let Some(var) = &args.api_key_env
            && !is_env_name(var)
        {
            return Err(ConfigError::Invalid(format!(
                "--api-key-env {var:?}: expected an environment variable name"
            )));
        }
        // A stray newline or space around a key (pasted from a file) is never part of it.
        let read_key = |var: &str| {
            env(var)
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .map(ApiKey::new)
        };
        // Set but blank is a different mistake from not set, and says so.
        let no_key = |provider: &'static str, var: String| {
            if env(&var).is_some() {
                ConfigError::EmptyKey { provider, var }
            } else {
                ConfigError::MissingKey { provider, var }
            }
        };

        let (provider, default_model) = match kind {
            ProviderKind::Demo => {
                let d = &file.demo;
                (
                    ProviderConfig::Demo(DemoConfig {
                        failure_rate: d
                            .failure_rate
                            .as_ref()
                            .map_or(defaults::DEMO_FAILURE_RATE, |v| v.0),
                        failures_per_subtask: d
                            .failures_per_subtask
                            .unwrap_or(defaults::DEMO_FAILURES_PER_SUBTASK),
                        tokens_per_second: d
                            .tokens_per_second
                            .as_ref()
                            .map_or(defaults::DEMO_TOKENS_PER_SECOND, |v| v.0)
                            as f64,
                    }),
                    "demo",
                )
            }
            ProviderKind::OpenAi => {
                let s = &file.openai;
                let base_url = args
                    .base_url
                    .clone()
                    .or(s.base_url.as_ref().map(|u| u.0.clone()))
                    .unwrap_or_else(|| DEFAULT_OPENAI_URL.to_owned());
                let named = args
                    .api_key_env
                    .clone()
                    .or(s.api_key_env.as_ref().map(|v| v.0.clone()));
                let var = named
                    .clone()
                    .unwrap_or_else(|| defaults::OPENAI_KEY_ENV.to_owned());
                let api_key = read_key(&var);
                // A local server (Ollama, llama.cpp, vLLM…) needs no key, so a missing
                // default variable is only an error for OpenAI's own API or when a variable
                // was named on purpose.
                if api_key.is_none() && (named.is_some() || base_url.contains("api.openai.com")) {
                    return Err(no_key("openai", var));
                }
                (
                    ProviderConfig::OpenAi(OpenAiConfig {
                        base_url,
                        api_key,
                        stream: s.stream.unwrap_or(true),
                        include_usage: s.include_usage.unwrap_or(true),
                        idle_timeout: idle,
                        token_param: s.token_param,
                    }),
                    defaults::OPENAI_MODEL,
                )
            }
            ProviderKind::Anthropic => {
                let s = &file.anthropic;
                let var = args
                    .api_key_env
                    .clone()
                    .or(s.api_key_env.as_ref().map(|v| v.0.clone()))
                    .unwrap_or_else(|| defaults::ANTHROPIC_KEY_ENV.to_owned());
                let Some(api_key) = read_key(&var) else {
                    return Err(no_key("anthropic", var));
                };
                (
                    ProviderConfig::Anthropic(AnthropicConfig {
                        base_url: args
                            .base_url
                            .clone()
                            .or(s.base_url.as_ref().map(|u| u.0.clone()))
                            .unwrap_or_else(|| DEFAULT_ANTHROPIC_URL.to_owned()),
                        api_key,
                        stream: s.stream.unwrap_or(true),
                        idle_timeout: idle,
                    }),
                    defaults::ANTHROPIC_MODEL,
                )
            }
        };

        let m = &file.models;
        let pick = |specific: &Option<String>, from_file: &Option<NonEmpty>| -> String {
            specific
                .clone()
                .or(args.model.clone())
                .or(from_file.as_ref().map(|v| v.0.clone()))
                .unwrap_or_else(|| default_model.to_owned())
        };
        let max_tokens = limits
            .max_tokens
            .as_ref()
            .map_or(defaults::MAX_TOKENS, |v| v.0)
            .min(u32::MAX as u64) as u32;
        let spec = |model: String| CallSpec {
            model,
            max_tokens,
            temperature: limits.temperature.as_ref().map(|t| t.0),
        };

        let roles = merge_roles(roles::builtin_roles(), &file.roles)?;
        let store = StoreConfig::merge(args, &file);
        file.mcp.validate().map_err(ConfigError::Invalid)?;
        Ok(Self {
            provider,
            run: RunSettings {
                max_subtasks: args
                    .max_subtasks
                    .or(limits.max_subtasks.as_ref().map(|v| v.0))
                    .unwrap_or(defaults::MAX_SUBTASKS) as usize,
                concurrency: args
                    .concurrency
                    .or(limits.concurrency.as_ref().map(|v| v.0))
                    .unwrap_or(defaults::CONCURRENCY) as usize,
                retries: args.retries.or(limits.retries).unwrap_or(defaults::RETRIES),
                retry_base: Duration::from_secs(defaults::RETRY_BASE_SECS),
                retry_max: Duration::from_secs(defaults::RETRY_MAX_SECS),
                retry_after_limit: Duration::from_secs(defaults::RETRY_AFTER_LIMIT_SECS),
                planner: spec(pick(&args.planner_model, &m.planner)),
                worker: spec(pick(&args.worker_model, &m.worker)),
                synthesizer: spec(pick(&args.synth_model, &m.synthesizer)),
                roles,
                seed: 0x9E37_79B9_7F4A_7C15,
                stop_after_plan: false,
                max_dependency_chars: limits
                    .max_dependency_chars
                    .as_ref()
                    .map(|v| v.0)
                    .or(defaults::MAX_DEPENDENCY_CHARS)
                    .map(|v| usize::try_from(v).unwrap_or(usize::MAX)),
                structured: file.planner.structured.unwrap_or_else(|| {
                    crate::llm::structured::Structured::from_word(defaults::PLANNER_STRUCTURED)
                        .unwrap_or_default()
                }),
            },
            executor: ExecutorSettings {
                call_timeout: timeout,
                ..ExecutorSettings::default()
            },
            bell: file.ui.bell.unwrap_or(true),
            mouse: file.ui.mouse.unwrap_or(true),
            source: None,
            store,
            mcp: file.mcp,
        })
    }

    /// `openai · planner gpt-4o · workers gpt-4o-mini`: for status lines. Never shows a key.
    pub fn describe(&self) -> String {
        let r = &self.run;
        if let ProviderConfig::Demo(_) = self.provider {
            return "demo provider (simulated, offline)".to_owned();
        }
        if r.planner.model == r.worker.model && r.worker.model == r.synthesizer.model {
            format!("{} · {}", self.provider.kind(), r.worker.model)
        } else {
            format!(
                "{} · planner {} · workers {} · synth {}",
                self.provider.kind(),
                r.planner.model,
                r.worker.model,
                r.synthesizer.model
            )
        }
    }
}

/// Built-in roles with the file's `[roles.NAME]` tables applied: fields of a known role are
/// replaced, a new name adds a role (it then needs a description and a system prompt).
fn merge_roles(
    mut roles: Vec<WorkerRole>,
    sections: &BTreeMap<String, RoleSection>,
) -> Result<Vec<WorkerRole>, ConfigError> {
    for (name, section) in sections {
        let existing = roles.iter_mut().find(|r| r.name.eq_ignore_ascii_case(name));
        match existing {
            Some(role) => {
                if let Some(d) = &section.description {
                    role.description = d.clone();
                }
                if let Some(p) = &section.system_prompt {
                    role.system_prompt = p.clone();
                }
                if let Some(m) = &section.model {
                    role.model = Some(m.0.clone());
                }
            }
            None => {
                let (Some(description), Some(system_prompt)) =
                    (&section.description, &section.system_prompt)
                else {
                    return Err(ConfigError::Invalid(format!(
                        "[roles.{name}] is a new worker role, so it needs both `description` and \
                         `system_prompt`"
                    )));
                };
                roles.push(WorkerRole {
                    name: name.clone(),
                    description: description.clone(),
                    system_prompt: system_prompt.clone(),
                    model: section.model.as_ref().map(|m| m.0.clone()),
                });
            }
        }
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn the_example_config_parses_and_matches_the_defaults() {
        let file = parse(include_str!("../config.example.toml")).expect("example parses");
        let from_example = Config::merge(&EngineArgs::default(), file, &no_env).expect("valid");
        let defaults =
            Config::merge(&EngineArgs::default(), FileConfig::default(), &no_env).expect("valid");
        assert_eq!(from_example.run.concurrency, defaults.run.concurrency);
        assert_eq!(from_example.run.max_subtasks, defaults.run.max_subtasks);
        assert_eq!(from_example.run.retries, defaults.run.retries);
        assert_eq!(
            from_example.executor.call_timeout,
            defaults.executor.call_timeout
        );
        assert_eq!(from_example.run.worker, defaults.run.worker);
        assert_eq!(from_example.run.structured, defaults.run.structured);
        assert_eq!(
            defaults.run.structured.word(),
            crate::defaults::PLANNER_STRUCTURED
        );
        assert_eq!(from_example.bell, defaults.bell);
        assert!(matches!(
            (&from_example.provider, &defaults.provider),
            (ProviderConfig::Demo(a), ProviderConfig::Demo(b)) if a == b
        ));
    }

    #[test]
    fn an_unknown_key_names_the_key_the_file_and_the_line() {
        let err = parse("[limits]\nconcurrency = 2\nconcurency = 3\n")
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("concurency"), "{err}");
    }

    #[test]
    fn a_bad_value_names_the_line_and_what_was_expected() {
        let err = parse("[limits]\n\nconcurrency = 0\n")
            .expect_err("zero")
            .to_string();
        assert!(err.contains("line 3") && err.contains("above 0"), "{err}");
        let err = parse("[demo]\nfailure_rate = 1.5\n")
            .expect_err("range")
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("0.0 to 1.0"),
            "{err}"
        );
        let err = parse("[openai]\nbase_url = \"localhost:11434\"\n")
            .expect_err("scheme")
            .to_string();
        assert!(err.contains("http://"), "{err}");
        let err = parse("provider = \"gemini\"\n")
            .expect_err("provider")
            .to_string();
        assert!(err.contains("gemini") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let file = parse("[limits]\nconcurrency = 3\nretries = 5\n").expect("valid");
        let args = EngineArgs {
            concurrency: Some(7),
            ..EngineArgs::default()
        };
        let config = Config::merge(&args, file, &no_env).expect("valid");
        assert_eq!(config.run.concurrency, 7);
        assert_eq!(config.run.retries, 5);
        assert_eq!(config.run.max_subtasks, 8);
    }

    #[test]
    fn model_flags_apply_per_role_over_the_all_roles_flag() {
        let args = EngineArgs {
            provider: Some(ProviderKind::OpenAi),
            base_url: Some("http://localhost:11434/v1".into()),
            model: Some("llama3".into()),
            planner_model: Some("qwen".into()),
            ..EngineArgs::default()
        };
        let config = Config::merge(&args, FileConfig::default(), &no_env).expect("valid");
        assert_eq!(config.run.planner.model, "qwen");
        assert_eq!(config.run.worker.model, "llama3");
        assert_eq!(config.run.synthesizer.model, "llama3");
    }

    #[test]
    fn a_local_openai_server_needs_no_key_but_the_real_api_does() {
        let local = EngineArgs {
            provider: Some(ProviderKind::OpenAi),
            base_url: Some("http://localhost:11434/v1".into()),
            ..EngineArgs::default()
        };
        let config = Config::merge(&local, FileConfig::default(), &no_env).expect("no key needed");
        assert!(matches!(config.provider, ProviderConfig::OpenAi(ref c) if c.api_key.is_none()));

        let real = EngineArgs {
            provider: Some(ProviderKind::OpenAi),
            ..EngineArgs::default()
        };
        let err = Config::merge(&real, FileConfig::default(), &no_env)
            .expect_err("key needed")
            .to_string();
        assert!(err.contains("OPENAI_API_KEY"), "{err}");
    }

    #[test]
    fn a_named_key_variable_must_be_set_and_is_never_shown() {
        let args = EngineArgs {
            provider: Some(ProviderKind::Anthropic),
            api_key_env: Some("MY_KEY".into()),
            ..EngineArgs::default()
        };
        let err = Config::merge(&args, FileConfig::default(), &no_env)
            .expect_err("unset")
            .to_string();
        assert!(err.contains("MY_KEY"), "{err}");
        let env = |v: &str| (v == "MY_KEY").then(|| "sk-ant-secret-value".to_owned());
        let config = Config::merge(&args, FileConfig::default(), &env).expect("set");
        let shown = format!("{config:?} {}", config.describe());
        assert!(!shown.contains("sk-ant-secret-value"), "{shown}");
    }

    #[test]
    fn a_new_role_needs_a_description_and_a_prompt() {
        let file = parse("[roles.legal]\nmodel = \"x\"\n").expect("parses");
        let err = Config::merge(&EngineArgs::default(), file, &no_env)
            .expect_err("incomplete")
            .to_string();
        assert!(err.contains("roles.legal"), "{err}");
        let file = parse(
            "[roles.legal]\ndescription = \"law\"\nsystem_prompt = \"be careful\"\n\
             [roles.research]\nmodel = \"big\"\n",
        )
        .expect("parses");
        let config = Config::merge(&EngineArgs::default(), file, &no_env).expect("valid");
        assert!(config.run.roles.iter().any(|r| r.name == "legal"));
        let research = roles::find(&config.run.roles, "research").expect("built in");
        assert_eq!(research.model.as_deref(), Some("big"));
        assert!(!research.system_prompt.is_empty(), "other fields kept");
    }

    #[test]
    fn temperature_must_be_a_finite_number_from_0_to_2() {
        for good in ["0", "0.7", "2.0"] {
            let file = parse(&format!("[limits]\ntemperature = {good}\n")).expect(good);
            let config = Config::merge(&EngineArgs::default(), file, &no_env).expect("valid");
            assert!(config.run.worker.temperature.is_some());
        }
        for bad in ["9.5", "-1", "nan", "inf", "-inf", "2.01"] {
            let err = parse(&format!("[limits]\n\ntemperature = {bad}\n"))
                .expect_err(bad)
                .to_string();
            assert!(
                err.contains("line 3") && err.contains("0 to 2"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_base_url_must_parse_and_have_a_host() {
        for bad in ["http://[::1", "http://", "https://exa mple.com/v1"] {
            assert!(
                parse(&format!("[openai]\nbase_url = \"{bad}\"\n")).is_err(),
                "{bad} accepted in the file"
            );
            let args = EngineArgs {
                provider: Some(ProviderKind::OpenAi),
                base_url: Some(bad.into()),
                ..EngineArgs::default()
            };
            let err = Config::merge(&args, FileConfig::default(), &no_env)
                .expect_err(bad)
                .to_string();
            assert!(err.contains("--base-url"), "{err}");
        }
        for good in ["http://[::1]:8080/v1", "http://localhost:11434/v1"] {
            assert!(parse(&format!("[openai]\nbase_url = \"{good}\"\n")).is_ok());
        }
    }

    #[test]
    fn the_defaults_are_the_ones_in_the_defaults_module() {
        let config =
            Config::merge(&EngineArgs::default(), FileConfig::default(), &no_env).expect("valid");
        assert_eq!(config.run.concurrency as u64, defaults::CONCURRENCY);
        assert_eq!(config.run.max_subtasks as u64, defaults::MAX_SUBTASKS);
        assert_eq!(config.run.retries, defaults::RETRIES);
        assert_eq!(
            config.executor.call_timeout,
            Duration::from_secs(defaults::TIMEOUT_SECS)
        );
        assert_eq!(
            config.executor.call_timeout,
            ExecutorSettings::default().call_timeout
        );
        assert_eq!(config.run.worker.max_tokens as u64, defaults::MAX_TOKENS);
    }

    #[test]
    fn mcp_servers_parse_and_bad_names_or_duplicates_are_rejected() {
        let file = parse(
            "[[mcp.servers]]\nname = \"files\"\ncommand = \"npx\"\n\
             args = [\"-y\", \"server\"]\nenv = { ROOT = \"/tmp\" }\n",
        )
        .expect("valid");
        let config = Config::merge(&EngineArgs::default(), file, &no_env).expect("valid");
        assert_eq!(config.mcp.servers.len(), 1);
        assert_eq!(config.mcp.servers[0].name.0, "files");
        assert_eq!(config.mcp.servers[0].args, ["-y", "server"]);
        assert_eq!(config.mcp.servers[0].env["ROOT"], "/tmp");

        let err = parse("[[mcp.servers]]\nname = \"a:b\"\ncommand = \"x\"\n")
            .expect_err("name")
            .to_string();
        assert!(err.contains("line 2") && err.contains("a:b"), "{err}");
        let twice = parse(
            "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\n\
             [[mcp.servers]]\nname = \"a\"\ncommand = \"y\"\n",
        )
        .expect("parses");
        let err = Config::merge(&EngineArgs::default(), twice, &no_env)
            .expect_err("duplicate")
            .to_string();
        assert!(err.contains("used twice"), "{err}");
    }
}
