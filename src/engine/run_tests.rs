//! Stories of the run state machine: inputs in, effects out, no network and no clock.

use std::time::Duration;

use super::*;
use crate::engine::plan::Priority;
use crate::llm::MessageRole;
use crate::protocol::{BudgetReason, CallRole, SavedReport, SavedResult, SavedSubtask};

pub(crate) fn settings() -> RunSettings {
    let spec = |model: &str| CallSpec {
        model: model.into(),
        max_tokens: 1000,
        temperature: None,
    };
    RunSettings {
        max_subtasks: 8,
        concurrency: 4,
        retries: 2,
        retry_base: Duration::from_millis(1000),
        retry_max: Duration::from_secs(30),
        retry_after_limit: Duration::from_secs(120),
        planner: spec("planner-model"),
        worker: spec("worker-model"),
        synthesizer: spec("synth-model"),
        roles: roles::builtin_roles(),
        seed: 42,
        stop_after_plan: false,
        max_dependency_chars: None,
        structured: Structured::Auto,
        direct: true,
        validate: false,
        validator: spec("validator-model"),
        preset: Default::default(),
        budget: Default::default(),
        review: false,
    }
}

fn task(id: &str, deps: &[&str]) -> PlannedSubtask {
    PlannedSubtask {
        id: id.into(),
        worker: "research".into(),
        title: format!("Title of {id}"),
        description: format!("Description of {id}"),
        focus_areas: vec![],
        depends_on: deps.iter().map(|d| SubtaskId::from(*d)).collect(),
        priority: Priority::Medium,
        reuse: None,
        role_prompt: None,
        model: None,
    }
}

fn plan(tasks: Vec<PlannedSubtask>) -> Plan {
    Plan {
        query_analysis: String::new(),
        subtasks: tasks,
        synthesis_guidance: "Be brief.".into(),
        complexity: None,
    }
}

fn ok(text: &str) -> Result<Completion, CallError> {
    Ok(Completion {
        text: text.into(),
        usage: Some(Usage {
            tokens_in: 10,
            tokens_out: 5,
            estimated: false,
            cached_in: 0,
        }),
        ..Default::default()
    })
}

fn server_error() -> Result<Completion, CallError> {
    Err(CallError::from_status(500, "upstream broke".into(), None))
}

/// A run being driven by hand; `effects` holds what the last input produced.
struct Story {
    run: Run,
    now: u64,
    effects: Vec<Effect>,
    all_events: Vec<EventKind>,
}

impl Story {
    fn new(query: &str, settings: RunSettings, plan: Option<Plan>) -> Self {
        let mut s = Self {
            run: Run::new(query, settings, plan),
            now: 0,
            effects: vec![],
            all_events: vec![],
        };
        s.feed(Input::Start);
        s
    }

    fn planned(tasks: Vec<PlannedSubtask>) -> Self {
        Self::new("the query", settings(), Some(plan(tasks)))
    }

    fn feed(&mut self, input: Input) -> &mut Self {
        self.effects = self.run.handle(input, self.now);
        for e in &self.effects {
            if let Effect::Emit(kind) = e {
                self.all_events.push(kind.clone());
            }
        }
        self
    }

    fn at(&mut self, ms: u64) -> &mut Self {
        self.now = ms;
        self
    }

    /// Ids of subtasks whose calls the last input started.
    fn started(&self) -> Vec<String> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Call {
                    call:
                        CallId {
                            target: CallTarget::Subtask(id),
                            ..
                        },
                    ..
                } => Some(id.0.clone()),
                _ => None,
            })
            .collect()
    }

    fn request_for(&self, target: &CallTarget) -> Option<&ChatRequest> {
        self.effects.iter().find_map(|e| match e {
            Effect::Call { call, request, .. } if &call.target == target => Some(request),
            _ => None,
        })
    }

    fn events(&self) -> Vec<&EventKind> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Emit(k) => Some(k),
                _ => None,
            })
            .collect()
    }

    fn status(&self, id: &str) -> SubtaskStatus {
        self.run.subtask_status(&id.into()).expect("subtask exists")
    }

    fn attempt(&self, id: &str) -> u32 {
        self.run.tasks[self.run.index[&SubtaskId::from(id)]].attempt
    }

    fn reply(&mut self, id: &str, result: Result<Completion, CallError>) -> &mut Self {
        let attempt = self.attempt(id);
        self.reply_attempt(id, attempt, result)
    }

    fn reply_attempt(
        &mut self,
        id: &str,
        attempt: u32,
        result: Result<Completion, CallError>,
    ) -> &mut Self {
        self.feed(Input::Reply {
            call: CallId {
                target: CallTarget::Subtask(id.into()),
                attempt,
            },
            result,
        })
    }

    fn wake(&mut self, id: &str) -> &mut Self {
        let attempt = self.attempt(id);
        self.feed(Input::Wake {
            call: CallId {
                target: CallTarget::Subtask(id.into()),
                attempt,
            },
        })
    }

    fn synth_reply(&mut self, result: Result<Completion, CallError>) -> &mut Self {
        let attempt = self.run.synthesis.attempt;
        self.feed(Input::Reply {
            call: CallId {
                target: CallTarget::Synthesis,
                attempt,
            },
            result,
        })
    }

    fn command(&mut self, command: RunCommand) -> &mut Self {
        self.feed(Input::Command(command))
    }

    fn finished(&self) -> Option<RunStatus> {
        self.events().into_iter().find_map(|e| match e {
            EventKind::RunFinished { status, .. } => Some(*status),
            _ => None,
        })
    }

    fn wake_delay(&self) -> Option<Duration> {
        self.effects.iter().find_map(|e| match e {
            Effect::Wake { after, .. } => Some(*after),
            _ => None,
        })
    }
}

/// The effects of a command that was refused and changed nothing.
fn only_refusal(command: CommandName, refusal: Refusal) -> Vec<Effect> {
    vec![Effect::Emit(EventKind::CommandRefused { command, refusal })]
}

fn user_text(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .filter(|m| m.role == MessageRole::User)
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn independent_subtasks_start_at_once_up_to_the_concurrency_limit() {
    let mut settings = settings();
    settings.concurrency = 2;
    let tasks = vec![task("a", &[]), task("b", &[]), task("c", &[])];
    let mut s = Story::new("q", settings, Some(plan(tasks)));
    assert_eq!(s.started(), ["a", "b"]);
    assert_eq!(s.status("c"), SubtaskStatus::Pending);
    s.reply("a", ok("A"));
    assert_eq!(s.started(), ["c"], "a freed slot is used at once");
}

#[test]
fn a_dependent_starts_as_soon_as_its_dependencies_succeed_not_in_waves() {
    let tasks = vec![task("a", &[]), task("slow", &[]), task("c", &["a"])];
    let mut s = Story::planned(tasks);
    assert_eq!(s.started(), ["a", "slow"]);
    s.reply("a", ok("A result"));
    assert_eq!(
        s.started(),
        ["c"],
        "c does not wait for the unrelated slow subtask"
    );
    assert_eq!(s.status("slow"), SubtaskStatus::Running);
}

#[test]
fn dependency_results_reach_the_dependent_in_full() {
    let long = "finding ".repeat(500);
    let mut s = Story::planned(vec![task("a", &[]), task("b", &["a"])]);
    s.reply("a", ok(&long));
    let request = s
        .request_for(&CallTarget::Subtask("b".into()))
        .expect("b starts");
    let text = user_text(request);
    assert!(
        text.contains(long.trim()),
        "the full result of a is in b's prompt"
    );
    assert!(text.contains("Title of a"));
    assert!(text.contains("the query"));
}

#[test]
fn higher_priority_starts_first_among_ready_subtasks() {
    let mut settings = settings();
    settings.concurrency = 1;
    let mut low = task("low", &[]);
    low.priority = Priority::Low;
    let mut high = task("high", &[]);
    high.priority = Priority::High;
    let medium = task("medium", &[]);
    let mut s = Story::new("q", settings, Some(plan(vec![low, medium, high])));
    assert_eq!(s.started(), ["high"]);
    s.reply("high", ok("h"));
    assert_eq!(s.started(), ["medium"]);
    s.reply("medium", ok("m"));
    assert_eq!(s.started(), ["low"]);
}

#[test]
fn a_retryable_failure_is_retried_with_growing_backoff_until_the_limit() {
    let mut s = Story::planned(vec![task("a", &[])]);
    s.at(100).reply("a", server_error());
    assert_eq!(s.status("a"), SubtaskStatus::Retrying);
    let first = s.wake_delay().expect("a backoff timer");
    assert!(first >= Duration::from_millis(500) && first <= Duration::from_millis(1000));
    assert!(s.events().iter().any(|e| matches!(e,
        EventKind::SubtaskRetrying { attempt: 1, reason, .. } if reason == "500")));
    s.wake("a");
    assert_eq!(s.started(), ["a"]);
    assert_eq!(s.attempt("a"), 2);
    s.reply("a", server_error());
    let second = s.wake_delay().expect("a second backoff");
    assert!(second >= Duration::from_millis(1000) && second <= Duration::from_millis(2000));
    s.wake("a");
    s.reply("a", server_error());
    assert_eq!(
        s.status("a"),
        SubtaskStatus::Failed,
        "1 + 2 retries, then failed"
    );
    assert_eq!(s.wake_delay(), None);
    assert!(s.events().iter().any(|e| matches!(e,
        EventKind::SubtaskFailed { attempt: 3, error, .. } if error.contains("upstream broke"))));
}

#[test]
fn a_client_error_fails_at_once_with_the_providers_message() {
    let mut s = Story::planned(vec![task("a", &[]), task("b", &[])]);
    s.reply(
        "a",
        Err(CallError::from_status(
            401,
            "invalid x-api-key".into(),
            None,
        )),
    );
    assert_eq!(s.status("a"), SubtaskStatus::Failed);
    assert!(s.events().iter().any(|e| matches!(e,
        EventKind::SubtaskFailed { error, .. } if error.contains("invalid x-api-key"))));
}

#[test]
fn retry_after_is_honoured_and_an_unreasonable_one_is_not_waited_for() {
    let mut s = Story::planned(vec![task("a", &[])]);
    let mut e = CallError::from_status(429, "slow down".into(), Some(Duration::from_secs(7)));
    s.reply("a", Err(e.clone()));
    assert_eq!(s.wake_delay(), Some(Duration::from_secs(7)));
    s.wake("a");
    e.retry_after = Some(Duration::from_secs(3600));
    s.reply("a", Err(e));
    assert_eq!(s.status("a"), SubtaskStatus::Failed);
}

#[test]
fn a_failed_dependency_blocks_its_dependents_and_a_rerun_unblocks_them() {
    let tasks = vec![
        task("a", &[]),
        task("b", &["a"]),
        task("c", &["b"]),
        task("d", &[]),
    ];
    let mut settings = settings();
    settings.retries = 0;
    let mut s = Story::new("q", settings, Some(plan(tasks)));
    s.reply("d", ok("D"));
    s.reply("a", server_error());
    assert_eq!(s.status("a"), SubtaskStatus::Failed);
    assert_eq!(s.status("b"), SubtaskStatus::Blocked);
    assert_eq!(
        s.status("c"),
        SubtaskStatus::Blocked,
        "blocking travels down the chain"
    );
    // Everything settled: a synthesis of what there is, naming the gaps.
    let synth = s
        .request_for(&CallTarget::Synthesis)
        .expect("synthesis starts");
    let text = user_text(synth);
    assert!(text.contains("Title of d") && text.contains("Title of a"));
    s.synth_reply(ok("report v1"));
    assert_eq!(s.finished(), Some(RunStatus::Partial));

    s.command(RunCommand::RetrySubtask("a".into()));
    assert_eq!(s.started(), ["a"]);
    assert_eq!(s.status("b"), SubtaskStatus::Pending);
    assert_eq!(s.status("c"), SubtaskStatus::Pending);
    s.reply("a", ok("A"));
    assert_eq!(s.started(), ["b"]);
    s.reply("b", ok("B"));
    s.reply("c", ok("C"));
    let synth = s
        .request_for(&CallTarget::Synthesis)
        .expect("a new synthesis");
    assert!(user_text(synth).contains('C'));
    s.synth_reply(ok("report v2"));
    assert_eq!(s.finished(), Some(RunStatus::Succeeded));
}

#[test]
fn retry_reruns_only_the_failed_subtree() {
    let mut settings = settings();
    settings.retries = 0;
    let tasks = vec![task("a", &[]), task("b", &["a"]), task("ok", &[])];
    let mut s = Story::new("q", settings, Some(plan(tasks)));
    s.reply("ok", ok("fine"));
    s.reply("a", server_error());
    s.synth_reply(ok("r"));
    s.command(RunCommand::RetryFailed);
    assert_eq!(s.started(), ["a"]);
    assert_eq!(s.status("ok"), SubtaskStatus::Succeeded, "untouched");
    assert_eq!(s.attempt("ok"), 1);
}

#[test]
fn late_reply_from_a_cancelled_attempt_is_ignored() {
    let mut s = Story::planned(vec![task("a", &[]), task("b", &[])]);
    s.command(RunCommand::CancelSubtask("a".into()));
    assert!(s.effects.iter().any(|e| matches!(e, Effect::Abort(c)
        if c.target == CallTarget::Subtask("a".into()) && c.attempt == 1)));
    assert_eq!(s.status("a"), SubtaskStatus::Cancelled);
    s.reply_attempt("a", 1, ok("too late"));
    assert!(s.effects.is_empty(), "nothing happens");
    assert_eq!(s.status("a"), SubtaskStatus::Cancelled);
}

#[test]
fn late_reply_from_an_older_attempt_never_overwrites_the_newer_one() {
    let mut s = Story::planned(vec![task("a", &[])]);
    s.reply("a", Err(CallError::timeout(Duration::from_secs(120))));
    s.wake("a");
    assert_eq!(s.attempt("a"), 2);
    s.reply_attempt("a", 1, ok("stale answer"));
    assert_eq!(s.status("a"), SubtaskStatus::Running);
    s.feed(Input::Delta {
        call: CallId {
            target: CallTarget::Subtask("a".into()),
            attempt: 1,
        },
        text: "stale delta".into(),
    });
    assert!(s.effects.is_empty());
    s.reply("a", ok("fresh answer"));
    assert!(s.events().iter().any(|e| matches!(e,
        EventKind::SubtaskSucceeded { attempt: 2, result, .. } if result == "fresh answer")));
}

#[test]
fn when_every_subtask_fails_the_run_fails_without_synthesis() {
    let mut settings = settings();
    settings.retries = 0;
    let mut s = Story::new(
        "q",
        settings,
        Some(plan(vec![task("a", &[]), task("b", &[])])),
    );
    s.reply("a", server_error());
    s.reply("b", server_error());
    assert!(s.request_for(&CallTarget::Synthesis).is_none());
    assert_eq!(s.finished(), Some(RunStatus::Failed));
}

#[test]
fn a_failed_synthesis_still_ends_with_the_results_joined_and_marked() {
    let mut settings = settings();
    settings.retries = 0;
    let mut s = Story::new("q", settings, Some(plan(vec![task("a", &[])])));
    s.reply("a", ok("the finding of a"));
    s.synth_reply(server_error());
    let finished = s.events().into_iter().find_map(|e| match e {
        EventKind::SynthesisFinished {
            text, synthesized, ..
        } => Some((text.clone(), *synthesized)),
        _ => None,
    });
    let (text, synthesized) = finished.expect("a report anyway");
    assert!(!synthesized);
    assert!(text.contains("the finding of a"));
    assert!(text.to_lowercase().contains("unsynthesised"));
    assert_eq!(s.finished(), Some(RunStatus::Partial));
}

#[test]
fn an_unusable_plan_is_asked_for_again_once_then_the_run_fails() {
    let mut s = Story::new("q", settings(), None);
    let planner = |attempt| CallId {
        target: CallTarget::Planner,
        attempt,
    };
    assert!(s.request_for(&CallTarget::Planner).is_some());
    s.feed(Input::Reply {
        call: planner(1),
        result: ok("I cannot do JSON today"),
    });
    let again = s.request_for(&CallTarget::Planner).expect("asked again");
    assert!(
        again.messages.len() >= 3,
        "the second ask carries the first answer and the error"
    );
    s.feed(Input::Reply {
        call: planner(2),
        result: ok(
            r#"{"subtasks": [{"id": "a", "title": "A", "description": "x", "depends_on": ["a"]}]}"#,
        ),
    });
    assert_eq!(s.finished(), Some(RunStatus::Failed));
    let error = s.events().into_iter().find_map(|e| match e {
        EventKind::RunFinished { error, .. } => error.clone(),
        _ => None,
    });
    assert!(error.expect("a reason").contains("cycle"));
}

#[test]
fn a_planner_failure_is_retried_like_any_call() {
    let mut s = Story::new("q", settings(), None);
    s.feed(Input::Reply {
        call: CallId {
            target: CallTarget::Planner,
            attempt: 1,
        },
        result: Err(CallError::from_status(529, "overloaded".into(), None)),
    });
    let planner = |attempt| CallId {
        target: CallTarget::Planner,
        attempt,
    };
    let woken: Vec<&CallId> = s
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Wake { call, .. } => Some(call),
            _ => None,
        })
        .collect();
    assert_eq!(woken, [&planner(1)]);
    assert!(s.events().iter().any(|e| matches!(e,
        EventKind::PlanningRetrying { attempt: 1, reason, .. } if reason == "529")));
    s.feed(Input::Wake { call: planner(1) });
    assert_eq!(calls(&s.effects), [&planner(2)]);
    s.feed(Input::Reply {
        call: CallId {
            target: CallTarget::Planner,
            attempt: 2,
        },
        result: ok(r#"{"subtasks": [{"id": "a", "title": "A", "description": "do a"}]}"#),
    });
    assert_eq!(s.started(), ["a"]);
}

