//! The runtime policies in force, swapped whole on every change so that a
//! decision sees the old set or the new one, never a mix.

use std::sync::{Arc, PoisonError, RwLock};

use zerofn_policy::RuntimePolicies;

/// The runtime policies in force, swapped whole on every change.
#[derive(Clone, Default)]
pub struct Policies {
    current: Arc<RwLock<Arc<RuntimePolicies>>>,
}

impl Policies {
    pub fn current(&self) -> Arc<RuntimePolicies> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, policies: RuntimePolicies) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policies);
    }
}
