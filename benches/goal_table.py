#!/usr/bin/env python3
"""The goal table of issue 3 from a scripts/bench output directory.

Reads the capture-bench CSV of each block and the kept tool logs (the
sensor's wrapper prints `BENCHX wire_bytes=N`), and prints a markdown table:
goal, measured (median [min-max] over repetitions), ratio, met or not.
Ratios are taken within each repetition against the anchor of the same
repetition, as the machine is shared and noisy.
"""
import csv
import glob
import os
import re
import statistics
import sys


def rows(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [r for r in csv.DictReader(f) if r.get("failed", "0") in ("0", "")]


def by_rep(rs, tool):
    return {r["rep"]: r for r in rs if r["tool"] == tool}


def cpu_per_mpkt(r):
    captured = float(r["captured"] or 0)
    return (float(r["cpu_usr_s"]) + float(r["cpu_sys_s"])) / captured * 1e6 if captured else float("nan")


def span(values, fmt="{:.2f}"):
    v = [x for x in values if x == x]
    if not v:
        return "not measured"
    return f"{fmt.format(statistics.median(v))} [{fmt.format(min(v))}–{fmt.format(max(v))}]"


def wire_bytes(out, block, tool, rep):
    err = os.path.join(out, block, f"{tool}.{rep}", "tool.err")
    try:
        m = re.findall(r"BENCHX wire_bytes=(\d+)", open(err).read())
        return int(m[-1]) if m else None
    except OSError:
        return None


def main(out):
    table = []

    def goal(name, measured, ratio, met):
        table.append((name, measured, ratio, "yes" if met else ("no" if met is not None else "–")))

    a = rows(os.path.join(out, "A-topspeed-mtu.csv"))
    b = rows(os.path.join(out, "B-topspeed-gso.csv"))
    c = rows(os.path.join(out, "C-200kpps-shared.csv"))

    # (label, rows, rate the goal names: None = topspeed)
    for label, rs, target in (("mixed-mtu topspeed", a, None), ("mixed (GSO) topspeed", b, None),
                              ("shared CPU, 200k pps", c, 200_000)):
        s = list(by_rep(rs, "ossensor").values())
        lost = [int(r["delivered"]) - int(r["captured"]) for r in s]
        ok = sum(1 for x in lost if x == 0)
        rates = [float(r["sent"]) / float(r["gen_s"]) for r in s if float(r["gen_s"] or 0) > 0]
        reached = target is None or (rates and statistics.median(rates) >= 0.95 * target)
        note = "" if reached else " (the goal's rate was not reached)"
        goal(f"1. nothing lost, {label}",
             f"{ok} of {len(s)} runs lossless; lost {span(lost, '{:.0f}')} frames; generator reached {span(rates, '{:,.0f}')} pps{note}",
             "–", (ok == len(s) and bool(reached)) if s else None)

    anchor = by_rep(a, "tcpdump-B64k")
    for tool, limit in (("ossensor", 1.5), ("ossensor-nocomp", 0.9)):
        mine = by_rep(a, tool)
        ratios = [cpu_per_mpkt(mine[k]) / cpu_per_mpkt(anchor[k]) for k in mine if k in anchor]
        goal(f"2. CPU per packet ≤ {limit} × tcpdump -B 65536 ({tool})",
             span([cpu_per_mpkt(r) for r in mine.values()]) + " s/Mpkt", span(ratios),
             (statistics.median(ratios) <= limit) if ratios else None)

    for label, rs, block in (("mixed-mtu", a, "A-topspeed-mtu"), ("mixed (GSO)", b, "B-topspeed-gso")):
        ratios = []
        for k, r in by_rep(rs, "ossensor").items():
            w = wire_bytes(out, block, "ossensor", k)
            if w and float(r["cap_bytes"] or 0) > 0:
                ratios.append(w / float(r["cap_bytes"]))
        limit = 0.55 if label == "mixed-mtu" else None
        goal(f"3. bytes to the collector ≤ 0.55 × captured ({label})", "on the wire (loopback, both ways, headers)",
             span(ratios, "{:.3f}"), (statistics.median(ratios) <= 0.55) if ratios and limit else None)

    rss = [int(r["rss_kb"]) / 1024 for r in by_rep(a, "ossensor").values()]
    budget = 64 + 32  # MiB: the goal's 64 plus the default capture buffers (2 x 16 MiB rings)
    goal(f"4. peak RSS ≤ 64 MiB + capture buffers ({budget} MiB by default)", span(rss, "{:.0f}") + " MiB", "–",
         (max(rss) <= budget) if rss else None)
    goal("5. latency p99 ≤ 1 s at 10 pps", "not measured yet", "–", None)
    goal("6. no per-packet allocation or syscall", "not measured yet", "–", None)

    print("| goal | measured (median [min–max]) | ratio | met |")
    print("|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else sorted(glob.glob("/tmp/ossensor-bench-*"))[-1])
