//! One client connection of any kind, read as a stream of small events:
//! Rill's WebSocket and SSE, and Socket.IO v5 over Engine.IO v4 WebSocket
//! (written here by hand: open `0{..}`, ping `2` / pong `3`, connect `40`,
//! events `42["name",data]`).
//!
//! Client sockets are bound to a chosen 127.0.0.x source address before
//! connecting, so that many sessions do not run out of ephemeral ports.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddr};

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::plan::Transport;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// A short name for the report's error counts.
    #[error("{0}")]
    Kind(String),
}

impl ConnError {
    pub fn kind(&self) -> &str {
        match self {
            Self::Kind(kind) => kind,
        }
    }

    fn new(kind: impl Into<String>) -> Self {
        Self::Kind(kind.into())
    }
}

/// An event, reduced to what the generator looks at.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Ready,
    Message {
        body: String,
    },
    Ack {
        reference: Option<String>,
    },
    Error {
        code: String,
    },
    /// Engine.IO ping: answer with [`Conn::pong`].
    EnginePing,
    /// Anything else (presence, join, leave, pong, gap, ...), by type.
    Other(String),
    Closed {
        code: Option<u16>,
    },
}

#[derive(Debug, Deserialize)]
struct Frame<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(default, rename = "ref", borrow)]
    reference: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
}

fn event_of(kind: &str, frame: Frame<'_>) -> Event {
    match kind {
        "ready" => Event::Ready,
        "message" => Event::Message {
            body: frame.body.unwrap_or_default().into_owned(),
        },
        "ack" => Event::Ack {
            reference: frame.reference.map(Cow::into_owned),
        },
        "error" => Event::Error {
            code: frame.code.unwrap_or_default().into_owned(),
        },
        other => Event::Other(other.to_owned()),
    }
}

/// Parses a Rill JSON event.
pub fn parse_rill(text: &str) -> Event {
    match serde_json::from_str::<Frame<'_>>(text) {
        Ok(frame) => {
            let kind = frame.kind.clone();
            event_of(&kind, frame)
        }
        Err(_) => Event::Other("unparsable".into()),
    }
}

/// Parses an Engine.IO / Socket.IO text packet.
pub fn parse_socketio(text: &str) -> Event {
    if text == "2" {
        return Event::EnginePing;
    }
    if let Some(rest) = text.strip_prefix("42") {
        // ["name", {data}]
        #[derive(Deserialize)]
        struct Packet<'a>(
            #[serde(borrow)] Cow<'a, str>,
            #[serde(borrow)] Option<Frame<'a>>,
        );
        return match serde_json::from_str::<Packet<'_>>(rest) {
            Ok(Packet(name, Some(frame))) => event_of(&name, frame),
            Ok(Packet(name, None)) => event_of(
                &name,
                Frame {
                    kind: name.clone(),
                    body: None,
                    reference: None,
                    code: None,
                },
            ),
            Err(_) => match serde_json::from_str::<(String,)>(rest) {
                Ok((name,)) => Event::Other(name),
                Err(_) => Event::Other("unparsable".into()),
            },
        };
    }
    if text.starts_with('1') {
        return Event::Closed { code: None };
    }
    Event::Other(format!("engine.io {}", text.chars().next().unwrap_or(' ')))
}

type Ws = WebSocketStream<TcpStream>;

#[derive(Debug)]
pub enum Conn {
    Ws(Box<Ws>),
    Sse {
        response: reqwest::Response,
        buffer: String,
    },
    Socketio(Box<Ws>),
}

fn addr_of(url: &str) -> Result<SocketAddr, ConnError> {
    let authority = url.split_once("://").map_or(url, |(_, a)| a);
    let authority = authority.split('/').next().unwrap_or(authority);
    authority
        .parse()
        .map_err(|_| ConnError::new("bad_url (use http://ip:port)"))
}

/// Small buffers: the generator holds tens of thousands of these.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

