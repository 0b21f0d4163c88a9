//! Sync: catching up with the peers that claim more work. Choosing the
//! peers to fetch from, fetching ranges of blocks from several of them at
//! once, and storing what arrives in chain order through the same path as
//! import-chain.

use super::*;

/// Most blocks one batch of a sync asks one peer for.
const BATCH: usize = wire::MAX_BLOCKS_PER_REQUEST;

/// Which peer a sync round follows.
enum Choice {
    /// This peer named these blocks we lack.
    Leader(Box<Peer>, Vec<Hash32>),
    /// No peer did; `refused` when one was busy rather than silent.
    Nobody { refused: bool },
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
        // The progress lines count from where this sync began, across its
        // rounds of up to MAX_HASHES blocks.
        let start_height = self.shared.tip_watch.borrow().height;
        let started = Instant::now();
        // A line at info at most every LINE_INTERVAL (and when a sync of
        // more than a group of blocks reaches its target), the others at
        // debug; on a terminal, a bar for such a sync.
        let mut bar: Option<crate::progress::Progress> = None;
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
            let (leader, wanted) = match self.choose_peer(ours, &ahead).await? {
                Choice::Leader(leader, wanted) => (*leader, wanted),
                Choice::Nobody { refused } => {
                    if refused {
                        tokio::time::sleep(REFUSED_PAUSE).await;
                    }
                    small_round = true;
                    continue;
                }
            };
            // Fetch every batch at once, spread over the peers ahead of us
            // from the one that gave the hashes (it has the blocks; a
            // single batch goes to it alone), leaving out peers benched
            // for stalling while another can serve, and store them in
            // order as they arrive. A batch whose peer stalls goes to the
            // next source at once (`fetch_batch`).
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
                small_round = true;
                continue;
            }
            let fetches = self.fetch_ranges(&wanted, usable, ours);
            let total = wanted.len();
            small_round = total < BATCH;
            let mut done = 0usize;
            // Batches arrive in chain order; they are verified and stored
            // in groups of up to STORE_GROUP blocks, so verification runs in
            // parallel across a whole group and the store flushes once per group.
            let mut group: Vec<(Vec<u8>, Hash32)> = Vec::new();
            let mut fetches = fetches.into_iter().peekable();
            while let Some(fetch) = fetches.next() {
                let (peer, result) = fetch.await?;
                let mut stop = false;
                match result {
                    Ok(Response::Blocks(blocks)) if !blocks.is_empty() => {
                        group.extend(blocks.into_iter().map(|b| (b, peer.id)));
                    }
                    Ok(Response::Blocks(_)) => {
                        self.forget_claim(&peer.id, ours);
                        stop = true;
                    }
                    Ok(Response::Refused(reason)) => {
                        log(format_args!(
                            "peer {} refused GetBlocks: {reason}",
                            short(&peer.id)
                        ));
                        stop = true;
                    }
                    Ok(other) => {
                        self.punish(&peer.id, &format!("answered GetBlocks with {other:?}"));
                        stop = true;
                    }
                    Err(e) => {
                        // A timeout was counted where the batch was fetched.
                        if !matches!(e, NetError::Timeout) {
                            self.request_failed(&peer.id, &e);
                        }
                        stop = true;
                    }
                }
                let last = stop || fetches.peek().is_none();
                if group.is_empty() || (group.len() < STORE_GROUP && !last) {
                    if stop {
                        break;
                    }
                    continue;
                }
                let count = group.len();
                let Some(report) = self.store_group(std::mem::take(&mut group)).await? else {
                    break;
                };
                done += count;
                let tip = self.shared.tip_watch.borrow().clone();
                let synced = tip.height.saturating_sub(start_height);
                let wanted = leader.best_height.saturating_sub(start_height).max(synced);
                let rate = synced as f64 / started.elapsed().as_secs_f64().max(1e-3);
                let line = format!(
                    "sync: {synced}/{wanted} blocks ({}%), {rate:.0} blocks/s, ETA {}, \
                     {done}/{total} of this round fetched, {} stored, tip height {} \
                     (target {}, {} peers)",
                    (synced * 100).checked_div(wanted).unwrap_or(100),
                    crate::progress::eta(wanted - synced, rate),
                    report.stored,
                    tip.height,
                    leader.best_height,
                    ahead.len()
                );
                if bar.is_none() && wanted > STORE_GROUP as u64 && crate::progress::bar_wanted() {
                    bar = Some(crate::progress::Progress::start(
                        crate::progress::Task::Sync,
                        crate::progress::Unit::Blocks,
                        Some(wanted),
                    ));
                }
                if let Some(bar) = bar.as_mut() {
                    bar.set_total(wanted);
                    bar.update(
                        synced,
                        &format!("tip height {} ({} peers)", tip.height, ahead.len()),
                    );
                }
                let now = Instant::now();
                let due = {
                    let mut last = lock(&self.last_sync_line);
                    // The end of a long sync is always said.
                    let due = (synced >= wanted && wanted > STORE_GROUP as u64)
                        || (bar.is_none()
                            && last.is_none_or(|at| {
                                now.duration_since(at) >= crate::progress::LINE_INTERVAL
                            }));
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
                if stop {
                    break;
                }
            }
        }
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

    /// Verify and store one group of fetched blocks, each with the peer
    /// that sent it; the sender of an invalid block is banned. `None`
    /// when a block was refused: the round ends there.
    async fn store_group(
        self: &Arc<Self>,
        group: Vec<(Vec<u8>, Hash32)>,
    ) -> Result<Option<ImportReport>> {
        let senders: Vec<Hash32> = group.iter().map(|(_, id)| *id).collect();
        let count = group.len();
        let blocks = group.into_iter().map(|(b, _)| b).collect();
        let (report, error) = self.store_from(blocks).await?;
        if let Some(error) = error {
            // The blocks are numbered from 1 in the order fetched;
            // the messages name a block by its hash and height.
            match &error {
                ImportError::BadBlock { index, reason, .. } => {
                    let sender = senders[(*index as usize).saturating_sub(1).min(count - 1)];
                    let block = error.from_peer();
                    if matches!(reason, crate::consensus::BlockError::UnknownParent { .. }) {
                        log(format_args!("sync: peer {} sent {block}", short(&sender)));
                    } else {
                        self.punish(&sender, &format!("sent an invalid {block}"));
                    }
                }
                _ => log(format_args!("sync: {error}")),
            }
            return Ok(None);
        }
        if report.stored > 0 {
            // Peers that bring blocks are kept when slots run out.
            let now = Instant::now();
            let mut peers = lock(&self.peers);
            for id in &senders {
                if let Some(peer) = peers.get_mut(id) {
                    peer.last_block_at = Some(now);
                }
            }
        }
        Ok(Some(report))
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

    /// Verify and store blocks off the async threads.
    pub(super) async fn store_from(
        &self,
        blocks: Vec<Vec<u8>>,
    ) -> Result<(ImportReport, Option<ImportError>)> {
        let shared = Arc::clone(&self.shared);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(crate::offload::spawn_blocking(move || {
            shared.write(|chain| {
                let records = blocks
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| (i as u64 + 1, b))
                    .collect();
                let mut report = ImportReport::default();
                let error = store_blocks(chain, records, threads, now_ms(), &mut report).err();
                shared.metrics.blocks_imported.inc_by(report.stored);
                (report, error)
            })
        })
        .await?)
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
