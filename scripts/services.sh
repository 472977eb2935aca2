#!/usr/bin/env bash
# Make sure the local services projsync needs are up (developers and CI, Debian):
#   - PostgreSQL on 127.0.0.1:5432, user postgres, no password
#       postgres://postgres@127.0.0.1:5432/postgres
#   - Redis on 127.0.0.1:6379
#   - the pgvector extension in that PostgreSQL (Debian 12 has no package for
#     it: Debian's own source package is fetched from trixie and built against
#     the local server with make / make install, for that one version)
#   - git (the project shells out to it)
#   - python3 with pip and venv (scripts/fetch-model.sh uses pip download)
#   - Debian's chromium and chromium-driver (/usr/bin/chromium,
#     /usr/bin/chromedriver): the dashboard's browser tests
#     (tests/e2e/browser.rs) drive a headless Chromium through chromedriver
#   - Debian's firefox-esr and geckodriver (not packaged by Debian: built
#     with `cargo install geckodriver` at a pinned version into
#     $CARGO_HOME/bin, ~2 min once): the browser journey runs in Firefox too
#   - the test suite's Python tools (schemathesis, PyYAML,
#     openapi-spec-validator, the MCP client mcp) in a venv, pinned with hashes by
#     scripts/requirements-dev.txt (scripts/dev-venv.sh)
# and create the database $PROJSYNC_DB_NAME (default: projsync); at the end run
# scripts/fetch-model.sh (embedding model + ONNX Runtime) if that file exists.
#
# Idempotent and fast (~1 s) when everything is already up. Installs/starts
# things only when they are missing/stopped, which needs root.
#
# Environment:
#   PROJSYNC_SKIP_SERVICES=1      do nothing (exit 0)
#   PROJSYNC_SKIP_MODEL=1         do not run scripts/fetch-model.sh
#   PROJSYNC_DB_NAME=name         database to create (default: projsync)
#   PROJSYNC_SERVICES_TIMEOUT=30  seconds to wait for each service to answer
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
PG_URL="postgres://${PG_USER}@${PG_HOST}:${PG_PORT}/postgres"
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
REDIS_DIR=/var/lib/redis
REDIS_LOG_DIR=/var/log/redis
REDIS_LOG="${REDIS_LOG_DIR}/ci.log"
DB_NAME="${PROJSYNC_DB_NAME:-projsync}"
TIMEOUT="${PROJSYNC_SERVICES_TIMEOUT:-30}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Never prompt for a password and never hang on a connection attempt.
export PGCONNECT_TIMEOUT=5

