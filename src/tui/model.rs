//! The dashboard's state: every run as its events describe it, what is focused and selected,
//! scroll positions, the query box and overlays. Changed only by `update` (and `apply` for
//! engine events); read by the views. No I/O, no clock: `now_ms` is set by the app loop (or a
//! test), which is what makes snapshots deterministic.

use std::cell::RefCell;

use ratatui_textarea::TextArea;

use crate::protocol::{
    BudgetReason, Event, EventKind, ModelOverrides, RunId, SavedRun, SubtaskId, SubtaskStatus,
};
use crate::report::RunReport;
use crate::store::{RunSummary, SavedRunStatus};
use crate::tui::markdown::MarkdownCache;
use crate::tui::theme::Theme;

/// The panes that can have focus, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Query,
    Tree,
    Detail,
    Synthesis,
}

impl Focus {
    pub const ORDER: [Focus; 4] = [Focus::Query, Focus::Tree, Focus::Detail, Focus::Synthesis];
}

/// A row of the subtask tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Node {
    Run(RunId),
    Subtask(RunId, SubtaskId),
    /// The line under a run that lists its attached files.
    Files(RunId),
}

impl Node {
    pub fn run(&self) -> RunId {
        match self {
            Node::Run(id) | Node::Subtask(id, _) | Node::Files(id) => *id,
        }
    }
}

/// A pop-up over the panes; it takes every key while open.
pub enum Overlay {
    /// The keys, scrolled by `scroll` lines when taller than the screen.
    Help { scroll: usize },
    /// Editing a subtask's description (and role) before re-running it.
    Edit {
        run: RunId,
        subtask: SubtaskId,
        text: Box<TextArea<'static>>,
        /// Index into `Info::roles`.
        role: usize,
    },
    /// Quit while runs are active?
    ConfirmQuit,
    /// Picking the models of the next run from the provider's list.
    Models {
        role: PickRole,
        /// Index into the listed models.
        cursor: usize,
    },
    /// The saved runs (`Model::saved_runs`), filtered by what is typed.
    History {
        search: String,
        /// Index into the listed runs.
        cursor: usize,
    },
    /// Picking the preset (team of worker roles) of the next run.
    Presets {
        /// Index into `Models::presets`.
        cursor: usize,
    },
    /// The statistics of the saved runs (`Model::stats`), scrolled by `scroll` lines.
    Stats { scroll: usize },
    /// A run that waits for a decision: its budget was reached, or its provider paused.
    Paused {
        run: RunId,
        why: PauseWhy,
        /// How much to raise the budget by, as typed (tokens, or a time such as `5m`).
        raise: String,
    },
    /// The sources of run `run` by number, then its unverified citations.
    Sources {
        run: RunId,
        /// Index into the sources listed.
        cursor: usize,
        /// Only the sources this paragraph of the report cites.
        paragraph: Option<usize>,
    },
    /// The text a source of run `run` retrieved; Esc goes back to the list as it was.
    Reader {
        run: RunId,
        /// The source's number and location.
        number: u32,
        location: String,
        /// First wrapped line shown.
        scroll: usize,
        /// The list's cursor and paragraph, to go back to.
        cursor: usize,
        paragraph: Option<usize>,
    },
    /// The plan review of a run paused after planning (its state is the run's `review`).
    Review { run: RunId },
}

/// Why a run waits, as its dialog shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum PauseWhy {
    Budget(BudgetReason),
    /// The provider's one-line reason.
    Provider(String),
}

impl PauseWhy {
    /// What the raise box starts with: half the token or cost budget again, or five more
    /// minutes.
    pub fn suggested_raise(&self) -> String {
        match self {
            PauseWhy::Budget(BudgetReason::Tokens { max, .. }) => (max / 2).max(1).to_string(),
            PauseWhy::Budget(BudgetReason::Deadline { .. }) => "5m".to_owned(),
            PauseWhy::Budget(BudgetReason::Cost { max_micros, .. }) => {
                format!("{:.4}", (*max_micros as f64 / 2e6).max(0.0001))
            }
            PauseWhy::Provider(_) => String::new(),
        }
    }
}

