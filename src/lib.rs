//! maestro: a terminal dashboard for the LLM orchestrator-workers pattern.

pub mod cli;
pub mod config;
pub mod engine;
pub mod headless;
pub mod llm;
pub mod protocol;
pub mod report;
pub mod sanitize;
