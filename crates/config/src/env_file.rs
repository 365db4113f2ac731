//! `NAME=value` files: `.env` and the `target/infra/env` file `cargo xtask infra up` writes.
//!
//! One reader and one writer for both, so what is written is what is read: [`parse_env_file`]
//! reads with dotenvy (the `.env` dialect: optional `export `, `#` comments, single and double
//! quotes, backslash escapes outside single quotes), and [`quote_env_value`] writes a value as one
//! POSIX shell word that `parse_env_file` and `sh`'s `.` both read back unchanged, so the file can
//! also be `source`d.

use std::borrow::Cow;

/// An env file, or a line for one, could not be made or read.
///
/// Messages name the line and column, never the line's content: env files hold secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvFileError {
    /// A line is not a `NAME=value` assignment the reader understands.
    #[error(
        "line {line} is not a `NAME=value` assignment (at character {column}); quote a value that \
         holds spaces, quotes, `#`, `$` or `\\` in single quotes, writing `'\\''` for a `'`"
    )]
    Syntax {
        /// The 1-based line the assignment starts on.
        line: usize,
        /// The 0-based character position in the assignment where reading stopped.
        column: usize,
    },
    /// A variable name is not `[A-Za-z_][A-Za-z0-9_]*`, which a shell could not assign.
    #[error(
        "{name:?} cannot be a variable name: use letters, digits and `_`, not starting with a digit"
    )]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// The text could not be read.
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
}

/// Reads `NAME=value` assignments, in file order; a later assignment of a name does not remove
/// an earlier one from the list (callers collecting into a map keep the last).
///
/// Blank lines and `#` comments are skipped, `export ` is optional, and values may be bare,
/// `'single-quoted'` (literal), `"double-quoted"` (with `\` escapes) or a concatenation of those,
/// spanning lines inside quotes. A leading byte-order mark is ignored. Anything else is an
/// [`EnvFileError::Syntax`] naming the line.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut pairs = Vec::new();
    // Where the next unread assignment can start, to turn the reader's error into a line number.
    let mut searched_to = 0;
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((name, value)) => {
                if let Some(offset) = text[searched_to..].find(&format!("{name}=")) {
                    searched_to += offset + name.len();
                }
                pairs.push((name, value));
            }
            Err(dotenvy::Error::LineParse(line, column)) => {
                let start = text[searched_to..]
                    .find(line.trim_end())
                    .map_or(searched_to, |offset| searched_to + offset);
                let line = text[..start].matches('\n').count() + 1;
                return Err(EnvFileError::Syntax { line, column });
            }
            Err(dotenvy::Error::Io(error)) => return Err(EnvFileError::Read(error)),
            Err(other) => {
                return Err(EnvFileError::Read(std::io::Error::other(other.to_string())));
            }
        }
    }
    Ok(pairs)
}

/// `value` as one shell word that both [`parse_env_file`] and a POSIX shell read back as `value`.
///
/// Values made only of letters, digits and `:/@.%_+-=,` (every URL without a password that
/// needs escaping) stay bare; anything else is single-quoted, a `'` written as `'\''`. A `\` is
/// written outside the quotes, as `'\\'`: a shell reads `\` inside single quotes literally, but
/// dotenvy 0.15, looking for the end of a quoted value, takes `\'` there for an escaped quote.
/// A NUL character cannot be held by a shell variable; the reader gets it back, a shell does not.
pub fn quote_env_value(value: &str) -> Cow<'_, str> {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":/@.%_+-=,".contains(c));
    if bare {
        return Cow::Borrowed(value);
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        match c {
            '\'' => quoted.push_str(r"'\''"),
            '\\' => quoted.push_str(r"'\\'"),
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    Cow::Owned(quoted)
}

/// The line `export NAME=value\n`, the value quoted by [`quote_env_value`].
pub fn export_line(name: &str, value: &str) -> Result<String, EnvFileError> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(EnvFileError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok(format!("export {name}={}\n", quote_env_value(value)))
}

#[cfg(test)]
mod tests {
    use super::{EnvFileError, export_line, parse_env_file, quote_env_value};

    /// Values with every character that quoting has to get right.
    const VALUES: &[&str] = &[
        "postgres://postgres@127.0.0.1:5432/postgres",
        "",
        "it's",
        "'",
        "''",
        "\"double\"",
        "$HOME and ${HOME}",
        r"back\slash",
        "\\",
        r"\'",
        r"ends with \",
        "two  spaces",
        " leading and trailing ",
        "a=b=c",
        "#not a comment",
        "x #y",
        "line one\nline two",
        "\n",
        "crlf\r\n",
        "tab\there",
        "\u{1b}[31mescape",
        "ünïcödé ✓",
        "redis://:p'a\"s$s\\w#o rd@cache:6379/0?x=1&y=2",
        "`backticks` and $(command)",
        "semi;colon|pipe&amp<less>more",
        "*?[glob]~",
    ];

    #[test]
    fn every_value_reads_back_as_written() -> Result<(), EnvFileError> {
        let mut text = "# header\n".to_owned();
        for (index, value) in VALUES.iter().enumerate() {
            text.push_str(&export_line(&format!("V{index}"), value)?);
        }
        let parsed = parse_env_file(&text)?;
        let expected: Vec<(String, String)> = VALUES
            .iter()
            .enumerate()
            .map(|(index, value)| (format!("V{index}"), (*value).to_owned()))
            .collect();
        assert_eq!(parsed, expected);
        Ok(())
    }

    #[test]
    fn a_shell_reads_every_value_back_as_written() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        for value in VALUES {
            let file = dir.path().join("env");
            std::fs::write(&file, export_line("V", value)?)?;
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(r#". "$1" && printf '%s' "$V""#)
                .arg("sh")
                .arg(&file)
                .output()?;
            assert!(output.status.success(), "sh failed for {value:?}");
            assert_eq!(String::from_utf8(output.stdout)?, *value);
        }
        Ok(())
    }

    #[test]
    fn urls_without_special_characters_stay_bare() {
        assert_eq!(
            quote_env_value("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:guest@127.0.0.1:5672/%2f"
        );
        assert_eq!(quote_env_value("it's"), r"'it'\''s'");
        assert_eq!(quote_env_value(r"a\b"), r"'a'\\'b'");
        assert_eq!(quote_env_value(""), "''");
    }

    #[test]
    fn hand_written_forms_are_read() -> Result<(), EnvFileError> {
        let parsed =
            parse_env_file("\u{feff}export A='x y'\nB=\"q\\\"uote\"\n  C=bare # comment\n\nD=\n")?;
        let expected = [("A", "x y"), ("B", "q\"uote"), ("C", "bare"), ("D", "")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(parsed, expected);
        Ok(())
    }

    #[test]
    fn a_bad_line_is_named_without_its_content() {
        let error = parse_env_file("A=1\n# note\nB='s3cret\n");
        let Err(error) = error else {
            panic!("an unterminated quote must be refused");
        };
        let message = error.to_string();
        assert!(
            matches!(error, EnvFileError::Syntax { line: 3, .. }),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");

        let error = parse_env_file("A=1\nnot a pair\n");
        assert!(matches!(error, Err(EnvFileError::Syntax { line: 2, .. })));
    }

    #[test]
    fn names_a_shell_cannot_assign_are_refused() {
        for name in ["", "1A", "A-B", "A B", "A\nB", "Ä"] {
            assert!(
                matches!(
                    export_line(name, "v"),
                    Err(EnvFileError::InvalidName { .. })
                ),
                "{name:?}"
            );
        }
    }
}