/// The saved runs as far as the dashboard knows them (read by the app loop, off the drawing
/// path).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum SavedList {
    #[default]
    NotAsked,
    /// Asked for with this search.
    Loading(String),
    /// Newest first, for this search.
    Ready(String, Vec<RunSummary>),
    /// Why they could not be read.
    Failed(String),
}

/// A run opened from history that the engine does not have yet: what it resumes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub status: SavedRunStatus,
    /// What the engine resumes from; `None` when the run stopped before it had a plan (it is
    /// planned again).
    pub resume: Option<Box<SavedRun>>,
}

/// The roles the model picker sets, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickRole {
    Planner,
    Worker,
    Synthesizer,
}

impl PickRole {
    pub const ORDER: [PickRole; 3] = [PickRole::Planner, PickRole::Worker, PickRole::Synthesizer];

    pub fn label(self) -> &'static str {
        match self {
            PickRole::Planner => "Planner",
            PickRole::Worker => "Workers",
            PickRole::Synthesizer => "Synthesis",
        }
    }

    /// The next (or previous, for a negative step) role, wrapping around.
    pub fn step(self, step: isize) -> Self {
        let at = Self::ORDER.iter().position(|r| *r == self).unwrap_or(0) as isize;
        Self::ORDER[(at + step).rem_euclid(Self::ORDER.len() as isize) as usize]
    }
}

/// The provider's model list, as far as the dashboard knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ModelList {
    #[default]
    NotAsked,
    Loading,
    Ready(Vec<String>),
    /// Why the list could not be had (the provider's words).
    Failed(String),
}

/// Which models runs use: the configured ones, and those picked for the next runs.
#[derive(Debug, Clone, Default)]
pub struct Models {
    /// `openai`, `anthropic` or `demo`.
    pub provider: String,
    pub planner: String,
    pub worker: String,
    pub synthesizer: String,
    /// Picked in the dashboard; sent with every run started from now on.
    pub picked: ModelOverrides,
    pub list: ModelList,
    /// The configured preset's name.
    pub preset: String,
    /// The presets a run may use, for the picker.
    pub presets: Vec<PresetInfo>,
    /// How many worker calls a run may have in flight, for the timeline's footer.
    pub concurrency: Option<usize>,
    /// What the models cost, for the estimates on screen. Empty (no figure) unless the app
    /// sets it from the config.
    pub prices: std::sync::Arc<crate::engine::cost::PriceTable>,
    /// The most subtasks a plan may have (`[planner] max_subtasks`), for checking a reviewed
    /// plan as the engine will.
    pub max_subtasks: Option<usize>,
    /// The configured run settings (roles and their models, validation, direct answers,
    /// concurrency), for a reviewed plan's estimate; `None` in tests that set the models alone.
    pub settings: Option<std::sync::Arc<crate::engine::run::RunSettings>>,
    /// Runs pause after planning for a review of their plan (`[planner] review`, `--review`);
    /// `picked.review` is what `V` made of it for the next runs.
    pub review: bool,
}

/// A preset as the picker lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetInfo {
    pub name: String,
    pub description: String,
    /// `built-in` or the file's path.
    pub source: String,
    /// Role names, the default first.
    pub roles: Vec<String>,
}

impl Models {
    /// The configured model of `role`.
    pub fn configured(&self, role: PickRole) -> &str {
        match role {
            PickRole::Planner => &self.planner,
            PickRole::Worker => &self.worker,
            PickRole::Synthesizer => &self.synthesizer,
        }
    }

