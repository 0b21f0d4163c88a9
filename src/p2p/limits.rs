//! What a peer may cost this node, as pure state machines: the request
//! rate, the timeout count and the ban list.
//!
//! Each type is handed `now` and never reads a clock, so every limit is
//! unit-tested at the limit and one past it. The network ([`super::net`])
//! keeps one [`RequestRate`] and one [`TimeoutLog`] per peer and one
//! [`BanList`], and acts on what they answer: refuse, disconnect, ban.

use crate::chain::Hash32;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The window requests are counted in.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Timeouts are counted over this span.
pub const TIMEOUT_SPAN: Duration = Duration::from_secs(60);
/// A peer is banned for a flood once it makes this many times the allowed
/// requests in one window.
pub const FLOOD_FACTOR: u32 = 2;

/// What to do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// Within the rate: answer it.
    Serve,
    /// Over the rate: answer `Refused("rate limited")`.
    Refuse,
    /// Over [`FLOOD_FACTOR`] times the rate: ban the peer.
    Flood,
}

/// Requests counted per window of [`RATE_WINDOW`], starting at the first
/// request after the previous window ended.
#[derive(Clone, Debug)]
pub struct RequestRate {
    window_start: Instant,
    count: u32,
}

impl RequestRate {
    pub fn new(now: Instant) -> RequestRate {
        RequestRate {
            window_start: now,
            count: 0,
        }
    }

    /// Count one request at `now` against `per_second`.
    pub fn charge(&mut self, now: Instant, per_second: u32) -> Charge {
        if now.saturating_duration_since(self.window_start) >= RATE_WINDOW {
            self.window_start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        if self.count > per_second.saturating_mul(FLOOD_FACTOR) {
            Charge::Flood
        } else if self.count > per_second {
            Charge::Refuse
        } else {
            Charge::Serve
        }
    }
}

/// A peer's recent request timeouts.
#[derive(Clone, Debug, Default)]
pub struct TimeoutLog {
    times: VecDeque<Instant>,
}

impl TimeoutLog {
    /// Record a timeout at `now`; `true` when `max` or more fell within the
    /// last [`TIMEOUT_SPAN`] (this one included): a timeout storm.
    pub fn record(&mut self, now: Instant, max: usize) -> bool {
        self.times.push_back(now);
        while self
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > TIMEOUT_SPAN)
        {
            self.times.pop_front();
        }
        self.times.len() >= max
    }
}

/// Banned peers, each until a deadline, with the reason.
#[derive(Clone, Debug, Default)]
pub struct BanList {
    bans: HashMap<Hash32, (Instant, String)>,
}

impl BanList {
    /// Ban `id` until `until`; a later ban replaces an earlier one.
    pub fn ban(&mut self, id: Hash32, until: Instant, reason: &str) {
        self.bans.insert(id, (until, reason.to_string()));
    }

    /// Whether `id` is banned at `now`; an expired ban is forgotten.
    pub fn is_banned(&mut self, id: &Hash32, now: Instant) -> bool {
        match self.bans.get(id) {
            Some((until, _)) if *until > now => true,
            Some(_) => {
                self.bans.remove(id);
                false
            }
            None => false,
        }
    }

    /// The bans still in force at `now`: id, time left and reason.
    pub fn active(&self, now: Instant) -> Vec<(Hash32, Duration, String)> {
        self.bans
            .iter()
            .filter(|(_, (until, _))| *until > now)
            .map(|(id, (until, reason))| (*id, *until - now, reason.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charges(rate: &mut RequestRate, now: Instant, per_second: u32, n: u32) -> Vec<Charge> {
        (0..n).map(|_| rate.charge(now, per_second)).collect()
    }

    #[test]
    fn requests_are_served_up_to_the_rate_refused_to_twice_it_then_a_flood() {
        let start = Instant::now();
        let mut rate = RequestRate::new(start);
        let seen = charges(&mut rate, start, 5, 12);
        let mut expected = vec![Charge::Serve; 5];
        expected.extend([Charge::Refuse; 5]);
        expected.extend([Charge::Flood; 2]);
        assert_eq!(seen, expected);
    }

    #[test]
    fn the_window_restarts_after_one_second_and_not_before() {
        let start = Instant::now();
        let mut rate = RequestRate::new(start);
        assert_eq!(charges(&mut rate, start, 3, 3), vec![Charge::Serve; 3]);
        let almost = start + RATE_WINDOW - Duration::from_nanos(1);
        assert_eq!(rate.charge(almost, 3), Charge::Refuse);
        // At exactly one second a new window starts, and it starts there.
        let next = start + RATE_WINDOW;
        assert_eq!(charges(&mut rate, next, 3, 3), vec![Charge::Serve; 3]);
        let later = next + RATE_WINDOW - Duration::from_nanos(1);
        assert_eq!(rate.charge(later, 3), Charge::Refuse);
    }

    #[test]
    fn the_default_rate_bans_above_one_thousand_in_a_second() {
        let start = Instant::now();
        let mut rate = RequestRate::new(start);
        let seen = charges(&mut rate, start, 500, 1001);
        assert_eq!(seen.iter().filter(|c| **c == Charge::Serve).count(), 500);
        assert_eq!(seen.iter().filter(|c| **c == Charge::Refuse).count(), 500);
        assert_eq!(seen[1000], Charge::Flood);
    }

    #[test]
    fn a_storm_is_max_timeouts_within_a_minute() {
        let start = Instant::now();
        let mut log = TimeoutLog::default();
        for i in 0..4 {
            assert!(
                !log.record(start + Duration::from_secs(i), 5),
                "timeout {i}"
            );
        }
        assert!(log.record(start + Duration::from_secs(4), 5));

        // Timeouts more than a minute apart never add up to a storm.
        let mut log = TimeoutLog::default();
        for i in 0..10u64 {
            let at = start + (TIMEOUT_SPAN + Duration::from_millis(1)) * i as u32;
            assert!(!log.record(at, 2), "timeout {i}");
        }
        // A minute apart exactly still counts as within the span.
        let mut log = TimeoutLog::default();
        assert!(!log.record(start, 2));
        assert!(log.record(start + TIMEOUT_SPAN, 2));
    }

    #[test]
    fn a_ban_holds_until_its_deadline_and_not_after() {
        let start = Instant::now();
        let (a, b) = (Hash32([1; 32]), Hash32([2; 32]));
        let mut bans = BanList::default();
        let until = start + Duration::from_secs(600);
        bans.ban(a, until, "request flood");
        assert!(bans.is_banned(&a, start));
        assert!(!bans.is_banned(&b, start));
        let almost = until - Duration::from_nanos(1);
        assert!(bans.is_banned(&a, almost));
        assert_eq!(
            bans.active(almost),
            vec![(a, Duration::from_nanos(1), "request flood".to_string())]
        );
        assert!(bans.active(until).is_empty(), "a ban ends at its deadline");
        assert!(!bans.is_banned(&a, until));
        // Forgotten once expired, even if asked about an earlier time.
        assert!(!bans.is_banned(&a, start));
    }
}
