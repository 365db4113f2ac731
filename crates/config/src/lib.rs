#![doc = include_str!("../README.md")]

mod app_env;
mod env_file;
mod example;
mod loader;
mod redact;
mod report;
mod schema;
mod secret;
mod sources;

pub use app_env::{AppEnv, UnknownAppEnv};
pub use env_file::{EnvFileError, export_line, parse_env_file, quote_env_value};
pub use example::{env_example, env_example_generated_by};
pub use loader::Loader;
pub use redact::{SECRET_QUERY_PARAMS, is_secret_query_param, redact_url, split_url_secrets};
pub use report::{ConfigError, Problem, ProblemKind};
pub use schema::{ConfigSchema, KeySpec, Secrecy, ValueKind};
pub use secret::{ExposeSecret, InvalidUrl, REDACTED, Secret, SecretUrl};

/// Loads `T` from `./config/`, `./.env` and the process environment; see [`Loader`].
pub fn load<T>() -> Result<T, ConfigError>
where
    T: serde::de::DeserializeOwned + schemars::JsonSchema,
{
    Loader::new().load()
}

/// Loads `T` like [`load`], or prints the report of every problem to stderr and exits the process
/// with code 2 — the behaviour a service wants at start-up, where a bad deployment must stop
/// loudly before it serves anything.
pub fn load_or_exit<T>() -> T
where
    T: serde::de::DeserializeOwned + schemars::JsonSchema,
{
    match load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    }
}
