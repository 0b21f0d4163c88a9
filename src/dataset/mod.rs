//! The task's dataset: CSV loading, the holdout split and standardisation.
//!
//! [`CsvDataset`] reads a CSV file with a header row through the csv crate
//! and reports every problem with the file name, line and column.
//! [`Prepared`] applies the consensus rules of schema/consensus.md §Data:
//! row `r` (0-based, header excluded) is holdout when
//! `r % holdout_every == holdout_every - 1`, otherwise training; means and
//! standard deviations are computed over the training rows in file order,
//! and every row is standardised with them. Nothing here reads a file;
//! callers pass the bytes.

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum DatasetError {
    #[error("{file}: the file is empty (expected a header row and at least one data row)")]
    Empty { file: String },
    #[error("{file}: line {line}: {reason}")]
    Csv {
        file: String,
        line: u64,
        reason: String,
    },
    #[error("{file}: line {line}, column {column} ({name}): expected a number, found {found:?}")]
    NotNumeric {
        file: String,
        line: u64,
        column: usize,
        name: String,
        found: String,
    },
    #[error("{file}: line {line}, column {column} ({name}): {found} is not a finite number")]
    NotFinite {
        file: String,
        line: u64,
        column: usize,
        name: String,
        found: String,
    },
    #[error("{file}: missing column {name:?}; the header has {found:?}")]
    MissingColumn {
        file: String,
        name: String,
        found: Vec<String>,
    },
    #[error("{file}: column {name:?} appears more than once in the header")]
    DuplicateColumn { file: String, name: String },
    #[error("{file}: {found} data rows, but the task needs at least {needed} ({reason})")]
    TooFewRows {
        file: String,
        found: usize,
        needed: usize,
        reason: &'static str,
    },
    #[error("{file}: no feature columns besides the target {target:?}")]
    NoFeatures { file: String, target: String },
}

/// A numeric CSV table, as read.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvDataset {
    pub file: String,
    pub columns: Vec<String>,
    /// Row-major cells, `rows[r][c]`.
    pub rows: Vec<Vec<f64>>,
}

impl CsvDataset {
    /// Parse CSV bytes with a header row; every cell must be a finite number.
    /// `file` names the source in error messages.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<CsvDataset, DatasetError> {
        let file = file.to_string();
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(DatasetError::Empty { file });
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| csv_error(&file, &e))?
            .iter()
            .map(str::to_string)
            .collect();
        for (i, name) in columns.iter().enumerate() {
            if columns[..i].contains(name) {
                return Err(DatasetError::DuplicateColumn {
                    file,
                    name: name.clone(),
                });
            }
        }
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| csv_error(&file, &e))?;
            let line = record.position().map_or(0, |p| p.line());
            let mut row = Vec::with_capacity(columns.len());
            for (column, cell) in record.iter().enumerate() {
                let value: f64 = cell.parse().map_err(|_| DatasetError::NotNumeric {
                    file: file.clone(),
                    line,
                    column: column + 1,
                    name: columns[column].clone(),
                    found: cell.to_string(),
                })?;
                if !value.is_finite() {
                    return Err(DatasetError::NotFinite {
                        file: file.clone(),
                        line,
                        column: column + 1,
                        name: columns[column].clone(),
                        found: cell.to_string(),
                    });
                }
                row.push(value);
            }
            rows.push(row);
        }
        if rows.is_empty() {
            return Err(DatasetError::Empty { file });
        }
        Ok(CsvDataset {
            file,
            columns,
            rows,
        })
    }

    fn column_index(&self, name: &str) -> Result<usize, DatasetError> {
        self.columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| DatasetError::MissingColumn {
                file: self.file.clone(),
                name: name.to_string(),
                found: self.columns.clone(),
            })
    }

    /// The feature column names: `features` when given, else every column but the target.
    pub fn resolve_features(
        &self,
        target: &str,
        features: Option<&[String]>,
    ) -> Result<Vec<String>, DatasetError> {
        self.column_index(target)?;
        let names: Vec<String> = match features {
            Some(list) => list.to_vec(),
            None => self
                .columns
                .iter()
                .filter(|c| c.as_str() != target)
                .cloned()
                .collect(),
        };
        if names.is_empty() {
            return Err(DatasetError::NoFeatures {
                file: self.file.clone(),
                target: target.to_string(),
            });
        }
        for name in &names {
            self.column_index(name)?;
        }
        Ok(names)
    }
}

fn csv_error(file: &str, error: &csv::Error) -> DatasetError {
    let line = error.position().map_or(0, |p| p.line());
    let reason = match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("expected {expected_len} columns, found {len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
        other => format!("{other:?}"),
    };
    DatasetError::Csv {
        file: file.to_string(),
        line,
        reason,
    }
}

