//! The plan review screen: a run paused after planning shows its plan, the person edits,
//! deletes and adds subtasks, and approves or cancels. State is driven through `update` with
//! keys and engine events; the screen is drawn over `TestBackend` at 80×24 and 160×48 and
//! compared with the committed snapshots.

mod dashboard_support;

use dashboard_support::*;
use maestro::tui::model::Model;
use maestro::tui::update::{Msg, update};
use maestro::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

fn render(model: &mut Model, w: u16, h: u16) -> Terminal<TestBackend> {
    update(model, Msg::Resize(w, h));
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|frame| view::draw(frame, model)).unwrap();
    terminal
}

fn snapshot_at_both_sizes(name: &str, scene: impl Fn() -> Model) {
    for (w, h) in SIZES {
        let mut model = scene();
        let terminal = render(&mut model, w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), terminal.backend());
    }
}

// ---- snapshots -------------------------------------------------------------------------------

#[test]
fn the_review_screen() {
    snapshot_at_both_sizes("review_screen", reviewing);
}

#[test]
fn the_edit_form_with_a_problem() {
    snapshot_at_both_sizes("review_form_with_a_problem", || {
        let mut model = reviewing();
        ch(&mut model, 'j');
        ch(&mut model, 'j');
        ch(&mut model, 'e');
        for _ in 0..3 {
            key(&mut model, KeyCode::Tab);
        }
        type_text(&mut model, ", nowhere");
        key(&mut model, KeyCode::Enter);
        model
    });
}
