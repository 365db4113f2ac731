//! RabbitMQ connections over `amqp://` or `amqps://`.

use std::time::Duration;

use groundwork_config::ExposeSecret as _;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties};

use crate::TlsSettings;
use crate::error::{ConnectError, Service, describe, host_of, parse, reason};

/// Connects to RabbitMQ at `url` within `connect_timeout`.
///
/// `amqps://` connects over TLS, verified against the system's roots plus `tls.ca_cert` (lapin
/// adds a configured CA to the system's roots rather than replacing them), with
/// `tls.client_cert`/`client_key` for brokers that require a client certificate (for example the
/// `EXTERNAL` mechanism). TLS settings with a plain `amqp://` URL are refused.
pub async fn amqp_connect(
    url: &str,
    tls: &TlsSettings,
    properties: ConnectionProperties,
    connect_timeout: Duration,
) -> Result<Connection, ConnectError> {
    let parsed = parse(Service::RabbitMq, url)?;
    let url_error = |reason: String| ConnectError::Url {
        service: Service::RabbitMq,
        url: groundwork_config::redact_url(url).into_owned(),
        reason,
    };
    let secure = match parsed.scheme() {
        "amqp" => false,
        "amqps" => true,
        other => {
            return Err(url_error(format!(
                "the scheme `{other}` is not `amqp` or `amqps`"
            )));
        }
    };
    if tls.is_configured() && !secure {
        return Err(url_error(
            "TLS settings are given but the URL is plain-text `amqp://`; use `amqps://`".into(),
        ));
    }
    tls.validate().map_err(|source| ConnectError::Tls {
        service: Service::RabbitMq,
        source,
    })?;
    let config = OwnedTLSConfig {
        identity: match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
                pem: cert.clone().into_bytes(),
                key: key.expose_secret().as_bytes().to_vec(),
            }),
            _ => None,
        },
        cert_chain: tls.ca_cert.clone(),
    };
    let host = host_of(&parsed);
    let runtime = lapin::runtime::default_runtime().map_err(|error| ConnectError::Connect {
        service: Service::RabbitMq,
        host: host.clone(),
        reason: error.to_string(),
    })?;
    let attempt = Connection::connect_with_config(url, properties, config, runtime);
    match tokio::time::timeout(connect_timeout, attempt).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(ConnectError::Connect {
            service: Service::RabbitMq,
            host,
            reason: reason(secure, &describe(&error)),
        }),
        Err(_) => Err(ConnectError::Timeout {
            service: Service::RabbitMq,
            host,
            timeout: connect_timeout,
            expected: if secure { "TLS" } else { "plain-text" },
        }),
    }
}
