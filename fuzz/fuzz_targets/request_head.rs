//! The RFC 9112 request-head rules and path normalisation on any request head hyper accepts, and
//! their RFC 9113 form on the same head as if it had arrived on an HTTP/2 stream (with
//! `:protocol` taken from an `x-protocol` field).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use wsgate::http::{path, request, request_h2};

fuzz_target!(|data: &[u8]| {
    let Some(mut req) = common::request(data) else {
        return;
    };
    let checked = request::check(req.method(), req.uri(), req.version(), req.headers());
    if let Ok(head) = &checked {
        // The routing host is what `Host` or the target named, lower-cased, without port.
        assert!(!head.host.contains(':') || head.host.parse::<std::net::Ipv6Addr>().is_ok());
        assert_eq!(head.host, head.host.to_ascii_lowercase());
        let again = path::normalize(&head.path.forward).expect("a normalised path normalises");
        assert_eq!(
            again.forward, head.path.forward,
            "normalisation is idempotent"
        );
        assert_eq!(again.matching, head.path.matching);
    }
    let protocol = req
        .headers()
        .get("x-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let h2 = request_h2::check(req.method(), req.uri(), req.headers(), protocol.as_deref());
    if let Ok((head, form)) = &h2 {
        assert_eq!(head.host, head.host.to_ascii_lowercase());
        // Only a CONNECT (with :protocol websocket) is a WebSocket form.
        assert_eq!(
            *form == request_h2::H2Form::WebSocket,
            req.method() == http::Method::CONNECT
        );
        assert!(!req.headers().contains_key(http::header::CONNECTION));
    }
    request_h2::join_cookies(req.headers_mut());
    assert!(req.headers().get_all(http::header::COOKIE).iter().count() <= 1);
    request::drop_underscore_headers(req.headers_mut());
    assert!(!req.headers().keys().any(|k| k.as_str().contains('_')));
});
