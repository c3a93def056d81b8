//! The reference (the complete event history the watchers are judged against) checked on
//! its own and against the writers: it must replay like a store (versions counting up, only
//! existing keys deleted), agree with the final read, hold every acknowledged write where it
//! was acknowledged and nothing no writer attempted.

use super::*;

/// The reference, indexed for the checks.
pub(super) struct ReferenceIndex<'h> {
    /// Each revision's events, in the reference's order.
    pub(super) by_revision: BTreeMap<i64, Vec<&'h Event>>,
    pub(super) end: i64,
    /// Each key's life: (revision, its put event or None for a delete), in revision order.
    lives: HashMap<&'h str, Vec<(i64, Option<&'h Event>)>>,
}

impl<'h> ReferenceIndex<'h> {
    /// Indexes `reference`, noting where it is no history at all.
    pub(super) fn build(reference: &'h Reference, verdict: &mut WatchVerdict) -> Self {
        let end = reference.end_revision;
        let mut by_revision: BTreeMap<i64, Vec<&Event>> = BTreeMap::new();
        let mut last = 0;
        for response in &reference.responses {
            let line = response.line;
            for event in &response.events {
                let revision = event.mod_revision;
                if revision < last.max(1) || revision > end {
                    note!(verdict, ReferenceInconsistent =>
                        "the reference has revision {revision} after {last} (line {line}), its \
                         end being {end}");
                    continue;
                }
                last = revision;
                let events = by_revision.entry(revision).or_default();
                if events.iter().any(|e| e.key == event.key) {
                    note!(verdict, ReferenceInconsistent =>
                        "the reference holds {event} twice (line {line})");
                    continue;
                }
                events.push(event);
            }
        }
        verdict.reference_events = by_revision.values().map(Vec::len).sum();
        let lives = replay(&by_revision, verdict);
        ReferenceIndex {
            by_revision,
            end,
            lives,
        }
    }

    pub(super) fn event(&self, revision: i64, key: &str) -> Option<&'h Event> {
        let events = self.by_revision.get(&revision)?;
        events.iter().copied().find(|event| event.key == key)
    }

    /// The put that `key` holds after `revision` (None: absent then).
    pub(super) fn state_at(&self, key: &str, revision: i64) -> Option<&'h Event> {
        let life = self.lives.get(key)?;
        let after = life.partition_point(|&(at, _)| at <= revision);
        life.get(after.checked_sub(1)?)?.1
    }
}

/// Replays the reference into each key's life, noting what no store could have done: a put
/// creates a key at version 1 or counts its version up keeping its create revision, and only
/// an existing key is deleted.
fn replay<'h>(
    by_revision: &BTreeMap<i64, Vec<&'h Event>>,
    verdict: &mut WatchVerdict,
) -> HashMap<&'h str, Vec<(i64, Option<&'h Event>)>> {
    let mut lives: HashMap<&str, Vec<(i64, Option<&Event>)>> = HashMap::new();
    let mut alive: HashMap<&str, (i64, i64)> = HashMap::new();
    for (&revision, events) in by_revision {
        for &event in events {
            let key = event.key.as_str();
            let before = alive.get(key).copied();
            let (created, version) = (event.create_revision, event.version);
            let fits = match (event.kind, before) {
                (EventType::Put, None) => created == revision && version == 1,
                (EventType::Put, Some((was_created, was))) => {
                    created == was_created && version == was + 1
                }
                (EventType::Delete, before) => before.is_some(),
            };
            if !fits {
                note!(verdict, ReferenceInconsistent =>
                    "the reference has {event} while the key was (created, version) {before:?}");
            }
            let life = lives.entry(key).or_default();
            if event.kind == EventType::Put {
                alive.insert(key, (created, version));
                life.push((revision, Some(event)));
            } else {
                alive.remove(key);
                life.push((revision, None));
            }
        }
    }
    lives
}

impl From<&Event> for KeyState {
    fn from(put: &Event) -> KeyState {
        KeyState {
            key: put.key.clone(),
            value: put.value.clone(),
            mod_revision: put.mod_revision,
            create_revision: put.create_revision,
            version: put.version,
        }
    }
}

/// The final read must hold exactly what the reference says the keys held at its revision.
pub(super) fn check_final_state(
    state: &FinalState,
    index: &ReferenceIndex,
    verdict: &mut WatchVerdict,
) {
    let (line, revision, end) = (state.line, state.revision, index.end);
    if revision > end {
        note!(verdict, ReferenceInconsistent =>
            "the final read (line {line}) is at revision {revision}, past the reference's end \
             {end}");
        return;
    }
    let read: HashMap<&str, &KeyState> = state.kvs.iter().map(|kv| (kv.key.as_str(), kv)).collect();
    let mut keys: Vec<&str> = index.lives.keys().chain(read.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let expected = index.state_at(key, revision).map(KeyState::from);
        let got = read.get(key).copied();
        if expected.as_ref() != got {
            note!(verdict, ReferenceInconsistent =>
                "the final read (line {line}, revision {revision}) has {got:?} where the \
                 reference has {expected:?}");
        }
    }
}

