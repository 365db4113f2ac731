//! Reading a migration directory: file naming, `-- no-transaction`, checksums and `create`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha384};

use crate::error::MigrateError;

/// The marker that, on the first line of a file, runs it outside a transaction (as in sqlx).
pub const NO_TRANSACTION_MARKER: &str = "-- no-transaction";

/// Digits used for the version of the first migration of an empty directory (`001_name`).
const DEFAULT_VERSION_WIDTH: usize = 3;

/// One SQL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The file name, e.g. `002_create_hotels.up.sql`.
    pub file_name: String,
    /// The file's text as read.
    pub sql: String,
    /// The first line is `-- no-transaction`: run it outside a transaction, statement by
    /// statement, recording it as dirty until it completes.
    pub no_transaction: bool,
}

impl Script {
    /// A script from its file name and text; detects the `-- no-transaction` marker.
    pub fn new(file_name: impl Into<String>, sql: impl Into<String>) -> Self {
        let sql = sql.into();
        let no_transaction = sql
            .trim_start_matches('\u{feff}')
            .starts_with(NO_TRANSACTION_MARKER);
        Self {
            file_name: file_name.into(),
            sql,
            no_transaction,
        }
    }
}

/// Whether a migration can be reverted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationKind {
    /// `NNN_name.up.sql`, normally with `NNN_name.down.sql`.
    Reversible,
    /// `NNN_name.sql`: applied once, never reverted.
    Simple,
}

/// One version: its up (or single) script and, when reversible, its down script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The number before the first `_`.
    pub version: i64,
    /// The text between the version and the suffix, e.g. `create_hotels`.
    pub name: String,
    /// Reversible (`.up.sql`/`.down.sql`) or simple (`.sql`).
    pub kind: MigrationKind,
    /// The script that applies the migration.
    pub up: Script,
    /// The script that reverts it; `None` for simple migrations or a missing down file.
    pub down: Option<Script>,
    /// SHA-384 of the up script with CRLF line endings normalized to LF.
    pub checksum: Vec<u8>,
}

impl Migration {
    /// The file name a down script for this migration has (or would have).
    pub fn down_file_name(&self) -> String {
        format!("{}_{}.down.sql", self.version_prefix(), self.name)
    }

    fn version_prefix(&self) -> &str {
        self.up
            .file_name
            .split_once('_')
            .map_or("", |(prefix, _)| prefix)
    }
}

/// The checksum of a script: SHA-384 (as sqlx) over the text with every CRLF replaced by LF, so a
/// checkout with Windows line endings matches the one that was applied. For a file with LF line
/// endings it equals sqlx's checksum.
pub fn checksum(sql: &str) -> Vec<u8> {
    let mut digest = Sha384::new();
    let mut rest = sql;
    while let Some(at) = rest.find("\r\n") {
        digest.update(&rest.as_bytes()[..at]);
        rest = &rest[at + 1..];
    }
    digest.update(rest.as_bytes());
    digest.finalize().to_vec()
}

/// The migrations of one directory, in version order.
#[derive(Debug, Clone, Default)]
pub struct MigrationSet {
    /// Where the files came from (used in messages and by `create`).
    pub dir: PathBuf,
    /// The migrations, sorted by version.
    pub migrations: Vec<Migration>,
    /// Files in the directory that are not migrations, e.g. a `schema_migrations.sql` kept for
    /// reference: they are skipped, never an error.
    pub ignored: Vec<String>,
    /// Digits of the widest version prefix (`001` → 3), used to number new files.
    pub version_width: usize,
}

/// How a file name is classified.
#[derive(Debug, PartialEq, Eq)]
enum FileRole<'a> {
    Up { prefix: &'a str, name: &'a str },
    Down { prefix: &'a str, name: &'a str },
    Simple { prefix: &'a str, name: &'a str },
    NotAMigration,
}

fn classify(file_name: &str) -> FileRole<'_> {
    let Some(stem) = file_name.strip_suffix(".sql") else {
        return FileRole::NotAMigration;
    };
    let Some((prefix, rest)) = stem.split_once('_') else {
        return FileRole::NotAMigration;
    };
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return FileRole::NotAMigration;
    }
    let (suffix, name) = if let Some(name) = rest.strip_suffix(".up") {
        ("up", name)
    } else if let Some(name) = rest.strip_suffix(".down") {
        ("down", name)
    } else {
        ("", rest)
    };
    if name.is_empty() {
        return FileRole::NotAMigration;
    }
    match suffix {
        "up" => FileRole::Up { prefix, name },
        "down" => FileRole::Down { prefix, name },
        _ => FileRole::Simple { prefix, name },
    }
}

