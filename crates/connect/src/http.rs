//! reqwest clients that trust the configured CA.

use std::time::Duration;

use crate::TlsSettings;
use crate::error::{ConnectError, Service};

/// A reqwest client for `https://` servers verified against `tls.ca_cert` or else the system's
/// roots, presenting `tls.client_cert`/`client_key` when given; rustls with aws-lc-rs either way.
/// Plain `http://` URLs still work with it: the URL's scheme decides per request.
pub fn http_client(
    tls: &TlsSettings,
    connect_timeout: Duration,
) -> Result<reqwest::Client, ConnectError> {
    let builder = reqwest::Client::builder().connect_timeout(connect_timeout);
    let builder = if tls.is_configured() {
        let config = tls.client_config().map_err(|source| ConnectError::Tls {
            service: Service::Http,
            source,
        })?;
        builder.tls_backend_preconfigured((*config).clone())
    } else {
        builder
    };
    builder.build().map_err(|error| ConnectError::Connect {
        service: Service::Http,
        host: "-".to_owned(),
        reason: format!("cannot build the HTTP client: {error}"),
    })
}
