#!/usr/bin/env bash
# Smoke test for e2e/apiserver.sh: build, start, create a Namespace, a Service
# and a discovery.k8s.io/v1 EndpointSlice with the admin kubeconfig's token and
# read them back, check that a second static-token user is limited to what a
# ClusterRole grants it, then stop. Needs bash, curl, grep, and python3 for a
# backend on the EndpointSlice's address. Runs itself inside e2e/netns.sh (the
# apiserver refuses loopback endpoint addresses; 198.18.0.0/15 is local there).
#
#   e2e/smoke.sh            (KEEP=1 keeps the state directory for inspection)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
APISERVER=$HERE/apiserver.sh

if [[ -z ${WSGATE_E2E_NETNS:-} ]]; then
  "$APISERVER" build # outside: a cold build may need the module proxy
  exec "$HERE/netns.sh" "$0" "$@"
fi
DIR=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-e2e-smoke.XXXXXX")
CTRL_TOKEN=smoke-controller-$RANDOM$RANDOM
passed=0
failed=0

cleanup() {
  "$APISERVER" stop "$DIR" >/dev/null 2>&1 || true
  if [[ -z ${KEEP:-} ]]; then rm -rf "$DIR"; else echo "state kept in $DIR"; fi
}
trap cleanup EXIT

ok() {
  echo "ok   - $*"
  passed=$((passed + 1))
}
fail() {
  echo "FAIL - $*"
  failed=$((failed + 1))
}

"$APISERVER" build
"$APISERVER" start "$DIR" --token "user=wsgate-controller,token=$CTRL_TOKEN"

URL=$(cat "$DIR/ready")
ADMIN_TOKEN=$(cat "$DIR/users/admin.token")
# The kubeconfig carries the same server and token.
grep -q "server: $URL\$" "$DIR/kubeconfig" && grep -q "token: $ADMIN_TOKEN\$" "$DIR/kubeconfig" &&
  ok "kubeconfig names $URL and the admin token" || fail "kubeconfig does not match $URL / admin token"

# req TOKEN METHOD PATH [BODY] -> prints "STATUS BODY"
req() {
  local token=$1 method=$2 path=$3 body=${4:-}
  # Not curl's User-Agent: kube-apiserver pretty-prints JSON for curl.
  local args=(-sS -A wsgate-e2e-smoke --cacert "$DIR/ca.crt" -H "Authorization: Bearer $token" -X "$method"
    -o "$DIR/resp" -w '%{http_code}' --max-time 20)
  [[ -z $body ]] || args+=(-H 'Content-Type: application/json' --data-binary "$body")
  local code
  code=$(curl "${args[@]}" "$URL$path")
  echo "$code $(tr -d '\n' <"$DIR/resp")"
}

# expect DESCRIPTION STATUS PATTERN TOKEN METHOD PATH [BODY]
expect() {
  local what=$1 want=$2 pattern=$3
  shift 3
  local out
  out=$(req "$@")
  if [[ ${out%% *} == "$want" ]] && grep -q -- "$pattern" <<<"$out"; then
    ok "$what"
  else
    fail "$what: want HTTP $want matching '$pattern', got: ${out:0:400}"
  fi
}

A=$ADMIN_TOKEN
NS=wsgate-smoke

expect "readyz" 200 "ok" "$A" GET /readyz
expect "create Namespace" 201 "\"name\":\"$NS\"" "$A" POST /api/v1/namespaces \
  "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$NS\"}}"
expect "create Service" 201 '"clusterIP":"10\.96\.' "$A" POST /api/v1/namespaces/$NS/services \
  '{"apiVersion":"v1","kind":"Service","metadata":{"name":"echo"},"spec":{"ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}}'
expect "create EndpointSlice" 201 '"addressType":"IPv4"' "$A" POST /apis/discovery.k8s.io/v1/namespaces/$NS/endpointslices \
  '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"echo-1","labels":{"kubernetes.io/service-name":"echo"}},"addressType":"IPv4","endpoints":[{"addresses":["198.18.0.2"],"conditions":{"ready":true}}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}'

