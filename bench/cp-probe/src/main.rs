//! Times `wsgate::translate::translate` alone on a config directory: load once (timed apart), then
//! translate three times and report the median, and the RSS the result adds. Also times the read
//! of a reload when no file changed (`reread_ms`: the incremental file cache, median of 3).
//!
//! Usage: cp-probe DIR   (prints one JSON line)

use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: cp-probe DIR");
    let t = Instant::now();
    let loaded = wsgate::source::files::load(std::path::Path::new(&dir));
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let errors = loaded.errors.len();
    let mut cache = wsgate::source::file_cache::FileCache::new();
    cache.load(std::path::Path::new(&dir));
    let mut rereads: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let again = cache.load(std::path::Path::new(&dir));
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            drop(again);
            ms
        })
        .collect();
    rereads.sort_by(|a, b| a.total_cmp(b));
    let options = wsgate::translate::Options::default();
    let before = rss_kib("VmRSS:");
    let mut times = Vec::new();
    let mut kept = None;
    for _ in 0..3 {
        let t = Instant::now();
        let out = wsgate::translate::translate(&loaded.snapshot, &options);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        if kept.is_none() {
            kept = Some(out);
        }
    }
    let after = rss_kib("VmRSS:");
    times.sort_by(|a, b| a.total_cmp(b));
    let out = kept.expect("translated");
    let routes: usize = out
        .table
        .listeners
        .iter()
        .flat_map(|l| l.virtual_hosts.iter())
        .map(|h| h.routes.len())
        .sum();
    println!(
        "{{\"ok\":{},\"load_ms\":{load_ms:.1},\"reread_ms\":{:.1},\"translate_ms\":{:.1},\"translate_ms_all\":{:?},\
         \"rss_growth_kib\":{},\"peak_rss_kib\":{},\"routes\":{routes},\"load_errors\":{errors},\
         \"diagnostics\":{}}}",
        errors == 0,
        rereads[1],
        times[1],
        times
            .iter()
            .map(|t| (t * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        after.saturating_sub(before),
        rss_kib("VmHWM:"),
        out.diagnostics.len()
    );
}
