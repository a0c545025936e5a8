//! JSON canonicalization per RFC 8785 (JCS): the exact bytes a record's
//! Merkle leaf is made of, so a verifier holding the record's JSON can
//! rebuild them with any JCS implementation.
//!
//! - Object members sorted by their names as UTF-16 code units (RFC 8785
//!   §3.2.3), no whitespace anywhere.
//! - Strings (§3.2.2.2): `"` and `\` escaped, U+0008/0009/000A/000C/000D as
//!   `\b \t \n \f \r`, every other control character below U+0020 as
//!   `\u00xx` (lowercase hex); everything else as its UTF-8 bytes.
//! - Numbers (§3.2.2.3): the ECMAScript `Number.prototype.toString` of the
//!   IEEE 754 double. Integers of magnitude up to 2^53 print as themselves;
//!   larger ones and fractions go through the double, as ECMAScript would.
//!
//! The input is a `serde_json::Value`; this crate turns on serde_json's
//! `float_roundtrip`, so a fractional number parses to the double nearest
//! to it, as RFC 8785 assumes.

use serde_json::Value;

/// `value` canonicalized per RFC 8785, appended to `out`.
pub fn canonicalize_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => number(n, out),
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonicalize_into(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            sort_members(&mut members);
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(k, out);
                out.push(b':');
                canonicalize_into(v, out);
            }
            out.push(b'}');
        }
    }
}

/// Sort an object's members in RFC 8785 §3.2.3's order of their names: by
/// UTF-16 code units.
///
/// UTF-8 bytes compare in code point order, which is UTF-16's order except
/// where the first code points that differ are one in U+E000..=U+FFFF and one
/// above U+FFFF (a surrogate pair, 0xD800.., sorts below 0xE000 in UTF-16).
/// An object whose names are all ASCII, as the platform's own always are,
/// cannot meet that case: its names are sorted as bytes, without a UTF-16
/// walk of two names for each of the sort's comparisons. (A JSON object's
/// names are distinct, so the unstable sort's order is the only one.)
fn sort_members<V>(members: &mut [(&String, V)]) {
    if members.iter().all(|(k, _)| k.is_ascii()) {
        members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    } else {
        members.sort_unstable_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    }
}

/// `value` canonicalized per RFC 8785.
pub fn canonicalize(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    canonicalize_into(value, &mut out);
    out
}

/// Largest integer every double represents exactly (2^53).
const EXACT: u64 = 1 << 53;

pub(crate) fn number(n: &serde_json::Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64().filter(|u| *u <= EXACT) {
        out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
    } else if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= EXACT) {
        out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
    } else if let Some(f) = n.as_f64() {
        out.extend_from_slice(es_number(f).as_bytes());
    } else {
        // serde_json numbers are always one of the above; a finite value
        // is all JSON can hold.
        out.push(b'0');
    }
}

/// ECMAScript `Number::toString(x)` (ECMA-262 §6.1.6.1.20) for a finite
/// double: the shortest digits that round-trip, placed by the exponent.
pub(crate) fn es_number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        // -0 prints as 0; JSON cannot hold NaN or infinities.
        return "0".to_owned();
    }
    // Rust's `{:e}` prints the shortest round-tripping digits, as
    // ECMAScript requires: `d[.ddd]e[-]x`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i64 = exp.parse().unwrap_or(0);
    let k = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    // ECMAScript's n: the decimal point sits after n digits.
    let n = exp.saturating_add(1);
    let mut s = String::new();
    if x < 0.0 {
        s.push('-');
    }
    let zeros = |count: i64| "0".repeat(usize::try_from(count).unwrap_or(0));
    if k <= n && n <= 21 {
        s.push_str(&digits);
        s.push_str(&zeros(n - k));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(usize::try_from(n).unwrap_or(0).min(digits.len()));
        s.push_str(int);
        s.push('.');
        s.push_str(frac);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        s.push_str(&zeros(-n));
        s.push_str(&digits);
    } else {
        let mut chars = digits.chars();
        if let Some(first) = chars.next() {
            s.push(first);
        }
        let rest: String = chars.collect();
        if !rest.is_empty() {
            s.push('.');
            s.push_str(&rest);
        }
        s.push('e');
        s.push(if n - 1 < 0 { '-' } else { '+' });
        s.push_str(&(n - 1).unsigned_abs().to_string());
    }
    s
}

