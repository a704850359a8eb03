//! Harnesses for end-to-end tests.

pub mod apiserver;
pub mod etcd;
pub mod https;
pub mod kubectl;
pub mod storage_conformance;
