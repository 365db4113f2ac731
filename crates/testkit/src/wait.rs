//! Waiting for a condition without sleeping: re-check whenever a signal says something changed.

use std::time::Duration;

use tokio::sync::watch;

use crate::TestkitError;

/// Waits until `check` holds, re-checking each time `changes` sees a new value (a hot-reload
/// update counter, a feed's generation), for at most `timeout`. `what` names the condition in the
/// error, e.g. `"the flag is on"`.
pub async fn until_changed<T>(
    mut changes: watch::Receiver<T>,
    timeout: Duration,
    what: &str,
    check: impl Fn() -> bool,
) -> Result<(), TestkitError> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check() {
        let signalled = tokio::time::timeout_at(deadline, changes.changed()).await;
        if !matches!(signalled, Ok(Ok(()))) {
            return Err(TestkitError::TimedOut {
                what: what.to_owned(),
                timeout,
            });
        }
    }
    Ok(())
}
