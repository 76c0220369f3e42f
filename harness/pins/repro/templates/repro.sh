
# ---- what every repro.sh does with the steps above (pinharness/harness/pins/repro/templates/repro.sh) ----
usage() {
    cat >&2 <<EOF
usage: $0 --mnt DIR [--src DEV] [--fill DEV] [--bin PATH]    (as root)
       $0 --make-source FILE|DEV [PAGES]                      (pattern B for --src)
       $0 --judge RESULT_JSON VERIFY_JSON LOG                 (the verdict of saved outputs)
  --mnt DIR   a mounted $FS file system to run on (the file DIR/pinned is created; it is remounted once)
  --src DEV   $SRC_HELP
  --fill DEV  $FILL_HELP
  --bin PATH  the program built from repro.c (default: ./repro beside this script, built if missing)
Prints one line at the end: REPRODUCED: ... (exit 1), CLEAN: ... (exit 0) or ERROR: ... (exit 2).
EOF
    exit 2
}
die() { echo "ERROR: $*"; exit 2; }
note() { echo "repro: $*"; }

# page i of the "device": "PINHARNS", 'B', i as 7 little-endian bytes, then 'B' up to 4096 bytes
make_source() {
    local f=$1 n=$2 i b fill
    printf -v fill '%*s' 4080 ''
    fill=${fill// /B}
    for ((i = 0; i < n; i++)); do
        printf 'PINHARNSB'
        for b in 0 1 2 3 4 5 6; do
            # shellcheck disable=SC2059  # the format is the byte
            printf "\\$(printf %03o $(((i >> (8 * b)) & 255)))"
        done
        printf %s "$fill"
    done > "$f"
}

# approximate syzbot-style titles of the kernel reports logged after the marker $1 (in dmesg,
# or in the log file $2 from its start)
kernel_titles() {
    if [ -n "${2:-}" ]; then cat "$2"; else dmesg; fi | awk -v mark="$1" '
        mark == "" { on = 1 }
        mark != "" && index($0, mark) { on = 1; next }
        !on { next }
        { sub(/^.* kernel: /, ""); sub(/^\[[ 0-9.]+\]/, ""); sub(/^\[ *[TC][0-9]+\]/, ""); sub(/^ /, "") }
        function emit(t) { if (!(t in seen)) { seen[t] = 1; print t } }
        /^WARNING: possible (circular|recursive) locking/ { emit("possible deadlock"); next }
        function fn(t) { sub(/\+0x.*/, "", t); sub(/\.(constprop|isra|part|cold)\..*$/, "", t); return t }
        /^WARNING: / {  # classic "WARNING: CPU: 0 PID: 1 at FILE:LINE FUNC+0x1/0x2", or since 6.19 "WARNING: FILE:LINE at FUNC+0x1/0x2, CPU#0: comm/1"
            for (i = 2; i <= NF; i++) if ($i ~ /^[A-Za-z0-9_.]+\+0x[0-9a-f]+\/0x[0-9a-f]+/) { emit("WARNING in " fn($i)); next }
            if ($0 ~ / at 0x[0-9a-f]+, CPU#/) { pending = "WARNING"; next }  # no function on the line: the RIP has it
            t = $0; sub(/^WARNING: /, "", t); emit(t)
            next }
        /^kernel BUG at / { pending = "kernel BUG"; next }
        /general protection fault/ { pending = "general protection fault"; next }
        /^BUG: [A-Z]+: [^ ]+ in / { t = $0; sub(/^BUG: /, "", t); sub(/\+0x.*/, "", t); emit(t); next }
        /^BUG: / { t = $0; sub(/ (for address|at ).*/, "", t); sub(/ - .*/, "", t); pending = t; next }
        /^Kernel panic - not syncing: / { t = $0; sub(/^Kernel panic - not syncing: /, "", t); emit("kernel panic: " t); next }
        /^INFO: task .* blocked for more than/ { emit("INFO: task hung"); next }
        /^rcu: INFO: .* detected stalls/ { emit("INFO: rcu detected stall"); next }
        /^EXT4-fs (warning|error) \(device / {
            f = $5; sub(/:.*/, "", f); t = $0; sub(/^.*: comm [^ ]*: /, "", t); gsub(/ [0-9]+/, "", t)
            emit("EXT4-fs " $2 " in " f ": " t); next }
        /^XFS \(.*\): / && /(Internal error|Corruption)/ { emit("XFS: " ($0 ~ /Internal error/ ? "internal error" : "corruption")); next }
        pending != "" && /RIP: 0010:/ { f = $0; sub(/.*RIP: 0010:/, "", f); emit(pending " in " fn(f)); pending = "" }
        END { if (pending != "") emit(pending) }'
}

json_int() {  # json_int KEY TEXT: the first integer value of "KEY": in TEXT (empty when absent)
    printf '%s\n' "$2" | grep -o "\"$1\": *-\{0,1\}[0-9][0-9]*" | head -n1 | grep -o -- '-\{0,1\}[0-9][0-9]*$'
}

# judge RESULT VERIFY [LOG]: the verdict line from the workload's and the verify's JSON lines and the
# kernel's reports (in dmesg after $MARK, or in the file LOG); exits 1 reproduced, 0 clean
judge() {
    local result=$1 verify=$2 pin_errno wrote ondisk lost=0 t text
    local -a titles=()
    pin_errno=$(json_int errno "${result#*\"pin\":}")
    wrote=$(json_int device_wrote_B "$result")
    ondisk=$(json_int B "$verify")
    pin_errno=${pin_errno:-0} wrote=${wrote:-0} ondisk=${ondisk:-0}
    if [ "$pin_errno" = 0 ] && [ "$DATA_CHECK" = 1 ] && [ "$wrote" -gt "$ondisk" ]; then lost=$((wrote - ondisk)); fi
    # (no <(...): a busybox initramfs has no /dev/fd)
    if [ -n "${3:-}" ]; then text=$(kernel_titles "" "$3"); else text=$(kernel_titles "$MARK"); fi
    [ -z "$text" ] || mapfile -t titles <<< "$text"
    for t in "${titles[@]}"; do note "kernel: $t"; done
    if [ "${#titles[@]}" -gt 0 ] || [ "$lost" -gt 0 ]; then
        echo "REPRODUCED: ${titles[0]:-data loss}, $lost/$wrote pages lost"
        exit 1
    fi
    if [ "$pin_errno" != 0 ]; then
        echo "CLEAN: the kernel refused the pin (errno $pin_errno), no kernel report"
    else
        echo "CLEAN: $ondisk/$wrote pages the device wrote are on disk, no kernel report"
    fi
    exit 0
}

MNT="" SRC="" FILL="" BIN=""
HERE=$(cd "$(dirname "$0")" && pwd)
while [ $# -gt 0 ]; do
    case "$1" in
        --mnt) MNT=${2:-}; shift 2 || usage ;;
        --src) SRC=${2:-}; shift 2 || usage ;;
        --fill) FILL=${2:-}; shift 2 || usage ;;
        --bin) BIN=${2:-}; shift 2 || usage ;;
        --make-source) [ -n "${2:-}" ] || usage; make_source "$2" "${3:-$SOURCE_PAGES}"; exit $? ;;
        --titles-from) [ -n "${2:-}" ] || usage; kernel_titles "" "$2"; exit 0 ;;
        --judge) [ $# -ge 4 ] || usage; judge "$2" "$3" "$4" ;;
        -h|--help) usage ;;
        *) echo "unknown argument $1" >&2; usage ;;
    esac
