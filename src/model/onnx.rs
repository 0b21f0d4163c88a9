//! ONNX models run through ONNX Runtime (the `ort` crate).
//!
//! ONNX Runtime is a shared library loaded at run time, never linked or
//! downloaded at build time. [`find_library`] looks for it in a fixed
//! order: `ORT_DYLIB_PATH`; the path the caller was configured with
//! (`--ort-lib`); the `onnxruntime==1.31.1` wheel that `tools/ort_lib.sh`
//! installs into `.venv`. [`runtime`] loads it once per process with
//! `ort::init_from`, the one entry point that reports a missing library as
//! an error: every other `ort` entry point panics then, so none is called
//! before [`runtime`] has succeeded.
//!
//! [`OnnxModel::load`] checks a model file cheapest first: its BLAKE3 hash
//! against the pinned one, then that ONNX Runtime parses it, then that the
//! graph has exactly one `float32` input of the expected name and shape
//! `[batch, features]` with a dynamic batch axis, and a `float32` output of
//! shape `[batch]` or `[batch, width]`. Each failure is its own
//! [`OnnxError`] naming what was expected and what was found. A caller that
//! names a text input in [`ModelSpec::text_input`] also accepts a graph
//! that has it, a `string` tensor `[batch, columns]`, beside the float32
//! input or instead of it (an exported graph that one-hot encodes text
//! columns itself); such a graph runs with [`OnnxModel::run_text_into`].
//!
//! The execution provider is chosen with [`ExecutionProvider`]: `cpu`,
//! `cuda` (an error when CUDA cannot be had, never a silent fallback), or
//! `auto` (CUDA when it can be had, else CPU). ONNX Runtime itself falls
//! back to CPU silently when a provider fails to register, so CUDA is
//! registered with `error_on_failure` and the session is committed with it
//! before it counts as running on CUDA. Every load logs one `onnx:` line on
//! stderr naming the provider that runs the session.
//!
//! [`OnnxModel::run_into`] borrows the caller's rows as the input tensor,
//! never a copy: some kernels (a `ReduceSum` along a row, for one) sum in
//! an order that depends on where the rows lie in memory, so a copy could
//! change the last bits of what the caller's own rows give. On the CPU
//! provider, for batches of up to [`PREALLOCATED_OUTPUT_VALUES`] outputs,
//! it keeps an output tensor of the last batch size it ran, handed to ONNX
//! Runtime through `RunOptions` to write into, so no output is allocated,
//! wrapped or queried per call. Larger batches, CUDA, and graphs whose
//! output is their input or does not fit its declared shape take the
//! outputs ONNX Runtime allocates; for large batches the per-call cost is
//! lost in the run. Both give the same bits: the same graph, kernels and
//! inputs.
//!
//! Nothing here is consensus arithmetic: float32 inference on another
//! provider or machine may differ in the last bits, so a chain that uses
//! these outputs must compare them within a documented tolerance.

use ort::ep::ExecutionProviderDispatch;
use ort::memory::Allocator;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::{Tensor, TensorElementType, TensorRef, ValueType};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use thiserror::Error;

/// The ONNX Runtime release this node is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";

/// The wheel file name of the runtime library, inside `onnxruntime/capi/`.
const WHEEL_LIBRARY: &str = "libonnxruntime.so.1.31.1";

/// What a user does when the library is missing, appended to load errors.
pub const INSTALL_HINT: &str = "ONNX Runtime 1.31 is needed for ONNX models: run \
`tools/ort_lib.sh`, which installs the onnxruntime==1.31.1 wheel into .venv and prints \
the library's path, then run from the repository root, pass `--ort-lib PATH` or set \
ORT_DYLIB_PATH=PATH (for CUDA: `tools/ort_lib.sh --gpu`)";

