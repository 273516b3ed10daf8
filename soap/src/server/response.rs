//! How an answer is put on the wire: a status, a content type and a body.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::Full;

pub(super) type HttpResponse = Response<Full<Bytes>>;

pub(super) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> HttpResponse {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(super) fn plain(status: StatusCode, text: &'static str) -> HttpResponse {
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(text.as_bytes()),
    )
}

pub(super) fn xml_response(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    response(status, "text/xml; charset=utf-8", Bytes::from(body))
}
