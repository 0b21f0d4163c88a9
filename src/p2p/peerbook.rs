//! The peer book: what a peer may cost this node, as pure state
//! machines: the request rate, the timeout count, block sources' scores
//! and the ban list.
//!
//! Each type is handed `now` and never reads a clock, so every limit is
//! unit-tested at the limit and one past it. The network ([`super::net`])
//! keeps one [`RequestRate`] and one [`TimeoutLog`] per peer, and acts on
//! what they answer: refuse, disconnect, ban. The node has one
//! [`PeerBook`], the ban list the fetcher and the network share: a peer
//! one bans the other refuses.

use crate::chain::Hash32;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
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

/// Addresses banned in one network group (an IPv4 /24, an IPv6 /48) at
/// which the whole group is banned: fresh addresses from one place do
/// not reset a ban either.
pub const GROUP_BAN_ADDRESSES: usize = 4;

/// Most banned addresses remembered; past it, the oldest ban is dropped.
pub const MAX_BANNED_ADDRESSES: usize = 10_000;

/// The network group of an address: the /24 of an IPv4 address (an
/// IPv4-mapped IPv6 address counts as IPv4), the /48 of an IPv6 one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetGroup {
    V4([u8; 3]),
    V6([u8; 6]),
}

pub fn net_group(ip: IpAddr) -> NetGroup {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            NetGroup::V4([o[0], o[1], o[2]])
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            NetGroup::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
        }
    }
}

/// The node's one ban list and its ban period, shared (as a
/// [`SharedBook`]) by the fetcher and the network. Every call is handed
/// `now`.
#[derive(Debug)]
pub struct PeerBook {
    bans: BanList,
    ban_for: Duration,
}

/// The one [`PeerBook`] of a node, as its fetcher and network hold it.
pub type SharedBook = Arc<Mutex<PeerBook>>;

impl PeerBook {
    /// An empty book that bans for `ban_for`.
    pub fn new(ban_for: Duration) -> PeerBook {
        PeerBook {
            bans: BanList::default(),
            ban_for,
        }
    }

    /// [`PeerBook::new`], to share.
    pub fn shared(ban_for: Duration) -> SharedBook {
        Arc::new(Mutex::new(PeerBook::new(ban_for)))
    }

    /// Ban `id` from `now` for the ban period, and the address `from` it
    /// came from when known (so a fresh key from there is refused too).
    pub fn ban(&mut self, id: Hash32, from: Option<IpAddr>, reason: &str, now: Instant) {
        let until = now + self.ban_for;
        match from {
            Some(ip) => self.bans.ban_peer(id, ip, until, reason),
            None => self.bans.ban(id, until, reason),
        }
    }

    /// Whether `id` is banned at `now`.
    pub fn is_banned(&mut self, id: &Hash32, now: Instant) -> bool {
        self.bans.is_banned(id, now)
    }

    /// Why connections from `ip` are refused at `now`, if they are.
    pub fn address_ban(&mut self, ip: IpAddr, now: Instant) -> Option<String> {
        self.bans.address_ban(ip, now)
    }

    /// The bans in force at `now`: id, time left and reason.
    pub fn active(&self, now: Instant) -> Vec<(Hash32, Duration, String)> {
        self.bans.active(now)
    }
}

/// Banned peers, each until a deadline, with the reason: by key, by the
/// address it came from (so a fresh key from there is refused too), and
/// by network group once [`GROUP_BAN_ADDRESSES`] of its addresses are
/// banned.
#[derive(Clone, Debug, Default)]
pub struct BanList {
    bans: HashMap<Hash32, (Instant, String)>,
    addresses: HashMap<IpAddr, (Instant, String)>,
}

impl BanList {
    /// Ban `id` until `until`; a later ban replaces an earlier one.
    pub fn ban(&mut self, id: Hash32, until: Instant, reason: &str) {
        self.bans.insert(id, (until, reason.to_string()));
    }

