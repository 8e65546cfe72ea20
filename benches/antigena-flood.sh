#!/usr/bin/env bash
# What response actions cost the sensor under a random-source TCP flood,
# and whether an action still resets the connections it covers:
#
#   sudo benches/antigena-flood.sh [--reps 5] [--seconds 20] [--pps 20000] [--out DIR]
#   sudo BIN_DIR=/other/tree/target/release benches/antigena-flood.sh   # another build
#
# Three namespaces (nothing leaves the machine): "gen" (198.18.90.1) and
# "srv" (198.18.90.2, an echo server on :7000) joined by a bridge br0 in
# "sen" (198.18.90.254), where a collector runs on loopback and ossensor
# captures br0. Per run: the sensor starts, three idle connections
# gen -> srv:7000 are opened, then tcpreplay (CPU 0) sends SECONDS x PPS
# TCP segments (SYNs and ACKs, each from a new random address and port of
# 198.19.0.0/16 to srv:80) at PPS. The sensor runs on CPU 1. Modes:
#
#   off      ANTIGENA_ENABLED=false
#   on       ANTIGENA_ENABLED=true, no action
#   action   ANTIGENA_ENABLED=true, a block of an unrelated pair ordered
#            before the flood, and halfway through it a quarantine of the
#            idle connections' client (neither covers the flood)
#
# Measured per run, from 1 s before the flood until the worker has caught
# up after it: the CPU time of the sensor's process tree (utime + stime of
# the supervisor and its children, /proc/PID/stat), the packets its worker
# captured (read and passed on) and the kernel dropped (the uplink's
# metrics), the packets tcpreplay sent;
# in "action" mode, how many idle connections were reset (their client
# read ECONNRESET). REPS rounds of the three modes, in a rotating order.
# Prints medians, CPU per captured packet, and the ratios to "off"
# (--modes picks some of the modes; each run's directory has the CPU time
# per thread before and after the flood).
#
# BIN_DIR (default target/release, built if missing) holds ossensor,
# ossensor-capture-worker, ossensor-uplink and vsensor. OUT (default
# /tmp/ossensor-flood-DATE) keeps runs.csv, summary.txt and each run's logs.
# Needs ip, python3, tcpreplay, taskset; run as root.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"

