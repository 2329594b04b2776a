//! The backend response-head parser and body framing on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (method, bytes) = match data.split_first() {
        Some((b, rest)) if b % 2 == 0 => (http::Method::HEAD, rest),
        Some((_, rest)) => (http::Method::GET, rest),
        None => return,
    };
    if let Ok(Some(h)) = wsgate::proxy::wire::parse_response_head(bytes, &method) {
        assert!(h.head_len <= bytes.len());
        // A response without a body (HEAD, 1xx, 204, 304) is not framed by its headers.
        if h.framing != "empty" && h.headers.contains_key(http::header::TRANSFER_ENCODING) {
            assert_eq!(h.framing, "chunked", "only chunked is relayed");
            assert!(!h.headers.contains_key(http::header::CONTENT_LENGTH));
        }
    }
});
