//! The control API's object storage routes (`/v1/tenants/{tenant}/buckets...`):
//! JSON in and out (object bytes in base64), over [`zerofn_events::Objects`],
//! which checks, bounds and audits every operation. Authorization is the
//! route table's: listing is `tenant.read`, reading an object's bytes is the
//! tenant's `audit.read` (tenant data, as a queue peek), changing is
//! `tenant.manage` (as a queue publish). A change's events keep the
//! caller's valid `traceparent` (their deliveries continue its trace); an
//! invalid one is ignored, never a refusal.

use base64::Engine as _;
use http::StatusCode;
use zerofn_api::{
    BucketDeleted, BucketInfo, BucketList, ObjectData, ObjectInfo, ObjectList, PutObject,
};
use zerofn_events::ObjectRow;

use super::routes::{decode_query_value, Call, Reply};
use super::{parse_json, to_value, Api};
use crate::control::ControlError;

/// Objects a list shows when the query does not say.
const DEFAULT_LIST: u32 = 100;

fn info(row: ObjectRow) -> ObjectInfo {
    ObjectInfo {
        bucket: row.bucket,
        key: row.key,
        digest: row.digest,
        size: row.size,
        content_type: row.content_type,
        created_at: row.created_at,
        version: row.version,
    }
}

/// A list's query: `prefix`, `after` and `limit` (1 to the objects crate's
/// most); anything else is refused.
struct ListQuery {
    prefix: String,
    after: Option<String>,
    limit: u32,
}

fn list_query(query: Option<&str>) -> Result<ListQuery, ControlError> {
    let mut q = ListQuery {
        prefix: String::new(),
        after: None,
        limit: DEFAULT_LIST,
    };
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode_query_value(value)?;
        match key {
            "prefix" => q.prefix = value,
            "after" => q.after = Some(value),
            "limit" => {
                q.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=zerofn_events::MAX_LIST).contains(n))
                    .ok_or_else(|| {
                        ControlError::InvalidRequest(format!(
                            "`limit` must be a number from 1 to {}",
                            zerofn_events::MAX_LIST
                        ))
                    })?;
            }
            other => {
                return Err(ControlError::InvalidRequest(format!(
                    "unknown query parameter `{}`; expected `prefix`, `after` or `limit`",
                    other.escape_debug()
                )))
            }
        }
    }
    Ok(q)
}

impl Api {
    pub(super) async fn list_buckets(&self, c: Call<'_>) -> Reply {
        let rows = self.objects.buckets(&c.tenant()?).await?;
        Ok((
            StatusCode::OK,
            to_value(BucketList {
                buckets: rows
                    .into_iter()
                    .map(|b| BucketInfo {
                        name: b.name,
                        created_at: b.created_at,
                        objects: b.objects,
                        bytes: b.bytes,
                    })
                    .collect(),
            }),
        ))
    }

    pub(super) async fn delete_bucket(&self, c: Call<'_>) -> Reply {
        let bucket = c.param("bucket")?;
        self.objects
            .delete_bucket(c.actor, &c.tenant()?, bucket)
            .await?;
        Ok((
            StatusCode::OK,
            to_value(BucketDeleted {
                bucket: bucket.to_owned(),
            }),
        ))
    }

    pub(super) async fn list_objects(&self, c: Call<'_>) -> Reply {
        let q = list_query(c.query)?;
        let bucket = c.param("bucket")?;
        let rows = self
            .objects
            .list(&c.tenant()?, bucket, &q.prefix, q.after.as_deref(), q.limit)
            .await?;
        let next_after = (rows.len() == q.limit as usize)
            .then(|| rows.last().map(|r| r.key.clone()))
            .flatten();
        Ok((
            StatusCode::OK,
            to_value(ObjectList {
                bucket: bucket.to_owned(),
                objects: rows.into_iter().map(info).collect(),
                next_after,
            }),
        ))
    }

    pub(super) async fn put_object(&self, c: Call<'_>) -> Reply {
        let req: PutObject = parse_json(c.body)?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(req.data.as_bytes())
            .map_err(|e| {
                ControlError::InvalidRequest(format!("`data` is not valid base64: {e}"))
            })?;
        let row = self
            .objects
            .put(
                c.actor,
                &c.tenant()?,
                c.param("bucket")?,
                c.param("key_path")?,
                data,
                req.content_type.as_deref(),
                trace(&c).as_ref(),
            )
            .await?;
        Ok((StatusCode::OK, to_value(info(row))))
    }

    pub(super) async fn get_object(&self, c: Call<'_>) -> Reply {
        let (row, data) = self
            .objects
            .get(&c.tenant()?, c.param("bucket")?, c.param("key_path")?)
            .await?;
        Ok((
            StatusCode::OK,
            to_value(ObjectData {
                object: info(row),
                data: base64::engine::general_purpose::STANDARD.encode(&data),
            }),
        ))
    }

    pub(super) async fn delete_object(&self, c: Call<'_>) -> Reply {
        let row = self
            .objects
            .delete(
                c.actor,
                &c.tenant()?,
                c.param("bucket")?,
                c.param("key_path")?,
                trace(&c).as_ref(),
            )
            .await?;
        Ok((StatusCode::OK, to_value(info(row))))
    }
}

/// The caller's trace context (its `traceparent` and `tracestate`
/// headers, read strictly): the change's events continue the caller's
/// trace. An invalid one is no context (the events start new traces),
/// never a refusal.
fn trace(c: &Call<'_>) -> Option<zerofn_telemetry::TraceParent> {
    zerofn_telemetry::TraceParent::from_values(c.traceparent?, c.tracestate)
}