expect "read Namespace" 200 '"phase":"Active"' "$A" GET /api/v1/namespaces/$NS
expect "read Service" 200 '"targetPort":8080' "$A" GET /api/v1/namespaces/$NS/services/echo
expect "read EndpointSlice" 200 '"addresses":\["198.18.0.2"\]' "$A" GET /apis/discovery.k8s.io/v1/namespaces/$NS/endpointslices/echo-1
expect "list EndpointSlices by service label" 200 '"name":"echo-1"' "$A" GET \
  "/apis/discovery.k8s.io/v1/namespaces/$NS/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Decho"
expect "watch EndpointSlices" 200 '"type":"ADDED"' "$A" GET \
  "/apis/discovery.k8s.io/v1/namespaces/$NS/endpointslices?watch=1&timeoutSeconds=1"

[[ -s $DIR/users/wsgate.token && -s $DIR/users/wsgate.kubeconfig ]] &&
  ok "default user wsgate has a token and kubeconfig" || fail "no default wsgate user files"
expect "default user wsgate has no rights" 403 '"reason":"Forbidden"' "$(cat "$DIR/users/wsgate.token")" GET /api/v1/services

# The EndpointSlice's address is usable as a backend address in this namespace.
if command -v python3 >/dev/null; then
  mkdir -p "$DIR/www" && echo hello-from-backend >"$DIR/www/index.html"
  python3 -m http.server --bind 198.18.0.2 --directory "$DIR/www" 8080 >"$DIR/backend.log" 2>&1 &
  backend=$!
  got=
  for _ in $(seq 50); do
    got=$(curl -s --max-time 2 http://198.18.0.2:8080/index.html || true)
    [[ -z $got ]] || break
    sleep 0.1
  done
  kill "$backend" 2>/dev/null || true
  wait "$backend" 2>/dev/null || true
  [[ $got == hello-from-backend ]] && ok "backend reachable on 198.18.0.2:8080" || fail "backend on 198.18.0.2:8080 not reachable: '$got'"
else
  echo "skip - no python3 for a backend on 198.18.0.2"
fi

# Second user: a static token with no groups, so only RBAC bindings grant it anything.
C=$CTRL_TOKEN
grep -q "^$C,wsgate-controller," "$DIR/tokens.csv" && ok "controller token in tokens.csv" || fail "controller token missing from tokens.csv"
expect "controller identity" 201 '"username":"wsgate-controller"' "$C" POST /apis/authentication.k8s.io/v1/selfsubjectreviews \
  '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}'
expect "controller forbidden before binding" 403 '"reason":"Forbidden"' "$C" GET /apis/discovery.k8s.io/v1/endpointslices
expect "create ClusterRole" 201 '"name":"wsgate-smoke"' "$A" POST /apis/rbac.authorization.k8s.io/v1/clusterroles \
  '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"wsgate-smoke"},"rules":[{"apiGroups":[""],"resources":["services"],"verbs":["get","list","watch"]},{"apiGroups":["discovery.k8s.io"],"resources":["endpointslices"],"verbs":["get","list","watch"]}]}'
expect "create ClusterRoleBinding" 201 '"name":"wsgate-smoke"' "$A" POST /apis/rbac.authorization.k8s.io/v1/clusterrolebindings \
  '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"wsgate-smoke"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"wsgate-smoke"},"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"wsgate-controller"}]}'
expect "controller lists EndpointSlices" 200 '"name":"echo-1"' "$C" GET /apis/discovery.k8s.io/v1/endpointslices
expect "controller reads Service" 200 '"name":"echo"' "$C" GET /api/v1/namespaces/$NS/services/echo
expect "controller cannot list Secrets" 403 '"reason":"Forbidden"' "$C" GET /api/v1/secrets
expect "controller cannot delete Service" 403 '"reason":"Forbidden"' "$C" DELETE /api/v1/namespaces/$NS/services/echo
expect "bad token rejected" 401 '"reason":"Unauthorized"' "not-a-token" GET /api/v1/namespaces

pid=$(cat "$DIR/apiserver.pid")
echo "apiserver pid $pid memory: $(grep -E 'VmRSS|VmHWM' "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' ')"

"$APISERVER" status "$DIR" >/dev/null && ok "status reports running" || fail "status does not report running"
"$APISERVER" stop "$DIR" && ok "stop" || fail "stop"
if "$APISERVER" status "$DIR" >/dev/null; then fail "still running after stop"; else ok "status reports stopped"; fi
kill -0 "$pid" 2>/dev/null && fail "pid $pid still alive after stop" || ok "process gone after stop"

echo "smoke: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
