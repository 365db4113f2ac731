//! Results as values and as `application/health+json` (draft-inadarei-api-health-check).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::check::{Component, ComponentType, Observation, Status};
use crate::health::{CachedRun, Inner};

/// Where the service is in its life, as far as readiness is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Starting,
    Running,
    ShuttingDown,
}

/// What one check found in its latest run.
#[derive(Debug, Clone)]
pub struct ComponentReport {
    pub(crate) component: Component,
    pub(crate) critical: bool,
    pub(crate) status: Status,
    pub(crate) output: Option<String>,
    pub(crate) observations: Vec<Observation>,
    pub(crate) time: SystemTime,
}

impl ComponentReport {
    /// The component.
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// Whether a failure makes the service not ready.
    pub fn is_critical(&self) -> bool {
        self.critical
    }

    /// The check's own status (a failed non-critical check is [`Status::Fail`] here).
    pub fn status(&self) -> Status {
        self.status
    }

    /// Why the check did not pass, with URLs and passwords removed.
    pub fn output(&self) -> Option<&str> {
        self.output.as_deref()
    }

    /// Measured values, `responseTime` first.
    pub fn observations(&self) -> &[Observation] {
        &self.observations
    }

    /// When the check finished.
    pub fn time(&self) -> SystemTime {
        self.time
    }

    /// The status this component contributes to readiness: a non-critical failure is a warning.
    pub(crate) fn readiness_status(&self) -> Status {
        if self.critical {
            self.status
        } else {
            self.status.min(Status::Warn)
        }
    }
}

/// Everything [`Health::report`](crate::Health::report) found.
#[derive(Debug, Clone)]
pub struct HealthReport {
    inner: Arc<Inner>,
    run: Arc<CachedRun>,
    lifecycle: Lifecycle,
}

impl HealthReport {
    pub(crate) fn new(inner: Arc<Inner>, run: Arc<CachedRun>, lifecycle: Lifecycle) -> Self {
        Self {
            inner,
            run,
            lifecycle,
        }
    }

    /// The service's status: [`Status::Fail`] while starting or shutting down, else the worst
    /// critical check, with non-critical failures counted as warnings.
    pub fn status(&self) -> Status {
        match self.lifecycle {
            Lifecycle::Running => self.run.status,
            Lifecycle::Starting | Lifecycle::ShuttingDown => Status::Fail,
        }
    }

    /// Each check's latest result, in registration order.
    pub fn components(&self) -> &[ComponentReport] {
        &self.run.components
    }

    /// The component called `name`.
    pub fn component(&self, name: &str) -> Option<&ComponentReport> {
        self.run
            .components
            .iter()
            .find(|c| c.component.name == name)
    }

    /// Why the service as a whole is not ready, when start-up or shutdown is the reason.
    pub fn output(&self) -> Option<String> {
        match self.lifecycle {
            Lifecycle::Running => None,
            Lifecycle::ShuttingDown => Some("shutting down".to_owned()),
            Lifecycle::Starting => Some(format!(
                "start-up work not done: {}",
                self.inner.pending_startup().join(", ")
            )),
        }
    }

    /// The full `application/health+json` document, as `/health/status` serves it to those who
    /// may see details.
    pub fn to_json(&self) -> serde_json::Value {
        // Serializing plain strings, numbers and maps cannot fail.
        serde_json::to_value(self.document(true)).unwrap_or_default()
    }

    /// The document for the whole service; `details` adds the service's identity and the checks.
    pub(crate) fn document(&self, details: bool) -> Document<'_> {
        let output = self.output();
        if !details {
            return Document::status_only(self.status(), output);
        }
        Document::new(
            self.status(),
            output,
            &self.inner,
            self.run.components.iter(),
        )
    }

    /// The document for one component; `None` if there is no such component.
    pub(crate) fn component_document(&self, name: &str, details: bool) -> Option<Document<'_>> {
        let component = self.component(name)?;
        if !details {
            return Some(Document::status_only(component.status, None));
        }
        Some(Document::new(
            component.status,
            None,
            &self.inner,
            std::iter::once(component),
        ))
    }
}

/// An `application/health+json` document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Document<'a> {
    pub(crate) status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    release_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<BTreeMap<String, Vec<CheckEntry<'a>>>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckEntry<'a> {
    component_id: &'a str,
    component_type: ComponentType,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_value: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_unit: Option<&'a str>,
    status: Status,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
}

impl<'a> Document<'a> {
    fn status_only(status: Status, output: Option<String>) -> Self {
        Self {
            status,
            version: None,
            release_id: None,
            service_id: None,
            description: None,
            output,
            checks: None,
        }
    }

    fn new(
        status: Status,
        output: Option<String>,
        inner: &'a Inner,
        components: impl Iterator<Item = &'a ComponentReport>,
    ) -> Self {
        let mut checks = BTreeMap::new();
        for report in components {
            let name = report.component.name.as_ref();
            let time = humantime::format_rfc3339_millis(report.time).to_string();
            let entry = |observation: Option<&'a Observation>| CheckEntry {
                component_id: name,
                component_type: report.component.kind,
                observed_value: observation.map(|o| &o.value),
                observed_unit: observation.and_then(|o| o.unit.as_deref()),
                status: report.status,
                time: time.clone(),
                output: report.output.as_deref(),
            };
            if report.observations.is_empty() {
                checks.insert(name.to_owned(), vec![entry(None)]);
            }
            for observation in &report.observations {
                checks.insert(
                    format!("{name}:{}", observation.measurement),
                    vec![entry(Some(observation))],
                );
            }
        }
        let service = &inner.service;
        Self {
            status,
            version: service.version.as_deref(),
            release_id: service.release_id.as_deref(),
            service_id: service.service_id.as_deref(),
            description: service.description.as_deref(),
            output,
            checks: Some(checks),
        }
    }
}
