//! Checks for the dependencies the platforms use, each behind its cargo feature.

#[cfg(feature = "clickhouse")]
pub(crate) mod clickhouse;
#[cfg(feature = "live")]
pub(crate) mod freshness;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "rabbitmq")]
pub(crate) mod rabbitmq;
#[cfg(feature = "redis")]
pub(crate) mod redis;