async fn tcp(url: &str, source: Ipv4Addr) -> Result<TcpStream, ConnError> {
    let addr = addr_of(url)?;
    let socket =
        TcpSocket::new_v4().map_err(|e| ConnError::new(format!("socket: {}", e.kind())))?;
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(|e| ConnError::new(format!("bind: {}", e.kind())))?;
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| ConnError::new(format!("connect: {}", e.kind())))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn ws_handshake(
    url: String,
    cookie: Option<&str>,
    stream: TcpStream,
) -> Result<Ws, ConnError> {
    let mut request = url
        .into_client_request()
        .map_err(|_| ConnError::new("bad_url"))?;
    if let Some(cookie) = cookie {
        let value = cookie.parse().map_err(|_| ConnError::new("bad_cookie"))?;
        request.headers_mut().insert("cookie", value);
    }
    match tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config())).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            Err(ConnError::new(format!(
                "http_{}{}",
                response.status().as_u16(),
                error_code(body)
            )))
        }
        Err(err) => Err(ConnError::new(format!("handshake: {}", short(&err)))),
    }
}

fn short(err: &tungstenite::Error) -> String {
    match err {
        tungstenite::Error::Io(e) => format!("io {}", e.kind()),
        tungstenite::Error::Protocol(p) => format!("protocol {p}"),
        other => other.to_string().chars().take(40).collect(),
    }
}

impl Conn {
    /// Opens a session; for Rill, `cookie` is the session cookie header.
    pub async fn open(
        transport: Transport,
        url: &str,
        profile: uuid::Uuid,
        user: uuid::Uuid,
        cookie: Option<&str>,
        source: Ipv4Addr,
        http: &reqwest::Client,
    ) -> Result<Self, ConnError> {
        let ws_base = url.replacen("http", "ws", 1);
        match transport {
            Transport::Ws => {
                let stream = tcp(url, source).await?;
                let ws =
                    ws_handshake(format!("{ws_base}/live/{profile}/ws"), cookie, stream).await?;
                Ok(Self::Ws(Box::new(ws)))
            }
            Transport::Sse => {
                let mut request = http.get(format!("{url}/live/{profile}/sse"));
                if let Some(cookie) = cookie {
                    request = request.header("cookie", cookie);
                }
                let response = request
                    .send()
                    .await
                    .map_err(|e| ConnError::new(http_error_kind(&e)))?;
                let status = response.status().as_u16();
                if status != 200 {
                    let body = response.bytes().await.unwrap_or_default();
                    return Err(ConnError::new(format!(
                        "http_{status}{}",
                        error_code(&body)
                    )));
                }
                Ok(Self::Sse {
                    response,
                    buffer: String::new(),
                })
            }
            Transport::Socketio => {
                let stream = tcp(url, source).await?;
                let target = format!(
                    "{ws_base}/socket.io/?EIO=4&transport=websocket&user_id={user}&profile_id={profile}"
                );
                let mut ws = ws_handshake(target, None, stream).await?;
                // Engine.IO open packet, then the Socket.IO connect.
                expect_prefix(&mut ws, "0").await?;
                ws.send(Message::text("40"))
                    .await
                    .map_err(|e| ConnError::new(short(&e)))?;
                expect_prefix(&mut ws, "40").await?;
                Ok(Self::Socketio(Box::new(ws)))
            }
        }
    }

