//! Manifest errors as a reader wants them: the file, line and column, the
//! line itself with the offending part marked, and for a misspelt key the
//! key that was probably meant (did-you-mean, as clap does for flags).
//!
//! Only TOML errors (syntax, unknown, missing or mistyped keys) carry a
//! position; the manifest crate's other errors already name their key and
//! keep their wording. On a terminal the diagnostic takes several lines
//! (`render`); elsewhere, in logs and tests, it is one line (`Display`).
//! The manifest's text is untrusted: the quoted line is escaped and cut.

use std::fmt;
use std::path::Path;

use zerofn_admission::{Manifest, ManifestError};

/// Longest part of the offending line quoted.
const MAX_SNIPPET_CHARS: usize = 120;
/// Longest message of the TOML parser kept (it may quote the manifest).
const MAX_MESSAGE_CHARS: usize = 400;

/// Reads `text` (the manifest at `path`) as a manifest, with a positioned
/// diagnostic when the TOML does not fit.
pub fn parse_manifest(path: &Path, text: &str) -> anyhow::Result<Manifest> {
    Manifest::from_toml(text).map_err(|e| match e {
        ManifestError::Toml(toml) => anyhow::Error::new(ManifestDiagnostic::new(path, text, &toml)),
        other => {
            anyhow::Error::new(other).context(format!("invalid manifest `{}`", path.display()))
        }
    })
}

/// The several-line form of `error`, when it is a manifest diagnostic and
/// standard error is a terminal.
pub fn render_for_terminal(error: &anyhow::Error) -> Option<String> {
    use std::io::IsTerminal as _;
    let diagnostic = error.downcast_ref::<ManifestDiagnostic>()?;
    std::io::stderr().is_terminal().then(|| diagnostic.render())
}

/// A TOML error at a place in a manifest.
#[derive(Debug)]
pub struct ManifestDiagnostic {
    path: String,
    /// 1-based line and column (in characters) of the error, if known.
    position: Option<(usize, usize)>,
    /// The offending line (escaped, shortened) and how many characters to mark.
    snippet: Option<(String, usize)>,
    /// What is wrong, without the list of expected keys.
    message: String,
    /// The key probably meant.
    suggestion: Option<String>,
    /// The keys allowed at that place, as toml lists them.
    expected: Option<String>,
}

impl ManifestDiagnostic {
    pub fn new(path: &Path, text: &str, error: &toml::de::Error) -> Self {
        let full = zerofn_types::sanitize_message(error.message().trim(), MAX_MESSAGE_CHARS);
        let (message, expected) = match full.split_once(", expected one of ") {
            Some((message, expected)) => (message.to_owned(), Some(expected.to_owned())),
            None => (full, None),
        };
        let suggestion = unknown_key(&message)
            .zip(expected.as_deref())
            .and_then(|(key, expected)| closest(key, expected));
        let (position, snippet) = match error.span() {
            Some(span) => {
                let (line, column, line_text) = locate(text, span.start);
                let marked = text
                    .get(span.clone())
                    .map_or(1, |s| s.lines().next().unwrap_or("").chars().count())
                    .max(1);
                (
                    Some((line, column)),
                    Some((zerofn_types::quote(line_text, MAX_SNIPPET_CHARS), marked)),
                )
            }
            None => (None, None),
        };
        Self {
            path: path.display().to_string(),
            position,
            snippet,
            message,
            suggestion,
            expected,
        }
    }

    /// Several lines, for a terminal (no trailing newline).
    pub fn render(&self) -> String {
        let mut out = format!("error: invalid manifest `{}`: {}", self.path, self.message);
        if let Some((line, column)) = self.position {
            let width = line.to_string().len();
            let pad = " ".repeat(width);
            out.push_str(&format!("\n{pad}--> {}:{line}:{column}", self.path));
            if let Some((snippet, marked)) = &self.snippet {
                let caret_pad = " ".repeat(column.saturating_sub(1));
                out.push_str(&format!(
                    "\n{pad} |\n{line} | {snippet}\n{pad} | {caret_pad}{} {}",
                    "^".repeat(*marked),
                    self.message
                ));
            }
            if let Some(suggestion) = &self.suggestion {
                out.push_str(&format!("\n{pad} = help: did you mean `{suggestion}`?"));
            }
            if let Some(expected) = &self.expected {
                out.push_str(&format!("\n{pad} = note: expected one of {expected}"));
            }
        }
        out
    }
}

