//! The etcd backend: the production and high-availability store.
//!
//! This module owns the etcd client and the translation between the storage
//! contract and etcd's API: transactions for create and compare-and-swap,
//! ranges for lists, watches with `prev_kv`. Every etcd error becomes a
//! storage error in one function, `map_error`. It must not cache data or
//! revisions as truth: etcd is the source of truth, and several API servers
//! may share it.
//!
//! There is one client per endpoint rather than etcd-client's balanced
//! channel: its balancer keeps sending requests to a dead member (measured:
//! with one of two endpoints down, 15 of 40 reads failed). Here a request
//! goes to the endpoint that answered last and moves on to the next only
//! when it could not even be sent (no connection could be made), which is
//! safe for writes too.
//!
//! Known differences from the embedded store, all inherited from etcd:
//! - an empty etcd is at revision 1, so the first write gets revision 2;
//! - etcd does not report its compaction point (3.4 and 3.5 have no call
//!   for it);
//!   [`Store::compacted_revision`] finds it by probing (a read at revision
//!   1, then a watch from revision 1, which etcd cancels naming the point);
//! - requested progress notifications of etcd releases without the fix for
//!   etcd-io/etcd#15220 (Debian's 3.4.23 among them) can overtake events;
//!   the `watch` submodule checks each one before passing it on; and
//!   releases with that fix drop a request made while the watch catches
//!   up, so it asks again until answered.

mod watch;

use std::{
    fmt,
    future::Future,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    TlsOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
};

use crate::storage::{
    Error, KEY_PREFIX, KeyValue, Leadership, ListOptions, ListResult, PreviousValues, Result,
    Revision, Store, Watch,
};

/// How to reach etcd (`--etcd-servers`, `--etcd-cafile`, `--etcd-certfile`,
/// `--etcd-keyfile`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `https://10.0.0.1:2379`. With TLS files, use
    /// `https://` URLs (or bare `host:port`).
    pub endpoints: Vec<String>,
    /// The CA that signed etcd's serving certificate (PEM). Needed for
    /// `https://` endpoints: no system roots are trusted.
    pub ca_file: Option<PathBuf>,
    /// The client certificate (PEM), for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
}

