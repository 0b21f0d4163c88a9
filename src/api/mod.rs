//! The local HTTP API: JSON views of a running node for operators,
//! scripts and tests, and one write: handing the node a signed
//! transaction.
//!
//! `pouwd start --api [ADDR]` serves, over plain HTTP/1.1 on the node's
//! tokio runtime:
//!
//! - `GET /status`: the fields of `pouwd status`, plus `peers` (how many
//!   are connected), `sync`, `running`, `pid` and `api`;
//! - `GET /peers`: connected peers and banned ones;
//! - `GET /blocks/{height|hash}`: one block, as `pouwd inspect --json`;
//! - `GET /model[?limit=N]`: the tip's model, as `pouwd export-model`,
//!   plus the scores of the last N blocks of its chain;
//! - `GET /accounts/{id}`: an account's balances and nonce at the tip, and
//!   the next nonce once its pending transactions are counted;
//! - `GET /mempool[?limit=N]`: the pool's size and limits, and its best N
//!   pending transactions by fee per byte;
//! - `GET /tx/{id}`: a transaction and where it is: pending in the pool,
//!   or in a block of the best chain;
//! - `GET /jobs`: every training job on the best chain, its state, place
//!   in the queue, blocks, best score and money;
//! - `GET /jobs/{id}`: one job, with its spec, score curve, the miners it
//!   paid and the block whose model it delivers;
//! - `POST /tx`: one signed transaction, its canonical bytes as the body
//!   (`application/octet-stream`, schema/transactions.md), into the pool;
//! - `GET /metrics`: Prometheus text of the node's metrics
//!   ([`crate::node::metrics`]);
//! - `GET /`: the dashboard, one static page (with `/dashboard.js` and
//!   `/dashboard.css`, bundled into the binary) that charts the scores
//!   over height from the JSON endpoints ([`dashboard`]);
//! - `GET /chain/export`: the best chain as of the moment of the request,
//!   as an export stream (schema/export.md), streamed; `pouwd
//!   export-chain` and `pouwd backup` read a running node's chain here.
//!
//! Reads need no authentication, which is why the API binds a loopback
//! address unless told `--api-public`. The one write, `POST /tx`, and the
//! one read that costs the node a pass over its whole chain,
//! `GET /chain/export`, need the token the node writes to
//! `DATA_DIR/api.cookie` at every start ([`cookie`]), as
//! `Authorization: Bearer TOKEN`: 401 without it. It
//! answers 200 with the transaction's id, 400 naming the broken rule, 409
//! for a transaction the pool holds already, 413 for a body over
//! [`MAX_TX_BODY_BYTES`], 503 when the pool is full of transactions that
//! pay more per byte. Nothing else writes: no endpoint changes the chain,
//! the store, the peers or any file.
//!
//! What a client can cost the node is bounded: at most
//! [`MAX_CONNECTIONS`] at once (more wait in the listen backlog), request
//! headers of at most 16 KiB read within 5 s, request bodies read only by
//! an authorised `POST /tx` (at most [`MAX_TX_BODY_BYTES`], within 5 s),
//! listings bounded by `?limit=`, every connection closed after 30 s
//! (an export's once 30 s pass in which its reader took nothing), and
//! every store read and pool lock on the blocking pool so a slow read
//! never stalls the network's timers.

pub mod client;
pub mod cookie;
pub mod dashboard;

use crate::chain::Hash32;
use crate::node::mempool::MempoolError;
use crate::node::metrics;
use crate::node::state::{Shared, TxSubmitError};
use crate::node::status::status_json;
use crate::node::views::{self, BlockRef, ViewError};
use crate::p2p::net::{BanInfo, PeerInfo, SyncState};
use crate::p2p::Network;
use crate::tx::{Tx, TxError, MAX_ENCODED_TX_BYTES};
use cookie::Cookie;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{header, HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, watch, Semaphore};

/// The port `--api` binds when given no value, on 127.0.0.1.
pub const DEFAULT_PORT: u16 = 8645;
/// What `--api` binds when given no value.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8645";
/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Blocks of score history `/model` returns without `?limit=`.
pub const DEFAULT_HISTORY: usize = 100;
/// Most blocks of score history `/model` returns.
pub const MAX_HISTORY: usize = 10_000;
/// Pending transactions `/mempool` lists without `?limit=`.
pub const DEFAULT_MEMPOOL_LISTING: usize = 100;
/// Most pending transactions `/mempool` lists.
pub const MAX_MEMPOOL_LISTING: usize = 10_000;
/// The largest body `POST /tx` reads: twice the largest transaction, so a
/// transaction over its own limit is refused naming that limit, and
/// anything larger is refused unread (413).
pub const MAX_TX_BODY_BYTES: usize = 2 * MAX_ENCODED_TX_BYTES;

