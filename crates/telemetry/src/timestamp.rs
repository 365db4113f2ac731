//! The timestamps of log lines and exported spans: RFC 3339 in UTC with milliseconds.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last instant humantime writes, 9999-12-31T23:59:59.999Z.
const LAST_WRITABLE: Duration = Duration::from_millis(253_402_300_799_999);

/// RFC 3339 in UTC with milliseconds and `Z`: `2025-01-15T08:30:15.123Z`.
///
/// Written by humantime, which measured about twice as fast as the hand-written writer it
/// replaced (BENCHMARKS.md, groundwork-telemetry). humantime panics on an instant before the
/// epoch and refuses one after the year 9999, so an instant outside that range is written as the
/// nearest one inside it.
pub(crate) fn write_timestamp(out: &mut String, now: SystemTime) {
    let now = now.clamp(UNIX_EPOCH, UNIX_EPOCH + LAST_WRITABLE);
    let _ = write!(out, "{}", humantime::format_rfc3339_millis(now));
}
