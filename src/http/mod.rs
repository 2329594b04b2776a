//! Pure HTTP request rules applied before routing: RFC 9112 head checks and path normalisation.
//! No I/O; the proxy calls them once per request and the fuzz targets call them directly.

pub mod path;
pub mod request;
