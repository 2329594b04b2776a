//! The load generator. Every mode is bounded by an exact count and a deadline, reads the proxy's
//! CPU time (utime+stime of `--pids`) and RSS from /proc around the measured window, and prints
//! one JSON line.
//!
//! Modes:
//!   verify  one connection: WebSocket echo round trips (64 B, 64 KiB, exact bytes compared) and
//!           `whoami`, which shows whether the backend saw our socket (direct) or another (proxied)
//!   echo    N sessions, each sends exactly M messages of S bytes, one in flight per session,
//!           every echo awaited; round-trip latency into an HDR histogram (µs)
//!   churn   exactly H handshakes (connect, upgrade, close handshake, EOF) with C workers
//!   idle    opens sessions up to each step (e.g. 1000,5000,9000), each with one echo round trip,
//!           then holds them silent and reads the proxy's RSS after a settle time
//!   scale   opens N sessions (--sessions; handshake rate over the whole opening), one echo each,
//!           reads RSS; then every K-th session (--live-every) exchanges M messages of S bytes
//!           while the rest stay silent (latency of that live traffic); then --extra more
//!           connections past the proxy's limit, each classified as upgraded, refused (connect
//!           error, reset, EOF or a status other than 101) or silent (no answer within 3 s);
//!           finally one round trip on every held session (were they untouched?)
//!
//! Common flags: --target IP:PORT --host H --path P --pids PID,PID --deadline SECS
//!               --src-ips 127.0.0.2,127.0.0.3 (client source addresses, round-robin)
//!               --transport h1|h2 (verify, echo): h1 (default) = one TCP connection per session,
//!               HTTP/1.1 Upgrade; h2 = every session a stream of ONE cleartext HTTP/2 connection
//!               (prior knowledge), opened by an RFC 8441 extended CONNECT, the same WebSocket
//!               frames in its DATA frames

use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use wsbench::h2::{h2c_connect, H2Conn, H2Ws};
use wsbench::{
    client_handshake, connect_from, cpu_ticks, encode_frame, op, rss_kib, FrameReader, Rng,
};

static DONE: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);

struct Args(HashMap<String, String>);

