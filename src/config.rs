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
use crate::engine::budget::Budget;
use crate::engine::cost::{Price, PriceTable};
use crate::engine::executor::ExecutorSettings;
use crate::engine::limits::RateSettings;
use crate::engine::preset::Preset;
use crate::engine::prompt::CallSpec;
use crate::engine::roles::{self, WorkerRole};
use crate::engine::run::RunSettings;
use crate::llm::ApiKey;
use crate::llm::anthropic::AnthropicConfig;
use crate::llm::demo::DemoConfig;
use crate::llm::openai::OpenAiConfig;
use crate::llm::quirks::TokenParam;
use crate::presets::{Catalogue, PresetFileError};
use crate::tools::{HostPattern, ToolsConfig};

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
    #[error(transparent)]
    PresetFile(#[from] PresetFileError),
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
    #[serde(default)]
    pub validation: ValidationSection,
    #[serde(default)]
    pub context: ContextSection,
    #[serde(default)]
    pub tools: ToolsSection,
    /// The preset (team of worker roles): a name, or the path of a preset file.
    pub preset: Option<NonEmpty>,
    /// `[prices."model"]`: prices over the shipped table's.
    #[serde(default)]
    pub prices: BTreeMap<String, PriceEntry>,
    #[serde(default)]
    pub budget: BudgetSection,
    /// `[[mcp.servers]]`: MCP servers whose tools roles may use.
    #[serde(default)]
    pub mcp: crate::mcp::McpConfig,
}

/// `[validation]`: the quality gate after each subtask.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSection {
    pub enabled: Option<bool>,
    /// The validator's model; the workers' model when unset.
    pub model: Option<NonEmpty>,
}

/// `[context]`: the files attached to a run (`@path`, `--context`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSection {
    /// The most bytes of text attached to one run.
    pub max_bytes: Option<Positive>,
}

/// `[tools]`: what workers may call, and how many rounds of calls one answer may take.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsSection {
    pub enabled: Option<crate::llm::tools::ToolChoice>,
    pub max_rounds: Option<u32>,
    /// Hosts `fetch_url` may reach even when private or loopback.
    #[serde(default)]
    pub allow_hosts: Vec<HostEntry>,
    /// Hosts `fetch_url` never reaches.
    #[serde(default)]
    pub deny_hosts: Vec<HostEntry>,
    /// Folders `read_file` and `list_dir` may read under.
    #[serde(default)]
    pub allow_dirs: Vec<PathBuf>,
    pub max_result_chars: Option<Positive>,
    pub fetch_timeout_secs: Option<Positive>,
    pub max_fetch_bytes: Option<Positive>,
    pub max_file_bytes: Option<Positive>,
    pub max_list_entries: Option<Positive>,
}

/// One `[prices."model"]` table, checked as it is read so an error names its line.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceEntry(pub Price);

impl<'de> Deserialize<'de> for PriceEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let price = Price::deserialize(d)?;
        match price.problem() {
            Some(problem) => Err(serde::de::Error::custom(problem)),
            None => Ok(Self(price)),
        }
    }
}

impl FileConfig {
    /// The shipped price table with this file's `[prices]` over it.
    pub fn price_table(&self) -> PriceTable {
        PriceTable::shipped().with(self.prices.iter().map(|(m, p)| (m.clone(), p.0)))
    }
}

/// The prices only, for commands that run nothing (history, show, stats): they must work
/// without a provider's key.
pub fn resolve_prices(args: &EngineArgs) -> Result<PriceTable, ConfigError> {
    let (file, _) = FileConfig::load(args.config.as_deref())?;
    Ok(file.price_table())
}

/// `[budget]`: what one run may spend before it stops starting subtasks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    /// Tokens in and out of every call of a run.
    pub max_tokens: Option<Positive>,
    /// Time a run may take: `90s`, `5m`, `1h`.
    pub deadline: Option<Age>,
    /// US dollars the calls of a run may cost (an estimate by the price table).
    pub max_cost: Option<f64>,
}

