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


def read(out, name):
    try:
        return open(os.path.join(out, name)).read()
    except OSError:
        return ""


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
    budget = 64 + 64  # MiB: the goal's 64 plus the default capture buffers (OSSENSOR_CAPTURE_BUFFER_MB=64)
    goal(f"4. peak RSS ≤ 64 MiB + capture buffers ({budget} MiB by default), mixed-mtu", span(rss, "{:.0f}") + " MiB", "–",
         (max(rss) <= budget) if rss else None)
    rss_b = [int(r["rss_kb"]) / 1024 for r in by_rep(b, "ossensor").values()]
    goal(f"4. peak RSS, mixed (GSO) topspeed (the spool fills: see notes)", span(rss_b, "{:.0f}") + " MiB", "–",
         (max(rss_b) <= budget) if rss_b else None)
    lat = read(out, "latency.log")
    m = re.findall(r"GOAL5 packets=(\d+) pps=\S+ p50_ms=(\S+) p90_ms=\S+ p99_ms=(\S+) max_ms=(\S+) missing=(\d+)", lat)
    if m:
        n, p50, p99, mx, missing = m[-1]
        goal("5. latency p99 ≤ 1 s at 10 pps", f"p99 {p99} ms (p50 {p50}, max {mx}) over {n} packets, {missing} missing",
             "–", float(p99) <= 1000 and missing == "0")
    else:
        goal("5. latency p99 ≤ 1 s at 10 pps", "not measured (latency.log missing)", "–", None)

    allocs = read(out, "allocations.log")
    w = re.findall(r"worker path: (\d+) allocations for (\d+) packets", allocs)
    u = re.findall(r"uplink path: (\d+) allocations for (\d+) packets", allocs)
    if w and u:
        wa, wp = map(int, w[-1])
        ua, up = map(int, u[-1])
        goal("6. no per-packet allocation (counting allocator)",
             f"worker {wa} per {wp:,} packets; uplink {ua} per {up:,} packets ({ua / up:.4f} per packet: per batch and chunk)",
             "–", wa == 0 and ua / up < 0.02)
    else:
        goal("6. no per-packet allocation (counting allocator)", "not measured (allocations.log missing)", "–", None)
    d = by_rep(rows(os.path.join(out, "D-syscalls.csv")), "ossensor")
    per = []
    for k, r in d.items():
        calls = re.findall(r"BENCHX syscalls=(\d+)", read(out, os.path.join("D-syscalls", f"ossensor.{k}", "tool.err")))
        if calls and float(r["captured"] or 0) > 0:
            per.append(int(calls[-1]) / float(r["captured"]))
    goal("6. no per-packet syscall (strace -c, all sensor processes, 100k pps)",
         span(per, "{:.3f}") + " syscalls per packet" if per else "not measured", "–", (max(per) < 0.2) if per else None)

    print("| goal | measured (median [min–max]) | ratio | met |")
    print("|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else sorted(glob.glob("/tmp/ossensor-bench-*"))[-1])
