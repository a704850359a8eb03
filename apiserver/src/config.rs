//! Command-line flags and the plain [`Config`] the server runs from.
//!
//! Flag names follow Kubernetes' own API servers where the meaning is the
//! same. `main` parses [`Args`] and calls [`Args::into_config`] (or, for the
//! `kubeconfig` subcommand, [`KubeconfigArgs::into_request`]); library code
//! and tests only ever see the checked values, and nothing here reads the
//! environment: `main` copies what a pod's environment says into
//! [`Args::pod`].

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    auth::{
        cluster::{ClusterAccess, InCluster, SERVICE_ACCOUNT_DIR},
        front_proxy::RequestHeaderConfig,
    },
    kubeconfig::IssueRequest,
    storage::{StorageConfig, etcd::EtcdConfig},
    tls::{ClientCa, TlsSource, default_hosts},
};

/// The nmstate.io API server.
///
/// Without a subcommand it serves; `kubeconfig` issues client credentials
/// from the local CA of a standalone server.
#[derive(Debug, Parser)]
#[command(name = "nmstate-apiserver", version, about)]
pub struct Args {
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Directory for the embedded store, the generated PKI and kubeconfigs.
    #[arg(long, global = true, default_value = "/var/lib/nmstate-apiserver")]
    pub data_dir: PathBuf,

    /// The IP address to listen on (0.0.0.0 or :: for all interfaces).
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// The port to serve HTTPS on (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,

    /// etcd endpoints, comma separated (http://host:port or https://host:port).
    /// Without it the embedded store in --data-dir is used.
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Vec<String>,

    /// CA bundle to verify etcd's serving certificate.
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,

    /// Client certificate to present to etcd.
    #[arg(long)]
    pub etcd_certfile: Option<PathBuf>,

    /// Key of --etcd-certfile.
    #[arg(long)]
    pub etcd_keyfile: Option<PathBuf>,

    /// Serving certificate (PEM, leaf first). Without it a local CA and a
    /// serving certificate are generated under <data-dir>/pki.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,

    /// Key of --tls-cert-file.
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,

    /// Extra DNS names or IPs for the generated serving certificate.
    #[arg(long, value_delimiter = ',')]
    pub tls_sni_hosts: Vec<String>,

    /// CA bundle for client certificates: a client presenting a certificate
    /// signed by it is the user in its CN, in the groups in its O. Without
    /// it, a server with generated certificates uses its local CA (and
    /// writes <data-dir>/admin.kubeconfig).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,

    /// Kubeconfig of the kube-apiserver that reviews bearer tokens
    /// (TokenReview) and publishes the extension-apiserver-authentication
    /// ConfigMap. Without it, in a pod, the pod's service account is used;
    /// elsewhere bearer tokens are not accepted.
    #[arg(long)]
    pub authentication_kubeconfig: Option<PathBuf>,

    /// Kubeconfig of the kube-apiserver asked (SubjectAccessReview) about
    /// users the standalone policy does not allow. Without it, in a pod,
    /// the pod's service account is used; elsewhere they get 403.
    #[arg(long)]
    pub authorization_kubeconfig: Option<PathBuf>,

    /// What the environment says about the pod the server runs in; filled
    /// in by `main`, never a flag.
    #[arg(skip)]
    pub pod: PodEnvironment,

    /// CA bundle of front proxies (kube-apiserver's aggregator): a client
    /// certificate signed by it, with a common name in
    /// --requestheader-allowed-names, makes the --requestheader-*-headers
    /// name the user. From any other client those headers are ignored.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,

    /// Common names a front proxy's certificate may have (comma-separated);
    /// empty: any certificate from --requestheader-client-ca-file.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,

    /// Headers a front proxy names the user in; the first one set wins.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-User")]
    pub requestheader_username_headers: Vec<String>,

    /// Headers a front proxy names the user's groups in.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Group")]
    pub requestheader_group_headers: Vec<String>,

    /// Prefixes of the headers a front proxy passes extra attributes in.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Extra-")]
    pub requestheader_extra_headers_prefix: Vec<String>,

    /// How often to compact the store's history (as kube-apiserver's flag);
    /// 0 turns compaction off.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub etcd_compaction_interval: Duration,