    /// The next event; `Closed` at the end (then do not call again).
    pub async fn next_event(&mut self) -> Event {
        match self {
            Self::Ws(ws) => next_ws(ws, false).await,
            Self::Socketio(ws) => next_ws(ws, true).await,
            Self::Sse { response, buffer } => loop {
                if let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let data: Vec<&str> = block
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(|d| d.strip_prefix(' ').unwrap_or(d))
                        .collect();
                    if data.is_empty() {
                        continue; // a comment: keep-alive
                    }
                    return parse_rill(&data.join("\n"));
                }
                match response.chunk().await {
                    Ok(Some(chunk)) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
                    _ => return Event::Closed { code: None },
                }
            },
        }
    }

    /// Sends a chat message (WebSocket kinds; SSE clients POST instead).
    pub async fn send(&mut self, body: &str, reference: &str) -> Result<(), ConnError> {
        let text = match self {
            Self::Ws(_) => {
                serde_json::json!({"type": "send", "body": body, "ref": reference}).to_string()
            }
            Self::Socketio(_) => format!(
                "42{}",
                serde_json::json!(["send", {"body": body, "ref": reference}])
            ),
            Self::Sse { .. } => return Err(ConnError::new("send_on_sse")),
        };
        match self {
            Self::Ws(ws) | Self::Socketio(ws) => ws
                .send(Message::text(text))
                .await
                .map_err(|e| ConnError::new(format!("send: {}", short(&e)))),
            Self::Sse { .. } => Ok(()),
        }
    }

    /// Answers an Engine.IO ping.
    pub async fn pong(&mut self) -> Result<(), ConnError> {
        match self {
            Self::Socketio(ws) => ws
                .send(Message::text("3"))
                .await
                .map_err(|e| ConnError::new(format!("pong: {}", short(&e)))),
            _ => Ok(()),
        }
    }

    /// Closes politely (WebSocket close frame), without waiting long.
    pub async fn close(self) {
        if let Self::Ws(mut ws) | Self::Socketio(mut ws) = self {
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(1),
                WebSocketStream::close(&mut *ws, None),
            )
            .await;
        }
    }
}

async fn next_ws(ws: &mut Ws, socketio: bool) -> Event {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return if socketio {
                    parse_socketio(text.as_str())
                } else {
                    parse_rill(text.as_str())
                };
            }
            Some(Ok(Message::Close(frame))) => {
                return Event::Closed {
                    code: frame.map(|f| u16::from(f.code)),
                };
            }
            // Pings are answered by the stream while it is polled.
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Event::Closed { code: None },
        }
    }
}

async fn expect_prefix(ws: &mut Ws, prefix: &str) -> Result<(), ConnError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.as_str().starts_with(prefix) => return Ok(()),
            Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                let _ = ws.send(Message::text("3")).await;
            }
            Some(Ok(Message::Text(text))) => {
                return Err(ConnError::new(format!(
                    "socketio_unexpected {}",
                    text.as_str().chars().take(3).collect::<String>()
                )));
            }
            Some(Ok(_)) => continue,
            _ => return Err(ConnError::new("socketio_closed_in_handshake")),
        }
    }
}

/// `_<code>` from a JSON error body `{"error": "<code>", ...}`, or nothing.
fn error_code(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        error: String,
    }
    serde_json::from_slice::<Body>(body)
        .map(|b| format!("_{}", b.error))
        .unwrap_or_default()
}

pub fn http_error_kind(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "http_timeout".into()
    } else if err.is_connect() {
        "http_connect".into()
    } else {
        "http_error".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rill_events_parse() {
        assert_eq!(
            parse_rill(r#"{"type":"ready","edge_id":"e","profile_id":"p","user_id":"u"}"#),
            Event::Ready
        );
        assert_eq!(
            parse_rill(r#"{"type":"message","id":"i","body":"lt:1:2:xx","sent_at":1}"#),
            Event::Message {
                body: "lt:1:2:xx".into()
            }
        );
        assert_eq!(
            parse_rill(r#"{"type":"ack","ref":"7","id":"i"}"#),
            Event::Ack {
                reference: Some("7".into())
            }
        );
        assert_eq!(
            parse_rill(r#"{"type":"join"}"#),
            Event::Other("join".into())
        );
    }

    #[test]
    fn socketio_packets_parse() {
        assert_eq!(parse_socketio("2"), Event::EnginePing);
        assert_eq!(parse_socketio(r#"42["ready",{}]"#), Event::Ready);
        assert_eq!(
            parse_socketio(r#"42["message",{"id":"i","body":"b"}]"#),
            Event::Message { body: "b".into() }
        );
        assert_eq!(
            parse_socketio(r#"42["ack",{"ref":"3"}]"#),
            Event::Ack {
                reference: Some("3".into())
            }
        );
        assert_eq!(parse_socketio(r#"42["pong"]"#), Event::Other("pong".into()));
    }
}
