//! The dashboard's keys, in one table: where a key works (its context), what it does (a
//! `KeyAction`) and how the help describes it. `update` finds a key's action here, and the help
//! overlay is generated from the same table, so a key added here is handled and documented at
//! once.
//!
//! Data and lookup only: what an action does to the model is `update`'s business, and how the
//! help is laid out is `content`'s. The help and quit pop-ups keep their own rule (any key
//! closes / stays), which their own hints state.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Where a key works. The order here is the help's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Everywhere, over pop-ups too.
    Always,
    /// Everywhere while no pop-up is open, the query box included.
    Anywhere,
    /// The query box has focus.
    Query,
    /// Any pane but the query box has focus.
    Panes,
    /// The subtask tree has focus.
    Tree,
    /// The detail or synthesis pane has focus.
    Reading,
    /// The pop-up editing a subtask is open.
    Edit,
    /// The pop-up picking the next run's models is open.
    Models,
    /// The history pop-up is open (other keys type the search).
    History,
    /// The pop-up picking the next run's preset is open.
    Presets,
    /// A paused run's dialog is open (budget reached, provider paused; other keys type the
    /// amount to raise the budget by).
    Paused,
    /// A paragraph of the report is selected (n / N), outside the query box.
    Paragraphs,
    /// The sources pop-up is open.
    Sources,
    /// A source's retrieved text is open.
    Reader,
    /// A plan review is open (a run paused after planning).
    Review,
    /// The form editing or adding a subtask of a reviewed plan is open (other keys type).
    ReviewForm,
}

