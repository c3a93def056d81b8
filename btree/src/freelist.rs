//! Free pages: reusable now, and pending (freed by a transaction some reader may still see).

use crate::error::{Error, Result};
use crate::idlist::read_list;
use crate::page::PageType;
use crate::source::{PageSource, Snapshot};
use crate::{PageId, TxnId};

/// Kept in flat vectors, not tree sets: the writer clones the list at every `begin_write` (an
/// aborted transaction leaves it untouched) and every commit writes all of it out in order, so
/// a copy must be one `memcpy` and the sorted listing one merge. Between two checkpoints a busy
/// key space holds a few thousand ids here; as a `BTreeSet` and a map of vectors the clone and
/// the sort cost a single-put commit ~20 µs, a third of its apply.
#[derive(Clone, Debug, Default)]
pub(crate) struct FreeList {
    /// Reusable now: no snapshot that is alive or may be opened can reach these pages. Sorted
    /// in descending order, so the lowest page is popped from the end.
    free: Vec<PageId>,
    /// Pages freed by the transaction that allocated them (reusable at once), unsorted and
    /// reused first; merged into `free` when the list is settled. Inserting each into `free`
    /// would cost a transaction freeing many of them the square of their number.
    freshly_free: Vec<PageId>,
    /// Freed by transaction `t`: still reachable from snapshots older than `t`. In the order
    /// freed, which is transaction order: a transaction frees only under its own, newest id.
    pending: Vec<(TxnId, PageId)>,
    /// The ids of `pending`, sorted ascending (what a commit lists), but for `freshly_pending`.
    pending_sorted: Vec<PageId>,
    /// Ids freed since the list was last settled, unsorted: a transaction freeing many pages
    /// (a deleted bucket) appends each, and one sort merges them in (inserting each in order
    /// would cost the square of their number).
    freshly_pending: Vec<PageId>,
    /// The pages of the on-disk chain this list was read from (or last written to).
    pub(crate) chain: Vec<PageId>,
}

impl FreeList {
    /// Takes a page just freed again if there is one, else the lowest reusable page, keeping
    /// the file dense at its start.
    pub(crate) fn pop(&mut self) -> Option<PageId> {
        self.freshly_free.pop().or_else(|| self.free.pop())
    }

    /// Frees a page no snapshot has seen (its own transaction allocated it).
    pub(crate) fn free_now(&mut self, id: PageId) {
        self.freshly_free.push(id);
    }

    pub(crate) fn free_later(&mut self, freed_by: TxnId, id: PageId) {
        debug_assert!(
            self.pending
                .last()
                .is_none_or(|&(last, _)| last <= freed_by),
            "pages are freed in transaction order"
        );
        self.pending.push((freed_by, id));
        self.freshly_pending.push(id);
    }

    /// Merges the freshly freed ids into `free`.
    fn settle_free(&mut self) {
        if !self.freshly_free.is_empty() {
            let mut fresh = std::mem::take(&mut self.freshly_free);
            fresh.sort_unstable();
            self.free = merge_into_descending(std::mem::take(&mut self.free), fresh);
        }
    }

    /// Merges the freshly pending ids into `pending_sorted`.
    fn settle_pending(&mut self) {
        if self.freshly_pending.is_empty() {
            return;
        }
        let mut fresh = std::mem::take(&mut self.freshly_pending);
        fresh.sort_unstable();
        let mut merged = Vec::with_capacity(self.pending_sorted.len() + fresh.len());
        let mut sorted = self.pending_sorted.iter().copied().peekable();
        let mut fresh = fresh.into_iter().peekable();
        loop {
            match (sorted.peek(), fresh.peek()) {
                (Some(&a), Some(&b)) if a <= b => merged.extend(sorted.next()),
                (_, Some(_)) => merged.extend(fresh.next()),
                (Some(_), None) => merged.extend(sorted.by_ref()),
                (None, None) => break,
            }
        }
        self.pending_sorted = merged;
    }

    /// Makes reusable every page freed by a transaction `<= oldest_snapshot`: the oldest
    /// snapshot any reader holds (or the last commit if there is no reader) cannot reach them.
    pub(crate) fn release_up_to(&mut self, oldest_snapshot: TxnId) {
        let released = self
            .pending
            .partition_point(|&(freed_by, _)| freed_by <= oldest_snapshot);
        if released == 0 {
            return;
        }
        self.settle_pending();
        let mut ids: Vec<PageId> = self.pending.drain(..released).map(|(_, id)| id).collect();
        ids.sort_unstable();
        self.pending_sorted
            .retain(|id| ids.binary_search(id).is_err());
        self.free = merge_into_descending(std::mem::take(&mut self.free), ids);
    }

    /// Pages free or pending.
    pub(crate) fn len(&self) -> usize {
        self.free.len() + self.freshly_free.len() + self.pending.len()
    }

