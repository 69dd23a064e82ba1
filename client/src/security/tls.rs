//! [`TlsConfig`]: what a TLS connection to a broker trusts and presents.
//!
//! Kafka's `ssl.*` properties map onto it (PEM only: `ssl.truststore.type=PEM` with
//! `ssl.truststore.location` or `ssl.truststore.certificates`, `ssl.keystore.type=PEM` with
//! `ssl.keystore.location` or `ssl.keystore.certificate.chain` + `ssl.keystore.key`;
//! librdkafka's `ssl.ca.location`, `ssl.certificate.location`, `ssl.key.location`).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::error::Error;

/// TLS settings of a client: trusted CAs, an optional client certificate (mTLS), hostname
/// verification, the crypto provider. Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    /// CAs to trust instead of the system's roots (empty: the system's roots).
    roots: Vec<CertificateDer<'static>>,
    client_auth: Option<Arc<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>>,
    verify_hostname: bool,
    verify_certificates: bool,
    provider: Option<Arc<CryptoProvider>>,
    custom: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("roots", &self.roots.len())
            .field("client_auth", &self.client_auth.is_some())
            .field("verify_hostname", &self.verify_hostname)
            .field("verify_certificates", &self.verify_certificates)
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The platform's trusted CAs (`rustls-native-certs`: `SSL_CERT_FILE` / `SSL_CERT_DIR`, else
/// the distribution's bundle on Linux, the keychain on macOS, the Windows store), read once
/// per process. Empty when there are none (a minimal container), and then
/// [`TlsConfig::client_config`] trusts Mozilla's roots instead.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<CertificateDer<'static>>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::debug!(%error, "reading the system's CA certificates");
        }
        loaded.certs
    })
}

impl TlsConfig {
    /// Trusts the system's root CAs (Mozilla's, from the `webpki-roots` crate, when the
    /// system has none), verifies the broker's host name, presents no client certificate.
    pub fn new() -> Self {
        Self {
            roots: Vec::new(),
            client_auth: None,
            verify_hostname: true,
            verify_certificates: true,
            provider: None,
            custom: None,
        }
    }

    /// Trusts the CA certificates of this PEM text (every `CERTIFICATE` block) instead of
    /// the system's roots; may be called again to add more.
    pub fn ca_pem(mut self, pem: impl AsRef<[u8]>) -> Result<Self, Error> {
        self.roots.extend(
            certificates(pem.as_ref())
                .map_err(|reason| Error::config("TlsConfig::ca_pem", reason))?,
        );
        Ok(self)
    }

    /// Trusts the CA certificates of this PEM file instead of the system's roots.
    pub fn ca_file(self, path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        let pem = read("TlsConfig::ca_file", path.as_ref())?;
        self.ca_pem(pem).map_err(|_| {
            Error::config(
                "TlsConfig::ca_file",
                format!("no PEM certificate in {}", path.as_ref().display()),
            )
        })
    }

    /// Presents this certificate chain and private key (PEM; PKCS#8, PKCS#1 or SEC1 keys,
    /// unencrypted) to brokers that ask for one (mTLS).
    pub fn client_auth_pem(
        mut self,
        certificate_chain: impl AsRef<[u8]>,
        private_key: impl AsRef<[u8]>,
    ) -> Result<Self, Error> {
        let key = "TlsConfig::client_auth_pem";
        let chain = certificates(certificate_chain.as_ref()).map_err(|r| Error::config(key, r))?;
        let private_key =
            private_key_pem(private_key.as_ref()).map_err(|r| Error::config(key, r))?;
        self.client_auth = Some(Arc::new((chain, private_key)));
        Ok(self)
    }

    /// Whether the broker's certificate must name the host connected to (a DNS name or an
    /// IP address SAN). Default true (`ssl.endpoint.identification.algorithm=https`);
    /// false is Kafka's empty value.
    pub fn verify_hostname(mut self, verify: bool) -> Self {
        self.verify_hostname = verify;
        self
    }

    /// Whether the broker's certificate is verified at all. Default true; false
    /// (librdkafka's `enable.ssl.certificate.verification=false`) trusts any broker, for
    /// tests only.
    pub fn verify_certificates(mut self, verify: bool) -> Self {
        self.verify_certificates = verify;
        self
    }

