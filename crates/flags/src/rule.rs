//! Context rules: constraints on evaluation-context attributes besides the tenant.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A constraint on one attribute of the evaluation context, such as `plan in [gold, platinum]`.
///
/// In JSON (the `rules` column, files): `{"attribute": "plan", "operator": "in", "values":
/// ["gold", "platinum"]}`; operators taking one value also accept `"value": x`. Every rule of a
/// flag must match for the flag to be on; see the crate docs for the order of evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RuleRepr", into = "RuleRepr")]
pub struct Rule {
    /// The context attribute, such as `plan`.
    pub attribute: String,
    /// How the attribute is compared with the values.
    pub operator: Operator,
    /// The values compared with: one or more for `in` and `not_in`, exactly one otherwise.
    pub values: Vec<RuleValue>,
}

impl Rule {
    /// A rule on `attribute`.
    pub fn new(attribute: impl Into<String>, operator: Operator, values: Vec<RuleValue>) -> Self {
        Self {
            attribute: attribute.into(),
            operator,
            values,
        }
    }
}

/// The serialized form: `value` for one value, `values` for a list.
#[derive(Serialize, Deserialize)]
struct RuleRepr {
    attribute: String,
    operator: Operator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<RuleValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    values: Option<Vec<RuleValue>>,
}

impl TryFrom<RuleRepr> for Rule {
    type Error = String;

    fn try_from(repr: RuleRepr) -> Result<Self, Self::Error> {
        let values = match (repr.value, repr.values) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "rule on `{}` gives both `value` and `values`; give one",
                    repr.attribute
                ));
            }
            (Some(value), None) => vec![value],
            (None, Some(values)) => values,
            (None, None) => Vec::new(),
        };
        Ok(Self {
            attribute: repr.attribute,
            operator: repr.operator,
            values,
        })
    }
}

impl From<Rule> for RuleRepr {
    fn from(rule: Rule) -> Self {
        let (value, values) = match (&rule.operator, rule.values.len()) {
            (Operator::In | Operator::NotIn, _) | (_, 0 | 2..) => (None, Some(rule.values)),
            _ => (rule.values.into_iter().next(), None),
        };
        Self {
            attribute: rule.attribute,
            operator: rule.operator,
            value,
            values,
        }
    }
}

/// A value a rule compares with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RuleValue {
    /// A string: for `in`, `not_in`, `eq` and the semver operators.
    String(String),
    /// A number: for `eq` and the numeric operators.
    Number(f64),
    /// A boolean: for `eq`.
    Bool(bool),
}

