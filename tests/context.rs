//! Attached files through the real binary: `@path` in the query and `--context` against the
//! mock server with a temp database. The files' text reaches the planner and every worker
//! (read from the mock's request log), a folder's `.gitignore` is respected and a binary file
//! skipped with a notice, the size limit and a missing `@path` are usage errors before any
//! call, the reports list the files, and a resume gives the workers the text that was saved.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::mock::{MockRequest, MockServer, Reply};
use common::plans::{plan_value, result_for, title};
use common::{Output, Sandbox};
use serde_json::json;

const NOTES: &str = "NOTES-MARK: the pricing rose by 12% in March.\n";
const PROCESS_LIMIT: Duration = Duration::from_secs(30);

fn sandbox(server: &MockServer, extra: &str) -> Sandbox {
    Sandbox::new(&format!(
        "provider = \"openai\"\n\n[openai]\nbase_url = \"{}\"\n\n[limits]\nretries = 0\n\
         timeout_secs = 20\nidle_timeout_secs = 20\n{extra}",
        server.openai_base_url()
    ))
}

impl Sandbox {
    fn db(&self) -> PathBuf {
        self.path("runs.db")
    }

    fn write(&self, name: &str, content: impl AsRef<[u8]>) {
        let path = self.path(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("a folder");
        }
        std::fs::write(path, content).expect("a file");
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

fn script(r: &MockRequest) -> Reply {
    if r.is_planner() {
        return Reply::text(plan_value(&["a", "b"]).to_string()).usage(100, 50);
    }
    if r.is_synthesis() {
        return Reply::text("# Report\n\nDone.").usage(300, 80);
    }
    match r.worker_title() {
        Some(t) => Reply::text(result_for(&t)).usage(20, 10),
        None => Reply::status(400, "mock: unexpected request"),
    }
}

#[tokio::test]
async fn an_at_file_in_the_query_reaches_the_planner_and_every_worker() {
    let server = MockServer::start(script).await;
    let sandbox = sandbox(&server, "");
    sandbox.write("notes.md", NOTES);
    let query = "Summarise @notes.md, then mail ana@example.org";
    let out = sandbox.run(&["run", "-q", "--format", "json", query]).await;
    assert_eq!(out.code, Some(0), "{out:?}");

    let requests = server.requests();
    let planner = requests
        .iter()
        .find(|r| r.is_planner())
        .expect("a planner call");
    let quoted = format!("<file path=\"notes.md\">\n{}\n</file>", NOTES.trim_end());
    assert!(planner.user().contains(&quoted), "{}", planner.user());
    assert!(
        planner.user().ends_with(query),
        "the query as written follows"
    );
    let workers: Vec<&MockRequest> = requests
        .iter()
        .filter(|r| r.worker_title().is_some())
        .collect();
    assert_eq!(workers.len(), 2);
    for worker in &workers {
        assert!(worker.user().contains(&quoted), "{}", worker.user());
    }
    let synthesis = requests
        .iter()
        .find(|r| r.is_synthesis())
        .expect("synthesis");
    assert!(
        !synthesis.user().contains("NOTES-MARK"),
        "the synthesiser works from results"
    );

    let report = out.json();
    assert_eq!(
        report["query"], query,
        "the @path stays readable in the query"
    );
    assert_eq!(
        report["context"],
        json!({ "files": [{ "path": "notes.md", "bytes": NOTES.len() }], "skipped": [] })
    );
}

#[tokio::test]
async fn a_context_folder_respects_its_gitignore_and_skips_a_binary_file_with_a_notice() {
    let server = MockServer::start(script).await;
    let sandbox = sandbox(&server, "");
    sandbox.write("docs/.gitignore", "secret.md\n");
    sandbox.write("docs/b.md", "B-MARK\n");
    sandbox.write("docs/a.md", "A-MARK\n");
    sandbox.write("docs/secret.md", "SECRET-MARK\n");
    sandbox.write("docs/logo.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
    let out = sandbox
        .run(&["run", "--context", "docs", "What do the docs say?"])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");

    let planner = server
        .requests()
        .into_iter()
        .find(|r| r.is_planner())
        .expect("a planner call");
    let user = planner.user();
    let a = user
        .find("<file path=\"docs/a.md\">")
        .expect("a.md attached");
    let b = user
        .find("<file path=\"docs/b.md\">")
        .expect("b.md attached");
    assert!(a < b, "in path order");
    assert!(!user.contains("SECRET-MARK"), "the ignored file is absent");
    assert!(!user.contains("logo.png"), "the binary file is not quoted");

    // The progress says what was attached and what was skipped.
    assert!(
        out.stderr.contains(
            "attached 2 files (14 B): docs/a.md, docs/b.md; skipped docs/logo.png (binary)"
        ),
        "{out:?}"
    );
    // The markdown report lists them.
    assert!(out.stdout.contains("## Attached files"), "{}", out.stdout);
    assert!(out.stdout.contains("- `docs/a.md` (7 B)"), "{}", out.stdout);
    assert!(
        out.stdout.contains("- `docs/logo.png`: skipped (binary)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("secret.md"));
}

#[tokio::test]
async fn attached_files_over_the_limit_are_a_usage_error_naming_files_and_setting() {
    let server = MockServer::start(script).await;
    let sandbox = sandbox(&server, "\n[context]\nmax_bytes = 100\n");
    sandbox.write("big.log", "x".repeat(130));
    sandbox.write("small.md", "y".repeat(20));
    let out = sandbox
        .run(&["run", "--context", "small.md", "Read @big.log please"])
        .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains(
            "the attached files have 150 bytes, 50 over the limit of 100 bytes per run \
             (`[context] max_bytes` in the config file): big.log (130 bytes), small.md (20 bytes)"
        ),
        "{out:?}"
    );
    assert_eq!(server.request_count(), 0, "nothing is called");
}

#[tokio::test]
async fn a_missing_at_path_is_a_usage_error_before_anything_runs() {
    let server = MockServer::start(script).await;
    let sandbox = sandbox(&server, "");
    let out = sandbox
        .run(&["run", "Compare @missing.md with the rest"])
        .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("maestro: @missing.md: no such file or folder (in "),
        "{out:?}"
    );
    let planned = sandbox
        .run(&["plan", "Plan around @\"no such file.md\""])
        .await;
    assert_eq!(planned.code, Some(2), "{planned:?}");
    assert!(
        planned
            .stderr
            .contains("@no such file.md: no such file or folder"),
        "{planned:?}"
    );
    let flagged = sandbox
        .run(&["run", "--context", "gone/", "What is in there?"])
        .await;
    assert_eq!(flagged.code, Some(2), "{flagged:?}");
    assert!(
        flagged
            .stderr
            .contains("maestro: --context gone/: no such file or folder (in "),
        "{flagged:?}"
    );
    assert_eq!(server.request_count(), 0, "nothing is called");
    assert!(!sandbox.db().exists(), "no run was saved");
}

#[tokio::test]
async fn maestro_plan_gives_the_planner_the_attached_file() {
    let server = MockServer::start(script).await;
    let sandbox = sandbox(&server, "");
    sandbox.write("my notes.md", NOTES);
    let out = sandbox
        .run(&["plan", "Plan a review of @\"my notes.md\""])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let planner = server.last_request();
    assert!(planner.is_planner());
    assert!(
        planner.user().contains("<file path=\"my notes.md\">"),
        "{}",
        planner.user()
    );
    assert!(out.stderr.contains("attached 1 file"), "{out:?}");
}

#[tokio::test]
async fn a_resume_gives_the_workers_the_saved_text_and_show_lists_the_files() {
    // `b` fails on the first run and works after.
    let b_works = Arc::new(AtomicBool::new(false));
    let works = b_works.clone();
    let server = MockServer::start(move |r: &MockRequest| {
        if r.worker_title() == Some(title("b")) && !works.load(Ordering::SeqCst) {
            return Reply::status(400, "mock: b refused");
        }
        script(r)
    })
    .await;
    let sandbox = sandbox(&server, "");
    sandbox.write("notes.md", NOTES);
    let first = sandbox
        .run(&["run", "-q", "--format", "json", "Summarise @notes.md"])
        .await;
    assert_eq!(first.code, Some(3), "{first:?}");
    let id = first.json()["run_id"].as_str().expect("an id").to_owned();

    // The file changes afterwards: the resumed run still works from what the run was given.
    sandbox.write("notes.md", "CHANGED SINCE\n");
    b_works.store(true, Ordering::SeqCst);
    let before = server.request_count();
    let resumed = sandbox
        .run(&["resume", &id[..13], "-q", "--format", "json"])
        .await;
    assert_eq!(resumed.code, Some(0), "{resumed:?}");
    let again: Vec<MockRequest> = server.requests()[before..]
        .iter()
        .filter(|r| r.worker_title().is_some())
        .cloned()
        .collect();
    assert_eq!(again.len(), 1, "only b runs again");
    assert_eq!(again[0].worker_title(), Some(title("b")));
    assert!(
        again[0].user().contains("NOTES-MARK"),
        "{}",
        again[0].user()
    );
    assert!(!again[0].user().contains("CHANGED SINCE"));
    assert_eq!(
        resumed.json()["context"]["files"],
        json!([{ "path": "notes.md", "bytes": NOTES.len() }])
    );

    let shown = sandbox.run(&["show", &id[..13]]).await;
    assert_eq!(shown.code, Some(0), "{shown:?}");
    assert!(
        shown.stdout.contains("## Attached files"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("- `notes.md` (46 B)"),
        "{}",
        shown.stdout
    );
}
