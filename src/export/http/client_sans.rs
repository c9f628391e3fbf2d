//! `client_allowed_sans`: a client certificate that verifies must also name
//! one of the allowed subject alternative names (DNS names, URIs and IP
//! addresses; e-mail addresses are refused at load, as webpki does not read
//! them). The chain is verified first, by the wrapped verifier.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

/// Checks the SANs of certificates `inner` has verified.
#[derive(Debug)]
pub(super) struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    names: Vec<String>,
    ips: Vec<IpAddr>,
}

impl AllowedSans {
    /// `allowed` as the web config gives them.
    pub(super) fn new(
        inner: Arc<dyn ClientCertVerifier>,
        allowed: &[String],
    ) -> Result<AllowedSans, String> {
        if allowed.is_empty() {
            return Err("client_allowed_sans is empty".to_string());
        }
        let (mut names, mut ips) = (Vec::new(), Vec::new());
        for san in allowed {
            if let Ok(ip) = san.parse::<IpAddr>() {
                ips.push(ip);
            } else if san.contains('@') && !san.contains(':') {
                return Err(format!(
                    "client_allowed_sans: {san:?}: e-mail addresses are not checked \
                     (DNS names, URIs and IP addresses are)"
                ));
            } else {
                names.push(san.clone());
            }
        }
        Ok(AllowedSans { inner, names, ips })
    }

    /// Whether `cert` names one of the allowed SANs.
    fn allows(&self, cert: &CertificateDer<'_>) -> bool {
        let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
            return false;
        };
        let named = cert
            .valid_dns_names()
            .chain(cert.valid_uri_names())
            .any(|n| self.names.iter().any(|a| a == n));
        named
            || self.ips.iter().any(|ip| {
                cert.verify_is_valid_for_subject_name(&ServerName::IpAddress((*ip).into()))
                    .is_ok()
            })
    }
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.allows(end_entity) {
            Ok(verified)
        } else {
            log::debug!("client certificate names none of client_allowed_sans");
            Err(Error::General(
                "the client certificate names none of client_allowed_sans".to_string(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner() -> Arc<dyn ClientCertVerifier> {
        Arc::new(rustls::server::NoClientAuth)
    }

    #[test]
    fn names_and_addresses_are_told_apart_and_emails_refused() {
        let sans = [
            "a.example".to_string(),
            "192.0.2.1".to_string(),
            "::1".to_string(),
        ];
        let a = AllowedSans::new(inner(), &sans).expect("valid");
        assert_eq!(a.names, ["a.example"]);
        assert_eq!(a.ips.len(), 2);
        let e = AllowedSans::new(inner(), &["ops@example.com".to_string()]).expect_err("email");
        assert!(e.contains("e-mail"), "{e}");
        assert!(AllowedSans::new(inner(), &[]).is_err(), "empty");
        // A URI with a user part is a URI, not an e-mail address.
        assert!(AllowedSans::new(inner(), &["spiffe://u@example.org/x".to_string()]).is_ok());
    }

    #[test]
    fn bytes_that_are_no_certificate_name_nothing() {
        let a = AllowedSans::new(inner(), &["a.example".to_string()]).expect("valid");
        assert!(!a.allows(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])));
    }
}
