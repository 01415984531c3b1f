//! Stages: the allowlist and the denylist, LPM tries of prefixes with hit counters per
//! entry. The program searches a trie only while it holds entries (a presence bit in
//! `list_flags`), since an LPM lookup is a helper call.

use core::ffi::c_void;

use aya_ebpf::{helpers::bpf_map_lookup_elem, maps::lpm_trie::Key};
use filter_common::{BlockEvent, EventType, ListEntry, Outcome, SourceKey, list_flags};

use crate::{
    atomic,
    maps::{self, FW_ALLOW_V4, FW_ALLOW_V6, FW_DENY_V4, FW_DENY_V6},
    packet::Packet,
};

/// Which list.
#[derive(Clone, Copy)]
enum List {
    Allow,
    Deny,
}

/// `Allowed` if the packet's source is on the allowlist, which wins over everything.
#[inline(always)]
pub fn allowlist(pkt: &Packet) -> Option<Outcome> {
    let present = if pkt.v4 {
        list_flags::ALLOW_V4
    } else {
        list_flags::ALLOW_V6
    };
    (pkt.flag(present) && matches(List::Allow, &pkt.key, pkt.v4, pkt.now, pkt.len))
        .then_some(Outcome::Allowed)
}

/// `DroppedDenied` (or `MonitorDenied`, in monitor mode or with the denylist monitoring) if
/// the packet's source is on the denylist.
#[inline(always)]
pub fn denylist(pkt: &Packet) -> Option<Outcome> {
    let present = if pkt.v4 {
        list_flags::DENY_V4
    } else {
        list_flags::DENY_V6
    };
    if !(pkt.flag(present) && matches(List::Deny, &pkt.key, pkt.v4, pkt.now, pkt.len)) {
        return None;
    }
    Some(if pkt.flag(list_flags::DENY_MONITOR) {
        Outcome::MonitorDenied
    } else {
        pkt.drop_as(Outcome::DroppedDenied, Outcome::MonitorDenied)
    })
}

/// Whether the source is on `list` (an entry that has not expired); counts the hit.
#[inline(always)]
fn matches(list: List, key: &SourceKey, v4: bool, now: u64, len: u64) -> bool {
    let entry = if v4 {
        let addr = [key.addr[12], key.addr[13], key.addr[14], key.addr[15]];
        let lpm_key = Key::new(32, addr);
        match list {
            // SAFETY: the map statics are map definitions; the key matches the map's key type.
            List::Allow => unsafe { lookup(&raw const FW_ALLOW_V4, &lpm_key) },
            List::Deny => unsafe { lookup(&raw const FW_DENY_V4, &lpm_key) },
        }
    } else {
        let lpm_key = Key::new(128, key.addr);
        match list {
            // SAFETY: as above.
            List::Allow => unsafe { lookup(&raw const FW_ALLOW_V6, &lpm_key) },
            List::Deny => unsafe { lookup(&raw const FW_DENY_V6, &lpm_key) },
        }
    };
    let Some(entry) = entry else {
        return false;
    };
    // SAFETY: a pointer from a successful lookup points to a live, aligned ListEntry.
    unsafe {
        let expires = (*entry).expires_ns;
        if expires != 0 && now >= expires {
            return false; // expired; the daemon deletes it
        }
        // Shared counters, so atomic: every CPU that sees this entry's traffic adds here.
        atomic::add(&raw mut (*entry).hit_packets, 1);
        atomic::add(&raw mut (*entry).hit_bytes, len);
        // A summary event at the 1st, 2nd, 4th, 8th... hit: a log of the list's activity
        // that cannot become a flood itself. (Read back after the add: another CPU's hit
        // in between can skip or repeat one summary, which is harmless.)
        let hits = core::ptr::read_volatile(&raw const (*entry).hit_packets);
        #[expect(
            clippy::manual_is_power_of_two,
            reason = "is_power_of_two counts bits, and BPF has no population count instruction"
        )]
        if hits & (hits - 1) == 0 {
            maps::send_event(&BlockEvent {
                addr: key.addr,
                event_type: match list {
                    List::Allow => EventType::AllowHit,
                    List::Deny => EventType::DenyHit,
                } as u32,
                now_ns: now,
                window_packets: hits,
                ..BlockEvent::default()
            });
        }
    }
    true
}

/// `bpf_map_lookup_elem` returning a mutable pointer: aya-ebpf's `LpmTrie::get` gives a
/// shared reference, and the hit counters are written through it.
///
/// # Safety
/// `map` must be a map definition whose key type is `K` and value type is [`ListEntry`].
#[inline(always)]
unsafe fn lookup<M, K>(map: *const M, key: &Key<K>) -> Option<*mut ListEntry> {
    // SAFETY: the caller guarantees the map and key types; the helper only reads the key.
    let value = unsafe {
        bpf_map_lookup_elem(
            map.cast_mut().cast::<c_void>(),
            (&raw const *key).cast::<c_void>(),
        )
    };
    (!value.is_null()).then_some(value.cast::<ListEntry>())
}
