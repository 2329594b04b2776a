#!/usr/bin/env bash
# The cluster suite's tests, against a node started by node.sh (run.sh does both). Every request
# goes client -> Service (kube-proxy) -> wsgate pod -> app pods, inside the node's namespace.
# Prints one "ok"/"FAIL" line per check, the figures, and ends with "N passed, N failed".
#
# Environment: E2E_CLUSTER_FIGURES (file the figures are also written to, default
# $E2E_CLUSTER_DIR/figures.txt).
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBE=$STATE/kube
WORK=$STATE/tests
FIGURES=${E2E_CLUSTER_FIGURES:-$STATE/figures.txt}
PROBE=$REPO/e2e/.bin/wsprobe
KUBECTL=$REPO/e2e/.bin/kubectl
HELM=$(bash "$REPO/scripts/helm.sh" install)
NS=wsgate-system
PROM=http://127.0.0.1:9099
mkdir -p "$WORK"
: >"$FIGURES"

passed=0
failed=0
ok() { echo "ok   - $1"; passed=$((passed + 1)); }
fail() {
  echo "FAIL - $1${2:+: $2}"
  failed=$((failed + 1))
}
# check NAME CMD...: ok when CMD succeeds; its output is shown on failure.
check() {
  local name=$1
  shift
  if "$@" >"$WORK/check.log" 2>&1; then
    ok "$name"
  else
    fail "$name"
    sed 's/^/       /' "$WORK/check.log" | tail -20
  fi
}
figure() {
  echo "figure: $*"
  echo "$*" >>"$FIGURES"
}

kc() { in_ns "$KUBECTL" --kubeconfig "$KUBE/kubeconfig" "$@"; }
helm_() { in_ns env KUBECONFIG="$KUBE/kubeconfig" HELM_CACHE_HOME="$STATE/helm/cache" \
  HELM_CONFIG_HOME="$STATE/helm/config" HELM_DATA_HOME="$STATE/helm/data" "$HELM" "$@"; }
probe() { in_ns "$PROBE" "$@"; }
promq() { # PromQL -> JSON result array
  local body
  body=$(in_ns curl -sf --max-time 10 -G "$PROM/api/v1/query" --data-urlencode "query=$1") || body=
  python3 -c 'import json,sys
try: print(json.dumps(json.loads(sys.argv[1])["data"]["result"]))
except ValueError: print("[]")' "$body"
}
prom_value() { # PromQL -> the first sample's value, or 0
  promq "$1" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r[0]["value"][1] if r else 0)'
}

