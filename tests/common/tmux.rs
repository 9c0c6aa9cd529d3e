//! A private tmux server for tests that drive the binary on a real terminal: the dashboard's
//! end-to-end tests and the terminal plan review. Only the harness lives here; what a test
//! types and expects stays in its own file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The window the session runs in.
pub const WIDTH: u16 = 120;
pub const HEIGHT: u16 = 40;
/// Longest any one wait may take; CI machines are slow and have two cores.
pub const WAIT: Duration = Duration::from_secs(15);
pub const POLL: Duration = Duration::from_millis(100);
/// The session's name.
const SESSION: &str = "e2e";

/// A private tmux server (its socket in a temp dir) running one session. Killed when dropped,
/// so a failing test leaves nothing behind: the binary sees its terminal hang up and exits.
pub struct Tmux {
    /// `-S SOCKET` or, when the temp path is too long for a socket, `-L NAME`.
    pub socket: [String; 2],
    /// The environment of the tmux server, so of the binary: nothing from the developer's
    /// shell (no API keys, no `MAESTRO_*`), home and XDG dirs in the sandbox.
    pub env: Vec<(String, String)>,
    /// The binary's log, shown when a wait times out.
    pub log: PathBuf,
}

impl Tmux {
    /// A server for the sandbox `home` whose binary reads `config`; its log is where the
    /// binary writes it under `home`.
    pub fn in_sandbox(home: &Path, config: &Path) -> Self {
        Self {
            socket: socket_args(home),
            env: sandbox_env(home, config),
            log: home.join("data").join("maestro").join("maestro.log"),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(&self.socket)
            .stdin(Stdio::null());
        command
    }

    /// Run a tmux command; panic with its stderr when it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self
            .command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux {args:?}: {e}"));
        assert!(
            out.status.success(),
            "tmux {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Start the session running `shell_command` in a `WIDTH`×`HEIGHT` window.
    pub fn start(&self, shell_command: &str) {
        let (w, h) = (WIDTH.to_string(), HEIGHT.to_string());
        self.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &w,
            "-y",
            &h,
            shell_command,
        ]);
    }

    /// Keys by tmux name (`Enter`, `j`, `q`).
    pub fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", SESSION];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Text typed as is (`send-keys -l`).
    pub fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", SESSION, "-l", text]);
    }

    /// The visible screen as plain text.
    pub fn capture(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", SESSION])
    }

    /// The pane with its scrollback and wrapped lines joined, for line-oriented output whose
    /// earlier lines scrolled away.
    pub fn capture_scrollback(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-S", "-500", "-t", SESSION])
    }

    /// A `#{format}` of the pane.
    pub fn display(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", SESSION, format])
            .trim_end()
            .to_owned()
    }

    /// Poll the screen until `done` holds, and return that screen. Panics after `WAIT` with
    /// `what`, the last screen and the end of the binary's log.
    pub fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        self.poll(what, Self::capture, done)
    }

    /// As `wait_for`, over the scrollback (`capture_scrollback`).
    pub fn wait_for_in_scrollback(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        self.poll(what, Self::capture_scrollback, done)
    }

    fn poll(
        &self,
        what: &str,
        capture: fn(&Self) -> String,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = capture(self);
            if done(&screen) {
                return screen;
            }
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "timed out after {WAIT:?} waiting for {what}\n\
                     --- last screen ---\n{screen}\n--- end of the binary's log ---\n{}",
                    tail.join("\n")
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .command()
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether tmux is here; without it, a skip notice when `MAESTRO_SKIP_TMUX_TESTS=1`, else a
/// failure that says how to get it. `what` names the tests, for both messages.
pub fn ready(what: &str) -> bool {
    let here = Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if here {
        return true;
    }
    if std::env::var("MAESTRO_SKIP_TMUX_TESTS").as_deref() == Ok("1") {
        eprintln!("notice: tmux is not installed; skipping {what}");
        return false;
    }
    panic!(
        "{what} needs tmux, which is not installed: install it (.ci/run does), or set \
         MAESTRO_SKIP_TMUX_TESTS=1 to skip it"
    );
}

/// `-S DIR/tmux.sock`, or a unique `-L` name when that path is too long for a Unix socket.
pub fn socket_args(dir: &Path) -> [String; 2] {
    let path = dir.join("tmux.sock");
    if path.as_os_str().len() < 100 {
        ["-S".into(), path.to_string_lossy().into_owned()]
    } else {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        [
            "-L".into(),
            format!("maestro-e2e-{}-{nanos}", std::process::id()),
        ]
    }
}

/// A clean environment: `PATH` (to find `sh` and `sleep`), a UTF-8 locale, and home, XDG dirs
/// and config in the sandbox. No API keys, no `MAESTRO_*` from the developer's shell.
pub fn sandbox_env(home: &Path, config: &Path) -> Vec<(String, String)> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("LANG".into(), "C.UTF-8".into()),
        ("HOME".into(), path(home)),
        ("XDG_DATA_HOME".into(), path(&home.join("data"))),
        ("XDG_CONFIG_HOME".into(), path(&home.join("config"))),
        ("MAESTRO_CONFIG".into(), path(config)),
        (
            "MAESTRO_LOG".into(),
            "debug,tui_markdown=warn,hyper_util=info".into(),
        ),
    ]
}

/// `text` quoted for `sh`.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
