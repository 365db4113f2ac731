//! The orchestrator: loads nothing and knows no database; it plans with [`crate::plan`] and
//! drives a [`Backend`] under its lock.

use std::time::Duration;

use crate::backend::{AppliedMigration, Backend, NewRecord, RecordState, TableName};
use crate::error::MigrateError;
use crate::plan::{self, DownTarget, MigrationStatus, State};
use crate::source::MigrationSet;

/// How a run behaves. Build it with [`Default`] and change the fields you need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MigrateOptions {
    /// The tracking table; `schema_migrations` by default. Separate migration sets in one
    /// database use separate tables, and each table has its own lock.
    pub table: TableName,
    /// How long to wait for another runner's lock before failing; 5 minutes by default, so a
    /// replica outwaits a long migration started by another.
    pub lock_timeout: Duration,
    /// Apply pending migrations numbered below the latest applied one instead of refusing.
    pub allow_out_of_order: bool,
    /// Plan and report, but change nothing (no table is created, no lock is taken).
    pub dry_run: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            table: TableName::default(),
            lock_timeout: Duration::from_mins(5),
            allow_out_of_order: false,
            dry_run: false,
        }
    }
}

/// What a step did (or, in a dry run, would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Ran an up (or single) script.
    Apply,
    /// Ran a down script.
    Revert,
    /// Recorded a version as applied without running it (`force`).
    Force,
    /// Recorded the baseline row.
    Baseline,
    /// Replaced a stored checksum with the file's (`repair`).
    UpdateChecksum,
    /// Removed a dirty or missing version's row (`repair`).
    RemoveRecord,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What was done.
    pub action: Action,
    /// The version.
    pub version: i64,
    /// The file run or recorded, or the name of a removed row.
    pub file: String,
    /// The SQL the step runs (set for apply and revert).
    pub sql: Option<String>,
    /// How long it took (zero in a dry run).
    pub elapsed: Duration,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Whether this was a dry run, in which nothing changed.
    pub dry_run: bool,
    /// The steps, in the order they ran.
    pub steps: Vec<Step>,
}

/// A set of migrations and the options to run them with.
#[derive(Debug, Clone)]
pub struct Migrator {
    set: MigrationSet,
    options: MigrateOptions,
}

impl Migrator {
    /// A migrator for `set` with default options.
    pub fn new(set: MigrationSet) -> Self {
        Self {
            set,
            options: MigrateOptions::default(),
        }
    }

    /// Loads the migrations of `dir`; see [`MigrationSet::load`].
    pub fn from_dir(dir: impl AsRef<std::path::Path>) -> Result<Self, MigrateError> {
        MigrationSet::load(dir).map(Self::new)
    }

    /// Replaces the options.
    #[must_use]
    pub fn with_options(mut self, options: MigrateOptions) -> Self {
        self.options = options;
        self
    }

    /// The migrations.
    pub fn migrations(&self) -> &MigrationSet {
        &self.set
    }

    /// The options.
    pub fn options(&self) -> &MigrateOptions {
        &self.options
    }

    /// Applies pending migrations (up to `to`, inclusive) under the lock.
    pub async fn up<B: Backend>(
        &self,
        db: &mut B,
        to: Option<i64>,
    ) -> Result<Report, MigrateError> {
        let table = &self.options.table;
        if self.options.dry_run {
            let applied = db.applied(table).await?;
            let plan = plan::plan_up(&self.set, &applied, to, self.options.allow_out_of_order)?;
            return Ok(dry_report(plan.into_iter().map(|m| {
                (
                    Action::Apply,
                    m.version,
                    m.up.file_name.clone(),
                    Some(m.up.sql.clone()),
                )
            })));
        }
        self.locked(db, async |db: &mut B| {
            let applied = db.applied(table).await?;
            let plan = plan::plan_up(&self.set, &applied, to, self.options.allow_out_of_order)?;
            let mut report = Report::default();
            for migration in plan {
                let elapsed = db.apply(table, migration).await?;
                report.steps.push(Step {
                    action: Action::Apply,
                    version: migration.version,
                    file: migration.up.file_name.clone(),
                    sql: Some(migration.up.sql.clone()),
                    elapsed,
                });
            }
            Ok(report)
        })
        .await
    }

    /// Reverts applied migrations, newest first, under the lock.
    pub async fn down<B: Backend>(
        &self,
        db: &mut B,
        target: DownTarget,
    ) -> Result<Report, MigrateError> {
        let table = &self.options.table;
        if self.options.dry_run {
            let applied = db.applied(table).await?;
            let plan = plan::plan_down(&self.set, &applied, target)?;
            return Ok(dry_report(plan.into_iter().map(|(m, down)| {
                (
                    Action::Revert,
                    m.version,
                    down.file_name.clone(),
                    Some(down.sql.clone()),
                )
            })));
        }
        self.locked(db, async |db: &mut B| {
            let applied = db.applied(table).await?;
            let plan = plan::plan_down(&self.set, &applied, target)?;
            let mut report = Report::default();
            for (migration, down) in plan {
                let elapsed = db.revert(table, migration, down).await?;
                report.steps.push(Step {
                    action: Action::Revert,
                    version: migration.version,
                    file: down.file_name.clone(),
                    sql: Some(down.sql.clone()),
                    elapsed,
                });
            }
            Ok(report)
        })
        .await
    }

    /// One line per version; reads only (no lock, no table created).
    pub async fn status<B: Backend>(
        &self,
        db: &mut B,
    ) -> Result<Vec<MigrationStatus>, MigrateError> {
        let applied = db.applied(&self.options.table).await?;
        Ok(plan::status(&self.set, &applied))
    }

