//! Saved runs as the front ends use them: saving a run while it happens ([`Saving`]), with the
//! run's row ([`run_meta`]) and the settings it is saved with ([`SavedSettings`]).
//!
//! The store records events; this module only hands them over, so it must not decide anything
//! about a run nor talk to a provider.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::EngineArgs;
use crate::config::{Config, ProviderConfig, StoreConfig};
use crate::display::now_ms;
use crate::protocol::{Event, RunCommand, RunId};
use crate::store::{CommandRecord, RunMeta, StoreStatus, StoreWriter};

/// How long a front end waits for the run's row before the first provider call. Longer than
/// the store's busy timeout, so another process's long write is waited out, not failed.
const BEGIN_WAIT: Duration = Duration::from_secs(6);

// ---- saving ---------------------------------------------------------------------------------

/// A front end's link to the store writer: opened once, fed every event in order. When the
/// database cannot be opened (or `--no-save`), it is off and every call does nothing.
pub struct Saving {
    writer: Option<StoreWriter>,
}

impl Saving {
    /// Nothing is saved.
    pub fn off() -> Self {
        Self { writer: None }
    }

    /// Opens the writer, or explains in one line why runs are not saved. `--no-save` is not a
    /// problem, so it gives no warning.
    pub fn open(store: &StoreConfig) -> (Self, Option<String>) {
        if !store.save {
            return (Self::off(), None);
        }
        let Some(path) = &store.path else {
            return (
                Self::off(),
                Some("no data folder is known; name a database with --db".to_owned()),
            );
        };
        match StoreWriter::spawn(path) {
            Ok(writer) => (
                Self {
                    writer: Some(writer),
                },
                None,
            ),
            Err(e) => {
                tracing::warn!("runs are not saved: {e}");
                (Self::off(), Some(e.to_string()))
            }
        }
    }

    pub fn is_on(&self) -> bool {
        self.writer.is_some()
    }

    /// Writes the run's row and waits for it (briefly), so that a run is on record before its
    /// first provider call. On failure the writer is dropped: the run goes on unsaved. Returns
    /// why, if so.
    pub fn begin(&mut self, meta: RunMeta) -> Option<String> {
        let writer = self.writer.as_ref()?;
        match writer.begin_run(meta).wait(BEGIN_WAIT) {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!("the run's row could not be saved: {e}");
                self.writer = None;
                Some(e.to_string())
            }
        }
    }

    pub fn event(&mut self, event: &Event) {
        if let Some(writer) = &self.writer {
            writer.event(event);
        }
    }

    /// Records a user's command to a run. Call it before sending the command to the engine,
    /// so an edit's old text is read before the engine's answer changes it.
    pub fn command(&self, run: RunId, command: &RunCommand) {
        if let Some(writer) = &self.writer {
            writer.command(CommandRecord {
                run,
                at_ms: now_ms(),
                command: command.clone(),
            });
        }
    }

    /// `None` when saving is off; the writer's status otherwise.
    pub fn status(&self) -> Option<StoreStatus> {
        self.writer.as_ref().map(|w| w.status())
    }

    /// Commits what was sent and stops the writer.
    pub fn close(mut self) {
        if let Some(writer) = self.writer.take() {
            writer.close();
        }
    }
}

/// The settings saved with a run (`runs.settings`): what a resume starts from. Never a key;
/// `api_key_env` is the name of a variable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedSettings {
    pub provider: Option<String>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub planner_model: Option<String>,
    pub worker_model: Option<String>,
    pub synth_model: Option<String>,
    pub concurrency: Option<u64>,
    pub max_subtasks: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub retries: Option<u32>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

impl SavedSettings {
    /// The effective settings of `config`; `args` gives the key variable's name if a flag
    /// named it.
    pub fn of(config: &Config, args: &EngineArgs) -> Self {
        let base_url = match &config.provider {
            ProviderConfig::Demo(_) => None,
            ProviderConfig::OpenAi(c) => Some(c.base_url.clone()),
            ProviderConfig::Anthropic(c) => Some(c.base_url.clone()),
        };
        let r = &config.run;
        Self {
            provider: Some(config.provider.kind().to_string()),
            base_url,
            api_key_env: args.api_key_env.clone(),
            planner_model: Some(r.planner.model.clone()),
            worker_model: Some(r.worker.model.clone()),
            synth_model: Some(r.synthesizer.model.clone()),
            concurrency: Some(r.concurrency as u64),
            max_subtasks: Some(r.max_subtasks as u64),
            timeout_secs: Some(config.executor.call_timeout.as_secs()),
            retries: Some(r.retries),
            max_tokens: Some(r.worker.max_tokens),
            temperature: r.worker.temperature,
        }
    }
}

/// The run's row: query, provider, models and the effective settings (no secrets).
pub fn run_meta(
    id: RunId,
    query: &str,
    config: &Config,
    args: &EngineArgs,
    parent: Option<RunId>,
) -> RunMeta {
    let settings = serde_json::to_value(SavedSettings::of(config, args))
        .unwrap_or_else(|_| serde_json::json!({}));
    RunMeta {
        id,
        query: query.to_owned(),
        provider: config.provider.kind().to_string(),
        planner_model: Some(config.run.planner.model.clone()),
        worker_model: Some(config.run.worker.model.clone()),
        synthesizer_model: Some(config.run.synthesizer.model.clone()),
        preset: None,
        settings,
        parent,
        started_ms: now_ms(),
    }
}