    /// What `role` was picked as, if anything.
    pub fn picked(&self, role: PickRole) -> Option<&str> {
        match role {
            PickRole::Planner => self.picked.planner.as_deref(),
            PickRole::Worker => self.picked.worker.as_deref(),
            PickRole::Synthesizer => self.picked.synthesizer.as_deref(),
        }
    }

    /// The model the next run uses for `role`.
    pub fn effective(&self, role: PickRole) -> &str {
        self.picked(role).unwrap_or_else(|| self.configured(role))
    }

    /// Pick `model` for `role`; the configured model (or `None`) un-picks it.
    pub fn pick(&mut self, role: PickRole, model: Option<String>) {
        let model = model.filter(|m| m != self.configured(role));
        match role {
            PickRole::Planner => self.picked.planner = model,
            PickRole::Worker => self.picked.worker = model,
            PickRole::Synthesizer => self.picked.synthesizer = model,
        }
    }

    /// The next runs pause after planning for their plan to be reviewed.
    pub fn review_on(&self) -> bool {
        self.picked.review.unwrap_or(self.review)
    }

    /// Review the next runs' plans, or not; the configured choice un-picks.
    pub fn pick_review(&mut self, on: bool) {
        self.picked.review = (on != self.review).then_some(on);
    }

    /// The preset the next run uses: the picked one, else the configured one.
    pub fn effective_preset(&self) -> &str {
        self.picked.preset.as_deref().unwrap_or(&self.preset)
    }

    /// Pick preset `name` for the next runs; the configured one un-picks.
    pub fn pick_preset(&mut self, name: &str) {
        self.picked.preset = (name != self.preset).then(|| name.to_owned());
    }

    /// `planner a · workers b · synth c`, or the one model when all roles share it.
    pub fn describe(&self) -> String {
        let [p, w, s] = PickRole::ORDER.map(|r| self.effective(r));
        if p == w && w == s {
            w.to_owned()
        } else {
            format!("planner {p} · workers {w} · synth {s}")
        }
    }
}

/// A scroll position. `follow` keeps the view at the end as text streams in, until the user
/// scrolls up; scrolling back to the end (End, G) follows again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scroll {
    pub offset: usize,
    pub follow: bool,
    /// The user asked for the end (End, G), or was following when the text finished: stay at
    /// the end even when nothing streams.
    pub pinned: bool,
}

impl Default for Scroll {
    fn default() -> Self {
        Self {
            offset: 0,
            follow: true,
            pinned: false,
        }
    }
}

impl Scroll {
    /// The first line to show, for `total` lines in a window of `height`. `live` is whether
    /// text is still streaming in: following sticks to the end while it does (or when pinned
    /// there); otherwise finished text is read from the top.
    pub fn top(&self, total: usize, height: usize, live: bool) -> usize {
        let max = total.saturating_sub(height);
        if self.follow && (live || self.pinned) {
            max
        } else {
            self.offset.min(max)
        }
    }

    /// Move by `delta` lines (negative is up).
    pub fn scroll(&mut self, delta: isize, total: usize, height: usize, live: bool) {
        let max = total.saturating_sub(height);
        let top = self.top(total, height, live) as isize;
        let new = (top + delta).clamp(0, max as isize) as usize;
        self.offset = new;
        self.follow = new >= max && delta > 0;
        self.pinned = false;
    }

    pub fn home(&mut self) {
        self.offset = 0;
        self.follow = false;
        self.pinned = false;
    }

