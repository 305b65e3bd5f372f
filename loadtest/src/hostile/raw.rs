//! A WebSocket client written on the bare socket, for clients that break
//! the rules on purpose: tungstenite would not leave a frame half written,
//! nor a header line unfinished, nor a socket unread with a small receive
//! window. The upgrade request and the frames are written by hand
//! (RFC 6455: client frames masked); the edge's frames (unmasked) are read
//! one at a time.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The longest answer head to an upgrade the client reads.
const MAX_HEAD: usize = 16 * 1024;
/// How long the edge may take to answer an upgrade.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// `ip:port` of an `http://ip:port` URL.
pub fn addr_of(url: &str) -> Result<SocketAddr, String> {
    let authority = url.split_once("://").map_or(url, |(_, a)| a);
    let authority = authority.split('/').next().unwrap_or(authority);
    authority
        .parse()
        .map_err(|_| format!("bad url {url:?} (use http://ip:port)"))
}

/// A TCP connection from `source` to `url`; `recv_buffer` shrinks the
/// receive buffer (and so the window the client offers) before connecting.
pub async fn connect(
    url: &str,
    source: Ipv4Addr,
    recv_buffer: Option<u32>,
) -> Result<TcpStream, String> {
    let addr = addr_of(url)?;
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket_{:?}", e.kind()))?;
    if let Some(bytes) = recv_buffer {
        socket
            .set_recv_buffer_size(bytes)
            .map_err(|e| format!("rcvbuf_{:?}", e.kind()))?;
    }
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(|e| format!("bind_{:?}", e.kind()))?;
    let stream = tokio::time::timeout(ANSWER_TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| "connect_timeout".to_owned())?
        .map_err(|e| format!("connect_{:?}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The request line and headers of a WebSocket upgrade of `path`, finished
/// by the blank line.
pub fn upgrade_request(url: &str, path: &str) -> String {
    let host = url.split_once("://").map_or(url, |(_, a)| a);
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Upgrades `stream` to a WebSocket on `path`: `Ok` with what followed the
/// `101` head (the first frames), or the refusal as a name to count:
/// `http_429_rate_limited`, `http_409_already_live`, `closed`, ...
pub async fn upgrade(stream: &mut TcpStream, url: &str, path: &str) -> Result<Vec<u8>, String> {
    stream
        .write_all(upgrade_request(url, path).as_bytes())
        .await
        .map_err(|e| format!("write_{:?}", e.kind()))?;
    let mut head = Vec::with_capacity(1024);
    let end = loop {
        if let Some(end) = find(&head, b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() > MAX_HEAD {
            return Err("answer_head_too_long".into());
        }
        let mut chunk = [0u8; 2048];
        let n = tokio::time::timeout(ANSWER_TIMEOUT, stream.read(&mut chunk))
            .await
            .map_err(|_| "answer_timeout".to_owned())?
            .map_err(|e| format!("read_{:?}", e.kind()))?;
        if n == 0 {
            return Err("closed".into());
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let status = std::str::from_utf8(&head[..end])
        .ok()
        .and_then(|h| h.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("bad_answer")?;
    let rest = head.split_off(end);
    if status == 101 {
        return Ok(rest);
    }
    // The refusal's body: a JSON error whose `error` names it.
    let mut body = rest;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut chunk = [0u8; 2048];
        while !body.ends_with(b"}") && body.len() < MAX_HEAD {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let code = std::str::from_utf8(&body)
        .ok()
        .and_then(|b| b.find('{').map(|i| &b[i..]))
        .and_then(|json| serde_json::from_str::<Value>(json).ok())
        .and_then(|v| v["error"].as_str().map(str::to_owned));
    Err(match code {
        Some(code) => format!("http_{status}_{code}"),
        None => format!("http_{status}"),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A client frame: masked, as a client's must be.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
    header_length(&mut out, payload.len());
    let mask: [u8; 4] = rand::random();
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The start of a masked frame that says it carries `declared` bytes, with
/// only the first `sent` of them: a frame left unfinished.
pub fn partial_frame(declared: usize, sent: usize) -> Vec<u8> {
    let full = frame(true, OP_TEXT, &vec![b'x'; declared]);
    let header = full.len() - declared;
    full[..header + sent.min(declared)].to_vec()
}

fn header_length(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// A JSON text frame.
pub fn text(value: &Value) -> Vec<u8> {
    frame(true, OP_TEXT, value.to_string().as_bytes())
}

/// A frame from the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A text frame's JSON event.
    pub fn event(&self) -> Option<Value> {
        (self.opcode == OP_TEXT)
            .then(|| serde_json::from_slice(&self.payload).ok())
            .flatten()
    }

    /// A close frame's code and reason.
    pub fn close(&self) -> Option<(Option<u16>, String)> {
        (self.opcode == OP_CLOSE).then(|| match self.payload.as_slice() {
            [a, b, reason @ ..] => (
                Some(u16::from_be_bytes([*a, *b])),
                String::from_utf8_lossy(reason).into_owned(),
            ),
            _ => (None, String::new()),
        })
    }
}

/// Reads the edge's frames from a socket (or half of one).
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
}

impl FrameReader {
    /// A reader that starts with `already` (what followed the `101`).
    pub fn new(already: Vec<u8>) -> Self {
        Self { buffer: already }
    }

    /// The next frame; `Ok(None)` when the connection ended.
    pub async fn next(
        &mut self,
        stream: &mut (impl AsyncRead + Unpin),
    ) -> std::io::Result<Option<Frame>> {
        loop {
            if let Some((frame, used)) = decode(&self.buffer) {
                self.buffer.drain(..used);
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

/// One whole frame from the front of `bytes`, and its length.
fn decode(bytes: &[u8]) -> Option<(Frame, usize)> {
    let (&b0, &b1) = (bytes.first()?, bytes.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7F {
        126 => (
            u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let mask: Option<[u8; 4]> = if masked {
        let mask = bytes.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(mask)
    } else {
        None
    };
    let payload = bytes.get(at..at.checked_add(len)?)?;
    let payload = match mask {
        Some(mask) => payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect(),
        None => payload.to_vec(),
    };
    Some((
        Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0F,
            payload,
        },
        at + len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_as_written_and_partial_ones_wait() {
        for len in [0, 5, 125, 126, 70_000] {
            let payload = vec![b'a'; len];
            let bytes = frame(false, OP_TEXT, &payload);
            let (read, used) = decode(&bytes).expect("whole");
            assert_eq!(used, bytes.len());
            assert_eq!(
                (read.fin, read.opcode, read.payload.len()),
                (false, OP_TEXT, len)
            );
            assert!(decode(&bytes[..bytes.len() - 1]).is_none() || len == 0);
        }
        let partial = partial_frame(1000, 10);
        assert!(decode(&partial).is_none(), "a frame left unfinished");
        assert_eq!(partial.len(), 4 + 4 + 10, "header, mask, ten bytes");
    }

    #[test]
    fn close_frames_and_events_are_read() {
        let mut close = vec![0x88, 10, 0x03, 0xF0];
        close.extend_from_slice(b"too_slow");
        let (frame, _) = decode(&close).expect("close");
        assert_eq!(frame.close(), Some((Some(1008), "too_slow".to_owned())));
        let ready = br#"{"type":"ready"}"#;
        let mut bytes = vec![0x81, ready.len() as u8];
        bytes.extend_from_slice(ready);
        let (frame, _) = decode(&bytes).expect("text");
        assert_eq!(frame.event().expect("json")["type"], "ready");
    }

    #[test]
    fn the_upgrade_names_the_host_and_path() {
        let request = upgrade_request("http://127.0.0.1:9", "/live/p/ws?token=t");
        assert!(request.starts_with("GET /live/p/ws?token=t HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"));
        assert!(request.ends_with("\r\n\r\n"));
        assert_eq!(
            addr_of("http://127.0.0.1:9").ok(),
            "127.0.0.1:9".parse().ok()
        );
    }
}
