//! The fault-injection suite's harness (run by `tests/tests/e2e/faults.rs`): a
//! cluster of real parts to break, watches that outlive the breakage, and
//! the invariants checked on every event.
//!
//! - [`Control`]: a 3-member etcd ([`crate::etcd::EtcdCluster`]), two
//!   `nmstate-apiserver` replicas on it (one leads the controller, by an
//!   etcd lease) sharing one CA, and a [`balancer::Balancer`] in front of
//!   them, reachable from host loopback and from the namespace nodes' hub.
//!   A replica can be killed (SIGKILL) and restarted on its data directory.
//! - [`watch`]: list-then-watch that reconnects from the last
//!   `resourceVersion` after every end.
//! - [`order`]: the two watches merged by revision.
//! - [`invariants`]: the checker.

pub mod balancer;
pub mod invariants;
pub mod order;
pub mod watch;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use nmstate_apiserver::kubeconfig::{IssueRequest, Kubeconfig, issue};

use crate::{
    apiserver::{ApiserverProcess, StartOptions},
    etcd::EtcdCluster,
    https::{ClientIdentity, HttpsClient},
};

use self::balancer::Balancer;

/// One apiserver replica: its data directory outlives its processes.
#[derive(Debug)]
struct Replica {
    dir: tempfile::TempDir,
    process: Option<ApiserverProcess>,
    lives: u32,
}

/// The control plane: etcd members, apiserver replicas, the balancer.
#[derive(Debug)]
pub struct Control {
    /// The etcd members.
    pub etcd: EtcdCluster,
    replicas: Vec<Replica>,
    flags: Vec<String>,
    balancer: Balancer,
    logs: PathBuf,
    binary: Option<PathBuf>,
}

impl Control {
    /// Starts `etcd_members` etcd members and `replicas` replicas with
    /// `flags` (beyond the storage ones), the balancer listening also on
    /// `hub` (`/run/netns/NAME`, address) when given; logs go to files in
    /// `logs`.
    pub async fn start(
        etcd_members: usize,
        replicas: usize,
        flags: &[&str],
        hub: Option<(&Path, &str)>,
        logs: &Path,
    ) -> Result<Self> {
        Self::start_binary(None, etcd_members, replicas, flags, hub, logs).await
    }

    /// As [`Self::start`], with the `nmstate-apiserver` at `binary` (a
    /// release build) instead of the one next to the tests.
    pub async fn start_binary(
        binary: Option<&Path>,
        etcd_members: usize,
        replicas: usize,
        flags: &[&str],
        hub: Option<(&Path, &str)>,
        logs: &Path,
    ) -> Result<Self> {
        let etcd = EtcdCluster::start(etcd_members).await?;
        let mut flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        flags.extend(["--etcd-servers".to_owned(), etcd.servers_flag()]);
        let balancer = Balancer::start(hub).await?;
        let mut control = Self {
            etcd,
            replicas: Vec::new(),
            flags,
            balancer,
            logs: logs.to_path_buf(),
            binary: binary.map(Path::to_path_buf),
        };
        for i in 0..replicas {
            let dir = tempfile::Builder::new().prefix("nmst-replica").tempdir()?;
            if i > 0 {
                // One CA for all replicas, as one Deployment's Secret: every
                // client trusts and is trusted by each of them.
                copy_dir(
                    &control.replicas[0].dir.path().join("pki"),
                    &dir.path().join("pki"),
                )?;
            }
            control.replicas.push(Replica {
                dir,
                process: None,
                lives: 0,
            });
            control.restart(i).await?;
        }
        Ok(control)
    }

    /// Starts replica `i` (again) on its data directory.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        let replica = &mut self.replicas[i];
        replica.lives += 1;
        let options = StartOptions {
            log_file: Some(
                self.logs
                    .join(format!("apiserver-{i}.{}.log", replica.lives)),
            ),
            binary: self.binary.clone(),
            ..StartOptions::default()
        };
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        let process = ApiserverProcess::start_in_with(replica.dir.path(), &flags, &options).await?;
        replica.process = Some(process);
        self.update_balancer();
        Ok(())
    }

    /// Kills replica `i` with SIGKILL (no drain, no resignation: its lease
    /// runs out by itself).
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let process = self.replicas[i]
            .process
            .take()
            .context("the replica is not running")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(process.pid())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)?;
        // Dropping it reaps it.
        drop(process);
        self.update_balancer();
        Ok(())
    }

    fn update_balancer(&self) {
        let backends: Vec<SocketAddr> = self
            .replicas
            .iter()
            .filter_map(|r| r.process.as_ref().map(ApiserverProcess::address))
            .collect();
        self.balancer.set_backends(backends);
    }

    /// The replica that leads the controller right now (its
    /// `nmstate_controller_leader` gauge is 1), asked directly.
    pub async fn leader(&self) -> Option<usize> {
        for (i, replica) in self.replicas.iter().enumerate() {
            let Some(process) = &replica.process else {
                continue;
            };
            let Ok(client) = process.admin_client() else {
                continue;
            };
            let Ok(Ok(response)) =
                tokio::time::timeout(Duration::from_secs(5), client.get("/metrics")).await
            else {
                continue;
            };
            if response
                .body
                .lines()
                .any(|line| line.trim() == "nmstate_controller_leader 1")
            {
                return Some(i);
            }
        }
        None
    }

    /// The running replicas' processes.
    pub fn replicas(&self) -> impl Iterator<Item = &ApiserverProcess> {
        self.replicas.iter().filter_map(|r| r.process.as_ref())
    }

    /// The data directory whose CA every replica shares (it issues the
    /// clients' certificates).
    pub fn ca_dir(&self) -> &Path {
        self.replicas[0].dir.path()
    }

    /// The balancer.
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// An admin client that goes through the balancer.
    pub fn admin(&self) -> Result<HttpsClient> {
        let path = self.replicas[0].dir.path().join("admin.kubeconfig");
        let credentials = Kubeconfig::read(&path)?
            .credentials()
            .map_err(|message| anyhow::anyhow!("{}: {message}", path.display()))?;
        let (Some(ca), Some(cert_pem), Some(key_pem)) = (
            credentials.ca_pem,
            credentials.client_cert_pem,
            credentials.client_key_pem,
        ) else {
            bail!("{}: no inline CA or client certificate", path.display());
        };
        let identity = ClientIdentity { cert_pem, key_pem };
        HttpsClient::with_identity(self.balancer.loopback(), &ca, "localhost", Some(&identity))
    }

    /// Writes a kubeconfig for node `node` (user `system:node:NODE` in
    /// `system:nodes`) that reaches the replicas at `server`.
    pub fn node_kubeconfig(&self, node: &str, server: SocketAddr, out: &Path) -> Result<()> {
        issue(&IssueRequest {
            data_dir: self.replicas[0].dir.path().to_path_buf(),
            user: format!("system:node:{node}"),
            groups: vec!["system:nodes".to_owned()],
            out: out.to_path_buf(),
            server: Some(format!("https://{server}")),
        })?;
        Ok(())
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
