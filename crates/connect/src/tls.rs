//! The TLS settings of a client whose URL has no parameter for them, and the rustls configuration
//! they make.

use std::sync::Arc;

use groundwork_config::{ExposeSecret, Secret};
use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// TLS settings for one service's client: the CA to trust and a client certificate.
///
/// Embed one per service in a settings type; groundwork-config then reads, for a field named
/// `redis_tls`, `REDIS_TLS_CA_CERT`, `REDIS_TLS_CLIENT_CERT` and `REDIS_TLS_CLIENT_KEY`, each also
/// as `<NAME>_FILE` naming a file that holds the PEM text (how Docker and Kubernetes mount
/// secrets). All three are optional: with none set, a `rediss://`/`amqps://`/`https://` URL is
/// verified against the system's root certificates.
///
/// The settings only add to what the URL asks for: TLS itself is switched on by the URL's scheme,
/// and settings given with a plain-text URL are an error, never ignored.
#[derive(Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate(s) of the CA that signed the server's certificate, trusted instead of the
    /// system's roots (for RabbitMQ: in addition to them). Unset: the system's roots.
    #[serde(default)]
    pub ca_cert: Option<String>,
    /// PEM client certificate chain, for servers that require mutual TLS; needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert`.
    #[serde(default)]
    pub client_key: Option<Secret>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Certificates are public, but a page of base64 helps nobody reading a log.
        let describe = |value: &Option<String>| value.as_ref().map(|_| "<PEM>");
        f.debug_struct("TlsSettings")
            .field("ca_cert", &describe(&self.ca_cert))
            .field("client_cert", &describe(&self.client_cert))
            .field("client_key", &self.client_key)
            .finish()
    }
}

/// What is wrong with a [`TlsSettings`]. It names the setting, never quotes its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A setting is not the PEM it should be.
    #[error("`{setting}` is not {expected}: {reason}")]
    Pem {
        /// `ca_cert`, `client_cert` or `client_key`.
        setting: &'static str,
        /// What the setting should hold.
        expected: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// Only one half of the client certificate is given.
    #[error("`client_cert` and `client_key` go together: `{missing}` is not set")]
    HalfClientCertificate {
        /// The half that is missing.
        missing: &'static str,
    },
    /// rustls refused the configuration (for example a key that does not match the certificate).
    #[error("the TLS configuration is refused: {reason}")]
    Config {
        /// rustls' reason.
        reason: String,
    },
}

impl TlsSettings {
    /// Whether any setting is given.
    pub fn is_configured(&self) -> bool {
        self.ca_cert.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }

    /// The CA certificates, parsed; `None` when `ca_cert` is unset.
    pub fn ca_certificates(&self) -> Result<Option<Vec<CertificateDer<'static>>>, TlsError> {
        self.ca_cert
            .as_deref()
            .map(|pem| certificates("ca_cert", pem))
            .transpose()
    }

    /// The client certificate chain and key, parsed; `None` when neither is set.
    pub fn client_identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
        match (&self.client_cert, &self.client_key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::HalfClientCertificate {
                missing: "client_key",
            }),
            (None, Some(_)) => Err(TlsError::HalfClientCertificate {
                missing: "client_cert",
            }),
            (Some(cert), Some(key)) => {
                let chain = certificates("client_cert", cert)?;
                let key = PrivateKeyDer::from_pem_slice(key.expose_secret().as_bytes()).map_err(
                    |error| TlsError::Pem {
                        setting: "client_key",
                        expected: "a PEM private key",
                        reason: pem_reason(&error),
                    },
                )?;
                Ok(Some((chain, key)))
            }
        }
    }

    /// Checks every setting without building anything, so a service can refuse bad settings at
    /// start-up.
    pub fn validate(&self) -> Result<(), TlsError> {
        self.client_config().map(drop)
    }

    /// The rustls client configuration: the configured CA (else the system's roots), the client
    /// certificate when given, aws-lc-rs as the crypto provider, TLS 1.2 and 1.3.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(certificates) = self.ca_certificates()? {
            for certificate in certificates {
                roots.add(certificate).map_err(|error| TlsError::Pem {
                    setting: "ca_cert",
                    expected: "a CA certificate",
                    reason: error.to_string(),
                })?;
            }
        } else {
            // Certificates the platform store holds but rustls cannot parse are skipped, as every
            // rustls client does; the rest still verify.
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_root_certificates(roots);
        let config = match self.client_identity()? {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(config_error)?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// The workspace's one crypto provider.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(config_error)`
fn config_error(error: rustls::Error) -> TlsError {
    TlsError::Config {
        reason: error.to_string(),
    }
}

fn certificates(
    setting: &'static str,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            setting,
            expected: "PEM certificates",
            reason: pem_reason(&error),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::Pem {
            setting,
            expected: "PEM certificates",
            reason: "no `-----BEGIN CERTIFICATE-----` block found".to_owned(),
        });
    }
    Ok(certificates)
}

