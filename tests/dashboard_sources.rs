//! Provenance in the dashboard: `n` / `N` move through the finished report's paragraphs and the
//! tree marks the subtasks a paragraph cites, `o` lists the run's sources (and the citations
//! that point at nothing retrieved), Enter reads a source's retrieved text, the status line
//! counts unverified citations. Pure `update` stories and snapshots over `TestBackend` on the
//! fixed clock of `dashboard_support`.

mod dashboard_support;

use dashboard_support::*;
use maestro::protocol::{Event, EventKind, RunId, Source, SourceKind, SubtaskId, Usage};
use maestro::tui::model::{Focus, Model, Overlay};
use maestro::tui::update::{Action, Msg, update};
use maestro::tui::{provenance, view};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;

const AIR: &str = "https://example.org/air";
const NOISE: &str = "https://example.org/noise";
const PRICES: &str = "https://example.org/prices";

/// What the air page handed to the model: several lines, one with a terminal escape that must
/// never reach the screen.
fn air_text() -> String {
    let mut text = String::from(
        "Air quality in cities\n\nHeat pumps burn nothing on site.\u{1b}]0;pwned\u{7}\n",
    );
    for i in 1..=60 {
        text.push_str(&format!(
            "Measured line {i}: particulates fall where boilers go.\n"
        ));
    }
    text
}

/// The report: a heading, paragraphs citing subtasks and sources, a list, and a citation of
/// a source no subtask retrieved (`[7]`).
fn report() -> String {
    [
        "# Heat pumps in cities",
        "",
        "Heat pumps cut urban emissions by a third [subtask: emissions] [1].",
        "",
        "Noise stays below 40 dB at night [subtask: emissions] [2], which matters in dense streets.",
        "",
        "Households recover the extra cost in about seven years [subtask: costs] [3] [1].",
        "",
        "Subsidies halve the upfront price [subtask: policy], though one figure has no source [7].",
        "",
        "Overall the case is strong.",
    ]
    .join("\n")
}

fn source(number: u32, location: &str, bytes: u64, status: u16, ago: u64) -> Source {
    Source {
        number,
        kind: SourceKind::Url,
        location: location.to_owned(),
        bytes,
        status: Some(status),
        retrieved_ms: NOW - ago,
    }
}

fn fetched(
    run: RunId,
    subtask: &str,
    call: &str,
    source: Source,
    text: String,
    ago: u64,
) -> Vec<Event> {
    vec![
        at(
            run,
            ago + 400,
            EventKind::ToolCallStarted {
                subtask: sid(subtask),
                attempt: 1,
                call_id: call.to_owned(),
                tool: "fetch_url".to_owned(),
                arguments: source.location.clone(),
            },
        ),
        at(
            run,
            ago,
            EventKind::ToolCallFinished {
                subtask: sid(subtask),
                attempt: 1,
                call_id: call.to_owned(),
                ok: true,
                bytes: source.bytes,
                ms: 400,
                summary: format!("HTTP {} · {}", source.status.unwrap_or(0), source.location),
                source: Some(source),
                text,
            },
        ),
    ]
}

/// A finished run: `emissions` fetched the air and noise pages, `costs` the prices page and
/// the air page again (one source, two readers), `policy` read nothing.
fn sourced_run(run: RunId) -> Vec<Event> {
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
                subtask("costs", "research", "Costs", "Costs for households.", &[]),
                subtask("policy", "analysis", "Policy", "Subsidies and rules.", &[]),
            ]),
        },
    ));
    for id in ["emissions", "costs", "policy"] {
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
    events.extend(fetched(
        run,
        "emissions",
        "c1",
        source(1, AIR, 12_345, 200, 36_000),
        air_text(),
        36_000,
    ));
    events.extend(fetched(
        run,
        "emissions",
        "c2",
        source(2, NOISE, 4_100, 200, 35_000),
        "Night noise: 38 dB at two metres.".to_owned(),
        35_000,
    ));
    events.extend(fetched(
        run,
        "costs",
        "c3",
        source(3, PRICES, 80_000, 200, 34_000),
        "Prices: a heat pump costs 12 000 EUR installed.".to_owned(),
        34_000,
    ));
    events.extend(fetched(
        run,
        "costs",
        "c4",
        source(1, AIR, 12_345, 200, 33_000),
        air_text(),
        33_000,
    ));
    for id in ["emissions", "costs", "policy"] {
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
                result: format!("Findings on {id} [1]."),
                cut_off: false,
                cached: false,
            },
        ));
    }
    events.extend(finished_with_synthesis(run, &report()));
    events
}

