//! The task's dataset: CSV loading, column classification, one-hot
//! encoding of text columns, the holdout split and standardisation.
//!
//! [`CsvDataset`] reads a CSV file with a header row through the csv crate
//! and reports every problem with the file name, line and column. A column
//! is *numeric* when every one of its cells parses with Rust's
//! `f64::from_str`; every value of a numeric column must then be finite
//! ("NaN" or "inf" in an otherwise numeric column is an error). A column
//! with at least one cell that does not parse is a *text* column, kept as
//! its cells.
//!
//! [`Prepared`] applies the consensus rules of schema/consensus.md §Data:
//! row `r` (0-based, header excluded) is holdout when
//! `r % holdout_every == holdout_every - 1`, otherwise training. The target
//! must be numeric. A text feature is one-hot encoded: its categories are
//! its distinct values among the training rows, sorted byte-wise (at most
//! `max_categories` of them, [`DEFAULT_MAX_CATEGORIES`] for now); each
//! becomes a feature column named `column=value`, 1 where the row's value
//! equals it and 0 elsewhere, so a value the training rows never had is
//! all zeros. These columns take the text column's place, in category
//! order. Means and standard deviations of every feature column are then
//! computed over the training rows in file order, and every row is
//! standardised with them. [`FeatureSource`] records where each feature
//! column comes from, so that [`CsvDataset::encode`] gives new inputs the
//! same raw features. Nothing here reads a file; callers pass the bytes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use thiserror::Error;

/// The largest number of categories a text feature may have, until it
/// becomes a chain parameter.
pub const DEFAULT_MAX_CATEGORIES: usize = 64;

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
    /// A numeric column was needed (a model's numeric input) and this one
    /// has a cell that is not a number.
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
    /// The target column is a text column: `line` and `found` are its first
    /// cell that is not a number.
    #[error(
        "{file}: line {line}, column {column} ({name}): the target column must be numeric, \
         found {found:?}"
    )]
    TextTarget {
        file: String,
        line: u64,
        column: usize,
        name: String,
        found: String,
    },
    /// A text feature has more distinct values in the training rows than
    /// one-hot encoding allows. `line` and `first` locate its first cell
    /// that is not a number (a numeric column with a few missing values
    /// such as "NA" is a text column too).
    #[error(
        "{file}: column {column} ({name}) is a text column with {found} distinct values in the \
         training rows, more than the {max} categories a text feature may have (its first \
         non-numeric cell is {first:?} on line {line})"
    )]
    TooManyCategories {
        file: String,
        column: usize,
        name: String,
        found: usize,
        max: usize,
        line: u64,
        first: String,
    },
    /// A one-hot feature refers to a column that was read as numbers: the
    /// caller must read it as text ([`CsvDataset::from_bytes_with_text`]).
    #[error(
        "{file}: column {column} ({name}) is one-hot encoded, but it was read as a numeric \
         column, not as text"
    )]
    NotText {
        file: String,
        column: usize,
        name: String,
    },
}

/// A cell of a text column that does not parse as a number (or, for a
/// column read as text on request whose cells all parse, its first cell).
#[derive(Clone, Debug, PartialEq)]
pub struct TextCell {
    pub line: u64,
    pub value: String,
}

/// One column's cells in file order.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    /// Every cell parsed as a finite number.
    Numeric(Vec<f64>),
    /// The cells as read (trimmed); `first` is the first one that is not a number.
    Text { cells: Vec<String>, first: TextCell },
}

/// A CSV table, as read: numeric and text columns.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvDataset {
    pub file: String,
    pub columns: Vec<String>,
    /// `data[c]` holds column `c`'s cells, one per data row.
    pub data: Vec<Column>,
    /// The file line of each data row, for error messages.
    pub lines: Vec<u64>,
}

/// Where a feature column's raw value comes from: a numeric column's value,
/// or, with a category, 1 when the text column's cell equals it and 0
/// otherwise (one-hot encoding).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSource {
    pub column: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

impl FeatureSource {
    pub fn numeric(column: &str) -> FeatureSource {
        FeatureSource {
            column: column.to_string(),
            category: None,
        }
    }