impl Args {
    fn parse() -> (String, Self) {
        let mut it = std::env::args().skip(1);
        let mode = it.next().unwrap_or_default();
        let mut m = HashMap::new();
        while let Some(k) = it.next() {
            let k = k.trim_start_matches("--").to_string();
            let v = it.next().unwrap_or_default();
            m.insert(k, v);
        }
        (mode, Self(m))
    }
    fn s(&self, k: &str, d: &str) -> String {
        self.0.get(k).cloned().unwrap_or_else(|| d.to_string())
    }
    fn n(&self, k: &str, d: u64) -> u64 {
        self.0.get(k).map(|v| v.parse().expect(k)).unwrap_or(d)
    }
    fn list<T: std::str::FromStr>(&self, k: &str) -> Vec<T> {
        self.0
            .get(k)
            .map(|v| {
                v.split(',')
                    .filter(|x| !x.is_empty())
                    .map(|x| x.parse().ok().expect(k))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// How sessions reach the proxy.
#[derive(Clone, Copy, PartialEq)]
enum Transport {
    /// One TCP connection and HTTP/1.1 Upgrade per session.
    H1,
    /// One cleartext HTTP/2 connection; each session an RFC 8441 extended CONNECT stream.
    H2,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::H1 => "h1",
            Transport::H2 => "h2",
        }
    }
}

#[derive(Clone)]
struct Common {
    target: SocketAddr,
    host: String,
    path: String,
    pids: Vec<u32>,
    src_ips: Vec<IpAddr>,
    deadline: Duration,
    transport: Transport,
}

impl Common {
    fn src(&self, i: usize) -> Option<IpAddr> {
        if self.src_ips.is_empty() {
            None
        } else {
            Some(self.src_ips[i % self.src_ips.len()])
        }
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram")
}

fn hist_json(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "\"p50_us\":null,\"p99_us\":null,\"p999_us\":null,\"max_us\":null,\"mean_us\":null"
            .into();
    }
    format!(
        "\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"mean_us\":{:.1}",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.mean()
    )
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn main() {
    let (mode, a) = Args::parse();
    let c = Common {
        target: a.s("target", "127.0.0.1:9100").parse().expect("target"),
        host: a.s("host", "bench.local"),
        path: a.s("path", "/ws"),
        pids: a.list("pids"),
        src_ips: a.list("src-ips"),
        deadline: Duration::from_secs_f64(a.n("deadline", 60) as f64),
        transport: match a.s("transport", "h1").as_str() {
            "h1" => Transport::H1,
            "h2" => Transport::H2,
            t => {
                eprintln!("wsbench: --transport {t}: want h1 or h2");
                std::process::exit(2);
            }
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let out = local.block_on(&rt, async {
        match mode.as_str() {
            "verify" => verify(&c).await,
            "echo" => {
                echo(
                    &c,
                    a.n("conns", 1) as usize,
                    a.n("size", 64) as usize,
                    a.n("messages", 1000),
                )
                .await
            }
            "churn" => churn(&c, a.n("total", 1000), a.n("concurrency", 10) as usize).await,
            "idle" => idle(&c, a.list("steps"), a.n("settle-ms", 2000)).await,
            "scale" => {
                let plan = ScalePlan {
                    sessions: a.n("sessions", 1000) as usize,
                    live_every: a.n("live-every", 100).max(1) as usize,
                    size: a.n("size", 64) as usize,
                    messages: a.n("messages", 100),
                    extra: a.n("extra", 0) as usize,
                    settle_ms: a.n("settle-ms", 2000),
                };
                scale(&c, plan).await
            }
            _ => {
                eprintln!("usage: wsbench verify|echo|churn|idle|scale [--flag value]...");
                std::process::exit(2);
            }
        }
    });
    println!("{out}");
}

/// One round trip; returns the echoed payload.
async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    r: &mut FrameReader,
    opcode: u8,
    payload: &[u8],
    rng: &mut Rng,
) -> std::io::Result<Vec<u8>> {
    let m = (rng.next_u64() as u32).to_le_bytes();
    s.write_all(&encode_frame(opcode, payload, Some(m))).await?;
    let mut got = Vec::new();
    let f = r.read_frame(s, Some(&mut got)).await?;
    if f.opcode != opcode || !f.fin {
        return Err(std::io::Error::other(format!("unexpected frame {f:?}")));
    }
    Ok(got)
}

async fn verify(c: &Common) -> String {
    let res = tokio::time::timeout(c.deadline, async {
        let mut rng = Rng::new(7);
        let mut tcp = connect_from(c.src(0), c.target).await?;
        let local = tcp.local_addr()?;
        match c.transport {
            Transport::H1 => {
                let left = client_handshake(&mut tcp, &c.host, &c.path, &mut rng).await?;
                verify_session(tcp, &left, local, &mut rng, Transport::H1, String::new()).await
            }
            Transport::H2 => {
                let conn = h2c_connect(tcp, c.deadline).await?;
                let s = conn.open_ws(&c.host, &c.path).await?;
                // Reaching here means: h2 with prior knowledge, the server's SETTINGS enabled
                // the extended CONNECT protocol, and it answered the CONNECT with 200.
                let extra = format!(
                    ",\"enable_connect_protocol\":true,\"connect_status\":200,\"max_streams\":{}",
                    conn.max_streams()
                );
                verify_session(s, &[], local, &mut rng, Transport::H2, extra).await
            }
        }
    })
    .await;
    let t = c.transport.name();
    match res {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => format!(
            "{{\"mode\":\"verify\",\"transport\":\"{t}\",\"ok\":false,\"error\":\"{}\"}}",
            esc(&e.to_string())
        ),
        Err(_) => format!(
            "{{\"mode\":\"verify\",\"transport\":\"{t}\",\"ok\":false,\"error\":\"deadline\"}}"
        ),
    }
}

/// The checks of `verify` on an open session (TCP or HTTP/2 stream); `local` is our socket's
/// address, `extra` more JSON fields.
async fn verify_session<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    left: &[u8],
    local: SocketAddr,
    rng: &mut Rng,
    transport: Transport,
    extra: String,
) -> std::io::Result<String> {
    let mut r = FrameReader::new(1 << 17);
    r.preload(left);
    let small: Vec<u8> = (0..64u8).collect();
    let big: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    let ok_small = round_trip(&mut s, &mut r, op::BINARY, &small, rng).await? == small;
    let ok_big = round_trip(&mut s, &mut r, op::BINARY, &big, rng).await? == big;
    let who = round_trip(&mut s, &mut r, op::TEXT, b"whoami", rng).await?;
    let who = String::from_utf8_lossy(&who).to_string();
    // {"peer":"IP:PORT",...}
    let peer = who
        .split("\"peer\":\"")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .unwrap_or("")
        .to_string();
    let proxied = peer != local.to_string();
    // Clean close.
    let m = (rng.next_u64() as u32).to_le_bytes();
    s.write_all(&encode_frame(op::CLOSE, &1000u16.to_be_bytes(), Some(m)))
        .await?;
    let f = r.read_frame(&mut s, None).await?;
    let closed = f.opcode == op::CLOSE;
    let transport = transport.name();
    Ok(format!(
        "{{\"mode\":\"verify\",\"transport\":\"{transport}\",\"ok\":{},\"echo_64\":{ok_small},\
         \"echo_64k\":{ok_big},\"close\":{closed},\"proxied\":{proxied},\"local\":\"{local}\",\
         \"backend_saw\":{}{extra}}}",
        ok_small && ok_big && closed,
        if who.starts_with('{') {
            who.clone()
        } else {
            format!("\"{}\"", esc(&who))
        }
    ))
}

/// Connects `n` sessions with bounded parallelism.
async fn connect_many(c: &Common, n: usize, first: usize) -> Vec<(TcpStream, Vec<u8>)> {
    let sem = Rc::new(Semaphore::new(200));
    let mut tasks = Vec::with_capacity(n);
    for i in first..first + n {
        let sem = sem.clone();
        let src = c.src(i);
        let target = c.target;
        let host = c.host.clone();
        let path = c.path.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let _p = sem.acquire().await.ok()?;
            let mut rng = Rng::new(i as u64 + 1);
            let mut s = match connect_from(src, target).await {
                Ok(s) => s,
                Err(e) => {
                    note_error(&format!("connect: {e}"));
                    return None;
                }
            };
            match client_handshake(&mut s, &host, &path, &mut rng).await {
                Ok(left) => Some((s, left)),
                Err(e) => {
                    note_error(&format!("handshake: {e}"));
                    None
                }
            }
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(Some(x)) = t.await {
            out.push(x);
        }
    }
    out
}

fn note_error(e: &str) {
    if ERRORS.fetch_add(1, Ordering::Relaxed) < 5 {
        eprintln!("wsbench: {e}");
    }
}

/// Opens `n` WebSocket sessions as streams of one HTTP/2 connection (the connection is returned
/// too: it must outlive the sessions).
async fn open_h2_many(c: &Common, n: usize) -> Result<(Rc<H2Conn>, Vec<(H2Ws, Vec<u8>)>), String> {
    let tcp = connect_from(c.src(0), c.target)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let conn = Rc::new(
        h2c_connect(tcp, c.deadline)
            .await
            .map_err(|e| e.to_string())?,
    );
    if conn.max_streams() < n {
        // Streams past the server's limit would wait for one to end, which never happens here.
        return Err(format!(
            "the server allows {} concurrent streams per connection, {n} wanted",
            conn.max_streams()
        ));
    }
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let conn = conn.clone();
        let host = c.host.clone();
        let path = c.path.clone();
        tasks.push(tokio::task::spawn_local(async move {
            conn.open_ws(&host, &path).await
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => out.push((s, Vec::new())),
            Ok(Err(e)) => note_error(&format!("h2 session: {e}")),
            Err(e) => note_error(&format!("h2 session task: {e}")),
        }
    }
    Ok((conn, out))
}

async fn echo(c: &Common, sessions: usize, size: usize, messages: u64) -> String {
    match c.transport {
        Transport::H1 => {
            let setup = tokio::time::timeout(c.deadline, connect_many(c, sessions, 0)).await;
            let streams = setup.unwrap_or_default();
            echo_run(c, sessions, size, messages, streams, sessions).await
        }
        Transport::H2 => match tokio::time::timeout(c.deadline, open_h2_many(c, sessions)).await {
            Ok(Ok((conn, streams))) => {
                let out = echo_run(c, sessions, size, messages, streams, 1).await;
                drop(conn);
                out
            }
            Ok(Err(e)) => format!(
                "{{\"mode\":\"echo\",\"transport\":\"h2\",\"ok\":false,\"error\":\"{}\"}}",
                esc(&e)
            ),
            Err(_) => "{\"mode\":\"echo\",\"transport\":\"h2\",\"ok\":false,\"error\":\"deadline opening sessions\"}"
                .into(),
        },
    }
}

/// The measured part of `echo` over open sessions (each with bytes read past its handshake);
/// `tcp_conns` is how many TCP connections carry them.
async fn echo_run<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    c: &Common,
    conns: usize,
    size: usize,
    messages: u64,
    streams: Vec<(S, Vec<u8>)>,
    tcp_conns: usize,
) -> String {
    let t = c.transport.name();
    if streams.len() != conns {
        return format!(
            "{{\"mode\":\"echo\",\"transport\":\"{t}\",\"ok\":false,\"error\":\"only {} of {conns} sessions opened\"}}",
            streams.len()
        );
    }
    let payload: Rc<Vec<u8>> = Rc::new((0..size).map(|i| (i * 13 % 251) as u8).collect());
    let cpu0 = cpu_ticks(&c.pids);
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(conns);
    for (i, (mut s, left)) in streams.into_iter().enumerate() {
        let payload = payload.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut rng = Rng::new(1000 + i as u64);
            let m = (rng.next_u64() as u32).to_le_bytes();
            let frame = encode_frame(op::BINARY, &payload, Some(m));
            let mut r = FrameReader::new(payload.len().max(4096) + 16);
            r.preload(&left);
            let mut h = hist();
            let mut got = Vec::with_capacity(payload.len());
            for k in 0..messages {
                let t = Instant::now();
                if let Err(e) = s.write_all(&frame).await {
                    note_error(&format!("write: {e}"));
                    return (h, s);
                }
                // The first echo of each connection is compared byte for byte; the rest by
                // opcode and length (exact counts are what the harness needs).
                let sink = if k == 0 {
                    got.clear();
                    Some(&mut got)
                } else {
                    None
                };
                match r.read_frame(&mut s, sink).await {
                    Ok(f) if f.opcode == op::BINARY && f.len == payload.len() as u64 => {}
                    Ok(f) => {
                        note_error(&format!("unexpected frame {f:?}"));
                        return (h, s);
                    }
                    Err(e) => {
                        note_error(&format!("read: {e}"));
                        return (h, s);
                    }
                }
                if k == 0 && got != *payload {
                    note_error("echo payload differs");
                    return (h, s);
                }
                let _ = h.record((t.elapsed().as_micros() as u64).max(1));
                DONE.fetch_add(1, Ordering::Relaxed);
            }
            (h, s)
        }));
    }
    let all = tokio::time::timeout(c.deadline, async {
        let mut merged = hist();
        let mut keep = Vec::with_capacity(conns);
        for t in tasks {
            if let Ok((h, s)) = t.await {
                let _ = merged.add(&h);
                keep.push(s);
            }
        }
        (merged, keep)
    })
    .await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_ticks(&c.pids) - cpu0;
    let done = DONE.load(Ordering::Relaxed);
    let want = conns as u64 * messages;
    let (h, keep) = match all {
        Ok(x) => x,
        Err(_) => (hist(), Vec::new()),
    };
    drop(keep);
    format!(
        "{{\"mode\":\"echo\",\"transport\":\"{t}\",\"ok\":{},\"conns\":{conns},\
         \"tcp_conns\":{tcp_conns},\"size\":{size},\"messages\":{done},\"expected\":{want},\"errors\":{},\"elapsed_s\":{elapsed:.4},\"msgs_per_s\":{:.1},\
         \"cpu_ticks\":{cpu},{}}}",
        done == want && ERRORS.load(Ordering::Relaxed) == 0,
        ERRORS.load(Ordering::Relaxed),
        done as f64 / elapsed,
        hist_json(&h)
    )
}

