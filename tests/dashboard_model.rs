//! The dashboard's state machine without a terminal: key presses, pastes, mouse events and
//! engine events go through `update`; the tests check the actions it returns (commands for the
//! engine, clipboard, report files, the bell, quitting) and the state it leaves behind.

mod dashboard_support;

use std::path::PathBuf;

use dashboard_support::*;
use maestro::protocol::{Command, EventKind, RunCommand, RunId, RunStatus, Usage};
use maestro::store::SavedRunStatus;
use maestro::tui::content;
use maestro::tui::keymap::{BINDINGS, Context};
use maestro::tui::layout::{self, areas};
use maestro::tui::model::{Focus, Model, Node, Overlay, ToastLevel};
use maestro::tui::update::{Action, Msg, key_action, perform_key_action, update};
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};

// ---- helpers ---------------------------------------------------------------------------------

fn query_text(model: &Model) -> String {
    model.query.lines().join("\n")
}

/// Type `text` into the query box and press Enter, then give the run an id as the app would;
/// that id.
fn ask(model: &mut Model, text: &str) -> RunId {
    model.focus = Focus::Query;
    type_text(model, text);
    let query = match key(model, KeyCode::Enter).as_slice() {
        [Action::StartRun { query, .. }] => query.clone(),
        other => panic!("Enter sent {other:?}"),
    };
    let id = run_id(100 + model.runs.len() as u128);
    assert!(
        update(
            model,
            Msg::RunStarting {
                id,
                query,
                parent: None,
            },
        )
        .is_empty()
    );
    id
}

/// The every-state run with the tree focused and `costs` (failed) selected.
/// Three presets, `research` configured.
fn with_presets(model: &mut Model) {
    use maestro::tui::model::PresetInfo;
    let preset = |name: &str, roles: &[&str]| PresetInfo {
        name: name.to_owned(),
        description: format!("The {name} team."),
        source: "built-in".to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    };
    model.models.preset = "research".to_owned();
    model.models.presets = vec![
        preset("research", &["analysis", "research"]),
        preset("market", &["news", "sentiment"]),
        preset("code-review", &["security", "style"]),
    ];
}

fn failed_costs_selected() -> Model {
    let mut model = model(false, (160, 48));
    send_all(&mut model, every_state_events(run_id(1)));
    key(&mut model, KeyCode::Esc);
    for _ in 0..3 {
        ch(&mut model, 'j');
    }
    assert_eq!(model.selected, Some(Node::Subtask(run_id(1), sid("costs"))));
    model
}

fn steer(id: RunId, command: RunCommand) -> Vec<Action> {
    vec![Action::Send(Command::Run { id, command })]
}

fn run_finished(run: RunId, ago: u64, status: RunStatus) -> maestro::protocol::Event {
    at(
        run,
        ago,
        EventKind::RunFinished {
            status,
            elapsed_ms: 1_000,
            usage: Usage::default(),
            succeeded: 0,
            failed: 0,
            total: 0,
            error: None,
        },
    )
}

fn mouse(model: &mut Model, kind: MouseEventKind, column: u16, row: u16) -> Vec<Action> {
    update(
        model,
        Msg::Mouse(MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        }),
    )
}

/// First visible line of the synthesis, as the view computes it.
fn synthesis_top(model: &Model) -> (usize, usize) {
    let area = layout::content(areas(model).synthesis);
    let total = content::synthesis_line_count(model, area.width);
    let top = model
        .synthesis_scroll
        .top(total, area.height as usize, model.synthesis_live());
    (top, total.saturating_sub(area.height as usize))
}

fn selected_index(model: &Model) -> usize {
    let rows = model.rows();
    let selected = model.selected.as_ref().expect("a selection");
    rows.iter()
        .position(|r| r == selected)
        .expect("selected row")
}

// ---- the query box ---------------------------------------------------------------------------

#[test]
fn typing_a_query_and_enter_starts_a_run_clears_the_box_and_focuses_the_tree() {
    let mut model = model(false, (80, 24));
    assert_eq!(model.focus, Focus::Query);
    assert!(type_text(&mut model, "EV adoption?").is_empty());
    let actions = key(&mut model, KeyCode::Enter);
    let [Action::StartRun { query, .. }] = actions.as_slice() else {
        panic!("expected one StartRun, got {actions:?}");
    };
    assert_eq!(query, "EV adoption?");
    assert_eq!(query_text(&model), "");
    assert_eq!(model.focus, Focus::Tree);
    // The app names the run and says so before any engine event; then it shows, selected.
    let id = run_id(7);
    let more = update(
        &mut model,
        Msg::RunStarting {
            id,
            query: query.clone(),
            parent: None,
        },
    );
    assert!(more.is_empty(), "{more:?}");
    assert_eq!(model.rows(), vec![Node::Run(id)]);
    assert_eq!(model.selected, Some(Node::Run(id)));
    assert_eq!(model.run(id).unwrap().report.query, "EV adoption?");
}

#[test]
fn update_is_deterministic_the_same_keys_give_the_same_actions_and_state() {
    // No clock or randomness inside `update`: two dashboards fed the same messages agree,
    // down to the actions for the engine.
    let play = || {
        let mut model = model(false, (80, 24));
        let mut actions = type_text(&mut model, "same question");
        actions.extend(key(&mut model, KeyCode::Enter));
        (actions, model.rows(), model.focus)
    };
    assert_eq!(play(), play());
}

#[test]
fn alt_enter_and_shift_enter_insert_a_newline_instead_of_submitting() {
    let mut model = model(false, (80, 24));
    type_text(&mut model, "one");
    assert!(key_with(&mut model, KeyCode::Enter, KeyModifiers::ALT).is_empty());
    type_text(&mut model, "two");
    assert!(key_with(&mut model, KeyCode::Enter, KeyModifiers::SHIFT).is_empty());
    type_text(&mut model, "three");
    assert_eq!(model.query.lines(), ["one", "two", "three"]);
    assert!(model.runs.is_empty());
    let actions = key(&mut model, KeyCode::Enter);
    assert!(
        matches!(actions.as_slice(), [Action::StartRun { query, .. }] if query == "one\ntwo\nthree"),
        "{actions:?}"
    );
}

#[test]
fn enter_on_an_empty_or_blank_query_sends_nothing_and_says_why() {
    let mut model = model(false, (80, 24));
    assert!(key(&mut model, KeyCode::Enter).is_empty());
    type_text(&mut model, "   ");
    assert!(key(&mut model, KeyCode::Enter).is_empty());
    assert!(model.runs.is_empty());
    assert_eq!(model.focus, Focus::Query);
    assert!(model.toast.is_some());
}