/// How long connecting and the first answer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one request may take before it counts as unavailable. Requests
/// to an unreachable etcd can otherwise wait for a connection indefinitely.
const ETCD_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 pings on idle connections, so that a watch on a dead etcd (host
/// gone, not just process gone) ends instead of waiting forever.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The store on etcd.
#[derive(Clone)]
pub struct EtcdStore {
    etcd: Arc<Etcd>,
}

/// The clients and what every request needs; shared with running watches.
struct Etcd {
    /// One client per endpoint, in the configured order.
    endpoints: Vec<Endpoint>,
    /// The endpoint tried first: the last one that answered.
    preferred: AtomicUsize,
    /// Names the endpoints in errors: `etcd at https://...`.
    backend: String,
    /// The highest compaction point seen (by our own compactions or
    /// probes); a lower bound of etcd's.
    compacted_seen: AtomicI64,
}

/// One etcd member's client.
struct Endpoint {
    url: String,
    client: Client,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("backend", &self.etcd.backend)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects and checks that the cluster answers a linearizable read, so
    /// that a wrong endpoint fails here, within a few seconds, with
    /// [`Error::Unavailable`] naming it.
    pub async fn connect(config: &EtcdConfig) -> Result<Self> {
        let backend = format!("etcd at {}", config.endpoints.join(","));
        if config.endpoints.is_empty() {
            return Err(Error::Rejected {
                backend,
                message: "no etcd endpoints configured".into(),
            });
        }
        let options = connect_options(config, &backend)?;
        let mut endpoints = Vec::new();
        for url in &config.endpoints {
            // Connecting is lazy: this only checks the URL and TLS settings.
            let connect = Client::connect([url.as_str()], Some(options.clone()));
            let client = within(&backend, "connect", CONNECT_TIMEOUT, connect).await?;
            endpoints.push(Endpoint {
                url: url.clone(),
                client,
            });
        }
        let etcd = Etcd {
            endpoints,
            preferred: AtomicUsize::new(0),
            backend,
            compacted_seen: AtomicI64::new(0),
        };
        etcd.call_within("first read", CONNECT_TIMEOUT, |mut client| async move {
            let options = GetOptions::new().with_count_only();
            client.get(KEY_PREFIX, Some(options)).await
        })
        .await?;
        Ok(EtcdStore {
            etcd: Arc::new(etcd),
        })
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let response = self
            .etcd
            .call(
                "get",
                |mut client| async move { client.get(key, None).await },
            )
            .await?;
        response.kvs().first().map(convert_kv).transpose()
    }

    async fn list(&self, options: ListOptions) -> Result<ListResult> {
        match self.list_once(&options).await {
            Err(error) => Err(self.etcd.complete(error).await),
            ok => ok,
        }
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let txn = || {
            Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value.as_slice(), None)])
        };
        let response = self.etcd.txn("create", txn).await?;
        if !response.succeeded() {
            return Err(Error::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let revision = self.etcd.header_revision(response.header())?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Revision,
    ) -> Result<KeyValue> {
        // `version > 0` as well: a missing key has mod_revision 0, and an
        // update must never create.
        let txn = || {
            Txn::new()
                .when([
                    Compare::version(key, CompareOp::Greater, 0),
                    Compare::mod_revision(key, CompareOp::Equal, expected_revision),
                ])
                // The put alone: no read of the old value (not even keys
                // only, which etcd serves by decoding the stored value).
                .and_then([TxnOp::put(key, value.as_slice(), None)])
                .or_else([TxnOp::get(key, None)])
        };
        let response = self.etcd.txn("update", txn).await?;
        if !response.succeeded() {
            return Err(self
                .etcd
                .precondition_failed(key, expected_revision, &response));
        }
        let revision = self.etcd.header_revision(response.header())?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            mod_revision: revision,
        })
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<Revision>,
    ) -> Result<(KeyValue, Revision)> {
        let mut compares = vec![Compare::version(key, CompareOp::Greater, 0)];
        compares.extend(
            expected_revision
                .map(|expected| Compare::mod_revision(key, CompareOp::Equal, expected)),
        );
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self.etcd.txn("delete", || txn.clone()).await?;
        if !response.succeeded() {
            let expected = expected_revision.unwrap_or(0);
            return Err(self.etcd.precondition_failed(key, expected, &response));
        }
        let revision = self.etcd.header_revision(response.header())?;
        let prev = match response.op_responses().first() {
            Some(TxnOpResponse::Delete(deleted)) => deleted.prev_kvs().first().map(convert_kv),
            _ => None,
        };
        let prev = prev.transpose()?.ok_or_else(|| Error::NotFound {
            key: key.to_owned(),
        })?;
        Ok((prev, revision))
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.etcd.current_revision().await
    }

    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
        previous: PreviousValues,
    ) -> Result<Watch> {
        watch::start(self.etcd.clone(), prefix, after, previous).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= 0 {
            return Ok(());
        }
        let compact = |mut client: Client| async move { client.compact(revision, None).await };
        match self.etcd.call("compact", compact).await {
            Ok(_) => {
                self.etcd.saw_compaction(revision);
                Ok(())
            }
            // Already compacted at or past it: what was asked for holds.
            Err(Error::Compacted { .. }) => Ok(()),
            Err(error) => Err(self.etcd.complete(with_requested(error, revision)).await),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.etcd.compacted_revision().await
    }

    /// etcd's election API on a lease: the campaign waits while another
    /// replica leads; leadership is lost when the lease cannot be renewed
    /// (and then expires on its own, so two leaders never overlap for
    /// longer than the renewal interval).
    async fn elect(&self, election: &str, identity: &str) -> Result<Leadership> {
        let lease = self
            .etcd
            .call("lease grant", |mut client| async move {
                client.lease_grant(LEADER_LEASE_TTL_SECONDS, None).await
            })
            .await?
            .id();
        let name = format!("{KEY_PREFIX}leader/{election}");
        let campaign = {
            let name = name.clone();
            let identity = identity.to_owned();
            let client = self.etcd.client();
            async move {
                let mut client = client;
                client.campaign(name, identity, lease).await
            }
        };
        // The campaign blocks while someone else leads; keep the lease alive
        // meanwhile, or it expires and the campaign fails.
        let mut keeper = tokio::spawn(keep_lease(self.etcd.clone(), lease, None));
        let campaign = tokio::select! {
            result = campaign => result,
            _ = &mut keeper => {
                return Err(Error::Unavailable {
                    backend: self.etcd.backend.clone(),
                    message: "lost the election lease while campaigning".into(),
                    source: None,
                });
            }
        };
        keeper.abort();
        if let Err(error) = campaign {
            self.revoke(lease).await;
            return Err(map_error(&self.etcd.backend, error));
        }
        let (sender, lost) = tokio::sync::watch::channel(false);
        let keeper = tokio::spawn(keep_lease(self.etcd.clone(), lease, Some(sender)));
        let store = self.clone();
        Ok(Leadership::new(
            lost,
            keeper,
            Box::pin(async move { store.revoke(lease).await }),
        ))
    }
}

