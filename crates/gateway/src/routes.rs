//! The routing table: path -> loaded function, switched atomically; and the
//! route space: which tenant owns which part of the URL path space.
//!
//! # Trust
//! Trusts the control plane to have assigned route prefixes (an operator's
//! decision) and to have admitted the functions it installs. Trusts nothing
//! about a request path: it is put in normal form here
//! ([`zerofn_admission::normalize_path`]) before any lookup.
//!
//! # Guarantees
//! A request is routed only to a function of the tenant that owns its path
//! (the longest assigned prefix containing it), whatever routes any tenant
//! deployed: a tenant's `/...` never captures another tenant's space, and a
//! function whose tenant lost a prefix stops serving it at once. A path no
//! tenant owns is routed nowhere.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use zerofn_admission::{normalize_path, Route};
use zerofn_sandbox::LoadedFunction;

/// A route prefix assigned to two tenants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route prefix `{prefix}` is already assigned to tenant `{owner}`")]
pub struct PrefixTaken {
    pub prefix: String,
    pub owner: String,
}

/// The operator's assignment of the URL path space to tenants. A tenant
/// owns a path if its assignment is the longest one containing the path:
/// an exact assignment `/a` contains `/a` only and wins over any prefix;
/// a prefix assignment `/a/...` contains `/a` and everything below it.
/// Assignments may nest (`demo` owns `/...`, `shop` owns `/shop/...`:
/// `/shop/x` is shop's, `/x` demo's), but one assignment has one tenant.
#[derive(Default, Clone, Debug)]
pub struct RouteSpace {
    exact: HashMap<String, String>,
    /// Prefix assignments by base path (`/shop/...` -> `/shop`, `/...` -> `/`).
    prefixes: HashMap<String, String>,
}

impl RouteSpace {
    /// Builds the space from `(assignment, tenant)` pairs; the same
    /// assignment for two tenants is refused, naming the first owner.
    pub fn new(
        assignments: impl IntoIterator<Item = (Route, String)>,
    ) -> Result<RouteSpace, PrefixTaken> {
        let mut space = RouteSpace::default();
        for (route, tenant) in assignments {
            space.assign(&route, tenant)?;
        }
        Ok(space)
    }

    /// Adds one assignment; refused (and nothing changes) if another
    /// tenant holds it.
    pub fn assign(&mut self, route: &Route, tenant: String) -> Result<(), PrefixTaken> {
        let (map, key) = match base_of(route) {
            Some(base) => (&mut self.prefixes, base.to_owned()),
            None => (&mut self.exact, route.as_str().to_owned()),
        };
        match map.get(&key) {
            Some(owner) if *owner != tenant => Err(PrefixTaken {
                prefix: route.as_str().to_owned(),
                owner: owner.clone(),
            }),
            _ => {
                map.insert(key, tenant);
                Ok(())
            }
        }
    }

    /// The tenant owning a request path in normal form: the exact
    /// assignment, else the longest prefix assignment containing it. Cost
    /// grows with the depth of the path (one hash lookup per ancestor),
    /// not with the number of tenants.
    pub fn owner(&self, normal_path: &str) -> Option<&str> {
        if let Some(t) = self.exact.get(normal_path) {
            return Some(t);
        }
        ancestors(normal_path).find_map(|p| self.prefixes.get(p).map(String::as_str))
    }

    /// The tenant that may deploy `route`: the owner of an exact route's
    /// path, or of a prefix route's base (`/x/...` needs `/x`).
    pub fn owner_of_route(&self, route: &Route) -> Option<&str> {
        self.owner(base_of(route).unwrap_or(route.as_str()))
    }
}

/// The base path of a prefix route (`/api/...` -> `/api`, `/...` -> `/`),
/// `None` for an exact route.
fn base_of(route: &Route) -> Option<&str> {
    route
        .as_str()
        .strip_suffix("/...")
        .map(|base| if base.is_empty() { "/" } else { base })
}

/// `path`, then each ancestor up to `/` (`/a/b` -> `/a/b`, `/a`, `/`).
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.rfind('/') {
            Some(0) if current != "/" => Some("/"),
            Some(i) if i > 0 => current.get(..i),
            _ => None,
        };
        Some(current)
    })
}

/// One tenant's routes: exact first, then the longest matching prefix.
#[derive(Clone, Debug)]
struct TenantRoutes<T> {
    exact: HashMap<String, T>,
    /// Prefix routes by their base path.
    prefixes: HashMap<String, (Route, T)>,
}

impl<T> Default for TenantRoutes<T> {
    fn default() -> Self {
        TenantRoutes {
            exact: HashMap::new(),
            prefixes: HashMap::new(),
        }
    }
}

impl<T> TenantRoutes<T> {
    fn insert(&mut self, route: &Route, value: T) {
        match base_of(route) {
            Some(base) => {
                self.prefixes
                    .insert(base.to_owned(), (route.clone(), value));
            }
            None => {
                self.exact.insert(route.as_str().to_owned(), value);
            }
        }
    }

