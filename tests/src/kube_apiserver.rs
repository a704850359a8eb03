//! A real upstream kube-apiserver for tests and benchmarks:
//! [`KubeApiserverProcess::start`] runs the binary `hack/build-kube-apiserver.sh`
//! builds against a given etcd, on a free loopback port, with PKI of its own
//! made by rcgen (a self-signed serving certificate for `127.0.0.1`, a
//! client CA, service-account keys, an admin in `system:masters` and its
//! kubeconfig), waits for `/readyz`, and stops it on drop (SIGTERM, then
//! SIGKILL, by its own PID).
//!
//! Optionally it acts as a front proxy (`--proxy-client-cert-file` with a
//! certificate of a front-proxy CA the caller also gives to the aggregated
//! server) and registers an `nmstate-apiserver` listening on loopback as the
//! `nmstate.io` APIServices (a Service of type ExternalName pointing at
//! `127.0.0.1`, so no endpoints and no cluster IP routing are needed), and
//! waits until they are Available. [`KubeApiserverProcess::create_crds`]
//! creates CustomResourceDefinitions and waits until they are Established
//! and served.

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use http::StatusCode;
use nix::sys::signal;
use nmstate_apiserver::{kubeconfig::Kubeconfig, tls::ClientCert};
use serde_json::{Value, json};

use crate::{
    apiserver::free_port,
    etcd::signal_and_reap,
    https::{ClientIdentity, HttpsClient},
    pki::TestCa,
};

/// How long kube-apiserver may take to become ready (it bootstraps RBAC,
/// priority and fairness, and its controllers; slow on a loaded machine).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a CRD may take to be Established or an APIService Available.
const CONDITION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The common name of the front proxy's client certificate.
pub const FRONT_PROXY_CLIENT: &str = "front-proxy-client";
/// The namespace and name of the Service the APIServices point at.
const SERVICE: (&str, &str) = ("nmstate", "nmstate-apiserver");
/// The host name the aggregator checks the aggregated server's certificate
/// for: `<service>.<namespace>.svc`.
pub const AGGREGATED_SERVER_NAME: &str = "nmstate-apiserver.nmstate.svc";

/// Where `hack/build-kube-apiserver.sh` put kube-apiserver, building it
/// first when it is not cached (minutes on 2 cores). An error says why the
/// build failed (no Go, no module proxy, a compile error).
pub fn binary() -> Result<PathBuf> {
    cached_build(
        "build-kube-apiserver.sh",
        "nothing that needs a real kube-apiserver can run",
    )
}

/// Runs `hack/<script>`, which builds a peer into a cache outside the
/// checkout unless it is there and prints its path; `consequence` says what
/// a failure means.
pub fn cached_build(script: &str, consequence: &str) -> Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hack")
        .join(script);
    let output = Command::new("bash")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running hack/{script}"))?;
    if !output.status.success() {
        bail!(
            "hack/{script} failed ({}): {consequence}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let built = PathBuf::from(String::from_utf8(output.stdout)?.trim());
    if !built.is_file() {
        bail!("hack/{script} named {}, which is no file", built.display());
    }
    Ok(built)
}

/// An `nmstate-apiserver` to register behind kube-apiserver's aggregator.
#[derive(Clone, Debug)]
pub struct AggregatedServer {
    /// Its HTTPS port on `127.0.0.1`.
    pub port: u16,
    /// The CA its serving certificate chains to; the certificate must name
    /// [`AGGREGATED_SERVER_NAME`].
    pub ca_pem: String,
    /// The versions of `nmstate.io` to register (`v1`, `v1beta1`).
    pub versions: Vec<String>,
}

/// How to start kube-apiserver.
#[derive(Debug, Default)]
pub struct KubeOptions<'a> {
    /// The etcd client URL.
    pub etcd_servers: String,
    /// The key prefix in etcd (kube-apiserver's default `/registry`):
    /// distinct prefixes let several servers share one etcd.
    pub etcd_prefix: Option<String>,
    /// A front-proxy CA: kube-apiserver presents a certificate of it named
    /// [`FRONT_PROXY_CLIENT`] to aggregated servers, and trusts it for
    /// requests that carry `X-Remote-*` headers.
    pub front_proxy_ca: Option<&'a TestCa>,
    /// A server to register as the `nmstate.io` APIServices (needs
    /// `front_proxy_ca`, which that server must trust).
    pub aggregated: Option<AggregatedServer>,
    /// The prefix of the front proxy's header names (`X-Remote`, giving
    /// `X-Remote-User`, `X-Remote-Group` and `X-Remote-Extra-`, when `None`).
    pub requestheader_prefix: Option<&'a str>,
    /// Keep an audit log of every request (level `Metadata`), for
    /// [`KubeApiserverProcess::audit_events`].
    pub audit: bool,
    /// Static bearer tokens (`--token-auth-file`).
    pub static_tokens: Vec<StaticToken>,
    /// More flags.
    pub extra_args: Vec<String>,
}

