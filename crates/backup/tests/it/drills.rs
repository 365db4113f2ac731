//! Reliability drills through the `groundwork-backup` binary and the retention API: a killed
//! backup, retention over complete and incomplete backups, exit codes and JSON output.
#![cfg(all(feature = "postgres", feature = "cli"))]

use crate::common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use common::{incompressible_database, local_store, s3_storage, secret, seeded_database};
use groundwork_backup::{
    BackupError, BackupFilter, BackupId, BackupKind, BackupStatus, Identity, PipelineOptions,
    PostgresBackupOptions, PruneReason, RetentionPolicy, backup_postgres, latest, list, prune,
};
use groundwork_testkit::{TestBucket, TestDatabase};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::Value;

fn cli() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_groundwork-backup"));
    // The drills must not pick up an operator's settings.
    for var in [
        "GROUNDWORK_BACKUP_STORAGE",
        "GROUNDWORK_BACKUP_RECIPIENTS",
        "GROUNDWORK_BACKUP_IDENTITY_FILE",
        "DATABASE_URL",
    ] {
        command.env_remove(var);
    }
    command
}

fn json_of(output: &Output) -> Result<Value> {
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "stdout is not JSON: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// A `pg_dump` that dumps, then keeps its output open, so the backup is stuck mid-stream
/// with its parts uploaded but the upload never completed.
fn stalling_pg_dump(dir: &Path) -> Result<std::path::PathBuf> {
    let path = dir.join("stalling-pg_dump");
    std::fs::write(
        &path,
        "#!/bin/sh\n\
         case \"$1\" in --version) exec pg_dump --version;; esac\n\
         pg_dump \"$@\"\n\
         exec sleep 30\n",
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// Starts `postgres backup` with a stalling `pg_dump`, waits for the log line reporting an
/// uploaded part, and kills the process with SIGKILL.
fn kill_backup_mid_stream(database_url: &str, storage_args: &[&str], tools: &Path) -> Result<()> {
    kill_backup_mid_stream_with(database_url, storage_args, tools, |command| command)
}

fn kill_backup_mid_stream_with(
    database_url: &str,
    storage_args: &[&str],
    tools: &Path,
    prepare: impl Fn(Command) -> Command,
) -> Result<()> {
    let mut child = prepare(cli())
        .args(["postgres", "backup"])
        .args(storage_args)
        .arg("--pg-dump")
        .arg(stalling_pg_dump(tools)?)
        .args(["--database-url", database_url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut seen = Vec::new();
    let mut uploaded = false;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        uploaded = line.contains("progress:") && !line.contains(" 0 parts");
        seen.push(line);
        if uploaded {
            break;
        }
    }
    child.kill()?;
    child.wait()?;
    if !uploaded {
        bail!("the backup ended before it reported an uploaded part: {seen:#?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backup_is_never_listed_and_the_next_prune_removes_it() -> Result<()> {
    let db = seeded_database(20_000).await?;
    let store = local_store()?;
    let tools = tempfile::tempdir()?;
    let storage_url = store.url();

    kill_backup_mid_stream(
        db.url(),
        &["--part-size", "64KiB", "--storage", &storage_url],
        tools.path(),
    )?;

    let entries = list(&store.storage, &BackupFilter::default()).await?;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].status, BackupStatus::Incomplete);
    let err = latest(&store.storage, BackupKind::Postgres, db.name())
        .await
        .err();
    assert!(matches!(err, Some(BackupError::NotFound { .. })), "{err:?}");
    // The killed upload's staging file is on disk, invisible to listing.
    let backup_dir = store
        .dir
        .path()
        .join("postgres")
        .join(db.name())
        .join(entries[0].id.as_str());
    let files: Vec<String> = std::fs::read_dir(&backup_dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    assert!(
        files.iter().any(|f| f.starts_with("dump.pgc.zst#")),
        "{files:?}"
    );
    assert!(!files.iter().any(|f| f == "manifest.json"), "{files:?}");

    // The default grace of a day keeps it (it could still be running)...
    let output = cli()
        .args(["prune", "--json", "--storage", &storage_url])
        .output()?;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json_of(&output)?["result"]["deleted"], Value::Array(vec![]));
    // ...and once it is old enough, prune removes it, staging file and all.
    let output = cli()
        .args([
            "prune",
            "--json",
            "--incomplete-after",
            "0s",
            "--storage",
            &storage_url,
        ])
        .output()?;
    assert_eq!(output.status.code(), Some(0));
    let report = json_of(&output)?;
    assert_eq!(report["result"]["deleted"][0]["reason"], "incomplete");
    assert!(!backup_dir.exists());
    assert!(
        list(&store.storage, &BackupFilter::default())
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_while_uploading_to_s3_is_never_listed_and_prune_removes_it() -> Result<()>
{
    // About 12 MiB stored, so 5 MiB parts get uploaded.
    let db = incompressible_database().await?;
    let bucket = TestBucket::create().await?;
    let storage = s3_storage(&bucket, "killed")?;
    let tools = tempfile::tempdir()?;
    let url = format!("s3://{}/killed", bucket.bucket());
    let s3_args = [
        "--storage",
        url.as_str(),
        "--s3-endpoint",
        bucket.endpoint(),
        "--s3-allow-http",
        "--s3-path-style",
        "--s3-region",
        "us-east-1",
    ];
    // The child gets moto's dummy credentials.
    let with_credentials = |mut command: Command| {
        command
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test");
        command
    };
    let mut args: Vec<&str> = vec!["--part-size", "5MiB"];
    args.extend(s3_args);
    kill_backup_mid_stream_with(db.url(), &args, tools.path(), with_credentials)?;

    let entries = list(&storage, &BackupFilter::default()).await?;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].status, BackupStatus::Incomplete);
    let err = latest(&storage, BackupKind::Postgres, db.name())
        .await
        .err();
    assert!(matches!(err, Some(BackupError::NotFound { .. })), "{err:?}");

    let output = with_credentials(cli())
        .args(["prune", "--json", "--incomplete-after", "0s"])
        .args(s3_args)
        .output()?;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        json_of(&output)?["result"]["deleted"][0]["reason"],
        "incomplete"
    );
    assert!(list(&storage, &BackupFilter::default()).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_s3_mixes_complete_and_incomplete_backups_correctly() -> Result<()> {
    let db = seeded_database(50).await?;
    let bucket = TestBucket::create().await?;
    let storage = s3_storage(&bucket, "retention")?;
    let options = PostgresBackupOptions {
        row_counts: false,
        ..PostgresBackupOptions::default()
    };
    let mut complete = Vec::new();
    for _ in 0..3 {
        complete.push(
            backup_postgres(&storage, &secret(db.url()), &options)
                .await?
                .id,
        );
    }
    // Two backups that never finished: a marker, one older than every complete backup and one
    // newer, plus a partial data object.
    let hour_ago = BackupId::at(SystemTime::now() - Duration::from_hours(1));
    let future = BackupId::at(SystemTime::now() + Duration::from_secs(5));
    for id in [&hour_ago, &future] {
        for name in ["started.json", "dump.pgc.zst"] {
            let path = ObjectPath::from_iter(["postgres", db.name(), id.as_str(), name]);
            storage.store().put(&path, PutPayload::from("{}")).await?;
        }
    }
    let filter = BackupFilter {
        kind: Some(BackupKind::Postgres),
        source: Some(db.name().to_owned()),
    };
    let statuses: Vec<BackupStatus> = list(&storage, &filter)
        .await?
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        statuses,
        [
            BackupStatus::Incomplete,
            BackupStatus::Complete,
            BackupStatus::Complete,
            BackupStatus::Complete,
            BackupStatus::Incomplete
        ]
    );
    // The newest complete backup is what restores would use, not the newer incomplete one.
    assert_eq!(
        latest(&storage, BackupKind::Postgres, db.name()).await?.id,
        complete[2]
    );

    let policy = RetentionPolicy {
        keep_last: Some(2),
        max_age: None,
        incomplete_after: Duration::ZERO,
    };
    let dry = prune(&storage, &filter, &policy, true).await?;
    let planned: Vec<(BackupId, PruneReason)> = dry
        .deleted
        .iter()
        .map(|p| (p.id.clone(), p.reason))
        .collect();
    assert_eq!(
        planned,
        [
            (complete[0].clone(), PruneReason::BeyondKeepLast),
            (hour_ago.clone(), PruneReason::Incomplete),
            (future.clone(), PruneReason::Incomplete),
        ]
    );
    assert_eq!(
        list(&storage, &filter).await?.len(),
        5,
        "a dry run deletes nothing"
    );

    prune(&storage, &filter, &policy, false).await?;
    let left: Vec<BackupId> = list(&storage, &filter)
        .await?
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, [complete[1].clone(), complete[2].clone()]);

    // Even a policy that keeps nothing and expires everything keeps the newest backup.
    let strict = RetentionPolicy {
        keep_last: Some(0),
        max_age: Some(Duration::ZERO),
        incomplete_after: Duration::ZERO,
    };
    prune(&storage, &filter, &strict, false).await?;
    let left: Vec<BackupId> = list(&storage, &filter)
        .await?
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, [complete[2].clone()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_backs_up_with_json_output_and_metrics() -> Result<()> {
    let db = seeded_database(200).await?;
    let store = local_store()?;
    let keys = tempfile::tempdir()?;
    let storage_url = store.url();
    let key_file = keys.path().join("backup.key");
    let other_key = keys.path().join("other.key");

    let output = cli()
        .arg("keygen")
        .arg("--output")
        .arg(&key_file)
        .output()?;
    assert_eq!(output.status.code(), Some(0));
    let recipient = String::from_utf8(output.stdout)?.trim().to_owned();
    assert!(recipient.starts_with("age1"), "{recipient}");
    cli()
        .arg("keygen")
        .arg("--output")
        .arg(&other_key)
        .output()?;

    let metrics_file = keys.path().join("backup.prom");
    let output = cli()
        .args(["postgres", "backup", "--json", "--storage", &storage_url])
        .args(["--recipient", &recipient])
        .arg("--metrics-file")
        .arg(&metrics_file)
        .env("DATABASE_URL", db.url())
        .output()?;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest = json_of(&output)?;
    assert_eq!(manifest["ok"], true);
    assert_eq!(manifest["result"]["row_counts"]["public.hotel"], 202);
    let id = manifest["result"]["id"].as_str().context("id")?.to_owned();
    // The database password never reaches the output.
    let all_output = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if let Some(password) = url::Url::parse(db.url())?.password() {
        assert!(!all_output.contains(password));
    }
    let metrics = std::fs::read_to_string(&metrics_file)?;
    assert!(
        metrics.contains(&format!(
            "backup_last_success_timestamp_seconds{{kind=\"postgres\",source=\"{}\"}}",
            db.name()
        )),
        "{metrics}"
    );

    let output = cli()
        .args(["list", "--json", "--storage", &storage_url])
        .output()?;
    assert_eq!(output.status.code(), Some(0));
    let listed = json_of(&output)?;
    assert_eq!(listed["result"][0]["status"], "complete");
    assert_eq!(listed["result"][0]["id"], id.as_str());

    // No storage at all: a usage error.
    let output = cli().args(["list"]).output()?;
    assert_eq!(output.status.code(), Some(2));
    let output = cli()
        .args(["list", "--storage", "ftp://nowhere"])
        .output()?;
    assert_eq!(output.status.code(), Some(2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_exits_2_for_a_wrong_key_and_1_for_a_damaged_backup() -> Result<()> {
    let db = seeded_database(200).await?;
    let store = local_store()?;
    let keys = tempfile::tempdir()?;
    let storage_url = store.url();
    let identity = Identity::generate();
    let key_file = keys.path().join("backup.key");
    std::fs::write(
        &key_file,
        format!("# test key\n{}\n", identity.to_secret_string()),
    )?;
    let other_key = keys.path().join("other.key");
    std::fs::write(&other_key, Identity::generate().to_secret_string())?;
    let options = PostgresBackupOptions {
        pipeline: PipelineOptions {
            recipients: vec![identity.public()],
            ..PipelineOptions::default()
        },
        ..PostgresBackupOptions::default()
    };
    let id = backup_postgres(&store.storage, &secret(db.url()), &options)
        .await?
        .id
        .to_string();

    let target = TestDatabase::create().await?;
    let restore = |key: &Path| {
        cli()
            .args(["postgres", "restore", "--json", "--storage", &storage_url])
            .args([
                "--source",
                db.name(),
                "--id",
                &id,
                "--database-url",
                target.url(),
            ])
            .arg("--identity-file")
            .arg(key)
            .output()
    };
    // Wrong key: the operator's to fix, exit 2.
    let output = restore(&other_key)?;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(json_of(&output)?["ok"], false);

    // A flipped byte: the backup is damaged, exit 1.
    let object = store
        .dir
        .path()
        .join("postgres")
        .join(db.name())
        .join(&id)
        .join("dump.pgc.zst.age");
    let mut bytes = std::fs::read(&object)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&object, &bytes)?;
    let output = restore(&key_file)?;
    assert_eq!(output.status.code(), Some(1));
    let error = json_of(&output)?["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("checksum mismatch") && error.contains("dump.pgc.zst.age"),
        "{error}"
    );
    bytes[middle] ^= 0x10;
    std::fs::write(&object, &bytes)?;

    let output = restore(&key_file)?;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let output = cli()
        .args([
            "postgres",
            "verify",
            "--storage",
            &storage_url,
            "--source",
            db.name(),
        ])
        .args(["--database-url", db.url()])
        .arg("--identity-file")
        .arg(&key_file)
        .output()?;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    Ok(())
}

/// Every file below `dir`, read as text.
fn files_below(dir: &Path, found: &mut Vec<(String, String)>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files_below(&path, found)?;
        } else {
            let bytes = std::fs::read(&path)?;
            found.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_any_part_of_the_database_url_never_reaches_cli_output_or_storage() -> Result<()>
{
    // The server trusts loopback connections: the passwords are sent but never checked.
    const CANARY: &str = "Cli-Canary-93b7";
    let db = seeded_database(50).await?;
    let store = local_store()?;
    let storage_url = store.url();
    let mut url = url::Url::parse(db.url())?;
    if url
        .set_password(Some(&format!("{CANARY}-userinfo")))
        .is_err()
    {
        bail!("{url} cannot have a password");
    }
    url.set_query(Some(&format!(
        "application_name=drill&password={CANARY}-query&sslpassword={CANARY}-ssl"
    )));
    let url = url.to_string();
    let mut dead = url::Url::parse(&url)?;
    if dead.set_port(Some(1)).is_err() {
        bail!("{dead} cannot have a port");
    }
    let dead = dead.to_string();

    let runs: [&[&str]; 7] = [
        &["postgres", "backup", "--json", "--database-url", &url],
        &["postgres", "backup", "--database-url", &url],
        &["list", "--json"],
        &["list"],
        &["postgres", "verify", "--json", "--database-url", &url],
        &["postgres", "backup", "--database-url", &dead],
        &["postgres", "backup", "--json", "--database-url", &dead],
    ];
    let mut outputs = Vec::new();
    for (index, args) in runs.iter().enumerate() {
        let output = cli()
            .args(*args)
            .args(["--storage", &storage_url])
            .output()?;
        let expected = i32::from(index >= 5);
        assert_eq!(
            output.status.code(),
            Some(expected),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push((
            format!("{args:?}"),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        ));
    }
    files_below(store.dir.path(), &mut outputs)?;
    assert!(
        outputs
            .iter()
            .any(|(what, _)| what.ends_with("manifest.json")),
        "no manifest was written: {outputs:?}"
    );
    for (what, text) in &outputs {
        assert!(!text.contains(CANARY), "{what} shows a secret:\n{text}");
    }
    Ok(())
}

#[test]
fn an_unreachable_database_fails_at_once_with_the_cause_printed_once() -> Result<()> {
    let storage = tempfile::tempdir()?;
    let storage_url = format!("file://{}", storage.path().display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("postgres://ops:Hunter2-secret@127.0.0.1:{port}/hotel");
    for command in [&["postgres", "backup"][..], &["postgres", "verify"][..]] {
        let output = cli()
            .args(command)
            .args(["--storage", &storage_url, "--database-url", &url, "--json"])
            .args(["--source", "hotel", "--connect-timeout", "3"])
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        // verify has no backup to verify: that usage error comes before any connect.
        if command[1] == "verify" {
            assert_eq!(output.status.code(), Some(2), "{stderr}");
            continue;
        }
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
        assert!(
            stderr.contains("cannot connect to the database at postgres://ops:***@127.0.0.1:"),
            "{stderr}"
        );
        assert!(!stderr.contains("Hunter2-secret"), "{stderr}");
        let json = json_of(&output)?;
        assert_eq!(json["ok"], false);
        assert_eq!(json["exit_code"], 1);
        let error = json["error"].as_str().context("an error message")?;
        assert_eq!(error.matches("Connection refused").count(), 1, "{error}");
        assert!(!error.contains("Hunter2-secret"), "{error}");
    }
    Ok(())
}