/// One `allow_hosts` / `deny_hosts` entry, checked as it is read so a bad one names its line.
#[derive(Debug, Clone, PartialEq)]
pub struct HostEntry(pub HostPattern);
impl<'de> Deserialize<'de> for HostEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = String::deserialize(d)?;
        HostPattern::parse(&v)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
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
    /// Answer a straightforward query with one worker call and no synthesis.
    pub direct: Option<bool>,
    /// Pause each run after planning for the plan to be reviewed.
    pub review: Option<bool>,
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
    /// Calls in flight at once to this server, over every run of the process.
    pub max_in_flight: Option<Positive>,
    /// Call starts per second to this server; 0 for no spacing.
    pub starts_per_second: Option<Rate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnthropicSection {
    pub base_url: Option<HttpUrl>,
    pub api_key_env: Option<EnvName>,
    pub stream: Option<bool>,
    /// Calls in flight at once to this server, over every run of the process.
    pub max_in_flight: Option<Positive>,
    /// Call starts per second to this server; 0 for no spacing.
    pub starts_per_second: Option<Rate>,
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
    pub temperature: Option<Temperature>,
    pub max_tokens: Option<Positive>,
    pub tools: Option<Vec<String>>,
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
checked!(Rate, f64, "a number of 0 or more", |v| v.is_finite()
    && *v >= 0.0);
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
    /// The most bytes of text the files attached to one run may have (`[context] max_bytes`).
    pub context_max_bytes: u64,
    /// The preset the runs use (with the file's `[roles]` applied); its roles and guidance
    /// are in `run`.
    pub preset: Preset,
    /// Every preset a run may use, built-in and the user's, with where each comes from.
    pub presets: Catalogue,
    /// What calls cost: the shipped table with the file's `[prices]` over it.
    pub prices: PriceTable,
    /// What the built-in tools may reach.
    pub tools: ToolsConfig,
    /// The MCP servers (started only when a role uses their tools).
    pub mcp: crate::mcp::McpConfig,
}

pub const DEFAULT_OPENAI_URL: &str = defaults::OPENAI_URL;
pub const DEFAULT_ANTHROPIC_URL: &str = defaults::ANTHROPIC_URL;

impl Config {
    /// The tools workers may call, and the MCP servers behind them for the front end to stop
    /// when it ends: the demo's simulated ones on the demo provider (nothing there touches the
    /// network or starts a process), on real servers the built-in tools (`fetch_url`;
    /// `read_file` and `list_dir` when folders are allowed or a run has files), confined by
    /// `[tools]`, and the tools of the `[[mcp.servers]]`, each started when a worker first
    /// needs it.
    pub fn toolbox(
        &self,
    ) -> (
        std::sync::Arc<dyn crate::llm::tools::ToolBox>,
        crate::toolbox::McpServers,
    ) {
        match &self.provider {
            ProviderConfig::Demo(_) => (
                std::sync::Arc::new(crate::llm::demo::toolbox()),
                crate::toolbox::McpServers::default(),
            ),
            ProviderConfig::OpenAi(_) | ProviderConfig::Anthropic(_) => {
                crate::toolbox::workers(&self.tools, &self.mcp)
            }
        }
    }

    /// Load the file named by the flags (or the default one) and merge everything. `env`
    /// looks up environment variables (the real environment outside tests).
    pub fn resolve(
        args: &EngineArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let (file, source) = FileConfig::load(args.config.as_deref())?;
        let presets = Catalogue::load(presets_dir(args).as_deref())?;
        let mut config = Self::merge_with(args, file, env, presets)?;
        config.source = source;
        Ok(config)
    }

    /// Merge flags (already combined with `MAESTRO_*` variables by clap) over the file over
    /// the defaults, with the built-in presets only.
    pub fn merge(
        args: &EngineArgs,
        file: FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::merge_with(args, file, env, Catalogue::builtin())
    }