const MAX_HEADER_BYTES: usize = 16 * 1024;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
const BODY_TIMEOUT: Duration = Duration::from_secs(5);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Bytes of an export stream handed to the connection at a time.
const EXPORT_CHUNK_BYTES: usize = 256 * 1024;
/// Chunks of an export stream read ahead of the connection.
const EXPORT_CHUNKS_AHEAD: usize = 4;

/// The body of every response: a JSON document, or an export stream.
type ApiBody = BoxBody<Bytes, std::io::Error>;

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("--api {text:?}: expected a port, or an IP address and port such as {DEFAULT_ADDR}")]
    BadAddr { text: String },
    #[error(
        "refusing to serve the API on {addr}: it has no authentication, so anyone who can \
         reach that address could read this node's status, peers and chain; bind a loopback \
         address (without a value, --api binds {DEFAULT_ADDR}), or pass --api-public to \
         serve it there anyway"
    )]
    NotLoopback { addr: SocketAddr },
    #[error("cannot serve the API on TCP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Where `--api TEXT` asks to listen: a bare port means 127.0.0.1, and a
/// non-loopback address needs `public` (`--api-public`).
pub fn bind_addr(text: &str, public: bool) -> Result<SocketAddr, ApiError> {
    let bad = || ApiError::BadAddr {
        text: text.to_string(),
    };
    let addr = if let Ok(port) = text.parse::<u16>() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    } else if let Some(port) = text.strip_prefix("localhost:") {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port.parse::<u16>().map_err(|_| bad())?))
    } else {
        text.parse().map_err(|_| bad())?
    };
    if !public && !addr.ip().is_loopback() {
        return Err(ApiError::NotLoopback { addr });
    }
    Ok(addr)
}

/// Bind the API's TCP socket, before the node does any other work, so a
/// port in use is reported at once.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ApiError> {
    let bind_error = |source| ApiError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    Ok(listener)
}

/// What request handlers read.
struct Context {
    shared: Arc<Shared>,
    network: Option<Arc<Network>>,
    addr: SocketAddr,
    /// The token `POST /tx` needs.
    cookie: Arc<Cookie>,
}

/// The API while it serves.
pub struct Api {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cookie: Arc<Cookie>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Api {
    /// Write a fresh token to the data dir's `api.cookie` and serve on
    /// `listener` (from [`bind`]); `network` is `None` when the node runs
    /// without peers. Must run inside the tokio runtime. The caller then
    /// records the address in the status file and says it
    /// ([`Api::announce`]).
    /// Record the API's address in the status file, off the async
    /// threads, and only then say it, so whoever waits for the line finds
    /// it there (`pouwd status`, `send`).
    pub async fn announce(&self) {
        let shared = Arc::clone(&self.shared);
        match crate::offload::spawn_blocking(move || shared.write_status()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(target: "pouwd", "cannot write the status file: {e:#}"),
            Err(e) => tracing::warn!(target: "pouwd", "cannot write the status file: {e}"),
        }
        tracing::info!(target: "api", "listening on {}", self.addr);
    }

