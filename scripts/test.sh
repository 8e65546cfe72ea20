#!/usr/bin/env bash
# The whole test suite, as CI runs it: dependencies, lint (shell,
# Dockerfiles, manifests), build, images and packages, tests, fuzz targets'
# build. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# rustup's default location, when the environment does not have it on PATH.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

step "dependencies"
scripts/deps.sh

# hadolint, kubernetes-validate and PyYAML (the DaemonSet-to-Pod converter
# the container tests run) from a venv of their own, first on PATH.
step "python tools"
PATH="$(scripts/tools.sh):$PATH"
export PATH
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/packaging/containers.conf}"

step "lint: Rust (format, clippy, the sans-IO core), shell scripts, Dockerfiles, Kubernetes manifests"
cargo fmt --check
cargo clippy --workspace --all-targets -- -D warnings
scripts/check-sans-io.sh
shellcheck scripts/*.sh scripts/bench scripts/bench-latency benches/*.sh .ci/run packaging/deb/*/*
shellcheck -s sh packaging/rpm/*.sh
hadolint Dockerfile vsensor/Dockerfile
kubernetes-validate --strict -k 1.30.0 packaging/kubernetes/*.yaml

step "build the binaries the integration tests drive"
cargo build --workspace --bins

# Static binaries → images (tests/container.rs) and packages
# (tests/packages.rs); the systemd image the packages boot in is reused when
# current.
step "images, packages, the systemd test image"
scripts/build-images.sh
scripts/build-packages.sh
scripts/build-systemd-test-image.sh

# 2 cores: two test threads (the integration tests are one binary,
# tests/suite.rs); the namespace tests are mostly
# waiting on real processes, so this keeps them fast without starving them.
step "tests"
cargo test --workspace -- --test-threads=2

step "fuzz targets still build (stable, no sanitizer)"
cargo build --manifest-path fuzz/Cargo.toml

step "all checks passed"