    /// The feature column's name: the column's, or `column=category`.
    pub fn name(&self) -> String {
        match &self.category {
            Some(category) => format!("{}={category}", self.column),
            None => self.column.clone(),
        }
    }
}

impl CsvDataset {
    /// Parse CSV bytes with a header row, classifying each column as
    /// numeric (every cell a number, which must be finite) or text.
    /// `file` names the source in error messages.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<CsvDataset, DatasetError> {
        CsvDataset::from_bytes_with_text(file, bytes, &[])
    }

    /// As [`CsvDataset::from_bytes`], but the columns named in `text` are
    /// kept as text even when every cell is a number: a model that one-hot
    /// encodes a column compares its cells as text. Names the header lacks
    /// are ignored here.
    pub fn from_bytes_with_text(
        file: &str,
        bytes: &[u8],
        text: &[&str],
    ) -> Result<CsvDataset, DatasetError> {
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
        let mut records = Vec::new();
        let mut lines = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| csv_error(&file, &e))?;
            lines.push(record.position().map_or(0, |p| p.line()));
            records.push(record);
        }
        if records.is_empty() {
            return Err(DatasetError::Empty { file });
        }
        let mut data = Vec::with_capacity(columns.len());
        // The first non-finite cell of a numeric column, as (line, column, cell).
        let mut not_finite: Option<(u64, usize, String)> = None;
        for (c, name) in columns.iter().enumerate() {
            let cells = records.iter().map(|record| record.get(c).unwrap_or(""));
            let mut values = Vec::with_capacity(records.len());
            let mut first_text = None;
            let mut first_infinite = None;
            for (r, cell) in cells.clone().enumerate() {
                match cell.parse::<f64>() {
                    Ok(value) => {
                        if !value.is_finite() && first_infinite.is_none() {
                            first_infinite = Some((lines[r], cell));
                        }
                        values.push(value);
                    }
                    Err(_) => {
                        first_text = Some(TextCell {
                            line: lines[r],
                            value: cell.to_string(),
                        });
                        break;
                    }
                }
            }
            let forced = text.contains(&name.as_str());
            if first_text.is_none() && !forced {
                if let Some((line, cell)) = first_infinite {
                    if not_finite.as_ref().is_none_or(|(l, _, _)| line < *l) {
                        not_finite = Some((line, c, cell.to_string()));
                    }
                }
                data.push(Column::Numeric(values));
                continue;
            }
            let first = first_text.unwrap_or_else(|| TextCell {
                line: lines[0],
                value: records[0].get(c).unwrap_or("").to_string(),
            });
            data.push(Column::Text {
                cells: cells.map(str::to_string).collect(),
                first,
            });
        }
        if let Some((line, column, found)) = not_finite {
            return Err(DatasetError::NotFinite {
                file,
                line,
                column: column + 1,
                name: columns[column].clone(),
                found,
            });
        }
        Ok(CsvDataset {
            file,
            columns,
            data,
            lines,
        })
    }

    /// The number of data rows.
    pub fn rows(&self) -> usize {
        self.lines.len()
    }

    /// The index of the column `name`.
    pub fn column_index(&self, name: &str) -> Result<usize, DatasetError> {
        self.columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| DatasetError::MissingColumn {
                file: self.file.clone(),
                name: name.to_string(),
                found: self.columns.clone(),
            })
    }

    /// The values of the numeric column `name`; a text column is refused
    /// naming its first cell that is not a number.
    pub fn numeric(&self, name: &str) -> Result<&[f64], DatasetError> {
        let c = self.column_index(name)?;
        match &self.data[c] {
            Column::Numeric(values) => Ok(values),
            Column::Text { first, .. } => Err(DatasetError::NotNumeric {
                file: self.file.clone(),
                line: first.line,
                column: c + 1,
                name: name.to_string(),
                found: first.value.clone(),
            }),
        }
    }

    /// Every row's cells, `rows[r][c]`, when every column is numeric.
    pub fn numeric_rows(&self) -> Result<Vec<Vec<f64>>, DatasetError> {
        let columns: Vec<&[f64]> = self
            .columns
            .iter()
            .map(|name| self.numeric(name))
            .collect::<Result<_, _>>()?;
        Ok((0..self.rows())
            .map(|r| columns.iter().map(|column| column[r]).collect())
            .collect())
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

    /// The raw (unstandardised) features of every row, row-major:
    /// `x[r * sources.len() + j]` is source `j` of row `r`: a numeric
    /// column's value, or for a one-hot source 1.0 when the row's cell
    /// equals its category and 0.0 otherwise (a value no category names is
    /// all zeros).
    pub fn encode(&self, sources: &[FeatureSource]) -> Result<Vec<f64>, DatasetError> {
        enum Source<'a> {
            Number(&'a [f64]),
            OneHot(&'a [String], &'a str),
        }
        let mut resolved = Vec::with_capacity(sources.len());
        for source in sources {
            let c = self.column_index(&source.column)?;
            resolved.push(match (&source.category, &self.data[c]) {
                (None, _) => Source::Number(self.numeric(&source.column)?),
                (Some(category), Column::Text { cells, .. }) => Source::OneHot(cells, category),
                (Some(_), Column::Numeric(_)) => {
                    return Err(DatasetError::NotText {
                        file: self.file.clone(),
                        column: c + 1,
                        name: source.column.clone(),
                    })
                }
            });
        }
        let mut x = Vec::with_capacity(self.rows() * sources.len());
        for r in 0..self.rows() {
            for source in &resolved {
                x.push(match source {
                    Source::Number(values) => values[r],
                    Source::OneHot(cells, category) => {
                        if cells[r] == *category {
                            1.0
                        } else {
                            0.0
                        }
                    }
                });
            }
        }
        Ok(x)
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
    /// Where each feature column comes from, in `feature_names` order.
    pub feature_sources: Vec<FeatureSource>,
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

    /// Split, one-hot encode and standardise `data` for a task. A text
    /// feature may have at most `max_categories` distinct values in the
    /// training rows.
    pub fn new(
        data: &CsvDataset,
        target: &str,
        features: Option<&[String]>,
        holdout_every: u32,
        max_categories: usize,
    ) -> Result<Prepared, DatasetError> {
        let names = data.resolve_features(target, features)?;
        let target_col = data.column_index(target)?;
        if let Column::Text { first, .. } = &data.data[target_col] {
            return Err(DatasetError::TextTarget {
                file: data.file.clone(),
                line: first.line,
                column: target_col + 1,
                name: target.to_string(),
                found: first.value.clone(),
            });
        }
        let every = holdout_every as usize;
        let is_holdout = |r: usize| every > 0 && r % every == every - 1;
        let train: Vec<usize> = (0..data.rows()).filter(|&r| !is_holdout(r)).collect();
        let holdout: Vec<usize> = (0..data.rows()).filter(|&r| is_holdout(r)).collect();
        if train.len() < 2 || holdout.len() < 2 {
            return Err(DatasetError::TooFewRows {
                file: data.file.clone(),
                found: data.rows(),
                needed: 2 * every.max(2),
                reason: "two training rows and two holdout rows",
            });
        }
        let mut feature_sources = Vec::with_capacity(names.len());
        for name in &names {
            let c = data.column_index(name)?;
            match &data.data[c] {
                Column::Numeric(_) => feature_sources.push(FeatureSource::numeric(name)),
                Column::Text { cells, first } => {
                    let categories: BTreeSet<&str> =
                        train.iter().map(|&r| cells[r].as_str()).collect();
                    if categories.len() > max_categories {
                        return Err(DatasetError::TooManyCategories {
                            file: data.file.clone(),
                            column: c + 1,
                            name: name.clone(),
                            found: categories.len(),
                            max: max_categories,
                            line: first.line,
                            first: first.value.clone(),
                        });
                    }
                    feature_sources.extend(categories.into_iter().map(|category| FeatureSource {
                        column: name.clone(),
                        category: Some(category.to_string()),
                    }));
                }
            }
        }
        let d = feature_sources.len();
        let raw = data.encode(&feature_sources)?;
        let y = data.numeric(target)?;
        let feature_scaling: Vec<Scaling> = (0..d)
            .map(|j| Scaling::of(train.iter().map(|&r| raw[r * d + j])))
            .collect();
        let target_scaling = Scaling::of(train.iter().map(|&r| y[r]));
        let standardise = |rows: &[usize]| {
            let mut x = Vec::with_capacity(rows.len() * d);
            let mut ys = Vec::with_capacity(rows.len());
            for &r in rows {
                for (j, scaling) in feature_scaling.iter().enumerate() {
                    x.push(scaling.apply(raw[r * d + j]));
                }
                ys.push(target_scaling.apply(y[r]));
            }
            (x, ys)
        };
        let (train_x, train_y) = standardise(&train);
        let (holdout_x, holdout_y) = standardise(&holdout);
        Ok(Prepared {
            feature_names: feature_sources.iter().map(FeatureSource::name).collect(),
            feature_sources,
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
    /// The target is unchanged, and each new feature's source is a
    /// numeric column of its name (the encoder's output, not a CSV
    /// column). `None` when `encoded` is not `width` values for every row.
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
            feature_sources: names.iter().map(|n| FeatureSource::numeric(n)).collect(),
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
    fn a_numeric_input_refuses_a_text_column_naming_line_and_column() {
        let data = CsvDataset::from_bytes("t.csv", b"a,b\n1,2\n3,x\n").unwrap();
        let err = data.numeric("b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv: line 3, column 2 (b): expected a number, found \"x\""
        );
        let err = data.numeric_rows().unwrap_err();
        assert!(err.to_string().contains("column 2 (b)"), "{err}");
    }

    #[test]
    fn columns_are_numeric_iff_every_cell_parses() {
        let csv = b"n,t,e,nan,mixed\n1,a,1,NaN,NaN\n2.5e3,2,,2,x\n-0,b,3,3,inf\n";
        let err = CsvDataset::from_bytes("c.csv", csv).unwrap_err();
        // "NaN" parses as a number, so column 4 is numeric and refused;
        // column 5 has "x", so it is text and its "NaN" is only a value.
        assert_eq!(
            err.to_string(),
            "c.csv: line 2, column 4 (nan): NaN is not a finite number"
        );
        let csv = b"n,t,e,mixed\n1,a,1,NaN\n2.5e3,2,,x\n-0,b,3,inf\n";
        let data = CsvDataset::from_bytes("c.csv", csv).unwrap();
        assert_eq!(data.data[0], Column::Numeric(vec![1.0, 2500.0, -0.0]));
        let text = |cells: &[&str], line: u64, value: &str| Column::Text {
            cells: cells.iter().map(|c| c.to_string()).collect(),
            first: TextCell {
                line,
                value: value.to_string(),
            },
        };
        assert_eq!(data.data[1], text(&["a", "2", "b"], 2, "a"));
        // An empty cell is not a number.
        assert_eq!(data.data[2], text(&["1", "", "3"], 3, ""));
        assert_eq!(data.data[3], text(&["NaN", "x", "inf"], 3, "x"));
        assert_eq!(data.lines, [2, 3, 4]);
        // Infinity in a numeric column is refused at its first cell, the
        // earliest line first, then the leftmost column.
        let err = CsvDataset::from_bytes("i.csv", b"a,b,c\n1,2,3\n4,-inf,inf\n").unwrap_err();
        assert_eq!(
            err,
            DatasetError::NotFinite {
                file: "i.csv".into(),
                line: 3,
                column: 2,
                name: "b".into(),
                found: "-inf".into(),
            }
        );
        // On request a numeric column is kept as text.
        let data = CsvDataset::from_bytes_with_text("r.csv", b"a,b\n1,2\n3,4\n", &["b"]).unwrap();
        assert_eq!(data.data[1], text(&["2", "4"], 2, "2"));
    }

    /// Rows 0..6 with holdout_every 3: rows 2 and 5 are holdout.
    const COLOURS: &[u8] = b"colour,size,y\n\
        red,1,10\n\
        blue,2,20\n\
        green,3,30\n\
        red,4,40\n\
        Blue,5,50\n\
        violet,6,60\n\
        blue,7,70\n";

    #[test]
    fn text_features_are_one_hot_over_sorted_training_categories() {
        let data = CsvDataset::from_bytes("c.csv", COLOURS).unwrap();
        let prepared = Prepared::new(&data, "y", None, 3, DEFAULT_MAX_CATEGORIES).unwrap();
        // Training rows 0, 1, 3, 4, 6: red, blue, red, Blue, blue. "green"
        // and "violet" are only in holdout rows; byte order puts "Blue" first.
        assert_eq!(
            prepared.feature_names,
            ["colour=Blue", "colour=blue", "colour=red", "size"]
        );
        assert_eq!(
            prepared.feature_sources[1],
            FeatureSource {
                column: "colour".into(),
                category: Some("blue".into()),
            }
        );
        assert_eq!(prepared.feature_sources[3], FeatureSource::numeric("size"));
        let raw = data.encode(&prepared.feature_sources).unwrap();
        #[rustfmt::skip]
        assert_eq!(raw, [
            0.0, 0.0, 1.0, 1.0,
            0.0, 1.0, 0.0, 2.0,
            0.0, 0.0, 0.0, 3.0, // green: unseen, all zeros
            0.0, 0.0, 1.0, 4.0,
            1.0, 0.0, 0.0, 5.0,
            0.0, 0.0, 0.0, 6.0, // violet: unseen
            0.0, 1.0, 0.0, 7.0,
        ]);
        // One-hot columns are standardised like the others: "blue" is 1 in
        // two of five training rows, mean 0.4, std sqrt(0.24).
        let blue = prepared.feature_scaling[1];
        assert_eq!(blue.mean, 0.4);
        assert_eq!(
            blue.std,
            (((0.6f64 * 0.6) * 2.0 + (0.4 * 0.4) * 3.0) / 5.0).sqrt()
        );
        // Holdout rows with a new category standardise all zeros.
        assert_eq!(prepared.holdout_rows(), 2);
        for (j, s) in prepared.feature_scaling[..3].iter().enumerate() {
            assert_eq!(prepared.holdout_x[j], s.apply(0.0));
            assert_eq!(prepared.holdout_x[4 + j], s.apply(0.0));
        }
        assert_eq!(prepared.train_x[3], prepared.feature_scaling[3].apply(1.0));
    }

    #[test]
    fn a_constant_one_hot_column_gets_std_one() {
        // Training rows 0 and 2 are both "a"; holdout rows 1 and 3 are "b".
        let csv = b"k,x,y\na,1,1\nb,2,2\na,3,3\nb,4,4\n";
        let data = CsvDataset::from_bytes("k.csv", csv).unwrap();
        let prepared = Prepared::new(&data, "y", None, 2, DEFAULT_MAX_CATEGORIES).unwrap();
        assert_eq!(prepared.feature_names, ["k=a", "x"]);
        assert_eq!(
            prepared.feature_scaling[0],
            Scaling {
                mean: 1.0,
                std: 1.0
            }
        );
        assert_eq!(prepared.train_x, [0.0, -1.0, 0.0, 1.0]);
        // "b" is unseen: all zeros, (0 - 1) / 1.
        assert_eq!(prepared.holdout_x, [-1.0, 0.0, -1.0, 2.0]);
    }

    #[test]
    fn listed_features_name_source_columns() {
        let data = CsvDataset::from_bytes("c.csv", COLOURS).unwrap();
        let features = ["size".to_string(), "colour".to_string()];
        let prepared =
            Prepared::new(&data, "y", Some(&features), 3, DEFAULT_MAX_CATEGORIES).unwrap();
        assert_eq!(
            prepared.feature_names,
            ["size", "colour=Blue", "colour=blue", "colour=red"]
        );
        let only = ["size".to_string()];
        let prepared = Prepared::new(&data, "y", Some(&only), 3, DEFAULT_MAX_CATEGORIES).unwrap();
        assert_eq!(prepared.feature_names, ["size"]);
        let one_hot = ["colour=red".to_string()];
        let err = Prepared::new(&data, "y", Some(&one_hot), 3, DEFAULT_MAX_CATEGORIES).unwrap_err();
        assert!(
            matches!(err, DatasetError::MissingColumn { ref name, .. } if name == "colour=red"),
            "{err}"
        );
    }

    #[test]
    fn the_category_bound_allows_the_limit_and_refuses_one_more() {
        let data = CsvDataset::from_bytes("c.csv", COLOURS).unwrap();
        // Three distinct training values: Blue, blue, red.
        let prepared = Prepared::new(&data, "y", None, 3, 3).unwrap();
        assert_eq!(prepared.features(), 4);
        let err = Prepared::new(&data, "y", None, 3, 2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.csv: column 1 (colour) is a text column with 3 distinct values in the training \
             rows, more than the 2 categories a text feature may have (its first non-numeric \
             cell is \"red\" on line 2)"
        );
        // A text column that is not a feature is not bounded.
        let size = ["size".to_string()];
        assert!(Prepared::new(&data, "y", Some(&size), 3, 0).is_ok());

        let mut csv = String::from("t,y\n");
        for r in 0..2 * DEFAULT_MAX_CATEGORIES {
            // Every other row is holdout; the training rows have c0, c1, ...
            csv.push_str(&format!("c{},{r}\n", r / 2));
        }
        let data = CsvDataset::from_bytes("d.csv", csv.as_bytes()).unwrap();
        let prepared = Prepared::new(&data, "y", None, 2, DEFAULT_MAX_CATEGORIES).unwrap();
        assert_eq!(prepared.features(), DEFAULT_MAX_CATEGORIES);
        csv.push_str("extra,0\nextra,1\n");
        let data = CsvDataset::from_bytes("d.csv", csv.as_bytes()).unwrap();
        let err = Prepared::new(&data, "y", None, 2, DEFAULT_MAX_CATEGORIES).unwrap_err();
        assert!(
            matches!(
                err,
                DatasetError::TooManyCategories {
                    found: 65,
                    max: 64,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_text_target_is_refused_naming_its_first_text_cell() {
        let csv = b"carat,cut\n0.23,1\n0.21,2\n0.29,Ideal\n0.31,Good\n";
        let data = CsvDataset::from_bytes("diamonds.csv", csv).unwrap();
        let err = Prepared::new(&data, "cut", None, 2, DEFAULT_MAX_CATEGORIES).unwrap_err();
        assert_eq!(
            err.to_string(),
            "diamonds.csv: line 4, column 2 (cut): the target column must be numeric, \
             found \"Ideal\""
        );
    }

    #[test]
    fn encoding_new_rows_needs_the_columns_as_text() {
        let sources = [
            FeatureSource {
                column: "grade".into(),
                category: Some("2".into()),
            },
            FeatureSource::numeric("x"),
        ];
        let csv = b"grade,x\n1,5\n2,6\n";
        let numbers = CsvDataset::from_bytes("n.csv", csv).unwrap();
        let err = numbers.encode(&sources).unwrap_err();
        assert_eq!(
            err.to_string(),
            "n.csv: column 1 (grade) is one-hot encoded, but it was read as a numeric column, \
             not as text"
        );
        let text = CsvDataset::from_bytes_with_text("n.csv", csv, &["grade"]).unwrap();
        assert_eq!(text.encode(&sources).unwrap(), [0.0, 5.0, 1.0, 6.0]);
        let missing = [FeatureSource::numeric("nope")];
        assert!(matches!(
            text.encode(&missing),
            Err(DatasetError::MissingColumn { .. })
        ));
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
        let prepared = Prepared::new(&data, "y", None, 3, DEFAULT_MAX_CATEGORIES).unwrap();
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
        let prepared = Prepared::new(&data, "y", None, 3, DEFAULT_MAX_CATEGORIES).unwrap();
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
