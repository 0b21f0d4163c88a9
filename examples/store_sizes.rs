//! What a store's keys and values cost: for each key prefix, the number of
//! keys and the bytes of keys and values, against the store's size on disk.
//!
//! ```text
//! cargo run --release --example store_sizes -- DATA_DIR/store [EXPORT_FILE]
//! ```
//!
//! The node must be stopped (sled locks the store). With an export file the
//! last line gives the store's size on disk as a multiple of the export's.

use std::collections::BTreeMap;
use std::path::Path;

fn disk_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| disk_bytes(&e.path()))
                    .sum()
            })
            .unwrap_or(0)
    } else {
        meta.len()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(store) = args.first() else {
        eprintln!("usage: store_sizes STORE_DIR [EXPORT_FILE]");
        std::process::exit(2);
    };
    let on_disk = disk_bytes(Path::new(store));
    let db = sled::Config::new()
        .path(store)
        .flush_every_ms(None)
        .open()
        .expect("open the store");
    // prefix -> (keys, key bytes, value bytes)
    let mut sizes: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for entry in db.iter() {
        let (k, v) = entry.expect("read the store");
        let prefix = match k.iter().position(|&b| b == b'/') {
            Some(_) if k.starts_with(b"meta/") => String::from_utf8_lossy(&k).into_owned(),
            Some(at) => String::from_utf8_lossy(&k[..=at]).into_owned(),
            None => format!("{:02x}", k.first().copied().unwrap_or(0)),
        };
        let row = sizes.entry(prefix).or_default();
        row.0 += 1;
        row.1 += k.len() as u64;
        row.2 += v.len() as u64;
    }
    let (mut keys, mut logical) = (0, 0);
    println!(
        "{:<16} {:>9} {:>11} {:>12} {:>9}",
        "prefix", "keys", "key bytes", "value bytes", "avg value"
    );
    for (prefix, (n, k, v)) in &sizes {
        println!(
            "{prefix:<16} {n:>9} {k:>11} {v:>12} {:>9.1}",
            *v as f64 / *n as f64
        );
        keys += n;
        logical += k + v;
    }
    println!("total: {keys} keys, {logical} bytes of keys and values, {on_disk} bytes on disk");
    if let Some(export) = args.get(1) {
        let export_bytes = disk_bytes(Path::new(export));
        println!(
            "on disk / export: {:.2} ({on_disk} / {export_bytes}); keys and values / export: {:.2}",
            on_disk as f64 / export_bytes as f64,
            logical as f64 / export_bytes as f64
        );
    }
}