fn scene(size: (u16, u16)) -> Model {
    let mut model = model(false, size);
    send_all(&mut model, sourced_run(run_id(1)));
    key(&mut model, KeyCode::Esc); // query box → tree
    model
}

fn render(model: &mut Model, w: u16, h: u16) -> Terminal<TestBackend> {
    update(model, Msg::Resize(w, h));
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("a terminal");
    terminal
        .draw(|frame| view::draw(frame, model))
        .expect("drawn");
    terminal
}

fn screen(model: &mut Model, w: u16, h: u16) -> String {
    let terminal = render(model, w, h);
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

/// What the selected paragraph cites: (subtasks, sources).
fn cites(model: &Model) -> Option<(Vec<SubtaskId>, Vec<u32>)> {
    provenance::selected_paragraph(model).map(|p| (p.subtasks, p.sources))
}

/// Press `n` from the first paragraph until the selected one cites `subtask`.
fn select_citing(model: &mut Model, subtask: &str) {
    if cites(model).is_some() {
        key(model, KeyCode::Esc);
    }
    for _ in 0..20 {
        ch(model, 'n');
        if cites(model).is_some_and(|(s, _)| s.contains(&sid(subtask))) {
            return;
        }
    }
    panic!("no paragraph cites {subtask}");
}

// ---- paragraphs --------------------------------------------------------------------------------

#[test]
fn n_and_shift_n_move_through_paragraphs_and_select_the_cited_subtasks() {
    let mut model = scene((160, 48));
    assert_eq!(cites(&model), None, "no paragraph before n");
    let mut seen = Vec::new();
    for _ in 0..12 {
        ch(&mut model, 'n');
        seen.push(cites(&model).expect("a paragraph is selected"));
    }
    let cited: Vec<_> = seen.iter().filter(|(s, _)| !s.is_empty()).collect();
    assert_eq!(cited[0], &(vec![sid("emissions")], vec![1]));
    assert!(
        cited.contains(&&(vec![sid("emissions")], vec![2])),
        "{seen:?}"
    );
    assert!(
        cited.contains(&&(vec![sid("costs")], vec![3, 1])),
        "{seen:?}"
    );
    assert!(
        cited.iter().any(|(s, _)| s == &vec![sid("policy")]),
        "{seen:?}"
    );
    // n stops at the last paragraph; N goes back one.
    let last = seen.last().cloned();
    assert_eq!(seen[seen.len() - 2], seen[seen.len() - 1]);
    ch(&mut model, 'N');
    assert_ne!(cites(&model), last);
    // The tree marks the cited subtasks (the mark the view draws comes from here).
    select_citing(&mut model, "costs");
    let (run, ids) = provenance::cited_subtasks(&model).expect("cited subtasks");
    assert_eq!(run, run_id(1));
    assert_eq!(ids, vec![sid("costs")]);
    // Esc leaves the mode; the tree's keys work again.
    key(&mut model, KeyCode::Esc);
    assert_eq!(cites(&model), None);
    assert_eq!(provenance::cited_subtasks(&model), None);
}

#[test]
fn shift_n_enters_at_the_last_paragraph_and_a_report_still_streaming_has_none() {
    let mut model = scene((160, 48));
    ch(&mut model, 'N');
    assert_eq!(
        cites(&model),
        Some((vec![], vec![])),
        "the closing line cites nothing"
    );

    let mut live = dashboard_support::model(false, (160, 48));
    let events = sourced_run(run_id(2));
    // Everything but the end of the synthesis: the report still streams.
    let streaming = events.len() - 2;
    send_all(&mut live, events.into_iter().take(streaming));
    key(&mut live, KeyCode::Esc);
    ch(&mut live, 'n');
    assert_eq!(cites(&live), None);
    assert!(live.toast.is_some(), "a toast says why nothing happened");
}

#[test]
fn a_new_synthesis_ends_paragraph_mode() {
    let mut model = scene((160, 48));
    ch(&mut model, 'n');
    assert!(cites(&model).is_some());
    send(
        &mut model,
        at(
            run_id(1),
            0,
            EventKind::SynthesisStarted {
                attempt: 2,
                model: "gpt-4o".to_owned(),
            },
        ),
    );
    assert_eq!(cites(&model), None);
}

#[test]
fn the_report_scrolls_to_keep_the_selected_paragraph_in_view() {
    let mut model = scene((80, 24));
    // The report pane at 80×24 is a few lines high: the last paragraph is below it at first.
    ch(&mut model, 'N');
    let before = model.synthesis_scroll.offset;
    assert!(before > 0, "scrolled down to the last paragraph");
    let text = screen(&mut model, 80, 24);
    assert!(text.contains("▌ Overall the case is strong."), "{text}");
    for _ in 0..12 {
        ch(&mut model, 'N');
    }
    assert_eq!(model.synthesis_scroll.offset, 0, "back at the top");
}

// ---- sources -----------------------------------------------------------------------------------

#[test]
fn o_lists_sources_by_number_and_enter_reads_the_text_the_event_carried() {
    let mut model = scene((160, 48));
    ch(&mut model, 'o');
    assert!(matches!(
        model.overlay,
        Some(Overlay::Sources {
            cursor: 0,
            paragraph: None,
            ..
        })
    ));
    let text = screen(&mut model, 160, 48);
    let air = text
        .lines()
        .find(|l| l.contains("[1] https://example.org/air"))
        .expect(&text);
    assert!(
        air.contains("HTTP 200")
            && air.contains("12.1 KB")
            && air.contains("subtask emissions, costs"),
        "{air}"
    );
    assert!(text.contains("[2] https://example.org/noise"), "{text}");
    assert!(text.contains("[3] https://example.org/prices"), "{text}");
    assert!(
        text.contains("⚠ [7]"),
        "the unverified citation is listed: {text}"
    );
    // ↓ then Enter: the reader opens on the noise page with its text.
    key(&mut model, KeyCode::Down);
    key(&mut model, KeyCode::Enter);
    match &model.overlay {
        Some(Overlay::Reader {
            number, location, ..
        }) => {
            assert_eq!((*number, location.as_str()), (2, NOISE));
        }
        _ => panic!("the reader is not open"),
    }
    let text = screen(&mut model, 160, 48);
    assert!(text.contains("Night noise: 38 dB at two metres."), "{text}");
    assert!(text.contains("HTTP 200 · 4.0 KB"), "{text}");
    // Esc goes back to the list where it was; Esc again closes it.
    key(&mut model, KeyCode::Esc);
    assert!(matches!(
        model.overlay,
        Some(Overlay::Sources { cursor: 1, .. })
    ));
    key(&mut model, KeyCode::Esc);
    assert!(model.overlay.is_none());
}

#[test]
fn the_reader_scrolls_by_line_and_page_and_never_draws_an_escape() {
    let mut model = scene((80, 24));
    ch(&mut model, 'o');
    key(&mut model, KeyCode::Enter);
    let scroll = |m: &Model| match m.overlay {
        Some(Overlay::Reader { scroll, .. }) => scroll,
        _ => usize::MAX,
    };
    assert_eq!(scroll(&model), 0);
    let text = screen(&mut model, 80, 24);
    assert!(text.contains("Air quality in cities"), "{text}");
    assert!(
        !text.contains('\u{1b}') && !text.contains("]0;pwned"),
        "{text}"
    );
    key(&mut model, KeyCode::Down);
    assert_eq!(scroll(&model), 1);
    key(&mut model, KeyCode::PageDown);
    assert!(scroll(&model) > 5);
    key(&mut model, KeyCode::End);
    let end = scroll(&model);
    let text = screen(&mut model, 80, 24);
    assert!(text.contains("Measured line 60"), "{text}");
    key(&mut model, KeyCode::Down);
    assert_eq!(scroll(&model), end, "no scrolling past the end");
    key(&mut model, KeyCode::Home);
    assert_eq!(scroll(&model), 0);
}

#[test]
fn enter_on_a_paragraph_lists_only_the_sources_it_cites() {
    let mut model = scene((160, 48));
    select_citing(&mut model, "costs");
    key(&mut model, KeyCode::Enter);
    assert!(matches!(
        model.overlay,
        Some(Overlay::Sources {
            paragraph: Some(_),
            ..
        })
    ));
    let text = screen(&mut model, 160, 48);
    assert!(
        text.contains("[3] https://example.org/prices")
            && text.contains("[1] https://example.org/air"),
        "{text}"
    );
    assert!(!text.contains("[2] https://example.org/noise"), "{text}");
    key(&mut model, KeyCode::Esc);
    // A paragraph without sources says so instead of opening an empty list.
    select_citing(&mut model, "policy");
    let (_, sources) = cites(&model).expect("a paragraph");
    assert_eq!(sources, vec![7]);
    key(&mut model, KeyCode::Enter);
    let text = screen(&mut model, 160, 48);
    assert!(
        text.contains("⚠ [7]"),
        "its unverified citation is listed: {text}"
    );
}

#[test]
fn a_run_without_sources_says_so_and_opens_nothing() {
    let mut model = model(false, (80, 24));
    send_all(
        &mut model,
        small_run_events(run_id(1), "# Report\n\nNo citations here."),
    );
    key(&mut model, KeyCode::Esc);
    ch(&mut model, 'o');
    assert!(model.overlay.is_none());
    assert!(
        model
            .toast
            .as_ref()
            .is_some_and(|t| t.text.contains("no sources"))
    );
}

#[test]
fn the_status_line_counts_unverified_citations_and_says_nothing_when_there_are_none() {
    let mut model = scene((160, 48));
    assert_eq!(
        provenance::unverified_count(&model, model.current_run().expect("a run")),
        1
    );
    let text = screen(&mut model, 160, 48);
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.contains("⚠ 1 unverified")),
        "{text}"
    );

    let mut clean = dashboard_support::model(false, (160, 48));
    send_all(
        &mut clean,
        small_run_events(run_id(2), "# Report\n\nNothing cited."),
    );
    let text = screen(&mut clean, 160, 48);
    assert!(!text.contains("unverified"), "{text}");
}