    /// The rustls crypto provider to use instead of the default (see the
    /// [module doc](super)).
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Uses this rustls configuration as it is; every other setting is then ignored.
    pub fn rustls_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.custom = Some(config);
        self
    }

    /// The rustls configuration these settings make.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        if let Some(custom) = &self.custom {
            return Ok(custom.clone());
        }
        let provider = match &self.provider {
            Some(provider) => provider.clone(),
            None => {
                default_provider().map_err(|reason| Error::config("security.protocol", reason))?
            }
        };
        let mut store = RootCertStore::empty();
        if self.roots.is_empty() {
            let system = system_roots();
            if system.is_empty() {
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            } else {
                // Certificates the platform lists but webpki cannot use are skipped, as
                // OpenSSL skips them.
                let (added, ignored) = store.add_parsable_certificates(system.iter().cloned());
                if added == 0 {
                    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                }
                if ignored > 0 {
                    tracing::debug!(added, ignored, "system CA certificates");
                }
            }
        } else {
            for root in &self.roots {
                store.add(root.clone()).map_err(|e| {
                    Error::config(
                        "ssl.truststore.certificates",
                        format!("not a CA certificate: {e}"),
                    )
                })?;
            }
        }
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config("security.protocol", format!("TLS: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = if !self.verify_certificates {
            Arc::new(AnyCertificate(provider))
        } else {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
                .build()
                .map_err(|e| Error::config("ssl.truststore.certificates", format!("{e}")))?;
            if self.verify_hostname {
                webpki
            } else {
                Arc::new(AnyHostName(webpki))
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.client_auth {
            Some(auth) => builder
                .with_client_auth_cert(auth.0.clone(), auth.1.clone_key())
                .map_err(|e| Error::config("ssl.keystore.key", format!("{e}")))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// The crypto provider when none is given: the process default if the application
/// installed one, else rustls's ring or aws-lc-rs provider when their feature is on, else
/// graviola (x86_64 and aarch64 with AES, AVX2 and the like).
pub fn default_provider() -> Result<Arc<CryptoProvider>, String> {
    if let Some(installed) = CryptoProvider::get_default() {
        return Ok(installed.clone());
    }
    #[cfg(feature = "tls-aws-lc-rs")]
    {
        return Ok(Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    }
    #[cfg(all(feature = "tls-ring", not(feature = "tls-aws-lc-rs")))]
    {
        return Ok(Arc::new(rustls::crypto::ring::default_provider()));
    }
    #[allow(unreachable_code)]
    graviola_provider()
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn graviola_provider() -> Result<Arc<CryptoProvider>, String> {
    if graviola::util::is_cpu_supported() {
        Ok(Arc::new(rustls_graviola::default_provider()))
    } else {
        Err(
            "this CPU lacks instructions graviola needs (x86_64: AES, AVX2, ADX, BMI2, \
             PCLMULQDQ; aarch64: AES, SHA2, PMULL, NEON): build franzy with the tls-ring \
             feature or install a rustls CryptoProvider"
                .into(),
        )
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn graviola_provider() -> Result<Arc<CryptoProvider>, String> {
    Err(
        "no pure-Rust TLS provider for this architecture: build franzy with the tls-ring \
         feature or install a rustls CryptoProvider"
            .into(),
    )
}

/// The `CERTIFICATE` blocks of PEM text.
pub(crate) fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("malformed PEM: {e}"))?;
    if certificates.is_empty() {
        return Err(
            "no PEM certificate (JKS and PKCS12 stores are not supported: convert them \
                    to PEM)"
                .into(),
        );
    }
    Ok(certificates)
}

/// The private key of PEM text (PKCS#8, PKCS#1 or SEC1, unencrypted).
pub(crate) fn private_key_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    if String::from_utf8_lossy(pem).contains("ENCRYPTED PRIVATE KEY") {
        return Err("encrypted private keys are not supported: decrypt it (openssl pkcs8)".into());
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no PEM private key: {e}"))
}

/// Reads a file a setting names.
pub(crate) fn read(key: &str, path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::config(key, format!("cannot read {}: {e}", path.display())))
}

/// Verifies the chain but accepts any host name (`ssl.endpoint.identification.algorithm=`).
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any certificate (`enable.ssl.certificate.verification=false`), still checking
/// that the handshake is signed by the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
