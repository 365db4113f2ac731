#!/usr/bin/env bash
# Applies N (default 500) one-statement migrations to an empty PostgreSQL database with
# groundwork-migrate and with sqlx-cli, side by side, with hyperfine: each run gets a freshly
# created database through --prepare, so both tools do the whole job every time.
#
# Needs: psql, hyperfine, `sqlx` (cargo install --locked sqlx-cli --no-default-features
# --features postgres,rustls) and `cargo build --release -p groundwork-migrate`.
set -euo pipefail

N=${N:-500}
RUNS=${RUNS:-10}
BASE=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SERVER=${BASE%/*}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
GM=${GM:-$ROOT/target/release/groundwork-migrate}
SQLX=${SQLX:-sqlx}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT

for i in $(seq 1 "$N"); do
    printf -v v "%04d" "$i"
    echo "CREATE TABLE t_$v (id BIGINT PRIMARY KEY, name TEXT NOT NULL);" > "$DIR/${v}_create_t_$v.sql"
done

fresh() {
    echo "psql $BASE -q -c 'DROP DATABASE IF EXISTS $1 WITH (FORCE)' -c 'CREATE DATABASE $1'"
}

hyperfine --warmup 1 --runs "$RUNS" --export-markdown "${EXPORT:-/dev/null}" \
    --prepare "$(fresh gw_bench_groundwork)" \
    -n groundwork-migrate "$GM --dir $DIR --database-url $SERVER/gw_bench_groundwork up" \
    --prepare "$(fresh gw_bench_sqlx)" \
    -n "sqlx migrate run" "$SQLX migrate run --source $DIR --database-url $SERVER/gw_bench_sqlx"

psql "$BASE" -q -c 'DROP DATABASE IF EXISTS gw_bench_groundwork WITH (FORCE)' -c 'DROP DATABASE IF EXISTS gw_bench_sqlx WITH (FORCE)'
