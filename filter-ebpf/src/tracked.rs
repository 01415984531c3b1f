//! Stage: packets of sources in the table (or that may be): per-source limits, blocks and
//! their expiry, the reporting window, then the source's prefixes.
//!
//! Two CPUs that cross a limit at the same instant may both send a block event; the daemon
//! keys blocks by address, so a duplicate changes nothing but a log line.

use aya_ebpf::bindings::BPF_NOEXIST;
use filter_common::{
    BlockEvent, CLASSES, COST_SHIFT, ClassState, EventType, LimitKind, Outcome, RATE_WINDOW_NS,
    SourceState, list_flags,
};

use crate::{
    block_cache, gcra,
    maps::{self, FW_CLASS_STATE},
    packet::Packet,
    prefix,
    table::{self, Charge, Insert},
    untracked,
};

/// Charges the packet to its source (admitting the source first if it is not in the table)
/// and then to its prefixes; `None` if the source is not in the table and not admitted
/// (see `untracked::not_admitted`).
#[inline(always)]
pub fn charge(pkt: &Packet) -> Option<Outcome> {
    let state = match table::find(&pkt.key) {
        Some(state) => {
            // SAFETY: a pointer into the table is valid for the program's run; another CPU
            // may give the slot to another source meanwhile, which at worst mixes two
            // sources' state (see `table`).
            if unsafe { blocked(pkt, state) } {
                return Some(pkt.drop_as(Outcome::DroppedBlocked, Outcome::MonitorBlocked));
            }
            state
        }
        // Its filter bit is set (a hash neighbour's, or one the daemon has not yet cleared),
        // or prefix limits need every packet here.
        None => {
            if !untracked::admits(pkt) {
                return None;
            }
            if let Insert::Refused = table::insert(pkt, Charge::Later) {
                return Some(untracked::ceiling(pkt, Outcome::TableFull));
            }
            match table::find(&pkt.key) {
                Some(state) => state,
                // Its slot taken again before we could look it up: the table is churning.
                None => return Some(untracked::ceiling(pkt, Outcome::TableFull)),
            }
        }
    };
    // SAFETY: `state` comes from a successful lookup (see above); its fields are aligned u64s.
    let exceeded = unsafe { exceeded_limit(pkt, state) };
    // SAFETY: as above.
    unsafe { count_in_window(state, pkt) };
    Some(match exceeded {
        None => prefixes(pkt),
        Some(kind) => {
            // SAFETY: as above.
            unsafe { block(pkt, state, kind) };
            pkt.drop_as(Outcome::DroppedRateLimit, Outcome::MonitorRateLimit)
        }
    })
}

/// The outcome of a packet under its source's limits: its prefixes may still be over theirs.
#[inline(always)]
fn prefixes(pkt: &Packet) -> Outcome {
    if pkt.flag(list_flags::PREFIX_LIMITS) && prefix::over_limit(pkt) {
        pkt.drop_as(Outcome::DroppedPrefixLimit, Outcome::MonitorPrefixLimit)
    } else {
        Outcome::Passed
    }
}

/// Whether the source is blocked. A block that has expired is lifted here: the source starts
/// again with full bursts.
///
/// # Safety
/// `state` must point to a live map value.
#[inline(always)]
unsafe fn blocked(pkt: &Packet, state: *mut SourceState) -> bool {
    let now = pkt.now;
    // SAFETY: the caller guarantees `state`.
    unsafe {
        let until = (*state).blocked_until_ns;
        if until == 0 {
            return false;
        }
        if now < until {
            // Blocked, but not in the cache (its slot was taken by another source).
            return true;
        }
        (*state).blocked_until_ns = 0;
        (*state).packet_tat_ns = now;
        (*state).byte_tat_ns = now;
    }
    if let Some(classes) = FW_CLASS_STATE.get_ptr_mut(&pkt.key) {
        // SAFETY: a pointer from a successful lookup.
        unsafe { (*classes).class_tat_ns = [now; CLASSES] };
    }
    false
}

/// Advances the class, packet and byte TATs; returns the limit this frame exceeds, if any.
///
/// # Safety
/// `state` must point to a live map value.
#[inline(always)]
unsafe fn exceeded_limit(pkt: &Packet, state: *mut SourceState) -> Option<LimitKind> {
    let (limits, now) = (pkt.limits, pkt.now);
    if pkt.flag(list_flags::CLASS_LIMITS) && class_exceeded(pkt) {
        return Some(LimitKind::ClassPackets);
    }
    if limits.packet_cost_fp != 0 {
        let cost = limits.packet_cost_fp >> COST_SHIFT;
        // SAFETY: the caller guarantees `state`; the field is an aligned u64.
        let tat = unsafe { &raw mut (*state).packet_tat_ns };
        // SAFETY: as above.
        if unsafe { gcra::charge(tat, now, cost, limits.packet_window_ns) } {
            return Some(LimitKind::Packets);
        }
    }
    if limits.byte_cost_fp != 0 {
        let cost = (pkt.len * limits.byte_cost_fp) >> COST_SHIFT;
        // SAFETY: as above.
        let tat = unsafe { &raw mut (*state).byte_tat_ns };
        // SAFETY: as above.
        if unsafe { gcra::charge(tat, now, cost, limits.byte_window_ns) } {
            return Some(LimitKind::Bytes);
        }
    }
    None
}

