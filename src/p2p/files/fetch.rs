//! Fetching training files: dial the peers, agree on a manifest, fetch
//! chunks from several peers at once into `FILE.partial`, and rename the
//! file into place once it has its pinned hash.

use super::manifest::{read_manifest, Manifest};
use super::{lock, TrainingFile};
use crate::chain::Hash32;
use crate::consensus::params::ChainParams;
use crate::p2p::handshake::{another_network, greet, joining_hello, refuser_genesis, Greeting};
use crate::p2p::peerbook::{NetLimits, SharedBook};
use crate::p2p::peers::PeerAddr;
use crate::p2p::tls::Identity;
use crate::p2p::transport::{
    self, log, read_frame, request_on, short, transport_config, NetError, CLOSE_BANNED,
    CLOSE_REFUSED, CLOSE_SHUTDOWN,
};
use crate::p2p::wire::{self, response_name, Request, Response, CHUNK_BYTES};
use anyhow::{bail, Context, Result};
use ed25519_dalek::SigningKey;
use std::collections::{HashSet, VecDeque};
use std::fs::{self, File};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Chunk requests one peer may have in flight from a fetching node.
const REQUESTS_IN_FLIGHT_PER_PEER: usize = 4;
/// Timeouts after which a peer is given up for the rest of a round.
const MAX_CHUNK_TIMEOUTS: u32 = 3;
/// Longest pause between two rounds of a fetch that found no peer to fetch from.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

/// A peer a fetch takes chunks from.
struct Source {
    id: Hash32,
    addr: SocketAddr,
    conn: quinn::Connection,
    /// Cleared when the peer is banned, gone, or has given up on the file.
    alive: AtomicBool,
    timeouts: AtomicU32,
    /// Chunks this peer sent that were verified and written.
    delivered: AtomicU64,
    /// When this peer may be sent its next request.
    next_request: Mutex<Instant>,
}

impl Source {
    /// Wait for this peer's next request slot: `interval` apart, so a
    /// fetch stays inside the peer's rate limit.
    async fn pace(&self, interval: Duration) {
        let wait = {
            let mut next = lock(&self.next_request);
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + interval;
            at - now
        };
        tokio::time::sleep(wait).await;
    }
}

/// What a chunk request came to, for the schedule.
enum Take {
    Chunk {
        index: u32,
        failed_by: Vec<usize>,
    },
    /// Nothing for this peer now; other peers' requests may yet fail.
    Wait,
    /// Nothing this peer can do: every chunk is verified, or every one
    /// left has failed from it.
    Stop,
}

/// Which chunk each peer fetches next: at first each peer has its own
/// stripe (chunk i goes to peer i mod n), so a fetch spreads over every
/// peer; a peer whose stripe is empty takes from the longest other one,
/// and a chunk that failed from one peer goes to another.
struct Schedule {
    stripes: Vec<VecDeque<u32>>,
    /// Chunks to fetch again, with the peers they failed from.
    retry: VecDeque<(u32, Vec<usize>)>,
    in_flight: usize,
    verified: u64,
    total: u64,
}

impl Schedule {
    fn new(missing: &[u32], peers: usize, verified: u64, total: u64) -> Schedule {
        let mut stripes = vec![VecDeque::new(); peers];
        for (i, index) in missing.iter().enumerate() {
            stripes[i % peers].push_back(*index);
        }
        Schedule {
            stripes,
            retry: VecDeque::new(),
            in_flight: 0,
            verified,
            total,
        }
    }

    fn take(&mut self, peer: usize) -> Take {
        let retry = self
            .retry
            .iter()
            .position(|(_, failed_by)| !failed_by.contains(&peer))
            .and_then(|at| self.retry.remove(at));
        let next = retry.or_else(|| {
            let own = self.stripes[peer].pop_front();
            own.or_else(|| {
                self.stripes
                    .iter_mut()
                    .max_by_key(|s| s.len())
                    .and_then(|s| s.pop_back())
            })
            .map(|index| (index, Vec::new()))
        });
        match next {
            Some((index, failed_by)) => {
                self.in_flight += 1;
                Take::Chunk { index, failed_by }
            }
            None if self.in_flight > 0 => Take::Wait,
            None => Take::Stop,
        }
    }