    /// [`Config::merge`] with the presets `presets` (the user's files included).
    pub fn merge_with(
        args: &EngineArgs,
        file: FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
        presets: Catalogue,
    ) -> Result<Self, ConfigError> {
        let (presets, preset) = choose_preset(args, &file, presets)?;
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

        let worker = spec(pick(&args.worker_model, &m.worker));
        // `--model` names every role, so it beats the file's validator model; with neither,
        // the validator is the workers' model.
        // `--validate` turns it on; the file's `enabled` is the person's choice either way;
        // otherwise the preset decides (on in `general`).
        let validate_setting = if args.validate {
            Some(true)
        } else {
            file.validation.enabled
        };
        let validator = spec(
            args.validator_model
                .clone()
                .or(args.model.clone())
                .or(file.validation.model.as_ref().map(|v| v.0.clone()))
                .unwrap_or_else(|| worker.model.clone()),
        );
        let prices = file.price_table();
        let max_cost = match args.max_cost.or(file.budget.max_cost) {
            Some(usd) if !(usd.is_finite() && usd > 0.0) => {
                return Err(ConfigError::Invalid(format!(
                    "--max-cost / [budget] max_cost: {usd} is not a positive number of US dollars"
                )));
            }
            max_cost => max_cost,
        };
        let budget = Budget {
            max_cost,
            prices: std::sync::Arc::new(prices.clone()),
            max_tokens: args
                .max_tokens
                .or(file.budget.max_tokens.as_ref().map(|v| v.0)),
            deadline: match &args.deadline {
                Some(text) => Some(crate::display::parse_age(text).ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "--deadline {text:?}: expected a time such as \"90s\", \"5m\" or \"1h\""
                    ))
                })?),
                None => file.budget.deadline.as_ref().map(|a| a.0),
            },
        };
        let (max_in_flight, starts_per_second) = rate_limits(kind, &file);
        let provider_key = provider.base_url().trim_end_matches('/').to_owned();
        let store = StoreConfig::merge(args, &file);
        let tools = merge_tools(args, &file.tools)?;
        file.mcp.validate().map_err(ConfigError::Invalid)?;
        let config = Self {
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
                worker,
                synthesizer: spec(pick(&args.synth_model, &m.synthesizer)),
                roles: preset.roles.clone(),
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
                direct: !args.no_direct && file.planner.direct.unwrap_or(defaults::DIRECT),
                validate: validate_setting.unwrap_or(preset.validate || defaults::VALIDATE),
                validator,
                preset: crate::engine::run::RunPreset {
                    name: preset.name.clone(),
                    planner_guidance: preset.planner_guidance.clone(),
                    synthesis_guidance: preset.synthesis_guidance.clone(),
                },
                budget,
                review: file.planner.review.unwrap_or(false),
            },
            executor: ExecutorSettings {
                call_timeout: timeout,
                presets: presets.entries.iter().map(|e| e.preset.clone()).collect(),
                validate: validate_setting,
                max_tool_rounds: file.tools.max_rounds.unwrap_or(defaults::TOOL_MAX_ROUNDS),
                tools: match args.tools.as_deref() {
                    Some(text) => Some(
                        crate::llm::tools::parse_selection(text).map_err(ConfigError::Invalid)?,
                    ),
                    None => file.tools.enabled.map(crate::llm::tools::ToolChoice::names),
                },
                provider_key,
                rate: RateSettings {
                    max_in_flight,
                    starts_per_second,
                    breaker: kind != ProviderKind::Demo,
                },
                ..ExecutorSettings::default()
            },
            bell: file.ui.bell.unwrap_or(true),
            mouse: file.ui.mouse.unwrap_or(true),
            source: None,
            store,
            context_max_bytes: file
                .context
                .max_bytes
                .as_ref()
                .map_or(defaults::CONTEXT_MAX_BYTES, |v| v.0),
            preset,
            presets,
            prices,
            tools,
            mcp: file.mcp,
        };
        config.check_max_cost()?;
        Ok(config)
    }

    /// A cost limit needs a price for every model the run may call (planner, workers and each
    /// role's own, synthesis, validator): without one, spending could not be counted and the
    /// limit would never be reached.
    fn check_max_cost(&self) -> Result<(), ConfigError> {
        if self.run.budget.max_cost.is_none() {
            return Ok(());
        }
        let mut models = vec![
            &self.run.planner.model,
            &self.run.worker.model,
            &self.run.synthesizer.model,
        ];
        if self.run.validate {
            models.push(&self.run.validator.model);
        }
        models.extend(self.run.roles.iter().filter_map(|r| r.model.as_ref()));
        let unpriced: Vec<String> = models
            .into_iter()
            .filter(|m| self.prices.lookup(m).is_none())
            .map(|m| format!("`{}`", crate::sanitize::sanitize_line(m)))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if unpriced.is_empty() {
            return Ok(());
        }
        Err(ConfigError::Invalid(format!(
            "--max-cost needs a price for every model the run uses; {} {} none (add \
             [prices.\"MODEL\"] input = …, output = … to the config file)",
            unpriced.join(", "),
            if unpriced.len() == 1 { "has" } else { "have" }
        )))
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

/// The file's `[tools]` with `--allow-host` and `--allow-dir` added to its lists. Every folder
/// must exist: a mistyped one is a configuration error now rather than a refusal the model
/// meets later. A relative folder is taken from the working directory.
fn merge_tools(args: &EngineArgs, section: &ToolsSection) -> Result<ToolsConfig, ConfigError> {
    let defaults = ToolsConfig::default();
    let mut allow_hosts: Vec<HostPattern> =
        section.allow_hosts.iter().map(|h| h.0.clone()).collect();
    for host in &args.allow_host {
        let pattern = HostPattern::parse(host)
            .map_err(|e| ConfigError::Invalid(format!("--allow-host: {e}")))?;
        allow_hosts.push(pattern);
    }
    let from_file = section.allow_dirs.iter().map(|d| ("[tools] allow_dirs", d));
    let from_flags = args.allow_dir.iter().map(|d| ("--allow-dir", d));
    let mut allow_dirs = Vec::new();
    for (origin, dir) in from_file.chain(from_flags) {
        let canonical = std::fs::canonicalize(dir)
            .map_err(|e| ConfigError::Invalid(format!("{origin} {}: {e}", dir.display())))?;
        if !allow_dirs.contains(&canonical) {
            allow_dirs.push(canonical);
        }
    }
    let size = |v: &Option<Positive>, default: usize| {
        v.as_ref()
            .map_or(default, |v| usize::try_from(v.0).unwrap_or(usize::MAX))
    };
    Ok(ToolsConfig {
        allow_hosts,
        deny_hosts: section.deny_hosts.iter().map(|h| h.0.clone()).collect(),
        allow_dirs,
        max_result_chars: size(&section.max_result_chars, defaults.max_result_chars),
        fetch_timeout: section
            .fetch_timeout_secs
            .as_ref()
            .map_or(defaults.fetch_timeout, |v| Duration::from_secs(v.0)),
        max_fetch_bytes: section
            .max_fetch_bytes
            .as_ref()
            .map_or(defaults.max_fetch_bytes, |v| v.0),
        max_redirects: defaults.max_redirects,
        max_file_bytes: section
            .max_file_bytes
            .as_ref()
            .map_or(defaults.max_file_bytes, |v| v.0),
        max_list_entries: size(&section.max_list_entries, defaults.max_list_entries),
    })
}

/// The shared limits of the configured provider: its section's, else the defaults. The demo
/// provider has no server to spare, so it is neither limited nor spaced.
fn rate_limits(kind: ProviderKind, file: &FileConfig) -> (Option<usize>, Option<f64>) {
    let (in_flight, per_second) = match kind {
        ProviderKind::Demo => return (None, None),
        ProviderKind::OpenAi => (&file.openai.max_in_flight, &file.openai.starts_per_second),
        ProviderKind::Anthropic => (
            &file.anthropic.max_in_flight,
            &file.anthropic.starts_per_second,
        ),
    };
    let in_flight = in_flight
        .as_ref()
        .map_or(defaults::PROVIDER_MAX_IN_FLIGHT, |v| v.0);
    let per_second = per_second
        .as_ref()
        .map_or(defaults::STARTS_PER_SECOND, |v| v.0);
    (
        Some(usize::try_from(in_flight).unwrap_or(usize::MAX)),
        (per_second > 0.0).then_some(per_second),
    )
}

/// The folder user presets are read from: `presets/` beside the config file in use (named or
/// the platform's), whether or not that file exists.
pub fn presets_dir(args: &EngineArgs) -> Option<PathBuf> {
    args.config
        .clone()
        .or_else(default_config_path)
        .and_then(|file| crate::presets::dir_beside(&file))
}

/// The presets a command may list: the built-in ones and the user's files, without resolving
/// anything else (no provider, no key). The second value is the preset in use.
pub fn preset_catalogue(args: &EngineArgs) -> Result<(Catalogue, String), ConfigError> {
    let (file, _) = FileConfig::load(args.config.as_deref())?;
    let catalogue = Catalogue::load(presets_dir(args).as_deref())?;
    let (catalogue, preset) = choose_preset(args, &file, catalogue)?;
    Ok((catalogue, preset.name))
}

/// The preset `--preset` (or the file's `preset`, or the default) names, looked up in
/// `presets` or read from the file it names (which then joins the catalogue), with the file's
/// `[roles]` applied to every preset.
fn choose_preset(
    args: &EngineArgs,
    file: &FileConfig,
    mut presets: Catalogue,
) -> Result<(Catalogue, Preset), ConfigError> {
    let (wanted, from) = match (&args.preset, &file.preset) {
        (Some(flag), _) => (flag.trim().to_owned(), "--preset"),
        (None, Some(key)) => (key.0.trim().to_owned(), "the config file's `preset`"),
        (None, None) => (defaults::PRESET.to_owned(), "the default preset"),
    };
    let name = if crate::presets::is_path(&wanted) {
        presets.add_file(Path::new(&wanted))?
    } else {
        wanted
    };
    for entry in &mut presets.entries {
        entry.preset.roles = merge_roles(std::mem::take(&mut entry.preset.roles), &file.roles)?;
    }
    // A `[roles.NAME]` that only changes fields must change a role of some preset.
    for (role, section) in &file.roles {
        let known = presets
            .entries
            .iter()
            .any(|e| roles::find(&e.preset.roles, role).is_some());
        if !known && (section.description.is_none() || section.system_prompt.is_none()) {
            return Err(ConfigError::Invalid(format!(
                "[roles.{role}] is a new worker role, so it needs both `description` and \
                 `system_prompt`"
            )));
        }
    }
    let Some(entry) = presets.find(&name) else {
        return Err(ConfigError::Invalid(format!(
            "{from}: no preset named `{}`; the presets are {} (see `maestro presets`)",
            crate::sanitize::sanitize_line(&name),
            presets.names()
        )));
    };
    let preset = entry.preset.clone();
    Ok((presets, preset))
}

/// A preset's roles with the file's `[roles.NAME]` tables applied: fields of a role of the
/// preset are replaced; a new name with a description and a system prompt adds a role, and
/// one without them is left to the preset that has such a role (checked by the caller).
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
                apply_sampling(role, section);
            }
            None => {
                let (Some(description), Some(system_prompt)) =
                    (&section.description, &section.system_prompt)
                else {
                    continue;
                };
                let mut role = WorkerRole::new(name, description, system_prompt);
                role.model = section.model.as_ref().map(|m| m.0.clone());
                apply_sampling(&mut role, section);
                roles.push(role);
            }
        }
    }
    Ok(roles)
}

