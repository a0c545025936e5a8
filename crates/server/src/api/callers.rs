//! The control API's routes for external callers (`zerofn auth jwt`, `zerofn apikey`).

use http::StatusCode;
use serde_json::json;

use super::routes::{Call, Reply};
use super::{parse_json, to_value, Api};

impl Api {
    pub(super) async fn list_jwt_issuers(&self, c: Call<'_>) -> Reply {
        let rows = self.callers.issuers(&c.tenant()?).await?;
        Ok((StatusCode::OK, json!({ "issuers": to_value(rows) })))
    }

    pub(super) async fn add_jwt_issuer(&self, c: Call<'_>) -> Reply {
        let req = parse_json(c.body)?;
        let row = self.callers.add_issuer(c.actor, &c.tenant()?, req).await?;
        Ok((StatusCode::CREATED, to_value(row)))
    }

    pub(super) async fn remove_jwt_issuer(&self, c: Call<'_>) -> Reply {
        let name = c.param("name")?;
        self.callers
            .remove_issuer(c.actor, &c.tenant()?, name)
            .await?;
        Ok((StatusCode::OK, json!({ "removed": name })))
    }

    pub(super) async fn list_api_keys(&self, c: Call<'_>) -> Reply {
        let rows = self.callers.keys(&c.tenant()?).await?;
        Ok((StatusCode::OK, json!({ "keys": to_value(rows) })))
    }

    pub(super) async fn create_api_key(&self, c: Call<'_>) -> Reply {
        let req = parse_json(c.body)?;
        let (row, key) = self.callers.create_key(c.actor, &c.tenant()?, req).await?;
        let mut answer = to_value(row);
        if let Some(o) = answer.as_object_mut() {
            // The one time the key is shown.
            o.insert("key".into(), key.into());
        }
        Ok((StatusCode::CREATED, answer))
    }

    pub(super) async fn revoke_api_key(&self, c: Call<'_>) -> Reply {
        let name = c.param("name")?;
        let id = self.callers.revoke_key(c.actor, &c.tenant()?, name).await?;
        Ok((StatusCode::OK, json!({ "revoked": name, "key_id": id })))
    }
}
