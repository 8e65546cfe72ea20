#!/usr/bin/env python3
"""The sensor's response-action times from ../shared/bench/antigena runs.

  antigena_summary.py BENCH_RUN_DIR IDLE_RUN_DIR OSSENSOR_LOG

For each rep of the bench run: when each end of the busy and the idle
connection saw its reset, counted from the operator's order (the killer's
"listening" line, printed just before `vsensor action block`) and from the
moment the capture-worker applied the action (its own log line, UTC ms).
Median [min-max] over the reps, plus how each end ended. Then the same for
the idle bench's two connections. Times are CLOCK_REALTIME everywhere.
"""
import datetime
import json
import os
import re
import statistics
import sys


def load(path):
    out = []
    if os.path.exists(path):
        for line in open(path):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def span(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "none"
    return f"median {statistics.median(xs):.1f} ms [{min(xs):.1f}-{max(xs):.1f}] (n={len(xs)})"


APPLIED = re.compile(r"^(\S+Z) capture-worker\[[^]]*\]\[\d+\] L3: \S+: action (\d+) applied")


def applied_times(log):
    times = {}
    for line in open(log):
        m = APPLIED.match(line)
        if m:
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
            times.setdefault(int(m.group(2)), t.timestamp())
    return times


def killer_times(rd, applied):
    tk = load(os.path.join(rd, "killer.log"))
    t_order = next((e["t"] for e in tk if e.get("ev") == "line" and "listening" in e.get("line", "")), None)
    ids = [int(m.group(1)) for e in tk if e.get("ev") == "line" for m in [re.search(r"action (\d+) ordered", e.get("line", ""))] if m]
    t_applied = applied.get(ids[0]) if ids else None
    return t_order, t_applied


def ends(rd, server, tags):
    """(tag, side) -> end event, matching the server's by client port and time."""
    out = {}
    for tag in tags:
        cl = load(os.path.join(rd, f"client-{tag}.log"))
        est = next((e for e in cl if e.get("ev") == "established"), None)
        if est is None:
            continue
        out[(tag, "client")] = next((e for e in cl if e.get("ev") == "end"), None)
        out[(tag, "server")] = next((e for e in server if e.get("ev") == "end" and e.get("cport") == est["lport"] and e["t"] >= est["t"] - 0.01), None)
    return out


def report(title, rows, tags):
    print(title)
    for tag in tags:
        for side in ("client", "server"):
            hows, from_order, from_applied = {}, [], []
            for r in rows:
                e = r["ends"].get((tag, side))
                how = e["how"] if e else "alive"
                hows[how] = hows.get(how, 0) + 1
                if e and e["how"] not in ("alive",) and r["t_order"]:
                    from_order.append((e["t"] - r["t_order"]) * 1e3)
                    if r["t_applied"]:
                        from_applied.append((e["t"] - r["t_applied"]) * 1e3)
            print(f"  {tag:8s} {side:6s} from the order: {span(from_order)}; from the worker applying it: {span(from_applied)}; how: {hows}")


def main(bench, idle, log):
    applied = applied_times(log)
    server = load(os.path.join(bench, "server.log"))
    rows = []
    for r in sorted(d for d in os.listdir(bench) if d.startswith("rep")):
        rd = os.path.join(bench, r)
        t_order, t_applied = killer_times(rd, applied)
        rows.append({"t_order": t_order, "t_applied": t_applied, "ends": ends(rd, server, ("busy", "idle"))})
    report(f"ossensor, {len(rows)} reps ({bench}):", rows, ("busy", "idle"))
    if os.path.isdir(idle):
        server = load("/tmp/agn-runs/server/server.log")
        t_order, t_applied = killer_times(idle, applied)
        report(f"ossensor, idle bench ({idle}):",
               [{"t_order": t_order, "t_applied": t_applied, "ends": ends(idle, server, ("idle", "idleka"))}], ("idle", "idleka"))


if __name__ == "__main__":
    main(*sys.argv[1:4])
