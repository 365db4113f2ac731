//! The error report: every problem at once, each with its key, variable and source.

use std::fmt;
use std::path::PathBuf;

use crate::AppEnv;

/// Loading failed. Lists every problem found, not just the first, so an operator fixes a
/// deployment in one round. It never contains a secret value.
#[derive(Debug, Clone)]
pub struct ConfigError {
    env: AppEnv,
    problems: Vec<Problem>,
}

impl ConfigError {
    pub(crate) fn new(env: AppEnv, problems: Vec<Problem>) -> Self {
        Self { env, problems }
    }

    /// The environment the load was for.
    pub fn app_env(&self) -> AppEnv {
        self.env
    }

    /// The problems, in schema order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        let noun = if count == 1 { "problem" } else { "problems" };
        write!(
            f,
            "invalid configuration for environment `{}` ({count} {noun}):",
            self.env
        )?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Problem {
    /// The dotted key path (`database.url`), or empty for problems not tied to a key.
    pub key: String,
    /// The environment variable that sets the key, when there is one.
    pub env_var: Option<String>,
    /// Where the offending value came from: a file or a variable.
    pub source: Option<String>,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// What is wrong with a value. No variant carries the value itself.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A required key has no value in any layer.
    Missing,
    /// The value has the wrong type: `expected` describes what fits, `found` what was given.
    WrongType {
        /// What the key accepts, e.g. "an integer".
        expected: String,
        /// What kind of value was found, e.g. "a string".
        found: String,
    },
    /// A number outside its allowed range.
    OutOfRange {
        /// Smallest allowed value.
        min: Option<f64>,
        /// Largest allowed value.
        max: Option<f64>,
    },
    /// A string that is not one of the allowed values.
    NotOneOf {
        /// The allowed values.
        allowed: Vec<String>,
    },
    /// A string shorter than its minimum length.
    TooShort {
        /// The required number of characters.
        min: u64,
        /// The number of characters given.
        actual: usize,
    },
    /// A secret that is empty in production.
    EmptySecret,
    /// A secret that is still a placeholder, such as the value from `.env.example`.
    Placeholder,
    /// A `*_FILE` variable names a file that cannot be read.
    SecretFile {
        /// The `*_FILE` variable.
        var: String,
        /// The path it names.
        path: PathBuf,
        /// Why reading failed.
        reason: String,
    },
    /// Two names for one key are set to different values in the same layer.
    Conflict {
        /// The first source.
        first: String,
        /// The source that disagrees.
        second: String,
    },
    /// A variable's value is not valid UTF-8.
    NotUnicode {
        /// The variable.
        var: String,
    },
    /// A config file does not parse.
    FileSyntax {
        /// The file.
        path: PathBuf,
        /// Line and column, 1-based, when known.
        position: Option<(usize, usize)>,
        /// The parser's message, without the file's content.
        detail: String,
    },
    /// A `.env` file does not parse.
    DotEnv {
        /// The file.
        path: PathBuf,
        /// What went wrong, without the file's content.
        detail: String,
    },
    /// `APP_ENV` (or `NODE_ENV`) names no known environment. The value is not repeated: the
    /// report holds no value from any source.
    UnknownAppEnv,
    /// Deserialization into the config type failed for a reason the schema did not predict.
    Invalid {
        /// The deserializer's message, with values removed for secret keys.
        detail: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.key.is_empty() {
            write!(f, "`{}`", self.key)?;
            if let Some(var) = &self.env_var {
                write!(f, " (env {var})")?;
            }
            f.write_str(": ")?;
        }
        write!(f, "{}", self.kind)?;
        if let Some(source) = &self.source {
            write!(f, "; from {source}")?;
        }
        if self.kind == ProblemKind::Missing {
            match &self.env_var {
                Some(var) => write!(
                    f,
                    "; set {var} (or {var}_FILE) or `{}` in config/default.toml",
                    self.key
                )?,
                None => write!(f, "; set `{}` in config/default.toml", self.key)?,
            }
        }
        Ok(())
    }
}

fn fmt_range(f: &mut fmt::Formatter<'_>, min: Option<f64>, max: Option<f64>) -> fmt::Result {
    match (min, max) {
        (Some(min), Some(max)) => write!(f, "must be between {min} and {max}"),
        (Some(min), None) => write!(f, "must be at least {min}"),
        (None, Some(max)) => write!(f, "must be at most {max}"),
        (None, None) => f.write_str("is out of range"),
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("missing"),
            Self::WrongType { expected, found } => write!(f, "expected {expected}, found {found}"),
            Self::OutOfRange { min, max } => fmt_range(f, *min, *max),
            Self::NotOneOf { allowed } => write!(f, "must be one of: {}", allowed.join(", ")),
            Self::TooShort { min, actual } => {
                write!(f, "must be at least {min} characters long, got {actual}")
            }
            Self::EmptySecret => f.write_str("secret is empty; production needs a real value"),
            Self::Placeholder => f.write_str(
                "secret is still a placeholder (such as the value in .env.example); production needs a real value",
            ),
            Self::SecretFile { var, path, reason } => {
                write!(f, "cannot read file `{}` named by {var}: {reason}", path.display())
            }
            Self::Conflict { first, second } => write!(
                f,
                "{first} and {second} are both set, to different values; remove one"
            ),
            Self::NotUnicode { var } => write!(f, "variable {var} is not valid UTF-8"),
            Self::FileSyntax {
                path,
                position,
                detail,
            } => {
                write!(f, "cannot parse `{}`", path.display())?;
                if let Some((line, column)) = position {
                    write!(f, " at line {line}, column {column}")?;
                }
                write!(f, ": {detail}")
            }
            Self::DotEnv { path, detail } => write!(f, "cannot read `{}`: {detail}", path.display()),
            Self::UnknownAppEnv => f.write_str(
                "names no known environment; expected one of development, test, staging, production (or dev, stage, prod)",
            ),
            Self::Invalid { detail } => f.write_str(detail),
        }
    }
}
