//! Sync: catching up with the peers that claim more work. Choosing the
//! peers to fetch from, fetching ranges of blocks from several of them at
//! once, and storing what arrives in chain order through the same path as
//! import-chain.

use super::*;

/// Most blocks one batch of a sync asks one peer for.
const BATCH: usize = wire::MAX_BLOCKS_PER_REQUEST;

/// Longest the store of a round waits for blocks, in all, while it holds
/// the write lock: then it stores what it has and lets go of the lock
/// until more come, so a peer that trickles its blocks cannot keep other
/// writers (a mined block, a gossiped one) waiting for a whole round.
const ARRIVAL_WAIT: Duration = Duration::from_millis(100);

/// Which peer a sync round follows.
enum Choice {
    /// This peer named these blocks we lack.
    Leader(Box<Peer>, Vec<Hash32>),
    /// No peer did; `refused` when one was busy rather than silent.
    Nobody { refused: bool },
}

/// A round of a sync: the blocks its leader named that we lack, the
/// peers they are fetched from (the leader first), and the fetches, in
/// chain order.
struct Round {
    leader: Peer,
    wanted: Vec<Hash32>,
    sources: Vec<Peer>,
    fetches: Vec<tokio::task::JoinHandle<(Peer, Result<Response, NetError>)>>,
}

impl Network {
    /// Start a sync unless one is running (a running one re-checks peers).
    pub fn trigger_sync(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        self.sync_wanted.store(true, Ordering::SeqCst);
        self.peer_news.notify_waiters();
        let network = Arc::clone(self);
        tokio::spawn(async move {
            // A request that lands while another sync is finishing is
            // picked up by that one: it re-checks the flag after letting go.
            loop {
                let Ok(guard) = network.sync_lock.try_lock() else {
                    return;
                };
                while network.sync_wanted.swap(false, Ordering::SeqCst) {
                    if let Err(e) = network.sync().await {
                        log(format_args!("sync stopped: {e:#}"));
                    }
                }
                lock(&network.sync_state).syncing = false;
                drop(guard);
                if !network.sync_wanted.load(Ordering::SeqCst) {
                    return;
                }
            }
        });
    }

