//! Packet samples: the program hands the daemon a bounded sample of the packets it decided,
//! for the daemon's per-service baselines and attack signatures.
//!
//! The bound is a per-CPU budget ([`SampleBudget`], in `FW_SAMPLE_BUDGET`) that the program
//! counts down, one per sample, and that the daemon refills every [`SAMPLE_REFILL_MS`]
//! milliseconds to each CPU's share of [`SAMPLES_PER_REFILL`]. Within a period the samples
//! are spread over its packets: one every [`SampleBudget::every`] packets, which the daemon
//! sets from the CPU's packet rate in the last second, from a random first one. Taking
//! the first packets of each period instead would over-sample what comes just after a
//! refill, and a sender whose timer runs in step with the refills (a client querying every
//! 10 ms) would be in every sample or in none. A packet pays one per-CPU array read, two
//! compares and a decrement of the countdown while the budget lasts (which, spread, is
//! most of the period), a read and a compare once it is spent; no clock and no helper
//! call. While no daemon refills the budget (stopped, or killed), no samples are taken.
//!
//! At high rates most packets skip even that: only a packet that its service's counter
//! makes due ([`SampleStride`]: one in `2^shift` of each service's packets on a CPU)
//! reads the budget, and the daemon spreads the budget over the due packets. The counter
//! is the one the packet adds to anyway ([`service_slot`]), so a packet that is not due
//! pays a mask and a compare on a count it already holds.

/// Bytes of the frame a sample holds, from its first byte: enough for Ethernet with two
/// VLAN tags, IPv6 with an extension header or two, and the first bytes of the L4 payload,
/// where a flood's fixed bytes show.
pub const SAMPLE_CAPTURE_BYTES: usize = 128;

/// How often the daemon refills each CPU's sample budget, in milliseconds.
pub const SAMPLE_REFILL_MS: u64 = 10;

/// The samples all CPUs together may take between two refills: at most 5,000 a second,
/// whatever the packet rate (each CPU gets its share, at least one).
pub const SAMPLES_PER_REFILL: u32 = 50;

/// Size of the sample ring buffer in bytes (a power of two and a multiple of the page
/// size): about 3,600 samples, over a second of every CPU's budget on a small host.
pub const SAMPLES_BYTES: u32 = 512 * 1024;

/// Per-service counters (`FW_SERVICE_COUNTERS`): every IP packet the program judges is
/// counted once, by its service's slot ([`service_slot`]), whatever its outcome, so that
/// the daemon reads each service's rate exactly rather than estimating it from samples.
///
/// Slots a transport protocol with ports (TCP, UDP) has: the well-known ports (under
/// [`WELL_KNOWN_PORTS`]) one each, then the other ports by their low 12 bits, so that a
/// flood spread over the high ports never adds to a well-known service's count. A high port
/// shares its slot with the high ports a multiple of 4,096 away; the daemon splits a shared
/// slot by the samples. (A mask, not a modulo: the program would pay a division.)
pub const SERVICE_PORT_SLOTS: u32 = WELL_KNOWN_PORTS + HIGH_PORT_SLOTS;

/// Ports with a slot of their own in [`service_slot`].
pub const WELL_KNOWN_PORTS: u32 = 1_024;

/// Slots the other ports share, by their low bits (a power of two).
pub const HIGH_PORT_SLOTS: u32 = 4_096;

/// Slots of the per-service counters: TCP's ports, UDP's ports, then one a protocol number
/// (the protocols without ports, ICMP and `ICMPv6` among them).
pub const SERVICE_SLOTS: u32 = 2 * SERVICE_PORT_SLOTS + 256;

/// The per-service counters' slot of a packet of IP protocol `proto` to destination port
/// `dport` (zero for a packet without ports: a protocol without them, a later fragment).
#[must_use]
pub const fn service_slot(proto: u8, dport: u16) -> u32 {
    let port = dport as u32;
    let port_slot = if port < WELL_KNOWN_PORTS {
        port
    } else {
        WELL_KNOWN_PORTS + (port & (HIGH_PORT_SLOTS - 1))
    };
    match proto {
        6 => port_slot,
        17 => SERVICE_PORT_SLOTS + port_slot,
        other => 2 * SERVICE_PORT_SLOTS + other as u32,
    }
}
const _: () = assert!(HIGH_PORT_SLOTS.is_power_of_two());

