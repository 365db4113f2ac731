//! An [OpenFeature](https://openfeature.dev) provider over [`Flags`], for services that evaluate
//! flags through the `open-feature` SDK.

use open_feature::provider::{FeatureProvider, ProviderMetadata, ResolutionDetails};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, EvaluationResult, FlagMetadata, StructValue, Value, async_trait,
};
use tokio::sync::broadcast;

use crate::rule::RuleOutcome;
use crate::{Attribute, Attributes, Context, Flags, Payload, Reason, Resolved};

/// OpenFeature's `PROVIDER_CONFIGURATION_CHANGED` event: the flag set was replaced (a hot
/// reload from the table or the file, or [`Flags::replace`]) and these flags differ.
///
/// The `open-feature` 0.3 SDK has no event API (no `ProviderEvent`, no handlers on the API or
/// clients; its README lists eventing as "not yet available in the Rust SDK", and 0.3.0 is its
/// newest release), so the provider cannot hand this to the SDK; subscribe through
/// [`FlagsProvider::subscribe`] instead, or register a [`Flags::on_change`] listener, which needs
/// no runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigurationChanged {
    /// The provider's name, [`FlagsProvider::NAME`].
    pub provider_name: &'static str,
    /// The flags added, removed or changed, sorted by name (the event's `flagsChanged`).
    pub flags_changed: Vec<String>,
}

/// The OpenFeature provider of Groundwork's feature flags: resolves flags from a live [`Flags`]
/// handle, with the evaluation context's targeting key as the tenant id and its other fields as
/// the attributes that context rules look at.
///
/// | core [`Reason`] | boolean | string, integer, float, object | OpenFeature reason |
/// |---|---|---|---|
/// | `NotFound` | error `FLAG_NOT_FOUND` | same | – |
/// | `Disabled` | `false`, variant `off` | error `GENERAL` "DISABLED" | `DISABLED` |
/// | `InvalidRollout` | `false`, flag metadata `error_code = "PARSE_ERROR"` | error `PARSE_ERROR` | `DISABLED` |
/// | `Split` | on/off or the variant | the variant's value | `SPLIT` |
/// | `TargetingMatch` | on/off or the variant | the variant's value (off: error `GENERAL` "`TARGETING_MATCH`") | `TARGETING_MATCH` |
/// | `Static` | `true`, variant `on` | – (no variants) | `STATIC` |
/// | `RuleMismatch`, `AttributeMissing` | `false`, variant `off` | error `GENERAL` "DEFAULT" | `DEFAULT` |
/// | `AttributeType` | error `INVALID_CONTEXT` | same | – |
/// | `InvalidConfig` | error `PARSE_ERROR` | same | – |
///
/// **Typed values.** A string resolution serves the variant's payload when it is a JSON string,
/// else the variant's name when it has no payload; an integer one an integer payload; a float
/// one any number; an object one an object payload (JSON `null`s are left out: OpenFeature's
/// values have no null). Anything else, or a flag without variants, is `TYPE_MISMATCH`.
///
/// **Off and defaults.** The `open-feature` 0.3 client passes no default value to providers and
/// returns a provider error as `Err`, so the caller's default is applied at the call site:
/// `client.get_string_value(..).await.unwrap_or(default)`. A boolean flag that is off resolves
/// to `false` with its reason; a typed flag that serves no variant has no value to return, so it
/// is an error whose code is `GENERAL` with the OpenFeature reason (`DISABLED`, `DEFAULT`, ...) as
/// its text, and the message says why.
///
/// **Targeting key.** Only tenant-dependent decisions need one: a rollout below 100%, a
/// whitelist, a choice between weighted variants. Without a targeting key (absent or empty)
/// those fail with `TARGETING_KEY_MISSING`; other flags resolve as usual.
///
/// **Attributes.** Strings, integers, floats and booleans of the context are compared by rules;
/// integers as `f64`. Dates and structures are of a type no rule compares (`INVALID_CONTEXT`).
///
/// **Events.** See [`ConfigurationChanged`].
#[derive(Debug, Clone)]
pub struct FlagsProvider {
    flags: Flags,
    metadata: ProviderMetadata,
    events: broadcast::Sender<ConfigurationChanged>,
}

/// How many configuration changes a slow subscriber may fall behind before it misses some.
const EVENT_CAPACITY: usize = 64;

impl FlagsProvider {
    /// The provider's name in OpenFeature's provider metadata.
    pub const NAME: &'static str = "groundwork-flags";

