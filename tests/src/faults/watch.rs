//! A watch that survives the faults: list, then watch from the list's
//! `resourceVersion`, and after every end (a killed replica, a timeout, a
//! dropped connection) watch again from the last event's
//! `resourceVersion`; only a `410 Gone` makes it list again. Everything
//! it sees goes, in order, to one channel as [`Seen`] messages, each tagged
//! with the connection it came on, so the checker can tell one watch from
//! the next.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::{sync::mpsc::UnboundedSender, task::JoinHandle};

use crate::https::{HttpsClient, watch_lines};

/// The two kinds the checker follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// NodeNetworkConfigurationPolicy.
    Policy,
    /// NodeNetworkConfigurationEnactment.
    Enactment,
}

impl Kind {
    /// The collection's path.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Policy => "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies",
            Kind::Enactment => "/apis/nmstate.io/v1/nodenetworkconfigurationenactments",
        }
    }
}

/// What a watch saw.
#[derive(Clone, Debug)]
pub enum Seen {
    /// A full list at `revision` (the first one, or after `410 Gone`).
    Listed {
        /// The kind.
        kind: Kind,
        /// The list's `resourceVersion`.
        revision: i64,
        /// Its items.
        objects: Vec<Value>,
    },
    /// A new watch connection, starting after `from`.
    Connected {
        /// The kind.
        kind: Kind,
        /// The connection's number (per kind, from 1).
        stream: u64,
        /// The `resourceVersion` it was opened with.
        from: i64,
    },
    /// An event of connection `stream`.
    Event {
        /// The kind.
        kind: Kind,
        /// The connection's number.
        stream: u64,
        /// `ADDED`, `MODIFIED`, `DELETED` or `BOOKMARK`.
        kind_of_event: String,
        /// Its `metadata.resourceVersion`.
        revision: i64,
        /// The object.
        object: Value,
    },
    /// Connection `stream` ended (`reason` says how).
    Ended {
        /// The kind.
        kind: Kind,
        /// The connection's number.
        stream: u64,
        /// Why.
        reason: String,
    },
}

impl Seen {
    /// The kind it is about.
    pub fn kind(&self) -> Kind {
        match self {
            Seen::Listed { kind, .. }
            | Seen::Connected { kind, .. }
            | Seen::Event { kind, .. }
            | Seen::Ended { kind, .. } => *kind,
        }
    }
}

/// The `resourceVersion` of an object or list, as a number.
pub fn revision_of(value: &Value) -> Option<i64> {
    value["metadata"]["resourceVersion"].as_str()?.parse().ok()
}

/// Starts following `kind` through `client`; the task runs until aborted.
/// `timeout_seconds` ends each watch from the server's side now and then,
/// so reconnecting is exercised also without faults.
pub fn follow(
    client: HttpsClient,
    kind: Kind,
    timeout_seconds: u64,
    sender: UnboundedSender<Seen>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut revision: Option<i64> = None;
        let mut stream = 0;
        loop {
            let from = match revision {
                Some(revision) => revision,
                None => match list(&client, kind).await {
                    Ok((listed, objects)) => {
                        let _ = sender.send(Seen::Listed {
                            kind,
                            revision: listed,
                            objects,
                        });
                        revision = Some(listed);
                        listed
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
            };
            stream += 1;
            let reason = watch_once(
                &client,
                kind,
                stream,
                from,
                timeout_seconds,
                &sender,
                &mut revision,
            )
            .await;
            let _ = sender.send(Seen::Ended {
                kind,
                stream,
                reason,
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn list(client: &HttpsClient, kind: Kind) -> anyhow::Result<(i64, Vec<Value>)> {
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(kind.path())).await??;
    if !response.status.is_success() {
        anyhow::bail!("list: {} {}", response.status, response.body);
    }
    let list: Value = serde_json::from_str(&response.body)?;
    let revision = revision_of(&list).ok_or_else(|| anyhow::anyhow!("list without revision"))?;
    Ok((
        revision,
        list["items"].as_array().cloned().unwrap_or_default(),
    ))
}

/// One watch connection; returns why it ended. `revision` follows the
/// events (and becomes `None` on `410 Gone`).
async fn watch_once(
    client: &HttpsClient,
    kind: Kind,
    stream: u64,
    from: i64,
    timeout_seconds: u64,
    sender: &UnboundedSender<Seen>,
    revision: &mut Option<i64>,
) -> String {
    let path = format!(
        "{}?watch=true&resourceVersion={from}&allowWatchBookmarks=true&timeoutSeconds={timeout_seconds}",
        kind.path()
    );
    let open = async {
        let mut connection = client.connect().await?;
        let response = connection.open("GET", &path, &[], Bytes::new()).await?;
        anyhow::Ok((connection, response))
    };
    let (_connection, response) = match tokio::time::timeout(Duration::from_secs(10), open).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(error)) => return format!("connecting: {error:#}"),
        Err(_) => return "connecting: timed out".to_owned(),
    };
    if response.status() == http::StatusCode::GONE {
        *revision = None;
        return "410 Gone".to_owned();
    }
    if !response.status().is_success() {
        return format!("status {}", response.status());
    }
    let _ = sender.send(Seen::Connected { kind, stream, from });
    let mut gone = false;
    watch_lines(response.into_body(), |line| {
        let Ok(event) = serde_json::from_slice::<Value>(line) else {
            return;
        };
        let type_ = event["type"].as_str().unwrap_or_default().to_owned();
        if type_ == "ERROR" {
            if event["object"]["code"] == 410 {
                gone = true;
            }
            return;
        }
        let object = event["object"].clone();
        let Some(at) = revision_of(&object) else {
            return;
        };
        *revision = Some(at);
        let _ = sender.send(Seen::Event {
            kind,
            stream,
            kind_of_event: type_,
            revision: at,
            object,
        });
    })
    .await;
    if gone {
        *revision = None;
        return "410 Gone (in the stream)".to_owned();
    }
    "ended".to_owned()
}
