//! Where each pane goes for a terminal size. One function, used by the views to draw and by
//! `update` to scroll and to hit-test mouse clicks, so both always agree.

use ratatui::layout::{Constraint, Direction, Layout, Rect};

use crate::tui::model::{Focus, Model};

/// Smallest terminal the dashboard draws in; below it, a polite message.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 12;
/// From this width on, the synthesis sits beside the tree instead of below it.
pub const WIDE: u16 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Areas {
    pub query: Rect,
    pub tree: Rect,
    pub detail: Option<Rect>,
    pub synthesis: Rect,
    pub status: Rect,
}

impl Areas {
    /// The pane at a screen position.
    pub fn pane_at(&self, x: u16, y: u16) -> Option<Focus> {
        let p = ratatui::layout::Position { x, y };
        if self.query.contains(p) {
            Some(Focus::Query)
        } else if self.tree.contains(p) {
            Some(Focus::Tree)
        } else if self.detail.is_some_and(|d| d.contains(p)) {
            Some(Focus::Detail)
        } else if self.synthesis.contains(p) {
            Some(Focus::Synthesis)
        } else {
            None
        }
    }

    pub fn of(&self, focus: Focus) -> Option<Rect> {
        match focus {
            Focus::Query => Some(self.query),
            Focus::Tree => Some(self.tree),
            Focus::Detail => self.detail,
            Focus::Synthesis => Some(self.synthesis),
        }
    }
}

pub fn too_small(size: (u16, u16)) -> bool {
    size.0 < MIN_WIDTH || size.1 < MIN_HEIGHT
}

/// The inside of a bordered pane.
pub fn inner(area: Rect) -> Rect {
    Rect {
        x: area.x.saturating_add(1),
        y: area.y.saturating_add(1),
        width: area.width.saturating_sub(2),
        height: area.height.saturating_sub(2),
    }
}

/// Where text goes inside a bordered pane: one column of air on each side.
pub fn content(area: Rect) -> Rect {
    let inside = inner(area);
    Rect {
        x: inside.x.saturating_add(1),
        width: inside.width.saturating_sub(2),
        ..inside
    }
}

pub fn areas(model: &Model) -> Areas {
    let (width, height) = model.size;
    let screen = Rect::new(0, 0, width, height);
    // The query box grows with its (wrapped) text, up to five lines.
    let text_width = (width as usize).saturating_sub(3).max(1);
    let query_lines = model
        .query
        .lines()
        .iter()
        .map(|l| {
            unicode_width::UnicodeWidthStr::width(l.as_str())
                .div_ceil(text_width)
                .max(1)
        })
        .sum::<usize>()
        .clamp(1, 5) as u16;
    let [query, body, status] = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(query_lines + 2),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(screen);
    let (tree, detail, synthesis) = if width >= WIDE {
        let [left, right] = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Percentage(46), Constraint::Percentage(54)])
            .areas(body);
        if model.detail_open {
            let [tree, detail] = Layout::default()
                .direction(Direction::Vertical)
                .constraints([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(left);
            (tree, Some(detail), right)
        } else {
            (left, None, right)
        }
    } else if model.detail_open {
        let [tree, detail, synthesis] = Layout::default()
            .direction(Direction::Vertical)
            .constraints([
                Constraint::Percentage(36),
                Constraint::Percentage(28),
                Constraint::Percentage(36),
            ])
            .areas(body);
        (tree, Some(detail), synthesis)
    } else {
        let [tree, synthesis] = Layout::default()
            .direction(Direction::Vertical)
            .constraints([Constraint::Percentage(45), Constraint::Percentage(55)])
            .areas(body);
        (tree, None, synthesis)
    };
    Areas {
        query,
        tree,
        detail,
        synthesis,
        status,
    }
}