/// This CPU's sampling state (`FW_SAMPLE_BUDGET`, element 0). The daemon writes it whole
/// at each refill; the program counts it down.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleBudget {
    /// Samples this CPU may still take before the next refill.
    pub left: u32,
    /// Packets to the next sample: the packet that finds it at one (or zero) is taken.
    pub countdown: u32,
    /// Packets from one sample to the next (one: every packet while the budget lasts).
    pub every: u32,
}
const _: () = assert!(core::mem::size_of::<SampleBudget>() == 12);

/// Which packets may be sampled: those whose count in their service's per-CPU counter
/// ([`service_slot`]), plus `phase`, is a multiple of `2^shift` (a packet that is not IP,
/// or whose headers the program could not read, has no service and is always due). The
/// daemon sets `shift` from the packet rate so that a CPU sees a few due packets for each
/// sample its budget holds, and a new `phase` at each refill, so that senders who
/// alternate in step with the stride are not always the ones sampled, or never.
///
/// A global of the program in a data section of its own ([`SAMPLE_STRIDE_MAP`]), so that
/// the program reads it with one load and no lookup; the daemon writes it through the
/// section's one-element array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleStride {
    /// Log2 of the stride, at most [`MAX_SAMPLE_SHIFT`].
    pub shift: u32,
    /// Added to the count before the mask.
    pub phase: u32,
}
const _: () = assert!(core::mem::size_of::<SampleStride>() == 8);

/// The largest [`SampleStride::shift`]: one in 2^20 packets, which a CPU reaches at some
/// 400 million packets a second.
pub const MAX_SAMPLE_SHIFT: u32 = 20;

/// The data section, and so the map, that holds the program's [`SampleStride`].
pub const SAMPLE_STRIDE_MAP: &str = ".data.sample";

/// Name of the load-time global that keeps the sampling code in the program: one in the
/// object, which is what the daemon loads. Zero leaves it out (the verifier removes it as
/// dead code): what `cargo xtask bench` measures sampling's cost against.
pub const SAMPLING_GLOBAL: &str = "FW_SAMPLING";

impl SampleStride {
    /// Whether the packet that brought its service's per-CPU count to `count` is due.
    #[must_use]
    #[inline(always)]
    pub const fn due(self, count: u64) -> bool {
        let mask = (1u64 << (self.shift & 31)) - 1;
        count.wrapping_add(self.phase as u64) & mask == 0
    }
}

/// No rule decided the packet ([`PacketSample::rule_slot`]).
pub const NO_RULE: u32 = u32::MAX;

/// One sampled packet, as the program saw and decided it. Sent through the sample ring
/// buffer (`FW_SAMPLES`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketSample {
    /// The frame's length in bytes.
    pub frame_len: u32,
    /// The rule slot (`FW_RULE_STATS` index) whose action decided the packet, or
    /// [`NO_RULE`].
    pub rule_slot: u32,
    /// How many bytes of [`PacketSample::bytes`] are the frame's (the rest are zero).
    pub captured: u16,
    /// The packet's [`Class`](crate::Class), as a number.
    pub class: u8,
    /// The packet's [`Outcome`](crate::Outcome), as a number.
    pub outcome: u8,
    /// The CPU that took the sample: the budget is per CPU, so each CPU's samples stand
    /// for that CPU's packets.
    pub cpu: u32,
    /// The frame's first [`PacketSample::captured`] bytes.
    pub bytes: [u8; SAMPLE_CAPTURE_BYTES],
}
const _: () = assert!(core::mem::size_of::<PacketSample>() == 16 + SAMPLE_CAPTURE_BYTES);
const _: () =
    assert!(SAMPLE_CAPTURE_BYTES.is_multiple_of(8) && SAMPLE_CAPTURE_BYTES <= u16::MAX as usize);

