//! The deployment environment a service runs in.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The environment named by `APP_ENV`: one artefact runs in all four, only configuration differs.
///
/// It selects `config/{env}.toml`, whether a `.env` file is read (development and test only) and
/// whether the production guard applies to secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppEnv {
    /// A developer's machine. The default when `APP_ENV` is unset.
    #[default]
    Development,
    /// Automated tests and CI.
    Test,
    /// Pre-production, deployed like production.
    Staging,
    /// Serving real users: secrets are checked against the production guard.
    Production,
}

impl AppEnv {
    /// Every environment, in promotion order.
    pub const ALL: [Self; 4] = [
        Self::Development,
        Self::Test,
        Self::Staging,
        Self::Production,
    ];

    /// The canonical lowercase name, as used in `APP_ENV` and `config/{name}.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }

    /// Whether a `.env` file is read: only on developer machines and in tests, never where real
    /// secrets are injected by the platform.
    pub fn reads_dotenv(self) -> bool {
        matches!(self, Self::Development | Self::Test)
    }
}

impl fmt::Display for AppEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `APP_ENV` value that names no known environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown environment `{0}`: expected one of development, test, staging, production")]
pub struct UnknownAppEnv(pub String);

impl FromStr for AppEnv {
    type Err = UnknownAppEnv;

    /// Accepts the canonical names in any case, and the short forms `dev`, `stage` and `prod`
    /// that the platform's existing deploy scripts use.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "staging" | "stage" => Ok(Self::Staging),
            "production" | "prod" => Ok(Self::Production),
            _ => Err(UnknownAppEnv(s.to_owned())),
        }
    }
}
