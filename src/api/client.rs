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

/// Longest response head, and longest chunk-size line, read.
const MAX_HEAD_BYTES: u64 = 16 * 1024;

/// `GET /chain/export` from the API at `addr`, with the node's token: the
/// node's best chain as an export stream (schema/export.md), copied to
/// `out` as it arrives; `timeout` bounds each step, not the whole. Returns
/// what the node names as the tip the stream ends at (`HEIGHT HASH`).
pub fn export_chain(
    addr: SocketAddr,
    token: &str,
    out: &mut dyn Write,
    timeout: Duration,
) -> Result<String, ClientError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let head = format!(
        "GET /chain/export HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes())?;
    let mut reader = std::io::BufReader::new(stream);
    let (status, headers) = read_head(&mut reader)?;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if status != 200 {
        let mut body = Vec::new();
        if chunked {
            copy_chunked(&mut reader, &mut body, MAX_RESPONSE_BYTES)?;
        } else {
            (&mut reader)
                .take(MAX_RESPONSE_BYTES)
                .read_to_end(&mut body)?;
        }
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(ClientError::Status { status, message });
    }
    let tip = header("x-pouwd-tip").unwrap_or_default().to_string();
    if !chunked {
        return Err(ClientError::NotHttp(
            "the export is not sent in chunks (no `Transfer-Encoding: chunked`)".into(),
        ));
    }
    copy_chunked(&mut reader, out, u64::MAX)?;
    Ok(tip)
}

/// One line of a response head, without its CRLF; at most
/// [`MAX_HEAD_BYTES`] bytes.
fn read_line<R: std::io::BufRead>(reader: R) -> Result<String, ClientError> {
    let mut line = Vec::new();
    std::io::BufRead::read_until(&mut reader.take(MAX_HEAD_BYTES), b'\n', &mut line)?;
    let Some(line) = line.strip_suffix(b"\r\n") else {
        return Err(ClientError::NotHttp(if line.is_empty() {
            "the connection closed before the response ended".into()
        } else {
            "a line of the response has no CRLF end, or is too long".into()
        }));
    };
    String::from_utf8(line.to_vec())
        .map_err(|_| ClientError::NotHttp("a line of the response head is not UTF-8".into()))
}

/// The status code and headers of a response.
fn read_head(
    reader: &mut impl std::io::BufRead,
) -> Result<(u16, Vec<(String, String)>), ClientError> {
    let status_line = read_line(&mut *reader)?;
    let status = status_code(&status_line)?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut *reader)?;
        if line.is_empty() {
            return Ok((status, headers));
        }
        if headers.len() >= 100 {
            return Err(ClientError::NotHttp("more than 100 headers".into()));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ClientError::NotHttp(format!("header line {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
}

/// Copy a chunked body (RFC 9112 section 7.1) to `out`, at most `limit`
/// bytes; an error when it ends without its last chunk.
fn copy_chunked(
    reader: &mut impl std::io::BufRead,
    out: &mut dyn Write,
    limit: u64,
) -> Result<(), ClientError> {
    let mut copied = 0u64;
    loop {
        let line = read_line(&mut *reader)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16)
            .map_err(|_| ClientError::NotHttp(format!("chunk size {line:?}")))?;
        if size == 0 {
            // Trailer fields, up to the empty line.
            while !read_line(&mut *reader)?.is_empty() {}
            return Ok(());
        }
        copied = copied.saturating_add(size);
        if copied > limit {
            return Err(ClientError::TooLarge);
        }
        let got = std::io::copy(&mut (&mut *reader).take(size), out)?;
        if got != size {
            return Err(ClientError::NotHttp(
                "the connection closed in the middle of a chunk".into(),
            ));
        }
        if !read_line(&mut *reader)?.is_empty() {
            return Err(ClientError::NotHttp(
                "a chunk is longer than its size".into(),
            ));
        }
    }
}

fn status_code(status_line: &str) -> Result<u16, ClientError> {
    status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| ClientError::NotHttp(format!("status line {status_line:?}")))
}

/// The status code and body of a whole `Connection: close` response.
fn split_response(response: &[u8]) -> Result<(u16, &[u8]), ClientError> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| ClientError::NotHttp("no end of headers".into()))?;
    let head = String::from_utf8_lossy(&response[..end]);
    let status_line = head.lines().next().unwrap_or_default();
    Ok((status_code(status_line)?, &response[end + 4..]))
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

    #[test]
    fn chunked_bodies_copy_whole_and_refuse_broken_ones() {
        let mut out = Vec::new();
        let body = b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n";
        copy_chunked(&mut &body[..], &mut out, u64::MAX).unwrap();
        assert_eq!(out, b"hello world");
        for broken in [
            &b"5\r\nhello\r\n"[..],
            b"5\r\nhel",
            b"5\r\nhelloXX\r\n0\r\n\r\n",
            b"zz\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
        ] {
            let result = copy_chunked(&mut &broken[..], &mut Vec::new(), u64::MAX);
            assert!(
                matches!(result, Err(ClientError::NotHttp(_))),
                "{:?}: {result:?}",
                String::from_utf8_lossy(broken)
            );
        }
        let result = copy_chunked(&mut &body[..], &mut Vec::new(), 10);
        assert!(matches!(result, Err(ClientError::TooLarge)));
    }
}
