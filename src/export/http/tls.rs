//! `tls_server_config` → a rustls acceptor (ring's cryptography, no
//! OpenSSL). Go's names are taken as the toolkit writes them: versions
//! `TLS12`/`TLS13`, curves `X25519`/`CurveP256`/`CurveP384`, cipher suites by
//! their IANA names. What rustls does not implement is an error naming it,
//! never silently dropped: TLS 1.0 and 1.1, CBC suites, CurveP521, and the
//! client auth types that take a certificate without verifying it.
//! `client_allowed_sans` is checked by `client_sans`.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::{ring, CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

use super::client_sans::AllowedSans;
use super::web_config::{beside, TlsFile};

/// The acceptor `file` describes; paths are relative to `dir`.
pub(super) fn acceptor(file: &TlsFile, dir: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    if file.cert.is_none() && file.cert_file.is_none() {
        return Err("missing one of cert or cert_file".to_string());
    }
    if file.key.is_none() && file.key_file.is_none() {
        return Err("missing one of key or key_file".to_string());
    }
    let certs = certificates(file, dir)?;
    let key = private_key(file, dir)?;
    let provider = Arc::new(CryptoProvider {
        cipher_suites: cipher_suites(&file.cipher_suites)?,
        kx_groups: kx_groups(&file.curve_preferences)?,
        ..ring::default_provider()
    });
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(file)?)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let builder = match client_verifier(file, dir, &provider)? {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The PEM of `inline` or of the file at `path` (one of them is required).
fn pem(
    what: &str,
    inline: Option<&String>,
    path: Option<&std::path::PathBuf>,
    dir: &Path,
) -> Result<Vec<u8>, String> {
    match (inline, path) {
        (Some(_), Some(_)) => Err(format!("give {what} or {what}_file, not both")),
        (Some(text), None) => Ok(text.as_bytes().to_vec()),
        (None, Some(p)) => {
            let p = beside(dir, p);
            std::fs::read(&p).map_err(|e| format!("{what}_file {}: {e}", p.display()))
        }
        (None, None) => Err(format!("missing one of {what} or {what}_file")),
    }
}

fn certificates(file: &TlsFile, dir: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = pem("cert", file.cert.as_ref(), file.cert_file.as_ref(), dir)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cert: {e}"))?;
    if certs.is_empty() {
        return Err("cert: no PEM certificate in it".to_string());
    }
    Ok(certs)
}

fn private_key(file: &TlsFile, dir: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = pem("key", file.key.as_ref(), file.key_file.as_ref(), dir)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| format!("key: {e}"))
}

fn version(name: &str) -> Result<&'static SupportedProtocolVersion, String> {
    match name {
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS10" | "TLS11" => Err(format!(
            "{name}: rustls implements TLS 1.2 and 1.3 only (use TLS12)"
        )),
        other => Err(format!("unknown TLS version {other:?} (TLS12, TLS13)")),
    }
}

/// `min_version` (default TLS12) to `max_version` (default TLS13).
fn versions(file: &TlsFile) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let min = version(file.min_version.as_deref().unwrap_or("TLS12"))?;
    let max = version(file.max_version.as_deref().unwrap_or("TLS13"))?;
    let all = [&rustls::version::TLS12, &rustls::version::TLS13];
    let rank = |v: &SupportedProtocolVersion| all.iter().position(|a| a.version == v.version);
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|v| rank(v) >= rank(min) && rank(v) <= rank(max))
        .collect();
    if chosen.is_empty() {
        return Err("min_version is above max_version".to_string());
    }
    Ok(chosen)
}

/// The TLS 1.2 suites named (TLS 1.3's are not configurable, as in Go), in
/// the order given; every suite when none is named.
fn cipher_suites(names: &[String]) -> Result<Vec<SupportedCipherSuite>, String> {
    let all = ring::ALL_CIPHER_SUITES;
    if names.is_empty() {
        return Ok(all.to_vec());
    }
    let mut chosen: Vec<SupportedCipherSuite> = all
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS13)
        .copied()
        .collect();
    for name in names {
        let suite = all
            .iter()
            .find(|s| s.suite().as_str() == Some(name.as_str()))
            .ok_or_else(|| {
                let known: Vec<&str> = all
                    .iter()
                    .filter(|s| s.version() == &rustls::version::TLS12)
                    .filter_map(|s| s.suite().as_str())
                    .collect();
                format!(
                    "cipher suite {name:?} is not one rustls implements ({})",
                    known.join(", ")
                )
            })?;
        chosen.push(*suite);
    }
    Ok(chosen)
}

fn kx_groups(names: &[String]) -> Result<Vec<&'static dyn SupportedKxGroup>, String> {
    if names.is_empty() {
        return Ok(ring::ALL_KX_GROUPS.to_vec());
    }
    names
        .iter()
        .map(|name| match name.as_str() {
            "X25519" => Ok(ring::kx_group::X25519),
            "CurveP256" => Ok(ring::kx_group::SECP256R1),
            "CurveP384" => Ok(ring::kx_group::SECP384R1),
            "CurveP521" => Err("curve CurveP521: not implemented by rustls".to_string()),
            other => Err(format!(
                "unknown curve {other:?} (X25519, CurveP256, CurveP384)"
            )),
        })
        .collect()
}

/// The client certificate check `client_auth_type` asks for.
fn client_verifier(
    file: &TlsFile,
    dir: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, String> {
    let auth = file.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let has_ca = file.client_ca.is_some() || file.client_ca_file.is_some();
    let required = match auth {
        "NoClientCert" if has_ca => {
            return Err("client CAs are given without a client_auth_type".to_string())
        }
        "NoClientCert" => return Ok(None),
        "RequireAndVerifyClientCert" => true,
        "VerifyClientCertIfGiven" => false,
        "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => {
            return Err(format!(
                "client_auth_type {auth}: certificates that are not verified are not accepted \
                 (use VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
            ))
        }
        other => return Err(format!("invalid client_auth_type {other:?}")),
    };
    let bytes = pem(
        "client_ca",
        file.client_ca.as_ref(),
        file.client_ca_file.as_ref(),
        dir,
    )?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| format!("client_ca: {e}"))?;
        roots.add(cert).map_err(|e| format!("client_ca: {e}"))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    let verifier = builder.build().map_err(|e| format!("client_ca: {e}"))?;
    match &file.client_allowed_sans {
        None => Ok(Some(verifier)),
        // As the toolkit: SANs are matched only when a certificate is required.
        Some(_) if !required => {
            Err("client_allowed_sans needs client_auth_type RequireAndVerifyClientCert".to_string())
        }
        Some(allowed) => Ok(Some(Arc::new(AllowedSans::new(verifier, allowed)?))),
    }
}
