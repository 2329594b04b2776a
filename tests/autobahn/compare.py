#!/usr/bin/env python3
"""Compare two Autobahn|Testsuite fuzzingclient reports (index.json).

usage: compare.py DIRECT_INDEX.json PROXIED_INDEX.json
                  [--agent-direct NAME] [--agent-proxied NAME]
                  [--baseline DIRECT2_INDEX.json]
                  [--strict-close-code] [--verbose] [--quiet]

A case is "identical" when `behavior` and `behaviorClose` are equal in both
reports. The exit status is 1 when any case differs, or when a case from the
direct report is missing from the proxied report; 2 on usage/input errors;
0 otherwise. Cases present only in the proxied report are reported but do not
fail the comparison.

`remoteCloseCode` (the close code the peer sent) differences are always
listed; with --strict-close-code they also count as a difference.

--baseline takes the index.json of a second run against the backend directly:
cases whose outcome differs between the two direct runs are timing-dependent
in the backend itself; they are listed as FLAKY and excluded from the
verdict (they are neither "identical" nor "differ").

For every differing case the observed events and close details of the
per-case reports (the `reportfile` next to each index.json) are printed when
present, which usually shows what the proxy changed.

Stdlib only.
"""

import argparse
import json
import os
import signal
import sys


def case_key(case_id):
    out = []
    for part in case_id.split("."):
        try:
            out.append((0, int(part), ""))
        except ValueError:
            out.append((1, 0, part))
    return tuple(out)


def fail_input(msg):
    print("compare.py: " + msg, file=sys.stderr)
    sys.exit(2)


def load(path, agent):
    try:
        with open(path) as f:
            idx = json.load(f)
    except (OSError, ValueError) as e:
        fail_input("cannot read %s: %s" % (path, e))
    if not isinstance(idx, dict) or not idx:
        fail_input("%s: no agents in report" % path)
    if agent is None:
        if len(idx) != 1:
            fail_input("%s has agents %s; pick one with --agent-direct/--agent-proxied"
                       % (path, sorted(idx)))
        agent = next(iter(idx))
    if agent not in idx:
        fail_input("%s: agent %r not found (have %s)" % (path, agent, sorted(idx)))
    if not isinstance(idx[agent], dict):
        fail_input("%s: agent %r has no case table" % (path, agent))
    return agent, idx[agent]


def _event(ev):
    if isinstance(ev, list) and ev:
        kind = ev[0]
        # (payloads in per-case reports are truncated, so no sizes here)
        if kind == "message" and len(ev) >= 3:
            return "msg(%s)" % ("bin" if ev[2] else "text")
        return str(kind)
    return str(ev)


def case_detail(index_path, case):
    """Observed events / close details from the per-case report, if present."""
    rf = case.get("reportfile")
    if not rf:
        return None
    p = os.path.join(os.path.dirname(os.path.abspath(index_path)), rf)
    try:
        with open(p) as f:
            r = json.load(f)
    except (OSError, ValueError):
        return None
    events = r.get("received") or []
    ev = ", ".join(_event(e) for e in events[:6])
    if len(events) > 6:
        ev += ", ... (%d events)" % len(events)
    out = "received=[%s] clean=%s" % (ev, r.get("wasClean"))
    if r.get("wasNotCleanReason"):
        out += " (%s)" % r["wasNotCleanReason"]
    if r.get("resultClose") and r.get("behaviorClose") != "OK":
        out += " | close: %s" % r["resultClose"]
    return out


def fmt(case):
    if case is None:
        return "MISSING"
    return "%s/%s/%s" % (case.get("behavior"), case.get("behaviorClose"),
                         case.get("remoteCloseCode"))


