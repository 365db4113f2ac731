//! The TLS material of an `https://` OTLP endpoint: the CA and client certificate files named by
//! the `OTEL_EXPORTER_OTLP_*CERTIFICATE` and `OTEL_EXPORTER_OTLP_CLIENT_KEY` settings, read and
//! checked once when the exporter is built, so that a bad file stops start-up instead of failing
//! every export.

use std::path::Path;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TelemetryError;
use crate::settings::TelemetrySettings;

const CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
const CLIENT_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
const CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";

/// How an exporter secures its connection.
#[derive(Debug)]
pub(crate) enum Transport {
    /// `http://`: no TLS.
    Plain,
    /// `https://`.
    Tls(TlsFiles),
}

/// The checked contents of the TLS files, as PEM.
#[derive(Debug, Default)]
pub(crate) struct TlsFiles {
    /// CA certificates trusted instead of the system's roots.
    pub(crate) ca: Option<Vec<u8>>,
    /// The client certificate chain and its private key, for mutual TLS.
    pub(crate) identity: Option<ClientIdentity>,
}

/// A client certificate chain and its private key, both PEM.
pub(crate) struct ClientIdentity {
    pub(crate) certificate: Vec<u8>,
    pub(crate) key: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").finish_non_exhaustive()
    }
}

/// The transport for `endpoint`, with the TLS files read and checked. Errors name the setting and
/// the file, never the file's content (a key is secret).
pub(crate) fn transport(
    settings: &TelemetrySettings,
    endpoint: &str,
) -> Result<Transport, TelemetryError> {
    let ca = settings
        .otlp_certificate
        .as_deref()
        .filter(|p| !is_blank(p));
    let certificate = settings
        .otlp_client_certificate
        .as_deref()
        .filter(|p| !is_blank(p));
    let key = settings.otlp_client_key.as_deref().filter(|p| !is_blank(p));

    if !endpoint.starts_with("https://") {
        let configured = [
            (CERTIFICATE, ca),
            (CLIENT_CERTIFICATE, certificate),
            (CLIENT_KEY, key),
        ];
        if let Some((variable, _)) = configured.iter().find(|(_, path)| path.is_some()) {
            return Err(TelemetryError::Setting {
                variable,
                reason: format!(
                    "is set but the endpoint {} is not https://; use an https:// endpoint to \
                     export over TLS",
                    groundwork_config::redact_url(endpoint)
                ),
            });
        }
        return Ok(Transport::Plain);
    }

    let ca = ca.map(read_ca).transpose()?;
    let identity = match (certificate, key) {
        (None, None) => None,
        (Some(_), None) => return Err(missing(CLIENT_KEY, CLIENT_CERTIFICATE)),
        (None, Some(_)) => return Err(missing(CLIENT_CERTIFICATE, CLIENT_KEY)),
        (Some(certificate), Some(key)) => Some(read_identity(certificate, key)?),
    };
    Ok(Transport::Tls(TlsFiles { ca, identity }))
}

fn is_blank(path: &Path) -> bool {
    path.as_os_str().to_string_lossy().trim().is_empty()
}

fn missing(unset: &'static str, set: &str) -> TelemetryError {
    TelemetryError::Setting {
        variable: unset,
        reason: format!(
            "is not set but {set} is; mutual TLS needs both the certificate and the key"
        ),
    }
}

fn read(variable: &'static str, path: &Path) -> Result<Vec<u8>, TelemetryError> {
    std::fs::read(path).map_err(|error| TelemetryError::Setting {
        variable,
        reason: format!("cannot read {}: {error}", path.display()),
    })
}

/// The certificates of a PEM file: at least one, each one parsing.
fn certificates(
    variable: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TelemetryError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TelemetryError::Setting {
            variable,
            reason: format!(
                "{} is not a PEM file: a `-----BEGIN CERTIFICATE-----` section does not parse",
                path.display()
            ),
        })?;
    if certificates.is_empty() {
        return Err(TelemetryError::Setting {
            variable,
            reason: format!(
                "{} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                path.display()
            ),
        });
    }
    Ok(certificates)
}

fn read_ca(path: &Path) -> Result<Vec<u8>, TelemetryError> {
    let pem = read(CERTIFICATE, path)?;
    let mut roots = rustls::RootCertStore::empty();
    for (index, certificate) in certificates(CERTIFICATE, path, &pem)?
        .into_iter()
        .enumerate()
    {
        roots
            .add(certificate)
            .map_err(|error| TelemetryError::Setting {
                variable: CERTIFICATE,
                reason: format!(
                    "certificate {} in {} cannot be a trust anchor: {error}",
                    index + 1,
                    path.display()
                ),
            })?;
    }
    Ok(pem)
}

