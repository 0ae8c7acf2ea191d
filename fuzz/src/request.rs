//! HTTP/1 request bytes to the `http::Request` the router sees: parsed
//! with httparse, as hyper parses what the proxy receives, and built with
//! the checks hyper's conversion makes. Requests hyper would refuse
//! (incomplete, malformed, invalid header) give None.

use http::Request;

/// Headers hyper accepts by default before refusing a request.
const MAX_HEADERS: usize = 100;

pub fn parse(bytes: &[u8]) -> Option<Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(_) = parsed.parse(bytes).ok()? else {
        return None;
    };
    let mut builder = Request::builder().method(parsed.method?).uri(parsed.path?);
    for h in parsed.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    builder.body(()).ok()
}
