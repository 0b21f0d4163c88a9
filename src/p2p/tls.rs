//! The node's TLS identity and the peer verification rules.
//!
//! A node's certificate is self-signed by its ed25519 key (the same key
//! that signs its blocks), so its peer id is that public key. Both sides
//! present certificates (mutual TLS 1.3). The verifiers accept any
//! self-signed ed25519 certificate — there is no CA — but every handshake
//! signature is checked by rustls's own TLS 1.3 verifier, which proves
//! the peer holds the key in its certificate. An `ID@host:port` peer
//! entry pins the key the remote must prove.

use crate::chain::Hash32;
use anyhow::{Context, Result};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;

/// ALPN protocol id: the wire protocol and its version.
pub const ALPN: &[u8] = b"pouwd/2";
/// The TLS server name every node uses; identity comes from the key, not the name.
pub const SERVER_NAME: &str = "pouwd";

/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE,
/// AlgorithmIdentifier { 1.3.101.112 }, BIT STRING of 33 bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The ed25519 public key a certificate carries.
pub fn certificate_key(cert: &CertificateDer<'_>) -> Option<Hash32> {
    let der = cert.as_ref();
    let at = der
        .windows(ED25519_SPKI_PREFIX.len())
        .position(|w| w == ED25519_SPKI_PREFIX)?;
    let key: [u8; 32] = der.get(at + 12..at + 44)?.try_into().ok()?;
    Some(Hash32(key))
}

/// The peer id proven in a quinn connection's handshake.
pub fn peer_id(connection: &quinn::Connection) -> Option<Hash32> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certificate_key(certs.first()?)
}

#[derive(Debug)]
struct PeerVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    /// When set, the only key this verifier accepts.
    pinned: Option<Hash32>,
}

impl PeerVerifier {
    fn check_certificate(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let key = certificate_key(cert).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        match self.pinned {
            Some(pinned) if pinned != key => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(()),
        }
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic)
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check_certificate(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check_certificate(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The node's certificate and key for TLS.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Identity {
    /// A self-signed certificate for the node key.
    pub fn new(key: &SigningKey) -> Result<Identity> {
        let pkcs8 = key.to_pkcs8_der().context("encoding the node key")?;
        let der = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
            .context("loading the node key for TLS")?;
        let cert = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?
            .self_signed(&pair)
            .context("making the node certificate")?;
        Ok(Identity {
            cert: cert.der().clone(),
            key: der,
        })
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// rustls server configuration: TLS 1.3 only, client certificates required.
    pub fn server_config(&self) -> Result<rustls::ServerConfig> {
        let provider = Self::provider();
        let verifier = Arc::new(PeerVerifier {
            algorithms: provider.signature_verification_algorithms,
            pinned: None,
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// rustls client configuration; `pinned` is the peer id the server must prove.
    pub fn client_config(&self, pinned: Option<Hash32>) -> Result<rustls::ClientConfig> {
        let provider = Self::provider();
        let verifier = Arc::new(PeerVerifier {
            algorithms: provider.signature_verification_algorithms,
            pinned,
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}
