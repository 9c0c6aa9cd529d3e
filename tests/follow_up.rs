//! Follow-up runs through the real binary: `maestro run --follow-up ID` against the mock
//! server with a temp database. The planner is given the earlier run's report, a subtask that
//! reuses an earlier result makes no worker call, the lineage shows in `history` and `show`,
//! and an id that names no saved run is a usage error.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::mock::{MockRequest, MockServer, Reply};
use common::{Output, Sandbox};
use serde_json::{Value, json};

const QUERY: &str = "What are the impacts of EV adoption in cities?";
const FOLLOW: &str = "Now go deeper on the pricing risks";
const REPORT: &str = "# EV report\n\nThe earlier synthesised answer, with PARENT-MARK.";
const PROCESS_LIMIT: Duration = Duration::from_secs(30);

/// A sandbox whose config points the OpenAI provider at `server`.
fn sandbox(server: &MockServer) -> Sandbox {
    Sandbox::new(&format!(
        "provider = \"openai\"\n\n[openai]\nbase_url = \"{}\"\n\n[limits]\nretries = 0\n\
         timeout_secs = 20\nidle_timeout_secs = 20\n",
        server.openai_base_url()
    ))
}

impl Sandbox {
    fn db(&self) -> PathBuf {
        self.path("runs.db")
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.child(args)
            .db(self.db())
            .env("NO_COLOR", "1")
            .limit(PROCESS_LIMIT)
            .run()
            .await
    }
}

fn title(id: &str) -> String {
    format!("Subtask {id} title")
}

fn result_for(title: &str) -> String {
    format!("Findings for {title}: alpha beta gamma delta.")
}

fn subtask(id: &str, depends_on: &[&str], reuse: Option<&str>) -> Value {
    let mut value = json!({
        "id": id,
        "worker": "research",
        "title": title(id),
        "description": format!("Find out about {id}."),
        "depends_on": depends_on,
    });
    if let Some(reuse) = reuse {
        value["reuse"] = reuse.into();
    }
    value
}

/// The first run plans `a` and `b`; a follow-up (its planner sees the earlier report) plans
/// `again`, reusing `a`, and `deeper`, which builds on it.
fn script(r: &MockRequest) -> Reply {
    if r.is_planner() {
        let plan = if r.user().contains("<earlier_report>") {
            json!({ "subtasks": [
                subtask("again", &[], Some("a")),
                subtask("deeper", &["again"], None),
            ]})
        } else {
            json!({ "subtasks": [subtask("a", &[], None), subtask("b", &[], None)] })
        };
        return Reply::text(plan.to_string()).usage(100, 50);
    }
    if r.is_synthesis() {
        return Reply::text(REPORT).usage(300, 80);
    }
    match r.worker_title() {
        Some(t) => Reply::text(result_for(&t)).usage(20, 10),
        None => Reply::status(400, "mock: unexpected request"),
    }
}

