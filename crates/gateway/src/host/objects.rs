//! Functions reading and writing their tenant's objects:
//! `GET|PUT|DELETE http://objects.fn.internal/<bucket>/<key>`, the object's
//! bytes as the body of a `PUT` (or `POST`, for clients that send nothing
//! else) or the answer of a `GET`.
//!
//! `wasi:blobstore` is not served: its draft depends on `wasi:io` streams and
//! container/object-name resources that wasmtime 48 ships no host for, and the
//! guests' C toolchain has no bindings for it; a platform host under
//! `*.fn.internal` (like queue publishing) serves every `wasi:http` guest, in
//! every language, today.
//!
//! The bucket is resolved in the calling function's own tenant (the guest
//! names only the bucket), the operation is decided as `object.read` (`GET`)
//! or `object.write` (`PUT`, `DELETE`) on `Zerofn::ObjectBucket::"<tenant>/
//! <bucket>"` (granted by `[permissions] buckets`) and recorded like every
//! capability, then handed to the platform's object storage
//! ([`ObjectHost`]), which checks the key and size, records the change and
//! commits it durably (emitting its bucket events) before the guest's answer.
//! The events keep the trace context of the platform's `zerofn.object` span
//! of the call, so their deliveries continue the request's trace.
//!
//! # Trust
//! Trusts nothing in the request: the path is split once here, the bucket
//! must be a name, the key is checked by the object storage as every key is,
//! and the body is bounded by the object size limit before it is handed on.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde_json::json;
use zerofn_policy::{RequestContext, Resource, RuntimeAction};
use zerofn_telemetry::TraceParent;
use zerofn_types::TenantName;

use super::InvocationHost;

/// Host name of the platform's object storage for guests.
pub const OBJECTS_HOST: &str = "objects.fn.internal";

/// Largest object a function may write (the object storage's own limit).
pub const MAX_FUNCTION_OBJECT_BYTES: usize = 16 * 1024 * 1024;

/// An object as a function reads it.
#[derive(Debug, Clone)]
pub struct FunctionObject {
    pub content_type: String,
    pub digest: String,
    pub data: Bytes,
}

/// Why the object storage refused: the status and kind the guest gets.
#[derive(Debug, Clone)]
pub struct ObjectRefused {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

type ObjectFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, ObjectRefused>> + Send + 'a>>;

/// The platform's object storage, as functions use it. Each change is
/// recorded with `actor` (the function's SPIFFE ID).
pub trait ObjectHost: Send + Sync + 'static {
    fn get<'a>(
        &'a self,
        tenant: &'a TenantName,
        bucket: &'a str,
        key: &'a str,
    ) -> ObjectFuture<'a, FunctionObject>;
    /// Stores the object; answers its digest once durable. `trace` is the
    /// context of the platform's span of the call (none with tracing off):
    /// the change's events continue it.
    #[allow(clippy::too_many_arguments)]
    fn put<'a>(
        &'a self,
        actor: &'a str,
        tenant: &'a TenantName,
        bucket: &'a str,
        key: &'a str,
        content_type: Option<String>,
        data: Bytes,
        trace: Option<&'a TraceParent>,
    ) -> ObjectFuture<'a, String>;
    fn delete<'a>(
        &'a self,
        actor: &'a str,
        tenant: &'a TenantName,
        bucket: &'a str,
        key: &'a str,
        trace: Option<&'a TraceParent>,
    ) -> ObjectFuture<'a, ()>;
}

impl InvocationHost {
    /// `GET|PUT|DELETE /<bucket>/<key>` on the objects host: decide, record, act.
    /// `trace`: the context of the `zerofn.object` span of the call (never
    /// a `traceparent` the guest sent), kept with the change's events.
    pub(super) async fn object(
        &self,
        request: Request<Bytes>,
        trace: Option<&TraceParent>,
    ) -> Response<Bytes> {
        let answer = |status: StatusCode, kind: &str, message: &str| {
            crate::errors::error_response(status, kind, message, Some(&self.invocation_id))
        };
        let path = request.uri().path().strip_prefix('/').unwrap_or("");
        let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
        let write = match *request.method() {
            Method::GET => false,
            Method::PUT | Method::POST | Method::DELETE => true,
            _ => {
                return answer(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "the objects endpoint serves GET, PUT (or POST) and DELETE /<bucket>/<key>",
                )
            }
        };
        if zerofn_policy::permissions::valid_bucket_name(bucket).is_err() || key.is_empty() {
            return answer(
                StatusCode::NOT_FOUND,
                "not_found",
                "the objects endpoint serves GET, PUT and DELETE /<bucket>/<key>",
            );
        }
        if request.body().len() > MAX_FUNCTION_OBJECT_BYTES {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "object_too_large",
                &format!(
                    "an object is at most {MAX_FUNCTION_OBJECT_BYTES} bytes; this one has {}",
                    request.body().len()
                ),
            );
        }
        let content_type = match request.headers().get(http::header::CONTENT_TYPE) {
            None => None,
            Some(v) => match v.to_str() {
                Ok(t) => Some(t.to_owned()),
                Err(_) => {
                    return answer(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "header `content-type` is not visible ASCII",
                    )
                }
            },
        };
        let (action, verb) = if write {
            (RuntimeAction::ObjectWrite, "object.write")
        } else {
            (RuntimeAction::ObjectRead, "object.read")
        };
        let resource = Resource::ObjectBucket {
            tenant: self.tenant().to_owned(),
            name: bucket.to_owned(),
        };
        let bytes = u64::try_from(request.body().len()).unwrap_or(u64::MAX);
        let what = format!("{verb} of `{}` in bucket `{bucket}`", key.escape_debug());
        let authorized = match self
            .authorize(
                action,
                resource,
                RequestContext::Object {
                    key: key.to_owned(),
                    bytes,
                },
                what,
            )
            .await
        {
            Ok(a) => a,
            Err(refusal) => {
                return answer(StatusCode::FORBIDDEN, "forbidden", &refusal.to_string())
            }
        };
        let Some(objects) = self.services.objects.as_ref() else {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "this platform has no object storage",
            );
        };
        let actor = authorized.caller.to_string();
        let tenant = &self.manifest().tenant;
        let result = match *request.method() {
            Method::GET => objects.get(tenant, bucket, key).await.map(|o| {
                Response::builder()
                    .status(StatusCode::OK)
                    .header(http::header::CONTENT_TYPE, o.content_type)
                    .header("x-zerofn-digest", o.digest)
                    .body(o.data)
            }),
            Method::PUT | Method::POST => objects
                .put(
                    &actor,
                    tenant,
                    bucket,
                    key,
                    content_type,
                    request.body().clone(),
                    trace,
                )
                .await
                .map(|digest| {
                    Response::builder()
                        .status(StatusCode::OK)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Bytes::from(
                            json!({"bucket": bucket, "key": key, "digest": digest}).to_string(),
                        ))
                }),
            _ => objects
                .delete(&actor, tenant, bucket, key, trace)
                .await
                .map(|()| {
                    Response::builder()
                        .status(StatusCode::NO_CONTENT)
                        .body(Bytes::new())
                }),
        };
        match result {
            // Stored content types are header values (checked at put); should
            // one still not build, the guest gets an error, not an empty 200.
            Ok(built) => built.unwrap_or_else(|_| {
                answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the object's answer could not be built",
                )
            }),
            Err(refused) => answer(
                StatusCode::from_u16(refused.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                refused.kind,
                &refused.message,
            ),
        }
    }
}