/// Every acknowledged put in the reference where it was acknowledged; every reference put
/// made by some attempted write, once; indeterminate Txns all or nothing.
pub(super) fn check_writes(writes: &[Write], index: &ReferenceIndex, verdict: &mut WatchVerdict) {
    let mut by_value: HashMap<(&str, &str), (usize, usize)> = HashMap::new();
    for (w, write) in writes.iter().enumerate() {
        for (o, op) in write.ops.iter().enumerate() {
            if let WriteOp::Put { key, value } = op {
                by_value.insert((key, value), (w, o));
            }
        }
    }
    // Where each put op landed in the reference.
    let mut landed: HashMap<(usize, usize), Vec<i64>> = HashMap::new();
    for (&revision, events) in &index.by_revision {
        let mut sources: HashSet<Option<usize>> = HashSet::new();
        for &event in events {
            if event.kind == EventType::Delete {
                sources.insert(None);
                continue;
            }
            match by_value.get(&(event.key.as_str(), event.value.as_str())) {
                Some(&(w, o)) => {
                    landed.entry((w, o)).or_default().push(revision);
                    sources.insert(Some(w));
                }
                None => {
                    note!(verdict, PhantomWrite =>
                        "the reference has {event}, which no writer attempted")
                }
            }
        }
        if sources.len() > 1 {
            note!(verdict, ReferenceInconsistent =>
                "revision {revision} holds the events of several writes");
        }
    }
    for (w, write) in writes.iter().enumerate() {
        let line = write.line;
        let acked = write.revision.filter(|_| write.ok);
        let mut puts = 0;
        let mut revisions: Vec<i64> = Vec::new();
        for (o, op) in write.ops.iter().enumerate() {
            let WriteOp::Put { key, value } = op else {
                continue;
            };
            puts += 1;
            let at = landed.get(&(w, o)).map(Vec::as_slice).unwrap_or_default();
            if at.len() > 1 {
                note!(verdict, PhantomWrite =>
                    "{key}={value} (line {line}) was applied at revisions {at:?}");
            }
            match (acked, at.first()) {
                (Some(acked), Some(&first)) if first != acked => {
                    note!(verdict, LostWrite =>
                        "{key}={value} was acknowledged at revision {acked} (line {line}) but \
                         the reference has it at {first}")
                }
                (Some(acked), None) => {
                    note!(verdict, LostWrite =>
                        "{key}={value} was acknowledged at revision {acked} (line {line}) but \
                         the reference (to revision {}) lacks it", index.end)
                }
                _ => {}
            }
            revisions.extend(at.first());
        }
        let applied = revisions.len();
        revisions.sort_unstable();
        revisions.dedup();
        if acked.is_none() && applied > 0 && (applied < puts || revisions.len() > 1) {
            note!(verdict, TornWrite =>
                "{applied} of the {puts} puts of the indeterminate write at line {line} are in \
                 the reference, at revisions {revisions:?}");
        }
    }
    check_deletes(writes, index, verdict);
}

/// Deletes carry no unique value: an acknowledged one must be at its revision (or, when it
/// found nothing, the key absent there), and the other delete events of a key must not
/// outnumber the indeterminate deletes of it.
fn check_deletes(writes: &[Write], index: &ReferenceIndex, verdict: &mut WatchVerdict) {
    let mut explained: HashSet<(i64, &str)> = HashSet::new();
    let mut indeterminate: HashMap<&str, usize> = HashMap::new();
    for write in writes {
        let line = write.line;
        for op in &write.ops {
            let WriteOp::Delete { key } = op else {
                continue;
            };
            match (write.revision.filter(|_| write.ok), write.deleted) {
                (None, _) => *indeterminate.entry(key).or_default() += 1,
                (Some(revision), Some(0)) => {
                    if let Some(put) = index.state_at(key, revision) {
                        note!(verdict, LostWrite =>
                            "the delete of {key} at line {line} found nothing at revision \
                             {revision}, but the reference holds {put} then");
                    }
                }
                (Some(revision), _) => match index.event(revision, key) {
                    Some(event) if event.kind == EventType::Delete => {
                        explained.insert((revision, key));
                    }
                    _ => {
                        note!(verdict, LostWrite =>
                            "the delete of {key} was acknowledged at revision {revision} (line \
                             {line}) but the reference lacks it")
                    }
                },
            }
        }
    }
    for event in index.by_revision.values().flatten() {
        let key = (event.mod_revision, event.key.as_str());
        if event.kind == EventType::Put || explained.contains(&key) {
            continue;
        }
        match indeterminate.get_mut(event.key.as_str()) {
            Some(left) if *left > 0 => *left -= 1,
            _ => {
                note!(verdict, PhantomWrite =>
                    "the reference has {event}, more deletes of the key than writers attempted")
            }
        }
    }
}
