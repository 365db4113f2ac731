//! age keys: public recipients for backups, private identities for restores.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use secrecy::ExposeSecret;

use crate::BackupError;

/// An age x25519 public key (`age1...`). A backup encrypted to it can only be restored with the
/// matching [`Identity`], which the backup host never needs.
#[derive(Clone)]
pub struct Recipient(age::x25519::Recipient);

impl Recipient {
    /// Parses an `age1...` public key.
    pub fn parse(text: &str) -> Result<Self, BackupError> {
        age::x25519::Recipient::from_str(text.trim())
            .map(Self)
            .map_err(|reason| {
                BackupError::config(
                    "age recipient",
                    format!("{reason}; expected an x25519 public key starting with age1 (`age-keygen -y key.txt` prints it)"),
                )
            })
    }

    pub(crate) fn inner(&self) -> &age::x25519::Recipient {
        &self.0
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({})", self.0)
    }
}

/// An age x25519 private key (`AGE-SECRET-KEY-1...`). Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Identity(age::x25519::Identity);

impl Identity {
    /// A new random key pair, e.g. for tests; [`Identity::public`] is what backups encrypt to.
    pub fn generate() -> Self {
        Self(age::x25519::Identity::generate())
    }

    /// Parses one `AGE-SECRET-KEY-1...` key.
    pub fn parse(text: &str) -> Result<Self, BackupError> {
        age::x25519::Identity::from_str(text.trim())
            .map(Self)
            // age's message does not quote the key.
            .map_err(|reason| {
                BackupError::config(
                    "age identity",
                    format!(
                        "{reason}; expected an x25519 private key starting with AGE-SECRET-KEY-1"
                    ),
                )
            })
    }

    /// Reads every key of an age identity file (as written by `age-keygen`: `#` comments,
    /// one `AGE-SECRET-KEY-1...` per line).
    pub fn read_file(path: &Path) -> Result<Vec<Self>, BackupError> {
        let text = std::fs::read_to_string(path).map_err(|source| BackupError::Io {
            action: "read age identity file",
            path: path.display().to_string(),
            source,
        })?;
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(Self::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(BackupError::config(
                "age identity",
                format!("{} holds no AGE-SECRET-KEY-1 line", path.display()),
            ));
        }
        Ok(keys)
    }

    /// The public key that backups are encrypted to.
    pub fn public(&self) -> Recipient {
        Recipient(self.0.to_public())
    }

    /// The private key in age's text form, for writing an identity file.
    pub fn to_secret_string(&self) -> String {
        self.0.to_string().expose_secret().to_owned()
    }

    pub(crate) fn inner(&self) -> &age::x25519::Identity {
        &self.0
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Identity(public: {}, private: [redacted])",
            self.0.to_public()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{Identity, Recipient};

    #[test]
    fn identity_debug_shows_only_the_public_key() {
        let identity = Identity::generate();
        let secret = identity.to_secret_string();
        let debug = format!("{identity:?}");
        assert!(!debug.contains(&secret));
        assert!(debug.contains(&identity.public().to_string()));
        assert!(Identity::parse(&secret).is_ok());
    }

    #[test]
    fn malformed_keys_are_refused_without_quoting_them() {
        let err = Identity::parse("AGE-SECRET-KEY-1NOTAKEY")
            .err()
            .map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("AGE-SECRET-KEY-1"), "{err}");
        assert!(!err.contains("NOTAKEY"), "{err}");
        assert!(Recipient::parse("age1nope").is_err());
    }
}