    /// Every reason `up` would refuse to run (dirty, modified, missing, out of order), as a
    /// list; empty when the database and the directory agree. Reads only.
    pub async fn validate<B: Backend>(
        &self,
        db: &mut B,
    ) -> Result<Vec<MigrateError>, MigrateError> {
        let applied = db.applied(&self.options.table).await?;
        Ok(plan::problems(
            &self.set,
            &applied,
            !self.options.allow_out_of_order,
        ))
    }

    /// Records `version` as applied with its file's current checksum, without running it, and
    /// clears its dirty state: for after an operator finished a failed migration by hand.
    pub async fn force<B: Backend>(
        &self,
        db: &mut B,
        version: i64,
    ) -> Result<Report, MigrateError> {
        let migration = self
            .set
            .get(version)
            .ok_or_else(|| MigrateError::UnknownVersion {
                version,
                dir: self.set.dir.clone(),
            })?;
        let step = Step {
            action: Action::Force,
            version,
            file: migration.up.file_name.clone(),
            sql: None,
            elapsed: Duration::ZERO,
        };
        if self.options.dry_run {
            return Ok(dry_report([(step.action, step.version, step.file, None)]));
        }
        let table = &self.options.table;
        self.locked(db, async |db: &mut B| {
            let record = NewRecord {
                version,
                name: &migration.name,
                script: &migration.up.file_name,
                checksum: &migration.checksum,
                state: RecordState::Applied,
            };
            db.record(table, &record).await?;
            Ok(Report {
                dry_run: false,
                steps: vec![step],
            })
        })
        .await
    }

    /// Adopts an existing database: records that every version up to `version` is already
    /// applied. Refuses when the tracking table has rows.
    pub async fn baseline<B: Backend>(
        &self,
        db: &mut B,
        version: i64,
    ) -> Result<Report, MigrateError> {
        let table = &self.options.table;
        let check = |applied: &[AppliedMigration]| {
            if applied.is_empty() {
                Ok(())
            } else {
                Err(MigrateError::NotEmpty {
                    table: table.to_string(),
                    count: applied.len(),
                })
            }
        };
        let file = format!("<< baseline {version} >>");
        if self.options.dry_run {
            check(&db.applied(table).await?)?;
            return Ok(dry_report([(Action::Baseline, version, file, None)]));
        }
        self.locked(db, async |db: &mut B| {
            check(&db.applied(table).await?)?;
            let record = NewRecord {
                version,
                name: "baseline",
                script: &file,
                checksum: &[],
                state: RecordState::Baseline,
            };
            db.record(table, &record).await?;
            Ok(Report {
                dry_run: false,
                steps: vec![Step {
                    action: Action::Baseline,
                    version,
                    file: file.clone(),
                    sql: None,
                    elapsed: Duration::ZERO,
                }],
            })
        })
        .await
    }

    /// Makes the tracking table agree with the files: stores the current checksum of modified
    /// migrations and removes the rows of dirty migrations (whose changes the operator undid by
    /// hand) and of missing files.
    pub async fn repair<B: Backend>(&self, db: &mut B) -> Result<Report, MigrateError> {
        let table = &self.options.table;
        if self.options.dry_run {
            let applied = db.applied(table).await?;
            let steps = self.repair_steps(&applied);
            return Ok(dry_report(
                steps
                    .into_iter()
                    .map(|s| (s.action, s.version, s.file, None)),
            ));
        }
        self.locked(db, async |db: &mut B| {
            let applied = db.applied(table).await?;
            let steps = self.repair_steps(&applied);
            for step in &steps {
                if step.action == Action::RemoveRecord {
                    db.remove(table, step.version).await?;
                } else if let Some(m) = self.set.get(step.version) {
                    let record = NewRecord {
                        version: m.version,
                        name: &m.name,
                        script: &m.up.file_name,
                        checksum: &m.checksum,
                        state: RecordState::Applied,
                    };
                    db.record(table, &record).await?;
                }
            }
            Ok(Report {
                dry_run: false,
                steps,
            })
        })
        .await
    }

    fn repair_steps(&self, applied: &[AppliedMigration]) -> Vec<Step> {
        plan::status(&self.set, applied)
            .into_iter()
            .filter_map(|s| {
                let action = match s.state {
                    State::Modified => Action::UpdateChecksum,
                    State::Dirty | State::Missing => Action::RemoveRecord,
                    State::Applied | State::Pending | State::Baseline => return None,
                };
                Some(Step {
                    action,
                    version: s.version,
                    file: s.file.unwrap_or(s.name),
                    sql: None,
                    elapsed: Duration::ZERO,
                })
            })
            .collect()
    }

    /// Runs `body` between lock and unlock. The unlock runs whatever `body` returned; if the
    /// task panics or is cancelled instead, the backend's session ends with it, which releases
    /// a session-scoped lock.
    async fn locked<B, T>(
        &self,
        db: &mut B,
        body: impl AsyncFnOnce(&mut B) -> Result<T, MigrateError>,
    ) -> Result<T, MigrateError>
    where
        B: Backend,
    {
        let table = &self.options.table;
        db.lock(table, self.options.lock_timeout).await?;
        let result = match db.ensure_table(table).await {
            Ok(()) => body(db).await,
            Err(e) => Err(e),
        };
        let unlocked = db.unlock(table).await;
        let value = result?;
        unlocked?;
        Ok(value)
    }
}

fn dry_report(steps: impl IntoIterator<Item = (Action, i64, String, Option<String>)>) -> Report {
    Report {
        dry_run: true,
        steps: steps
            .into_iter()
            .map(|(action, version, file, sql)| Step {
                action,
                version,
                file,
                sql,
                elapsed: Duration::ZERO,
            })
            .collect(),
    }
}
