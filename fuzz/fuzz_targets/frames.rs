//! The WebSocket frame tracker on any bytes: never panics, and a stream cut anywhere gives the
//! same forwarded bytes and events as the whole stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let limit = u64::from(cut % 4) * 1000;
    let cut = usize::from(cut) * stream.len() / 256;
    let [whole, split] = wsgate::proxy::wire::track_frames(stream, cut, limit);
    assert_eq!(whole, split);
});
