//! TLS material from Secrets: `kubernetes.io/tls` certificates for listeners and `ca.crt` bundles
//! for HTTPS backends, validated here so `wsgate check` reports a bad certificate.

use crate::source::Snapshot;
use k8s_openapi::api::core::v1::Secret;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;

/// Secrets by namespace and name.
pub(crate) struct Secrets<'a>(HashMap<(&'a str, &'a str), &'a Secret>);

impl<'a> Secrets<'a> {
    pub(crate) fn new(snapshot: &'a Snapshot) -> Self {
        let mut map = HashMap::new();
        for s in &snapshot.secrets {
            if let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) {
                map.insert((ns.as_str(), name.as_str()), &**s);
            }
        }
        Self(map)
    }

    fn value(secret: &Secret, key: &str) -> Option<String> {
        if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
            return Some(v.clone());
        }
        let bytes = secret.data.as_ref()?.get(key)?;
        String::from_utf8(bytes.0.clone()).ok()
    }

    /// The certificate chain and key of a `kubernetes.io/tls` Secret, validated.
    pub(crate) fn certificate(&self, ns: &str, name: &str) -> Result<(String, String), String> {
        let secret = self
            .0
            .get(&(ns, name))
            .ok_or_else(|| format!("Secret {ns}/{name} not found"))?;
        let kind = secret.type_.as_deref().unwrap_or("Opaque");
        if kind != "kubernetes.io/tls" {
            return Err(format!(
                "Secret {ns}/{name} has type {kind}; kubernetes.io/tls is required"
            ));
        }
        let cert = Self::value(secret, "tls.crt")
            .ok_or_else(|| format!("Secret {ns}/{name} has no tls.crt"))?;
        let key = Self::value(secret, "tls.key")
            .ok_or_else(|| format!("Secret {ns}/{name} has no tls.key"))?;
        validate_pair(&cert, &key).map_err(|e| format!("Secret {ns}/{name}: {e}"))?;
        Ok((cert, key))
    }

    /// The `ca.crt` bundle of a Secret, validated.
    pub(crate) fn ca_bundle(&self, ns: &str, name: &str) -> Result<String, String> {
        let secret = self
            .0
            .get(&(ns, name))
            .ok_or_else(|| format!("Secret {ns}/{name} not found"))?;
        let ca = Self::value(secret, "ca.crt")
            .ok_or_else(|| format!("Secret {ns}/{name} has no ca.crt"))?;
        let certs = parse_certs(&ca).map_err(|e| format!("Secret {ns}/{name} ca.crt: {e}"))?;
        if certs.is_empty() {
            return Err(format!("Secret {ns}/{name} ca.crt holds no certificate"));
        }
        Ok(ca)
    }
}

/// PEM certificates.
pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM certificate: {e}"))
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("invalid PEM private key: {e}"))
}

/// Builds the rustls key pair, checking that the key belongs to the certificate.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<rustls::sign::CertifiedKey, String> {
    let certs = parse_certs(cert_pem)?;
    if certs.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let key = parse_key(key_pem)?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("unsupported private key: {e}"))?;
    let ck = rustls::sign::CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| format!("tls.key does not match tls.crt: {e}"))?;
    Ok(ck)
}

fn validate_pair(cert: &str, key: &str) -> Result<(), String> {
    certified_key(cert, key).map(|_| ())
}
