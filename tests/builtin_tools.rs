//! The built-in tools against real things: `fetch_url` against a small web site on 127.0.0.1
//! (allowed explicitly, as a person would allow an intranet host), `read_file` and `list_dir`
//! against real temp folders with real symbolic links, the tool flags through the real
//! binary, and the files given to a run (`--context`) as that run's read roots. Offline:
//! nothing leaves this machine.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use maestro::tools::{HostPattern, SourceKind, ToolOutput, Tools, ToolsConfig};
use serde_json::json;

use common::Sandbox;
use common::site::{JSON, Site};

fn allow(hosts: &[&str]) -> Vec<HostPattern> {
    hosts
        .iter()
        .map(|h| HostPattern::parse(h).expect("a valid host"))
        .collect()
}

/// Tools that may reach 127.0.0.1 (the site), with short limits.
fn site_tools(tweak: impl FnOnce(&mut ToolsConfig)) -> Tools {
    let mut config = ToolsConfig {
        allow_hosts: allow(&["127.0.0.1"]),
        fetch_timeout: Duration::from_secs(10),
        ..ToolsConfig::default()
    };
    tweak(&mut config);
    Tools::new(&config)
}

async fn fetch(tools: &Tools, url: &str) -> ToolOutput {
    tools.call("fetch_url", &json!({ "url": url })).await
}

// ---- fetch_url --------------------------------------------------------------------------------

#[tokio::test]
async fn an_html_page_comes_back_as_text_without_its_script_and_style() {
    let site = Site::start().await;
    let out = fetch(&site_tools(|_| {}), &site.url("/page.html")).await;
    assert!(!out.is_error, "{}", out.text);
    assert!(out.text.starts_with("# Tide tables"), "{}", out.text);
    for kept in ["High water is at **noon**.", "first item", "second item"] {
        assert!(out.text.contains(kept), "{kept} missing: {}", out.text);
    }
    for dropped in ["secretToken", "do-not-show", "color: red", "<p>", "Fixture"] {
        assert!(!out.text.contains(dropped), "{dropped} kept: {}", out.text);
    }
    assert!(
        out.text
            .contains(&format!("URL: {}", site.url("/page.html"))),
        "{}",
        out.text
    );
    assert!(
        out.text.contains("Content type: text/html; charset=utf-8"),
        "{}",
        out.text
    );
    let source = out.source.expect("a source");
    assert_eq!(source.kind, SourceKind::Url);
    assert_eq!(source.location, site.url("/page.html"));
    assert_eq!(source.status, Some(200));
    assert_eq!(source.bytes, common::site::PAGE_HTML.len() as u64);
}

#[tokio::test]
async fn plain_text_and_json_pass_through() {
    let site = Site::start().await;
    let tools = site_tools(|_| {});
    let out = fetch(&tools, &site.url("/plain.txt")).await;
    assert!(!out.is_error, "{}", out.text);
    assert!(
        out.text.starts_with("just some plain text\nsecond line\n"),
        "{}",
        out.text
    );
    let out = fetch(&tools, &site.url("/data.json")).await;
    assert!(out.text.starts_with(JSON), "{}", out.text);
    assert!(
        out.text.contains("Content type: application/json"),
        "{}",
        out.text
    );
    let out = fetch(&tools, &site.url("/untyped.txt")).await;
    assert!(
        !out.is_error && out.text.starts_with("untyped but plainly text"),
        "{}",
        out.text
    );
}

#[tokio::test]
async fn the_charset_is_honoured_and_escapes_are_stripped() {
    let site = Site::start().await;
    let tools = site_tools(|_| {});
    let out = fetch(&tools, &site.url("/latin1.txt")).await;
    assert!(out.text.starts_with("café crème"), "{}", out.text);
    let out = fetch(&tools, &site.url("/escapes.txt")).await;
    assert!(out.text.starts_with("beforeafter done"), "{:?}", out.text);
    assert!(
        !out.text.contains(['\u{1b}', '\u{9b}', '\u{7}']),
        "{:?}",
        out.text
    );
}

