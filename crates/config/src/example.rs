//! `.env.example`, generated from the config type so the two cannot disagree.

use std::fmt::Write as _;

use schemars::JsonSchema;
use serde_json::Value as Json;

use crate::schema::{ConfigSchema, KeySpec, Secrecy, ValueKind};

/// Renders `.env.example` for `T`: every key, with its description, whether it is required, and a
/// fake but well-formed value. Loading the result in development succeeds; in production the
/// guard refuses its secret placeholders.
///
/// ```
/// use groundwork_config::{Secret, env_example};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Settings {
///     /// Signs session tokens.
///     #[schemars(length(min = 32))]
///     jwt_secret: Secret,
/// }
///
/// let text = env_example::<Settings>();
/// assert!(text.contains("# Signs session tokens."));
/// assert!(text.contains("JWT_SECRET=your_jwt_secret_"));
/// ```
pub fn env_example<T: JsonSchema>() -> String {
    env_example_generated_by::<T>("cargo xtask env-example")
}

/// [`env_example`] whose first line names `command` as the one that regenerates the file, for
/// services with their own way of writing it (e.g. `UPDATE_ENV_EXAMPLE=1 cargo test`).
///
/// ```
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Settings {
///     /// Port the HTTP server listens on.
///     port: u16,
/// }
///
/// let text = groundwork_config::env_example_generated_by::<Settings>("make env");
/// assert!(text.starts_with("# Generated from the service's config type by `make env`;"));
/// ```
pub fn env_example_generated_by<T: JsonSchema>(command: &str) -> String {
    render(&ConfigSchema::of::<T>(), command)
}

pub(crate) fn render(schema: &ConfigSchema, command: &str) -> String {
    let mut out =
        format!("# Generated from the service's config type by `{command}`; do not edit.\n");
    out.push_str(
        "# Copy to .env for local development. Real values never go into this file or into git.\n\
         # Any variable can instead be given as NAME_FILE=/path/to/file (Docker/Kubernetes secrets).\n\
         \n\
         # Deployment environment: development, test, staging or production. Selects\n\
         # config/{env}.toml; .env is read only in development and test.\n\
         APP_ENV=development\n",
    );
    for key in schema.keys() {
        if key.kind == ValueKind::Map {
            continue;
        }
        out.push('\n');
        if let Some(description) = &key.description {
            for line in description.lines() {
                let _ = writeln!(out, "# {line}");
            }
        }
        let _ = writeln!(out, "# {}", notes(key));
        let _ = writeln!(out, "{}={}", key.env_name(), quote(&example_value(key)));
    }
    out
}

fn notes(key: &KeySpec) -> String {
    let mut notes = vec![if key.required {
        "required".to_owned()
    } else {
        "optional".to_owned()
    }];
    match key.secrecy {
        Secrecy::Secret => notes.push("secret".to_owned()),
        Secrecy::Url => notes.push("URL, password is secret".to_owned()),
        Secrecy::Plain => {}
    }
    if let Some(min) = key.min_length {
        notes.push(format!("at least {min} characters"));
    }
    if let ValueKind::OneOf(allowed) = &key.kind {
        notes.push(format!("one of {}", allowed.join(", ")));
    }
    if let Some(default) = key.default.as_ref()
        && key.secrecy == Secrecy::Plain
        && !default.is_null()
    {
        notes.push(format!("default {}", scalar(default)));
    }
    let others: Vec<&str> = key.env_names.iter().skip(1).map(String::as_str).collect();
    if !others.is_empty() {
        notes.push(format!("also {}", others.join(", ")));
    }
    format!("{} (key `{}`)", notes.join(", "), key.dotted())
}

/// The placeholder a secret gets in `.env.example`: obviously fake, and long enough to pass the
/// minimum length in development.
pub(crate) fn placeholder_for(key: &KeySpec) -> String {
    let mut value = format!("your_{}_here", key.path.join("_").to_ascii_lowercase());
    let min = usize::try_from(key.min_length.unwrap_or(0)).unwrap_or(usize::MAX);
    while value.chars().count() < min {
        value.push('x');
    }
    value
}

fn example_value(key: &KeySpec) -> String {
    if let Some(example) = &key.example {
        return scalar(example);
    }
    if key.secrecy == Secrecy::Secret {
        // An optional secret stays unset: a placeholder would switch on whatever the secret
        // enables (a client key, an API token) and fail there.
        return if key.required {
            placeholder_for(key)
        } else {
            String::new()
        };
    }
    if let Some(default) = key.default.as_ref().filter(|d| !d.is_null()) {
        return scalar(default);
    }
    if key.nullable && !key.required {
        // An optional key without a default stays unset, as its type means: `false` or `0` would
        // switch a behaviour off (an access log, an export timeout) that unset leaves on.
        return String::new();
    }
    match &key.kind {
        ValueKind::Integer { min, .. } | ValueKind::Number { min, .. } => {
            min.map_or_else(|| "0".to_owned(), |m| m.to_string())
        }
        ValueKind::Boolean => "false".to_owned(),
        ValueKind::OneOf(allowed) => allowed.first().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

fn scalar(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Quotes a value when a `.env` parser would otherwise misread it.
fn quote(value: &str) -> String {
    if value
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '#' | '"' | '\'' | '$' | '\\'))
    {
        format!("'{}'", value.replace('\'', ""))
    } else {
        value.to_owned()
    }
}