impl Context {
    /// The heading the help puts over this context's keys (neighbours with one heading share it).
    pub fn heading(self) -> &'static str {
        match self {
            Context::Always | Context::Anywhere => "Anywhere",
            Context::Query => "Query",
            Context::Panes => "Outside the query box",
            Context::Tree => "Subtasks",
            Context::Reading => "Detail and synthesis",
            Context::Edit => "Editing a subtask (e)",
            Context::Models => "Picking models (m)",
            Context::History => "History (H; type to search)",
            Context::Presets => "Picking the preset (p)",
            Context::Paused => "A paused run (P; type the amount to raise the budget by)",
            Context::Paragraphs => "Reading the report by paragraph (n)",
            Context::Sources => "Sources (o)",
            Context::Reader => "A source's text (Enter in the sources)",
            Context::Review => "Reviewing a plan (runs started with review on; P reopens)",
            Context::ReviewForm => "A subtask of a reviewed plan (e, a; other keys type)",
        }
    }
}

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    /// Quit, asking first while a run is active; confirms when already asked.
    Quit,
    NextPane,
    PreviousPane,
    Help,
    Submit,
    NewLine,
    /// An earlier query, when the cursor is on the first line (else the cursor moves up).
    OlderQuery,
    /// A later query (then the draft), when the cursor is on the last line.
    NewerQuery,
    ClearQuery,
    ToTree,
    ToQuery,
    RetrySubtask,
    RetryFailed,
    EditSubtask,
    CancelSubtask,
    CancelRun,
    Resynthesize,
    CopySynthesis,
    WriteReport,
    /// Show or hide the model's reasoning in the detail pane.
    ToggleReasoning,
    /// Ask the next question as a follow-up to the selected finished run, or not.
    ToggleFollowUp,
    SelectUp,
    SelectDown,
    SelectPageUp,
    SelectPageDown,
    SelectFirst,
    SelectLast,
    Collapse,
    Expand,
    Toggle,
    ScrollUp,
    ScrollDown,
    ScrollPageUp,
    ScrollPageDown,
    ScrollTop,
    ScrollBottom,
    SaveEdit,
    EditNewLine,
    NextRole,
    PreviousRole,
    CancelEdit,
    /// Open the pop-up that picks the planner, worker and synthesis models of the next run.
    PickModels,
    ModelUp,
    ModelDown,
    NextModelRole,
    PreviousModelRole,
    /// Use the highlighted model for the role being picked.
    UseModel,
    /// Back to the configured model for the role being picked.
    ConfiguredModel,
    CloseModels,
    /// Open the list of saved runs.
    OpenHistory,
    /// Show what changed in the report since its previous version, or the report again.
    ToggleDiff,
    HistoryUp,
    HistoryDown,
    HistoryPageUp,
    HistoryPageDown,
    /// Open the highlighted saved run in the panes.
    OpenSaved,
    ClearSearch,
    CloseHistory,
    /// Stop the tool calls the selected subtask is waiting on; the subtask goes on.
    CancelTools,
    /// Open the pop-up that picks the preset (team of worker roles) of the next run.
    PickPreset,
    PresetUp,
    PresetDown,
    /// Use the highlighted preset for the next runs.
    UsePreset,
    ClosePresets,
    /// Show the selected run's timeline in the tree pane, or the tree again.
    ToggleTimeline,
    /// Open the statistics of the saved runs (roles, models, errors, cost).
    OpenStats,
    /// Open the dialog of the current run while it waits (budget reached, provider paused).
    OpenPaused,
    /// Raise the budget by the typed amount, or resume a paused provider.
    RaiseOrResume,
    /// Write the report now from what succeeded, skipping what waits.
    SynthesizeNow,
    /// Cancel the paused run.
    CancelPaused,
    /// Close the dialog; the run stays paused.
    ClosePaused,
    /// Select the report's next paragraph (the first, on entering the mode).
    NextParagraph,
    /// Select the report's previous paragraph (the last, on entering the mode).
    PreviousParagraph,
    /// Open the sources the selected paragraph cites.
    ParagraphSources,
    /// Leave paragraph mode.
    LeaveParagraphs,
    /// Open the run's sources.
    OpenSources,
    SourceUp,
    SourceDown,
    /// Open the highlighted source's retrieved text.
    ReadSource,
    CloseSources,
    ReaderUp,
    ReaderDown,
    ReaderPageUp,
    ReaderPageDown,
    ReaderTop,
    ReaderBottom,
    /// Back to the sources list.
    CloseReader,
    /// Pause the next runs after planning for a review of their plan, or not.
    ToggleReview,
    ReviewUp,
    ReviewDown,
    /// Open the form on the selected subtask of the reviewed plan.
    ReviewEdit,
    /// Open the form on a new subtask.
    ReviewAdd,
    /// Delete the selected subtask (asks first when others depend on it).
    ReviewDelete,
    /// Send the reviewed plan: the run goes on with it.
    ApprovePlan,
    /// Ask whether to cancel the run under review.
    CancelReview,
    FormNextField,
    FormPreviousField,
    /// Save the form into the reviewed plan.
    FormSave,
    /// A new line in the description (on another field: the next field).
    FormNewLine,
    /// The next choice for the field: a role of the preset, a model the server lists.
    FormSuggest,
    /// Close the form without saving.
    FormBack,
}

