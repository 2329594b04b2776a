//! Request conditions beyond host and path (Gateway API `HTTPRoute` header, query-parameter and
//! method matches), and the regular-expression type the IR stores.

use serde::Serialize;

/// A compiled regular expression that compares, hashes and prints as its source, so the IR
/// stays plain data. Matches the whole input (anchored).
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Compiles `source` anchored at both ends; the size limit keeps hostile patterns cheap.
    pub fn new(source: &str) -> Result<Self, String> {
        let regex = regex::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("invalid regular expression {source:?}: {e}"))?;
        Ok(Self {
            source: source.to_string(),
            regex,
        })
    }

    /// Whether the whole of `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl std::hash::Hash for Pattern {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.source.hash(h);
    }
}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// How a header or query value is compared.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ValueMatch {
    /// Equal (case-sensitive).
    Exact(String),
    /// The whole value matches.
    Regex(Pattern),
}

impl ValueMatch {
    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(v) => v == value,
            ValueMatch::Regex(p) => p.is_match(value),
        }
    }
}

/// Conditions a request must meet besides host and path; every one given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct RequestConditions {
    /// Method, upper case.
    pub method: Option<String>,
    /// Header name (lower case) and value condition.
    pub headers: Vec<(String, ValueMatch)>,
    /// Query parameter name (exact) and value condition; the first occurrence counts.
    pub query: Vec<(String, ValueMatch)>,
}

/// What the conditions look at in a request.
#[derive(Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The method.
    pub method: &'a str,
    /// The headers.
    pub headers: &'a http::HeaderMap,
    /// The raw query string, if any.
    pub query: Option<&'a str>,
}

impl RequestConditions {
    /// Whether the request meets every condition. A header given several times is judged by its
    /// values joined with `,` (RFC 9110 list semantics).
    pub fn matches(&self, req: &RequestFacts<'_>) -> bool {
        if let Some(m) = &self.method
            && m != req.method
        {
            return false;
        }
        for (name, cond) in &self.headers {
            let mut values = req.headers.get_all(name.as_str()).iter();
            let Some(first) = values.next() else {
                return false;
            };
            let joined;
            let value = match values.next() {
                None => first.to_str().unwrap_or(""),
                Some(_) => {
                    joined = req
                        .headers
                        .get_all(name.as_str())
                        .iter()
                        .map(|v| v.to_str().unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(",");
                    &joined
                }
            };
            if !cond.matches(value) {
                return false;
            }
        }
        for (name, cond) in &self.query {
            match query_param(req.query, name) {
                Some(v) if cond.matches(&v) => {}
                _ => return false,
            }
        }
        true
    }

    /// Precedence after the path (Gateway API): a method match, then more header matches, then
    /// more query matches win. Smaller sorts first.
    pub fn precedence(
        &self,
    ) -> (
        std::cmp::Reverse<bool>,
        std::cmp::Reverse<usize>,
        std::cmp::Reverse<usize>,
    ) {
        (
            std::cmp::Reverse(self.method.is_some()),
            std::cmp::Reverse(self.headers.len()),
            std::cmp::Reverse(self.query.len()),
        )
    }
}

/// The first value of query parameter `name`, percent-decoded (`+` stays `+`).
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(
        method: &'a str,
        headers: &'a http::HeaderMap,
        query: Option<&'a str>,
    ) -> RequestFacts<'a> {
        RequestFacts {
            method,
            headers,
            query,
        }
    }

    #[test]
    fn every_condition_must_hold() {
        let c = RequestConditions {
            method: Some("GET".into()),
            headers: vec![("x-env".into(), ValueMatch::Exact("canary".into()))],
            query: vec![(
                "v".into(),
                ValueMatch::Regex(Pattern::new("[0-9]+").unwrap()),
            )],
        };
        let mut h = http::HeaderMap::new();
        h.insert("x-env", "canary".parse().unwrap());
        assert!(c.matches(&facts("GET", &h, Some("a=1&v=42"))));
        assert!(!c.matches(&facts("POST", &h, Some("v=42"))));
        assert!(!c.matches(&facts("GET", &h, Some("v=4x"))));
        assert!(!c.matches(&facts("GET", &h, None)));
        assert!(!c.matches(&facts("GET", &http::HeaderMap::new(), Some("v=1"))));
    }

    #[test]
    fn query_values_are_decoded_and_first_wins() {
        assert_eq!(query_param(Some("a=%41b&a=2"), "a").as_deref(), Some("Ab"));
        assert_eq!(query_param(Some("flag"), "flag").as_deref(), Some(""));
        assert_eq!(query_param(Some("x=%4"), "x").as_deref(), Some("%4"));
        assert_eq!(query_param(None, "x"), None);
    }

    #[test]
    fn patterns_are_anchored_and_bounded() {
        let p = Pattern::new("/v[0-9]").unwrap();
        assert!(p.is_match("/v1"));
        assert!(!p.is_match("/v1/x"));
        assert!(Pattern::new("(").is_err());
        assert!(Pattern::new(&"a{1000}".repeat(100)).is_err());
    }
}
