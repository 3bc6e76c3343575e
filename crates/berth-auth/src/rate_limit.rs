//! Failed logins are limited per client address, so a password cannot be guessed at speed.
//!
//! An attempt is counted as a failure *before* its password is checked ([`LoginLimiter::attempt`])
//! and refunded when it succeeds, so concurrent attempts from one address cannot all pass the
//! limit while their (slow) checks run.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failed logins per address in fixed windows.
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginLimiter {
    /// Allows `max_failures` failed logins per address per `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        LoginLimiter {
            max_failures,
            window,
            failures: Mutex::default(),
        }
    }

    /// `Err(retry_after)` if the address used up its failures for this window.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get(&ip) {
            Some((count, start))
                if *count >= self.max_failures && start.elapsed() < self.window =>
            {
                Err(self
                    .window
                    .saturating_sub(start.elapsed())
                    .max(Duration::from_secs(1)))
            }
            _ => Ok(()),
        }
    }

    /// Counts an attempt from `ip` as a failure now, before its password is checked;
    /// `Err(retry_after)` when the address has used up its failures. Drop the [`Attempt`]
    /// to keep it counted, or call [`Attempt::succeeded`] to refund it.
    pub fn attempt(&self, ip: IpAddr) -> Result<Attempt<'_>, Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 100_000 {
            let window = self.window;
            failures.retain(|_, (_, start)| start.elapsed() < window);
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        if entry.0 >= self.max_failures {
            return Err(self
                .window
                .saturating_sub(entry.1.elapsed())
                .max(Duration::from_secs(1)));
        }
        entry.0 += 1;
        Ok(Attempt {
            limiter: self,
            ip,
            window_start: entry.1,
        })
    }

    /// Records a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 100_000 {
            let window = self.window;
            failures.retain(|_, (_, start)| start.elapsed() < window);
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

/// A login attempt counted as a failure until it [`succeeded`](Attempt::succeeded).
#[must_use = "an attempt dropped counts as a failure"]
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    ip: IpAddr,
    window_start: Instant,
}

impl Attempt<'_> {
    /// The password was right: the attempt no longer counts.
    pub fn succeeded(self) {
        let mut failures = self
            .limiter
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((count, start)) = failures.get_mut(&self.ip)
            && *start == self.window_start
        {
            *count = count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
            limiter.failed(a);
        }
        let retry = limiter.check(a).unwrap_err();
        assert!(retry > Duration::from_secs(50) && retry <= Duration::from_secs(60));
        assert!(limiter.check(b).is_ok());
    }

    #[test]
    fn attempts_count_before_their_check() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        // Three checks in flight at once use up the address's failures.
        let in_flight: Vec<_> = (0..3).map(|_| limiter.attempt(a).unwrap()).collect();
        assert!(limiter.attempt(a).is_err());
        // A success is refunded, a failure is kept.
        let mut in_flight = in_flight.into_iter();
        in_flight.next().unwrap().succeeded();
        drop(in_flight);
        assert!(limiter.attempt(a).is_ok());
        assert!(limiter.attempt(a).is_err());
    }
}
