//! The dashboard's history and report diff through `update` and the views: opening the list
//! of saved runs, searching it, opening a run, resuming it with the steering keys, and showing
//! what changed in a report since its previous version. The store is the app loop's business:
//! here its answers come in as the messages the loop would send.

mod dashboard_support;

use dashboard_support::*;
use maestro::protocol::{Command, EventKind, RunCommand, RunId, RunStatus, SubtaskStatus, Usage};
use maestro::report::RunReport;
use maestro::store::SavedRunStatus;
use maestro::tui::content;
use maestro::tui::model::{Focus, Model, Node, Overlay, Saved};
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

fn snapshot_at_both_sizes(name: &str, scene: impl Fn((u16, u16)) -> Model) {
    for (w, h) in SIZES {
        let mut model = scene((w, h));
        let terminal = render(&mut model, w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), terminal.backend());
    }
}

fn text_of(lines: &[ratatui::text::Line]) -> String {
    lines
        .iter()
        .map(|l| {
            l.spans
                .iter()
                .map(|s| s.content.as_ref())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The saved runs the store would list for a search typed: one of each status.
fn saved_runs() -> Vec<maestro::store::RunSummary> {
    [
        (
            "Heat in cities: what cools streets best?",
            SavedRunStatus::Interrupted,
        ),
        (
            "Heat pumps versus gas boilers for flats",
            SavedRunStatus::Partial,
        ),
        (
            "Heatwaves and hospital admissions",
            SavedRunStatus::Succeeded,
        ),
        ("Urban heat islands in Europe", SavedRunStatus::Failed),
    ]
    .into_iter()
    .enumerate()
    .map(|(n, (query, status))| saved_summary(n as u128 + 1, query, status))
    .collect()
}

/// A model with a finished run, the tree focused, and the history open with `heat` searched
/// and answered.
fn history_open(size: (u16, u16)) -> Model {
    let mut model = model(false, size);
    send_all(
        &mut model,
        small_run_events(run_id(1), "# Report\n\nText.\n"),
    );
    key(&mut model, KeyCode::Esc);
    assert_eq!(
        ch(&mut model, 'H'),
        [Action::ListHistory {
            search: String::new()
        }]
    );
    type_text(&mut model, "heat");
    update(
        &mut model,
        Msg::HistoryListed {
            search: "heat".into(),
            result: Ok(saved_runs()),
        },
    );
    model
}

/// A saved run as the app loop reads it back: two subtasks, `costs` failed, a report, saved
/// as `status`.
fn saved_report(id: RunId, status: SavedRunStatus) -> (RunReport, Saved) {
    let mut scratch = model(false, (160, 48));
    send_all(
        &mut scratch,
        small_run_events(id, "# Report\n\nOld line.\n"),
    );
    let mut report = scratch.runs[0].report.clone();
    let costs = report
        .subtasks
        .iter_mut()
        .find(|s| s.id.as_str() == "costs")
        .unwrap();
    costs.status = SubtaskStatus::Failed;
    costs.result = None;
    costs.error = Some("HTTP 500 from the server".into());
    report.status = Some(RunStatus::Partial);
    let resume = maestro::protocol::SavedRun {
        query: report.query.clone(),
        plan: report.plan.clone().unwrap(),
        subtasks: vec![maestro::protocol::SavedSubtask {
            id: sid("emissions"),
            attempts: 1,
            result: Some(maestro::protocol::SavedResult {
                text: "Findings on emissions.".into(),
                usage: Usage::default(),
                elapsed_ms: 7_000,
                cut_off: false,
                cached: false,
                flagged: None,
            }),
        }],
        synthesis_attempts: 1,
        follow_up: None,
        context: Default::default(),
        sources: Vec::new(),
        report: None,
        usage: Usage::default(),
        elapsed_ms: 41_000,
    };
    (
        report,
        Saved {
            status,
            resume: Some(Box::new(resume)),
        },
    )
}

/// `history_open`, then the interrupted run (the first listed) opened.
fn opened(status: SavedRunStatus) -> (Model, RunId) {
    let mut model = history_open((160, 48));
    let id = saved_runs()[0].id;
    assert_eq!(key(&mut model, KeyCode::Enter), [Action::OpenSaved(id)]);
    assert!(model.overlay.is_none());
    let actions = update(
        &mut model,
        Msg::SavedOpened(Ok(Box::new(saved_report(id, status)))),
    );
    assert!(actions.is_empty());
    (model, id)
}

fn select_subtask(model: &mut Model, run: RunId, subtask: &str) {
    while model.selected != Some(Node::Subtask(run, sid(subtask))) {
        let before = model.selected.clone();
        ch(model, 'j');
        assert_ne!(before, model.selected, "{subtask} not found");
    }
}

// ---- the list --------------------------------------------------------------------------------

#[test]
fn typing_searches_the_saved_runs_and_old_answers_are_dropped() {
    let mut model = model(false, (80, 24));
    send_all(&mut model, small_run_events(run_id(1), "text"));
    key(&mut model, KeyCode::Esc);
    ch(&mut model, 'H');
    assert!(matches!(model.overlay, Some(Overlay::History { .. })));
    let asked: Vec<Action> = "heat".chars().flat_map(|c| ch(&mut model, c)).collect();
    let searches: Vec<&str> = asked
        .iter()
        .map(|a| match a {
            Action::ListHistory { search } => search.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(searches, ["h", "he", "hea", "heat"]);
    // `r`, `q` and `j` are typed, not obeyed, while the pop-up is open.
    assert_eq!(
        ch(&mut model, 'q'),
        [Action::ListHistory {
            search: "heatq".into()
        }]
    );
    assert!(!model.quit);
    assert_eq!(
        key(&mut model, KeyCode::Backspace),
        [Action::ListHistory {
            search: "heat".into()
        }]
    );
    // The answer to a search typed over since does not replace the list.
    update(
        &mut model,
        Msg::HistoryListed {
            search: "he".into(),
            result: Ok(saved_runs()[..1].to_vec()),
        },
    );
    assert!(maestro::tui::update::saved_listed(&model.saved_runs).is_empty());
    update(
        &mut model,
        Msg::HistoryListed {
            search: "heat".into(),
            result: Ok(saved_runs()),
        },
    );
    assert_eq!(
        maestro::tui::update::saved_listed(&model.saved_runs).len(),
        4
    );
    assert_eq!(
        ctrl(&mut model, 'u'),
        [Action::ListHistory {
            search: String::new()
        }]
    );
    // A paste goes into the search too, on one line, never into the query box.
    assert_eq!(
        update(&mut model, Msg::Paste("cool\nroofs".into())),
        [Action::ListHistory {
            search: "cool roofs".into()
        }]
    );
    assert!(model.query.lines().join("").is_empty());
    key(&mut model, KeyCode::Esc);
    assert!(model.overlay.is_none());
}

#[test]
fn the_cursor_moves_within_the_list_and_enter_opens_the_highlighted_run() {
    let mut model = history_open((80, 24));
    key(&mut model, KeyCode::Up);
    for _ in 0..10 {
        key(&mut model, KeyCode::Down);
    }
    assert!(matches!(
        model.overlay,
        Some(Overlay::History { cursor: 3, .. })
    ));
    key(&mut model, KeyCode::PageUp);
    key(&mut model, KeyCode::Down);
    assert_eq!(
        key(&mut model, KeyCode::Enter),
        [Action::OpenSaved(saved_runs()[1].id)]
    );
    assert_eq!(model.focus, Focus::Tree);
}

#[test]
fn a_run_of_this_session_is_selected_without_reading_the_store() {
    let mut model = model(false, (160, 48));
    send_all(&mut model, small_run_events(run_id(1), "one"));
    send_all(&mut model, small_run_events(run_id(2), "two"));
    key(&mut model, KeyCode::Esc);
    ch(&mut model, 'H');
    let mut mine = saved_summary(1, "first", SavedRunStatus::Succeeded);
    mine.id = run_id(1);
    update(
        &mut model,
        Msg::HistoryListed {
            search: String::new(),
            result: Ok(vec![mine]),
        },
    );
    assert!(key(&mut model, KeyCode::Enter).is_empty());
    assert_eq!(model.selected, Some(Node::Run(run_id(1))));
    assert!(model.runs[0].expanded);
    assert_eq!(model.runs.len(), 2);
}

#[test]
fn a_store_that_cannot_be_read_says_why() {
    let mut model = model(false, (80, 24));
    key(&mut model, KeyCode::Esc);
    ch(&mut model, 'H');
    update(
        &mut model,
        Msg::HistoryListed {
            search: String::new(),
            result: Err("database is corrupt".into()),
        },
    );
    let terminal = render(&mut model, 80, 24);
    let screen = format!("{:?}", terminal.backend());
    assert!(screen.contains("Could not read the saved runs"), "{screen}");
}

// ---- an opened run ---------------------------------------------------------------------------

#[test]
fn an_opened_interrupted_run_says_so_and_r_resumes_it_live() {
    let (mut model, id) = opened(SavedRunStatus::Interrupted);
    let view = model.run(id).unwrap();
    assert_eq!(Model::view_phase(view), "interrupted");
    assert!(!view.is_active());
    assert_eq!(model.selected, Some(Node::Run(id)));
    let detail = text_of(&content::detail_lines(&model, 70));
    assert!(
        detail.contains("Interrupted:") && detail.contains("r resumes"),
        "{detail}"
    );

    // `r` on the failed subtask: resuming runs it again, so the re-run is only recorded.
    select_subtask(&mut model, id, "costs");
    let actions = ch(&mut model, 'r');
    match actions.as_slice() {
        [
            Action::Resume {
                id: resumed,
                saved: Some(saved),
                asked: Some(RunCommand::RetrySubtask(s)),
                then: false,
                query,
            },
        ] => {
            assert_eq!(*s, sid("costs"));
            assert_eq!(*resumed, id);
            assert_eq!(saved.elapsed_ms, 41_000);
            assert_eq!(*query, model.run(id).unwrap().report.query);
        }
        other => panic!("{other:?}"),
    }
    let view = model.run(id).unwrap();
    assert!(view.saved.is_none() && view.is_active());
    assert_eq!(
        view.previous_synthesis.as_deref(),
        Some("# Report\n\nOld line.\n")
    );
    assert_eq!(Model::view_phase(view), "planning");

    // Live now: the keys steer it as any run.
    send_all(&mut model, small_run_events(id, "# Report\n\nNew line.\n"));
    select_subtask(&mut model, id, "costs");
    assert_eq!(
        ch(&mut model, 'r'),
        [Action::Send(Command::Run {
            id,
            command: RunCommand::RetrySubtask(sid("costs")),
        })]
    );
}

#[test]
fn each_steering_key_resumes_a_saved_run_with_what_it_adds() {
    // `r` on a subtask that has its result re-runs it after the resume.
    let (mut model, id) = opened(SavedRunStatus::Partial);
    select_subtask(&mut model, id, "emissions");
    assert!(matches!(
        ch(&mut model, 'r').as_slice(),
        [Action::Resume { asked: Some(RunCommand::RetrySubtask(s)), then: true, .. }]
            if *s == sid("emissions")
    ));

    // `R`: the resume re-runs every failed subtask itself.
    let (mut model, _) = opened(SavedRunStatus::Partial);
    assert!(matches!(
        ch(&mut model, 'R').as_slice(),
        [Action::Resume {
            asked: Some(RunCommand::RetryFailed),
            then: false,
            ..
        }]
    ));

    // `s` with a failed subtask: the resume ends in a new synthesis anyway.
    let (mut model, _) = opened(SavedRunStatus::Partial);
    assert!(matches!(
        ch(&mut model, 's').as_slice(),
        [Action::Resume {
            asked: Some(RunCommand::Resynthesize),
            then: false,
            ..
        }]
    ));

    // `e`: the edit is made in the plan the run resumes from (so the subtask runs once, with
    // the new text), and recorded; the subtask's saved result is dropped.
    let (mut model, id) = opened(SavedRunStatus::Partial);
    select_subtask(&mut model, id, "emissions");
    ch(&mut model, 'e');
    type_text(&mut model, " Again.");
    key(&mut model, KeyCode::Tab);
    match key(&mut model, KeyCode::Enter).as_slice() {
        [
            Action::Resume {
                asked:
                    Some(RunCommand::EditSubtask {
                        description: Some(d),
                        worker,
                        ..
                    }),
                then: false,
                saved: Some(saved),
                ..
            },
        ] => {
            assert!(d.ends_with("Again."), "{d}");
            let planned = saved
                .plan
                .subtasks
                .iter()
                .find(|p| p.id == sid("emissions"))
                .unwrap();
            assert_eq!(planned.description, *d);
            assert_eq!(Some(&planned.worker), worker.as_ref());
            assert_eq!(planned.worker, "research", "Tab picked the next role");
            let untouched = saved.plan.subtasks.iter().find(|p| p.id == sid("costs"));
            assert_eq!(untouched.unwrap().description, "Costs for households.");
            assert_eq!(saved.subtasks[0].id, sid("emissions"));
            assert_eq!(saved.subtasks[0].result, None, "its old result is not kept");
        }
        other => panic!("{other:?}"),
    }

    // `r` on the run's row resumes it as it is.
    let (mut model, _) = opened(SavedRunStatus::Interrupted);
    assert!(matches!(
        ch(&mut model, 'r').as_slice(),
        [Action::Resume {
            asked: None,
            then: false,
            saved: Some(_),
            ..
        }]
    ));

    // `x` and `X` have nothing to cancel.
    let (mut model, id) = opened(SavedRunStatus::Partial);
    select_subtask(&mut model, id, "costs");
    assert!(ch(&mut model, 'x').is_empty());
    assert!(ch(&mut model, 'X').is_empty());
    assert!(model.run(id).unwrap().saved.is_some());
}

#[test]
fn a_run_going_on_in_another_process_is_not_resumed_here() {
    let (mut model, id) = opened(SavedRunStatus::Running);
    assert!(ch(&mut model, 'R').is_empty());
    assert!(model.run(id).unwrap().saved.is_some());
    assert!(
        model
            .toast
            .as_ref()
            .unwrap()
            .text
            .contains("another maestro")
    );
}

#[test]
fn a_failed_open_is_a_toast() {
    let mut model = history_open((80, 24));
    key(&mut model, KeyCode::Enter);
    update(&mut model, Msg::SavedOpened(Err("no such run".into())));
    assert!(model.toast.as_ref().unwrap().text.contains("no such run"));
    assert_eq!(model.runs.len(), 1);
}

// ---- the report diff -------------------------------------------------------------------------

const OLD: &str = "# Heat report\n\nShade cools streets.\n\nWater helps.\n";
const NEW: &str =
    "# Heat report\n\nShade cools streets.\n\nTrees and water help most.\n\nCosts are modest.\n";

/// A finished run whose report was written twice (`s`), `OLD` then `NEW`.
fn resynthesised(size: (u16, u16)) -> Model {
    let run = run_id(1);
    let mut model = model(false, size);
    send_all(&mut model, small_run_events(run, OLD));
    key(&mut model, KeyCode::Esc);
    let events = vec![
        at(
            run,
            800,
            EventKind::SynthesisStarted {
                attempt: 2,
                model: "gpt-4o".into(),
            },
        ),
        at(
            run,
            600,
            EventKind::SynthesisDelta {
                attempt: 2,
                text: NEW.into(),
            },
        ),
        at(
            run,
            500,
            EventKind::SynthesisFinished {
                attempt: 2,
                text: NEW.into(),
                synthesized: true,
                usage: Usage::default(),
                error: None,
            },
        ),
        at(
            run,
            400,
            EventKind::RunFinished {
                status: RunStatus::Succeeded,
                elapsed_ms: 41_600,
                usage: Usage::default(),
                succeeded: 2,
                failed: 0,
                total: 2,
                error: None,
            },
        ),
    ];
    send_all(&mut model, events);
    model
}

fn synthesis_text(model: &Model) -> String {
    content::with_synthesis_lines(model, 70, text_of)
}

#[test]
fn d_shows_what_changed_in_the_report_and_back() {
    let mut model = resynthesised((160, 48));
    assert_eq!(model.runs[0].previous_synthesis.as_deref(), Some(OLD));
    ch(&mut model, 'D');
    assert!(model.show_diff);
    let diff = synthesis_text(&model);
    assert!(diff.contains("- Water helps."), "{diff}");
    assert!(diff.contains("+ Trees and water help most."), "{diff}");
    assert!(diff.contains("+ Costs are modest."), "{diff}");
    assert!(diff.contains("  Shade cools streets."), "{diff}");
    assert_eq!(content::shown_diff_counts(&model), Some((3, 1)));
    ch(&mut model, 'D');
    assert!(!model.show_diff);
    assert!(!synthesis_text(&model).contains("- Water"));
}

#[test]
fn d_without_an_earlier_report_says_so() {
    let mut model = model(false, (80, 24));
    send_all(&mut model, small_run_events(run_id(1), OLD));
    key(&mut model, KeyCode::Esc);
    ch(&mut model, 'D');
    assert!(!model.show_diff);
    assert!(
        model
            .toast
            .as_ref()
            .unwrap()
            .text
            .contains("no earlier version")
    );
}

#[test]
fn a_new_synthesis_keeps_the_last_finished_report_and_leaves_the_diff() {
    let mut model = resynthesised((80, 24));
    ch(&mut model, 'D');
    let run = run_id(1);
    send(
        &mut model,
        at(
            run,
            100,
            EventKind::SynthesisStarted {
                attempt: 3,
                model: "gpt-4o".into(),
            },
        ),
    );
    assert!(!model.show_diff);
    assert_eq!(model.runs[0].previous_synthesis.as_deref(), Some(NEW));
    // Restarted before it finished: the one it compares with stays the finished report.
    send(
        &mut model,
        at(
            run,
            50,
            EventKind::SynthesisDelta {
                attempt: 3,
                text: "half".into(),
            },
        ),
    );
    send(
        &mut model,
        at(
            run,
            40,
            EventKind::SynthesisStarted {
                attempt: 4,
                model: "gpt-4o".into(),
            },
        ),
    );
    assert_eq!(model.runs[0].previous_synthesis.as_deref(), Some(NEW));
}

#[test]
fn diff_lines_are_signed_and_coloured() {
    let mut model = resynthesised((80, 24));
    model.theme = maestro::tui::theme::Theme { color: true };
    ch(&mut model, 'D');
    let lines = content::with_synthesis_lines(&model, 70, |l| l.to_vec());
    let added = lines
        .iter()
        .find(|l| l.spans.iter().any(|s| s.content.starts_with("+ Costs")))
        .unwrap();
    let removed = lines
        .iter()
        .find(|l| l.spans.iter().any(|s| s.content.starts_with("- Water")))
        .unwrap();
    let fg = |l: &ratatui::text::Line| l.spans[0].style.fg.or(l.style.fg);
    assert!(fg(added).is_some() && fg(removed).is_some());
    assert_ne!(fg(added), fg(removed));
}

// ---- snapshots -------------------------------------------------------------------------------

#[test]
fn history_with_a_search_snapshots() {
    snapshot_at_both_sizes("history_search", |size| {
        let mut model = history_open(size);
        key(&mut model, KeyCode::Down);
        model
    });
}

#[test]
fn report_diff_snapshots() {
    snapshot_at_both_sizes("report_diff", |size| {
        let mut model = resynthesised(size);
        ch(&mut model, 'D');
        model
    });
}

#[test]
fn opened_interrupted_run_snapshots() {
    snapshot_at_both_sizes("opened_interrupted", |size| {
        let mut model = history_open(size);
        let id = saved_runs()[0].id;
        key(&mut model, KeyCode::Enter);
        update(
            &mut model,
            Msg::SavedOpened(Ok(Box::new(saved_report(id, SavedRunStatus::Interrupted)))),
        );
        model
    });
}

// ---- a saved run's tool calls ----------------------------------------------------------------

/// A run whose `emissions` worker fetched a page and failed to read a file, saved by the real
/// writer into a temporary database and read back as the app loop reads it: the detail of
/// the opened subtask lists both calls, as it did live.
#[test]
fn an_opened_saved_run_lists_its_tool_calls_in_the_detail() {
    use maestro::protocol::{Source, SourceKind};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("runs.db");
    let id = run_id(7);
    let mut events = small_run_events(id, "# Report\n\nText.\n");
    let started = events
        .iter()
        .position(|e| {
            matches!(&e.kind, EventKind::SubtaskStarted { subtask, .. }
                if *subtask == sid("emissions"))
        })
        .expect("emissions starts");
    let tool_events = [
        at(
            id,
            36_000,
            EventKind::ToolCallStarted {
                subtask: sid("emissions"),
                attempt: 1,
                call_id: "call_1".into(),
                tool: "fetch_url".into(),
                arguments: "https://example.org/air".into(),
            },
        ),
        at(
            id,
            35_600,
            EventKind::ToolCallFinished {
                subtask: sid("emissions"),
                attempt: 1,
                call_id: "call_1".into(),
                ok: true,
                bytes: 12_345,
                ms: 400,
                summary: "HTTP 200 · https://example.org/air".into(),
                source: Some(Source {
                    number: 1,
                    kind: SourceKind::Url,
                    location: "https://example.org/air".into(),
                    bytes: 12_345,
                    status: Some(200),
                    retrieved_ms: NOW - 35_600,
                }),
                text: "Air quality in cities.".into(),
            },
        ),
        at(
            id,
            35_500,
            EventKind::ToolCallStarted {
                subtask: sid("emissions"),
                attempt: 1,
                call_id: "call_2".into(),
                tool: "read_file".into(),
                arguments: "notes.md".into(),
            },
        ),
        at(
            id,
            35_490,
            EventKind::ToolCallFinished {
                subtask: sid("emissions"),
                attempt: 1,
                call_id: "call_2".into(),
                ok: false,
                bytes: 0,
                ms: 10,
                summary: "no such file: notes.md".into(),
                source: None,
                text: String::new(),
            },
        ),
    ];
    events.splice(started + 1..started + 1, tool_events);
    let live = {
        let mut live = model(false, (160, 48));
        send_all(&mut live, events.clone());
        live.runs[0].report.subtasks[0].history[0].tools.clone()
    };
    {
        let writer = maestro::store::StoreWriter::spawn(&path).expect("writer");
        for event in &events {
            writer.event(event);
        }
        writer
            .flush()
            .wait(std::time::Duration::from_secs(10))
            .expect("saved");
        writer.close();
    }

    let db = maestro::store::Store::open(&path).expect("open");
    let saved = db.load_run(id).expect("load");
    let report = maestro::history::report_of(&saved);
    let state = Saved {
        status: saved.summary.status,
        resume: maestro::history::resume_input(&saved, None).map(Box::new),
    };
    let mut model = model(false, (160, 48));
    update(&mut model, Msg::SavedOpened(Ok(Box::new((report, state)))));
    let view = model.run(id).expect("opened");
    let emissions = &view.report.subtasks[0];
    assert_eq!(
        emissions.history[0].tools, live,
        "the calls as they were live"
    );
    assert_eq!(emissions.sources.len(), 1);

    select_subtask(&mut model, id, "emissions");
    let detail = text_of(&content::detail_lines(&model, 120));
    assert!(detail.contains("Tool calls"), "{detail}");
    assert!(
        detail.contains("✓ fetch_url example.org/air")
            && detail.contains("12.1 KB · HTTP 200 · https://example.org/air"),
        "{detail}"
    );
    assert!(
        detail.contains("✗ read_file notes.md") && detail.contains("no such file: notes.md"),
        "{detail}"
    );

    // Resumed, the engine restates the plan and the saved results: the source stays with its
    // result, as no call reads it again.
    let plan = model
        .run(id)
        .and_then(|v| v.report.plan.clone())
        .expect("plan");
    send_all(
        &mut model,
        [
            at(id, 1_000, EventKind::PlanReady { plan }),
            at(
                id,
                1_000,
                EventKind::SubtaskSucceeded {
                    subtask: sid("emissions"),
                    attempt: 1,
                    elapsed_ms: 7_000,
                    usage: Usage::default(),
                    result: "Findings on emissions.".into(),
                    cut_off: false,
                    cached: false,
                },
            ),
        ],
    );
    let sources = &model.run(id).expect("run").report.subtasks[0].sources;
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].location, "https://example.org/air");
}
