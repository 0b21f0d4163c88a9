//! `pouwd start`: create or open a data dir and run the node.

use super::eval::OrtArgs;
use super::{DataDirArg, InvalidArgument, MasternodeConfig};
use crate::api::{self, Api};
use crate::consensus::params::ChainParams;
use crate::model::onnx::{self, OrtSetup};
use crate::node::datadir::{pinned_files, write_atomic};
use crate::node::mempool::MempoolLimits;
use crate::node::miner::{run_miners, MinerOptions};
use crate::node::state::Shared;
use crate::node::{Chain, ChainSource, DataDir};
use crate::p2p::files::{read_manifest, training_files};
use crate::p2p::{
    Fetcher, NetConfig, NetLimits, Network, PeerAddr, PeerBook, PeersFile, ServedFiles,
    TrainingFile, STOP_RELAY_BOUND,
};
use crate::store::Store;
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Read flags from this TOML file (`pouwd config example` prints one);
    /// a flag given on the command line wins over the file's.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub dir: DataDirArg,
    /// `devnet` (default for a new data dir), `regtest`, `devnet-onnx`, or a
    /// chain JSON file.
    /// An existing data dir keeps its chain; naming another one is an error.
    #[arg(long, value_name = "CHAIN", value_parser = super::chain_arg)]
    pub chain: Option<String>,
    /// Mine blocks.
    #[arg(long)]
    pub mine: bool,
    /// Cores to mine with.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub mine_threads: u16,
    /// Stop once the tip reaches this height.
    #[arg(long, value_name = "H")]
    pub stop_at_height: Option<u64>,
    /// Run as a masternode; needs --masternode-config.
    #[arg(long, requires = "masternode_config")]
    pub masternode: bool,
    /// The masternode.json whose values must match the chain's.
    #[arg(long, value_name = "FILE", requires = "masternode")]
    pub masternode_config: Option<PathBuf>,
    /// Accept peer connections on this UDP address (QUIC), e.g. 127.0.0.1:5001.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// A p2p_network.json: {"peers": ["host:port", "ID@host:port", …], "port": N}.
    #[arg(long, value_name = "FILE")]
    pub peers: Option<PathBuf>,
    /// A peer to connect to, `host:port` or `ID@host:port`; may be repeated.
    #[arg(long = "peer", value_name = "ADDR")]
    pub peer: Vec<String>,
    /// Seconds a misbehaving peer stays banned.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub ban_secs: u64,
    /// Most inbound connections from one IP address.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_inbound_per_ip: usize,
    /// Most inbound connections; when all are taken, a new peer evicts the
    /// inbound peer that has shown the least (schema/p2p.md).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_inbound: u16,
    /// Serve the JSON API on this TCP address: a port, or IP:port
    /// (127.0.0.1:8645 when given without a value). Reads are open; the one
    /// write, POST /tx, needs the token of DIR/api.cookie.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = api::DEFAULT_ADDR)]
    pub api: Option<String>,
    /// Allow --api on an address other machines can reach. Its reads have no
    /// authentication: anyone who reaches it can read the node's state.
    #[arg(long, requires = "api")]
    pub api_public: bool,
    /// Most bytes of pending transactions the mempool holds.
    #[arg(long, value_name = "BYTES", default_value_t = MempoolLimits::default().max_bytes,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=(1 << 34)))]
    pub mempool_max_bytes: usize,
    /// Most pending transactions the mempool holds.
    #[arg(long, value_name = "N", default_value_t = MempoolLimits::default().max_count,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub mempool_max_count: usize,
    /// The minimum relay fee, in base units per 1000 bytes of transaction.
    #[arg(long, value_name = "BASE_UNITS", default_value_t = MempoolLimits::default().min_fee_per_kb)]
    pub min_relay_fee: u64,
    /// ONNX Runtime, for chains whose task runs an ONNX encoder.
    #[command(flatten)]
    pub ort: OrtArgs,
}

