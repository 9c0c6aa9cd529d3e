//! Colours and styles of the dashboard. Status is never colour alone: every status has a glyph
//! (and a word in the detail pane). With `NO_COLOR` set, only modifiers (bold, dim, reverse)
//! are used.

use ratatui::style::{Color, Modifier, Style};

use crate::protocol::{RunStatus, SubtaskStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
    pub fn from_env() -> Self {
        Self {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn fg(&self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    pub fn status(&self, status: SubtaskStatus) -> Style {
        match status {
            SubtaskStatus::Pending => self.dim(),
            SubtaskStatus::Running => self.fg(Color::Cyan),
            SubtaskStatus::Retrying => self.fg(Color::Yellow),
            SubtaskStatus::Validating => self.fg(Color::Blue),
            SubtaskStatus::Succeeded => self.fg(Color::Green),
            SubtaskStatus::Failed => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            SubtaskStatus::Blocked => self.fg(Color::Magenta),
            SubtaskStatus::Cancelled => self.dim(),
        }
    }

    pub fn run_status(&self, status: Option<RunStatus>) -> Style {
        match status {
            None => self.fg(Color::Cyan),
            Some(RunStatus::Succeeded) => self.fg(Color::Green),
            Some(RunStatus::Partial) => self.fg(Color::Yellow),
            Some(RunStatus::Failed) => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Some(RunStatus::Cancelled) => self.dim(),
        }
    }

    pub fn dim(&self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    pub fn bold(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn border(&self, focused: bool) -> Style {
        if focused {
            self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            self.dim()
        }
    }

    pub fn selected(&self) -> Style {
        if self.color {
            Style::new()
                .bg(Color::DarkGray)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    pub fn key(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn error(&self) -> Style {
        self.fg(Color::Red)
    }

    pub fn warning(&self) -> Style {
        self.fg(Color::Yellow)
    }

    /// The banner that says the demo provider is simulated.
    pub fn demo_banner(&self) -> Style {
        if self.color {
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    pub fn status_bar(&self) -> Style {
        if self.color {
            Style::new().bg(Color::Rgb(30, 30, 40))
        } else {
            Style::new()
        }
    }
}
