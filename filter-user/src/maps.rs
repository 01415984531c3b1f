//! Typed access to the program's maps, by the names `filter_common` gives them.

use std::sync::Mutex;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray},
};
use filter_common::{Counter, LimitsConfig, Outcome, SourceKey, SourceState, map_names};

use crate::stats::{Sample, Totals};

/// The maps the daemon reads and writes (the event ring buffer is taken separately by the
/// event reader). Each map has its own lock so that a long table walk (`top`) does not hold
/// up a limits change.
pub struct FilterMaps {
    sources: Mutex<HashMap<MapData, SourceKey, SourceState>>,
    limits: Mutex<Array<MapData, LimitsConfig>>,
    counters: PerCpuArray<MapData, Counter>,
    events_lost: PerCpuArray<MapData, u64>,
}

fn take<T>(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<T>
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
            sources: Mutex::new(take(ebpf, map_names::SOURCES)?),
            limits: Mutex::new(take(ebpf, map_names::LIMITS)?),
            counters: take(ebpf, map_names::COUNTERS)?,
            events_lost: take(ebpf, map_names::EVENTS_LOST)?,
        })
    }

    /// Writes the limits; the program uses them from its next packet on.
    ///
    /// # Errors
    /// If the map update fails.
    pub fn write_limits(&self, config: &LimitsConfig) -> anyhow::Result<()> {
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

    /// Sums the per-CPU counters of every outcome.
    ///
    /// # Errors
    /// If a map lookup fails.
    pub fn totals(&self) -> anyhow::Result<Totals> {
        let mut totals = Totals::default();
        for outcome in Outcome::ALL {
            let per_cpu = self
                .counters
                .get(&(outcome as u32), 0)
                .with_context(|| format!("failed to read the {} counter", outcome.name()))?;
            totals.0[outcome as usize] = Totals::sum_cpus(per_cpu.iter());
        }
        Ok(totals)
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

    /// The state of one source, if tracked.
    ///
    /// # Errors
    /// If the lookup fails for another reason than a missing key.
    pub fn source(&self, key: &SourceKey) -> anyhow::Result<Option<SourceState>> {
        let sources = self
            .sources
            .lock()
            .map_err(|_| anyhow!("sources map lock poisoned"))?;
        match sources.get(key, 0) {
            Ok(state) => Ok(Some(state)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).context("failed to look up a source"),
        }
    }

    /// Every tracked source. Walks the whole table (two syscalls per entry): call it off
    /// the async runtime's worker threads.
    ///
    /// # Errors
    /// If the walk fails.
    pub fn all_sources(&self) -> anyhow::Result<Vec<(SourceKey, SourceState)>> {
        let sources = self
            .sources
            .lock()
            .map_err(|_| anyhow!("sources map lock poisoned"))?;
        let mut out = Vec::new();
        for entry in sources.iter() {
            match entry {
                Ok(kv) => out.push(kv),
                // An LRU entry can be evicted between finding its key and reading it.
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(e).context("failed to walk the sources table"),
            }
        }
        Ok(out)
    }

    /// Forgets a source (and so its block).
    ///
    /// # Errors
    /// If the delete fails for another reason than a missing key.
    pub fn remove_source(&self, key: &SourceKey) -> anyhow::Result<bool> {
        let mut sources = self
            .sources
            .lock()
            .map_err(|_| anyhow!("sources map lock poisoned"))?;
        match sources.remove(key) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(e) => Err(e).context("failed to delete a source"),
        }
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
        sources
            .insert(key, state, 0)
            .context("failed to write a source")
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
