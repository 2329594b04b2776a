//! The access log line and the request metrics of every request, rejected or not.

use crate::metrics::Metrics;
use http::{Method, StatusCode};
use parking_lot::Mutex;
use std::net::SocketAddr;
use tokio::time::Instant;

/// The `wsgate_http_requests_total` and duration series of one route/method/status, kept per
/// connection so that a keep-alive connection repeating a request does not look them up again.
struct Series {
    route: String,
    method: &'static str,
    status: StatusCode,
    requests: prometheus::IntCounter,
    /// `None` for requests that matched no route.
    duration: Option<prometheus::Histogram>,
}

/// The series of the last request on a connection.
#[derive(Default)]
pub(crate) struct SeriesCache(Mutex<Option<Series>>);

/// Method label values are bounded so that clients cannot explode metric cardinality.
pub(crate) fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// The connection a request came on, as the log sees it.
pub(crate) struct Conn<'a> {
    pub(crate) peer: SocketAddr,
    pub(crate) port: u16,
    /// `http` or `https`.
    pub(crate) scheme: &'static str,
    /// `http1` or `h2`.
    pub(crate) protocol: &'static str,
    /// `wsgate_client_requests_total` of that protocol.
    pub(crate) requests: &'a prometheus::IntCounter,
}

/// One finished request as the log and the metrics see it.
pub(crate) struct Entry<'a> {
    pub(crate) route: &'a str,
    pub(crate) method: &'static str,
    pub(crate) host: &'a str,
    pub(crate) path: &'a str,
    pub(crate) status: StatusCode,
    pub(crate) start: Instant,
    pub(crate) endpoint: Option<&'a str>,
    /// Why the proxy answered itself, if it did.
    pub(crate) reason: Option<&'static str>,
    pub(crate) request_id: &'a str,
}

/// Counts the request and writes its access log line.
pub(crate) fn record(series: &SeriesCache, m: &Metrics, conn: &Conn<'_>, e: &Entry<'_>) {
    let elapsed = e.start.elapsed();
    conn.requests.inc();
    {
        let mut last = series.0.lock();
        let series = match last.take() {
            Some(s) if s.route == e.route && s.method == e.method && s.status == e.status => s,
            _ => Series {
                route: e.route.to_string(),
                method: e.method,
                status: e.status,
                requests: m.http_requests.with_label_values(&[
                    e.route,
                    e.method,
                    e.status.as_str(),
                ]),
                duration: (!e.route.is_empty())
                    .then(|| m.http_duration.with_label_values(&[e.route])),
            },
        };
        series.requests.inc();
        if let Some(d) = &series.duration {
            d.observe(elapsed.as_secs_f64());
        }
        *last = Some(series);
    }
    tracing::info!(
        target: "wsgate::access",
        route = e.route,
        client = %conn.peer,
        listener_port = conn.port,
        listener_protocol = conn.scheme,
        client_protocol = conn.protocol,
        request_id = e.request_id,
        method = e.method,
        host = e.host,
        path = e.path,
        status = e.status.as_u16(),
        backend = e.endpoint.unwrap_or(""),
        reason = e.reason.unwrap_or(""),
        duration_ms = millis(elapsed),
        "request"
    );
}

/// Milliseconds with microsecond precision and no float noise in the log (`1.234`, not
/// `1.2340000000000002`).
pub(crate) fn millis(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_have_no_float_noise() {
        assert_eq!(millis(Duration::from_micros(1234)).to_string(), "1.234");
        assert_eq!(millis(Duration::from_nanos(300_000_001)).to_string(), "300");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }
}
