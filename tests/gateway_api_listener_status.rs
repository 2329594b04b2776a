//! Gateway API listener status as the conformance suite checks it (GatewayListenerUnsupportedProtocol,
//! GatewayInvalidRouteKind): `supportedKinds` lists only the route kinds a listener really accepts
//! (none for a protocol wsgate does not serve), and a Gateway with some invalid listeners is still
//! Accepted but with the reason `ListenersNotValid`; with none valid it is not Accepted.

use wsgate::source::files;
use wsgate::translate::gateway_api::{GatewayApiReport, GatewayReport, ListenerReport};
use wsgate::translate::{self, Options};

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: wsgate}\nspec: {controllerName: wsgate.dev/gateway-controller}\n---\n";

fn report(gateways: &str) -> GatewayApiReport {
    let mut loaded = files::Loaded::default();
    files::parse_into("t.yaml", &format!("{CLASS}{gateways}"), &mut loaded);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    translate::translate(&loaded.snapshot, &Options::default()).gateway_api
}

fn gateway<'a>(r: &'a GatewayApiReport, name: &str) -> &'a GatewayReport {
    r.gateways
        .iter()
        .find(|g| g.object.name == name)
        .unwrap_or_else(|| panic!("no report for Gateway {name}: {r:?}"))
}

fn listener<'a>(g: &'a GatewayReport, name: &str) -> &'a ListenerReport {
    g.listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no listener {name}: {g:?}"))
}

/// (status, reason) of a condition type.
fn cond(conditions: &[translate::Condition], type_: &str) -> (bool, String) {
    let c = conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {conditions:?}"));
    (c.is_true(), c.reason.clone())
}

fn gw(name: &str, listeners: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: infra}}\nspec:\n  gatewayClassName: wsgate\n  listeners:\n{listeners}---\n"
    )
}

#[test]
fn unsupported_protocol_listener_has_no_supported_kinds_and_decides_gateway_acceptance() {
    let r = report(&format!(
        "{}{}",
        gw(
            "only-invalid",
            "  - {name: invalid, port: 1111, protocol: INVALID}\n"
        ),
        gw(
            "mixed",
            "  - {name: http, port: 80, protocol: HTTP}\n  - {name: invalid, port: 1111, protocol: INVALID}\n"
        ),
    ));

    let only = gateway(&r, "only-invalid");
    assert_eq!(
        cond(&only.conditions, "Accepted"),
        (false, "ListenersNotValid".into())
    );
    let inv = listener(only, "invalid");
    assert!(inv.supported_kinds.is_empty(), "{inv:?}");
    assert_eq!(
        cond(&inv.conditions, "Accepted"),
        (false, "UnsupportedProtocol".into())
    );

    let mixed = gateway(&r, "mixed");
    assert_eq!(
        cond(&mixed.conditions, "Accepted"),
        (true, "ListenersNotValid".into())
    );
    assert_eq!(
        cond(&mixed.conditions, "Programmed"),
        (true, "Programmed".into())
    );
    assert_eq!(listener(mixed, "http").supported_kinds, ["HTTPRoute"]);
    assert!(listener(mixed, "invalid").supported_kinds.is_empty());
}

#[test]
fn supported_kinds_are_the_valid_allowed_kinds() {
    let r = report(&gw(
        "kinds",
        concat!(
            "  - {name: only-bad, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: FooRoute}]}}\n",
            "  - {name: mixed, port: 81, protocol: HTTP, allowedRoutes: {kinds: [{kind: FooRoute}, {kind: HTTPRoute}]}}\n",
            "  - {name: other-group, port: 82, protocol: HTTP, allowedRoutes: {kinds: [{group: example.com, kind: HTTPRoute}]}}\n",
            "  - {name: default, port: 83, protocol: HTTP}\n",
        ),
    ));
    let g = gateway(&r, "kinds");
    let only_bad = listener(g, "only-bad");
    assert!(only_bad.supported_kinds.is_empty(), "{only_bad:?}");
    assert_eq!(
        cond(&only_bad.conditions, "ResolvedRefs"),
        (false, "InvalidRouteKinds".into())
    );
    let mixed = listener(g, "mixed");
    assert_eq!(mixed.supported_kinds, ["HTTPRoute"]);
    assert_eq!(
        cond(&mixed.conditions, "ResolvedRefs"),
        (false, "InvalidRouteKinds".into())
    );
    assert!(listener(g, "other-group").supported_kinds.is_empty());
    assert_eq!(listener(g, "default").supported_kinds, ["HTTPRoute"]);
    // Every listener here is Accepted (a bad kind is a ResolvedRefs problem), so the Gateway is
    // plainly Accepted.
    assert_eq!(cond(&g.conditions, "Accepted"), (true, "Accepted".into()));
}

/// GatewayInvalidParametersRef: wsgate has no parameters kind, so a Gateway naming
/// `infrastructure.parametersRef` is not Accepted (reason InvalidParameters); without it the same
/// Gateway is.
#[test]
fn infrastructure_parameters_ref_is_rejected_with_invalid_parameters() {
    let with = report(&gw(
        "params",
        "  - {name: http, port: 80, protocol: HTTP}\n  infrastructure:\n    parametersRef: {group: invalid.io, kind: InvalidParameters, name: invalid}\n",
    ));
    assert_eq!(
        cond(&gateway(&with, "params").conditions, "Accepted"),
        (false, "InvalidParameters".into())
    );
    let labels_only = report(&gw(
        "labels",
        "  - {name: http, port: 80, protocol: HTTP}\n  infrastructure:\n    labels: {team: a}\n",
    ));
    assert_eq!(
        cond(&gateway(&labels_only, "labels").conditions, "Accepted"),
        (true, "Accepted".into())
    );
}

/// GatewayWithAttachedRoutes ("AttachedRoutes set even when Gateway has unresolved refs"):
/// attachment follows `parentRefs` and `allowedRoutes` alone, so a listener whose certificate
/// Secret does not exist still counts its route and the route is Accepted; the listener says
/// `ResolvedRefs: False` and serves nothing.
#[test]
fn a_listener_with_an_unresolved_certificate_still_counts_its_routes_but_serves_none() {
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: infra}\nspec:\n  parentRefs: [{name: unresolved, sectionName: tls}]\n  rules:\n  - backendRefs: [{name: does-not-exist, port: 8080}]\n---\n";
    let mut loaded = files::Loaded::default();
    let yaml = format!(
        "{CLASS}{}{route}",
        gw(
            "unresolved",
            "  - {name: tls, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: missing}]}, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {kubernetes.io/metadata.name: infra}}}}}\n"
        )
    );
    files::parse_into("t.yaml", &yaml, &mut loaded);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let t = translate::translate(&loaded.snapshot, &Options::default());
    let g = gateway(&t.gateway_api, "unresolved");
    let l = listener(g, "tls");
    assert_eq!(l.attached_routes, 1, "{l:?}");
    assert_eq!(
        cond(&l.conditions, "ResolvedRefs"),
        (false, "InvalidCertificateRef".into())
    );
    assert!(!cond(&g.conditions, "Programmed").0, "{g:?}");
    let r = t
        .gateway_api
        .routes
        .iter()
        .find(|r| r.object.name == "r")
        .unwrap();
    let p = &r.parents[0].conditions;
    assert_eq!(cond(p, "Accepted"), (true, "Accepted".into()));
    assert_eq!(cond(p, "ResolvedRefs"), (false, "BackendNotFound".into()));
    // Nothing is served on the listener's port.
    assert!(t.table.route(443, "any.host", "/").is_none());
}
