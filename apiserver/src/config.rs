//! Command-line flags and the plain [`Config`] the server runs from.
//!
//! Flag names follow Kubernetes' own API servers where the meaning is the
//! same. `main` parses [`Args`] and calls [`Args::into_config`]; library code
//! and tests only ever see [`Config`], and nothing here reads the
//! environment.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::{Parser, ValueEnum};

use crate::{
    storage::{StorageConfig, etcd::EtcdConfig},
    tls::{TlsSource, default_hosts},
};

/// The nmstate.io API server.
#[derive(Debug, Parser)]
#[command(name = "nmstate-apiserver", version, about)]
pub struct Args {
    /// Directory for the embedded store, the generated PKI and kubeconfigs.
    #[arg(long, default_value = "/var/lib/nmstate-apiserver")]
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

    /// How long to let in-flight requests finish after SIGTERM.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
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
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_timeout: Duration,
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

        Ok(Config {
            data_dir: self.data_dir,
            listen: SocketAddr::new(self.bind_address, self.secure_port),
            storage,
            tls,
            shutdown_timeout: self.shutdown_timeout,
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
        assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
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