impl PartialEq for RuleValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::String(a), Self::String(b)) => a == b,
            // Bitwise, so that equality is an equivalence (Eq) even for the refused NaN.
            (Self::Number(a), Self::Number(b)) => a.to_bits() == b.to_bits(),
            (Self::Bool(a), Self::Bool(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for RuleValue {}

impl From<&str> for RuleValue {
    fn from(value: &str) -> Self {
        Self::String(value.to_owned())
    }
}

impl From<f64> for RuleValue {
    fn from(value: f64) -> Self {
        Self::Number(value)
    }
}

impl From<bool> for RuleValue {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

/// How a rule compares an attribute with its values.
///
/// Written in JSON as the lowercase names below; `=`, `==`, `<`, `<=`, `>` and `>=` are read as
/// `eq`, `eq`, `lt`, `lte`, `gt` and `gte`. An unknown name is kept as [`Operator::Unknown`] so that
/// [`Flag::validate`](crate::Flag::validate) can name the flag holding it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operator {
    /// `in`: the string attribute is one of the values.
    In,
    /// `not_in`: the string attribute is none of the values.
    NotIn,
    /// `eq`: the attribute equals the value (string, number or boolean, same type).
    Eq,
    /// `lt`: the numeric attribute is below the value.
    Lt,
    /// `lte`: at most the value.
    Lte,
    /// `gt`: above the value.
    Gt,
    /// `gte`: at least the value.
    Gte,
    /// `semver_eq`: the attribute, a semantic version, equals the value's (build metadata ignored).
    SemverEq,
    /// `semver_lt`: precedes the value's version.
    SemverLt,
    /// `semver_lte`: precedes or equals.
    SemverLte,
    /// `semver_gt`: follows.
    SemverGt,
    /// `semver_gte`: follows or equals.
    SemverGte,
    /// A name that is none of the above; a rule holding it never matches and is refused by every
    /// write.
    Unknown(String),
}

impl Operator {
    /// Every known operator's name.
    pub const NAMES: [&'static str; 12] = [
        "in",
        "not_in",
        "eq",
        "lt",
        "lte",
        "gt",
        "gte",
        "semver_eq",
        "semver_lt",
        "semver_lte",
        "semver_gt",
        "semver_gte",
    ];

    /// The operator's name as written in JSON.
    pub fn as_str(&self) -> &str {
        match self {
            Self::In => "in",
            Self::NotIn => "not_in",
            Self::Eq => "eq",
            Self::Lt => "lt",
            Self::Lte => "lte",
            Self::Gt => "gt",
            Self::Gte => "gte",
            Self::SemverEq => "semver_eq",
            Self::SemverLt => "semver_lt",
            Self::SemverLte => "semver_lte",
            Self::SemverGt => "semver_gt",
            Self::SemverGte => "semver_gte",
            Self::Unknown(name) => name,
        }
    }

    fn is_list(&self) -> bool {
        matches!(self, Self::In | Self::NotIn)
    }

    fn is_numeric(&self) -> bool {
        matches!(self, Self::Lt | Self::Lte | Self::Gt | Self::Gte)
    }

    fn is_semver(&self) -> bool {
        matches!(
            self,
            Self::SemverEq | Self::SemverLt | Self::SemverLte | Self::SemverGt | Self::SemverGte
        )
    }

    /// Whether `ordering` (attribute compared with value) satisfies a comparison operator.
    fn accepts(&self, ordering: Ordering) -> bool {
        match self {
            Self::Lt | Self::SemverLt => ordering == Ordering::Less,
            Self::Lte | Self::SemverLte => ordering != Ordering::Greater,
            Self::Gt | Self::SemverGt => ordering == Ordering::Greater,
            Self::Gte | Self::SemverGte => ordering != Ordering::Less,
            _ => ordering == Ordering::Equal,
        }
    }
}

impl FromStr for Operator {
    type Err = std::convert::Infallible;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "in" => Self::In,
            "not_in" => Self::NotIn,
            "eq" | "=" | "==" => Self::Eq,
            "lt" | "<" => Self::Lt,
            "lte" | "<=" => Self::Lte,
            "gt" | ">" => Self::Gt,
            "gte" | ">=" => Self::Gte,
            "semver_eq" => Self::SemverEq,
            "semver_lt" => Self::SemverLt,
            "semver_lte" => Self::SemverLte,
            "semver_gt" => Self::SemverGt,
            "semver_gte" => Self::SemverGte,
            other => Self::Unknown(other.to_owned()),
        })
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Operator {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Operator {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        let Ok(operator) = name.parse();
        Ok(operator)
    }
}

/// The value of one attribute of an evaluation context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Attribute<'a> {
    /// A string, such as a plan, a region or an app version.
    Str(&'a str),
    /// A number; integers are compared as `f64` (exact up to 2^53).
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// A value of a type no rule compares (a date, a structure): a rule on it reports
    /// [`Reason::AttributeType`](crate::Reason::AttributeType).
    Other,
}

/// Where the attributes of an evaluation context come from: a slice of pairs, a `HashMap`, or a
/// service's own request type. Looking an attribute up must not allocate.
pub trait Attributes {
    /// The attribute named `name`, if the context has it.
    fn attribute(&self, name: &str) -> Option<Attribute<'_>>;
}

impl Attributes for () {
    fn attribute(&self, _name: &str) -> Option<Attribute<'_>> {
        None
    }
}

