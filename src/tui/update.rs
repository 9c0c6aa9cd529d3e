//! Everything that changes the dashboard: `update(model, msg) -> actions`. Keys, paste, mouse,
//! resizes, clock ticks and engine events come in as `Msg`; what must happen outside the model
//! (commands to the engine, clipboard, writing a file, the bell, quitting) goes out as
//! `Action`s for the app loop. Pure: no clock, no randomness, no I/O, so the same messages
//! always leave the same model and actions, and tests drive it without a terminal. A new run's
//! id is therefore made by the app loop (`Action::StartRun` → `Msg::RunStarting`).

use std::path::PathBuf;

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui_textarea::{CursorMove, TextArea};

use crate::protocol::{
    Attachments, Command, Event, EventKind, FollowUp, ModelOverrides, RunCommand, RunId, RunStatus,
    SavedRun, SubtaskStatus,
};
use crate::report::RunReport;
use crate::sanitize::sanitize_line;
use crate::store::{RunSummary, SavedRunStatus};
use crate::tui::content;
use crate::tui::keymap::{self, Context, KeyAction};
use crate::tui::layout::{self, areas, inner};
// Imported under another name: `update` must never spell the view module's path.
use crate::tui::model::{
    Focus, Model, ModelList, Node, Overlay, PauseWhy, PickRole, Saved, SavedList, Scroll,
    ToastLevel,
};
use crate::tui::review as reviewing;
use crate::tui::sources::{ReaderMove, scroll_reader as reader};

#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Key(KeyEvent),
    Paste(String),
    Mouse(MouseEvent),
    Resize(u16, u16),
    /// The clock moved (wall-clock ms since the epoch).
    Tick(u64),
    Engine(Event),
    /// The report file was written (its path) or could not be (why).
    ReportWritten(Result<PathBuf, String>),
    /// The app gave the run asked for by `Action::StartRun` this id, and sent the engine its
    /// `StartRun`. Comes before any event of that run.
    RunStarting {
        id: RunId,
        query: String,
        /// The run it follows up on, if it is a follow-up.
        parent: Option<RunId>,
    },
    /// The provider's models (sorted), or why they could not be listed: the answer to
    /// `Action::ListModels`.
    ModelsListed(Result<Vec<String>, String>),
    /// The saved runs matching `search` (newest first), or why they could not be read: the
    /// answer to `Action::ListHistory`.
    HistoryListed {
        search: String,
        result: Result<Vec<RunSummary>, String>,
    },
    /// A saved run read back for the panes, or why it could not be: the answer to
    /// `Action::OpenSaved`.
    SavedOpened(Result<Box<(RunReport, Saved)>, String>),
    /// The files a query's `@path`s name were read (or why not): the answer to
    /// `Action::ReadContext`, with what that action carried.
    ContextRead {
        query: String,
        models: ModelOverrides,
        follow_up: Option<Box<FollowUp>>,
        result: Result<Attachments, String>,
    },
    /// The statistics of the saved runs, or why they could not be read: the answer to
    /// `Action::ReadStats`.
    StatsRead(Result<Box<crate::stats::Stats>, String>),
    /// The saved text of a source of run `run` read at `location`: `Ok(None)` when none was
    /// saved. The answer to `Action::ReadSourceText`.
    SourceTextRead {
        run: RunId,
        location: String,
        result: Result<Option<String>, String>,
    },
    /// The saved calls plan estimates are made from, or why they could not be read: the
    /// answer to `Action::ReadCalls`.
    CallsRead(Result<std::sync::Arc<Vec<crate::store::CallRecord>>, String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send(Command),
    /// Start a run of this query: the app makes its id, sends `Command::StartRun` and answers
    /// with `Msg::RunStarting` before the engine's first event can arrive.
    StartRun {
        query: String,
        /// The models picked in the dashboard (empty: the configured ones).
        models: ModelOverrides,
        /// The earlier run it follows up on, from that run's report.
        follow_up: Option<Box<FollowUp>>,
        /// The files its query's `@path`s name, read by the app (`Action::ReadContext`).
        context: Attachments,
    },
    /// Read the files the query's `@path`s name, off the drawing path; answer with
    /// `Msg::ContextRead`. The query stays in the box until they are read, so a wrong path
    /// costs nothing to fix.
    ReadContext {
        query: String,
        models: ModelOverrides,
        follow_up: Option<Box<FollowUp>>,
    },
    /// Ask the provider for its models; answer with `Msg::ModelsListed`.
    ListModels,
    /// Read the saved runs whose query or report has `search` (all when empty); answer with
    /// `Msg::HistoryListed`.
    ListHistory {
        search: String,
    },
    /// Read a saved run; answer with `Msg::SavedOpened`.
    OpenSaved(RunId),
    /// Go on with a saved run in the engine under its id: save its row as running again, send
    /// `Command::ResumeRun` (or, with nothing to resume from, `StartRun` to plan it again).
    Resume {
        id: RunId,
        query: String,
        saved: Option<Box<SavedRun>>,
        /// What the key asked, saved as the user's command.
        asked: Option<RunCommand>,
        /// Send `asked` to the engine after the resume; false when the resume itself does it
        /// (it runs every subtask without a result again, then a new synthesis).
        then: bool,
    },
    /// Put this text on the clipboard (OSC 52).
    Copy(String),
    /// Write a report file; answer with `Msg::ReportWritten`.
    Write {
        path: PathBuf,
        text: String,
    },
    Bell,
    Quit,
    /// Read the statistics of the saved runs; answer with `Msg::StatsRead`.
    ReadStats,
    /// Read the saved text of `source`, as `subtask` of run `run` read it (a run opened from
    /// history: its texts were not seen as events here); answer with `Msg::SourceTextRead`.
    ReadSourceText {
        run: RunId,
        subtask: crate::protocol::SubtaskId,
        source: crate::protocol::Source,
    },
    /// Read the saved calls for plan estimates; answer with `Msg::CallsRead`.
    ReadCalls,
}

pub fn update(model: &mut Model, msg: Msg) -> Vec<Action> {
    let mut actions = Vec::new();
    match msg {
        Msg::Key(key) => {
            // Windows reports releases too; acting on them would fire every key twice.
            if key.kind != KeyEventKind::Release {
                on_key(model, key, &mut actions);
            }
        }
        Msg::Paste(text) => on_paste(model, &text, &mut actions),
        Msg::Mouse(mouse) => on_mouse(model, mouse),
        Msg::Resize(w, h) => {
            model.size = (w, h);
            keep_selection_visible(model);
        }
        Msg::Tick(now) => model.tick(now),
        Msg::Engine(event) => on_engine(model, &event, &mut actions),
        Msg::RunStarting { id, query, parent } => {
            model.add_run(id, &query);
            model.set_parent(id, parent);
            let preset = model.models.effective_preset().to_owned();
            model.set_preset(id, preset);
            keep_selection_visible(model);
        }
        Msg::ModelsListed(result) => models_listed(model, result),
        Msg::HistoryListed { search, result } => history_listed(model, search, result),
        Msg::ContextRead {
            query,
            models,
            follow_up,
            result,
        } => context_read(model, &mut actions, query, models, follow_up, result),
        Msg::StatsRead(result) => model.stats = Some(result.map(|s| *s)),
        Msg::SourceTextRead {
            run,
            location,
            result,
        } => crate::tui::sources::text_read(model, run, &location, result),
        Msg::CallsRead(result) => reviewing::calls_read(model, result),
        Msg::SavedOpened(result) => match result {
            Ok(opened) => {
                let (report, saved) = *opened;
                let id = report.id;
                if id.is_some_and(|id| model.run(id).is_some()) {
                    select(model, id.map(Node::Run));
                } else {
                    model.add_saved(report, saved);
                    keep_selection_visible(model);
                }
                model.focus = Focus::Tree;
            }
            Err(why) => model.toast(
                format!("could not open the run: {}", sanitize_line(&why)),
                ToastLevel::Error,
            ),
        },
        Msg::ReportWritten(result) => match result {
            Ok(path) => model.toast(
                format!("report written to {}", path.display()),
                ToastLevel::Info,
            ),
            Err(e) => model.toast(
                format!("could not write the report: {e}"),
                ToastLevel::Error,
            ),
        },
    }
    actions
}

