//! Point-in-time recovery drills on a private archiving cluster: a crash restored to the end of
//! the archive with the loss measured, a restore to a time and to a WAL location in the middle,
//! a damaged and a missing segment, on local storage and on S3.
#![cfg(all(feature = "postgres", feature = "cli"))]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use common::{encrypting_env_file, env_file, s3_storage};
use groundwork_backup::{Storage, WalFileKind, list_wal};
use groundwork_testkit::{TestBucket, TestCluster};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

/// Seconds; the RPO a cluster archiving this often gives.
const ARCHIVE_TIMEOUT: u64 = 2;
/// The time segment switches and pushes may lag on a loaded machine with an unoptimised build
/// (zstd and age at `-O0`), on top of `ARCHIVE_TIMEOUT`. The exact property is checked without it:
/// every commit in a file archived before the crash comes back.
const PUSH_SLACK: Duration = Duration::from_secs(8);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_groundwork-backup")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The CLI as the database's OS user, the way a server's `archive_command` runs it.
fn cli(env_file: &Path) -> Command {
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", bin()]);
        command
    } else {
        Command::new(bin())
    };
    for var in [
        "GROUNDWORK_BACKUP_STORAGE",
        "GROUNDWORK_BACKUP_RECIPIENTS",
        "GROUNDWORK_BACKUP_IDENTITY_FILE",
        "GROUNDWORK_BACKUP_SOURCE",
        "DATABASE_URL",
    ] {
        command.env_remove(var);
    }
    command.arg("--env-file").arg(env_file);
    command
}

fn chown_postgres(path: &Path) -> Result<()> {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()?;
        if !status.success() {
            bail!("chown {} failed", path.display());
        }
    }
    Ok(())
}

fn succeeded(output: &Output, what: &str) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    bail!(
        "{what} exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Where the archive lives, as the env file and the test see it.
struct Archive {
    storage: Storage,
    /// The directory of a local archive, to damage objects in place (keeping their owner).
    local_root: Option<PathBuf>,
    env_lines: String,
}

/// A cluster archiving through `wal-push`, its env file and the archive.
struct Drill {
    cluster: TestCluster,
    env_file: PathBuf,
    archive: Archive,
    work: tempfile::TempDir,
}

/// How `archive_command` runs `wal-push`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Archiving {
    /// One file per process.
    Synchronous,
    /// With a spool: ready files pushed ahead, acknowledged in `<work>/spool`.
    Spooled,
}

async fn archiving_cluster(
    archive: impl FnOnce(&Path) -> Result<Archive>,
    archiving: Archiving,
) -> Result<Drill> {
    // The server's user must read the env file and key and write a local archive.
    let work = tempfile::Builder::new().prefix("gw-pitr-").tempdir()?;
    let archive = archive(work.path())?;
    let env_file = encrypting_env_file(work.path(), &archive.env_lines)?;
    chown_postgres(work.path())?;
    let spool = match archiving {
        Archiving::Synchronous => String::new(),
        Archiving::Spooled => format!("--spool {} ", work.path().join("spool").display()),
    };
    let conf = format!(
        "wal_level = replica\narchive_mode = on\narchive_timeout = {ARCHIVE_TIMEOUT}\n\
         archive_command = '{} --env-file {} postgres wal-push {spool}%p'\n\
         track_commit_timestamp = on\nsynchronous_commit = on\n",
        bin(),
        env_file.display()
    );
    let cluster = TestCluster::start_with_conf(&conf).await?;
    Ok(Drill {
        cluster,
        env_file,
        archive,
        work,
    })
}

/// One acknowledged commit: its id, when it was acknowledged, and the WAL file its insert went
/// to (its commit record is there or in the next file).
type Ack = (i64, SystemTime, String);

