//! Harnesses for end-to-end tests, and the `nmstate-bench` benchmarks.

pub mod apiserver;
pub mod bench;
pub mod etcd;
pub mod https;
pub mod kube_double;
pub mod kubectl;
pub mod pki;
pub mod storage_conformance;