    fn verified(&mut self) {
        self.in_flight -= 1;
        self.verified += 1;
    }

    /// The chunk failed from `peer`: another peer fetches it.
    fn failed(&mut self, index: u32, mut failed_by: Vec<usize>, peer: usize) {
        self.in_flight -= 1;
        failed_by.push(peer);
        self.retry.push_back((index, failed_by));
    }

    /// The chunk was not fetched, through no fault of the peer.
    fn put_back(&mut self, index: u32, failed_by: Vec<usize>) {
        self.in_flight -= 1;
        self.retry.push_front((index, failed_by));
    }

    fn complete(&self) -> bool {
        self.verified == self.total
    }
}

/// How a fetch ended.
#[derive(Debug, Default)]
pub struct FetchReport {
    /// Chunks fetched from peers; the rest were already in `FILE.partial`.
    pub fetched_chunks: u64,
    pub total_chunks: u64,
    /// Peers banned during the fetch, with the reason.
    pub banned: Vec<(Hash32, String)>,
}

/// How one round of a fetch ended.
enum Round {
    Done(u64),
    /// The peers vouching for the manifest could not deliver every chunk.
    Stalled,
    /// Every chunk matched the manifest, but the file is not the pinned one.
    WrongFile,
}

/// A node without a chain yet, fetching its training files from peers.
///
/// It dials the peers it is given, says hello with the genesis hash of the
/// chain it is joining (peers refuse another chain's), and while it
/// fetches it answers the requests peers open with `Refused` (an
/// `Announce` with `Ok`), so peers do not count it as unresponsive.
pub struct Fetcher {
    endpoint: quinn::Endpoint,
    identity: Identity,
    transport: Arc<quinn::TransportConfig>,
    our_id: Hash32,
    genesis: Hash32,
    /// The chain's name, as logs give it.
    network: String,
    peers: Vec<PeerAddr>,
    limits: NetLimits,
    /// The node's one ban list, which the network takes over.
    book: SharedBook,
    /// The failures to connect already logged, by address: a peer on
    /// another network is not logged at every round.
    logged: Mutex<HashSet<(SocketAddr, String)>>,
}

impl Fetcher {
    /// Bind a client endpoint: on the loopback address when every peer is
    /// there, else on every interface.
    pub fn new(
        key: &SigningKey,
        params: &ChainParams,
        peers: Vec<PeerAddr>,
        limits: NetLimits,
        book: SharedBook,
    ) -> Result<Arc<Fetcher>> {
        let endpoint = transport::client_endpoint(&peers)?;
        Ok(Arc::new(Fetcher {
            endpoint,
            identity: Identity::new(key)?,
            transport: transport_config(&limits)?,
            our_id: Hash32(key.verifying_key().to_bytes()),
            genesis: params.genesis_hash(),
            network: params.network.clone(),
            peers,
            limits,
            book,
            logged: Mutex::new(HashSet::new()),
        }))
    }

    /// Close every connection; peers see a node that stopped.
    pub async fn close(&self) {
        self.endpoint
            .close(CLOSE_SHUTDOWN.into(), b"fetch finished");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }

