//! One list as a transaction over a [`Store`]: every change is planned against an index of
//! what the store holds, then written, and the writes are undone (newest first, from a
//! journal of the values before) if the store refuses one midway. The store is the
//! kernel's tries in production (`kernel.rs`) and a map in memory in the unit tests below,
//! so the all-or-nothing rules are tested with no kernel.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use aya::maps::MapError;
use filter_common::ListEntry;

use super::{
    AddReport, ListEntryView, ListError, ListKind, PerFamily, describe, is_expired,
    prefix::{Family, Prefix},
};

/// Where a list's entries live: the two tries in production, a map in unit tests.
pub(super) trait Store {
    /// The value of a prefix known to be stored.
    fn get(&self, prefix: &Prefix) -> Result<ListEntry, MapError>;
    /// Inserts or replaces an entry.
    fn insert(&mut self, prefix: &Prefix, entry: &ListEntry) -> Result<(), MapError>;
    /// Deletes an entry; `Ok(false)` if it was not there.
    fn remove(&mut self, prefix: &Prefix) -> Result<bool, MapError>;
    /// Every entry.
    fn entries(&self) -> Result<Vec<(Prefix, ListEntry)>, MapError>;
}

/// Undo record of one write: the prefix and its value before (`None`: it was not listed).
type Journal = Vec<(Prefix, Option<ListEntry>)>;

/// One list (both families): its store, the capacity of each trie, and an index of what
/// the store holds. The daemon is the only writer of keys and expiries (the program only
/// adds to hit counters), so the index answers "is it listed", "how many" and "what
/// expires next" without walking the tries, and it is exact where a trie lookup is a
/// longest-prefix match.
pub(super) struct List<S> {
    kind: ListKind,
    store: S,
    capacity: PerFamily<u32>,
    /// Every stored prefix and its expiry (0: never).
    index: BTreeMap<Prefix, u64>,
    /// The entries that expire, by expiry time.
    by_expiry: BTreeSet<(u64, Prefix)>,
    count: PerFamily<usize>,
}

impl<S: Store> List<S> {
    /// A list over `store`, indexed from what it holds.
    pub(super) fn new(
        kind: ListKind,
        store: S,
        capacity: PerFamily<u32>,
    ) -> Result<Self, ListError> {
        let mut list = Self {
            kind,
            store,
            capacity,
            index: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            count: PerFamily::default(),
        };
        list.resync()?;
        Ok(list)
    }

    /// Rebuilds the index from the store.
    fn resync(&mut self) -> Result<(), ListError> {
        let entries = self.store.entries().map_err(|error| ListError::Walk {
            kind: self.kind,
            error: Box::new(error),
        })?;
        self.index.clear();
        self.by_expiry.clear();
        self.count = PerFamily::default();
        for (prefix, entry) in entries {
            self.index_put(prefix, entry.expires_ns);
        }
        Ok(())
    }

    fn index_put(&mut self, prefix: Prefix, expires_ns: u64) {
        match self.index.insert(prefix, expires_ns) {
            Some(old) => {
                self.by_expiry.remove(&(old, prefix));
            }
            None => *self.count.get_mut(prefix.family()) += 1,
        }
        if expires_ns != 0 {
            self.by_expiry.insert((expires_ns, prefix));
        }
    }

    fn index_remove(&mut self, prefix: &Prefix) {
        if let Some(old) = self.index.remove(prefix) {
            self.by_expiry.remove(&(old, *prefix));
            *self.count.get_mut(prefix.family()) -= 1;
        }
    }

    /// Entries in the list (both families, expired ones not yet deleted included).
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Entries in the list, by family.
    pub(super) const fn counts(&self) -> PerFamily<usize> {
        self.count
    }

    /// The capacity of each family's store.
    pub(super) const fn capacity(&self) -> PerFamily<u32> {
        self.capacity
    }

    /// Which of `prefixes` the list holds (exactly, not by longest match).
    pub(super) fn listed(&self, prefixes: &[Prefix]) -> Vec<Prefix> {
        prefixes
            .iter()
            .filter(|p| self.index.contains_key(p))
            .copied()
            .collect()
    }

