//! Gossip: new tips announced to every peer that lacks them, new
//! transactions relayed and fetched, and a stopping node's last
//! announcement of its tip to the peers behind it.

use super::*;

impl Network {
    /// Before a clean stop: announce our tip to every peer not known to
    /// have as much work, keep serving them, and wait until each has it
    /// (it says so, or it answers `GetBlocks([tip])` with the block) or
    /// `bound` passes. Logs how many peers were brought up to date and
    /// how many were left. Returns at once when no peer is behind.
    pub async fn relay_tip_before_stop(self: &Arc<Self>, bound: Duration) {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + bound;
        let tip = self.shared.tip_watch.borrow().clone();
        let behind: Vec<Peer> = lock(&self.peers)
            .values()
            .filter(|p| p.best_work < tip.cumulative_work)
            .cloned()
            .collect();
        if behind.is_empty() {
            return;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for peer in behind {
            tasks.spawn(Arc::clone(self).bring_up_to_date(peer, tip.clone(), deadline));
        }
        let (mut done, mut late, mut lost) = (0, 0, 0);
        while let Some(outcome) = tasks.join_next().await {
            match outcome {
                Ok(CatchUp::Done) => done += 1,
                Ok(CatchUp::TimedOut) => late += 1,
                Ok(CatchUp::Lost) | Err(_) => lost += 1,
            }
        }
        let mut why = Vec::new();
        if late > 0 {
            why.push(format!(
                "{late} did not catch up within {} s",
                bound.as_secs_f64()
            ));
        }
        if lost > 0 {
            why.push(format!("{lost} disconnected"));
        }
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(" ({})", why.join(", "))
        };
        log(format_args!(
            "stopping: {done} peers brought up to date with our tip (height {}) in {:.1} s, {} left{why}",
            tip.height,
            started.elapsed().as_secs_f64(),
            late + lost
        ));
    }

    /// One peer behind a stopping node: announce the tip, then ask every
    /// [`STOP_PROBE_INTERVAL`] for the tip block until the peer has it,
    /// claims as much work, leaves, or `deadline` passes. Its requests
    /// are served meanwhile as always.
    pub(super) async fn bring_up_to_date(
        self: Arc<Self>,
        peer: Peer,
        tip: Tip,
        deadline: tokio::time::Instant,
    ) -> CatchUp {
        let announce = Request::Announce {
            hash: tip.hash,
            height: tip.height,
            work: Hash32(tip.cumulative_work.to_big_endian()),
        };
        let probe = Request::GetBlocks(vec![tip.hash]);
        let wait = async {
            let _ = self.request(&peer.conn, &announce).await;
            loop {
                let claim = lock(&self.peers)
                    .get(&peer.id)
                    .filter(|p| p.conn.stable_id() == peer.conn.stable_id())
                    .map(|p| p.best_work);
                match claim {
                    None => return CatchUp::Lost,
                    Some(work) if work >= tip.cumulative_work => return CatchUp::Done,
                    Some(_) => {}
                }
                match self.request(&peer.conn, &probe).await {
                    Ok(Response::Blocks(blocks)) if !blocks.is_empty() => return CatchUp::Done,
                    _ if peer.conn.close_reason().is_some() => return CatchUp::Lost,
                    _ => {}
                }
                tokio::time::sleep(STOP_PROBE_INTERVAL).await;
            }
        };
        tokio::time::timeout_at(deadline, wait)
            .await
            .unwrap_or(CatchUp::TimedOut)
    }