    /// Catch up with the peers that have more work: locator, then batches
    /// of blocks fetched from every such peer in parallel, verified and
    /// stored in chain order.
    pub(super) async fn sync(self: &Arc<Self>) -> Result<()> {
        let mut small_round = false;
        let mut lines = SyncLines {
            start_height: self.shared.tip_watch.borrow().height,
            started: Instant::now(),
            bar: None,
            target: 0,
            peers: 0,
            total: 0,
        };
        let mut next_round: Option<Round> = None;
        loop {
            if small_round {
                // Pace a node chasing a fast chain, but never delay the
                // first round after an announcement.
                tokio::time::sleep(SYNC_PAUSE).await;
            }
            let ours = self.our_work();
            let mut ahead: Vec<Peer> = lock(&self.peers)
                .values()
                .filter(|p| p.best_work > ours)
                .cloned()
                .collect();
            if ahead.is_empty() {
                return Ok(());
            }
            ahead.sort_by_key(|p| std::cmp::Reverse(p.best_work));
            {
                let mut state = lock(&self.sync_state);
                state.syncing = true;
                state.target_height = ahead[0].best_height;
                state.peers = ahead.len();
            }
            // A round started while the one before was stored, if its
            // leader still claims more work than we have. (The fetches of
            // one given up run to their end, unread.)
            let round = match next_round.take() {
                Some(round) if ahead.iter().any(|p| p.id == round.leader.id) => round,
                _ => match self.start_round(ours, &ahead).await? {
                    Some(round) => round,
                    None => {
                        small_round = true;
                        continue;
                    }
                },
            };
            let Round {
                leader,
                wanted,
                sources,
                fetches,
            } = round;
            let total = wanted.len();
            small_round = total < BATCH;
            // A full round: the leader is asked for the hashes after it
            // while its blocks come.
            let asked = (total == wire::MAX_HASHES).then(|| {
                let network = Arc::clone(self);
                let request = Request::GetHashes {
                    locator: wanted.last().copied().into_iter().collect(),
                    max: wire::MAX_HASHES as u32,
                };
                let conn = leader.conn.clone();
                tokio::spawn(async move { network.request(&conn, &request).await })
            });
            // Batches arrive in chain order and go, as they come, to the
            // import's pipeline (`store_round`): a group of up to
            // STORE_GROUP blocks is verified in parallel while the group
            // before it is stored.
            lines.target = leader.best_height;
            lines.peers = ahead.len();
            lines.total = total;
            let (blocks, arrived) = std::sync::mpsc::channel();
            let storing = self.store_round(arrived, lines);
            // The peer that sent each block, in the order fetched.
            let mut senders: Vec<Hash32> = Vec::with_capacity(total);
            let mut complete = true;
            for fetch in fetches {
                let (peer, result) = fetch.await?;
                match result {
                    Ok(Response::Blocks(fetched)) if !fetched.is_empty() => {
                        senders.extend(std::iter::repeat_n(peer.id, fetched.len()));
                        if blocks.send(fetched).is_ok() {
                            continue;
                        }
                        // The store stopped at a bad block.
                    }
                    Ok(Response::Blocks(_)) => self.forget_claim(&peer.id, ours),
                    Ok(Response::Refused(reason)) => {
                        log(format_args!(
                            "peer {} refused GetBlocks: {reason}",
                            short(&peer.id)
                        ));
                    }
                    Ok(other) => {
                        self.punish(&peer.id, &format!("answered GetBlocks with {other:?}"));
                    }
                    Err(e) => {
                        // A timeout was counted where the batch was fetched.
                        if !matches!(e, NetError::Timeout) {
                            self.request_failed(&peer.id, &e);
                        }
                    }
                }
                complete = false;
                break;
            }
            drop(blocks);
            // Every block of a full round came: while they are stored,
            // start fetching the next round's from the same leader.
            next_round = match asked {
                Some(asked) if complete => self.follow_on(asked, leader, sources, ours).await,
                _ => None,
            };
            let (report, error, stored_through, back) = storing.await?;
            lines = back;
            if error.is_some() || stored_through < total as u64 {
                next_round = None;
            }
            self.round_stored(&report, error, &senders, stored_through);
        }
    }

    /// Choose the leader of a round (`choose_peer`) and start fetching its
    /// blocks, spread over the peers ahead of us from the one that gave
    /// the hashes (it has the blocks; a single batch goes to it alone),
    /// leaving out peers benched for stalling while another can serve. A
    /// batch whose peer stalls goes to the next source at once
    /// (`fetch_batch`). `None` when no round can start now.
    async fn start_round(self: &Arc<Self>, ours: U256, ahead: &[Peer]) -> Result<Option<Round>> {
        let (leader, wanted) = match self.choose_peer(ours, ahead).await? {
            Choice::Leader(leader, wanted) => (*leader, wanted),
            Choice::Nobody { refused } => {
                if refused {
                    tokio::time::sleep(REFUSED_PAUSE).await;
                }
                return Ok(None);
            }
        };
        let now = Instant::now();
        let all: Vec<Peer> = std::iter::once(leader.clone())
            .chain(ahead.iter().filter(|p| p.id != leader.id).cloned())
            .collect();
        let usable: Vec<Peer> = {
            let book = lock(&self.block_sources);
            all.iter()
                .filter(|p| book.usable(&p.id, now))
                .cloned()
                .collect()
        };
        if usable.is_empty() {
            // Only peers benched for stalling have these blocks: they
            // cannot back their claims now. Wait for a peer that can.
            for peer in &all {
                self.forget_claim(&peer.id, ours);
            }
            return Ok(None);
        }
        let fetches = self.fetch_ranges(&wanted, usable.clone(), ours);
        Ok(Some(Round {
            leader,
            wanted,
            sources: usable,
            fetches,
        }))
    }

