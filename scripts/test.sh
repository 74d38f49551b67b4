#!/bin/sh
# The whole test suite: host setup, lints, unit tests (no root needed) and the integration tests
# against real daemons, containers and the real LXD client (root). Run as root for the full suite;
# without root the integration tests say loudly that they did not run.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
    sh scripts/setup-host.sh
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
