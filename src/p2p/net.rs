//! The QUIC peer network: connections, the handshake, serving requests,
//! gossip of new tips, and sync from several peers at once.
//!
//! Async code here only moves bytes and bookkeeping; everything that
//! touches consensus or sled runs on the blocking pool, so a slow block
//! verification never stalls QUIC's timers.

use super::files::ServedFiles;
use super::handshake::{another_network, check_hello, greet, refuser_genesis, Greeting};
pub use super::peerbook::NetLimits;
use super::peerbook::{
    choose_eviction, net_group, BlockSources, Charge, EvictionCandidate, RequestRate, SharedBook,
    TimeoutLog,
};
use super::peers::PeerAddr;
use super::tls::{self, Identity};
pub use super::transport::NetError;
use super::transport::{
    self, log, read_frame, request_on, short, transport_config, write_frame, CLOSE_BANNED,
    CLOSE_DUPLICATE, CLOSE_EVICTED, CLOSE_REFUSED, CLOSE_SHUTDOWN, CLOSE_SLOW,
};
use super::txrelay::{self, PeerTxs, TxFetches};
use super::wire::{self, Hello, Request, Response};
use crate::chain::Hash32;
use crate::node::chain::now_ms;
use crate::node::import::{store_blocks, ImportError, ImportReport};
use crate::node::state::{Shared, TxSubmitError};
use crate::store::{StoreError, Tip};
use anyhow::{Context, Result};
use primitive_types::U256;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Two connections between the same nodes made within this time are a
/// simultaneous dial; past it, the older one is stale (the peer lost it,
/// e.g. it restarted) and a new one replaces it.
const DUPLICATE_GRACE: Duration = Duration::from_secs(5);
/// Shortest gap between two rounds of tip announcements.
const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(50);
/// Pause between sync rounds that fetched less than a full batch, so a
/// node chasing a fast chain stays well inside its peers' rate limits.
const SYNC_PAUSE: Duration = Duration::from_millis(20);
/// Pause after a peer refused a sync request (rate limited).
const REFUSED_PAUSE: Duration = Duration::from_millis(250);
/// Every so often the tip is announced again to peers that seem behind,
/// so a peer whose sync stopped early hears of the work again.
const REANNOUNCE_INTERVAL: Duration = Duration::from_secs(5);
/// Peers asked for the hashes to sync at once.
const HASH_SOURCES: usize = 3;
/// Most blocks verified and stored together during sync.
const STORE_GROUP: usize = 256;
/// Peers that connected since the last relay round hear of the pool
/// within this.
const TX_RELAY_INTERVAL: Duration = Duration::from_millis(500);
/// The longest a stopping node waits for the peers behind its tip to
/// fetch it before it closes their connections (schema/p2p.md).
pub const STOP_RELAY_BOUND: Duration = Duration::from_secs(5);
/// How often a stopping node asks a peer behind it whether it has
/// stored the tip yet.
const STOP_PROBE_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Where to accept connections; `None` dials out only.
    pub listen: Option<SocketAddr>,
    pub peers: Vec<PeerAddr>,
    pub limits: NetLimits,
    /// The training files this node serves to peers: a masternode's are
    /// all of its chain's, a plain node's are those it holds verified.
    pub files: ServedFiles,
    /// The node's one ban list, shared with the fetcher that ran before
    /// the network started: a peer it banned is refused until its ban
    /// period ends.
    pub book: SharedBook,
}

/// What the node knows of one connected peer.
#[derive(Clone)]
pub struct Peer {
    pub id: Hash32,
    pub conn: quinn::Connection,
    pub addr: SocketAddr,
    pub inbound: bool,
    /// Where the peer accepts connections, when it does.
    pub listen: Option<SocketAddr>,
    pub best_height: u64,
    pub best_work: U256,
    initiator: Hash32,
    connected_at: Instant,
    /// When it last sent a block this node stored (eviction keeps it).
    last_block_at: Option<Instant>,
    requests: RequestRate,
    timeouts: TimeoutLog,
}

