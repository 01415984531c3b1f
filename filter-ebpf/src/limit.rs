//! Per-source rate limiting: GCRA on packets and bytes, blocks, reporting windows.
//!
//! Cross-CPU correctness: the theoretical arrival times (TATs) move with atomic
//! add (see [`crate::atomic`]), so a source whose packets land on several CPUs is limited to its
//! configured rate in total. The only non-atomic step is the reset of an idle source's TAT to
//! "now"; racing CPUs can lose one packet's cost there, and only while the source is idle,
//! that is well under its limit.
//!
//! Two CPUs that cross the limit at the same instant may both send a block event; the daemon
//! keys blocks by address, so a duplicate changes nothing but a log line.

use aya_ebpf::bindings::BPF_NOEXIST;
use filter_common::{
    BlockEvent, CLASSES, COST_SHIFT, Class, EventType, LimitKind, LimitsConfig, Mode, Outcome,
    RATE_WINDOW_NS, SourceKey, SourceState, TABLE_INSERT_FAILURES, TABLE_INSERTS, list_flags,
};

use crate::{
    admission, atomic,
    lists::{self, List},
    maps::{self, FW_SOURCES},
    prefix,
};

/// `-EEXIST`: another CPU inserted the same source between our lookup and insert.
const EEXIST: i64 = 17;

