//! Errors in the TOML files the CLI reads (a function's `zerofn.toml`, a zone document, the
//! files of a configuration directory) as a reader wants them, the way rustc shows them: a
//! header naming the file and the problem, the line with the key or value at fault
//! underlined, its line and column, and a `help:` line (for a misspelt key, the key that
//! was probably meant, as clap does for flags). miette draws it ([`render`]); with
//! `--json` it is an object with the file, line and column instead ([`FileDiagnostic::to_json`]).
//!
//! The libraries say where (`toml`'s span for what the deserialiser refused,
//! `ManifestError::span_in` / `ZoneError::span_in` for what their checks refused, a span in
//! `ConfigError::Invalid`); everything about terminals is here.
//!
//! # Trust
//! The files are untrusted: before miette quotes them, control and bidirectional-format
//! characters are replaced by `?` of the same byte length (so spans still fit), and a line
//! too long to read is not quoted at all. Messages quoting the file were escaped by the
//! library that made them.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use zerofn_admission::{Manifest, ManifestError};
use zerofn_manifest::zone::{Zone, ZoneError};

/// Longest source line quoted; a longer one (minified, hostile) is left out.
const MAX_QUOTED_LINE_CHARS: usize = 240;
/// Longest message of the TOML parser kept (it may quote the file).
const MAX_MESSAGE_CHARS: usize = 400;

/// Reads `text` (the manifest at `path`) as a manifest; a refusal is a [`FileDiagnostic`]
/// pointing into the file.
pub fn parse_manifest(path: &Path, text: &str) -> anyhow::Result<Manifest> {
    Manifest::from_toml(text)
        .map_err(|e| anyhow::Error::new(manifest_diagnostic(&path.display().to_string(), text, &e)))
}

/// Reads `text` (the zone document at `path`); a refusal is a [`FileDiagnostic`].
pub fn parse_zone(path: &Path, text: &str) -> anyhow::Result<Zone> {
    Zone::from_toml(text).map_err(|e| {
        let file = path.display().to_string();
        let d = match &e {
            ZoneError::Toml(toml) => FileDiagnostic::from_toml(Kind::Zone, &file, text, toml),
            other => FileDiagnostic::new(
                Kind::Zone,
                &file,
                text,
                other.span_in(text),
                &other.to_string(),
                other.key_path().map(str::to_owned),
            ),
        };
        anyhow::Error::new(d)
    })
}

/// The diagnostic of a manifest refusal (`file` is the name shown).
pub fn manifest_diagnostic(file: &str, text: &str, error: &ManifestError) -> FileDiagnostic {
    match error {
        ManifestError::Toml(toml) => FileDiagnostic::from_toml(Kind::Manifest, file, text, toml),
        other => FileDiagnostic::new(
            Kind::Manifest,
            file,
            text,
            other.span_in(text),
            &other.to_string(),
            other.key_path(),
        ),
    }
}

/// The diagnostic of a configuration directory refusal, when it is about a place in one of
/// its files (`dir` is the directory as given; `text_of` reads a file of it).
pub fn config_diagnostic<'t>(
    dir: &Path,
    error: &zerofn_config::ConfigError,
    text_of: impl Fn(&str) -> Option<&'t str>,
) -> Option<FileDiagnostic> {
    let zerofn_config::ConfigError::Invalid {
        file,
        span,
        problem,
        ..
    } = error
    else {
        return None;
    };
    let text = text_of(file)?;
    let shown = dir.join(file).display().to_string();
    if file.ends_with("zerofn.toml") {
        // A function's manifest: the manifest's own diagnostic, which knows its keys.
        if let Err(e) = Manifest::from_toml(text) {
            return Some(manifest_diagnostic(&shown, text, &e));
        }
    }
    // Without a place, the library's one-line message (which has the line, if known) is
    // all there is to say.
    let span = span.clone()?;
    let mut d = FileDiagnostic::new(Kind::ConfigFile, &shown, text, Some(span), problem, None);
    d.read_serde_message(problem);
    Some(d)
}

