//! Stage: the blocked-source cache, an array checked before the source table. An array
//! lookup is inlined by the verifier where a hash lookup is a helper call, so a blocked
//! source's packet is dropped after two reads and no write.

use filter_common::{BlockCacheSlot, Outcome, SourceKey, block_cache_slot};

use crate::{maps::FW_BLOCK_CACHE, packet::Packet};

/// `DroppedBlocked` (or `MonitorBlocked`) if the packet's source is cached as blocked.
#[inline(always)]
pub fn check(pkt: &Packet) -> Option<Outcome> {
    let slot = slot(&pkt.key)?;
    // SAFETY: a pointer from a successful array lookup is valid and aligned. A slot being
    // rewritten by another CPU can be read half-old: then we drop one packet of a source
    // that is being blocked at that very moment, or fall through to the table.
    let (addr, until) = unsafe { (words(slot), (*slot).blocked_until_ns) };
    (pkt.now < until && addr == pkt.key.words())
        .then(|| pkt.drop_as(Outcome::DroppedBlocked, Outcome::MonitorBlocked))
}

/// Records `key` as blocked until `until`.
#[inline(always)]
pub fn record(key: &SourceKey, until: u64) {
    if let Some(slot) = slot(key) {
        // SAFETY: a pointer from a successful array lookup. The deadline is cleared first and
        // set last, so a reader on another CPU never pairs this address with an old
        // occupant's deadline.
        unsafe {
            core::ptr::write_volatile(&raw mut (*slot).blocked_until_ns, 0);
            (*slot).addr = key.addr;
            core::ptr::write_volatile(&raw mut (*slot).blocked_until_ns, until);
        }
    }
}

#[inline(always)]
fn slot(key: &SourceKey) -> Option<*mut BlockCacheSlot> {
    FW_BLOCK_CACHE.get_ptr_mut(block_cache_slot(key))
}

/// The slot's address as the words `SourceKey::words` gives.
///
/// # Safety
/// `slot` must point to a live slot.
#[inline(always)]
unsafe fn words(slot: *const BlockCacheSlot) -> [u64; 2] {
    // SAFETY: the caller guarantees `slot`; a slot is aligned to 8 and its address is its
    // first 16 bytes, so they can be read as two u64.
    unsafe { *slot.cast::<[u64; 2]>() }
}
