//! Tracks WebSocket frame boundaries in a byte stream that is forwarded unchanged.
//!
//! Frame headers are parsed with tungstenite's `FrameHeader` parser; payloads are skipped by
//! length, never unmasked, decompressed or copied. That is enough to count messages, measure
//! message sizes and know where the proxy may insert a frame of its own.

use std::io::Cursor;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Longest possible frame header: 2 + 8 (extended length) + 4 (mask).
const MAX_HEADER: usize = 14;

/// What one frame header said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// The opcode.
    pub opcode: OpCode,
    /// FIN bit.
    pub fin: bool,
    /// Payload length.
    pub len: u64,
}

/// Per-direction frame boundary tracker.
#[derive(Debug, Default)]
pub struct FrameTracker {
    header: [u8; MAX_HEADER],
    header_len: usize,
    remaining: u64,
    message_bytes: u64,
    lost: bool,
}

impl FrameTracker {
    /// Whether the stream is between frames (a proxy frame may be written now).
    pub fn at_boundary(&self) -> bool {
        !self.lost && self.remaining == 0 && self.header_len == 0
    }

    /// Whether the stream stopped parsing as WebSocket frames; bytes are still forwarded and the
    /// endpoints judge them.
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Payload bytes of the message in progress, so far.
    pub fn message_bytes(&self) -> u64 {
        self.message_bytes
    }

    /// Consumes bytes that are being forwarded, calling `on_frame` for every frame header seen.
    pub fn feed(&mut self, mut data: &[u8], mut on_frame: impl FnMut(FrameInfo, &Self)) {
        while !data.is_empty() && !self.lost {
            if self.remaining > 0 {
                let take = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= take as u64;
                data = &data[take..];
                continue;
            }
            let old = self.header_len;
            let copy = (MAX_HEADER - old).min(data.len());
            self.header[old..old + copy].copy_from_slice(&data[..copy]);
            let mut cursor = Cursor::new(&self.header[..old + copy]);
            match FrameHeader::parse(&mut cursor) {
                Ok(Some((h, len))) => {
                    let used = cursor.position() as usize - old;
                    data = &data[used..];
                    self.header_len = 0;
                    self.remaining = len;
                    let info = FrameInfo {
                        opcode: h.opcode,
                        fin: h.is_final,
                        len,
                    };
                    if let OpCode::Data(d) = h.opcode {
                        if d != Data::Continue {
                            self.message_bytes = 0;
                        }
                        self.message_bytes = self.message_bytes.saturating_add(len);
                    }
                    on_frame(info, self);
                }
                Ok(None) => {
                    self.header_len = old + copy;
                    data = &data[copy..];
                }
                Err(_) => self.lost = true,
            }
        }
    }
}

/// Whether a frame ends a data message.
pub fn ends_message(f: &FrameInfo) -> bool {
    f.fin && matches!(f.opcode, OpCode::Data(_))
}

/// Whether a frame is a close frame.
pub fn is_close(f: &FrameInfo) -> bool {
    f.opcode == OpCode::Control(Control::Close)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::Frame;

    fn encode(frames: Vec<Frame>) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            f.format(&mut out).unwrap();
        }
        out
    }

    fn masked(mut f: Frame) -> Frame {
        f.header_mut().mask = Some([1, 2, 3, 4]);
        f
    }

    #[test]
    fn counts_frames_at_any_split() {
        let big = vec![7u8; 70_000];
        let bytes = encode(vec![
            Frame::message(b"hello".to_vec(), OpCode::Data(Data::Text), true),
            masked(Frame::message(
                big.clone(),
                OpCode::Data(Data::Binary),
                false,
            )),
            Frame::message(b"x".to_vec(), OpCode::Data(Data::Continue), true),
            Frame::ping(b"p".to_vec()),
            masked(Frame::message(Vec::new(), OpCode::Data(Data::Text), true)),
        ]);
        for chunk in [1usize, 2, 3, 7, 13, 4096, bytes.len()] {
            let mut t = FrameTracker::default();
            let mut frames = Vec::new();
            let mut sizes = Vec::new();
            for c in bytes.chunks(chunk) {
                t.feed(c, |f, t| {
                    frames.push(f);
                    if ends_message(&f) {
                        sizes.push(t.message_bytes());
                    }
                });
            }
            assert_eq!(frames.len(), 5, "chunk {chunk}");
            assert_eq!(sizes, vec![5, 70_001, 0], "chunk {chunk}");
            assert!(t.at_boundary());
            assert_eq!(frames[1].len, 70_000);
        }
    }

    #[test]
    fn mid_frame_is_not_a_boundary() {
        let bytes = encode(vec![Frame::message(
            vec![0; 100],
            OpCode::Data(Data::Binary),
            true,
        )]);
        let mut t = FrameTracker::default();
        t.feed(&bytes[..50], |_, _| {});
        assert!(!t.at_boundary());
        t.feed(&bytes[50..], |_, _| {});
        assert!(t.at_boundary());
    }

    #[test]
    fn garbage_marks_stream_lost() {
        let mut t = FrameTracker::default();
        t.feed(&[0x83, 0x00], |_, _| {});
        assert!(t.is_lost());
    }
}
