#!/bin/sh
# Install what the daemon, the tests and the benchmarks need on a Debian 12 host, and raise the host
# limits LXD's production setup raises. Safe to rerun. Run as root.
set -eu
[ "$(id -u)" = 0 ] || { echo "setup-host.sh: run as root" >&2; exit 1; }
PKGS="busybox-static uidmap rsync nftables dnsmasq-base squashfs-tools btrfs-progs zfs-fuse \
debootstrap xz-utils zstd bzip2 lxd-client lxd curl isc-dhcp-client"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "Installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq || true
    # shellcheck disable=SC2086
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
fi
# Debian's lxd package may start its own daemon; ours must own /var/lib/lxd/unix.socket.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now lxd.service lxd.socket >/dev/null 2>&1 || true
fi
# Many systemd containers share one host uid range (LXD doc: server_settings.md).
raise() { cur=$(cat "/proc/sys/$(echo "$1" | tr . /)" 2>/dev/null || echo 0); [ "$cur" -ge "$2" ] 2>/dev/null || sysctl -qw "$1=$2" || true; }
raise fs.inotify.max_user_instances 1048576
raise fs.inotify.max_user_watches 1048576
raise fs.inotify.max_queued_events 1048576
raise kernel.keys.maxkeys 2000
raise kernel.keys.maxbytes 2000000
raise vm.max_map_count 262144
raise net.ipv4.neigh.default.gc_thresh3 8192
# Root's subordinate ids (container root maps to the first range, as LXD does).
grep -q '^root:' /etc/subuid 2>/dev/null || echo "root:1000000:1000000000" >> /etc/subuid
grep -q '^root:' /etc/subgid 2>/dev/null || echo "root:1000000:1000000000" >> /etc/subgid
