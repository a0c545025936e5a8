//! [`SerialNumber`]: the id by which an SVID is revoked.

use std::fmt;
use std::str::FromStr;

use rand_core::{OsRng, RngCore};

use crate::error::{excerpt, IdentityError};

/// Longest serial accepted: RFC 5280 §4.1.2.2 allows at most 20 octets.
const MAX_SERIAL_BYTES: usize = 20;

/// A certificate serial number (or a JWT-SVID's `jti`), as lowercase hex without leading
/// zero bytes, so that the same number always has the same text however it was encoded
/// (DER adds a `00` byte before a number whose top bit is set). `Display` prints the hex.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SerialNumber(String);

impl SerialNumber {
    /// Parse hex text (upper or lower case, 1 to 40 digits).
    pub fn parse(input: &str) -> Result<SerialNumber, IdentityError> {
        let invalid = || IdentityError::SerialInvalid {
            input: excerpt(input),
        };
        if input.is_empty()
            || input.len() > 2 * MAX_SERIAL_BYTES
            || !input.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(invalid());
        }
        let even = if input.len() % 2 == 1 {
            format!("0{input}")
        } else {
            input.to_owned()
        };
        let bytes = hex::decode(even).map_err(|_| invalid())?;
        Ok(SerialNumber::from_be_bytes(&bytes))
    }

    /// The serial from its big-endian bytes (for example the content of a DER INTEGER).
    pub(crate) fn from_be_bytes(bytes: &[u8]) -> SerialNumber {
        let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let significant = bytes.get(first..).unwrap_or_default();
        if significant.is_empty() {
            return SerialNumber("00".to_owned());
        }
        SerialNumber(hex::encode(significant))
    }

    /// A fresh random 128-bit serial, with the bytes to put in a certificate.
    pub(crate) fn random() -> (SerialNumber, [u8; 16]) {
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        (SerialNumber::from_be_bytes(&bytes), bytes)
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SerialNumber {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SerialNumber::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalizes_case_and_leading_zeros() {
        let a = SerialNumber::parse("00AB12").unwrap();
        let b = SerialNumber::parse("ab12").unwrap();
        let c = SerialNumber::from_be_bytes(&[0, 0xab, 0x12]);
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.as_str(), "ab12");
        assert_eq!(SerialNumber::parse("abc").unwrap().as_str(), "0abc");
        assert_eq!(SerialNumber::parse("0").unwrap().as_str(), "00");
    }

    #[test]
    fn rejects_non_hex_and_oversized() {
        for bad in ["", "xyz", "ab:cd", "0x12", &"a".repeat(41), " 12"] {
            assert!(SerialNumber::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in any::<String>()) {
            let _ = SerialNumber::parse(&input);
        }

        #[test]
        fn display_round_trips(bytes in proptest::collection::vec(any::<u8>(), 1..=20)) {
            let serial = SerialNumber::from_be_bytes(&bytes);
            prop_assert_eq!(SerialNumber::parse(serial.as_str()).unwrap(), serial);
        }
    }
}
