//! Operator identities: [`OperatorName`] and the SPIFFE ID
//! `spiffe://<trust domain>/operator/<name>` that an operator's client certificate carries.
//!
//! Operators are people or systems that drive the control API. Their certificates are
//! X.509-SVIDs of this trust domain like any workload's, told apart only by the path: a
//! function's ID is `/tenant/<t>/fn/<n>`, an operator's `/operator/<name>`, so a function's
//! SVID can never pass for an operator.

use std::fmt;

use crate::error::{excerpt, IdentityError};
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// The path prefix of operator SPIFFE IDs.
const OPERATOR_PATH: &str = "/operator/";
/// Longest operator name.
pub const MAX_OPERATOR_NAME_LEN: usize = 63;

/// An operator's name: 1 to 63 of `a-z`, `0-9` and `-`. Only [`OperatorName::parse`] and
/// [`OperatorName::from_spiffe_id`] make one, so a value always follows the rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperatorName(String);

impl OperatorName {
    /// Parse an operator name from untrusted text.
    pub fn parse(input: &str) -> Result<OperatorName, IdentityError> {
        let valid = !input.is_empty()
            && input.len() <= MAX_OPERATOR_NAME_LEN
            && input
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(IdentityError::OperatorNameInvalid {
                input: excerpt(input),
            });
        }
        Ok(OperatorName(input.to_owned()))
    }

    /// The operator named by `id` if it is an operator ID of `trust_domain`
    /// (`spiffe://<trust domain>/operator/<name>`, nothing after the name); `None` for any
    /// other ID, a function's included.
    pub fn from_spiffe_id(id: &SpiffeId, trust_domain: &TrustDomain) -> Option<OperatorName> {
        if !id.is_member_of(trust_domain) {
            return None;
        }
        let name = id.path().strip_prefix(OPERATOR_PATH)?;
        OperatorName::parse(name).ok()
    }

    /// The SPIFFE ID of this operator in `trust_domain`.
    pub fn spiffe_id(&self, trust_domain: &TrustDomain) -> Result<SpiffeId, IdentityError> {
        SpiffeId::parse(&format!("spiffe://{trust_domain}{OPERATOR_PATH}{}", self.0))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for good in ["alice", "ci-deployer", "a", "0", &"a".repeat(63)] {
            assert!(OperatorName::parse(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "Alice",
            "a_b",
            "a.b",
            "a/b",
            "root\n",
            &"a".repeat(64),
            "é",
        ] {
            assert!(OperatorName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_operator_ids_of_the_trust_domain_name_an_operator() {
        let td = TrustDomain::default();
        let alice = OperatorName::parse("alice").unwrap();
        let id = alice.spiffe_id(&td).unwrap();
        assert_eq!(id.as_str(), "spiffe://zerofn.local/operator/alice");
        assert_eq!(OperatorName::from_spiffe_id(&id, &td), Some(alice));
        for other in [
            "spiffe://zerofn.local/tenant/acme/fn/operator",
            "spiffe://zerofn.local/operator/alice/extra",
            "spiffe://zerofn.local/operator",
            "spiffe://zerofn.local/operator/Alice",
            "spiffe://other.domain/operator/alice",
        ] {
            let id = SpiffeId::parse(other).unwrap();
            assert_eq!(OperatorName::from_spiffe_id(&id, &td), None, "{other}");
        }
    }
}
