//! Signed checkpoints: the C2SP `tlog-checkpoint` body, signed as a C2SP
//! `signed-note` with Ed25519 (the format of Go's `golang.org/x/mod/sumdb/note`,
//! which any tlog witness or client reads).
//!
//! ```text
//! zerofn.local/audit/<install id>        origin
//! 1234                                   tree size, decimal
//! <base64 root hash>                     RFC 6962 root, standard base64
//!                                        blank line ends the signed text
//! — zerofn.local/audit/<id> <base64(key hash || signature)>
//! ```
//!
//! - key hash: the first 4 bytes of `SHA-256(name || 0x0A || 0x01 || public key)`;
//! - signature: Ed25519 over the text, including its final newline and not
//!   the blank line;
//! - verifier key: `<name>+<8 hex of key hash>+<base64(0x01 || public key)>`;
//! - signer key (the file in the data directory): `PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>`.
//!
//! # Trust
//! Parsing trusts nothing in a note: it is bounded (size, lines,
//! signatures), refuses malformed lines, and a note counts as signed only
//! when a signature line names the verifier's key (name and hash) and
//! verifies strictly (`verify_strict`: no small-order keys, canonical
//! signatures). Lines signed by other keys are ignored, as the spec says.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::merkle::Hash;

/// Ed25519's signature type byte in key encodings (signed-note §"Signature types").
const ALG_ED25519: u8 = 0x01;
/// Largest note accepted.
pub const MAX_NOTE: usize = 64 * 1024;
/// Most signature lines accepted (Go's `note.Open` limit).
const MAX_SIGNATURES: usize = 100;
/// What every signature line starts with: U+2014 EM DASH, then a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// A checkpoint or note that does not parse or verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("note is malformed: {0}")]
    Malformed(&'static str),
    #[error("key `{0}` is malformed: {1}")]
    BadKey(String, &'static str),
    #[error("note has no signature by key `{0}`")]
    NotSigned(String),
    #[error("the signature by key `{0}` does not verify (the note was altered or signed by another key)")]
    BadSignature(String),
    #[error("checkpoint is malformed: {0}")]
    BadCheckpoint(&'static str),
    #[error("checkpoint origin is `{found}`, expected `{expected}`")]
    WrongOrigin { found: String, expected: String },
}

/// Whether `name` may name a key: non-empty, no whitespace, no `+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn key_hash(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    let mut out = [0u8; 4];
    out.copy_from_slice(d.get(..4).unwrap_or(&[0; 4]));
    out
}

/// Signs notes. Its `Debug` shows the name only.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    hash: [u8; 4],
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .finish()
    }
}

impl NoteSigner {
    /// A signer for `name` from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<NoteSigner, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey(name.to_owned(), "invalid key name"));
        }
        let key = SigningKey::from_bytes(seed);
        let hash = key_hash(name, key.verifying_key().as_bytes());
        Ok(NoteSigner {
            name: name.to_owned(),
            key,
            hash,
        })
    }

    /// A new key for `name`, from the operating system's random source.
    pub fn generate(name: &str) -> Result<NoteSigner, NoteError> {
        use rand_core::RngCore as _;
        let mut seed = Zeroizing::new([0u8; 32]);
        rand_core::OsRng
            .try_fill_bytes(seed.as_mut_slice())
            .map_err(|_| NoteError::BadKey(name.to_owned(), "no random source"))?;
        NoteSigner::from_seed(name, &seed)
    }

    /// Parse `PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>`.
    pub fn parse(text: &str) -> Result<NoteSigner, NoteError> {
        let bad = |why| NoteError::BadKey("PRIVATE+KEY+…".to_owned(), why);
        let rest = text
            .trim_end_matches('\n')
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(bad("does not start with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected PRIVATE+KEY+<name>+<hash>+<key>"));
        };
        let raw = Zeroizing::new(B64.decode(key).map_err(|_| bad("key is not base64"))?);
        let Some((&ALG_ED25519, seed)) = raw.split_first() else {
            return Err(bad("not an Ed25519 key"));
        };
        let seed: &[u8; 32] = seed.try_into().map_err(|_| bad("wrong key length"))?;
        let signer = NoteSigner::from_seed(name, seed)?;
        if hash != hex::encode(signer.hash) {
            return Err(bad("key hash does not match the key"));
        }
        Ok(signer)
    }

    /// The text [`NoteSigner::parse`] reads (a secret: write it 0600).
    pub fn to_private_text(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new(Vec::with_capacity(33));
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.hash),
            B64.encode(raw.as_slice())
        ))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            hash: self.hash,
        }
    }

    /// `text` with this key's signature line. `text` must be non-empty,
    /// end in a newline and hold no blank line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let sig = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.hash);
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must end with a newline"));
    }
    if text.contains("\n\n") || text.starts_with('\n') {
        return Err(NoteError::Malformed("text must not contain a blank line"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed(
            "text must not contain control characters",
        ));
    }
    Ok(())
}

