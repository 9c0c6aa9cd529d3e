//! Picking the next run's models: the dashboard's picker (opening asks for the list once,
//! loading and failure, Tab / Enter / `c`), the picks travelling with the next `StartRun`, and
//! the engine running a run on the models it was started with while another run on the same
//! engine keeps the configured ones.

mod dashboard_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashboard_support::*;
use maestro::cli::EngineArgs;
use maestro::config::{Config, FileConfig};
use maestro::engine::executor::Engine;
use maestro::llm::{CallFuture, ChatRequest, Completion, DeltaSink, Provider};
use maestro::protocol::{CallRole, Command, EventKind, ModelOverrides, RunId};
use maestro::tui::model::{ModelList, Overlay, PickRole};
use maestro::tui::update::{Action, Msg, update};
use ratatui::crossterm::event::KeyCode;

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|id| (*id).to_owned()).collect()
}

/// A model on the tree with configured models `small` for every role.
fn configured() -> maestro::tui::model::Model {
    let mut model = model(false, (100, 30));
    send_all(&mut model, every_state_events(run_id(1)));
    key(&mut model, KeyCode::Esc);
    model.models.provider = "openai".into();
    model.models.planner = "small".into();
    model.models.worker = "small".into();
    model.models.synthesizer = "small".into();
    model
}

#[test]
fn m_opens_the_picker_and_asks_for_the_list_once_then_the_cursor_is_on_the_model_in_use() {
    let mut model = configured();
    assert_eq!(ch(&mut model, 'm'), [Action::ListModels]);
    assert_eq!(model.models.list, ModelList::Loading);
    assert!(matches!(
        model.overlay,
        Some(Overlay::Models {
            role: PickRole::Planner,
            ..
        })
    ));
    key(&mut model, KeyCode::Esc);
    assert!(model.overlay.is_none());
    assert!(
        ch(&mut model, 'm').is_empty(),
        "still loading: not asked twice"
    );
    update(
        &mut model,
        Msg::ModelsListed(Ok(ids(&["big", "small", "tiny"]))),
    );
    assert!(matches!(
        model.overlay,
        Some(Overlay::Models { cursor: 1, .. })
    ));
    key(&mut model, KeyCode::Esc);
    assert!(
        ch(&mut model, 'm').is_empty(),
        "a list in hand is not asked for again"
    );
}

#[test]
fn a_failed_list_is_asked_for_again_when_the_picker_reopens() {
    let mut model = configured();
    ch(&mut model, 'm');
    update(&mut model, Msg::ModelsListed(Err("no model list".into())));
    assert_eq!(model.models.list, ModelList::Failed("no model list".into()));
    // Enter has nothing to pick.
    key(&mut model, KeyCode::Enter);
    assert!(model.models.picked.is_empty());
    key(&mut model, KeyCode::Esc);
    assert_eq!(ch(&mut model, 'm'), [Action::ListModels]);
}

#[test]
fn picks_go_with_the_next_run_and_c_or_the_configured_model_unpicks() {
    let mut model = configured();
    ch(&mut model, 'm');
    update(
        &mut model,
        Msg::ModelsListed(Ok(ids(&["big", "small", "tiny"]))),
    );
    key(&mut model, KeyCode::Up);
    key(&mut model, KeyCode::Enter); // planner: big
    key(&mut model, KeyCode::Tab);
    key(&mut model, KeyCode::Down);
    key(&mut model, KeyCode::Enter); // workers: tiny
    key(&mut model, KeyCode::Tab);
    key(&mut model, KeyCode::Up);
    key(&mut model, KeyCode::Enter); // synthesis: big
    ch(&mut model, 'c'); // … no: back to the configured one
    key(&mut model, KeyCode::Esc);
    let wanted = ModelOverrides {
        planner: Some("big".into()),
        worker: Some("tiny".into()),
        synthesizer: None,
        preset: None,
        review: None,
    };
    assert_eq!(model.models.picked, wanted);

    ch(&mut model, '/');
    type_text(&mut model, "Next question");
    let actions = key(&mut model, KeyCode::Enter);
    assert_eq!(
        actions,
        [Action::StartRun {
            query: "Next question".into(),
            models: wanted,
            follow_up: None,
            context: Default::default(),
        }]
    );

    // Picking the configured model is the same as no pick.
    ch(&mut model, 'm');
    key(&mut model, KeyCode::Tab); // workers, cursor on tiny
    key(&mut model, KeyCode::Up); // small, the configured one
    key(&mut model, KeyCode::Enter);
    assert_eq!(model.models.picked.worker, None);
}

