//! Replies that are not plain answers, as the dashboard shows them: a result cut at the token
//! limit is marked in the tree and the detail, and a model's reasoning sits apart from the
//! result in the detail, dimmed, collapsed to one line until `t` shows it.

mod dashboard_support;

use dashboard_support::*;
use maestro::protocol::{EventKind, Usage};
use maestro::tui::model::{Model, Node};
use maestro::tui::update::{Msg, update};
use maestro::tui::{content, view};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;
use ratatui::style::Modifier;

/// Two subtasks: `emissions` cut at the token limit after some reasoning, `costs` whole.
fn scene() -> Model {
    let run = run_id(1);
    let mut model = model(false, (120, 40));
    let mut events = planning_events(run);
    events.push(at(
        run,
        38_000,
        EventKind::PlanReady {
            plan: plan(vec![
                subtask(
                    "emissions",
                    "analysis",
                    "Emissions",
                    "Emissions in cities.",
                    &[],
                ),
                subtask("costs", "compare", "Costs", "Costs for households.", &[]),
            ]),
        },
    ));
    for (id, worker, cut_off) in [("emissions", "analysis", true), ("costs", "compare", false)] {
        events.push(at(
            run,
            37_000,
            EventKind::SubtaskStarted {
                subtask: sid(id),
                attempt: 1,
                worker: worker.to_owned(),
                model: "qwen3".to_owned(),
            },
        ));
        if cut_off {
            events.push(at(
                run,
                36_000,
                EventKind::SubtaskReasoning {
                    subtask: sid(id),
                    attempt: 1,
                    text: "First, tailpipe emissions.\nThen the grid mix.".to_owned(),
                },
            ));
        }
        events.push(at(
            run,
            30_000,
            EventKind::SubtaskSucceeded {
                subtask: sid(id),
                attempt: 1,
                elapsed_ms: 7_000,
                usage: Usage {
                    tokens_in: 500,
                    tokens_out: 900,
                    estimated: false,
                    cached_in: 0,
                },
                result: format!("Findings on {id}."),
                cut_off,
                cached: false,
            },
        ));
    }
    send_all(&mut model, events);
    key(&mut model, KeyCode::Esc);
    assert_eq!(
        model.selected,
        Some(Node::Subtask(run, sid("emissions"))),
        "the cut-off subtask is selected"
    );
    model
}

fn screen(model: &mut Model) -> String {
    let (w, h) = model.size;
    update(model, Msg::Resize(w, h));
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("a test terminal");
    terminal
        .draw(|frame| view::draw(frame, model))
        .expect("drawn");
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn detail(model: &Model) -> Vec<String> {
    content::detail_lines(model, 60)
        .iter()
        .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
        .collect()
}

#[test]
fn a_cut_off_result_is_marked_in_the_tree_and_the_detail() {
    let mut model = scene();
    let screen = screen(&mut model);
    let row = |id: &str| {
        screen
            .lines()
            .find(|l| l.contains(&format!("✓ {id} ")))
            .unwrap_or_else(|| panic!("no row for {id}: {screen}"))
            .to_owned()
    };
    // Narrow: the short mark; wide enough: the whole phrase.
    assert!(row("emissions").contains("cut off"), "{screen}");
    assert!(!row("costs").contains("cut off"), "{screen}");
    model.size = (240, 40);
    let wide = self::screen(&mut model);
    assert!(
        wide.contains("Emissions cut off at the token limit"),
        "{wide}"
    );
    let lines = detail(&model);
    assert!(
        lines[0].contains("cut off at the token limit"),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("── Result, cut off at the token limit")),
        "{lines:#?}"
    );
}

#[test]
fn reasoning_is_one_dim_line_until_t_shows_it_apart_from_the_result() {
    let mut model = scene();
    let lines = detail(&model);
    let heading = lines
        .iter()
        .position(|l| l.starts_with("── Reasoning, attempt 1: 45 characters (t shows)"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(
        !lines.iter().any(|l| l.contains("tailpipe")),
        "collapsed: {lines:#?}"
    );
    let result = lines
        .iter()
        .position(|l| l.starts_with("── Result"))
        .expect("a result");
    assert!(heading < result);
    ch(&mut model, 't');
    let styled = content::detail_lines(&model, 60);
    let lines = detail(&model);
    assert!(lines.iter().any(|l| l.contains("(t hides)")), "{lines:#?}");
    let shown: Vec<_> = styled
        .iter()
        .filter(|l| {
            l.spans
                .iter()
                .any(|s| s.content.contains("tailpipe") || s.content.contains("grid mix"))
        })
        .collect();
    assert_eq!(shown.len(), 2, "{lines:#?}");
    for line in shown {
        for span in &line.spans {
            assert!(
                span.style.add_modifier.contains(Modifier::ITALIC),
                "{span:?}"
            );
            assert_eq!(span.style.fg, model.theme.dim().fg, "dimmed: {span:?}");
        }
    }
    // The result itself holds no reasoning.
    let after_result = &lines[lines
        .iter()
        .position(|l| l.starts_with("── Result"))
        .expect("a result")..];
    assert!(!after_result.iter().any(|l| l.contains("tailpipe")));
    ch(&mut model, 't');
    assert!(!detail(&model).iter().any(|l| l.contains("tailpipe")));
    // A subtask without reasoning shows no such section.
    ch(&mut model, 'j');
    assert!(!detail(&model).iter().any(|l| l.contains("Reasoning")));
}
