//! One error type for everything the proxy answers itself. Request phases return it; exactly one
//! place (`pipeline::rescue`) turns it into a response, logs its reason and counts a rejection.

use super::ProxyBody;
use super::respond;
use super::upstream::ExchangeError;
use http::{HeaderValue, Response, StatusCode, header};
use std::borrow::Cow;

/// Why the proxy answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// `wsgate_rejected_total` reasons (the contract's names).
    MaxConnections,
    RateLimit,
    Origin,
    Firewall,
    WebsocketDisabled,
    NoHealthyBackend,
    BadHandshake,
    /// The request head is larger than `--max-header-bytes`.
    HeaderTooLarge,
    /// No route for host and path.
    NoRoute,
    /// The request body is larger than `--max-body-bytes`.
    BodyTooLarge,
    /// The request (head or body) is malformed.
    BadRequest,
    /// The backend did not connect or answer in time.
    UpstreamTimeout,
    /// The backend refused or reset the connection, or broke the exchange.
    UpstreamFailed,
    /// The backend answered an upgrade with an invalid `101`.
    UpstreamBadUpgrade,
    /// The route names a backend that does not resolve (Gateway API: 500).
    InvalidBackend,
}

impl Reason {
    /// The log label; for rejections also the `wsgate_rejected_total` `reason` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::MaxConnections => "max_connections",
            Reason::RateLimit => "rate_limit",
            Reason::Origin => "origin",
            Reason::Firewall => "firewall",
            Reason::WebsocketDisabled => "websocket_disabled",
            Reason::NoHealthyBackend => "no_healthy_backend",
            Reason::BadHandshake => "bad_handshake",
            Reason::HeaderTooLarge => "header_too_large",
            Reason::NoRoute => "no_route",
            Reason::BodyTooLarge => "body_too_large",
            Reason::BadRequest => "bad_request",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::UpstreamFailed => "upstream_failed",
            Reason::UpstreamBadUpgrade => "upstream_bad_upgrade",
            Reason::InvalidBackend => "invalid_backend",
        }
    }

    /// Whether it counts in `wsgate_rejected_total` (policy refusals, not failures).
    pub(crate) fn is_rejection(self) -> bool {
        matches!(
            self,
            Reason::MaxConnections
                | Reason::RateLimit
                | Reason::Origin
                | Reason::Firewall
                | Reason::WebsocketDisabled
                | Reason::NoHealthyBackend
                | Reason::BadHandshake
        )
    }
}

/// An answer of the proxy's own: status, reason, a message for the client and, for failures, a
/// detail that is logged but never shown to the client (backend addresses, OS error text).
#[derive(Debug)]
pub(crate) struct ProxyError {
    pub(crate) status: StatusCode,
    pub(crate) reason: Reason,
    pub(crate) message: Cow<'static, str>,
    pub(crate) detail: Option<String>,
    /// `Retry-After` seconds.
    pub(crate) retry_after: Option<u64>,
    /// Close the client connection after the answer (nothing pipelined behind it is read).
    pub(crate) close: bool,
    /// The endpoint involved, for the access log.
    pub(crate) endpoint: Option<String>,
}

impl ProxyError {
    /// An answer with `status` for `reason`.
    pub(crate) fn new(
        status: StatusCode,
        reason: Reason,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            detail: None,
            retry_after: None,
            close: false,
            endpoint: None,
        }
    }

    /// 503: no ready and healthy endpoint.
    pub(crate) fn no_endpoints() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Reason::NoHealthyBackend,
            "no healthy endpoint for this backend",
        )
    }

    /// 500: the route's backend reference did not resolve (the spec's answer, not a 503,
    /// because no endpoint will ever appear until the configuration changes).
    pub(crate) fn invalid_backend() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Reason::InvalidBackend,
            "the route's backend reference is invalid",
        )
    }

    /// 502/504 for a failed exchange with `endpoint`; the cause is logged, not shown.
    pub(crate) fn exchange(endpoint: &str, e: &ExchangeError) -> Self {
        let (status, reason, message) = if e.is_timeout() {
            (
                StatusCode::GATEWAY_TIMEOUT,
                Reason::UpstreamTimeout,
                "the backend did not answer in time",
            )
        } else {
            (
                StatusCode::BAD_GATEWAY,
                Reason::UpstreamFailed,
                "the backend failed to answer",
            )
        };
        Self::new(status, reason, message)
            .detail(e.to_string())
            .at(endpoint)
    }

    /// 413 for a body over `max` bytes.
    pub(crate) fn body_too_large(max: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Reason::BodyTooLarge,
            format!("request body larger than {max} bytes"),
        )
        .closing()
    }

    /// With a logged-only detail.
    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// With the endpoint involved.
    pub(crate) fn at(mut self, endpoint: &str) -> Self {
        self.endpoint = Some(endpoint.to_string());
        self
    }

    /// With `Retry-After`.
    pub(crate) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Closing the client connection after the answer.
    pub(crate) fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// The response the client gets.
    pub(crate) fn response(&self) -> Response<ProxyBody> {
        let mut resp = respond::text(self.status, &self.message);
        let headers = resp.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UPGRADE_REQUIRED {
            headers.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_never_show_their_detail() {
        use http_body_util::BodyExt;
        let e = ProxyError::new(StatusCode::BAD_GATEWAY, Reason::UpstreamFailed, "failed")
            .detail("connect to 198.18.0.7:80: Connection refused (os error 111)")
            .at("198.18.0.7:80");
        let resp = e.response();
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("own body")
            .to_bytes();
        assert_eq!(&body[..], b"failed\n");
        assert!(!Reason::UpstreamFailed.is_rejection());
        assert!(Reason::Origin.is_rejection());
    }

    #[test]
    fn version_refusals_name_the_supported_version() {
        let e = ProxyError::new(StatusCode::UPGRADE_REQUIRED, Reason::BadHandshake, "v")
            .retry_after(1)
            .closing();
        let resp = e.response();
        assert_eq!(resp.headers()[header::SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert_eq!(resp.headers()[header::CONNECTION], "close");
    }
}