#[test]
fn keys_outside_the_map_do_nothing_in_the_picker() {
    let mut model = configured();
    ch(&mut model, 'm');
    update(&mut model, Msg::ModelsListed(Ok(ids(&["big", "small"]))));
    for c in ['q', 'r', 'x', 'e'] {
        assert!(ch(&mut model, c).is_empty(), "{c}");
    }
    assert!(matches!(model.overlay, Some(Overlay::Models { .. })));
    assert!(!model.quit);
}

// ---- the engine ---------------------------------------------------------------------------

/// Answers every call at once and records which model each role was asked with.
struct Recorder {
    calls: Arc<Mutex<Vec<(String, String)>>>,
}

const PLAN: &str = r#"{"query_analysis":"q","subtasks":[
  {"id":"a","worker":"research","title":"A","description":"a","focus_areas":[],"depends_on":[],"priority":"high"},
  {"id":"b","worker":"analysis","title":"B","description":"b","focus_areas":[],"depends_on":[],"priority":"high"}
],"synthesis_guidance":"g"}"#;

impl Provider for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn complete(&self, request: ChatRequest, sink: DeltaSink) -> CallFuture<'_> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((format!("{:?}", request.role), request.model.clone()));
        let text = match request.role {
            CallRole::Planner => PLAN.to_owned(),
            CallRole::Worker | CallRole::Synthesizer | CallRole::Validator => {
                "An answer.".to_owned()
            }
        };
        sink.send(&text);
        Box::pin(std::future::ready(Ok(Completion {
            text,
            ..Completion::default()
        })))
    }
}

#[tokio::test]
async fn a_run_started_with_picked_models_uses_them_and_the_next_run_does_not() {
    let mut config = Config::merge(&EngineArgs::default(), FileConfig::default(), &|_: &str| {
        None
    })
    .expect("defaults");
    config.run.planner.model = "conf-planner".into();
    config.run.worker.model = "conf-worker".into();
    config.run.synthesizer.model = "conf-synth".into();
    let research = config
        .run
        .roles
        .iter_mut()
        .find(|r| r.name == "research")
        .expect("a research role");
    research.model = Some("conf-research".into());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let provider = Arc::new(Recorder {
        calls: calls.clone(),
    });
    let (engine, mut events) = Engine::spawn(provider, config.run, config.executor);

    let run = |models: ModelOverrides| {
        let id = RunId::new();
        engine.send(Command::StartRun {
            id,
            query: "Q".into(),
            plan: None,
            models,
            follow_up: None,
            context: Default::default(),
        });
        id
    };
    let wait_for_end = async |events: &mut tokio::sync::mpsc::UnboundedReceiver<_>, id| {
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(maestro::protocol::Event { run, kind, .. }) = events.recv().await {
                if run == id && matches!(kind, EventKind::RunFinished { .. }) {
                    return;
                }
            }
            panic!("the engine stopped");
        })
        .await
        .expect("the run ends");
    };

    let picked = run(ModelOverrides {
        planner: Some("pick-planner".into()),
        worker: Some("pick-worker".into()),
        synthesizer: None,
        preset: None,
        review: None,
    });
    wait_for_end(&mut events, picked).await;
    let mut seen = std::mem::take(&mut *calls.lock().expect("calls"));
    seen.sort();
    assert_eq!(
        seen,
        [
            ("Planner".to_owned(), "pick-planner".to_owned()),
            ("Synthesizer".to_owned(), "conf-synth".to_owned()),
            ("Worker".to_owned(), "pick-worker".to_owned()),
            ("Worker".to_owned(), "pick-worker".to_owned()),
        ],
        "the picked worker model applies to a role with its own model too"
    );

    let plain = run(ModelOverrides::default());
    wait_for_end(&mut events, plain).await;
    let mut seen = std::mem::take(&mut *calls.lock().expect("calls"));
    seen.sort();
    assert_eq!(
        seen,
        [
            ("Planner".to_owned(), "conf-planner".to_owned()),
            ("Synthesizer".to_owned(), "conf-synth".to_owned()),
            ("Worker".to_owned(), "conf-research".to_owned()),
            ("Worker".to_owned(), "conf-worker".to_owned()),
        ]
    );
}