#[test]
fn ctrl_u_clears_the_query_box() {
    let mut model = model(false, (80, 24));
    type_text(&mut model, "a long question");
    key_with(&mut model, KeyCode::Enter, KeyModifiers::ALT);
    type_text(&mut model, "second line");
    assert!(ctrl(&mut model, 'u').is_empty());
    assert_eq!(model.query.lines(), [""]);
    assert!(
        key(&mut model, KeyCode::Enter).is_empty(),
        "nothing left to send"
    );
}

#[test]
fn up_on_the_first_line_recalls_earlier_queries_and_down_brings_the_draft_back() {
    let mut model = model(false, (80, 24));
    ask(&mut model, "first question");
    ask(&mut model, "second question");
    model.focus = Focus::Query;
    type_text(&mut model, "draft");
    key(&mut model, KeyCode::Up);
    assert_eq!(query_text(&model), "second question");
    key(&mut model, KeyCode::Up);
    assert_eq!(query_text(&model), "first question");
    key(&mut model, KeyCode::Up);
    assert_eq!(query_text(&model), "first question", "stops at the oldest");
    key(&mut model, KeyCode::Down);
    assert_eq!(query_text(&model), "second question");
    key(&mut model, KeyCode::Down);
    assert_eq!(query_text(&model), "draft");
    assert!(model.history_pos.is_none());
}

#[test]
fn a_second_query_while_a_run_is_active_starts_a_second_run_and_collapses_the_first() {
    let mut model = model(false, (80, 24));
    let first = ask(&mut model, "first");
    send_all(&mut model, every_state_events(first));
    assert!(model.run(first).unwrap().is_active());
    assert_eq!(model.rows().len(), 8);
    let second = ask(&mut model, "second");
    assert_ne!(first, second);
    assert!(!model.run(first).unwrap().expanded);
    assert!(model.run(second).unwrap().expanded);
    assert_eq!(model.rows(), vec![Node::Run(first), Node::Run(second)]);
    assert_eq!(model.selected, Some(Node::Run(second)));
    assert_eq!(model.run(second).unwrap().number, 2);
}

// ---- steering --------------------------------------------------------------------------------

#[test]
fn r_on_the_row_of_a_run_whose_planning_failed_plans_it_again() {
    let mut model = model(false, (120, 40));
    send_all(&mut model, rejected_plan_events(run_id(1)));
    key(&mut model, KeyCode::Esc);
    assert_eq!(model.selected, Some(Node::Run(run_id(1))));
    assert_eq!(ch(&mut model, 'r'), steer(run_id(1), RunCommand::Replan));
    // Planning again reopens the run: the old failure is gone and the tree says so.
    send_all(
        &mut model,
        [at(
            run_id(1),
            1_000,
            EventKind::PlanningStarted {
                attempt: 3,
                model: "gpt-4o".to_owned(),
            },
        )],
    );
    let report = &model.run(run_id(1)).unwrap().report;
    assert_eq!(report.status, None);
    assert_eq!(report.error, None);
    assert_eq!(report.planning.len(), 3);
}

#[test]
fn drafted_subtasks_are_replaced_by_the_checked_plan_and_dropped_with_a_rejection() {
    let mut model = model(false, (120, 40));
    send_all(&mut model, planning_mid_stream_events(run_id(1)));
    let report = &model.run(run_id(1)).unwrap().report;
    assert_eq!(report.subtasks.len(), 2);
    assert!(report.subtasks.iter().all(|s| s.drafted));
    assert!(report.planning[0].text.contains("Who pa"));
    send_all(
        &mut model,
        [at(
            run_id(1),
            1_000,
            EventKind::PlanRejected {
                attempt: 1,
                error: "cut off".into(),
                answer: "{\"subtasks\": [".into(),
            },
        )],
    );
    let report = &model.run(run_id(1)).unwrap().report;
    assert!(report.subtasks.is_empty(), "drafts of a rejected answer go");
    send_all(
        &mut model,
        every_state_events(run_id(1)).into_iter().skip(2),
    );
    let report = &model.run(run_id(1)).unwrap().report;
    assert!(!report.subtasks.is_empty());
    assert!(report.subtasks.iter().all(|s| !s.drafted));
}

#[test]
fn a_drafted_subtask_cannot_be_steered_yet() {
    let mut model = model(false, (120, 40));
    send_all(&mut model, planning_mid_stream_events(run_id(1)));
    key(&mut model, KeyCode::Esc);
    ch(&mut model, 'j');
    assert_eq!(
        model.selected,
        Some(Node::Subtask(run_id(1), sid("emissions")))
    );
    for c in ['r', 'x', 'e'] {
        assert!(ch(&mut model, c).is_empty(), "{c}");
        assert!(model.overlay.is_none());
        assert!(
            model
                .toast
                .as_ref()
                .unwrap()
                .text
                .contains("not checked yet")
        );
    }
}

#[test]
fn r_on_a_failed_subtask_asks_the_engine_to_retry_it() {
    let mut model = failed_costs_selected();
    assert_eq!(
        ch(&mut model, 'r'),
        steer(run_id(1), RunCommand::RetrySubtask(sid("costs")))
    );
}

#[test]
fn r_on_a_run_row_sends_nothing_and_asks_for_a_subtask() {
    let mut model = failed_costs_selected();
    ch(&mut model, 'g');
    assert_eq!(model.selected, Some(Node::Run(run_id(1))));
    assert!(ch(&mut model, 'r').is_empty());
    assert!(ch(&mut model, 'x').is_empty());
    assert!(model.toast.as_ref().unwrap().text.contains("subtask"));
}

#[test]
fn capital_r_retries_every_failed_subtask_of_the_run() {
    let mut model = failed_costs_selected();
    assert_eq!(
        ch(&mut model, 'R'),
        steer(run_id(1), RunCommand::RetryFailed)
    );
}

#[test]
fn x_cancels_the_selected_subtask() {
    let mut model = failed_costs_selected();
    ch(&mut model, 'k');
    ch(&mut model, 'k'); // `emissions`, running
    assert_eq!(
        ch(&mut model, 'x'),
        steer(run_id(1), RunCommand::CancelSubtask(sid("emissions")))
    );
}

#[test]
fn capital_x_cancels_the_run_only_while_it_is_active() {
    let mut model = failed_costs_selected();
    assert_eq!(ch(&mut model, 'X'), steer(run_id(1), RunCommand::CancelRun));
    send(&mut model, run_finished(run_id(1), 0, RunStatus::Partial));
    assert!(ch(&mut model, 'X').is_empty());
    assert!(model.toast.as_ref().unwrap().text.contains("not active"));
}

#[test]
fn s_asks_for_the_synthesis_again() {
    let mut model = failed_costs_selected();
    assert_eq!(
        ch(&mut model, 's'),
        steer(run_id(1), RunCommand::Resynthesize)
    );
}