    /// Adds prefixes, all or nothing (see `ListMaps::add`).
    pub(super) fn add(
        &mut self,
        prefixes: &[Prefix],
        expires_ns: Option<u64>,
    ) -> Result<AddReport, ListError> {
        if self.kind == ListKind::Allow && expires_ns.is_some() {
            return Err(ListError::ExpiryOnAllowlist);
        }
        if expires_ns == Some(0) {
            return Err(ListError::ZeroExpiry);
        }
        let expires_ns = expires_ns.unwrap_or(0);

        // Plan the whole change against the index before writing anything.
        let mut report = AddReport::default();
        let mut new = PerFamily::<usize>::default();
        let mut writes = Vec::new();
        for prefix in dedup(prefixes) {
            match self.index.get(&prefix) {
                None => {
                    report.added += 1;
                    *new.get_mut(prefix.family()) += 1;
                    writes.push((prefix, false));
                }
                Some(&old) if old == expires_ns => report.unchanged += 1,
                Some(_) => {
                    report.updated += 1;
                    writes.push((prefix, true));
                }
            }
        }
        for family in [Family::V4, Family::V6] {
            let would_hold = self.count.get(family) + new.get(family);
            let capacity = self.capacity.get(family);
            // A trie's max_entries counts stored prefixes only, not the intermediate nodes
            // the kernel adds (`lpm_trie.c`: `n_entries`).
            if would_hold > capacity as usize {
                return Err(ListError::OverCapacity {
                    kind: self.kind,
                    family,
                    would_hold,
                    capacity,
                });
            }
        }

        let mut journal = Journal::new();
        for (prefix, existed) in writes {
            match self.write(&prefix, existed, expires_ns) {
                Ok(previous) => journal.push((prefix, previous)),
                Err((action, error)) => {
                    let outcome = self.undo(journal);
                    return Err(ListError::Map {
                        kind: self.kind,
                        action,
                        prefix,
                        error: Box::new(error),
                        outcome,
                    });
                }
            }
        }
        for (prefix, _) in journal {
            self.index_put(prefix, expires_ns);
        }
        Ok(report)
    }

    /// Writes one entry with the given expiry, keeping the hit counters of an existing one.
    /// Returns the value before.
    ///
    /// Between reading an existing entry and writing it back, hits the program adds are
    /// lost (a few packets at most): the map API has no partial update.
    fn write(
        &mut self,
        prefix: &Prefix,
        existed: bool,
        expires_ns: u64,
    ) -> Result<Option<ListEntry>, (&'static str, MapError)> {
        let previous = if existed {
            Some(self.store.get(prefix).map_err(|e| ("read", e))?)
        } else {
            None
        };
        let entry = ListEntry {
            expires_ns,
            ..previous.unwrap_or_default()
        };
        self.store
            .insert(prefix, &entry)
            .map_err(|e| ("write", e))?;
        Ok(previous)
    }

