//! Errors of loading policies and deciding.

/// Why a policy set was refused or a decision could not be made. A decision
/// that could not be made is a denial.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the platform's Cedar schema does not load: {0}")]
    Schema(String),
    #[error("the policy text is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the policies do not parse: {0}")]
    Parse(String),
    #[error("policy templates are not supported; write each policy out")]
    Templates,
    #[error("policy id `{id}` is used twice")]
    DuplicateId { id: String },
    #[error("policy id `{id}` is not valid (letters, digits and -_.:/ only, at most 128)")]
    BadId { id: String },
    #[error("the policies do not validate against the schema: {}", errors.join("; "))]
    Invalid { errors: Vec<String> },
    #[error("the authorization request is not valid: {0}")]
    Request(String),
}