fn find<'a>(pairs: &'a [(&str, Attribute<'_>)], name: &str) -> Option<Attribute<'a>> {
    pairs
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, value)| value)
}

impl Attributes for &[(&str, Attribute<'_>)] {
    fn attribute(&self, name: &str) -> Option<Attribute<'_>> {
        find(self, name)
    }
}

impl<const N: usize> Attributes for [(&str, Attribute<'_>); N] {
    fn attribute(&self, name: &str) -> Option<Attribute<'_>> {
        find(self, name)
    }
}

impl Attributes for Vec<(&str, Attribute<'_>)> {
    fn attribute(&self, name: &str) -> Option<Attribute<'_>> {
        find(self, name)
    }
}

impl<S: BuildHasher> Attributes for HashMap<String, String, S> {
    fn attribute(&self, name: &str) -> Option<Attribute<'_>> {
        self.get(name).map(|value| Attribute::Str(value))
    }
}

/// What a flag is evaluated for: the tenant and, for context rules, other attributes.
///
/// ```
/// use groundwork_flags::{Attribute, Context};
///
/// let attributes = [("plan", Attribute::Str("gold")), ("seats", Attribute::Number(40.0))];
/// let context = Context::new("tenant-1").with_attributes(&attributes);
/// assert_eq!(context.tenant, "tenant-1");
/// ```
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The tenant id: the rollout bucket, the whitelist and the variant depend on it.
    pub tenant: &'a str,
    /// Everything else rules may look at.
    pub attributes: &'a dyn Attributes,
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl<'a> Context<'a> {
    /// A context with a tenant and no other attribute.
    pub fn new(tenant: &'a str) -> Self {
        Self {
            tenant,
            attributes: &(),
        }
    }

    /// This context with `attributes`.
    #[must_use]
    pub fn with_attributes(self, attributes: &'a dyn Attributes) -> Self {
        Self { attributes, ..self }
    }
}

/// How one rule came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleOutcome {
    Match,
    NoMatch,
    Missing,
    WrongType,
    Invalid,
}

impl Rule {
    /// Evaluates the rule against `attributes`. Never allocates, never panics.
    pub(crate) fn evaluate(&self, attributes: &dyn Attributes) -> RuleOutcome {
        if matches!(self.operator, Operator::Unknown(_)) || self.values.is_empty() {
            return RuleOutcome::Invalid;
        }
        let Some(attribute) = attributes.attribute(&self.attribute) else {
            return RuleOutcome::Missing;
        };
        let outcome = |matched: bool| {
            if matched {
                RuleOutcome::Match
            } else {
                RuleOutcome::NoMatch
            }
        };
        if self.operator.is_list() {
            let Attribute::Str(text) = attribute else {
                return RuleOutcome::WrongType;
            };
            let listed = self
                .values
                .iter()
                .any(|v| matches!(v, RuleValue::String(s) if s == text));
            return outcome(listed == (self.operator == Operator::In));
        }
        let [value] = self.values.as_slice() else {
            return RuleOutcome::Invalid;
        };
        if self.operator.is_numeric() {
            let RuleValue::Number(bound) = value else {
                return RuleOutcome::Invalid;
            };
            let Attribute::Number(number) = attribute else {
                return RuleOutcome::WrongType;
            };
            return match number.partial_cmp(bound) {
                Some(ordering) => outcome(self.operator.accepts(ordering)),
                None => RuleOutcome::WrongType,
            };
        }
        if self.operator.is_semver() {
            let Some(bound) = (match value {
                RuleValue::String(s) => Semver::parse(s),
                _ => None,
            }) else {
                return RuleOutcome::Invalid;
            };
            let Attribute::Str(text) = attribute else {
                return RuleOutcome::WrongType;
            };
            let Some(version) = Semver::parse(text) else {
                return RuleOutcome::WrongType;
            };
            return outcome(self.operator.accepts(version.cmp(&bound)));
        }
        // `eq`: same type, equal value.
        match (value, attribute) {
            (RuleValue::String(expected), Attribute::Str(actual)) => outcome(expected == actual),
            // Exact comparison is what `eq` on numbers means.
            #[allow(clippy::float_cmp)]
            (RuleValue::Number(expected), Attribute::Number(actual)) => {
                outcome(*expected == actual)
            }
            (RuleValue::Bool(expected), Attribute::Bool(actual)) => outcome(*expected == actual),
            _ => RuleOutcome::WrongType,
        }
    }