/// Everything `start` needs, checked before the node does anything.
struct StartConfig {
    dir: DataDir,
    source: Option<ChainSource>,
    mine: bool,
    options: MinerOptions,
    masternode: bool,
    /// `None` when the node runs without a network.
    network: Option<NetConfig>,
    /// Where to serve the local API, if anywhere.
    api: Option<SocketAddr>,
    ort: OrtSetup,
    mempool: MempoolLimits,
}

/// Merge `--listen`, `--peers` and `--peer` into one network configuration.
fn network_config(args: &StartArgs) -> Result<Option<NetConfig>> {
    let mut peers = Vec::new();
    let mut listen = args.listen;
    if let Some(path) = &args.peers {
        let file = PeersFile::load(path)?;
        peers.extend(file.addrs(path)?);
        if listen.is_none() {
            listen = file.port.map(|port| SocketAddr::from(([0, 0, 0, 0], port)));
        }
    }
    for text in &args.peer {
        peers.push(PeerAddr::parse(text).context(InvalidArgument("--peer"))?);
    }
    if listen.is_none() && peers.is_empty() {
        return Ok(None);
    }
    let ban = Duration::from_secs(args.ban_secs);
    Ok(Some(NetConfig {
        listen,
        peers,
        limits: NetLimits {
            ban,
            max_inbound_per_ip: args.max_inbound_per_ip,
            max_inbound: usize::from(args.max_inbound),
            ..NetLimits::default()
        },
        // Known once the data dir is open: see `run`.
        files: ServedFiles::default(),
        // One ban list for the fetch of training files and the network.
        book: PeerBook::shared(ban),
    }))
}

fn configure(args: StartArgs) -> Result<StartConfig> {
    let dir = DataDir::new(&args.dir.data_dir);
    dir.check_usable()?;
    let source = match args.chain.as_deref() {
        Some(arg) => Some(ChainSource::from_arg(arg)),
        // A creation that stopped half way (fetching its dataset) resumes
        // with the chain it was begun for.
        None => dir.pending_source()?,
    };
    let named = source.as_ref().map(|s| s.params()).transpose()?;
    let params = if dir.exists() {
        let store = dir.open_store()?;
        let ours = store.params().clone();
        if let Some(named) = &named {
            if named.genesis_hash() != ours.genesis_hash() {
                bail!(
                    "data dir {} holds chain {:?} (genesis {}), but --chain names chain {:?} (genesis {})",
                    dir.root.display(),
                    ours.network,
                    ours.genesis_hash(),
                    named.network,
                    named.genesis_hash()
                );
            }
        }
        ours
    } else {
        match named {
            Some(p) => p,
            None => ChainSource::from_arg("devnet").params()?,
        }
    };
    if args.masternode {
        let path = args
            .masternode_config
            .clone()
            .context("--masternode needs --masternode-config FILE")?;
        MasternodeConfig::load(&path)?.check(&path, &params)?;
    }
    let ort = args.ort.setup();
    if let Some(onnx) = params.task.model.onnx() {
        // Before anything is created or fetched: a node that cannot run
        // its task's encoder can do nothing with the chain.
        onnx::runtime(ort.library.as_deref()).with_context(|| {
            format!(
                "chain {:?} trains on the outputs of the ONNX encoder {}",
                params.network, onnx.file
            )
        })?;
    } else if params.jobs.allow_encoder {
        onnx::runtime(ort.library.as_deref()).with_context(|| {
            format!(
                "chain {:?} allows training jobs with an ONNX encoder, which every node runs",
                params.network
            )
        })?;
    }
    let network = network_config(&args)?;
    let api = args
        .api
        .as_deref()
        .map(|text| api::bind_addr(text, args.api_public))
        .transpose()
        .context(InvalidArgument("--api"))?;
    Ok(StartConfig {
        network,
        api,
        ort,
        dir,
        source,
        masternode: args.masternode,
        mine: args.mine,
        mempool: MempoolLimits {
            max_bytes: args.mempool_max_bytes,
            max_count: args.mempool_max_count,
            min_fee_per_kb: args.min_relay_fee,
        },
        options: MinerOptions {
            threads: usize::from(args.mine_threads),
            stop_at_height: args.stop_at_height,
        },
    })
}

