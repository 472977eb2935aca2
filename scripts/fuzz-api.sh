#!/usr/bin/env bash
# Fuzz the HTTP API against its own description (crates/api/openapi.yaml)
# with schemathesis, on a throwaway database, in about two minutes:
#   1. a fresh database (migrated), a Redis namespace of its own, a tenant
#      `fuzz` with an admin key, a small Git repository under an allowed
#      root, a worker, one project with a succeeded and a failed sync;
#   2. `projsync api` on a free port of 127.0.0.1;
#   3. `schemathesis run` of every operation with the bearer key, checking
#      that no answer is a 5xx, and that each answer's status, content type,
#      headers and body are the ones the document gives for the operation;
#   4. everything stopped, the database dropped, the namespace deleted.
# Exits non-zero on any finding (and on any failure to set up).
#
# It runs the projsync binary that `cargo test` / `cargo build` already
# built (target/debug/projsync, or PROJSYNC_BIN); it builds nothing.
# Needs PostgreSQL (pgvector) and Redis of scripts/services.sh, and the
# pinned schemathesis of scripts/dev-venv.sh (installed here if missing).
#
# Environment:
#   PROJSYNC_BIN=path            the binary (default: target/debug/projsync)
#   PROJSYNC_FUZZ_SECONDS=95     schemathesis's time budget (--max-time; it overruns
#                                it by 5 to 25 s to end its stateful scenarios: about
#                                two minutes in all)
#   PROJSYNC_FUZZ_SEED=N         generate as a run did (the seed is printed; the
#                                seeded ids differ from run to run)
#   PROJSYNC_FUZZ_KEEP=1         keep the work folder (logs, reports) even on success
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
BIN="${PROJSYNC_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/projsync}"
BUDGET="${PROJSYNC_FUZZ_SECONDS:-95}"
SEED="${PROJSYNC_FUZZ_SEED:-}"

