#!/bin/sh
# `make mlflow-server`: `mlflow server ARGS` with its runs, registry and aliases in PostgreSQL, which takes many
# writers at once (SQLite, the embedded store, serialises them and answers "database is locked" under load).
#
#   MLFLOW_BACKEND_STORE_URI set   that database (the team's), e.g. postgresql+psycopg://mlflow@db.internal/mlflow;
#                                  mlflow reads the variable itself, so a password in it is on no command line
#                                  (or leave it out: libpq reads PGPASSWORD and ~/.pgpass). Nothing else starts.
#   unset                          a local cluster in POSTGRES_DIR: created on first use (initdb), started here and
#                                  stopped when the server stops. It listens on no TCP port, only on a Unix socket
#                                  inside POSTGRES_DIR (mode 0700): only this user (and root) can reach it, which
#                                  is what makes "trust" on that socket safe.
#
# MLFLOW is the mlflow command (default: mlflow on PATH). PostgreSQL refuses to run as root: as root, the cluster
# belongs to the `postgres` user of the Debian package `postgresql` (runuser), who must be able to reach
# POSTGRES_DIR. The database is `mlflow`, owned by the role `fasttrack`. Tested by tests/integration/test_team_store.py.
set -eu

MLFLOW="${MLFLOW:-mlflow}"

if [ -n "${MLFLOW_BACKEND_STORE_URI:-}" ]; then
    export MLFLOW_BACKEND_STORE_URI
    exec "$MLFLOW" server "$@"
fi

fail() {
    echo "error: $*" >&2
    exit 1
}

: "${POSTGRES_DIR:?set POSTGRES_DIR (a folder for the local cluster) or MLFLOW_BACKEND_STORE_URI}"
case "$POSTGRES_DIR" in
    /*) ;;
    *) POSTGRES_DIR="$(pwd)/$POSTGRES_DIR" ;;
esac
# The socket's path (folder + /.s.PGSQL.5432) must fit in a sockaddr_un (107 bytes).
[ "${#POSTGRES_DIR}" -le 90 ] || fail "POSTGRES_DIR is too long for a Unix socket path (${#POSTGRES_DIR} > 90 characters): set a shorter one"

# initdb and pg_ctl: on PATH (links resolved: psql and createdb are taken from the same folder), else the newest
# Debian /usr/lib/postgresql/<major>/bin.
if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    bindir="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
else
    bindir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -t/ -k5 -n | tail -n 1)"
    [ -n "$bindir" ] && [ -x "$bindir/pg_ctl" ] \
        || fail "PostgreSQL is not installed (no initdb/pg_ctl): make postgresql, or apt-get install postgresql"
fi

as_root=""
[ "$(id -u)" = 0 ] && as_root=1
# pg_ctl and initdb refuse to run as root.
pg() {
    if [ -n "$as_root" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ ! -s "$POSTGRES_DIR/PG_VERSION" ]; then
    mkdir -p "$POSTGRES_DIR"
    chmod 700 "$POSTGRES_DIR"
    if [ -n "$as_root" ]; then
        chown postgres:postgres "$POSTGRES_DIR"
        pg test -w "$POSTGRES_DIR" \
            || fail "as root, PostgreSQL runs as the user postgres, who cannot reach $POSTGRES_DIR: set POSTGRES_DIR to a folder it can (e.g. /var/tmp/fasttrack-postgres)"
    fi
    echo "creating a PostgreSQL cluster in $POSTGRES_DIR" >&2
    pg "$bindir/initdb" -D "$POSTGRES_DIR" -U fasttrack --auth-local=trust --auth-host=reject \
        --encoding=UTF8 --locale=C >"$POSTGRES_DIR.initdb.log" 2>&1 \
        || { cat "$POSTGRES_DIR.initdb.log" >&2; fail "initdb failed (log above)"; }
fi

started=""
stop_cluster() {
    if [ -n "$started" ]; then
        pg "$bindir/pg_ctl" -D "$POSTGRES_DIR" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    fi
}
trap stop_cluster EXIT

if pg "$bindir/pg_ctl" -D "$POSTGRES_DIR" status >/dev/null 2>&1; then
    echo "PostgreSQL in $POSTGRES_DIR is already running: using it (it stays running)" >&2
else
    # No TCP (listen_addresses empty); the socket in the cluster's own folder. pg_ctl runs the options through sh.
    pg "$bindir/pg_ctl" -D "$POSTGRES_DIR" -l "$POSTGRES_DIR/server.log" -w -t 60 \
        -o "-c listen_addresses= -k '$POSTGRES_DIR'" start >/dev/null \
        || { tail -n 20 "$POSTGRES_DIR/server.log" >&2; fail "PostgreSQL did not start (log above)"; }
    started=1
fi

exists="$("$bindir/psql" -X -h "$POSTGRES_DIR" -U fasttrack -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'mlflow'")"
[ "$exists" = 1 ] || "$bindir/createdb" -h "$POSTGRES_DIR" -U fasttrack mlflow

# psycopg (FastTrack's sql extra) through a Unix socket: the host is the socket's folder.
MLFLOW_BACKEND_STORE_URI="postgresql+psycopg://fasttrack@/mlflow?host=$POSTGRES_DIR"
export MLFLOW_BACKEND_STORE_URI
echo "MLflow backend store: $MLFLOW_BACKEND_STORE_URI" >&2

# Not exec: the cluster is stopped after the server. mlflow forwards SIGTERM/SIGINT to its Uvicorn.
"$MLFLOW" server "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM
status=0
wait "$child" || status=$?
# A trapped signal interrupts `wait`: wait for the server itself.
while kill -0 "$child" 2>/dev/null; do
    wait "$child" || status=$?
done
exit "$status"
