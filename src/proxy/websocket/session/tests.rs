//! Session policies on paused time over in-memory pipes: pings, liveness, idle, age, drain (and
//! its spread), the message limit, and peers that stop reading.

use super::*;
use bytes::Bytes;
use prometheus::IntCounter;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::coding::{Control as Ctl, Data, OpCode};

fn counters() -> [DirCounters; 2] {
    let c = |n: &str| IntCounter::new(n, "test").expect("counter");
    [
        DirCounters {
            bytes: c("b0"),
            messages: c("m0"),
        },
        DirCounters {
            bytes: c("b1"),
            messages: c("m1"),
        },
    ]
}

fn frame(op: OpCode, payload: &[u8], masked: bool) -> Vec<u8> {
    let f = match op {
        OpCode::Control(Ctl::Pong) => Frame::pong(payload.to_vec()),
        OpCode::Control(Ctl::Close) => Frame::close(Some(CloseFrame {
            code: CloseCode::from(close_code(payload)),
            reason: "".into(),
        })),
        op => Frame::message(payload.to_vec(), op, true),
    };
    encode(f, masked)
}

fn encode(mut f: Frame, masked: bool) -> Vec<u8> {
    if masked {
        f.header_mut().mask = Some([1, 2, 3, 4]);
    }
    let mut out = Vec::new();
    f.format(&mut out).expect("format");
    out
}

