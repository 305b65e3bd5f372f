//! RFC 6455 framing, server side: the client's masked frames in, whole
//! messages out; the server's frames encoded unmasked. No extension is
//! negotiated at the upgrade, so reserved bits must be zero.
//!
//! Written here rather than taken from tungstenite because tungstenite
//! keeps a read buffer and a write buffer (grown to the largest frame) in
//! every connection for its whole life; [`Decoder`] holds bytes only while
//! a frame is incomplete, so an idle session holds none.

use crate::disconnect::{Disconnect, close_code};

/// A whole message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Text(String),
    /// The edge speaks JSON text only; the content is not kept.
    Binary,
    Ping(Vec<u8>),
    Pong,
    /// The client's close frame, with its status code if it gave one.
    Close(Option<u16>),
}

/// What is wrong with the client's bytes; the connection must close with
/// [`FrameError::disconnect`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame or message larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("client frame is not masked")]
    Unmasked,
    #[error("reserved bits set (no extension was negotiated)")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("control frame fragmented or longer than 125 bytes")]
    BadControlFrame,
    #[error("continuation frame with no message to continue")]
    UnexpectedContinuation,
    #[error("new message before the fragmented one ended")]
    Interleaved,
    #[error("text message is not UTF-8")]
    NotUtf8,
    #[error("close frame with a bad status code")]
    BadClose,
}

impl FrameError {
    /// Why the session ends on this error; its close code is the one the
    /// error calls for (RFC 6455, 7.4.1).
    pub fn disconnect(&self) -> Disconnect {
        match self {
            Self::TooLarge { .. } => Disconnect::FrameTooLarge,
            Self::NotUtf8 => Disconnect::BadFrame {
                code: close_code::INVALID_DATA,
            },
            _ => Disconnect::BadFrame {
                code: close_code::PROTOCOL_ERROR,
            },
        }
    }
}

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Longest payload of a control frame.
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Turns the client's bytes into messages. Between messages it holds no
/// allocation.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes read and not yet decoded.
    bytes: Vec<u8>,
    /// A fragmented message so far: whether it is text, and its payload.
    /// Boxed: rare, and the decoder is in every idle session's memory.
    fragments: Option<Box<(bool, Vec<u8>)>>,
}

/// The fixed part of a frame.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Header length, payload length.
    header_len: usize,
    payload_len: usize,
}

impl Decoder {
    /// Adds bytes read from the socket.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Whether part of a frame or of a fragmented message is held (once
    /// [`Decoder::next`] returned `None`: what it could decode, it did).
    pub fn is_partial(&self) -> bool {
        !self.bytes.is_empty() || self.fragments.is_some()
    }

    /// The next whole message in the bytes so far, or `None` until more
    /// arrive. Frames and messages longer than `max` bytes are refused as
    /// soon as their header says so.
    pub fn next(&mut self, max: usize) -> Result<Option<Message>, FrameError> {
        loop {
            let Some(header) = parse_header(&self.bytes, max)? else {
                return Ok(None);
            };
            let end = header.header_len + header.payload_len;
            if self.bytes.len() < end {
                return Ok(None);
            }
            let mut payload = self.bytes[header.header_len..end].to_vec();
            self.consume(end);
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= header.mask[i % 4];
            }
            if let Some(message) = self.frame(header.fin, header.opcode, payload, max)? {
                return Ok(Some(message));
            }
        }
    }

    /// Drops `n` decoded bytes; frees the buffer once it is empty.
    fn consume(&mut self, n: usize) {
        if n == self.bytes.len() {
            self.bytes = Vec::new();
        } else {
            self.bytes.drain(..n);
        }
    }

    /// One frame's payload: a message when it completes one.
    fn frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: Vec<u8>,
        max: usize,
    ) -> Result<Option<Message>, FrameError> {
        let (text, whole) = match opcode {
            OP_PING => return Ok(Some(Message::Ping(payload))),
            OP_PONG => return Ok(Some(Message::Pong)),
            OP_CLOSE => return close(&payload).map(|code| Some(Message::Close(code))),
            OP_CONTINUATION => {
                let Some(mut fragments) = self.fragments.take() else {
                    return Err(FrameError::UnexpectedContinuation);
                };
                let (text, so_far) = &mut *fragments;
                if so_far.len() + payload.len() > max {
                    return Err(FrameError::TooLarge { max });
                }
                so_far.extend_from_slice(&payload);
                if !fin {
                    self.fragments = Some(fragments);
                    return Ok(None);
                }
                (*text, std::mem::take(so_far))
            }
            _ if self.fragments.is_some() => return Err(FrameError::Interleaved),
            _ if !fin => {
                self.fragments = Some(Box::new((opcode == OP_TEXT, payload)));
                return Ok(None);
            }
            _ => (opcode == OP_TEXT, payload),
        };
        if !text {
            return Ok(Some(Message::Binary));
        }
        String::from_utf8(whole)
            .map(|text| Some(Message::Text(text)))
            .map_err(|_| FrameError::NotUtf8)
    }
}

