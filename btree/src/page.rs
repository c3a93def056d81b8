//! Page header, checksum, and bounds-checked views of leaf and branch pages (format in lib.rs).

use crate::error::{Error, Result};
use crate::{PageId, TxnId, PAGE_SIZE};

/// Bytes of the header at the start of every page.
pub(crate) const HEADER_BYTES: usize = 32;
/// Entry flag: the key lives in an overflow chain.
pub(crate) const FLAG_KEY_OVERFLOW: u8 = 1;
/// Entry flag: the value lives in an overflow chain.
pub(crate) const FLAG_VALUE_OVERFLOW: u8 = 2;
/// Bytes of a slot (a `u16` offset of an entry).
pub(crate) const SLOT_BYTES: usize = 2;
/// Bytes of an overflow reference after the flags: `len: u32` + `first_page: u64`.
pub(crate) const OVERFLOW_REF_BYTES: usize = 12;
/// Offset of the first slot in a branch page (after its leftmost child).
pub(crate) const BRANCH_SLOTS_AT: usize = HEADER_BYTES + 8;

/// What a page holds; stored in header byte 20.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PageType {
    Meta = 1,
    Leaf = 2,
    Branch = 3,
    Overflow = 4,
    FreeList = 5,
    WrittenList = 6,
}

impl PageType {
    fn from_byte(b: u8) -> Option<PageType> {
        Some(match b {
            1 => PageType::Meta,
            2 => PageType::Leaf,
            3 => PageType::Branch,
            4 => PageType::Overflow,
            5 => PageType::FreeList,
            6 => PageType::WrittenList,
            _ => return None,
        })
    }
}

/// The decoded header of a verified page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub(crate) count: u16,
    pub(crate) next: PageId,
}

pub(crate) fn get_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
pub(crate) fn get_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
pub(crate) fn get_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
pub(crate) fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Fills in the header of `page` (a full page buffer) and then its checksum.
pub(crate) fn seal(
    page: &mut [u8],
    id: PageId,
    txn: TxnId,
    page_type: PageType,
    count: u16,
    next: PageId,
) {
    debug_assert_eq!(page.len(), PAGE_SIZE, "a page buffer is exactly one page");
    put_u64(page, 4, id);
    put_u64(page, 12, txn);
    page[20] = page_type as u8;
    page[21] = 0;
    put_u16(page, 22, count);
    put_u64(page, 24, next);
    let crc = crc32fast::hash(&page[4..]);
    put_u32(page, 0, crc);
}

/// Verifies checksum, page id and type of `page`, which was reached as page `id`.
pub(crate) fn verify(page: &[u8], id: PageId, expected: PageType) -> Result<Header> {
    verify_header(page, id, expected, false)
}

/// As [`verify`], but skips the checksum if `checksum_known_good` (the page was verified since
/// it was last written; see `VerifiedPages`).
pub(crate) fn verify_header(
    page: &[u8],
    id: PageId,
    expected: PageType,
    checksum_known_good: bool,
) -> Result<Header> {
    if checksum_known_good {
        let own_id = get_u64(page, 4);
        if page.len() != PAGE_SIZE || own_id != Some(id) {
            return Err(Error::corrupt(id, "verified page changed (bug)"));
        }
    } else {
        verify_checksum(page, id)?;
    }
    let page_type = PageType::from_byte(page[20])
        .ok_or_else(|| Error::corrupt(id, format!("unknown page type {}", page[20])))?;
    if page_type != expected {
        return Err(Error::corrupt(
            id,
            format!("expected a {expected:?} page, found {page_type:?}"),
        ));
    }
    Ok(Header {
        count: get_u16(page, 22).unwrap_or(0),
        next: get_u64(page, 24).unwrap_or(0),
    })
}

/// Verifies the checksum and page id of `page`, which was reached as page `id`.
pub(crate) fn verify_checksum(page: &[u8], id: PageId) -> Result<()> {
    if page.len() != PAGE_SIZE {
        return Err(Error::corrupt(id, "page is not a whole page long"));
    }
    let stored = get_u32(page, 0).unwrap_or(0);
    if crc32fast::hash(&page[4..]) != stored {
        return Err(Error::corrupt(id, "checksum mismatch"));
    }
    let own_id = get_u64(page, 4).unwrap_or(u64::MAX);
    if own_id != id {
        return Err(Error::corrupt(
            id,
            format!("page claims to be page {own_id}"),
        ));
    }
    Ok(())
}

