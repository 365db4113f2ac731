//! Layering, typing, validation and the production guard.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::{Num, Value};
use figment::{Figment, Metadata, Profile, Provider};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::report::{ConfigError, Problem, ProblemKind};
use crate::schema::{ConfigSchema, KeySpec, Secrecy, ValueKind};
use crate::sources::{Found, VarLayer, VarLayers};
use crate::{AppEnv, REDACTED};

/// Loads a config type from defaults, files, `.env` and environment variables.
///
/// Layers, lowest precedence first:
/// 1. defaults in the type (`#[serde(default)]`);
/// 2. `config/default.toml`;
/// 3. `config/{env}.toml`, where `{env}` comes from `APP_ENV` (default `development`);
/// 4. a `.env` file, in development and test only; it never overrides a variable that is set;
/// 5. environment variables, each directly or as `<NAME>_FILE` naming a file that holds it.
///
/// ```
/// use groundwork_config::{Loader, SecretUrl};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Settings {
///     database_url: SecretUrl,
///     #[serde(default = "default_port")]
///     port: u16,
/// }
/// fn default_port() -> u16 { 8080 }
///
/// let settings: Settings = Loader::new()
///     .vars([("DATABASE_URL", "postgres://app:pw@db/app")])
///     .load()?;
/// assert_eq!(settings.port, 8080);
/// assert_eq!(settings.database_url.to_string(), "postgres://app:***@db/app");
/// # Ok::<(), groundwork_config::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Loader {
    vars: Option<Vec<(String, String)>>,
    config_dir: PathBuf,
    dotenv: Option<PathBuf>,
    app_env: Option<AppEnv>,
}

impl Default for Loader {
    fn default() -> Self {
        Self::new()
    }
}

impl Loader {
    /// A loader that reads the process environment, `./config/` and `./.env`.
    pub fn new() -> Self {
        Self {
            vars: None,
            config_dir: PathBuf::from("config"),
            dotenv: Some(PathBuf::from(".env")),
            app_env: None,
        }
    }

