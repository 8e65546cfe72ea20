# shellcheck shell=bash
# Sourced by the bench scripts.

# Prints the port a collector (vsensor, VSENSOR_LISTEN=...:0) listens on,
# from its log file, waiting up to 10 s; prints the log and fails if none.
collector_port() {
  local log=$1 port=""
  for _ in $(seq 200); do
    port=$(sed -n 's/.*vsensor: listening on [0-9.]*:\([0-9]*\).*/\1/p' "$log")
    [[ -n $port ]] && { echo "$port"; return 0; }
    sleep 0.05
  done
  cat "$log" >&2
  return 1
}