pub(crate) fn string(s: &str, out: &mut Vec<u8>) {
    out.reserve(s.len().saturating_add(2));
    out.push(b'"');
    let bytes = s.as_bytes();
    // Bytes before `start` are written out; `i` is where the scan is.
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i..i.saturating_add(8)).is_some_and(clean_word) {
            i += 8;
            continue;
        }
        // A word that may hold an escaped byte (or the last few bytes): byte by byte.
        let end = i.saturating_add(8).min(bytes.len());
        while i < end {
            if let Some(&b) = bytes.get(i).filter(|&&b| escaped(b)) {
                out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
                escape(b, out);
                start = i + 1;
            }
            i += 1;
        }
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// Whether `b` is escaped in a JCS string: `"`, `\` and the control
/// characters below U+0020.
fn escaped(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The escape of a byte [`escaped`] picks.
fn escape(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x09 => out.extend_from_slice(b"\\t"),
        0x0a => out.extend_from_slice(b"\\n"),
        0x0c => out.extend_from_slice(b"\\f"),
        0x0d => out.extend_from_slice(b"\\r"),
        _ => {
            out.extend_from_slice(b"\\u00");
            out.push(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
            out.push(HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0'));
        }
    }
}

/// Whether none of the eight bytes of `word` is [`escaped`] (a shorter slice: no).
///
/// Why a word at a time: every record's strings (its reason and ids, and the
/// strings inside its detail) go through here on the append's path and again into
/// the Merkle leaf, and most of their bytes are not escaped; byte by byte it was about 3% of the
/// platform's instructions per request (callgrind, BENCHMARKS.md). The tests are
/// Bit Twiddling Hacks' exact "has a byte less than n" and "has a zero byte": no
/// false "clean" (a byte with its high bit set never counts as below 0x20).
fn clean_word(word: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let Ok(word) = <[u8; 8]>::try_from(word) else {
        return false;
    };
    let w = u64::from_le_bytes(word);
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let quote = has_zero(w ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(w ^ (ONES * u64::from(b'\\')));
    below_space | quote | backslash == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8785 §3.2.2.2 byte by byte, as plainly as it reads: what the
    /// word-at-a-time scan must agree with.
    fn reference_string(s: &str) -> Vec<u8> {
        let mut out = vec![b'"'];
        for c in s.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\u{8}' => out.extend_from_slice(b"\\b"),
                '\t' => out.extend_from_slice(b"\\t"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\u{c}' => out.extend_from_slice(b"\\f"),
                '\r' => out.extend_from_slice(b"\\r"),
                c if u32::from(c) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes())
                }
                c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        out.push(b'"');
        out
    }

    proptest::proptest! {
        /// Strings of every length around the eight-byte words, with escaped
        /// bytes at any position (first, last, straddling a word), non-ASCII
        /// (high-bit bytes must not look escaped) and DEL: the same bytes as
        /// the byte-by-byte reading and as serde_json's (the same escapes).
        #[test]
        fn strings_escape_as_the_byte_by_byte_reading(
            s in proptest::string::string_regex("[a-z \"\\\\\u{0}-\u{1f}\u{7f}\u{80}é€😀!-/]{0,40}").unwrap(),
        ) {
            let mut out = Vec::new();
            string(&s, &mut out);
            proptest::prop_assert_eq!(&out, &reference_string(&s));
            proptest::prop_assert_eq!(out, serde_json::to_vec(&s).unwrap());
        }
    }

    #[test]
    fn every_byte_value_in_every_position_of_a_word() {
        for len in 1..=17usize {
            for at in 0..len {
                for b in 0u8..0x80 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let s = String::from_utf8(bytes).unwrap();
                    let mut out = Vec::new();
                    string(&s, &mut out);
                    assert_eq!(out, reference_string(&s), "byte {b:#x} at {at} of {len}");
                }
            }
        }
    }

    fn jcs(text: &str) -> String {
        let v: Value = serde_json::from_str(text).unwrap();
        String::from_utf8(canonicalize(&v)).unwrap()
    }

    /// RFC 8785 §3.2.2: the example of the whole transformation.
    #[test]
    fn rfc8785_section_3_2_2_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            jcs(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    proptest::proptest! {
        /// The byte order taken for ASCII names is the UTF-16 order, and
        /// names with anything else still sort by UTF-16 code units: both
        /// checked against a plain UTF-16 comparison, on names drawn to meet
        /// the case where byte and UTF-16 order differ (U+E000..U+FFFF
        /// against a surrogate pair).
        #[test]
        fn member_names_sort_by_utf16_code_units(
            names in proptest::collection::btree_set(
                proptest::string::string_regex("[a-z0-9_.\u{7f}\u{80}\u{ff}\u{e000}\u{ffff}\u{fb33}\u{10000}\u{1f600}]{0,4}").unwrap(),
                0..12,
            ),
            ascii in proptest::collection::btree_set("[ -~]{0,6}", 0..12),
        ) {
            for set in [names, ascii] {
                let names: Vec<String> = set.into_iter().rev().collect();
                let mut members: Vec<(&String, ())> = names.iter().map(|n| (n, ())).collect();
                sort_members(&mut members);
                let mut want: Vec<&String> = names.iter().collect();
                want.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
                let got: Vec<&String> = members.into_iter().map(|(n, ())| n).collect();
                proptest::prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn integers_are_written_as_before_at_the_edges() {
        for (text, want) in [
            ("0", "0"),
            ("-0", "0"),
            ("9007199254740992", "9007199254740992"),
            ("-9007199254740992", "-9007199254740992"),
            ("9007199254740993", "9007199254740992"),
            ("18446744073709551615", "18446744073709552000"),
            ("-1", "-1"),
        ] {
            assert_eq!(jcs(text), want, "{text}");
        }
    }

    /// RFC 8785 §3.2.3: members sorted by UTF-16 code units (the emoji,
    /// a surrogate pair, sorts before U+FB33; UTF-8 order would differ).
    #[test]
    fn rfc8785_section_3_2_3_sorting() {
        let input = r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#;
        let out = jcs(input);
        let v: serde_json::Map<String, Value> = serde_json::from_str(input).unwrap();
        let order: Vec<&str> = [
            "\r",
            "1",
            "\u{80}",
            "\u{f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ]
        .to_vec();
        let mut at = 0;
        for key in order {
            let needle = format!(
                "{}:",
                String::from_utf8(canonicalize(&Value::String(key.into()))).unwrap()
            );
            let pos = out[at..]
                .find(&needle)
                .unwrap_or_else(|| panic!("{key:?} out of order in {out}"));
            at += pos + needle.len();
            assert!(v.contains_key(key));
        }
    }

    /// RFC 8785 Appendix B: number serialization samples.
    #[test]
    fn rfc8785_appendix_b_numbers() {
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
        ];
        for (bits, want) in cases {
            assert_eq!(es_number(f64::from_bits(*bits)), *want, "{bits:016x}");
        }
    }

    #[test]
    fn integers_print_exactly_and_big_ones_as_doubles() {
        assert_eq!(
            jcs("[1,-1,200,9007199254740992,-9007199254740992]"),
            "[1,-1,200,9007199254740992,-9007199254740992]"
        );
        assert_eq!(jcs("[18446744073709551615]"), "[18446744073709552000]");
    }

    #[test]
    fn control_characters_are_escaped_as_ecmascript_does() {
        let s: String = (0u8..0x20)
            .map(char::from)
            .chain(['\u{7f}', '\u{2028}', 'é'])
            .collect();
        let out = String::from_utf8(canonicalize(&Value::String(s))).unwrap();
        assert_eq!(
            out,
            "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\u{7f}\u{2028}é\""
        );
    }
}
