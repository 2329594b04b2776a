//! Prometheus metrics with the names and labels of `shared/API.md`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric wsgate exports, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `wsgate_http_requests_total{route,method,code}`.
    pub http_requests: IntCounterVec,
    /// `wsgate_http_request_duration_seconds{route}`.
    pub http_duration: HistogramVec,
    /// `wsgate_websocket_sessions_active{route}`.
    pub ws_active: IntGaugeVec,
    /// `wsgate_websocket_sessions_total{route,close_reason}`.
    pub ws_sessions: IntCounterVec,
    /// `wsgate_websocket_session_duration_seconds{route}`.
    pub ws_duration: HistogramVec,
    /// `wsgate_websocket_messages_total{route,direction}`.
    pub ws_messages: IntCounterVec,
    /// `wsgate_websocket_bytes_total{route,direction}`.
    pub ws_bytes: IntCounterVec,
    /// `wsgate_rejected_total{route,reason}`.
    pub rejected: IntCounterVec,
    /// `wsgate_backend_up{pool,endpoint}`.
    pub backend_up: IntGaugeVec,
    /// `wsgate_cache_requests_total{route,result}`.
    pub cache_requests: IntCounterVec,
    /// `wsgate_config_reloads_total{result}`.
    pub config_reloads: IntCounterVec,
    /// `wsgate_client_connections_total{protocol}`: client connections by the protocol they
    /// speak (`http1`, `h2`).
    pub client_connections: IntCounterVec,
    /// `wsgate_client_requests_total{protocol}`: requests by client protocol (`http1`, `h2`);
    /// the per-route series stay in `wsgate_http_requests_total`.
    pub client_requests: IntCounterVec,
    /// `wsgate_websocket_sessions_opened_total{protocol}`: WebSocket sessions opened, by client
    /// protocol (`http1`: Upgrade; `h2`: RFC 8441 extended CONNECT).
    pub ws_opened: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric name");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g =
                IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric name");
            g
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &["route"])
                .expect("static metric definition");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric name");
            h
        };
        let session_buckets = vec![
            1.0,
            10.0,
            60.0,
            300.0,
            1800.0,
            3600.0,
            4.0 * 3600.0,
            12.0 * 3600.0,
            24.0 * 3600.0,
        ];
        Self {
            http_requests: counter(
                "wsgate_http_requests_total",
                "HTTP requests; a WebSocket upgrade counts as one request with code 101.",
                &["route", "method", "code"],
            ),
            http_duration: histogram(
                "wsgate_http_request_duration_seconds",
                "Time to the response headers.",
                prometheus::DEFAULT_BUCKETS.to_vec(),
            ),
            ws_active: gauge(
                "wsgate_websocket_sessions_active",
                "Open WebSocket sessions.",
                &["route"],
            ),
            ws_sessions: counter(
                "wsgate_websocket_sessions_total",
                "Closed WebSocket sessions by close reason.",
                &["route", "close_reason"],
            ),
            ws_duration: histogram(
                "wsgate_websocket_session_duration_seconds",
                "WebSocket session lifetimes.",
                session_buckets,
            ),
            ws_messages: counter(
                "wsgate_websocket_messages_total",
                "WebSocket data messages relayed.",
                &["route", "direction"],
            ),
            ws_bytes: counter(
                "wsgate_websocket_bytes_total",
                "WebSocket bytes relayed (frames on the wire).",
                &["route", "direction"],
            ),
            rejected: counter(
                "wsgate_rejected_total",
                "Requests rejected before reaching a backend.",
                &["route", "reason"],
            ),
            backend_up: gauge(
                "wsgate_backend_up",
                "1 if the endpoint is healthy.",
                &["pool", "endpoint"],
            ),
            cache_requests: counter(
                "wsgate_cache_requests_total",
                "HTTP cache lookups.",
                &["route", "result"],
            ),
            config_reloads: counter(
                "wsgate_config_reloads_total",
                "Configuration reloads.",
                &["result"],
            ),
            client_connections: counter(
                "wsgate_client_connections_total",
                "Client connections by protocol (http1, h2).",
                &["protocol"],
            ),
            client_requests: counter(
                "wsgate_client_requests_total",
                "Requests by client protocol (http1, h2).",
                &["protocol"],
            ),
            ws_opened: counter(
                "wsgate_websocket_sessions_opened_total",
                "WebSocket sessions opened, by client protocol (http1: Upgrade, h2: RFC 8441).",
                &["protocol"],
            ),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
