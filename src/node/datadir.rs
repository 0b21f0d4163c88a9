//! The data directory: layout, creation, the node key and the dataset copy.
//!
//! ```text
//! DIR/node.key          ed25519 secret key, hex, mode 0600
//! DIR/chain.json        the chain parameters (a copy, for people to read)
//! DIR/dataset/FILE      the task's files (the dataset, and the encoder of
//!                       an onnx_linear task), checked against their BLAKE3 hashes
//! DIR/dataset/FILE.partial  a file being fetched from peers (p2p::files)
//! DIR/store/            the sled store (schema/storage.md)
//! DIR/store.creating    present only while the store is being created
//! DIR/status.json       written by a running node after every block
//! DIR/api.cookie        the API's write token while a node serves it, mode 0600
//! ```

use super::chain::TaskFiles;
use crate::chain::Hash32;
use crate::consensus::params::ChainParams;
use crate::store::{Store, StoreError};
use anyhow::{bail, Context, Result};
use ed25519_dalek::SigningKey;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the task's files come from when a data dir is created.
pub enum ChainSource {
    /// A chain shipped inside the binary: its JSON and its files' bytes.
    Builtin {
        json: &'static str,
        files: &'static [(&'static str, &'static [u8])],
    },
    /// A chain file; its task's files are looked up next to it, then in `../data/`.
    File(PathBuf),
}

pub const DEVNET_JSON: &str = include_str!("../../config/devnet.json");
pub const REGTEST_JSON: &str = include_str!("../../config/regtest.json");
pub const DEVNET_ONNX_JSON: &str = include_str!("../../config/devnet-onnx.json");
pub const DIABETES_CSV: &[u8] = include_bytes!("../../data/diabetes.csv");
pub const TRANSFORMER_ENCODER_ONNX: &[u8] = include_bytes!("../../data/transformer_encoder.onnx");

/// The chains built into the binary, by the name `--chain` takes.
pub const BUILTIN_CHAINS: [&str; 3] = ["devnet", "regtest", "devnet-onnx"];

/// The name of the built-in chain whose genesis is `genesis`, if any: a
/// peer on another network is named by it.
pub fn builtin_chain_with_genesis(genesis: &Hash32) -> Option<&'static str> {
    BUILTIN_CHAINS.into_iter().find(|name| {
        ChainSource::from_arg(name)
            .params()
            .is_ok_and(|p| p.genesis_hash() == *genesis)
    })
}

impl ChainSource {
    /// A built-in chain's name or a path to a chain JSON file.
    pub fn from_arg(arg: &str) -> ChainSource {
        const DIABETES: (&str, &[u8]) = ("diabetes.csv", DIABETES_CSV);
        const ENCODER: (&str, &[u8]) = ("transformer_encoder.onnx", TRANSFORMER_ENCODER_ONNX);
        match arg {
            "devnet" => ChainSource::Builtin {
                json: DEVNET_JSON,
                files: &[DIABETES],
            },
            "regtest" => ChainSource::Builtin {
                json: REGTEST_JSON,
                files: &[DIABETES],
            },
            "devnet-onnx" => ChainSource::Builtin {
                json: DEVNET_ONNX_JSON,
                files: &[DIABETES, ENCODER],
            },
            path => ChainSource::File(PathBuf::from(path)),
        }
    }

    pub fn params(&self) -> Result<ChainParams> {
        match self {
            ChainSource::Builtin { json, .. } => {
                ChainParams::from_json(json).context("built-in chain parameters")
            }
            ChainSource::File(path) => {
                let text = fs::read_to_string(path)
                    .with_context(|| format!("cannot read chain file {}", path.display()))?;
                ChainParams::from_json(&text)
                    .with_context(|| format!("chain file {}", path.display()))
            }
        }
    }

    /// The bytes of one of the task's files, checked against its pinned hash.
    pub fn file(&self, file: &PinnedFile) -> Result<Vec<u8>> {
        let name = &file.name;
        let (bytes, origin) = match self {
            ChainSource::Builtin { files, .. } => {
                let (_, bytes) = files
                    .iter()
                    .find(|(known, _)| known == name)
                    .with_context(|| format!("{} {name} is not built in", file.what))?;
                (bytes.to_vec(), "built in".to_string())
            }
            ChainSource::File(path) => {
                let dir = path.parent().unwrap_or(Path::new("."));
                let candidates = [dir.join(name), dir.join("..").join("data").join(name)];
                let found = candidates.iter().find(|p| p.is_file()).with_context(|| {
                    format!(
                        "{} {name} of chain file {} not found; looked at {} and {}",
                        file.what,
                        path.display(),
                        candidates[0].display(),
                        candidates[1].display()
                    )
                })?;
                let bytes = fs::read(found)
                    .with_context(|| format!("cannot read {} {}", file.what, found.display()))?;
                (bytes, found.display().to_string())
            }
        };
        file.check(&bytes, &origin)?;
        Ok(bytes)
    }