impl PacketSample {
    /// The captured bytes of the frame.
    #[must_use]
    pub fn frame(&self) -> &[u8] {
        let n = usize::from(self.captured).min(SAMPLE_CAPTURE_BYTES);
        &self.bytes[..n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn the_sample_header_is_where_both_sides_read_it() {
        assert_eq!(offset_of!(PacketSample, frame_len), 0);
        assert_eq!(offset_of!(PacketSample, rule_slot), 4);
        assert_eq!(offset_of!(PacketSample, captured), 8);
        assert_eq!(offset_of!(PacketSample, class), 10);
        assert_eq!(offset_of!(PacketSample, outcome), 11);
        assert_eq!(offset_of!(PacketSample, cpu), 12);
        assert_eq!(offset_of!(PacketSample, bytes), 16);
    }

    #[test]
    fn the_sample_budget_is_where_both_sides_read_it() {
        assert_eq!(offset_of!(SampleBudget, left), 0);
        assert_eq!(offset_of!(SampleBudget, countdown), 4);
        assert_eq!(offset_of!(SampleBudget, every), 8);
    }

    #[test]
    fn the_sample_stride_is_where_both_sides_read_it() {
        assert_eq!(offset_of!(SampleStride, shift), 0);
        assert_eq!(offset_of!(SampleStride, phase), 4);
    }

    #[test]
    fn one_packet_in_two_to_the_shift_of_a_service_is_due() {
        let every = |stride: SampleStride| (1..=64u64).filter(|&n| stride.due(n)).count();
        assert_eq!(every(SampleStride::default()), 64);
        assert_eq!(every(SampleStride { shift: 2, phase: 0 }), 16);
        assert_eq!(every(SampleStride { shift: 6, phase: 0 }), 1);
        // The phase moves which ones, not how many.
        let stride = SampleStride { shift: 2, phase: 1 };
        assert_eq!(every(stride), 16);
        assert!(stride.due(3) && !stride.due(4));
        assert!(SampleStride { shift: 2, phase: 0 }.due(4));
        // A shift beyond the mask's width wraps rather than overflowing.
        assert_eq!(
            every(SampleStride {
                shift: 32,
                phase: 0
            }),
            64
        );
    }

    #[test]
    fn each_service_has_the_slot_both_sides_compute() {
        // Golden values: the program and the daemon both compute these.
        assert_eq!(service_slot(6, 80), 80);
        assert_eq!(service_slot(6, 443), 443);
        assert_eq!(service_slot(6, 1_023), 1_023);
        assert_eq!(service_slot(6, 1_024), 2_048);
        assert_eq!(service_slot(6, 4_096 + 443), 1_024 + 443);
        assert_eq!(service_slot(6, 5_000), service_slot(6, 5_000 + 4_096));
        assert_eq!(service_slot(17, 53), 5_120 + 53);
        assert_eq!(service_slot(17, 65_535), 5_120 + 1_024 + 4_095);
        assert_eq!(service_slot(1, 0), 10_240 + 1);
        assert_eq!(service_slot(58, 0), 10_240 + 58);
        assert_eq!(service_slot(255, 0), SERVICE_SLOTS - 1);
        // The well-known ports have a slot each, which no other port shares.
        let mut taken = [0u8; SERVICE_SLOTS as usize];
        for port in 0..=u16::MAX {
            for proto in [6, 17] {
                let slot = service_slot(proto, port);
                assert!(slot < SERVICE_SLOTS);
                taken[slot as usize] += 1;
                if u32::from(port) < WELL_KNOWN_PORTS {
                    assert_eq!(slot % SERVICE_PORT_SLOTS, u32::from(port));
                }
            }
        }
        for port in 0..WELL_KNOWN_PORTS {
            assert_eq!(taken[port as usize], 1, "tcp/{port}");
            assert_eq!(taken[(SERVICE_PORT_SLOTS + port) as usize], 1, "udp/{port}");
        }
    }

    #[test]
    fn a_sample_shows_only_its_captured_bytes() {
        let mut sample = PacketSample {
            frame_len: 60,
            rule_slot: NO_RULE,
            captured: 3,
            class: 0,
            outcome: 0,
            cpu: 0,
            bytes: [0; SAMPLE_CAPTURE_BYTES],
        };
        sample.bytes[..4].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(sample.frame(), &[1, 2, 3]);
        sample.captured = u16::MAX;
        assert_eq!(sample.frame().len(), SAMPLE_CAPTURE_BYTES);
    }
}