/// A key or value as stored in a page: inline bytes or a reference to an overflow chain.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stored<'a> {
    Inline(&'a [u8]),
    Overflow { first_page: PageId, len: u32 },
}

/// Parses one stored item at `at`; returns it and the offset just past it.
fn parse_stored(page: &[u8], at: usize, overflow: bool) -> Option<(Stored<'_>, usize)> {
    if overflow {
        let len = get_u32(page, at)?;
        let first_page = get_u64(page, at + 4)?;
        Some((
            Stored::Overflow { first_page, len },
            at + OVERFLOW_REF_BYTES,
        ))
    } else {
        let len = usize::from(get_u16(page, at)?);
        let bytes = page.get(at + 2..at + 2 + len)?;
        Some((Stored::Inline(bytes), at + 2 + len))
    }
}

/// A verified leaf page; every accessor bounds-checks what it reads.
#[derive(Clone, Copy)]
pub(crate) struct LeafPage<'a> {
    pub(crate) id: PageId,
    bytes: &'a [u8],
    count: usize,
}

impl<'a> LeafPage<'a> {
    pub(crate) fn parse(
        id: PageId,
        bytes: &'a [u8],
        checksum_known_good: bool,
    ) -> Result<LeafPage<'a>> {
        let header = verify_header(bytes, id, PageType::Leaf, checksum_known_good)?;
        let count = usize::from(header.count);
        if HEADER_BYTES + count * SLOT_BYTES > PAGE_SIZE {
            return Err(Error::corrupt(
                id,
                format!("{count} slots do not fit a page"),
            ));
        }
        Ok(LeafPage { id, bytes, count })
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Entry `i`: key and value.
    pub(crate) fn entry(&self, i: usize) -> Result<(Stored<'a>, Stored<'a>)> {
        let bad = || Error::corrupt(self.id, format!("leaf entry {i} is out of bounds"));
        if i >= self.count {
            return Err(bad());
        }
        let at = usize::from(get_u16(self.bytes, HEADER_BYTES + i * SLOT_BYTES).ok_or_else(bad)?);
        let flags = *self.bytes.get(at).ok_or_else(bad)?;
        let (key, at) =
            parse_stored(self.bytes, at + 1, flags & FLAG_KEY_OVERFLOW != 0).ok_or_else(bad)?;
        let (value, _) =
            parse_stored(self.bytes, at, flags & FLAG_VALUE_OVERFLOW != 0).ok_or_else(bad)?;
        Ok((key, value))
    }
}

/// A verified branch page; every accessor bounds-checks what it reads.
#[derive(Clone, Copy)]
pub(crate) struct BranchPage<'a> {
    pub(crate) id: PageId,
    bytes: &'a [u8],
    count: usize,
}

impl<'a> BranchPage<'a> {
    pub(crate) fn parse(
        id: PageId,
        bytes: &'a [u8],
        checksum_known_good: bool,
    ) -> Result<BranchPage<'a>> {
        let header = verify_header(bytes, id, PageType::Branch, checksum_known_good)?;
        let count = usize::from(header.count);
        if BRANCH_SLOTS_AT + count * SLOT_BYTES > PAGE_SIZE {
            return Err(Error::corrupt(
                id,
                format!("{count} slots do not fit a page"),
            ));
        }
        Ok(BranchPage { id, bytes, count })
    }

    /// Number of keys; there is one more child than keys.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    fn item(&self, i: usize) -> Result<(Stored<'a>, PageId)> {
        let bad = || Error::corrupt(self.id, format!("branch entry {i} is out of bounds"));
        if i >= self.count {
            return Err(bad());
        }
        let at =
            usize::from(get_u16(self.bytes, BRANCH_SLOTS_AT + i * SLOT_BYTES).ok_or_else(bad)?);
        let flags = *self.bytes.get(at).ok_or_else(bad)?;
        let (key, at) =
            parse_stored(self.bytes, at + 1, flags & FLAG_KEY_OVERFLOW != 0).ok_or_else(bad)?;
        let child = get_u64(self.bytes, at).ok_or_else(bad)?;
        Ok((key, child))
    }

    pub(crate) fn key(&self, i: usize) -> Result<Stored<'a>> {
        Ok(self.item(i)?.0)
    }

    /// Child `i` for `i` in `0..=len()`.
    pub(crate) fn child(&self, i: usize) -> Result<PageId> {
        if i == 0 {
            return get_u64(self.bytes, HEADER_BYTES)
                .ok_or_else(|| Error::corrupt(self.id, "branch has no leftmost child"));
        }
        Ok(self.item(i - 1)?.1)
    }
}
