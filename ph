#!/usr/bin/env bash
# pinharness entry point for a fresh Debian/Ubuntu machine.
#   ./ph run  [ARGS]   the main job: the pin matrix on the default kernels (python -m harness run)
#   ./ph test [ARGS]   the test suite: unit tier + VM tier (boots real guests)
#   ./ph <command>     any other `python -m harness` command (report, boot, image, setup, ...)
# It makes .venv (Python deps from PyPI), installs the host packages it needs
# (qemu-system-x86, mkfs tools, mmdebstrap, gcc...; needs root or passwordless sudo),
# and caches kernels and guest images under ${PINHARNESS_CACHE:-~/.cache/pinharness}.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else
    echo "pinharness: error: need root or passwordless sudo to run: $*" >&2; exit 2; fi; }

py=${PYTHON:-python3}
if ! command -v "$py" >/dev/null; then
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$py" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        "$py" -m venv .venv
    fi
fi
stamp=.venv/.pinharness-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" && touch "$stamp"
fi
.venv/bin/python -m harness setup

cmd=${1:-test}
[ $# -gt 0 ] && shift
case "$cmd" in
    test) exec .venv/bin/python -m pytest tests -m "not slow" --require-vm "$@" ;;
    unit) exec .venv/bin/python -m pytest tests/unit -m "not vm and not slow" "$@" ;;
    *)    exec .venv/bin/python -m harness "$cmd" "$@" ;;
esac
