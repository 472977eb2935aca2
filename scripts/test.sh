#!/usr/bin/env bash
# The whole test suite, as CI runs it: services up, formatting, lints, the
# layering rule, the OpenAPI check, then every test against the real
# PostgreSQL and Redis of this machine, then the API fuzz
# (scripts/fuzz-api.sh; PROJSYNC_FUZZ=0 leaves it out, saying so).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "test: cargo is not installed; install a Rust toolchain (1.85 or newer, e.g. with rustup)" >&2
    exit 1
fi

bash scripts/services.sh

echo "test: cargo fmt --check"
cargo fmt --all -- --check

echo "test: cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "test: layering (the domain crate knows no I/O crates)"
if cargo tree -p projsync-domain -e normal --prefix none --locked \
    | grep -E '^(tokio|sqlx|redis|axum|octocrab|apalis|reqwest) ' ; then
    echo "test: projsync-domain must not depend on the crates above (see ARCHITECTURE.md)" >&2
    exit 1
fi

echo "test: layering (the pipeline knows no concrete source, no embedding runtime)"
if cargo tree -p projsync-pipeline -e normal --prefix none --locked \
    | grep -E '^(projsync-source-git|projsync-source-github|projsync-embed-local|ort|octocrab) ' ; then
    echo "test: projsync-pipeline must reach sources through SourceFactory and models through Embedder (see ARCHITECTURE.md)" >&2
    exit 1
fi

echo "test: layering (the MCP server uses the API's service layer, no pipeline, source or model runtime)"
if cargo tree -p projsync-mcp -e normal --prefix none --locked \
    | grep -E '^(projsync-pipeline|projsync-sources|projsync-source-git|projsync-source-github|projsync-embed-local|ort|octocrab) ' ; then
    echo "test: projsync-mcp must reach everything through projsync-api (see ARCHITECTURE.md)" >&2
    exit 1
fi

echo "test: layering (the metrics crate does no I/O: the ledger's numbers are handed in)"
if cargo tree -p projsync-metrics -e normal --prefix none --locked \
    | grep -E '^(tokio|sqlx|redis|axum|reqwest|projsync-store) ' ; then
    echo "test: projsync-metrics must not depend on the crates above (see ARCHITECTURE.md)" >&2
    exit 1
fi

echo "test: layering (the migration linter is pure: no database, no I/O)"
if cargo tree -p projsync-migrate-lint -e normal --prefix none --locked \
    | grep -E '^(tokio|sqlx|redis|axum|reqwest|projsync-store) ' ; then
    echo "test: projsync-migrate-lint must not depend on the crates above (see ARCHITECTURE.md)" >&2
    exit 1
fi

echo "test: layering (code analysis is pure: no projsync crate, no I/O)"
if cargo tree -p projsync-analyze -e normal --prefix none --locked \
    | grep -E '^(projsync-[a-z-]+|tokio|sqlx|redis|axum|reqwest) ' | grep -v '^projsync-analyze ' ; then
    echo "test: projsync-analyze must not depend on the crates above (see ARCHITECTURE.md)" >&2
    exit 1
fi

echo "test: layering (only the binary exports telemetry; the library crates use the trace-context helpers)"
for crate in projsync-api projsync-pipeline projsync-queue projsync-store; do
    if cargo tree -p "$crate" -e normal --prefix none --locked \
        | grep -E '^(opentelemetry_sdk|opentelemetry-otlp|opentelemetry-http|opentelemetry-appender-tracing) ' ; then
        echo "test: $crate must depend on projsync-telemetry without its otlp feature (see docs/telemetry.md)" >&2
        exit 1
    fi
done

# The routes ↔ paths check also runs as a Rust test; this adds full
# OpenAPI validation, with the pinned tools of scripts/dev-venv.sh.
echo "test: OpenAPI document"
venv_python="$(bash scripts/dev-venv.sh --print-python)"
"$venv_python" scripts/check-openapi.py

echo "test: cargo test"
log="$(mktemp /tmp/projsync-test.XXXXXX.log)"
set +e
cargo test --workspace --locked --no-fail-fast -- "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# cargo ends with the doc tests' (empty) summary: close with the totals of
# every test binary instead.
read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")
rm -f "$log"

# The API fuzzed against its OpenAPI document (about two minutes), with the
# binary cargo test just built; it counts as one more test.
if [[ "${PROJSYNC_FUZZ:-1}" == "0" ]]; then
    echo "test: API fuzz SKIPPED (PROJSYNC_FUZZ=0)"
else
    echo "test: API fuzz (schemathesis against crates/api/openapi.yaml)"
    if bash scripts/fuzz-api.sh; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        status=1
    fi
fi
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
