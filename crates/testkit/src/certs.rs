//! Certificates for TLS tests, generated in memory when the test runs: no private key is committed.

use crate::TestkitError;

/// A certificate authority made up for one test. It signs server and client certificates; a test
/// that trusts a second `TestCa` instead sees what a wrong CA does.
///
/// ```
/// # fn main() -> Result<(), groundwork_testkit::TestkitError> {
/// let ca = groundwork_testkit::TestCa::new("orders test CA")?;
/// let server = ca.server(&["localhost", "127.0.0.1"])?; // names become subjectAltNames
/// assert!(server.certificate_pem.starts_with("-----BEGIN CERTIFICATE-----"));
/// assert!(ca.certificate_pem().starts_with("-----BEGIN CERTIFICATE-----"));
/// # Ok(()) }
/// ```
pub struct TestCa {
    certificate_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate and its private key, both PEM. `Debug` shows neither.
#[derive(Clone)]
#[non_exhaustive]
pub struct TestCertificate {
    /// The certificate.
    pub certificate_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl TestCertificate {
    /// A certificate and key made elsewhere, e.g. passed to a child process.
    pub fn new(certificate_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        Self {
            certificate_pem: certificate_pem.into(),
            key_pem: key_pem.into(),
        }
    }
}

impl std::fmt::Debug for TestCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCertificate").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA whose certificate has `name` as its common name.
    pub fn new(name: &str) -> Result<Self, TestkitError> {
        let mut params = rcgen::CertificateParams::new(Vec::new()).map_err(error)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyCertSign,
        ];
        let key = rcgen::KeyPair::generate().map_err(error)?;
        let certificate = params.self_signed(&key).map_err(error)?;
        Ok(Self {
            certificate_pem: certificate.pem(),
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// The CA's certificate: what a client trusts.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses, as subjectAltNames).
    pub fn server(&self, names: &[&str]) -> Result<TestCertificate, TestkitError> {
        self.sign_params(&Self::server_params(names)?)
    }

    /// A certificate for `names` good for both ends of a connection (server and client
    /// authentication): what servers that connect to each other with their own certificate
    /// need, such as a Redis Cluster's nodes with `tls-cluster yes`, whose cluster bus always
    /// verifies the connecting node's certificate as a client certificate.
    pub fn peer(&self, names: &[&str]) -> Result<TestCertificate, TestkitError> {
        let mut params = Self::server_params(names)?;
        params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        self.sign_params(&params)
    }

    /// A server certificate for `names` whose validity ended in 2021: what a client sees when a
    /// server's certificate was not renewed.
    pub fn expired_server(&self, names: &[&str]) -> Result<TestCertificate, TestkitError> {
        let mut params = Self::server_params(names)?;
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.sign_params(&params)
    }

    /// A client certificate whose common name is `common_name` (PostgreSQL's `cert` authentication
    /// takes the user name from it).
    pub fn client(&self, common_name: &str) -> Result<TestCertificate, TestkitError> {
        self.sign(
            Vec::new(),
            common_name,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn sign(
        &self,
        names: Vec<String>,
        common_name: &str,
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> Result<TestCertificate, TestkitError> {
        self.sign_params(&Self::params(names, common_name, usage)?)
    }

    /// A server certificate's parameters for `names`, the first of them as its common name.
    fn server_params(names: &[&str]) -> Result<rcgen::CertificateParams, TestkitError> {
        let names: Vec<String> = names.iter().map(|&name| name.to_owned()).collect();
        let common_name = names.first().cloned().unwrap_or_default();
        Self::params(
            names,
            &common_name,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn params(
        names: Vec<String>,
        common_name: &str,
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> Result<rcgen::CertificateParams, TestkitError> {
        let mut params = rcgen::CertificateParams::new(names).map_err(error)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        Ok(params)
    }

    fn sign_params(
        &self,
        params: &rcgen::CertificateParams,
    ) -> Result<TestCertificate, TestkitError> {
        let key = rcgen::KeyPair::generate().map_err(error)?;
        let certificate = params.signed_by(&key, &self.issuer).map_err(error)?;
        Ok(TestCertificate {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn error(source: rcgen::Error) -> TestkitError {
    TestkitError::Certificate {
        source: Box::new(source),
    }
}
