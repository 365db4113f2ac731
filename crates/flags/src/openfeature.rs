//! An [OpenFeature](https://openfeature.dev) provider over [`Flags`], for services that evaluate
//! flags through the `open-feature` SDK.

use open_feature::provider::{FeatureProvider, ProviderMetadata, ResolutionDetails};
use open_feature::{
    EvaluationContext, EvaluationError, EvaluationErrorCode, EvaluationReason, EvaluationResult,
    FlagMetadata, StructValue, async_trait,
};

use crate::{Flags, Reason};

/// The OpenFeature provider of Groundwork's feature flags: resolves boolean flags from a live
/// [`Flags`] handle, with the evaluation context's targeting key as the tenant id.
///
/// | flag | value | reason | variant |
/// |---|---|---|---|
/// | unknown | error `FLAG_NOT_FOUND` | – | – |
/// | disabled | `false` | `DISABLED` | `off` |
/// | `rollout_pct` outside `0..=100` | `false` | `DISABLED`, flag metadata `error_code = "PARSE_ERROR"`, `error_message`, `rollout_pct` | `off` |
/// | rollout below 100% | bucket below rollout | `SPLIT` | `on` / `off` |
/// | 100% with a whitelist | tenant listed | `TARGETING_MATCH` | `on` / `off` |
/// | 100% without whitelist | `true` | `STATIC` | `on` |
///
/// **Targeting key.** Only `SPLIT` and `TARGETING_MATCH` decisions depend on the tenant. Without a
/// targeting key (absent or empty) those fail with `TARGETING_KEY_MISSING`, as OpenFeature
/// specifies for a provider that needs one, instead of guessing; disabled, invalid and static
/// flags resolve as usual because their value is the same for every tenant.
///
/// **Errors and defaults.** The `open-feature` 0.3 client returns a provider error as `Err`
/// (the resolution has no details), so the caller's default is applied at the call site:
/// `client.get_bool_value(..).await.unwrap_or(default)`.
///
/// **Types.** Groundwork flags are booleans: integer, float, string and struct resolutions of a
/// known flag fail with `TYPE_MISMATCH` (an unknown one with `FLAG_NOT_FOUND`).
#[derive(Debug, Clone)]
pub struct FlagsProvider {
    flags: Flags,
    metadata: ProviderMetadata,
}

impl FlagsProvider {
    /// The provider's name in OpenFeature's provider metadata.
    pub const NAME: &'static str = "groundwork-flags";

    /// A provider resolving from `flags`; later [`Flags::replace`] calls are seen at once.
    pub fn new(flags: Flags) -> Self {
        Self {
            flags,
            metadata: ProviderMetadata::new(Self::NAME),
        }
    }

    fn resolve_bool(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        let tenant = context.targeting_key.as_deref().filter(|t| !t.is_empty());
        // Without a tenant the evaluation still says whether the tenant would have mattered:
        // the reason does not depend on the tenant id, only the value does.
        let evaluation = self.flags.evaluate(flag_key, tenant.unwrap_or_default());
        let reason = match evaluation.reason {
            Reason::NotFound => return Err(flag_not_found(flag_key)),
            Reason::Split | Reason::TargetingMatch if tenant.is_none() => {
                return Err(EvaluationError {
                    code: EvaluationErrorCode::TargetingKeyMissing,
                    message: Some(format!(
                        "feature flag `{flag_key}` depends on the tenant; set the evaluation \
                         context's targeting key to the tenant id"
                    )),
                });
            }
            Reason::Disabled => EvaluationReason::Disabled,
            Reason::InvalidRollout => {
                return Ok(self.invalid_rollout(flag_key));
            }
            Reason::Split => EvaluationReason::Split,
            Reason::TargetingMatch => EvaluationReason::TargetingMatch,
            Reason::Static => EvaluationReason::Static,
        };
        Ok(ResolutionDetails {
            value: evaluation.enabled,
            variant: Some(variant(evaluation.enabled).to_owned()),
            reason: Some(reason),
            flag_metadata: None,
        })
    }

    /// `DISABLED`, with the stored value and the error that OpenFeature would report for a flag
    /// configuration it cannot parse, so dashboards can tell a broken row from a switched-off one.
    #[cold]
    fn invalid_rollout(&self, flag_key: &str) -> ResolutionDetails<bool> {
        let mut metadata = FlagMetadata::default()
            .with_value("error_code", EvaluationErrorCode::ParseError.to_string());
        if let Some(flag) = self.flags.snapshot().get(flag_key) {
            metadata = metadata
                .with_value("rollout_pct", flag.rollout_pct)
                .with_value(
                    "error_message",
                    format!(
                        "rollout_pct {} is outside 0..=100; the flag is treated as disabled",
                        flag.rollout_pct
                    ),
                );
        }
        ResolutionDetails {
            value: false,
            variant: Some(variant(false).to_owned()),
            reason: Some(EvaluationReason::Disabled),
            flag_metadata: Some(metadata),
        }
    }

    /// The error for a non-boolean resolution: the flag is boolean, or does not exist.
    fn not_boolean<T>(&self, flag_key: &str, requested: &str) -> EvaluationResult<T> {
        if self.flags.snapshot().get(flag_key).is_none() {
            return Err(flag_not_found(flag_key));
        }
        Err(EvaluationError {
            code: EvaluationErrorCode::TypeMismatch,
            message: Some(format!(
                "feature flag `{flag_key}` is a boolean, not {requested}; resolve it as a boolean"
            )),
        })
    }
}

fn variant(enabled: bool) -> &'static str {
    if enabled { "on" } else { "off" }
}

fn flag_not_found(flag_key: &str) -> EvaluationError {
    EvaluationError {
        code: EvaluationErrorCode::FlagNotFound,
        message: Some(format!("no feature flag is named `{flag_key}`")),
    }
}

#[async_trait]
impl FeatureProvider for FlagsProvider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve_bool(flag_key, evaluation_context)
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        _evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.not_boolean(flag_key, "an integer")
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        _evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.not_boolean(flag_key, "a float")
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        _evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.not_boolean(flag_key, "a string")
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        _evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.not_boolean(flag_key, "a struct")
    }
}