/// Inserts one row per transaction until stopped, recording each acknowledged commit and, after
/// each, the newest WAL file the server reports archived.
async fn write_ticks(pool: PgPool, stop: tokio::sync::watch::Receiver<bool>) -> (Vec<Ack>, String) {
    let mut acked = Vec::new();
    let mut archived = String::new();
    let mut id = 0_i64;
    while !*stop.borrow() {
        id += 1;
        let inserted: Result<String, _> = sqlx::query_scalar(
            "INSERT INTO ticks (id) VALUES ($1) RETURNING pg_walfile_name(pg_current_wal_insert_lsn())",
        )
        .bind(id)
        .fetch_one(&pool)
        .await;
        let Ok(walfile) = inserted else {
            break;
        };
        acked.push((id, SystemTime::now(), walfile));
        let last: Result<Option<String>, _> =
            sqlx::query_scalar("SELECT last_archived_wal FROM pg_stat_archiver")
                .fetch_one(&pool)
                .await;
        match last {
            Ok(Some(last)) if last.len() == 24 => archived = last,
            Ok(_) => {}
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (acked, archived)
}

async fn restored_ids(data_dir: PathBuf) -> Result<(TestCluster, Vec<i64>)> {
    let cluster = TestCluster::start_on(data_dir, "archive_mode = off").await?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&cluster.url())
        .await?;
    let deadline = Instant::now() + Duration::from_mins(2);
    loop {
        let recovering: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&pool)
            .await?;
        if !recovering {
            break;
        }
        if Instant::now() > deadline {
            bail!("recovery did not finish within two minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM ticks ORDER BY id")
        .fetch_all(&pool)
        .await?;
    pool.close().await;
    Ok((cluster, ids))
}

fn pitr_restore(drill: &Drill, data_dir: &Path, target: &[&str]) -> Result<Output> {
    Ok(cli(&drill.env_file)
        .args(["postgres", "pitr-restore", "--data-dir"])
        .arg(data_dir)
        .args(target)
        .output()?)
}

/// An archive in `<work>/archive` on local storage.
fn local_archive(work: &Path) -> Result<Archive> {
    let root = work.join("archive");
    std::fs::create_dir(&root)?;
    Ok(Archive {
        storage: groundwork_backup::Storage::open(
            &format!("file://{}", root.display()),
            &groundwork_backup::S3Options::default(),
        )?,
        env_lines: format!("GROUNDWORK_BACKUP_STORAGE=file://{}", root.display()),
        local_root: Some(root),
    })
}

/// Creates the `ticks` table the writer fills and takes a base backup of the drill's cluster
/// through the CLI; a pool to the cluster.
async fn ticks_table_with_a_base_backup(drill: &Drill) -> Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&drill.cluster.url())
        .await?;
    sqlx::raw_sql("CREATE TABLE ticks (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        .execute(&pool)
        .await?;
    let base = cli(&drill.env_file)
        .args(["postgres", "basebackup", "--database-url"])
        .arg(drill.cluster.url())
        .output()?;
    succeeded(&base, "basebackup")?;
    Ok(pool)
}

/// The drills, against one archive.
async fn drills(archive: impl FnOnce(&Path) -> Result<Archive>) -> Result<()> {
    let drill = archiving_cluster(archive, Archiving::Synchronous).await?;
    let pool = ticks_table_with_a_base_backup(&drill).await?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(write_ticks(pool.clone(), stop_rx));
    tokio::time::sleep(Duration::from_secs(4 * ARCHIVE_TIMEOUT)).await;
    // A WAL location in the middle: every commit visible to this statement's snapshot was
    // written before it.
    let middle_lsn =
        sqlx::query("SELECT pg_current_wal_insert_lsn()::text, coalesce(max(id), 0) FROM ticks")
            .fetch_one(&pool)
            .await?;
    let (target_lsn, visible_before_lsn): (String, i64) = (middle_lsn.get(0), middle_lsn.get(1));
    // A time in the middle, strictly between two commits.
    let commits: Vec<(i64, String)> = sqlx::query(
        "SELECT id, to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', \
                'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM ticks ORDER BY id",
    )
    .fetch_all(&pool)
    .await?
    .into_iter()
    .map(|row| (row.get::<i64, _>(0), row.get::<String, _>(1)))
    .collect();
    let middle = commits.len() / 2;
    let (before_t, after_t) = (&commits[middle - 1], &commits[middle]);
    if before_t.1 >= after_t.1 {
        bail!("two commits with one timestamp: {before_t:?} {after_t:?}");
    }
    let target_time = after_t.1.clone();
    // A second base backup while transactions keep coming: --latest starts from it, a time
    // before it from the first one.
    let mut second = cli(&drill.env_file);
    second
        .args(["postgres", "basebackup", "--database-url"])
        .arg(drill.cluster.url());
    let second = tokio::task::spawn_blocking(move || second.output()).await??;
    succeeded(&second, "the second basebackup")?;
    tokio::time::sleep(Duration::from_secs(2 * ARCHIVE_TIMEOUT)).await;

    // The crash: the postmaster is killed while transactions keep coming.
    drill.cluster.kill_postmaster()?;
    let killed_at = SystemTime::now();
    let _ = stop_tx.send(true);
    let (acked, archived_before_kill) = writer.await?;
    pool.close().await;
    let ids_latest = crash_restore_brings_back_every_archived_commit(
        &drill,
        &acked,
        &archived_before_kill,
        killed_at,
    )
    .await?;

    // 2. --to-time T: exactly the transactions committed before T.
    let mid_dir = drill.work.path().join("mid");
    let output = pitr_restore(&drill, &mid_dir, &["--to-time", &target_time])?;
    succeeded(&output, "pitr-restore --to-time")?;
    let (restored, ids) = restored_ids(mid_dir).await?;
    drop(restored);
    let expected: Vec<i64> = commits[..middle].iter().map(|c| c.0).collect();
    assert_eq!(ids, expected, "restored to {target_time}");

    // --to-lsn L: a prefix of the history holding every commit visible before L.
    let lsn_dir = drill.work.path().join("lsn");
    let output = pitr_restore(&drill, &lsn_dir, &["--to-lsn", &target_lsn])?;
    succeeded(&output, "pitr-restore --to-lsn")?;
    let (restored, ids) = restored_ids(lsn_dir).await?;
    drop(restored);
    assert!(
        ids.contains(&visible_before_lsn) && ids.len() < ids_latest.len(),
        "restored to {target_lsn}: {} rows, {visible_before_lsn} committed before it, {} at the end",
        ids.len(),
        ids_latest.len()
    );
    assert_eq!(ids, ids_latest[..ids.len()], "restored to {target_lsn}");

    // --verify: a throwaway server recovers the same point and counts the rows.
    let verified_dir = drill.work.path().join("verified");
    let output = cli(&drill.env_file)
        .args(["--json", "postgres", "pitr-restore", "--data-dir"])
        .arg(&verified_dir)
        .args(["--to-time", &target_time, "--verify"])
        .output()?;
    succeeded(&output, "pitr-restore --verify")?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(
        report["result"]["verify"]["row_counts"]["postgres/public.ticks"],
        serde_json::json!(expected.len()),
        "{report}"
    );

    damaged_and_missing_segments(&drill).await?;
    prune_keeps_the_wal_of_the_kept_base_backup(&drill, &ids_latest).await
}

/// `prune --keep 1` removes the first base backup and exactly the WAL before the second's start;
/// a restore from the second still reaches the same end.
async fn prune_keeps_the_wal_of_the_kept_base_backup(drill: &Drill, latest: &[i64]) -> Result<()> {
    let bases = groundwork_backup::list(
        &drill.archive.storage,
        &groundwork_backup::BackupFilter {
            kind: Some(groundwork_backup::BackupKind::PostgresBase),
            source: Some("app".into()),
        },
    )
    .await?;
    let [first, second] = bases.as_slice() else {
        bail!("expected two base backups, found {bases:?}");
    };
    let keep_from = second
        .manifest
        .as_ref()
        .and_then(|m| m.physical.as_ref())
        .map(|p| p.start_wal_file.clone())
        .context("the second base backup has no WAL range")?;
    let before = list_wal(&drill.archive.storage, "app").await?;
    let expected_gone: Vec<String> = before
        .iter()
        .filter(|n| n.kind() != WalFileKind::History && n.as_str()[8..24] < keep_from[8..24])
        .map(ToString::to_string)
        .collect();
    assert!(
        !expected_gone.is_empty(),
        "the first base backup needed no older WAL: {before:?}"
    );

    let dry = cli(&drill.env_file)
        .args(["--json", "prune", "--keep", "1", "--dry-run"])
        .output()?;
    succeeded(&dry, "prune --dry-run")?;
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout)?;
    assert_eq!(
        report["result"]["wal"][0]["deleted"],
        serde_json::json!(expected_gone),
        "{report}"
    );
    assert_eq!(list_wal(&drill.archive.storage, "app").await?, before);

    let pruned = cli(&drill.env_file)
        .args(["--json", "prune", "--keep", "1"])
        .output()?;
    succeeded(&pruned, "prune")?;
    let report: serde_json::Value = serde_json::from_slice(&pruned.stdout)?;
    assert_eq!(
        report["result"]["deleted"][0]["id"],
        serde_json::json!(first.id),
        "{report}"
    );
    let after = list_wal(&drill.archive.storage, "app").await?;
    let kept: Vec<_> = before
        .iter()
        .filter(|n| !expected_gone.contains(&n.to_string()))
        .cloned()
        .collect();
    assert_eq!(after, kept);

    let again_dir = drill.work.path().join("after-prune");
    let output = pitr_restore(drill, &again_dir, &["--latest"])?;
    succeeded(&output, "pitr-restore --latest after prune")?;
    let (restored, ids) = restored_ids(again_dir).await?;
    drop(restored);
    assert_eq!(ids, latest);

    // Monitoring: when the archive last took a file, and how old the newest base backup is.
    let metrics = cli(&drill.env_file)
        .args(["metrics", "--kind", "postgres-base"])
        .output()?;
    succeeded(&metrics, "metrics")?;
    let text = String::from_utf8_lossy(&metrics.stdout);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs_f64();
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}{{source=\"app\"}} ")))
            .and_then(|v| v.parse().ok())
    };
    let last_archived =
        value("backup_wal_last_archived_timestamp_seconds").context(text.to_string())?;
    assert!(
        now - last_archived < 600.0 && now >= last_archived - 5.0,
        "{text}"
    );
    let age = value("backup_base_backup_age_seconds").context(text.to_string())?;
    assert!((0.0..600.0).contains(&age), "{text}");
    assert_eq!(
        value("backup_wal_archived_files"),
        Some(f64::from(u32::try_from(kept.len())?)),
        "{text}"
    );
    Ok(())
}

