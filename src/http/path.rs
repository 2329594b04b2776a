//! Request path normalisation: the one form that routing and the firewall match on, and (unless a
//! route keeps the original) the path the backend receives.
//!
//! The rules, in order (documented in `docs/request-hygiene.md`):
//!
//! 1. percent escapes must be two hex digits; an escape of an unreserved character
//!    (`A-Z a-z 0-9 - . _ ~`, RFC 3986 §2.3) is decoded, every other escape is kept with upper-case
//!    hex digits;
//! 2. an encoded `/` (`%2F`) or `\` (`%5C`), a literal `\` and an encoded control character
//!    (`%00`-`%1F`, `%7F`) are refused (400): backends disagree on what they mean, so any answer
//!    would let a path pass the firewall in one form and reach the backend in another;
//! 3. empty segments are dropped (`//a` is `/a`);
//! 4. `.` and `..` segments are removed (RFC 3986 §5.2.4); `..` above the root stays at the root;
//! 5. `;` parameters of a segment (`/a;v=1/b`) are kept in the forwarded path but are not part of
//!    the matching path (`/a/b`); a dot segment with parameters (`..;x`) counts as a dot segment.

use std::borrow::Cow;

/// Why a path is refused (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    #[error("malformed percent escape in the path")]
    BadEscape,
    /// `%2F`, `%5C` or a literal backslash.
    #[error("encoded slash or backslash in the path")]
    EncodedSeparator,
    /// An encoded control character such as `%00`.
    #[error("encoded control character in the path")]
    ControlChar,
}

/// A normalised path in its two forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath<'a> {
    /// What the backend receives: normalised, `;` parameters kept.
    pub forward: Cow<'a, str>,
    /// What routes and firewall rules are matched against: `forward` without `;` parameters.
    pub matching: Cow<'a, str>,
}

impl NormalPath<'_> {
    /// Whether normalisation changed anything (the request's URI needs no rewrite otherwise).
    pub fn is_unchanged(&self) -> bool {
        matches!(self.forward, Cow::Borrowed(_))
    }
}

/// Normalises the path of a request target (`raw` is the path without the query).
pub fn normalize(raw: &str) -> Result<NormalPath<'_>, PathError> {
    if raw.is_empty() {
        let slash = Cow::Borrowed("/");
        return Ok(NormalPath {
            forward: Cow::Owned("/".into()),
            matching: slash,
        });
    }
    if raw == "*" || is_normal(raw) {
        return Ok(NormalPath {
            forward: Cow::Borrowed(raw),
            matching: Cow::Borrowed(raw),
        });
    }
    slow(raw)
}

/// The common case, checked without allocating: nothing to decode, merge, remove or strip.
fn is_normal(raw: &str) -> bool {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut prev = 0u8;
    for &c in b {
        if matches!(c, b'%' | b';' | b'\\') || (prev == b'/' && matches!(c, b'/' | b'.')) {
            return false;
        }
        prev = c;
    }
    true
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes escapes of unreserved characters in `s` into `out`, upper-cases the others.
fn decode_into(s: &str, out: &mut String) -> Result<(), PathError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let byte = hi * 16 + lo;
                if matches!(byte, b'/' | b'\\') {
                    return Err(PathError::EncodedSeparator);
                }
                if byte < 0x20 || byte == 0x7f {
                    return Err(PathError::ControlChar);
                }
                if is_unreserved(byte) {
                    out.push(char::from(byte));
                } else {
                    out.push('%');
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
                }
                i += 3;
            }
            b'\\' => return Err(PathError::EncodedSeparator),
            _ => {
                // Copy the run up to the next escape or backslash in one go (keeps UTF-8 intact).
                let end = b[i..]
                    .iter()
                    .position(|&c| matches!(c, b'%' | b'\\'))
                    .map_or(b.len(), |p| i + p);
                out.push_str(&s[i..end]);
                i = end;
            }
        }
    }
    Ok(())
}

