//! Peer addresses: the original design's `p2p_network.json`, `--peer`
//! arguments, and the `ID@host:port` form that pins a peer's key.

use crate::chain::Hash32;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

/// A peer to dial, with the key it must prove when pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    pub id: Option<Hash32>,
    pub addr: SocketAddr,
}

impl PeerAddr {
    /// Parse `host:port` or `ID@host:port`; the host is resolved now.
    pub fn parse(text: &str) -> Result<PeerAddr> {
        let (id, rest) = match text.split_once('@') {
            Some((id, rest)) => {
                let id = Hash32::from_hex(id)
                    .map_err(|e| anyhow::anyhow!("peer {text:?}: the id before '@' is {e}"))?;
                (Some(id), rest)
            }
            None => (None, text),
        };
        let addr = rest
            .to_socket_addrs()
            .with_context(|| format!("peer {text:?}: expected host:port"))?
            .next()
            .with_context(|| format!("peer {text:?}: the host has no address"))?;
        Ok(PeerAddr { id, addr })
    }
}

/// `{"peers": ["host:port", "ID@host:port", …], "port": 5000}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeersFile {
    pub peers: Vec<String>,
    /// The listen port when `--listen` is not given.
    #[serde(default)]
    pub port: Option<u16>,
}

impl PeersFile {
    pub fn load(path: &Path) -> Result<PeersFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read peers file {}", path.display()))?;
        let file: PeersFile = serde_json::from_str(&text)
            .with_context(|| format!("peers file {} is invalid", path.display()))?;
        if file.peers.len() > 1024 {
            bail!("peers file {} lists more than 1024 peers", path.display());
        }
        Ok(file)
    }

    pub fn addrs(&self, path: &Path) -> Result<Vec<PeerAddr>> {
        self.peers
            .iter()
            .map(|p| PeerAddr::parse(p).with_context(|| format!("in {}", path.display())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_pinned_entries() {
        let plain = PeerAddr::parse("127.0.0.1:5001").unwrap();
        assert_eq!(plain.id, None);
        assert_eq!(plain.addr.port(), 5001);
        let id = "ab".repeat(32);
        let pinned = PeerAddr::parse(&format!("{id}@localhost:5002")).unwrap();
        assert_eq!(pinned.id, Some(Hash32([0xab; 32])));
        assert_eq!(pinned.addr.port(), 5002);
        assert!(PeerAddr::parse("nonsense").is_err());
        assert!(PeerAddr::parse("12@127.0.0.1:1").is_err());
    }

    #[test]
    fn reads_the_original_file_format() {
        let file: PeersFile = serde_json::from_str(
            r#"{"peers": ["192.168.0.1:5000", "192.168.0.2:5000"], "port": 5000}"#,
        )
        .unwrap();
        assert_eq!(file.port, Some(5000));
        assert_eq!(file.peers.len(), 2);
    }
}
