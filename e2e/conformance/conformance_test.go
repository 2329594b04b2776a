// Package conformance runs the official Gateway API conformance suite
// (sigs.k8s.io/gateway-api/conformance, the release pinned in go.mod) against wsgate
// installed in the e2e single-node cluster. run.sh builds this test binary and starts it inside
// the node's network namespace; without WSGATE_CONFORMANCE=1 the test skips, so `go test ./...`
// outside that setup does nothing.
//
// Environment (set by run.sh):
//
//	KUBECONFIG                      the node's admin kubeconfig
//	WSGATE_CONFORMANCE_REPORT       where the ConformanceReport YAML goes (empty = no report)
//	WSGATE_CONFORMANCE_VERSION      wsgate's version for the report
//	WSGATE_CONFORMANCE_RUN_TEST     one test's ShortName only (the suite's RunTest)
//	WSGATE_CONFORMANCE_SKIP_TESTS   comma-separated ShortNames to skip
//	WSGATE_CONFORMANCE_FEATURES     comma-separated features; empty = read from the
//	                                GatewayClass's status.supportedFeatures (what wsgate claims)
package conformance

import (
	"bytes"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/yaml"
)

// baseManifestsPath is where the filtered copy of the suite's base manifests lives in the
// extra manifest FS (the suite reads every manifest path from its ManifestFS list, first hit wins).
const baseManifestsPath = "wsgate/base-manifests.yaml"

func TestGatewayAPIConformance(t *testing.T) {
	if os.Getenv("WSGATE_CONFORMANCE") != "1" {
		t.Skip("WSGATE_CONFORMANCE=1 not set: run e2e/conformance/run.sh")
	}
	opts := conformance.DefaultOptions(t)
	opts.GatewayClassName = "wsgate"
	opts.ConformanceProfiles = []suite.ConformanceProfileName{suite.GatewayHTTPConformanceProfileName}
	opts.Implementation = confv1.Implementation{
		Organization: "wsgate",
		Project:      "wsgate",
		URL:          "https://github.com/wsgate/wsgate",
		Version:      envOr("WSGATE_CONFORMANCE_VERSION", "dev"),
		Contact:      []string{"@wsgate/maintainers"},
	}
	opts.ReportOutputPath = os.Getenv("WSGATE_CONFORMANCE_REPORT")
	opts.RunTest = os.Getenv("WSGATE_CONFORMANCE_RUN_TEST")
	if s := os.Getenv("WSGATE_CONFORMANCE_SKIP_TESTS"); s != "" {
		opts.SkipTests = suite.ParseSkipTests(s)
	}
	if f := os.Getenv("WSGATE_CONFORMANCE_FEATURES"); f != "" {
		opts.SupportedFeatures = suite.ParseSupportedFeaturesSlice(f)
	}
	// The test namespaces are removed after each test, so a failure leaves no state behind for
	// the next one; the base resources stay for the whole run and go with the node.
	opts.CleanupBaseResources = false
	opts.CleanupTestResources = true

	base, err := baseManifestsWithoutUDP()
	if err != nil {
		t.Fatalf("reading the suite's base manifests: %v", err)
	}
	opts.BaseManifests = baseManifestsPath
	opts.ManifestFS = []fs.FS{fstest.MapFS{baseManifestsPath: {Data: base}}, &conformance.Manifests}

	conformance.RunConformanceWithOptions(t, opts)
}

// baseManifestsWithoutUDP returns the suite's base/manifests.yaml without the documents
// labelled `app: udp` (a CoreDNS Deployment and Service, the backend of the UDPRoute tests).
// Setup waits for every pod of the base namespaces to be Ready, and that image
// (registry.k8s.io/coredns/coredns) cannot be pulled or built here; UDPRoute is not part of
// the GATEWAY-HTTP profile, so nothing this run tests uses it. Every other document is kept
// byte for byte.
func baseManifestsWithoutUDP() ([]byte, error) {
	raw, err := fs.ReadFile(&conformance.Manifests, "base/manifests.yaml")
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var obj struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return nil, err
		}
		if obj.Metadata.Labels["app"] == "udp" {
			continue
		}
		out.WriteString(doc)
		out.WriteString("\n---\n")
	}
	return out.Bytes(), nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// The filter drops exactly the CoreDNS Service and Deployment and keeps every other document.
func TestBaseManifestsWithoutUDP(t *testing.T) {
	raw, err := fs.ReadFile(&conformance.Manifests, "base/manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := baseManifestsWithoutUDP()
	if err != nil {
		t.Fatal(err)
	}
	count := func(b []byte, s string) int { return strings.Count(string(b), s) }
	if n := count(got, "registry.k8s.io/coredns/"); n != 0 {
		t.Errorf("the CoreDNS image is still referenced %d times", n)
	}
	if before, after := count(raw, "\nkind: Deployment\n"), count(got, "\nkind: Deployment\n"); after != before-1 {
		t.Errorf("Deployments: %d before, %d after; want exactly one dropped", before, after)
	}
	if before, after := count(raw, "\nkind: Service\n"), count(got, "\nkind: Service\n"); after != before-1 {
		t.Errorf("Services: %d before, %d after; want exactly one dropped", before, after)
	}
	for _, kept := range []string{"kind: Gateway\n", "name: infra-backend-v1\n", "name: tls-backend-2\n", "name: web-backend\n"} {
		if count(got, kept) != count(raw, kept) {
			t.Errorf("%q: %d before, %d after", kept, count(raw, kept), count(got, kept))
		}
	}
}
