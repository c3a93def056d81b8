//! Range requests with etcd's exact semantics: limit and `more`, counts that ignore limits
//! and filters, revision filters, sorting (ties in etcd's order), keys-only and count-only.

use super::error::KvError;
use super::go_sort;
use super::view::KvRead;
use crate::mvcc::{KeyRange, RangeOptions};
use crate::proto::etcdserverpb::{
    range_request::{SortOrder, SortTarget},
    RangeRequest, RangeResponse, ResponseHeader,
};
use crate::proto::mvccpb::KeyValue;

/// Serves `r` from `view`. The header carries only the revision; the server adds the rest.
pub fn execute_range(view: &dyn KvRead, r: &RangeRequest) -> Result<RangeResponse, KvError> {
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    // Sorting or filtering needs every key first; otherwise one extra key tells `more`.
    let fetch_limit = if r.sort_order != SortOrder::None as i32 || filtered || r.limit <= 0 {
        0
    } else {
        usize::try_from(r.limit).map_or(0, |l| l.saturating_add(1))
    };
    let range = KeyRange::from_etcd(&r.key, &r.range_end);
    let result = view.range(
        &range,
        RangeOptions {
            rev: r.revision,
            limit: fetch_limit,
            count_only: r.count_only,
            // The response's count covers the whole range.
            page: false,
        },
    )?;
    let mut kvs = result.kvs;
    kvs.retain(|kv| {
        (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
            && (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
            && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
            && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
    });
    sort(&mut kvs, r.sort_order, r.sort_target)?;
    let mut more = false;
    if let Ok(limit) = usize::try_from(r.limit) {
        if limit > 0 && kvs.len() > limit {
            kvs.truncate(limit);
            more = true;
        }
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader {
            revision: result.rev,
            ..Default::default()
        }),
        kvs,
        more,
        count: i64::try_from(result.count).unwrap_or(i64::MAX),
    })
}

/// Sorts as etcd does: a target other than KEY without an order means ascending; only the
/// two known orders sort at all.
fn sort(kvs: &mut [KeyValue], order: i32, target: i32) -> Result<(), KvError> {
    let order = if target != SortTarget::Key as i32 && order == SortOrder::None as i32 {
        SortOrder::Ascend as i32
    } else {
        order
    };
    let descending = match order {
        o if o == SortOrder::Ascend as i32 => false,
        o if o == SortOrder::Descend as i32 => true,
        _ => return Ok(()),
    };
    let less: fn(&KeyValue, &KeyValue) -> bool = match SortTarget::try_from(target) {
        Ok(SortTarget::Key) => |a, b| a.key < b.key,
        Ok(SortTarget::Version) => |a, b| a.version < b.version,
        Ok(SortTarget::Create) => |a, b| a.create_revision < b.create_revision,
        Ok(SortTarget::Mod) => |a, b| a.mod_revision < b.mod_revision,
        Ok(SortTarget::Value) => |a, b| a.value < b.value,
        Err(_) => return Err(KvError::InvalidSortTarget(target)),
    };
    if descending {
        go_sort::sort_by(kvs, &|a, b| less(b, a));
    } else {
        go_sort::sort_by(kvs, &less);
    }
    Ok(())
}