done
[ -n "$MNT" ] || usage
[ "$(id -u)" = 0 ] || die "run as root (the steps load modules, write /proc/sys and remount $MNT)"
MNT=${MNT%/}
DEV=$(awk -v m="$MNT" '$2 == m { d = $1; t = $3 } END { if (d) print d, t }' /proc/mounts)
[ -n "$DEV" ] || die "$MNT is not a mount point: mount a scratch $FS file system there first"
MTYPE=${DEV#* }; DEV=${DEV%% *}
[ "$MTYPE" = "$FS" ] || note "warning: $MNT is $MTYPE, the finding was on $FS"
[ "$NEEDS_SRC" = 0 ] || [ -e "$SRC" ] || die "--src: $SRC_HELP"
[ "$NEEDS_FILL" = 0 ] || [ -b "$FILL" ] || die "--fill: $FILL_HELP"
[ -e /sys/fs/cgroup/cgroup.subtree_control ] || die "cgroup v2 is not mounted at /sys/fs/cgroup"
if [ -z "$BIN" ]; then
    BIN=$HERE/repro
    if [ ! -x "$BIN" ]; then
        note "building $BIN: ${BUILD[*]}"
        (cd "$HERE" && "${BUILD[@]}") || die "building repro.c failed: ${BUILD[*]}"
    fi
fi
[ -x "$BIN" ] || die "no program at $BIN"
FILE=$MNT/pinned
export MNT FILE FILL SRC
workload_args

MARK="pinharness-repro: start $$.$RANDOM"
echo "<5>$MARK" > /dev/kmsg 2>/dev/null || die "cannot write /dev/kmsg"
note "$WORKLOAD on $FS ($DEV at $MNT) with ${STRESSORS:-no stressor}, $PAGES pages; kernel $(uname -r)"
cgroup_setup || die "cannot make the memory cgroup $CGROUP"
EXTRA=()
if [ -n "$PREPARE" ]; then
    out=$(prepare) || die "preparing $WORKLOAD failed (see above)"
    read -r -a EXTRA <<< "$out"
fi
stressor_setup
note "running: $BIN ${ARGS[*]} ${EXTRA[*]}"
out=$(echo "$BASHPID" > "$CGROUP/cgroup.procs" && PH_WHILE_HELD=$WHILE_HELD exec "$BIN" "${ARGS[@]}" "${EXTRA[@]}")
stressor_teardown
result=$(printf '%s\n' "$out" | grep '^{' | tail -n1)
note "workload: $result"
[ -n "$result" ] || die "$WORKLOAD printed no result: $out"
case "$result" in
    *'"error":'*) die "$WORKLOAD gave up: $result" ;;
esac
setup_errno=$(json_int setup_errno "$result")
[ "${setup_errno:-0}" = 0 ] || die "$WORKLOAD could not drive the device (setup_errno $setup_errno): $result"
remount || die "remounting $MNT failed"
verify=$(verify | grep '^{' | tail -n1)
note "on disk: $verify"
judge "$result" "$verify"
