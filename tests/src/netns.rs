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

    /// The command that runs a program inside the node, as
    /// [`Self::command`] does (program and arguments before the program):
    /// for [`crate::agent::AgentOptions::wrapper`]. It execs the program,
    /// so the PID stays the program's.
    pub fn wrapper(&self) -> Vec<std::ffi::OsString> {
        vec![
            "bash".into(),
            script().into(),
            "exec".into(),
            self.dir.clone().into(),
            self.name.clone().into(),
        ]
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
        self.addresses("-4", iface).await
    }

    /// `ip FAMILY -j addr show dev IFACE` (`-4` or `-6`): the addresses on
    /// `iface` (`address/prefix`), link-local ones left out.
    pub async fn addresses(&self, family: &str, iface: &str) -> Result<Vec<String>> {
        let output = self
            .run("ip", &[family, "-j", "addr", "show", "dev", iface])
            .await?;
        let links: Vec<Value> = serde_json::from_slice(&output.stdout)?;
        Ok(links
            .iter()
            .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
            .filter(|info| info["scope"] != "link")
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

/// A cluster started by `hack/local-up.sh --backend nm --no-build` (the
/// apiserver in a hub namespace, namespace nodes with NetworkManager and
/// the real agent; with [`LocalUp::start_kube`] behind a real
/// kube-apiserver), stopped with SIGTERM when dropped;
/// `hack/local-down.sh` then runs once more as a backstop.
#[derive(Debug)]
pub struct LocalUp {
    child: std::process::Child,
    state_dir: tempfile::TempDir,
    kube: bool,
}

pub use crate::kube_apiserver::binary as kube_apiserver;

impl LocalUp {
    /// Starts `nodes` nodes; `agent_args` go to every agent. The binaries
    /// must be built (`cargo build -p nmstate-apiserver -p nmstate-agent`).
    pub async fn start(nodes: usize, agent_args: &[&str]) -> Result<Self> {
        Self::start_with(nodes, agent_args, None).await
    }

    /// Starts `nodes` nodes behind a real kube-apiserver (`local-up.sh
    /// --kube`), building kube-apiserver first if it is not cached.
    pub async fn start_kube(nodes: usize, agent_args: &[&str]) -> Result<Self> {
        let kube_apiserver = tokio::task::spawn_blocking(kube_apiserver).await??;
        Self::start_with(nodes, agent_args, Some(&kube_apiserver)).await
    }

    async fn start_with(
        nodes: usize,
        agent_args: &[&str],
        kube_apiserver: Option<&Path>,
    ) -> Result<Self> {
        let state_dir = tempfile::Builder::new().prefix("nmst-local-up").tempdir()?;
        let log = std::fs::File::create(state_dir.path().join("local-up.log"))?;
        let mut command = std::process::Command::new("bash");
        command
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/local-up.sh"))
            .args([
                "--nodes",
                &nodes.to_string(),
                "--backend",
                "nm",
                "--no-build",
            ])
            .arg("--state-dir")
            .arg(state_dir.path());
        if let Some(kube_apiserver) = kube_apiserver {
            command.arg("--kube").env("KUBE_APISERVER", kube_apiserver);
        }
        for arg in agent_args {
            command.arg(format!("--agent-arg={arg}"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting hack/local-up.sh")?;
        let mut cluster = Self {
            child,
            state_dir,
            kube: kube_apiserver.is_some(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            if cluster.log().contains("export KUBECONFIG=") {
                return Ok(cluster);
            }
            if let Some(status) = cluster.child.try_wait()? {
                bail!("hack/local-up.sh exited: {status}\n{}", cluster.log());
            }
            if std::time::Instant::now() > deadline {
                bail!("hack/local-up.sh did not come up:\n{}", cluster.log());
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// `DIR/admin.kubeconfig` (through the loopback forward).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.state_dir.path().join("admin.kubeconfig")
    }

    /// local-up's state directory.
    pub fn state_dir(&self) -> &Path {
        self.state_dir.path()
    }

    /// A file of the cluster's PKI (`--kube` only): `ca.crt` (what
    /// kube-apiserver's serving certificate chains to), `admin.crt`,
    /// `admin.key` (a `system:masters` client), ...
    pub fn pki(&self, file: &str) -> PathBuf {
        self.state_dir.path().join("pki").join(file)
    }

    /// The hub namespace, where the servers listen.
    pub fn hub(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.state_dir.path().join("hub"))?
            .trim()
            .to_owned())
    }

    /// The URL the admin kubeconfig names (through the loopback forward).
    pub fn server_url(&self) -> Result<String> {
        let kubeconfig = std::fs::read_to_string(self.admin_kubeconfig())?;
        kubeconfig
            .lines()
            .find_map(|line| line.trim().strip_prefix("server: "))
            .map(str::to_owned)
            .context("no server in the admin kubeconfig")
    }

    /// Node `i`'s agent kubeconfig (with `--kube` its bound
    /// service-account token), rewritten to reach the API from the host
    /// through the forward: `DIR/kubeconfigs/node-i.host.kubeconfig`.
    pub fn node_kubeconfig_on_host(&self, i: usize) -> Result<PathBuf> {
        let dir = self.state_dir.path().join("kubeconfigs");
        let text = std::fs::read_to_string(dir.join(format!("node-{i}.kubeconfig")))?;
        let server = self.server_url()?;
        let text: Vec<String> = text
            .lines()
            .map(|line| match line.trim_start().strip_prefix("server: ") {
                Some(_) => format!("    server: {server}"),
                None => line.to_owned(),
            })
            .collect();
        let path = dir.join(format!("node-{i}.host.kubeconfig"));
        std::fs::write(&path, text.join("\n") + "\n")?;
        Ok(path)
    }

    /// local-up's own output.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.path().join("local-up.log")).unwrap_or_default()
    }

    /// The log of a process local-up started (`apiserver`, `node-1`, ...).
    pub fn process_log(&self, name: &str) -> String {
        std::fs::read_to_string(
            self.state_dir
                .path()
                .join("logs")
                .join(format!("{name}.log")),
        )
        .unwrap_or_default()
    }

    /// Node `i` (1-based) as a [`NetnsNode`], to run commands in.
    pub fn node(&self, i: usize) -> Result<NetnsNode> {
        let nodes = std::fs::read_to_string(self.state_dir.path().join("nodes"))?;
        let name = nodes
            .lines()
            .nth(i - 1)
            .with_context(|| format!("local-up has no node {i}"))?
            .to_owned();
        Ok(NetnsNode {
            name,
            address: format!("10.77.0.{}", 10 + i),
            network_manager: true,
            dir: self.state_dir.path().join("netns"),
        })
    }

    /// The PID of node `i`'s agent.
    pub fn agent_pid(&self, i: usize) -> Result<i32> {
        let record =
            std::fs::read_to_string(self.state_dir.path().join(format!("pids/agent-node-{i}")))?;
        Ok(record
            .split_whitespace()
            .next()
            .context("empty PID record")?
            .parse()?)
    }

    /// Starts node `i`'s agent again (after a test killed it), as local-up
    /// does, with `agent_args`; it is recorded for cleanup like the first.
    pub fn restart_agent(&self, i: usize, agent_args: &[&str]) -> Result<()> {
        let node = self.node(i)?;
        let dir = self.state_dir.path();
        let agent = crate::apiserver::workspace_binary("nmstate-agent")?;
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join(format!("logs/node-{i}.log")))?;
        let child = std::process::Command::new("bash")
            .arg(script())
            .arg("exec")
            .arg(dir.join("netns"))
            .arg(&node.name)
            .arg(agent)
            .args(["--node-name", &format!("node-{i}"), "--backend", "nm"])
            .arg("--kubeconfig")
            .arg(dir.join(format!("kubeconfigs/node-{i}.kubeconfig")))
            // Behind kube-apiserver the labels come from the Node object.
            .args(if self.kube {
                Vec::new()
            } else {
                vec![
                    "--node-labels".to_owned(),
                    format!("kubernetes.io/hostname=node-{i},node-role.kubernetes.io/worker="),
                ]
            })
            .args(agent_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        std::fs::write(
            dir.join(format!("pids/agent-node-{i}")),
            format!("{} nmstate-agent\n", child.id()),
        )?;
        Ok(())
    }
}

impl Drop for LocalUp {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        let _ = std::process::Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/local-down.sh"))
            .arg("--state-dir")
            .arg(self.state_dir.path())
            .stdin(Stdio::null())
            .status();
    }
}
