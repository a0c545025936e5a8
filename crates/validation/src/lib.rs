#![forbid(unsafe_code)]
//! JSON Schema (draft 2020-12) validation of what a caller sends, before any tenant code
//! runs: a function's request body, query, headers and path (`[schema]` in its manifest,
//! [`RequestSchemas`]), and the data of an event delivered to it ([`validate_event`]).
//!
//! A schema is compiled once ([`CompiledSchema::compile`], when its manifest is parsed at
//! deploy or at a restart) and shared by every request. A failure names where and which
//! keyword failed ([`Invalid`]), never the value that failed.
//!
//! # Trust
//! * Trusts the `jsonschema` crate for the semantics of each keyword. Everything around it
//!   is bounded here: a schema's size and nesting ([`MAX_SCHEMA_BYTES`],
//!   [`MAX_SCHEMA_DEPTH`]); `pattern`s run on the linear-time `regex` engine with size limits
//!   (no backtracking, so no catastrophic regular expressions); references stay inside the
//!   schema (a `$ref` that does not start with `#` is refused before compiling, and the
//!   compiler has no retriever that could fetch anything: the crate is built without its
//!   HTTP and file resolvers, and [`jsonschema::ValidationOptions::offline`] is set);
//!   `$schema`, if written, must be draft 2020-12.
//! * Trusts nothing in an instance: a body larger than [`MAX_VALIDATED_BODY`] is refused
//!   before it is parsed, JSON nesting is held to `serde_json`'s recursion limit (128), and
//!   at most [`MAX_REPORTED_ERRORS`] errors are collected.
//! * Guarantees: error messages carry instance paths, schema paths, keywords and text from
//!   the schema, never an instance value (`jsonschema`'s masked messages, cut to
//!   [`MAX_MESSAGE_CHARS`] and escaped); a header or query value, which may be a secret,
//!   never reaches a response or a log through this crate.
//! * Never panics on input.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// Largest schema text, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 32 * 1024;
/// Deepest nesting of objects and arrays in a schema.
pub const MAX_SCHEMA_DEPTH: usize = 32;
/// Largest body (or event data) that is validated; a larger one with a schema is refused.
pub const MAX_VALIDATED_BODY: usize = 1024 * 1024;
/// Most errors reported for one instance.
pub const MAX_REPORTED_ERRORS: usize = 8;
/// Longest message of one reported error, in characters.
pub const MAX_MESSAGE_CHARS: usize = 200;
/// Size limit of one compiled `pattern` (the `regex` engine's program and its lazy DFA).
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The only meta-schema a schema may name in `$schema`.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// A schema that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("schema is {size} bytes, more than the {limit} allowed")]
    TooLarge { size: usize, limit: usize },
    #[error("schema is not JSON: {detail}")]
    NotJson { detail: String },
    #[error("schema nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("`{keyword}` `{reference}` refers outside the schema; only references within it (`#...`) are allowed")]
    ExternalReference { keyword: String, reference: String },
    #[error("`$schema` `{found}` is not supported; schemas are draft 2020-12 (`{DRAFT_2020_12}`)")]
    UnsupportedDraft { found: String },
    #[error("schema does not compile: {detail}")]
    Invalid { detail: String },
}

/// A compiled schema and the source it came from. Cloning shares the compiled form.
#[derive(Clone)]
pub struct CompiledSchema {
    source: Arc<Value>,
    digest: Arc<str>,
    validator: Arc<jsonschema::Validator>,
}

impl fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// Two schemas are equal when their sources are (compiled forms are not compared).
impl PartialEq for CompiledSchema {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}
impl Eq for CompiledSchema {}

/// Serialised as the schema as written.
impl serde::Serialize for CompiledSchema {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(serializer)
    }
}

