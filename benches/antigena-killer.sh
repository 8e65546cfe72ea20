#!/usr/bin/env bash
# The sensor as the "killer" of one rep of ../shared/bench/antigena/scenario
# bench (started by benches/antigena-bench.sh, which runs the collector and
# the sensor on agn-br0 for the whole bench). It prints "listening" at the
# moment it orders the block (so the harness's "after killer ready" times
# count from the operator's order: the command, the collector, the
# WebSocket push, the uplink and the worker), then one ": R" line per reset
# the worker logs (for the harness's count), and cancels the action when
# the harness stops it.
set -uo pipefail
work=${AGN_WORK:?set by benches/antigena-bench.sh}
bin=${OSSENSOR_BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
log=$work/ossensor.log
offset=$(stat -c %s "$log")
id=""
cancel() {
  [[ -n $id ]] && VSENSOR_DATA_DIR=$work/data "$bin/vsensor" action cancel "$id" >/dev/null 2>&1
  [[ -n ${tailer:-} ]] && kill "$tailer" 2>/dev/null
  exit 0
}
trap cancel TERM INT
echo "listening: ordering the block"
id=$(VSENSOR_DATA_DIR=$work/data "$bin/vsensor" action block --src "${AGN_NET:-198.19.173}.1" --dst "${AGN_NET:-198.19.173}.2" \
  --dport "${AGN_PORT:-7000}" --for 60) || exit 1
echo "action $id ordered"
# tail is the only process holding the log open; when it ends, grep and sed
# see EOF and the harness sees our output close.
tail -c +$((offset + 1)) -F "$log" 2>/dev/null > >(grep --line-buffered -E "action $id( applied|: reset)" | sed -u 's/: reset/: R reset/') &
tailer=$!
wait "$tailer"
