//! ClickHouse clients over `http://` or `https://`.

use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::TlsSettings;
use crate::error::{ConnectError, Service, parse};

/// How long an idle connection is kept; ClickHouse closes them after 3 s, so keep it below.
const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A ClickHouse client for the HTTP interface at `url`.
///
/// The URL carries everything: `http(s)://user:password@host:8123/database`. The user and the
/// password are taken from the user information (percent-decoded) or from `user`/`password`
/// query parameters, the database from a `database` query parameter or else the first path
/// segment.
/// `https://` is verified against `tls.ca_cert` or else the system's roots, with
/// `tls.client_cert`/`client_key` when the server asks for a client certificate. TLS settings
/// with a plain `http://` URL are refused.
///
/// The client connects lazily; a wrong certificate fails the first query with an error whose
/// chain names the TLS reason.
pub fn clickhouse_client(url: &str, tls: &TlsSettings) -> Result<clickhouse::Client, ConnectError> {
    let parsed = parse(Service::ClickHouse, url)?;
    let url_error = |reason: String| ConnectError::Url {
        service: Service::ClickHouse,
        url: groundwork_config::redact_url(url).into_owned(),
        reason,
    };
    let secure = match parsed.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(url_error(format!(
                "the scheme `{other}` is not `http` or `https` (ClickHouse's HTTP interface)"
            )));
        }
    };
    if tls.is_configured() && !secure {
        return Err(url_error(
            "TLS settings are given but the URL is plain-text `http://`; use `https://`".into(),
        ));
    }
    let Some(host) = parsed.host_str() else {
        return Err(url_error("it has no host".into()));
    };
    let base = match parsed.port() {
        Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    };
    let query = |name: &str| {
        parsed
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let decode = |raw: &str| {
        percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map(std::borrow::Cow::into_owned)
            .map_err(|_| url_error("a percent-encoded part is not UTF-8".into()))
    };
    let user = match parsed.username() {
        "" => query("user"),
        raw => Some(decode(raw)?),
    };
    let password = match parsed.password() {
        Some(raw) => Some(decode(raw)?),
        None => query("password"),
    };
    let database = match query("database") {
        Some(database) => Some(database),
        None => parsed
            .path()
            .trim_matches('/')
            .split('/')
            .next()
            .filter(|segment| !segment.is_empty())
            .map(decode)
            .transpose()?,
    };

    let mut client = if tls.is_configured() {
        let config = tls.client_config().map_err(|source| ConnectError::Tls {
            service: Service::ClickHouse,
            source,
        })?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_keepalive(Some(std::time::Duration::from_mins(1)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*config).clone())
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let http_client = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        clickhouse::Client::with_http_client(http_client)
    } else {
        clickhouse::Client::default()
    }
    .with_url(base);
    if let Some(user) = user {
        client = client.with_user(user);
    }
    if let Some(password) = password {
        client = client.with_password(password);
    }
    if let Some(database) = database {
        client = client.with_database(database);
    }
    Ok(client)
}
