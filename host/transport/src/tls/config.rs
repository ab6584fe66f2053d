//! TLS configuration with GOST v3's semantics (go-gost/x `internal/util/tls/tls.go`,
//! `config/parsing/tls.go`), built on rustls with the ring provider.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// One GOST `tls` block (top-level, listener or dialer). `None`/empty means "not set".
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub secure: bool,
    pub server_name: Option<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub cipher_suites: Vec<String>,
    pub alpn: Vec<String>,
    /// Zero means GOST's default of one year.
    pub validity: Duration,
    pub common_name: Option<String>,
    pub organization: Option<String>,
}

impl TlsSettings {
    fn has_options(&self) -> bool {
        self.min_version.is_some()
            || self.max_version.is_some()
            || !self.cipher_suites.is_empty()
            || !self.alpn.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls {option} {path:?}: {problem}")]
    File {
        option: &'static str,
        path: PathBuf,
        problem: FileProblem,
    },
    #[error("tls: unknown or unsupported {option} {value:?}")]
    Unknown { option: &'static str, value: String },
    #[error("tls: {0}")]
    Invalid(String),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("tls: generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    #[error("no such file")]
    NotFound,
    #[error("permission denied")]
    PermissionDenied,
    #[error("{0}")]
    Io(io::Error),
    #[error("not valid PEM: {0}")]
    BadPem(String),
    #[error("no certificate found")]
    NoCertificate,
    #[error("no private key found")]
    NoPrivateKey,
    #[error("invalid certificate: {0}")]
    BadCertificate(rustls::Error),
    #[error("unsupported private key: {0}")]
    BadKey(rustls::Error),
    #[error("key does not match certificate")]
    KeyMismatch,
}

/// A PEM error as text: the parser's own message shows the marker it
/// wanted as a list of byte values.
fn pem_problem(e: rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "no {:?} line",
            String::from_utf8_lossy(&end_marker)
                .escape_debug()
                .to_string()
        ),
        Error::IllegalSectionStart { line } => format!(
            "bad section start {:?}",
            String::from_utf8_lossy(&line).escape_debug().to_string()
        ),
        other => other.to_string(),
    }
}

impl From<io::Error> for FileProblem {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => Self::NotFound,
            io::ErrorKind::PermissionDenied => Self::PermissionDenied,
            _ => Self::Io(e),
        }
    }
}

fn file_err(option: &'static str, path: &Path, problem: impl Into<FileProblem>) -> TlsError {
    let (path, problem) = (path.to_path_buf(), problem.into());
    TlsError::File {
        option,
        path,
        problem,
    }
}

/// Reads every PEM section of type `T`, so that an empty result can be
/// reported as "nothing found" rather than as a parse error.
fn read_pem<T: PemObject>(option: &'static str, path: &Path) -> Result<Vec<T>, TlsError> {
    let data = std::fs::read(path).map_err(|e| file_err(option, path, e))?;
    T::pem_slice_iter(&data)
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| file_err(option, path, FileProblem::BadPem(pem_problem(e))))
}

fn load_pair(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = read_pem("certFile", cert_file)?;
    if chain.is_empty() {
        return Err(file_err("certFile", cert_file, FileProblem::NoCertificate));
    }
    let key = read_pem::<PrivateKeyDer<'static>>("keyFile", key_file)?
        .into_iter()
        .next()
        .ok_or_else(|| file_err("keyFile", key_file, FileProblem::NoPrivateKey))?;
    CertifiedKey::from_der(chain, key, &ring_provider())
        .map(Arc::new)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                file_err("keyFile", key_file, FileProblem::KeyMismatch)
            }
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                file_err("certFile", cert_file, FileProblem::BadCertificate(e))
            }
            e => file_err("keyFile", key_file, FileProblem::BadKey(e)),
        })
}

/// GOST (`tls.LoadX509KeyPair`) needs both files; one without the other is a config error.
fn configured_pair(s: &TlsSettings) -> Result<Option<Arc<CertifiedKey>>, TlsError> {
    match (&s.cert_file, &s.key_file) {
        (Some(c), Some(k)) => load_pair(c, k).map(Some),
        (None, None) => Ok(None),
        _ => Err(TlsError::Invalid(
            "certFile and keyFile must be set together".into(),
        )),
    }
}

