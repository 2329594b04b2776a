//! Pure HTTP request rules applied before routing: RFC 9112 head checks, their RFC 9113 form
//! for HTTP/2 streams (with RFC 8441 extended CONNECT), and path normalisation.
//! No I/O; the proxy calls them once per request and the fuzz targets call them directly.

pub mod path;
pub mod request;
pub mod request_h2;