/// A PEM error without the input: the variants carry positions and section names, not content.
fn pem_reason(error: &rustls_pki_types::pem::Error) -> String {
    match error {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM block of the expected kind found".to_owned()
        }
        rustls_pki_types::pem::Error::Base64Decode(_) => {
            "a PEM block is not valid base64".to_owned()
        }
        rustls_pki_types::pem::Error::MissingSectionEnd { .. } => {
            "a PEM block has no `-----END` line".to_owned()
        }
        rustls_pki_types::pem::Error::IllegalSectionStart { .. } => {
            "a `-----BEGIN` line is malformed".to_owned()
        }
        _ => "the PEM text cannot be read".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn pair() -> Result<(String, String), rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
        let cert = params.self_signed(&key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    #[test]
    fn empty_settings_use_the_system_roots() -> TestResult {
        let settings = TlsSettings::default();
        assert!(!settings.is_configured());
        settings.client_config()?;
        Ok(())
    }

    #[test]
    fn a_ca_and_a_client_certificate_make_a_configuration() -> TestResult {
        let (cert, key) = pair()?;
        let settings = TlsSettings {
            ca_cert: Some(cert.clone()),
            client_cert: Some(cert),
            client_key: Some(Secret::from(key)),
        };
        let config = settings.client_config()?;
        assert!(config.client_auth_cert_resolver.has_certs());
        Ok(())
    }

    #[test]
    fn garbage_is_refused_naming_the_setting_without_quoting_it() -> TestResult {
        let settings = TlsSettings {
            ca_cert: Some("not-a-certificate-s3cr3t".to_owned()),
            ..TlsSettings::default()
        };
        let error = settings
            .client_config()
            .err()
            .ok_or("garbage accepted")?
            .to_string();
        assert!(error.contains("`ca_cert`"), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
        Ok(())
    }

    #[test]
    fn a_key_that_is_not_pem_is_refused_without_quoting_it() -> TestResult {
        let (cert, _) = pair()?;
        let settings = TlsSettings {
            client_cert: Some(cert),
            client_key: Some(Secret::from("-----BEGIN PRIVATE KEY-----\ns3cr3t!!\n")),
            ..TlsSettings::default()
        };
        let error = settings
            .client_config()
            .err()
            .ok_or("bad key accepted")?
            .to_string();
        assert!(error.contains("`client_key`"), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
        assert!(!format!("{settings:?}").contains("s3cr3t"));
        Ok(())
    }

    #[test]
    fn half_a_client_certificate_is_refused() -> TestResult {
        let (cert, key) = pair()?;
        let only_cert = TlsSettings {
            client_cert: Some(cert),
            ..TlsSettings::default()
        };
        assert_eq!(
            only_cert.validate(),
            Err(TlsError::HalfClientCertificate {
                missing: "client_key"
            })
        );
        let only_key = TlsSettings {
            client_key: Some(Secret::from(key)),
            ..TlsSettings::default()
        };
        assert_eq!(
            only_key.validate(),
            Err(TlsError::HalfClientCertificate {
                missing: "client_cert"
            })
        );
        Ok(())
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() -> TestResult {
        let (cert, _) = pair()?;
        let (_, other_key) = pair()?;
        let settings = TlsSettings {
            client_cert: Some(cert),
            client_key: Some(Secret::from(other_key)),
            ..TlsSettings::default()
        };
        let error = settings.validate().err().ok_or("mismatch accepted")?;
        assert!(matches!(error, TlsError::Config { .. }), "{error}");
        Ok(())
    }
}
