//! A tree node decoded into memory for the write transaction: how big it encodes, how it is
//! encoded into a page, and how it splits when it no longer fits.

use crate::error::{Error, Result};
use crate::page::{
    put_u16, put_u32, put_u64, seal, BranchPage, LeafPage, PageType, Stored, BRANCH_SLOTS_AT,
    FLAG_KEY_OVERFLOW, FLAG_VALUE_OVERFLOW, HEADER_BYTES, OVERFLOW_REF_BYTES, SLOT_BYTES,
};
use crate::{PageId, TxnId, MAX_INLINE_KEY_BYTES, MAX_INLINE_VALUE_BYTES, PAGE_SIZE};

/// A key in memory. Keys longer than [`MAX_INLINE_KEY_BYTES`] are stored in an overflow chain
/// owned by this key; `chain` is that chain once written (None: write one at encode time).
#[derive(Clone, Debug)]
pub(crate) struct Key {
    pub(crate) bytes: Vec<u8>,
    pub(crate) chain: Option<PageId>,
}

impl Key {
    pub(crate) fn new(bytes: Vec<u8>) -> Key {
        Key { bytes, chain: None }
    }

    pub(crate) fn is_inline(&self) -> bool {
        self.bytes.len() <= MAX_INLINE_KEY_BYTES
    }

    fn stored_bytes(&self) -> usize {
        if self.is_inline() {
            2 + self.bytes.len()
        } else {
            OVERFLOW_REF_BYTES
        }
    }
}

/// A value in memory: inline bytes, or a reference to the overflow chain that holds it.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Inline(Vec<u8>),
    Overflow { first_page: PageId, len: u32 },
}

impl Value {
    fn stored_bytes(&self) -> usize {
        match self {
            Value::Inline(v) => 2 + v.len(),
            Value::Overflow { .. } => OVERFLOW_REF_BYTES,
        }
    }
}

/// A leaf (sorted entries) or a branch (`keys.len() + 1` children).
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Leaf(Vec<(Key, Value)>),
    Branch {
        keys: Vec<Key>,
        children: Vec<PageId>,
    },
}

/// Bytes available to slots and entries in one page.
const BODY_BYTES: usize = PAGE_SIZE - HEADER_BYTES;

fn leaf_entry_bytes(key: &Key, value: &Value) -> usize {
    SLOT_BYTES + 1 + key.stored_bytes() + value.stored_bytes()
}

fn branch_entry_bytes(key: &Key) -> usize {
    SLOT_BYTES + 1 + key.stored_bytes() + 8
}

/// Picks how many of `sizes` go left so both sides fit `cap` bytes. `append` keeps the left
/// side as full as possible (sequential inserts then leave full pages behind); otherwise the
/// bytes are balanced. `reserve` is extra bytes an entry takes out of the middle (branch split).
fn choose_split(sizes: &[usize], cap: usize, append: bool, moves_up: bool) -> Option<usize> {
    let total: usize = sizes.iter().sum();
    let mut best: Option<(usize, usize)> = None;
    let mut left = 0usize;
    let lowest = if moves_up { 0 } else { 1 };
    for k in 0..sizes.len() {
        // `k` entries on the left; with `moves_up`, entry k goes up and the rest go right.
        let right = total - left - if moves_up { sizes[k] } else { 0 };
        let right_count = sizes.len() - k - usize::from(moves_up);
        if k >= lowest && right_count >= 1 && left <= cap && right <= cap {
            let score = if append {
                usize::MAX - left
            } else {
                left.abs_diff(right)
            };
            if best.is_none_or(|(_, s)| score < s) {
                best = Some((k, score));
            }
        }
        left += sizes[k];
    }
    best.map(|(k, _)| k)
}

impl Node {
    pub(crate) fn is_leaf(&self) -> bool {
        matches!(self, Node::Leaf(_))
    }

