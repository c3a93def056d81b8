//! Free pages: reusable now, and pending (freed by a transaction some reader may still see).

use crate::error::{Error, Result};
use crate::idlist::read_list;
use crate::page::PageType;
use crate::source::{PageSource, Snapshot};
use crate::{PageId, TxnId};

/// Kept in flat vectors, not trees: every write transaction starts from a copy of the list
/// and every commit stores all of it, so copying and listing must be cheap (one small commit
/// per applied Raft batch; between checkpoints a thousand or more pages are pending).
#[derive(Clone, Debug, Default)]
pub(crate) struct FreeList {
    /// Reusable now: no snapshot that is alive or may be opened can reach these pages. Sorted
    /// from highest to lowest, so the lowest pops off the end.
    free: Vec<PageId>,
    /// Freed by transaction `t`: still reachable from snapshots older than `t`. In the order
    /// freed, which is transaction order (each transaction starts after the last committed).
    pending: Vec<(TxnId, PageId)>,
    /// Every free and pending page, sorted: what the on-disk list stores.
    all: Vec<PageId>,
    /// The pages of the on-disk chain this list was read from (or last written to).
    pub(crate) chain: Vec<PageId>,
}

impl FreeList {
    /// Takes the lowest reusable page, keeping the file dense at its start.
    pub(crate) fn pop(&mut self) -> Option<PageId> {
        let id = self.free.pop()?;
        match self.all.binary_search(&id) {
            Ok(at) => {
                self.all.remove(at);
            }
            Err(_) => debug_assert!(false, "free page {id} missing from the whole list"),
        }
        Some(id)
    }

    pub(crate) fn free_now(&mut self, id: PageId) {
        // A set: a page listed twice (possible only in a corrupt file) is still free once.
        if let Err(at) = self.all.binary_search(&id) {
            self.all.insert(at, id);
            let at = self.free.partition_point(|&higher| higher > id);
            self.free.insert(at, id);
        }
    }

    pub(crate) fn free_later(&mut self, freed_by: TxnId, id: PageId) {
        // Release takes a prefix of `pending`: it must stay in transaction order.
        debug_assert!(self.pending.last().is_none_or(|&(t, _)| t <= freed_by));
        if let Err(at) = self.all.binary_search(&id) {
            self.all.insert(at, id);
            self.pending.push((freed_by, id));
        }
    }

    /// Makes reusable every page freed by a transaction `<= oldest_snapshot`: the oldest
    /// snapshot any reader holds (or the last commit if there is no reader) cannot reach them.
    pub(crate) fn release_up_to(&mut self, oldest_snapshot: TxnId) {
        let released = self.pending.partition_point(|&(t, _)| t <= oldest_snapshot);
        if released == 0 {
            return;
        }
        self.free
            .extend(self.pending.drain(..released).map(|(_, id)| id));
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// Pages free or pending.
    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// Every free or pending page, sorted: what the on-disk list stores.
    pub(crate) fn all_ids(&self) -> Vec<PageId> {
        debug_assert_eq!(
            self.all,
            self.union_sorted(),
            "the whole list is free + pending"
        );
        self.all.clone()
    }

    /// The whole list recomputed from its parts (for checks).
    fn union_sorted(&self) -> Vec<PageId> {
        let mut ids: Vec<PageId> = self.free.clone();
        ids.extend(self.pending.iter().map(|&(_, id)| id));
        ids.sort_unstable();
        ids
    }

    /// Reads the free list of `snapshot`: from its meta page or its chain.
    pub(crate) fn read(src: &impl PageSource, snapshot: &Snapshot) -> Result<FreeList> {
        let meta = snapshot.meta;
        let (mut ids, chain) = read_list(
            src,
            meta.freelist_head,
            &snapshot.inline.free,
            meta.slot(),
            meta.page_count,
            PageType::FreeList,
        )?;
        ids.sort_unstable();
        if let Some(twice) = ids.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            let (id, at) = twice[1];
            return Err(Error::corrupt(at, format!("page {id} listed free twice")));
        }
        let all: Vec<PageId> = ids.iter().map(|&(id, _)| id).collect();
        Ok(FreeList {
            free: all.iter().rev().copied().collect(),
            pending: Vec::new(),
            all,
            chain,
        })
    }

    /// Whether `id` is free or pending.
    pub(crate) fn contains(&self, id: PageId) -> bool {
        self.all.binary_search(&id).is_ok()
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

    /// What the list must behave like: two sets, the way the format describes it.
    #[derive(Default)]
    struct Model {
        free: std::collections::BTreeSet<PageId>,
        pending: std::collections::BTreeMap<PageId, TxnId>,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Pop,
        FreeNow(PageId),
        /// Freed by the next transaction.
        FreeLater(PageId),
        Release(TxnId),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Op::Pop),
            (2u64..60).prop_map(Op::FreeNow),
            (2u64..60).prop_map(Op::FreeLater),
            (0u64..40).prop_map(Op::Release),
        ]
    }

    proptest::proptest! {
        #[test]
        fn the_list_pops_the_lowest_free_page_and_lists_free_and_pending_pages_once(
            ops in proptest::collection::vec(op(), 1..200)
        ) {
            let (mut list, mut model, mut txn) = (FreeList::default(), Model::default(), 0);
            for op in ops {
                match op {
                    Op::Pop => {
                        let expected = model.free.pop_first();
                        proptest::prop_assert_eq!(list.clone().pop(), expected);
                        proptest::prop_assert_eq!(list.pop(), expected);
                    }
                    Op::FreeNow(id) => {
                        list.free_now(id);
                        if !model.pending.contains_key(&id) {
                            model.free.insert(id);
                        }
                    }
                    Op::FreeLater(id) => {
                        txn += 1;
                        list.free_later(txn, id);
                        if !model.free.contains(&id) {
                            model.pending.entry(id).or_insert(txn);
                        }
                    }
                    Op::Release(oldest) => {
                        list.release_up_to(oldest);
                        let released: Vec<PageId> = model
                            .pending
                            .iter()
                            .filter(|&(_, &t)| t <= oldest)
                            .map(|(&id, _)| id)
                            .collect();
                        for id in released {
                            model.pending.remove(&id);
                            model.free.insert(id);
                        }
                    }
                }
                let mut all: Vec<PageId> = model.free.iter().copied().collect();
                all.extend(model.pending.keys());
                all.sort_unstable();
                proptest::prop_assert_eq!(list.all_ids(), all.clone());
                proptest::prop_assert_eq!(list.len(), all.len());
                for id in 0..62 {
                    proptest::prop_assert_eq!(list.contains(id), all.binary_search(&id).is_ok());
                }
            }
        }
    }
}
