//! Uniquely named queues and exchanges per test on a shared RabbitMQ.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use lapin::options::{
    BasicPublishOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use crate::TestkitError;
use crate::cleanup::{self, CONNECT_TIMEOUT};
use crate::infra_env::{InfraEnv, Service};

/// A connection to a real RabbitMQ and a unique name prefix (`gw.test.<random>.`); every queue
/// and exchange named through [`TestAmqp::name`] is deleted on drop.
///
/// A virtual host per test would isolate better, but creating one needs the management plugin,
/// which the local test servers do not run; unique names keep parallel tests apart just as well.
pub struct TestAmqp {
    url: String,
    prefix: String,
    connection: Connection,
    names: Mutex<Vec<String>>,
    cleaned: bool,
}

impl TestAmqp {
    /// Connects to the server found by [`InfraEnv::discover`] (`RABBITMQ_URL`).
    pub async fn create() -> Result<Self, TestkitError> {
        let env = InfraEnv::discover()?;
        Self::create_on(&env.url(Service::RabbitMq)).await
    }

    /// Connects to the server at `url` (`amqp://user:password@host:port/vhost`).
    pub async fn create_on(url: &str) -> Result<Self, TestkitError> {
        let connection = connect(url).await?;
        Ok(Self {
            url: url.to_owned(),
            prefix: format!("gw.test.{}.", cleanup::unique_token()),
            connection,
            names: Mutex::new(Vec::new()),
            cleaned: false,
        })
    }

    /// `base` under this test's prefix, e.g. `gw.test.k3x9q2m1a0zz.orders`, to use as a queue or
    /// exchange name. The name is remembered and deleted, as a queue and as an exchange, on drop.
    pub fn name(&self, base: &str) -> String {
        let name = format!("{}{base}", self.prefix);
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if !names.contains(&name) {
            names.push(name.clone());
        }
        name
    }

    /// The prefix of every name this test hands out, ending in `.`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The connection to the server; open channels with [`Connection::create_channel`].
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Declares `queue` (a name from [`TestAmqp::name`]) on `channel` with the default options.
    pub async fn declare_queue(&self, channel: &Channel, queue: &str) -> Result<(), TestkitError> {
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .map(drop)
            .map_err(|err| self.error(format!("declaring queue {queue}"), err))
    }

    /// Declares `queue` on `channel` and binds it to `exchange` with `routing_key`.
    pub async fn bind_queue(
        &self,
        channel: &Channel,
        queue: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), TestkitError> {
        self.declare_queue(channel, queue).await?;
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|err| self.error(format!("binding queue {queue} to {exchange}"), err))
    }

    /// Publishes `body` as a persistent message to `exchange` with `routing_key`, on a channel of
    /// its own that is closed afterwards.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
    ) -> Result<(), TestkitError> {
        let action = || format!("publishing to {exchange} with {routing_key}");
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|err| self.error(action(), err))?;
        channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .map_err(|err| self.error(action(), err))?;
        channel
            .close(200, "published".into())
            .await
            .map_err(|err| self.error(action(), err))
    }

    fn error(&self, action: String, err: lapin::Error) -> TestkitError {
        TestkitError::server(Service::RabbitMq, &self.url, action, err)
    }

    /// Deletes this test's queues and exchanges now and reports failure, instead of on drop
    /// where errors can only be printed.
    pub async fn cleanup(mut self) -> Result<(), TestkitError> {
        self.cleaned = true;
        let names = self.take_names();
        delete_names(&self.connection, &self.url, &names).await
    }

    fn take_names(&self) -> Vec<String> {
        std::mem::take(&mut *self.names.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for TestAmqp {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let names = self.take_names();
        if names.is_empty() {
            return;
        }
        let url = self.url.clone();
        cleanup::run_in_drop(
            &format!("rabbitmq queues and exchanges {}*", self.prefix),
            move || async move {
                // The test's connection is driven by the test's runtime, which is blocked here.
                let connection = connect(&url).await?;
                let result = delete_names(&connection, &url, &names).await;
                let _ = connection.close(200, "testkit cleanup done".into()).await;
                result
            },
        );
    }
}

impl fmt::Debug for TestAmqp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestAmqp")
            .field("url", &groundwork_config::redact_url(&self.url))
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

async fn connect(url: &str) -> Result<Connection, TestkitError> {
    cleanup::within(
        CONNECT_TIMEOUT,
        async {
            Connection::connect(url, ConnectionProperties::default())
                .await
                .map_err(|err| TestkitError::unreachable(Service::RabbitMq, url, err))
        },
        || {
            TestkitError::unreachable(
                Service::RabbitMq,
                url,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            )
        },
    )
    .await
}

/// Deletes each name as a queue and as an exchange; a missing one is fine.
///
/// RabbitMQ answers a delete of something missing with success, but a broker may close the
/// channel instead, so after a failed delete the next one gets a fresh channel.
async fn delete_names(
    connection: &Connection,
    url: &str,
    names: &[String],
) -> Result<(), TestkitError> {
    let mut channel = open_channel(connection, url).await?;
    for name in names {
        if channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await
            .is_err()
        {
            channel = open_channel(connection, url).await?;
        }
        if channel
            .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .is_err()
        {
            channel = open_channel(connection, url).await?;
        }
    }
    let _ = channel.close(200, "testkit cleanup done".into()).await;
    Ok(())
}

async fn open_channel(connection: &Connection, url: &str) -> Result<Channel, TestkitError> {
    connection.create_channel().await.map_err(|err| {
        TestkitError::server(Service::RabbitMq, url, "opening a channel for cleanup", err)
    })
}
