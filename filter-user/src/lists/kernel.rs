//! The lists in the kernel: [`ListMaps`] holds the program's four LPM tries, one
//! [`List`] transaction per list over a [`Tries`] store. The only module of `lists` that
//! touches aya's map handles; the rules of a change are `journal.rs`'s.

use std::sync::{Mutex, MutexGuard};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{IterableMap as _, LpmTrie, MapData, MapError},
};
use filter_common::{ListEntry, map_names};

use super::{
    AddReport, ListEntryView, ListError, ListKind, ListPresence, PerFamily,
    journal::{List, Store},
    prefix::{LpmKey, Prefix},
};

/// One list's IPv4 and IPv6 tries.
struct Tries {
    v4: LpmTrie<MapData, [u8; 4], ListEntry>,
    v6: LpmTrie<MapData, [u8; 16], ListEntry>,
}

impl Store for Tries {
    fn get(&self, prefix: &Prefix) -> Result<ListEntry, MapError> {
        // A trie lookup is a longest-prefix match, not an exact one: for a key that is not
        // stored it returns the longest stored prefix covering it. Callers only ask for
        // prefixes the index holds, whose own entry is the longest match.
        match prefix.lpm_key() {
            LpmKey::V4(key) => self.v4.get(&key, 0),
            LpmKey::V6(key) => self.v6.get(&key, 0),
        }
    }

    fn insert(&mut self, prefix: &Prefix, entry: &ListEntry) -> Result<(), MapError> {
        match prefix.lpm_key() {
            LpmKey::V4(key) => self.v4.insert(&key, entry, 0),
            LpmKey::V6(key) => self.v6.insert(&key, entry, 0),
        }
    }

    fn remove(&mut self, prefix: &Prefix) -> Result<bool, MapError> {
        // Delete, unlike lookup, needs the exact prefix (`trie_delete_elem`).
        let result = match prefix.lpm_key() {
            LpmKey::V4(key) => self.v4.remove(&key),
            LpmKey::V6(key) => self.v6.remove(&key),
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn entries(&self) -> Result<Vec<(Prefix, ListEntry)>, MapError> {
        let mut out = Vec::new();
        for item in &self.v4 {
            let (key, entry) = item?;
            match Prefix::from_v4_key(&key) {
                Some(prefix) => out.push((prefix, entry)),
                None => log::warn!("ignoring an IPv4 list key of length {}", key.prefix_len()),
            }
        }
        for item in &self.v6 {
            let (key, entry) = item?;
            match Prefix::from_v6_key(&key) {
                Some(prefix) => out.push((prefix, entry)),
                None => log::warn!("ignoring an IPv6 list key of length {}", key.prefix_len()),
            }
        }
        Ok(out)
    }
}

fn is_missing(error: &MapError) -> bool {
    match error {
        MapError::KeyNotFound => true,
        // aya 0.14 reports a delete of a missing key as the syscall's ENOENT.
        MapError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// The allowlist and denylist tries, with one lock per list: a change to one list is one
/// transaction over both of its tries.
pub struct ListMaps {
    allow: Mutex<List<Tries>>,
    deny: Mutex<List<Tries>>,
}

fn take_trie<K: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &str,
) -> anyhow::Result<(LpmTrie<MapData, K, ListEntry>, u32)> {
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("the XDP object has no map named {name}"))?;
    let trie = LpmTrie::try_from(map)
        .with_context(|| format!("map {name} is not an LPM trie of the expected layout"))?;
    let capacity = trie
        .map()
        .info()
        .with_context(|| format!("cannot read the capacity of map {name}"))?
        .max_entries();
    Ok((trie, capacity))
}

fn take_list(ebpf: &mut Ebpf, kind: ListKind, v4: &str, v6: &str) -> anyhow::Result<List<Tries>> {
    let (v4, capacity_v4) = take_trie(ebpf, v4)?;
    let (v6, capacity_v6) = take_trie(ebpf, v6)?;
    List::new(
        kind,
        Tries { v4, v6 },
        PerFamily {
            v4: capacity_v4,
            v6: capacity_v6,
        },
    )
    .with_context(|| format!("cannot read the {kind}"))
}

impl ListMaps {
    /// Takes the four tries out of a loaded object and reads what they hold (nothing, for a
    /// freshly loaded object). Each trie's capacity is its `max_entries` as the kernel
    /// reports it.
    ///
    /// # Errors
    /// If a map is missing, is not an LPM trie of `ListEntry` with the key width
    /// `filter_common` says, or cannot be read.
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        Ok(Self {
            allow: Mutex::new(take_list(
                ebpf,
                ListKind::Allow,
                map_names::ALLOW_V4,
                map_names::ALLOW_V6,
            )?),
            deny: Mutex::new(take_list(
                ebpf,
                ListKind::Deny,
                map_names::DENY_V4,
                map_names::DENY_V6,
            )?),
        })
    }

    fn lock(&self, kind: ListKind) -> Result<MutexGuard<'_, List<Tries>>, ListError> {
        match kind {
            ListKind::Allow => &self.allow,
            ListKind::Deny => &self.deny,
        }
        .lock()
        .map_err(|_| ListError::Poisoned { kind })
    }

