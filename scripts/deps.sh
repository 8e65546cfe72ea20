#!/usr/bin/env bash
# Installs what the build and the test suite need, on Debian 12 as root.
# Idempotent: apt-get runs only when a package is missing.
#   scripts/deps.sh          everything the test suite uses
#   scripts/deps.sh --run    only what building and running the programs
#                            needs (the quick start, scripts/demo.sh)
set -euo pipefail

RUN_PACKAGES=(
  build-essential pkg-config libpcap-dev   # build: cc for C deps, libpcap to link
  iproute2 procps iputils-ping curl        # the demo's namespace and its traffic
  tshark                                   # reading the stored pcapng files
)

# Besides RUN_PACKAGES:
TEST_PACKAGES=(
  util-linux libcap2-bin                   # setpriv / capabilities
  tcpdump tshark                           # reference captures, pcapng readers
  iperf3 curl dnsmasq-base bind9-dnsutils socat python3 tcpreplay  # real traffic
  ethtool                                  # offload settings in capture tests
  rsyslog                                  # audit trail to syslog (not started here)
  shellcheck                               # lints scripts/
  chromium                                 # the status page in a real browser (headless)
  nftables                                 # NAT in the container-host topology
  podman buildah runc busybox-static       # images: build and run (runc: crun fails here)
  catatonit libdbus-1-dev                  # podman kube play's pause; libdbus-1.a for static libpcap
  debootstrap rpm                          # systemd test rootfs; .rpm inspection
  python3-venv                             # scripts/tools.sh: hadolint, kubernetes-validate
  dpkg-dev binutils file                   # cargo-deb (dpkg-shlibdeps), strip, static checks
)

case ${1:-} in
  --run) PACKAGES=("${RUN_PACKAGES[@]}") ;;
  "") PACKAGES=("${RUN_PACKAGES[@]}" "${TEST_PACKAGES[@]}") ;;
  *) echo "deps.sh: unknown argument ${1}: use --run or nothing" >&2; exit 2 ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps.sh: missing packages: ${missing[*]}; run this script as root" >&2
    exit 1
  fi
  echo "deps.sh: installing ${missing[*]}"
  # Keep package scripts from starting services (rsyslog) during install.
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  cleanup() { if ((made_policy)); then rm -f /usr/sbin/policy-rc.d; fi; }
  trap cleanup EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "deps.sh: all ${#PACKAGES[@]} packages present"
fi

if ! command -v cargo >/dev/null 2>&1; then
  for d in "${CARGO_HOME:-$HOME/.cargo}/bin" /usr/local/cargo/bin; do
    if [[ -x "$d/cargo" ]]; then
      echo "deps.sh: cargo is in $d but not on PATH: export PATH=\"$d:\$PATH\"" >&2
      exit 1
    fi
  done
  cat >&2 <<'MSG'
deps.sh: cargo not found. Install Rust (stable) with rustup:
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . "$HOME/.cargo/env"
MSG
  exit 1
fi
echo "deps.sh: $(cargo --version)"

if [[ ${1:-} == --run ]]; then
  exit 0
fi

# The packagers (.deb, .rpm), pinned; built once into ~/.cargo/bin.
CARGO_TOOLS=(cargo-deb@3.8.0 cargo-generate-rpm@0.21.1)
for tool in "${CARGO_TOOLS[@]}"; do
  name=${tool%@*} version=${tool#*@}
  if ! "$name" --version 2>/dev/null | grep -qF "$version"; then
    echo "deps.sh: cargo install $tool (a few minutes, once)"
    cargo install --quiet --locked "$tool"
  fi
done
