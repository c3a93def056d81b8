//! `check()`: walks every page of a snapshot and proves the file is whole, and `stats()`.

use crate::error::{Error, Result};
use crate::freelist::FreeList;
use crate::idlist::read_list;
use crate::overflow::chain_ids;
use crate::page::{PageType, Stored};
use crate::source::{FullyVerified, NodeView, PageSource};
use crate::txn::{BucketDescriptor, ReadTxn};
use crate::{PageId, TxnId, MAX_TREE_DEPTH, PAGE_SIZE};

/// Shape of one bucket's tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketStats {
    /// Bucket name.
    pub name: Vec<u8>,
    /// Entries (key/value pairs).
    pub entries: u64,
    /// Levels from root to leaf (0 for an empty bucket).
    pub depth: usize,
    /// Leaf pages.
    pub leaf_pages: u64,
    /// Branch pages.
    pub branch_pages: u64,
    /// Overflow pages (long values and keys).
    pub overflow_pages: u64,
}

/// Space and shape of a snapshot, as found by walking it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// The commit walked.
    pub txn: TxnId,
    /// File length in bytes (includes space grown ahead of need).
    pub file_bytes: u64,
    /// Pages in use or free (`page_count * 4096` bytes are meaningful).
    pub page_count: u64,
    /// Free pages (reusable once no reader sees them).
    pub free_pages: u64,
    /// Bytes of reachable pages (meta pages included).
    pub used_bytes: u64,
    /// One entry per bucket, by name.
    pub buckets: Vec<BucketStats>,
}

/// Each page in `0..page_count` is claimed exactly once.
struct Claims {
    owner: Vec<u8>,
}

const UNCLAIMED: u8 = 0;
const REACHABLE: u8 = 1;
const FREE: u8 = 2;

impl Claims {
    fn claim(&mut self, id: PageId, how: u8, what: &str) -> Result<()> {
        let slot = usize::try_from(id)
            .ok()
            .and_then(|i| self.owner.get_mut(i))
            .filter(|_| id >= 2)
            .ok_or_else(|| Error::corrupt(id, format!("{what} points outside the file")))?;
        match *slot {
            UNCLAIMED => {
                *slot = how;
                Ok(())
            }
            REACHABLE if how == FREE => Err(Error::corrupt(id, "page is both reachable and free")),
            FREE if how == REACHABLE => Err(Error::corrupt(id, "page is both reachable and free")),
            _ => Err(Error::corrupt(id, format!("{what} reached twice"))),
        }
    }
}

/// A node still to visit: (page, depth, lower key bound inclusive, upper bound exclusive).
type NodeToVisit = (PageId, usize, Option<Vec<u8>>, Option<Vec<u8>>);

