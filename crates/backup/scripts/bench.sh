#!/usr/bin/env bash
# Side by side, in one run: `groundwork-backup postgres backup` (zstd 3, age-encrypted, to local
# storage) against raw `pg_dump -Fc -Z0 > file`, and `groundwork-backup postgres restore` against
# `pg_restore` from that local file. Prints elapsed seconds, peak RSS and throughput per database.
#
#   cargo build -p groundwork-backup --release
#   createdb bench_100mb && pgbench -i -s 7 bench_100mb      # ~110 MB
#   createdb bench_1gb   && pgbench -i -s 70 bench_1gb       # ~1 GB
#   createdb bench_rand && psql bench_rand -c 'CREATE EXTENSION pgcrypto' \
#       -c 'CREATE TABLE blobs (id int PRIMARY KEY, data bytea)' \
#       -c 'ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL' \
#       -c 'INSERT INTO blobs SELECT i, gen_random_bytes(1024) FROM generate_series(1, 1000000) i'   # 2 GB dump
#   createdb bench_hashes && psql bench_hashes -c 'CREATE TABLE digests (id int PRIMARY KEY, digest bytea NOT NULL)' \
#       -c "INSERT INTO digests SELECT i, decode(md5(i::text), 'hex') FROM generate_series(1, 2000000) i"
#   SERVER=postgres://postgres@127.0.0.1:5432 crates/backup/scripts/bench.sh bench_100mb bench_1gb
#
# SERVER is the server URL without a database; RUNS (default 3) runs of each, the median is shown.
# BASE_BIN, when set, is a second build (say, of the previous commit) measured in the same rounds:
# each round runs raw pg_dump, BIN and BASE_BIN one after the other, so that the load of a shared
# machine falls on all three alike. RESTORE=0 skips the restores.
set -euo pipefail

BIN=${BIN:-target/release/groundwork-backup}
SERVER=${SERVER:?set SERVER=postgres://user[:password]@host:port}
RUNS=${RUNS:-3}
BASE_BIN=${BASE_BIN:-}
RESTORE=${RESTORE:-1}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$BIN" keygen --output "$WORK/key.txt" > "$WORK/recipient"
RECIPIENT=$(cat "$WORK/recipient")

# measure NAME CMD...: appends "seconds max_rss_kb" of one run to $WORK/NAME. The page cache is
# written back first (untimed), so that the writes of the run before do not fall on this one.
measure() {
    local name=$1; shift
    sync
    /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" > /dev/null 2> "$WORK/stderr" || {
        cat "$WORK/stderr" >&2; return 1; }
    cat "$WORK/time" >> "$WORK/$name"
}

# median FILE COLUMN
median() { sort -n -k"$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'; }

recreate() { psql -q "$SERVER/postgres" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" 2>/dev/null; }

printf '%-14s %-28s %9s %10s %12s %9s\n' database step seconds peak_rss throughput vs_raw
for db in "$@"; do
    rm -f "$WORK"/{raw,ours,base,raw_restore,ours_restore}
    for run in $(seq "$RUNS"); do
        rm -rf "$WORK/store" "$WORK/base_store" "$WORK/raw.dump"
        measure raw pg_dump -Fc -Z0 -f "$WORK/raw.dump" "$SERVER/$db"
        measure ours "$BIN" postgres backup --storage "file://$WORK/store" --recipient "$RECIPIENT" \
            --database-url "$SERVER/$db"
        if [ -n "$BASE_BIN" ]; then
            measure base "$BASE_BIN" postgres backup --storage "file://$WORK/base_store" \
                --recipient "$RECIPIENT" --database-url "$SERVER/$db"
            rm -rf "$WORK/base_store"
        fi
        # Every run's own figures, for the spread behind the medians.
        echo "# $db run $run: raw $(tail -1 "$WORK/raw") ours $(tail -1 "$WORK/ours")${BASE_BIN:+ base $(tail -1 "$WORK/base")} (seconds peak_rss_kb)"
    done
    raw_bytes=$(stat -c %s "$WORK/raw.dump")
    stored=$(du -cb "$WORK"/store/postgres/"$db"/*/dump.* | tail -1 | cut -f1)
    [ "$RESTORE" = 1 ] && for run in $(seq "$RUNS"); do
        recreate gw_bench_backup_restore_raw
        measure raw_restore pg_restore --dbname "$SERVER/gw_bench_backup_restore_raw" "$WORK/raw.dump"
        recreate gw_bench_backup_restore_ours
        measure ours_restore "$BIN" postgres restore --storage "file://$WORK/store" --source "$db" \
            --identity-file "$WORK/key.txt" --database-url "$SERVER/gw_bench_backup_restore_ours"
    done
    t_raw=$(median "$WORK/raw" 1); t_ours=$(median "$WORK/ours" 1)
    [ "$RESTORE" = 1 ] && { t_rraw=$(median "$WORK/raw_restore" 1); t_rours=$(median "$WORK/ours_restore" 1); }
    mbps() { awk -v b="$raw_bytes" -v t="$1" 'BEGIN { printf "%.0f MB/s", b / t / 1e6 }'; }
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
    printf '%-14s %-28s %9s %7s MB %12s %9s\n' "$db" "pg_dump -Fc -Z0 > file" "$t_raw" \
        "$(( $(median "$WORK/raw" 2) / 1024 ))" "$(mbps "$t_raw")" "1.00x"
    printf '%-14s %-28s %9s %7s MB %12s %9s\n' "$db" "groundwork-backup (zstd+age)" "$t_ours" \
        "$(( $(median "$WORK/ours" 2) / 1024 ))" "$(mbps "$t_ours")" "$(ratio "$t_raw" "$t_ours")"
    [ -n "$BASE_BIN" ] && printf '%-14s %-28s %9s %7s MB %12s %9s\n' "$db" "BASE_BIN (zstd+age)" "$(median "$WORK/base" 1)" \
        "$(( $(median "$WORK/base" 2) / 1024 ))" "$(mbps "$(median "$WORK/base" 1)")" "$(ratio "$t_raw" "$(median "$WORK/base" 1)")"
    [ "$RESTORE" = 1 ] && printf '%-14s %-28s %9s %7s MB %12s %9s\n' "$db" "pg_restore < file" "$t_rraw" \
        "$(( $(median "$WORK/raw_restore" 2) / 1024 ))" "$(mbps "$t_rraw")" "1.00x"
    [ "$RESTORE" = 1 ] && printf '%-14s %-28s %9s %7s MB %12s %9s\n' "$db" "groundwork-backup restore" "$t_rours" \
        "$(( $(median "$WORK/ours_restore" 2) / 1024 ))" "$(mbps "$t_rours")" "$(ratio "$t_rraw" "$t_rours")"
    echo "# $db: dump $raw_bytes bytes raw, $stored bytes stored (zstd 3 + age), $RUNS runs, medians"
    psql -q "$SERVER/postgres" -c "DROP DATABASE IF EXISTS gw_bench_backup_restore_raw" -c "DROP DATABASE IF EXISTS gw_bench_backup_restore_ours" 2>/dev/null
done
