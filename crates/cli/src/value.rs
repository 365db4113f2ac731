//! Values too large or too awkward for a command line: `--value-file FILE` or `-` for stdin.

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;

use crate::Failure;

/// The text of the file at `path`, or all of stdin when `path` is `-`.
///
/// The text is returned as it is, trailing newline included. A file that cannot be read or is not
/// UTF-8 is a usage failure (exit code 2) naming the file.
pub fn read_value(path: &Path) -> Result<String, Failure> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .lock()
            .read_to_string(&mut text)
            .context("cannot read the value from stdin")
            .map_err(Failure::usage)?;
        return Ok(text);
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the value file {}", path.display()))
        .map_err(Failure::usage)
}
