#!/usr/bin/env bash
# Chart tests: helm lint, the freshness of manifests/install.yaml and charts/wsgate/crds/, then
# assertions on the rendered objects (RBAC is least privilege, the pod drains safely and runs
# non-root read-only, probes and IngressClass are right), for the defaults and some value variants.
# Prints "N passed, M failed"; exits non-zero on any failure.
#
#   bash tests/chart/rbac_test.sh
#
# Needs go (to build the pinned helm once, see scripts/helm.sh) and python3 with PyYAML (installed
# into ~/.cache/wsgate/chart-venv when the system python3 lacks it).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

HELM=$(bash scripts/helm.sh install)

# python3 with PyYAML: the system one if it has it, else a venv (idempotent).
PY=python3
if ! python3 -c 'import yaml' 2>/dev/null; then
    VENV=${WSGATE_CHART_VENV:-$HOME/.cache/wsgate/chart-venv}
    if ! "$VENV/bin/python" -c 'import yaml' 2>/dev/null; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check pyyaml
    fi
    PY=$VENV/bin/python
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

pre_failed=0
pre_passed=0
run_step() { # name, command...
    local name=$1
    shift
    if "$@" >"$WORK/step.log" 2>&1; then
        echo "ok   - $name"
        pre_passed=$((pre_passed + 1))
    else
        echo "FAIL - $name"
        sed 's/^/       /' "$WORK/step.log"
        pre_failed=$((pre_failed + 1))
    fi
}

run_step "helm lint --strict (defaults)" bash scripts/helm.sh lint
run_step "manifests/install.yaml and charts/wsgate/crds/ are up to date" bash scripts/helm.sh check

# Value variants: each rendered into WORK/NAME.yaml; the python below asserts on them.
render() { # name, helm set flags...
    local name=$1
    shift
    "$HELM" template wsgate charts/wsgate --namespace wsgate-system --kube-version 1.34.0 \
        --include-crds "$@" >"$WORK/$name.yaml"
}
run_step "render: long drain" render drain120 --set controller.shutdownDrainSeconds=120
run_step "render: explicit grace period" render grace200 --set controller.terminationGracePeriodSeconds=200
run_step "render: ServiceMonitor, default class, watched namespaces, publish address" \
    render extras --set metrics.serviceMonitor.enabled=true --set ingressClass.default=true \
    --set 'controller.watchNamespaces={apps,chat}' --set controller.publishAddress=ws.example.com
run_step "render: affinity key from a Secret" render affinitykey \
    --set controller.affinityKeySecret.name=wsgate-affinity
run_step "lint --strict with ServiceMonitor and watched namespaces" \
    "$HELM" lint --strict charts/wsgate --kube-version 1.34.0 --set metrics.serviceMonitor.enabled=true \
    --set 'controller.watchNamespaces={apps,chat}'
render_fails() { # expected message, helm set flags...
    local msg=$1
    shift
    if render rejected "$@" 2>"$WORK/rejected.err"; then
        echo "rendering succeeded, expected it to fail with: $msg"
        return 1
    fi
    grep -qF -- "$msg" "$WORK/rejected.err" || { cat "$WORK/rejected.err"; return 1; }
}
run_step "render: no per-Gateway Services" render nogwsvc --set gatewayAPI.gatewayServices.enabled=false
run_step "render: per-Gateway Services of type ClusterIP, another port range" render gwsvc \
    --set gatewayAPI.gatewayServices.type=ClusterIP --set gatewayAPI.gatewayServices.portRange=40000-40999
run_step "render: close spread 10s" render spread10 --set controller.shutdownCloseSpreadSeconds=10
run_step "render: Grafana dashboard ConfigMap" render dashboard --set grafanaDashboard.enabled=true \
    --set grafanaDashboard.namespace=monitoring
run_step "lint --strict with the Grafana dashboard and a close spread" \
    "$HELM" lint --strict charts/wsgate --kube-version 1.34.0 --set grafanaDashboard.enabled=true \
    --set controller.shutdownCloseSpreadSeconds=10
