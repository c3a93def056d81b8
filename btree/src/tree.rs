//! Changing one tree inside a write transaction: insert with splits, remove with merges, and
//! freeing a whole tree. Iterative, with the path from root to leaf held in a bounded stack.

use crate::dirty::DirtyPages;
use crate::error::{Error, Result};
use crate::node::{value_is_inline, Key, Node, Value};
use crate::page::{BRANCH_SLOTS_AT, HEADER_BYTES, SLOT_BYTES};
use crate::source::{lookup, NodeView, ValueRef};
use crate::{PageId, MAX_TREE_DEPTH, PAGE_SIZE};

/// A node smaller than this after a delete tries to merge with a sibling.
const MERGE_BELOW_BYTES: usize = PAGE_SIZE / 4;

/// Copies the path from `root` to the leaf that holds `key`, so every node on it is writable.
/// Returns the path as (branch id, child index taken) and the leaf id.
fn cow_path(
    pages: &mut DirtyPages,
    root: &mut PageId,
    key: &[u8],
) -> Result<(Vec<(PageId, usize)>, PageId)> {
    let mut id = pages.cow(*root)?;
    *root = id;
    let mut path = Vec::new();
    loop {
        if path.len() >= MAX_TREE_DEPTH {
            return Err(Error::corrupt(
                id,
                format!("tree deeper than {MAX_TREE_DEPTH} levels"),
            ));
        }
        let (idx, child) = match pages.nodes.get(&id) {
            Some(node @ Node::Branch { children, .. }) => {
                let idx = NodeView::Mem(node).child_index(pages, key)?;
                (idx, children[idx])
            }
            Some(Node::Leaf(_)) => return Ok((path, id)),
            None => return Err(Error::corrupt(id, "path node is not dirty (bug)")),
        };
        let new_child = pages.cow(child)?;
        if let Node::Branch { children, .. } = pages.node_mut(id)? {
            children[idx] = new_child;
        }
        path.push((id, idx));
        id = new_child;
    }
}

/// Inserts or replaces; returns whether the key existed.
pub(crate) fn insert(
    pages: &mut DirtyPages,
    root: &mut PageId,
    key: &[u8],
    value: &[u8],
) -> Result<bool> {
    let value = if value_is_inline(value.len()) {
        Value::Inline(value.to_vec())
    } else {
        Value::Overflow {
            first_page: pages.write_chain(value),
            len: value.len() as u32,
        }
    };
    if *root == 0 {
        let id = pages.alloc();
        pages
            .nodes
            .insert(id, Node::Leaf(vec![(Key::new(key.to_vec()), value)]));
        *root = id;
        return Ok(false);
    }
    let (path, leaf) = cow_path(pages, root, key)?;
    let Node::Leaf(entries) = pages.node_mut(leaf)? else {
        return Err(Error::corrupt(leaf, "path does not end in a leaf (bug)"));
    };
    let (old, append) = match entries.binary_search_by(|(k, _)| k.bytes.as_slice().cmp(key)) {
        Ok(i) => (Some(std::mem::replace(&mut entries[i].1, value)), false),
        Err(i) => {
            entries.insert(i, (Key::new(key.to_vec()), value));
            (None, i + 1 == entries.len())
        }
    };
    let existed = old.is_some();
    if let Some(Value::Overflow { first_page, len }) = old {
        pages.free_chain(first_page, len)?;
    }
    split_upward(pages, root, path, leaf, append)?;
    Ok(existed)
}