/// Returns the store and the raw certificates: the latter let a dialer accept a
/// server that presents one of them verbatim, as Go does for a leaf found in its root pool.
fn load_ca(path: &Path) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsError> {
    let certs: Vec<CertificateDer<'static>> = read_pem("caFile", path)?;
    let mut roots = RootCertStore::empty();
    if roots.add_parsable_certificates(certs.iter().cloned()).0 == 0 {
        return Err(file_err("caFile", path, FileProblem::NoCertificate));
    }
    Ok((roots, certs))
}

fn version_rank(option: &'static str, value: &Option<String>, default: u8) -> Result<u8, TlsError> {
    let Some(value) = value.as_deref().filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    let rank = match value.to_ascii_lowercase().as_str() {
        "versiontls10" => 10,
        "versiontls11" => 11,
        "versiontls12" => 12,
        "versiontls13" => 13,
        _ => 0,
    };
    // rustls speaks only TLS 1.2 and 1.3, so an older maximum cannot be honoured.
    if rank == 0 || (option == "maxVersion" && rank < 12) {
        return Err(TlsError::Unknown {
            option,
            value: value.into(),
        });
    }
    Ok(rank)
}

fn versions(s: &TlsSettings) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let min = version_rank("minVersion", &s.min_version, 12)?;
    let max = version_rank("maxVersion", &s.max_version, 13)?;
    let all = [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)];
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|(r, _)| (min..=max).contains(r))
        .map(|(_, v)| v)
        .collect();
    if chosen.is_empty() {
        return Err(TlsError::Invalid("minVersion is above maxVersion".into()));
    }
    Ok(chosen)
}

/// rustls 0.23.48 deprecates the ring provider only because ring lacks
/// post-quantum key exchange; aws-lc-rs is too slow to build for this project,
/// and Go peers still negotiate the classic X25519/P-256 groups with it.
#[allow(deprecated)]
fn ring_provider() -> CryptoProvider {
    let mut p = ring::default_provider();
    // X25519 first: the provider's own order made our client offer P-384,
    // whose arithmetic ring does without assembly here; it cost about 2 ms
    // of CPU per handshake (a gost-to-gost TLS chain made 420 connections
    // a second on one worker, against 3,000 from a client offering X25519).
    p.kx_groups = vec![
        ring::kx_group::X25519,
        ring::kx_group::SECP256R1,
        ring::kx_group::SECP384R1,
    ];
    p
}

/// Like Go, `cipherSuites` only restricts TLS 1.2: TLS 1.3 suites stay enabled.
/// Names are Go's (IANA) names, compared case-insensitively as GOST does.
fn provider(s: &TlsSettings) -> Result<Arc<CryptoProvider>, TlsError> {
    let mut p = ring_provider();
    if !s.cipher_suites.is_empty() {
        let go_name = |cs: &rustls::SupportedCipherSuite| {
            cs.suite()
                .as_str()
                .map(|n| n.replacen("TLS13_", "TLS_", 1))
                .unwrap_or_default()
        };
        let mut chosen: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|cs| cs.tls13().is_some())
            .copied()
            .collect();
        for name in &s.cipher_suites {
            let cs = p
                .cipher_suites
                .iter()
                .find(|cs| go_name(cs).eq_ignore_ascii_case(name));
            let cs = cs.ok_or_else(|| TlsError::Unknown {
                option: "cipherSuites",
                value: name.clone(),
            })?;
            if !chosen.contains(cs) {
                chosen.push(*cs);
            }
        }
        p.cipher_suites = chosen;
    }
    Ok(Arc::new(p))
}

fn alpn(s: &TlsSettings) -> Vec<Vec<u8>> {
    s.alpn.iter().map(|p| p.as_bytes().to_vec()).collect()
}

fn build_server(
    s: &TlsSettings,
    key: Arc<CertifiedKey>,
    client_roots: Option<Arc<RootCertStore>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider(s)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(s)?)?;
    let builder = match client_roots {
        // Go's tls.RequireAndVerifyClientCert: the webpki verifier refuses anonymous clients by default.
        Some(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Invalid(e.to_string()))?,
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.alpn_protocols = alpn(s);
    Ok(Arc::new(config))
}

