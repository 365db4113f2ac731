//! The runner: registered checks, the result cache with single-flight, start-up and shutdown.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

use crate::check::{
    CheckOptions, CheckResult, Component, Criticality, DynHealthCheck, HealthCheck, Observation,
    Status,
};
use crate::output;
use crate::report::{ComponentReport, HealthReport, Lifecycle};
use crate::router::Details;

/// Paths under `/health/` that are endpoints of their own, so no component may take them.
const RESERVED_NAMES: [&str; 3] = ["ready", "live", "status"];

/// The service's health: its checks, their cached results, and whether start-up is done and
/// shutdown has begun. Cheap to clone; every clone is the same health.
///
/// ```
/// use groundwork_health::{Details, Health};
///
/// # fn main() -> Result<(), groundwork_health::HealthError> {
/// let mut builder = Health::builder()
///     .service_id("query-engine")
///     .version(env!("CARGO_PKG_VERSION"))
///     .details(Details::Always);
/// let migrations = builder.startup_task("migrations");
/// let health = builder.build()?;
/// let app: axum::Router = axum::Router::new().merge(health.router());
/// // ... run the migrations, then:
/// migrations.done();
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

/// [`Health`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealthError {
    /// Two checks have the same component name.
    #[error(
        "two health checks are named `{name}`; give one another name with `CheckOptions::name`"
    )]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A component name that cannot be a path segment, or that another endpoint uses.
    #[error(
        "health check name `{name}` is not allowed: use ASCII letters, digits, `-` and `_`, and none of `ready`, `live`, `status`"
    )]
    InvalidName {
        /// The name.
        name: String,
    },
}

/// Builds a [`Health`]; start with [`Health::builder`].
#[derive(Debug)]
#[must_use]
pub struct HealthBuilder {
    checks: Vec<Registered>,
    ttl: Duration,
    details: Details,
    service: ServiceInfo,
    startup: Arc<Startup>,
}

/// Who the service is, for `/health/status`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceInfo {
    pub(crate) service_id: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) release_id: Option<String>,
    pub(crate) description: Option<String>,
}

pub(crate) struct Registered {
    pub(crate) component: Component,
    pub(crate) options: CheckOptions,
    check: Arc<dyn DynHealthCheck>,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("component", &self.component)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl HealthBuilder {
    /// Adds a critical check with a 2 s timeout.
    pub fn check(self, check: impl HealthCheck) -> Self {
        self.check_with(check, CheckOptions::default())
    }

    /// Adds a check run with `options`.
    pub fn check_with(mut self, check: impl HealthCheck, options: CheckOptions) -> Self {
        let mut component = check.component();
        if let Some(name) = &options.name {
            component.name.clone_from(name);
        }
        self.checks.push(Registered {
            component,
            options,
            check: Arc::new(check),
        });
        self
    }

    /// How long results are reused: probes within the TTL after a run get its results without
    /// touching any dependency. 1 s.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Who may see check details (`/health/status` and the component endpoints). Default
    /// [`Details::Never`].
    pub fn details(mut self, details: Details) -> Self {
        self.details = details;
        self
    }

    /// `serviceId` in `/health/status`, e.g. the `SERVICE_NAME`.
    pub fn service_id(mut self, service_id: impl Into<String>) -> Self {
        self.service.service_id = Some(service_id.into());
        self
    }

    /// `version` in `/health/status`, e.g. `env!("CARGO_PKG_VERSION")`.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.service.version = Some(version.into());
        self
    }

    /// `releaseId` in `/health/status`, e.g. the image tag or commit.
    pub fn release_id(mut self, release_id: impl Into<String>) -> Self {
        self.service.release_id = Some(release_id.into());
        self
    }

    /// `description` in `/health/status`.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.service.description = Some(description.into());
        self
    }

    /// Registers start-up work, such as migrations or the first config load: the service is not
    /// ready until every task is marked [`StartupTask::done`].
    ///
    /// Tasks are registered on the builder, before anything can probe, so there is no moment at
    /// which the service looks ready before its start-up work is even known.
    pub fn startup_task(&mut self, name: impl Into<String>) -> StartupTask {
        let done = Arc::new(AtomicBool::new(false));
        self.startup.pending.fetch_add(1, Ordering::AcqRel);
        self.startup
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name.into(), done.clone()));
        StartupTask {
            startup: self.startup.clone(),
            done,
        }
    }

    /// Checks the names and builds the [`Health`].
    pub fn build(self) -> Result<Health, HealthError> {
        for (index, registered) in self.checks.iter().enumerate() {
            let name = &registered.component.name;
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !RESERVED_NAMES.contains(&name.as_ref());
            if !valid {
                return Err(HealthError::InvalidName {
                    name: name.to_string(),
                });
            }
            if self.checks[..index]
                .iter()
                .any(|other| other.component.name == *name)
            {
                return Err(HealthError::DuplicateName {
                    name: name.to_string(),
                });
            }
        }
        Ok(Health {
            inner: Arc::new(Inner {
                checks: self.checks,
                ttl: self.ttl,
                details: self.details,
                service: self.service,
                startup: self.startup,
                shutting_down: AtomicBool::new(false),
                cache: ArcSwapOption::empty(),
                in_flight: Mutex::new(None),
            }),
        })
    }
}