/// Decides the outcome of a frame of `len` bytes and `class` from `key` (`v4`: an IPv4
/// source): lists, blocks, admission and ceilings, per-source limits.
#[inline(always)]
pub fn charge(key: &SourceKey, v4: bool, class: Class, len: u64) -> Outcome {
    let Some(limits) = maps::limits() else {
        return Outcome::Passed;
    };
    let now = maps::now_ns(limits);
    let monitor =
        limits.mode == Mode::Monitor as u32 || limits.monitor_classes & (1 << class as u32) != 0;
    let flags = limits.list_flags;

    // The allowlist wins over everything; its trie is only searched when it holds entries.
    let allow_bit = if v4 {
        list_flags::ALLOW_V4
    } else {
        list_flags::ALLOW_V6
    };
    if flags & allow_bit != 0 && lists::matches(List::Allow, key, v4, now, len) {
        return Outcome::Allowed;
    }

    let blocked = if monitor {
        Outcome::MonitorBlocked
    } else {
        Outcome::DroppedBlocked
    };
    // A source whose filter bit is clear is neither in the table nor blocked (see
    // FW_TRACKED): its packet skips the block cache and the table, the two lookups that
    // miss the CPU cache at spoofed-flood rates.
    let maybe_tracked = maps::maybe_tracked(key);
    // The blocked fast path: an inlined array lookup and two reads; no helper call, no write.
    if maybe_tracked && let Some(slot) = maps::block_cache(key) {
        // SAFETY: a pointer from a successful array lookup is valid and aligned. A slot being
        // rewritten by another CPU can be read half-old: then we drop one packet of a source
        // that is being blocked at that very moment, or fall through to the table.
        let (addr, until) = unsafe { ((*slot).addr, (*slot).blocked_until_ns) };
        if now < until && addr == key.addr {
            return blocked;
        }
    }

    let deny_bit = if v4 {
        list_flags::DENY_V4
    } else {
        list_flags::DENY_V6
    };
    if flags & deny_bit != 0 && lists::matches(List::Deny, key, v4, now, len) {
        return if monitor || flags & list_flags::DENY_MONITOR != 0 {
            Outcome::MonitorDenied
        } else {
            Outcome::DroppedDenied
        };
    }

    // Not in the table: admission, and the table only if admitted. This short path ends
    // here, so that the verifier walks the table paths below once. With prefix limits set, a new source's first packet must reach them through the
    // table path below; the short path leaves them out so that the verifier need not walk
    // the prefix code twice.
    let prefixes_active = limits.prefixes.iter().any(|p| p.active != 0);
    if !prefixes_active && !maybe_tracked {
        if (limits.admit_packets <= 1
            || (admission::admission_open(limits, now)
                && admission::count_and_estimate(key, now) >= limits.admit_packets))
            && admission::take_admission(limits, now)
        {
            // Admitted: its entry starts charged with this packet, as a tracked source's
            // first packet would be.
            maps::mark_tracked(key);
            if !insert_source(key, limits, class, now, len) {
                return untracked(class, limits, now, monitor, Outcome::TableFull);
            }
            return Outcome::Passed;
        }
        return untracked(class, limits, now, monitor, Outcome::Passed);
    }
    let state = match FW_SOURCES.get_ptr_mut(key) {
        Some(state) => {
            // SAFETY: a pointer from a successful lookup is valid for the program's run; the
            // LRU may recycle the element afterwards, which at worst mixes two sources' state.
            let blocked_until = unsafe { (*state).blocked_until_ns };
            if blocked_until != 0 {
                if now < blocked_until {
                    // Blocked, but not in the cache (its slot was taken by another source).
                    return blocked;
                }
                // The block expired: the source starts again with a full burst.
                // SAFETY: as above.
                unsafe {
                    (*state).blocked_until_ns = 0;
                    (*state).packet_tat_ns = now;
                    (*state).byte_tat_ns = now;
                    (*state).class_tat_ns = [now; CLASSES];
                }
            }
            state
        }
        None => {
            // Not tracked: admitted to the table only after a few packets (see admission).
            if (limits.admit_packets > 1
                && admission::count_and_estimate(key, now) < limits.admit_packets)
                || !admission::take_admission(limits, now)
            {
                return untracked(class, limits, now, monitor, Outcome::Passed);
            }
            let fresh = SourceState {
                packet_tat_ns: now,
                byte_tat_ns: now,
                window_start_ns: now,
                class_tat_ns: [now; CLASSES],
                ..SourceState::default()
            };
            // Marked already (else the lookup would not have run), or a hash neighbour's
            // bit let it through: mark it for sure.
            maps::mark_tracked(key);
            match FW_SOURCES.insert(key, &fresh, u64::from(BPF_NOEXIST)) {
                Ok(()) => maps::count_table(TABLE_INSERTS),
                Err(err) if i64::from(err) == -EEXIST => {}
                Err(_) => {
                    maps::count_table(TABLE_INSERT_FAILURES);
                    return untracked(class, limits, now, monitor, Outcome::TableFull);
                }
            }
            match FW_SOURCES.get_ptr_mut(key) {
                Some(state) => state,
                // Evicted again before we could look it up: the table is churning.
                None => return untracked(class, limits, now, monitor, Outcome::TableFull),
            }
        }
    };

    // SAFETY: `state` comes from a successful lookup (see above); its fields are u64, aligned
    // to 8 as map values are, so they can be viewed as atomics.
    let exceeded = unsafe { exceeded_limit(state, limits, class, now, len) };
    // SAFETY: as above.
    unsafe { count_in_window(state, now, len) };
    let Some(kind) = exceeded else {
        // Under its own limits; its prefix may still be over the prefix's.
        return if !prefix::over_limit(key, v4, class, limits, now, len) {
            Outcome::Passed
        } else if monitor {
            Outcome::MonitorPrefixLimit
        } else {
            Outcome::DroppedPrefixLimit
        };
    };
    // SAFETY: as above.
    unsafe { block(key, state, limits, class, now, kind) };
    if monitor {
        Outcome::MonitorRateLimit
    } else {
        Outcome::DroppedRateLimit
    }
}

