#!/usr/bin/env bash
# The official Gateway API conformance suite (sigs.k8s.io/gateway-api/conformance, the version
# pinned in go.mod), profile GATEWAY-HTTP, against wsgate in the e2e single-node cluster:
# installs and builds what is missing (e2e/cluster/deps.sh, build.sh; ./build.sh), starts the
# node, imports the suite's echo-basic image, installs the Gateway API CRDs and wsgate with the
# chart (wsgate-values.yaml), creates the GatewayClass `wsgate`, runs the suite inside the node's
# network namespace with a bounded time, and tears the node down by PID. Ends with
# "N passed, N failed" (the suite's tests, by ShortName) and the names of the failing ones.
#
#   bash e2e/conformance/run.sh
#
# Environment:
#   E2E_CONFORMANCE_RUN_TEST     one test only (ShortName, e.g. HTTPRouteSimpleSameNamespace)
#   E2E_CONFORMANCE_SKIP_TESTS   comma-separated ShortNames to skip
#   E2E_CONFORMANCE_FEATURES     comma-separated features instead of the GatewayClass's
#                                status.supportedFeatures
#   E2E_CONFORMANCE_TIMEOUT      bound of the suite run in seconds (default 2700)
#   E2E_CONFORMANCE_OUT          test log, wsgate log, results (default /tmp/wsgate-conformance)
#   KEEP=1                       leave the node running afterwards
# A full run (no RUN_TEST / SKIP_TESTS) writes the report to
# docs/conformance/standard-<version>-default-report.yaml; a filtered one to $E2E_CONFORMANCE_OUT.
set -euo pipefail
# shellcheck source=../cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"
CONF_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

[[ $(id -u) == 0 ]] || die "needs root (network namespace, containerd, kubelet)"
OUT=${E2E_CONFORMANCE_OUT:-/tmp/wsgate-conformance}
SUITE_TIMEOUT=${E2E_CONFORMANCE_TIMEOUT:-2700}
KUBECTL=$REPO/e2e/.bin/kubectl
KUBE=$STATE/kube
NS=wsgate-system
T0=$SECONDS

bash "$CLUSTER_HERE/deps.sh"
bash "$CLUSTER_HERE/build.sh"
bash "$CONF_HERE/build.sh"
HELM=$(bash "$REPO/scripts/helm.sh" install)
SUITE_VERSION=$(sed -n 's|^\tsigs.k8s.io/gateway-api/conformance \(v[^ ]*\)$|\1|p' "$CONF_HERE/go.mod")
WSGATE_VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$REPO/charts/wsgate/Chart.yaml")
log "deps, binaries and images ready in $((SECONDS - T0)) s"

kc() { in_ns "$KUBECTL" --kubeconfig "$KUBE/kubeconfig" "$@"; }
helm_() { in_ns env KUBECONFIG="$KUBE/kubeconfig" HELM_CACHE_HOME="$STATE/helm/cache" \
  HELM_CONFIG_HOME="$STATE/helm/config" HELM_DATA_HOME="$STATE/helm/data" "$HELM" "$@"; }