    /// Every file of the task of `params`, checked.
    pub fn task_files(&self, params: &ChainParams) -> Result<TaskFiles> {
        let mut files = pinned_files(params).into_iter();
        let dataset = files.next().map(|f| self.file(&f)).transpose()?;
        let encoder = files.next().map(|f| self.file(&f)).transpose()?;
        Ok(TaskFiles {
            dataset: dataset.unwrap_or_default(),
            encoder,
        })
    }
}

/// A file a chain pins by its BLAKE3 hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedFile {
    /// What it is, in messages: `dataset` or `ONNX encoder`.
    pub what: &'static str,
    pub name: String,
    pub blake3: Hash32,
}

impl PinnedFile {
    /// Refuse bytes whose BLAKE3 hash differs from the pinned one.
    pub fn check(&self, bytes: &[u8], origin: &str) -> Result<()> {
        let found = Hash32(*blake3::hash(bytes).as_bytes());
        if found != self.blake3 {
            bail!(
                "{} {origin} has BLAKE3 hash {found}, but the chain pins {}; \
                 the file was changed or is not this chain's {}",
                self.what,
                self.blake3,
                self.what
            );
        }
        Ok(())
    }
}

/// The files the task of `params` needs: the dataset first, then the
/// encoder of an `onnx_linear` task.
pub fn pinned_files(params: &ChainParams) -> Vec<PinnedFile> {
    let dataset = &params.task.dataset;
    let mut files = vec![PinnedFile {
        what: "dataset",
        name: dataset.file.clone(),
        blake3: dataset.blake3,
    }];
    if let Some(onnx) = params.task.model.onnx() {
        files.push(PinnedFile {
            what: "ONNX encoder",
            name: onnx.file.clone(),
            blake3: onnx.blake3,
        });
    }
    files
}

/// What a data dir holds before its store exists: the first steps of a
/// creation that was stopped, or that waits for its dataset from peers.
const CREATION_ENTRIES: [&str; 5] = ["node.key", "chain.json", "chain.tmp", "dataset", CREATING];

/// The marker of a store being created: written before the store, removed
/// once it is complete. A store that holds nothing is an interrupted
/// creation when the marker is there, and a damaged store when it is not.
const CREATING: &str = "store.creating";

/// What [`DataDir::clean`] undoes of a creation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// The directory was there with something in it: leave it.
    Nothing,
    /// The directory was not there: remove it.
    RemoveDir,
    /// The directory was there and empty: empty it again.
    EmptyDir,
}

