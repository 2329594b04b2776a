//! The frame tracker: a socket-free state machine over one direction of a WebSocket stream.
//! `feed(bytes)` returns what the pump must do — forward a range unchanged, release a held pong,
//! record a close (and its code), stop at a message over the limit, turn opaque — without ever
//! copying, unmasking or inflating a data payload.
//!
//! Whenever the tracker is [`at_boundary`](Tracker::at_boundary), everything it told the pump to
//! forward ends at a frame boundary, so the pump may insert a ping or close frame there.

use std::io::Cursor;
use std::ops::Range;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Largest control frame payload (RFC 6455 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// What the pump must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Forward these bytes of the input unchanged.
    Forward(Range<usize>),
    /// Forward these bytes: a held pong that does not answer the proxy's ping.
    Release(Vec<u8>),
    /// A close frame began (its code, if any, follows as [`Action::CloseCode`]).
    Close,
    /// The status code of the close frame (1005 when it carries none, RFC 6455 7.1.5).
    CloseCode(u16),
    /// The current message grew past the limit: nothing more is forwarded.
    TooBig,
    /// The stream stopped parsing as WebSocket: from here on bytes pass unparsed, and only the
    /// message limit (counting every byte) still applies.
    Opaque,
}

/// What one `feed` saw, besides its actions.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Bytes at the end of the input that start an incomplete frame header; the pump feeds them
    /// again, followed by what arrives next.
    pub(crate) carry: usize,
    /// Any frame (or, once opaque, any byte) arrived: the side is alive.
    pub(crate) activity: bool,
    /// A data frame arrived: the application is active.
    pub(crate) data: bool,
    /// Messages completed (final data frames).
    pub(crate) messages: u64,
}

/// A pong held back until its payload shows whether it answers the proxy's ping.
#[derive(Debug)]
struct Held {
    bytes: Vec<u8>,
    mask: Option<[u8; 4]>,
    header_len: usize,
}

impl Held {
    fn answers(&self, payload: &[u8; 8]) -> bool {
        let body = &self.bytes[self.header_len..];
        body.len() == payload.len()
            && body.iter().enumerate().all(|(i, b)| {
                let unmasked = self.mask.map_or(*b, |m| b ^ m[i % 4]);
                unmasked == payload[i]
            })
    }
}

/// The first two payload bytes of a close frame, gathered across reads.
#[derive(Debug)]
struct CloseCode {
    mask: Option<[u8; 4]>,
    got: usize,
    code: [u8; 2],
}

/// Tracks one direction of a session.
#[derive(Debug)]
pub(crate) struct Tracker {
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    held: Option<Held>,
    close_code: Option<CloseCode>,
    message_bytes: u64,
    max_message_bytes: u64,
    opaque: bool,
    discard: bool,
    ping_payload: [u8; 8],
}

impl Tracker {
    /// A tracker enforcing `max_message_bytes` (0 = unlimited) that swallows pongs carrying
    /// `ping_payload`.
    pub(crate) fn new(max_message_bytes: u64, ping_payload: [u8; 8]) -> Self {
        Self {
            remaining: 0,
            held: None,
            close_code: None,
            message_bytes: 0,
            max_message_bytes,
            opaque: false,
            discard: false,
            ping_payload,
        }
    }

    /// Whether everything forwarded so far ends at a frame boundary.
    pub(crate) fn at_boundary(&self) -> bool {
        !self.opaque && self.remaining == 0 && self.held.is_none()
    }

    /// Whether framing was lost.
    pub(crate) fn is_opaque(&self) -> bool {
        self.opaque
    }

    /// From now on nothing is forwarded (the proxy closed this direction); frames are still
    /// tracked so the peer's close is seen.
    pub(crate) fn discard(&mut self) {
        self.discard = true;
    }

    /// Whether nothing is forwarded any more.
    pub(crate) fn is_discarding(&self) -> bool {
        self.discard
    }