fn workers_for(requests: &[MockRequest], id: &str) -> Vec<MockRequest> {
    requests
        .iter()
        .filter(|r| r.worker_title() == Some(title(id)))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_follow_up_builds_on_its_parent_and_records_the_lineage() {
    let server = MockServer::start(script).await;
    let sandbox = sandbox(&server);
    let first = sandbox.run(&["run", "-q", "--format", "json", QUERY]).await;
    assert_eq!(first.code, Some(0), "{first:?}");
    let parent_id = first.json()["run_id"].as_str().expect("an id").to_owned();
    let before = server.requests().len();

    // A unique prefix names the parent.
    let prefix = &parent_id[..13];
    let second = sandbox
        .run(&[
            "run",
            "-q",
            "--format",
            "json",
            "--follow-up",
            prefix,
            FOLLOW,
        ])
        .await;
    assert_eq!(second.code, Some(0), "{second:?}");
    let report = second.json();
    let requests: Vec<MockRequest> = server.requests()[before..].to_vec();
    assert_eq!(report["parent"], parent_id.as_str());

    let planner = requests
        .iter()
        .find(|r| r.is_planner())
        .expect("the follow-up was planned");
    let user = planner.user();
    assert!(user.contains("PARENT-MARK"), "the parent's report: {user}");
    assert!(user.contains(QUERY), "the parent's query");
    assert!(
        user.contains("`a`: Subtask a title"),
        "the parent's subtasks"
    );
    assert!(user.contains(FOLLOW));

    assert!(
        workers_for(&requests, "again").is_empty(),
        "a reused subtask is not called"
    );
    let deeper = workers_for(&requests, "deeper");
    assert_eq!(deeper.len(), 1);
    assert!(deeper[0].user().contains(&result_for(&title("a"))));
    assert!(
        deeper[0].user().contains("PARENT-MARK"),
        "workers see the report"
    );

    let again = report["subtasks"]
        .as_array()
        .expect("subtasks")
        .iter()
        .find(|s| s["id"] == "again")
        .expect("the reused subtask");
    assert_eq!(again["reused"], "a");
    assert_eq!(again["status"], "succeeded");
    assert_eq!(again["result"], result_for(&title("a")).as_str());
    assert_eq!(again["tokens_in"], 0);

    let history = sandbox.run(&["history", "--json"]).await;
    assert_eq!(history.code, Some(0), "{history:?}");
    let list = history.json();
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 2);
    let parent_short = list[1]["short_id"].as_str().expect("short id");
    assert_eq!(list[1]["id"], parent_id.as_str());
    assert_eq!(list[1]["parent"], Value::Null);
    assert_eq!(list[0]["id"], report["run_id"]);
    assert_eq!(list[0]["parent"], parent_short);

    let table = sandbox.run(&["history"]).await;
    let line = table
        .stdout
        .lines()
        .find(|l| l.contains("Now go deeper"))
        .expect("the follow-up's line");
    assert!(line.contains(parent_short), "{table:?}");
    assert!(
        table
            .stdout
            .lines()
            .next()
            .expect("header")
            .contains("PARENT")
    );

    let child = report["run_id"].as_str().expect("id");
    let shown = sandbox.run(&["show", "--format", "json", child]).await;
    assert_eq!(shown.code, Some(0), "{shown:?}");
    // The reports' JSON names the parent by its full id, as it names the run itself.
    assert_eq!(shown.json()["parent"], parent_id.as_str());
    assert_eq!(shown.json()["subtasks"], report["subtasks"]);
    let shown = sandbox.run(&["show", child]).await;
    assert!(
        shown
            .stdout
            .starts_with(&format!("> Follow-up to run `{parent_short}`.")),
        "{shown:?}"
    );
    assert!(shown.stdout.contains("done (reused `a`)"), "{shown:?}");
}

#[tokio::test]
async fn a_follow_up_to_no_saved_run_is_a_usage_error() {
    let server = MockServer::start(script).await;
    let sandbox = sandbox(&server);
    let first = sandbox.run(&["run", "-q", QUERY]).await;
    assert_eq!(first.code, Some(0), "{first:?}");
    let before = server.requests().len();
    let out = sandbox
        .run(&["run", "-q", "--follow-up", "ffffffff", FOLLOW])
        .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--follow-up"), "{out:?}");
    assert_eq!(server.requests().len(), before, "nothing was called");
}

#[tokio::test]
async fn a_resumed_follow_up_keeps_the_earlier_runs_context() {
    // `deeper` fails while `broken` is set, so the follow-up ends partly failed.
    let broken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = broken.clone();
    let server = MockServer::start(move |r: &MockRequest| {
        if flag.load(std::sync::atomic::Ordering::SeqCst)
            && r.worker_title() == Some(title("deeper"))
        {
            return Reply::status(400, "mock: deeper is not ready");
        }
        script(r)
    })
    .await;
    let sandbox = sandbox(&server);
    let first = sandbox.run(&["run", "-q", "--format", "json", QUERY]).await;
    assert_eq!(first.code, Some(0), "{first:?}");
    let parent_id = first.json()["run_id"].as_str().expect("an id").to_owned();
    let second = sandbox
        .run(&[
            "run",
            "-q",
            "--format",
            "json",
            "--follow-up",
            &parent_id,
            FOLLOW,
        ])
        .await;
    assert_eq!(second.code, Some(3), "{second:?}");
    let child = second.json()["run_id"].as_str().expect("id").to_owned();

    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let before = server.requests().len();
    let resumed = sandbox
        .run(&["resume", "-q", "--format", "json", &child])
        .await;
    assert_eq!(resumed.code, Some(0), "{resumed:?}");
    let requests: Vec<MockRequest> = server.requests()[before..].to_vec();
    let deeper = workers_for(&requests, "deeper");
    assert_eq!(deeper.len(), 1, "only the failed subtask runs again");
    assert!(
        deeper[0].user().contains("PARENT-MARK"),
        "the resumed worker still sees the earlier report: {}",
        deeper[0].user()
    );
    assert!(deeper[0].user().contains(&result_for(&title("a"))));
    assert_eq!(resumed.json()["parent"], parent_id.as_str());
}