/// Seconds an election lease lives without renewal: how long a crashed
/// leader's replacement waits.
const LEADER_LEASE_TTL_SECONDS: i64 = 15;

/// Renews `lease` every third of its life until a renewal fails, then sets
/// `lost` (if given) and returns.
async fn keep_lease(etcd: Arc<Etcd>, lease: i64, lost: Option<tokio::sync::watch::Sender<bool>>) {
    let interval = Duration::from_secs(u64::try_from(LEADER_LEASE_TTL_SECONDS / 3).unwrap_or(5));
    loop {
        let renewed = async {
            let mut client = etcd.client();
            let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            let answer = stream.message().await?;
            Ok::<bool, etcd_client::Error>(answer.is_some_and(|answer| answer.ttl() > 0))
        };
        match tokio::time::timeout(interval, renewed).await {
            Ok(Ok(true)) => {}
            outcome => {
                tracing::warn!(lease, ?outcome, "could not renew the leader lease");
                if let Some(lost) = lost {
                    let _ = lost.send(true);
                }
                return;
            }
        }
        tokio::time::sleep(interval).await;
    }
}

impl EtcdStore {
    /// Revokes `lease`, deleting the keys bound to it; best effort.
    async fn revoke(&self, lease: i64) {
        let revoked = self
            .etcd
            .call("lease revoke", |mut client| async move {
                client.lease_revoke(lease).await
            })
            .await;
        if let Err(error) = revoked {
            tracing::warn!(lease, %error, "could not revoke the leader lease");
        }
    }
}

impl EtcdStore {
    async fn list_once(&self, options: &ListOptions) -> Result<ListResult> {
        let range_end = prefix_range_end(&options.prefix);
        let start = list_start(&options.prefix, options.start_after.as_deref());
        let revision = options.revision.filter(|revision| *revision > 0);
        let limit = options.limit.filter(|limit| *limit > 0);
        let mut get = GetOptions::new().with_range(range_end.clone());
        if let Some(revision) = revision {
            get = get.with_revision(revision);
        }
        if let Some(limit) = limit {
            get = get.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        if range_end != [0] && start.as_slice() >= range_end.as_slice() {
            // The continue point is past the prefix: an empty page.
            return self.empty_page(revision).await;
        }
        let response = self
            .etcd
            .call("list", |mut client| {
                let (start, get) = (start.clone(), get.clone());
                async move { client.get(start, Some(get)).await }
            })
            .await
            .map_err(|error| with_requested(error, revision.unwrap_or(0)))?;
        let items = response
            .kvs()
            .iter()
            .map(convert_kv)
            .collect::<Result<Vec<_>>>()?;
        // `count` counts every key from the start key to the range end.
        let count = u64::try_from(response.count()).unwrap_or(0);
        let remaining = count.saturating_sub(items.len() as u64);
        let revision = match revision {
            Some(revision) => revision,
            None => self.etcd.header_revision(response.header())?,
        };
        Ok(ListResult {
            items,
            revision,
            remaining,
        })
    }

    async fn empty_page(&self, revision: Option<Revision>) -> Result<ListResult> {
        let revision = match revision {
            Some(revision) => revision,
            None => self.etcd.current_revision().await?,
        };
        Ok(ListResult {
            items: Vec::new(),
            revision,
            remaining: 0,
        })
    }
}

impl Etcd {
    /// A client of the preferred endpoint, for streaming calls.
    fn client(&self) -> Client {
        let count = self.endpoints.len().max(1);
        let index = self.preferred.load(Ordering::Relaxed) % count;
        self.endpoints[index].client.clone()
    }

    /// Runs one request under [`ETCD_REQUEST_TIMEOUT`], converting its error.
    async fn call<T, F, Fut>(&self, what: &str, request: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_within(what, ETCD_REQUEST_TIMEOUT, request).await
    }