/// Where the default certificate came from, for the host to log.
#[derive(Debug)]
pub enum CertOrigin {
    /// certFile/keyFile of the top-level `tls` block.
    Configured,
    /// `cert.pem`/`key.pem` in the working directory.
    WorkDir,
    /// A certificate generated by an earlier run and saved in the state directory.
    Saved(PathBuf),
    /// Freshly generated; saving it may have failed, which GOST only warns about.
    Generated { saved: Result<PathBuf, TlsError> },
}

/// The certificate every listener without its own certFile/keyFile presents,
/// loaded once at start-up like GOST's `parsing.DefaultTLSConfig()`.
#[derive(Debug)]
pub struct DefaultCert {
    key: Arc<CertifiedKey>,
    client_roots: Option<Arc<RootCertStore>>,
    shared: Arc<ServerConfig>,
    origin: CertOrigin,
}

const SAVED_CERT: &str = "auto-ca-cert.pem";
const SAVED_KEY: &str = "auto-ca-key.pem";

impl DefaultCert {
    /// Follows go-gost/x `BuildDefaultTLSConfig`: the global block's files, else
    /// `work_dir/{cert,key}.pem`, else `state_dir/auto-ca-{cert,key}.pem` (GOST uses
    /// `$HOME/.gost`), else a generated certificate saved to `state_dir` when given.
    /// The global `caFile` makes client certificates mandatory on these listeners.
    pub fn load(
        global: &TlsSettings,
        work_dir: &Path,
        state_dir: Option<&Path>,
    ) -> Result<Self, TlsError> {
        let both = |dir: &Path, c: &str, k: &str| {
            let (c, k) = (dir.join(c), dir.join(k));
            (c.is_file() && k.is_file()).then_some((c, k))
        };
        let (key, origin) = if let Some(key) = configured_pair(global)? {
            (key, CertOrigin::Configured)
        } else if let Some((c, k)) = both(work_dir, "cert.pem", "key.pem") {
            (load_pair(&c, &k)?, CertOrigin::WorkDir)
        } else if let Some((key, c)) = state_dir
            .and_then(|d| both(d, SAVED_CERT, SAVED_KEY))
            .and_then(|(c, k)| match load_pair(&c, &k) {
                Ok(key) => Some((key, c)),
                // Our own saved state, not the user's: as GOST, a pair
                // that does not load (cut short, or written by another
                // gost at the same moment) is replaced.
                Err(e) => {
                    tracing::warn!(error = %e, "tls: saved default certificate unusable, generating a new one");
                    None
                }
            })
        {
            (key, CertOrigin::Saved(c))
        } else {
            let (cert_pem, key_pem) = generate_self_signed(global)?;
            let key = CertifiedKey::from_der(
                CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(invalid)?,
                PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(invalid)?,
                &ring_provider(),
            )?;
            let saved = match state_dir {
                Some(dir) => save(dir, &cert_pem, &key_pem),
                None => Err(TlsError::Invalid("no state directory".into())),
            };
            (Arc::new(key), CertOrigin::Generated { saved })
        };
        let client_roots = match &global.ca_file {
            Some(ca) => Some(Arc::new(load_ca(ca)?.0)),
            None => None,
        };
        let shared = build_server(global, key.clone(), client_roots.clone())?;
        Ok(Self {
            key,
            client_roots,
            shared,
            origin,
        })
    }

    pub fn origin(&self) -> &CertOrigin {
        &self.origin
    }
}

fn invalid(e: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid(e.to_string())
}

