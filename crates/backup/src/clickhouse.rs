//! ClickHouse: a portable export that works on every server version — each table's
//! `SHOW CREATE TABLE` plus its data as `FORMAT Native`, streamed through the pipeline — and
//! its restore with `INSERT ... FORMAT Native`, over the HTTP interface.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::manifest::{
    BackupId, BackupKind, BackupManifest, Completed, MANIFEST_FILE, STARTED_FILE, StartedMarker,
    StoredObject, backup_object, rfc3339,
};
use crate::pipeline::{self, DownloadSpec, PipelineOptions, Progress};
use crate::storage::Storage;
use crate::storage::percent_decode;
use crate::{BackupError, Identity};

/// The object holding every `CREATE` statement, in creation order.
const SCHEMA_OBJECT: &str = "schema.sql";

/// Engines whose data the export carries; views are recreated from their definition, and the
/// inner tables of materialized views are left to them.
fn stores_data(engine: &str) -> bool {
    engine.ends_with("MergeTree") || matches!(engine, "Log" | "TinyLog" | "StripeLog" | "Memory")
}

/// How to back up a ClickHouse database.
#[derive(Debug, Clone)]
pub struct ClickHouseBackupOptions {
    /// Compression, encryption, part size, progress.
    pub pipeline: PipelineOptions,
    /// The database to export.
    pub database: String,
    /// The name the backup is filed under; the database name when `None`.
    pub source_name: Option<String>,
    /// CA and client certificate for an `https://` URL; the system's roots when empty.
    pub tls: groundwork_connect::TlsSettings,
}

/// How to restore a ClickHouse backup.
#[derive(Debug, Clone, Default)]
pub struct ClickHouseRestoreOptions {
    /// Private keys for encrypted backups.
    pub identities: Vec<Identity>,
    /// The database to restore into (created if missing); the backed-up name when `None`.
    pub database: Option<String>,
    /// Drop tables of the backup that already exist in the target; without it a target with any
    /// table is refused.
    pub clean: bool,
    /// Counters for a progress bar.
    pub progress: Option<std::sync::Arc<Progress>>,
    /// CA and client certificate for an `https://` URL; the system's roots when empty.
    pub tls: groundwork_connect::TlsSettings,
}

/// What a ClickHouse restore did.
#[derive(Debug, Clone, Serialize)]
pub struct ClickHouseRestoreReport {
    /// The backup restored.
    pub id: BackupId,
    /// The target database.
    pub database: String,
    /// Tables whose row count after the restore differs from the manifest: `(table, expected,
    /// actual)`.
    pub mismatches: Vec<(String, i64, i64)>,
    /// Tables restored.
    pub tables: usize,
}

/// Time allowed for a connection to ClickHouse (TCP and TLS).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An HTTP client for one server; the password stays out of URLs and messages.
struct ClickHouseHttp {
    client: reqwest::Client,
    endpoint: url::Url,
    user: Option<String>,
    password: Option<SecretString>,
}

