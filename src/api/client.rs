//! A minimal blocking client for the local API, so `pouwd status`,
//! `wallet`, `send` and `tx` can ask a running node without an HTTP
//! library: one request over a std `TcpStream`, `Connection: close`,
//! every step under a timeout and the response bounded in size.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use thiserror::Error;

/// Largest response read; `/model` with its longest history fits easily.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the response is not HTTP: {0}")]
    NotHttp(String),
    #[error("the response is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the response body is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
}

impl ClientError {
    /// The HTTP status of a response that was not 200.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `GET path` from the API at `addr`; the JSON body of a 200 response.
pub fn get_json(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Value, ClientError> {
    request(addr, "GET", path, &[], None, timeout)
}

/// `POST /tx` of a transaction's bytes to the API at `addr`, with the
/// node's token; the JSON body of a 200 response.
pub fn post_tx(
    addr: SocketAddr,
    token: &str,
    tx: &[u8],
    timeout: Duration,
) -> Result<Value, ClientError> {
    let authorization = format!("Bearer {token}");
    let headers = [
        ("Authorization", authorization.as_str()),
        ("Content-Type", "application/octet-stream"),
    ];
    request(addr, "POST", "/tx", &headers, Some(tx), timeout)
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&bytes)?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES + 1)
        .read_to_end(&mut response)?;
    if response.len() as u64 > MAX_RESPONSE_BYTES {
        return Err(ClientError::TooLarge);
    }
    let (status, body) = split_response(&response)?;
    if status != 200 {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        return Err(ClientError::Status { status, message });
    }
    Ok(serde_json::from_slice(body)?)
}

/// The status code and body of a whole `Connection: close` response.
fn split_response(response: &[u8]) -> Result<(u16, &[u8]), ClientError> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| ClientError::NotHttp("no end of headers".into()))?;
    let head = String::from_utf8_lossy(&response[..end]);
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| ClientError::NotHttp(format!("status line {status_line:?}")))?;
    Ok((status, &response[end + 4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_split_into_status_and_body() {
        let (status, body) =
            split_response(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((status, body), (404, &b"{}"[..]));
        for bad in [
            &b"HTTP/1.1 200 OK\r\n"[..],
            b"SSH-2.0\r\n\r\n",
            b"HTTP/1.1 2\r\n\r\n",
        ] {
            assert!(matches!(split_response(bad), Err(ClientError::NotHttp(_))));
        }
    }
}
