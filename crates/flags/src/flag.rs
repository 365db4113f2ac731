//! One flag and its evaluation: the seed's `checkFeatureFlag`, exactly.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::rule::RuleOutcome;
use crate::{Context, Rule, TOTAL_WEIGHT, Variant, bucket, variant_point};

/// A feature flag as stored in the `feature_flags` table.
///
/// Deserializes from an object with the table's columns; `whitelist` may be `null` or absent,
/// `rollout_pct` defaults to 100 and `enabled` to false, as in the table.
///
/// ```
/// let flag: groundwork_flags::Flag = serde_json::from_str(
///     r#"{"name":"supplier.realtime.sync","enabled":true,"rollout_pct":5,"whitelist":null}"#,
/// )?;
/// assert!(!flag.is_enabled_for("tenant-1")); // bucket 13 is not below 5
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    /// Unique name, such as `supplier.realtime.sync`.
    pub name: String,
    /// Master switch: a disabled flag is off for everyone.
    #[serde(default)]
    pub enabled: bool,
    /// Percentage of tenants, `0..=100`. Kept as read so that a legacy value outside that range is
    /// reported instead of failing the whole set; such a flag evaluates to off.
    #[serde(default = "full_rollout")]
    pub rollout_pct: i32,
    /// Tenants the flag is limited to, consulted only at 100% rollout.
    #[serde(default)]
    pub whitelist: Option<Vec<String>>,
    /// What the flag is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The values the flag can take for a tenant it is on for; empty for a plain on/off flag.
    /// `null` or absent reads as empty (the seed's rows have no such column).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub variants: Vec<Variant>,
    /// Constraints on context attributes, all of which must hold for the flag to be on; empty
    /// for a flag that only looks at the tenant. `null` or absent reads as empty.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rules: Vec<Rule>,
}

fn full_rollout() -> i32 {
    100
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Why a flag evaluated the way it did. The names follow OpenFeature's resolution reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The flag is disabled.
    Disabled,
    /// Rollout below 100%: the tenant's bucket decided.
    Split,
    /// Rollout at 100% with a whitelist: membership decided.
    TargetingMatch,
    /// Rollout at 100%, no whitelist, no rules: on for everyone.
    Static,
    /// `rollout_pct` is outside `0..=100`; the flag is treated as disabled.
    InvalidRollout,
    /// No flag has this name; unknown flags are off.
    NotFound,
    /// A rule did not hold for the context's attribute: off.
    RuleMismatch,
    /// A rule's attribute is not in the context: off, whatever the operator (`not_in` too).
    AttributeMissing,
    /// A rule's attribute has a type the operator cannot compare (a string for `gt`, a version
    /// that does not parse for `semver_gte`, a number for `in`): off.
    AttributeType,
    /// The flag's variants or rules are invalid (see [`Flag::validate`]; only plain SQL or code
    /// building a [`FlagSet`](crate::FlagSet) can hold them): off.
    InvalidConfig,
}

impl Reason {
    /// Whether this reason means the flag was off because of its configuration or the context
    /// rather than a decision about the tenant.
    pub fn is_default(self) -> bool {
        matches!(
            self,
            Self::RuleMismatch | Self::AttributeMissing | Self::AttributeType
        )
    }
}

/// The outcome of evaluating a flag for a context, with the variant served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution<'a> {
    /// Whether the feature is on for the context.
    pub enabled: bool,
    /// Why.
    pub reason: Reason,
    /// The variant served: `None` when the flag is off or has no variants.
    pub variant: Option<&'a Variant>,
    /// The variant's position in [`Flag::variants`].
    pub variant_index: Option<usize>,
}

impl Resolution<'_> {
    fn off(reason: Reason) -> Self {
        Self {
            enabled: false,
            reason,
            variant: None,
            variant_index: None,
        }
    }
}

/// The outcome of evaluating a flag for a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    /// Whether the feature is on for the tenant.
    pub enabled: bool,
    /// Why.
    pub reason: Reason,
}

