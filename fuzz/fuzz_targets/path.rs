//! Path normalisation on any string: never panics, idempotent, and the matching form holds no
//! dot segment, empty segment, parameter or escape of an unreserved character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::http::path;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(n) = path::normalize(raw) else {
        return;
    };
    let again = path::normalize(&n.forward).expect("a normalised path normalises");
    assert_eq!(again.forward, n.forward, "idempotent: {raw:?}");
    assert_eq!(again.matching, n.matching, "idempotent: {raw:?}");
    let m: &str = &n.matching;
    if m != "*" {
        assert!(m.starts_with('/'), "{raw:?} -> {m:?}");
        assert!(!m.contains("//"), "{raw:?} -> {m:?}");
        assert!(!m.contains(';'), "{raw:?} -> {m:?}");
        for seg in m.split('/') {
            assert!(seg != "." && seg != "..", "{raw:?} -> {m:?}");
        }
        let lower = m.to_ascii_lowercase();
        for esc in ["%2e", "%2f", "%5c", "%41", "%7e", "%5f", "%2d", "%30"] {
            assert!(!lower.contains(esc), "{raw:?} -> {m:?}");
        }
    }
});
