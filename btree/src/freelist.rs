//! Free pages: reusable now, and pending (freed by a transaction some reader may still see).

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::idlist::read_list;
use crate::page::PageType;
use crate::source::{PageSource, Snapshot};
use crate::{PageId, TxnId};

#[derive(Clone, Debug, Default)]
pub(crate) struct FreeList {
    /// Reusable now: no snapshot that is alive or may be opened can reach these pages.
    free: BTreeSet<PageId>,
    /// Freed by transaction `t`: still reachable from snapshots older than `t`.
    pending: BTreeMap<TxnId, Vec<PageId>>,
    /// The pages of the on-disk chain this list was read from (or last written to).
    pub(crate) chain: Vec<PageId>,
}

impl FreeList {
    /// Takes the lowest reusable page, keeping the file dense at its start.
    pub(crate) fn pop(&mut self) -> Option<PageId> {
        self.free.pop_first()
    }

    pub(crate) fn free_now(&mut self, id: PageId) {
        // A set: a page listed twice (possible only in a corrupt file) is still free once.
        self.free.insert(id);
    }

    pub(crate) fn free_later(&mut self, freed_by: TxnId, id: PageId) {
        self.pending.entry(freed_by).or_default().push(id);
    }

    /// Makes reusable every page freed by a transaction `<= oldest_snapshot`: the oldest
    /// snapshot any reader holds (or the last commit if there is no reader) cannot reach them.
    pub(crate) fn release_up_to(&mut self, oldest_snapshot: TxnId) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > oldest_snapshot {
                break;
            }
            for id in entry.remove() {
                self.free_now(id);
            }
        }
    }

    /// Pages free or pending.
    pub(crate) fn len(&self) -> usize {
        self.free.len() + self.pending.values().map(Vec::len).sum::<usize>()
    }

    /// Every free or pending page, sorted: what the on-disk list stores.
    pub(crate) fn all_ids(&self) -> Vec<PageId> {
        let mut ids: Vec<PageId> = self.free.iter().copied().collect();
        ids.extend(self.pending.values().flatten());
        ids.sort_unstable();
        ids
    }

    /// Reads the free list of `snapshot`: from its meta page or its chain.
    pub(crate) fn read(src: &impl PageSource, snapshot: &Snapshot) -> Result<FreeList> {
        let meta = snapshot.meta;
        let (ids, chain) = read_list(
            src,
            meta.freelist_head,
            &snapshot.inline.free,
            meta.slot(),
            meta.page_count,
            PageType::FreeList,
        )?;
        let mut list = FreeList {
            chain,
            ..FreeList::default()
        };
        for (id, at) in ids {
            if !list.free.insert(id) {
                return Err(Error::corrupt(at, format!("page {id} listed free twice")));
            }
        }
        Ok(list)
    }

    /// Whether `id` is free or pending (slow; for checks).
    pub(crate) fn contains(&self, id: PageId) -> bool {
        self.free.contains(&id) || self.pending.values().any(|v| v.contains(&id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_pages_are_released_only_up_to_the_oldest_snapshot() {
        let mut list = FreeList::default();
        list.free_later(5, 10);
        list.free_later(7, 11);
        list.release_up_to(6);
        assert_eq!(list.pop(), Some(10));
        assert_eq!(
            list.pop(),
            None,
            "page freed by txn 7 is still visible to snapshot 6"
        );
        list.release_up_to(7);
        assert_eq!(list.pop(), Some(11));
    }
}