async fn churn(c: &Common, total: u64, concurrency: usize) -> String {
    let next = Rc::new(AtomicU64::new(0));
    let cpu0 = cpu_ticks(&c.pids);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let next = next.clone();
        let src_ips = c.src_ips.clone();
        let target = c.target;
        let host = c.host.clone();
        let path = c.path.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut rng = Rng::new(77 + w as u64);
            let mut h = hist();
            let mut r = FrameReader::new(4096);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let src = if src_ips.is_empty() {
                    None
                } else {
                    Some(src_ips[i as usize % src_ips.len()])
                };
                let t = Instant::now();
                let one = async {
                    let mut s = connect_from(src, target).await?;
                    let left = client_handshake(&mut s, &host, &path, &mut rng).await?;
                    let hs = t.elapsed();
                    r.preload(&left);
                    let m = (rng.next_u64() as u32).to_le_bytes();
                    s.write_all(&encode_frame(op::CLOSE, &1000u16.to_be_bytes(), Some(m)))
                        .await?;
                    let f = r.read_frame(&mut s, None).await?;
                    if f.opcode != op::CLOSE {
                        return Err(std::io::Error::other("no close reply"));
                    }
                    // The closing handshake is complete; the client closes its socket now rather
                    // than waiting for the proxy's FIN (Envoy, for one, waits ~1 s for the client
                    // to close first, which would measure a timer, not work).
                    Ok::<_, std::io::Error>(hs)
                };
                match one.await {
                    Ok(hs) => {
                        let _ = h.record((hs.as_micros() as u64).max(1));
                        DONE.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => note_error(&format!("churn: {e}")),
                }
            }
            h
        }));
    }
    let res = tokio::time::timeout(c.deadline, async {
        let mut merged = hist();
        for t in tasks {
            if let Ok(h) = t.await {
                let _ = merged.add(&h);
            }
        }
        merged
    })
    .await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_ticks(&c.pids) - cpu0;
    let done = DONE.load(Ordering::Relaxed);
    let h = res.unwrap_or_else(|_| hist());
    format!(
        "{{\"mode\":\"churn\",\"ok\":{},\"handshakes\":{done},\"expected\":{total},\"errors\":{},\
         \"elapsed_s\":{elapsed:.4},\"per_s\":{:.1},\"cpu_ticks\":{cpu},{}}}",
        done == total && ERRORS.load(Ordering::Relaxed) == 0,
        ERRORS.load(Ordering::Relaxed),
        done as f64 / elapsed,
        hist_json(&h)
    )
}

