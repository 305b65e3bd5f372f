//! Test clients: HTTP with a cookie jar (the session cookie and Traefik's
//! sticky cookie), and WebSocket and SSE streams that read JSON events.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

/// How long a test waits for any one event before it fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client with its own cookie jar, like one browser. Clones share
/// the jar: tabs of the same browser.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    cookies: Arc<Mutex<BTreeMap<String, String>>>,
    /// Sent as `X-Api-Key` (a server's client).
    api_key: Option<String>,
    /// Sent as `Authorization: Bearer` (a connection token).
    bearer: Option<String>,
}

impl Client {
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            cookies: Arc::default(),
            api_key: None,
            bearer: None,
        }
    }

    /// This client with a connection token: every request (streams too)
    /// carries `Authorization: Bearer <token>`.
    pub fn with_token(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_owned());
        self
    }

    /// This client as a server: every request carries `key` as `X-Api-Key`.
    pub fn with_api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.to_owned());
        self
    }

    /// The headers every request of this client carries: its cookies, its
    /// API key, and (as a browser's page would) its own origin.
    fn headers(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let mut request = request
            .header("cookie", self.cookie_header())
            .header("origin", &self.base);
        if let Some(key) = &self.api_key {
            request = request.header("x-api-key", key);
        }
        if let Some(token) = &self.bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request
    }

    /// The `Cookie` header this client sends.
    pub fn cookie_header(&self) -> String {
        let jar = self.cookies.lock().expect("cookie jar");
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Sets a cookie by hand (to forge one, say).
    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies
            .lock()
            .expect("cookie jar")
            .insert(name.to_owned(), value.to_owned());
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().expect("cookie jar").get(name).cloned()
    }

    fn keep_cookies(&self, response: &reqwest::Response) {
        let mut jar = self.cookies.lock().expect("cookie jar");
        for header in response.headers().get_all("set-cookie") {
            let Ok(text) = header.to_str() else { continue };
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() {
                    jar.remove(name.trim());
                } else {
                    jar.insert(name.trim().to_owned(), value.trim().to_owned());
                }
            }
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        let response = self
            .headers(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        self.keep_cookies(&response);
        response
    }

    pub async fn put(&self, path: &str) -> reqwest::Response {
        self.send(self.http.put(format!("{}{path}", self.base)))
            .await
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let response = self.headers(request).send().await.expect("HTTP request");
        self.keep_cookies(&response);
        response
    }

    /// POSTs `body` as it is, with the given content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let response = self
            .headers(self.http.post(format!("{}{path}", self.base)))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        self.keep_cookies(&response);
        response
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post_raw(path, "application/json", body.to_string())
            .await
    }

    /// Logs in as `user` with a connection token signed with the test
    /// stack's key (as an application's backend would); panics unless the
    /// edge accepts.
    pub async fn login(&self, user: uuid::Uuid) {
        let token = crate::stack::test_token(user);
        let response = self
            .post_json("/login/token", &serde_json::json!({ "token": token }))
            .await;
        assert_eq!(
            response.status(),
            200,
            "login failed: {:?}",
            response.text().await
        );
    }

    /// The sum of every series of Prometheus metric `name` (all label
    /// sets; a counter's `_total` too) on this client's `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .get("/metrics")
            .await
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|line| {
                let rest = line.strip_prefix(name).unwrap_or("#");
                let rest = rest.strip_prefix("_total").unwrap_or(rest);
                rest.starts_with(['{', ' '])
            })
            .map(|line| {
                let value = line.rsplit(' ').next().unwrap_or_default();
                value
                    .parse::<f64>()
                    .unwrap_or_else(|_| panic!("not a number: {line}"))
            })
            .sum()
    }

    /// Which edge answers this client now (the `x-rill-edge` header).
    pub async fn edge(&self) -> String {
        let response = self.get("/healthz").await;
        response
            .headers()
            .get("x-rill-edge")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .expect("x-rill-edge header")
    }

    /// Opens a WebSocket on `profile`; panics unless it opens.
    pub async fn ws(&self, profile: uuid::Uuid) -> WsClient {
        match self.try_ws(&format!("/live/{profile}/ws"), &[]).await {
            Ok(ws) => ws,
            Err((status, body)) => panic!("WebSocket refused: {status} {body}"),
        }
    }

    /// Opens a WebSocket on `profile` whose socket has a receive buffer of
    /// `bytes` (fixed, so the kernel does not grow it): a client that stops
    /// reading then stalls the edge's writes soon, as a slow phone would.
    pub async fn ws_with_receive_buffer(&self, profile: uuid::Uuid, bytes: u32) -> WsClient {
        let authority = self.base.split_once("://").map_or(&*self.base, |(_, a)| a);
        let addr: std::net::SocketAddr = authority.parse().expect("base is http://ip:port");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let tcp = socket.connect(addr).await.expect("connect");
        let request = self.ws_request(&format!("/live/{profile}/ws"), &[]);
        let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
        let (stream, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .expect("WebSocket opens");
        WsClient {
            stream,
            passed_over: VecDeque::new(),
        }
    }

    /// Opens an SSE stream on a socket with a `bytes` receive buffer, reads
    /// the response head (it must be 200), and hands back the socket: a
    /// client that then stops reading.
    pub async fn stalled_sse(&self, profile: uuid::Uuid, bytes: u32) -> tokio::net::TcpStream {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let authority = self.base.split_once("://").map_or(&*self.base, |(_, a)| a);
        let addr: std::net::SocketAddr = authority.parse().expect("base is http://ip:port");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let mut tcp = socket.connect(addr).await.expect("connect");
        let request = format!(
            "GET /live/{profile}/sse HTTP/1.1\r\nHost: {authority}\r\nCookie: {}\r\nAccept: text/event-stream\r\n\r\n",
            self.cookie_header()
        );
        tcp.write_all(request.as_bytes()).await.expect("request");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                tcp.read(&mut byte).await.expect("read"),
                1,
                "closed before the head"
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 200"), "SSE refused: {head}");
        tcp
    }

    fn ws_request(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> tungstenite::handshake::client::Request {
        let url = format!("{}{path}", self.base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().expect("ws request");
        let cookie = self.cookie_header();
        if !cookie.is_empty() {
            request
                .headers_mut()
                .insert("cookie", cookie.parse().expect("cookie header"));
        }
        if let Some(token) = &self.bearer {
            let value = format!("Bearer {token}");
            request.headers_mut().insert(
                "authorization",
                value.parse().expect("authorization header"),
            );
        }
        for (name, value) in headers {
            let name =
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name");
            request
                .headers_mut()
                .insert(name, value.parse().expect("header value"));
        }
        request
    }

    /// Opens a WebSocket on `path` with extra headers; on refusal, the
    /// HTTP status and body.
    pub async fn try_ws(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, (u16, String)> {
        let request = self.ws_request(path, headers);
        match tokio_tungstenite::connect_async(request).await {
            Ok((stream, _)) => Ok(WsClient {
                stream,
                passed_over: VecDeque::new(),
            }),
            Err(tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned());
                Err((response.status().as_u16(), body.unwrap_or_default()))
            }
            Err(err) => panic!("WebSocket connect failed: {err}"),
        }
    }

    /// Opens an SSE stream on `profile`; panics unless it opens.
    pub async fn sse(&self, profile: uuid::Uuid) -> SseClient {
        match self.try_sse(&format!("/live/{profile}/sse"), &[]).await {
            Ok(sse) => sse,
            Err((status, body)) => panic!("SSE refused: {status} {body}"),
        }
    }

    /// Opens an SSE stream on `path` with extra headers (`Last-Event-ID`,
    /// say); on refusal, the HTTP status and body.
    pub async fn try_sse(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<SseClient, (u16, String)> {
        let mut request = self.headers(self.http.get(format!("{}{path}", self.base)));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("SSE request");
        self.keep_cookies(&response);
        if response.status() != 200 {
            let status = response.status().as_u16();
            return Err((status, response.text().await.unwrap_or_default()));
        }
        Ok(SseClient {
            response,
            buffer: String::new(),
            comments: 0,
        })
    }
}

/// A WebSocket that reads JSON events.
///
/// Events of other kinds passed over by [`WsClient::next_of_type`] are
/// kept, in order, for the next read: the edge promises no order between
/// different kinds (a sender's own message may come before its `ack`).
#[derive(Debug)]
pub struct WsClient {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    passed_over: VecDeque<Value>,
}

impl WsClient {
    pub async fn send(&mut self, frame: &Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.into()))
            .await
            .expect("WebSocket send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.stream
            .send(Message::Binary(bytes.into()))
            .await
            .expect("WebSocket send");
    }

    /// Sends any message, raw frames included (protocol tests).
    pub async fn send_message(&mut self, message: Message) {
        self.stream.send(message).await.expect("WebSocket send");
    }

    /// Reads until the server's next pong, skipping events; its payload.
    pub async fn next_pong(&mut self) -> Vec<u8> {
        loop {
            let message = tokio::time::timeout(EVENT_TIMEOUT, self.stream.next())
                .await
                .expect("no pong within the timeout");
            match message {
                Some(Ok(Message::Pong(payload))) => return payload.to_vec(),
                Some(Ok(Message::Close(frame))) => {
                    panic!("closed while waiting for a pong: {frame:?}")
                }
                Some(Ok(_)) => continue,
                other => panic!("WebSocket ended while waiting for a pong: {other:?}"),
            }
        }
    }

    /// The next JSON event (one passed over first); panics on close or
    /// after [`EVENT_TIMEOUT`].
    pub async fn next_event(&mut self) -> Value {
        if let Some(event) = self.passed_over.pop_front() {
            return event;
        }
        match self.next_message().await {
            Ok(value) => value,
            Err(close) => panic!("WebSocket closed while an event was expected: {close:?}"),
        }
    }

    /// The next event of type `kind`; events of other kinds are kept for
    /// later reads.
    pub async fn next_of_type(&mut self, kind: &str) -> Value {
        if let Some(at) = self.passed_over.iter().position(|e| e["type"] == kind) {
            return self
                .passed_over
                .remove(at)
                .expect("a position in the deque");
        }
        loop {
            let event = match self.next_message().await {
                Ok(event) => event,
                Err(close) => panic!("WebSocket closed while a {kind} was expected: {close:?}"),
            };
            if event["type"] == kind {
                return event;
            }
            self.passed_over.push_back(event);
        }
    }

    /// Reads until the server's next ping, skipping events.
    pub async fn next_ping(&mut self) {
        loop {
            let message = tokio::time::timeout(EVENT_TIMEOUT, self.stream.next())
                .await
                .expect("no ping within the timeout");
            match message {
                Some(Ok(Message::Ping(_))) => return,
                Some(Ok(Message::Close(frame))) => {
                    panic!("closed while waiting for a ping: {frame:?}")
                }
                Some(Ok(_)) => continue,
                other => panic!("WebSocket ended while waiting for a ping: {other:?}"),
            }
        }
    }

    /// Reads until the server closes; returns its close frame.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            if let Err(close) = self.next_message().await {
                return close;
            }
        }
    }

    /// The next JSON event, or the close frame (if any) when the session
    /// ends (closed, reset); panics after [`EVENT_TIMEOUT`].
    pub async fn next_or_close(&mut self) -> Result<Value, Option<CloseFrame>> {
        self.next_message().await
    }

    async fn next_message(&mut self) -> Result<Value, Option<CloseFrame>> {
        loop {
            let message = tokio::time::timeout(EVENT_TIMEOUT, self.stream.next())
                .await
                .expect("no WebSocket event within the timeout");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(text.as_str()).expect("events are JSON"));
                }
                Some(Ok(Message::Close(frame))) => return Err(frame),
                None => return Err(None),
                Some(Ok(_)) => continue,
                // Reset, say, when the edge died.
                Some(Err(_)) => return Err(None),
            }
        }
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

