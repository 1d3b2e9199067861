//! A token bucket: how calls to an outside service are kept within a rate
//! (Glue's polls by the scheduler, catalog calls by the snapshot watcher).
//! The caller passes the time, as everywhere in the core.

use std::time::{Duration, Instant};

pub struct Bucket {
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(per_second: f64, now: Instant) -> Bucket {
        let per_second = per_second.max(0.1);
        Bucket {
            per_second,
            // At most one second's worth saved up.
            tokens: per_second,
            at: now,
        }
    }

    /// Calls a second.
    pub fn rate(&self) -> f64 {
        self.per_second
    }

    fn earn(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + earned).min(self.per_second.max(1.0));
        self.at = now;
    }

    /// Take one call's token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.earn(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Take one call's token, or say how long until there is one.
    pub fn take_or_wait(&mut self, now: Instant) -> Result<(), Duration> {
        if self.take(now) {
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / self.per_second,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_spends_a_seconds_worth_then_earns_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(4.0, t0);
        assert!((0..4).all(|_| b.take(t0)));
        let wait = b.take_or_wait(t0).unwrap_err();
        assert!(wait > Duration::from_millis(240) && wait <= Duration::from_millis(250));
        assert!(b.take(t0 + Duration::from_millis(250)));
        assert!(!b.take(t0 + Duration::from_millis(250)));
        // Idle for a minute saves one second's worth, not sixty.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(later)).count(), 4);
    }
}
