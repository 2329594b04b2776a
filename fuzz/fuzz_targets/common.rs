//! Shared by the targets: a raw request head parsed the way hyper parses it (httparse), as
//! `http` types.

/// Parses `data` as a request head; `None` when httparse (and so hyper) would refuse it.
pub fn request(data: &[u8]) -> Option<http::Request<()>> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut slots);
    let httparse::Status::Complete(_) = req.parse(data).ok()? else {
        return None;
    };
    let mut b = http::Request::builder()
        .method(req.method?)
        .uri(req.path?)
        .version(if req.version? == 1 {
            http::Version::HTTP_11
        } else {
            http::Version::HTTP_10
        });
    for h in req.headers.iter() {
        b = b.header(h.name, h.value);
    }
    b.body(()).ok()
}
