//! PostgreSQL backup, restore and verify against a real server, on local storage and on S3
//! (moto); each test owns its databases and its storage location.
#![cfg(feature = "postgres")]

use crate::common;

use anyhow::Result;
use common::{
    LocalStore, incompressible_database, local_store, plain_dump, relation_count, s3_storage,
    secret, seeded_database,
};
use groundwork_backup::{
    BackupError, BackupKind, BackupManifest, Identity, PipelineOptions, PostgresBackupOptions,
    PostgresRestoreOptions, RestoreReport, S3Options, Storage, VerifyReport, backup_postgres,
    latest, restore_postgres, verify_postgres,
};
use groundwork_testkit::{TestBucket, TestDatabase};

/// Hotels in the round trip. With 10⁶ rows the test passes but takes about 22 s alone on a
/// two-core machine (seeding, dump, restore and two comparison dumps in a debug build), more
/// with other tests running beside it; 5·10⁵ keeps it near 10 s.
const ROUND_TRIP_ROWS: i64 = 500_000;

fn encrypted_to(identity: &Identity) -> PostgresBackupOptions {
    PostgresBackupOptions {
        pipeline: PipelineOptions {
            recipients: vec![identity.public()],
            ..PipelineOptions::default()
        },
        ..PostgresBackupOptions::default()
    }
}

fn restoring_with(identity: &Identity) -> PostgresRestoreOptions {
    PostgresRestoreOptions {
        identities: vec![identity.clone()],
        ..PostgresRestoreOptions::default()
    }
}

/// A seeded database of `rows` hotels backed up with `options` to local storage.
async fn backed_up(
    rows: u64,
    options: &PostgresBackupOptions,
) -> Result<(TestDatabase, LocalStore, BackupManifest)> {
    let source = seeded_database(rows).await?;
    let store = local_store()?;
    let manifest = backup_postgres(&store.storage, &secret(source.url()), options).await?;
    Ok((source, store, manifest))
}

/// Restores `manifest` from `store` into `target`.
async fn restore(
    store: &LocalStore,
    manifest: &BackupManifest,
    target: &TestDatabase,
    options: &PostgresRestoreOptions,
) -> Result<RestoreReport, BackupError> {
    restore_postgres(&store.storage, manifest, &secret(target.url()), options).await
}

/// The error of restoring `manifest` from `store` into `target` without a key or options; `None`
/// when the restore succeeds.
async fn refused_restore(
    store: &LocalStore,
    manifest: &BackupManifest,
    target: &TestDatabase,
) -> Option<BackupError> {
    restore(store, manifest, target, &PostgresRestoreOptions::default())
        .await
        .err()
}

/// Verifies `manifest` from `store` against the server of `source`, without a key.
async fn verify(
    store: &LocalStore,
    manifest: &BackupManifest,
    source: &TestDatabase,
) -> Result<VerifyReport> {
    Ok(verify_postgres(
        &store.storage,
        manifest,
        &secret(source.url()),
        &PostgresRestoreOptions::default(),
    )
    .await?)
}

