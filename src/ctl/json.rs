//! JSON output in the exact shape `etcdctl -w json` prints: protobuf field names, zero values
//! left out, bytes as standard base64, 64-bit integers as plain numbers.

use std::fmt::Write as _;

/// Builds one JSON object, field by field, leaving out zero values as etcdctl does.
#[derive(Debug, Default)]
pub struct JsonObject {
    body: String,
}

impl JsonObject {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, name: &str) {
        if !self.body.is_empty() {
            self.body.push(',');
        }
        write_string(&mut self.body, name);
        self.body.push(':');
    }

    pub fn u64(mut self, name: &str, value: u64) -> Self {
        if value != 0 {
            self.key(name);
            let _ = write!(self.body, "{value}");
        }
        self
    }

    /// A number written even when zero (for reports, where 0 is information).
    pub fn count(mut self, name: &str, value: i64) -> Self {
        self.key(name);
        let _ = write!(self.body, "{value}");
        self
    }

    pub fn i64(mut self, name: &str, value: i64) -> Self {
        if value != 0 {
            self.key(name);
            let _ = write!(self.body, "{value}");
        }
        self
    }

    pub fn bool(mut self, name: &str, value: bool) -> Self {
        if value {
            self.key(name);
            self.body.push_str("true");
        }
        self
    }

    pub fn str(mut self, name: &str, value: &str) -> Self {
        if !value.is_empty() {
            self.key(name);
            write_string(&mut self.body, value);
        }
        self
    }

    pub fn bytes(mut self, name: &str, value: &[u8]) -> Self {
        if !value.is_empty() {
            self.key(name);
            self.body.push('"');
            self.body.push_str(&base64(value));
            self.body.push('"');
        }
        self
    }

    pub fn strings(mut self, name: &str, values: &[String]) -> Self {
        if !values.is_empty() {
            self.key(name);
            self.body.push('[');
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    self.body.push(',');
                }
                write_string(&mut self.body, value);
            }
            self.body.push(']');
        }
        self
    }

    /// A string written even when empty (a Go field without `omitempty`).
    pub fn str_always(mut self, name: &str, value: &str) -> Self {
        self.key(name);
        write_string(&mut self.body, value);
        self
    }

    /// A list of byte strings as base64 (Go's `[][]byte`); `null` when empty, as Go writes a
    /// nil slice without `omitempty`.
    pub fn byte_list(mut self, name: &str, values: &[Vec<u8>]) -> Self {
        self.key(name);
        if values.is_empty() {
            self.body.push_str("null");
            return self;
        }
        self.body.push('[');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.body.push(',');
            }
            self.body.push('"');
            self.body.push_str(&base64(value));
            self.body.push('"');
        }
        self.body.push(']');
        self
    }

    /// A nested object; left out when absent (a nil pointer in Go).
    pub fn object(mut self, name: &str, value: Option<JsonObject>) -> Self {
        if let Some(value) = value {
            self.key(name);
            self.body.push_str(&value.finish());
        }
        self
    }

    /// A list of objects, `[]` when empty (a Go slice made empty, not nil).
    pub fn objects_always(mut self, name: &str, values: Vec<JsonObject>) -> Self {
        self.key(name);
        self.body.push('[');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.body.push(',');
            }
            self.body.push_str(&value.finish());
        }
        self.body.push(']');
        self
    }

    /// A list of objects; left out when empty.
    pub fn objects(mut self, name: &str, values: Vec<JsonObject>) -> Self {
        if !values.is_empty() {
            self.key(name);
            self.body.push('[');
            for (i, value) in values.into_iter().enumerate() {
                if i > 0 {
                    self.body.push(',');
                }
                self.body.push_str(&value.finish());
            }
            self.body.push(']');
        }
        self
    }

    pub fn finish(self) -> String {
        format!("{{{}}}", self.body)
    }
}

/// A JSON array of objects (for outputs that are lists at the top level).
pub fn array(values: Vec<JsonObject>) -> String {
    let items: Vec<String> = values.into_iter().map(JsonObject::finish).collect();
    format!("[{}]", items.join(","))
}

/// Writes `value` as a JSON string, escaping as Go's encoding/json does (including its HTML
/// escapes, so output is byte-identical to etcdctl's).
pub fn write_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Standard base64 with padding (RFC 4648), as Go encodes `[]byte` in JSON.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn zero_values_are_left_out() {
        let json = JsonObject::new()
            .u64("cluster_id", 0)
            .i64("revision", 4)
            .bool("more", false)
            .bytes("value", b"")
            .object("prev_kv", None)
            .objects("kvs", vec![])
            .finish();
        assert_eq!(json, r#"{"revision":4}"#);
    }

    #[test]
    fn strings_escape_like_go() {
        let mut out = String::new();
        write_string(&mut out, "a\"b\\<c>&\n\u{1}");
        assert_eq!(out, r#""a\"b\\\u003cc\u003e\u0026\n\u0001""#);
    }
}