/// A bearer token kube-apiserver accepts from its `--token-auth-file`.
#[derive(Clone, Debug)]
pub struct StaticToken {
    /// The token.
    pub token: String,
    /// The user it authenticates.
    pub user: String,
    /// The user's groups.
    pub groups: Vec<String>,
}

/// One request in kube-apiserver's audit log (stage `ResponseComplete`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// The verb (`create`, `get`, `list`, ...).
    pub verb: String,
    /// The request URI, with its query.
    pub uri: String,
    /// The resource (`tokenreviews`, `configmaps`, ...); empty for a
    /// non-resource request.
    pub resource: String,
    /// The caller's user name.
    pub user: String,
    /// The caller's credential: `JTI=<id>` for a service-account token,
    /// `X509SHA256=<fingerprint>` for a client certificate.
    pub credential_id: Option<String>,
    /// The HTTP status of the answer.
    pub code: u16,
}

/// The audit policy of [`KubeOptions::audit`]: each request once, when
/// its answer is complete.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
";

/// A running kube-apiserver.
#[derive(Debug)]
pub struct KubeApiserverProcess {
    child: Option<Child>,
    dir: tempfile::TempDir,
    address: SocketAddr,
    client: HttpsClient,
    pki: Pki,
    audit_syncs: std::sync::atomic::AtomicU32,
}

