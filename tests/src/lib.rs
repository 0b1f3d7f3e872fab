//! End-to-end tests of byok across hosts. Fixtures for real parts live here.

pub mod aws_stack;
pub mod azure_kv;
pub mod edge;
pub mod fault_front;
pub mod fixtures;
pub mod gcp_kms;
pub mod local;
pub mod moto;
pub mod pg_cluster;
pub mod replicas;
pub mod server;
pub mod sts_front;
pub mod tls;