impl Flag {
    /// A disabled flag with full rollout and no whitelist, as `INSERT` with defaults creates it.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            enabled: false,
            rollout_pct: 100,
            whitelist: None,
            description: None,
            variants: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// Whether the feature is on for `tenant_id`; see the crate docs for the truth table.
    #[inline]
    pub fn is_enabled_for(&self, tenant_id: &str) -> bool {
        self.evaluate(tenant_id).enabled
    }

    /// Evaluates the flag for `tenant_id` with no other attribute, with the reason. Never
    /// allocates. A flag with rules is off here ([`Reason::AttributeMissing`]): give the
    /// attributes through [`Flag::resolve`].
    #[inline]
    pub fn evaluate(&self, tenant_id: &str) -> Evaluation {
        let resolution = self.resolve(&Context::new(tenant_id));
        Evaluation {
            enabled: resolution.enabled,
            reason: resolution.reason,
        }
    }

    /// Evaluates the flag for `context`: on or off, why, and the variant. Never allocates, never
    /// panics.
    ///
    /// In this order: disabled → off; `rollout_pct` outside `0..=100` → off; the rules, each in
    /// turn, the first that does not hold deciding (off); the seed's rollout and whitelist; then,
    /// for a flag that is on and has variants, the variant at the tenant's
    /// [`variant_point`].
    pub fn resolve(&self, context: &Context<'_>) -> Resolution<'_> {
        if !self.enabled {
            return Resolution::off(Reason::Disabled);
        }
        if !self.has_valid_rollout() {
            return Resolution::off(Reason::InvalidRollout);
        }
        for rule in &self.rules {
            let reason = match rule.evaluate(context.attributes) {
                RuleOutcome::Match => continue,
                RuleOutcome::NoMatch => Reason::RuleMismatch,
                RuleOutcome::Missing => Reason::AttributeMissing,
                RuleOutcome::WrongType => Reason::AttributeType,
                RuleOutcome::Invalid => Reason::InvalidConfig,
            };
            return Resolution::off(reason);
        }
        let tenant_id = context.tenant;
        let (enabled, reason) = if self.rollout_pct < 100 {
            // `rollout_pct` is in 0..100 here, so the cast is lossless.
            #[allow(clippy::cast_sign_loss)]
            let pct = self.rollout_pct as u32;
            (bucket(tenant_id, &self.name) < pct, Reason::Split)
        } else if let Some(whitelist) = self.whitelist.as_deref().filter(|w| !w.is_empty()) {
            (
                whitelist.iter().any(|t| t == tenant_id),
                Reason::TargetingMatch,
            )
        } else if self.rules.is_empty() {
            (true, Reason::Static)
        } else {
            (true, Reason::TargetingMatch)
        };
        if !enabled {
            return Resolution::off(reason);
        }
        if self.variants.is_empty() {
            return Resolution {
                enabled,
                reason,
                variant: None,
                variant_index: None,
            };
        }
        self.choose_variant(tenant_id, reason)
    }

    fn choose_variant(&self, tenant_id: &str, reason: Reason) -> Resolution<'_> {
        if !self.has_valid_weights() {
            return Resolution::off(Reason::InvalidConfig);
        }
        // The weights are in 0..=100 and add up to 100 here, so the casts are lossless.
        #[allow(clippy::cast_possible_wrap)]
        let point = variant_point(tenant_id, &self.name) as i32;
        let mut up_to = 0;
        let mut weighted = 0;
        let mut chosen = None;
        for (index, variant) in self.variants.iter().enumerate() {
            up_to += variant.weight;
            if variant.weight > 0 {
                weighted += 1;
            }
            if chosen.is_none() && point < up_to {
                chosen = Some(index);
            }
        }
        let Some(index) = chosen else {
            return Resolution::off(Reason::InvalidConfig);
        };
        Resolution {
            enabled: true,
            reason: if weighted > 1 { Reason::Split } else { reason },
            variant: self.variants.get(index),
            variant_index: Some(index),
        }
    }