    pub fn start(
        listener: std::net::TcpListener,
        shared: Arc<Shared>,
        network: Option<Arc<Network>>,
    ) -> std::io::Result<Api> {
        let addr = listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let path = shared.dir.cookie_path();
        let cookie = Cookie::create(&path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot write the API's token to {}: {e}", path.display()),
            )
        })?;
        let cookie = Arc::new(cookie);
        shared.set_api_addr(Some(addr));
        let context = Arc::new(Context {
            shared: Arc::clone(&shared),
            network,
            addr,
            cookie: Arc::clone(&cookie),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, context, stopped));
        Ok(Api {
            addr,
            shared,
            cookie,
            stop,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, give open requests a moment to finish, take the
    /// address out of the status file's view and remove the token.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.shared.set_api_addr(None);
        if let Err(e) = self.cookie.remove() {
            tracing::warn!(
                target: "api",
                "cannot remove the API's token {}: {e}",
                self.cookie.path().display()
            );
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    context: Arc<Context>,
    mut stopped: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit,
            _ = stopped.changed() => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(target: "api", "cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let context = Arc::clone(&context);
        // Chunks of an export stream taken by the connection so far.
        let progress = Arc::new(AtomicU64::new(0));
        let sent = Arc::clone(&progress);
        let service = hyper::service::service_fn(move |request| {
            answer(Arc::clone(&context), Arc::clone(&sent), request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            // Closed after 30 s, unless it streams an export and its
            // reader took a chunk in the last 30 s.
            let mut seen = 0;
            while tokio::time::timeout(CONNECTION_TIMEOUT, connection.as_mut())
                .await
                .is_err()
            {
                let now = progress.load(Ordering::SeqCst);
                if now == seen {
                    break;
                }
                seen = now;
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

/// An error response: its status and a message for the `error` field.
#[derive(Debug, PartialEq)]
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal(error: impl std::fmt::Display) -> Failure {
        Failure::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
    }
}

impl From<ViewError> for Failure {
    fn from(error: ViewError) -> Failure {
        let status = if error.is_malformed() {
            StatusCode::BAD_REQUEST
        } else if error.is_unknown() {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Failure::new(status, error.to_string())
    }
}

impl From<TxSubmitError> for Failure {
    fn from(error: TxSubmitError) -> Failure {
        let status = match &error {
            e if e.is_invalid() => StatusCode::BAD_REQUEST,
            TxSubmitError::Pool(MempoolError::AlreadyKnown { .. }) => StatusCode::CONFLICT,
            TxSubmitError::Pool(MempoolError::Full) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure::new(status, error.to_string())
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq)]
enum Route {
    Status,
    Peers,
    Block(BlockRef),
    Model { history: usize },
    Account(Hash32),
    Mempool { limit: usize },
    Tx(Hash32),
    Jobs,
    Job(Hash32),
    SubmitTx,
    ExportChain,
    Metrics,
    Asset(&'static dashboard::Asset),
}

const ENDPOINTS: &str = "GET /status, /peers, /blocks/{height|hash}, /model, /accounts/{id}, \
                         /mempool, /tx/{id}, /jobs, /jobs/{id}, /chain/export, /metrics and / \
                         (the dashboard), and POST /tx";

/// The one method a known path answers; `None` for an unknown path.
fn method_of(segments: &[&str]) -> Option<Method> {
    match segments {
        ["tx"] => Some(Method::POST),
        [name] if dashboard::asset(name).is_some() => Some(Method::GET),
        ["status"]
        | ["metrics"]
        | ["peers"]
        | ["model"]
        | ["mempool"]
        | ["jobs"]
        | ["jobs", _]
        | ["blocks", _]
        | ["accounts", _]
        | ["tx", _]
        | ["chain", "export"] => Some(Method::GET),
        _ => None,
    }
}

fn route(method: &Method, path: &str, query: Option<&str>) -> Result<Route, Failure> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let Some(allowed) = method_of(&segments) else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no endpoint {path}; there are {ENDPOINTS}"),
        ));
    };
    if *method != allowed {
        let message = if allowed == Method::GET {
            format!(
                "{method} is not served on {path}: it is read-only and answers GET only \
                 (the one write is POST /tx)"
            )
        } else {
            format!(
                "{method} is not served on {path}: it takes POST only, with a signed transaction"
            )
        };
        return Err(Failure::new(StatusCode::METHOD_NOT_ALLOWED, message));
    }
    let hash = |text: &str, what: &str| {
        Hash32::from_hex(text).map_err(|e| Failure::bad_request(format!("{what} {text:?}: {e}")))
    };
    Ok(match segments.as_slice() {
        [name] if dashboard::asset(name).is_some() => {
            Route::Asset(dashboard::asset(name).ok_or_else(|| Failure::internal(path))?)
        }
        ["status"] => Route::Status,
        ["metrics"] => Route::Metrics,
        ["peers"] => Route::Peers,
        ["blocks", which] => {
            Route::Block(BlockRef::parse(which).map_err(|e| Failure::bad_request(e.to_string()))?)
        }
        ["accounts", id] => Route::Account(hash(id, "account id")?),
        ["mempool"] => Route::Mempool {
            limit: limit(
                query,
                DEFAULT_MEMPOOL_LISTING,
                MAX_MEMPOOL_LISTING,
                "transactions",
            )?,
        },
        ["tx", id] => Route::Tx(hash(id, "transaction id")?),
        ["tx"] => Route::SubmitTx,
        ["jobs"] => Route::Jobs,
        ["jobs", id] => Route::Job(hash(id, "job id")?),
        ["chain", "export"] => Route::ExportChain,
        _ => Route::Model {
            history: limit(query, DEFAULT_HISTORY, MAX_HISTORY, "blocks")?,
        },
    })
}

/// `limit=N` from a query: `default` without one, at most `max`.
fn limit(query: Option<&str>, default: usize, max: usize, what: &str) -> Result<usize, Failure> {
    let Some(text) = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("limit="))
    else {
        return Ok(default);
    };
    match text.parse::<usize>() {
        Ok(limit) if limit <= max => Ok(limit),
        _ => Err(Failure::bad_request(format!(
            "limit={text:?}: expected a number of {what} from 0 to {max}"
        ))),
    }
}

async fn answer(
    context: Arc<Context>,
    progress: Arc<AtomicU64>,
    request: Request<Incoming>,
) -> Result<Response<ApiBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let result = match route(&parts.method, path, parts.uri.query()) {
        Ok(Route::SubmitTx) => submit_tx(&context, &parts.headers, body).await,
        Ok(Route::ExportChain) => match export_chain(&context, &parts.headers, progress).await {
            Ok(response) => return Ok(response),
            Err(failure) => Err(failure),
        },
        Ok(Route::Metrics) => match metrics_text(&context).await {
            Ok(text) => return Ok(text_response(text, METRICS_CONTENT_TYPE)),
            Err(failure) => Err(failure),
        },
        Ok(Route::Asset(asset)) => {
            return Ok(text_response(asset.body.to_string(), asset.content_type))
        }
        Ok(route) => respond(&context, route).await,
        Err(failure) => Err(failure),
    };
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(failure) => {
            if failure.status.is_server_error() {
                tracing::info!(target: "api", "{} {path} failed: {}", parts.method, failure.message);
            }
            (failure.status, json!({ "error": failure.message }))
        }
    };
    let mut text = serde_json::to_string_pretty(&body).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    let full = Full::new(Bytes::from(text)).map_err(|never: Infallible| match never {});
    let mut response = Response::new(full.boxed());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        let allow = match method_of(&segments) {
            Some(Method::POST) => "POST",
            _ => "GET",
        };
        headers.insert(header::ALLOW, header::HeaderValue::from_static(allow));
    }
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"pouwd\""),
        );
    }
    Ok(response)
}

