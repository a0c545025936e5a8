//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>, Level 1):
//! the `traceparent` and `tracestate` request headers, read strictly.
//!
//! A header that does not follow §3.2 exactly (lowercase hex only, the
//! lengths, version `ff` refused, all-zero ids refused) is not an error:
//! the request simply starts a new trace (§3.2.2.3 "the vendor MUST ignore
//! the traceparent"), and `tracestate` goes with it (§3.3.1.1). Nothing
//! here panics on any input.

use std::fmt;
use std::sync::Arc;

use rand_core::{OsRng, RngCore};

/// The request header carrying the caller's trace and span.
pub const TRACEPARENT: &str = "traceparent";
/// The request header carrying vendors' trace state.
pub const TRACESTATE: &str = "tracestate";

/// Longest `tracestate` passed on (§3.3.1.5: at least 512 characters
/// SHOULD be propagated; a longer one is dropped whole here).
pub const MAX_TRACESTATE: usize = 512;

/// The two names as `HeaderName`s built once: a `&str` name is parsed and
/// hashed from its text on every lookup, and every request with tracing on
/// looks both up.
const TRACEPARENT_NAME: http::HeaderName = http::HeaderName::from_static(TRACEPARENT);
const TRACESTATE_NAME: http::HeaderName = http::HeaderName::from_static(TRACESTATE);

/// A 16-byte trace id, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

impl TraceId {
    /// A random trace id (W3C §3.2.2.3 asks for random ids), from this
    /// thread's ChaCha20 CSPRNG keyed from the OS ([`zerofn_types::random`]); never all zero.
    pub fn random() -> TraceId {
        let mut b = [0u8; 16];
        loop {
            fill_trace_id(&mut b);
            if b != [0; 16] {
                return TraceId(b);
            }
        }
    }
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
    /// Its 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        let mut text = [0u8; 32];
        encode_hex(&self.0, &mut text);
        ascii_string(&text)
    }

    /// Its 32 lowercase hex digits, on the stack.
    pub(crate) fn hex_bytes(&self) -> [u8; 32] {
        let mut text = [0u8; 32];
        encode_hex(&self.0, &mut text);
        text
    }
    /// The low 8 bytes as a number: what ratio sampling compares (the
    /// random part of the id under W3C Level 2's random flag).
    pub(crate) fn sample_key(&self) -> u64 {
        let [_, _, _, _, _, _, _, _, a, b, c, d, e, f, g, h] = self.0;
        u64::from_be_bytes([a, b, c, d, e, f, g, h])
    }
}

impl SpanId {
    /// A random span id, from this thread's generator (see [`next_span_key`]).
    pub fn random() -> SpanId {
        loop {
            let b = next_span_key().to_be_bytes();
            if b != [0; 8] {
                return SpanId(b);
            }
        }
    }
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        ascii_string(&self.hex_bytes())
    }

    /// Its 16 lowercase hex digits, on the stack.
    pub(crate) fn hex_bytes(&self) -> [u8; 16] {
        let mut text = [0u8; 16];
        encode_hex(&self.0, &mut text);
        text
    }
}

/// Write `bytes` as lowercase hex into `out` (twice their length; a
/// shorter `out` gets the digits of the bytes that fit): what every id's
/// text is made of, on the request's path (a trace id per audit record, a
/// `traceparent` per request) without the formatting machinery, a `char`
/// conversion per digit or a growing string.
pub(crate) fn encode_hex(bytes: &[u8], out: &mut [u8]) {
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        if let [hi, lo] = pair {
            *hi = hex_char(b >> 4);
            *lo = hex_char(b & 0x0f);
        }
    }
}

/// The lowercase hex digit of a nibble (`n` < 16).
fn hex_char(n: u8) -> u8 {
    if n < 10 {
        b'0' + n
    } else {
        b'a' + (n - 10)
    }
}

/// ASCII bytes (hex digits) as a `String`; they are always valid UTF-8.
pub(crate) fn ascii_string(ascii: &[u8]) -> String {
    std::str::from_utf8(ascii).map_or_else(|_| String::new(), str::to_owned)
}