    /// Whether every variant's weight is in `0..=100` and they add up to [`TOTAL_WEIGHT`] (or
    /// there are no variants).
    pub fn has_valid_weights(&self) -> bool {
        self.variants.is_empty()
            || (self
                .variants
                .iter()
                .all(|v| (0..=TOTAL_WEIGHT).contains(&v.weight))
                && self
                    .variants
                    .iter()
                    .map(|v| i64::from(v.weight))
                    .sum::<i64>()
                    == i64::from(TOTAL_WEIGHT))
    }

    /// Whether the value served depends on the tenant id: a rollout below 100%, a whitelist, or
    /// a choice between weighted variants.
    pub fn depends_on_tenant(&self) -> bool {
        self.rollout_pct < 100
            || self.whitelist.as_ref().is_some_and(|w| !w.is_empty())
            || self.variants.iter().filter(|v| v.weight > 0).count() > 1
    }

    /// Whether `rollout_pct` is within `0..=100`.
    pub fn has_valid_rollout(&self) -> bool {
        (0..=100).contains(&self.rollout_pct)
    }

    /// Checks the name and the whitelist as every write does; see [`InvalidFlag`]. The rollout
    /// is checked apart ([`Flag::has_valid_rollout`]): a flag outside the range evaluates to off.
    /// Variants and rules are checked by [`Flag::validate_targeting`].
    pub fn validate(&self) -> Result<(), InvalidFlag> {
        check_flag_name(&self.name)?;
        check_whitelist(self.whitelist.as_deref().unwrap_or_default())
    }

    /// Checks the variants and the rules, which every write and every loader refuses when
    /// invalid (a running service keeps its last good set):
    ///
    /// - variant names are non-empty, unique and free of control characters; weights are in
    ///   `0..=100` and add up to exactly [`TOTAL_WEIGHT`] (100); payloads are JSON (no NaN or
    ///   infinite numbers);
    /// - rule attributes are non-empty and free of control characters, operators are known,
    ///   `in`/`not_in` have one or more string values, the others exactly one: a finite number
    ///   for `lt`/`lte`/`gt`/`gte`, a semantic version for the `semver_*` operators.
    ///
    /// The error names the flag and the field, such as `variants[1].weight`.
    pub fn validate_targeting(&self) -> Result<(), InvalidFlag> {
        let invalid = |field: String, problem: String| InvalidFlag::Field {
            flag: self.name.clone(),
            field,
            problem,
        };
        for (i, variant) in self.variants.iter().enumerate() {
            if variant.name.is_empty() {
                return Err(invalid(
                    format!("variants[{i}].name"),
                    "is empty".to_owned(),
                ));
            }
            if let Some((at, c)) = variant.name.char_indices().find(|(_, c)| c.is_control()) {
                return Err(invalid(
                    format!("variants[{i}].name"),
                    format!("contains {} at byte {at}", Described(c)),
                ));
            }
            if self.variants[..i].iter().any(|v| v.name == variant.name) {
                return Err(invalid(
                    format!("variants[{i}].name"),
                    format!(
                        "{:?} is given twice; variant names are unique",
                        variant.name
                    ),
                ));
            }
            if !(0..=TOTAL_WEIGHT).contains(&variant.weight) {
                return Err(invalid(
                    format!("variants[{i}].weight"),
                    format!(
                        "{} is outside 0..={TOTAL_WEIGHT}; a weight is a percentage",
                        variant.weight
                    ),
                ));
            }
            if let Some(path) = variant
                .payload
                .as_ref()
                .and_then(crate::Payload::first_non_json)
            {
                return Err(invalid(
                    format!("variants[{i}].payload{path}"),
                    "is not JSON: NaN and infinite numbers have no JSON form".to_owned(),
                ));
            }
        }
        if !self.has_valid_weights() {
            let total: i64 = self.variants.iter().map(|v| i64::from(v.weight)).sum();
            return Err(invalid(
                "variants[].weight".to_owned(),
                format!(
                    "the weights add up to {total}; the weights of a flag's variants must add up \
                     to {TOTAL_WEIGHT}"
                ),
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some((field, problem)) = rule.problem() {
                return Err(invalid(format!("rules[{i}].{field}"), problem));
            }
        }
        Ok(())
    }
}

/// A flag name or whitelist that cannot be written: the admin API, the CLI and the file source
/// refuse it; rows already in the table that hold one are served as stored and reported.
///
/// Flag names and tenant ids are typed and read by people, in terminals and logs, so control
/// characters — C0 (U+0000 to U+001F: newline, carriage return, tab, escape, ...), DEL (U+007F)
/// and C1 (U+0080 to U+009F) — are refused in both. Tenants are matched by equality, so an empty
/// entry or one holding `,` (a list that was never split) could never match.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidFlag {
    /// The flag name holds a control character.
    NameCharacter {
        /// The name, printed escaped.
        name: String,
        /// The first control character.
        character: char,
        /// Its byte offset in the name.
        at: usize,
    },
    /// A whitelist entry is empty.
    EmptyTenant {
        /// The 1-based position in the whitelist.
        entry: usize,
    },
    /// A whitelist entry holds a `,` or a control character.
    TenantCharacter {
        /// The 1-based position in the whitelist.
        entry: usize,
        /// The entry, printed escaped.
        tenant: String,
        /// The first such character.
        character: char,
        /// Its byte offset in the entry.
        at: usize,
    },
    /// A variant or a rule is invalid; see [`Flag::validate_targeting`].
    Field {
        /// The flag's name.
        flag: String,
        /// The field, such as `variants[1].weight` or `rules[0].operator`.
        field: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

impl fmt::Display for InvalidFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NameCharacter {
                name,
                character,
                at,
            } => write!(
                f,
                "flag name {name:?} contains {} at byte {at}; control characters (U+0000 to \
                 U+001F, U+007F to U+009F) are refused in flag names",
                Described(*character)
            ),
            Self::EmptyTenant { entry } => write!(
                f,
                "whitelist entry {entry} is empty; a tenant id is matched exactly, so an empty \
                 one never matches"
            ),
            Self::TenantCharacter {
                entry,
                tenant,
                character: ',',
                at,
            } => write!(
                f,
                "whitelist entry {entry} ({tenant:?}) contains {} at byte {at}; give each tenant \
                 as an entry of its own",
                Described(',')
            ),
            Self::TenantCharacter {
                entry,
                tenant,
                character,
                at,
            } => write!(
                f,
                "whitelist entry {entry} ({tenant:?}) contains {} at byte {at}; control \
                 characters are refused in tenant ids",
                Described(*character)
            ),
            Self::Field {
                flag,
                field,
                problem,
            } => write!(f, "flag {flag:?}: {field} {problem}"),
        }
    }
}