/// `--latest` after the crash: every commit in a file archived before it is back, the history has
/// no gap, and the loss is reported. Returns the restored ids.
async fn crash_restore_brings_back_every_archived_commit(
    drill: &Drill,
    acked: &[Ack],
    archived_before_kill: &str,
    killed_at: SystemTime,
) -> Result<Vec<i64>> {
    let last_acked = acked.last().map_or(0, |a| a.0);
    // Every commit whose insert went to a file before the last one reported archived has its
    // commit record in an archived file: whatever the machine's speed, it must come back.
    let must_survive = acked
        .iter()
        .filter(|(_, _, walfile)| walfile.as_str() < archived_before_kill)
        .map(|(id, _, _)| *id)
        .max()
        .context("no commit known to be archived before the crash")?;

    // 1. --latest: every archived commit is back, and at most archive_timeout is lost.
    let latest_dir = drill.work.path().join("latest");
    let restore_clock = Instant::now();
    let output = pitr_restore(drill, &latest_dir, &["--latest"])?;
    succeeded(&output, "pitr-restore --latest")?;
    let (restored, ids_latest) = restored_ids(latest_dir).await?;
    let rto = restore_clock.elapsed();
    drop(restored);
    let newest = *ids_latest.last().context("nothing restored")?;
    assert_eq!(
        ids_latest,
        (1..=newest).collect::<Vec<_>>(),
        "a gap in the restored history"
    );
    assert!(newest <= last_acked);
    assert!(
        newest >= must_survive,
        "commit {must_survive} was archived (in a file before {archived_before_kill}) but only \
         {newest} came back"
    );
    let newest_ack = acked
        .iter()
        .find(|(id, _, _)| *id == newest)
        .map(|(_, at, _)| *at)
        .context("restored an id that was never acknowledged")?;
    let loss = killed_at.duration_since(newest_ack).unwrap_or_default();
    eprintln!(
        "pitr drill: {} of {last_acked} acknowledged transactions restored; loss {:.2}s \
         (archive_timeout {ARCHIVE_TIMEOUT}s); restore + recovery {:.2}s",
        newest,
        loss.as_secs_f64(),
        rto.as_secs_f64()
    );
    assert!(
        loss <= Duration::from_secs(ARCHIVE_TIMEOUT) + PUSH_SLACK,
        "lost {loss:?} of commits"
    );

    Ok(ids_latest)
}

