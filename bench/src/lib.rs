//! Shared pieces of the benchmark harness: a minimal RFC 6455 client/server framing (enough for
//! echo, ping, close), the handshake, and /proc readers for proxy CPU time and RSS.
//!
//! The framing is written by hand so that the load generator does as little work as possible per
//! message (frames are built and masked once per connection, then resent as-is): on a 2-core
//! machine the load generator saturates before the proxy does, and every cycle it saves is
//! headroom for the proxy under test.

use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod h2;

/// WebSocket opcodes used here.
pub mod op {
    pub const CONT: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a key.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A tiny xorshift generator: mask keys and handshake keys need variety, not cryptography.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Encodes one frame. `mask` = Some for client-to-server frames.
pub fn encode_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    if n < 126 {
        out.push(mbit | n as u8);
    } else if n <= 0xFFFF {
        out.push(mbit | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Encodes a frame header only (server side, unmasked).
pub fn encode_header(out: &mut Vec<u8>, fin: bool, opcode: u8, len: u64) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= 0xFFFF {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub len: u64,
    /// Bytes the header took.
    pub header_len: usize,
}

/// Parses a frame header at the start of `b`; None when more bytes are needed.
pub fn parse_header(b: &[u8]) -> Option<Header> {
    if b.len() < 2 {
        return None;
    }
    let fin = b[0] & 0x80 != 0;
    let opcode = b[0] & 0x0F;
    let masked = b[1] & 0x80 != 0;
    let l7 = b[1] & 0x7F;
    let mut pos = 2;
    let len = match l7 {
        126 => {
            if b.len() < 4 {
                return None;
            }
            pos = 4;
            u16::from_be_bytes([b[2], b[3]]) as u64
        }
        127 => {
            if b.len() < 10 {
                return None;
            }
            pos = 10;
            u64::from_be_bytes(b[2..10].try_into().ok()?)
        }
        n => n as u64,
    };
    let mask = if masked {
        if b.len() < pos + 4 {
            return None;
        }
        let m = [b[pos], b[pos + 1], b[pos + 2], b[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    Some(Header {
        fin,
        opcode,
        mask,
        len,
        header_len: pos,
    })
}

/// Connects from `src` (IP only, port chosen per destination, so that many source addresses can
/// each use the whole ephemeral range) to `dst`.
pub async fn connect_from(src: Option<std::net::IpAddr>, dst: SocketAddr) -> io::Result<TcpStream> {
    let stream = match src {
        None => TcpStream::connect(dst).await?,
        Some(ip) => {
            let sock = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            sock.set_nonblocking(true)?;
            bind_address_no_port(&sock)?;
            sock.bind(&SocketAddr::new(ip, 0).into())?;
            let sock = tokio::net::TcpSocket::from_std_stream(sock.into());
            sock.connect(dst).await?
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// IP_BIND_ADDRESS_NO_PORT: with a source IP bound, the port is still chosen at connect time per
/// destination, instead of at bind time from one range shared by all destinations.
fn bind_address_no_port(sock: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Buffered reading of server frames on the client side, from a TCP socket or (HTTP/2) from a
/// stream's DATA frames: anything readable.
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// What `FrameReader::read_frame` saw.
#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    pub opcode: u8,
    pub fin: bool,
    pub len: u64,
}

impl FrameReader {
    pub fn new(cap: usize) -> Self {
        Self {
            buf: vec![0; cap.max(256)],
            start: 0,
            end: 0,
        }
    }

    /// Bytes left over in the buffer (e.g. after the handshake).
    pub fn preload(&mut self, bytes: &[u8]) {
        self.buf[..bytes.len()].copy_from_slice(bytes);
        self.start = 0;
        self.end = bytes.len();
    }

    async fn fill<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = s.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed"));
        }
        self.end += n;
        Ok(())
    }

    /// Reads one whole frame. Payload bytes are appended to `sink` when given, else skipped.
    pub async fn read_frame<S: AsyncRead + Unpin>(
        &mut self,
        s: &mut S,
        mut sink: Option<&mut Vec<u8>>,
    ) -> io::Result<FrameInfo> {
        let h = loop {
            if let Some(h) = parse_header(&self.buf[self.start..self.end]) {
                break h;
            }
            self.fill(s).await?;
        };
        self.start += h.header_len;
        let mut remaining = h.len;
        loop {
            let avail = (self.end - self.start) as u64;
            let take = avail.min(remaining) as usize;
            if let Some(sink) = sink.as_deref_mut() {
                sink.extend_from_slice(&self.buf[self.start..self.start + take]);
            }
            self.start += take;
            remaining -= take as u64;
            if remaining == 0 {
                break;
            }
            self.start = 0;
            self.end = 0;
            self.fill(s).await?;
        }
        Ok(FrameInfo {
            opcode: h.opcode,
            fin: h.fin,
            len: h.len,
        })
    }

    /// Waits for the peer to close the connection (EOF), discarding anything else.
    pub async fn wait_eof<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> io::Result<()> {
        loop {
            self.start = 0;
            self.end = 0;
            match s.read(&mut self.buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Performs the client handshake on `s`; returns bytes that followed the response head.
pub async fn client_handshake(
    s: &mut TcpStream,
    host: &str,
    path: &str,
    rng: &mut Rng,
) -> io::Result<Vec<u8>> {
    let raw: [u8; 16] = {
        let a = rng.next_u64().to_le_bytes();
        let b = rng.next_u64().to_le_bytes();
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&a);
        k[8..].copy_from_slice(&b);
        k
    };
    let key = base64::engine::general_purpose::STANDARD.encode(raw);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "closed during handshake: {:?}",
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = find_head_end(&buf) {
            break p;
        }
        if buf.len() > 16384 {
            return Err(io::Error::other("response head too long"));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status_ok = head.starts_with("HTTP/1.1 101");
    let want = accept_key(&key);
    let accept_ok = head.lines().any(|l| {
        let mut it = l.splitn(2, ':');
        matches!((it.next(), it.next()), (Some(n), Some(v))
            if n.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == want)
    });
    if !status_ok || !accept_ok {
        return Err(io::Error::other(format!(
            "bad handshake response: {head:?}"
        )));
    }
    Ok(buf[head_end..].to_vec())
}

/// Index just past the `\r\n\r\n` that ends an HTTP head.
pub fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// utime + stime (clock ticks) summed over processes; a vanished process counts 0.
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name, which may contain spaces, ends with ')'.
            let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<&str> = rest.split_whitespace().collect();
            // rest starts at field 3 (state); utime is field 14, stime 15.
            let get = |i: usize| {
                f.get(i - 3)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            get(14) + get(15)
        })
        .sum()
}

/// VmRSS in KiB summed over processes.
pub fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}
