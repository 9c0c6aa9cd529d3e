//! Presets through the real binary against the mock server: each built-in preset's roles and
//! guidance reach the planner's prompt, the workers' system prompts and the synthesis; a
//! role's temperature and token limit reach its requests; user preset files (from the config
//! folder and `--preset PATH`) and a broken one; an unknown role and a custom role in a plan;
//! `maestro presets` and `maestro presets show`.

mod common;

use std::time::Duration;

use common::mock::{MockRequest, MockServer, Reply};
use common::{Output, Sandbox};
use maestro::engine::preset::{self, Preset};
use serde_json::{Value, json};

const QUERY: &str = "How is the market for electric bikes in Europe doing?";
const LIMIT: Duration = Duration::from_secs(20);

fn config(server: &MockServer, extra: &str) -> String {
    format!(
        "provider = \"openai\"\n{extra}\n[openai]\nbase_url = \"{}\"\n\n[limits]\nretries = 0\n\
         timeout_secs = 10\n",
        server.openai_base_url()
    )
}

/// A plan with one subtask per `(worker, title, role_prompt)`.
fn plan(subtasks: &[(&str, &str, Option<&str>)]) -> String {
    let subtasks: Vec<Value> = subtasks
        .iter()
        .enumerate()
        .map(|(i, (worker, title, prompt))| {
            let mut task = json!({
                "id": format!("t{i}"), "worker": worker, "title": title,
                "description": format!("Work on {title}."), "depends_on": [],
            });
            if let Some(prompt) = prompt {
                task["role_prompt"] = json!(prompt);
            }
            task
        })
        .collect();
    json!({ "query_analysis": "q", "subtasks": subtasks, "synthesis_guidance": "g" }).to_string()
}

/// A server whose planner answers `plan`, workers `Result of TITLE`, synthesis `# Report`.
async fn server(plan: String) -> MockServer {
    MockServer::start(move |r: &MockRequest| {
        if r.is_planner() {
            Reply::text(plan.clone())
        } else if r.is_synthesis() {
            Reply::text("# Report\n\nAll good.")
        } else {
            Reply::text(format!(
                "Result of {}",
                r.worker_title().unwrap_or_default()
            ))
        }
    })
    .await
}

async fn run(sandbox: &Sandbox, args: &[&str]) -> Output {
    let mut all = vec!["run", "--format", "json", "--no-save", "-q"];
    all.extend_from_slice(args);
    all.push(QUERY);
    sandbox.child(&all).limit(LIMIT).run().await
}

fn workers(server: &MockServer) -> Vec<MockRequest> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.worker_title().is_some())
        .collect()
}

fn worker_titled(server: &MockServer, title: &str) -> MockRequest {
    workers(server)
        .into_iter()
        .find(|r| r.worker_title().as_deref() == Some(title))
        .unwrap_or_else(|| panic!("no worker request for {title}"))
}

fn planner(server: &MockServer) -> MockRequest {
    server
        .requests()
        .into_iter()
        .find(MockRequest::is_planner)
        .expect("a planner request")
}

