//! `--workers`: several single-threaded runtimes, each with its own socket on every listener port
//! (`SO_REUSEPORT`). Both workers serve sessions and requests; the listener shows one socket per
//! worker. (SIGTERM with several workers: `drain_and_limits.rs` runs the binary with three.)

mod common;

use common::*;
use std::net::SocketAddr;

/// Listening TCP sockets on `port` (IPv4), from `/proc/net/tcp`.
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A"
        })
        .count()
}

/// CPU time (ns) the thread named `name` of this process has run.
fn thread_cpu_ns(name: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap();
            total += stat
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
    }
    total
}

#[tokio::test(flavor = "current_thread")]
async fn two_workers_each_listen_on_the_port_and_both_serve() {
    let (workers, _threads) = wsgate::proxy::Workers::start(2).unwrap();
    assert_eq!(workers.count(), 2);
    let echo = echo_backend().await;
    let web = http_backend("web").await;
    let yaml = service_yaml("w", "e", &[echo.addr])
        + &service_yaml("w", "web", &[web.addr])
        + &ingress_yaml(
            "w",
            "i",
            &[],
            &[("", "/ws", "Prefix", "e"), ("", "/web", "Prefix", "web")],
        );
    let srv = TestServer::start_tuned(&[("w.yaml", yaml)], move |p| p.workers = workers).await;
    let addr: SocketAddr = srv.http();
    assert_eq!(listening_sockets(addr.port()), 2, "one socket per worker");

    let before = thread_cpu_ns("wsgate-worker-1");
    // The kernel spreads connections by their addresses: 64 sessions from four source addresses
    // land on both sockets (all on one would have probability 2^-63).
    let sessions: Vec<_> = (0..64)
        .map(|i| {
            tokio::spawn(async move {
                let from = format!("127.0.0.{}", 2 + i % 4);
                let stream = connect_from(&from, addr).await;
                let (mut ws, _) =
                    tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
                        .await
                        .expect("upgrade");
                for n in 0..20 {
                    echo_roundtrip(&mut ws, &format!("session {i} message {n}")).await;
                }
            })
        })
        .collect();
    for s in sessions {
        s.await.expect("every session echoes");
    }
    for _ in 0..20 {
        let (status, body) = http_get(addr, "x", "/web/a").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("web\n"), "{body}");
    }
    let worked = thread_cpu_ns("wsgate-worker-1") - before;
    assert!(
        worked > 1_000_000,
        "worker 1 ran only {worked} ns while 64 sessions were served"
    );
}