impl KubeApiserverProcess {
    /// Starts kube-apiserver with `options` and waits until it is ready
    /// (and, with an aggregated server, until its APIServices are
    /// Available).
    pub async fn start(options: &KubeOptions<'_>) -> Result<Self> {
        if options.aggregated.is_some() && options.front_proxy_ca.is_none() {
            bail!("an aggregated server needs a front-proxy CA");
        }
        let binary = tokio::task::spawn_blocking(binary).await??;
        let dir = tempfile::tempdir().context("creating kube-apiserver's directory")?;
        let pki = Pki::write(dir.path(), options.front_proxy_ca)?;
        let port = free_port()?;
        let address: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let client = HttpsClient::with_identity(
            address,
            pki.serving_pem.as_bytes(),
            "127.0.0.1",
            Some(&pki.admin),
        )?;
        Kubeconfig::for_client(
            &format!("https://{address}"),
            &pki.serving_pem,
            "admin",
            &ClientCert {
                cert_pem: String::from_utf8(pki.admin.cert_pem.clone())?,
                key_pem: String::from_utf8(pki.admin.key_pem.clone())?,
            },
        )
        .write(&dir.path().join("admin.kubeconfig"))?;

        let log = File::create(dir.path().join("kube-apiserver.log"))?;
        let file = |name: &str| dir.path().join(name).display().to_string();
        let mut args = vec![
            format!("--etcd-servers={}", options.etcd_servers),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            "--endpoint-reconciler-type=none".to_owned(),
            format!("--tls-cert-file={}", file("serving.crt")),
            format!("--tls-private-key-file={}", file("serving.key")),
            format!("--client-ca-file={}", file("client-ca.crt")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", file("sa.pub")),
            format!("--service-account-signing-key-file={}", file("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
            "--authorization-mode=RBAC".to_owned(),
            "--profiling=false".to_owned(),
        ];
        if let Some(prefix) = &options.etcd_prefix {
            args.push(format!("--etcd-prefix={prefix}"));
        }
        if options.front_proxy_ca.is_some() {
            let prefix = options.requestheader_prefix.unwrap_or("X-Remote");
            args.extend([
                format!(
                    "--requestheader-client-ca-file={}",
                    file("front-proxy-ca.crt")
                ),
                format!("--requestheader-allowed-names={FRONT_PROXY_CLIENT}"),
                format!("--requestheader-username-headers={prefix}-User"),
                format!("--requestheader-group-headers={prefix}-Group"),
                format!("--requestheader-extra-headers-prefix={prefix}-Extra-"),
                format!(
                    "--proxy-client-cert-file={}",
                    file("front-proxy-client.crt")
                ),
                format!("--proxy-client-key-file={}", file("front-proxy-client.key")),
            ]);
        }
        if options.audit {
            std::fs::write(dir.path().join("audit-policy.yaml"), AUDIT_POLICY)?;
            args.extend([
                format!("--audit-policy-file={}", file("audit-policy.yaml")),
                format!("--audit-log-path={}", file("audit.log")),
                "--audit-log-mode=blocking".to_owned(),
                "--audit-log-format=json".to_owned(),
            ]);
        }
        if !options.static_tokens.is_empty() {
            let lines: Vec<String> = options
                .static_tokens
                .iter()
                .map(|token| {
                    format!(
                        "{},{},{},\"{}\"\n",
                        token.token,
                        token.user,
                        token.user,
                        token.groups.join(",")
                    )
                })
                .collect();
            std::fs::write(dir.path().join("tokens.csv"), lines.concat())?;
            args.push(format!("--token-auth-file={}", file("tokens.csv")));
        }
        args.extend(options.extra_args.iter().cloned());
        let child = Command::new(&binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        let mut server = KubeApiserverProcess {
            child: Some(child),
            dir,
            address,
            client,
            pki,
            audit_syncs: std::sync::atomic::AtomicU32::new(0),
        };
        server.wait_until_ready().await?;
        if let Some(aggregated) = &options.aggregated {
            server.register(aggregated).await?;
        }
        Ok(server)
    }

    async fn wait_until_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "kube-apiserver exited during start-up: {status}\n{}",
                    self.log_tail(20)
                );
            }
            if let Ok(response) = self.client.get("/readyz").await
                && response.status.is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "kube-apiserver was not ready within {START_TIMEOUT:?}\n{}",
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Registers `server` as the `nmstate.io` APIServices and waits until
    /// they are Available.
    async fn register(&self, server: &AggregatedServer) -> Result<()> {
        let (namespace, name) = SERVICE;
        self.create(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )
        .await?;
        self.create(
            &format!("/api/v1/namespaces/{namespace}/services"),
            &json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "type": "ExternalName",
                    "externalName": "127.0.0.1",
                    "ports": [{"name": "https", "port": server.port, "protocol": "TCP"}],
                },
            }),
        )
        .await?;
        let apiservices = "/apis/apiregistration.k8s.io/v1/apiservices";
        for version in &server.versions {
            self.create(
                apiservices,
                &json!({
                    "apiVersion": "apiregistration.k8s.io/v1",
                    "kind": "APIService",
                    "metadata": {"name": format!("{version}.nmstate.io")},
                    "spec": {
                        "group": "nmstate.io",
                        "version": version,
                        "service": {"namespace": namespace, "name": name, "port": server.port},
                        "caBundle": BASE64.encode(&server.ca_pem),
                        "groupPriorityMinimum": 1000,
                        "versionPriority": if version == "v1" { 20 } else { 15 },
                    },
                }),
            )
            .await?;
        }
        for version in &server.versions {
            self.wait_for_condition(&format!("{apiservices}/{version}.nmstate.io"), "Available")
                .await?;
        }
        // Available is set by one controller; the proxy learns of the
        // APIService through its own informer, and until then answers 503
        // (seen on a loaded machine right after Available). Wait until a
        // request goes through.
        for version in &server.versions {
            self.wait_for_status(
                &format!("/apis/nmstate.io/{version}/nodenetworkstates?limit=1"),
                StatusCode::OK,
            )
            .await?;
        }
        Ok(())
    }

    /// Creates `object` in the collection at `path` (e.g.
    /// `/api/v1/namespaces`) and returns what the server stored.
    pub async fn create(&self, path: &str, object: &Value) -> Result<Value> {
        let response = self
            .client
            .request_with(
                "POST",
                path,
                &[("content-type", "application/json")],
                Some(object.to_string().into_bytes()),
            )
            .await?;
        if response.status != StatusCode::CREATED {
            bail!(
                "POST {path} {}: {} {}",
                object["metadata"]["name"],
                response.status,
                response.body
            );
        }
        Ok(serde_json::from_str(&response.body)?)
    }

    /// Creates each CustomResourceDefinition in `crds` and waits until all
    /// are Established and their storage versions answer a list.
    pub async fn create_crds(&self, crds: &[Value]) -> Result<()> {
        let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
        for crd in crds {
            self.create(path, crd).await?;
        }
        for crd in crds {
            let name = crd["metadata"]["name"]
                .as_str()
                .context("a CRD without a name")?;
            self.wait_for_condition(&format!("{path}/{name}"), "Established")
                .await?;
            let spec = &crd["spec"];
            let plural = spec["names"]["plural"].as_str().unwrap_or_default();
            let group = spec["group"].as_str().unwrap_or_default();
            for version in spec["versions"].as_array().into_iter().flatten() {
                let version = version["name"].as_str().unwrap_or_default();
                self.wait_for_status(&format!("/apis/{group}/{version}/{plural}"), StatusCode::OK)
                    .await?;
            }
        }
        Ok(())
    }

    /// Waits until the object at `path` has condition `kind` with status
    /// `True`.
    pub async fn wait_for_condition(&self, path: &str, kind: &str) -> Result<()> {
        let deadline = Instant::now() + CONDITION_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            let response = self.client.get(path).await?;
            if response.status == StatusCode::OK {
                let object: Value = serde_json::from_str(&response.body)?;
                let conditions = object["status"]["conditions"].as_array();
                if conditions
                    .into_iter()
                    .flatten()
                    .any(|condition| condition["type"] == kind && condition["status"] == "True")
                {
                    return Ok(());
                }
                last = object["status"].to_string();
            } else {
                last = format!("{} {}", response.status, response.body);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{path} was not {kind} within {CONDITION_TIMEOUT:?}: {last}")
    }

    async fn wait_for_status(&self, path: &str, status: StatusCode) -> Result<()> {
        let deadline = Instant::now() + CONDITION_TIMEOUT;
        loop {
            let response = self.client.get(path).await?;
            if response.status == status {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "GET {path} still answers {} {} after {CONDITION_TIMEOUT:?}",
                    response.status,
                    response.body
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client authenticated as the admin (group `system:masters`).
    pub fn client(&self) -> &HttpsClient {
        &self.client
    }

    /// The HTTPS address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A kubeconfig of the admin, for kubectl.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    /// The PEM of kube-apiserver's serving certificate (self-signed): what
    /// its clients trust, e.g. a pod's `ca.crt`.
    pub fn serving_ca_pem(&self) -> &str {
        &self.pki.serving_pem
    }

    /// A client certificate from kube-apiserver's client CA (`--client-ca-file`)
    /// for user `common_name` in group `organization`.
    pub fn issue_client(&self, common_name: &str, organization: Option<&str>) -> ClientIdentity {
        self.pki.client_ca.issue(common_name, organization)
    }

    /// Every request in the audit log (started with [`KubeOptions::audit`])
    /// up to now: a marker request is sent and waited for, so what kube-apiserver
    /// answered before this call is in the list.
    pub async fn audit_events(&self) -> Result<Vec<AuditEvent>> {
        let marker = format!(
            "/api/v1/namespaces/audit-marker-{}",
            self.audit_syncs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        self.client.get(&marker).await?;
        let deadline = Instant::now() + CONDITION_TIMEOUT;
        loop {
            let events = self.read_audit_log()?;
            if events.iter().any(|event| event.uri == marker) {
                // Requests answered just before the marker may be logged
                // just after it: a short grace for their lines.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let mut events = self.read_audit_log()?;
                events.retain(|event| !event.uri.starts_with("/api/v1/namespaces/audit-marker-"));
                return Ok(events);
            }
            if Instant::now() > deadline {
                bail!("the audit log has no {marker} after {CONDITION_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn read_audit_log(&self) -> Result<Vec<AuditEvent>> {
        let path = self.dir.path().join("audit.log");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (started without audit?)", path.display()))?;
        let mut events = Vec::new();
        for line in text.lines() {
            // The last line may be half written.
            let Ok(event) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
            events.push(AuditEvent {
                verb: text(&event["verb"]),
                uri: text(&event["requestURI"]),
                resource: text(&event["objectRef"]["resource"]),
                user: text(&event["user"]["username"]),
                credential_id: event["user"]["extra"]["authentication.kubernetes.io/credential-id"]
                    [0]
                .as_str()
                .map(str::to_owned),
                code: event["responseStatus"]["code"]
                    .as_u64()
                    .and_then(|code| u16::try_from(code).ok())
                    .unwrap_or_default(),
            });
        }
        Ok(events)
    }

    /// The process ID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("kube-apiserver.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops the server: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            signal_and_reap(child, signal::Signal::SIGTERM, STOP_TIMEOUT);
        }
    }
}

impl Drop for KubeApiserverProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// kube-apiserver's certificates and keys, written into its directory.
#[derive(Debug)]
struct Pki {
    serving_pem: String,
    client_ca: TestCa,
    admin: ClientIdentity,
}

impl Pki {
    /// Writes `serving.{crt,key}` (self-signed, for `127.0.0.1` and
    /// `localhost`), `client-ca.crt`, `sa.key` and `sa.pub`, and with a front-proxy CA
    /// `front-proxy-ca.crt` and `front-proxy-client.{crt,key}`.
    fn write(dir: &Path, front_proxy_ca: Option<&TestCa>) -> Result<Pki> {
        let write = |name: &str, pem: &[u8]| -> Result<()> {
            let path = dir.join(name);
            std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))
        };
        let key = rcgen::KeyPair::generate()?;
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?;
        let serving_pem = params.self_signed(&key)?.pem();
        write("serving.crt", serving_pem.as_bytes())?;
        write("serving.key", key.serialize_pem().as_bytes())?;

        let client_ca = TestCa::new("kube-apiserver-client-ca");
        write("client-ca.crt", client_ca.pem.as_bytes())?;
        let admin = client_ca.issue("admin", Some("system:masters"));

        let service_accounts = rcgen::KeyPair::generate()?;
        write("sa.key", service_accounts.serialize_pem().as_bytes())?;
        write("sa.pub", service_accounts.public_key_pem().as_bytes())?;

        if let Some(ca) = front_proxy_ca {
            write("front-proxy-ca.crt", ca.pem.as_bytes())?;
            let client = ca.issue(FRONT_PROXY_CLIENT, None);
            write("front-proxy-client.crt", &client.cert_pem)?;
            write("front-proxy-client.key", &client.key_pem)?;
        }
        Ok(Pki {
            serving_pem,
            client_ca,
            admin,
        })
    }
}
