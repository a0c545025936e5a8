//! The object storage routes' bodies (`/v1/tenants/{tenant}/buckets...`).
//! Object bytes travel in base64, as queue messages do, so that every
//! control API body is JSON.

use serde::{Deserialize, Serialize};

/// `PUT /v1/tenants/{tenant}/buckets/{bucket}/objects/{key}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutObject {
    /// The object's bytes, base64.
    pub data: String,
    /// Its content type (default `application/octet-stream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    /// `sha256:<64 hex>` of the bytes.
    pub digest: String,
    pub size: u64,
    pub content_type: String,
    pub created_at: String,
    pub version: u64,
}

/// `GET /v1/tenants/{tenant}/buckets/{bucket}/objects/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectData {
    pub object: ObjectInfo,
    /// The bytes, base64.
    pub data: String,
}

/// `GET /v1/tenants/{tenant}/buckets/{bucket}/objects`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectList {
    pub bucket: String,
    pub objects: Vec<ObjectInfo>,
    /// The key to pass as `after` for the next page, when the page was full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// A bucket with what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    pub name: String,
    pub created_at: String,
    pub objects: u64,
    pub bytes: u64,
}

/// `GET /v1/tenants/{tenant}/buckets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketList {
    pub buckets: Vec<BucketInfo>,
}

/// `DELETE /v1/tenants/{tenant}/buckets/{bucket}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketDeleted {
    pub bucket: String,
}