impl CompiledSchema {
    /// Parses, checks and compiles a schema's JSON text (see the crate documentation for
    /// what is refused). Compiling costs tens of microseconds for a typical schema; do it
    /// once, not per request.
    pub fn compile(text: &str) -> Result<CompiledSchema, SchemaError> {
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError::TooLarge {
                size: text.len(),
                limit: MAX_SCHEMA_BYTES,
            });
        }
        let source: Value = serde_json::from_str(text).map_err(|e| SchemaError::NotJson {
            detail: e.to_string(),
        })?;
        check_schema(&source, 0)?;
        if let Some(found) = source.get("$schema") {
            if found.as_str() != Some(DRAFT_2020_12) {
                return Err(SchemaError::UnsupportedDraft {
                    found: zerofn_types::sanitize_message(&found.to_string(), MAX_MESSAGE_CHARS),
                });
            }
        }
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .offline()
            .with_pattern_options(
                jsonschema::PatternOptions::regex()
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT),
            )
            .build(&source)
            .map_err(|e| SchemaError::Invalid {
                // A schema error quotes the schema, which is the deployer's own text.
                detail: zerofn_types::sanitize_message(&e.to_string(), MAX_MESSAGE_CHARS),
            })?;
        let digest = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(canonical_bytes(&source)))
        );
        Ok(CompiledSchema {
            source: Arc::new(source),
            digest: digest.into(),
            validator: Arc::new(validator),
        })
    }

    /// The schema as written (parsed).
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// `sha256:<hex>` of the schema's canonical JSON (object keys sorted, no insignificant
    /// whitespace): what a signed manifest commits to.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Validates one instance; on failure, the first [`MAX_REPORTED_ERRORS`] errors.
    pub fn validate(&self, part: RequestPart, instance: &Value) -> Result<(), Invalid> {
        if self.validator.is_valid(instance) {
            return Ok(());
        }
        let violations: Vec<Violation> = self
            .validator
            .iter_errors(instance)
            .take(MAX_REPORTED_ERRORS)
            .map(|e| Violation {
                instance_path: e.instance_path().to_string(),
                schema_path: e.schema_path().to_string(),
                keyword: e.kind().keyword().to_owned(),
                message: zerofn_types::sanitize_message(
                    &e.masked_with("value").to_string(),
                    MAX_MESSAGE_CHARS,
                ),
            })
            .collect();
        Err(Invalid {
            part,
            reason: InvalidReason::Schema(violations),
        })
    }
}

/// The schema's source without key order.
fn canonical_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(&sorted_keys(value)).unwrap_or_default()
}

/// `value` with every object's keys in sorted order: `serde_json`'s map is sorted
/// unless its `preserve_order` feature is on somewhere in the build, so sort here.
/// Shared with the manifest's signed form, which needs the same canonical order.
pub fn sorted_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                if let Some(v) = map.get(key) {
                    out.insert(key.clone(), sorted_keys(v));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted_keys).collect()),
        other => other.clone(),
    }
}

/// Depth and references of a schema, before the compiler sees it. Any string-valued
/// `$ref`, `$dynamicRef` or `$recursiveRef` member must be a fragment (`#...`). This is
/// conservative: the same member inside `const` or `enum` data is refused too.
fn check_schema(value: &Value, depth: usize) -> Result<(), SchemaError> {
    if depth >= MAX_SCHEMA_DEPTH {
        return Err(SchemaError::TooDeep {
            limit: MAX_SCHEMA_DEPTH,
        });
    }
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if matches!(key.as_str(), "$ref" | "$dynamicRef" | "$recursiveRef") {
                    if let Some(reference) = v.as_str() {
                        if !reference.starts_with('#') {
                            return Err(SchemaError::ExternalReference {
                                keyword: key.clone(),
                                reference: zerofn_types::sanitize_message(
                                    reference,
                                    MAX_MESSAGE_CHARS,
                                ),
                            });
                        }
                    }
                }
                check_schema(v, depth + 1)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| check_schema(v, depth + 1)),
        _ => Ok(()),
    }
}

/// The part of a request a schema applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestPart {
    /// The body, parsed as JSON.
    Body,
    /// The query string: an object of names to strings (arrays of strings when a name
    /// repeats).
    Query,
    /// The headers: an object of lowercase names to strings (values of a repeated header
    /// joined with `, `).
    Headers,
    /// The request path in normal form, a string.
    Path,
    /// The data of an event (CloudEvents `data`), parsed as JSON.
    Event,
}

impl RequestPart {
    /// Every part a manifest's `[schema]` may name, in the order a request is checked.
    pub const MANIFEST_KEYS: [RequestPart; 4] = [
        RequestPart::Path,
        RequestPart::Query,
        RequestPart::Headers,
        RequestPart::Body,
    ];

