//! The plan's reading and checking, case by case: extraction, lenient decoding and its
//! defaults, error messages, checks and repairs, and the serde contract.

use rstest::rstest;
use serde_json::Value;

use super::*;
use crate::protocol::{Complexity, SubtaskId};

fn rules() -> PlanRules {
    PlanRules {
        max_subtasks: 6,
        roles: ["analysis", "research", "compare", "critique", "writing"]
            .map(String::from)
            .to_vec(),
        default_role: "analysis".to_owned(),
    }
}

const TWO_TASKS: &str = r#"{
  "query_analysis": "impacts of EVs",
  "subtasks": [
    {"id": "task_1", "worker": "research", "title": "Emissions", "description": "Tailpipe and grid emissions",
     "focus_areas": ["CO2", "NOx"], "depends_on": [], "priority": "high"},
    {"id": "task_2", "worker": "analysis", "title": "Costs", "description": "Costs for cities",
     "focus_areas": [], "depends_on": ["task_1"], "priority": "low"}
  ],
  "synthesis_guidance": "lead with emissions"
}"#;

fn task(id: &str, deps: &[&str]) -> PlannedSubtask {
    PlannedSubtask {
        id: SubtaskId::new(id),
        worker: "analysis".to_owned(),
        title: format!("Title {id}"),
        description: format!("Description {id}"),
        focus_areas: Vec::new(),
        depends_on: deps.iter().map(|d| SubtaskId::new(*d)).collect(),
        priority: Priority::Medium,
        reuse: None,
        role_prompt: None,
        model: None,
    }
}

fn plan_of(tasks: Vec<PlannedSubtask>) -> Plan {
    Plan {
        query_analysis: String::new(),
        subtasks: tasks,
        synthesis_guidance: String::new(),
        complexity: None,
    }
}

fn ids(plan: &Plan) -> Vec<&str> {
    plan.subtasks.iter().map(|t| t.id.as_str()).collect()
}

fn parse(answer: &str) -> CheckedPlan {
    parse_plan(answer, &rules()).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_err(answer: &str) -> PlanError {
    parse_plan(answer, &rules()).expect_err("the answer is not a usable plan")
}

fn expected_two_tasks() -> Plan {
    Plan {
        query_analysis: "impacts of EVs".to_owned(),
        subtasks: vec![
            PlannedSubtask {
                id: SubtaskId::new("task_1"),
                worker: "research".to_owned(),
                title: "Emissions".to_owned(),
                description: "Tailpipe and grid emissions".to_owned(),
                focus_areas: vec!["CO2".to_owned(), "NOx".to_owned()],
                depends_on: vec![],
                priority: Priority::High,
                reuse: None,
                role_prompt: None,
                model: None,
            },
            PlannedSubtask {
                id: SubtaskId::new("task_2"),
                worker: "analysis".to_owned(),
                title: "Costs".to_owned(),
                description: "Costs for cities".to_owned(),
                focus_areas: vec![],
                depends_on: vec![SubtaskId::new("task_1")],
                priority: Priority::Low,
                reuse: None,
                role_prompt: None,
                model: None,
            },
        ],
        synthesis_guidance: "lead with emissions".to_owned(),
        complexity: None,
    }
}

// --- extraction ---

#[test]
fn raw_json_is_parsed_exactly() {
    let checked = parse(TWO_TASKS);
    assert_eq!(checked.plan, expected_two_tasks());
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
}

/// Where the plan may stand in an answer: `{plan}` is replaced by a valid plan.
#[rstest]
#[case::json_fence("Here is the plan:\n\n```json\n{plan}\n```\n\nGood luck!")]
#[case::bare_fence("```\n{plan}\n```")]
#[case::uppercase_fence("```JSON\n{plan}\n```")]
#[case::unclosed_fence("```json\n{plan}")]
#[case::after_a_fence_in_another_language(
    "```python\nprint({'subtasks': 1})\n```\nand the plan:\n```json\n{plan}\n```"
)]
#[case::between_prose("Sure! I split it up as follows. {plan} Let me know if…")]
#[case::followed_by_prose("{plan}\n\nThis plan covers the main angles.")]
#[case::after_a_non_plan_object("Format: {\"note\": \"example\"}. The plan: {plan}")]
#[case::after_a_stray_brace("Use {curly braces properly. {plan}")]
#[case::wrapped_in_an_outer_object("{\"plan\": {plan}}")]
#[case::indented("   \n\t{plan}\n  ")]
fn the_plan_is_found_wherever_it_stands(#[case] template: &str) {
    let answer = template.replace("{plan}", TWO_TASKS);
    let checked = parse(&answer);
    assert_eq!(checked.plan, expected_two_tasks());
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
}

