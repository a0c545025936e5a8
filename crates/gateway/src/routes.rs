//! The routing table: path -> loaded function, switched atomically.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use zerofn_admission::Route;
use zerofn_sandbox::LoadedFunction;

/// An immutable routing table. Lookups take the exact route first, then
/// the longest matching prefix route.
#[derive(Default, Clone)]
pub struct RouteTable {
    exact: HashMap<String, Arc<LoadedFunction>>,
    /// Prefix routes by their base path (`/api/...` -> `/api`, `/...` -> `/`).
    prefixes: HashMap<String, (Route, Arc<LoadedFunction>)>,
    /// Functions by `tenant/name`.
    functions: HashMap<(String, String), Arc<LoadedFunction>>,
}

impl RouteTable {
    /// Cost grows with the depth of the path, not with the number of
    /// routes: the path and each of its ancestors is one hash lookup.
    pub fn lookup(&self, path: &str) -> Option<&Arc<LoadedFunction>> {
        if let Some(f) = self.exact.get(path) {
            return Some(f);
        }
        let mut candidate = path;
        loop {
            if let Some((route, f)) = self.prefixes.get(candidate) {
                // `matches` also refuses paths that are not in normal form
                // (`..`, `//`), which must never reach a prefix route.
                return route.matches(path).then_some(f);
            }
            match candidate.rfind('/') {
                Some(0) if candidate != "/" => candidate = "/",
                Some(i) if i > 0 => candidate = candidate.get(..i)?,
                _ => return None,
            }
        }
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

    fn rebuild(functions: HashMap<(String, String), Arc<LoadedFunction>>) -> RouteTable {
        let mut exact = HashMap::new();
        let mut prefixes = HashMap::new();
        for f in functions.values() {
            for route in &f.artifact().manifest().routes {
                match route.as_str().strip_suffix("/...") {
                    Some(base) => {
                        let base = if base.is_empty() { "/" } else { base };
                        prefixes.insert(base.to_owned(), (route.clone(), f.clone()));
                    }
                    None => {
                        exact.insert(route.as_str().to_owned(), f.clone());
                    }
                }
            }
        }
        RouteTable {
            exact,
            prefixes,
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

    fn update(&self, f: impl FnOnce(&mut HashMap<(String, String), Arc<LoadedFunction>>)) {
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut functions = guard.functions.clone();
        f(&mut functions);
        *guard = Arc::new(RouteTable::rebuild(functions));
    }

    /// Serve `function` on its routes, replacing any earlier version of it.
    pub fn install(&self, function: LoadedFunction) {
        let m = function.artifact().manifest();
        let key = (m.tenant.as_str().to_owned(), m.name.as_str().to_owned());
        let function = Arc::new(function);
        self.update(move |fns| {
            fns.insert(key, function);
        });
    }

    /// Install many at once (start-up).
    pub fn install_all(&self, functions: Vec<LoadedFunction>) {
        self.update(move |fns| {
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
        self.update(move |fns| {
            fns.remove(&key);
        });
    }
}
