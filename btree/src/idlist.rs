//! Sorted page-id lists stored in chains of pages: the free list and the written list.
//!
//! Body of each page: the page's first id as a `u64`, then every further id as the LEB128
//! varint of its difference from the one before (at least 1: ids strictly increase). The
//! header's `count` is the number of ids in the page, `next` the next page of the chain.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::page::{get_u64, put_u64, seal, verify, PageType, HEADER_BYTES};
use crate::source::PageSource;
use crate::{PageId, TxnId, PAGE_SIZE};

/// Bytes of a page available to ids.
const BODY_BYTES: usize = PAGE_SIZE - HEADER_BYTES;
/// Longest LEB128 encoding of a `u64`.
const MAX_VARINT_BYTES: usize = 10;

fn varint_len(v: u64) -> usize {
    (64 - v.leading_zeros() as usize).max(1).div_ceil(7)
}

/// Ids read from a chain, each with the page that lists it.
pub(crate) type ListedIds = Vec<(PageId, PageId)>;

/// Splits sorted, distinct `ids` into the ranges that each fill one page.
pub(crate) fn split_into_pages(ids: &[PageId]) -> Vec<Range<usize>> {
    debug_assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "id lists are strictly increasing"
    );
    let mut pages = Vec::new();
    let mut start = 0;
    while start < ids.len() {
        let mut used = 8;
        let mut end = start + 1;
        while end < ids.len() && end - start < usize::from(u16::MAX) {
            let len = varint_len(ids[end] - ids[end - 1]);
            if used + len > BODY_BYTES {
                break;
            }
            used += len;
            end += 1;
        }
        pages.push(start..end);
        start = end;
    }
    pages
}

/// Encodes `ids` (one page's share) into `page` (zeroed) and seals it as page `id` of a chain
/// continuing at `next`.
pub(crate) fn encode_page(
    page: &mut [u8],
    page_type: PageType,
    ids: &[PageId],
    id: PageId,
    next: PageId,
    txn: TxnId,
) {
    encode_ids(&mut page[HEADER_BYTES..], ids);
    seal(page, id, txn, page_type, ids.len() as u16, next);
}

/// Bytes `ids` take when encoded (first id as `u64`, then varint deltas).
pub(crate) fn encoded_len(ids: &[PageId]) -> usize {
    if ids.is_empty() {
        return 0;
    }
    8 + ids
        .windows(2)
        .map(|w| varint_len(w[1] - w[0]))
        .sum::<usize>()
}

/// Encodes sorted `ids` at the start of `out` (which [`encoded_len`] bytes must fit); returns
/// the bytes written.
pub(crate) fn encode_ids(out: &mut [u8], ids: &[PageId]) -> usize {
    let mut at = 0;
    if let Some(&first) = ids.first() {
        put_u64(out, at, first);
        at += 8;
    }
    for pair in ids.windows(2) {
        let mut delta = pair[1] - pair[0];
        loop {
            let byte = (delta & 0x7f) as u8;
            delta >>= 7;
            if delta == 0 {
                out[at] = byte;
                at += 1;
                break;
            }
            out[at] = byte | 0x80;
            at += 1;
        }
    }
    at
}

/// Decodes `count` ids from `bytes`, each of which must lie in `2..page_count` and exceed the
/// one before; `page` names the page holding them in errors.
pub(crate) fn decode_ids(
    bytes: &[u8],
    count: usize,
    page: PageId,
    page_count: u64,
) -> Result<Vec<PageId>> {
    let mut ids = Vec::with_capacity(count.min(bytes.len()));
    let mut at = 8;
    let mut id = get_u64(bytes, 0).unwrap_or(0);
    for i in 0..count {
        if i > 0 {
            let delta = read_varint(bytes, &mut at)
                .ok_or_else(|| Error::corrupt(page, format!("id {i} is not a varint")))?;
            id = id
                .checked_add(delta)
                .filter(|_| delta > 0)
                .ok_or_else(|| Error::corrupt(page, format!("id {i} does not increase")))?;
        }
        if id < 2 || id >= page_count {
            return Err(Error::corrupt(
                page,
                format!("listed page id {id} out of range"),
            ));
        }
        ids.push(id);
    }
    Ok(ids)
}

fn read_varint(page: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..MAX_VARINT_BYTES {
        let byte = *page.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Reads an id list: from the meta page (`inline`, listed as page `meta_slot`) when `head` is 0,
/// else from the chain at `head` (see [`read_id_chain`]).
pub(crate) fn read_list(
    src: &impl PageSource,
    head: PageId,
    inline: &[PageId],
    meta_slot: PageId,
    page_count: u64,
    page_type: PageType,
) -> Result<(ListedIds, Vec<PageId>)> {
    if head == 0 {
        return Ok((
            inline.iter().map(|&id| (id, meta_slot)).collect(),
            Vec::new(),
        ));
    }
    read_id_chain(src, head, page_count, page_type)
}

/// Reads the chain of `page_type` pages at `head`; returns every listed id with the page
/// listing it, and the chain's own pages. Ids must lie in `2..page_count` and increase within
/// a page; the walk stops with an error after `page_count` pages.
pub(crate) fn read_id_chain(
    src: &impl PageSource,
    head: PageId,
    page_count: u64,
    page_type: PageType,
) -> Result<(ListedIds, Vec<PageId>)> {
    let mut ids = Vec::new();
    let mut chain = Vec::new();
    let mut next = head;
    while next != 0 {
        if chain.len() as u64 >= page_count {
            return Err(Error::corrupt(
                next,
                "id-list chain longer than the file (cycle?)",
            ));
        }
        let page = src.page_bytes(next)?;
        let header = verify(page, next, page_type)?;
        let body = &page[HEADER_BYTES..];
        for id in decode_ids(body, usize::from(header.count), next, page_count)? {
            ids.push((id, next));
        }
        chain.push(next);
        next = header.next;
    }
    Ok((ids, chain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_delta_pages_hold_many_more_ids_than_fixed_width() {
        // 1,500 ids scattered with gaps under 128 fit one page (8 + 1,499 bytes).
        let ids: Vec<PageId> = (0..1500u64).map(|i| 2 + i * 100).collect();
        assert_eq!(split_into_pages(&ids), vec![0..1500]);
        let wide: Vec<PageId> = (0..3000u64).map(|i| 2 + i * 1_000_000).collect();
        let pages = split_into_pages(&wide);
        // 3-byte deltas: 1 + (4064 - 8) / 3 ids a page.
        assert_eq!(pages, vec![0..1353, 1353..2706, 2706..3000]);
    }
}