#[tokio::test]
async fn loopback_is_refused_by_default_and_nothing_is_sent() {
    let site = Site::start().await;
    let tools = Tools::new(&ToolsConfig::default());
    let out = fetch(&tools, &site.url("/plain.txt")).await;
    assert!(out.is_error);
    assert!(
        out.text.contains(
            "refused: 127.0.0.1 is a loopback address; allow it with --allow-host 127.0.0.1"
        ),
        "{}",
        out.text
    );
    let by_name = format!("http://localhost:{}/plain.txt", site.addr.port());
    let out = fetch(&tools, &by_name).await;
    assert!(out.is_error);
    // The resolver's refusal comes through whole, not as a connection error.
    assert!(
        out.text
            .starts_with(&format!("fetch_url {by_name}: refused: ")),
        "{}",
        out.text
    );
    assert!(
        out.text.contains("(localhost resolves to it)"),
        "{}",
        out.text
    );
    assert!(out.text.contains("--allow-host localhost"), "{}", out.text);
    assert_eq!(site.requests(), 0, "a refused fetch sent a request");
}

#[tokio::test]
async fn an_allowed_name_may_be_loopback() {
    let site = Site::start().await;
    let tools = Tools::new(&ToolsConfig {
        allow_hosts: allow(&["localhost"]),
        ..ToolsConfig::default()
    });
    // The site listens on 127.0.0.1 only; localhost may also resolve to ::1, which is tried too.
    let out = fetch(
        &tools,
        &format!("http://localhost:{}/plain.txt", site.addr.port()),
    )
    .await;
    assert!(!out.is_error, "{}", out.text);
    assert_eq!(site.requests(), 1);
}

#[tokio::test]
async fn deny_beats_allow() {
    let site = Site::start().await;
    let tools = site_tools(|c| c.deny_hosts = allow(&["127.0.0.1"]));
    let out = fetch(&tools, &site.url("/plain.txt")).await;
    assert!(out.is_error);
    assert!(
        out.text.contains("denied by the host policy"),
        "{}",
        out.text
    );
    assert_eq!(site.requests(), 0);
}

#[tokio::test]
async fn other_schemes_are_refused() {
    let tools = site_tools(|_| {});
    for url in ["file:///etc/passwd", "ftp://127.0.0.1/file.txt"] {
        let out = fetch(&tools, url).await;
        assert!(out.is_error, "{url}");
        assert!(
            out.text.contains("only http and https URLs"),
            "{}",
            out.text
        );
    }
}

#[tokio::test]
async fn five_redirects_are_followed_and_a_sixth_is_not() {
    let site = Site::start().await;
    let tools = site_tools(|_| {});
    let out = fetch(&tools, &site.url("/hops/5")).await;
    assert!(!out.is_error, "{}", out.text);
    assert!(out.text.starts_with("arrived"), "{}", out.text);
    assert!(
        out.text.contains(&format!(
            "Final URL: {} (after 5 redirects)",
            site.url("/hops/0")
        )),
        "{}",
        out.text
    );
    assert_eq!(out.source.expect("a source").location, site.url("/hops/0"));
    let out = fetch(&tools, &site.url("/hops/6")).await;
    assert!(out.is_error);
    assert!(
        out.text.contains("stopped after 5 redirects"),
        "{}",
        out.text
    );
}

#[tokio::test]
async fn a_redirect_loop_ends_at_the_limit() {
    let site = Site::start().await;
    let out = fetch(&site_tools(|_| {}), &site.url("/loop/a")).await;
    assert!(out.is_error);
    assert!(
        out.text.contains("stopped after 5 redirects"),
        "{}",
        out.text
    );
    assert_eq!(site.requests(), 6, "the first request and five redirects");
}

#[tokio::test]
async fn a_redirect_to_an_address_not_allowed_is_refused() {
    let site = Site::start().await;
    let tools = site_tools(|_| {});
    let out = fetch(&tools, &site.url("/to-private")).await;
    assert!(out.is_error);
    assert!(
        out.text.contains(
            "refused: 127.0.0.2 is a loopback address; allow it with --allow-host 127.0.0.2"
        ),
        "{}",
        out.text
    );
    let out = fetch(&tools, &site.url("/to-file")).await;
    assert!(out.is_error);
    assert!(
        out.text.contains("only http and https URLs"),
        "{}",
        out.text
    );
}