    /// Reads these variables instead of the process environment, so tests need not touch it.
    #[must_use]
    pub fn vars<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.vars = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Reads `default.toml` and `{env}.toml` from this directory instead of `./config`.
    #[must_use]
    pub fn config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config_dir = dir.into();
        self
    }

    /// Reads this `.env` file instead of `./.env` (in development and test only).
    #[must_use]
    pub fn dotenv(mut self, path: impl Into<PathBuf>) -> Self {
        self.dotenv = Some(path.into());
        self
    }

    /// Reads no `.env` file at all.
    #[must_use]
    pub fn no_dotenv(mut self) -> Self {
        self.dotenv = None;
        self
    }

    /// Uses this environment instead of the one named by `APP_ENV`.
    #[must_use]
    pub fn app_env(mut self, env: AppEnv) -> Self {
        self.app_env = Some(env);
        self
    }

    fn environment(&self) -> VarLayer {
        match &self.vars {
            Some(vars) => VarLayer::from_pairs(vars.iter().cloned()),
            None => VarLayer::from_process(),
        }
    }

    /// The environment this loader would load for: the one set with [`Loader::app_env`], else
    /// `APP_ENV`, else `NODE_ENV` (for services moving over from Node.js), else development.
    pub fn resolve_app_env(&self) -> Result<AppEnv, ConfigError> {
        let layers = VarLayers(vec![self.environment()]);
        self.resolve_env_in(&layers)
            .map_err(|problem| ConfigError::new(AppEnv::default(), vec![*problem]))
    }

    fn resolve_env_in(&self, layers: &VarLayers) -> Result<AppEnv, Box<Problem>> {
        if let Some(env) = self.app_env {
            return Ok(env);
        }
        for var in ["APP_ENV", "NODE_ENV"] {
            let value = layers.plain(var).map_err(|kind| {
                Box::new(Problem {
                    key: String::new(),
                    env_var: Some(var.to_owned()),
                    source: None,
                    kind,
                })
            })?;
            if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
                return value.parse().map_err(|_| {
                    Box::new(Problem {
                        key: String::new(),
                        env_var: Some(var.to_owned()),
                        source: Some(format!("environment variable `{var}`")),
                        kind: ProblemKind::UnknownAppEnv,
                    })
                });
            }
        }
        Ok(AppEnv::Development)
    }

    /// Loads `T`, or reports every problem found.
    pub fn load<T: DeserializeOwned + JsonSchema>(&self) -> Result<T, ConfigError> {
        let schema = ConfigSchema::of::<T>();
        let mut layers = VarLayers(vec![self.environment()]);
        let env = self
            .resolve_env_in(&layers)
            .map_err(|problem| ConfigError::new(AppEnv::default(), vec![*problem]))?;
        let mut problems = Vec::new();

        let mut figment = Figment::new();
        for name in ["default".to_owned(), env.as_str().to_owned()] {
            let path = self.config_dir.join(format!("{name}.toml"));
            match check_toml(&path) {
                Ok(true) => figment = figment.merge(Toml::file_exact(&path)),
                Ok(false) => {}
                Err(kind) => problems.push(Problem {
                    key: String::new(),
                    env_var: None,
                    source: None,
                    kind,
                }),
            }
        }

        if env.reads_dotenv()
            && let Some(path) = &self.dotenv
        {
            match VarLayer::from_dotenv(path) {
                Ok(Some(layer)) => layers.0.push(layer),
                Ok(None) => {}
                Err(kind) => problems.push(Problem {
                    key: String::new(),
                    env_var: None,
                    source: None,
                    kind,
                }),
            }
        }

        for key in schema.keys() {
            match layers.find(key) {
                Ok(Some(found)) => match typed_value(key, &found.raw) {
                    Ok(value) => figment = figment.merge(KeyValue::new(key, value, &found)),
                    Err(kind) => {
                        problems.push(problem_at(key, Some(found.origin.to_string()), kind));
                    }
                },
                Ok(None) => {}
                Err(kind) => problems.push(problem_at(key, None, kind)),
            }
        }

        // Keys whose variable could not be read are already reported; checking what lies below
        // them would report a second, misleading problem for the same key.
        let reported: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
        for key in schema.keys() {
            if !reported.contains(&key.dotted()) {
                validate(&figment, key, env, &mut problems);
            }
        }
        if problems.is_empty()
            && let Ok(config) = figment.extract::<T>()
        {
            return Ok(config);
        }
        // Types that parse their own text (`#[serde(try_from = "String")]`, custom `Deserialize`)
        // refuse a value only when deserialized; their problems join the report above.
        deserialize_others::<T>(&figment, &schema, &mut problems);
        // Problems not tied to a key first, then the keys' in schema order.
        let position = |problem: &Problem| {
            schema
                .keys()
                .iter()
                .position(|key| key.dotted() == problem.key)
                .map_or(0, |index| index + 1)
        };
        problems.sort_by_key(position);
        Err(ConfigError::new(env, problems))
    }
}

/// Finds the values that fail to deserialize besides the keys already in `problems`, and adds a
/// problem for each, so a value that only the config type's own parser refuses is in the one
/// report next to the schema's problems.
///
/// Deserialization stops at its first error, so the merged configuration is deserialized again
/// with each reported key taken out, until it succeeds or fails on a key that cannot be taken out
/// (a missing field). Keys taken out fall back to their defaults, so one bad value never hides
/// another.
fn deserialize_others<T: DeserializeOwned>(
    figment: &Figment,
    schema: &ConfigSchema,
    problems: &mut Vec<Problem>,
) {
    let Ok(mut merged) = figment.extract::<Value>() else {
        return;
    };
    for problem in problems.iter() {
        remove_path(&mut merged, &problem.key);
    }
    // Each round takes out one key at least, so the keys bound the rounds.
    for _ in 0..=schema.keys().len() {
        let Err(error) =
            Figment::from(figment::providers::Serialized::defaults(&merged)).extract::<T>()
        else {
            return;
        };
        let mut removed = false;
        for error in error {
            let mut path = error.path.clone();
            if let figment::error::Kind::MissingField(field) = &error.kind {
                path.push(field.to_string());
            }
            let dotted = path.join(".");
            if problems.iter().any(|problem| problem.key == dotted) {
                continue;
            }
            removed |= remove_path(&mut merged, &dotted);
            problems.push(deserialize_problem(figment, schema, &error));
        }
        if !removed {
            return;
        }
    }
}

/// Takes the value at a dotted path out of a table; `false` when there is none.
fn remove_path(value: &mut Value, dotted: &str) -> bool {
    if dotted.is_empty() {
        return false;
    }
    let mut current = value;
    let mut segments = dotted.split('.').peekable();
    while let Some(segment) = segments.next() {
        let Value::Dict(_, dict) = current else {
            return false;
        };
        if segments.peek().is_none() {
            return dict.remove(segment).is_some();
        }
        let Some(next) = dict.get_mut(segment) else {
            return false;
        };
        current = next;
    }
    false
}