async fn idle(c: &Common, steps: Vec<usize>, settle_ms: u64) -> String {
    let t_end = Instant::now() + c.deadline;
    let base = rss_kib(&c.pids);
    let mut held: Vec<TcpStream> = Vec::new();
    let mut points = Vec::new();
    for &step in &steps {
        let need = step.saturating_sub(held.len());
        let left = t_end.saturating_duration_since(Instant::now());
        let first = held.len();
        let Ok(opened) = tokio::time::timeout(left, connect_many(c, need, first)).await else {
            break;
        };
        // One echo round trip on each, so the tunnel is surely established end to end.
        let mut tasks = Vec::new();
        for (i, (mut s, l)) in opened.into_iter().enumerate() {
            tasks.push(tokio::task::spawn_local(async move {
                let mut rng = Rng::new(5000 + (first + i) as u64);
                let mut r = FrameReader::new(256);
                r.preload(&l);
                let p = [0x5Au8; 64];
                match round_trip(&mut s, &mut r, op::BINARY, &p, &mut rng).await {
                    Ok(g) if g == p => Some(s),
                    Ok(_) => {
                        note_error("idle: echo differs");
                        None
                    }
                    Err(e) => {
                        note_error(&format!("idle echo: {e}"));
                        None
                    }
                }
            }));
        }
        for t in tasks {
            if let Ok(Some(s)) = t.await {
                held.push(s);
            }
        }
        if held.len() < step {
            break;
        }
        tokio::time::sleep(Duration::from_millis(settle_ms)).await;
        points.push((held.len() as f64, rss_kib(&c.pids) as f64));
    }
    // Least-squares slope of RSS (KiB) over sessions, in bytes per session.
    let n = points.len() as f64;
    let slope = if points.len() >= 2 {
        let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        Some(sxy / sxx * 1024.0)
    } else {
        None
    };
    let pts: Vec<String> = points
        .iter()
        .map(|(s, r)| format!("[{},{}]", *s as u64, *r as u64))
        .collect();
    let ok = points.len() == steps.len() && ERRORS.load(Ordering::Relaxed) == 0;
    let out = format!(
        "{{\"mode\":\"idle\",\"ok\":{ok},\"base_rss_kib\":{base},\"points\":[{}],\
         \"bytes_per_session\":{},\"errors\":{}}}",
        pts.join(","),
        slope.map(|s| format!("{s:.0}")).unwrap_or("null".into()),
        ERRORS.load(Ordering::Relaxed)
    );
    drop(held);
    out
}