impl fmt::Debug for ClickHouseHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseHttp")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl ClickHouseHttp {
    fn new(url: &SecretString, tls: &groundwork_connect::TlsSettings) -> Result<Self, BackupError> {
        let mut endpoint = url::Url::parse(url.expose_secret()).map_err(|err| {
            BackupError::config(
                "clickhouse url",
                format!("{err}; expected http://user:password@host:8123"),
            )
        })?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(BackupError::config(
                "clickhouse url",
                "expected the HTTP interface: http(s)://user:password@host:8123",
            ));
        }
        // ClickHouse's HTTP interface also takes `user` and `password` as query parameters; the
        // user information wins when both are given.
        let query = |name: &str| {
            endpoint
                .query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        let user = (!endpoint.username().is_empty())
            .then(|| percent_decode(endpoint.username()))
            .or_else(|| query("user"));
        let password = endpoint
            .password()
            .map(percent_decode)
            .or_else(|| query("password"))
            .map(SecretString::from);
        let _ = endpoint.set_username("");
        let _ = endpoint.set_password(None);
        if tls.is_configured() && endpoint.scheme() != "https" {
            return Err(BackupError::config(
                "clickhouse url",
                "TLS settings are given but the URL is plain-text `http://`; use `https://`",
            ));
        }
        endpoint.set_path("/");
        endpoint.set_query(None);
        let client = groundwork_connect::http_client(tls, CONNECT_TIMEOUT)
            .map_err(|error| BackupError::config("clickhouse tls", error.to_string()))?;
        Ok(Self {
            client,
            endpoint,
            user,
            password,
        })
    }

    /// A query sent as the request body.
    fn request(&self, query: &str) -> reqwest::RequestBuilder {
        let request = self
            .client
            .post(self.endpoint.clone())
            .body(query.to_owned());
        self.authorized(request)
    }

    /// An `INSERT` in the URL, its data in the body the caller sets.
    fn insert(&self, query: &str) -> reqwest::RequestBuilder {
        let mut url = self.endpoint.clone();
        url.query_pairs_mut().append_pair("query", query);
        self.authorized(self.client.post(url))
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.user {
            Some(user) => request.basic_auth(
                user,
                self.password.as_ref().map(|p| p.expose_secret().to_owned()),
            ),
            None => request,
        }
    }

    async fn checked(
        response: reqwest::Response,
        action: &'static str,
    ) -> Result<reqwest::Response, BackupError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Err(BackupError::database(
            action,
            format!("http {status}: {}", body.trim()),
        ))
    }

    /// Runs a query and returns its whole (small) answer.
    async fn text(&self, query: &str, action: &'static str) -> Result<String, BackupError> {
        let response = self
            .request(query)
            .send()
            .await
            .map_err(|err| BackupError::database(action, err.without_url()))?;
        Self::checked(response, action)
            .await?
            .text()
            .await
            .map_err(|err| BackupError::database(action, err.without_url()))
    }
}

