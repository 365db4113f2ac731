//! Where a service's values come from, behind one type: the `platform_config` table or a file.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::PgPool;

use super::{FileError, FileSource, LiveConfig};
use crate::{Feed, FeedError, FeedOptions};

/// Where a service's config values come from. Both kinds give the same [`LiveConfig`] to read
/// from and the same [`Feed`] to report health with, so a service picks its source from its own
/// configuration (the database in staging and production, a file in development and tests)
/// and the rest of its code does not change.
///
/// ```no_run
/// use std::time::Duration;
/// use groundwork_live::config::Source;
///
/// # async fn run(database: Option<sqlx::PgPool>) -> Result<(), groundwork_live::config::SourceError> {
/// let source = match database {
///     Some(pool) => Source::postgres(pool, Default::default()),
///     None => Source::file("config/development.toml", Duration::from_secs(1)),
/// };
/// let (config, feed) = source.start("development").await?;
/// let expiry: u32 = config.get_or("order.expiry.minutes", 30);
/// # let _ = (expiry, feed); Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Source {
    /// The `platform_config` table, followed as [`super::watch`] does.
    #[non_exhaustive]
    Postgres {
        /// The pool to load with; the feed opens its own LISTEN connection from it.
        pool: PgPool,
        /// Poll interval, snapshot file, backoff.
        options: FeedOptions,
    },
    /// A JSON or TOML file (see [`super::load_file`]), reloaded when its modification time
    /// changes.
    #[non_exhaustive]
    File {
        /// The file.
        path: PathBuf,
        /// How often the file's modification time is checked.
        interval: Duration,
    },
}

/// A [`Source`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The table could be read neither from the database nor from a snapshot file.
    #[error(transparent)]
    Database(#[from] FeedError),
    /// The file cannot be read or parsed.
    #[error(transparent)]
    File(#[from] FileError),
}

impl Source {
    /// The `platform_config` table through `pool`.
    pub fn postgres(pool: PgPool, options: FeedOptions) -> Self {
        Self::Postgres { pool, options }
    }

    /// The file at `path`, checked for changes every `interval`.
    pub fn file(path: impl Into<PathBuf>, interval: Duration) -> Self {
        Self::File {
            path: path.into(),
            interval,
        }
    }

    /// Loads every value of environment `env` and keeps following the source until the
    /// returned [`Feed`] is dropped or shut down.
    ///
    /// The feed's status is what a health check reports: for the table as [`super::watch`]
    /// describes; for a file, fresh while the file last read parsed, stale (with the parse
    /// error) while an edit does not, the previous values being served meanwhile. A file that
    /// cannot be read or parsed at start fails the start.
    pub async fn start(self, env: &str) -> Result<(LiveConfig, Feed), SourceError> {
        match self {
            Self::Postgres { pool, options } => Ok(super::watch(pool, env, options).await?),
            Self::File { path, interval } => {
                let source = FileSource::open(path, env)?;
                let config = source.config();
                Ok((config, source.0.follow(interval)))
            }
        }
    }
}