/// What `GET /metrics` is served as: OpenMetrics text, which Prometheus
/// scrapes and its text parsers read.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A 200 response of `text`, never cached (the page and the metrics
/// change as the node runs, and a new binary may serve a new page).
fn text_response(text: String, content_type: &'static str) -> Response<ApiBody> {
    let full = Full::new(Bytes::from(text)).map_err(|never: Infallible| match never {});
    let mut response = Response::new(full.boxed());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    response
}

/// `GET /metrics`: the store, the pool and the system read on the
/// blocking pool, the network's figures from memory.
async fn metrics_text(context: &Context) -> Result<String, Failure> {
    let mut snapshot = read_store(context, |shared| {
        metrics::read_snapshot(shared, crate::node::now_ms()).map_err(Failure::internal)
    })
    .await?;
    if let Some(network) = context.network.as_deref() {
        for peer in network.peer_infos() {
            if peer.direction == "inbound" {
                snapshot.peers_inbound += 1;
            } else {
                snapshot.peers_outbound += 1;
            }
        }
        (snapshot.p2p_bytes_in, snapshot.p2p_bytes_out) = context.shared.metrics.p2p_bytes(|| {
            network.peer_infos().iter().fold((0, 0), |(i, o), peer| {
                (i + peer.bytes_in, o + peer.bytes_out)
            })
        });
        snapshot.bans_active = network.ban_infos().len() as u64;
        let sync = network.sync_state();
        snapshot.syncing = sync.syncing;
        snapshot.sync_target_height = sync.target_height;
    }
    Ok(context
        .shared
        .metrics
        .encode(&snapshot, std::time::Instant::now()))
}

/// Run a store read on the blocking pool.
async fn read_store<T: Send + 'static>(
    context: &Context,
    read: impl FnOnce(&Shared) -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let shared = Arc::clone(&context.shared);
    crate::offload::spawn_blocking(move || read(&shared))
        .await
        .map_err(Failure::internal)?
}

