//! Follow-up questions in the dashboard: `f` (or Ctrl+F in the query box) on a finished run
//! makes the next question a follow-up to it, the query pane says so, Enter sends the earlier
//! run's query, report and results with the run, and the tree shows the follow-up under its
//! parent with `↳`. Snapshots at 80×24 and 160×48, built through `update` as the app does.

mod dashboard_support;

use dashboard_support::*;
use maestro::protocol::{EventKind, RunId, RunStatus, Usage};
use maestro::tui::model::{Focus, Model};
use maestro::tui::update::{Action, Msg, update};
use maestro::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];
const FOLLOW: &str = "Now go deeper on the pricing risks";
const REPORT: &str = "# EV report\n\nPrices fall as batteries get cheaper.";

fn render(model: &mut Model, w: u16, h: u16) -> Terminal<TestBackend> {
    update(model, Msg::Resize(w, h));
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("a test terminal");
    terminal
        .draw(|frame| view::draw(frame, model))
        .expect("drawn");
    terminal
}

fn starting(model: &mut Model, id: RunId, query: &str, parent: Option<RunId>) {
    update(
        model,
        Msg::RunStarting {
            id,
            query: query.to_owned(),
            parent,
        },
    );
}

fn succeeded(
    run: RunId,
    ago: u64,
    id: &str,
    attempt: u32,
    result: &str,
) -> maestro::protocol::Event {
    at(
        run,
        ago,
        EventKind::SubtaskSucceeded {
            subtask: sid(id),
            attempt,
            elapsed_ms: if attempt == 0 { 0 } else { 2_000 },
            usage: if attempt == 0 {
                Usage::default()
            } else {
                Usage {
                    tokens_in: 300,
                    tokens_out: 500,
                    estimated: false,
                    cached_in: 0,
                }
            },
            result: result.to_owned(),
            cut_off: false,
            cached: false,
        },
    )
}

/// A finished run: `costs` and `pricing` done, a report written.
fn finished_run(model: &mut Model, run: RunId, query: &str, ago: u64) {
    use EventKind as K;
    starting(model, run, query, None);
    let started = |id: &str, ago: u64| {
        at(
            run,
            ago,
            K::SubtaskStarted {
                subtask: sid(id),
                attempt: 1,
                worker: "research".to_owned(),
                model: "gpt-4o-mini".to_owned(),
            },
        )
    };
    send_all(
        model,
        [
            at(
                run,
                ago,
                K::RunStarted {
                    query: query.to_owned(),
                },
            ),
            at(
                run,
                ago - 1_000,
                K::PlanReady {
                    plan: plan(vec![
                        subtask("costs", "research", "Costs of the rollout", "Costs.", &[]),
                        subtask("pricing", "research", "Pricing", "Prices.", &[]),
                    ]),
                },
            ),
            started("costs", ago - 1_100),
            started("pricing", ago - 1_100),
            succeeded(run, ago - 3_100, "costs", 1, "Costs fall."),
            succeeded(run, ago - 3_200, "pricing", 1, "Prices fall."),
            at(
                run,
                ago - 5_000,
                K::SynthesisFinished {
                    attempt: 1,
                    text: REPORT.to_owned(),
                    synthesized: true,
                    usage: Usage::default(),
                    error: None,
                },
            ),
            at(
                run,
                ago - 5_000,
                K::RunFinished {
                    status: RunStatus::Succeeded,
                    elapsed_ms: 5_000,
                    usage: Usage::default(),
                    succeeded: 2,
                    failed: 0,
                    total: 2,
                    error: None,
                },
            ),
        ],
    );
}

/// Two finished runs; the first selected, `f` pressed and the follow-up typed.
fn asking_a_follow_up(size: (u16, u16)) -> Model {
    let mut model = model(false, size);
    finished_run(&mut model, run_id(1), QUERY, 60_000);
    finished_run(
        &mut model,
        run_id(2),
        "Which cities charge the most?",
        30_000,
    );
    key(&mut model, KeyCode::Esc); // query box → tree
    key(&mut model, KeyCode::Home); // run #1
    assert!(ch(&mut model, 'f').is_empty());
    type_text(&mut model, FOLLOW);
    model
}

