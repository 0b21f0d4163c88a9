//! Answering peers: each stream a peer opens carries one request,
//! charged against the peer's rate and answered from memory or, for
//! anything that reads the store, on the blocking pool.

use super::*;

impl Network {
    /// Serve the requests a peer opens streams for, until it disconnects.
    pub(super) async fn serve(self: Arc<Self>, conn: quinn::Connection, id: Hash32) {
        // The peer's bulk reads (blocks, file chunks), one at a time.
        let bulk = Arc::new(tokio::sync::Mutex::new(()));
        loop {
            match conn.accept_bi().await {
                Ok((send, recv)) => {
                    let network = Arc::clone(&self);
                    let bulk = Arc::clone(&bulk);
                    tokio::spawn(async move { network.handle_stream(id, send, recv, &bulk).await });
                }
                Err(e) => {
                    let mut peers = lock(&self.peers);
                    // Under the lock, with the removal: a scrape of the
                    // metrics sees the connection open or closed, not both.
                    let stats = conn.stats();
                    let metrics = &self.shared.metrics;
                    metrics.connection_closed(stats.udp_rx.bytes, stats.udp_tx.bytes);
                    if peers
                        .get(&id)
                        .is_some_and(|p| p.conn.stable_id() == conn.stable_id())
                    {
                        peers.remove(&id);
                        drop(peers);
                        log(format_args!("peer {} disconnected: {e}", short(&id)));
                    }
                    return;
                }
            }
        }
    }

    /// Count a request against the peer's rate; `None` when the peer is
    /// gone (banned or disconnected while its streams were in flight).
    pub(super) fn charge(&self, id: &Hash32) -> Option<Charge> {
        let limit = self.config.limits.requests_per_second;
        let mut peers = lock(&self.peers);
        let peer = peers.get_mut(id)?;
        Some(peer.requests.charge(Instant::now(), limit))
    }

    pub(super) async fn handle_stream(
        self: Arc<Self>,
        id: Hash32,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        bulk: &tokio::sync::Mutex<()>,
    ) {
        match self.charge(&id) {
            None => return,
            Some(Charge::Serve) => {}
            Some(Charge::Flood) => {
                self.punish(&id, "request flood");
                return;
            }
            Some(Charge::Refuse) => {
                let _ = send
                    .write_all(&wire::frame(&Response::Refused("rate limited".into())))
                    .await;
                let _ = send.finish();
                return;
            }
        }
        let timeout = self.config.limits.request_timeout;
        let bytes = match read_frame(&mut recv, wire::MAX_REQUEST_BYTES, timeout).await {
            Ok(bytes) => bytes,
            Err(NetError::Timeout) => {
                self.note_timeout(&id);
                return;
            }
            Err(e) if e.is_misbehaviour() => {
                self.punish(&id, &e.to_string());
                return;
            }
            Err(_) => return,
        };
        let request = match wire::decode_request(&bytes) {
            Ok(request) => request,
            Err(e) => {
                self.punish(&id, &format!("malformed request: {e}"));
                return;
            }
        };
        if let Err(reason) = request.check() {
            self.punish(&id, &format!("request out of bounds: {reason}"));
            return;
        }
        let response = match self.answer(id, request, bulk).await {
            Ok(response) => response,
            Err(e) => Response::Refused(format!("{e:#}")),
        };
        if matches!(
            response,
            Response::Blocks(_) | Response::Chunk(_) | Response::Txs(_)
        ) {
            // Bulk answers (up to 4 MiB) go after any other answer waiting
            // to be sent, and in the order written (`transport_config`).
            let _ = send.set_priority(transport::BULK_PRIORITY);
        }
        let _ = send.write_all(&wire::frame(&response)).await;
        let _ = send.finish();
    }