async fn respond(context: &Context, route: Route) -> Result<Value, Failure> {
    match route {
        Route::Status => {
            let mut status = read_store(context, |shared| {
                status_json(&shared.chain.store, &shared.miner_id()).map_err(Failure::internal)
            })
            .await?;
            let network = context.network.as_deref();
            status["peers"] = network.map_or(0, |n| n.peer_infos().len()).into();
            status["sync"] = sync_json(network.map(Network::sync_state));
            status["running"] = true.into();
            status["pid"] = std::process::id().into();
            status["api"] = context.addr.to_string().into();
            let counters = &context.shared.metrics;
            status["mining"] = json!({
                "blocks_mined": counters.blocks_mined.get(),
                "training_steps": counters.training_steps.get(),
                "steps_per_second": counters.steps_per_second(std::time::Instant::now()),
            });
            // What `pouwd job submit` checks a job against before sending it.
            status["job_limits"] = serde_json::to_value(&context.shared.chain.params().jobs)
                .map_err(Failure::internal)?;
            Ok(status)
        }
        Route::Peers => Ok(match context.network.as_deref() {
            Some(network) => peers_json(network.peer_infos(), network.ban_infos()),
            None => json!([]),
        }),
        Route::Block(which) => {
            read_store(context, move |shared| {
                let store = &shared.chain.store;
                let hash = views::resolve(store, which)?;
                Ok(views::block_json(store, store.params(), &hash)?)
            })
            .await
        }
        Route::Model { history } => {
            read_store(context, move |shared| {
                let store = &shared.chain.store;
                let tip = store.tip().map_err(Failure::internal)?;
                let mut model = views::model_json(store, &shared.chain.inputs, &tip.hash)?;
                model["score_history"] = views::score_history(store, &tip.hash, history)?;
                Ok(model)
            })
            .await
        }
        Route::Account(id) => {
            read_store(context, move |shared| {
                // The pool is locked while the account is read, as when a
                // transaction is admitted, so the two agree.
                let pool = shared.pool();
                let account = shared.chain.store.account(&id).map_err(Failure::internal)?;
                let next_nonce = pool.next_nonce(&id, &account);
                drop(pool);
                Ok(views::account_json(&id, &account, next_nonce))
            })
            .await
        }
        Route::Mempool { limit } => {
            read_store(context, move |shared| {
                let pool = shared.pool();
                let listed: Vec<Tx> = pool.iter().take(limit).map(|c| c.tx().clone()).collect();
                let (count, bytes, limits) = (pool.len(), pool.bytes(), pool.limits().clone());
                drop(pool);
                Ok(json!({
                    "count": count,
                    "bytes": bytes,
                    "limits": {
                        "max_bytes": limits.max_bytes,
                        "max_count": limits.max_count,
                        "min_fee_per_kb": limits.min_fee_per_kb,
                    },
                    "listed": listed.len(),
                    "transactions": listed.iter().map(views::tx_json).collect::<Vec<_>>(),
                }))
            })
            .await
        }
        Route::Tx(id) => {
            read_store(context, move |shared| {
                let store = &shared.chain.store;
                if let Some(found) = views::tx_in_chain(store, &id)? {
                    return Ok(found);
                }
                if let Some(pending) = shared.pool().get(&id) {
                    return Ok(views::pending_tx_json(pending.tx()));
                }
                // Mined between the two looks: a block is stored before
                // its transactions leave the pool.
                Ok(views::tx_in_chain(store, &id)?.ok_or(ViewError::UnknownTx(id))?)
            })
            .await
        }
        Route::Jobs => {
            read_store(context, |shared| Ok(views::jobs_json(&shared.chain.store)?)).await
        }
        Route::Job(id) => {
            read_store(context, move |shared| {
                Ok(views::job_json(&shared.chain.store, &id)?)
            })
            .await
        }
        Route::SubmitTx | Route::ExportChain | Route::Metrics | Route::Asset(_) => {
            Err(Failure::internal(
                "POST /tx, GET /chain/export, /metrics and the dashboard are answered by `answer`",
            ))
        }
    }
}

/// Refuse a request without the token of the node's cookie.
fn authorize(context: &Context, headers: &HeaderMap, endpoint: &str) -> Result<(), Failure> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if !context.cookie.authorizes(authorization) {
        return Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "{endpoint} needs the token of the node's {} as `Authorization: Bearer TOKEN`",
                cookie::FILE_NAME
            ),
        ));
    }
    Ok(())
}