    /// Ban `id` and the address `ip` it connected from until `until`.
    pub fn ban_peer(&mut self, id: Hash32, ip: IpAddr, until: Instant, reason: &str) {
        self.ban(id, until, reason);
        let ip = canonical(ip);
        if self.addresses.len() >= MAX_BANNED_ADDRESSES && !self.addresses.contains_key(&ip) {
            let oldest = self
                .addresses
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(a, _)| *a);
            if let Some(oldest) = oldest {
                self.addresses.remove(&oldest);
            }
        }
        self.addresses.insert(ip, (until, reason.to_string()));
    }

    /// Why connections from `ip` are refused at `now`, if they are: the
    /// address is banned, or [`GROUP_BAN_ADDRESSES`] addresses of its
    /// group are. Expired bans are forgotten.
    pub fn address_ban(&mut self, ip: IpAddr, now: Instant) -> Option<String> {
        self.addresses.retain(|_, (until, _)| *until > now);
        let ip = canonical(ip);
        if let Some((_, reason)) = self.addresses.get(&ip) {
            return Some(format!("address {ip} banned: {reason}"));
        }
        let group = net_group(ip);
        let banned = self
            .addresses
            .keys()
            .filter(|a| net_group(**a) == group)
            .count();
        (banned >= GROUP_BAN_ADDRESSES).then(|| {
            format!("{banned} addresses of its network group banned (the most is {GROUP_BAN_ADDRESSES})")
        })
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

/// An IPv4-mapped IPv6 address as the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What eviction weighs of one inbound peer.
#[derive(Clone, Debug)]
pub struct EvictionCandidate {
    pub id: Hash32,
    pub group: NetGroup,
    pub connected_at: Instant,
    /// When it last sent a block this node stored, if ever.
    pub last_block_at: Option<Instant>,
}

/// Inbound peers protected from eviction for each of the two merits.
pub const PROTECT_PER_MERIT: usize = 4;

/// Which inbound peer to disconnect so that a new one can come in when
/// every inbound slot is taken (after Bitcoin Core's eviction): protect
/// the [`PROTECT_PER_MERIT`] peers that most recently sent a block we
/// stored and the [`PROTECT_PER_MERIT`] longest connected; of the rest,
/// take the network group with the most peers (ties: the group whose
/// newest peer is newest) and evict its newest peer. `None` when every
/// peer is protected: the newcomer is refused.
pub fn choose_eviction(candidates: &[EvictionCandidate]) -> Option<Hash32> {
    let mut left: Vec<&EvictionCandidate> = candidates.iter().collect();
    left.sort_by_key(|c| std::cmp::Reverse(c.last_block_at));
    let useful = left
        .iter()
        .take_while(|c| c.last_block_at.is_some())
        .take(PROTECT_PER_MERIT)
        .count();
    left.drain(..useful);
    left.sort_by_key(|c| c.connected_at);
    left.drain(..PROTECT_PER_MERIT.min(left.len()));
    let mut groups: HashMap<NetGroup, Vec<&EvictionCandidate>> = HashMap::new();
    for c in left {
        groups.entry(c.group).or_default().push(c);
    }
    let newest = |members: &Vec<&EvictionCandidate>| {
        members
            .iter()
            .max_by_key(|c| (c.connected_at, c.id))
            .map(|c| (c.connected_at, c.id))
    };
    groups
        .values()
        .max_by_key(|members| (members.len(), newest(members)))
        .and_then(newest)
        .map(|(_, id)| id)
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

/// Bounds on what peers may cost this node.
#[derive(Clone, Debug)]
pub struct NetLimits {
    pub max_inbound: usize,
    pub max_inbound_per_ip: usize,
    pub max_outbound: usize,
    /// Concurrent bidirectional streams a peer may open.
    pub max_streams: u32,
    /// Requests a peer may make per second before it is refused, and at
    /// twice that, banned.
    pub requests_per_second: u32,
    /// Bytes a peer may have in flight towards this node.
    pub receive_window: u32,
    /// Every read of a message.
    pub request_timeout: Duration,
    /// Timeouts within a minute that count as misbehaviour.
    pub max_timeouts: usize,
    pub ban: Duration,
    pub max_known_addrs: usize,
}

impl Default for NetLimits {
    fn default() -> Self {
        NetLimits {
            max_inbound: 64,
            max_inbound_per_ip: 16,
            max_outbound: 8,
            max_streams: 32,
            requests_per_second: 500,
            receive_window: 8 << 20,
            request_timeout: Duration::from_secs(10),
            max_timeouts: 5,
            ban: Duration::from_secs(600),
            max_known_addrs: 1000,
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

    #[test]
    fn an_address_is_banned_with_its_key_and_a_group_at_its_limit() {
        let start = Instant::now();
        let until = start + Duration::from_secs(600);
        let mut bans = BanList::default();
        let ip = |text: &str| -> IpAddr { text.parse().unwrap() };
        bans.ban_peer(Hash32([1; 32]), ip("10.1.2.3"), until, "flood");
        assert!(bans.is_banned(&Hash32([1; 32]), start));
        // A fresh key from the same address is refused; its neighbour not yet.
        assert!(bans.address_ban(ip("10.1.2.3"), start).is_some());
        assert!(bans.address_ban(ip("::ffff:10.1.2.3"), start).is_some());
        assert!(bans.address_ban(ip("10.1.2.4"), start).is_none());
        // At GROUP_BAN_ADDRESSES banned addresses the /24 is banned; one
        // fewer is not.
        for last in 4..(2 + GROUP_BAN_ADDRESSES as u8) {
            bans.ban_peer(
                Hash32([last; 32]),
                ip(&format!("10.1.2.{last}")),
                until,
                "bad",
            );
        }
        assert!(bans.address_ban(ip("10.1.2.200"), start).is_none());
        bans.ban_peer(Hash32([99; 32]), ip("10.1.2.99"), until, "bad");
        assert!(bans.address_ban(ip("10.1.2.200"), start).is_some());
        assert!(bans.address_ban(ip("10.1.3.200"), start).is_none());
        // Until the bans end.
        assert!(bans.address_ban(ip("10.1.2.200"), until).is_none());
        assert!(bans.address_ban(ip("10.1.2.3"), until).is_none());
        // IPv6 groups are /48.
        for n in 0..GROUP_BAN_ADDRESSES as u16 {
            bans.ban_peer(
                Hash32([7; 32]),
                ip(&format!("2001:db8:1:{n}::1")),
                until,
                "bad",
            );
        }
        assert!(bans.address_ban(ip("2001:db8:1:ffff::9"), start).is_some());
        assert!(bans.address_ban(ip("2001:db8:2::9"), start).is_none());
    }

    #[test]
    fn banned_addresses_are_bounded() {
        let start = Instant::now();
        let mut bans = BanList::default();
        for n in 0..(MAX_BANNED_ADDRESSES as u32 + 5) {
            // One address per /24, so that no group ban gets in the way.
            let ip = IpAddr::from((n << 8).to_be_bytes());
            bans.ban_peer(
                Hash32([1; 32]),
                ip,
                start + Duration::from_secs(u64::from(n) + 1),
                "x",
            );
            assert!(bans.addresses.len() <= MAX_BANNED_ADDRESSES);
        }
        // The oldest went first.
        assert!(bans
            .address_ban(IpAddr::from(0u32.to_be_bytes()), start)
            .is_none());
        let last = (MAX_BANNED_ADDRESSES as u32 + 4) << 8;
        assert!(bans
            .address_ban(IpAddr::from(last.to_be_bytes()), start)
            .is_some());
    }

    fn candidate(
        n: u8,
        group: u8,
        age_secs: u64,
        block_secs_ago: Option<u64>,
        now: Instant,
    ) -> EvictionCandidate {
        EvictionCandidate {
            id: Hash32([n; 32]),
            group: NetGroup::V4([10, 0, group]),
            connected_at: now - Duration::from_secs(age_secs),
            last_block_at: block_secs_ago.map(|s| now - Duration::from_secs(s)),
        }
    }

    #[test]
    fn eviction_protects_block_senders_and_old_peers_and_takes_the_newest_of_the_largest_group() {
        let now = Instant::now() + Duration::from_secs(10_000);
        // Eight protected: four that sent blocks, four old ones.
        let mut peers: Vec<EvictionCandidate> = (1..=4)
            .map(|n| candidate(n, n, 10, Some(u64::from(n)), now))
            .chain((5..=8).map(|n| candidate(n, n, 5000 + u64::from(n), None, now)))
            .collect();
        assert_eq!(choose_eviction(&peers), None, "all protected");
        // Three from group 9 and two from group 10: group 9's newest goes.
        peers.push(candidate(20, 9, 300, None, now));
        peers.push(candidate(21, 9, 100, None, now));
        peers.push(candidate(22, 9, 200, None, now));
        peers.push(candidate(23, 10, 50, None, now));
        peers.push(candidate(24, 10, 60, None, now));
        assert_eq!(choose_eviction(&peers), Some(Hash32([21; 32])));
        // A fifth block sender is not protected, and a sender of an old
        // block loses its protection to newer senders.
        let mut senders: Vec<EvictionCandidate> = (1..=5)
            .map(|n| candidate(n, n, 5000, Some(u64::from(n) * 10), now))
            .collect();
        senders.extend((6..=9).map(|n| candidate(n, n, 9000, None, now)));
        assert_eq!(choose_eviction(&senders), Some(Hash32([5; 32])));
        // Equal groups: the one whose newest peer is newest.
        let mut tie: Vec<EvictionCandidate> = (1..=8)
            .map(|n| candidate(n, n, 9000 + u64::from(n), None, now))
            .collect();
        tie.push(candidate(30, 40, 30, None, now));
        tie.push(candidate(31, 41, 20, None, now));
        assert_eq!(choose_eviction(&tie), Some(Hash32([31; 32])));
    }

    #[test]
    fn a_book_ban_lasts_the_ban_period_and_not_a_moment_more() {
        let t0 = Instant::now();
        let mut book = PeerBook::new(Duration::from_secs(600));
        let id = Hash32([7; 32]);
        book.ban(id, None, "flood", t0);
        assert!(book.is_banned(&id, t0));
        assert!(book.is_banned(
            &id,
            t0 + Duration::from_secs(600) - Duration::from_millis(1)
        ));
        let left = book.active(t0 + Duration::from_secs(1));
        assert_eq!(
            left,
            vec![(id, Duration::from_secs(599), "flood".to_string())]
        );
        assert!(!book.is_banned(&id, t0 + Duration::from_secs(600)));
        assert!(book.active(t0 + Duration::from_secs(600)).is_empty());
    }

    #[test]
    fn a_book_ban_from_an_address_refuses_the_address_and_a_key_ban_does_not() {
        let t0 = Instant::now();
        let mut book = PeerBook::new(Duration::from_secs(60));
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        book.ban(Hash32([1; 32]), None, "bad", t0);
        assert_eq!(book.address_ban(ip, t0), None);
        book.ban(Hash32([2; 32]), Some(ip), "worse", t0);
        let refusal = book.address_ban(ip, t0).unwrap();
        assert!(
            refusal.contains("10.1.2.3") && refusal.contains("worse"),
            "{refusal}"
        );
        assert_eq!(book.address_ban(ip, t0 + Duration::from_secs(60)), None);
    }

    #[test]
    fn one_shared_book_is_seen_by_every_holder() {
        let t0 = Instant::now();
        let fetcher_side = PeerBook::shared(Duration::from_secs(60));
        let network_side = Arc::clone(&fetcher_side);
        let id = Hash32([3; 32]);
        fetcher_side
            .lock()
            .unwrap()
            .ban(id, None, "false manifest", t0);
        assert!(network_side.lock().unwrap().is_banned(&id, t0));
    }
}
