//! [`RuleMaps`]: the rules' maps. A new set is compiled into the halves of `FW_RULES` and
//! `FW_RULE_BUCKETS` that nothing points to, then each bucket's position in
//! `FW_RULE_BUCKET_AT` and the index bits switch to it, so the program sees the old rules
//! or the new ones, never a mix within one bucket.

use std::net::IpAddr;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues},
};
use filter_common::{
    MAX_RULE_BUCKETS, MAX_RULES, RULE_INDEX_WORDS, RULE_RECORD_BYTES, RuleBucket, RuleCounters,
    RuleEntry, RuleRateState, RuleRecord, RuleSourceKey, RuleSourceState, SourceKey, map_names,
};

use super::{Rule, RuleError, RuleSet, compile};
use crate::maps::{remove_key, take};

/// The rules' maps, and which half of `FW_RULES` and `FW_RULE_BUCKETS` the index points
/// to.
pub struct RuleMaps {
    entries: Array<MapData, RuleEntry>,
    buckets: Array<MapData, RuleBucket>,
    bucket_at: Array<MapData, u32>,
    index: Array<MapData, u64>,
    stats: PerCpuArray<MapData, RuleCounters>,
    rates: Array<MapData, RuleRateState>,
    sources: HashMap<MapData, RuleSourceKey, RuleSourceState>,
    records: Array<MapData, RuleRecord>,
    half: u32,
}

fn map_error(what: &str, e: impl std::fmt::Display) -> RuleError {
    RuleError::Map(format!("{what}: {e}"))
}

