//! The real curl, as users call the API with it: the CA, client certificate
//! and key of a kubeconfig, HTTP/2 by default (curl's own default over
//! TLS) or HTTP/1.1.

use std::path::{Path, PathBuf};

use nmstate_apiserver::kubeconfig::Kubeconfig;
use serde_json::Value;

/// curl with a kubeconfig's CA and, unless made anonymous, its client
/// certificate and key.
#[derive(Debug)]
pub struct Curl {
    server: String,
    dir: tempfile::TempDir,
    anonymous: bool,
    http1: bool,
}

impl Curl {
    /// curl as the kubeconfig's user.
    pub fn for_kubeconfig(path: &Path) -> Curl {
        let credentials = Kubeconfig::read(path)
            .map_err(|error| error.to_string())
            .and_then(|kubeconfig| kubeconfig.credentials())
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let dir = tempfile::tempdir().expect("a temporary directory");
        let write = |name: &str, pem: Option<Vec<u8>>| {
            let pem = pem.unwrap_or_else(|| panic!("{}: no {name}", path.display()));
            std::fs::write(dir.path().join(name), pem).expect("writing a PEM file");
        };
        write("ca.crt", credentials.ca_pem);
        write("client.crt", credentials.client_cert_pem);
        write("client.key", credentials.client_key_pem);
        Curl {
            server: credentials.server,
            dir,
            anonymous: false,
            http1: false,
        }
    }

    /// The same, without presenting the client certificate.
    pub fn anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }

    /// The same, over HTTP/1.1 (`--http1.1`) instead of HTTP/2.
    pub fn http1(mut self) -> Self {
        self.http1 = true;
        self
    }

    /// A file in curl's scratch directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `curl -X method URL [--data-binary body]`: the status code and the
    /// JSON answer.
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let body = body.map(|body| {
            let file = self.file("body.json");
            std::fs::write(&file, body).expect("writing the request body");
            file
        });
        self.call_file(method, path, body.as_deref()).await
    }

    /// `curl -X method URL [--data-binary @file]`: the status code and the
    /// JSON answer. Panics when curl fails (no answer, a framing error).
    pub async fn call_file(&self, method: &str, path: &str, body: Option<&Path>) -> (u16, Value) {
        let (code, answer) = self
            .raw(method, path, body, &[])
            .await
            .unwrap_or_else(|error| panic!("curl {method} {path}: {error}"));
        let value = serde_json::from_str(&answer)
            .unwrap_or_else(|error| panic!("curl {method} {path}: {error}: {answer}"));
        (code, value)
    }

    /// `curl -X method URL [--data-binary @file] [extra...]`: the status code
    /// and the answer as text, or curl's complaint when it got no answer.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Path>,
        extra: &[&str],
    ) -> Result<(u16, String), String> {
        let mut command = tokio::process::Command::new("curl");
        command
            .args(["-sS", "-X", method, "-w", "\n%{http_code}"])
            .arg(if self.http1 { "--http1.1" } else { "--http2" })
            .arg("--cacert")
            .arg(self.file("ca.crt"))
            .args(["-H", "Content-Type: application/json"]);
        if !self.anonymous {
            command
                .arg("--cert")
                .arg(self.file("client.crt"))
                .arg("--key")
                .arg(self.file("client.key"));
        }
        if let Some(file) = body {
            command
                .arg("--data-binary")
                .arg(format!("@{}", file.display()));
        }
        let output = command
            .args(extra)
            .arg(format!("{}{path}", self.server))
            .output()
            .await
            .expect("curl runs (hack/setup-deps.sh installs it)");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            return Err(format!(
                "{} ({})\n{stdout}",
                String::from_utf8_lossy(&output.stderr).trim(),
                output.status
            ));
        }
        let (answer, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        Ok((code.parse().unwrap_or(0), answer.to_owned()))
    }
}
