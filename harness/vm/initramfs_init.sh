#!/bin/busybox sh
# shellcheck shell=dash
# pinharness initramfs /init: the static busybox of the initramfs loads the modules a root disk
# needs, mounts it and does all the set-up of the real root that is kernel state, then hands over
# to the rootfs' /sbin/pinharness-init, which only starts sshd.
#
# Under TCG every exec of the rootfs' dynamically linked programs costs 45-120 ms and bash alone
# ~0.15 s; busybox's applets cost a fraction of that. So the modules disk, the API file systems,
# the network and the SSH key are done here. Each step that worked is named in
# /run/pinharness-early; the rootfs init does the ones that are not (e.g. virtio_net only on the
# modules disk).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
die() { echo "PINHARNESS-INIT-FAILED: $*"; sleep 1; poweroff -f; }
while read -r m; do insmod "/modules/$m" 2>/dev/null; done < /modules/order
read -r cmdline < /proc/cmdline
# arg NAME: REPLY=the value of NAME= on the kernel command line
arg() {
  for w in $cmdline; do
    case "$w" in "$1="*) REPLY="${w#*=}"; return 0;; esac
  done
  return 1
}
if arg pinharness.canary; then echo "PINHARNESS-CANARY-OK"; poweroff -f; fi
# disk_by_serial SERIAL: REPLY=/dev/vdX of the virtio disk with that serial (waits up to 10 s)
disk_by_serial() {
  i=0
  while [ $i -lt 200 ]; do
    for d in /sys/block/vd*; do
      s=""
      read -r s < "$d/serial" 2>/dev/null
      [ "$s" = "$1" ] && { REPLY=/dev/${d##*/}; return 0; }
    done
    i=$((i + 1))
    sleep 0.05
  done
  return 1
}
arg pinharness.root || die "no pinharness.root on the command line"
disk_by_serial "$REPLY" || die "root disk $REPLY not found (virtio_blk missing?)"
mkdir -p /newroot /etc
mount -t ext4 "$REPLY" /newroot || die "cannot mount $REPLY"

early=""
read -r rel < /proc/sys/kernel/osrelease
if arg pinharness.modules; then
  disk_by_serial "$REPLY" || die "modules disk '$REPLY' not found"
  mkdir -p "/newroot/lib/modules/$rel"
  mount -t ext4 -o ro "$REPLY" "/newroot/lib/modules/$rel" || die "cannot mount modules disk $REPLY"
  early="modules"
fi
if [ -e /sys/class/net/eth0 ] && ip link set lo up && ip link set eth0 up &&
    ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2; then
  early="$early net"
fi
if arg pinharness.key && echo "$REPLY" | base64 -d > /newroot/root/.ssh/authorized_keys; then
  early="$early key"
fi
echo 1 > /proc/sys/kernel/sysrq
echo pinharness > /proc/sys/kernel/hostname
# /dev and /proc move into the new root, then the rootfs' own /etc/fstab (sysfs and what is under
# it, /run, /tmp...) is mounted there, each mount point under /newroot; as before, a file system
# the kernel lacks (configfs as a module, no debugfs) is left out
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
umount /sys
mkdir -p /newroot/dev/pts /newroot/dev/shm
sed -E 's#^([^#[:space:]]+[[:space:]]+)/#\1/newroot/#' /newroot/etc/fstab > /etc/fstab
mount -a 2> /newroot/dev/null
mkdir -p /newroot/run/sshd
echo "$early mounts" > /newroot/run/pinharness-early
exec switch_root /newroot /sbin/pinharness-init