fn on_engine(model: &mut Model, event: &Event, actions: &mut Vec<Action>) {
    let current = model.current_run().and_then(|r| r.id()) == Some(event.run);
    // A report that was being followed as it streamed stays at its end when it finishes,
    // instead of jumping: remember where the end is before the final text replaces it.
    let following_to_end = current
        && matches!(event.kind, EventKind::SynthesisFinished { .. })
        && model.synthesis_scroll.follow
        && model.synthesis_live();
    let long_run_ended = model.apply(event);
    model.sources.record(event);
    crate::tui::provenance::on_event(model, event);
    match &event.kind {
        EventKind::PlanAwaitingReview { plan } => {
            reviewing::start(model, event.run, plan.clone(), actions);
        }
        // The plan was taken (approved) or the run ended: nothing is left to review.
        EventKind::PlanReady { .. } | EventKind::RunFinished { .. } => {
            reviewing::end(model, event.run);
        }
        EventKind::CommandRefused {
            refusal: crate::protocol::Refusal::PlanInvalid { error },
            ..
        } => reviewing::refused(model, event.run, error),
        _ => {}
    }
    match &event.kind {
        EventKind::BudgetReached { .. } | EventKind::ProviderPaused { .. } => {
            show_paused(model, event.run);
        }
        // The decision was made (here or elsewhere): the dialog has nothing left to ask.
        EventKind::BudgetRaised { .. }
        | EventKind::SubtasksSkipped { .. }
        | EventKind::ProviderResumed
        | EventKind::RunFinished { .. } => {
            if matches!(&model.overlay, Some(Overlay::Paused { run, .. }) if *run == event.run) {
                model.overlay = None;
            }
        }
        _ => {}
    }
    if current {
        match &event.kind {
            EventKind::SynthesisStarted { .. } => {
                model.synthesis_scroll = Scroll::default();
                // The new version streams in: the diff waits for it to finish.
                model.show_diff = false;
            }
            EventKind::SynthesisFinished { .. } if following_to_end => {
                if let Some((total, height)) = content::extent(model, Focus::Synthesis) {
                    model.synthesis_scroll.end(total, height);
                }
            }
            _ => {}
        }
    }
    if let EventKind::RunFinished { status, error, .. } = &event.kind {
        if long_run_ended && model.info.bell {
            actions.push(Action::Bell);
        }
        if matches!(status, RunStatus::Failed)
            && model.current_run().and_then(|r| r.id()) == Some(event.run)
        {
            let why = error.as_deref().unwrap_or("the run failed");
            model.toast(sanitize_line(why).into_owned(), ToastLevel::Error);
        }
    }
    keep_selection_visible(model);
}

// ---- keys ------------------------------------------------------------------------------------

/// Which action of the key map `key` stands for, given what has focus and what is open.
/// Pure lookup: `update` performs it. `None` leaves the key to the open pop-up's own rule or to
/// the text being typed.
pub fn key_action(model: &Model, key: &KeyEvent) -> Option<KeyAction> {
    if let Some(action) = keymap::lookup(Context::Always, key) {
        return Some(action);
    }
    match &model.overlay {
        Some(Overlay::Edit { .. }) => return keymap::lookup(Context::Edit, key),
        Some(Overlay::Models { .. }) => return keymap::lookup(Context::Models, key),
        Some(Overlay::History { .. }) => return keymap::lookup(Context::History, key),
        Some(Overlay::Paused { .. }) => return keymap::lookup(Context::Paused, key),
        Some(Overlay::Presets { .. }) => return keymap::lookup(Context::Presets, key),
        Some(Overlay::Sources { .. }) => return keymap::lookup(Context::Sources, key),
        Some(Overlay::Reader { .. }) => return keymap::lookup(Context::Reader, key),
        // A confirmation inside the review keeps its own rule (y, or any key back).
        Some(Overlay::Review { .. }) if reviewing::confirming(model) => return None,
        Some(Overlay::Review { .. }) if reviewing::editing(model) => {
            return keymap::lookup(Context::ReviewForm, key);
        }
        Some(Overlay::Review { .. }) => return keymap::lookup(Context::Review, key),
        Some(Overlay::Help { .. } | Overlay::ConfirmQuit | Overlay::Stats { .. }) => return None,
        None => {}
    }
    if let Some(action) = keymap::lookup(Context::Anywhere, key) {
        return Some(action);
    }
    if model.focus != Focus::Query
        && crate::tui::provenance::active(model)
        && let Some(action) = keymap::lookup(Context::Paragraphs, key)
    {
        return Some(action);
    }
    match model.focus {
        Focus::Query => keymap::lookup(Context::Query, key),
        Focus::Tree => {
            keymap::lookup(Context::Panes, key).or_else(|| keymap::lookup(Context::Tree, key))
        }
        Focus::Detail | Focus::Synthesis => {
            keymap::lookup(Context::Panes, key).or_else(|| keymap::lookup(Context::Reading, key))
        }
    }
}

/// Do `action` of the key map as if its key had been pressed (`key`, for the actions that hand
/// it to the text box when they do not apply). What `update` does for a key that maps to it.
pub fn perform_key_action(model: &mut Model, action: KeyAction, key: KeyEvent) -> Vec<Action> {
    let mut actions = Vec::new();
    perform(model, action, key, &mut actions);
    actions
}

fn on_key(model: &mut Model, key: KeyEvent, actions: &mut Vec<Action>) {
    if let Some(action) = key_action(model, &key) {
        perform(model, action, key, actions);
        return;
    }
    match &mut model.overlay {
        Some(Overlay::Edit { text, .. }) => {
            text.input(key);
        }
        Some(Overlay::Help { .. } | Overlay::ConfirmQuit | Overlay::Stats { .. }) => {
            on_overlay_key(model, key, actions)
        }
        // Their keys are in the key map; others do nothing there.
        Some(Overlay::Models { .. } | Overlay::Presets { .. }) => {}
        Some(Overlay::Sources { .. } | Overlay::Reader { .. }) => {}
        Some(Overlay::History { .. }) => type_search(model, key, actions),
        Some(Overlay::Paused { raise, .. }) => type_raise(raise, key),
        Some(Overlay::Review { .. }) => reviewing::type_key(model, key, actions),
        None if model.focus == Focus::Query => {
            model.query.input(key);
        }
        None => {}
    }
}