    /// To the end, and stay there as text comes in or stops.
    pub fn end(&mut self, total: usize, height: usize) {
        self.offset = total.saturating_sub(height);
        self.follow = true;
        self.pinned = true;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToastLevel {
    Info,
    Warning,
    Error,
}

/// A short message on the status line that fades after a few seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toast {
    pub text: String,
    pub level: ToastLevel,
    pub until_ms: u64,
}

/// What the dashboard shows about its setup.
#[derive(Debug, Clone)]
pub struct Info {
    /// `openai · planner … · workers …` (never a key).
    pub describe: String,
    pub demo: bool,
    pub bell: bool,
    /// Worker role names, the default first (for the edit pop-up).
    pub roles: Vec<String>,
}

/// A row of the tree as drawn: a run, or a subtask with its run and the widths of the id
/// and role columns of that run.
pub enum Row<'a> {
    Run(&'a RunView),
    /// The run's attached files, on one line under it.
    Files(&'a RunView),
    Subtask(
        &'a RunView,
        &'a crate::report::SubtaskReport,
        (usize, usize),
    ),
}

/// Widths of the id and role columns of a run's rows (capped, so titles keep room).
fn column_widths(report: &RunReport) -> (usize, usize) {
    use unicode_width::UnicodeWidthStr;
    let id = report
        .subtasks
        .iter()
        .map(|t| t.id.as_str().width())
        .max()
        .unwrap_or(6);
    let role = report
        .subtasks
        .iter()
        .map(|t| t.worker.width())
        .max()
        .unwrap_or(8);
    (id.min(12), role.min(10))
}

/// One run in the tree.
#[derive(Debug, Clone)]
pub struct RunView {
    pub report: RunReport,
    /// 1-based, in the order runs were started in this session.
    pub number: usize,
    pub expanded: bool,
    /// When the run last became active (start, or reopened by a re-run): for the bell.
    pub active_since_ms: u64,
    /// Bumped whenever the synthesis text changes, to invalidate cached rendering.
    pub synthesis_version: u64,
    /// The report as it was before the synthesis now shown (or streaming) began, for the diff.
    pub previous_synthesis: Option<String>,
    /// Opened from history and not resumed yet: the engine does not know this run.
    pub saved: Option<Saved>,
    /// Paused after planning, waiting for its plan to be reviewed: the review so far.
    pub review: Option<Box<crate::tui::review::Review>>,
}

impl RunView {
    pub fn id(&self) -> Option<RunId> {
        self.report.id
    }

    /// Going on in this dashboard's engine (a saved run that another process is running is
    /// not).
    pub fn is_active(&self) -> bool {
        self.report.status.is_none() && self.saved.is_none()
    }

    /// Files were attached to the run (or found and skipped): its expanded rows start with a
    /// line that lists them.
    pub fn has_files(&self) -> bool {
        !self.report.context.is_empty() || !self.report.context_skipped.is_empty()
    }

    /// Saved as interrupted (its process stopped mid-run) and not resumed yet.
    pub fn interrupted(&self) -> bool {
        self.saved
            .as_ref()
            .is_some_and(|s| s.status == SavedRunStatus::Interrupted)
    }
}

pub struct Model {
    pub runs: Vec<RunView>,
    pub focus: Focus,
    pub query: TextArea<'static>,
    /// Queries submitted this session, oldest first.
    pub history: Vec<String>,
    /// Position in `history` while recalling, and the text that was being typed before.
    pub history_pos: Option<(usize, String)>,
    pub overlay: Option<Overlay>,
    pub selected: Option<Node>,
    /// First visible row of the tree.
    pub tree_offset: usize,
    pub detail_open: bool,
    /// The detail pane shows the model's reasoning (else one line that says it is there).
    pub show_reasoning: bool,
    pub detail_scroll: Scroll,
    pub synthesis_scroll: Scroll,
    pub toast: Option<Toast>,
    /// Terminal size (columns, rows).
    pub size: (u16, u16),
    /// Wall-clock milliseconds since the epoch, set by the app loop or a test.
    pub now_ms: u64,
    pub info: Info,
    /// The models runs use, and the provider's list for the picker.
    pub models: Models,
    pub theme: Theme,
    pub quit: bool,
    /// Why runs are not being saved (the store could not be opened, or writes fail); the
    /// status line says "unsaved". Set by the app loop, which polls the store.
    pub unsaved: Option<String>,
    /// Rendered markdown of the shown synthesis, reused between frames.
    pub markdown: RefCell<MarkdownCache>,
    /// The saved runs for the history pop-up.
    pub saved_runs: SavedList,
    /// The synthesis pane shows what changed since the previous version of the report.
    pub show_diff: bool,
    /// The next question is a follow-up to this (finished) run: the query pane says so.
    pub follow_up: Option<RunId>,
    /// The tree pane shows the selected run's timeline instead of the tree.
    pub timeline: bool,
    /// The statistics of the saved runs, as the app loop read them; `None` while it reads.
    pub stats: Option<Result<crate::stats::Stats, String>>,
    /// The text each source retrieved, per run.
    pub sources: crate::tui::sources::SourceTexts,
    /// The report's paragraph being read, and what its citations say.
    pub provenance: crate::tui::provenance::Provenance,
    /// The saved calls plan estimates are made from (read once, when a review first needs
    /// them).
    pub call_history: crate::tui::review::CallHistory,
}

impl Model {
    pub fn new(info: Info, theme: Theme, size: (u16, u16), now_ms: u64) -> Self {
        let mut model = Self {
            runs: Vec::new(),
            focus: Focus::Query,
            query: TextArea::default(),
            history: Vec::new(),
            history_pos: None,
            overlay: None,
            selected: None,
            tree_offset: 0,
            detail_open: true,
            show_reasoning: false,
            detail_scroll: Scroll::default(),
            synthesis_scroll: Scroll::default(),
            toast: None,
            size,
            now_ms,
            info,
            models: Models::default(),
            theme,
            quit: false,
            unsaved: None,
            markdown: RefCell::new(MarkdownCache::default()),
            saved_runs: SavedList::NotAsked,
            show_diff: false,
            follow_up: None,
            timeline: false,
            stats: None,
            sources: Default::default(),
            provenance: Default::default(),
            call_history: crate::tui::review::CallHistory::default(),
        };
        model.reset_query();
        model
    }

    /// An empty query box with its placeholder.
    pub fn reset_query(&mut self) {
        let mut query = TextArea::default();
        query.set_placeholder_text("Ask a question and press Enter (Alt+Enter: new line)");
        query.set_placeholder_style(self.theme.dim());
        query.set_cursor_line_style(ratatui::style::Style::new());
        query.set_wrap_mode(ratatui_textarea::WrapMode::WordOrGlyph);
        self.query = query;
    }

    pub fn run(&self, id: RunId) -> Option<&RunView> {
        self.runs.iter().find(|r| r.id() == Some(id))
    }

    fn run_mut(&mut self, id: RunId) -> Option<&mut RunView> {
        self.runs.iter_mut().find(|r| r.id() == Some(id))
    }

    /// The run the selection is in, else the latest.
    pub fn current_run(&self) -> Option<&RunView> {
        self.selected
            .as_ref()
            .and_then(|n| self.run(n.run()))
            .or(self.runs.last())
    }

    /// The selected subtask's run and id.
    pub fn selected_subtask(&self) -> Option<(&RunView, &crate::report::SubtaskReport)> {
        match &self.selected {
            Some(Node::Subtask(run, id)) => {
                let view = self.run(*run)?;
                Some((view, view.report.subtask(id)?))
            }
            _ => None,
        }
    }

    /// The selected subtask is streaming, or the selected run's planner is: the detail
    /// follows new text.
    pub fn detail_live(&self) -> bool {
        match self.selected_subtask() {
            Some((_, s)) => s.status == SubtaskStatus::Running,
            None => self.current_run().is_some_and(|v| {
                v.report.plan.is_none()
                    && v.report
                        .planning
                        .last()
                        .is_some_and(|p| p.outcome == crate::report::PlannerOutcome::Running)
            }),
        }
    }

    /// The shown synthesis is streaming.
    pub fn synthesis_live(&self) -> bool {
        self.current_run().is_some_and(|r| r.report.synthesizing)
    }

    pub fn any_active(&self) -> bool {
        self.runs.iter().any(RunView::is_active)
    }

    /// Something moves on screen by itself (spinners, ticking timers), so the app must tick.
    pub fn animating(&self) -> bool {
        self.any_active() || self.toast.is_some()
    }

    /// The runs in tree order: each run in start order, its follow-ups right after it (and
    /// theirs after them), with how many follow-up steps below a run of its own it is.
    pub fn lineage(&self) -> Vec<(&RunView, usize)> {
        let known = |parent: Option<RunId>| parent.is_some_and(|p| self.run(p).is_some());
        let mut out = Vec::with_capacity(self.runs.len());
        let mut placed = std::collections::HashSet::new();
        // Depth-first from each run whose parent is not in the tree; a stack keeps start order.
        for root in self.runs.iter().filter(|v| !known(v.report.parent)) {
            let mut stack = vec![(root, 0usize)];
            while let Some((view, depth)) = stack.pop() {
                if !placed.insert(view.id()) {
                    continue;
                }
                out.push((view, depth));
                let children = self
                    .runs
                    .iter()
                    .filter(|c| view.id().is_some() && c.report.parent == view.id());
                stack.extend(children.rev().map(|c| (c, depth + 1)));
            }
        }
        out
    }

    /// How many follow-up steps `view` is below a run of its own (0 for a run of its own).
    pub fn depth(&self, view: &RunView) -> usize {
        let mut depth = 0;
        let mut parent = view.report.parent;
        while let Some(p) = parent.and_then(|p| self.run(p)) {
            depth += 1;
            // A chain can be no longer than the runs there are (a guard against a loop).
            if depth > self.runs.len() {
                break;
            }
            parent = p.report.parent;
        }
        depth
    }

    /// The roles the edit pop-up offers for a subtask of run `run`: its preset's (those of the
    /// configured one when it is not known), with `custom` first for a subtask whose role the
    /// planner wrote, so editing its description keeps it.
    pub fn edit_roles(&self, run: RunId, subtask: &SubtaskId) -> Vec<String> {
        let mut roles = self
            .run(run)
            .and_then(|v| {
                self.models
                    .presets
                    .iter()
                    .find(|p| !v.report.preset.is_empty() && p.name == v.report.preset)
            })
            .map_or_else(|| self.info.roles.clone(), |p| p.roles.clone());
        let custom = self
            .run(run)
            .and_then(|v| v.report.plan.as_ref())
            .and_then(|p| p.subtasks.iter().find(|t| &t.id == subtask))
            .is_some_and(|t| t.role_prompt.is_some() && t.worker == "custom");
        if custom {
            roles.insert(0, "custom".to_owned());
        }
        roles
    }

    /// The run started as `id` uses the preset `name`.
    pub fn set_preset(&mut self, id: RunId, name: String) {
        if let Some(view) = self.run_mut(id) {
            view.report.preset = name;
        }
    }

    /// The run started as `id` follows up on `parent`.
    pub fn set_parent(&mut self, id: RunId, parent: Option<RunId>) {
        if let Some(view) = self.run_mut(id) {
            view.report.parent = parent;
        }
    }

    /// Visible rows of the tree, top to bottom: each run, and its subtasks when expanded.
    pub fn rows(&self) -> Vec<Node> {
        let mut rows = Vec::new();
        for (view, _) in self.lineage() {
            let Some(id) = view.id() else { continue };
            rows.push(Node::Run(id));
            if view.expanded && view.has_files() {
                rows.push(Node::Files(id));
            }
            if view.expanded {
                rows.extend(
                    view.report
                        .subtasks
                        .iter()
                        .map(|s| Node::Subtask(id, s.id.clone())),
                );
            }
        }
        rows
    }

    /// How many rows the tree has.
    pub fn row_count(&self) -> usize {
        self.runs
            .iter()
            .filter(|v| v.id().is_some())
            .map(|v| {
                1 + if v.expanded {
                    v.report.subtasks.len() + usize::from(v.has_files())
                } else {
                    0
                }
            })
            .sum()
    }

    /// Rows `offset..offset + count` of the tree, by reference (drawing touches only these).
    pub fn visible_rows(&self, offset: usize, count: usize) -> Vec<Row<'_>> {
        let mut out = Vec::with_capacity(count);
        let mut index = 0usize;
        for view in self
            .lineage()
            .into_iter()
            .map(|(v, _)| v)
            .filter(|v| v.id().is_some())
        {
            if out.len() == count {
                break;
            }
            if index >= offset {
                out.push(Row::Run(view));
            }
            index += 1;
            if !view.expanded {
                continue;
            }
            if view.has_files() {
                if out.len() == count {
                    break;
                }
                if index >= offset {
                    out.push(Row::Files(view));
                }
                index += 1;
            }
            let subtasks = &view.report.subtasks;
            let skip = offset.saturating_sub(index).min(subtasks.len());
            index += skip;
            if skip == subtasks.len() {
                continue;
            }
            let widths = column_widths(&view.report);
            for s in &subtasks[skip..] {
                if out.len() == count {
                    break;
                }
                out.push(Row::Subtask(view, s, widths));
                index += 1;
            }
        }
        out
    }

    /// Register a run this dashboard is starting, so it shows before its first event.
    pub fn add_run(&mut self, id: RunId, query: &str) {
        for view in &mut self.runs {
            view.expanded = false;
        }
        let mut report = RunReport::priced(self.models.prices.clone());
        report.id = Some(id);
        report.query = query.to_owned();
        report.limit = self.models.concurrency;
        self.runs.push(RunView {
            report,
            number: self.runs.len() + 1,
            expanded: true,
            active_since_ms: self.now_ms,
            synthesis_version: 0,
            previous_synthesis: None,
            saved: None,
            review: None,
        });
        self.selected = Some(Node::Run(id));
        self.synthesis_scroll = Scroll::default();
        self.detail_scroll = Scroll::default();
        self.show_diff = false;
    }

    /// Show a run read from the store, selected, as the engine would have shown it.
    pub fn add_saved(&mut self, mut report: RunReport, saved: Saved) {
        let Some(id) = report.id else { return };
        report.prices = self.models.prices.clone();
        for view in &mut self.runs {
            view.expanded = false;
        }
        self.runs.push(RunView {
            report,
            number: self.runs.len() + 1,
            expanded: true,
            active_since_ms: self.now_ms,
            synthesis_version: 0,
            previous_synthesis: None,
            saved: Some(saved),
            review: None,
        });
        self.selected = Some(Node::Run(id));
        self.synthesis_scroll = Scroll::default();
        self.detail_scroll = Scroll::default();
        self.show_diff = false;
    }

    /// The saved run `id` is being resumed: it becomes live, its report is rebuilt from the
    /// engine's events, and the report it had is kept to compare with the next one. What it
    /// resumes from, if it is a saved run not resumed yet.
    pub fn take_saved(&mut self, id: RunId) -> Option<Saved> {
        let now = self.now_ms;
        let limit = self.models.concurrency;
        let view = self.run_mut(id)?;
        let saved = view.saved.take()?;
        let previous = std::mem::take(&mut view.report.synthesis);
        if !previous.trim().is_empty() {
            view.previous_synthesis = Some(previous);
        }
        let mut report = RunReport::priced(view.report.prices.clone());
        report.id = Some(id);
        report.query = view.report.query.clone();
        report.limit = limit;
        // What the saved calls spent stays part of the run's cost.
        report.calls = std::mem::take(&mut view.report.calls);
        view.report = report;
        view.active_since_ms = now;
        view.synthesis_version += 1;
        Some(saved)
    }

    /// Fold an engine event in. Returns true when a long run just ended (for the bell).
    pub fn apply(&mut self, event: &Event) -> bool {
        if self.run(event.run).is_none() {
            // A run started elsewhere (not through the query box): show it all the same.
            self.add_run(event.run, "");
        }
        let selected_run = self.selected.as_ref().map(Node::run);
        let Some(view) = self.run_mut(event.run) else {
            return false;
        };
        let was_active = view.is_active();
        // A new synthesis of a finished report: keep the report it replaces, for the diff.
        if matches!(event.kind, EventKind::SynthesisStarted { .. })
            && !view.report.synthesizing
            && !view.report.synthesis.trim().is_empty()
        {
            view.previous_synthesis = Some(view.report.synthesis.clone());
        }
        view.report.apply(event);
        let mut long_run_ended = false;
        match &event.kind {
            EventKind::RunStarted { .. } => view.active_since_ms = event.ts_ms,
            EventKind::SynthesisDelta { .. }
            | EventKind::SynthesisFinished { .. }
            | EventKind::SynthesisCancelled { .. } => {
                view.synthesis_version += 1;
            }
            EventKind::RunFinished { .. } => {
                long_run_ended = event.ts_ms.saturating_sub(view.active_since_ms) > 10_000;
            }
            _ => {}
        }
        if !was_active && view.is_active() {
            view.active_since_ms = event.ts_ms;
        }
        // The run node is selected when the plan arrives: move to its first subtask so the
        // detail pane has something to show.
        if let EventKind::PlanReady { plan } = &event.kind
            && self.selected == Some(Node::Run(event.run))
            && let Some(first) = plan.subtasks.first()
        {
            self.selected = Some(Node::Subtask(event.run, first.id.clone()));
        }
        if selected_run == Some(event.run) {
            match &event.kind {
                EventKind::Notice { message } => self.toast(message.clone(), ToastLevel::Warning),
                EventKind::CommandRefused { refusal, .. } => {
                    self.toast(refusal.to_string(), ToastLevel::Warning);
                }
                _ => {}
            }
        }
        long_run_ended
    }

    pub fn toast(&mut self, text: String, level: ToastLevel) {
        self.toast = Some(Toast {
            text,
            level,
            until_ms: self.now_ms + 4_000,
        });
    }

    /// Advance the clock; expire the toast.
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        if self.toast.as_ref().is_some_and(|t| t.until_ms <= now_ms) {
            self.toast = None;
        }
    }