/// Fill `b` from this thread's id generator ([`zerofn_types::random`]: ChaCha20 keyed
/// from the OS, the invocation ids' too).
fn fill_trace_id(b: &mut [u8; 16]) {
    zerofn_types::random::fill_id_bytes(b);
}

thread_local! {
    /// This thread's span id generator state, seeded once from the OS.
    static SPAN_KEYS: std::cell::Cell<u64> = std::cell::Cell::new(OsRng.next_u64());
}

/// The next span id of this thread: wyrand (Wang Yi's generator, the one
/// `fastrand` uses) over a per-thread state seeded from the OS.
///
/// Why not the OS for every span: a request makes eight to ten spans, and
/// each id from the OS is a system call on the request's path. Span ids
/// only have to be unique within their trace (W3C Trace Context §3.2.2.4
/// asks nothing more of `parent-id`); what must be unpredictable is the
/// trace id, which comes from a per-thread CSPRNG for every new trace
/// ([`TraceId::random`]), and which the span ids do not reveal: the state
/// is seeded independently per thread and wyrand's output mixes it
/// through a 128-bit multiply.
fn next_span_key() -> u64 {
    SPAN_KEYS.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s).wrapping_mul(u128::from(s ^ 0xe703_7ed1_a0b4_28db));
        // The high and low halves of the product, folded.
        #[allow(clippy::cast_possible_truncation)]
        let (hi, lo) = ((t >> 64) as u64, t as u64);
        hi ^ lo
    })
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.to_hex())
    }
}
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({})", self.to_hex())
    }
}

/// A caller's valid `traceparent` (and the `tracestate` that came with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    /// The caller's span: the parent of the platform's first span.
    pub parent_id: SpanId,
    /// `trace-flags`; bit 0 is `sampled`.
    pub flags: u8,
    /// The caller's `tracestate`, if it was well formed.
    pub state: Option<Arc<str>>,
}

impl TraceParent {
    /// Whether the caller sampled its span (flag bit 0).
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The caller's trace context from the request headers, or `None` when
    /// there is none or it is not valid (a new trace starts then). More than
    /// one `traceparent` header is invalid (§3.2: it is a single value).
    pub fn from_headers(headers: &http::HeaderMap) -> Option<TraceParent> {
        let mut values = headers.get_all(TRACEPARENT_NAME).iter();
        let first = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let mut parent = TraceParent::parse(first.to_str().ok()?)?;
        parent.state = tracestate(headers);
        Some(parent)
    }

    /// A trace context carried as two values rather than headers: the
    /// CloudEvents distributed-tracing extension's `traceparent` and
    /// `tracestate` attributes, or what a queue stored with a message. The
    /// same strict reading as [`TraceParent::from_headers`]: an invalid
    /// `traceparent` gives `None` (a new trace), an invalid `tracestate` is
    /// dropped.
    pub fn from_values(traceparent: &str, tracestate: Option<&str>) -> Option<TraceParent> {
        let mut parent = TraceParent::parse(traceparent)?;
        parent.state = tracestate.and_then(checked_tracestate);
        Some(parent)
    }

    /// This context as a version-00 `traceparent` value (what a queue
    /// stores: a later version's extra fields are not kept).
    pub fn to_header(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.parent_id, self.flags)
    }

    /// Parse one `traceparent` value (§3.2.2). Versions other than `00` are
    /// read as §3.2.4 asks of a version-00 reader: the first 55 characters
    /// as version 00, and anything after them only behind a `-`.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let b = value.as_bytes();
        let (head, rest) = (b.get(..55)?, b.get(55..)?);
        let version = hex_byte(head.get(0..2)?)?;
        if version == 0xff {
            return None;
        }
        if version == 0 && !rest.is_empty() {
            return None;
        }
        if version != 0 && !rest.is_empty() && rest.first() != Some(&b'-') {
            return None;
        }
        if head.get(2) != Some(&b'-') || head.get(35) != Some(&b'-') || head.get(52) != Some(&b'-')
        {
            return None;
        }
        let mut trace = [0u8; 16];
        fill_hex(head.get(3..35)?, &mut trace)?;
        let mut span = [0u8; 8];
        fill_hex(head.get(36..52)?, &mut span)?;
        let flags = hex_byte(head.get(53..55)?)?;
        if trace == [0; 16] || span == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id: TraceId(trace),
            parent_id: SpanId(span),
            flags,
            state: None,
        })
    }
}

