//! Field formatting for `LOG_FORMAT=pretty`: tracing-subscriber's own, with the one masking rule
//! the JSON line applies.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultFields, DefaultVisitor, Writer};

/// tracing-subscriber's `DefaultFields`, except that the `value` of an event whose `key` names a
/// secret (`groundwork_config::is_secret_query_param`) prints as `***`: sqlx logs the connection
/// URL parameters it does not know as `warn!(%key, %value, ..)`.
#[derive(Debug, Default)]
pub(crate) struct PrettyFields(DefaultFields);

impl<'a> MakeVisitor<Writer<'a>> for PrettyFields {
    type Visitor = MaskingVisitor<DefaultVisitor<'a>>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        MaskingVisitor {
            inner: self.0.make_visitor(target),
            secret_key: false,
        }
    }
}

/// Hands every field to `inner`, masking the `value` after a secret-naming `key`.
pub(crate) struct MaskingVisitor<V> {
    inner: V,
    secret_key: bool,
}

impl<V: Visit> MaskingVisitor<V> {
    fn masked(&self, field: &Field) -> bool {
        field.name() == "value" && self.secret_key
    }
}

impl<V: Visit> Visit for MaskingVisitor<V> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.masked(field) {
            self.inner.record_str(field, "***");
            return;
        }
        if field.name() == "key" {
            self.secret_key = groundwork_config::is_secret_query_param(value);
        }
        self.inner.record_str(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.masked(field) {
            self.inner.record_str(field, "***");
        } else {
            self.inner.record_error(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.masked(field) {
            self.inner.record_str(field, "***");
            return;
        }
        if field.name() == "key" {
            // `%key` arrives as a Display wrapper whose Debug is the bare text; `?key` is quoted.
            let text = format!("{value:?}");
            self.secret_key = groundwork_config::is_secret_query_param(text.trim_matches('"'));
        }
        self.inner.record_debug(field, value);
    }
}

impl<V: VisitOutput<fmt::Result>> VisitOutput<fmt::Result> for MaskingVisitor<V> {
    fn finish(self) -> fmt::Result {
        self.inner.finish()
    }
}

impl<V: VisitFmt> VisitFmt for MaskingVisitor<V> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.inner.writer()
    }
}
