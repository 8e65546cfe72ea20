#!/usr/bin/env bash
# The sensor as one tool of ../shared/bench/capture-bench:
#
#   ../shared/bench/capture-bench -r /tmp/mixed-mtu.pcap --reps 5 tcpdump-B64k \
#       "ossensor=$PWD/benches/capture-bench-tool.sh {IF} {OUT}"
#
# Inside the harness's capture namespace it starts a collector on loopback,
# detached (setsid) so the harness measures the sensor's processes only, and
# the sensor on {IF}. On SIGINT it stops the sensor (which delivers what it
# holds), then the collector, writes every stored frame to {OUT} (pcapng) for
# the harness to count, and prints the collector's own CPU seconds on stderr.
# Variables: OSSENSOR_COMPRESSION (zstd|none), OSSENSOR_CAPTURE_BUFFER_MB and
# ANTIGENA_ENABLED (passed through); BENCH_COLLECTOR_CPUS (default 0);
# BENCH_STRACE=1 counts syscalls (see below); BENCH_KEEP=1 keeps the work
# directory.
set -uo pipefail
iface=$1
out=$2
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
bin=${OSSENSOR_BIN_DIR:-$root/target/release}
# The harness leaves loopback down in its namespace; the collector needs it.
ip link set lo up
work=$(mktemp -d /dev/shm/ossensor-bench.XXXXXX)
chmod 755 "$work"
key=bench-key-$$

# The harness measures this script's process tree and pins it to one CPU;
# the collector is not part of the sensor, so it is started from a subshell
# that exits at once (it is then nobody's child here: not measured) and on
# the generator's CPU.
(
  setsid taskset -c "${BENCH_COLLECTOR_CPUS:-0}" env -i VSENSOR_HMAC_KEY="$key" VSENSOR_LISTEN=127.0.0.1:0 \
    VSENSOR_DATA_DIR="$work/data" VSENSOR_DEBUG=0 VSENSOR_ROTATE_MB=4096 "$bin/vsensor" >"$work/vsensor.log" 2>&1 </dev/null &
  echo $! >"$work/vsensor.pid"
)
vs_pid=$(cat "$work/vsensor.pid")
port=$(collector_port "$work/vsensor.log") || exit 1

# Everything on this namespace's loopback is sensor <-> collector traffic:
# its byte count (both directions, headers included) is what the sensor
# costs in bandwidth.
lo_tx0=$(cat /sys/class/net/lo/statistics/tx_bytes)
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VSENSOR_HOSTNAME=127.0.0.1 VSENSOR_PORT="$port" \
  VSENSOR_HMAC_KEY="$key" OSSENSOR_NETWORK_DEVICE="$iface" OSSENSOR_DEBUG=1 \
  OSSENSOR_CONFIG_PATH="$work/ossensor.cfg" OSSENSOR_RUNTIME_DIR="$work/run" OSSENSOR_STATE_DIR="$work/state" \
  OSSENSOR_COMPRESSION="${OSSENSOR_COMPRESSION:-zstd}" \
  ${OSSENSOR_CAPTURE_BUFFER_MB:+OSSENSOR_CAPTURE_BUFFER_MB=$OSSENSOR_CAPTURE_BUFFER_MB} \
  ${ANTIGENA_ENABLED:+ANTIGENA_ENABLED=$ANTIGENA_ENABLED} \
  "$bin/ossensor" >"$work/ossensor.log" 2>&1 &
os_pid=$!

# BENCH_STRACE=1: count every syscall of the sensor's processes (all
# threads) from the moment its capture-worker runs, for syscalls per packet.
# Run the harness with a longer --settle so strace is attached before the
# replay starts.
st_pid=""
if [[ ${BENCH_STRACE:-0} == 1 ]]; then
  for _ in $(seq 100); do
    pgrep -P "$os_pid" -f ossensor-capture-worker >/dev/null && break
    sleep 0.02
  done
  pids=$(printf -- '-p %s ' "$os_pid" $(pgrep -P "$os_pid"))
  # shellcheck disable=SC2086  # one -p per process
  strace -c -f -qq -o "$work/strace.txt" $pids 2>"$work/strace.err" &
  st_pid=$!
fi

# shellcheck disable=SC2317  # called from the trap
finish() {
  trap - INT TERM
  # Per-process and per-thread CPU (user+system seconds since start) and
  # minor page faults, for the profile (BENCH_KEEP=1 keeps it in the harness's tool.err).
  for t in /proc/"$os_pid"/task/* $(pgrep -P "$os_pid" | sed 's|^|/proc/|; s|$|/task/*|'); do
    for s in $t; do
      [[ -r $s/stat ]] && awk -v hz="$(getconf CLK_TCK)" -v c="$(cat "$s/comm")" \
        '{sub(/.*\) /,""); printf "cpu %s %.2f s (usr %.2f sys %.2f) minflt %d\n", c, ($12+$13)/hz, $12/hz, $13/hz, $8}' "$s/stat" >&2
    done
  done
  if [[ -n $st_pid ]]; then
    kill -INT "$st_pid" 2>/dev/null
    wait "$st_pid"
    # The summary's last line: "100.00 seconds usecs/call calls errors total".
    echo "BENCHX syscalls=$(awk '$NF == "total" {print $4}' "$work/strace.txt")" >&2
    cat "$work/strace.txt" >&2
  fi
  kill -TERM "$os_pid" 2>/dev/null
  wait "$os_pid"
  lo_tx1=$(cat /sys/class/net/lo/statistics/tx_bytes)
  ticks=$(awk '{print $14 + $15}' "/proc/$vs_pid/stat" 2>/dev/null || echo 0)
  kill -TERM "$vs_pid" 2>/dev/null
  while kill -0 "$vs_pid" 2>/dev/null; do sleep 0.05; done
  find "$work/data/sensors" -name '*.pcapng' -print0 | sort -z | xargs -0 cat >"$out"
  hz=$(getconf CLK_TCK)
  echo "collector CPU seconds: $(awk -v t="$ticks" -v hz="$hz" 'BEGIN{printf "%.3f", t/hz}')" >&2
  # Read by benches/goal_table.py.
  echo "BENCHX wire_bytes=$((lo_tx1 - lo_tx0))" >&2
  grep -h 'packets: captured' "$work/ossensor.log" | tail -1 >&2
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
  exit 0
}
trap finish INT TERM
wait "$os_pid"
echo "ossensor exited early:" >&2
tail -20 "$work/ossensor.log" >&2
exit 1
