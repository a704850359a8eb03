//! Network-namespace nodes for tests with real NetworkManager, built by
//! `hack/netns-node.sh` (the same script `hack/local-up.sh` uses).
//!
//! A [`NetnsLab`] is a hub namespace `nmst-<random>-hub` (bridge `hub0`,
//! [`HUB_ADDRESS`]) and nodes `nmst-<random>-node-<i>`, each with `eth0`
//! into the hub (address `10.77.0.<10+i>/24`, default route via the hub),
//! `eth1` and `eth2` (veth pairs whose peers stay in the node), and,
//! unless asked otherwise, its own D-Bus system bus and NetworkManager.
//! Everything is removed when the lab is dropped, also when a test panics.
//! Tests touch only these namespaces; they need root.

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::process::Command;

/// The hub's address: where nodes find the apiserver (and their default
/// gateway).
pub const HUB_ADDRESS: &str = "10.77.0.1";

/// The hub's prefix length.
const PREFIX_LEN: u8 = 24;

/// `hack/netns-node.sh` of this checkout.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/netns-node.sh")
}

/// A hub namespace and its namespace nodes.
#[derive(Debug)]
pub struct NetnsLab {
    /// Per-node state (NetworkManager's private directories, logs).
    dir: tempfile::TempDir,
    hub: String,
    nodes: Vec<NetnsNode>,
}

/// One namespace node.
#[derive(Clone, Debug)]
pub struct NetnsNode {
    /// The namespace name (`nmst-<random>-node-<i>`).
    pub name: String,
    /// Its eth0 address (without prefix length).
    pub address: String,
    /// Whether NetworkManager runs in it.
    pub network_manager: bool,
    dir: PathBuf,
}

impl NetnsLab {
    /// Creates the hub and `nodes` nodes, with NetworkManager in each when
    /// `network_manager` is set.
    pub async fn start(nodes: usize, network_manager: bool) -> Result<Self> {
        if !nix::unistd::Uid::effective().is_root() {
            bail!("network-namespace tests need root (ip netns add)");
        }
        let prefix = format!("nmst-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut lab = Self {
            dir: tempfile::Builder::new().prefix("nmst-lab").tempdir()?,
            hub: format!("{prefix}-hub"),
            nodes: Vec::new(),
        };
        // From here on, Drop cleans up whatever was created.
        let hub_address = format!("{HUB_ADDRESS}/{PREFIX_LEN}");
        lab.script_ok(&["hub-up", &lab.dir_str(), &lab.hub.clone(), &hub_address])
            .await?;
        for i in 1..=nodes {
            let node = NetnsNode {
                name: format!("{prefix}-node-{i}"),
                address: format!("10.77.0.{}", 10 + i),
                network_manager,
                dir: lab.dir.path().to_path_buf(),
            };
            let address = format!("{}/{PREFIX_LEN}", node.address);
            let dir = lab.dir_str();
            let mut args = vec!["up", &dir, &node.name, &lab.hub, &address, HUB_ADDRESS];
            if !network_manager {
                args.push("--no-nm");
            }
            let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
            lab.nodes.push(node);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            lab.script_ok(&args).await?;
        }
        Ok(lab)
    }

    /// Node `i` (1-based).
    pub fn node(&self, i: usize) -> &NetnsNode {
        &self.nodes[i - 1]
    }

    /// The hub namespace's name.
    pub fn hub(&self) -> &str {
        &self.hub
    }

    fn dir_str(&self) -> String {
        self.dir.path().display().to_string()
    }

