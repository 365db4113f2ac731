//! What can go wrong writing to the outbox.

/// An event that could not be written to the outbox, or migrations that could not be applied.
///
/// The relay itself returns no errors: it logs each failure, counts it in
/// [`RelayStats`](crate::RelayStats) and retries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// A field of the message cannot be sent over AMQP as it is.
    #[error("outbox message: {field} {problem}")]
    InvalidMessage {
        /// The field, e.g. `routing_key` or `header traceparent`.
        field: String,
        /// What is wrong with it and what is allowed.
        problem: String,
    },
    /// The insert into the outbox table failed (the caller's transaction is then unusable and
    /// should be rolled back).
    #[error(
        "cannot write the event to the outbox table groundwork_outbox (did groundwork_outbox::migrate run?)"
    )]
    Enqueue(#[source] sqlx::Error),
    /// The outbox migrations could not be applied.
    #[error("cannot apply the outbox migrations")]
    Migrate(#[from] groundwork_migrate::MigrateError),
}
