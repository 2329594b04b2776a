//! Field paths, annotation keys and ids built by concatenation. `format!` grows its string by
//! reallocation and runs the formatting machinery: about 800 instructions a call, and a
//! translation of 10,000 Ingresses made 200,000 of them, mostly for field paths that are read
//! only when a diagnostic is reported. These build each string with one exact allocation.

use super::ANNOTATION_PREFIX;

/// `wsgate.dev/NAME`.
pub(crate) fn annotation_key(name: &str) -> String {
    [ANNOTATION_PREFIX, name].concat()
}

/// `metadata.annotations[KEY]`, as text only when printed.
pub(crate) struct AnnotationField<'a>(pub &'a str);

impl std::fmt::Display for AnnotationField<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("metadata.annotations[")?;
        f.write_str(self.0)?;
        f.write_str("]")
    }
}

/// `PREFIX[I]SUFFIX`.
pub(crate) fn indexed(prefix: &str, i: usize, suffix: &str) -> String {
    let mut digits = [0u8; 20];
    let digits = decimal(i, &mut digits);
    let mut s = String::with_capacity(prefix.len() + digits.len() + suffix.len() + 2);
    s.push_str(prefix);
    s.push('[');
    s.push_str(digits);
    s.push(']');
    s.push_str(suffix);
    s
}

/// `n` in decimal, written into the end of `buf`.
fn decimal(mut n: usize, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[at..]).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_as_format() {
        for i in [0, 1, 9, 10, 99, 12345, usize::MAX] {
            assert_eq!(
                indexed("spec.rules", i, ".http"),
                format!("spec.rules[{i}].http")
            );
        }
        assert_eq!(annotation_key("affinity"), "wsgate.dev/affinity");
        assert_eq!(
            AnnotationField("wsgate.dev/x").to_string(),
            "metadata.annotations[wsgate.dev/x]"
        );
    }
}
