//! Typed access to the program's maps, by the names `filter_common` gives them.

use std::{collections::BTreeSet, sync::Mutex};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray},
};
use filter_common::{
    BlockCacheSlot, Class, ClassState, Counter, LimitsConfig, Outcome, SYN_PORT_WORDS, SourceKey,
    SourceState, SynProtectConfig, SynStat, TrackedChunk, block_cache_slot, list_flags, map_names,
    syn_port_bit, tracked_bit,
};

use crate::{
    source_table::SourceTable,
    stats::{Sample, Totals},
};

/// The maps the daemon reads and writes (the event ring buffer is taken separately by the
/// event reader). Each map has its own lock so that a long table walk (`top`) does not hold
/// up a limits change.
pub struct FilterMaps {
    sources: Mutex<SourceTable>,
    class_state: Mutex<HashMap<MapData, SourceKey, ClassState>>,
    limits: Mutex<Array<MapData, LimitsConfig>>,
    counters: PerCpuArray<MapData, Counter>,
    events_lost: PerCpuArray<MapData, u64>,
    table_stats: PerCpuArray<MapData, u64>,
    block_cache: Mutex<Array<MapData, BlockCacheSlot>>,
    tracked: Mutex<Array<MapData, TrackedChunk>>,
    syn_ports: Mutex<Array<MapData, u64>>,
    syn_stats: PerCpuArray<MapData, u64>,
    /// The SYN-ACK settings written with every limits update, with the stage's flag: `None`
    /// while syn-protect is off.
    syn: Mutex<Option<SynProtectConfig>>,
    /// Program clock parameters written with every limits update.
    clock: Mutex<ClockParams>,
    /// `list_flags` presence bits written with every limits update.
    list_presence: Mutex<u32>,
}

/// Deletes `key`; whether it was there.
pub(crate) fn remove_key<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    key: &K,
) -> Result<bool, aya::maps::MapError> {
    match map.remove(key) {
        Ok(()) => Ok(true),
        // aya reports a missing key on delete as the syscall's ENOENT.
        Err(aya::maps::MapError::KeyNotFound) => Ok(false),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// The source table's counters (`FW_TABLE_STATS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableCounts {
    /// Sources inserted.
    pub inserts: u64,
    /// Inserts refused: every slot of the source's set held a blocked source (the packets
    /// were passed as `table_full`, under the ceilings).
    pub insert_failures: u64,
    /// Inserts that took another source's slot.
    pub evictions: u64,
}

/// How the program turns kernel ticks into nanoseconds (see `filter_common`'s crate doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockParams {
    /// Nanoseconds per tick.
    pub mul_ns: u64,
    /// Subtracted after scaling, so the program clock reads like `CLOCK_MONOTONIC`.
    pub offset_ns: u64,
}