pub fn run(args: StartArgs) -> Result<()> {
    let config = configure(args)?;
    // The addresses are taken before the data dir is created, so that a
    // port another program holds leaves nothing behind.
    let api = config.api.map(api::bind).transpose()?;
    if let Some(listen) = config.network.as_ref().and_then(|n| n.listen) {
        // Only a check: the network binds it again when it starts.
        std::net::UdpSocket::bind(listen).with_context(|| format!("cannot bind UDP {listen}"))?;
    }
    let dir = config.dir;
    let store = if dir.exists() {
        dir.open_store()?
    } else {
        let source = config
            .source
            .unwrap_or_else(|| ChainSource::from_arg("devnet"));
        let Some(store) =
            create_data_dir(&dir, &source, config.masternode, config.network.as_ref())?
        else {
            return Ok(());
        };
        crate::say!(
            "created data dir {} for chain {:?} (genesis {})",
            dir.root.display(),
            store.params().network,
            store.genesis_hash()
        );
        store
    };
    let files = dir.load_task_files(store.params())?;
    let network = match config.network {
        Some(mut network) => {
            network.files = ServedFiles::load(&dir, store.params(), config.masternode)?;
            Some(network)
        }
        None => None,
    };
    let chain = Chain::new(store, &files, &config.ort)?;
    let key = dir.load_key()?;
    let shared = Arc::new(Shared::with_mempool(chain, dir, key, config.mempool)?);
    if api.is_none() {
        // A token left by a node that did not stop cleanly opens nothing.
        let path = shared.dir.cookie_path();
        api::cookie::remove_stale(&path)
            .with_context(|| format!("cannot remove the stale API token {}", path.display()))?;
    }
    // The status file is written before the node says it started, so
    // whoever waits for that line reads this run's status.
    shared.write_status()?;
    let tip = shared.chain.store.tip()?;
    crate::say!(
        "node started: network={} height={} tip={} miner={} mining={}",
        shared.chain.params().network,
        tip.height,
        tip.hash,
        shared.miner_id(),
        if config.mine {
            format!("{} thread(s)", config.options.threads)
        } else {
            "off".into()
        }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(supervise(
        Arc::clone(&shared),
        config.mine,
        config.options,
        network,
        api,
    ));
    if let Err(e) = shared.write_status() {
        tracing::warn!(target: "pouwd", "cannot write the status file: {e:#}");
    }
    // The node's own error, when it stopped on one, is what to report:
    // a store that failed a write answers nothing more.
    match shared.chain.store.tip() {
        Ok(tip) => crate::say!("node stopped: height={} tip={}", tip.height, tip.hash),
        Err(e) if result.is_ok() => return Err(e.into()),
        Err(_) => {}
    }
    result
}

/// Create a new data dir. When a chain file's task files are not beside
/// it, a node with peers fetches them from them by the hashes genesis pins
/// (schema/p2p.md); a masternode serves the training data, so it must
/// bring its own. Gives the store and the peers the fetch banned; `None`
/// when a signal stopped the fetch: the chunks fetched so far are kept,
/// and the next start resumes.
fn create_data_dir(
    dir: &DataDir,
    source: &ChainSource,
    masternode: bool,
    network: Option<&NetConfig>,
) -> Result<Option<Store>> {
    let params = source.params()?;
    let missing = match source.task_files(&params) {
        Ok(files) => return Ok(Some(dir.create_or_clean(&params, &files)?)),
        Err(missing) => missing,
    };
    if masternode {
        bail!(
            "{missing:#}; a masternode serves its chain's training data to peers, \
             so it must start with it"
        );
    }
    let Some(network) = network.filter(|n| !n.peers.is_empty()) else {
        bail!("{missing:#}; or name peers (--peer, --peers) to fetch it from by its BLAKE3 hash");
    };
    dir.begin(&params)?;
    // The files the source has are copied; the others are fetched. A
    // fetch that stopped between its last chunk and the store left
    // nothing to fetch.
    let mut wanted = Vec::new();
    for (file, pinned) in training_files(dir, &params)
        .into_iter()
        .zip(pinned_files(&params))
    {
        if matches!(read_manifest(&file.path), Ok((hash, _)) if hash == file.blake3) {
            continue;
        }
        match source.file(&pinned) {
            Ok(bytes) => write_atomic(&file.path, &bytes)?,
            Err(_) => wanted.push(file),
        }
    }
    if !wanted.is_empty() && fetch(dir, &params, network, &wanted)?.is_none() {
        return Ok(None);
    }
    Ok(Some(dir.finish(&params)?))
}

/// Fetch `files` from the peers, banning into the network's peer book;
/// `None` when a signal stopped it first.
fn fetch(
    dir: &DataDir,
    params: &ChainParams,
    network: &NetConfig,
    files: &[TrainingFile],
) -> Result<Option<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let key = dir.load_key()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let fetcher = Fetcher::new(
            &key,
            params,
            network.peers.clone(),
            network.limits.clone(),
            Arc::clone(&network.book),
        )?;
        let all = async {
            for file in files {
                fetcher.fetch(file).await?;
            }
            anyhow::Ok(())
        };
        let stopped = tokio::select! {
            result = all => { result?; None }
            _ = terminate.recv() => Some("SIGTERM"),
            _ = interrupt.recv() => Some("SIGINT"),
        };
        fetcher.close().await;
        if let Some(signal) = stopped {
            crate::say!("{signal} received, stopping; the next start resumes the download");
        }
        Ok(stopped.is_none().then_some(()))
    })
}

