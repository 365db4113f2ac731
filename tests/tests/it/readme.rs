//! The commands of the README's "Quick start" and "Local infrastructure" sections work as
//! printed, and its "Features" table names every library crate and each of its cargo features.
//!
//! Every command line of those sections' `sh` blocks is either run here — literally, through
//! `sh -c` from the workspace root, so the README's quoting is tested too — or listed with the
//! reason it is not. A command that is added or changed and is in neither list fails the test.
//! The admin commands run against a database of their own, prepared as `cargo xtask up` prepares
//! the stack's (the tables, then `examples/demo/seed.sql`), through `GROUNDWORK_STACK_DATABASE_URL`,
//! and backups go to a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use groundwork_testkit::TestDatabase;

/// Commands not run here, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "git clone <this repository> && cd groundwork",
        "a placeholder for the repository's address; the test runs inside the clone",
    ),
    (
        "cargo xtask up",
        "binds the fixed ports 8080-8082 and follows the logs until Ctrl-C; tests/tests/it/stack.rs \
         runs the same three services on free ports",
    ),
    ("cargo test --workspace", "the run this test is part of"),
    (
        "cargo xtask new-service orders --with postgres,live,flags",
        "writes ../orders beside the clone; tests/tests/it/new_service.rs runs `cargo xtask \
         new-service` into a temporary directory, builds the service and starts it",
    ),
    (
        "curl -s localhost:8080/v1/matching/weights",
        "needs `cargo xtask up`'s gateway on port 8080; tests/tests/it/stack.rs reads the endpoint",
    ),
    (
        "curl -s 'localhost:8080/v1/features?tenant=tenant-1'",
        "needs `cargo xtask up`'s gateway on port 8080; tests/tests/it/stack.rs reads the endpoint",
    ),
    (
        "curl -s -X POST localhost:8080/v1/orders -H 'Idempotency-Key: demo-1' -H 'traceparent: \
         00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' -d '{\"tenant\":\"tenant-1\",\"amount\":120.5}'",
        "needs `cargo xtask up`'s gateway on port 8080; tests/tests/it/stack.rs posts an order with \
         a traceparent",
    ),
    (
        "curl -s localhost:8082/v1/stats",
        "needs `cargo xtask up`'s ingest on port 8082; tests/tests/it/stack.rs reads the endpoint",
    ),
    (
        "curl -s localhost:8080/metrics",
        "needs `cargo xtask up`'s gateway on port 8080",
    ),
    (
        "cargo xtask infra up",
        "CI runs it before the tests (`.ci/run`); here it could install and start servers",
    ),
    (
        "cargo xtask infra down",
        "would stop the servers every other test uses",
    ),
    (
        "cargo xtask infra up --redis-cluster --redis-sentinel",
        "starts eleven servers on fixed ports; the Redis topology tests use them through \
         `TestRedisCluster::create` and `TestRedisSentinel::create` when they run",
    ),
];

/// Commands run here, in README order, each with the check of its effect.
const RUN: &[&str] = &[
    "cargo xtask flags enable risk.auto.reject",
    "cargo xtask config set log.level '\"debug\"'",
    "cargo xtask backup postgres backup",
    "cargo xtask backup list",
    "cargo xtask infra status",
];

fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The command lines of the `sh` blocks under `heading`, continuation lines joined, each with its
/// trailing comment.
fn commands_of_section(readme: &str, heading: &str) -> Result<Vec<String>> {
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .with_context(|| format!("README.md has no `## {heading}` section"))?;
    let section = &readme[start + 1..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 3)];
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in section.lines() {
        if !in_sh {
            in_sh = line.trim() == "```sh";
            continue;
        }
        if line.trim() == "```" {
            in_sh = false;
            continue;
        }
        if let Some(continued) = line.trim_end().strip_suffix('\\') {
            pending.push_str(continued.trim());
            pending.push(' ');
        } else {
            pending.push_str(line.trim());
            commands.push(std::mem::take(&mut pending));
        }
    }
    Ok(commands)
}

