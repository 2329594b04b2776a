//! The chunked response-body decoder on any bytes: never panics, never yields more data than it
//! was given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = wsgate::proxy::wire::decode_chunked(data) {
        assert!(out.len() <= data.len());
    }
});