    /// Fetch `file` into its place, resuming from `FILE.partial`. Rounds
    /// repeat, with growing pauses, until the file is whole and has its
    /// pinned hash: a node without its training data cannot start.
    pub async fn fetch(self: &Arc<Self>, file: &TrainingFile) -> Result<FetchReport> {
        let mut report = FetchReport::default();
        let mut pause = Duration::from_millis(500);
        loop {
            let sources = self.connect_all().await;
            let outcome = if sources.is_empty() {
                log(format_args!(
                    "fetching {} {}: none of {} peers is reachable",
                    file.what,
                    file.name,
                    self.peers.len()
                ));
                None
            } else {
                let result = self.round(file, &sources, &mut report).await;
                for source in &sources {
                    source
                        .conn
                        .close(CLOSE_SHUTDOWN.into(), b"fetch round over");
                }
                result?
            };
            match outcome {
                Some(Round::Done(fetched)) => {
                    report.fetched_chunks += fetched;
                    report.banned = lock(&self.book)
                        .active(Instant::now())
                        .into_iter()
                        .map(|(id, _, reason)| (id, reason))
                        .collect();
                    return Ok(report);
                }
                Some(Round::Stalled) | None => {}
                Some(Round::WrongFile) => {
                    pause = Duration::from_millis(500);
                    continue;
                }
            }
            log(format_args!(
                "fetching {} {}: trying again in {}s",
                file.what,
                file.name,
                pause.as_secs_f64()
            ));
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
    }

    fn is_banned(&self, id: &Hash32) -> bool {
        lock(&self.book).is_banned(id, Instant::now())
    }

    /// Refuse a peer for the rest of the fetch, and say why.
    fn ban(&self, id: &Hash32, addr: SocketAddr, conn: &quinn::Connection, reason: &str) {
        log(format_args!(
            "banning peer {} ({addr}) for {}s: {reason}",
            short(id),
            self.limits.ban.as_secs()
        ));
        lock(&self.book).ban(*id, None, reason, Instant::now());
        conn.close(CLOSE_BANNED.into(), reason.as_bytes());
    }

    async fn connect_all(self: &Arc<Self>) -> Vec<Arc<Source>> {
        let dials: Vec<_> = self
            .peers
            .iter()
            .map(|target| {
                let fetcher = Arc::clone(self);
                let target = target.clone();
                tokio::spawn(async move {
                    match fetcher.connect(&target).await {
                        Ok(source) => Some(Arc::new(source)),
                        Err(e) => {
                            let text = format!("{e:#}");
                            if lock(&fetcher.logged).insert((target.addr, text.clone())) {
                                log(format_args!("cannot fetch from {}: {text}", target.addr));
                            }
                            None
                        }
                    }
                })
            })
            .collect();
        let mut sources: Vec<Arc<Source>> = Vec::new();
        for dial in dials {
            let Ok(Some(source)) = dial.await else {
                continue;
            };
            // The same peer under two addresses is one source.
            if sources.iter().any(|s| s.id == source.id) {
                source
                    .conn
                    .close(CLOSE_REFUSED.into(), b"already connected");
            } else {
                sources.push(source);
            }
        }
        sources
    }

    async fn connect(&self, target: &PeerAddr) -> Result<Source> {
        let timeout = self.limits.request_timeout;
        let (conn, id) = transport::dial(
            &self.endpoint,
            &self.identity,
            &self.transport,
            target,
            Some(timeout),
        )
        .await?;
        if id == self.our_id {
            conn.close(CLOSE_REFUSED.into(), b"connected to self");
            bail!("that is this node");
        }
        if self.is_banned(&id) {
            conn.close(CLOSE_BANNED.into(), b"banned");
            bail!("peer {} is banned", short(&id));
        }
        tokio::spawn(answer_while_fetching(conn.clone(), timeout));
        match greet(&conn, &joining_hello(self.genesis), timeout).await? {
            Greeting::Accepted(_) => {}
            Greeting::WeRefused { reason, theirs } => {
                bail!(
                    "refusing peer {}: {reason}{}",
                    short(&id),
                    another_network(&theirs.genesis, &self.genesis, &self.network)
                );
            }
            Greeting::TheyRefused(reason) => {
                let detail = refuser_genesis(&reason)
                    .map(|theirs| another_network(&theirs, &self.genesis, &self.network))
                    .unwrap_or_default();
                bail!("peer {} refused us: {reason}{detail}", short(&id))
            }
            Greeting::Unexpected(other) => {
                self.ban(
                    &id,
                    target.addr,
                    &conn,
                    "answered hello with something else",
                );
                bail!("unexpected answer to hello: {other:?}");
            }
        }
        Ok(Source {
            id,
            addr: target.addr,
            conn,
            alive: AtomicBool::new(true),
            timeouts: AtomicU32::new(0),
            delivered: AtomicU64::new(0),
            next_request: Mutex::new(Instant::now()),
        })
    }

    /// Ask every source for the manifest; keep the one most of them give.
    /// Returns it with the sources that gave it.
    async fn choose_manifest(
        &self,
        file: &TrainingFile,
        sources: &[Arc<Source>],
    ) -> Option<(Manifest, Vec<Arc<Source>>)> {
        let timeout = self.limits.request_timeout;
        let asks: Vec<_> = sources
            .iter()
            .map(|source| {
                let conn = source.conn.clone();
                let request = Request::GetFile {
                    blake3: file.blake3,
                };
                tokio::spawn(async move { request_on(&conn, &request, timeout).await })
            })
            .collect();
        let mut offers: Vec<(Manifest, Vec<Arc<Source>>)> = Vec::new();
        for (source, ask) in sources.iter().zip(asks) {
            let answer = ask.await.unwrap_or_else(|e| Err(NetError::Task(e)));
            let manifest = match answer {
                Ok(Response::File { size, chunk_hashes }) => Manifest { size, chunk_hashes },
                Ok(Response::NotFound) => {
                    log(format_args!(
                        "peer {} ({}) does not have {} {}",
                        short(&source.id),
                        source.addr,
                        file.what,
                        file.name
                    ));
                    continue;
                }
                Ok(Response::Refused(reason)) => {
                    log(format_args!(
                        "peer {} refused GetFile: {reason}",
                        short(&source.id)
                    ));
                    continue;
                }
                Ok(other) => {
                    self.ban(
                        &source.id,
                        source.addr,
                        &source.conn,
                        &format!("answered GetFile with {other:?}"),
                    );
                    continue;
                }
                Err(e) => {
                    if e.is_misbehaviour() {
                        self.ban(&source.id, source.addr, &source.conn, &e.to_string());
                    }
                    continue;
                }
            };
            if let Err(e) = manifest.check() {
                self.ban(
                    &source.id,
                    source.addr,
                    &source.conn,
                    &format!("sent an impossible manifest for {}: {e}", file.name),
                );
                continue;
            }
            match offers.iter_mut().find(|(m, _)| *m == manifest) {
                Some((_, vouchers)) => vouchers.push(Arc::clone(source)),
                None => offers.push((manifest, vec![Arc::clone(source)])),
            }
        }
        // Most vouchers first; the first offer wins a tie.
        let best = (0..offers.len()).rev().max_by_key(|i| offers[*i].1.len())?;
        Some(offers.swap_remove(best))
    }

    /// One round: choose a manifest, fetch the chunks `FILE.partial` lacks
    /// from the peers that vouched for it, check the whole file.
    async fn round(
        self: &Arc<Self>,
        file: &TrainingFile,
        sources: &[Arc<Source>],
        report: &mut FetchReport,
    ) -> Result<Option<Round>> {
        let Some((manifest, vouchers)) = self.choose_manifest(file, sources).await else {
            log(format_args!(
                "none of {} connected peers serves {} {} (BLAKE3 {})",
                sources.len(),
                file.what,
                file.name,
                file.blake3
            ));
            return Ok(None);
        };
        report.total_chunks = manifest.chunk_hashes.len() as u64;
        let partial = file.partial_path();
        if let Some(dir) = partial.parent() {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let manifest = Arc::new(manifest);
        let (handle, missing) = {
            let manifest = Arc::clone(&manifest);
            let path = partial.clone();
            crate::offload::spawn_blocking(move || open_partial(&path, &manifest)).await??
        };
        let handle = Arc::new(handle);
        let total = manifest.chunk_hashes.len() as u64;
        let kept = total - missing.len() as u64;
        if kept > 0 {
            log(format_args!(
                "resuming {} {} from {}: {kept}/{total} chunks already there and verified",
                file.what,
                file.name,
                partial.display()
            ));
        }
        let download = Arc::new(Download {
            file: file.clone(),
            manifest: Arc::clone(&manifest),
            partial: Arc::clone(&handle),
            schedule: Mutex::new(Schedule::new(&missing, vouchers.len(), kept, total)),
            sources: vouchers.clone(),
            fetched: AtomicU64::new(0),
            last_log: Mutex::new(Instant::now()),
            started: Instant::now(),
            kept,
            write_error: Mutex::new(None),
            request_interval: Duration::from_secs(1)
                / self.limits.requests_per_second.max(2).div_ceil(2),
            bar: Mutex::new(crate::progress::bar_wanted().then(|| {
                crate::progress::Progress::start(
                    crate::progress::Task::Fetch,
                    crate::progress::Unit::Bytes,
                    Some(total.saturating_sub(kept) * u64::from(CHUNK_BYTES)),
                )
            })),
        });
        download.log_progress(true);
        let mut workers = Vec::new();
        for _ in 0..REQUESTS_IN_FLIGHT_PER_PEER {
            for peer in 0..vouchers.len() {
                let download = Arc::clone(&download);
                let fetcher = Arc::clone(self);
                workers.push(tokio::spawn(async move {
                    download.worker(peer, &fetcher).await
                }));
            }
        }
        for worker in workers {
            worker.await?;
        }
        if let Some(e) = lock(&download.write_error).take() {
            return Err(e);
        }
        let fetched = download.fetched.load(Ordering::SeqCst);
        if !lock(&download.schedule).complete() {
            log(format_args!(
                "fetching {} {}: the peers that have it stopped serving it",
                file.what, file.name
            ));
            report.fetched_chunks += fetched;
            return Ok(Some(Round::Stalled));
        }
        let found = {
            let path = partial.clone();
            crate::offload::spawn_blocking(move || -> Result<Hash32> {
                handle.sync_all()?;
                Ok(read_manifest(&path)?.0)
            })
            .await??
        };
        if found != file.blake3 {
            let ids: Vec<String> = vouchers.iter().map(|s| short(&s.id)).collect();
            log(format_args!(
                "{} {} assembled from the manifest of peers {} has BLAKE3 hash {found}, not the pinned {}",
                file.what,
                file.name,
                ids.join(", "),
                file.blake3
            ));
            for source in &vouchers {
                self.ban(
                    &source.id,
                    source.addr,
                    &source.conn,
                    &format!("its manifest of {} is not the file genesis pins", file.name),
                );
            }
            report.fetched_chunks += fetched;
            return Ok(Some(Round::WrongFile));
        }
        let target = file.path.clone();
        crate::offload::spawn_blocking(move || -> Result<()> {
            fs::rename(&partial, &target)
                .with_context(|| format!("cannot rename onto {}", target.display()))?;
            if let Some(dir) = target.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await??;
        let delivered = vouchers
            .iter()
            .filter(|s| s.delivered.load(Ordering::SeqCst) > 0)
            .count();
        log(format_args!(
            "fetched {} {} (BLAKE3 {}): {total}/{total} chunks verified, {} fetched from {delivered} peers, saved to {}",
            file.what,
            file.name,
            file.blake3,
            report.fetched_chunks + fetched,
            file.path.display()
        ));
        Ok(Some(Round::Done(fetched)))
    }
}

/// Open (or create) `FILE.partial` at the manifest's size and find the
/// chunks it lacks: every chunk whose bytes do not match the manifest.
fn open_partial(path: &Path, manifest: &Manifest) -> Result<(File, Vec<u32>)> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let had = file.metadata()?.len();
    file.set_len(manifest.size)
        .with_context(|| format!("cannot size {}", path.display()))?;
    let mut missing = Vec::new();
    let mut buffer = vec![0u8; CHUNK_BYTES as usize];
    for index in 0..manifest.chunk_hashes.len() as u32 {
        let (offset, len) = manifest.chunk_span(index)?;
        let bytes = &mut buffer[..len as usize];
        let present = offset + len <= had
            && file.read_exact_at(bytes, offset).is_ok()
            && manifest.check_chunk(index, bytes).is_ok();
        if !present {
            missing.push(index);
        }
    }
    Ok((file, missing))
}

/// The state of one round of a fetch, shared by its workers.
struct Download {
    file: TrainingFile,
    manifest: Arc<Manifest>,
    partial: Arc<File>,
    schedule: Mutex<Schedule>,
    sources: Vec<Arc<Source>>,
    fetched: AtomicU64,
    last_log: Mutex<Instant>,
    /// When the round began, and the chunks verified then (for the rate).
    started: Instant,
    kept: u64,
    write_error: Mutex<Option<anyhow::Error>>,
    /// Gap between two requests to one peer.
    request_interval: Duration,
    /// On a terminal, the bar of this round's bytes, in place of the lines.
    bar: Mutex<Option<crate::progress::Progress>>,
}

impl Download {
    fn log_progress(&self, force: bool) {
        let (verified, total) = {
            let schedule = lock(&self.schedule);
            (schedule.verified, schedule.total)
        };
        // Chunks are CHUNK_BYTES but the last: the bar counts in bytes.
        if let Some(bar) = lock(&self.bar).as_mut() {
            let alive = self
                .sources
                .iter()
                .filter(|s| s.alive.load(Ordering::SeqCst))
                .count();
            let done = verified.saturating_sub(self.kept) * u64::from(CHUNK_BYTES);
            bar.update(
                done,
                &format!("{} {} from {alive} peers", self.file.what, self.file.name),
            );
            // The first and the last lines are said all the same.
            if !force && verified < total {
                return;
            }
        }
        {
            let mut last = lock(&self.last_log);
            if !force && last.elapsed() < Duration::from_secs(1) && verified < total {
                return;
            }
            *last = Instant::now();
        }
        let alive = self
            .sources
            .iter()
            .filter(|s| s.alive.load(Ordering::SeqCst))
            .count();
        // Chunks are CHUNK_BYTES but the last: the rate and ETA in bytes.
        let chunk = u64::from(CHUNK_BYTES);
        let rate = (verified.saturating_sub(self.kept) * chunk) as f64
            / self.started.elapsed().as_secs_f64().max(1e-3);
        log(format_args!(
            "fetching {} {} (BLAKE3 {}) from {alive} peers: {verified}/{total} chunks ({}%), \
             {}/s, ETA {}",
            self.file.what,
            self.file.name,
            self.file.blake3,
            (verified * 100).checked_div(total).unwrap_or(100),
            indicatif::HumanBytes(rate as u64),
            crate::progress::eta(total.saturating_sub(verified) * chunk, rate)
        ));
    }

    /// Drop a peer for the rest of the round, banning it when it broke
    /// the protocol.
    fn drop_source(&self, source: &Source, fetcher: &Fetcher, ban: Option<String>) {
        source.alive.store(false, Ordering::SeqCst);
        if let Some(reason) = ban {
            fetcher.ban(&source.id, source.addr, &source.conn, &reason);
        }
    }

    /// Fetch chunks from peer `peer` until there are none left for it.
    async fn worker(&self, peer: usize, fetcher: &Fetcher) {
        let source = &self.sources[peer];
        let timeout = fetcher.limits.request_timeout;
        let blake3 = self.file.blake3;
        while source.alive.load(Ordering::SeqCst) && lock(&self.write_error).is_none() {
            let take = lock(&self.schedule).take(peer);
            let (index, failed_by) = match take {
                Take::Chunk { index, failed_by } => (index, failed_by),
                Take::Wait => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Take::Stop => return,
            };
            source.pace(self.request_interval).await;
            let answer =
                request_on(&source.conn, &Request::GetChunk { blake3, index }, timeout).await;
            let bytes = match answer {
                Ok(Response::Chunk(bytes)) => bytes,
                Ok(Response::Refused(reason)) => {
                    // Most likely its rate limit: not a fault, try later.
                    lock(&self.schedule).put_back(index, failed_by);
                    log(format_args!(
                        "peer {} refused chunk {index}: {reason}",
                        short(&source.id)
                    ));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Ok(Response::NotFound) => {
                    lock(&self.schedule).failed(index, failed_by, peer);
                    log(format_args!(
                        "peer {} no longer serves {}",
                        short(&source.id),
                        self.file.name
                    ));
                    self.drop_source(source, fetcher, None);
                    return;
                }
                Ok(other) => {
                    lock(&self.schedule).failed(index, failed_by, peer);
                    let reason = format!("answered GetChunk with {}", response_name(&other));
                    self.drop_source(source, fetcher, Some(reason));
                    return;
                }
                Err(NetError::Timeout) => {
                    lock(&self.schedule).failed(index, failed_by, peer);
                    if source.timeouts.fetch_add(1, Ordering::SeqCst) + 1 >= MAX_CHUNK_TIMEOUTS {
                        log(format_args!(
                            "giving up on peer {}: {MAX_CHUNK_TIMEOUTS} chunk requests timed out",
                            short(&source.id)
                        ));
                        self.drop_source(source, fetcher, None);
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    lock(&self.schedule).failed(index, failed_by, peer);
                    let ban = e.is_misbehaviour().then(|| e.to_string());
                    if ban.is_none() {
                        log(format_args!(
                            "lost peer {} while fetching: {e}",
                            short(&source.id)
                        ));
                    }
                    self.drop_source(source, fetcher, ban);
                    return;
                }
            };
            if let Err(e) = self.manifest.check_chunk(index, &bytes) {
                // The peer vouched for this manifest and sent a chunk
                // that contradicts it: refuse the chunk, ban the peer.
                log(format_args!(
                    "refusing chunk {index} of {} from peer {}: {e}",
                    self.file.name,
                    short(&source.id)
                ));
                lock(&self.schedule).failed(index, failed_by, peer);
                let reason = format!(
                    "sent chunk {index} of {}, which does not match its own manifest",
                    self.file.name
                );
                self.drop_source(source, fetcher, Some(reason));
                return;
            }
            let (offset, _) = match self.manifest.chunk_span(index) {
                Ok(span) => span,
                Err(e) => {
                    *lock(&self.write_error) = Some(e.into());
                    return;
                }
            };
            let partial = Arc::clone(&self.partial);
            let written =
                crate::offload::spawn_blocking(move || partial.write_all_at(&bytes, offset)).await;
            match written {
                Ok(Ok(())) => {
                    lock(&self.schedule).verified();
                    self.fetched.fetch_add(1, Ordering::SeqCst);
                    source.delivered.fetch_add(1, Ordering::SeqCst);
                    self.log_progress(false);
                }
                Ok(Err(e)) => {
                    lock(&self.schedule).put_back(index, failed_by);
                    *lock(&self.write_error) = Some(anyhow::Error::new(e).context(format!(
                        "cannot write {}",
                        self.file.partial_path().display()
                    )));
                    return;
                }
                Err(e) => {
                    lock(&self.schedule).put_back(index, failed_by);
                    *lock(&self.write_error) = Some(e.into());
                    return;
                }
            }
        }
    }
}

/// Answer what a peer asks of a node that is only fetching.
async fn answer_while_fetching(conn: quinn::Connection, timeout: Duration) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        tokio::spawn(async move {
            let Ok(bytes) = read_frame(&mut recv, wire::MAX_REQUEST_BYTES, timeout).await else {
                return;
            };
            let response = match wire::decode_request(&bytes) {
                Ok(Request::Announce { .. }) => Response::Ok,
                _ => Response::Refused("fetching training data; serving nothing yet".into()),
            };
            let _ = send.write_all(&wire::frame(&response)).await;
            let _ = send.finish();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::peerbook::PeerBook;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn the_schedule_stripes_chunks_and_retries_failures_elsewhere() {
        let missing: Vec<u32> = (0..6).collect();
        let mut schedule = Schedule::new(&missing, 2, 0, 6);
        let take = |s: &mut Schedule, peer| match s.take(peer) {
            Take::Chunk { index, failed_by } => Some((index, failed_by)),
            _ => None,
        };
        assert_eq!(take(&mut schedule, 0), Some((0, vec![])));
        assert_eq!(take(&mut schedule, 1), Some((1, vec![])));
        // Chunk 1 fails from peer 1: peer 0 gets it next, peer 1 never does.
        schedule.failed(1, vec![], 1);
        assert_eq!(take(&mut schedule, 1), Some((3, vec![])));
        assert_eq!(take(&mut schedule, 0), Some((1, vec![1])));
        schedule.verified();
        schedule.verified();
        schedule.verified();
        // Peer 0 drains its stripe, then steals from peer 1's.
        assert_eq!(take(&mut schedule, 0), Some((2, vec![])));
        assert_eq!(take(&mut schedule, 0), Some((4, vec![])));
        assert_eq!(take(&mut schedule, 0), Some((5, vec![])));
        assert!(matches!(schedule.take(0), Take::Wait));
        schedule.verified();
        schedule.verified();
        schedule.failed(5, vec![], 0);
        // Only peer 0 is left and chunk 5 failed from it: nothing to do.
        assert!(matches!(schedule.take(0), Take::Stop));
        assert_eq!(take(&mut schedule, 1), Some((5, vec![0])));
        schedule.verified();
        assert!(schedule.complete());
        assert!(matches!(schedule.take(1), Take::Stop));
    }

    #[test]
    fn a_partial_file_keeps_only_matching_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let data = bytes(3 * CHUNK_BYTES as usize + 5);
        let manifest = Manifest::of(&data);
        let path = dir.path().join("data.csv.partial");
        // Chunk 0 right, chunk 1 corrupted, chunk 2 right, chunk 3 absent.
        let mut partial = data[..3 * CHUNK_BYTES as usize].to_vec();
        partial[CHUNK_BYTES as usize + 3] ^= 0xff;
        fs::write(&path, &partial).unwrap();
        let (_, missing) = open_partial(&path, &manifest).unwrap();
        assert_eq!(missing, vec![1, 3]);
        assert_eq!(fs::metadata(&path).unwrap().len(), data.len() as u64);
    }

    /// The fetcher and the network share one peer book: a key the
    /// network banned is refused by the fetcher before it says hello.
    #[test]
    fn a_peer_banned_in_the_shared_book_is_refused_by_the_fetcher() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let params =
                ChainParams::from_json(include_str!("../../../config/regtest.json")).unwrap();
            let limits = NetLimits {
                request_timeout: Duration::from_secs(5),
                ..NetLimits::default()
            };
            let peer_key = SigningKey::from_bytes(&[21; 32]);
            let peer_id = Hash32(peer_key.verifying_key().to_bytes());
            let identity = Identity::new(&peer_key).unwrap();
            let server = transport::node_endpoint(
                &identity,
                &transport_config(&limits).unwrap(),
                Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            )
            .unwrap();
            let target = PeerAddr {
                id: Some(peer_id),
                addr: server.local_addr().unwrap(),
            };
            let accepting = server.clone();
            let accept = tokio::spawn(async move {
                let conn = accepting.accept().await.unwrap().await.unwrap();
                conn.closed().await
            });
            let book = PeerBook::shared(limits.ban);
            lock(&book).ban(peer_id, None, "flood", Instant::now());
            let fetcher = Fetcher::new(
                &SigningKey::from_bytes(&[22; 32]),
                &params,
                vec![target.clone()],
                limits,
                Arc::clone(&book),
            )
            .unwrap();
            let refusal = fetcher.connect(&target).await.err().unwrap().to_string();
            assert_eq!(refusal, format!("peer {} is banned", short(&peer_id)));
            let closed = tokio::time::timeout(Duration::from_secs(5), accept)
                .await
                .unwrap()
                .unwrap();
            assert!(
                matches!(&closed, quinn::ConnectionError::ApplicationClosed(c)
                    if c.error_code == CLOSE_BANNED.into()),
                "{closed:?}"
            );
            // Not banned, the same peer gets as far as the hello.
            let book = PeerBook::shared(Duration::from_secs(1));
            let unbanned = Fetcher::new(
                &SigningKey::from_bytes(&[22; 32]),
                &params,
                vec![target.clone()],
                NetLimits {
                    request_timeout: Duration::from_millis(300),
                    ..NetLimits::default()
                },
                book,
            )
            .unwrap();
            let accepting = server.clone();
            tokio::spawn(async move {
                let _conn = accepting.accept().await.unwrap().await.unwrap();
                tokio::time::sleep(Duration::from_secs(2)).await;
            });
            let error = unbanned.connect(&target).await.err().unwrap().to_string();
            assert!(!error.contains("banned"), "{error}");
            fetcher.close().await;
            unbanned.close().await;
            server.close(0u32.into(), b"");
        });
    }
}