/// GOST's permissions: private directory, world-readable certificate, owner-only key.
fn save(dir: &Path, cert_pem: &str, key_pem: &str) -> Result<PathBuf, TlsError> {
    let write = |path: &Path, data: &str, mode: u32| -> Result<(), TlsError> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
        #[cfg(not(unix))]
        let _ = mode;
        // Written aside and renamed, so another gost starting at the same
        // moment never reads half a file.
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let result = opts
            .open(&tmp)
            .and_then(|mut f| io::Write::write_all(&mut f, data.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(|e| file_err("state", path, e))
    };
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(builder.recursive(true), 0o700);
    builder
        .recursive(true)
        .create(dir)
        .map_err(|e| file_err("state", dir, e))?;
    let cert = dir.join(SAVED_CERT);
    write(&cert, cert_pem, 0o644)?;
    write(&dir.join(SAVED_KEY), key_pem, 0o600)?;
    Ok(cert)
}

/// GOST's generated default certificate (`generateKeyPair`): an ECDSA P-256
/// self-signed CA that is also usable as a server and client leaf, with the
/// common name as SAN (an IP SAN for an address, which Go would write as a DNS
/// SAN that no verifier matches). Defaults: one year, `gost.run`, `GOST`. Returns PEM
/// (certificate, PKCS#8 key) so it can be saved and reloaded unchanged.
pub fn generate_self_signed(s: &TlsSettings) -> Result<(String, String), TlsError> {
    let validity = if s.validity.is_zero() {
        Duration::from_secs(365 * 24 * 3600)
    } else {
        s.validity
    };
    let cn = s
        .common_name
        .as_deref()
        .filter(|v| !v.is_empty())
        .unwrap_or("gost.run");
    let org = s
        .organization
        .as_deref()
        .filter(|v| !v.is_empty())
        .unwrap_or("GOST");
    let now = SystemTime::now();
    let not_after = now
        .checked_add(validity)
        .ok_or_else(|| invalid("validity is too large"))?;
    let mut params = CertificateParams::new(vec![cn.to_string()])?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, org);
    params.not_before = now.into();
    params.not_after = not_after.into();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let key = KeyPair::generate()?;
    Ok((params.self_signed(&key)?.pem(), key.serialize_pem()))
}

/// A listener's config. Without its own certFile/keyFile it presents the default
/// certificate and, unless it names its own `caFile`, inherits the global client
/// CA; a listener with no files and no options shares the one default config.
/// Unlike GOST, which ignores a listener's `caFile` when it has no certFile, the
/// `caFile` is always honoured: silently dropping client authentication is unsafe.
pub fn server_config(
    s: &TlsSettings,
    default: &DefaultCert,
) -> Result<Arc<ServerConfig>, TlsError> {
    let own = configured_pair(s)?;
    if own.is_none() && s.ca_file.is_none() && !s.has_options() {
        return Ok(default.shared.clone());
    }
    let client_roots = match (&s.ca_file, &own) {
        (Some(ca), _) => Some(Arc::new(load_ca(ca)?.0)),
        (None, Some(_)) => None,
        (None, None) => default.client_roots.clone(),
    };
    build_server(s, own.unwrap_or_else(|| default.key.clone()), client_roots)
}

/// A dialer's config: certFile/keyFile are the client certificate; `secure`
/// checks chain and name against `caFile` or the system roots; without `secure`
/// a `caFile` still pins the chain (no name check) and no `caFile` trusts anything.
pub fn client_config(s: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider(s)?;
    let trust = match (&s.ca_file, s.secure) {
        (Some(ca), _) => Some(load_ca(ca)?),
        (None, true) => Some((system_roots()?, Vec::new())),
        (None, false) => None,
    };
    let verifier = PeerVerifier {
        trust,
        check_name: s.secure,
        algs: provider.signature_verification_algorithms,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions(s)?)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match configured_pair(s)? {
        Some(key) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn(s);
    Ok(Arc::new(config))
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(invalid(format!(
            "no system root certificates ({:?})",
            found.errors
        )));
    }
    Ok(roots)
}

/// The name to verify and send as SNI: `serverName`, else the node's host.
/// An IP address yields `ServerName::IpAddress` (checked against IP SANs, no SNI).
pub fn server_name(s: &TlsSettings, dial_host: &str) -> Result<ServerName<'static>, TlsError> {
    let name = s
        .server_name
        .as_deref()
        .filter(|v| !v.is_empty())
        .unwrap_or(dial_host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name.to_string()).map_err(|_| TlsError::Unknown {
        option: "serverName",
        value: name.into(),
    })
}

