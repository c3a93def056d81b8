//! Overflow chains: values (and keys) too long for a leaf, spread over linked pages.

use crate::error::{Error, Result};
use crate::page::{get_u32, put_u32, seal, verify, PageType, HEADER_BYTES};
use crate::source::PageSource;
use crate::{PageId, TxnId, MAX_KEY_BYTES, MAX_VALUE_BYTES, PAGE_SIZE};

/// Data bytes one overflow page holds (after the header and its `len: u32`).
pub(crate) const OVERFLOW_DATA_BYTES: usize = PAGE_SIZE - HEADER_BYTES - 4;

/// Pages a chain of `len` bytes takes.
pub(crate) fn pages_for(len: usize) -> usize {
    len.div_ceil(OVERFLOW_DATA_BYTES).max(1)
}

/// Encodes `data` into sealed pages with ids `ids` (`ids.len() == pages_for(data.len())`).
pub(crate) fn encode_chain(data: &[u8], ids: &[PageId], txn: TxnId) -> Vec<Vec<u8>> {
    debug_assert_eq!(ids.len(), pages_for(data.len()), "one id per chain page");
    let mut pages = Vec::with_capacity(ids.len());
    let mut chunks = data.chunks(OVERFLOW_DATA_BYTES);
    for (i, &id) in ids.iter().enumerate() {
        let chunk = chunks.next().unwrap_or(&[]);
        let mut page = vec![0u8; PAGE_SIZE];
        put_u32(&mut page, HEADER_BYTES, chunk.len() as u32);
        page[HEADER_BYTES + 4..HEADER_BYTES + 4 + chunk.len()].copy_from_slice(chunk);
        let next = ids.get(i + 1).copied().unwrap_or(0);
        seal(&mut page, id, txn, PageType::Overflow, 0, next);
        pages.push(page);
    }
    pages
}

/// Walks the chain at `first` that should hold `len` bytes, calling `visit` with each page id
/// and its data. The walk is bounded by the page count the length implies, so a cycle or a
/// wrong length is reported, never followed forever.
pub(crate) fn walk_chain(
    src: &impl PageSource,
    first: PageId,
    len: u32,
    mut visit: impl FnMut(PageId, &[u8]),
) -> Result<()> {
    let len = len as usize;
    if len > MAX_KEY_BYTES.max(MAX_VALUE_BYTES) {
        return Err(Error::corrupt(
            first,
            format!("overflow length {len} exceeds every limit"),
        ));
    }
    let max_pages = pages_for(len);
    let mut next = first;
    let mut seen = 0usize;
    let mut total = 0usize;
    for _ in 0..max_pages {
        let page = src.page_bytes(next)?;
        let header = verify(page, next, PageType::Overflow)?;
        let data_len = get_u32(page, HEADER_BYTES).unwrap_or(u32::MAX) as usize;
        let data = page
            .get(HEADER_BYTES + 4..HEADER_BYTES + 4 + data_len)
            .ok_or_else(|| Error::corrupt(next, format!("overflow data length {data_len}")))?;
        total += data_len;
        if total > len {
            return Err(Error::corrupt(
                next,
                format!("overflow chain longer than {len} bytes"),
            ));
        }
        visit(next, data);
        seen += 1;
        if header.next == 0 {
            break;
        }
        if seen == max_pages {
            return Err(Error::corrupt(
                next,
                "overflow chain continues past its length",
            ));
        }
        next = header.next;
    }
    if total != len {
        return Err(Error::corrupt(
            first,
            format!("overflow chain holds {total} bytes, entry says {len}"),
        ));
    }
    Ok(())
}

/// Reads the whole chain into memory.
pub(crate) fn read_chain(src: &impl PageSource, first: PageId, len: u32) -> Result<Vec<u8>> {
    // `walk_chain` rejects lengths above the limits before anything is read.
    let mut out = Vec::with_capacity((len as usize).min(MAX_VALUE_BYTES));
    walk_chain(src, first, len, |_, data| out.extend_from_slice(data))?;
    Ok(out)
}

/// The page ids of a chain.
pub(crate) fn chain_ids(src: &impl PageSource, first: PageId, len: u32) -> Result<Vec<PageId>> {
    let mut ids = Vec::new();
    walk_chain(src, first, len, |id, _| ids.push(id))?;
    Ok(ids)
}
