//! Dashboard render cost and idle CPU.
//!
//! 1. Frame render time: a model with one run of 500 subtasks in every state and a 200 KB
//!    markdown synthesis, drawn into ratatui's `TestBackend` at 160×48 (the draw itself, the
//!    same code the terminal runs, minus writing bytes to a tty). Measured three ways:
//!    - steady: the clock ticks between frames (spinners and timers change), caches warm —
//!      the common case while work runs;
//!    - scrolled: the synthesis scrolled to the middle;
//!    - streaming: a synthesis delta arrives before every frame at 60 frames a second; the
//!      markdown is parsed again at most every 100 ms (so p95 and max show a full parse).
//!
//!    Target: median ≤ 2 ms for the steady frame.
//! 2. Idle CPU: the real binary runs in tmux with nothing to do for a few seconds; its CPU
//!    time comes from `/proc/PID/stat`. Target: ≈ 0 %. Skipped when tmux is missing.
//!
//! Run with `cargo bench --bench render`. `BENCH_FRAMES` sets the frames per case (300).

use std::time::{Duration, Instant};

use maestro::engine::plan::{Plan, PlannedSubtask, Priority};
use maestro::protocol::{Event, EventKind, RunId, SubtaskId, Usage};
use maestro::tui::model::{Focus, Info, Model};
use maestro::tui::theme::Theme;
use maestro::tui::update::{Msg, update};
use maestro::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

const NOW: u64 = 1_700_000_000_000;
const SUBTASKS: usize = 500;
const SYNTHESIS_BYTES: usize = 200_000;

fn main() {
    let frames: usize = std::env::var("BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    println!(
        "maestro render benchmark: {SUBTASKS} subtasks, {} KB synthesis, 160×48, {frames} frames a case",
        SYNTHESIS_BYTES / 1000
    );
    let (mut model, run) = big_model();
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).expect("test backend");

    let steady = measure(frames, &mut terminal, &mut model, |m, i| {
        update(m, Msg::Tick(NOW + 100 * i as u64));
    });
    let page_down = Msg::Key(KeyEvent::new(KeyCode::PageDown, KeyModifiers::NONE));
    model.focus = Focus::Synthesis;
    for _ in 0..60 {
        update(&mut model, page_down.clone());
    }
    let scrolled = measure(frames, &mut terminal, &mut model, |m, i| {
        update(m, Msg::Tick(NOW + 100 * i as u64));
    });
    // A delta before every frame, frames 16 ms apart (60 a second): the markdown is parsed
    // again every STREAM_REFRESH_MS, so most frames reuse it and some pay for a full parse.
    let streaming = measure(frames, &mut terminal, &mut model, |m, i| {
        update(m, Msg::Tick(NOW + 16 * i as u64));
        let text = format!(" more text {i}");
        update(
            m,
            Msg::Engine(event(run, EventKind::SynthesisDelta { attempt: 2, text })),
        );
    });

    println!();
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "case", "median", "p95", "max"
    );
    for (name, samples) in [
        ("steady (clock ticks, caches warm)", &steady),
        ("synthesis scrolled to the middle", &scrolled),
        ("streaming (delta every frame)", &streaming),
    ] {
        let s = stats(samples);
        println!(
            "{name:<34} {:>10} {:>10} {:>10}",
            fmt(s.0),
            fmt(s.1),
            fmt(s.2)
        );
    }
    let median = stats(&steady).0;
    println!(
        "\nsteady frame: median {} — target ≤ 2 ms: {}",
        fmt(median),
        if median <= Duration::from_millis(2) {
            "met"
        } else {
            "NOT met"
        }
    );

    println!();
    match idle_cpu() {
        Ok((seconds, cpu)) => println!(
            "idle CPU of the dashboard over {seconds:.0} s: {:.2} % of one core ({} ms of CPU) — target ≈ 0",
            cpu.as_secs_f64() / seconds * 100.0,
            cpu.as_millis()
        ),
        Err(why) => println!("idle CPU: skipped ({why})"),
    }
}

fn event(run: RunId, kind: EventKind) -> Event {
    Event {
        run,
        ts_ms: NOW,
        kind,
    }
}

