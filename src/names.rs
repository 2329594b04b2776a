//! Kubernetes name rules (RFC 1123 DNS labels and subdomains), in one place.

/// Whether `s` is an RFC 1123 DNS label as Kubernetes checks it: 1-63 lower-case letters, digits
/// or `-`, not starting or ending with `-` (namespaces, Service names, host name labels).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is an RFC 1123 DNS subdomain: at most 253 characters of dot-separated
/// [`is_dns_label`]s (object names, host names).
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(is_dns_label("apps-1"));
        for bad in ["", "Apps", "-a", "a-", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_subdomain("ws.example.com"));
        assert!(!is_dns_subdomain("ws..example.com"));
        assert!(!is_dns_subdomain(&format!("{}.com", "a.".repeat(130))));
    }
}
