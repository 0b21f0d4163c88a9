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

/// How long a peer that has never delivered blocks may take over a batch
/// before it counts as stalling (Bitcoin Core starts at 2 s; blocks here
/// are about 1 kB).
pub const STALL_FIRST: Duration = Duration::from_secs(1);
/// A measured peer may take this many times its usual time for a batch.
pub const STALL_FACTOR: u32 = 4;
/// The shortest stall timeout, however fast the peer was.
pub const STALL_MIN: Duration = Duration::from_millis(250);
/// A staller gets no batches for this long, doubled at each further
/// stall, up to [`BENCH_MAX`].
pub const BENCH_FIRST: Duration = Duration::from_secs(30);
pub const BENCH_MAX: Duration = Duration::from_secs(600);
/// Peers remembered as block sources; past it, the ones not benched are
/// forgotten first.
pub const MAX_SOURCES: usize = 4096;

/// What the node learned of each peer as a source of blocks during sync,
/// for stall detection as in Bitcoin Core's block download: each batch a
/// peer is asked for has a deadline adapted to the peer's measured time
/// per block, and a peer that misses one is benched (no batches) for a
/// while that doubles with every stall.
#[derive(Clone, Debug, Default)]
pub struct BlockSources {
    peers: HashMap<Hash32, Source>,
}

#[derive(Clone, Debug, Default)]
struct Source {
    /// A moving average of the time per block of its answers.
    per_block: Option<Duration>,
    stalls: u32,
    benched_until: Option<Instant>,
}

impl BlockSources {
    /// How long `id` may take to deliver a batch of `blocks`, at most
    /// `cap`: [`STALL_FIRST`] until it has delivered once (doubled for
    /// each time it stalled, in case it was only slow), then
    /// [`STALL_FACTOR`] times its usual time for that many blocks, at
    /// least [`STALL_MIN`].
    pub fn deadline(&self, id: &Hash32, blocks: usize, cap: Duration) -> Duration {
        let source = self.peers.get(id);
        let time = match source.and_then(|s| s.per_block) {
            // Doubled for each stall, in case it was only slow.
            None => STALL_FIRST.saturating_mul(1 << source.map_or(0, |s| s.stalls.min(16))),
            Some(per_block) => {
                let blocks = u32::try_from(blocks.max(1)).unwrap_or(u32::MAX);
                per_block
                    .saturating_mul(blocks)
                    .saturating_mul(STALL_FACTOR)
                    .max(STALL_MIN)
            }
        };
        time.min(cap)
    }

    /// `id` delivered `blocks` in `took`: the average moves halfway.
    pub fn delivered(&mut self, id: Hash32, blocks: usize, took: Duration) {
        if blocks == 0 {
            return;
        }
        self.make_room();
        let per_block = took / u32::try_from(blocks).unwrap_or(u32::MAX);
        let source = self.peers.entry(id).or_default();
        source.per_block = Some(match source.per_block {
            None => per_block,
            Some(old) => (old + per_block) / 2,
        });
    }

    /// `id` missed a deadline at `now`: benched for [`BENCH_FIRST`],
    /// doubled at every further stall, up to [`BENCH_MAX`]. Returns how
    /// long.
    pub fn stalled(&mut self, id: Hash32, now: Instant) -> Duration {
        self.make_room();
        let source = self.peers.entry(id).or_default();
        let bench = BENCH_FIRST
            .saturating_mul(1u32 << source.stalls.min(16))
            .min(BENCH_MAX);
        source.stalls = source.stalls.saturating_add(1);
        source.benched_until = Some(now + bench);
        bench
    }

    /// Whether `id` may be given batches at `now`.
    pub fn usable(&self, id: &Hash32, now: Instant) -> bool {
        self.peers
            .get(id)
            .and_then(|s| s.benched_until)
            .is_none_or(|until| until <= now)
    }

    fn make_room(&mut self) {
        if self.peers.len() >= MAX_SOURCES {
            self.peers.retain(|_, s| s.benched_until.is_some());
        }
        if self.peers.len() >= MAX_SOURCES {
            self.peers.clear();
        }
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

    #[test]
    fn a_source_has_a_first_deadline_then_one_adapted_to_its_speed() {
        let mut sources = BlockSources::default();
        let (a, b) = (Hash32([1; 32]), Hash32([2; 32]));
        let cap = Duration::from_secs(10);
        assert_eq!(sources.deadline(&a, 64, cap), STALL_FIRST);
        // 64 blocks in 640 ms: 10 ms a block; a batch of 64 may take 4 × 640 ms.
        sources.delivered(a, 64, Duration::from_millis(640));
        assert_eq!(sources.deadline(&a, 64, cap), Duration::from_millis(2560));
        assert_eq!(sources.deadline(&a, 1, cap), STALL_MIN);
        assert_eq!(sources.deadline(&a, 1000, cap), cap);
        // The average moves halfway: 10 ms and 30 ms a block give 20 ms.
        sources.delivered(a, 10, Duration::from_millis(300));
        assert_eq!(sources.deadline(&a, 10, cap), Duration::from_millis(800));
        // Nothing delivered changes nothing; b is still unmeasured.
        sources.delivered(a, 0, Duration::from_secs(5));
        assert_eq!(sources.deadline(&a, 10, cap), Duration::from_millis(800));
        assert_eq!(sources.deadline(&b, 10, cap), STALL_FIRST);
        // An unmeasured peer that stalled gets twice as long next time,
        // up to the cap.
        sources.stalled(b, Instant::now());
        assert_eq!(sources.deadline(&b, 10, cap), 2 * STALL_FIRST);
        sources.stalled(b, Instant::now());
        assert_eq!(sources.deadline(&b, 10, cap), 4 * STALL_FIRST);
        for _ in 0..20 {
            sources.stalled(b, Instant::now());
        }
        assert_eq!(sources.deadline(&b, 10, cap), cap);
    }

    #[test]
    fn a_staller_is_benched_until_its_deadline_doubling_up_to_the_most() {
        let start = Instant::now();
        let mut sources = BlockSources::default();
        let a = Hash32([1; 32]);
        assert!(sources.usable(&a, start));
        assert_eq!(sources.stalled(a, start), BENCH_FIRST);
        assert!(!sources.usable(&a, start + BENCH_FIRST - Duration::from_nanos(1)));
        assert!(sources.usable(&a, start + BENCH_FIRST));
        let later = start + BENCH_FIRST;
        assert_eq!(sources.stalled(a, later), 2 * BENCH_FIRST);
        assert!(!sources.usable(&a, later + 2 * BENCH_FIRST - Duration::from_nanos(1)));
        assert!(sources.usable(&a, later + 2 * BENCH_FIRST));
        for _ in 0..40 {
            assert!(sources.stalled(a, later) <= BENCH_MAX);
        }
        assert_eq!(sources.stalled(a, later), BENCH_MAX);
    }

    #[test]
    fn sources_are_bounded_keeping_the_benched() {
        let start = Instant::now();
        let mut sources = BlockSources::default();
        let staller = Hash32([0xff; 32]);
        sources.stalled(staller, start);
        for i in 0..(MAX_SOURCES as u32 + 10) {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            sources.delivered(Hash32(id), 1, Duration::from_millis(1));
            assert!(sources.peers.len() <= MAX_SOURCES);
        }
        assert!(!sources.usable(&staller, start));
    }
}
