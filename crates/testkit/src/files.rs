//! Comparing a directory a program wrote with the one it was made from.

use std::path::Path;

use crate::TestkitError;

/// Checks that `written` holds the same files as `expected`, by name and content (e.g. the
/// migrations a crate embeds and writes out, against its `migrations/` directory).
pub fn same_files(written: &Path, expected: &Path) -> Result<(), TestkitError> {
    let different = |detail: String| TestkitError::DifferentFiles {
        written: written.to_owned(),
        expected: expected.to_owned(),
        detail,
    };
    let names = |dir: &Path| -> Result<Vec<String>, TestkitError> {
        let mut names = std::fs::read_dir(dir)
            .and_then(|entries| {
                entries
                    .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
                    .collect::<std::io::Result<Vec<_>>>()
            })
            .map_err(|e| different(format!("cannot list {}: {e}", dir.display())))?;
        names.sort();
        Ok(names)
    };
    let expected_names = names(expected)?;
    let written_names = names(written)?;
    if written_names != expected_names {
        return Err(different(format!(
            "not every file is written: {written_names:?} against {expected_names:?}"
        )));
    }
    for name in &expected_names {
        let read = |dir: &Path| {
            std::fs::read(dir.join(name)).map_err(|e| different(format!("cannot read {name}: {e}")))
        };
        if read(written)? != read(expected)? {
            return Err(different(format!("{name} differs")));
        }
    }
    Ok(())
}

/// Checks that `write` (e.g. a crate's `write_migrations`), given a directory that does not exist
/// yet, writes the same files as `expected` holds (e.g. its `migrations/`), by name and content:
/// every file is embedded, as it is. The directory is made under the system's temporary directory
/// and removed afterwards.
///
/// # Errors
///
/// [`TestkitError::DifferentFiles`] when `write` fails or what it wrote differs.
pub fn writes_same_files<E: std::fmt::Display>(
    write: impl FnOnce(&Path) -> Result<(), E>,
    expected: &Path,
) -> Result<(), TestkitError> {
    /// Removes the directory also when the check panics.
    struct Removed(std::path::PathBuf);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let out = Removed(std::env::temp_dir().join(format!(
        "groundwork-written-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )));
    let written = out
        .0
        .join(expected.file_name().unwrap_or("written".as_ref()));
    write(&written).map_err(|e| TestkitError::DifferentFiles {
        written: written.clone(),
        expected: expected.to_owned(),
        detail: format!("cannot write: {e}"),
    })?;
    same_files(&written, expected)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::writes_same_files;

    fn write_one(dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("0001_up.sql"), "SELECT 1;\n")
    }

    #[test]
    fn a_writer_is_held_to_every_file_and_byte_of_the_directory() -> std::io::Result<()> {
        let expected = std::env::temp_dir().join(format!(
            "groundwork-expected-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        write_one(&expected)?;
        assert!(writes_same_files(write_one, &expected).is_ok());

        std::fs::write(expected.join("0001_up.sql"), "SELECT 2;\n")?;
        let differs = writes_same_files(write_one, &expected).map_err(|e| e.to_string());
        assert!(differs.is_err_and(|e| e.ends_with("0001_up.sql differs")));

        std::fs::write(expected.join("0002_up.sql"), "SELECT 2;\n")?;
        let missing = writes_same_files(write_one, &expected).map_err(|e| e.to_string());
        assert!(missing.is_err_and(|e| e.contains("not every file is written")));

        let failed = writes_same_files(|_: &Path| Err("disk full"), &expected);
        assert!(failed.is_err_and(|e| e.to_string().ends_with("cannot write: disk full")));
        std::fs::remove_dir_all(&expected)
    }
}
