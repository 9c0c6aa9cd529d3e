//! maestro: a terminal dashboard for the LLM orchestrator-workers pattern.

pub mod engine;
pub mod llm;
pub mod protocol;
