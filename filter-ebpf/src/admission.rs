//! The defence against random-source floods.
//!
//! A spoofed flood brings a new source with almost every packet. Giving each one a table
//! entry would make the LRU table churn (an insert costs ~300 ns here and evicts a real
//! client's state). So a source not in the table is first counted in a small per-CPU
//! count-min sketch; only once it has shown `admit_packets` packets within the current
//! second does it get an entry and its own limits, and then only while this CPU's
//! admission budget (`--admit-rate`) has room: a flood that fills the sketch still cannot
//! churn the table. Until then its packets are untracked and held to a per-class ceiling, a
//! per-CPU GCRA, which protects the host when every source is new. Sources already in the table are never subject to the ceiling, so established
//! clients keep working through a spoofed flood.

use filter_common::{
    ADMISSION_SLOT, COST_SHIFT, Class, LimitsConfig, SKETCH_EPOCH_SHIFT, SourceKey, sketch_bucket,
};

use crate::maps::{FW_CEILINGS, FW_SKETCH};

/// Largest count a sketch bucket holds (24 bits).
const COUNT_MASK: u32 = 0x00ff_ffff;

/// Counts a packet of an untracked source in this CPU's sketch and returns the estimated
/// number of its packets this epoch. Count-min with conservative update: only the buckets
/// at the minimum are raised, so a flood of distinct sources fills the sketch far more
/// slowly than plain count-min would (a saturated sketch would admit everybody).
#[inline(always)]
pub fn count_and_estimate(key: &SourceKey, now: u64) -> u32 {
    #[expect(clippy::cast_possible_truncation, reason = "masked to 8 bits")]
    let epoch = ((now >> SKETCH_EPOCH_SHIFT) & 0xff) as u32;
    let (Some(row0), Some(row1)) = (FW_SKETCH.get_ptr_mut(0), FW_SKETCH.get_ptr_mut(1)) else {
        return COUNT_MASK; // cannot happen; admit rather than drop
    };
    // SAFETY: per-CPU array elements owned by this CPU; `get_mut` bounds the indexes.
    let cells = unsafe {
        (
            (*row0).buckets.get_mut(sketch_bucket(&key.addr, 0)),
            (*row1).buckets.get_mut(sketch_bucket(&key.addr, 1)),
        )
    };
    let (Some(a), Some(b)) = cells else {
        return COUNT_MASK;
    };
    let count = |cell: u32| {
        if cell >> 24 == epoch {
            cell & COUNT_MASK
        } else {
            0
        }
    };
    let (count_a, count_b) = (count(*a), count(*b));
    let estimate = if count_a < count_b { count_a } else { count_b };
    let next = if estimate < COUNT_MASK {
        estimate + 1
    } else {
        COUNT_MASK
    };
    if count_a < next {
        *a = (epoch << 24) | next;
    }
    if count_b < next {
        *b = (epoch << 24) | next;
    }
    next
}

/// Whether this CPU's admission budget has room for one more table entry (and takes it).
#[inline(always)]
pub fn take_admission(limits: &LimitsConfig, now: u64) -> bool {
    let params = limits.admit_rate;
    if params.cost_fp == 0 {
        return true;
    }
    let Some(tat) = FW_CEILINGS.get_ptr_mut(ADMISSION_SLOT) else {
        return true;
    };
    // SAFETY: a per-CPU array element owned by this CPU.
    unsafe { !gcra_step(tat, now, params.cost_fp >> COST_SHIFT, params.window_ns) }
}

/// Whether this CPU's admission budget has room now, without taking it. A spoofed flood
/// keeps the budget empty nearly all the time; its packets then skip the sketch, which
/// could admit none of them anyway.
#[inline(always)]
pub fn admission_open(limits: &LimitsConfig, now: u64) -> bool {
    let params = limits.admit_rate;
    if params.cost_fp == 0 {
        return true;
    }
    let Some(tat) = FW_CEILINGS.get(ADMISSION_SLOT) else {
        return true;
    };
    let start = if *tat > now { *tat } else { now };
    start + (params.cost_fp >> COST_SHIFT) - now <= params.window_ns
}

/// A strict GCRA step on a per-CPU TAT: true (and no charge) if over the limit.
///
/// # Safety
/// `tat` must point to this CPU's element of a per-CPU array.
#[inline(always)]
unsafe fn gcra_step(tat: *mut u64, now: u64, cost: u64, window: u64) -> bool {
    // SAFETY: the caller guarantees `tat`.
    unsafe {
        let start = if *tat > now { *tat } else { now };
        let next = start + cost;
        if next - now > window {
            return true;
        }
        *tat = next;
    }
    false
}

/// Whether an untracked packet of `class` goes over the class's ceiling on this CPU.
/// A packet over the ceiling does not consume it (strict GCRA), so the ceiling lets through
/// exactly its rate however hard the flood.
#[inline(always)]
pub fn over_ceiling(class: Class, limits: &LimitsConfig, now: u64) -> bool {
    let Some(params) = limits.ceilings.get(class as usize) else {
        return false;
    };
    if params.cost_fp == 0 {
        return false;
    }
    let Some(tat) = FW_CEILINGS.get_ptr_mut(class as u32) else {
        return false;
    };
    // SAFETY: a per-CPU array element owned by this CPU (XDP runs with preemption off).
    unsafe { gcra_step(tat, now, params.cost_fp >> COST_SHIFT, params.window_ns) }
}