#[test]
fn braces_and_escaped_quotes_inside_strings_do_not_confuse_the_scanner() {
    let answer = r#"Plan: {"subtasks": [{"id": "a", "title": "Sets {x}", "description": "a \"quoted\" } brace and a \\ backslash {"}]} trailing } text"#;
    let plan = parse(answer).plan;
    assert_eq!(plan.subtasks[0].title, "Sets {x}");
    assert_eq!(
        plan.subtasks[0].description,
        r#"a "quoted" } brace and a \ backslash {"#
    );
}

#[test]
fn a_bare_list_of_subtasks_is_a_plan() {
    let plan = parse(r#"[{"title": "One"}, {"title": "Two"}]"#).plan;
    assert_eq!(ids(&plan), ["task_1", "task_2"]);
}

#[test]
fn trailing_commas_are_forgiven() {
    let answer = r#"{"subtasks": [{"id": "a", "title": "A", "focus_areas": ["x",],},],}"#;
    let plan = parse(answer).plan;
    assert_eq!(plan.subtasks[0].focus_areas, ["x"]);
}

// --- lenient decoding and defaults ---

#[test]
fn missing_optional_fields_get_defaults() {
    let plan =
        parse(r#"{"subtasks": [{"title": "Emissions", "description": "Measure them"}]}"#).plan;
    let t = &plan.subtasks[0];
    assert_eq!(t.id.as_str(), "task_1");
    assert_eq!(t.worker, "analysis");
    assert_eq!(t.priority, Priority::Medium);
    assert!(t.depends_on.is_empty());
    assert!(t.focus_areas.is_empty());
    assert_eq!(plan.query_analysis, "");
    assert_eq!(plan.synthesis_guidance, "");
}

#[test]
fn description_defaults_to_title_and_title_to_the_first_words_of_description() {
    let plan = parse(
            r#"{"subtasks": [
                {"title": "Only a title"},
                {"description": "Estimate the effect of congestion pricing on inner-city traffic volumes over ten years"},
                {"description": "Short one"}
            ]}"#,
        )
        .plan;
    assert_eq!(plan.subtasks[0].description, "Only a title");
    assert_eq!(
        plan.subtasks[1].title,
        "Estimate the effect of congestion pricing on inner-city…"
    );
    assert_eq!(plan.subtasks[2].title, "Short one");
}

#[test]
fn generated_ids_avoid_ids_given_elsewhere() {
    let plan =
        parse(r#"{"subtasks": [{"title": "A"}, {"id": "task_1", "title": "B"}, {"title": "C"}]}"#)
            .plan;
    assert_eq!(ids(&plan), ["task_1_2", "task_1", "task_3"]);
}

#[test]
fn numeric_ids_and_a_single_string_dependency_are_accepted() {
    let plan = parse(
        r#"{"subtasks": [
                {"id": 1, "title": "A"},
                {"id": 2, "title": "B", "depends_on": 1},
                {"id": "3", "title": "C", "depends_on": "2", "focus_areas": "one area"}
            ]}"#,
    )
    .plan;
    assert_eq!(ids(&plan), ["1", "2", "3"]);
    assert_eq!(plan.subtasks[1].depends_on, [SubtaskId::new("1")]);
    assert_eq!(plan.subtasks[2].depends_on, [SubtaskId::new("2")]);
    assert_eq!(plan.subtasks[2].focus_areas, ["one area"]);
}