/// Start-up work the service waits for before it is ready; see [`HealthBuilder::startup_task`].
///
/// Dropping the task without calling [`StartupTask::done`] leaves the service not ready: work
/// that did not finish must not be mistaken for work that did.
#[derive(Debug)]
#[must_use = "the service stays not ready until the task is marked done"]
pub struct StartupTask {
    startup: Arc<Startup>,
    done: Arc<AtomicBool>,
}

impl StartupTask {
    /// Marks the work done.
    pub fn done(self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.startup.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[derive(Debug, Default)]
struct Startup {
    pending: AtomicUsize,
    tasks: Mutex<Vec<(String, Arc<AtomicBool>)>>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    checks: Vec<Registered>,
    ttl: Duration,
    pub(crate) details: Details,
    pub(crate) service: ServiceInfo,
    startup: Arc<Startup>,
    shutting_down: AtomicBool,
    /// The last complete run of every check.
    cache: ArcSwapOption<CachedRun>,
    /// The run in progress, if any: probes that find the cache expired wait on it instead of
    /// starting their own, which is what bounds the queries to one per dependency per TTL.
    in_flight: Mutex<Option<watch::Receiver<Option<Arc<CachedRun>>>>>,
}

/// The results of one run of every check.
#[derive(Debug)]
pub(crate) struct CachedRun {
    /// When the run finished; the TTL counts from here, so a slow run is not repeated at once.
    finished: Instant,
    pub(crate) components: Vec<ComponentReport>,
    /// Every check combined, with non-critical failures counted as warnings.
    pub(crate) status: Status,
}

impl Health {
    /// A builder with no checks, a TTL of 1 s and details never shown.
    pub fn builder() -> HealthBuilder {
        HealthBuilder {
            checks: Vec::new(),
            ttl: Duration::from_secs(1),
            details: Details::Never,
            service: ServiceInfo::default(),
            startup: Arc::new(Startup::default()),
        }
    }

    /// Marks the start of shutdown: from now on the service reports not ready, so load balancers
    /// stop sending traffic while in-flight requests finish. Liveness is not affected.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
    }

    /// Whether [`Health::begin_shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Readiness: [`Status::Fail`] while start-up work is pending or after shutdown began, else
    /// the combined status of the checks (cached for the TTL).
    pub async fn readiness(&self) -> Status {
        if self.inner.lifecycle() != Lifecycle::Running {
            return Status::Fail;
        }
        // The hot path of every probe: read the cached status without touching a reference
        // count that all worker threads would contend on.
        if let Some(status) = self.inner.fresh_status() {
            return status;
        }
        self.inner.current_run().await.status
    }

    /// Runs the checks (or reuses results younger than the TTL) and reports everything.
    ///
    /// Like [`Health::readiness`], it must run within a Tokio runtime: checks run as tasks.
    pub async fn report(&self) -> HealthReport {
        let run = self.inner.current_run().await;
        HealthReport::new(self.inner.clone(), run, self.inner.lifecycle())
    }

    /// Whether a check named `name` is registered.
    pub(crate) fn has_component(&self, name: &str) -> bool {
        self.inner.checks.iter().any(|c| c.component.name == name)
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The component names, in registration order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.inner.checks.iter().map(|c| c.component.name.as_ref())
    }
}

impl Inner {
    pub(crate) fn lifecycle(&self) -> Lifecycle {
        if self.shutting_down.load(Ordering::Acquire) {
            Lifecycle::ShuttingDown
        } else if self.startup.pending.load(Ordering::Acquire) > 0 {
            Lifecycle::Starting
        } else {
            Lifecycle::Running
        }
    }