/// The `tracestate` headers joined (§3.3.1: several headers are one list),
/// if the result is printable ASCII, at most [`MAX_TRACESTATE`] characters
/// and at most 32 members; otherwise none (the platform passes on what it
/// can carry whole, and never a value that could split a header).
fn tracestate(headers: &http::HeaderMap) -> Option<Arc<str>> {
    let mut joined = String::new();
    for v in headers.get_all(TRACESTATE_NAME) {
        let s = v.to_str().ok()?;
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(s);
        if joined.len() > MAX_TRACESTATE {
            return None;
        }
    }
    checked_tracestate(&joined)
}

/// `value` as a `tracestate` the platform passes on: printable ASCII, at
/// most [`MAX_TRACESTATE`] characters and 32 members; otherwise none.
fn checked_tracestate(value: &str) -> Option<Arc<str>> {
    if value.len() > MAX_TRACESTATE {
        return None;
    }
    let trimmed = value.trim();
    if trimmed.is_empty()
        || !trimmed.bytes().all(|c| (0x20..0x7f).contains(&c))
        || trimmed.split(',').count() > 32
    {
        return None;
    }
    Some(Arc::from(trimmed))
}

/// One lowercase hex digit's value (§3.2.2: `HEXDIGLC`; uppercase is invalid).
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    let [hi, lo] = two else { return None };
    Some(hex_digit(*hi)? << 4 | hex_digit(*lo)?)
}

