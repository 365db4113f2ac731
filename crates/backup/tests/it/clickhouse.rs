//! ClickHouse portable export and restore against a real server (Debian's 18.16 here, which has
//! no `BACKUP`); each test owns its databases.
#![cfg(feature = "clickhouse")]

use crate::common;

use std::fmt::Write as _;

use anyhow::Result;
use common::{local_store, secret};
use groundwork_backup::{
    BackupError, ClickHouseBackupOptions, ClickHouseRestoreOptions, Identity, PipelineOptions,
    backup_clickhouse, restore_clickhouse,
};
use groundwork_testkit::TestClickHouse;

async fn rows(db: &TestClickHouse, query: &str) -> Result<Vec<String>> {
    let text: Vec<String> = db.client().query(query).fetch_all::<String>().await?;
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portable_export_restores_schema_and_rows_into_another_database() -> Result<()> {
    let source = TestClickHouse::create().await?;
    let client = source.client();
    client
        .query(
            "CREATE TABLE events (day Date, id UInt64, name String, score Float64, tags Array(String)) \
             ENGINE = MergeTree(day, (day, id), 8192)",
        )
        .execute()
        .await?;
    client
        .query(
            "INSERT INTO events SELECT toDate('2025-01-01') + number % 30, number, \
             concat('酒店 ', toString(number)), number / 7, [toString(number % 3), 'ü'] \
             FROM system.numbers LIMIT 50000",
        )
        .execute()
        .await?;
    client
        .query("CREATE TABLE notes (id UInt32, body String) ENGINE = TinyLog")
        .execute()
        .await?;
    client
        .query("INSERT INTO notes VALUES (1, 'tab\\there'), (2, 'quote \\' and \\\\ backslash')")
        .execute()
        .await?;
    client
        .query("CREATE VIEW recent AS SELECT id FROM events WHERE id > 49990")
        .execute()
        .await?;

    let store = local_store()?;
    let identity = Identity::generate();
    let options = ClickHouseBackupOptions {
        pipeline: PipelineOptions {
            recipients: vec![identity.public()],
            ..PipelineOptions::default()
        },
        database: source.database().to_owned(),
        source_name: None,
        tls: groundwork_connect::TlsSettings::default(),
    };
    let manifest = backup_clickhouse(&store.storage, &secret(source.url()), &options).await?;
    assert_eq!(manifest.row_counts.get("events"), Some(&50_000));
    assert_eq!(manifest.row_counts.get("notes"), Some(&2));
    assert!(
        !manifest.row_counts.contains_key("recent"),
        "views carry no data"
    );
    assert_eq!(manifest.objects.len(), 3, "{:?}", manifest.objects);

    let target = TestClickHouse::create().await?;
    let restore = ClickHouseRestoreOptions {
        identities: vec![identity.clone()],
        database: Some(target.database().to_owned()),
        clean: false,
        progress: None,
        tls: groundwork_connect::TlsSettings::default(),
    };
    let report =
        restore_clickhouse(&store.storage, &manifest, &secret(target.url()), &restore).await?;
    assert!(report.mismatches.is_empty(), "{report:?}");
    assert_eq!(report.tables, 2);

    let digest = "SELECT toString(sum(cityHash64(day, id, name, score, tags))) FROM events";
    assert_eq!(rows(&source, digest).await?, rows(&target, digest).await?);
    let notes = "SELECT body FROM notes ORDER BY id";
    assert_eq!(rows(&source, notes).await?, rows(&target, notes).await?);
    assert_eq!(
        rows(&target, "SELECT toString(count()) FROM recent").await?,
        ["9"]
    );

    // Restoring again is refused unless asked to clean; with clean it replaces the tables.
    let err = restore_clickhouse(&store.storage, &manifest, &secret(target.url()), &restore)
        .await
        .err();
    assert!(
        matches!(err, Some(BackupError::TargetNotEmpty { .. })),
        "{err:?}"
    );
    let clean = ClickHouseRestoreOptions {
        clean: true,
        ..restore
    };
    let report =
        restore_clickhouse(&store.storage, &manifest, &secret(target.url()), &clean).await?;
    assert!(report.mismatches.is_empty(), "{report:?}");
    Ok(())
}

/// The export goes over `https://` (stunnel in front of the same server) with the test CA, and
/// refuses a server whose certificate another CA signed, naming the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_over_tls_trusts_the_configured_ca_only() -> Result<()> {
    let tls = groundwork_testkit::TestTls::discover()?;
    let source = TestClickHouse::create().await?;
    source
        .client()
        .query("CREATE TABLE notes (id UInt32, body String) ENGINE = TinyLog")
        .execute()
        .await?;
    source
        .client()
        .query("INSERT INTO notes VALUES (1, 'over tls')")
        .execute()
        .await?;
    let store = local_store()?;
    let options = |ca_cert: String| ClickHouseBackupOptions {
        pipeline: PipelineOptions::default(),
        database: source.database().to_owned(),
        source_name: None,
        tls: groundwork_connect::TlsSettings {
            ca_cert: Some(ca_cert),
            ..groundwork_connect::TlsSettings::default()
        },
    };
    let url = secret(&tls.clickhouse_url);
    let manifest = backup_clickhouse(&store.storage, &url, &options(tls.ca_cert.clone())).await?;
    assert_eq!(manifest.row_counts.get("notes"), Some(&1));

    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca = params.self_signed(&key)?.pem();
    let refused = backup_clickhouse(&store.storage, &url, &options(other_ca)).await;
    let error = refused
        .err()
        .ok_or_else(|| anyhow::anyhow!("a wrong CA must be refused"))?;
    let mut chain = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(inner) = cause {
        let _ = write!(chain, " / {inner:?}");
        cause = inner.source();
    }
    assert!(chain.contains("UnknownIssuer"), "{chain}");
    Ok(())
}

/// A password given as a query parameter is used (ClickHouse's HTTP interface accepts it there),
/// and never appears in the error when the server refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_query_parameter_is_sent_and_never_shown() -> Result<()> {
    let source = TestClickHouse::create().await?;
    let store = local_store()?;
    let options = ClickHouseBackupOptions {
        pipeline: PipelineOptions::default(),
        database: source.database().to_owned(),
        source_name: None,
        tls: groundwork_connect::TlsSettings::default(),
    };
    let url = format!(
        "{}/?user=default&password=wrong-canary-7q",
        source.url().trim_end_matches('/')
    );
    let refused = backup_clickhouse(&store.storage, &secret(&url), &options).await;
    let error = refused
        .err()
        .ok_or_else(|| anyhow::anyhow!("the wrong password was not sent"))?;
    let text = format!("{error:?} {error}");
    assert!(!text.contains("wrong-canary-7q"), "{text}");
    Ok(())
}
