//! Bounded passive ejection over real sockets: a client repeating a URL that answers 500 cannot
//! take the only endpoint (or any endpoint) out for everyone; a backend failing on many distinct
//! requests is still ejected while another endpoint remains; with every endpoint probed down the
//! pool is in panic mode and still served.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A backend answering 500 to `/boom` (or to everything when `always_fail`) and 200 otherwise.
async fn backend(always_fail: bool) -> std::net::SocketAddr {
    let (addr, _) = raw_backend(move |mut s| async move {
        let head = read_head(&mut s).await;
        let status = if always_fail || head.starts_with("GET /boom") {
            "500 Internal Server Error"
        } else {
            "200 OK"
        };
        let _ = s
            .write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                    .as_bytes(),
            )
            .await;
    })
    .await;
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_url_does_not_eject_the_only_endpoint() {
    let addr = backend(false).await;
    let port = free_port();
    let srv = TestServer::start(&[(
        "g.yaml",
        gateway_yaml(port, &[addr], "connectTimeout: 1s", ""),
    )])
    .await;
    let gw = srv.port(port);
    for i in 0..40 {
        assert_eq!(
            http_get(gw, "x", "/boom").await.0,
            500,
            "attack request {i} is relayed"
        );
    }
    for i in 0..20 {
        assert_eq!(
            http_get(gw, "x", &format!("/page/{i}")).await.0,
            200,
            "other users are served"
        );
    }
    let m = srv.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"wsgate_rejected_total{reason="no_healthy_backend",route="lb/gw/r"}"#
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_failures_eject_while_another_endpoint_remains() {
    let bad = backend(true).await;
    let good = backend(false).await;
    let port = free_port();
    let srv = TestServer::start(&[(
        "g.yaml",
        gateway_yaml(port, &[bad, good], "connectTimeout: 1s", ""),
    )])
    .await;
    let gw = srv.port(port);
    let mut errors = 0;
    for i in 0..12 {
        if http_get(gw, "x", &format!("/p/{i}")).await.0 == 500 {
            errors += 1;
        }
    }
    assert!((1..=6).contains(&errors), "{errors} errors before ejection");
    for i in 0..20 {
        assert_eq!(
            http_get(gw, "x", &format!("/q/{i}")).await.0,
            200,
            "ejected endpoint gets nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejection_never_takes_more_than_the_share() {
    // Both endpoints fail every request; at 50 % only one may be out at a time, so requests keep
    // reaching a backend (500) instead of 503.
    let a = backend(true).await;
    let b = backend(true).await;
    let port = free_port();
    let srv = TestServer::start(&[(
        "g.yaml",
        gateway_yaml(port, &[a, b], "connectTimeout: 1s", ""),
    )])
    .await;
    let gw = srv.port(port);
    for i in 0..40 {
        assert_eq!(
            http_get(gw, "x", &format!("/r/{i}")).await.0,
            500,
            "request {i}"
        );
    }
    let up = |m: &str, addr: std::net::SocketAddr| {
        metric(
            m,
            &format!(r#"wsgate_backend_up{{endpoint="{addr}",pool="lb/gw/pool"}}"#),
        )
    };
    let m = srv.metrics().await;
    assert!(up(&m, a) + up(&m, b) <= 1.0, "one was ejected: {m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_probed_down_is_panic_mode() {
    let b = mixed_backend().await;
    b.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    let port = free_port();
    let yaml = gateway_yaml(
        port,
        &[b.addr],
        "probe: hc",
        "{name: hc, path: /healthz, interval: 50ms, unhealthyThreshold: 1}",
    );
    let srv = TestServer::start(&[("g.yaml", yaml)]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = srv.metrics().await;
    assert_eq!(
        metric(
            &m,
            &format!(
                r#"wsgate_backend_up{{endpoint="{}",pool="lb/gw/pool"}}"#,
                b.addr
            )
        ),
        0.0,
        "probed down"
    );
    let (status, _) = raw_from("127.0.0.1", srv.port(port), &upgrade_req("/", "")).await;
    assert_eq!(status, 101, "panic mode: the endpoint is used anyway");
}
