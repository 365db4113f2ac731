//! One flag and its evaluation: the seed's `checkFeatureFlag`, exactly.

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
}
