//! `wal-push` and `wal-fetch` as `archive_command` and `restore_command` run them: settings from
//! an env file, idempotent retries, refused conflicts, quiet misses, damage named.
#![cfg(all(feature = "postgres", feature = "cli"))]

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};
use common::{encrypting_env_file, env_file, local_store, s3_storage};
use groundwork_backup::{Storage, WalFileName, list_wal, read_wal_record};
use groundwork_testkit::TestBucket;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

const SEGMENT: &str = "000000010000000000000003";
const SEGMENT_SIZE: usize = 16 * 1024 * 1024;

fn cli(env_file: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_groundwork-backup"));
    for var in [
        "GROUNDWORK_BACKUP_STORAGE",
        "GROUNDWORK_BACKUP_RECIPIENTS",
        "GROUNDWORK_BACKUP_IDENTITY_FILE",
        "GROUNDWORK_BACKUP_SOURCE",
        "GROUNDWORK_BACKUP_ENV_FILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
    ] {
        command.env_remove(var);
    }
    command.arg("--env-file").arg(env_file);
    command
}

/// A segment-sized file: half text-like (compressible), half pseudo-random.
fn fake_segment(seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut data = Vec::with_capacity(SEGMENT_SIZE);
    while data.len() < SEGMENT_SIZE / 2 {
        data.extend_from_slice(format!("row {} of seed {seed};", data.len()).as_bytes());
    }
    while data.len() < SEGMENT_SIZE {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(SEGMENT_SIZE);
    data
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Pushes, re-pushes, conflicts, fetches, misses and fetches a damaged copy, through the CLI as
/// the server would run it, against `storage` described by the env file's `lines`.
async fn archive_round_trip(storage: &Storage, lines: &str) -> Result<()> {
    let work = tempfile::tempdir()?;
    let env_file = encrypting_env_file(work.path(), lines)?;
    let pg_wal = work.path().join("pg_wal");
    std::fs::create_dir(&pg_wal)?;
    let segment = pg_wal.join(SEGMENT);
    let original = fake_segment(3);
    std::fs::write(&segment, &original)?;

    let pushed = cli(&env_file)
        .args(["postgres", "wal-push"])
        .arg(&segment)
        .output()?;
    assert_eq!(pushed.status.code(), Some(0), "{}", stderr(&pushed));
    let name = WalFileName::parse(SEGMENT)?;
    let record = read_wal_record(storage, "app", &name)
        .await?
        .context("no record after a successful push")?;
    assert_eq!(record.object.name, format!("{SEGMENT}.zst.age"));
    assert_eq!(record.object.raw_bytes, SEGMENT_SIZE as u64);
    assert!(
        record.object.stored_bytes < record.object.raw_bytes * 3 / 4,
        "{record:?}"
    );
    assert_eq!(list_wal(storage, "app").await?, vec![name.clone()]);

    // PostgreSQL retries a push whose answer it did not see: the same content succeeds.
    let again = cli(&env_file)
        .args(["postgres", "wal-push"])
        .arg(&segment)
        .output()?;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already archived"),
        "{}",
        stderr(&again)
    );

    // Different content under the same name is refused, loudly, and the archive is unchanged.
    let other = work.path().join("other");
    std::fs::create_dir(&other)?;
    std::fs::write(other.join(SEGMENT), fake_segment(4))?;
    let conflict = cli(&env_file)
        .args(["postgres", "wal-push"])
        .arg(other.join(SEGMENT))
        .output()?;
    assert_eq!(conflict.status.code(), Some(1), "{}", stderr(&conflict));
    assert!(
        stderr(&conflict).contains(SEGMENT) && stderr(&conflict).contains("different content"),
        "{}",
        stderr(&conflict)
    );
    assert_eq!(
        read_wal_record(storage, "app", &name).await?,
        Some(record.clone())
    );

    // restore_command: the file appears at %p with the original bytes.
    let restore = work.path().join("restore");
    std::fs::create_dir(&restore)?;
    let fetched = cli(&env_file)
        .args(["postgres", "wal-fetch", SEGMENT])
        .arg(restore.join("RECOVERYXLOG"))
        .output()?;
    assert_eq!(fetched.status.code(), Some(0), "{}", stderr(&fetched));
    assert!(std::fs::read(restore.join("RECOVERYXLOG"))? == original);

    // A file never archived: non-zero at once, and quiet.
    let missing = cli(&env_file)
        .args(["postgres", "wal-fetch", "00000002.history"])
        .arg(restore.join("RECOVERYHISTORY"))
        .output()?;
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    assert_eq!(stderr(&missing), "");
    assert!(!restore.join("RECOVERYHISTORY").exists());

    damaged_fetch_fails_naming_the_segment(storage, &env_file, &restore).await
}

/// One flipped byte in the stored object: a failure naming the segment, with the exit code that
/// makes PostgreSQL stop recovery, and nothing written.
async fn damaged_fetch_fails_naming_the_segment(
    storage: &Storage,
    env_file: &Path,
    restore: &Path,
) -> Result<()> {
    let object = ObjectPath::from(format!("postgres/app/wal/00000001/{SEGMENT}.zst.age"));
    let mut stored = storage.store().get(&object).await?.bytes().await?.to_vec();
    let middle = stored.len() / 2;
    stored[middle] ^= 0x01;
    storage
        .store()
        .put(&object, PutPayload::from(stored))
        .await?;
    let damaged = cli(env_file)
        .args(["postgres", "wal-fetch", SEGMENT])
        .arg(restore.join("RECOVERYXLOG2"))
        .output()?;
    assert_eq!(damaged.status.code(), Some(128), "{}", stderr(&damaged));
    assert!(
        stderr(&damaged).contains(SEGMENT) && stderr(&damaged).contains("checksum mismatch"),
        "{}",
        stderr(&damaged)
    );
    assert!(!restore.join("RECOVERYXLOG2").exists());
    let leftovers: Vec<_> = std::fs::read_dir(restore)?
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    if leftovers.len() != 1 {
        bail!("the failed fetch left files behind: {leftovers:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_files_round_trip_through_local_storage() -> Result<()> {
    let store = local_store()?;
    archive_round_trip(
        &store.storage,
        &format!(
            "GROUNDWORK_BACKUP_STORAGE=file://{}",
            store.dir.path().display()
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_files_round_trip_through_s3_with_a_secret_file() -> Result<()> {
    let bucket = TestBucket::create().await?;
    let storage = s3_storage(&bucket, "archive")?;
    let secrets = tempfile::tempdir()?;
    let secret_file = secrets.path().join("aws-secret");
    std::fs::write(&secret_file, "test\n")?;
    archive_round_trip(
        &storage,
        &format!(
            "GROUNDWORK_BACKUP_STORAGE=s3://{}/archive\nAWS_ENDPOINT_URL={}\nAWS_REGION=us-east-1\n\
             AWS_ACCESS_KEY_ID=test\nAWS_SECRET_ACCESS_KEY_FILE={}\n\
             GROUNDWORK_BACKUP_S3_ALLOW_HTTP=true\nGROUNDWORK_BACKUP_S3_PATH_STYLE=true",
            bucket.bucket(),
            bucket.endpoint(),
            secret_file.display()
        ),
    )
    .await?;
    bucket.cleanup().await?;
    Ok(())
}

#[test]
fn wal_push_refuses_a_file_that_is_not_wal() -> Result<()> {
    let work = tempfile::tempdir()?;
    let env_file = env_file(
        work.path(),
        &format!("file://{}/store", work.path().display()),
    )?;
    let file = work.path().join("postgresql.conf");
    std::fs::write(&file, "port = 5432\n")?;
    let output = cli(&env_file)
        .args(["postgres", "wal-push"])
        .arg(&file)
        .output()?;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("postgresql.conf"),
        "{}",
        stderr(&output)
    );
    Ok(())
}

/// `wal-push --spool`: the first push also pushes the other ready files and acknowledges them;
/// their own pushes answer from the spool; an acknowledgement never covers other content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_push_archives_ready_files_ahead_and_acknowledges_only_what_was_stored()
-> Result<()> {
    let store = local_store()?;
    let storage = &store.storage;
    let work = tempfile::tempdir()?;
    let env_file = env_file(work.path(), &store.url())?;
    let pg_wal = work.path().join("pg_wal");
    std::fs::create_dir_all(pg_wal.join("archive_status"))?;
    let spool = work.path().join("spool");
    let names = [
        "000000010000000000000003",
        "000000010000000000000004",
        "000000010000000000000005",
        "000000010000000000000006",
    ];
    for (seed, name) in (10_u64..).zip(names) {
        std::fs::write(pg_wal.join(name), fake_segment(seed))?;
        std::fs::write(
            pg_wal.join("archive_status").join(format!("{name}.ready")),
            "",
        )?;
    }
    // As PostgreSQL does: after a success the file is marked done.
    let push = |name: &str| -> Result<Output> {
        let output = cli(&env_file)
            .args(["postgres", "wal-push", "--spool-batch", "3", "--spool"])
            .arg(&spool)
            .arg(pg_wal.join(name))
            .output()?;
        let status = pg_wal.join("archive_status");
        if output.status.success() {
            std::fs::rename(
                status.join(format!("{name}.ready")),
                status.join(format!("{name}.done")),
            )?;
        }
        Ok(output)
    };

    // The first push stores its own file and two more (a batch of three), acknowledged.
    let first = push(names[0])?;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let archived: Vec<String> = list_wal(storage, "app")
        .await?
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(archived, names[..3].to_vec());
    for name in &names[1..3] {
        assert!(spool.join(format!("{name}.ok")).is_file(), "{name}");
    }
    assert!(!spool.join(format!("{}.ok", names[0])).exists());

    // Its own push answers from the acknowledgement, which is then used up.
    let second = push(names[1])?;
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("acknowledged in the spool"),
        "{}",
        stderr(&second)
    );
    assert!(!spool.join(format!("{}.ok", names[1])).exists());

    // Another file under an acknowledged name (a new cluster): not covered, and refused by
    // the archive, which holds different content.
    std::fs::remove_file(pg_wal.join(names[2]))?;
    std::fs::write(pg_wal.join(names[2]), fake_segment(99))?;
    let conflict = push(names[2])?;
    assert_eq!(conflict.status.code(), Some(1), "{}", stderr(&conflict));
    assert!(
        stderr(&conflict).contains(names[2]) && stderr(&conflict).contains("different content"),
        "{}",
        stderr(&conflict)
    );

    assert!(!spool.join(format!("{}.ok", names[2])).exists());

    // The failed push still pushed the next ready file ahead, which now answers at once.
    let fourth = push(names[3])?;
    assert_eq!(fourth.status.code(), Some(0), "{}", stderr(&fourth));
    assert!(
        stderr(&fourth).contains("acknowledged in the spool"),
        "{}",
        stderr(&fourth)
    );
    // A retry of a file already archived (PostgreSQL did not see the answer): the same content;
    // the conflicting ready file it tries ahead fails without failing it.
    std::fs::rename(
        pg_wal
            .join("archive_status")
            .join(format!("{}.done", names[0])),
        pg_wal
            .join("archive_status")
            .join(format!("{}.ready", names[0])),
    )?;
    let retry = push(names[0])?;
    assert_eq!(retry.status.code(), Some(0), "{}", stderr(&retry));
    assert!(
        stderr(&retry).contains("same content")
            && stderr(&retry).contains(&format!("not pushed ahead: {}", names[2])),
        "{}",
        stderr(&retry)
    );
    assert_eq!(list_wal(storage, "app").await?.len(), 4);
    Ok(())
}