/// An opened data directory.
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> DataDir {
        DataDir {
            root: root.to_path_buf(),
        }
    }

    pub fn store_path(&self) -> PathBuf {
        self.root.join("store")
    }
    pub fn key_path(&self) -> PathBuf {
        self.root.join("node.key")
    }
    pub fn chain_path(&self) -> PathBuf {
        self.root.join("chain.json")
    }
    pub fn creating_path(&self) -> PathBuf {
        self.root.join(CREATING)
    }
    pub fn status_path(&self) -> PathBuf {
        self.root.join("status.json")
    }
    /// The API's write token, while a node serves the API (crate::api::cookie).
    pub fn cookie_path(&self) -> PathBuf {
        self.root.join(crate::api::cookie::FILE_NAME)
    }
    pub fn dataset_path(&self, params: &ChainParams) -> PathBuf {
        self.file_path(&params.task.dataset.file)
    }
    /// Where the data dir keeps a task file.
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.root.join("dataset").join(name)
    }

    /// Whether this directory already holds a pouwd data dir.
    pub fn exists(&self) -> bool {
        self.store_path().is_dir()
    }

    /// Refuse paths that are not, and cannot become, a data dir.
    pub fn check_usable(&self) -> Result<()> {
        let root = &self.root;
        if root.exists() && !root.is_dir() {
            bail!("{} is not a directory", root.display());
        }
        if root.is_dir() && !self.exists() {
            let entries =
                fs::read_dir(root).with_context(|| format!("cannot read {}", root.display()))?;
            for entry in entries {
                let name = entry?.file_name();
                if CREATION_ENTRIES.iter().any(|known| name == *known)
                    || is_temp_of(&name, "chain.json")
                {
                    continue;
                }
                bail!(
                    "{} is not a pouwd data dir (it has no store/) and is not empty; \
                     choose an empty or new directory",
                    root.display()
                );
            }
        }
        Ok(())
    }

    /// Open the store of an existing data dir.
    pub fn open_store(&self) -> Result<Store> {
        if !self.exists() {
            bail!(
                "{} is not a pouwd data dir (no store/ inside); create one with `pouwd start --data-dir {}`",
                self.root.display(),
                self.root.display()
            );
        }
        let opened = match Store::open(&self.store_path()) {
            Err(StoreError::Unfinished { .. }) if !self.creating_path().exists() => {
                return Err(self.damaged_store());
            }
            Err(StoreError::Unfinished { .. }) => {
                // Everything before the store was written first, so the
                // chain file is complete: finish what was interrupted.
                let text = fs::read_to_string(self.chain_path()).with_context(|| {
                    format!(
                        "finishing the interrupted creation of {}",
                        self.root.display()
                    )
                })?;
                let params = ChainParams::from_json(&text)
                    .with_context(|| format!("{}", self.chain_path().display()))?;
                let created = Store::create(&self.store_path(), &params);
                if created.is_ok() {
                    self.created()?;
                }
                created
            }
            other => other,
        };
        opened.map_err(|e| self.store_error(e))
    }

    /// Open the store of an existing data dir only to read it: on a full
    /// disk, a copy of it ([`Store::open_to_read`]). An interrupted
    /// creation is not finished.
    pub fn read_store(&self) -> Result<Store> {
        if !self.exists() {
            bail!(
                "{} is not a pouwd data dir (no store/ inside)",
                self.root.display()
            );
        }
        Store::open_to_read(&self.store_path()).map_err(|e| self.store_error(e))
    }

    fn store_error(&self, error: StoreError) -> anyhow::Error {
        match error {
            StoreError::Locked { .. } => anyhow::anyhow!(
                "a node is running on {} (its store is locked); stop it first, or use `pouwd status`",
                self.root.display()
            ),
            StoreError::Unfinished { .. } => self.empty_store(),
            other => anyhow::Error::new(other),
        }
    }

    /// Create a fresh data dir for a chain: key, task files, store.
    pub fn create(&self, source: &ChainSource) -> Result<Store> {
        let params = source.params()?;
        let files = source.task_files(&params)?;
        self.create_with(&params, &files)
    }

    /// [`DataDir::create_with`], leaving no half-made data dir behind when
    /// it fails: a directory it made is removed, and an empty one it was
    /// given is emptied again. (A creation that was begun before, and
    /// waits for its dataset, is left as it was.)
    pub fn create_or_clean(&self, params: &ChainParams, files: &TaskFiles) -> Result<Store> {
        let cleanup = self.cleanup_on_failure()?;
        let created = self.create_with(params, files);
        if created.is_err() {
            self.clean(cleanup);
        }
        created
    }

    /// What to undo if the data dir about to be created is not completed.
    pub fn cleanup_on_failure(&self) -> Result<Cleanup> {
        let root = &self.root;
        if !root.exists() {
            return Ok(Cleanup::RemoveDir);
        }
        let empty = root.is_dir()
            && fs::read_dir(root)
                .with_context(|| format!("cannot read {}", root.display()))?
                .next()
                .is_none();
        Ok(if empty {
            Cleanup::EmptyDir
        } else {
            Cleanup::Nothing
        })
    }

    /// Undo a creation that did not complete, as `cleanup` says. A failure
    /// to clean is reported and otherwise ignored: the error that caused
    /// it is the one to tell.
    pub fn clean(&self, cleanup: Cleanup) {
        let root = &self.root;
        let removed = match cleanup {
            Cleanup::Nothing => Ok(()),
            Cleanup::RemoveDir => match fs::remove_dir_all(root) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Cleanup::EmptyDir => fs::read_dir(root).and_then(|entries| {
                for entry in entries {
                    let path = entry?.path();
                    if path.is_dir() {
                        fs::remove_dir_all(&path)?;
                    } else {
                        fs::remove_file(&path)?;
                    }
                }
                Ok(())
            }),
        };
        if let Err(e) = removed {
            tracing::warn!(
                target: "pouwd",
                "warning: cannot remove the half-made data dir {}: {e}",
                root.display()
            );
        }
    }

    /// Create a fresh data dir from a chain and its checked files.
    pub fn create_with(&self, params: &ChainParams, files: &TaskFiles) -> Result<Store> {
        self.begin(params)?;
        write_atomic(&self.dataset_path(params), &files.dataset)?;
        if let (Some(onnx), Some(encoder)) = (params.task.model.onnx(), &files.encoder) {
            write_atomic(&self.file_path(&onnx.file), encoder)?;
        }
        self.finish(params)
    }

    /// The first steps of a creation: the directory, the node key,
    /// `chain.json` and `dataset/`, but no store, so the dir is not yet
    /// complete. A creation stopped here resumes on the next start, for
    /// the same chain only.
    pub fn begin(&self, params: &ChainParams) -> Result<()> {
        self.check_usable()?;
        if let Some(pending) = self.pending_params()? {
            if pending.genesis_hash() != params.genesis_hash() {
                bail!(
                    "{} was being created for chain {:?} (genesis {}), not {:?} (genesis {}); \
                     start it with that chain, or use another directory",
                    self.root.display(),
                    pending.network,
                    pending.genesis_hash(),
                    params.network,
                    params.genesis_hash()
                );
            }
        }
        fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        if !self.key_path().exists() {
            create_key(&self.key_path())?;
        }
        let dataset_path = self.dataset_path(params);
        fs::create_dir_all(dataset_path.parent().unwrap_or(&self.root))?;
        write_atomic(&self.chain_path(), params.to_json().as_bytes())
    }

    /// The last step of a creation, once the task's files are in place:
    /// the store, whose presence marks a complete data dir.
    pub fn finish(&self, params: &ChainParams) -> Result<Store> {
        for file in pinned_files(params) {
            let path = self.file_path(&file.name);
            if !path.is_file() {
                bail!(
                    "cannot finish {}: its {} {} is missing",
                    self.root.display(),
                    file.what,
                    path.display()
                );
            }
        }
        let cannot = || format!("cannot create the store in {}", self.root.display());
        write_atomic(&self.creating_path(), b"").with_context(cannot)?;
        let store = Store::create(&self.store_path(), params).with_context(cannot)?;
        self.created().with_context(cannot)?;
        Ok(store)
    }

    /// The store is complete: remove the marker of its creation.
    fn created(&self) -> Result<()> {
        let path = self.creating_path();
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// Why a store holds nothing: its creation was interrupted (the marker
    /// is there; `pouwd start` finishes it), or its files are damaged.
    pub fn empty_store(&self) -> anyhow::Error {
        if self.creating_path().exists() {
            anyhow::anyhow!(
                "the creation of {} was interrupted before its store was complete; \
                 `pouwd start --data-dir {}` finishes it",
                self.root.display(),
                self.root.display()
            )
        } else {
            self.damaged_store()
        }
    }

    fn damaged_store(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "the store {} is damaged: its creation finished, but no data can be read \
             from its files (store/db); restore the data dir from a backup, into a new \
             one, with `pouwd restore`, or move it aside and import an export of the chain \
             into a new one with `pouwd import-chain` (its node.key holds the miner's \
             identity: keep it)",
            self.store_path().display()
        )
    }

    /// The chain of a creation that was begun but not finished.
    pub fn pending_params(&self) -> Result<Option<ChainParams>> {
        let path = self.chain_path();
        if self.exists() || !path.is_file() {
            return Ok(None);
        }
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let params = ChainParams::from_json(&text)
            .with_context(|| format!("chain file {}", path.display()))?;
        Ok(Some(params))
    }

    /// Where to resume an unfinished creation from: the built-in chain it
    /// was for, or its `chain.json`.
    pub fn pending_source(&self) -> Result<Option<ChainSource>> {
        let Some(pending) = self.pending_params()? else {
            return Ok(None);
        };
        for name in BUILTIN_CHAINS {
            let builtin = ChainSource::from_arg(name);
            if builtin.params()?.genesis_hash() == pending.genesis_hash() {
                return Ok(Some(builtin));
            }
        }
        Ok(Some(ChainSource::File(self.chain_path())))
    }

    /// The node key; refused when other users can read it.
    pub fn load_key(&self) -> Result<SigningKey> {
        let path = self.key_path();
        let meta =
            fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "{} has mode {mode:04o}; it must be readable by its owner only (chmod 600 {})",
                path.display(),
                path.display()
            );
        }
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let seed = std::str::from_utf8(&bytes)
            .map_err(|_| "not text, where a node key is 64 hex digits".to_string())
            .and_then(|text| Hash32::from_hex(text).map_err(|e| e.to_string()))
            .map_err(|problem| {
                anyhow::anyhow!(
                    "{} is not a valid node key ({problem}): the file is damaged. It holds \
                     this node's identity, and with it the miner's balance: restore it from \
                     a backup (a `pouwd backup` file holds it). Do not delete it unless you mean to give up that identity and \
                     balance: a new key is made only when none exists",
                    path.display()
                )
            })?;
        Ok(SigningKey::from_bytes(&seed.0))
    }

    /// The task's files, each checked against the chain's hash.
    pub fn load_task_files(&self, params: &ChainParams) -> Result<TaskFiles> {
        let mut loaded = pinned_files(params).into_iter().map(|file| {
            let path = self.file_path(&file.name);
            let bytes = fs::read(&path)
                .with_context(|| format!("cannot read {} {}", file.what, path.display()))?;
            file.check(&bytes, &path.display().to_string())?;
            Ok::<_, anyhow::Error>(bytes)
        });
        let dataset = loaded.next().transpose()?.unwrap_or_default();
        let encoder = loaded.next().transpose()?;
        Ok(TaskFiles { dataset, encoder })
    }
}

