//! The API's write token: `DATA_DIR/api.cookie`.
//!
//! A node that serves the API writes a fresh token there at every start:
//! 32 bytes from the operating system's CSPRNG, as 64 hex digits, in a
//! file created with mode 0600 (never readable by others, not even for a
//! moment: it is created with that mode, then renamed into place). It is
//! removed when the node stops cleanly. Whoever can read the file can
//! write through the API, so it takes the same care as `node.key`: the
//! token proves the caller may read the node's data dir.
//!
//! Requests carry it as `Authorization: Bearer TOKEN`; the node compares
//! SHA-256 digests of the presented and the real token in constant time,
//! so neither the token nor its length leaks through timing.

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The file's name in a data dir.
pub const FILE_NAME: &str = "api.cookie";
/// Random bytes in a token.
pub const TOKEN_BYTES: usize = 32;

/// The token of a serving node, and where it is written.
pub struct Cookie {
    path: PathBuf,
    token: String,
    digest: [u8; 32],
}

impl Cookie {
    /// Write a fresh token to `path`, replacing any earlier one.
    pub fn create(path: &Path) -> std::io::Result<Cookie> {
        let mut bytes = [0u8; TOKEN_BYTES];
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(std::io::Error::other)?;
        let token = hex::encode(bytes);
        let tmp = path.with_extension("cookie.tmp");
        // A temporary file left by a crash may have any mode: never write
        // into it, start afresh.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(token.as_bytes())?;
            file.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        Ok(Cookie {
            path: path.to_path_buf(),
            digest: digest(token.as_bytes()),
            token,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether an `Authorization` header value carries this token as
    /// `Bearer TOKEN`.
    pub fn authorizes(&self, authorization: Option<&[u8]>) -> bool {
        let Some(presented) = authorization.and_then(bearer_token) else {
            return false;
        };
        constant_time_eq(&digest(presented), &self.digest)
    }

    /// Remove the file, if it still holds this token.
    pub fn remove(&self) -> std::io::Result<()> {
        match fs::read(&self.path) {
            Ok(bytes) if bytes == self.token.as_bytes() => fs::remove_file(&self.path),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Remove a token a node that did not stop cleanly left behind.
pub fn remove_stale(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The token of a cookie file, for clients.
pub fn read(path: &Path) -> std::io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_string())
}

/// The token of `Bearer TOKEN` (the scheme's case does not matter).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let scheme = b"bearer ";
    let head = value.get(..scheme.len())?;
    if !head.eq_ignore_ascii_case(scheme) {
        return None;
    }
    let token = value[scheme.len()..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equality that takes the same time wherever the first difference is.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_cookie_is_a_fresh_private_token_each_time() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(FILE_NAME);
        let first = Cookie::create(&path).unwrap();
        assert_eq!(first.token().len(), 2 * TOKEN_BYTES);
        assert!(first.token().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(read(&path).unwrap(), first.token());
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // A leftover temporary file of any mode is replaced, not reused.
        let leftover = path.with_extension("cookie.tmp");
        fs::write(&leftover, "old").unwrap();
        fs::set_permissions(&leftover, fs::Permissions::from_mode(0o644)).unwrap();
        let second = Cookie::create(&path).unwrap();
        assert_ne!(second.token(), first.token());
        assert_eq!(read(&path).unwrap(), second.token());
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!leftover.exists());

        // Only the token the file holds is removed with it.
        first.remove().unwrap();
        assert!(path.exists(), "another start's token stays");
        second.remove().unwrap();
        assert!(!path.exists());
        second.remove().unwrap();
    }

    #[test]
    fn only_the_bearer_token_itself_authorizes() {
        let tmp = tempfile::tempdir().unwrap();
        let cookie = Cookie::create(&tmp.path().join(FILE_NAME)).unwrap();
        let token = cookie.token().to_string();
        let header = |text: &str| cookie.authorizes(Some(text.as_bytes()));
        assert!(header(&format!("Bearer {token}")));
        assert!(header(&format!("bearer {token}")));
        assert!(header(&format!("BEARER  {token} ")));
        assert!(!cookie.authorizes(None));
        assert!(!header(""));
        assert!(!header("Bearer "));
        assert!(!header(&token));
        assert!(!header(&format!("Basic {token}")));
        assert!(!header(&format!("Bearer {}", &token[1..])));
        assert!(!header(&format!("Bearer {token}0")));
        let mut wrong = token.into_bytes();
        wrong[63] = if wrong[63] == b'0' { b'1' } else { b'0' };
        assert!(!header(&format!(
            "Bearer {}",
            String::from_utf8(wrong).unwrap()
        )));
    }

    #[test]
    fn equality_checks_every_byte() {
        let a = [7u8; 32];
        assert!(constant_time_eq(&a, &a));
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 0x80;
            assert!(!constant_time_eq(&a, &b), "byte {i}");
        }
    }
}