/// Go's client verification modes in one verifier. Handshake signatures are always
/// checked, so even "insecure" mode proves the peer holds the presented key.
#[derive(Debug)]
struct PeerVerifier {
    /// `None` is Go's InsecureSkipVerify without a caFile.
    trust: Option<(RootCertStore, Vec<CertificateDer<'static>>)>,
    check_name: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some((roots, pinned)) = &self.trust else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        // GOST's generated certificate is a self-signed CA; webpki refuses a CA as a
        // leaf, Go accepts a leaf that is itself in the pool, so exact matches pass.
        if !pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algs.all,
            )?;
        }
        if self.check_name {
            verify_server_name(&cert, server_name)?;
        }
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

/// PEM files for tests (ECDSA P-256): `ca` signs `server` (127.0.0.1,
/// ::1, localhost), `client` and `expired`; `other_ca` signs `other_client`.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct TestPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub other_ca: PathBuf,
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
    pub expired_cert: PathBuf,
    pub expired_key: PathBuf,
}

#[cfg(test)]
fn test_params(
    cn: &str,
    sans: &[&str],
    usage: Option<ExtendedKeyUsagePurpose>,
) -> Result<CertificateParams, TlsError> {
    let mut p = CertificateParams::new(sans.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    p.distinguished_name.push(DnType::CommonName, cn);
    match usage {
        Some(usage) => p.extended_key_usages = vec![usage],
        None => {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::DigitalSignature,
            ];
        }
    }
    Ok(p)
}

#[cfg(test)]
use rcgen::Issuer;