#[tokio::test]
async fn an_endless_body_stops_at_the_cap() {
    let site = Site::start().await;
    let cap = 100_000;
    let tools = site_tools(|c| c.max_fetch_bytes = cap);
    let started = Instant::now();
    let out = fetch(&tools, &site.url("/endless")).await;
    assert!(!out.is_error, "{}", out.text);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.source.as_ref().expect("a source").bytes, cap);
    assert!(out.text.contains("cut at the 97.7 KB cap"), "{}", out.text);
    assert!(out.text.contains("[… truncated: "), "the text is cut too");
    // The connection is closed: the server stops handing out bytes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = site.counters.endless_bytes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(site.counters.endless_bytes.load(Ordering::SeqCst), sent);
}

#[tokio::test]
async fn binaries_are_refused() {
    let site = Site::start().await;
    let tools = site_tools(|_| {});
    for (path, kind) in [
        ("/binary", "application/octet-stream"),
        ("/image.png", "image/png"),
    ] {
        let out = fetch(&tools, &site.url(path)).await;
        assert!(out.is_error, "{path}");
        assert!(
            out.text.contains(&format!("is binary ({kind}), not text")),
            "{}",
            out.text
        );
    }
}

#[tokio::test]
async fn a_slow_page_times_out() {
    let site = Site::start().await;
    let tools = site_tools(|c| c.fetch_timeout = Duration::from_millis(300));
    let started = Instant::now();
    let out = fetch(&tools, &site.url("/slow")).await;
    assert!(out.is_error);
    assert!(out.text.contains("timed out after 0.3 s"), "{}", out.text);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_error_status_is_an_error_result_with_the_page() {
    let site = Site::start().await;
    let out = fetch(&site_tools(|_| {}), &site.url("/missing")).await;
    assert!(out.is_error);
    assert!(
        out.text.starts_with("HTTP 404 Not Found from "),
        "{}",
        out.text
    );
    assert!(out.text.contains("no such page"), "{}", out.text);
    assert_eq!(out.source.expect("a source").status, Some(404));
}

#[tokio::test]
async fn a_long_result_is_cut_with_a_marker_and_keeps_its_note() {
    let site = Site::start().await;
    let out = fetch(
        &site_tools(|c| c.max_result_chars = 10),
        &site.url("/plain.txt"),
    )
    .await;
    assert!(
        out.text
            .starts_with("just some \n[… truncated: 10 of 33 characters shown]"),
        "{}",
        out.text
    );
    assert!(
        out.text.contains("Content type: text/plain"),
        "{}",
        out.text
    );
}

#[tokio::test]
async fn bad_arguments_are_error_results() {
    let tools = site_tools(|_| {});
    for args in [json!({}), json!({"url": 3}), json!("http://x"), json!(null)] {
        let out = tools.call("fetch_url", &args).await;
        assert!(out.is_error, "{args}");
        assert!(
            out.text.contains("fetch_url takes {\"url\": string}"),
            "{}",
            out.text
        );
    }
    let out = tools.call("fetch_url", &json!({"url": "not a url"})).await;
    assert!(
        out.is_error && out.text.contains("not a valid URL"),
        "{}",
        out.text
    );
}

// ---- read_file and list_dir ---------------------------------------------------------------------

/// `<tmp>/root` (allowed) with files, a subfolder and links, and `<tmp>/outside` beside it.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        for d in [&root, &root.join("sub"), &outside] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let write = |p: &Path, bytes: &[u8]| std::fs::write(p, bytes).expect("write");
        write(&root.join("notes.md"), b"# Notes\nremember the milk\n");
        write(&root.join("sub/deep.txt"), b"deep text\n");
        write(&root.join("blob.bin"), b"abc\0def");
        write(&root.join("latin1.txt"), b"caf\xe9\n");
        write(&root.join("big.txt"), "0123456789".repeat(300).as_bytes());
        write(&outside.join("secret.txt"), b"the secret\n");
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("leak.txt"))
            .expect("symlink");
        std::os::unix::fs::symlink(&outside, root.join("outdir")).expect("symlink");
        std::os::unix::fs::symlink(root.join("notes.md"), root.join("alias.md")).expect("symlink");
        Self { dir }
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    fn tools(&self, tweak: impl FnOnce(&mut ToolsConfig)) -> Tools {
        let mut config = ToolsConfig {
            allow_dirs: vec![self.root()],
            ..ToolsConfig::default()
        };
        tweak(&mut config);
        Tools::new(&config)
    }
}