    /// The round after a full one, from its leader's answer to `asked`
    /// (the hashes after that round's last block), fetched from the same
    /// sources (less any benched meanwhile); `None` when the answer names
    /// no block we lack, or no source is usable.
    async fn follow_on(
        self: &Arc<Self>,
        asked: tokio::task::JoinHandle<Result<Response, NetError>>,
        leader: Peer,
        sources: Vec<Peer>,
        ours: U256,
    ) -> Option<Round> {
        let Ok(Ok(Response::Hashes(hashes))) = asked.await else {
            return None;
        };
        let wanted = self.missing(hashes).await.ok()?;
        let now = Instant::now();
        let usable: Vec<Peer> = {
            let book = lock(&self.block_sources);
            sources
                .into_iter()
                .filter(|p| book.usable(&p.id, now))
                .collect()
        };
        if wanted.is_empty() || usable.first().is_none_or(|p| p.id != leader.id) {
            return None;
        }
        tracing::debug!(
            target: "p2p",
            "sync round: the next {} blocks, named by peer {} while the round before was \
             stored, are fetched",
            wanted.len(),
            short(&leader.id)
        );
        let fetches = self.fetch_ranges(&wanted, usable.clone(), ours);
        Some(Round {
            leader,
            wanted,
            sources: usable,
            fetches,
        })
    }

    /// Choose the peer to sync from: ask several of the peers `ahead`
    /// (and any that comes ahead meanwhile) for the hashes after our
    /// locator, and follow the first that names blocks we lack.
    async fn choose_peer(self: &Arc<Self>, ours: U256, ahead: &[Peer]) -> Result<Choice> {
        let shared = Arc::clone(&self.shared);
        let locator = crate::offload::spawn_blocking(move || locator(&shared)).await??;
        // Ask several peers ahead at once, and any that comes ahead
        // while we wait, and follow the first useful answer: a peer
        // that claims work and stays silent cannot hold the sync up.
        let (answers, mut answered) = tokio::sync::mpsc::channel(HASH_SOURCES);
        let request = Request::GetHashes {
            locator,
            max: wire::MAX_HASHES as u32,
        };
        let mut asked = HashSet::new();
        let ask = |peer: Peer, asked: &mut HashSet<Hash32>| {
            asked.insert(peer.id);
            let network = Arc::clone(self);
            let answers = answers.clone();
            let request = request.clone();
            tokio::spawn(async move {
                let result = network.request(&peer.conn, &request).await;
                if let Err(e) = &result {
                    network.request_failed(&peer.id, e);
                }
                let _ = answers.send((peer, result)).await;
            });
        };
        for peer in ahead.iter().take(HASH_SOURCES).cloned() {
            ask(peer, &mut asked);
        }
        let mut waiting = asked.len();
        let mut chosen = None;
        let mut refused = false;
        while waiting > 0 {
            let news = self.peer_news.notified();
            let (peer, result) = tokio::select! {
                answer = answered.recv() => match answer {
                    Some(answer) => answer,
                    None => break,
                },
                () = news => {
                    let newcomers: Vec<Peer> = lock(&self.peers)
                        .values()
                        .filter(|p| p.best_work > ours && !asked.contains(&p.id))
                        .cloned()
                        .collect();
                    for peer in newcomers {
                        ask(peer, &mut asked);
                        waiting += 1;
                    }
                    continue;
                }
            };
            waiting -= 1;
            match result {
                Ok(Response::Hashes(hashes)) => {
                    let wanted = self.missing(hashes).await?;
                    if wanted.is_empty() {
                        // The peer claimed more work than it can show us.
                        self.forget_claim(&peer.id, ours);
                        continue;
                    }
                    chosen = Some((peer, wanted));
                    break;
                }
                Ok(Response::Refused(reason)) => {
                    // Busy, not lying: keep its claim and come back.
                    log(format_args!(
                        "peer {} refused GetHashes: {reason}",
                        short(&peer.id)
                    ));
                    refused = true;
                }
                Ok(other) => {
                    self.punish(&peer.id, &format!("answered GetHashes with {other:?}"));
                }
                Err(_) => self.forget_claim(&peer.id, ours),
            }
        }
        Ok(match chosen {
            Some((leader, wanted)) => Choice::Leader(Box::new(leader), wanted),
            None => Choice::Nobody { refused },
        })
    }

