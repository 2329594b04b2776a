//! Bounds on configuration files, checked before the YAML parser sees them, so that a
//! pathological file is refused cheaply (linear scan, no allocation per byte) instead of costing
//! seconds of parsing.
//!
//! | limit | value | why |
//! |---|---|---|
//! | file size | [`MAX_FILE_BYTES`] (8 MiB) | manifests are kilobytes; a large file is a mistake or an attack |
//! | nesting depth | [`MAX_DEPTH`] (100 levels of flow `[`/`{` plus block indentation) | the YAML parser's key tracking costs time proportional to the depth for every token (a file of 100 000 `[` took seconds) |
//! | aliases | [`MAX_ALIASES`] (1000 `*alias` uses per file) | alias expansion ("billion laughs") is bounded again by the deserializer's own repetition limit |
//!
//! The scan is conservative only where YAML is ambiguous without a full parse: brackets inside a
//! block scalar (`|`, `>`) or a quoted string are not counted; brackets in a plain scalar of block
//! context count only where a flow collection could start.

/// Largest configuration file read.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// Deepest nesting of collections allowed.
pub const MAX_DEPTH: usize = 100;
/// Most alias uses (`*name`) in one file.
pub const MAX_ALIASES: usize = 1000;

/// Why a file is refused before parsing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("the file has {0} bytes; at most {MAX_FILE_BYTES} are read")]
    TooLarge(u64),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("collections are nested more than {MAX_DEPTH} levels deep (line {0})")]
    TooDeep(usize),
    /// More than [`MAX_ALIASES`] alias uses.
    #[error("more than {MAX_ALIASES} aliases (*name) are used (line {0})")]
    TooManyAliases(usize),
}

/// Checks a file's size before it is read.
pub fn check_size(len: u64) -> Result<(), LimitError> {
    if len > MAX_FILE_BYTES {
        Err(LimitError::TooLarge(len))
    } else {
        Ok(())
    }
}

/// Where the scanner is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// Scans YAML text for nesting depth and alias count (see the module docs). One function on
/// purpose: it is a single-pass state machine whose six pieces of state (quote, flow depth, block
/// stack, block scalar, token start, alias count) every branch reads and writes.
pub fn check_text(text: &str) -> Result<(), LimitError> {
    check_size(text.len() as u64)?;
    let mut flow: usize = 0;
    let mut block: Vec<usize> = Vec::new();
    let mut aliases = 0usize;
    let mut quote = Quote::None;
    // Indentation of the line that opened a block scalar: more-indented lines are its content.
    let mut block_scalar: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let lineno = n + 1;
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|&&b| b == b' ').count();
        let blank = indent == bytes.len() || bytes[indent] == b'#';
        if let Some(open) = block_scalar {
            if blank || indent > open {
                continue;
            }
            block_scalar = None;
        }
        if quote == Quote::None && flow == 0 && !blank {
            if line.starts_with("---") || line.starts_with("...") {
                block.clear();
                continue;
            }
            while block.last().is_some_and(|&top| top >= indent) {
                block.pop();
            }
            block.push(indent);
        }
        let mut i = if quote == Quote::None { indent } else { 0 };
        let mut token_start = quote == Quote::None;
        while i < bytes.len() {
            let b = bytes[i];
            match quote {
                Quote::Single => {
                    if b == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 1;
                        } else {
                            quote = Quote::None;
                        }
                    }
                    i += 1;
                    continue;
                }
                Quote::Double => {
                    if b == b'\\' {
                        i += 1;
                    } else if b == b'"' {
                        quote = Quote::None;
                    }
                    i += 1;
                    continue;
                }
                Quote::None => {}
            }
            match b {
                b'#' if token_start => break,
                b'\'' if token_start => quote = Quote::Single,
                b'"' if token_start => quote = Quote::Double,
                b'[' | b'{' if token_start || flow > 0 => flow += 1,
                b']' | b'}' if flow > 0 => flow -= 1,
                b'*' if token_start => {
                    aliases += 1;
                    if aliases > MAX_ALIASES {
                        return Err(LimitError::TooManyAliases(lineno));
                    }
                }
                // `- - x`: each further sequence entry on the line nests one level.
                b'-' if token_start
                    && flow == 0
                    && i > indent
                    && matches!(bytes.get(i + 1), Some(b' ') | None) =>
                {
                    block.push(i);
                }
                b'|' | b'>' if token_start && flow == 0 && scalar_header(&bytes[i + 1..]) => {
                    block_scalar = Some(indent);
                    break;
                }
                _ => {}
            }
            if flow + block.len() > MAX_DEPTH {
                return Err(LimitError::TooDeep(lineno));
            }
            token_start = matches!(b, b' ' | b'\t' | b'[' | b'{' | b',' | b':' | b'-' | b'?');
            i += 1;
        }
        if flow + block.len() > MAX_DEPTH {
            return Err(LimitError::TooDeep(lineno));
        }
    }
    Ok(())
}

/// Whether the rest of a line after `|` or `>` is a block scalar header (indicators, then
/// nothing or a comment).
fn scalar_header(rest: &[u8]) -> bool {
    let end = rest.iter().position(|&b| b == b'#').unwrap_or(rest.len());
    rest[..end]
        .iter()
        .all(|&b| matches!(b, b'+' | b'-' | b'0'..=b'9' | b' ' | b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_manifests_pass() {
        let text = r#"
apiVersion: v1
kind: Secret
metadata: {name: tls, namespace: apps, labels: {a: "x[y", b: 'it''s'}}
data:
  tls.crt: |
    -----BEGIN CERTIFICATE-----
    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
    -----END CERTIFICATE-----
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
spec:
  rules:
    - matches:
        - path: {type: RegularExpression, value: "^/a[0-9]{2}$"}
          headers: [{name: x, value: "[[[["}]
      backendRefs:
        - - nested
          - - deeper
"#;
        assert_eq!(check_text(text), Ok(()));
        for f in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"))
            .unwrap()
            .flatten()
        {
            let text = std::fs::read_to_string(f.path()).unwrap();
            assert_eq!(check_text(&text), Ok(()), "{}", f.path().display());
        }
    }

    #[test]
    fn deep_flow_nesting_is_refused() {
        let text = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(check_text(&text), Err(LimitError::TooDeep(1)));
        let text = format!("a: {}", "{b: ".repeat(101));
        assert_eq!(check_text(&text), Err(LimitError::TooDeep(1)));
        let ok = format!("a: {}{}", "[".repeat(90), "]".repeat(90));
        assert_eq!(check_text(&ok), Ok(()));
    }

    #[test]
    fn deep_block_nesting_is_refused() {
        let mut text = String::new();
        for d in 0..150 {
            text.push_str(&" ".repeat(d));
            text.push_str("k:\n");
        }
        assert!(matches!(check_text(&text), Err(LimitError::TooDeep(_))));
        let compact = format!("{}x\n", "- ".repeat(150));
        assert!(matches!(check_text(&compact), Err(LimitError::TooDeep(1))));
    }

    #[test]
    fn alias_floods_are_refused() {
        let mut text = String::from("a: &a [x, x]\n");
        for i in 0..1001 {
            text.push_str(&format!("k{i}: *a\n"));
        }
        assert!(matches!(
            check_text(&text),
            Err(LimitError::TooManyAliases(_))
        ));
    }

    #[test]
    fn size_is_bounded() {
        assert!(check_size(MAX_FILE_BYTES).is_ok());
        assert_eq!(
            check_size(MAX_FILE_BYTES + 1),
            Err(LimitError::TooLarge(MAX_FILE_BYTES + 1))
        );
    }
}