reps=5
seconds=20
pps=20000
modes=(off on action)
out=/tmp/ossensor-flood-$(date -u +%Y%m%dT%H%M%S)
usage() { echo "usage: benches/antigena-flood.sh [--reps N] [--seconds S] [--pps R] [--out DIR] [--modes 'off on action']" >&2; exit 2; }
while (($#)); do
  case $1 in
    --reps) [[ $# -ge 2 ]] || usage; reps=$2; shift 2 ;;
    --seconds) [[ $# -ge 2 ]] || usage; seconds=$2; shift 2 ;;
    --pps) [[ $# -ge 2 ]] || usage; pps=$2; shift 2 ;;
    --out) [[ $# -ge 2 ]] || usage; out=$2; shift 2 ;;
    --modes) [[ $# -ge 2 ]] || usage; read -r -a modes <<<"$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -uo/{/^set/d;p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) usage ;;
  esac
done
for v in "$reps" "$seconds" "$pps"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "antigena-flood: --reps, --seconds and --pps take positive integers" >&2; exit 2; }
done
[[ $(id -u) -eq 0 ]] || { echo "antigena-flood: run as root (namespaces, capture)" >&2; exit 1; }
for tool in ip python3 tcpreplay taskset setsid; do
  command -v "$tool" >/dev/null || { echo "antigena-flood: $tool not found (apt-get install tcpreplay)" >&2; exit 1; }
done

bins=(ossensor ossensor-capture-worker ossensor-uplink vsensor)
bin_dir=${BIN_DIR:-$root/target/release}
missing=0
for b in "${bins[@]}"; do [[ -x $bin_dir/$b ]] || missing=1; done
if ((missing)); then
  [[ -z ${BIN_DIR:-} ]] || { echo "antigena-flood: BIN_DIR=$BIN_DIR lacks one of ${bins[*]}" >&2; exit 1; }
  echo "==> release binaries missing: cargo build --release --workspace --bins"
  (cd "$root" && cargo build --release --workspace --bins) || exit 1
fi

mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
# The sensor's children run unprivileged: binaries and runtime directory in
# a directory they can reach (removed at the end).
work=$(mktemp -d /tmp/ossensor-flood-work.XXXXXX) || exit 1
mkdir -p "$work/bin" && chmod 755 "$work" "$work/bin"
for b in "${bins[@]}"; do cp "$bin_dir/$b" "$work/bin/$b" || exit 1; done
chmod 755 "$work"/bin/*
tcpends=$root/tests/support/tcpends.py

tag=$$
ns_g=afl-$tag-gen
ns_s=afl-$tag-srv
ns_n=afl-$tag-sen
gen_ip=198.18.90.1
srv_ip=198.18.90.2
key=flood-key-$tag-$RANDOM$RANDOM
data=$work/collector-data

vs_pid=""
os_pid=""
srv_pid=""
idle_pids=()
cleaned=0
# stop_pid PID SECONDS: SIGTERM, wait, then SIGKILL.
stop_pid() {
  local pid=$1 secs=$2 i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < secs * 20; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}
cleanup() {
  ((cleaned)) && return
  cleaned=1
  trap '' INT TERM
  local p ns
  for p in "${idle_pids[@]}"; do stop_pid "$p" 2; done
  stop_pid "$os_pid" 20
  stop_pid "$srv_pid" 2
  stop_pid "$vs_pid" 10
  for ns in "$ns_g" "$ns_s" "$ns_n"; do
    [[ -e /run/netns/$ns ]] || continue
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns delete "$ns" 2>/dev/null
  done
  rm -rf "$work"
}
fail() {
  echo "antigena-flood: $*" >&2
  cleanup
  exit 1
}
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

echo "==> namespaces $ns_g, $ns_s, $ns_n (bridge br0)"
for ns in "$ns_g" "$ns_s" "$ns_n"; do
  ip netns add "$ns" || fail "cannot create namespace $ns"
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip -n "$ns_n" link add br0 type bridge || fail "bridge"
ip -n "$ns_g" link add gen0 type veth peer name gv netns "$ns_n" || fail "veth gen"
ip -n "$ns_s" link add srv0 type veth peer name sv netns "$ns_n" || fail "veth srv"
ip -n "$ns_g" addr add "$gen_ip/24" dev gen0
ip -n "$ns_s" addr add "$srv_ip/24" dev srv0
ip -n "$ns_n" addr add 198.18.90.254/24 dev br0
for port in gv sv; do
  ip -n "$ns_n" link set "$port" master br0
  ip -n "$ns_n" link set "$port" up
done
ip -n "$ns_n" link set br0 up
ip -n "$ns_g" link set gen0 up
ip -n "$ns_s" link set srv0 up
mac_g=$(ip -n "$ns_g" -br link show gen0 | awk '{print $3}')
mac_s=$(ip -n "$ns_s" -br link show srv0 | awk '{print $3}')
# Pinned neighbours: no ARP during the runs.
ip -n "$ns_g" neigh replace "$srv_ip" lladdr "$mac_s" dev gen0 nud permanent
ip -n "$ns_s" neigh replace "$gen_ip" lladdr "$mac_g" dev srv0 nud permanent

total=$((seconds * pps))
pcap=$work/flood.pcap
echo "==> $total flood segments ($pcap)"
python3 - "$pcap" "$total" "$mac_g" "$mac_s" "$srv_ip" <<'PY' || fail "pcap generation"
"""Random-source TCP segments (SYN, then ACK, alternately) to one server:
each a new 4-tuple from 198.19.0.0/16."""
import random, socket, struct, sys

path, count, src_mac, dst_mac, dst_ip = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
mac = lambda m: bytes(int(x, 16) for x in m.split(":"))
eth = mac(dst_mac) + mac(src_mac) + b"\x08\x00"
dst = socket.inet_aton(dst_ip)
rnd = random.Random(7)

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

with open(path, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    seen = set()
    n = 0
    while n < count:
        src = struct.pack("!BBH", 198, 19, rnd.getrandbits(16))
        sport = rnd.randrange(1024, 65536)
        if (src, sport) in seen:
            continue
        seen.add((src, sport))
        flags = 0x02 if n % 2 == 0 else 0x10
        tcp = struct.pack("!HHIIBBHHH", sport, 80, rnd.getrandbits(32), rnd.getrandbits(32) if flags & 0x10 else 0, 5 << 4, flags, 64240, 0, 0)
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), n & 0xFFFF, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        frame = eth + ip + tcp
        f.write(struct.pack("<IIII", n // 1_000_000, n % 1_000_000, len(frame), len(frame)) + frame)
        n += 1
PY

echo "==> collector (CPU 0)"
setsid ip netns exec "$ns_n" taskset -c 0 env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VSENSOR_HMAC_KEY="$key" \
  VSENSOR_LISTEN=127.0.0.1:0 VSENSOR_DATA_DIR="$data" "$work/bin/vsensor" >"$out/vsensor.log" 2>&1 </dev/null &
vs_pid=$!
cport=$(collector_port "$out/vsensor.log") || fail "the collector did not start"
setsid ip netns exec "$ns_s" python3 -u "$tcpends" server "$srv_ip" 7000 >"$out/server.log" 2>&1 </dev/null &
srv_pid=$!

vsensor_action() {
  ip netns exec "$ns_n" env -i VSENSOR_DATA_DIR="$data" "$work/bin/vsensor" action "$@"
}

# The CPU seconds (utime + stime) of PID and all its descendants; with a
# second argument, also writes them per thread name to that file.
tree_cpu() {
  python3 - "$1" "${2:-}" <<'PY'
import os, sys
root = int(sys.argv[1])
parent, ticks, names = {}, {}, {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        with open(f"/proc/{d}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    parent[int(d)] = int(rest[1])
    ticks[int(d)] = int(rest[11]) + int(rest[12])
def under(p):
    while p > 1:
        if p == root:
            return True
        p = parent.get(p, 0)
    return False
hz = os.sysconf("SC_CLK_TCK")
print(sum(t for p, t in ticks.items() if under(p)) / hz)
if sys.argv[2]:
    with open(sys.argv[2], "w") as f:
        for p in (p for p in ticks if under(p)):
            for t in os.listdir(f"/proc/{p}/task"):
                try:
                    with open(f"/proc/{p}/task/{t}/stat") as s:
                        head, rest = s.read().rsplit(")", 1)
                except OSError:
                    continue
                rest = rest.split()
                f.write(f"{p} {t} {head.split('(', 1)[1]} {(int(rest[11]) + int(rest[12])) / hz}\n")
PY
}

# "received dropped forwarded" of br0, from the uplink's metrics: the
# kernel's count (drops included), its drops, and what the worker read
# and passed on (the packets captured).
captured() {
  ip netns exec "$ns_n" python3 - <<'PY'
import re, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:9273/metrics", timeout=5).read().decode()
def total(name):
    return sum(float(v) for v in re.findall(r'^' + name + r'\{[^}]*interface="br0"[^}]*\} (\S+)$', text, re.M))
print(*(int(total(f"ossensor_interface_packets_{n}_total")) for n in ("received", "dropped", "forwarded")))
PY
}

# Waits until the worker has caught up: the kernel's count covers what was
# sent, and the packets read plus those dropped add up to it, for 2 s in a
# row (at most 120 s).
settle() {
  local prev="" now i
  for ((i = 0; i < 120; i++)); do
    sleep 1
    now=$(captured) || return 1
    # shellcheck disable=SC2086  # "received dropped forwarded"
    set -- $now
    if [[ $now == "$prev" ]] && (($2 + $3 >= $1)); then
      return 0
    fi
    prev=$now
  done
  echo "    (the worker had not caught up after 120 s)"
}

wait_log() { # FILE PATTERN SECONDS
  local i
  for ((i = 0; i < $3 * 20; i++)); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    kill -0 "$os_pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# One run: MODE REP. Appends a row to runs.csv.
run() {
  local mode=$1 rep=$2 dir=$out/run-$2-$1 enabled=true
  mkdir -p "$dir"
  [[ $mode == off ]] && enabled=false
  setsid ip netns exec "$ns_n" taskset -c 1 env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VSENSOR_HOSTNAME=127.0.0.1 \
    VSENSOR_PORT="$cport" VSENSOR_HMAC_KEY="$key" OSSENSOR_NETWORK_DEVICE=br0 ANTIGENA_ENABLED=$enabled \
    OSSENSOR_DEBUG=3 OSSENSOR_METRICS_ADDR=127.0.0.1:9273 OSSENSOR_CONFIG_PATH="$work/ossensor.cfg" \
    OSSENSOR_RUNTIME_DIR="$work/run" OSSENSOR_STATE_DIR="$work/state" "$work/bin/ossensor" >"$dir/ossensor.log" 2>&1 </dev/null &
  os_pid=$!
  wait_log "$dir/ossensor.log" 'filter attached' 30 || fail "run $rep $mode: the sensor did not attach its filter (see $dir/ossensor.log)"
  if [[ $enabled == true ]]; then
    wait_log "$dir/ossensor.log" 'response actions: connected' 30 || fail "run $rep $mode: no WebSocket (see $dir/ossensor.log)"
  fi
  idle_pids=()
  local i
  for i in 1 2 3; do
    setsid ip netns exec "$ns_g" python3 -u "$tcpends" idle "$srv_ip" 7000 "idle$i" >"$dir/idle$i.log" 2>&1 </dev/null &
    idle_pids+=($!)
  done
  for i in 1 2 3; do
    wait_log "$dir/idle$i.log" echoed 10 || fail "run $rep $mode: idle connection $i did not start"
  done
  local ids=() id
  if [[ $mode == action ]]; then
    id=$(vsensor_action block --src 198.18.99.1 --dst 198.18.99.2 --dport 443 --for 300) || fail "vsensor action block"
    ids+=("$id")
    wait_log "$dir/ossensor.log" "action $id applied" 10 || fail "run $rep $mode: action $id not applied"
  fi
  sleep 1
  local cpu0 cap0 cpu1 cap1
  cpu0=$(tree_cpu "$os_pid" "$dir/threads-before.txt")
  cap0=$(captured) || fail "run $rep $mode: no metrics"
  ip netns exec "$ns_g" taskset -c 0 tcpreplay -i gen0 --pps="$pps" "$pcap" >"$dir/tcpreplay.log" 2>&1 &
  local replay=$!
  if [[ $mode == action ]]; then
    sleep $((seconds / 2))
    id=$(vsensor_action quarantine --host "$gen_ip" --for 300) || fail "vsensor action quarantine"
    ids+=("$id")
  fi
  wait "$replay" || fail "run $rep $mode: tcpreplay failed (see $dir/tcpreplay.log)"
  settle
  cpu1=$(tree_cpu "$os_pid" "$dir/threads-after.txt")
  # How much of each child's memory the kernel gave as huge pages (the
  # enforcer asks for them; without them its random reads also miss the TLB).
  for i in $(pgrep -P "$os_pid"); do
    printf '%s %s %s\n' "$i" "$(tr '\0' ' ' <"/proc/$i/cmdline" | cut -c1-40)" "$(grep AnonHugePages "/proc/$i/smaps_rollup" 2>/dev/null)"
  done >"$dir/hugepages.txt"
  cap1=$(captured) || fail "run $rep $mode: no metrics"
  local sent reset=0 alive=0
  sent=$(sed -n 's/.*Successful packets: *\([0-9]*\).*/\1/p' "$dir/tcpreplay.log" | head -1)
  for i in 1 2 3; do
    grep -q '"event": "ended".*ECONNRESET' "$dir/idle$i.log" && reset=$((reset + 1))
    grep -q '"event": "ended"' "$dir/idle$i.log" || alive=$((alive + 1))
  done
  for id in "${ids[@]}"; do vsensor_action cancel "$id" >/dev/null || true; done
  stop_pid "$os_pid" 20
  os_pid=""
  for i in "${idle_pids[@]}"; do stop_pid "$i" 2; done
  idle_pids=()
  rm -rf "$data/sensors"
  # shellcheck disable=SC2086  # "received dropped forwarded", before and after
  set -- $cap0 $cap1
  local got=$(($6 - $3)) dropped=$(($5 - $2))
  echo "$rep,$mode,${sent:-0},$got,$dropped,$(python3 -c "print(round($cpu1 - $cpu0, 2))"),$reset,$alive" >>"$out/runs.csv"
  printf '    rep %s %-6s sent %s captured %s dropped by the kernel %s cpu %.2f s; idle connections reset %s, alive %s\n' \
    "$rep" "$mode" "${sent:-0}" "$got" "$dropped" "$(python3 -c "print($cpu1 - $cpu0)")" "$reset" "$alive"
}

echo "rep,mode,sent,captured,dropped,cpu_s,idle_reset,idle_alive" >"$out/runs.csv"
echo "==> $reps rounds of: ${modes[*]} ($seconds s at $pps pps each, binaries from $bin_dir)"
for ((rep = 1; rep <= reps; rep++)); do
  for ((k = 0; k < ${#modes[@]}; k++)); do
    run "${modes[$(((rep - 1 + k) % ${#modes[@]}))]}" "$rep"
  done
done

python3 - "$out/runs.csv" <<'PY' | tee "$out/summary.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = lambda xs: statistics.median(xs) if xs else float("nan")
per = {}
for r in rows:
    cap = int(r["captured"])
    per.setdefault(r["mode"], []).append({
        "sent": int(r["sent"]), "captured": cap, "dropped": int(r["dropped"]), "cpu": float(r["cpu_s"]),
        "us": float(r["cpu_s"]) * 1e6 / cap if cap else float("nan"), "reset": int(r["idle_reset"]), "alive": int(r["idle_alive"])})
off = med([x["us"] for x in per.get("off", [])])
print(f"{'mode':8} {'runs':>4} {'sent':>9} {'captured':>9} {'dropped':>8} {'CPU s':>6} {'CPU us/pkt':>10} {'x off':>6}  idle connections")
for mode in ("off", "on", "action"):
    xs = per.get(mode, [])
    if not xs:
        continue
    us = med([x["us"] for x in xs])
    idle = (f"reset in {sum(1 for x in xs if x['reset'] == 3)}/{len(xs)} runs ({sum(x['reset'] for x in xs)}/{3 * len(xs)} connections)"
            if mode == "action" else f"alive in {sum(1 for x in xs if x['alive'] == 3)}/{len(xs)} runs")
    print(f"{mode:8} {len(xs):>4} {med([x['sent'] for x in xs]):>9.0f} {med([x['captured'] for x in xs]):>9.0f} "
          f"{med([x['dropped'] for x in xs]):>8.0f} {med([x['cpu'] for x in xs]):>6.2f} {us:>10.2f} {us / off:>6.2f}  {idle}")
    print(f"{'':8} per run CPU us/pkt: " + " ".join(f"{x['us']:.2f}" for x in xs)
          + "; captured/sent: " + " ".join(f"{x['captured'] / x['sent']:.4f}" if x["sent"] else "-" for x in xs))
PY
echo "results in $out (runs.csv, summary.txt, each run's logs)"
