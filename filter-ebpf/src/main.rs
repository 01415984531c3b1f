//! floodwall's XDP program.
//!
//! For every frame: parse Ethernet (up to `MAX_VLAN_TAGS` tags), IPv4 or IPv6 (with up to
//! `MAX_IPV6_EXT_HEADERS` extension headers) and the first bytes of TCP, UDP, ICMP or
//! `ICMPv6`; then run the policy's stages ([`decide`]) on its source address, count the
//! outcome, and drop or pass.
//!
//! Modules: [`parse`] (bounds-checked header cursor), [`packet`] (what a stage is given),
//! the stages in policy order: [`lists`] (allowlist, denylist), [`block_cache`],
//! [`untracked`] (admission and ceilings for sources not in the table), [`tracked`]
//! (per-source limits and blocks), [`prefix`] (prefix limits), [`syncookie`] (SYN cookies
//! for untracked sources on protected ports, a program of its own that [`decide`] reaches
//! by tail call); and below them [`table`]
//! (the source table and its filter, the one insert), [`gcra`] (rate limiting), [`maps`]
//! (every map, with who reads and writes it), [`atomic`] (atomic adds).
#![no_std]
#![no_main]
// For the atomic add intrinsic (see `atomic`). The eBPF build runs with RUSTC_BOOTSTRAP=1 for
// -Z build-std already (filter-user/build.rs).
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "atomic intrinsics, see above")]
#![expect(
    clippy::needless_borrows_for_generic_args,
    reason = "map keys and values go by reference, the form that compiles on every aya version \
              (STYLE.md)"
)]
#![expect(
    clippy::single_match_else,
    reason = "a lookup that falls back to an insert reads best with both arms side by side"
)]

mod atomic;
mod block_cache;
mod gcra;
mod lists;
mod maps;
mod packet;
mod parse;
mod prefix;
mod rules;
mod sample;
mod syncookie;
mod table;
mod tracked;
mod untracked;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    macros::xdp,
    programs::XdpContext,
};
use filter_common::{Class, Outcome, list_flags};

use crate::packet::Packet;

// The verdicts the daemon and the tests know by `filter_common::xdp_action` are the kernel's.
const _: () = assert!(
    XDP_DROP == filter_common::xdp_action::DROP
        && XDP_PASS == filter_common::xdp_action::PASS
        && XDP_TX == filter_common::xdp_action::TX
);

/// The program operators attach: returns `XDP_DROP`, `XDP_PASS` or (a cookie SYN-ACK)
/// `XDP_TX`, never aborts.
#[xdp]
// The macro wraps this body in the exported function; it must be inlined there, or the
// whole program becomes one BPF-to-BPF call.
#[inline(always)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's #[xdp] macro hands the context over by value"
)]
pub fn floodwall(ctx: XdpContext) -> u32 {
    // Two copies of the whole path, chosen once a run by the rules flag: the one with rules
    // keeps the packet's shape for their stage, the one without never computes it (the
    // parser is inlined into each, and computes what its copy uses). One flag read decides
    // both, so the stage never reads a shape this run did not keep.
    if maps::limits().is_some_and(|limits| limits.list_flags & list_flags::RULES != 0) {
        judge(&ctx, rules::keep_shape, decide::<true>)
    } else {
        judge(&ctx, |_, _| 0, decide::<false>)
    }
}

/// The SYN-cookie stage's program (`filter_common::SYN_COOKIE_PROGRAM_NAME`), which
/// `floodwall` tail-calls for a SYN or ACK to a protected port from a source it did not
/// admit (see `syncookie`).
#[xdp]
#[inline(always)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's #[xdp] macro hands the context over by value"
)]
pub fn floodwall_syncookie(ctx: XdpContext) -> u32 {
    judge_again(&ctx, untracked::cookie_or_ceiling)
}

/// The rules stage's program (`filter_common::RULES_PROGRAM_NAME`), which `floodwall`
/// tail-calls for a packet that may match a rule (see `rules`).
#[xdp]
#[inline(always)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's #[xdp] macro hands the context over by value"
)]
pub fn floodwall_rules(ctx: XdpContext) -> u32 {
    rules::stage(&ctx)
}

/// The policy after the rules (`filter_common::AFTER_RULES_PROGRAM_NAME`), which
/// `floodwall_rules` tail-calls for a packet the rules leave undecided.
#[xdp]
#[inline(always)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's #[xdp] macro hands the context over by value"
)]
pub fn floodwall_after_rules(ctx: XdpContext) -> u32 {
    judge_again(&ctx, after_rules)
}

