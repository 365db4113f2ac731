//! The TLS endpoints `cargo xtask infra up` starts for the TLS tests, and the test CA that signed
//! their certificates.

use std::path::PathBuf;

use crate::TestkitError;
use crate::infra_env::InfraEnv;

/// The variable (and infra env file key) naming the test CA's certificate file.
pub const TEST_CA_ENV_VAR: &str = "GROUNDWORK_TEST_CA_CERT";

/// TLS test endpoints: Redis's own TLS port, stunnel in front of RabbitMQ and of ClickHouse's HTTP
/// interface, all with a server certificate for `127.0.0.1` and `localhost` signed by the test CA,
/// which `infra up` generates (it is never committed). The directory of the CA certificate also
/// holds `client.crt`/`client.key`, a client certificate from the same CA.
#[derive(Debug, Clone)]
pub struct TestTls {
    /// The test CA's certificate file.
    pub ca_cert_path: PathBuf,
    /// The test CA's certificate, PEM.
    pub ca_cert: String,
    /// `rediss://` URL of the TLS Redis (`REDIS_TLS_URL`).
    pub redis_url: String,
    /// `amqps://` URL of the TLS RabbitMQ endpoint (`RABBITMQ_TLS_URL`).
    pub amqp_url: String,
    /// `https://` URL of the TLS ClickHouse endpoint (`CLICKHOUSE_TLS_URL`).
    pub clickhouse_url: String,
}

impl TestTls {
    /// Finds the endpoints through [`InfraEnv::discover`].
    pub fn discover() -> Result<Self, TestkitError> {
        Self::from_env(&InfraEnv::discover()?)
    }

    /// Finds the endpoints in `env` (environment first, then the infra env file).
    pub fn from_env(env: &InfraEnv) -> Result<Self, TestkitError> {
        let var = |name: &'static str| {
            env.var(name)
                .ok_or(TestkitError::MissingTlsEndpoint { variable: name })
        };
        let ca_cert_path = PathBuf::from(var(TEST_CA_ENV_VAR)?);
        let ca_cert = std::fs::read_to_string(&ca_cert_path).map_err(|source| {
            TestkitError::InfraEnvFile {
                path: ca_cert_path.clone(),
                source,
            }
        })?;
        Ok(Self {
            ca_cert_path,
            ca_cert,
            redis_url: var("REDIS_TLS_URL")?,
            amqp_url: var("RABBITMQ_TLS_URL")?,
            clickhouse_url: var("CLICKHOUSE_TLS_URL")?,
        })
    }

    /// A file next to the CA certificate, e.g. `client.crt`, read as text.
    pub fn read_sibling(&self, name: &str) -> Result<String, TestkitError> {
        let path = self.ca_cert_path.with_file_name(name);
        std::fs::read_to_string(&path).map_err(|source| TestkitError::InfraEnvFile { path, source })
    }
}