/// A `[roles.NAME]` table's temperature, token limit and tools, where it sets them.
fn apply_sampling(role: &mut WorkerRole, section: &RoleSection) {
    if let Some(t) = &section.temperature {
        role.temperature = Some(t.0);
    }
    if let Some(m) = &section.max_tokens {
        role.max_tokens = Some(u32::try_from(m.0).unwrap_or(u32::MAX));
    }
    if let Some(tools) = &section.tools {
        role.tools.clone_from(tools);
    }
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
    fn tools_come_from_the_flag_over_the_file_over_the_default() {
        let defaults =
            Config::merge(&EngineArgs::default(), FileConfig::default(), &no_env).expect("valid");
        assert_eq!(defaults.executor.tools, None, "each role's own");
        assert_eq!(
            defaults.executor.max_tool_rounds,
            crate::defaults::TOOL_MAX_ROUNDS
        );
        let file = || parse("[tools]\nenabled = \"files\"\nmax_rounds = 2\n").expect("parses");
        let from_file = Config::merge(&EngineArgs::default(), file(), &no_env).expect("valid");
        assert_eq!(
            from_file.executor.tools.as_deref(),
            Some(&["files".to_owned()][..])
        );
        assert_eq!(from_file.executor.max_tool_rounds, 2);
        let args = EngineArgs {
            tools: Some("none".into()),
            ..EngineArgs::default()
        };
        let none = Config::merge(&args, file(), &no_env).expect("valid");
        assert_eq!(none.executor.tools, Some(Vec::new()));
        let args = EngineArgs {
            tools: Some("fetch,mcp:gh/*".into()),
            ..EngineArgs::default()
        };
        let listed = Config::merge(&args, file(), &no_env).expect("valid");
        assert_eq!(
            listed.executor.tools,
            Some(vec!["fetch".to_owned(), "mcp:gh/*".to_owned()])
        );
        let args = EngineArgs {
            tools: Some("everything".into()),
            ..EngineArgs::default()
        };
        let error = Config::merge(&args, file(), &no_env).expect_err("refused");
        assert!(error.to_string().contains("\"everything\""), "{error}");
        let error = parse("[tools]\nenabled = \"everything\"\n").expect_err("refused");
        assert!(error.to_string().contains("enabled"), "{error}");
    }

    #[test]
    fn prices_go_over_the_shipped_table_and_bad_ones_name_their_line() {
        let file = parse(
            "[prices.\"gpt-4o\"]\ninput = 1.0\noutput = 2.0\n\n\
             [prices.\"llama3:8b\"]\ninput = 0\noutput = 0\n",
        )
        .expect("prices read");
        let table = file.price_table();
        let usage = crate::protocol::Usage {
            tokens_in: 1_000_000,
            tokens_out: 1_000_000,
            ..Default::default()
        };
        assert_eq!(table.cost("gpt-4o", &usage), Some(3.0));
        assert_eq!(table.cost("llama3:8b", &usage), Some(0.0));
        assert!(
            table.cost("gpt-4o-mini", &usage).is_some(),
            "shipped rows stay"
        );
        let err = parse("[prices.\"x\"]\ninput = 1.0\noutput = -2.0\n")
            .expect_err("a negative price")
            .to_string();
        assert!(err.contains("line 1") || err.contains("line 3"), "{err}");
        assert!(err.contains("0 or more"), "{err}");
        let err = parse("[prices.\"x\"]\ninput = 1.0\nouput = 2.0\n")
            .expect_err("a misspelt key")
            .to_string();
        assert!(err.contains("ouput"), "{err}");
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
        assert_eq!(from_example.context_max_bytes, defaults.context_max_bytes);
        assert_eq!(from_example.executor.tools, defaults.executor.tools);
        assert_eq!(
            from_example.executor.max_tool_rounds,
            defaults.executor.max_tool_rounds
        );
        assert_eq!(from_example.tools, defaults.tools);
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
    fn a_cost_limit_needs_a_price_for_every_model_and_a_positive_amount() {
        let openai = |max_cost: f64| EngineArgs {
            provider: Some(ProviderKind::OpenAi),
            base_url: Some("http://localhost:11434/v1".into()),
            model: Some("local-llama".into()),
            max_cost: Some(max_cost),
            ..EngineArgs::default()
        };
        let err = Config::merge(&openai(0.5), FileConfig::default(), &no_env)
            .expect_err("no price for the model")
            .to_string();
        assert!(
            err.contains("--max-cost") && err.contains("`local-llama`") && err.contains("[prices"),
            "{err}"
        );
        let priced = parse("[prices.\"local-llama\"]\ninput = 0.1\noutput = 0.2\n").expect("valid");
        let config = Config::merge(&openai(0.5), priced, &no_env).expect("priced");
        assert_eq!(config.run.budget.max_cost, Some(0.5));
        assert!(config.run.budget.prices.lookup("local-llama").is_some());
        let err = Config::merge(&openai(-1.0), FileConfig::default(), &no_env)
            .expect_err("negative")
            .to_string();
        assert!(err.contains("positive"), "{err}");
        let from_file = parse("[budget]\nmax_cost = 2.5\n[prices.\"m\"]\ninput = 1\noutput = 1\n")
            .expect("valid");
        let args = EngineArgs {
            provider: Some(ProviderKind::OpenAi),
            base_url: Some("http://localhost:11434/v1".into()),
            model: Some("m".into()),
            ..EngineArgs::default()
        };
        let config = Config::merge(&args, from_file, &no_env).expect("valid");
        assert_eq!(config.run.budget.max_cost, Some(2.5));
    }

    #[test]
    fn validation_follows_the_preset_unless_the_person_set_it() {
        let general = EngineArgs {
            preset: Some("general".into()),
            ..EngineArgs::default()
        };
        let research =
            Config::merge(&EngineArgs::default(), FileConfig::default(), &no_env).expect("valid");
        assert!(!research.run.validate, "off in research");
        assert_eq!(research.executor.validate, None);
        let on = Config::merge(&general, FileConfig::default(), &no_env).expect("valid");
        assert!(on.run.validate, "on by default in general");
        let off = parse("[validation]\nenabled = false\n").expect("valid");
        let off = Config::merge(&general, off, &no_env).expect("valid");
        assert!(!off.run.validate, "the file's choice beats the preset's");
        assert_eq!(off.executor.validate, Some(false));
        let flag = EngineArgs {
            validate: true,
            ..EngineArgs::default()
        };
        let flag = Config::merge(&flag, FileConfig::default(), &no_env).expect("valid");
        assert!(flag.run.validate);
        assert_eq!(flag.executor.validate, Some(true));
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
    fn the_budget_comes_from_flags_over_the_file_and_rate_limits_from_the_provider_section() {
        let file = parse(
            "provider = \"openai\"\n[openai]\nbase_url = \"http://localhost:11434/v1/\"\n\
             max_in_flight = 3\nstarts_per_second = 0\n[budget]\nmax_tokens = 1000\n\
             deadline = \"5m\"\n",
        )
        .expect("valid");
        let args = EngineArgs {
            deadline: Some("90s".into()),
            ..EngineArgs::default()
        };
        let config = Config::merge(&args, file, &no_env).expect("valid");
        assert_eq!(config.run.budget.max_tokens, Some(1000));
        assert_eq!(config.run.budget.deadline, Some(Duration::from_secs(90)));
        assert_eq!(config.executor.provider_key, "http://localhost:11434/v1");
        assert_eq!(config.executor.rate.max_in_flight, Some(3));
        assert_eq!(config.executor.rate.starts_per_second, None, "0 is off");
        assert!(config.executor.rate.breaker);

        let defaults = Config::merge(
            &EngineArgs {
                provider: Some(ProviderKind::OpenAi),
                base_url: Some("http://localhost:8080/v1".into()),
                ..EngineArgs::default()
            },
            FileConfig::default(),
            &no_env,
        )
        .expect("valid");
        assert!(defaults.run.budget.is_unlimited());
        assert_eq!(
            defaults.executor.rate.starts_per_second,
            Some(defaults::STARTS_PER_SECOND)
        );
        let demo =
            Config::merge(&EngineArgs::default(), FileConfig::default(), &no_env).expect("valid");
        assert_eq!(
            demo.executor.rate,
            RateSettings::default(),
            "the demo is not limited"
        );

        let err = parse("[budget]\n\ndeadline = \"soon\"\n")
            .expect_err("not a time")
            .to_string();
        assert!(err.contains("line 3"), "{err}");
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
        let file = parse(
            "preset = \"market\"\n[roles.news]\ntemperature = 0.3\nmax_tokens = 900\n\
             tools = [\"fetch_url\"]\n[roles.research]\nmodel = \"big\"\n",
        )
        .expect("parses");
        let config = Config::merge(&EngineArgs::default(), file, &no_env).expect("valid");
        let news = roles::find(&config.run.roles, "news").expect("a market role");
        assert_eq!(
            (news.temperature, news.max_tokens, news.tools.clone()),
            (Some(0.3), Some(900), vec!["fetch_url".to_owned()])
        );
        assert_eq!(config.run.preset.name, "market");
        assert!(
            roles::find(&config.run.roles, "research").is_none(),
            "a table that only changes a role another preset has adds nothing"
        );
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
    fn tool_flags_join_the_file_lists() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = parse(&format!(
            "[tools]\nallow_hosts = [\"wiki.corp\"]\ndeny_hosts = [\"*.ads.example\"]\n\
             allow_dirs = [{:?}]\nmax_result_chars = 500\n",
            dir.path().display().to_string()
        ))
        .expect("valid");
        let args = EngineArgs {
            allow_host: vec!["localhost".into()],
            allow_dir: vec![dir.path().join(".")],
            ..EngineArgs::default()
        };
        let config = Config::merge(&args, file, &no_env).expect("valid");
        let t = &config.tools;
        assert_eq!(
            t.allow_hosts,
            [
                HostPattern::Name("wiki.corp".into()),
                HostPattern::Name("localhost".into())
            ]
        );
        assert_eq!(t.deny_hosts, [HostPattern::Below("ads.example".into())]);
        let canonical = std::fs::canonicalize(dir.path()).expect("exists");
        assert_eq!(t.allow_dirs, [canonical], "the same folder once");
        assert_eq!(t.max_result_chars, 500);
        assert_eq!(
            t.fetch_timeout,
            Duration::from_secs(defaults::FETCH_TIMEOUT_SECS)
        );
    }

    #[test]
    fn a_bad_tool_entry_names_where_it_came_from() {
        let err = parse("[tools]\n\nallow_hosts = [\"http://x.org/\"]\n")
            .expect_err("a URL is not a host")
            .to_string();
        assert!(err.contains("line 3") && err.contains("host name"), "{err}");
        let args = EngineArgs {
            allow_host: vec!["host:8080".into()],
            ..EngineArgs::default()
        };
        let err = Config::merge(&args, FileConfig::default(), &no_env)
            .expect_err("a port is not a host")
            .to_string();
        assert!(err.contains("--allow-host"), "{err}");
        let args = EngineArgs {
            allow_dir: vec![PathBuf::from("/no/such/folder/anywhere")],
            ..EngineArgs::default()
        };
        let err = Config::merge(&args, FileConfig::default(), &no_env)
            .expect_err("missing folder")
            .to_string();
        assert!(
            err.contains("--allow-dir /no/such/folder/anywhere"),
            "{err}"
        );
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