#[derive(Debug, Error)]
pub enum OnnxError {
    #[error("ONNX Runtime library not found (looked in: {}). {INSTALL_HINT}", looked.join(", "))]
    LibraryNotFound { looked: Vec<String> },
    #[error("cannot load ONNX Runtime from {path} ({source_name}): {reason}. {INSTALL_HINT}")]
    LibraryLoad {
        path: String,
        source_name: &'static str,
        reason: String,
    },
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("{file}: BLAKE3 hash is {found}, expected {expected}: not the pinned model file")]
    HashMismatch {
        file: String,
        expected: String,
        found: String,
    },
    #[error("{file}: not an ONNX model (ONNX Runtime cannot parse it: {reason})")]
    NotOnnx { file: String, reason: String },
    #[error("{file}: ONNX Runtime cannot load the model: {reason}")]
    Load { file: String, reason: String },
    #[error("{file}: the graph has {found} inputs {names:?}; expected exactly one, {expected:?}")]
    InputCount {
        file: String,
        expected: String,
        found: usize,
        names: Vec<String>,
    },
    #[error("{file}: the graph's input is named {found:?}; expected {expected:?}")]
    InputName {
        file: String,
        expected: String,
        found: String,
    },
    #[error("{file}: input {name:?} is {found}; expected {expected}")]
    InputShape {
        file: String,
        name: String,
        expected: String,
        found: String,
    },
    #[error("{file}: output {name:?} is {found}; expected {expected}")]
    OutputShape {
        file: String,
        name: String,
        expected: String,
        found: String,
    },
    #[error("{file}: the graph has no outputs")]
    NoOutputs { file: String },
    #[error("CUDA was asked for (--ort-ep cuda) but cannot be had: {reason}; install the onnxruntime-gpu==1.31.1 wheel with `tools/ort_lib.sh --gpu` on a machine with an NVIDIA GPU, or use --ort-ep cpu")]
    CudaUnavailable { reason: String },
    #[error(
        "{file}: a batch of {values} values is not a whole number of rows of {features} features"
    )]
    RaggedBatch {
        file: String,
        values: usize,
        features: usize,
    },
    #[error("{file}: inference failed: {reason}")]
    Run { file: String, reason: String },
}

/// Which execution provider runs a session (`--ort-ep`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExecutionProvider {
    /// CUDA when it can be had, else CPU; the fallback is logged.
    #[default]
    Auto,
    Cpu,
    /// CUDA or an error.
    Cuda,
}

impl FromStr for ExecutionProvider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ExecutionProvider::Auto),
            "cpu" => Ok(ExecutionProvider::Cpu),
            "cuda" => Ok(ExecutionProvider::Cuda),
            other => Err(format!(
                "{other:?} is not an execution provider: auto, cpu or cuda"
            )),
        }
    }
}

impl fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExecutionProvider::Auto => "auto",
            ExecutionProvider::Cpu => "cpu",
            ExecutionProvider::Cuda => "cuda",
        })
    }
}

/// The provider a committed session actually runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActiveProvider {
    Cpu,
    Cuda,
}

impl ActiveProvider {
    /// ONNX Runtime's name for the provider.
    pub fn ort_name(self) -> &'static str {
        match self {
            ActiveProvider::Cpu => "CPUExecutionProvider",
            ActiveProvider::Cuda => "CUDAExecutionProvider",
        }
    }
}

/// Where the runtime library was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LibrarySource {
    Environment,
    Config,
    Venv,
}

impl LibrarySource {
    fn name(self) -> &'static str {
        match self {
            LibrarySource::Environment => "ORT_DYLIB_PATH",
            LibrarySource::Config => "--ort-lib",
            LibrarySource::Venv => "the .venv of tools/ort_lib.sh",
        }
    }
}

/// Find the ONNX Runtime library: `ORT_DYLIB_PATH`, then `configured`,
/// then `.venv/lib/python3*/site-packages/onnxruntime/capi/` under the
/// working directory or a directory above the running executable.
pub fn find_library(configured: Option<&Path>) -> Result<(PathBuf, LibrarySource), OnnxError> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Ok((PathBuf::from(path), LibrarySource::Environment));
    }
    if let Some(path) = configured {
        return Ok((path.to_path_buf(), LibrarySource::Config));
    }
    let mut roots = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/pouwd, or target/debug/deps/<test binary>.
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    let mut looked = vec![
        "ORT_DYLIB_PATH (unset)".to_string(),
        "--ort-lib (not given)".to_string(),
    ];
    roots.dedup();
    for root in roots {
        let lib = root.join(".venv").join("lib");
        looked.push(format!(
            "{}/python3*/site-packages/onnxruntime/capi",
            lib.display()
        ));
        let Ok(entries) = std::fs::read_dir(&lib) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("python3"))
            })
            .collect();
        pythons.sort();
        for python in pythons {
            let candidate = python
                .join("site-packages")
                .join("onnxruntime")
                .join("capi")
                .join(WHEEL_LIBRARY);
            if candidate.is_file() {
                return Ok((candidate, LibrarySource::Venv));
            }
        }
    }
    Err(OnnxError::LibraryNotFound { looked })
}

