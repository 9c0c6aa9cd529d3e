//! Fixtures shared by the dashboard tests: a model on a fixed clock, key presses, scripted
//! engine events and a run that shows every subtask state at once. Nothing here draws; the
//! view tests render over `TestBackend`, the model tests only look at state and actions.

#![allow(dead_code)]

use maestro::engine::plan::{Plan, PlannedSubtask, Priority};
use maestro::protocol::{Event, EventKind, RunId, RunStatus, SubtaskId, Usage};
use maestro::tui::model::{Info, Model};
use maestro::tui::theme::Theme;
use maestro::tui::update::{Action, Msg, update};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// The wall clock every test model is frozen at. Events are stamped relative to it.
pub const NOW: u64 = 1_700_000_000_000;

/// The worker roles the edit pop-up cycles through (the default first).
pub const ROLES: [&str; 5] = ["analysis", "research", "compare", "critique", "writing"];

pub fn info(demo: bool) -> Info {
    Info {
        describe: if demo {
            "demo".to_owned()
        } else {
            "openai · gpt-4o-mini".to_owned()
        },
        demo,
        bell: true,
        roles: ROLES.iter().map(|r| (*r).to_owned()).collect(),
    }
}

/// A model at `size` on the fixed clock, without colour.
pub fn model(demo: bool, size: (u16, u16)) -> Model {
    Model::new(info(demo), Theme { color: false }, size, NOW)
}

/// A deterministic run id (`n` distinguishes runs of one test).
pub fn run_id(n: u128) -> RunId {
    RunId(uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_8000_0000_0000_0000 + n,
    ))
}

pub fn sid(id: &str) -> SubtaskId {
    SubtaskId::new(id)
}

/// An event of `run` stamped `ago` milliseconds before `NOW`.
pub fn at(run: RunId, ago: u64, kind: EventKind) -> Event {
    Event {
        run,
        ts_ms: NOW - ago,
        kind,
    }
}

pub fn send(model: &mut Model, event: Event) -> Vec<Action> {
    update(model, Msg::Engine(event))
}

pub fn send_all(model: &mut Model, events: impl IntoIterator<Item = Event>) -> Vec<Action> {
    events
        .into_iter()
        .flat_map(|e| update(model, Msg::Engine(e)))
        .collect()
}