impl std::error::Error for InvalidFlag {}

/// A character named for people: `a newline (U+000A)`.
struct Described(char);

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            ',' => "','",
            '\n' => "a newline",
            '\r' => "a carriage return",
            '\t' => "a tab",
            '\u{1b}' => "an escape",
            '\0' => "a NUL",
            '\u{7f}' => "a delete",
            _ => "a control character",
        };
        write!(f, "{name} (U+{:04X})", u32::from(self.0))
    }
}

/// Refuses a flag name holding a control character; see [`InvalidFlag`].
pub fn check_flag_name(name: &str) -> Result<(), InvalidFlag> {
    match name.char_indices().find(|(_, c)| c.is_control()) {
        None => Ok(()),
        Some((at, character)) => Err(InvalidFlag::NameCharacter {
            name: name.to_owned(),
            character,
            at,
        }),
    }
}

/// Refuses a whitelist with an empty entry or one holding `,` or a control character; see
/// [`InvalidFlag`].
pub fn check_whitelist(whitelist: &[String]) -> Result<(), InvalidFlag> {
    for (index, tenant) in whitelist.iter().enumerate() {
        let entry = index + 1;
        if tenant.is_empty() {
            return Err(InvalidFlag::EmptyTenant { entry });
        }
        if let Some((at, character)) = tenant
            .char_indices()
            .find(|&(_, c)| c == ',' || c.is_control())
        {
            return Err(InvalidFlag::TenantCharacter {
                entry,
                tenant: tenant.clone(),
                character,
                at,
            });
        }
    }
    Ok(())
}
