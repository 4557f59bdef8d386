#!/bin/sh
# with_pg.sh COMMAND ARGS... - runs COMMAND with a temporary PostgreSQL
# cluster (Debian's postgresql-15: initdb and pg_ctl) listening on a unix
# socket in a temporary directory only, and FV_PG_URL set to a database in
# it (postgresql://USER@/fv?host=DIR). The cluster runs as a user that is
# not root (when run as root: nobody, owning the directory; COMMAND runs as
# that user too, so the files the server stages are its own). It is stopped
# and removed afterwards. Exits 77 (ctest's skip code) when PostgreSQL is
# not installed; else COMMAND's status.
set -u
bindir=
for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && bindir=$d
done
if [ -z "$bindir" ]; then
    echo "with_pg.sh: PostgreSQL is not installed (postgresql-15): skipped" >&2
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fv-pg.XXXXXX") || exit 1
chmod 0755 "$tmp"
as=""
user=$(id -un)
if [ "$(id -u)" = 0 ]; then
    user=nobody
    as="runuser -u nobody --"
    chown nobody "$tmp"
fi
cleanup() {
    $as "$bindir/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
if ! $as "$bindir/initdb" -D "$tmp/data" -A trust -U "$user" -E UTF8 \
        --no-sync >"$tmp/initdb.log" 2>&1; then
    cat "$tmp/initdb.log" >&2
    exit 1
fi
# Unix socket only, no TCP; fsync off: a test cluster need not survive a
# crash of the machine.
if ! $as "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/pg.log" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories='$tmp' -c fsync=off -c max_connections=200" \
        start >/dev/null; then
    cat "$tmp/pg.log" >&2
    exit 1
fi
if ! $as "$bindir/createdb" -h "$tmp" -U "$user" fv; then
    echo "with_pg.sh: createdb failed" >&2
    exit 1
fi
export FV_PG_URL="postgresql://$user@/fv?host=$tmp"
export FV_PG_DIR="$tmp"
export FV_PG_BIN="$bindir"
if [ -n "$as" ]; then
    # The test's files must be the cluster user's to write.
    mkdir "$tmp/work" && chown nobody "$tmp/work"
    export TMPDIR="$tmp/work"
    runuser -u nobody --preserve-environment -- "$@"
else
    "$@"
fi
