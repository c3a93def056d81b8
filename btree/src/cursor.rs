//! Ordered iteration over one tree, forward or backward, between two bounds.

use std::ops::Bound;

use crate::dirty::DirtyPages;
use crate::error::{Error, Result};
use crate::source::{NodeView, PageSource, Snapshot};
use crate::{PageId, MAX_TREE_DEPTH};

/// What the iterator yields.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// A cursor over one tree. The stack holds, per level, a node and a position: for a branch the
/// child currently descended into; for a leaf the next entry (forward) or one past it (reverse).
struct Cursor<'a, S: PageSource> {
    src: &'a S,
    stack: Vec<(NodeView<'a>, usize)>,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    reverse: bool,
    keys_only: bool,
    started: bool,
    root: PageId,
    done: bool,
}

fn too_deep(id: PageId) -> Error {
    Error::corrupt(
        id,
        format!("tree deeper than {MAX_TREE_DEPTH} levels (cycle?)"),
    )
}

impl<'a, S: PageSource> Cursor<'a, S> {
    /// Descends from `id` to a leaf, going toward `target` if given, else to the near edge.
    fn descend(&mut self, mut id: PageId, seek: bool) -> Result<()> {
        loop {
            if self.stack.len() >= MAX_TREE_DEPTH {
                return Err(too_deep(id));
            }
            let node = NodeView::load(self.src, id)?;
            let bound = if self.reverse {
                &self.upper
            } else {
                &self.lower
            };
            let target = match bound {
                Bound::Included(k) | Bound::Excluded(k) if seek => Some(k.as_slice()),
                _ => None,
            };
            if node.is_leaf() {
                let pos = match (target, self.reverse) {
                    (None, false) => 0,
                    (None, true) => node.len(),
                    (Some(k), _) => {
                        let found = node.search_leaf(self.src, k)?;
                        let included = matches!(bound, Bound::Included(_));
                        match (found, self.reverse) {
                            (Ok(i), false) => i + usize::from(!included),
                            (Ok(i), true) => i + usize::from(included),
                            (Err(i), _) => i,
                        }
                    }
                };
                self.stack.push((node, pos));
                return Ok(());
            }
            let idx = match target {
                Some(k) => node.child_index(self.src, k)?,
                None if self.reverse => node.len(),
                None => 0,
            };
            self.stack.push((node, idx));
            id = node.child(idx)?;
        }
    }

    /// Moves to the next leaf in the direction of travel; false when there is none.
    fn next_leaf(&mut self) -> Result<bool> {
        self.stack.pop();
        while let Some((node, idx)) = self.stack.last_mut() {
            let next = if self.reverse {
                idx.checked_sub(1)
            } else if *idx < node.len() {
                Some(*idx + 1)
            } else {
                None
            };
            match next {
                Some(n) => {
                    *idx = n;
                    let child = node.child(n)?;
                    self.descend(child, false)?;
                    return Ok(true);
                }
                None => {
                    self.stack.pop();
                }
            }
        }
        Ok(false)
    }

    fn beyond_end(&self, key: &[u8]) -> bool {
        if self.reverse {
            match &self.lower {
                Bound::Included(l) => key < l.as_slice(),
                Bound::Excluded(l) => key <= l.as_slice(),
                Bound::Unbounded => false,
            }
        } else {
            match &self.upper {
                Bound::Included(u) => key > u.as_slice(),
                Bound::Excluded(u) => key >= u.as_slice(),
                Bound::Unbounded => false,
            }
        }
    }

    fn step(&mut self) -> Result<Option<Entry>> {
        if !self.started {
            self.started = true;
            if self.root == 0 {
                return Ok(None);
            }
            self.descend(self.root, true)?;
        }
        loop {
            let Some((leaf, pos)) = self.stack.last_mut() else {
                return Ok(None);
            };
            let leaf = *leaf;
            let at = if self.reverse {
                pos.checked_sub(1)
            } else if *pos < leaf.len() {
                Some(*pos)
            } else {
                None
            };
            let Some(at) = at else {
                if !self.next_leaf()? {
                    return Ok(None);
                }
                continue;
            };
            *pos = if self.reverse { at } else { at + 1 };
            let key = leaf.key(self.src, at)?;
            if self.beyond_end(&key) {
                return Ok(None);
            }
            let value = if self.keys_only {
                Vec::new()
            } else {
                leaf.value(at)?.load(self.src)?
            };
            return Ok(Some((key.into_owned(), value)));
        }
    }

    fn next_entry(&mut self) -> Option<Result<Entry>> {
        if self.done {
            return None;
        }
        let out = self.step().transpose();
        if !matches!(out, Some(Ok(_))) {
            self.done = true;
        }
        out
    }
}

enum Inner<'a> {
    Snapshot(Cursor<'a, Snapshot>),
    Dirty(Cursor<'a, DirtyPages>),
}

/// Entries of one bucket in key order (or reverse), as `(key, value)`; an error ends it.
pub struct Range<'a> {
    inner: Inner<'a>,
}

impl Iterator for Range<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Snapshot(c) => c.next_entry(),
            Inner::Dirty(c) => c.next_entry(),
        }
    }
}

/// Where a range starts and ends, and which way it goes.
pub(crate) struct RangeSpec {
    pub(crate) lower: Bound<Vec<u8>>,
    pub(crate) upper: Bound<Vec<u8>>,
    pub(crate) reverse: bool,
    pub(crate) keys_only: bool,
}

impl RangeSpec {
    pub(crate) fn new(bounds: impl std::ops::RangeBounds<[u8]>, reverse: bool) -> RangeSpec {
        RangeSpec {
            lower: bounds.start_bound().map(<[u8]>::to_vec),
            upper: bounds.end_bound().map(<[u8]>::to_vec),
            reverse,
            keys_only: false,
        }
    }

    /// The range of keys starting with `prefix`.
    pub(crate) fn prefix(prefix: &[u8], reverse: bool) -> RangeSpec {
        let mut end = prefix.to_vec();
        // The first key after every key with this prefix: bump the last byte below 0xff.
        let upper = loop {
            match end.pop() {
                None => break Bound::Unbounded,
                Some(0xff) => continue,
                Some(b) => {
                    end.push(b + 1);
                    break Bound::Excluded(end);
                }
            }
        };
        RangeSpec {
            lower: Bound::Included(prefix.to_vec()),
            upper,
            reverse,
            keys_only: false,
        }
    }

    fn cursor<'a, S: PageSource>(self, src: &'a S, root: PageId) -> Cursor<'a, S> {
        Cursor {
            src,
            stack: Vec::new(),
            lower: self.lower,
            upper: self.upper,
            reverse: self.reverse,
            keys_only: self.keys_only,
            started: false,
            root,
            done: false,
        }
    }

    pub(crate) fn over_snapshot(self, src: &Snapshot, root: PageId) -> Range<'_> {
        Range {
            inner: Inner::Snapshot(self.cursor(src, root)),
        }
    }

    pub(crate) fn over_dirty(self, src: &DirtyPages, root: PageId) -> Range<'_> {
        Range {
            inner: Inner::Dirty(self.cursor(src, root)),
        }
    }
}