    /// Processes `input` (the carry of the previous call first); `out` is cleared and receives the
    /// actions. One loop (about 90 lines) on purpose: it is the parser's state machine over one
    /// buffer (header, payload, control frame, discard, opaque), and the property tests check it
    /// at every split point as a whole.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<Action>) -> Fed {
        out.clear();
        let mut fed = Fed::default();
        let end = input.len();
        let mut i = 0;
        // Start of the bytes not yet handed out as a Forward range.
        let mut pending = 0;
        while i < end {
            if self.opaque {
                fed.activity = true;
                self.count_opaque(end - i, &mut pending, i, out);
                break;
            }
            if self.remaining > 0 {
                i = self.payload(input, i, &mut pending, out);
                continue;
            }
            let mut cursor = Cursor::new(&input[i..end]);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    fed.carry = end - i;
                    break;
                }
                Err(_) => {
                    self.turn_opaque(out);
                    continue;
                }
            };
            let header_len = cursor.position() as usize;
            if let OpCode::Control(c) = header.opcode
                && (len > MAX_CONTROL_PAYLOAD || !header.is_final)
            {
                // Invalid per RFC 6455 5.5: the peers judge it, as they would without wsgate. A
                // close still counts as the start of a closing handshake, so a peer that then
                // drops TCP is mirrored without a close frame of the proxy's (Autobahn 7.3.6).
                if c == Control::Close {
                    out.push(Action::Close);
                }
                self.turn_opaque(out);
                continue;
            }
            fed.activity = true;
            match header.opcode {
                OpCode::Data(d) => {
                    fed.data = true;
                    if d != Data::Continue {
                        self.message_bytes = 0;
                    }
                    self.message_bytes = self.message_bytes.saturating_add(len);
                    if self.over_limit() && !self.discard {
                        self.forward(&mut pending, i, out);
                        out.push(Action::TooBig);
                        self.discard = true;
                    } else if header.is_final && !self.discard {
                        fed.messages += 1;
                    }
                }
                OpCode::Control(Control::Close) => {
                    out.push(Action::Close);
                    match len {
                        0 => out.push(Action::CloseCode(1005)),
                        1 => {}
                        _ => {
                            self.close_code = Some(CloseCode {
                                mask: header.mask,
                                got: 0,
                                code: [0; 2],
                            })
                        }
                    }
                }
                OpCode::Control(Control::Pong) if !self.discard => {
                    self.forward(&mut pending, i, out);
                    self.held = Some(Held {
                        bytes: input[i..i + header_len].to_vec(),
                        mask: header.mask,
                        header_len,
                    });
                    i += header_len;
                    pending = i;
                    self.remaining = len;
                    if len == 0 {
                        self.release_held(out);
                    }
                    continue;
                }
                _ => {}
            }
            self.remaining = len;
            i += header_len;
        }
        self.forward(&mut pending, end - fed.carry, out);
        fed
    }

    fn over_limit(&self) -> bool {
        self.max_message_bytes > 0 && self.message_bytes > self.max_message_bytes
    }

    /// Payload bytes of the current frame from `i`; returns where they end.
    fn payload(
        &mut self,
        input: &[u8],
        i: usize,
        pending: &mut usize,
        out: &mut Vec<Action>,
    ) -> usize {
        let take = self.remaining.min((input.len() - i) as u64) as usize;
        let bytes = &input[i..i + take];
        self.remaining -= take as u64;
        if let Some(c) = self.close_code.as_mut() {
            for b in bytes.iter().take(2 - c.got) {
                c.code[c.got] = c.mask.map_or(*b, |m| b ^ m[c.got]);
                c.got += 1;
            }
            if c.got == 2 {
                out.push(Action::CloseCode(u16::from_be_bytes(c.code)));
                self.close_code = None;
            }
        }
        if let Some(h) = self.held.as_mut() {
            h.bytes.extend_from_slice(bytes);
            *pending = i + take;
            if self.remaining == 0 {
                self.release_held(out);
            }
        }
        if self.remaining == 0 {
            self.close_code = None;
        }
        i + take
    }

    fn release_held(&mut self, out: &mut Vec<Action>) {
        if let Some(h) = self.held.take()
            && !h.answers(&self.ping_payload)
            && !self.discard
        {
            out.push(Action::Release(h.bytes));
        }
    }

    fn turn_opaque(&mut self, out: &mut Vec<Action>) {
        self.opaque = true;
        self.held = None;
        self.close_code = None;
        out.push(Action::Opaque);
    }

    /// Opaque bytes still count against the message limit, so framing tricks cannot bypass it.
    fn count_opaque(&mut self, n: usize, pending: &mut usize, i: usize, out: &mut Vec<Action>) {
        if self.max_message_bytes == 0 || self.discard {
            return;
        }
        self.message_bytes = self.message_bytes.saturating_add(n as u64);
        if self.over_limit() {
            self.forward(pending, i, out);
            out.push(Action::TooBig);
            self.discard = true;
        }
    }

    /// Hands out `pending..upto` as one Forward range (nothing while discarding).
    fn forward(&self, pending: &mut usize, upto: usize, out: &mut Vec<Action>) {
        if upto > *pending && !self.discard {
            match out.last_mut() {
                Some(Action::Forward(r)) if r.end == *pending => r.end = upto,
                _ => out.push(Action::Forward(*pending..upto)),
            }
        }
        *pending = (*pending).max(upto);
    }
}

#[cfg(test)]
mod tests;