/// Takes map `name` out of a loaded object as a `T`.
pub(crate) fn take<T>(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<T>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("the XDP object has no map named {name}"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type or layout"))
}

impl FilterMaps {
    /// Takes the maps out of a loaded object.
    ///
    /// # Errors
    /// If a map is missing or has another type or key/value size than `filter_common` says.
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        Ok(Self {
            sources: Mutex::new(SourceTable::take(ebpf, map_names::SOURCES)?),
            class_state: Mutex::new(take(ebpf, map_names::CLASS_STATE)?),
            limits: Mutex::new(take(ebpf, map_names::LIMITS)?),
            counters: take(ebpf, map_names::COUNTERS)?,
            events_lost: take(ebpf, map_names::EVENTS_LOST)?,
            table_stats: take(ebpf, map_names::TABLE_STATS)?,
            block_cache: Mutex::new(take(ebpf, map_names::BLOCK_CACHE)?),
            tracked: Mutex::new(take(ebpf, map_names::TRACKED)?),
            syn_ports: Mutex::new(take(ebpf, map_names::SYN_PORTS)?),
            syn_stats: take(ebpf, map_names::SYN_STATS)?,
            syn: Mutex::new(None),
            clock: Mutex::new(ClockParams::default()),
            list_presence: Mutex::new(0),
        })
    }

    /// Sets which list tries hold entries (`filter_common::list_flags` presence bits),
    /// written with every limits update from now on.
    pub fn set_list_presence(&self, bits: u32) {
        *self
            .list_presence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = bits;
    }

    /// Sets the clock parameters written with every limits update from now on.
    pub fn set_clock(&self, params: ClockParams) {
        *self
            .clock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = params;
    }

    /// Writes the limits; the program uses them from its next packet on.
    ///
    /// # Errors
    /// If the map update fails.
    pub fn write_limits(&self, config: &LimitsConfig) -> anyhow::Result<()> {
        let clock = *self
            .clock
            .lock()
            .map_err(|_| anyhow!("clock lock poisoned"))?;
        let presence = *self
            .list_presence
            .lock()
            .map_err(|_| anyhow!("list presence lock poisoned"))?;
        // The stage bits follow from the limits written, so they are set here, where every
        // write passes, and cannot disagree with them.
        let syn = *self
            .syn
            .lock()
            .map_err(|_| anyhow!("syn-protect lock poisoned"))?;
        let config = LimitsConfig {
            clock_mul_ns: clock.mul_ns,
            clock_offset_ns: clock.offset_ns,
            list_flags: config.list_flags
                | presence
                | if syn.is_some() {
                    list_flags::SYN_PROTECT
                } else {
                    0
                },
            // The SYN-ACKs' values from the namespace, the budgets from the limits.
            syn: syn.map_or(config.syn, |values| SynProtectConfig {
                cookie_rate: config.syn.cookie_rate,
                verified_rate: config.syn.verified_rate,
                ..values
            }),
            ..*config
        }
        .with_derived_flags();
        let mut limits = self
            .limits
            .lock()
            .map_err(|_| anyhow!("limits map lock poisoned"))?;
        limits
            .set(0, config, 0)
            .context("failed to write the limits map")
    }

    /// Reads the limits map.
    ///
    /// # Errors
    /// If the map lookup fails.
    pub fn read_limits(&self) -> anyhow::Result<LimitsConfig> {
        let limits = self
            .limits
            .lock()
            .map_err(|_| anyhow!("limits map lock poisoned"))?;
        limits.get(&0, 0).context("failed to read the limits map")
    }

    /// Calls `f` with each class and outcome and its per-CPU counters.
    fn each_counter(&self, mut f: impl FnMut(Class, Outcome, &[Counter])) -> anyhow::Result<()> {
        for class in Class::ALL {
            for outcome in Outcome::ALL {
                let per_cpu = self
                    .counters
                    .get(&class.counter_index(outcome), 0)
                    .with_context(|| {
                        format!(
                            "failed to read the {} {} counter",
                            class.name(),
                            outcome.name()
                        )
                    })?;
                f(class, outcome, &per_cpu);
            }
        }
        Ok(())
    }

    /// Sums the per-CPU counters of every class and outcome.
    ///
    /// # Errors
    /// If a map lookup fails.
    pub fn totals(&self) -> anyhow::Result<Totals> {
        let mut totals = Totals::default();
        self.each_counter(|class, outcome, per_cpu| {
            totals.0[class as usize][outcome as usize] = Totals::sum_cpus(per_cpu);
        })?;
        Ok(totals)
    }

    /// Packets counted on each CPU, every class and outcome together (by CPU index).
    ///
    /// # Errors
    /// If a map lookup fails.
    pub fn packets_by_cpu(&self) -> anyhow::Result<Vec<u64>> {
        let mut by_cpu: Vec<u64> = Vec::new();
        self.each_counter(|_, _, per_cpu| {
            if by_cpu.len() < per_cpu.len() {
                by_cpu.resize(per_cpu.len(), 0);
            }
            for (sum, c) in by_cpu.iter_mut().zip(per_cpu) {
                *sum = sum.wrapping_add(c.packets);
            }
        })?;
        Ok(by_cpu)
    }

    /// Takes a counter sample now.
    ///
    /// # Errors
    /// If a map lookup or the clock fails.
    pub fn sample(&self) -> anyhow::Result<Sample> {
        Ok(Sample {
            totals: self.totals()?,
            at_ns: monotonic_now_ns()?,
        })
    }

    /// Events the ring buffer had no room for, summed over CPUs.
    ///
    /// # Errors
    /// If the map lookup fails.
    pub fn events_lost(&self) -> anyhow::Result<u64> {
        let per_cpu = self
            .events_lost
            .get(&0, 0)
            .context("failed to read the lost-events counter")?;
        Ok(per_cpu.iter().copied().fold(0, u64::wrapping_add))
    }

    /// Protects `ports` with `config` (`Some`), or no port (`None`). Takes effect with the
    /// next [`FilterMaps::write_limits`], which the caller makes next: the ports are written
    /// first, so the stage never runs on a half-written set, and the flag with the limits.
    ///
    /// # Errors
    /// If a map update fails.
    pub fn set_syn_protect(
        &self,
        config: Option<(SynProtectConfig, &BTreeSet<u16>)>,
    ) -> anyhow::Result<()> {
        let mut words = vec![0u64; SYN_PORT_WORDS as usize];
        if let Some((_, ports)) = config {
            for &port in ports {
                let (word, bit) = syn_port_bit(port);
                words[word as usize] |= bit;
            }
        }
        {
            let mut map = self
                .syn_ports
                .lock()
                .map_err(|_| anyhow!("syn ports lock poisoned"))?;
            for (index, word) in (0..).zip(words) {
                if map
                    .get(&index, 0)
                    .context("failed to read the syn ports map")?
                    != word
                {
                    map.set(index, word, 0)
                        .context("failed to write the syn ports map")?;
                }
            }
        }
        *self
            .syn
            .lock()
            .map_err(|_| anyhow!("syn-protect lock poisoned"))? = config.map(|(c, _)| c);
        Ok(())
    }

    /// The ports protected by the program as the maps hold them (pinned by an earlier
    /// daemon): empty unless the limits' flag is on too.
    ///
    /// # Errors
    /// If a map lookup fails.
    pub fn pinned_syn_ports(&self) -> anyhow::Result<BTreeSet<u16>> {
        if self.read_limits()?.list_flags & list_flags::SYN_PROTECT == 0 {
            return Ok(BTreeSet::new());
        }
        let map = self
            .syn_ports
            .lock()
            .map_err(|_| anyhow!("syn ports lock poisoned"))?;
        let mut ports = BTreeSet::new();
        for word in 0..SYN_PORT_WORDS {
            let bits = map
                .get(&word, 0)
                .context("failed to read the syn ports map")?;
            for bit in 0..64 {
                if bits & (1 << bit) != 0 {
                    ports.extend(u16::try_from(word * 64 + bit));
                }
            }
        }
        Ok(ports)
    }

    /// The cookie stage's counters by [`SynStat`], summed over CPUs.
    ///
    /// # Errors
    /// If a map lookup fails.
    pub fn syn_stats(&self) -> anyhow::Result<Vec<(SynStat, u64)>> {
        SynStat::ALL
            .iter()
            .map(|&stat| {
                let per_cpu = self
                    .syn_stats
                    .get(&(stat as u32), 0)
                    .context("failed to read the syn counters")?;
                Ok((stat, per_cpu.iter().copied().fold(0, u64::wrapping_add)))
            })
            .collect()
    }

    /// The source table's counters, summed over CPUs.
    ///
    /// # Errors
    /// If a map lookup fails.
    pub fn table_stats(&self) -> anyhow::Result<TableCounts> {
        let sum = |slot: u32| -> anyhow::Result<u64> {
            let per_cpu = self
                .table_stats
                .get(&slot, 0)
                .context("failed to read the table counters")?;
            Ok(per_cpu.iter().copied().fold(0, u64::wrapping_add))
        };
        Ok(TableCounts {
            inserts: sum(filter_common::TABLE_INSERTS)?,
            insert_failures: sum(filter_common::TABLE_INSERT_FAILURES)?,
            evictions: sum(filter_common::TABLE_EVICTIONS)?,
        })
    }

    /// The state of one source, if tracked.
    ///
    /// # Errors
    /// If the lookup fails for another reason than a missing key.
    pub fn source(&self, key: &SourceKey) -> anyhow::Result<Option<SourceState>> {
        let sources = self
            .sources
            .lock()
            .map_err(|_| anyhow!("sources map lock poisoned"))?;
        Ok(sources.get(key))
    }

    /// Every tracked source. Reads the whole table (64 bytes a slot, 64 MiB at a million
    /// sources): call it off the async runtime's worker threads.
    ///
    /// # Errors
    /// If the walk fails.
    pub fn all_sources(&self) -> anyhow::Result<Vec<(SourceKey, SourceState)>> {
        let sources = self
            .sources
            .lock()
            .map_err(|_| anyhow!("sources map lock poisoned"))?;
        Ok(sources.all())
    }

    /// Forgets a source (and so its block): its table entry and its blocked-cache slot.
    /// Returns whether it was tracked.
    ///
    /// # Errors
    /// If a map update fails for another reason than a missing key.
    pub fn remove_source(&self, key: &SourceKey) -> anyhow::Result<bool> {
        {
            let slot = block_cache_slot(key);
            let mut cache = self
                .block_cache
                .lock()
                .map_err(|_| anyhow!("block cache lock poisoned"))?;
            let cached = cache
                .get(&slot, 0)
                .context("failed to read the blocked-source cache")?;
            if cached.addr == key.addr {
                cache
                    .set(slot, BlockCacheSlot::default(), 0)
                    .context("failed to clear a blocked-source cache slot")?;
            }
        }
        // Its class TATs go with it: a source that comes back starts afresh.
        let mut classes = self
            .class_state
            .lock()
            .map_err(|_| anyhow!("class state lock poisoned"))?;
        remove_key(&mut classes, key).context("failed to delete a source's class state")?;
        let mut sources = self
            .sources
            .lock()
            .map_err(|_| anyhow!("sources map lock poisoned"))?;
        sources.remove(key).context("failed to delete a source")
    }

    /// Deletes the class state (`FW_CLASS_STATE`) that no longer says anything: entries
    /// whose TATs are all in the past, which the program reads as it reads a missing entry,
    /// and entries of sources the table no longer holds. Returns how many it deleted.
    ///
    /// # Errors
    /// If a map cannot be read or written.
    pub fn prune_class_state(&self) -> anyhow::Result<u64> {
        let now = monotonic_now_ns()?;
        let mut classes = self
            .class_state
            .lock()
            .map_err(|_| anyhow!("class state lock poisoned"))?;
        let sources = self
            .sources
            .lock()
            .map_err(|_| anyhow!("sources map lock poisoned"))?;
        let mut stale = Vec::new();
        for entry in classes.iter() {
            match entry {
                Ok((key, classes_of)) => {
                    let idle = classes_of.class_tat_ns.iter().all(|tat| *tat < now);
                    let gone = sources.get(&key).is_none();
                    if idle || gone {
                        stale.push(key);
                    }
                }
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(e).context("failed to walk the class state"),
            }
        }
        let mut deleted = 0;
        for key in &stale {
            if remove_key(&mut classes, key).context("failed to delete class state")? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Inserts or replaces a source's state (tests use this to set up a table).
    ///
    /// # Errors
    /// If the update fails.
    pub fn put_source(&self, key: &SourceKey, state: &SourceState) -> anyhow::Result<()> {
        let mut sources = self
            .sources
            .lock()
            .map_err(|_| anyhow!("sources map lock poisoned"))?;
        // The bit first, as the program does: a source in the table always has its bit.
        self.mark_tracked(key)?;
        sources.put(key, state).context("failed to write a source")
    }

    /// The daemon's periodic upkeep of the table's companions: rebuilds the tracked-source
    /// filter and prunes the class state. Returns how many sources the table holds.
    ///
    /// # Errors
    /// If a map cannot be read or written.
    pub fn maintain_table(&self) -> anyhow::Result<u64> {
        let count = self.rebuild_tracked_filter()?;
        self.prune_class_state()?;
        Ok(count)
    }

    /// Rebuilds the tracked-source filter from the table and the block cache, and returns
    /// how many sources the table holds. The program only ever sets bits; sources the table
    /// evicted keep theirs until this clears them (unless still blocked), so that the filter
    /// stays as selective as the table is full.
    ///
    /// A source admitted while this runs sets its bit in the live filter: bits set since
    /// the snapshot taken first are kept. Only one admitted in the instant its chunk is
    /// rewritten can lose its bit; it then looks new, and its next admitted packet finds
    /// its entry and sets the bit again.
    ///
    /// # Errors
    /// If a map cannot be read or written.
    pub fn rebuild_tracked_filter(&self) -> anyhow::Result<u64> {
        let chunks = filter_common::TRACKED_CHUNKS;
        let snapshot = {
            let tracked = self
                .tracked
                .lock()
                .map_err(|_| anyhow!("tracked filter lock poisoned"))?;
            (0..chunks)
                .map(|c| tracked.get(&c, 0))
                .collect::<Result<Vec<TrackedChunk>, _>>()
                .context("failed to read the tracked-source filter")?
        };
        let empty = TrackedChunk {
            words: [0; filter_common::TRACKED_CHUNK_WORDS],
        };
        let mut fresh = vec![empty; snapshot.len()];
        let mut count = 0;
        {
            let sources = self
                .sources
                .lock()
                .map_err(|_| anyhow!("sources map lock poisoned"))?;
            for (key, _) in sources.all() {
                let (chunk, word, mask) = tracked_bit(&key);
                if let Some(chunk) = fresh.get_mut(chunk as usize) {
                    chunk.words[word] |= mask;
                }
                count += 1;
            }
        }
        // Blocked sources keep their bits while blocked, also when the table evicted them:
        // the program consults the block cache only for sources whose bit is set.
        {
            let now = monotonic_now_ns()?;
            let cache = self
                .block_cache
                .lock()
                .map_err(|_| anyhow!("block cache lock poisoned"))?;
            for slot in cache.iter() {
                let slot = slot.context("failed to read the block cache")?;
                if slot.blocked_until_ns > now {
                    let (chunk, word, mask) = tracked_bit(&SourceKey { addr: slot.addr });
                    if let Some(chunk) = fresh.get_mut(chunk as usize) {
                        chunk.words[word] |= mask;
                    }
                }
            }
        }
        let mut tracked = self
            .tracked
            .lock()
            .map_err(|_| anyhow!("tracked filter lock poisoned"))?;
        for (index, (fresh, old)) in (0..chunks).zip(fresh.iter().zip(&snapshot)) {
            let live = tracked
                .get(&index, 0)
                .context("failed to read the tracked-source filter")?;
            let mut next = *fresh;
            for ((next, live), old) in next.words.iter_mut().zip(live.words).zip(old.words) {
                // Set since the snapshot: a source admitted during the walk.
                *next |= live & !old;
            }
            if next != live {
                tracked
                    .set(index, next, 0)
                    .context("failed to write the tracked-source filter")?;
            }
        }
        Ok(count)
    }

    /// Whether a source's bit is set in the tracked-source filter.
    ///
    /// # Errors
    /// If the map lookup fails.
    pub fn is_marked(&self, key: &SourceKey) -> anyhow::Result<bool> {
        let (chunk, word, mask) = tracked_bit(key);
        let tracked = self
            .tracked
            .lock()
            .map_err(|_| anyhow!("tracked filter lock poisoned"))?;
        let value = tracked
            .get(&chunk, 0)
            .context("failed to read the tracked-source filter")?;
        Ok(value.words[word] & mask != 0)
    }

    /// Clears a source's bit, as a lost concurrent update would (tests).
    ///
    /// # Errors
    /// If the map lookup or update fails.
    pub fn unmark(&self, key: &SourceKey) -> anyhow::Result<()> {
        self.set_tracked_bit(key, false)
    }

    /// Sets a source's bit in the tracked-source filter (`FW_TRACKED`).
    ///
    /// # Errors
    /// If the map lookup or update fails.
    pub fn mark_tracked(&self, key: &SourceKey) -> anyhow::Result<()> {
        self.set_tracked_bit(key, true)
    }

    fn set_tracked_bit(&self, key: &SourceKey, set: bool) -> anyhow::Result<()> {
        let (chunk, word, mask) = tracked_bit(key);
        let mut tracked = self
            .tracked
            .lock()
            .map_err(|_| anyhow!("tracked filter lock poisoned"))?;
        let mut value = tracked
            .get(&chunk, 0)
            .context("failed to read the tracked-source filter")?;
        if set {
            value.words[word] |= mask;
        } else {
            value.words[word] &= !mask;
        }
        tracked
            .set(chunk, value, 0)
            .context("failed to write the tracked-source filter")
    }
}

/// `CLOCK_MONOTONIC` now, the clock of `bpf_ktime_get_ns()`.
///
/// # Errors
/// If `clock_gettime` fails.
pub fn monotonic_now_ns() -> anyhow::Result<u64> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .context("clock_gettime(CLOCK_MONOTONIC) failed")?;
    let secs = u64::try_from(ts.tv_sec()).context("negative monotonic time")?;
    let nanos = u64::try_from(ts.tv_nsec()).context("negative monotonic time")?;
    Ok(secs * 1_000_000_000 + nanos)
}