impl RuleMaps {
    /// Takes the rules' maps out of a loaded object.
    ///
    /// # Errors
    /// If a map is missing or has another layout.
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let mut maps = Self {
            entries: take(ebpf, map_names::RULES)?,
            buckets: take(ebpf, map_names::RULE_BUCKETS)?,
            bucket_at: take(ebpf, map_names::RULE_BUCKET_AT)?,
            index: take(ebpf, map_names::RULE_INDEX)?,
            stats: take(ebpf, map_names::RULE_STATS)?,
            rates: take(ebpf, map_names::RULE_RATES)?,
            sources: take(ebpf, map_names::RULE_SOURCES)?,
            records: take(ebpf, map_names::RULE_RECORDS)?,
            half: 0,
        };
        // The index of a daemon before points into one half: the next write goes into the
        // other.
        let index = maps.read_index()?;
        maps.half = half_in_use(&index, |position| {
            maps.bucket_at
                .get(&position, 0)
                .map_err(|e| map_error("FW_RULE_BUCKET_AT", e))
        })?;
        Ok(maps)
    }

    /// The rules a daemon before recorded (none in fresh maps).
    ///
    /// # Errors
    /// If a record cannot be read or is not a rule.
    pub fn recorded(&self) -> anyhow::Result<Vec<Rule>> {
        let mut rules = Vec::new();
        for slot in 0..MAX_RULES {
            let record = self
                .records
                .get(&slot, 0)
                .with_context(|| format!("cannot read the record of rule slot {slot}"))?;
            if record.len == 0 {
                continue;
            }
            let len = (record.len as usize).min(RULE_RECORD_BYTES);
            let rule: Rule = serde_json::from_slice(&record.text[..len])
                .with_context(|| format!("the record of rule slot {slot} is not a rule"))?;
            rules.push(rule);
        }
        Ok(rules)
    }

    /// Makes the program enforce `next` instead of `current`: entries and buckets into the
    /// other halves, fresh state for the rules new in `next`, then the buckets' positions,
    /// then the index bits; last, what `current` alone used is cleared.
    ///
    /// # Errors
    /// A set that does not fit the kernel's bounds (nothing written then), or a map write
    /// the kernel refuses.
    pub fn write(&mut self, current: &RuleSet, next: &RuleSet) -> Result<(), RuleError> {
        let half = 1 - self.half;
        let compiled = compile(next.rules(), half)?;
        // Every record built before anything is written: one that does not fit refuses the
        // set.
        let records = next
            .rules()
            .iter()
            .map(|rule| Ok((rule.slot, record(rule)?)))
            .collect::<Result<Vec<_>, RuleError>>()?;
        for slot in next.slots_not_in(current) {
            self.reset_slot(slot)?;
        }
        for (at, entry) in &compiled.entries {
            self.entries
                .set(*at, entry, 0)
                .map_err(|e| map_error("FW_RULES", e))?;
        }
        for (_, slot, bucket) in compiled.placed() {
            self.buckets
                .set(slot, bucket, 0)
                .map_err(|e| map_error("FW_RULE_BUCKETS", e))?;
        }
        // Each position to its new slot (one word: the program reads the old slot or the
        // new one, each a whole bucket); a position whose bit stays clear is never read.
        for (position, slot, _) in compiled.placed() {
            self.bucket_at
                .set(position, slot, 0)
                .map_err(|e| map_error("FW_RULE_BUCKET_AT", e))?;
        }
        // Then the bits, a word at a time: a position whose bit goes still points to a
        // whole bucket of the old half, which stays as it is until the next set is written.
        let old_index = self.read_index()?;
        for (word, (old, new)) in old_index.iter().zip(&compiled.index).enumerate() {
            if old != new {
                self.set_index(word, *new)?;
            }
        }
        self.half = half;
        // The records follow the rules: a daemon that takes over reads them.
        for (slot, record) in records {
            self.records
                .set(slot, record, 0)
                .map_err(|e| map_error("FW_RULE_RECORDS", e))?;
        }
        for slot in current.slots_not_in(next) {
            self.clear_record(slot)?;
            if !next.rules().iter().any(|r| r.slot == slot) {
                self.clear_sources(slot);
            }
        }
        Ok(())
    }

    /// A rule's counters, summed over CPUs (first: the earliest, last: the latest match).
    ///
    /// # Errors
    /// If the map read fails.
    pub fn counters(&self, slot: u32) -> anyhow::Result<RuleCounters> {
        let per_cpu = self
            .stats
            .get(&slot, 0)
            .with_context(|| format!("cannot read the counters of rule slot {slot}"))?;
        Ok(per_cpu
            .iter()
            .fold(RuleCounters::default(), |sum, c| RuleCounters {
                matched_packets: sum.matched_packets + c.matched_packets,
                matched_bytes: sum.matched_bytes + c.matched_bytes,
                dropped_packets: sum.dropped_packets + c.dropped_packets,
                dropped_bytes: sum.dropped_bytes + c.dropped_bytes,
                first_ns: match (sum.first_ns, c.first_ns) {
                    (0, f) | (f, 0) => f,
                    (a, b) => a.min(b),
                },
                last_ns: sum.last_ns.max(c.last_ns),
            }))
    }

    fn read_index(&self) -> Result<Vec<u64>, RuleError> {
        (0..RULE_INDEX_WORDS)
            .map(|i| {
                self.index
                    .get(&i, 0)
                    .map_err(|e| map_error("FW_RULE_INDEX", e))
            })
            .collect()
    }

    fn set_index(&mut self, word: usize, value: u64) -> Result<(), RuleError> {
        let word = u32::try_from(word).unwrap_or(u32::MAX);
        self.index
            .set(word, value, 0)
            .map_err(|e| map_error("FW_RULE_INDEX", e))
    }

    /// Zero counters and rate state for a rule new in its slot.
    fn reset_slot(&mut self, slot: u32) -> Result<(), RuleError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| map_error("possible CPUs", e))?;
        let zero = PerCpuValues::try_from(vec![RuleCounters::default(); cpus])
            .map_err(|e| map_error("FW_RULE_STATS", e))?;
        self.stats
            .set(slot, zero, 0)
            .map_err(|e| map_error("FW_RULE_STATS", e))?;
        self.rates
            .set(slot, RuleRateState::default(), 0)
            .map_err(|e| map_error("FW_RULE_RATES", e))?;
        self.clear_sources(slot);
        Ok(())
    }

    /// Deletes the per-source state of the rule in `slot`.
    /// The sources blocked now under `per-source` rules: (source, rule slot, end of the block
    /// on the program clock), in the map's order.
    #[must_use]
    pub fn blocked_sources(&self, now_ns: u64) -> Vec<(IpAddr, u32, u64)> {
        self.sources
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, state)| state.blocked_until_ns > now_ns)
            .map(|(key, state)| {
                (
                    SourceKey { addr: key.addr }.ip(),
                    key.rule,
                    state.blocked_until_ns,
                )
            })
            .collect()
    }

    /// Ends `addr`'s blocks under every `per-source` rule (its state under them goes, so it
    /// starts again with full bursts); how many there were.
    ///
    /// # Errors
    /// If the kernel refuses a delete.
    pub fn unblock(&mut self, addr: IpAddr, now_ns: u64) -> Result<usize, RuleError> {
        let want = SourceKey::from_ip(addr).addr;
        let keys: Vec<RuleSourceKey> = self
            .sources
            .iter()
            .filter_map(Result::ok)
            .filter(|(key, state)| key.addr == want && state.blocked_until_ns > now_ns)
            .map(|(key, _)| key)
            .collect();
        for key in &keys {
            // Evicted meanwhile by the LRU: unblocked all the same.
            remove_key(&mut self.sources, key).map_err(|e| map_error("FW_RULE_SOURCES", e))?;
        }
        Ok(keys.len())
    }

    fn clear_sources(&mut self, slot: u32) {
        let keys: Vec<RuleSourceKey> = self
            .sources
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.rule == slot)
            .collect();
        for key in keys {
            // Evicted meanwhile by the LRU: already gone.
            let _ = self.sources.remove(&key);
        }
    }

    fn clear_record(&mut self, slot: u32) -> Result<(), RuleError> {
        self.records
            .set(
                slot,
                RuleRecord {
                    len: 0,
                    pad: 0,
                    text: [0; RULE_RECORD_BYTES],
                },
                0,
            )
            .map_err(|e| map_error("FW_RULE_RECORDS", e))
    }
}

