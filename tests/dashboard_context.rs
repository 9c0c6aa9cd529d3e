//! Attached files in the dashboard: the `@` line under a run (snapshots at 80×24 and 160×48),
//! the detail pane's list, moving through the tree across that line, and a query with `@path`:
//! the files are read by the app (`Action::ReadContext`), the run starts with them, and a path
//! that cannot be read leaves the query in the box with an error line.

mod dashboard_support;

use dashboard_support::*;
use maestro::protocol::{Attachments, ContextFile, EventKind, SkippedFile};
use maestro::tui::model::{Focus, Model, Node, ToastLevel};
use maestro::tui::update::{Action, Msg, update};
use maestro::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;

fn render(model: &mut Model, w: u16, h: u16) -> Terminal<TestBackend> {
    update(model, Msg::Resize(w, h));
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|frame| view::draw(frame, model)).unwrap();
    terminal
}

fn context_event() -> EventKind {
    EventKind::ContextAttached {
        files: vec![
            ContextFile {
                path: "notes.md".into(),
                bytes: 1_843,
            },
            ContextFile {
                path: "docs/pricing-2025.md".into(),
                bytes: 12_288,
            },
            ContextFile {
                path: "docs/interviews/household-survey.txt".into(),
                bytes: 40_960,
            },
        ],
        skipped: vec![SkippedFile {
            path: "docs/chart.png".into(),
            reason: "binary".into(),
        }],
    }
}

/// A finished run of two subtasks with three files attached (one more skipped).
fn with_files(size: (u16, u16)) -> Model {
    let run = run_id(1);
    let mut model = model(false, size);
    let mut events = small_run_events(run, "# Report\n\nThe answer, from the notes.");
    // Right after `RunStarted`, as the engine sends it.
    events.insert(1, at(run, 39_500, context_event()));
    send_all(&mut model, events);
    key(&mut model, KeyCode::Esc);
    model
}

#[test]
fn the_run_row_has_a_line_of_its_attached_files() {
    for (w, h) in [(80, 24), (160, 48)] {
        let mut model = with_files((w, h));
        let terminal = render(&mut model, w, h);
        insta::assert_snapshot!(
            format!("run_with_attached_files_{w}x{h}"),
            terminal.backend()
        );
    }
}

#[test]
fn the_files_line_is_a_row_of_the_tree_and_its_detail_lists_every_file() {
    let mut model = with_files((80, 24));
    let run = run_id(1);
    assert_eq!(
        model.rows(),
        [
            Node::Run(run),
            Node::Files(run),
            Node::Subtask(run, sid("emissions")),
            Node::Subtask(run, sid("costs")),
        ]
    );
    // From the first subtask, up reaches the files line, and left goes back to the run.
    update(&mut model, Msg::Resize(80, 24));
    model.selected = Some(Node::Subtask(run, sid("emissions")));
    ch(&mut model, 'k');
    assert_eq!(model.selected, Some(Node::Files(run)));
    let detail = maestro::tui::content::detail_lines(&model, 60)
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        detail.contains("@ docs/interviews/household-survey.txt  40.0 KB"),
        "{detail}"
    );
    assert!(
        detail.contains("docs/chart.png skipped: binary"),
        "{detail}"
    );
    key(&mut model, KeyCode::Left);
    assert_eq!(model.selected, Some(Node::Run(run)));
    // Collapsed, the run hides the line with its subtasks.
    key(&mut model, KeyCode::Left);
    assert_eq!(model.rows(), [Node::Run(run)]);
}

#[test]
fn a_run_without_files_has_no_files_line() {
    let run = run_id(1);
    let mut model = model(false, (80, 24));
    send_all(&mut model, small_run_events(run, "# Report"));
    assert!(!model.rows().contains(&Node::Files(run)));
}

#[test]
fn a_query_with_an_at_path_is_read_by_the_app_before_the_run_starts() {
    let mut model = model(false, (80, 24));
    type_text(&mut model, "Summarise @notes.md for me");
    let actions = key(&mut model, KeyCode::Enter);
    let [Action::ReadContext { query, models, .. }] = actions.as_slice() else {
        panic!("the files are read first: {actions:?}");
    };
    assert_eq!(query, "Summarise @notes.md for me");
    // Until they are read, the query stays where it was typed.
    assert_eq!(model.query.lines().join("\n"), "Summarise @notes.md for me");

    let context = Attachments {
        files: vec![maestro::protocol::AttachedFile {
            path: "notes.md".into(),
            text: "the notes".into(),
        }],
        ..Default::default()
    };
    let actions = update(
        &mut model,
        Msg::ContextRead {
            query: query.clone(),
            models: models.clone(),
            follow_up: None,
            result: Ok(context.clone()),
        },
    );
    assert_eq!(
        actions,
        [Action::StartRun {
            query: "Summarise @notes.md for me".into(),
            models: Default::default(),
            follow_up: None,
            context,
        }]
    );
    assert_eq!(
        model.query.lines().join("\n"),
        "",
        "the box is ready for the next one"
    );
    assert_eq!(model.focus, Focus::Tree);
}

#[test]
fn a_path_that_cannot_be_read_is_an_error_line_and_the_query_is_kept() {
    let mut model = model(false, (80, 24));
    type_text(&mut model, "Compare @missing.md");
    let actions = key(&mut model, KeyCode::Enter);
    assert!(matches!(actions.as_slice(), [Action::ReadContext { .. }]));
    let actions = update(
        &mut model,
        Msg::ContextRead {
            query: "Compare @missing.md".into(),
            models: Default::default(),
            follow_up: None,
            result: Err("@missing.md: no such file or folder".into()),
        },
    );
    assert!(actions.is_empty(), "no run starts: {actions:?}");
    assert_eq!(model.query.lines().join("\n"), "Compare @missing.md");
    assert_eq!(model.focus, Focus::Query);
    let toast = model.toast.as_ref().expect("an error line");
    assert_eq!(toast.level, ToastLevel::Error);
    assert_eq!(toast.text, "@missing.md: no such file or folder");
    let terminal = render(&mut model, 80, 24);
    let screen = format!("{:?}", terminal.backend());
    assert!(
        screen.contains("@missing.md: no such file or folder"),
        "{screen}"
    );
}

#[test]
fn an_unclosed_quote_is_said_at_once_and_nothing_is_read() {
    let mut model = model(false, (80, 24));
    type_text(&mut model, "Read @\"my notes");
    let actions = key(&mut model, KeyCode::Enter);
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(model.query.lines().join("\n"), "Read @\"my notes");
    assert!(
        model
            .toast
            .as_ref()
            .is_some_and(|t| t.level == ToastLevel::Error && t.text.contains("closing")),
    );
}

#[test]
fn an_email_address_is_not_a_file() {
    let mut model = model(false, (80, 24));
    type_text(&mut model, "Write to ana@example.org");
    let actions = key(&mut model, KeyCode::Enter);
    assert!(
        matches!(actions.as_slice(), [Action::StartRun { context, .. }] if context.is_empty()),
        "{actions:?}"
    );
}
