//! What the simulated-disk tests share: the model they compare against, random changes, and
//! seed selection from the environment.
#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_btree::io::sim::{SimDisk, SimRng};
use cairn_btree::{Database, Durability, Options};

pub type Model = BTreeMap<Vec<u8>, Vec<u8>>;

pub const BUCKET: &[u8] = b"b";

pub fn open(disk: &Arc<SimDisk>, durability: Durability) -> cairn_btree::Result<Database> {
    Database::open_file(disk.clone(), Options { durability })
}

pub fn contents(db: &Database) -> Model {
    let r = db.begin_read().unwrap();
    r.range(BUCKET, ..).unwrap().map(|e| e.unwrap()).collect()
}

/// One transaction's changes (1-40 puts and deletes over 600 keys, some values large), a
/// function of the rng's state only; `model` follows them.
pub fn apply_random_changes(
    rng: &mut SimRng,
    w: &mut cairn_btree::WriteTxn<'_>,
    model: &mut Model,
) -> cairn_btree::Result<()> {
    let changes = 1 + rng.below(40);
    for _ in 0..changes {
        let key = format!("key{:05}", rng.below(600)).into_bytes();
        if rng.below(4) == 0 {
            w.delete(BUCKET, &key)?;
            model.remove(&key);
        } else {
            let len = match rng.below(20) {
                0 => 1000 + rng.below(9000) as usize,
                _ => rng.below(200) as usize,
            };
            let value = vec![rng.below(256) as u8; len];
            w.put(BUCKET, &key, &value)?;
            model.insert(key, value);
        }
    }
    Ok(())
}

/// The seeds to run: `one_var` replays a single seed, else `count_var` (or `default`) seeds
/// from 0.
pub fn seeds(one_var: &str, count_var: &str, default: u64) -> Vec<u64> {
    match std::env::var(one_var) {
        Ok(s) => vec![s.parse().unwrap_or_else(|_| panic!("{one_var} is a u64"))],
        Err(_) => {
            let n = std::env::var(count_var)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default);
            (0..n).collect()
        }
    }
}
