//! Transaction relay, as pure state (schema/p2p.md, "Transactions"):
//! what each peer is known to have, what is queued to announce to it, the
//! ids being fetched, the ids recently refused, and how many refused
//! transactions a peer may send before it is banned.
//!
//! Handed `now`, never reading a clock, like [`super::peerbook`]. The
//! network keeps one [`PeerTxs`] per connected peer and one [`TxFetches`]
//! and acts on what they answer.

use super::wire::MAX_TX_IDS;
use crate::chain::Hash32;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Ids a peer is remembered to have, at most (the oldest are forgotten).
pub const MAX_KNOWN: usize = 50_000;
/// Ids queued for announcement to one peer, at most (the oldest go first).
pub const MAX_QUEUED: usize = 20_000;
/// A fetch not answered within this is forgotten, and the id may be
/// fetched from another peer.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Refused ids remembered, so they are not fetched again.
pub const MAX_REFUSED: usize = 50_000;
/// Transactions the pool refuses (a used nonce, an overspend, a fee under
/// the minimum) a peer may send within [`REFUSED_SPAN`]; one more is a ban.
/// Honest peers send a few when blocks race their relay.
pub const MAX_REFUSED_PER_PEER: usize = 100;
pub const REFUSED_SPAN: Duration = Duration::from_secs(60);

/// An insertion-ordered set that forgets its oldest entries past `cap`.
#[derive(Clone, Debug, Default)]
struct BoundedSet {
    set: HashSet<Hash32>,
    order: VecDeque<Hash32>,
}

impl BoundedSet {
    fn insert(&mut self, id: Hash32, cap: usize) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        while self.order.len() > cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
    fn contains(&self, id: &Hash32) -> bool {
        self.set.contains(id)
    }
}

/// Relay state of one peer.
#[derive(Clone, Debug, Default)]
pub struct PeerTxs {
    known: BoundedSet,
    queued: VecDeque<Hash32>,
    /// An announcement to this peer is on its way: the next waits for it.
    sending: bool,
    /// The peer was told of the whole pool.
    introduced: bool,
    refused: VecDeque<Instant>,
}

impl PeerTxs {
    /// The peer has `id` (it announced or sent it, or was told of it).
    pub fn mark_known(&mut self, id: Hash32) {
        self.known.insert(id, MAX_KNOWN);
    }

    pub fn knows(&self, id: &Hash32) -> bool {
        self.known.contains(id)
    }

    /// Queue `id` for announcement unless the peer has it. Returns whether
    /// it was queued; past [`MAX_QUEUED`] the oldest queued id is dropped.
    pub fn queue(&mut self, id: Hash32) -> bool {
        if !self.known.insert(id, MAX_KNOWN) {
            return false;
        }
        self.queued.push_back(id);
        if self.queued.len() > MAX_QUEUED {
            self.queued.pop_front();
        }
        true
    }

    /// Whether the peer still has to hear of the whole pool; `true` once,
    /// then `false`: the caller queues the pool the first time.
    pub fn introduce(&mut self) -> bool {
        !std::mem::replace(&mut self.introduced, true)
    }

    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// The next announcement, when none is on its way: up to
    /// [`MAX_TX_IDS`] queued ids, oldest first. The peer is then sending
    /// until [`PeerTxs::sent`].
    pub fn next_announcement(&mut self) -> Option<Vec<Hash32>> {
        if self.sending || self.queued.is_empty() {
            return None;
        }
        let n = self.queued.len().min(MAX_TX_IDS);
        self.sending = true;
        Some(self.queued.drain(..n).collect())
    }

    /// The announcement on its way was answered (or failed).
    pub fn sent(&mut self) {
        self.sending = false;
    }

    /// Record a transaction from this peer that the pool refused at `now`;
    /// `true` when that makes more than [`MAX_REFUSED_PER_PEER`] within
    /// [`REFUSED_SPAN`]: ban the peer.
    pub fn refused(&mut self, now: Instant) -> bool {
        self.refused.push_back(now);
        while self
            .refused
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > REFUSED_SPAN)
        {
            self.refused.pop_front();
        }
        self.refused.len() > MAX_REFUSED_PER_PEER
    }
}

/// Node-wide: ids being fetched, and ids recently refused.
#[derive(Clone, Debug, Default)]
pub struct TxFetches {
    in_flight: HashMap<Hash32, Instant>,
    refused: BoundedSet,
}

impl TxFetches {
    /// Of the announced `ids`, those to fetch now: not `have` (pool or
    /// chain), not refused before, not being fetched (a fetch older than
    /// [`FETCH_TIMEOUT`] no longer counts). They count as being fetched.
    pub fn claim(
        &mut self,
        ids: &[Hash32],
        now: Instant,
        have: impl Fn(&Hash32) -> bool,
    ) -> Vec<Hash32> {
        self.in_flight
            .retain(|_, at| now.saturating_duration_since(*at) < FETCH_TIMEOUT);
        let mut out = Vec::new();
        for id in ids {
            if self.refused.contains(id) || self.in_flight.contains_key(id) || have(id) {
                continue;
            }
            self.in_flight.insert(*id, now);
            out.push(*id);
        }
        out
    }