    /// Bytes of the page this node encodes to.
    pub(crate) fn encoded_bytes(&self) -> usize {
        match self {
            Node::Leaf(entries) => {
                HEADER_BYTES
                    + entries
                        .iter()
                        .map(|(k, v)| leaf_entry_bytes(k, v))
                        .sum::<usize>()
            }
            Node::Branch { keys, .. } => {
                BRANCH_SLOTS_AT + keys.iter().map(branch_entry_bytes).sum::<usize>()
            }
        }
    }

    pub(crate) fn fits(&self) -> bool {
        self.encoded_bytes() <= PAGE_SIZE
    }

    /// Encodes into `page` (one zeroed page) and seals it. Every long key must already own
    /// its chain.
    pub(crate) fn encode_into(&self, page: &mut [u8], id: PageId, txn: TxnId) -> Result<()> {
        if !self.fits() {
            return Err(Error::corrupt(id, "node does not fit a page (engine bug)"));
        }
        debug_assert!(
            page.iter().all(|&b| b == 0),
            "encoding starts from a zeroed page"
        );
        let put_key = |page: &mut [u8], at: usize, key: &Key| -> Result<(u8, usize)> {
            if key.is_inline() {
                put_u16(page, at, key.bytes.len() as u16);
                page[at + 2..at + 2 + key.bytes.len()].copy_from_slice(&key.bytes);
                Ok((0, at + 2 + key.bytes.len()))
            } else {
                let chain = key
                    .chain
                    .ok_or_else(|| Error::corrupt(id, "long key has no chain (engine bug)"))?;
                put_u32(page, at, key.bytes.len() as u32);
                put_u64(page, at + 4, chain);
                Ok((FLAG_KEY_OVERFLOW, at + OVERFLOW_REF_BYTES))
            }
        };
        let count;
        let page_type;
        match self {
            Node::Leaf(entries) => {
                count = entries.len();
                page_type = PageType::Leaf;
                let mut at = HEADER_BYTES + count * SLOT_BYTES;
                for (i, (key, value)) in entries.iter().enumerate() {
                    put_u16(page, HEADER_BYTES + i * SLOT_BYTES, at as u16);
                    let flags_at = at;
                    let (mut flags, after_key) = put_key(page, at + 1, key)?;
                    at = match value {
                        Value::Inline(v) => {
                            put_u16(page, after_key, v.len() as u16);
                            page[after_key + 2..after_key + 2 + v.len()].copy_from_slice(v);
                            after_key + 2 + v.len()
                        }
                        Value::Overflow { first_page, len } => {
                            flags |= FLAG_VALUE_OVERFLOW;
                            put_u32(page, after_key, *len);
                            put_u64(page, after_key + 4, *first_page);
                            after_key + OVERFLOW_REF_BYTES
                        }
                    };
                    page[flags_at] = flags;
                }
            }
            Node::Branch { keys, children } => {
                debug_assert_eq!(
                    children.len(),
                    keys.len() + 1,
                    "a branch has one more child"
                );
                count = keys.len();
                page_type = PageType::Branch;
                put_u64(page, HEADER_BYTES, children[0]);
                let mut at = BRANCH_SLOTS_AT + count * SLOT_BYTES;
                for (i, key) in keys.iter().enumerate() {
                    put_u16(page, BRANCH_SLOTS_AT + i * SLOT_BYTES, at as u16);
                    let (flags, after_key) = put_key(page, at + 1, key)?;
                    page[at] = flags;
                    put_u64(page, after_key, children[i + 1]);
                    at = after_key + 8;
                }
            }
        }
        seal(page, id, txn, page_type, count as u16, 0);
        Ok(())
    }

    /// Decodes a leaf page; `load` fetches a long key from its overflow chain.
    pub(crate) fn from_leaf(
        page: &LeafPage<'_>,
        mut load: impl FnMut(PageId, u32) -> Result<Vec<u8>>,
    ) -> Result<Node> {
        let mut entries = Vec::with_capacity(page.len() + 1);
        for i in 0..page.len() {
            let (key, value) = page.entry(i)?;
            let key = match key {
                Stored::Inline(b) => Key::new(b.to_vec()),
                Stored::Overflow { first_page, len } => Key {
                    bytes: load(first_page, len)?,
                    chain: Some(first_page),
                },
            };
            let value = match value {
                Stored::Inline(b) => Value::Inline(b.to_vec()),
                Stored::Overflow { first_page, len } => Value::Overflow { first_page, len },
            };
            entries.push((key, value));
        }
        Ok(Node::Leaf(entries))
    }