    /// A provider resolving from `flags`; later [`Flags::replace`] calls are seen at once.
    pub fn new(flags: Flags) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let sender = events.clone();
        flags.on_change(move |change| {
            // No subscriber is not an error: nobody is listening yet.
            let _ = sender.send(ConfigurationChanged {
                provider_name: Self::NAME,
                flags_changed: change.flags_changed.clone(),
            });
        });
        Self {
            flags,
            metadata: ProviderMetadata::new(Self::NAME),
            events,
        }
    }

    /// `PROVIDER_CONFIGURATION_CHANGED` events from now on: one per replacement of the flag set
    /// that changes a flag. A receiver more than 64 events behind gets `Lagged` and continues.
    pub fn subscribe(&self) -> broadcast::Receiver<ConfigurationChanged> {
        self.events.subscribe()
    }

    /// Resolves through the core, turning what has no value (unknown flag, missing targeting
    /// key, bad context or configuration) into the OpenFeature error.
    fn resolve(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<(Resolved, Option<EvaluationReason>)> {
        let tenant = context.targeting_key.as_deref().filter(|t| !t.is_empty());
        let attributes = ContextAttributes(context);
        let core = Context::new(tenant.unwrap_or_default()).with_attributes(&attributes);
        let resolved = self.flags.resolve(flag_key, &core);
        let reason = match resolved.reason {
            Reason::NotFound => return Err(flag_not_found(flag_key)),
            Reason::Split | Reason::TargetingMatch
                if tenant.is_none()
                    && resolved.flag().is_some_and(crate::Flag::depends_on_tenant) =>
            {
                return Err(EvaluationError {
                    code: EvaluationErrorCode::TargetingKeyMissing,
                    message: Some(format!(
                        "feature flag `{flag_key}` depends on the tenant; set the evaluation \
                         context's targeting key to the tenant id"
                    )),
                });
            }
            Reason::AttributeType => return Err(self.invalid_context(flag_key, &attributes)),
            Reason::InvalidConfig => return Err(self.invalid_config(flag_key)),
            Reason::Disabled | Reason::InvalidRollout => Some(EvaluationReason::Disabled),
            Reason::Split => Some(EvaluationReason::Split),
            Reason::TargetingMatch => Some(EvaluationReason::TargetingMatch),
            Reason::Static => Some(EvaluationReason::Static),
            Reason::RuleMismatch | Reason::AttributeMissing => Some(EvaluationReason::Default),
        };
        Ok((resolved, reason))
    }

    fn resolve_bool(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        let (resolved, reason) = self.resolve(flag_key, context)?;
        if resolved.reason == Reason::InvalidRollout {
            return Ok(self.invalid_rollout(flag_key));
        }
        Ok(ResolutionDetails {
            value: resolved.enabled,
            variant: Some(resolved.variant_name().to_owned()),
            reason,
            flag_metadata: None,
        })
    }

    /// A typed resolution: the served variant's payload converted by `convert`.
    fn resolve_typed<T>(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
        requested: &str,
        convert: impl FnOnce(&crate::Variant) -> Option<T>,
    ) -> EvaluationResult<ResolutionDetails<T>> {
        let (resolved, reason) = self.resolve(flag_key, context)?;
        if resolved.flag().is_some_and(|flag| flag.variants.is_empty()) {
            return Err(EvaluationError {
                code: EvaluationErrorCode::TypeMismatch,
                message: Some(format!(
                    "feature flag `{flag_key}` has no variants, so it is a boolean, not \
                     {requested}; resolve it as a boolean or give it variants"
                )),
            });
        }
        if resolved.reason == Reason::InvalidRollout {
            return Err(EvaluationError {
                code: EvaluationErrorCode::ParseError,
                message: Some(format!(
                    "feature flag `{flag_key}` has a rollout_pct outside 0..=100 and is treated \
                     as disabled; the caller's default applies"
                )),
            });
        }
        let Some(variant) = resolved.variant() else {
            let reason_name = reason
                .as_ref()
                .map_or_else(|| "DEFAULT".to_owned(), ToString::to_string);
            return Err(EvaluationError {
                message: Some(format!(
                    "feature flag `{flag_key}` serves no variant for this context \
                     ({reason_name}); the caller's default applies"
                )),
                code: EvaluationErrorCode::General(reason_name),
            });
        };
        let Some(value) = convert(variant) else {
            return Err(EvaluationError {
                code: EvaluationErrorCode::TypeMismatch,
                message: Some(format!(
                    "variant `{}` of feature flag `{flag_key}` has {}, not {requested}",
                    variant.name,
                    variant
                        .payload
                        .as_ref()
                        .map_or("no payload", Payload::type_name),
                )),
            });
        };
        Ok(ResolutionDetails {
            value,
            variant: Some(variant.name.clone()),
            reason,
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
            variant: Some("off".to_owned()),
            reason: Some(EvaluationReason::Disabled),
            flag_metadata: Some(metadata),
        }
    }

    #[cold]
    fn invalid_context(
        &self,
        flag_key: &str,
        attributes: &ContextAttributes<'_>,
    ) -> EvaluationError {
        let snapshot = self.flags.snapshot();
        let rule = snapshot.get(flag_key).and_then(|flag| {
            flag.rules
                .iter()
                .find(|rule| rule.evaluate(attributes) == RuleOutcome::WrongType)
        });
        let message = match rule {
            Some(rule) => format!(
                "feature flag `{flag_key}` compares context attribute `{}` with `{}`, which \
                 cannot compare the attribute's value; give it the type the rule expects",
                rule.attribute, rule.operator
            ),
            None => format!("feature flag `{flag_key}` cannot compare a context attribute"),
        };
        EvaluationError {
            code: EvaluationErrorCode::InvalidContext,
            message: Some(message),
        }
    }

    #[cold]
    fn invalid_config(&self, flag_key: &str) -> EvaluationError {
        let problem = self
            .flags
            .snapshot()
            .get(flag_key)
            .and_then(|flag| flag.validate_targeting().err())
            .map_or_else(
                || format!("feature flag `{flag_key}` has an invalid configuration"),
                |problem| problem.to_string(),
            );
        EvaluationError {
            code: EvaluationErrorCode::ParseError,
            message: Some(problem),
        }
    }
}

/// The evaluation context's custom fields as attributes for rules.
struct ContextAttributes<'a>(&'a EvaluationContext);

