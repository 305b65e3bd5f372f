//! An upgraded connection: messages read from the TCP stream through the
//! [`Decoder`], frames written straight to it. Nothing is buffered between
//! reads or after a write: an idle socket costs its TCP stream and a few
//! words.
//!
//! A message begun must end within `limits.fragment_timeout_secs`: the
//! decoder holds its parts (up to `limits.max_frame_bytes`) until it does,
//! and a client that answers pings while never finishing one would keep
//! them for ever.

use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::frame::{self, Decoder, FrameError, Message};

/// How long a close frame may take to write and the client to answer it
/// before the socket is dropped.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes taken from the kernel per read; the decoder keeps only what is
/// left of an incomplete frame.
pub const READ_CHUNK: usize = 4096;

/// Why frames were not written.
#[derive(Debug, thiserror::Error)]
pub(super) enum WriteError {
    #[error(transparent)]
    Closed(#[from] io::Error),
    /// The client left its receive window shut for the whole timeout.
    #[error("the client did not read for the whole write timeout")]
    TooSlow,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A message begun was not finished within the fragment timeout.
    #[error("a message was not finished in time")]
    Unfinished,
}

#[derive(Debug)]
pub(super) struct Socket {
    tcp: TcpStream,
    decoder: Decoder,
    /// Longest frame or message taken from the client.
    max_message_bytes: usize,
    /// How long a message may take from its first byte to its last.
    fragment_timeout: Duration,
    /// When the message in the decoder must be finished; set only while
    /// part of one is there (boxed: an idle socket holds no timer).
    unfinished: Option<Pin<Box<Sleep>>>,
}

/// Frames to write in one go.
#[derive(Debug, Default)]
pub(super) struct Frames(Vec<u8>);

impl Frames {
    pub fn text(&mut self, text: &str) -> &mut Self {
        frame::encode(&mut self.0, frame::OP_TEXT, text.as_bytes());
        self
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl Socket {
    /// `already_read`: bytes that came with the upgrade request.
    pub fn new(
        tcp: TcpStream,
        already_read: &[u8],
        max_message_bytes: usize,
        fragment_timeout: Duration,
    ) -> Self {
        let mut decoder = Decoder::default();
        decoder.extend(already_read);
        Self {
            tcp,
            decoder,
            max_message_bytes,
            fragment_timeout,
            unfinished: None,
        }
    }

    /// The client's next message; `None` once it closed the connection;
    /// [`ReadError::Unfinished`] once a message begun took longer than the
    /// fragment timeout (control frames between its parts, or a partial
    /// control frame after it, do not make it longer). Cancel-safe: what
    /// was read before a cancel stays in the decoder, and the deadline in
    /// the socket.
    pub async fn read(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            if let Some(message) = self.decoder.next(self.max_message_bytes)? {
                if matches!(message, Message::Text(_) | Message::Binary) {
                    // The next message's time starts with its first byte.
                    self.unfinished = None;
                }
                return Ok(Some(message));
            }
            if !self.decoder.is_partial() {
                self.unfinished = None;
            } else if self.unfinished.is_none() {
                self.unfinished = Some(Box::pin(tokio::time::sleep(self.fragment_timeout)));
            }
            // Not `readable()`: its future holds a waiter node (150 bytes in
            // every idle session's task); this one keeps the waker in the
            // socket's registration, which has one reader here.
            std::future::poll_fn(|cx| {
                if let Some(deadline) = &mut self.unfinished
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(ReadError::Unfinished));
                }
                self.tcp.poll_read_ready(cx).map_err(ReadError::Io)
            })
            .await?;
            let mut chunk = [0u8; READ_CHUNK];
            match self.tcp.try_read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.decoder.extend(&chunk[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Writes `frames`, waiting at most `timeout` for a client that does
    /// not read. What the kernel takes at once (nearly always all of it) is
    /// written without waiting; only the rest waits, in a boxed future, so
    /// that every idle session's task does not hold a timer's room.
    pub async fn write(&mut self, frames: &Frames, timeout: Duration) -> Result<(), WriteError> {
        let written = self.write_now(&frames.0)?;
        if written == frames.0.len() {
            return Ok(());
        }
        let rest = self.tcp.write_all(&frames.0[written..]);
        match Box::pin(tokio::time::timeout(timeout, rest)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(WriteError::TooSlow),
        }
    }

    /// Writes what the socket takes without waiting; how much.
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < bytes.len() {
            match self.tcp.try_write(&bytes[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err),
            }
        }
        Ok(written)
    }

    pub async fn ping(&mut self, timeout: Duration) -> Result<(), WriteError> {
        self.control(frame::OP_PING, &[], timeout).await
    }

    pub async fn pong(&mut self, payload: &[u8], timeout: Duration) -> Result<(), WriteError> {
        self.control(frame::OP_PONG, payload, timeout).await
    }

    async fn control(
        &mut self,
        opcode: u8,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(), WriteError> {
        let mut out = Frames::default();
        frame::encode(&mut out.0, opcode, payload);
        self.write(&out, timeout).await
    }

    /// Answers a close frame the client sent (with its code, RFC 6455
    /// 5.5.1), then closes the connection at once: both sides have said
    /// close, and the server closes TCP first (7.1.1). Waiting for the
    /// client's end of file, as [`close`](Self::close) does, kept every
    /// client-closed session (and its lock) a second longer: a client
    /// waits for the server to close.
    pub async fn answer_close(&mut self, code: u16) {
        let mut out = Frames::default();
        frame::encode_close(&mut out.0, code, "");
        if self.write(&out, CLOSE_TIMEOUT).await.is_ok() {
            let _ = self.tcp.shutdown().await;
        }
    }

    /// Sends a close frame, then reads and drops what the client still
    /// sends until it closes its side, all within [`CLOSE_TIMEOUT`]:
    /// closing a socket with unread bytes in it (the rest of a refused
    /// oversized frame, say) makes the kernel reset the connection, and the
    /// client may then never read the close frame.
    pub async fn close(&mut self, code: u16, reason: &str) {
        let mut out = Frames::default();
        frame::encode_close(&mut out.0, code, reason);
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            if self.write(&out, CLOSE_TIMEOUT).await.is_ok() {
                let mut sink = [0u8; 512];
                while matches!(self.tcp.read(&mut sink).await, Ok(n) if n > 0) {}
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("io");
        let client = TcpStream::connect(listener.local_addr().expect("ok"))
            .await
            .expect("ok");
        let (server, _) = listener.accept().await.expect("io");
        (Socket::new(server, &[], 64, FRAGMENT_TIMEOUT), client)
    }

    const FRAGMENT_TIMEOUT: Duration = Duration::from_secs(30);

    /// "hi" as a masked client text frame (mask of zeros).
    const HI: [u8; 8] = [0x81, 0x82, 0, 0, 0, 0, b'h', b'i'];

    #[tokio::test]
    async fn reads_a_message_sent_in_two_writes_and_eof() {
        let (mut socket, mut client) = pair().await;
        client.write_all(&HI[..3]).await.expect("io");
        let reading = tokio::spawn(async move {
            let first = socket.read().await.expect("io");
            let second = socket.read().await.expect("io");
            (first, second)
        });
        tokio::task::yield_now().await;
        client.write_all(&HI[3..]).await.expect("io");
        drop(client);
        let (first, second) = reading.await.expect("io");
        assert_eq!(first, Some(Message::Text("hi".into())));
        assert_eq!(second, None, "EOF ends the stream");
    }

    #[tokio::test]
    async fn bytes_read_before_the_upgrade_completed_are_decoded_first() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("io");
        let _client = TcpStream::connect(listener.local_addr().expect("ok"))
            .await
            .expect("ok");
        let (server, _) = listener.accept().await.expect("io");
        let mut socket = Socket::new(server, &HI, 64, FRAGMENT_TIMEOUT);
        assert_eq!(
            socket.read().await.expect("io"),
            Some(Message::Text("hi".into()))
        );
    }

    #[tokio::test]
    async fn a_cancelled_read_loses_nothing() {
        let (mut socket, mut client) = pair().await;
        client.write_all(&HI[..4]).await.expect("io");
        // Reads the first bytes, then is cancelled while waiting for more.
        let timed_out = tokio::time::timeout(Duration::from_millis(50), socket.read()).await;
        assert!(timed_out.is_err());
        client.write_all(&HI[4..]).await.expect("io");
        assert_eq!(
            socket.read().await.expect("io"),
            Some(Message::Text("hi".into()))
        );
    }

    #[tokio::test]
    async fn writes_frames_and_a_close_the_client_can_read() {
        let (mut socket, mut client) = pair().await;
        let mut frames = Frames::default();
        frames.text("a").text("b");
        socket
            .write(&frames, Duration::from_secs(1))
            .await
            .expect("written");
        let closing = tokio::spawn(async move { socket.close(1008, "too slow").await });
        let mut got = vec![0u8; 6 + 12];
        client.read_exact(&mut got).await.expect("io");
        assert_eq!(&got[..6], &[0x81, 1, b'a', 0x81, 1, b'b']);
        assert_eq!(&got[6..10], &[0x88, 10, 0x03, 0xF0]);
        assert_eq!(&got[10..], b"too slow");
        drop(client);
        closing.await.expect("io");
    }

    /// With the clock paused, waiting on the client would let time jump
    /// to the close timeout.
    #[tokio::test(start_paused = true)]
    async fn a_close_the_client_sent_is_answered_and_the_connection_closed_at_once() {
        let (mut socket, mut client) = pair().await;
        client
            .write_all(&frame(0x88, &[0x03, 0xE8]))
            .await
            .expect("io");
        assert_eq!(
            socket.read().await.expect("io"),
            Some(Message::Close(Some(1000)))
        );
        let started = tokio::time::Instant::now();
        socket.answer_close(1000).await;
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "did not wait for the client"
        );
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("io");
        assert_eq!(
            got,
            [0x88, 2, 0x03, 0xE8],
            "the close answered, then end of file"
        );
    }

    #[tokio::test]
    async fn a_write_the_client_does_not_read_ends_too_slow() {
        let (mut socket, _client) = pair().await;
        let mut frames = Frames::default();
        let chunk = "x".repeat(64 * 1024);
        for _ in 0..512 {
            frames.text(&chunk); // 32 MiB: more than both sides' socket buffers
        }
        match socket.write(&frames, Duration::from_millis(200)).await {
            Err(WriteError::TooSlow) => {}
            other => panic!("expected too slow, got {other:?}"),
        }
    }

    /// A masked client frame with a mask of zeros.
    fn frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first_byte, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        out.extend_from_slice(payload);
        out
    }

    /// With the clock paused, a read that waits on the socket lets time
    /// jump to the next timer: `timeout(d, read())` is "nothing for d".
    #[tokio::test(start_paused = true)]
    async fn a_message_left_unfinished_ends_the_read_pings_or_not() {
        let (mut socket, mut client) = pair().await;
        // The first part of a fragmented text message, then pings only.
        client.write_all(&frame(0x01, b"he")).await.expect("io");
        let waited = tokio::time::timeout(Duration::from_secs(20), socket.read()).await;
        assert!(waited.is_err(), "waits for the rest within the timeout");
        for _ in 0..3 {
            client.write_all(&frame(0x89, b"")).await.expect("io");
            let ping = socket.read().await.expect("io");
            assert_eq!(ping, Some(Message::Ping(Vec::new())));
        }
        match tokio::time::timeout(Duration::from_secs(20), socket.read()).await {
            Ok(Err(ReadError::Unfinished)) => {}
            other => panic!("expected unfinished, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_message_has_its_own_time_and_an_idle_socket_none() {
        let (mut socket, mut client) = pair().await;
        for _ in 0..4 {
            // A message in two writes, 20 s apart: each within the timeout,
            // together past it.
            let whole = frame(0x81, b"hi");
            client.write_all(&whole[..3]).await.expect("io");
            let partial = tokio::time::timeout(Duration::from_secs(20), socket.read()).await;
            assert!(partial.is_err(), "waits for the rest");
            assert!(socket.unfinished.is_some(), "a deadline while partial");
            client.write_all(&whole[3..]).await.expect("io");
            let read = socket.read().await.expect("io");
            assert_eq!(read, Some(Message::Text("hi".into())));
            assert!(socket.unfinished.is_none(), "none once the message ended");
        }
        // Idle for longer than the timeout: nothing is unfinished.
        let idle = tokio::time::timeout(Duration::from_secs(100), socket.read()).await;
        assert!(idle.is_err(), "still waiting, not failed");
    }

    #[tokio::test]
    async fn a_too_large_frame_is_an_error_with_its_close_code() {
        let (mut socket, mut client) = pair().await;
        client
            .write_all(&[0x81, 0x80 | 126, 0x01, 0x00])
            .await
            .expect("ok");
        match socket.read().await {
            Err(ReadError::Frame(err)) => assert_eq!(err.disconnect().close_code(), 1009),
            other => panic!("expected a frame error, got {other:?}"),
        }
    }
}