/// One run with 500 subtasks in every state and a 200 KB finished synthesis.
fn big_model() -> (Model, RunId) {
    let info = Info {
        describe: "openai · gpt-4o-mini".into(),
        demo: false,
        bell: false,
        roles: vec!["analysis".into(), "research".into()],
    };
    let mut model = Model::new(info, Theme { color: true }, (160, 48), NOW);
    let run = RunId::new();
    let subtasks: Vec<PlannedSubtask> = (0..SUBTASKS)
        .map(|i| PlannedSubtask {
            id: SubtaskId::new(format!("task_{i}")),
            worker: if i % 2 == 0 {
                "analysis".into()
            } else {
                "research".into()
            },
            title: format!("Subtask number {i} about a fairly long title that needs cutting"),
            description: format!("Find out part {i} of the question, in detail."),
            focus_areas: vec!["one".into(), "two".into()],
            depends_on: if i % 7 == 6 {
                vec![SubtaskId::new(format!("task_{}", i - 1))]
            } else {
                vec![]
            },
            priority: Priority::Medium,
            reuse: None,
            role_prompt: None,
            model: None,
        })
        .collect();
    let plan = Plan {
        query_analysis: "A big plan.".into(),
        subtasks,
        synthesis_guidance: String::new(),
        complexity: None,
    };
    let mut feed = |kind| {
        update(&mut model, Msg::Engine(event(run, kind)));
    };
    feed(EventKind::RunStarted {
        query: "A very large analysis".into(),
    });
    feed(EventKind::PlanReady { plan });
    for i in 0..SUBTASKS {
        let id = SubtaskId::new(format!("task_{i}"));
        feed(EventKind::SubtaskStarted {
            subtask: id.clone(),
            attempt: 1,
            worker: "analysis".into(),
            model: "gpt-4o-mini".into(),
        });
        match i % 5 {
            0 => feed(EventKind::SubtaskSucceeded {
                subtask: id,
                attempt: 1,
                elapsed_ms: 3100,
                usage: Usage {
                    tokens_in: 900,
                    tokens_out: 300,
                    estimated: false,
                    cached_in: 0,
                },
                result: "A result paragraph. ".repeat(20),
                cut_off: false,
                cached: false,
            }),
            1 => feed(EventKind::SubtaskFailed {
                subtask: id,
                attempt: 1,
                elapsed_ms: 1000,
                error: "HTTP 500: upstream error".into(),
                partial: String::new(),
            }),
            2 => feed(EventKind::SubtaskDelta {
                subtask: id,
                attempt: 1,
                text: "streaming words ".repeat(30),
            }),
            3 => feed(EventKind::SubtaskRetrying {
                subtask: id,
                attempt: 1,
                delay_ms: 1200,
                reason: "429".into(),
                error: "HTTP 429: slow down".into(),
            }),
            _ => feed(EventKind::SubtaskCancelled {
                subtask: id,
                attempt: 1,
            }),
        }
    }
    feed(EventKind::SynthesisStarted {
        attempt: 1,
        model: "gpt-4o".into(),
    });
    feed(EventKind::SynthesisFinished {
        attempt: 1,
        text: long_markdown(SYNTHESIS_BYTES),
        synthesized: true,
        usage: Usage::default(),
        error: None,
    });
    // A second synthesis streams on top of it in the streaming case.
    feed(EventKind::SynthesisStarted {
        attempt: 2,
        model: "gpt-4o".into(),
    });
    feed(EventKind::SynthesisDelta {
        attempt: 2,
        text: long_markdown(SYNTHESIS_BYTES),
    });
    (model, run)
}

fn long_markdown(bytes: usize) -> String {
    let section = "## A section heading\n\nSome **bold** and *emphasised* prose that goes on for a while, \
                   with `inline code` and a [link](https://example.com) in it, long enough to wrap \
                   across several lines of the pane.\n\n- a bullet point\n- another bullet with more words in it\n\
                   1. a numbered item\n2. another\n\n> a quoted remark\n\n```text\ncode block line\n```\n\n\
                   | a | b |\n|---|---|\n| 1 | 2 |\n\n";
    let mut out = String::from("# A long report\n\n");
    while out.len() < bytes {
        out.push_str(section);
    }
    out
}

fn measure(
    frames: usize,
    terminal: &mut Terminal<TestBackend>,
    model: &mut Model,
    mut before: impl FnMut(&mut Model, usize),
) -> Vec<Duration> {
    // One warm-up frame fills the caches.
    let _ = terminal.draw(|f| view::draw(f, model));
    (0..frames.max(1))
        .map(|i| {
            before(model, i);
            let start = Instant::now();
            let _ = terminal.draw(|f| view::draw(f, model));
            start.elapsed()
        })
        .collect()
}

fn stats(samples: &[Duration]) -> (Duration, Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95), *sorted.last().unwrap_or(&Duration::ZERO))
}

fn fmt(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// CPU time the idle dashboard uses over a few seconds, from `/proc/PID/stat`.
fn idle_cpu() -> Result<(f64, Duration), String> {
    use std::process::Command;
    let tmux_ok = Command::new("tmux")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !tmux_ok {
        return Err("tmux is not installed".into());
    }
    let dir = std::env::temp_dir().join(format!("maestro-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let socket = dir.join("tmux.sock");
    let binary = env!("CARGO_BIN_EXE_maestro");
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(args)
            .output()
            .map_err(|e| e.to_string())
    };
    let command = format!(
        "env -u MAESTRO_PROVIDER HOME={home} XDG_CONFIG_HOME={home} XDG_DATA_HOME={home} MAESTRO_CONFIG=/dev/null {binary}",
        home = dir.display()
    );
    tmux(&["new-session", "-d", "-x", "120", "-y", "40", &command])?;
    let result = (|| {
        std::thread::sleep(Duration::from_secs(2));
        let pid = String::from_utf8_lossy(&tmux(&["display", "-p", "#{pane_pid}"])?.stdout)
            .trim()
            .to_owned();
        let ticks = || -> Result<u64, String> {
            let stat =
                std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
            let after = stat.rsplit_once(')').ok_or("bad stat")?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: u64 = fields
                .get(11)
                .and_then(|v| v.parse().ok())
                .ok_or("no utime")?;
            let stime: u64 = fields
                .get(12)
                .and_then(|v| v.parse().ok())
                .ok_or("no stime")?;
            Ok(utime + stime)
        };
        let seconds = 5.0;
        let before = ticks()?;
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let after = ticks()?;
        // Linux reports CPU time in clock ticks of 1/100 s on every common configuration.
        Ok((seconds, Duration::from_millis((after - before) * 10)))
    })();
    let _ = tmux(&["kill-server"]);
    let _ = std::fs::remove_dir_all(&dir);
    result
}
