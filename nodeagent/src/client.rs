//! The agent's Kubernetes client: kube-rs over rustls, configured from a
//! kubeconfig file or, without one, from the pod's in-cluster service
//! account. Like a kubelet's, it speaks HTTP/2 when the server offers it
//! (ALPN `h2`, as kube-apiserver and nmstate-apiserver do), so one TLS
//! connection carries the agent's watches and requests as streams; kube's
//! own client speaks HTTP/1.1 only, one connection per open watch. The nmstate.io kinds are the `nmstate-openapi` types, wrapped so
//! that kube's typed `Api` reads and writes them.
//!
//! The agent only ever touches its own node's objects (node restriction on
//! the server enforces it): NodeNetworkState `<node>` and the status of the
//! enactments labelled `nmstate.io/node=<node>`.

use std::{borrow::Cow, path::Path, time::Duration};

use hyper_util::{
    client::legacy::connect::HttpConnector,
    rt::{TokioExecutor, TokioTimer},
};

use kube::{
    Api, Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};
use nmstate_openapi::{
    GROUP, NodeNetworkConfigurationEnactment, NodeNetworkState, ObjectMeta, V1, resources::Resource,
};
use serde::{Deserialize, Serialize};

/// Failures building the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kubeconfig file cannot be read or used.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// Neither a kubeconfig nor the in-cluster environment is there.
    #[error("no kubeconfig given and no in-cluster configuration: {0}")]
    Infer(#[source] kube::config::InferConfigError),
    /// The HTTP client cannot be built (TLS material, proxy settings).
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// One of our kinds, as kube's typed API sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Object<T>(pub T);

impl<T: Resource> kube::Resource for Object<T> {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(T::KIND.kind())
    }

    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(GROUP)
    }

    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(V1)
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(T::KIND.plural())
    }

    fn meta(&self) -> &ObjectMeta {
        self.0.metadata()
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.metadata_mut()
    }
}

/// A NodeNetworkState for kube's `Api`.
pub type StateObject = Object<NodeNetworkState>;
/// A NodeNetworkConfigurationEnactment for kube's `Api`.
pub type EnactmentObject = Object<NodeNetworkConfigurationEnactment>;

/// A client from `kubeconfig`, or from the in-cluster environment (service
/// account token and CA, `KUBERNETES_SERVICE_HOST`) when it is `None`.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig_error = |source| Error::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(kubeconfig_error)?
        }
        None => Config::infer().await.map_err(Error::Infer)?,
    };
    from_config(config)
}

/// A client from a kube `config`, over HTTP/2 when the server offers it
/// and HTTP/1.1 otherwise. kube's default stack minus what the agent does
/// not use (response decompression, request tracing spans, retries of
/// 5xx, read and write timeouts on the connection, which would cut the
/// long watch streams that share it); with its base URL, authentication
/// (token, exec plugin) and extra headers.
pub fn from_config(config: Config) -> Result<Client, Error> {
    use kube::client::ConfigExt;

    let tls = config.rustls_client_config().map_err(Error::Client)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    http.set_nodelay(true);
    let mut builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls_pki_types::ServerName::try_from(name.clone()).map_err(|error| {
            Error::Client(kube::Error::Service(
                format!("tls-server-name {name}: {error}").into(),
            ))
        })?;
        builder =
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let connector = builder.enable_all_versions().wrap_connector(http);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        // A dead connection (a replica gone, a balancer restarted) is found
        // by pings, not only when the next write fails.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_while_idle(true)
        .timer(TokioTimer::new())
        .build(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(Error::Client)?)
        .layer(config.extra_headers_layer().map_err(Error::Client)?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}

/// The NodeNetworkState API.
pub fn states(client: &Client) -> Api<StateObject> {
    Api::all(client.clone())
}

/// The enactment API.
pub fn enactments(client: &Client) -> Api<EnactmentObject> {
    Api::all(client.clone())
}

/// Whether `error` is the server's 409 Conflict (a stale resourceVersion).
pub fn is_conflict(error: &kube::Error) -> bool {
    status_code(error) == Some(409)
}

/// Whether `error` is the server's 404 Not Found.
pub fn is_not_found(error: &kube::Error) -> bool {
    status_code(error) == Some(404)
}

/// The HTTP status of a server error response.
pub fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