#[test]
fn usage_is_estimated_and_marked_when_the_provider_sends_none() {
    let mut s = Story::planned(vec![task("a", &[])]);
    s.reply(
        "a",
        Ok(Completion {
            text: "x".repeat(400),
            usage: None,
            ..Default::default()
        }),
    );
    let usage = s.events().into_iter().find_map(|e| match e {
        EventKind::SubtaskSucceeded { usage, .. } => Some(*usage),
        _ => None,
    });
    let usage = usage.expect("succeeded");
    assert!(usage.estimated);
    assert_eq!(usage.tokens_out, 100);
    assert!(usage.tokens_in > 0);
}

#[test]
fn run_totals_add_up_every_call() {
    let mut s = Story::planned(vec![task("a", &[]), task("b", &[])]);
    s.reply("a", ok("A")).reply("b", ok("B"));
    s.synth_reply(ok("report"));
    let usage = s.events().into_iter().find_map(|e| match e {
        EventKind::RunFinished { usage, .. } => Some(*usage),
        _ => None,
    });
    assert_eq!(
        usage,
        Some(Usage {
            tokens_in: 30,
            tokens_out: 15,
            estimated: false,
            cached_in: 0,
        })
    );
}

#[test]
fn editing_a_failed_subtask_changes_it_and_runs_it_again() {
    let mut settings = settings();
    settings.retries = 0;
    let mut s = Story::new(
        "q",
        settings,
        Some(plan(vec![task("a", &[]), task("b", &[])])),
    );
    s.reply("b", ok("B"));
    s.reply("a", server_error());
    s.synth_reply(ok("r"));
    s.command(RunCommand::EditSubtask {
        id: "a".into(),
        description: Some("A sharper description".into()),
        worker: Some("critique".into()),
    });
    assert!(s.events().iter().any(|e| matches!(e,
        EventKind::SubtaskEdited { worker, description, .. }
            if worker == "critique" && description == "A sharper description")));
    let request = s
        .request_for(&CallTarget::Subtask("a".into()))
        .expect("re-run");
    assert!(user_text(request).contains("A sharper description"));
    let critique = roles::find(&roles::builtin_roles(), "critique")
        .expect("a built-in role")
        .system_prompt
        .clone();
    assert_eq!(request.system.trim(), critique.trim());
}

#[test]
fn editing_a_custom_subtask_keeps_the_role_the_planner_wrote_and_a_role_temperature_applies() {
    let mut settings = settings();
    settings.retries = 0;
    settings.roles[0].temperature = Some(0.25);
    settings.roles[0].max_tokens = Some(77);
    let mut custom = task("a", &[]);
    custom.worker = "custom".into();
    custom.role_prompt = Some("You are a tax adviser.".into());
    let mut analysis = task("b", &[]);
    analysis.worker = "analysis".into();
    let mut s = Story::new("q", settings, Some(plan(vec![custom, analysis])));
    let first = s
        .request_for(&CallTarget::Subtask("a".into()))
        .expect("started")
        .system
        .clone();
    assert!(first.contains("You are a tax adviser."), "{first}");
    let b = s
        .request_for(&CallTarget::Subtask("b".into()))
        .expect("started");
    assert_eq!((b.temperature, b.max_tokens), (Some(0.25), 77));
    s.reply("b", ok("B"));
    s.reply("a", server_error());
    s.synth_reply(ok("r"));
    s.command(RunCommand::EditSubtask {
        id: "a".into(),
        description: Some("Sharper".into()),
        worker: Some("Custom".into()),
    });
    assert!(s.events().iter().any(|e| matches!(e,
        EventKind::SubtaskEdited { worker, .. } if worker == "custom")));
    let again = s
        .request_for(&CallTarget::Subtask("a".into()))
        .expect("re-run");
    assert_eq!(again.system, first);
    assert!(user_text(again).contains("Sharper"));
}

#[test]
fn editing_with_an_unknown_role_is_refused() {
    let mut s = Story::planned(vec![task("a", &[])]);
    s.command(RunCommand::EditSubtask {
        id: "a".into(),
        description: Some("never applied".into()),
        worker: Some("astrologer".into()),
    });
    let roles = roles::builtin_roles().into_iter().map(|r| r.name).collect();
    assert_eq!(
        s.effects,
        only_refusal(
            CommandName::EditSubtask,
            Refusal::UnknownRole {
                role: "astrologer".into(),
                roles
            }
        )
    );
    assert_eq!(s.attempt("a"), 1, "not re-run");
    assert_eq!(s.run.tasks[0].spec.description, "Description of a");
}

#[test]
fn cancelling_the_run_stops_everything_and_ends_it_cancelled() {
    let mut s = Story::planned(vec![task("a", &[]), task("b", &["a"])]);
    s.command(RunCommand::CancelRun);
    assert_eq!(s.status("a"), SubtaskStatus::Cancelled);
    assert_eq!(s.status("b"), SubtaskStatus::Cancelled);
    let aborts: Vec<&CallId> = s
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Abort(call) => Some(call),
            _ => None,
        })
        .collect();
    assert_eq!(
        aborts,
        [&CallId {
            target: CallTarget::Subtask("a".into()),
            attempt: 1
        }],
        "only a is in flight; b never started"
    );
    assert_eq!(s.finished(), Some(RunStatus::Cancelled));
    s.reply_attempt("a", 1, ok("late"));
    assert!(s.effects.is_empty());
}

#[test]
fn cancelling_a_subtask_blocks_its_dependents_and_the_rest_goes_on() {
    let mut s = Story::planned(vec![task("a", &[]), task("b", &["a"]), task("c", &[])]);
    s.command(RunCommand::CancelSubtask("a".into()));
    assert_eq!(s.status("b"), SubtaskStatus::Blocked);
    assert_eq!(s.status("c"), SubtaskStatus::Running, "c goes on");
    s.reply("c", ok("C"));
    let synthesis = s
        .request_for(&CallTarget::Synthesis)
        .expect("a synthesis of what there is");
    let text = user_text(synthesis);
    assert!(
        text.contains("Title of a") && text.contains("Title of b"),
        "{text}"
    );
}

#[test]
fn resynthesis_is_refused_while_subtasks_run_and_redone_after() {
    let mut s = Story::planned(vec![task("a", &[])]);
    s.command(RunCommand::Resynthesize);
    assert_eq!(
        s.effects,
        only_refusal(CommandName::Resynthesize, Refusal::SubtasksRunning)
    );
    s.reply("a", ok("A"));
    s.synth_reply(ok("first"));
    s.command(RunCommand::Resynthesize);
    assert!(s.request_for(&CallTarget::Synthesis).is_some());
    s.synth_reply(ok("second"));
    assert_eq!(s.finished(), Some(RunStatus::Succeeded));
}

