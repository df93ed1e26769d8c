//! The fake's wall clock: tokio's clock, so a test with a paused clock moves wall time too.

use crate::ports::Clock;

/// Wall-clock time read through tokio's clock: the system time when first asked in this
/// process (a fixed origin for every test of the binary), advanced by `tokio::time::Instant`
/// since. Under `start_paused` it stands still until the test's time advances (a sleep, the
/// fake's snapshot minutes), then moves by exactly as much — so deadlines, TTL waits and
/// restorable times pass as they would on AWS, in milliseconds of real time.
#[derive(Debug, Clone, Copy, Default)]
pub struct FakeClock;

impl Clock for FakeClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        static ORIGIN: std::sync::OnceLock<(std::time::Instant, chrono::DateTime<chrono::Utc>)> =
            std::sync::OnceLock::new();
        let (origin_instant, origin_time) =
            *ORIGIN.get_or_init(|| (std::time::Instant::now(), crate::ports::SystemClock.now()));
        let now = tokio::time::Instant::now().into_std();
        // Signed: a paused clock of another test runtime may stand before the origin.
        match now.checked_duration_since(origin_instant) {
            Some(ahead) => origin_time + chrono::Duration::from_std(ahead).unwrap_or_default(),
            None => {
                let behind = origin_instant.duration_since(now);
                origin_time - chrono::Duration::from_std(behind).unwrap_or_default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_moves_wall_time_by_what_the_test_advances() {
        let before = FakeClock.now();
        tokio::time::advance(std::time::Duration::from_secs(20 * 60)).await;
        let after = FakeClock.now();
        assert_eq!(after - before, chrono::Duration::minutes(20));
        // Standing still: no real time leaks in.
        assert_eq!(FakeClock.now(), after);
    }
}
