//! Embedded migrations written out as files, for tools that read a directory.

use std::path::Path;

/// Writes `(file name, SQL)` pairs, such as [`config::MIGRATIONS`](crate::config::MIGRATIONS) or
/// `groundwork_flags::store::MIGRATIONS`, into `dir` (created if missing), for
/// `groundwork-migrate --dir` and other tools that read a directory. The SQL is compiled into the
/// crate, so this works from a packaged crate or a deployed binary, where the crate's source
/// directory is absent. Existing files of the same names are replaced.
pub fn write_migration_files(dir: &Path, files: &[(&str, &str)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, sql) in files {
        std::fs::write(dir.join(name), sql)?;
    }
    Ok(())
}
