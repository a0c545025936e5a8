//! The Merkle tree of RFC 6962 §2.1 (RFC 9162 §2.1): tree hashes, inclusion
//! and consistency proofs, and their verification.
//!
//! - leaf hash `SHA-256(0x00 || leaf)`, node hash `SHA-256(0x01 || left || right)`;
//! - `MTH` of n > 1 leaves splits at k, the largest power of two below n;
//! - `PATH(m, D[n])` (§2.1.1) and `PROOF(m, D[n])` (§2.1.2) as written;
//! - verification as RFC 9162 §2.1.3.2 and §2.1.4.2 spell it.
//!
//! Hashes come from a [`HashSource`], which may know the roots of perfect
//! subtrees (the platform keeps the root of every full 256-leaf tile), so
//! a proof over a million leaves reads a few thousand hashes, not a
//! million.

use sha2::{Digest as _, Sha256};

use crate::AuditError;

/// A SHA-256 tree hash.
pub type Hash = zerofn_types::rfc6962::TreeHash;

pub use zerofn_types::rfc6962::{leaf_hash, node_hash};

/// `MTH({})`: the hash of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Where the tree's hashes come from.
pub trait HashSource {
    /// The leaf hash at `index`.
    fn leaf(&mut self, index: u64) -> Result<Hash, AuditError>;
    /// The root of the perfect subtree of `2^height` leaves starting at
    /// `start`, if known without computing it from its leaves.
    fn perfect(&mut self, _start: u64, _height: u32) -> Result<Option<Hash>, AuditError> {
        Ok(None)
    }
}

impl HashSource for [Hash] {
    fn leaf(&mut self, index: u64) -> Result<Hash, AuditError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.get(i))
            .copied()
            .ok_or(AuditError::TreeRange {
                what: "leaf index",
                value: index,
                size: self.len() as u64,
            })
    }
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    let mut k = 1u64;
    while k.saturating_mul(2) < n {
        k = k.saturating_mul(2);
    }
    k
}

/// `MTH(D[start:end])`.
pub fn subtree_root<S: HashSource + ?Sized>(
    src: &mut S,
    start: u64,
    end: u64,
) -> Result<Hash, AuditError> {
    let n = end.saturating_sub(start);
    match n {
        0 => Ok(empty_root()),
        1 => src.leaf(start),
        _ => {
            if n.is_power_of_two() {
                if let Some(h) = src.perfect(start, n.trailing_zeros())? {
                    return Ok(h);
                }
            }
            let k = split(n);
            let left = subtree_root(src, start, start + k)?;
            let right = subtree_root(src, start + k, end)?;
            Ok(node_hash(&left, &right))
        }
    }
}

/// `MTH(D[0:size])`.
pub fn root<S: HashSource + ?Sized>(src: &mut S, size: u64) -> Result<Hash, AuditError> {
    subtree_root(src, 0, size)
}

/// `PATH(index, D[0:size])`, the audit path of RFC 6962 §2.1.1, leaf to root.
pub fn inclusion_proof<S: HashSource + ?Sized>(
    src: &mut S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, AuditError> {
    if index >= size {
        return Err(AuditError::TreeRange {
            what: "leaf index",
            value: index,
            size,
        });
    }
    let mut proof = Vec::new();
    path(src, index, 0, size, &mut proof)?;
    Ok(proof)
}

fn path<S: HashSource + ?Sized>(
    src: &mut S,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), AuditError> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(src, m, start, start + k, out)?;
        out.push(subtree_root(src, start + k, end)?);
    } else {
        path(src, m - k, start + k, end, out)?;
        out.push(subtree_root(src, start, start + k)?);
    }
    Ok(())
}