    /// `normal_path` must be in normal form (the caller normalised it).
    fn lookup(&self, normal_path: &str) -> Option<&T> {
        if let Some(f) = self.exact.get(normal_path) {
            return Some(f);
        }
        let (route, f) = ancestors(normal_path).find_map(|p| self.prefixes.get(p))?;
        // `matches` also refuses paths that are not in normal form (`..`,
        // `//`), which must never reach a prefix route.
        route.matches(normal_path).then_some(f)
    }
}

/// An immutable routing table. A lookup finds the tenant owning the path,
/// then that tenant's exact route, then its longest matching prefix route.
#[derive(Default, Clone)]
pub struct RouteTable {
    space: Arc<RouteSpace>,
    tenants: HashMap<String, TenantRoutes<Arc<LoadedFunction>>>,
    /// Functions by `tenant/name`.
    functions: HashMap<(String, String), Arc<LoadedFunction>>,
}

impl RouteTable {
    /// Cost grows with the depth of the path, not with the number of
    /// routes or tenants: the path and each of its ancestors is one hash
    /// lookup for the owner and one for the route. The path is compared in
    /// normal form (`/hell%6F` is `/hello`); a path with a malformed escape,
    /// or that no tenant owns, is routed nowhere.
    pub fn lookup(&self, path: &str) -> Option<&Arc<LoadedFunction>> {
        let normal = normalize_path(path)?;
        let owner = self.space.owner(&normal)?;
        self.tenants.get(owner)?.lookup(&normal)
    }

    /// The route space in force.
    pub fn space(&self) -> &RouteSpace {
        &self.space
    }

    /// Every served function.
    pub fn functions(&self) -> impl Iterator<Item = &Arc<LoadedFunction>> {
        self.functions.values()
    }

    /// A function by tenant and name (function-to-function calls).
    pub fn function(&self, tenant: &str, name: &str) -> Option<&Arc<LoadedFunction>> {
        self.functions.get(&(tenant.to_owned(), name.to_owned()))
    }