fn parse_version(prefix: &str, file_name: &str) -> Result<i64, MigrateError> {
    prefix
        .parse::<i64>()
        .map_err(|e| MigrateError::InvalidFileName {
            file: file_name.to_owned(),
            reason: e.to_string(),
        })
}

impl MigrationSet {
    /// Reads every `*.sql` file of `dir` (not recursively).
    ///
    /// Files named `<digits>_<name>.up.sql`, `<digits>_<name>.down.sql` or `<digits>_<name>.sql`
    /// are migrations; every other file (`schema_migrations.sql`, `README.md`, dot files) is
    /// listed in [`ignored`](Self::ignored) and otherwise skipped.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, MigrateError> {
        let dir = dir.as_ref();
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| MigrateError::Io {
                action,
                path,
                source,
            }
        };
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(io("read migration directory", dir))? {
            let entry = entry.map_err(io("read migration directory", dir))?;
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if classify(&file_name) == FileRole::NotAMigration {
                files.push((file_name, None));
                continue;
            }
            let sql = fs::read_to_string(&path).map_err(io("read migration file", &path))?;
            files.push((file_name, Some(sql)));
        }
        let mut set = Self::from_files(
            files
                .iter()
                .filter_map(|(name, sql)| sql.as_ref().map(|sql| (name.as_str(), sql.as_str()))),
        )?;
        set.ignored = files
            .into_iter()
            .filter_map(|(name, sql)| sql.is_none().then_some(name))
            .collect();
        set.ignored.sort();
        set.dir = dir.to_path_buf();
        Ok(set)
    }

    /// Builds a set from `(file name, SQL)` pairs, e.g. files embedded with `include_str!`.
    /// Names that are not migrations are listed in [`ignored`](Self::ignored).
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, MigrateError> {
        let mut ups: BTreeMap<i64, (MigrationKind, String, Script)> = BTreeMap::new();
        let mut downs: BTreeMap<i64, (String, Script)> = BTreeMap::new();
        let mut ignored = Vec::new();
        let mut width = 0;
        for (file_name, sql) in files {
            let (prefix, name, slot) = match classify(file_name) {
                FileRole::NotAMigration => {
                    ignored.push(file_name.to_owned());
                    continue;
                }
                FileRole::Up { prefix, name } => (prefix, name, Some(MigrationKind::Reversible)),
                FileRole::Simple { prefix, name } => (prefix, name, Some(MigrationKind::Simple)),
                FileRole::Down { prefix, name } => (prefix, name, None),
            };
            let version = parse_version(prefix, file_name)?;
            width = width.max(prefix.len());
            let script = Script::new(file_name, sql);
            let duplicate = |first: &Script| MigrateError::DuplicateVersion {
                version,
                first: first.file_name.clone(),
                second: file_name.to_owned(),
            };
            if let Some(kind) = slot {
                if let Some((_, _, first)) = ups.get(&version) {
                    return Err(duplicate(first));
                }
                ups.insert(version, (kind, name.to_owned(), script));
            } else {
                if let Some((_, first)) = downs.get(&version) {
                    return Err(duplicate(first));
                }
                downs.insert(version, (name.to_owned(), script));
            }
        }
        let mut migrations = Vec::with_capacity(ups.len());
        for (version, (kind, name, up)) in ups {
            let down = match downs.remove(&version) {
                Some((down_name, down))
                    if kind == MigrationKind::Reversible && down_name == name =>
                {
                    Some(down)
                }
                Some((_, down)) => {
                    return Err(MigrateError::DuplicateVersion {
                        version,
                        first: up.file_name,
                        second: down.file_name,
                    });
                }
                None => None,
            };
            migrations.push(Migration {
                version,
                checksum: checksum(&up.sql),
                name,
                kind,
                up,
                down,
            });
        }
        if let Some((_, (name, down))) = downs.into_iter().next() {
            let prefix = down.file_name.split_once('_').map_or("", |(p, _)| p);
            return Err(MigrateError::OrphanDown {
                expected: format!("{prefix}_{name}.up.sql"),
                file: down.file_name,
            });
        }
        ignored.sort();
        Ok(Self {
            dir: PathBuf::new(),
            migrations,
            ignored,
            version_width: width,
        })
    }

    /// The migration with this version.
    pub fn get(&self, version: i64) -> Option<&Migration> {
        self.migrations
            .binary_search_by_key(&version, |m| m.version)
            .ok()
            .and_then(|i| self.migrations.get(i))
    }

    /// Writes `<next>_<name>.up.sql` and `<next>_<name>.down.sql` into the set's directory
    /// (created if needed) and returns their paths. The next version is the highest one plus
    /// one, zero-padded to the directory's width (three digits in an empty directory).
    pub fn create(&self, name: &str) -> Result<[PathBuf; 2], MigrateError> {
        let name = sanitize_name(name)?;
        let next = self.migrations.last().map_or(1, |m| m.version + 1);
        let width = if self.version_width == 0 {
            DEFAULT_VERSION_WIDTH
        } else {
            self.version_width
        };
        let prefix = format!("{next:0width$}");
        fs::create_dir_all(&self.dir).map_err(|source| MigrateError::Io {
            action: "create migration directory",
            path: self.dir.clone(),
            source,
        })?;
        let up = self.dir.join(format!("{prefix}_{name}.up.sql"));
        let down = self.dir.join(format!("{prefix}_{name}.down.sql"));
        write_new(&up, &format!("-- {name}: apply\n"))?;
        write_new(
            &down,
            &format!("-- {name}: revert what {prefix}_{name}.up.sql does\n"),
        )?;
        Ok([up, down])
    }
}

