//! Where string values come from: the process environment, a `.env` file, and `*_FILE` files.
//!
//! Parsing is pure: a [`VarLayer`] is a map of variable names to values, filled from the process
//! environment, from a `.env` file or, in tests, from a literal list.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::report::ProblemKind;
use crate::schema::KeySpec;

/// One layer of variables, highest precedence first in [`VarLayers`].
#[derive(Debug, Clone, Default)]
pub(crate) struct VarLayer {
    pub(crate) label: LayerLabel,
    pub(crate) vars: BTreeMap<String, String>,
    /// Variables present but not valid UTF-8: an error if a key needs one, ignored otherwise.
    pub(crate) not_unicode: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum LayerLabel {
    #[default]
    Environment,
    DotEnv(PathBuf),
}

impl VarLayer {
    pub(crate) fn from_process() -> Self {
        let mut layer = Self::default();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().map(str::to_owned) else {
                continue;
            };
            match value.into_string() {
                Ok(value) => {
                    layer.vars.insert(name, value);
                }
                Err(_) => {
                    layer.not_unicode.insert(name);
                }
            }
        }
        layer
    }

    pub(crate) fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            label: LayerLabel::Environment,
            vars: pairs.into_iter().collect(),
            not_unicode: BTreeSet::new(),
        }
    }

    /// Reads a `.env` file. A missing file is an empty layer; a line that does not parse is an
    /// error naming the file and line, never its content (it may hold a secret).
    pub(crate) fn from_dotenv(path: &Path) -> Result<Option<Self>, ProblemKind> {
        let problem = |detail: String| ProblemKind::DotEnv {
            path: path.to_owned(),
            detail,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(problem(error.to_string())),
        };
        let vars = crate::env_file::parse_env_file(&text)
            .map_err(|error| problem(error.to_string()))?
            .into_iter()
            .collect();
        Ok(Some(Self {
            label: LayerLabel::DotEnv(path.to_owned()),
            vars,
            not_unicode: BTreeSet::new(),
        }))
    }

    fn get(&self, name: &str) -> Result<Option<&str>, ProblemKind> {
        if self.not_unicode.contains(name) {
            return Err(ProblemKind::NotUnicode {
                var: name.to_owned(),
            });
        }
        Ok(self.vars.get(name).map(String::as_str))
    }
}

/// Where a string value came from, for error reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    Var {
        layer: LayerLabel,
        var: String,
    },
    File {
        layer: LayerLabel,
        var: String,
        path: PathBuf,
    },
}

impl fmt::Display for LayerLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => f.write_str("environment variable"),
            Self::DotEnv(path) => write!(f, "{} variable", path.display()),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Var { layer, var } => write!(f, "{layer} `{var}`"),
            Self::File { layer, var, path } => {
                write!(f, "file `{}` (named by {layer} `{var}`)", path.display())
            }
        }
    }
}

/// A raw string value found for a key.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) raw: String,
    pub(crate) origin: Origin,
}

/// The variable layers, highest precedence first: the process environment, then `.env`.
#[derive(Debug, Default)]
pub(crate) struct VarLayers(pub(crate) Vec<VarLayer>);

impl VarLayers {
    /// The value of a plain variable such as `APP_ENV`, from the highest layer that has it.
    pub(crate) fn plain(&self, name: &str) -> Result<Option<&str>, ProblemKind> {
        for layer in &self.0 {
            if let Some(value) = layer.get(name)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Finds the value of `key` from the first layer that sets any of its names, directly or
    /// through `<NAME>_FILE`. Two different values for one key within one layer are a conflict:
    /// guessing which one the operator meant would hide a mistake.
    pub(crate) fn find(&self, key: &KeySpec) -> Result<Option<Found>, ProblemKind> {
        for layer in &self.0 {
            let mut found: Vec<Found> = Vec::new();
            for name in &key.env_names {
                if let Some(raw) = layer.get(name)? {
                    found.push(Found {
                        raw: raw.to_owned(),
                        origin: Origin::Var {
                            layer: layer.label.clone(),
                            var: name.clone(),
                        },
                    });
                }
                let file_var = format!("{name}_FILE");
                if let Some(path) = layer.get(&file_var)? {
                    let path = PathBuf::from(path);
                    let raw = read_secret_file(&path).map_err(|error| ProblemKind::SecretFile {
                        var: file_var.clone(),
                        path: path.clone(),
                        reason: error.to_string(),
                    })?;
                    found.push(Found {
                        raw,
                        origin: Origin::File {
                            layer: layer.label.clone(),
                            var: file_var,
                            path,
                        },
                    });
                }
            }
            let Some(first) = found.first() else {
                continue;
            };
            if let Some(other) = found.iter().find(|other| other.raw != first.raw) {
                return Err(ProblemKind::Conflict {
                    first: first.origin.to_string(),
                    second: other.origin.to_string(),
                });
            }
            return Ok(found.into_iter().next());
        }
        Ok(None)
    }
}

/// Reads a mounted secret. Orchestrators and editors end such files with a newline that is never
/// part of the secret, so one trailing `\n` or `\r\n` is removed; other whitespace is kept.
fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let mut content = std::fs::read_to_string(path)?;
    if content.ends_with('\n') {
        content.pop();
        if content.ends_with('\r') {
            content.pop();
        }
    }
    Ok(content)
}