    /// Fetch `wanted` in batches of [`BATCH`], all at once, spread over
    /// `sources` (`fetch_batch`); the answers come back in chain order.
    fn fetch_ranges(
        self: &Arc<Self>,
        wanted: &[Hash32],
        sources: Vec<Peer>,
        ours: U256,
    ) -> Vec<tokio::task::JoinHandle<(Peer, Result<Response, NetError>)>> {
        let sources = Arc::new(sources);
        wanted
            .chunks(BATCH)
            .enumerate()
            .map(|(i, chunk)| {
                let network = Arc::clone(self);
                let sources = Arc::clone(&sources);
                let chunk = chunk.to_vec();
                tokio::spawn(async move { network.fetch_batch(chunk, &sources, i, ours).await })
            })
            .collect()
    }

    /// After a round's blocks were stored: the sender of an invalid block
    /// is banned, and the peers whose blocks were stored (the first
    /// `stored_through` of `senders`, the peer of each block in the order
    /// fetched) are marked as bringing blocks.
    fn round_stored(
        &self,
        report: &ImportReport,
        error: Option<ImportError>,
        senders: &[Hash32],
        stored_through: u64,
    ) {
        if let Some(error) = error {
            // The blocks are numbered from 1 in the order fetched;
            // the messages name a block by its hash and height.
            match &error {
                ImportError::BadBlock { index, reason, .. } if !senders.is_empty() => {
                    let at = (*index as usize).saturating_sub(1).min(senders.len() - 1);
                    let sender = senders[at];
                    let block = error.from_peer();
                    if matches!(reason, crate::consensus::BlockError::UnknownParent { .. }) {
                        log(format_args!("sync: peer {} sent {block}", short(&sender)));
                    } else {
                        self.punish(&sender, &format!("sent an invalid {block}"));
                    }
                }
                _ => log(format_args!("sync: {error}")),
            }
        }
        if report.stored > 0 {
            // Peers that bring blocks are kept when slots run out.
            let now = Instant::now();
            let through = (stored_through as usize).min(senders.len());
            let brought: HashSet<&Hash32> = senders[..through].iter().collect();
            let mut peers = lock(&self.peers);
            for id in brought {
                if let Some(peer) = peers.get_mut(id) {
                    peer.last_block_at = Some(now);
                }
            }
        }
    }

    /// Fetch one batch of blocks, from `sources[first]` and, when it does
    /// not deliver, from the next sources in turn. Each try has the
    /// deadline [`BlockSources::deadline`] gives the peer; a peer that
    /// misses it, or answers without blocks, loses its claim of more work
    /// and is benched as a source; a timeout also counts against it.
    /// Answers the peer that delivered (or the last one tried) and what it
    /// answered.
    pub(super) async fn fetch_batch(
        self: Arc<Self>,
        chunk: Vec<Hash32>,
        sources: &[Peer],
        first: usize,
        ours: U256,
    ) -> (Peer, Result<Response, NetError>) {
        let count = chunk.len();
        let request = Request::GetBlocks(chunk);
        let cap = self.config.limits.request_timeout;
        let mut last = None;
        for attempt in 0..sources.len() {
            let peer = &sources[(first + attempt) % sources.len()];
            if attempt > 0 && !lock(&self.block_sources).usable(&peer.id, Instant::now()) {
                continue;
            }
            let deadline = lock(&self.block_sources).deadline(&peer.id, count, cap);
            let started = Instant::now();
            let result =
                match tokio::time::timeout(deadline, self.request(&peer.conn, &request)).await {
                    Ok(result) => result,
                    Err(_) => Err(NetError::Timeout),
                };
            match &result {
                Ok(Response::Blocks(blocks)) if !blocks.is_empty() => {
                    lock(&self.block_sources).delivered(peer.id, blocks.len(), started.elapsed());
                    return (peer.clone(), result);
                }
                // Busy, not lying: the next source may serve it.
                Ok(Response::Refused(_)) => {}
                Ok(Response::Blocks(_)) | Err(NetError::Timeout) => {
                    let bench = lock(&self.block_sources).stalled(peer.id, Instant::now());
                    self.forget_claim(&peer.id, ours);
                    log(format_args!(
                        "sync: peer {} {} within {:?}; its claim is dropped, it gets no blocks \
                         to serve for {} s, and its batch goes to another peer",
                        short(&peer.id),
                        if result.is_ok() {
                            "sent no blocks"
                        } else {
                            "sent nothing"
                        },
                        deadline,
                        bench.as_secs()
                    ));
                    if result.is_err() {
                        self.note_timeout(&peer.id);
                    }
                }
                _ => {}
            }
            let done = !matches!(
                &result,
                Ok(Response::Refused(_) | Response::Blocks(_)) | Err(NetError::Timeout)
            );
            last = Some((peer.clone(), result));
            if done {
                break;
            }
        }
        last.unwrap_or_else(|| {
            (
                sources[first % sources.len()].clone(),
                Err(NetError::Timeout),
            )
        })
    }

