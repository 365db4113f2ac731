//! The one error type of the crate.

/// A boxed error from a driver, the object store or the file system.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while backing up, restoring, verifying, listing or pruning.
///
/// Messages name the object, database or program involved and, where an operator can act, say
/// how to fix it. They never contain a password, a secret key or an access key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// A setting is missing or malformed (storage URL, database URL, key, level, part size).
    #[error("invalid {what}: {reason}")]
    Config {
        /// The setting, e.g. `storage url`.
        what: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// The object store failed.
    #[error("storage failed while {action} {path}")]
    Storage {
        /// What was being done, e.g. `uploading`.
        action: &'static str,
        /// The object or prefix.
        path: String,
        /// The cause.
        #[source]
        source: object_store::Error,
    },

    /// A child program (`pg_dump`, `pg_restore`, `redis-cli`) could not start or failed.
    #[error("{program} failed: {detail}")]
    Program {
        /// The program.
        program: &'static str,
        /// Its exit status and the end of its error output, or why it could not start.
        detail: String,
    },

    /// The database server refused a query or could not be reached.
    #[error("database {action} failed")]
    Database {
        /// What was being done, e.g. `counting rows`.
        action: &'static str,
        /// The cause.
        #[source]
        source: BoxError,
    },

    /// The stored bytes do not hash to the manifest's SHA-256: the object was changed or damaged.
    #[error(
        "checksum mismatch for {object}: the manifest records sha256 {expected} ({expected_bytes} \
         bytes) but the stored object hashes to {actual} ({actual_bytes} bytes); the backup is \
         damaged, restore an older one"
    )]
    ChecksumMismatch {
        /// The object.
        object: String,
        /// The SHA-256 recorded in the manifest.
        expected: String,
        /// The SHA-256 of the bytes read.
        actual: String,
        /// The size recorded in the manifest.
        expected_bytes: u64,
        /// The number of bytes read.
        actual_bytes: u64,
    },

    /// The backup is encrypted and no given key can open it.
    #[error(
        "no decryption key matches backup {backup}: it is encrypted to {recipients}; pass the age \
         identity file holding the private key of one of them"
    )]
    WrongKey {
        /// The backup id.
        backup: String,
        /// The recipients recorded in the manifest.
        recipients: String,
    },

    /// The backup is encrypted but no key was given.
    #[error(
        "backup {backup} is encrypted to {recipients}; pass an age identity file (--identity-file) \
         to restore it"
    )]
    KeyRequired {
        /// The backup id.
        backup: String,
        /// The recipients recorded in the manifest.
        recipients: String,
    },

    /// Decryption or decompression failed although the checksum matched.
    #[error("cannot decode {object}: {reason}")]
    Decode {
        /// The object.
        object: String,
        /// What failed.
        reason: String,
    },

    /// The requested backup does not exist or has no manifest.
    #[error("no complete backup {what} in {location}; run `list` to see what can be restored")]
    NotFound {
        /// The backup asked for, e.g. `20250101T000000.000Z for postgres/app`.
        what: String,
        /// The storage location (without credentials).
        location: String,
    },

    /// A manifest could not be read.
    #[error("manifest {object} is invalid: {reason}")]
    InvalidManifest {
        /// The manifest object.
        object: String,
        /// Why.
        reason: String,
    },

    /// The restore target already holds tables.
    #[error(
        "target database {database} is not empty ({relations} relations); restore into an empty \
         database or pass --clean to drop the objects the backup recreates"
    )]
    TargetNotEmpty {
        /// The database name.
        database: String,
        /// The number of relations found outside the system schemas.
        relations: i64,
    },

    /// A local file (identity file, restore staging file) could not be read or written.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// `restore_command` asked for a WAL file that was never archived (PostgreSQL probes for
    /// files that do not exist, so this is expected at the end of the archive).
    #[error("wal file {segment} is not archived in {location}")]
    WalMissing {
        /// The file name.
        segment: String,
        /// The storage location (without credentials).
        location: String,
    },

    /// A WAL file is already archived with different content: two servers write to one archive
    /// under the same source, or the archive belongs to another cluster.
    #[error(
        "wal file {segment} is already archived in {location} with different content; refusing          to overwrite it: check that no other server archives under the same --source"
    )]
    WalConflict {
        /// The file name.
        segment: String,
        /// The storage location (without credentials).
        location: String,
    },

    /// The archive cannot bring a restore to its target: a WAL file is missing in the middle.
    #[error("the wal archive in {location} has a gap: {missing} missing ({detail})")]
    WalGap {
        /// The first missing file names.
        missing: String,
        /// The storage location (without credentials).
        location: String,
        /// Which restore needed them.
        detail: String,
    },

    /// The pipeline failed in a way none of the other variants describe.
    #[error("backup pipeline failed while {action}")]
    Pipeline {
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl BackupError {
    /// Whether the error is the operator's to fix before retrying (a bad setting, a missing or
    /// wrong key, no such backup, a non-empty target), as opposed to a failure while running;
    /// the CLI exits with 2 for these and 1 for the rest.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Config { .. }
                | Self::KeyRequired { .. }
                | Self::WrongKey { .. }
                | Self::NotFound { .. }
                | Self::TargetNotEmpty { .. }
        )
    }

    pub(crate) fn config(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Config {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn storage(
        action: &'static str,
        path: impl Into<String>,
        source: object_store::Error,
    ) -> Self {
        Self::Storage {
            action,
            path: path.into(),
            source,
        }
    }

    #[cfg(any(feature = "postgres", feature = "redis"))]
    pub(crate) fn program(program: &'static str, detail: impl Into<String>) -> Self {
        Self::Program {
            program,
            detail: detail.into(),
        }
    }

    #[cfg(any(feature = "postgres", feature = "clickhouse"))]
    pub(crate) fn database(action: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Database {
            action,
            source: source.into(),
        }
    }
}