fn create_key(path: &Path) -> Result<()> {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{}", hex::encode(key.to_bytes()))?;
    file.sync_all()?;
    Ok(())
}

/// Temporary files made by [`write_atomic`] in this process so far.
static TEMP_FILES: AtomicU64 = AtomicU64::new(0);

/// The temporary sibling [`write_atomic`] writes `path` through:
/// `NAME.PID.N.tmp`, unique to this write, so that writers of the same
/// file (the node's status file is written from several threads) never
/// share one.
fn temp_path(path: &Path) -> PathBuf {
    let n = TEMP_FILES.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Whether `name` is a temporary file left by [`write_atomic`] writing
/// `target` (or `chain.tmp`, the one name earlier versions used for `chain.json`).
fn is_temp_of(name: &std::ffi::OsStr, target: &str) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    name.strip_prefix(target)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|rest| rest.ends_with(".tmp"))
}

/// Write a file by writing a temporary sibling of its own and renaming it
/// over: a reader sees the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    {
        let mut file =
            fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| {
        let _ = fs::remove_file(&tmp);
        format!("cannot rename onto {}", path.display())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers of one file at once, as the node's threads write its status
    /// file: every write succeeds, and a reader only ever finds a whole
    /// file from one of them.
    #[test]
    fn concurrent_writers_never_tear_or_lose_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("status.json");
        write_atomic(&path, b"{}").unwrap();
        let writers = 8;
        let done = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for writer in 0..writers {
                let (path, done) = (&path, &done);
                scope.spawn(move || {
                    for n in 0..200 {
                        // Contents of different lengths, so a mix of two
                        // writes cannot pass for one.
                        let pad = "x".repeat((writer * 997 + n * 31) % 5000);
                        let json = serde_json::json!({"writer": writer, "n": n, "pad": pad});
                        write_atomic(path, json.to_string().as_bytes())
                            .unwrap_or_else(|e| panic!("writer {writer}, write {n}: {e:#}"));
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
            let mut reads = 0;
            while done.load(Ordering::SeqCst) < writers {
                let text = fs::read_to_string(&path).expect("the file is always there");
                let value: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("torn file ({e}): {text:.80}"));
                assert!(value.is_object());
                reads += 1;
            }
            assert!(reads > 0);
        });
        let leftovers: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|name| name != "status.json")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_creation_stopped_while_writing_chain_json_can_resume() {
        let name = temp_path(Path::new("/d/chain.json"));
        let name = name.file_name().unwrap();
        assert!(is_temp_of(name, "chain.json"), "{name:?}");
        assert!(!is_temp_of("chain.json".as_ref(), "chain.json"));
        assert!(!is_temp_of("chain.jsonx.tmp".as_ref(), "chain.json"));
        assert!(!is_temp_of("status.json.1.2.tmp".as_ref(), "chain.json"));
    }
}