async fn read(tools: &Tools, path: &str) -> ToolOutput {
    tools.call("read_file", &json!({ "path": path })).await
}

#[tokio::test]
async fn a_file_under_the_root_is_read_by_relative_or_absolute_path() {
    let tree = Tree::new();
    let tools = tree.tools(|_| {});
    let canonical = std::fs::canonicalize(tree.root().join("notes.md")).expect("exists");
    for path in [
        "notes.md".to_owned(),
        "./sub/../notes.md".to_owned(),
        canonical.display().to_string(),
        "alias.md".to_owned(),
    ] {
        let out = read(&tools, &path).await;
        assert!(!out.is_error, "{path}: {}", out.text);
        assert!(
            out.text.starts_with("# Notes\nremember the milk\n"),
            "{}",
            out.text
        );
        let source = out.source.expect("a source");
        assert_eq!(source.kind, SourceKind::File);
        assert_eq!(source.location, canonical.display().to_string(), "{path}");
        assert_eq!(source.bytes, 26);
    }
    let out = read(&tools, "sub/deep.txt").await;
    assert!(out.text.starts_with("deep text"), "{}", out.text);
}

#[tokio::test]
async fn escapes_from_the_root_are_refused() {
    let tree = Tree::new();
    let tools = tree.tools(|_| {});
    let outside = tree.dir.path().join("outside/secret.txt");
    for path in [
        "../outside/secret.txt".to_owned(),
        "sub/../../outside/secret.txt".to_owned(),
        outside.display().to_string(),
        "/etc/passwd".to_owned(),
        "/etc/no-such-file".to_owned(),
    ] {
        let out = read(&tools, &path).await;
        assert!(out.is_error, "{path} was read");
        assert!(
            out.text.contains("is outside the allowed folders"),
            "{path}: {}",
            out.text
        );
        assert!(!out.text.contains("the secret"));
    }
    for path in ["leak.txt", "outdir/secret.txt"] {
        let out = read(&tools, path).await;
        assert!(out.is_error, "{path} was read");
        assert!(
            out.text.contains("through a symbolic link"),
            "{path}: {}",
            out.text
        );
        assert!(!out.text.contains("the secret"));
    }
    let out = tools.call("list_dir", &json!({"path": "outdir"})).await;
    assert!(
        out.is_error && out.text.contains("through a symbolic link"),
        "{}",
        out.text
    );
}

#[tokio::test]
async fn binary_and_non_utf8_files_are_refused() {
    let tree = Tree::new();
    let tools = tree.tools(|_| {});
    let out = read(&tools, "blob.bin").await;
    assert!(
        out.is_error && out.text.contains("binary file"),
        "{}",
        out.text
    );
    let out = read(&tools, "latin1.txt").await;
    assert!(
        out.is_error && out.text.contains("not UTF-8 text"),
        "{}",
        out.text
    );
}

#[tokio::test]
async fn a_big_file_is_read_up_to_the_cap() {
    let tree = Tree::new();
    let tools = tree.tools(|c| c.max_file_bytes = 1000);
    let out = read(&tools, "big.txt").await;
    assert!(!out.is_error, "{}", out.text);
    assert_eq!(out.source.as_ref().expect("a source").bytes, 1000);
    assert!(
        out.text
            .contains("1000 bytes of 2.9 KB read, cut at the 1000 bytes cap"),
        "{}",
        out.text
    );
    assert!(
        out.text.starts_with(&"0123456789".repeat(100)),
        "{}",
        out.text
    );
}

