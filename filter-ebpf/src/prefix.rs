//! Prefix limits: a source's packets also count against its prefix (its IPv4 /24, its
//! IPv6 /64 and /48 by default), so a source that rotates addresses inside a prefix is
//! limited as one. A prefix over its limit loses its excess packets; its sources are not
//! blocked for it (most of them may be innocent neighbours).

use aya_ebpf::bindings::BPF_NOEXIST;
use filter_common::{CLASSES, COST_SHIFT, PREFIX_SCOPES, PrefixKey, PrefixState, prefix_scopes};

use crate::{gcra, maps::FW_PREFIXES, packet::Packet};

/// Bits of the IPv4-mapped prefix (`::ffff:0:0/96`) before an IPv4 address.
const V4_MAPPED_BITS: u32 = 96;

/// Charges the packet to its source's prefixes; whether one of them is over its limit.
#[inline(always)]
pub fn over_limit(pkt: &Packet) -> bool {
    let (limits, now, len) = (pkt.limits, pkt.now, pkt.len);
    for scope in 0..PREFIX_SCOPES {
        if (scope == prefix_scopes::V4) != pkt.v4 {
            continue;
        }
        let Some(params) = limits.prefixes.get(scope) else {
            continue;
        };
        if params.active == 0 {
            continue;
        }
        let bits = if pkt.v4 {
            V4_MAPPED_BITS + params.len
        } else {
            params.len
        };
        #[expect(clippy::cast_possible_truncation, reason = "scope < 3")]
        let prefix = PrefixKey {
            scope: scope as u32,
            len: params.len,
            addr: pkt.key.masked(bits).addr,
        };
        let state = match FW_PREFIXES.get_ptr_mut(&prefix) {
            Some(state) => state,
            None => {
                let fresh = PrefixState {
                    packet_tat_ns: now,
                    byte_tat_ns: now,
                    class_tat_ns: [now; CLASSES],
                };
                // A prefix the table cannot hold is not limited: fail open, as for sources.
                let _ = FW_PREFIXES.insert(&prefix, &fresh, u64::from(BPF_NOEXIST));
                match FW_PREFIXES.get_ptr_mut(&prefix) {
                    Some(state) => state,
                    None => continue,
                }
            }
        };
        // SAFETY: `state` comes from a successful lookup; its fields are aligned u64s.
        let over = unsafe {
            (params.packets.cost_fp != 0
                && gcra::take(
                    &raw mut (*state).packet_tat_ns,
                    now,
                    params.packets.cost_fp >> COST_SHIFT,
                    params.packets.window_ns,
                ))
                || (params.bytes.cost_fp != 0
                    && gcra::take(
                        &raw mut (*state).byte_tat_ns,
                        now,
                        (len * params.bytes.cost_fp) >> COST_SHIFT,
                        params.bytes.window_ns,
                    ))
                || match (
                    params.class_packets.get(pkt.class_index()),
                    (*state).class_tat_ns.get_mut(pkt.class_index()),
                ) {
                    (Some(class_params), Some(tat)) if class_params.cost_fp != 0 => gcra::take(
                        tat,
                        now,
                        class_params.cost_fp >> COST_SHIFT,
                        class_params.window_ns,
                    ),
                    _ => false,
                }
        };
        if over {
            return true;
        }
    }
    false
}