    /// The names of start-up tasks not yet done.
    pub(crate) fn pending_startup(&self) -> Vec<String> {
        self.startup
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, done)| !done.load(Ordering::Acquire))
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn fresh_status(&self) -> Option<Status> {
        let cached = self.cache.load();
        match &*cached {
            Some(run) if run.finished.elapsed() < self.ttl => Some(run.status),
            _ => None,
        }
    }

    fn fresh_run(&self) -> Option<Arc<CachedRun>> {
        let cached = self.cache.load();
        match &*cached {
            Some(run) if run.finished.elapsed() < self.ttl => Some(Arc::clone(run)),
            _ => None,
        }
    }

    /// The cached run if younger than the TTL, else the run in progress, else a new run.
    pub(crate) async fn current_run(self: &Arc<Self>) -> Arc<CachedRun> {
        if let Some(run) = self.fresh_run() {
            return run;
        }
        let mut receiver = {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // A run may have finished between the first look and taking the lock.
            if let Some(run) = self.fresh_run() {
                return run;
            }
            if let Some(receiver) = &*in_flight {
                receiver.clone()
            } else {
                let (sender, receiver) = watch::channel(None);
                *in_flight = Some(receiver.clone());
                // The run is a task of its own so that a probe whose client hangs up does not
                // cancel the run everybody else is waiting for.
                tokio::spawn(Arc::clone(self).run_all(sender));
                receiver
            }
        };
        let finished = receiver
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|run| run.clone());
        // `run_all` sends before it can end, so this is only reached if its task was cancelled
        // by a runtime shutting down.
        finished.unwrap_or_else(|| {
            Arc::new(CachedRun {
                finished: Instant::now(),
                components: Vec::new(),
                status: Status::Fail,
            })
        })
    }

    async fn run_all(self: Arc<Self>, sender: watch::Sender<Option<Arc<CachedRun>>>) {
        // Clears the in-flight slot even if this task is cancelled, so later probes start anew.
        let _clear = ClearInFlight(&self);
        let runs: Vec<_> = self
            .checks
            .iter()
            .map(|registered| {
                let check = Arc::clone(&registered.check);
                let timeout = registered.options.timeout;
                // Each check is a task: checks run in parallel, and one that panics fails alone.
                tokio::spawn(async move {
                    let started = Instant::now();
                    let result = tokio::time::timeout(timeout, check.check_boxed()).await;
                    (result, started.elapsed(), SystemTime::now())
                })
            })
            .collect();
        let mut components = Vec::with_capacity(runs.len());
        for (registered, run) in self.checks.iter().zip(runs) {
            let (result, elapsed, time) = match run.await {
                Ok((Ok(result), elapsed, time)) => (result, elapsed, time),
                Ok((Err(_), elapsed, time)) => (
                    CheckResult::fail(format!(
                        "no answer within {}",
                        humantime::format_duration(registered.options.timeout)
                    )),
                    elapsed,
                    time,
                ),
                Err(error) => (
                    CheckResult::fail(format!("the check did not complete: {error}")),
                    Duration::ZERO,
                    SystemTime::now(),
                ),
            };
            components.push(component_report(registered, result, elapsed, time));
        }
        let status = components
            .iter()
            .map(ComponentReport::readiness_status)
            .max()
            .unwrap_or(Status::Pass);
        for component in &components {
            if component.status != Status::Pass {
                tracing::warn!(
                    component = %component.component.name,
                    status = %component.status,
                    output = component.output.as_deref().unwrap_or(""),
                    "health check did not pass"
                );
            }
        }
        let run = Arc::new(CachedRun {
            finished: Instant::now(),
            components,
            status,
        });
        self.cache.store(Some(Arc::clone(&run)));
        let _ = sender.send(Some(run));
    }
}

struct ClearInFlight<'a>(&'a Inner);

impl Drop for ClearInFlight<'_> {
    fn drop(&mut self) {
        *self
            .0
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

fn component_report(
    registered: &Registered,
    mut result: CheckResult,
    elapsed: Duration,
    time: SystemTime,
) -> ComponentReport {
    if !result
        .observations
        .iter()
        .any(|o| o.measurement == "responseTime")
    {
        result.observations.insert(
            0,
            Observation {
                measurement: Cow::Borrowed("responseTime"),
                value: serde_json::Value::from(elapsed.as_secs_f64() * 1000.0),
                unit: Some(Cow::Borrowed("ms")),
            },
        );
    }
    ComponentReport {
        component: registered.component.clone(),
        critical: registered.options.criticality == Criticality::Critical,
        status: result.status,
        output: result.output.as_deref().map(output::scrub),
        observations: result.observations,
        time,
    }
}
