//! The packet being decided: what the parser found, with the limits and the time it is
//! judged by. Every stage takes one.

use aya_ebpf::programs::XdpContext;
use filter_common::{Class, LimitsConfig, Mode, Outcome, SourceKey};

use crate::parse::Offsets;

/// A parsed packet with a known source, and what it is judged by.
pub struct Packet<'a> {
    /// The frame, for the stage that answers it in place (SYN cookies).
    pub ctx: &'a XdpContext,
    /// Where its headers start.
    pub at: Offsets,
    /// Its source address.
    pub key: SourceKey,
    /// Whether the source is IPv4.
    pub v4: bool,
    /// Its protocol class.
    pub class: Class,
    /// Which of its rule buckets hold entries (`rules::keep_shape`); zero without rules.
    pub rule_buckets: u32,
    /// Frame length in bytes.
    pub len: u64,
    /// The limits in force.
    pub limits: &'a LimitsConfig,
    /// Now on the program clock.
    pub now: u64,
}

impl Packet<'_> {
    /// The frame length as a `u32`, for the reporting windows.
    #[inline(always)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "an XDP frame is at most a few pages"
    )]
    pub fn len_u32(&self) -> u32 {
        self.len as u32
    }

    /// Whether a `filter_common::list_flags` bit is set.
    #[inline(always)]
    pub fn flag(&self, bit: u32) -> bool {
        self.limits.list_flags & bit != 0
    }

    /// The class as an index, for the arrays kept by class. Read as a plain number, with a
    /// volatile load: LLVM takes a `Class` for one of its six values and drops the bounds
    /// checks of the arrays it indexes, and the verifier, which may know the class only as
    /// a number read back from the stack, then refuses the access.
    #[inline(always)]
    pub fn class_index(&self) -> usize {
        // SAFETY: `Class` is `repr(u32)`: its four bytes are a valid `u32`.
        let index = unsafe { core::ptr::read_volatile((&raw const self.class).cast::<u32>()) };
        index as usize
    }

    /// Whether this packet's class only monitors (globally or for its class).
    #[inline(always)]
    pub fn monitor(&self) -> bool {
        self.limits.mode == Mode::Monitor as u32
            || self.limits.monitor_classes & (1 << (self.class_index() & 31)) != 0
    }

    /// `dropped`, or `monitored` when this packet's class only monitors.
    #[inline(always)]
    pub fn drop_as(&self, dropped: Outcome, monitored: Outcome) -> Outcome {
        if self.monitor() { monitored } else { dropped }
    }
}
