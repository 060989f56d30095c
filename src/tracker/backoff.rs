//! Exponential backoff: the probe interval while the database is idle, and retry
//! delays after failures. Reset on activity or success.

use std::time::Duration;

/// Doubling (or `multiplier`-ing) delay between `min` and `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    multiplier: f64,
    current: Duration,
}

impl Backoff {
    /// Starts at `min`.
    pub fn new(min: Duration, max: Duration, multiplier: f64) -> Self {
        Self {
            min,
            max,
            multiplier,
            current: min,
        }
    }

    /// The delay to wait now; the next one grows by the multiplier up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = self.current.mul_f64(self.multiplier).min(self.max);
        delay
    }

    /// [`next_delay`](Self::next_delay) spread by up to ±20 %, so that many sidecars
    /// retrying after a shared outage do not reconnect in lockstep.
    pub fn next_delay_jittered(&mut self) -> Duration {
        let delay = self.next_delay();
        // The clock's nanoseconds are random enough to spread retries; no RNG needed.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let factor = 0.8 + 0.4 * (f64::from(nanos % 1000) / 1000.0);
        delay.mul_f64(factor)
    }

    /// Straight to `max`: for failures that retrying soon cannot fix.
    pub fn saturate(&mut self) {
        self.current = self.max;
    }

    /// Back to `min` (activity, or success).
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_50ms_to_the_5s_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(5), 2.0);
        let seq: Vec<u64> = (0..9).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(seq, [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(50));
    }
}
