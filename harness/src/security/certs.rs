//! A CA and broker certificates made when a TLS cluster starts without certificates of its
//! own: ECDSA P-256 keys from graviola (the pure-Rust provider franzy's TLS uses), X.509
//! built by rcgen without its C-building crypto backends (rcgen signs through
//! [`rcgen::RemoteKeyPair`], here graviola).

use graviola::hashing::Sha256;
use graviola::signing::ecdsa::{SigningKey, P256};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, RemoteKeyPair, SanType, PKCS_ECDSA_P256_SHA256,
};

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

struct GraviolaKey {
    key: SigningKey<P256>,
    public: Vec<u8>,
}

impl RemoteKeyPair for GraviolaKey {
    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let mut signature = [0u8; 128];
        self.key
            .sign_asn1::<Sha256>(&[message], &mut signature)
            .map(<[u8]>::to_vec)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// A new P-256 key: rcgen's view of it and its PKCS#8 PEM.
fn new_key() -> Result<(KeyPair, String), String> {
    let key = SigningKey::<P256>::generate().map_err(|e| format!("key generation: {e:?}"))?;
    let mut buffer = [0u8; 256];
    let pkcs8 = key
        .to_pkcs8_der(&mut buffer)
        .map_err(|e| format!("key encoding: {e:?}"))?
        .to_vec();
    let public = key.private_key.public_key_uncompressed().to_vec();
    let pem = pem_block("PRIVATE KEY", &pkcs8);
    let pair = KeyPair::from_remote(Box::new(GraviolaKey { key, public }))
        .map_err(|e| format!("key: {e}"))?;
    Ok((pair, pem))
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A self-signed CA that issues broker and client certificates.
pub struct Authority {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate, PEM.
    pub certificate_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// A new CA, valid from yesterday for ten years.
    pub fn new() -> Result<Self, String> {
        let (key, _) = new_key()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "franzy harness CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params);
        let certificate = params
            .clone()
            .self_signed(&key)
            .map_err(|e| format!("CA certificate: {e}"))?;
        Ok(Self {
            certificate_pem: certificate.pem(),
            params,
            key,
        })
    }

    /// A broker certificate for these host names and IP addresses.
    pub fn issue_server(&self, hosts: &[String]) -> Result<Issued, String> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            hosts.first().map_or("broker", String::as_str),
        );
        params.distinguished_name = name;
        params.subject_alt_names = hosts
            .iter()
            .map(|host| match host.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => host
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e| format!("{host:?} cannot be a DNS name: {e}")),
            })
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate for `name` (for mTLS).
    pub fn issue_client(&self, name: &str) -> Result<Issued, String> {
        let mut params = CertificateParams::default();
        let mut distinguished = DistinguishedName::new();
        distinguished.push(DnType::CommonName, name);
        params.distinguished_name = distinguished;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, mut params: CertificateParams) -> Result<Issued, String> {
        let (key, key_pem) = new_key()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params);
        let issuer = self
            .params
            .clone()
            .self_signed(&self.key)
            .map_err(|e| format!("CA certificate: {e}"))?;
        let certificate = params
            .signed_by(&key, &issuer, &self.key)
            .map_err(|e| format!("certificate: {e}"))?;
        Ok(Issued {
            certificate_pem: certificate.pem(),
            key_pem,
        })
    }
}

fn validity(params: &mut CertificateParams) {
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let mut serial = [0u8; 16];
    let _ = graviola::random::fill(&mut serial);
    serial[0] &= 0x7f;
    serial[15] =
        serial[15].wrapping_add(SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u8);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(24 * 3600);
    params.not_before = (now - day).into();
    params.not_after = (now + 3650 * day).into();
}