    /// Announce new tips to every peer that does not have them. At most
    /// one round per [`ANNOUNCE_INTERVAL`]: tips found meanwhile coalesce
    /// into the latest, so a fast chain never floods peers.
    ///
    /// Each peer has its own announcer task and a queue of one: the
    /// latest announcement replaces one the peer has not taken yet. A
    /// round only hands announcements over, so a slow or dead peer delays
    /// nobody but itself, and one that does not answer an announcement in
    /// time is dropped ([`Network::announce_to`]).
    pub(super) async fn announce_loop(self: Arc<Self>) {
        let mut tips = self.shared.tip_watch.subscribe();
        // Per peer: the connection its announcer serves, and its queue.
        let mut announcers: HashMap<Hash32, (usize, tokio::sync::watch::Sender<Option<Request>>)> =
            HashMap::new();
        loop {
            tokio::select! {
                changed = tips.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(REANNOUNCE_INTERVAL) => {}
            }
            let tip = tips.borrow_and_update().clone();
            let request = Request::Announce {
                hash: tip.hash,
                height: tip.height,
                work: Hash32(tip.cumulative_work.to_big_endian()),
            };
            let peers: Vec<Peer> = lock(&self.peers).values().cloned().collect();
            announcers.retain(|id, (conn, _)| {
                peers
                    .iter()
                    .any(|p| p.id == *id && p.conn.stable_id() == *conn)
            });
            for peer in peers {
                if peer.best_work >= tip.cumulative_work {
                    continue;
                }
                let (_, queue) = announcers.entry(peer.id).or_insert_with(|| {
                    let (queue, receiver) = tokio::sync::watch::channel(None);
                    let stable_id = peer.conn.stable_id();
                    tokio::spawn(Arc::clone(&self).announce_to(peer, receiver));
                    (stable_id, queue)
                });
                queue.send_replace(Some(request.clone()));
            }
            tokio::time::sleep(ANNOUNCE_INTERVAL).await;
        }
    }

    /// One peer's announcer: send the latest announcement queued for it,
    /// one at a time, until its queue is dropped (the peer left). A peer
    /// that does not answer one within the request timeout is dropped, and
    /// the timeout counts against it.
    pub(super) async fn announce_to(
        self: Arc<Self>,
        peer: Peer,
        mut queue: tokio::sync::watch::Receiver<Option<Request>>,
    ) {
        while queue.changed().await.is_ok() {
            let Some(request) = queue.borrow_and_update().clone() else {
                continue;
            };
            match self.request(&peer.conn, &request).await {
                Ok(_) => {}
                Err(NetError::Timeout) => {
                    self.note_timeout(&peer.id);
                    self.drop_peer(
                        &peer,
                        &format!(
                            "did not answer an announcement within {} s",
                            self.config.limits.request_timeout.as_secs()
                        ),
                    );
                    return;
                }
                Err(e) => {
                    self.request_failed(&peer.id, &e);
                    if peer.conn.close_reason().is_some() {
                        return;
                    }
                }
            }
        }
    }

    /// Disconnect a peer that is too slow to keep, without a ban: it may
    /// come back.
    pub(super) fn drop_peer(&self, peer: &Peer, reason: &str) {
        let removed = {
            let mut peers = lock(&self.peers);
            let ours = peers
                .get(&peer.id)
                .is_some_and(|p| p.conn.stable_id() == peer.conn.stable_id());
            ours && peers.remove(&peer.id).is_some()
        };
        if removed {
            log(format_args!(
                "dropping peer {} ({}): {reason}",
                short(&peer.id),
                peer.addr
            ));
        }
        peer.conn.close(CLOSE_SLOW.into(), reason.as_bytes());
    }