    /// Sends `request` to the preferred endpoint, and to the next ones while
    /// it could not be sent at all; an endpoint that answers becomes the
    /// preferred one.
    async fn call_within<T, F, Fut>(&self, what: &str, limit: Duration, mut request: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let count = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % count.max(1);
        for step in 0..count {
            let index = (first + step) % count;
            let endpoint = &self.endpoints[index];
            let answer = tokio::time::timeout(limit, request(endpoint.client.clone())).await;
            match answer {
                Ok(Ok(value)) => {
                    if step > 0 {
                        self.preferred.store(index, Ordering::Relaxed);
                    }
                    return Ok(value);
                }
                Ok(Err(error)) if step + 1 < count && never_sent(&error) => {
                    tracing::warn!(
                        endpoint = %endpoint.url,
                        error = %describe(&error),
                        "etcd endpoint unreachable, trying the next one"
                    );
                }
                Ok(Err(error)) => return Err(map_error(&self.backend, error)),
                Err(_) => return Err(timed_out(&self.backend, what, limit)),
            }
        }
        Err(Error::Rejected {
            backend: self.backend.clone(),
            message: "no etcd endpoints configured".into(),
        })
    }

    /// Sends the transaction `txn` builds; built once per attempt, so that
    /// a value is copied into it only for the attempt that sends it.
    async fn txn(&self, what: &str, txn: impl Fn() -> Txn) -> Result<TxnResponse> {
        self.call(what, |mut client| {
            let txn = txn();
            async move { client.txn(txn).await }
        })
        .await
    }

    async fn current_revision(&self) -> Result<Revision> {
        let response = self
            .call("current revision", |mut client| async move {
                let options = GetOptions::new().with_count_only();
                client.get(KEY_PREFIX, Some(options)).await
            })
            .await?;
        self.header_revision(response.header())
    }

    fn header_revision(&self, header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
        header
            .map(|header| header.revision())
            .ok_or_else(|| Error::Unavailable {
                backend: self.backend.clone(),
                message: "etcd answered without a response header".into(),
                source: None,
            })
    }

    /// A failed CAS: the `else` branch read the key; missing is
    /// [`Error::NotFound`], present is a [`Error::Conflict`] with its actual
    /// revision.
    fn precondition_failed(&self, key: &str, expected: Revision, response: &TxnResponse) -> Error {
        let actual = match response.op_responses().first() {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| kv.mod_revision()),
            _ => None,
        };
        match actual {
            None => Error::NotFound {
                key: key.to_owned(),
            },
            Some(actual) => Error::Conflict {
                key: key.to_owned(),
                expected,
                actual,
            },
        }
    }

    fn saw_compaction(&self, revision: Revision) {
        self.compacted_seen.fetch_max(revision, Ordering::AcqRel);
    }

    /// etcd 3.4 has no call that returns the compaction point. If revision 1
    /// is still readable, nothing has been compacted (beyond what this
    /// process did, at most revision 1); otherwise a watch from revision 1
    /// is cancelled by etcd with the compaction point in the answer.
    async fn compacted_revision(&self) -> Result<Revision> {
        let probe = |mut client: Client| async move {
            let options = GetOptions::new().with_revision(1).with_count_only();
            client.get(KEY_PREFIX, Some(options)).await
        };
        match self.call("compaction probe", probe).await {
            Ok(_) => Ok(self.compacted_seen.load(Ordering::Acquire)),
            Err(Error::Compacted { .. }) => {
                let compacted = self.probe_compaction_with_watch().await?;
                self.saw_compaction(compacted);
                Ok(self.compacted_seen.load(Ordering::Acquire))
            }
            Err(error) => Err(error),
        }
    }

    async fn probe_compaction_with_watch(&self) -> Result<Revision> {
        let probe = |mut client: Client| async move {
            let options = WatchOptions::new().with_start_revision(1);
            let mut stream = client.watch(KEY_PREFIX, Some(options)).await?;
            while let Some(response) = stream.message().await? {
                if response.canceled() {
                    return Ok(Some(response.compact_revision()));
                }
            }
            Ok(None)
        };
        match self.call("compaction probe", probe).await? {
            Some(compacted) if compacted > 0 => Ok(compacted),
            _ => Err(Error::Unavailable {
                backend: self.backend.clone(),
                message: "etcd did not report its compaction point".into(),
                source: None,
            }),
        }
    }