/// `GET /chain/export`: check the token, take the tip, and stream the
/// chain that ends there. The stream is written on the blocking pool
/// into a channel of a few chunks, so it goes no faster than its reader
/// takes it, and stops once the connection is gone.
async fn export_chain(
    context: &Context,
    headers: &HeaderMap,
    progress: Arc<AtomicU64>,
) -> Result<Response<ApiBody>, Failure> {
    authorize(context, headers, "GET /chain/export")?;
    let tip = read_store(context, |shared| {
        shared.chain.store.tip().map_err(Failure::internal)
    })
    .await?;
    let (sender, chunks) = mpsc::channel(EXPORT_CHUNKS_AHEAD);
    let shared = Arc::clone(&context.shared);
    crate::offload::spawn_blocking(move || {
        let writer = ChunkWriter {
            sender: sender.clone(),
            buffer: Vec::with_capacity(EXPORT_CHUNK_BYTES),
        };
        let written = crate::node::export::export_chain_at(&shared.chain.store, &tip.hash, writer);
        if let Err(e) = written {
            // Ends the response without its last chunk: the reader sees
            // the stream broken, never a stream cut short that looks whole.
            let _ = sender.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
            crate::say!("api: GET /chain/export failed: {e:#}");
        }
    });
    let body = ChunkBody { chunks, progress };
    let mut response = Response::new(body.boxed());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    headers.insert(
        "x-pouwd-tip",
        header::HeaderValue::from_str(&format!("{} {}", tip.height, tip.hash))
            .map_err(Failure::internal)?,
    );
    Ok(response)
}

/// Collects an export stream into chunks and hands them to the connection.
struct ChunkWriter {
    sender: mpsc::Sender<std::io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(EXPORT_CHUNK_BYTES));
        self.sender
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| std::io::Error::other("the client closed the connection"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= EXPORT_CHUNK_BYTES {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

/// A response body of the chunks a [`ChunkWriter`] sends; each chunk
/// taken counts in `progress`.
struct ChunkBody {
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    progress: Arc<AtomicU64>,
}

impl hyper::body::Body for ChunkBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = self.chunks.poll_recv(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            self.progress.fetch_add(1, Ordering::SeqCst);
        }
        polled.map(|chunk| chunk.map(|chunk| chunk.map(Frame::data)))
    }
}

/// `POST /tx`: check the token, read the body within its bounds, decode
/// it strictly and hand the transaction to the pool.
async fn submit_tx(
    context: &Context,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Value, Failure> {
    authorize(context, headers, "POST /tx")?;
    let too_large = || {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than {MAX_TX_BODY_BYTES} bytes; a transaction has at most \
                 {MAX_ENCODED_TX_BYTES}"
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_TX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let read = Limited::new(body, MAX_TX_BODY_BYTES).collect();
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => {
            return Err(Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {BODY_TIMEOUT:?}"),
            ))
        }
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large()),
        Ok(Err(e)) => return Err(Failure::bad_request(format!("cannot read the body: {e}"))),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let tx = Tx::from_bytes(&bytes)
        .map_err(|e| Failure::from(TxSubmitError::Invalid(TxError::Decode(e))))?;
    let shared = Arc::clone(&context.shared);
    let (id, _evicted) = crate::offload::spawn_blocking(move || shared.submit_tx(tx))
        .await
        .map_err(Failure::internal)??;
    Ok(json!({ "id": id.to_hex() }))
}

/// `sync` of `/status`: `idle` or `syncing` towards `target_height` from
/// `peers_ahead` peers; a node without a network is always idle.
fn sync_json(state: Option<SyncState>) -> Value {
    let state = state.unwrap_or_default();
    json!({
        "state": if state.syncing { "syncing" } else { "idle" },
        "target_height": state.target_height,
        "peers_ahead": state.peers,
    })
}