#[test]
fn e_then_typing_then_enter_sends_the_edited_description_with_the_same_role() {
    let mut model = failed_costs_selected();
    let before = model.selected_subtask().unwrap().1.description.clone();
    assert!(ch(&mut model, 'e').is_empty());
    assert!(matches!(model.overlay, Some(Overlay::Edit { .. })));
    assert!(type_text(&mut model, " Use 2024 prices.").is_empty());
    let actions = key(&mut model, KeyCode::Enter);
    assert_eq!(
        actions,
        steer(
            run_id(1),
            RunCommand::EditSubtask {
                id: sid("costs"),
                description: Some(format!("{before} Use 2024 prices.")),
                worker: Some("compare".into()),
            }
        )
    );
    assert!(model.overlay.is_none());
}

#[test]
fn tab_in_the_editor_cycles_the_role_and_shift_tab_goes_back() {
    let mut model = failed_costs_selected();
    ch(&mut model, 'e');
    let role = |model: &Model| match &model.overlay {
        Some(Overlay::Edit { role, .. }) => ROLES[*role],
        _ => panic!("the editor closed"),
    };
    assert_eq!(role(&model), "compare");
    key(&mut model, KeyCode::Tab);
    assert_eq!(role(&model), "critique");
    key(&mut model, KeyCode::Tab);
    key(&mut model, KeyCode::Tab);
    assert_eq!(role(&model), "analysis", "wraps around");
    key_with(&mut model, KeyCode::BackTab, KeyModifiers::SHIFT);
    assert_eq!(role(&model), "writing");
    assert_eq!(
        model.focus,
        Focus::Tree,
        "Tab in the editor does not move focus"
    );
    let actions = key(&mut model, KeyCode::Enter);
    assert!(
        matches!(
            actions.as_slice(),
            [Action::Send(Command::Run {
                command: RunCommand::EditSubtask { worker: Some(w), .. },
                ..
            })] if w == "writing"
        ),
        "{actions:?}"
    );
}

#[test]
fn esc_in_the_editor_closes_it_and_sends_nothing() {
    let mut model = failed_costs_selected();
    ch(&mut model, 'e');
    type_text(&mut model, " changed");
    assert!(key(&mut model, KeyCode::Esc).is_empty());
    assert!(model.overlay.is_none());
    assert!(
        !model
            .selected_subtask()
            .unwrap()
            .1
            .description
            .contains("changed")
    );
}

// ---- copy and write --------------------------------------------------------------------------

fn finished_run_with_synthesis() -> Model {
    let mut model = model(false, (80, 24));
    send_all(
        &mut model,
        small_run_events(run_id(1), "# Report\n\nEVs cut **emissions**."),
    );
    key(&mut model, KeyCode::Esc);
    model
}

#[test]
fn y_copies_the_synthesis_to_the_clipboard() {
    let mut model = finished_run_with_synthesis();
    assert_eq!(
        ch(&mut model, 'y'),
        vec![Action::Copy("# Report\n\nEVs cut **emissions**.".into())]
    );
    assert!(model.toast.as_ref().unwrap().text.contains("copied"));
}

#[test]
fn y_without_a_synthesis_copies_nothing() {
    let mut model = failed_costs_selected();
    assert!(ch(&mut model, 'y').is_empty());
}

#[test]
fn w_writes_a_markdown_report_named_after_the_query_and_the_toast_shows_where() {
    let mut model = finished_run_with_synthesis();
    let actions = ch(&mut model, 'w');
    let [Action::Write { path, text }] = actions.as_slice() else {
        panic!("expected one Write, got {actions:?}");
    };
    assert_eq!(path.extension().and_then(|e| e.to_str()), Some("md"));
    assert!(path.is_relative(), "{path:?}");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("maestro-1-what-are-the-impacts"), "{name}");
    assert!(text.contains("EVs cut **emissions**."), "{text}");
    assert!(text.contains("## Subtasks"), "{text}");

    let written = PathBuf::from("reports").join(name);
    assert!(update(&mut model, Msg::ReportWritten(Ok(written.clone()))).is_empty());
    let toast = model.toast.clone().unwrap();
    assert!(
        toast.text.contains(&written.display().to_string()),
        "{toast:?}"
    );
    assert_eq!(toast.level, ToastLevel::Info);

    update(&mut model, Msg::ReportWritten(Err("disk full".into())));
    let toast = model.toast.clone().unwrap();
    assert!(toast.text.contains("disk full"), "{toast:?}");
    assert_eq!(toast.level, ToastLevel::Error);
}

// ---- quitting --------------------------------------------------------------------------------

#[test]
fn q_with_no_active_run_quits_at_once() {
    let mut model = finished_run_with_synthesis();
    assert_eq!(ch(&mut model, 'q'), vec![Action::Quit]);
    assert!(model.quit);
}

#[test]
fn q_while_runs_are_active_asks_first_and_y_cancels_each_active_run_then_quits() {
    let mut model = model(false, (80, 24));
    let first = ask(&mut model, "first");
    let finished = ask(&mut model, "finished");
    let third = ask(&mut model, "third");
    send(&mut model, run_finished(finished, 0, RunStatus::Succeeded));
    assert!(ch(&mut model, 'q').is_empty());
    assert!(matches!(model.overlay, Some(Overlay::ConfirmQuit)));
    assert!(!model.quit);
    let actions = ch(&mut model, 'y');
    assert_eq!(
        actions,
        vec![
            Action::Send(Command::Run {
                id: first,
                command: RunCommand::CancelRun
            }),
            Action::Send(Command::Run {
                id: third,
                command: RunCommand::CancelRun
            }),
            Action::Quit,
        ]
    );
    assert!(model.quit);
}

#[test]
fn ctrl_c_twice_quits_even_while_a_run_is_active() {
    let mut model = model(false, (80, 24));
    let run = ask(&mut model, "question");
    model.focus = Focus::Query; // Ctrl+C works in the query box too
    assert!(ctrl(&mut model, 'c').is_empty());
    assert!(matches!(model.overlay, Some(Overlay::ConfirmQuit)));
    assert_eq!(
        ctrl(&mut model, 'c'),
        vec![
            Action::Send(Command::Run {
                id: run,
                command: RunCommand::CancelRun
            }),
            Action::Quit
        ]
    );
}

#[test]
fn any_other_key_dismisses_the_quit_confirmation() {
    let mut model = model(false, (80, 24));
    ask(&mut model, "question");
    for other in [KeyCode::Char('n'), KeyCode::Esc, KeyCode::Char('j')] {
        ch(&mut model, 'q');
        assert!(model.overlay.is_some());
        assert!(key(&mut model, other).is_empty(), "{other:?}");
        assert!(model.overlay.is_none(), "{other:?}");
        assert!(!model.quit);
    }
}