    /// Decodes a branch page; `load` fetches a long key from its overflow chain.
    pub(crate) fn from_branch(
        page: &BranchPage<'_>,
        mut load: impl FnMut(PageId, u32) -> Result<Vec<u8>>,
    ) -> Result<Node> {
        let mut keys = Vec::with_capacity(page.len() + 1);
        let mut children = Vec::with_capacity(page.len() + 2);
        children.push(page.child(0)?);
        for i in 0..page.len() {
            keys.push(match page.key(i)? {
                Stored::Inline(b) => Key::new(b.to_vec()),
                Stored::Overflow { first_page, len } => Key {
                    bytes: load(first_page, len)?,
                    chain: Some(first_page),
                },
            });
            children.push(page.child(i + 1)?);
        }
        Ok(Node::Branch { keys, children })
    }

    /// Splits an over-full node in two: `self` keeps the left part; returns the separator
    /// (the smallest key of the right part) and the right node. `append` = the insert that
    /// overfilled it was at its right end.
    pub(crate) fn split(&mut self, append: bool) -> Option<(Key, Node)> {
        match self {
            Node::Leaf(entries) => {
                let sizes: Vec<usize> = entries
                    .iter()
                    .map(|(k, v)| leaf_entry_bytes(k, v))
                    .collect();
                let k = choose_split(&sizes, BODY_BYTES, append, false)?;
                let right = entries.split_off(k);
                let separator = Key::new(right[0].0.bytes.clone());
                Some((separator, Node::Leaf(right)))
            }
            Node::Branch { keys, children } => {
                let sizes: Vec<usize> = keys.iter().map(branch_entry_bytes).collect();
                let m = choose_split(&sizes, BODY_BYTES - 8, append, true)?;
                let mut right_keys = keys.split_off(m);
                let separator = right_keys.remove(0);
                let right_children = children.split_off(m + 1);
                Some((
                    separator,
                    Node::Branch {
                        keys: right_keys,
                        children: right_children,
                    },
                ))
            }
        }
    }
}

/// Whether a value of this length is stored inline.
pub(crate) fn value_is_inline(len: usize) -> bool {
    len <= MAX_INLINE_VALUE_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(n: usize, value_len: usize) -> Node {
        Node::Leaf(
            (0..n)
                .map(|i| {
                    (
                        Key::new(format!("{i:08}").into_bytes()),
                        Value::Inline(vec![7; value_len]),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn append_split_leaves_the_left_page_full() {
        let mut node = leaf(20, 200);
        assert!(!node.fits());
        let (_, right) = node.split(true).unwrap();
        assert!(node.fits() && right.fits());
        let Node::Leaf(right) = right else { panic!() };
        assert_eq!(
            right.len(),
            20 - 18,
            "left keeps as many 216-byte entries as fit (18)"
        );
    }

    #[test]
    fn balanced_split_halves_the_bytes() {
        let mut node = leaf(20, 200);
        let (sep, right) = node.split(false).unwrap();
        let Node::Leaf(right) = right else { panic!() };
        assert_eq!(right.len(), 10);
        assert_eq!(sep.bytes, b"00000010");
    }

    #[test]
    fn two_largest_inline_entries_always_split() {
        let big = || {
            (
                Key::new(vec![1; MAX_INLINE_KEY_BYTES]),
                Value::Inline(vec![2; MAX_INLINE_VALUE_BYTES]),
            )
        };
        let mut node = Node::Leaf(vec![big(), big(), big()]);
        assert!(!node.fits());
        let (_, right) = node.split(false).unwrap();
        assert!(node.fits() && right.fits());
    }
}
