//! YAML loading (`source::files::parse_into`) and translation of any text: never panics; a bad
//! document is an error naming the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut loaded = wsgate::source::files::Loaded::default();
    wsgate::source::files::parse_into("fuzz.yaml", text, &mut loaded);
    let t = wsgate::translate::translate(&loaded.snapshot, &wsgate::translate::Options::default());
    assert!(t.table.validate().is_ok());
});
