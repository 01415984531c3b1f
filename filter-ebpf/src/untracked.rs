//! Stage: packets of sources not in the table, the defence against random-source floods.
//!
//! A spoofed flood brings a new source with almost every packet. Giving each one a table
//! entry would make the table churn (an insert costs more than a lookup, and evicts
//! a real client's state). So a source not in the table is first counted in a small per-CPU
//! count-min sketch; only once it has shown `admit_packets` packets within the current epoch
//! does it get an entry and its own limits, and then only while this CPU's admission budget
//! (`--admit-rate`) has room: a flood that fills the sketch still cannot churn the table.
//! Until then its packets are untracked and held to a per-class ceiling, a per-CPU GCRA,
//! which protects the host when every source is new. Sources already in the table are never
//! subject to the ceiling, so established clients keep working through a spoofed flood.

use filter_common::{
    ADMISSION_SLOT, COST_SHIFT, Outcome, SKETCH_EPOCH_SHIFT, SourceKey, sketch_bucket,
};

use crate::{
    gcra,
    maps::{FW_CEILINGS, FW_SKETCH},
    packet::Packet,
    syncookie,
    table::{self, Charge, Insert},
};

/// Largest count a sketch bucket holds (24 bits).
const COUNT_MASK: u32 = 0x00ff_ffff;

/// The outcome of a packet whose source is certainly not in the table (and no prefix limit
/// needs it charged): admitted to the table and charged with this packet, or held to its
/// class's ceiling; `None` if it is not admitted (see [`not_admitted`]).
#[inline(always)]
pub fn new_source(pkt: &Packet) -> Option<Outcome> {
    if !admits(pkt) {
        return None;
    }
    Some(match table::insert(pkt, Charge::Now) {
        Insert::Added | Insert::Exists => Outcome::Passed,
        Insert::Refused => ceiling(pkt, Outcome::TableFull),
    })
}

/// The outcome of a packet whose source was not admitted to the table: its class's ceiling,
/// unless it is a SYN or ACK the cookie stage may answer, which goes to the stage's program.
///
/// Admission comes first: a source that sends enough to be admitted gets its own limits (a
/// single host flooding SYNs is blocked as any other); the cookie stage answers the rest,
/// the sources with one SYN or a few, as a spoofed flood's and new users' are.
#[inline(always)]
pub fn not_admitted(pkt: &Packet) -> Outcome {
    if syncookie::may_answer(pkt) {
        // Returns only if the stage's program is not in its slot.
        syncookie::enter(pkt);
    }
    ceiling(pkt, Outcome::Passed)
}

/// The decision of the cookie stage's program (`floodwall_syncookie`): the stage's answer,
/// or the ceiling for what it cannot serve.
#[inline(always)]
pub fn cookie_or_ceiling(pkt: &Packet) -> Outcome {
    match syncookie::answer(pkt) {
        Some(outcome) => outcome,
        None => ceiling(pkt, Outcome::Passed),
    }
}

/// Whether the packet's source, not in the table, gets an entry now: it has shown enough
/// packets in this CPU's sketch (counted only while the budget has room: a spoofed flood
/// keeps the budget empty nearly all the time, and its packets then skip the sketch, which
/// could admit none of them anyway), and the budget gives it a place (taken here).
#[inline(always)]
pub fn admits(pkt: &Packet) -> bool {
    let limits = pkt.limits;
    (limits.admit_packets <= 1
        || (budget_open(pkt) && count_and_estimate(&pkt.key, pkt.now) >= limits.admit_packets))
        && take_budget(pkt)
}

/// `passed`, or the ceiling's drop when this untracked packet goes over its class's ceiling
/// on this CPU. A packet over the ceiling does not consume it (strict GCRA), so the ceiling
/// lets through exactly its rate however hard the flood.
#[inline(always)]
pub fn ceiling(pkt: &Packet, passed: Outcome) -> Outcome {
    let Some(params) = pkt.limits.ceilings.get(pkt.class_index()) else {
        return passed;
    };
    if params.cost_fp == 0 {
        return passed;
    }
    let Some(tat) = FW_CEILINGS.get_ptr_mut(pkt.class as u32) else {
        return passed;
    };
    // SAFETY: this CPU's element of a per-CPU array.
    if unsafe { gcra::step_local(tat, pkt.now, params.cost_fp >> COST_SHIFT, params.window_ns) } {
        pkt.drop_as(Outcome::DroppedCeiling, Outcome::MonitorCeiling)
    } else {
        passed
    }
}

/// Counts a packet of an untracked source in this CPU's sketch and returns the estimated
/// number of its packets this epoch. Count-min with conservative update: only the buckets
/// at the minimum are raised, so a flood of distinct sources fills the sketch far more
/// slowly than plain count-min would (a saturated sketch would admit everybody).
#[inline(always)]
fn count_and_estimate(key: &SourceKey, now: u64) -> u32 {
    let epoch = ((now >> SKETCH_EPOCH_SHIFT) & 0xff) as u32;
    let (Some(row0), Some(row1)) = (FW_SKETCH.get_ptr_mut(0), FW_SKETCH.get_ptr_mut(1)) else {
        return COUNT_MASK; // cannot happen; admit rather than drop
    };
    // SAFETY: per-CPU array elements owned by this CPU; `get_mut` bounds the indexes.
    let cells = unsafe {
        (
            (*row0).buckets.get_mut(sketch_bucket(key, 0)),
            (*row1).buckets.get_mut(sketch_bucket(key, 1)),
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

/// Whether this CPU's admission budget has room for one more table entry now.
#[inline(always)]
fn budget_open(pkt: &Packet) -> bool {
    let params = pkt.limits.admit_rate;
    if params.cost_fp == 0 {
        return true;
    }
    FW_CEILINGS.get(ADMISSION_SLOT).is_none_or(|tat| {
        gcra::has_room(
            *tat,
            pkt.now,
            params.cost_fp >> COST_SHIFT,
            params.window_ns,
        )
    })
}

/// Takes one table entry from this CPU's admission budget, if it has room.
#[inline(always)]
fn take_budget(pkt: &Packet) -> bool {
    let params = pkt.limits.admit_rate;
    if params.cost_fp == 0 {
        return true;
    }
    let Some(tat) = FW_CEILINGS.get_ptr_mut(ADMISSION_SLOT) else {
        return true;
    };
    // SAFETY: this CPU's element of a per-CPU array.
    !unsafe { gcra::step_local(tat, pkt.now, params.cost_fp >> COST_SHIFT, params.window_ns) }
}
