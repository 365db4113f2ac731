//! Secret canaries: a known secret planted in a service's URL settings, and a writer that
//! collects everything the service logs, so a test can show the secret never comes out.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use crate::TestkitError;

/// The query parameters that name a secret in the URLs of the workspace's clients: PostgreSQL's
/// `password` and `sslpassword`, and the `token` of token-authenticated endpoints.
pub const SECRET_QUERY_PARAMETERS: [&str; 3] = ["password", "sslpassword", "token"];

/// Where [`plant_canary`] puts the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plant<'a> {
    /// As the password of the user information, `<canary>-userinfo`. Only for a server that
    /// accepts any password (the test PostgreSQL trusts loopback); Redis without a password
    /// refuses `AUTH`, and RabbitMQ and ClickHouse check it.
    pub userinfo: bool,
    /// Query parameters set to `<canary>-<name>`, replacing any the URL already has.
    pub query: &'a [&'a str],
}

impl Plant<'static> {
    /// The user information's password and every [`SECRET_QUERY_PARAMETERS`] entry.
    pub const EVERYWHERE: Self = Self {
        userinfo: true,
        query: &SECRET_QUERY_PARAMETERS,
    };

    /// Every [`SECRET_QUERY_PARAMETERS`] entry, the user information left as it is.
    pub const QUERY: Self = Self {
        userinfo: false,
        query: &SECRET_QUERY_PARAMETERS,
    };
}

/// `url` with `canary` planted where `plant` says: e.g.
/// `postgres://postgres:<canary>-userinfo@127.0.0.1:5432/db?password=<canary>-password&...`.
///
/// The canary must be ASCII letters, digits, `-`, `.`, `_` or `~`: characters a URL never
/// percent-encodes, so a leak shows the canary verbatim and `text.contains(canary)` finds it.
/// An error names the reason when the canary is not such a string or the URL cannot carry it
/// (it does not parse, or has no host for a password).
pub fn plant_canary(url: &str, canary: &str, plant: Plant<'_>) -> Result<String, TestkitError> {
    let refuse = |reason: String| TestkitError::Canary {
        url: groundwork_config::redact_url(url).into_owned(),
        reason,
    };
    if canary.is_empty()
        || !canary
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
    {
        return Err(refuse(
            "the canary must be a non-empty string of ASCII letters, digits, `-`, `.`, `_` or `~`"
                .to_owned(),
        ));
    }
    let mut parsed = url::Url::parse(url).map_err(|error| refuse(error.to_string()))?;
    let password = plant.userinfo.then(|| format!("{canary}-userinfo"));
    if password.is_some() && parsed.set_password(password.as_deref()).is_err() {
        return Err(refuse("it cannot have a password (no host)".to_owned()));
    }
    let mut pairs: Vec<String> = parsed
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            !pair.is_empty() && !plant.query.contains(&key)
        })
        .map(str::to_owned)
        .collect();
    pairs.extend(
        plant
            .query
            .iter()
            .map(|name| format!("{name}={canary}-{name}")),
    );
    parsed.set_query((!pairs.is_empty()).then(|| pairs.join("&")).as_deref());
    Ok(parsed.into())
}

/// An in-memory [`io::Write`] that collects what is written to it, e.g. a service's log lines
/// through `Telemetry::builder(..).writer(move || captured.clone())`. Clones share the buffer.
#[derive(Debug, Clone, Default)]
pub struct CapturedOutput(Arc<Mutex<Vec<u8>>>);

impl CapturedOutput {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far, as text (invalid UTF-8 replaced by `�`).
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl io::Write for CapturedOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A writer that panicked mid-write left whole bytes behind: keep collecting.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The whole response to `GET path` on `address` (status line, headers and body), over a plain
/// HTTP/1.1 connection that the server closes: what a client of a test service would see.
pub async fn http_get(address: std::net::SocketAddr, path: &str) -> io::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    Ok(raw)
}

/// The names of the `(name, text)` outputs whose text contains `canary`; empty when none leaks.
pub fn outputs_showing<'a>(outputs: &'a [(&'a str, String)], canary: &str) -> Vec<&'a str> {
    outputs
        .iter()
        .filter(|(_, text)| text.contains(canary))
        .map(|(name, _)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn plants_the_canary_in_the_userinfo_and_every_secret_query_parameter()
    -> Result<(), TestkitError> {
        let planted = plant_canary(
            "postgres://postgres@127.0.0.1:5432/db?sslmode=disable&password=old",
            "Cn-1",
            Plant::EVERYWHERE,
        )?;
        assert_eq!(
            planted,
            "postgres://postgres:Cn-1-userinfo@127.0.0.1:5432/db?sslmode=disable\
             &password=Cn-1-password&sslpassword=Cn-1-sslpassword&token=Cn-1-token"
        );
        Ok(())
    }

    #[test]
    fn plants_only_the_query_parameters_asked_for() -> Result<(), TestkitError> {
        let only = Plant {
            userinfo: false,
            query: &["token", "sslpassword"],
        };
        assert_eq!(
            plant_canary("http://default@127.0.0.1:8123", "Cn-1", only)?,
            "http://default@127.0.0.1:8123/?token=Cn-1-token&sslpassword=Cn-1-sslpassword"
        );
        assert_eq!(
            plant_canary("amqp://guest:guest@127.0.0.1:5672/%2f", "Cn", Plant::QUERY)?,
            "amqp://guest:guest@127.0.0.1:5672/%2f?password=Cn-password\
             &sslpassword=Cn-sslpassword&token=Cn-token"
        );
        Ok(())
    }

    fn refusal(url: &str, canary: &str, plant: Plant<'_>) -> String {
        match plant_canary(url, canary, plant) {
            Ok(planted) => format!("planted: {planted}"),
            Err(error) => format!("{error} / {error:?}"),
        }
    }

    #[test]
    fn refuses_a_canary_a_url_would_encode_and_a_url_that_cannot_carry_it() {
        for canary in ["a b", "", "pass%word", "ü"] {
            let error = refusal("redis://127.0.0.1", canary, Plant::QUERY);
            assert!(error.starts_with("cannot plant"), "{error}");
            assert!(error.contains("the canary must be"), "{error}");
        }
        let error = refusal("unix:/run/redis.sock", "Cn", Plant::EVERYWHERE);
        assert!(error.contains("cannot have a password"), "{error}");
        let error = refusal("not a url", "Cn", Plant::QUERY);
        assert!(error.starts_with("cannot plant"), "{error}");
    }

    #[test]
    fn an_error_does_not_show_the_password_already_in_the_url() {
        let error = refusal("redis://user:hunter2@127.0.0.1", "a b", Plant::QUERY);
        assert!(error.starts_with("cannot plant"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn clones_of_the_captured_output_share_one_buffer() -> std::io::Result<()> {
        let captured = CapturedOutput::new();
        let mut writer = captured.clone();
        writer.write_all(b"first line\n")?;
        write!(captured.clone(), "second line")?;
        assert_eq!(captured.text(), "first line\nsecond line");
        Ok(())
    }
}