/// What kind of file, for the header.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Manifest,
    Zone,
    ConfigFile,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Manifest => "manifest",
            Kind::Zone => "zone document",
            Kind::ConfigFile => "configuration file",
        }
    }
}

/// A problem at a place in a TOML file.
#[derive(Debug)]
pub struct FileDiagnostic {
    kind: Kind,
    /// The file as the user named it.
    file: String,
    /// What is wrong (`unknown key `rotue``), without the advice.
    problem: String,
    /// What to do: the key meant, the keys allowed, the rule to follow.
    help: Option<String>,
    /// The dotted key at fault, when known.
    key: Option<String>,
    /// Byte range of the key or value at fault, when known.
    span: Option<Range<usize>>,
    /// 1-based line and column (in characters) of the span's start.
    position: Option<(usize, usize)>,
    /// The label under the span.
    label: Option<&'static str>,
    /// The file, made safe to print, when the span is known and its line short enough.
    source: Option<NamedSource<String>>,
}

impl FileDiagnostic {
    /// From a TOML deserialiser error: the span it carries, and for an unknown key the key
    /// meant or the keys allowed.
    fn from_toml(kind: Kind, file: &str, text: &str, error: &toml::de::Error) -> Self {
        let message = zerofn_types::sanitize_message(error.message().trim(), MAX_MESSAGE_CHARS);
        let mut d = Self::new(kind, file, text, error.span(), &message, None);
        // The parser's message is not "problem; advice" (it may quote a `;`): whole.
        d.problem.clone_from(&message);
        d.help = None;
        d.read_serde_message(&message);
        d
    }

    /// Words serde's messages in the file's terms: an unknown or missing field is a key,
    /// and an unknown one gets the key meant, or the keys allowed.
    fn read_serde_message(&mut self, message: &str) {
        if let Some(unknown) = UnknownKey::parse(message) {
            self.problem = format!("unknown key `{}`", unknown.key);
            self.help = Some(unknown.help());
            self.label = Some("unknown key");
        } else if let Some(rest) = message.strip_prefix("missing field ") {
            self.problem = format!("missing key {rest}");
        } else if let Some((found, expected)) = message
            .strip_prefix("invalid type: ")
            .and_then(|m| m.split_once(", expected "))
        {
            // serde names Rust types (`expected u32`); the file has TOML's.
            let expected = toml_type(expected);
            self.problem = format!("wrong type: found {found}, expected {expected}");
            self.label = Some("wrong type");
        }
    }

    /// `message` is the library's: "problem; what to do" becomes problem and help.
    fn new(
        kind: Kind,
        file: &str,
        text: &str,
        span: Option<Range<usize>>,
        message: &str,
        key: Option<String>,
    ) -> Self {
        let (problem, help) = split_advice(message);
        let span = span.filter(|s| s.start <= s.end && s.end <= text.len());
        let position = span.as_ref().map(|s| line_column(text, s.start));
        let source = span
            .as_ref()
            .filter(|s| quotable(text, s.start))
            .map(|_| NamedSource::new(file, printable_source(text)));
        Self {
            kind,
            file: file.to_owned(),
            problem: problem.to_owned(),
            help: help.map(str::to_owned),
            key,
            span,
            position,
            label: None,
            source,
        }
    }

    /// The error as one JSON object, the control API's error shape with the place added:
    /// `{"error": {"kind": "invalid_file", "message", "file", "line", "column", "key", "help"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut error = serde_json::json!({
            "kind": "invalid_file",
            "message": self.to_string(),
            "file": self.file,
            "problem": self.problem,
        });
        let fields = [
            ("line", self.position.map(|(l, _)| l.into())),
            ("column", self.position.map(|(_, c)| c.into())),
            ("key", self.key.clone().map(Into::into)),
            ("help", self.help.clone().map(Into::into)),
        ];
        if let Some(map) = error.as_object_mut() {
            for (name, value) in fields {
                if let Some(value) = value {
                    map.insert(name.to_owned(), value);
                }
            }
        }
        serde_json::json!({ "error": error })
    }
}

