#![forbid(unsafe_code)]
//! Small identifiers shared by the zerofn crates, each a type that holds its spelling rules:
//! [`Digest`] (`sha256:<64 lowercase hex>`), [`TenantName`] and [`FunctionName`] (DNS
//! labels), [`InvocationId`] (a UUID, as the gateway makes them); and the one function family
//! that quotes untrusted text for terminals and error messages ([`excerpt`], [`escape`],
//! [`sanitize_message`], [`printable`]); and the RFC 6962 tree hashes both logs the platform
//! reads are built from ([`rfc6962`]).
//!
//! This crate is a leaf: it depends on no other zerofn crate, so every crate can use it
//! without an import circle.
//!
//! # Trust
//! * Trusts `sha2` for the sha256 function and `uuid` for random invocation ids.
//! * Trusts no input: every constructor from text parses and refuses with a typed error
//!   ([`DigestError`], [`NameError`], [`InvocationIdError`]) whose message quotes the input
//!   only after [`excerpt`] made it safe.
//! * Guarantees: a value of each type is spelled the one accepted way; quoted outside text
//!   carries no control, zero-width or bidirectional-override character unescaped.

mod digest;
mod invocation;
mod names;
pub mod random;
pub mod rfc6962;
mod text;

pub use digest::{parse_sha256_hex, Digest, DigestError};
pub use invocation::{InvocationId, InvocationIdError};
pub use names::{FunctionName, LabelRule, NameError, TenantName, NAME_RULE};
pub use text::{escape, excerpt, printable, quote, sanitize_message, EXCERPT_CHARS};
