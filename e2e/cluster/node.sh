#!/usr/bin/env bash
# The single-node cluster: containerd, kube-apiserver (+etcd), controller-manager,
# scheduler, kubelet and kube-proxy, all inside one private network namespace.
#
#   e2e/cluster/node.sh up       start the node (deps, binaries and images must exist:
#                                run.sh / up.sh do that), wait until it is Ready, import images
#   e2e/cluster/node.sh runtime  only the namespace, containerd and the images (debugging)
#   e2e/cluster/node.sh down     stop everything by PID: pods' processes, shims, components,
#                                then mounts, cgroups, the namespace, and restore kernel tunables
#   e2e/cluster/node.sh status   exit 0 when the apiserver answers and the node is Ready
#
# State in $E2E_CLUSTER_DIR (default /tmp/wsgate-cluster): kube/kubeconfig is the admin
# kubeconfig; logs/*.log the component logs; pids/*.pid their PIDs.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBE=$STATE/kube
CTRD=$STATE/containerd
SOCK=$CTRD/containerd.sock
# The kubelet sets these sysctls (global, not per namespace) and has no option to
# leave them alone; `up` saves the previous values and `down` restores them.
TUNABLES=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
CGROUP_CONTROLLERS=(cpu cpuacct cpuset memory pids blkio devices freezer hugetlb net_cls net_prio perf_event systemd)

ctr_() { ctr --address "$SOCK" --namespace k8s.io "$@"; }
# The apiserver listens inside the namespace only.
kc() { in_ns "$REPO/e2e/.bin/kubectl" --kubeconfig "$KUBE/kubeconfig" "$@"; }

# start NAME CMD...: start CMD in the namespace, detached, logging to logs/NAME.log.
start() {
  local name=$1
  shift
  nohup setsid nsenter --net="/var/run/netns/$NETNS" "$@" </dev/null >"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$STATE/pids/$name.pid"
}

# alive NAME: the process of pids/NAME.pid runs (and is still ours: same state dir in its args).
alive() {
  local f=$STATE/pids/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(cat "$f")
  [[ $pid =~ ^[0-9]+$ && $(pid_cmdline "$pid") == *"$STATE"* ]]
}