    pub(super) fn request_failed(&self, id: &Hash32, error: &NetError) {
        match error {
            NetError::Timeout => self.note_timeout(id),
            e if e.is_misbehaviour() => self.punish(id, &e.to_string()),
            _ => {}
        }
    }

    /// Stop believing a peer has more work than `ours` until it announces again.
    pub(super) fn forget_claim(&self, id: &Hash32, ours: U256) {
        if let Some(peer) = lock(&self.peers).get_mut(id) {
            peer.best_work = peer.best_work.min(ours);
        }
    }

    /// Verify and store a round's blocks off the async threads, as they
    /// arrive on `arrived`, through the import's pipeline. The write lock
    /// is held while blocks keep coming, and let go while none has come
    /// for [`ARRIVAL_WAIT`]; the tip is announced after every stored group.
    /// Answers what was stored, the first bad block (by its position in
    /// the round, from 1), the position of the last block stored, and the
    /// progress lines' state.
    fn store_round(
        self: &Arc<Self>,
        arrived: std::sync::mpsc::Receiver<Vec<Vec<u8>>>,
        mut lines: SyncLines,
    ) -> tokio::task::JoinHandle<(ImportReport, Option<ImportError>, u64, SyncLines)> {
        let network = Arc::clone(self);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        crate::offload::spawn_blocking(move || {
            let shared = &network.shared;
            let mut round = ImportReport::default();
            let mut position = 0u64;
            let mut stored_through = 0u64;
            let mut said = ImportReport::default();
            let mut open = true;
            while open {
                // Wait for blocks without the lock.
                let Ok(first) = arrived.recv() else {
                    break;
                };
                let mut first = Some(first);
                let mut wait = ARRIVAL_WAIT;
                let (report, error) = shared.write_announcing(|chain, announce| {
                    let next =
                        || gather(first.take(), &arrived, &mut position, &mut open, &mut wait);
                    store_blocks(chain, next, threads, now_ms(), |report, done| {
                        announce();
                        let so_far = ImportReport {
                            stored: round.stored + report.stored,
                            already_known: round.already_known + report.already_known,
                            reorgs: round.reorgs + report.reorgs,
                        };
                        // The pipeline reports its end again, with nothing new.
                        if done > stored_through || so_far != said {
                            lines.say(&network, &so_far, done);
                            said = so_far;
                        }
                        stored_through = done;
                    })
                });
                shared.metrics.blocks_imported.inc_by(report.stored);
                round.stored += report.stored;
                round.already_known += report.already_known;
                round.reorgs += report.reorgs;
                if error.is_some() {
                    return (round, error, stored_through, lines);
                }
            }
            (round, None, stored_through, lines)
        })
    }
}