/// Do what a key of the key map stands for. `key` is the key itself, for the actions that
/// give it to the text box when they do not apply (↑ below the first line moves the cursor).
fn perform(model: &mut Model, action: KeyAction, key: KeyEvent, actions: &mut Vec<Action>) {
    match action {
        KeyAction::Quit => {
            if matches!(model.overlay, Some(Overlay::ConfirmQuit)) {
                quit(model, actions);
            } else {
                ask_to_quit(model, actions);
            }
        }
        KeyAction::NextPane => cycle_focus(model, 1),
        KeyAction::PreviousPane => cycle_focus(model, -1),
        KeyAction::Help => model.overlay = Some(Overlay::Help { scroll: 0 }),
        KeyAction::Submit => submit(model, actions),
        KeyAction::NewLine => model.query.insert_newline(),
        KeyAction::OlderQuery if model.query.cursor().0 == 0 => recall(model, -1),
        KeyAction::NewerQuery if model.query.cursor().0 + 1 >= model.query.lines().len() => {
            recall(model, 1)
        }
        KeyAction::OlderQuery | KeyAction::NewerQuery => {
            model.query.input(key);
        }
        KeyAction::ClearQuery => {
            model.reset_query();
            model.history_pos = None;
        }
        KeyAction::ToTree => model.focus = Focus::Tree,
        KeyAction::ToQuery => model.focus = Focus::Query,
        KeyAction::RetrySubtask if resume_selected(model, actions, ResumeFor::Retry) => {}
        KeyAction::RetryFailed if resume_selected(model, actions, ResumeFor::RetryFailed) => {}
        KeyAction::Resynthesize if resume_selected(model, actions, ResumeFor::Resynthesize) => {}
        KeyAction::CancelSubtask | KeyAction::CancelRun
            if model.current_run().is_some_and(|r| r.saved.is_some()) =>
        {
            model.toast(
                "a saved run: nothing of it is going on here".into(),
                ToastLevel::Info,
            );
        }
        KeyAction::RetrySubtask => match &model.selected {
            // On the row of a run that ended without a plan, there is no subtask to re-run:
            // plan it again.
            Some(Node::Run(id))
                if model
                    .run(*id)
                    .is_some_and(|v| v.report.plan.is_none() && v.report.status.is_some()) =>
            {
                let id = *id;
                actions.push(Action::Send(Command::Run {
                    id,
                    command: RunCommand::Replan,
                }));
            }
            _ => steer_selected(model, actions, RunCommand::RetrySubtask),
        },
        KeyAction::CancelSubtask => steer_selected(model, actions, RunCommand::CancelSubtask),
        KeyAction::CancelTools => cancel_tools(model, actions),
        KeyAction::RetryFailed => steer_run(model, actions, RunCommand::RetryFailed),
        KeyAction::CancelRun => {
            if model.current_run().is_some_and(|r| r.is_active()) {
                steer_run(model, actions, RunCommand::CancelRun);
            } else {
                model.toast("the run is not active".into(), ToastLevel::Info);
            }
        }
        KeyAction::Resynthesize => steer_run(model, actions, RunCommand::Resynthesize),
        KeyAction::EditSubtask => open_editor(model),
        KeyAction::CopySynthesis => copy_synthesis(model, actions),
        KeyAction::WriteReport => write_report(model, actions),
        KeyAction::ToggleReasoning => model.show_reasoning = !model.show_reasoning,
        KeyAction::ToggleFollowUp => toggle_follow_up(model),
        KeyAction::SelectUp => move_selection(model, -1),
        KeyAction::SelectDown => move_selection(model, 1),
        KeyAction::SelectPageUp => move_selection(model, -tree_page(model)),
        KeyAction::SelectPageDown => move_selection(model, tree_page(model)),
        KeyAction::SelectFirst => move_selection(model, isize::MIN / 2),
        KeyAction::SelectLast => move_selection(model, isize::MAX / 2),
        KeyAction::Collapse => match model.selected.clone() {
            Some(Node::Subtask(run, _) | Node::Files(run)) => select(model, Some(Node::Run(run))),
            Some(Node::Run(run)) => set_expanded(model, run, false),
            None => {}
        },
        KeyAction::Expand => {
            if let Some(Node::Run(run)) = model.selected {
                set_expanded(model, run, true);
            }
        }
        KeyAction::Toggle => match model.selected.clone() {
            Some(Node::Run(run)) => {
                let open = model.run(run).is_some_and(|r| r.expanded);
                set_expanded(model, run, !open);
            }
            Some(Node::Subtask(..) | Node::Files(_)) => {
                model.detail_open = !model.detail_open;
                if !model.detail_open && model.focus == Focus::Detail {
                    model.focus = Focus::Tree;
                }
            }
            None => {}
        },
        KeyAction::ScrollUp => scroll_focused(model, |_| -1),
        KeyAction::ScrollDown => scroll_focused(model, |_| 1),
        KeyAction::ScrollPageUp => scroll_focused(model, |page| -page),
        KeyAction::ScrollPageDown => scroll_focused(model, |page| page),
        KeyAction::ScrollTop => {
            if content::extent(model, model.focus).is_some() {
                pane_scroll(model, model.focus).0.home();
            }
        }
        KeyAction::ScrollBottom => {
            if let Some((total, height)) = content::extent(model, model.focus) {
                pane_scroll(model, model.focus).0.end(total, height);
            }
        }
        KeyAction::SaveEdit => save_edit(model, actions),
        KeyAction::EditNewLine => {
            if let Some(Overlay::Edit { text, .. }) = &mut model.overlay {
                text.insert_newline();
            }
        }
        KeyAction::NextRole => cycle_role(model, 1),
        KeyAction::PreviousRole => cycle_role(model, -1),
        KeyAction::CancelEdit => model.overlay = None,
        KeyAction::PickModels => open_models(model, actions),
        KeyAction::ModelUp => move_model_cursor(model, -1),
        KeyAction::ModelDown => move_model_cursor(model, 1),
        KeyAction::NextModelRole => step_model_role(model, 1),
        KeyAction::PreviousModelRole => step_model_role(model, -1),
        KeyAction::UseModel => use_model(model),
        KeyAction::ConfiguredModel => {
            if let Some(Overlay::Models { role, .. }) = model.overlay {
                model.models.pick(role, None);
                model.overlay = Some(Overlay::Models {
                    role,
                    cursor: model_cursor(model, role),
                });
            }
        }
        KeyAction::CloseModels => model.overlay = None,
        KeyAction::OpenHistory => open_history(model, actions),
        KeyAction::OpenStats => {
            model.stats = None;
            model.overlay = Some(Overlay::Stats { scroll: 0 });
            actions.push(Action::ReadStats);
        }
        KeyAction::ToggleDiff => toggle_diff(model),
        KeyAction::ToggleTimeline => model.timeline = !model.timeline,
        KeyAction::HistoryUp => move_history_cursor(model, -1),
        KeyAction::HistoryDown => move_history_cursor(model, 1),
        KeyAction::HistoryPageUp => move_history_cursor(model, -history_page(model)),
        KeyAction::HistoryPageDown => move_history_cursor(model, history_page(model)),
        KeyAction::OpenSaved => open_saved(model, actions),
        KeyAction::ClearSearch => set_search(model, String::new(), actions),
        KeyAction::CloseHistory => model.overlay = None,
        KeyAction::PickPreset => {
            let cursor = model
                .models
                .presets
                .iter()
                .position(|p| p.name == model.models.effective_preset())
                .unwrap_or(0);
            model.overlay = Some(Overlay::Presets { cursor });
        }
        KeyAction::PresetUp | KeyAction::PresetDown => {
            let step = if action == KeyAction::PresetUp { -1 } else { 1 };
            let count = model.models.presets.len();
            if let Some(Overlay::Presets { cursor }) = &mut model.overlay
                && count > 0
            {
                *cursor = (*cursor as isize + step).clamp(0, count as isize - 1) as usize;
            }
        }
        KeyAction::UsePreset => {
            if let Some(Overlay::Presets { cursor }) = model.overlay
                && let Some(name) = model.models.presets.get(cursor).map(|p| p.name.clone())
            {
                model.models.pick_preset(&name);
                model.overlay = None;
                model.toast(
                    format!("the next runs use the {} preset", sanitize_line(&name)),
                    ToastLevel::Info,
                );
            }
        }
        KeyAction::ClosePresets => model.overlay = None,
        KeyAction::OpenPaused => {
            if !reviewing::open(model) {
                open_paused(model);
            }
        }
        KeyAction::RaiseOrResume => raise_or_resume(model, actions),
        KeyAction::SynthesizeNow => decide_paused(model, actions, RunCommand::SynthesizeNow),
        KeyAction::CancelPaused => decide_paused(model, actions, RunCommand::CancelRun),
        KeyAction::ClosePaused => model.overlay = None,
        KeyAction::NextParagraph => crate::tui::provenance::step(model, 1),
        KeyAction::PreviousParagraph => crate::tui::provenance::step(model, -1),
        KeyAction::ParagraphSources => crate::tui::sources::open(model, true),
        KeyAction::LeaveParagraphs => crate::tui::provenance::leave(model),
        KeyAction::OpenSources => crate::tui::sources::open(model, false),
        KeyAction::SourceUp => crate::tui::sources::move_cursor(model, -1),
        KeyAction::SourceDown => crate::tui::sources::move_cursor(model, 1),
        KeyAction::ReadSource => crate::tui::sources::read(model, actions),
        KeyAction::CloseSources => model.overlay = None,
        KeyAction::ReaderUp => reader(model, ReaderMove::Lines(-1)),
        KeyAction::ReaderDown => reader(model, ReaderMove::Lines(1)),
        KeyAction::ReaderPageUp => reader(model, ReaderMove::Pages(-1)),
        KeyAction::ReaderPageDown => reader(model, ReaderMove::Pages(1)),
        KeyAction::ReaderTop => reader(model, ReaderMove::Top),
        KeyAction::ReaderBottom => reader(model, ReaderMove::Bottom),
        KeyAction::CloseReader => crate::tui::sources::back(model),
        KeyAction::ToggleReview => {
            let on = !model.models.review_on();
            model.models.pick_review(on);
            let text = if on {
                "review on: the next runs wait after planning for their plan to be approved"
            } else {
                "review off: the next runs go on as soon as they are planned"
            };
            model.toast(text.into(), ToastLevel::Info);
        }
        KeyAction::ReviewUp
        | KeyAction::ReviewDown
        | KeyAction::ReviewEdit
        | KeyAction::ReviewAdd
        | KeyAction::ReviewDelete
        | KeyAction::ApprovePlan
        | KeyAction::CancelReview
        | KeyAction::FormNextField
        | KeyAction::FormPreviousField
        | KeyAction::FormSave
        | KeyAction::FormNewLine
        | KeyAction::FormSuggest
        | KeyAction::FormBack => reviewing::perform(model, action, key, actions),
    }
}

