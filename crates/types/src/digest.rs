//! [`Digest`]: a sha256 digest, written `sha256:<64 lowercase hex>` (the OCI and Sigstore
//! spelling).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::text::excerpt;

const PREFIX: &str = "sha256:";

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// A digest string is not `sha256:` followed by 64 lowercase hex digits.
    #[error("`{input}` is not a sha256 digest; write it as `sha256:` followed by 64 lowercase hex digits")]
    Invalid {
        /// The offending input (escaped and shortened).
        input: String,
    },
}

/// A sha256 digest. Displays, debugs and serialises as `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The sha256 of `bytes`. CPU-bound for large inputs: async callers run it on a blocking
    /// thread.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Parses exactly `sha256:` followed by 64 lowercase hex digits; nothing else (no
    /// uppercase, no other algorithm, no whitespace) is accepted, so a digest has one spelling.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        parse_sha256_hex(s)
            .map(Digest)
            .ok_or_else(|| DigestError::Invalid { input: excerpt(s) })
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        std::str::from_utf8(&self.hex_digits()).map_or_else(|_| String::new(), str::to_owned)
    }

    /// The hex digits on the stack: an invocation's audit record names its
    /// function's digest, so this is on every request's path
    /// (`hex::encode` builds its string a `char` at a time).
    fn hex_digits(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        // Cannot fail: the output is exactly twice the input.
        let _ = hex::encode_to_slice(self.0, &mut out);
        out
    }

    /// A digest taken from bytes that are already a sha256 output (a bundle's message digest).
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }
}

/// The 32 bytes of `sha256:<64 lowercase hex>`, or `None` if `s` is spelled any other way.
/// Shared with `zerofn_sigstore::KeyId::parse`, which uses the same spelling.
pub fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    let hex_part = s.strip_prefix(PREFIX)?;
    let lowercase_hex = hex_part
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if hex_part.len() != 64 || !lowercase_hex {
        return None;
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut bytes).ok()?;
    Some(bytes)
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.hex_digits();
        f.write_str(PREFIX)?;
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // sha256("") from FIPS 180-2 / every sha256 implementation.
    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_empty_input_is_the_known_value() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        assert_eq!(format!("{:?}", Digest::of(b"")), EMPTY);
    }

    #[test]
    fn parse_round_trips() {
        let digest = Digest::parse(EMPTY).unwrap();
        assert_eq!(digest, Digest::of(b""));
        assert_eq!(digest.to_string(), EMPTY);
        assert_eq!(digest.hex().len(), 64);
        assert_eq!(EMPTY.parse::<Digest>().unwrap(), digest);
    }

    #[test]
    fn parse_refuses_other_spellings() {
        let hex = EMPTY.trim_start_matches("sha256:");
        let upper = format!("sha256:{}", hex.to_uppercase());
        let short = format!("sha256:{}", &hex[..63]);
        let long = format!("sha256:{hex}0");
        let non_hex = format!("sha256:{}g", &hex[..63]);
        let space = format!(" {EMPTY}");
        for (input, why) in [
            (upper.as_str(), "uppercase hex"),
            (short.as_str(), "63 hex digits"),
            (long.as_str(), "65 hex digits"),
            (hex, "missing prefix"),
            (non_hex.as_str(), "non-hex digit"),
            (space.as_str(), "leading space"),
            ("sha512:00", "other algorithm"),
            ("", "empty"),
            (
                "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "uppercase prefix",
            ),
        ] {
            let err = Digest::parse(input).expect_err(why);
            assert!(matches!(err, DigestError::Invalid { .. }), "{why}: {err:?}");
            assert!(
                err.to_string().contains("is not a sha256 digest"),
                "{why}: {err}"
            );
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let digest = Digest::of(b"x");
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{digest}\""));
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, digest);
        let err = serde_json::from_str::<Digest>("\"sha256:00\"").unwrap_err();
        assert!(err.to_string().contains("is not a sha256 digest"), "{err}");
    }

    proptest! {
        #[test]
        fn parse_of_display_is_identity(bytes in any::<[u8; 32]>()) {
            let digest = Digest::from_bytes(bytes);
            prop_assert_eq!(Digest::parse(&digest.to_string()).unwrap(), digest);
            prop_assert_eq!(digest.hex(), hex::encode(bytes));
        }

        #[test]
        fn parse_never_panics(text in ".*") {
            let _ = Digest::parse(&text);
        }
    }
}