fn synthesis(server: &MockServer) -> MockRequest {
    server
        .requests()
        .into_iter()
        .find(MockRequest::is_synthesis)
        .expect("a synthesis request")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_builtin_preset_reaches_the_planner_the_workers_and_the_synthesis() {
    for preset in preset::builtin() {
        let Preset {
            name,
            roles,
            planner_guidance,
            synthesis_guidance,
            ..
        } = &preset;
        let subtasks: Vec<(&str, &str, Option<&str>)> = roles
            .iter()
            .map(|r| (r.name.as_str(), r.name.as_str(), None))
            .collect();
        let server = server(plan(&subtasks)).await;
        let sandbox = Sandbox::new(&config(&server, ""));
        let out = run(&sandbox, &["--preset", name]).await;
        assert_eq!(out.code, Some(0), "{name}: {out:?}");
        let report = out.json();
        assert_eq!(report["preset"], name.as_str(), "{name}");

        let system = planner(&server).system();
        for role in roles {
            assert!(system.contains(&format!("`{}`", role.name)), "{name}");
            assert!(system.contains(role.description.trim()), "{name}");
            let worker = worker_titled(&server, &role.name);
            assert_eq!(worker.system(), role.system_prompt.trim(), "{name}");
        }
        assert!(
            system.contains(planner_guidance.trim()),
            "{name}: the planner guidance"
        );
        assert_eq!(
            planner_guidance.is_empty(),
            !system.contains("For this kind of query"),
            "{name}"
        );
        let synth = synthesis(&server).system();
        assert!(synth.contains(synthesis_guidance.trim()), "{name}");
        assert_eq!(
            synthesis_guidance.is_empty(),
            !synth.contains("The report's structure"),
            "{name}"
        );
        // The report names the roles the subtasks ran as.
        let workers: Vec<&str> = report["subtasks"]
            .as_array()
            .expect("subtasks")
            .iter()
            .filter_map(|s| s["worker"].as_str())
            .collect();
        let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(workers, names, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_preset_is_research_and_the_config_key_chooses_another() {
    let server = server(plan(&[("analysis", "A", None)])).await;
    let sandbox = Sandbox::new(&config(&server, ""));
    let out = run(&sandbox, &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["preset"], "research");

    let server = server_for_market().await;
    let sandbox = Sandbox::new(&config(&server, "preset = \"market\""));
    let out = sandbox
        .child(&["run", "--no-save", "-q", QUERY])
        .limit(LIMIT)
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("Preset: market"), "{out:?}");
    assert!(planner(&server).system().contains("`sentiment`"));
}

async fn server_for_market() -> MockServer {
    server(plan(&[("news", "N", None), ("trend", "T", None)])).await
}

const USER_PRESET: &str = r#"
description = "Legal questions"
planner_guidance = "Split by jurisdiction."
synthesis_guidance = "End with a disclaimer."

[[role]]
name = "statute"
description = "Reading the law as written."
system_prompt = "You read statutes. Stay within your subtask."
temperature = 0.15
max_tokens = 321
tools = ["read_file"]

[[role]]
name = "case-law"
description = "What courts decided."
system_prompt = "You read court decisions. Stay within your subtask."
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_user_preset_file_is_found_and_its_roles_settings_reach_the_requests() {
    let server = server(plan(&[
        ("statute", "Law", None),
        ("case-law", "Cases", None),
    ]))
    .await;
    let sandbox = Sandbox::new(&config(&server, "preset = \"legal\""));
    std::fs::create_dir(sandbox.path("presets")).expect("presets folder");
    std::fs::write(sandbox.path("presets/legal.toml"), USER_PRESET).expect("write preset");
    let out = run(&sandbox, &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["preset"], "legal");
    assert!(
        planner(&server)
            .system()
            .contains("## For this kind of query\n\nSplit by jurisdiction.")
    );
    assert!(
        synthesis(&server)
            .system()
            .ends_with("End with a disclaimer.")
    );

    let statute = worker_titled(&server, "Law");
    assert_eq!(
        statute.system(),
        "You read statutes. Stay within your subtask."
    );
    assert_eq!(statute.max_tokens(), Some(321));
    let temperature = statute.temperature().expect("a temperature");
    assert!((temperature - 0.15).abs() < 1e-6, "{temperature}");
    // The other role keeps the configured limits.
    let cases = worker_titled(&server, "Cases");
    assert_ne!(cases.max_tokens(), Some(321));
    assert_eq!(cases.temperature(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preset_path_on_the_command_line_is_read() {
    let server = server(plan(&[("statute", "Law", None)])).await;
    let sandbox = Sandbox::new(&config(&server, ""));
    let path = sandbox.path("team.toml");
    std::fs::write(&path, USER_PRESET).expect("write preset");
    let out = run(&sandbox, &["--preset", path.to_str().expect("utf-8")]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["preset"], "team");
    assert!(planner(&server).system().contains("`case-law`"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_preset_file_names_the_file_the_line_and_the_key_and_runs_nothing() {
    let server = server(plan(&[("statute", "Law", None)])).await;
    let sandbox = Sandbox::new(&config(&server, ""));
    std::fs::create_dir(sandbox.path("presets")).expect("presets folder");
    let broken = USER_PRESET.replace("max_tokens = 321", "max_tokenz = 321");
    std::fs::write(sandbox.path("presets/legal.toml"), broken).expect("write preset");
    let out = run(&sandbox, &[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("legal.toml"), "{out:?}");
    assert!(out.stderr.contains("line 11"), "{out:?}");
    assert!(out.stderr.contains("max_tokenz"), "{out:?}");
    assert_eq!(server.request_count(), 0);

    let out = sandbox.child(&["presets"]).limit(LIMIT).run().await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("legal.toml"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_preset_name_is_a_usage_error_listing_the_presets() {
    let sandbox = Sandbox::new("");
    let out = sandbox
        .child(&["run", "--preset", "astrology", "q"])
        .limit(LIMIT)
        .run()
        .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("astrology"), "{out:?}");
    assert!(out.stderr.contains("`code-review`"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_role_gets_the_default_role_with_a_notice() {
    let server = server(plan(&[("astrologer", "Stars", None)])).await;
    let sandbox = Sandbox::new(&config(&server, ""));
    let out = run(&sandbox, &["--preset", "market"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let report = out.json();
    assert_eq!(report["subtasks"][0]["worker"], "news");
    let notices = report["notices"].to_string();
    assert!(
        notices.contains("astrologer") && notices.contains("news"),
        "{notices}"
    );
    let market = preset::find(&preset::builtin(), "market")
        .expect("market")
        .clone();
    assert_eq!(
        worker_titled(&server, "Stars").system(),
        market.roles[0].system_prompt.trim()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_role_prompt_reaches_its_worker_and_a_second_one_is_refused() {
    let server = server(plan(&[
        (
            "custom",
            "Tax",
            Some("You are a tax adviser for small firms."),
        ),
        ("custom", "Chemistry", Some("You are a battery chemist.")),
        ("research", "Facts", None),
    ]))
    .await;
    let sandbox = Sandbox::new(&config(&server, ""));
    let out = run(&sandbox, &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let report = out.json();
    let workers: Vec<&str> = report["subtasks"]
        .as_array()
        .expect("subtasks")
        .iter()
        .filter_map(|s| s["worker"].as_str())
        .collect();
    assert_eq!(workers, ["custom", "analysis", "research"]);
    assert!(report["notices"].to_string().contains("second custom role"));
    assert_eq!(
        report["plan"]["subtasks"][0]["role_prompt"],
        "You are a tax adviser for small firms."
    );

    let tax = worker_titled(&server, "Tax").system();
    assert!(
        tax.contains("\n\nYou are a tax adviser for small firms.\n\n"),
        "{tax}"
    );
    assert!(tax.contains("Stay within your subtask"), "{tax}");
    let chemistry = worker_titled(&server, "Chemistry").system();
    assert!(!chemistry.contains("battery chemist"), "{chemistry}");
    assert!(chemistry.starts_with("You are an analyst"), "{chemistry}");
}

#[tokio::test(flavor = "multi_thread")]
async fn maestro_presets_lists_every_preset_with_roles_and_source() {
    let sandbox = Sandbox::new("preset = \"general\"\n");
    std::fs::create_dir(sandbox.path("presets")).expect("presets folder");
    std::fs::write(
        sandbox.path("presets/market.toml"),
        USER_PRESET.replace(
            "description = \"Legal",
            "name = \"market\"\ndescription = \"Legal",
        ),
    )
    .expect("write preset");
    std::fs::write(sandbox.path("presets/legal.toml"), USER_PRESET).expect("write preset");
    let out = sandbox.child(&["presets"]).limit(LIMIT).run().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = &out.stdout;
    for name in ["research", "market", "general", "code-review", "legal"] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    assert!(text.contains("general  (in use)"), "{text}");
    assert!(
        text.contains("market.toml (overrides the built-in preset)"),
        "{text}"
    );
    assert!(text.contains("from: built-in"), "{text}");
    assert!(text.contains("    security     Security review"), "{text}");
    assert!(
        text.contains("    case-law  What courts decided."),
        "{text}"
    );

    let out = sandbox
        .child(&["presets", "--json"])
        .limit(LIMIT)
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let json = out.json();
    let presets = json["presets"].as_array().expect("a list");
    assert_eq!(presets.len(), 5);
    let market = &presets[1];
    assert_eq!(market["name"], "market");
    assert_eq!(market["overrides_builtin"], true);
    assert_eq!(market["roles"][0]["name"], "statute");
    assert_eq!(presets[2]["in_use"], true);
    assert_eq!(presets[2]["validate"], true);
    assert_eq!(presets[0]["source"], "built-in");
}

#[tokio::test(flavor = "multi_thread")]
async fn presets_show_prints_a_toml_that_reads_back_as_the_same_preset() {
    let sandbox = Sandbox::new("");
    let out = sandbox
        .child(&["presets", "show", "code-review"])
        .limit(LIMIT)
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let shown = preset::parse(&out.stdout, "copy").expect("the shown TOML parses");
    let builtin = preset::find(&preset::builtin(), "code-review")
        .expect("built in")
        .clone();
    assert_eq!(shown, builtin);

    let out = sandbox
        .child(&["presets", "show", "nope"])
        .limit(LIMIT)
        .run()
        .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("`research`"), "{out:?}");
}

const FAST_DEMO: &str = "[demo]\ntokens_per_second = 50000\nfailure_rate = 0.0\n";

fn workers_of(report: &Value) -> Vec<String> {
    report["subtasks"]
        .as_array()
        .expect("subtasks")
        .iter()
        .filter_map(|s| s["worker"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_plays_the_market_and_code_review_teams_and_says_it_is_simulated() {
    let sandbox = Sandbox::new(FAST_DEMO);
    let out = sandbox
        .child(&[
            "run",
            "--no-save",
            "-q",
            "--format",
            "json",
            "--preset",
            "market",
            QUERY,
        ])
        .limit(LIMIT)
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let report = out.json();
    assert_eq!(
        workers_of(&report),
        ["news", "competitor", "trend", "sentiment"]
    );
    let synthesis = report["synthesis"].as_str().expect("synthesis");
    for section in [
        "## Executive summary",
        "## Strategic recommendations",
        "## Risks",
        "## Action items",
    ] {
        assert!(synthesis.contains(section), "{section}: {synthesis}");
    }
    assert!(synthesis.contains("Simulated"), "{synthesis}");

    let out = sandbox
        .child(&[
            "run",
            "--no-save",
            "-q",
            "--format",
            "json",
            "--preset",
            "code-review",
            "Review src/auth.rs",
        ])
        .limit(LIMIT)
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let report = out.json();
    assert_eq!(
        workers_of(&report),
        ["security", "correctness", "performance", "style"]
    );
    let security = report["subtasks"][0]["result"].as_str().unwrap_or_default();
    assert!(security.contains("**critical** `src/auth.rs:"), "{report}");
    let synthesis = report["synthesis"].as_str().expect("synthesis");
    assert!(synthesis.contains("### Critical"), "{synthesis}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_saved_run_keeps_its_preset_and_resume_uses_it() {
    let sandbox = Sandbox::new(FAST_DEMO);
    let db = sandbox.path("runs.db");
    let out = sandbox
        .child(&[
            "run",
            "-q",
            "--format",
            "json",
            "--preset",
            "general",
            "Plan a move",
        ])
        .db(&db)
        .limit(LIMIT)
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let id = out.json()["run_id"].as_str().expect("an id").to_owned();
    let shown = sandbox
        .child(&["show", &id, "--format", "json"])
        .db(&db)
        .limit(LIMIT)
        .run()
        .await;
    assert_eq!(shown.code, Some(0), "{shown:?}");
    assert_eq!(shown.json()["preset"], "general");
    let resumed = sandbox
        .child(&["resume", &id, "-q", "--format", "json"])
        .db(&db)
        .limit(LIMIT)
        .run()
        .await;
    assert_eq!(resumed.json()["preset"], "general", "{resumed:?}");
}

/// A provider that records each call's role and system prompt and plans one `news` subtask.
struct Recorder {
    calls: std::sync::Arc<std::sync::Mutex<Vec<(maestro::protocol::CallRole, String)>>>,
}

impl maestro::llm::Provider for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn complete(
        &self,
        request: maestro::llm::ChatRequest,
        sink: maestro::llm::DeltaSink,
    ) -> maestro::llm::CallFuture<'_> {
        use maestro::protocol::CallRole;
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((request.role, request.system.clone()));
        let text = match request.role {
            CallRole::Planner => plan(&[("news", "N", None)]),
            CallRole::Worker | CallRole::Synthesizer | CallRole::Validator => {
                "An answer.".to_owned()
            }
        };
        sink.send(&text);
        Box::pin(std::future::ready(Ok(maestro::llm::Completion {
            text,
            ..Default::default()
        })))
    }
}

#[tokio::test]
async fn a_run_started_with_a_picked_preset_uses_its_team_and_the_next_run_does_not() {
    use maestro::protocol::{CallRole, Command, EventKind, ModelOverrides, RunId};
    let config = maestro::config::Config::merge(
        &maestro::cli::EngineArgs::default(),
        maestro::config::FileConfig::default(),
        &|_: &str| None,
    )
    .expect("defaults");
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let provider = std::sync::Arc::new(Recorder {
        calls: calls.clone(),
    });
    let (engine, mut events) =
        maestro::engine::executor::Engine::spawn(provider, config.run, config.executor);
    let mut run = async |preset: Option<&str>| {
        let id = RunId::new();
        engine.send(Command::StartRun {
            id,
            query: "Q".into(),
            plan: None,
            models: ModelOverrides {
                preset: preset.map(str::to_owned),
                ..ModelOverrides::default()
            },
            follow_up: None,
            context: Default::default(),
        });
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(event) = events.recv().await {
                if event.run == id && matches!(event.kind, EventKind::RunFinished { .. }) {
                    return;
                }
            }
        })
        .await
        .expect("the run ends");
        std::mem::take(&mut *calls.lock().expect("calls"))
    };
    let market = preset::find(&preset::builtin(), "market")
        .expect("market")
        .clone();
    let seen = run(Some("market")).await;
    let system = |role: CallRole| {
        seen.iter()
            .find(|(r, _)| *r == role)
            .map(|(_, s)| s.clone())
            .expect("a call")
    };
    assert!(system(CallRole::Planner).contains("`sentiment`"));
    assert_eq!(
        system(CallRole::Worker),
        market.roles[0].system_prompt.trim()
    );
    assert!(system(CallRole::Synthesizer).contains("Executive summary"));

    let seen = run(None).await;
    let planner = &seen
        .iter()
        .find(|(r, _)| *r == CallRole::Planner)
        .expect("a planner call")
        .1;
    assert!(planner.contains("`critique`") && !planner.contains("`sentiment`"));
}
