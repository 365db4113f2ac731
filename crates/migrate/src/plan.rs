//! The pure part: comparing the files with the tracking table, with no I/O, so every rule is
//! unit-tested without a database.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::backend::{AppliedMigration, RecordState};
use crate::error::MigrateError;
use crate::source::{Migration, MigrationKind, MigrationSet, Script};

/// What `status` shows for one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Applied, and the file is unchanged.
    Applied,
    /// Has a file, not applied yet.
    Pending,
    /// Failed part-way outside a transaction; runs refuse until `force` or `repair`.
    Dirty,
    /// Applied, but the file changed since (checksum differs).
    Modified,
    /// Applied, but the file is gone.
    Missing,
    /// Covered by a `baseline`: taken as applied without having been run.
    Baseline,
}

impl State {
    /// The lowercase word shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Pending => "pending",
            Self::Dirty => "dirty",
            Self::Modified => "modified",
            Self::Missing => "missing",
            Self::Baseline => "baseline",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// The version.
    pub version: i64,
    /// The migration's name (from the file, else from the tracking table).
    pub name: String,
    /// The up or single file, when it exists.
    pub file: Option<String>,
    /// The state.
    pub state: State,
    /// When it was applied (or last written, for a dirty row).
    pub applied_at: Option<SystemTime>,
    /// How long it took.
    pub execution_time: Option<Duration>,
}

/// How far `down` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownTarget {
    /// Revert this many of the latest applied migrations.
    Steps(u32),
    /// Revert every applied migration with a higher version.
    To(i64),
}

fn baseline_version(applied: &[AppliedMigration]) -> Option<i64> {
    applied
        .iter()
        .filter(|a| a.state == RecordState::Baseline)
        .map(|a| a.version)
        .max()
}

/// Compares the files with the tracking table, one line per version, in version order.
pub fn status(set: &MigrationSet, applied: &[AppliedMigration]) -> Vec<MigrationStatus> {
    let baseline = baseline_version(applied);
    let mut out = Vec::with_capacity(set.migrations.len() + applied.len());
    let mut files = set.migrations.iter().peekable();
    let mut rows = applied.iter().peekable();
    loop {
        let (file, row) = match (files.peek(), rows.peek()) {
            (None, None) => break,
            (Some(f), Some(r)) if f.version == r.version => (files.next(), rows.next()),
            (Some(f), Some(r)) if f.version < r.version => (files.next(), None),
            (Some(_), None) => (files.next(), None),
            _ => (None, rows.next()),
        };
        let state = match (file, row) {
            (_, Some(r)) if r.state == RecordState::Dirty => State::Dirty,
            (_, Some(r)) if r.state == RecordState::Baseline => State::Baseline,
            (Some(f), Some(r)) if f.checksum != r.checksum => State::Modified,
            (Some(_), Some(_)) => State::Applied,
            (None, Some(_)) => State::Missing,
            (Some(f), None) if baseline.is_some_and(|b| f.version <= b) => State::Baseline,
            (Some(_), None) => State::Pending,
            (None, None) => continue,
        };
        let Some(version) = file.map(|f| f.version).or(row.map(|r| r.version)) else {
            continue;
        };
        out.push(MigrationStatus {
            version,
            name: file.map_or_else(
                || row.map(|r| r.name.clone()).unwrap_or_default(),
                |f| f.name.clone(),
            ),
            file: file.map(|f| f.up.file_name.clone()),
            state,
            applied_at: row.map(|r| r.applied_at),
            execution_time: row.map(|r| r.execution_time),
        });
    }
    out
}

/// Every reason to refuse a run, in the order an operator should fix them: dirty, modified,
/// missing, then (when `check_order`) pending versions below the latest applied one.
pub(crate) fn problems(
    set: &MigrationSet,
    applied: &[AppliedMigration],
    check_order: bool,
) -> Vec<MigrateError> {
    let statuses = status(set, applied);
    let mut dirty = Vec::new();
    let mut modified = Vec::new();
    let mut missing = Vec::new();
    for s in &statuses {
        match s.state {
            State::Dirty => {
                if let Some(row) = applied.iter().find(|a| a.version == s.version) {
                    dirty.push(MigrateError::Dirty {
                        version: s.version,
                        script: row.script.clone(),
                        statements_done: row.statements_done,
                    });
                }
            }
            State::Modified => modified.push(MigrateError::Modified {
                version: s.version,
                file: s.file.clone().unwrap_or_default(),
            }),
            State::Missing => missing.push(MigrateError::Missing {
                version: s.version,
                name: s.name.clone(),
                dir: display_dir(&set.dir),
            }),
            State::Applied | State::Pending | State::Baseline => {}
        }
    }
    let mut out = dirty;
    out.append(&mut modified);
    out.append(&mut missing);
    if check_order && let Some(latest) = applied.iter().map(|a| a.version).max() {
        out.extend(
            statuses
                .iter()
                .filter(|s| s.state == State::Pending && s.version < latest)
                .map(|s| MigrateError::OutOfOrder {
                    version: s.version,
                    file: s.file.clone().unwrap_or_default(),
                    latest,
                }),
        );
    }
    out
}