// ---- the tree --------------------------------------------------------------------------------

#[test]
fn j_k_and_the_arrows_move_the_selection_through_the_rows() {
    let mut model = failed_costs_selected();
    let rows = model.rows();
    assert_eq!(rows.len(), 8);
    assert_eq!(selected_index(&model), 4);
    ch(&mut model, 'j');
    assert_eq!(selected_index(&model), 5);
    key(&mut model, KeyCode::Down);
    assert_eq!(selected_index(&model), 6);
    ch(&mut model, 'k');
    key(&mut model, KeyCode::Up);
    assert_eq!(selected_index(&model), 4);
    ch(&mut model, 'G');
    assert_eq!(selected_index(&model), 7);
    ch(&mut model, 'j');
    assert_eq!(selected_index(&model), 7, "stops at the last row");
    key(&mut model, KeyCode::Home);
    assert_eq!(selected_index(&model), 0);
    key(&mut model, KeyCode::Up);
    assert_eq!(selected_index(&model), 0, "stops at the first row");
}

#[test]
fn left_on_a_subtask_selects_its_run_left_again_collapses_and_right_expands() {
    let mut model = failed_costs_selected();
    key(&mut model, KeyCode::Left);
    assert_eq!(model.selected, Some(Node::Run(run_id(1))));
    assert_eq!(model.rows().len(), 8);
    key(&mut model, KeyCode::Left);
    assert_eq!(model.rows(), vec![Node::Run(run_id(1))]);
    assert!(!model.runs[0].expanded);
    key(&mut model, KeyCode::Right);
    assert_eq!(model.rows().len(), 8);
    assert_eq!(model.selected, Some(Node::Run(run_id(1))));
}

#[test]
fn enter_on_a_subtask_toggles_the_detail_pane() {
    let mut model = failed_costs_selected();
    assert!(model.detail_open);
    assert!(areas(&model).detail.is_some());
    key(&mut model, KeyCode::Enter);
    assert!(!model.detail_open);
    assert!(areas(&model).detail.is_none());
    key(&mut model, KeyCode::Tab);
    assert_eq!(model.focus, Focus::Synthesis, "Tab skips the closed detail");
    key(&mut model, KeyCode::BackTab);
    key(&mut model, KeyCode::Enter);
    assert!(model.detail_open);
}

#[test]
fn with_fifty_subtasks_in_a_small_terminal_the_selection_stays_on_screen() {
    let mut model = model(false, (60, 16));
    let run = run_id(1);
    let subtasks = (1..=50)
        .map(|i| {
            subtask(
                &format!("task_{i}"),
                "research",
                &format!("Topic {i}"),
                "Look it up.",
                &[],
            )
        })
        .collect();
    send_all(&mut model, planning_events(run));
    send(
        &mut model,
        at(
            run,
            30_000,
            EventKind::PlanReady {
                plan: plan(subtasks),
            },
        ),
    );
    key(&mut model, KeyCode::Esc);
    let height = layout::inner(areas(&model).tree).height as usize;
    assert!(height < 10, "a small tree: {height} rows");
    let visible = |model: &Model| {
        let at = selected_index(model);
        assert!(
            at >= model.tree_offset && at < model.tree_offset + height,
            "row {at} outside {}..{}",
            model.tree_offset,
            model.tree_offset + height
        );
    };
    for _ in 0..30 {
        ch(&mut model, 'j');
        visible(&model);
    }
    assert_eq!(selected_index(&model), 31);
    key(&mut model, KeyCode::PageDown);
    visible(&model);
    ch(&mut model, 'G');
    visible(&model);
    assert_eq!(model.tree_offset, 51 - height);
    for _ in 0..20 {
        ch(&mut model, 'k');
        visible(&model);
    }
    ch(&mut model, 'g');
    visible(&model);
    assert_eq!(model.tree_offset, 0);
    // A resize to fewer rows keeps it visible too.
    ch(&mut model, 'G');
    update(&mut model, Msg::Resize(60, 12));
    let height = layout::inner(areas(&model).tree).height as usize;
    let at = selected_index(&model);
    assert!(at >= model.tree_offset && at < model.tree_offset + height);
}

// ---- synthesis scrolling ---------------------------------------------------------------------

/// A synthesis delta, then a clock tick past the markdown refresh interval (as the app's
/// ticker does while a synthesis streams), so the new text is laid out.
fn send_delta(model: &mut Model, event: maestro::protocol::Event) {
    send(model, event);
    let later = model.now_ms + maestro::tui::markdown::STREAM_REFRESH_MS;
    update(model, Msg::Tick(later));
}

fn synthesis_delta(n: usize, lines: usize) -> maestro::protocol::Event {
    let text: String = (0..lines)
        .map(|i| format!("Paragraph {n}.{i} of the report.\n\n"))
        .collect();
    at(run_id(1), 0, EventKind::SynthesisDelta { attempt: 1, text })
}

#[test]
fn a_streaming_synthesis_follows_new_text_until_scrolled_up_and_end_follows_again() {
    let mut model = streaming_synthesis(20);
    let (top, max) = synthesis_top(&model);
    assert!(max > 10, "enough text to scroll: {max}");
    assert_eq!(top, max, "follows while streaming");

    send_delta(&mut model, synthesis_delta(2, 10));
    let (top, max) = synthesis_top(&model);
    assert_eq!(top, max, "new text keeps the view at the bottom");

    ch(&mut model, 'k');
    let (held, max) = synthesis_top(&model);
    assert_eq!(held, max - 1);
    send_delta(&mut model, synthesis_delta(3, 10));
    let (top, max) = synthesis_top(&model);
    assert_eq!(top, held, "scrolled up: new text does not move the view");
    assert!(max > held + 10);

    key(&mut model, KeyCode::PageUp);
    let (paged, _) = synthesis_top(&model);
    assert!(paged < held);
    send_delta(&mut model, synthesis_delta(4, 5));
    assert_eq!(synthesis_top(&model).0, paged);

    key(&mut model, KeyCode::End);
    send_delta(&mut model, synthesis_delta(5, 5));
    let (top, max) = synthesis_top(&model);
    assert_eq!(top, max, "End follows again");
}