/// The loaded ONNX Runtime: one per process.
pub struct Runtime {
    env: ort::environment::Environment,
    pub library: PathBuf,
    pub source: LibrarySource,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .field("source", &self.source)
            .finish()
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static RUNTIME_INIT: Mutex<()> = Mutex::new(());

/// Load ONNX Runtime (once per process) and return it. `configured` is the
/// `--ort-lib` value; see [`find_library`] for the order. A process loads
/// one library: later calls return the first one whatever they pass.
pub fn runtime(configured: Option<&Path>) -> Result<&'static Runtime, OnnxError> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let _guard = RUNTIME_INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let (library, source) = find_library(configured)?;
    let load_error = |reason: String| OnnxError::LibraryLoad {
        path: library.display().to_string(),
        source_name: source.name(),
        reason,
    };
    if !library.is_file() {
        return Err(load_error("no such file".to_string()));
    }
    let builder = ort::init_from(&library).map_err(|e| load_error(e.to_string()))?;
    let env = builder
        .with_name("pouwd")
        .build()
        .map_err(|e| OnnxError::Runtime(e.to_string()))?;
    Ok(RUNTIME.get_or_init(|| Runtime {
        env,
        library,
        source,
    }))
}

/// How to run sessions: provider and CPU threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    pub provider: ExecutionProvider,
    /// Threads one operator may use on CPU (ONNX Runtime's intra-op threads).
    pub intra_threads: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            provider: ExecutionProvider::Auto,
            intra_threads: 1,
        }
    }
}

/// Where ONNX Runtime comes from and how its sessions run: what a command
/// that runs ONNX models is configured with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrtSetup {
    /// `--ort-lib`; see [`find_library`] for the order.
    pub library: Option<PathBuf>,
    pub session: SessionConfig,
}

/// What a model file must be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelSpec {
    /// The pinned BLAKE3 hash of the file's bytes, lowercase hex.
    pub blake3: Option<String>,
    /// The name of the graph's one input; `None` takes its one input
    /// whatever its name (a job's encoder).
    pub input_name: Option<String>,
    /// Features per row, when the caller knows it.
    pub features: Option<usize>,
    /// The name of a string input `[batch, columns]` the graph may have
    /// besides (or instead of) the float32 one; `None`: exactly one input.
    pub text_input: Option<String>,
}

/// Lowercase hex BLAKE3 of `bytes`.
pub fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Batches of at most this many output values (rows × output width) run
/// into an output tensor kept from one call to the next (see the module
/// documentation).
pub const PREALLOCATED_OUTPUT_VALUES: usize = 4096;

/// A loaded, checked ONNX model ready to run batches of rows.
pub struct OnnxModel {
    session: Session,
    file: String,
    input_name: String,
    output_name: String,
    /// Values per row of the float32 input; 0 when the graph has only a
    /// text input.
    features: usize,
    /// The string input and its columns per row, if the graph has one.
    text: Option<(String, usize)>,
    width: usize,
    /// The output's rank: 1 for `[batch]`, 2 for `[batch, width]`.
    output_rank: usize,
    provider: ActiveProvider,
    blake3: String,
    /// Whether small batches may run into a [`PreallocatedOutput`]: on
    /// CPU, for an output that is not the input itself (ONNX Runtime hands
    /// that back as the input's own tensor and leaves the buffer alone),
    /// until such a run fails; then every batch runs as large ones do.
    preallocate: bool,
    /// Only ever reached through `&mut self` (`Mutex::get_mut`, no
    /// locking): the mutex keeps `OnnxModel` `Sync`, which `RunOptions`
    /// holding an output is not.
    preallocated: Mutex<Option<PreallocatedOutput>>,
}

/// An output tensor of one batch size, handed to ONNX Runtime through
/// `RunOptions` to write the outputs into.
struct PreallocatedOutput {
    batch: usize,
    options: RunOptions<HasSelectedOutputs>,
}