#[rstest]
#[case::lowercase(r#""high""#, Priority::High, None)]
#[case::capitalised(r#""High""#, Priority::High, None)]
#[case::shouting(r#""LOW""#, Priority::Low, None)]
#[case::padded(r#"" medium ""#, Priority::Medium, None)]
#[case::empty(r#""""#, Priority::Medium, None)]
#[case::null("null", Priority::Medium, None)]
#[case::unknown(
    r#""urgent""#,
    Priority::Medium,
    Some("subtask `a`: unknown priority `urgent`; using medium")
)]
#[case::a_number(
    "1",
    Priority::Medium,
    Some("subtask `a`: priority 1 is not high, medium or low; using medium")
)]
fn priority_is_read_in_any_case_and_unknown_ones_warn(
    #[case] json: &str,
    #[case] expected: Priority,
    #[case] warning: Option<&str>,
) {
    let checked = parse(&format!(
        r#"{{"subtasks": [{{"id": "a", "title": "A", "priority": {json}}}]}}"#
    ));
    assert_eq!(checked.plan.subtasks[0].priority, expected);
    assert_eq!(checked.warnings, warning.into_iter().collect::<Vec<_>>());
}

#[test]
fn ids_roles_and_dependencies_are_trimmed_and_roles_matched_ignoring_case() {
    let checked = parse(
        r#"{"subtasks": [
                {"id": " a ", "worker": " Research ", "title": "A"},
                {"id": "b", "worker": "CRITIQUE", "title": "B", "depends_on": [" a ", "a"]}
            ]}"#,
    );
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
    let plan = checked.plan;
    assert_eq!(ids(&plan), ["a", "b"]);
    assert_eq!(plan.subtasks[0].worker, "research");
    assert_eq!(plan.subtasks[1].worker, "critique");
    assert_eq!(plan.subtasks[1].depends_on, [SubtaskId::new("a")]);
}

#[test]
fn list_guidance_is_joined_into_lines() {
    let plan =
        parse(r#"{"subtasks": [{"title": "A"}], "synthesis_guidance": ["one", "two"]}"#).plan;
    assert_eq!(plan.synthesis_guidance, "one\ntwo");
}

// --- errors from parsing, with their messages ---

#[test]
fn no_json_at_all_is_no_json() {
    let err = parse_err("I cannot help with that.");
    assert_eq!(err, PlanError::NoJson);
    assert_eq!(
        err.to_string(),
        "no JSON object found in the planner's answer"
    );
}

#[test]
fn broken_json_reports_line_and_column_in_the_answer() {
    // The missing comma is on line 3 of the answer; the object itself starts on line 2.
    let err = parse_err("Here you go:\n{\"subtasks\": [\n  {\"id\": \"a\" \"title\": \"A\"}\n]}");
    assert_eq!(
        err.to_string(),
        "the plan is not valid JSON: expected `,` or `}` at line 3 column 14"
    );
}

#[test]
fn error_column_on_the_first_line_counts_from_the_start_of_the_answer() {
    let err = parse_err(r#"Plan: {"subtasks": [1 2]}"#);
    assert_eq!(
        err,
        PlanError::Json("expected `,` or `]` at line 1 column 23".to_owned())
    );
}

#[test]
fn a_cut_off_plan_is_reported_as_such() {
    let cut = &TWO_TASKS[..TWO_TASKS.len() / 2];
    let err = parse_err(&format!("```json\n{cut}"));
    let PlanError::Json(message) = &err else {
        panic!("expected a JSON error, got {err:?}");
    };
    assert!(message.starts_with("EOF while parsing"), "{message}");
}

#[test]
fn json_without_subtasks_says_so_and_lists_its_keys() {
    let err = parse_err(r#"{"query_analysis": "x", "tasks": []}"#);
    assert_eq!(
        err,
        PlanError::MissingSubtasks(vec!["query_analysis".to_owned(), "tasks".to_owned()])
    );
    assert_eq!(
        err.to_string(),
        "the JSON has no `subtasks` list (found only `query_analysis`, `tasks`)"
    );
}

#[rstest]
#[case::subtasks_a_string(
    r#"{"subtasks": "do it"}"#,
    "`subtasks` must be a list of subtasks, not a string"
)]
#[case::subtask_a_number(
    r#"{"subtasks": [{"title": "A"}, 3]}"#,
    "`subtasks[1]` must be an object, not a number"
)]
#[case::id_a_boolean(
    r#"{"subtasks": [{"id": true, "title": "A"}]}"#,
    "`subtasks[0].id` must be a string or a number, not a boolean"
)]
#[case::title_a_list(
    r#"{"subtasks": [{"title": ["A"]}]}"#,
    "`subtasks[0].title` must be a string, not a list"
)]
#[case::worker_an_object(
    r#"{"subtasks": [{"title": "A", "worker": {"name": "x"}}]}"#,
    "`subtasks[0].worker` must be a string, not an object"
)]
#[case::dependency_an_object(
    r#"{"subtasks": [{"title": "A", "depends_on": [{"id": "b"}]}]}"#,
    "`subtasks[0].depends_on[0]` must be a string, not an object"
)]
#[case::single_dependency_a_boolean(
    r#"{"subtasks": [{"title": "A", "depends_on": false}]}"#,
    "`subtasks[0].depends_on` must be a string, not a boolean"
)]
#[case::no_title_nor_description(
    r#"{"subtasks": [{"id": "a", "focus_areas": ["x"]}]}"#,
    "`subtasks[0]` has neither a title nor a description"
)]
#[case::top_level_a_list_of_strings(r#"["a", "b"]"#, "the JSON has no `subtasks` list")]
#[case::no_json(
    "I cannot help with that.",
    "no JSON object found in the planner's answer"
)]
#[case::empty_list(r#"{"subtasks": []}"#, "the plan has no subtasks")]
#[case::null_subtasks(r#"{"subtasks": null}"#, "the plan has no subtasks")]
fn unusable_answers_say_what_is_wrong_where(#[case] answer: &str, #[case] message: &str) {
    assert_eq!(parse_err(answer).to_string(), message);
}