#[test]
fn a_rerun_during_synthesis_drops_the_stale_synthesis() {
    let mut s = Story::planned(vec![task("a", &[]), task("b", &[])]);
    s.reply("a", ok("A")).reply("b", ok("B"));
    let stale = s.run.synthesis.attempt;
    s.command(RunCommand::RetrySubtask("a".into()));
    assert!(s.effects.iter().any(|e| matches!(e, Effect::Abort(c)
        if c.target == CallTarget::Synthesis && c.attempt == stale)));
    assert!(s.events().iter().any(|e| matches!(e,
        EventKind::SynthesisCancelled { attempt } if *attempt == stale)));
    assert_eq!(s.started(), ["a"]);
    s.feed(Input::Reply {
        call: CallId {
            target: CallTarget::Synthesis,
            attempt: stale,
        },
        result: ok("stale report"),
    });
    assert!(s.effects.is_empty(), "the stale synthesis is dropped");
}

#[test]
fn rerunning_a_running_subtask_is_refused() {
    let mut s = Story::planned(vec![task("a", &[])]);
    s.command(RunCommand::RetrySubtask("a".into()));
    assert_eq!(
        s.effects,
        only_refusal(
            CommandName::RetrySubtask,
            Refusal::SubtaskBusy {
                subtask: "a".into(),
                status: SubtaskStatus::Running
            }
        )
    );
    assert_eq!(s.attempt("a"), 1);
}

#[test]
fn each_refused_command_changes_nothing_and_says_exactly_why() {
    let mut settings = settings();
    settings.retries = 0;
    let mut s = Story::new(
        "q",
        settings,
        Some(plan(vec![
            task("a", &[]),
            task("b", &["a"]),
            task("c", &[]),
        ])),
    );
    s.command(RunCommand::RetrySubtask("zz".into()));
    assert_eq!(
        s.effects,
        only_refusal(
            CommandName::RetrySubtask,
            Refusal::UnknownSubtask {
                subtask: "zz".into()
            }
        )
    );
    s.command(RunCommand::RetryFailed);
    assert_eq!(
        s.effects,
        only_refusal(CommandName::RetryFailed, Refusal::NothingToRetry)
    );
    s.reply("a", server_error());
    s.command(RunCommand::RetrySubtask("b".into()));
    assert_eq!(
        s.effects,
        only_refusal(
            CommandName::RetrySubtask,
            Refusal::SubtaskBlocked {
                subtask: "b".into(),
                waiting_on: vec!["a".into()]
            }
        )
    );
    s.command(RunCommand::CancelSubtask("a".into()));
    assert_eq!(
        s.effects,
        only_refusal(
            CommandName::CancelSubtask,
            Refusal::SubtaskSettled {
                subtask: "a".into(),
                status: SubtaskStatus::Failed
            }
        )
    );
    s.reply("c", ok("C"));
    s.synth_reply(ok("report"));
    assert_eq!(s.finished(), Some(RunStatus::Partial));
    s.command(RunCommand::CancelRun);
    assert_eq!(
        s.effects,
        only_refusal(CommandName::CancelRun, Refusal::RunFinished)
    );
}

#[test]
fn resynthesis_is_refused_while_planning_and_without_results() {
    let mut s = Story::new("q", settings(), None);
    s.command(RunCommand::Resynthesize);
    assert_eq!(
        s.effects,
        only_refusal(CommandName::Resynthesize, Refusal::StillPlanning)
    );

    let mut settings = settings();
    settings.retries = 0;
    let mut s = Story::new("q", settings, Some(plan(vec![task("a", &[])])));
    s.reply("a", server_error());
    assert_eq!(s.finished(), Some(RunStatus::Failed));
    s.command(RunCommand::Resynthesize);
    assert_eq!(
        s.effects,
        only_refusal(CommandName::Resynthesize, Refusal::NoResults)
    );
}

#[test]
fn refusals_read_as_they_always_did() {
    let cases = [
        (
            Refusal::UnknownSubtask {
                subtask: "x".into(),
            },
            "there is no subtask `x` in this run",
        ),
        (
            Refusal::UnknownRole {
                role: "poet".into(),
                roles: vec!["analysis".into(), "research".into()],
            },
            "there is no worker role `poet` (roles: analysis, research)",
        ),
        (
            Refusal::SubtaskBusy {
                subtask: "a".into(),
                status: SubtaskStatus::Retrying,
            },
            "`a` is retrying already",
        ),
        (
            Refusal::SubtaskBlocked {
                subtask: "c".into(),
                waiting_on: vec!["a".into(), "b".into()],
            },
            "`c` is blocked on `a`, `b`; re-run that first",
        ),
        (
            Refusal::SubtaskSettled {
                subtask: "a".into(),
                status: SubtaskStatus::Succeeded,
            },
            "`a` is done; nothing to cancel",
        ),
        (
            Refusal::NothingToRetry,
            "no failed or cancelled subtask to re-run",
        ),
        (Refusal::RunFinished, "the run has already finished"),
        (Refusal::StillPlanning, "the run is still being planned"),
        (
            Refusal::SubtasksRunning,
            "subtasks are still running; the synthesis follows when they finish",
        ),
        (Refusal::NoResults, "no subtask has a result to synthesise"),
    ];
    for (refusal, text) in cases {
        assert_eq!(refusal.to_string(), text);
    }
}

#[test]
fn a_refusal_is_one_flat_json_object_with_a_snake_case_reason() {
    let event = crate::protocol::Event {
        run: crate::protocol::RunId(uuid::Uuid::nil()),
        ts_ms: 5,
        kind: EventKind::CommandRefused {
            command: CommandName::RetrySubtask,
            refusal: Refusal::SubtaskBusy {
                subtask: "a".into(),
                status: SubtaskStatus::Running,
            },
        },
    };
    let json = serde_json::to_value(&event).expect("serialises");
    assert_eq!(
        json,
        serde_json::json!({
            "run": "00000000-0000-0000-0000-000000000000",
            "ts_ms": 5,
            "type": "command_refused",
            "command": "retry_subtask",
            "reason": "subtask_busy",
            "subtask": "a",
            "status": "running",
        })
    );
    let back: crate::protocol::Event = serde_json::from_value(json).expect("deserialises");
    assert_eq!(back, event);
}

#[test]
fn a_retrying_subtask_holds_no_worker_slot() {
    let mut settings = settings();
    settings.concurrency = 1;
    let mut s = Story::new(
        "q",
        settings,
        Some(plan(vec![task("a", &[]), task("b", &[])])),
    );
    assert_eq!(s.started(), ["a"]);
    s.reply("a", server_error());
    assert_eq!(s.started(), ["b"], "b uses the slot while a waits");
    s.wake("a");
    assert!(s.started().is_empty(), "a waits for the slot");
    s.reply("b", ok("B"));
    assert_eq!(s.started(), ["a"]);
}

#[test]
fn events_say_the_whole_story_in_order() {
    let mut s = Story::planned(vec![task("a", &[])]);
    s.feed(Input::Delta {
        call: CallId {
            target: CallTarget::Subtask("a".into()),
            attempt: 1,
        },
        text: "partial ".into(),
    });
    s.at(1500).reply("a", ok("A"));
    s.synth_reply(ok("report"));
    let kinds: Vec<&str> = s
        .all_events
        .iter()
        .map(|e| match e {
            EventKind::RunStarted { .. } => "run_started",
            EventKind::PlanReady { .. } => "plan_ready",
            EventKind::SubtaskStarted { .. } => "started",
            EventKind::SubtaskDelta { .. } => "delta",
            EventKind::SubtaskSucceeded { .. } => "succeeded",
            EventKind::SynthesisStarted { .. } => "synthesis_started",
            EventKind::SynthesisFinished { .. } => "synthesis_finished",
            EventKind::RunFinished { .. } => "run_finished",
            EventKind::CallUsage { .. } => "call_usage",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "run_started",
            "plan_ready",
            "started",
            "delta",
            "call_usage",
            "succeeded",
            "synthesis_started",
            "call_usage",
            "synthesis_finished",
            "run_finished"
        ]
    );
    assert!(s.all_events.iter().any(|e| matches!(
        e,
        EventKind::SubtaskSucceeded {
            elapsed_ms: 1500,
            ..
        }
    )));
}

// ---- restoring a saved run ------------------------------------------------------------------

fn saved(tasks: Vec<PlannedSubtask>) -> SavedRun {
    SavedRun {
        query: "the query".into(),
        plan: plan(tasks),
        subtasks: vec![],
        synthesis_attempts: 0,
        follow_up: None,
        context: Default::default(),
        sources: Vec::new(),
        report: None,
        usage: Usage {
            tokens_in: 100,
            tokens_out: 50,
            estimated: false,
            cached_in: 0,
        },
        elapsed_ms: 60_000,
    }
}

fn done(id: &str, attempts: u32, text: &str) -> SavedSubtask {
    SavedSubtask {
        id: id.into(),
        attempts,
        result: Some(SavedResult {
            text: text.into(),
            usage: Usage {
                tokens_in: 10,
                tokens_out: 5,
                estimated: false,
                cached_in: 0,
            },
            elapsed_ms: 1200,
            cut_off: false,
            cached: false,
            flagged: None,
        }),
    }
}

fn tried(id: &str, attempts: u32) -> SavedSubtask {
    SavedSubtask {
        id: id.into(),
        attempts,
        result: None,
    }
}

fn restored(saved: SavedRun) -> Story {
    let mut s = Story {
        run: Run::restore(saved, settings()),
        now: 0,
        effects: vec![],
        all_events: vec![],
    };
    s.feed(Input::Start);
    s
}

fn calls(effects: &[Effect]) -> Vec<&CallId> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Call { call, .. } => Some(call),
            _ => None,
        })
        .collect()
}

#[test]
fn a_restored_run_never_calls_finished_subtasks_and_runs_their_dependents() {
    let mut saved = saved(vec![task("a", &[]), task("b", &["a"]), task("c", &[])]);
    saved.subtasks = vec![done("a", 2, "the saved finding of a"), tried("c", 3)];
    let mut s = restored(saved);

    assert_eq!(s.status("a"), SubtaskStatus::Succeeded);
    assert_eq!(s.started(), ["b", "c"], "a is a fact, not a call");
    let b = s
        .request_for(&CallTarget::Subtask("b".into()))
        .expect("b starts");
    assert!(user_text(b).contains("the saved finding of a"));
    assert_eq!(
        s.attempt("c"),
        4,
        "new attempts are numbered after the saved ones"
    );
    assert_eq!(
        s.events()[..3],
        [
            &EventKind::RunStarted {
                query: "the query".into()
            },
            &EventKind::PlanReady {
                plan: plan(vec![task("a", &[]), task("b", &["a"]), task("c", &[])])
            },
            &EventKind::SubtaskSucceeded {
                subtask: "a".into(),
                attempt: 2,
                elapsed_ms: 1200,
                usage: Usage {
                    tokens_in: 10,
                    tokens_out: 5,
                    estimated: false,
                    cached_in: 0,
                },
                result: "the saved finding of a".into(),
                cut_off: false,
                cached: false,
            },
        ],
        "the saved facts are restated for consumers"
    );

    s.at(500).reply("b", ok("B")).reply("c", ok("C"));
    let synthesis = s
        .request_for(&CallTarget::Synthesis)
        .expect("then the synthesis");
    let text = user_text(synthesis);
    assert!(text.contains("the saved finding of a") && text.contains('B') && text.contains('C'));
    s.synth_reply(ok("report"));
    let end = s.events().into_iter().find_map(|e| match e {
        EventKind::RunFinished {
            status,
            elapsed_ms,
            usage,
            ..
        } => Some((*status, *elapsed_ms, *usage)),
        _ => None,
    });
    assert_eq!(
        end,
        Some((
            RunStatus::Succeeded,
            60_500,
            Usage {
                tokens_in: 130,
                tokens_out: 65,
                estimated: false,
                cached_in: 0,
            }
        )),
        "time and tokens go on from the saved totals"
    );
}

