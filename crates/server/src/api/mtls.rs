//! The control API's routes for mTLS callers' CAs (`zerofn auth mtls`).

use http::StatusCode;
use serde_json::json;

use super::routes::{Call, Reply};
use super::{parse_json, Api};

impl Api {
    pub(super) async fn list_mtls_cas(&self, c: Call<'_>) -> Reply {
        let rows = self.mtls.list(&c.tenant()?).await?;
        Ok((StatusCode::OK, json!({ "cas": rows })))
    }

    pub(super) async fn add_mtls_ca(&self, c: Call<'_>) -> Reply {
        let req = parse_json(c.body)?;
        let view = self.mtls.add(c.actor, &c.tenant()?, req).await?;
        Ok((StatusCode::CREATED, json!(view)))
    }

    pub(super) async fn remove_mtls_ca(&self, c: Call<'_>) -> Reply {
        let name = c.param("name")?;
        self.mtls.remove(c.actor, &c.tenant()?, name).await?;
        Ok((StatusCode::OK, json!({ "removed": name })))
    }
}
