#!/usr/bin/env bash
# A real kube-apiserver (with embedded etcd) on 127.0.0.1 for e2e tests.
#
#   e2e/apiserver.sh build                 build e2e/.bin/apiserver (no-op when up to date)
#   e2e/apiserver.sh start DIR [ARGS...]   start in the background with state in DIR, wait for READY
#   e2e/apiserver.sh stop DIR              stop it (SIGTERM, then SIGKILL after 30s)
#   e2e/apiserver.sh status DIR            exit 0 if running and ready, 1 if not running, 2 if not ready
#
# ARGS go to the binary, e.g. --token user=wsgate-controller,token=XYZ (see e2e/README.md).
# Environment:
#   E2E_BUILD_JOBS          parallel Go package builds (default: the number of CPUs; the test
#                           command runs its steps one at a time, so they are free)
#   E2E_APISERVER_TIMEOUT   seconds start waits for READY (default 180)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$HERE/apiserver
BIN=$HERE/.bin/apiserver
STAMP=$BIN.stamp

die() {
  echo "apiserver.sh: error: $*" >&2
  exit 1
}

usage() {
  sed -n '2,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# Hash of everything that goes into the binary, so an up-to-date build costs
# no `go` invocation at all.
source_hash() {
  (
    cd "$SRC"
    go version
    go env GOOS GOARCH
    echo "$(ldflags)"
    find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort | while read -r f; do
      echo "$f"
      cat "$f"
    done
  ) | sha256sum | cut -c1-64
}

# -s -w, and the Kubernetes version the binaries report (/version, kubelet and node status):
# without it they say v0.0.0-master, which Helm's kubeVersion checks refuse.
ldflags() {
  local v
  v=$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes v\([0-9][0-9.]*\)$/\1/p' "$SRC/go.mod" | head -1)
  local x=k8s.io/component-base/version
  echo "-s -w -X $x.gitVersion=v$v -X $x.gitMajor=${v%%.*} -X $x.gitMinor=$(cut -d. -f2 <<<"$v") -X $x.gitTreeState=clean"
}

cmd_build() {
  command -v go >/dev/null || die "go is not installed (need Go >= $(sed -n 's/^go //p' "$SRC/go.mod"))"
  local hash
  hash=$(source_hash)
  if [[ -x $BIN && -f $STAMP && $(cat "$STAMP") == "$hash" ]]; then
    return 0
  fi
  mkdir -p "$(dirname "$BIN")"
  echo "apiserver.sh: building $BIN (a cold build compiles Kubernetes: ~10 min on 2 cores, see e2e/README.md)" >&2
  local start=$SECONDS
  # GOMODCACHE and GOCACHE stay at their defaults under $HOME, so only the
  # first build is slow. nice + -p keep the build from starving other work.
  if ! (
    cd "$SRC"
    CGO_ENABLED=0 GOFLAGS="-p=${E2E_BUILD_JOBS:-$(nproc)} -buildvcs=false -mod=readonly" \
      nice -n 19 go build -trimpath -ldflags="$(ldflags)" -o "$BIN.tmp" .
  ); then
    rm -f "$BIN.tmp"
    die "go build failed (see above)"
  fi
  mv -f "$BIN.tmp" "$BIN"
  echo "$hash" >"$STAMP"
  echo "apiserver.sh: built $BIN in $((SECONDS - start))s" >&2
}

# pid of a running apiserver for DIR, or nothing.
running_pid() {
  local dir=$1 pid
  [[ -f $dir/apiserver.pid ]] || return 0
  pid=$(cat "$dir/apiserver.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  # Make sure the pid was not reused by some other process.
  if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "apiserver --dir"; then
    echo "$pid"
  fi
}

log_tail() {
  echo "---- last 40 lines of $1 ----" >&2
  tail -n 40 "$1" >&2 || true
  echo "----" >&2
}

cmd_start() {
  [[ $# -ge 1 ]] || usage
  local dir=$1
  shift
  cmd_build
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local pid
  pid=$(running_pid "$dir")
  [[ -z $pid ]] || die "already running in $dir (pid $pid); run: $0 stop $dir"
  local log=$dir/apiserver.log
  rm -f "$dir/ready"
  # Empty the log first: a restart on the same DIR must not see the previous run's READY line
  # before the new process has opened (and truncated) the log itself.
  : >"$log"
  nohup "$BIN" --dir "$dir" "$@" </dev/null >"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/apiserver.pid"
  local timeout=${E2E_APISERVER_TIMEOUT:-180}
  local deadline=$((SECONDS + timeout))
  while ! grep -qx READY "$log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      local rc=0
      wait "$pid" || rc=$?
      rm -f "$dir/apiserver.pid"
      log_tail "$log"
      die "apiserver exited with status $rc before it was ready (log: $log)"
    fi
    if ((SECONDS >= deadline)); then
      kill -TERM "$pid" 2>/dev/null || true
      sleep 2
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$dir/apiserver.pid"
      log_tail "$log"
      die "apiserver not ready within ${timeout}s (log: $log)"
    fi
    sleep 0.2
  done
  echo "apiserver ready: $(cat "$dir/ready") pid=$pid kubeconfig=$dir/kubeconfig"
}

cmd_stop() {
  [[ $# -eq 1 ]] || usage
  local dir=$1 pid
  [[ -d $dir ]] || die "no such directory: $dir"
  pid=$(running_pid "$dir")
  if [[ -z $pid ]]; then
    rm -f "$dir/apiserver.pid" "$dir/ready"
    echo "apiserver not running in $dir"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "apiserver.sh: pid $pid did not exit within 30s of SIGTERM; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/apiserver.pid" "$dir/ready"
  echo "apiserver stopped (pid $pid)"
}

cmd_status() {
  [[ $# -eq 1 ]] || usage
  local dir=$1 pid
  pid=$(running_pid "$dir")
  if [[ -z $pid ]]; then
    echo "not running"
    return 1
  fi
  if [[ -f $dir/ready ]]; then
    echo "running pid=$pid url=$(cat "$dir/ready") kubeconfig=$dir/kubeconfig"
    return 0
  fi
  echo "running pid=$pid, not ready"
  return 2
}

[[ $# -ge 1 ]] || usage
sub=$1
shift
case $sub in
build) [[ $# -eq 0 ]] || usage; cmd_build ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
-h | --help | help) usage ;;
*) usage ;;
esac