/// Where the local store keeps the first object of `source`'s backup `manifest`.
fn first_object(
    store: &LocalStore,
    source: &TestDatabase,
    manifest: &BackupManifest,
) -> std::path::PathBuf {
    store
        .dir
        .path()
        .join("postgres")
        .join(source.name())
        .join(manifest.id.as_str())
        .join(&manifest.objects[0].name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_restores_a_database_whose_dump_is_identical() -> Result<()> {
    let (source, store, manifest) = backed_up(
        ROUND_TRIP_ROWS.unsigned_abs(),
        &PostgresBackupOptions::default(),
    )
    .await?;
    assert_eq!(
        manifest.row_counts.get("public.hotel"),
        Some(&(ROUND_TRIP_ROWS + 2))
    );
    assert_eq!(
        manifest.row_counts.get("ops.audit"),
        Some(&(ROUND_TRIP_ROWS / 1000))
    );
    assert_eq!(manifest.row_counts.get("ops.empty_table"), Some(&0));
    assert!(manifest.stored_bytes < manifest.raw_bytes);
    assert!(manifest.encryption.is_none());
    // Read from the archive's header: what `pg_dump --version` says.
    let version = std::process::Command::new("pg_dump")
        .arg("--version")
        .output()?;
    let version = String::from_utf8(version.stdout)?;
    assert_eq!(Some(manifest.tool_version.as_str()), version.lines().next());

    let target = TestDatabase::create().await?;
    let report = restore(
        &store,
        &manifest,
        &target,
        &PostgresRestoreOptions::default(),
    )
    .await?;
    assert_eq!(report.raw_bytes, manifest.raw_bytes);
    assert_eq!(plain_dump(source.url())?, plain_dump(target.url())?);
    Ok(())
}

/// Every directory and file under `dir` with its permission bits.
fn modes_under(dir: &std::path::Path) -> Result<Vec<(std::path::PathBuf, u32)>> {
    use std::os::unix::fs::PermissionsExt;

    let mut found = vec![(
        dir.to_owned(),
        std::fs::metadata(dir)?.permissions().mode() & 0o7777,
    )];
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            found.extend(modes_under(&entry.path())?);
        } else {
            found.push((
                entry.path(),
                entry.metadata()?.permissions().mode() & 0o7777,
            ));
        }
    }
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unencrypted_local_backup_is_readable_by_its_owner_only() -> Result<()> {
    // Under the usual umask 022 the files would otherwise be 0644 and the directories 0755.
    let source = seeded_database(100).await?;
    let parent = tempfile::tempdir()?;
    let root = parent.path().join("backups");
    let storage = Storage::open(&format!("file://{}", root.display()), &S3Options::default())?;
    let manifest = backup_postgres(
        &storage,
        &secret(source.url()),
        &PostgresBackupOptions::default(),
    )
    .await?;
    assert!(manifest.encryption.is_none());
    let modes = modes_under(&root)?;
    let files = modes.iter().filter(|(path, _)| path.is_file()).count();
    assert!(files >= 2, "{modes:?}");
    for (path, mode) in &modes {
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, expected, "{} is {mode:o}", path.display());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_backup_on_s3_uses_equal_parts_restores_and_verifies() -> Result<()> {
    // About 12 MiB stored, so three 5 MiB parts.
    let source = incompressible_database().await?;
    let bucket = TestBucket::create().await?;
    let storage = s3_storage(&bucket, "pg/daily")?;
    let identity = Identity::generate();
    let mut options = encrypted_to(&identity);
    options.pipeline.part_size = groundwork_backup::MIN_REMOTE_PART_SIZE;
    let manifest = backup_postgres(&storage, &secret(source.url()), &options).await?;
    let object = &manifest.objects[0];
    assert_eq!(object.name, "dump.pgc.zst.age");
    assert_eq!(object.part_size, 5 * 1024 * 1024);
    assert!(
        object.stored_bytes > 2 * object.part_size,
        "{}",
        object.stored_bytes
    );
    assert_eq!(
        manifest.encryption.as_ref().map(|e| e.recipients.clone()),
        Some(vec![identity.public().to_string()])
    );

    let found = latest(&storage, BackupKind::Postgres, source.name()).await?;
    assert_eq!(found, manifest);

    let target = TestDatabase::create().await?;
    restore_postgres(
        &storage,
        &manifest,
        &secret(target.url()),
        &restoring_with(&identity),
    )
    .await?;
    assert_eq!(plain_dump(source.url())?, plain_dump(target.url())?);

    let verified = verify_postgres(
        &storage,
        &manifest,
        &secret(source.url()),
        &restoring_with(&identity),
    )
    .await?;
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.rows, 3000);
    Ok(())
}

/// The bytes plain zstd decodes `path` to (an unencrypted object).
fn plain_zstd(path: &std::path::Path) -> Result<Vec<u8>> {
    Ok(zstd::stream::decode_all(std::fs::File::open(path)?)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytea_hex_is_packed_by_default_and_plain_zstd_on_request() -> Result<()> {
    // 3000 values of 4 KiB random bytes: `pg_dump` writes 24 MiB of hex text.
    let source = incompressible_database().await?;
    let store = local_store()?;
    let packed = backup_postgres(
        &store.storage,
        &secret(source.url()),
        &PostgresBackupOptions::default(),
    )
    .await?;
    assert_eq!(packed.objects[0].packing.as_deref(), Some("pg-bytea-hex-1"));
    // Half the hex text, and no more: the packed bytes are stored as they are.
    assert!(
        packed.stored_bytes * 100 < packed.raw_bytes * 51,
        "{} of {}",
        packed.stored_bytes,
        packed.raw_bytes
    );
    let packed_path = first_object(&store, &source, &packed);
    // Plain zstd yields the packed stream, not the archive: shorter, and no `PGDMP` header.
    let packed_stream = plain_zstd(&packed_path)?;
    assert!((packed_stream.len() as u64) < packed.raw_bytes * 51 / 100);
    assert!(!packed_stream.starts_with(b"PGDMP"));

    let target = TestDatabase::create().await?;
    let report = restore(&store, &packed, &target, &PostgresRestoreOptions::default()).await?;
    assert_eq!(report.raw_bytes, packed.raw_bytes);
    assert_eq!(plain_dump(source.url())?, plain_dump(target.url())?);
    let verified = verify(&store, &packed, &source).await?;
    assert!(verified.ok, "{verified:?}");

    // Unpacked on request: any zstd decoder reads the archive itself.
    let unpacked_options = PostgresBackupOptions {
        pack_bytea_hex: false,
        ..PostgresBackupOptions::default()
    };
    let plain = backup_postgres(&store.storage, &secret(source.url()), &unpacked_options).await?;
    assert_eq!(plain.objects[0].packing, None);
    let archive = plain_zstd(&first_object(&store, &source, &plain))?;
    assert!(archive.starts_with(b"PGDMP"));
    assert_eq!(archive.len() as u64, plain.raw_bytes);
    let target = TestDatabase::create().await?;
    restore(&store, &plain, &target, &PostgresRestoreOptions::default()).await?;
    assert_eq!(plain_dump(source.url())?, plain_dump(target.url())?);

    // A packing this version does not know is refused by name, before anything is restored.
    let mut unknown = packed.clone();
    unknown.objects[0].packing = Some("pg-bytea-hex-9".into());
    let target = TestDatabase::create().await?;
    let message = refused_restore(&store, &unknown, &target)
        .await
        .map(|err| err.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("\"pg-bytea-hex-9\"") && message.contains("does not know"),
        "{message}"
    );
    assert_eq!(relation_count(&target).await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_stored_byte_is_refused_with_a_checksum_error_naming_the_object() -> Result<()> {
    let identity = Identity::generate();
    let (source, store, manifest) = backed_up(20_000, &encrypted_to(&identity)).await?;
    let object_path = first_object(&store, &source, &manifest);

    for position in [100, manifest.stored_bytes / 2, manifest.stored_bytes - 10] {
        let mut bytes = std::fs::read(&object_path)?;
        let original = bytes.clone();
        let index = usize::try_from(position)?;
        bytes[index] ^= 0x01;
        std::fs::write(&object_path, &bytes)?;

        let target = TestDatabase::create().await?;
        let err = restore(&store, &manifest, &target, &restoring_with(&identity))
            .await
            .err();
        match &err {
            Some(BackupError::ChecksumMismatch { object, .. }) => {
                assert!(object.ends_with("dump.pgc.zst.age"), "{object}");
                let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
                assert!(message.contains(&manifest.objects[0].sha256), "{message}");
            }
            other => panic!("byte {position}: expected a checksum mismatch, got {other:?}"),
        }
        // Nothing of the damaged backup was committed.
        assert_eq!(relation_count(&target).await?, 0, "byte {position}");
        std::fs::write(&object_path, &original)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_unencrypted_backup_leaves_a_cleaned_target_untouched() -> Result<()> {
    let (source, store, manifest) = backed_up(20_000, &PostgresBackupOptions::default()).await?;
    let target = seeded_database(10).await?;
    let before = plain_dump(target.url())?;

    let object_path = first_object(&store, &source, &manifest);
    let mut bytes = std::fs::read(&object_path)?;
    // The last byte (zstd's frame checksum): everything before it has long been fed to pg_restore.
    let index = bytes.len() - 1;
    bytes[index] ^= 0x80;
    std::fs::write(&object_path, &bytes)?;

    let options = PostgresRestoreOptions {
        clean: true,
        ..PostgresRestoreOptions::default()
    };
    let err = restore(&store, &manifest, &target, &options).await.err();
    assert!(
        matches!(err, Some(BackupError::ChecksumMismatch { .. })),
        "{err:?}"
    );
    assert_eq!(plain_dump(target.url())?, before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_key_is_a_clear_error() -> Result<()> {
    let identity = Identity::generate();
    let (_source, store, manifest) = backed_up(100, &encrypted_to(&identity)).await?;
    let target = TestDatabase::create().await?;

    let wrong = Identity::generate();
    let err = restore(&store, &manifest, &target, &restoring_with(&wrong))
        .await
        .err();
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(matches!(err, Some(BackupError::WrongKey { .. })), "{err:?}");
    assert!(
        message.contains(&identity.public().to_string()),
        "{message}"
    );
    assert!(!message.contains(&wrong.to_secret_string()), "{message}");

    let err = refused_restore(&store, &manifest, &target).await;
    assert!(
        matches!(err, Some(BackupError::KeyRequired { .. })),
        "{err:?}"
    );
    assert_eq!(relation_count(&target).await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_empty_target_is_refused_unless_clean_and_parallel_restore_works() -> Result<()> {
    let (source, store, manifest) = backed_up(1_000, &PostgresBackupOptions::default()).await?;
    let target = seeded_database(5).await?;
    let err = refused_restore(&store, &manifest, &target).await;
    assert!(
        matches!(err, Some(BackupError::TargetNotEmpty { .. })),
        "{err:?}"
    );

    let staging = tempfile::tempdir()?;
    let options = PostgresRestoreOptions {
        clean: true,
        jobs: 2,
        staging_dir: Some(staging.path().to_owned()),
        ..PostgresRestoreOptions::default()
    };
    restore(&store, &manifest, &target, &options).await?;
    assert_eq!(plain_dump(source.url())?, plain_dump(target.url())?);
    // The staging file is gone.
    assert_eq!(std::fs::read_dir(staging.path())?.count(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_row_counts_that_differ_from_the_manifest() -> Result<()> {
    let (source, store, mut manifest) = backed_up(100, &PostgresBackupOptions::default()).await?;
    let report = verify(&store, &manifest, &source).await?;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.tables, 3);

    // A manifest that claims another count (as if rows had been lost) fails verification.
    manifest.row_counts.insert("public.hotel".into(), 1);
    let report = verify(&store, &manifest, &source).await?;
    assert!(!report.ok);
    assert_eq!(report.mismatches.len(), 1);
    assert_eq!(report.mismatches[0].table, "public.hotel");
    assert_eq!(report.mismatches[0].actual, Some(102));
    // The scratch databases were dropped.
    let pattern = format!(
        "gw\\_verify\\_{}\\_%",
        manifest.id.as_str().to_lowercase().replace(['.', 'z'], "")
    );
    let scratch: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE $1")
        .bind(pattern)
        .fetch_one(source.pool())
        .await?;
    assert_eq!(scratch, 0);
    Ok(())
}

/// A stand-in for `program` that appends each of its arguments to `log` (one a line), then runs
/// the real program with them: what `ps` would have shown.
fn argv_recorder(
    dir: &std::path::Path,
    program: &str,
    log: &std::path::Path,
) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(format!("recording-{program}"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nfor arg in \"$@\"; do printf '%s\\n' \"$arg\" >> '{}'; done\nexec {program} \"$@\"\n",
            log.display()
        ),
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// `url` with `password` in its userinfo and `query` appended.
fn with_secrets(url: &str, password: Option<&str>, query: &str) -> Result<String> {
    let mut url = url::Url::parse(url)?;
    if url.set_password(password).is_err() {
        anyhow::bail!("{url} cannot have a password");
    }
    let query = match url.query() {
        Some(existing) => format!("{existing}&{query}"),
        None => query.to_owned(),
    };
    url.set_query(Some(&query));
    Ok(url.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_child_command_line_whatever_the_url_form() -> Result<()> {
    // The server trusts loopback connections, so the passwords are sent but never checked.
    const CANARY: &str = "Argv-Canary-5d41";
    let source = seeded_database(100).await?;
    let target = TestDatabase::create().await?;
    let store = local_store()?;
    let tools = tempfile::tempdir()?;
    let log = tools.path().join("argv.log");

    let backup_url = with_secrets(
        source.url(),
        None,
        &format!("password={CANARY}-q&sslpassword={CANARY}-ssl&Token={CANARY}-t"),
    )?;
    let options = PostgresBackupOptions {
        pg_dump: argv_recorder(tools.path(), "pg_dump", &log)?,
        ..PostgresBackupOptions::default()
    };
    let manifest = backup_postgres(&store.storage, &secret(&backup_url), &options).await?;
    assert_eq!(manifest.row_counts.get("public.hotel"), Some(&102));

    let restore_url = with_secrets(
        target.url(),
        Some(&format!("{CANARY}-userinfo")),
        &format!("sslpassword={CANARY}-ssl"),
    )?;
    let restore = PostgresRestoreOptions {
        pg_restore: argv_recorder(tools.path(), "pg_restore", &log)?,
        ..PostgresRestoreOptions::default()
    };
    restore_postgres(&store.storage, &manifest, &secret(&restore_url), &restore).await?;
    let hotels: i64 = sqlx::query_scalar("SELECT count(*) FROM public.hotel")
        .fetch_one(target.pool())
        .await?;
    assert_eq!(hotels, 102);

    let argv = std::fs::read_to_string(&log)?;
    assert_eq!(
        argv.lines()
            .filter(|arg| arg.starts_with("--dbname="))
            .count(),
        2,
        "both programs ran through the recorder: {argv}"
    );
    assert!(
        !argv.contains(CANARY),
        "a secret reached a command line:\n{argv}"
    );
    let manifest_json = serde_json::to_string(&manifest)?;
    assert!(!manifest_json.contains(CANARY), "{manifest_json}");
    Ok(())
}