    /// Subtask counts of a run: (succeeded, failed, total).
    pub fn counts(report: &RunReport) -> (usize, usize, usize) {
        (
            report.count(SubtaskStatus::Succeeded),
            report.count(SubtaskStatus::Failed),
            // Drafts of a plan still streaming are not subtasks yet.
            report.subtasks.iter().filter(|s| !s.drafted).count(),
        )
    }

    /// Milliseconds a run has been going (or went).
    pub fn run_elapsed(&self, report: &RunReport) -> u64 {
        match (report.elapsed_ms, report.status, report.started_ts) {
            (Some(ms), Some(_), _) => ms,
            (_, _, Some(start)) => self.now_ms.saturating_sub(start),
            _ => 0,
        }
    }

    /// The words for a run's state as the tree shows it: `interrupted` for a saved run whose
    /// process stopped, `reviewing` for a run whose plan waits for a review, else as
    /// [`Model::run_phase`].
    pub fn view_phase(view: &RunView) -> &'static str {
        if view.interrupted() {
            "interrupted"
        } else if view.review.is_some() && view.report.status.is_none() {
            "reviewing"
        } else {
            Self::run_phase(&view.report)
        }
    }

    /// The words for a run's state: `planning`, `running`, `synthesising`, `succeeded`…
    pub fn run_phase(report: &RunReport) -> &'static str {
        match report.status {
            Some(s) => s.word(),
            None if report.plan.is_none() => "planning",
            None if report.synthesizing => "synthesising",
            None => "running",
        }
    }
}