#[test]
fn wheel_over_the_synthesis_scrolls_it_and_a_click_focuses_it() {
    let mut model = model(false, (80, 24));
    send_all(&mut model, small_run_events(run_id(1), &long_synthesis()));
    let area = areas(&model).synthesis;
    let (x, y) = (area.x + 5, area.y + 2);
    // The report streamed in while this run was shown, so the view followed it to the end;
    // Home goes back to the top.
    model.focus = Focus::Synthesis;
    key(&mut model, KeyCode::Home);
    assert_eq!(synthesis_top(&model).0, 0);
    model.focus = Focus::Query;
    mouse(&mut model, MouseEventKind::ScrollDown, x, y);
    mouse(&mut model, MouseEventKind::ScrollDown, x, y);
    assert_eq!(synthesis_top(&model).0, 6);
    mouse(&mut model, MouseEventKind::ScrollUp, x, y);
    assert_eq!(synthesis_top(&model).0, 3);
    assert_eq!(model.focus, Focus::Query, "the wheel does not move focus");
    mouse(&mut model, MouseEventKind::Down(MouseButton::Left), x, y);
    assert_eq!(model.focus, Focus::Synthesis);
}

// ---- mouse on the tree -----------------------------------------------------------------------

#[test]
fn a_left_click_in_the_tree_focuses_it_and_selects_the_row_under_the_cursor() {
    let mut model = model(false, (160, 48));
    send_all(&mut model, every_state_events(run_id(1)));
    assert_eq!(model.focus, Focus::Query);
    let tree = layout::inner(areas(&model).tree);
    let rows = model.rows();
    mouse(
        &mut model,
        MouseEventKind::Down(MouseButton::Left),
        tree.x + 10,
        tree.y + 4,
    );
    assert_eq!(model.focus, Focus::Tree);
    assert_eq!(model.selected.as_ref(), Some(&rows[4]));
    assert_eq!(model.selected, Some(Node::Subtask(run_id(1), sid("costs"))));
    // A click below the last row focuses but keeps the selection.
    mouse(
        &mut model,
        MouseEventKind::Down(MouseButton::Left),
        tree.x + 10,
        tree.y + 20,
    );
    assert_eq!(model.selected, Some(Node::Subtask(run_id(1), sid("costs"))));
}

#[test]
fn the_mouse_is_ignored_while_an_overlay_is_open() {
    let mut model = failed_costs_selected();
    ch(&mut model, '?');
    let tree = layout::inner(areas(&model).tree);
    mouse(
        &mut model,
        MouseEventKind::Down(MouseButton::Left),
        tree.x + 10,
        tree.y,
    );
    assert_eq!(model.selected, Some(Node::Subtask(run_id(1), sid("costs"))));
    assert!(matches!(model.overlay, Some(Overlay::Help { .. })));
}

// ---- the bell --------------------------------------------------------------------------------

fn run_lasting(model: &mut Model, run: RunId, ms: u64) -> Vec<Action> {
    send(
        model,
        at(
            run,
            ms,
            EventKind::RunStarted {
                query: QUERY.into(),
            },
        ),
    );
    send(model, run_finished(run, 0, RunStatus::Succeeded))
}

#[test]
fn the_bell_rings_when_a_run_longer_than_ten_seconds_finishes() {
    let mut model = model(false, (80, 24));
    assert_eq!(
        run_lasting(&mut model, run_id(1), 12_000),
        vec![Action::Bell]
    );
}

#[test]
fn no_bell_for_a_run_of_ten_seconds_or_less() {
    let mut model = model(false, (80, 24));
    assert!(run_lasting(&mut model, run_id(1), 10_000).is_empty());
    assert!(run_lasting(&mut model, run_id(2), 3_000).is_empty());
}

#[test]
fn no_bell_for_a_long_run_when_the_bell_is_off() {
    let mut model = model(false, (80, 24));
    model.info.bell = false;
    assert!(run_lasting(&mut model, run_id(1), 60_000).is_empty());
}

#[test]
fn a_quick_re_run_of_a_long_finished_run_does_not_ring_again() {
    let mut model = model(false, (80, 24));
    let run = run_id(1);
    send_all(&mut model, planning_events(run));
    send(
        &mut model,
        at(
            run,
            40_000,
            EventKind::PlanReady {
                plan: plan(vec![subtask("a", "research", "A", "A.", &[])]),
            },
        ),
    );
    assert_eq!(
        send(&mut model, run_finished(run, 20_000, RunStatus::Partial)),
        vec![Action::Bell]
    );
    // Re-run two seconds before the end: active again, then finished quickly.
    send(
        &mut model,
        at(
            run,
            2_000,
            EventKind::SubtaskStarted {
                subtask: sid("a"),
                attempt: 2,
                worker: "research".into(),
                model: "gpt-4o-mini".into(),
            },
        ),
    );
    assert!(model.run(run).unwrap().is_active());
    assert!(send(&mut model, run_finished(run, 0, RunStatus::Succeeded)).is_empty());
}

// ---- key kinds, paste ------------------------------------------------------------------------

#[test]
fn key_release_events_do_nothing() {
    let mut model = finished_run_with_synthesis();
    let release = |code| {
        Msg::Key(KeyEvent::new_with_kind(
            code,
            KeyModifiers::NONE,
            KeyEventKind::Release,
        ))
    };
    for code in [
        KeyCode::Char('q'),
        KeyCode::Char('y'),
        KeyCode::Char('?'),
        KeyCode::Char('j'),
        KeyCode::Tab,
    ] {
        assert!(update(&mut model, release(code)).is_empty(), "{code:?}");
    }
    assert!(model.overlay.is_none());
    assert!(!model.quit);
    assert_eq!(model.focus, Focus::Tree);
    assert_eq!(
        model.selected,
        Some(Node::Subtask(run_id(1), sid("emissions")))
    );
    model.focus = Focus::Query;
    update(&mut model, release(KeyCode::Char('a')));
    update(&mut model, release(KeyCode::Enter));
    assert_eq!(query_text(&model), "");
    assert_eq!(model.runs.len(), 1);
    // A press of the same key does act.
    assert_eq!(
        update(
            &mut model,
            Msg::Key(KeyEvent::new(KeyCode::Char('a'), KeyModifiers::NONE))
        ),
        vec![]
    );
    assert_eq!(query_text(&model), "a");
}

#[test]
fn a_multi_line_paste_goes_into_the_query_box_without_submitting() {
    let mut model = model(false, (80, 24));
    assert!(update(&mut model, Msg::Paste("line1\nline2".into())).is_empty());
    assert_eq!(model.query.lines(), ["line1", "line2"]);
    assert!(model.runs.is_empty());
    update(&mut model, Msg::Paste("\r\nline3\r\n".into()));
    assert_eq!(model.query.lines(), ["line1", "line2", "line3", ""]);
}

#[test]
fn a_paste_while_the_tree_is_focused_lands_in_the_query_box() {
    let mut model = finished_run_with_synthesis();
    assert_eq!(model.focus, Focus::Tree);
    assert!(update(&mut model, Msg::Paste("qqq".into())).is_empty());
    assert_eq!(model.focus, Focus::Query);
    assert_eq!(query_text(&model), "qqq");
    assert!(!model.quit);
}

