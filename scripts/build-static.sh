#!/bin/sh
# Builds the four binaries fully static (glibc static-pie, libpcap.a), for the
# container images and the packages:
#   target/static/x86_64-unknown-linux-gnu/release/{ossensor,ossensor-capture-worker,ossensor-uplink,vsensor}
# Its own target dir, so it never waits on the lock of a normal build.
# Needs libpcap-dev and libdbus-1-dev (their .a files); libpcap/build.rs adds
# what libpcap.a needs.
set -eu
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
out=target/static/$target/release
bins="ossensor ossensor-capture-worker ossensor-uplink vsensor"

# Shipped binaries: no debug info (the workspace's release profile keeps it for
# profiling; it would triple the image), symbols kept for backtraces.
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=target/static \
    CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    cargo build --release --locked --target "$target" --workspace --bins

for b in $bins; do
    # A dynamic binary has an interpreter (PT_INTERP); ldd says "not a dynamic
    # executable" (or "statically linked") for a static one.
    if ! file "$out/$b" | grep -q 'static'; then
        echo "build-static: $out/$b is not static: $(file -b "$out/$b")" >&2
        exit 1
    fi
    if ldd "$out/$b" >/dev/null 2>&1 && ! ldd "$out/$b" 2>&1 | grep -q 'statically linked'; then
        echo "build-static: $out/$b has shared libraries:" >&2
        ldd "$out/$b" >&2
        exit 1
    fi
done
# They run: the two commands print their version, the children refuse to be
# started by hand (they read their configuration from the supervisor).
"$out/ossensor" --version
"$out/vsensor" --version
for b in ossensor-capture-worker ossensor-uplink; do
    if ! "$out/$b" </dev/null 2>&1 | grep -q 'started by the ossensor supervisor'; then
        echo "build-static: $out/$b does not run" >&2
        exit 1
    fi
done
echo "build-static: $out/{$(echo "$bins" | tr ' ' ',')} are static"
