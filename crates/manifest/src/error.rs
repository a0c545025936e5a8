//! [`ManifestError`]: why a function manifest was refused.
//!
//! Messages are shown to users by the CLI and the control API, so they follow Cedar's
//! `style_guide.md`: lowercase, no trailing period, inputs in backticks, what failed and
//! what to do; outside text is passed through [`zerofn_types::excerpt`] first.

use zerofn_types::NameError;

/// Why a function manifest (`zerofn.toml`) was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest is larger than any sensible manifest.
    #[error("manifest is {size} bytes, over the limit of {limit} bytes; remove unneeded content")]
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// A `[schema]` key is not a request part.
    #[error("`schema.{key}` is not a request part; use `body`, `query`, `headers` or `path`")]
    UnknownSchemaPart {
        /// The key (escaped and shortened).
        key: String,
    },

    /// A `[schema]` schema does not compile.
    #[error("`schema.{part}` is invalid: {source}")]
    InvalidSchema {
        /// The request part.
        part: &'static str,
        /// Why.
        #[source]
        source: zerofn_validation::SchemaError,
    },

    /// The TOML does not parse, or has unknown, missing or mistyped keys. The message carries
    /// the line and column and names the key.
    #[error("manifest is not valid: {0}")]
    Toml(#[source] toml::de::Error),

    /// `name` or `tenant` is not a DNS label ([`NameError`] says which).
    #[error(transparent)]
    Name(#[from] NameError),

    /// `component` is not a plain `.wasm` file name.
    #[error("`component` = `{component}` is invalid: {reason}; use a plain file name beside the manifest, such as `hello.wasm`")]
    InvalidComponent {
        /// The offending value (escaped and shortened).
        component: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// `routes` is empty.
    #[error("`routes` is empty; add at least one route, such as `routes = [\"/hello\"]`")]
    NoRoutes,

    /// A route is not a normalised absolute URL path.
    #[error("route `{route}` is invalid: {reason}")]
    InvalidRoute {
        /// The offending route (escaped and shortened).
        route: String,
        /// Which rule it breaks and what to write instead.
        reason: String,
    },

    /// The same route appears twice.
    #[error("route `{route}` is listed more than once in `routes`; remove the duplicate")]
    DuplicateRoute {
        /// The repeated route.
        route: String,
    },

    /// `version` is not a positive integer a JSON reader holds exactly.
    #[error("`version` = {value} is out of range; use a whole number from 1 to 9007199254740991, higher than the version deployed before")]
    VersionOutOfRange {
        /// The value found.
        value: i64,
    },

    /// `[limits] burst` without `rate_per_second`.
    #[error("`limits.burst` is set without `limits.rate_per_second`; a burst is the depth of a rate limit, so set a rate too or remove the burst")]
    BurstWithoutRate,

    /// A `[limits]` value is outside its allowed range.
    #[error("`{key}` = {value} is out of range; use a value from {min} to {max}")]
    LimitOutOfRange {
        /// The key, such as `limits.memory_mb`.
        key: &'static str,
        /// The value found.
        value: i64,
        /// The smallest allowed value.
        min: u32,
        /// The largest allowed value.
        max: u32,
    },

    /// A `[layers]` key is not an interface name.
    #[error("`[layers]` key `{import}` is invalid: {reason}; write the import the layer satisfies, such as `\"zerofn:greet/greeter\"`")]
    InvalidLayerImport {
        /// The offending key (escaped and shortened).
        import: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// A `[layers]` value is not a digest.
    #[error("`[layers]` digest `{digest}` for `{import}` is invalid; write the published layer's digest as `sha256:` followed by 64 lowercase hex digits (see `zerofn layer list`)")]
    InvalidLayerDigest {
        /// The import it was given for.
        import: String,
        /// The offending value (escaped and shortened).
        digest: String,
    },

    /// A `[permissions]`, `[invoke]` or `[config]` entry is invalid.
    #[error("`{key}` is invalid: {problem}")]
    Permission {
        /// The key, such as `permissions.kv`.
        key: &'static str,
        /// What is wrong, naming the entry.
        problem: String,
    },

    /// More layers than allowed.
    #[error("`[layers]` pins {count} layers, more than the {limit} allowed; merge layers or drop unused ones")]
    TooManyLayers {
        /// How many were pinned.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

impl ManifestError {
    /// The key the error is about, dotted (`limits.memory_mb`, `routes`), when it is about
    /// one; a TOML error names its key in its message instead.
    pub fn key_path(&self) -> Option<String> {
        let key = match self {
            Self::TooLarge { .. } | Self::Toml(_) => return None,
            Self::UnknownSchemaPart { key } => return Some(format!("schema.{key}")),
            Self::InvalidSchema { part, .. } => return Some(format!("schema.{part}")),
            Self::Name(NameError::InvalidFunctionName { .. }) => "name",
            Self::Name(NameError::InvalidTenantName { .. }) => "tenant",
            Self::InvalidComponent { .. } => "component",
            Self::NoRoutes | Self::InvalidRoute { .. } | Self::DuplicateRoute { .. } => "routes",
            Self::VersionOutOfRange { .. } => "version",
            Self::BurstWithoutRate => "limits.burst",
            Self::LimitOutOfRange { key, .. } | Self::Permission { key, .. } => key,
            Self::InvalidLayerImport { .. } | Self::TooManyLayers { .. } => "layers",
            Self::InvalidLayerDigest { import, .. } => return Some(format!("layers.{import}")),
        };
        Some(key.to_owned())
    }

    /// The byte range in `text`, the manifest this error came from, of the key or value at
    /// fault, when it can be found (see [`crate::span`]).
    pub fn span_in(&self, text: &str) -> Option<std::ops::Range<usize>> {
        if let Self::Toml(e) = self {
            return e.span();
        }
        let key_path = self.key_path()?;
        // The entry the message names: a route, a layer import, a permission's entry.
        let entry = match self {
            Self::InvalidRoute { route, .. } | Self::DuplicateRoute { route } => {
                Some(route.as_str())
            }
            Self::InvalidLayerImport { import, .. } => Some(import.as_str()),
            Self::Permission { problem, .. } => crate::span::first_quoted(problem),
            _ => None,
        };
        if let Self::InvalidLayerDigest { digest, .. } = self {
            // The import may hold dots (`@0.2.0`): found as the value, not as a key path.
            return crate::span::locate(text, "layers", Some(digest));
        }
        if let Self::DuplicateRoute { route } = self {
            // The second time it is written is the one to remove.
            return crate::span::locate_last(text, &key_path, route)
                .or_else(|| crate::span::locate(text, &key_path, None));
        }
        crate::span::locate(text, &key_path, entry)
    }
}

#[cfg(test)]
mod tests {
    use crate::Manifest;

    const HEAD: &str = "tenant = \"acme\"\ncomponent = \"a.wasm\"\n";

    /// Each refusal found after deserialising points at the value (or entry) at fault.
    #[test]
    fn refusals_after_parsing_point_at_the_value_at_fault() {
        for (body, key, at) in [
            ("name = \"Hello\"\nroutes = [\"/a\"]\n", "name", "\"Hello\""),
            (
                "name = \"a\"\nroutes = [\"/a\", \"/b/*\"]\n",
                "routes",
                "\"/b/*\"",
            ),
            (
                "name = \"a\"\nroutes = [\"/a\", \"/b\", \"/a\"]\n",
                "routes",
                "\"/a\"",
            ),
            ("name = \"a\"\nroutes = []\n", "routes", "[]"),
            (
                "name = \"a\"\nroutes = [\"/a\"]\n[limits]\nmemory_mb = 0\n",
                "limits.memory_mb",
                "0",
            ),
            (
                "name = \"a\"\nroutes = [\"/a\"]\n[limits]\nburst = 3\n",
                "limits.burst",
                "3",
            ),
            (
                "name = \"a\"\nroutes = [\"/a\"]\nversion = 0\n",
                "version",
                "0",
            ),
            (
                "name = \"a\"\nroutes = [\"/a\"]\n[layers]\n\"zerofn:greet/greeter\" = \"sha256:00\"\n",
                "layers.zerofn:greet/greeter",
                "\"sha256:00\"",
            ),
            (
                "name = \"a\"\nroutes = [\"/a\"]\n[egress]\nallow = [\"https://ok.test\", \"ftp://x.test\"]\n",
                "egress.allow",
                "\"ftp://x.test\"",
            ),
        ] {
            let text = format!("{HEAD}{body}");
            let e = Manifest::from_toml(&text).expect_err(&text);
            assert_eq!(e.key_path().as_deref(), Some(key), "{e}");
            let span = e.span_in(&text).unwrap_or_else(|| panic!("no span: {e}"));
            assert_eq!(&text[span.clone()], at, "{e}");
            if body.contains("\"/b\", \"/a\"") {
                // A duplicate: the second one written.
                assert!(span.start > text.find("\"/a\"").unwrap_or(0), "{e}");
            }
        }
    }

    #[test]
    fn toml_errors_keep_their_own_span_and_no_key() {
        let text = format!("{HEAD}name = \"a\"\nroutes = [\"/a\"]\ncolour = 1\n");
        let e = Manifest::from_toml(&text).unwrap_err();
        assert_eq!(e.key_path(), None);
        assert_eq!(e.span_in(&text).map(|s| &text[s]), Some("colour"));
    }
}
