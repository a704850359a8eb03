//! The plugin's only IO with the cluster: a kube client built the way
//! kubectl builds its own (`--kubeconfig`, else `KUBECONFIG`, else
//! `~/.kube/config`; `--context`), and the few requests the commands make,
//! as plain HTTP requests decoded into nmstate-openapi's types.

use std::path::PathBuf;

use nmstate_openapi::{
    List, NodeNetworkConfigurationEnactment, NodeNetworkConfigurationPolicy, NodeNetworkState,
    subresources::{NodeNetworkConfigurationPolicyDryRun, NodeNetworkConfigurationPolicyRender},
};
use serde::de::DeserializeOwned;

/// The path of the group's preferred version.
const V1: &str = "/apis/nmstate.io/v1";

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or names no usable context.
    #[error("invalid kubeconfig: {0}")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    /// The server answered with an error, or could not be reached; kube's
    /// message already says which (`NotFound`, `Invalid` with the causes).
    #[error(transparent)]
    Request(kube::Error),
    /// A request could not be built (a name that is no URL segment).
    #[error("invalid request: {0}")]
    Build(#[source] http::Error),
}

impl Error {
    /// Whether the server said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Request(kube::Error::Api(status)) if status.is_not_found())
    }
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the cluster's credentials come from, as kubectl's global flags.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// `--kubeconfig`: a file, in place of `KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`: a context of the kubeconfig, in place of its current one.
    pub context: Option<String>,
}

/// A client for the nmstate.io API.
#[derive(Clone)]
pub struct NmstateClient {
    client: kube::Client,
}

impl std::fmt::Debug for NmstateClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NmstateClient").finish_non_exhaustive()
    }
}

impl NmstateClient {
    /// Connects as kubectl would with the same flags and environment.
    pub async fn connect(connection: &Connection) -> Result<Self> {
        let options = kube::config::KubeConfigOptions {
            context: connection.context.clone(),
            ..Default::default()
        };
        let config = match &connection.kubeconfig {
            Some(path) => {
                let kubeconfig =
                    kube::config::Kubeconfig::read_from(path).map_err(Error::Kubeconfig)?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(Error::Kubeconfig)?
            }
            None => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(Error::Kubeconfig)?,
        };
        let client = kube::Client::try_from(config).map_err(Error::Request)?;
        Ok(Self { client })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T> {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(Error::Build)?;
        self.client.request(request).await.map_err(Error::Request)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(http::Method::GET, path, Vec::new()).await
    }

    /// `GET .../nodenetworkconfigurationpolicies/NAME/render?node=NODE`.
    pub async fn render(
        &self,
        policy: &str,
        node: &str,
    ) -> Result<NodeNetworkConfigurationPolicyRender> {
        let node: String = form_encode(node);
        self.get(&format!(
            "{V1}/nodenetworkconfigurationpolicies/{}/render?node={node}",
            form_encode(policy)
        ))
        .await
    }

    /// `POST .../nodenetworkconfigurationpolicies/NAME/dry-run` with the
    /// proposed policy (JSON) as its body.
    pub async fn dry_run(
        &self,
        policy: &str,
        body: &serde_json::Value,
    ) -> Result<NodeNetworkConfigurationPolicyDryRun> {
        let body = serde_json::to_vec(body).unwrap_or_default();
        self.send(
            http::Method::POST,
            &format!(
                "{V1}/nodenetworkconfigurationpolicies/{}/dry-run",
                form_encode(policy)
            ),
            body,
        )
        .await
    }

    /// A policy.
    pub async fn policy(&self, name: &str) -> Result<NodeNetworkConfigurationPolicy> {
        self.get(&format!(
            "{V1}/nodenetworkconfigurationpolicies/{}",
            form_encode(name)
        ))
        .await
    }

    /// The enactments of a policy (label `nmstate.io/policy`).
    pub async fn enactments_of(
        &self,
        policy: &str,
    ) -> Result<Vec<NodeNetworkConfigurationEnactment>> {
        let selector = form_encode(&format!(
            "{}={policy}",
            nmstate_openapi::ENACTMENT_POLICY_LABEL
        ));
        let list: List<NodeNetworkConfigurationEnactment> = self
            .get(&format!(
                "{V1}/nodenetworkconfigurationenactments?labelSelector={selector}"
            ))
            .await?;
        Ok(list.items)
    }

    /// An enactment.
    pub async fn enactment(&self, name: &str) -> Result<NodeNetworkConfigurationEnactment> {
        self.get(&format!(
            "{V1}/nodenetworkconfigurationenactments/{}",
            form_encode(name)
        ))
        .await
    }

    /// A node's NodeNetworkState.
    pub async fn node_state(&self, name: &str) -> Result<NodeNetworkState> {
        self.get(&format!("{V1}/nodenetworkstates/{}", form_encode(name)))
            .await
    }
}

/// Percent-encodes everything but unreserved characters, for path segments
/// and query values alike.
fn form_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_selectors_and_names() {
        assert_eq!(form_encode("node-a.br1"), "node-a.br1");
        assert_eq!(
            form_encode("nmstate.io/policy=p"),
            "nmstate.io%2Fpolicy%3Dp"
        );
    }
}