# wait_for WHAT SECONDS CMD...: retry CMD every 0.5 s until it succeeds.
wait_for() {
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${secs}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

write_configs() {
  mkdir -p "$CTRD" "$STATE/cni/net.d" "$STATE/cni/ipam" "$STATE/kubelet/root" "$STATE/kubelet/pki" \
    "$STATE/pod-logs" "$STATE/logs" "$STATE/pids"
  cat >"$CTRD/config.toml" <<TOML
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Without it runc fails writing oom_score_adj (no CAP_SYS_RESOURCE here).
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
TOML
  cat >"$STATE/cni/net.d/10-wsgate-e2e.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "wsgate-e2e",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$STATE/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  cat >"$STATE/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
containerRuntimeEndpoint: unix://$SOCK
podLogsDir: $STATE/pod-logs
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
failSwapOn: false
# Images are imported locally and can never be pulled again: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
clusterDomain: cluster.local
resolvConf: ""
syncFrequency: 10s
fileCheckFrequency: 10s
YAML
  cat >"$STATE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KUBE/kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
# conntrack sysctls are global: leave them alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
# Pod -> Service -> pod on the same bridge: SNAT so replies come back through the node.
iptables: {masqueradeAll: true, syncPeriod: 10s, minSyncPeriod: 0s}
YAML
}

setup_netns() {
  if [[ ! -e /var/run/netns/$NETNS ]]; then
    ip netns add "$NETNS"
  fi
  in_ns ip link set lo up
  # The node's own device: a bridge without ports (this kernel has no dummy driver; the CNI
  # bridge plugin needs the bridge driver anyway).
  if ! in_ns ip link show node0 >/dev/null 2>&1; then
    in_ns ip link add node0 type bridge
  fi
  in_ns ip addr replace "$NODE_IP/16" dev node0
  in_ns ip link set node0 up
  # A default route inside the namespace, to that portless bridge: nothing can leave it.
  in_ns ip route replace default dev node0
  in_ns sysctl -qw net.ipv4.ip_forward=1
}

setup_cgroups() {
  local c
  for c in "${CGROUP_CONTROLLERS[@]}"; do
    [[ -d /sys/fs/cgroup/$c ]] && mkdir -p "/sys/fs/cgroup/$c$CGROUP_ROOT"
  done
  # cpuset children start empty: inherit the parent's CPUs and memory nodes.
  if [[ -d /sys/fs/cgroup/cpuset$CGROUP_ROOT ]]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset$CGROUP_ROOT/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset$CGROUP_ROOT/cpuset.mems"
  fi
}

save_tunables() {
  [[ -f $STATE/tunables.saved ]] && return 0
  local t
  for t in "${TUNABLES[@]}"; do
    echo "$t $(cat "/proc/sys/$t")"
  done >"$STATE/tunables.saved"
}

import_images() {
  local name file
  while read -r name file; do
    if [[ ! -f $file ]]; then
      # up.sh for a look at the node while an image is still building.
      [[ ${E2E_IMAGES_OPTIONAL:-0} == 1 ]] && { log "warning: $file missing, $name not imported"; continue; }
      die "image archive $file is missing (run e2e/cluster/images.sh)"
    fi
    # (grep -q on a pipe would make ctr die of SIGPIPE under pipefail: list first.)
    if ! grep -qxF "$name" <<<"$(ctr_ images ls -q)"; then
      ctr_ images import "$file" >/dev/null
    fi
    grep -qxF "$name" <<<"$(ctr_ images ls -q)" || die "importing $file did not produce image $name"
  done < <("$CLUSTER_HERE/images.sh" --list)
}

# The namespace, containerd and the images: the part of `up` below Kubernetes.
cmd_runtime() {
  mkdir -p "$STATE"
  write_configs
  setup_netns
  setup_cgroups
  save_tunables
  if ! alive containerd; then
    start containerd containerd --config "$CTRD/config.toml"
  fi
  wait_for "containerd" 60 ctr_ version || { tail -20 "$STATE/logs/containerd.log" >&2; die "containerd did not start"; }
  import_images
}

cmd_up() {
  [[ -x $KUBEBIN ]] || die "$KUBEBIN is missing (run e2e/apiserver.sh build)"
  if cmd_status >/dev/null 2>&1; then
    log "already up; kubeconfig: $KUBE/kubeconfig"
    return 0
  fi
  local t0=$SECONDS
  cmd_runtime

  start apiserver "$KUBEBIN" --dir "$KUBE" --node-ip "$NODE_IP" --service-cidr "$SERVICE_CIDR" --port 6443
  wait_for "kube-apiserver" 180 test -f "$KUBE/ready" || { tail -20 "$STATE/logs/apiserver.log" >&2; die "kube-apiserver did not start"; }

  start controller-manager "$KUBEBIN" kube-controller-manager --kubeconfig="$KUBE/kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=false \
    --service-account-private-key-file="$KUBE/pki/sa.key" --root-ca-file="$KUBE/ca.crt" \
    --service-cluster-ip-range="$SERVICE_CIDR" --cluster-name=wsgate-e2e --v=1
  start scheduler "$KUBEBIN" kube-scheduler --kubeconfig="$KUBE/kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --v=1
  start kubelet "$KUBEBIN" kubelet --config="$STATE/kubelet/config.yaml" --kubeconfig="$KUBE/kubeconfig" \
    --root-dir="$STATE/kubelet/root" --cert-dir="$STATE/kubelet/pki" --node-ip="$NODE_IP" \
    --hostname-override="$NODE_NAME" --v=1
  start kube-proxy "$KUBEBIN" kube-proxy --config="$STATE/kube-proxy.yaml" --v=1

  wait_for "node $NODE_NAME Ready" 180 node_ready ||
    { tail -30 "$STATE/logs/kubelet.log" >&2; die "the node did not become Ready"; }
  wait_for "ServiceAccount default/default" 60 kc get serviceaccount default ||
    die "the controller-manager did not create ServiceAccounts"
  log "node Ready in $((SECONDS - t0))s; kubeconfig: $KUBE/kubeconfig"
}

node_ready() {
  [[ $(kc get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

cmd_status() {
  [[ -f $KUBE/ready ]] || return 1
  node_ready
}

# kill_pidfile NAME: SIGTERM, then SIGKILL after a few seconds, the process in pids/NAME.pid.
kill_pidfile() {
  local f=$STATE/pids/$1.pid pid i
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# Processes of every pod: the tasks of the cgroups under CGROUP_ROOT.
kill_pod_processes() {
  local pass pid
  for pass in 1 2 3; do
    local found=0
    while read -r pid; do
      [[ $pid =~ ^[0-9]+$ ]] || continue
      kill -KILL "$pid" 2>/dev/null && found=1
    done < <(cat /sys/fs/cgroup/pids"$CGROUP_ROOT"/kubepods/cgroup.procs \
      $(find /sys/fs/cgroup/pids"$CGROUP_ROOT" -mindepth 2 -name cgroup.procs 2>/dev/null) 2>/dev/null)
    ((found)) || break
    sleep 0.5
  done
}

# containerd-shim processes of this containerd (their command line names its socket).
kill_shims() {
  local p
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    if [[ $(pid_cmdline "$p") == *containerd-shim*"-address $SOCK "* ]]; then
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
}

unmount_state() {
  local m
  # Deepest first.
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v s="$STATE/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
}

remove_cgroups() {
  local c d
  for c in "${CGROUP_CONTROLLERS[@]}"; do
    d=/sys/fs/cgroup/$c$CGROUP_ROOT
    [[ -d $d ]] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

restore_tunables() {
  [[ -f $STATE/tunables.saved ]] || return 0
  local t v
  while read -r t v; do
    echo "$v" >"/proc/sys/$t" 2>/dev/null || log "could not restore $t=$v"
  done <"$STATE/tunables.saved"
  rm -f "$STATE/tunables.saved"
}

# Pod network namespaces (/var/run/netns/cni-*) of this containerd's sandboxes, from their specs.
pod_netns() {
  local id
  for id in $(ctr_ containers ls -q 2>/dev/null); do
    ctr_ containers info "$id" 2>/dev/null | python3 -c '
import json, sys
try:
    spec = json.load(sys.stdin).get("Spec") or {}
except ValueError:
    sys.exit(0)
for ns in (spec.get("linux") or {}).get("namespaces") or []:
    if ns.get("type") == "network" and (ns.get("path") or "").startswith("/var/run/netns/cni-"):
        print(ns["path"])'
  done | sort -u
}

cmd_down() {
  [[ -d $STATE ]] || { [[ -e /var/run/netns/$NETNS ]] && ip netns del "$NETNS"; return 0; }
  # Remember the pods' namespaces while containerd can still say which are ours.
  local netns_list=()
  if alive containerd; then
    mapfile -t netns_list < <(pod_netns)
  fi
  # The kubelet first, so it does not restart what is being killed.
  kill_pidfile kubelet
  kill_pod_processes
  kill_shims
  local n
  for n in kube-proxy scheduler controller-manager apiserver containerd; do
    kill_pidfile "$n"
  done
  for n in "$STATE"/pids/*.pid; do
    [[ -f $n ]] && kill_pidfile "$(basename "$n" .pid)"
  done
  unmount_state
  remove_cgroups
  local ns
  for ns in "${netns_list[@]}"; do
    [[ -e $ns ]] && ip netns del "$(basename "$ns")" 2>/dev/null
  done
  [[ -e /var/run/netns/$NETNS ]] && ip netns del "$NETNS"
  restore_tunables
  log "node down"
}

case ${1:-} in
up) cmd_up ;;
runtime) cmd_runtime ;;
down) cmd_down ;;
status) cmd_status ;;
*)
  sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
  ;;
esac
