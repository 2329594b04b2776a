//! Process-level behaviour: SIGTERM drains the real binary (1001 to every session, in-flight HTTP
//! completes, exit before the deadline); the connection cap refuses new connections while existing
//! sessions continue; 100 reloads under load lose nothing.
// Tests time real sockets with the wall clock and share plain std mutexes with their threads;
// the data-path rules of clippy.toml do not apply here.
#![allow(clippy::disallowed_types)]

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_refuses_new_connections_and_keeps_sessions() {
    let echo = echo_backend().await;
    let yaml = service_yaml("c", "e", &[echo.addr])
        + &ingress_yaml("c", "i", &[], &[("", "/", "Prefix", "e")]);
    let srv = TestServer::start_tuned(&[("c.yaml", yaml)], |p| p.max_connections = 5).await;
    let url = format!("ws://{}/", srv.http());
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(ws_connect(&url).await);
    }
    assert!(
        tokio_tungstenite::connect_async(&url).await.is_err(),
        "the 6th connection is refused"
    );
    for ws in held.iter_mut() {
        echo_roundtrip(ws, "existing sessions continue").await;
    }
    let m = srv.metrics().await;
    assert!(
        metric(
            &m,
            r#"wsgate_rejected_total{reason="max_connections",route=""}"#
        ) >= 1.0,
        "{m}"
    );
    let mut one = held.pop().unwrap();
    one.close(None).await.unwrap();
    while let Some(Ok(_)) = one.next().await {}
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.push(ws_connect(&url).await);
}

/// An HTTP backend that answers after `delay`.
async fn slow_http_backend(delay: Duration) -> std::net::SocketAddr {
    raw_backend(move |mut s| async move {
        let _ = read_head(&mut s).await;
        tokio::time::sleep(delay).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow")
            .await;
    })
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_sessions_and_in_flight_http_then_exits() {
    let echo = echo_backend().await;
    let slow = slow_http_backend(Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = service_yaml("d", "e", &[echo.addr])
        + &service_yaml("d", "slow", &[slow])
        + &ingress_yaml(
            "d",
            "i",
            &[],
            &[("", "/ws", "Prefix", "e"), ("", "/slow", "Prefix", "slow")],
        );
    std::fs::write(dir.path().join("d.yaml"), yaml).unwrap();
    let (http, admin) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args([
            "run",
            "--config",
            dir.path().to_str().unwrap(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--http-port",
            &http.to_string(),
            "--admin-port",
            &admin.to_string(),
        ])
        .args(["--shutdown-drain", "6s", "--log-level", "warn"])
        // Sessions on every worker get their 1001 (src/proxy/workers.rs).
        .args(["--workers", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let http_addr: std::net::SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let admin_addr: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let t0 = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(admin_addr).await.is_ok()
            && http_get(admin_addr, "x", "/readyz").await.0 == 200
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "wsgate did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect();
    for worker in ["wsgate-worker-1", "wsgate-worker-2"] {
        assert!(threads.iter().any(|t| t == worker), "{threads:?}");
    }

    let mut sessions = Vec::new();
    for _ in 0..100 {
        sessions.push(ws_connect(&format!("ws://{http_addr}/ws")).await);
    }
    let in_flight: Vec<_> = (0..5)
        .map(|_| tokio::spawn(http_get(http_addr, "x", "/slow")))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let sigterm = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        http_get(admin_addr, "x", "/readyz").await.0,
        503,
        "readiness turns false at once"
    );

    for ws in sessions.iter_mut() {
        let code = loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("close within 5 s")
            {
                Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                other => panic!("expected close 1001, got {other:?}"),
            }
        };
        assert_eq!(code, Some(1001));
    }
    for ws in sessions.iter_mut() {
        while let Some(Ok(_)) = ws.next().await {}
    }
    for r in in_flight {
        let (status, body) = r.await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, "slow"),
            "in-flight HTTP completes"
        );
    }
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sigterm.elapsed() < Duration::from_secs(6),
            "must exit before the drain deadline"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    eprintln!("exited {:?} after SIGTERM", sigterm.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_reloads_under_load_lose_nothing() {
    let echo = echo_backend().await;
    let web = http_backend("web").await;
    let config = |k: usize| {
        let mut y = service_yaml("r", "e", &[echo.addr]) + &service_yaml("r", "web", &[web.addr]);
        y += &ingress_yaml(
            "r",
            "chat",
            &[("wsgate.dev/idle-timeout", &format!("{}m", 10 + k))],
            &[("", "/ws", "Prefix", "e")],
        );
        y += &ingress_yaml(
            "r",
            "probe",
            &[],
            &[("", &format!("/r-{k}"), "Exact", "web")],
        );
        y
    };
    let srv = TestServer::start(&[("r.yaml", config(0))]).await;
    let url = format!("ws://{}/ws", srv.http());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for s in 0..200 {
        let mut ws = ws_connect(&url).await;
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = format!("{s}:{sent}");
                ws.send(Message::text(text.clone())).await.expect("send");
                match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        assert_eq!(t.as_str(), text, "in order, intact")
                    }
                    other => panic!("session {s} message {sent}: {other:?}"),
                }
                sent += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            ws.close(None).await.unwrap();
            while let Some(Ok(_)) = ws.next().await {}
            sent
        }));
    }
    let mut slowest = Duration::ZERO;
    for k in 1..=100 {
        srv.write("r.yaml", &config(k));
        let t0 = Instant::now();
        while http_get(srv.http(), "x", &format!("/r-{k}")).await.0 != 200 {
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "reload {k} not applied"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        slowest = slowest.max(t0.elapsed());
    }
    let before = srv.metrics().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    assert!(
        !before.contains("wsgate_websocket_sessions_total"),
        "no session closed during reloads: {before}"
    );
    assert!(metric(&before, r#"wsgate_config_reloads_total{result="ok"}"#) >= 100.0);
    let after = srv.metrics().await;
    for reason in [
        "backend",
        "request_timeout",
        "idle_timeout",
        "max_duration",
        "shutdown",
        "backend_error",
        "client_error",
        "message_too_big",
    ] {
        assert_eq!(
            metric(
                &after,
                &format!(
                    r#"wsgate_websocket_sessions_total{{close_reason="{reason}",route="r/chat/*/ws"}}"#
                )
            ),
            0.0,
            "{reason}"
        );
    }
    eprintln!("{total} messages echoed in order across 100 reloads; slowest reload {slowest:?}");
}
