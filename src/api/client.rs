//! A small HTTP/1.1 client for the local API socket. The API only ever
//! answers with a Content-Length body, so this needs no HTTP library.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Why a request to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the tortie agent at {path}: {source} (is `tortie node` running on this host? the socket is set by api.socket / --socket)"
    )]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("lost the connection to the tortie agent at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the tortie agent sent a malformed answer: {0}")]
    Malformed(String),
    #[error("the tortie agent answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the tortie agent at {path} did not answer within {after:?} (is it stopped or overloaded?)")]
    Timeout { path: PathBuf, after: Duration },
}

/// How long a call waits for the agent when the caller names no limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// GETs `path` from the agent on `socket` and decodes the JSON body, within [`DEFAULT_TIMEOUT`].
pub async fn get_json<T: DeserializeOwned>(socket: &Path, path: &str) -> Result<T, ClientError> {
    request_json(socket, "GET", path, None::<&()>, DEFAULT_TIMEOUT).await
}

/// Sends `method path` with `body` as JSON (if any) to the agent on `socket` and decodes the
/// JSON answer; a status other than 200 is [`ClientError::Status`] with the body. The whole
/// call (connecting included: a stopped agent's backlog still accepts) takes at most `timeout`.
pub async fn request_json<T: DeserializeOwned, B: Serialize>(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&B>,
    timeout: Duration,
) -> Result<T, ClientError> {
    tokio::time::timeout(timeout, exchange(socket, method, path, body))
        .await
        .unwrap_or_else(|_| Err(ClientError::Timeout { path: socket.to_path_buf(), after: timeout }))
}

async fn exchange<T: DeserializeOwned, B: Serialize>(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&B>,
) -> Result<T, ClientError> {
    let io = |e| ClientError::Io { path: socket.to_path_buf(), source: e };
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(|e| ClientError::Connect { path: socket.to_path_buf(), source: e })?;
    let body = match body {
        Some(b) => serde_json::to_vec(b).map_err(|e| ClientError::Malformed(e.to_string()))?,
        None => Vec::new(),
    };
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: tortie\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    if !body.is_empty() {
        request.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(&body);
    stream.write_all(&request).await.map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.map_err(io)?;
    let (status, body) = split_response(&raw).map_err(|e| match e {
        // The agent went away mid-answer (it died or was restarted): a lost connection.
        Answer::Truncated(what) => io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, what)),
        Answer::Malformed(what) => ClientError::Malformed(what),
    })?;
    if status != 200 {
        return Err(ClientError::Status { status, body: String::from_utf8_lossy(body).into_owned() });
    }
    serde_json::from_slice(body).map_err(|e| ClientError::Malformed(e.to_string()))
}

/// Why an answer could not be split into status and body.
enum Answer {
    /// The connection ended before the whole answer came.
    Truncated(String),
    Malformed(String),
}

fn split_response(raw: &[u8]) -> Result<(u16, &[u8]), Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| {
        Answer::Truncated(format!("the connection closed after {} bytes, before the end of the headers", raw.len()))
    })?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| Answer::Malformed("headers are not UTF-8".into()))?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Answer::Malformed(format!("bad status line in {head:?}")))?;
    let body = &raw[end + 4..];
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    if let Some(length) = length.filter(|l| body.len() < *l) {
        return Err(Answer::Truncated(format!("the connection closed after {} of {length} body bytes", body.len())));
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_answer_is_truncated_and_a_whole_one_splits() {
        for cut in [&b""[..], b"HTTP/1.1 200 OK\r\nContent-Le", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}"] {
            assert!(matches!(split_response(cut), Err(Answer::Truncated(_))), "{cut:?}");
        }
        let whole = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}";
        assert!(matches!(split_response(whole), Ok((503, b"{}"))));
    }
}
