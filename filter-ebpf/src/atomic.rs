//! Atomic adds on map values.
//!
//! The BPF target has no compare-and-swap, so `core::sync::atomic` offers no read-modify-write
//! methods on it, and rustc links for the `generic` BPF CPU, where LLVM can emit an atomic add
//! (`BPF_XADD`, `lock add` on x86) but not one that returns the old value (that needs ISA v3
//! and `BPF_FETCH`). So we add without fetching and read the result back separately: the value
//! read is at least our own result, plus whatever other CPUs added meanwhile, which are real
//! packets of the same source too. A limiter built on it can only err towards counting a
//! concurrent packet early, never towards letting a source past its limit.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

/// Adds `value` to `*dst` atomically.
///
/// # Safety
/// `dst` must be valid for reads and writes and aligned to 8 bytes.
#[inline(always)]
pub unsafe fn add(dst: *mut u64, value: u64) {
    // The result must stay unused: LLVM lowers an unused atomicrmw add to BPF_XADD.
    // SAFETY: the caller guarantees `dst`.
    let _ = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(dst, value) };
}