run_step "close spread that does not fit in the drain after the accept delay is rejected (25 + 5 >= 30)" \
    render_fails "does not fit in controller.shutdownDrainSeconds" \
    --set controller.shutdownDrainSeconds=30 --set controller.shutdownCloseSpreadSeconds=25
run_step "render: the largest close spread that fits a 30 s drain (24 s)" render spread24 \
    --set controller.shutdownCloseSpreadSeconds=24
run_step "fractional close spread is rejected" \
    render_fails "whole number of seconds" --set controller.shutdownCloseSpreadSeconds=1.5
run_step "grace period not above the drain is rejected" \
    render_fails "must be greater than controller.shutdownDrainSeconds" \
    --set controller.shutdownDrainSeconds=60 --set controller.terminationGracePeriodSeconds=60
run_step "fractional drain is rejected" \
    render_fails "whole number of seconds" --set controller.shutdownDrainSeconds=2.5

PRE_PASSED=$pre_passed PRE_FAILED=$pre_failed WORK=$WORK "$PY" - <<'PYEOF'
import os
import sys

import yaml

passed = int(os.environ["PRE_PASSED"])
failed = int(os.environ["PRE_FAILED"])
WORK = os.environ["WORK"]
NS = "wsgate-system"


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   - {name}")
    else:
        failed += 1
        print(f"FAIL - {name}" + (f": {detail}" if detail else ""))


def load(path):
    try:
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d]
    except (OSError, yaml.YAMLError) as e:
        check(f"parse {path}", False, str(e))
        return []


def one(docs, kind, name=None):
    found = [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    return found[0] if len(found) == 1 else None


def container(docs):
    dep = one(docs, "Deployment")
    return dep, (dep["spec"]["template"]["spec"]["containers"][0] if dep else None)


def flag(args, name):
    """Values of --name=VALUE (or --name VALUE) in a container's args."""
    out = []
    for i, a in enumerate(args):
        if a.startswith(f"--{name}="):
            out.append(a.split("=", 1)[1])
        elif a == f"--{name}" and i + 1 < len(args):
            out.append(args[i + 1])
    return out


def seconds(d):
    assert d.endswith("s") and d[:-1].isdigit(), d
    return int(d[:-1])


# ---------------------------------------------------------------- defaults: manifests/install.yaml
docs = load("manifests/install.yaml")
kinds = sorted(d["kind"] for d in docs)
check("install.yaml: the expected objects", kinds == sorted([
    "Namespace", "CustomResourceDefinition", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
    "Role", "RoleBinding", "Service", "Service", "Deployment", "IngressClass", "PodDisruptionBudget",
]), kinds)
check("install.yaml: no ServiceMonitor by default", one(docs, "ServiceMonitor") is None)
check("install.yaml: no dashboard ConfigMap by default", one(docs, "ConfigMap") is None)
with open("manifests/install.yaml") as f:
    check("install.yaml: starts with the generated-file header",
          f.readline().startswith("# Generated by `bash scripts/helm.sh render`"))

cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "IngressClass"}
bad_ns = [f'{d["kind"]}/{d["metadata"]["name"]}' for d in docs
          if d["kind"] not in cluster_scoped and d["metadata"].get("namespace") != NS]
check(f"every namespaced object is in {NS}", not bad_ns, bad_ns)

crd = one(docs, "CustomResourceDefinition", "gateways.wsgate.dev")
with open("crds/gateways.wsgate.dev.yaml") as f:
    top_crd = [d for d in yaml.safe_load_all(f) if d]
check("the CRD in install.yaml is crds/gateways.wsgate.dev.yaml", crd is not None and [crd] == top_crd)

# RBAC ----------------------------------------------------------------------------------------------
cr = one(docs, "ClusterRole")
role = one(docs, "Role")
all_rules = (cr or {}).get("rules", []) + (role or {}).get("rules", [])


