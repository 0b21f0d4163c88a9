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

/// Rounds of hashes a leader is asked for ahead of the round whose
/// blocks are being fetched: the next one waits in the channel while the
/// one after it is asked.
const HASHES_AHEAD: usize = 1;

/// A round of a sync: the blocks its leader named that we lack, the
/// peers they are fetched from (the leader first), the fetches, in chain
/// order, and the leader's next rounds of hashes, asked before this
/// round's blocks (`hashes_ahead`).
struct Round {
    leader: Peer,
    wanted: Vec<Hash32>,
    sources: Vec<Peer>,
    fetches: Vec<tokio::task::JoinHandle<(Peer, Result<Response, NetError>)>>,
    next_hashes: Option<tokio::sync::mpsc::Receiver<Vec<Hash32>>>,
}

/// A batch of fetched blocks on its way to the store; `new_round` for a
/// round's first batch.
struct Arrival {
    new_round: bool,
    blocks: Vec<Vec<u8>>,
}

/// What a sync's store answers when it ends: what was stored, the first
/// bad block (by its position in the sync, from 1), and the position of
/// the last block stored.
type StoreEnd = (ImportReport, Option<ImportError>, u64);

/// The store of a sync (`store_rounds`): one pipeline that every round
/// following on from the one before feeds, the peer that sent each block
/// fed to it, in the order fetched, and the position of the last block
/// it has taken from what was fed (into a group being verified, or
/// gathered for the next one).
struct Storing {
    blocks: std::sync::mpsc::Sender<Arrival>,
    senders: Vec<Hash32>,
    taken: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<StoreEnd>,
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
    /// stored in chain order. The rounds that follow on from a full one
    /// (the leader's next hashes, asked ahead) feed the same store, so its
    /// pipeline does not drain between them.
    pub(super) async fn sync(self: &Arc<Self>) -> Result<()> {
        let mut small_round = false;
        let lines = Arc::new(Mutex::new(SyncLines {
            start_height: self.shared.tip_watch.borrow().height,
            started: Instant::now(),
            bar: None,
            rounds: std::collections::VecDeque::new(),
        }));
        let mut next_round: Option<Round> = None;
        let mut storing: Option<Storing> = None;
        loop {
            if small_round && storing.is_none() {
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
                if let Some(storing) = storing.take() {
                    // Check again once what was fetched is stored.
                    self.stored(storing).await?;
                    small_round = false;
                    continue;
                }
                return Ok(());
            }
            ahead.sort_by_key(|p| std::cmp::Reverse(p.best_work));
            {
                let mut state = lock(&self.sync_state);
                state.syncing = true;
                state.target_height = ahead[0].best_height;
                state.peers = ahead.len();
            }
            // A round started while the one before was fetched, if its
            // leader still claims more work than we have. (The fetches of
            // one given up run to their end, unread.) Any other round
            // starts from what is stored: the store is let finish first.
            let round = match next_round.take() {
                Some(round) if ahead.iter().any(|p| p.id == round.leader.id) => round,
                _ => {
                    if let Some(storing) = storing.take() {
                        self.stored(storing).await?;
                        small_round = false;
                        continue;
                    }
                    match self.start_round(ours, &ahead).await? {
                        Some(round) => round,
                        None => {
                            small_round = true;
                            continue;
                        }
                    }
                }
            };
            let Round {
                leader,
                wanted,
                sources,
                fetches,
                next_hashes,
            } = round;
            let total = wanted.len();
            small_round = total < BATCH;
            // Batches arrive in chain order and go, as they come, to the
            // import's pipeline (`store_rounds`): a group of up to
            // STORE_GROUP blocks is verified in parallel while the group
            // before it is stored.
            let storing_now = storing.get_or_insert_with(|| {
                // A new store counts its blocks from 1.
                lock(&lines).rounds.clear();
                let (blocks, arrived) = std::sync::mpsc::channel();
                let (taking, taken) = tokio::sync::watch::channel(0);
                Storing {
                    blocks,
                    senders: Vec::new(),
                    taken,
                    task: self.store_rounds(arrived, taking, Arc::clone(&lines)),
                }
            });
            let before_round = storing_now.senders.len() as u64;
            lock(&lines).rounds.push_back(RoundLine {
                first: before_round + 1,
                total,
                target: leader.best_height,
                peers: ahead.len(),
            });
            let mut complete = true;
            let mut new_round = true;
            for fetch in fetches {
                let (peer, result) = fetch.await?;
                match result {
                    Ok(Response::Blocks(fetched)) if !fetched.is_empty() => {
                        let count = fetched.len();
                        let arrival = Arrival {
                            new_round,
                            blocks: fetched,
                        };
                        if storing_now.blocks.send(arrival).is_ok() {
                            storing_now
                                .senders
                                .extend(std::iter::repeat_n(peer.id, count));
                            new_round = false;
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
            // Every block of a full round came and the store goes on:
            // the next round, from the hashes the leader named ahead, is
            // fetched and fed to the same store, once the store has taken
            // this round's first block (blocks are fetched at most a round
            // ahead of it). Otherwise the store ends with what it was given.
            next_round = match next_hashes {
                Some(hashes) if complete => {
                    let begun = taken_past(&storing_now.taken, before_round).await;
                    if begun && !storing_now.task.is_finished() {
                        self.follow_on(hashes, leader, sources, ours).await
                    } else {
                        None
                    }
                }
                _ => None,
            };
            if next_round.is_none() {
                if let Some(storing) = storing.take() {
                    self.stored(storing).await?;
                }
            }
        }
    }

    /// Let the store of a sync finish what it was given, then judge the
    /// peers that sent the blocks (`round_stored`).
    async fn stored(&self, storing: Storing) -> Result<()> {
        let Storing {
            blocks,
            senders,
            task,
            ..
        } = storing;
        drop(blocks);
        let (report, error, stored_through) = task.await?;
        self.round_stored(&report, error, &senders, stored_through);
        Ok(())
    }

    /// Choose the leader of a round (`choose_peer`) and start fetching its
    /// blocks, spread over the peers ahead of us from the one that gave
    /// the hashes (it has the blocks; a single batch goes to it alone),
    /// leaving out peers benched for stalling while another can serve. A
    /// batch whose peer stalls goes to the next source at once
    /// (`fetch_batch`). A full round asks its leader for the hashes after
    /// it before its blocks (`hashes_ahead`). `None` when no round can
    /// start now.
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
        let next_hashes = match wanted.last() {
            Some(&last) if wanted.len() == wire::MAX_HASHES => {
                Some(self.hashes_ahead(leader.clone(), last))
            }
            _ => None,
        };
        let fetches = self.fetch_ranges(&wanted, usable.clone(), ours);
        Ok(Some(Round {
            leader,
            wanted,
            sources: usable,
            fetches,
            next_hashes,
        }))
    }

    /// Ask `leader` for the hashes after `after`, and after the last of
    /// each full answer in turn, keeping up to [`HASHES_AHEAD`] answers
    /// waiting: the blocks of each that we lack come out of the channel,
    /// the next round's while a round's blocks are still fetched. The
    /// asking ends with an answer short of MAX_HASHES or naming nothing we
    /// lack, a failed request, or when the channel is dropped.
    fn hashes_ahead(
        self: &Arc<Self>,
        leader: Peer,
        after: Hash32,
    ) -> tokio::sync::mpsc::Receiver<Vec<Hash32>> {
        let (named, next_hashes) = tokio::sync::mpsc::channel(HASHES_AHEAD);
        let network = Arc::clone(self);
        tokio::spawn(async move {
            let mut after = after;
            loop {
                let request = Request::GetHashes {
                    locator: vec![after],
                    max: wire::MAX_HASHES as u32,
                };
                let Ok(Response::Hashes(hashes)) = network.request(&leader.conn, &request).await
                else {
                    return;
                };
                let full = hashes.len() == wire::MAX_HASHES;
                let Some(&last) = hashes.last() else {
                    return;
                };
                let Ok(wanted) = network.missing(hashes).await else {
                    return;
                };
                tracing::debug!(
                    target: "p2p",
                    "sync hashes: peer {} named the {} blocks after {}, asked ahead of their round",
                    short(&leader.id),
                    wanted.len(),
                    short(&after)
                );
                if wanted.is_empty() || named.send(wanted).await.is_err() || !full {
                    return;
                }
                after = last;
            }
        });
        next_hashes
    }

    /// The round after a full one, from the blocks its leader named ahead
    /// (`hashes_ahead`), fetched from the same sources (less any benched
    /// meanwhile); `None` when it names no more, or no source is usable.
    async fn follow_on(
        self: &Arc<Self>,
        mut next_hashes: tokio::sync::mpsc::Receiver<Vec<Hash32>>,
        leader: Peer,
        sources: Vec<Peer>,
        ours: U256,
    ) -> Option<Round> {
        let wanted = next_hashes.recv().await?;
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
             fetched, are fetched for the same store",
            wanted.len(),
            short(&leader.id)
        );
        let fetches = self.fetch_ranges(&wanted, usable.clone(), ours);
        Some(Round {
            leader,
            wanted,
            sources: usable,
            fetches,
            next_hashes: Some(next_hashes),
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

    /// Verify and store a sync's blocks off the async threads, as they
    /// arrive on `arrived` (round after round), through the import's
    /// pipeline. The write lock is held while blocks keep coming, and let
    /// go while none has come for [`ARRIVAL_WAIT`] (counted afresh for
    /// each round); the tip is announced after every stored group. The
    /// position of each block taken from `arrived` is sent on `taken` as
    /// it is taken (`gather`).
    fn store_rounds(
        self: &Arc<Self>,
        arrived: std::sync::mpsc::Receiver<Arrival>,
        taken: tokio::sync::watch::Sender<u64>,
        lines: Arc<Mutex<SyncLines>>,
    ) -> tokio::task::JoinHandle<StoreEnd> {
        let network = Arc::clone(self);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        crate::offload::spawn_blocking(move || {
            let shared = &network.shared;
            let mut sync = ImportReport::default();
            let mut position = 0u64;
            let mut stored_through = 0u64;
            let mut said = ImportReport::default();
            let mut open = true;
            while open {
                // Wait for blocks without the lock.
                let Ok(first) = arrived.recv() else {
                    break;
                };
                let mut first = Some(first.blocks);
                let mut wait = ARRIVAL_WAIT;
                // The first group is one batch, so that verifying starts
                // as soon as blocks come; each next one is twice as big,
                // up to STORE_GROUP.
                let mut group = BATCH;
                let (report, error) = shared.write_announcing(|chain, announce| {
                    let next = || {
                        let limit = group;
                        group = (group * 2).min(STORE_GROUP);
                        gather(
                            first.take(),
                            &arrived,
                            &mut position,
                            &mut open,
                            &mut wait,
                            limit,
                            &taken,
                        )
                    };
                    store_blocks(chain, next, threads, now_ms(), |report, done| {
                        announce();
                        let so_far = ImportReport {
                            stored: sync.stored + report.stored,
                            already_known: sync.already_known + report.already_known,
                            reorgs: sync.reorgs + report.reorgs,
                        };
                        // The pipeline reports its end again, with nothing new.
                        if done > stored_through || so_far != said {
                            lock(&lines).say(&network, &so_far, done);
                            said = so_far;
                        }
                        stored_through = done;
                    })
                });
                shared.metrics.blocks_imported.inc_by(report.stored);
                sync.stored += report.stored;
                sync.already_known += report.already_known;
                sync.reorgs += report.reorgs;
                if error.is_some() {
                    return (sync, error, stored_through);
                }
            }
            (sync, None, stored_through)
        })
    }
}

/// Wait until the store (`taken`: the position of the last block it took)
/// is past position `through`: true then, false if it ends first. What
/// the store has taken, not what it has stored: a group waiting for more
/// blocks may be waiting for the very round this wait holds back.
async fn taken_past(taken: &tokio::sync::watch::Receiver<u64>, through: u64) -> bool {
    let mut taken = taken.clone();
    // The value is let go at once: the store cannot report while it is held.
    let past = taken.wait_for(|&done| done > through).await.is_ok();
    past
}

/// The next group of a sync's blocks for the store, numbered from 1 in
/// the order fetched: what `first` and `arrived` give, up to about
/// `group` blocks, waiting for them out of `wait` (what is left of
/// [`ARRIVAL_WAIT`] for this hold of the write lock, counted afresh when
/// a round's first batch comes), then only taking what has come. A group
/// runs on from one round into the next. The position of the last block
/// taken is sent on `taken` as each batch is taken, not when the group
/// ends. `None` when nothing more came in time (`open` stays true) or the
/// fetches are over (`open` is false).
fn gather(
    first: Option<Vec<Vec<u8>>>,
    arrived: &std::sync::mpsc::Receiver<Arrival>,
    position: &mut u64,
    open: &mut bool,
    wait: &mut Duration,
    group: usize,
    taken: &tokio::sync::watch::Sender<u64>,
) -> Option<Vec<(u64, Vec<u8>)>> {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let mut records = Vec::with_capacity(group + BATCH);
    let add = |records: &mut Vec<_>, position: &mut u64, blocks: Vec<Vec<u8>>| {
        for block in blocks {
            *position += 1;
            records.push((*position, block));
        }
        taken.send_replace(*position);
    };
    if let Some(first) = first {
        add(&mut records, position, first);
    }
    while *open && records.len() < group {
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
            Ok(arrival) => {
                if arrival.new_round {
                    *wait = ARRIVAL_WAIT;
                }
                add(&mut records, position, arrival.blocks);
            }
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => *open = false,
        }
    }
    (!records.is_empty()).then_some(records)
}

/// The progress lines of a sync, which count from where it began, across
/// its rounds of up to MAX_HASHES blocks: a line at info at most every
/// LINE_INTERVAL (and when a sync of more than LONG_SYNC blocks reaches
/// its target), the others at debug; on a terminal, a bar for such a sync.
struct SyncLines {
    start_height: u64,
    started: Instant,
    bar: Option<crate::progress::Progress>,
    /// The rounds given to the store and not yet past, oldest first.
    rounds: std::collections::VecDeque<RoundLine>,
}

/// A round as its progress lines name it.
struct RoundLine {
    /// The position of its first block in the sync, from 1.
    first: u64,
    /// Its blocks, its leader's height and the peers ahead when it began.
    total: usize,
    target: u64,
    peers: usize,
}

impl SyncLines {
    /// Say where the sync stands once its first `done` blocks were
    /// handled, `stored` of them stored.
    fn say(&mut self, network: &Network, stored: &ImportReport, done: u64) {
        while self.rounds.get(1).is_some_and(|next| next.first <= done) {
            self.rounds.pop_front();
        }
        let (in_round, total, target, peers) = self.rounds.front().map_or((done, 0, 0, 0), |r| {
            (
                (done + 1).saturating_sub(r.first),
                r.total,
                r.target,
                r.peers,
            )
        });
        let tip = network.shared.tip_watch.borrow().clone();
        let synced = tip.height.saturating_sub(self.start_height);
        let wanted = target.saturating_sub(self.start_height).max(synced);
        let rate = synced as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let line = format!(
            "sync: {synced}/{wanted} blocks ({}%), {rate:.0} blocks/s, ETA {}, \
             {in_round}/{total} of this round fetched, {} stored in all, tip height {} \
             (target {target}, {peers} peers)",
            (synced * 100).checked_div(wanted).unwrap_or(100),
            crate::progress::eta(wanted - synced, rate),
            stored.stored,
            tip.height,
        );
        if self.bar.is_none() && wanted > LONG_SYNC && crate::progress::bar_wanted() {
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
                &format!("tip height {} ({} peers)", tip.height, peers),
            );
        }
        let now = Instant::now();
        let due = {
            let mut last = lock(&network.last_sync_line);
            // The end of a long sync is always said.
            let due = (synced >= wanted && wanted > LONG_SYNC)
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

    fn batch(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i as u8]).collect()
    }

    fn arrival(n: usize, new_round: bool) -> Arrival {
        Arrival {
            new_round,
            blocks: batch(n),
        }
    }

    /// A round's blocks reach the store in groups of at least STORE_GROUP
    /// while they keep coming, numbered from 1 across the groups. A hold
    /// of the write lock waits at most ARRIVAL_WAIT for blocks in all:
    /// then a group ends with what has come, and the next one only if
    /// more has come. The last group ends when the fetches end.
    #[test]
    fn a_rounds_blocks_are_grouped_as_they_arrive_and_waited_for_a_bounded_time() {
        let (send, arrived) = std::sync::mpsc::channel();
        let (took, _) = tokio::sync::watch::channel(0u64);
        // With the first batch given: a group's worth, and two batches more.
        for _ in 0..STORE_GROUP / BATCH + 1 {
            send.send(arrival(BATCH, false)).unwrap();
        }
        let (mut position, mut open, mut wait) = (0u64, true, ARRIVAL_WAIT);
        let mut next = |first| {
            gather(
                first,
                &arrived,
                &mut position,
                &mut open,
                &mut wait,
                STORE_GROUP,
                &took,
            )
        };
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
        send.send(arrival(1, false)).unwrap();
        let started = Instant::now();
        let taken = next(None).unwrap();
        assert_eq!(taken.len(), 1);
        assert!(next(None).is_none(), "the hold ends when nothing has come");
        assert!(started.elapsed() < ARRIVAL_WAIT / 2);
        assert!(open, "a pause is not the end of the round");
        assert!(wait.is_zero());
        // The next hold of the lock waits again, until the fetches end.
        wait = ARRIVAL_WAIT;
        send.send(arrival(3, false)).unwrap();
        drop(send);
        let last = gather(
            None,
            &arrived,
            &mut position,
            &mut open,
            &mut wait,
            STORE_GROUP,
            &took,
        )
        .unwrap();
        assert_eq!(
            last.iter().map(|(at, _)| *at).collect::<Vec<_>>(),
            (position - 2..=position).collect::<Vec<_>>()
        );
        assert_eq!(position, (STORE_GROUP + 2 * BATCH + 1 + 3) as u64);
        assert!(!open, "the fetches are over");
        assert!(gather(
            None,
            &arrived,
            &mut position,
            &mut open,
            &mut wait,
            STORE_GROUP,
            &took
        )
        .is_none());
    }

    /// A group holds at most `group` blocks, and at least one whole batch,
    /// when more have come: the store's first group is one batch, so
    /// that verifying starts as soon as blocks come.
    #[test]
    fn a_group_stops_at_its_size_once_a_batch_takes_it_there() {
        let (send, arrived) = std::sync::mpsc::channel();
        let (took, _) = tokio::sync::watch::channel(0u64);
        for _ in 0..4 {
            send.send(arrival(BATCH, false)).unwrap();
        }
        let (mut position, mut open, mut wait) = (0u64, true, ARRIVAL_WAIT);
        let first = gather(
            None,
            &arrived,
            &mut position,
            &mut open,
            &mut wait,
            BATCH,
            &took,
        )
        .unwrap();
        assert_eq!(first.len(), BATCH);
        let next = gather(
            None,
            &arrived,
            &mut position,
            &mut open,
            &mut wait,
            BATCH + 1,
            &took,
        )
        .unwrap();
        assert_eq!(
            next.len(),
            2 * BATCH,
            "whole batches: the one that passes the size too"
        );
        let last = gather(
            None,
            &arrived,
            &mut position,
            &mut open,
            &mut wait,
            2 * BATCH,
            &took,
        )
        .unwrap();
        assert_eq!(last.len(), BATCH, "what has come, after the wait");
        assert_eq!(position, 4 * BATCH as u64);
    }

    /// The store of a sync is one pipeline across its rounds: a group
    /// runs on from the end of one round into the next, the positions go
    /// on counting, and a round's first batch gives the hold of the write
    /// lock a fresh ARRIVAL_WAIT, as a round of its own would have had.
    #[test]
    fn a_group_runs_on_into_the_next_round_whose_first_batch_renews_the_wait() {
        let (send, arrived) = std::sync::mpsc::channel();
        let (took, _) = tokio::sync::watch::channel(0u64);
        // The end of a round of MAX_HASHES blocks (its last batch is
        // short), then the next round's first batches.
        let last = wire::MAX_HASHES % BATCH;
        let (mut position, mut open) = ((wire::MAX_HASHES - last) as u64, true);
        send.send(arrival(last, false)).unwrap();
        send.send(arrival(BATCH, true)).unwrap();
        for _ in 0..STORE_GROUP / BATCH {
            send.send(arrival(BATCH, false)).unwrap();
        }
        // This hold of the lock has spent its wait on the round before.
        let mut wait = Duration::ZERO;
        let group = gather(
            None,
            &arrived,
            &mut position,
            &mut open,
            &mut wait,
            STORE_GROUP,
            &took,
        )
        .unwrap();
        assert_eq!(group.len(), last + STORE_GROUP);
        assert_eq!(
            group.iter().map(|(at, _)| *at).collect::<Vec<_>>(),
            ((wire::MAX_HASHES - last) as u64 + 1..=position).collect::<Vec<_>>()
        );
        assert_eq!(position, (wire::MAX_HASHES + STORE_GROUP) as u64);
        assert!(
            wait > ARRIVAL_WAIT / 2,
            "the new round's wait is fresh: {wait:?}"
        );
        // What is left of it is waited out for the next group.
        let started = Instant::now();
        let next = gather(
            None,
            &arrived,
            &mut position,
            &mut open,
            &mut wait,
            STORE_GROUP,
            &took,
        )
        .unwrap();
        assert_eq!(next.len(), BATCH);
        assert!(started.elapsed() >= ARRIVAL_WAIT / 2);
        assert!(wait.is_zero());
        assert!(open, "the round goes on");
    }

    /// The next round's blocks are fetched only once the store has taken
    /// the first block of this one: the wait ends when the store gets
    /// there, not before, and gives up when the store ends short of it.
    #[test]
    fn the_next_round_waits_for_the_store_to_take_this_ones_first_block() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (taking, taken) = tokio::sync::watch::channel(0u64);
            // This round begins after position 2000.
            let waiting = tokio::spawn({
                let taken = taken.clone();
                async move { taken_past(&taken, 2000).await }
            });
            // The store reports from its own thread while the wait runs.
            taking.send_replace(1792);
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!waiting.is_finished(), "went on before the store got there");
            taking.send_replace(2000);
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(
                !waiting.is_finished(),
                "went on with the round before taken, but not this one's first block"
            );
            let reporter = std::thread::spawn(move || {
                taking.send_replace(2001);
                taking
            });
            assert!(waiting.await.unwrap());
            let taking = reporter.join().unwrap();
            assert!(taken_past(&taken, 2000).await, "already past: no wait");
            // A store that stops at a bad block ends short of the round.
            let waiting = tokio::spawn({
                let taken = taken.clone();
                async move { taken_past(&taken, 4000).await }
            });
            drop(taking);
            assert!(!waiting.await.unwrap());
        });
    }

    /// The store says what it has taken as each batch is taken, not when
    /// its group is full: a group still waiting for blocks of the next
    /// round would otherwise hold back the very fetch of that round
    /// (`taken_past`) until ARRIVAL_WAIT ran out.
    #[test]
    fn what_the_store_took_is_said_while_its_group_still_waits() {
        let (send, arrived) = std::sync::mpsc::channel();
        let (took, taken) = tokio::sync::watch::channel(0u64);
        // The rest of a round: less than a group.
        send.send(arrival(BATCH, false)).unwrap();
        send.send(arrival(BATCH / 2, false)).unwrap();
        let started = Instant::now();
        let group = std::thread::scope(|scope| {
            let took = &took;
            let gathering = scope.spawn(move || {
                let (mut position, mut open, mut wait) = (0u64, true, ARRIVAL_WAIT);
                gather(
                    None,
                    &arrived,
                    &mut position,
                    &mut open,
                    &mut wait,
                    STORE_GROUP,
                    took,
                )
            });
            // Seen while the group waits out ARRIVAL_WAIT for more.
            while *taken.borrow() < (BATCH + BATCH / 2) as u64 {
                assert!(
                    started.elapsed() < ARRIVAL_WAIT / 2,
                    "what was taken is said only when the group ends"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(!gathering.is_finished());
            gathering.join().unwrap().unwrap()
        });
        assert_eq!(group.len(), BATCH + BATCH / 2);
        assert!(started.elapsed() >= ARRIVAL_WAIT / 2);
        drop(send);
    }
}