/// Charges the packet to its source's class TAT; whether that goes over the class limit.
/// A source without class state yet starts from now, as one whose TATs are all in the past.
#[inline(always)]
fn class_exceeded(pkt: &Packet) -> bool {
    let Some(params) = pkt.limits.class_packets.get(pkt.class_index()) else {
        return false;
    };
    if params.cost_fp == 0 {
        return false;
    }
    let classes = match FW_CLASS_STATE.get_ptr_mut(&pkt.key) {
        Some(classes) => classes,
        None => {
            let fresh = ClassState {
                class_tat_ns: [pkt.now; CLASSES],
            };
            // A full class table leaves the source without class limits: fail open.
            let _ = FW_CLASS_STATE.insert(&pkt.key, &fresh, u64::from(BPF_NOEXIST));
            match FW_CLASS_STATE.get_ptr_mut(&pkt.key) {
                Some(classes) => classes,
                None => return false,
            }
        }
    };
    // SAFETY: a pointer from a successful lookup; `get_mut` bounds the index.
    let Some(tat) = (unsafe { (*classes).class_tat_ns.get_mut(pkt.class_index()) }) else {
        return false;
    };
    // SAFETY: an aligned u64 inside a live map value.
    unsafe { gcra::charge(tat, pkt.now, params.cost_fp >> COST_SHIFT, params.window_ns) }
}

/// Counts the frame in the source's reporting window (what `top` shows). Plain stores, not
/// atomics: these numbers only report, and a rare lost increment under cross-CPU races is
/// cheaper than more locked instructions per packet.
///
/// # Safety
/// `state` must point to a live map value.
#[inline(always)]
unsafe fn count_in_window(state: *mut SourceState, pkt: &Packet) {
    // SAFETY: the caller guarantees `state`.
    let s = unsafe { &mut *state };
    let age = pkt.now.wrapping_sub(s.window_start_ns);
    if age >= RATE_WINDOW_NS {
        let adjacent = age < 2 * RATE_WINDOW_NS;
        s.prev_window_packets = if adjacent { s.window_packets } else { 0 };
        s.prev_window_bytes = if adjacent { s.window_bytes } else { 0 };
        s.window_start_ns = pkt.now;
        s.window_packets = 0;
        s.window_bytes = 0;
    }
    s.window_packets = s.window_packets.wrapping_add(1);
    // A frame is at most 64 KiB; the window saturates (see `SourceState::window_bytes`).
    s.window_bytes = s.window_bytes.saturating_add(pkt.len_u32());
}

/// Blocks the source until `now + block_ns` and sends the block event.
///
/// # Safety
/// `state` must point to a live map value.
#[inline(always)]
unsafe fn block(pkt: &Packet, state: *mut SourceState, kind: LimitKind) {
    let (limits, now) = (pkt.limits, pkt.now);
    let until = now + limits.block_ns;
    // SAFETY: the caller guarantees `state`; aligned 8-byte loads and stores are atomic.
    unsafe {
        if core::ptr::read_volatile(&raw const (*state).blocked_until_ns) > now {
            return; // another CPU blocked it first and sent the event
        }
        core::ptr::write_volatile(&raw mut (*state).blocked_until_ns, until);
        // The TAT means nothing while blocked: it keeps when the block started
        // (`SourceState::blocked_at_ns`).
        (*state).packet_tat_ns = now;
    }
    block_cache::record(&pkt.key, until);
    // SAFETY: as above.
    let s = unsafe { &*state };
    maps::send_event(&BlockEvent {
        addr: pkt.key.addr,
        limit_kind: kind as u32,
        mode: limits.mode,
        blocked_until_ns: until,
        now_ns: now,
        window_start_ns: s.window_start_ns,
        window_packets: u64::from(s.window_packets),
        window_bytes: u64::from(s.window_bytes),
        prev_window_packets: u64::from(s.prev_window_packets),
        prev_window_bytes: u64::from(s.prev_window_bytes),
        class: pkt.class as u32,
        event_type: EventType::Block as u32,
    });
}
