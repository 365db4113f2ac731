#!/usr/bin/env bash
# Point-in-time recovery side by side with pgBackRest, in one run on one private cluster:
# WAL archive throughput (one process per segment, as archive_command runs it, synchronous and
# asynchronous with a spool), base backup time and restore time (lay out + recover to the end of
# the archive), both with zstd level 3 and
# encryption (age for groundwork-backup, aes-256-cbc for pgBackRest) to a local repository.
#
#   cargo build -p groundwork-backup --release
#   apt-get install pgbackrest postgresql-15
#   crates/backup/scripts/bench-pitr.sh          # SCALE=10 (~150 MB), SEGMENTS=32
#
# Run as root (the cluster runs as postgres) or as the postgres user. Prints seconds, segments
# per second and peak RSS of each step.
set -euo pipefail

BIN=$(realpath "${BIN:-target/release/groundwork-backup}")
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SCALE=${SCALE:-10}
SEGMENTS=${SEGMENTS:-32}
PORT=${PORT:-55439}
WORK=$(mktemp -d /tmp/gw-bench-pitr.XXXXXX)
chmod 755 "$WORK"
if [ "$(id -u)" = 0 ]; then AS_PG=(runuser -u postgres --); else AS_PG=(); fi
as_pg() { "${AS_PG[@]}" "$@"; }
cleanup() { as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
            as_pg "$PGBIN/pg_ctl" -D "$WORK/ours-restore" -m immediate stop >/dev/null 2>&1 || true
            as_pg "$PGBIN/pg_ctl" -D "$WORK/theirs-restore" -m immediate stop >/dev/null 2>&1 || true
            rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK"/{sock,spool,ours,pgbr/repo,pgbr/log,pgbr/spool}
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$WORK"

# measure NAME CMD...: "seconds peak_rss_kb" of one run.
measure() {
    local name=$1; shift
    /usr/bin/time -f '%e %M' -o "$WORK/time.$name" "$@" > /dev/null 2> "$WORK/err.$name" || {
        cat "$WORK/err.$name" >&2; return 1; }
}

as_pg "$BIN" keygen --output "$WORK/key.txt" > "$WORK/recipient"
cat > "$WORK/ours.env" <<EOF
GROUNDWORK_BACKUP_STORAGE=file://$WORK/ours
GROUNDWORK_BACKUP_SOURCE=bench
GROUNDWORK_BACKUP_RECIPIENTS=$(cat "$WORK/recipient")
GROUNDWORK_BACKUP_IDENTITY_FILE=$WORK/key.txt
EOF
cat > "$WORK/pgbackrest.conf" <<EOF
[global]
repo1-path=$WORK/pgbr/repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=bench-only-passphrase
compress-type=zst
compress-level=3
log-path=$WORK/pgbr/log
lock-path=$WORK/pgbr
spool-path=$WORK/pgbr/spool
start-fast=y
[bench]
pg1-path=$WORK/data
pg1-port=$PORT
pg1-socket-path=$WORK/sock
EOF
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$WORK"

# A cluster whose archive_command first collects segments, to push them again one by one.
as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres --auth=trust > /dev/null
cat >> "$WORK/data/postgresql.conf" <<EOF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/sock'
wal_level = replica
archive_mode = on
archive_command = 'cp %p $WORK/spool/%f'
max_wal_size = 4GB
fsync = off
synchronous_commit = off
EOF
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w start > /dev/null
as_pg pgbench -h "$WORK/sock" -p "$PORT" -U postgres -i -s "$SCALE" -q postgres > /dev/null 2>&1
as_pg pgbench -h "$WORK/sock" -p "$PORT" -U postgres -n -c 2 -t 3000 postgres > /dev/null 2>&1
while [ "$(ls "$WORK/spool" | grep -c '^[0-9A-F]\{24\}$')" -lt "$SEGMENTS" ]; do
    as_pg pgbench -h "$WORK/sock" -p "$PORT" -U postgres -n -c 2 -t 1000 postgres > /dev/null 2>&1
done
ls "$WORK/spool" | grep '^[0-9A-F]\{24\}$' | sort | head -n "$SEGMENTS" > "$WORK/segments"
DB_SIZE=$(as_pg psql -h "$WORK/sock" -p "$PORT" -U postgres -Atc "select pg_size_pretty(pg_database_size('postgres'))" postgres)

printf '%-36s %9s %12s %10s\n' step seconds per_second peak_rss
report() { read -r s kb < "$WORK/time.$1"
           printf '%-36s %9s %12s %8s MB\n' "$2" "$s" "${3:-}" "$((kb / 1024))"; }
rate() { awk -v n="$1" -v s="$(cut -d' ' -f1 "$WORK/time.$2")" 'BEGIN { printf "%.1f seg/s", n / s }'; }

# 1. Archive throughput: one process per segment, sequentially, like archive_command.
cat > "$WORK/push-ours.sh" <<EOF
while read -r f; do "$BIN" --env-file "$WORK/ours.env" postgres wal-push "$WORK/spool/\$f" 2>/dev/null; done < "$WORK/segments"
EOF
cat > "$WORK/push-theirs.sh" <<EOF
while read -r f; do pgbackrest --config="$WORK/pgbackrest.conf" --stanza=bench archive-push "$WORK/spool/\$f"; done < "$WORK/segments"
EOF
as_pg pgbackrest --config="$WORK/pgbackrest.conf" --stanza=bench stanza-create > /dev/null
measure push_ours "${AS_PG[@]}" bash "$WORK/push-ours.sh"
report push_ours "groundwork-backup wal-push x$SEGMENTS" "$(rate "$SEGMENTS" push_ours)"
measure push_theirs "${AS_PG[@]}" bash "$WORK/push-theirs.sh"
report push_theirs "pgbackrest archive-push x$SEGMENTS" "$(rate "$SEGMENTS" push_theirs)"

# 1b. Asynchronous archiving, each tool with its own spool, a fresh repository and a copy of the
# segments in a pg_wal directory whose archive_status marks them ready, as PostgreSQL leaves them;
# after each success the loop marks the file done, as PostgreSQL does.
for tool in ours theirs; do
    mkdir -p "$WORK/async-$tool/pg/global" "$WORK/async-$tool/pg/pg_wal/archive_status" \
        "$WORK/async-$tool/repo" "$WORK/async-$tool/spool"
    cp "$WORK/data/global/pg_control" "$WORK/async-$tool/pg/global/"
    while read -r f; do
        cp "$WORK/spool/$f" "$WORK/async-$tool/pg/pg_wal/"
        touch "$WORK/async-$tool/pg/pg_wal/archive_status/$f.ready"
    done < "$WORK/segments"
done
sed -e "s|^GROUNDWORK_BACKUP_STORAGE=.*|GROUNDWORK_BACKUP_STORAGE=file://$WORK/async-ours/repo|" \
    "$WORK/ours.env" > "$WORK/ours-async.env"
sed -e "s|^repo1-path=.*|repo1-path=$WORK/async-theirs/repo|" \
    -e "s|^spool-path=.*|spool-path=$WORK/async-theirs/spool|" \
    -e "s|^pg1-path=.*|pg1-path=$WORK/async-theirs/pg|" \
    -e "s|^\[global\]|[global]\narchive-async=y\nprocess-max=2|" \
    "$WORK/pgbackrest.conf" > "$WORK/pgbackrest-async.conf"
cat > "$WORK/push-async-ours.sh" <<EOF
cd "$WORK/async-ours/pg"
while read -r f; do "$BIN" --env-file "$WORK/ours-async.env" postgres wal-push --spool "$WORK/async-ours/spool" "pg_wal/\$f" 2>/dev/null
    mv "pg_wal/archive_status/\$f.ready" "pg_wal/archive_status/\$f.done"; done < "$WORK/segments"
EOF
cat > "$WORK/push-async-theirs.sh" <<EOF
cd "$WORK/async-theirs/pg"
while read -r f; do pgbackrest --config="$WORK/pgbackrest-async.conf" --stanza=bench archive-push "pg_wal/\$f"
    mv "pg_wal/archive_status/\$f.ready" "pg_wal/archive_status/\$f.done"; done < "$WORK/segments"
EOF
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$WORK"
as_pg pgbackrest --config="$WORK/pgbackrest-async.conf" --stanza=bench --no-online stanza-create > /dev/null
measure push_async_ours "${AS_PG[@]}" bash "$WORK/push-async-ours.sh"
report push_async_ours "groundwork-backup wal-push --spool x$SEGMENTS" "$(rate "$SEGMENTS" push_async_ours)"
measure push_async_theirs "${AS_PG[@]}" bash "$WORK/push-async-theirs.sh"
report push_async_theirs "pgbackrest archive-push async x$SEGMENTS" "$(rate "$SEGMENTS" push_async_theirs)"

# From here both archive for real: groundwork-backup first, pgBackRest after it.
as_pg sed -i "s|^archive_command = .*|archive_command = '$BIN --env-file $WORK/ours.env postgres wal-push %p \&\& pgbackrest --config=$WORK/pgbackrest.conf --stanza=bench archive-push %p'|" "$WORK/data/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w restart > /dev/null

# 2. Base backup time.
measure base_ours "${AS_PG[@]}" "$BIN" --env-file "$WORK/ours.env" postgres basebackup --database-url "postgres://postgres@127.0.0.1:$PORT/postgres"
report base_ours "groundwork-backup basebackup ($DB_SIZE)"
measure base_theirs "${AS_PG[@]}" pgbackrest --config="$WORK/pgbackrest.conf" --stanza=bench --type=full backup
report base_theirs "pgbackrest backup --type=full ($DB_SIZE)"
as_pg pgbench -h "$WORK/sock" -p "$PORT" -U postgres -n -c 2 -t 2000 postgres > /dev/null 2>&1
as_pg psql -h "$WORK/sock" -p "$PORT" -U postgres -qc "select pg_switch_wal()" postgres > /dev/null
sleep 3
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m fast -w stop > /dev/null

# 3. Restore time: lay out and recover to the end of the archive (promoted and accepting).
measure restore_ours "${AS_PG[@]}" "$BIN" --env-file "$WORK/ours.env" postgres pitr-restore --latest --verify --data-dir "$WORK/ours-restore" --pg-bin-dir "$PGBIN"
report restore_ours "groundwork-backup pitr-restore --verify"
cat > "$WORK/restore-theirs.sh" <<EOF
set -e
mkdir -m 700 "$WORK/theirs-restore"
pgbackrest --config="$WORK/pgbackrest.conf" --stanza=bench --pg1-path="$WORK/theirs-restore" restore
echo "archive_mode = off" >> "$WORK/theirs-restore/postgresql.conf"
echo "hot_standby = off" >> "$WORK/theirs-restore/postgresql.conf"
"$PGBIN/pg_ctl" -D "$WORK/theirs-restore" -l "$WORK/theirs.log" -w -t 3600 -o "-p $((PORT + 1))" start
"$PGBIN/pg_ctl" -D "$WORK/theirs-restore" -m fast -w stop
EOF
measure restore_theirs "${AS_PG[@]}" bash "$WORK/restore-theirs.sh"
report restore_theirs "pgbackrest restore + recovery"
