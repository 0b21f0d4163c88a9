//! A chain's model written as one self-contained ONNX graph, in pure Rust.
//!
//! [`to_onnx`] turns a [`GraphModel`] (the feature and target
//! standardisation, the parameter vector and, for `onnx_linear`, the bytes
//! of the frozen encoder) into the bytes of an ONNX `ModelProto` with the
//! interface of `data/linear.onnx`: one input `features`, float32
//! `[batch, d]` with a symbolic batch axis, taking the CSV's raw feature
//! values, and one output `prediction`, float32 `[batch, 1]`, in the
//! target's own units. `pouwd eval` scores such a file, and so can any
//! ONNX runtime, without knowing how the chain standardises its data.
//!
//! The graph computes, for a `linear` model with `params = [w…, bias]`,
//!
//! ```text
//! z = (double(features) - mean) / std
//! prediction = float((z · W + bias) * target_std + target_mean)
//! ```
//!
//! and for an encoder with a linear head, `z` goes through
//! `float(z) → encoder → double(embedding)` before the head. The
//! standardisation and the head run in double precision because that is
//! what the node computes: every mean, standard deviation and parameter is
//! stored as the node's f64, so the only float32 roundings in the exported
//! graph are the ones its float32 interface (and the encoder) impose. In
//! float32 the standardisation alone (`x - mean` for a column whose values
//! are large next to their spread) would lose several more digits.
//!
//! When the model's features include a text column's one-hot columns
//! ([`GraphModel::feature_sources`]), the graph takes the raw columns and
//! encodes them itself ([`TextInputs`]): `features` holds only the numeric
//! columns and a second input `text`, ONNX strings `[batch, t]`, the text
//! columns' cells. Each text column is gathered from `text`, mapped to its
//! category's index by an `ai.onnx.ml` `LabelEncoder` (-1 for a value no
//! category names), compared with `0..categories` and cast to double, so
//! an unseen value is all zeros as the node encodes it; the pieces and the
//! numeric columns are concatenated in the model's feature order before
//! the standardisation. `LabelEncoder` works at every default-domain
//! opset, so an encoder's opset stays as it is. A graph without text
//! columns is what it always was.
//!
//! The encoder is embedded, not referenced: its `ModelProto` is read with
//! the small protobuf reader below, its one input is renamed to an internal
//! name everywhere it is consumed (subgraphs included), and its graph gets
//! new inputs, outputs and the nodes around it. Every field this module
//! does not need to understand is copied through unchanged. Names this
//! module adds start with `pouwd_` and are checked against every name in
//! the encoder, so they never collide. The result keeps the encoder's IR
//! version and opset imports; a linear model is written at IR version 8,
//! ONNX opset 18, like the training scripts' graphs.
//!
//! Nothing here reads a file or calls ONNX Runtime: bytes in, bytes out.

use crate::dataset::{FeatureSource, Scaling};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use thiserror::Error;

/// The default-domain opset of a linear model's graph (tools/pouw_models.py).
pub const OPSET: u64 = 18;

/// The IR version of a linear model's graph (ONNX 1.13, the first with opset 18).
pub const IR_VERSION: u64 = 8;

/// The oldest default-domain opset an encoder may import: from opset 7 on,
/// Sub, Div, Add and Mul broadcast numpy-style, which the added nodes need.
pub const MIN_ENCODER_OPSET: u64 = 7;

/// The graph's input and output names: those `pouwd eval` expects.
pub const INPUT_NAME: &str = "features";
pub const OUTPUT_NAME: &str = "prediction";

/// The string input of a graph that one-hot encodes text columns itself.
pub const TEXT_INPUT_NAME: &str = "text";

/// The domain of `LabelEncoder`, and the opset of it the graphs import:
/// version 2 is the first with `keys_strings` and `values_int64s`.
pub const ML_DOMAIN: &str = "ai.onnx.ml";
pub const ML_OPSET: u64 = 2;

/// How deep subgraphs (`If`, `Loop`, `Scan` bodies) may nest in an encoder.
const MAX_SUBGRAPH_DEPTH: usize = 32;

#[derive(Debug, Error, PartialEq)]
pub enum ExportError {
    #[error("the model has no features; expected at least one feature column")]
    NoFeatures,
    #[error("the model has {found} parameters; expected {expected}: {layout}")]
    ParamCount {
        expected: usize,
        found: usize,
        layout: String,
    },
    #[error("{what}[{index}] is {value}; every exported value must be finite")]
    NotFinite {
        what: &'static str,
        index: usize,
        value: f64,
    },
    #[error("the standard deviation of {what}[{index}] is 0; expected a non-zero value")]
    ZeroStd { what: &'static str, index: usize },
    #[error("metadata key {key:?} appears more than once; expected each key once")]
    DuplicateMetadata { key: String },
    #[error("the encoder is not a valid ONNX model: {context}: {reason}")]
    Malformed { context: String, reason: String },
    #[error("an mlp head is exported without an encoder; expected no encoder")]
    MlpEncoder,
    #[error("the encoder has no graph (ModelProto field 7)")]
    NoGraph,
    #[error(
        "the encoder's graph has {} inputs besides its initializers {found:?}; expected exactly one, \
         the standardised rows",
        found.len()
    )]
    EncoderInputs { found: Vec<String> },
    #[error(
        "the encoder's graph has {} outputs {found:?}; expected exactly one, the embedding",
        found.len()
    )]
    EncoderOutputs { found: Vec<String> },
    #[error("the encoder's {role} {name:?} is {found}; expected {expected}")]
    EncoderShape {
        role: &'static str,
        name: String,
        expected: String,
        found: String,
    },
    #[error(
        "the encoder's input takes {encoder} values per row, but the model has {features} \
         features; expected the same count"
    )]
    FeatureCount { encoder: usize, features: usize },
    #[error(
        "the encoder imports the default ONNX domain at opset {found}; expected at least {minimum}"
    )]
    Opset { found: u64, minimum: u64 },
    #[error("the encoder's subgraphs nest deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("the model's feature sources do not fit a graph: {reason}")]
    Sources { reason: String },
    #[error(
        "the encoder imports {ML_DOMAIN} at opset {found}; a graph that one-hot encodes text \
         needs LabelEncoder of opset {ML_OPSET} or later"
    )]
    MlOpset { found: u64 },
}

/// What [`to_onnx`] writes.
#[derive(Clone, Copy, Debug)]
pub struct GraphModel<'a> {
    /// Mean and standard deviation of each feature column, in input order.
    pub feature_scaling: &'a [Scaling],
    /// Mean and standard deviation of the target.
    pub target_scaling: Scaling,
    /// The head's weights, then its bias: one weight per feature for a
    /// linear model, one per encoder output with an encoder.
    pub params: &'a [f64],
    /// Where each feature comes from, in input order (`None`: every
    /// feature is a numeric column). When a text column's one-hot columns
    /// are among them, the graph takes the raw cells and encodes them
    /// itself: see [`TextInputs`].
    pub feature_sources: Option<&'a [FeatureSource]>,
    /// The frozen encoder's `ModelProto` bytes, for `onnx_linear`: one
    /// float32 input `[batch, features]` of standardised rows, one float32
    /// output `[batch, width]`.
    pub encoder: Option<&'a [u8]>,
    /// Stored as the model's `metadata_props`, in this order (an
    /// encoder's own metadata is replaced).
    pub metadata: &'a [(String, String)],
}

/// Write `model` as the bytes of one ONNX `ModelProto`; see the module
/// documentation for the graph.
pub fn to_onnx(model: &GraphModel) -> Result<Vec<u8>, ExportError> {
    let d = check_model(model)?;
    let out = match model.encoder {
        None => {
            check_param_count(model.params, d, "weight per feature")?;
            linear_model(model)
        }
        Some(bytes) => encoder_model(model, bytes)?,
    };
    Ok(out.encode())
}

/// Write a model with the `mlp` head of `hidden` units (a training job's)
/// as the bytes of one ONNX `ModelProto`: the standardisation of
/// [`to_onnx`], then `relu(z · W1ᵀ + b1) · w2 + b2`, all in double, then
/// the target's scaling. `model.params` is laid out as `model::mlp` lays
/// it out; an encoder is refused.
pub fn mlp_to_onnx(model: &GraphModel, hidden: usize) -> Result<Vec<u8>, ExportError> {
    let d = check_model(model)?;
    if model.encoder.is_some() {
        return Err(ExportError::MlpEncoder);
    }
    let expected = crate::model::mlp::param_count(d, hidden);
    if hidden == 0 || model.params.len() != expected {
        return Err(ExportError::ParamCount {
            expected,
            found: model.params.len(),
            layout: format!(
                "W1 ({hidden}×{d}, row-major), b1 ({hidden}), w2 ({hidden}), then b2, \
                 for {hidden} hidden units"
            ),
        });
    }
    let graph = standalone_model(model, "pouwd_mlp", |names, added, z| {
        mlp_head(names, added, z, model, hidden)
    });
    Ok(graph.encode())
}

/// The checks every graph needs; the number of features.
fn check_model(model: &GraphModel) -> Result<usize, ExportError> {
    let d = model.feature_scaling.len();
    if d == 0 {
        return Err(ExportError::NoFeatures);
    }
    check_values(model)?;
    if let Some(sources) = model.feature_sources {
        if sources.len() != d {
            return Err(ExportError::Sources {
                reason: format!("{} sources for {d} features", sources.len()),
            });
        }
        layout(sources)?;
    }
    let mut seen = HashSet::new();
    for (key, _) in model.metadata {
        if !seen.insert(key.as_str()) {
            return Err(ExportError::DuplicateMetadata { key: key.clone() });
        }
    }
    Ok(d)
}

fn check_values(model: &GraphModel) -> Result<(), ExportError> {
    let finite = |what, values: &mut dyn Iterator<Item = f64>| {
        for (index, value) in values.enumerate() {
            if !value.is_finite() {
                return Err(ExportError::NotFinite { what, index, value });
            }
        }
        Ok(())
    };
    finite("params", &mut model.params.iter().copied())?;
    let scaling = model.feature_scaling;
    finite("feature_mean", &mut scaling.iter().map(|s| s.mean))?;
    finite("feature_std", &mut scaling.iter().map(|s| s.std))?;
    finite(
        "target_mean",
        &mut std::iter::once(model.target_scaling.mean),
    )?;
    finite("target_std", &mut std::iter::once(model.target_scaling.std))?;
    if let Some(index) = scaling.iter().position(|s| s.std == 0.0) {
        return Err(ExportError::ZeroStd {
            what: "feature",
            index,
        });
    }
    Ok(())
}

