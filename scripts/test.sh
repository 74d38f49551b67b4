#!/bin/sh
# The whole test suite: host setup, lints, unit tests (no root needed) and the integration tests
# against real daemons, containers and the real LXD client (root). Run as root for the full suite;
# without root the integration tests say loudly that they did not run.
set -eu
cd "$(dirname "$0")/.."
ZFS_PID=""
if [ "$(id -u)" = 0 ]; then
    sh scripts/setup-host.sh
    # ZFS here is zfs-fuse: its daemon must run for the zfs pools of the tests. Start it unless
    # one already answers, and stop only the one started here (by its pid) when done.
    if command -v zfs-fuse >/dev/null 2>&1 && ! zpool list >/dev/null 2>&1; then
        zfs-fuse --no-daemon --no-kstat-mount </dev/null >/dev/null 2>&1 &
        ZFS_PID=$!
        trap 'kill "$ZFS_PID" 2>/dev/null; wait "$ZFS_PID" 2>/dev/null || true' EXIT INT TERM
        i=0
        until zpool list >/dev/null 2>&1 || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
    fi
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
