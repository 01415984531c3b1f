//! The source table (`FW_SOURCES`) and its filter (`FW_TRACKED`): the one place that
//! finds and inserts sources.
//!
//! A source lives in one of the `SOURCE_WAYS` slots of its set (`source_set`). A lookup
//! compares the set's keys; an insert takes the set's least recently active slot that is
//! not blocked. Two CPUs that insert into one set in the same instant can take the same
//! slot: the last key written wins, and the other source finds no entry and is counted as
//! a full table for that packet (its next packet inserts it again). A slot read while it
//! is being rewritten can pair a key with the state being written for another source, as
//! an LRU element recycled under a reader could: at worst one packet is charged to the
//! wrong state.
//!
//! The filter has a bit per hash of the sources that may be in the table. It is set here
//! before every insert and never cleared by this program, so a clear bit means "not in the
//! table": the packet skips the table's lookup, the cache misses a spoofed flood would
//! otherwise pay per packet.

use aya_ebpf::bindings::BPF_ANY;
use filter_common::{
    CLASSES, COST_SHIFT, ClassState, SOURCE_WAYS, SourceKey, SourceSlot, SourceState,
    TABLE_EVICTIONS, TABLE_INSERT_FAILURES, TABLE_INSERTS, list_flags, source_set, tracked_bit,
};

use crate::{
    maps::{self, FW_CLASS_STATE, FW_SOURCES, FW_TABLE_STATS, FW_TRACKED},
    packet::Packet,
};

/// What [`insert`] did.
pub enum Insert {
    /// The source is in the table now.
    Added,
    /// It was there already (another CPU, or a filter bit lost to a race).
    Exists,
    /// Every slot of its set holds a blocked source.
    Refused,
}

/// Whether [`insert`] charges the packet to the new entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// The entry starts charged with this packet, which is done with then (the short path
    /// of a source certainly not in the table).
    Now,
    /// The entry starts idle and the caller charges the packet through it, as any tracked
    /// packet (the table path). One tail for every tracked packet keeps the verifier from
    /// walking the limit and prefix code twice.
    Later,
}

/// Whether the packet's source may be in the table (false: it certainly is not).
#[inline(always)]
pub fn maybe_tracked(key: &SourceKey) -> bool {
    let (chunk, word, mask) = tracked_bit(key);
    match FW_TRACKED.get(chunk) {
        Some(chunk) => chunk.words.get(word).is_none_or(|w| w & mask != 0),
        None => true,
    }
}

/// The state of `key`'s source, if the table holds it: a pointer into the map, valid for
/// the program's run.
#[inline(always)]
pub fn find(key: &SourceKey) -> Option<*mut SourceState> {
    let first = first_slot(key);
    let words = key.words();
    for way in 0..SOURCE_WAYS {
        let slot = FW_SOURCES.get_ptr_mut(first + way)?;
        // SAFETY: a pointer from a successful array lookup; a slot is aligned to 8.
        if unsafe { key_words(slot) } == words {
            // SAFETY: as above.
            return Some(unsafe { &raw mut (*slot).state });
        }
    }
    None
}

/// The first slot of `key`'s set.
#[inline(always)]
fn first_slot(key: &SourceKey) -> u32 {
    source_set(key, maps::source_sets()) * SOURCE_WAYS
}

/// The slot's key as the words `SourceKey::words` gives.
///
/// # Safety
/// `slot` must point to a live slot.
#[inline(always)]
unsafe fn key_words(slot: *const SourceSlot) -> [u64; 2] {
    // SAFETY: the caller guarantees `slot`; the key is its first 16 bytes, aligned to 8.
    unsafe { *slot.cast::<[u64; 2]>() }
}