/// Run the miners until they finish or a signal asks the node to stop,
/// with the network and the API, when configured, beside them.
async fn supervise(
    shared: Arc<Shared>,
    mine: bool,
    options: MinerOptions,
    network: Option<NetConfig>,
    api: Option<std::net::TcpListener>,
) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    if shared.tip_reached(options.stop_at_height) {
        return Ok(());
    }
    let network = network
        .map(|config| Network::start(Arc::clone(&shared), config))
        .transpose()?;
    let api = match api.map(|l| Api::start(l, Arc::clone(&shared), network.clone())) {
        Some(Ok(api)) => {
            api.announce().await;
            Some(api)
        }
        Some(Err(e)) => {
            if let Some(network) = network {
                network.shutdown().await;
            }
            return Err(e).context("cannot serve the API");
        }
        None => None,
    };
    let stop_at = options.stop_at_height;
    let worker = {
        let shared = Arc::clone(&shared);
        let peers = network.clone();
        crate::offload::spawn_blocking(move || {
            if mine {
                run_miners(shared, &options, move || {
                    peers.as_ref().map(|network| network.peer_count())
                })
            } else {
                while !shared.stop.load(Ordering::SeqCst) && !shared.tip_reached(stop_at) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(())
            }
        })
    };
    tokio::pin!(worker);
    let result = tokio::select! {
        result = &mut worker => Some(result.context("the miner task failed").and_then(|r| r)),
        _ = terminate.recv() => { crate::say!("SIGTERM received, stopping"); None }
        _ = interrupt.recv() => { crate::say!("SIGINT received, stopping"); None }
    };
    shared.stop.store(true, Ordering::SeqCst);
    let result = match result {
        Some(result) => result,
        // The API and the network stop whatever the miner task did.
        None => worker
            .await
            .context("the miner task failed")
            .and_then(|r| r),
    };
    if let Some(api) = api {
        api.shutdown().await;
    }
    if let Some(network) = network {
        // A clean stop hands the peers behind us our last blocks first.
        if result.is_ok() {
            network.relay_tip_before_stop(STOP_RELAY_BOUND).await;
        }
        network.shutdown().await;
    }
    result
}
