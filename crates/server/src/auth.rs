//! Operator authentication for the control API.

use std::fmt;

use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;

/// The operator token. Never printed: `Debug` is redacted and there is no
/// `Display`.
pub(crate) struct OperatorToken(String);

impl fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OperatorToken(..)")
    }
}

impl OperatorToken {
    pub(crate) fn new(token: String) -> OperatorToken {
        OperatorToken(token)
    }

    pub(crate) fn generate() -> OperatorToken {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        OperatorToken(hex::encode(bytes))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Check an `Authorization` header value (`Bearer <token>`) in time
    /// independent of where it differs.
    pub(crate) fn matches_header(&self, header: Option<&[u8]>) -> bool {
        let Some(value) = header else { return false };
        let Some(presented) = value.strip_prefix(b"Bearer ") else {
            return false;
        };
        // An empty configured token never authenticates anyone.
        !self.0.is_empty() && bool::from(presented.ct_eq(self.0.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let t = OperatorToken::new("abc123".into());
        assert!(t.matches_header(Some(b"Bearer abc123")));
        for wrong in [
            &b"Bearer abc124"[..],
            b"Bearer abc12",
            b"Bearer abc1234",
            b"bearer abc123",
            b"abc123",
            b"",
        ] {
            assert!(!t.matches_header(Some(wrong)), "{wrong:?}");
        }
        assert!(!t.matches_header(None));
        assert!(!OperatorToken::new(String::new()).matches_header(Some(b"Bearer ")));
        assert_eq!(format!("{t:?}"), "OperatorToken(..)");
    }
}