impl fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxModel")
            .field("file", &self.file)
            .field("input_name", &self.input_name)
            .field("output_name", &self.output_name)
            .field("features", &self.features)
            .field("text", &self.text)
            .field("width", &self.width)
            .field("provider", &self.provider)
            .field("blake3", &self.blake3)
            .finish()
    }
}

impl OnnxModel {
    /// Check `bytes` (the contents of `file`) against `spec` and commit a
    /// session on the provider `config` asks for. Logs the provider.
    pub fn load(
        runtime: &Runtime,
        file: &str,
        bytes: &[u8],
        spec: &ModelSpec,
        config: &SessionConfig,
    ) -> Result<OnnxModel, OnnxError> {
        let blake3 = blake3_hex(bytes);
        if let Some(expected) = &spec.blake3 {
            if !expected.eq_ignore_ascii_case(&blake3) {
                return Err(OnnxError::HashMismatch {
                    file: file.to_string(),
                    expected: expected.to_ascii_lowercase(),
                    found: blake3,
                });
            }
        }
        let (session, provider) = commit(runtime, file, bytes, config)?;
        let (input_name, features, text) = check_input(file, &session, spec)?;
        let (output_name, width, output_rank) = check_output(file, &session)?;
        tracing::info!(
            target: "onnx",
            "{file}: running on {} (--ort-ep {}, {} intra-op thread{})",
            provider.ort_name(),
            config.provider,
            config.intra_threads,
            if config.intra_threads == 1 { "" } else { "s" }
        );
        let preallocate =
            provider == ActiveProvider::Cpu && output_name != input_name && text.is_none();
        Ok(OnnxModel {
            session,
            file: file.to_string(),
            input_name,
            output_name,
            features,
            text,
            width,
            output_rank,
            provider,
            blake3,
            preallocate,
            preallocated: Mutex::new(None),
        })
    }

    /// Features per input row.
    pub fn features(&self) -> usize {
        self.features
    }

    /// The string input's name and columns per row, for a graph that has one.
    pub fn text_input(&self) -> Option<(&str, usize)> {
        self.text
            .as_ref()
            .map(|(name, columns)| (name.as_str(), *columns))
    }

    /// Output values per row: 1 for a prediction, the feature count for an encoder.
    pub fn output_width(&self) -> usize {
        self.width
    }

    pub fn provider(&self) -> ActiveProvider {
        self.provider
    }

    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    /// BLAKE3 of the file's bytes, lowercase hex.
    pub fn blake3(&self) -> &str {
        &self.blake3
    }

    /// A metadata value the exporter stored in the model (`metadata_props`).
    pub fn metadata(&self, key: &str) -> Option<String> {
        self.session.metadata().ok()?.custom(key)
    }

    /// Run row-major `rows` (a whole number of rows of [`Self::features`]
    /// values) and return the outputs, row-major, [`Self::output_width`]
    /// per row.
    pub fn run(&mut self, rows: &[f32]) -> Result<Vec<f32>, OnnxError> {
        let mut out = Vec::new();
        self.run_into(rows, &mut out)?;
        Ok(out)
    }