/// Parses the frame, hands its shape to `keep_shape` (which says which of its rule buckets
/// hold entries), has `policy` decide its outcome, counts it, and returns the action.
#[inline(always)]
fn judge(
    ctx: &XdpContext,
    keep_shape: impl Fn(&XdpContext, &parse::Source) -> u32,
    policy: impl Fn(&Packet) -> Outcome,
) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    // The fail policy lives here, in one place: a frame we cannot parse far enough to know
    // its source is counted as malformed and passed (a filter must not break traffic it does
    // not understand); everything else gets the outcome the policy chose.
    let (class, outcome, sample_due) = match (parse::source_of(ctx), maps::parsed()) {
        (Ok(parse::Parsed::Source(parsed)), Some(copy)) => {
            let rule_buckets = keep_shape(ctx, &parsed);
            // From here on the policy reads the parser's results back from this CPU's copy
            // (see `maps::parsed`): one state for the verifier for each class, whatever the
            // headers were.
            // SAFETY: this CPU's element of a per-CPU array; XDP runs with preemption
            // disabled, so nothing else writes it meanwhile.
            unsafe {
                *copy = maps::Parsed {
                    key: parsed.key,
                    at: parsed.at,
                    v4: parsed.v4,
                    l4_ok: parsed.l4_ok,
                    // Set below, from the service's count. Not computed here: counting
                    // before the copy is written, or carrying the flag in a register, has the
                    // verifier walk the policy once for each of the parser's exits (the
                    // README's Performance section has the counts); the price is this one
                    // byte stored twice.
                    sample_due: false,
                    rule_buckets,
                    class: parsed.class as u32,
                };
            }
            // Counted here, where every IP packet passes once, before the stages that
            // decide it (some of them programs of their own); the count says whether it is
            // due for a sample.
            let count = maps::count_service(parsed.shape.proto, parsed.shape.dport, len);
            // SAFETY: as above.
            unsafe { (*copy).sample_due = maps::sample_due(count) };
            // SAFETY: as above.
            let (class, outcome) = decide_parsed(ctx, unsafe { &*copy }, len, &policy);
            // Read back from the copy too, not carried in a register across the policy:
            // that would split the verifier's one state in two.
            // SAFETY: as above.
            (class, outcome, unsafe {
                core::ptr::read_volatile(&raw const (*copy).sample_due)
            })
        }
        // No copy: not reached (a one-element array). Pass, as with no policy.
        (Ok(parse::Parsed::Source(parsed)), None) => (parsed.class, Outcome::Passed, false),
        // A packet without a service (not IP, or unreadable) is always due for a sample.
        (Ok(parse::Parsed::NonIp), _) => (Class::Other, Outcome::NonIp, maps::sampling()),
        (Err(parse::Malformed), _) => (Class::Other, Outcome::Malformed, maps::sampling()),
    };
    act(ctx, class, outcome, len, sample_due)
}

/// As [`judge`], in a program that the main program reached by tail call, with a source:
/// the parser's results are this CPU's copy, which the main program wrote before it (a tail
/// call stays on its CPU, and XDP runs with preemption disabled), so the frame is not
/// parsed again.
#[inline(always)]
fn judge_again(ctx: &XdpContext, policy: impl Fn(&Packet) -> Outcome) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let (class, outcome, sample_due) = match maps::parsed() {
        Some(copy) => {
            // SAFETY: this CPU's element of a per-CPU array; nothing else writes it meanwhile.
            let copy = unsafe { &*copy };
            let (class, outcome) = decide_parsed(ctx, copy, len, &policy);
            (class, outcome, copy.sample_due)
        }
        // Not reached (a one-element array). Pass, as with no policy.
        None => (Class::Other, Outcome::Passed, false),
    };
    act(ctx, class, outcome, len, sample_due)
}

/// The class and outcome of a packet whose parser's results are `source` (this CPU's
/// copy).
#[inline(always)]
fn decide_parsed(
    ctx: &XdpContext,
    source: &maps::Parsed,
    len: u64,
    policy: &impl Fn(&Packet) -> Outcome,
) -> (Class, Outcome) {
    // Read back as a number and matched into a `Class`: read back as a `Class`, LLVM would
    // take it for a valid one and drop the bounds checks of the arrays it indexes, which
    // the verifier then refuses.
    let class = Class::from_index(source.class);
    // The limits are element 0 of a one-element array: the lookup cannot fail. A match, not
    // `map_or` with a closure: LLVM keeps a closure this large out of line, and the verifier
    // loses the bounds of what it reads back from the stack.
    let outcome = match maps::limits() {
        Some(limits) => policy(&Packet {
            ctx,
            at: source.at,
            key: source.key,
            v4: source.v4,
            class,
            rule_buckets: source.rule_buckets,
            len,
            limits,
            now: maps::now_ns(limits),
        }),
        None => Outcome::Passed,
    };
    // A frame whose source is known but whose L4 header is truncated is still charged to
    // its source (otherwise truncation would be a way around the limits) and, when passed,
    // counted as malformed.
    if !source.l4_ok && outcome as u32 == Outcome::Passed as u32 {
        (class, Outcome::Malformed)
    } else {
        (class, outcome)
    }
}

