//! The RFC 9112 request-head rules and path normalisation on any request head hyper accepts.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use wsgate::http::{path, request};

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
    request::drop_underscore_headers(req.headers_mut());
    assert!(!req.headers().keys().any(|k| k.as_str().contains('_')));
});