pub fn key(model: &mut Model, code: KeyCode) -> Vec<Action> {
    update(model, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

pub fn key_with(model: &mut Model, code: KeyCode, mods: KeyModifiers) -> Vec<Action> {
    update(model, Msg::Key(KeyEvent::new(code, mods)))
}

pub fn ch(model: &mut Model, c: char) -> Vec<Action> {
    let mods = if c.is_ascii_uppercase() {
        KeyModifiers::SHIFT
    } else {
        KeyModifiers::NONE
    };
    key_with(model, KeyCode::Char(c), mods)
}

pub fn ctrl(model: &mut Model, c: char) -> Vec<Action> {
    key_with(model, KeyCode::Char(c), KeyModifiers::CONTROL)
}

/// Type `text` key by key (no Enter).
pub fn type_text(model: &mut Model, text: &str) -> Vec<Action> {
    text.chars().flat_map(|c| ch(model, c)).collect()
}

pub fn subtask(
    id: &str,
    worker: &str,
    title: &str,
    description: &str,
    depends_on: &[&str],
) -> PlannedSubtask {
    PlannedSubtask {
        id: sid(id),
        worker: worker.to_owned(),
        title: title.to_owned(),
        description: description.to_owned(),
        focus_areas: Vec::new(),
        depends_on: depends_on.iter().map(|d| sid(d)).collect(),
        priority: Priority::Medium,
        reuse: None,
        role_prompt: None,
        model: None,
    }
}

pub fn plan(subtasks: Vec<PlannedSubtask>) -> Plan {
    Plan {
        query_analysis: "The question spans environment, infrastructure, money and fairness."
            .to_owned(),
        subtasks,
        synthesis_guidance: "Lead with the trade-offs.".to_owned(),
        complexity: None,
    }
}

pub const QUERY: &str = "What are the impacts of EV adoption in cities?";

/// `RunStarted` 42 s ago and `PlanningStarted` just after.
pub fn planning_events(run: RunId) -> Vec<Event> {
    vec![
        at(
            run,
            42_000,
            EventKind::RunStarted {
                query: QUERY.to_owned(),
            },
        ),
        at(
            run,
            41_900,
            EventKind::PlanningStarted {
                attempt: 1,
                model: "gpt-4o".to_owned(),
            },
        ),
    ]
}

/// The seven subtasks of the every-state run, in plan order.
pub fn every_state_plan() -> Plan {
    let mut context = subtask(
        "context",
        "research",
        "Background and definitions",
        "Define EV adoption and summarise where cities stand today.",
        &[],
    );
    context.focus_areas = vec!["definitions".into(), "adoption rates".into()];
    plan(vec![
        context,
        subtask(
            "emissions",
            "analysis",
            "Tailpipe and grid emissions",
            "Compare lifecycle emissions of EVs and combustion cars in cities.",
            &[],
        ),
        subtask(
            "grid",
            "research",
            "Grid load and charging infrastructure",
            "How does charging demand affect the urban grid at peak hours?",
            &[],
        ),
        subtask(
            "costs",
            "compare",
            "Costs for households and city budgets",
            "Total cost of ownership for households; subsidies and budget effects for cities.",
            &[],
        ),
        subtask(
            "equity",
            "critique",
            "Equity of access",
            "Who benefits and who is left out, given the cost findings?",
            &["costs"],
        ),
        subtask(
            "health",
            "research",
            "Public health effects",
            "Air quality and noise effects on public health.",
            &[],
        ),
        subtask(
            "policy",
            "writing",
            "Policy recommendations",
            "Recommend policies, drawing on emissions and grid findings.",
            &["emissions", "grid"],
        ),
    ])
}

/// A run 42 s old with one subtask in every state: `context` succeeded, `emissions` running
/// (streaming), `grid` retrying after a 429, `costs` failed three times, `equity` blocked on
/// `costs`, `health` cancelled, `policy` pending on `emissions` and `grid`.
pub fn every_state_events(run: RunId) -> Vec<Event> {
    use EventKind as K;
    let mut events = planning_events(run);
    let started = |id: &str, attempt: u32, worker: &str, ago: u64| {
        at(
            run,
            ago,
            K::SubtaskStarted {
                subtask: sid(id),
                attempt,
                worker: worker.to_owned(),
                model: "gpt-4o-mini".to_owned(),
            },
        )
    };
    events.push(at(
        run,
        38_000,
        K::PlanReady {
            plan: every_state_plan(),
        },
    ));
    // context: done in 3.1 s, 1.2k tokens.
    events.push(started("context", 1, "research", 37_900));
    events.push(at(
        run,
        37_000,
        K::SubtaskDelta {
            subtask: sid("context"),
            attempt: 1,
            text: "EV adoption means".to_owned(),
        },
    ));
    events.push(at(
        run,
        34_800,
        K::SubtaskSucceeded {
            subtask: sid("context"),
            attempt: 1,
            elapsed_ms: 3_100,
            usage: Usage {
                tokens_in: 412,
                tokens_out: 806,
                estimated: false,
                cached_in: 0,
            },
            result: "## Background\n\nEV adoption means the **share of new cars** that are \
                     electric.\n\n- Oslo: 90%\n- Paris: 25%"
                .to_owned(),
            cut_off: false,
            cached: false,
        },
    ));
    // health: started, then cancelled by the user.
    events.push(started("health", 1, "research", 37_800));
    events.push(at(
        run,
        30_000,
        K::SubtaskCancelled {
            subtask: sid("health"),
            attempt: 1,
        },
    ));
    // costs: three attempts, the last one fails for good.
    events.push(started("costs", 1, "compare", 37_700));
    events.push(at(
        run,
        33_000,
        K::SubtaskRetrying {
            subtask: sid("costs"),
            attempt: 1,
            delay_ms: 1_000,
            reason: "503 unavailable".to_owned(),
            error: "HTTP 503 Service Unavailable: upstream overloaded".to_owned(),
        },
    ));
    events.push(started("costs", 2, "compare", 32_000));
    events.push(at(
        run,
        27_500,
        K::SubtaskRetrying {
            subtask: sid("costs"),
            attempt: 2,
            delay_ms: 2_000,
            reason: "timeout".to_owned(),
            error: "no data for 30s (read timeout)".to_owned(),
        },
    ));
    events.push(started("costs", 3, "compare", 25_500));
    events.push(at(
        run,
        25_000,
        K::SubtaskDelta {
            subtask: sid("costs"),
            attempt: 3,
            text: "Households save on fuel, but".to_owned(),
        },
    ));
    events.push(at(
        run,
        21_300,
        K::SubtaskFailed {
            subtask: sid("costs"),
            attempt: 3,
            elapsed_ms: 4_200,
            error: "HTTP 500 Internal Server Error: the model crashed".to_owned(),
            partial: "Households save on fuel, but".to_owned(),
        },
    ));
    events.push(at(
        run,
        21_200,
        K::SubtaskBlocked {
            subtask: sid("equity"),
            waiting_on: vec![sid("costs")],
        },
    ));
    // grid: attempt 1 hit a rate limit; attempt 2 starts after 2 s.
    events.push(started("grid", 1, "research", 8_000));
    events.push(at(
        run,
        1_000,
        K::SubtaskRetrying {
            subtask: sid("grid"),
            attempt: 1,
            delay_ms: 2_000,
            reason: "429 rate limited".to_owned(),
            error: "HTTP 429 Too Many Requests: rate limit reached for gpt-4o-mini".to_owned(),
        },
    ));
    // emissions: streaming for 4.2 s.
    events.push(started("emissions", 1, "analysis", 4_200));
    for (ago, text) in [
        (3_500, "Electric cars emit **no tailpipe** gases. "),
        (2_500, "Over their lifecycle they emit 30–70% less CO₂ "),
        (
            1_500,
            "than petrol cars, depending on the grid mix.\n\n- Oslo: hydro",
        ),
    ] {
        events.push(at(
            run,
            ago,
            K::SubtaskDelta {
                subtask: sid("emissions"),
                attempt: 1,
                text: text.to_owned(),
            },
        ));
    }
    events
}

/// `SynthesisStarted`, the text in one delta and `SynthesisFinished`, then `RunFinished`.
pub fn finished_with_synthesis(run: RunId, text: &str) -> Vec<Event> {
    vec![
        at(
            run,
            2_000,
            EventKind::SynthesisStarted {
                attempt: 1,
                model: "gpt-4o".to_owned(),
            },
        ),
        at(
            run,
            1_500,
            EventKind::SynthesisDelta {
                attempt: 1,
                text: text.to_owned(),
            },
        ),
        at(
            run,
            1_000,
            EventKind::SynthesisFinished {
                attempt: 1,
                text: text.to_owned(),
                synthesized: true,
                usage: Usage {
                    tokens_in: 3_000,
                    tokens_out: 1_500,
                    estimated: false,
                    cached_in: 0,
                },
                error: None,
            },
        ),
        at(
            run,
            900,
            EventKind::RunFinished {
                status: RunStatus::Succeeded,
                elapsed_ms: 41_100,
                usage: Usage {
                    tokens_in: 9_000,
                    tokens_out: 4_200,
                    estimated: false,
                    cached_in: 0,
                },
                succeeded: 2,
                failed: 0,
                total: 2,
                error: None,
            },
        ),
    ]
}

/// A small two-subtask run that succeeded, with `synthesis` as its report.
pub fn small_run_events(run: RunId, synthesis: &str) -> Vec<Event> {
    let mut events = planning_events(run);
    events.push(at(
        run,
        38_000,
        EventKind::PlanReady {
            plan: plan(vec![
                subtask(
                    "emissions",
                    "analysis",
                    "Emissions",
                    "Emissions in cities.",
                    &[],
                ),
                subtask("costs", "compare", "Costs", "Costs for households.", &[]),
            ]),
        },
    ));
    for (id, worker) in [("emissions", "analysis"), ("costs", "compare")] {
        events.push(at(
            run,
            37_000,
            EventKind::SubtaskStarted {
                subtask: sid(id),
                attempt: 1,
                worker: worker.to_owned(),
                model: "gpt-4o-mini".to_owned(),
            },
        ));
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
                result: format!("Findings on {id}."),
                cut_off: false,
                cached: false,
            },
        ));
    }
    events.extend(finished_with_synthesis(run, synthesis));
    events
}