    /// Removes prefixes, all or nothing; each must be listed (see `ListMaps::remove`).
    pub(super) fn remove(&mut self, prefixes: &[Prefix]) -> Result<usize, ListError> {
        let prefixes = dedup(prefixes);
        let missing: Vec<Prefix> = prefixes
            .iter()
            .filter(|p| !self.index.contains_key(p))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(ListError::NotListed {
                kind: self.kind,
                missing,
            });
        }
        let mut journal = Journal::new();
        for prefix in &prefixes {
            let step = self
                .store
                .get(prefix)
                .map_err(|e| ("read", e))
                .and_then(|previous| {
                    // Gone already (the index is stale): the goal is reached either way.
                    self.store
                        .remove(prefix)
                        .map(|_| previous)
                        .map_err(|e| ("delete", e))
                });
            match step {
                Ok(previous) => journal.push((*prefix, Some(previous))),
                Err((action, error)) => {
                    let outcome = self.undo(journal);
                    return Err(ListError::Map {
                        kind: self.kind,
                        action,
                        prefix: *prefix,
                        error: Box::new(error),
                        outcome,
                    });
                }
            }
        }
        for prefix in &prefixes {
            self.index_remove(prefix);
        }
        Ok(prefixes.len())
    }

    /// Removes those of `prefixes` the list holds, all or nothing, and returns them; the
    /// others are not an error (see `ListMaps::remove_listed`).
    pub(super) fn remove_listed(&mut self, prefixes: &[Prefix]) -> Result<Vec<Prefix>, ListError> {
        let listed = self.listed(&dedup(prefixes));
        if !listed.is_empty() {
            self.remove(&listed)?;
        }
        Ok(listed)
    }

    /// Undoes the writes of a failed change, newest first, and says how that went.
    fn undo(&mut self, journal: Journal) -> String {
        let done = journal.len();
        if done == 0 {
            return "nothing was changed".to_owned();
        }
        let mut failures = Vec::new();
        for (prefix, previous) in journal.into_iter().rev() {
            let result = match previous {
                None => self.store.remove(&prefix).map(|_| ()),
                Some(entry) => self.store.insert(&prefix, &entry),
            };
            if let Err(e) = result {
                failures.push(format!("{prefix} ({})", describe(&e)));
            }
        }
        if failures.is_empty() {
            return format!("the {done} change(s) made before it were undone; nothing was changed");
        }
        // The store no longer matches the index: read it back so that later changes are
        // planned against what is really there.
        let resync = match self.resync() {
            Ok(()) => String::new(),
            Err(e) => format!(" (and reading it back failed: {e})"),
        };
        format!(
            "undoing the {done} change(s) made before it failed for {}: the {} may be partly \
             changed, check it with `floodwall {} list`{resync}",
            failures.join(", "),
            self.kind,
            self.kind.command(),
        )
    }

    /// The entries not expired at `now_ns`, sorted by prefix, read from the store.
    pub(super) fn list(&self, now_ns: u64) -> Result<Vec<ListEntryView>, ListError> {
        let entries = self.store.entries().map_err(|error| ListError::Walk {
            kind: self.kind,
            error: Box::new(error),
        })?;
        let mut views: Vec<ListEntryView> = entries
            .into_iter()
            .filter(|(_, entry)| !is_expired(entry.expires_ns, now_ns))
            .map(|(prefix, entry)| ListEntryView {
                prefix,
                hit_packets: entry.hit_packets,
                hit_bytes: entry.hit_bytes,
                expires_in_ms: (entry.expires_ns != 0)
                    .then(|| (entry.expires_ns - now_ns).div_ceil(1_000_000)),
                origin: None,
            })
            .collect();
        views.sort_unstable_by_key(|v| v.prefix);
        Ok(views)
    }

    /// Deletes the entries expired at `now_ns` and returns them (see `ListMaps::expire`).
    pub(super) fn expire(&mut self, now_ns: u64) -> Result<Vec<Prefix>, ListError> {
        let due: Vec<Prefix> = self
            .by_expiry
            .iter()
            .take_while(|(expires_ns, _)| is_expired(*expires_ns, now_ns))
            .map(|(_, prefix)| *prefix)
            .collect();
        let mut expired = Vec::with_capacity(due.len());
        for prefix in due {
            // Not all or nothing: the program ignores an expired entry anyway, so one that
            // cannot be deleted now is retried on the next pass.
            if let Err(error) = self.store.remove(&prefix) {
                let outcome = if expired.is_empty() {
                    "it stays until the next pass".to_owned()
                } else {
                    format!(
                        "it stays until the next pass; deleted before it: {}",
                        expired
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err(ListError::Map {
                    kind: self.kind,
                    action: "delete expired",
                    prefix,
                    error: Box::new(error),
                    outcome,
                });
            }
            self.index_remove(&prefix);
            expired.push(prefix);
        }
        Ok(expired)
    }

    /// When the next entry expires, if one does.
    pub(super) fn next_expiry(&self) -> Option<u64> {
        self.by_expiry.first().map(|(expires_ns, _)| *expires_ns)
    }
}

/// The prefixes without repeats, in their first order.
fn dedup(prefixes: &[Prefix]) -> Vec<Prefix> {
    let mut seen = HashSet::with_capacity(prefixes.len());
    prefixes
        .iter()
        .copied()
        .filter(|p| seen.insert(*p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::tests::p;

    /// A store in memory, with a capacity per family and a write that can be made to fail.
    #[derive(Default)]
    struct FakeStore {
        entries: BTreeMap<Prefix, ListEntry>,
        /// Fail the write (insert) with this index, counting from 0.
        fail_insert: Option<usize>,
        /// Fail the delete with this index.
        fail_remove: Option<usize>,
        inserts: usize,
        removes: usize,
    }

    fn einval() -> MapError {
        MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_update_elem",
            io_error: std::io::Error::from_raw_os_error(libc::EINVAL),
        })
    }

    impl Store for FakeStore {
        fn get(&self, prefix: &Prefix) -> Result<ListEntry, MapError> {
            self.entries
                .get(prefix)
                .copied()
                .ok_or(MapError::KeyNotFound)
        }
        fn insert(&mut self, prefix: &Prefix, entry: &ListEntry) -> Result<(), MapError> {
            let n = self.inserts;
            self.inserts += 1;
            if self.fail_insert == Some(n) {
                return Err(einval());
            }
            self.entries.insert(*prefix, *entry);
            Ok(())
        }
        fn remove(&mut self, prefix: &Prefix) -> Result<bool, MapError> {
            let n = self.removes;
            self.removes += 1;
            if self.fail_remove == Some(n) {
                return Err(einval());
            }
            Ok(self.entries.remove(prefix).is_some())
        }
        fn entries(&self) -> Result<Vec<(Prefix, ListEntry)>, MapError> {
            Ok(self.entries.iter().map(|(p, e)| (*p, *e)).collect())
        }
    }

    fn list(kind: ListKind, capacity: u32) -> List<FakeStore> {
        List::new(
            kind,
            FakeStore::default(),
            PerFamily {
                v4: capacity,
                v6: capacity,
            },
        )
        .expect("empty store")
    }

    fn entry(hits: u64, expires_ns: u64) -> ListEntry {
        ListEntry {
            hit_packets: hits,
            hit_bytes: hits * 100,
            expires_ns,
        }
    }

    fn prefixes(texts: &[&str]) -> Vec<Prefix> {
        texts.iter().map(|t| p(t)).collect()
    }

    #[test]
    fn add_then_list_then_remove() {
        let mut deny = list(ListKind::Deny, 10);
        let report = deny
            .add(
                &prefixes(&["198.18.0.0/24", "2001:2::/48", "198.18.0.0/24"]),
                None,
            )
            .expect("add");
        assert_eq!(
            report,
            AddReport {
                added: 2,
                updated: 0,
                unchanged: 0
            },
            "a repeat counts once"
        );
        assert_eq!(deny.count, PerFamily { v4: 1, v6: 1 });
        let views = deny.list(0).expect("list");
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].prefix, p("198.18.0.0/24"));
        assert_eq!(
            (
                views[0].hit_packets,
                views[0].hit_bytes,
                views[0].expires_in_ms
            ),
            (0, 0, None)
        );
        assert_eq!(deny.remove(&prefixes(&["2001:2::/48"])).expect("remove"), 1);
        assert_eq!(deny.len(), 1);
        assert_eq!(deny.store.entries.len(), 1);
    }

    #[test]
    fn re_adding_keeps_counters_and_sets_the_expiry() {
        let mut deny = list(ListKind::Deny, 10);
        deny.store.entries.insert(p("198.18.0.0/24"), entry(7, 0));
        deny.resync().expect("resync");
        let report = deny
            .add(&prefixes(&["198.18.0.0/24"]), Some(5_000_000_000))
            .expect("re-add with expiry");
        assert_eq!(report.updated, 1);
        assert_eq!(
            deny.store.entries[&p("198.18.0.0/24")],
            entry(7, 5_000_000_000)
        );
        assert_eq!(deny.next_expiry(), Some(5_000_000_000));

        let inserts = deny.store.inserts;
        let report = deny
            .add(&prefixes(&["198.18.0.0/24"]), Some(5_000_000_000))
            .expect("same again");
        assert_eq!(report.unchanged, 1);
        assert_eq!(
            deny.store.inserts, inserts,
            "an unchanged entry is not rewritten"
        );

        deny.add(&prefixes(&["198.18.0.0/24"]), None)
            .expect("never");
        assert_eq!(deny.store.entries[&p("198.18.0.0/24")], entry(7, 0));
        assert_eq!(deny.next_expiry(), None, "no longer expires");
    }

    #[test]
    fn allowlist_entries_take_no_expiry() {
        let mut allow = list(ListKind::Allow, 10);
        let error = allow
            .add(&prefixes(&["198.18.0.0/24"]), Some(1))
            .expect_err("allow with expiry");
        assert!(matches!(error, ListError::ExpiryOnAllowlist), "{error}");
        assert!(allow.store.entries.is_empty());
        let error = list(ListKind::Deny, 10)
            .add(&prefixes(&["198.18.0.0/24"]), Some(0))
            .expect_err("expiry 0");
        assert!(matches!(error, ListError::ZeroExpiry), "{error}");
    }

    #[test]
    fn over_capacity_changes_nothing() {
        let mut deny = list(ListKind::Deny, 2);
        deny.add(&prefixes(&["198.18.0.0/24"]), None).expect("one");
        let error = deny
            .add(
                &prefixes(&["198.18.1.0/24", "198.18.2.0/24", "2001:2::/48"]),
                None,
            )
            .expect_err("v4 over capacity");
        assert_eq!(
            error.to_string(),
            "the IPv4 denylist would hold 3 prefixes, over its capacity of 2; nothing was added"
        );
        assert_eq!(deny.store.entries.len(), 1, "nothing added, v6 included");
        // Re-adding a listed prefix takes no room.
        deny.add(&prefixes(&["198.18.0.0/24", "198.18.1.0/24"]), Some(9))
            .expect("fits exactly");
        assert_eq!(deny.count.v4, 2);
    }

    #[test]
    fn a_failed_write_undoes_the_writes_before_it() {
        let mut deny = list(ListKind::Deny, 10);
        deny.store.entries.insert(p("198.18.0.0/24"), entry(7, 0));
        deny.resync().expect("resync");
        deny.store.fail_insert = Some(2);
        let error = deny
            .add(
                &prefixes(&["198.18.1.0/24", "198.18.0.0/24", "2001:2::/48"]),
                Some(9),
            )
            .expect_err("third write fails");
        let message = error.to_string();
        assert!(
            message.starts_with("failed to write 2001:2::/48 in the denylist: `bpf_map_update_elem` failed: Invalid argument"),
            "{message}"
        );
        assert!(
            message.ends_with("the 2 change(s) made before it were undone; nothing was changed"),
            "{message}"
        );
        assert_eq!(
            deny.store
                .entries
                .iter()
                .map(|(p, e)| (*p, *e))
                .collect::<Vec<_>>(),
            [(p("198.18.0.0/24"), entry(7, 0))],
            "the new prefix is gone and the old one has its old expiry"
        );
        assert_eq!(deny.len(), 1);
        assert_eq!(deny.next_expiry(), None);
    }

    #[test]
    fn a_failed_undo_says_the_list_may_be_partly_changed() {
        let mut deny = list(ListKind::Deny, 10);
        deny.store.fail_insert = Some(1);
        deny.store.fail_remove = Some(0);
        let message = deny
            .add(&prefixes(&["198.18.1.0/24", "198.18.2.0/24"]), None)
            .expect_err("second write fails")
            .to_string();
        assert!(
            message.contains("undoing the 1 change(s) made before it failed for 198.18.1.0/24")
                && message.contains("check it with `floodwall deny list`"),
            "{message}"
        );
        assert_eq!(deny.len(), 1, "the index was read back from the store");
    }

    #[test]
    fn removing_a_missing_prefix_changes_nothing() {
        let mut allow = list(ListKind::Allow, 10);
        allow
            .add(&prefixes(&["198.18.0.0/24", "198.18.0.0/16"]), None)
            .expect("add");
        let error = allow
            .remove(&prefixes(&[
                "198.18.0.0/24",
                "198.18.0.0/25",
                "2001:2::/48",
            ]))
            .expect_err("two missing");
        assert_eq!(
            error.to_string(),
            "not in the allowlist: 198.18.0.0/25, 2001:2::/48; nothing was removed"
        );
        assert_eq!(allow.store.entries.len(), 2);
        assert_eq!(allow.len(), 2);
    }

    #[test]
    fn a_failed_delete_restores_the_deleted() {
        let mut deny = list(ListKind::Deny, 10);
        deny.store.entries.insert(p("198.18.0.0/24"), entry(3, 0));
        deny.store.entries.insert(p("198.18.1.0/24"), entry(4, 0));
        deny.resync().expect("resync");
        deny.store.fail_remove = Some(1);
        let error = deny
            .remove(&prefixes(&["198.18.0.0/24", "198.18.1.0/24"]))
            .expect_err("second delete fails");
        assert!(
            error.to_string().contains("failed to delete 198.18.1.0/24"),
            "{error}"
        );
        assert_eq!(
            deny.store.entries[&p("198.18.0.0/24")],
            entry(3, 0),
            "restored with its counters"
        );
        assert_eq!(deny.len(), 2);
    }

    #[test]
    fn expire_deletes_only_what_is_due() {
        let mut deny = list(ListKind::Deny, 10);
        deny.add(&prefixes(&["198.18.0.0/24"]), Some(100))
            .expect("add");
        deny.add(&prefixes(&["198.18.1.0/24"]), Some(200))
            .expect("add");
        deny.add(&prefixes(&["2001:2::/48"]), None).expect("add");
        assert_eq!(deny.expire(99).expect("nothing due"), []);
        assert_eq!(deny.expire(100).expect("one due"), [p("198.18.0.0/24")]);
        assert_eq!(deny.next_expiry(), Some(200));
        let views = deny.list(150).expect("list");
        assert_eq!(
            views
                .iter()
                .map(|v| (v.prefix, v.expires_in_ms))
                .collect::<Vec<_>>(),
            [(p("198.18.1.0/24"), Some(1)), (p("2001:2::/48"), None)],
            "50 ns left rounds up to 1 ms"
        );
        // Listing leaves out what is due but not deleted yet.
        assert_eq!(deny.list(200).expect("list").len(), 1);
        assert_eq!(
            deny.expire(u64::MAX).expect("the rest"),
            [p("198.18.1.0/24")]
        );
        assert_eq!(deny.len(), 1);
    }

    #[test]
    fn a_failed_expiry_is_retried() {
        let mut deny = list(ListKind::Deny, 10);
        deny.add(&prefixes(&["198.18.0.0/24", "198.18.1.0/24"]), Some(100))
            .expect("add");
        deny.store.fail_remove = Some(1);
        let message = deny
            .expire(100)
            .expect_err("second delete fails")
            .to_string();
        assert!(
            message.contains("deleted before it: 198.18.0.0/24"),
            "{message}"
        );
        assert_eq!(deny.expire(100).expect("retry"), [p("198.18.1.0/24")]);
        assert_eq!(deny.len(), 0);
    }

    #[test]
    fn remove_listed_skips_what_is_not_listed() {
        let mut deny = list(ListKind::Deny, 10);
        deny.add(&prefixes(&["198.18.0.0/24", "2001:2::/48"]), None)
            .expect("add");
        assert_eq!(
            deny.listed(&prefixes(&["198.18.0.0/16", "2001:2::/48"])),
            [p("2001:2::/48")],
            "listed is exact: a covering prefix is not listed"
        );
        let removed = deny
            .remove_listed(&prefixes(&[
                "198.18.0.0/24",
                "198.18.0.0/24",
                "198.18.9.0/24",
            ]))
            .expect("remove the listed one");
        assert_eq!(removed, [p("198.18.0.0/24")], "repeats count once");
        assert_eq!(deny.counts(), PerFamily { v4: 0, v6: 1 });
        let deletes = deny.store.removes;
        assert_eq!(
            deny.remove_listed(&prefixes(&["198.18.9.0/24"]))
                .expect("none listed"),
            [],
            "nothing listed is not an error"
        );
        assert_eq!(deny.store.removes, deletes, "and deletes nothing");
    }

    #[test]
    fn a_failed_remove_listed_undoes_its_deletes() {
        let mut deny = list(ListKind::Deny, 10);
        deny.add(&prefixes(&["198.18.0.0/24", "198.18.1.0/24"]), Some(7))
            .expect("add");
        deny.store.fail_remove = Some(1);
        let error = deny
            .remove_listed(&prefixes(&["198.18.0.0/24", "198.18.1.0/24"]))
            .expect_err("second delete fails");
        assert!(
            error
                .to_string()
                .ends_with("the 1 change(s) made before it were undone; nothing was changed"),
            "{error}"
        );
        assert_eq!(deny.len(), 2);
        assert_eq!(deny.store.entries[&p("198.18.0.0/24")], entry(0, 7));
        assert_eq!(deny.capacity(), PerFamily { v4: 10, v6: 10 });
    }
}
