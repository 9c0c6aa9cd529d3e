//! Checking a decoded plan: strict about what would break a run (empty or duplicate ids,
//! unknown dependencies, cycles), repairing with a warning what merely degrades it (too many
//! subtasks, unknown roles, more than one custom role), and giving subtasks without a role the
//! default one.

use std::collections::{HashMap, HashSet};

use super::{CheckedPlan, Plan, PlanError, PlanRules, PlannedSubtask, backticked};
use crate::engine::roles::{CUSTOM_ROLE, same_name};
use crate::protocol::SubtaskId;

pub(super) fn clean_id(id: &str) -> String {
    crate::sanitize::sanitize_line(id).trim().to_owned()
}

/// Check a decoded plan (a planner's answer, a plan file, a saved plan) against `rules`.
///
/// Order matters and is deliberate: ids, dependencies and cycles are validated on the *full*
/// plan, so an error names what the planner actually wrote (a cycle through a subtask that
/// would have been cut is still the planner's mistake, and the retry message must say so).
/// Only then is the plan cut to `max_subtasks`, dependencies on cut subtasks are dropped, and
/// roles are resolved (after the cut, so there are no warnings about subtasks that are gone).
/// Checking a checked plan changes nothing and warns of nothing.
pub fn check_plan(mut plan: Plan, rules: &PlanRules) -> Result<CheckedPlan, PlanError> {
    let mut warnings = Vec::new();

    for task in &mut plan.subtasks {
        // Ids are shown everywhere (tree rows, progress lines, event files): no control
        // characters or escape sequences in them, whatever the planner wrote.
        task.id.0 = clean_id(&task.id.0);
        trim_in_place(&mut task.worker);
        trim_in_place(&mut task.title);
        trim_in_place(&mut task.description);
        // A blank model is no choice: the role's or the run's model is used.
        task.model = task
            .model
            .take()
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty());
        // Duplicates in depends_on say nothing the first mention did not; drop them quietly.
        let mut seen = HashSet::new();
        task.depends_on = std::mem::take(&mut task.depends_on)
            .into_iter()
            .map(|d| SubtaskId(clean_id(&d.0)))
            .filter(|d| !d.0.is_empty() && seen.insert(d.clone()))
            .collect();
    }

    if plan.subtasks.is_empty() {
        return Err(PlanError::Empty);
    }

    let mut ids = HashSet::new();
    for (i, task) in plan.subtasks.iter().enumerate() {
        if task.id.0.is_empty() {
            return Err(PlanError::Invalid {
                at: format!("subtasks[{i}].id"),
                problem: "is empty".to_owned(),
            });
        }
        if !ids.insert(task.id.as_str()) {
            return Err(PlanError::DuplicateId(task.id.0.clone()));
        }
    }
    for task in &plan.subtasks {
        if let Some(missing) = task.depends_on.iter().find(|d| !ids.contains(d.as_str())) {
            return Err(PlanError::UnknownDependency {
                subtask: task.id.0.clone(),
                missing: missing.0.clone(),
            });
        }
    }
    if let Some(cycle) = find_cycle(&plan.subtasks) {
        return Err(PlanError::Cycle(cycle));
    }

    // A plan always keeps at least one subtask, whatever the configured cap says.
    let max = rules.max_subtasks.max(1);
    if plan.subtasks.len() > max {
        warnings.push(format!(
            "plan had {} subtasks; kept the first {max} (max_subtasks)",
            plan.subtasks.len()
        ));
        plan.subtasks.truncate(max);
        let kept: HashSet<SubtaskId> = plan.subtasks.iter().map(|t| t.id.clone()).collect();
        for task in &mut plan.subtasks {
            let (keep, cut): (Vec<_>, Vec<_>) = std::mem::take(&mut task.depends_on)
                .into_iter()
                .partition(|d| kept.contains(d));
            if !cut.is_empty() {
                warnings.push(format!(
                    "subtask `{}` no longer depends on {}, which was cut by max_subtasks",
                    task.id,
                    backticked(cut.iter().map(SubtaskId::as_str))
                ));
            }
            task.depends_on = keep;
        }
    }

    // The first custom role prompt is the plan's custom role; a subtask with another one is
    // given the default role, so a plan never has more than one role nobody reviewed.
    let mut custom: Option<String> = None;
    for task in &mut plan.subtasks {
        if let Some(prompt) = task.role_prompt.take() {
            let prompt = prompt.trim().to_owned();
            if !same_name(&task.worker, CUSTOM_ROLE) || prompt.is_empty() {
                // A prompt on a listed role, or an empty one, says nothing to use.
                if same_name(&task.worker, CUSTOM_ROLE) {
                    task.worker.clear();
                    warnings.push(format!(
                        "subtask `{}`: role `{CUSTOM_ROLE}` without a `role_prompt`; using `{}`",
                        task.id, rules.default_role
                    ));
                }
            } else if custom.as_ref().is_none_or(|c| *c == prompt) {
                custom = Some(prompt.clone());
                task.worker = CUSTOM_ROLE.to_owned();
                task.role_prompt = Some(prompt);
                continue;
            } else {
                warnings.push(format!(
                    "subtask `{}`: a second custom role; only one is allowed per plan, so \
                     using `{}`",
                    task.id, rules.default_role
                ));
                task.worker.clear();
            }
        }
        match rules.roles.iter().find(|r| same_name(r, &task.worker)) {
            // Use the role's own spelling so later lookups need not care about case.
            Some(role) => task.worker.clone_from(role),
            None if same_name(&task.worker, CUSTOM_ROLE) => {
                warnings.push(format!(
                    "subtask `{}`: role `{CUSTOM_ROLE}` without a `role_prompt`; using `{}`",
                    task.id, rules.default_role
                ));
                task.worker.clone_from(&rules.default_role);
            }
            None => {
                if !task.worker.is_empty() {
                    warnings.push(format!(
                        "subtask `{}`: unknown worker role `{}`; using `{}`",
                        task.id, task.worker, rules.default_role
                    ));
                }
                task.worker.clone_from(&rules.default_role);
            }
        }
    }

    Ok(CheckedPlan { plan, warnings })
}

fn trim_in_place(s: &mut String) {
    let trimmed = s.trim();
    if trimmed.len() != s.len() {
        *s = trimmed.to_owned();
    }
}

/// The first cycle found (in plan order), as ids along `depends_on` edges with the first id
/// repeated at the end: `a → b → c → a`. All dependencies must name known ids.
fn find_cycle(tasks: &[PlannedSubtask]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }

    fn visit(
        i: usize,
        tasks: &[PlannedSubtask],
        index: &HashMap<&str, usize>,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        marks[i] = Mark::OnPath;
        path.push(i);
        for dep in &tasks[i].depends_on {
            let Some(&j) = index.get(dep.as_str()) else {
                continue;
            };
            match marks[j] {
                Mark::OnPath => {
                    let from = path.iter().position(|&k| k == j).unwrap_or(0);
                    let mut cycle: Vec<String> = path[from..]
                        .iter()
                        .map(|&k| tasks[k].id.0.clone())
                        .collect();
                    cycle.push(tasks[j].id.0.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(j, tasks, index, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        None
    }

    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut marks = vec![Mark::New; tasks.len()];
    let mut path = Vec::new();
    (0..tasks.len()).find_map(|i| {
        if marks[i] == Mark::New {
            visit(i, tasks, &index, &mut marks, &mut path)
        } else {
            None
        }
    })
}
