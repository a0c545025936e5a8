#![forbid(unsafe_code)]
//! The policy decision point: the platform's Cedar schema
//! (`schema.cedarschema`), policy sets validated against it, and decisions
//! that name the policies that determined them.
//!
//! # Trust
//! Policy text comes from operators and tenants and is untrusted until it
//! parses and validates, in strict mode, against the schema: a set with any
//! error is refused whole, so a caller that keeps its previous set on error
//! never runs a half-loaded one. Requests are built by the platform from
//! facts it verified itself (this crate trusts them to be true, not to be
//! well-formed: they are validated against the schema too).
//!
//! # Fail closed
//! Cedar skips a policy whose evaluation errors. A `forbid` skipped that way
//! would turn into an allow, so any evaluation error makes the decision a
//! denial here, whatever the policies said.

mod admission;
mod claims;
mod control;
mod decision;
mod error;
mod memo;
pub mod permissions;
mod runtime;

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{
    Authorizer, Context, Entities, EntityUid, PolicyId, Request, Schema, ValidationMode, Validator,
};

pub use admission::{AdmissionQuery, DEFAULT_ADMISSION_POLICY};
pub use control::{
    Authentication, ControlAction, ControlPolicy, ControlQuery, ControlResource,
    PLATFORM_ENTITY_ID, ROOT_CONTROL_POLICY, ROOT_OPERATOR, ROOT_POLICY_ID,
};
pub use decision::{Decision, Permit, Reason};
pub use error::PolicyError;
pub use permissions::{GrantError, InvokeSource, KvGrant, KvMode, Permissions};
pub use runtime::{
    CallerAttributes, CertificateAttributes, Principal, RequestContext, Resource, RuntimeAction,
    RuntimePolicies, RuntimePoliciesBuilder, RuntimeRequest, Source,
};

/// The schema text, for `zerofn policy schema` and documentation.
pub const SCHEMA_TEXT: &str = include_str!("schema.cedarschema");

/// The annotation that names a policy (`@id("require-provenance")`).
pub const ID_ANNOTATION: &str = "id";

/// Longest policy text accepted, in bytes.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

fn schema() -> Result<&'static Schema, PolicyError> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Schema::from_cedarschema_str(SCHEMA_TEXT)
                .map(|(schema, _warnings)| schema)
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| PolicyError::Schema(e.clone()))
}

/// A parsed policy set that validated against the platform schema. Only
/// [`PolicySet::parse`] makes one.
#[derive(Clone)]
pub struct PolicySet {
    set: cedar_policy::PolicySet,
    source: String,
    ids: Vec<String>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet").field("ids", &self.ids).finish()
    }
}

impl PolicySet {
    /// Parses `source` (Cedar policy syntax) and validates every policy
    /// against the schema in strict mode. Each policy's id is its
    /// `@id("...")` annotation, or `policy<N>` by position; ids must be
    /// unique. Templates are refused.
    pub fn parse(source: &str) -> Result<PolicySet, PolicyError> {
        if source.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                limit: MAX_POLICY_BYTES,
            });
        }
        let parsed = cedar_policy::PolicySet::from_str(source)
            .map_err(|e| PolicyError::Parse(render(&e)))?;
        if parsed.templates().next().is_some() {
            return Err(PolicyError::Templates);
        }
        let mut set = cedar_policy::PolicySet::new();
        let mut ids = Vec::new();
        let mut seen = BTreeSet::new();
        // Keep source order so the fallback ids follow the text.
        let mut policies: Vec<_> = parsed.policies().collect();
        policies.sort_by_key(|p| {
            p.id()
                .to_string()
                .trim_start_matches("policy")
                .parse::<u64>()
                .unwrap_or(u64::MAX)
        });
        for (index, policy) in policies.into_iter().enumerate() {
            let id = match policy.annotation(ID_ANNOTATION) {
                Some(id) if valid_id(id) => id.to_owned(),
                Some(id) => {
                    return Err(PolicyError::BadId {
                        id: id.escape_debug().to_string(),
                    })
                }
                None => format!("policy{index}"),
            };
            if !seen.insert(id.clone()) {
                return Err(PolicyError::DuplicateId { id });
            }
            set.add(policy.new_id(PolicyId::new(&id)))
                .map_err(|e| PolicyError::Parse(e.to_string()))?;
            ids.push(id);
        }
        let result = Validator::new(schema()?.clone()).validate(&set, ValidationMode::Strict);
        if !result.validation_passed() {
            let errors = result
                .validation_errors()
                .map(|e| {
                    let policy = e.policy_id().to_string();
                    format!("policy `{policy}`: {}", render(e))
                })
                .collect();
            return Err(PolicyError::Invalid { errors });
        }
        Ok(PolicySet {
            set,
            source: source.to_owned(),
            ids,
        })
    }

    /// The text the set was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The ids of the policies, in source order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the set has no policies (and so permits nothing).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
}