/// What `scale` does (see the module comment).
struct ScalePlan {
    sessions: usize,
    live_every: usize,
    size: usize,
    messages: u64,
    extra: usize,
    settle_ms: u64,
}

/// How one connection attempt past the limit ended.
enum Extra {
    Upgraded(TcpStream, Vec<u8>),
    Refused,
    Silent,
}

async fn try_extra(c: &Common, i: usize) -> Extra {
    let within = Duration::from_secs(3);
    let attempt = async {
        let mut rng = Rng::new(900_000 + i as u64);
        let Ok(mut s) = connect_from(c.src(i), c.target).await else {
            return Extra::Refused;
        };
        match client_handshake(&mut s, &c.host, &c.path, &mut rng).await {
            Ok(left) => Extra::Upgraded(s, left),
            Err(_) => Extra::Refused,
        }
    };
    tokio::time::timeout(within, attempt)
        .await
        .unwrap_or(Extra::Silent)
}

/// One round trip on each of `held`, concurrently; returns the sessions that echoed and the
/// count that failed.
async fn echo_each(
    held: Vec<(TcpStream, Vec<u8>)>,
    seed: u64,
) -> (Vec<(TcpStream, Vec<u8>)>, usize) {
    let mut tasks = Vec::with_capacity(held.len());
    for (i, (mut s, l)) in held.into_iter().enumerate() {
        tasks.push(tokio::task::spawn_local(async move {
            let mut rng = Rng::new(seed + i as u64);
            let mut r = FrameReader::new(256);
            r.preload(&l);
            let p = [0x3Cu8; 64];
            let ok = tokio::time::timeout(
                Duration::from_secs(10),
                round_trip(&mut s, &mut r, op::BINARY, &p, &mut rng),
            )
            .await;
            match ok {
                Ok(Ok(g)) if g == p => Some((s, Vec::new())),
                _ => None,
            }
        }));
    }
    let (mut ok, mut failed) = (Vec::new(), 0);
    for t in tasks {
        match t.await {
            Ok(Some(x)) => ok.push(x),
            _ => failed += 1,
        }
    }
    (ok, failed)
}

