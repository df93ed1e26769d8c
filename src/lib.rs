//! envclone: clone and migrate AWS environments defined as CloudFormation stacks.
//!
//! The workflow (`workflow`) works against the small traits of `ports`; `aws` implements them
//! over the AWS SDK for Rust (one module per service) and `fake` over an in-memory model used
//! by the tests.

pub mod app;
pub mod aws;
pub mod cli;
pub mod config;
pub mod contract;
pub mod events;
/// Only in tests and with the `fake` feature (`cargo test` turns it on through the crate's
/// dev-dependency on itself): the release binary carries no fake.
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod iam;
pub mod journal;
pub mod lock;
pub mod model;
pub mod ports;
pub mod printer;
pub mod retry;
pub mod s3batch;
pub mod s3cmd;
pub mod s3sync;
pub mod template_eval;
pub mod workflow;