#[tokio::test]
async fn missing_files_and_folders_are_told_apart_from_refusals() {
    let tree = Tree::new();
    let tools = tree.tools(|_| {});
    let out = read(&tools, "nope.txt").await;
    assert!(
        out.is_error && out.text.contains("nope.txt does not exist"),
        "{}",
        out.text
    );
    let out = read(&tools, "sub").await;
    assert!(
        out.is_error && out.text.contains("is a folder; list it with list_dir"),
        "{}",
        out.text
    );
}

#[tokio::test]
async fn a_listing_is_sorted_with_kinds_and_sizes_and_capped() {
    let tree = Tree::new();
    let tools = tree.tools(|_| {});
    let out = tools.call("list_dir", &json!({})).await;
    assert!(!out.is_error, "{}", out.text);
    let lines: Vec<&str> = out.text.lines().collect();
    assert!(lines[0].ends_with(": 8 entries"), "{}", out.text);
    assert_eq!(
        lines[1..],
        [
            "link  alias.md",
            "file  big.txt  (2.9 KB)",
            "file  blob.bin  (7 bytes)",
            "file  latin1.txt  (5 bytes)",
            "link  leak.txt",
            "file  notes.md  (26 bytes)",
            "link  outdir",
            "dir   sub/",
        ]
    );
    let capped = tree.tools(|c| c.max_list_entries = 2);
    let out = capped.call("list_dir", &json!({"path": "."})).await;
    assert!(out.text.contains("file  big.txt"), "{}", out.text);
    assert!(!out.text.contains("blob.bin"), "{}", out.text);
    assert!(
        out.text
            .contains("[… 6 more entries not listed (the cap is 2)]"),
        "{}",
        out.text
    );
    let out = tools.call("list_dir", &json!({"path": "sub"})).await;
    assert!(
        out.text.contains("file  deep.txt  (10 bytes)"),
        "{}",
        out.text
    );
    let out = tools.call("list_dir", &json!({"path": "notes.md"})).await;
    assert!(
        out.is_error && out.text.contains("is a file; read it with read_file"),
        "{}",
        out.text
    );
}

#[tokio::test]
async fn several_roots_are_listed_and_searched_in_turn() {
    let tree = Tree::new();
    let other = tree.dir.path().join("outside");
    let tools = tree.tools(|c| c.allow_dirs.push(other.clone()));
    let out = tools.call("list_dir", &json!({})).await;
    assert!(
        out.text.starts_with("The allowed folders and files:\n"),
        "{}",
        out.text
    );
    assert!(out.text.contains("outside"), "{}", out.text);
    // Not in the first root, found in the second; and the link into it now stays inside.
    let out = read(&tools, "secret.txt").await;
    assert!(out.text.starts_with("the secret"), "{}", out.text);
    let out = read(&tools, "leak.txt").await;
    assert!(!out.is_error, "{}", out.text);
}

#[tokio::test]
async fn names_with_escapes_are_sanitised_in_listings() {
    let tree = Tree::new();
    std::fs::write(tree.root().join("evil\u{1b}]0;x\u{7}name"), b"x").expect("write");
    let out = tree.tools(|_| {}).call("list_dir", &json!({})).await;
    assert!(
        out.text.contains("file  evilname  (1 bytes)"),
        "{:?}",
        out.text
    );
    assert!(!out.text.contains('\u{1b}'));
}

// ---- the flags, through the binary ----------------------------------------------------------

#[test]
fn a_missing_allow_dir_is_a_usage_error() {
    let sandbox = Sandbox::new("");
    let out = sandbox
        .child(&["run", "--allow-dir", "no-such-folder", "a question"])
        .run_blocking();
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("--allow-dir no-such-folder"),
        "{}",
        out.stderr
    );
    let out = sandbox
        .child(&["run", "--allow-host", "http://x/", "a question"])
        .run_blocking();
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--allow-host"), "{}", out.stderr);
}

#[test]
fn the_tool_flags_are_in_the_help() {
    let out = Sandbox::new("").child(&["run", "--help"]).run_blocking();
    assert!(out.stdout.contains("--allow-host <HOST>"), "{}", out.stdout);
    assert!(out.stdout.contains("--allow-dir <DIR>"), "{}", out.stdout);
}

