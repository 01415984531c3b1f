//! Packet samples for the daemon (see `filter_common::PacketSample`): a per-CPU budget the
//! daemon refills, counted down here, one sample every so many packets until it is spent.

use aya_ebpf::programs::XdpContext;
use filter_common::{PacketSample, SAMPLE_CAPTURE_BYTES};

use crate::maps::{FW_SAMPLE_BUDGET, FW_SAMPLES};

/// Samples a packet that is due (`filter_common::SampleStride`) if this CPU's budget
/// allows and its turn has come (`filter_common::SampleBudget`): its class, outcome, the
/// rule slot that decided it (or `NO_RULE`) and its first bytes. While the budget lasts, a
/// due packet not sampled pays a read, two compares and a decrement; once it is spent, a
/// read and a compare.
#[inline(always)]
pub fn take(ctx: &XdpContext, class: u32, outcome: u32, rule_slot: u32) {
    let Some(budget) = FW_SAMPLE_BUDGET.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's element of a per-CPU array; XDP runs with preemption disabled. The
    // daemon's refill may race with these writes: a sample more or less in that period.
    unsafe {
        if (*budget).left == 0 {
            return;
        }
        if (*budget).countdown > 1 {
            (*budget).countdown -= 1;
            return;
        }
        (*budget).countdown = (*budget).every;
        (*budget).left -= 1;
    }
    capture(ctx, class, outcome, rule_slot);
}

/// Writes the sample into the ring buffer; nothing when it is full. A function of its own
/// (a BPF-to-BPF call): the copy is long, and the verifier walks it once, not once for
/// every path that reaches a count.
#[inline(never)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "a frame is under 64 KiB, class and outcome under 256, the capture under 64 KiB"
)]
fn capture(ctx: &XdpContext, class: u32, outcome: u32, rule_slot: u32) {
    let Some(mut entry) = FW_SAMPLES.reserve::<PacketSample>(0) else {
        return;
    };
    let sample = entry.as_mut_ptr();
    let (start, end) = (ctx.data(), ctx.data_end());
    // Read back through the stack: LLVM must not know that it is `end - start`, or it would
    // prove the tail's bounds check below always true and drop the check the verifier needs.
    // SAFETY: a plain local.
    let len = unsafe { core::ptr::read_volatile(&(end - start)) };
    // SAFETY: `sample` points to a reserved record of a `PacketSample`; every read of the
    // frame is inside the bounds checked just before it, every write inside `bytes`. The
    // bytes past `captured` are left as the ring buffer had them: the daemon reads only the
    // captured ones.
    unsafe {
        (*sample).frame_len = len as u32;
        (*sample).rule_slot = rule_slot;
        (*sample).class = class as u8;
        (*sample).outcome = outcome as u8;
        (*sample).cpu = aya_ebpf::helpers::bpf_get_smp_processor_id();
        (*sample).captured = len.min(SAMPLE_CAPTURE_BYTES) as u16;
        let bytes = (&raw mut (*sample).bytes).cast::<u8>();
        // Word by word while the frame has eight more bytes (every offset a constant once
        // the loop is unrolled)...
        for i in 0..SAMPLE_CAPTURE_BYTES / 8 {
            let at = start + 8 * i;
            if at + 8 > end {
                break;
            }
            let word = core::ptr::read_unaligned(at as *const u64);
            core::ptr::write_unaligned(bytes.add(8 * i).cast::<u64>(), word);
        }
        // ...then, for a frame shorter than the capture, its last eight bytes, which
        // overlap the last word copied: the verifier cannot follow a byte-by-byte tail.
        if (8..SAMPLE_CAPTURE_BYTES).contains(&len) {
            let off = len - 8;
            // Through the stack too: the check must be on the very pointer that is read.
            let at = core::ptr::read_volatile(&(start + off));
            if at + 8 <= end {
                let word = core::ptr::read_unaligned(at as *const u64);
                core::ptr::write_unaligned(bytes.add(off).cast::<u64>(), word);
            }
        }
    }
    entry.submit(0);
}
