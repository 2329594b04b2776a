//! The origin every peer proxies to: a WebSocket echo server (frames echoed unmasked, streamed
//! without holding whole messages) and a keep-alive HTTP/1.1 responder for the plain-HTTP and
//! cache cases. One thread (current-thread runtime), so its CPU cost is the same for every peer.
//!
//! Paths: `/whoami` (HTTP) and the text message `whoami` (WebSocket) answer with the TCP peer the
//! backend sees and the `X-Forwarded-For` it got, which is how the harness proves a peer really
//! proxies; `/cache*` answers cacheably with a counter that grows per origin hit; `/stats` gives
//! the counters; anything else gets a fixed 64-byte body.
//!
//! Usage: echo-backend ADDR [ADDR...]

use std::cell::Cell;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsbench::{accept_key, encode_header, find_head_end, op, parse_header};

thread_local! {
    static UPGRADES: Cell<u64> = const { Cell::new(0) };
    static HTTP: Cell<u64> = const { Cell::new(0) };
    static CACHE: Cell<u64> = const { Cell::new(0) };
    static OPEN_WS: Cell<i64> = const { Cell::new(0) };
}

fn bump(c: &'static std::thread::LocalKey<Cell<u64>>) -> u64 {
    c.with(|v| {
        v.set(v.get() + 1);
        v.get()
    })
}

const PLAIN_BODY: &[u8] = b"wsbench echo-backend plain response, 64 bytes of body text.....\n";

fn main() {
    let addrs: Vec<SocketAddr> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("listen address"))
        .collect();
    assert!(!addrs.is_empty(), "usage: echo-backend ADDR [ADDR...]");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        for a in addrs {
            let sock = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )
            .expect("socket");
            sock.set_reuse_address(true).expect("reuseaddr");
            sock.set_nonblocking(true).expect("nonblocking");
            sock.bind(&a.into()).expect("bind");
            sock.listen(4096).expect("listen");
            let l = TcpListener::from_std(sock.into()).expect("listener");
            tokio::task::spawn_local(async move {
                loop {
                    match l.accept().await {
                        Ok((s, peer)) => {
                            let _ = s.set_nodelay(true);
                            tokio::task::spawn_local(serve(s, peer));
                        }
                        Err(e) => {
                            eprintln!("accept: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                    }
                }
            });
        }
        eprintln!("echo-backend ready");
        std::future::pending::<()>().await;
    });
}

struct Head {
    method: String,
    path: String,
    keep_alive: bool,
    ws_key: Option<String>,
    xff: String,
    content_length: usize,
}

