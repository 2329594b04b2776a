#!/usr/bin/env bash
# A real Prometheus (the Debian package's binary) inside the node's namespace, scraping the
# chart's metrics Service through Kubernetes service discovery (role endpoints) against the
# apiserver.
#
#   e2e/cluster/prometheus.sh start    start it (127.0.0.1:9099 in the namespace), wait until ready
#   e2e/cluster/prometheus.sh stop     stop it by PID
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROM=$STATE/prometheus
KUBE=$STATE/kube
PROM_ADDR=127.0.0.1:9099

cmd_start() {
  mkdir -p "$PROM/data" "$STATE/logs" "$STATE/pids"
  cat >"$PROM/prometheus.yml" <<YAML
global:
  scrape_interval: 2s
  scrape_timeout: 1s
  evaluation_interval: 2s
scrape_configs:
  - job_name: wsgate
    kubernetes_sd_configs:
      - role: endpoints
        api_server: $(cat "$KUBE/ready")
        tls_config: {ca_file: $KUBE/ca.crt}
        authorization: {credentials_file: $KUBE/users/admin.token}
        namespaces: {names: [wsgate-system]}
    relabel_configs:
      # The chart's metrics Service and its port named "metrics" only.
      - {source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_role, __meta_kubernetes_endpoint_port_name], regex: "metrics;metrics", action: keep}
      - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}
      - {source_labels: [__meta_kubernetes_namespace], target_label: namespace}
YAML
  nohup setsid nsenter --net="/var/run/netns/$NETNS" "$REPO/e2e/.bin/prometheus" --config.file="$PROM/prometheus.yml" \
    --storage.tsdb.path="$PROM/data" --web.listen-address="$PROM_ADDR" \
    --storage.tsdb.retention.time=1d </dev/null >"$STATE/logs/prometheus.log" 2>&1 &
  echo $! >"$STATE/pids/prometheus.pid"
  local i
  for ((i = 0; i < 120; i++)); do
    if in_ns curl -sf "http://$PROM_ADDR/-/ready" >/dev/null 2>&1; then
      log "prometheus ready on $PROM_ADDR (in the namespace)"
      return 0
    fi
    sleep 0.5
  done
  tail -20 "$STATE/logs/prometheus.log" >&2
  die "prometheus did not become ready"
}

cmd_stop() {
  local f=$STATE/pids/prometheus.pid pid
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  if [[ $(pid_cmdline "$pid") == *prometheus*"$PROM/prometheus.yml"* ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
*) sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