    /// How long a request other than a watch may take before it gets 504.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// How long to let in-flight requests finish after SIGTERM.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Give linux-bridge ports without a `vlan` section upstream's default
    /// trunk (VLANs 2-4094) when rendering policies. Set to false for nodes
    /// whose kernel lacks bridge VLAN filtering.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub default_bridge_vlan_filtering: bool,

    /// Run the policy controller (under leader election among replicas
    /// sharing an etcd). Turn off only to serve the API without acting on
    /// it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub controller: bool,

    /// How old a node's `Ready` heartbeat (renewed by its agent about once a
    /// minute) may be before the controller treats the node as NotReady:
    /// nothing is released to it and it is counted apart.
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub node_heartbeat_grace_period: Duration,

    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Issue a client certificate from the local CA in --data-dir and write
    /// a kubeconfig with it (for example for a node:
    /// `--user system:node:worker-1 --group system:nodes`).
    Kubeconfig(KubeconfigArgs),
}

/// Flags of `nmstate-apiserver kubeconfig` (`--data-dir` is shared with the
/// server).
#[derive(Debug, clap::Args)]
pub struct KubeconfigArgs {
    /// The user name (the certificate's CN).
    #[arg(long)]
    pub user: String,

    /// A group of the user (the certificate's O). At most one for now.
    #[arg(long = "group")]
    pub groups: Vec<String>,

    /// The kubeconfig file to write (mode 0600).
    #[arg(long)]
    pub out: PathBuf,

    /// The server URL. Defaults to the one in <data-dir>/admin.kubeconfig.
    #[arg(long)]
    pub server: Option<String>,
}

impl KubeconfigArgs {
    /// Checks the flags; `data_dir` is the (global) `--data-dir`.
    pub fn into_request(self, data_dir: PathBuf) -> Result<IssueRequest, ConfigError> {
        if self.user.is_empty() {
            return Err(config_error("--user", "must not be empty"));
        }
        if self.groups.iter().any(String::is_empty) {
            return Err(config_error("--group", "must not be empty"));
        }
        if self.groups.len() > 1 {
            return Err(config_error(
                "--group",
                "may be given once: the certificate library encodes one O per subject",
            ));
        }
        if let Some(server) = &self.server {
            let host = server.strip_prefix("https://").unwrap_or_default();
            if host.is_empty() || host.starts_with('/') {
                return Err(config_error(
                    "--server",
                    format!("{server:?} must be https://HOST[:PORT]"),
                ));
            }
        }
        Ok(IssueRequest {
            data_dir,
            user: self.user,
            groups: self.groups,
            out: self.out,
            server: self.server,
        })
    }
}

/// The environment variables that tell a pod where kube-apiserver is, and
/// where its service account is mounted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodEnvironment {
    /// `KUBERNETES_SERVICE_HOST`, set by the kubelet in every pod.
    pub kubernetes_service_host: Option<String>,
    /// `KUBERNETES_SERVICE_PORT`.
    pub kubernetes_service_port: Option<String>,
    /// `NMSTATE_SERVICEACCOUNT_DIR`, for tests only: the service-account
    /// directory instead of [`SERVICE_ACCOUNT_DIR`].
    pub serviceaccount_dir: Option<PathBuf>,
}

impl PodEnvironment {
    /// The in-cluster access this environment gives, if any.
    pub fn in_cluster(&self) -> Result<Option<InCluster>, ConfigError> {
        let dir = self
            .serviceaccount_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(SERVICE_ACCOUNT_DIR));
        InCluster::detect(
            self.kubernetes_service_host.as_deref(),
            self.kubernetes_service_port.as_deref(),
            &dir,
        )
        .map_err(|message| config_error("KUBERNETES_SERVICE_PORT", message))
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything the server needs to run, already checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Data directory (embedded store, PKI).
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Which store to open.
    pub storage: StorageConfig,
    /// Where the serving certificate comes from.
    pub tls: TlsSource,
    /// Which CA client certificates must chain to.
    pub client_ca: ClientCa,
    /// Front-proxy authentication, when `--requestheader-client-ca-file`
    /// is given.
    pub request_header: Option<RequestHeaderConfig>,
    /// Where bearer tokens are reviewed and the authentication ConfigMap
    /// read (`--authentication-kubeconfig`, or in-cluster).
    pub authentication: Option<ClusterAccess>,
    /// Where access is reviewed (`--authorization-kubeconfig`, or
    /// in-cluster).
    pub authorization: Option<ClusterAccess>,
    /// Compaction interval (`None`: never).
    pub compaction_interval: Option<Duration>,
    /// Timeout of every request but watches.
    pub request_timeout: Duration,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_timeout: Duration,
    /// How policies are rendered for nodes.
    pub render: nmstate_openapi::render::RenderOptions,
    /// The policy controller's settings, `None` when it is off.
    pub controller: Option<crate::controller::ControllerConfig>,
}