fn slow(raw: &str) -> Result<NormalPath<'static>, PathError> {
    // (decoded name, decoded parameters including their leading `;`)
    let mut segments: Vec<(String, String)> = Vec::new();
    let mut trailing = false;
    let body = raw.strip_prefix('/').unwrap_or(raw);
    for seg in body.split('/') {
        let (name_raw, params_raw) = match seg.find(';') {
            Some(i) => seg.split_at(i),
            None => (seg, ""),
        };
        let mut name = String::with_capacity(name_raw.len());
        decode_into(name_raw, &mut name)?;
        let mut params = String::with_capacity(params_raw.len());
        decode_into(params_raw, &mut params)?;
        match name.as_str() {
            "" | "." => trailing = true,
            ".." => {
                segments.pop();
                trailing = true;
            }
            _ => {
                segments.push((name, params));
                trailing = false;
            }
        }
    }
    let mut forward = String::with_capacity(raw.len());
    let mut matching = String::with_capacity(raw.len());
    for (name, params) in &segments {
        forward.push('/');
        forward.push_str(name);
        forward.push_str(params);
        matching.push('/');
        matching.push_str(name);
    }
    if segments.is_empty() || trailing {
        forward.push('/');
        matching.push('/');
    }
    Ok(NormalPath {
        forward: Cow::Owned(forward),
        matching: Cow::Owned(matching),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(raw: &str) -> String {
        normalize(raw).unwrap().matching.into_owned()
    }
    fn f(raw: &str) -> String {
        normalize(raw).unwrap().forward.into_owned()
    }

    #[test]
    fn bypasses_from_the_issue_match_internal() {
        for raw in [
            "/internal;a=b",
            "/%69nternal",
            "//internal",
            "/./internal",
            "/x/../internal",
            "/%2e/internal",
            "/%2E%2E/internal",
            "/x/..;y/internal",
            "/x/.%2e/internal",
            "///./internal",
        ] {
            assert_eq!(m(raw), "/internal", "{raw}");
        }
    }

    #[test]
    fn forwarded_form_keeps_parameters_and_escapes() {
        assert_eq!(f("/internal;a=b"), "/internal;a=b");
        assert_eq!(f("/a%20b/%7e"), "/a%20b/~");
        assert_eq!(f("/a%c3%a9"), "/a%C3%A9");
        assert_eq!(f("/a/b/"), "/a/b/");
        assert_eq!(f("/a/b/.."), "/a/");
        assert_eq!(f("/a/."), "/a/");
        assert_eq!(f("/.."), "/");
        assert_eq!(f("/../../etc"), "/etc");
        assert_eq!(f(""), "/");
        assert_eq!(f("*"), "*");
        assert_eq!(f("/caf\u{e9}"), "/caf\u{e9}");
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for raw in ["/", "/a/b", "/a.b/c-d_e~", "/.well-known/x"] {
            let n = normalize(raw).unwrap();
            assert_eq!(n.forward, raw);
            if raw != "/.well-known/x" {
                assert!(n.is_unchanged(), "{raw}");
            }
        }
    }

    #[test]
    fn refused_forms() {
        assert_eq!(normalize("/a%2Fb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a%2fb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a%5cb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a\\b"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a%00"), Err(PathError::ControlChar));
        assert_eq!(normalize("/a%0a"), Err(PathError::ControlChar));
        assert_eq!(normalize("/a%"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a%4"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a;%zz"), Err(PathError::BadEscape));
    }

    #[test]
    fn idempotent() {
        for raw in [
            "/a//b/./c/../d;x=1/",
            "/%41%42/%2e%2e/c",
            "/a;b/..;c/d",
            "/x%3By",
        ] {
            let once = f(raw);
            assert_eq!(f(&once), once, "{raw}");
            assert_eq!(m(&once), m(raw), "{raw}");
        }
    }
}