    /// Relay every transaction the pool takes to the peers that do not
    /// have it: each peer's announcements go one at a time on their own
    /// task, so a slow peer delays only itself. A new peer hears of the
    /// whole pool.
    pub(super) async fn tx_relay_loop(self: Arc<Self>) {
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};
        let mut admitted = self.shared.tx_relay.subscribe();
        loop {
            let mut fresh = Vec::new();
            tokio::select! {
                received = admitted.recv() => match received {
                    Ok(id) => fresh.push(id),
                    Err(RecvError::Lagged(n)) => {
                        log(format_args!("relay: {n} transactions were not announced (too many at once)"));
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(TX_RELAY_INTERVAL) => {}
            }
            loop {
                match admitted.try_recv() {
                    Ok(id) => fresh.push(id),
                    Err(TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
            self.relay_round(&fresh);
        }
    }

    pub(super) fn relay_round(self: &Arc<Self>, fresh: &[Hash32]) {
        let peers: Vec<Peer> = lock(&self.peers).values().cloned().collect();
        let mut starts = Vec::new();
        {
            let mut states = lock(&self.tx_peers);
            states.retain(|id, _| peers.iter().any(|p| p.id == *id));
            for peer in peers {
                let state = states.entry(peer.id).or_default();
                if state.introduce() {
                    for tx in self.shared.pool().iter() {
                        state.queue(tx.id());
                    }
                }
                for id in fresh {
                    state.queue(*id);
                }
                if let Some(batch) = state.next_announcement() {
                    starts.push((peer, batch));
                }
            }
        }
        for (peer, first) in starts {
            let network = Arc::clone(self);
            tokio::spawn(async move {
                let mut batch = first;
                loop {
                    if let Err(e) = network
                        .request(&peer.conn, &Request::AnnounceTxs(batch))
                        .await
                    {
                        network.request_failed(&peer.id, &e);
                    }
                    let next = lock(&network.tx_peers).get_mut(&peer.id).and_then(|s| {
                        s.sent();
                        s.next_announcement()
                    });
                    match next {
                        Some(more) => batch = more,
                        None => return,
                    }
                }
            });
        }
    }

    /// Fetch the announced transactions this node lacks from the peer that
    /// announced them, and offer each to the pool. A transaction that
    /// breaks a rule of its own is a ban; one the pool refuses (a used
    /// nonce, an overspend) counts, and past a limit is a ban too.
    pub(super) async fn fetch_txs(self: Arc<Self>, peer_id: Hash32, ids: Vec<Hash32>) {
        let shared = Arc::clone(&self.shared);
        let asked = ids.clone();
        let Ok(have) = crate::offload::spawn_blocking(move || -> HashSet<Hash32> {
            let pool = shared.pool();
            asked
                .into_iter()
                .filter(|id| {
                    pool.contains(id) || shared.chain.store.tx_location(id).ok().flatten().is_some()
                })
                .collect()
        })
        .await
        else {
            return;
        };
        let wanted = lock(&self.tx_fetches).claim(&ids, Instant::now(), |id| have.contains(id));
        if wanted.is_empty() {
            return;
        }
        let release = |network: &Network| {
            let mut fetches = lock(&network.tx_fetches);
            for id in &wanted {
                fetches.done(id);
            }
        };
        let Some(conn) = lock(&self.peers).get(&peer_id).map(|p| p.conn.clone()) else {
            release(&self);
            return;
        };
        let list = match self.request(&conn, &Request::GetTxs(wanted.clone())).await {
            Ok(Response::Txs(list)) => list,
            Ok(Response::Refused(_)) => {
                release(&self);
                return;
            }
            Ok(other) => {
                release(&self);
                self.punish(
                    &peer_id,
                    &format!("answered GetTxs with {}", wire::response_name(&other)),
                );
                return;
            }
            Err(e) => {
                release(&self);
                self.request_failed(&peer_id, &e);
                return;
            }
        };
        let mut txs = Vec::with_capacity(list.len());
        let mut fault = None;
        for bytes in &list {
            match crate::tx::Tx::from_bytes(bytes) {
                Ok(tx)
                    if wanted.contains(&tx.id())
                        && !txs.iter().any(|t: &crate::tx::Tx| t.id() == tx.id()) =>
                {
                    txs.push(tx)
                }
                Ok(tx) => {
                    fault = Some(format!("sent transaction {} it was not asked for", tx.id()));
                    break;
                }
                Err(e) => {
                    fault = Some(format!("sent a malformed transaction: {e}"));
                    break;
                }
            }
        }
        if let Some(fault) = fault {
            release(&self);
            self.punish(&peer_id, &fault);
            return;
        }
        // A sender's transactions in nonce order, whatever order they came in.
        txs.sort_by_key(|t| (t.fields.from, t.fields.nonce));
        let shared = Arc::clone(&self.shared);
        let Ok(results) = crate::offload::spawn_blocking(move || {
            txs.into_iter()
                .map(|tx| {
                    let id = tx.id();
                    (id, shared.submit_tx(tx).map(|_| ()))
                })
                .collect::<Vec<_>>()
        })
        .await
        else {
            release(&self);
            return;
        };
        release(&self);
        for (id, result) in results {
            let Err(error) = result else { continue };
            if let TxSubmitError::Invalid(e) = &error {
                lock(&self.tx_fetches).refuse(id);
                self.punish(&peer_id, &format!("sent an invalid transaction {id}: {e}"));
                return;
            }
            if error.counts_against_relayer() {
                lock(&self.tx_fetches).refuse(id);
                let flood = lock(&self.tx_peers)
                    .get_mut(&peer_id)
                    .is_some_and(|s| s.refused(Instant::now()));
                if flood {
                    self.punish(
                        &peer_id,
                        &format!(
                            "sent more than {} transactions within {}s that the pool refuses (the last: {error})",
                            txrelay::MAX_REFUSED_PER_PEER,
                            txrelay::REFUSED_SPAN.as_secs()
                        ),
                    );
                    return;
                }
            }
        }
    }
}
