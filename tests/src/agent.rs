//! Runs the real `nmstate-agent` binary as a child process for one node,
//! with its log in a file, and stops it by its PID.
//!
//! ```no_run
//! # async fn example(kubeconfig: &std::path::Path) -> anyhow::Result<()> {
//! use nmstate_e2e::agent::AgentProcess;
//! let mut agent = AgentProcess::start("node-1", kubeconfig, &["--backend", "hollow"])?;
//! agent.terminate()?;
//! println!("{}", agent.logs());
//! # Ok(()) }
//! ```

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{sys::signal, unistd::Pid};

use crate::apiserver::{free_port, workspace_binary};

/// How long the agent may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start the agent, beyond its flags.
#[derive(Clone, Debug, Default)]
pub struct AgentOptions {
    /// The binary; by default the debug build next to the tests.
    pub binary: Option<PathBuf>,
    /// Run it inside this network namespace (`ip netns exec`); its health
    /// address is then that namespace's loopback.
    pub netns: Option<String>,
    /// Extra environment (e.g. `DBUS_SYSTEM_BUS_ADDRESS` of the
    /// namespace's own bus).
    pub env: Vec<(String, String)>,
    /// A command that runs the agent (program and arguments before the
    /// agent binary), which must exec it so that the PID stays the
    /// agent's: e.g. `netns-node.sh exec DIR NODE` for a namespace node
    /// with NetworkManager (see [`crate::netns::NetnsNode::command`]).
    /// Takes the place of `netns`.
    pub wrapper: Vec<std::ffi::OsString>,
}

/// A running `nmstate-agent`.
#[derive(Debug)]
pub struct AgentProcess {
    child: Child,
    node: String,
    log_file: PathBuf,
    health_address: SocketAddr,
    _log_dir: tempfile::TempDir,
}

impl AgentProcess {
    /// Starts the agent binary from target/ for `node` with `kubeconfig`,
    /// a health port on loopback, and `args` (backend flags and more).
    pub fn start(node: &str, kubeconfig: &Path, args: &[&str]) -> Result<Self> {
        Self::start_with(node, kubeconfig, args, &AgentOptions::default())
    }

    /// As [`Self::start`], with another binary (a release build).
    pub fn start_binary(
        binary: &Path,
        node: &str,
        kubeconfig: &Path,
        args: &[&str],
    ) -> Result<Self> {
        let options = AgentOptions {
            binary: Some(binary.to_path_buf()),
            ..AgentOptions::default()
        };
        Self::start_with(node, kubeconfig, args, &options)
    }

    /// As [`Self::start`], with `options` (binary, network namespace,
    /// environment).
    pub fn start_with(
        node: &str,
        kubeconfig: &Path,
        args: &[&str],
        options: &AgentOptions,
    ) -> Result<Self> {
        let binary = match &options.binary {
            Some(binary) => binary.clone(),
            None => workspace_binary("nmstate-agent")?,
        };
        let log_dir = tempfile::tempdir()?;
        let log_file = log_dir.path().join(format!("{node}.log"));
        let log = std::fs::File::create(&log_file)
            .with_context(|| format!("creating {}", log_file.display()))?;
        let health_address: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        // `ip netns exec` execs the agent, so the PID stays the agent's.
        let mut command = match &options.netns {
            _ if !options.wrapper.is_empty() => {
                let mut command = Command::new(&options.wrapper[0]);
                command.args(&options.wrapper[1..]).arg(&binary);
                command
            }
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        let child = command
            .args(["--node-name", node])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--health-address", &health_address.to_string()])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("NMSTATE_E2E_AGENT_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .envs(options.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        Ok(Self {
            child,
            node: node.to_owned(),
            log_file,
            health_address,
            _log_dir: log_dir,
        })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node it runs for.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Where `/healthz` and `/metrics` are served (plain HTTP).
    pub fn health_address(&self) -> SocketAddr {
        self.health_address
    }

    /// The log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Whether it exited, and how.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        self.signal(signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("nmstate-agent did not exit within {STOP_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it with SIGKILL (no clean-up by the agent) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            self.signal(signal::Signal::SIGKILL)?;
            self.child.wait()?;
        }
        Ok(())
    }

    /// Stops it with SIGSTOP (a node that hangs: no heartbeat, no
    /// progress, connections left open).
    pub fn pause(&self) -> Result<()> {
        self.signal(signal::Signal::SIGSTOP)
    }

    /// Lets a paused agent go on with SIGCONT.
    pub fn resume(&self) -> Result<()> {
        self.signal(signal::Signal::SIGCONT)
    }

    fn signal(&self, signal: signal::Signal) -> Result<()> {
        let pid = Pid::from_raw(i32::try_from(self.child.id())?);
        signal::kill(pid, signal)?;
        Ok(())
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // A paused agent must not be left stopped should SIGKILL be
            // delayed; harmless otherwise.
            let _ = self.resume();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