#[test]
fn a_tiny_terminal_never_panics_with_provenance_open() {
    for (w, h) in [(20, 5), (40, 12), (45, 14), (1, 1)] {
        let mut model = scene((160, 48));
        ch(&mut model, 'n');
        render(&mut model, w, h);
        ch(&mut model, 'o');
        render(&mut model, w, h);
        key(&mut model, KeyCode::Enter);
        render(&mut model, w, h);
        key(&mut model, KeyCode::End);
        key(&mut model, KeyCode::PageDown);
        render(&mut model, w, h);
    }
}

// ---- snapshots ---------------------------------------------------------------------------------

#[test]
fn snapshot_paragraph_selected_with_cited_subtasks_marked() {
    for (w, h) in [(80, 24), (160, 48)] {
        let mut model = scene((w, h));
        select_citing(&mut model, "costs");
        assert_eq!(model.focus, Focus::Tree);
        let terminal = render(&mut model, w, h);
        insta::assert_snapshot!(format!("paragraph_selected_{w}x{h}"), terminal.backend());
    }
}

#[test]
fn snapshot_sources_list() {
    for (w, h) in [(80, 24), (160, 48)] {
        let mut model = scene((w, h));
        ch(&mut model, 'o');
        key(&mut model, KeyCode::Down);
        let terminal = render(&mut model, w, h);
        insta::assert_snapshot!(format!("sources_list_{w}x{h}"), terminal.backend());
    }
}

