//! The plan review screen: a run paused after planning shows its plan, the person edits,
//! deletes and adds subtasks, and approves or cancels. State is driven through `update` with
//! keys and engine events; the screen is drawn over `TestBackend` at 80×24 and 160×48 and
//! compared with the committed snapshots.

mod dashboard_support;

use dashboard_support::*;
use maestro::protocol::plan::Plan;
use maestro::protocol::{Command, CommandName, EventKind, Refusal, RunCommand};
use maestro::tui::model::{Focus, Model, Overlay};
use maestro::tui::review::{Confirm, Review};
use maestro::tui::update::{Action, Msg, update};
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

// ---- helpers ---------------------------------------------------------------------------------

fn review(model: &Model) -> &Review {
    model.runs[0]
        .review
        .as_deref()
        .expect("the run is in review")
}

fn ids(plan: &Plan) -> Vec<&str> {
    plan.subtasks.iter().map(|t| t.id.as_str()).collect()
}

/// The screen as text, line by line.
fn screen(model: &mut Model) -> String {
    let terminal = render(model, 160, 48);
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

/// The plan Ctrl+S sends, if it sends one.
fn approved(actions: &[Action]) -> Option<&Plan> {
    match actions {
        [
            Action::Send(Command::Run {
                id,
                command: RunCommand::ApprovePlan { plan },
            }),
        ] if *id == run_id(1) => Some(plan),
        _ => None,
    }
}

/// Open the form on the selected subtask, go to `field` (Tab presses from the title), clear
/// it and type `text`; then save.
fn edit_field(model: &mut Model, tabs: usize, text: &str) -> Vec<Action> {
    ch(model, 'e');
    for _ in 0..tabs {
        key(model, KeyCode::Tab);
    }
    for _ in 0..80 {
        key(model, KeyCode::Backspace);
    }
    type_text(model, text);
    key(model, KeyCode::Enter)
}

const MODEL_FIELD: usize = 2;
const AFTER_FIELD: usize = 3;

// ---- stories ---------------------------------------------------------------------------------

#[test]
fn a_plan_waiting_for_review_opens_the_screen_and_the_run_says_reviewing() {
    let mut model = reviewing();
    assert!(matches!(model.overlay, Some(Overlay::Review { .. })));
    assert_eq!(Model::view_phase(&model.runs[0]), "reviewing");
    assert!(review(&model).problems.is_empty());
    assert_eq!(review(&model).estimate.rows.len(), 3);
    let text = screen(&mut model);
    assert!(text.contains("reviewing"), "{text}");
    assert!(text.contains("(rule of thumb)"), "{text}");
}

#[test]
fn a_cycle_made_by_an_edit_shows_under_its_row_and_approve_is_refused() {
    let mut model = reviewing();
    ch(&mut model, 'j'); // emissions
    assert!(edit_field(&mut model, AFTER_FIELD, "policy").is_empty());
    let problems = &review(&model).problems;
    assert!(
        problems.iter().any(|p| p.message.contains("cycle")
            && p.subtask
                .as_ref()
                .is_some_and(|s| s.as_str() == "emissions" || s.as_str() == "policy")),
        "{problems:?}"
    );
    let text = screen(&mut model);
    let lines: Vec<&str> = text.lines().collect();
    let row = lines
        .iter()
        .position(|l| l.contains("▸ emissions analysis"))
        .expect("the emissions row");
    assert!(
        lines[row + 1..]
            .iter()
            .take(3)
            .any(|l| l.contains("✗") && l.contains("cycle")),
        "the cycle is named under a row of it:\n{text}"
    );
    assert!(text.contains("Ctrl+S approve (1 problem)"), "{text}");

    assert!(ctrl(&mut model, 's').is_empty(), "refused locally");
    let note = review(&model).note.clone().expect("a note");
    assert!(note.1 && note.0.contains("1 problem to fix"), "{note:?}");
    assert!(matches!(model.overlay, Some(Overlay::Review { .. })));

    // Dropping the dependency again clears the problem; the plan goes.
    assert!(edit_field(&mut model, AFTER_FIELD, "").is_empty());
    assert!(review(&model).problems.is_empty());
    let actions = ctrl(&mut model, 's');
    let plan = approved(&actions).expect("the plan is sent");
    assert!(plan.subtasks[1].depends_on.is_empty());
    assert!(model.overlay.is_none());
}

#[test]
fn an_unknown_id_in_the_form_is_refused_in_place() {
    let mut model = reviewing();
    ch(&mut model, 'j');
    ch(&mut model, 'j'); // policy
    ch(&mut model, 'e');
    for _ in 0..AFTER_FIELD {
        key(&mut model, KeyCode::Tab);
    }
    type_text(&mut model, ", nowhere");
    key(&mut model, KeyCode::Enter);
    let form = review(&model).form.as_ref().expect("the form stays open");
    let (field, message) = form.problem.clone().expect("a problem");
    assert_eq!(field, maestro::tui::review::Field::Depends);
    assert!(message.contains("no subtask `nowhere`"), "{message}");
    assert_eq!(
        review(&model).plan.subtasks[2].depends_on,
        vec![sid("emissions")]
    );
}

#[test]
fn deleting_a_subtask_others_depend_on_asks_then_drops_the_dependency() {
    let mut model = reviewing();
    ch(&mut model, 'j'); // emissions, which policy depends on
    assert!(ch(&mut model, 'd').is_empty());
    assert_eq!(
        review(&model).confirm,
        Some(Confirm::Delete {
            subtask: sid("emissions"),
            dependents: vec![sid("policy")],
        })
    );
    let text = screen(&mut model);
    assert!(text.contains("`policy` depends on `emissions`"), "{text}");

    // Any other key keeps it.
    ch(&mut model, 'n');
    assert_eq!(review(&model).confirm, None);
    assert_eq!(
        ids(&review(&model).plan),
        ["context", "emissions", "policy"]
    );

    ch(&mut model, 'd');
    ch(&mut model, 'y');
    let review_now = review(&model);
    assert_eq!(ids(&review_now.plan), ["context", "policy"]);
    assert!(review_now.plan.subtasks[1].depends_on.is_empty());
    let note = review_now.note.clone().expect("a note");
    assert!(
        note.0
            .contains("`emissions` deleted; `policy` no longer depends on it"),
        "{note:?}"
    );
    assert!(review_now.problems.is_empty());
    assert_eq!(review_now.estimate.rows.len(), 2, "estimated again");

    let actions = ctrl(&mut model, 's');
    let plan = approved(&actions).expect("the plan is sent");
    assert_eq!(ids(plan), ["context", "policy"]);
}

#[test]
fn an_added_subtask_and_a_changed_model_go_out_with_the_approval() {
    let mut model = reviewing();
    let before = review(&model).estimate.summary.clone();
    // Context's worker gets a model of its own.
    assert!(edit_field(&mut model, MODEL_FIELD, "gpt-4o").is_empty());
    assert_eq!(
        review(&model).plan.subtasks[0].model.as_deref(),
        Some("gpt-4o")
    );
    assert_ne!(review(&model).estimate.summary, before, "estimated again");

    // A new subtask after emissions; its id comes from its title.
    ch(&mut model, 'a');
    type_text(&mut model, "Grid load at night!");
    key(&mut model, KeyCode::Tab); // role: the first one, kept
    key(&mut model, KeyCode::Tab); // model: default
    key(&mut model, KeyCode::Tab);
    type_text(&mut model, "emissions");
    key(&mut model, KeyCode::Tab);
    type_text(&mut model, "How do peaks after dark");
    key_with(
        &mut model,
        KeyCode::Enter,
        ratatui::crossterm::event::KeyModifiers::ALT,
    );
    type_text(&mut model, "change the grid?");
    assert!(key(&mut model, KeyCode::Enter).is_empty());
    let added = review(&model).plan.subtasks.last().cloned().expect("added");
    assert_eq!(added.id.as_str(), "grid_load_at");
    assert_eq!(added.worker, ROLES[0]);
    assert_eq!(added.depends_on, vec![sid("emissions")]);
    assert_eq!(
        added.description,
        "How do peaks after dark\nchange the grid?"
    );
    assert_eq!(added.model, None);
    assert_eq!(review(&model).cursor, 3, "the new subtask is selected");

    // A second one with the same title gets an id of its own.
    ch(&mut model, 'a');
    type_text(&mut model, "Grid load at night");
    for _ in 0..4 {
        key(&mut model, KeyCode::Tab);
    }
    type_text(&mut model, "Again.");
    key(&mut model, KeyCode::Enter);
    assert_eq!(
        ids(&review(&model).plan),
        [
            "context",
            "emissions",
            "policy",
            "grid_load_at",
            "grid_load_at_2"
        ]
    );

    let actions = ctrl(&mut model, 's');
    let plan = approved(&actions).expect("the plan is sent").clone();
    assert_eq!(plan.subtasks[0].model.as_deref(), Some("gpt-4o"));
    assert_eq!(plan.subtasks[3], added);
    assert!(model.overlay.is_none());
    assert!(review(&model).sent, "waits for the engine");

    // The engine takes it: the review is over and the run goes on.
    send(
        &mut model,
        at(run_id(1), 30_000, EventKind::PlanReady { plan }),
    );
    assert!(model.runs[0].review.is_none());
    assert_eq!(Model::view_phase(&model.runs[0]), "running");
}

#[test]
fn a_plan_the_engine_refuses_comes_back_with_its_reason() {
    let mut model = reviewing();
    assert!(approved(&ctrl(&mut model, 's')).is_some());
    send(
        &mut model,
        at(
            run_id(1),
            30_000,
            EventKind::CommandRefused {
                command: CommandName::ApprovePlan,
                refusal: Refusal::PlanInvalid {
                    error: "subtask `x` has no title".to_owned(),
                },
            },
        ),
    );
    assert!(matches!(model.overlay, Some(Overlay::Review { .. })));
    assert!(!review(&model).sent);
    let text = screen(&mut model);
    assert!(
        text.contains("the engine refused the plan: subtask `x` has no title"),
        "{text}"
    );
}

#[test]
fn cancel_asks_first_then_sends_cancel_run() {
    let mut model = reviewing();
    assert!(key(&mut model, KeyCode::Esc).is_empty());
    assert_eq!(review(&model).confirm, Some(Confirm::Cancel));
    assert!(ch(&mut model, 'n').is_empty(), "any other key goes back");
    assert_eq!(review(&model).confirm, None);

    // l leaves it waiting; P brings it back.
    ctrl(&mut model, 'x');
    ch(&mut model, 'l');
    assert!(model.overlay.is_none());
    assert!(model.runs[0].review.is_some());
    model.focus = Focus::Tree;
    ch(&mut model, 'P');
    assert!(matches!(model.overlay, Some(Overlay::Review { .. })));

    ctrl(&mut model, 'x');
    let actions = ch(&mut model, 'y');
    assert_eq!(
        actions,
        vec![Action::Send(Command::Run {
            id: run_id(1),
            command: RunCommand::CancelRun,
        })]
    );
    assert!(model.overlay.is_none());
}

#[test]
fn a_run_waiting_for_review_behind_another_says_so_without_taking_the_screen() {
    let mut model = model(false, (160, 48));
    model.models.worker = "gpt-4o-mini".to_owned();
    send_all(&mut model, planning_events(run_id(1)));
    send_all(&mut model, planning_events(run_id(2)));
    // Run 2 is the one in view.
    assert_eq!(model.current_run().and_then(|v| v.id()), Some(run_id(2)));
    send(
        &mut model,
        at(
            run_id(1),
            30_000,
            EventKind::PlanAwaitingReview {
                plan: review_plan(),
            },
        ),
    );
    assert!(model.overlay.is_none());
    let text = screen(&mut model);
    assert!(text.contains("#1 waits for review"), "{text}");
}

#[test]
fn v_reviews_the_next_runs_and_their_start_carries_it() {
    let mut model = model(false, (160, 48));
    model.focus = Focus::Tree;
    ch(&mut model, 'V');
    assert!(model.models.review_on());
    let text = screen(&mut model);
    assert!(text.contains("review on"), "{text}");
    model.focus = Focus::Query;
    type_text(&mut model, "Why?");
    let actions = key(&mut model, KeyCode::Enter);
    assert!(
        matches!(actions.as_slice(), [Action::StartRun { models, .. }] if models.review == Some(true)),
        "{actions:?}"
    );
    // Off again: the configured choice (off), so nothing is asked of the run.
    model.focus = Focus::Tree;
    ch(&mut model, 'V');
    assert!(!model.models.review_on());
    assert_eq!(model.models.picked.review, None);
}

#[test]
fn model_text_on_the_review_screen_and_in_the_form_is_clean() {
    let mut model = model(false, (160, 48));
    send_all(&mut model, planning_events(run_id(1)));
    let mut plan = review_plan();
    plan.subtasks[0].title = "Evil\u{1b}]0;pwned\u{7} title".to_owned();
    plan.subtasks[0].description = "Look \u{1b}[2Jhere.".to_owned();
    plan.subtasks[0].model = Some("m\u{1b}[31mx".to_owned());
    send(
        &mut model,
        at(run_id(1), 30_000, EventKind::PlanAwaitingReview { plan }),
    );
    let text = screen(&mut model);
    assert!(text.contains("Evil title"), "{text}");
    assert!(text.contains("Look here."), "{text}");
    assert!(text.contains(" mx "), "{text}");
    assert!(
        !text.contains("pwned") && !text.contains('\u{1b}'),
        "{text}"
    );
    ch(&mut model, 'e');
    let form = review(&model).form.as_ref().expect("the form");
    assert_eq!(form.title.lines(), ["Evil title"]);
    assert_eq!(form.description.lines(), ["Look here."]);
    assert_eq!(form.model.lines(), ["mx"]);
}

#[test]
fn the_estimate_follows_the_configured_roles_models_and_validation() {
    let text = "[models]\nworker = \"gpt-4o-mini\"\n\n[validation]\nenabled = true\n\n\
                [roles.writing]\nmodel = \"gpt-4o\"\n";
    let file = maestro::config::FileConfig::parse(text, std::path::Path::new("config.toml"))
        .expect("a config file");
    let config =
        maestro::config::Config::merge(&maestro::cli::EngineArgs::default(), file, &|_: &str| None)
            .expect("a config");
    let mut model = reviewing();
    let plain = review(&model).estimate.clone();
    model.models.settings = Some(std::sync::Arc::new(config.run.clone()));
    // Estimated again on the next edit: the same title typed back.
    edit_field(&mut model, 0, "Background and definitions");
    let configured = review(&model).estimate.clone();
    // `policy` is written by a role with a model of its own, dearer than the workers'.
    let cost = |e: &maestro::tui::review::Estimate, i: usize| e.rows[i].cost.expect("a price");
    assert!(
        cost(&configured, 2) > cost(&configured, 1) * 5.0,
        "{configured:?}"
    );
    // Every subtask is checked by a validator call too.
    assert!(
        configured.summary.starts_with("≈ 7 calls"),
        "{configured:?}"
    );
    assert!(plain.summary.starts_with("≈ 4 calls"), "{plain:?}");
}