wait_until() { # SECONDS CMD...
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# ------------------------------------------------------------------ install
helm_release_ready() {
  kc -n "$NS" rollout status deployment/wsgate --timeout=5s
}
t0=$SECONDS
check "helm install charts/wsgate (defaults, image.pullPolicy=Never)" \
  helm_ install wsgate "$REPO/charts/wsgate" --namespace "$NS" --create-namespace \
  --set image.pullPolicy=Never --wait=false
if wait_until 180 helm_release_ready; then
  figure "wsgate pods Ready after helm install: $((SECONDS - t0)) s"
  ok "wsgate Deployment: 2 pods Ready"
else
  fail "wsgate Deployment: 2 pods Ready" "$(kc -n "$NS" get pods -o wide 2>&1; kc -n "$NS" describe pods 2>&1 | tail -30)"
fi
SVC_IP=$(kc -n "$NS" get service wsgate -o 'jsonpath={.spec.clusterIP}')
log "wsgate Service ClusterIP: $SVC_IP"

sed "s|@ECHO_IMAGE@|$ECHO_IMAGE|" "$CLUSTER_HERE/manifests/echo-app.yaml" >"$WORK/echo-app.yaml"
check "echo app applied (Deployment, 2 replicas, Service)" kc apply -f "$WORK/echo-app.yaml"
check "echo app: 2 pods Ready" kc -n e2e-apps rollout status deployment/echo --timeout=120s

# TLS Secret as cert-manager writes it: tls.crt, tls.key and ca.crt.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=wsgate-e2e-ca -keyout "$WORK/ca.key" \
  -out "$WORK/ca.crt" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj /CN=secure.e2e.test -keyout "$WORK/tls.key" -out "$WORK/tls.csr" >/dev/null 2>&1
printf 'subjectAltName=DNS:secure.e2e.test\nextendedKeyUsage=serverAuth\n' >"$WORK/ext.cnf"
openssl x509 -req -in "$WORK/tls.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial -days 2 \
  -extfile "$WORK/ext.cnf" -out "$WORK/tls.crt" >/dev/null 2>&1
kc -n e2e-apps create secret generic echo-tls --type=kubernetes.io/tls --from-file=tls.crt="$WORK/tls.crt" \
  --from-file=tls.key="$WORK/tls.key" --from-file=ca.crt="$WORK/ca.crt" --dry-run=client -o yaml >"$WORK/secret.yaml"
check "TLS Secret echo-tls (tls.crt, tls.key, ca.crt)" kc apply -f "$WORK/secret.yaml"
check "Ingress and wsgate Gateway applied with kubectl" kc apply -f "$CLUSTER_HERE/manifests/routes.yaml"

echo_via() { # HOST [scheme] : one echo session through the Service
  local host=$1 scheme=${2:-ws} port=80 extra=()
  [[ $scheme == wss ]] && port=443 && extra=(-ca "$WORK/ca.crt")
  probe echo -url "$scheme://$SVC_IP:$port/" -host "$host" -n 5 "${extra[@]}"
}
check "ws echo through Service -> wsgate -> echo pods (Ingress host)" wait_until 60 echo_via echo.e2e.test
check "ws echo through the wsgate Gateway (gw.e2e.test)" wait_until 60 echo_via gw.e2e.test
check "wss echo with the cert-manager-style Secret (SNI secure.e2e.test, verified against its CA)" \
  wait_until 60 echo_via secure.e2e.test wss
ingress_status() {
  [[ $(kc -n e2e-apps get ingress echo -o 'jsonpath={.status.loadBalancer.ingress[0].ip}') == "$SVC_IP" ]]
}
check "Ingress status holds the wsgate Service's address ($SVC_IP)" wait_until 60 ingress_status

# ------------------------------------------------------------------ security context
container_pid() { # NAMESPACE POD -> host PID of its first container
  local id
  id=$(kc -n "$1" get pod "$2" -o 'jsonpath={.status.containerStatuses[0].containerID}')
  id=${id#containerd://}
  ctr --address "$STATE/containerd/containerd.sock" -n k8s.io task ls | awk -v id="$id" '$1 == id {print $2}'
}
wsgate_pods() { kc -n "$NS" get pods -l app.kubernetes.io/name=wsgate --field-selector=status.phase=Running -o 'jsonpath={.items[*].metadata.name}'; }
security_context() {
  local pod pid status root
  pod=$(wsgate_pods | awk '{print $1}')
  pid=$(container_pid "$NS" "$pod")
  [[ -n $pid ]] || { echo "no PID for $pod"; return 1; }
  status=$(cat "/proc/$pid/status")
  echo "$status" | grep -E '^(Uid|Gid|CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):'
  echo "$status" | grep -qP '^Uid:\t65532\t65532\t65532\t65532' || { echo "not uid 65532"; return 1; }
  echo "$status" | grep -qP '^Gid:\t65532\t' || { echo "not gid 65532"; return 1; }
  echo "$status" | grep -qP '^CapEff:\t0000000000000000' || { echo "effective capabilities"; return 1; }
  echo "$status" | grep -qP '^CapBnd:\t0000000000000000' || { echo "bounding capabilities not dropped"; return 1; }
  echo "$status" | grep -qP '^NoNewPrivs:\t1' || { echo "no_new_privs not set"; return 1; }
  echo "$status" | grep -qP '^Seccomp:\t2' || { echo "no seccomp filter"; return 1; }
  root=$(awk '$5 == "/" {print $6}' "/proc/$pid/mountinfo")
  echo "root mount options: $root"
  [[ $root == ro,* || $root == ro ]] || { echo "root filesystem is writable"; return 1; }
}
check "wsgate container: uid/gid 65532, no capabilities, no_new_privs, seccomp, read-only root" security_context

# ------------------------------------------------------------------ Prometheus
bash "$CLUSTER_HERE/prometheus.sh" start
targets_up() {
  [[ $(prom_value 'count(up{job="wsgate"} == 1)') == "$1" ]]
}
check "Prometheus (Kubernetes SD, role endpoints) scrapes both wsgate pods" wait_until 60 targets_up 2
before_sessions=$(prom_value 'sum(wsgate_websocket_sessions_total)')
before_bytes=$(prom_value 'sum(wsgate_websocket_bytes_total)')
before_msgs=$(prom_value 'sum(wsgate_websocket_messages_total)')

# ------------------------------------------------------------------ rolling updates
# hold_start NAME SESSIONS: background client, stops when WORK/NAME.stop exists.
hold_start() {
  rm -f "$WORK/$1".{stop,ready,json}
  probe hold -url "ws://$SVC_IP:80/" -host echo.e2e.test -sessions "$2" -interval 500ms \
    -stop-file "$WORK/$1.stop" -ready-file "$WORK/$1.ready" -max-duration 10m -out "$WORK/$1.json" \
    >"$WORK/$1.log" 2>&1 &
  echo $! >"$WORK/$1.pid"
  wait_until 120 test -f "$WORK/$1.ready"
}
hold_stop() {
  touch "$WORK/$1.stop"
  local pid
  pid=$(cat "$WORK/$1.pid")
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
jq_() { python3 -c "import json,sys; d=json.load(open('$1')); print($2)" 2>/dev/null || echo "?"; }

# PDB sampler: every 0.5 s, ready wsgate pods that are not terminating vs the PDB's desiredHealthy.
pdb_sample_start() {
  (
    while [[ ! -f $WORK/pdb.stop ]]; do
      kc -n "$NS" get pdb wsgate -o 'jsonpath={.status.currentHealthy} {.status.desiredHealthy}{"\n"}' 2>/dev/null
      sleep 0.5
    done
  ) >"$WORK/pdb.samples" &
  echo $! >"$WORK/pdb.pid"
}
pdb_sample_stop() {
  touch "$WORK/pdb.stop"
  wait "$(cat "$WORK/pdb.pid")" 2>/dev/null || true
  rm -f "$WORK/pdb.stop"
}

two_wsgate_pods() {
  local pods
  pods=$(kc -n "$NS" get pods -l app.kubernetes.io/name=wsgate -o name)
  [[ $(wc -l <<<"$pods") == 2 ]]
}

# rollout NAME HELM-ARGS...: 200 sessions held through `helm upgrade` + rollout, then checked.
rollout() {
  local name=$1
  shift
  if ! hold_start "$name" 200; then
    fail "$name: 200 sessions open before the rollout" "$(tail -5 "$WORK/$name.log")"
    hold_stop "$name"
    return
  fi
  ok "$name: 200 sessions open through the Service before the rollout"
  pdb_sample_start
  local t=$SECONDS
  if ! helm_ upgrade wsgate "$REPO/charts/wsgate" --namespace "$NS" --reuse-values "$@" >"$WORK/$name.helm" 2>&1; then
    fail "$name: helm upgrade $*" "$(tail -c 600 "$WORK/$name.helm")"
    pdb_sample_stop
    hold_stop "$name"
    return
  fi
  if kc -n "$NS" rollout status deployment/wsgate --timeout=300s >/dev/null 2>&1; then
    ok "$name: rollout complete"
  else
    fail "$name: rollout complete"
  fi
  # Old pods drain after the rollout reports complete: wait until only 2 wsgate pods are left.
  wait_until 120 two_wsgate_pods
  figure "$name: rollout incl. drain of the old pods: $((SECONDS - t)) s"
  sleep 3 # reconnects of the last closed sessions
  pdb_sample_stop
  hold_stop "$name"
  local f=$WORK/$name.json
  [[ -f $f ]] || { fail "$name: client results" "$(tail -5 "$WORK/$name.log")"; return; }
  local closes c1001 c1006 other fivexx unrec openend mism recon peak window
  closes=$(jq_ "$f" 'json.dumps(d["closes"], sort_keys=True)')
  c1001=$(jq_ "$f" 'd["closes"].get("1001", 0)')
  c1006=$(jq_ "$f" 'd["closes"].get("1006", 0)')
  other=$(jq_ "$f" 'sum(v for k, v in d["closes"].items() if k != "1001")')
  fivexx=$(jq_ "$f" 'sum(v for k, v in d["handshake_status"].items() if k.startswith("5"))')
  unrec=$(jq_ "$f" 'd["unrecovered"]')
  openend=$(jq_ "$f" 'd["open_at_end"]')
  mism=$(jq_ "$f" 'd["echo_mismatch"]')
  recon=$(jq_ "$f" 'd["reconnects"]')
  peak=$(jq_ "$f" 'd["reconnect_peak_per_second"]')
  window=$(jq_ "$f" 'round(d["close_window_seconds"], 1)')
  figure "$name: closes by code $closes; reconnects $recon (peak $peak/s, closes spread over ${window} s); handshake statuses $(jq_ "$f" 'json.dumps(d["handshake_status"])'); connect errors $(jq_ "$f" 'd["connect_errors"]')"
  [[ $c1001 -ge 200 ]] && ok "$name: every session on an old pod ended with 1001 ($c1001 closes)" ||
    fail "$name: every session on an old pod ended with 1001" "closes $closes"
  [[ $c1006 -eq 0 && $other -eq 0 ]] && ok "$name: zero 1006 (no close frame / cut inside a frame), no other close code" ||
    fail "$name: zero 1006 and no other close code" "closes $closes"
  [[ $fivexx -eq 0 ]] && ok "$name: zero 5xx handshake answers" || fail "$name: zero 5xx" "$(jq_ "$f" 'd["handshake_status"]')"
  [[ $unrec -eq 0 && $openend -eq 200 && $recon -ge $c1001 ]] && ok "$name: every closed session reconnected (200 open at the end)" ||
    fail "$name: reconnects succeed" "unrecovered $unrec, open at end $openend, reconnects $recon"
  [[ $mism -eq 0 ]] && ok "$name: every echo matched" || fail "$name: echo mismatches" "$mism"
  if [[ -s $WORK/pdb.samples ]] && awk 'NF == 2 && $1 < $2 {bad=1} END {exit bad}' "$WORK/pdb.samples"; then
    ok "$name: PDB held (currentHealthy >= desiredHealthy in all $(wc -l <"$WORK/pdb.samples") samples)"
  else
    fail "$name: PDB held" "$(sort "$WORK/pdb.samples" | uniq -c | tr '\n' ';')"
  fi
  eval "PEAK_$name=$peak"
}

if grep -rqE 'shutdown[-_]close[-_]spread' "$REPO/src" 2>/dev/null; then
  # The first upgrade turns the spread on for the NEW pods; the old pods drain without it.
  rollout rollout_nospread --set controller.shutdownCloseSpreadSeconds=10
  rollout rollout_spread --set-string podAnnotations.e2e-rollout=2
  figure "reconnect peak per second: without spread ${PEAK_rollout_nospread:-?}, with a 10 s spread ${PEAK_rollout_spread:-?}"
  [[ ${PEAK_rollout_spread:-999} -lt ${PEAK_rollout_nospread:-0} ]] &&
    ok "the close spread lowers the reconnect peak" || fail "the close spread lowers the reconnect peak"
else
  rollout rollout_nospread --set-string podAnnotations.e2e-rollout=1
  echo "skip - rollout with --shutdown-close-spread: the flag is not in this wsgate yet"
fi

# ------------------------------------------------------------------ hard kill of a wsgate pod
if hold_start kill 60; then
  victim=$(wsgate_pods | awk '{print $1}')
  vpid=$(container_pid "$NS" "$victim")
  if [[ -n $vpid ]]; then
    kill -KILL "$vpid"
    # The kubelet sees the dead container within ~1 s (PLEG), the endpoint goes, and the
    # container is restarted; cut clients retry every 100 ms meanwhile.
    sleep 15
    hold_stop kill
    f=$WORK/kill.json
    figure "wsgate pod SIGKILLed: closes $(jq_ "$f" 'json.dumps(d["closes"])'), reconnects $(jq_ "$f" 'd["reconnects"]'), handshake statuses $(jq_ "$f" 'json.dumps(d["handshake_status"])'), connect errors $(jq_ "$f" 'd["connect_errors"]')"
    [[ $(jq_ "$f" 'd["closes"].get("1006", 0)') -gt 0 ]] && ok "kill -9 of a wsgate pod: its sessions were cut (1006)" ||
      fail "kill -9: sessions cut" "$(jq_ "$f" 'd["closes"]')"
    [[ $(jq_ "$f" 'd["unrecovered"]') -eq 0 && $(jq_ "$f" 'd["open_at_end"]') -eq 60 ]] &&
      ok "kill -9: every cut session reconnected through the other replica" ||
      fail "kill -9: reconnects" "$(cat "$f")"
    [[ $(jq_ "$f" 'sum(v for k, v in d["handshake_status"].items() if k.startswith("5"))') -eq 0 ]] &&
      ok "kill -9: zero 5xx" || fail "kill -9: zero 5xx" "$(jq_ "$f" 'd["handshake_status"]')"
  else
    hold_stop kill
    fail "kill -9 of a wsgate pod" "no PID for $victim"
  fi
else
  hold_stop kill
  fail "kill -9: 60 sessions open"
fi
kc -n "$NS" rollout status deployment/wsgate --timeout=120s >/dev/null 2>&1

# ------------------------------------------------------------------ app pod deleted
pod_upgrades() { # POD-IP -> upgrades the echo backend has accepted
  in_ns curl -sf --max-time 3 "http://$1:8080/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["upgrades"])'
}
endpoint_not_ready() { # IP
  grep -qx "$1 false" <<<"$(kc -n e2e-apps get endpointslices -l kubernetes.io/service-name=echo \
    -o 'jsonpath={range .items[*].endpoints[*]}{.addresses[0]} {.conditions.ready}{"\n"}{end}')"
}
app_pod_deleted() {
  local a aip others before_a sum_before sum_after ip
  read -r a aip < <(kc -n e2e-apps get pods -l app=echo -o 'jsonpath={range .items[*]}{.metadata.name} {.status.podIP}{"\n"}{end}' | head -1)
  before_a=$(pod_upgrades "$aip")
  kc -n e2e-apps delete pod "$a" --wait=false
  local t=$SECONDS
  # The endpoint turns not-ready at once (the pod is terminating); the process lives on (PID 1
  # without a SIGTERM handler) until the grace period ends.
  wait_until 30 endpoint_not_ready "$aip" ||
    { echo "endpoint $aip did not turn not-ready"; return 1; }
  sleep 1
  echo "endpoint of $a ($aip) not ready after $((SECONDS - t)) s"
  for i in $(seq 20); do
    probe echo -url "ws://$SVC_IP:80/" -host echo.e2e.test -n 1 >/dev/null || { echo "session $i failed"; return 1; }
  done
  local after_a
  after_a=$(pod_upgrades "$aip") || { echo "deleted pod no longer answers /stats (it should live until SIGKILL)"; return 1; }
  echo "deleted pod $a: upgrades $before_a -> $after_a"
  [[ $after_a -eq $before_a ]]
}
check "app pod deleted: wsgate sends it no new session once its endpoint is not ready (20 new sessions elsewhere)" app_pod_deleted
kc -n e2e-apps rollout status deployment/echo --timeout=120s >/dev/null 2>&1

# ------------------------------------------------------------------ Prometheus sees counters move
sleep 5
moved() { # METRIC-SUM BEFORE
  local now
  now=$(prom_value "$1")
  echo "$1: $2 -> $now"
  python3 -c "import sys; sys.exit(0 if float('$now') > float('$2') else 1)"
}
check "Prometheus: session counter moved" moved 'sum(wsgate_websocket_sessions_total)' "$before_sessions"
check "Prometheus: byte counter moved" moved 'sum(wsgate_websocket_bytes_total)' "$before_bytes"
check "Prometheus: message counter moved" moved 'sum(wsgate_websocket_messages_total)' "$before_msgs"

# ------------------------------------------------------------------ Grafana dashboard
check "helm upgrade --set grafanaDashboard.enabled=true" \
  helm_ upgrade wsgate "$REPO/charts/wsgate" --namespace "$NS" --reuse-values --set grafanaDashboard.enabled=true
kc -n "$NS" get configmap -l grafana_dashboard=1 -o 'jsonpath={.items[0].data.wsgate\.json}' >"$WORK/dashboard.json" 2>/dev/null
check "dashboard ConfigMap labelled grafana_dashboard=1 holds the dashboard JSON" python3 -c "import json; json.load(open('$WORK/dashboard.json'))"
# Fresh traffic for every panel: sessions that open, echo and close, a plain request, a refused handshake.
hold_start dash 20 && sleep 6
hold_stop dash
in_ns curl -s -o /dev/null -H 'Host: echo.e2e.test' "http://$SVC_IP/plain"
in_ns curl -s -o /dev/null -H 'Host: echo.e2e.test' -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
  -H 'Sec-WebSocket-Version: 99' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "http://$SVC_IP/bad"
sleep 6
python3 - "$WORK/dashboard.json" >"$WORK/dashboard.exprs" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for p in d["panels"]:
    for t in p["targets"]:
        print(p["title"] + "\t" + t["expr"].replace("$__rate_interval", "1m"))
PY
while IFS=$'\t' read -r title expr; do
  res=$(promq "$expr" 2>/dev/null || echo '[]')
  n=$(python3 -c "import json,math,sys; r=json.loads(sys.argv[1]); print(sum(1 for s in r if not math.isnan(float(s['value'][1]))))" "$res")
  if [[ $n -gt 0 ]]; then
    ok "dashboard panel \"$title\": data ($n series) for $expr"
  else
    fail "dashboard panel \"$title\": no data" "$expr"
  fi
done <"$WORK/dashboard.exprs"

bash "$CLUSTER_HERE/prometheus.sh" stop
IMG_BYTES=$(ctr --address "$STATE/containerd/containerd.sock" -n k8s.io images ls | awk -v r="${WSGATE_IMAGE%:*}" 'index($1, r) == 1 {print $4, $5}' | head -1)
figure "wsgate image size (containerd, compressed layers): $IMG_BYTES"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