    /// A fetch ended: `id` is no longer in flight.
    pub fn done(&mut self, id: &Hash32) {
        self.in_flight.remove(id);
    }

    /// The pool refused `id`: never fetch it again (until forgotten).
    pub fn refuse(&mut self, id: Hash32) {
        self.in_flight.remove(&id);
        self.refused.insert(id, MAX_REFUSED);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> Hash32 {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&n.to_le_bytes());
        Hash32(h)
    }

    #[test]
    fn a_peer_is_told_each_id_once_in_batches_of_at_most_128() {
        let mut peer = PeerTxs::default();
        peer.mark_known(id(0));
        assert!(!peer.queue(id(0)), "it announced this one to us");
        for n in 1..=300 {
            assert!(peer.queue(id(n)));
        }
        assert!(!peer.queue(id(5)), "queued once");
        let first = peer.next_announcement().expect("a batch");
        assert_eq!(first, (1..=128).map(id).collect::<Vec<_>>());
        assert_eq!(peer.next_announcement(), None, "one on its way at a time");
        peer.sent();
        assert_eq!(peer.next_announcement().expect("batch").len(), 128);
        peer.sent();
        assert_eq!(
            peer.next_announcement().expect("batch"),
            (257..=300).map(id).collect::<Vec<_>>()
        );
        peer.sent();
        assert_eq!(peer.next_announcement(), None);
    }

    #[test]
    fn a_peer_is_introduced_to_the_pool_once_whoever_spoke_first() {
        let mut peer = PeerTxs::default();
        peer.mark_known(id(1));
        assert!(
            peer.introduce(),
            "state made by the peer's own announcement"
        );
        assert!(!peer.introduce());
        assert!(!peer.introduce());
    }

    #[test]
    fn the_queue_and_the_known_set_are_bounded() {
        let mut peer = PeerTxs::default();
        for n in 0..(MAX_QUEUED as u32 + 5) {
            peer.queue(id(n));
        }
        assert_eq!(peer.queued(), MAX_QUEUED);
        assert_eq!(
            peer.next_announcement().expect("batch")[0],
            id(5),
            "the oldest went"
        );
        let mut peer = PeerTxs::default();
        for n in 0..(MAX_KNOWN as u32 + 1) {
            peer.mark_known(id(n));
        }
        assert!(
            !peer.knows(&id(0)),
            "the oldest is forgotten past the bound"
        );
        assert!(peer.knows(&id(1)));
        assert!(peer.knows(&id(MAX_KNOWN as u32)));
    }

    #[test]
    fn a_peer_is_banned_for_one_refused_transaction_past_100_a_minute() {
        let t0 = Instant::now();
        let mut peer = PeerTxs::default();
        for _ in 0..MAX_REFUSED_PER_PEER {
            assert!(!peer.refused(t0));
        }
        assert!(peer.refused(t0), "101 in a minute");
        // Spread out, the old ones expire.
        let mut peer = PeerTxs::default();
        for _ in 0..MAX_REFUSED_PER_PEER {
            peer.refused(t0);
        }
        let later = t0 + REFUSED_SPAN + Duration::from_millis(1);
        assert!(!peer.refused(later), "the first 100 are over a minute old");
        let mut peer = PeerTxs::default();
        for _ in 0..MAX_REFUSED_PER_PEER {
            peer.refused(t0);
        }
        assert!(
            peer.refused(t0 + REFUSED_SPAN),
            "exactly a minute still counts"
        );
    }

    #[test]
    fn an_id_is_fetched_once_until_its_fetch_times_out_and_never_once_refused() {
        let t0 = Instant::now();
        let mut fetches = TxFetches::default();
        let have = |h: &Hash32| *h == id(9);
        assert_eq!(
            fetches.claim(&[id(1), id(2), id(9)], t0, have),
            vec![id(1), id(2)]
        );
        assert_eq!(fetches.claim(&[id(1), id(3)], t0, have), vec![id(3)]);
        assert_eq!(fetches.in_flight(), 3);
        fetches.done(&id(3));
        assert_eq!(fetches.claim(&[id(3)], t0, have), vec![id(3)]);
        let almost = t0 + FETCH_TIMEOUT - Duration::from_millis(1);
        assert_eq!(fetches.claim(&[id(1)], almost, have), Vec::<Hash32>::new());
        assert_eq!(
            fetches.claim(&[id(1)], t0 + FETCH_TIMEOUT, have),
            vec![id(1)]
        );
        fetches.refuse(id(2));
        assert_eq!(
            fetches.claim(&[id(2)], t0 + FETCH_TIMEOUT * 2, have),
            Vec::<Hash32>::new()
        );
    }
}