#[test]
fn escape_sequences_in_a_paste_are_stripped() {
    let mut model = model(false, (80, 24));
    update(
        &mut model,
        Msg::Paste("\u{1b}[31mred\u{1b}[0m \u{1b}]0;title\u{7}text\u{7}".into()),
    );
    assert_eq!(query_text(&model), "red text");
}

#[test]
fn a_paste_into_the_editor_goes_into_the_description() {
    let mut model = failed_costs_selected();
    ch(&mut model, 'e');
    update(&mut model, Msg::Paste(" Pasted\u{1b}[2J.".into()));
    let actions = key(&mut model, KeyCode::Enter);
    assert!(
        matches!(
            actions.as_slice(),
            [Action::Send(Command::Run {
                command: RunCommand::EditSubtask { description: Some(d), .. },
                ..
            })] if d.ends_with("cities. Pasted.")
        ),
        "{actions:?}"
    );
}

// ---- help ------------------------------------------------------------------------------------

/// What a key can change, written out so two models can be compared.
fn state(model: &Model) -> String {
    let overlay = match &model.overlay {
        None => "none".to_owned(),
        Some(Overlay::Help { scroll }) => format!("help {scroll}"),
        Some(Overlay::ConfirmQuit) => "confirm quit".to_owned(),
        Some(Overlay::Edit { text, role, .. }) => {
            format!("edit {role} {:?} {:?}", text.lines(), text.cursor())
        }
        Some(Overlay::Models { role, cursor }) => format!(
            "models {role:?} {cursor} {:?} {:?}",
            model.models.picked, model.models.list
        ),
        Some(Overlay::History { search, cursor }) => {
            format!("history {search:?} {cursor} {:?}", model.saved_runs)
        }
        Some(Overlay::Presets { cursor }) => {
            format!("presets {cursor} {:?}", model.models.picked)
        }
        Some(Overlay::Stats { scroll }) => format!("stats {scroll} {:?}", model.stats),
        Some(Overlay::Paused { run, why, raise }) => format!("paused {run} {why:?} {raise:?}"),
        Some(Overlay::Sources {
            run,
            cursor,
            paragraph,
        }) => format!("sources {run} {cursor} {paragraph:?}"),
        Some(Overlay::Reader {
            run,
            number,
            location,
            scroll,
            cursor,
            paragraph,
        }) => format!("reader {run} {number} {location} {scroll} {cursor} {paragraph:?}"),
        Some(Overlay::Review { run }) => format!(
            "review {run} {:?}",
            model.run(*run).and_then(|v| v.review.as_ref())
        ),
    };
    let expanded: Vec<bool> = model.runs.iter().map(|r| r.expanded).collect();
    format!(
        "focus {:?} overlay {overlay} selected {:?} offset {} detail {} {:?} synthesis {:?} \
         query {:?} {:?} history {:?} quit {} toast {:?} expanded {expanded:?} reasoning {} \
         diff {} timeline {} paragraph {:?}",
        model.focus,
        model.selected,
        model.tree_offset,
        model.detail_open,
        model.detail_scroll,
        model.synthesis_scroll,
        model.query.lines(),
        model.query.cursor(),
        model.history_pos,
        model.quit,
        model.toast.as_ref().map(|t| &t.text),
        model.show_reasoning,
        model.show_diff,
        model.timeline,
        model.provenance.selected,
    )
}

/// A finished run whose `emissions` subtask read two pages (sources 1 and 2, the first long)
/// and whose report cites them in the second of its four paragraphs.
fn sourced_report() -> Model {
    let mut model = model(false, (160, 48));
    let run = run_id(1);
    let report = "# Report\n\nFirst [subtask: emissions] [1] [2].\n\nSecond.\n\nThird.";
    send_all(&mut model, small_run_events(run, report));
    for (n, url, lines) in [
        (1, "https://example.org/a", 200),
        (2, "https://example.org/b", 1),
    ] {
        let text: String = (1..=lines).map(|i| format!("line {i}\n")).collect();
        send(
            &mut model,
            at(
                run,
                0,
                EventKind::ToolCallFinished {
                    subtask: sid("emissions"),
                    attempt: 1,
                    call_id: format!("c{n}"),
                    ok: true,
                    bytes: text.len() as u64,
                    ms: 10,
                    summary: "HTTP 200".into(),
                    source: Some(maestro::protocol::Source {
                        number: n,
                        kind: maestro::protocol::SourceKind::Url,
                        location: url.into(),
                        bytes: text.len() as u64,
                        status: Some(200),
                        retrieved_ms: NOW,
                    }),
                    text,
                },
            ),
        );
    }
    key(&mut model, KeyCode::Esc);
    model
}

/// Models in which the keys of `context` apply; between them, every key there has an effect.
fn setups(context: Context) -> Vec<Model> {
    match context {
        Context::Always | Context::Anywhere | Context::Panes => vec![failed_costs_selected()],
        Context::Tree => {
            let mut on_run = failed_costs_selected();
            for _ in 0..3 {
                ch(&mut on_run, 'h');
            }
            assert_eq!(on_run.selected, Some(Node::Run(run_id(1))));
            assert!(!on_run.runs[0].expanded);
            vec![failed_costs_selected(), on_run]
        }
        Context::Query => {
            let mut model = model(false, (80, 24));
            ask(&mut model, "first");
            ask(&mut model, "second");
            model.focus = Focus::Query;
            type_text(&mut model, "draft");
            key(&mut model, KeyCode::Up);
            assert_eq!(query_text(&model), "second");
            vec![model]
        }
        Context::Reading => {
            let mut model = streaming_synthesis(60);
            for _ in 0..5 {
                ch(&mut model, 'k');
            }
            let (top, max) = synthesis_top(&model);
            assert!(top > 0 && top < max, "in the middle: {top} of {max}");
            vec![model]
        }
        Context::Edit => {
            let mut model = failed_costs_selected();
            ch(&mut model, 'e');
            type_text(&mut model, " more");
            vec![model]
        }
        Context::Models => {
            // The picker on the planner, which is picked, with the cursor on another model.
            let mut model = failed_costs_selected();
            ch(&mut model, 'm');
            let ids = ["alpha", "beta", "gamma", "delta"]
                .map(String::from)
                .to_vec();
            update(&mut model, Msg::ModelsListed(Ok(ids)));
            ch(&mut model, 'j');
            key(&mut model, KeyCode::Enter);
            ch(&mut model, 'j');
            assert_eq!(model.models.picked.planner.as_deref(), Some("beta"));
            vec![model]
        }
        Context::History => {
            // The pop-up with a search typed, three runs listed and the second highlighted.
            let mut model = failed_costs_selected();
            ch(&mut model, 'H');
            type_text(&mut model, "heat");
            let runs = (1..=3)
                .map(|n| saved_summary(n, "heat in cities", SavedRunStatus::Succeeded))
                .collect();
            update(
                &mut model,
                Msg::HistoryListed {
                    search: "heat".into(),
                    result: Ok(runs),
                },
            );
            key(&mut model, KeyCode::Down);
            vec![model]
        }
        Context::Presets => {
            // The picker over three presets with the second, not in use, highlighted.
            let mut model = failed_costs_selected();
            with_presets(&mut model);
            ch(&mut model, 'p');
            ch(&mut model, 'j');
            vec![model]
        }
        Context::Paused => vec![budget_dialog()],
        Context::Paragraphs => {
            // The second paragraph of four, which cites both sources.
            let mut model = sourced_report();
            ch(&mut model, 'n');
            ch(&mut model, 'n');
            vec![model]
        }
        Context::Sources => {
            let mut first = sourced_report();
            ch(&mut first, 'o');
            let mut second = sourced_report();
            ch(&mut second, 'o');
            key(&mut second, KeyCode::Down);
            vec![first, second]
        }
        Context::Reader => {
            // The long page, scrolled into its middle.
            let mut model = sourced_report();
            ch(&mut model, 'o');
            key(&mut model, KeyCode::Enter);
            for _ in 0..3 {
                key(&mut model, KeyCode::Down);
            }
            vec![model]
        }
        Context::Review => {
            // The middle of three subtasks selected, nothing wrong with the plan.
            let mut model = reviewing();
            ch(&mut model, 'j');
            vec![model]
        }
        Context::ReviewForm => {
            // The form on the title, and on the role (where Ctrl+N has choices).
            let mut on_title = reviewing();
            ch(&mut on_title, 'e');
            let mut on_role = reviewing();
            ch(&mut on_role, 'e');
            key(&mut on_role, KeyCode::Tab);
            vec![on_title, on_role]
        }
    }
}