/// `/peers`: connected peers, then banned ones, each sorted by id.
fn peers_json(mut peers: Vec<PeerInfo>, mut bans: Vec<BanInfo>) -> Value {
    peers.sort_by(|a, b| a.id.cmp(&b.id));
    bans.sort_by(|a, b| a.id.cmp(&b.id));
    let connected = peers.into_iter().map(|p| {
        json!({
            "id": p.id,
            "address": p.address,
            "direction": p.direction,
            "best_height": p.best_height,
            "bytes_in": p.bytes_in,
            "bytes_out": p.bytes_out,
            "banned": false,
        })
    });
    let banned = bans.into_iter().map(|b| {
        json!({
            "id": b.id,
            "banned": true,
            "seconds_left": b.seconds_left,
            "reason": b.reason,
        })
    });
    Value::Array(connected.chain(banned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_default_to_loopback_and_refuse_public_ones_unless_asked() {
        assert_eq!(
            bind_addr(DEFAULT_ADDR, false).unwrap(),
            SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))
        );
        assert_eq!(
            bind_addr("9000", false).unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 9000))
        );
        assert_eq!(
            bind_addr("localhost:0", false).unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 0))
        );
        assert_eq!(
            bind_addr("[::1]:7", false).unwrap(),
            "[::1]:7".parse().unwrap()
        );
        assert_eq!(
            bind_addr("127.3.2.1:7", false).unwrap(),
            "127.3.2.1:7".parse().unwrap()
        );
        for public in ["0.0.0.0:8645", "192.0.2.1:80", "[::]:1"] {
            let e = bind_addr(public, false).unwrap_err();
            assert!(matches!(e, ApiError::NotLoopback { .. }), "{public}: {e}");
            assert!(e.to_string().contains("--api-public"), "{e}");
            assert!(bind_addr(public, true).is_ok(), "{public}");
        }
        for bad in [
            "",
            "x",
            "65536",
            "127.0.0.1",
            "localhost",
            "localhost:x",
            "host:1",
        ] {
            assert!(
                matches!(bind_addr(bad, true), Err(ApiError::BadAddr { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn routes_answer_their_one_method_and_name_what_is_wrong() {
        let get = &Method::GET;
        assert_eq!(route(get, "/status", None), Ok(Route::Status));
        assert_eq!(route(get, "/peers", None), Ok(Route::Peers));
        assert_eq!(
            route(get, "/blocks/7", None),
            Ok(Route::Block(BlockRef::Height(7)))
        );
        assert_eq!(
            route(get, &format!("/blocks/{}", "00".repeat(32)), None),
            Ok(Route::Block(BlockRef::Hash(crate::chain::Hash32::ZERO)))
        );
        assert_eq!(
            route(get, "/model", None),
            Ok(Route::Model {
                history: DEFAULT_HISTORY
            })
        );
        assert_eq!(
            route(get, "/model", Some("x=1&limit=5")),
            Ok(Route::Model { history: 5 })
        );
        assert_eq!(
            route(get, "/model", Some("limit=10000")),
            Ok(Route::Model { history: 10_000 })
        );
        let status = |method: &Method, path: &str, query: Option<&str>| {
            route(method, path, query).unwrap_err().status
        };
        assert_eq!(status(get, "/model", Some("limit=10001")), 400);
        assert_eq!(status(get, "/model", Some("limit=-1")), 400);
        assert_eq!(status(get, "/blocks/tip", None), 400);
        assert_eq!(status(get, "/blocks/", None), 400);
        assert_eq!(
            status(get, &format!("/blocks/{}", "g".repeat(64)), None),
            400
        );
        assert_eq!(route(get, "/metrics", None), Ok(Route::Metrics));
        assert!(
            matches!(route(get, "/", None), Ok(Route::Asset(a)) if a.content_type.starts_with("text/html"))
        );
        assert!(matches!(
            route(get, "/dashboard.js", None),
            Ok(Route::Asset(_))
        ));
        assert_eq!(status(&Method::POST, "/metrics", None), 405);
        assert_eq!(status(&Method::POST, "/", None), 405);
        for unknown in [
            "/status/",
            "/blocks",
            "/blocks/1/2",
            "/Status",
            "/metrics/",
            "/index.html",
            "/dashboard.jsx",
        ] {
            assert_eq!(status(get, unknown, None), 404, "{unknown}");
        }
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::HEAD] {
            assert_eq!(status(&method, "/status", None), 405, "{method}");
        }
    }

    #[test]
    fn wallet_routes_take_ids_and_bounded_limits() {
        let get = &Method::GET;
        let id = Hash32([0xab; 32]);
        let hex = id.to_hex();
        assert_eq!(
            route(get, &format!("/accounts/{hex}"), None),
            Ok(Route::Account(id))
        );
        assert_eq!(route(get, &format!("/tx/{hex}"), None), Ok(Route::Tx(id)));
        assert_eq!(route(get, "/jobs", None), Ok(Route::Jobs));
        assert_eq!(
            route(get, &format!("/jobs/{hex}"), None),
            Ok(Route::Job(id))
        );
        let f = route(get, "/jobs/12", None).unwrap_err();
        assert_eq!(f.status, 400);
        assert!(f.message.contains("job id"), "{}", f.message);
        assert_eq!(route(&Method::POST, "/jobs", None).unwrap_err().status, 405);
        assert_eq!(route(&Method::POST, "/tx", None), Ok(Route::SubmitTx));
        assert_eq!(route(get, "/chain/export", None), Ok(Route::ExportChain));
        assert_eq!(
            route(get, "/mempool", None),
            Ok(Route::Mempool {
                limit: DEFAULT_MEMPOOL_LISTING
            })
        );
        assert_eq!(
            route(get, "/mempool", Some("limit=0")),
            Ok(Route::Mempool { limit: 0 })
        );
        assert_eq!(
            route(get, "/mempool", Some("limit=10000")),
            Ok(Route::Mempool {
                limit: MAX_MEMPOOL_LISTING
            })
        );
        let failure = |method: &Method, path: &str, query: Option<&str>| {
            route(method, path, query).unwrap_err()
        };
        let f = failure(get, "/mempool", Some("limit=10001"));
        assert_eq!(f.status, 400);
        assert!(f.message.contains("0 to 10000"), "{}", f.message);
        for bad in ["/accounts/xyz", "/accounts/abab", "/accounts/", "/tx/12"] {
            assert_eq!(failure(get, bad, None).status, 400, "{bad}");
        }
        let f = failure(get, &format!("/tx/{}", "g".repeat(64)), None);
        assert!(f.message.contains("transaction id"), "{}", f.message);
        for unknown in ["/accounts", "/tx/a/b", "/mempool/x", "/txs"] {
            let f = failure(get, unknown, None);
            assert_eq!(f.status, 404, "{unknown}");
            assert!(f.message.contains("POST /tx"), "{}", f.message);
        }
        // POST /tx is the only write; /tx takes nothing else, and the
        // reads take nothing but GET.
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let f = failure(&method, "/tx", None);
            assert_eq!(f.status, 405, "{method}");
            assert!(f.message.contains("POST only"), "{}", f.message);
        }
        for path in [
            "/mempool",
            &format!("/accounts/{hex}"),
            &format!("/tx/{hex}"),
        ] {
            let f = failure(&Method::POST, path, None);
            assert_eq!(f.status, 405, "{path}");
            assert!(f.message.contains("read-only"), "{}", f.message);
        }
    }

    #[test]
    fn refused_transactions_map_to_their_statuses() {
        let status = |e: TxSubmitError| Failure::from(e).status;
        assert_eq!(status(TxError::BadSignature.into()), 400);
        assert_eq!(
            status(TxSubmitError::Pool(MempoolError::NonceGap {
                expected: 0,
                found: 1
            })),
            400
        );
        assert_eq!(
            status(TxSubmitError::Pool(MempoolError::AlreadyKnown {
                id: Hash32::ZERO
            })),
            409
        );
        assert_eq!(status(TxSubmitError::Pool(MempoolError::Full)), 503);
        let failure = Failure::from(TxSubmitError::from(TxError::ZeroAmount));
        assert_eq!(
            failure.message, "invalid transaction: a transfer of 0 base units",
            "the message names the broken rule"
        );
    }

    #[test]
    fn peers_list_connected_then_banned_with_the_ban_state() {
        let peer = |id: &str, direction| PeerInfo {
            id: id.into(),
            address: "127.0.0.1:5001".into(),
            direction,
            best_height: 9,
            bytes_in: 100,
            bytes_out: 200,
        };
        let peers = peers_json(
            vec![peer("bb", "inbound"), peer("aa", "outbound")],
            vec![BanInfo {
                id: "cc".into(),
                seconds_left: 42,
                reason: "sent an invalid block".into(),
            }],
        );
        assert_eq!(
            peers,
            json!([
                {"id": "aa", "address": "127.0.0.1:5001", "direction": "outbound",
                 "best_height": 9, "bytes_in": 100, "bytes_out": 200, "banned": false},
                {"id": "bb", "address": "127.0.0.1:5001", "direction": "inbound",
                 "best_height": 9, "bytes_in": 100, "bytes_out": 200, "banned": false},
                {"id": "cc", "banned": true, "seconds_left": 42, "reason": "sent an invalid block"},
            ])
        );
        assert_eq!(peers_json(vec![], vec![]), json!([]));
    }

    #[test]
    fn a_node_without_a_network_is_idle() {
        assert_eq!(
            sync_json(None),
            json!({"state": "idle", "target_height": 0, "peers_ahead": 0})
        );
        let syncing = SyncState {
            syncing: true,
            target_height: 12,
            peers: 2,
        };
        assert_eq!(sync_json(Some(syncing))["state"], "syncing");
    }
}