    /// Fills in what etcd's compaction and future-revision errors leave out
    /// (the compaction point, the current revision), at the cost of one more
    /// request; other errors pass through.
    async fn complete(&self, error: Error) -> Error {
        match error {
            Error::Compacted {
                requested,
                compacted: 0,
            } => {
                let compacted = self.compacted_revision().await.unwrap_or(0);
                Error::Compacted {
                    requested,
                    compacted,
                }
            }
            Error::FutureRevision {
                requested,
                current: 0,
            } => {
                let current = self.current_revision().await.unwrap_or(0);
                Error::FutureRevision { requested, current }
            }
            other => other,
        }
    }
}

/// Runs `request` under `limit`; a timeout is [`Error::Unavailable`].
async fn within<T>(
    backend: &str,
    what: &str,
    limit: Duration,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(map_error(backend, error)),
        Err(_) => Err(timed_out(backend, what, limit)),
    }
}

fn timed_out(backend: &str, what: &str, limit: Duration) -> Error {
    Error::Unavailable {
        backend: backend.to_owned(),
        message: format!("{what}: no answer within {limit:?}"),
        source: None,
    }
}

/// Whether the request failed before reaching etcd (no connection could be
/// made), so that sending it elsewhere cannot apply it twice.
fn never_sent(error: &etcd_client::Error) -> bool {
    causes(error).any(|cause| {
        // hyper-util's connector names its failures so; the cause below it
        // is the io error (refused, unreachable, connect timeout).
        let text = cause.to_string();
        text == "tcp connect error"
            || text == "dns error"
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

/// The chain of causes inside an etcd-client error (its own `source` is
/// empty; the tonic error it wraps has them).
fn causes(error: &etcd_client::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    let first: Option<&(dyn std::error::Error + 'static)> = match error {
        etcd_client::Error::GRpcStatus(status) => Some(status),
        etcd_client::Error::TransportError(transport) => Some(transport),
        etcd_client::Error::IoError(io) => Some(io),
        _ => None,
    };
    std::iter::successors(first, |cause| cause.source())
}

/// Puts the revision a request asked for into the errors that name it.
fn with_requested(error: Error, revision: Revision) -> Error {
    match error {
        Error::Compacted { compacted, .. } => Error::Compacted {
            requested: revision,
            compacted,
        },
        Error::FutureRevision { current, .. } => Error::FutureRevision {
            requested: revision,
            current,
        },
        other => other,
    }
}

/// gRPC status codes, by number: etcd-client exposes tonic's `Code` enum but
/// this crate does not depend on tonic to name it.
mod grpc {
    pub(super) const CANCELLED: i32 = 1;
    pub(super) const UNKNOWN: i32 = 2;
    pub(super) const DEADLINE_EXCEEDED: i32 = 4;
    pub(super) const RESOURCE_EXHAUSTED: i32 = 8;
    pub(super) const ABORTED: i32 = 10;
    pub(super) const INTERNAL: i32 = 13;
    pub(super) const UNAVAILABLE: i32 = 14;
}

/// The one place an etcd error becomes a storage error.
///
/// Worth a retry ([`Error::Unavailable`]): transport failures, timeouts, no
/// leader, too many requests, space quota (an operator must act, but the
/// request itself is fine). Not worth one ([`Error::Rejected`]): invalid,
/// too large, not permitted. etcd's "required revision has been compacted"
/// and "is a future revision" become [`Error::Compacted`] and
/// [`Error::FutureRevision`] with the revisions left 0 for the caller to
/// fill in.
pub(crate) fn map_error(backend: &str, error: etcd_client::Error) -> Error {
    let retryable = match &error {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            if message.contains("required revision has been compacted") {
                return Error::Compacted {
                    requested: 0,
                    compacted: 0,
                };
            }
            if message.contains("required revision is a future revision") {
                return Error::FutureRevision {
                    requested: 0,
                    current: 0,
                };
            }
            let code = status.code() as i32;
            matches!(
                code,
                grpc::CANCELLED
                    | grpc::UNKNOWN
                    | grpc::DEADLINE_EXCEEDED
                    | grpc::RESOURCE_EXHAUSTED
                    | grpc::ABORTED
                    | grpc::INTERNAL
                    | grpc::UNAVAILABLE
            )
        }
        etcd_client::Error::TransportError(_)
        | etcd_client::Error::IoError(_)
        | etcd_client::Error::WatchError(_)
        | etcd_client::Error::LeaseKeepAliveError(_)
        | etcd_client::Error::ElectError(_)
        | etcd_client::Error::EndpointError(_)
        | etcd_client::Error::Internal(_) => true,
        _ => false,
    };
    if retryable {
        Error::Unavailable {
            backend: backend.to_owned(),
            message: describe(&error),
            source: Some(Box::new(error)),
        }
    } else {
        Error::Rejected {
            backend: backend.to_owned(),
            message: describe(&error),
        }
    }
}

/// etcd-client's message with every cause attached: its own `Display`
/// often says only "transport error", the causes say which (refused, TLS
/// handshake, reset).
fn describe(error: &etcd_client::Error) -> String {
    let mut message = match error {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    };
    for cause in causes(error).skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

fn connect_options(config: &EtcdConfig, backend: &str) -> Result<ConnectOptions> {
    let options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT);
    match tls_options(config, backend)? {
        Some(tls) => Ok(options.with_tls(tls)),
        None => Ok(options),
    }
}

/// `--etcd-cafile`, `--etcd-certfile` and `--etcd-keyfile` as rustls (ring)
/// settings; `None` when none is given (plain `http://`).
fn tls_options(config: &EtcdConfig, backend: &str) -> Result<Option<TlsOptions>> {
    if config.ca_file.is_none() && config.cert_file.is_none() && config.key_file.is_none() {
        return Ok(None);
    }
    let mut tls = TlsOptions::new();
    if let Some(ca_file) = &config.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read_pem(ca_file, backend)?));
    }
    match (&config.cert_file, &config.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let cert = read_pem(cert_file, backend)?;
            let key = read_pem(key_file, backend)?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        (None, None) => {}
        _ => {
            return Err(Error::Rejected {
                backend: backend.to_owned(),
                message: "a client certificate needs both --etcd-certfile and --etcd-keyfile"
                    .into(),
            });
        }
    }
    Ok(Some(tls))
}