/// Splits every node on the path that no longer fits, from the leaf up, growing a new root if
/// the old one splits.
fn split_upward(
    pages: &mut DirtyPages,
    root: &mut PageId,
    mut path: Vec<(PageId, usize)>,
    mut id: PageId,
    mut append: bool,
) -> Result<()> {
    loop {
        let node = pages.node_mut(id)?;
        if node.fits() {
            return Ok(());
        }
        let (separator, right) = node
            .split(append)
            .ok_or_else(|| Error::corrupt(id, "node cannot be split (bug)"))?;
        let right_id = pages.alloc();
        pages.nodes.insert(right_id, right);
        match path.pop() {
            None => {
                let new_root = pages.alloc();
                pages.nodes.insert(
                    new_root,
                    Node::Branch {
                        keys: vec![separator],
                        children: vec![id, right_id],
                    },
                );
                *root = new_root;
                return Ok(());
            }
            Some((parent, idx)) => {
                if let Node::Branch { keys, children } = pages.node_mut(parent)? {
                    keys.insert(idx, separator);
                    children.insert(idx + 1, right_id);
                    append = idx + 1 == keys.len();
                }
                id = parent;
            }
        }
    }
}

/// Removes `key`; returns whether it existed.
pub(crate) fn remove(pages: &mut DirtyPages, root: &mut PageId, key: &[u8]) -> Result<bool> {
    if lookup(pages, *root, key)?.is_none() {
        return Ok(false);
    }
    let (path, leaf) = cow_path(pages, root, key)?;
    let Node::Leaf(entries) = pages.node_mut(leaf)? else {
        return Err(Error::corrupt(leaf, "path does not end in a leaf (bug)"));
    };
    let Ok(i) = entries.binary_search_by(|(k, _)| k.bytes.as_slice().cmp(key)) else {
        return Err(Error::corrupt(
            leaf,
            "key found by lookup but not in its leaf",
        ));
    };
    let (old_key, old_value) = entries.remove(i);
    if let Some(chain) = old_key.chain {
        pages.free_chain(chain, old_key.bytes.len() as u32)?;
    }
    if let Value::Overflow { first_page, len } = old_value {
        pages.free_chain(first_page, len)?;
    }
    rebalance_upward(pages, root, path, leaf)?;
    Ok(true)
}

/// After a removal: merges small nodes with a sibling, from the leaf up, and shrinks the root.
fn rebalance_upward(
    pages: &mut DirtyPages,
    root: &mut PageId,
    mut path: Vec<(PageId, usize)>,
    mut id: PageId,
) -> Result<()> {
    while let Some((parent, idx)) = path.pop() {
        let node = pages.node_mut(id)?;
        let small = node.encoded_bytes() < MERGE_BELOW_BYTES;
        if !small {
            return Ok(());
        }
        let (left_idx, left, right, separator_bytes) = match pages.node_mut(parent)? {
            Node::Branch { keys, children } if !keys.is_empty() => {
                let left_idx = if idx > 0 { idx - 1 } else { 0 };
                let sep = keys[left_idx].bytes.len();
                (left_idx, children[left_idx], children[left_idx + 1], sep)
            }
            _ => {
                id = parent;
                continue;
            }
        };
        let left = pages.cow(left)?;
        let right = pages.cow(right)?;
        if let Node::Branch { children, .. } = pages.node_mut(parent)? {
            children[left_idx] = left;
            children[left_idx + 1] = right;
        }
        let left_bytes = pages.node_mut(left)?.encoded_bytes();
        let right_bytes = pages.node_mut(right)?.encoded_bytes();
        let merged_bytes = if pages.node_mut(left)?.is_leaf() {
            left_bytes + right_bytes - HEADER_BYTES
        } else {
            let sep_key = Key::new(vec![0; separator_bytes]);
            let sep_entry = SLOT_BYTES
                + 1
                + 8
                + if sep_key.is_inline() {
                    2 + separator_bytes
                } else {
                    12
                };
            left_bytes + right_bytes - BRANCH_SLOTS_AT + sep_entry
        };
        if merged_bytes <= PAGE_SIZE {
            merge(pages, parent, left_idx, left, right)?;
        }
        id = parent;
    }
    shrink_root(pages, root)
}