    /// Run a graph with a text input: `rows` holds [`Self::features`]
    /// float32 values per row, `cells` the text input's columns per row
    /// (both row-major, the same rows), and the outputs are appended to
    /// `out` as [`Self::run_into`] appends them.
    pub fn run_text_into<S: AsRef<str>>(
        &mut self,
        rows: &[f32],
        cells: &[S],
        out: &mut Vec<f32>,
    ) -> Result<(), OnnxError> {
        let run_error = |reason: String| OnnxError::Run {
            file: self.file.clone(),
            reason,
        };
        let Some((text_name, columns)) = self.text.clone() else {
            return Err(run_error("the graph has no text input".to_string()));
        };
        let batch = cells.len() / columns;
        if cells.len() != batch * columns || rows.len() != batch * self.features {
            return Err(run_error(format!(
                "{} text cells and {} values do not make whole rows of {columns} cells and {} \
                 values",
                cells.len(),
                rows.len(),
                self.features
            )));
        }
        if batch == 0 {
            return Ok(());
        }
        // The tensor copies the strings; its input must own them.
        let cells: Vec<String> = cells.iter().map(|c| c.as_ref().to_string()).collect();
        let text = Tensor::from_string_array(([batch, columns], cells.as_slice()))
            .map_err(|e| run_error(e.to_string()))?;
        let mut inputs: Vec<(String, ort::session::SessionInputValue)> =
            vec![(text_name, text.into())];
        if self.features > 0 {
            let input = TensorRef::from_array_view(([batch, self.features], rows))
                .map_err(|e| run_error(e.to_string()))?;
            inputs.push((self.input_name.clone(), input.into()));
        }
        let outputs = self
            .session
            .run(inputs)
            .map_err(|e| run_error(e.to_string()))?;
        let (shape, values) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| run_error(e.to_string()))?;
        if values.len() != batch * self.width {
            return Err(run_error(format!(
                "output {:?} has shape {shape} for a batch of {batch}; expected {} values",
                self.output_name,
                batch * self.width
            )));
        }
        out.extend_from_slice(values);
        Ok(())
    }

    /// [`Self::run`], appending to `out` instead of allocating.
    pub fn run_into(&mut self, rows: &[f32], out: &mut Vec<f32>) -> Result<(), OnnxError> {
        if let Some((name, _)) = &self.text {
            return Err(OnnxError::Run {
                file: self.file.clone(),
                reason: format!("the graph also takes the text input {name:?}"),
            });
        }
        if !rows.len().is_multiple_of(self.features) {
            return Err(OnnxError::RaggedBatch {
                file: self.file.clone(),
                values: rows.len(),
                features: self.features,
            });
        }
        let batch = rows.len() / self.features;
        if batch == 0 {
            return Ok(());
        }
        if self.preallocate && batch * self.width <= PREALLOCATED_OUTPUT_VALUES {
            match self.run_preallocated(rows, batch, out) {
                Ok(()) => return Ok(()),
                // A graph whose output does not fit its declared shape: run
                // it as larger batches are, which reports what it gave.
                Err(_) => {
                    self.preallocate = false;
                    *self
                        .preallocated
                        .get_mut()
                        .unwrap_or_else(|e| e.into_inner()) = None;
                }
            }
        }
        self.run_allocated(rows, batch, out)
    }

    /// Run `batch` rows into the kept output tensor, making it first if the
    /// last call had another batch size.
    fn run_preallocated(
        &mut self,
        rows: &[f32],
        batch: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), ort::Error> {
        let slot = self
            .preallocated
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        let preallocated = match slot {
            Some(p) if p.batch == batch => p,
            _ => {
                let allocator = Allocator::default();
                let output = match self.output_rank {
                    1 => Tensor::<f32>::new(&allocator, [batch])?,
                    _ => Tensor::<f32>::new(&allocator, [batch, self.width])?,
                };
                let selector =
                    OutputSelector::default().preallocate(self.output_name.clone(), output);
                let options = RunOptions::new()?.with_outputs(selector);
                slot.insert(PreallocatedOutput { batch, options })
            }
        };
        let input = TensorRef::from_array_view(([batch, self.features], rows))?;
        let outputs = self
            .session
            .run_with_options(ort::inputs![input], &preallocated.options)?;
        let (_, values) = outputs[0].try_extract_tensor::<f32>()?;
        out.extend_from_slice(values);
        Ok(())
    }

    /// Run `batch` rows; ONNX Runtime allocates the outputs.
    fn run_allocated(
        &mut self,
        rows: &[f32],
        batch: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), OnnxError> {
        let run_error = |reason: String| OnnxError::Run {
            file: self.file.clone(),
            reason,
        };
        let input = TensorRef::from_array_view(([batch, self.features], rows))
            .map_err(|e| run_error(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![input])
            .map_err(|e| run_error(e.to_string()))?;
        let (shape, values) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| run_error(e.to_string()))?;
        if values.len() != batch * self.width {
            return Err(run_error(format!(
                "output {:?} has shape {shape} for a batch of {batch}; expected {} values",
                self.output_name,
                batch * self.width
            )));
        }
        out.extend_from_slice(values);
        Ok(())
    }
}