#[test]
fn every_key_of_the_map_does_its_action_through_update() {
    for binding in BINDINGS {
        for (chord, action) in binding.keys {
            let label = format!("{} in {:?}", chord.label(), binding.context);
            let mut effective = false;
            for (i, setup) in setups(binding.context).into_iter().enumerate() {
                let mut pressed = setup;
                assert_eq!(
                    key_action(&pressed, &chord.event()),
                    Some(*action),
                    "{label} (setup {i}) is not mapped to {action:?}: shadowed by another context?"
                );
                let before = state(&pressed);
                let by_key = update(&mut pressed, Msg::Key(chord.event()));
                let mut direct = setups(binding.context).swap_remove(i);
                let by_action = perform_key_action(&mut direct, *action, chord.event());
                assert_eq!(by_key, by_action, "{label} (setup {i}): actions");
                assert_eq!(
                    state(&pressed),
                    state(&direct),
                    "{label} (setup {i}): state"
                );
                effective |= !by_key.is_empty() || state(&pressed) != before;
            }
            assert!(effective, "{label} did nothing in any of its setups");
        }
    }
}

#[test]
fn the_help_lists_exactly_the_key_map() {
    let model = model(false, (160, 48));
    let text = |line: &ratatui::text::Line| -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    };
    let lines: Vec<String> = content::help_lines(&model).iter().map(text).collect();
    // Key lines are indented; headings and the mouse note are not.
    let keys: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l.starts_with("  "))
        .map(|l| {
            let (label, what) = l.trim_start().split_once("  ").expect("label and text");
            (label.to_owned(), what.trim_start().to_owned())
        })
        .collect();
    let map: Vec<(String, String)> = BINDINGS
        .iter()
        .map(|b| (b.label(), b.what.to_owned()))
        .collect();
    assert_eq!(keys, map);
    let headings: Vec<&str> = lines
        .iter()
        .filter(|l| !l.is_empty() && !l.starts_with("  ") && l.as_str() != content::HELP_MOUSE)
        .map(String::as_str)
        .collect();
    let mut wanted: Vec<&str> = BINDINGS.iter().map(|b| b.context.heading()).collect();
    wanted.dedup();
    assert_eq!(headings, wanted);
    assert_eq!(lines.last().map(String::as_str), Some(content::HELP_MOUSE));
}

#[test]
fn the_readme_key_table_names_every_key_of_the_map() {
    // The README's table is a summary, but no key the dashboard has may be missing from it.
    let readme = include_str!("../README.md");
    let table: String = readme
        .lines()
        .skip_while(|l| !l.starts_with("| keys |"))
        .take_while(|l| l.starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!table.is_empty(), "no key table in the README");
    for binding in BINDINGS {
        for (chord, _) in binding.keys {
            let label = chord.label();
            let named = table
                .split(|c: char| c.is_whitespace() || "|,`/".contains(c))
                .any(|w| w == label)
                || (label == "/" && table.contains("`/`"));
            assert!(named, "the README's key table does not name {label}");
        }
    }
}

#[test]
fn question_mark_opens_the_help_from_the_tree_and_any_key_closes_it_without_acting() {
    let mut model = failed_costs_selected();
    ch(&mut model, '?');
    assert!(matches!(model.overlay, Some(Overlay::Help { .. })));
    assert!(
        ch(&mut model, 'r').is_empty(),
        "the key only closes the help"
    );
    assert!(model.overlay.is_none());
    key(&mut model, KeyCode::F(1));
    assert!(matches!(model.overlay, Some(Overlay::Help { .. })));
    key(&mut model, KeyCode::Tab);
    assert!(model.overlay.is_none());
    assert_eq!(model.focus, Focus::Tree);
}

#[test]
fn the_help_scrolls_no_further_than_its_last_line_at_the_bottom() {
    let mut model = failed_costs_selected();
    model.size = (80, 24);
    ch(&mut model, '?');
    for _ in 0..100 {
        ch(&mut model, 'j');
    }
    let lines = content::help_lines(&model).len();
    // 24 rows, less the pop-up's borders, show 22 lines: the last one stays at the bottom.
    assert!(
        lines > 22,
        "the help fits; this test needs it taller: {lines}"
    );
    assert!(
        matches!(model.overlay, Some(Overlay::Help { scroll }) if scroll == lines - 22),
        "scrolled to {:?} of {lines} lines",
        model.overlay.as_ref().map(|o| match o {
            Overlay::Help { scroll } => *scroll,
            _ => usize::MAX,
        })
    );
}

#[test]
fn question_mark_in_the_query_box_is_typed_not_help() {
    let mut model = model(false, (80, 24));
    type_text(&mut model, "why?");
    assert!(model.overlay.is_none());
    assert_eq!(query_text(&model), "why?");
}