/// A flag combination that cannot work. `main` exits with code 64.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid flag {flag}: {message}")]
pub struct ConfigError {
    /// The offending flag.
    pub flag: &'static str,
    /// Why.
    pub message: String,
}

/// The values of a comma-separated list flag, without blanks (`--flag=`
/// gives none).
fn non_empty(values: Vec<String>) -> Vec<String> {
    values
        .into_iter()
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
        .collect()
}

fn config_error(flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        message: message.into(),
    }
}

impl Args {
    /// Checks the flags and turns them into a [`Config`], before any port is
    /// bound or file written.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let storage = if self.etcd_servers.is_empty() {
            for (flag, value) in [
                ("--etcd-cafile", &self.etcd_cafile),
                ("--etcd-certfile", &self.etcd_certfile),
                ("--etcd-keyfile", &self.etcd_keyfile),
            ] {
                if value.is_some() {
                    return Err(config_error(flag, "only meaningful with --etcd-servers"));
                }
            }
            StorageConfig::Embedded {
                data_dir: self.data_dir.clone(),
            }
        } else {
            for endpoint in &self.etcd_servers {
                check_etcd_endpoint(endpoint)?;
            }
            if self.etcd_certfile.is_some() != self.etcd_keyfile.is_some() {
                return Err(config_error(
                    "--etcd-certfile",
                    "--etcd-certfile and --etcd-keyfile must be given together",
                ));
            }
            for (flag, value) in [
                ("--etcd-cafile", &self.etcd_cafile),
                ("--etcd-certfile", &self.etcd_certfile),
                ("--etcd-keyfile", &self.etcd_keyfile),
            ] {
                if let Some(path) = value
                    && !path.is_file()
                {
                    return Err(config_error(
                        flag,
                        format!("{} is not a readable file", path.display()),
                    ));
                }
            }
            StorageConfig::Etcd(EtcdConfig {
                endpoints: self.etcd_servers.clone(),
                ca_file: self.etcd_cafile.clone(),
                cert_file: self.etcd_certfile.clone(),
                key_file: self.etcd_keyfile.clone(),
            })
        };

        let tls = match (self.tls_cert_file, self.tls_private_key_file) {
            (Some(cert_file), Some(key_file)) => TlsSource::Files {
                cert_file,
                key_file,
            },
            (None, None) => {
                let mut hosts = default_hosts(self.bind_address);
                for host in self.tls_sni_hosts {
                    if !hosts.contains(&host) {
                        hosts.push(host);
                    }
                }
                TlsSource::Generated {
                    data_dir: self.data_dir.clone(),
                    hosts,
                }
            }
            _ => {
                return Err(config_error(
                    "--tls-cert-file",
                    "--tls-cert-file and --tls-private-key-file must be given together",
                ));
            }
        };

        let client_ca = match (self.client_ca_file, &tls) {
            (Some(path), _) if !path.is_file() => {
                return Err(config_error(
                    "--client-ca-file",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            (Some(path), _) => ClientCa::File(path),
            (None, TlsSource::Generated { .. }) => ClientCa::Local {
                data_dir: self.data_dir.clone(),
            },
            // Operator-provided serving certificates and no client CA: only
            // the health endpoints answer until a later authenticator
            // (front proxy, tokens) recognises someone.
            (None, TlsSource::Files { .. }) => ClientCa::None,
        };

        let request_header = match self.requestheader_client_ca_file {
            Some(path) if !path.is_file() => {
                return Err(config_error(
                    "--requestheader-client-ca-file",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            Some(client_ca_file) => Some(RequestHeaderConfig {
                client_ca_file,
                allowed_names: non_empty(self.requestheader_allowed_names),
                username_headers: non_empty(self.requestheader_username_headers),
                group_headers: non_empty(self.requestheader_group_headers),
                extra_headers_prefixes: non_empty(self.requestheader_extra_headers_prefix),
            }),
            None => None,
        };

        // As Kubernetes' extension servers: a kubeconfig flag wins; without
        // one, a pod uses its service account.
        let in_cluster = self.pod.in_cluster()?;
        let access = |kubeconfig: Option<PathBuf>| {
            kubeconfig
                .map(ClusterAccess::Kubeconfig)
                .or_else(|| in_cluster.clone().map(ClusterAccess::InCluster))
        };

        let authentication = access(self.authentication_kubeconfig);
        let authorization = access(self.authorization_kubeconfig);
        // With a cluster, its Node objects are the nodes and their labels.
        let nodes = authorization.clone().or_else(|| authentication.clone());

        Ok(Config {
            authentication,
            authorization,
            data_dir: self.data_dir,
            listen: SocketAddr::new(self.bind_address, self.secure_port),
            storage,
            tls,
            client_ca,
            request_header,
            compaction_interval: (!self.etcd_compaction_interval.is_zero())
                .then_some(self.etcd_compaction_interval),
            request_timeout: self.request_timeout,
            shutdown_timeout: self.shutdown_timeout,
            render: nmstate_openapi::render::RenderOptions {
                default_bridge_vlan_filtering: self.default_bridge_vlan_filtering,
            },
            controller: self
                .controller
                .then(|| crate::controller::ControllerConfig {
                    heartbeat_grace: self.node_heartbeat_grace_period,
                    // Events go to the cluster whose Nodes are the nodes.
                    events: nodes.clone(),
                    nodes,
                    ..Default::default()
                }),
        })
    }
}

fn check_etcd_endpoint(endpoint: &str) -> Result<(), ConfigError> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| {
            config_error(
                "--etcd-servers",
                format!("{endpoint:?} must start with http:// or https://"),
            )
        })?;
    let host_port = rest.trim_end_matches('/');
    let port = host_port
        .rsplit_once(':')
        .map(|(_, port)| port)
        .filter(|port| port.parse::<u16>().is_ok());
    if host_port.is_empty() || host_port.contains('/') || port.is_none() {
        return Err(config_error(
            "--etcd-servers",
            format!("{endpoint:?} must be scheme://host:port"),
        ));
    }
    Ok(())
}

/// Parses `30s`, `500ms`, `2m` or a bare number of seconds.
fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => value.split_at(at),
        None => (value, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration such as 30s, 500ms or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!(
            "{value:?} has unknown unit {unit:?} (use ms, s or m)"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["nmstate-apiserver", "--data-dir", "/tmp/d"];
        argv.extend_from_slice(args);
        Args::try_parse_from(argv).unwrap().into_config()
    }

    #[test]
    fn defaults_to_embedded_store_and_generated_tls() {
        let config = parse(&["--bind-address", "127.0.0.1", "--secure-port", "18443"]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:18443".parse().unwrap());
        assert_eq!(
            config.storage,
            StorageConfig::Embedded {
                data_dir: "/tmp/d".into()
            }
        );
        assert_eq!(
            config.tls,
            TlsSource::Generated {
                data_dir: "/tmp/d".into(),
                hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            }
        );
        assert_eq!(
            config.client_ca,
            ClientCa::Local {
                data_dir: "/tmp/d".into()
            },
            "standalone: the local CA authenticates clients"
        );
        assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
    }

    #[test]
    fn requestheader_flags() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("front-proxy-ca.crt");
        std::fs::write(&ca, "").unwrap();
        let ca_arg = ca.to_str().unwrap();
        assert_eq!(parse(&[]).unwrap().request_header, None);

        let config = parse(&["--requestheader-client-ca-file", ca_arg]).unwrap();
        assert_eq!(
            config.request_header,
            Some(RequestHeaderConfig::new(ca.clone()))
        );

        let config = parse(&[
            "--requestheader-client-ca-file",
            ca_arg,
            "--requestheader-allowed-names=front-proxy-client, aggregator",
            "--requestheader-username-headers=X-User,X-Remote-User",
            "--requestheader-group-headers=X-Group",
            "--requestheader-extra-headers-prefix=X-Extra-",
        ])
        .unwrap();
        assert_eq!(
            config.request_header,
            Some(RequestHeaderConfig {
                client_ca_file: ca.clone(),
                allowed_names: vec!["front-proxy-client".into(), "aggregator".into()],
                username_headers: vec!["X-User".into(), "X-Remote-User".into()],
                group_headers: vec!["X-Group".into()],
                extra_headers_prefixes: vec!["X-Extra-".into()],
            })
        );
        let config = parse(&[
            "--requestheader-client-ca-file",
            ca_arg,
            "--requestheader-allowed-names=",
        ])
        .unwrap();
        assert_eq!(
            config.request_header.unwrap().allowed_names,
            Vec::<String>::new()
        );

        assert_eq!(
            parse(&["--requestheader-client-ca-file", "/nonexistent/ca.crt"])
                .unwrap_err()
                .to_string(),
            "invalid flag --requestheader-client-ca-file: /nonexistent/ca.crt is not a readable file"
        );
    }

    #[test]
    fn cluster_access_from_flags_or_the_pod() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "t").unwrap();
        std::fs::write(dir.path().join("ca.crt"), "c").unwrap();
        let pod = PodEnvironment {
            kubernetes_service_host: Some("fd00::1".into()),
            kubernetes_service_port: Some("443".into()),
            serviceaccount_dir: Some(dir.path().to_path_buf()),
        };
        let with_pod = |args: &[&str], pod: &PodEnvironment| {
            let mut argv = vec!["nmstate-apiserver", "--data-dir", "/tmp/d"];
            argv.extend_from_slice(args);
            let mut args = Args::try_parse_from(argv).unwrap();
            args.pod = pod.clone();
            args.into_config()
        };
        let standalone = with_pod(&[], &PodEnvironment::default()).unwrap();
        assert_eq!(standalone.authentication, None, "not in a pod");
        assert_eq!(standalone.authorization, None);

        let in_cluster = ClusterAccess::InCluster(InCluster {
            server: "https://[fd00::1]:443".into(),
            token_file: dir.path().join("token"),
            ca_file: dir.path().join("ca.crt"),
        });
        let config = with_pod(&[], &pod).unwrap();
        assert_eq!(config.authentication, Some(in_cluster.clone()));
        assert_eq!(config.authorization, Some(in_cluster.clone()));

        let config = with_pod(&["--authorization-kubeconfig", "/k"], &pod).unwrap();
        assert_eq!(config.authentication, Some(in_cluster));
        assert_eq!(
            config.authorization,
            Some(ClusterAccess::Kubeconfig("/k".into())),
            "a flag wins"
        );

        let no_files = PodEnvironment {
            serviceaccount_dir: Some(dir.path().join("missing")),
            ..pod.clone()
        };
        assert_eq!(
            with_pod(&[], &no_files).unwrap().authentication,
            None,
            "no service account mounted"
        );
        let bad_port = PodEnvironment {
            kubernetes_service_port: Some("https".into()),
            ..pod
        };
        assert_eq!(
            with_pod(&[], &bad_port).unwrap_err().to_string(),
            "invalid flag KUBERNETES_SERVICE_PORT: \"https\" is not a port number"
        );
    }

    #[test]
    fn client_ca_file_replaces_the_local_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("client-ca.crt");
        std::fs::write(&ca, "").unwrap();
        let ca_arg = ca.to_str().unwrap();
        let config = parse(&["--client-ca-file", ca_arg]).unwrap();
        assert_eq!(config.client_ca, ClientCa::File(ca.clone()));

        let config = parse(&["--tls-cert-file", "/c", "--tls-private-key-file", "/k"]).unwrap();
        assert_eq!(config.client_ca, ClientCa::None);
    }

    fn kubeconfig(args: &[&str]) -> Result<IssueRequest, ConfigError> {
        let mut argv = vec!["nmstate-apiserver", "kubeconfig"];
        argv.extend_from_slice(args);
        let args = Args::try_parse_from(argv).unwrap();
        let Some(Command::Kubeconfig(kubeconfig)) = args.command else {
            panic!("expected the kubeconfig subcommand");
        };
        kubeconfig.into_request(args.data_dir)
    }

    #[test]
    fn kubeconfig_subcommand() {
        let request = kubeconfig(&[
            "--data-dir",
            "/srv/d",
            "--user",
            "system:node:worker-1",
            "--group",
            "system:nodes",
            "--out",
            "/tmp/worker-1.kubeconfig",
        ])
        .unwrap();
        assert_eq!(
            request,
            IssueRequest {
                data_dir: "/srv/d".into(),
                user: "system:node:worker-1".into(),
                groups: vec!["system:nodes".into()],
                out: "/tmp/worker-1.kubeconfig".into(),
                server: None,
            }
        );
        // --data-dir is shared: before the subcommand works too.
        let args = Args::try_parse_from([
            "nmstate-apiserver",
            "--data-dir",
            "/srv/e",
            "kubeconfig",
            "--user",
            "u",
            "--out",
            "/o",
        ])
        .unwrap();
        assert_eq!(args.data_dir, PathBuf::from("/srv/e"));
        assert!(matches!(args.command, Some(Command::Kubeconfig(_))));
    }

    #[test]
    fn bad_kubeconfig_flags_are_explained() {
        let cases: &[(&str, &[&str], &str)] = &[
            (
                "empty user",
                &["--user", "", "--out", "/o"],
                "invalid flag --user: must not be empty",
            ),
            (
                "two groups",
                &["--user", "u", "--group", "a", "--group", "b", "--out", "/o"],
                "invalid flag --group: may be given once: the certificate library encodes one O per subject",
            ),
            (
                "plain HTTP server",
                &["--user", "u", "--out", "/o", "--server", "http://h:1"],
                "invalid flag --server: \"http://h:1\" must be https://HOST[:PORT]",
            ),
        ];
        for (name, args, expected) in cases {
            let err = kubeconfig(args).expect_err(name);
            assert_eq!(err.to_string(), *expected, "case {name}");
        }
    }

    #[test]
    fn etcd_servers_are_split_and_checked() {
        let config = parse(&[
            "--etcd-servers",
            "http://127.0.0.1:2379,https://etcd-0:2379",
        ])
        .unwrap();
        let StorageConfig::Etcd(etcd) = config.storage else {
            panic!("expected etcd storage");
        };
        assert_eq!(
            etcd.endpoints,
            ["http://127.0.0.1:2379", "https://etcd-0:2379"]
        );
    }

    #[test]
    fn bad_flags_are_explained() {
        let cases: &[(&str, &[&str], &str)] = &[
            (
                "etcd endpoint without scheme",
                &["--etcd-servers", "127.0.0.1:2379"],
                "invalid flag --etcd-servers: \"127.0.0.1:2379\" must start with http:// or https://",
            ),
            (
                "etcd endpoint without port",
                &["--etcd-servers", "http://etcd"],
                "invalid flag --etcd-servers: \"http://etcd\" must be scheme://host:port",
            ),
            (
                "etcd cert without key",
                &["--etcd-servers", "http://e:2379", "--etcd-certfile", "/x"],
                "invalid flag --etcd-certfile: --etcd-certfile and --etcd-keyfile must be given together",
            ),
            (
                "etcd CA file missing",
                &[
                    "--etcd-servers",
                    "http://e:2379",
                    "--etcd-cafile",
                    "/nonexistent/ca.crt",
                ],
                "invalid flag --etcd-cafile: /nonexistent/ca.crt is not a readable file",
            ),
            (
                "etcd TLS without etcd",
                &["--etcd-cafile", "/x"],
                "invalid flag --etcd-cafile: only meaningful with --etcd-servers",
            ),
            (
                "client CA file missing",
                &["--client-ca-file", "/nonexistent/client-ca.crt"],
                "invalid flag --client-ca-file: /nonexistent/client-ca.crt is not a readable file",
            ),
            (
                "TLS cert without key",
                &["--tls-cert-file", "/x"],
                "invalid flag --tls-cert-file: --tls-cert-file and --tls-private-key-file must be given together",
            ),
        ];
        for (name, args, expected) in cases {
            let err = parse(args).expect_err(name);
            assert_eq!(err.to_string(), *expected, "case {name}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(
            parse_duration("1h"),
            Err("\"1h\" has unknown unit \"h\" (use ms, s or m)".to_string())
        );
    }
}