say() { printf 'fuzz-api: %s\n' "$*" >&2; }
die() { printf 'fuzz-api: ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$BUDGET" =~ ^[1-9][0-9]*$ ]] || die "PROJSYNC_FUZZ_SECONDS='${BUDGET}' is not a number of seconds"
[[ -z "$SEED" || "$SEED" =~ ^[0-9]+$ ]] || die "PROJSYNC_FUZZ_SEED='${SEED}' is not a number"
[[ -x "$BIN" ]] || die "no projsync binary at ${BIN}; build it first (scripts/test.sh's cargo test does, or: cargo build --locked -p projsync), or set PROJSYNC_BIN"
for tool in git psql redis-cli curl; do
    command -v "$tool" >/dev/null 2>&1 || die "${tool} is not installed; run scripts/services.sh"
done
pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null \
    || die "PostgreSQL is not answering on ${PG_HOST}:${PG_PORT}; run scripts/services.sh"
[[ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]] \
    || die "Redis is not answering on ${REDIS_HOST}:${REDIS_PORT}; run scripts/services.sh"
PY="$(bash scripts/dev-venv.sh --print-python)"
SCHEMATHESIS="$(dirname "$PY")/schemathesis"
[[ -x "$SCHEMATHESIS" ]] || die "no schemathesis in the venv of scripts/dev-venv.sh"

started=$SECONDS
WORK="$(mktemp -d /tmp/projsync-fuzz.XXXXXX)"
suffix="${WORK##*.}"
DB="projsync_fuzz_${suffix,,}"
ADMIN_URL="postgres://postgres@${PG_HOST}:${PG_PORT}"
export PGCONNECT_TIMEOUT=5

# ------------------------------------------------------------------ cleanup
PIDS=()
ok=0
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # The worker hands running syncs back on SIGTERM; do not wait long.
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    psql -X -w -q -d "${ADMIN_URL}/postgres" -c "DROP DATABASE IF EXISTS \"${DB}\" WITH (FORCE)" >/dev/null 2>&1 \
        || say "could not drop database ${DB}"
    redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --scan --pattern "${DB}:*" 2>/dev/null \
        | xargs -r -n 500 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" del >/dev/null 2>&1 || true
    if [[ "$ok" -eq 1 && "${PROJSYNC_FUZZ_KEEP:-0}" != "1" ]]; then
        rm -rf "$WORK"
    else
        say "logs and reports kept in ${WORK}"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -------------------------------------------------------------- environment
mkdir -p "$WORK/roots" "$WORK/report"
# Only the settings below over the defaults: nothing of the caller's own.
unset PROJSYNC_CONFIG PROJSYNC_TENANT PROJSYNC_FAILPOINT RUST_LOG
while read -r var; do unset "$var"; done < <(compgen -e | grep '^PROJSYNC__' || true)
export PROJSYNC__DATABASE__ADMIN_URL="${ADMIN_URL}/${DB}"
export PROJSYNC__DATABASE__URL="postgres://projsync_app@${PG_HOST}:${PG_PORT}/${DB}"
export PROJSYNC__REDIS__URL="redis://${REDIS_HOST}:${REDIS_PORT}"
export PROJSYNC__REDIS__NAMESPACE="$DB"
export PROJSYNC__API__LISTEN="127.0.0.1:0"
export PROJSYNC__API__RATE_LIMIT_PER_KEY=0
export PROJSYNC__API__RATE_LIMIT_PER_TENANT=0
# Every 5xx is a finding: no cap on event streams to run into either
# (api.max_streams; ignored by a binary without it).
export PROJSYNC__API__MAX_STREAMS=100000
export PROJSYNC__EMBEDDINGS__ENABLED=false
export PROJSYNC__SOURCES__LOCAL__ALLOWED_ROOTS="$WORK/roots"
export PROJSYNC__WORKER__CONCURRENCY=1
# Any free port for the worker's health and metrics listener.
export PROJSYNC__WORKER__LISTEN="127.0.0.1:0"
export PROJSYNC__LOG__LEVEL=info

# A GitHub that knows no repository, on this machine: a project the fuzzer
# creates with provider `github` is refused (422) without leaving it.
cat >"$WORK/fake_github.py" <<'PY'
import http.server, sys

class NotFound(http.server.BaseHTTPRequestHandler):
    def answer(self):
        body = b'{"message":"Not Found"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_HEAD = do_POST = answer
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
PY
"$PY" "$WORK/fake_github.py" "$WORK/github.port" >"$WORK/github.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [[ -s "$WORK/github.port" ]] && break; sleep 0.05; done
[[ -s "$WORK/github.port" ]] || die "the fake GitHub did not start; see ${WORK}/github.log"
export PROJSYNC__GITHUB__API_URL="http://127.0.0.1:$(cat "$WORK/github.port")"

# ------------------------------------------------------------ database, key
say "database ${DB}, Redis namespace ${DB}, work folder ${WORK}"
psql -X -w -q -v ON_ERROR_STOP=1 -d "${ADMIN_URL}/postgres" -c "CREATE DATABASE \"${DB}\"" >/dev/null \
    || die "could not create database ${DB}"
"$BIN" migrate >"$WORK/migrate.log" 2>&1 || { tail -n 20 "$WORK/migrate.log" >&2; die "projsync migrate failed"; }
"$BIN" tenant add fuzz >/dev/null 2>"$WORK/tenant.log" || { cat "$WORK/tenant.log" >&2; die "projsync tenant add failed"; }
KEY="$("$BIN" --tenant fuzz key create --role admin --name fuzz 2>"$WORK/key.log")" \
    || { cat "$WORK/key.log" >&2; die "projsync key create failed"; }
[[ "$KEY" =~ ^psk_[0-9a-f]{64}$ ]] || die "projsync key create printed no key"

# --------------------------------------------------- a repository, its syncs
make_repo() {
    mkdir -p "$1/src"
    git -C "$1" init -q -b main
    printf '# demo\n\nA small repository for the API fuzz.\n' >"$1/README.md"
    printf 'fn main() {\n    println!("hello");\n}\n\nfn parse_http_request() {}\n' >"$1/src/main.rs"
    printf 'def handler(event):\n    return event\n' >"$1/src/app.py"
    git -C "$1" add -A
    git -C "$1" -c user.name=fuzz -c user.email=fuzz@localhost commit -q -m "demo"
}
add_project() {
    # add_project NAME PATH: print the new project's id.
    "$BIN" --tenant fuzz project add --name "$1" --path "$2" --branch main 2>"$WORK/project-$1.log" \
        || { cat "$WORK/project-$1.log" >&2; die "projsync project add $1 failed"; }
}
sync_of() {
    # sync_of PROJECT: enqueue a sync of its default branch, follow it, print its id.
    timeout 60 "$BIN" --tenant fuzz sync --project "$1" --watch >"$WORK/sync-$1.out" 2>"$WORK/sync-$1.log" || true
    head -n 1 "$WORK/sync-$1.out"
}
uuid_re='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
REPO="$WORK/roots/demo"
GONE="$WORK/roots/gone"
make_repo "$REPO"
make_repo "$GONE"

"$BIN" worker >"$WORK/worker.log" 2>&1 &
PIDS+=($!)
PROJECT="$(add_project demo "$REPO")"
[[ "$PROJECT" =~ $uuid_re ]] || die "projsync project add printed no project id"
SYNC_OK="$(sync_of demo)"
[[ "$SYNC_OK" =~ $uuid_re ]] && grep -q succeeded "$WORK/sync-demo.out" \
    || { cat "$WORK/sync-demo.out" "$WORK/sync-demo.log" >&2; tail -n 20 "$WORK/worker.log" >&2; die "the seed sync did not succeed"; }
# A project whose repository is gone: its sync fails at once, so retry and
# discard have something to act on.
PROJECT_GONE="$(add_project gone "$GONE")"
[[ "$PROJECT_GONE" =~ $uuid_re ]] || die "projsync project add printed no project id"
rm -rf "$GONE"
failed_sync() {
    local id
    id="$(sync_of gone)"
    [[ "$id" =~ $uuid_re ]] && grep -q failed "$WORK/sync-gone.out" \
        || { cat "$WORK/sync-gone.out" "$WORK/sync-gone.log" >&2; tail -n 20 "$WORK/worker.log" >&2; die "the failing seed sync did not fail"; }
    printf '%s\n' "$id"
}
# One for retry (it fails again each time), one for discard (once).
SYNC_RETRY="$(failed_sync)"
SYNC_DISCARD="$(failed_sync)"
say "seeded: projects ${PROJECT} (demo), ${PROJECT_GONE} (repository gone); syncs ${SYNC_OK} (succeeded), ${SYNC_RETRY} and ${SYNC_DISCARD} (failed)"

# ---------------------------------------------------------------------- API
"$BIN" api >"$WORK/api.log" 2>&1 &
API_PID=$!
PIDS+=("$API_PID")
BASE=""
for _ in $(seq 1 200); do
    BASE="$(grep -o 'api listening on http://[0-9.:]*' "$WORK/api.log" | head -n 1 | sed 's/.* on //')" || true
    [[ -n "$BASE" ]] && break
    kill -0 "$API_PID" 2>/dev/null || break
    sleep 0.05
done
[[ -n "$BASE" ]] || { tail -n 20 "$WORK/api.log" >&2; die "projsync api did not start"; }
curl -fsS --max-time 5 "${BASE}/healthz" >/dev/null || { tail -n 20 "$WORK/api.log" >&2; die "${BASE}/healthz does not answer"; }
say "api on ${BASE} ($(( SECONDS - started )) s of setup)"

# -------------------------------------------------------------- schemathesis
# Path ids are mostly the seeded ones (else almost every request would be a
# 404); the repository path, a restore's sync and the sign-in key are often
# the real ones, so that those operations also succeed. (The key is a
# throwaway of a throwaway database.)
# Real qualified names of the seeded project's symbols, percent-encoded as
# a client sends them, so that the references operation reaches its logic:
# schemathesis filters out path parameters holding `/` (every qualified
# name does), and too many filtered examples fail Hypothesis's health check.
SYMBOL_VALUES="$(curl -fsS --max-time 10 -H "authorization: Bearer ${KEY}" \
    "${BASE}/api/v1/projects/${PROJECT}/symbols?limit=5" \
    | python3 -c 'import json, sys, urllib.parse
names = [s["qualified_name"] for s in json.load(sys.stdin)] or ["README.md#none"]
print(", ".join(json.dumps(urllib.parse.quote(n, safe="")) for n in names))')" \
    || die "cannot list the seeded project's symbols"
cat >"$WORK/schemathesis.toml" <<EOF
[auth.openapi.bearerAuth]
bearer = "\${PROJSYNC_FUZZ_KEY}"

[dictionaries.project_ids]
values = ["${PROJECT}", "${PROJECT}", "${PROJECT}", "${PROJECT_GONE}"]

[dictionaries.sync_ids]
values = ["${SYNC_OK}", "${SYNC_RETRY}", "${SYNC_DISCARD}"]

[dictionaries.retry_syncs]
values = ["${SYNC_RETRY}"]

[dictionaries.discard_syncs]
values = ["${SYNC_DISCARD}"]

[dictionaries.succeeded_syncs]
values = ["${SYNC_OK}"]

[dictionaries.repositories]
values = ["${REPO}"]

[dictionaries.keys]
values = ["${KEY}"]

[dictionaries.symbols]
values = [${SYMBOL_VALUES}]

[[operations]]
include-path-regex = "^/api/v1/projects/\\\\{id\\\\}"
exclude-operation-id = ["symbolReferences"]
parameters = { "path.id" = { dictionary = "project_ids", probability = 0.9 }, "body.sync_id" = { dictionary = "succeeded_syncs", probability = 0.7 }, "body.as_of" = { dictionary = "succeeded_syncs", probability = 0.5 } }

[[operations]]
include-path-regex = "^/api/v1/syncs/\\\\{id\\\\}"
exclude-operation-id = ["retrySync", "discardSync"]
parameters = { "path.id" = { dictionary = "sync_ids", probability = 0.9 } }

[[operations]]
include-operation-id = "retrySync"
parameters = { "path.id" = { dictionary = "retry_syncs", probability = 0.9 } }

[[operations]]
include-operation-id = "discardSync"
parameters = { "path.id" = { dictionary = "discard_syncs", probability = 0.9 } }

[[operations]]
include-operation-id = "symbolReferences"
parameters = { "path.id" = { dictionary = "project_ids", probability = 0.9 }, "path.qualified_name" = { dictionary = "symbols", probability = 0.9 } }

[[operations]]
include-operation-id = "signIn"
parameters = { "body.key" = { dictionary = "keys", probability = 0.5 } }

[[operations]]
include-operation-id = "createProject"
parameters = { "body.repository.path" = { dictionary = "repositories", probability = 0.5 } }
EOF

# One worker: with two, CPython 3.11's ast module (which Hypothesis calls to
# describe its filters) races across threads and fails a run at random with
# "SystemError: AST constructor recursion depth mismatch" (CPython
# gh-106905). The API, its worker and Postgres share the two cores anyway.
#
# filter_too_much is suppressed: a symbol's qualified name (a path
# parameter of the references operation) holds `/` and `#`, and
# schemathesis drops generated path values it cannot place in a URL often
# enough to trip that health check at random. It only judges the
# generator; every check on the responses still runs.
checks="not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"
args=(--config-file "$WORK/schemathesis.toml" run "${BASE}/api/v1/openapi.yaml"
    --checks "$checks" --max-time "$BUDGET" --workers 1 --request-timeout 20
    --suppress-health-check=filter_too_much
    --generation-database none --no-color
    --report junit,ndjson --report-dir "$WORK/report")
[[ -n "$SEED" ]] && args+=(--seed "$SEED")
say "schemathesis $("$SCHEMATHESIS" --version | sed 's/.*version //'): ${checks}, ${BUDGET} s"
set +e
(cd "$WORK" && PROJSYNC_FUZZ_KEY="$KEY" "$SCHEMATHESIS" "${args[@]}") 2>&1 | tee "$WORK/schemathesis.out"
status=${PIPESTATUS[0]}
set -e

if grep -q -E 'internal error|panicked' "$WORK/api.log"; then
    say "the API logged internal errors or panics:"
    grep -E 'internal error|panicked' "$WORK/api.log" | head -n 20 >&2
    [[ "$status" -ne 0 ]] || status=1
fi
kill -0 "$API_PID" 2>/dev/null || { say "the API is not running any more"; status=1; }
if [[ "$status" -ne 0 ]]; then
    say "FAILED (schemathesis exit ${status}) after $(( SECONDS - started )) s; last lines of the API log:"
    tail -n 15 "$WORK/api.log" >&2
    exit "$status"
fi
ok=1
say "passed in $(( SECONDS - started )) s"