fn cuda_provider() -> ExecutionProviderDispatch {
    // TF32 rounds matmul inputs to 10 mantissa bits: far outside the
    // tolerance an `onnx_linear` chain allows. Asked off explicitly rather
    // than left to a default that has changed between releases.
    ort::ep::CUDA::default()
        .with_tf32(false)
        .build()
        .error_on_failure()
}

/// Build and commit a session on the asked provider; for `auto`, any CUDA
/// failure (registration or commit) falls back to CPU with a log line.
fn commit(
    runtime: &Runtime,
    file: &str,
    bytes: &[u8],
    config: &SessionConfig,
) -> Result<(Session, ActiveProvider), OnnxError> {
    let threads = config.intra_threads.max(1);
    let builder = || -> Result<SessionBuilder, OnnxError> {
        let runtime_error = |e: ort::Error<SessionBuilder>| OnnxError::Runtime(e.to_string());
        Session::builder(&runtime.env)
            .map_err(|e| OnnxError::Runtime(e.to_string()))?
            // ONNX Runtime's default and Python's: every graph rewrite,
            // so that a session computes what Python's computes, bit for
            // bit. Asked explicitly rather than left to a default.
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(runtime_error)?
            .with_intra_threads(threads)
            .map_err(runtime_error)?
            .with_inter_threads(1)
            .map_err(runtime_error)
    };
    let cpu = |builder: SessionBuilder| {
        builder
            // ort's CPU provider turns the memory arena off unless asked;
            // onnxruntime's default (and Python's) is on, and large batches
            // are much slower without it.
            .with_execution_providers([ort::ep::CPU::default()
                .with_arena_allocator(true)
                .build()
                .error_on_failure()])
            .map_err(|e| OnnxError::Runtime(e.to_string()))?
            .commit_from_memory(bytes)
            .map_err(|e| load_error(file, &e))
    };
    match config.provider {
        ExecutionProvider::Cpu => Ok((cpu(builder()?)?, ActiveProvider::Cpu)),
        ExecutionProvider::Cuda | ExecutionProvider::Auto => {
            let attempt = builder()?
                .with_execution_providers([cuda_provider()])
                .map_err(|e| e.to_string())
                .and_then(|mut b| b.commit_from_memory(bytes).map_err(|e| e.to_string()))
                .map_err(|reason| reason.trim_end_matches('.').to_string());
            match attempt {
                Ok(session) => Ok((session, ActiveProvider::Cuda)),
                Err(reason) if config.provider == ExecutionProvider::Cuda => {
                    // A file that is not ONNX fails on every provider: say that
                    // rather than blame CUDA.
                    let _on_cpu = cpu(builder()?)?;
                    Err(OnnxError::CudaUnavailable { reason })
                }
                Err(reason) => {
                    let session = cpu(builder()?)?;
                    tracing::warn!(target: "onnx", "{file}: CUDA cannot be had ({reason}); falling back to CPU");
                    Ok((session, ActiveProvider::Cpu))
                }
            }
        }
    }
}

fn load_error(file: &str, error: &ort::Error) -> OnnxError {
    match error.code() {
        ort::ErrorCode::InvalidProtobuf => OnnxError::NotOnnx {
            file: file.to_string(),
            reason: error.message().to_string(),
        },
        _ => OnnxError::Load {
            file: file.to_string(),
            reason: error.message().to_string(),
        },
    }
}

/// `a float32 tensor of shape [batch, 10]`: a dynamic axis by its symbol, or `?`.
fn shape_text(value: &ValueType) -> String {
    match value {
        ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } => {
            let dims: Vec<String> = shape
                .iter()
                .enumerate()
                .map(|(i, &d)| match dimension_symbols.get(i) {
                    _ if d >= 0 => d.to_string(),
                    Some(symbol) if !symbol.is_empty() => symbol.clone(),
                    _ => "?".to_string(),
                })
                .collect();
            format!(
                "a {} tensor of shape [{}]",
                element_name(*ty),
                dims.join(", ")
            )
        }
        other => format!("{other:?}"),
    }
}

fn element_name(ty: TensorElementType) -> String {
    match ty {
        TensorElementType::Float32 => "float32".to_string(),
        other => format!("{other:?}"),
    }
}

/// The float32 input's name and width (0 and the spec's name when the
/// graph has only a text input), and the text input's name and columns.
type Inputs = (String, usize, Option<(String, usize)>);

