#!/usr/bin/env bash
# Response actions beside tcpkill, in the same run, on the connection-reset
# scenario of ../shared/bench/antigena (namespaces agn-*, 198.19.173.0/24,
# a bridge agn-br0 in the root namespace that the sensor watches):
#
#   sudo benches/antigena-bench.sh [REPS=10] [WINDOW=6] [IDLE_SECS=10]
#
# 1. scenario bench-tcpkill REPS WINDOW: tcpkill's baseline.
# 2. A collector on loopback and ossensor on agn-br0 (ANTIGENA_ENABLED, level
#    3), then scenario bench ossensor REPS WINDOW with benches/antigena-killer.sh
#    as the killer: it orders a block of 198.19.173.1 -> 198.19.173.2:7000
#    through `vsensor action` and cancels it at the end of the rep.
# 3. scenario bench-idle IDLE_SECS with the same killer (idle connections).
# Then prints both summaries and, for the sensor, the time from the order
# and from the worker applying the action to each end's reset
# (benches/antigena_summary.py). Needs tcpkill (Debian: dsniff).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
scenario=${ANTIGENA_SCENARIO:-$root/../shared/bench/antigena/scenario}
reps=${1:-10}
window=${2:-6}
idle_secs=${3:-10}
runs=/tmp/agn-runs
command -v tcpkill >/dev/null || { echo "antigena-bench: tcpkill missing (apt-get install dsniff)" >&2; exit 1; }
[[ -x $scenario ]] || { echo "antigena-bench: no scenario at $scenario (set ANTIGENA_SCENARIO)" >&2; exit 1; }
cargo build --release --workspace --bins
bin=$root/target/release

echo "==> tcpkill"
"$scenario" bench-tcpkill "$reps" "$window" >/dev/null

work=$(mktemp -d /tmp/ossensor-agn.XXXXXX)
chmod 755 "$work"
export AGN_WORK=$work
key=agn-bench-key-$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
}
trap cleanup EXIT
env -i VSENSOR_HMAC_KEY="$key" VSENSOR_LISTEN=127.0.0.1:0 VSENSOR_DATA_DIR="$work/data" \
  "$bin/vsensor" >"$work/vsensor.log" 2>&1 &
pids+=($!)
port=$(collector_port "$work/vsensor.log")
# The sensor waits for agn-br0, which each scenario bench creates and
# deletes; it follows the interface through netlink.
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VSENSOR_HOSTNAME=127.0.0.1 VSENSOR_PORT="$port" \
  VSENSOR_HMAC_KEY="$key" OSSENSOR_NETWORK_DEVICE=agn-br0 NETWORK_DEVICE_ANY=1 OSSENSOR_DEBUG=3 ANTIGENA_TIME_PERIOD=1 \
  OSSENSOR_CONFIG_PATH="$work/ossensor.cfg" OSSENSOR_RUNTIME_DIR="$work/run" OSSENSOR_STATE_DIR="$work/state" \
  "$bin/ossensor" >"$work/ossensor.log" 2>&1 &
pids+=($!)
sleep 1
kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/ossensor.log" >&2; exit 1; }

echo "==> ossensor"
"$scenario" bench ossensor "$reps" "$window" -- "$root/benches/antigena-killer.sh" >/dev/null
echo "==> ossensor, idle connections"
"$scenario" bench-idle "$idle_secs" -- "$root/benches/antigena-killer.sh" >/dev/null

cp "$work/ossensor.log" "$runs/ossensor/ossensor.log"
echo
echo "== tcpkill ($runs/tcpkill/summary.txt)"
grep -v '^{' "$runs/tcpkill/summary.txt"
echo
echo "== ossensor ($runs/ossensor/summary.txt)"
grep -v '^{' "$runs/ossensor/summary.txt"
echo
python3 "$root/benches/antigena_summary.py" "$runs/ossensor" "$runs/idle-antigena-killer.sh" "$work/ossensor.log"
