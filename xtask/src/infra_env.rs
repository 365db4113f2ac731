//! `<target>/infra/env`: the URLs of the servers `cargo xtask infra up` reused or started.
//!
//! `infra up` writes the file as `export KEY=value` lines, each made by
//! `groundwork_config::export_line` (the value single-quoted only when it holds a character a
//! shell would interpret), so that a shell's `source` and `groundwork_config::parse_env_file` —
//! the one reader of the file, used here, by the test kit and by `cargo xtask config|flags|backup`
//! — read the same values. This module only knows where the file lives and what it holds; quoting
//! and parsing are groundwork-config's.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The file, in `infra_dir` (`<target>/infra`).
pub(crate) fn path(infra_dir: &Path) -> PathBuf {
    infra_dir.join("env")
}

/// The file's text for `vars`, in the order given.
pub(crate) fn render<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<String> {
    let mut text =
        "# Written by `cargo xtask infra up`; `source` it to use these servers from a shell.\n"
            .to_owned();
    for (name, value) in vars {
        text.push_str(
            &groundwork_config::export_line(name, value)
                .with_context(|| format!("cannot write {name} to the infra env file"))?,
        );
    }
    Ok(text)
}

/// Writes `path` through a temporary file, so that a reader never sees half of it.
pub(crate) fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let temporary = path.with_extension("tmp");
    fs::write(&temporary, contents)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The variables of `<target>/infra/env`, in file order.
#[derive(Debug)]
pub(crate) struct InfraEnv {
    vars: Vec<(String, String)>,
}

impl InfraEnv {
    /// Reads the file of the workspace's target directory.
    pub(crate) fn read() -> Result<Self> {
        let path = path(&crate::target_dir()?.join("infra"));
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}; run `cargo xtask infra up` first",
                path.display()
            )
        })?;
        let vars = groundwork_config::parse_env_file(&text)
            .with_context(|| format!("cannot use {}", path.display()))?;
        Ok(Self { vars })
    }

    /// The value of `key`; an error saying how to get the file when it has none.
    pub(crate) fn value(&self, key: &str) -> Result<String> {
        self.vars
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
            .with_context(|| format!("target/infra/env has no {key}; run `cargo xtask infra up`"))
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn env_file_exports_urls_and_quotes_only_what_a_shell_would_interpret() -> anyhow::Result<()> {
        let text = render([
            (
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:55432/postgres",
            ),
            ("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            ("REDIS_URL", "redis://:it's&$secret@cache:6379"),
        ])?;
        let exports: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
        assert_eq!(
            exports,
            [
                "export DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres",
                "export RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/%2f",
                r"export REDIS_URL='redis://:it'\''s&$secret@cache:6379'",
            ]
        );
        Ok(())
    }

    /// What `infra up` writes, the test kit and `cargo xtask config|flags|backup` read back.
    #[test]
    fn every_url_reads_back_as_written() -> anyhow::Result<()> {
        let urls = [
            "",
            "postgres://app:it's@db/app",
            "postgres://app:\"quoted\"@db/app",
            "redis://:$HOME${X}@cache:6379",
            r"amqp://u:back\slash\@mq/%2f",
            r"amqp://u:\'@mq/%2f",
            "http://u:two words@ch:8123",
            "http://u:a=b@ch:8123/?x=1&y=2",
            "http://u:#hash@ch:8123#frag",
            "http://u:new\nline@ch:8123",
            "http://u:cr\r\n@ch:8123",
        ];
        for url in urls {
            let text = render([("DATABASE_URL", url)])?;
            assert_eq!(
                groundwork_config::parse_env_file(&text)?,
                [("DATABASE_URL".to_owned(), url.to_owned())],
                "{text}"
            );
        }
        Ok(())
    }
}
