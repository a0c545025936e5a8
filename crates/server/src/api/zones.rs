//! The control API's routes for trust zones (`zerofn zone`). Zones are platform-wide:
//! reading them is `tenant.read` on the platform, changing them `policy.manage` on the
//! platform (a zone is a policy over every tenant it groups).

use http::StatusCode;
use serde_json::json;

use super::routes::{Call, Reply};
use super::{parse_json, Api};

/// `PUT /v1/zones/{zone}`: the zone's TOML document.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetZone {
    document: String,
}

/// `PUT /v1/zones`: several zones set together, or (`replace_all`) the whole set.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetZones {
    documents: Vec<String>,
    #[serde(default)]
    replace_all: bool,
}

impl Api {
    pub(super) async fn set_zones(&self, c: Call<'_>) -> Reply {
        let req: SetZones = parse_json(c.body)?;
        let zones = self
            .control
            .set_zones(c.actor, &req.documents, req.replace_all)
            .await?;
        Ok((StatusCode::OK, json!({ "zones": zones })))
    }

    pub(super) async fn list_zones(&self, _: Call<'_>) -> Reply {
        let zones = self.control.list_zones().await?;
        Ok((StatusCode::OK, json!({ "zones": zones })))
    }

    pub(super) async fn show_zone(&self, c: Call<'_>) -> Reply {
        Ok((StatusCode::OK, self.control.zone(c.param("zone")?).await?))
    }

    pub(super) async fn set_zone(&self, c: Call<'_>) -> Reply {
        let req: SetZone = parse_json(c.body)?;
        let zone = self
            .control
            .set_zone(c.actor, c.param("zone")?, &req.document)
            .await?;
        Ok((StatusCode::OK, zone))
    }

    pub(super) async fn delete_zone(&self, c: Call<'_>) -> Reply {
        let name = c.param("zone")?;
        self.control.delete_zone(c.actor, name).await?;
        Ok((StatusCode::OK, json!({ "removed": name })))
    }
}
