//! The one integration-test binary: workflow scenarios on the in-memory fake (paused clock),
//! and end-to-end runs of the built `envclone` against the moto stand-in.

mod e2e;
mod e2e_asof;
mod e2e_batch_clone;
mod e2e_buckets;
mod e2e_corpus;
mod e2e_dynamodb;
mod e2e_iam;
mod e2e_staging;
mod e2e_swap;
mod fake_asof;
mod fake_aurora;
mod fake_batch_clone;
mod fake_buckets;
mod fake_clone;
mod fake_deletion;
mod fake_dynamodb;
mod fake_groups;
mod fake_inventory;
mod fake_locks;
mod fake_migrate;
mod fake_names;
mod fake_recovery;
mod fake_staging;
mod fake_statuses;
mod fake_swap;
mod fake_swapcheck;
mod fake_table_clone;
mod fake_window;
mod layout;
mod s3_batch;
mod s3_batch_e2e;
mod s3_e2e;
mod s3_encrypted;
mod s3_sync;
mod support;
