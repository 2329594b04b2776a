//! BackendTLSPolicy parsing: conditions and reasons of the spec, conflicts, section names.

use super::*;
use crate::translate::conditions::ConditionStatus;

const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBdzCCAR2gAwIBAgIUQ2kF1kqW8r9YdKk7nQm1f0lR7y8wCgYIKoZIzj0EAwIw
ETEPMA0GA1UEAwwGdGVzdGNhMB4XDTI2MDEwMTAwMDAwMFoXDTM2MDEwMTAwMDAw
MFowETEPMA0GA1UEAwwGdGVzdGNhMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
-----END CERTIFICATE-----
";

fn policy(name: &str, created: &str, spec: &str) -> Arc<BackendTLSPolicy> {
    Arc::new(serde_yaml::from_str(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: {name}, namespace: apps, creationTimestamp: \"{created}\"}}\nspec: {spec}\n"
    ))
    .unwrap())
}

fn config_map(name: &str, key: &str, value: &str) -> Arc<ConfigMap> {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.metadata.namespace = Some("apps".into());
    cm.data = Some([(key.to_string(), value.to_string())].into());
    Arc::new(cm)
}

/// A real certificate (the CA above is only shaped like one).
fn real_ca() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.self_signed(&key).unwrap().pem()
}

fn conditions(t: &BackendTls, name: &str) -> Vec<(String, ConditionStatus, String)> {
    let i = t
        .entries
        .iter()
        .position(|e| e.object.name == name)
        .unwrap();
    t.entries[i]
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status, c.reason.clone()))
        .collect()
}

fn cond(type_: &str, ok: bool, reason: &str) -> (String, ConditionStatus, String) {
    let status = if ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    (type_.into(), status, reason.into())
}

#[test]
fn config_map_ca_and_system_roots_are_accepted() {
    let ca = real_ca();
    let cms = [config_map("ca", "ca.crt", &ca)];
    let list = [
        policy(
            "cm",
            "2026-01-01T00:00:00Z",
            "{targetRefs: [{group: '', kind: Service, name: a}], validation: {caCertificateRefs: [{group: '', kind: ConfigMap, name: ca}], hostname: a.apps.test}}",
        ),
        policy(
            "sys",
            "2026-01-01T00:00:00Z",
            "{targetRefs: [{group: '', kind: Service, name: b}], validation: {wellKnownCACertificates: System, hostname: b.apps.test}}",
        ),
    ];
    let mut d = Diagnostics::default();
    let t = BackendTls::new(&list, &cms, &mut d);
    assert_eq!(format!("{d:?}"), "Diagnostics([])");
    let a = t
        .lookup("apps", "a", Some("http"), ("apps", "gw"))
        .unwrap()
        .unwrap();
    assert_eq!(a.ca_pem.as_deref().map(str::trim), Some(ca.trim()));
    assert_eq!(&*a.hostname, "a.apps.test");
    let b = t
        .lookup("apps", "b", None, ("apps", "gw"))
        .unwrap()
        .unwrap();
    assert_eq!(b.ca_pem, None);
    assert!(t.lookup("apps", "c", None, ("apps", "gw")).is_none());
    assert!(t.lookup("other", "a", None, ("apps", "gw")).is_none());
    for name in ["cm", "sys"] {
        assert_eq!(
            conditions(&t, name),
            [
                cond("Accepted", true, "Accepted"),
                cond("ResolvedRefs", true, "ResolvedRefs")
            ]
        );
    }
    // The Gateways whose routes reached the Services are the ancestors.
    let report = t.report();
    assert_eq!(report[0].ancestors.len(), 1);
    assert_eq!(
        report[0].ancestors[0].0,
        ("apps".to_string(), "gw".to_string())
    );
}