def grants(rules):
    """{(apiGroup, resource): set(verbs)} over all rules."""
    out = {}
    for r in rules:
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                out.setdefault((g, res), set()).update(r.get("verbs", []))
    return out


wild = [r for r in all_rules
        if any("*" in x for k in ("apiGroups", "resources", "verbs", "resourceNames") for x in r.get(k, []))]
check("no '*' in any apiGroups/resources/verbs", not wild, wild)
check("no nonResourceURLs", not any("nonResourceURLs" in r for r in all_rules))
read = {"list", "watch"}
cluster_grants = grants((cr or {}).get("rules", []))
check("Secrets verbs are exactly list/watch (read-only)", cluster_grants.get(("", "secrets")) == read,
      cluster_grants.get(("", "secrets")))
expected_cluster = {
    ("networking.k8s.io", "ingresses"): read,
    ("networking.k8s.io", "ingressclasses"): read,
    ("networking.k8s.io", "ingresses/status"): {"patch"},
    ("", "services"): read,
    ("discovery.k8s.io", "endpointslices"): read,
    ("", "secrets"): read,
    ("wsgate.dev", "gateways"): read,
    ("wsgate.dev", "gateways/status"): {"patch"},
    ("wsgate.dev", "websocketpolicies"): read,
    ("wsgate.dev", "websocketpolicies/status"): {"patch"},
    ("gateway.networking.k8s.io", "gatewayclasses"): read,
    ("gateway.networking.k8s.io", "gateways"): read,
    ("gateway.networking.k8s.io", "httproutes"): read,
    ("gateway.networking.k8s.io", "referencegrants"): read,
    ("gateway.networking.k8s.io", "backendtlspolicies"): read,
    ("", "configmaps"): read,
    ("", "namespaces"): read,
    ("gateway.networking.k8s.io", "backendtlspolicies/status"): {"patch"},
    ("gateway.networking.k8s.io", "gatewayclasses/status"): {"patch"},
    ("gateway.networking.k8s.io", "gateways/status"): {"patch"},
    ("gateway.networking.k8s.io", "httproutes/status"): {"patch"},
    ("events.k8s.io", "events"): {"create"},
}
check("ClusterRole grants exactly what the controller uses", cluster_grants == expected_cluster,
      {k: sorted(v) for k, v in cluster_grants.items() if expected_cluster.get(k) != v}
      | {k: "missing" for k in expected_cluster if k not in cluster_grants})
check("Role in the release namespace: Lease get/create/update, and (gatewayServices) Services "
      "get/create/patch/delete there only",
      role is not None and role["metadata"].get("namespace") == NS
      and grants(role["rules"]) == {("coordination.k8s.io", "leases"): {"get", "create", "update"},
                                     ("", "services"): {"get", "create", "patch", "delete"}},
      role)
sa = one(docs, "ServiceAccount")
crb = one(docs, "ClusterRoleBinding")
rb = one(docs, "RoleBinding")
subject = [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NS}] if sa else None
check("ClusterRoleBinding binds the ClusterRole to the ServiceAccount",
      crb is not None and cr is not None and crb["roleRef"]["kind"] == "ClusterRole"
      and crb["roleRef"]["name"] == cr["metadata"]["name"] and crb["subjects"] == subject)
check("RoleBinding binds the Lease Role to the ServiceAccount in the release namespace",
      rb is not None and role is not None and rb["metadata"].get("namespace") == NS
      and rb["roleRef"]["kind"] == "Role" and rb["roleRef"]["name"] == role["metadata"]["name"]
      and rb["subjects"] == subject)

