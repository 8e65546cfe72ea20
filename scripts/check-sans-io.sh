#!/usr/bin/env bash
# The sans-IO core (shared/src) takes time, randomness and bytes as inputs
# and returns bytes, events and deadlines: outside its tests (each file's
# `#[cfg(test)]` part, at its end) it never opens a file, a socket or a
# process's stdin, reads the clock or the environment, draws random
# numbers, calls libc or libpcap, starts threads, or keeps global state.
# Those live in host/ (and libpcap/). Exits 1 naming each line that does.
# It also checks that neither the core nor the collector depends on
# libpcap outside their tests (the collector's fleet-filter tests compile
# filters with it; the collector itself never calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='std::fs|std::net::(TcpStream|TcpListener|UdpSocket)|std::os::unix::net|SystemTime::now|Instant::now|std::env|stdin\(\)|libc::|nix::|pcap::|syslog::|getrandom|std::thread|thread_local!|static mut|^\s*(pub(\([a-z]+\))? )?static [A-Z_]+: |OnceLock|Mutex|AtomicU|AtomicBool'
status=0
while IFS= read -r -d '' f; do
  if hits=$(awk '/^#\[cfg\(test\)\]/ { exit } { printf "%d:%s\n", NR, $0 }' "$f" | grep -E "$forbidden" | grep -vE '^[0-9]+:\s*//'); then
    while IFS= read -r h; do
      echo "check-sans-io: $f:$h"
    done <<<"$hits"
    status=1
  fi
done < <(find shared/src -name '*.rs' -print0)
for crate in ossensor-shared vsensor; do
  if cargo tree --offline -q -p "$crate" -e normal,build --prefix none | grep -E '^(pcap|ossensor-libpcap) '; then
    echo "check-sans-io: $crate depends on libpcap outside its tests"
    status=1
  fi
done
if ((status == 0)); then
  echo "check-sans-io: shared/src does no I/O, reads no clock, keeps no global state; shared and vsensor do not link libpcap"
fi
exit "$status"
