//! What is wrong with a plan a person is editing before it runs: every problem, each with the
//! subtask it belongs to, so a review can show them in place while the person types.
//!
//! Stricter than [`super::check_plan`], never looser: every plan `check_plan` rejects has a
//! problem here, so a plan without problems always passes it. On top of what would break a
//! run, a review also refuses what the check would repair silently or with a warning (an
//! empty title or description, an unknown role, more subtasks than `max_subtasks`), because
//! the person is there to fix it. Pure.

use std::collections::{HashMap, HashSet};

use super::check::clean_id;
use super::{Plan, PlanRules, custom_role_prompt};
use crate::engine::roles::same_name;
use crate::protocol::SubtaskId;

/// One problem of a plan under review; `subtask` is the subtask it is shown on (`None`: the
/// plan as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanProblem {
    pub subtask: Option<SubtaskId>,
    pub message: String,
}

impl PlanProblem {
    fn on(subtask: &str, message: String) -> Self {
        Self {
            subtask: (!subtask.is_empty()).then(|| SubtaskId::new(subtask)),
            message,
        }
    }
}

/// Every problem of `plan` under `rules`, in plan order (then the cycles, then the plan's
/// size); empty when the plan may run. `ApprovePlan` is refused exactly when this is not
/// empty. Ids are compared as the check compares them (trimmed, without control
/// characters).
pub fn review_problems(plan: &Plan, rules: &PlanRules) -> Vec<PlanProblem> {
    let mut problems = Vec::new();
    if plan.subtasks.is_empty() {
        problems.push(PlanProblem {
            subtask: None,
            message: "the plan has no subtasks".to_owned(),
        });
        return problems;
    }
    let ids: Vec<String> = plan.subtasks.iter().map(|t| clean_id(&t.id.0)).collect();
    // The first subtask with an id is the one its dependents mean.
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        if !id.is_empty() {
            index.entry(id.as_str()).or_insert(i);
        }
    }

    let mut custom_prompt: Option<&str> = None;
    for (i, (task, id)) in plan.subtasks.iter().zip(&ids).enumerate() {
        let name = if id.is_empty() {
            format!("subtask {}", i + 1)
        } else {
            format!("subtask `{id}`")
        };
        if id.is_empty() {
            problems.push(PlanProblem::on(id, format!("{name} has no id")));
        } else if index.get(id.as_str()) != Some(&i) {
            problems.push(PlanProblem::on(
                id,
                format!("two subtasks share the id `{id}`"),
            ));
        }
        if task.title.trim().is_empty() {
            problems.push(PlanProblem::on(id, format!("{name} has no title")));
        }
        if task.description.trim().is_empty() {
            problems.push(PlanProblem::on(id, format!("{name} has no description")));
        }
        let role = task.worker.trim();
        if let Some(prompt) = custom_role_prompt(task) {
            // The check keeps one custom role per plan and gives the others the default.
            match custom_prompt {
                Some(first) if first.trim() != prompt.trim() => problems.push(PlanProblem::on(
                    id,
                    format!(
                        "{name} has a second custom role; a plan may have one (pick a listed \
                         role)"
                    ),
                )),
                _ => custom_prompt = Some(prompt),
            }
        } else if !role.is_empty() && !rules.roles.iter().any(|r| same_name(r, role)) {
            problems.push(PlanProblem::on(
                id,
                format!(
                    "{name} has the unknown role `{role}` (roles: {})",
                    rules.roles.join(", ")
                ),
            ));
        }
        let mut seen = HashSet::new();
        for dep in &task.depends_on {
            let dep = clean_id(&dep.0);
            if dep.is_empty() || !seen.insert(dep.clone()) {
                continue;
            }
            if !id.is_empty() && dep == *id {
                problems.push(PlanProblem::on(id, format!("{name} depends on itself")));
            } else if !index.contains_key(dep.as_str()) {
                problems.push(PlanProblem::on(
                    id,
                    format!("{name} depends on `{dep}`, which is not in the plan"),
                ));
            }
        }
    }

    for cycle in cycles(plan, &ids, &index) {
        problems.push(PlanProblem::on(
            &cycle[0],
            format!("the dependencies form a cycle: {}", cycle.join(" → ")),
        ));
    }

    let max = rules.max_subtasks.max(1);
    if plan.subtasks.len() > max {
        problems.push(PlanProblem {
            subtask: None,
            message: format!(
                "the plan has {} subtasks; at most {max} may run (max_subtasks)",
                plan.subtasks.len()
            ),
        });
    }
    problems
}

/// One cycle of each group of subtasks that depend on each other round (a strongly connected
/// component of two or more), as ids with the first repeated at the end: `a → b → a`.
/// Self-dependencies are reported on their own and not here.
fn cycles(plan: &Plan, ids: &[String], index: &HashMap<&str, usize>) -> Vec<Vec<String>> {
    let n = plan.subtasks.len();
    let edges: Vec<Vec<usize>> = plan
        .subtasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut to: Vec<usize> = t
                .depends_on
                .iter()
                .filter_map(|d| index.get(clean_id(&d.0).as_str()).copied())
                .filter(|&j| j != i)
                .collect();
            to.dedup();
            to
        })
        .collect();
    let components = strongly_connected(&edges);
    let mut found = Vec::new();
    let mut reported = vec![false; n];
    // In plan order of each component's first subtask.
    let mut ordered: Vec<Vec<usize>> = components.into_iter().filter(|c| c.len() > 1).collect();
    for c in &mut ordered {
        c.sort_unstable();
    }
    ordered.sort_by_key(|c| c[0]);
    for component in ordered {
        if component.iter().any(|&i| reported[i]) {
            continue;
        }
        let inside: HashSet<usize> = component.iter().copied().collect();
        if let Some(path) = path_back(component[0], &edges, &inside) {
            let mut cycle: Vec<String> = path.iter().map(|&k| ids[k].clone()).collect();
            cycle.push(ids[component[0]].clone());
            found.push(cycle);
        }
        for i in component {
            reported[i] = true;
        }
    }
    found
}

/// A shortest path from `start` along `edges` back to `start`, inside `inside`, as the nodes
/// before the return (breadth first, so the cycle shown is a short one).
fn path_back(start: usize, edges: &[Vec<usize>], inside: &HashSet<usize>) -> Option<Vec<usize>> {
    let mut came_from: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &next in &edges[node] {
            if !inside.contains(&next) {
                continue;
            }
            if next == start {
                let mut path = vec![node];
                let mut at = node;
                while at != start {
                    at = *came_from.get(&at)?;
                    path.push(at);
                }
                path.reverse();
                return Some(path);
            }
            if next != start && !came_from.contains_key(&next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

/// Tarjan's strongly connected components, iterative (a plan from a file may be long).
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, next edge to look at)
        let mut work = vec![(root, 0usize)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&(v, e)) = work.last() {
            if let Some(&w) = edges[v].get(e) {
                if let Some(top) = work.last_mut() {
                    top.1 += 1;
                }
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}
