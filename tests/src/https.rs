//! A minimal HTTPS client for tests: one request per connection, trusting
//! exactly the CA the test names, so a test also proves the server's
//! certificate chain is right; optionally presenting a client certificate.
//!
//! [`HttpsClient::connect`] opens one kept-alive HTTP/1.1 connection for
//! many requests in turn, as benchmarks need: a TLS handshake per request
//! would measure the handshake.

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{
    body::Incoming,
    client::conn::{http1::SendRequest, http2},
};
use hyper_util::rt::TokioIo;
use nmstate_apiserver::kubeconfig::Kubeconfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// An HTTPS client for one server.
#[derive(Clone, Debug)]
pub struct HttpsClient {
    address: SocketAddr,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
}

/// A response with its body read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResponse {
    /// The status code.
    pub status: StatusCode,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body as text.
    pub body: String,
}

/// A client certificate (chain, leaf first) and its key, as PEM.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate chain.
    pub cert_pem: Vec<u8>,
    /// The private key.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").finish_non_exhaustive()
    }
}

impl HttpsClient {
    /// A client for `address` that trusts only the CA in `ca_file` and
    /// checks the certificate names `server_name`; it presents no client
    /// certificate.
    pub fn new(address: SocketAddr, ca_file: &Path, server_name: &str) -> Result<Self> {
        let ca_pem =
            std::fs::read(ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
        Self::with_identity(address, &ca_pem, server_name, None)
    }

    /// A client that trusts only the CA certificates in `ca_pem` and
    /// presents `identity` when the server asks for a certificate.
    pub fn with_identity(
        address: SocketAddr,
        ca_pem: &[u8],
        server_name: &str,
        identity: Option<&ClientIdentity>,
    ) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert?)?;
        }
        if roots.is_empty() {
            bail!("no CA certificate to trust");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let tls = match identity {
            None => builder.with_no_client_auth(),
            Some(identity) => {
                let chain = CertificateDer::pem_slice_iter(&identity.cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .context("client certificate PEM")?;
                let key =
                    PrivateKeyDer::from_pem_slice(&identity.key_pem).context("client key PEM")?;
                builder.with_client_auth_cert(chain, key)?
            }
        };
        Ok(Self {
            address,
            server_name: ServerName::try_from(server_name.to_string())?,
            tls: Arc::new(tls),
        })
    }

    /// A client as kubectl would be with this kubeconfig: the current
    /// context's server (`https://IP:PORT`), CA and client certificate.
    pub fn from_kubeconfig(path: &Path) -> Result<Self> {
        let credentials = Kubeconfig::read(path)?
            .credentials()
            .map_err(|message| anyhow::anyhow!("{}: {message}", path.display()))?;
        let authority = credentials
            .server
            .strip_prefix("https://")
            .with_context(|| format!("server {:?} is not https://", credentials.server))?;
        let address: SocketAddr = authority
            .parse()
            .with_context(|| format!("server {:?} is not https://IP:PORT", credentials.server))?;
        let identity = match (credentials.client_cert_pem, credentials.client_key_pem) {
            (Some(cert_pem), Some(key_pem)) => Some(ClientIdentity { cert_pem, key_pem }),
            _ => None,
        };
        let ca_pem = credentials
            .ca_pem
            .context("no certificate-authority-data in the kubeconfig")?;
        Self::with_identity(
            address,
            &ca_pem,
            &address.ip().to_string(),
            identity.as_ref(),
        )
    }

    /// The server's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Sends `method path` with an optional body and reads the whole answer.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<TestResponse> {
        self.request_with(method, path, &[], body).await
    }

    /// Sends `method path` with extra headers and an optional body, and
    /// reads the whole answer.
    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<TestResponse> {
        let mut connection = self.connect().await?;
        let response = connection
            .request(method, path, headers, Bytes::from(body.unwrap_or_default()))
            .await?;
        connection.close().await;
        Ok(TestResponse {
            status: response.status,
            content_type: response.content_type,
            body: String::from_utf8_lossy(&response.body).into_owned(),
        })
    }

    /// Opens one HTTP/1.1 connection (TCP and TLS handshake done) for any
    /// number of requests, one after another.
    pub async fn connect(&self) -> Result<Connection> {
        let tls = self.tls_stream(self.tls.clone()).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        Ok(Connection {
            sender,
            host: self.address.to_string(),
            task: tokio::spawn(connection),
        })
    }

    /// A TLS connection (handshake done) with nothing sent on it yet, for
    /// tests that write raw HTTP/1.1 (slow senders).
    pub async fn raw(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        self.tls_stream(self.tls.clone()).await
    }

    /// Opens one HTTP/2 connection (ALPN `h2`) for many concurrent
    /// requests, each a stream.
    pub async fn connect_http2(&self) -> Result<http2::SendRequest<Full<Bytes>>> {
        let mut config = (*self.tls).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tls = self.tls_stream(Arc::new(config)).await?;
        let (sender, connection) =
            http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    async fn tls_stream(
        &self,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.address).await?;
        tcp.set_nodelay(true)?;
        TlsConnector::from(config)
            .connect(self.server_name.clone(), tcp)
            .await
            .context("TLS handshake")
    }

    /// `method path` with `body` as JSON: a merge patch for `PATCH`, plain
    /// JSON otherwise.
    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<TestResponse> {
        let content_type = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        self.request_with(
            method,
            path,
            &[("content-type", content_type)],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<TestResponse> {
        self.request("GET", path, None).await
    }
}

/// One kept-alive HTTP/1.1 connection to the server (see
/// [`HttpsClient::connect`]). Dropping it, and any body still being read,
/// ends the connection.
#[derive(Debug)]
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    task: JoinHandle<hyper::Result<()>>,
}

/// A response with its body read, as bytes.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: StatusCode,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl Connection {
    /// Sends a request and reads the whole answer.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<RawResponse> {
        let response = self.open(method, path, headers, body).await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(RawResponse {
            status,
            content_type,
            body,
        })
    }

    /// Sends a request and returns as soon as the response head is in, with
    /// the body still to be read (for watches). The connection serves the
    /// next request only once that body has been read to its end.
    pub async fn open(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response<Incoming>> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.sender.ready().await?;
        Ok(self
            .sender
            .send_request(request.body(Full::new(body))?)
            .await?)
    }

    /// Closes the connection after the requests sent so far.
    pub async fn close(self) {
        drop(self.sender);
        let _ = self.task.await;
    }
}

/// Reads a watch response's body (one JSON event per line), handing each
/// line to `each`, until the body ends or breaks (the server stopped).
pub async fn watch_lines(mut body: Incoming, mut each: impl FnMut(&[u8])) {
    let mut buffer = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        while let Some(end) = buffer.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            each(&line);
        }
    }
}