/// A long markdown report (about 150 lines) with headings, emphasis, lists, a code block, a
/// table and a quote.
pub fn long_synthesis() -> String {
    let mut s = String::new();
    s.push_str("# The impacts of EV adoption in cities\n\n");
    s.push_str(
        "Electric vehicles change **air quality**, *grid load*, household budgets and \
         `public space`. This report weighs each in turn.\n\n",
    );
    for (n, section) in [
        "Emissions",
        "Grid and charging",
        "Costs",
        "Equity",
        "Public health",
        "Policy",
    ]
    .iter()
    .enumerate()
    {
        s.push_str(&format!("## {}. {section}\n\n", n + 1));
        s.push_str(&format!(
            "Findings on *{}* from the worker reports, with **the key number first** and the \
             caveats after it, so that a reader skimming the headings still gets the gist.\n\n",
            section.to_lowercase()
        ));
        s.push_str("Key points:\n\n");
        for i in 1..=5 {
            s.push_str(&format!(
                "- Point {i} about {}: a short claim with a _qualifier_\n",
                section.to_lowercase()
            ));
        }
        s.push('\n');
        s.push_str("Steps for a city:\n\n");
        for i in 1..=4 {
            s.push_str(&format!("{i}. Step {i} for {}\n", section.to_lowercase()));
        }
        s.push('\n');
        s.push_str(&format!(
            "> Caveat on {}: the evidence comes mostly from European cities.\n\n",
            section.to_lowercase()
        ));
    }
    s.push_str("### Numbers at a glance\n\n");
    s.push_str("| City | EV share | CO₂ change |\n|---|---:|---:|\n");
    for (city, share, co2) in [
        ("Oslo", "90%", "-38%"),
        ("Amsterdam", "45%", "-21%"),
        ("Paris", "25%", "-12%"),
        ("Berlin", "19%", "-9%"),
    ] {
        s.push_str(&format!("| {city} | {share} | {co2} |\n"));
    }
    s.push('\n');
    s.push_str("### Method\n\n```python\n");
    for line in [
        "def lifecycle(km, grid_g_per_kwh):",
        "    battery = 61_000  # g CO2 to build",
        "    per_km = 0.17 * grid_g_per_kwh",
        "    return battery + km * per_km",
        "",
        "print(lifecycle(150_000, 300))",
    ] {
        s.push_str(line);
        s.push('\n');
    }
    s.push_str("```\n\n");
    s.push_str("## Conclusion\n\n");
    s.push_str(
        "EVs help cities most where the **grid is clean** and charging is planned \
         *before* demand peaks.\n\n_The end._\n",
    );
    s
}

