//! The transport under the client's protocol: plain TCP, or TLS over TCP
//! (`--tls`). Client code is generic over [`Transport`], so the plain-TCP
//! paths compile to exactly what they were before TLS existed (the stream
//! type is `TcpStream`, no boxing, no dynamic dispatch).
//!
//! TLS is a rustls client (ring provider) that accepts any server
//! certificate — the benchmark runs on loopback against a throwaway
//! certificate — but still verifies the handshake signature, so the
//! server really does its private-key operation and the client really
//! checks it, as any client would. Session resumption is disabled: every
//! new connection pays a full handshake.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{ring, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Turns a connected TCP stream into the stream the client speaks on.
pub trait Transport: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Whatever handshake the transport needs (none for plain TCP).
    fn establish(
        &self,
        tcp: TcpStream,
    ) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;

    /// Negotiated parameters, for the result line (`None` for plain TCP).
    fn describe(s: &Self::Stream) -> Option<String>;

    /// Whether this is TLS (copied into result lines).
    fn is_tls(&self) -> bool;
}

/// Plain TCP: the stream is the socket itself.
pub struct Plain;

impl Transport for Plain {
    type Stream = TcpStream;

    fn establish(&self, tcp: TcpStream) -> impl Future<Output = std::io::Result<TcpStream>> + Send {
        std::future::ready(Ok(tcp))
    }

    fn describe(_: &TcpStream) -> Option<String> {
        None
    }

    fn is_tls(&self) -> bool {
        false
    }
}

/// TLS client with a full handshake on every connection.
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl Tls {
    /// `server_name`: sent as SNI (an IP address sends none); the
    /// certificate is not checked against it.
    pub fn new(server_name: &str) -> Result<Self> {
        let mut provider = ring_provider();
        // rustls's ring provider lists P-384 first; a Go client (GOST) and
        // most others offer X25519 first. One key share, X25519: every
        // server here accepts it without a HelloRetryRequest, so all do the
        // same key exchange (the result line records what was negotiated).
        provider.kx_groups = vec![ring::kx_group::X25519, ring::kx_group::SECP256R1];
        let provider = Arc::new(provider);
        let algs = provider.signature_verification_algorithms;
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { algs }))
            .with_no_client_auth();
        // No session cache and no tickets: a full handshake every time.
        config.resumption = Resumption::disabled();
        let name = ServerName::try_from(server_name.to_string())
            .with_context(|| format!("bad --tls-server-name {server_name:?}"))?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}

impl Transport for Tls {
    type Stream = TlsStream<TcpStream>;

    fn establish(
        &self,
        tcp: TcpStream,
    ) -> impl Future<Output = std::io::Result<Self::Stream>> + Send {
        self.connector.connect(self.name.clone(), tcp)
    }

    fn describe(s: &Self::Stream) -> Option<String> {
        let c = s.get_ref().1;
        Some(format!(
            "{} {} {}",
            c.protocol_version()
                .map_or("?".into(), |v| format!("{v:?}")),
            c.negotiated_cipher_suite()
                .map_or("?".into(), |v| format!("{:?}", v.suite())),
            c.negotiated_key_exchange_group()
                .map_or("?".into(), |g| format!("{:?}", g.name())),
        ))
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// rustls 0.23.48 deprecates the ring provider only because ring has no
/// post-quantum key exchange, which this benchmark does not want anyway
/// (same choice as gost-host).
#[allow(deprecated)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    ring::default_provider()
}

/// Accepts any certificate chain, but checks the handshake signature
/// against the presented certificate's key with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate {
    algs: WebPkiSupportedAlgorithms,
}

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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Reads like `read`, but a TLS peer that closes the TCP connection
/// without close_notify (rustls reports `UnexpectedEof`) counts as end of
/// stream: several servers under test close that way, and for plain TCP
/// the arm never matches.
pub async fn read_or_eof<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    match s.read(buf).await {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        r => r,
    }
}