/// A command line without its trailing `# comment` (none of the README's commands has a `#` of
/// its own).
fn without_comment(line: &str) -> &str {
    line.split_once(" #")
        .map_or(line, |(command, _)| command)
        .trim()
}

/// Runs `line` through `sh` from the workspace root and returns its standard output.
fn run(line: &str, database_url: &str, storage: &Path) -> Result<String> {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(line)
        .current_dir(workspace_root())
        .env("GROUNDWORK_STACK_DATABASE_URL", database_url)
        .env(
            "GROUNDWORK_BACKUP_STORAGE",
            format!("file://{}", storage.display()),
        )
        // The stack's own environment, whatever the developer's shell has.
        .env_remove("APP_ENV");
    // `cargo` in the line is the cargo running this test.
    if let Some(dir) = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .and_then(|cargo| cargo.parent().map(Path::to_path_buf))
    {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let paths = std::iter::once(dir).chain(std::env::split_paths(&path));
        command.env("PATH", std::env::join_paths(paths)?);
    }
    let output = command
        .output()
        .with_context(|| format!("cannot run `{line}`"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "README command `{line}` failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_quick_start_commands_work_as_printed() -> Result<()> {
    let _heavy = crate::HEAVY.lock().await;
    let readme = std::fs::read_to_string(workspace_root().join("README.md"))?;
    let mut lines = commands_of_section(&readme, "Quick start")?;
    lines.extend(commands_of_section(&readme, "Local infrastructure")?);

    let unknown: Vec<&String> = lines
        .iter()
        .filter(|line| {
            let command = without_comment(line);
            !RUN.contains(&command) && !NOT_RUN.iter().any(|(known, _)| *known == command)
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "README commands this test neither runs nor explains: {unknown:#?}; add each to RUN (with \
         a check of its effect) or to NOT_RUN (with the reason)"
    );
    for command in RUN {
        assert!(
            lines.iter().any(|line| without_comment(line) == *command),
            "`{command}` is no longer in the README; remove it from RUN"
        );
    }

    // The stack's tables and demo data, in a database of this test's own.
    let db = TestDatabase::create().await?;
    for (file, sql) in groundwork_live::config::MIGRATIONS
        .iter()
        .chain(groundwork_flags::store::MIGRATIONS)
        .filter(|(file, _)| file.ends_with(".up.sql"))
    {
        sqlx::raw_sql(*sql)
            .execute(db.pool())
            .await
            .with_context(|| format!("applying {file}"))?;
    }
    sqlx::raw_sql(include_str!("../../../examples/demo/seed.sql"))
        .execute(db.pool())
        .await?;
    let storage = tempfile::tempdir()?;

    for line in lines
        .iter()
        .filter(|line| RUN.contains(&without_comment(line)))
    {
        let output = run(line, db.url(), storage.path())?;
        match without_comment(line) {
            "cargo xtask flags enable risk.auto.reject" => {
                let enabled: bool = sqlx::query_scalar(
                    "SELECT enabled FROM feature_flags WHERE name = 'risk.auto.reject'",
                )
                .fetch_one(db.pool())
                .await?;
                assert!(enabled, "`{line}` did not enable the flag");
            }
            "cargo xtask config set log.level '\"debug\"'" => {
                let value: serde_json::Value = sqlx::query_scalar(
                    "SELECT value FROM platform_config WHERE env = 'development' AND key = 'log.level'",
                )
                .fetch_one(db.pool())
                .await?;
                assert_eq!(value, serde_json::json!("debug"), "after `{line}`");
            }
            "cargo xtask backup postgres backup" => {
                let manifests = count_files(storage.path(), "manifest.json")?;
                assert_eq!(manifests, 1, "`{line}` stored no complete backup");
            }
            "cargo xtask backup list" => {
                assert!(
                    output.contains(db.name()),
                    "`{line}` does not list the backup of {}:\n{output}",
                    db.name()
                );
            }
            "cargo xtask infra status" => {
                assert!(output.contains("postgres"), "`{line}` printed:\n{output}");
            }
            other => bail!("RUN lists `{other}` without a check of its effect"),
        }
    }
    db.cleanup().await?;
    Ok(())
}

fn count_files(dir: &Path, name: &str) -> Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            count += count_files(&path, name)?;
        } else if path.file_name().is_some_and(|file| file == name) {
            count += 1;
        }
    }
    Ok(count)
}