#[test]
fn an_empty_subtask_list_is_empty() {
    let err = parse_err(r#"{"subtasks": []}"#);
    assert_eq!(err, PlanError::Empty);
    assert_eq!(err.to_string(), "the plan has no subtasks");
}

#[test]
fn the_first_plan_found_decides_even_when_it_is_invalid() {
    // A later, valid-looking object is more likely an example than a better plan.
    let answer = format!(
        "{{\"subtasks\": [{{\"id\": \"a\", \"title\": \"A\", \"depends_on\": [\"a\"]}}]}} \
             and {TWO_TASKS}"
    );
    assert_eq!(
        parse_err(&answer),
        PlanError::Cycle(vec!["a".into(), "a".into()])
    );
}

// --- checking ---

#[test]
fn duplicate_ids_are_refused() {
    let err = check_plan(plan_of(vec![task("a", &[]), task(" a", &[])]), &rules())
        .expect_err("duplicate");
    assert_eq!(err, PlanError::DuplicateId("a".to_owned()));
    assert_eq!(err.to_string(), "two subtasks share the id `a`");
}

#[test]
fn an_empty_id_is_refused() {
    let err =
        check_plan(plan_of(vec![task("a", &[]), task("  ", &[])]), &rules()).expect_err("empty id");
    assert_eq!(err.to_string(), "`subtasks[1].id` is empty");
}

#[test]
fn unknown_dependencies_are_refused() {
    let err = check_plan(plan_of(vec![task("a", &[]), task("b", &["zz"])]), &rules())
        .expect_err("unknown dependency");
    assert_eq!(
        err.to_string(),
        "subtask `b` depends on `zz`, which is not in the plan"
    );
}

#[test]
fn a_self_dependency_is_a_cycle() {
    let err = check_plan(plan_of(vec![task("a", &["a"])]), &rules()).expect_err("cycle");
    assert_eq!(err.to_string(), "the dependencies form a cycle: a → a");
}

#[test]
fn a_cycle_is_reported_along_its_path() {
    let plan = plan_of(vec![
        task("start", &["a"]),
        task("a", &["b"]),
        task("b", &["c"]),
        task("c", &["a"]),
    ]);
    let err = check_plan(plan, &rules()).expect_err("cycle");
    assert_eq!(
        err,
        PlanError::Cycle(["a", "b", "c", "a"].map(String::from).to_vec())
    );
    assert_eq!(
        err.to_string(),
        "the dependencies form a cycle: a → b → c → a"
    );
}

#[test]
fn a_diamond_is_not_a_cycle() {
    let plan = plan_of(vec![
        task("d", &["b", "c"]),
        task("b", &["a"]),
        task("c", &["a"]),
        task("a", &[]),
    ]);
    assert!(check_plan(plan, &rules()).is_ok());
}

#[test]
fn duplicate_dependencies_are_dropped_silently() {
    let checked = check_plan(
        plan_of(vec![task("a", &[]), task("b", &["a", "a", " a"])]),
        &rules(),
    )
    .expect("valid");
    assert_eq!(checked.plan.subtasks[1].depends_on, [SubtaskId::new("a")]);
    assert!(checked.warnings.is_empty());
}

#[test]
fn an_unknown_role_becomes_the_default_with_a_warning() {
    let mut t = task("poem", &[]);
    t.worker = "poet".to_owned();
    let checked = check_plan(plan_of(vec![t]), &rules()).expect("valid");
    assert_eq!(checked.plan.subtasks[0].worker, "analysis");
    assert_eq!(
        checked.warnings,
        ["subtask `poem`: unknown worker role `poet`; using `analysis`"]
    );
}

#[test]
fn too_many_subtasks_are_cut_and_dependencies_on_cut_ones_dropped() {
    let rules = PlanRules {
        max_subtasks: 2,
        ..rules()
    };
    let plan = plan_of(vec![
        task("a", &["c"]),
        task("b", &["a", "d"]),
        task("c", &[]),
        task("d", &[]),
    ]);
    let checked = check_plan(plan, &rules).expect("valid");
    assert_eq!(ids(&checked.plan), ["a", "b"]);
    assert!(checked.plan.subtasks[0].depends_on.is_empty());
    assert_eq!(checked.plan.subtasks[1].depends_on, [SubtaskId::new("a")]);
    assert_eq!(
        checked.warnings,
        [
            "plan had 4 subtasks; kept the first 2 (max_subtasks)",
            "subtask `a` no longer depends on `c`, which was cut by max_subtasks",
            "subtask `b` no longer depends on `d`, which was cut by max_subtasks",
        ]
    );
}

#[test]
fn errors_refer_to_the_full_plan_before_it_is_cut() {
    let rules = PlanRules {
        max_subtasks: 1,
        ..rules()
    };
    let plan = plan_of(vec![task("a", &[]), task("b", &["c"]), task("c", &["b"])]);
    let err = check_plan(plan, &rules).expect_err("cycle beyond the cap");
    assert_eq!(
        err,
        PlanError::Cycle(["b", "c", "b"].map(String::from).to_vec())
    );
}

#[test]
fn roles_of_cut_subtasks_are_not_warned_about() {
    let rules = PlanRules {
        max_subtasks: 1,
        ..rules()
    };
    let mut cut = task("b", &[]);
    cut.worker = "poet".to_owned();
    let checked = check_plan(plan_of(vec![task("a", &[]), cut]), &rules).expect("valid");
    assert_eq!(
        checked.warnings,
        ["plan had 2 subtasks; kept the first 1 (max_subtasks)"]
    );
}

#[test]
fn checking_a_checked_plan_changes_nothing() {
    let once = parse(TWO_TASKS);
    let twice = check_plan(once.plan.clone(), &rules()).expect("still valid");
    assert_eq!(twice.plan, once.plan);
    assert!(twice.warnings.is_empty());
}

#[test]
fn rules_for_roles_take_the_first_as_default() {
    let roles = crate::engine::roles::builtin_roles();
    let rules = PlanRules::for_roles(&roles, 5);
    assert_eq!(rules.default_role, "analysis");
    assert_eq!(rules.roles.len(), roles.len());
    assert_eq!(rules.max_subtasks, 5);
}

// --- the serde contract ---

#[test]
fn plan_round_trips_through_serde_json() {
    let plan = expected_two_tasks();
    let json = serde_json::to_string_pretty(&plan).expect("serialises");
    let back: Plan = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back, plan);
    // The documented field names and the lowercase priority are the contract.
    let value: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(value["subtasks"][1]["depends_on"][0], "task_1");
    assert_eq!(value["subtasks"][0]["priority"], "high");
    assert_eq!(value["subtasks"][0]["worker"], "research");
}

