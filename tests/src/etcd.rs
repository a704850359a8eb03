//! A real etcd for tests: [`EtcdProcess::start`] runs etcd ([`binary`]: the
//! version the deploy manifests ship, built once by `hack/build-etcd.sh`) on
//! free loopback ports (client and peer) in a temporary data directory and
//! waits until it answers; [`EtcdCluster::start`] runs several members
//! that form one cluster (for tests that kill a member).
//!
//! It owns the process and kills it, by its own PID, when dropped. It must
//! not skip when etcd is missing: tests that need etcd fail, saying how to
//! install it. Auto-compaction stays off, so that only the tests compact.

use std::{
    fs::File,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{sys::signal, unistd::Pid};
use nmstate_apiserver::storage::etcd::EtcdConfig;

/// The etcd binary `hack/build-etcd.sh` built (once per machine, into a
/// cache outside the checkout; once per process, the script is asked).
pub fn binary() -> Result<PathBuf> {
    static BINARY: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            crate::kube_apiserver::cached_build(
                "build-etcd.sh",
                "nothing that needs a real etcd can run",
            )
            .map_err(|error| format!("{error:#}"))
        })
        .clone()
        .map_err(|error| anyhow::anyhow!(error))
}

/// How long etcd may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or stopped, between [`stop`](Self::stop) and
/// [`restart`](Self::restart)) etcd.
#[derive(Debug)]
pub struct EtcdProcess {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    tls: Option<TlsFiles>,
    dir: tempfile::TempDir,
    /// The member name and `--initial-cluster` of a cluster member.
    member: Option<(String, String)>,
}

/// Certificates for an etcd that serves TLS and requires client
/// certificates, all signed by one test CA.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA (PEM).
    pub ca: PathBuf,
    /// etcd's serving certificate, for 127.0.0.1 (PEM).
    pub server_cert: PathBuf,
    /// Its key (PEM).
    pub server_key: PathBuf,
    /// A client certificate etcd accepts (PEM).
    pub client_cert: PathBuf,
    /// Its key (PEM).
    pub client_key: PathBuf,
}

impl EtcdProcess {
    /// Starts a plain-HTTP etcd, panicking with the reason (and how to
    /// install etcd) if it cannot.
    pub async fn start() -> EtcdProcess {
        match Self::try_start(false).await {
            Ok(etcd) => etcd,
            Err(error) => panic!("{error:#}"),
        }
    }

    /// Starts an etcd that serves HTTPS and requires client certificates.
    pub async fn start_tls() -> EtcdProcess {
        match Self::try_start(true).await {
            Ok(etcd) => etcd,
            Err(error) => panic!("{error:#}"),
        }
    }

    /// Starts etcd, with TLS if asked. A port taken between choosing it and
    /// etcd binding it (by a test running in parallel) costs a retry on
    /// other ports.
    pub async fn try_start(tls: bool) -> Result<EtcdProcess> {
        let mut attempt = 1;
        loop {
            match Self::start_once(tls).await {
                Ok(etcd) => return Ok(etcd),
                Err(error)
                    if attempt < 3 && format!("{error:#}").contains("address already in use") =>
                {
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn start_once(tls: bool) -> Result<EtcdProcess> {
        let dir = tempfile::tempdir().context("creating etcd's temporary directory")?;
        let tls = if tls {
            Some(TlsFiles::generate(dir.path())?)
        } else {
            None
        };
        let (client_port, peer_port) = free_ports()?;
        let mut etcd = EtcdProcess {
            child: None,
            client_port,
            peer_port,
            tls,
            dir,
            member: None,
        };
        etcd.spawn_and_wait().await?;
        Ok(etcd)
    }

    /// The client URL.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The certificates, for an etcd started with [`start_tls`](Self::start_tls).
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// A storage configuration for this etcd (with the client certificate
    /// when it serves TLS).
    pub fn config(&self) -> EtcdConfig {
        EtcdConfig {
            endpoints: vec![self.endpoint()],
            ca_file: self.tls.as_ref().map(|tls| tls.ca.clone()),
            cert_file: self.tls.as_ref().map(|tls| tls.client_cert.clone()),
            key_file: self.tls.as_ref().map(|tls| tls.client_key.clone()),
        }
    }

    /// The process ID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops etcd with SIGTERM (SIGKILL after a while), keeping its data
    /// directory and ports for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        self.signal_and_reap(signal::Signal::SIGTERM);
    }

    /// Kills etcd with SIGKILL, keeping its data directory and ports.
    pub fn kill(&mut self) {
        self.signal_and_reap(signal::Signal::SIGKILL);
    }

    /// Starts etcd again on the same ports and data directory.
    pub async fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn_and_wait().await
    }

    /// The tail of etcd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn signal_and_reap(&mut self, sig: signal::Signal) {
        if let Some(child) = self.child.take() {
            signal_and_reap(child, sig, STOP_TIMEOUT);
        }
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        self.spawn()?;
        self.wait_until_ready().await
    }

    fn spawn(&mut self) -> Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("creating etcd's log file")?;
        let binary = binary()?;
        let child = self
            .command(&binary)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot run {} ({error}); it is required for these tests: \
                     run hack/setup-deps.sh (hack/build-etcd.sh builds it)",
                    binary.display()
                )
            })?;
        self.child = Some(child);
        Ok(())
    }

    fn command(&self, binary: &Path) -> Command {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let (name, initial_cluster) = self
            .member
            .clone()
            .unwrap_or_else(|| ("test".to_owned(), format!("test={peer}")));
        let mut command = Command::new(binary);
        command
            .arg(format!("--name={name}"))
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg("--initial-cluster-state=new")
            .arg("--auto-compaction-retention=0")
            .args(["--logger=zap", "--log-outputs=stderr", "--log-level=warn"]);
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cert-file={}", tls.server_cert.display()))
                .arg(format!("--key-file={}", tls.server_key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth=true");
        }
        command
    }

    /// Polls with a real client until etcd answers a linearizable read.
    async fn wait_until_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_error = String::new();
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                bail!("etcd exited with {status} at start:\n{}", self.log_tail());
            }
            let config = self.config();
            let connect = nmstate_apiserver::storage::etcd::EtcdStore::connect(&config);
            match tokio::time::timeout(Duration::from_secs(5), connect).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(error)) => last_error = error.to_string(),
                Err(_) => last_error = "connect timed out".into(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "etcd did not answer within {START_TIMEOUT:?}: {last_error}\n{}",
            self.log_tail()
        )
    }
}