    /// The name used in manifests and error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestPart::Body => "body",
            RequestPart::Query => "query",
            RequestPart::Headers => "headers",
            RequestPart::Path => "path",
            RequestPart::Event => "event",
        }
    }

    /// The part a manifest key names.
    pub fn from_manifest_key(key: &str) -> Option<RequestPart> {
        RequestPart::MANIFEST_KEYS
            .into_iter()
            .find(|p| p.as_str() == key)
    }
}

impl fmt::Display for RequestPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failing keyword.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// JSON Pointer to the failing value in the instance (`/items/0/qty`).
    pub instance_path: String,
    /// JSON Pointer to the failing keyword in the schema (`/properties/items/items/properties/qty/minimum`).
    pub schema_path: String,
    /// The failing keyword (`minimum`).
    pub keyword: String,
    /// What failed, with the instance value masked (`value is less than the minimum of 1`).
    pub message: String,
}

/// Why a request part was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidReason {
    /// It does not match its schema: at most [`MAX_REPORTED_ERRORS`] violations, at least one.
    Schema(Vec<Violation>),
    /// It is not JSON (or not UTF-8, for the query).
    Malformed { detail: &'static str },
    /// It is larger than [`MAX_VALIDATED_BODY`].
    TooLarge { size: usize, limit: usize },
}

/// A request part that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub part: RequestPart,
    pub reason: InvalidReason,
}

impl Invalid {
    /// The violations, empty unless the part failed its schema.
    pub fn violations(&self) -> &[Violation] {
        match &self.reason {
            InvalidReason::Schema(v) => v,
            _ => &[],
        }
    }

    /// One line for an audit record (`schema: body /items/0/qty: minimum`), with no
    /// instance value in it.
    pub fn audit_reason(&self) -> String {
        match self.violations().first() {
            Some(v) => format!(
                "schema: {} {}: {}",
                self.part,
                if v.instance_path.is_empty() {
                    "/"
                } else {
                    &v.instance_path
                },
                v.message
            ),
            None => format!("schema: {}", self),
        }
    }

    /// The `error` object of a 400 answer: `kind`, `message`, `part`, the first violation's
    /// `instance_path`, `schema_path` and `keyword`, and `errors`, every violation reported.
    pub fn error_json(&self) -> Value {
        let mut error = serde_json::json!({
            "kind": "invalid_request",
            "message": self.to_string(),
            "part": self.part.as_str(),
        });
        if let (Some(first), Some(obj)) = (self.violations().first(), error.as_object_mut()) {
            obj.insert("instance_path".into(), first.instance_path.clone().into());
            obj.insert("schema_path".into(), first.schema_path.clone().into());
            obj.insert("keyword".into(), first.keyword.clone().into());
            obj.insert(
                "errors".into(),
                serde_json::to_value(self.violations()).unwrap_or_default(),
            );
        }
        error
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            InvalidReason::Schema(v) => match v.first() {
                Some(first) => write!(
                    f,
                    "request {} does not match its schema at `{}`: {}",
                    self.part,
                    if first.instance_path.is_empty() {
                        "/"
                    } else {
                        &first.instance_path
                    },
                    first.message
                ),
                None => write!(f, "request {} does not match its schema", self.part),
            },
            InvalidReason::Malformed { detail } => {
                write!(f, "request {} {detail}", self.part)
            }
            InvalidReason::TooLarge { size, limit } => write!(
                f,
                "request {} is {size} bytes; a validated {} may have at most {limit}",
                self.part, self.part
            ),
        }
    }
}

/// Parses a JSON document of at most [`MAX_VALIDATED_BODY`] bytes.
fn parse_json(part: RequestPart, bytes: &[u8]) -> Result<Value, Invalid> {
    if bytes.len() > MAX_VALIDATED_BODY {
        return Err(Invalid {
            part,
            reason: InvalidReason::TooLarge {
                size: bytes.len(),
                limit: MAX_VALIDATED_BODY,
            },
        });
    }
    // serde_json refuses nesting deeper than 128 (its recursion limit), so a hostile
    // document cannot exhaust the stack here or in the validator.
    serde_json::from_slice(bytes).map_err(|_| Invalid {
        part,
        reason: InvalidReason::Malformed {
            detail: "is not JSON",
        },
    })
}

