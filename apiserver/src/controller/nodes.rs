//! The cluster's Node objects as the controller's node registry, when the
//! server runs behind a kube-apiserver.
//!
//! In a cluster only the cluster admin (and the Node's own kubelet, under
//! kube-apiserver's NodeRestriction) sets a Node's labels, while a node's
//! agent writes its own NodeNetworkState. Selecting policies by the
//! NodeNetworkState's labels would let a node identity choose which
//! policies apply to it (`kubectl label nns n1 rack=r9` with n1's token).
//! So with a cluster the controller selects by the Node's labels and
//! ignores the NodeNetworkState's; a NodeNetworkState without a Node is no
//! node and no policy selects it. Standalone (no cluster) the
//! NodeNetworkState's labels stay the node's labels.
//!
//! This file owns the poll of `GET /api/v1/nodes` (served from
//! kube-apiserver's watch cache, `resourceVersion=0`, metadata only) and
//! publishes the latest name → labels map; it decides nothing.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use serde::Deserialize;
use tokio::sync::watch;

use crate::auth::cluster::{ClusterAccess, ReviewClient};

/// How often the Node list is read again: how long a Node label change
/// may take to reach policy selection.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Node name → the Node's labels.
pub type NodeLabels = Arc<HashMap<String, BTreeMap<String, String>>>;

/// The Node list, reduced to what selection needs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeList {
    /// `null` in an empty PartialObjectMetadataList.
    items: Option<Vec<NodeItem>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeItem {
    metadata: NodeMeta,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeMeta {
    name: String,
    labels: Option<BTreeMap<String, String>>,
}

/// The path of the list.
const NODES: &str = "/api/v1/nodes?resourceVersion=0";
/// Only the Nodes' metadata (names and labels; no status, images or
/// conditions), with plain JSON as the fallback.
const METADATA_ONLY: &str =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";

/// Reads the Node list from `access` every [`POLL_INTERVAL`] until
/// `shutdown` resolves, publishing each changed map; `None` until the first
/// list succeeded. A failed read keeps the last map (and is logged).
pub fn watch_nodes(
    access: &ClusterAccess,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<watch::Receiver<Option<NodeLabels>>, crate::auth::cluster::Error> {
    let client = ReviewClient::new(access)?;
    let (sender, receiver) = watch::channel(None);
    tokio::spawn(async move {
        let poll = async {
            let mut interval = tokio::time::interval(POLL_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                interval.tick().await;
                match client.get_as::<NodeList>(NODES, METADATA_ONLY).await {
                    Ok(Some(list)) => {
                        if failing {
                            tracing::info!("policy controller: reading Nodes again");
                            failing = false;
                        }
                        let labels: HashMap<_, _> = list
                            .items
                            .unwrap_or_default()
                            .into_iter()
                            .map(|node| {
                                (node.metadata.name, node.metadata.labels.unwrap_or_default())
                            })
                            .collect();
                        sender.send_if_modified(|current| {
                            if current.as_deref() == Some(&labels) {
                                return false;
                            }
                            *current = Some(Arc::new(labels));
                            true
                        });
                    }
                    Ok(None) => {
                        if !failing {
                            tracing::warn!(
                                server = client.server(),
                                "policy controller: the cluster serves no Nodes (404); no node is selected"
                            );
                            failing = true;
                        }
                    }
                    Err(error) => {
                        if !failing {
                            tracing::warn!(%error, "policy controller: cannot read Nodes; keeping the labels last read");
                            failing = true;
                        }
                    }
                }
            }
        };
        tokio::select! {
            () = poll => {}
            () = shutdown => {}
        }
    });
    Ok(receiver)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn node_lists_as_kube_apiserver_sends_them() {
        // No Nodes yet: kube-apiserver sends `items: null`.
        let empty: NodeList = serde_json::from_str(
            r#"{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"7"},"items":null}"#,
        )
        .unwrap();
        assert!(empty.items.unwrap_or_default().is_empty());
        let list: NodeList = serde_json::from_str(
            r#"{"items":[{"metadata":{"name":"n1","labels":{"rack":"r1"}}},{"metadata":{"name":"n2"}}]}"#,
        )
        .unwrap();
        let items = list.items.unwrap();
        assert_eq!(items[0].metadata.name, "n1");
        assert_eq!(items[0].metadata.labels.as_ref().unwrap()["rack"], "r1");
        assert_eq!(items[1].metadata.labels, None);
    }
}