/// An SSE stream that reads JSON events.
#[derive(Debug)]
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
    /// Comment blocks (heartbeats) read so far.
    pub comments: usize,
}

impl SseClient {
    /// The next event (comments skipped); panics at the end of the stream
    /// or after [`EVENT_TIMEOUT`].
    pub async fn next_event(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_event(&block) {
                    return event;
                }
                if block.starts_with(':') {
                    self.comments += 1;
                }
                continue;
            }
            let chunk = tokio::time::timeout(EVENT_TIMEOUT, self.response.chunk())
                .await
                .expect("no SSE event within the timeout")
                .expect("SSE read")
                .expect("SSE stream ended while an event was expected");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event, or `None` when the server ends the stream.
    pub async fn next_or_end(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_event(&block) {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout(EVENT_TIMEOUT, self.response.chunk())
                .await
                .expect("no SSE event within the timeout")
                .ok()
                .flatten()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event named `kind`, skipping others.
    pub async fn next_of_type(&mut self, kind: &str) -> SseEvent {
        loop {
            let event = self.next_event().await;
            if event.event == kind {
                return event;
            }
        }
    }
}

fn parse_event(block: &str) -> Option<SseEvent> {
    let (mut event, mut id, mut data) = (String::from("message"), None, Vec::new());
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "" => {} // a comment (keep-alive)
            "event" => event = value.to_owned(),
            "id" => id = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() {
        return None;
    }
    let data = serde_json::from_str(&data.join("\n")).expect("SSE data is JSON");
    Some(SseEvent { event, id, data })
}
