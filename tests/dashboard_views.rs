//! The dashboard as the user sees it: every view drawn over ratatui's `TestBackend` at 80×24
//! and 160×48 and compared with the committed snapshots in `tests/snapshots/`.
//!
//! Models run on a frozen clock (`NOW`) with events stamped relative to it, so spinners,
//! timers and elapsed times are the same on every run. Snapshots are text only (no colour);
//! the colour tests look at buffer cells. State is built only through `update` with key
//! presses and synthetic engine events, as the app loop does it.

mod dashboard_support;

use dashboard_support::*;
use maestro::protocol::{CallRole, EventKind, RunStatus, Usage};
use maestro::tui::layout;
use maestro::tui::model::{Focus, Model, Overlay};
use maestro::tui::theme::Theme;
use maestro::tui::update::{Msg, update};
use maestro::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode;
use ratatui::style::Color;

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

/// Resize the model to `w`×`h` and draw it once.
fn render(model: &mut Model, w: u16, h: u16) -> Terminal<TestBackend> {
    update(model, Msg::Resize(w, h));
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|frame| view::draw(frame, model)).unwrap();
    terminal
}

/// Build the scene at each snapshot size (scrolling depends on the size) and compare.
fn snapshot_at_both_sizes(name: &str, scene: impl Fn((u16, u16)) -> Model) {
    for (w, h) in SIZES {
        let mut model = scene((w, h));
        let terminal = render(&mut model, w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), terminal.backend());
    }
}

fn buffer_text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

// ---- scenes ----------------------------------------------------------------------------------

fn every_state(size: (u16, u16)) -> Model {
    let mut model = model(false, size);
    send_all(&mut model, every_state_events(run_id(1)));
    key(&mut model, KeyCode::Esc); // query box → tree
    model
}

/// The every-state run with the running `emissions` subtask selected (its streamed text shows).
fn every_state_running_selected(size: (u16, u16)) -> Model {
    let mut model = every_state(size);
    ch(&mut model, 'j');
    model
}

/// The every-state run with the failed `costs` subtask selected.
fn every_state_failed_selected(size: (u16, u16)) -> Model {
    let mut model = every_state(size);
    for _ in 0..3 {
        ch(&mut model, 'j');
    }
    model
}

fn long_synthesis_scrolled(size: (u16, u16)) -> Model {
    let mut model = model(false, size);
    send_all(&mut model, small_run_events(run_id(1), &long_synthesis()));
    key(&mut model, KeyCode::Esc);
    key(&mut model, KeyCode::Tab); // tree → detail
    key(&mut model, KeyCode::Tab); // detail → synthesis
    assert_eq!(model.focus, Focus::Synthesis);
    key(&mut model, KeyCode::PageDown);
    key(&mut model, KeyCode::PageDown);
    for _ in 0..3 {
        ch(&mut model, 'j');
    }
    model
}

/// A finished two-subtask run priced with the shipped table: `emissions` had a failed attempt
/// (its tokens were paid for), the planner and synthesis calls count too. The `emissions`
/// subtask is selected, so the detail pane shows its cost and what its failed attempt spent.
fn priced_run(size: (u16, u16)) -> Model {
    let mut model = model(false, size);
    model.models.prices = std::sync::Arc::new(maestro::engine::cost::PriceTable::shipped());
    let run = run_id(1);
    model.add_run(run, "What do heat pumps cost?");
    let spent = |role, subtask: Option<&str>, model: &str, tokens_in, tokens_out, failed| {
        at(
            run,
            1_000,
            EventKind::CallUsage {
                role,
                subtask: subtask.map(sid),
                attempt: 1,
                model: model.to_owned(),
                usage: Usage {
                    tokens_in,
                    tokens_out,
                    estimated: false,
                    cached_in: 0,
                },
                failed,
            },
        )
    };
    let mut events = small_run_events(run, "# Heat pumps\n\nThey pay off.");
    events.insert(
        events.len() - 1,
        spent(CallRole::Planner, None, "gpt-4o", 2_000, 600, false),
    );
    events.insert(
        events.len() - 1,
        spent(
            CallRole::Worker,
            Some("emissions"),
            "gpt-4o-mini",
            4_000,
            10,
            true,
        ),
    );
    events.insert(
        events.len() - 1,
        spent(
            CallRole::Worker,
            Some("emissions"),
            "gpt-4o-mini",
            500,
            900,
            false,
        ),
    );
    events.insert(
        events.len() - 1,
        spent(
            CallRole::Worker,
            Some("costs"),
            "gpt-4o-mini",
            500,
            900,
            false,
        ),
    );
    events.insert(
        events.len() - 1,
        spent(CallRole::Synthesizer, None, "gpt-4o", 3_000, 1_500, false),
    );
    send_all(&mut model, events);
    key(&mut model, KeyCode::Esc);
    model
}

