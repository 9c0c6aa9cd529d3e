//! Running the real `maestro` binary as a child process from a sandbox: a temp dir that holds
//! its home, XDG dirs and config file. Owns the clean environment (no `MAESTRO_*`, no
//! `*_API_KEY` from the caller's shell), the time limit and the capture of what it printed;
//! it must not know about any one test's mock script or assertions.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// How long a child may run when the test names no limit of its own.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(30);

/// A temp dir with the child's home, XDG dirs and `config.toml`.
pub struct Sandbox {
    pub dir: TempDir,
}

impl Sandbox {
    pub fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("config.toml"), config).expect("write the config");
        Self { dir }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("config.toml")
    }

    /// A child with `MAESTRO_CONFIG` naming the sandbox's file and home and XDG dirs inside it.
    pub fn child(&self, args: &[&str]) -> Maestro {
        let home = self.dir.path();
        Maestro::new(args)
            .env("MAESTRO_CONFIG", self.config_path())
            .env("HOME", home)
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .current_dir(home)
    }
}

/// What a finished child printed and how it exited.
#[derive(Clone)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Stdout parsed as one JSON value; a test failure naming the output when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self:?}"))
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A child process to start: arguments, environment and limits, built up before it runs.
pub struct Maestro {
    db: Option<PathBuf>,
    args: Vec<String>,
    env: Vec<(String, std::ffi::OsString)>,
    scrub: Vec<String>,
    dir: Option<PathBuf>,
    stdin: Option<String>,
    limit: Duration,
    lossy: bool,
}

impl Maestro {
    pub fn new(args: &[&str]) -> Self {
        Self {
            db: None,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: Vec::new(),
            scrub: Vec::new(),
            dir: None,
            stdin: None,
            limit: DEFAULT_LIMIT,
            lossy: false,
        }
    }

    /// `--db <path>` before the other arguments.
    pub fn db(mut self, path: impl Into<PathBuf>) -> Self {
        self.db = Some(path.into());
        self
    }

    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env.push((name.to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        for (name, value) in vars {
            self = self.env(name, value);
        }
        self
    }

    /// Also remove `name` from the inherited environment (before `env` sets anything).
    pub fn scrub(mut self, name: &str) -> Self {
        self.scrub.push(name.to_owned());
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Text written to the child's stdin; without it stdin is null.
    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.to_owned());
        self
    }

    /// The longest the child may run before the test fails.
    pub fn limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// Replace bytes that are not UTF-8 in what the child printed instead of failing the test.
    pub fn lossy(mut self) -> Self {
        self.lossy = true;
        self
    }

    /// The command with a clean environment and piped output, not yet started.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_maestro"));
        if let Some(db) = &self.db {
            command.arg("--db").arg(db);
        }
        command.args(&self.args);
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("MAESTRO_")
                || name.ends_with("_API_KEY")
                || self.scrub.iter().any(|s| *s == name)
            {
                command.env_remove(name.as_ref());
            }
        }
        command.envs(self.env.iter().map(|(n, v)| (n, v)));
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        let stdin = if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Start the child, writing the stdin text (when given) to it.
    pub fn spawn(self) -> Running {
        use std::io::Write;
        let mut child = self.command().spawn().expect("start maestro");
        if let Some(text) = &self.stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
        Running {
            child,
            limit: self.limit,
            lossy: self.lossy,
        }
    }

    /// Run to the end, blocking this thread.
    pub fn run_blocking(self) -> Output {
        self.spawn().wait()
    }

    /// Run to the end without blocking the async runtime.
    pub async fn run(self) -> Output {
        tokio::task::spawn_blocking(move || self.run_blocking())
            .await
            .expect("the child runner")
    }
}

/// A started child and the time it has to finish.
pub struct Running {
    pub child: Child,
    pub limit: Duration,
    pub lossy: bool,
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the child (killing it after the limit) and gather what it printed.
    pub fn wait(mut self) -> Output {
        use std::io::Read;
        // Read both pipes on threads so a chatty child never blocks on a full pipe.
        let mut out = self.child.stdout.take().expect("stdout");
        let mut err = self.child.stderr.take().expect("stderr");
        let out = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        let err = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            buf
        });
        let limit = self.limit;
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for maestro") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("maestro ran longer than {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = out.join().expect("stdout reader");
        let stderr = err.join().expect("stderr reader");
        let text = |bytes: Vec<u8>, what: &str| {
            if self.lossy {
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                String::from_utf8(bytes).unwrap_or_else(|e| panic!("{what} is not UTF-8: {e}"))
            }
        };
        Output {
            code: status.code(),
            stdout: text(stdout, "stdout"),
            stderr: text(stderr, "stderr"),
        }
    }
}
