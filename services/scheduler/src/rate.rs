//! A token bucket: the bound on the loop's Glue polling rate.

use std::time::Instant;

pub struct Bucket {
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(per_second: f64) -> Bucket {
        let per_second = per_second.max(0.1);
        Bucket {
            per_second,
            // At most one second's worth saved up.
            tokens: per_second,
            at: Instant::now(),
        }
    }

    /// Take one call's token if there is one.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + earned).min(self.per_second.max(1.0));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