    pub fn len(&self) -> usize {
        self.functions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    fn rebuild(
        functions: HashMap<(String, String), Arc<LoadedFunction>>,
        space: Arc<RouteSpace>,
    ) -> RouteTable {
        let mut tenants: HashMap<String, TenantRoutes<Arc<LoadedFunction>>> = HashMap::new();
        for ((tenant, _), f) in &functions {
            let routes = tenants.entry(tenant.clone()).or_default();
            for route in &f.artifact().manifest().routes {
                routes.insert(route, f.clone());
            }
        }
        RouteTable {
            space,
            tenants,
            functions,
        }
    }
}

/// The live table, shared by the gateway and the control plane.
#[derive(Default, Clone)]
pub struct Routes {
    current: Arc<RwLock<Arc<RouteTable>>>,
}

impl Routes {
    /// The table in force now; hold it for the whole request.
    pub fn snapshot(&self) -> Arc<RouteTable> {
        match self.current.read() {
            Ok(table) => table.clone(),
            // A panic while swapping cannot leave a half-built table (the
            // swap is one pointer store), so the value is still sound.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn update(
        &self,
        f: impl FnOnce(&mut HashMap<(String, String), Arc<LoadedFunction>>, &mut Arc<RouteSpace>),
    ) {
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut functions = guard.functions.clone();
        let mut space = guard.space.clone();
        f(&mut functions, &mut space);
        *guard = Arc::new(RouteTable::rebuild(functions, space));
    }

    /// Replace the route space: from now on each function serves only the
    /// paths its tenant owns.
    pub fn set_space(&self, new: RouteSpace) {
        let new = Arc::new(new);
        self.update(move |_, space| *space = new);
    }

    /// Serve `function` on its routes, replacing any earlier version of it.
    pub fn install(&self, function: LoadedFunction) {
        let m = function.artifact().manifest();
        let key = (m.tenant.as_str().to_owned(), m.name.as_str().to_owned());
        let function = Arc::new(function);
        self.update(move |fns, _| {
            fns.insert(key, function);
        });
    }

    /// Install many at once (start-up).
    pub fn install_all(&self, functions: Vec<LoadedFunction>) {
        self.update(move |fns, _| {
            for function in functions {
                let m = function.artifact().manifest();
                let key = (m.tenant.as_str().to_owned(), m.name.as_str().to_owned());
                fns.insert(key, Arc::new(function));
            }
        });
    }

    /// Stop serving a function.
    pub fn remove(&self, tenant: &str, name: &str) {
        let key = (tenant.to_owned(), name.to_owned());
        self.update(move |fns, _| {
            fns.remove(&key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(s: &str) -> Route {
        Route::parse(s).unwrap()
    }

    fn space(assignments: &[(&str, &str)]) -> RouteSpace {
        RouteSpace::new(assignments.iter().map(|(r, t)| (route(r), (*t).to_owned()))).unwrap()
    }

    #[test]
    fn the_longest_assignment_owns_a_path() {
        let s = space(&[
            ("/...", "demo"),
            ("/shop/...", "shop"),
            ("/shop/admin", "ops"),
            ("/shop/eu/...", "eu"),
            ("/b", "bee"),
        ]);
        for (path, owner) in [
            ("/", Some("demo")),
            ("/x", Some("demo")),
            ("/shopx", Some("demo")),
            ("/shop", Some("shop")),
            ("/shop/", Some("shop")),
            ("/shop/x/y", Some("shop")),
            ("/shop/admin", Some("ops")),
            ("/shop/admin/x", Some("shop")),
            ("/shop/eu", Some("eu")),
            ("/shop/eu/x", Some("eu")),
            ("/b", Some("bee")),
            ("/b/x", Some("demo")),
        ] {
            assert_eq!(s.owner(path), owner, "{path}");
        }
        let narrow = space(&[("/a/...", "a"), ("/b", "b")]);
        assert_eq!(narrow.owner("/"), None);
        assert_eq!(narrow.owner("/c"), None);
        assert_eq!(narrow.owner("/b/x"), None);
        // A prefix route needs its base; an exact route its path.
        assert_eq!(s.owner_of_route(&route("/...")), Some("demo"));
        assert_eq!(s.owner_of_route(&route("/shop/...")), Some("shop"));
        assert_eq!(s.owner_of_route(&route("/shop/admin/...")), Some("ops"));
        assert_eq!(s.owner_of_route(&route("/shop/x")), Some("shop"));
        assert_eq!(narrow.owner_of_route(&route("/...")), None);
        assert_eq!(narrow.owner_of_route(&route("/b/...")), Some("b"));
    }

    #[test]
    fn one_assignment_has_one_tenant() {
        let e = RouteSpace::new([
            (route("/shop/..."), "shop".to_owned()),
            (route("/shop/..."), "demo".to_owned()),
        ])
        .unwrap_err();
        assert_eq!(
            e,
            PrefixTaken {
                prefix: "/shop/...".into(),
                owner: "shop".into()
            }
        );
        // Spelled differently, still the same prefix.
        let e = RouteSpace::new([
            (route("/shop/..."), "shop".to_owned()),
            (route("/sh%6Fp/..."), "demo".to_owned()),
        ])
        .unwrap_err();
        assert_eq!(e.owner, "shop");
        // The same tenant twice is fine; an exact `/a` and a prefix `/a/...` are two.
        space(&[("/a/...", "a"), ("/a/...", "a"), ("/a", "b")]);
    }

    /// The lookup of a whole table, with tenants' routes as plain values.
    fn lookup<'a>(
        space: &RouteSpace,
        tenants: &'a HashMap<String, TenantRoutes<&'static str>>,
        path: &str,
    ) -> Option<&'a str> {
        let normal = normalize_path(path)?;
        let owner = space.owner(&normal)?;
        tenants.get(owner)?.lookup(&normal).copied()
    }

    #[test]
    fn a_tenant_is_routed_only_in_its_own_space() {
        let s = space(&[("/...", "a"), ("/b/...", "b")]);
        let mut tenants: HashMap<String, TenantRoutes<&'static str>> = HashMap::new();
        // Tenant a serves everything it owns; b has deployed one exact route.
        tenants
            .entry("a".into())
            .or_default()
            .insert(&route("/..."), "a-all");
        tenants
            .entry("a".into())
            .or_default()
            .insert(&route("/hello"), "a-hello");
        tenants
            .entry("b".into())
            .or_default()
            .insert(&route("/b/x"), "b-x");
        for (path, expected) in [
            ("/hello", Some("a-hello")),
            ("/hell%6F", Some("a-hello")),
            ("/%68ello", Some("a-hello")),
            ("/anything", Some("a-all")),
            ("/b/x", Some("b-x")),
            ("/%62/x", Some("b-x")),
            // b's space: a's `/...` never captures it, even where b has no route.
            ("/b", None),
            ("/b/y", None),
            ("/%62/y", None),
            ("/b%2Fy", Some("a-all")),
            // Not in normal form after decoding: routed nowhere.
            ("/b/%2e%2e/hello", None),
            ("/x/%2E%2E", None),
            ("/hell%6", None),
        ] {
            assert_eq!(lookup(&s, &tenants, path), expected, "{path}");
        }
        // b given a `/...` of its own inside `/b/...` still serves only there.
        tenants
            .entry("b".into())
            .or_default()
            .insert(&route("/..."), "b-all");
        assert_eq!(lookup(&s, &tenants, "/anything"), Some("a-all"));
        assert_eq!(lookup(&s, &tenants, "/b/y"), Some("b-all"));
        // Reassigned: b loses `/b/...`, a's `/...` serves it; b's routes serve nothing.
        let s = space(&[("/...", "a")]);
        assert_eq!(lookup(&s, &tenants, "/b/x"), Some("a-all"));
        // No owner at all: nothing is served.
        let s = space(&[("/c/...", "c")]);
        assert_eq!(lookup(&s, &tenants, "/hello"), None);
    }
}