/// Counts the packet, samples it if it is due and the budget allows, and returns the
/// action its outcome takes.
#[inline(always)]
fn act(ctx: &XdpContext, class: Class, outcome: Outcome, len: u64, sample_due: bool) -> u32 {
    maps::count(class, outcome, len);
    if sample_due {
        sample::take(ctx, class as u32, outcome as u32, filter_common::NO_RULE);
    }
    if outcome.is_drop() {
        XDP_DROP
    } else if outcome.is_sent_back() {
        XDP_TX
    } else {
        XDP_PASS
    }
}

/// The policy: one stage a line, in order; the first stage with an answer decides. `RULES`:
/// whether there are rules (and the packet's shape was kept for them).
#[inline(always)]
fn decide<const RULES: bool>(pkt: &Packet) -> Outcome {
    if let Some(allowed) = lists::allowlist(pkt) {
        return allowed;
    }
    // Rules come next (the stage's program then decides the rest too); a packet none of
    // whose index buckets holds entries (`rules::keep_shape` looked) skips them.
    if RULES && pkt.rule_buckets != 0 {
        rules::enter(pkt);
    }
    after_rules(pkt)
}

/// The policy after the allowlist and the rules.
#[inline(always)]
fn after_rules(pkt: &Packet) -> Outcome {
    // A source whose filter bit is clear is neither in the table nor blocked: it skips the
    // block cache and the table, the two lookups that miss the CPU cache at flood rates.
    let maybe_tracked = table::maybe_tracked(&pkt.key);
    if maybe_tracked && let Some(blocked) = block_cache::check(pkt) {
        return blocked;
    }
    if let Some(denied) = lists::denylist(pkt) {
        return denied;
    }
    // Prefix limits need every packet charged through the table path.
    let charged = if !maybe_tracked && !pkt.flag(list_flags::PREFIX_LIMITS) {
        untracked::new_source(pkt)
    } else {
        tracked::charge(pkt)
    };
    match charged {
        Some(outcome) => outcome,
        None => untracked::not_admitted(pkt),
    }
}

/// Samples the program clock beside `CLOCK_MONOTONIC`; never attached, run by the daemon
/// through `BPF_PROG_TEST_RUN` to calibrate the clock.
#[xdp]
pub fn floodwall_clock(_ctx: XdpContext) -> u32 {
    maps::sample_clock();
    XDP_PASS
}

/// The cheapest possible XDP program, loaded only by benchmarks as the yardstick.
#[xdp]
pub fn floodwall_drop(_ctx: XdpContext) -> u32 {
    XDP_DROP
}

/// `XDP_DROP` after `filter_common::YARDSTICK_CALLS` helper calls that the kernel does not
/// inline. Loaded only by benchmarks, as the yardstick of what a call costs.
#[xdp]
pub fn floodwall_calls(_ctx: XdpContext) -> u32 {
    let mut sum = 0u32;
    for _ in 0..filter_common::YARDSTICK_CALLS {
        // SAFETY: the helper takes no arguments and has no preconditions.
        sum = sum.wrapping_add(unsafe { aya_ebpf::helpers::bpf_get_prandom_u32() });
    }
    // A use of the results, so that the calls stay.
    if sum == 1 { XDP_PASS } else { XDP_DROP }
}

/// The cheapest possible answer in place: swap the MAC addresses and send the frame back.
/// Loaded only by benchmarks, as the yardstick of the SYN-cookie path.
#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's #[xdp] macro hands the context over by value"
)]
pub fn floodwall_reflect(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + 12 > end {
        return XDP_PASS;
    }
    let macs = start as *mut [u8; 6];
    // SAFETY: the check above keeps both addresses inside the frame.
    unsafe {
        let (dst, src) = (
            core::ptr::read_unaligned(macs),
            core::ptr::read_unaligned(macs.add(1)),
        );
        core::ptr::write_unaligned(macs, src);
        core::ptr::write_unaligned(macs.add(1), dst);
    }
    XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach here; this only satisfies no_std.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
