//! Retrying transient failures and waiting for AWS resources to reach a state.
//!
//! Both use tokio's clock, so tests on the fake run them with a paused clock in milliseconds.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::ports::{PortError, PortResult};

tokio::task_local! {
    static STOP: Arc<AtomicBool>;
}

/// Runs `work` so that once `stop` is set, no new AWS call starts inside it: every `retry`
/// refuses with an "interrupted" error, while a call already in flight finishes and is
/// answered. (Ctrl-C: finish the call in flight, then stop.)
pub async fn stoppable<F: Future>(stop: Arc<AtomicBool>, work: F) -> F::Output {
    STOP.scope(stop, work).await
}

/// Whether the work this task belongs to was asked to stop.
pub fn stopped() -> bool {
    STOP.try_with(|s| s.load(Ordering::SeqCst)).unwrap_or(false)
}

/// The stop flag of the work this task belongs to, to hand to tasks it spawns (a task-local
/// does not follow `tokio::spawn`).
pub fn stop_flag() -> Option<Arc<AtomicBool>> {
    STOP.try_with(|s| s.clone()).ok()
}

pub const INTERRUPTED: &str = "interrupted (Ctrl-C) before this call";

/// Retries `call` while it fails with a transient error (throttling, 5xx, timeouts), with
/// exponential backoff and jitter. The SDK retries too; this layer covers the fake and errors
/// that outlast the SDK's own attempts.
pub async fn retry<T, F, Fut>(mut call: F) -> PortResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = PortResult<T>>,
{
    const ATTEMPTS: u32 = 8;
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        if stopped() {
            return Err(PortError::failed("stop", INTERRUPTED));
        }
        match call().await {
            Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                tokio::time::sleep(jitter(delay)).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Full jitter between half and the whole delay, so many copies retrying at once spread out.
fn jitter(delay: Duration) -> Duration {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u64(delay.as_nanos() as u64);
    let fraction = (h.finish() % 1000) as f64 / 1000.0;
    delay.mul_f64(0.5 + fraction / 2.0)
}

#[derive(Debug, Error)]
pub enum WaitError {
    #[error("timed out after {waited:?} waiting for {what}; last seen: {last_seen}")]
    TimedOut {
        what: String,
        waited: Duration,
        last_seen: String,
    },
    #[error("while waiting for {what}: {found}")]
    Failed { what: String, found: String },
    #[error("while waiting for {what}: {source}")]
    Port {
        what: String,
        #[source]
        source: PortError,
    },
}

/// What one look at a resource found.
pub enum Poll<T> {
    Ready(T),
    /// Not there yet; the text says what was seen (shown if the wait times out).
    Pending(String),
    /// Will never get there (e.g. a stack rolled back).
    Failed(String),
}

/// Polls `look` with growing pauses until it is ready, fails, or `timeout` passes.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut look: F,
) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = PortResult<Poll<T>>>,
{
    let start = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        let seen = retry(&mut look).await.map_err(|source| WaitError::Port {
            what: what.to_string(),
            source,
        })?;
        match seen {
            Poll::Ready(v) => return Ok(v),
            Poll::Failed(found) => {
                return Err(WaitError::Failed {
                    what: what.to_string(),
                    found,
                })
            }
            Poll::Pending(last_seen) => {
                let waited = start.elapsed();
                if waited >= timeout {
                    return Err(WaitError::TimedOut {
                        what: what.to_string(),
                        waited,
                        last_seen,
                    });
                }
                tokio::time::sleep(pause.min(timeout - waited)).await;
                pause = (pause.mul_f64(1.5)).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_and_others_are_not() {
        let calls = AtomicU32::new(0);
        let out = retry(|| async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(PortError::Transient {
                    operation: "op".into(),
                    message: "SlowDown".into(),
                })
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(out, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        let calls = AtomicU32::new(0);
        let out: PortResult<()> = retry(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(PortError::failed("op", "AccessDenied"))
        })
        .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_time_out_with_what_was_last_seen() {
        let err = wait_until(
            "snapshot s1 to be available",
            Duration::from_secs(60),
            || async { Ok(Poll::<()>::Pending("creating".into())) },
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("snapshot s1 to be available"), "{err}");
        assert!(err.contains("last seen: creating"), "{err}");
    }
}
