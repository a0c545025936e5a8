//! The hashes of RFC 6962 §2.1 (RFC 9162 §2.1) Merkle trees, and the walk that checks an
//! inclusion proof, shared by the two logs the platform reads: Sigstore's transparency log
//! (`zerofn-sigstore`) and the platform's own audit log (`zerofn-audit`).
//!
//! # Trust
//! Trusts `sha2`. Proof input is untrusted: the walk consumes exactly the hashes the index and
//! size call for and answers `None` for any other count or an index outside the tree.

use sha2::{Digest as _, Sha256};

/// A SHA-256 tree hash.
pub type TreeHash = [u8; 32];

/// RFC 9162 §2.1.1: a leaf's hash, `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> TreeHash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    h.finalize().into()
}

/// RFC 9162 §2.1.1: an interior node's hash, `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &TreeHash, right: &TreeHash) -> TreeHash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// RFC 9162 §2.1.3.2, "Verifying an Inclusion Proof", steps 1 to 5: the root that the audit
/// `path` of the leaf hashed `leaf` at `index` leads to in a tree of `size` leaves, or `None`
/// when the index is outside the tree or the path is too short or too long for it. The
/// caller compares the root with the one it trusts (step 6).
pub fn root_from_inclusion_path(
    index: u64,
    size: u64,
    leaf: TreeHash,
    path: &[TreeHash],
) -> Option<TreeHash> {
    if index >= size {
        return None;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        if sn == 0 {
            return None;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    (sn == 0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `MTH` written from RFC 9162 §2.1.1 directly, over leaf hashes.
    fn mth(leaves: &[TreeHash]) -> TreeHash {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// `PATH(m, D[n])` of RFC 9162 §2.1.3.1, over leaf hashes.
    fn path(m: usize, leaves: &[TreeHash]) -> Vec<TreeHash> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    #[test]
    fn every_path_leads_to_the_root_and_nothing_else_does() {
        for size in 1..=17usize {
            let leaves: Vec<TreeHash> = (0..size).map(|i| leaf_hash(&[i as u8])).collect();
            let root = mth(&leaves);
            for index in 0..size {
                let p = path(index, &leaves);
                let (i, n) = (index as u64, size as u64);
                assert_eq!(
                    root_from_inclusion_path(i, n, leaves[index], &p),
                    Some(root)
                );
                if let Some(first) = p.first() {
                    let mut bad = p.clone();
                    bad[0] = node_hash(first, first);
                    assert_ne!(
                        root_from_inclusion_path(i, n, leaves[index], &bad),
                        Some(root)
                    );
                    assert_eq!(root_from_inclusion_path(i, n, leaves[index], &p[1..]), None);
                }
                let mut longer = p.clone();
                longer.push(root);
                assert_eq!(root_from_inclusion_path(i, n, leaves[index], &longer), None);
            }
            assert_eq!(
                root_from_inclusion_path(size as u64, size as u64, leaves[0], &[]),
                None
            );
        }
    }

    #[test]
    fn hashes_are_domain_separated() {
        // RFC 6962's second-preimage defence: a leaf holding two hashes is not their node.
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        assert_ne!(leaf_hash(&both), node_hash(&a, &b));
    }
}