/// The header at the start of `bytes`, once all of it has arrived.
fn parse_header(bytes: &[u8], max: usize) -> Result<Option<Header>, FrameError> {
    let [b0, b1, ..] = *bytes else {
        return Ok(None);
    };
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(FrameError::UnknownOpcode(opcode));
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (length_len, short) = match b1 & 0x7F {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(n as usize)),
    };
    let control = opcode >= OP_CLOSE;
    if control && (!fin || short.is_none_or(|n| n > MAX_CONTROL_PAYLOAD)) {
        return Err(FrameError::BadControlFrame);
    }
    if bytes.len() < 2 + length_len {
        return Ok(None);
    }
    let payload_len = match short {
        Some(n) => n,
        None => {
            let mut be = [0u8; 8];
            be[8 - length_len..].copy_from_slice(&bytes[2..2 + length_len]);
            // Anything past usize (or past max, below) is too large.
            usize::try_from(u64::from_be_bytes(be)).unwrap_or(usize::MAX)
        }
    };
    if payload_len > max {
        return Err(FrameError::TooLarge { max });
    }
    let header_len = 2 + length_len + 4;
    if bytes.len() < header_len {
        return Ok(None);
    }
    let mask_at = 2 + length_len;
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&bytes[mask_at..mask_at + 4]);
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        header_len,
        payload_len,
    }))
}

/// The status code of a close frame's payload, checked (RFC 6455, 7.4).
fn close(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    let [hi, lo, reason @ ..] = payload else {
        return if payload.is_empty() {
            Ok(None)
        } else {
            Err(FrameError::BadClose)
        };
    };
    let code = u16::from_be_bytes([*hi, *lo]);
    let sendable = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
    if !sendable {
        return Err(FrameError::BadClose);
    }
    std::str::from_utf8(reason).map_err(|_| FrameError::NotUtf8)?;
    Ok(Some(code))
}

