//! The backup file (schema/backup.md): what a data dir holds of value —
//! its node key, which holds the miner's identity and with it its
//! balance, the chain file and the task's files — then its chain, as an
//! export stream (schema/export.md).
//!
//! ```text
//! magic "POUWBAK\0" | u32 version | u32 entry count
//! { u16 name length + name | u64 data length + data }*   node.key, chain.json, dataset/FILE…
//! export stream, to the end of the file
//! ```
//! The entries are decoded strictly: each in its place, each length
//! bounded before anything is allocated, the key parsed, the chain file
//! checked, every task file checked against the hash the chain pins. The
//! export stream is left to the importer, which checks it as it would a
//! stranger's.

use super::datadir::pinned_files;
use crate::chain::Hash32;
use crate::consensus::params::ChainParams;
use std::io::{self, Read, Write};
use thiserror::Error;

pub const MAGIC: &[u8; 8] = b"POUWBAK\0";
pub const VERSION: u32 = 1;
/// Most entries: the key, the chain file and at most six task files.
pub const MAX_ENTRIES: u32 = 8;
/// Longest entry name.
pub const MAX_NAME_BYTES: u16 = 255;
/// Largest node key file: 64 hex digits and a newline, with room to spare.
pub const MAX_KEY_BYTES: u64 = 1024;
/// Largest chain file; the export stream's header bounds it the same way.
pub const MAX_CHAIN_BYTES: u64 = super::export::MAX_PARAMS_BYTES as u64;
/// Largest task file.
pub const MAX_TASK_FILE_BYTES: u64 = 1 << 30;

pub const KEY_ENTRY: &str = "node.key";
pub const CHAIN_ENTRY: &str = "chain.json";

#[derive(Debug, Error)]
pub enum BackupError {
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    #[error("not a pouwd backup (bad magic bytes)")]
    BadMagic,
    #[error("backup version {found} is not supported: this pouwd reads version {VERSION}")]
    UnsupportedVersion { found: u32 },
    #[error("the backup is truncated: {what}")]
    Truncated { what: String },
    #[error(
        "the backup declares {count} entries; a backup has from 2 to {MAX_ENTRIES} \
         (node.key, chain.json and the task's files)"
    )]
    EntryCount { count: u32 },
    #[error("entry #{index} of the backup has a name of {length} bytes; names have 1 to {MAX_NAME_BYTES}")]
    NameLength { index: u32, length: u16 },
    #[error("entry #{index} of the backup should be {expected:?}, but is {found:?}")]
    UnexpectedEntry {
        index: u32,
        expected: String,
        found: String,
    },
    #[error("entry {name:?} of the backup claims {length} bytes, over the limit of {limit}")]
    EntryTooLarge {
        name: String,
        length: u64,
        limit: u64,
    },
    #[error("the backup's node.key is not a valid node key: {0}")]
    BadKey(String),
    #[error("the backup's chain.json is not a valid chain file: {0}")]
    BadChain(String),
    #[error(
        "the backup holds {found} entries, but its chain needs {expected}: node.key, \
         chain.json and {} task file(s)",
        expected - 2
    )]
    WrongEntryCount { expected: u32, found: u32 },
    #[error("the backup's {name}: {problem}")]
    BadTaskFile { name: String, problem: String },
}

/// What a backup holds besides its chain.
#[derive(Clone, Debug)]
pub struct Backup {
    /// The node key file's bytes, as the data dir had them.
    pub key: Vec<u8>,
    /// The node id (the key's public half).
    pub id: Hash32,
    /// chain.json's bytes, and the chain they describe.
    pub chain_json: Vec<u8>,
    pub params: ChainParams,
    /// The task's files, by name (without `dataset/`), in the chain's
    /// order: the dataset, then an encoder.
    pub files: Vec<(String, Vec<u8>)>,
}

/// The name of a task file's entry.
pub fn task_entry(name: &str) -> String {
    format!("dataset/{name}")
}

/// The node id of a node key file's bytes.
pub fn key_id(bytes: &[u8]) -> Result<Hash32, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "not text, where a node key is 64 hex digits".to_string())?;
    let seed = Hash32::from_hex(text)?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed.0);
    Ok(Hash32(key.verifying_key().to_bytes()))
}

