//! Where a transaction gets its pages: a committed snapshot's mapping, plus (for the writer) the
//! pages it has changed in memory. Also the read-only tree search shared by both.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::Mapping;
use crate::meta::{InlineLists, Meta};
use crate::node::{Node, Value};
use crate::overflow::read_chain;
use crate::page::{BranchPage, LeafPage, Stored};
use crate::{PageId, MAX_TREE_DEPTH, PAGE_SIZE};

/// Gives page bytes by id, after checking the id is inside the snapshot.
pub(crate) trait PageSource {
    /// The bytes of a page the caller's snapshot can reach (checksum not yet verified).
    fn page_bytes(&self, id: PageId) -> Result<&[u8]>;
    /// A node the writer changed in this transaction, if `id` is one.
    fn dirty_node(&self, _id: PageId) -> Option<&Node> {
        None
    }
    /// The shared record of pages whose checksum held since they were written, if this
    /// source may use it (`check` may not: it verifies everything).
    fn verified_pages(&self) -> Option<&VerifiedPages> {
        None
    }
}

/// One bit per page of a mapping: set once a reader verified the page's checksum, cleared by
/// the writer before it rewrites the page. Sound because a page's bytes never change while a
/// snapshot that reaches it lives (the mmap invariant, I1): a bit can only be set by a reader
/// that reaches the page, and such readers have all ended before the page is reused.
pub(crate) struct VerifiedPages {
    bits: Vec<AtomicU64>,
}

impl VerifiedPages {
    pub(crate) fn new(pages: u64) -> VerifiedPages {
        let words = usize::try_from(pages.div_ceil(64)).unwrap_or(0);
        VerifiedPages {
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn word(&self, id: PageId) -> Option<(&AtomicU64, u64)> {
        let word = self.bits.get(usize::try_from(id / 64).ok()?)?;
        Some((word, 1u64 << (id % 64)))
    }

    pub(crate) fn is_verified(&self, id: PageId) -> bool {
        self.word(id)
            .is_some_and(|(w, bit)| w.load(AtomicOrdering::Acquire) & bit != 0)
    }

    pub(crate) fn mark(&self, id: PageId) {
        if let Some((w, bit)) = self.word(id) {
            w.fetch_or(bit, AtomicOrdering::Release);
        }
    }

    pub(crate) fn forget(&self, id: PageId) {
        if let Some((w, bit)) = self.word(id) {
            w.fetch_and(!bit, AtomicOrdering::Release);
        }
    }
}

/// A snapshot read without the verified-page shortcut: every checksum is computed.
pub(crate) struct FullyVerified<'a>(pub(crate) &'a Snapshot);

impl PageSource for FullyVerified<'_> {
    fn page_bytes(&self, id: PageId) -> Result<&[u8]> {
        self.0.page_bytes(id)
    }
}

/// One committed state: its meta and a mapping that covers its pages.
pub(crate) struct Snapshot {
    pub(crate) meta: Meta,
    pub(crate) mapping: Arc<dyn Mapping>,
    /// Shared by every snapshot of the same mapping.
    pub(crate) verified: Arc<VerifiedPages>,
    /// The id lists kept in this commit's meta page (a meta slot is rewritten two commits
    /// later, so they are never read back through the mapping).
    pub(crate) inline: Arc<InlineLists>,
}

impl PageSource for Snapshot {
    fn page_bytes(&self, id: PageId) -> Result<&[u8]> {
        if id < 2 || id >= self.meta.page_count {
            return Err(Error::corrupt(
                id,
                format!("page id outside 2..{} (page count)", self.meta.page_count),
            ));
        }
        let start = id as usize * PAGE_SIZE;
        // Mapping length is checked against the page count when the snapshot is made (I3);
        // `get` keeps even a bug from reading past it.
        self.mapping
            .bytes()
            .get(start..start + PAGE_SIZE)
            .ok_or_else(|| Error::corrupt(id, "page lies past the mapped file"))
    }
    fn verified_pages(&self) -> Option<&VerifiedPages> {
        Some(&self.verified)
    }
}

/// A tree node as the reader sees it: a page in the mapping, or the writer's in-memory node.
#[derive(Clone, Copy)]
pub(crate) enum NodeView<'a> {
    Leaf(LeafPage<'a>),
    Branch(BranchPage<'a>),
    Mem(&'a Node),
}

/// A value as found in a node, not yet read out of any overflow chain.
#[derive(Clone, Copy)]
pub(crate) enum ValueRef<'a> {
    Inline(&'a [u8]),
    Overflow { first_page: PageId, len: u32 },
}

impl<'a> ValueRef<'a> {
    pub(crate) fn load(self, src: &impl PageSource) -> Result<Vec<u8>> {
        match self {
            ValueRef::Inline(b) => Ok(b.to_vec()),
            ValueRef::Overflow { first_page, len } => read_chain(src, first_page, len),
        }
    }
}

fn stored_key<'a>(src: &impl PageSource, stored: Stored<'a>) -> Result<Cow<'a, [u8]>> {
    match stored {
        Stored::Inline(b) => Ok(Cow::Borrowed(b)),
        Stored::Overflow { first_page, len } => Ok(Cow::Owned(read_chain(src, first_page, len)?)),
    }
}