log() { printf 'services: %s\n' "$*"; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

if [[ "${PROJSYNC_SKIP_SERVICES:-0}" == "1" ]]; then
    log "PROJSYNC_SKIP_SERVICES=1, skipping"
    exit 0
fi

[[ "$DB_NAME" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] \
    || die "PROJSYNC_DB_NAME='${DB_NAME}' is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)"
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "PROJSYNC_SERVICES_TIMEOUT='${TIMEOUT}' is not a number of seconds"

need_root() {
    [[ "$(id -u)" -eq 0 ]] || die "need root to $1; re-run this script as root"
}

# ---------------------------------------------------------------- apt helpers
APT_LOG=""
APT_UPDATED=0

apt_fail() {
    printf 'services: ERROR: %s failed; last lines of %s:\n' "$1" "$APT_LOG" >&2
    tail -n 25 "$APT_LOG" >&2 || true
    exit 1
}

APT=(apt-get -q -y -o DPkg::Lock::Timeout=120)

apt_log() {
    if [[ -z "$APT_LOG" ]]; then
        APT_LOG="$(mktemp /tmp/projsync-services-apt.XXXXXX.log)"
    fi
}

apt_install() {
    need_root "apt-get install $*"
    have apt-get || die "apt-get not found (not Debian?); install manually: $*"
    apt_log
    if [[ "$APT_UPDATED" -eq 0 ]]; then
        log "apt-get update (output in ${APT_LOG})"
        DEBIAN_FRONTEND=noninteractive "${APT[@]}" update >>"$APT_LOG" 2>&1 \
            || apt_fail "apt-get update"
        APT_UPDATED=1
    fi
    log "apt-get install $* (output in ${APT_LOG})"
    DEBIAN_FRONTEND=noninteractive "${APT[@]}" install "$@" >>"$APT_LOG" 2>&1 \
        || apt_fail "apt-get install $*"
}

# Print those of the given Debian packages that are not installed.
apt_missing() {
    local p
    for p in "$@"; do
        [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] \
            || printf '%s\n' "$p"
    done
}

# Run "$@" every 0.25 s until it succeeds or TIMEOUT seconds have passed.
wait_for() {
    local deadline=$((SECONDS + TIMEOUT))
    while :; do
        "$@" && return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.25
    done
}

# ------------------------------------------------------------------------ git
if ! have git; then
    apt_install git
fi
# Local repositories are read through `git cat-file --batch-command` (2.36).
git_version=$(git --version | awk '{print $3}')
if [ "$(printf '%s\n2.36\n' "$git_version" | sort -V | head -n1)" != "2.36" ]; then
    echo "services: git $git_version is too old: projsync needs git 2.36 or newer" >&2
    exit 1
fi

# --------------------------------------------------------------- C, libclang
# A few crates build C (libpg_query for the migration guard, ONNX bindings):
# a C compiler is needed, and the pg_query crate generates its bindings with
# libclang (bindgen) when it is built.
if ! have cc && ! have gcc; then
    apt_install gcc libc6-dev
fi
libclang_present() {
    compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null \
        || compgen -G '/usr/lib/*-linux-gnu/libclang*.so*' >/dev/null \
        || { [[ -n "${LIBCLANG_PATH:-}" ]] && compgen -G "${LIBCLANG_PATH}/libclang*.so*" >/dev/null; }
}
if libclang_present; then
    log "libclang: present"
else
    apt_install libclang-dev
    libclang_present || die "installed libclang-dev but no libclang*.so was found; set LIBCLANG_PATH to the directory that holds it"
    log "libclang: installed"
fi

# ------------------------------------------------------ Chromium, chromedriver
# The dashboard's browser tests (tests/e2e/browser.rs) start
# /usr/bin/chromedriver and drive /usr/bin/chromium headless; they fail (never
# skip) when either is absent. Debian's chromium-driver matches its chromium.
CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver
if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
    log "chromium: present ($("$CHROMIUM" --version 2>/dev/null || echo "version unknown"))"
else
    apt_install chromium chromium-driver
    [[ -x "$CHROMIUM" ]] || die "installed chromium but ${CHROMIUM} is not there; the browser tests need it"
    [[ -x "$CHROMEDRIVER" ]] || die "installed chromium-driver but ${CHROMEDRIVER} is not there; the browser tests need it"
    "$CHROMEDRIVER" --version >/dev/null 2>&1 || die "${CHROMEDRIVER} is installed but does not run ('${CHROMEDRIVER} --version' fails)"
    log "chromium: installed ($("$CHROMIUM" --version 2>/dev/null || echo "version unknown"))"
fi

# ------------------------------------------------------ Firefox, geckodriver
# The browser journey also runs in Firefox (tests/e2e/browser.rs), through
# geckodriver, which Debian does not package: it is built from crates.io at
# a pinned version (the test looks in $CARGO_HOME/bin, or PROJSYNC_GECKODRIVER).
FIREFOX=/usr/bin/firefox-esr
GECKODRIVER_VERSION=0.37.1
GECKODRIVER="${PROJSYNC_GECKODRIVER:-${CARGO_HOME:-$HOME/.cargo}/bin/geckodriver}"
if [[ -x "$FIREFOX" ]]; then
    log "firefox: present ($("$FIREFOX" --version 2>/dev/null || echo "version unknown"))"
else
    apt_install firefox-esr
    [[ -x "$FIREFOX" ]] || die "installed firefox-esr but ${FIREFOX} is not there; the browser tests need it"
    log "firefox: installed ($("$FIREFOX" --version 2>/dev/null || echo "version unknown"))"
fi
if [[ -x "$GECKODRIVER" ]] && "$GECKODRIVER" --version 2>/dev/null | grep -q "geckodriver ${GECKODRIVER_VERSION}"; then
    log "geckodriver: present (${GECKODRIVER_VERSION})"
else
    have cargo || die "geckodriver is missing and cargo is not installed to build it; install a Rust toolchain (rustup)"
    log "geckodriver: building ${GECKODRIVER_VERSION} with cargo install (once, about 2 minutes)"
    cargo install geckodriver --version "$GECKODRIVER_VERSION" --locked --quiet \
        || die "cannot build geckodriver ${GECKODRIVER_VERSION} (cargo install geckodriver); the browser tests need it"
    [[ -x "$GECKODRIVER" ]] || die "cargo installed geckodriver but ${GECKODRIVER} is not there; set PROJSYNC_GECKODRIVER to its path"
fi

# ----------------------------------------------------------------- PostgreSQL
pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; }
pg_login() { psql -X -w -q -tA -d "$PG_URL" -c 'SELECT 1' >/dev/null 2>&1; }
pg_version() { { ls /etc/postgresql 2>/dev/null || true; } | sort -V | tail -1; }
port_open() { timeout 2 bash -c ">/dev/tcp/${PG_HOST}/$1" 2>/dev/null; }
pg_has_cluster() {
    local v
    v="$(pg_version)"
    [[ -n "$v" && -f "/etc/postgresql/${v}/main/postgresql.conf" ]] && have pg_ctlcluster
}

pg_installed_by_us=0
pg_remote=0
if pg_ready; then
    log "postgres: already accepting connections on ${PG_HOST}:${PG_PORT}"
elif ! have pg_isready && port_open "$PG_PORT"; then
    # e.g. a CI service container: a server is there, only the client tools are missing.
    log "postgres: something listens on ${PG_HOST}:${PG_PORT}, installing client tools only"
    pg_remote=1
    apt_install postgresql-client
    wait_for pg_ready || die "something listens on ${PG_HOST}:${PG_PORT} but it is not a PostgreSQL accepting connections"
    log "postgres: accepting connections on ${PG_HOST}:${PG_PORT}"
else
    if ! pg_has_cluster; then
        log "postgres: not installed, installing"
        apt_install postgresql postgresql-client
        pg_installed_by_us=1
        pg_has_cluster || die "postgresql installed but no 'main' cluster under /etc/postgresql; create one with: pg_createcluster <version> main --port ${PG_PORT} --start"
    fi
    if ! have pg_isready || ! have psql || ! have createdb; then
        apt_install postgresql-client
    fi
    pg_ver="$(pg_version)"
    if pg_ctlcluster "$pg_ver" main status >/dev/null 2>&1; then
        log "postgres: cluster ${pg_ver}/main is running, waiting for it"
    else
        need_root "start PostgreSQL"
        log "postgres: starting cluster ${pg_ver}/main"
        pg_ctlcluster --skip-systemctl-redirect "$pg_ver" main start \
            || die "could not start PostgreSQL cluster ${pg_ver}/main; see /var/log/postgresql/postgresql-${pg_ver}-main.log"
    fi
    wait_for pg_ready || die "PostgreSQL is not accepting connections on ${PG_HOST}:${PG_PORT} after ${TIMEOUT}s; check 'pg_lsclusters' (is it on another port?) and /var/log/postgresql/postgresql-${pg_ver}-main.log"
    log "postgres: accepting connections on ${PG_HOST}:${PG_PORT}"

    if [[ "$pg_installed_by_us" -eq 1 ]]; then
        hba="$(cd / && runuser -u postgres -- psql -X -tAqc 'SHOW hba_file' 2>/dev/null || true)"
        [[ -n "$hba" && -f "$hba" ]] || hba="/etc/postgresql/${pg_ver}/main/pg_hba.conf"
        log "postgres: throwaway dev/CI database: setting TCP auth for 127.0.0.1/32 and ::1/128 to 'trust' in ${hba}"
        sed -i -E 's#^([[:space:]]*host[[:space:]]+[^[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+(127\.0\.0\.1/32|::1/128)[[:space:]]+)[^[:space:]]+#\1trust#' "$hba"
        pg_ctlcluster --skip-systemctl-redirect "$pg_ver" main reload \
            || die "could not reload PostgreSQL cluster ${pg_ver}/main"
    fi
fi

if ! wait_for pg_login; then
    die "PostgreSQL is up but cannot log in as ${PG_URL} without a password; add 'host all all 127.0.0.1/32 trust' to pg_hba.conf (see: psql -U postgres -c 'SHOW hba_file') and reload"
fi

db_exists() {
    [[ "$(psql -X -w -tA -d "$PG_URL" -c "SELECT 1 FROM pg_database WHERE datname='${DB_NAME}'")" == "1" ]]
}
if db_exists; then
    log "postgres: database '${DB_NAME}' exists"
else
    log "postgres: creating database '${DB_NAME}'"
    # A concurrent run may win the race; that is fine as long as it exists.
    createdb -w -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -- "$DB_NAME" || db_exists \
        || die "could not create database '${DB_NAME}'"
fi

# ------------------------------------------------------------------- pgvector
# Debian 12 has no pgvector package. Build Debian's own source package from
# trixie against the running server's major version with PGXS (make / make
# install into /usr/lib/postgresql/N and /usr/share/postgresql/N). The trixie
# deb-src is used through a private, throwaway apt state (its own sources,
# lists and cache under a temp dir): nothing is added to /etc/apt, so no trixie
# binary package can ever be installed and the machine's apt-get update is not
# slowed down.
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PGVECTOR_LOCK=/run/lock/projsync-pgvector.lock

pg_sql() { psql -X -w -q -tA -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
pgvector_available() {
    [[ "$(pg_sql "$PG_URL" "SELECT 1 FROM pg_available_extensions WHERE name='vector'" 2>/dev/null)" == "1" ]]
}
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
# Seconds from $1 to $2 (default: now), one decimal.
since() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.1f", b - a }'; }

PGVECTOR_LOG=""
pgvector_fail() {
    printf 'services: ERROR: pgvector: %s; last lines of %s:\n' "$1" "$PGVECTOR_LOG" >&2
    tail -n 30 "$PGVECTOR_LOG" >&2 || true
    exit 1
}

# Build and install pgvector for PostgreSQL major version $1.
pgvector_install() {
    local ver="$1" pg_config="/usr/lib/postgresql/$1/bin/pg_config" t0 t1 tmp src missing
    need_root "build and install the missing pgvector extension for PostgreSQL ${ver}"
    have apt-get || die "apt-get not found (not Debian?); install pgvector for PostgreSQL ${ver} manually"

    # One build at a time; a concurrent run may have installed it meanwhile.
    mkdir -p "$(dirname "$PGVECTOR_LOCK")"
    exec 9>"$PGVECTOR_LOCK"
    flock -w 900 9 || die "pgvector: another run holds ${PGVECTOR_LOCK} for 15 min"
    if pgvector_available; then
        exec 9>&-
        log "pgvector: installed by a concurrent run"
        return 0
    fi

    t0="$(now)"
    log "pgvector: not available in PostgreSQL ${ver}, building Debian's pgvector source package from trixie"
    # The trixie keys came with debian-archive-keyring 2023.3+deb12u2 (bookworm).
    missing=()
    [[ -f /usr/share/keyrings/debian-archive-trixie-automatic.gpg ]] || missing+=(debian-archive-keyring)
    mapfile -t -O "${#missing[@]}" missing < <(apt_missing "postgresql-server-dev-${ver}" dpkg-dev make gcc libc6-dev)
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
    fi
    [[ -x "$pg_config" ]] || die "pgvector: ${pg_config} not found (is postgresql-client-${ver} installed?)"
    t1="$(now)"

    tmp="$(mktemp -d /tmp/projsync-pgvector.XXXXXX)"
    PGVECTOR_LOG="${tmp}/build.log"
    mkdir -p "$tmp/apt/sources.list.d" "$tmp/apt/lists/partial" "$tmp/apt/cache/archives/partial" "$tmp/src"
    cat >"$tmp/apt/sources.list.d/trixie-src.sources" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: ${DEBIAN_KEYRING}
EOF
    local apt=("${APT[@]}" -o Dir::Etc::SourceList=/dev/null
        -o "Dir::Etc::SourceParts=${tmp}/apt/sources.list.d"
        -o "Dir::State::Lists=${tmp}/apt/lists" -o "Dir::Cache=${tmp}/apt/cache")
    log "pgvector: fetching the trixie source package (log: ${PGVECTOR_LOG})"
    "${apt[@]}" update >>"$PGVECTOR_LOG" 2>&1 || pgvector_fail "apt-get update of the trixie deb-src failed"
    (cd "$tmp/src" && "${apt[@]}" source --only-source pgvector) >>"$PGVECTOR_LOG" 2>&1 \
        || pgvector_fail "apt-get source pgvector (trixie) failed"
    src="$(find "$tmp/src" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)"
    [[ -n "$src" && -f "$src/Makefile" ]] || pgvector_fail "no pgvector source tree in ${tmp}/src"

    # OPTFLAGS= : no -march=native, so the build runs on any x86-64 (as Debian builds it).
    log "pgvector: building $(basename "$src") for PostgreSQL ${ver}"
    local mk=(make -C "$src" PG_CONFIG="$pg_config" OPTFLAGS=) t2
    t2="$(now)"
    { "${mk[@]}" -j "$(nproc 2>/dev/null || echo 2)" && "${mk[@]}" install; } >>"$PGVECTOR_LOG" 2>&1 \
        || pgvector_fail "build of $(basename "$src") failed"
    log "pgvector: make + make install took $(since "$t2")s"

    # Check it for real, in a scratch database.
    local check=projsync_pgvector_check got
    pg_sql "$PG_URL" "DROP DATABASE IF EXISTS ${check}" >>"$PGVECTOR_LOG" 2>&1 || true
    pg_sql "$PG_URL" "CREATE DATABASE ${check}" >>"$PGVECTOR_LOG" 2>&1 \
        || pgvector_fail "could not create the scratch database ${check}"
    got="$(pg_sql "${PG_URL%/*}/${check}" "CREATE EXTENSION IF NOT EXISTS vector; SELECT extversion FROM pg_extension WHERE extname='vector'" 2>>"$PGVECTOR_LOG")" || got=""
    pg_sql "$PG_URL" "DROP DATABASE IF EXISTS ${check}" >>"$PGVECTOR_LOG" 2>&1 || true
    [[ -n "$got" ]] || pgvector_fail "installed, but CREATE EXTENSION vector fails in PostgreSQL on ${PG_HOST}:${PG_PORT} (is that server the local PostgreSQL ${ver}?)"
    exec 9>&-
    log "pgvector: ${got} installed for PostgreSQL ${ver} in $(since "$t0")s (of which build dependencies $(since "$t0" "$t1")s)"
    rm -rf "$tmp"
}

pg_major="$(pg_sql "$PG_URL" 'SHOW server_version_num' 2>/dev/null || true)"
[[ "$pg_major" =~ ^[0-9]+$ ]] || die "could not read server_version_num from PostgreSQL on ${PG_HOST}:${PG_PORT}"
pg_major=$((pg_major / 10000))
if pgvector_available; then
    log "postgres: pgvector available (PostgreSQL ${pg_major})"
elif [[ "$pg_remote" -eq 1 || ! -d "/usr/lib/postgresql/${pg_major}/bin" || ! -d "/etc/postgresql/${pg_major}" ]]; then
    log "postgres: pgvector NOT available and the server on ${PG_HOST}:${PG_PORT} (PostgreSQL ${pg_major}) is not a local cluster; not building it: that server itself must have pgvector (e.g. the pgvector/pgvector:pg${pg_major} image)"
else
    pgvector_install "$pg_major"
fi

# ---------------------------------------------------------------------- Redis
redis_ready() {
    [[ "$(timeout 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]
}

if have redis-cli && redis_ready; then
    log "redis: already answering on ${REDIS_HOST}:${REDIS_PORT}"
else
    if ! have redis-server; then
        log "redis: not installed, installing"
        apt_install redis-server redis-tools
    elif ! have redis-cli; then
        apt_install redis-tools
    fi
    # The package may have started its own instance.
    if ! redis_ready; then
        need_root "start Redis"
        mkdir -p "$REDIS_DIR" "$REDIS_LOG_DIR"
        log "redis: starting redis-server on ${REDIS_HOST}:${REDIS_PORT} (log: ${REDIS_LOG})"
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
            --save "" --appendonly no --dir "$REDIS_DIR" --logfile "$REDIS_LOG" \
            || die "redis-server failed to start; see ${REDIS_LOG}"
        if ! wait_for redis_ready; then
            printf 'services: ERROR: Redis is not answering on %s:%s after %ss (port taken? password set?); last lines of %s:\n' \
                "$REDIS_HOST" "$REDIS_PORT" "$TIMEOUT" "$REDIS_LOG" >&2
            tail -n 15 "$REDIS_LOG" >&2 || true
            exit 1
        fi
    fi
    log "redis: answering on ${REDIS_HOST}:${REDIS_PORT}"
fi

# --------------------------------------------------------------------- Python
# scripts/fetch-model.sh downloads the embedding model and ONNX Runtime with pip.
py_check() {
    python3 -c 'import sys, ensurepip, venv, pip; print("python " + sys.version.split()[0] + ", pip " + pip.__version__)' 2>/dev/null
}
if py_info="$(py_check)"; then
    log "python: ${py_info}"
else
    missing=()
    have python3 || missing+=(python3)
    mapfile -t -O "${#missing[@]}" missing < <(apt_missing python3-pip python3-venv)
    ((${#missing[@]})) || die "python3 ($(command -v python3)) has no pip or venv module, and Debian's python3-pip and python3-venv are installed: put /usr/bin first in PATH or install pip for that python3"
    apt_install "${missing[@]}"
    hash -r
    if ! py_info="$(py_check)" || ! python3 -m pip --version >/dev/null 2>&1; then
        die "installed ${missing[*]}, but 'python3 -m pip' still fails for $(command -v python3 || echo python3)"
    fi
    log "python: ${py_info}"
fi

# The test tools' venv (a few ms when it is already there).
bash "${SCRIPT_DIR}/dev-venv.sh" || die "scripts/dev-venv.sh failed: the test suite's Python tools are not installed"

log "ready: DATABASE_URL=postgres://${PG_USER}@${PG_HOST}:${PG_PORT}/${DB_NAME} REDIS_URL=redis://${REDIS_HOST}:${REDIS_PORT}"

# ---------------------------------------------------------------------- model
FETCH_MODEL="${SCRIPT_DIR}/fetch-model.sh"
if [[ "${PROJSYNC_SKIP_MODEL:-0}" == "1" ]]; then
    log "model: PROJSYNC_SKIP_MODEL=1, skipping ${FETCH_MODEL}"
elif [[ ! -f "$FETCH_MODEL" ]]; then
    log "model: ${FETCH_MODEL} not present, skipping the model download"
else
    log "model: running ${FETCH_MODEL}"
    bash "$FETCH_MODEL" || die "${FETCH_MODEL} failed (set PROJSYNC_SKIP_MODEL=1 to skip the model step)"
fi
