#!/usr/bin/env bash
# The whole test suite, as CI runs it: dependencies, build, tests, fuzz
# targets' build, shell lint. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# rustup's default location, when the environment does not have it on PATH.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

step "dependencies"
scripts/deps.sh

step "build the binaries the integration tests drive"
cargo build --workspace --bins

# 2 cores: two test threads per test binary; the namespace tests are mostly
# waiting on real processes, so this keeps them fast without starving them.
step "tests"
cargo test --workspace -- --test-threads=2

step "fuzz targets still build (stable, no sanitizer)"
cargo build --manifest-path fuzz/Cargo.toml

step "shellcheck"
if command -v shellcheck >/dev/null 2>&1; then
  shellcheck scripts/*.sh scripts/bench scripts/bench-latency benches/*.sh .ci/run
else
  echo "shellcheck not installed; skipped (scripts/deps.sh installs it)"
fi

step "all checks passed"