    /// What is wrong with the rule, for [`Flag::validate`](crate::Flag::validate): `(field, problem)`
    /// with the field relative to the rule.
    pub(crate) fn problem(&self) -> Option<(&'static str, String)> {
        if self.attribute.is_empty() {
            return Some(("attribute", "is empty; name a context attribute".to_owned()));
        }
        if let Some((at, c)) = self.attribute.char_indices().find(|(_, c)| c.is_control()) {
            return Some((
                "attribute",
                format!(
                    "contains the control character U+{:04X} at byte {at}",
                    u32::from(c)
                ),
            ));
        }
        if let Operator::Unknown(name) = &self.operator {
            return Some((
                "operator",
                format!(
                    "{name:?} is not an operator; use one of {}",
                    Operator::NAMES.join(", ")
                ),
            ));
        }
        let op = &self.operator;
        if op.is_list() {
            if self.values.is_empty() {
                return Some(("values", format!("`{op}` needs at least one value")));
            }
            if let Some(i) = self
                .values
                .iter()
                .position(|v| !matches!(v, RuleValue::String(_)))
            {
                return Some((
                    "values",
                    format!("entry {} is not a string; `{op}` compares strings", i + 1),
                ));
            }
            return None;
        }
        let [value] = self.values.as_slice() else {
            return Some((
                "value",
                format!("`{op}` needs exactly one value, not {}", self.values.len()),
            ));
        };
        if op.is_numeric() {
            return match value {
                RuleValue::Number(n) if n.is_finite() => None,
                _ => Some((
                    "value",
                    format!("`{op}` compares numbers; give a finite number"),
                )),
            };
        }
        if op.is_semver() {
            return match value {
                RuleValue::String(s) if Semver::parse(s).is_some() => None,
                _ => Some((
                    "value",
                    format!("`{op}` compares semantic versions; give one such as \"2.1.0\""),
                )),
            };
        }
        match value {
            RuleValue::Number(n) if !n.is_finite() => {
                Some(("value", "is not a finite number".to_owned()))
            }
            _ => None,
        }
    }
}

/// A semantic version borrowed from its text: `MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]`, with
/// an optional leading `v`. Missing minor and patch are 0; build metadata is ignored, as
/// semver 2.0 orders versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Semver<'a> {
    core: [u64; 3],
    pre: &'a str,
}

impl<'a> Semver<'a> {
    /// Parses `text` in one pass over the version core: `MAJOR[.MINOR[.PATCH]]`, an optional
    /// leading `v`, an optional `-pre.release` and an ignored `+build`.
    pub(crate) fn parse(text: &'a str) -> Option<Self> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let mut core = [0_u64; 3];
        let mut part = 0;
        let mut digits = 0;
        let mut end = text.len();
        for (at, byte) in text.bytes().enumerate() {
            match byte {
                b'0'..=b'9' => {
                    let slot = core.get_mut(part)?;
                    *slot = slot.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
                    digits += 1;
                }
                b'.' if digits > 0 && part < 2 => {
                    part += 1;
                    digits = 0;
                }
                b'-' | b'+' => {
                    end = at;
                    break;
                }
                _ => return None,
            }
        }
        if digits == 0 {
            return None;
        }
        let pre = match text.get(end..).and_then(|rest| rest.strip_prefix('-')) {
            Some(pre_and_build) => {
                let pre = pre_and_build
                    .split_once('+')
                    .map_or(pre_and_build, |(pre, _build)| pre);
                if pre.is_empty() || pre.split('.').any(str::is_empty) {
                    return None;
                }
                pre
            }
            // Nothing after the core, or a build (after `+`), which precedence ignores.
            None => "",
        };
        Some(Self { core, pre })
    }
}