// ---- the files a run was given are readable by its workers ------------------------------------

mod context_roots {
    use std::time::Duration;

    use serde_json::{Value, json};

    use crate::common::mock::{MockRequest, MockServer, Reply};
    use crate::common::plans::{plan_value, result_for, title};
    use crate::common::{Output, Sandbox};
    use maestro::protocol::{AttachedFile, Attachments, Command, EventKind, RunId};

    const QUERY: &str = "Review the notes.";

    /// A worker offered tools and not yet given results makes `calls`, then answers.
    fn script(calls: Vec<(&'static str, String)>) -> impl Fn(&MockRequest) -> Reply + Send + Sync {
        let plan = plan_value(&["a"]).to_string();
        move |r| {
            if r.is_planner() {
                return Reply::text(plan.clone());
            }
            if r.is_synthesis() {
                return Reply::text("# Report\n\nDone.");
            }
            match r.worker_title() {
                Some(_) if !r.tools().is_empty() && r.tool_results().is_empty() => {
                    let calls: Vec<(&str, &str)> =
                        calls.iter().map(|(n, a)| (*n, a.as_str())).collect();
                    Reply::calls(&calls)
                }
                Some(t) => Reply::text(result_for(&t)),
                None => Reply::status(400, "mock: unexpected request"),
            }
        }
    }

    fn config(server: &MockServer) -> String {
        format!(
            "provider = \"openai\"\n[openai]\nbase_url = \"{}\"\nstarts_per_second = 0\n\
             [limits]\nretries = 0\n[roles.research]\ntools = [\"files\"]\n",
            server.openai_base_url()
        )
    }

    async fn run(sandbox: &Sandbox, extra: &[&str]) -> Output {
        let mut args = vec!["run", "--no-save", "--no-cache", "--format", "json"];
        args.extend_from_slice(extra);
        args.push(QUERY);
        sandbox
            .child(&args)
            .env("OPENAI_API_KEY", "openai-test-key")
            .limit(Duration::from_secs(60))
            .run()
            .await
    }

    fn worker_requests(server: &MockServer) -> Vec<MockRequest> {
        server
            .requests()
            .into_iter()
            .filter(|r| r.worker_title().as_deref() == Some(title("a").as_str()))
            .collect()
    }

    #[tokio::test]
    async fn a_context_folder_is_readable_without_allow_dir_and_nothing_outside_it() {
        let sandbox = Sandbox::new("");
        std::fs::create_dir(sandbox.path("proj")).expect("mkdir");
        std::fs::write(sandbox.path("proj/notes.txt"), "the notes body\n").expect("write");
        std::fs::write(sandbox.path("secret.txt"), "the secret\n").expect("write");
        let secret = sandbox.path("secret.txt").display().to_string();
        let server = MockServer::start(script(vec![
            ("read_file", json!({ "path": "proj/notes.txt" }).to_string()),
            ("list_dir", json!({ "path": "proj" }).to_string()),
            ("read_file", json!({ "path": secret }).to_string()),
            (
                "read_file",
                json!({ "path": "proj/../secret.txt" }).to_string(),
            ),
        ]))
        .await;
        std::fs::write(sandbox.config_path(), config(&server)).expect("write the config");

        let out = run(&sandbox, &["--context", "proj"]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let a = worker_requests(&server);
        assert_eq!(a.len(), 2, "the calls, then the answer");
        assert_eq!(a[0].tools(), ["read_file", "list_dir"]);
        let results: Vec<String> = a[1].tool_results().into_iter().map(|r| r.1).collect();
        assert_eq!(results.len(), 4, "{results:?}");
        assert!(
            results[0].starts_with("Source [1]: ") && results[0].contains("\n\nthe notes body"),
            "{results:?}"
        );
        assert!(results[1].contains("notes.txt"), "{results:?}");
        assert!(results[2].contains("refused"), "{results:?}");
        // Inside the folder `..` is folded first: this names proj/secret.txt, which is not there.
        assert!(results[3].contains("does not exist"), "{results:?}");
        assert!(
            results.iter().all(|r| !r.contains("the secret")),
            "{results:?}"
        );

        // Without the folder, no folder is readable, so the file tools are not offered.
        let server = MockServer::start(script(Vec::new())).await;
        std::fs::write(sandbox.config_path(), config(&server)).expect("write the config");
        let out = run(&sandbox, &[]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(worker_requests(&server)[0].tools().is_empty());
    }

    /// Two runs of one engine (as in the dashboard), each given its own folder: each reads its
    /// own and is refused the other's.
    #[tokio::test]
    async fn two_runs_of_one_engine_read_only_their_own_files() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let canonical = |name: &str| {
            std::fs::canonicalize(dir.path().join(name))
                .expect("canonical")
                .display()
                .to_string()
        };
        for (name, text) in [("alpha", "alpha body"), ("beta", "beta body")] {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
            std::fs::write(dir.path().join(name).join("f.txt"), text).expect("write");
        }
        let alpha = format!("{}/f.txt", canonical("alpha"));
        let beta = format!("{}/f.txt", canonical("beta"));
        let server = MockServer::start(script(vec![
            ("read_file", json!({ "path": alpha }).to_string()),
            ("read_file", json!({ "path": beta }).to_string()),
        ]))
        .await;
        let file =
            maestro::config::FileConfig::parse(&config(&server), std::path::Path::new("test.toml"))
                .expect("a valid config");
        let env = |name: &str| (name == "OPENAI_API_KEY").then(|| "openai-test-key".to_owned());
        let config = maestro::config::Config::merge(&Default::default(), file, &env)
            .expect("a valid config");
        let (tools, servers) = config.toolbox();
        let (engine, mut events) = maestro::engine::executor::Engine::spawn_with_tools(
            config.provider.build(),
            tools,
            config.run,
            config.executor,
        );
        let start = |name: &str| {
            let id = RunId::new();
            engine.send(Command::StartRun {
                id,
                query: format!("{QUERY} ({name})"),
                plan: None,
                models: Default::default(),
                follow_up: None,
                context: Attachments {
                    files: vec![AttachedFile {
                        path: format!("{name}/f.txt"),
                        text: format!("{name} body"),
                    }],
                    roots: vec![canonical(name)],
                    ..Default::default()
                },
            });
            id
        };
        let runs = [start("alpha"), start("beta")];
        let mut finished: Vec<RunId> = Vec::new();
        let mut calls: Vec<(RunId, bool)> = Vec::new();
        while finished.len() < 2 {
            let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
                .await
                .expect("events in time")
                .expect("the engine runs");
            match event.kind {
                EventKind::ToolCallFinished { ok, .. } => calls.push((event.run, ok)),
                EventKind::RunFinished { .. } => finished.push(event.run),
                _ => {}
            }
        }
        servers.stop().await;
        let oks = |run: RunId| -> Vec<bool> {
            calls
                .iter()
                .filter(|(r, _)| *r == run)
                .map(|(_, ok)| *ok)
                .collect()
        };
        // Tool calls finish in either order within a round: count them.
        for run in runs {
            let mut run_oks = oks(run);
            run_oks.sort();
            assert_eq!(run_oks, [false, true], "one read, one refused: {calls:?}");
        }
        let answered: Vec<Value> = server
            .requests()
            .iter()
            .filter(|r| !r.tool_results().is_empty())
            .map(|r| {
                let results: Vec<String> = r.tool_results().into_iter().map(|t| t.1).collect();
                json!({ "user": r.user(), "results": results })
            })
            .collect();
        assert_eq!(answered.len(), 2, "{answered:?}");
        for request in &answered {
            let user = request["user"].as_str().unwrap_or_default();
            let results = &request["results"];
            let (own, other) = if user.contains("(alpha)") {
                (0, 1)
            } else {
                (1, 0)
            };
            let own_text = results[own].as_str().unwrap_or_default();
            let other_text = results[other].as_str().unwrap_or_default();
            assert!(own_text.contains("body"), "{request}");
            assert!(
                other_text.contains("refused") && !other_text.contains("body"),
                "{request}"
            );
        }
    }
}
