//! The [`HealthCheck`] trait and what a check reports.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

/// The outcome of a check, of a component, or of the whole service, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy.
    Pass,
    /// Healthy, with a concern worth a look (still ready to serve).
    Warn,
    /// Unhealthy.
    Fail,
}

impl Status {
    /// The lowercase name used on the wire: `pass`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of thing a component is, as `componentType` in `application/health+json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ComponentType {
    /// A database or other store: PostgreSQL, Redis, ClickHouse.
    Datastore,
    /// Another service or a part of this one: a message broker, a config feed.
    Component,
    /// A property of the host or process: disk, memory, start-up.
    System,
}

/// The component a check observes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// The name: the path of its endpoint (`/health/<name>`) and the first half of its keys in
    /// `/health/status` (`<name>:responseTime`). ASCII letters, digits, `-` and `_`.
    pub name: Cow<'static, str>,
    /// What kind of component it is.
    pub kind: ComponentType,
}

impl Component {
    /// A component called `name`.
    pub fn new(name: impl Into<Cow<'static, str>>, kind: ComponentType) -> Self {
        Self {
            name: name.into(),
            kind,
        }
    }
}

/// One measured value of a check: `observedValue` and `observedUnit` under the key
/// `<component>:<measurement>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// What was measured, e.g. `connections`.
    pub measurement: Cow<'static, str>,
    /// The value, any JSON value (usually a number).
    pub value: serde_json::Value,
    /// The unit, e.g. `ms` or `s`.
    pub unit: Option<Cow<'static, str>>,
}

/// What one run of a check found.
///
/// The runner adds the check's own duration as the `responseTime` observation (in `ms`) unless
/// the check reports one itself, so checks only report what they alone know.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CheckResult {
    /// Pass, warn or fail.
    pub status: Status,
    /// Why the check did not pass, for people. Never put a password or a URL here; the runner
    /// removes URLs and `password=` pairs anyway.
    pub output: Option<String>,
    /// Measured values.
    pub observations: Vec<Observation>,
}

impl CheckResult {
    /// A passing result.
    pub fn pass() -> Self {
        Self {
            status: Status::Pass,
            output: None,
            observations: Vec::new(),
        }
    }

    /// A warning, with the reason.
    pub fn warn(output: impl Into<String>) -> Self {
        Self {
            status: Status::Warn,
            output: Some(output.into()),
            observations: Vec::new(),
        }
    }

    /// A failure, with the reason.
    pub fn fail(output: impl Into<String>) -> Self {
        Self {
            status: Status::Fail,
            output: Some(output.into()),
            observations: Vec::new(),
        }
    }

    /// Adds a measured value.
    #[must_use]
    pub fn with_observation(
        mut self,
        measurement: impl Into<Cow<'static, str>>,
        value: impl Into<serde_json::Value>,
        unit: Option<&'static str>,
    ) -> Self {
        self.observations.push(Observation {
            measurement: measurement.into(),
            value: value.into(),
            unit: unit.map(Cow::Borrowed),
        });
        self
    }
}

/// A check of one dependency or property the service needs.
///
/// A check does its work and returns; the [`Health`](crate::Health) runner adds the timeout, the
/// cache, single-flight and the latency measurement around it, so a check need not protect
/// itself against probes arriving a thousand times a second.
///
/// ```
/// use groundwork_health::{CheckResult, Component, ComponentType, HealthCheck};
///
/// struct DiskSpace;
///
/// impl HealthCheck for DiskSpace {
///     fn component(&self) -> Component {
///         Component::new("disk", ComponentType::System)
///     }
///
///     async fn check(&self) -> CheckResult {
///         let free_ratio = 0.42; // measure it here
///         let result = if free_ratio < 0.1 {
///             CheckResult::warn("less than 10% of the disk is free")
///         } else {
///             CheckResult::pass()
///         };
///         result.with_observation("free", free_ratio * 100.0, Some("%"))
///     }
/// }
/// ```
pub trait HealthCheck: Send + Sync + 'static {
    /// The component this check observes.
    fn component(&self) -> Component;

    /// Runs the check once.
    fn check(&self) -> impl Future<Output = CheckResult> + Send;
}

/// Whether a failing check makes the service not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Criticality {
    /// The service cannot serve without it: a failure makes `/health` answer 503.
    Critical,
    /// The service degrades without it: a failure counts as a warning, the service stays ready.
    NonCritical,
}

/// How a check is run; [`CheckOptions::default`] is a critical check with a 2 s timeout under
/// the check's own component name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckOptions {
    /// Whether a failure makes the service not ready.
    pub criticality: Criticality,
    /// How long the check may take; after that it fails. 2 s.
    pub timeout: Duration,
    /// A name replacing the check's own component name, e.g. `database-replica` for a second pool.
    pub name: Option<Cow<'static, str>>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            criticality: Criticality::Critical,
            timeout: Duration::from_secs(2),
            name: None,
        }
    }
}

impl CheckOptions {
    /// Makes the check non-critical: a failure is reported as a warning for readiness.
    #[must_use]
    pub fn non_critical(mut self) -> Self {
        self.criticality = Criticality::NonCritical;
        self
    }

    /// Sets [`CheckOptions::timeout`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`CheckOptions::name`].
    #[must_use]
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`HealthCheck`] made object safe, so checks of different types live in one list.
pub(crate) trait DynHealthCheck: Send + Sync + 'static {
    fn check_boxed(&self) -> BoxFuture<'_, CheckResult>;
}

impl<C: HealthCheck> DynHealthCheck for C {
    fn check_boxed(&self) -> BoxFuture<'_, CheckResult> {
        Box::pin(self.check())
    }
}