impl Attributes for ContextAttributes<'_> {
    fn attribute(&self, name: &str) -> Option<Attribute<'_>> {
        // Integers beyond 2^53 round, as documented for `Attribute::Number`.
        #[allow(clippy::cast_precision_loss)]
        self.0.custom_fields.get(name).map(|value| match value {
            EvaluationContextFieldValue::Bool(b) => Attribute::Bool(*b),
            EvaluationContextFieldValue::Int(i) => Attribute::Number(*i as f64),
            EvaluationContextFieldValue::Float(f) => Attribute::Number(*f),
            EvaluationContextFieldValue::String(s) => Attribute::Str(s),
            _ => Attribute::Other,
        })
    }
}

fn flag_not_found(flag_key: &str) -> EvaluationError {
    EvaluationError {
        code: EvaluationErrorCode::FlagNotFound,
        message: Some(format!("no feature flag is named `{flag_key}`")),
    }
}

/// A payload as an OpenFeature value; `None` for JSON `null`, which OpenFeature cannot hold.
fn to_value(payload: &Payload) -> Option<Value> {
    Some(match payload {
        Payload::Null => return None,
        Payload::Bool(b) => Value::Bool(*b),
        Payload::Int(i) => Value::Int(*i),
        Payload::Float(f) => Value::Float(*f),
        Payload::String(s) => Value::String(s.clone()),
        Payload::Array(items) => Value::Array(items.iter().filter_map(to_value).collect()),
        Payload::Object(fields) => Value::Struct(to_struct(fields)),
    })
}

fn to_struct(fields: &[(String, Payload)]) -> StructValue {
    let mut value = StructValue::default();
    for (key, field) in fields {
        if let Some(field) = to_value(field) {
            value.add_field(key, field);
        }
    }
    value
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
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve_typed(
            flag_key,
            evaluation_context,
            "an integer",
            |variant| match variant.payload {
                Some(Payload::Int(i)) => Some(i),
                _ => None,
            },
        )
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve_typed(flag_key, evaluation_context, "a float", |variant| {
            // An integer payload is a number too; beyond 2^53 it rounds.
            #[allow(clippy::cast_precision_loss)]
            match variant.payload {
                Some(Payload::Float(f)) => Some(f),
                Some(Payload::Int(i)) => Some(i as f64),
                _ => None,
            }
        })
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve_typed(
            flag_key,
            evaluation_context,
            "a string",
            |variant| match &variant.payload {
                Some(Payload::String(s)) => Some(s.clone()),
                None => Some(variant.name.clone()),
                Some(_) => None,
            },
        )
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.resolve_typed(
            flag_key,
            evaluation_context,
            "an object",
            |variant| match &variant.payload {
                Some(Payload::Object(fields)) => Some(to_struct(fields)),
                _ => None,
            },
        )
    }
}