/// Appends one unmasked, unfragmented frame to `out`.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut to fit a control
/// frame) to `out`.
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut payload = code.to_be_bytes().to_vec();
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    encode(out, OP_CLOSE, &payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;

    /// A client frame: masked with a fixed key.
    fn client_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = vec![first_byte];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Message>, FrameError> {
        let mut decoder = Decoder::default();
        decoder.extend(bytes);
        let mut messages = Vec::new();
        while let Some(m) = decoder.next(MAX)? {
            messages.push(m);
        }
        assert!(decoder.bytes.is_empty(), "left {:?}", decoder.bytes);
        Ok(messages)
    }

    #[test]
    fn a_masked_text_frame_is_a_text_message() {
        let got = decode_all(&client_frame(0x81, b"{\"type\":\"ping\"}")).expect("ok");
        assert_eq!(got, [Message::Text("{\"type\":\"ping\"}".into())]);
    }

    #[test]
    fn a_frame_split_across_reads_waits_for_its_end_then_frees_the_buffer() {
        let frame = client_frame(0x81, "héllo".as_bytes());
        let mut decoder = Decoder::default();
        for (i, byte) in frame.iter().enumerate() {
            assert_eq!(decoder.next(MAX), Ok(None), "after {i} bytes");
            decoder.extend(&[*byte]);
        }
        assert_eq!(decoder.next(MAX), Ok(Some(Message::Text("héllo".into()))));
        assert_eq!(
            decoder.bytes.capacity(),
            0,
            "an idle decoder holds no buffer"
        );
    }

    #[test]
    fn several_frames_in_one_read_come_out_one_by_one() {
        let mut bytes = client_frame(0x81, b"a");
        bytes.extend(client_frame(0x89, b"p"));
        bytes.extend(client_frame(0x82, b"\x00\x01"));
        bytes.extend(client_frame(0x8A, b""));
        let got = decode_all(&bytes).expect("ok");
        assert_eq!(
            got,
            [
                Message::Text("a".into()),
                Message::Ping(b"p".to_vec()),
                Message::Binary,
                Message::Pong
            ]
        );
    }

    #[test]
    fn extended_lengths_of_16_and_64_bits_decode() {
        let medium = "m".repeat(300);
        assert_eq!(
            decode_all(&client_frame(0x81, medium.as_bytes())).expect("ok"),
            [Message::Text(medium)]
        );
        // A 64-bit length is legal for any size; this one is small.
        let mut frame = vec![0x81, 0x80 | 127];
        frame.extend_from_slice(&3u64.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(b"big");
        assert_eq!(
            decode_all(&frame).expect("ok"),
            [Message::Text("big".into())]
        );
    }

    #[test]
    fn fragments_make_one_message_with_control_frames_between_them() {
        let mut bytes = client_frame(0x01, b"he");
        bytes.extend(client_frame(0x89, b""));
        bytes.extend(client_frame(0x00, b"ll"));
        bytes.extend(client_frame(0x80, b"o"));
        assert_eq!(
            decode_all(&bytes).expect("ok"),
            [Message::Ping(Vec::new()), Message::Text("hello".into())]
        );
    }

    #[test]
    fn too_large_a_frame_is_refused_from_its_header_alone() {
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(MAX as u64 + 1).to_be_bytes());
        let mut decoder = Decoder::default();
        decoder.extend(&header);
        let err = decoder.next(MAX).expect_err("an error");
        assert_eq!(err, FrameError::TooLarge { max: MAX });
        assert_eq!(err.disconnect().close_code(), 1009);
    }

    #[test]
    fn too_large_a_message_of_small_fragments_is_refused() {
        let half = vec![b'x'; MAX / 2 + 1];
        let mut bytes = client_frame(0x01, &half);
        bytes.extend(client_frame(0x80, &half));
        assert_eq!(decode_all(&bytes), Err(FrameError::TooLarge { max: MAX }));
    }

    #[test]
    fn protocol_violations_are_refused_with_1002() {
        let unmasked = vec![0x81, 0x01, b'a'];
        let cases: [(Vec<u8>, FrameError); 7] = [
            (unmasked, FrameError::Unmasked),
            (client_frame(0xC1, b"a"), FrameError::ReservedBits),
            (client_frame(0x83, b"a"), FrameError::UnknownOpcode(3)),
            (client_frame(0x09, b""), FrameError::BadControlFrame),
            (client_frame(0x89, &[0; 126]), FrameError::BadControlFrame),
            (client_frame(0x80, b"a"), FrameError::UnexpectedContinuation),
            (
                [client_frame(0x01, b"a"), client_frame(0x81, b"b")].concat(),
                FrameError::Interleaved,
            ),
        ];
        for (bytes, want) in cases {
            let got = decode_all(&bytes).expect_err("an error");
            assert_eq!(got, want);
            assert_eq!(got.disconnect().close_code(), 1002, "{want}");
        }
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_with_1007() {
        let err = decode_all(&client_frame(0x81, &[0xC3, 0x28])).expect_err("an error");
        assert_eq!(err, FrameError::NotUtf8);
        assert_eq!(err.disconnect().close_code(), 1007);
    }

    #[test]
    fn close_frames_carry_a_valid_code_or_none() {
        assert_eq!(
            decode_all(&client_frame(0x88, b"")).expect("ok"),
            [Message::Close(None)]
        );
        let normal = [&1000u16.to_be_bytes()[..], b"bye"].concat();
        assert_eq!(
            decode_all(&client_frame(0x88, &normal)).expect("ok"),
            [Message::Close(Some(1000))]
        );
        for bad in [&[0x03][..], &1005u16.to_be_bytes(), &999u16.to_be_bytes()] {
            assert_eq!(
                decode_all(&client_frame(0x88, bad)),
                Err(FrameError::BadClose)
            );
        }
    }

    #[test]
    fn encoded_frames_use_the_shortest_length_and_no_mask() {
        let mut out = Vec::new();
        encode(&mut out, OP_TEXT, b"hi");
        assert_eq!(out, [0x81, 2, b'h', b'i']);
        for (len, header) in [(125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = Vec::new();
            encode(&mut out, OP_BINARY, &vec![0; len]);
            assert_eq!(out.len(), header + len, "payload of {len}");
            assert_eq!(out[1] & 0x80, 0, "server frames are not masked");
        }
    }

    #[test]
    fn close_reasons_are_cut_to_fit_a_control_frame_on_a_char_boundary() {
        let mut out = Vec::new();
        encode_close(&mut out, 1008, &"é".repeat(100));
        assert_eq!(out[0], 0x88);
        let len = out[1] as usize;
        assert!(len <= MAX_CONTROL_PAYLOAD);
        assert_eq!(&out[2..4], &1008u16.to_be_bytes());
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