/// Inserts a new source charged with its first packet (`len` bytes of `class`): its TATs
/// start one cost after now, as an idle source's do after a packet. Returns false if the
/// table refused it. (A first packet larger than the byte burst is not blocked here; it
/// cannot be with the smallest byte burst of 1,500 bytes and ordinary MTUs.)
#[inline(always)]
fn insert_source(key: &SourceKey, limits: &LimitsConfig, class: Class, now: u64, len: u64) -> bool {
    let mut fresh = SourceState {
        packet_tat_ns: now + (limits.packet_cost_fp >> COST_SHIFT),
        byte_tat_ns: now + ((len * limits.byte_cost_fp) >> COST_SHIFT),
        window_start_ns: now,
        window_packets: 1,
        window_bytes: len,
        class_tat_ns: [now; CLASSES],
        ..SourceState::default()
    };
    if let (Some(params), Some(tat)) = (
        limits.class_packets.get(class as usize),
        fresh.class_tat_ns.get_mut(class as usize),
    ) {
        *tat = now + (params.cost_fp >> COST_SHIFT);
    }
    match FW_SOURCES.insert(key, &fresh, u64::from(BPF_NOEXIST)) {
        Ok(()) => {
            maps::count_table(TABLE_INSERTS);
            true
        }
        // Another CPU inserted it first: this packet goes uncharged, once.
        Err(err) if i64::from(err) == -EEXIST => true,
        Err(_) => {
            maps::count_table(TABLE_INSERT_FAILURES);
            false
        }
    }
}

/// The outcome of a packet not charged to a tracked source: held to its class's ceiling,
/// else `passed` (`Passed`, or `TableFull` when the table refused the source).
#[inline(always)]
fn untracked(
    class: Class,
    limits: &LimitsConfig,
    now: u64,
    monitor: bool,
    passed: Outcome,
) -> Outcome {
    if !admission::over_ceiling(class, limits, now) {
        passed
    } else if monitor {
        Outcome::MonitorCeiling
    } else {
        Outcome::DroppedCeiling
    }
}

/// Advances the class, packet and byte TATs; returns the limit this frame exceeds, if any.
///
/// # Safety
/// `state` must point to a live map value.
#[inline(always)]
unsafe fn exceeded_limit(
    state: *mut SourceState,
    limits: &LimitsConfig,
    class: Class,
    now: u64,
    len: u64,
) -> Option<LimitKind> {
    if let Some(params) = limits.class_packets.get(class as usize)
        && params.cost_fp != 0
        // SAFETY: the caller guarantees `state`; `get_mut` bounds the index.
        && let Some(tat) = unsafe { (*state).class_tat_ns.get_mut(class as usize) }
        // SAFETY: an aligned u64 inside a live map value.
        && unsafe { gcra_exceeds(tat, now, params.cost_fp >> COST_SHIFT, params.window_ns) }
    {
        return Some(LimitKind::ClassPackets);
    }
    if limits.packet_cost_fp != 0 {
        let cost = limits.packet_cost_fp >> COST_SHIFT;
        // SAFETY: the caller guarantees `state`; the field is an aligned u64.
        if unsafe {
            gcra_exceeds(
                &raw mut (*state).packet_tat_ns,
                now,
                cost,
                limits.packet_window_ns,
            )
        } {
            return Some(LimitKind::Packets);
        }
    }
    if limits.byte_cost_fp != 0 {
        let cost = (len * limits.byte_cost_fp) >> COST_SHIFT;
        // SAFETY: as above.
        if unsafe {
            gcra_exceeds(
                &raw mut (*state).byte_tat_ns,
                now,
                cost,
                limits.byte_window_ns,
            )
        } {
            return Some(LimitKind::Bytes);
        }
    }
    None
}

/// One GCRA step: moves the TAT forward by `cost` and says whether it now runs more than
/// `window` ahead of `now`.
///
/// # Safety
/// `tat` must point to an aligned `u64` in a live map value.
#[inline(always)]
unsafe fn gcra_exceeds(tat: *mut u64, now: u64, cost: u64, window: u64) -> bool {
    // SAFETY: the caller guarantees `tat`; aligned 8-byte loads and stores are atomic on BPF.
    let new = unsafe {
        if core::ptr::read_volatile(tat) < now {
            // Idle source: its bucket is full, the TAT restarts from now (see module doc).
            core::ptr::write_volatile(tat, now + cost);
            now + cost
        } else {
            atomic::add(tat, cost);
            core::ptr::read_volatile(tat)
        }
    };
    new.saturating_sub(now) > window
}

