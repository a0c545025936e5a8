//! Strict parsing of compact JWS (RFC 7515 §7.1) and of the JSON inside it.
//!
//! Stricter than the RFCs require, because every laxity here has been an attack somewhere:
//! exactly three parts (a fourth part or JSON serialisation is refused), each canonical
//! unpadded base64url (RFC 7515 §2: no padding, no other alphabet, no non-zero trailing
//! bits, so one token has one spelling), JSON objects whose members are unique (RFC 7515
//! §4 and RFC 7519 §4 say a parser must either refuse duplicates or take the last; two
//! parsers taking different ones is how claims get smuggled, so they are refused), and the
//! token bounded in size before anything is decoded.
//!
//! # Trust
//! Trusts nothing in the token. Nothing here verifies a signature: [`Compact`] is only the
//! parsed form that `verify` checks.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::AuthnError;

/// Largest token accepted, in bytes (before decoding).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// A compact JWS split and decoded, its signature not yet checked.
pub(crate) struct Compact<'t> {
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, what the signature covers.
    pub(crate) signing_input: &'t [u8],
    pub(crate) header: Map<String, Value>,
    pub(crate) payload: Vec<u8>,
    pub(crate) signature: Vec<u8>,
}

/// Decodes one part: canonical unpadded base64url only.
pub(crate) fn b64(part: &str) -> Result<Vec<u8>, AuthnError> {
    // The engine refuses padding (`RequireNone`), characters outside the URL-safe
    // alphabet and non-zero trailing bits: each encoded string has one decoding and
    // each decoding one encoding.
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthnError::NonCanonicalBase64)
}

/// Splits and decodes a compact JWS; the header must be a JSON object.
pub(crate) fn parse_compact(token: &str) -> Result<Compact<'_>, AuthnError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthnError::Oversize {
            max: MAX_TOKEN_BYTES,
        });
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthnError::Malformed);
    };
    // An empty signature parses (and never verifies), so that `alg: none` with no
    // signature is refused for what it is.
    if h.is_empty() {
        return Err(AuthnError::Malformed);
    }
    let header = object(&b64(h)?)?;
    let payload = b64(p)?;
    let signature = b64(s)?;
    let signing_len = h.len() + 1 + p.len();
    let signing_input = token
        .as_bytes()
        .get(..signing_len)
        .ok_or(AuthnError::Malformed)?;
    Ok(Compact {
        signing_input,
        header,
        payload,
        signature,
    })
}

/// Parses `bytes` as one JSON object whose members (at every depth) are unique.
pub(crate) fn object(bytes: &[u8]) -> Result<Map<String, Value>, AuthnError> {
    match strict_value(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AuthnError::BadJson),
        Err(e) => Err(e),
    }
}

/// Any JSON value, refusing repeated members.
pub(crate) fn strict_value(bytes: &[u8]) -> Result<Value, AuthnError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match StrictSeed
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
    {
        Ok(v) => Ok(v),
        // Tell a repeated member from other bad JSON: the lax parser accepts the first.
        Err(_) if serde_json::from_slice::<Value>(bytes).is_ok() => {
            Err(AuthnError::DuplicateMember)
        }
        Err(_) => Err(AuthnError::BadJson),
    }
}

struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value without repeated members")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictSeed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom("repeated member"));
            }
            let value = map.next_value_seed(StrictSeed)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_members_are_refused_at_any_depth() {
        assert_eq!(
            object(br#"{"a":1,"a":2}"#).unwrap_err(),
            AuthnError::DuplicateMember
        );
        assert_eq!(
            object(br#"{"a":{"b":1,"b":1}}"#).unwrap_err(),
            AuthnError::DuplicateMember
        );
        // An escaped spelling of the same name is the same member.
        assert_eq!(
            object(br#"{"alg":"RS256","\u0061lg":"none"}"#).unwrap_err(),
            AuthnError::DuplicateMember
        );
        assert_eq!(object(b"[1]").unwrap_err(), AuthnError::BadJson);
        assert_eq!(object(b"{} x").unwrap_err(), AuthnError::BadJson);
        assert_eq!(object(br#"{"a":[1,{"b":2}]}"#).unwrap()["a"][1]["b"], 2);
    }

    #[test]
    fn base64_must_be_canonical_and_unpadded() {
        assert_eq!(b64("Zm9v").unwrap(), b"foo");
        for bad in [
            "Zm9=", "Zm8=", "Zm9v====", "Zm+v", "Zm/v", "Zm9v\n", "Zh", "Zm9 v",
        ] {
            assert_eq!(
                b64(bad).unwrap_err(),
                AuthnError::NonCanonicalBase64,
                "{bad}"
            );
        }
        // `Zg` is the canonical spelling of "f"; `Zh` has non-zero trailing bits.
        assert_eq!(b64("Zg").unwrap(), b"f");
    }

    #[test]
    fn compact_form_is_exactly_three_parts() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#);
        let ok = format!("{h}.e30.c2ln");
        assert!(parse_compact(&ok).is_ok());
        for bad in [
            format!("{h}.e30"),
            format!("{h}.e30.c2ln."),
            format!("{h}.e30.c2ln.c2ln"),
            ".e30.c2ln".to_owned(),
            String::new(),
            "{\"payload\":\"e30\"}".to_owned(),
        ] {
            assert!(parse_compact(&bad).is_err(), "{bad}");
        }
        let big = format!("{h}.{}.c2ln", "A".repeat(MAX_TOKEN_BYTES));
        assert!(matches!(
            parse_compact(&big),
            Err(AuthnError::Oversize { .. })
        ));
    }
}
