//! Runtime configuration (`wasi:config`): the function's own `[config]`
//! values from its admitted manifest, read only as allowed by `config.read`.

use zerofn_policy::{Permit, RequestContext, RuntimeAction};
use zerofn_sandbox::host_interface::CapabilityError;

use super::InvocationHost;

impl InvocationHost {
    /// Decide and record a read of `key` (or of every value), then read.
    pub(super) async fn config(
        &self,
        key: Option<&str>,
    ) -> Result<Vec<(String, String)>, CapabilityError> {
        let what = match key {
            Some(k) => format!("config.read of `{}`", k.escape_debug()),
            None => "config.read of every value".to_owned(),
        };
        let authorized = self
            .authorize(
                RuntimeAction::ConfigRead,
                self.me_as_resource(),
                RequestContext::Key(key.unwrap_or("*").to_owned()),
                what,
            )
            .await
            .map_err(|why| CapabilityError::Denied(why.to_string()))?;
        Ok(self.config_values(&authorized.permit, key))
    }

    /// The function's configuration values: one, or all.
    fn config_values(&self, _permit: &Permit, key: Option<&str>) -> Vec<(String, String)> {
        let config = &self.function.artifact().manifest().config;
        match key {
            Some(k) => config
                .get(k)
                .map(|v| vec![(k.to_owned(), v.clone())])
                .unwrap_or_default(),
            None => config.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}
