//! Where a guest's outbound request goes, read once from its URI: the
//! platform's identity endpoint, another function, or anywhere else
//! (egress). Every later decision works on this value, so no two places
//! can read the same URI differently.

/// Suffix of the internal host names of functions.
pub const INTERNAL_SUFFIX: &str = ".fn.internal";

/// Host name of the platform's identity endpoint for guests:
/// `GET http://identity.fn.internal/jwt-svid?audience=<aud>`.
pub const IDENTITY_HOST: &str = "identity.fn.internal";

/// The destination of an outbound request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Destination {
    /// The identity endpoint ([`IDENTITY_HOST`]).
    Identity,
    /// The tenant's queues ([`super::QUEUES_HOST`]).
    Queues,
    /// The tenant's object storage ([`super::OBJECTS_HOST`]).
    Objects,
    /// A function: `http://<name>.<tenant>.fn.internal/`.
    Function { tenant: String, name: String },
    /// Anything else: egress, whose gateway reads the URI itself with
    /// its own strict parser (`zerofn_egress::Target`).
    External,
}

impl Destination {
    /// The destination of a request for `uri`.
    pub(crate) fn of(uri: &http::Uri) -> Destination {
        let host = uri.host().map(str::to_ascii_lowercase).unwrap_or_default();
        if host == IDENTITY_HOST {
            return Destination::Identity;
        }
        if host == super::QUEUES_HOST {
            return Destination::Queues;
        }
        if host == super::OBJECTS_HOST {
            return Destination::Objects;
        }
        match internal_target(&host) {
            Some((tenant, name)) => Destination::Function { tenant, name },
            None => Destination::External,
        }
    }
}

/// Splits `<fn>.<tenant>.fn.internal` into (tenant, fn).
fn internal_target(host: &str) -> Option<(String, String)> {
    let host = host.strip_suffix(INTERNAL_SUFFIX)?;
    let (name, tenant) = host.split_once('.')?;
    if name.is_empty() || tenant.is_empty() || tenant.contains('.') {
        return None;
    }
    Some((tenant.to_owned(), name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_host_names_parse_strictly() {
        assert_eq!(
            internal_target("billing.acme.fn.internal"),
            Some(("acme".into(), "billing".into()))
        );
        assert_eq!(internal_target("acme.fn.internal"), None);
        assert_eq!(internal_target("a.b.acme.fn.internal"), None);
        assert_eq!(internal_target("billing.acme.fn.internal.evil.com"), None);
        assert_eq!(internal_target("example.com"), None);
        assert_eq!(internal_target(".acme.fn.internal"), None);
    }

    #[test]
    fn destinations_are_read_once_from_the_uri() {
        let of = |u: &str| Destination::of(&u.parse::<http::Uri>().unwrap());
        assert_eq!(
            of("http://IDENTITY.fn.internal/jwt-svid"),
            Destination::Identity
        );
        assert_eq!(
            of("http://Billing.Acme.fn.internal/x"),
            Destination::Function {
                tenant: "acme".into(),
                name: "billing".into()
            }
        );
        assert_eq!(of("https://example.com/"), Destination::External);
        assert_eq!(of("http://Queues.fn.internal/orders"), Destination::Queues);
        assert_eq!(of("http://objects.fn.internal/up/k"), Destination::Objects);
        assert_eq!(
            of("http://objects.fn.internal.evil/up/k"),
            Destination::External
        );
        assert_eq!(of("/relative"), Destination::External);
        // Only the exact internal names are internal: look-alikes are egress.
        assert_eq!(
            of("http://identity.fn.internal.evil.com/"),
            Destination::External
        );
        assert_eq!(
            of("http://billing.acme.fn.internal.:80/"),
            Destination::External
        );
    }
}