/// Walks one tree: checksums, key order within each node and against the parent's bounds,
/// equal leaf depth, and claims of every node and overflow page. `on_entry` sees each entry.
fn walk_tree(
    src: &impl PageSource,
    root: PageId,
    claims: &mut Claims,
    stats: &mut BucketStats,
    mut on_entry: impl FnMut(PageId, &[u8], Stored<'_>) -> Result<()>,
) -> Result<()> {
    if root == 0 {
        return Ok(());
    }
    let mut stack: Vec<NodeToVisit> = vec![(root, 1, None, None)];
    let mut leaf_depth = None;
    while let Some((id, depth, lower, upper)) = stack.pop() {
        if depth > MAX_TREE_DEPTH {
            return Err(Error::corrupt(
                id,
                format!("tree deeper than {MAX_TREE_DEPTH} levels"),
            ));
        }
        claims.claim(id, REACHABLE, "tree node")?;
        let node = NodeView::load(src, id)?;
        let mut keys: Vec<Vec<u8>> = Vec::with_capacity(node.len());
        for i in 0..node.len() {
            let key = node.key(src, i)?.into_owned();
            let in_bounds =
                lower.as_ref().is_none_or(|l| key >= *l) && upper.as_ref().is_none_or(|u| key < *u);
            if !in_bounds {
                return Err(Error::corrupt(
                    id,
                    format!("key {i} lies outside its parent's range"),
                ));
            }
            if keys.last().is_some_and(|prev| *prev >= key) {
                return Err(Error::corrupt(
                    id,
                    format!("key {i} is not above key {}", i - 1),
                ));
            }
            keys.push(key);
        }
        match node {
            NodeView::Leaf(page) => {
                if *leaf_depth.get_or_insert(depth) != depth {
                    return Err(Error::corrupt(id, "leaves at different depths"));
                }
                stats.leaf_pages += 1;
                stats.entries += page.len() as u64;
                for (i, key) in keys.iter().enumerate() {
                    let (stored_key, value) = page.entry(i)?;
                    for stored in [stored_key, value] {
                        if let Stored::Overflow { first_page, len } = stored {
                            for page_id in chain_ids(src, first_page, len)? {
                                claims.claim(page_id, REACHABLE, "overflow page")?;
                                stats.overflow_pages += 1;
                            }
                        }
                    }
                    on_entry(id, key, value)?;
                }
            }
            NodeView::Branch(page) => {
                stats.branch_pages += 1;
                for i in 0..page.len() {
                    if let Stored::Overflow { first_page, len } = page.key(i)? {
                        for page_id in chain_ids(src, first_page, len)? {
                            claims.claim(page_id, REACHABLE, "overflow page")?;
                            stats.overflow_pages += 1;
                        }
                    }
                }
                for i in 0..=page.len() {
                    let lo = if i == 0 {
                        lower.clone()
                    } else {
                        Some(keys[i - 1].clone())
                    };
                    let hi = if i == page.len() {
                        upper.clone()
                    } else {
                        Some(keys[i].clone())
                    };
                    stack.push((page.child(i)?, depth + 1, lo, hi));
                }
            }
            NodeView::Mem(_) => {
                return Err(Error::corrupt(id, "snapshot has no dirty nodes (bug)"))
            }
        }
    }
    stats.depth = leaf_depth.unwrap_or(0);
    Ok(())
}

impl ReadTxn<'_> {
    /// Walks every page of this snapshot: checksums, page ids and types, key order, tree
    /// shape, overflow chains, bucket entry counts, and that every page is reachable or free
    /// exactly once. Returns the statistics gathered on the way.
    pub fn check(&self) -> Result<Stats> {
        // Every checksum is computed again, even of pages readers already verified.
        let src = &FullyVerified(&self.snapshot);
        let meta = self.snapshot.meta;
        let page_count = usize::try_from(meta.page_count)
            .map_err(|_| Error::corrupt(meta.slot(), "page count too large"))?;
        let mut claims = Claims {
            owner: vec![UNCLAIMED; page_count],
        };
        claims.owner[0] = REACHABLE;
        claims.owner[1] = REACHABLE;
        let mut buckets: Vec<(Vec<u8>, BucketDescriptor)> = Vec::new();
        let mut catalog_stats = BucketStats::default();
        walk_tree(
            src,
            meta.catalog_root,
            &mut claims,
            &mut catalog_stats,
            |page, key, value| {
                let Stored::Inline(bytes) = value else {
                    return Err(Error::corrupt(
                        page,
                        "bucket descriptor in an overflow chain",
                    ));
                };
                buckets.push((key.to_vec(), BucketDescriptor::decode(page, bytes)?));
                Ok(())
            },
        )?;
        let mut stats = Stats {
            txn: meta.txn,
            file_bytes: self
                .db()
                .file
                .len_bytes()
                .map_err(Error::io("reading the file length"))?,
            page_count: meta.page_count,
            ..Stats::default()
        };
        for (name, desc) in buckets {
            let mut bucket = BucketStats {
                name,
                ..BucketStats::default()
            };
            walk_tree(src, desc.root, &mut claims, &mut bucket, |_, _, _| Ok(()))?;
            if bucket.entries != desc.entries {
                return Err(Error::corrupt(
                    desc.root,
                    format!(
                        "bucket holds {} entries, catalog says {}",
                        bucket.entries, desc.entries
                    ),
                ));
            }
            stats.buckets.push(bucket);
        }
        let mut free = FreeList::read(src, &self.snapshot)?;
        for &id in &free.chain {
            claims.claim(id, REACHABLE, "free-list page")?;
        }
        for id in free.all_ids()? {
            claims.claim(id, FREE, "free-list entry")?;
        }
        stats.free_pages = free.len() as u64;
        let (listed, written_chain) = read_list(
            src,
            meta.written_head,
            &self.snapshot.inline.written,
            meta.slot(),
            meta.page_count,
            PageType::WrittenList,
        )?;
        for &id in &written_chain {
            claims.claim(id, REACHABLE, "written-list page")?;
        }
        for (id, at) in listed {
            // Everything the last commit wrote is part of its state, never free.
            if claims.owner.get(id as usize) != Some(&REACHABLE) {
                return Err(Error::corrupt(
                    at,
                    format!("written list names page {id}, which is not reachable"),
                ));
            }
        }
        if let Some(leaked) = claims.owner.iter().position(|&c| c == UNCLAIMED) {
            return Err(Error::corrupt(
                leaked as PageId,
                "page is neither reachable nor free",
            ));
        }
        stats.used_bytes = (meta.page_count - stats.free_pages) * PAGE_SIZE as u64;
        Ok(stats)
    }

    /// Space and shape statistics (walks the whole snapshot, as [`ReadTxn::check`] does).
    pub fn stats(&self) -> Result<Stats> {
        self.check()
    }
}
