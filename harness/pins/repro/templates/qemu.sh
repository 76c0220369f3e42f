
# ---- what every qemu.sh does with the values above (pinharness/harness/pins/repro/templates/qemu.sh) ----
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-$HERE/work}
ACCEL=${ACCEL:-auto}
TIMEOUT=${TIMEOUT:-1800}
export PATH=$PATH:/usr/sbin:/sbin
say() { echo "qemu.sh: $*" >&2; }
die() { echo "qemu.sh: error: $*" >&2; exit 2; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing: install $2"; }
need qemu-system-x86_64 "qemu-system-x86"
need gcc "gcc and libc6-dev"
need busybox "busybox-static"
need "${MKFS[0]}" "${MKFS_PACKAGE}"
need mkfs.ext4 "e2fsprogs"
need cpio "cpio"
need modprobe "kmod"
mkdir -p "$WORK"

# ---- 1. the kernel: $KERNEL + $MODULES, or Debian's packages downloaded into $WORK/kernel
fetch() {  # fetch URL FILE
    if command -v curl >/dev/null 2>&1; then curl -fsSL -o "$2" "$1"; else wget -q -O "$2" "$1"; fi
}
unpack() {  # unpack DEB DIR
    if command -v dpkg-deb >/dev/null 2>&1; then dpkg-deb -x "$1" "$2"; return; fi
    local t; t=$(mktemp -d)
    (cd "$t" && ar x "$1" && tar -xf data.tar.* -C "$2")
    rm -rf "$t"
}
if [ -z "${KERNEL:-}" ] && [ "${#DEBS[@]}" = 0 ] && [ -f "$RECORDED_KERNEL" ] && [ -d "$RECORDED_MODULES" ]; then
    KERNEL=$RECORDED_KERNEL MODULES=$RECORDED_MODULES
    say "no Debian package for this kernel: booting the one the harness booted, $KERNEL"
fi
if [ -n "${KERNEL:-}" ]; then
    [ -f "$KERNEL" ] || die "KERNEL=$KERNEL is not a file"
    [ -d "${MODULES:-}" ] || die "set MODULES=/path/to/lib/modules/$RELEASE (the kernel's modules, depmod'ed) with KERNEL"
else
    [ "${#DEBS[@]}" -gt 0 ] || die "this kernel came from no Debian package: set KERNEL=/path/to/bzImage MODULES=/path/to/lib/modules/$RELEASE"
    root=$WORK/kernel
    if [ ! -e "$root/.complete" ]; then
        rm -rf "$root"; mkdir -p "$root" "$WORK/debs"
        for d in "${DEBS[@]}"; do
            url=${d% *} sum=${d#* } deb=$WORK/debs/${url##*/}
            if [ ! -s "$deb" ]; then say "downloading $url"; fetch "$url" "$deb.part" || die "cannot download $url"; mv "$deb.part" "$deb"; fi
            echo "$sum  $deb" | sha256sum -c --quiet - || { rm -f "$deb"; die "$deb: SHA256 mismatch (removed; run again)"; }
            unpack "$deb" "$root" || die "cannot unpack $deb"
        done
        if [ ! -d "$root/lib/modules" ] && [ -d "$root/usr/lib/modules" ]; then ln -s usr/lib "$root/lib"; fi
        need depmod "kmod"
        depmod -b "$root" "$RELEASE" || die "depmod failed"
        touch "$root/.complete"
    fi
    MODULES=$root/lib/modules/$RELEASE
    KERNEL=""
    for k in "$root/boot/vmlinuz-$RELEASE" "$MODULES/vmlinuz" "$MODULES/vmlinuz.unsigned"; do
        [ -f "$k" ] && { KERNEL=$k; break; }
    done
    [ -n "$KERNEL" ] || die "the packages hold no vmlinuz for $RELEASE"
fi
[ -e "$MODULES/modules.dep" ] || die "$MODULES has no modules.dep: run depmod -b ROOT $RELEASE"
say "kernel $KERNEL_SPEC ($RELEASE): $KERNEL, modules $MODULES; scratch fs $FS"

# ---- 2. the program
build || die "building repro.c failed (gcc with a static libc: libc6-dev)"

# ---- 3. the initramfs: static busybox, bash and the tools the steps use (with their libraries),
# the modules needed to reach the modules disk, repro + repro.sh, and /init
R=$WORK/initramfs
rm -rf "$R"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,mnt,modules,repro,lib/modules}
BUSYBOX=${BUSYBOX:-$(command -v busybox)}
if ldd "$BUSYBOX" >/dev/null 2>&1; then die "$BUSYBOX is linked dynamically: install busybox-static (or set BUSYBOX=)"; fi
cp "$BUSYBOX" "$R/bin/busybox"
copy_libs() {  # the shared libraries of an ELF file, at their own paths
    local lib
    for lib in $(ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
        [ -e "$R$lib" ] || { mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"; }
    done
}
for t in "${TOOLS[@]}"; do
    p=$(command -v "$t" 2>/dev/null) || { say "note: no $t on this host: the guest uses busybox's, if it has one"; continue; }
    cp -L "$p" "$R/usr/bin/$t"
    copy_libs "$p"
done
ln -sf /usr/bin/modprobe "$R/sbin/modprobe"
for f in "${HOST_FILES[@]}"; do
    [ -e "$f" ] || { say "note: no $f on this host"; continue; }
    mkdir -p "$R$(dirname "$f")"; cp -rL "$f" "$R$f"
    find -L "$f" -name '*.so*' -type f | while read -r so; do copy_libs "$so"; done
done
cp "$WORK/repro" "$HERE/repro.sh" "$R/repro/"
[ -n "${DYNAMIC:-}" ] && copy_libs "$WORK/repro"
cp "$HERE/init.sh" "$R/init"
chmod 755 "$R/init" "$R/repro/repro" "$R/repro/repro.sh"
modroot=$WORK/modroot
rm -rf "$modroot"; mkdir -p "$modroot/lib/modules"
ln -s "$(cd "$MODULES" && pwd)" "$modroot/lib/modules/$RELEASE"
n=0
: > "$R/modules/order"
for m in "${BOOT_MODULES[@]}"; do
    for ko in $(modprobe -d "$modroot" -S "$RELEASE" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" { print $2 }'); do
        name=$(basename "$ko"); name=${name%.*z}; name=${name%.zst}; name=${name%.ko}
        grep -q -- "-$name.ko\$" "$R/modules/order" && continue
        out=$(printf '%02d' "$n")-$name.ko; n=$((n + 1))
        case "$ko" in
            *.xz) need xz "xz-utils"; xz -dc "$ko" > "$R/modules/$out" ;;
            *.zst) need zstd "zstd"; zstd -qdc "$ko" > "$R/modules/$out" ;;
            *.gz) gzip -dc "$ko" > "$R/modules/$out" ;;
            *) cp "$ko" "$R/modules/$out" ;;
        esac
        echo "$out" >> "$R/modules/order"
    done