/// The next group of a round's blocks for the store, numbered from 1 in
/// the order fetched: what `first` and `arrived` give, up to about
/// STORE_GROUP blocks, waiting for them out of `wait` (what is left of
/// [`ARRIVAL_WAIT`] for this hold of the write lock), then only taking
/// what has come. `None` when nothing more came in time (`open` stays
/// true) or the fetches are over (`open` is false).
fn gather(
    first: Option<Vec<Vec<u8>>>,
    arrived: &std::sync::mpsc::Receiver<Vec<Vec<u8>>>,
    position: &mut u64,
    open: &mut bool,
    wait: &mut Duration,
) -> Option<Vec<(u64, Vec<u8>)>> {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let mut records = Vec::with_capacity(STORE_GROUP + BATCH);
    let add = |records: &mut Vec<_>, position: &mut u64, blocks: Vec<Vec<u8>>| {
        for block in blocks {
            *position += 1;
            records.push((*position, block));
        }
    };
    if let Some(first) = first {
        add(&mut records, position, first);
    }
    while *open && records.len() < STORE_GROUP {
        let started = Instant::now();
        let got = if wait.is_zero() {
            arrived.try_recv().map_err(|e| match e {
                TryRecvError::Empty => RecvTimeoutError::Timeout,
                TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            })
        } else {
            arrived.recv_timeout(*wait)
        };
        *wait = wait.saturating_sub(started.elapsed());
        match got {
            Ok(blocks) => add(&mut records, position, blocks),
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => *open = false,
        }
    }
    (!records.is_empty()).then_some(records)
}

/// The progress lines of a sync, which count from where it began, across
/// its rounds of up to MAX_HASHES blocks: a line at info at most every
/// LINE_INTERVAL (and when a sync of more than a group of blocks reaches
/// its target), the others at debug; on a terminal, a bar for such a sync.
struct SyncLines {
    start_height: u64,
    started: Instant,
    bar: Option<crate::progress::Progress>,
    /// The round's leader's height, the peers ahead, and the blocks it fetches.
    target: u64,
    peers: usize,
    total: usize,
}

impl SyncLines {
    /// Say where the sync stands once `done` blocks of the round were
    /// handled, `round` of them stored.
    fn say(&mut self, network: &Network, round: &ImportReport, done: u64) {
        let tip = network.shared.tip_watch.borrow().clone();
        let synced = tip.height.saturating_sub(self.start_height);
        let wanted = self.target.saturating_sub(self.start_height).max(synced);
        let rate = synced as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let line = format!(
            "sync: {synced}/{wanted} blocks ({}%), {rate:.0} blocks/s, ETA {}, \
             {done}/{} of this round fetched, {} stored, tip height {} \
             (target {}, {} peers)",
            (synced * 100).checked_div(wanted).unwrap_or(100),
            crate::progress::eta(wanted - synced, rate),
            self.total,
            round.stored,
            tip.height,
            self.target,
            self.peers
        );
        if self.bar.is_none() && wanted > STORE_GROUP as u64 && crate::progress::bar_wanted() {
            self.bar = Some(crate::progress::Progress::start(
                crate::progress::Task::Sync,
                crate::progress::Unit::Blocks,
                Some(wanted),
            ));
        }
        if let Some(bar) = self.bar.as_mut() {
            bar.set_total(wanted);
            bar.update(
                synced,
                &format!("tip height {} ({} peers)", tip.height, self.peers),
            );
        }
        let now = Instant::now();
        let due = {
            let mut last = lock(&network.last_sync_line);
            // The end of a long sync is always said.
            let due = (synced >= wanted && wanted > STORE_GROUP as u64)
                || (self.bar.is_none()
                    && last
                        .is_none_or(|at| now.duration_since(at) >= crate::progress::LINE_INTERVAL));
            if due {
                *last = Some(now);
            }
            due
        };
        if due {
            tracing::info!(target: "p2p", "{line}");
        } else {
            tracing::debug!(target: "p2p", "{line}");
        }
    }
}