fn read_pem(path: &Path, backend: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| Error::Rejected {
        backend: backend.to_owned(),
        message: format!("cannot read {}: {error}", path.display()),
    })
}

/// etcd's range end for "every key starting with `prefix`": the prefix with
/// its last byte below 0xff incremented; `[0]` (all keys) for an empty or
/// all-0xff prefix.
fn prefix_range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The first key a page reads: just after the continue key (etcd ranges
/// include their start), or the prefix itself.
fn list_start(prefix: &str, start_after: Option<&str>) -> Vec<u8> {
    match start_after {
        Some(after) if after >= prefix => {
            let mut start = after.as_bytes().to_vec();
            start.push(0);
            start
        }
        _ => prefix.as_bytes().to_vec(),
    }
}

fn convert_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: key_string(kv.key())?,
        value: kv.value().to_vec(),
        mod_revision: kv.mod_revision(),
    })
}

fn key_string(key: &[u8]) -> Result<String> {
    String::from_utf8(key.to_vec()).map_err(|_| Error::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: "key in etcd is not UTF-8".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_covers_exactly_the_prefix() {
        assert_eq!(prefix_range_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_range_end(""), vec![0]);
    }

    #[test]
    fn a_page_starts_just_after_the_continue_key() {
        assert_eq!(list_start("/a/", Some("/a/x")), b"/a/x\0".to_vec());
        assert_eq!(list_start("/a/", None), b"/a/".to_vec());
        // A continue key before the prefix does not widen the range.
        assert_eq!(list_start("/b/", Some("/a/x")), b"/b/".to_vec());
    }

    #[test]
    fn compaction_and_future_revision_messages_are_recognised() {
        let status = |code, message: &str| {
            etcd_client::Error::GRpcStatus(tonic::Status::new(code, message.to_owned()))
        };
        let compacted = status(
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
        assert!(matches!(
            map_error("etcd", compacted),
            Error::Compacted { .. }
        ));
        let future = status(
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        );
        assert!(matches!(
            map_error("etcd", future),
            Error::FutureRevision { .. }
        ));
    }

    #[test]
    fn retryable_only_when_the_request_itself_is_fine() {
        let status = |code, message: &str| {
            etcd_client::Error::GRpcStatus(tonic::Status::new(code, message.to_owned()))
        };
        let too_large = status(
            tonic::Code::InvalidArgument,
            "etcdserver: request is too large",
        );
        let error = map_error("etcd at http://x", too_large);
        assert!(!error.is_retryable());
        assert_eq!(
            error.to_string(),
            "storage backend etcd at http://x rejected the request: \
             InvalidArgument: etcdserver: request is too large"
        );
        for code in [tonic::Code::Unavailable, tonic::Code::DeadlineExceeded] {
            assert!(map_error("etcd", status(code, "no leader")).is_retryable());
        }
    }
}