done
(cd "$R" && find . | cpio -o -H newc --quiet) | gzip -1 > "$WORK/initramfs.cpio.gz"

# ---- 4. the disks
rm -f "$WORK/scratch.img"
truncate -s "${SCRATCH_MB}M" "$WORK/scratch.img"
"${MKFS[@]}" "$WORK/scratch.img" >/dev/null || die "${MKFS[*]} failed"
if [ "$NEEDS_SRC" = 1 ]; then bash "$HERE/repro.sh" --make-source "$WORK/source.img" "$SOURCE_PAGES"; fi
if [ "$NEEDS_FILL" = 1 ]; then rm -f "$WORK/fill.img"; truncate -s "${FILL_MB}M" "$WORK/fill.img"; fi
if [ "$(cat "$WORK/modules.stamp" 2>/dev/null)" != "$MODULES" ] || [ ! -s "$WORK/modules.img" ]; then
    mb=$(du -sm "$MODULES" | cut -f1)
    rm -f "$WORK/modules.img"
    mkfs.ext4 -q -F -L ph-modules -d "$MODULES" "$WORK/modules.img" "$((mb * 13 / 10 + 64))M" \
        || die "mkfs.ext4 -d $MODULES failed (e2fsprogs >= 1.43 needed)"
    echo "$MODULES" > "$WORK/modules.stamp"
fi

# ---- 5. the accelerator: KVM when a canary boot reaches the initramfs, else TCG
if [ "$ACCEL" = auto ]; then
    ACCEL=tcg
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        CPU=host; qemu_argv kvm "ph.canary=1"
        timeout 30 "${ARGV[@]}" </dev/null > "$WORK/canary.log" 2>&1 || true
        if grep -q -a PH-CANARY-OK "$WORK/canary.log"; then ACCEL=kvm
        else say "KVM did not boot this kernel within 30 s (canary, $WORK/canary.log): using TCG"; fi
    fi
fi
[ "$ACCEL" = kvm ] && CPU=host || CPU=max

# ---- 6. the run
qemu_argv "$ACCEL" ""
say "booting $RELEASE under $ACCEL: ${ARGV[*]}"
set +e
timeout --foreground "$TIMEOUT" "${ARGV[@]}" </dev/null 2>&1 | tee "$WORK/console.log"
set -e
tr -d '\r' < "$WORK/console.log" > "$WORK/console.txt"
rc=$(grep -a -o 'PH-REPRO-EXIT=[0-9]*' "$WORK/console.txt" | tail -n1 | cut -d= -f2 || true)
verdict=$(grep -a -E '^(REPRODUCED|CLEAN|ERROR): ' "$WORK/console.txt" | tail -n1 || true)
if [ -n "${FSCK[*]}" ] && command -v "${FSCK[0]}" >/dev/null 2>&1; then
    if "${FSCK[@]}" "$WORK/scratch.img" > "$WORK/fsck.txt" 2>&1; then say "${FSCK[*]}: the scratch fs is clean"
    else say "${FSCK[*]}: the scratch fs has problems (see $WORK/fsck.txt)"; fi
fi
if [ -z "$rc" ]; then
    title=$(bash "$HERE/repro.sh" --titles-from "$WORK/console.txt" | head -n1 || true)
    if [ -n "$title" ]; then
        echo "REPRODUCED: $title (the guest died; console: $WORK/console.log)"
        exit 1
    fi
    die "the guest did not finish within ${TIMEOUT}s or died without a report: see $WORK/console.log"
fi
say "console: $WORK/console.log"
echo "$verdict"
exit "$rc"
