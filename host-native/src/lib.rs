//! byok-server: the `byok` server and CLI, as a library so that end-to-end tests drive the same
//! code the binary runs.
//!
//! [`serve`] starts the server from its [`config`]: the REST [`api`] over [`service`] (orgs,
//! scopes and data, without HTTP), persisted by [`store`], with root keys wrapped by a customer's
//! KMS or the [`managed`] key. Outbound: [`transport`], the only outbound I/O; [`kms_call`], the
//! retry loop around it; and [`credentials`], the AWS credentials cache. [`cli`] is the client
//! side of the same binary.

pub mod api;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod fair_queue;
pub mod kms_call;
pub mod managed;
pub mod private_file;
pub mod serve;
pub mod service;
pub mod store;
pub mod transport;
pub mod vendor_key;