def main():
    ap = argparse.ArgumentParser(
        description="Compare direct vs proxied Autobahn fuzzingclient reports.")
    ap.add_argument("direct", help="index.json of the run against the backend directly")
    ap.add_argument("proxied", help="index.json of the run through the proxy")
    ap.add_argument("--agent-direct", help="agent key in the direct report "
                    "(default: the only one)")
    ap.add_argument("--agent-proxied", help="agent key in the proxied report "
                    "(default: the only one)")
    ap.add_argument("--baseline", metavar="DIRECT2_INDEX",
                    help="second direct run; cases that differ between the two "
                    "direct runs are reported as FLAKY and ignored")
    ap.add_argument("--strict-close-code", action="store_true",
                    help="also fail when remoteCloseCode differs")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print every case, not only the differing ones")
    ap.add_argument("-q", "--quiet", action="store_true",
                    help="print only the summary line")
    args = ap.parse_args()

    a_name, direct = load(args.direct, args.agent_direct)
    b_name, proxied = load(args.proxied, args.agent_proxied)
    flaky_ids = set()
    if args.baseline:
        _, base = load(args.baseline, None)
        for cid, d in direct.items():
            b = base.get(cid)
            if b is None or (d.get("behavior"), d.get("behaviorClose")) != \
                    (b.get("behavior"), b.get("behaviorClose")):
                flaky_ids.add(cid)

    rows = []  # (case_id, status, direct_case, proxied_case)
    identical = differ = missing = extra = close_code_only = flaky = 0
    for cid in sorted(set(direct) | set(proxied), key=case_key):
        d, p = direct.get(cid), proxied.get(cid)
        if cid in flaky_ids and p is not None:
            status = "FLAKY"
            flaky += 1
        elif p is None:
            status = "MISSING"
            missing += 1
            differ += 1
        elif d is None:
            status = "EXTRA"
            extra += 1
        elif (d.get("behavior"), d.get("behaviorClose")) != \
                (p.get("behavior"), p.get("behaviorClose")):
            status = "DIFFER"
            differ += 1
        elif d.get("remoteCloseCode") != p.get("remoteCloseCode"):
            close_code_only += 1
            if args.strict_close_code:
                status = "DIFFER(code)"
                differ += 1
            else:
                status = "close-code"
                identical += 1
        else:
            status = "same"
            identical += 1
        rows.append((cid, status, d, p))

    shown = [r for r in rows if args.verbose or r[1] != "same"]
    if shown and not args.quiet:
        w = max(len(fmt(r[2])) for r in shown)
        w = max(w, len("direct (%s)" % a_name))
        print("%-10s %-12s %-*s  %s" % ("case", "status", w,
              "direct (%s)" % a_name, "proxied (%s)" % b_name))
        print("%-10s %-12s %-*s  %s" % ("", "", w,
              "behavior/behaviorClose/remoteCloseCode", ""))
        for cid, status, d, p in shown:
            print("%-10s %-12s %-*s  %s" % (cid, status, w, fmt(d), fmt(p)))
            if status != "same":
                for label, path, c in (("direct", args.direct, d),
                                       ("proxied", args.proxied, p)):
                    if c is not None:
                        det = case_detail(path, c)
                        if det:
                            print("%-23s %-8s %s" % ("", label + ":", det))

    def total_ms(cases):  # failed handshakes report absurd durations; skip them
        return sum(c.get("duration") or 0 for c in cases.values()
                   if 0 <= (c.get("duration") or 0) < 3600 * 1000)
    dur_a, dur_b = total_ms(direct), total_ms(proxied)
    if not args.quiet:
        print("case durations (sum): direct %.1fs, proxied %.1fs"
              % (dur_a / 1000.0, dur_b / 1000.0))
    extras = []
    if missing:
        extras.append("%d missing in proxied run" % missing)
    if extra:
        extras.append("%d only in proxied run" % extra)
    if flaky:
        extras.append("%d flaky between direct runs, ignored" % flaky)
    if close_code_only and not args.strict_close_code:
        extras.append("%d with different remoteCloseCode (not counted)" % close_code_only)
    print("autobahn: %d cases identical, %d differ%s"
          % (identical, differ, (" (" + "; ".join(extras) + ")") if extras else ""))
    return 1 if differ else 0


if __name__ == "__main__":
    if hasattr(signal, "SIGPIPE"):  # quiet when piped into head(1)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