fn display_dir(dir: &Path) -> std::path::PathBuf {
    if dir.as_os_str().is_empty() {
        ".".into()
    } else {
        dir.to_path_buf()
    }
}

/// The migrations `up` applies, in order, or the first reason to refuse.
pub(crate) fn plan_up<'s>(
    set: &'s MigrationSet,
    applied: &[AppliedMigration],
    target: Option<i64>,
    allow_out_of_order: bool,
) -> Result<Vec<&'s Migration>, MigrateError> {
    if let Some(problem) = problems(set, applied, !allow_out_of_order)
        .into_iter()
        .next()
    {
        return Err(problem);
    }
    let pending = status(set, applied)
        .into_iter()
        .filter(|s| s.state == State::Pending && target.is_none_or(|t| s.version <= t))
        .filter_map(|s| set.get(s.version))
        .collect();
    Ok(pending)
}

/// The migrations `down` reverts, newest first, with their down scripts, or the first reason
/// to refuse.
pub(crate) fn plan_down<'s>(
    set: &'s MigrationSet,
    applied: &[AppliedMigration],
    target: DownTarget,
) -> Result<Vec<(&'s Migration, &'s Script)>, MigrateError> {
    if let Some(problem) = problems(set, applied, false).into_iter().next() {
        return Err(problem);
    }
    let baseline = baseline_version(applied);
    let mut reverted: Vec<&AppliedMigration> = applied
        .iter()
        .rev()
        .filter(|a| a.state == RecordState::Applied && baseline.is_none_or(|b| a.version > b))
        .collect();
    match target {
        DownTarget::Steps(steps) => {
            let steps = usize::try_from(steps).unwrap_or(usize::MAX);
            if let Some(baseline) = baseline
                && steps > reverted.len()
            {
                return Err(MigrateError::BelowBaseline { baseline });
            }
            reverted.truncate(steps);
        }
        DownTarget::To(version) => {
            if let Some(baseline) = baseline
                && version < baseline
            {
                return Err(MigrateError::BelowBaseline { baseline });
            }
            reverted.retain(|a| a.version > version);
        }
    }
    reverted
        .into_iter()
        .map(|row| {
            let migration = set.get(row.version).ok_or_else(|| MigrateError::Missing {
                version: row.version,
                name: row.name.clone(),
                dir: display_dir(&set.dir),
            })?;
            down_script(migration).map(|down| (migration, down))
        })
        .collect()
}

