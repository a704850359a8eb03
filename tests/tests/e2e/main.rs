//! The end-to-end suites, a module each, in one test binary: the tree is
//! linked once, not once per suite.
//!
//! Every test first waits for its suite's turn
//! (`nmstate_e2e::suite::turn`): the tests of one suite run in parallel, as
//! libtest runs a binary's tests, and suites run one after the other, as
//! cargo ran the per-suite binaries before, so that no two heavy suites
//! share the machine. One suite:
//!
//! ```sh
//! cargo test -p nmstate-e2e --test e2e faults::
//! ```
//!
//! Some suites need root (network namespaces with NetworkManager:
//! `agent_nm`, `aggregated`, `upstream_checklist`, `user_guide`, ...), and
//! the servers they start are the workspace's binaries next to this one
//! (`cargo build -p nmstate-apiserver -p nmstate-agent`, or `cargo test
//! --workspace`).

mod agent_hollow;
mod agent_nm;
mod aggregated;
mod api_rest;
mod apiserver_health;
mod authentication_configmap;
mod bench_smoke;
mod controller;
mod deploy_manifests;
mod faults;
mod front_proxy;
mod hostile;
mod in_cluster;
mod kubectl_nmstate;
mod kubectl_suite;
mod node_restriction;
mod python_client;
mod render_subresources;
mod schemathesis;
mod standalone_access;
mod storage_embedded;
mod storage_etcd;
mod token_review;
mod upstream_checklist;
mod user_guide;
mod watch_cache;
