//! The two meta pages: which commit is current, and where its trees and free list start.

use crate::error::{Error, Result};
use crate::idlist::{decode_ids, encode_ids};
use crate::page::{get_u32, get_u64, put_u32, put_u64, seal, verify, PageType};
use crate::{PageId, TxnId, FORMAT_VERSION, OLDEST_READABLE_FORMAT_VERSION, PAGE_SIZE};

const MAGIC: &[u8; 8] = b"CAIRNBT\0";
/// Where the meta page's inline id lists start.
const INLINE_AT: usize = 112;
/// Bytes of the meta page available to inline id lists.
pub(crate) const META_INLINE_BYTES: usize = PAGE_SIZE - INLINE_AT;

/// The free list and written list of a commit small enough to sit in its meta page (used for
/// a list whose chain head in the meta is 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct InlineLists {
    pub(crate) free: Vec<PageId>,
    pub(crate) written: Vec<PageId>,
}

/// One commit's root pointers, as stored in a meta slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) txn: TxnId,
    /// Root of the bucket catalog tree; 0 = no buckets.
    pub(crate) catalog_root: PageId,
    /// First page of the free-list chain; 0 = empty.
    pub(crate) freelist_head: PageId,
    /// Pages `0..page_count` are reachable or free.
    pub(crate) page_count: u64,
    /// First page of the list of pages this commit wrote; 0 = none.
    pub(crate) written_head: PageId,
    /// Number of pages on that list.
    pub(crate) written_count: u64,
    /// CRC-32 over (page id, page checksum) of every listed page, in list order.
    pub(crate) written_crc: u32,
}

impl Meta {
    pub(crate) fn empty() -> Meta {
        Meta {
            txn: 0,
            catalog_root: 0,
            freelist_head: 0,
            page_count: 2,
            written_head: 0,
            written_count: 0,
            written_crc: crc32fast::hash(&[]),
        }
    }

    /// The meta slot (page 0 or 1) a durable commit is written to (a checkpoint takes the
    /// slot the last durable commit does not hold).
    pub(crate) fn slot(&self) -> PageId {
        self.txn % 2
    }

    pub(crate) fn encode(&self, slot: PageId, inline: &InlineLists) -> Vec<u8> {
        let mut page = vec![0u8; PAGE_SIZE];
        let free_bytes = encode_ids(&mut page[INLINE_AT..], &inline.free);
        encode_ids(&mut page[INLINE_AT + free_bytes..], &inline.written);
        put_u32(&mut page, 100, inline.free.len() as u32);
        put_u32(&mut page, 104, inline.written.len() as u32);
        put_u32(&mut page, 108, free_bytes as u32);
        page[32..40].copy_from_slice(MAGIC);
        put_u32(&mut page, 40, FORMAT_VERSION);
        put_u32(&mut page, 44, PAGE_SIZE as u32);
        put_u64(&mut page, 48, self.txn);
        put_u64(&mut page, 56, self.catalog_root);
        put_u64(&mut page, 64, self.freelist_head);
        put_u64(&mut page, 72, self.page_count);
        put_u64(&mut page, 80, self.written_head);
        put_u64(&mut page, 88, self.written_count);
        put_u32(&mut page, 96, self.written_crc);
        seal(&mut page, slot, self.txn, PageType::Meta, 0, 0);
        page
    }

    /// Decodes and validates meta slot `slot` of a file of `file_len` bytes.
    pub(crate) fn decode(page: &[u8], slot: PageId, file_len: u64) -> Result<(Meta, InlineLists)> {
        verify(page, slot, PageType::Meta)?;
        if page.get(32..40) != Some(&MAGIC[..]) {
            return Err(Error::corrupt(slot, "bad magic: not a cairn-btree file"));
        }
        let version = get_u32(page, 40).unwrap_or(0);
        if !(OLDEST_READABLE_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(Error::corrupt(
                slot,
                format!(
                    "format version {version}, this build reads \
                     {OLDEST_READABLE_FORMAT_VERSION} to {FORMAT_VERSION}"
                ),
            ));
        }
        let page_size = get_u32(page, 44).unwrap_or(0);
        if page_size as usize != PAGE_SIZE {
            return Err(Error::corrupt(slot, format!("page size {page_size}")));
        }
        let field = |at| get_u64(page, at).unwrap_or(u64::MAX);
        let meta = Meta {
            txn: field(48),
            catalog_root: field(56),
            freelist_head: field(64),
            page_count: field(72),
            written_head: field(80),
            written_count: field(88),
            written_crc: get_u32(page, 96).unwrap_or(0),
        };
        if meta.page_count < 2 {
            return Err(Error::corrupt(slot, "page count below 2"));
        }
        let needed_bytes = meta.page_count.checked_mul(PAGE_SIZE as u64);
        if needed_bytes.is_none_or(|n| n > file_len) {
            return Err(Error::corrupt(
                slot,
                format!(
                    "page count {} needs more than the file's {file_len} bytes",
                    meta.page_count
                ),
            ));
        }
        for (name, root) in [
            ("catalog root", meta.catalog_root),
            ("free list", meta.freelist_head),
        ] {
            if root == 1 || (root != 0 && root >= meta.page_count) {
                return Err(Error::corrupt(
                    slot,
                    format!("{name} page {root} is outside 2..{}", meta.page_count),
                ));
            }
        }
        let count = |at| get_u32(page, at).unwrap_or(u32::MAX) as usize;
        let written_at = INLINE_AT.saturating_add(count(108));
        let area = |at: usize| {
            page.get(at..)
                .ok_or_else(|| Error::corrupt(slot, "inline list offset"))
        };
        let inline = InlineLists {
            free: decode_ids(area(INLINE_AT)?, count(100), slot, meta.page_count)?,
            written: decode_ids(area(written_at)?, count(104), slot, meta.page_count)?,
        };
        Ok((meta, inline))
    }
}