/// Inserts the packet's source. Charged [`Charge::Now`], its TATs start one cost after now,
/// as an idle source's do after a packet, and its reporting window counts the packet (a first
/// packet larger than the byte burst is not blocked for it: the smallest byte burst holds an
/// ordinary MTU). With class limits set, its per-class TATs start the same way.
#[inline(always)]
pub fn insert(pkt: &Packet, charge: Charge) -> Insert {
    let (limits, now) = (pkt.limits, pkt.now);
    let charged = charge == Charge::Now;
    let cost = |cost_fp: u64| if charged { cost_fp >> COST_SHIFT } else { 0 };
    let mut fresh = SourceState {
        packet_tat_ns: now + cost(limits.packet_cost_fp),
        byte_tat_ns: now + cost(pkt.len * limits.byte_cost_fp),
        window_start_ns: now,
        ..SourceState::default()
    };
    // The 4-byte fields one by one: LLVM would merge two neighbours into one 8-byte store
    // at a stack offset aligned to 4 only, which the verifier refuses (stack accesses must
    // be aligned, even where misaligned ones are allowed elsewhere).
    // SAFETY: plain stores to fields of a local.
    unsafe {
        core::ptr::write_volatile(&raw mut fresh.window_packets, u32::from(charged));
        core::ptr::write_volatile(
            &raw mut fresh.window_bytes,
            if charged { pkt.len_u32() } else { 0 },
        );
    }
    mark_tracked(&pkt.key);
    match place(&pkt.key, &fresh, now) {
        Insert::Added => count(TABLE_INSERTS),
        Insert::Exists => return Insert::Exists,
        Insert::Refused => {
            count(TABLE_INSERT_FAILURES);
            return Insert::Refused;
        }
    }
    if pkt.flag(list_flags::CLASS_LIMITS) {
        let mut classes = ClassState {
            class_tat_ns: [now; CLASSES],
        };
        if let (Some(params), Some(tat)) = (
            limits.class_packets.get(pkt.class_index()),
            classes.class_tat_ns.get_mut(pkt.class_index()),
        ) {
            *tat = now + cost(params.cost_fp);
        }
        // Overwrites what an earlier life of this source left. A full class table leaves
        // the source without class limits: fail open, as for the source table.
        let _ = FW_CLASS_STATE.insert(&pkt.key, &classes, u64::from(BPF_ANY));
    }
    Insert::Added
}

/// Writes `key` with `state` into its set: `Exists` if the set holds it already (another
/// CPU inserted it since our lookup), else into the least recently active slot whose
/// source is not blocked now (an empty slot is the least recently active of all);
/// `Refused` if every slot holds a blocked source. Counts an eviction when the slot taken
/// held a source. The state is written first and the key last, so that a reader who finds
/// the new key finds the new state, not the old source's.
#[inline(always)]
fn place(key: &SourceKey, state: &SourceState, now: u64) -> Insert {
    let first = first_slot(key);
    let words = key.words();
    let mut victim = None;
    let mut oldest = u64::MAX;
    for way in 0..SOURCE_WAYS {
        let Some(slot) = FW_SOURCES.get_ptr_mut(first + way) else {
            break;
        };
        // SAFETY: a pointer from a successful array lookup; a slot is aligned to 8.
        let (held, occupant) = unsafe { (key_words(slot), &*slot) };
        if held == words {
            return Insert::Exists;
        }
        let active = occupant.last_active_ns();
        if occupant.state.blocked_until_ns <= now && active < oldest {
            oldest = active;
            victim = Some(slot);
        }
    }
    let Some(slot) = victim else {
        return Insert::Refused;
    };
    // SAFETY: a pointer from a successful array lookup.
    if unsafe { (*slot).holds_source() } {
        count(TABLE_EVICTIONS);
    }
    // SAFETY: as above; plain stores into a live slot.
    unsafe {
        (*slot).state = *state;
        core::ptr::write_volatile(&raw mut (*slot).key, *key);
    }
    Insert::Added
}

/// Sets `key`'s filter bit, before it is inserted. A plain read-modify-write: two CPUs
/// setting bits of one word in the same instant can lose one; that source then looks new,
/// goes through admission again and, once admitted, finds its entry (the insert says it
/// exists) and sets its bit again.
#[inline(always)]
fn mark_tracked(key: &SourceKey) {
    let (chunk, word, mask) = tracked_bit(key);
    if let Some(chunk) = FW_TRACKED.get_ptr_mut(chunk) {
        // SAFETY: a pointer from a successful array lookup; `get_mut` bounds the index.
        if let Some(w) = unsafe { (*chunk).words.get_mut(word) } {
            *w |= mask;
        }
    }
}

/// Adds one to a `FW_TABLE_STATS` slot on this CPU.
#[inline(always)]
fn count(slot: u32) {
    if let Some(counter) = FW_TABLE_STATS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU array element owned by this CPU.
        unsafe { *counter += 1 };
    }
}
