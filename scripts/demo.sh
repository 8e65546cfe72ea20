#!/usr/bin/env bash
# The quick start: installs what is needed, builds, and runs the main job on
# the embedded defaults: a collector (vsensor) listening on this host's
# loopback and a sensor (ossensor) capturing every interface of this host
# but loopback, storing pcapng files you can open with tshark.
#
# Runs until Ctrl-C (or for DEMO_SECONDS seconds if set), then stops both
# programs cleanly and shows what was stored.
#
#   scripts/demo.sh                      # until Ctrl-C (as root)
#   DEMO_SECONDS=20 scripts/demo.sh      # 20 seconds
#
# So that there is always something to see, even on an idle host, the demo
# also makes a little traffic of its own (DEMO_TRAFFIC=0 turns it off): a
# network namespace `ossensor-demo` joined to this host by a veth `osdemo0`
# (198.18.99.1/30, a benchmark-range address, nothing leaves the machine),
# which pings this host and fetches a page from it. Both are removed at the
# end. The sensor captures osdemo0 like any other interface.
#
# Settings it chooses (everything else is the programs' default):
#   collector: VSENSOR_LISTEN=127.0.0.1:${DEMO_PORT:-443}, data in
#              /var/lib/vsensor (the default), a random key kept in
#              /var/lib/vsensor/demo.key (0600)
#   sensor:    VSENSOR_HOSTNAME=127.0.0.1, the same port and key;
#              the generated config file goes to /etc/darktrace/ossensor.cfg
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "demo.sh: run as root (the sensor drops its own privileges per process)" >&2
  exit 1
fi
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

scripts/deps.sh --run
echo "==> building (release)"
cargo build --release --workspace --bins
bin=target/release

data=/var/lib/vsensor
port=${DEMO_PORT:-443}
mkdir -p "$data"
chmod 0700 "$data"
if [[ ! -s $data/demo.key ]]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$data/demo.key")
fi
key=$(cat "$data/demo.key")
logs=$(mktemp -d /tmp/ossensor-demo.XXXXXX)

vs_pid=""
os_pid=""
traffic_pids=()
stop() {
  trap - INT TERM EXIT
  for p in "${traffic_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns delete ossensor-demo 2>/dev/null || true
  echo
  echo "==> stopping the sensor, then the collector"
  for pid in "$os_pid" "$vs_pid"; do
    if [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null; then
      wait "$pid" || true
    fi
  done
  echo "==> stored pcapng files"
  find "$data/sensors" -name '*.pcapng' -printf '%p  %s bytes\n' 2>/dev/null | sort || true
  newest=$(find "$data/sensors" -name '*.pcapng' -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2-)
  if [[ -n $newest ]]; then
    echo "==> tshark -r $newest (first 10 packets)"
    tshark -n -r "$newest" 2>/dev/null | head -10 || true
    echo "    $(tshark -n -r "$newest" 2>/dev/null | wc -l) packets in that file"
  fi
  echo "logs: $logs/vsensor.log $logs/ossensor.log"
}
trap stop INT TERM EXIT

echo "==> starting the collector on 127.0.0.1:$port (data in $data)"
VSENSOR_HMAC_KEY=$key VSENSOR_LISTEN=127.0.0.1:$port "$bin/vsensor" >"$logs/vsensor.log" 2>&1 &
vs_pid=$!
for _ in $(seq 100); do
  grep -q 'vsensor: listening on' "$logs/vsensor.log" && break
  if ! kill -0 "$vs_pid" 2>/dev/null; then cat "$logs/vsensor.log"; exit 1; fi
  sleep 0.1
done

if [[ ${DEMO_TRAFFIC:-1} != 0 ]]; then
  echo "==> demo traffic: namespace ossensor-demo behind veth osdemo0 (198.18.99.1/30)"
  ip netns delete ossensor-demo 2>/dev/null || true
  ip netns add ossensor-demo
  ip link add osdemo0 type veth peer name osdemo1 netns ossensor-demo
  ip addr add 198.18.99.1/30 dev osdemo0
  ip link set osdemo0 up
  ip -n ossensor-demo addr add 198.18.99.2/30 dev osdemo1
  ip -n ossensor-demo link set osdemo1 up
  ip -n ossensor-demo link set lo up
  www=$(mktemp -d /tmp/ossensor-demo-www.XXXXXX)
  echo "<html><body>hello from the ossensor demo</body></html>" >"$www/index.html"
  # The web server runs inside the namespace (it has no route to any
  # resolver, so its start-up name lookup never leaves the machine).
  ip netns exec ossensor-demo python3 -m http.server 8099 --bind 198.18.99.2 --directory "$www" >"$logs/http.log" 2>&1 &
  traffic_pids+=($!)
  ip netns exec ossensor-demo ping -q -n -i 0.5 198.18.99.1 >/dev/null 2>&1 &
  traffic_pids+=($!)
  bash -c 'while sleep 2; do curl -s --noproxy "*" -o /dev/null http://198.18.99.2:8099/; done' &
  traffic_pids+=($!)
fi

echo "==> starting the sensor on this host's interfaces (all but loopback)"
VSENSOR_HOSTNAME=127.0.0.1 VSENSOR_PORT=$port VSENSOR_HMAC_KEY=$key \
  "$bin/ossensor" >"$logs/ossensor.log" 2>&1 &
os_pid=$!
sleep 2
cat "$logs/ossensor.log"
if ! kill -0 "$os_pid" 2>/dev/null; then exit 1; fi

if [[ -n ${DEMO_SECONDS:-} ]]; then
  echo "==> capturing for $DEMO_SECONDS s"
  sleep "$DEMO_SECONDS"
else
  echo "==> capturing; press Ctrl-C to stop (log: tail -f $logs/ossensor.log)"
  wait "$os_pid" || true
fi