// ---- drafts of a streaming answer ------------------------------------------------------------

const STREAMED: &str = r#"Here is the plan:
```json
{"query_analysis": "Two parts {with braces}.",
 "subtasks": [
  {"id": "a", "title": "Emissions", "description": "Measure them", "depends_on": []},
  {"title": "Grid \"load\" }", "description": "Peaks", "depends_on": "a"},
  {"id": "c", "title": "Costs", "description": "Money", "depends_on": ["a"]}
 ],
 "synthesis_guidance": "Weigh them."}
```"#;

fn draft_ids(text: &str) -> Vec<String> {
    draft_subtasks(text)
        .into_iter()
        .map(|s| s.id.to_string())
        .collect()
}

#[test]
fn every_prefix_of_a_streaming_answer_drafts_exactly_the_complete_subtasks() {
    let ends: Vec<usize> = ["\"depends_on\": []}", "\"depends_on\": \"a\"}", "[\"a\"]}"]
        .iter()
        .map(|close| STREAMED.find(close).expect("in the answer") + close.len())
        .collect();
    for cut in (0..=STREAMED.len()).filter(|&i| STREAMED.is_char_boundary(i)) {
        let complete = ends.iter().filter(|&&end| end <= cut).count();
        let expected: Vec<&str> = ["a", "task_2", "c"][..complete].to_vec();
        assert_eq!(draft_ids(&STREAMED[..cut]), expected, "cut at {cut}");
    }
}