// ---- a paused run ----------------------------------------------------------------------------

/// Why run `view` waits for a decision, if it does.
fn pause_of(report: &RunReport) -> Option<PauseWhy> {
    if report.status.is_some() {
        return None;
    }
    if let Some(message) = &report.provider_paused {
        return Some(PauseWhy::Provider(message.clone()));
    }
    let waiting = report
        .subtasks
        .iter()
        .any(|s| matches!(s.status, SubtaskStatus::Pending | SubtaskStatus::Retrying));
    report
        .budget_reached
        .clone()
        .filter(|_| waiting)
        .map(PauseWhy::Budget)
}

/// The dialog of `run`, when it waits; a pop-up already open is left alone (a toast says how
/// to get to the dialog instead).
fn show_paused(model: &mut Model, run: RunId) {
    let Some(why) = model.run(run).and_then(|v| pause_of(&v.report)) else {
        return;
    };
    if model.overlay.is_some() {
        let what = match &why {
            PauseWhy::Budget(reason) => reason.to_string(),
            PauseWhy::Provider(message) => message.clone(),
        };
        model.toast(
            format!("{}; P to decide", sanitize_line(&what)),
            ToastLevel::Warning,
        );
        return;
    }
    let raise = why.suggested_raise();
    model.overlay = Some(Overlay::Paused { run, why, raise });
}

fn open_paused(model: &mut Model) {
    match model.current_run().and_then(|v| v.id()) {
        Some(run) if model.run(run).and_then(|v| pause_of(&v.report)).is_some() => {
            show_paused(model, run);
        }
        _ => model.toast("this run is not waiting".into(), ToastLevel::Info),
    }
}

fn type_raise(raise: &mut String, key: KeyEvent) {
    match key.code {
        KeyCode::Char(c)
            if c.is_ascii_alphanumeric()
                && !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
                && raise.len() < 16 =>
        {
            raise.push(c)
        }
        KeyCode::Backspace => {
            raise.pop();
        }
        _ => {}
    }
}

/// The raise typed, as `RaiseBudget` takes it: tokens (`50000`, `50k`) for a token budget,
/// a time (`90s`, `5m`, `1h`) for a deadline.
fn parse_raise(reason: &crate::protocol::BudgetReason, text: &str) -> Option<RunCommand> {
    use crate::protocol::BudgetReason;
    let text = text.trim().to_ascii_lowercase();
    match reason {
        BudgetReason::Tokens { .. } => {
            let (number, scale) = match text.strip_suffix('k') {
                Some(n) => (n, 1000),
                None => (text.as_str(), 1),
            };
            let tokens = number.parse::<u64>().ok()?.checked_mul(scale)?;
            (tokens > 0).then_some(RunCommand::RaiseBudget {
                tokens: Some(tokens),
                time_ms: None,
                cost_micros: None,
            })
        }
        BudgetReason::Deadline { .. } => {
            let time = crate::display::parse_age(&text).filter(|t| !t.is_zero())?;
            Some(RunCommand::RaiseBudget {
                tokens: None,
                time_ms: Some(time.as_millis().min(u64::MAX as u128) as u64),
                cost_micros: None,
            })
        }
        // Dollars: `0.5`, `$0.50`.
        BudgetReason::Cost { .. } => {
            let usd = text.trim_start_matches('$').trim().parse::<f64>().ok()?;
            let micros = crate::engine::budget::micros(usd);
            (usd.is_finite() && micros > 0).then_some(RunCommand::RaiseBudget {
                tokens: None,
                time_ms: None,
                cost_micros: Some(micros),
            })
        }
    }
}