/// `PROOF(old, D[0:new])`, the consistency proof of RFC 6962 §2.1.2. Empty
/// when `old` is 0 or equals `new`.
pub fn consistency_proof<S: HashSource + ?Sized>(
    src: &mut S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, AuditError> {
    if old > new {
        return Err(AuditError::TreeRange {
            what: "old tree size",
            value: old,
            size: new,
        });
    }
    let mut proof = Vec::new();
    if old > 0 && old < new {
        subproof(src, old, 0, new, true, &mut proof)?;
    }
    Ok(proof)
}

fn subproof<S: HashSource + ?Sized>(
    src: &mut S,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), AuditError> {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(subtree_root(src, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(src, m, start, start + k, whole, out)?;
        out.push(subtree_root(src, start + k, end)?);
    } else {
        subproof(src, m - k, start + k, end, false, out)?;
        out.push(subtree_root(src, start, start + k)?);
    }
    Ok(())
}

/// Why a proof did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizesOutOfOrder { old: u64, new: u64 },
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof does not lead to the expected root hash")]
    RootMismatch,
}

/// Check an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    match zerofn_types::rfc6962::root_from_inclusion_path(index, size, *leaf, proof) {
        None => Err(ProofError::WrongLength),
        Some(r) if &r != root => Err(ProofError::RootMismatch),
        Some(_) => Ok(()),
    }
}

/// Check a consistency proof (RFC 9162 §2.1.4.2). Equal sizes need an
/// empty proof and equal roots; an old size of 0 needs an empty proof.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::SizesOutOfOrder { old, new });
    }
    if old == new || old == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        if old == new && old_root != new_root {
            return Err(ProofError::RootMismatch);
        }
        if old == 0 && old_root != &empty_root() {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The roots of the perfect subtrees a tree of `size` leaves decomposes
/// into, left to right: enough to extend it leaf by leaf and to compute its
/// root, in O(log n) memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// (height, root), heights strictly decreasing.
    stack: Vec<(u32, Hash)>,
}

impl CompactRange {
    pub fn new() -> CompactRange {
        CompactRange::default()
    }