fn parse_head(b: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(b).ok()?;
    let mut lines = text.split("\r\n");
    let mut rl = lines.next()?.split(' ');
    let method = rl.next()?.to_string();
    let path = rl.next()?.to_string();
    let version = rl.next()?;
    let mut keep_alive = version == "HTTP/1.1";
    let mut upgrade = false;
    let mut ws_key = None;
    let mut xff = String::new();
    let mut content_length = 0;
    for l in lines {
        let Some((n, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match n.trim().to_ascii_lowercase().as_str() {
            "connection" => {
                let v = v.to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                }
                if v.contains("keep-alive") {
                    keep_alive = true;
                }
            }
            "upgrade" => upgrade = v.eq_ignore_ascii_case("websocket"),
            "sec-websocket-key" => ws_key = Some(v.to_string()),
            "x-forwarded-for" => xff = v.to_string(),
            "content-length" => content_length = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    Some(Head {
        method,
        path,
        keep_alive,
        ws_key: if upgrade { ws_key } else { None },
        xff,
        content_length,
    })
}

async fn serve(mut s: TcpStream, peer: SocketAddr) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16384];
    let mut out = Vec::with_capacity(1024);
    loop {
        // Read a request head (pipelined requests are served in order).
        let head_end = loop {
            if let Some(p) = find_head_end(&buf) {
                break p;
            }
            if buf.len() > 65536 {
                return;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let Some(head) = parse_head(&buf[..head_end]) else {
            let _ = s
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        };
        // Skip a request body, if any.
        let mut need = head_end + head.content_length;
        while buf.len() < need {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        if let Some(key) = &head.ws_key {
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(key)
            );
            if s.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            bump(&UPGRADES);
            OPEN_WS.with(|c| c.set(c.get() + 1));
            let leftover = buf.split_off(need);
            drop(buf);
            let whoami = format!(
                "{{\"peer\":\"{peer}\",\"xff\":\"{}\",\"upgrades\":{}}}",
                head.xff,
                UPGRADES.with(|c| c.get())
            );
            ws_echo(&mut s, leftover, chunk, whoami).await;
            OPEN_WS.with(|c| c.set(c.get() - 1));
            return;
        }
        bump(&HTTP);
        out.clear();
        let (extra, body): (&str, Vec<u8>) = if head.path.starts_with("/cache") {
            let n = bump(&CACHE);
            (
                "Cache-Control: public, max-age=600\r\n",
                format!("cache-origin n={n:012}\n").into_bytes(),
            )
        } else if head.path.starts_with("/whoami") {
            (
                "Cache-Control: no-store\r\n",
                format!(
                    "{{\"peer\":\"{peer}\",\"xff\":\"{}\",\"method\":\"{}\"}}\n",
                    head.xff, head.method
                )
                .into_bytes(),
            )
        } else if head.path.starts_with("/stats") {
            (
                "Cache-Control: no-store\r\n",
                format!(
                    "{{\"upgrades\":{},\"http\":{},\"cache\":{},\"open_ws\":{}}}\n",
                    UPGRADES.with(|c| c.get()),
                    HTTP.with(|c| c.get()),
                    CACHE.with(|c| c.get()),
                    OPEN_WS.with(|c| c.get())
                )
                .into_bytes(),
            )
        } else {
            ("", PLAIN_BODY.to_vec())
        };
        out.extend_from_slice(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: wsbench\r\n{extra}\
                 Content-Length: {}\r\n{}\r\n",
                body.len(),
                if head.keep_alive {
                    ""
                } else {
                    "Connection: close\r\n"
                }
            )
            .as_bytes(),
        );
        if head.method != "HEAD" {
            out.extend_from_slice(&body);
        }
        if s.write_all(&out).await.is_err() {
            return;
        }
        if !head.keep_alive {
            let _ = s.shutdown().await;
            return;
        }
        buf.drain(..need);
        need = 0;
        let _ = need;
    }
}

/// Echoes frames back unmasked, streaming payloads; answers pings; replies to a close and then
/// closes the TCP connection first (so TIME_WAIT stays on this side).
async fn ws_echo(s: &mut TcpStream, leftover: Vec<u8>, mut buf: Vec<u8>, whoami: String) {
    if buf.len() < 32768 {
        buf.resize(32768, 0);
    }
    let mut end = leftover.len();
    buf[..end].copy_from_slice(&leftover);
    let mut start = 0usize;
    let mut out: Vec<u8> = Vec::with_capacity(buf.len() + 64);
    // Payload left of the current data frame, its mask and offset into the mask.
    let mut remaining: u64 = 0;
    let mut mask: Option<[u8; 4]> = None;
    let mut moff = 0usize;
    let mut first = true;
    loop {
        if !first {
            if start == end {
                start = 0;
                end = 0;
            } else if start > 0 {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            match s.read(&mut buf[end..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => end += n,
            }
        }
        first = false;
        out.clear();
        let mut close_after = false;
        while start < end {
            if remaining > 0 {
                let take = remaining.min((end - start) as u64) as usize;
                let chunk = &buf[start..start + take];
                match mask {
                    Some(m) => {
                        out.extend(chunk.iter().enumerate().map(|(i, b)| b ^ m[(moff + i) % 4]))
                    }
                    None => out.extend_from_slice(chunk),
                }
                moff = (moff + take) % 4;
                start += take;
                remaining -= take as u64;
                continue;
            }
            let Some(h) = parse_header(&buf[start..end]) else {
                break;
            };
            match h.opcode {
                op::CLOSE | op::PING | op::PONG => {
                    // Control frames are small: wait until the whole frame is buffered.
                    let total = h.header_len + h.len as usize;
                    if end - start < total {
                        break;
                    }
                    let mut payload: Vec<u8> = buf[start + h.header_len..start + total].to_vec();
                    if let Some(m) = h.mask {
                        payload
                            .iter_mut()
                            .enumerate()
                            .for_each(|(i, b)| *b ^= m[i % 4]);
                    }
                    start += total;
                    match h.opcode {
                        op::PING => {
                            encode_header(&mut out, true, op::PONG, payload.len() as u64);
                            out.extend_from_slice(&payload);
                        }
                        op::CLOSE => {
                            let code = if payload.len() >= 2 {
                                &payload[..2]
                            } else {
                                &[0x03, 0xE8][..]
                            };
                            encode_header(&mut out, true, op::CLOSE, 2);
                            out.extend_from_slice(code);
                            close_after = true;
                            break;
                        }
                        _ => {}
                    }
                }
                op::TEXT if h.len == 6 && end - start >= h.header_len + 6 => {
                    let mut p = buf[start + h.header_len..start + h.header_len + 6].to_vec();
                    if let Some(m) = h.mask {
                        p.iter_mut().enumerate().for_each(|(i, b)| *b ^= m[i % 4]);
                    }
                    start += h.header_len + 6;
                    let reply: Vec<u8> = if p == b"whoami" {
                        whoami.clone().into_bytes()
                    } else {
                        p
                    };
                    encode_header(&mut out, true, op::TEXT, reply.len() as u64);
                    out.extend_from_slice(&reply);
                }
                _ => {
                    encode_header(&mut out, h.fin, h.opcode, h.len);
                    start += h.header_len;
                    remaining = h.len;
                    mask = h.mask;
                    moff = 0;
                }
            }
        }
        if !out.is_empty() && s.write_all(&out).await.is_err() {
            return;
        }
        if close_after {
            let _ = s.shutdown().await;
            return;
        }
    }
}