/// The inputs of a graph whose features include a text column's one-hot
/// columns: input `features`, float32 `[batch, features.len()]`, holds the
/// numeric columns named in `features`, in that order (the input is left
/// out when there are none), and input `text`, string `[batch,
/// text.len()]`, the raw cells of the text columns named in `text`, in
/// that order. Stored as the metadata `pouwd.inputs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextInputs {
    pub features: Vec<String>,
    pub text: Vec<String>,
}

/// One run of the model's features, in their order.
#[derive(Clone, Debug, PartialEq)]
enum Piece {
    /// Numeric features: these columns of input `features`.
    Numeric(Vec<usize>),
    /// A text column's one-hot columns: column `index` of input `text`,
    /// one feature per category.
    Text {
        index: usize,
        categories: Vec<String>,
    },
}

/// The graph inputs `sources` need when a text column is among them;
/// `None` when every feature is numeric (one input `features`, as before).
pub fn text_inputs(sources: &[FeatureSource]) -> Result<Option<TextInputs>, ExportError> {
    Ok(layout(sources)?.map(|(inputs, _)| inputs))
}

/// The inputs and the runs of features of a graph that encodes text; each
/// text column's categories must be one run of distinct values, and no
/// column may appear twice.
fn layout(sources: &[FeatureSource]) -> Result<Option<(TextInputs, Vec<Piece>)>, ExportError> {
    if sources.iter().all(|s| s.category.is_none()) {
        return Ok(None);
    }
    let refuse = |reason: String| ExportError::Sources { reason };
    let mut inputs = TextInputs {
        features: Vec::new(),
        text: Vec::new(),
    };
    let mut pieces: Vec<Piece> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut previous: Option<&FeatureSource> = None;
    for source in sources {
        let column = source.column.as_str();
        let continues = previous.is_some_and(|p| p.column == column && p.category.is_some());
        match &source.category {
            Some(category) if continues => {
                let Some(Piece::Text { categories, .. }) = pieces.last_mut() else {
                    unreachable!("a text run is open");
                };
                if categories.contains(category) {
                    return Err(refuse(format!(
                        "category {category:?} of column {column:?} appears twice"
                    )));
                }
                categories.push(category.clone());
            }
            _ => {
                if !seen.insert(column) {
                    return Err(refuse(format!(
                        "column {column:?} appears twice (a text column's categories must be \
                         one run)"
                    )));
                }
                match &source.category {
                    Some(category) => {
                        pieces.push(Piece::Text {
                            index: inputs.text.len(),
                            categories: vec![category.clone()],
                        });
                        inputs.text.push(source.column.clone());
                    }
                    None => {
                        let index = inputs.features.len();
                        inputs.features.push(source.column.clone());
                        match pieces.last_mut() {
                            Some(Piece::Numeric(columns)) => columns.push(index),
                            _ => pieces.push(Piece::Numeric(vec![index])),
                        }
                    }
                }
            }
        }
        previous = Some(source);
    }
    Ok(Some((inputs, pieces)))
}

