#!/usr/bin/env bash
# Make sure the local services projsync needs are up (developers and CI, Debian):
#   - PostgreSQL on 127.0.0.1:5432, user postgres, no password
#       postgres://postgres@127.0.0.1:5432/postgres
#   - Redis on 127.0.0.1:6379
#   - git (the project shells out to it)
# and create the database $PROJSYNC_DB_NAME (default: projsync).
#
# Idempotent and fast (~1 s) when everything is already up. Installs/starts
# things only when they are missing/stopped, which needs root.
#
# Environment:
#   PROJSYNC_SKIP_SERVICES=1      do nothing (exit 0)
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

apt_install() {
    need_root "apt-get install $*"
    have apt-get || die "apt-get not found (not Debian?); install manually: $*"
    if [[ -z "$APT_LOG" ]]; then
        APT_LOG="$(mktemp /tmp/projsync-services-apt.XXXXXX.log)"
    fi
    local apt=(apt-get -q -y -o DPkg::Lock::Timeout=120)
    if [[ "$APT_UPDATED" -eq 0 ]]; then
        log "apt-get update (output in ${APT_LOG})"
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >>"$APT_LOG" 2>&1 \
            || apt_fail "apt-get update"
        APT_UPDATED=1
    fi
    log "apt-get install $* (output in ${APT_LOG})"
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "$@" >>"$APT_LOG" 2>&1 \
        || apt_fail "apt-get install $*"
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
if pg_ready; then
    log "postgres: already accepting connections on ${PG_HOST}:${PG_PORT}"
elif ! have pg_isready && port_open "$PG_PORT"; then
    # e.g. a CI service container: a server is there, only the client tools are missing.
    log "postgres: something listens on ${PG_HOST}:${PG_PORT}, installing client tools only"
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

log "ready: DATABASE_URL=postgres://${PG_USER}@${PG_HOST}:${PG_PORT}/${DB_NAME} REDIS_URL=redis://${REDIS_HOST}:${REDIS_PORT}"
