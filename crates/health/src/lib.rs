#![doc = include_str!("../README.md")]

mod check;
mod checks;
mod health;
mod output;
mod report;
mod router;

pub use check::{
    CheckOptions, CheckResult, Component, ComponentType, Criticality, HealthCheck, Observation,
    Status,
};
#[cfg(feature = "clickhouse")]
pub use checks::clickhouse::ClickHouseCheck;
#[cfg(feature = "live")]
pub use checks::freshness::ConfigFreshnessCheck;
#[cfg(feature = "postgres")]
pub use checks::postgres::PostgresCheck;
#[cfg(feature = "rabbitmq")]
pub use checks::rabbitmq::RabbitMqCheck;
#[cfg(feature = "redis")]
pub use checks::redis::RedisCheck;
pub use health::{Health, HealthBuilder, HealthError, StartupTask};
pub use report::{ComponentReport, HealthReport};
pub use router::{Details, HEALTH_JSON};