/// Sends `sig` to `child` (our own, by its PID; it may have exited
/// already) and waits for it to exit, killing it after `timeout`.
pub(crate) fn signal_and_reap(mut child: Child, sig: signal::Signal, timeout: Duration) {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let _ = signal::kill(pid, sig);
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl TlsFiles {
    /// Writes a CA, a serving certificate for 127.0.0.1 and a client
    /// certificate into `dir`.
    fn generate(dir: &Path) -> Result<TlsFiles> {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |names: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>| -> Result<_> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(names)?;
            params.extended_key_usages = usages;
            let cert = params.signed_by(&key, &issuer)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?;
        let (client_cert, client_key) = leaf(
            vec!["client".into()],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )?;

        let write = |name: &str, pem: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        Ok(TlsFiles {
            ca: write("ca.pem", &ca_cert.pem())?,
            server_cert: write("server.pem", &server_cert)?,
            server_key: write("server-key.pem", &server_key)?,
            client_cert: write("client.pem", &client_cert)?,
            client_key: write("client-key.pem", &client_key)?,
        })
    }
}

/// A cluster of etcd members on loopback, each an [`EtcdProcess`] (kill
/// and restart one with [`EtcdProcess::kill`] and [`EtcdProcess::restart`];
/// a restarted member rejoins from its data directory).
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdProcess>,
}

impl EtcdCluster {
    /// Starts `size` plain-HTTP members and waits until each answers (a
    /// member answers only once the cluster has a quorum, so all start
    /// before any is waited for).
    pub async fn start(size: usize) -> Result<EtcdCluster> {
        let mut members = Vec::with_capacity(size);
        let mut peers = Vec::with_capacity(size);
        // All ports held open together, so that they differ.
        let listeners = (0..2 * size)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()
            .context("finding free ports")?;
        let ports = listeners
            .iter()
            .map(|listener| Ok(listener.local_addr()?.port()))
            .collect::<Result<Vec<u16>>>()?;
        drop(listeners);
        for i in 0..size {
            peers.push(format!("member-{i}=http://127.0.0.1:{}", ports[2 * i + 1]));
        }
        let initial_cluster = peers.join(",");
        for i in 0..size {
            members.push(EtcdProcess {
                child: None,
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                tls: None,
                dir: tempfile::tempdir().context("creating etcd's temporary directory")?,
                member: Some((format!("member-{i}"), initial_cluster.clone())),
            });
        }
        let mut cluster = EtcdCluster { members };
        for member in &mut cluster.members {
            member.spawn()?;
        }
        for member in &mut cluster.members {
            member.wait_until_ready().await?;
        }
        Ok(cluster)
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdProcess::endpoint).collect()
    }

    /// `--etcd-servers` for the apiserver: every member, comma separated.
    pub fn servers_flag(&self) -> String {
        self.endpoints().join(",")
    }

    /// Member `i` (0-based).
    pub fn member(&mut self, i: usize) -> &mut EtcdProcess {
        &mut self.members[i]
    }

    /// The number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The index of the member that leads the raft group right now, as the
    /// running members report it.
    pub async fn leader(&self) -> Result<usize> {
        for member in self.members.iter().filter(|m| m.child.is_some()) {
            let connect = etcd_client::Client::connect([member.endpoint()], None);
            let Ok(Ok(mut client)) = tokio::time::timeout(Duration::from_secs(5), connect).await
            else {
                continue;
            };
            let Ok(Ok(status)) =
                tokio::time::timeout(Duration::from_secs(5), client.status()).await
            else {
                continue;
            };
            let leader = status.leader();
            let Ok(Ok(list)) =
                tokio::time::timeout(Duration::from_secs(5), client.member_list()).await
            else {
                continue;
            };
            let name = list
                .members()
                .iter()
                .find(|m| m.id() == leader)
                .map(|m| m.name().to_owned());
            if let Some(index) = name.and_then(|name| {
                self.members
                    .iter()
                    .position(|m| m.member.as_ref().is_some_and(|(n, _)| *n == name))
            }) {
                return Ok(index);
            }
        }
        bail!("no etcd member names a leader")
    }
}

/// Two distinct loopback ports nothing listens on right now (both held
/// open while choosing, so they differ). etcd binds them a moment later.
fn free_ports() -> Result<(u16, u16)> {
    let client = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    let peer = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok((client.local_addr()?.port(), peer.local_addr()?.port()))
}
