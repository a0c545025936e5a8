//! The outcome of an authorization request, as a type that carries its proof.
//!
//! A [`Decision`] is either [`Decision::Allow`] with a [`Permit`] or [`Decision::Deny`] with
//! a [`Reason`]. Only this crate constructs a [`Permit`] (its fields are private and it has
//! no public constructor), and only from a Cedar response that allowed the request without
//! evaluation errors, so code elsewhere that must not act without authorization takes a
//! `&Permit` argument: it cannot be called with a denial, a forgotten check or a value made
//! up outside the policy engine. A [`Reason`], on the other hand, may be made anywhere
//! ([`Reason::error`]): failing closed needs no proof.

/// The outcome of one authorization request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request is allowed; the permit names the policies that allowed it.
    Allow(Permit),
    /// The request is denied, and why.
    Deny(Reason),
}

/// Proof that the policies allowed a request: made only by this crate's deciders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permit {
    /// The ids of the permit policies that matched, sorted.
    determining: Vec<String>,
}

/// Why a request was denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// The ids of the forbid policies that matched, sorted (empty when denied because no
    /// permit matched, or because of an error).
    determining: Vec<String>,
    /// Evaluation errors; any error denies.
    errors: Vec<String>,
}

impl Permit {
    /// Only the deciders of this crate make a permit.
    pub(crate) fn new(determining: Vec<String>) -> Permit {
        Permit { determining }
    }

    /// The ids of the permit policies that allowed the request.
    pub fn policies(&self) -> &[String] {
        &self.determining
    }

    /// One line for audit records: `allowed by <policies>`.
    pub fn explain(&self) -> String {
        format!("allowed by {}", self.determining.join(", "))
    }
}

impl Reason {
    /// A denial naming the policies (forbids) that determined it, and evaluation errors.
    pub(crate) fn new(determining: Vec<String>, errors: Vec<String>) -> Reason {
        Reason {
            determining,
            errors,
        }
    }

    /// A denial because the request could not be decided (an error, a failed task, a refused
    /// identity): failing closed, which anyone may do.
    pub fn error(why: impl Into<String>) -> Reason {
        Reason {
            determining: Vec::new(),
            errors: vec![why.into()],
        }
    }

    /// The ids of the forbid policies that matched.
    pub fn policies(&self) -> &[String] {
        &self.determining
    }

    /// Evaluation errors.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Denied because no permit matched (no forbid, no error): the request needs a grant.
    pub fn is_unmatched(&self) -> bool {
        self.determining.is_empty() && self.errors.is_empty()
    }
}

impl Decision {
    /// A denial because the request could not be decided ([`Reason::error`]).
    pub fn error(why: impl Into<String>) -> Decision {
        Decision::Deny(Reason::error(why))
    }

    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// The permit, when allowed.
    pub fn permit(&self) -> Option<&Permit> {
        match self {
            Decision::Allow(permit) => Some(permit),
            Decision::Deny(_) => None,
        }
    }

    /// The ids of the policies that determined it: the permits that matched when allowed,
    /// the forbids that matched when denied (empty when denied because no permit matched).
    pub fn determining(&self) -> &[String] {
        match self {
            Decision::Allow(permit) => permit.policies(),
            Decision::Deny(reason) => reason.policies(),
        }
    }

    /// Evaluation errors (none when allowed).
    pub fn errors(&self) -> &[String] {
        match self {
            Decision::Allow(_) => &[],
            Decision::Deny(reason) => reason.errors(),
        }
    }

    /// The permit, or the reason of the denial.
    pub fn into_result(self) -> Result<Permit, Reason> {
        match self {
            Decision::Allow(permit) => Ok(permit),
            Decision::Deny(reason) => Err(reason),
        }
    }

    /// One line for audit records and error messages.
    pub fn explain(&self) -> String {
        match self {
            Decision::Deny(reason) if !reason.errors.is_empty() => format!(
                "denied: policy evaluation failed ({})",
                reason.errors.join("; ")
            ),
            Decision::Allow(permit) => permit.explain(),
            Decision::Deny(reason) if reason.determining.is_empty() => {
                "denied: no permit policy matched".to_owned()
            }
            Decision::Deny(reason) => format!("denied by {}", reason.determining.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations_name_the_determining_policies_or_the_error() {
        let allow = Decision::Allow(Permit::new(vec!["a".into(), "b".into()]));
        assert_eq!(allow.explain(), "allowed by a, b");
        assert!(allow.is_allowed());
        assert_eq!(
            allow.permit().map(Permit::policies),
            Some(&["a".to_owned(), "b".to_owned()][..])
        );
        let forbid = Decision::Deny(Reason::new(vec!["f".into()], Vec::new()));
        assert_eq!(forbid.explain(), "denied by f");
        assert!(forbid.permit().is_none());
        let unmatched = Decision::Deny(Reason::new(Vec::new(), Vec::new()));
        assert_eq!(unmatched.explain(), "denied: no permit policy matched");
        assert!(matches!(&unmatched, Decision::Deny(r) if r.is_unmatched()));
        let failed = Decision::error("boom");
        assert_eq!(failed.explain(), "denied: policy evaluation failed (boom)");
        assert_eq!(failed.errors(), ["boom"]);
        assert!(failed.into_result().is_err());
    }
}
