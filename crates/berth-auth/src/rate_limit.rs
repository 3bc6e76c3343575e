//! Failed logins are limited per client address, so a password cannot be guessed at speed.

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
}