/// A flipped byte stops recovery naming the segment; a missing one is refused before anything
/// is written.
async fn damaged_and_missing_segments(drill: &Drill) -> Result<()> {
    // A segment the newest base backup needs: the one --latest restores from.
    let bases = groundwork_backup::list(
        &drill.archive.storage,
        &groundwork_backup::BackupFilter {
            kind: Some(groundwork_backup::BackupKind::PostgresBase),
            source: Some("app".into()),
        },
    )
    .await?;
    let newest_start = bases
        .last()
        .and_then(|b| b.manifest.as_ref())
        .and_then(|m| m.physical.as_ref())
        .map(|p| p.start_wal_file.clone())
        .context("no base backup")?;
    let segments: Vec<_> = list_wal(&drill.archive.storage, "app")
        .await?
        .into_iter()
        .filter(|n| n.kind() == WalFileKind::Segment && n.as_str() >= newest_start.as_str())
        .collect();
    // Before the newest archived segment (or the base backup's first): without its newest
    // segment an archive simply ends earlier, which `--latest` cannot tell from a shorter history.
    let victim = segments
        .get(segments.len().saturating_sub(1) / 2)
        .context("no segments archived")?
        .clone();
    let object = format!("postgres/app/wal/{}/{victim}.zst.age", victim.timeline());
    let original = flip_byte(&drill.archive, &object).await?;

    let damaged_dir = drill.work.path().join("damaged");
    let output = pitr_restore(drill, &damaged_dir, &["--latest", "--verify"])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(victim.as_str()) && stderr.contains("checksum mismatch"),
        "{stderr}"
    );
    put_back(&drill.archive, &object, original).await?;

    // The record gone: the segment is not archived.
    let record = format!("postgres/app/wal/{}/{victim}.json", victim.timeline());
    let saved = drill
        .archive
        .storage
        .store()
        .get(&ObjectPath::from(record.as_str()))
        .await?
        .bytes()
        .await?;
    drill
        .archive
        .storage
        .store()
        .delete(&ObjectPath::from(record.as_str()))
        .await?;
    let missing_dir = drill.work.path().join("missing");
    let output = pitr_restore(drill, &missing_dir, &["--latest"])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("gap") && stderr.contains(victim.as_str()),
        "{stderr}"
    );
    assert!(!missing_dir.exists() || std::fs::read_dir(&missing_dir)?.next().is_none());
    put_back(&drill.archive, &record, saved.to_vec()).await?;
    Ok(())
}

