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
