//! Login throttling against password guessing, sans-IO (fed the current instant).
//!
//! Failures are counted per (client address, user name) and per client address. A few free
//! failures are allowed (people mistype); after that each failure locks the key for twice as
//! long as the previous one, up to 15 minutes. While locked, attempts are refused before the
//! password is even checked, so guessing costs the attacker time and us no argon2 work.
//! Counting per address and name, rather than per name alone, keeps an attacker from locking a
//! legitimate user out from elsewhere.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Free failures per (address, user) before locking.
pub const FREE_PER_USER: u32 = 5;
/// Free failures per address (over all user names) before locking.
pub const FREE_PER_ADDRESS: u32 = 20;
/// The longest lock.
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Failures are forgotten after this long without one.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Keys kept at most (the oldest are dropped beyond it), so a flood of addresses cannot grow
/// memory without bound.
pub const MAX_KEYS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Counts failures and says when to refuse.
#[derive(Debug, Default)]
pub struct Throttle {
    keys: HashMap<Key, Failures>,
}

/// A client address, and a user name (None: the address over all names).
type Key = (Option<IpAddr>, Option<String>);

impl Throttle {
    fn keys(ip: Option<IpAddr>, user: &str) -> [(Key, u32); 2] {
        [
            ((ip, Some(user.to_owned())), FREE_PER_USER),
            ((ip, None), FREE_PER_ADDRESS),
        ]
    }

    /// Ok if an attempt may be made now, or how long to wait.
    pub fn check(&self, ip: Option<IpAddr>, user: &str, now: Instant) -> Result<(), Duration> {
        let mut wait = Duration::ZERO;
        for (k, _) in Self::keys(ip, user) {
            if let Some(f) = self.keys.get(&k)
                && let Some(until) = f.locked_until
                && until > now
            {
                wait = wait.max(until - now);
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Records a failed attempt.
    pub fn failed(&mut self, ip: Option<IpAddr>, user: &str, now: Instant) {
        if self.keys.len() >= MAX_KEYS {
            self.keys.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if self.keys.len() >= MAX_KEYS {
                // Under a flood from many addresses: drop the oldest tenth at once, so this
                // sort happens once per ten thousand failures, not on each.
                let mut by_age: Vec<_> = self.keys.iter().map(|(k, f)| (f.last, k.clone())).collect();
                by_age.sort_unstable_by_key(|(t, _)| *t);
                for (_, k) in by_age.into_iter().take(MAX_KEYS / 10) {
                    self.keys.remove(&k);
                }
            }
        }
        for (k, free) in Self::keys(ip, user) {
            let f = self.keys.entry(k).or_insert(Failures {
                count: 0,
                last: now,
                locked_until: None,
            });
            if now.duration_since(f.last) >= FORGET_AFTER {
                f.count = 0;
            }
            f.count += 1;
            f.last = now;
            if f.count > free {
                let exp = (f.count - free - 1).min(10);
                f.locked_until = Some(now + Duration::from_secs(1 << exp).min(MAX_LOCK));
            }
        }
    }

    /// Records a successful login: the user's count starts over (the address's does not, so a
    /// valid account cannot be used to reset guessing at others).
    pub fn succeeded(&mut self, ip: Option<IpAddr>, user: &str) {
        self.keys.remove(&(ip, Some(user.to_owned())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_free_failures_and_doubles() {
        let mut t = Throttle::default();
        let ip = Some("10.0.0.9".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..FREE_PER_USER {
            assert!(t.check(ip, "admin", t0).is_ok());
            t.failed(ip, "admin", t0);
        }
        assert!(t.check(ip, "admin", t0).is_ok());
        t.failed(ip, "admin", t0);
        assert_eq!(t.check(ip, "admin", t0), Err(Duration::from_secs(1)));
        // Another user from the same address and the same user from elsewhere are not locked.
        assert!(t.check(ip, "bob", t0).is_ok());
        assert!(t.check(Some("10.0.0.8".parse().unwrap()), "admin", t0).is_ok());
        let t1 = t0 + Duration::from_secs(1);
        assert!(t.check(ip, "admin", t1).is_ok());
        t.failed(ip, "admin", t1);
        assert_eq!(t.check(ip, "admin", t1), Err(Duration::from_secs(2)));
        let mut at = t1;
        for _ in 0..30 {
            at += Duration::from_secs(60);
            t.failed(ip, "admin", at);
        }
        assert_eq!(t.check(ip, "admin", at), Err(MAX_LOCK));
        t.succeeded(ip, "admin");
        // The address-wide count is still high: 37 failures from it.
        assert!(t.check(ip, "carol", at).is_err());
        // After a quiet period, everything is forgotten.
        let later = at + MAX_LOCK + FORGET_AFTER;
        assert!(t.check(ip, "carol", later).is_ok());
        t.failed(ip, "carol", later);
        assert!(t.check(ip, "carol", later).is_ok());
    }

    #[test]
    fn address_spraying_is_locked() {
        let mut t = Throttle::default();
        let ip = Some("10.0.0.7".parse().unwrap());
        let now = Instant::now();
        for i in 0..=FREE_PER_ADDRESS {
            t.failed(ip, &format!("user{i}"), now);
        }
        assert!(t.check(ip, "someone-new", now).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for i in 0..(MAX_KEYS as u32 / 2 + 10) {
            t.failed(Some(std::net::IpAddr::from(i.to_be_bytes())), "x", now);
        }
        assert!(t.keys.len() <= MAX_KEYS);
    }
}