/// The cells of the `### {heading}` table: its first column without backticks, and the second.
fn table_rows(readme: &str, heading: &str) -> Result<Vec<(String, String)>> {
    let start = readme
        .find(&format!("\n### {heading}\n"))
        .with_context(|| format!("README.md has no `### {heading}` section"))?;
    let section = &readme[start + 1..];
    let section = &section[..section[4..]
        .find("\n#")
        .map_or(section.len(), |end| end + 4)];
    let mut rows = Vec::new();
    for line in section.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        if let [name, features] = cells.as_slice() {
            rows.push((name.trim_matches('`').to_owned(), (*features).to_owned()));
        }
    }
    Ok(rows)
}

/// A library crate (under `crates/`) and its cargo features.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct LibraryCrate {
    name: String,
    /// Every feature but `default`.
    features: Vec<String>,
    /// What `default` turns on.
    defaults: Vec<String>,
}

/// Every library crate with its features, from `cargo metadata`.
fn library_features() -> Result<Vec<LibraryCrate>> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let crates_dir = workspace_root().join("crates");
    let mut crates = Vec::new();
    for package in metadata["packages"].as_array().context("no packages")? {
        let manifest = package["manifest_path"].as_str().unwrap_or_default();
        if !Path::new(manifest).starts_with(&crates_dir) {
            continue;
        }
        let name = package["name"]
            .as_str()
            .context("a package without a name")?;
        let features = package["features"].as_object().context("no features")?;
        let defaults: Vec<String> = features
            .get("default")
            .and_then(serde_json::Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(serde_json::Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let all = features
            .keys()
            .filter(|feature| *feature != "default")
            .cloned()
            .collect();
        crates.push(LibraryCrate {
            name: name.to_owned(),
            features: all,
            defaults,
        });
    }
    crates.sort();
    Ok(crates)
}

#[test]
fn the_feature_table_names_every_library_crate_and_feature() -> Result<()> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md"))?;
    let rows = table_rows(&readme, "Features")?;
    let crates = library_features()?;
    assert!(crates.len() >= 10, "{crates:?}");
    let mut problems = Vec::new();
    for LibraryCrate {
        name,
        features,
        defaults,
    } in &crates
    {
        let Some((_, cell)) = rows.iter().find(|(row, _)| row == name) else {
            problems.push(format!("`{name}` has no row"));
            continue;
        };
        if features.is_empty() && cell != "none" {
            problems.push(format!(
                "`{name}` has no features, so its row should say `none`"
            ));
        }
        for feature in features {
            let bold = cell.contains(&format!("**`{feature}`**"));
            if defaults.contains(feature) {
                if !bold {
                    problems.push(format!("`{name}`: default feature `{feature}` not in bold"));
                }
            } else if bold {
                problems.push(format!("`{name}`: `{feature}` is bold but not a default"));
            } else if !cell.contains(&format!("`{feature}`")) {
                problems.push(format!("`{name}`: feature `{feature}` is not listed"));
            }
        }
    }
    for (row, _) in &rows {
        if !crates.iter().any(|library| &library.name == row) {
            problems.push(format!("row `{row}` names no library crate"));
        }
    }
    assert!(
        problems.is_empty(),
        "README.md's \"Features\" table is out of step with the crates' Cargo.toml:\n{}",
        problems.join("\n")
    );
    Ok(())
}