/// The statistics panel over the tree, as `S` opens it and the app loop answers it: saved
/// calls of two roles on two models, one of them failed with a 429.
fn stats_panel(size: (u16, u16)) -> Model {
    use maestro::store::{AttemptOutcome, CallRecord};
    let mut model = every_state(size);
    let actions = ch(&mut model, 'S');
    assert!(actions.contains(&maestro::tui::update::Action::ReadStats));
    let call = |role, worker: &str, model: &str, ms, outcome, error: Option<&str>| CallRecord {
        run: run_id(1),
        provider: "openai".to_owned(),
        role,
        subtask: (role == CallRole::Worker).then(|| sid(worker)),
        worker: (role == CallRole::Worker).then(|| worker.to_owned()),
        model: Some(model.to_owned()),
        started_ms: 0,
        elapsed_ms: Some(ms),
        outcome,
        error: error.map(str::to_owned),
        usage: Some(Usage {
            tokens_in: 2_000,
            tokens_out: 700,
            estimated: false,
            cached_in: 0,
        }),
    };
    let calls = [
        call(
            CallRole::Planner,
            "",
            "gpt-4o",
            6_100,
            AttemptOutcome::Succeeded,
            None,
        ),
        call(
            CallRole::Worker,
            "research",
            "gpt-4o-mini",
            9_300,
            AttemptOutcome::Succeeded,
            None,
        ),
        call(
            CallRole::Worker,
            "analysis",
            "gpt-4o-mini",
            1_200,
            AttemptOutcome::Retried,
            Some("HTTP 429: slow down"),
        ),
        call(
            CallRole::Worker,
            "analysis",
            "gpt-4o-mini",
            12_400,
            AttemptOutcome::Succeeded,
            None,
        ),
        call(
            CallRole::Synthesizer,
            "",
            "gpt-4o",
            15_000,
            AttemptOutcome::Succeeded,
            None,
        ),
    ];
    let stats =
        maestro::stats::compute(&calls, &maestro::engine::cost::PriceTable::shipped(), None);
    update(&mut model, Msg::StatsRead(Ok(Box::new(stats))));
    model
}

// ---- snapshots -------------------------------------------------------------------------------

#[test]
fn the_statistics_panel_over_the_tree() {
    snapshot_at_both_sizes("stats_panel", stats_panel);
}

#[test]
fn cost_shows_on_the_rows_the_status_line_and_the_detail_with_failed_attempts_apart() {
    snapshot_at_both_sizes("priced_run", priced_run);
}

#[test]
fn empty_start_with_the_demo_provider_says_nothing_is_called() {
    snapshot_at_both_sizes("empty_demo", |size| model(true, size));
}

#[test]
fn empty_start_with_a_real_provider_shows_its_description() {
    snapshot_at_both_sizes("empty_openai", |size| model(false, size));
}

#[test]
fn planning_shows_the_run_and_a_planning_placeholder() {
    snapshot_at_both_sizes("planning", |size| {
        let mut model = model(false, size);
        send_all(&mut model, planning_events(run_id(1)));
        model
    });
}

#[test]
fn subtasks_appear_in_the_tree_as_the_plan_streams_with_the_answer_in_the_detail() {
    snapshot_at_both_sizes("planning_mid_stream", |size| {
        let mut model = model(false, size);
        send_all(&mut model, planning_mid_stream_events(run_id(1)));
        key(&mut model, KeyCode::Esc);
        model
    });
}

#[test]
fn a_rejected_plan_keeps_every_answer_beside_its_problem_in_the_detail() {
    snapshot_at_both_sizes("rejected_plan", |size| {
        let mut model = model(false, size);
        send_all(&mut model, rejected_plan_events(run_id(1)));
        key(&mut model, KeyCode::Esc);
        model
    });
}

