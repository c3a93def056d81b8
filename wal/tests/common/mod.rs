//! Helpers shared by the integration tests.
#![allow(dead_code)]

use cairn_wal::{Entry, Record, WalConfig};

/// Small segments so tests rotate often and never write big files.
pub fn small_config() -> WalConfig {
    WalConfig {
        segment_bytes: 4096,
        max_batch_bytes: 64 << 10,
    }
}

/// A payload that depends on index and term, of varying length, so a record read back from
/// the wrong place or garbled is recognisable.
pub fn payload(index: u64, term: u64, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len);
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ term;
    while p.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        p.push((x >> 56) as u8);
    }
    p
}

pub fn entry(index: u64, term: u64, len: usize) -> Entry {
    Entry {
        index,
        term,
        payload: payload(index, term, len),
    }
}

pub fn entry_record(index: u64, term: u64, len: usize) -> Record {
    Record::Entry(entry(index, term, len))
}

/// Seed from `var` if set, else `default`.
pub fn seed_from_env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
