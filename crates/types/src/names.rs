//! [`TenantName`] and [`FunctionName`]: DNS labels, so they can appear in host names.

use std::fmt;
use std::str::FromStr;

use crate::text::excerpt;

/// The rule a tenant or function name follows, for messages.
pub const NAME_RULE: &str =
    "use 1 to 63 lowercase letters, digits and `-`, starting with a letter and not ending with `-`";

/// Why a tenant or function name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A function name is not a DNS label.
    #[error("function name `{name}` is invalid: {reason}; {}", NAME_RULE)]
    InvalidFunctionName {
        /// The offending name (escaped and shortened).
        name: String,
        /// Which rule it breaks.
        reason: LabelRule,
    },

    /// A tenant name is not a DNS label.
    #[error("tenant name `{name}` is invalid: {reason}; {}", NAME_RULE)]
    InvalidTenantName {
        /// The offending name (escaped and shortened).
        name: String,
        /// Which rule it breaks.
        reason: LabelRule,
    },
}

/// The rule of a DNS label that a name breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelRule {
    /// The name is empty.
    #[error("it is empty")]
    Empty,
    /// The name holds a character outside `a-z`, `0-9`, `-` (escaped).
    #[error("`{0}` is not allowed")]
    CharacterNotAllowed(String),
    /// The name is longer than 63 bytes.
    #[error("it is {0} characters long")]
    TooLong(usize),
    /// The name does not start with a letter.
    #[error("it does not start with a letter")]
    NotStartingWithLetter,
    /// The name ends with `-`.
    #[error("it ends with `-`")]
    EndsWithHyphen,
}

/// Checks a DNS label (RFC 1035 §2.3.1, lowercase only): 1-63 of `a-z`, `0-9`, `-`,
/// starting with a letter, not ending with `-`. Returns which rule is broken.
fn check_dns_label(name: &str) -> Result<(), LabelRule> {
    if name.is_empty() {
        return Err(LabelRule::Empty);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(LabelRule::CharacterNotAllowed(
            c.escape_default().to_string(),
        ));
    }
    if name.len() > 63 {
        return Err(LabelRule::TooLong(name.len()));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(LabelRule::NotStartingWithLetter);
    }
    if name.ends_with('-') {
        return Err(LabelRule::EndsWithHyphen);
    }
    Ok(())
}

macro_rules! dns_label_newtype {
    ($(#[$doc:meta])* $name:ident, $variant:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses a DNS label: 1-63 lowercase ASCII letters, digits and `-`, starting
            /// with a letter and not ending with `-`.
            pub fn parse(s: &str) -> Result<$name, NameError> {
                match check_dns_label(s) {
                    Ok(()) => Ok($name(s.to_owned())),
                    Err(reason) => Err(NameError::$variant {
                        name: excerpt(s),
                        reason,
                    }),
                }
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&$name> for String {
            fn from(name: &$name) -> String {
                name.0.clone()
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::parse(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

dns_label_newtype!(
    /// A function's name: a DNS label, so it can appear in host names.
    FunctionName,
    InvalidFunctionName
);

dns_label_newtype!(
    /// A tenant's name: a DNS label, so it can appear in host names.
    TenantName,
    InvalidTenantName
);
