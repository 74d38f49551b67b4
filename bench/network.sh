#!/bin/sh
# Time from `lxc start` to the container holding an IPv4 lease on a managed bridge (busybox
# image, udhcpc in its rcS), median of N runs, for our daemon and, with --with-lxd, for Debian's
# real LXD on the same machine (its own LXD_DIR and bridge name, auto-update off, stopped by its
# PID). Each daemon gets a scratch LXD_DIR and a bridge of its own, so nothing clashes with a
# running LXD or its lxdbr0; everything is removed at the end.
#
#   bench/network.sh [--with-lxd] [N]      (default N=11; as root, after `cargo build --bins`)
#   LXD=path/to/lxd LXC=path/to/lxc bench/network.sh
set -eu
WITH_LXD=0
if [ "${1:-}" = "--with-lxd" ]; then WITH_LXD=1; shift; fi
N=${1:-11}
cd "$(dirname "$0")/.."
ROOT=$(pwd)
[ "$(id -u)" = 0 ] || { echo "bench/network.sh: run as root" >&2; exit 1; }
pick() { [ -x "$ROOT/target/release/$1" ] && echo "$ROOT/target/release/$1" || echo "$ROOT/target/debug/$1"; }
OUR_LXD=${LXD:-$(pick lxd)}
CLIENT=${LXC:-/usr/bin/lxc}
[ -x "$CLIENT" ] || CLIENT=$(pick lxc)
IMG=$(sh scripts/build-busybox-image.sh "$ROOT/target/images")
PIDS=""
DIRS=""
# A real LXD leaves an empty `inet lxd` table behind: removed at the end if it was not there.
LXD_TABLE_BEFORE=$(nft list table inet lxd >/dev/null 2>&1 && echo yes || echo no)
# Instance, profile NIC and bridge go through each daemon's API (a real LXD leaves its bridges,
# dnsmasq and nft rules in place when it merely stops), then the daemons, then their mounts.
cleanup() {
    for d in $DIRS; do
        br=$(cat "$d/bench-bridge" 2>/dev/null || true)
        (
            export LXD_DIR=$d HOME=$d/home LXD_CONF=$d/home/lxc
            "$CLIENT" delete -f bnc >/dev/null 2>&1 || true
            "$CLIENT" profile device remove default eth0 >/dev/null 2>&1 || true
            [ -n "$br" ] && "$CLIENT" network delete "$br" >/dev/null 2>&1 || true
        )
    done
    for p in $PIDS; do
        kill -PWR "$p" 2>/dev/null && while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
    done
    for d in $DIRS; do
        awk -v d="$d" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r \
            | while read -r m; do umount -l "$m" 2>/dev/null || true; done
        rm -rf "$d"
    done
    if [ "$LXD_TABLE_BEFORE" = no ]; then nft delete table inet lxd 2>/dev/null || true; fi
}
trap cleanup EXIT INT TERM

now_ms() { date +%s%3N; }
median() {
    echo "$1" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# A 10.x.y.0/24 no host route uses (explicit, since LXD's `auto` pings candidate subnets).
free_subnet() {
    x=$(( $$ % 200 + 20 ))
    for y in $(seq 10 250); do
        ip -4 route | grep -q "^10\.$x\.$y\." || { echo "10.$x.$y"; return; }
    done
    echo "bench/network.sh: no free 10.$x.y.0/24" >&2
    exit 1
}

# measure LABEL DAEMON: sets RESULT to "LABEL START_MEDIAN LEASE_MEDIAN" (no subshell, so that
# cleanup sees the daemons and directories it made)
measure() {
    label=$1 daemon=$2
    export LXD_DIR=/tmp/lxbn-$label-$$
    export HOME=$LXD_DIR/home LXD_CONF=$LXD_DIR/home/lxc
    mkdir -p "$HOME"
    DIRS="$DIRS $LXD_DIR"
    "$daemon" --group root --logfile "$LXD_DIR/lxd.log" >/dev/null 2>&1 </dev/null &
    PIDS="$PIDS $!"
    "$daemon" waitready --timeout 60
    br=lxbn$label$(( $$ % 10000 ))
    echo "$br" > "$LXD_DIR/bench-bridge"
    "$daemon" init --preseed >/dev/null <<EOF
config:
  images.auto_update_interval: "0"
networks:
- name: $br
  type: bridge
  config:
    ipv4.address: $(free_subnet).1/24
    ipv6.address: none
storage_pools:
- name: default
  driver: dir
profiles:
- name: default
  devices:
    root: {path: /, pool: default, type: disk}
    eth0: {name: eth0, network: $br, type: nic}
EOF
    "$CLIENT" image import "$IMG" --alias bench-busybox >/dev/null
    "$CLIENT" init bench-busybox bnc >/dev/null
    subnet=$("$CLIENT" network get "$br" ipv4.address | sed 's/\.1\/[0-9]*$//')
    results="" starts="" i=0
    while [ $i -lt "$N" ]; do
        # What the previous run (of either daemon) left dirty is flushed first, as in lxd-bench.
        sync
        t0=$(now_ms)
        "$CLIENT" start bnc
        ts=$(now_ms)
        until curl -s --unix-socket "$LXD_DIR/unix.socket" "lxd/1.0/instances/bnc/state" \
            | grep -q "\"address\":\"$subnet\.[0-9]*\""; do
            sleep 0.005
        done
        t1=$(now_ms)
        results="$results $((t1 - t0))"
        starts="$starts $((ts - t0))"
        "$CLIENT" stop -f bnc
        i=$((i + 1))
    done
    echo "$label: lxc start (ms):$starts" >&2
    echo "$label: start-to-lease (ms):$results" >&2
    RESULT="$label $(median "$starts") $(median "$results")"
}

measure ours "$OUR_LXD"
OURS=$RESULT
THEIRS=""
if [ $WITH_LXD = 1 ]; then
    [ -x /usr/bin/lxd ] || { echo "--with-lxd needs Debian's lxd package" >&2; exit 1; }
    measure lxd /usr/bin/lxd
    THEIRS=$RESULT
fi
echo
echo "medians of $N runs: busybox on a managed bridge, dir pool"
printf '%-22s%12s%12s%10s\n' "" ours lxd ratio
row() {
    o=$(echo "$OURS" | cut -d' ' -f"$2")
    if [ -n "$THEIRS" ]; then
        l=$(echo "$THEIRS" | cut -d' ' -f"$2")
        printf '%-22s%9s ms%9s ms%10s\n' "$1" "$o" "$l" "$(awk "BEGIN {printf \"%.2f\", $o / $l}")"
    else
        printf '%-22s%9s ms%12s%10s\n' "$1" "$o" - -
    fi
}
row "lxc start" 2
row "start to IPv4 lease" 3
