//! The dashboard: watch and steer runs live in the terminal.
//!
//! Elm-shaped: `model` holds the state, `update` changes it from messages and returns
//! actions, `view` draws it, `app` is the loop that owns the terminal and performs actions.
//! Only `app` does I/O; the engine is reached only through `protocol` commands and events.

pub mod app;
pub mod content;
pub mod keymap;
pub mod layout;
pub mod markdown;
pub mod model;
pub mod provenance;
pub mod provenance_view;
pub mod review;
pub mod sources;
pub mod theme;
pub mod timeline;
pub mod update;
pub mod view;

pub use app::run;