fn down_script(migration: &Migration) -> Result<&Script, MigrateError> {
    if let Some(down) = &migration.down {
        return Ok(down);
    }
    let file = migration.up.file_name.clone();
    if migration.kind == MigrationKind::Simple {
        let stem = file.strip_suffix(".sql").unwrap_or(&file);
        return Err(MigrateError::Irreversible {
            version: migration.version,
            up_file: format!("{stem}.up.sql"),
            down_file: migration.down_file_name(),
            file,
        });
    }
    Err(MigrateError::MissingDown {
        version: migration.version,
        down_file: migration.down_file_name(),
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> MigrationSet {
        MigrationSet::from_files(list.iter().copied()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn row(set: &MigrationSet, version: i64, state: RecordState) -> AppliedMigration {
        let m = set.get(version);
        AppliedMigration {
            version,
            name: m.map_or_else(|| "gone".to_owned(), |m| m.name.clone()),
            script: m.map_or_else(|| "gone.sql".to_owned(), |m| m.up.file_name.clone()),
            checksum: m.map(|m| m.checksum.clone()).unwrap_or_default(),
            state,
            statements_done: 1,
            applied_at: SystemTime::UNIX_EPOCH,
            execution_time: Duration::ZERO,
        }
    }

    fn three() -> MigrationSet {
        files(&[
            ("1_a.up.sql", "A"),
            ("1_a.down.sql", "-A"),
            ("2_b.up.sql", "B"),
            ("2_b.down.sql", "-B"),
            ("3_c.sql", "C"),
        ])
    }

    fn versions(plan: &[&Migration]) -> Vec<i64> {
        plan.iter().map(|m| m.version).collect()
    }

    #[test]
    fn up_applies_pending_in_order_up_to_the_target() -> Result<(), MigrateError> {
        let set = three();
        let applied = [row(&set, 1, RecordState::Applied)];
        assert_eq!(versions(&plan_up(&set, &applied, None, false)?), [2, 3]);
        assert_eq!(versions(&plan_up(&set, &applied, Some(2), false)?), [2]);
        Ok(())
    }

    #[test]
    fn a_changed_file_is_modified_and_blocks_up() {
        let set = three();
        let mut changed = row(&set, 1, RecordState::Applied);
        changed.checksum = vec![0; 48];
        let statuses = status(&set, std::slice::from_ref(&changed));
        assert_eq!(statuses[0].state, State::Modified);
        let err = plan_up(&set, &[changed], None, false).err();
        assert!(
            matches!(err, Some(MigrateError::Modified { version: 1, ref file }) if file == "1_a.up.sql")
        );
    }

    #[test]
    fn an_applied_version_without_file_is_missing() {
        let set = three();
        let mut applied = vec![row(&set, 1, RecordState::Applied)];
        applied.push(row(&files(&[]), 7, RecordState::Applied));
        let statuses = status(&set, &applied);
        assert_eq!(
            statuses.last().map(|s| (s.version, s.state)),
            Some((7, State::Missing))
        );
        assert!(matches!(
            plan_up(&set, &applied, None, true),
            Err(MigrateError::Missing { version: 7, .. })
        ));
    }

    #[test]
    fn out_of_order_is_refused_unless_allowed() -> Result<(), MigrateError> {
        let set = three();
        let applied = [
            row(&set, 1, RecordState::Applied),
            row(&set, 3, RecordState::Applied),
        ];
        let err = plan_up(&set, &applied, None, false).err();
        assert!(matches!(
            err,
            Some(MigrateError::OutOfOrder {
                version: 2,
                latest: 3,
                ..
            })
        ));
        assert_eq!(versions(&plan_up(&set, &applied, None, true)?), [2]);
        Ok(())
    }

    #[test]
    fn dirty_blocks_up_and_down_and_comes_first() {
        let set = three();
        let mut dirty = row(&set, 2, RecordState::Dirty);
        dirty.checksum = vec![1];
        let applied = [row(&set, 1, RecordState::Applied), dirty];
        let all = problems(&set, &applied, true);
        assert!(matches!(
            all.first(),
            Some(MigrateError::Dirty { version: 2, .. })
        ));
        assert!(plan_up(&set, &applied, None, true).is_err());
        assert!(plan_down(&set, &applied, DownTarget::Steps(1)).is_err());
    }

    #[test]
    fn down_reverts_newest_first_and_refuses_irreversible_or_missing_down()
    -> Result<(), MigrateError> {
        let set = three();
        let applied: Vec<_> = (1..=3)
            .map(|v| row(&set, v, RecordState::Applied))
            .collect();
        let err = plan_down(&set, &applied, DownTarget::Steps(1)).err();
        assert!(matches!(
            err,
            Some(MigrateError::Irreversible { version: 3, .. })
        ));
        let two = &applied[..2];
        let plan = plan_down(&set, two, DownTarget::To(0))?;
        let order: Vec<_> = plan
            .iter()
            .map(|(m, d)| (m.version, d.file_name.as_str()))
            .collect();
        assert_eq!(order, [(2, "2_b.down.sql"), (1, "1_a.down.sql")]);

        let no_down = files(&[("1_a.up.sql", "A")]);
        let err = plan_down(
            &no_down,
            &[row(&no_down, 1, RecordState::Applied)],
            DownTarget::Steps(1),
        )
        .err();
        assert!(
            matches!(err, Some(MigrateError::MissingDown { ref down_file, .. }) if down_file == "1_a.down.sql")
        );
        Ok(())
    }

    #[test]
    fn baseline_covers_older_files_and_stops_down() -> Result<(), MigrateError> {
        let set = three();
        let base = AppliedMigration {
            checksum: Vec::new(),
            ..row(&set, 2, RecordState::Baseline)
        };
        let statuses = status(&set, std::slice::from_ref(&base));
        let states: Vec<_> = statuses.iter().map(|s| s.state).collect();
        assert_eq!(states, [State::Baseline, State::Baseline, State::Pending]);
        assert_eq!(
            versions(&plan_up(&set, std::slice::from_ref(&base), None, false)?),
            [3]
        );
        let applied = [base, row(&set, 3, RecordState::Applied)];
        assert!(matches!(
            plan_down(&set, &applied, DownTarget::Steps(2)),
            Err(MigrateError::BelowBaseline { baseline: 2 })
        ));
        Ok(())
    }
}