/// A peer as the API shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerInfo {
    pub id: String,
    pub address: String,
    pub direction: &'static str,
    pub best_height: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// A ban as the API shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BanInfo {
    pub id: String,
    pub seconds_left: u64,
    pub reason: String,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SyncState {
    pub syncing: bool,
    pub target_height: u64,
    pub peers: usize,
}

/// How a peer behind a stopping node ended up.
enum CatchUp {
    /// It has the tip.
    Done,
    /// It did not fetch the tip within the bound.
    TimedOut,
    /// Its connection closed first.
    Lost,
}

pub struct Network {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    identity: Identity,
    config: NetConfig,
    listen_port: Option<u16>,
    peers: Mutex<HashMap<Hash32, Peer>>,
    known_addrs: Mutex<BTreeSet<SocketAddr>>,
    self_addrs: Mutex<BTreeSet<SocketAddr>>,
    /// The refusals already logged, by peer: a peer on another network
    /// that is dialled again is not logged at every try.
    refusals_logged: Mutex<HashSet<(Hash32, String)>>,
    sync_lock: tokio::sync::Mutex<()>,
    /// Set by every reason to sync; cleared by the sync that serves it.
    sync_wanted: std::sync::atomic::AtomicBool,
    /// Woken when a peer may have come ahead of us, so that a sync round
    /// waiting for hashes asks it too.
    peer_news: tokio::sync::Notify,
    sync_state: Mutex<SyncState>,
    /// When a sync progress line was last said at info (the others are
    /// said at debug, so a fast chain is not a line a block).
    last_sync_line: Mutex<Option<Instant>>,
    /// Transaction relay state of each connected peer.
    tx_peers: Mutex<HashMap<Hash32, PeerTxs>>,
    /// Each peer's record as a source of blocks (stall detection).
    block_sources: Mutex<BlockSources>,
    tx_fetches: Mutex<TxFetches>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Network {
    /// Bind the endpoint and start accepting, dialing and gossiping.
    pub fn start(shared: Arc<Shared>, config: NetConfig) -> Result<Arc<Network>> {
        let identity = Identity::new(&shared.key)?;
        let transport = transport_config(&config.limits)?;
        let endpoint = transport::node_endpoint(&identity, &transport, config.listen)?;
        let listen_port = config
            .listen
            .map(|_| endpoint.local_addr().map(|a| a.port()))
            .transpose()?;
        let network = Arc::new(Network {
            shared,
            endpoint,
            identity,
            listen_port,
            peers: Mutex::new(HashMap::new()),
            known_addrs: Mutex::new(config.peers.iter().map(|p| p.addr).collect()),
            self_addrs: Mutex::new(BTreeSet::new()),
            refusals_logged: Mutex::new(HashSet::new()),
            sync_lock: tokio::sync::Mutex::new(()),
            sync_wanted: std::sync::atomic::AtomicBool::new(false),
            peer_news: tokio::sync::Notify::new(),
            sync_state: Mutex::new(SyncState::default()),
            last_sync_line: Mutex::new(None),
            tx_peers: Mutex::new(HashMap::new()),
            block_sources: Mutex::new(BlockSources::default()),
            tx_fetches: Mutex::new(TxFetches::default()),
            config,
        });
        if network.config.listen.is_some() {
            log(format_args!(
                "listening on {} as {}",
                network.endpoint.local_addr()?,
                network.shared.miner_id()
            ));
            tokio::spawn(Arc::clone(&network).accept_loop());
        }
        tokio::spawn(Arc::clone(&network).dial_loop(transport));
        tokio::spawn(Arc::clone(&network).announce_loop());
        tokio::spawn(Arc::clone(&network).tx_relay_loop());
        Ok(network)
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

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
    async fn bring_up_to_date(
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

    /// Close every connection and the endpoint.
    pub async fn shutdown(&self) {
        self.endpoint.close(CLOSE_SHUTDOWN.into(), b"node stopping");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }

    /// How many peers are connected.
    pub fn peer_count(&self) -> usize {
        lock(&self.peers).len()
    }

    pub fn peer_infos(&self) -> Vec<PeerInfo> {
        let mut out: Vec<PeerInfo> = lock(&self.peers)
            .values()
            .map(|p| {
                let stats = p.conn.stats();
                PeerInfo {
                    id: p.id.to_hex(),
                    address: p.addr.to_string(),
                    direction: if p.inbound { "inbound" } else { "outbound" },
                    best_height: p.best_height,
                    bytes_in: stats.udp_rx.bytes,
                    bytes_out: stats.udp_tx.bytes,
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn ban_infos(&self) -> Vec<BanInfo> {
        let now = Instant::now();
        lock(&self.config.book)
            .active(now)
            .into_iter()
            .map(|(id, left, reason)| BanInfo {
                id: id.to_hex(),
                seconds_left: left.as_secs(),
                reason,
            })
            .collect()
    }

    pub fn sync_state(&self) -> SyncState {
        lock(&self.sync_state).clone()
    }

    fn is_banned(&self, id: &Hash32) -> bool {
        lock(&self.config.book).is_banned(id, Instant::now())
    }

    /// Disconnect a peer at once and refuse it, and the address it came
    /// from, for the ban period.
    fn punish(&self, id: &Hash32, reason: &str) {
        self.punish_from(id, None, reason);
    }

    /// [`Network::punish`], for a peer that may not be registered yet and
    /// came from `from`.
    fn punish_from(&self, id: &Hash32, from: Option<std::net::IpAddr>, reason: &str) {
        self.shared.metrics.bans.inc();
        let peer = lock(&self.peers).remove(id);
        let from = peer.as_ref().map(|p| p.addr.ip()).or(from);
        lock(&self.config.book).ban(*id, from, reason, Instant::now());
        let addr = peer
            .as_ref()
            .map_or("?".to_string(), |p| p.addr.to_string());
        log(format_args!(
            "banning peer {} ({addr}) for {}s: {reason}",
            short(id),
            self.config.limits.ban.as_secs()
        ));
        if let Some(peer) = peer {
            peer.conn.close(CLOSE_BANNED.into(), reason.as_bytes());
        }
    }

    fn note_timeout(&self, id: &Hash32) {
        let storm = {
            let mut peers = lock(&self.peers);
            let Some(peer) = peers.get_mut(id) else {
                return;
            };
            peer.timeouts
                .record(Instant::now(), self.config.limits.max_timeouts)
        };
        if storm {
            self.punish(id, "too many timeouts");
        }
    }

    fn our_hello(&self) -> Hello {
        let tip = self.shared.tip_watch.borrow().clone();
        Hello {
            version: wire::PROTOCOL_VERSION,
            genesis: self.shared.chain.store.genesis_hash(),
            best_height: tip.height,
            best_hash: tip.hash,
            best_work: Hash32(tip.cumulative_work.to_big_endian()),
            listen_port: self.listen_port,
        }
    }

    /// Whether this refusal of or by peer `id` is news: each is logged
    /// once per peer (the set forgets all when it is full).
    fn first_refusal(&self, id: &Hash32, reason: &str) -> bool {
        let mut logged = lock(&self.refusals_logged);
        if logged.len() >= 1024 {
            logged.clear();
        }
        logged.insert((*id, reason.to_string()))
    }

    /// See [`another_network`]; nothing when the genesis is ours.
    fn another_network(&self, theirs: &Hash32) -> String {
        let params = self.shared.chain.params();
        another_network(theirs, &params.genesis_hash(), &params.network)
    }

    /// Our tip's work, from memory: async code never reads the store.
    fn our_work(&self) -> U256 {
        self.shared.tip_watch.borrow().cumulative_work
    }

    /// Whether the store holds `hash`, read on the blocking pool.
    async fn have_block(&self, hash: Hash32) -> Result<bool> {
        let shared = Arc::clone(&self.shared);
        Ok(crate::offload::spawn_blocking(move || shared.chain.store.contains(&hash)).await??)
    }

    /// Send one request on its own stream and read the answer.
    pub async fn request(
        &self,
        conn: &quinn::Connection,
        request: &Request,
    ) -> Result<Response, NetError> {
        request_on(conn, request, self.config.limits.request_timeout).await
    }

    /// Keep the peer table consistent when two nodes dial each other at
    /// once: both keep the connection the smaller id initiated. A node
    /// dials a peer it is connected to only once it lost that connection
    /// (it never says hello on a duplicate), so a new connection from the
    /// same side, or after [`DUPLICATE_GRACE`], replaces the stale one.
    fn register(&self, peer: Peer) -> bool {
        let mut peers = lock(&self.peers);
        if let Some(existing) = peers.get(&peer.id) {
            let keep_new = peer.initiator <= existing.initiator
                || existing.connected_at.elapsed() > DUPLICATE_GRACE;
            if !keep_new || existing.conn.stable_id() == peer.conn.stable_id() {
                peer.conn
                    .close(CLOSE_DUPLICATE.into(), b"already connected");
                return false;
            }
            existing
                .conn
                .close(CLOSE_DUPLICATE.into(), b"already connected");
        }
        if let Some(listen) = peer.listen {
            let mut known = lock(&self.known_addrs);
            if known.len() < self.config.limits.max_known_addrs {
                known.insert(listen);
            }
        }
        peers.insert(peer.id, peer);
        true
    }

    fn new_peer(
        &self,
        id: Hash32,
        conn: quinn::Connection,
        inbound: bool,
        listen: Option<SocketAddr>,
        hello: &Hello,
    ) -> Peer {
        Peer {
            id,
            addr: conn.remote_address(),
            inbound,
            listen,
            best_height: hello.best_height,
            best_work: U256::from_big_endian(&hello.best_work.0),
            initiator: if inbound { id } else { self.shared.miner_id() },
            connected_at: Instant::now(),
            last_block_at: None,
            requests: RequestRate::new(Instant::now()),
            timeouts: TimeoutLog::default(),
            conn,
        }
    }

    async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let ip = incoming.remote_address().ip();
            // A banned address, or group, is refused before any handshake:
            // a fresh key from there changes nothing.
            if lock(&self.config.book)
                .address_ban(ip, Instant::now())
                .is_some()
            {
                incoming.refuse();
                continue;
            }
            let (total, from_ip) = {
                let peers = lock(&self.peers);
                let inbound = peers.values().filter(|p| p.inbound);
                let total = inbound.clone().count();
                (total, inbound.filter(|p| p.addr.ip() == ip).count())
            };
            let limits = &self.config.limits;
            let full = total >= limits.max_inbound;
            if from_ip >= limits.max_inbound_per_ip || (full && !self.evict_for(ip)) {
                log(format_args!(
                    "refusing a connection from {}: {total} inbound, {from_ip} from that address",
                    incoming.remote_address()
                ));
                incoming.refuse();
                continue;
            }
            let network = Arc::clone(&self);
            tokio::spawn(async move {
                if let Err(e) = network.accept_one(incoming).await {
                    log(format_args!("inbound connection failed: {e:#}"));
                }
            });
        }
    }

    /// Every inbound slot is taken and a peer from `ip` knocks: evict the
    /// inbound peer [`choose_eviction`] picks, if any. Outbound peers,
    /// which this node chose, are never evicted.
    fn evict_for(&self, ip: std::net::IpAddr) -> bool {
        let victim = {
            let peers = lock(&self.peers);
            let candidates: Vec<EvictionCandidate> = peers
                .values()
                .filter(|p| p.inbound)
                .map(|p| EvictionCandidate {
                    id: p.id,
                    group: net_group(p.addr.ip()),
                    connected_at: p.connected_at,
                    last_block_at: p.last_block_at,
                })
                .collect();
            choose_eviction(&candidates).and_then(|id| peers.get(&id).cloned())
        };
        let Some(victim) = victim else {
            return false;
        };
        {
            let mut peers = lock(&self.peers);
            if peers
                .get(&victim.id)
                .is_some_and(|p| p.conn.stable_id() == victim.conn.stable_id())
            {
                peers.remove(&victim.id);
            }
        }
        log(format_args!(
            "evicting inbound peer {} ({}) to make room for {ip}",
            short(&victim.id),
            victim.addr
        ));
        victim
            .conn
            .close(CLOSE_EVICTED.into(), b"evicted for a new peer");
        true
    }

    async fn accept_one(self: Arc<Self>, incoming: quinn::Incoming) -> Result<()> {
        let remote = incoming.remote_address();
        let conn = incoming
            .await
            .with_context(|| format!("handshake with {remote}"))?;
        let id = tls::peer_id(&conn).context("the peer presented no ed25519 certificate")?;
        if id == self.shared.miner_id() {
            conn.close(CLOSE_REFUSED.into(), b"connected to self");
            return Ok(());
        }
        if self.is_banned(&id) {
            conn.close(CLOSE_BANNED.into(), b"banned");
            anyhow::bail!("refused banned peer {} ({remote})", short(&id));
        }
        let timeout = self.config.limits.request_timeout;
        let (mut send, mut recv) = tokio::time::timeout(timeout, conn.accept_bi())
            .await
            .context("no hello in time")??;
        let bytes = match read_frame(&mut recv, wire::MAX_REQUEST_BYTES, timeout).await {
            Ok(bytes) => bytes,
            Err(e) => {
                let code = if e.is_misbehaviour() {
                    self.punish_from(&id, Some(remote.ip()), &format!("bad hello: {e}"));
                    CLOSE_BANNED
                } else {
                    CLOSE_REFUSED
                };
                conn.close(code.into(), e.to_string().as_bytes());
                anyhow::bail!("hello from {}: {e}", short(&id));
            }
        };
        let hello = match wire::decode_request(&bytes) {
            Ok(Request::Hello(hello)) => hello,
            Ok(_) => {
                self.punish_from(&id, Some(remote.ip()), "first request was not a hello");
                conn.close(CLOSE_REFUSED.into(), b"expected hello");
                anyhow::bail!("peer {} skipped the hello", short(&id));
            }
            Err(e) => {
                self.punish_from(&id, Some(remote.ip()), &format!("malformed hello: {e}"));
                conn.close(CLOSE_BANNED.into(), b"malformed hello");
                anyhow::bail!("malformed hello from {}: {e}", short(&id));
            }
        };
        let ours = self.our_hello();
        if let Err(refusal) = check_hello(&ours, &hello) {
            let reason = refusal.to_string();
            if self.first_refusal(&id, &reason) {
                let detail = self.another_network(&hello.genesis);
                log(format_args!(
                    "refusing peer {} ({remote}): {reason}{detail}",
                    short(&id)
                ));
            }
            let _ = write_frame(&mut send, &Response::Refused(reason.clone())).await;
            let _ = send.finish();
            tokio::time::sleep(Duration::from_millis(200)).await;
            conn.close(CLOSE_REFUSED.into(), reason.as_bytes());
            return Ok(());
        }
        write_frame(&mut send, &Response::Hello(ours)).await?;
        let _ = send.finish();
        let listen = hello
            .listen_port
            .map(|port| SocketAddr::new(remote.ip(), port));
        let peer = self.new_peer(id, conn.clone(), true, listen, &hello);
        if self.register(peer) {
            log(format_args!(
                "peer {} connected from {remote} (height {})",
                short(&id),
                hello.best_height
            ));
            self.after_hello(&hello);
            tokio::spawn(Arc::clone(&self).serve(conn, id));
        }
        Ok(())
    }

    /// Dial one address; `Ok(false)` when the peer refused us.
    async fn dial(
        self: &Arc<Self>,
        target: &PeerAddr,
        transport: &Arc<quinn::TransportConfig>,
    ) -> Result<bool> {
        let (conn, id) =
            transport::dial(&self.endpoint, &self.identity, transport, target, None).await?;
        if id == self.shared.miner_id() {
            lock(&self.self_addrs).insert(target.addr);
            conn.close(CLOSE_REFUSED.into(), b"connected to self");
            return Ok(false);
        }
        if self.is_banned(&id) {
            conn.close(CLOSE_BANNED.into(), b"banned");
            return Ok(false);
        }
        if lock(&self.peers).contains_key(&id) {
            // Another address of a peer we are connected to.
            conn.close(CLOSE_DUPLICATE.into(), b"already connected");
            return Ok(false);
        }
        let greeting = greet(&conn, &self.our_hello(), self.config.limits.request_timeout).await;
        match greeting {
            Ok(Greeting::Accepted(hello)) => {
                let peer = self.new_peer(id, conn.clone(), false, Some(target.addr), &hello);
                if self.register(peer) {
                    log(format_args!(
                        "peer {} connected at {} (height {})",
                        short(&id),
                        target.addr,
                        hello.best_height
                    ));
                    self.after_hello(&hello);
                    tokio::spawn(Arc::clone(self).serve(conn, id));
                }
                Ok(true)
            }
            Ok(Greeting::WeRefused { reason, theirs }) => {
                let reason = reason.to_string();
                if self.first_refusal(&id, &reason) {
                    let detail = self.another_network(&theirs.genesis);
                    log(format_args!(
                        "refusing peer {} ({}): {reason}{detail}",
                        short(&id),
                        target.addr
                    ));
                }
                Ok(false)
            }
            Ok(Greeting::TheyRefused(reason)) => {
                if self.first_refusal(&id, &reason) {
                    let detail = refuser_genesis(&reason)
                        .map(|theirs| self.another_network(&theirs))
                        .unwrap_or_default();
                    log(format_args!(
                        "peer {} ({}) refused us: {reason}{detail}",
                        short(&id),
                        target.addr
                    ));
                }
                Ok(false)
            }
            Ok(Greeting::Unexpected(other)) => {
                self.punish(&id, "answered hello with something else");
                anyhow::bail!("unexpected answer to hello: {other:?}")
            }
            Err(e) => {
                if e.is_misbehaviour() {
                    self.punish(&id, &format!("bad hello answer: {e}"));
                }
                Err(e.into())
            }
        }
    }

    fn connected_to(&self, addr: &SocketAddr) -> bool {
        lock(&self.peers)
            .values()
            .any(|p| p.listen.as_ref() == Some(addr) || p.addr == *addr)
    }

    /// Keep configured peers connected (with backoff) and fill outbound
    /// slots from the addresses peers gossip.
    async fn dial_loop(self: Arc<Self>, transport: Arc<quinn::TransportConfig>) {
        let mut backoff: HashMap<SocketAddr, (Instant, Duration)> = HashMap::new();
        let mut last_addr_query = Instant::now() - Duration::from_secs(60);
        loop {
            let mut targets: Vec<PeerAddr> = self.config.peers.clone();
            let outbound = lock(&self.peers).values().filter(|p| !p.inbound).count();
            if outbound < self.config.limits.max_outbound {
                for addr in lock(&self.known_addrs).iter() {
                    if !targets.iter().any(|t| t.addr == *addr) {
                        targets.push(PeerAddr {
                            id: None,
                            addr: *addr,
                        });
                    }
                }
            }
            for target in targets {
                if self.connected_to(&target.addr) || lock(&self.self_addrs).contains(&target.addr)
                {
                    continue;
                }
                if let Some(id) = target.id {
                    if lock(&self.peers).contains_key(&id) {
                        continue;
                    }
                }
                let now = Instant::now();
                if backoff.get(&target.addr).is_some_and(|(at, _)| *at > now) {
                    continue;
                }
                if lock(&self.config.book)
                    .address_ban(target.addr.ip(), now)
                    .is_some()
                {
                    continue;
                }
                let result = self.dial(&target, &transport).await;
                match result {
                    Ok(true) => {
                        backoff.remove(&target.addr);
                    }
                    Ok(false) | Err(_) => {
                        let delay = backoff
                            .get(&target.addr)
                            .map_or(Duration::from_millis(500), |(_, d)| {
                                (*d * 2).min(Duration::from_secs(30))
                            });
                        let stopping = self.shared.stop.load(std::sync::atomic::Ordering::SeqCst);
                        if let (Err(e), false) = (&result, stopping) {
                            log(format_args!(
                                "cannot connect to {}: {e:#} (next try in {:.1}s)",
                                target.addr,
                                delay.as_secs_f64()
                            ));
                        }
                        backoff.insert(target.addr, (now + delay, delay));
                    }
                }
            }
            if last_addr_query.elapsed() > Duration::from_secs(10) {
                last_addr_query = Instant::now();
                self.ask_addrs().await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn ask_addrs(self: &Arc<Self>) {
        let peers: Vec<Peer> = lock(&self.peers).values().cloned().collect();
        for peer in peers {
            if let Ok(Response::Addrs(addrs)) = self.request(&peer.conn, &Request::GetAddrs).await {
                let mut known = lock(&self.known_addrs);
                for addr in addrs.iter().take(wire::MAX_ADDRS) {
                    if let Ok(addr) = addr.parse::<SocketAddr>() {
                        if known.len() < self.config.limits.max_known_addrs {
                            known.insert(addr);
                        }
                    }
                }
            }
        }
    }

    fn after_hello(self: &Arc<Self>, hello: &Hello) {
        if U256::from_big_endian(&hello.best_work.0) > self.our_work() {
            self.trigger_sync();
        }
    }

    /// Serve the requests a peer opens streams for, until it disconnects.
    async fn serve(self: Arc<Self>, conn: quinn::Connection, id: Hash32) {
        loop {
            match conn.accept_bi().await {
                Ok((send, recv)) => {
                    let network = Arc::clone(&self);
                    tokio::spawn(async move { network.handle_stream(id, send, recv).await });
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
    fn charge(&self, id: &Hash32) -> Option<Charge> {
        let limit = self.config.limits.requests_per_second;
        let mut peers = lock(&self.peers);
        let peer = peers.get_mut(id)?;
        Some(peer.requests.charge(Instant::now(), limit))
    }

    async fn handle_stream(
        self: Arc<Self>,
        id: Hash32,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
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
        let response = match self.answer(id, request).await {
            Ok(response) => response,
            Err(e) => Response::Refused(format!("{e:#}")),
        };
        let _ = send.write_all(&wire::frame(&response)).await;
        let _ = send.finish();
    }

    async fn answer(self: &Arc<Self>, id: Hash32, request: Request) -> Result<Response> {
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
                crate::offload::spawn_blocking(move || -> Result<Response> {
                    let mut blocks = Vec::new();
                    let mut total = 16;
                    for hash in hashes {
                        if let Some(bytes) = shared.chain.store.block_bytes(&hash)? {
                            total += bytes.len() + 4;
                            if total > wire::MAX_MESSAGE_BYTES {
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
                    let mut total = 0;
                    ids.iter()
                        .filter_map(|i| pool.get(i))
                        .map(|t| t.tx().to_bytes())
                        .take_while(|bytes| {
                            total += bytes.len() + 4;
                            total <= wire::MAX_TXS_RESPONSE_BYTES
                        })
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
                let files = self.config.files.clone();
                crate::offload::spawn_blocking(move || files.chunk(&blake3, index)).await?
            }
        })
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
    async fn announce_loop(self: Arc<Self>) {
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
    async fn announce_to(
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
    fn drop_peer(&self, peer: &Peer, reason: &str) {
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
    async fn tx_relay_loop(self: Arc<Self>) {
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

    fn relay_round(self: &Arc<Self>, fresh: &[Hash32]) {
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
    async fn fetch_txs(self: Arc<Self>, peer_id: Hash32, ids: Vec<Hash32>) {
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
    async fn sync(self: &Arc<Self>) -> Result<()> {
        const BATCH: usize = wire::MAX_BLOCKS_PER_REQUEST;
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
            let Some((leader, wanted)) = chosen else {
                if refused {
                    tokio::time::sleep(REFUSED_PAUSE).await;
                }
                small_round = true;
                continue;
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
            let sources = Arc::new(usable);
            let fetches: Vec<_> = wanted
                .chunks(BATCH)
                .enumerate()
                .map(|(i, chunk)| {
                    let network = Arc::clone(self);
                    let sources = Arc::clone(&sources);
                    let chunk = chunk.to_vec();
                    tokio::spawn(async move { network.fetch_batch(chunk, &sources, i, ours).await })
                })
                .collect();
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
                let senders: Vec<Hash32> = group.iter().map(|(_, id)| *id).collect();
                let count = group.len();
                let blocks = std::mem::take(&mut group)
                    .into_iter()
                    .map(|(b, _)| b)
                    .collect();
                let (report, error) = self.store_from(blocks).await?;
                if let Some(error) = error {
                    // The blocks are numbered from 1 in the order fetched;
                    // the messages name a block by its hash and height.
                    match &error {
                        ImportError::BadBlock { index, reason, .. } => {
                            let sender =
                                senders[(*index as usize).saturating_sub(1).min(count - 1)];
                            let block = error.from_peer();
                            if matches!(reason, crate::consensus::BlockError::UnknownParent { .. })
                            {
                                log(format_args!("sync: peer {} sent {block}", short(&sender)));
                            } else {
                                self.punish(&sender, &format!("sent an invalid {block}"));
                            }
                        }
                        _ => log(format_args!("sync: {error}")),
                    }
                    break;
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

    /// Fetch one batch of blocks, from `sources[first]` and, when it does
    /// not deliver, from the next sources in turn. Each try has the
    /// deadline [`BlockSources::deadline`] gives the peer; a peer that
    /// misses it, or answers without blocks, loses its claim of more work
    /// and is benched as a source; a timeout also counts against it.
    /// Answers the peer that delivered (or the last one tried) and what it
    /// answered.
    async fn fetch_batch(
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

    fn request_failed(&self, id: &Hash32, error: &NetError) {
        match error {
            NetError::Timeout => self.note_timeout(id),
            e if e.is_misbehaviour() => self.punish(id, &e.to_string()),
            _ => {}
        }
    }

    /// Stop believing a peer has more work than `ours` until it announces again.
    fn forget_claim(&self, id: &Hash32, ours: U256) {
        if let Some(peer) = lock(&self.peers).get_mut(id) {
            peer.best_work = peer.best_work.min(ours);
        }
    }

    /// Verify and store blocks off the async threads.
    async fn store_from(
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
fn locator(shared: &Shared) -> Result<Vec<Hash32>> {
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

/// Answer a locator: best-chain hashes after the first entry on our best chain.
fn hashes_after(shared: &Shared, locator: &[Hash32], max: usize) -> Result<Response> {
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
    let tip = store.tip()?.height;
    let mut hashes = Vec::new();
    for height in start + 1..=tip.min(start + max as u64) {
        match store.hash_at(height)? {
            Some(hash) => hashes.push(hash),
            None => break,
        }
    }
    Ok(Response::Hashes(hashes))
}
