#!/usr/bin/env bash
# The nightly pin matrix, for any CI; .github/workflows/nightly.yml calls it step by step.
#
#   ci/nightly.sh [all]   everything here, one shard after another: kvm, each kernel × fs shard, report
#   ci/nightly.sh plan    the shard list as JSON ({"include": [{kernel, fs, shard, name}, ...]}) for a CI matrix
#   ci/nightly.sh kvm     make /dev/kvm usable (udev rule) where the runner has it; else say it will be TCG
#   ci/nightly.sh shard   one shard: ./ph run --kernel $NIGHTLY_KERNEL --fs $NIGHTLY_FS --shard $NIGHTLY_SHARD
#   ci/nightly.sh previous  fetch last night's results.json from GitHub (gh, GH_TOKEN) into $NIGHTLY_OUT/previous
#   ci/nightly.sh report  merge the shards, write JUnit/KTAP/kcidb/HTML/Markdown, compare with last night
#
# Environment (defaults in brackets):
#   NIGHTLY_KERNELS [debian:6.1,debian:6.12,debian:6.1@arm64,debian:6.12@arm64] (@arm64: an arm64 guest, TCG)  NIGHTLY_FSES [ext4,xfs]  NIGHTLY_SHARDS [1] (per kernel × fs)
#   NIGHTLY_KERNEL, NIGHTLY_FS, NIGHTLY_SHARD [1/1]  (shard: the one to run)
#   NIGHTLY_OUT [results/nightly]: shards go to $NIGHTLY_OUT/shards/<name>/, the report to $NIGHTLY_OUT/
#   NIGHTLY_PREVIOUS: last night's results.json or directory (default $NIGHTLY_OUT/previous/results.json if there)
#   NIGHTLY_ACCEL [auto]  NIGHTLY_RUN_ARGS: more `./ph run` arguments (e.g. "--workload odirect")
#   NIGHTLY_SHARD_TIMEOUT [14400] seconds per shard  NIGHTLY_FAIL_ON_NEW [0]: report exits 1 on NEW problems
#   NIGHTLY_PYTHON: the Python for merge/compare (default .venv/bin/python, made with the package if missing)
# Exit status: shard/all: that of `./ph run` (1 = a surprise, crash or error that reproduced on re-runs); report: 0, or 1 with
# NIGHTLY_FAIL_ON_NEW=1 and a NEW problem since last night.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

KERNELS=${NIGHTLY_KERNELS:-debian:6.1,debian:6.12,debian:6.1@arm64,debian:6.12@arm64}
FSES=${NIGHTLY_FSES:-ext4,xfs}
SHARDS=${NIGHTLY_SHARDS:-1}
OUT=${NIGHTLY_OUT:-results/nightly}
ACCEL=${NIGHTLY_ACCEL:-auto}
SHARD_TIMEOUT=${NIGHTLY_SHARD_TIMEOUT:-14400}

