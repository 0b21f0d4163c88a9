//! The running peer network: the endpoint's connections, dialed and
//! accepted through [`super::handshake`], and the table of peers. What
//! the peers are for lives in the submodules: `serve` answers their
//! requests, `gossip` announces tips and relays transactions, and
//! `sync` catches up with peers that have more work. Bans go to the
//! node's one [`super::PeerBook`].
//!
//! Async code here only moves bytes and bookkeeping; everything that
//! touches consensus or sled runs on the blocking pool, so a slow block
//! verification never stalls QUIC's timers.

mod gossip;
mod serve;
mod sync;

use super::files::ServedFiles;
use super::handshake::{another_network, answer, greet, refuser_genesis, Answered, Greeting};
pub use super::peerbook::NetLimits;
use super::peerbook::{
    choose_eviction, net_group, BlockSources, Charge, EvictionCandidate, RequestRate, SharedBook,
    TimeoutLog,
};
use super::peers::PeerAddr;
use super::tls::{self, Identity};
pub use super::transport::NetError;
use super::transport::{
    self, log, read_frame, request_on, short, transport_config, CLOSE_BANNED, CLOSE_DUPLICATE,
    CLOSE_EVICTED, CLOSE_REFUSED, CLOSE_SHUTDOWN, CLOSE_SLOW,
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
/// Most blocks verified and stored together during sync: an import's
/// batch, whose size is set by what a batch costs the store.
const STORE_GROUP: usize = crate::node::import::BATCH_BLOCKS;
/// A sync of more blocks than this is a long one: it gets a bar on a
/// terminal, and its end is always said.
const LONG_SYNC: u64 = 256;
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
        let ours = self.our_hello();
        let hello = match answer(&conn, &ours, self.config.limits.request_timeout).await {
            Ok(Answered::Accepted(hello)) => hello,
            Ok(Answered::Refused { reason, theirs }) => {
                let reason = reason.to_string();
                if self.first_refusal(&id, &reason) {
                    let detail = self.another_network(&theirs.genesis);
                    log(format_args!(
                        "refusing peer {} ({remote}): {reason}{detail}",
                        short(&id)
                    ));
                } else {
                    repeated_refusal(&id, &remote.to_string());
                }
                return Ok(());
            }
            Err(e) => {
                if e.is_misbehaviour() {
                    self.punish_from(&id, Some(remote.ip()), &e.to_string());
                }
                anyhow::bail!("hello from {} ({remote}): {e}", short(&id));
            }
        };
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
                } else {
                    repeated_refusal(&id, &target.addr.to_string());
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
                } else {
                    repeated_refusal(&id, &target.addr.to_string());
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
}

/// A refusal already said at info for this peer and reason: said again
/// only at debug, so that the log names a peer on another network once.
fn repeated_refusal(id: &Hash32, addr: &str) {
    tracing::debug!(target: "p2p", "refusal repeated with peer {} ({addr})", short(id));
}
