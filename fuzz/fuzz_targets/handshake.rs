//! The client-side WebSocket handshake gate on any request head hyper accepts.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(req) = common::request(data) else {
        return;
    };
    if let Err(status) = wsgate::proxy::wire::check_websocket_handshake(&req) {
        assert!(status == 400 || status == 426, "{status}");
    } else {
        assert_eq!(req.method(), http::Method::GET);
        assert!(req.headers().contains_key(http::header::SEC_WEBSOCKET_KEY));
    }
});
