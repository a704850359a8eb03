//! Runs the machine's real `kubectl` against a server, as a user would, and
//! captures what the user sees: exit code, stdout, stderr.
//!
//! Each [`Kubectl`] has its own discovery cache directory, so a test never
//! reads discovery or OpenAPI cached from an earlier server on the same port.
//! Commands run with a time limit (against hangs only); a child started with
//! [`Kubectl::spawn`] is killed by its own PID when stopped or dropped.

use std::{
    fmt,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

use crate::apiserver::ApiserverProcess;

/// The longest one kubectl command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// kubectl bound to one kubeconfig.
#[derive(Debug)]
pub struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

/// The kubectl of minor version `1.minor` on this machine, if there is one:
/// `kubectl.1.<minor>` beside the file `kubectl` on the PATH resolves to
/// (the machine's `kubectl` is a dispatcher over such binaries).
pub fn minor_binary(minor: u32) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let kubectl = std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|candidate| candidate.is_file())?;
    let resolved = std::fs::canonicalize(kubectl).ok()?;
    let binary = resolved.parent()?.join(format!("kubectl.1.{minor}"));
    binary.is_file().then_some(binary)
}

/// What one kubectl command printed and how it exited.
#[derive(Clone, Debug)]
pub struct KubectlOutput {
    /// The command line, for messages.
    pub command: String,
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Extra inputs for [`Kubectl::run_with`].
#[derive(Clone, Debug, Default)]
pub struct RunOptions<'a> {
    /// Written to kubectl's standard input (for `-f -`).
    pub stdin: Option<&'a str>,
    /// Extra environment variables (e.g. `KUBE_EDITOR`).
    pub env: Vec<(&'a str, String)>,
}

impl Kubectl {
    /// kubectl with `kubeconfig`.
    pub fn new(kubeconfig: &Path) -> Result<Self> {
        Self::with_binary(Path::new("kubectl"), kubeconfig)
    }

    /// The kubectl binary `binary` (e.g. one of [`minor_binary`]) with
    /// `kubeconfig`.
    pub fn with_binary(binary: &Path, kubeconfig: &Path) -> Result<Self> {
        Ok(Self {
            binary: binary.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            cache: tempfile::tempdir().context("creating kubectl's cache directory")?,
        })
    }

    /// kubectl as the admin of a standalone `server`.
    pub fn for_server(server: &ApiserverProcess) -> Result<Self> {
        Self::new(&server.admin_kubeconfig())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .kill_on_drop(true);
        command
    }

    /// Runs `kubectl <args>` and returns what it printed, whatever its exit
    /// code. Panics if kubectl cannot be started or does not finish in
    /// time.
    pub async fn run(&self, args: &[&str]) -> KubectlOutput {
        self.run_with(args, RunOptions::default()).await
    }

    /// Runs `kubectl <args>` with `input` on standard input.
    pub async fn run_stdin(&self, args: &[&str], input: &str) -> KubectlOutput {
        self.run_with(
            args,
            RunOptions {
                stdin: Some(input),
                ..RunOptions::default()
            },
        )
        .await
    }

    /// Runs `kubectl <args>` with `options`.
    pub async fn run_with(&self, args: &[&str], options: RunOptions<'_>) -> KubectlOutput {
        match self.try_run(args, options).await {
            Ok(output) => output,
            Err(error) => panic!("{error:#}"),
        }
    }

    async fn try_run(&self, args: &[&str], options: RunOptions<'_>) -> Result<KubectlOutput> {
        let command_line = format!("{} {}", self.binary.display(), args.join(" "));
        let mut command = self.command(args);
        command
            .stdin(if options.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &options.env {
            command.env(name, value);
        }
        let mut child = command.spawn().map_err(|error| {
            anyhow::anyhow!(
                "cannot run `kubectl` ({error}); it is required for these tests: \
                 run hack/setup-deps.sh"
            )
        })?;
        if let Some(input) = options.stdin {
            let mut stdin = child.stdin.take().context("kubectl's stdin")?;
            stdin.write_all(input.as_bytes()).await?;
            drop(stdin);
        }
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .with_context(|| format!("`{command_line}` did not finish within {COMMAND_TIMEOUT:?}"))?
            .with_context(|| format!("waiting for `{command_line}`"))?;
        Ok(KubectlOutput {
            command: command_line,
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Starts `kubectl <args>` as a child whose standard output is read
    /// line by line (for `get -w`).
    pub fn spawn(&self, args: &[&str]) -> Result<KubectlChild> {
        let command_line = format!("{} {}", self.binary.display(), args.join(" "));
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting `{command_line}`"))?;
        let stdout = child.stdout.take().context("kubectl's stdout")?;
        Ok(KubectlChild {
            command: command_line,
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }
}

impl KubectlOutput {
    /// Whether kubectl exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics, showing everything kubectl printed, unless it exited 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.success(), "expected success:\n{self}");
        self
    }

    /// Panics, showing everything kubectl printed, if it exited 0.
    #[track_caller]
    pub fn failed(self) -> Self {
        assert!(!self.success(), "expected failure:\n{self}");
        self
    }

    /// Standard output parsed as JSON; panics with the output otherwise.
    #[track_caller]
    pub fn json(&self) -> Value {
        match serde_json::from_str(&self.stdout) {
            Ok(value) => value,
            Err(error) => panic!("stdout is not JSON ({error}):\n{self}"),
        }
    }
}

impl fmt::Display for KubectlOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self
            .code
            .map_or_else(|| "killed by a signal".to_owned(), |code| code.to_string());
        write!(
            f,
            "$ {}\nexit code: {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.stdout, self.stderr
        )
    }
}

/// A running kubectl (e.g. `get -w`) whose output is read line by line.
#[derive(Debug)]
pub struct KubectlChild {
    command: String,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl KubectlChild {
    /// The next line kubectl prints, waiting at most `timeout`; an error
    /// (with kubectl's stderr) if it exits or stays silent.
    pub async fn next_line(&mut self, timeout: Duration) -> Result<String> {
        match tokio::time::timeout(timeout, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => {
                let stderr = self.stop().await;
                bail!("`{}` ended its output; stderr:\n{stderr}", self.command)
            }
            Ok(Err(error)) => Err(error).context("reading kubectl's output"),
            Err(_) => {
                let stderr = self.stop().await;
                bail!(
                    "`{}` printed no line within {timeout:?}; stderr:\n{stderr}",
                    self.command
                )
            }
        }
    }

    /// Waits at most `timeout` for kubectl to exit by itself and returns
    /// the rest of its output; kills it and fails if it does not.
    pub async fn finish(&mut self, timeout: Duration) -> Result<KubectlOutput> {
        let rest = async {
            let mut stdout = String::new();
            while let Some(line) = self.lines.next_line().await? {
                stdout.push_str(&line);
                stdout.push('\n');
            }
            let status = self.child.wait().await?;
            anyhow::Ok((stdout, status))
        };
        match tokio::time::timeout(timeout, rest).await {
            Ok(result) => {
                let (stdout, status) = result?;
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    pipe.read_to_string(&mut stderr).await?;
                }
                Ok(KubectlOutput {
                    command: self.command.clone(),
                    code: status.code(),
                    stdout,
                    stderr,
                })
            }
            Err(_) => {
                let stderr = self.stop().await;
                bail!(
                    "`{}` did not exit within {timeout:?}; stderr:\n{stderr}",
                    self.command
                )
            }
        }
    }

    /// Kills kubectl (by its PID) and returns what it wrote to stderr.
    pub async fn stop(&mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr).await;
        }
        stderr
    }
}