/// The half of `FW_RULE_BUCKETS` that `index` points into: 1 where a bucket whose bit is
/// set has its slot (`slot_at` its position) in the upper half, else 0 (also for an empty
/// index).
fn half_in_use(
    index: &[u64],
    mut slot_at: impl FnMut(u32) -> Result<u32, RuleError>,
) -> Result<u32, RuleError> {
    for (word, bits) in (0u32..).zip(index) {
        for bit in (0..64).filter(|bit| bits & (1 << bit) != 0) {
            if slot_at(word * 64 + bit)? >= MAX_RULE_BUCKETS {
                return Ok(1);
            }
        }
    }
    Ok(0)
}

/// The record of a rule.
fn record(rule: &Rule) -> Result<RuleRecord, RuleError> {
    let json = serde_json::to_vec(rule).map_err(|e| map_error("rule record", e))?;
    let mut text = [0; RULE_RECORD_BYTES];
    text.get_mut(..json.len())
        .ok_or_else(|| {
            RuleError::Capacity(format!(
                "rule {} is {} bytes as stored, over {RULE_RECORD_BYTES}: shorten its comment \
                 or split its lists",
                rule.id,
                json.len()
            ))
        })?
        .copy_from_slice(&json);
    Ok(RuleRecord {
        len: u32::try_from(json.len()).unwrap_or(0),
        pad: 0,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_half_in_use_is_the_one_the_set_bits_point_into() {
        let mut index = vec![0u64; 4];
        index[1] = 1 << 5;
        index[3] = 1 << 63;
        let upper = |position: u32| Ok(MAX_RULE_BUCKETS + position);
        let lower = |position: u32| Ok(position);
        assert_eq!(half_in_use(&index, upper).ok(), Some(1));
        assert_eq!(half_in_use(&index, lower).ok(), Some(0));
        let mut asked = Vec::new();
        let _ = half_in_use(&index, |position| {
            asked.push(position);
            Ok(0)
        });
        assert_eq!(asked, [69, 255], "only the positions whose bits are set");
        assert_eq!(
            half_in_use(&[0; 4], upper).ok(),
            Some(0),
            "no set: the lower"
        );
        let failed = half_in_use(&index, |_| {
            Err(RuleError::Map("FW_RULE_BUCKET_AT: gone".into()))
        });
        assert!(failed.is_err());
    }
}
