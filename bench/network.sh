#!/bin/sh
# Time from `lxc start` to the container holding an IPv4 lease on a managed bridge (busybox
# image, udhcpc in its rcS), median of N runs. Starts its own daemon in a scratch LXD_DIR with its
# own bridge, so it never touches a real LXD or its lxdbr0; everything is removed at the end.
#
#   bench/network.sh [N]            (default N=11; run as root after `cargo build --bins`)
#   LXD=path/to/lxd LXC=path/to/lxc bench/network.sh
set -eu
N=${1:-11}
cd "$(dirname "$0")/.."
ROOT=$(pwd)
[ "$(id -u)" = 0 ] || { echo "bench/network.sh: run as root" >&2; exit 1; }
pick() { [ -x "$ROOT/target/release/$1" ] && echo "$ROOT/target/release/$1" || echo "$ROOT/target/debug/$1"; }
LXD=${LXD:-$(pick lxd)}
LXC=${LXC:-/usr/bin/lxc}
[ -x "$LXC" ] || LXC=$(pick lxc)
export LXD_DIR=/tmp/lxbn-$$
export HOME=$LXD_DIR/home LXD_CONF=$LXD_DIR/home/lxc
BR=lxbn$(( $$ % 100000 ))
C=bn$$
mkdir -p "$HOME"
cleanup() {
    "$LXC" delete -f "$C" >/dev/null 2>&1 || true
    [ -n "${PID:-}" ] && kill -PWR "$PID" 2>/dev/null && while kill -0 "$PID" 2>/dev/null; do sleep 0.1; done
    rm -rf "$LXD_DIR"
}
trap cleanup EXIT INT TERM
"$LXD" --group root --logfile "$LXD_DIR/lxd.log" >/dev/null 2>&1 </dev/null &
PID=$!
"$LXD" waitready --timeout 30
"$LXD" init --auto --network-bridge "$BR" >/dev/null
IMG=$(sh scripts/build-busybox-image.sh "$ROOT/target/images")
"$LXC" image import "$IMG" --alias bench-busybox >/dev/null
"$LXC" init bench-busybox "$C" >/dev/null
SUBNET=$("$LXC" network get "$BR" ipv4.address | sed 's/\.1\/24$//')

now_ms() { date +%s%3N; }
has_lease() {
    curl -s --unix-socket "$LXD_DIR/unix.socket" "lxd/1.0/instances/$C/state" \
        | grep -q "\"address\":\"$SUBNET\.[0-9]*\""
}
RESULTS=""
STARTS=""
i=0
while [ $i -lt "$N" ]; do
    t0=$(now_ms)
    "$LXC" start "$C"
    ts=$(now_ms)
    until has_lease; do sleep 0.005; done
    t1=$(now_ms)
    RESULTS="$RESULTS $((t1 - t0))"
    STARTS="$STARTS $((ts - t0))"
    "$LXC" stop -f "$C"
    i=$((i + 1))
done
median() {
    echo "$1" | tr ' ' '\n' | grep . | sort -n \
        | awk '{a[NR]=$1} END {print "median " a[int((NR+1)/2)] " ms (min " a[1] ", max " a[NR] ")"}'
}
echo "lxc start returned (ms):$STARTS"
echo "start-to-lease     (ms):$RESULTS"
echo "lxc start:      $(median "$STARTS")"
echo "start-to-lease: $(median "$RESULTS")"
