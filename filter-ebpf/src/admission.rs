//! The defence against random-source floods.
//!
//! A spoofed flood brings a new source with almost every packet. Giving each one a table
//! entry would make the LRU table churn (an insert costs ~300 ns here and evicts a real
//! client's state). So a source not in the table is first counted in a small per-CPU
//! count-min sketch; only once it has shown `admit_packets` packets within the current
//! second does it get an entry and its own limits. Until then its packets are untracked and
//! held to a per-class ceiling, a per-CPU GCRA, which protects the host when every source
//! is new. Sources already in the table are never subject to the ceiling, so established
//! clients keep working through a spoofed flood.

use filter_common::{
    COST_SHIFT, Class, LimitsConfig, SKETCH_EPOCH_SHIFT, SKETCH_ROWS, SourceKey, sketch_bucket,
};

use crate::maps::{FW_CEILINGS, FW_SKETCH};

/// Largest count a sketch bucket holds (24 bits).
const COUNT_MASK: u32 = 0x00ff_ffff;

/// Counts a packet of an untracked source in this CPU's sketch and returns the estimated
/// number of its packets this epoch (the minimum over the rows: count-min never
/// under-counts).
#[inline(always)]
pub fn count_and_estimate(key: &SourceKey, now: u64) -> u32 {
    #[expect(clippy::cast_possible_truncation, reason = "masked to 8 bits")]
    let epoch = ((now >> SKETCH_EPOCH_SHIFT) & 0xff) as u32;
    let mut estimate = COUNT_MASK;
    for row in 0..SKETCH_ROWS {
        let Some(sketch) = FW_SKETCH.get_ptr_mut(row) else {
            return COUNT_MASK; // cannot happen; admit rather than drop
        };
        let bucket = sketch_bucket(&key.addr, row);
        // SAFETY: a per-CPU array element owned by this CPU; `get_mut` bounds the index.
        let Some(cell) = (unsafe { (*sketch).buckets.get_mut(bucket) }) else {
            return COUNT_MASK;
        };
        let count = if *cell >> 24 == epoch {
            (*cell & COUNT_MASK) + 1
        } else {
            1
        };
        let count = if count > COUNT_MASK {
            COUNT_MASK
        } else {
            count
        };
        *cell = (epoch << 24) | count;
        if count < estimate {
            estimate = count;
        }
    }
    estimate
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
    unsafe {
        let start = if *tat > now { *tat } else { now };
        let next = start + (params.cost_fp >> COST_SHIFT);
        if next - now > params.window_ns {
            return true;
        }
        *tat = next;
    }
    false
}