fn raise_or_resume(model: &mut Model, actions: &mut Vec<Action>) {
    let Some(Overlay::Paused { run, why, raise }) = &model.overlay else {
        return;
    };
    let run = *run;
    let command = match why {
        PauseWhy::Provider(_) => RunCommand::ResumeProvider,
        PauseWhy::Budget(reason) => match parse_raise(reason, raise) {
            Some(command) => command,
            None => {
                let hint = match reason {
                    crate::protocol::BudgetReason::Tokens { .. } => {
                        "a number of tokens (50000, 50k)"
                    }
                    crate::protocol::BudgetReason::Deadline { .. } => "a time (90s, 5m, 1h)",
                    crate::protocol::BudgetReason::Cost { .. } => "dollars (0.50)",
                };
                model.toast(
                    format!("type {hint} to raise the budget by"),
                    ToastLevel::Info,
                );
                return;
            }
        },
    };
    model.overlay = None;
    actions.push(Action::Send(Command::Run { id: run, command }));
}

fn decide_paused(model: &mut Model, actions: &mut Vec<Action>, command: RunCommand) {
    let Some(Overlay::Paused { run, .. }) = &model.overlay else {
        return;
    };
    let run = *run;
    model.overlay = None;
    actions.push(Action::Send(Command::Run { id: run, command }));
}

// ---- history and saved runs ------------------------------------------------------------------

/// Open the history pop-up and ask for the saved runs again (the session's own runs are saved
/// as they happen, so they are there at once). The last search is kept.
fn open_history(model: &mut Model, actions: &mut Vec<Action>) {
    let search = match &model.saved_runs {
        SavedList::Loading(s) | SavedList::Ready(s, _) => s.clone(),
        SavedList::NotAsked | SavedList::Failed(_) => String::new(),
    };
    model.saved_runs = SavedList::Loading(search.clone());
    model.overlay = Some(Overlay::History {
        search: search.clone(),
        cursor: 0,
    });
    actions.push(Action::ListHistory { search });
}

fn history_listed(model: &mut Model, search: String, result: Result<Vec<RunSummary>, String>) {
    // An answer to a search typed over since is not what the pop-up shows.
    let current = match &model.overlay {
        Some(Overlay::History { search, .. }) => Some(search.as_str()),
        _ => None,
    };
    if current.is_some_and(|c| c != search) {
        return;
    }
    model.saved_runs = match result {
        Ok(runs) => SavedList::Ready(search, runs),
        Err(why) => SavedList::Failed(why),
    };
    if let Some(Overlay::History { cursor, .. }) = &mut model.overlay {
        *cursor = (*cursor).min(saved_listed(&model.saved_runs).len().saturating_sub(1));
    }
}

/// The runs the pop-up lists now.
pub fn saved_listed(list: &SavedList) -> &[RunSummary] {
    match list {
        SavedList::Ready(_, runs) => runs,
        SavedList::NotAsked | SavedList::Loading(_) | SavedList::Failed(_) => &[],
    }
}

/// A printable key typed in the history pop-up: it goes into the search (Backspace takes
/// the last character out), and the list is asked for again.
fn type_search(model: &mut Model, key: KeyEvent, actions: &mut Vec<Action>) {
    let Some(Overlay::History { search, .. }) = &model.overlay else {
        return;
    };
    let mut search = search.clone();
    match key.code {
        KeyCode::Char(c)
            if !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
        {
            search.push(c)
        }
        KeyCode::Backspace => {
            search.pop();
        }
        _ => return,
    }
    set_search(model, search, actions);
}

fn set_search(model: &mut Model, search: String, actions: &mut Vec<Action>) {
    if let Some(Overlay::History { search: s, cursor }) = &mut model.overlay {
        if *s == search {
            return;
        }
        *s = search.clone();
        *cursor = 0;
        model.saved_runs = SavedList::Loading(search.clone());
        actions.push(Action::ListHistory { search });
    }
}

fn move_history_cursor(model: &mut Model, step: isize) {
    let count = saved_listed(&model.saved_runs).len();
    if let Some(Overlay::History { cursor, .. }) = &mut model.overlay
        && count > 0
    {
        *cursor = (*cursor as isize)
            .saturating_add(step)
            .clamp(0, count as isize - 1) as usize;
    }
}

/// Rows a page moves in the history pop-up: about what it shows.
fn history_page(model: &Model) -> isize {
    (model.size.1 as isize - 8).max(1)
}

/// Open the highlighted run: one the dashboard has (this session's, or opened before) is
/// selected at once; others are read from the store.
fn open_saved(model: &mut Model, actions: &mut Vec<Action>) {
    let Some(Overlay::History { cursor, .. }) = model.overlay else {
        return;
    };
    let Some(id) = saved_listed(&model.saved_runs).get(cursor).map(|r| r.id) else {
        return;
    };
    model.overlay = None;
    model.focus = Focus::Tree;
    if model.run(id).is_some() {
        if let Some(view) = model.runs.iter_mut().find(|v| v.id() == Some(id)) {
            view.expanded = true;
        }
        select(model, Some(Node::Run(id)));
    } else {
        actions.push(Action::OpenSaved(id));
    }
}

/// What a key asks of a saved run being resumed.
#[derive(Clone, Copy)]
enum ResumeFor {
    Retry,
    RetryFailed,
    Resynthesize,
}

/// When the current run is a saved one the engine does not have, resume it with what the key
/// asks, and say the key was dealt with. Resuming runs again every subtask without a result
/// (then a new synthesis), so the key's own command follows only where it asks for more: a
/// re-run of a subtask that has a result, a new synthesis when nothing is left to run.
fn resume_selected(model: &mut Model, actions: &mut Vec<Action>, what: ResumeFor) -> bool {
    let Some(view) = model.current_run() else {
        return false;
    };
    let (Some(id), Some(saved)) = (view.id(), &view.saved) else {
        return false;
    };
    if saved.status == SavedRunStatus::Running {
        model.toast(
            "another maestro is running this run; open it again when it ends".into(),
            ToastLevel::Info,
        );
        return true;
    }
    let all_done = !view.report.subtasks.is_empty()
        && view
            .report
            .subtasks
            .iter()
            .all(|s| s.status == SubtaskStatus::Succeeded);
    let planned = view.report.plan.is_some();
    let (asked, then) = match what {
        ResumeFor::Retry => match model.selected_subtask() {
            Some((_, s)) => (
                Some(RunCommand::RetrySubtask(s.id.clone())),
                s.status == SubtaskStatus::Succeeded,
            ),
            // On the run's row: resume it (planned again when it has no plan).
            None => ((!planned).then_some(RunCommand::Replan), false),
        },
        ResumeFor::RetryFailed => (Some(RunCommand::RetryFailed), false),
        ResumeFor::Resynthesize => (Some(RunCommand::Resynthesize), all_done),
    };
    resume(model, id, asked, then, actions);
    true
}

/// Make the saved run `id` live and ask the app to resume it.
fn resume(
    model: &mut Model,
    id: RunId,
    asked: Option<RunCommand>,
    then: bool,
    actions: &mut Vec<Action>,
) {
    let query = model
        .run(id)
        .map(|v| v.report.query.clone())
        .unwrap_or_default();
    let Some(mut saved) = model.take_saved(id) else {
        return;
    };
    // An edit goes into the plan the run resumes from: the subtask then runs once, with the
    // new text (an edit sent after the resume would cancel the call it had started). The
    // resumed plan is saved again, so the edit is on record with it.
    let mut then = then;
    if let (
        Some(RunCommand::EditSubtask {
            id: subtask,
            description,
            worker,
        }),
        Some(input),
    ) = (&asked, saved.resume.as_mut())
    {
        if let Some(planned) = input.plan.subtasks.iter_mut().find(|p| p.id == *subtask) {
            if let Some(d) = description {
                planned.description = d.clone();
            }
            if let Some(w) = worker {
                planned.worker = w.clone();
            }
        }
        if let Some(done) = input.subtasks.iter_mut().find(|s| s.id == *subtask) {
            done.result = None;
        }
        then = false;
    }
    model.show_diff = false;
    model.synthesis_scroll = Scroll::default();
    actions.push(Action::Resume {
        id,
        query,
        saved: saved.resume,
        asked,
        then,
    });
}