/// Write the magic, the version and `entries` (name, bytes); the export
/// stream follows.
pub fn write_entries(out: &mut dyn Write, entries: &[(String, &[u8])]) -> io::Result<()> {
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    out.write_all(&(entries.len() as u32).to_le_bytes())?;
    for (name, bytes) in entries {
        out.write_all(&(name.len() as u16).to_le_bytes())?;
        out.write_all(name.as_bytes())?;
        out.write_all(&(bytes.len() as u64).to_le_bytes())?;
        out.write_all(bytes)?;
    }
    Ok(())
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), BackupError> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            BackupError::Truncated {
                what: format!("it ends in {what}"),
            }
        } else {
            BackupError::Io(e)
        }
    })
}

fn read_u16(input: &mut impl Read, what: &str) -> Result<u16, BackupError> {
    let mut word = [0u8; 2];
    read_exact(input, &mut word, what)?;
    Ok(u16::from_le_bytes(word))
}

fn read_u32(input: &mut impl Read, what: &str) -> Result<u32, BackupError> {
    let mut word = [0u8; 4];
    read_exact(input, &mut word, what)?;
    Ok(u32::from_le_bytes(word))
}

fn read_u64(input: &mut impl Read, what: &str) -> Result<u64, BackupError> {
    let mut word = [0u8; 8];
    read_exact(input, &mut word, what)?;
    Ok(u64::from_le_bytes(word))
}

/// Read entry #`index`, which must be named `expected`, of at most `limit` bytes.
fn read_entry(
    input: &mut impl Read,
    index: u32,
    expected: &str,
    limit: u64,
) -> Result<Vec<u8>, BackupError> {
    let length = read_u16(input, &format!("the header of entry #{index}"))?;
    if length == 0 || length > MAX_NAME_BYTES {
        return Err(BackupError::NameLength { index, length });
    }
    let mut name = vec![0u8; usize::from(length)];
    read_exact(input, &mut name, &format!("the name of entry #{index}"))?;
    let name = String::from_utf8_lossy(&name).into_owned();
    if name != expected {
        return Err(BackupError::UnexpectedEntry {
            index,
            expected: expected.to_string(),
            found: name,
        });
    }
    let length = read_u64(input, &format!("the length of {name}"))?;
    if length > limit {
        return Err(BackupError::EntryTooLarge {
            name,
            length,
            limit,
        });
    }
    let mut bytes = Vec::new();
    let read = input.take(length).read_to_end(&mut bytes)?;
    if read as u64 != length {
        return Err(BackupError::Truncated {
            what: format!("{name} has {read} of its {length} bytes"),
        });
    }
    Ok(bytes)
}

