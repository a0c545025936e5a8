#![forbid(unsafe_code)]
//! Workload identity: a built-in SPIFFE issuer for the platform's trust domain.
//!
//! This crate owns SPIFFE IDs ([`SpiffeId`], [`TrustDomain`]), the trust domain's
//! certificate authority ([`CertificateAuthority`]), the two kinds of SVID it issues and
//! verifies ([`X509Svid`], [`JwtSvid`]), revocation ([`RevocationList`]) and rotation
//! ([`SvidRotator`]). It also issues the control API's TLS server certificate and operators'
//! client certificates (`spiffe://<trust domain>/operator/<name>`, [`OperatorName`]) for
//! public keys the operators generated themselves. Each function instance runs with the identity
//! `spiffe://<trust domain>/tenant/<tenant>/fn/<name>` ([`SpiffeId::for_function`]).
//!
//! Standards: the SPIFFE ID, X509-SVID and JWT-SVID specifications of
//! <https://github.com/spiffe/spiffe/tree/main/standards>; sections are cited where the
//! code enforces them. Short of them: no SPIFFE Workload API, no federation (foreign
//! bundles), no CRL or OCSP (revocation is in-process), no CA rotation, and the trust
//! bundle is served as PEM and JWKS rather than one SPIFFE bundle document.
//!
//! # Trust
//! * Trusts the file system under the CA directory the caller names: whoever can read it
//!   holds the CA. Key files are created `0600` (the directory `0700`), written atomically,
//!   never overwritten, and refused at load if group or others may read them.
//! * Trusts `rcgen` (with `ring`) to build and sign certificates, `x509-parser` to parse
//!   them, `ring` to verify ECDSA signatures, `p256` for keys and JWT signing, `sha2` and
//!   `base64` for digests and encodings; no hand-rolled cryptography. The JWS layer is the
//!   small glue around them in `jwt_svid.rs`, which explains why the `jsonwebtoken` crate
//!   is not used.
//! * Trusts nothing it is asked to verify: a certificate or token is parsed with size
//!   limits and must chain to this CA, hold exactly one SPIFFE ID of a workload of this
//!   trust domain, be valid at the given time, and not be revoked. JWT-SVIDs must be
//!   ES256 with a known `kid`; `none`, `HS*` and every other algorithm are refused before
//!   any key is chosen, so no key confusion is possible.
//! * Guarantees: every [`SpiffeId`] and [`TrustDomain`] value follows the SPIFFE ID
//!   specification; a revocation is seen by the next verification; an [`SvidRotator`]
//!   always holds an SVID. Private keys and tokens live in zeroizing buffers and never
//!   appear in `Debug`, `Display`, errors or logs. Copies made inside `ring` and `rcgen`
//!   while signing are not wiped: zeroization is best effort.
//! * Never panics on input; clippy denies `unwrap`, `expect`, `panic` and indexing.

mod ca;
mod error;
mod jwt_svid;
mod key_file;
mod operator;
mod revocation;
mod rotation;
mod serial;
mod spiffe_id;
mod verified;
mod x509_svid;

pub use ca::{
    CertificateAuthority, CA_CERT_FILE, CA_KEY_FILE, CA_VALIDITY, JWT_KEY_FILE, MAX_SVID_TTL,
};
pub use error::IdentityError;
pub use jwt_svid::JwtSvid;
pub use operator::{OperatorName, MAX_OPERATOR_NAME_LEN};
pub use revocation::RevocationList;
pub use rotation::SvidRotator;
pub use serial::SerialNumber;
pub use spiffe_id::{
    SpiffeId, SpiffeIdProblem, TrustDomain, DEFAULT_TRUST_DOMAIN, MAX_SPIFFE_ID_LEN,
    MAX_TRUST_DOMAIN_LEN,
};
pub use verified::{SvidRefusal, SvidVerifier, VerifiedSpiffeId};
pub use x509_svid::{IssuedCertificate, X509Svid};
