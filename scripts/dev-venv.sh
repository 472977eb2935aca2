#!/usr/bin/env bash
# The Python tools of the test suite (schemathesis, PyYAML,
# openapi-spec-validator, the MCP client mcp), in a venv of their own:
#   ${PROJSYNC_CACHE_DIR:-~/.cache/projsync}/venv
# installed from PyPI exactly as pinned, with hashes, in
# scripts/requirements-dev.txt. Run by scripts/services.sh.
#
# Idempotent: when the venv already holds what the requirements file pins
# (a marker, written last, records its sha256 and the Python version), it
# returns at once (a few ms). Otherwise the venv is made anew; a run that was
# interrupted leaves no marker, so the next run starts over.
# It installs or fails: nothing is skipped because a tool is missing.
#
# With --print-python, prints the venv's python on stdout (nothing else).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQUIREMENTS="${SCRIPT_DIR}/requirements-dev.txt"
CACHE="${PROJSYNC_CACHE_DIR:-${HOME:?HOME is not set; set PROJSYNC_CACHE_DIR}/.cache/projsync}"
VENV="${CACHE}/venv"
MARKER="${VENV}/.projsync-requirements"

say() { printf 'dev-venv: %s\n' "$*" >&2; }
die() { printf 'dev-venv: ERROR: %s\n' "$*" >&2; exit 1; }

[[ -f "$REQUIREMENTS" ]] || die "${REQUIREMENTS} is missing"
command -v python3 >/dev/null 2>&1 \
    || die "python3 is not installed (scripts/services.sh installs it on Debian)"
python3 -c 'import venv, ensurepip' 2>/dev/null \
    || die "python3 ($(command -v python3)) has no venv/ensurepip module; on Debian: apt-get install python3-venv"
py_version="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ "$py_version" == "3.11" ]] \
    || die "python3 is ${py_version}; ${REQUIREMENTS} pins wheels (with hashes) for CPython 3.11 on Linux x86_64: regenerate it for this Python (see its header)"
case "$(uname -s)/$(uname -m)" in
    Linux/x86_64) ;;
    *) die "${REQUIREMENTS} pins wheels for Linux x86_64, this is $(uname -s)/$(uname -m): regenerate it (see its header)" ;;
esac

want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1) python${py_version}"
if [[ -x "${VENV}/bin/python" && -f "$MARKER" && "$(cat "$MARKER")" == "$want" ]] \
    && [[ -x "${VENV}/bin/schemathesis" ]] && "${VENV}/bin/python" -c '' 2>/dev/null; then
    say "venv ready in ${VENV}"
    [[ "${1:-}" == "--print-python" ]] && printf '%s\n' "${VENV}/bin/python"
    exit 0
fi

mkdir -p "$CACHE" || die "cannot create ${CACHE}; set PROJSYNC_CACHE_DIR to a writable folder"
LOCK="${CACHE}/.venv.lock"
exec 9>"$LOCK"
flock -w 600 9 || die "another run holds ${LOCK} for 10 min"
# A concurrent run may have made it meanwhile.
if [[ -x "${VENV}/bin/python" && -f "$MARKER" && "$(cat "$MARKER")" == "$want" ]]; then
    say "venv made by a concurrent run in ${VENV}"
    [[ "${1:-}" == "--print-python" ]] && printf '%s\n' "${VENV}/bin/python"
    exit 0
fi

t0=$SECONDS
log="$(mktemp /tmp/projsync-dev-venv.XXXXXX.log)"
fail() { tail -n 25 "$log" >&2; die "$1 (log: ${log})"; }
say "creating ${VENV} with the pinned test tools"
rm -rf "$VENV"
python3 -m venv "$VENV" >>"$log" 2>&1 || fail "python3 -m venv failed"
# Wheels only, every one pinned by hash, and no dependency outside the file.
"${VENV}/bin/python" -m pip install --disable-pip-version-check --no-input \
    --require-hashes --no-deps --only-binary=:all: -r "$REQUIREMENTS" >>"$log" 2>&1 \
    || fail "pip install -r ${REQUIREMENTS} failed (is PyPI reachable?)"
"${VENV}/bin/python" -m pip check --disable-pip-version-check >>"$log" 2>&1 \
    || fail "the pinned requirements are inconsistent (pip check); regenerate ${REQUIREMENTS}"
"${VENV}/bin/python" -c 'import yaml, openapi_spec_validator, schemathesis, mcp' >>"$log" 2>&1 \
    || fail "the venv cannot import its tools"
printf '%s\n' "$want" >"$MARKER"
rm -f "$log"
say "venv ready in ${VENV} ($(( SECONDS - t0 )) s): $("${VENV}/bin/schemathesis" --version 2>/dev/null | head -n 1)"
[[ "${1:-}" == "--print-python" ]] && printf '%s\n' "${VENV}/bin/python"
exit 0
