//! The plan review screen: a run paused after planning shows its plan as a list the person
//! edits (title, description, role, model, dependencies), deletes from, adds to, then approves
//! or cancels. Holds the review's state (`Review`, kept on the run's `RunView`), what its keys
//! do, and how it is drawn, so the rest of the dashboard only routes keys and events here.
//!
//! Pure like `update`: no I/O and no clock. The saved calls the estimate is made from are read
//! by the app loop (`Action::ReadCalls`) and handed in as `Msg::CallsRead`. Every piece of
//! model text (ids, titles, descriptions, roles, models) is sanitised before it is drawn or
//! put in a text box.

use std::sync::Arc;

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui_textarea::{CursorMove, TextArea};
use unicode_width::UnicodeWidthStr;

use crate::display::{duration, tokens, truncate};
use crate::engine::plan::PlanRules;
use crate::protocol::plan::{Plan, PlannedSubtask, Priority};
use crate::protocol::{Command, RunCommand, RunId, SubtaskId};
use crate::sanitize::{sanitize, sanitize_line};
use crate::store::CallRecord;
use crate::tui::keymap::KeyAction;
use crate::tui::model::{Model, ModelList, Overlay, ToastLevel};
use crate::tui::update::Action;

/// The saved calls estimates are made from, as far as the dashboard has them.
#[derive(Debug, Clone, Default)]
pub enum CallHistory {
    #[default]
    NotAsked,
    Loading,
    Ready(Arc<Vec<CallRecord>>),
    /// Why they could not be read; estimates use the rule of thumb.
    Failed(String),
}

impl CallHistory {
    fn calls(&self) -> &[CallRecord] {
        match self {
            CallHistory::Ready(calls) => calls,
            CallHistory::NotAsked | CallHistory::Loading | CallHistory::Failed(_) => &[],
        }
    }
}

/// A problem of the edited plan, under the row of the subtask it concerns (or under the list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub subtask: Option<SubtaskId>,
    pub message: String,
}

/// One subtask's estimate, as a row shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RowEstimate {
    pub tokens: u64,
    /// Dollars; `None` when the model has no price (the row says `tokens only`).
    pub cost: Option<f64>,
    pub ms: u64,
    /// The subtask takes an earlier run's result: no call.
    pub reused: bool,
}

/// What the plan will likely spend, per subtask (in plan order) and in all.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Estimate {
    pub rows: Vec<RowEstimate>,
    /// The totals line, basis included (`from history: 6 of 8 subtasks`, `rule of thumb: …`).
    pub summary: String,
}

/// A confirmation asked inside the review; any key but its own answers goes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    /// Delete `subtask`, which `dependents` depend on.
    Delete {
        subtask: SubtaskId,
        dependents: Vec<SubtaskId>,
    },
    /// Cancel the whole run.
    Cancel,
}

/// A field of the subtask form, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Title,
    Role,
    Model,
    Depends,
    Description,
}

impl Field {
    pub const ORDER: [Field; 5] = [
        Field::Title,
        Field::Role,
        Field::Model,
        Field::Depends,
        Field::Description,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Field::Title => "Title",
            Field::Role => "Role",
            Field::Model => "Model",
            Field::Depends => "After",
            Field::Description => "Description",
        }
    }

    fn step(self, step: isize) -> Self {
        let at = Self::ORDER.iter().position(|f| *f == self).unwrap_or(0) as isize;
        Self::ORDER[(at + step).rem_euclid(Self::ORDER.len() as isize) as usize]
    }
}

/// The form that edits a subtask, or adds one.
#[derive(Debug, Clone)]
pub struct Form {
    /// The subtask edited; `None` adds a new one (its id is made from the title).
    pub editing: Option<SubtaskId>,
    pub field: Field,
    pub title: TextArea<'static>,
    pub role: TextArea<'static>,
    pub model: TextArea<'static>,
    /// Comma-separated ids.
    pub depends: TextArea<'static>,
    pub description: TextArea<'static>,
    /// Why the last save was refused, shown under the field it concerns.
    pub problem: Option<(Field, String)>,
}

impl Form {
    fn area(&mut self, field: Field) -> &mut TextArea<'static> {
        match field {
            Field::Title => &mut self.title,
            Field::Role => &mut self.role,
            Field::Model => &mut self.model,
            Field::Depends => &mut self.depends,
            Field::Description => &mut self.description,
        }
    }

    /// The text box of `field`, for drawing.
    pub fn text(&self, field: Field) -> &TextArea<'static> {
        match field {
            Field::Title => &self.title,
            Field::Role => &self.role,
            Field::Model => &self.model,
            Field::Depends => &self.depends,
            Field::Description => &self.description,
        }
    }

    fn value(&self, field: Field) -> String {
        self.text(field).lines().join("\n").trim().to_owned()
    }
}

/// A run's plan under review.
#[derive(Debug, Clone)]
pub struct Review {
    pub run: RunId,
    /// The plan as edited so far (the engine's, until the first edit).
    pub plan: Plan,
    /// Index into `plan.subtasks`.
    pub cursor: usize,
    pub problems: Vec<Problem>,
    pub estimate: Estimate,
    pub form: Option<Form>,
    pub confirm: Option<Confirm>,
    /// What the last change did, or why a key was refused (`error`).
    pub note: Option<(String, bool)>,
    /// The plan was sent with `ApprovePlan`: the screen waits for the engine to go on or
    /// refuse.
    pub sent: bool,
}