# Deployment ----------------------------------------------------------------------------------------
dep, c = container(docs)
check("one Deployment with one container", dep is not None and len(dep["spec"]["template"]["spec"]["containers"]) == 1)
if dep and c:
    pod = dep["spec"]["template"]["spec"]
    args = c.get("args", [])
    check("args start with run --kubernetes", args[:2] == ["run", "--kubernetes"], args)
    check("replicas default to 2", dep["spec"]["replicas"] == 2)
    check("pods run as the chart's ServiceAccount", sa is not None and pod.get("serviceAccountName") == sa["metadata"]["name"])
    for name, want in [("http-port", "8080"), ("https-port", "8443"), ("admin-port", "9090"),
                       ("ingress-class", "wsgate"), ("log-format", "json"),
                       ("publish-service", f"{NS}/wsgate")]:
        check(f"--{name}={want}", flag(args, name) == [want], flag(args, name))
    check("no --watch-namespace by default (all namespaces)", flag(args, "watch-namespace") == [])
    sel_flag = ",".join(f"{k}={v}" for k, v in sorted(dep["spec"]["selector"]["matchLabels"].items()))
    check("--gateway-services on by default, selecting the pods, LoadBalancer, 20000-29999",
          "--gateway-services" in args and flag(args, "gateway-service-selector") == [sel_flag]
          and flag(args, "gateway-service-type") == ["LoadBalancer"]
          and flag(args, "gateway-port-range") == ["20000-29999"], args)
    check("no --shutdown-close-spread by default (all sessions closed when the drain starts)",
          flag(args, "shutdown-close-spread") == [], flag(args, "shutdown-close-spread"))
    drain = flag(args, "shutdown-drain")
    check("--shutdown-drain is set once, in seconds", len(drain) == 1 and drain[0][:-1].isdigit(), drain)
    grace = pod.get("terminationGracePeriodSeconds")
    if len(drain) == 1:
        check("terminationGracePeriodSeconds > --shutdown-drain (drain + 15)",
              isinstance(grace, int) and grace > seconds(drain[0]) and grace == seconds(drain[0]) + 15,
              f"grace {grace}, drain {drain[0]}")
    check("no preStop hook (wsgate drains on SIGTERM itself)", "lifecycle" not in c)

    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check("container ports http/https/admin", ports == {"http": 8080, "https": 8443, "admin": 9090}, ports)
    rp, lp = c.get("readinessProbe", {}), c.get("livenessProbe", {})
    check("readinessProbe GET /readyz on the admin port",
          rp.get("httpGet", {}).get("path") == "/readyz" and rp["httpGet"].get("port") in ("admin", 9090), rp)
    check("livenessProbe GET /healthz on the admin port",
          lp.get("httpGet", {}).get("path") == "/healthz" and lp["httpGet"].get("port") in ("admin", 9090), lp)

    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    check("pod securityContext: runAsNonRoot, uid 65532, seccomp RuntimeDefault",
          psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532
          and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", psc)
    check("container securityContext: non-root, read-only root fs, no privilege escalation, drop ALL",
          csc.get("runAsNonRoot") is True and csc.get("runAsUser") == 65532
          and csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
          and csc.get("capabilities", {}).get("drop") == ["ALL"] and not csc.get("capabilities", {}).get("add")
          and csc.get("privileged", False) is False
          and csc.get("seccompProfile", {}).get("type") == "RuntimeDefault", csc)
    check("no hostNetwork/hostPID/hostIPC/hostPath",
          not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
          and not any("hostPath" in v for v in pod.get("volumes", [])))
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c.get("env", [])}
    check("POD_NAME/POD_NAMESPACE from the downward API",
          env.get("POD_NAME") == "metadata.name" and env.get("POD_NAMESPACE") == "metadata.namespace", env)
    res = c.get("resources", {})
    check("resources: requests set, memory limit set", bool(res.get("requests")) and "memory" in res.get("limits", {}), res)
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    check("preferred (not required) pod anti-affinity on hostname",
          "requiredDuringSchedulingIgnoredDuringExecution" not in anti
          and any(t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
                  for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])), anti)
    sel = dep["spec"]["selector"]["matchLabels"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    check("Deployment selector matches the pod labels", all(labels.get(k) == v for k, v in sel.items()))

    # Services, PDB, IngressClass ---------------------------------------------------------------------
    svc = one(docs, "Service", "wsgate")
    check("traffic Service wsgate (the --publish-service target) exists", svc is not None)
    if svc:
        sp = {p["port"]: p["targetPort"] for p in svc["spec"]["ports"]}
        check("traffic Service: LoadBalancer, 80->http, 443->https, no admin port",
              svc["spec"]["type"] == "LoadBalancer" and sp == {80: "http", 443: "https"}, svc["spec"])
        check("traffic Service: externalTrafficPolicy Local (client source IPs kept)",
              svc["spec"].get("externalTrafficPolicy") == "Local")
        check("traffic Service selects the pods", svc["spec"]["selector"] == sel)
    msvc = one(docs, "Service", "wsgate-metrics")
    check("metrics Service: ClusterIP, metrics -> admin, selects the pods",
          msvc is not None and msvc["spec"]["type"] == "ClusterIP"
          and [(p["name"], p["targetPort"]) for p in msvc["spec"]["ports"]] == [("metrics", "admin")]
          and msvc["spec"]["selector"] == sel, msvc)
    pdb = one(docs, "PodDisruptionBudget")
    check("PodDisruptionBudget maxUnavailable 1 over the pods",
          pdb is not None and pdb["spec"].get("maxUnavailable") == 1 and pdb["spec"]["selector"]["matchLabels"] == sel)

ic = one(docs, "IngressClass")
check("IngressClass wsgate, controller wsgate.dev/ingress-controller",
      ic is not None and ic["metadata"]["name"] == "wsgate" and ic["spec"]["controller"] == "wsgate.dev/ingress-controller", ic)
check("IngressClass is not the default class by default",
      ic is not None and "ingressclass.kubernetes.io/is-default-class" not in (ic["metadata"].get("annotations") or {}))

# ---------------------------------------------------------------- variants
for name, drain, grace in [("drain120", 120, 135), ("grace200", 30, 200)]:
    _, vc = container(load(f"{WORK}/{name}.yaml"))
    vdep = one(load(f"{WORK}/{name}.yaml"), "Deployment")
    check(f"{name}: --shutdown-drain={drain}s, grace period {grace}",
          vc is not None and flag(vc["args"], "shutdown-drain") == [f"{drain}s"]
          and vdep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == grace)

ext = load(f"{WORK}/extras.yaml")
sm = one(ext, "ServiceMonitor")
check("ServiceMonitor (monitoring.coreos.com/v1) scrapes the metrics Service's /metrics",
      sm is not None and sm["apiVersion"] == "monitoring.coreos.com/v1"
      and sm["spec"]["endpoints"][0]["port"] == "metrics" and sm["spec"]["endpoints"][0]["path"] == "/metrics"
      and all((one(ext, "Service", "wsgate-metrics") or {"metadata": {"labels": {}}})["metadata"]["labels"].get(k) == v
              for k, v in sm["spec"]["selector"]["matchLabels"].items()), sm)
eic = one(ext, "IngressClass")
check("ingressClass.default=true sets is-default-class",
      eic is not None and (eic["metadata"].get("annotations") or {}).get("ingressclass.kubernetes.io/is-default-class") == "true")
_, ec = container(ext)
check("watchNamespaces -> one --watch-namespace each", ec is not None and flag(ec["args"], "watch-namespace") == ["apps", "chat"])
check("publishAddress replaces --publish-service",
      ec is not None and flag(ec["args"], "publish-address") == ["ws.example.com"] and flag(ec["args"], "publish-service") == [])
_, akc = container(load(f"{WORK}/affinitykey.yaml"))
aenv = {e["name"]: e.get("valueFrom", {}) for e in (akc or {}).get("env", [])}
check("affinityKeySecret -> WSGATE_AFFINITY_KEY from that Secret's key (every replica the same)",
      aenv.get("WSGATE_AFFINITY_KEY") == {"secretKeyRef": {"name": "wsgate-affinity", "key": "key"}}, aenv)
check("no affinity key by default (no Secret needed)",
      c is not None and all(e["name"] != "WSGATE_AFFINITY_KEY" for e in c.get("env", [])))
ext_rules = [r for d in ext if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]
check("variants grant nothing more", grants(ext_rules) == grants(all_rules))

nog = load(f"{WORK}/nogwsvc.yaml")
_, nc = container(nog)
check("gatewayServices.enabled=false: no --gateway-* flags",
      nc is not None and not any(a.startswith("--gateway-") for a in nc["args"]), nc and nc["args"])
check("gatewayServices.enabled=false: no Service writes in the Role",
      grants(one(nog, "Role")["rules"]) == {("coordination.k8s.io", "leases"): {"get", "create", "update"}})
_, gc = container(load(f"{WORK}/gwsvc.yaml"))
check("gatewayServices type and portRange -> --gateway-service-type, --gateway-port-range",
      gc is not None and flag(gc["args"], "gateway-service-type") == ["ClusterIP"]
      and flag(gc["args"], "gateway-port-range") == ["40000-40999"], gc and gc["args"])

_, sc = container(load(f"{WORK}/spread10.yaml"))
check("shutdownCloseSpreadSeconds=10 -> --shutdown-close-spread=10s, drain unchanged",
      sc is not None and flag(sc["args"], "shutdown-close-spread") == ["10s"] and flag(sc["args"], "shutdown-drain") == ["30s"])

# Grafana dashboard ConfigMap ---------------------------------------------------------------------
import json
import re

dash_docs = load(f"{WORK}/dashboard.yaml")
cm = one(dash_docs, "ConfigMap")
check("dashboard: one ConfigMap, in grafanaDashboard.namespace, labelled grafana_dashboard=1",
      cm is not None and cm["metadata"]["namespace"] == "monitoring"
      and cm["metadata"]["labels"].get("grafana_dashboard") == "1", cm and cm["metadata"])
try:
    dash = json.loads((cm or {}).get("data", {}).get("wsgate.json", ""))
except ValueError as e:
    dash = None
    check("dashboard: wsgate.json is JSON", False, str(e))
with open("charts/wsgate/dashboards/wsgate.json") as f:
    check("dashboard: the ConfigMap carries dashboards/wsgate.json unchanged", dash == json.load(f))
METRICS = {"wsgate_http_requests_total", "wsgate_http_request_duration_seconds_bucket",
           "wsgate_websocket_sessions_active", "wsgate_websocket_sessions_total",
           "wsgate_websocket_session_duration_seconds_bucket", "wsgate_websocket_messages_total",
           "wsgate_websocket_bytes_total", "wsgate_rejected_total", "wsgate_backend_up",
           "wsgate_cache_requests_total", "wsgate_config_reloads_total"}
if dash is not None:
    panels = dash.get("panels", [])
    exprs = [t.get("expr", "") for p in panels for t in p.get("targets", [])]
    check("dashboard: every panel has a title and at least one PromQL target",
          panels and all(p.get("title") and p.get("targets") and all(t.get("expr") for t in p["targets"]) for p in panels))
    used = {m for e in exprs for m in re.findall(r"\bwsgate_[a-z_]+", e)}
    check("dashboard: only metric names of the API contract", used and used <= METRICS, used - METRICS)
    titles = " | ".join(p["title"].lower() for p in panels)
    check("dashboard: sessions, messages, bytes, handshakes, requests, latency, rejections, backends, reloads",
          all(w in titles for w in ["sessions active", "opened", "closed", "messages", "bytes", "handshake",
                                    "requests", "latency", "rejections", "backend", "reloads"]), titles)
    check("dashboard: a Prometheus datasource variable, no hard-coded datasource",
          any(v.get("type") == "datasource" and v.get("query") == "prometheus" for v in dash["templating"]["list"])
          and all(t["datasource"]["uid"] == "${datasource}" for p in panels for t in p["targets"]))
check("dashboard variant grants nothing more",
      grants([r for d in dash_docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]) == grants(all_rules))

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PYEOF