async fn scale(c: &Common, plan: ScalePlan) -> String {
    let base = rss_kib(&c.pids);
    let t0 = Instant::now();
    let opened = tokio::time::timeout(c.deadline, connect_many(c, plan.sessions, 0))
        .await
        .unwrap_or_default();
    let open_s = t0.elapsed().as_secs_f64();
    let opened_n = opened.len();
    let handshakes_per_s = opened.len() as f64 / open_s.max(1e-9);
    let (held, first_failed) = echo_each(opened, 10_000).await;
    tokio::time::sleep(Duration::from_millis(plan.settle_ms)).await;
    let rss = rss_kib(&c.pids);
    let per_session = if held.is_empty() {
        0.0
    } else {
        (rss.saturating_sub(base)) as f64 * 1024.0 / held.len() as f64
    };

    // Live traffic on every K-th session while the others stay silent.
    let mut live = Vec::new();
    let mut quiet = Vec::new();
    for (i, x) in held.into_iter().enumerate() {
        if i % plan.live_every == 0 {
            live.push(x);
        } else {
            quiet.push(x);
        }
    }
    let live_n = live.len();
    let hist_all = Rc::new(std::cell::RefCell::new(hist()));
    let cpu0 = cpu_ticks(&c.pids);
    let t_live = Instant::now();
    let mut tasks = Vec::new();
    for (mut s, l) in live {
        let h = hist_all.clone();
        let (size, messages) = (plan.size, plan.messages);
        tasks.push(tokio::task::spawn_local(async move {
            let mut r = FrameReader::new(size.max(256));
            r.preload(&l);
            let payload = vec![0xA5u8; size];
            let frame = encode_frame(op::BINARY, &payload, Some([1, 2, 3, 4]));
            for _ in 0..messages {
                let sent = Instant::now();
                if s.write_all(&frame).await.is_err() {
                    note_error("scale: live write failed");
                    return None;
                }
                match r.read_frame(&mut s, None).await {
                    Ok(f) if f.opcode == op::BINARY => {
                        let us = sent.elapsed().as_micros() as u64;
                        let _ = h.borrow_mut().record(us.max(1));
                        DONE.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        note_error("scale: live echo failed");
                        return None;
                    }
                }
            }
            Some((s, Vec::new()))
        }));
    }
    let mut live_back = Vec::new();
    for t in tasks {
        if let Ok(Some(x)) = t.await {
            live_back.push(x);
        }
    }
    let live_s = t_live.elapsed().as_secs_f64();
    let live_cpu = cpu_ticks(&c.pids) - cpu0;
    let live_msgs = DONE.load(Ordering::Relaxed);

    // Past the limit: new connections, while every session is held.
    let (mut upgraded, mut refused, mut silent) = (0usize, 0usize, 0usize);
    let mut extras = Vec::new();
    if plan.extra > 0 {
        let mut tasks = Vec::new();
        for i in 0..plan.extra {
            let c2 = c.clone();
            tasks.push(tokio::task::spawn_local(async move {
                try_extra(&c2, plan_index(i)).await
            }));
        }
        for t in tasks {
            match t.await {
                Ok(Extra::Upgraded(s, l)) => {
                    upgraded += 1;
                    extras.push((s, l));
                }
                Ok(Extra::Refused) => refused += 1,
                Ok(Extra::Silent) | Err(_) => silent += 1,
            }
        }
    }
    // Were the sessions held before the extra attempts untouched?
    let mut all: Vec<_> = live_back;
    all.extend(quiet);
    let held_n = all.len();
    let (still, untouched_failed) = echo_each(all, 20_000).await;
    let ok =
        first_failed == 0 && untouched_failed == 0 && live_msgs == live_n as u64 * plan.messages;
    let h = hist_all.borrow();
    let out = format!(
        "{{\"mode\":\"scale\",\"ok\":{ok},\"sessions\":{},\"opened\":{opened_n},\"first_echo_failed\":{first_failed},\
         \"open_s\":{open_s:.3},\"handshakes_per_s\":{handshakes_per_s:.1},\"base_rss_kib\":{base},\
         \"rss_kib\":{rss},\"bytes_per_session\":{per_session:.0},\"live_sessions\":{live_n},\
         \"messages\":{live_msgs},\"live_s\":{live_s:.3},\"cpu_ticks\":{live_cpu},{},\
         \"extra\":{},\"extra_upgraded\":{upgraded},\"extra_refused\":{refused},\"extra_silent\":{silent},\
         \"held\":{held_n},\"untouched_failed\":{untouched_failed},\"errors\":{}}}",
        plan.sessions,
        hist_json(&h),
        plan.extra,
        ERRORS.load(Ordering::Relaxed)
    );
    drop(still);
    drop(extras);
    out
}

/// Extra attempts use connection indexes after the sessions' (other source ports/addresses).
fn plan_index(i: usize) -> usize {
    1_000_000 + i
}
