//! The write transaction's pages: what it changed (in memory until commit), what it allocated,
//! and what it freed. Copy-on-write happens here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::freelist::FreeList;
use crate::node::Node;
use crate::overflow::{chain_ids, encode_chain, pages_for, read_chain};
use crate::source::{NodeView, PageSource, Snapshot, VerifiedPages};
use crate::{PageId, TxnId};

pub(crate) struct DirtyPages {
    /// The last commit, which this transaction builds on.
    pub(crate) base: Arc<Snapshot>,
    /// Id this transaction commits as.
    pub(crate) txn: TxnId,
    /// Tree nodes changed or created by this transaction.
    pub(crate) nodes: HashMap<PageId, Node>,
    /// Sealed overflow pages written by this transaction.
    pub(crate) raw: HashMap<PageId, Vec<u8>>,
    pub(crate) freelist: FreeList,
    pub(crate) page_count: u64,
    /// Pages handed out by this transaction: no snapshot can see them, so freeing one makes it
    /// reusable at once.
    allocated: HashSet<PageId>,
    /// Committed pages this transaction freed.
    pub(crate) freed: HashSet<PageId>,
}

impl PageSource for DirtyPages {
    fn page_bytes(&self, id: PageId) -> Result<&[u8]> {
        match self.raw.get(&id) {
            Some(page) => Ok(page),
            None => self.base.page_bytes(id),
        }
    }
    fn dirty_node(&self, id: PageId) -> Option<&Node> {
        self.nodes.get(&id)
    }
    fn verified_pages(&self) -> Option<&VerifiedPages> {
        self.base.verified_pages()
    }
}

impl DirtyPages {
    pub(crate) fn new(base: Arc<Snapshot>, freelist: FreeList, page_count: u64) -> DirtyPages {
        let txn = base.meta.txn + 1;
        DirtyPages {
            base,
            txn,
            nodes: HashMap::new(),
            raw: HashMap::new(),
            freelist,
            page_count,
            allocated: HashSet::new(),
            freed: HashSet::new(),
        }
    }

    /// A page no snapshot can reach: a reusable free page, or a new one at the end.
    pub(crate) fn alloc(&mut self) -> PageId {
        let id = self.freelist.pop().unwrap_or_else(|| {
            self.page_count += 1;
            self.page_count - 1
        });
        let fresh = self.allocated.insert(id);
        debug_assert!(fresh, "page {id} allocated twice in one transaction");
        id
    }

    /// Releases a page this transaction no longer references. Freeing a committed page twice
    /// means two references reached it: the file is corrupt (a tree is not a tree).
    pub(crate) fn free(&mut self, id: PageId) -> Result<()> {
        if self.allocated.remove(&id) {
            self.nodes.remove(&id);
            self.raw.remove(&id);
            self.freelist.free_now(id);
        } else {
            if !self.freed.insert(id) {
                return Err(Error::corrupt(id, "page is referenced twice"));
            }
            // Committed snapshots may still reach it (the mmap invariant, I1).
            self.freelist.free_later(self.txn, id);
        }
        Ok(())
    }

    /// Makes page `id` writable: returns it if this transaction already owns it, else copies it
    /// into a new page and frees the original.
    pub(crate) fn cow(&mut self, id: PageId) -> Result<PageId> {
        if self.nodes.contains_key(&id) {
            return Ok(id);
        }
        let node = match NodeView::load(self, id)? {
            NodeView::Leaf(page) => {
                Node::from_leaf(&page, |first, len| read_chain(self, first, len))?
            }
            NodeView::Branch(page) => {
                Node::from_branch(&page, |first, len| read_chain(self, first, len))?
            }
            NodeView::Mem(_) => return Err(Error::corrupt(id, "dirty node not found (bug)")),
        };
        let new_id = self.alloc();
        self.nodes.insert(new_id, node);
        self.free(id)?;
        Ok(new_id)
    }

    pub(crate) fn node_mut(&mut self, id: PageId) -> Result<&mut Node> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| Error::corrupt(id, "node is not dirty (bug)"))
    }

    /// Writes `data` to a new overflow chain; returns its first page.
    pub(crate) fn write_chain(&mut self, data: &[u8]) -> PageId {
        let ids: Vec<PageId> = (0..pages_for(data.len())).map(|_| self.alloc()).collect();
        for (id, page) in ids.iter().zip(encode_chain(data, &ids, self.txn)) {
            self.raw.insert(*id, page);
        }
        ids[0]
    }

    pub(crate) fn free_chain(&mut self, first: PageId, len: u32) -> Result<()> {
        for id in chain_ids(self, first, len)? {
            self.free(id)?;
        }
        Ok(())
    }

    /// Gives every long key without a chain (new separators, newly put keys) its chain.
    pub(crate) fn write_key_chains(&mut self) {
        let mut wanted: Vec<(PageId, usize, Vec<u8>)> = Vec::new();
        for (id, node) in &self.nodes {
            let keys: Vec<&crate::node::Key> = match node {
                Node::Leaf(entries) => entries.iter().map(|(k, _)| k).collect(),
                Node::Branch { keys, .. } => keys.iter().collect(),
            };
            for (i, key) in keys.into_iter().enumerate() {
                if !key.is_inline() && key.chain.is_none() {
                    wanted.push((*id, i, key.bytes.clone()));
                }
            }
        }
        for (id, i, bytes) in wanted {
            let chain = self.write_chain(&bytes);
            match self.nodes.get_mut(&id) {
                Some(Node::Leaf(entries)) => entries[i].0.chain = Some(chain),
                Some(Node::Branch { keys, .. }) => keys[i].chain = Some(chain),
                None => debug_assert!(false, "node vanished while writing key chains"),
            }
        }
    }
}