#[test]
fn drafts_are_decoded_like_the_finished_plan() {
    let drafted = draft_subtasks(STREAMED);
    let finished = parse_plan(STREAMED, &rules()).expect("a valid plan").plan;
    assert_eq!(drafted.len(), finished.subtasks.len());
    for (draft, done) in drafted.iter().zip(&finished.subtasks) {
        assert_eq!(draft.id, done.id);
        assert_eq!(draft.title, done.title);
        assert_eq!(draft.depends_on, done.depends_on);
    }
}

#[test]
fn answers_without_a_subtask_list_or_with_an_undecodable_object_draft_what_they_can() {
    assert!(draft_subtasks("").is_empty());
    assert!(draft_subtasks("I think the plan should cover \"subtasks\" of the grid").is_empty());
    assert!(draft_subtasks(r#"{"subtasks": "soon"}"#).is_empty());
    // The second object has an object for a title: the draft stops before it.
    let text = r#"{"subtasks": [{"id": "a", "title": "A"}, {"id": "b", "title": {"x": 1}}, {"id": "c", "title": "C"}"#;
    assert_eq!(draft_ids(text), ["a"]);
}

#[test]
fn the_schema_names_the_roles_and_bounds_the_list() {
    let schema = plan_schema(&rules());
    let subtasks = &schema["properties"]["subtasks"];
    assert_eq!(subtasks["maxItems"], rules().max_subtasks);
    let mut roles = rules().roles;
    roles.push("custom".to_owned());
    assert_eq!(
        subtasks["items"]["properties"]["worker"]["enum"],
        serde_json::json!(roles)
    );
    assert_eq!(
        subtasks["items"]["properties"]["role_prompt"]["type"],
        "string"
    );
    assert_eq!(subtasks["items"]["properties"]["id"]["type"], "string");
    assert_eq!(
        subtasks["items"]["properties"]["depends_on"]["items"]["type"],
        "string"
    );
}

#[test]
fn reuse_is_read_leniently_and_left_out_when_absent() {
    let plan = parse(
        r#"{"subtasks": [
            {"id": "a", "title": "A", "reuse": " task_3 "},
            {"id": "b", "title": "B", "reuse": 2},
            {"id": "c", "title": "C", "reuse": ""},
            {"id": "d", "title": "D"}
        ]}"#,
    )
    .plan;
    let reuse: Vec<Option<&str>> = plan
        .subtasks
        .iter()
        .map(|s| s.reuse.as_ref().map(SubtaskId::as_str))
        .collect();
    assert_eq!(reuse, [Some("task_3"), Some("2"), None, None]);
    // Printed back, a subtask without it has no `reuse` key (plans stay as they were).
    let json = serde_json::to_value(&plan).expect("serialisable");
    assert_eq!(json["subtasks"][0]["reuse"], "task_3");
    assert!(json["subtasks"][3].get("reuse").is_none());
    let err = parse_err(r#"{"subtasks": [{"id": "a", "title": "A", "reuse": ["x"]}]}"#);
    assert!(err.to_string().contains("subtasks[0].reuse"), "{err}");
}

#[rstest]
#[case::exact(r#""straightforward""#, Some(Complexity::Straightforward))]
#[case::any_case_and_dashes(r#"" Breadth-First ""#, Some(Complexity::BreadthFirst))]
#[case::spaces(r#""depth first""#, Some(Complexity::DepthFirst))]
#[case::synonym(r#""simple""#, Some(Complexity::Straightforward))]
#[case::blank(r#""""#, None)]
#[case::null("null", None)]
fn complexity_is_read_leniently(#[case] value: &str, #[case] expected: Option<Complexity>) {
    let text = format!(r#"{{"complexity": {value}, "subtasks": [{{"id": "a", "title": "A"}}]}}"#);
    let checked = parse(&text);
    assert_eq!(checked.plan.complexity, expected);
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
}

#[test]
fn an_unknown_complexity_is_dropped_with_a_warning_and_an_old_plan_has_none() {
    let checked = parse(r#"{"complexity": "hard", "subtasks": [{"id": "a", "title": "A"}]}"#);
    assert_eq!(checked.plan.complexity, None);
    assert!(checked.warnings.iter().any(|w| w.contains("`hard`")));
    let old = parse(TWO_TASKS).plan;
    assert_eq!(old.complexity, None);
    // Printed back, a plan without it has no `complexity` key; with it, the snake_case word.
    let json = serde_json::to_value(&old).expect("serialisable");
    assert!(json.get("complexity").is_none());
    let direct = parse(r#"{"complexity": "straightforward", "subtasks": [{"title": "A"}]}"#).plan;
    let json = serde_json::to_value(&direct).expect("serialisable");
    assert_eq!(json["complexity"], "straightforward");
}

#[test]
fn the_schema_asks_for_the_classification() {
    let schema = plan_schema(&rules());
    assert_eq!(
        schema["properties"]["complexity"]["enum"],
        serde_json::json!(["straightforward", "breadth_first", "depth_first"])
    );
    let required = schema["required"].as_array().expect("a list");
    assert!(required.contains(&serde_json::json!("complexity")));
}

fn custom_plan(subtasks: &[(&str, &str, Option<&str>)]) -> String {
    let subtasks: Vec<Value> = subtasks
        .iter()
        .map(|(id, worker, prompt)| {
            let mut task = serde_json::json!({"id": id, "worker": worker, "title": id});
            if let Some(prompt) = prompt {
                task["role_prompt"] = Value::from(*prompt);
            }
            task
        })
        .collect();
    serde_json::json!({ "subtasks": subtasks }).to_string()
}

#[test]
fn one_custom_role_is_kept_with_its_prompt() {
    let checked = parse(&custom_plan(&[
        ("a", "Custom", Some("  You are a tax lawyer. ")),
        ("b", "custom", Some("You are a tax lawyer.")),
        ("c", "research", None),
    ]));
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
    let tasks = &checked.plan.subtasks;
    assert_eq!(tasks[0].worker, "custom");
    assert_eq!(
        tasks[0].role_prompt.as_deref(),
        Some("You are a tax lawyer.")
    );
    assert_eq!(custom_role_prompt(&tasks[1]), Some("You are a tax lawyer."));
    assert_eq!(custom_role_prompt(&tasks[2]), None);
    // Checking again changes nothing.
    let again = check_plan(checked.plan.clone(), &rules()).expect("valid");
    assert_eq!(again, checked);
    // It travels in the plan's JSON, and only where it is set.
    let json = serde_json::to_value(&checked.plan).expect("serialises");
    assert_eq!(json["subtasks"][0]["role_prompt"], "You are a tax lawyer.");
    assert!(json["subtasks"][2].get("role_prompt").is_none());
}

#[test]
fn a_second_custom_role_gets_the_default_role_with_a_notice() {
    let checked = parse(&custom_plan(&[
        ("a", "custom", Some("You are a tax lawyer.")),
        ("b", "custom", Some("You are a chemist.")),
        ("c", "custom", None),
        ("d", "research", Some("Ignored on a listed role.")),
    ]));
    let tasks = &checked.plan.subtasks;
    let workers: Vec<&str> = tasks.iter().map(|t| t.worker.as_str()).collect();
    assert_eq!(workers, ["custom", "analysis", "analysis", "research"]);
    assert!(tasks[1..].iter().all(|t| t.role_prompt.is_none()));
    assert_eq!(checked.warnings.len(), 2, "{:?}", checked.warnings);
    assert!(
        checked.warnings[0].contains("`b`") && checked.warnings[0].contains("second custom role")
    );
    assert!(checked.warnings[1].contains("`c`") && checked.warnings[1].contains("role_prompt"));
}

// ---- review ----------------------------------------------------------------------------------

fn messages(plan: &Plan) -> Vec<(Option<String>, String)> {
    review_problems(plan, &rules())
        .into_iter()
        .map(|p| (p.subtask.map(|s| s.0), p.message))
        .collect()
}

#[test]
fn a_review_names_every_problem_on_its_subtask() {
    let mut blank = task("d", &["d"]);
    blank.title = " ".into();
    blank.description = String::new();
    blank.worker = "poet".into();
    let plan = plan_of(vec![
        task("a", &["c"]),
        task("b", &["a", "ghost"]),
        task("c", &["b"]),
        blank,
        task("a", &[]),
    ]);
    let found = messages(&plan);
    let on = |id: &str| -> Vec<&str> {
        found
            .iter()
            .filter(|(s, _)| s.as_deref() == Some(id))
            .map(|(_, m)| m.as_str())
            .collect()
    };
    assert_eq!(
        on("b"),
        vec!["subtask `b` depends on `ghost`, which is not in the plan"]
    );
    assert_eq!(
        on("d"),
        vec![
            "subtask `d` has no title",
            "subtask `d` has no description",
            "subtask `d` has the unknown role `poet` (roles: analysis, research, compare, \
             critique, writing)",
            "subtask `d` depends on itself",
        ]
    );
    assert!(
        on("a").contains(&"two subtasks share the id `a`"),
        "{found:?}"
    );
    assert!(
        on("a").contains(&"the dependencies form a cycle: a → c → b → a"),
        "{found:?}"
    );
    assert_eq!(found.len(), 7, "{found:?}");
}

#[test]
fn every_separate_cycle_is_named_once() {
    let plan = plan_of(vec![
        task("a", &["b"]),
        task("b", &["a"]),
        task("c", &["d"]),
        task("d", &["c"]),
        task("e", &["a"]),
    ]);
    let found: Vec<String> = messages(&plan).into_iter().map(|(_, m)| m).collect();
    assert_eq!(
        found,
        vec![
            "the dependencies form a cycle: a → b → a",
            "the dependencies form a cycle: c → d → c",
        ]
    );
}

#[test]
fn a_review_and_the_check_agree_on_what_may_run() {
    let mut custom = task("x", &[]);
    custom.worker = "custom".into();
    custom.role_prompt = Some("You are a tax lawyer.".into());
    let cases = vec![
        plan_of(vec![]),
        plan_of(vec![task("a", &[]), task("b", &["a"])]),
        plan_of(vec![task("a", &["a"])]),
        plan_of(vec![task("a", &[]), task(" a ", &[])]),
        plan_of(vec![task("", &[])]),
        plan_of(vec![task("a", &["b"])]),
        plan_of(vec![task("a", &["b"]), task("b", &["a"])]),
        plan_of(vec![task("a", &[" "]), custom]),
    ];
    for plan in cases {
        let problems = review_problems(&plan, &rules());
        let checked = check_plan(plan.clone(), &rules());
        if problems.is_empty() {
            assert!(checked.is_ok(), "{plan:?}: {checked:?}");
        } else {
            // A review may refuse more than the check; never less.
            if checked.is_err() {
                continue;
            }
            assert!(
                problems.iter().all(|p| !p.message.contains("cycle")
                    && !p.message.contains("not in the plan")
                    && !p.message.contains("share the id")),
                "{problems:?}"
            );
        }
    }
    let too_many = plan_of((0..7).map(|i| task(&format!("t{i}"), &[])).collect());
    assert_eq!(
        messages(&too_many),
        vec![(
            None,
            "the plan has 7 subtasks; at most 6 may run (max_subtasks)".to_owned()
        )]
    );
}

#[test]
fn a_subtask_model_is_read_from_a_plan_and_printed_only_when_set() {
    let text = r#"{"subtasks": [
        {"id": "a", "title": "A", "description": "Do a", "model": " big-model "},
        {"id": "b", "title": "B", "description": "Do b", "model": ""}
    ]}"#;
    let (plan, _) = read_plan_text(text).expect("a plan");
    let checked = check_plan(plan, &rules()).expect("a valid plan");
    assert_eq!(checked.plan.subtasks[0].model.as_deref(), Some("big-model"));
    assert_eq!(checked.plan.subtasks[1].model, None);
    let json = serde_json::to_value(&checked.plan).expect("serialises");
    assert_eq!(json["subtasks"][0]["model"], "big-model");
    assert!(json["subtasks"][1].get("model").is_none());
}
