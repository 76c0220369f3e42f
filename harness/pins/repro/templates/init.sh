
# ---- the initramfs /init that qemu.sh packs (pinharness/harness/pins/repro/templates/init.sh) ----
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run /tmp /dev/shm /mnt/scratch /lib/modules
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t configfs configfs /sys/kernel/config 2>/dev/null
finish() { echo "PH-REPRO-EXIT=$1"; sync; poweroff -f; sleep 10; }
for m in $(cat /modules/order); do insmod "/modules/$m" 2>/dev/null; done
case " $(cat /proc/cmdline) " in *" ph.canary=1 "*) echo "PH-CANARY-OK"; poweroff -f; sleep 10;; esac
# /dev/vdX of the virtio disk with serial $1 (they appear asynchronously: wait up to 10 s)
disk() {
    i=0
    while [ $i -lt 200 ]; do
        for d in /sys/block/vd*; do
            [ "$(cat "$d/serial" 2>/dev/null)" = "$1" ] && { echo "/dev/${d##*/}"; return 0; }
        done
        i=$((i + 1)); sleep 0.05
    done
    echo "ERROR: no disk with serial $1 (virtio_blk not loaded?)" >&2
    return 1
}
rel=$(uname -r)
mods=$(disk "$MODULES_SERIAL") || finish 2
mkdir -p "/lib/modules/$rel"
mount -t ext4 -o ro "$mods" "/lib/modules/$rel" || { echo "ERROR: cannot mount the modules disk $mods"; finish 2; }
scratch=$(disk "$SCRATCH_SERIAL") || finish 2
/usr/bin/modprobe "$FS" 2>/dev/null  # kmod, by path: busybox sh would run its own applet
mount -t "$FS" "$scratch" /mnt/scratch || { echo "ERROR: cannot mount $scratch ($FS)"; finish 2; }
set -- --mnt /mnt/scratch --bin /repro/repro
if [ "$NEEDS_SRC" = 1 ]; then src=$(disk "$SOURCE_SERIAL") || finish 2; set -- "$@" --src "$src"; fi
if [ "$NEEDS_FILL" = 1 ]; then fill=$(disk "$FILL_SERIAL") || finish 2; set -- "$@" --fill "$fill"; fi
cd /repro || finish 2
bash /repro/repro.sh "$@"
rc=$?
umount /mnt/scratch 2>/dev/null
finish $rc
