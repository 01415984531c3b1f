//! The source table (`FW_SOURCES`) as the daemon sees it: an array of slots in sets of
//! `SOURCE_WAYS` (`filter_common::source_set`), read through a shared read-only mapping of
//! the map's memory (a walk of a million slots is a read of 64 MiB, not two million
//! syscalls) and written a slot at a time through the map (removals, and the sources tests
//! put in).
//!
//! The program writes the slots while the daemon reads them: a slot read in the instant a
//! new source takes it can pair the new key with the old state. What the daemon reads from
//! the table only reports (or is checked again by the program), so that is harmless.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
};

use anyhow::{Context as _, anyhow, bail};
use aya::maps::{Array, Map, MapData};
use filter_common::{SOURCE_WAYS, SourceKey, SourceSlot, SourceState, source_set};

/// The mapped table and the map it belongs to.
pub struct SourceTable {
    array: Array<MapData, SourceSlot>,
    slots: Mapping,
}

/// A shared read-only mapping of the table's slots, unmapped on drop.
struct Mapping {
    base: NonNull<SourceSlot>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every read of it is a volatile copy of a
// slot, and nothing in this process writes through it.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are those of our own successful mmap, unmapped only here.
        unsafe {
            libc::munmap(
                self.base.as_ptr().cast(),
                self.len * size_of::<SourceSlot>(),
            )
        };
    }
}

impl SourceTable {
    /// Takes the table out of a loaded object and maps it.
    ///
    /// # Errors
    /// If the map is missing, is not an array of slots, or cannot be mapped (a table pinned
    /// by a build without `BPF_F_MMAPABLE`).
    pub fn take(ebpf: &mut aya::Ebpf, name: &str) -> anyhow::Result<Self> {
        let map = ebpf
            .take_map(name)
            .ok_or_else(|| anyhow!("the XDP object has no map named {name}"))?;
        let Map::Array(data) = map else {
            bail!("map {name} is not an array: the source table of another layout");
        };
        let len = data.info()?.max_entries() as usize;
        if len == 0 || !len.is_multiple_of(SOURCE_WAYS as usize) {
            bail!("map {name} has {len} slots, not whole sets of {SOURCE_WAYS}");
        }
        // SAFETY: a fresh shared read-only mapping of the map's fd, of the size of its
        // values; the kernel refuses it (and we return the error) unless the map is a
        // mappable array at least that large.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len * size_of::<SourceSlot>(),
                libc::PROT_READ,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot map the source table ({name})"));
        }
        let base = NonNull::new(base.cast::<SourceSlot>())
            .ok_or_else(|| anyhow!("mmap returned a null mapping for {name}"))?;
        let slots = Mapping { base, len };
        let array = Array::try_from(Map::Array(data))
            .with_context(|| format!("map {name} has an unexpected value size"))?;
        Ok(Self { array, slots })
    }

    /// The slot at `index` (below [`capacity`](Self::capacity)), as it is now.
    fn slot(&self, index: usize) -> SourceSlot {
        assert!(index < self.slots.len, "slot {index} out of the table");
        // SAFETY: in bounds (checked above) of a live mapping; a slot is plain data for
        // which every bit pattern is valid, and volatile keeps the copy a copy.
        unsafe { std::ptr::read_volatile(self.slots.base.as_ptr().add(index)) }
    }

    /// The slots of `key`'s set.
    fn set_of(&self, key: &SourceKey) -> std::ops::Range<usize> {
        let ways = SOURCE_WAYS as usize;
        let sets = u32::try_from(self.slots.len / ways).unwrap_or(u32::MAX);
        let first = source_set(key, sets) as usize * ways;
        first..first + ways
    }

    /// The index of the slot that holds `key`'s source, if any.
    fn index_of(&self, key: &SourceKey) -> Option<usize> {
        self.set_of(key).find(|&i| {
            let slot = self.slot(i);
            slot.key == *key && slot.holds_source()
        })
    }

    /// The state of `key`'s source, if the table holds it.
    #[must_use]
    pub fn get(&self, key: &SourceKey) -> Option<SourceState> {
        self.index_of(key).map(|i| self.slot(i).state)
    }

    /// Every source the table holds.
    #[must_use]
    pub fn all(&self) -> Vec<(SourceKey, SourceState)> {
        (0..self.slots.len)
            .map(|i| self.slot(i))
            .filter(SourceSlot::holds_source)
            .map(|slot| (slot.key, slot.state))
            .collect()
    }

    /// Empties `key`'s slot; whether the table held it.
    ///
    /// # Errors
    /// If the map update fails.
    pub fn remove(&mut self, key: &SourceKey) -> anyhow::Result<bool> {
        let Some(index) = self.index_of(key) else {
            return Ok(false);
        };
        self.write(index, &SourceSlot::default())?;
        Ok(true)
    }

    /// Puts `key`'s source with `state` in its slot, or in an empty slot of its set.
    ///
    /// # Errors
    /// If its set is full (every slot holds another source) or the map update fails.
    pub fn put(&mut self, key: &SourceKey, state: &SourceState) -> anyhow::Result<()> {
        let slot = SourceSlot {
            key: *key,
            state: *state,
        };
        let index = self
            .index_of(key)
            .or_else(|| self.set_of(key).find(|&i| !self.slot(i).holds_source()))
            .ok_or_else(|| anyhow!("the set of {} in the source table is full", key.ip()))?;
        self.write(index, &slot)
    }

    fn write(&mut self, index: usize, slot: &SourceSlot) -> anyhow::Result<()> {
        let index = u32::try_from(index).context("slot index")?;
        self.array
            .set(index, slot, 0)
            .context("failed to write a slot of the source table")
    }
}