fn problem_at(key: &KeySpec, source: Option<String>, kind: ProblemKind) -> Problem {
    Problem {
        key: key.dotted(),
        env_var: Some(key.env_name().to_owned()),
        source,
        kind,
    }
}

/// Parses a TOML file up front, so a syntax error is reported with its position but without the
/// offending line, which may hold a secret. `Ok(false)` when the file does not exist.
fn check_toml(path: &Path) -> Result<bool, ProblemKind> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => {
            return Err(ProblemKind::FileSyntax {
                path: path.to_owned(),
                position: None,
                detail: error.to_string(),
            });
        }
    };
    match toml::from_str::<toml::Table>(&text) {
        Ok(_) => Ok(true),
        Err(error) => {
            let position = error.span().map(|span| line_column(&text, span.start));
            Err(ProblemKind::FileSyntax {
                path: path.to_owned(),
                position,
                detail: error.message().to_owned(),
            })
        }
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Turns a string from the environment into a value of the key's type, so `PORT=8080` is a
/// number and a secret of digits stays a string. An empty value for an optional key means "not
/// set", as `KEY=` lines in `.env` files and compose files are meant.
fn typed_value(key: &KeySpec, raw: &str) -> Result<Value, ProblemKind> {
    if key.nullable && raw.is_empty() {
        return Ok(Value::Empty(
            figment::value::Tag::Default,
            figment::value::Empty::None,
        ));
    }
    typed_item(&key.kind, raw)
}

fn typed_item(kind: &ValueKind, raw: &str) -> Result<Value, ProblemKind> {
    let wrong = |expected: &str| ProblemKind::WrongType {
        expected: expected.to_owned(),
        found: describe_raw(raw),
    };
    match kind {
        ValueKind::Integer { .. } => {
            let text = raw.trim();
            if let Ok(n) = text.parse::<i64>() {
                Ok(Value::from(n))
            } else if let Ok(n) = text.parse::<u64>() {
                Ok(Value::from(n))
            } else {
                Err(wrong("an integer"))
            }
        }
        ValueKind::Number { .. } => raw
            .trim()
            .parse::<f64>()
            .map(Value::from)
            .map_err(|_| wrong("a number")),
        ValueKind::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::from(true)),
            "false" | "0" | "no" | "off" => Ok(Value::from(false)),
            _ => Err(wrong("true or false")),
        },
        ValueKind::List(item) => {
            let trimmed = raw.trim();
            if trimmed.starts_with('[') {
                let json: serde_json::Value = serde_json::from_str(trimmed)
                    .map_err(|_| wrong("a JSON array or comma-separated list"))?;
                return Value::serialize(json).map_err(|_| wrong("a JSON array"));
            }
            let items = if trimmed.is_empty() {
                Vec::new()
            } else {
                trimmed
                    .split(',')
                    .map(|part| typed_item(item, part.trim()))
                    .collect::<Result<Vec<_>, _>>()?
            };
            Ok(Value::from(items))
        }
        ValueKind::Map => Err(ProblemKind::Invalid {
            detail: "a map cannot be set from one environment variable; set it in a TOML file"
                .to_owned(),
        }),
        // Enum values from the environment are read case-insensitively, as the OpenTelemetry
        // specification asks of its variables (`LOG_LEVEL=DEBUG`, `OTEL_TRACES_EXPORTER=OTLP`):
        // a value naming a variant in another case becomes that variant. Anything else is left for
        // validation to report with the allowed values.
        ValueKind::OneOf(allowed) => {
            let trimmed = raw.trim();
            let value = allowed
                .iter()
                .find(|variant| variant.eq_ignore_ascii_case(trimmed))
                .map_or_else(|| raw.to_owned(), Clone::clone);
            Ok(Value::from(value))
        }
        ValueKind::String | ValueKind::Other => Ok(Value::from(raw.to_owned())),
    }
}

/// Describes a raw string without repeating it.
fn describe_raw(raw: &str) -> String {
    if raw.is_empty() {
        "an empty string".to_owned()
    } else {
        format!("a {}-character string", raw.chars().count())
    }
}

/// One key's value from a variable or a `*_FILE`, as a figment provider whose metadata names
/// exactly that variable or file, so reports can say where a bad value came from.
struct KeyValue {
    path: String,
    value: Value,
    name: String,
}

