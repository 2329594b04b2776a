//! The HTTP cache over real sockets: hits, Vary, no-store/private/Authorization, revalidation with
//! ETag, coalescing of concurrent misses, and WebSocket upgrades on a cached route never cached.
// Tests time real sockets with the wall clock and share plain std mutexes with their threads;
// the data-path rules of clippy.toml do not apply here.
#![allow(clippy::disallowed_types)]

mod common;

use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An origin whose behaviour is chosen by path; records every request line + headers.
async fn origin() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = s2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let mut line = format!("{} {}", req.method(), req.uri());
                        for (k, v) in req.headers() {
                            line.push_str(&format!("\n{k}: {}", v.to_str().unwrap_or("")));
                        }
                        let n = {
                            let mut s = seen.lock().unwrap();
                            s.push(line);
                            s.len()
                        };
                        let mut resp = hyper::Response::builder().status(200);
                        let body = match path.as_str() {
                            "/max-age" => {
                                resp = resp.header("cache-control", "max-age=60");
                                format!("response {n}")
                            }
                            "/vary" => {
                                resp = resp
                                    .header("cache-control", "max-age=60")
                                    .header("vary", "Accept-Language");
                                let lang = req
                                    .headers()
                                    .get("accept-language")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("none");
                                format!("lang {lang} response {n}")
                            }
                            "/no-store" => {
                                resp = resp.header("cache-control", "no-store");
                                format!("response {n}")
                            }
                            "/private" => {
                                resp = resp.header("cache-control", "private, max-age=60");
                                format!("response {n}")
                            }
                            "/etag" => {
                                resp = resp
                                    .header("cache-control", "max-age=0")
                                    .header("etag", "\"v1\"");
                                if req
                                    .headers()
                                    .get("if-none-match")
                                    .and_then(|v| v.to_str().ok())
                                    == Some("\"v1\"")
                                {
                                    return Ok::<_, std::convert::Infallible>(
                                        resp.status(304)
                                            .body(Full::new(bytes::Bytes::new()))
                                            .unwrap(),
                                    );
                                }
                                "etag body".to_string()
                            }
                            "/slow" => {
                                tokio::time::sleep(Duration::from_millis(300)).await;
                                resp = resp.header("cache-control", "max-age=60");
                                format!("slow response {n}")
                            }
                            _ => format!("other {n}"),
                        };
                        Ok::<_, std::convert::Infallible>(
                            resp.body(Full::new(bytes::Bytes::from(body))).unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn serve_cached(backend: std::net::SocketAddr) -> TestServer {
    let yaml = service_yaml("c", "o", &[backend])
        + &ingress_yaml(
            "c",
            "i",
            &[("wsgate.dev/cache", "true")],
            &[("", "/", "Prefix", "o")],
        );
    TestServer::start(&[("c.yaml", yaml)]).await
}

async fn get(srv: &TestServer, path: &str, extra: &str) -> (u16, String, String) {
    let reply = raw_exchange_full(
        srv.http(),
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"),
    )
    .await;
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_string(), b.to_string()))
        .unwrap_or_default();
    (status, head, body)
}

fn requests_to(seen: &Arc<Mutex<Vec<String>>>, path: &str) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with(&format!("GET {path}")))
        .count()
}

#[tokio::test]
async fn cacheable_get_hits_the_backend_once() {
    let (o, seen) = origin().await;
    let srv = serve_cached(o).await;
    let (_, head, first) = get(&srv, "/max-age", "").await;
    assert!(head.contains("x-cache: miss"), "{head}");
    for _ in 0..9 {
        let (status, head, body) = get(&srv, "/max-age", "").await;
        assert_eq!((status, body.as_str()), (200, first.as_str()));
        assert!(
            head.contains("x-cache: hit") && head.contains("age: "),
            "{head}"
        );
    }
    assert_eq!(requests_to(&seen, "/max-age"), 1);
    let m = srv.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"wsgate_cache_requests_total{result="hit",route="c/i/*/"}"#
        ),
        9.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"wsgate_cache_requests_total{result="miss",route="c/i/*/"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn vary_splits_entries() {
    let (o, seen) = origin().await;
    let srv = serve_cached(o).await;
    let en = get(&srv, "/vary", "Accept-Language: en\r\n").await.2;
    let de = get(&srv, "/vary", "Accept-Language: de\r\n").await.2;
    assert!(
        en.starts_with("lang en") && de.starts_with("lang de"),
        "{en} / {de}"
    );
    assert_eq!(get(&srv, "/vary", "Accept-Language: en\r\n").await.2, en);
    assert_eq!(get(&srv, "/vary", "Accept-Language: de\r\n").await.2, de);
    assert_eq!(requests_to(&seen, "/vary"), 2);
}

#[tokio::test]
async fn no_store_private_and_authorization_are_never_served_from_cache() {
    let (o, seen) = origin().await;
    let srv = serve_cached(o).await;
    for path in ["/no-store", "/private"] {
        let a = get(&srv, path, "").await.2;
        let b = get(&srv, path, "").await.2;
        assert_ne!(a, b, "{path} must reach the backend every time");
        assert_eq!(requests_to(&seen, path), 2);
    }
    let a = get(&srv, "/max-age?auth", "Authorization: Bearer alice\r\n")
        .await
        .2;
    let b = get(&srv, "/max-age?auth", "Authorization: Bearer bob\r\n")
        .await
        .2;
    assert_ne!(
        a, b,
        "an authorized response without public/s-maxage is not shared"
    );
}

#[tokio::test]
async fn stale_entries_revalidate_with_etag() {
    let (o, seen) = origin().await;
    let srv = serve_cached(o).await;
    assert_eq!(get(&srv, "/etag", "").await.2, "etag body");
    let (status, head, body) = get(&srv, "/etag", "").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "etag body"),
        "a 304 from the backend is answered from the cache"
    );
    assert!(head.contains("x-cache: hit"), "{head}");
    let log = seen.lock().unwrap().clone();
    assert_eq!(log.len(), 2);
    assert!(
        log[1].contains("if-none-match: \"v1\""),
        "the revalidation was conditional: {}",
        log[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_coalesce_into_one_backend_request() {
    let (o, seen) = origin().await;
    let srv = Arc::new(serve_cached(o).await);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let srv = srv.clone();
        tasks.push(tokio::spawn(async move { get(&srv, "/slow", "").await }));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        assert_eq!(status, 200);
        bodies.push(body);
    }
    assert_eq!(
        requests_to(&seen, "/slow"),
        1,
        "ten concurrent misses, one backend request"
    );
    assert!(bodies.iter().all(|b| b == &bodies[0]));
}

#[tokio::test]
async fn websocket_upgrade_on_a_cached_route_upgrades_and_bypasses() {
    let b = mixed_backend().await;
    let srv = serve_cached(b.addr).await;
    // tokio-tungstenite's server refuses a handshake without Upgrade/Connection: success proves
    // the backend saw them.
    let mut ws = ws_connect(&format!("ws://{}/live", srv.http())).await;
    echo_roundtrip(&mut ws, "never cached").await;
    let mut ws2 = ws_connect(&format!("ws://{}/live", srv.http())).await;
    echo_roundtrip(&mut ws2, "second upgrade reaches the backend too").await;
    assert_eq!(b.sessions.load(std::sync::atomic::Ordering::SeqCst), 2);
    let (_, head, _) = get(&srv, "/page", "Upgrade: h2c\r\nConnection: Upgrade\r\n").await;
    assert!(head.contains("x-cache: bypass"), "{head}");
}