    /// Adds prefixes to a list, all or nothing. A prefix already listed gets the expiry
    /// given (none: never) and keeps its hit counters; repeats in `prefixes` count once.
    /// `expires_ns` is a time on the program's clock (see [`expiry_after`](super::expiry_after)).
    ///
    /// # Errors
    /// An expiry on the allowlist, an expiry of 0, more prefixes than a trie's capacity
    /// (counting those already listed), or a map write the kernel refuses: the writes made
    /// before it are undone and the error says so.
    pub fn add(
        &self,
        kind: ListKind,
        prefixes: &[Prefix],
        expires_ns: Option<u64>,
    ) -> Result<AddReport, ListError> {
        self.lock(kind)?.add(prefixes, expires_ns)
    }

    /// Bulk load (`floodwall allow|deny load FILE`): the prefixes of a list file are added
    /// to the list exactly as [`ListMaps::add`] adds them, in one all-or-nothing
    /// transaction. It adds to the list, it does not replace it: remove what should go.
    ///
    /// # Errors
    /// As [`ListMaps::add`].
    pub fn load(
        &self,
        kind: ListKind,
        prefixes: &[Prefix],
        expires_ns: Option<u64>,
    ) -> Result<AddReport, ListError> {
        self.add(kind, prefixes, expires_ns)
    }

    /// Removes prefixes from a list, all or nothing; returns how many (repeats count once).
    /// A prefix is removed only as listed: removing `198.18.0.0/24` does not touch
    /// `198.18.0.0/16`.
    ///
    /// # Errors
    /// If a prefix is not listed (all such are named, and nothing is removed), or the
    /// kernel refuses a delete (the deletes before it are undone).
    pub fn remove(&self, kind: ListKind, prefixes: &[Prefix]) -> Result<usize, ListError> {
        self.lock(kind)?.remove(prefixes)
    }

    /// Which of `prefixes` the list holds.
    ///
    /// # Errors
    /// If the lock is poisoned.
    pub fn listed(&self, kind: ListKind, prefixes: &[Prefix]) -> Result<Vec<Prefix>, ListError> {
        Ok(self.lock(kind)?.listed(prefixes))
    }

    /// Removes those of `prefixes` the list holds, all or nothing, and returns them; the
    /// others are not an error (a reload removing an entry the operator already removed).
    ///
    /// # Errors
    /// If the kernel refuses a delete (the deletes before it are undone).
    pub fn remove_listed(
        &self,
        kind: ListKind,
        prefixes: &[Prefix],
    ) -> Result<Vec<Prefix>, ListError> {
        self.lock(kind)?.remove_listed(prefixes)
    }

    /// The entries of a list with their hit counters, sorted by prefix, leaving out those
    /// expired at `now_ns`. Walks the tries (two syscalls per entry).
    ///
    /// # Errors
    /// If the walk fails.
    pub fn list(&self, kind: ListKind, now_ns: u64) -> Result<Vec<ListEntryView>, ListError> {
        self.lock(kind)?.list(now_ns)
    }

    /// Deletes the denylist entries expired at `now_ns` (expiry set and not after now) and
    /// returns them, for the log. Costs nothing when none is due.
    ///
    /// # Errors
    /// If the kernel refuses a delete; that entry and the ones after it are retried on the
    /// next call, and the error names the ones deleted before it.
    pub fn expire(&self, now_ns: u64) -> Result<Vec<Prefix>, ListError> {
        self.lock(ListKind::Deny)?.expire(now_ns)
    }

    /// When the next denylist entry expires, if one does: the daemon can sleep until then.
    ///
    /// # Errors
    /// If the lock is poisoned.
    pub fn next_expiry(&self) -> Result<Option<u64>, ListError> {
        Ok(self.lock(ListKind::Deny)?.next_expiry())
    }

    /// Entries in a list (both families, expired ones not yet deleted included).
    ///
    /// # Errors
    /// If the lock is poisoned.
    pub fn len(&self, kind: ListKind) -> Result<usize, ListError> {
        Ok(self.lock(kind)?.len())
    }

    /// Entries in a list, by family.
    ///
    /// # Errors
    /// If the lock is poisoned.
    pub fn counts(&self, kind: ListKind) -> Result<PerFamily<usize>, ListError> {
        Ok(self.lock(kind)?.counts())
    }

    /// Capacity of a list's tries.
    ///
    /// # Errors
    /// If the lock is poisoned.
    pub fn capacity(&self, kind: ListKind) -> Result<PerFamily<u32>, ListError> {
        Ok(self.lock(kind)?.capacity())
    }

    /// Which tries hold at least one entry. Read it after a change and store it where the
    /// program reads it, so that the data path skips empty tries.
    ///
    /// # Errors
    /// If a lock is poisoned.
    pub fn nonempty(&self) -> Result<ListPresence, ListError> {
        // Always allow, then deny: one lock order.
        let allow = self.lock(ListKind::Allow)?.counts();
        let deny = self.lock(ListKind::Deny)?.counts();
        let nonempty = |count: PerFamily<usize>| PerFamily {
            v4: count.v4 > 0,
            v6: count.v6 > 0,
        };
        Ok(ListPresence {
            allow: nonempty(allow),
            deny: nonempty(deny),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syscall_error(errno: i32) -> MapError {
        MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_delete_elem",
            io_error: std::io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn a_missing_key_is_told_apart_from_a_refused_delete() {
        assert!(is_missing(&MapError::KeyNotFound));
        assert!(
            is_missing(&syscall_error(libc::ENOENT)),
            "aya 0.14 reports a delete of a missing key as ENOENT"
        );
        assert!(!is_missing(&syscall_error(libc::EPERM)));
        assert!(!is_missing(&syscall_error(libc::EINVAL)));
    }
}
