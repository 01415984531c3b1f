//! GCRA, the virtual-scheduling form of a token bucket, in the three forms the program needs.
//!
//! Each limit keeps a theoretical arrival time (TAT): a packet moves it forward by its cost
//! (nanoseconds per packet, or per byte times the length), and goes over the limit when the
//! TAT then runs more than the burst window ahead of now. A TAT in the past means a full
//! bucket: it restarts from now.
//!
//! - [`charge`]: a TAT shared by every CPU (a source's, a class's), advanced with atomic adds
//!   so that the limit holds in total across CPUs. A packet over the limit is charged too:
//!   its source is blocked for it, and the block resets the TATs.
//! - [`take`]: as `charge`, but a packet over the limit gives its cost back, for limits that
//!   drop only the excess (prefixes), where a dropped packet must not use up the rate of the
//!   packets that pass.
//! - [`step_local`]: a TAT owned by one CPU (per-CPU ceilings and admission budgets): no
//!   atomics, and no charge when over.
//!
//! Cross-CPU correctness of `charge`: the only non-atomic step is the reset of an idle TAT
//! to now; racing CPUs can lose one packet's cost there, and only while the limit is idle,
//! that is well under it. The add does not return the old value (see [`crate::atomic`]), so
//! the TAT is read back after it: the value read includes other CPUs' concurrent adds, real
//! packets of the same limit, so it can only count a concurrent packet early.

use crate::atomic;

/// Charges `cost` to the shared TAT at `tat`; whether it now runs more than `window` ahead
/// of `now`.
///
/// # Safety
/// `tat` must point to an aligned `u64` in a live map value.
#[inline(always)]
pub unsafe fn charge(tat: *mut u64, now: u64, cost: u64, window: u64) -> bool {
    // SAFETY: the caller guarantees `tat`; aligned 8-byte loads and stores are atomic on BPF.
    let new = unsafe {
        if core::ptr::read_volatile(tat) < now {
            // Idle: the bucket is full, the TAT restarts from now (see the module doc).
            core::ptr::write_volatile(tat, now + cost);
            now + cost
        } else {
            atomic::add(tat, cost);
            core::ptr::read_volatile(tat)
        }
    };
    new.saturating_sub(now) > window
}

/// As [`charge`], but a packet over the limit gives its cost back and is not counted.
///
/// # Safety
/// `tat` must point to an aligned `u64` in a live map value.
#[inline(always)]
pub unsafe fn take(tat: *mut u64, now: u64, cost: u64, window: u64) -> bool {
    // SAFETY: the caller guarantees `tat`.
    if unsafe { charge(tat, now, cost, window) } {
        // SAFETY: as above; adding the two's complement subtracts, atomically.
        unsafe { atomic::add(tat, cost.wrapping_neg()) };
        return true;
    }
    false
}

/// A strict step on a TAT that only this CPU touches: true, and no charge, if `cost` would
/// take it more than `window` ahead of `now`.
///
/// # Safety
/// `tat` must point to this CPU's element of a per-CPU array (XDP runs with preemption
/// disabled, so nothing else writes it meanwhile).
#[inline(always)]
pub unsafe fn step_local(tat: *mut u64, now: u64, cost: u64, window: u64) -> bool {
    // SAFETY: the caller guarantees `tat`.
    unsafe {
        let next = start(*tat, now) + cost;
        if next - now > window {
            return true;
        }
        *tat = next;
    }
    false
}

/// Whether a TAT whose value is `tat` has room for `cost` now, without taking it.
#[inline(always)]
pub fn has_room(tat: u64, now: u64, cost: u64, window: u64) -> bool {
    start(tat, now) + cost - now <= window
}

/// Where the next packet's cost starts: the TAT, or now if the TAT is in the past.
#[inline(always)]
fn start(tat: u64, now: u64) -> u64 {
    if tat > now { tat } else { now }
}