/// The follow-up under way: `again` reuses `costs`, `deeper` runs.
fn a_follow_up_running(size: (u16, u16)) -> Model {
    use EventKind as K;
    let mut model = asking_a_follow_up(size);
    let actions = key(&mut model, KeyCode::Enter);
    assert!(matches!(actions.as_slice(), [Action::StartRun { .. }]));
    let run = run_id(3);
    starting(&mut model, run, FOLLOW, Some(run_id(1)));
    let mut again = subtask("again", "research", "Costs, as before", "Costs.", &[]);
    again.reuse = Some(sid("costs"));
    let deeper = subtask(
        "deeper",
        "analysis",
        "Pricing risks",
        "Go deeper.",
        &["again"],
    );
    send_all(
        &mut model,
        [
            at(
                run,
                9_000,
                K::RunStarted {
                    query: FOLLOW.to_owned(),
                },
            ),
            at(
                run,
                8_000,
                K::PlanReady {
                    plan: plan(vec![again, deeper]),
                },
            ),
            succeeded(run, 8_000, "again", 0, "Costs fall."),
            at(
                run,
                7_900,
                K::SubtaskStarted {
                    subtask: sid("deeper"),
                    attempt: 1,
                    worker: "analysis".to_owned(),
                    model: "gpt-4o-mini".to_owned(),
                },
            ),
        ],
    );
    key(&mut model, KeyCode::Esc);
    model
}

fn screen(terminal: &Terminal<TestBackend>) -> String {
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

#[test]
fn the_query_pane_says_when_the_question_is_a_follow_up() {
    for (w, h) in SIZES {
        let mut model = asking_a_follow_up((w, h));
        assert_eq!(model.focus, Focus::Query, "f goes to the query box");
        let terminal = render(&mut model, w, h);
        assert!(screen(&terminal).contains("Follow-up to #1"));
        insta::assert_snapshot!(
            format!("query_in_follow_up_mode_{w}x{h}"),
            terminal.backend()
        );
    }
}

#[test]
fn a_follow_up_sits_under_its_parent_with_reused_work_marked() {
    for (w, h) in SIZES {
        let mut model = a_follow_up_running((w, h));
        let terminal = render(&mut model, w, h);
        let text = screen(&terminal);
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{text}"))
        };
        assert!(
            at("#1 ") < at("↳ ▾ #3") && at("↳ ▾ #3") < at("#2 "),
            "{text}"
        );
        assert!(text.contains("reused"), "{text}");
        insta::assert_snapshot!(
            format!("follow_up_under_its_parent_{w}x{h}"),
            terminal.backend()
        );
    }
}

#[test]
fn enter_sends_the_parents_query_report_and_results_and_the_mode_ends() {
    let mut model = asking_a_follow_up((160, 48));
    let actions = key(&mut model, KeyCode::Enter);
    let [
        Action::StartRun {
            query, follow_up, ..
        },
    ] = actions.as_slice()
    else {
        panic!("expected one StartRun, got {actions:?}");
    };
    assert_eq!(query, FOLLOW);
    let follow_up = follow_up.as_ref().expect("a follow-up");
    assert_eq!(follow_up.parent, run_id(1));
    assert_eq!(follow_up.query, QUERY);
    assert_eq!(follow_up.report, REPORT);
    let results: Vec<(&str, &str)> = follow_up
        .results
        .iter()
        .map(|r| (r.id.as_str(), r.text.as_str()))
        .collect();
    assert_eq!(
        results,
        [("costs", "Costs fall."), ("pricing", "Prices fall.")]
    );
    assert_eq!(model.follow_up, None, "the next question is one of its own");

    // Ctrl+F in the query box toggles it; twice is a question of its own.
    ch(&mut model, '/');
    ctrl(&mut model, 'f');
    assert!(model.follow_up.is_some());
    ctrl(&mut model, 'f');
    assert_eq!(model.follow_up, None);
    type_text(&mut model, "plain");
    let actions = key(&mut model, KeyCode::Enter);
    assert!(matches!(
        actions.as_slice(),
        [Action::StartRun {
            follow_up: None,
            ..
        }]
    ));
}

#[test]
fn a_run_still_going_cannot_be_followed_up() {
    let mut model = model(false, (160, 48));
    starting(&mut model, run_id(1), QUERY, None);
    send(
        &mut model,
        at(
            run_id(1),
            1_000,
            EventKind::RunStarted {
                query: QUERY.to_owned(),
            },
        ),
    );
    key(&mut model, KeyCode::Esc);
    ch(&mut model, 'f');
    assert_eq!(model.follow_up, None);
    let toast = model.toast.as_ref().expect("a message");
    assert!(toast.text.contains("finished"), "{toast:?}");
}

#[test]
fn a_parent_that_is_going_again_makes_the_question_one_of_its_own_and_says_so() {
    let mut model = asking_a_follow_up((160, 48));
    // The parent is re-run after `f`: its report is no longer settled.
    send(
        &mut model,
        at(
            run_id(1),
            100,
            EventKind::SubtaskStarted {
                subtask: sid("costs"),
                attempt: 2,
                worker: "research".to_owned(),
                model: "gpt-4o-mini".to_owned(),
            },
        ),
    );
    let actions = key(&mut model, KeyCode::Enter);
    assert!(matches!(
        actions.as_slice(),
        [Action::StartRun {
            follow_up: None,
            ..
        }]
    ));
    let toast = model.toast.as_ref().expect("a message");
    assert!(toast.text.contains("of its own"), "{toast:?}");
}