#[test]
fn every_subtask_state_at_once_with_the_running_one_streaming_in_the_detail() {
    snapshot_at_both_sizes("every_state", every_state_running_selected);
}

#[test]
fn a_failed_subtask_shows_its_error_and_every_attempt_in_the_detail() {
    snapshot_at_both_sizes("failed_detail", every_state_failed_selected);
}

#[test]
fn a_long_markdown_synthesis_scrolled_down_a_few_pages() {
    snapshot_at_both_sizes("synthesis_scrolled", long_synthesis_scrolled);
}

#[test]
fn the_help_overlay_over_the_tree() {
    snapshot_at_both_sizes("help", |size| {
        let mut model = every_state(size);
        ch(&mut model, '?');
        assert!(matches!(model.overlay, Some(Overlay::Help { .. })));
        model
    });
}

#[test]
fn the_edit_pop_up_on_a_selected_subtask() {
    snapshot_at_both_sizes("edit", |size| {
        let mut model = every_state_failed_selected(size);
        ch(&mut model, 'e');
        type_text(&mut model, " Use 2024 prices.");
        assert!(matches!(model.overlay, Some(Overlay::Edit { .. })));
        model
    });
}

#[test]
fn the_quit_confirmation_while_a_run_is_active() {
    snapshot_at_both_sizes("confirm_quit", |size| {
        let mut model = every_state(size);
        ch(&mut model, 'q');
        assert!(matches!(model.overlay, Some(Overlay::ConfirmQuit)));
        model
    });
}

#[test]
fn the_budget_dialog_when_a_run_reached_its_token_budget() {
    snapshot_at_both_sizes("budget_dialog", |size| {
        let mut model = model(false, size);
        send_all(&mut model, budget_reached_events(run_id(1)));
        assert!(matches!(model.overlay, Some(Overlay::Paused { .. })));
        model
    });
}

#[test]
fn the_provider_paused_dialog_after_the_circuit_breaker_tripped() {
    snapshot_at_both_sizes("provider_paused_dialog", |size| {
        let mut model = model(false, size);
        let mut events = budget_reached_events(run_id(1));
        events.pop();
        events.push(at(
            run_id(1),
            30_000,
            EventKind::ProviderPaused {
                message: "3 calls were refused with 401 Unauthorized: check the API key".into(),
            },
        ));
        send_all(&mut model, events);
        assert!(matches!(model.overlay, Some(Overlay::Paused { .. })));
        model
    });
}

/// The every-state run with the model picker open on the workers, the planner already picked
/// from a list longer than the 80×24 pop-up shows.
fn model_picker(size: (u16, u16)) -> Model {
    let mut model = every_state(size);
    model.models.provider = "openai".into();
    model.models.planner = "gpt-4o-mini".into();
    model.models.worker = "gpt-4o-mini".into();
    model.models.synthesizer = "gpt-4o-mini".into();
    ch(&mut model, 'm');
    assert!(matches!(model.overlay, Some(Overlay::Models { .. })));
    let ids = [
        "deepseek-r1:8b",
        "gemma2:9b",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4o",
        "gpt-4o-mini",
        "llama3.1:8b",
        "mistral-small",
        "o3-mini",
        "phi3:medium",
        "phi3:mini",
        "qwen2.5:14b",
        "qwen2.5:7b",
        "qwen2.5-coder:32b",
        "smollm2:135m",
        "text-embedding-3-large",
        "text-embedding-3-small",
        "whisper-1",
    ];
    update(
        &mut model,
        Msg::ModelsListed(Ok(ids.iter().map(|id| (*id).to_owned()).collect())),
    );
    key(&mut model, KeyCode::Up);
    key(&mut model, KeyCode::Enter); // planner: gpt-4o
    key(&mut model, KeyCode::Tab); // to the workers, on their model
    for _ in 0..6 {
        ch(&mut model, 'j');
    }
    model
}

#[test]
fn the_model_picker_over_the_tree() {
    snapshot_at_both_sizes("model_picker", model_picker);
}