say() { echo "nightly: $*" >&2; }
warn() { if [ "${GITHUB_ACTIONS:-}" = true ]; then echo "::warning::$*"; fi; say "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi; }
slug() { local s=${1//[^A-Za-z0-9._-]/-}; echo "${s//--/-}"; }
shard_name() { echo "$(slug "$1")-$2-${3%/*}of${3#*/}"; }  # kernel fs i/n -> debian-6.1-ext4-1of2

harness() {  # python -m harness without ./ph's host setup (the report needs no QEMU)
    if [ -n "${NIGHTLY_PYTHON:-}" ]; then "$NIGHTLY_PYTHON" -m harness "$@"; return; fi
    if [ ! -x .venv/bin/python ]; then
        "${PYTHON:-python3}" -m venv .venv
        timeout 600 .venv/bin/python -m pip install -q --disable-pip-version-check -e .
    fi
    .venv/bin/python -m harness "$@"
}

plan() {
    local sep="" k fs i
    printf '{"include": ['
    for k in ${KERNELS//,/ }; do
        for fs in ${FSES//,/ }; do
            for ((i = 1; i <= SHARDS; i++)); do
                printf '%s{"kernel": "%s", "fs": "%s", "shard": "%s", "name": "%s"}' \
                    "$sep" "$k" "$fs" "$i/$SHARDS" "$(shard_name "$k" "$fs" "$i/$SHARDS")"
                sep=", "
            done
        done
    done
    printf ']}\n'
}

kvm() {
    if [ ! -e /dev/kvm ]; then
        warn "no /dev/kvm on this runner: guests run under TCG (emulation, several times slower)"
        return 0
    fi
    if [ ! -w /dev/kvm ]; then
        say "making /dev/kvm usable by everyone (udev rule)"
        if echo 'KERNEL=="kvm", GROUP="kvm", MODE="0666", OPTIONS+="static_node=kvm"' \
                | as_root tee /etc/udev/rules.d/99-pinharness-kvm.rules >/dev/null; then
            as_root timeout 60 udevadm control --reload-rules || true
            as_root timeout 60 udevadm trigger --name-match=kvm || true
            as_root timeout 60 udevadm settle || true
        fi
    fi
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        say "KVM: /dev/kvm is usable (the harness still checks it with a canary boot)"
    else
        warn "/dev/kvm exists but is not usable (no root to add the udev rule?): guests run under TCG"
    fi
}

shard() {
    local kernel=${1:-${NIGHTLY_KERNEL:?set NIGHTLY_KERNEL, e.g. debian:6.1}}
    local fs=${2:-${NIGHTLY_FS:?set NIGHTLY_FS, e.g. ext4}}
    local sh=${3:-${NIGHTLY_SHARD:-1/1}}
    local dir rc=0 t0=$SECONDS
    dir="$OUT/shards/$(shard_name "$kernel" "$fs" "$sh")"
    mkdir -p "$dir"
    say "shard $sh of $kernel × $fs -> $dir"
    # shellcheck disable=SC2086  # NIGHTLY_RUN_ARGS is a list of words
    timeout --kill-after=60 "$SHARD_TIMEOUT" ./ph run --kernel "$kernel" --fs "$fs" --shard "$sh" \
        --accel "$ACCEL" --out "$dir" --ktap --kcidb --html ${NIGHTLY_RUN_ARGS:-} || rc=$?
    [ "$rc" = 124 ] && warn "shard $kernel × $fs $sh timed out after ${SHARD_TIMEOUT}s"
    echo "$kernel $fs $sh $((SECONDS - t0))s exit $rc" >> "$OUT/timing.txt"
    return "$rc"
}

previous() {  # GitHub only: the newest completed run of this workflow that kept its results JSON
    local id
    mkdir -p "$OUT/previous"
    for id in $(timeout 120 gh run list --workflow nightly.yml --branch "${GITHUB_REF_NAME:-main}" \
                    --status completed --limit 5 --json databaseId --jq '.[].databaseId' || true); do
        if timeout 300 gh run download "$id" -n nightly-results-json -D "$OUT/previous"; then
            say "previous results: run $id"
            return 0
        fi
    done
    say "no previous night's results found: the report will have no 'since last run'"
}

report() {
    local prev=${NIGHTLY_PREVIOUS:-$OUT/previous/results.json} args=() rc=0
    if [ -e "$prev" ]; then args+=(--previous "$prev"); else say "no previous results at $prev"; fi
    harness merge "$OUT/shards" --out "$OUT" --title "pinharness nightly $(date -u +%F)" \
        ${GITHUB_RUN_ID:+--run-id "gh$GITHUB_RUN_ID"} "${args[@]}"
    if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then cat "$OUT/summary.md" >> "$GITHUB_STEP_SUMMARY"; fi
    if [ -e "$prev" ]; then
        local strict=()
        [ "${NIGHTLY_FAIL_ON_NEW:-0}" = 1 ] && strict=(--fail-on-new)
        harness compare "$prev" "$OUT/results.json" "${strict[@]}" | tee "$OUT/compare.txt" || rc=$?
    fi
    [ -f "$OUT/timing.txt" ] && { say "shard times:"; cat "$OUT/timing.txt" >&2; }
    return "$rc"
}

all() {
    local rc=0 k fs i t0=$SECONDS
    mkdir -p "$OUT"
    kvm
    for k in ${KERNELS//,/ }; do
        for fs in ${FSES//,/ }; do
            for ((i = 1; i <= SHARDS; i++)); do
                shard "$k" "$fs" "$i/$SHARDS" || rc=$?
            done
        done
    done
    echo "total $((SECONDS - t0))s" >> "$OUT/timing.txt"
    report || rc=$?
    return "$rc"
}

cmd=${1:-all}
case "$cmd" in
    all | plan | kvm | shard | previous | report) "$cmd" ;;
    *) echo "usage: ci/nightly.sh [all|plan|kvm|shard|previous|report]  (see the top of this file)" >&2; exit 2 ;;
esac
