//! Training jobs as transactions: what a `SubmitJob` carries, the bounds a
//! chain puts on it, and the checks that need no ledger
//! (schema/jobs.md).
//!
//! A job is a dataset (CSV bytes, as the user's file holds them), the
//! columns to use, the head to train and the training constants, and a
//! bounty held in escrow while the network trains it. The job id is the
//! transaction id. A job whose file does not parse, or that asks for more
//! than the chain's bounds, is an invalid transaction: [`check_job`]
//! prepares the dataset exactly as every node will when it trains it, so
//! a job that passes can always be trained. Pure: bytes in, errors out.

use crate::dataset::{CsvDataset, DatasetError, Prepared};

impl From<DatasetError> for JobError {
    fn from(error: DatasetError) -> JobError {
        JobError::Dataset(error.to_string())
    }
}
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The largest `SubmitJob` encoding any chain accepts (`max_job_bytes`
/// is at most this).
pub const MAX_JOB_TX_BYTES: usize = 1 << 20;

/// The largest learning rate a job may start at: the genesis task's bound.
pub const MAX_JOB_LEARNING_RATE: f64 = crate::model::MAX_LEARNING_RATE;

/// How a job with an ONNX encoder trains (schema/jobs.md, "Jobs with an
/// encoder"): the encoder runs over every row in chunks of this many rows,
/// in file order, as an `onnx_linear` chain's encoder does.
pub const ENCODER_JOB_BATCH: usize = 64;

/// An encoder job's parameter grid: multiples of `2^-12`, as devnet-onnx's.
pub const ENCODER_JOB_GRID_BITS: u32 = 12;

/// How far a re-executed parameter of an encoder job may lie from its
/// grid cell (`param_tolerance` of an `onnx_linear` chain).
pub const ENCODER_JOB_PARAM_TOLERANCE: f64 = 4e-6;

/// How far a validator's score of an encoder job's block may lie from the
/// header's, in ppm.
pub const ENCODER_JOB_SCORE_TOLERANCE_PPM: u32 = 20;

/// The model a job trains on the (standardised, one-hot encoded) features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Head {
    /// Linear regression, as the genesis task.
    Linear,
    /// One hidden layer of `hidden` ReLU units.
    Mlp { hidden: u32 },
}

impl Head {
    /// The name the CLI and the API use: `linear` or `mlp:H`.
    pub fn name(&self) -> String {
        match self {
            Head::Linear => "linear".into(),
            Head::Mlp { hidden } => format!("mlp:{hidden}"),
        }
    }

    /// Parse `linear` or `mlp:H`.
    pub fn parse(text: &str) -> Option<Head> {
        match text {
            "linear" => Some(Head::Linear),
            _ => {
                let hidden = text.strip_prefix("mlp:")?.parse().ok()?;
                Some(Head::Mlp { hidden })
            }
        }
    }

    /// Parameters of the head on `features` inputs.
    pub fn param_count(&self, features: usize) -> usize {
        match *self {
            Head::Linear => features + 1,
            Head::Mlp { hidden } => {
                let h = hidden as usize;
                h * features + 2 * h + 1
            }
        }
    }
}

/// What a `SubmitJob` transaction asks the network to train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// A name for people (the CSV's file name, say); 1–64 bytes. It
    /// names the file in every error about the dataset.
    pub name: String,
    /// The CSV file's bytes.
    pub dataset: Vec<u8>,
    /// The target column.
    pub target: String,
    /// The feature columns; `None` is every column but the target.
    pub features: Option<Vec<String>>,
    /// A frozen ONNX encoder in front of the head, where the chain allows.
    pub encoder: Option<Vec<u8>>,
    pub head: Head,
    pub batch_size: u32,
    /// `lr0`: block `n` of the job trains at `lr0 · h / (h + n)`.
    pub learning_rate: f64,
    /// `h` of the schedule.
    pub lr_half_life_blocks: u64,
    /// Data row `r` is a holdout row when `r mod k = k − 1`.
    pub holdout_every: u32,
    /// The job ends after its block `max_blocks − 1` at the latest.
    pub max_blocks: u32,
    /// The job ends when its score has not risen by `min_improvement_ppm`
    /// in this many blocks.
    pub patience: u32,
    pub min_improvement_ppm: u32,
    /// Base units taken from the sender into escrow; each block on the
    /// job pays its miner `bounty / max_blocks`, and what is left is
    /// refunded when the job ends.
    pub bounty: u64,
}

