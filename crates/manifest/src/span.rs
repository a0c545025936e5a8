//! Where in a TOML document an error is: the byte range of the key or value at fault, for
//! messages that point at it (the CLI underlines it).
//!
//! Errors of the deserialiser carry their span already (`toml::de::Error::span`); the checks
//! that run after it work on plain values, so they name the key path (and often the entry)
//! instead, and [`locate`] finds that key again in the text with `toml_edit`'s spans. The
//! text is re-read only on this error path, never to accept a document. A span found here
//! is a hint for a reader: when the key cannot be found (the document does not parse, a key
//! was written in a way not searched), the answer is `None` and the message still names the
//! key.
//!
//! # Trust
//! Trusts nothing in the text; never panics on it.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Value};

/// The byte range in `text` of the value at `key_path` (keys joined by `.`), or of the
/// entry inside it (a string in an array or table, or a key of a table) whose escaped form
/// is `entry`; `None` when it cannot be found.
pub fn locate(text: &str, key_path: &str, entry: Option<&str>) -> Option<Range<usize>> {
    let doc = ImDocument::parse(text).ok()?;
    let mut item = doc.as_item();
    let mut key_span = None;
    for key in key_path.split('.') {
        let (k, next) = item.as_table_like()?.get_key_value(key)?;
        key_span = k.span();
        item = next;
    }
    if let Some(entry) = entry {
        if let Some(span) = find_entry(item, entry, 0) {
            return Some(span);
        }
    }
    // A `[table]` has no value span of its own: point at its header's key.
    item.span().filter(|_| !item.is_table()).or(key_span)
}

/// The span of the last string in the array at `key_path` whose escaped form is `entry`
/// (a duplicate: the second one written is the one to remove).
pub fn locate_last(text: &str, key_path: &str, entry: &str) -> Option<Range<usize>> {
    let doc = ImDocument::parse(text).ok()?;
    let mut item = doc.as_item();
    for key in key_path.split('.') {
        item = item.as_table_like()?.get(key)?;
    }
    item.as_array()?
        .iter()
        .filter(|v| {
            v.as_str()
                .is_some_and(|s| s == entry || zerofn_types::excerpt(s) == entry)
        })
        .last()
        .and_then(Value::span)
}

/// How deep [`find_entry`] looks (manifest values are shallow; a hostile one is not read
/// further).
const MAX_DEPTH: usize = 8;

/// The span of the first string (or table key) under `item` whose escaped form is `entry`.
fn find_entry(item: &Item, entry: &str, depth: usize) -> Option<Range<usize>> {
    if depth > MAX_DEPTH {
        return None;
    }
    let matches = |s: &str| s == entry || zerofn_types::excerpt(s) == entry;
    if let Some(table) = item.as_table_like() {
        return table.iter().find_map(|(key, child)| {
            if matches(key) {
                table.get_key_value(key).and_then(|(k, _)| k.span())
            } else {
                find_entry(child, entry, depth + 1)
            }
        });
    }
    match item {
        Item::Value(Value::String(s)) if matches(s.value()) => item.span(),
        Item::Value(Value::Array(array)) => array
            .iter()
            .find_map(|v| find_entry(&Item::Value(v.clone()), entry, depth + 1)),
        Item::ArrayOfTables(tables) => tables
            .iter()
            .find_map(|t| find_entry(&Item::Table(t.clone()), entry, depth + 1)),
        _ => None,
    }
}

/// The text between the first pair of backticks in `message` (the entry a message names).
pub(crate) fn first_quoted(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once('`')?;
    rest.split_once('`').map(|(quoted, _)| quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name = \"a\"\nroutes = [\"/a\", \"/b/*\"]\n[limits]\nmemory_mb = 0\n\
                        [egress]\nallow = [{ url = \"https://x.test\" }, \"http://*.com\"]\n";

    fn at(text: &str, span: Option<Range<usize>>) -> Option<&str> {
        span.and_then(|s| text.get(s))
    }

    #[test]
    fn keys_values_and_entries_are_found() {
        assert_eq!(at(TEXT, locate(TEXT, "name", None)), Some("\"a\""));
        assert_eq!(at(TEXT, locate(TEXT, "limits.memory_mb", None)), Some("0"));
        assert_eq!(
            at(TEXT, locate(TEXT, "routes", Some("/b/*"))),
            Some("\"/b/*\"")
        );
        assert_eq!(
            at(TEXT, locate(TEXT, "egress", Some("http://*.com"))),
            Some("\"http://*.com\"")
        );
        assert_eq!(
            at(TEXT, locate(TEXT, "egress", Some("https://x.test"))),
            Some("\"https://x.test\"")
        );
        // An entry not there: the value as a whole; a table: its header key.
        assert_eq!(
            at(TEXT, locate(TEXT, "routes", Some("/c"))),
            Some("[\"/a\", \"/b/*\"]")
        );
        assert_eq!(at(TEXT, locate(TEXT, "limits", None)), Some("limits"));
    }

    #[test]
    fn what_cannot_be_found_is_none() {
        assert_eq!(locate(TEXT, "nosuch", None), None);
        assert_eq!(locate(TEXT, "name.deeper", None), None);
        assert_eq!(locate("name = ", "name", None), None);
    }

    #[test]
    fn the_first_quoted_part_of_a_message_is_its_entry() {
        assert_eq!(first_quoted("route `/a/*` is invalid"), Some("/a/*"));
        assert_eq!(first_quoted("no quote"), None);
        assert_eq!(first_quoted("one ` only"), None);
    }
}