#[cfg(test)]
impl TestPki {
    pub(crate) fn generate(dir: &Path) -> Result<Self, TlsError> {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        std::fs::create_dir_all(dir).map_err(|e| file_err("dir", dir, e))?;
        let write = |name: &str, pem: String| -> Result<PathBuf, TlsError> {
            let path = dir.join(name);
            std::fs::write(&path, pem).map_err(|e| file_err("dir", &path, e))?;
            Ok(path)
        };
        let issue = |p: &CertificateParams,
                     issuer: &Issuer<'_, KeyPair>|
         -> Result<(String, String), TlsError> {
            let key = KeyPair::generate()?;
            Ok((p.signed_by(&key, issuer)?.pem(), key.serialize_pem()))
        };
        let (ca_key, other_key) = (KeyPair::generate()?, KeyPair::generate()?);
        let (ca_p, other_p) = (
            test_params("gost-rs test CA", &[], None)?,
            test_params("gost-rs other CA", &[], None)?,
        );
        let (ca_pem, other_pem) = (
            ca_p.self_signed(&ca_key)?.pem(),
            other_p.self_signed(&other_key)?.pem(),
        );
        let (ca, other) = (Issuer::new(ca_p, ca_key), Issuer::new(other_p, other_key));

        let hosts = ["localhost", "127.0.0.1", "::1"];
        let server_p = test_params("localhost", &hosts, Some(ServerAuth))?;
        let (server, server_key) = issue(&server_p, &ca)?;
        let (client, client_key) = issue(&test_params("client", &[], Some(ClientAuth))?, &ca)?;
        let (oc, oc_key) = issue(&test_params("other-client", &[], Some(ClientAuth))?, &other)?;
        let mut expired_p = server_p;
        expired_p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        expired_p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let (expired, expired_key) = issue(&expired_p, &ca)?;
        Ok(Self {
            ca: write("ca.pem", ca_pem)?,
            server_cert: write("server.pem", server)?,
            server_key: write("server-key.pem", server_key)?,
            client_cert: write("client.pem", client)?,
            client_key: write("client-key.pem", client_key)?,
            other_ca: write("other-ca.pem", other_pem)?,
            other_client_cert: write("other-client.pem", oc)?,
            other_client_key: write("other-client-key.pem", oc_key)?,
            expired_cert: write("expired.pem", expired)?,
            expired_key: write("expired-key.pem", expired_key)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A per-test directory that is removed again, so repeated runs leave nothing behind.
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl std::ops::Deref for Scratch {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    fn scratch(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("gost-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn nowhere() -> PathBuf {
        std::env::temp_dir().join("gost-tls-no-such-dir")
    }

    fn files(cert: &Path, key: &Path) -> TlsSettings {
        TlsSettings {
            cert_file: Some(cert.into()),
            key_file: Some(key.into()),
            ..Default::default()
        }
    }

    fn ca(ca: &Path, secure: bool) -> TlsSettings {
        TlsSettings {
            ca_file: Some(ca.into()),
            secure,
            ..Default::default()
        }
    }

    fn generated_default() -> DefaultCert {
        DefaultCert::load(&TlsSettings::default(), &nowhere(), None).unwrap()
    }

    /// Runs one exchange; the server writes after the handshake so that a TLS 1.3
    /// client learns of a rejected client certificate. Returns the client's view.
    async fn exchange(
        server: Arc<ServerConfig>,
        client: &TlsSettings,
    ) -> Result<(String, Option<Vec<u8>>), String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(server).accept(tcp).await {
                let _ = tls.write_all(b"ok").await;
                let _ = tls.shutdown().await;
            }
        });
        let connector = tokio_rustls::TlsConnector::from(client_config(client).unwrap());
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = server_name(client, "127.0.0.1").unwrap();
        let result = async {
            let mut tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let mut got = String::new();
            tls.read_to_string(&mut got)
                .await
                .map_err(|e| e.to_string())?;
            let (_, conn) = tls.get_ref();
            let version = format!("{:?}", conn.protocol_version().unwrap());
            (got == "ok")
                .then(|| (version, conn.alpn_protocol().map(<[u8]>::to_vec)))
                .ok_or(got)
        }
        .await;
        srv.await.unwrap();
        result
    }

    #[tokio::test]
    async fn verification_modes() {
        let dir = scratch("modes");
        let pki = TestPki::generate(&dir).unwrap();
        let default = generated_default();
        let server = server_config(&files(&pki.server_cert, &pki.server_key), &default).unwrap();
        let expired = server_config(&files(&pki.expired_cert, &pki.expired_key), &default).unwrap();
        let own = server_config(&TlsSettings::default(), &default).unwrap();
        assert!(exchange(server.clone(), &ca(&pki.ca, true)).await.is_ok());
        assert!(exchange(server.clone(), &ca(&pki.other_ca, true))
            .await
            .unwrap_err()
            .contains("UnknownIssuer"));
        assert!(exchange(expired.clone(), &ca(&pki.ca, true))
            .await
            .unwrap_err()
            .contains("xpired"));
        // secure=false: anything goes without caFile, caFile still pins the chain.
        assert!(exchange(own.clone(), &TlsSettings::default()).await.is_ok());
        assert!(exchange(expired, &TlsSettings::default()).await.is_ok());
        assert!(exchange(server.clone(), &ca(&pki.ca, false)).await.is_ok());
        assert!(exchange(server.clone(), &ca(&pki.other_ca, false))
            .await
            .is_err());
        // secure=true without caFile uses the system roots, which do not know our CA.
        if system_roots().is_ok() {
            assert!(exchange(
                server,
                &TlsSettings {
                    secure: true,
                    ..Default::default()
                }
            )
            .await
            .is_err());
        }
        // GOST's self-signed CA as caFile (how GOST documents pinning) is accepted.
        let dir = scratch("pin");
        let global = TlsSettings {
            common_name: Some("127.0.0.1".into()),
            ..Default::default()
        };
        let pinned = DefaultCert::load(&global, &dir, Some(&dir)).unwrap();
        let pin_server = server_config(&TlsSettings::default(), &pinned).unwrap();
        assert!(
            exchange(pin_server.clone(), &ca(&dir.join(SAVED_CERT), false))
                .await
                .is_ok()
        );
        assert!(exchange(pin_server, &ca(&dir.join(SAVED_CERT), true))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn mutual_tls() {
        let dir = scratch("mtls");
        let pki = TestPki::generate(&dir).unwrap();
        let default = generated_default();
        let listener = TlsSettings {
            ca_file: Some(pki.ca.clone()),
            ..files(&pki.server_cert, &pki.server_key)
        };
        let server = server_config(&listener, &default).unwrap();
        let with = |cert: &Path, key: &Path| TlsSettings {
            ca_file: Some(pki.ca.clone()),
            ..files(cert, key)
        };
        assert!(
            exchange(server.clone(), &with(&pki.client_cert, &pki.client_key))
                .await
                .is_ok()
        );
        assert!(exchange(server.clone(), &ca(&pki.ca, false))
            .await
            .unwrap_err()
            .contains("CertificateRequired"));
        let wrong = with(&pki.other_client_cert, &pki.other_client_key);
        assert!(exchange(server, &wrong)
            .await
            .unwrap_err()
            .contains("UnknownCA"));
        // A global caFile makes the shared default config demand client certificates too.
        let global = TlsSettings {
            ca_file: Some(pki.ca.clone()),
            ..files(&pki.server_cert, &pki.server_key)
        };
        let strict = DefaultCert::load(&global, &nowhere(), None).unwrap();
        let shared = server_config(&TlsSettings::default(), &strict).unwrap();
        assert!(exchange(shared.clone(), &TlsSettings::default())
            .await
            .is_err());
        assert!(exchange(shared, &with(&pki.client_cert, &pki.client_key))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn default_certificate_is_generated_saved_and_shared() {
        let state = scratch("state");
        let global = TlsSettings {
            organization: Some("Acme".into()),
            ..Default::default()
        };
        let first = DefaultCert::load(&global, &state, Some(&state.join(".gost"))).unwrap();
        assert!(matches!(
            first.origin(),
            CertOrigin::Generated { saved: Ok(_) }
        ));
        let again = DefaultCert::load(&global, &state, Some(&state.join(".gost"))).unwrap();
        assert!(matches!(again.origin(), CertOrigin::Saved(_)));
        assert_eq!(first.key.cert, again.key.cert);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(state.join(".gost").join(SAVED_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::copy(state.join(".gost").join(SAVED_CERT), state.join("cert.pem")).unwrap();
        std::fs::copy(state.join(".gost").join(SAVED_KEY), state.join("key.pem")).unwrap();
        let cwd = DefaultCert::load(&global, &state, None).unwrap();
        assert!(matches!(cwd.origin(), CertOrigin::WorkDir));
        let a = server_config(&TlsSettings::default(), &first).unwrap();
        assert!(Arc::ptr_eq(
            &a,
            &server_config(&TlsSettings::default(), &first).unwrap()
        ));
        assert!(exchange(a, &TlsSettings::default()).await.is_ok());
    }

    #[tokio::test]
    async fn versions_suites_and_alpn() {
        let default = generated_default();
        let opts = TlsSettings {
            max_version: Some("VersionTLS12".into()),
            cipher_suites: vec!["tls_ecdhe_ecdsa_with_aes_128_gcm_sha256".into()],
            alpn: vec!["h2".into(), "http/1.1".into()],
            ..Default::default()
        };
        let server = server_config(&opts, &default).unwrap();
        let client = TlsSettings {
            alpn: vec!["http/1.1".into()],
            ..Default::default()
        };
        let (version, alpn) = exchange(server.clone(), &client).await.unwrap();
        assert_eq!(
            (version.as_str(), alpn.as_deref()),
            ("TLSv1_2", Some(&b"http/1.1"[..]))
        );
        let tls13_only = TlsSettings {
            min_version: Some("VersionTLS13".into()),
            ..Default::default()
        };
        assert!(exchange(server, &tls13_only).await.is_err());
        let bad = TlsSettings {
            cipher_suites: vec!["TLS_RSA_WITH_RC4_128_SHA".into()],
            ..Default::default()
        };
        let err = client_config(&bad).unwrap_err().to_string();
        assert_eq!(
            err,
            r#"tls: unknown or unsupported cipherSuites "TLS_RSA_WITH_RC4_128_SHA""#
        );
        let bad = TlsSettings {
            max_version: Some("VersionTLS11".into()),
            ..Default::default()
        };
        assert!(server_config(&bad, &default)
            .unwrap_err()
            .to_string()
            .contains("maxVersion"));
    }

    #[test]
    fn bad_files_are_named() {
        let dir = scratch("bad");
        let pki = TestPki::generate(&dir).unwrap();
        let default = generated_default();
        let err = |s: TlsSettings| server_config(&s, &default).unwrap_err().to_string();
        let missing = dir.join("missing.pem");
        assert_eq!(
            err(files(&missing, &pki.server_key)),
            format!("tls certFile {missing:?}: no such file")
        );
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        assert_eq!(
            err(files(&junk, &pki.server_key)),
            format!("tls certFile {junk:?}: no certificate found")
        );
        assert_eq!(
            err(files(&pki.server_cert, &junk)),
            format!("tls keyFile {junk:?}: no private key found")
        );
        let mismatch = files(&pki.server_cert, &pki.client_key);
        let want = format!(
            "tls keyFile {:?}: key does not match certificate",
            pki.client_key
        );
        assert_eq!(err(mismatch), want);
        assert_eq!(
            err(ca(&junk, false)),
            format!("tls caFile {junk:?}: no certificate found")
        );
        let half = TlsSettings {
            cert_file: Some(pki.server_cert.clone()),
            ..Default::default()
        };
        assert!(client_config(&half).is_err());
        assert!(server_name(&TlsSettings::default(), "[::1]")
            .is_ok_and(|n| matches!(n, ServerName::IpAddress(_))));
    }

    /// Keys in the formats other tools write: PKCS#8, PKCS#1 (RSA) and SEC1 (EC).
    #[tokio::test]
    async fn key_formats() {
        if !Path::new("/usr/bin/openssl").exists() {
            return eprintln!("openssl missing, skipped");
        }
        let dir = scratch("keys");
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&*dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let kinds: [&[&str]; 4] = [
            &["rsa:2048"],
            &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            &["ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
            &["ed25519"],
        ];
        let default = generated_default();
        for (i, kind) in kinds.iter().enumerate() {
            let (cert, key, old) = (
                format!("c{i}.pem"),
                format!("k{i}.pem"),
                format!("t{i}.pem"),
            );
            let mut args = vec![
                "req", "-x509", "-nodes", "-subj", "/CN=x", "-keyout", &key, "-out", &cert,
                "-newkey",
            ];
            args.extend_from_slice(kind);
            openssl(&args);
            let mut keys = vec![key.clone()];
            if i < 3 {
                openssl(&["pkey", "-traditional", "-in", &key, "-out", &old]);
                keys.push(old);
            }
            for key in keys {
                let server =
                    server_config(&files(&dir.join(&cert), &dir.join(&key)), &default).unwrap();
                assert!(
                    exchange(server, &TlsSettings::default()).await.is_ok(),
                    "{kind:?} {key}"
                );
            }
        }
    }

    /// Real clients against a mutual-TLS listener; skipped when the binaries are absent.
    #[tokio::test]
    async fn curl_and_openssl() {
        if !Path::new("/usr/bin/curl").exists() || !Path::new("/usr/bin/openssl").exists() {
            return eprintln!("curl or openssl missing, skipped");
        }
        let dir = scratch("tools");
        let pki = TestPki::generate(&dir).unwrap();
        let listener = TlsSettings {
            ca_file: Some(pki.ca.clone()),
            ..files(&pki.server_cert, &pki.server_key)
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(
            server_config(&listener, &generated_default()).unwrap(),
        );
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((conn, _)) = tcp.accept().await {
                if let Ok(mut tls) = acceptor.accept(conn).await {
                    let mut buf = [0; 1024];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                }
            }
        });
        let run = |program: &str, args: Vec<String>| {
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
            async move {
                tokio::time::timeout(Duration::from_secs(20), cmd.output())
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        let p = |p: &PathBuf| p.display().to_string();
        let url = format!("https://localhost:{port}/");
        let curl = |extra: &[String]| {
            let mut args = vec!["-sS".into(), "--cacert".into(), p(&pki.ca), url.clone()];
            args.extend_from_slice(extra);
            run("curl", args)
        };
        let ok = curl(&[
            "--cert".into(),
            p(&pki.client_cert),
            "--key".into(),
            p(&pki.client_key),
        ])
        .await;
        assert_eq!(
            String::from_utf8_lossy(&ok.stdout),
            "ok",
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert!(!curl(&[]).await.status.success());
        let s_client = run(
            "openssl",
            vec![
                "s_client".into(),
                "-connect".into(),
                format!("127.0.0.1:{port}"),
                "-verify_return_error".into(),
                "-CAfile".into(),
                p(&pki.ca),
                "-cert".into(),
                p(&pki.client_cert),
                "-key".into(),
                p(&pki.client_key),
            ],
        )
        .await;
        let out = String::from_utf8_lossy(&s_client.stdout);
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    }
}
