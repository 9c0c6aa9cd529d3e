//! Tool calls in the dashboard: the tree row names the tool call a subtask waits on, the detail
//! lists each call (arguments, time, size, outcome) between the streamed text, and `c` asks the
//! engine to cancel the call without touching the subtask. Drawn over `TestBackend` on the
//! fixed clock of `dashboard_support`, compared with snapshots.

mod dashboard_support;

use dashboard_support::*;
use maestro::protocol::{Command, EventKind, RunId, Source, SourceKind, Usage};
use maestro::tui::model::Model;
use maestro::tui::update::{Action, Msg, update};
use maestro::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;

fn render(model: &mut Model, w: u16, h: u16) -> Terminal<TestBackend> {
    update(model, Msg::Resize(w, h));
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("a terminal");
    terminal
        .draw(|frame| view::draw(frame, model))
        .expect("drawn");
    terminal
}

fn started(run: RunId, ago: u64, call: &str, url: &str) -> maestro::protocol::Event {
    at(
        run,
        ago,
        EventKind::ToolCallStarted {
            subtask: sid("emissions"),
            attempt: 1,
            call_id: call.to_owned(),
            tool: "fetch_url".to_owned(),
            arguments: url.to_owned(),
        },
    )
}

/// `emissions` streamed a line, fetched one page and waits on a second; `costs` runs on.
fn waiting_on_a_tool(run: RunId) -> Vec<maestro::protocol::Event> {
    let mut events = planning_events(run);
    events.push(at(
        run,
        38_000,
        EventKind::PlanReady {
            plan: plan(vec![
                subtask(
                    "emissions",
                    "research",
                    "Emissions",
                    "Emissions in cities.",
                    &[],
                ),
                subtask("costs", "compare", "Costs", "Costs for households.", &[]),
            ]),
        },
    ));
    for id in ["emissions", "costs"] {
        events.push(at(
            run,
            37_000,
            EventKind::SubtaskStarted {
                subtask: sid(id),
                attempt: 1,
                worker: "research".to_owned(),
                model: "gpt-4o-mini".to_owned(),
            },
        ));
    }
    events.push(at(
        run,
        36_000,
        EventKind::SubtaskDelta {
            subtask: sid("emissions"),
            attempt: 1,
            text: "Looking for measured figures first.\n\n".to_owned(),
        },
    ));
    events.push(started(run, 35_000, "call_1", "https://example.org/air"));
    events.push(at(
        run,
        34_600,
        EventKind::ToolCallFinished {
            subtask: sid("emissions"),
            attempt: 1,
            call_id: "call_1".to_owned(),
            ok: true,
            bytes: 12_345,
            ms: 400,
            summary: "HTTP 200 · https://example.org/air".to_owned(),
            source: Some(Source {
                number: 0,
                kind: SourceKind::Url,
                location: "https://example.org/air".to_owned(),
                bytes: 12_345,
                status: Some(200),
                retrieved_ms: NOW - 34_600,
            }),
            text: String::new(),
        },
    ));
    events.push(at(
        run,
        34_000,
        EventKind::SubtaskDelta {
            subtask: sid("emissions"),
            attempt: 1,
            text: "One more page.\n".to_owned(),
        },
    ));
    events.push(started(run, 33_000, "call_2", "https://example.org/noise"));
    events
}

fn selected_waiting(size: (u16, u16)) -> Model {
    let mut model = model(false, size);
    send_all(&mut model, waiting_on_a_tool(run_id(1)));
    key(&mut model, KeyCode::Esc);
    // The tree selects the first subtask of a new run.
    assert_eq!(
        model
            .selected_subtask()
            .map(|(_, s)| s.id.as_str().to_owned()),
        Some("emissions".to_owned())
    );
    model
}

#[test]
fn a_subtask_waiting_on_a_tool_shows_it_in_its_row_and_the_calls_between_its_text() {
    for (w, h) in [(80, 24), (160, 48)] {
        let mut model = selected_waiting((w, h));
        let terminal = render(&mut model, w, h);
        insta::assert_snapshot!(format!("waiting_on_a_tool_{w}x{h}"), terminal.backend());
    }
}

#[test]
fn a_finished_subtask_lists_its_tool_calls_above_the_result() {
    let mut model = selected_waiting((100, 30));
    send_all(
        &mut model,
        [
            at(
                run_id(1),
                32_000,
                EventKind::ToolCallFinished {
                    subtask: sid("emissions"),
                    attempt: 1,
                    call_id: "call_2".to_owned(),
                    ok: false,
                    bytes: 21,
                    ms: 1_000,
                    summary: "cancelled by the user".to_owned(),
                    source: None,
                    text: String::new(),
                },
            ),
            at(
                run_id(1),
                30_000,
                EventKind::SubtaskSucceeded {
                    subtask: sid("emissions"),
                    attempt: 1,
                    elapsed_ms: 7_000,
                    usage: Usage {
                        tokens_in: 900,
                        tokens_out: 300,
                        estimated: false,
                        cached_in: 0,
                    },
                    result: "Emissions fall where buses are electric.".to_owned(),
                    cut_off: false,
                    cached: false,
                },
            ),
        ],
    );
    let terminal = render(&mut model, 100, 30);
    insta::assert_snapshot!("finished_with_tool_calls_100x30", terminal.backend());
}

#[test]
fn c_cancels_the_tool_call_of_the_selected_subtask_and_only_when_one_runs() {
    let mut model = selected_waiting((100, 30));
    let actions = ch(&mut model, 'c');
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Send(Command::CancelTools { id, subtask })
                if *id == run_id(1) && subtask.as_str() == "emissions"
        )),
        "{actions:?}"
    );
    // `costs` runs but waits on no tool: nothing to cancel.
    ch(&mut model, 'j');
    let actions = ch(&mut model, 'c');
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Send(Command::CancelTools { .. }))),
        "{actions:?}"
    );
}
