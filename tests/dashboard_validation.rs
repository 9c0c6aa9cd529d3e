//! The quality gate and direct answers in the dashboard, drawn over ratatui's `TestBackend` at
//! 80×24 and 160×48 and compared with the committed snapshots: a subtask being validated (its
//! own glyph and word, not colour alone), a result flagged after two failed checks (the mark in
//! the tree, the reason and the verdicts in the detail pane), and a direct run's row.

mod dashboard_support;

use dashboard_support::*;
use maestro::protocol::{Complexity, EventKind, RunId, Usage};
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

fn snapshot_at_both_sizes(name: &str, scene: impl Fn((u16, u16)) -> Model) {
    for (w, h) in SIZES {
        let mut model = scene((w, h));
        let terminal = render(&mut model, w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), terminal.backend());
    }
}

fn screen(model: &mut Model, w: u16, h: u16) -> String {
    let terminal = render(model, w, h);
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        for x in 0..w {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn usage() -> Usage {
    Usage {
        tokens_in: 500,
        tokens_out: 900,
        estimated: false,
        cached_in: 0,
    }
}

/// `emissions` answered and being validated; `costs` failed its check twice and is kept,
/// flagged; `equity` waits for `emissions`.
fn gate_events(run: RunId) -> Vec<maestro::protocol::Event> {
    use EventKind as K;
    let mut events = planning_events(run);
    events.push(at(
        run,
        38_000,
        K::PlanReady {
            plan: plan(vec![
                subtask(
                    "emissions",
                    "analysis",
                    "Emissions",
                    "Emissions in cities.",
                    &[],
                ),
                subtask("costs", "compare", "Costs", "Costs for households.", &[]),
                subtask(
                    "equity",
                    "critique",
                    "Equity of access",
                    "Who benefits?",
                    &["emissions"],
                ),
            ]),
        },
    ));
    let started = |id: &str, attempt: u32, worker: &str, ago: u64| {
        at(
            run,
            ago,
            K::SubtaskStarted {
                subtask: sid(id),
                attempt,
                worker: worker.to_owned(),
                model: "gpt-4o-mini".to_owned(),
            },
        )
    };
    let verdict = |id: &str, attempt: u32, reason: &str, flagged: bool, ago: u64| {
        at(
            run,
            ago,
            K::SubtaskValidated {
                subtask: sid(id),
                attempt,
                passed: false,
                reason: reason.to_owned(),
                usage: usage(),
                flagged,
            },
        )
    };
    events.push(started("emissions", 1, "analysis", 37_000));
    events.push(at(
        run,
        36_000,
        K::SubtaskDelta {
            subtask: sid("emissions"),
            attempt: 1,
            text: "Tailpipe emissions fall by a third.".to_owned(),
        },
    ));
    events.push(at(
        run,
        30_000,
        K::SubtaskValidating {
            subtask: sid("emissions"),
            attempt: 1,
            model: "gpt-4o".to_owned(),
        },
    ));
    let checking = |id: &str, attempt: u32, ago: u64| {
        at(
            run,
            ago,
            K::SubtaskValidating {
                subtask: sid(id),
                attempt,
                model: "gpt-4o".to_owned(),
            },
        )
    };
    events.push(started("costs", 1, "compare", 37_000));
    events.push(checking("costs", 1, 32_000));
    events.push(verdict(
        "costs",
        1,
        "no figure for household costs",
        false,
        31_000,
    ));
    events.push(started("costs", 2, "compare", 30_500));
    events.push(checking("costs", 2, 26_000));
    events.push(verdict(
        "costs",
        2,
        "still no household figure",
        true,
        25_000,
    ));
    events.push(at(
        run,
        25_000,
        K::SubtaskSucceeded {
            subtask: sid("costs"),
            attempt: 2,
            elapsed_ms: 5_500,
            usage: usage(),
            result: "Costs fall over time.".to_owned(),
            cut_off: false,
            cached: false,
        },
    ));
    events
}

fn gate(size: (u16, u16)) -> Model {
    let mut model = model(false, size);
    send_all(&mut model, gate_events(run_id(1)));
    key(&mut model, KeyCode::Esc); // query box → tree
    model
}

/// The validating subtask selected (the first subtask is, once the tree has focus).
fn validating_selected(size: (u16, u16)) -> Model {
    gate(size)
}

/// The flagged subtask selected.
fn flagged_selected(size: (u16, u16)) -> Model {
    let mut model = gate(size);
    ch(&mut model, 'j');
    model
}

#[test]
fn a_subtask_being_validated_has_its_own_glyph_and_word() {
    snapshot_at_both_sizes("validating_subtask", validating_selected);
    let mut model = validating_selected((160, 48));
    let text = screen(&mut model, 160, 48);
    assert!(text.contains("◎ emissions"), "{text}");
    assert!(text.contains("validating"), "{text}");
    assert!(
        text.contains("the validator is checking this answer"),
        "{text}"
    );
}

#[test]
fn a_flagged_result_shows_its_mark_in_the_tree_and_its_reason_in_the_detail() {
    snapshot_at_both_sizes("flagged_subtask", flagged_selected);
    let mut model = flagged_selected((160, 48));
    let text = screen(&mut model, 160, 48);
    assert!(text.contains("⚑ flagged"), "{text}");
    assert!(
        text.contains("⚑ flagged: still no household figure"),
        "{text}"
    );
    assert!(
        text.contains("check of attempt 1 FAIL: no figure for household costs"),
        "{text}"
    );
}

#[test]
fn a_direct_run_says_so_on_its_row_and_over_its_report() {
    use EventKind as K;
    let run = run_id(1);
    let mut model = model(false, (160, 48));
    let mut events = planning_events(run);
    let mut direct_plan = plan(vec![subtask(
        "answer",
        "research",
        "Direct answer",
        "Answer it.",
        &[],
    )]);
    direct_plan.complexity = Some(Complexity::Straightforward);
    events.push(at(run, 38_000, K::PlanReady { plan: direct_plan }));
    events.push(at(
        run,
        38_000,
        K::DirectAnswer {
            subtask: sid("answer"),
        },
    ));
    events.extend(finished_with_synthesis(
        run,
        "# Paris\n\nThe capital is Paris.",
    ));
    send_all(&mut model, events);
    key(&mut model, KeyCode::Esc);
    let text = screen(&mut model, 160, 48);
    assert!(text.contains("direct · "), "{text}");
    assert!(text.contains("direct answer"), "{text}");
}