/// Mean and standard deviation of one column over the training rows.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    pub mean: f64,
    pub std: f64,
}

impl Scaling {
    /// Population statistics in row order; a constant column gets `std = 1`.
    fn of(values: impl Iterator<Item = f64> + Clone) -> Scaling {
        let mut count = 0.0;
        let mut sum = 0.0;
        for v in values.clone() {
            sum += v;
            count += 1.0;
        }
        let mean = sum / count;
        let mut squares = 0.0;
        for v in values {
            let d = v - mean;
            squares += d * d;
        }
        let std = (squares / count).sqrt();
        Scaling {
            mean,
            std: if std > 0.0 { std } else { 1.0 },
        }
    }

    pub fn apply(&self, value: f64) -> f64 {
        (value - self.mean) / self.std
    }
}

/// The dataset as the training loop sees it: standardised, split, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    pub feature_names: Vec<String>,
    pub target_name: String,
    pub feature_scaling: Vec<Scaling>,
    pub target_scaling: Scaling,
    /// Training features, row-major: `train_x[r * features + j]`.
    pub train_x: Vec<f64>,
    pub train_y: Vec<f64>,
    /// Holdout features, row-major.
    pub holdout_x: Vec<f64>,
    pub holdout_y: Vec<f64>,
    /// Row `r` of the file is holdout when `r % holdout_every == holdout_every - 1`.
    pub holdout_every: u32,
}

impl Prepared {
    pub fn features(&self) -> usize {
        self.feature_names.len()
    }

    pub fn train_rows(&self) -> usize {
        self.train_y.len()
    }

    pub fn holdout_rows(&self) -> usize {
        self.holdout_y.len()
    }

    /// Split and standardise `data` for a task.
    pub fn new(
        data: &CsvDataset,
        target: &str,
        features: Option<&[String]>,
        holdout_every: u32,
    ) -> Result<Prepared, DatasetError> {
        let feature_names = data.resolve_features(target, features)?;
        let target_col = data.column_index(target)?;
        let feature_cols: Vec<usize> = feature_names
            .iter()
            .map(|n| data.column_index(n))
            .collect::<Result<_, _>>()?;
        let every = holdout_every as usize;
        let is_holdout = |r: usize| every > 0 && r % every == every - 1;
        let train: Vec<&Vec<f64>> = (0..data.rows.len())
            .filter(|&r| !is_holdout(r))
            .map(|r| &data.rows[r])
            .collect();
        let holdout: Vec<&Vec<f64>> = (0..data.rows.len())
            .filter(|&r| is_holdout(r))
            .map(|r| &data.rows[r])
            .collect();
        if train.len() < 2 || holdout.len() < 2 {
            return Err(DatasetError::TooFewRows {
                file: data.file.clone(),
                found: data.rows.len(),
                needed: 2 * every.max(2),
                reason: "two training rows and two holdout rows",
            });
        }
        let feature_scaling: Vec<Scaling> = feature_cols
            .iter()
            .map(|&c| Scaling::of(train.iter().map(move |row| row[c])))
            .collect();
        let target_scaling = Scaling::of(train.iter().map(|row| row[target_col]));
        let standardise = |rows: &[&Vec<f64>]| {
            let mut x = Vec::with_capacity(rows.len() * feature_cols.len());
            let mut y = Vec::with_capacity(rows.len());
            for row in rows {
                for (j, &c) in feature_cols.iter().enumerate() {
                    x.push(feature_scaling[j].apply(row[c]));
                }
                y.push(target_scaling.apply(row[target_col]));
            }
            (x, y)
        };
        let (train_x, train_y) = standardise(&train);
        let (holdout_x, holdout_y) = standardise(&holdout);
        Ok(Prepared {
            feature_names,
            target_name: target.to_string(),
            feature_scaling,
            target_scaling,
            train_x,
            train_y,
            holdout_x,
            holdout_y,
            holdout_every,
        })
    }

    fn is_holdout(&self, row: usize) -> bool {
        let every = self.holdout_every as usize;
        every > 0 && row % every == every - 1
    }

    /// Every row's standardised features in file order, rounded to float32:
    /// the input of an `onnx_linear` task's encoder.
    pub fn rows_in_file_order_f32(&self) -> Vec<f32> {
        let d = self.features();
        let rows = self.train_rows() + self.holdout_rows();
        let (mut train, mut holdout) =
            (self.train_x.chunks_exact(d), self.holdout_x.chunks_exact(d));
        let mut out = Vec::with_capacity(rows * d);
        for r in 0..rows {
            let source = if self.is_holdout(r) {
                &mut holdout
            } else {
                &mut train
            };
            if let Some(row) = source.next() {
                out.extend(row.iter().map(|&v| v as f32));
            }
        }
        out
    }

