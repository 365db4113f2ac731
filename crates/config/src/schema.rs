//! The keys a config type declares, read from its JSON schema.
//!
//! The user's config type derives [`schemars::JsonSchema`] next to `Deserialize`; doc comments
//! become descriptions, `#[schemars(example = ..)]` example values, `#[serde(default)]` defaults,
//! `#[schemars(length(min = 32))]` and `#[schemars(range(..))]` limits, and
//! `#[schemars(extend("x-env" = "NAME"))]` an extra environment variable name. From that one
//! description the loader knows which variables to read and how to type them, the validator knows
//! what to check, and `.env.example` is generated — so the three cannot drift apart.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::Value as Json;

/// What kind of value a key holds, as far as loading from strings is concerned.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ValueKind {
    /// Free text.
    String,
    /// A whole number, with the bounds of its Rust type or of `#[schemars(range(..))]`.
    Integer {
        /// Smallest allowed value.
        min: Option<f64>,
        /// Largest allowed value.
        max: Option<f64>,
    },
    /// A floating-point number.
    Number {
        /// Smallest allowed value.
        min: Option<f64>,
        /// Largest allowed value.
        max: Option<f64>,
    },
    /// `true` or `false`.
    Boolean,
    /// One of a fixed set of strings (a fieldless enum).
    OneOf(Vec<String>),
    /// A list; from an environment variable either a JSON array or comma-separated items.
    List(Box<ValueKind>),
    /// A map with keys chosen by the user; settable from files only.
    Map,
    /// Anything else; passed through untyped and checked only by deserialization.
    Other,
}

/// How a key's value must be protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Secrecy {
    /// An ordinary value.
    Plain,
    /// A [`crate::Secret`]: never printed, guarded in production.
    Secret,
    /// A [`crate::SecretUrl`]: printed with its password masked.
    Url,
}

/// One leaf key of a config type.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KeySpec {
    /// The serde field names from the root, e.g. `["database", "url"]`.
    pub path: Vec<String>,
    /// How the value is typed and bounded.
    pub kind: ValueKind,
    /// Whether deserialization fails without a value (no default, not an `Option`).
    pub required: bool,
    /// Whether `null`/`None` is accepted.
    pub nullable: bool,
    /// Whether the value is secret.
    pub secrecy: Secrecy,
    /// Minimum length in characters, from `#[schemars(length(min = ..))]`.
    pub min_length: Option<u64>,
    /// The field's doc comment.
    pub description: Option<String>,
    /// The first `#[schemars(example = ..)]` value.
    pub example: Option<Json>,
    /// The serde default, when schemars could compute it.
    pub default: Option<Json>,
    /// Environment variable names that set this key, in order of preference.
    pub env_names: Vec<String>,
}

impl KeySpec {
    /// The dotted key path, as used in TOML files and error reports: `database.url`.
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }

    /// The environment variable name `.env.example` and error reports suggest.
    pub fn env_name(&self) -> &str {
        self.env_names.first().map_or("", String::as_str)
    }

    /// Whether the value must never be printed in full.
    pub fn is_sensitive(&self) -> bool {
        self.secrecy != Secrecy::Plain
    }
}

/// Every leaf key of a config type, in declaration order of the schema.
#[derive(Debug, Clone)]
pub struct ConfigSchema {
    keys: Vec<KeySpec>,
}

impl ConfigSchema {
    /// Reads the schema of `T`.
    pub fn of<T: JsonSchema>() -> Self {
        let generator = SchemaSettings::default()
            .with(|settings| settings.inline_subschemas = true)
            .into_generator();
        let root = generator.into_root_schema_for::<T>();
        Self::from_json(root.as_value())
    }

    fn from_json(root: &Json) -> Self {
        let mut keys = Vec::new();
        walk(root, &mut Vec::new(), true, &mut keys);
        assign_env_names(&mut keys);
        Self { keys }
    }

    /// The leaf keys.
    pub fn keys(&self) -> &[KeySpec] {
        &self.keys
    }

    /// The key at a dotted path, if the schema declares one.
    pub fn find(&self, dotted: &str) -> Option<&KeySpec> {
        self.keys.iter().find(|key| key.dotted() == dotted)
    }
}

/// A schema node with `Option`/nullable wrappers removed.
struct Node<'a> {
    schema: &'a Json,
    nullable: bool,
}

fn unwrap_nullable(schema: &Json) -> Node<'_> {
    let is_null = |s: &Json| s.get("type").and_then(Json::as_str) == Some("null");
    for combinator in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(combinator).and_then(Json::as_array) {
            let non_null: Vec<&Json> = options.iter().filter(|s| !is_null(s)).collect();
            if non_null.len() == 1 && options.len() == 2 {
                let inner = unwrap_nullable(non_null[0]);
                return Node {
                    schema: inner.schema,
                    nullable: true,
                };
            }
        }
    }
    let nullable = match schema.get("type") {
        Some(Json::Array(types)) => types.iter().any(|t| t == "null"),
        _ => false,
    };
    Node { schema, nullable }
}

