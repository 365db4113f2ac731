//! `cargo xtask env-example [--check]`: keeps `.env.example` equal to what the config type says.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The file users copy to `.env`.
const FILE: &str = ".env.example";

pub(crate) fn run(root: &Path, check: bool) -> Result<()> {
    let expected = groundwork_config::env_example::<groundwork_example_quickstart::Settings>();
    let path = root.join(FILE);
    if !check {
        std::fs::write(&path, &expected).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
        return Ok(());
    }
    let actual = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    if actual == expected {
        println!("{FILE} is up to date");
        return Ok(());
    }
    let first_difference = actual
        .lines()
        .zip(expected.lines())
        .position(|(a, e)| a != e)
        .unwrap_or_else(|| actual.lines().count().min(expected.lines().count()));
    bail!(
        "{FILE} is stale: it differs from the config schema at line {}; run `cargo xtask env-example` and commit the result",
        first_difference + 1
    )
}