/// Verifies notes signed by one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    hash: [u8; 4],
}

impl NoteVerifier {
    /// Parse `<name>+<8 hex>+<base64(0x01 || public key)>`.
    pub fn parse(text: &str) -> Result<NoteVerifier, NoteError> {
        let text = text.trim_end_matches('\n');
        let bad = |why| NoteError::BadKey(text.chars().take(200).collect(), why);
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<hash>+<key>"));
        };
        if !valid_name(name) {
            return Err(bad("invalid key name"));
        }
        if hash.len() != 8
            || !hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("key hash must be 8 lowercase hex digits"));
        }
        let raw = B64.decode(key).map_err(|_| bad("key is not base64"))?;
        let Some((&ALG_ED25519, public)) = raw.split_first() else {
            return Err(bad("not an Ed25519 key"));
        };
        let public: &[u8; 32] = public.try_into().map_err(|_| bad("wrong key length"))?;
        let key = VerifyingKey::from_bytes(public).map_err(|_| bad("not a valid Ed25519 point"))?;
        let computed = key_hash(name, public);
        if hash != hex::encode(computed) {
            return Err(bad("key hash does not match the key"));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            key,
            hash: computed,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Open a signed note: its text, if a line signed by this key verifies.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let (text, sigs) = split_note(note)?;
        for line in sigs {
            let (name, hash, sig) = parse_signature_line(line)?;
            if name != self.name || hash != self.hash {
                continue;
            }
            let sig = ed25519_dalek::Signature::from_bytes(&sig);
            return self
                .key
                .verify_strict(text.as_bytes(), &sig)
                .map(|()| text)
                .map_err(|_| NoteError::BadSignature(self.to_string()));
        }
        Err(NoteError::NotSigned(self.to_string()))
    }
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.hash),
            B64.encode(raw)
        )
    }
}

/// The signed text and its signature lines (without their newlines).
fn split_note(note: &str) -> Result<(&str, Vec<&str>), NoteError> {
    if note.len() > MAX_NOTE {
        return Err(NoteError::Malformed("note is too large"));
    }
    let at = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let text = note.get(..=at).ok_or(NoteError::Malformed("no text"))?;
    let sigs = note.get(at + 2..).unwrap_or_default();
    check_text(text)?;
    let Some(sigs) = sigs.strip_suffix('\n') else {
        return Err(NoteError::Malformed("signatures must end with a newline"));
    };
    let lines: Vec<&str> = sigs.split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(NoteError::Malformed("too many signatures"));
    }
    Ok((text, lines))
}

/// `— <name> <base64(4-byte key hash || 64-byte signature)>`.
fn parse_signature_line(line: &str) -> Result<(&str, [u8; 4], [u8; 64]), NoteError> {
    let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
        "signature line does not start with an em dash",
    ))?;
    let (name, blob) = rest
        .split_once(' ')
        .ok_or(NoteError::Malformed("signature line has no signature"))?;
    if !valid_name(name) {
        return Err(NoteError::Malformed(
            "signature line has an invalid key name",
        ));
    }
    let raw = B64
        .decode(blob)
        .map_err(|_| NoteError::Malformed("signature is not base64"))?;
    if raw.len() != 68 {
        // Another algorithm's signature, or garbage: not ours either way.
        return Ok((name, [0; 4], [0; 64]));
    }
    let (hash, sig) = raw.split_at(4);
    let hash: [u8; 4] = hash
        .try_into()
        .map_err(|_| NoteError::Malformed("short signature"))?;
    let sig: [u8; 64] = sig
        .try_into()
        .map_err(|_| NoteError::Malformed("short signature"))?;
    Ok((name, hash, sig))
}