#[test]
fn the_status_line_shows_picked_models_once_the_picker_closes() {
    let mut model = model_picker((160, 48));
    key(&mut model, KeyCode::Enter); // workers: qwen2.5:14b
    key(&mut model, KeyCode::Esc);
    let terminal = render(&mut model, 160, 48);
    let text = buffer_text(terminal.backend().buffer());
    let status = text.lines().last().expect("a status line");
    assert!(
        status.contains("openai · planner gpt-4o · workers qwen2.5:14b · synth gpt-4o-mini"),
        "{status}"
    );
}

#[test]
fn the_model_picker_says_while_it_loads_and_when_the_list_failed() {
    let mut model = every_state((80, 24));
    ch(&mut model, 'm');
    let text = buffer_text(render(&mut model, 80, 24).backend().buffer());
    assert!(text.contains("Asking the server for its models"), "{text}");
    update(
        &mut model,
        Msg::ModelsListed(Err("this server has no model list".into())),
    );
    let text = buffer_text(render(&mut model, 80, 24).backend().buffer());
    assert!(text.contains("Could not list the models"), "{text}");
    assert!(text.contains("no model list"), "{text}");
}

#[test]
fn a_tiny_terminal_gets_the_too_small_message() {
    let mut model = every_state((30, 8));
    let terminal = render(&mut model, 30, 8);
    insta::assert_snapshot!("too_small_30x8", terminal.backend());
    let text = buffer_text(terminal.backend().buffer());
    assert!(text.contains("too small"), "{text}");
}

#[test]
fn a_narrow_too_small_terminal_still_says_how_big_it_must_be() {
    for (w, h) in [(30, 8), (20, 10)] {
        let mut model = every_state((w, h));
        let terminal = render(&mut model, w, h);
        let text = buffer_text(terminal.backend().buffer());
        assert!(text.contains("40×12"), "{w}×{h}:\n{text}");
    }
}

// ---- robustness ------------------------------------------------------------------------------

/// The every-state run with a long synthesis streaming in, in each overlay.
fn stress_scenes(size: (u16, u16)) -> Vec<Model> {
    let streaming = |size| {
        let mut model = every_state_failed_selected(size);
        let run = run_id(1);
        send_all(
            &mut model,
            [
                at(
                    run,
                    500,
                    EventKind::SynthesisStarted {
                        attempt: 1,
                        model: "gpt-4o".into(),
                    },
                ),
                at(
                    run,
                    100,
                    EventKind::SynthesisDelta {
                        attempt: 1,
                        text: long_synthesis(),
                    },
                ),
            ],
        );
        model
    };
    let mut scenes = vec![streaming(size), model(true, size)];
    for keys in [&['?'][..], &['e', 'x', 'y'], &['q']] {
        let mut model = streaming(size);
        for c in keys {
            ch(&mut model, *c);
        }
        assert!(model.overlay.is_some());
        scenes.push(model);
    }
    let mut detail_closed = streaming(size);
    key(&mut detail_closed, KeyCode::Enter);
    assert!(!detail_closed.detail_open);
    scenes.push(detail_closed);
    scenes.push(model_picker(size));
    scenes
}

#[test]
fn drawing_at_every_size_from_nothing_to_huge_never_panics() {
    let mut sizes = vec![(0, 0), (1, 0), (0, 1), (1, 1), (40, 12), (39, 12), (40, 11)];
    for w in (1..=200).step_by(7) {
        for h in (1..=60).step_by(5) {
            sizes.push((w, h));
        }
    }
    for (w, h) in sizes {
        for mut model in stress_scenes((w, h)) {
            let terminal = render(&mut model, w, h);
            assert_eq!(terminal.backend().buffer().area.width, w);
        }
    }
}

