#!/bin/sh
# Build a busybox system-container image from the host's busybox-static package, in LXD's
# unified image format: metadata.yaml + rootfs/ + templates/, as an xz tarball.
#
#   scripts/build-busybox-image.sh OUTDIR [NAME]   ->  OUTDIR/NAME.tar.xz (default NAME=busybox)
#
# The tarball is deterministic (sorted, fixed mtimes, numeric ownership), so rebuilding gives
# the same fingerprint and reruns of the quickstart import nothing new.
set -eu
OUT=${1:?usage: build-busybox-image.sh OUTDIR [NAME]}
NAME=${2:-busybox}
BB=/bin/busybox
[ -x "$BB" ] || { echo "busybox-static is not installed (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT INT TERM
R=$WORK/rootfs
mkdir -p "$R/bin" "$R/sbin" "$R/usr/bin" "$R/usr/sbin" "$R/etc/init.d" "$R/proc" "$R/sys" "$R/dev" \
         "$R/run" "$R/tmp" "$R/root" "$R/var/log" "$R/home" "$R/mnt"
chmod 1777 "$R/tmp"
chmod 700 "$R/root"
cp "$BB" "$R/bin/busybox"
# Install the applet links from inside the rootfs: links made from the host would point at the
# host's busybox path, which does not exist after pivot_root (reference/machine.md 3a).
chroot "$R" /bin/busybox --install -s
ln -sf /bin/busybox "$R/sbin/init"

cat > "$R/etc/inittab" <<'EOT'
::sysinit:/etc/init.d/rcS
::respawn:/sbin/getty -L 0 console vt100
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/umount -a -r
EOT
cat > "$R/etc/init.d/rcS" <<'EOT'
#!/bin/sh
[ -e /proc/self ] || mount -t proc proc /proc
[ -e /sys/kernel ] || mount -t sysfs sysfs /sys
grep -q ' /run ' /proc/mounts || mount -t tmpfs -o mode=755 tmpfs /run
grep -q ' /tmp ' /proc/mounts || mount -t tmpfs -o mode=1777 tmpfs /tmp
[ -s /etc/hostname ] && hostname -F /etc/hostname
ip link set lo up
# DHCP on eth0 when the instance has one; in the background so boot does not wait for a lease.
if ip link show eth0 >/dev/null 2>&1; then
    udhcpc -i eth0 -f -t 10 -T 1 -A 2 -x "hostname:$(hostname)" \
        -s /usr/share/udhcpc/default.script >/dev/null 2>&1 </dev/null &
fi
echo "rcS done" > /run/rcS.done
EOT
chmod 755 "$R/etc/init.d/rcS"
mkdir -p "$R/usr/share/udhcpc"
cat > "$R/usr/share/udhcpc/default.script" <<'EOT'
#!/bin/sh
# udhcpc event script: set the leased address, the default route and resolv.conf.
[ -n "$interface" ] || exit 1
case "$1" in
deconfig)
    ip link set "$interface" up
    ip -4 addr flush dev "$interface"
    ;;
bound|renew)
    if ! ip -4 addr show dev "$interface" | grep -q "inet $ip/${mask:-24} "; then
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    fi
    if [ -n "$router" ]; then
        while ip route del default dev "$interface" 2>/dev/null; do :; done
        for r in $router; do
            ip route add default via "$r" dev "$interface"
            break
        done
    fi
    {
        [ -n "$domain" ] && echo "search $domain"
        for s in $dns; do echo "nameserver $s"; done
    } > /etc/resolv.conf.new
    mv /etc/resolv.conf.new /etc/resolv.conf
    ;;
esac
exit 0
EOT
chmod 755 "$R/usr/share/udhcpc/default.script"
cat > "$R/etc/passwd" <<'EOT'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
EOT
cat > "$R/etc/group" <<'EOT'
root:x:0:
daemon:x:1:
tty:x:5:
nogroup:x:65534:
user:x:1000:
EOT
echo "root::0:0:99999:7:::" > "$R/etc/shadow"
chmod 600 "$R/etc/shadow"
mkdir -p "$R/home/user" && chown 1000:1000 "$R/home/user"
echo "$NAME" > "$R/etc/hostname"
printf '127.0.0.1 localhost\n' > "$R/etc/hosts"

mkdir -p "$WORK/templates"
cat > "$WORK/templates/hostname.tpl" <<'EOT'
{{ container.name }}
EOT
cat > "$WORK/templates/hosts.tpl" <<'EOT'
127.0.0.1   localhost
127.0.1.1   {{ container.name }}
EOT
VERSION=$("$BB" 2>&1 | head -1 | sed -n 's/^BusyBox v\([0-9.]*\).*/\1/p')
cat > "$WORK/metadata.yaml" <<EOT
architecture: x86_64
creation_date: 1700000000
properties:
  architecture: x86_64
  description: BusyBox $VERSION static (from the host's busybox-static)
  name: $NAME
  os: busybox
  release: "$VERSION"
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
TMP="$OUT/.$NAME.tar.xz.tmp"
tar -C "$WORK" --sort=name --mtime=@1700000000 --numeric-owner \
    -cf - metadata.yaml rootfs templates | xz -T1 -6 > "$TMP"
mv "$TMP" "$OUT/$NAME.tar.xz"
echo "$OUT/$NAME.tar.xz"