/// A key with the modifiers that matter for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chord {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Chord {
    pub const fn key(code: KeyCode) -> Self {
        Self {
            code,
            mods: KeyModifiers::NONE,
        }
    }

    pub const fn ch(c: char) -> Self {
        Self::key(KeyCode::Char(c))
    }

    pub const fn ctrl(c: char) -> Self {
        Self {
            code: KeyCode::Char(c),
            mods: KeyModifiers::CONTROL,
        }
    }

    pub const fn alt(code: KeyCode) -> Self {
        Self {
            code,
            mods: KeyModifiers::ALT,
        }
    }

    pub const fn shift(code: KeyCode) -> Self {
        Self {
            code,
            mods: KeyModifiers::SHIFT,
        }
    }

    /// The key event this chord describes (as a terminal sends it).
    pub fn event(self) -> KeyEvent {
        let mut mods = self.mods;
        if matches!(self.code, KeyCode::Char(c) if c.is_uppercase())
            || self.code == KeyCode::BackTab
        {
            mods |= KeyModifiers::SHIFT;
        }
        KeyEvent::new(self.code, mods)
    }

    /// Whether `key` is this chord. Shift is part of a character (`R`, `?`) and of Shift+Tab,
    /// and terminals disagree on reporting it there, so it is ignored for those; other
    /// modifiers must match exactly (Alt+j is not j).
    pub fn matches(&self, key: &KeyEvent) -> bool {
        self.code == key.code
            && significant(key.code, key.modifiers) == significant(self.code, self.mods)
    }

    /// How the help writes this chord: `Ctrl+C`, `Shift+Enter`, `↑`, `PgDn`, `Space`, `R`.
    pub fn label(&self) -> String {
        let key = match self.code {
            KeyCode::Up => "↑".to_owned(),
            KeyCode::Down => "↓".to_owned(),
            KeyCode::Left => "←".to_owned(),
            KeyCode::Right => "→".to_owned(),
            KeyCode::PageUp => "PgUp".to_owned(),
            KeyCode::PageDown => "PgDn".to_owned(),
            KeyCode::BackTab => "Shift+Tab".to_owned(),
            // Named here rather than by crossterm, which calls Enter "Return" on macOS.
            KeyCode::Enter => "Enter".to_owned(),
            KeyCode::Esc => "Esc".to_owned(),
            KeyCode::Tab => "Tab".to_owned(),
            KeyCode::Home => "Home".to_owned(),
            KeyCode::End => "End".to_owned(),
            KeyCode::Char(' ') => "Space".to_owned(),
            KeyCode::Char(c) if self.mods.contains(KeyModifiers::CONTROL) => {
                c.to_uppercase().to_string()
            }
            KeyCode::Char(c) => c.to_string(),
            KeyCode::F(n) => format!("F{n}"),
            other => other.to_string(),
        };
        let mut out = String::new();
        for (modifier, name) in [
            (KeyModifiers::CONTROL, "Ctrl+"),
            (KeyModifiers::ALT, "Alt+"),
            (KeyModifiers::SHIFT, "Shift+"),
        ] {
            if self.mods.contains(modifier) {
                out.push_str(name);
            }
        }
        out.push_str(&key);
        out
    }
}

fn significant(code: KeyCode, mods: KeyModifiers) -> KeyModifiers {
    let mut mods = mods & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
    if matches!(code, KeyCode::Char(_) | KeyCode::BackTab) {
        mods.remove(KeyModifiers::SHIFT);
    }
    mods
}

/// A line of the help: keys of one context that share a description.
#[derive(Debug)]
pub struct Binding {
    pub context: Context,
    pub keys: &'static [(Chord, KeyAction)],
    pub what: &'static str,
}