fn check_input(file: &str, session: &Session, spec: &ModelSpec) -> Result<Inputs, OnnxError> {
    let inputs = session.inputs();
    let text = spec
        .text_input
        .as_deref()
        .and_then(|name| inputs.iter().find(|i| i.name() == name));
    let text = match text {
        None => None,
        Some(input) => {
            let shape_error = || OnnxError::InputShape {
                file: file.to_string(),
                name: input.name().to_string(),
                expected: "a string tensor of shape [?, columns] (a dynamic batch axis, then a \
                           fixed column count)"
                    .to_string(),
                found: shape_text(input.dtype()),
            };
            let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
                return Err(shape_error());
            };
            if *ty != TensorElementType::String
                || shape.len() != 2
                || shape[0] >= 0
                || shape[1] <= 0
            {
                return Err(shape_error());
            }
            Some((input.name().to_string(), shape[1] as usize))
        }
    };
    let floats: Vec<_> = inputs
        .iter()
        .filter(|i| text.as_ref().is_none_or(|(name, _)| i.name() != name))
        .collect();
    if text.is_some() && floats.is_empty() {
        return Ok((spec.input_name.clone().unwrap_or_default(), 0, text));
    }
    if floats.len() != 1 {
        return Err(OnnxError::InputCount {
            file: file.to_string(),
            expected: spec.input_name.clone().unwrap_or_default(),
            found: inputs.len(),
            names: inputs.iter().map(|i| i.name().to_string()).collect(),
        });
    }
    let input = floats[0];
    if let Some(expected) = spec
        .input_name
        .as_ref()
        .filter(|name| input.name() != *name)
    {
        return Err(OnnxError::InputName {
            file: file.to_string(),
            expected: expected.clone(),
            found: input.name().to_string(),
        });
    }
    let expected = match spec.features {
        Some(d) => format!("a float32 tensor of shape [?, {d}] (a dynamic batch axis, then {d} features)"),
        None => "a float32 tensor of shape [?, features] (a dynamic batch axis, then a fixed feature count)".to_string(),
    };
    let shape_error = || OnnxError::InputShape {
        file: file.to_string(),
        name: input.name().to_string(),
        expected: expected.clone(),
        found: shape_text(input.dtype()),
    };
    let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
        return Err(shape_error());
    };
    if *ty != TensorElementType::Float32 || shape.len() != 2 || shape[0] >= 0 || shape[1] <= 0 {
        return Err(shape_error());
    }
    let features = shape[1] as usize;
    if spec.features.is_some_and(|d| d != features) {
        return Err(shape_error());
    }
    Ok((input.name().to_string(), features, text))
}

/// The output's name, width (values per row) and rank.
fn check_output(file: &str, session: &Session) -> Result<(String, usize, usize), OnnxError> {
    let output = session
        .outputs()
        .first()
        .ok_or_else(|| OnnxError::NoOutputs {
            file: file.to_string(),
        })?;
    let shape_error = || OnnxError::OutputShape {
        file: file.to_string(),
        name: output.name().to_string(),
        expected:
            "a float32 tensor of shape [?] or [?, width] (the batch axis, then a fixed width)"
                .to_string(),
        found: shape_text(output.dtype()),
    };
    let ValueType::Tensor { ty, shape, .. } = output.dtype() else {
        return Err(shape_error());
    };
    if *ty != TensorElementType::Float32 {
        return Err(shape_error());
    }
    let width = match shape.len() {
        1 => 1,
        2 if shape[1] > 0 => shape[1] as usize,
        _ => return Err(shape_error()),
    };
    Ok((output.name().to_string(), width, shape.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_parse_and_print() {
        for name in ["auto", "cpu", "cuda"] {
            let ep: ExecutionProvider = name.parse().unwrap();
            assert_eq!(ep.to_string(), name);
        }
        let err = "gpu".parse::<ExecutionProvider>().unwrap_err();
        assert!(err.contains("auto, cpu or cuda"), "{err}");
    }

    #[test]
    fn missing_library_says_how_to_install() {
        let err = OnnxError::LibraryNotFound {
            looked: vec!["x".into()],
        };
        assert!(err.to_string().contains("tools/ort_lib.sh"), "{err}");
    }
}