/// Show the diff of the current run's report against its previous version, or the report.
fn toggle_diff(model: &mut Model) {
    if model.show_diff {
        model.show_diff = false;
    } else if model.current_run().is_some_and(|v| {
        v.previous_synthesis.is_some() && !v.report.synthesizing && !v.report.synthesis.is_empty()
    }) {
        model.show_diff = true;
    } else {
        model.toast(
            "no earlier version of this report to compare with yet".into(),
            ToastLevel::Info,
        );
        return;
    }
    model.synthesis_scroll = Scroll::default();
}

// ---- the model picker ------------------------------------------------------------------------

/// Open the picker on the planner; ask for the list unless it is already here or coming (a
/// failed list is asked for again, so closing and reopening retries).
fn open_models(model: &mut Model, actions: &mut Vec<Action>) {
    if matches!(
        model.models.list,
        ModelList::NotAsked | ModelList::Failed(_)
    ) {
        model.models.list = ModelList::Loading;
        actions.push(Action::ListModels);
    }
    let role = PickRole::Planner;
    model.overlay = Some(Overlay::Models {
        role,
        cursor: model_cursor(model, role),
    });
}

fn models_listed(model: &mut Model, result: Result<Vec<String>, String>) {
    model.models.list = match result {
        Ok(ids) => ModelList::Ready(ids),
        Err(why) => ModelList::Failed(why),
    };
    if let Some(Overlay::Models { role, .. }) = model.overlay {
        model.overlay = Some(Overlay::Models {
            role,
            cursor: model_cursor(model, role),
        });
    }
}

fn listed(model: &Model) -> &[String] {
    match &model.models.list {
        ModelList::Ready(ids) => ids,
        ModelList::NotAsked | ModelList::Loading | ModelList::Failed(_) => &[],
    }
}

/// Where the cursor starts for `role`: on the model it uses now, when the list has it.
fn model_cursor(model: &Model, role: PickRole) -> usize {
    let current = model.models.effective(role);
    listed(model)
        .iter()
        .position(|id| id == current)
        .unwrap_or(0)
}

fn move_model_cursor(model: &mut Model, step: isize) {
    let count = listed(model).len();
    if let Some(Overlay::Models { cursor, .. }) = &mut model.overlay
        && count > 0
    {
        *cursor = (*cursor as isize + step).clamp(0, count as isize - 1) as usize;
    }
}

fn step_model_role(model: &mut Model, step: isize) {
    if let Some(Overlay::Models { role, .. }) = model.overlay {
        let role = role.step(step);
        model.overlay = Some(Overlay::Models {
            role,
            cursor: model_cursor(model, role),
        });
    }
}

fn use_model(model: &mut Model) {
    let Some(Overlay::Models { role, cursor }) = model.overlay else {
        return;
    };
    let Some(id) = listed(model).get(cursor).cloned() else {
        return;
    };
    model.models.pick(role, Some(id));
}

fn cycle_focus(model: &mut Model, step: isize) {
    let order: Vec<Focus> = Focus::ORDER
        .into_iter()
        .filter(|f| *f != Focus::Detail || model.detail_open)
        .collect();
    let at = order.iter().position(|f| *f == model.focus).unwrap_or(0) as isize;
    let next = (at + step).rem_euclid(order.len() as isize) as usize;
    model.focus = order[next];
}

fn submit(model: &mut Model, actions: &mut Vec<Action>) {
    let text = model.query.lines().join("\n").trim().to_owned();
    if text.is_empty() {
        model.toast("type a question first".into(), ToastLevel::Info);
        return;
    }
    if model.history.last() != Some(&text) {
        model.history.push(text.clone());
    }
    model.history_pos = None;
    // `@path`s are read by the app; the query stays in the box until they are.
    let references = match crate::context::references(&text) {
        Ok(found) => !found.is_empty(),
        Err(e) => {
            model.toast(e.to_string(), ToastLevel::Error);
            return;
        }
    };
    if !references {
        model.reset_query();
        // Focus the tree so r, e, x act at once; Tab (or /) comes back for the next question.
        model.focus = Focus::Tree;
    }
    // The context is the parent's report as it stands: plain data, built here without I/O.
    let parent = model.follow_up.take();
    let follow_up = parent
        .and_then(|parent| model.run(parent))
        .and_then(|view| view.report.follow_up())
        .map(Box::new);
    if parent.is_some() && follow_up.is_none() {
        // It was re-run since `f`: a run in progress has no settled report to build on.
        model.toast(
            "that run is going again; asked as a question of its own".into(),
            ToastLevel::Warning,
        );
    }
    let models = model.models.picked.clone();
    if references {
        actions.push(Action::ReadContext {
            query: text,
            models,
            follow_up,
        });
    } else {
        actions.push(Action::StartRun {
            query: text,
            models,
            follow_up,
            context: Attachments::default(),
        });
    }
}

/// The files of a submitted query were read: start its run, or say what is wrong and leave
/// the query in the box to be fixed.
fn context_read(
    model: &mut Model,
    actions: &mut Vec<Action>,
    query: String,
    models: ModelOverrides,
    follow_up: Option<Box<FollowUp>>,
    result: Result<Attachments, String>,
) {
    match result {
        Ok(context) => {
            // Typed over meanwhile: that text is someone's next question, not this one.
            if model.query.lines().join("\n").trim() == query {
                model.reset_query();
                model.focus = Focus::Tree;
            }
            actions.push(Action::StartRun {
                query,
                models,
                follow_up,
                context,
            });
        }
        Err(why) => {
            if model.follow_up.is_none() {
                model.follow_up = follow_up.map(|f| f.parent);
            }
            model.focus = Focus::Query;
            model.toast(why, ToastLevel::Error);
        }
    }
}

/// Ask the next question as a follow-up to the current run (it must have finished), or, when
/// already asking one, as a question of its own again.
fn toggle_follow_up(model: &mut Model) {
    if model.follow_up.take().is_some() {
        model.toast(
            "the next question is one of its own".into(),
            ToastLevel::Info,
        );
        return;
    }
    let Some(view) = model.current_run() else {
        model.toast("no run to follow up on yet".into(), ToastLevel::Info);
        return;
    };
    if view.is_active() {
        model.toast(
            "a run can be followed up once it has finished".into(),
            ToastLevel::Info,
        );
        return;
    }
    model.follow_up = view.id();
    model.focus = Focus::Query;
}

/// Step through the session's earlier queries; past the newest, the draft comes back.
fn recall(model: &mut Model, step: isize) {
    if model.history.is_empty() {
        return;
    }
    let current = model.query.lines().join("\n");
    let next = match (&model.history_pos, step < 0) {
        (None, true) => Some((model.history.len() - 1, current)),
        (None, false) => return,
        (Some((i, draft)), true) => Some((i.saturating_sub(1), draft.clone())),
        (Some((i, draft)), false) if i + 1 < model.history.len() => Some((i + 1, draft.clone())),
        (Some((_, draft)), false) => {
            let draft = draft.clone();
            set_query(model, &draft);
            model.history_pos = None;
            return;
        }
    };
    if let Some((i, draft)) = next {
        let text = model.history[i].clone();
        set_query(model, &text);
        model.history_pos = Some((i, draft));
    }
}