impl KeyValue {
    fn new(key: &KeySpec, value: Value, found: &Found) -> Self {
        Self {
            path: key.dotted(),
            value,
            name: found.origin.to_string(),
        }
    }
}

impl Provider for KeyValue {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> figment::Result<figment::value::Map<Profile, figment::value::Dict>> {
        let nested = figment::util::nest(&self.path, self.value.clone());
        let dict = nested.into_dict().unwrap_or_default();
        Ok(Profile::Default.collect(dict))
    }
}

fn source_of(figment: &Figment, dotted: &str) -> Option<String> {
    let metadata = figment.find_metadata(dotted)?;
    Some(match &metadata.source {
        Some(figment::Source::File(path)) => format!("{} `{}`", metadata.name, path.display()),
        _ => metadata.name.to_string(),
    })
}

/// Checks one key of the merged configuration against its schema and, in production, the guard.
fn validate(figment: &Figment, key: &KeySpec, env: AppEnv, problems: &mut Vec<Problem>) {
    let dotted = key.dotted();
    let report = |kind| problem_at(key, source_of(figment, &dotted), kind);
    let Ok(value) = figment.find_value(&dotted) else {
        if key.required {
            problems.push(problem_at(key, None, ProblemKind::Missing));
        }
        return;
    };
    if matches!(value, Value::Empty(..)) {
        if !key.nullable {
            problems.push(report(ProblemKind::WrongType {
                expected: expected_of(&key.kind).to_owned(),
                found: "nothing (null)".to_owned(),
            }));
        }
        return;
    }
    if let Some(kind) = check_kind(&key.kind, &value) {
        problems.push(report(kind));
        return;
    }
    let Value::String(_, text) = &value else {
        return;
    };
    let guarded = key.secrecy != Secrecy::Plain && env == AppEnv::Production;
    if guarded && let Some(kind) = guard_secret(key, text) {
        problems.push(report(kind));
        return;
    }
    // Length limits on secrets are a production policy; on plain strings they always hold.
    if let Some(min) = key.min_length {
        let actual = text.chars().count();
        let applies = key.secrecy == Secrecy::Plain || guarded;
        if applies && (actual as u64) < min {
            problems.push(report(ProblemKind::TooShort { min, actual }));
        }
    }
}

fn expected_of(kind: &ValueKind) -> &'static str {
    match kind {
        ValueKind::String => "a string",
        ValueKind::Integer { .. } => "an integer",
        ValueKind::Number { .. } => "a number",
        ValueKind::Boolean => "true or false",
        ValueKind::OneOf(_) => "one of the allowed values",
        ValueKind::List(_) => "a list",
        ValueKind::Map => "a table",
        ValueKind::Other => "a value",
    }
}

fn describe_value(value: &Value) -> String {
    match value {
        Value::String(_, s) => describe_raw(s),
        Value::Char(..) => "a character".to_owned(),
        Value::Bool(..) => "a boolean".to_owned(),
        Value::Num(_, num) if num.to_i128().is_some() || num.to_u128().is_some() => {
            "an integer".to_owned()
        }
        Value::Num(..) => "a number".to_owned(),
        Value::Empty(..) => "nothing (null)".to_owned(),
        Value::Dict(..) => "a table".to_owned(),
        Value::Array(..) => "a list".to_owned(),
    }
}

fn num_as_f64(num: Num) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    // Bounds checks on config values need no 64-bit precision.
    num.to_f64()
        .or_else(|| num.to_i128().map(|n| n as f64))
        .or_else(|| num.to_u128().map(|n| n as f64))
}

fn check_kind(kind: &ValueKind, value: &Value) -> Option<ProblemKind> {
    let wrong = || {
        Some(ProblemKind::WrongType {
            expected: expected_of(kind).to_owned(),
            found: describe_value(value),
        })
    };
    let out_of_range = |n: f64, min: Option<f64>, max: Option<f64>| {
        let below = min.is_some_and(|min| n < min);
        let above = max.is_some_and(|max| n > max);
        (below || above).then_some(ProblemKind::OutOfRange { min, max })
    };
    match (kind, value) {
        (ValueKind::String, Value::String(..))
        | (ValueKind::Boolean, Value::Bool(..))
        | (ValueKind::Map, Value::Dict(..))
        | (ValueKind::Other, _) => None,
        (ValueKind::Integer { min, max }, Value::Num(_, num)) => {
            if num.to_i128().is_none() && num.to_u128().is_none() {
                return wrong();
            }
            out_of_range(num_as_f64(*num)?, *min, *max)
        }
        (ValueKind::Number { min, max }, Value::Num(_, num)) => {
            out_of_range(num_as_f64(*num)?, *min, *max)
        }
        (ValueKind::OneOf(allowed), Value::String(_, s)) => {
            (!allowed.contains(s)).then(|| ProblemKind::NotOneOf {
                allowed: allowed.clone(),
            })
        }
        (ValueKind::List(item), Value::Array(_, items)) => {
            items.iter().find_map(|entry| check_kind(item, entry))
        }
        _ => wrong(),
    }
}

