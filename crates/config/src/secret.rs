//! Secret values that never print.
//!
//! [`Secret`] holds a string such as a JWT signing key; [`SecretUrl`] holds a connection URL whose
//! password is secret but whose host and database are useful in logs. Both redact themselves in
//! `Debug`, `Display` and serialization, so a config struct that derives `Debug` and `Serialize` can
//! be logged whole.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
pub use secrecy::ExposeSecret;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What every redacted value prints as.
pub const REDACTED: &str = "[REDACTED]";

/// A secret string: a password, an API key, a signing key.
///
/// The value is only reachable through [`ExposeSecret::expose_secret`], and is zeroized on drop.
/// A field of this type is marked secret in the schema, so [`crate::Loader`] applies the
/// production guard to it and `.env.example` gets a placeholder for it.
///
/// ```
/// use groundwork_config::{ExposeSecret, Secret};
///
/// let key = Secret::from("correct horse battery staple");
/// assert_eq!(format!("{key:?}"), "[REDACTED]");
/// assert_eq!(key.expose_secret(), "correct horse battery staple");
/// ```
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// The number of characters (not bytes) in the secret, for length policies.
    pub fn char_len(&self) -> usize {
        self.0.expose_secret().chars().count()
    }
}

impl ExposeSecret<str> for Secret {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(SecretString::from(value))
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(SecretString::from(value))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

impl JsonSchema for Secret {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "writeOnly": true, "x-secret": true })
    }
}

/// A connection URL whose password is secret: `postgres://app:s3cr3t@db:5432/app`.
///
/// It displays as `postgres://app:***@db:5432/app`, so the host and database can be logged and
/// shown in health output. `Display`, `Debug` and `Serialize` all print [`crate::redact_url`]'s
/// form, which also masks secret query parameters (`?password=***`). The full URL is reachable through [`ExposeSecret::expose_secret`].
/// Deserializing checks that the value parses as a URL; the error never repeats the value.
///
/// ```
/// use groundwork_config::{ExposeSecret, SecretUrl};
///
/// let url: SecretUrl = "postgres://app:s3cr3t@db:5432/app".parse()?;
/// assert_eq!(url.to_string(), "postgres://app:***@db:5432/app");
/// assert_eq!(url.expose_secret(), "postgres://app:s3cr3t@db:5432/app");
/// # Ok::<(), groundwork_config::InvalidUrl>(())
/// ```
#[derive(Clone)]
pub struct SecretUrl {
    full: SecretString,
    redacted: String,
}

/// A string that is not a valid URL. It carries no part of the string, which may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid URL ({reason})")]
pub struct InvalidUrl {
    reason: url::ParseError,
}

pub(crate) fn invalid_url(reason: url::ParseError) -> InvalidUrl {
    InvalidUrl { reason }
}

impl SecretUrl {
    /// The URL with its password and secret query parameters replaced by `***`, safe to log.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// Whether the URL carries a secret at all: a password in its userinfo or a secret query
    /// parameter such as `?password=` (see [`crate::SECRET_QUERY_PARAMS`]).
    pub fn has_password(&self) -> bool {
        crate::redact::url_has_secret(self.full.expose_secret())
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = InvalidUrl;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        url::Url::parse(raw).map_err(invalid_url)?;
        Ok(Self {
            redacted: crate::redact::redact_url(raw).into_owned(),
            full: SecretString::from(raw.to_owned()),
        })
    }
}

impl ExposeSecret<str> for SecretUrl {
    fn expose_secret(&self) -> &str {
        self.full.expose_secret()
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted, f)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted)
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for SecretUrl {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "SecretUrl".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "uri", "x-secret-url": true })
    }
}
