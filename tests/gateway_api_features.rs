//! The features wsgate claims in `GatewayClass` `status.supportedFeatures`: the conformance suite
//! (`sigs.k8s.io/gateway-api/conformance`) decides which tests to run by these exact names, so a
//! misspelt name silently drops its tests from the run (as `BackendProtocolWebSocket` once did:
//! the feature is `HTTPRouteBackendProtocolWebSocket`).

use wsgate::translate::gateway_api::SUPPORTED_FEATURES;

/// Every feature name of Gateway API v1.6.1 (`pkg/features` of the Go module
/// `sigs.k8s.io/gateway-api@v1.6.1`, the release whose CRDs the chart vendors).
const GATEWAY_API_V1_6_1_FEATURES: &[&str] = &[
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
    "Gateway",
    "GatewayPort8080",
    "GatewayStaticAddresses",
    "GatewayHTTPListenerIsolation",
    "GatewayInfrastructurePropagation",
    "GatewayAddressEmpty",
    "ListenerSet",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GRPCRoute",
    "GRPCRouteNamedRouteRule",
    "HTTPRoute",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteMethodMatching",
    "HTTPRouteResponseHeaderModification",
    "HTTPRoutePortRedirect",
    "HTTPRouteSchemeRedirect",
    "HTTPRoutePathRedirect",
    "HTTPRouteHostRewrite",
    "HTTPRoutePathRewrite",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteBackendTimeout",
    "HTTPRouteParentRefPort",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteCORS",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteRetry",
    "HTTPRouteRetryBackendTimeout",
    "HTTPRouteRetryConnectionError",
    "Mesh",
    "MeshClusterIPMatching",
    "MeshConsumerRoute",
    "MeshHTTPRouteRewritePath",
    "MeshHTTPRouteSchemeRedirect",
    "MeshHTTPRouteRedirectPort",
    "MeshHTTPRouteRedirectPath",
    "MeshHTTPRouteBackendRequestHeaderModification",
    "MeshHTTPRouteQueryParamMatching",
    "MeshHTTPRouteNamedRouteRule",
    "ReferenceGrant",
    "TCPRoute",
    "TLSRoute",
    "TLSRouteModeTerminate",
    "TLSRouteModeMixed",
    "UDPRoute",
];

#[test]
fn every_claimed_feature_is_a_gateway_api_feature_name() {
    let unknown: Vec<&str> = SUPPORTED_FEATURES
        .iter()
        .copied()
        .filter(|f| !GATEWAY_API_V1_6_1_FEATURES.contains(f))
        .collect();
    assert!(
        unknown.is_empty(),
        "not Gateway API v1.6.1 feature names: {unknown:?}"
    );
}

#[test]
fn claimed_features_are_sorted_and_unique() {
    let mut sorted = SUPPORTED_FEATURES.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, SUPPORTED_FEATURES, "the spec wants them sorted");
}

#[test]
fn the_websocket_and_redirect_features_are_claimed() {
    for f in [
        "HTTPRouteBackendProtocolWebSocket",
        "HTTPRoute303RedirectStatusCode",
        "HTTPRoute307RedirectStatusCode",
        "HTTPRoute308RedirectStatusCode",
        "HTTPRouteRequestTimeout",
        "HTTPRouteBackendTimeout",
        "GatewayPort8080",
        "HTTPRouteParentRefPort",
    ] {
        assert!(SUPPORTED_FEATURES.contains(&f), "{f} is not claimed");
    }
}