fn set_query(model: &mut Model, text: &str) {
    model.reset_query();
    model.query.insert_str(text);
    model.query.move_cursor(CursorMove::Bottom);
    model.query.move_cursor(CursorMove::End);
}

/// Scroll the focused detail or synthesis pane by what `lines` makes of its page height.
fn scroll_focused(model: &mut Model, lines: impl Fn(isize) -> isize) {
    let Some((total, height)) = content::extent(model, model.focus) else {
        return;
    };
    let page = height.saturating_sub(1).max(1) as isize;
    let (scroll, live) = pane_scroll(model, model.focus);
    scroll.scroll(lines(page), total, height, live);
}

/// The scroll position of the detail or synthesis pane, and whether its text is streaming.
fn pane_scroll(model: &mut Model, pane: Focus) -> (&mut Scroll, bool) {
    if pane == Focus::Detail {
        let live = model.detail_live();
        (&mut model.detail_scroll, live)
    } else {
        let live = model.synthesis_live();
        (&mut model.synthesis_scroll, live)
    }
}

fn on_overlay_key(model: &mut Model, key: KeyEvent, actions: &mut Vec<Action>) {
    match model.overlay.take() {
        Some(Overlay::Help { scroll }) => {
            // Movement keys scroll a help taller than the screen; any other key closes it.
            let step: isize = match key.code {
                KeyCode::Down | KeyCode::Char('j') => 1,
                KeyCode::Up | KeyCode::Char('k') => -1,
                KeyCode::PageDown | KeyCode::Char(' ') => 10,
                KeyCode::PageUp => -10,
                _ => return,
            };
            let max = content::help_max_scroll(model);
            let scroll = (scroll as isize + step).clamp(0, max as isize) as usize;
            model.overlay = Some(Overlay::Help { scroll });
        }
        Some(Overlay::Stats { scroll }) => {
            // Like the help: movement keys scroll, any other key closes.
            let step: isize = match key.code {
                KeyCode::Down | KeyCode::Char('j') => 1,
                KeyCode::Up | KeyCode::Char('k') => -1,
                KeyCode::PageDown | KeyCode::Char(' ') => 10,
                KeyCode::PageUp => -10,
                _ => return,
            };
            let max = content::stats_lines(model).len().saturating_sub(1);
            let scroll = (scroll as isize + step).clamp(0, max as isize) as usize;
            model.overlay = Some(Overlay::Stats { scroll });
        }
        Some(Overlay::ConfirmQuit) => match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => quit(model, actions),
            KeyCode::Char('q') => quit(model, actions),
            _ => {}
        },
        // Their keys are in the key map.
        Some(
            overlay @ (Overlay::Edit { .. }
            | Overlay::Models { .. }
            | Overlay::History { .. }
            | Overlay::Presets { .. }
            | Overlay::Paused { .. }
            | Overlay::Sources { .. }
            | Overlay::Reader { .. }
            | Overlay::Review { .. }),
        ) => model.overlay = Some(overlay),
        None => {}
    }
}

fn save_edit(model: &mut Model, actions: &mut Vec<Action>) {
    let Some(Overlay::Edit {
        run,
        subtask,
        text,
        role,
    }) = &model.overlay
    else {
        return;
    };
    let description = text.lines().join("\n").trim().to_owned();
    if description.is_empty() {
        model.toast("the description is empty".into(), ToastLevel::Warning);
        return;
    }
    let run = *run;
    let command = RunCommand::EditSubtask {
        id: subtask.clone(),
        description: Some(description),
        worker: model.edit_roles(run, subtask).get(*role).cloned(),
    };
    model.overlay = None;
    if model.run(run).is_some_and(|v| v.saved.is_some()) {
        resume(model, run, Some(command), true, actions);
    } else {
        actions.push(Action::Send(Command::Run { id: run, command }));
    }
}

fn cycle_role(model: &mut Model, step: isize) {
    let count = match &model.overlay {
        Some(Overlay::Edit { run, subtask, .. }) => model.edit_roles(*run, subtask).len() as isize,
        _ => 0,
    };
    if let (Some(Overlay::Edit { role, .. }), true) = (&mut model.overlay, count > 0) {
        *role = (*role as isize + step).rem_euclid(count) as usize;
    }
}

fn ask_to_quit(model: &mut Model, actions: &mut Vec<Action>) {
    if model.any_active() {
        model.overlay = Some(Overlay::ConfirmQuit);
    } else {
        quit(model, actions);
    }
}

/// Cancel what runs, then leave.
fn quit(model: &mut Model, actions: &mut Vec<Action>) {
    for view in &model.runs {
        if let (true, Some(id)) = (view.is_active(), view.id()) {
            actions.push(Action::Send(Command::Run {
                id,
                command: RunCommand::CancelRun,
            }));
        }
    }
    model.overlay = None;
    model.quit = true;
    actions.push(Action::Quit);
}

// ---- acting on the selection -----------------------------------------------------------------

fn steer_selected(
    model: &mut Model,
    actions: &mut Vec<Action>,
    command: fn(crate::protocol::SubtaskId) -> RunCommand,
) {
    if drafted_selected(model) {
        return;
    }
    match &model.selected {
        Some(Node::Subtask(run, id)) => actions.push(Action::Send(Command::Run {
            id: *run,
            command: command(id.clone()),
        })),
        _ => model.toast("select a subtask first (↑/↓)".into(), ToastLevel::Info),
    }
}

/// Stop the tool calls of the selected subtask, when it is waiting on one.
fn cancel_tools(model: &mut Model, actions: &mut Vec<Action>) {
    let target = match &model.selected {
        Some(Node::Subtask(run, id)) => model
            .selected_subtask()
            .and_then(|(_, s)| s.current_tool())
            .map(|_| (*run, id.clone())),
        _ => None,
    };
    match target {
        Some((id, subtask)) => actions.push(Action::Send(Command::CancelTools { id, subtask })),
        None => model.toast(
            "the selected subtask is not waiting on a tool".into(),
            ToastLevel::Info,
        ),
    }
}

fn steer_run(model: &mut Model, actions: &mut Vec<Action>, command: RunCommand) {
    match model.current_run().and_then(|r| r.id()) {
        Some(id) => actions.push(Action::Send(Command::Run { id, command })),
        None => model.toast("no run yet: ask a question first".into(), ToastLevel::Info),
    }
}

/// The selection is a subtask read from a plan still streaming: nothing can be done to it yet
/// (the engine has no such subtask), so say so instead of sending a command it would refuse.
fn drafted_selected(model: &mut Model) -> bool {
    let drafted = model.selected_subtask().is_some_and(|(_, s)| s.drafted);
    if drafted {
        model.toast(
            "this subtask is planned, not checked yet: wait for the plan".into(),
            ToastLevel::Info,
        );
    }
    drafted
}

