//! Request limits over real sockets: header size (431), body size (413, declared and streamed),
//! slow clients (slowloris) closed at the header timeout while others are served, and clients
//! that stop reading a response closed at the send timeout while slow readers are not.
// Tests time real sockets with the wall clock and share plain std mutexes with their threads;
// the data-path rules of clippy.toml do not apply here.
#![allow(clippy::disallowed_types)]

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn serve(tune: impl FnOnce(&mut wsgate::proxy::ProxySettings)) -> (TestServer, HttpBackend) {
    let web = http_backend("web").await;
    let yaml = service_yaml("l", "web", &[web.addr])
        + &ingress_yaml("l", "i", &[], &[("", "/", "Prefix", "web")]);
    (
        TestServer::start_tuned(&[("l.yaml", yaml)], tune).await,
        web,
    )
}

#[tokio::test]
async fn oversized_request_head_gets_431() {
    let (srv, web) = serve(|p| p.max_header_bytes = 4096).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(5000)
    );
    let (status, _) = raw_exchange(srv.http(), &big).await;
    assert_eq!(status, 431);
    let ok = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Small: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(3000)
    );
    assert_eq!(raw_exchange(srv.http(), &ok).await.0, 200);
    assert_eq!(
        web.requests.lock().unwrap().len(),
        1,
        "the oversized request never reached the backend"
    );
}

#[tokio::test]
async fn oversized_body_gets_413_declared_or_streamed() {
    let (srv, _web) = serve(|p| p.max_body_bytes = 1000).await;
    let declared = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{}",
        "b".repeat(2000)
    );
    assert_eq!(raw_exchange(srv.http(), &declared).await.0, 413);
    let mut chunked = String::from(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..4 {
        chunked.push_str(&format!("1f4\r\n{}\r\n", "c".repeat(500)));
    }
    chunked.push_str("0\r\n\r\n");
    assert_eq!(raw_exchange(srv.http(), &chunked).await.0, 413);
    let small = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{}",
        "d".repeat(1000)
    );
    assert_eq!(raw_exchange(srv.http(), &small).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_at_the_header_timeout() {
    let (srv, _web) = serve(|p| p.header_timeout = Duration::from_secs(2)).await;
    let addr = srv.http();
    let t0 = Instant::now();
    let mut slow = Vec::new();
    for i in 0..500 {
        slow.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let head = format!("GET /slow-{i} HTTP/1.1\r\nHost: x\r\n");
            let started = Instant::now();
            for b in head.bytes().chain(std::iter::repeat(b'x')) {
                if s.write_all(&[b]).await.is_err() {
                    break;
                }
                // Read with a 1 s window: this is both the "one byte a second" pace and the way
                // to notice the close.
                let mut buf = [0u8; 64];
                match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(_)) => break,
                    Err(_) => {}
                }
                if started.elapsed() > Duration::from_secs(15) {
                    panic!("slow connection {i} was never closed");
                }
            }
            started.elapsed()
        }));
    }
    // While 500 slow clients hold connections, a normal client is served promptly.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(http_get(addr, "x", "/normal").await.0, 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "normal request took {:?}",
            t.elapsed()
        );
    }
    let mut longest = Duration::ZERO;
    for h in slow {
        longest = longest.max(h.await.unwrap());
    }
    assert!(
        longest < Duration::from_secs(5),
        "slow connections closed at the 2 s header timeout, longest lived {longest:?}"
    );
    eprintln!(
        "500 slowloris connections closed; longest {longest:?}; total {:?}",
        t0.elapsed()
    );
}

/// A backend that answers every request with `len` bytes; counts the responses wsgate let go of
/// (a write failed: the backend connection was released).
async fn big_backend(
    len: usize,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let released = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = released.clone();
    let (addr, _) = raw_backend(move |mut s| {
        let counter = counter.clone();
        async move {
            let _ = read_head(&mut s).await;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < len {
                let n = chunk.len().min(len - sent);
                if s.write_all(&chunk[..n]).await.is_err() {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                sent += n;
            }
        }
    })
    .await;
    (addr, released)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_at_the_send_timeout_and_a_slow_one_is_not() {
    const BIG: usize = 64 * 1024 * 1024;
    let (addr, released) = big_backend(BIG).await;
    let yaml = service_yaml("l", "big", &[addr])
        + &ingress_yaml("l", "i", &[], &[("", "/", "Prefix", "big")]);
    let srv = TestServer::start_tuned(&[("l.yaml", yaml)], |p| {
        p.send_timeout = Some(Duration::from_secs(1))
    })
    .await;

    // Never reads (its receive buffer fills, then wsgate's writes stall).
    let mut stuck = tokio::net::TcpStream::connect(srv.http()).await.unwrap();
    stuck
        .write_all(b"GET /stuck HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // By now wsgate has given up: reading drains what was buffered, then EOF (or a reset).
    let t0 = Instant::now();
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stuck.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => {
                panic!("the connection is still open after the send timeout ({got} bytes read)")
            }
        }
    }
    assert!(
        got < BIG / 2,
        "the stalled response was not cut: {got} bytes arrived"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let t1 = Instant::now();
    while released.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            t1.elapsed() < Duration::from_secs(5),
            "the backend connection was not released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Reads 512 KiB every 0.4 s: every write waits less than the timeout, so 4 MiB arrive whole.
    let (addr, _) = big_backend(4 * 1024 * 1024).await;
    let yaml = service_yaml("l", "big", &[addr])
        + &ingress_yaml("l", "i", &[], &[("", "/", "Prefix", "big")]);
    srv.write("l.yaml", &yaml);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut slow = tokio::net::TcpStream::connect(srv.http()).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut total = 0usize;
    let mut chunk = vec![0u8; 512 * 1024];
    loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut read_now = 0;
        while read_now < chunk.len() {
            match tokio::time::timeout(Duration::from_secs(5), slow.read(&mut chunk[read_now..]))
                .await
            {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => read_now += n,
                other => panic!("slow reader failed: {other:?}"),
            }
        }
        total += read_now;
        if read_now < chunk.len() {
            break;
        }
    }
    assert!(
        total > 4 * 1024 * 1024,
        "a slow but steady reader got only {total} bytes"
    );
}