#[test]
fn unusable_ca_references_fail_closed_with_the_spec_reasons() {
    let cms = [
        config_map("nokey", "other", "x"),
        config_map("garbage", "ca.crt", "not a certificate"),
    ];
    for (name, refs, reason) in [
        ("missing", "[{name: nope}]", "InvalidCACertificateRef"),
        ("nokey", "[{name: nokey}]", "InvalidCACertificateRef"),
        ("garbage", "[{name: garbage}]", "InvalidCACertificateRef"),
        (
            "kind",
            "[{group: '', kind: Secret, name: x}]",
            "InvalidKind",
        ),
    ] {
        let list = [policy(
            name,
            "2026-01-01T00:00:00Z",
            &format!(
                "{{targetRefs: [{{group: '', kind: Service, name: a}}], validation: {{caCertificateRefs: {refs}, hostname: a.apps.test}}}}"
            ),
        )];
        let mut d = Diagnostics::default();
        let t = BackendTls::new(&list, &cms, &mut d);
        assert!(
            t.lookup("apps", "a", None, ("apps", "gw"))
                .unwrap()
                .is_err(),
            "{name}"
        );
        assert_eq!(
            conditions(&t, name),
            [
                cond("Accepted", false, "NoValidCACertificate"),
                cond("ResolvedRefs", false, reason)
            ],
            "{name}"
        );
        let text = format!("{d:?}");
        assert!(
            text.contains("spec.validation.caCertificateRefs[0]"),
            "{text}"
        );
    }
    // The shaped-like-PEM CA without a valid body is refused too.
    let cms = [config_map("fake", "ca.crt", CA)];
    let list = [policy(
        "fake",
        "2026-01-01T00:00:00Z",
        "{targetRefs: [{group: '', kind: Service, name: a}], validation: {caCertificateRefs: [{name: fake}], hostname: a.apps.test}}",
    )];
    let mut d = Diagnostics::default();
    let t = BackendTls::new(&list, &cms, &mut d);
    let _ = t.lookup("apps", "a", None, ("apps", "gw"));
    assert_eq!(conditions(&t, "fake")[0].1, ConditionStatus::False);
}

#[test]
fn invalid_validation_fields_are_not_accepted() {
    for (name, validation, field) in [
        (
            "ip",
            "{wellKnownCACertificates: System, hostname: 192.0.2.1}",
            "hostname",
        ),
        (
            "empty",
            "{wellKnownCACertificates: System, hostname: ''}",
            "hostname",
        ),
        (
            "custom",
            "{wellKnownCACertificates: example.com/mine, hostname: a.test}",
            "wellKnownCACertificates",
        ),
        (
            "both",
            "{wellKnownCACertificates: System, caCertificateRefs: [{name: x}], hostname: a.test}",
            "spec.validation",
        ),
        ("none", "{hostname: a.test}", "spec.validation"),
        (
            "sans",
            "{wellKnownCACertificates: System, hostname: a.test, subjectAltNames: [{type: Hostname, hostname: b.test}]}",
            "subjectAltNames",
        ),
    ] {
        let list = [policy(
            name,
            "2026-01-01T00:00:00Z",
            &format!(
                "{{targetRefs: [{{group: '', kind: Service, name: a}}], validation: {validation}}}"
            ),
        )];
        let mut d = Diagnostics::default();
        let t = BackendTls::new(&list, &[], &mut d);
        assert!(
            t.lookup("apps", "a", None, ("apps", "gw"))
                .unwrap()
                .is_err(),
            "{name}"
        );
        assert_eq!(
            conditions(&t, name)[0],
            cond("Accepted", false, "Invalid"),
            "{name}"
        );
        assert!(format!("{d:?}").contains(field), "{name}: {d:?}");
    }
}

#[test]
fn older_policy_wins_and_a_port_specific_one_beats_the_whole_service() {
    let spec = |host: &str, section: &str| {
        format!(
            "{{targetRefs: [{{group: '', kind: Service, name: a{section}}}], validation: {{wellKnownCACertificates: System, hostname: {host}}}}}"
        )
    };
    let list = [
        policy("newer", "2026-02-01T00:00:00Z", &spec("newer.test", "")),
        policy("older", "2026-01-01T00:00:00Z", &spec("older.test", "")),
        policy(
            "port",
            "2026-03-01T00:00:00Z",
            &spec("port.test", ", sectionName: https"),
        ),
    ];
    let mut d = Diagnostics::default();
    let t = BackendTls::new(&list, &[], &mut d);
    let host = |port: Option<&str>| {
        t.lookup("apps", "a", port, ("apps", "gw"))
            .unwrap()
            .unwrap()
            .hostname
            .to_string()
    };
    assert_eq!(host(None), "older.test");
    assert_eq!(host(Some("http")), "older.test");
    assert_eq!(host(Some("https")), "port.test");
    assert_eq!(
        conditions(&t, "newer")[0],
        cond("Accepted", false, "Conflicted")
    );
    assert_eq!(
        conditions(&t, "older")[0],
        cond("Accepted", true, "Accepted")
    );
}