/// A GCRA step that does not charge a packet over the limit: moves the TAT forward by
/// `cost` and, if that runs more than `window` ahead of `now`, moves it back and says so.
/// For limits that drop only the excess (prefixes), where a packet that is dropped must not
/// use up the rate of the packets that are not.
///
/// # Safety
/// `tat` must point to an aligned `u64` in a live map value.
#[inline(always)]
pub unsafe fn gcra_take(tat: *mut u64, now: u64, cost: u64, window: u64) -> bool {
    // SAFETY: the caller guarantees `tat`.
    if unsafe { gcra_exceeds(tat, now, cost, window) } {
        // SAFETY: as above; adding the two's complement subtracts, atomically.
        unsafe { atomic::add(tat, cost.wrapping_neg()) };
        return true;
    }
    false
}

/// Counts the frame in the source's reporting window (what `top` shows). Plain stores, not
/// atomics: these numbers only report, and a rare lost increment under cross-CPU races is
/// cheaper than two more locked instructions per packet.
///
/// # Safety
/// `state` must point to a live map value.
#[inline(always)]
unsafe fn count_in_window(state: *mut SourceState, now: u64, len: u64) {
    // SAFETY: the caller guarantees `state`.
    let s = unsafe { &mut *state };
    let age = now.wrapping_sub(s.window_start_ns);
    if age >= RATE_WINDOW_NS {
        let adjacent = age < 2 * RATE_WINDOW_NS;
        s.prev_window_packets = if adjacent { s.window_packets } else { 0 };
        s.prev_window_bytes = if adjacent { s.window_bytes } else { 0 };
        s.window_start_ns = now;
        s.window_packets = 0;
        s.window_bytes = 0;
    }
    s.window_packets += 1;
    s.window_bytes += len;
}

/// Blocks the source until `now + block_ns` and sends the block event.
///
/// # Safety
/// `state` must point to a live map value.
#[inline(always)]
unsafe fn block(
    key: &SourceKey,
    state: *mut SourceState,
    limits: &LimitsConfig,
    class: Class,
    now: u64,
    kind: LimitKind,
) {
    let until = now + limits.block_ns;
    // SAFETY: the caller guarantees `state`; aligned 8-byte loads and stores are atomic.
    unsafe {
        if core::ptr::read_volatile(&raw const (*state).blocked_until_ns) > now {
            return; // another CPU blocked it first and sent the event
        }
        core::ptr::write_volatile(&raw mut (*state).blocked_until_ns, until);
        (*state).blocked_at_ns = now;
    }
    if let Some(slot) = maps::block_cache(key) {
        // SAFETY: a pointer from a successful array lookup. The deadline is cleared first and
        // set last, so a reader on another CPU never pairs this address with an old
        // occupant's deadline.
        unsafe {
            core::ptr::write_volatile(&raw mut (*slot).blocked_until_ns, 0);
            (*slot).addr = key.addr;
            core::ptr::write_volatile(&raw mut (*slot).blocked_until_ns, until);
        }
    }
    // SAFETY: as above.
    let s = unsafe { &*state };
    maps::send_event(&BlockEvent {
        addr: key.addr,
        limit_kind: kind as u32,
        mode: limits.mode,
        blocked_until_ns: until,
        now_ns: now,
        window_start_ns: s.window_start_ns,
        window_packets: s.window_packets,
        window_bytes: s.window_bytes,
        prev_window_packets: s.prev_window_packets,
        prev_window_bytes: s.prev_window_bytes,
        class: class as u32,
        event_type: EventType::Block as u32,
    });
}