#[test]
fn a_restored_run_with_every_result_and_a_report_makes_no_call_unless_asked() {
    let mut saved = saved(vec![task("a", &[]), task("b", &["a"])]);
    saved.subtasks = vec![done("a", 1, "A"), done("b", 1, "B")];
    saved.synthesis_attempts = 2;
    saved.report = Some(SavedReport {
        text: "the saved report".into(),
        synthesized: true,
        usage: Usage::default(),
    });
    let mut s = restored(saved);

    assert!(calls(&s.effects).is_empty(), "{:?}", s.effects);
    assert!(s.events().contains(&&EventKind::SynthesisFinished {
        attempt: 2,
        text: "the saved report".into(),
        synthesized: true,
        usage: Usage::default(),
        error: None,
    }));
    assert_eq!(s.finished(), Some(RunStatus::Succeeded));
    assert!(s.run.is_finished());

    s.command(RunCommand::Resynthesize);
    assert_eq!(
        calls(&s.effects),
        [&CallId {
            target: CallTarget::Synthesis,
            attempt: 3
        }]
    );
}

#[test]
fn failed_cancelled_and_unfinished_subtasks_of_a_saved_run_run_again() {
    let mut saved = saved(vec![
        task("ok", &[]),
        task("failed", &[]),
        task("cancelled", &[]),
        task("blocked", &["failed"]),
        task("never_saved", &[]),
    ]);
    saved.subtasks = vec![
        done("ok", 1, "fine"),
        tried("failed", 3),
        tried("cancelled", 1),
        tried("blocked", 0),
    ];
    saved.synthesis_attempts = 1;
    saved.report = Some(SavedReport {
        text: "a report with gaps".into(),
        synthesized: true,
        usage: Usage::default(),
    });
    let mut s = restored(saved);
    assert_eq!(s.started(), ["failed", "cancelled", "never_saved"]);
    assert_eq!(s.status("blocked"), SubtaskStatus::Pending);
    s.reply("failed", ok("F"));
    assert_eq!(s.started(), ["blocked"]);
    s.reply("cancelled", ok("C"))
        .reply("never_saved", ok("N"))
        .reply("blocked", ok("B"));
    assert_eq!(
        calls(&s.effects),
        [&CallId {
            target: CallTarget::Synthesis,
            attempt: 2
        }],
        "a new report, numbered after the saved one"
    );
}

#[test]
fn a_saved_run_without_a_report_or_with_a_joined_one_is_synthesised() {
    // A saved report means a synthesis call was made, even if the count was not saved.
    for (report, attempt) in [
        (None, 1),
        (
            Some(SavedReport {
                text: "results joined after a failed synthesis".into(),
                synthesized: false,
                usage: Usage::default(),
            }),
            2,
        ),
    ] {
        let mut saved = saved(vec![task("a", &[])]);
        saved.subtasks = vec![done("a", 1, "A")];
        saved.report = report;
        let s = restored(saved);
        assert_eq!(
            calls(&s.effects),
            [&CallId {
                target: CallTarget::Synthesis,
                attempt
            }]
        );
    }
}

#[test]
fn a_saved_result_for_a_subtask_not_in_the_plan_is_dropped_with_a_notice() {
    let mut saved = saved(vec![task("a", &[])]);
    saved.subtasks = vec![done("gone", 1, "stale")];
    let s = restored(saved);
    assert!(s.events().contains(&&EventKind::Notice {
        message: "the saved subtask `gone` is not in the plan; dropped".into()
    }));
    assert_eq!(s.started(), ["a"]);
}

#[test]
fn a_saved_run_with_an_invalid_plan_fails_without_a_call() {
    let s = restored(saved(vec![task("a", &["a"])]));
    assert!(calls(&s.effects).is_empty());
    assert_eq!(s.finished(), Some(RunStatus::Failed));
    let error = s.events().into_iter().find_map(|e| match e {
        EventKind::RunFinished { error, .. } => error.clone(),
        _ => None,
    });
    assert_eq!(
        error.as_deref(),
        Some("the saved plan is invalid: the dependencies form a cycle: a → a")
    );
}

#[test]
fn a_store_may_fill_only_what_it_knows() {
    let json = serde_json::json!({
        "query": "q",
        "plan": {"subtasks": [{"id": "a", "worker": "analysis", "title": "A", "description": "a"}]},
        "subtasks": [{"id": "a", "attempts": 1, "result": {"text": "A"}}],
    });
    let saved: SavedRun = serde_json::from_value(json).expect("a saved run");
    assert_eq!(
        saved.subtasks[0].result.as_ref().map(|r| r.elapsed_ms),
        Some(0)
    );
    assert_eq!(saved.report, None);
    assert_eq!(saved.usage, Usage::default());
    let back: SavedRun =
        serde_json::from_value(serde_json::to_value(&saved).expect("serialises")).expect("back");
    assert_eq!(back, saved);
}

#[test]
fn a_runs_plan_rules_are_those_of_its_roles_with_one_default() {
    let mut settings = settings();
    assert_eq!(settings.plan_rules().default_role, "analysis");
    settings.roles.rotate_left(1);
    let first = settings.roles[0].name.clone();
    assert_eq!(settings.plan_rules().default_role, first);
    // With no roles at all, the built-in default still names a role (it was once empty).
    settings.roles.clear();
    assert_eq!(settings.plan_rules().default_role, "analysis");
}

// ---- replies that are not answers ------------------------------------------------------------

fn reply_with(text: &str, reasoning: &str, cut_off: bool) -> Result<Completion, CallError> {
    Ok(Completion {
        text: text.into(),
        usage: None,
        cut_off,
        reasoning: reasoning.into(),
        cached: false,
        tool_calls: Vec::new(),
    })
}

#[test]
fn an_empty_or_reasoning_only_reply_is_a_retried_failure_that_reaches_no_dependent() {
    for (text, reasoning) in [("", ""), (" \n\t ", ""), ("", "Let me think about it.")] {
        let mut s = Story::planned(vec![task("a", &[]), task("b", &["a"])]);
        s.at(100).reply("a", reply_with(text, reasoning, false));
        assert_eq!(
            s.status("a"),
            SubtaskStatus::Retrying,
            "{text:?} {reasoning:?}"
        );
        assert!(s.started().is_empty(), "the dependent does not start");
        assert!(s.events().iter().any(|e| matches!(e,
            EventKind::SubtaskRetrying { attempt: 1, error, .. }
                if error.contains("the model returned no text"))));
        assert!(
            !s.all_events
                .iter()
                .any(|e| matches!(e, EventKind::SubtaskSucceeded { .. }))
        );
        // Its tokens were spent: they count in the run's total.
        assert!(s.run.usage.tokens_in > 0);
        s.wake("a");
        s.reply("a", ok("a real answer"));
        assert_eq!(s.status("a"), SubtaskStatus::Succeeded);
        assert_eq!(s.started(), ["b"]);
        let request = s
            .request_for(&CallTarget::Subtask("b".into()))
            .expect("b's call");
        assert!(user_text(request).contains("a real answer"));
        assert!(!user_text(request).contains("Let me think"));
    }
}

#[test]
fn empty_replies_use_up_the_retries_then_fail_the_subtask() {
    let mut settings = settings();
    settings.retries = 1;
    let mut s = Story::new(
        "q",
        settings,
        Some(plan(vec![task("a", &[]), task("b", &["a"])])),
    );
    s.reply("a", reply_with("", "", false));
    s.wake("a");
    s.reply("a", reply_with("", "", true));
    assert_eq!(s.status("a"), SubtaskStatus::Failed);
    assert_eq!(s.status("b"), SubtaskStatus::Blocked);
    assert!(s.events().iter().any(|e| matches!(e,
        EventKind::SubtaskFailed { attempt: 2, error, .. }
            if error.contains("the model returned no text") && error.contains("token limit"))));
}

#[test]
fn an_empty_synthesis_is_retried_and_never_becomes_the_report() {
    let mut s = Story::planned(vec![task("a", &[])]);
    s.reply("a", ok("the finding of a"));
    s.synth_reply(reply_with("   ", "thinking only", false));
    assert!(
        s.events()
            .iter()
            .any(|e| matches!(e, EventKind::SynthesisRetrying { .. }))
    );
    assert!(
        !s.all_events
            .iter()
            .any(|e| matches!(e, EventKind::SynthesisFinished { .. }))
    );
    let attempt = s.run.synthesis.attempt;
    s.feed(Input::Wake {
        call: CallId {
            target: CallTarget::Synthesis,
            attempt,
        },
    });
    s.synth_reply(ok("# The report"));
    assert!(s.events().iter().any(|e| matches!(e,
        EventKind::SynthesisFinished { text, synthesized: true, .. } if text == "# The report")));
}

#[test]
fn a_cut_off_result_is_kept_marked_and_the_synthesis_is_told() {
    let mut s = Story::planned(vec![task("a", &[]), task("b", &[])]);
    s.reply("a", reply_with("half an answ", "", true));
    assert!(s.events().iter().any(|e| matches!(e,
        EventKind::SubtaskSucceeded { cut_off: true, result, .. } if result == "half an answ")));
    s.reply("b", ok("a whole answer"));
    let request = s
        .request_for(&CallTarget::Synthesis)
        .expect("the synthesis call");
    let user = user_text(request);
    let marked = |title: &str| {
        let at = user
            .find(&format!("{title}\n"))
            .expect("the finding's heading");
        user[at..]
            .lines()
            .nth(2)
            .unwrap_or("")
            .contains("cut off at the token limit")
    };
    assert!(marked("Title of a"), "{user}");
    assert!(!marked("Title of b"), "{user}");
}

#[test]
fn reasoning_is_streamed_apart_and_reaches_no_prompt() {
    let mut s = Story::planned(vec![task("a", &[]), task("b", &["a"])]);
    s.feed(Input::Reasoning {
        call: CallId {
            target: CallTarget::Subtask("a".into()),
            attempt: 1,
        },
        text: "pondering".into(),
    });
    assert_eq!(
        s.events(),
        [&EventKind::SubtaskReasoning {
            subtask: "a".into(),
            attempt: 1,
            text: "pondering".into()
        }]
    );
    s.reply("a", reply_with("the answer", "pondering", false));
    let request = s
        .request_for(&CallTarget::Subtask("b".into()))
        .expect("b's call");
    assert!(!user_text(request).contains("pondering"));
    // Reasoning is output: the estimate counts it.
    let usage = s.all_events.iter().find_map(|e| match e {
        EventKind::SubtaskSucceeded { usage, .. } => Some(*usage),
        _ => None,
    });
    assert_eq!(
        usage.map(|u| u.tokens_out),
        Some(("the answer".len() + "pondering".len()).div_ceil(4) as u64)
    );
}

fn planner_call(attempt: u32) -> CallId {
    CallId {
        target: CallTarget::Planner,
        attempt,
    }
}

/// A run whose planner gave no usable plan twice.
fn failed_planning() -> Story {
    let mut s = Story::new("q", settings(), None);
    s.feed(Input::Reply {
        call: planner_call(1),
        result: ok("No JSON here."),
    });
    s.feed(Input::Reply {
        call: planner_call(2),
        result: ok("Still none."),
    });
    assert_eq!(s.finished(), Some(RunStatus::Failed));
    s
}

#[test]
fn replan_is_refused_while_the_run_goes_on_or_has_a_plan() {
    let mut planning = Story::new("q", settings(), None);
    planning.command(RunCommand::Replan);
    assert_eq!(
        planning.effects,
        only_refusal(CommandName::Replan, Refusal::StillPlanning)
    );

    let mut working = Story::planned(vec![task("a", &[])]);
    working.command(RunCommand::Replan);
    assert_eq!(
        working.effects,
        only_refusal(CommandName::Replan, Refusal::RunActive)
    );

    working.reply("a", ok("result")).synth_reply(ok("report"));
    assert_eq!(working.finished(), Some(RunStatus::Succeeded));
    working.command(RunCommand::Replan);
    assert_eq!(
        working.effects,
        only_refusal(CommandName::Replan, Refusal::PlanExists)
    );
}