fn primary_type(schema: &Json) -> Option<&str> {
    match schema.get("type") {
        Some(Json::String(t)) => Some(t),
        Some(Json::Array(types)) => types.iter().filter_map(Json::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

fn walk(schema: &Json, path: &mut Vec<String>, required: bool, out: &mut Vec<KeySpec>) {
    let node = unwrap_nullable(schema);
    let inner = node.schema;
    if let Some(properties) = inner.get("properties").and_then(Json::as_object) {
        let required_names: Vec<&str> = inner
            .get("required")
            .and_then(Json::as_array)
            .map(|names| names.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        for (name, child) in properties {
            path.push(name.clone());
            let child_required =
                required && !node.nullable && required_names.contains(&name.as_str());
            walk(child, path, child_required, out);
            path.pop();
        }
        return;
    }
    if path.is_empty() {
        return;
    }
    out.push(KeySpec {
        path: path.clone(),
        kind: kind_of(inner),
        required: required && !node.nullable,
        nullable: node.nullable,
        secrecy: secrecy_of(inner),
        min_length: inner.get("minLength").and_then(Json::as_u64),
        description: schema
            .get("description")
            .or_else(|| inner.get("description"))
            .and_then(Json::as_str)
            .map(str::to_owned),
        example: schema
            .get("examples")
            .or_else(|| inner.get("examples"))
            .and_then(Json::as_array)
            .and_then(|examples| examples.first().cloned()),
        default: schema
            .get("default")
            .or_else(|| inner.get("default"))
            .cloned(),
        env_names: inner
            .get("x-env")
            .or_else(|| schema.get("x-env"))
            .and_then(Json::as_str)
            .map(|name| vec![name.to_owned()])
            .unwrap_or_default(),
    });
}

fn secrecy_of(schema: &Json) -> Secrecy {
    if schema.get("x-secret").and_then(Json::as_bool) == Some(true) {
        Secrecy::Secret
    } else if schema.get("x-secret-url").and_then(Json::as_bool) == Some(true) {
        Secrecy::Url
    } else {
        Secrecy::Plain
    }
}

fn kind_of(schema: &Json) -> ValueKind {
    let bounds = |low: &str, high: &str| {
        (
            schema.get(low).and_then(Json::as_f64),
            schema.get(high).and_then(Json::as_f64),
        )
    };
    if let Some(variants) = enum_variants(schema) {
        return ValueKind::OneOf(variants);
    }
    match primary_type(schema) {
        Some("string") => ValueKind::String,
        Some("integer") => {
            let (min, max) = bounds("minimum", "maximum");
            ValueKind::Integer { min, max }
        }
        Some("number") => {
            let (min, max) = bounds("minimum", "maximum");
            ValueKind::Number { min, max }
        }
        Some("boolean") => ValueKind::Boolean,
        Some("array") => {
            let items = schema.get("items").map_or(ValueKind::Other, |items| {
                kind_of(unwrap_nullable(items).schema)
            });
            ValueKind::List(Box::new(items))
        }
        Some("object") => ValueKind::Map,
        _ => ValueKind::Other,
    }
}

/// The string values of a fieldless enum, whether schemars wrote it as `enum` or, when variants
/// have doc comments, as `oneOf` of `const`s.
fn enum_variants(schema: &Json) -> Option<Vec<String>> {
    if let Some(values) = schema.get("enum").and_then(Json::as_array) {
        let names: Vec<String> = values
            .iter()
            .filter_map(Json::as_str)
            .map(str::to_owned)
            .collect();
        return (!names.is_empty()).then_some(names);
    }
    let options = schema.get("oneOf").and_then(Json::as_array)?;
    let mut names = Vec::with_capacity(options.len());
    for option in options {
        if let Some(name) = option.get("const").and_then(Json::as_str) {
            names.push(name.to_owned());
        } else if let Some(values) = option.get("enum").and_then(Json::as_array) {
            names.extend(values.iter().filter_map(Json::as_str).map(str::to_owned));
        } else {
            return None;
        }
    }
    Some(names)
}

fn env_segment(segment: &str) -> String {
    segment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Gives every key its environment variable names: an explicit `x-env` first, then the flat name
/// users write by hand (`DATABASE_URL` for `database.url`), then the unambiguous nested form
/// (`DATABASE__URL`). A flat name that two keys would share is given to neither.
fn assign_env_names(keys: &mut [KeySpec]) {
    let flat = |key: &KeySpec| {
        key.path
            .iter()
            .map(|s| env_segment(s))
            .collect::<Vec<_>>()
            .join("_")
    };
    let mut flat_count: BTreeMap<String, usize> = BTreeMap::new();
    for key in keys.iter() {
        *flat_count.entry(flat(key)).or_default() += 1;
    }
    for key in keys.iter_mut() {
        let flat_name = flat(key);
        let nested = key
            .path
            .iter()
            .map(|s| env_segment(s))
            .collect::<Vec<_>>()
            .join("__");
        if flat_count.get(&flat_name) == Some(&1) && !key.env_names.contains(&flat_name) {
            key.env_names.push(flat_name);
        }
        if !key.env_names.contains(&nested) {
            key.env_names.push(nested);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_names_that_collide_fall_back_to_nested_names() {
        let schema = ConfigSchema::from_json(&serde_json::json!({
            "type": "object",
            "properties": {
                "database_url": { "type": "string" },
                "database": { "type": "object", "properties": { "url": { "type": "string" } } },
                "port": { "type": "integer" }
            }
        }));
        let names: Vec<_> = schema.keys().iter().map(|k| k.env_names.clone()).collect();
        assert_eq!(names[0], vec!["DATABASE_URL".to_owned()]);
        assert_eq!(names[1], vec!["DATABASE__URL".to_owned()]);
        assert_eq!(names[2], vec!["PORT".to_owned()]);
    }

    #[test]
    fn fields_inside_an_optional_section_are_not_required() {
        let schema = ConfigSchema::from_json(&serde_json::json!({
            "type": "object",
            "required": ["db"],
            "properties": {
                "db": {
                    "type": ["object", "null"],
                    "required": ["url"],
                    "properties": { "url": { "type": "string" } }
                }
            }
        }));
        assert!(!schema.keys()[0].required);
    }
}