    /// Every free or pending page, sorted: what the on-disk list stores. A page both free
    /// and pending was listed free while the tree still reached it (a corrupt file): the
    /// commit fails rather than write a list that would hand the page out twice.
    pub(crate) fn all_ids(&mut self) -> Result<Vec<PageId>> {
        self.settle_free();
        self.settle_pending();
        let mut ids = Vec::with_capacity(self.len());
        let mut free = self.free.iter().rev().copied().peekable();
        let mut pending = self.pending_sorted.iter().copied().peekable();
        loop {
            match (free.peek(), pending.peek()) {
                (Some(&a), Some(&b)) => {
                    if a == b {
                        return Err(Error::corrupt(
                            a,
                            "page listed free is still in use (the free list names a page the tree reaches)",
                        ));
                    }
                    if a < b {
                        ids.push(a);
                        free.next();
                    } else {
                        ids.push(b);
                        pending.next();
                    }
                }
                (Some(_), None) => ids.extend(free.by_ref()),
                (None, Some(_)) => ids.extend(pending.by_ref()),
                (None, None) => break,
            }
        }
        Ok(ids)
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
        let mut ids = ids;
        // Descending, as `free` keeps them (written ascending, but order is not trusted).
        // Stable: of a page listed twice, the later listing is the one reported.
        ids.sort_by_key(|&(id, _)| std::cmp::Reverse(id));
        if let Some(twice) = ids.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            let (id, at) = twice[1];
            return Err(Error::corrupt(at, format!("page {id} listed free twice")));
        }
        let free = ids.into_iter().map(|(id, _)| id).collect();
        Ok(FreeList {
            free,
            chain,
            ..FreeList::default()
        })
    }

    /// Whether `id` is free or pending (slow; for checks).
    pub(crate) fn contains(&self, id: PageId) -> bool {
        self.free.binary_search_by(|probe| id.cmp(probe)).is_ok()
            || self.pending_sorted.binary_search(&id).is_ok()
            || self.freshly_pending.contains(&id)
            || self.freshly_free.contains(&id)
    }
}

/// Merges ascending `ids` into descending `free`, dropping duplicates (a page listed twice,
/// possible only in a corrupt file, is still free once).
fn merge_into_descending(free: Vec<PageId>, ids: Vec<PageId>) -> Vec<PageId> {
    let mut merged = Vec::with_capacity(free.len() + ids.len());
    let mut free = free.into_iter().rev().peekable();
    let mut ids = ids.into_iter().peekable();
    loop {
        let next = match (free.peek(), ids.peek()) {
            (Some(&a), Some(&b)) if a <= b => free.next(),
            (_, Some(_)) => ids.next(),
            (Some(_), None) => free.next(),
            (None, None) => break,
        };
        if let Some(id) = next {
            if merged.last() != Some(&id) {
                merged.push(id);
            }
        }
    }
    merged.reverse();
    merged
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

    #[test]
    fn a_page_both_free_and_in_use_fails_the_listing() {
        // As when a corrupt file lists page 10 free while the tree reaches it, and a commit
        // then frees it again.
        let mut list = FreeList::default();
        list.free_now(10);
        list.free_later(5, 10);
        match list.all_ids() {
            Err(Error::Corrupt { page: 10, reason }) => assert!(reason.contains("still in use")),
            other => panic!("expected a corrupt-file error, got {other:?}"),
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Pop,
        FreeNow(PageId),
        FreeLater(PageId),
        NextTxn,
        Release(TxnId),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            2 => Just(Op::Pop),
            2 => (2..300u64).prop_map(Op::FreeNow),
            3 => (2..300u64).prop_map(Op::FreeLater),
            1 => Just(Op::NextTxn),
            1 => (0..40u64).prop_map(Op::Release),
        ]
    }

    proptest::proptest! {
        /// The flat-vector list behaves as the plain sets it replaced: lowest free page first,
        /// pending pages held back until released, every page listed once and in order.
        #[test]
        fn behaves_as_a_set_of_free_and_a_map_of_pending_pages(
            ops in proptest::collection::vec(op(), 0..300)
        ) {
            use std::collections::{BTreeMap, BTreeSet};
            let mut list = FreeList::default();
            let mut free = BTreeSet::new();
            // Pages freed by their own transaction, reused first (last freed, first reused).
            let mut fresh: Vec<PageId> = Vec::new();
            let mut pending: BTreeMap<TxnId, Vec<PageId>> = BTreeMap::new();
            let mut txn: TxnId = 1;
            for (step, op) in ops.into_iter().enumerate() {
                let known = |id: PageId, free: &BTreeSet<PageId>, pending: &BTreeMap<TxnId, Vec<PageId>>| {
                    free.contains(&id) || pending.values().any(|ids| ids.contains(&id))
                };
                match op {
                    Op::Pop => {
                        let expected = fresh.pop().or_else(|| free.pop_first());
                        proptest::prop_assert_eq!(list.pop(), expected);
                    }
                    // The writer never frees a page twice.
                    Op::FreeNow(id) if !known(id, &free, &pending) && !fresh.contains(&id) => {
                        list.free_now(id);
                        fresh.push(id);
                    }
                    Op::FreeLater(id) if !known(id, &free, &pending) && !fresh.contains(&id) => {
                        list.free_later(txn, id);
                        pending.entry(txn).or_default().push(id);
                    }
                    Op::FreeNow(_) | Op::FreeLater(_) => {}
                    Op::NextTxn => txn += 1,
                    Op::Release(up_to) => {
                        list.release_up_to(up_to);
                        while let Some(entry) = pending.first_entry() {
                            if *entry.key() > up_to {
                                break;
                            }
                            free.extend(entry.remove());
                        }
                    }
                }
                proptest::prop_assert_eq!(list.len(), free.len() + fresh.len() + pending.values().map(Vec::len).sum::<usize>());
                for id in 0..302 {
                    let listed = known(id, &free, &pending) || fresh.contains(&id);
                    proptest::prop_assert_eq!(list.contains(id), listed);
                }
                if step % 3 != 0 {
                    // Let freshly freed pages pile up between listings.
                    continue;
                }
                // Listing (a commit) settles the list: fresh pages join the lowest-first order.
                free.extend(fresh.drain(..));
                let mut all: Vec<PageId> = free.iter().copied().collect();
                all.extend(pending.values().flatten());
                all.sort_unstable();
                proptest::prop_assert_eq!(list.all_ids().unwrap(), all);
            }
        }
    }
}
