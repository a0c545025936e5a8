//! The trusted-signer policy: who a tenant trusts to sign ([`TrustedSigners`]: keys and
//! keyless identities with their trusted roots) and the one check of a bundle against them
//! ([`verify_signature`]), shared by component admission, attestations and layers.

use std::sync::Arc;

use zerofn_types::Digest;

use crate::bundle::Bundle;
use crate::error::AdmissionError;
use crate::keys::PublicKey;
use crate::trust_root::TrustedRoot;
use crate::verify::{verify, Identity, VerificationPolicy, VerifiedSignature};

/// A signing identity trusted for keyless (Fulcio certificate) signatures,
/// with the trusted root its certificates and log entries must chain to.
#[derive(Clone, Debug)]
pub struct KeylessSigner {
    pub identity: Identity,
    pub trusted_root: Arc<TrustedRoot>,
}

impl KeylessSigner {
    pub(crate) fn policy(&self) -> VerificationPolicy {
        VerificationPolicy::Keyless {
            trusted_root: (*self.trusted_root).clone(),
            identity: self.identity.clone(),
        }
    }
}

/// Everyone a tenant trusts to sign its code and attestations.
#[derive(Clone, Debug, Default)]
pub struct TrustedSigners {
    pub keys: Vec<PublicKey>,
    pub keyless: Vec<KeylessSigner>,
}

/// Verifies `bundle` over `digest` with whichever of `signers` it is made
/// for: a key-based bundle against the keys, a keyless one against each
/// keyless signer in turn (the first error is returned if none verifies).
pub fn verify_signature(
    digest: &Digest,
    bundle: &Bundle,
    signers: &TrustedSigners,
    tenant: &str,
) -> Result<VerifiedSignature, AdmissionError> {
    if bundle.is_keyless() {
        let mut first_error = None;
        for signer in &signers.keyless {
            match verify(digest, bundle, &signer.policy()) {
                Ok(verified) => return Ok(verified),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(
            first_error.unwrap_or_else(|| AdmissionError::NoSigningIdentities {
                tenant: tenant.to_owned(),
            }),
        )
    } else {
        if signers.keys.is_empty() {
            return Err(AdmissionError::NoTrustedKeysFor {
                tenant: tenant.to_owned(),
            });
        }
        verify(
            digest,
            bundle,
            &VerificationPolicy::Key(signers.keys.clone()),
        )
    }
}