/// Renders a Cedar diagnostic with its help text, on one line.
fn render(e: &dyn miette::Diagnostic) -> String {
    let mut text = e.to_string();
    if let Some(help) = e.help() {
        text.push_str(" (");
        text.push_str(&help.to_string());
        text.push(')');
    }
    text
}

/// Evaluates one request against `set`. `entities` must validate against
/// the schema; the request and context are validated too.
fn decide(
    set: &PolicySet,
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    context: serde_json::Value,
    entities: serde_json::Value,
) -> Result<Decision, PolicyError> {
    let schema = schema()?;
    let context = Context::from_json_value(context, Some((schema, &action)))
        .map_err(|e| PolicyError::Request(render(&e)))?;
    let request = Request::new(principal, action, resource, context, Some(schema))
        .map_err(|e| PolicyError::Request(render(&e)))?;
    let entities = Entities::from_json_value(entities, Some(schema))
        .map_err(|e| PolicyError::Request(render(&e)))?;
    let response = Authorizer::new().is_authorized(&request, &set.set, &entities);
    Ok(decision_of(&response))
}

/// A Cedar response as a [`Decision`]; any evaluation error denies.
fn decision_of(response: &cedar_policy::Response) -> Decision {
    let errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(|e| e.to_string())
        .collect();
    let allowed = errors.is_empty() && response.decision() == cedar_policy::Decision::Allow;
    let mut determining: Vec<String> = response
        .diagnostics()
        .reason()
        .map(|id| id.to_string())
        .collect();
    determining.sort();
    if allowed {
        Decision::Allow(Permit::new(determining))
    } else {
        Decision::Deny(Reason::new(determining, errors))
    }
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, PolicyError> {
    let type_name = cedar_policy::EntityTypeName::from_str(type_name)
        .map_err(|e| PolicyError::Request(e.to_string()))?;
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        cedar_policy::EntityId::new(id),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parses() {
        schema().unwrap();
    }

    #[test]
    fn ids_come_from_annotations_or_position() {
        let set = PolicySet::parse(
            r#"
            @id("allow-acme")
            permit (principal, action == Zerofn::Action::"admit", resource in Zerofn::Tenant::"acme");
            forbid (principal, action, resource);
            "#,
        )
        .unwrap();
        assert_eq!(set.ids(), ["allow-acme", "policy1"]);
    }

    #[test]
    fn a_set_with_one_invalid_policy_is_refused_whole() {
        let err = PolicySet::parse(
            r#"
            permit (principal, action == Zerofn::Action::"admit", resource);
            permit (principal, action == Zerofn::Action::"admit", resource) when { context.nosuch == 1 };
            "#,
        )
        .unwrap_err();
        match err {
            PolicyError::Invalid { errors } => {
                assert_eq!(errors.len(), 1, "{errors:?}");
                assert!(errors[0].contains("policy1"), "{errors:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_errors_unknown_actions_templates_and_duplicate_ids_are_refused() {
        assert!(matches!(
            PolicySet::parse("permit (principal, action, resource"),
            Err(PolicyError::Parse(_))
        ));
        assert!(matches!(
            PolicySet::parse(
                r#"permit (principal, action == Zerofn::Action::"nosuch", resource);"#
            ),
            Err(PolicyError::Invalid { .. })
        ));
        assert!(matches!(
            PolicySet::parse("permit (principal == ?principal, action, resource);"),
            Err(PolicyError::Templates)
        ));
        assert!(matches!(
            PolicySet::parse(
                "@id(\"a\") permit (principal, action, resource);\n@id(\"a\") forbid (principal, action, resource);"
            ),
            Err(PolicyError::DuplicateId { .. })
        ));
        assert!(matches!(
            PolicySet::parse("@id(\"a b\") permit (principal, action, resource);"),
            Err(PolicyError::BadId { .. })
        ));
    }

    #[test]
    fn optional_attributes_need_a_has_check() {
        // Strict validation: reading an optional attribute without `has`
        // is an error at load, not a skipped policy at decision time.
        let err = PolicySet::parse(
            r#"permit (principal, action == Zerofn::Action::"admit", resource) when { context.tests.passed };"#,
        )
        .unwrap_err();
        assert!(matches!(err, PolicyError::Invalid { .. }), "{err:?}");
        PolicySet::parse(
            r#"permit (principal, action == Zerofn::Action::"admit", resource) when { context has tests && context.tests.passed };"#,
        )
        .unwrap();
    }
}