ctr_() { ctr --address "$STATE/containerd/containerd.sock" --namespace k8s.io "$@"; }
wait_until() { # SECONDS CMD...
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

# A node left over from an interrupted run goes first.
bash "$CLUSTER_HERE/node.sh" down >/dev/null 2>&1 || true
rm -rf "$STATE"
mkdir -p "$OUT"
teardown() {
  # The wsgate log is the first thing to read when a test fails (read from the kubelet's pod log
  # files: `kubectl logs` would make the API server resolve the node's name).
  cat "$STATE"/pod-logs/"$NS"_wsgate-*/wsgate/*.log >"$OUT/wsgate.log" 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then
    log "KEEP=1: node left running; kubeconfig $KUBE/kubeconfig; stop with: bash e2e/cluster/node.sh down"
  else
    bash "$CLUSTER_HERE/node.sh" down || true
  fi
}
trap teardown EXIT
bash "$CLUSTER_HERE/node.sh" up || { echo "0 passed, 1 failed"; exit 1; }

# The suite's backend image, under every name its manifests use.
mapfile -t listing < <(bash "$CONF_HERE/build.sh" --list | tr ' ' '\n')
file=${listing[-1]}
names=("${listing[@]:0:${#listing[@]}-1}")
ctr_ images import "$file" >/dev/null
for n in "${names[@]:1}"; do
  ctr_ images tag --force "${names[0]}" "$n" >/dev/null
done
for n in "${names[@]}"; do
  grep -qxF "$n" <<<"$(ctr_ images ls -q)" || die "image $n is not in containerd after the import"
done

# The Gateway API CRDs (the chart's vendored copy), Established before wsgate starts.
kc apply --server-side -f "$REPO/charts/wsgate/gateway-api-crds/" >/dev/null
kc wait --for condition=Established --timeout=60s -f "$REPO/charts/wsgate/gateway-api-crds/" >/dev/null
# wsgate, one replica; each Gateway gets its own ClusterIP Service (wsgate-values.yaml).
helm_ install wsgate "$REPO/charts/wsgate" --namespace "$NS" --create-namespace \
  -f "$CONF_HERE/wsgate-values.yaml" --wait=false >/dev/null
kc -n "$NS" rollout status deployment/wsgate --timeout=180s >/dev/null ||
  die "wsgate did not become Ready: $(kc -n "$NS" get pods -o wide 2>&1)"
kc apply -f "$CONF_HERE/gatewayclass.yaml" >/dev/null
class_ready() {
  [[ $(kc get gatewayclass wsgate -o 'jsonpath={.status.conditions[?(@.type=="Accepted")].status}') == True &&
    -n $(kc get gatewayclass wsgate -o 'jsonpath={.status.supportedFeatures[*].name}') ]]
}
wait_until 60 class_ready || die "GatewayClass wsgate not Accepted with supportedFeatures"
log "GatewayClass wsgate accepted; supported features: $(kc get gatewayclass wsgate -o 'jsonpath={.status.supportedFeatures[*].name}')"

filtered=0
[[ -n ${E2E_CONFORMANCE_RUN_TEST:-}${E2E_CONFORMANCE_SKIP_TESTS:-} ]] && filtered=1
if ((filtered)); then
  report=$OUT/report.yaml
else
  mkdir -p "$REPO/docs/conformance"
  report=$REPO/docs/conformance/standard-$SUITE_VERSION-default-report.yaml
fi
log "running the conformance suite $SUITE_VERSION (profile GATEWAY-HTTP, at most $SUITE_TIMEOUT s); log: $OUT/suite.log"
T1=$SECONDS
rc=0
in_ns env KUBECONFIG="$KUBE/kubeconfig" WSGATE_CONFORMANCE=1 \
  WSGATE_CONFORMANCE_REPORT="$report.tmp" WSGATE_CONFORMANCE_VERSION="$WSGATE_VERSION" \
  WSGATE_CONFORMANCE_RUN_TEST="${E2E_CONFORMANCE_RUN_TEST:-}" \
  WSGATE_CONFORMANCE_SKIP_TESTS="${E2E_CONFORMANCE_SKIP_TESTS:-}" \
  WSGATE_CONFORMANCE_FEATURES="${E2E_CONFORMANCE_FEATURES:-}" \
  timeout --kill-after=30 "$SUITE_TIMEOUT" "$REPO/e2e/.bin/conformance.test" \
  -test.run '^TestGatewayAPIConformance$' -test.v -test.timeout "$((SUITE_TIMEOUT - 30))s" \
  >"$OUT/suite.log" 2>&1 || rc=$?
log "suite finished in $((SECONDS - T1)) s (exit $rc)"
[[ -s $report.tmp ]] && mv -f "$report.tmp" "$report" && log "report: $report"
rm -f "$report.tmp"

# Results by test (the suite's ShortNames are the first level of subtests).
prc=0
python3 "$CONF_HERE/results.py" "$OUT/suite.log" "$OUT/results.txt" || prc=$?
if ((rc == 124 || rc == 137)) || grep -q '^panic: test timed out' "$OUT/suite.log"; then
  echo "the suite was stopped by its time bound ($SUITE_TIMEOUT s): tests after the last result did not run"
fi
log "total $((SECONDS - T0)) s"
((prc == 0 && rc == 0))