    /// The answer to one request of peer `id`. Its reads of blocks and
    /// file chunks take turns on `bulk`, in the order asked: of a sync's
    /// many batches asked at once, the first is read, and sent, first,
    /// rather than all of them together at the end, and one peer keeps at
    /// most one blocking thread busy.
    pub(super) async fn answer(
        self: &Arc<Self>,
        id: Hash32,
        request: Request,
        bulk: &tokio::sync::Mutex<()>,
    ) -> Result<Response> {
        let shared = Arc::clone(&self.shared);
        Ok(match request {
            Request::Hello(_) => Response::Refused("hello was already exchanged".into()),
            Request::Announce { hash, height, work } => {
                let work = U256::from_big_endian(&work.0);
                if let Some(peer) = lock(&self.peers).get_mut(&id) {
                    peer.best_height = peer.best_height.max(height);
                    peer.best_work = peer.best_work.max(work);
                }
                if work > self.our_work() && !self.have_block(hash).await.unwrap_or(false) {
                    self.trigger_sync();
                }
                Response::Ok
            }
            Request::GetHashes { locator, max } => {
                let max = (max as usize).min(wire::MAX_HASHES);
                crate::offload::spawn_blocking(move || hashes_after(&shared, &locator, max))
                    .await??
            }
            Request::GetBlocks(hashes) => {
                let _turn = bulk.lock().await;
                crate::offload::spawn_blocking(move || -> Result<Response> {
                    let mut blocks = Vec::new();
                    let mut fits = within(BLOCKS_BUDGET);
                    for hash in hashes {
                        if let Some(bytes) = shared.chain.store.block_bytes(&hash)? {
                            if !fits(&bytes) {
                                break;
                            }
                            blocks.push(bytes);
                        }
                    }
                    Ok(Response::Blocks(blocks))
                })
                .await??
            }
            Request::GetAddrs => {
                let addrs = lock(&self.peers)
                    .values()
                    .filter(|p| p.id != id)
                    .filter_map(|p| p.listen)
                    .take(wire::MAX_ADDRS)
                    .map(|a| a.to_string())
                    .collect();
                Response::Addrs(addrs)
            }
            Request::AnnounceTxs(ids) => {
                {
                    let mut peers = lock(&self.tx_peers);
                    let state = peers.entry(id).or_default();
                    for tx in &ids {
                        state.mark_known(*tx);
                    }
                }
                // Answered once fetched: the peer's next announcement waits,
                // so its transactions arrive in the order it sent them.
                Arc::clone(self).fetch_txs(id, ids).await;
                Response::Ok
            }
            Request::GetTxs(ids) => {
                let txs: Vec<Vec<u8>> = {
                    let pool = shared.pool();
                    ids.iter()
                        .filter_map(|i| pool.get(i))
                        .map(|t| t.tx().to_bytes())
                        .take_while(within(wire::MAX_TXS_RESPONSE_BYTES))
                        .collect()
                };
                let mut peers = lock(&self.tx_peers);
                let state = peers.entry(id).or_default();
                for tx in &ids {
                    state.mark_known(*tx);
                }
                Response::Txs(txs)
            }
            Request::GetFile { blake3 } => self.config.files.manifest(&blake3),
            Request::GetChunk { blake3, index } => {
                let _turn = bulk.lock().await;
                let files = self.config.files.clone();
                crate::offload::spawn_blocking(move || files.chunk(&blake3, index)).await?
            }
        })
    }
}

/// The bytes a `Blocks` answer's blocks may take: a message's bound, less
/// 16 for the frame's length, the variant and the list's length.
const BLOCKS_BUDGET: usize = wire::MAX_MESSAGE_BYTES - 16;

/// Whether each next byte string of an answer still fits `budget` bytes
/// with those before it, each counted with 4 bytes for its length: an
/// answer keeps them up to the first that does not.
fn within(budget: usize) -> impl FnMut(&Vec<u8>) -> bool {
    let mut total = 0usize;
    move |bytes| {
        total += bytes.len() + 4;
        total <= budget
    }
}

/// Answer a locator: best-chain hashes after the first entry on our best chain.
pub(super) fn hashes_after(shared: &Shared, locator: &[Hash32], max: usize) -> Result<Response> {
    let store = &shared.chain.store;
    let mut start = 0;
    for hash in locator {
        if let Some(meta) = store.meta(hash)? {
            if store.hash_at(meta.height)? == Some(*hash) {
                start = meta.height;
                break;
            }
        }
    }
    let hashes = store.hashes_between(start + 1, start.saturating_add(max as u64))?;
    Ok(Response::Hashes(hashes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte strings are kept while they fit, each with 4 bytes for its
    /// length: at the budget exactly, and not one byte past it.
    #[test]
    fn an_answer_keeps_what_fits_its_budget_and_not_one_byte_more() {
        let strings = |sizes: &[usize]| sizes.iter().map(|&n| vec![7u8; n]).collect::<Vec<_>>();
        let kept = |sizes: &[usize], budget| {
            strings(sizes)
                .into_iter()
                .take_while(within(budget))
                .map(|s| s.len())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kept(&[6, 10, 1], 24),
            vec![6, 10],
            "10 + 14 = 24: at the budget"
        );
        assert_eq!(kept(&[6, 10, 1], 23), vec![6], "one byte past it");
        assert_eq!(kept(&[0, 0], 8), vec![0, 0]);
        assert_eq!(kept(&[0, 0], 7), vec![0]);
        assert_eq!(kept(&[20], 23), Vec::<usize>::new());
    }

    /// A `Blocks` answer that fills its budget to the byte is still a
    /// message within the bound, as its reader checks it.
    #[test]
    fn a_full_blocks_answer_is_within_the_message_bound() {
        // 64 blocks that fill the budget exactly.
        let each = BLOCKS_BUDGET / wire::MAX_BLOCKS_PER_REQUEST - 4;
        let mut sizes = vec![each; wire::MAX_BLOCKS_PER_REQUEST];
        sizes[0] += BLOCKS_BUDGET - wire::MAX_BLOCKS_PER_REQUEST * (each + 4);
        let blocks: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![1u8; n]).collect();
        assert!(
            blocks.iter().all(within(BLOCKS_BUDGET)),
            "every block fits, to the byte"
        );
        let mut one_more = blocks.clone();
        one_more[0].push(1);
        assert!(!one_more.iter().all(within(BLOCKS_BUDGET)));
        let framed = wire::frame(&Response::Blocks(blocks));
        assert!(
            framed.len() <= wire::MAX_MESSAGE_BYTES + 4,
            "{}",
            framed.len()
        );
        assert!(wire::decode_response(&framed[4..], wire::MAX_MESSAGE_BYTES).is_ok());
    }
}