/// A parsed C2SP `tlog-checkpoint` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The body: origin, size and base64 root, one line each.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parse a body (extension lines after the root are allowed and ignored).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = NoteError::BadCheckpoint;
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(bad("no origin line"))?;
        let size = lines.next().ok_or(bad("no tree size line"))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad("tree size is not a decimal number"));
        }
        let size: u64 = size.parse().map_err(|_| bad("tree size is too large"))?;
        let root = lines.next().ok_or(bad("no root hash line"))?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(bad("root hash is not 32 bytes of base64"))?;
        if !text.ends_with('\n') {
            return Err(bad("does not end with a newline"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// Open a signed checkpoint: the signature must be the verifier's and
    /// the origin its key name.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<Checkpoint, NoteError> {
        let text = verifier.open(note)?;
        let cp = Checkpoint::parse(text)?;
        if cp.origin != verifier.name() {
            return Err(NoteError::WrongOrigin {
                found: cp.origin,
                expected: verifier.name().to_owned(),
            });
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // golang.org/x/mod/sumdb/note's example (note.go, note_test.go).
    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn signs_and_opens_exactly_as_go_sumdb_note_does() {
        let signer = NoteSigner::parse(GO_SKEY).unwrap();
        assert_eq!(signer.verifier().to_string(), GO_VKEY);
        assert_eq!(signer.sign(GO_TEXT).unwrap(), GO_NOTE);
        assert_eq!(signer.to_private_text().as_str(), GO_SKEY);
        let verifier = NoteVerifier::parse(GO_VKEY).unwrap();
        assert_eq!(verifier.open(GO_NOTE).unwrap(), GO_TEXT);
    }

    #[test]
    fn every_altered_byte_of_a_signed_note_fails() {
        let verifier = NoteVerifier::parse(GO_VKEY).unwrap();
        let bytes = GO_NOTE.as_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] ^= 0x01;
            if let Ok(s) = std::str::from_utf8(&b) {
                assert!(
                    verifier.open(s).is_err(),
                    "byte {i} altered and still verifies"
                );
            }
        }
    }

    #[test]
    fn foreign_signatures_are_ignored_and_a_missing_one_is_named() {
        let other = NoteSigner::from_seed("other", &[9; 32]).unwrap();
        let go = NoteVerifier::parse(GO_VKEY).unwrap();
        let mine = other.sign(GO_TEXT).unwrap();
        assert!(matches!(go.open(&mine), Err(NoteError::NotSigned(_))));
        // Both signatures: each key finds its own.
        let line = mine.strip_prefix(GO_TEXT).unwrap().trim_start_matches('\n');
        let both = format!("{GO_NOTE}{line}");
        assert_eq!(go.open(&both).unwrap(), GO_TEXT);
        assert_eq!(other.verifier().open(&both).unwrap(), GO_TEXT);
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "PeterNeumann+c74f20a3",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+AhpC2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",
        ] {
            assert!(NoteVerifier::parse(bad).is_err(), "{bad}");
        }
        assert!(NoteSigner::parse(
            "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
        )
        .is_err());
    }

    #[test]
    fn checkpoints_round_trip_and_check_their_origin() {
        let signer =
            NoteSigner::from_seed("zerofn.local/audit/0011223344556677", &[3; 32]).unwrap();
        let cp = Checkpoint {
            origin: signer.name().to_owned(),
            size: 42,
            root: [7; 32],
        };
        let note = signer.sign(&cp.to_text()).unwrap();
        assert_eq!(
            note.lines().take(3).collect::<Vec<_>>(),
            [
                "zerofn.local/audit/0011223344556677",
                "42",
                "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="
            ]
        );
        assert_eq!(Checkpoint::open(&note, &signer.verifier()).unwrap(), cp);
        let other = NoteSigner::from_seed("elsewhere", &[3; 32]).unwrap();
        let foreign = other.sign(&cp.to_text()).unwrap();
        assert!(matches!(
            Checkpoint::open(&foreign, &other.verifier()),
            Err(NoteError::WrongOrigin { .. })
        ));
        for bad in [
            "o\n01\nBwc=\n",
            "o\n-1\n",
            "o\n1\nnot base64\n",
            "\n1\n",
            "o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