/// A finished run whose every piece of model text carries escape sequences (OSC title,
/// clear screen, colours, OSC 52, DCS, BEL), with its one failed subtask selected.
fn evil_run() -> Model {
    let run = run_id(7);
    let evil = "\u{1b}]0;pwned\u{7}";
    let mut evil_subtask = subtask(
        "evil",
        "research",
        &format!("{evil}Evil \u{1b}[31mtitle\u{1b}[0m"),
        &format!("Desc\u{1b}[2J\u{1b}[Hription{evil}"),
        &[],
    );
    evil_subtask.focus_areas = vec![format!("area\u{7}{evil}")];
    let mut model = model(false, (160, 48));
    send_all(
        &mut model,
        [
            at(
                run,
                9_000,
                EventKind::RunStarted {
                    query: format!("Query{evil} \u{1b}[1mbold"),
                },
            ),
            at(
                run,
                8_000,
                EventKind::PlanReady {
                    plan: plan(vec![evil_subtask]),
                },
            ),
            at(
                run,
                7_000,
                EventKind::SubtaskStarted {
                    subtask: sid("evil"),
                    attempt: 1,
                    worker: "research".into(),
                    model: "gpt-4o-mini".into(),
                },
            ),
            at(
                run,
                6_000,
                EventKind::SubtaskDelta {
                    subtask: sid("evil"),
                    attempt: 1,
                    text: format!("Streamed\u{1b}[2J {evil}text\u{7}"),
                },
            ),
            at(
                run,
                5_000,
                EventKind::SubtaskRetrying {
                    subtask: sid("evil"),
                    attempt: 1,
                    delay_ms: 1_000,
                    reason: format!("429{evil}"),
                    error: format!("rate\u{1b}[5m limited{evil}"),
                },
            ),
            at(
                run,
                4_000,
                EventKind::SubtaskStarted {
                    subtask: sid("evil"),
                    attempt: 2,
                    worker: "research".into(),
                    model: "gpt-4o-mini".into(),
                },
            ),
            at(
                run,
                3_000,
                EventKind::SubtaskFailed {
                    subtask: sid("evil"),
                    attempt: 2,
                    elapsed_ms: 1_000,
                    error: format!("Boom\u{1b}[41m error{evil}"),
                    partial: format!("Partial\u{1b}P+q\u{1b}\\ output{evil}"),
                },
            ),
            at(
                run,
                2_500,
                EventKind::Notice {
                    message: format!("Notice{evil}\u{1b}[2J"),
                },
            ),
            at(
                run,
                2_000,
                EventKind::SynthesisDelta {
                    attempt: 1,
                    text: format!("# Report{evil}\n\nBody\u{1b}]52;c;aGVsbG8=\u{7} text\u{1b}[31m"),
                },
            ),
            at(
                run,
                1_000,
                EventKind::RunFinished {
                    status: RunStatus::Failed,
                    elapsed_ms: 8_000,
                    usage: Usage::default(),
                    succeeded: 0,
                    failed: 1,
                    total: 1,
                    error: Some(format!("Run\u{1b}[2K failed{evil}")),
                },
            ),
        ],
    );
    key(&mut model, KeyCode::Esc);
    assert_eq!(model.runs[0].report.subtasks[0].status.word(), "failed");
    model
}

fn assert_clean(screen: &str) {
    assert!(!screen.contains('\u{1b}'), "ESC on screen:\n{screen}");
    assert!(!screen.contains('\u{7}'), "BEL on screen:\n{screen}");
    assert!(
        !screen.contains("pwned"),
        "an OSC payload on screen:\n{screen}"
    );
    assert!(!screen.contains("aGVsbG8"), "an OSC 52 payload:\n{screen}");
    assert!(!screen.contains("[2J"), "a CSI sequence's tail:\n{screen}");
}

#[test]
fn escape_sequences_in_model_text_never_reach_the_screen() {
    let mut model = evil_run();
    let mut screens = Vec::new();
    for (w, h) in [(160, 48), (80, 24)] {
        screens.push(buffer_text(render(&mut model, w, h).backend().buffer()));
    }
    ch(&mut model, '?');
    screens.push(buffer_text(render(&mut model, 160, 48).backend().buffer()));
    for screen in &screens {
        assert_clean(screen);
    }
    let first = &screens[0];
    for visible in [
        "Evil title",
        "Description",
        "Boom error",
        "Partial output",
        "Report",
    ] {
        assert!(first.contains(visible), "{visible:?} missing:\n{first}");
    }
}

#[test]
fn the_edit_pop_up_shows_the_description_without_escape_sequences() {
    let mut model = evil_run();
    ch(&mut model, 'e');
    assert!(matches!(model.overlay, Some(Overlay::Edit { .. })));
    let screen = buffer_text(render(&mut model, 160, 48).backend().buffer());
    assert_clean(&screen);
    assert!(screen.contains("Description"), "{screen}");
}

// ---- colour ----------------------------------------------------------------------------------

