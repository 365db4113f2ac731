//! Shared set-up: seeded databases, storage locations, dumps to compare.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use groundwork_backup::{S3Options, Storage};
use groundwork_testkit::{TestBucket, TestDatabase};
use secrecy::SecretString;
use sqlx::{AssertSqlSafe, Executor};

/// A database with the seed schema and `rows` generated hotels.
pub(crate) async fn seeded_database(rows: u64) -> Result<TestDatabase> {
    let db = TestDatabase::create().await?;
    let seed = std::fs::read_to_string(fixture("seed.sql"))?.replace("{rows}", &rows.to_string());
    db.pool().execute(AssertSqlSafe(seed)).await?;
    Ok(db)
}

/// A database of 3000 rows of random bytes that do not compress: about 12 MiB stored, enough
/// for several 5 MiB upload parts.
pub(crate) async fn incompressible_database() -> Result<TestDatabase> {
    let db = TestDatabase::create().await?;
    db.pool()
        .execute(
            "CREATE TABLE blob (id int PRIMARY KEY, data bytea NOT NULL);
             INSERT INTO blob
             SELECT g, (SELECT string_agg(decode(md5(random()::text || g || i), 'hex'), ''::bytea)
                        FROM generate_series(1, 256) AS i)
             FROM generate_series(1, 3000) AS g;",
        )
        .await?;
    Ok(db)
}

/// Writes `<dir>/backup.env` naming `storage` (a URL) and the source `app`; its path.
pub(crate) fn env_file(dir: &Path, storage: &str) -> Result<PathBuf> {
    let path = dir.join("backup.env");
    std::fs::write(
        &path,
        format!("GROUNDWORK_BACKUP_STORAGE={storage}\nGROUNDWORK_BACKUP_SOURCE=app\n"),
    )?;
    Ok(path)
}

/// Writes `<dir>/archive.key` with a new identity and `<dir>/backup.env` with `lines` (the
/// storage), the source `app`, that identity as recipient and the key as identity file; the env
/// file's path.
pub(crate) fn encrypting_env_file(dir: &Path, lines: &str) -> Result<PathBuf> {
    let identity = groundwork_backup::Identity::generate();
    let key = dir.join("archive.key");
    std::fs::write(&key, format!("{}\n", identity.to_secret_string()))?;
    let path = dir.join("backup.env");
    std::fs::write(
        &path,
        format!(
            "{lines}\nGROUNDWORK_BACKUP_SOURCE=app\nGROUNDWORK_BACKUP_RECIPIENTS={}\n\
             GROUNDWORK_BACKUP_IDENTITY_FILE={}\n",
            identity.public(),
            key.display()
        ),
    )?;
    Ok(path)
}

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub(crate) fn secret(url: &str) -> SecretString {
    SecretString::from(url.to_owned())
}

/// A fresh local backup directory, removed on drop.
pub(crate) struct LocalStore {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) storage: Storage,
}

impl LocalStore {
    /// `file://<dir>`, as the CLI takes it.
    pub(crate) fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }
}

pub(crate) fn local_store() -> Result<LocalStore> {
    let dir = tempfile::tempdir()?;
    let url = format!("file://{}", dir.path().display());
    let storage = Storage::open(&url, &S3Options::default())?;
    Ok(LocalStore { dir, storage })
}

/// Opens the test bucket through an `s3://` URL, as an operator would.
pub(crate) fn s3_storage(bucket: &TestBucket, prefix: &str) -> Result<Storage> {
    let options = S3Options {
        endpoint: Some(bucket.endpoint().to_owned()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some(SecretString::from("test")),
        session_token: None,
        allow_http: true,
        path_style: true,
    };
    Ok(Storage::open(
        &format!("s3://{}/{prefix}", bucket.bucket()),
        &options,
    )?)
}

/// A schema + data plain-text dump, without the lines that differ between any two dumps
/// (`\restrict` keys).
pub(crate) fn plain_dump(url: &str) -> Result<String> {
    let output = Command::new("pg_dump")
        .args(["--format=plain", "--no-owner", "--no-privileges"])
        .arg(format!("--dbname={url}"))
        .output()
        .context("running pg_dump")?;
    if !output.status.success() {
        bail!(
            "pg_dump failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8(output.stdout)?;
    Ok(text
        .lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Relations outside the system schemas.
pub(crate) async fn relation_count(db: &TestDatabase) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg\\_%'",
    )
    .fetch_one(db.pool())
    .await?)
}
