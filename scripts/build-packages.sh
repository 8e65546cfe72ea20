#!/bin/sh
# Builds the sensor's and the collector's packages from the static binaries
# of scripts/build-static.sh, without building anything again:
#   target/packages/ossensor_VERSION-1_amd64.deb, ossensor-VERSION-1.x86_64.rpm
#   target/packages/vsensor_VERSION-1_amd64.deb,  vsensor-VERSION-1.x86_64.rpm
# VERSION is the crates' version. Needs cargo-deb and cargo-generate-rpm:
#   cargo install --locked cargo-deb cargo-generate-rpm
# The systemd units are checked first: systemd-analyze verify exits 0 on
# errors, so anything it prints fails the build.
set -eu
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
static=target/static/$target/release
out=target/packages
# Both tools read "target/release/" in the manifests as
# $CARGO_TARGET_DIR/$target/release: stripped copies of the static binaries.
stage=$out/stage
bins="ossensor ossensor-capture-worker ossensor-uplink vsensor"

for tool in cargo-deb cargo-generate-rpm; do
    if ! command -v "$tool" >/dev/null; then
        echo "build-packages: $tool is missing: cargo install --locked cargo-deb cargo-generate-rpm" >&2
        exit 1
    fi
done
for b in $bins; do
    if [ ! -x "$static/$b" ] || ! file -b "$static/$b" | grep -q 'static'; then
        echo "build-packages: no static $static/$b: run scripts/build-static.sh first" >&2
        exit 1
    fi
done

# The units, in a root holding the binaries where the packages put them
# and this host's own units (the targets they refer to).
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT INT TERM
mkdir -p "$root/usr/bin" "$root/etc/systemd/system" "$root/lib/systemd"
cp -a /lib/systemd/system "$root/lib/systemd/"
for b in $bins; do
    cp "$static/$b" "$root/usr/bin/$b"
done
cp packaging/systemd/ossensor.service packaging/systemd/vsensor.service "$root/etc/systemd/system/"
for unit in ossensor.service vsensor.service; do
    if ! systemd-analyze verify --root="$root" "$unit" >"$root/verify.log" 2>&1 || [ -s "$root/verify.log" ]; then
        echo "build-packages: systemd-analyze verify $unit:" >&2
        cat "$root/verify.log" >&2
        exit 1
    fi
done

rm -rf "$out"
mkdir -p "$stage/$target/release"
for b in $bins; do
    # Debug information is most of the size (debug = 1 in the release profile).
    strip --strip-debug -o "$stage/$target/release/$b" "$static/$b"
done

export CARGO_TARGET_DIR="$stage"
cargo deb --no-build --target "$target" -p ossensor-supervisor --output "$out/" --quiet
cargo deb --no-build --target "$target" -p vsensor --output "$out/" --quiet
cargo generate-rpm --target "$target" -p supervisor --output "$out/"
cargo generate-rpm --target "$target" -p vsensor --output "$out/"
rm -rf "$stage"
ls -l "$out"