/// The cell of the status glyph in the tree row of subtask `id`: a row is
/// `  <glyph> <id> <role> <title> … <time>`, so the glyph is two columns into the pane.
fn glyph_cell(model: &Model, buffer: &Buffer, id: &str) -> (u16, u16) {
    let tree = layout::inner(layout::areas(model).tree);
    for y in tree.top()..tree.bottom() {
        let row: String = (tree.left()..tree.right())
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        let after_glyph: String = row.chars().skip(3).collect();
        if row.starts_with("  ") && after_glyph.starts_with(&format!(" {id} ")) {
            return (tree.left() + 2, y);
        }
    }
    panic!("no tree row for {id}:\n{}", buffer_text(buffer));
}

#[test]
fn with_colour_a_failed_glyph_is_red_a_succeeded_one_green_and_a_retrying_one_yellow() {
    let mut model = Model::new(info(false), Theme { color: true }, (160, 48), NOW);
    send_all(&mut model, every_state_events(run_id(1)));
    key(&mut model, KeyCode::Esc);
    ch(&mut model, 'j'); // select `emissions`, away from the rows under test
    let terminal = render(&mut model, 160, 48);
    let buffer = terminal.backend().buffer();
    for (id, glyph, colour) in [
        ("costs", "✗", Color::Red),
        ("context", "✓", Color::Green),
        ("grid", "↻", Color::Yellow),
        ("equity", "⊘", Color::Magenta),
    ] {
        let (x, y) = glyph_cell(&model, buffer, id);
        let cell = &buffer[(x, y)];
        assert_eq!(cell.symbol(), glyph, "glyph of {id}");
        assert_eq!(cell.fg, colour, "colour of {id}'s glyph");
    }
}

#[test]
fn without_colour_no_cell_has_a_foreground_or_background_colour() {
    let mut model = every_state_running_selected((160, 48));
    ch(&mut model, '?');
    let terminal = render(&mut model, 160, 48);
    let buffer = terminal.backend().buffer();
    for cell in buffer.content() {
        assert_eq!(cell.fg, Color::Reset, "{cell:?}");
        assert_eq!(cell.bg, Color::Reset, "{cell:?}");
    }
}

#[test]
fn with_colour_the_focused_pane_border_is_cyan_and_the_others_are_not() {
    let mut model = Model::new(info(false), Theme { color: true }, (160, 48), NOW);
    send_all(&mut model, every_state_events(run_id(1)));
    key(&mut model, KeyCode::Esc);
    let terminal = render(&mut model, 160, 48);
    let buffer = terminal.backend().buffer();
    let areas = layout::areas(&model);
    let corner = |r: ratatui::layout::Rect| &buffer[(r.x, r.y + r.height - 1)];
    assert_eq!(corner(areas.tree).fg, Color::Cyan);
    assert_ne!(corner(areas.query).fg, Color::Cyan);
    assert_ne!(corner(areas.synthesis).fg, Color::Cyan);
}

