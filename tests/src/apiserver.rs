//! Runs the real `nmstate-apiserver` binary as a child process on a free
//! loopback port, with its own data directory, and stops it by its PID.
//!
//! Without `--tls-cert-file`, `--client-ca-file` or
//! `--authentication-kubeconfig` (whose cluster may supply the client CA),
//! and without a pod environment ([`StartOptions::env`]), the server runs
//! standalone: it writes `<data-dir>/admin.kubeconfig`, and
//! [`ApiserverProcess::client`] authenticates with it. The pod environment
//! of the test process itself is never passed on, so that tests run the
//! same inside a pod.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{sys::signal, unistd::Pid};
use nmstate_apiserver::kubeconfig::Kubeconfig;

use crate::https::HttpsClient;

/// How long the server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The path of a binary built from this workspace, next to the test
/// executable's `deps/` directory (`cargo test --workspace` builds it because
/// the `nmstate-apiserver` package has integration tests).
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no profile directory")?;
    let path = profile_dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not built; run `cargo build -p {name}` or `cargo test --workspace`",
            path.display()
        );
    }
    Ok(path)
}

/// A port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How to start the server, beyond what tests need.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// The binary to run; by default the one next to the test executable
    /// (see [`workspace_binary`]).
    pub binary: Option<PathBuf>,
    /// A file for the server's log (stderr and stdout); by default the log
    /// goes where the caller's goes.
    pub log_file: Option<PathBuf>,
    /// Environment variables for the server, e.g. a pod's
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
    pub env: Vec<(String, String)>,
}

/// The variables that make the server use in-cluster credentials.
const POD_ENVIRONMENT: [&str; 3] = [
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "NMSTATE_SERVICEACCOUNT_DIR",
];

/// A running `nmstate-apiserver`.
#[derive(Debug)]
pub struct ApiserverProcess {
    child: Child,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    address: SocketAddr,
    /// Whether the server authenticates clients with its local CA and
    /// writes an admin kubeconfig.
    standalone: bool,
}

impl ApiserverProcess {
    /// Starts the server with a fresh data directory and `extra` flags, and
    /// waits until it answers `/livez`.
    pub async fn start(extra: &[&str]) -> Result<Self> {
        Self::start_with(extra, &StartOptions::default()).await
    }

    /// Starts the server with a fresh data directory, `extra` flags and
    /// `options`, and waits until it answers `/livez`.
    pub async fn start_with(extra: &[&str], options: &StartOptions) -> Result<Self> {
        let temp = tempfile::tempdir()?;
        let data_dir = temp.path().to_path_buf();
        let mut server = Self::spawn(&data_dir, extra, options).await?;
        server._temp = Some(temp);
        Ok(server)
    }

    /// Starts the server on an existing data directory (for restarts).
    pub async fn start_in(data_dir: &Path, extra: &[&str]) -> Result<Self> {
        Self::spawn(data_dir, extra, &StartOptions::default()).await
    }

    /// Starts the server on an existing data directory with `options` (a
    /// replica restarted after a kill, with its log in a file).
    pub async fn start_in_with(
        data_dir: &Path,
        extra: &[&str],
        options: &StartOptions,
    ) -> Result<Self> {
        Self::spawn(data_dir, extra, options).await
    }

    async fn spawn(data_dir: &Path, extra: &[&str], options: &StartOptions) -> Result<Self> {
        let port = free_port()?;
        let address: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let binary = match &options.binary {
            Some(binary) => binary.clone(),
            None => workspace_binary("nmstate-apiserver")?,
        };
        let mut command = Command::new(&binary);
        if let Some(log_file) = &options.log_file {
            let log = std::fs::File::create(log_file)
                .with_context(|| format!("creating {}", log_file.display()))?;
            command.stdout(log.try_clone()?).stderr(log);
        }
        for variable in POD_ENVIRONMENT {
            command.env_remove(variable);
        }
        command.envs(options.env.iter().map(|(k, v)| (k, v)));
        let child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &port.to_string(),
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        let standalone = !extra.iter().any(|arg| {
            [
                "--tls-cert-file",
                "--client-ca-file",
                "--authentication-kubeconfig",
            ]
            .iter()
            .any(|flag| arg.starts_with(flag))
        }) && !options
            .env
            .iter()
            .any(|(name, _)| name == "KUBERNETES_SERVICE_HOST");
        let mut server = Self {
            child,
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            address,
            standalone,
        };
        server.wait_until_serving().await?;
        Ok(server)
    }

    async fn wait_until_serving(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("nmstate-apiserver exited during start-up: {status}");
            }
            if self.data_dir.join("pki/ca.crt").exists()
                && let Ok(response) = self.anonymous_client()?.get("/livez").await
                && response.status.is_success()
                && (!self.standalone || self.admin_kubeconfig_is_current())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nmstate-apiserver did not answer /livez within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The HTTPS address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether the admin kubeconfig exists and names this server's port
    /// (the server writes it just after binding; after a restart the file
    /// of the previous life may still be there for a moment).
    fn admin_kubeconfig_is_current(&self) -> bool {
        Kubeconfig::read(&self.admin_kubeconfig())
            .ok()
            .and_then(|kubeconfig| kubeconfig.credentials().ok())
            .is_some_and(|credentials| credentials.server == format!("https://{}", self.address))
    }

    /// `<data-dir>/admin.kubeconfig`, written by a standalone server.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.data_dir.join("admin.kubeconfig")
    }

    /// The client tests normally use: authenticated as the admin through
    /// the admin kubeconfig when the server is standalone, otherwise
    /// [`Self::anonymous_client`].
    pub fn client(&self) -> Result<HttpsClient> {
        if self.standalone {
            self.admin_client()
        } else {
            self.anonymous_client()
        }
    }

    /// A client with the admin kubeconfig's credentials (user `admin` in
    /// `system:masters`).
    pub fn admin_client(&self) -> Result<HttpsClient> {
        HttpsClient::from_kubeconfig(&self.admin_kubeconfig())
    }

    /// A client that trusts the server's generated CA and presents no
    /// certificate (as `curl --cacert`): it reaches only the health
    /// endpoints.
    pub fn anonymous_client(&self) -> Result<HttpsClient> {
        HttpsClient::new(self.address, &self.data_dir.join("pki/ca.crt"), "localhost")
    }

    /// Runs `nmstate-apiserver kubeconfig` on this server's data directory
    /// and returns the kubeconfig written for `user` in `groups`.
    pub fn issue_kubeconfig(&self, user: &str, groups: &[&str]) -> Result<PathBuf> {
        let file_name: String = user
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let out = self.data_dir.join(format!("{file_name}.kubeconfig"));
        let mut command = Command::new(workspace_binary("nmstate-apiserver")?);
        command
            .arg("kubeconfig")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--user", user])
            .arg("--out")
            .arg(&out);
        for group in groups {
            command.args(["--group", group]);
        }
        let output = command
            .output()
            .context("running nmstate-apiserver kubeconfig")?;
        if !output.status.success() {
            bail!(
                "nmstate-apiserver kubeconfig failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(out)
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        let pid = Pid::from_raw(i32::try_from(self.child.id())?);
        signal::kill(pid, signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("nmstate-apiserver did not exit within {START_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ApiserverProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