/// Read and check everything before the export stream; `input` is then
/// at the stream's first byte.
pub fn read_entries(input: &mut impl Read) -> Result<Backup, BackupError> {
    let mut magic = [0u8; 8];
    read_exact(input, &mut magic, "the header")?;
    if &magic != MAGIC {
        return Err(BackupError::BadMagic);
    }
    let version = read_u32(input, "the header")?;
    if version != VERSION {
        return Err(BackupError::UnsupportedVersion { found: version });
    }
    let count = read_u32(input, "the header")?;
    if !(2..=MAX_ENTRIES).contains(&count) {
        return Err(BackupError::EntryCount { count });
    }
    let key = read_entry(input, 1, KEY_ENTRY, MAX_KEY_BYTES)?;
    let id = key_id(&key).map_err(BackupError::BadKey)?;
    let chain_json = read_entry(input, 2, CHAIN_ENTRY, MAX_CHAIN_BYTES)?;
    let params = std::str::from_utf8(&chain_json)
        .map_err(|_| "not UTF-8".to_string())
        .and_then(|text| ChainParams::from_json(text).map_err(|e| format!("{e:#}")))
        .map_err(BackupError::BadChain)?;
    let pinned = pinned_files(&params);
    let expected = 2 + pinned.len() as u32;
    if count != expected {
        return Err(BackupError::WrongEntryCount {
            expected,
            found: count,
        });
    }
    let mut files = Vec::new();
    for (index, file) in (3..).zip(pinned) {
        let entry = task_entry(&file.name);
        let bytes = read_entry(input, index, &entry, MAX_TASK_FILE_BYTES)?;
        file.check(&bytes, "in the backup")
            .map_err(|e| BackupError::BadTaskFile {
                name: entry,
                problem: format!("{e:#}"),
            })?;
        files.push((file.name, bytes));
    }
    Ok(Backup {
        key,
        id,
        chain_json,
        params,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::datadir::{ChainSource, DIABETES_CSV, REGTEST_JSON};

    const KEY: &[u8] = b"0101010101010101010101010101010101010101010101010101010101010101\n";

    fn entries(key: &[u8], chain: &[u8], dataset: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let list = [
            (KEY_ENTRY.to_string(), key),
            (CHAIN_ENTRY.to_string(), chain),
            (task_entry("diabetes.csv"), dataset),
        ];
        write_entries(&mut out, &list).unwrap();
        out
    }

    fn good() -> Vec<u8> {
        entries(KEY, REGTEST_JSON.as_bytes(), DIABETES_CSV)
    }

    #[test]
    fn entries_read_back_and_leave_the_stream_unread() {
        let mut bytes = good();
        bytes.extend_from_slice(b"STREAM");
        let mut input = &bytes[..];
        let backup = read_entries(&mut input).unwrap();
        assert_eq!(input, b"STREAM");
        assert_eq!(backup.key, KEY);
        assert_eq!(backup.id, key_id(KEY).unwrap());
        assert_eq!(backup.chain_json, REGTEST_JSON.as_bytes());
        let regtest = ChainSource::from_arg("regtest").params().unwrap();
        assert_eq!(backup.params.genesis_hash(), regtest.genesis_hash());
        assert_eq!(
            backup.files,
            vec![("diabetes.csv".to_string(), DIABETES_CSV.to_vec())]
        );
    }

    /// Every way a backup's entries can be wrong is refused, naming it.
    #[test]
    fn bad_entries_are_refused_with_their_reason() {
        let good = good();
        let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
        cases.push((b"POUWEXP\0".to_vec(), "bad magic"));
        let mut version = good.clone();
        version[8] = 9;
        cases.push((version, "version 9 is not supported"));
        for count in [0u32, 1, 9, 3_000_000_000] {
            let mut bad = good.clone();
            bad[12..16].copy_from_slice(&count.to_le_bytes());
            cases.push((bad, "declares"));
        }
        let mut extra = good.clone();
        extra[12..16].copy_from_slice(&4u32.to_le_bytes());
        cases.push((extra, "needs 3"));
        for cut in [3, 12, 17, 20, 40, good.len() - 1] {
            cases.push((good[..cut].to_vec(), "truncated"));
        }
        let mut name = good.clone();
        name[16..18].copy_from_slice(&0u16.to_le_bytes());
        cases.push((name, "has a name of 0 bytes"));
        let mut renamed = good.clone();
        renamed[18] = b'N';
        cases.push((renamed, "should be \"node.key\""));
        let mut huge = good.clone();
        huge[26..34].copy_from_slice(&u64::MAX.to_le_bytes());
        cases.push((huge, "over the limit"));
        cases.push((
            entries(b"xyz", REGTEST_JSON.as_bytes(), DIABETES_CSV),
            "not a valid node key",
        ));
        cases.push((entries(KEY, b"{}", DIABETES_CSV), "not a valid chain file"));
        cases.push((
            entries(KEY, REGTEST_JSON.as_bytes(), b"age,progression\n1,2\n"),
            "BLAKE3",
        ));
        for (bytes, expected) in cases {
            let error = read_entries(&mut &bytes[..]).unwrap_err().to_string();
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
        }
    }

    /// The bounds on an entry's name and length hold at the limit and
    /// refuse one past it.
    #[test]
    fn names_and_lengths_are_bounded_at_their_limits() {
        let header = |name_length: u16| {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&VERSION.to_le_bytes());
            bytes.extend_from_slice(&3u32.to_le_bytes());
            bytes.extend_from_slice(&name_length.to_le_bytes());
            bytes.extend(std::iter::repeat_n(b'x', usize::from(name_length)));
            bytes
        };
        let error = |bytes: Vec<u8>| read_entries(&mut &bytes[..]).unwrap_err();
        assert!(matches!(
            error(header(MAX_NAME_BYTES)),
            BackupError::UnexpectedEntry { .. }
        ));
        assert!(matches!(
            error(header(MAX_NAME_BYTES + 1)),
            BackupError::NameLength { length, .. } if length == MAX_NAME_BYTES + 1
        ));
        let at_limit = vec![b'0'; MAX_KEY_BYTES as usize];
        assert!(matches!(
            error(entries(&at_limit, REGTEST_JSON.as_bytes(), DIABETES_CSV)),
            BackupError::BadKey(_)
        ));
        let past = vec![b'0'; MAX_KEY_BYTES as usize + 1];
        assert!(matches!(
            error(entries(&past, REGTEST_JSON.as_bytes(), DIABETES_CSV)),
            BackupError::EntryTooLarge { length, limit, .. }
                if length == MAX_KEY_BYTES + 1 && limit == MAX_KEY_BYTES
        ));
    }
}