impl Binding {
    /// The keys as the help writes them: `↑ ↓ k j`.
    pub fn label(&self) -> String {
        self.keys
            .iter()
            .map(|(chord, _)| chord.label())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

use Context as C;
use KeyAction as A;
use KeyCode as K;

const fn b(context: Context, keys: &'static [(Chord, KeyAction)], what: &'static str) -> Binding {
    Binding {
        context,
        keys,
        what,
    }
}

/// Every key of the dashboard, in the help's order.
pub const BINDINGS: &[Binding] = &[
    b(
        C::Always,
        &[(Chord::ctrl('c'), A::Quit)],
        "quit (asks while a run is active; twice quits)",
    ),
    b(
        C::Anywhere,
        &[
            (Chord::key(K::Tab), A::NextPane),
            (Chord::key(K::BackTab), A::PreviousPane),
        ],
        "next / previous pane",
    ),
    b(C::Anywhere, &[(Chord::key(K::F(1)), A::Help)], "this help"),
    b(
        C::Query,
        &[(Chord::key(K::Enter), A::Submit)],
        "ask (starts a run; another run may be going)",
    ),
    b(
        C::Query,
        &[
            (Chord::alt(K::Enter), A::NewLine),
            (Chord::shift(K::Enter), A::NewLine),
        ],
        "new line",
    ),
    b(
        C::Query,
        &[
            (Chord::key(K::Up), A::OlderQuery),
            (Chord::key(K::Down), A::NewerQuery),
        ],
        "earlier queries (on the first / last line)",
    ),
    b(C::Query, &[(Chord::ctrl('u'), A::ClearQuery)], "clear"),
    b(
        C::Query,
        &[(Chord::ctrl('f'), A::ToggleFollowUp)],
        "ask as a follow-up to the selected run, or not",
    ),
    b(
        C::Query,
        &[(Chord::key(K::Esc), A::ToTree)],
        "to the subtask tree",
    ),
    b(C::Panes, &[(Chord::ch('?'), A::Help)], "this help"),
    b(
        C::Panes,
        &[(Chord::ch('q'), A::Quit)],
        "quit (asks while a run is active)",
    ),
    b(
        C::Panes,
        &[(Chord::ch('/'), A::ToQuery), (Chord::ch('i'), A::ToQuery)],
        "back to the query box",
    ),
    b(
        C::Panes,
        &[(Chord::ch('r'), A::RetrySubtask)],
        "re-run the selected subtask; replan a failed run",
    ),
    b(
        C::Panes,
        &[(Chord::ch('R'), A::RetryFailed)],
        "re-run every failed subtask of the run",
    ),
    b(
        C::Panes,
        &[(Chord::ch('e'), A::EditSubtask)],
        "edit the selected subtask, then re-run it",
    ),
    b(
        C::Panes,
        &[(Chord::ch('x'), A::CancelSubtask)],
        "cancel the selected subtask",
    ),
    b(
        C::Panes,
        &[(Chord::ch('X'), A::CancelRun)],
        "cancel the whole run",
    ),
    b(
        C::Panes,
        &[(Chord::ch('c'), A::CancelTools)],
        "cancel the selected subtask's tool call",
    ),
    b(
        C::Panes,
        &[(Chord::ch('s'), A::Resynthesize)],
        "write the synthesis again",
    ),
    b(
        C::Panes,
        &[(Chord::ch('y'), A::CopySynthesis)],
        "copy the synthesis (OSC 52)",
    ),
    b(
        C::Panes,
        &[(Chord::ch('w'), A::WriteReport)],
        "write the report to a markdown file",
    ),
    b(
        C::Panes,
        &[(Chord::ch('m'), A::PickModels)],
        "pick the models of the next run",
    ),
    b(
        C::Panes,
        &[(Chord::ch('p'), A::PickPreset)],
        "pick the preset (team of roles) for the next run",
    ),
    b(
        C::Panes,
        &[(Chord::ch('t'), A::ToggleReasoning)],
        "show / hide the model's reasoning in the detail",
    ),
    b(
        C::Panes,
        &[(Chord::ch('H'), A::OpenHistory)],
        "saved runs: search, open, resume",
    ),
    b(
        C::Panes,
        &[(Chord::ch('D'), A::ToggleDiff)],
        "what changed in the report since its previous version / back",
    ),
    b(
        C::Panes,
        &[(Chord::ch('S'), A::OpenStats)],
        "saved-run statistics: roles, models, errors, cost",
    ),
    b(
        C::Panes,
        &[(Chord::ch('f'), A::ToggleFollowUp)],
        "ask a follow-up to the selected finished run",
    ),
    b(
        C::Panes,
        &[(Chord::ch('T'), A::ToggleTimeline)],
        "the selected run over time (timeline) / the tree",
    ),
    b(
        C::Panes,
        &[(Chord::ch('P'), A::OpenPaused)],
        "a waiting run's dialog: budget, provider, plan review",
    ),
    b(
        C::Panes,
        &[(Chord::ch('V'), A::ToggleReview)],
        "review the next runs' plans before they run, or not",
    ),
    b(
        C::Panes,
        &[
            (Chord::ch('n'), A::NextParagraph),
            (Chord::ch('N'), A::PreviousParagraph),
        ],
        "read the report by paragraph, with what it cites",
    ),
    b(
        C::Panes,
        &[(Chord::ch('o'), A::OpenSources)],
        "the run's sources and unverified citations",
    ),
    b(
        C::Tree,
        &[
            (Chord::key(K::Up), A::SelectUp),
            (Chord::key(K::Down), A::SelectDown),
            (Chord::ch('k'), A::SelectUp),
            (Chord::ch('j'), A::SelectDown),
        ],
        "move up / down",
    ),
    b(
        C::Tree,
        &[
            (Chord::key(K::PageUp), A::SelectPageUp),
            (Chord::key(K::PageDown), A::SelectPageDown),
        ],
        "move a page",
    ),
    b(
        C::Tree,
        &[
            (Chord::key(K::Home), A::SelectFirst),
            (Chord::key(K::End), A::SelectLast),
            (Chord::ch('g'), A::SelectFirst),
            (Chord::ch('G'), A::SelectLast),
        ],
        "first / last row",
    ),
    b(
        C::Tree,
        &[
            (Chord::key(K::Left), A::Collapse),
            (Chord::key(K::Right), A::Expand),
            (Chord::ch('h'), A::Collapse),
            (Chord::ch('l'), A::Expand),
        ],
        "collapse / expand a run",
    ),
    b(
        C::Tree,
        &[
            (Chord::key(K::Enter), A::Toggle),
            (Chord::ch(' '), A::Toggle),
        ],
        "toggle the detail pane (on a run: expand)",
    ),
    b(
        C::Reading,
        &[
            (Chord::key(K::Up), A::ScrollUp),
            (Chord::key(K::Down), A::ScrollDown),
            (Chord::ch('k'), A::ScrollUp),
            (Chord::ch('j'), A::ScrollDown),
        ],
        "scroll a line",
    ),
    b(
        C::Reading,
        &[
            (Chord::key(K::PageUp), A::ScrollPageUp),
            (Chord::key(K::PageDown), A::ScrollPageDown),
            (Chord::ch('b'), A::ScrollPageUp),
            (Chord::ch(' '), A::ScrollPageDown),
        ],
        "scroll a page",
    ),
    b(
        C::Reading,
        &[
            (Chord::key(K::Home), A::ScrollTop),
            (Chord::key(K::End), A::ScrollBottom),
            (Chord::ch('g'), A::ScrollTop),
            (Chord::ch('G'), A::ScrollBottom),
        ],
        "top / bottom (bottom follows new text)",
    ),
    b(
        C::Edit,
        &[(Chord::key(K::Enter), A::SaveEdit)],
        "save and re-run",
    ),
    b(
        C::Edit,
        &[
            (Chord::alt(K::Enter), A::EditNewLine),
            (Chord::shift(K::Enter), A::EditNewLine),
        ],
        "new line",
    ),
    b(
        C::Edit,
        &[
            (Chord::key(K::Tab), A::NextRole),
            (Chord::key(K::BackTab), A::PreviousRole),
        ],
        "next / previous role",
    ),
    b(C::Edit, &[(Chord::key(K::Esc), A::CancelEdit)], "cancel"),
    b(
        C::Models,
        &[
            (Chord::key(K::Up), A::ModelUp),
            (Chord::key(K::Down), A::ModelDown),
            (Chord::ch('k'), A::ModelUp),
            (Chord::ch('j'), A::ModelDown),
        ],
        "move through the server's models",
    ),
    b(
        C::Models,
        &[
            (Chord::key(K::Tab), A::NextModelRole),
            (Chord::key(K::BackTab), A::PreviousModelRole),
        ],
        "planner / workers / synthesis",
    ),
    b(
        C::Models,
        &[(Chord::key(K::Enter), A::UseModel)],
        "use the highlighted model for that role",
    ),
    b(
        C::Models,
        &[(Chord::ch('c'), A::ConfiguredModel)],
        "back to the configured model for that role",
    ),
    b(C::Models, &[(Chord::key(K::Esc), A::CloseModels)], "close"),
    b(
        C::History,
        &[
            (Chord::key(K::Up), A::HistoryUp),
            (Chord::key(K::Down), A::HistoryDown),
            (Chord::key(K::PageUp), A::HistoryPageUp),
            (Chord::key(K::PageDown), A::HistoryPageDown),
        ],
        "move through the saved runs",
    ),
    b(
        C::History,
        &[(Chord::key(K::Enter), A::OpenSaved)],
        "open the run in the panes (r, R, e, s resume it)",
    ),
    b(
        C::History,
        &[(Chord::ctrl('u'), A::ClearSearch)],
        "clear the search",
    ),
    b(
        C::History,
        &[(Chord::key(K::Esc), A::CloseHistory)],
        "close",
    ),
    b(
        C::Presets,
        &[
            (Chord::key(K::Up), A::PresetUp),
            (Chord::key(K::Down), A::PresetDown),
            (Chord::ch('k'), A::PresetUp),
            (Chord::ch('j'), A::PresetDown),
        ],
        "move through the presets",
    ),
    b(
        C::Presets,
        &[(Chord::key(K::Enter), A::UsePreset)],
        "use the highlighted preset for the next runs",
    ),
    b(
        C::Presets,
        &[(Chord::key(K::Esc), A::ClosePresets)],
        "close",
    ),
    b(
        C::Paused,
        &[(Chord::key(K::Enter), A::RaiseOrResume)],
        "raise the budget by the amount typed / resume the provider",
    ),
    b(
        C::Paused,
        &[(Chord::ctrl('s'), A::SynthesizeNow)],
        "write the report now from what succeeded",
    ),
    b(
        C::Paused,
        &[(Chord::ctrl('x'), A::CancelPaused)],
        "cancel the run",
    ),
    b(
        C::Paused,
        &[(Chord::key(K::Esc), A::ClosePaused)],
        "close (the run stays paused)",
    ),
    b(
        C::Paragraphs,
        &[
            (Chord::ch('n'), A::NextParagraph),
            (Chord::ch('N'), A::PreviousParagraph),
        ],
        "next / previous paragraph",
    ),
    b(
        C::Paragraphs,
        &[(Chord::key(K::Enter), A::ParagraphSources)],
        "the sources the paragraph cites",
    ),
    b(
        C::Paragraphs,
        &[(Chord::key(K::Esc), A::LeaveParagraphs)],
        "leave paragraph mode",
    ),
    b(
        C::Sources,
        &[
            (Chord::key(K::Up), A::SourceUp),
            (Chord::key(K::Down), A::SourceDown),
            (Chord::ch('k'), A::SourceUp),
            (Chord::ch('j'), A::SourceDown),
        ],
        "move through the sources",
    ),
    b(
        C::Sources,
        &[(Chord::key(K::Enter), A::ReadSource)],
        "read the text the source retrieved",
    ),
    b(
        C::Sources,
        &[(Chord::key(K::Esc), A::CloseSources)],
        "close",
    ),
    b(
        C::Reader,
        &[
            (Chord::key(K::Up), A::ReaderUp),
            (Chord::key(K::Down), A::ReaderDown),
            (Chord::ch('k'), A::ReaderUp),
            (Chord::ch('j'), A::ReaderDown),
        ],
        "scroll a line",
    ),
    b(
        C::Reader,
        &[
            (Chord::key(K::PageUp), A::ReaderPageUp),
            (Chord::key(K::PageDown), A::ReaderPageDown),
            (Chord::ch(' '), A::ReaderPageDown),
        ],
        "scroll a page",
    ),
    b(
        C::Reader,
        &[
            (Chord::key(K::Home), A::ReaderTop),
            (Chord::key(K::End), A::ReaderBottom),
        ],
        "top / bottom",
    ),
    b(
        C::Reader,
        &[(Chord::key(K::Esc), A::CloseReader)],
        "back to the sources",
    ),
    b(
        C::Review,
        &[
            (Chord::key(K::Up), A::ReviewUp),
            (Chord::key(K::Down), A::ReviewDown),
            (Chord::ch('k'), A::ReviewUp),
            (Chord::ch('j'), A::ReviewDown),
        ],
        "move through the subtasks",
    ),
    b(
        C::Review,
        &[
            (Chord::ch('e'), A::ReviewEdit),
            (Chord::key(K::Enter), A::ReviewEdit),
        ],
        "edit the selected subtask",
    ),
    b(
        C::Review,
        &[(Chord::ch('a'), A::ReviewAdd)],
        "add a subtask",
    ),
    b(
        C::Review,
        &[(Chord::ch('d'), A::ReviewDelete)],
        "delete the subtask (asks when others depend on it)",
    ),
    b(
        C::Review,
        &[(Chord::ctrl('s'), A::ApprovePlan)],
        "approve: the run goes on with this plan",
    ),
    b(
        C::Review,
        &[
            (Chord::key(K::Esc), A::CancelReview),
            (Chord::ctrl('x'), A::CancelReview),
        ],
        "cancel the run (asks; l there leaves it waiting)",
    ),
    b(
        C::ReviewForm,
        &[
            (Chord::key(K::Tab), A::FormNextField),
            (Chord::key(K::BackTab), A::FormPreviousField),
        ],
        "next / previous field",
    ),
    b(
        C::ReviewForm,
        &[(Chord::ctrl('n'), A::FormSuggest)],
        "next role of the preset / model of the server",
    ),
    b(
        C::ReviewForm,
        &[(Chord::key(K::Enter), A::FormSave)],
        "save the subtask into the plan",
    ),
    b(
        C::ReviewForm,
        &[
            (Chord::alt(K::Enter), A::FormNewLine),
            (Chord::shift(K::Enter), A::FormNewLine),
        ],
        "new line in the description",
    ),
    b(
        C::ReviewForm,
        &[(Chord::key(K::Esc), A::FormBack)],
        "back to the plan, unsaved",
    ),
];

/// What `key` does in `context`, if anything.
pub fn lookup(context: Context, key: &KeyEvent) -> Option<KeyAction> {
    BINDINGS
        .iter()
        .filter(|b| b.context == context)
        .flat_map(|b| b.keys.iter())
        .find(|(chord, _)| chord.matches(key))
        .map(|(_, action)| *action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_means_two_things_in_one_context() {
        for (i, a) in BINDINGS.iter().enumerate() {
            for b in &BINDINGS[i..] {
                for (x, xa) in a.keys {
                    for (y, ya) in b.keys {
                        if a.context == b.context && x == y {
                            assert_eq!(xa, ya, "{} in {:?}", x.label(), a.context);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn shift_is_part_of_a_character_but_other_modifiers_count() {
        let r = Chord::ch('R');
        assert!(r.matches(&KeyEvent::new(KeyCode::Char('R'), KeyModifiers::SHIFT)));
        assert!(r.matches(&KeyEvent::new(KeyCode::Char('R'), KeyModifiers::NONE)));
        assert!(!Chord::ch('j').matches(&KeyEvent::new(KeyCode::Char('j'), KeyModifiers::ALT)));
        assert!(
            !Chord::key(KeyCode::Enter).matches(&KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT))
        );
        assert!(
            Chord::key(KeyCode::BackTab)
                .matches(&KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT))
        );
    }

    #[test]
    fn labels_read_as_the_help_writes_keys() {
        assert_eq!(Chord::ctrl('c').label(), "Ctrl+C");
        assert_eq!(Chord::shift(KeyCode::Enter).label(), "Shift+Enter");
        assert_eq!(Chord::alt(KeyCode::Enter).label(), "Alt+Enter");
        assert_eq!(Chord::key(KeyCode::BackTab).label(), "Shift+Tab");
        assert_eq!(Chord::key(KeyCode::PageDown).label(), "PgDn");
        assert_eq!(Chord::ch(' ').label(), "Space");
        assert_eq!(Chord::key(KeyCode::F(1)).label(), "F1");
        assert_eq!(Chord::key(KeyCode::Esc).label(), "Esc");
        assert_eq!(Chord::key(KeyCode::Home).label(), "Home");
    }
}
