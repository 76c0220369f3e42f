#!/bin/sh
# mmdebstrap customize hook: $1 is the rootfs. Runs on the host.
set -e
root="$1"
install -m 0755 "$PINHARNESS_RECIPE/init" "$root/sbin/pinharness-init"
# No password, no systemd units needed: our init starts sshd directly.
chroot "$root" passwd -d root >/dev/null
echo pinharness > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 pinharness\n' > "$root/etc/hosts"
# Host keys are generated once per image by openssh-server's postinst; make sure they exist.
chroot "$root" ssh-keygen -A >/dev/null
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/* "$root/usr/share/doc" "$root/usr/share/man"
mkdir -p "$root/lib/modules" "$root/mnt/scratch" "$root/root"
install -d -m 0700 "$root/root/.ssh"
# What our init mounts after /proc, in one `mount -a`
cat > "$root/etc/fstab" <<'FSTAB'
sysfs    /sys                sysfs    defaults           0 0
devpts   /dev/pts            devpts   gid=5,mode=620     0 0
tmpfs    /dev/shm            tmpfs    defaults           0 0
tmpfs    /run                tmpfs    mode=755           0 0
tmpfs    /tmp                tmpfs    defaults           0 0
cgroup2  /sys/fs/cgroup      cgroup2  defaults           0 0
debugfs  /sys/kernel/debug   debugfs  defaults           0 0
tracefs  /sys/kernel/tracing tracefs  defaults           0 0
configfs /sys/kernel/config  configfs defaults           0 0
FSTAB
