//! The timeline view (`T`) as the user sees it, over ratatui's `TestBackend` at 80×24 and
//! 160×48 on the frozen clock of the other dashboard snapshots: a live run with dependencies,
//! a retry waiting out its back-off, a failure, a blocked and a cancelled subtask; and a
//! finished run whose critical path runs through the synthesis. Also: `j`/`k` move through the
//! run's rows with the detail following, and `T` brings the tree back.

mod dashboard_support;

use dashboard_support::*;
use maestro::tui::model::{Model, Node};
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

fn snapshot_at_both_sizes(name: &str, scene: impl Fn((u16, u16)) -> Model) {
    for (w, h) in SIZES {
        let mut model = scene((w, h));
        let terminal = render(&mut model, w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), terminal.backend());
    }
}

/// The every-state run (live) with a concurrency limit of 3, in the timeline.
fn live(size: (u16, u16)) -> Model {
    let mut model = model(false, size);
    model.models.concurrency = Some(3);
    send_all(&mut model, every_state_events(run_id(1)));
    key(&mut model, KeyCode::Esc); // query box → tree
    ch(&mut model, 'T');
    model
}

#[test]
fn a_live_run_with_a_retry_a_failure_and_dependencies_as_a_timeline() {
    snapshot_at_both_sizes("timeline_live", |size| {
        let mut model = live(size);
        // Down to the subtask waiting out its back-off.
        for _ in 0..2 {
            ch(&mut model, 'j');
        }
        model
    });
}

#[test]
fn a_finished_run_as_a_timeline_with_its_critical_path_through_the_synthesis() {
    snapshot_at_both_sizes("timeline_finished", |size| {
        let mut model = model(false, size);
        model.models.concurrency = Some(2);
        send_all(&mut model, small_run_events(run_id(1), "# Report\n\nDone."));
        key(&mut model, KeyCode::Esc);
        ch(&mut model, 'T');
        model
    });
}

#[test]
fn j_and_k_move_through_the_runs_rows_and_t_brings_the_tree_back() {
    let mut model = live((80, 24));
    let run = run_id(1);
    assert!(model.timeline);
    ch(&mut model, 'k');
    ch(&mut model, 'k');
    assert_eq!(
        model.selected,
        Some(Node::Run(run)),
        "the planner row is the run's"
    );
    ch(&mut model, 'j');
    let first = model.run(run).unwrap().report.subtasks[0].id.clone();
    assert_eq!(model.selected, Some(Node::Subtask(run, first)));
    // Past the last subtask the selection stays in this run.
    for _ in 0..20 {
        ch(&mut model, 'j');
    }
    let last = model
        .run(run)
        .unwrap()
        .report
        .subtasks
        .last()
        .unwrap()
        .id
        .clone();
    assert_eq!(model.selected, Some(Node::Subtask(run, last.clone())));
    let screen = format!("{}", render(&mut model, 80, 24).backend());
    assert!(
        screen.contains(&format!("{} ·", last.as_str())),
        "the detail follows the selection:\n{screen}"
    );
    ch(&mut model, 'T');
    assert!(!model.timeline);
    let screen = format!("{}", render(&mut model, 80, 24).backend());
    assert!(screen.contains("Subtasks"), "{screen}");
}

#[test]
fn the_timeline_of_a_live_run_grows_with_the_clock() {
    let mut model = live((160, 48));
    let before = format!("{}", render(&mut model, 160, 48).backend());
    update(&mut model, Msg::Tick(NOW + 5_000));
    let after = format!("{}", render(&mut model, 160, 48).backend());
    assert_ne!(before, after, "a live run's axis and bars move on");
    // A finished run does not: its end is its own, not the clock's.
    let mut model = model_finished();
    let before = format!("{}", render(&mut model, 160, 48).backend());
    update(&mut model, Msg::Tick(NOW + 5_000));
    let after = format!("{}", render(&mut model, 160, 48).backend());
    assert_eq!(before, after);
    // So the timeline asks for no frames of its own: the clock ticks only while something
    // moves by itself, as for the tree.
    assert!(!model.animating());
    assert!(live((160, 48)).animating());
}

fn model_finished() -> Model {
    let mut model = model(false, (160, 48));
    send_all(&mut model, small_run_events(run_id(1), "# Report\n\nDone."));
    key(&mut model, KeyCode::Esc);
    ch(&mut model, 'T');
    model
}

#[test]
fn a_click_on_a_row_of_the_timeline_selects_that_subtask() {
    use ratatui::crossterm::event::{KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
    let mut model = live((80, 24));
    // The pane's border is on row 3, the axis on row 4, the planner on 5, `context` on 6.
    let click = |row| {
        Msg::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: 10,
            row,
            modifiers: KeyModifiers::NONE,
        })
    };
    update(&mut model, click(6));
    assert_eq!(
        model.selected,
        Some(Node::Subtask(run_id(1), sid("context")))
    );
    update(&mut model, click(5));
    assert_eq!(model.selected, Some(Node::Run(run_id(1))));
    // The axis selects nothing.
    update(&mut model, click(4));
    assert_eq!(model.selected, Some(Node::Run(run_id(1))));
}

#[test]
fn queue_calls_failures_and_back_offs_differ_in_style_as_well_as_in_character() {
    let mut model = live((160, 48));
    model.theme = maestro::tui::theme::Theme { color: true };
    let terminal = render(&mut model, 160, 48);
    let buffer = terminal.backend().buffer();
    // The style of the first cell drawn with `glyph` on the row that names `id`.
    let style_of = |id: &str, glyph: &str| {
        let y = (0..48)
            .find(|&y| {
                let row: String = (0..80).map(|x| buffer[(x, y)].symbol()).collect();
                row.contains(&format!(" {id} "))
            })
            .unwrap_or_else(|| panic!("no row for {id}"));
        let x = (0..80)
            .find(|&x| buffer[(x, y)].symbol() == glyph)
            .unwrap_or_else(|| panic!("no {glyph} on {id}'s row"));
        buffer[(x, y)].style()
    };
    let queued = style_of("grid", "░");
    let failed = style_of("grid", "▓");
    let wait = style_of("grid", "╌");
    let call = style_of("emissions", "█");
    let styles = [queued, failed, wait, call];
    for (i, a) in styles.iter().enumerate() {
        for b in &styles[i + 1..] {
            assert_ne!(a, b, "{styles:?}");
        }
    }
}
