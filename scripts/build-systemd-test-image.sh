#!/bin/sh
# Builds the image tests/packages.rs boots the packages in: a Debian bookworm
# (minbase) with systemd as PID 1, made with debootstrap and imported into
# podman (no image registry is needed). About 70 s; it is kept and reused:
#   localhost/ossensor-systemd-test:bookworm
# The image carries the SHA-256 of this script as a label, so the test can
# tell an image made by an older version of it. FORCE=1 rebuilds anyway.
set -eu
cd "$(dirname "$0")/.."

image=localhost/ossensor-systemd-test:bookworm
label=ossensor.image-script-sha256
sum=$(sha256sum scripts/build-systemd-test-image.sh | cut -d' ' -f1)
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/packaging/containers.conf}"

if [ "${FORCE:-0}" != 1 ] && [ "$(podman image inspect --format "{{index .Labels \"$label\"}}" "$image" 2>/dev/null || true)" = "$sum" ]; then
    echo "build-systemd-test-image: $image is up to date"
    exit 0
fi

# The mirror this machine's apt uses (deb822 first, then the one-line form).
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n1 || true)
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /var/tmp/ossensor-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT INT TERM

# systemd as init, dbus for systemctl; nothing else: the packages must bring
# (or need) nothing more.
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2
    rm -f "$rootfs.log"
    exit 1
}
rm -f "$rootfs.log"
# Inside the container apt uses the same mirror (for apt-get purge it needs none).
echo "deb $mirror bookworm main" >"$rootfs/etc/apt/sources.list"
# No getty in a container. The whole folder goes: systemctl removes an empty
# .wants folder when it touches the links, and the package test compares
# the file tree before and after.
rm -rf "$rootfs/etc/systemd/system/getty.target.wants"

old=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
tar -C "$rootfs" -c . | podman import \
    --change 'CMD ["/sbin/init"]' \
    --change "LABEL $label=$sum" \
    - "$image" >/dev/null
# The image this one replaces would stay behind untagged (238 MB).
if [ -n "$old" ]; then
    podman rmi "$old" >/dev/null 2>&1 || true
fi
echo "build-systemd-test-image: built $image"