fn check_param_count(params: &[f64], width: usize, per: &str) -> Result<(), ExportError> {
    if params.len() != width + 1 {
        return Err(ExportError::ParamCount {
            expected: width + 1,
            found: params.len(),
            layout: format!("{width} weights (one {per}), then the bias"),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// ONNX field numbers (onnx/onnx.proto, ONNX 1.23) and enum values.

const MODEL_IR_VERSION: u32 = 1;
const MODEL_PRODUCER_NAME: u32 = 2;
const MODEL_PRODUCER_VERSION: u32 = 3;
const MODEL_GRAPH: u32 = 7;
const MODEL_OPSET_IMPORT: u32 = 8;
const MODEL_METADATA_PROPS: u32 = 14;

const GRAPH_NODE: u32 = 1;
const GRAPH_NAME: u32 = 2;
const GRAPH_INITIALIZER: u32 = 5;
const GRAPH_INPUT: u32 = 11;
const GRAPH_OUTPUT: u32 = 12;
const GRAPH_VALUE_INFO: u32 = 13;
const GRAPH_QUANTIZATION_ANNOTATION: u32 = 14;
const GRAPH_SPARSE_INITIALIZER: u32 = 15;

const NODE_INPUT: u32 = 1;
const NODE_OUTPUT: u32 = 2;
const NODE_NAME: u32 = 3;
const NODE_OP_TYPE: u32 = 4;
const NODE_ATTRIBUTE: u32 = 5;
const NODE_DOMAIN: u32 = 7;

const ATTRIBUTE_NAME: u32 = 1;
const ATTRIBUTE_I: u32 = 3;
const ATTRIBUTE_G: u32 = 6;
const ATTRIBUTE_INTS: u32 = 8;
const ATTRIBUTE_STRINGS: u32 = 9;
const ATTRIBUTE_GRAPHS: u32 = 11;
const ATTRIBUTE_TYPE: u32 = 20;
/// `AttributeProto.AttributeType`.
const ATTRIBUTE_TYPE_INT: u64 = 2;
const ATTRIBUTE_TYPE_INTS: u64 = 7;
const ATTRIBUTE_TYPE_STRINGS: u64 = 8;

const VALUE_INFO_NAME: u32 = 1;
const VALUE_INFO_TYPE: u32 = 2;
const TYPE_TENSOR_TYPE: u32 = 1;
const TENSOR_TYPE_ELEM_TYPE: u32 = 1;
const TENSOR_TYPE_SHAPE: u32 = 2;
const SHAPE_DIM: u32 = 1;
const DIM_VALUE: u32 = 1;
const DIM_PARAM: u32 = 2;

const TENSOR_DIMS: u32 = 1;
const TENSOR_DATA_TYPE: u32 = 2;
const TENSOR_NAME: u32 = 8;
const TENSOR_RAW_DATA: u32 = 9;
const SPARSE_TENSOR_VALUES: u32 = 1;
const SPARSE_TENSOR_INDICES: u32 = 2;
const ANNOTATION_TENSOR_NAME: u32 = 1;
const ANNOTATION_PARAMETER_NAMES: u32 = 2;

const ENTRY_KEY: u32 = 1;
const ENTRY_VALUE: u32 = 2;
const OPSET_DOMAIN: u32 = 1;
const OPSET_VERSION: u32 = 2;

/// `TensorProto.DataType`.
const FLOAT: u64 = 1;
const INT64: u64 = 7;
const STRING: u64 = 8;
const DOUBLE: u64 = 11;

// ---------------------------------------------------------------------------
// Building the graph.

/// Value and node names in use, and a source of fresh `pouwd_` ones.
struct Names {
    taken: HashSet<String>,
}

impl Names {
    /// `base`, or `base_2`, `base_3`… if taken; the name is then taken.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 2u64;
        while self.taken.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.taken.insert(name.clone());
        name
    }
}

/// The nodes and initializers this module adds around the encoder.
#[derive(Default)]
struct Added {
    before: Vec<Message>,
    after: Vec<Message>,
    initializers: Vec<Message>,
}

fn node(names: &mut Names, op: &str, inputs: &[&str], output: &str) -> Message {
    let mut node = Message::default();
    for input in inputs {
        node.push_str(NODE_INPUT, input);
    }
    node.push_str(NODE_OUTPUT, output);
    let name = names.fresh(&format!("pouwd_{}", op.to_ascii_lowercase()));
    node.push_str(NODE_NAME, &name);
    node.push_str(NODE_OP_TYPE, op);
    node
}

fn cast(names: &mut Names, input: &str, output: &str, to: u64) -> Message {
    let mut node = node(names, "Cast", &[input], output);
    let mut attribute = Message::default();
    attribute.push_str(ATTRIBUTE_NAME, "to");
    attribute.push_varint(ATTRIBUTE_I, to);
    attribute.push_varint(ATTRIBUTE_TYPE, ATTRIBUTE_TYPE_INT);
    node.push_message(NODE_ATTRIBUTE, &attribute);
    node
}

/// A double initializer with fresh name from `base`; returns its name.
fn initializer(
    names: &mut Names,
    added: &mut Added,
    base: &str,
    dims: &[u64],
    values: &[f64],
) -> String {
    let name = names.fresh(base);
    let mut tensor = Message::default();
    for &dim in dims {
        tensor.push_varint(TENSOR_DIMS, dim);
    }
    tensor.push_varint(TENSOR_DATA_TYPE, DOUBLE);
    tensor.push_str(TENSOR_NAME, &name);
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor.push_bytes(TENSOR_RAW_DATA, raw);
    added.initializers.push(tensor);
    name
}

fn int_attribute(name: &str, value: i64) -> Message {
    let mut attribute = Message::default();
    attribute.push_str(ATTRIBUTE_NAME, name);
    attribute.push_varint(ATTRIBUTE_I, value as u64);
    attribute.push_varint(ATTRIBUTE_TYPE, ATTRIBUTE_TYPE_INT);
    attribute
}

/// An int64 initializer with fresh name from `base`; returns its name.
fn int64_initializer(names: &mut Names, added: &mut Added, base: &str, values: &[i64]) -> String {
    let name = names.fresh(base);
    let mut tensor = Message::default();
    tensor.push_varint(TENSOR_DIMS, values.len() as u64);
    tensor.push_varint(TENSOR_DATA_TYPE, INT64);
    tensor.push_str(TENSOR_NAME, &name);
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor.push_bytes(TENSOR_RAW_DATA, raw);
    added.initializers.push(tensor);
    name
}

/// `Gather(input, indices, axis = 1)`: the columns `indices` of `input`.
fn gather_columns(
    names: &mut Names,
    added: &mut Added,
    input: &str,
    indices: &[i64],
    output: &str,
) {
    let indices = int64_initializer(names, added, "pouwd_columns", indices);
    let mut gather = node(names, "Gather", &[input, &indices], output);
    gather.push_message(NODE_ATTRIBUTE, &int_attribute("axis", 1));
    added.before.push(gather);
}

/// Nodes from the graph's inputs to the raw features in double, `[batch,
/// d]` in the model's feature order; returns the name of those. With text
/// columns: each numeric run gathered from the cast `features`, each text
/// column gathered from `text`, mapped to its category's index by a
/// `LabelEncoder` (-1 for a value no category names), compared with
/// `0..categories` (so an unknown value is all zeros) and cast; then
/// everything concatenated.
fn raw_features(names: &mut Names, added: &mut Added, model: &GraphModel) -> String {
    let raw = names.fresh("pouwd_features_f64");
    let layout = model
        .feature_sources
        .and_then(|sources| layout(sources).ok().flatten());
    let Some((inputs, pieces)) = layout else {
        added.before.push(cast(names, INPUT_NAME, &raw, DOUBLE));
        return raw;
    };
    let numeric = names.fresh("pouwd_numeric_f64");
    if !inputs.features.is_empty() {
        added.before.push(cast(names, INPUT_NAME, &numeric, DOUBLE));
    }
    let mut parts = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match piece {
            Piece::Numeric(columns) => {
                let part = names.fresh("pouwd_numeric_part");
                let columns: Vec<i64> = columns.iter().map(|&c| c as i64).collect();
                gather_columns(names, added, &numeric, &columns, &part);
                parts.push(part);
            }
            Piece::Text { index, categories } => {
                let cells = names.fresh("pouwd_text_cells");
                gather_columns(names, added, TEXT_INPUT_NAME, &[index as i64], &cells);
                let codes = names.fresh("pouwd_text_codes");
                let mut encoder = node(names, "LabelEncoder", &[&cells], &codes);
                encoder.push_str(NODE_DOMAIN, ML_DOMAIN);
                let mut keys = Message::default();
                keys.push_str(ATTRIBUTE_NAME, "keys_strings");
                for category in &categories {
                    keys.push_str(ATTRIBUTE_STRINGS, category);
                }
                keys.push_varint(ATTRIBUTE_TYPE, ATTRIBUTE_TYPE_STRINGS);
                let mut values = Message::default();
                values.push_str(ATTRIBUTE_NAME, "values_int64s");
                for code in 0..categories.len() {
                    values.push_varint(ATTRIBUTE_INTS, code as u64);
                }
                values.push_varint(ATTRIBUTE_TYPE, ATTRIBUTE_TYPE_INTS);
                encoder.push_message(NODE_ATTRIBUTE, &keys);
                encoder.push_message(NODE_ATTRIBUTE, &values);
                encoder.push_message(NODE_ATTRIBUTE, &int_attribute("default_int64", -1));
                added.before.push(encoder);
                let range: Vec<i64> = (0..categories.len() as i64).collect();
                let range = int64_initializer(names, added, "pouwd_category_codes", &range);
                let hits = names.fresh("pouwd_one_hot");
                added
                    .before
                    .push(node(names, "Equal", &[&codes, &range], &hits));
                let part = names.fresh("pouwd_one_hot_f64");
                added.before.push(cast(names, &hits, &part, DOUBLE));
                parts.push(part);
            }
        }
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let mut concat = node(names, "Concat", &parts, &raw);
    concat.push_message(NODE_ATTRIBUTE, &int_attribute("axis", 1));
    added.before.push(concat);
    raw
}

/// Nodes from the graph's inputs to the standardised rows in double;
/// returns the name of those.
fn standardise(names: &mut Names, added: &mut Added, model: &GraphModel) -> String {
    let scaling = model.feature_scaling;
    let d = scaling.len() as u64;
    let means: Vec<f64> = scaling.iter().map(|s| s.mean).collect();
    let stds: Vec<f64> = scaling.iter().map(|s| s.std).collect();
    let mean = initializer(names, added, "pouwd_feature_mean", &[d], &means);
    let std = initializer(names, added, "pouwd_feature_std", &[d], &stds);
    let raw = raw_features(names, added, model);
    let centred = names.fresh("pouwd_centred");
    let standardised = names.fresh("pouwd_standardised_f64");
    added
        .before
        .push(node(names, "Sub", &[&raw, &mean], &centred));
    added
        .before
        .push(node(names, "Div", &[&centred, &std], &standardised));
    standardised
}

/// Nodes from the head's double `[batch, width]` input to the float32
/// `prediction`.
fn head(names: &mut Names, added: &mut Added, source: &str, model: &GraphModel) {
    let (weights, bias) = model.params.split_at(model.params.len() - 1);
    let width = weights.len() as u64;
    let w = initializer(names, added, "pouwd_weights", &[width, 1], weights);
    let b = initializer(names, added, "pouwd_bias", &[1], bias);
    let product = names.fresh("pouwd_weighted_sum");
    let y_std = names.fresh("pouwd_prediction_standardised");
    added
        .after
        .push(node(names, "MatMul", &[source, &w], &product));
    added
        .after
        .push(node(names, "Add", &[&product, &b], &y_std));
    unstandardise(names, added, &y_std, model);
}

/// Nodes from the standardised double prediction `y_std` `[batch, 1]` to
/// the float32 `prediction` in the target's units.
fn unstandardise(names: &mut Names, added: &mut Added, y_std: &str, model: &GraphModel) {
    let target = model.target_scaling;
    let t_std = initializer(names, added, "pouwd_target_std", &[1], &[target.std]);
    let t_mean = initializer(names, added, "pouwd_target_mean", &[1], &[target.mean]);
    let scaled = names.fresh("pouwd_prediction_scaled");
    let y = names.fresh("pouwd_prediction_f64");
    added
        .after
        .push(node(names, "Mul", &[y_std, &t_std], &scaled));
    added
        .after
        .push(node(names, "Add", &[&scaled, &t_mean], &y));
    added.after.push(cast(names, &y, OUTPUT_NAME, FLOAT));
}

/// Nodes from the standardised rows `source` `[batch, d]` through the
/// `mlp` head with `hidden` units (params `[W1 (H×d row-major), b1, w2,
/// b2]`, as `model::mlp` lays them out) to the float32 `prediction`:
/// `MatMul(z, W1ᵀ) + b1 → Relu → MatMul(·, w2) + b2`.
fn mlp_head(names: &mut Names, added: &mut Added, source: &str, model: &GraphModel, hidden: usize) {
    let d = model.feature_scaling.len();
    let params = model.params;
    let (w1, rest) = params.split_at(hidden * d);
    let (b1, rest) = rest.split_at(hidden);
    let (w2, b2) = rest.split_at(hidden);
    // W1 is stored unit by unit; MatMul wants it input by input.
    let w1t: Vec<f64> = (0..d)
        .flat_map(|j| (0..hidden).map(move |u| (u, j)))
        .map(|(u, j)| w1[u * d + j])
        .collect();
    let (h, dd) = (hidden as u64, d as u64);
    let w1 = initializer(names, added, "pouwd_w1_transposed", &[dd, h], &w1t);
    let b1 = initializer(names, added, "pouwd_b1", &[h], b1);
    let w2 = initializer(names, added, "pouwd_w2", &[h, 1], w2);
    let b2 = initializer(names, added, "pouwd_b2", &[1], b2);
    let pre = names.fresh("pouwd_hidden_sum");
    let biased = names.fresh("pouwd_hidden_biased");
    let active = names.fresh("pouwd_hidden");
    let product = names.fresh("pouwd_output_sum");
    let y_std = names.fresh("pouwd_prediction_standardised");
    added
        .after
        .push(node(names, "MatMul", &[source, &w1], &pre));
    added.after.push(node(names, "Add", &[&pre, &b1], &biased));
    added.after.push(node(names, "Relu", &[&biased], &active));
    added
        .after
        .push(node(names, "MatMul", &[&active, &w2], &product));
    added
        .after
        .push(node(names, "Add", &[&product, &b2], &y_std));
    unstandardise(names, added, &y_std, model);
}

#[derive(Clone, Debug, PartialEq)]
enum Dim {
    Value(i64),
    Param(String),
    Unknown,
}

/// A tensor value's element type and shape, as far as the graph says.
#[derive(Clone, Debug, PartialEq)]
struct TensorInfo {
    elem_type: Option<u64>,
    dims: Option<Vec<Dim>>,
}

fn value_info(name: &str, elem_type: u64, dims: &[Dim]) -> Message {
    let mut shape = Message::default();
    for dim in dims {
        let mut entry = Message::default();
        match dim {
            Dim::Value(v) => entry.push_varint(DIM_VALUE, *v as u64),
            Dim::Param(p) => entry.push_str(DIM_PARAM, p),
            Dim::Unknown => {}
        }
        shape.push_message(SHAPE_DIM, &entry);
    }
    let mut tensor = Message::default();
    tensor.push_varint(TENSOR_TYPE_ELEM_TYPE, elem_type);
    tensor.push_message(TENSOR_TYPE_SHAPE, &shape);
    let mut ty = Message::default();
    ty.push_message(TYPE_TENSOR_TYPE, &tensor);
    let mut info = Message::default();
    info.push_str(VALUE_INFO_NAME, name);
    info.push_message(VALUE_INFO_TYPE, &ty);
    info
}

/// The graph's inputs and its output: `features` [batch, d], or with text
/// columns `features` [batch, numeric columns] (when there are any) and
/// `text` [batch, text columns].
fn io_value_infos(model: &GraphModel) -> (Vec<Message>, Message) {
    let batch = || Dim::Param("batch".to_string());
    let d = model.feature_scaling.len();
    let inputs = match model
        .feature_sources
        .and_then(|sources| text_inputs(sources).ok().flatten())
    {
        None => vec![value_info(
            INPUT_NAME,
            FLOAT,
            &[batch(), Dim::Value(d as i64)],
        )],
        Some(text) => {
            let mut inputs = Vec::new();
            if !text.features.is_empty() {
                let width = Dim::Value(text.features.len() as i64);
                inputs.push(value_info(INPUT_NAME, FLOAT, &[batch(), width]));
            }
            let width = Dim::Value(text.text.len() as i64);
            inputs.push(value_info(TEXT_INPUT_NAME, STRING, &[batch(), width]));
            inputs
        }
    };
    (
        inputs,
        value_info(OUTPUT_NAME, FLOAT, &[batch(), Dim::Value(1)]),
    )
}

/// Whether the graph of `model` one-hot encodes text (and so imports
/// [`ML_DOMAIN`]).
fn encodes_text(model: &GraphModel) -> bool {
    model
        .feature_sources
        .is_some_and(|sources| sources.iter().any(|s| s.category.is_some()))
}

fn ml_opset() -> Message {
    let mut opset = Message::default();
    opset.push_str(OPSET_DOMAIN, ML_DOMAIN);
    opset.push_varint(OPSET_VERSION, ML_OPSET);
    opset
}

fn metadata(model: &GraphModel) -> Vec<Message> {
    model
        .metadata
        .iter()
        .map(|(key, value)| {
            let mut entry = Message::default();
            entry.push_str(ENTRY_KEY, key);
            entry.push_str(ENTRY_VALUE, value);
            entry
        })
        .collect()
}

fn push_producer(out: &mut Message) {
    out.push_str(MODEL_PRODUCER_NAME, "pouwd");
    out.push_str(MODEL_PRODUCER_VERSION, env!("CARGO_PKG_VERSION"));
}

fn linear_model(model: &GraphModel) -> Message {
    standalone_model(model, "pouwd_linear", |names, added, z| {
        head(names, added, z, model)
    })
}

/// A graph without an encoder: standardisation, then the nodes `head`
/// adds from the standardised rows to `prediction`.
fn standalone_model(
    model: &GraphModel,
    graph_name: &str,
    head: impl FnOnce(&mut Names, &mut Added, &str),
) -> Message {
    let mut names = Names {
        taken: [INPUT_NAME, TEXT_INPUT_NAME, OUTPUT_NAME]
            .map(str::to_string)
            .into(),
    };
    let mut added = Added::default();
    let z = standardise(&mut names, &mut added, model);
    head(&mut names, &mut added, &z);
    let mut graph = Message::default();
    for node in added.before.iter().chain(&added.after) {
        graph.push_message(GRAPH_NODE, node);
    }
    graph.push_str(GRAPH_NAME, graph_name);
    for tensor in &added.initializers {
        graph.push_message(GRAPH_INITIALIZER, tensor);
    }
    let (inputs, output) = io_value_infos(model);
    for input in &inputs {
        graph.push_message(GRAPH_INPUT, input);
    }
    graph.push_message(GRAPH_OUTPUT, &output);

    let mut out = Message::default();
    out.push_varint(MODEL_IR_VERSION, IR_VERSION);
    push_producer(&mut out);
    out.push_message(MODEL_GRAPH, &graph);
    let mut opset = Message::default();
    opset.push_str(OPSET_DOMAIN, "");
    opset.push_varint(OPSET_VERSION, OPSET);
    out.push_message(MODEL_OPSET_IMPORT, &opset);
    if encodes_text(model) {
        out.push_message(MODEL_OPSET_IMPORT, &ml_opset());
    }
    for entry in metadata(model) {
        out.push_message(MODEL_METADATA_PROPS, &entry);
    }
    out
}

fn malformed(context: &str, reason: impl ToString) -> ExportError {
    ExportError::Malformed {
        context: context.to_string(),
        reason: reason.to_string(),
    }
}

fn parse(bytes: &[u8], context: &str) -> Result<Message, ExportError> {
    Message::parse(bytes).map_err(|e| malformed(context, e))
}

/// The name and tensor type of a `ValueInfoProto`.
fn read_value_info(info: &Message, context: &str) -> Result<(String, TensorInfo), ExportError> {
    let name = info
        .string(VALUE_INFO_NAME)
        .map_err(|e| malformed(context, e))?
        .unwrap_or_default();
    let context = format!("{context} ({name:?})");
    let mut tensor = TensorInfo {
        elem_type: None,
        dims: None,
    };
    let wire = |e| malformed(&context, e);
    let Some(ty) = info.merged(VALUE_INFO_TYPE).map_err(wire)? else {
        return Ok((name, tensor));
    };
    let ty = parse(&ty, &context)?;
    let Some(tensor_type) = ty.merged(TYPE_TENSOR_TYPE).map_err(wire)? else {
        return Ok((name, tensor));
    };
    let tensor_type = parse(&tensor_type, &context)?;
    tensor.elem_type = tensor_type.varint(TENSOR_TYPE_ELEM_TYPE).map_err(wire)?;
    if let Some(shape) = tensor_type.merged(TENSOR_TYPE_SHAPE).map_err(wire)? {
        let shape = parse(&shape, &context)?;
        let mut dims = Vec::new();
        for dim in shape.bytes(SHAPE_DIM).map_err(wire)? {
            let dim = parse(dim, &context)?;
            // `dim_value` and `dim_param` are a oneof: the last one wins.
            let last = dim
                .fields
                .iter()
                .rev()
                .find(|f| f.number == DIM_VALUE || f.number == DIM_PARAM);
            dims.push(match last {
                Some(Field {
                    number: DIM_VALUE,
                    value: Value::Varint(v),
                }) => Dim::Value(*v as i64),
                Some(Field {
                    number: DIM_PARAM,
                    value: Value::Bytes(p),
                }) => Dim::Param(String::from_utf8_lossy(p).into_owned()),
                Some(_) => return Err(malformed(&context, "a dimension of the wrong wire type")),
                None => Dim::Unknown,
            });
        }
        tensor.dims = Some(dims);
    }
    Ok((name, tensor))
}

fn elem_name(elem_type: Option<u64>) -> String {
    match elem_type {
        Some(1) => "float32".to_string(),
        Some(7) => "int64".to_string(),
        Some(8) => "string".to_string(),
        Some(10) => "float16".to_string(),
        Some(11) => "float64".to_string(),
        Some(16) => "bfloat16".to_string(),
        Some(other) => format!("element type {other}"),
        None => "of unknown element type".to_string(),
    }
}

fn describe(tensor: &TensorInfo) -> String {
    let shape = match &tensor.dims {
        None => "of unknown shape".to_string(),
        Some(dims) => {
            let dims: Vec<String> = dims
                .iter()
                .map(|d| match d {
                    Dim::Value(v) => v.to_string(),
                    Dim::Param(p) => p.clone(),
                    Dim::Unknown => "?".to_string(),
                })
                .collect();
            format!("of shape [{}]", dims.join(", "))
        }
    };
    format!("a {} tensor {shape}", elem_name(tensor.elem_type))
}

/// The fixed width of a float32 `[batch, width]` tensor with a dynamic batch axis.
fn batch_width(tensor: &TensorInfo) -> Option<usize> {
    if tensor.elem_type != Some(FLOAT) {
        return None;
    }
    match tensor.dims.as_deref()? {
        [Dim::Param(_) | Dim::Unknown, Dim::Value(width)] if *width > 0 => {
            usize::try_from(*width).ok()
        }
        _ => None,
    }
}

/// Call `f` on every name in `graph` and its subgraphs, letting it change
/// them: value names (node inputs and outputs, initializers, graph inputs,
/// outputs and value_info, quantization annotations) with `true`, node
/// names with `false`.
fn walk_graph(
    graph: &mut Message,
    context: &str,
    depth: usize,
    f: &mut dyn FnMut(bool, &mut String),
) -> Result<(), ExportError> {
    if depth > MAX_SUBGRAPH_DEPTH {
        return Err(ExportError::TooDeep {
            limit: MAX_SUBGRAPH_DEPTH,
        });
    }
    map_messages(graph, GRAPH_NODE, context, "node", &mut |node, context| {
        map_strings(node, NODE_INPUT, context, &mut |s| f(true, s))?;
        map_strings(node, NODE_OUTPUT, context, &mut |s| f(true, s))?;
        map_strings(node, NODE_NAME, context, &mut |s| f(false, s))?;
        map_messages(
            node,
            NODE_ATTRIBUTE,
            context,
            "attribute",
            &mut |attribute, context| {
                map_messages(attribute, ATTRIBUTE_G, context, "g", &mut |g, context| {
                    walk_graph(g, context, depth + 1, &mut *f)
                })?;
                map_messages(
                    attribute,
                    ATTRIBUTE_GRAPHS,
                    context,
                    "graphs",
                    &mut |g, context| walk_graph(g, context, depth + 1, &mut *f),
                )
            },
        )
    })?;
    map_messages(
        graph,
        GRAPH_INITIALIZER,
        context,
        "initializer",
        &mut |t, context| map_strings(t, TENSOR_NAME, context, &mut |s| f(true, s)),
    )?;
    map_messages(
        graph,
        GRAPH_SPARSE_INITIALIZER,
        context,
        "sparse_initializer",
        &mut |sparse, context| {
            for part in [SPARSE_TENSOR_VALUES, SPARSE_TENSOR_INDICES] {
                map_messages(sparse, part, context, "tensor", &mut |t, context| {
                    map_strings(t, TENSOR_NAME, context, &mut |s| f(true, s))
                })?;
            }
            Ok(())
        },
    )?;
    for (number, what) in [
        (GRAPH_INPUT, "input"),
        (GRAPH_OUTPUT, "output"),
        (GRAPH_VALUE_INFO, "value_info"),
    ] {
        map_messages(graph, number, context, what, &mut |info, context| {
            map_strings(info, VALUE_INFO_NAME, context, &mut |s| f(true, s))
        })?;
    }
    map_messages(
        graph,
        GRAPH_QUANTIZATION_ANNOTATION,
        context,
        "quantization_annotation",
        &mut |annotation, context| {
            map_strings(annotation, ANNOTATION_TENSOR_NAME, context, &mut |s| {
                f(true, s)
            })?;
            map_messages(
                annotation,
                ANNOTATION_PARAMETER_NAMES,
                context,
                "quant_parameter_tensor_names",
                &mut |entry, context| map_strings(entry, ENTRY_VALUE, context, &mut |s| f(true, s)),
            )
        },
    )
}

/// Parse every field `number` of `message` as a message, let `f` change
/// it, and store it back.
fn map_messages(
    message: &mut Message,
    number: u32,
    context: &str,
    what: &str,
    f: &mut dyn FnMut(&mut Message, &str) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let fields = message.fields.iter_mut().filter(|f| f.number == number);
    for (index, field) in fields.enumerate() {
        let context = format!("{context}.{what}[{index}]");
        let Value::Bytes(bytes) = &mut field.value else {
            return Err(malformed(&context, "not a length-delimited field"));
        };
        let mut inner = parse(bytes, &context)?;
        f(&mut inner, &context)?;
        *bytes = inner.encode();
    }
    Ok(())
}

/// Let `f` change every string field `number` of `message`.
fn map_strings(
    message: &mut Message,
    number: u32,
    context: &str,
    f: &mut dyn FnMut(&mut String),
) -> Result<(), ExportError> {
    for field in message.fields.iter_mut().filter(|f| f.number == number) {
        let Value::Bytes(bytes) = &mut field.value else {
            return Err(malformed(
                context,
                format!("field {number} is not a string"),
            ));
        };
        let mut text = String::from_utf8(std::mem::take(bytes))
            .map_err(|_| malformed(context, format!("field {number} is not UTF-8")))?;
        f(&mut text);
        *bytes = text.into_bytes();
    }
    Ok(())
}

fn encoder_model(model: &GraphModel, bytes: &[u8]) -> Result<Message, ExportError> {
    let mut encoder = parse(bytes, "ModelProto")?;
    let graph_bytes = encoder
        .merged(MODEL_GRAPH)
        .map_err(|e| malformed("ModelProto", e))?
        .ok_or(ExportError::NoGraph)?;
    let mut graph = parse(&graph_bytes, "graph")?;

    // Every name the encoder uses, and which of them are values.
    let mut taken = HashSet::new();
    let mut values = HashSet::new();
    walk_graph(&mut graph, "graph", 0, &mut |is_value, name| {
        if is_value {
            values.insert(name.clone());
        }
        taken.insert(name.clone());
    })?;

    let (input_name, input) = encoder_input(&graph)?;
    let (output_name, output) = encoder_output(&graph)?;
    let d = model.feature_scaling.len();
    let encoder_d = batch_width(&input).ok_or_else(|| ExportError::EncoderShape {
        role: "input",
        name: input_name.clone(),
        expected: format!(
            "a float32 tensor of shape [batch, {d}] (a dynamic batch axis, then the standardised \
             features)"
        ),
        found: describe(&input),
    })?;
    if encoder_d != d {
        return Err(ExportError::FeatureCount {
            encoder: encoder_d,
            features: d,
        });
    }
    let width = batch_width(&output).ok_or_else(|| ExportError::EncoderShape {
        role: "output",
        name: output_name.clone(),
        expected: "a float32 tensor of shape [batch, width] (a dynamic batch axis, then a fixed \
                   width)"
            .to_string(),
        found: describe(&output),
    })?;
    check_param_count(model.params, width, "per encoder output")?;
    let opsets = check_opsets(&encoder, encodes_text(model))?;

    // The encoder's input gets an internal name, and so does any value of
    // the encoder that has the name of the new graph's input or output.
    let mut names = Names { taken };
    names
        .taken
        .extend([INPUT_NAME, TEXT_INPUT_NAME, OUTPUT_NAME].map(str::to_string));
    let mut renames = std::collections::HashMap::new();
    renames.insert(input_name.clone(), names.fresh("pouwd_standardised"));
    for interface in [INPUT_NAME, TEXT_INPUT_NAME, OUTPUT_NAME] {
        if values.contains(interface) && !renames.contains_key(interface) {
            let internal = names.fresh(&format!("pouwd_encoder_{interface}"));
            renames.insert(interface.to_string(), internal);
        }
    }
    walk_graph(&mut graph, "graph", 0, &mut |is_value, name| {
        if let Some(new) = renames.get(name.as_str()).filter(|_| is_value) {
            *name = new.clone();
        }
    })?;
    let rename = |name: &str| {
        renames
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    };
    let (standardised_f32, embedding) = (rename(&input_name), rename(&output_name));

    let mut added = Added::default();
    let z = standardise(&mut names, &mut added, model);
    added
        .before
        .push(cast(&mut names, &z, &standardised_f32, FLOAT));
    let embedding_f64 = names.fresh("pouwd_embedding_f64");
    added
        .after
        .push(cast(&mut names, &embedding, &embedding_f64, DOUBLE));
    head(&mut names, &mut added, &embedding_f64, model);

    // Graph inputs that are initializers (overridable defaults) stay.
    let initializers = initializer_names(&graph)?;
    let mut kept_inputs = Vec::new();
    for info in graph
        .bytes(GRAPH_INPUT)
        .map_err(|e| malformed("graph", e))?
    {
        let (name, _) = read_value_info(&parse(info, "graph.input")?, "graph.input")?;
        if initializers.contains(&name) {
            kept_inputs.push(info.to_vec());
        }
    }

    let mut out_graph = Message::default();
    for node in &added.before {
        out_graph.push_message(GRAPH_NODE, node);
    }
    out_graph.fields.extend(
        graph
            .fields
            .into_iter()
            .filter(|f| ![GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_NAME].contains(&f.number)),
    );
    for node in &added.after {
        out_graph.push_message(GRAPH_NODE, node);
    }
    out_graph.push_str(GRAPH_NAME, "pouwd_onnx_linear");
    for tensor in &added.initializers {
        out_graph.push_message(GRAPH_INITIALIZER, tensor);
    }
    let (input_infos, output_info) = io_value_infos(model);
    for info in &input_infos {
        out_graph.push_message(GRAPH_INPUT, info);
    }
    for info in kept_inputs {
        out_graph.push_bytes(GRAPH_INPUT, info);
    }
    out_graph.push_message(GRAPH_OUTPUT, &output_info);

    encoder.fields.retain(|f| {
        ![
            MODEL_PRODUCER_NAME,
            MODEL_PRODUCER_VERSION,
            MODEL_GRAPH,
            MODEL_OPSET_IMPORT,
            MODEL_METADATA_PROPS,
        ]
        .contains(&f.number)
    });
    push_producer(&mut encoder);
    encoder.push_message(MODEL_GRAPH, &out_graph);
    for opset in opsets {
        encoder.push_bytes(MODEL_OPSET_IMPORT, opset);
    }
    for entry in metadata(model) {
        encoder.push_message(MODEL_METADATA_PROPS, &entry);
    }
    Ok(encoder)
}

fn initializer_names(graph: &Message) -> Result<HashSet<String>, ExportError> {
    let mut names = HashSet::new();
    for tensor in graph
        .bytes(GRAPH_INITIALIZER)
        .map_err(|e| malformed("graph", e))?
    {
        let tensor = parse(tensor, "graph.initializer")?;
        if let Some(name) = tensor
            .string(TENSOR_NAME)
            .map_err(|e| malformed("graph.initializer", e))?
        {
            names.insert(name);
        }
    }
    for sparse in graph
        .bytes(GRAPH_SPARSE_INITIALIZER)
        .map_err(|e| malformed("graph", e))?
    {
        let sparse = parse(sparse, "graph.sparse_initializer")?;
        let context = "graph.sparse_initializer.values";
        if let Some(values) = sparse
            .merged(SPARSE_TENSOR_VALUES)
            .map_err(|e| malformed(context, e))?
        {
            let values = parse(&values, context)?;
            if let Some(name) = values
                .string(TENSOR_NAME)
                .map_err(|e| malformed(context, e))?
            {
                names.insert(name);
            }
        }
    }
    Ok(names)
}

fn value_infos(graph: &Message, number: u32) -> Result<Vec<(String, TensorInfo)>, ExportError> {
    let what = if number == GRAPH_INPUT {
        "graph.input"
    } else {
        "graph.output"
    };
    graph
        .bytes(number)
        .map_err(|e| malformed("graph", e))?
        .into_iter()
        .enumerate()
        .map(|(i, info)| {
            let context = format!("{what}[{i}]");
            read_value_info(&parse(info, &context)?, &context)
        })
        .collect()
}

fn encoder_input(graph: &Message) -> Result<(String, TensorInfo), ExportError> {
    let initializers = initializer_names(graph)?;
    let mut inputs: Vec<(String, TensorInfo)> = value_infos(graph, GRAPH_INPUT)?
        .into_iter()
        .filter(|(name, _)| !initializers.contains(name))
        .collect();
    if inputs.len() != 1 {
        return Err(ExportError::EncoderInputs {
            found: inputs.into_iter().map(|(name, _)| name).collect(),
        });
    }
    Ok(inputs.remove(0))
}

fn encoder_output(graph: &Message) -> Result<(String, TensorInfo), ExportError> {
    let mut outputs = value_infos(graph, GRAPH_OUTPUT)?;
    if outputs.len() != 1 {
        return Err(ExportError::EncoderOutputs {
            found: outputs.into_iter().map(|(name, _)| name).collect(),
        });
    }
    Ok(outputs.remove(0))
}

/// The encoder's opset imports, with the default domain added at [`OPSET`]
/// when the encoder does not import it; refused below [`MIN_ENCODER_OPSET`].
/// For a graph that encodes text (`text`), [`ML_DOMAIN`] too: added at
/// [`ML_OPSET`] when the encoder does not import it, refused below it.
fn check_opsets(encoder: &Message, text: bool) -> Result<Vec<Vec<u8>>, ExportError> {
    let context = "ModelProto.opset_import";
    let mut opsets = Vec::new();
    let mut default_domain = false;
    let mut ml_domain = false;
    for bytes in encoder
        .bytes(MODEL_OPSET_IMPORT)
        .map_err(|e| malformed(context, e))?
    {
        let opset = parse(bytes, context)?;
        let domain = opset
            .string(OPSET_DOMAIN)
            .map_err(|e| malformed(context, e))?
            .unwrap_or_default();
        let version = || -> Result<u64, ExportError> {
            Ok(opset
                .varint(OPSET_VERSION)
                .map_err(|e| malformed(context, e))?
                .unwrap_or(0))
        };
        if domain.is_empty() || domain == "ai.onnx" {
            default_domain = true;
            let version = version()?;
            if version < MIN_ENCODER_OPSET {
                return Err(ExportError::Opset {
                    found: version,
                    minimum: MIN_ENCODER_OPSET,
                });
            }
        } else if domain == ML_DOMAIN && text {
            ml_domain = true;
            let version = version()?;
            if version < ML_OPSET {
                return Err(ExportError::MlOpset { found: version });
            }
        }
        opsets.push(bytes.to_vec());
    }
    if !default_domain {
        let mut opset = Message::default();
        opset.push_str(OPSET_DOMAIN, "");
        opset.push_varint(OPSET_VERSION, OPSET);
        opsets.push(opset.encode());
    }
    if text && !ml_domain {
        opsets.push(ml_opset().encode());
    }
    Ok(opsets)
}

// ---------------------------------------------------------------------------
// The protobuf wire format, as much as ONNX needs: a message is a list of
// fields, each a field number and one of four wire values. Groups (wire
// types 3 and 4) are refused: onnx.proto has none.

/// One field's value on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: a string, bytes, an embedded message or a packed array.
    Bytes(Vec<u8>),
    /// Wire type 5.
    Fixed32(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Field {
    number: u32,
    value: Value,
}

/// A protobuf message as its fields, in wire order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Message {
    fields: Vec<Field>,
}

/// Field numbers run from 1 to 2^29 - 1.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

fn read_varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let start = *at;
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = bytes.get(*at) else {
            return Err(format!("at byte {start}: truncated varint"));
        };
        *at += 1;
        if shift == 63 && byte > 1 {
            return Err(format!("at byte {start}: varint longer than 64 bits"));
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(format!("at byte {start}: varint longer than 64 bits"))
}

fn take<'b>(bytes: &'b [u8], at: &mut usize, len: u64, what: &str) -> Result<&'b [u8], String> {
    let start = *at;
    let slice = usize::try_from(len)
        .ok()
        .and_then(|len| start.checked_add(len))
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| {
            format!(
                "at byte {start}: {what} of {len} bytes, but only {} are left",
                bytes.len() - start
            )
        })?;
    *at += slice.len();
    Ok(slice)
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

impl Message {
    fn parse(bytes: &[u8]) -> Result<Message, String> {
        let mut fields = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let start = at;
            let key = read_varint(bytes, &mut at)?;
            let number = key >> 3;
            if number == 0 || number > MAX_FIELD_NUMBER {
                return Err(format!("at byte {start}: field number {number}"));
            }
            let value = match key & 7 {
                0 => Value::Varint(read_varint(bytes, &mut at)?),
                1 => {
                    let mut le = [0u8; 8];
                    le.copy_from_slice(take(bytes, &mut at, 8, "a 64-bit field")?);
                    Value::Fixed64(u64::from_le_bytes(le))
                }
                2 => {
                    let len = read_varint(bytes, &mut at)?;
                    Value::Bytes(take(bytes, &mut at, len, "a length-delimited field")?.to_vec())
                }
                5 => {
                    let mut le = [0u8; 4];
                    le.copy_from_slice(take(bytes, &mut at, 4, "a 32-bit field")?);
                    Value::Fixed32(u32::from_le_bytes(le))
                }
                wire => {
                    return Err(format!(
                    "at byte {start}: field {number} has wire type {wire}, which ONNX does not use"
                ))
                }
            };
            fields.push(Field {
                number: number as u32,
                value,
            });
        }
        Ok(Message { fields })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        for field in &self.fields {
            let key = u64::from(field.number) << 3;
            match &field.value {
                Value::Varint(v) => {
                    write_varint(out, key);
                    write_varint(out, *v);
                }
                Value::Fixed64(v) => {
                    write_varint(out, key | 1);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Value::Bytes(bytes) => {
                    write_varint(out, key | 2);
                    write_varint(out, bytes.len() as u64);
                    out.extend_from_slice(bytes);
                }
                Value::Fixed32(v) => {
                    write_varint(out, key | 5);
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }

    fn push(&mut self, number: u32, value: Value) {
        self.fields.push(Field { number, value });
    }

    fn push_varint(&mut self, number: u32, value: u64) {
        self.push(number, Value::Varint(value));
    }

    fn push_bytes(&mut self, number: u32, bytes: Vec<u8>) {
        self.push(number, Value::Bytes(bytes));
    }

    fn push_str(&mut self, number: u32, text: &str) {
        self.push_bytes(number, text.as_bytes().to_vec());
    }

    fn push_message(&mut self, number: u32, message: &Message) {
        self.push_bytes(number, message.encode());
    }

    /// Every value of the length-delimited field `number`, in order.
    fn bytes(&self, number: u32) -> Result<Vec<&[u8]>, String> {
        self.fields
            .iter()
            .filter(|f| f.number == number)
            .map(|f| match &f.value {
                Value::Bytes(bytes) => Ok(bytes.as_slice()),
                _ => Err(format!("field {number} is not length-delimited")),
            })
            .collect()
    }

    /// A singular embedded message: protobuf merges repeated occurrences,
    /// which is what parsing their concatenation does.
    fn merged(&self, number: u32) -> Result<Option<Vec<u8>>, String> {
        let parts = self.bytes(number)?;
        Ok((!parts.is_empty()).then(|| parts.concat()))
    }

    /// A singular string: the last occurrence wins.
    fn string(&self, number: u32) -> Result<Option<String>, String> {
        match self.bytes(number)?.last() {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.to_vec())
                .map(Some)
                .map_err(|_| format!("field {number} is not UTF-8")),
        }
    }

    /// A singular varint: the last occurrence wins.
    fn varint(&self, number: u32) -> Result<Option<u64>, String> {
        let mut found = None;
        for field in self.fields.iter().filter(|f| f.number == number) {
            match field.value {
                Value::Varint(v) => found = Some(v),
                _ => return Err(format!("field {number} is not a varint")),
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENCODER: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/transformer_encoder.onnx"
    ));

    fn scaling(d: usize) -> Vec<Scaling> {
        (0..d)
            .map(|j| Scaling {
                mean: j as f64 * 1.5,
                std: 0.5 + j as f64,
            })
            .collect()
    }

    const TARGET: Scaling = Scaling {
        mean: 150.0,
        std: 77.0,
    };

    fn linear(scaling: &[Scaling], params: &[f64]) -> Result<Vec<u8>, ExportError> {
        to_onnx(&GraphModel {
            feature_scaling: scaling,
            feature_sources: None,
            target_scaling: TARGET,
            params,
            encoder: None,
            metadata: &[],
        })
    }

    fn with_encoder(d: usize, params: &[f64], encoder: &[u8]) -> Result<Vec<u8>, ExportError> {
        to_onnx(&GraphModel {
            feature_scaling: &scaling(d),
            feature_sources: None,
            target_scaling: TARGET,
            params,
            encoder: Some(encoder),
            metadata: &[],
        })
    }

    /// A small encoder: float32 `x` [batch, 3] in; each output an Identity
    /// of `x`; extra nodes and value names as given.
    fn tiny_encoder(outputs: &[&str], extra: &[Message], subgraph: Option<Message>) -> Vec<u8> {
        let mut graph = Message::default();
        for extra in extra {
            graph.push_message(GRAPH_NODE, extra);
        }
        for output in outputs {
            let mut identity = identity(&format!("to_{output}"), "x", output);
            if let Some(g) = &subgraph {
                let mut attribute = Message::default();
                attribute.push_str(ATTRIBUTE_NAME, "body");
                attribute.push_message(ATTRIBUTE_G, g);
                identity.push_message(NODE_ATTRIBUTE, &attribute);
            }
            graph.push_message(GRAPH_NODE, &identity);
        }
        graph.push_str(GRAPH_NAME, "tiny");
        let batch = Dim::Param("n".to_string());
        graph.push_message(
            GRAPH_INPUT,
            &value_info("x", FLOAT, &[batch.clone(), Dim::Value(3)]),
        );
        for output in outputs {
            graph.push_message(
                GRAPH_OUTPUT,
                &value_info(output, FLOAT, &[batch.clone(), Dim::Value(3)]),
            );
        }
        let mut model = Message::default();
        model.push_varint(MODEL_IR_VERSION, 9);
        model.push_message(MODEL_GRAPH, &graph);
        let mut opset = Message::default();
        opset.push_str(OPSET_DOMAIN, "");
        opset.push_varint(OPSET_VERSION, 17);
        model.push_message(MODEL_OPSET_IMPORT, &opset);
        // A field this module does not know, to be copied through.
        model.push(999, Value::Fixed32(0xdead_beef));
        model.encode()
    }

    /// An Identity node named `name`.
    fn identity(name: &str, input: &str, output: &str) -> Message {
        let mut node = Message::default();
        node.push_str(NODE_INPUT, input);
        node.push_str(NODE_OUTPUT, output);
        node.push_str(NODE_NAME, name);
        node.push_str(NODE_OP_TYPE, "Identity");
        node
    }

    fn graph_of(bytes: &[u8]) -> (Message, Message) {
        let model = Message::parse(bytes).unwrap();
        let graph = Message::parse(&model.merged(MODEL_GRAPH).unwrap().unwrap()).unwrap();
        (model, graph)
    }

    fn strings(message: &Message, number: u32) -> Vec<String> {
        message
            .bytes(number)
            .unwrap()
            .into_iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    fn nodes(graph: &Message) -> Vec<Message> {
        graph
            .bytes(GRAPH_NODE)
            .unwrap()
            .into_iter()
            .map(|b| Message::parse(b).unwrap())
            .collect()
    }

    #[test]
    fn varints_round_trip_at_their_edges() {
        for value in [0, 1, 127, 128, 300, 1 << 35, u64::MAX - 1, u64::MAX] {
            let mut bytes = Vec::new();
            write_varint(&mut bytes, value);
            let mut at = 0;
            assert_eq!(read_varint(&bytes, &mut at), Ok(value));
            assert_eq!(at, bytes.len());
        }
        let mut at = 0;
        assert_eq!(
            read_varint(&[0xff; 10], &mut at),
            Err("at byte 0: varint longer than 64 bits".to_string())
        );
        let mut at = 0;
        assert!(read_varint(&[0x80, 0x80], &mut at)
            .unwrap_err()
            .contains("truncated varint"));
    }

    #[test]
    fn messages_round_trip_every_wire_type() {
        let mut inner = Message::default();
        inner.push_str(1, "name");
        let mut message = Message::default();
        message.push_varint(1, 42);
        message.push(2, Value::Fixed64(0x0102_0304_0506_0708));
        message.push_message(3, &inner);
        message.push(4, Value::Fixed32(7));
        message.push_varint(MAX_FIELD_NUMBER as u32, u64::MAX);
        message.push_bytes(5, Vec::new());
        let bytes = message.encode();
        let parsed = Message::parse(&bytes).unwrap();
        assert_eq!(parsed, message);
        assert_eq!(parsed.encode(), bytes);
        assert_eq!(parsed.varint(1), Ok(Some(42)));
        assert_eq!(Message::parse(parsed.bytes(3).unwrap()[0]).unwrap(), inner);
        assert!(parsed.string(1).is_err(), "field 1 is a varint");

        // Every strict prefix that cuts a field is refused, never misread.
        let mut cut = 0;
        for len in 0..bytes.len() {
            if Message::parse(&bytes[..len]).is_err() {
                cut += 1;
            }
        }
        // All but the six that end where a field ends.
        assert_eq!(cut, bytes.len() - 6);
        let err = Message::parse(&[0x0a, 0x05, b'a']).unwrap_err();
        assert_eq!(
            err,
            "at byte 2: a length-delimited field of 5 bytes, but only 1 are left"
        );
        assert!(Message::parse(&[0x0b]).unwrap_err().contains("wire type 3"));
        assert!(Message::parse(&[0x00, 0x00])
            .unwrap_err()
            .contains("field number 0"));
    }

    #[test]
    fn the_encoder_file_round_trips_byte_for_byte() {
        let model = Message::parse(ENCODER).unwrap();
        assert_eq!(model.encode(), ENCODER);
        let graph_bytes = model.merged(MODEL_GRAPH).unwrap().unwrap();
        let mut graph = Message::parse(&graph_bytes).unwrap();
        // A walk that changes nothing writes the same graph back.
        let mut count = 0;
        walk_graph(&mut graph, "graph", 0, &mut |_, _| count += 1).unwrap();
        assert!(count > 100, "{count} names");
        assert_eq!(graph.encode(), graph_bytes);
        let (name, input) = encoder_input(&graph).unwrap();
        assert_eq!(name, "features");
        assert_eq!(batch_width(&input), Some(10));
        let (name, output) = encoder_output(&graph).unwrap();
        assert_eq!(name, "embedding");
        assert_eq!(describe(&output), "a float32 tensor of shape [batch, 16]");
    }

    #[test]
    fn a_linear_graph_has_the_interface_and_the_values() {
        let scaling = scaling(3);
        let params = [0.5, -1.25, 2.0, 0.125];
        let metadata = [("pouwd.kind".to_string(), "linear".to_string())];
        let bytes = to_onnx(&GraphModel {
            feature_scaling: &scaling,
            feature_sources: None,
            target_scaling: TARGET,
            params: &params,
            encoder: None,
            metadata: &metadata,
        })
        .unwrap();
        let (model, graph) = graph_of(&bytes);
        assert_eq!(model.varint(MODEL_IR_VERSION), Ok(Some(IR_VERSION)));
        let entry = Message::parse(model.bytes(MODEL_METADATA_PROPS).unwrap()[0]).unwrap();
        assert_eq!(entry.string(ENTRY_KEY), Ok(Some("pouwd.kind".into())));
        let inputs = value_infos(&graph, GRAPH_INPUT).unwrap();
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0].0, INPUT_NAME);
        assert_eq!(
            describe(&inputs[0].1),
            "a float32 tensor of shape [batch, 3]"
        );
        let outputs = value_infos(&graph, GRAPH_OUTPUT).unwrap();
        assert_eq!(outputs[0].0, OUTPUT_NAME);
        assert_eq!(
            describe(&outputs[0].1),
            "a float32 tensor of shape [batch, 1]"
        );
        let ops: Vec<String> = nodes(&graph)
            .iter()
            .map(|n| n.string(NODE_OP_TYPE).unwrap().unwrap())
            .collect();
        assert_eq!(
            ops,
            ["Cast", "Sub", "Div", "MatMul", "Add", "Mul", "Add", "Cast"]
        );
        // The weights are stored as the node's f64, bit for bit.
        let weights = graph
            .bytes(GRAPH_INITIALIZER)
            .unwrap()
            .into_iter()
            .map(|b| Message::parse(b).unwrap())
            .find(|t| t.string(TENSOR_NAME) == Ok(Some("pouwd_weights".into())))
            .unwrap();
        assert_eq!(weights.varint(TENSOR_DATA_TYPE), Ok(Some(DOUBLE)));
        let raw = weights.bytes(TENSOR_RAW_DATA).unwrap()[0];
        let stored: Vec<f64> = raw
            .chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(stored, params[..3]);
    }

    #[test]
    fn an_mlp_head_is_matmul_add_relu_matmul_add_with_w1_transposed() {
        // d = 2, H = 3: W1 (3×2), b1 (3), w2 (3), b2.
        let params = [
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.1, 0.2, 0.3, 7.0, 8.0, 9.0, 0.5,
        ];
        let graph_model = GraphModel {
            feature_scaling: &scaling(2),
            feature_sources: None,
            target_scaling: TARGET,
            params: &params,
            encoder: None,
            metadata: &[],
        };
        let bytes = mlp_to_onnx(&graph_model, 3).unwrap();
        let (_, graph) = graph_of(&bytes);
        let ops: Vec<String> = nodes(&graph)
            .iter()
            .map(|n| n.string(NODE_OP_TYPE).unwrap().unwrap())
            .collect();
        assert_eq!(
            ops,
            [
                "Cast", "Sub", "Div", "MatMul", "Add", "Relu", "MatMul", "Add", "Mul", "Add",
                "Cast"
            ]
        );
        let w1 = graph
            .bytes(GRAPH_INITIALIZER)
            .unwrap()
            .into_iter()
            .map(|b| Message::parse(b).unwrap())
            .find(|t| t.string(TENSOR_NAME) == Ok(Some("pouwd_w1_transposed".into())))
            .unwrap();
        let stored: Vec<f64> = w1.bytes(TENSOR_RAW_DATA).unwrap()[0]
            .chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(stored, [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        let err = mlp_to_onnx(&graph_model, 4).unwrap_err();
        assert!(
            matches!(
                err,
                ExportError::ParamCount {
                    expected: 17,
                    found: 13,
                    ..
                }
            ),
            "{err}"
        );
        let with_encoder = GraphModel {
            encoder: Some(&[]),
            ..graph_model
        };
        assert_eq!(mlp_to_onnx(&with_encoder, 3), Err(ExportError::MlpEncoder));
    }

    #[test]
    fn a_graph_of_text_columns_takes_the_raw_cells_and_encodes_them() {
        let source = |column: &str, category: Option<&str>| FeatureSource {
            column: column.into(),
            category: category.map(str::to_string),
        };
        // x, colour (2 categories), y, z: numeric runs [0] and [1, 2].
        let sources = [
            source("x", None),
            source("colour", Some("blue")),
            source("colour", Some("red")),
            source("y", None),
            source("z", None),
        ];
        let inputs = text_inputs(&sources).unwrap().unwrap();
        assert_eq!(inputs.features, ["x", "y", "z"]);
        assert_eq!(inputs.text, ["colour"]);
        assert_eq!(text_inputs(&sources[..1]), Ok(None));
        let model = GraphModel {
            feature_scaling: &scaling(5),
            feature_sources: Some(&sources),
            target_scaling: TARGET,
            params: &[0.0; 6],
            encoder: None,
            metadata: &[],
        };
        let (exported, graph) = graph_of(&to_onnx(&model).unwrap());
        let inputs = value_infos(&graph, GRAPH_INPUT).unwrap();
        let described: Vec<(String, String)> = inputs
            .iter()
            .map(|(name, info)| (name.clone(), describe(info)))
            .collect();
        assert_eq!(
            described,
            [
                (
                    "features".into(),
                    "a float32 tensor of shape [batch, 3]".into()
                ),
                ("text".into(), "a string tensor of shape [batch, 1]".into()),
            ]
        );
        let ops: Vec<String> = nodes(&graph)
            .iter()
            .map(|n| n.string(NODE_OP_TYPE).unwrap().unwrap())
            .collect();
        assert_eq!(
            ops[..9],
            [
                "Cast",
                "Gather",
                "Gather",
                "LabelEncoder",
                "Equal",
                "Cast",
                "Gather",
                "Concat",
                "Sub"
            ]
        );
        let opsets: Vec<(String, u64)> = exported
            .bytes(MODEL_OPSET_IMPORT)
            .unwrap()
            .into_iter()
            .map(|b| {
                let opset = Message::parse(b).unwrap();
                let domain = opset.string(OPSET_DOMAIN).unwrap().unwrap();
                (domain, opset.varint(OPSET_VERSION).unwrap().unwrap())
            })
            .collect();
        assert_eq!(opsets, [("".into(), OPSET), (ML_DOMAIN.into(), ML_OPSET)]);

        // A text column's categories must be one run; sources must match.
        let split = [
            source("colour", Some("blue")),
            source("x", None),
            source("colour", Some("red")),
        ];
        assert!(matches!(
            text_inputs(&split),
            Err(ExportError::Sources { .. })
        ));
        let short = GraphModel {
            feature_sources: Some(&sources[..4]),
            ..model
        };
        assert!(matches!(to_onnx(&short), Err(ExportError::Sources { .. })));
    }

    #[test]
    fn wrong_param_counts_are_refused() {
        let err = linear(&scaling(3), &[1.0, 2.0, 3.0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the model has 3 parameters; expected 4: 3 weights (one weight per feature), then \
             the bias"
        );
        let err = with_encoder(10, &[0.0; 11], ENCODER).unwrap_err();
        assert_eq!(
            err,
            ExportError::ParamCount {
                expected: 17,
                found: 11,
                layout: "16 weights (one per encoder output), then the bias".into()
            }
        );
        let err = with_encoder(9, &[0.0; 17], ENCODER).unwrap_err();
        assert_eq!(
            err,
            ExportError::FeatureCount {
                encoder: 10,
                features: 9
            }
        );
        assert!(with_encoder(10, &[0.0; 17], ENCODER).is_ok());
    }

    #[test]
    fn bad_values_and_metadata_are_refused() {
        let err = linear(&scaling(2), &[1.0, f64::NAN, 0.0]).unwrap_err();
        assert!(
            matches!(
                err,
                ExportError::NotFinite {
                    what: "params",
                    index: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        let mut zero = scaling(2);
        zero[1].std = 0.0;
        assert_eq!(
            linear(&zero, &[0.0; 3]).unwrap_err(),
            ExportError::ZeroStd {
                what: "feature",
                index: 1
            }
        );
        assert_eq!(linear(&[], &[0.0]).unwrap_err(), ExportError::NoFeatures);
        let twice = [
            ("k".to_string(), "1".to_string()),
            ("k".to_string(), "2".to_string()),
        ];
        let err = to_onnx(&GraphModel {
            feature_scaling: &scaling(1),
            feature_sources: None,
            target_scaling: TARGET,
            params: &[0.0; 2],
            encoder: None,
            metadata: &twice,
        })
        .unwrap_err();
        assert_eq!(err, ExportError::DuplicateMetadata { key: "k".into() });
    }

    #[test]
    fn an_encoder_with_two_outputs_is_refused() {
        let encoder = tiny_encoder(&["a", "b"], &[], None);
        let err = with_encoder(3, &[0.0; 4], &encoder).unwrap_err();
        assert_eq!(
            err,
            ExportError::EncoderOutputs {
                found: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            err.to_string(),
            "the encoder's graph has 2 outputs [\"a\", \"b\"]; expected exactly one, the embedding"
        );
        // One output works.
        with_encoder(3, &[0.0; 4], &tiny_encoder(&["a"], &[], None)).unwrap();
    }

    #[test]
    fn an_encoder_without_a_fitting_input_is_refused() {
        // Two non-initializer inputs.
        let (mut model, mut graph) = graph_of(&tiny_encoder(&["a"], &[], None));
        graph.push_message(
            GRAPH_INPUT,
            &value_info("y", FLOAT, &[Dim::Unknown, Dim::Value(3)]),
        );
        model.fields.retain(|f| f.number != MODEL_GRAPH);
        model.push_message(MODEL_GRAPH, &graph);
        let err = with_encoder(3, &[0.0; 4], &model.encode()).unwrap_err();
        assert_eq!(
            err,
            ExportError::EncoderInputs {
                found: vec!["x".into(), "y".into()]
            }
        );

        // A fixed batch axis.
        let (mut model, mut graph) = graph_of(&tiny_encoder(&["a"], &[], None));
        graph.fields.retain(|f| f.number != GRAPH_INPUT);
        graph.push_message(
            GRAPH_INPUT,
            &value_info("x", FLOAT, &[Dim::Value(1), Dim::Value(3)]),
        );
        model.fields.retain(|f| f.number != MODEL_GRAPH);
        model.push_message(MODEL_GRAPH, &graph);
        let err = with_encoder(3, &[0.0; 4], &model.encode()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the encoder's input \"x\" is a float32 tensor of shape [1, 3]; expected a float32 \
             tensor of shape [batch, 3] (a dynamic batch axis, then the standardised features)"
        );

        // Not ONNX at all, and no graph.
        let err = with_encoder(3, &[0.0; 4], &[0x0a, 0x05]).unwrap_err();
        assert!(matches!(err, ExportError::Malformed { .. }), "{err:?}");
        assert_eq!(
            with_encoder(3, &[0.0; 4], &[0x08, 0x08]).unwrap_err(),
            ExportError::NoGraph
        );
    }

    #[test]
    fn the_encoder_input_is_renamed_everywhere_without_collisions() {
        // A subgraph that reads the input from the outer scope, and values
        // named like the new interface and like the first internal name.
        let mut body = Message::default();
        body.push_message(GRAPH_NODE, &identity("inner", "x", "inner"));
        body.push_message(
            GRAPH_OUTPUT,
            &value_info("inner", FLOAT, &[Dim::Unknown, Dim::Value(3)]),
        );
        let extra = [
            identity("pouwd_cast", "x", "pouwd_standardised"),
            identity("prediction", "x", "prediction"),
            identity("features", "x", "features"),
        ];
        let encoder = tiny_encoder(&["out"], &extra, Some(body));
        let bytes = with_encoder(3, &[1.0, 2.0, 3.0, 4.0], &encoder).unwrap();
        let (model, graph) = graph_of(&bytes);

        // Unknown fields, the IR version and the opsets come through.
        assert!(model.fields.contains(&Field {
            number: 999,
            value: Value::Fixed32(0xdead_beef)
        }));
        assert_eq!(model.varint(MODEL_IR_VERSION), Ok(Some(9)));
        let opsets = model.bytes(MODEL_OPSET_IMPORT).unwrap();
        assert_eq!(opsets.len(), 1);
        assert_eq!(
            Message::parse(opsets[0]).unwrap().varint(OPSET_VERSION),
            Ok(Some(17))
        );

        let mut values = Vec::new();
        let mut node_names = Vec::new();
        let mut graph = graph;
        walk_graph(&mut graph, "graph", 0, &mut |is_value, name| {
            if is_value {
                values.push(name.clone())
            } else {
                node_names.push(name.clone())
            }
        })
        .unwrap();
        // Nothing consumes or declares "x" any more; the new input is the
        // only "features", the new output the only "prediction".
        assert!(!values.contains(&"x".to_string()), "{values:?}");
        let count = |name: &str| values.iter().filter(|v| *v == name).count();
        assert_eq!(
            count("features"),
            2,
            "the input and the first Cast: {values:?}"
        );
        assert_eq!(
            count("prediction"),
            2,
            "the last Cast and the output: {values:?}"
        );
        // Each internal value is produced once.
        let outputs: Vec<String> = nodes(&graph)
            .iter()
            .flat_map(|n| strings(n, NODE_OUTPUT))
            .collect();
        let unique: HashSet<&String> = outputs.iter().collect();
        assert_eq!(unique.len(), outputs.len(), "{outputs:?}");
        let unique: HashSet<&String> = node_names.iter().collect();
        assert_eq!(unique.len(), node_names.len(), "{node_names:?}");
        assert!(outputs.contains(&"pouwd_standardised".to_string()));
        assert!(outputs.contains(&"pouwd_standardised_2".to_string()));
        assert!(outputs.contains(&"pouwd_encoder_prediction".to_string()));
        assert!(outputs.contains(&"pouwd_encoder_features".to_string()));

        // The subgraph reads the renamed input.
        let all = nodes(&graph);
        let identity = all
            .iter()
            .find(|n| strings(n, NODE_OUTPUT) == ["out"])
            .unwrap();
        assert_eq!(strings(identity, NODE_INPUT), ["pouwd_standardised_2"]);
        let attribute = Message::parse(identity.bytes(NODE_ATTRIBUTE).unwrap()[0]).unwrap();
        let body = Message::parse(attribute.bytes(ATTRIBUTE_G).unwrap()[0]).unwrap();
        assert_eq!(
            strings(&nodes(&body)[0], NODE_INPUT),
            ["pouwd_standardised_2"]
        );
        // The Cast before the encoder writes what the encoder reads, the
        // Cast after it reads the encoder's output.
        let casts: Vec<&Message> = all
            .iter()
            .filter(|n| n.string(NODE_OP_TYPE) == Ok(Some("Cast".into())))
            .collect();
        assert_eq!(casts.len(), 4);
        assert_eq!(strings(casts[1], NODE_OUTPUT), ["pouwd_standardised_2"]);
        assert_eq!(strings(casts[2], NODE_INPUT), ["out"]);
        // The Cast to float comes before every encoder node.
        let position = |name: &str| {
            all.iter()
                .position(|n| strings(n, NODE_OUTPUT) == [name])
                .unwrap()
        };
        assert!(position("pouwd_standardised_2") < position("pouwd_standardised"));
    }

    #[test]
    fn subgraphs_nested_too_deep_are_refused() {
        let nested = |levels: usize| {
            let mut body = Message::default();
            body.push_message(GRAPH_NODE, &identity("leaf", "x", "inner"));
            for _ in 0..levels {
                let mut attribute = Message::default();
                attribute.push_str(ATTRIBUTE_NAME, "body");
                attribute.push_message(ATTRIBUTE_G, &body);
                let mut wrapper = identity("wrap", "x", "inner");
                wrapper.push_message(NODE_ATTRIBUTE, &attribute);
                body = Message::default();
                body.push_message(GRAPH_NODE, &wrapper);
            }
            tiny_encoder(&["a"], &[], Some(body))
        };
        with_encoder(3, &[0.0; 4], &nested(MAX_SUBGRAPH_DEPTH - 1)).unwrap();
        assert_eq!(
            with_encoder(3, &[0.0; 4], &nested(MAX_SUBGRAPH_DEPTH)).unwrap_err(),
            ExportError::TooDeep {
                limit: MAX_SUBGRAPH_DEPTH
            }
        );
    }

    #[test]
    fn an_encoder_below_opset_7_is_refused_and_a_missing_default_domain_added() {
        let (mut model, _) = graph_of(&tiny_encoder(&["a"], &[], None));
        model.fields.retain(|f| f.number != MODEL_OPSET_IMPORT);
        let mut old = Message::default();
        old.push_str(OPSET_DOMAIN, "ai.onnx");
        old.push_varint(OPSET_VERSION, 6);
        let mut with_old = model.clone();
        with_old.push_message(MODEL_OPSET_IMPORT, &old);
        assert_eq!(
            with_encoder(3, &[0.0; 4], &with_old.encode()).unwrap_err(),
            ExportError::Opset {
                found: 6,
                minimum: 7
            }
        );
        let bytes = with_encoder(3, &[0.0; 4], &model.encode()).unwrap();
        let (exported, _) = graph_of(&bytes);
        let opsets = exported.bytes(MODEL_OPSET_IMPORT).unwrap();
        assert_eq!(opsets.len(), 1);
        assert_eq!(
            Message::parse(opsets[0]).unwrap().varint(OPSET_VERSION),
            Ok(Some(OPSET))
        );
    }
}
