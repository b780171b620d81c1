#!/usr/bin/env bash
# Runs every check tandem has: formatting, clippy, all tests, and a build of
# the fuzz targets. Installs what the tests need when it is missing.
# Usage: bash tests/run.sh     (from anywhere; CI runs it in a fresh clone)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

# Many concurrent test connections: raise the open-file limit as far as allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

step "toolchain"
cargo --version
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test"
cargo test --all-targets
cargo test --doc

step "fuzz targets compile"
cargo check --manifest-path fuzz/Cargo.toml --bins

step "all checks passed"
