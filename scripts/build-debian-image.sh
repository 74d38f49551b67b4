#!/bin/sh
# Build a Debian 12 (bookworm) system-container image with systemd as init, from the Debian mirror
# with debootstrap, in LXD's unified image format (metadata.yaml + rootfs/ + templates/).
#
#   scripts/build-debian-image.sh OUTDIR        ->  OUTDIR/debian-12.tar.zst
#
# The result is cached: if OUTDIR/debian-12.tar.zst exists it is reused (delete it to rebuild).
# MIRROR overrides the mirror (default http://deb.debian.org/debian).
set -eu
OUT=${1:?usage: build-debian-image.sh OUTDIR}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
IMG="$OUT/debian-12.tar.zst"
if [ -s "$IMG" ]; then
    echo "$IMG"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "build-debian-image.sh: run as root (debootstrap)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debootstrap is not installed" >&2; exit 1; }
WORK=$(mktemp -d /var/tmp/debimg.XXXXXX)
trap 'rm -rf "$WORK"' EXIT INT TERM
R=$WORK/rootfs
debootstrap --variant=minbase \
    --include=systemd-sysv,dbus,iproute2,iputils-ping,ca-certificates,netbase,procps,less \
    bookworm "$R" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    tail -20 "$WORK/debootstrap.log" >&2
    exit 1
}
# Settle the image as LXD's Debian images are: no machine-id (generated at first boot), DHCP on
# eth0 with systemd-networkd, a console getty only, no units that cannot work in a container.
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
mkdir -p "$R/etc/systemd/network"
cat > "$R/etc/systemd/network/eth0.network" <<'EOT'
[Match]
Name=eth0

[Network]
DHCP=ipv4
EOT
chroot "$R" systemctl enable systemd-networkd.service >/dev/null 2>&1 || true
chroot "$R" systemctl mask systemd-udevd.service systemd-udevd-kernel.socket \
    systemd-udevd-control.socket systemd-modules-load.service sys-kernel-config.mount \
    sys-kernel-debug.mount sys-kernel-tracing.mount systemd-remount-fs.service \
    getty-static.service >/dev/null 2>&1 || true
echo "debian" > "$R/etc/hostname"
printf '127.0.0.1 localhost\n' > "$R/etc/hosts"
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/var/log/*.log
mkdir -p "$WORK/templates"
printf '{{ container.name }}\n' > "$WORK/templates/hostname.tpl"
printf '127.0.0.1   localhost\n127.0.1.1   {{ container.name }}\n\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n' > "$WORK/templates/hosts.tpl"
cat > "$WORK/metadata.yaml" <<EOT
architecture: x86_64
creation_date: $(date +%s)
properties:
  architecture: amd64
  description: Debian bookworm amd64 (debootstrap, systemd)
  os: debian
  release: bookworm
  variant: default
templates:
  /etc/hostname:
    when:
    - create
    - copy
    - start
    template: hostname.tpl
  /etc/hosts:
    when:
    - create
    - copy
    template: hosts.tpl
EOT
tar -C "$WORK" --numeric-owner --xattrs -cf - metadata.yaml rootfs templates | zstd -q -T0 -6 -o "$IMG.tmp"
mv "$IMG.tmp" "$IMG"
echo "$IMG"