    async fn script_ok(&self, args: &[&str]) -> Result<()> {
        let output = Command::new("bash")
            .arg(script())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await?;
        if !output.status.success() {
            bail!(
                "netns-node.sh {}: {}\n{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for NetnsLab {
    fn drop(&mut self) {
        // Synchronous on purpose: Drop runs while a panicking test unwinds,
        // possibly outside any runtime.
        let dir = self.dir_str();
        for node in &self.nodes {
            let _ = std::process::Command::new("bash")
                .arg(script())
                .args(["down", &dir, &node.name])
                .stdin(Stdio::null())
                .status();
        }
        let _ = std::process::Command::new("bash")
            .arg(script())
            .args(["hub-down", &dir, &self.hub])
            .stdin(Stdio::null())
            .status();
    }
}

impl NetnsNode {
    /// A command that runs `program` inside the node (NetworkManager's
    /// mount, network and UTS namespaces, its bus in
    /// `DBUS_SYSTEM_BUS_ADDRESS`).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(script())
            .args(["exec"])
            .arg(&self.dir)
            .arg(&self.name)
            .arg(program);
        command
    }

    /// Runs `program args` in the node; fails unless it exits 0.
    pub async fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        let output = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {program} in {}", self.name))?;
        if !output.status.success() {
            bail!(
                "{program} {} in {}: {}\n{}",
                args.join(" "),
                self.name,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(output)
    }

    /// `ip -j link show` in the node: the kernel's view, independent of
    /// NetworkManager and nmstate.
    pub async fn ip_links(&self) -> Result<Vec<Value>> {
        let output = self.run("ip", &["-j", "-d", "link", "show"]).await?;
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// The kernel's link named `name`, if any.
    pub async fn ip_link(&self, name: &str) -> Result<Option<Value>> {
        Ok(self
            .ip_links()
            .await?
            .into_iter()
            .find(|link| link["ifname"] == name))
    }

    /// `ip -4 -j addr show dev IFACE`: the IPv4 addresses on `iface`
    /// (`address/prefix`).
    pub async fn ipv4_addresses(&self, iface: &str) -> Result<Vec<String>> {
        let output = self
            .run("ip", &["-4", "-j", "addr", "show", "dev", iface])
            .await?;
        let links: Vec<Value> = serde_json::from_slice(&output.stdout)?;
        Ok(links
            .iter()
            .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
            .filter_map(|info| {
                Some(format!(
                    "{}/{}",
                    info["local"].as_str()?,
                    info["prefixlen"].as_u64()?
                ))
            })
            .collect())
    }

    /// Upstream's own `nmstatectl show --json` run in the node.
    pub async fn nmstatectl_show(&self) -> Result<Value> {
        let output = self.run("nmstatectl", &["show", "--json"]).await?;
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// NetworkManager's log of this node so far (for failure messages).
    pub fn network_manager_log(&self) -> String {
        std::fs::read_to_string(self.dir.join(&self.name).join("nm.log")).unwrap_or_default()
    }
}

/// `nmstate-backend-driver` running inside a node: one of the agent's real
/// backends, driven request by request (see that binary's docs).
#[derive(Debug)]
pub struct BackendDriver {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl BackendDriver {
    /// Starts `binary` (the driver) in `node` with `args`
    /// (`--backend nm|kernel`, ...).
    pub fn start(node: &NetnsNode, binary: &Path, args: &[&str]) -> Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let mut child = node
            .command(binary.to_str().context("driver path is not UTF-8")?)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting nmstate-backend-driver")?;
        let stdin = child.stdin.take().context("driver stdin")?;
        let stdout = child.stdout.take().context("driver stdout")?;
        Ok(Self {
            child,
            stdin,
            stdout: tokio::io::BufReader::new(stdout).lines(),
        })
    }

    /// Sends `request`; the backend's answer, or its error message as `Err`
    /// of the inner result.
    pub async fn call(&mut self, request: Value) -> Result<Result<Value, String>> {
        use tokio::io::AsyncWriteExt;
        let mut line = request.to_string().into_bytes();
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        let answer = self
            .stdout
            .next_line()
            .await?
            .context("nmstate-backend-driver exited")?;
        let answer: Value = serde_json::from_str(&answer)?;
        if let Some(error) = answer.get("error") {
            return Ok(Err(error.as_str().unwrap_or_default().to_owned()));
        }
        Ok(Ok(answer["ok"].clone()))
    }

    /// Like [`Self::call`], failing on a backend error.
    pub async fn call_ok(&mut self, request: Value) -> Result<Value> {
        match self.call(request.clone()).await? {
            Ok(value) => Ok(value),
            Err(message) => bail!("{}: {message}", request["op"]),
        }
    }

    /// Kills the driver with SIGKILL (an agent dying mid-apply) and reaps it.
    pub async fn kill(mut self) -> Result<()> {
        // `netns-node.sh exec` execs nsenter, which execs the driver: the
        // child's PID is the driver's.
        self.child.kill().await?;
        Ok(())
    }
}
