#!/usr/bin/env bash
# Host protection: the peak memory of the sensor's processes while the
# collector is away, at the highest rate the bench harness reaches.
#
#   sudo benches/rss-under-outage.sh                 # 60 s outage, defaults
#   sudo benches/rss-under-outage.sh --seconds 20 --spool-mb 16
#
# Two namespaces it makes (rss-gen-PID, rss-cap-PID) joined by a veth with
# no addresses (as ../shared/bench/capture-bench does). In rss-cap: a
# collector on loopback and the sensor (release build) on cap0, pinned to
# CPU 1. Once the sensor registered, the collector is stopped; tcpreplay
# -K --topspeed replays the reference traffic (mixed-mtu.pcap, the bench's,
# made if missing) in a loop from gen0 on CPU 0 for SECONDS. Each second,
# and at the end, it reads VmHWM (peak resident set) and VmRSS of the
# supervisor, the capture-worker and the uplink from /proc. Then the
# collector comes back on the same port, the sensor delivers what it
# spooled and stops, and the script prints each process's peak, their sum,
# the bound docs/reliability.md states (OSSENSOR_SPOOL_MB + the rings +
# 128 MiB), and the sensor's packet accounting.
#
# Variables: OSSENSOR_BIN_DIR (default target/release), BENCH_PCAP (default
# /tmp/ossensor-bench-traffic/mixed-mtu.pcap), OSSENSOR_CAPTURE_BUFFER_MB
# (passed on; default 64). Output: also kept in OUT (default
# /tmp/ossensor-rss-YYYYmmddTHHMMSS).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
bin=${OSSENSOR_BIN_DIR:-$root/target/release}
pcap=${BENCH_PCAP:-/tmp/ossensor-bench-traffic/mixed-mtu.pcap}
seconds=60
spool_mb=64
ring_mb=${OSSENSOR_CAPTURE_BUFFER_MB:-64}
# What the bound allows besides the spool and the rings (see
# docs/reliability.md, "Host protection").
allowance_mb=128
out=/tmp/ossensor-rss-$(date -u +%Y%m%dT%H%M%S)
while (($#)); do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --spool-mb) spool_mb=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: benches/rss-under-outage.sh [--seconds N] [--spool-mb N] [--out DIR]" >&2; exit 2 ;;
  esac
done
for b in ip tcpreplay taskset timeout; do
  command -v "$b" >/dev/null || { echo "needs $b (scripts/deps.sh)" >&2; exit 1; }
done
[[ -x $bin/ossensor && -x $bin/vsensor ]] || { echo "no release binaries in $bin: cargo build --release --workspace --bins" >&2; exit 1; }
if [[ ! -s $pcap ]]; then
  mkdir -p "$(dirname "$pcap")"
  echo "==> recording the reference traffic $pcap"
  "$root/../shared/bench/traffic/make-traffic.sh" "$pcap" mtu >/dev/null
fi
mkdir -p "$out"
work=$(mktemp -d /dev/shm/ossensor-rss.XXXXXX)
chmod 755 "$work"
ns_g=rss-gen-$$
ns_c=rss-cap-$$
key=rss-key-$$
os_pid=""
vs_pid=""

cleanup() {
  # Only what this script started, by pid; then its namespaces.
  [[ -n $os_pid ]] && kill -TERM "$os_pid" 2>/dev/null && wait "$os_pid" 2>/dev/null
  [[ -n $vs_pid ]] && kill -TERM "$vs_pid" 2>/dev/null && wait "$vs_pid" 2>/dev/null
  ip netns delete "$ns_g" 2>/dev/null || true
  ip netns delete "$ns_c" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$ns_g"
ip netns add "$ns_c"
for ns in "$ns_g" "$ns_c"; do
  ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$ns" link set lo up
done
ip -n "$ns_g" link add gen0 mtu 65535 type veth peer name cap0 mtu 65535 netns "$ns_c"
ip -n "$ns_g" link set gen0 up
ip -n "$ns_c" link set cap0 up

start_collector() {
  ip netns exec "$ns_c" taskset -c 0 env -i VSENSOR_HMAC_KEY="$key" VSENSOR_LISTEN="127.0.0.1:$1" \
    VSENSOR_DATA_DIR="$work/data" VSENSOR_DEBUG=0 VSENSOR_ROTATE_MB=4096 "$bin/vsensor" >>"$work/vsensor.log" 2>&1 </dev/null &
  vs_pid=$!
}
start_collector 0
port=$(collector_port "$work/vsensor.log")

ip netns exec "$ns_c" taskset -c 1 env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VSENSOR_HOSTNAME=127.0.0.1 VSENSOR_PORT="$port" \
  VSENSOR_HMAC_KEY="$key" OSSENSOR_NETWORK_DEVICE=cap0 OSSENSOR_DEBUG=1 OSSENSOR_SPOOL_MB="$spool_mb" \
  OSSENSOR_CAPTURE_BUFFER_MB="$ring_mb" OSSENSOR_CONFIG_PATH="$work/ossensor.cfg" OSSENSOR_RUNTIME_DIR="$work/run" OSSENSOR_STATE_DIR="$work/state" \
  "$bin/ossensor" >"$work/ossensor.log" 2>&1 </dev/null &
os_pid=$!
for _ in $(seq 300); do
  grep -q 'registered with the collector' "$work/ossensor.log" && grep -q 'filter attached' "$work/ossensor.log" && break
  sleep 0.1
done
grep -q 'filter attached' "$work/ossensor.log" || { cat "$work/ossensor.log" >&2; exit 1; }
sleep 1

# pid → role, from the supervisor's "started … (pid N)" lines (the last
# start of each role: a restarted child replaces its predecessor).
role_of() {
  case $(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) in
    *ossensor-capture-worker*) echo worker ;;
    *ossensor-uplink*) echo uplink ;;
    *) echo supervisor ;;
  esac
}
# shellcheck disable=SC2046  # one word per pid
procs() { echo "$os_pid" $(pgrep -P "$os_pid" || true); }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