impl Ord for Semver<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core
            .cmp(&other.core)
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A pre-release precedes its release.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_prerelease(self.pre, other.pre),
            })
    }
}

impl PartialOrd for Semver<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn compare_prerelease(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
                let ordering = match (numeric(x), numeric(y)) {
                    // Numeric identifiers compare by value: by length first (no leading zeros
                    // in valid versions), then digit by digit, so any length works.
                    (true, true) => {
                        let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                        x.len().cmp(&y.len()).then_with(|| x.cmp(y))
                    }
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Semver<'_> {
        Semver::parse(text).unwrap_or_else(|| panic!("{text} does not parse"))
    }

    #[test]
    fn semver_precedence_follows_the_specification() {
        // The example chain of semver 2.0 §11.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.2",
            "v2.0.0+build.5",
            "10.0.0",
        ];
        for pair in chain.windows(2) {
            assert_eq!(v(pair[0]).cmp(&v(pair[1])), Ordering::Less, "{pair:?}");
        }
        assert_eq!(v("2.1").cmp(&v("2.1.0")), Ordering::Equal);
        assert_eq!(v("2.1.0+a").cmp(&v("2.1.0+b")), Ordering::Equal);
    }

    /// The parse before the one-pass version, kept to check that both agree.
    fn parse_by_splitting(text: &str) -> Option<Semver<'_>> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let text = text
            .split_once('+')
            .map_or(text, |(version, _build)| version);
        let (core_text, pre) = text.split_once('-').unwrap_or((text, ""));
        if text.contains('-') && (pre.is_empty() || pre.split('.').any(str::is_empty)) {
            return None;
        }
        let mut core = [0_u64; 3];
        let mut parts = core_text.split('.');
        for (i, slot) in core.iter_mut().enumerate() {
            match parts.next() {
                Some(part) if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) => {
                    *slot = part.parse().ok()?;
                }
                None if i > 0 => break,
                _ => return None,
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(Semver { core, pre })
    }

    #[test]
    fn one_pass_parse_agrees_with_splitting() {
        let pieces = [
            "",
            "v",
            "0",
            "1",
            "12",
            ".",
            "-",
            "+",
            "a",
            "x.1",
            "18446744073709551616",
        ];
        let mut checked = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        let text = format!("{a}{b}{c}{d}");
                        let (ours, theirs) = (Semver::parse(&text), parse_by_splitting(&text));
                        assert_eq!(
                            ours.map(|v| (v.core, v.pre)),
                            theirs.map(|v| (v.core, v.pre)),
                            "{text:?}"
                        );
                        checked += usize::from(ours.is_some());
                    }
                }
            }
        }
        assert!(checked > 1_000, "{checked} parsed");
        for text in [
            "1.2.3-rc.1+b-2",
            "v2.0.0+build.5",
            "1.0.0-alpha-1",
            "1.2.3-+",
            "1.2.3+",
        ] {
            assert_eq!(
                Semver::parse(text).map(|v| (v.core, v.pre)),
                parse_by_splitting(text).map(|v| (v.core, v.pre)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn malformed_versions_do_not_parse() {
        for text in [
            "",
            "v",
            "1..2",
            "1.2.3.4",
            "a.b.c",
            "1.2.3-",
            "1.2.3-a..b",
            "-1.0.0",
            "1.x",
        ] {
            assert!(Semver::parse(text).is_none(), "{text:?}");
        }
    }
}