/// Flips one byte in the middle of `object`, returning the original bytes.
async fn flip_byte(archive: &Archive, object: &str) -> Result<Vec<u8>> {
    let original = archive
        .storage
        .store()
        .get(&ObjectPath::from(object))
        .await?
        .bytes()
        .await?
        .to_vec();
    let mut damaged = original.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    put_back(archive, object, damaged).await?;
    Ok(original)
}

/// Writes `bytes` to `object`; a local file is rewritten in place, keeping its owner.
async fn put_back(archive: &Archive, object: &str, bytes: Vec<u8>) -> Result<()> {
    match &archive.local_root {
        Some(root) => std::fs::write(root.join(object), bytes)?,
        None => {
            archive
                .storage
                .store()
                .put(&ObjectPath::from(object), PutPayload::from(bytes))
                .await?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_drills_on_local_storage() -> Result<()> {
    drills(local_archive).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_drills_on_s3() -> Result<()> {
    let bucket = TestBucket::create().await?;
    let result = drills(|_| {
        Ok(Archive {
            storage: s3_storage(&bucket, "pitr")?,
            env_lines: format!(
                "GROUNDWORK_BACKUP_STORAGE=s3://{}/pitr\nAWS_ENDPOINT_URL={}\nAWS_REGION=us-east-1\n\
                 AWS_ACCESS_KEY_ID=test\nAWS_SECRET_ACCESS_KEY=test\n\
                 GROUNDWORK_BACKUP_S3_ALLOW_HTTP=true\nGROUNDWORK_BACKUP_S3_PATH_STYLE=true",
                bucket.bucket(),
                bucket.endpoint()
            ),
            local_root: None,
        })
    })
    .await;
    bucket.cleanup().await?;
    result
}

/// The crash drill with asynchronous archiving (`wal-push --spool`): bursts of segment switches
/// leave several files ready at once, which one push takes ahead; the restore still brings back
/// every commit archived before the crash and loses at most `archive_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_crash_drill_with_spooled_archiving() -> Result<()> {
    let drill = archiving_cluster(local_archive, Archiving::Spooled).await?;
    let pool = ticks_table_with_a_base_backup(&drill).await?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(write_ticks(pool.clone(), stop_rx));
    // Bursts of switches while the ticks go on: several files become ready at once.
    for _ in 0..3 {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            sqlx::query("SELECT pg_switch_wal()").execute(&pool).await?;
        }
        tokio::time::sleep(Duration::from_secs(ARCHIVE_TIMEOUT)).await;
    }
    tokio::time::sleep(Duration::from_secs(2 * ARCHIVE_TIMEOUT)).await;

    drill.cluster.kill_postmaster()?;
    let killed_at = SystemTime::now();
    let _ = stop_tx.send(true);
    let (acked, archived_before_kill) = writer.await?;
    pool.close().await;
    crash_restore_brings_back_every_archived_commit(
        &drill,
        &acked,
        &archived_before_kill,
        killed_at,
    )
    .await?;
    let log = std::fs::read_to_string(drill.cluster.dir().join("server.log"))?;
    assert!(
        log.contains("pushed ahead:") && log.contains("acknowledged in the spool"),
        "no push went ahead through the spool:\n{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_restore_refuses_a_non_empty_data_directory() -> Result<()> {
    let work = tempfile::tempdir()?;
    let env_file = env_file(
        work.path(),
        &format!("file://{}/store", work.path().display()),
    )?;
    let data = work.path().join("data");
    std::fs::create_dir(&data)?;
    std::fs::write(data.join("PG_VERSION"), "15\n")?;
    let output = Command::new(bin())
        .arg("--env-file")
        .arg(&env_file)
        .args(["postgres", "pitr-restore", "--latest", "--data-dir"])
        .arg(&data)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not empty") && stderr.contains(&data.display().to_string()),
        "{stderr}"
    );
    Ok(())
}