fn write_new(path: &Path, text: &str) -> Result<(), MigrateError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|source| MigrateError::Io {
            action: "create migration file",
            path: path.to_path_buf(),
            source,
        })
}

/// `Create Hotels` → `create_hotels`: lowercase ASCII letters, digits and single underscores.
fn sanitize_name(name: &str) -> Result<String, MigrateError> {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_').to_owned();
    if out.is_empty() {
        return Err(MigrateError::InvalidMigrationName {
            name: name.to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(files: &[(&str, &str)]) -> MigrationSet {
        MigrationSet::from_files(files.iter().copied()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn seed_layout_pairs_up_and_down_and_ignores_the_tracking_table_file() {
        let s = set(&[
            ("002_create_hotels.down.sql", "DROP TABLE hotels;"),
            ("001_create_suppliers.up.sql", "CREATE TABLE suppliers();"),
            ("schema_migrations.sql", "CREATE TABLE schema_migrations();"),
            ("001_create_suppliers.down.sql", "DROP TABLE suppliers;"),
            ("002_create_hotels.up.sql", "CREATE TABLE hotels();"),
        ]);
        let versions: Vec<_> = s
            .migrations
            .iter()
            .map(|m| (m.version, m.name.as_str()))
            .collect();
        assert_eq!(versions, [(1, "create_suppliers"), (2, "create_hotels")]);
        assert!(s.migrations.iter().all(|m| m.down.is_some()));
        assert_eq!(s.ignored, ["schema_migrations.sql"]);
        assert_eq!(s.version_width, 3);
    }

    #[test]
    fn names_that_are_not_migrations_are_ignored() {
        for name in [
            "README.md",
            "abc_x.sql",
            "_x.sql",
            "001.sql",
            "001_.sql",
            "001_.up.sql",
        ] {
            assert_eq!(classify(name), FileRole::NotAMigration, "{name}");
        }
        assert_eq!(
            classify("20240101120000_add_users.sql"),
            FileRole::Simple {
                prefix: "20240101120000",
                name: "add_users"
            }
        );
    }

    #[test]
    fn crlf_and_lf_files_have_the_same_checksum() {
        assert_eq!(checksum("a;\r\nb;\r\n"), checksum("a;\nb;\n"));
        assert_ne!(checksum("a;\nb;\n"), checksum("a;\nc;\n"));
        // Equals sqlx's checksum (plain SHA-384) for LF files.
        assert_eq!(checksum("a;\n"), Sha384::digest("a;\n").to_vec());
    }

    #[test]
    fn no_transaction_marker_on_the_first_line_is_detected() {
        assert!(
            Script::new(
                "1_a.sql",
                "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);"
            )
            .no_transaction
        );
        assert!(!Script::new("1_a.sql", "SELECT 1;\n-- no-transaction\n").no_transaction);
    }

    #[test]
    fn duplicate_versions_and_orphan_downs_are_refused() {
        let dup = MigrationSet::from_files([("1_a.sql", ""), ("1_b.sql", "")]);
        assert!(matches!(
            dup,
            Err(MigrateError::DuplicateVersion { version: 1, .. })
        ));
        let orphan = MigrationSet::from_files([("2_b.down.sql", "")]);
        assert!(
            matches!(orphan, Err(MigrateError::OrphanDown { ref expected, .. }) if expected == "2_b.up.sql")
        );
        let overflow = MigrationSet::from_files([("99999999999999999999_a.sql", "")]);
        assert!(matches!(
            overflow,
            Err(MigrateError::InvalidFileName { .. })
        ));
    }

    #[test]
    fn migration_names_are_sanitized() {
        assert_eq!(
            sanitize_name(" Create Hotels! ").ok().as_deref(),
            Some("create_hotels")
        );
        assert!(sanitize_name("--").is_err());
    }
}
