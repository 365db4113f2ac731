#![doc = include_str!("../README.md")]
// Without a source feature only storage, listing, retention and metrics are reachable; the
// pipeline and child-process helpers that the sources share are then unused.
#![cfg_attr(
    not(any(feature = "postgres", feature = "redis", feature = "clickhouse")),
    allow(dead_code)
)]

mod catalog;
#[cfg(feature = "clickhouse")]
mod clickhouse;
mod error;
mod hexpack;
mod keys;
mod local;
mod manifest;
mod metrics;
#[cfg(feature = "postgres")]
mod pg_archive;
#[cfg(feature = "postgres")]
mod physical;
mod pipeline;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "postgres", feature = "redis"))]
mod process;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "postgres")]
mod spool;
mod storage;
#[cfg(test)]
mod test_data;
#[cfg(feature = "postgres")]
mod wal;

pub use catalog::{
    BackupEntry, BackupFilter, BackupStatus, PruneReason, PruneReport, PrunedBackup, PrunedWal,
    RetentionPolicy, latest, list, plan_prune, prune, read_manifest,
};
#[cfg(feature = "clickhouse")]
pub use clickhouse::{
    ClickHouseBackupOptions, ClickHouseRestoreOptions, ClickHouseRestoreReport, backup_clickhouse,
    restore_clickhouse,
};
pub use error::{BackupError, BoxError};
pub use keys::{Identity, Recipient};
pub use manifest::{
    BackupId, BackupKind, BackupManifest, Compression, Encryption, MANIFEST_FORMAT, PhysicalBackup,
    RedisClusterMaster, StoredObject,
};
pub use metrics::render_metrics;
#[cfg(feature = "postgres")]
pub use metrics::render_wal_metrics;
#[cfg(feature = "postgres")]
pub use physical::{
    BaseBackupOptions, PitrRestoreOptions, PitrRestoreReport, PitrVerifyOptions, PitrVerifyReport,
    RecoveryTarget, basebackup_postgres, default_postgres_bin_dir, pitr_restore,
    verify_restored_cluster,
};
pub use pipeline::{
    DEFAULT_PART_SIZE, DEFAULT_ZSTD_LEVEL, MIN_LOCAL_PART_SIZE, MIN_REMOTE_PART_SIZE,
    PipelineOptions, Progress,
};
#[cfg(feature = "postgres")]
pub use postgres::{
    PostgresBackupOptions, PostgresRestoreOptions, RestoreReport, TableCheck, VerifyReport,
    backup_postgres, backup_postgres_with_session, restore_postgres, verify_postgres,
};
#[cfg(feature = "redis")]
pub use redis::{
    RedisBackupOptions, RedisClusterRestoreReport, RedisClusterRestoredMaster, RedisRestoreOptions,
    RedisRestoreReport, RedisTlsFiles, backup_redis, backup_redis_cluster,
    restore_redis_cluster_files, restore_redis_file,
};
#[cfg(feature = "postgres")]
pub use spool::{WalSpoolOptions, WalSpoolReport, push_wal_spooled};
pub use storage::{S3Options, Storage};
#[cfg(feature = "postgres")]
pub use wal::{
    Lsn, WalArchiveStatus, WalFetchReport, WalFileKind, WalFileName, WalPushReport, WalRecord,
    fetch_wal, list_wal, push_wal, read_wal_record, wal_archive_status,
};
