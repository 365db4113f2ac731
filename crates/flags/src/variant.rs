//! Variants of a flag and their JSON payloads.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What the weights of a flag's variants must add up to: they are percentages of the tenants the
/// flag is on for.
pub const TOTAL_WEIGHT: i32 = 100;

/// One value a flag can take, such as `blue` of an A/B test, with its share of tenants.
///
/// In JSON (the `variants` column, files): `{"name": "blue", "weight": 50, "payload": {...}}`.
/// A tenant's variant is the first whose running weight total exceeds its
/// [`variant_point`](crate::variant_point); see the crate docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// The variant's name, reported as OpenFeature's variant and in usage metrics.
    pub name: String,
    /// Percentage of the tenants the flag is on for, `0..=100`; a flag's weights add up to
    /// [`TOTAL_WEIGHT`]. Kept as read so that a bad value is reported naming the flag.
    pub weight: i32,
    /// A JSON value served with the variant: a string, number or object for OpenFeature's typed
    /// resolutions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
}

impl Variant {
    /// A variant without payload.
    pub fn new(name: impl Into<String>, weight: i32) -> Self {
        Self {
            name: name.into(),
            weight,
            payload: None,
        }
    }

    /// This variant with `payload`.
    #[must_use]
    pub fn with_payload(self, payload: Payload) -> Self {
        Self {
            payload: Some(payload),
            ..self
        }
    }
}

/// A JSON value, parsed once when the flag is loaded so that evaluation never parses.
///
/// The core has no JSON library: `Payload` deserializes from any serde format (a JSON value, a
/// TOML table) and serializes as the same JSON value. Numbers that JSON cannot hold (NaN,
/// infinities, which TOML can write) are kept as read and refused by [`Flag::validate`](crate::Flag::validate).
/// An object keeps its keys in the order read.
#[derive(Debug, Clone)]
pub enum Payload {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Payload>),
    /// An object, keys in the order read.
    Object(Vec<(String, Payload)>),
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Null, Self::Null) => true,
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::Int(a), Self::Int(b)) => a == b,
            // Bitwise, so that equality is an equivalence (Eq) even for the refused NaN.
            (Self::Float(a), Self::Float(b)) => a.to_bits() == b.to_bits(),
            (Self::String(a), Self::String(b)) => a == b,
            (Self::Array(a), Self::Array(b)) => a == b,
            (Self::Object(a), Self::Object(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Payload {}

impl Payload {
    /// The path (`.key[2]`, relative to the payload) of the first number JSON cannot hold.
    pub(crate) fn first_non_json(&self) -> Option<String> {
        match self {
            Self::Float(f) if !f.is_finite() => Some(String::new()),
            Self::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| item.first_non_json().map(|path| format!("[{i}]{path}"))),
            Self::Object(fields) => fields.iter().find_map(|(key, value)| {
                value.first_non_json().map(|path| format!(".{key}{path}"))
            }),
            _ => None,
        }
    }

    /// The name of the JSON type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Int(_) => "an integer",
            Self::Float(_) => "a number",
            Self::String(_) => "a string",
            Self::Array(_) => "an array",
            Self::Object(_) => "an object",
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => serializer.serialize_unit(),
            Self::Bool(b) => serializer.serialize_bool(*b),
            Self::Int(i) => serializer.serialize_i64(*i),
            Self::Float(f) => serializer.serialize_f64(*f),
            Self::String(s) => serializer.serialize_str(s),
            Self::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Self::Object(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (key, value) in fields {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PayloadVisitor)
    }
}

struct PayloadVisitor;

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = Payload;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Payload, E> {
        Ok(Payload::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Payload, E> {
        Ok(Payload::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Payload, E> {
        // Beyond i64, JSON readers in JavaScript see a float anyway.
        #[allow(clippy::cast_precision_loss)]
        Ok(i64::try_from(v).map_or(Payload::Float(v as f64), Payload::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Payload, E> {
        Ok(Payload::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Payload, E> {
        Ok(Payload::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Payload, E> {
        Ok(Payload::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Payload, E> {
        Ok(Payload::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Payload, E> {
        Ok(Payload::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Payload, D::Error> {
        Payload::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Payload, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Payload::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Payload, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some((key, value)) = map.next_entry::<String, Payload>()? {
            fields.push((key, value));
        }
        Ok(Payload::Object(fields))
    }
}