impl fmt::Display for FileDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} `{}`", self.kind.noun(), self.file)?;
        // Without a quoted excerpt, miette shows no place: the header says it.
        if let (None, Some((line, column))) = (&self.source, self.position) {
            write!(f, " (line {line}, column {column})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for FileDiagnostic {}

impl Diagnostic for FileDiagnostic {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.source.as_ref()?;
        let span = self.span.clone()?;
        let label = LabeledSpan::new_with_span(self.label.map(str::to_owned), span);
        Some(Box::new(std::iter::once(label)))
    }
}

/// The several-line form of `d`: ANSI colours only when `colour` (a terminal, and no
/// `NO_COLOR`), plain ASCII otherwise, so logs and tests read it as it is. Like the CLI's
/// other errors, it starts with `error: `.
pub fn render(d: &FileDiagnostic, colour: bool) -> String {
    let mut theme = if colour {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::none()
    };
    theme.characters.error = "error:".to_owned();
    // Not wrapped: a line per header and help, whatever the file's path, for grep.
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_wrap_lines(false)
        .with_links(false);
    let mut out = String::new();
    if handler.render_report(&mut out, d).is_err() {
        // The span did not fit the source after all: the one-line form, with the place.
        return match d.position {
            Some((line, column)) if d.source.is_some() => {
                format!("error: {d} (line {line}, column {column})")
            }
            _ => format!("error: {d}"),
        };
    }
    // miette indents the header by two; the CLI's errors start at the margin.
    let out = out.strip_prefix("  ").unwrap_or(&out);
    out.trim_end().to_owned()
}

/// Whether standard error should get colours: a terminal, and `NO_COLOR` unset or empty
/// (https://no-color.org), and not a dumb terminal.
pub fn stderr_wants_colour() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// An unknown-key message of serde (`unknown field `KEY`, expected one of `A`, `B``), read
/// back into its parts: toml 0.8's error keeps only the text, so the expected keys are
/// taken from it (serde's format: "expected `A`", "expected `A` or `B`", "expected one of
/// `A`, `B`, `C`", or "there are no fields").
#[derive(Debug, PartialEq)]
struct UnknownKey {
    key: String,
    expected: Vec<String>,
}

impl UnknownKey {
    fn parse(message: &str) -> Option<Self> {
        let rest = message.strip_prefix("unknown field `")?;
        let (key, rest) = rest.split_once('`')?;
        let expected = match rest.strip_prefix(", expected ") {
            Some(list) => list
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect(),
            None => Vec::new(),
        };
        Some(Self {
            key: key.to_owned(),
            expected,
        })
    }

    fn help(&self) -> String {
        if let Some(meant) = closest(&self.key, self.expected.iter().map(String::as_str)) {
            return format!("did you mean `{meant}`?");
        }
        match self.expected.as_slice() {
            [] => "this table takes no keys; remove it".to_owned(),
            keys => format!(
                "the keys allowed here are {}",
                keys.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The candidate most like `key`, if one is alike enough: at most a third of its letters
/// edited (Damerau-Levenshtein: a swap of two letters is one edit), and at least one
/// letter kept; ties go to the first listed. `rotue` finds `route`; `colour` finds nothing
/// among the manifest's keys.
fn closest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let key_lower = key.to_lowercase();
    let allowed = (key.chars().count() / 3).max(1);
    candidates
        .map(|c| {
            (
                strsim::damerau_levenshtein(&key_lower, &c.to_lowercase()),
                c,
            )
        })
        .filter(|(distance, c)| *distance <= allowed && *distance < c.chars().count())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// A type serde names as TOML calls it (`u32` is an integer); others as serde says.
fn toml_type(serde_type: &str) -> &str {
    match serde_type {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64" | "i128"
        | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "a boolean (`true` or `false`)",
        "a sequence" => "an array",
        "a map" => "a table",
        other => other,
    }
}

/// "problem; advice" split at the first `; ` outside backticks (the style of the
/// libraries' messages), so the advice becomes the `help:` line.
fn split_advice(message: &str) -> (&str, Option<&str>) {
    let mut quoted = false;
    for (i, c) in message.char_indices() {
        match c {
            '`' => quoted = !quoted,
            ';' if !quoted && message.get(i + 1..).is_some_and(|r| r.starts_with(' ')) => {
                let (problem, advice) = (message.get(..i), message.get(i + 2..));
                if let (Some(problem), Some(advice)) = (problem, advice) {
                    return (problem, Some(advice.trim()).filter(|a| !a.is_empty()));
                }
            }
            _ => {}
        }
    }
    (message, None)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// Whether the line holding byte `offset` is short enough to quote.
fn quotable(text: &str, offset: usize) -> bool {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    text.get(start..)
        .and_then(|rest| rest.lines().next())
        .is_some_and(|line| line.chars().count() <= MAX_QUOTED_LINE_CHARS)
}

/// `text` with every character a terminal could act on (controls other than newline and
/// tab, bidirectional overrides and isolates) replaced by `?`s of the same byte length,
/// so the spans found in the original still fit.
fn printable_source(text: &str) -> String {
    text.chars()
        .map(|c| {
            let unsafe_char = (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if unsafe_char {
                "?".repeat(c.len_utf8())
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn diagnose(text: &str) -> FileDiagnostic {
        let err = parse_manifest(Path::new("f/zerofn.toml"), text).unwrap_err();
        err.downcast::<FileDiagnostic>().unwrap()
    }

    const HEAD: &str = "name = \"a\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\n";

    #[test]
    fn closest_finds_a_misspelling_and_nothing_far() {
        let keys = ["name", "tenant", "component", "routes", "limits", "version"];
        for (typed, meant) in [
            ("rotues", Some("routes")),
            ("route", Some("routes")),
            ("Routes", Some("routes")),
            ("limit", Some("limits")),
            ("compnent", Some("component")),
            ("verison", Some("version")),
            ("colour", None),
            ("xyzzy", None),
            ("n", None),
            ("", None),
        ] {
            assert_eq!(closest(typed, keys.into_iter()), meant, "{typed}");
        }
    }

    #[test]
    fn serde_unknown_field_messages_are_read_back() {
        assert_eq!(
            UnknownKey::parse("unknown field `rotue`, expected one of `name`, `routes`"),
            Some(UnknownKey {
                key: "rotue".into(),
                expected: vec!["name".into(), "routes".into()]
            })
        );
        assert_eq!(
            UnknownKey::parse("unknown field `x`, expected `a` or `b`")
                .unwrap()
                .expected,
            ["a", "b"]
        );
        let none = UnknownKey::parse("unknown field `admin`, there are no fields").unwrap();
        assert!(none.expected.is_empty());
        assert_eq!(none.help(), "this table takes no keys; remove it");
        assert_eq!(UnknownKey::parse("missing field `name`"), None);
    }

    #[test]
    fn spans_become_lines_and_columns_in_characters() {
        let text = "a = 1\nbé = \"x\"\n\nz";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        // Byte 9 follows `b` and the two-byte `é`: the third character of the line.
        assert_eq!(line_column(text, 9), (2, 3));
        assert_eq!(line_column(text, 16), (3, 1));
        assert_eq!(line_column(text, 17), (4, 1));
        // Past the end: the end.
        assert_eq!(line_column(text, 1000), (4, 2));
    }

    #[test]
    fn a_type_error_names_the_toml_type_expected() {
        let text = format!("{HEAD}routes = [\"/a\"]\n[limits]\nmemory_mb = \"lots\"\n");
        let d = diagnose(&text);
        assert_eq!(
            d.problem,
            "wrong type: found string \"lots\", expected an integer"
        );
        assert_eq!(&text[d.span.clone().unwrap()], "\"lots\"");
        assert_eq!(toml_type("a string"), "a string");
    }

    #[test]
    fn advice_after_a_semicolon_outside_backticks_is_help() {
        assert_eq!(
            split_advice("`a` = 0 is out of range; use a value from 1 to 9"),
            ("`a` = 0 is out of range", Some("use a value from 1 to 9"))
        );
        assert_eq!(
            split_advice("route `/a; b` is bad"),
            ("route `/a; b` is bad", None)
        );
        assert_eq!(split_advice("no advice"), ("no advice", None));
    }

    #[test]
    fn a_misspelt_key_gets_the_key_meant_and_its_place() {
        let d = diagnose(&format!("{HEAD}rotues = [\"/a\"]\n"));
        assert_eq!(d.problem, "unknown key `rotues`");
        assert_eq!(d.help.as_deref(), Some("did you mean `routes`?"));
        assert_eq!(d.position, Some((4, 1)));
        let json = d.to_json();
        assert_eq!(json["error"]["line"], 4);
        assert_eq!(json["error"]["column"], 1);
        assert_eq!(json["error"]["file"], "f/zerofn.toml");
        let rendered = render(&d, false);
        assert!(
            rendered.starts_with("error: invalid manifest `f/zerofn.toml`: unknown key `rotues`\n"),
            "{rendered}"
        );
        assert!(rendered.contains("[f/zerofn.toml:4:1]"), "{rendered}");
        assert!(rendered.contains(" 4 | rotues = [\"/a\"]\n"), "{rendered}");
        assert!(
            rendered.contains("help: did you mean `routes`?"),
            "{rendered}"
        );
        assert!(!rendered.contains('\x1b'), "{rendered}");
    }

    #[test]
    fn nested_keys_are_suggested_from_their_own_table() {
        let d = diagnose(&format!(
            "{HEAD}routes = [\"/a\"]\n[limits]\n  memory_mbb = 64\n"
        ));
        assert_eq!(d.help.as_deref(), Some("did you mean `memory_mb`?"));
        assert_eq!(d.position, Some((6, 3)));
    }

    #[test]
    fn a_key_like_none_lists_the_keys_allowed() {
        let d = diagnose(&format!("{HEAD}routes = [\"/a\"]\nxyzzy = 1\n"));
        let help = d.help.unwrap();
        assert!(
            help.starts_with("the keys allowed here are `name`, `tenant`"),
            "{help}"
        );
    }

    #[test]
    fn values_refused_after_parsing_are_pointed_at() {
        let text = format!("{HEAD}routes = [\"/a\", \"/api/*\"]\n");
        let d = diagnose(&text);
        let span = d.span.clone().unwrap();
        assert_eq!(&text[span], "\"/api/*\"");
        assert_eq!(d.position, Some((4, 17)));
        assert_eq!(d.key.as_deref(), Some("routes"));
        let text = format!("{HEAD}routes = [\"/a\"]\n[limits]\nmemory_mb = 0\n");
        let d = diagnose(&text);
        assert_eq!(&text[d.span.clone().unwrap()], "0");
        assert_eq!(d.help.as_deref(), Some("use a value from 1 to 4096"));
        assert_eq!(d.key.as_deref(), Some("limits.memory_mb"));
    }

    #[test]
    fn hostile_text_is_not_sent_to_the_terminal() {
        let d = diagnose("name = \"a\x1b[31m\u{202e}\nroutes = [");
        assert_eq!(d.position.map(|p| p.0), Some(1));
        let rendered = render(&d, false);
        assert!(!rendered.contains('\x1b'), "{rendered}");
        assert!(!rendered.contains('\u{202e}'), "{rendered}");
        let long = format!("name = \"{}", "x".repeat(10_000));
        let rendered = render(&diagnose(&long), false);
        assert!(rendered.len() < 600, "{rendered}");
        assert!(rendered.contains("(line 1, column "), "{rendered}");
    }

    #[test]
    fn colour_is_only_added_when_asked() {
        let d = diagnose(&format!("{HEAD}rotues = [\"/a\"]\n"));
        assert!(render(&d, true).contains('\x1b'));
        assert!(!render(&d, false).contains('\x1b'));
    }
}