/// A text box of one line (or more, for the description) holding `text`, cursor at its end.
fn text_box(text: &str) -> TextArea<'static> {
    let lines: Vec<String> = if text.is_empty() {
        vec![String::new()]
    } else {
        text.lines().map(str::to_owned).collect()
    };
    let mut area = TextArea::new(lines);
    area.set_wrap_mode(ratatui_textarea::WrapMode::WordOrGlyph);
    area.set_cursor_line_style(Style::new());
    area.move_cursor(CursorMove::Bottom);
    area.move_cursor(CursorMove::End);
    area
}

// ---- what the plan's subtasks hold -----------------------------------------------------------

/// The model a subtask asks for, if it names one.
pub fn subtask_model(subtask: &PlannedSubtask) -> Option<&str> {
    subtask.model.as_deref().filter(|m| !m.trim().is_empty())
}

/// The roles a subtask of run `run` may have: its preset's (and `custom` for a subtask the
/// planner wrote a role for).
fn roles_for(model: &Model, run: RunId, subtask: Option<&SubtaskId>) -> Vec<String> {
    match subtask {
        Some(id) => model.edit_roles(run, id),
        None => model.edit_roles(run, &SubtaskId::new("")),
    }
}

fn rules(model: &Model, run: RunId) -> PlanRules {
    let roles = roles_for(model, run, None);
    PlanRules {
        max_subtasks: model.models.max_subtasks.unwrap_or(usize::MAX),
        default_role: roles
            .first()
            .cloned()
            .unwrap_or_else(|| "analysis".to_owned()),
        roles,
    }
}

/// The problems of `plan`: exactly what would make the engine refuse it.
fn problems(plan: &Plan, rules: &PlanRules) -> Vec<Problem> {
    crate::engine::plan::review_problems(plan, rules)
        .into_iter()
        .map(|p| Problem {
            subtask: p.subtask,
            message: p.message,
        })
        .collect()
}

/// What the plan will likely spend, from the saved calls of the same role and model where
/// there are any, else from the stated rule of thumb (`stats::plan_estimate`).
fn estimate(model: &Model, plan: &Plan) -> Estimate {
    let worker = model
        .models
        .effective(crate::tui::model::PickRole::Worker)
        .to_owned();
    let settings = model.models.settings.as_deref().map(|configured| {
        // The models picked for the next runs, as the engine applies them to a run: a picked
        // worker model is every role's.
        let mut settings = configured.clone();
        let picked = &model.models.picked;
        if let Some(m) = &picked.worker {
            settings.worker.model.clone_from(m);
            for role in &mut settings.roles {
                role.model = None;
            }
        }
        if let Some(m) = &picked.synthesizer {
            settings.synthesizer.model.clone_from(m);
        }
        settings
    });
    let inputs = match &settings {
        Some(settings) => {
            crate::stats::EstimateInputs::for_run(settings, plan, &model.models.prices)
        }
        None => crate::stats::EstimateInputs {
            worker_models: plan
                .subtasks
                .iter()
                .map(|t| subtask_model(t).unwrap_or(&worker).to_owned())
                .collect(),
            synthesis_model: model
                .models
                .effective(crate::tui::model::PickRole::Synthesizer)
                .to_owned(),
            validator_model: None,
            direct: false,
            prices: &model.models.prices,
            concurrency: model.models.concurrency.unwrap_or(1).max(1),
        },
    };
    let estimate = crate::stats::plan_estimate(plan, model.call_history.calls(), &inputs);
    Estimate {
        rows: estimate
            .subtasks
            .iter()
            .map(|s| RowEstimate {
                tokens: s.total.tokens_in + s.total.tokens_out,
                cost: s.total.cost_usd,
                ms: s.total.ms,
                reused: matches!(s.total.basis, crate::stats::Basis::Reused),
            })
            .collect(),
        // Model names in it may come from the planner's plan.
        summary: sanitize_line(&estimate.line()).into_owned(),
    }
}

// ---- starting and ending a review ------------------------------------------------------------

/// Run `run` waits with `plan` for a review: keep it on the run and show the screen when the
/// run is the one in view and nothing else is open (else a toast says how to get to it).
pub fn start(model: &mut Model, run: RunId, plan: Plan, actions: &mut Vec<Action>) {
    let mut review = Review {
        run,
        plan,
        cursor: 0,
        problems: Vec::new(),
        estimate: Estimate::default(),
        form: None,
        confirm: None,
        note: None,
        sent: false,
    };
    refresh_of(model, &mut review);
    let Some(view) = model.runs.iter_mut().find(|v| v.id() == Some(run)) else {
        return;
    };
    let number = view.number;
    view.review = Some(Box::new(review));
    if matches!(model.call_history, CallHistory::NotAsked) {
        model.call_history = CallHistory::Loading;
        actions.push(Action::ReadCalls);
    }
    if matches!(model.models.list, ModelList::NotAsked) {
        model.models.list = ModelList::Loading;
        actions.push(Action::ListModels);
    }
    let in_view = model.current_run().and_then(|v| v.id()) == Some(run);
    if in_view && model.overlay.is_none() {
        model.overlay = Some(Overlay::Review { run });
    } else {
        model.toast(
            format!("run #{number} waits for its plan to be reviewed: select it, P"),
            ToastLevel::Warning,
        );
    }
}