fn fill_hex(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    for (pair, byte) in text.chunks_exact(2).zip(out.iter_mut()) {
        *byte = hex_byte(pair)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn trace_ids_differ_are_never_zero_and_print_as_lowercase_hex() {
        let ids: Vec<TraceId> = (0..2000).map(|_| TraceId::random()).collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "a trace id repeated");
        for id in &ids {
            assert_ne!(id.as_bytes(), &[0u8; 16]);
            let text = id.to_hex();
            assert_eq!(text.len(), 32);
            assert!(
                text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                "{text}"
            );
            assert_eq!(text, hex::encode(id.as_bytes()));
            // What prints is what a caller's header would parse back to.
            let header = format!("00-{text}-00f067aa0ba902b7-01");
            assert_eq!(TraceParent::parse(&header).unwrap().trace_id, *id);
        }
        // Every bit position takes both values: the bytes are not stuck.
        let or = ids.iter().fold([0u8; 16], |mut acc, id| {
            acc.iter_mut().zip(id.as_bytes()).for_each(|(a, b)| *a |= b);
            acc
        });
        let and = ids.iter().fold([0xffu8; 16], |mut acc, id| {
            acc.iter_mut().zip(id.as_bytes()).for_each(|(a, b)| *a &= b);
            acc
        });
        assert_eq!((or, and), ([0xff; 16], [0; 16]));
    }

    #[test]
    fn threads_draw_different_trace_ids() {
        let here: std::collections::HashSet<TraceId> =
            (0..100).map(|_| TraceId::random()).collect();
        let there: Vec<TraceId> =
            std::thread::spawn(|| (0..100).map(|_| TraceId::random()).collect())
                .join()
                .unwrap();
        assert!(
            there.iter().all(|id| !here.contains(id)),
            "two threads share a stream"
        );
    }

    #[test]
    fn span_ids_print_as_lowercase_hex() {
        for _ in 0..100 {
            let id = SpanId::random();
            assert_ne!(id.as_bytes(), &[0u8; 8]);
            assert_eq!(id.to_hex(), hex::encode(id.as_bytes()));
        }
    }

    #[test]
    fn a_valid_traceparent_is_read() {
        let p = TraceParent::parse(VALID).unwrap();
        assert_eq!(p.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.parent_id.to_hex(), "00f067aa0ba902b7");
        assert!(p.is_sampled());
        let unsampled = TraceParent::parse(&VALID.replace("-01", "-00")).unwrap();
        assert!(!unsampled.is_sampled());
        // A later version is read as version 00, extra fields behind a `-` ignored.
        let future = format!("cc{}-what-comes-next", &VALID[2..]);
        assert_eq!(TraceParent::parse(&future).unwrap().trace_id, p.trace_id);
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for (value, why) in [
            ("", "empty"),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version ff",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "all-zero trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "all-zero parent id",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "uppercase trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                "uppercase parent id",
            ),
            (
                "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "uppercase version",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0F",
                "uppercase flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                "short trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
                "long trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
                "short parent id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                "short flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                "version 00 with more",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                "trailing junk",
            ),
            (
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                "later version, no dash",
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                "wrong separators",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                "non-hex flags",
            ),
            (
                " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "leading space",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é1",
                "non-ASCII",
            ),
        ] {
            assert_eq!(
                TraceParent::parse(value),
                None,
                "{why}: {value:?} was accepted"
            );
        }
    }

    #[test]
    fn headers_give_one_parent_and_its_state() {
        let mut h = http::HeaderMap::new();
        h.insert(TRACEPARENT, VALID.parse().unwrap());
        h.append(TRACESTATE, "a=1".parse().unwrap());
        h.append(TRACESTATE, "b=2".parse().unwrap());
        let p = TraceParent::from_headers(&h).unwrap();
        assert_eq!(p.state.as_deref(), Some("a=1,b=2"));
        h.append(TRACEPARENT, VALID.parse().unwrap());
        assert_eq!(
            TraceParent::from_headers(&h),
            None,
            "two traceparent headers"
        );
        let mut long = http::HeaderMap::new();
        long.insert(TRACEPARENT, VALID.parse().unwrap());
        long.insert(TRACESTATE, "k=".repeat(300).parse().unwrap());
        assert_eq!(TraceParent::from_headers(&long).unwrap().state, None);
    }

    #[test]
    fn values_carried_outside_headers_are_read_as_strictly() {
        let p = TraceParent::from_values(VALID, Some("a=1,b=2")).unwrap();
        assert_eq!(p.to_header(), VALID);
        assert_eq!(p.state.as_deref(), Some("a=1,b=2"));
        let no_state = TraceParent::from_values(VALID, Some("bad\u{7f}state")).unwrap();
        assert_eq!(no_state.state, None, "an invalid tracestate is dropped");
        let long = "k=".repeat(300);
        assert_eq!(
            TraceParent::from_values(VALID, Some(&long)).unwrap().state,
            None
        );
        assert_eq!(TraceParent::from_values("00-zz", Some("a=1")), None);
        // A later version is stored as version 00, without its extra fields.
        let future = format!("cc{}-more", &VALID[2..]);
        assert_eq!(
            TraceParent::from_values(&future, None).unwrap().to_header(),
            VALID
        );
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics_and_what_parses_prints_back(s in "\\PC{0,80}") {
            if let Some(p) = TraceParent::parse(&s) {
                let printed = format!("{:02x}-{}-{}-{:02x}", hex_byte(s.as_bytes().get(0..2).unwrap()).unwrap(), p.trace_id, p.parent_id, p.flags);
                proptest::prop_assert_eq!(printed.as_str(), s.get(..55).unwrap());
            }
        }

        #[test]
        fn well_formed_values_round_trip(t in proptest::array::uniform16(1u8..), s in proptest::array::uniform8(1u8..), f: u8) {
            let v = format!("00-{}-{}-{:02x}", hex::encode(t), hex::encode(s), f);
            let p = TraceParent::parse(&v).unwrap();
            proptest::prop_assert_eq!(p.trace_id.as_bytes(), &t);
            proptest::prop_assert_eq!(p.parent_id.as_bytes(), &s);
            proptest::prop_assert_eq!(p.flags, f);
        }
    }
}
