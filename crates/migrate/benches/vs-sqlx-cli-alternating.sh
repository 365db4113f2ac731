#!/usr/bin/env bash
# Like vs-sqlx-cli.sh, but alternates the two tools round by round (ABAB.., with the order
# swapped every other round) so that load from other processes on a shared machine hits both
# alike; prints every time and the median and minimum of each tool.
set -euo pipefail

N=${N:-500}
ROUNDS=${ROUNDS:-10}
BASE=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SERVER=${BASE%/*}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
GM=${GM:-$ROOT/target/release/groundwork-migrate}
SQLX=${SQLX:-sqlx}
SQL=${SQL:-'CREATE TABLE t_$v (id BIGINT PRIMARY KEY, name TEXT NOT NULL);'}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT

for i in $(seq 1 "$N"); do
    printf -v v "%04d" "$i"
    eval "echo \"$SQL\"" > "$DIR/${v}_m_$v.sql"
done

fresh() { psql "$BASE" -q -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"; }
run() {
    local start end
    case $1 in
        gm) fresh gw_bench_groundwork; start=$(date +%s.%N)
            "$GM" --dir "$DIR" --database-url "$SERVER/gw_bench_groundwork" up > /dev/null ;;
        sqlx) fresh gw_bench_sqlx; start=$(date +%s.%N)
            "$SQLX" migrate run --source "$DIR" --database-url "$SERVER/gw_bench_sqlx" > /dev/null ;;
    esac
    end=$(date +%s.%N)
    echo "$1 $(echo "$end - $start" | bc)"
}

results=$(for r in $(seq 1 "$ROUNDS"); do
    if (( r % 2 )); then run gm; run sqlx; else run sqlx; run gm; fi
done)
echo "$results"
for tool in gm sqlx; do
    echo "$results" | awk -v t="$tool" '$1 == t { print $2 }' | sort -n |
        awk -v t="$tool" '{ a[NR] = $1 } END { printf "%s: median %.3f s, min %.3f s, runs %d\n", t, (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[1], NR }'
done
psql "$BASE" -q -c 'DROP DATABASE IF EXISTS gw_bench_groundwork WITH (FORCE)' -c 'DROP DATABASE IF EXISTS gw_bench_sqlx WITH (FORCE)'
