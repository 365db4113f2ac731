//! The settings that choose how a service follows hot-reload config and flags
//! (`groundwork-live`), and that run a fan-out relay inside the service.

use groundwork_config::{ExposeSecret as _, SecretUrl};
use groundwork_live::{FeedOptions, Relay, RelayError, RelayOptions, Transport, TransportError};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// How a service's live config and flags learn of changes, and whether the service runs the
/// relay. Embed it in the service's config type; with the field named `live`, its variables are
/// `LIVE_TRANSPORT`, `LIVE_NAMESPACE` and `LIVE_RELAY`:
///
/// ```
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Settings {
///     #[serde(default)]
///     live: groundwork_service::LiveSettings,
/// }
/// ```
///
/// Then [`LiveSettings::feed_options`] for every feed (`groundwork_live::config::watch`,
/// `groundwork_flags::store::watch`), and [`LiveSettings::start_relay`] (or
/// [`Startup::start_live_relay`](crate::Startup::start_live_relay) under [`run`](crate::run)),
/// which starts a relay only when `LIVE_RELAY` is on. Every instance may run one: one leads,
/// the others stand by.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(default)]
#[non_exhaustive]
pub struct LiveSettings {
    /// How changes reach this instance. Unset: each feed holds its own `LISTEN` connection to
    /// PostgreSQL (which does not work through PgBouncer in transaction pooling mode). A
    /// `nats://` or `tls://` URL (NATS) or a `redis://` or `rediss://` URL (Redis pub/sub): feeds
    /// subscribe to what a relay publishes there and load through the ordinary pool.
    #[schemars(example = "nats://127.0.0.1:4222")]
    pub transport: Option<SecretUrl>,
    /// Prefix of the NATS subjects or Redis channels the relay publishes on; relays and
    /// instances of one database must agree. Default `groundwork.live`.
    pub namespace: String,
    /// Run a relay inside this service: it `LISTEN`s on the database (on two connections of its
    /// own, which must reach PostgreSQL directly or through session pooling) and publishes every
    /// change to `LIVE_TRANSPORT`. Any number of instances may set it; one leads. Default off.
    pub relay: bool,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            transport: None,
            namespace: groundwork_live::DEFAULT_NAMESPACE.to_owned(),
            relay: false,
        }
    }
}

/// The live settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveSettingsError {
    /// `LIVE_TRANSPORT` is not a NATS or Redis URL.
    #[error("LIVE_TRANSPORT: {0}")]
    Transport(#[from] TransportError),
    /// `LIVE_RELAY` is on without a NATS or Redis transport.
    #[error("LIVE_RELAY is on, but LIVE_TRANSPORT names no NATS or Redis server to publish to")]
    RelayWithoutTransport,
    /// The relay refused its options (the namespace or a channel).
    #[error("LIVE_RELAY: {0}")]
    Relay(#[from] RelayError),
}

impl LiveSettings {
    /// The transport `LIVE_TRANSPORT` names; [`Transport::Postgres`] when unset.
    pub fn transport(&self) -> Result<Transport, LiveSettingsError> {
        match &self.transport {
            None => Ok(Transport::Postgres),
            Some(url) => Ok(Transport::parse(url.expose_secret())?),
        }
    }

    /// Feed options following these settings (transport and namespace), the other options at
    /// their defaults.
    pub fn feed_options(&self) -> Result<FeedOptions, LiveSettingsError> {
        Ok(FeedOptions::default()
            .transport(self.transport()?)
            .namespace(self.namespace.as_str()))
    }

    /// With `LIVE_RELAY` on, starts a relay of `channels` (e.g. `groundwork_live::config::CHANNEL`
    /// and `groundwork_flags::store::CHANNEL`) for the database `pool` connects to; `None` when
    /// it is off. Keep the relay for as long as the service runs; dropping it stops it.
    pub fn start_relay<S: Into<String>>(
        &self,
        pool: &PgPool,
        channels: impl IntoIterator<Item = S>,
    ) -> Result<Option<Relay>, LiveSettingsError> {
        if !self.relay {
            return Ok(None);
        }
        let transport = self.transport()?;
        if transport == Transport::Postgres {
            return Err(LiveSettingsError::RelayWithoutTransport);
        }
        let options = RelayOptions::new(transport)
            .namespace(self.namespace.as_str())
            .channels(channels);
        Ok(Some(Relay::start(pool.clone(), options)?))
    }
}
