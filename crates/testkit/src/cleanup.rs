//! Shared machinery: unique names and synchronous cleanup from `Drop`.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::TestkitError;

/// How long connecting to a server may take before it counts as unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one cleanup may take; a hung server must not hang the test binary forever.
const CLEANUP_TIMEOUT: Duration = Duration::from_mins(1);

/// A random token of lowercase letters and digits, valid in every name the servers accept
/// (database names, bucket names, Redis keys, AMQP names).
pub(crate) fn unique_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Waits for `future`, turning a timeout into `on_timeout()`.
#[cfg(any(
    feature = "postgres",
    feature = "redis",
    feature = "amqp",
    feature = "clickhouse"
))]
pub(crate) async fn within<T>(
    limit: Duration,
    future: impl Future<Output = Result<T, TestkitError>>,
    on_timeout: impl FnOnce() -> TestkitError,
) -> Result<T, TestkitError> {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| Err(on_timeout()))
}

/// Runs an async cleanup to completion from synchronous code such as `Drop`.
///
/// `Drop` often runs on a thread that is driving a tokio runtime (`#[tokio::test]`), where
/// blocking on a future would panic or deadlock, and the resource's own connections belong to
/// that runtime. So the cleanup gets a fresh thread with its own current-thread runtime and must
/// open its own connections; the caller blocks until it is done, so the resource is gone when
/// `drop` returns.
pub(crate) fn run_blocking<F, Fut>(what: &str, cleanup: F) -> Result<(), TestkitError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), TestkitError>>,
{
    let runtime_error = |what: &str, source: Box<dyn std::error::Error + Send + Sync>| {
        TestkitError::CleanupRuntime {
            what: what.to_owned(),
            source,
        }
    };
    let owned_what = what.to_owned();
    let thread = std::thread::Builder::new()
        .name("groundwork-testkit-cleanup".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| runtime_error(&owned_what, err.into()))?;
            runtime.block_on(async move {
                tokio::time::timeout(CLEANUP_TIMEOUT, cleanup())
                    .await
                    .unwrap_or_else(|_| {
                        Err(runtime_error(
                            &owned_what,
                            format!("cleanup did not finish within {CLEANUP_TIMEOUT:?}").into(),
                        ))
                    })
            })
        })
        .map_err(|err| runtime_error(what, err.into()))?;

    thread
        .join()
        .unwrap_or_else(|_panic| Err(runtime_error(what, "the cleanup thread panicked".into())))
}

/// Runs `cleanup` from `Drop`, reporting a failure on stderr: `Drop` may run while a failing test
/// unwinds, and panicking there would abort the whole test binary and hide the real failure.
pub(crate) fn run_in_drop<F, Fut>(what: &str, cleanup: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), TestkitError>>,
{
    if let Err(err) = run_blocking(what, cleanup) {
        eprintln!("groundwork-testkit: could not clean up {what}: {err:?}");
    }
}