impl<'a> NodeView<'a> {
    pub(crate) fn load<S: PageSource>(src: &'a S, id: PageId) -> Result<NodeView<'a>> {
        if let Some(node) = src.dirty_node(id) {
            return Ok(NodeView::Mem(node));
        }
        let bytes = src.page_bytes(id)?;
        let verified = src.verified_pages();
        let known_good = verified.is_some_and(|v| v.is_verified(id));
        let view = match bytes.get(20) {
            Some(3) => NodeView::Branch(BranchPage::parse(id, bytes, known_good)?),
            _ => NodeView::Leaf(LeafPage::parse(id, bytes, known_good)?),
        };
        if let (Some(v), false) = (verified, known_good) {
            v.mark(id);
        }
        Ok(view)
    }

    pub(crate) fn is_leaf(&self) -> bool {
        match self {
            NodeView::Leaf(_) => true,
            NodeView::Branch(_) => false,
            NodeView::Mem(n) => n.is_leaf(),
        }
    }

    /// Leaf entries, or branch keys.
    pub(crate) fn len(&self) -> usize {
        match self {
            NodeView::Leaf(p) => p.len(),
            NodeView::Branch(p) => p.len(),
            NodeView::Mem(Node::Leaf(e)) => e.len(),
            NodeView::Mem(Node::Branch { keys, .. }) => keys.len(),
        }
    }

    pub(crate) fn key(&self, src: &impl PageSource, i: usize) -> Result<Cow<'a, [u8]>> {
        let out_of_range = || Error::corrupt(0, format!("in-memory key {i} out of range (bug)"));
        match *self {
            NodeView::Leaf(p) => stored_key(src, p.entry(i)?.0),
            NodeView::Branch(p) => stored_key(src, p.key(i)?),
            NodeView::Mem(Node::Leaf(e)) => {
                Ok(Cow::Borrowed(&e.get(i).ok_or_else(out_of_range)?.0.bytes))
            }
            NodeView::Mem(Node::Branch { keys, .. }) => {
                Ok(Cow::Borrowed(&keys.get(i).ok_or_else(out_of_range)?.bytes))
            }
        }
    }

    pub(crate) fn value(&self, i: usize) -> Result<ValueRef<'a>> {
        match *self {
            NodeView::Leaf(p) => Ok(match p.entry(i)?.1 {
                Stored::Inline(b) => ValueRef::Inline(b),
                Stored::Overflow { first_page, len } => ValueRef::Overflow { first_page, len },
            }),
            NodeView::Mem(Node::Leaf(e)) => match e.get(i).map(|(_, v)| v) {
                Some(Value::Inline(b)) => Ok(ValueRef::Inline(b)),
                Some(Value::Overflow { first_page, len }) => Ok(ValueRef::Overflow {
                    first_page: *first_page,
                    len: *len,
                }),
                None => Err(Error::corrupt(
                    0,
                    format!("in-memory entry {i} out of range (bug)"),
                )),
            },
            _ => Err(Error::corrupt(0, "value asked of a branch (bug)")),
        }
    }

    pub(crate) fn child(&self, i: usize) -> Result<PageId> {
        match *self {
            NodeView::Branch(p) => p.child(i),
            NodeView::Mem(Node::Branch { children, .. }) => {
                children.get(i).copied().ok_or_else(|| {
                    Error::corrupt(0, format!("in-memory child {i} out of range (bug)"))
                })
            }
            _ => Err(Error::corrupt(0, "child asked of a leaf (bug)")),
        }
    }

    /// Leaf: `Ok(i)` if entry `i` has `key`, else `Err(i)` where it would go.
    pub(crate) fn search_leaf(
        &self,
        src: &impl PageSource,
        key: &[u8],
    ) -> Result<Result<usize, usize>> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(src, mid)?.as_ref().cmp(key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(lo))
    }

    /// Branch: the child whose key range holds `key` (number of keys `<= key`).
    pub(crate) fn child_index(&self, src: &impl PageSource, key: &[u8]) -> Result<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(src, mid)?.as_ref() <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

/// Finds `key` in the tree at `root`; returns its value reference.
pub(crate) fn lookup<'a, S: PageSource>(
    src: &'a S,
    root: PageId,
    key: &[u8],
) -> Result<Option<ValueRef<'a>>> {
    if root == 0 {
        return Ok(None);
    }
    let mut id = root;
    for _ in 0..MAX_TREE_DEPTH {
        let node = NodeView::load(src, id)?;
        if node.is_leaf() {
            return match node.search_leaf(src, key)? {
                Ok(i) => Ok(Some(node.value(i)?)),
                Err(_) => Ok(None),
            };
        }
        id = node.child(node.child_index(src, key)?)?;
    }
    Err(Error::corrupt(
        id,
        format!("tree deeper than {MAX_TREE_DEPTH} levels (cycle?)"),
    ))
}