/// Reads one whole frame: opcode, unmasked payload.
async fn read_frame(io: &mut DuplexStream) -> Option<(OpCode, Vec<u8>)> {
    let mut buf = Vec::new();
    loop {
        let mut cursor = std::io::Cursor::new(&buf[..]);
        if let Ok(Some((h, len))) = FrameHeader::parse(&mut cursor) {
            let start = cursor.position() as usize;
            if buf.len() >= start + len as usize {
                let mut payload = buf[start..start + len as usize].to_vec();
                if let Some(m) = h.mask {
                    for (i, b) in payload.iter_mut().enumerate() {
                        *b ^= m[i % 4];
                    }
                }
                return Some((h.opcode, payload));
            }
        }
        let mut byte = [0u8; 1];
        if io.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
}

fn close_code(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

struct Harness {
    client: DuplexStream,
    backend: DuplexStream,
    drain: watch::Sender<bool>,
    session: tokio::task::JoinHandle<(State, &'static str)>,
}

fn start(policy: Policy, capacity: usize) -> Harness {
    let (client, client_proxy) = duplex(capacity);
    let (backend, backend_proxy) = duplex(capacity);
    let (drain, drain_rx) = watch::channel(false);
    let session = tokio::spawn(async move {
        let c = counters();
        drive(
            Peer::other(client_proxy, Bytes::new()),
            Peer::other(backend_proxy, Bytes::new()),
            policy,
            &c,
            drain_rx,
        )
        .await
    });
    Harness {
        client,
        backend,
        drain,
        session,
    }
}

#[tokio::test(start_paused = true)]
async fn frames_cross_unchanged_and_closes_are_relayed() {
    let mut h = start(Policy::default(), 64 * 1024);
    let hello = frame(OpCode::Data(Data::Text), b"hello", true);
    h.client.write_all(&hello).await.unwrap();
    let mut got = vec![0u8; hello.len()];
    h.backend.read_exact(&mut got).await.unwrap();
    assert_eq!(got, hello, "masked client frames reach the backend as sent");
    let mut close = Vec::new();
    Frame::close(Some(CloseFrame {
        code: CloseCode::from(4000),
        reason: "done".into(),
    }))
    .format(&mut close)
    .unwrap();
    h.backend.write_all(&close).await.unwrap();
    let (op, payload) = read_frame(&mut h.client).await.unwrap();
    assert_eq!(
        (op, close_code(&payload)),
        (OpCode::Control(Ctl::Close), 4000)
    );
    h.client
        .write_all(&frame(OpCode::Control(Ctl::Close), &[0x0f, 0xa0], true))
        .await
        .unwrap();
    drop(h.client);
    drop(h.backend);
    let (st, reason) = h.session.await.unwrap();
    assert_eq!(reason, "backend");
    assert_eq!(st.codes[BACKEND].load(Ordering::Relaxed), 4000);
    assert_eq!(st.messages[CLIENT].load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn quiet_sides_are_pinged_and_our_pongs_swallowed() {
    let policy = Policy {
        ping_interval: Some(Duration::from_secs(20)),
        request_timeout: Some(Duration::from_secs(60)),
        ..Policy::default()
    };
    let mut h = start(policy, 64 * 1024);
    let (op, payload) = read_frame(&mut h.client).await.unwrap();
    assert_eq!(
        op,
        OpCode::Control(Ctl::Ping),
        "the proxy pings a quiet client"
    );
    let (bop, _) = read_frame(&mut h.backend).await.unwrap();
    assert_eq!(bop, OpCode::Control(Ctl::Ping), "and a quiet backend");
    // The client answers our ping; that pong must not reach the backend, the text after it must.
    h.client
        .write_all(&frame(OpCode::Control(Ctl::Pong), &payload, true))
        .await
        .unwrap();
    h.client
        .write_all(&frame(OpCode::Data(Data::Text), b"after", true))
        .await
        .unwrap();
    let (op, data) = read_frame(&mut h.backend).await.unwrap();
    assert_eq!((op, &data[..]), (OpCode::Data(Data::Text), &b"after"[..]));
    h.session.abort();
}

#[tokio::test(start_paused = true)]
async fn silence_for_the_request_timeout_closes_with_1001() {
    let policy = Policy {
        request_timeout: Some(Duration::from_secs(5)),
        ..Policy::default()
    };
    let started = Instant::now();
    let mut h = start(policy, 64 * 1024);
    let (op, payload) = read_frame(&mut h.client).await.unwrap();
    assert_eq!(
        (op, close_code(&payload)),
        (OpCode::Control(Ctl::Close), 1001)
    );
    assert!(started.elapsed() >= Duration::from_secs(5));
    let (_, payload) = read_frame(&mut h.backend).await.unwrap();
    assert_eq!(close_code(&payload), 1001);
    let (_, reason) = h.session.await.unwrap();
    assert_eq!(reason, "request_timeout");
}

#[tokio::test(start_paused = true)]
async fn idle_and_age_limits_close_the_session() {
    for (policy, want) in [
        (
            Policy {
                idle_timeout: Some(Duration::from_secs(30)),
                ..Policy::default()
            },
            "idle_timeout",
        ),
        (
            Policy {
                max_duration: Some(Duration::from_secs(90)),
                ..Policy::default()
            },
            "max_duration",
        ),
    ] {
        let mut h = start(policy, 64 * 1024);
        let (_, payload) = read_frame(&mut h.client).await.unwrap();
        assert_eq!(close_code(&payload), 1001);
        let (_, reason) = h.session.await.unwrap();
        assert_eq!(reason, want);
    }
}

#[tokio::test(start_paused = true)]
async fn an_oversized_message_gets_1009_and_the_other_side_1001() {
    let policy = Policy {
        max_message_bytes: 10,
        ..Policy::default()
    };
    let mut h = start(policy, 64 * 1024);
    h.client
        .write_all(&frame(OpCode::Data(Data::Binary), &[7u8; 64], true))
        .await
        .unwrap();
    let (_, payload) = read_frame(&mut h.client).await.unwrap();
    assert_eq!(close_code(&payload), 1009);
    let (op, payload) = read_frame(&mut h.backend).await.unwrap();
    assert_eq!(
        (op, close_code(&payload)),
        (OpCode::Control(Ctl::Close), 1001)
    );
    let (st, reason) = h.session.await.unwrap();
    assert_eq!(reason, "message_too_big");
    assert_eq!(
        st.bytes[CLIENT].load(Ordering::Relaxed),
        0,
        "nothing of it passed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_drain_spread_closes_within_its_window() {
    let policy = Policy {
        close_spread: Duration::from_secs(10),
        ..Policy::default()
    };
    let mut h = start(policy, 64 * 1024);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let drained = Instant::now();
    h.drain.send_replace(true);
    let (_, payload) = read_frame(&mut h.client).await.unwrap();
    assert_eq!(close_code(&payload), 1001);
    assert!(drained.elapsed() <= Duration::from_secs(10));
    let (_, reason) = h.session.await.unwrap();
    assert_eq!(reason, "shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_cannot_hold_the_session() {
    // The client floods and never reads; the backend echoes everything: both directions end up
    // blocked in writes. The age limit must still end the session, within its grace.
    let policy = Policy {
        max_duration: Some(Duration::from_secs(5)),
        ..Policy::default()
    };
    let h = start(policy, 4096);
    let started = Instant::now();
    let (mut client_r, mut client_w) = tokio::io::split(h.client);
    let (mut backend_r, mut backend_w) = tokio::io::split(h.backend);
    let flood = tokio::spawn(async move {
        let f = frame(OpCode::Data(Data::Binary), &[1u8; 1000], true);
        for _ in 0..100_000 {
            if client_w.write_all(&f).await.is_err() {
                break;
            }
        }
    });
    let echo = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            match backend_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if backend_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let (_, reason) = h.session.await.unwrap();
    assert_eq!(reason, "max_duration");
    assert!(
        started.elapsed() <= Duration::from_secs(5) + CLOSE_GRACE + Duration::from_secs(1),
        "cut after {:?}",
        started.elapsed()
    );
    // The client never read: it has not even seen the close, and the session is gone anyway.
    let mut nothing = [0u8; 1];
    let _ = tokio::time::timeout(Duration::from_millis(1), client_r.read(&mut nothing)).await;
    flood.abort();
    echo.abort();
}
