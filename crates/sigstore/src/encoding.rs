//! Base64 as protobuf JSON spells `bytes`: the one decoder for bundles, keys, log entries
//! and trusted roots.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

/// Standard base64 with or without `=` padding (protobuf JSON accepts both), rejecting
/// non-canonical trailing bits.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a protobuf JSON `bytes` value. Line breaks are skipped, as Go's
/// `encoding/base64` (behind `protojson`, which cosign and sigstore-go use) skips them, so a
/// value wrapped by `base64(1)` means the same here as there.
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    if text.contains(['\n', '\r']) {
        let joined: String = text.chars().filter(|c| !matches!(c, '\n' | '\r')).collect();
        BASE64.decode(joined)
    } else {
        BASE64.decode(text)
    }
}