idle=""
for p in $(procs); do idle+="$(role_of "$p")=$(( $(status_kib "$p" VmHWM) / 1024 )) "; done

echo "==> collector stopped; tcpreplay --topspeed for ${seconds} s"
kill -TERM "$vs_pid"
wait "$vs_pid" || true
vs_pid=""
ip netns exec "$ns_g" taskset -c 0 timeout -s INT "$((seconds + 10))" \
  tcpreplay -i gen0 -K --topspeed --loop=0 --duration="$seconds" "$pcap" >"$work/tcpreplay.log" 2>&1 &
tr_pid=$!
: >"$out/samples.tsv"
declare -A peak
t=0
while kill -0 "$tr_pid" 2>/dev/null; do
  sleep 1
  t=$((t + 1))
  line="$t"
  for p in $(procs); do
    r=$(role_of "$p")
    hwm=$(status_kib "$p" VmHWM)
    line+=$'\t'"$r:$p rss=$(( $(status_kib "$p" VmRSS) / 1024 )) hwm=$((hwm / 1024))"
    key_p="$r:$p"
    (( hwm > ${peak[$key_p]:-0} )) && peak[$key_p]=$hwm
  done
  echo "$line" >>"$out/samples.tsv"
done
wait "$tr_pid" || true
# The peaks at the end of the outage (VmHWM only grows).
for p in $(procs); do
  hwm=$(status_kib "$p" VmHWM)
  key_p="$(role_of "$p"):$p"
  (( hwm > ${peak[$key_p]:-0} )) && peak[$key_p]=$hwm
done
acct_outage=$(grep -h 'packets: captured' "$work/ossensor.log" | tail -1 | sed 's/.*packets:/packets:/')
kdrop=$(grep -h 'capture cap0: received' "$work/ossensor.log" | tail -1 | sed 's/.*capture cap0:/cap0:/')

echo "==> collector back on port $port; the sensor delivers its spool"
start_collector "$port"
sleep 15
kill -TERM "$os_pid"
wait "$os_pid" || true
os_pid=""
kill -TERM "$vs_pid"
wait "$vs_pid" || true
vs_pid=""

rings_kib=$(sed -n 's/.*two rings of \([0-9]*\) KiB.*/\1/p' "$work/ossensor.log" | head -1)
rings_mb=$(( 2 * ${rings_kib:-0} / 1024 ))
bound_mb=$((spool_mb + rings_mb + allowance_mb))
sum=0
{
  echo "rss under a ${seconds} s collector outage at top speed ($(date -u +%FT%TZ), $(git -C "$root" log -1 --format=%h))"
  echo "traffic: $(grep -E 'Actual|Rated' "$work/tcpreplay.log" | tr -s ' ' | tr '\n' ' ')"
  echo "idle peaks before traffic (MiB): $idle"
  for k in "${!peak[@]}"; do
    printf 'peak %-18s %6d MiB\n' "$k" $(( ${peak[$k]} / 1024 ))
  done | sort
  for k in "${!peak[@]}"; do sum=$((sum + ${peak[$k]})); done
  echo "sum of the peaks: $((sum / 1024)) MiB"
  echo "bound: spool $spool_mb + rings $rings_mb (two of ${rings_kib} KiB) + allowance $allowance_mb = $bound_mb MiB: $([[ $((sum / 1024)) -le $bound_mb ]] && echo under || echo OVER)"
  echo "at the end of the outage: $acct_outage"
  echo "kernel: $kdrop"
  echo "after recovery: $(grep -h 'packets: captured' "$work/ossensor.log" | tail -1 | sed 's/.*packets:/packets:/')"
  echo "spool overflow lines: $(grep -c 'spool full' "$work/ossensor.log" || true)"
} | tee "$out/summary.txt"
cp "$work/ossensor.log" "$out/"
echo "results in $out"