fn read_identity(certificate: &Path, key: &Path) -> Result<ClientIdentity, TelemetryError> {
    let certificate_pem = read(CLIENT_CERTIFICATE, certificate)?;
    let chain = certificates(CLIENT_CERTIFICATE, certificate, &certificate_pem)?;
    let key_pem = read(CLIENT_KEY, key)?;
    let private_key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TelemetryError::Setting {
            variable: CLIENT_KEY,
            reason: format!(
                "{} holds no PEM private key (`-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or \
                 `EC PRIVATE KEY`)",
                key.display()
            ),
        })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, private_key, &provider).map_err(|error| {
        TelemetryError::Setting {
            variable: CLIENT_KEY,
            reason: format!(
                "{} does not go with the certificate in {}: {error}",
                key.display(),
                certificate.display()
            ),
        }
    })?;
    Ok(ClientIdentity {
        certificate: certificate_pem,
        key: key_pem,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    struct Files {
        dir: PathBuf,
    }

    impl Files {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("gw-telemetry-tls-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::create_dir_all(&dir);
            Self { dir }
        }

        fn write(&self, name: &str, content: &str) -> PathBuf {
            let path = self.dir.join(name);
            let _ = std::fs::write(&path, content);
            path
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn refusal(settings: &TelemetrySettings, endpoint: &str) -> String {
        transport(settings, endpoint)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\ns3cr3tk3yb64\n-----END PRIVATE KEY-----\n";

    #[test]
    fn tls_files_are_refused_for_a_plain_endpoint_and_ignored_when_blank() {
        let mut settings = TelemetrySettings::default();
        assert!(matches!(
            transport(&settings, "http://collector:4317"),
            Ok(Transport::Plain)
        ));
        assert!(matches!(
            transport(&settings, "https://collector:4317"),
            Ok(Transport::Tls(TlsFiles {
                ca: None,
                identity: None
            }))
        ));
        settings.otlp_certificate = Some(PathBuf::from(" "));
        assert!(matches!(
            transport(&settings, "http://collector:4317"),
            Ok(Transport::Plain)
        ));
        settings.otlp_certificate = Some(PathBuf::from("/etc/ca.pem"));
        let error = refusal(&settings, "http://user:pw@collector:4317");
        assert!(
            error.contains("OTEL_EXPORTER_OTLP_CERTIFICATE") && error.contains("https://"),
            "{error}"
        );
        assert!(!error.contains("pw@"), "{error}");
    }

    #[test]
    fn unreadable_non_pem_and_unpaired_files_name_their_setting_and_not_their_content() {
        let files = Files::new("bad");
        let mut settings = TelemetrySettings {
            otlp_certificate: Some(files.dir.join("absent.pem")),
            ..TelemetrySettings::default()
        };
        let error = refusal(&settings, "https://collector:4317");
        assert!(
            error.starts_with("OTEL_EXPORTER_OTLP_CERTIFICATE: cannot read")
                && error.contains("absent.pem"),
            "{error}"
        );

        settings.otlp_certificate = Some(files.write("ca.txt", "not a certificate s3cr3t"));
        let error = refusal(&settings, "https://collector:4317");
        assert!(
            error.contains("OTEL_EXPORTER_OTLP_CERTIFICATE")
                && error.contains("no PEM certificate"),
            "{error}"
        );
        assert!(!error.contains("s3cr3t"), "{error}");

        settings.otlp_certificate = Some(files.write(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n!!s3cr3t!!\n-----END CERTIFICATE-----\n",
        ));
        let error = refusal(&settings, "https://collector:4317");
        assert!(
            error.contains("OTEL_EXPORTER_OTLP_CERTIFICATE") && !error.contains("s3cr3t"),
            "{error}"
        );

        settings.otlp_certificate = None;
        settings.otlp_client_key = Some(files.write("client.key", KEY));
        let error = refusal(&settings, "https://collector:4317");
        assert!(
            error.starts_with("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: is not set"),
            "{error}"
        );
        settings.otlp_client_key = None;
        settings.otlp_client_certificate = Some(files.dir.join("client.pem"));
        let error = refusal(&settings, "https://collector:4317");
        assert!(
            error.starts_with("OTEL_EXPORTER_OTLP_CLIENT_KEY: is not set"),
            "{error}"
        );
    }
}