/// A run with a synthesis of `lines` paragraphs streaming in, the synthesis pane focused.
fn streaming_synthesis(lines: usize) -> Model {
    let mut model = model(false, (80, 24));
    let run = run_id(1);
    send_all(&mut model, planning_events(run));
    send_all(
        &mut model,
        [
            at(
                run,
                30_000,
                EventKind::PlanReady {
                    plan: plan(vec![subtask("a", "research", "A", "A.", &[])]),
                },
            ),
            at(
                run,
                5_000,
                EventKind::SynthesisStarted {
                    attempt: 1,
                    model: "gpt-4o".into(),
                },
            ),
            synthesis_delta(1, lines),
        ],
    );
    key(&mut model, KeyCode::Esc);
    key(&mut model, KeyCode::Tab);
    key(&mut model, KeyCode::Tab);
    assert_eq!(model.focus, Focus::Synthesis);
    model
}

fn finish_synthesis(model: &mut Model) {
    let text = model.runs[0].report.synthesis.clone();
    send(
        model,
        at(
            run_id(1),
            0,
            EventKind::SynthesisFinished {
                attempt: 1,
                text,
                synthesized: true,
                usage: Usage::default(),
                error: None,
            },
        ),
    );
}

#[test]
fn a_finished_synthesis_that_was_followed_stays_at_its_end() {
    let mut model = streaming_synthesis(20);
    let (top, max) = synthesis_top(&model);
    assert!(top == max && max > 0);
    finish_synthesis(&mut model);
    assert!(!model.synthesis_live());
    let (top, max) = synthesis_top(&model);
    assert_eq!(top, max, "no jump when the report finishes");
}

#[test]
fn pressing_end_while_streaming_then_finishing_does_not_leave_the_view_in_the_middle() {
    let mut model = streaming_synthesis(20);
    ch(&mut model, 'k');
    key(&mut model, KeyCode::End);
    send_delta(&mut model, synthesis_delta(2, 20));
    let (top, max) = synthesis_top(&model);
    assert_eq!(top, max, "following again");
    finish_synthesis(&mut model);
    let (top, max) = synthesis_top(&model);
    assert_eq!(top, max, "still at the end");
}

#[test]
fn a_toast_fades_after_four_seconds_of_ticks() {
    let mut model = finished_run_with_synthesis();
    ch(&mut model, 'y');
    assert!(model.toast.is_some());
    update(&mut model, Msg::Tick(NOW + 3_000));
    assert!(model.toast.is_some());
    update(&mut model, Msg::Tick(NOW + 4_000));
    assert!(model.toast.is_none());
    assert_eq!(model.now_ms, NOW + 4_000);
}

#[test]
fn update_reaches_for_no_clock_randomness_or_view() {
    // `update` must stay pure: ids come from the app, line counts from `content`.
    let source = include_str!("../src/tui/update.rs");
    for banned in [
        "RunId::new",
        "SystemTime",
        "Instant::",
        "now_ms()",
        "tui::view",
        "view::",
    ] {
        assert!(
            !source.contains(banned),
            "src/tui/update.rs mentions {banned}"
        );
    }
}

// ---- a paused run ----------------------------------------------------------------------------

/// A run whose token budget was reached, its dialog open.
fn budget_dialog() -> Model {
    let mut model = model(false, (160, 48));
    send_all(&mut model, budget_reached_events(run_id(1)));
    model
}

#[test]
fn a_reached_budget_opens_its_dialog_and_enter_raises_by_the_amount_typed() {
    let mut model = budget_dialog();
    let Some(Overlay::Paused { raise, .. }) = &model.overlay else {
        panic!("the dialog is open: {:?}", model.overlay.is_some());
    };
    assert_eq!(raise, "1000", "half the budget again, to start with");
    key(&mut model, KeyCode::Backspace);
    key(&mut model, KeyCode::Backspace);
    key(&mut model, KeyCode::Backspace);
    key(&mut model, KeyCode::Backspace);
    type_text(&mut model, "5k");
    let actions = key(&mut model, KeyCode::Enter);
    assert_eq!(
        actions,
        steer(
            run_id(1),
            RunCommand::RaiseBudget {
                tokens: Some(5_000),
                time_ms: None,
                cost_micros: None,
            }
        )
    );
    assert!(model.overlay.is_none());
}

#[test]
fn a_raise_that_is_not_a_number_is_not_sent() {
    let mut model = budget_dialog();
    for _ in 0..4 {
        key(&mut model, KeyCode::Backspace);
    }
    type_text(&mut model, "lots");
    assert!(key(&mut model, KeyCode::Enter).is_empty());
    assert!(model.overlay.is_some(), "the dialog stays open");
    assert!(
        model
            .toast
            .as_ref()
            .is_some_and(|t| t.text.contains("number of tokens")),
        "{:?}",
        model.toast.as_ref().map(|t| &t.text)
    );
}

#[test]
fn ctrl_s_writes_the_report_now_and_ctrl_x_cancels() {
    let mut model = budget_dialog();
    assert_eq!(
        ctrl(&mut model, 's'),
        steer(run_id(1), RunCommand::SynthesizeNow)
    );
    assert!(model.overlay.is_none());
    let mut model = budget_dialog();
    assert_eq!(
        ctrl(&mut model, 'x'),
        steer(run_id(1), RunCommand::CancelRun)
    );
}

#[test]
fn a_closed_dialog_comes_back_with_p_until_the_budget_is_raised() {
    let mut model = budget_dialog();
    key(&mut model, KeyCode::Esc);
    assert!(model.overlay.is_none());
    model.focus = Focus::Tree;
    ch(&mut model, 'P');
    assert!(matches!(model.overlay, Some(Overlay::Paused { .. })));
    send(
        &mut model,
        at(
            run_id(1),
            0,
            EventKind::BudgetRaised {
                max_tokens: Some(3_000),
                deadline_ms: None,
                max_cost_micros: None,
            },
        ),
    );
    assert!(
        model.overlay.is_none(),
        "raised elsewhere: nothing left to ask"
    );
    ch(&mut model, 'P');
    assert!(model.overlay.is_none());
}

#[test]
fn a_paused_provider_is_resumed_with_enter() {
    let mut model = model(false, (160, 48));
    let mut events = budget_reached_events(run_id(1));
    events.pop();
    events.push(at(
        run_id(1),
        0,
        EventKind::ProviderPaused {
            message: "provider paused: 3 calls refused the API key (HTTP 401); check the key"
                .into(),
        },
    ));
    send_all(&mut model, events);
    assert!(matches!(model.overlay, Some(Overlay::Paused { .. })));
    assert_eq!(
        key(&mut model, KeyCode::Enter),
        steer(run_id(1), RunCommand::ResumeProvider)
    );
}