#[test]
fn a_prompt_too_long_for_the_context_fails_at_once_naming_its_size_and_the_bound() {
    let mut s = Story::planned(vec![task("a", &[]), task("b", &["a"])]);
    s.reply("a", ok(&"long finding ".repeat(100)));
    let prompt_chars = s.run.tasks[1].prompt_chars;
    let mut overflow = CallError::from_status(400, "maximum context length is 1024".into(), None);
    overflow.reason = crate::llm::CONTEXT_LENGTH.into();
    s.reply("b", Err(overflow));
    assert_eq!(s.status("b"), SubtaskStatus::Failed, "not retried");
    let error = s
        .events()
        .into_iter()
        .find_map(|e| match e {
            EventKind::SubtaskFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .expect("a failure");
    assert!(error.contains("subtask `b` (Title of b)"), "{error}");
    assert!(
        error.contains(&format!(
            "{prompt_chars} characters, about {} tokens",
            prompt_chars.div_ceil(4)
        )),
        "{error}"
    );
    assert!(error.contains("limits.max_dependency_chars"), "{error}");
    assert!(error.contains("maximum context length is 1024"), "{error}");
}

#[test]
fn dependency_results_are_bounded_when_asked() {
    let mut settings = settings();
    settings.max_dependency_chars = Some(10);
    let mut s = Story::new(
        "q",
        settings,
        Some(plan(vec![task("a", &[]), task("b", &["a"])])),
    );
    s.reply("a", ok("0123456789 and the rest"));
    let request = s
        .request_for(&CallTarget::Subtask("b".into()))
        .expect("b's call");
    let user = user_text(request);
    assert!(
        user.contains("0123456789\n\n[… 13 more characters"),
        "{user}"
    );
    assert!(!user.contains("and the rest"));
}

#[test]
fn a_run_whose_planning_failed_plans_again_afresh_and_goes_on() {
    let mut s = failed_planning();
    s.command(RunCommand::Replan);
    assert!(matches!(
        s.events()[..],
        [EventKind::PlanningStarted { attempt: 3, .. }]
    ));
    let request = s
        .request_for(&CallTarget::Planner)
        .expect("the planner is asked");
    // Afresh: the query alone, not the old answers and their problems.
    assert_eq!(request.messages.len(), 1);
    assert!(request.structured.is_some(), "with the plan's schema");
    s.feed(Input::Reply {
        call: planner_call(3),
        result: ok(r#"{"subtasks": [{"id": "a", "title": "A", "description": "x"}]}"#),
    });
    assert_eq!(s.started(), ["a"]);
    s.reply("a", ok("result")).synth_reply(ok("report"));
    assert_eq!(s.finished(), Some(RunStatus::Succeeded));
}

#[test]
fn a_rejected_answer_is_carried_sanitised_and_bounded() {
    let mut s = Story::new("q", settings(), None);
    let long = format!("\u{1b}[31mred\u{1b}[0m {}", "é".repeat(3000));
    s.feed(Input::Reply {
        call: planner_call(1),
        result: ok(&long),
    });
    let answer = s
        .events()
        .into_iter()
        .find_map(|e| match e {
            EventKind::PlanRejected { answer, .. } => Some(answer.clone()),
            _ => None,
        })
        .expect("rejected");
    assert!(answer.starts_with("red é"), "{answer:?}");
    assert!(!answer.contains('\u{1b}'));
    assert!(answer.len() < REJECTED_ANSWER_MAX_BYTES + 100);
    assert!(answer.ends_with("more bytes not shown)"), "{answer:?}");
}

#[test]
fn planner_text_streams_as_events_and_complete_subtasks_are_drafted_once_each() {
    let mut s = Story::new("q", settings(), None);
    let delta = |s: &mut Story, text: &str| {
        s.feed(Input::Delta {
            call: planner_call(1),
            text: text.into(),
        });
        s.events().into_iter().cloned().collect::<Vec<_>>()
    };
    let first = delta(
        &mut s,
        r#"{"subtasks": [{"id": "a", "title": "A", "worker": "nobody""#,
    );
    assert_eq!(
        first,
        [EventKind::PlanningDelta {
            attempt: 1,
            text: r#"{"subtasks": [{"id": "a", "title": "A", "worker": "nobody""#.into()
        }]
    );
    let second = delta(&mut s, r#"}, {"id": "b", "#);
    let drafted = second.iter().find_map(|e| match e {
        EventKind::PlanDrafted {
            attempt: 1,
            subtasks,
        } => Some(subtasks.clone()),
        _ => None,
    });
    let drafted = drafted.expect("`a` is complete");
    assert_eq!(drafted.len(), 1);
    // An unknown role shows as the default one, as the check will make it.
    assert_eq!(drafted[0].worker, "analysis");
    // Text that completes nothing new drafts nothing new.
    let third = delta(&mut s, r#""title": "B""#);
    assert_eq!(third.len(), 1, "{third:?}");
    // A late delta of an older attempt is dropped.
    s.feed(Input::Delta {
        call: planner_call(7),
        text: "x".into(),
    });
    assert!(s.effects.is_empty());
}

// ---- follow-ups ---------------------------------------------------------------------------

fn earlier(report: &str) -> FollowUp {
    FollowUp {
        parent: crate::protocol::RunId(uuid::Uuid::nil()),
        query: "the earlier query".into(),
        report: report.into(),
        results: vec![
            EarlierResult {
                id: "costs".into(),
                title: "Costs of the rollout".into(),
                text: "EARLIER COSTS RESULT".into(),
            },
            EarlierResult {
                id: "pricing".into(),
                title: "Pricing".into(),
                text: format!("EARLIER PRICING {}", "p".repeat(5_000)),
            },
        ],
    }
}

fn follow_up_story(report: &str) -> Story {
    let mut s = Story {
        run: Run::new("go deeper on pricing", settings(), None).following(Some(earlier(report))),
        now: 0,
        effects: vec![],
        all_events: vec![],
    };
    s.feed(Input::Start);
    s
}

fn notices(s: &Story) -> Vec<String> {
    s.all_events
        .iter()
        .filter_map(|e| match e {
            EventKind::Notice { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_follow_up_planner_sees_the_earlier_query_report_and_subtasks() {
    let s = follow_up_story("The earlier REPORT text.");
    let request = s.request_for(&CallTarget::Planner).expect("a planner call");
    let user = &request.messages[0].content;
    assert!(user.contains("<earlier_query>\nthe earlier query\n</earlier_query>"));
    assert!(user.contains("The earlier REPORT text."));
    assert!(user.contains("`costs`: Costs of the rollout"));
    assert!(user.contains("EARLIER COSTS RESULT"));
    assert!(
        user.contains("\"reuse\""),
        "the planner is told how to reuse"
    );
    assert!(user.ends_with("go deeper on pricing"), "{user}");
    // Excerpts are bounded: a long earlier result is cut for the planner.
    assert!(!user.contains(&"p".repeat(FOLLOW_UP_EXCERPT_CHARS + 1)));
    assert!(user.contains("more characters of this result left out"));
    // A structured plan may carry the field.
    let schema = &request.structured.as_ref().expect("structured").schema;
    assert!(
        schema
            .pointer("/properties/subtasks/items/properties/reuse")
            .is_some()
    );
    assert!(notices(&s).is_empty(), "a short report is not cut");
}

#[test]
fn a_long_earlier_report_is_cut_with_a_notice() {
    let long = format!("{}TAIL-OF-REPORT", "r".repeat(FOLLOW_UP_REPORT_CHARS));
    let s = follow_up_story(&long);
    let user = &s
        .request_for(&CallTarget::Planner)
        .expect("planner")
        .messages[0]
        .content;
    assert!(user.contains(&"r".repeat(FOLLOW_UP_REPORT_CHARS)));
    assert!(!user.contains("TAIL-OF-REPORT"));
    assert!(user.contains("more characters of the earlier report left out"));
    let notices = notices(&s);
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains(&FOLLOW_UP_REPORT_CHARS.to_string()));
}

#[test]
fn a_reused_subtask_makes_no_call_and_its_dependents_get_its_result() {
    let mut s = follow_up_story("Earlier report.");
    s.feed(Input::Reply {
        call: planner_call(1),
        result: ok(r#"{"subtasks": [
            {"id": "base", "title": "Costs", "description": "as before", "reuse": "costs"},
            {"id": "deeper", "title": "Pricing risks", "description": "go deeper",
             "depends_on": ["base"]}
        ]}"#),
    });
    assert_eq!(s.started(), ["deeper"], "the reused subtask is not called");
    assert_eq!(s.status("base"), SubtaskStatus::Succeeded);
    let reused = s.events().into_iter().find_map(|e| match e {
        EventKind::SubtaskSucceeded {
            subtask, result, ..
        } if subtask.as_str() == "base" => Some(result.clone()),
        _ => None,
    });
    assert_eq!(reused.as_deref(), Some("EARLIER COSTS RESULT"));
    let plan_reuse = s.all_events.iter().find_map(|e| match e {
        EventKind::PlanReady { plan } => Some(plan.subtasks[0].reuse.clone()),
        _ => None,
    });
    assert_eq!(plan_reuse, Some(Some(SubtaskId::from("costs"))));
    let worker = s
        .request_for(&CallTarget::Subtask("deeper".into()))
        .expect("the dependent is called");
    let user = &worker.messages[0].content;
    assert!(user.contains("<result>\nEARLIER COSTS RESULT\n</result>"));
    assert!(
        user.contains("Earlier report."),
        "workers see the earlier report"
    );
    assert!(user.contains("the earlier query"));

    s.reply("deeper", ok("deeper finding"));
    let synthesis = s
        .request_for(&CallTarget::Synthesis)
        .expect("a synthesis call");
    let user = &synthesis.messages[0].content;
    assert!(user.contains("EARLIER COSTS RESULT"));
    assert!(user.contains("deeper finding"));
    s.synth_reply(ok("report"));
    assert_eq!(s.finished(), Some(RunStatus::Succeeded));
}

#[test]
fn reuse_of_an_unknown_earlier_subtask_runs_it_with_a_notice() {
    let mut s = follow_up_story("Earlier report.");
    s.feed(Input::Reply {
        call: planner_call(1),
        result: ok(
            r#"{"subtasks": [{"id": "a", "title": "A", "description": "x", "reuse": "nope"}]}"#,
        ),
    });
    assert_eq!(s.started(), ["a"]);
    assert!(notices(&s).iter().any(|n| n.contains("`nope`")));
    // Without a follow-up, `reuse` means nothing either.
    let mut given = task("b", &[]);
    given.reuse = Some("costs".into());
    let s = Story::planned(vec![given]);
    assert_eq!(s.started(), ["b"]);
    assert!(notices(&s).iter().any(|n| n.contains("follows up on no")));
    let request = s
        .request_for(&CallTarget::Subtask("b".into()))
        .expect("called");
    assert!(!request.messages[0].content.contains("earlier"));
}

// ---- the result cache ---------------------------------------------------------------------

#[track_caller]
fn policy(s: &Story, id: &str) -> CachePolicy {
    s.request_for(&CallTarget::Subtask(id.into()))
        .expect("the subtask started")
        .cache
}

#[test]
fn an_explicit_rerun_or_edit_bypasses_the_result_cache_and_the_scheduler_does_not() {
    let mut settings = settings();
    settings.retries = 1;
    settings.retry_base = Duration::from_millis(10);
    let tasks = vec![task("a", &[]), task("b", &["a"]), task("c", &[])];
    let mut s = Story::new("q", settings, Some(plan(tasks)));
    assert_eq!(policy(&s, "a"), CachePolicy::Use);
    assert_eq!(policy(&s, "c"), CachePolicy::Use);
    s.reply("c", ok("C"));
    s.reply("a", ok("A"));
    assert_eq!(
        policy(&s, "b"),
        CachePolicy::Use,
        "started by the scheduler"
    );
    s.reply("b", ok("B"));
    s.synth_reply(ok("r"));

    s.command(RunCommand::RetrySubtask("a".into()));
    assert_eq!(policy(&s, "a"), CachePolicy::Bypass, "`r`");
    // A retry after a failure of that attempt is still the user's re-run.
    s.reply("a", server_error());
    s.wake("a");
    assert_eq!(policy(&s, "a"), CachePolicy::Bypass);
    s.reply("a", ok("A2"));
    s.synth_reply(ok("r2"));

    s.command(RunCommand::EditSubtask {
        id: "c".into(),
        description: Some("Sharper".into()),
        worker: None,
    });
    assert_eq!(policy(&s, "c"), CachePolicy::Bypass, "`e`");
}

#[test]
fn retry_failed_bypasses_the_result_cache() {
    let mut settings = settings();
    settings.retries = 0;
    let mut s = Story::planned(vec![task("a", &[]), task("b", &[])]);
    s.run.settings = settings;
    s.reply("b", ok("B"));
    s.reply("a", server_error());
    s.synth_reply(ok("r"));
    s.command(RunCommand::RetryFailed);
    assert_eq!(s.started(), ["a"]);
    assert_eq!(policy(&s, "a"), CachePolicy::Bypass, "`R`");
}

#[test]
fn a_cached_answer_spends_no_tokens_and_is_marked() {
    let mut s = Story::planned(vec![task("a", &[])]);
    s.reply(
        "a",
        Ok(Completion {
            text: "A".into(),
            usage: Some(Usage {
                tokens_in: 50,
                tokens_out: 20,
                estimated: false,
                cached_in: 0,
            }),
            cached: true,
            ..Completion::default()
        }),
    );
    assert!(s.events().iter().any(|e| matches!(e,
        EventKind::SubtaskSucceeded { cached: true, usage, .. } if *usage == Usage::default())));
    assert_eq!(s.run.usage, Usage::default());
}

// ---- direct answers -------------------------------------------------------------------------

fn straightforward(tasks: Vec<PlannedSubtask>) -> Plan {
    Plan {
        complexity: Some(Complexity::Straightforward),
        ..plan(tasks)
    }
}

fn synthesis_calls(s: &Story) -> usize {
    s.effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::Call {
                    call: CallId {
                        target: CallTarget::Synthesis,
                        ..
                    },
                    ..
                }
            )
        })
        .count()
}

#[test]
fn a_straightforward_query_is_answered_by_one_worker_call_and_no_synthesis() {
    let mut s = Story::new("q", settings(), Some(straightforward(vec![task("a", &[])])));
    assert!(s.events().contains(&&EventKind::DirectAnswer {
        subtask: "a".into()
    }));
    assert_eq!(s.started(), ["a"]);

    s.at(900).reply("a", ok("Paris."));
    assert_eq!(synthesis_calls(&s), 0, "{:?}", s.effects);
    assert!(
        !s.events()
            .iter()
            .any(|e| matches!(e, EventKind::SynthesisStarted { .. }))
    );
    assert!(s.events().contains(&&EventKind::SynthesisFinished {
        attempt: 1,
        text: "Paris.".into(),
        synthesized: true,
        usage: Usage::default(),
        error: None,
    }));
    assert_eq!(s.finished(), Some(RunStatus::Succeeded));
    // The one worker call is all the run spent.
    assert!(s.events().iter().any(|e| matches!(
        e,
        EventKind::RunFinished { usage, .. } if usage.tokens_in == 10 && usage.tokens_out == 5
    )));
}

#[test]
fn without_direct_answers_a_straightforward_query_is_synthesised() {
    let mut settings = settings();
    settings.direct = false;
    let mut s = Story::new("q", settings, Some(straightforward(vec![task("a", &[])])));
    assert!(
        !s.all_events
            .iter()
            .any(|e| matches!(e, EventKind::DirectAnswer { .. }))
    );
    s.reply("a", ok("Paris."));
    assert_eq!(synthesis_calls(&s), 1);
}

#[test]
fn a_straightforward_plan_of_several_subtasks_runs_as_usual_with_a_notice() {
    let mut s = Story::new(
        "q",
        settings(),
        Some(straightforward(vec![task("a", &[]), task("b", &[])])),
    );
    assert!(notices(&s).iter().any(|n| n.contains("2 subtasks")));
    s.reply("a", ok("A")).reply("b", ok("B"));
    assert_eq!(synthesis_calls(&s), 1);
}

#[test]
fn a_failed_direct_answer_fails_the_run_without_a_synthesis() {
    let mut settings = settings();
    settings.retries = 0;
    let mut s = Story::new("q", settings, Some(straightforward(vec![task("a", &[])])));
    s.reply("a", Err(CallError::from_status(400, "bad".into(), None)));
    assert_eq!(synthesis_calls(&s), 0);
    assert_eq!(s.finished(), Some(RunStatus::Failed));
}

#[test]
fn a_saved_direct_answer_is_resumed_without_a_call() {
    let mut saved = saved(vec![task("a", &[])]);
    saved.plan.complexity = Some(Complexity::Straightforward);
    saved.subtasks = vec![done("a", 1, "Paris.")];
    saved.synthesis_attempts = 1;
    saved.report = Some(SavedReport {
        text: "Paris.".into(),
        synthesized: true,
        usage: Usage::default(),
    });
    let s = restored(saved);
    assert!(calls(&s.effects).is_empty(), "{:?}", s.effects);
    assert!(s.events().contains(&&EventKind::DirectAnswer {
        subtask: "a".into()
    }));
    assert_eq!(s.finished(), Some(RunStatus::Succeeded));
}

#[test]
fn a_direct_run_saved_with_its_answer_but_no_report_makes_the_report_without_a_call() {
    let mut saved = saved(vec![task("a", &[])]);
    saved.plan.complexity = Some(Complexity::Straightforward);
    saved.subtasks = vec![done("a", 1, "Paris.")];
    let s = restored(saved);
    assert!(calls(&s.effects).is_empty(), "{:?}", s.effects);
    assert!(s.events().iter().any(|e| matches!(
        e,
        EventKind::SynthesisFinished { text, synthesized: true, .. } if text == "Paris."
    )));
    assert_eq!(s.finished(), Some(RunStatus::Succeeded));
}

#[test]
fn an_interrupted_direct_run_asks_its_one_worker_again_and_still_makes_no_synthesis() {
    let mut saved = saved(vec![task("a", &[])]);
    saved.plan.complexity = Some(Complexity::Straightforward);
    saved.subtasks = vec![tried("a", 1)];
    let mut s = restored(saved);
    assert_eq!(s.started(), ["a"]);
    assert_eq!(s.attempt("a"), 2);
    s.reply("a", ok("Paris."));
    assert_eq!(synthesis_calls(&s), 0);
    assert_eq!(s.finished(), Some(RunStatus::Succeeded));
}

// ---- the quality gate -----------------------------------------------------------------------

fn validating() -> RunSettings {
    RunSettings {
        validate: true,
        ..settings()
    }
}

// ---- budgets and provider pauses ------------------------------------------------------------

fn with_budget(max_tokens: Option<u64>, deadline_ms: Option<u64>) -> RunSettings {
    RunSettings {
        concurrency: 1,
        budget: Budget {
            max_tokens,
            deadline: deadline_ms.map(Duration::from_millis),
            ..Budget::default()
        },
        ..settings()
    }
}

impl Story {
    fn verdict(&mut self, id: &str, result: Result<Completion, CallError>) -> &mut Self {
        let attempt = self.attempt(id);
        self.feed(Input::Reply {
            call: CallId {
                target: CallTarget::Validation(id.into()),
                attempt,
            },
            result,
        })
    }
}

fn validated(s: &Story) -> Vec<(bool, String, bool)> {
    s.all_events
        .iter()
        .filter_map(|e| match e {
            EventKind::SubtaskValidated {
                passed,
                reason,
                flagged,
                ..
            } => Some((*passed, reason.clone(), *flagged)),
            _ => None,
        })
        .collect()
}

fn synthesis_user(s: &Story) -> String {
    user_text(
        s.request_for(&CallTarget::Synthesis)
            .expect("a synthesis call"),
    )
}

#[test]
fn a_passed_check_lets_the_result_count_and_only_then_its_dependents_start() {
    let mut s = Story::new(
        "the query",
        validating(),
        Some(plan(vec![task("a", &[]), task("b", &["a"])])),
    );
    s.reply("a", ok("A's answer"));
    assert_eq!(s.status("a"), SubtaskStatus::Validating);
    assert!(s.started().is_empty(), "b waits for the verdict");
    let request = s
        .request_for(&CallTarget::Validation("a".into()))
        .expect("a validator call");
    assert_eq!(request.model, "validator-model");
    assert_eq!(request.role, CallRole::Validator);
    let user = user_text(request);
    assert!(user.contains("the query") && user.contains("Title of a"));
    assert!(user.contains("A's answer"));
    assert!(s.events().contains(&&EventKind::SubtaskValidating {
        subtask: "a".into(),
        attempt: 1,
        model: "validator-model".into(),
    }));

    s.verdict("a", ok("PASS: covers it"));
    assert_eq!(validated(&s), [(true, "covers it".to_owned(), false)]);
    assert_eq!(s.status("a"), SubtaskStatus::Succeeded);
    assert_eq!(s.started(), ["b"]);
    s.reply("b", ok("B")).verdict("b", ok("pass"));
    s.synth_reply(ok("report"));
    // Two workers, two checks, one synthesis: every call's tokens count.
    assert!(s.events().iter().any(|e| matches!(
        e,
        EventKind::RunFinished { usage, .. } if usage.tokens_in == 50 && usage.tokens_out == 25
    )));
}

#[test]
fn a_failed_check_runs_the_subtask_again_with_the_reason_and_a_pass_clears_it() {
    let mut s = Story::new("q", validating(), Some(plan(vec![task("a", &[])])));
    s.reply("a", ok("first try"));
    s.verdict("a", ok("**FAIL**: the figure has no source"));
    assert_eq!(
        validated(&s),
        [(false, "the figure has no source".to_owned(), false)]
    );
    assert_eq!(s.started(), ["a"]);
    assert_eq!(s.attempt("a"), 2);
    let user = user_text(
        s.request_for(&CallTarget::Subtask("a".into()))
            .expect("a second worker call"),
    );
    assert!(user.contains("A reviewer rejected your previous answer"));
    assert!(user.contains("the figure has no source"));

    s.reply("a", ok("second try")).verdict("a", ok("PASS"));
    assert_eq!(s.status("a"), SubtaskStatus::Succeeded);
    assert!(s.events().iter().any(|e| matches!(
        e,
        EventKind::SubtaskSucceeded { attempt: 2, result, .. } if result == "second try"
    )));
    assert!(!synthesis_user(&s).contains("flagged"));
}

#[test]
fn a_second_failed_check_keeps_the_result_flagged_and_the_synthesis_is_told() {
    let mut s = Story::new("q", validating(), Some(plan(vec![task("a", &[])])));
    s.reply("a", ok("first try"))
        .verdict("a", ok("FAIL: misses the costs"));
    s.reply("a", ok("second try"))
        .verdict("a", ok("Verdict: fail - still no costs"));
    assert_eq!(
        validated(&s),
        [
            (false, "misses the costs".to_owned(), false),
            (false, "still no costs".to_owned(), true),
        ]
    );
    assert_eq!(s.status("a"), SubtaskStatus::Succeeded);
    assert!(s.events().iter().any(|e| matches!(
        e,
        EventKind::SubtaskSucceeded { attempt: 2, result, .. } if result == "second try"
    )));
    let user = synthesis_user(&s);
    assert!(user.contains("A reviewer flagged this result: still no costs"));
}

#[test]
fn an_unreadable_verdict_passes_with_a_notice_and_a_failed_check_keeps_the_result() {
    let mut s = Story::new(
        "q",
        validating(),
        Some(plan(vec![task("a", &[]), task("b", &[])])),
    );
    s.reply("a", ok("A"))
        .verdict("a", ok("Looks fine to me overall."));
    assert_eq!(s.status("a"), SubtaskStatus::Succeeded);
    assert!(notices(&s).iter().any(|n| n.contains("no PASS or FAIL")));
    assert!(validated(&s)[0].0, "taken as a pass");

    s.reply("b", ok("B")).verdict("b", server_error());
    assert_eq!(s.status("b"), SubtaskStatus::Succeeded);
    assert!(notices(&s).iter().any(|n| n.contains("kept unchecked")));
    assert_eq!(validated(&s).len(), 1, "no verdict for the failed check");
    assert!(s.request_for(&CallTarget::Synthesis).is_some());
}

fn budget_story(settings: RunSettings) -> Story {
    Story::new(
        "the query",
        settings,
        Some(plan(vec![
            task("a", &[]),
            task("b", &[]),
            task("c", &["b"]),
        ])),
    )
}

fn reached(story: &Story) -> Option<(BudgetReason, Vec<String>)> {
    story.all_events.iter().find_map(|e| match e {
        EventKind::BudgetReached { reason, waiting } => Some((
            reason.clone(),
            waiting.iter().map(|w| w.0.clone()).collect(),
        )),
        _ => None,
    })
}

#[test]
fn a_spent_token_budget_starts_nothing_more_and_waits() {
    // Each reply costs 15 tokens; the budget allows one.
    let mut s = budget_story(with_budget(Some(15), None));
    assert_eq!(s.started(), ["a"]);
    s.reply("a", ok("A"));
    assert!(
        s.started().is_empty(),
        "nothing starts once the budget is spent"
    );
    let (reason, waiting) = reached(&s).expect("announced");
    assert_eq!(reason, BudgetReason::Tokens { spent: 15, max: 15 });
    assert_eq!(waiting, ["b", "c"]);
    assert_eq!(s.finished(), None, "the run waits for a decision");
    assert!(s.request_for(&CallTarget::Synthesis).is_none());
}

#[test]
fn raising_the_budget_goes_on_and_announces_the_new_limit() {
    let mut s = budget_story(with_budget(Some(15), None));
    s.reply("a", ok("A"));
    s.command(RunCommand::RaiseBudget {
        tokens: Some(100),
        time_ms: None,
        cost_micros: None,
    });
    assert!(s.events().contains(&&EventKind::BudgetRaised {
        max_tokens: Some(115),
        deadline_ms: None,
        max_cost_micros: None,
    }));
    assert_eq!(s.started(), ["b"]);
}

/// A cost budget of one cent, with the workers' model at $1 000 a million tokens: each reply
/// (15 tokens) costs $0.015.
fn with_cost_budget() -> RunSettings {
    let prices = crate::engine::cost::PriceTable::default().with([(
        "worker-model".to_owned(),
        crate::engine::cost::Price {
            input: 1000.0,
            output: 1000.0,
            cached_input: None,
        },
    )]);
    RunSettings {
        concurrency: 1,
        budget: Budget {
            max_cost: Some(0.01),
            prices: std::sync::Arc::new(prices),
            ..Budget::default()
        },
        ..settings()
    }
}

#[test]
fn a_spent_cost_budget_starts_nothing_more_and_a_raise_in_dollars_goes_on() {
    let mut s = budget_story(with_cost_budget());
    assert_eq!(s.started(), ["a"]);
    s.reply("a", ok("A"));
    let (reason, waiting) = reached(&s).expect("the cost budget is reached");
    assert_eq!(
        reason,
        BudgetReason::Cost {
            spent_micros: 15_000,
            max_micros: 10_000
        }
    );
    assert_eq!(waiting, ["b", "c"]);
    assert!(s.started().is_empty());
    s.command(RunCommand::RaiseBudget {
        tokens: None,
        time_ms: None,
        cost_micros: Some(50_000),
    });
    assert!(s.events().contains(&&EventKind::BudgetRaised {
        max_tokens: None,
        deadline_ms: None,
        max_cost_micros: Some(60_000),
    }));
    assert_eq!(s.started(), ["b"]);
}

#[test]
fn without_a_cost_limit_calls_are_not_priced_and_nothing_waits() {
    let mut settings = with_cost_budget();
    settings.budget.max_cost = None;
    let mut s = budget_story(settings);
    s.reply("a", ok("A"));
    assert!(reached(&s).is_none());
    assert_eq!(s.started(), ["b"]);
}

#[test]
fn synthesize_now_skips_what_waits_lets_running_work_finish_and_names_the_skipped() {
    let mut s = budget_story(RunSettings {
        concurrency: 2,
        ..with_budget(Some(15), None)
    });
    assert_eq!(s.started(), ["a", "b"]);
    s.reply("a", ok("A"));
    assert!(
        reached(&s).is_some(),
        "c waits on b and the budget is spent"
    );
    s.command(RunCommand::SynthesizeNow);
    assert!(s.events().contains(&&EventKind::SubtasksSkipped {
        subtasks: vec!["c".into()],
        reason: SKIPPED_FOR_BUDGET.into(),
    }));
    assert!(
        s.request_for(&CallTarget::Synthesis).is_none(),
        "b is still running: it finishes first"
    );
    s.reply("b", ok("B"));
    let request = s
        .request_for(&CallTarget::Synthesis)
        .expect("the synthesis starts once b is done");
    let prompt = &request.messages[0].content;
    assert!(prompt.contains("Title of c"), "{prompt}");
    assert!(prompt.contains(SKIPPED_FOR_BUDGET), "{prompt}");
    s.synth_reply(ok("report"));
    assert_eq!(s.finished(), Some(RunStatus::Partial));
}

#[test]
fn a_passed_deadline_is_reached_on_the_engine_clock() {
    let mut s = budget_story(with_budget(None, Some(60_000)));
    s.at(59_999).reply("a", ok("A"));
    assert_eq!(s.started(), ["b"], "not yet");
    s.at(60_000).reply("b", ok("B"));
    assert!(s.started().is_empty());
    let (reason, waiting) = reached(&s).expect("announced");
    assert_eq!(
        reason,
        BudgetReason::Deadline {
            elapsed_ms: 60_000,
            deadline_ms: 60_000
        }
    );
    assert_eq!(waiting, ["c"]);
}

#[test]
fn a_budget_reached_with_nothing_left_to_start_does_not_hold_the_synthesis() {
    let mut s = Story::new(
        "the query",
        with_budget(Some(1), None),
        Some(plan(vec![task("a", &[])])),
    );
    s.reply("a", ok("A"));
    assert!(reached(&s).is_none());
    assert!(s.request_for(&CallTarget::Synthesis).is_some());
}

#[test]
fn a_subtask_being_validated_can_be_cancelled_and_its_late_verdict_is_ignored() {
    let mut s = Story::new("q", validating(), Some(plan(vec![task("a", &[])])));
    s.reply("a", ok("A"));
    s.command(RunCommand::CancelSubtask("a".into()));
    assert!(s.effects.contains(&Effect::Abort(CallId {
        target: CallTarget::Validation("a".into()),
        attempt: 1,
    })));
    assert_eq!(s.status("a"), SubtaskStatus::Cancelled);
    s.verdict("a", ok("PASS"));
    assert!(s.events().is_empty(), "{:?}", s.effects);
    // A validating subtask is busy: a re-run is refused until it settles.
    let mut s = Story::new("q", validating(), Some(plan(vec![task("a", &[])])));
    s.reply("a", ok("A"));
    s.command(RunCommand::RetrySubtask("a".into()));
    assert!(s.events().iter().any(|e| matches!(
        e,
        EventKind::CommandRefused {
            refusal: Refusal::SubtaskBusy {
                status: SubtaskStatus::Validating,
                ..
            },
            ..
        }
    )));
}

#[test]
fn without_validation_no_validator_is_called() {
    let mut s = Story::planned(vec![task("a", &[])]);
    s.reply("a", ok("A"));
    assert_eq!(s.status("a"), SubtaskStatus::Succeeded);
    assert!(s.request_for(&CallTarget::Validation("a".into())).is_none());
}

#[test]
fn a_saved_flagged_result_is_restored_flagged() {
    let mut saved = saved(vec![task("a", &[]), task("b", &[])]);
    let mut a = done("a", 2, "A");
    if let Some(result) = a.result.as_mut() {
        result.flagged = Some("no sources".into());
    }
    saved.subtasks = vec![a, done("b", 1, "B")];
    let s = restored(saved);
    assert!(s.events().contains(&&EventKind::SubtaskValidated {
        subtask: "a".into(),
        attempt: 2,
        passed: false,
        reason: "no sources".into(),
        usage: Usage::default(),
        flagged: true,
    }));
    assert!(synthesis_user(&s).contains("A reviewer flagged this result: no sources"));
}

#[test]
fn a_direct_answer_is_validated_like_any_result_and_its_report_waits_for_the_verdict() {
    let mut s = Story::new(
        "q",
        validating(),
        Some(straightforward(vec![task("a", &[])])),
    );
    s.reply("a", ok("Paris."));
    assert_eq!(s.finished(), None, "no report before the verdict");
    s.verdict("a", ok("FAIL: say which France"));
    s.reply("a", ok("Paris, France."))
        .verdict("a", ok("FAIL: still vague"));
    assert_eq!(synthesis_calls(&s), 0);
    assert!(s.events().iter().any(|e| matches!(
        e,
        EventKind::SynthesisFinished { text, .. } if text == "Paris, France."
    )));
    assert_eq!(s.finished(), Some(RunStatus::Succeeded));
}

// ---- attached files -------------------------------------------------------------------------

fn attachments() -> crate::protocol::Attachments {
    crate::protocol::Attachments {
        files: vec![
            crate::protocol::AttachedFile {
                path: "notes.md".into(),
                text: "NOTES ABOUT PRICING".into(),
            },
            crate::protocol::AttachedFile {
                path: "docs/plan.txt".into(),
                text: "THE PLAN FILE".into(),
            },
        ],
        skipped: vec![crate::protocol::SkippedFile {
            path: "logo.png".into(),
            reason: "binary".into(),
        }],
        ..Default::default()
    }
}

fn attached_story(plan: Option<Plan>) -> Story {
    let mut s = Story {
        run: Run::new("the query", settings(), plan).attaching(attachments()),
        now: 0,
        effects: vec![],
        all_events: vec![],
    };
    s.feed(Input::Start);
    s
}

#[test]
fn attached_files_are_announced_after_the_start_and_reach_the_planner_first() {
    let s = attached_story(None);
    assert_eq!(
        s.all_events[..2],
        [
            EventKind::RunStarted {
                query: "the query".into()
            },
            EventKind::ContextAttached {
                files: vec![
                    crate::protocol::ContextFile {
                        path: "notes.md".into(),
                        bytes: 19,
                    },
                    crate::protocol::ContextFile {
                        path: "docs/plan.txt".into(),
                        bytes: 13,
                    },
                ],
                skipped: attachments().skipped,
            },
        ]
    );
    let user = &s
        .request_for(&CallTarget::Planner)
        .expect("a planner call")
        .messages[0]
        .content;
    assert!(user.starts_with(prompt::ATTACHED_HEADING), "{user}");
    assert!(user.contains("<file path=\"notes.md\">\nNOTES ABOUT PRICING\n</file>"));
    assert!(user.contains("<file path=\"docs/plan.txt\">\nTHE PLAN FILE\n</file>"));
    assert!(!user.contains("logo.png"), "a skipped file is not quoted");
    assert!(user.ends_with("the query"), "{user}");
}

#[test]
fn every_worker_sees_the_same_attached_block_before_its_own_task() {
    let s = attached_story(Some(plan(vec![task("a", &[]), task("b", &[])])));
    let a = &s
        .request_for(&CallTarget::Subtask("a".into()))
        .expect("a")
        .messages[0]
        .content;
    let b = &s
        .request_for(&CallTarget::Subtask("b".into()))
        .expect("b")
        .messages[0]
        .content;
    let block = |text: &str| text[..text.find("</attached_files>").expect("block")].to_owned();
    assert!(a.contains("NOTES ABOUT PRICING") && a.contains("THE PLAN FILE"));
    assert_eq!(
        block(a),
        block(b),
        "one block, byte for byte, for the prompt cache"
    );
    assert!(a.starts_with(prompt::ATTACHED_HEADING));
}

#[test]
fn a_run_without_attachments_says_nothing_of_them() {
    let s = Story::new("the query", settings(), None);
    assert!(
        !s.all_events
            .iter()
            .any(|e| matches!(e, EventKind::ContextAttached { .. }))
    );
    let user = &s
        .request_for(&CallTarget::Planner)
        .expect("planner")
        .messages[0]
        .content;
    assert_eq!(user, "the query");
}

#[test]
fn a_restored_run_keeps_its_attached_files_for_what_runs_again() {
    let mut saved = saved(vec![task("a", &[]), task("b", &[])]);
    saved.subtasks = vec![done("a", 1, "saved a")];
    saved.context = attachments();
    let s = restored(saved);
    assert!(
        s.all_events
            .iter()
            .any(|e| matches!(e, EventKind::ContextAttached { files, .. } if files.len() == 2))
    );
    assert_eq!(s.started(), ["b"]);
    let b = &s
        .request_for(&CallTarget::Subtask("b".into()))
        .expect("b")
        .messages[0]
        .content;
    assert!(b.contains("NOTES ABOUT PRICING"), "{b}");
}

#[test]
fn a_failed_attempt_that_reported_usage_is_counted_and_priced_by_its_model() {
    let mut s = Story::planned(vec![task("a", &[])]);
    let cut =
        CallError::transient("stream cut", "the stream ended early").with_usage(Some(Usage {
            tokens_in: 700,
            tokens_out: 1,
            ..Usage::default()
        }));
    s.reply("a", Err(cut));
    let spent: Vec<(Option<SubtaskId>, u32, Usage, bool)> = s
        .all_events
        .iter()
        .filter_map(|e| match e {
            EventKind::CallUsage {
                role: CallRole::Worker,
                subtask,
                attempt,
                usage,
                failed,
                model,
            } => {
                assert!(!model.is_empty());
                Some((subtask.clone(), *attempt, *usage, *failed))
            }
            _ => None,
        })
        .collect();
    assert_eq!(spent.len(), 1);
    assert_eq!(spent[0].0, Some("a".into()));
    assert_eq!(spent[0].1, 1);
    assert_eq!(spent[0].2.tokens_in, 700);
    assert!(spent[0].3, "marked failed");
    s.wake("a");
    s.reply("a", ok("A"));
    s.synth_reply(ok("report"));
    let total = s.all_events.iter().find_map(|e| match e {
        EventKind::RunFinished { usage, .. } => Some(*usage),
        _ => None,
    });
    // 700 + 1 of the failed attempt, 10 + 5 of each of the two successful calls.
    assert_eq!(total.map(|u| (u.tokens_in, u.tokens_out)), Some((720, 11)));
}

#[test]
fn a_failure_after_streamed_text_is_estimated_and_a_refused_request_costs_nothing() {
    let mut s = Story::planned(vec![task("a", &[]), task("b", &[])]);
    s.feed(Input::Delta {
        call: CallId {
            target: CallTarget::Subtask("a".into()),
            attempt: 1,
        },
        text: "some text that streamed before the cut".into(),
    });
    s.reply("a", server_error());
    s.reply("b", server_error());
    let spent: Vec<(Option<SubtaskId>, Usage)> = s
        .all_events
        .iter()
        .filter_map(|e| match e {
            EventKind::CallUsage { subtask, usage, .. } => Some((subtask.clone(), *usage)),
            _ => None,
        })
        .collect();
    assert_eq!(spent.len(), 1, "{spent:?}");
    assert_eq!(spent[0].0, Some("a".into()));
    assert!(spent[0].1.estimated && spent[0].1.tokens_out > 0);
}

#[test]
fn a_paused_provider_holds_new_starts_until_resumed() {
    let mut s = budget_story(RunSettings {
        concurrency: 1,
        ..settings()
    });
    s.feed(Input::ProviderPaused {
        message: "provider paused: 3 calls refused the API key (HTTP 401)".into(),
    });
    assert!(matches!(s.events()[..], [EventKind::ProviderPaused { .. }]));
    s.reply("a", ok("A"));
    assert!(
        s.started().is_empty(),
        "a finished; b waits for the provider"
    );
    s.command(RunCommand::ResumeProvider);
    assert!(s.events().contains(&&EventKind::ProviderResumed));
    assert_eq!(s.started(), ["b"]);
    s.command(RunCommand::ResumeProvider);
    assert!(matches!(
        s.events()[..],
        [EventKind::CommandRefused {
            refusal: Refusal::NotPaused,
            ..
        }]
    ));
}

#[test]
fn a_deadline_passed_while_planning_starts_no_subtask() {
    let mut s = Story::new("the query", with_budget(None, Some(1_000)), None);
    let planned = serde_json::json!({
        "query_analysis": "",
        "subtasks": [{"id": "a", "worker": "research", "title": "A", "description": "a"}],
        "synthesis_guidance": "",
    })
    .to_string();
    s.at(5_000).feed(Input::Reply {
        call: CallId {
            target: CallTarget::Planner,
            attempt: 1,
        },
        result: ok(&planned),
    });
    assert!(s.started().is_empty());
    assert!(matches!(
        reached(&s),
        Some((BudgetReason::Deadline { .. }, ref waiting)) if waiting == &["a"]
    ));
    s.command(RunCommand::SynthesizeNow);
    assert_eq!(
        s.finished(),
        Some(RunStatus::Failed),
        "nothing succeeded: nothing to synthesise"
    );
}

#[test]
fn a_shared_wait_is_told_for_the_current_attempt_only() {
    let mut s = budget_story(settings());
    let waiting = |attempt| Input::Waiting {
        call: CallId {
            target: CallTarget::Subtask("a".into()),
            attempt,
        },
        delay: Duration::from_secs(12),
        reason: "provider rate-limited".into(),
    };
    s.feed(waiting(1));
    assert_eq!(
        s.events(),
        [&EventKind::SubtaskWaiting {
            subtask: "a".into(),
            attempt: 1,
            delay_ms: 12_000,
            reason: "provider rate-limited".into(),
        }]
    );
    s.feed(waiting(7));
    assert!(s.events().is_empty(), "a stale attempt says nothing");
}

// ---- plan review -----------------------------------------------------------------------------

fn reviewing() -> RunSettings {
    RunSettings {
        review: true,
        ..settings()
    }
}

fn refusals(s: &Story) -> Vec<Refusal> {
    s.events()
        .into_iter()
        .filter_map(|e| match e {
            EventKind::CommandRefused { refusal, .. } => Some(refusal.clone()),
            _ => None,
        })
        .collect()
}

fn awaiting(s: &Story) -> Option<Plan> {
    s.events().into_iter().find_map(|e| match e {
        EventKind::PlanAwaitingReview { plan } => Some(plan.clone()),
        _ => None,
    })
}

#[test]
fn a_reviewed_run_waits_after_planning_and_starts_nothing_until_approved() {
    let mut s = Story::new("q", reviewing(), None);
    let plan_text = serde_json::to_string(&plan(vec![task("a", &[]), task("b", &["a"])]))
        .expect("a plan serialises");
    s.feed(Input::Reply {
        call: CallId {
            target: CallTarget::Planner,
            attempt: 1,
        },
        result: ok(&plan_text),
    });
    let shown = awaiting(&s).expect("the plan waits for review");
    assert_eq!(shown.subtasks.len(), 2);
    assert!(s.started().is_empty(), "nothing starts before approval");
    assert!(
        !s.events()
            .iter()
            .any(|e| matches!(e, EventKind::PlanReady { .. })),
        "not ready before approval"
    );
    assert!(!s.run.is_finished());

    // Anything but an approval or a cancel is refused while in review.
    s.feed(Input::Command(RunCommand::RetryFailed));
    assert_eq!(refusals(&s), vec![Refusal::PlanInReview]);

    // The person adds a subtask after `b` and gives `a` a model of its own.
    let mut edited = shown.clone();
    edited.subtasks[0].model = Some("special-model".into());
    edited.subtasks.push(task("c", &["b"]));
    s.feed(Input::Command(RunCommand::ApprovePlan { plan: edited }));
    let ready = s
        .events()
        .into_iter()
        .find_map(|e| match e {
            EventKind::PlanReady { plan } => Some(plan.clone()),
            _ => None,
        })
        .expect("ready after approval");
    assert_eq!(ready.subtasks.len(), 3);
    assert_eq!(s.started(), vec!["a"]);
    let request = s
        .request_for(&CallTarget::Subtask("a".into()))
        .expect("a's call");
    assert_eq!(request.model, "special-model", "the subtask's model wins");
    assert!(s.events().iter().any(|e| matches!(
        e,
        EventKind::SubtaskStarted { model, .. } if model == "special-model"
    )));

    // Once running, another approval is not expected.
    s.feed(Input::Command(RunCommand::ApprovePlan { plan: ready }));
    assert_eq!(refusals(&s), vec![Refusal::NotReviewing]);
}

#[test]
fn an_approved_plan_with_a_cycle_is_refused_naming_it_and_the_run_keeps_waiting() {
    let mut s = Story::new(
        "q",
        reviewing(),
        Some(plan(vec![task("a", &[]), task("b", &[])])),
    );
    let shown = awaiting(&s).expect("a given plan is reviewed too");
    let mut cyclic = shown.clone();
    cyclic.subtasks[0].depends_on = vec!["b".into()];
    cyclic.subtasks[1].depends_on = vec!["a".into()];
    s.feed(Input::Command(RunCommand::ApprovePlan { plan: cyclic }));
    match refusals(&s).as_slice() {
        [Refusal::PlanInvalid { error }] => {
            assert!(error.contains("cycle: a → b → a"), "{error}");
        }
        other => panic!("expected plan_invalid, got {other:?}"),
    }
    assert!(s.started().is_empty());
    assert!(!s.run.is_finished());

    // A deleted subtask others depended on: refused naming the dependent.
    let mut deleted = shown.clone();
    deleted.subtasks[1].depends_on = vec!["a".into()];
    deleted.subtasks.remove(0);
    s.feed(Input::Command(RunCommand::ApprovePlan { plan: deleted }));
    match refusals(&s).as_slice() {
        [Refusal::PlanInvalid { error }] => {
            assert!(
                error.contains("subtask `b` depends on `a`, which is not in the plan"),
                "{error}"
            );
        }
        other => panic!("expected plan_invalid, got {other:?}"),
    }

    s.feed(Input::Command(RunCommand::ApprovePlan { plan: shown }));
    assert!(refusals(&s).is_empty());
    assert_eq!(s.started(), vec!["a", "b"]);
}

#[test]
fn cancelling_a_run_in_review_ends_it_cancelled_without_a_call() {
    let mut s = Story::new("q", reviewing(), Some(plan(vec![task("a", &[])])));
    assert!(awaiting(&s).is_some());
    s.feed(Input::Command(RunCommand::CancelRun));
    assert_eq!(s.finished(), Some(RunStatus::Cancelled));
    assert!(s.started().is_empty());
    assert!(
        !s.all_events
            .iter()
            .any(|e| matches!(e, EventKind::SubtaskStarted { .. }))
    );
}

#[test]
fn an_approved_straightforward_plan_of_one_subtask_is_answered_directly() {
    let mut one = plan(vec![task("a", &[])]);
    one.complexity = Some(Complexity::Straightforward);
    let mut s = Story::new("q", reviewing(), Some(one.clone()));
    assert!(
        !s.events()
            .iter()
            .any(|e| matches!(e, EventKind::DirectAnswer { .. })),
        "decided on approval, not before"
    );
    s.feed(Input::Command(RunCommand::ApprovePlan { plan: one }));
    assert!(
        s.events()
            .iter()
            .any(|e| matches!(e, EventKind::DirectAnswer { .. }))
    );
}

#[test]
fn a_plan_printed_by_maestro_plan_is_not_reviewed() {
    let settings = RunSettings {
        stop_after_plan: true,
        ..reviewing()
    };
    let s = Story::new("q", settings, Some(plan(vec![task("a", &[])])));
    assert!(awaiting(&s).is_none());
    assert_eq!(s.finished(), Some(RunStatus::Succeeded));
}

#[test]
fn time_spent_in_review_does_not_count_against_the_deadline() {
    let settings = RunSettings {
        review: true,
        ..with_budget(None, Some(10_000))
    };
    let mut s = Story::new(
        "q",
        settings,
        Some(plan(vec![task("a", &[]), task("b", &[])])),
    );
    let shown = awaiting(&s).expect("in review");
    // A minute of reading, with a ten-second deadline.
    s.at(60_000)
        .feed(Input::Command(RunCommand::ApprovePlan { plan: shown }));
    assert_eq!(s.started(), vec!["a"]);
    assert!(
        !s.events()
            .iter()
            .any(|e| matches!(e, EventKind::BudgetReached { .. })),
        "{:?}",
        s.events()
    );
    // The deadline still holds for the work itself.
    s.at(75_000).reply("a", ok("done"));
    assert!(
        s.events()
            .iter()
            .any(|e| matches!(e, EventKind::BudgetReached { .. })),
        "{:?}",
        s.events()
    );
}
