//! Responses shaped byte for byte like etcd's Go `net/http` ones, and the small parsers the
//! handlers need (query strings, JSON strings).

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};

/// What Go's `http.Error` sends, and so every etcd error reply: plain text with `nosniff`.
pub(crate) const TEXT_PLAIN_UTF8: &str = "text/plain; charset=utf-8";

/// etcd's client port answers every request with these CORS headers (its default `--cors` is
/// `*`), and a bare 200 to any `OPTIONS` preflight.
const CORS_HEADERS: [(&str, &str); 3] = [
    (
        "access-control-allow-headers",
        "accept, content-type, authorization",
    ),
    (
        "access-control-allow-methods",
        "POST, GET, OPTIONS, PUT, DELETE",
    ),
    ("access-control-allow-origin", "*"),
];

/// A response with etcd's CORS headers, `status`, optional content type and `body`.
pub(crate) fn reply(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: String,
) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in CORS_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Some(content_type) = content_type {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

/// Go's `http.Error(w, message, status)`: the message plus a newline, as plain text, `nosniff`.
pub(crate) fn go_error(status: StatusCode, message: &str) -> Response<Body> {
    plain_text_nosniff(status, format!("{message}\n"))
}

/// Plain text marked `nosniff`, as `http.Error` and etcd's `/livez` handlers write it.
pub(crate) fn plain_text_nosniff(status: StatusCode, body: String) -> Response<Body> {
    let mut response = reply(status, Some(TEXT_PLAIN_UTF8), body);
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// etcd's answer to a method other than GET on `/health`, `/version`, `/livez`, `/readyz`.
pub(crate) fn method_not_allowed() -> Response<Body> {
    let mut response = go_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    response
}

/// The answer to a CORS preflight: 200, CORS headers, empty body.
pub(crate) fn preflight() -> Response<Body> {
    reply(StatusCode::OK, None, String::new())
}

/// The decoded `key=value` pairs of a query string, in order, as Go 1.16's `url.ParseQuery`
/// (etcd 3.5.1's) reads them: `&`- or `;`-separated, `+` is a space, `%XX` escapes, a pair that
/// fails to decode is skipped.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split(['&', ';'])
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(key)?, percent_decode(value)?))
        })
        .collect()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Appends `text` as a JSON string the way Go's `encoding/json` writes it (etcd 3.5.1 is built
/// with Go 1.16): `"` `\` and `\n` `\r` `\t` escaped by name, other control characters and `<`
/// `>` `&` U+2028 U+2029 as `\u00XX`/`\u20XX`.
pub(crate) fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_as_go_does() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"b\\c\nd\u{1}<&>\u{2028}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001\\u003c\\u0026\\u003e\\u2028é\"");
    }

    #[test]
    fn query_pairs_decode_like_go() {
        let pairs = query_pairs(Some(
            "serializable=true&exclude=NO%53PACE&&verbose;x=a+b&bad=%zz",
        ));
        let expected: Vec<(String, String)> = [
            ("serializable", "true"),
            ("exclude", "NOSPACE"),
            ("verbose", ""),
            ("x", "a b"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(pairs, expected);
        assert!(query_pairs(None).is_empty());
        assert!(query_pairs(Some("%")).is_empty());
    }
}