impl Network {
    /// The blocks of `hashes` this node does not hold, in their order
    /// (store reads, off the async threads).
    async fn missing(&self, hashes: Vec<Hash32>) -> Result<Vec<Hash32>> {
        let shared = Arc::clone(&self.shared);
        let wanted = crate::offload::spawn_blocking(move || {
            let store = &shared.chain.store;
            let mut wanted = Vec::with_capacity(hashes.len());
            for hash in hashes {
                if !store.contains(&hash)? {
                    wanted.push(hash);
                }
            }
            Ok::<_, StoreError>(wanted)
        })
        .await??;
        Ok(wanted)
    }
}

/// Best-chain hashes going back from the tip: the 10 latest, then doubling
/// steps, and genesis last.
pub(super) fn locator(shared: &Shared) -> Result<Vec<Hash32>> {
    let store = &shared.chain.store;
    let tip = store.tip()?;
    let mut out = Vec::new();
    let mut height = tip.height;
    let mut step = 1u64;
    loop {
        if let Some(hash) = store.hash_at(height)? {
            out.push(hash);
        }
        if height == 0 || out.len() >= wire::MAX_LOCATOR - 1 {
            break;
        }
        if out.len() >= 10 {
            step *= 2;
        }
        height = height.saturating_sub(step);
    }
    if height != 0 {
        out.push(store.genesis_hash());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round's blocks reach the store in groups of at least STORE_GROUP
    /// while they keep coming, numbered from 1 across the groups. A hold
    /// of the write lock waits at most ARRIVAL_WAIT for blocks in all:
    /// then a group ends with what has come, and the next one only if
    /// more has come. The last group ends when the fetches end.
    #[test]
    fn a_rounds_blocks_are_grouped_as_they_arrive_and_waited_for_a_bounded_time() {
        let (send, arrived) = std::sync::mpsc::channel();
        let batch = |n: usize| -> Vec<Vec<u8>> { (0..n).map(|i| vec![i as u8]).collect() };
        for _ in 0..5 {
            send.send(batch(BATCH)).unwrap();
        }
        let (mut position, mut open, mut wait) = (0u64, true, ARRIVAL_WAIT);
        let mut next = |first| gather(first, &arrived, &mut position, &mut open, &mut wait);
        let first = next(Some(batch(BATCH))).unwrap();
        assert_eq!(first.len(), STORE_GROUP);
        assert_eq!(first.first().unwrap().0, 1);
        assert_eq!(first.last().unwrap().0, STORE_GROUP as u64);
        // Two batches are left, and nothing more comes: the group waits out
        // what is left of the hold's wait, and ends with them.
        let started = Instant::now();
        let partial = next(None).unwrap();
        assert!(started.elapsed() >= ARRIVAL_WAIT / 2);
        assert_eq!(partial.len(), 2 * BATCH);
        assert_eq!(partial.first().unwrap().0, STORE_GROUP as u64 + 1);
        // The wait is spent: what has come is taken, without waiting.
        send.send(batch(1)).unwrap();
        let started = Instant::now();
        let taken = next(None).unwrap();
        assert_eq!(taken.len(), 1);
        assert!(next(None).is_none(), "the hold ends when nothing has come");
        assert!(started.elapsed() < ARRIVAL_WAIT / 2);
        assert!(open, "a pause is not the end of the round");
        assert!(wait.is_zero());
        // The next hold of the lock waits again, until the fetches end.
        wait = ARRIVAL_WAIT;
        send.send(batch(3)).unwrap();
        drop(send);
        let last = gather(None, &arrived, &mut position, &mut open, &mut wait).unwrap();
        assert_eq!(
            last.iter().map(|(at, _)| *at).collect::<Vec<_>>(),
            (position - 2..=position).collect::<Vec<_>>()
        );
        assert_eq!(position, (STORE_GROUP + 2 * BATCH + 1 + 3) as u64);
        assert!(!open, "the fetches are over");
        assert!(gather(None, &arrived, &mut position, &mut open, &mut wait).is_none());
    }
}