impl fmt::Display for ManifestDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid manifest `{}`: ", self.path)?;
        if let Some((line, column)) = self.position {
            write!(f, "{}:{line}:{column}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(suggestion) = &self.suggestion {
            write!(f, "; did you mean `{suggestion}`?")?;
        }
        if let Some(expected) = &self.expected {
            write!(f, " (expected one of {expected})")?;
        }
        if let (Some((line, _)), Some((snippet, _))) = (self.position, &self.snippet) {
            write!(f, " in line {line}: `{snippet}`")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestDiagnostic {}

/// The key of toml's "unknown field `KEY`".
fn unknown_key(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.strip_suffix('`')
}

/// The expected key most like `key`, if one is alike enough (the Jaro
/// similarity above 0.7 that clap uses for misspelt flags).
fn closest(key: &str, expected: &str) -> Option<String> {
    expected
        .split(", ")
        .filter_map(|k| k.strip_prefix('`')?.strip_suffix('`'))
        .map(|k| (strsim::jaro(key, k), k))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.to_owned())
}

/// 1-based line and column (in characters) of byte `offset`, and that line.
fn locate(text: &str, offset: usize) -> (usize, usize, &str) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text.get(start..offset).map_or(0, |s| s.chars().count()) + 1;
    let line_text = text
        .get(start..)
        .and_then(|rest| rest.lines().next())
        .unwrap_or("");
    (line, column, line_text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn diagnose(text: &str) -> ManifestDiagnostic {
        let err = parse_manifest(Path::new("f/zerofn.toml"), text).unwrap_err();
        err.downcast::<ManifestDiagnostic>().unwrap()
    }

    const HEAD: &str = "name = \"a\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\n";

    #[test]
    fn a_misspelt_key_gets_the_key_meant_and_its_place() {
        let d = diagnose(&format!("{HEAD}rotues = [\"/a\"]\n"));
        assert_eq!(d.suggestion.as_deref(), Some("routes"));
        assert_eq!(d.position, Some((4, 1)));
        let text = d.to_string();
        assert!(
            text.starts_with("invalid manifest `f/zerofn.toml`: f/zerofn.toml:4:1: unknown field `rotues`; did you mean `routes`? (expected one of `name`"),
            "{text}"
        );
        assert!(text.ends_with(" in line 4: `rotues = [\"/a\"]`"), "{text}");
        let rendered = d.render();
        assert!(
            rendered.contains("\n --> f/zerofn.toml:4:1\n"),
            "{rendered}"
        );
        assert!(
            rendered.contains("\n4 | rotues = [\"/a\"]\n  | ^^^^^^ unknown field `rotues`\n"),
            "{rendered}"
        );
        assert!(
            rendered.contains("= help: did you mean `routes`?"),
            "{rendered}"
        );
    }

    #[test]
    fn nested_keys_are_suggested_from_their_own_table() {
        let d = diagnose(&format!(
            "{HEAD}routes = [\"/a\"]\n[limits]\n  memory_mbb = 64\n"
        ));
        assert_eq!(d.suggestion.as_deref(), Some("memory_mb"));
        assert_eq!(d.position, Some((6, 3)));
    }

    #[test]
    fn a_key_like_none_gets_no_suggestion() {
        let d = diagnose(&format!("{HEAD}routes = [\"/a\"]\nxyzzy = 1\n"));
        assert_eq!(d.suggestion, None);
        assert!(d.expected.is_some());
    }

    #[test]
    fn syntax_errors_are_placed_and_hostile_lines_escaped() {
        let d = diagnose("name = \"a\x1b[31m\nroutes = [");
        assert_eq!(d.position.map(|p| p.0), Some(1));
        assert!(!d.to_string().contains('\x1b'), "{d}");
        assert!(!d.render().contains('\x1b'));
        let long = format!("name = \"{}", "x".repeat(10_000));
        assert!(diagnose(&long).to_string().len() < 600);
    }

    #[test]
    fn other_manifest_errors_keep_their_wording() {
        let err = parse_manifest(Path::new("f/zerofn.toml"), &format!("{HEAD}routes = []\n"))
            .unwrap_err();
        assert!(err.downcast_ref::<ManifestDiagnostic>().is_none());
        assert!(format!("{err:#}").starts_with("invalid manifest `f/zerofn.toml`: "));
    }
}