    /// The same rows with other features: `encoded` holds `width` values
    /// per row in file order (an encoder's outputs), used as they are.
    /// The target is unchanged. `None` when `encoded` is not `width`
    /// values for every row.
    pub fn with_features(&self, names: Vec<String>, encoded: &[f64]) -> Option<Prepared> {
        let width = names.len();
        let rows = self.train_rows() + self.holdout_rows();
        if width == 0 || encoded.len() != rows * width {
            return None;
        }
        let mut train_x = Vec::with_capacity(self.train_rows() * width);
        let mut holdout_x = Vec::with_capacity(self.holdout_rows() * width);
        for (r, row) in encoded.chunks_exact(width).enumerate() {
            if self.is_holdout(r) {
                holdout_x.extend_from_slice(row);
            } else {
                train_x.extend_from_slice(row);
            }
        }
        Some(Prepared {
            feature_scaling: vec![
                Scaling {
                    mean: 0.0,
                    std: 1.0
                };
                width
            ],
            feature_names: names,
            target_name: self.target_name.clone(),
            target_scaling: self.target_scaling,
            train_x,
            train_y: self.train_y.clone(),
            holdout_x,
            holdout_y: self.holdout_y.clone(),
            holdout_every: self.holdout_every,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_column_names_file_and_header() {
        let data = CsvDataset::from_bytes("t.csv", b"a,b\n1,2\n").unwrap();
        let err = data.resolve_features("y", None).unwrap_err();
        assert!(err.to_string().contains("t.csv: missing column \"y\""));
    }

    #[test]
    fn non_numeric_cell_names_line_and_column() {
        let err = CsvDataset::from_bytes("t.csv", b"a,b\n1,2\n3,x\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv: line 3, column 2 (b): expected a number, found \"x\""
        );
    }

    #[test]
    fn empty_files_are_refused() {
        for bytes in [&b""[..], b"\n\n", b"a,b\n"] {
            let err = CsvDataset::from_bytes("e.csv", bytes).unwrap_err();
            assert_eq!(
                err,
                DatasetError::Empty {
                    file: "e.csv".into()
                }
            );
        }
    }

    #[test]
    fn ragged_rows_name_the_line() {
        let err = CsvDataset::from_bytes("r.csv", b"a,b\n1,2\n3\n").unwrap_err();
        assert!(err.to_string().starts_with("r.csv: line 3:"), "{err}");
    }

    #[test]
    fn standardises_over_training_rows_only() {
        let csv = b"x,y\n1,1\n2,2\n100,100\n3,3\n4,4\n200,200\n";
        let data = CsvDataset::from_bytes("s.csv", csv).unwrap();
        let prepared = Prepared::new(&data, "y", None, 3).unwrap();
        assert_eq!(prepared.train_rows(), 4);
        assert_eq!(prepared.holdout_rows(), 2);
        assert_eq!(prepared.feature_scaling[0].mean, 2.5);
        let sum: f64 = prepared.train_x.iter().sum();
        assert!(sum.abs() < 1e-12);
    }

    #[test]
    fn file_order_round_trips_through_other_features() {
        let csv = b"x,y\n1,1\n2,2\n100,100\n3,3\n4,4\n200,200\n5,5\n";
        let data = CsvDataset::from_bytes("s.csv", csv).unwrap();
        let prepared = Prepared::new(&data, "y", None, 3).unwrap();
        let rows = prepared.rows_in_file_order_f32();
        assert_eq!(rows.len(), 7);
        // Row 2 (x = 100) is holdout and keeps its place in file order.
        assert_eq!(rows[2], prepared.holdout_x[0] as f32);
        assert_eq!(rows[3], prepared.train_x[2] as f32);
        // Two features per row: the row number and its negation.
        let encoded: Vec<f64> = (0..7).flat_map(|r| [r as f64, -(r as f64)]).collect();
        let names = vec!["e0".to_string(), "e1".to_string()];
        let moved = prepared.with_features(names.clone(), &encoded).unwrap();
        assert_eq!(
            moved.train_x,
            [0.0, -0.0, 1.0, -1.0, 3.0, -3.0, 4.0, -4.0, 6.0, -6.0]
        );
        assert_eq!(moved.holdout_x, [2.0, -2.0, 5.0, -5.0]);
        assert_eq!(moved.train_y, prepared.train_y);
        assert!(prepared.with_features(names, &encoded[1..]).is_none());
    }
}