fn open_editor(model: &mut Model) {
    if drafted_selected(model) {
        return;
    }
    let Some((view, subtask)) = model.selected_subtask() else {
        model.toast("select a subtask to edit".into(), ToastLevel::Info);
        return;
    };
    let Some(run) = view.id() else { return };
    // The description came from a model: what the editor shows (and sends back) is clean.
    let description = crate::sanitize::sanitize(&subtask.description).into_owned();
    let mut text = TextArea::new(description.lines().map(str::to_owned).collect());
    text.set_wrap_mode(ratatui_textarea::WrapMode::WordOrGlyph);
    text.move_cursor(CursorMove::Bottom);
    text.move_cursor(CursorMove::End);
    text.set_cursor_line_style(ratatui::style::Style::new());
    let role = model
        .edit_roles(run, &subtask.id)
        .iter()
        .position(|r| r.eq_ignore_ascii_case(&subtask.worker))
        .unwrap_or(0);
    model.overlay = Some(Overlay::Edit {
        run,
        subtask: subtask.id.clone(),
        text: Box::new(text),
        role,
    });
}

fn copy_synthesis(model: &mut Model, actions: &mut Vec<Action>) {
    let text = model
        .current_run()
        .map(|r| r.report.synthesis.clone())
        .unwrap_or_default();
    if text.trim().is_empty() {
        model.toast("no synthesis to copy yet".into(), ToastLevel::Info);
    } else {
        actions.push(Action::Copy(text));
        model.toast(
            "synthesis copied to the clipboard (OSC 52)".into(),
            ToastLevel::Info,
        );
    }
}

fn write_report(model: &mut Model, actions: &mut Vec<Action>) {
    let Some(view) = model.current_run() else {
        model.toast("no run to write yet".into(), ToastLevel::Info);
        return;
    };
    let path = PathBuf::from(report_file_name(view.number, &view.report.query));
    actions.push(Action::Write {
        path,
        text: view.report.to_markdown(),
    });
}

/// `maestro-2-ev-adoption-in-cities.md`
pub fn report_file_name(number: usize, query: &str) -> String {
    let slug: String = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(6)
        .collect::<Vec<_>>()
        .join("-")
        .to_lowercase();
    if slug.is_empty() {
        format!("maestro-{number}.md")
    } else {
        format!("maestro-{number}-{slug}.md")
    }
}

// ---- selection and the tree ------------------------------------------------------------------

fn select(model: &mut Model, node: Option<Node>) {
    if model.selected != node {
        model.selected = node;
        model.detail_scroll = Scroll::default();
        model.synthesis_scroll = Scroll::default();
    }
    keep_selection_visible(model);
}

fn move_selection(model: &mut Model, delta: isize) {
    let rows = if model.timeline {
        crate::tui::timeline::rows(model)
    } else {
        model.rows()
    };
    if rows.is_empty() {
        return;
    }
    let at = model
        .selected
        .as_ref()
        .and_then(|s| rows.iter().position(|r| r == s))
        .unwrap_or(0) as isize;
    let next = (at.saturating_add(delta)).clamp(0, rows.len() as isize - 1) as usize;
    // Moving between subtasks of the same run keeps the synthesis where the user left it.
    let same_run = model.selected.as_ref().map(Node::run) == Some(rows[next].run());
    let keep = model.synthesis_scroll;
    select(model, Some(rows[next].clone()));
    if same_run {
        model.synthesis_scroll = keep;
    }
}

fn set_expanded(model: &mut Model, run: RunId, open: bool) {
    if let Some(view) = model.runs.iter_mut().find(|r| r.id() == Some(run)) {
        view.expanded = open;
    }
    if !open {
        select(model, Some(Node::Run(run)));
    }
    keep_selection_visible(model);
}

/// Rows a page up or down moves in the tree.
fn tree_page(model: &Model) -> isize {
    tree_height(model).max(1) as isize
}

fn tree_height(model: &Model) -> usize {
    inner(areas(model).tree).height as usize
}

/// Scroll the tree so the selected row is on screen.
pub fn keep_selection_visible(model: &mut Model) {
    if layout::too_small(model.size) {
        return;
    }
    let height = tree_height(model).max(1);
    let rows = model.rows();
    let Some(at) = model
        .selected
        .as_ref()
        .and_then(|s| rows.iter().position(|r| r == s))
    else {
        model.tree_offset = model.tree_offset.min(rows.len().saturating_sub(height));
        return;
    };
    if at < model.tree_offset {
        model.tree_offset = at;
    } else if at >= model.tree_offset + height {
        model.tree_offset = at + 1 - height;
    }
    model.tree_offset = model.tree_offset.min(rows.len().saturating_sub(height));
}

// ---- paste and mouse -------------------------------------------------------------------------

fn on_paste(model: &mut Model, text: &str, actions: &mut Vec<Action>) {
    // A paste is text, never commands: its newlines must not submit, and its escape
    // sequences must not reach the screen.
    let clean =
        crate::sanitize::sanitize(&text.replace("\r\n", "\n").replace('\r', "\n")).into_owned();
    match &mut model.overlay {
        Some(Overlay::Edit { text: area, .. }) => {
            area.insert_str(&clean);
        }
        // Into the search, on one line.
        Some(Overlay::Review { .. }) => reviewing::paste(model, &clean),
        Some(Overlay::History { search, .. }) => {
            let joined = clean.split_whitespace().collect::<Vec<_>>().join(" ");
            let search = format!("{search}{joined}");
            set_search(model, search, actions);
        }
        Some(_) => {}
        None => {
            model.focus = Focus::Query;
            model.query.insert_str(&clean);
        }
    }
}

fn on_mouse(model: &mut Model, mouse: MouseEvent) {
    if model.overlay.is_some() || layout::too_small(model.size) {
        return;
    }
    let areas = areas(model);
    let Some(pane) = areas.pane_at(mouse.column, mouse.row) else {
        return;
    };
    match mouse.kind {
        MouseEventKind::Down(MouseButton::Left) => {
            model.focus = pane;
            if pane == Focus::Tree {
                let tree = inner(areas.tree);
                if mouse.row >= tree.y && mouse.row < tree.y + tree.height {
                    let line = (mouse.row - tree.y) as usize;
                    let node = if model.timeline {
                        crate::tui::timeline::node_at(model, line)
                    } else {
                        model.rows().get(model.tree_offset + line).cloned()
                    };
                    if let Some(node) = node {
                        select(model, Some(node));
                    }
                }
            }
        }
        MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
            let delta = if mouse.kind == MouseEventKind::ScrollUp {
                -3
            } else {
                3
            };
            match pane {
                Focus::Tree => move_selection(model, delta),
                Focus::Detail | Focus::Synthesis => {
                    if let Some((total, height)) = content::extent(model, pane) {
                        let (scroll, live) = pane_scroll(model, pane);
                        scroll.scroll(delta, total, height, live);
                    }
                }
                Focus::Query => {}
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod raise_tests {
    use super::*;
    use crate::protocol::BudgetReason;

    #[test]
    fn a_cost_limit_is_raised_by_dollars_typed_with_or_without_a_sign() {
        let cost = BudgetReason::Cost {
            spent_micros: 15_000,
            max_micros: 10_000,
        };
        let raise = |text: &str| match parse_raise(&cost, text) {
            Some(RunCommand::RaiseBudget {
                tokens: None,
                time_ms: None,
                cost_micros,
            }) => cost_micros,
            _ => None,
        };
        assert_eq!(raise("0.50"), Some(500_000));
        assert_eq!(raise(" $1.25 "), Some(1_250_000));
        assert_eq!(raise("0"), None);
        assert_eq!(raise("-1"), None);
        assert_eq!(raise("5m"), None);
        assert_eq!(raise("inf"), None);
    }
}
