//! byok-server: the `byok` server and CLI, as a library so that end-to-end tests drive the same
//! code the binary runs.
//!
//! So far: [`transport`], the only outbound I/O; [`kms_call`], the retry loop around it; and
//! [`credentials`], the AWS credentials cache.

pub mod api;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod kms_call;
pub mod managed;
pub mod serve;
pub mod service;
pub mod store;
pub mod transport;
