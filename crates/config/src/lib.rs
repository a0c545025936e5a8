#![forbid(unsafe_code)]
//! The declarative configuration directory: one layout of TOML and Cedar files for the
//! platform's security configuration (tenants, their signers, admission rules, limits, JWT
//! issuers, runtime policies and functions; operators; the control policy), read strictly
//! and validated as a whole ([`load`]), compared with a running platform ([`diff`]) and
//! written back out from one ([`export`]). The layout is documented in
//! `docs/config-dir.md` and printed by `zerofn config schema` ([`SCHEMA`]).
//!
//! # Trust
//! Trusts nothing in the directory. [`ConfigFiles`] reads it bounded (file sizes, count,
//! depth, total), refuses symbolic links and keeps references inside it; every file is
//! parsed with unknown fields refused and every key, policy, manifest and trusted root is
//! validated with the parsers the control API uses. Validation here is a first pass for
//! a quick answer: the server validates again, with its own state, when it applies.
//!
//! Where it falls short: API keys are not part of the layout (they are secrets: only their
//! salted hash is stored, the key is shown once at creation, so a directory could only hold
//! the key itself); an operator's certificate is issued by `apply` only for a public key
//! the directory names (the private key never leaves the operator); a Cedar error names its file but not its line (the policy crate
//! reports no position).

mod diff;
mod export;
mod files;
mod load;
mod model;
mod schema;
mod wire;

pub use diff::{diff, Change, ChangeKind};
pub use export::{export, ExportedFunction};
pub use files::{ConfigFiles, MAX_COMPONENT_FILE, MAX_DEPTH, MAX_FILES, MAX_TEXT_FILE, MAX_TOTAL};
pub use load::{function_files, load, operator_key, FunctionFiles};
pub use model::*;
pub use schema::SCHEMA;
pub use wire::{
    ApplyRequest, ApplyResult, ConfigExport, ConfigState, ExportedFunctionWire, SavedPlan,
    PLAN_FORMAT,
};

/// Why a directory cannot be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("`{file}`{}: {problem}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Invalid {
        file: String,
        /// The 1-based line of the problem, when known.
        line: Option<usize>,
        /// The byte range in the file of the key or value at fault, when known (the CLI
        /// underlines it; the message, with the line, stays whole without it).
        span: Option<std::ops::Range<usize>>,
        problem: String,
    },
    #[error("`{file}` is missing{}", referenced_from.as_ref().map(|r| format!(" (needed by `{r}`)")).unwrap_or_default())]
    Missing {
        file: String,
        referenced_from: Option<String>,
    },
    #[error(
        "`{0}` is a symbolic link; the configuration directory may hold only files and directories"
    )]
    Symlink(String),
    #[error("`{file}` is larger than {max} bytes")]
    TooLarge { file: String, max: u64 },
    #[error("the directory holds more than {max} files")]
    TooManyFiles { max: usize },
    #[error("`{dir}` is nested deeper than {max} directories")]
    TooDeep { dir: String, max: usize },
    #[error("`{0}` is not a directory")]
    NotADirectory(String),
    #[error("cannot read `{path}`: {problem}")]
    Io { path: String, problem: String },
}

#[cfg(test)]
mod tests;