/// Open the review of the current run, if it waits for one.
pub fn open(model: &mut Model) -> bool {
    let Some(run) = model
        .current_run()
        .filter(|v| v.review.is_some())
        .and_then(|v| v.id())
    else {
        return false;
    };
    model.overlay = Some(Overlay::Review { run });
    true
}

/// The run went on (its plan was taken) or ended: nothing is left to review.
pub fn end(model: &mut Model, run: RunId) {
    if let Some(view) = model.runs.iter_mut().find(|v| v.id() == Some(run)) {
        view.review = None;
    }
    if matches!(model.overlay, Some(Overlay::Review { run: r }) if r == run) {
        model.overlay = None;
    }
}

/// The engine refused the approved plan: back to the review, with its reason.
pub fn refused(model: &mut Model, run: RunId, error: &str) {
    let Some(review) = review_mut(model, run) else {
        return;
    };
    review.sent = false;
    review.note = Some((
        format!("the engine refused the plan: {}", sanitize_line(error)),
        true,
    ));
    if model.overlay.is_none() && model.current_run().and_then(|v| v.id()) == Some(run) {
        model.overlay = Some(Overlay::Review { run });
    }
}

/// The saved calls arrived (or could not be read): every open review's estimate is made again.
pub fn calls_read(model: &mut Model, result: Result<Arc<Vec<CallRecord>>, String>) {
    model.call_history = match result {
        Ok(calls) => CallHistory::Ready(calls),
        Err(why) => CallHistory::Failed(why),
    };
    let runs: Vec<RunId> = model
        .runs
        .iter()
        .filter(|v| v.review.is_some())
        .filter_map(|v| v.id())
        .collect();
    for run in runs {
        refresh(model, run);
    }
}

fn review_mut(model: &mut Model, run: RunId) -> Option<&mut Review> {
    model
        .runs
        .iter_mut()
        .find(|v| v.id() == Some(run))
        .and_then(|v| v.review.as_deref_mut())
}

/// The review on screen.
pub fn shown(model: &Model) -> Option<&Review> {
    let Some(Overlay::Review { run }) = model.overlay else {
        return None;
    };
    model.run(run).and_then(|v| v.review.as_deref())
}

fn shown_mut(model: &mut Model) -> Option<&mut Review> {
    let Some(Overlay::Review { run }) = model.overlay else {
        return None;
    };
    review_mut(model, run)
}

/// Problems and estimate of `review`'s plan, again.
fn refresh_of(model: &Model, review: &mut Review) {
    review.problems = problems(&review.plan, &rules(model, review.run));
    review.estimate = estimate(model, &review.plan);
    review.cursor = review
        .cursor
        .min(review.plan.subtasks.len().saturating_sub(1));
}

fn refresh(model: &mut Model, run: RunId) {
    let Some(view) = model.runs.iter_mut().find(|v| v.id() == Some(run)) else {
        return;
    };
    let Some(mut review) = view.review.take() else {
        return;
    };
    refresh_of(model, &mut review);
    if let Some(view) = model.runs.iter_mut().find(|v| v.id() == Some(run)) {
        view.review = Some(review);
    }
}

// ---- keys ------------------------------------------------------------------------------------

/// Whether the review on screen asks a confirmation (its keys are its own, not the key map's).
pub fn confirming(model: &Model) -> bool {
    shown(model).is_some_and(|r| r.confirm.is_some())
}

/// Whether the review on screen has its form open.
pub fn editing(model: &Model) -> bool {
    shown(model).is_some_and(|r| r.form.is_some())
}

/// Do a review key of the key map.
pub fn perform(model: &mut Model, action: KeyAction, key: KeyEvent, actions: &mut Vec<Action>) {
    let Some(Overlay::Review { run }) = model.overlay else {
        return;
    };
    match action {
        KeyAction::ReviewUp => move_cursor(model, -1),
        KeyAction::ReviewDown => move_cursor(model, 1),
        KeyAction::ReviewEdit => open_form(model, run, false),
        KeyAction::ReviewAdd => open_form(model, run, true),
        KeyAction::ReviewDelete => delete(model, run, false),
        KeyAction::ApprovePlan => approve(model, run, actions),
        KeyAction::CancelReview => {
            if let Some(review) = shown_mut(model) {
                review.confirm = Some(Confirm::Cancel);
            }
        }
        KeyAction::FormNextField | KeyAction::FormPreviousField => {
            let step = if action == KeyAction::FormNextField {
                1
            } else {
                -1
            };
            if let Some(form) = shown_mut(model).and_then(|r| r.form.as_mut()) {
                form.field = form.field.step(step);
            }
        }
        KeyAction::FormNewLine => {
            if let Some(form) = shown_mut(model).and_then(|r| r.form.as_mut()) {
                if form.field == Field::Description {
                    form.description.insert_newline();
                } else {
                    form.field = form.field.step(1);
                }
            }
        }
        KeyAction::FormSuggest => suggest(model, run),
        KeyAction::FormSave => save_form(model, run),
        KeyAction::FormBack => {
            if let Some(review) = shown_mut(model) {
                review.form = None;
            }
        }
        // Keys of other contexts never reach the review (`key_action` looks in its contexts
        // only); typing is `type_key`'s.
        _ => type_key(model, key, actions),
    }
}

