//! One flag and its evaluation: the seed's `checkFeatureFlag`, exactly.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bucket;

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
}

fn full_rollout() -> i32 {
    100
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
    /// Rollout at 100%, no whitelist: on for everyone.
    Static,
    /// `rollout_pct` is outside `0..=100`; the flag is treated as disabled.
    InvalidRollout,
    /// No flag has this name; unknown flags are off.
    NotFound,
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
        }
    }

    /// Whether the feature is on for `tenant_id`; see the crate docs for the truth table.
    #[inline]
    pub fn is_enabled_for(&self, tenant_id: &str) -> bool {
        self.evaluate(tenant_id).enabled
    }

    /// Evaluates the flag for `tenant_id`, with the reason. Never allocates.
    pub fn evaluate(&self, tenant_id: &str) -> Evaluation {
        let (enabled, reason) = if !self.enabled {
            (false, Reason::Disabled)
        } else if !self.has_valid_rollout() {
            (false, Reason::InvalidRollout)
        } else if self.rollout_pct < 100 {
            // `rollout_pct` is in 0..100 here, so the cast is lossless.
            #[allow(clippy::cast_sign_loss)]
            let pct = self.rollout_pct as u32;
            (bucket(tenant_id, &self.name) < pct, Reason::Split)
        } else if let Some(whitelist) = self.whitelist.as_deref().filter(|w| !w.is_empty()) {
            (
                whitelist.iter().any(|t| t == tenant_id),
                Reason::TargetingMatch,
            )
        } else {
            (true, Reason::Static)
        };
        Evaluation { enabled, reason }
    }

    /// Whether `rollout_pct` is within `0..=100`.
    pub fn has_valid_rollout(&self) -> bool {
        (0..=100).contains(&self.rollout_pct)
    }

    /// Checks the name and the whitelist as every write does; see [`InvalidFlag`]. The rollout
    /// is checked apart ([`Flag::has_valid_rollout`]): a flag outside the range evaluates to off.
    pub fn validate(&self) -> Result<(), InvalidFlag> {
        check_flag_name(&self.name)?;
        check_whitelist(self.whitelist.as_deref().unwrap_or_default())
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