/// Moves everything of `right` into `left` and drops the separator between them from `parent`.
fn merge(
    pages: &mut DirtyPages,
    parent: PageId,
    left_idx: usize,
    left: PageId,
    right: PageId,
) -> Result<()> {
    let separator = match pages.node_mut(parent)? {
        Node::Branch { keys, children } => {
            children.remove(left_idx + 1);
            keys.remove(left_idx)
        }
        Node::Leaf(_) => return Err(Error::corrupt(parent, "parent is a leaf (bug)")),
    };
    let right_node = pages
        .nodes
        .remove(&right)
        .ok_or_else(|| Error::corrupt(right, "sibling is not dirty (bug)"))?;
    let mut freed_separator = None;
    match (pages.node_mut(left)?, right_node) {
        (Node::Leaf(l), Node::Leaf(r)) => {
            l.extend(r);
            freed_separator = Some(separator);
        }
        (
            Node::Branch { keys, children },
            Node::Branch {
                keys: rk,
                children: rc,
            },
        ) => {
            // The separator comes down between the two halves and keeps its chain.
            keys.push(separator);
            keys.extend(rk);
            children.extend(rc);
        }
        _ => return Err(Error::corrupt(left, "siblings at different levels")),
    }
    pages.free(right)?;
    if let Some(Key {
        bytes,
        chain: Some(chain),
    }) = freed_separator
    {
        pages.free_chain(chain, bytes.len() as u32)?;
    }
    Ok(())
}

/// An empty root leaf empties the tree; a root branch with one child hands the root down.
fn shrink_root(pages: &mut DirtyPages, root: &mut PageId) -> Result<()> {
    for _ in 0..MAX_TREE_DEPTH {
        match pages.nodes.get(root) {
            Some(Node::Leaf(entries)) if entries.is_empty() => {
                pages.free(*root)?;
                *root = 0;
            }
            Some(Node::Branch { keys, children }) if keys.is_empty() => {
                let only_child = children[0];
                pages.free(*root)?;
                *root = only_child;
            }
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// Frees every page of the tree at `root` and every overflow chain it owns.
pub(crate) fn free_tree(pages: &mut DirtyPages, root: PageId) -> Result<()> {
    if root == 0 {
        return Ok(());
    }
    let mut stack = vec![(root, 0usize)];
    let mut visited = 0u64;
    while let Some((id, depth)) = stack.pop() {
        visited += 1;
        if depth >= MAX_TREE_DEPTH || visited > pages.page_count {
            return Err(Error::corrupt(id, "tree too deep or cyclic"));
        }
        let mut chains: Vec<(PageId, u32)> = Vec::new();
        let view = NodeView::load(pages, id)?;
        for i in 0..view.len() {
            match view {
                NodeView::Mem(Node::Leaf(entries)) => {
                    let (k, v) = &entries[i];
                    if let Some(c) = k.chain {
                        chains.push((c, k.bytes.len() as u32));
                    }
                    if let Value::Overflow { first_page, len } = v {
                        chains.push((*first_page, *len));
                    }
                }
                NodeView::Mem(Node::Branch { keys, .. }) => {
                    if let Some(c) = keys[i].chain {
                        chains.push((c, keys[i].bytes.len() as u32));
                    }
                }
                NodeView::Leaf(page) => {
                    let (k, v) = page.entry(i)?;
                    for stored in [k, v] {
                        if let crate::page::Stored::Overflow { first_page, len } = stored {
                            chains.push((first_page, len));
                        }
                    }
                }
                NodeView::Branch(page) => {
                    if let crate::page::Stored::Overflow { first_page, len } = page.key(i)? {
                        chains.push((first_page, len));
                    }
                }
            }
        }
        if !view.is_leaf() {
            for i in 0..=view.len() {
                stack.push((view.child(i)?, depth + 1));
            }
        }
        for (first, len) in chains {
            pages.free_chain(first, len)?;
        }
        pages.free(id)?;
    }
    Ok(())
}

/// Reads a value found by [`lookup`] in a write transaction.
pub(crate) fn get(pages: &DirtyPages, root: PageId, key: &[u8]) -> Result<Option<Vec<u8>>> {
    match lookup(pages, root, key)? {
        Some(ValueRef::Inline(b)) => Ok(Some(b.to_vec())),
        Some(v) => Ok(Some(v.load(pages)?)),
        None => Ok(None),
    }
}
