//! Orchestration: planning, scheduling workers, synthesis. Never imports terminal code.
//!
//! `run` decides (a pure state machine: input → effects), `executor` acts (provider calls,
//! timers, cancellation) and feeds results back as inputs. `plan`, `prompt`, `roles` and `preset` are
//! pure helpers of the state machine.

pub mod budget;
pub mod cost;
pub mod executor;
pub mod limits;
pub mod plan;
pub mod preset;
pub mod prompt;
pub mod roles;
pub mod run;
