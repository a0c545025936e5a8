//! Untrusted Cedar policy text (`zerofn policy set`, `admission set`) must
//! parse and validate or be refused, never panic; a set that loads must
//! decide a runtime request without panicking, and fail closed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerofn_policy::{
    CallerAttributes, PolicySet, Principal, RequestContext, Resource, RuntimeAction, RuntimePoliciesBuilder,
    RuntimeRequest, Source,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(set) = PolicySet::parse(text) else {
        return;
    };
    let mut b = RuntimePoliciesBuilder::new();
    b.add("acme", set);
    let Ok(policies) = b.build() else { return };
    for (principal, action, resource, context) in [
        (
            Principal::Function { tenant: "acme".into(), name: "f".into() },
            RuntimeAction::KvPut,
            Resource::Bucket { tenant: "acme".into(), name: "b".into() },
            RequestContext::Key(text.chars().take(64).collect()),
        ),
        (
            Principal::Public,
            RuntimeAction::Invoke,
            Resource::Function { tenant: "acme".into(), name: "f".into() },
            RequestContext::Invoke {
                method: "GET".into(),
                path: "/".into(),
                source: Source { kind: "gateway", ip: "127.0.0.1".parse().ok(), ..Source::default() },
                depth: 0,
                caller: CallerAttributes::None,
            },
        ),
    ] {
        let d = policies.decide(&RuntimeRequest { principal, action, resource, context });
        // An allow (which cannot carry errors: `Permit` has none) is always
        // the work of at least one permit policy.
        if let zerofn_policy::Decision::Allow(permit) = &d {
            assert!(!permit.policies().is_empty());
        }
    }
});
