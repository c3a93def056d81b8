//! Splitting one watch response into fragments for watchers that asked for it (etcd's
//! `WatchCreateRequest.fragment`): a response whose encoding reaches the request size limit
//! goes out as several, each but the last with `fragment` set; the client joins them back
//! into one response, so a revision stays atomic for it.

use prost::Message;

use crate::proto::etcdserverpb::WatchResponse;

/// Splits `response` so each part encodes to under `max_response_bytes`, except that a part
/// always carries at least one event (an event alone larger than the limit goes alone). A
/// response under the limit, or with fewer than two events, is returned as it is.
pub fn fragment(response: WatchResponse, max_response_bytes: usize) -> Vec<WatchResponse> {
    if response.events.len() < 2 || response.encoded_len() < max_response_bytes {
        return vec![response];
    }
    let mut template = response;
    let events = std::mem::take(&mut template.events);
    // The per-event cost is its length-delimited field: tag, length prefix, body.
    let base = template.encoded_len() + 2; // + the `fragment` flag
    let mut parts = Vec::new();
    let mut current = Vec::new();
    let mut size = base;
    for event in events {
        let cost = 1 + prost::length_delimiter_len(event.encoded_len()) + event.encoded_len();
        if !current.is_empty() && size + cost >= max_response_bytes {
            parts.push(std::mem::take(&mut current));
            size = base;
        }
        size += cost;
        current.push(event);
    }
    parts.push(current);
    let count = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, events)| WatchResponse {
            events,
            fragment: i + 1 < count,
            ..template.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::ResponseHeader;
    use crate::proto::mvccpb::{Event, KeyValue};

    fn response(values: &[usize]) -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader {
                revision: 9,
                ..Default::default()
            }),
            watch_id: 3,
            events: values
                .iter()
                .map(|&len| Event {
                    kv: Some(KeyValue {
                        key: b"k".to_vec(),
                        value: vec![b'v'; len],
                        mod_revision: 9,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn small_or_single_event_responses_are_not_split() {
        let small = response(&[10, 10]);
        assert_eq!(fragment(small.clone(), 1000), vec![small]);
        let single = response(&[5000]);
        assert_eq!(fragment(single.clone(), 100), vec![single]);
    }

    #[test]
    fn fragments_stay_under_the_limit_and_rejoin_into_the_original() {
        let original = response(&[300, 300, 300, 2000, 10, 10, 10]);
        let limit = 700;
        let parts = fragment(original.clone(), limit);
        assert!(parts.len() > 1);
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(part.fragment, i + 1 < parts.len());
            assert!(!part.events.is_empty());
            assert!(part.events.len() == 1 || part.encoded_len() < limit, "{i}");
            assert_eq!((part.watch_id, part.header), (3, original.header));
        }
        let joined: Vec<Event> = parts.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(joined, original.events);
    }
}