#[test]
fn the_status_line_says_unsaved_while_runs_are_not_saved_and_not_otherwise() {
    let mut model = model(false, (80, 24));
    let last_line = |model: &mut Model| {
        let terminal = render(model, 80, 24);
        buffer_text(terminal.backend().buffer())
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(!last_line(&mut model).contains("unsaved"));
    model.unsaved = Some("the disk is full".into());
    let line = last_line(&mut model);
    assert!(line.contains("unsaved"), "{line}");
    // With a run's figures on a narrow line, it still shows.
    let run = run_id(1);
    send_all(&mut model, every_state_events(run));
    let terminal = render(&mut model, 60, 24);
    let text = buffer_text(terminal.backend().buffer());
    let line = text.lines().last().unwrap_or_default();
    assert!(line.contains("unsaved"), "{line}");
}

// ---- presets ---------------------------------------------------------------------------------

fn with_presets(model: &mut Model) {
    use maestro::tui::model::PresetInfo;
    let preset = |name: &str, description: &str, source: &str, roles: &[&str]| PresetInfo {
        name: name.to_owned(),
        description: description.to_owned(),
        source: source.to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    };
    model.models.preset = "research".to_owned();
    model.models.presets = vec![
        preset(
            "research",
            "General research: facts, analysis, comparison and critique.",
            "built-in",
            &["analysis", "research", "compare", "critique", "writing"],
        ),
        preset(
            "market",
            "Market intelligence: news, competitors, trends and sentiment.",
            "built-in",
            &["news", "competitor", "trend", "sentiment"],
        ),
        preset(
            "legal",
            "Legal questions.",
            "~/.config/maestro/presets/legal.toml",
            &["statute", "case-law"],
        ),
    ];
}

fn preset_picker(size: (u16, u16)) -> Model {
    let mut model = every_state(size);
    with_presets(&mut model);
    ch(&mut model, 'p');
    ch(&mut model, 'j');
    model
}

#[test]
fn the_preset_picker_over_the_tree() {
    snapshot_at_both_sizes("preset_picker", preset_picker);
}

#[test]
fn the_status_line_names_the_preset_in_use_and_a_picked_one() {
    let mut model = every_state((160, 48));
    with_presets(&mut model);
    let status = |model: &mut Model| {
        let text = buffer_text(render(model, 160, 48).backend().buffer());
        text.lines().last().expect("a status line").to_owned()
    };
    assert!(status(&mut model).contains("preset research"));
    let mut picked = preset_picker((160, 48));
    key(&mut picked, KeyCode::Enter);
    insta::assert_snapshot!("status_line_with_preset", status(&mut picked));
    assert_eq!(picked.models.picked.preset.as_deref(), Some("market"));
    // The next run is started with it, and its report names it.
    type_text(&mut picked, "/");
    type_text(&mut picked, "Who sells e-bikes?");
    let actions = key(&mut picked, KeyCode::Enter);
    assert!(
        matches!(
            actions.as_slice(),
            [maestro::tui::update::Action::StartRun { models, .. }]
                if models.preset.as_deref() == Some("market")
        ),
        "{actions:?}"
    );
    let id = run_id(9);
    update(
        &mut picked,
        Msg::RunStarting {
            id,
            query: "Who sells e-bikes?".into(),
            parent: None,
        },
    );
    let view = picked.run(id).expect("the new run");
    assert_eq!(view.report.preset, "market");
    // Picking the configured one again goes back to it.
    ch(&mut picked, 'p');
    ch(&mut picked, 'k');
    key(&mut picked, KeyCode::Enter);
    assert_eq!(picked.models.picked.preset, None);
    assert!(status(&mut picked).contains("preset research"));
}

#[test]
fn a_custom_role_shows_as_custom_in_the_tree_and_its_prompt_in_the_detail() {
    let run = run_id(1);
    let mut model = model(false, (160, 48));
    send_all(&mut model, planning_events(run));
    let mut custom = subtask("tax", "custom", "Tax rules", "Explain the tax rules.", &[]);
    custom.role_prompt = Some("You are a tax adviser for city fleets.".to_owned());
    let plain = subtask("facts", "research", "Facts", "Gather the facts.", &[]);
    send(
        &mut model,
        at(
            run,
            41_000,
            EventKind::PlanReady {
                plan: plan(vec![custom, plain]),
            },
        ),
    );
    key(&mut model, KeyCode::Esc); // to the tree, on the first subtask
    let text = buffer_text(render(&mut model, 160, 48).backend().buffer());
    let row = text
        .lines()
        .find(|l| l.contains("Tax rules"))
        .expect("the custom subtask's row");
    assert!(row.contains("custom"), "{row}");
    assert!(
        text.contains("Role prompt (written by the planner):"),
        "{text}"
    );
    assert!(
        text.contains("You are a tax adviser for city fleets."),
        "{text}"
    );
    // Editing it keeps its role: `custom` is the role the pop-up starts on.
    ch(&mut model, 'e');
    let text = buffer_text(render(&mut model, 160, 48).backend().buffer());
    assert!(text.contains("‹ custom ›"), "{text}");
    let actions = key(&mut model, KeyCode::Enter);
    assert!(
        matches!(
            actions.as_slice(),
            [maestro::tui::update::Action::Send(maestro::protocol::Command::Run {
                command: maestro::protocol::RunCommand::EditSubtask { worker: Some(w), .. },
                ..
            })] if w == "custom"
        ),
        "{actions:?}"
    );
    // Another subtask's detail says nothing of it.
    ch(&mut model, 'j');
    let text = buffer_text(render(&mut model, 160, 48).backend().buffer());
    assert!(!text.contains("Role prompt"), "{text}");
}
