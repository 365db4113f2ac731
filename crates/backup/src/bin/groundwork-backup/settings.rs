//! Settings that come from the command line, the environment or `--env-file`: the storage, the
//! source name, identities, and the `restore_command` a point-in-time restore writes.

use std::path::PathBuf;

use groundwork_backup::{BackupError, Identity, S3Options, Storage};
use secrecy::SecretString;

use crate::args::Global;

/// Settings from `--env-file`, consulted for what neither the command line nor the environment
/// gives.
pub(crate) struct Settings {
    file: std::collections::HashMap<String, String>,
}

impl Settings {
    pub(crate) fn load(path: Option<&std::path::Path>) -> Result<Self, BackupError> {
        let Some(path) = path else {
            return Ok(Self {
                file: std::collections::HashMap::new(),
            });
        };
        let text = std::fs::read_to_string(path).map_err(|source| BackupError::Io {
            action: "read env file",
            path: path.display().to_string(),
            source,
        })?;
        // The reader's errors name a line, never its content.
        let pairs =
            groundwork_config::parse_env_file(&text).map_err(|err| BackupError::Config {
                what: "env file",
                reason: format!("{}: {}", path.display(), groundwork_cli::chain(&err)),
            })?;
        Ok(Self {
            file: pairs.into_iter().collect(),
        })
    }

    /// A setting from the environment, else from the env file; empty values count as unset.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.file.get(name).cloned())
            .filter(|v| !v.is_empty())
    }

    /// A secret from `NAME`, else from the file named by `NAME_FILE` (trailing newline removed).
    pub(crate) fn secret(&self, name: &str) -> Result<Option<SecretString>, BackupError> {
        if let Some(value) = self.get(name) {
            return Ok(Some(SecretString::from(value)));
        }
        let Some(file) = self.get(&format!("{name}_FILE")) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&file).map_err(|source| BackupError::Io {
            action: "read the secret file named by a _FILE setting",
            path: file.clone(),
            source,
        })?;
        Ok(Some(SecretString::from(
            text.trim_end_matches(['\n', '\r']).to_owned(),
        )))
    }

    pub(crate) fn path(&self, given: Option<&PathBuf>, name: &str) -> Option<PathBuf> {
        given.cloned().or_else(|| self.get(name).map(PathBuf::from))
    }
}

pub(crate) fn open_storage(global: &Global, settings: &Settings) -> Result<Storage, BackupError> {
    let Some(url) = global
        .storage
        .clone()
        .or_else(|| settings.get("GROUNDWORK_BACKUP_STORAGE"))
    else {
        return Err(storage_missing());
    };
    // Binaries read the standard AWS credential variables; the library reads no environment.
    let flag = |given: bool, name: &str| {
        given
            || settings
                .get(name)
                .is_some_and(|v| matches!(v.as_str(), "1" | "true"))
    };
    let s3 = S3Options {
        endpoint: global
            .s3_endpoint
            .clone()
            .or_else(|| settings.get("AWS_ENDPOINT_URL")),
        region: global
            .s3_region
            .clone()
            .or_else(|| settings.get("AWS_REGION")),
        access_key_id: settings.get("AWS_ACCESS_KEY_ID"),
        secret_access_key: settings.secret("AWS_SECRET_ACCESS_KEY")?,
        session_token: settings.secret("AWS_SESSION_TOKEN")?,
        allow_http: flag(global.s3_allow_http, "GROUNDWORK_BACKUP_S3_ALLOW_HTTP"),
        path_style: flag(global.s3_path_style, "GROUNDWORK_BACKUP_S3_PATH_STYLE"),
    };
    Storage::open(&url, &s3)
}

pub(crate) fn source_of(
    given: Option<&String>,
    settings: &Settings,
) -> Result<String, BackupError> {
    given
        .cloned()
        .or_else(|| settings.get("GROUNDWORK_BACKUP_SOURCE"))
        .ok_or_else(|| BackupError::Config {
            what: "source name",
            reason: "pass --source or set GROUNDWORK_BACKUP_SOURCE: the name the cluster's \
                     archive is filed under"
                .into(),
        })
}

pub(crate) fn identities_of(
    given: Option<&PathBuf>,
    settings: &Settings,
) -> Result<Vec<Identity>, BackupError> {
    match settings.path(given, "GROUNDWORK_BACKUP_IDENTITY_FILE") {
        Some(path) => Identity::read_file(&path),
        None => Ok(Vec::new()),
    }
}

/// A word for `sh`, single-quoted.
pub(crate) fn shell_word(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The `restore_command` that fetches from the storage this command uses. It holds no secret:
/// credentials come from the env file (when one was given) or the server's environment.
pub(crate) fn restore_command(
    global: &Global,
    settings: &Settings,
    source: &str,
    identity_file: Option<&PathBuf>,
) -> Result<String, BackupError> {
    let absolute = |path: &std::path::Path| {
        std::path::absolute(path).map_err(|source| BackupError::Io {
            action: "resolve",
            path: path.display().to_string(),
            source,
        })
    };
    let exe = std::env::current_exe().map_err(|source| BackupError::Io {
        action: "find the groundwork-backup program",
        path: "the running executable".into(),
        source,
    })?;
    let mut words = vec![shell_word(&exe.display().to_string())];
    if let Some(file) = &global.env_file {
        words.push("--env-file".into());
        words.push(shell_word(&absolute(file)?.display().to_string()));
    }
    if let Some(url) = global
        .storage
        .clone()
        .or_else(|| settings.get("GROUNDWORK_BACKUP_STORAGE"))
    {
        words.push("--storage".into());
        words.push(shell_word(&url));
    }
    for (flag, value) in [
        ("--s3-endpoint", global.s3_endpoint.as_ref()),
        ("--s3-region", global.s3_region.as_ref()),
    ] {
        if let Some(value) = value {
            words.push(flag.into());
            words.push(shell_word(value));
        }
    }
    if global.s3_allow_http {
        words.push("--s3-allow-http".into());
    }
    if global.s3_path_style {
        words.push("--s3-path-style".into());
    }
    words.extend(["postgres".into(), "wal-fetch".into(), "--source".into()]);
    words.push(shell_word(source));
    if let Some(file) = identity_file {
        words.push("--identity-file".into());
        words.push(shell_word(&absolute(file)?.display().to_string()));
    }
    words.extend(["%f".into(), "%p".into()]);
    Ok(words.join(" "))
}

pub(crate) fn storage_missing() -> BackupError {
    BackupError::Config {
        what: "storage url",
        reason:
            "pass --storage or set GROUNDWORK_BACKUP_STORAGE (file:///dir or s3://bucket/prefix)"
                .into(),
    }
}
