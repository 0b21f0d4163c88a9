//! RFC 6962 Merkle trees over checkpoint hashes.
//!
//! Leaf hash `SHA-256(0x00 ‖ model_hash(C_j))`, node hash
//! `SHA-256(0x01 ‖ left ‖ right)`, the empty tree's root `SHA-256()`. Trees
//! of any size split at the largest power of two below the size (RFC 6962
//! §2.1); proofs are its audit paths and verify with RFC 9162 §2.1.3.2.

use crate::chain::Hash32;
use sha2::{Digest, Sha256};

pub fn leaf_hash(checkpoint_hash: &Hash32) -> Hash32 {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(checkpoint_hash.0);
    Hash32(h.finalize().into())
}

pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    Hash32(h.finalize().into())
}

pub fn empty_root() -> Hash32 {
    Hash32(Sha256::digest([]).into())
}

fn split_point(n: usize) -> usize {
    // Largest power of two strictly below n (n >= 2).
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// Root over leaf hashes.
pub fn root(leaves: &[Hash32]) -> Hash32 {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Audit path of leaf `index` (0-based) in the tree over `leaves`.
pub fn proof(leaves: &[Hash32], index: usize) -> Vec<Hash32> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split_point(n);
    if index < k {
        let mut path = proof(&leaves[..k], index);
        path.push(root(&leaves[k..]));
        path
    } else {
        let mut path = proof(&leaves[k..], index - k);
        path.push(root(&leaves[..k]));
        path
    }
}

/// Check that `leaf` is at `index` of a tree of `size` leaves with `root`.
pub fn verify(leaf: &Hash32, index: u64, size: u64, path: &[Hash32], root: &Hash32) -> bool {
    if index >= size {
        return false;
    }
    let mut f = index;
    let mut s = size - 1;
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Incremental root: push leaves one at a time, read the root in O(log n).
#[derive(Clone, Debug, Default)]
pub struct Frontier {
    /// Roots of the perfect subtrees of the binary decomposition of the
    /// leaf count, largest first, with their heights (a leaf is 0).
    peaks: Vec<(Hash32, u32)>,
}

impl Frontier {
    pub fn push(&mut self, leaf: Hash32) {
        let mut node = (leaf, 0u32);
        while let Some(&(top, height)) = self.peaks.last() {
            if height != node.1 {
                break;
            }
            self.peaks.pop();
            node = (node_hash(&top, &node.0), height + 1);
        }
        self.peaks.push(node);
    }

    /// RFC 6962 root of the leaves pushed so far: the peaks folded from the right.
    pub fn root(&self) -> Hash32 {
        let mut iter = self.peaks.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(&(last, _)) => iter.fold(last, |acc, (peak, _)| node_hash(peak, &acc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::tagged_sha256;

    fn leaves(n: usize) -> Vec<Hash32> {
        (0..n)
            .map(|i| leaf_hash(&tagged_sha256(b"t", &[&i.to_le_bytes()])))
            .collect()
    }

    #[test]
    fn frontier_matches_recursive_root_and_proofs_verify() {
        for n in 0..40 {
            let l = leaves(n);
            let mut f = Frontier::default();
            for leaf in &l {
                f.push(*leaf);
            }
            let r = root(&l);
            assert_eq!(f.root(), r, "size {n}");
            for i in 0..n {
                let p = proof(&l, i);
                assert!(verify(&l[i], i as u64, n as u64, &p, &r));
                if n > 1 {
                    let other = (i + 1) % n;
                    assert!(!verify(&l[i], other as u64, n as u64, &p, &r));
                    let mut bad = p.clone();
                    bad[0].0[0] ^= 1;
                    assert!(!verify(&l[i], i as u64, n as u64, &bad, &r));
                }
            }
        }
    }

    /// The nodes from leaf `index` up to the root, by the recursive split.
    fn path_nodes(leaves: &[Hash32], index: usize) -> Vec<Hash32> {
        if leaves.len() == 1 {
            return vec![leaves[0]];
        }
        let k = split_point(leaves.len());
        let mut nodes = if index < k {
            path_nodes(&leaves[..k], index)
        } else {
            path_nodes(&leaves[k..], index - k)
        };
        nodes.push(root(leaves));
        nodes
    }

    /// A proof must have exactly the tree's height at that leaf: an inner
    /// node (or the root) presented as a leaf with the rest of the path
    /// reaches the root, but verifies at no index; a path with a hash too
    /// few or too many does not verify either.
    #[test]
    fn proofs_shorter_or_longer_than_the_path_do_not_verify() {
        for n in 2..24usize {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = proof(&l, i);
                let nodes = path_nodes(&l, i);
                assert_eq!(nodes.len(), p.len() + 1, "size {n} leaf {i}");
                assert_eq!(nodes[p.len()], r);
                for depth in 1..nodes.len() {
                    for j in 0..n as u64 {
                        assert!(
                            !verify(&nodes[depth], j, n as u64, &p[depth..], &r),
                            "size {n}: the node {depth} above leaf {i} verified at {j}"
                        );
                    }
                    assert!(!verify(&l[i], i as u64, n as u64, &p[..depth - 1], &r));
                }
                let mut long = p.clone();
                long.push(l[i]);
                assert!(
                    !verify(&l[i], i as u64, n as u64, &long, &r),
                    "size {n} leaf {i}"
                );
            }
        }
        // A one-leaf tree: the leaf is the root, with an empty path only.
        let l = leaves(1);
        assert!(verify(&l[0], 0, 1, &[], &l[0]));
        assert!(!verify(&l[0], 0, 1, &[l[0]], &node_hash(&l[0], &l[0])));
        assert!(!verify(&l[0], 1, 1, &[], &l[0]), "index past the size");
    }

    #[test]
    fn rfc6962_shape_for_three_leaves() {
        let l = leaves(3);
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
    }
}
