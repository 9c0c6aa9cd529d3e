//! Helpers shared by the integration tests. The mock LLM server lives in `mock.rs` so the
//! benchmark can include it by path without the rest.

#![allow(dead_code, unused_imports)]

pub mod binary;
pub mod mock;
pub mod plans;
pub mod site;
pub mod tmux;

pub use binary::{Maestro, Output, Running, Sandbox};
pub use mock::{Call, MockRequest, MockServer, Protocol, Reply};