/// Values that mean "fill me in": what `.env.example` ships and what tutorials say.
fn is_placeholder(key: &KeySpec, value: &str) -> bool {
    let lower = value.trim().to_ascii_lowercase();
    let example = key.example.as_ref().and_then(serde_json::Value::as_str);
    if example == Some(value) || crate::example::placeholder_for(key) == value {
        return true;
    }
    lower.starts_with("your_")
        || lower.starts_with("your-")
        || lower.starts_with('<')
        || lower.contains("changeme")
        || lower.contains("change_me")
        || lower.contains("change-me")
        || lower.contains("replace_me")
        || lower == REDACTED.to_ascii_lowercase()
        || matches!(
            lower.as_str(),
            "secret" | "password" | "placeholder" | "todo" | "xxx" | "example" | "test" | "default"
        )
}

/// The production guard: a secret must be present, not a placeholder and long enough.
fn guard_secret(key: &KeySpec, text: &str) -> Option<ProblemKind> {
    if key.secrecy == Secrecy::Url {
        let placeholder = is_placeholder(key, text)
            || url_secrets(text)
                .iter()
                .any(|secret| is_placeholder(key, secret));
        return placeholder.then_some(ProblemKind::Placeholder);
    }
    if text.trim().is_empty() {
        return Some(ProblemKind::EmptySecret);
    }
    if is_placeholder(key, text) {
        return Some(ProblemKind::Placeholder);
    }
    None
}

/// The secrets a URL carries, decoded: the password of its userinfo and the value of every secret
/// query parameter (`?password=`, `?sslpassword=`, ...; see [`crate::SECRET_QUERY_PARAMS`]).
fn url_secrets(text: &str) -> Vec<String> {
    let Ok(url) = url::Url::parse(text) else {
        return Vec::new();
    };
    let userinfo = url.password().map(|password| {
        url::form_urlencoded::parse(format!("p={}", password.replace('+', "%2B")).as_bytes())
            .next()
            .map_or_else(|| password.to_owned(), |(_, value)| value.into_owned())
    });
    let query = url
        .query_pairs()
        .filter(|(name, _)| crate::is_secret_query_param(name))
        .map(|(_, value)| value.into_owned());
    userinfo.into_iter().chain(query).collect()
}

/// One deserialization error as a problem, dropping the value: serde messages quote the
/// offending value, which may be a secret or a URL with a password.
fn deserialize_problem(
    figment: &Figment,
    schema: &ConfigSchema,
    error: &figment::Error,
) -> Problem {
    let dotted = error.path.join(".");
    let key = schema.find(&dotted);
    let sensitive = key.is_none_or(KeySpec::is_sensitive);
    let detail = match &error.kind {
        figment::error::Kind::InvalidType(actual, expected)
        | figment::error::Kind::InvalidValue(actual, expected) => {
            format!("expected {expected}, found {}", describe_actual(actual))
        }
        figment::error::Kind::MissingField(field) => format!("missing field `{field}`"),
        figment::error::Kind::Message(message) if !sensitive => {
            crate::redact::redact_url(message).into_owned()
        }
        figment::error::Kind::Message(_) => "invalid value".to_owned(),
        figment::error::Kind::UnknownVariant(_, allowed) => {
            format!("must be one of: {}", allowed.join(", "))
        }
        other if !sensitive => crate::redact::redact_url(&other.to_string()).into_owned(),
        _ => "invalid value".to_owned(),
    };
    let source = source_of(figment, &dotted);
    Problem {
        env_var: key.map(|k| k.env_name().to_owned()),
        key: dotted,
        source,
        kind: ProblemKind::Invalid { detail },
    }
}

fn describe_actual(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a number",
        Actual::Char(_) => "a character",
        Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit | Actual::Option => "nothing",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        _ => "another kind of value",
    }
}