/// The planner's answer as it streams in: two subtasks complete, a third under way.
pub const PLAN_SO_FAR: &str = r#"{"query_analysis": "Environment and money.",
 "subtasks": [
  {"id": "emissions", "title": "Tailpipe and grid emissions", "worker": "research",
   "description": "Measure them.", "depends_on": []},
  {"id": "grid", "title": "Evening load on the grid", "worker": "analysis",
   "description": "Peaks.", "depends_on": ["emissions"]},
  {"id": "costs", "title": "Who pa"#;

/// Planning under way: the answer so far streamed, and its two complete subtasks drafted.
pub fn planning_mid_stream_events(run: RunId) -> Vec<Event> {
    let mut events = planning_events(run);
    let (first, rest) = PLAN_SO_FAR.split_at(60);
    for (ago, text) in [(30_000, first), (20_000, rest)] {
        events.push(at(
            run,
            ago,
            EventKind::PlanningDelta {
                attempt: 1,
                text: text.to_owned(),
            },
        ));
    }
    events.push(at(
        run,
        20_000,
        EventKind::PlanDrafted {
            attempt: 1,
            subtasks: vec![
                subtask(
                    "emissions",
                    "research",
                    "Tailpipe and grid emissions",
                    "Measure them.",
                    &[],
                ),
                subtask(
                    "grid",
                    "analysis",
                    "Evening load on the grid",
                    "Peaks.",
                    &["emissions"],
                ),
            ],
        },
    ));
    events
}

/// What a small model answered, twice, and the run that failed of it.
pub const REJECTED_ANSWERS: [&str; 2] = [
    "Sure! To answer this I would first look at emissions, then at the grid.",
    "{\"subtasks\": [{\"id\": \"a\", \"title\": \"Emissions\", \"depends_on\": [\"b\"]}]}",
];

pub fn rejected_plan_events(run: RunId) -> Vec<Event> {
    let mut events = planning_events(run);
    let errors = [
        "no JSON object found in the planner's answer",
        "subtask `a` depends on `b`, which is not in the plan",
    ];
    for (i, (answer, error)) in REJECTED_ANSWERS.iter().zip(errors).enumerate() {
        let attempt = i as u32 + 1;
        let ago = 30_000 - 10_000 * i as u64;
        if attempt > 1 {
            events.push(at(
                run,
                ago + 100,
                EventKind::PlanningStarted {
                    attempt,
                    model: "gpt-4o".to_owned(),
                },
            ));
        }
        events.push(at(
            run,
            ago,
            EventKind::PlanningDelta {
                attempt,
                text: answer.to_string(),
            },
        ));
        events.push(at(
            run,
            ago,
            EventKind::PlanRejected {
                attempt,
                error: error.to_owned(),
                answer: answer.to_string(),
            },
        ));
    }
    events.push(at(
        run,
        20_000,
        EventKind::RunFinished {
            status: maestro::protocol::RunStatus::Failed,
            elapsed_ms: 22_000,
            usage: maestro::protocol::Usage::default(),
            succeeded: 0,
            failed: 0,
            total: 0,
            error: Some(format!(
                "the planner gave no usable plan twice; last problem: {}",
                errors[1]
            )),
        },
    ));
    events
}

/// A saved run as the history lists it, started `n` hours before `NOW` (a smaller `n` is
/// newer).
pub fn saved_summary(
    n: u128,
    query: &str,
    status: maestro::store::SavedRunStatus,
) -> maestro::store::RunSummary {
    let id = run_id(500 + n);
    let started_ms = NOW - (n as u64) * 3_600_000;
    maestro::store::RunSummary {
        id,
        short_id: id.to_string().replace('-', "")[..8].to_owned(),
        parent: None,
        query: query.to_owned(),
        provider: "openai".to_owned(),
        status,
        started_ms,
        finished_ms: Some(started_ms + 42_000),
        elapsed_ms: Some(42_000),
        usage: Usage {
            tokens_in: 9_000 * n as u64,
            tokens_out: 2_000,
            estimated: false,
            cached_in: 0,
        },
        succeeded: 3,
        failed: (n % 2) as u32,
        total: 3 + (n % 2) as u32,
    }
}

/// A two-subtask run whose token budget was reached after `emissions` succeeded: `costs` waits
/// and the budget dialog opens.
pub fn budget_reached_events(run: RunId) -> Vec<Event> {
    let mut events = planning_events(run);
    events.push(at(
        run,
        38_000,
        EventKind::PlanReady {
            plan: plan(vec![
                subtask(
                    "emissions",
                    "analysis",
                    "Emissions",
                    "Emissions in cities.",
                    &[],
                ),
                subtask("costs", "compare", "Costs", "Costs for households.", &[]),
            ]),
        },
    ));
    events.push(at(
        run,
        37_000,
        EventKind::SubtaskStarted {
            subtask: sid("emissions"),
            attempt: 1,
            worker: "analysis".to_owned(),
            model: "gpt-4o-mini".to_owned(),
        },
    ));
    events.push(at(
        run,
        30_000,
        EventKind::SubtaskSucceeded {
            subtask: sid("emissions"),
            attempt: 1,
            elapsed_ms: 7_000,
            usage: Usage {
                tokens_in: 900,
                tokens_out: 1_500,
                estimated: false,
                cached_in: 0,
            },
            result: "Findings on emissions.".to_owned(),
            cut_off: false,
            cached: false,
        },
    ));
    events.push(at(
        run,
        30_000,
        EventKind::BudgetReached {
            reason: maestro::protocol::BudgetReason::Tokens {
                spent: 2_400,
                max: 2_000,
            },
            waiting: vec![sid("costs")],
        },
    ));
    events
}

/// The plan of a run paused for review: `context`, then `emissions`, then `policy` after
/// `emissions`.
pub fn review_plan() -> Plan {
    plan(vec![
        subtask(
            "context",
            "research",
            "Background and definitions",
            "Define EV adoption and summarise where cities stand today.",
            &[],
        ),
        subtask(
            "emissions",
            "analysis",
            "Tailpipe and grid emissions",
            "Compare lifecycle emissions of EVs and combustion cars in cities.",
            &[],
        ),
        subtask(
            "policy",
            "writing",
            "Policy recommendations",
            "Recommend policies, drawing on the emissions findings.",
            &["emissions"],
        ),
    ])
}

/// A model whose run 1 was planned and waits for its plan to be reviewed: the review is open.
pub fn reviewing() -> Model {
    let mut model = model(false, (160, 48));
    model.models.worker = "gpt-4o-mini".to_owned();
    model.models.synthesizer = "gpt-4o".to_owned();
    model.models.concurrency = Some(4);
    model.models.prices = std::sync::Arc::new(maestro::engine::cost::PriceTable::shipped());
    send_all(&mut model, review_events(run_id(1)));
    model
}

/// Planning, then the run pauses with `review_plan` for a review.
pub fn review_events(run: RunId) -> Vec<Event> {
    let mut events = planning_events(run);
    events.push(at(
        run,
        38_000,
        EventKind::PlanAwaitingReview {
            plan: review_plan(),
        },
    ));
    events
}