// `learning_rate` is the only float, and every valid spec has a finite,
// positive one: equality is an equivalence on the specs that matter.
impl Eq for JobSpec {}

impl JobSpec {
    /// What each block on the job pays its miner.
    pub fn pay_per_block(&self) -> u64 {
        self.bounty / u64::from(self.max_blocks.max(1))
    }
}

/// A chain's bounds on jobs (chain parameter `jobs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobLimits {
    /// The most bytes a `SubmitJob` transaction may take, encoded.
    pub max_job_bytes: u32,
    /// The most data rows in a job's dataset.
    pub max_rows: u32,
    /// The most features after one-hot encoding.
    pub max_features: u32,
    /// The most categories of one text column (one-hot encoded), for
    /// jobs and for the genesis task.
    pub max_categories: u32,
    /// The most hidden units of an `mlp` head.
    pub max_hidden: u32,
    /// The most parameters a job's head may have.
    pub max_params: u32,
    /// The largest `max_blocks` and `patience`.
    pub max_blocks: u32,
    /// Whether jobs may carry an ONNX encoder (every validator then needs
    /// ONNX Runtime).
    pub allow_encoder: bool,
}

impl Default for JobLimits {
    /// The shipped chains' bounds.
    fn default() -> JobLimits {
        JobLimits {
            max_job_bytes: 1_000_000,
            max_rows: 100_000,
            max_features: 256,
            max_categories: 64,
            max_hidden: 256,
            max_params: 65_536,
            max_blocks: 100_000,
            allow_encoder: false,
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum JobError {
    /// The dataset does not parse or cannot be trained (the message names
    /// the file, line and column).
    #[error("{0}")]
    Dataset(String),
    #[error("job field {field} is {found}, but must be {allowed}")]
    OutOfRange {
        field: &'static str,
        found: String,
        allowed: String,
    },
    #[error("the job takes {found} bytes encoded, over the chain's limit of {limit}")]
    TooLarge { found: usize, limit: usize },
    #[error("this chain does not allow jobs with an ONNX encoder")]
    EncoderNotAllowed,
    #[error("a job with an ONNX encoder trains the linear head, not {head}")]
    EncoderHead { head: String },
    #[error("the job's ONNX encoder is empty")]
    EmptyEncoder,
    #[error("{file}: {found} data rows, over the chain's limit of {limit}")]
    TooManyRows {
        file: String,
        found: usize,
        limit: usize,
    },
    #[error("{file}: {found} features after encoding, over the chain's limit of {limit}")]
    TooManyFeatures {
        file: String,
        found: usize,
        limit: usize,
    },
    #[error("the {head} head on {features} features has {found} parameters, over the chain's limit of {limit}")]
    TooManyParams {
        head: String,
        features: usize,
        found: usize,
        limit: usize,
    },
}

fn out_of_range(field: &'static str, found: impl ToString, allowed: impl ToString) -> JobError {
    JobError::OutOfRange {
        field,
        found: found.to_string(),
        allowed: allowed.to_string(),
    }
}

/// The job's numbers against the chain's bounds, cheapest first; the
/// dataset is not read.
pub fn check_job_fields(spec: &JobSpec, limits: &JobLimits) -> Result<(), JobError> {
    if spec.name.is_empty() || spec.name.len() > 64 {
        return Err(out_of_range("name", spec.name.len(), "1 to 64 bytes long"));
    }
    if let Some(encoder) = &spec.encoder {
        if !limits.allow_encoder {
            return Err(JobError::EncoderNotAllowed);
        }
        if encoder.is_empty() {
            return Err(JobError::EmptyEncoder);
        }
        if spec.head != Head::Linear {
            return Err(JobError::EncoderHead {
                head: spec.head.name(),
            });
        }
    }
    if spec.batch_size == 0 || spec.batch_size > 4096 {
        return Err(out_of_range("batch_size", spec.batch_size, "1 to 4096"));
    }
    if !(spec.learning_rate > 0.0 && spec.learning_rate <= MAX_JOB_LEARNING_RATE) {
        return Err(out_of_range(
            "learning_rate",
            spec.learning_rate,
            format!("above 0 and at most {MAX_JOB_LEARNING_RATE}"),
        ));
    }
    if spec.lr_half_life_blocks == 0 || spec.lr_half_life_blocks > 1_000_000_000 {
        return Err(out_of_range(
            "lr_half_life_blocks",
            spec.lr_half_life_blocks,
            "1 to 1000000000",
        ));
    }
    if spec.holdout_every < 2 || spec.holdout_every > 1000 {
        return Err(out_of_range(
            "holdout_every",
            spec.holdout_every,
            "2 to 1000",
        ));
    }
    if spec.max_blocks == 0 || spec.max_blocks > limits.max_blocks {
        return Err(out_of_range(
            "max_blocks",
            spec.max_blocks,
            format!("1 to {}", limits.max_blocks),
        ));
    }
    if spec.patience == 0 || spec.patience > spec.max_blocks {
        return Err(out_of_range(
            "patience",
            spec.patience,
            format!("1 to max_blocks ({})", spec.max_blocks),
        ));
    }
    if spec.min_improvement_ppm > 1_000_000 {
        return Err(out_of_range(
            "min_improvement_ppm",
            spec.min_improvement_ppm,
            "at most 1000000",
        ));
    }
    if spec.bounty < u64::from(spec.max_blocks) {
        return Err(out_of_range(
            "bounty",
            spec.bounty,
            format!(
                "at least max_blocks ({}) base units, so that every block pays",
                spec.max_blocks
            ),
        ));
    }
    if let Head::Mlp { hidden } = spec.head {
        if hidden == 0 || hidden > limits.max_hidden {
            return Err(out_of_range(
                "hidden",
                hidden,
                format!("1 to {}", limits.max_hidden),
            ));
        }
    }
    Ok(())
}

/// Every rule of a job that needs no ledger: the numbers
/// ([`check_job_fields`]), then the dataset, prepared as training will
/// prepare it, within the row, feature and parameter bounds. `encoded`
/// is the size of the whole transaction's encoding.
pub fn check_job(spec: &JobSpec, limits: &JobLimits, encoded: usize) -> Result<Prepared, JobError> {
    let limit = limits.max_job_bytes as usize;
    if encoded > limit {
        return Err(JobError::TooLarge {
            found: encoded,
            limit,
        });
    }
    check_job_fields(spec, limits)?;
    let csv = CsvDataset::from_bytes(&spec.name, &spec.dataset)?;
    if csv.rows() > limits.max_rows as usize {
        return Err(JobError::TooManyRows {
            file: spec.name.clone(),
            found: csv.rows(),
            limit: limits.max_rows as usize,
        });
    }
    let prepared = Prepared::new(
        &csv,
        &spec.target,
        spec.features.as_deref(),
        spec.holdout_every,
        limits.max_categories as usize,
    )?;
    let features = prepared.features();
    if features > limits.max_features as usize {
        return Err(JobError::TooManyFeatures {
            file: spec.name.clone(),
            found: features,
            limit: limits.max_features as usize,
        });
    }
    let params = spec.head.param_count(features);
    if params > limits.max_params as usize {
        return Err(JobError::TooManyParams {
            head: spec.head.name(),
            features,
            found: params,
            limit: limits.max_params as usize,
        });
    }
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec {
            name: "prices.csv".into(),
            dataset: b"a,b,y\n1,2,3\n2,1,4\n3,5,8\n4,4,9\n5,0,6\n6,2,9\n".to_vec(),
            target: "y".into(),
            features: None,
            encoder: None,
            head: Head::Linear,
            batch_size: 4,
            learning_rate: 0.01,
            lr_half_life_blocks: 10,
            holdout_every: 2,
            max_blocks: 10,
            patience: 5,
            min_improvement_ppm: 100,
            bounty: 1000,
        }
    }

    fn limits() -> JobLimits {
        JobLimits::default()
    }

    fn field_error(change: impl Fn(&mut JobSpec)) -> Option<&'static str> {
        let mut job = spec();
        change(&mut job);
        match check_job(&job, &limits(), 100) {
            Ok(_) => None,
            Err(JobError::OutOfRange { field, .. }) => Some(field),
            Err(other) => panic!("not a field error: {other}"),
        }
    }

    #[test]
    fn a_valid_job_prepares_its_dataset() {
        let prepared = check_job(&spec(), &limits(), 100).expect("valid");
        assert_eq!(prepared.features(), 2);
        assert_eq!((prepared.train_rows(), prepared.holdout_rows()), (3, 3));
    }

    #[test]
    fn every_number_is_bounded_at_its_limit_and_one_past() {
        type Change = Box<dyn Fn(&mut JobSpec)>;
        let cases: Vec<(&str, Change, Change)> = vec![
            (
                "batch_size",
                Box::new(|j| j.batch_size = 4096),
                Box::new(|j| j.batch_size = 4097),
            ),
            (
                "batch_size",
                Box::new(|j| j.batch_size = 1),
                Box::new(|j| j.batch_size = 0),
            ),
            (
                "learning_rate",
                Box::new(|j| j.learning_rate = MAX_JOB_LEARNING_RATE),
                Box::new(|j| j.learning_rate = f64::from_bits(MAX_JOB_LEARNING_RATE.to_bits() + 1)),
            ),
            (
                "learning_rate",
                Box::new(|j| j.learning_rate = f64::MIN_POSITIVE),
                Box::new(|j| j.learning_rate = 0.0),
            ),
            (
                "learning_rate",
                Box::new(|j| j.learning_rate = 1.0),
                Box::new(|j| j.learning_rate = f64::NAN),
            ),
            (
                "lr_half_life_blocks",
                Box::new(|j| j.lr_half_life_blocks = 1_000_000_000),
                Box::new(|j| j.lr_half_life_blocks = 1_000_000_001),
            ),
            (
                "lr_half_life_blocks",
                Box::new(|j| j.lr_half_life_blocks = 1),
                Box::new(|j| j.lr_half_life_blocks = 0),
            ),
            (
                "holdout_every",
                Box::new(|j| j.holdout_every = 2),
                Box::new(|j| j.holdout_every = 1),
            ),
            (
                "holdout_every",
                Box::new(|j| {
                    j.holdout_every = 1000;
                    j.dataset = b"a,y\n"
                        .iter()
                        .copied()
                        .chain((0..2000).flat_map(|i| format!("{i},{}\n", i % 7).into_bytes()))
                        .collect();
                }),
                Box::new(|j| j.holdout_every = 1001),
            ),
            (
                "max_blocks",
                Box::new(|j| {
                    j.max_blocks = 100_000;
                    j.bounty = 100_000;
                }),
                Box::new(|j| {
                    j.max_blocks = 100_001;
                    j.bounty = 100_001;
                }),
            ),
            (
                "max_blocks",
                Box::new(|j| {
                    j.max_blocks = 1;
                    j.patience = 1;
                }),
                Box::new(|j| j.max_blocks = 0),
            ),
            (
                "patience",
                Box::new(|j| j.patience = 10),
                Box::new(|j| j.patience = 11),
            ),
            (
                "patience",
                Box::new(|j| j.patience = 1),
                Box::new(|j| j.patience = 0),
            ),
            (
                "min_improvement_ppm",
                Box::new(|j| j.min_improvement_ppm = 1_000_000),
                Box::new(|j| j.min_improvement_ppm = 1_000_001),
            ),
            (
                "bounty",
                Box::new(|j| j.bounty = 10),
                Box::new(|j| j.bounty = 9),
            ),
            (
                "hidden",
                Box::new(|j| j.head = Head::Mlp { hidden: 256 }),
                Box::new(|j| j.head = Head::Mlp { hidden: 257 }),
            ),
            (
                "hidden",
                Box::new(|j| j.head = Head::Mlp { hidden: 1 }),
                Box::new(|j| j.head = Head::Mlp { hidden: 0 }),
            ),
            (
                "name",
                Box::new(|j| j.name = "n".repeat(64)),
                Box::new(|j| j.name = "n".repeat(65)),
            ),
            (
                "name",
                Box::new(|j| j.name = "n".into()),
                Box::new(|j| j.name = String::new()),
            ),
        ];
        for (field, at, past) in cases {
            assert_eq!(field_error(&*at), None, "{field} at its limit");
            assert_eq!(field_error(&*past), Some(field), "{field} one past");
        }
    }

    #[test]
    fn the_byte_row_feature_and_parameter_bounds_hold_at_the_limit_and_one_past() {
        let job = spec();
        let mut tight = limits();
        tight.max_job_bytes = 100;
        assert!(check_job(&job, &tight, 100).is_ok());
        assert_eq!(
            check_job(&job, &tight, 101).map(|_| ()),
            Err(JobError::TooLarge {
                found: 101,
                limit: 100
            })
        );
        tight.max_rows = 6;
        assert!(check_job(&job, &tight, 100).is_ok());
        tight.max_rows = 5;
        assert!(matches!(
            check_job(&job, &tight, 100),
            Err(JobError::TooManyRows {
                found: 6,
                limit: 5,
                ..
            })
        ));
        let mut tight = limits();
        tight.max_features = 2;
        assert!(check_job(&job, &tight, 100).is_ok());
        tight.max_features = 1;
        assert!(matches!(
            check_job(&job, &tight, 100),
            Err(JobError::TooManyFeatures {
                found: 2,
                limit: 1,
                ..
            })
        ));
        // mlp:3 on 2 features: 3·2 + 2·3 + 1 = 13 parameters.
        let mut mlp = spec();
        mlp.head = Head::Mlp { hidden: 3 };
        let mut tight = limits();
        tight.max_params = 13;
        assert!(check_job(&mlp, &tight, 100).is_ok());
        tight.max_params = 12;
        assert!(matches!(
            check_job(&mlp, &tight, 100),
            Err(JobError::TooManyParams {
                found: 13,
                limit: 12,
                ..
            })
        ));
        let mut with_encoder = spec();
        with_encoder.encoder = Some(vec![1, 2, 3]);
        assert_eq!(
            check_job(&with_encoder, &limits(), 100).map(|_| ()),
            Err(JobError::EncoderNotAllowed)
        );
    }

    #[test]
    fn an_encoder_job_needs_a_chain_that_allows_it_bytes_and_the_linear_head() {
        let allowing = JobLimits {
            allow_encoder: true,
            ..limits()
        };
        let mut job = spec();
        job.encoder = Some(vec![1, 2, 3]);
        // What the encoder computes is checked where it runs (node::chain).
        assert!(check_job(&job, &allowing, 100).is_ok());
        assert_eq!(
            check_job(&job, &limits(), 100).map(|_| ()),
            Err(JobError::EncoderNotAllowed)
        );
        job.encoder = Some(Vec::new());
        assert_eq!(
            check_job(&job, &allowing, 100).map(|_| ()),
            Err(JobError::EmptyEncoder)
        );
        job.encoder = Some(vec![1]);
        job.head = Head::Mlp { hidden: 2 };
        assert_eq!(
            check_job(&job, &allowing, 100).map(|_| ()),
            Err(JobError::EncoderHead {
                head: "mlp:2".into()
            })
        );
        job.encoder = None;
        assert!(check_job(&job, &allowing, 100).is_ok());
    }

    #[test]
    fn a_dataset_that_does_not_parse_is_named_with_its_line_and_column() {
        let mut job = spec();
        job.dataset = b"a,b,y\n1,2,3\n2,x,4\n3,5\n".to_vec();
        let error = check_job(&job, &limits(), 100).expect_err("a ragged file");
        assert!(error.to_string().contains("prices.csv: line 4"), "{error}");
        let mut job = spec();
        job.dataset = b"a,y\n1,cheap\n2,dear\n3,cheap\n4,dear\n".to_vec();
        let error = check_job(&job, &limits(), 100).expect_err("a text target");
        let text = error.to_string();
        assert!(
            text.contains("prices.csv") && text.contains("line 2, column 2"),
            "{text}"
        );
        let mut job = spec();
        job.target = "price".into();
        let error = check_job(&job, &limits(), 100).expect_err("no such column");
        assert!(error.to_string().contains("price"), "{error}");
    }

    #[test]
    fn heads_name_and_parse() {
        assert_eq!(Head::parse("linear"), Some(Head::Linear));
        assert_eq!(Head::parse("mlp:32"), Some(Head::Mlp { hidden: 32 }));
        assert_eq!(Head::parse("mlp:"), None);
        assert_eq!(Head::parse("mlp"), None);
        assert_eq!(Head::Mlp { hidden: 7 }.name(), "mlp:7");
        assert_eq!(Head::Linear.param_count(10), 11);
        assert_eq!(Head::Mlp { hidden: 32 }.param_count(10), 385);
        let mut job = spec();
        job.max_blocks = 3;
        job.bounty = 1000;
        assert_eq!(job.pay_per_block(), 333);
    }
}