#[test]
fn snapshot_source_reader() {
    for (w, h) in [(80, 24), (160, 48)] {
        let mut model = scene((w, h));
        ch(&mut model, 'o');
        key(&mut model, KeyCode::Enter);
        key(&mut model, KeyCode::Down);
        let terminal = render(&mut model, w, h);
        insta::assert_snapshot!(format!("source_reader_{w}x{h}"), terminal.backend());
    }
}

// ---- a run opened from history -----------------------------------------------------------------

/// The finished run as history reads it back: its report with the sources, none of the texts
/// (this dashboard never saw its events).
fn opened_from_history() -> Model {
    let mut scratch = dashboard_support::model(false, (160, 48));
    send_all(&mut scratch, sourced_run(run_id(1)));
    let report = scratch.runs[0].report.clone();
    let mut model = dashboard_support::model(false, (160, 48));
    update(
        &mut model,
        Msg::SavedOpened(Ok(Box::new((
            report,
            maestro::tui::model::Saved {
                status: maestro::store::SavedRunStatus::Succeeded,
                resume: None,
            },
        )))),
    );
    model
}

#[test]
fn a_saved_run_reads_a_source_text_from_the_store_once_and_shows_it() {
    let mut model = opened_from_history();
    assert_eq!(model.focus, Focus::Tree);
    ch(&mut model, 'o');
    let actions = key(&mut model, KeyCode::Enter);
    match actions.as_slice() {
        [
            Action::ReadSourceText {
                run,
                subtask,
                source,
            },
        ] => {
            assert_eq!(
                (*run, subtask.as_str(), source.location.as_str()),
                (run_id(1), "emissions", AIR)
            );
            assert_eq!(
                source.retrieved_ms,
                NOW - 36_000,
                "the read it was saved with"
            );
        }
        other => panic!("{other:?}"),
    }
    let text = screen(&mut model, 160, 48);
    assert!(text.contains("Reading the saved text…"), "{text}");
    update(
        &mut model,
        Msg::SourceTextRead {
            run: run_id(1),
            location: AIR.to_owned(),
            result: Ok(Some("Saved air page.\u{1b}[2J".to_owned())),
        },
    );
    let text = screen(&mut model, 160, 48);
    assert!(text.contains("Saved air page."), "{text}");
    assert!(!text.contains('\u{1b}'));
    // Back and in again: the text is here, nothing is asked.
    key(&mut model, KeyCode::Esc);
    assert!(key(&mut model, KeyCode::Enter).is_empty());
    // A source the store has no text for says so.
    key(&mut model, KeyCode::Esc);
    key(&mut model, KeyCode::Down);
    assert_eq!(key(&mut model, KeyCode::Enter).len(), 1);
    update(
        &mut model,
        Msg::SourceTextRead {
            run: run_id(1),
            location: NOISE.to_owned(),
            result: Ok(None),
        },
    );
    let text = screen(&mut model, 160, 48);
    assert!(text.contains("is not kept"), "{text}");
}

#[test]
fn a_saved_run_is_read_by_paragraph_and_counts_its_unverified_citations() {
    let mut model = opened_from_history();
    select_citing(&mut model, "costs");
    assert_eq!(
        provenance::cited_subtasks(&model),
        Some((run_id(1), vec![sid("costs")]))
    );
    let text = screen(&mut model, 160, 48);
    assert!(text.contains("◆ ✓ costs"), "{text}");
    assert!(text.contains("⚠ 1 unverified"), "{text}");
}

#[test]
fn the_unverified_count_is_in_the_warning_colour() {
    let mut model = scene((160, 48));
    model.theme = maestro::tui::theme::Theme { color: true };
    let terminal = render(&mut model, 160, 48);
    let buffer = terminal.backend().buffer();
    let y = buffer.area.height - 1;
    let x = (0..buffer.area.width)
        .find(|x| buffer[(*x, y)].symbol() == "⚠")
        .expect("the count on the status line");
    assert_eq!(buffer[(x, y)].fg, ratatui::style::Color::Yellow);
}
