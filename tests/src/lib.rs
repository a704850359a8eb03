//! Harnesses for end-to-end tests, and the `nmstate-bench` benchmarks.

pub mod agent;
pub mod apiserver;
pub mod bench;
pub mod cluster;
pub mod curl;
pub mod delegation;
pub mod etcd;
pub mod faults;
pub mod fleet;
pub mod https;
pub mod kube_apiserver;
pub mod kubectl;
pub mod metrics;
pub mod netns;
pub mod pki;
pub mod policies;
pub mod storage_conformance;
pub mod suite;