    /// Leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_subtree(0, leaf);
    }

    /// Append the root of a perfect subtree of `2^height` leaves; the
    /// range's size must be a multiple of `2^height` (the subtree is
    /// aligned), as it is when whole tiles are pushed before any leaf.
    pub fn push_subtree(&mut self, height: u32, hash: Hash) {
        self.stack.push((height, hash));
        self.size = self.size.saturating_add(1u64 << height.min(63));
        while let [.., (lh, l), (rh, r)] = self.stack.as_slice() {
            if lh != rh {
                break;
            }
            let merged = (lh + 1, node_hash(l, r));
            self.stack.truncate(self.stack.len() - 2);
            self.stack.push(merged);
        }
    }

    /// `MTH` of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some((_, last)) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, (_, left)| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// The eight inputs of the RFC 6962 reference tree (certificate-transparency's
    /// `merkle_tree_test`), and the roots of its prefixes of size 1..=8.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn reference() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect()
    }

    #[test]
    fn roots_match_the_rfc6962_reference_tree() {
        let leaves = reference();
        assert_eq!(
            hex::encode(root(leaves.as_slice().to_vec().as_mut_slice(), 0).unwrap()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut compact = CompactRange::new();
        for (n, want) in ROOTS.iter().enumerate() {
            let mut prefix = leaves[..=n].to_vec();
            assert_eq!(
                hex::encode(root(prefix.as_mut_slice(), n as u64 + 1).unwrap()),
                *want
            );
            compact.push(leaves[n]);
            assert_eq!(
                hex::encode(compact.root()),
                *want,
                "compact range, size {}",
                n + 1
            );
        }
    }

    #[test]
    fn proofs_match_the_rfc6962_reference_vectors() {
        let mut leaves = reference();
        let src = leaves.as_mut_slice();
        let inclusion: &[(u64, u64, &[&str])] = &[
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
        ];
        for (index, size, want) in inclusion {
            let proof = inclusion_proof(src, *index, *size).unwrap();
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(proof, want, "inclusion {index}/{size}");
            let r = h(ROOTS[*size as usize - 1]);
            verify_inclusion(&src[*index as usize], *index, *size, &proof, &r).unwrap();
        }
        let consistency: &[(u64, u64, &[&str])] = &[
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in consistency {
            let proof = consistency_proof(src, *old, *new).unwrap();
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(proof, want, "consistency {old}->{new}");
            let (r1, r2) = (h(ROOTS[*old as usize - 1]), h(ROOTS[*new as usize - 1]));
            verify_consistency(*old, *new, &r1, &r2, &proof).unwrap();
        }
    }

    /// Every proof of every tree up to 70 leaves verifies; any altered byte,
    /// missing, extra or swapped hash, wrong leaf or wrong index fails.
    #[test]
    fn every_proof_verifies_and_every_alteration_fails() {
        let mut leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let roots: Vec<Hash> = (0..=70u64)
            .map(|n| root(leaves.as_mut_slice(), n).unwrap())
            .collect();
        for n in 1..=70u64 {
            for i in 0..n {
                let proof = inclusion_proof(leaves.as_mut_slice(), i, n).unwrap();
                let leaf = leaves[i as usize];
                let r = &roots[n as usize];
                verify_inclusion(&leaf, i, n, &proof, r).unwrap();
                for j in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[j][j % 32] ^= 1;
                    assert!(verify_inclusion(&leaf, i, n, &bad, r).is_err());
                }
                if !proof.is_empty() {
                    assert!(verify_inclusion(&leaf, i, n, &proof[1..], r).is_err());
                }
                let mut longer = proof.clone();
                longer.push([7; 32]);
                assert!(verify_inclusion(&leaf, i, n, &longer, r).is_err());
                let mut bad_leaf = leaf;
                bad_leaf[0] ^= 0x80;
                assert!(verify_inclusion(&bad_leaf, i, n, &proof, r).is_err());
                if n > 1 {
                    let other = (i + 1) % n;
                    assert!(verify_inclusion(&leaf, other, n, &proof, r).is_err());
                }
                // (A proof may also fit another tree size with the same
                // root; the signed checkpoint is what binds size and root.)
                assert!(verify_inclusion(&leaf, n, n, &proof, r).is_err());
            }
            for m in 0..=n {
                let proof = consistency_proof(leaves.as_mut_slice(), m, n).unwrap();
                let (r1, r2) = (&roots[m as usize], &roots[n as usize]);
                verify_consistency(m, n, r1, r2, &proof).unwrap();
                for j in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[j][31 - j % 32] ^= 4;
                    assert!(
                        verify_consistency(m, n, r1, r2, &bad).is_err(),
                        "{m}->{n} byte"
                    );
                }
                if !proof.is_empty() {
                    assert!(verify_consistency(m, n, r1, r2, &proof[..proof.len() - 1]).is_err());
                    if proof.len() > 1 && proof[0] != proof[1] {
                        let mut swapped = proof.clone();
                        swapped.swap(0, 1);
                        assert!(verify_consistency(m, n, r1, r2, &swapped).is_err());
                    }
                }
                if m > 0 && m < n {
                    let mut wrong = *r1;
                    wrong[3] ^= 1;
                    assert!(verify_consistency(m, n, &wrong, r2, &proof).is_err());
                    assert!(verify_consistency(m, n, r1, &wrong, &proof).is_err());
                }
            }
        }
    }

    /// A source that knows perfect subtrees gives the same roots and
    /// proofs as one that only knows leaves.
    #[test]
    fn perfect_subtree_shortcuts_change_nothing() {
        struct Tiled(Vec<Hash>);
        impl HashSource for Tiled {
            fn leaf(&mut self, index: u64) -> Result<Hash, AuditError> {
                self.0.as_mut_slice().leaf(index)
            }
            fn perfect(&mut self, start: u64, height: u32) -> Result<Option<Hash>, AuditError> {
                if height < 2 {
                    return Ok(None);
                }
                let mut v = self.0[start as usize..(start + (1 << height)) as usize].to_vec();
                Ok(Some(root(v.as_mut_slice(), 1 << height)?))
            }
        }
        let leaves: Vec<Hash> = (0u32..40).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut plain = leaves.clone();
        let mut tiled = Tiled(leaves);
        for n in 1..40 {
            assert_eq!(
                root(plain.as_mut_slice(), n).unwrap(),
                root(&mut tiled, n).unwrap()
            );
            for i in 0..n {
                assert_eq!(
                    inclusion_proof(plain.as_mut_slice(), i, n).unwrap(),
                    inclusion_proof(&mut tiled, i, n).unwrap()
                );
                assert_eq!(
                    consistency_proof(plain.as_mut_slice(), i, n).unwrap(),
                    consistency_proof(&mut tiled, i, n).unwrap()
                );
            }
        }
    }
}
