//! [`InvocationId`]: the id the gateway gives each invocation (its `x-zerofn-invocation-id`
//! header, audit records and traces), a random UUID (version 4) in its canonical text form.

use std::fmt;
use std::str::FromStr;

use crate::text::excerpt;

/// Why an invocation id string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvocationIdError {
    /// The text is not a UUID in canonical form.
    #[error("`{input}` is not an invocation id; write it as a UUID in lowercase hyphenated form, such as `67e55044-10b1-426f-9247-bb680e5fe0c8`")]
    Invalid {
        /// The offending input (escaped and shortened).
        input: String,
    },
}

/// An invocation id: a UUID written as 36 lowercase characters in the hyphenated
/// 8-4-4-4-12 form (what `uuid::Uuid::new_v4().to_string()` writes). Only that one spelling
/// is accepted, so two ids are equal exactly when their texts are.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InvocationId(String);

impl InvocationId {
    /// A fresh random (version 4) id.
    #[allow(clippy::new_without_default)] // a default value that is random would surprise
    pub fn new() -> InvocationId {
        // From this thread's generator, not a system call per request (`crate::random`).
        let mut bytes = [0u8; 16];
        crate::random::fill_id_bytes(&mut bytes);
        let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let mut text = uuid::Uuid::encode_buffer();
        InvocationId(uuid.hyphenated().encode_lower(&mut text).to_owned())
    }

    /// Parses the canonical form: any UUID version, lowercase, hyphenated, no braces or
    /// `urn:uuid:` prefix.
    pub fn parse(s: &str) -> Result<InvocationId, InvocationIdError> {
        match uuid::Uuid::try_parse(s) {
            Ok(uuid) if uuid.hyphenated().to_string() == s => Ok(InvocationId(s.to_owned())),
            _ => Err(InvocationIdError::Invalid { input: excerpt(s) }),
        }
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&InvocationId> for String {
    fn from(id: &InvocationId) -> String {
        id.0.clone()
    }
}

impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for InvocationId {
    type Err = InvocationIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InvocationId::parse(s)
    }
}

impl serde::Serialize for InvocationId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for InvocationId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        InvocationId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_canonical_v4_and_distinct() {
        let a = InvocationId::new();
        let b = InvocationId::new();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 36);
        assert_eq!(a.as_str().chars().nth(14), Some('4'), "{a}");
        assert_eq!(InvocationId::parse(a.as_str()).unwrap(), a);
        // The gateway's own spelling today.
        let gateway = uuid::Uuid::new_v4().to_string();
        assert_eq!(InvocationId::parse(&gateway).unwrap().to_string(), gateway);
    }

    /// Ids from this thread's generator and from other threads' are RFC 9562 version-4
    /// UUIDs (version nibble 4, variant bits 10) and never repeat across threads.
    #[test]
    fn ids_from_many_threads_are_v4_and_never_repeat() {
        let ids: Vec<InvocationId> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..2000).map(|_| InvocationId::new()).collect::<Vec<_>>()))
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect()
        });
        let distinct: std::collections::HashSet<&str> =
            ids.iter().map(InvocationId::as_str).collect();
        assert_eq!(distinct.len(), 8000);
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id.as_str()).unwrap();
            assert_eq!(uuid.get_version_num(), 4, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
    }

    #[test]
    fn only_the_canonical_spelling_parses() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        assert_eq!(id.parse::<InvocationId>().unwrap().as_str(), id);
        for bad in [
            "67E55044-10B1-426F-9247-BB680E5FE0C8",
            "67e5504410b1426f9247bb680e5fe0c8",
            "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
            "urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8",
            " 67e55044-10b1-426f-9247-bb680e5fe0c8",
            "",
            "x\u{1b}[2J",
        ] {
            let err = InvocationId::parse(bad).unwrap_err();
            assert!(err.to_string().contains("is not an invocation id"), "{bad}");
            assert!(!err.to_string().contains('\u{1b}'));
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let id = InvocationId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<InvocationId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<InvocationId>("\"nope\"").is_err());
    }
}
