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
