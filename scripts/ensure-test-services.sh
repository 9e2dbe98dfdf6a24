#!/usr/bin/env bash
# Make sure the services the test suite needs exist on this (Debian) machine:
#   - a PostgreSQL server answering on 127.0.0.1:5432, whose `postgres` role has the
#     password `postgres` (the default TEST_DATABASE_URL);
#   - the redis-server and redis-cli binaries (tests start their own throwaway servers,
#     so no shared Redis is started here).
# Idempotent, and silent when everything is already there; one line per action taken.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432

say() { echo "ensure-test-services: $*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

as_postgres() {
    # From / so that psql does not complain about an unreadable working directory.
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && sudo -u postgres -- "$@")
    fi
}

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    say "apt-get install -y $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_answers() {
    command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$PG_HOST" -p "$PG_PORT"
}

# --- PostgreSQL ----------------------------------------------------------------------------
newest() { sort -V | tail -n 1; }

if ! pg_answers; then
    # Installed if some server binary and the client tools are there (any major version).
    if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null \
        || ! command -v psql >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null 2>&1; then
        apt_install postgresql postgresql-client
    fi

    # The newest configured cluster version, else the newest installed server (new cluster).
    version=$(find /etc/postgresql -mindepth 2 -maxdepth 2 -name main -printf '%h\n' \
        2>/dev/null | xargs -r -n 1 basename | newest)
    if [ -z "$version" ]; then
        version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' \
            2>/dev/null | newest)
        if [ -z "$version" ]; then
            say "no PostgreSQL server found under /usr/lib/postgresql" >&2
            exit 1
        fi
        say "pg_createcluster $version main"
        "${SUDO[@]}" pg_createcluster "$version" main >/dev/null
    fi
    if ! "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main status \
        >/dev/null 2>&1; then
        say "pg_ctlcluster $version main start"
        "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main start
    fi

    # Poll (bounded) until the server accepts connections on the TCP port.
    for _ in $(seq 1 120); do
        pg_answers && break
        sleep 0.25
    done
    if ! pg_answers; then
        say "PostgreSQL $version did not answer on $PG_HOST:$PG_PORT within 30 s" >&2
        exit 1
    fi
fi

# The default TEST_DATABASE_URL logs in as postgres/postgres (scram on a stock Debian
# pg_hba.conf); give the role that password unless it already works.
default_login_works() {
    PGPASSWORD=postgres PGCONNECT_TIMEOUT=5 psql -h "$PG_HOST" -p "$PG_PORT" -U postgres \
        -d postgres -X -q -tA -c 'SELECT 1' >/dev/null 2>&1
}
if [ -z "${TEST_DATABASE_URL:-}" ] && command -v psql >/dev/null 2>&1 \
    && ! default_login_works; then
    say "setting the password of role postgres to 'postgres' (default TEST_DATABASE_URL)"
    if ! as_postgres psql -p "$PG_PORT" -q -X -v ON_ERROR_STOP=1 \
        -c "ALTER ROLE postgres PASSWORD 'postgres'" >/dev/null; then
        say "could not set it: is the server on $PG_HOST:$PG_PORT a local cluster?" >&2
    fi
fi

# --- Redis binaries (no shared server) -------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1 \
    || ! command -v redis-check-rdb >/dev/null 2>&1; then
    # Keep the package from starting a shared redis-server: a policy-rc.d that says "no",
    # unless the machine already has one (then its own policy applies).
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$policy"
        trap '"${SUDO[@]}" rm -f "$policy"' EXIT
    fi
    apt_install redis-server redis-tools
fi