/// Validates the data of an event (for example a CloudEvent's `data`, as JSON bytes)
/// against a compiled schema, with the same bounds as a request body.
pub fn validate_event(schema: &CompiledSchema, data: &[u8]) -> Result<(), Invalid> {
    let instance = parse_json(RequestPart::Event, data)?;
    schema.validate(RequestPart::Event, &instance)
}

/// The schemas a function declares for its requests (`[schema]` in its manifest); empty
/// when it declares none, and then validation costs nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestSchemas {
    parts: BTreeMap<RequestPart, CompiledSchema>,
}

/// Serialised as an object of part names to the schemas as written.
impl serde::Serialize for RequestSchemas {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.parts.len()))?;
        for (part, schema) in &self.parts {
            map.serialize_entry(part.as_str(), schema.source())?;
        }
        map.end()
    }
}

impl RequestSchemas {
    /// Compiles the schema of each part; the first failure names its part.
    pub fn compile<'a>(
        sources: impl IntoIterator<Item = (RequestPart, &'a str)>,
    ) -> Result<RequestSchemas, (RequestPart, SchemaError)> {
        let mut parts = BTreeMap::new();
        for (part, text) in sources {
            let schema = CompiledSchema::compile(text).map_err(|e| (part, e))?;
            parts.insert(part, schema);
        }
        Ok(RequestSchemas { parts })
    }

    /// Whether no part has a schema.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Whether the body has a schema (and so must be JSON).
    pub fn has_body(&self) -> bool {
        self.parts.contains_key(&RequestPart::Body)
    }

    /// The schema of one part.
    pub fn get(&self, part: RequestPart) -> Option<&CompiledSchema> {
        self.parts.get(&part)
    }

    /// Each part with its schema.
    pub fn iter(&self) -> impl Iterator<Item = (RequestPart, &CompiledSchema)> {
        self.parts.iter().map(|(p, s)| (*p, s))
    }

    /// Validates a request's head: path, query and headers, each against its schema if it
    /// has one. Cheap, and possible before the body is read.
    pub fn validate_head(
        &self,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> Result<(), Invalid> {
        if let Some(schema) = self.get(RequestPart::Path) {
            schema.validate(RequestPart::Path, &Value::String(path.to_owned()))?;
        }
        if let Some(schema) = self.get(RequestPart::Query) {
            schema.validate(RequestPart::Query, &query_instance(query.unwrap_or(""))?)?;
        }
        if let Some(schema) = self.get(RequestPart::Headers) {
            schema.validate(RequestPart::Headers, &headers_instance(headers))?;
        }
        Ok(())
    }

    /// Validates a request body against its schema, if it has one.
    pub fn validate_body(&self, body: &[u8]) -> Result<(), Invalid> {
        match self.get(RequestPart::Body) {
            None => Ok(()),
            Some(schema) => {
                let instance = parse_json(RequestPart::Body, body)?;
                schema.validate(RequestPart::Body, &instance)
            }
        }
    }
}

/// The query string as an object (`application/x-www-form-urlencoded`: `+` is a space,
/// `%XX` a byte, the result must be UTF-8). A name that repeats maps to an array.
pub fn query_instance(query: &str) -> Result<Value, Invalid> {
    let malformed = || Invalid {
        part: RequestPart::Query,
        reason: InvalidReason::Malformed {
            detail: "is not UTF-8 after percent-decoding",
        },
    };
    let decode = |s: &str| -> Result<String, Invalid> {
        let plus = s.replace('+', " ");
        percent_encoding::percent_decode_str(&plus)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| malformed())
    };
    let mut out = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (decode(name)?, Value::String(decode(value)?));
        match out.get_mut(&name) {
            None => {
                out.insert(name, value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => {
                let first = first.take();
                out.insert(name, Value::Array(vec![first, value]));
            }
        }
    }
    Ok(Value::Object(out))
}

/// The headers as an object of lowercase names to values (not UTF-8: lossily decoded).
pub fn headers_instance(headers: &http::HeaderMap) -> Value {
    let mut out = Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        out.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests;
