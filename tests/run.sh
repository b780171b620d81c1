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

step "system packages"
# Browser tests drive Debian's chromium; proxy tests run real squid and
# nginx; the scale-out tests start their own redis-server.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
[ -x /usr/sbin/squid ] || command -v squid >/dev/null || missing+=(squid)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing+=(nginx)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  # Packages must not start their services: the tests start their own
  # squid, nginx and redis-server on free ports. policy-rc.d exit 101 = "do not start".
  added_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  [ -z "$added_policy" ] || $sudo rm -f /usr/sbin/policy-rc.d
fi
echo "chromium: $(chromium --version 2>/dev/null | head -1)"
echo "squid: $(/usr/sbin/squid --version 2>/dev/null | head -1)"
echo "nginx: $(/usr/sbin/nginx -v 2>&1)"
echo "redis: $(redis-server --version 2>/dev/null | head -1)"

step "npm packages (tests/node_modules)"
if [ ! -e tests/node_modules/acorn/package.json ]; then
  npm ci --prefix tests --no-audit --no-fund
fi

step "cargo fmt --check"
cargo fmt --all -- --check

# The workspace: tandem, the test kit (tests/kit) and loadgen (benches/),
# so the benchmark driver is compiled and linted too.
step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace --all-targets
cargo test --workspace --doc

# The API docs build without a broken or private link (what `cargo doc`
# shows is the public API; tests and fuzz targets use the hidden __private).
step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

step "fuzz targets compile"
cargo check --manifest-path fuzz/Cargo.toml --bins

step "all checks passed"