/// `name` as a ClickHouse identifier.
fn quote(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// `name` as a ClickHouse string literal.
fn literal(name: &str) -> String {
    format!("'{}'", name.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Exports one ClickHouse database: every `CREATE` statement into `schema.sql`, every table's
/// rows as `FORMAT Native` into `data/<table>.native.zst[.age]`, then the manifest with each
/// table's row count.
///
/// ClickHouse has no snapshots: tables written to during the export are exported as each
/// `SELECT` finds them, and the counts are taken just before each table is read.
// One linear sequence (marker, schema, each table, manifest); split up, the order that makes a
// backup complete only when everything is stored would be harder to see.
#[allow(clippy::too_many_lines)]
pub async fn backup_clickhouse(
    storage: &Storage,
    url: &SecretString,
    options: &ClickHouseBackupOptions,
) -> Result<BackupManifest, BackupError> {
    let http = ClickHouseHttp::new(url, &options.tls)?;
    options.pipeline.validate(storage)?;
    let database = &options.database;
    let source = options
        .source_name
        .clone()
        .unwrap_or_else(|| database.clone());
    if source.is_empty() || source.contains('/') {
        return Err(BackupError::config(
            "source name",
            "it must be non-empty and contain no '/'",
        ));
    }
    let started = SystemTime::now();
    let clock = Instant::now();
    let id = BackupId::at(started);
    let (server_version, tables, schema) = read_schema(&http, database).await?;

    let marker_path = backup_object(BackupKind::ClickHouse, &source, &id, STARTED_FILE);
    let marker = StartedMarker {
        id: id.clone(),
        kind: BackupKind::ClickHouse,
        source: source.clone(),
        started_at: rfc3339(started),
    };
    storage.put_json(&marker_path, &marker).await?;

    let suffix = if options.pipeline.recipients.is_empty() {
        ".zst"
    } else {
        ".zst.age"
    };
    let result = async {
        let mut objects = Vec::new();
        let schema_path = backup_object(
            BackupKind::ClickHouse,
            &source,
            &id,
            &format!("{SCHEMA_OBJECT}{suffix}"),
        );
        let ((), object) =
            pipeline::upload(storage, &schema_path, &options.pipeline, move |sink| {
                sink.write_all(schema.as_bytes())
                    .map_err(|source| BackupError::Pipeline {
                        action: "compressing the schema",
                        source,
                    })
            })
            .await?;
        objects.push(object);

        let mut row_counts = BTreeMap::new();
        for (table, engine) in &tables {
            if !stores_data(engine) {
                continue;
            }
            let qualified = format!("{}.{}", quote(database), quote(table));
            let count: i64 = http
                .text(&format!("SELECT count() FROM {qualified}"), "counting rows")
                .await?
                .trim()
                .parse()
                .map_err(|err| BackupError::database("counting rows", format!("{err}")))?;
            row_counts.insert(table.clone(), count);
            let response = http
                .request(&format!("SELECT * FROM {qualified} FORMAT Native"))
                .send()
                .await
                .map_err(|err| BackupError::database("exporting a table", err.without_url()))?;
            let response = ClickHouseHttp::checked(response, "exporting a table").await?;
            let name = format!("data/{}.native{suffix}", encode_name(table));
            let path = backup_object(BackupKind::ClickHouse, &source, &id, &name);
            let handle = Handle::current();
            let ((), mut object) =
                pipeline::upload(storage, &path, &options.pipeline, move |sink| {
                    copy_response(&handle, response, sink)
                })
                .await?;
            object.name = name;
            objects.push(object);
        }
        Ok::<_, BackupError>((objects, row_counts))
    }
    .await;
    let (objects, row_counts) = match result {
        Ok(done) => done,
        Err(err) => {
            let _ = storage.delete_object(&marker_path).await;
            return Err(err);
        }
    };

    let manifest = BackupManifest::completed(Completed {
        id: id.clone(),
        kind: BackupKind::ClickHouse,
        source: source.clone(),
        server_version,
        tool_version: format!(
            "groundwork-backup {} (portable export)",
            env!("CARGO_PKG_VERSION")
        ),
        started,
        clock,
        objects,
        pipeline: &options.pipeline,
        row_counts,
    });
    storage
        .put_json(
            &backup_object(BackupKind::ClickHouse, &source, &id, MANIFEST_FILE),
            &manifest,
        )
        .await?;
    Ok(manifest)
}

/// The server version, the tables to export (`(name, engine)`, views last) and their `CREATE`
/// statements.
async fn read_schema(
    http: &ClickHouseHttp,
    database: &str,
) -> Result<(String, Vec<(String, String)>, String), BackupError> {
    let server_version = http
        .text("SELECT version()", "reading the server version")
        .await?
        .trim()
        .to_owned();
    let listing = http
        .text(
            &format!(
                "SELECT name, engine FROM system.tables WHERE database = {} \
                 ORDER BY engine IN ('View', 'MaterializedView'), name FORMAT TabSeparated",
                literal(database)
            ),
            "listing tables",
        )
        .await?;
    let tables: Vec<(String, String)> = listing
        .lines()
        .filter_map(|line| {
            let (name, engine) = line.split_once('\t')?;
            (!name.starts_with(".inner.")).then(|| (unescape_tsv(name), engine.to_owned()))
        })
        .collect();
    let mut schema = String::new();
    for (table, _) in &tables {
        let create = http
            .text(
                &format!(
                    "SHOW CREATE TABLE {}.{} FORMAT TabSeparatedRaw",
                    quote(database),
                    quote(table)
                ),
                "reading a table definition",
            )
            .await?;
        schema.push_str(create.trim_end());
        schema.push_str(";\n");
    }
    Ok((server_version, tables, schema))
}

/// Copies an HTTP response body into the pipeline from its blocking thread.
fn copy_response(
    handle: &Handle,
    mut response: reqwest::Response,
    sink: &mut dyn Write,
) -> Result<(), BackupError> {
    loop {
        let chunk = handle
            .block_on(response.chunk())
            .map_err(|err| BackupError::database("exporting a table", err.without_url()))?;
        let Some(chunk) = chunk else {
            return Ok(());
        };
        sink.write_all(&chunk)
            .map_err(|source| BackupError::Pipeline {
                action: "compressing table data",
                source,
            })?;
    }
}

/// Table names go into object names percent-encoded, so any name is a valid path segment.
fn encode_name(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn unescape_tsv(field: &str) -> String {
    field
        .replace("\\t", "\t")
        .replace("\\n", "\n")
        .replace("\\'", "'")
        .replace("\\\\", "\\")
}

/// Restores a ClickHouse export: creates the database, runs `schema.sql` (with the database
/// name replaced), streams each table's Native data into `INSERT ... FORMAT Native`, then
/// compares row counts with the manifest.
///
/// An insert is not atomic in ClickHouse: if a table's data fails its checksum, rows read
/// before the failure may remain. Restore into a new database and switch to it once the report
/// shows no mismatch.
// One linear sequence (schema, target check, tables, counts), kept together for the same reason.
#[allow(clippy::too_many_lines)]
pub async fn restore_clickhouse(
    storage: &Storage,
    manifest: &BackupManifest,
    url: &SecretString,
    options: &ClickHouseRestoreOptions,
) -> Result<ClickHouseRestoreReport, BackupError> {
    if manifest.kind != BackupKind::ClickHouse {
        return Err(BackupError::config(
            "backup",
            format!(
                "{} is a {} backup, not a clickhouse one",
                manifest.id, manifest.kind
            ),
        ));
    }
    let http = ClickHouseHttp::new(url, &options.tls)?;
    let target = options
        .database
        .clone()
        .unwrap_or_else(|| manifest.source.clone());
    let recipients = manifest
        .encryption
        .as_ref()
        .map(|_| manifest.recipients_text());
    let spec_for = |object: &StoredObject| DownloadSpec {
        backup: manifest.id.to_string(),
        path: backup_object(
            BackupKind::ClickHouse,
            &manifest.source,
            &manifest.id,
            &object.name,
        ),
        object: object.clone(),
        recipients: recipients.clone(),
    };
    let Some(schema_object) = manifest
        .objects
        .iter()
        .find(|o| o.name.starts_with(SCHEMA_OBJECT))
    else {
        return Err(BackupError::InvalidManifest {
            object: manifest.id.to_string(),
            reason: "it lists no schema.sql".into(),
        });
    };
    let schema = pipeline::download(
        storage,
        spec_for(schema_object),
        options.identities.clone(),
        options.progress.clone(),
        |plain| {
            let mut text = String::new();
            plain
                .read_to_string(&mut text)
                .map_err(|err| BackupError::Decode {
                    object: SCHEMA_OBJECT.into(),
                    reason: err.to_string(),
                })?;
            Ok(text)
        },
    )
    .await?;

    http.text(
        &format!("CREATE DATABASE IF NOT EXISTS {}", quote(&target)),
        "creating the database",
    )
    .await?;
    let existing = http
        .text(
            &format!(
                "SELECT name FROM system.tables WHERE database = {} FORMAT TabSeparated",
                literal(&target)
            ),
            "inspecting the target",
        )
        .await?;
    let existing: Vec<String> = existing.lines().map(unescape_tsv).collect();
    if !existing.is_empty() && !options.clean {
        return Err(BackupError::TargetNotEmpty {
            database: target,
            relations: i64::try_from(existing.len()).unwrap_or(i64::MAX),
        });
    }

    let target_prefix = format!("{}.", quote(&target));
    apply_schema(
        &http,
        &schema,
        &manifest.source,
        &target_prefix,
        options.clean,
    )
    .await?;

    let mut mismatches = Vec::new();
    for (table, expected) in &manifest.row_counts {
        let name = format!("data/{}.native", encode_name(table));
        let Some(object) = manifest.objects.iter().find(|o| o.name.starts_with(&name)) else {
            return Err(BackupError::InvalidManifest {
                object: manifest.id.to_string(),
                reason: format!("table {table} has no data object"),
            });
        };
        let request = http.insert(&format!(
            "INSERT INTO {target_prefix}{} FORMAT Native",
            quote(table)
        ));
        let handle = Handle::current();
        pipeline::download(
            storage,
            spec_for(object),
            options.identities.clone(),
            options.progress.clone(),
            move |plain| stream_insert(&handle, request, plain),
        )
        .await?;
        let actual: i64 = http
            .text(
                &format!("SELECT count() FROM {target_prefix}{}", quote(table)),
                "counting rows",
            )
            .await?
            .trim()
            .parse()
            .map_err(|err| BackupError::database("counting rows", format!("{err}")))?;
        if actual != *expected {
            mismatches.push((table.clone(), *expected, actual));
        }
    }
    Ok(ClickHouseRestoreReport {
        id: manifest.id.clone(),
        database: target,
        mismatches,
        tables: manifest.row_counts.len(),
    })
}

/// Runs the backed-up `CREATE` statements in the target database.
async fn apply_schema(
    http: &ClickHouseHttp,
    schema: &str,
    source: &str,
    target_prefix: &str,
    clean: bool,
) -> Result<(), BackupError> {
    let source_prefix = format!("{}.", quote(source));
    let plain_prefix = format!("{source}.");
    for statement in schema.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        let statement = retarget(statement, &[&source_prefix, &plain_prefix], target_prefix);
        if let (true, Some(table)) = (clean, created_table(&statement, target_prefix)) {
            http.text(
                &format!("DROP TABLE IF EXISTS {target_prefix}{}", quote(&table)),
                "dropping a table",
            )
            .await?;
        }
        http.text(&statement, "creating a table").await?;
    }
    Ok(())
}

/// Replaces the first occurrence of any of `from` in the statement's head with `to`.
fn retarget(statement: &str, from: &[&str], to: &str) -> String {
    let head_end = statement.find('(').unwrap_or(statement.len());
    for prefix in from {
        if let Some(at) = statement[..head_end].find(prefix) {
            return format!(
                "{}{to}{}",
                &statement[..at],
                &statement[at + prefix.len()..]
            );
        }
    }
    statement.to_owned()
}

/// The table a `CREATE TABLE <target>.<name>` statement creates.
fn created_table(statement: &str, target_prefix: &str) -> Option<String> {
    let rest = statement.split_once(target_prefix)?.1;
    let name = rest.split([' ', '(', '\n']).next()?;
    Some(name.trim_matches('`').to_owned())
}

/// Streams `plain` as the body of `request` from the pipeline's blocking thread.
fn stream_insert(
    handle: &Handle,
    request: reqwest::RequestBuilder,
    plain: &mut dyn Read,
) -> Result<(), BackupError> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let sending = handle.spawn(request.body(reqwest::Body::wrap_stream(body)).send());
    let mut buffer = vec![0_u8; 256 * 1024];
    let copied: io::Result<()> = loop {
        match plain.read(&mut buffer) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if tx
                    .blocking_send(Ok(Bytes::copy_from_slice(&buffer[..n])))
                    .is_err()
                {
                    break Ok(());
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                // Fail the request so the server does not take a truncated body as complete.
                let _ = tx.blocking_send(Err(io::Error::other("the backup stream failed")));
                break Err(err);
            }
        }
    };
    drop(tx);
    let response = handle
        .block_on(sending)
        .map_err(|err| BackupError::database("inserting table data", err.to_string()))?;
    copied.map_err(|err| BackupError::Decode {
        object: "table data".into(),
        reason: err.to_string(),
    })?;
    let response =
        response.map_err(|err| BackupError::database("inserting table data", err.without_url()))?;
    handle.block_on(ClickHouseHttp::checked(response, "inserting table data"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{created_table, encode_name, retarget};

    #[test]
    fn statements_are_moved_to_the_target_database() {
        let statement = "CREATE TABLE app.events (`d` Date) ENGINE = MergeTree(d, d, 8192)";
        let moved = retarget(statement, &["`app`.", "app."], "`restored`.");
        assert_eq!(
            moved,
            "CREATE TABLE `restored`.events (`d` Date) ENGINE = MergeTree(d, d, 8192)"
        );
        assert_eq!(created_table(&moved, "`restored`."), Some("events".into()));
        assert_eq!(encode_name("a b/ü"), "a%20b%2F%C3%BC");
    }
}