/// A key the key map has nothing for: typed into the form's field, or the answer to a
/// confirmation.
pub fn type_key(model: &mut Model, key: KeyEvent, actions: &mut Vec<Action>) {
    let Some(Overlay::Review { run }) = model.overlay else {
        return;
    };
    if let Some(confirm) = shown(model).and_then(|r| r.confirm.clone()) {
        answer(model, run, confirm, key, actions);
        return;
    }
    if let Some(form) = shown_mut(model).and_then(|r| r.form.as_mut()) {
        let field = form.field;
        form.area(field).input(key);
        form.problem = None;
    }
}

/// Text pasted into the form's field (one line, except the description).
pub fn paste(model: &mut Model, text: &str) {
    if let Some(form) = shown_mut(model).and_then(|r| r.form.as_mut()) {
        let field = form.field;
        let text = if field == Field::Description {
            text.to_owned()
        } else {
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        form.area(field).insert_str(text);
    }
}

fn answer(
    model: &mut Model,
    run: RunId,
    confirm: Confirm,
    key: KeyEvent,
    actions: &mut Vec<Action>,
) {
    let yes = matches!(key.code, KeyCode::Char('y' | 'Y'));
    match confirm {
        Confirm::Delete { .. } if yes => delete(model, run, true),
        Confirm::Cancel if yes => {
            end(model, run);
            actions.push(Action::Send(Command::Run {
                id: run,
                command: RunCommand::CancelRun,
            }));
        }
        Confirm::Cancel if matches!(key.code, KeyCode::Char('l' | 'L')) => {
            model.overlay = None;
            if let Some(review) = review_mut(model, run) {
                review.confirm = None;
            }
            model.toast(
                "the run waits for its review: P brings it back".into(),
                ToastLevel::Info,
            );
        }
        Confirm::Delete { .. } | Confirm::Cancel => {
            if let Some(review) = review_mut(model, run) {
                review.confirm = None;
            }
        }
    }
}

fn move_cursor(model: &mut Model, step: isize) {
    if let Some(review) = shown_mut(model) {
        let count = review.plan.subtasks.len() as isize;
        if count > 0 {
            review.cursor = (review.cursor as isize + step).clamp(0, count - 1) as usize;
        }
    }
}

fn open_form(model: &mut Model, run: RunId, add: bool) {
    let roles = roles_for(model, run, None);
    let Some(review) = shown_mut(model) else {
        return;
    };
    if review.sent {
        return;
    }
    let form = match review.plan.subtasks.get(review.cursor).filter(|_| !add) {
        Some(task) => Form {
            editing: Some(task.id.clone()),
            field: Field::Title,
            title: text_box(&sanitize_line(&task.title)),
            role: text_box(&sanitize_line(&task.worker)),
            model: text_box(&sanitize_line(subtask_model(task).unwrap_or(""))),
            depends: text_box(&sanitize_line(
                &task
                    .depends_on
                    .iter()
                    .map(SubtaskId::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
            description: text_box(&sanitize(&task.description)),
            problem: None,
        },
        None => Form {
            editing: None,
            field: Field::Title,
            title: text_box(""),
            role: text_box(roles.first().map_or("", String::as_str)),
            model: text_box(""),
            depends: text_box(""),
            description: text_box(""),
            problem: None,
        },
    };
    review.form = Some(form);
}

/// The next role or known model after what the field holds.
fn suggest(model: &mut Model, run: RunId) {
    let field = match shown(model).and_then(|r| r.form.as_ref()) {
        Some(form) => form.field,
        None => return,
    };
    let editing = shown(model)
        .and_then(|r| r.form.as_ref())
        .and_then(|f| f.editing.clone());
    let choices: Vec<String> = match field {
        Field::Role => roles_for(model, run, editing.as_ref()),
        Field::Model => known_models(model).into_iter().map(|(m, _)| m).collect(),
        Field::Title | Field::Depends | Field::Description => return,
    };
    let Some(form) = shown_mut(model).and_then(|r| r.form.as_mut()) else {
        return;
    };
    if choices.is_empty() {
        form.problem = Some((field, "nothing to choose from yet".to_owned()));
        return;
    }
    let current = form.value(field);
    let next = choices
        .iter()
        .position(|c| c.eq_ignore_ascii_case(&current))
        .map_or(0, |i| (i + 1) % choices.len());
    *form.area(field) = text_box(&choices[next]);
    form.problem = None;
}

/// The models the server lists, with their prices where known (`$0.15/$0.60` a million
/// tokens in and out).
pub fn known_models(model: &Model) -> Vec<(String, Option<String>)> {
    let ModelList::Ready(ids) = &model.models.list else {
        return Vec::new();
    };
    ids.iter()
        .map(|id| {
            let price = model
                .models
                .prices
                .lookup(id)
                .map(|p| format!("${:.2}/${:.2}", p.input, p.output));
            (sanitize_line(id).into_owned(), price)
        })
        .collect()
}

/// An id from a title: its first words in lower case joined by `_`, made unique in `plan`.
pub fn id_from_title(title: &str, plan: &Plan) -> SubtaskId {
    let words: Vec<String> = title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(3)
        .map(str::to_lowercase)
        .collect();
    let mut base: String = words.join("_").chars().take(24).collect();
    if base.is_empty() {
        base = "subtask".to_owned();
    }
    let taken = |id: &str| plan.subtasks.iter().any(|t| t.id.as_str() == id);
    let mut id = base.clone();
    let mut n = 2;
    while taken(&id) {
        id = format!("{base}_{n}");
        n += 1;
    }
    SubtaskId::new(id)
}

fn save_form(model: &mut Model, run: RunId) {
    let roles = {
        let editing = shown(model)
            .and_then(|r| r.form.as_ref())
            .and_then(|f| f.editing.clone());
        roles_for(model, run, editing.as_ref())
    };
    let Some(review) = shown_mut(model) else {
        return;
    };
    let Some(form) = review.form.as_mut() else {
        return;
    };
    let title = form.value(Field::Title).replace('\n', " ");
    let description = form.value(Field::Description);
    let role = form.value(Field::Role);
    let chosen_model = form.value(Field::Model);
    let depends: Vec<SubtaskId> = form
        .value(Field::Depends)
        .split([',', ' '])
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(SubtaskId::new)
        .collect();
    let refuse = |form: &mut Form, field: Field, message: String| {
        form.field = field;
        form.problem = Some((field, message));
    };
    if title.is_empty() {
        return refuse(form, Field::Title, "a subtask needs a title".to_owned());
    }
    if description.is_empty() {
        return refuse(
            form,
            Field::Description,
            "a subtask needs a description: it is what the worker is asked".to_owned(),
        );
    }
    let Some(role) = roles.iter().find(|r| r.eq_ignore_ascii_case(&role)) else {
        return refuse(
            form,
            Field::Role,
            format!(
                "there is no role `{}` (roles: {}; Ctrl+N goes through them)",
                sanitize_line(&role),
                roles.join(", ")
            ),
        );
    };
    let id = match &form.editing {
        Some(id) => id.clone(),
        None => id_from_title(&title, &review.plan),
    };
    if let Some(own) = depends.iter().find(|d| **d == id) {
        return refuse(
            form,
            Field::Depends,
            format!("`{own}` cannot depend on itself"),
        );
    }
    let ids: Vec<&str> = review.plan.subtasks.iter().map(|t| t.id.as_str()).collect();
    if let Some(unknown) = depends.iter().find(|d| !ids.contains(&d.as_str())) {
        return refuse(
            form,
            Field::Depends,
            format!(
                "there is no subtask `{}` in the plan (ids: {})",
                sanitize_line(unknown.as_str()),
                ids.join(", ")
            ),
        );
    }
    let mut seen = std::collections::HashSet::new();
    let depends: Vec<SubtaskId> = depends
        .into_iter()
        .filter(|d| seen.insert(d.clone()))
        .collect();
    let editing = form.editing.clone();
    let chosen_model = (!chosen_model.is_empty()).then_some(chosen_model);
    let note = match editing {
        Some(id) => {
            let Some(task) = review.plan.subtasks.iter_mut().find(|t| t.id == id) else {
                return;
            };
            task.title = title;
            task.description = description;
            // A planner-written role is kept only while the subtask keeps it.
            if !task.worker.eq_ignore_ascii_case(role) {
                task.role_prompt = None;
            }
            task.worker = role.clone();
            task.depends_on = depends;
            task.model = chosen_model;
            format!("`{id}` changed")
        }
        None => {
            let task = PlannedSubtask {
                id: id.clone(),
                worker: role.clone(),
                title,
                description,
                focus_areas: Vec::new(),
                depends_on: depends,
                priority: Priority::default(),
                reuse: None,
                role_prompt: None,
                model: chosen_model,
            };
            review.plan.subtasks.push(task);
            review.cursor = review.plan.subtasks.len() - 1;
            format!("`{id}` added")
        }
    };
    review.form = None;
    review.note = Some((note, false));
    refresh(model, run);
}

/// Delete the selected subtask; with others depending on it, only once confirmed, and then
/// those dependencies are dropped.
fn delete(model: &mut Model, run: RunId, confirmed: bool) {
    let Some(review) = shown_mut(model) else {
        return;
    };
    review.confirm = None;
    if review.sent {
        return;
    }
    let Some(id) = review
        .plan
        .subtasks
        .get(review.cursor)
        .map(|t| t.id.clone())
    else {
        return;
    };
    if review.plan.subtasks.len() == 1 {
        review.note = Some((
            "a plan keeps at least one subtask; Esc cancels the run instead".to_owned(),
            true,
        ));
        return;
    }
    let dependents: Vec<SubtaskId> = review
        .plan
        .subtasks
        .iter()
        .filter(|t| t.depends_on.contains(&id))
        .map(|t| t.id.clone())
        .collect();
    if !dependents.is_empty() && !confirmed {
        review.confirm = Some(Confirm::Delete {
            subtask: id,
            dependents,
        });
        return;
    }
    review.plan.subtasks.retain(|t| t.id != id);
    for task in &mut review.plan.subtasks {
        task.depends_on.retain(|d| *d != id);
    }
    review.note = Some((
        if dependents.is_empty() {
            format!("`{id}` deleted")
        } else {
            format!(
                "`{id}` deleted; {} no longer depend{} on it",
                backticked(&dependents),
                if dependents.len() == 1 { "s" } else { "" }
            )
        },
        false,
    ));
    refresh(model, run);
}

fn backticked(ids: &[SubtaskId]) -> String {
    ids.iter()
        .map(|i| format!("`{}`", sanitize_line(i.as_str())))
        .collect::<Vec<_>>()
        .join(", ")
}

fn approve(model: &mut Model, run: RunId, actions: &mut Vec<Action>) {
    let Some(review) = shown_mut(model) else {
        return;
    };
    if review.sent {
        return;
    }
    if !review.problems.is_empty() {
        let n = review.problems.len();
        review.note = Some((
            format!(
                "{n} problem{} to fix before the plan can be approved",
                if n == 1 { "" } else { "s" }
            ),
            true,
        ));
        return;
    }
    review.sent = true;
    review.note = None;
    let plan = review.plan.clone();
    model.overlay = None;
    actions.push(Action::Send(Command::Run {
        id: run,
        command: approve_command(plan),
    }));
}

fn approve_command(plan: Plan) -> RunCommand {
    RunCommand::ApprovePlan { plan }
}

// ---- drawing ---------------------------------------------------------------------------------

/// The review screen over the dashboard: nearly the whole screen.
pub fn draw(frame: &mut Frame, model: &Model, area: Rect) {
    let Some(review) = shown(model) else {
        return;
    };
    let theme = &model.theme;
    let view = model.run(review.run);
    let number = view.map_or(0, |v| v.number);
    let query = view.map(|v| sanitize_line(&v.report.query).into_owned());
    let width = area.width.saturating_sub(2).min(124);
    // Borders and padding take two columns a side.
    let inner_w = width.saturating_sub(4) as usize;
    let lines = list_lines(model, review, inner_w);
    // What the selected subtask asks, a few lines of it: what is approved is the text.
    let mut about = Vec::new();
    if let Some(task) = review.plan.subtasks.get(review.cursor) {
        let text = sanitize(&task.description).replace('\n', " ");
        crate::tui::markdown::wrap_line(
            &Line::from(vec![
                Span::styled(
                    format!("{}: ", sanitize_line(task.id.as_str())),
                    theme.bold(),
                ),
                Span::raw(text),
            ]),
            inner_w.max(10),
            &mut about,
        );
        about.truncate(3);
    }
    let totals = Line::from(vec![
        Span::styled("Estimate: ", theme.bold()),
        Span::raw(review.estimate.summary.clone()),
    ]);
    let totals_height: u16 = if totals.width() > inner_w { 2 } else { 1 };
    let needed = lines.len() + 1 + about.len() + 1 + totals_height as usize + 1 + 2;
    let rect = crate::tui::view::centered(
        area,
        width,
        (needed as u16).max(12).min(area.height.saturating_sub(2)),
    );
    let problems = review.problems.len();
    let approve = match problems {
        0 => " Ctrl+S approve".to_owned(),
        1 => " Ctrl+S approve (1 problem)".to_owned(),
        n => format!(" Ctrl+S approve ({n} problems)"),
    };
    let keys = format!(" e edit · a add · d delete ·{approve} · Esc cancel ");
    let heading = format!(
        "Review the plan of #{number} {}",
        truncate(
            query.as_deref().unwrap_or(""),
            (rect.width as usize).saturating_sub(30)
        )
    );
    let inside = crate::tui::view::popup(frame, rect, theme, &heading, &keys);
    // The description gives way to the list when the screen is short.
    let room = (inside.height as usize).saturating_sub(lines.len() + 3 + totals_height as usize);
    about.truncate(room);
    let [list_area, _, about_area, _, totals_area, note_area] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(about.len() as u16),
        Constraint::Length(u16::from(!about.is_empty())),
        Constraint::Length(totals_height),
        Constraint::Length(1),
    ])
    .areas(inside);
    // Keep the selected subtask's lines on screen.
    let height = list_area.height as usize;
    let (start, end) = lines
        .iter()
        .enumerate()
        .filter(|(_, (owner, _))| *owner == Some(review.cursor))
        .fold((usize::MAX, 0), |(s, e), (i, _)| (s.min(i), e.max(i + 1)));
    let top = if end > height {
        (end - height).min(start)
    } else {
        0
    };
    let visible: Vec<Line> = lines
        .into_iter()
        .skip(top)
        .take(height)
        .map(|(_, l)| l)
        .collect();
    frame.render_widget(Paragraph::new(visible), list_area);
    frame.render_widget(Paragraph::new(about).style(theme.dim()), about_area);
    frame.render_widget(
        Paragraph::new(totals).wrap(Wrap { trim: true }),
        totals_area,
    );
    let note = match (&review.note, review.sent) {
        (_, true) => Line::from(Span::styled("Approved: waiting for the run…", theme.dim())),
        (Some((text, error)), false) => Line::from(Span::styled(
            truncate(&sanitize_line(text), note_area.width as usize),
            if *error { theme.error() } else { theme.dim() },
        )),
        (None, false) => Line::default(),
    };
    frame.render_widget(Paragraph::new(note), note_area);
    if review.form.is_some() {
        draw_form(frame, model, review, area);
    } else if let Some(confirm) = &review.confirm {
        draw_confirm(frame, model, number, confirm, area);
    }
}

/// The list's lines, each with the index of the subtask it belongs to.
fn list_lines(model: &Model, review: &Review, width: usize) -> Vec<(Option<usize>, Line<'static>)> {
    let theme = &model.theme;
    let tasks = &review.plan.subtasks;
    let wide = width >= 110;
    let id_w = tasks
        .iter()
        .map(|t| sanitize_line(t.id.as_str()).width())
        .max()
        .unwrap_or(2)
        .clamp(2, 14);
    let role_w = tasks
        .iter()
        .map(|t| sanitize_line(&t.worker).width())
        .max()
        .unwrap_or(4)
        .clamp(4, 12);
    let model_w = tasks
        .iter()
        .map(|t| sanitize_line(subtask_model(t).unwrap_or("default")).width())
        .max()
        .unwrap_or(7)
        .clamp(7, 18);
    let deps_of = |t: &PlannedSubtask| {
        let d: Vec<String> = t
            .depends_on
            .iter()
            .map(|d| sanitize_line(d.as_str()).into_owned())
            .collect();
        if d.is_empty() {
            "—".to_owned()
        } else {
            d.join(", ")
        }
    };
    let deps_w = tasks
        .iter()
        .map(|t| deps_of(t).width())
        .max()
        .unwrap_or(5)
        .clamp(5, 18);
    // tokens · cost · time, right-aligned.
    let est_w = 6 + 1 + 11 + 1 + 6;
    let fixed = 2 + id_w + 1 + role_w + 1 + if wide { model_w + 1 + deps_w + 1 } else { 0 };
    let title_w = width.saturating_sub(fixed + est_w + 1).max(8);
    let mut out = Vec::new();
    let mut header = format!("  {:<id_w$} {:<role_w$} ", "id", "role");
    if wide {
        header.push_str(&format!("{:<model_w$} {:<deps_w$} ", "model", "after"));
    }
    header.push_str(&format!(
        "{:<title_w$} {:>6} {:>11} {:>6}",
        "title", "tokens", "cost", "time"
    ));
    out.push((None, Line::from(Span::styled(header, theme.dim()))));
    for (i, task) in tasks.iter().enumerate() {
        let selected = i == review.cursor;
        let mark = if selected { "▸ " } else { "  " };
        let est = review.estimate.rows.get(i);
        let figures = match est {
            Some(e) if e.reused => format!(" {:>25}", "reused"),
            Some(e) => format!(
                " {:>6} {:>11} {:>6}",
                format!("~{}", tokens(e.tokens)),
                e.cost
                    .map(crate::engine::cost::show_usd)
                    .unwrap_or_else(|| "tokens only".to_owned()),
                duration(e.ms)
            ),
            None => String::new(),
        };
        let mut left = format!(
            "{mark}{:<id_w$} {:<role_w$} ",
            truncate(&sanitize_line(task.id.as_str()), id_w),
            truncate(&sanitize_line(&task.worker), role_w)
        );
        if wide {
            left.push_str(&format!(
                "{:<model_w$} {:<deps_w$} ",
                truncate(
                    &sanitize_line(subtask_model(task).unwrap_or("default")),
                    model_w
                ),
                truncate(&deps_of(task), deps_w)
            ));
        }
        let title = truncate(&sanitize_line(&task.title), title_w);
        let gap = " ".repeat(title_w.saturating_sub(title.width()));
        let mut line = Line::from(vec![
            Span::styled(left, theme.bold()),
            Span::raw(title),
            Span::raw(gap),
            Span::styled(figures, theme.dim()),
        ]);
        if selected {
            line = crate::tui::view::selected_row(line, theme, width);
        }
        out.push((Some(i), line));
        if !wide {
            let extra = format!(
                "    model {} · after {}",
                sanitize_line(subtask_model(task).unwrap_or("default")),
                deps_of(task)
            );
            out.push((
                Some(i),
                Line::from(Span::styled(truncate(&extra, width), theme.dim())),
            ));
        }
        for problem in review
            .problems
            .iter()
            .filter(|p| p.subtask.as_ref() == Some(&task.id))
        {
            out.push((
                Some(i),
                Line::from(Span::styled(
                    truncate(&format!("    ✗ {}", sanitize_line(&problem.message)), width),
                    theme.error(),
                )),
            ));
        }
    }
    for problem in review.problems.iter().filter(|p| p.subtask.is_none()) {
        out.push((
            None,
            Line::from(Span::styled(
                truncate(&format!("  ✗ {}", sanitize_line(&problem.message)), width),
                theme.error(),
            )),
        ));
    }
    out
}

fn draw_form(frame: &mut Frame, model: &Model, review: &Review, area: Rect) {
    let Some(form) = &review.form else {
        return;
    };
    let theme = &model.theme;
    let rect = crate::tui::view::centered(
        area,
        96.min(area.width.saturating_sub(4)),
        20.min(area.height.saturating_sub(2)),
    );
    let heading = match &form.editing {
        Some(id) => format!("Edit {}", truncate(&sanitize_line(id.as_str()), 30)),
        None => "Add a subtask".to_owned(),
    };
    let inside = crate::tui::view::popup(
        frame,
        rect,
        theme,
        &heading,
        " Tab field · Ctrl+N choices · Enter save · Alt+Enter new line · Esc back ",
    );
    let label_w = 13usize;
    let width = inside.width as usize;
    let room = width.saturating_sub(label_w);
    // The single-line fields, each with its hint; the problem goes right under its field.
    let problem_of = |field: Field| {
        form.problem
            .as_ref()
            .filter(|(f, _)| *f == field)
            .map(|(_, m)| m)
    };
    let problem_lines = |message: &str| -> Vec<Line<'static>> {
        let mut out = Vec::new();
        crate::tui::markdown::wrap_line(
            &Line::from(Span::styled(
                format!("✗ {}", sanitize_line(message)),
                theme.error(),
            )),
            room.max(10),
            &mut out,
        );
        out.into_iter()
            .map(|l| {
                let mut spans = vec![Span::raw(" ".repeat(label_w))];
                spans.extend(l.spans);
                Line::from(spans)
            })
            .collect()
    };
    let known = known_models(model);
    let known_line = if known.is_empty() {
        match &model.models.list {
            ModelList::Failed(_) => "the server's models could not be listed".to_owned(),
            ModelList::NotAsked | ModelList::Loading => {
                "asking the server for its models…".to_owned()
            }
            ModelList::Ready(_) => "the server lists no models".to_owned(),
        }
    } else {
        known
            .iter()
            .map(|(id, price)| match price {
                Some(p) => format!("{id} {p}"),
                None => id.clone(),
            })
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let mut rows: Vec<(Option<Field>, Line<'static>)> = Vec::new();
    for (field, hint) in [
        (Field::Title, ""),
        (Field::Role, "Ctrl+N next role"),
        (Field::Model, "empty: default"),
        (Field::Depends, "ids, comma-separated"),
    ] {
        rows.push((Some(field), Line::from(Span::styled(hint, theme.dim()))));
        if field == Field::Model {
            rows.push((
                None,
                Line::from(Span::styled(
                    format!("{:label_w$}{}", "", truncate(&known_line, room)),
                    theme.dim(),
                )),
            ));
        }
        if let Some(message) = problem_of(field) {
            rows.extend(problem_lines(message).into_iter().map(|l| (None, l)));
        }
    }
    let description_problem = problem_of(Field::Description)
        .map(|m| problem_lines(m))
        .unwrap_or_default();
    let mut constraints: Vec<Constraint> = rows.iter().map(|_| Constraint::Length(1)).collect();
    constraints.push(Constraint::Length(1));
    constraints.push(Constraint::Min(1));
    constraints.push(Constraint::Length(description_problem.len() as u16));
    let areas = Layout::vertical(constraints).split(inside);
    let label = |field: Field| {
        let focused = form.field == field;
        let mark = if focused { "▸ " } else { "  " };
        Span::styled(
            format!("{mark}{}", field.label()),
            if focused { theme.key() } else { theme.dim() },
        )
    };
    let text_of = |field: Field| {
        let mut text = form.text(field).clone();
        if form.field != field {
            text.set_cursor_style(Style::new());
        }
        text
    };
    for (row, (field, line)) in areas.iter().zip(rows) {
        let Some(field) = field else {
            frame.render_widget(Paragraph::new(line), *row);
            continue;
        };
        let hint_w = line.width() as u16;
        let [label_a, value_a, hint_a] = Layout::horizontal([
            Constraint::Length(label_w as u16),
            Constraint::Min(8),
            Constraint::Length(hint_w + 1),
        ])
        .areas(*row);
        frame.render_widget(Paragraph::new(label(field)), label_a);
        frame.render_widget(&text_of(field), value_a);
        frame.render_widget(
            Paragraph::new(line.alignment(ratatui::layout::Alignment::Right)),
            hint_a,
        );
    }
    let n = areas.len();
    frame.render_widget(Paragraph::new(label(Field::Description)), areas[n - 3]);
    let text_a = areas[n - 2];
    let text_rect = Rect {
        x: text_a.x + 2,
        width: text_a.width.saturating_sub(2),
        ..text_a
    };
    frame.render_widget(&text_of(Field::Description), text_rect);
    frame.render_widget(Paragraph::new(description_problem), areas[n - 1]);
}

fn draw_confirm(frame: &mut Frame, model: &Model, number: usize, confirm: &Confirm, area: Rect) {
    let theme = &model.theme;
    let key = |k: &'static str| Span::styled(k, theme.key());
    let (heading, lines) = match confirm {
        Confirm::Delete {
            subtask,
            dependents,
        } => (
            "Delete a subtask?",
            vec![
                Line::from(format!(
                    "{} depend{} on `{}`.",
                    backticked(dependents),
                    if dependents.len() == 1 { "s" } else { "" },
                    sanitize_line(subtask.as_str())
                )),
                Line::from("Deleting it drops it from their dependencies."),
                Line::default(),
                Line::from(vec![
                    key("y"),
                    Span::raw(" delete   "),
                    key("any other key"),
                    Span::raw(" keep it"),
                ]),
            ],
        ),
        Confirm::Cancel => (
            "Cancel the run?",
            vec![
                Line::from(format!("Run #{number} has not called any worker yet.")),
                Line::default(),
                Line::from(vec![
                    key("y"),
                    Span::raw(" cancel it   "),
                    key("l"),
                    Span::raw(" later (P)   "),
                    key("any other key"),
                    Span::raw(" back"),
                ]),
            ],
        ),
    };
    let rect = crate::tui::view::centered(
        area,
        64.min(area.width.saturating_sub(4)),
        lines.len() as u16 + 2,
    );
    let inside = crate::tui::view::popup(frame, rect, theme, heading, "");
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inside);
}
