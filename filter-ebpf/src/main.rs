//! floodwall's XDP program.
//!
//! For every frame: parse Ethernet (up to `MAX_VLAN_TAGS` tags), IPv4 or IPv6 (with up to
//! `MAX_IPV6_EXT_HEADERS` extension headers) and the first bytes of TCP, UDP, ICMP or
//! ICMPv6; then charge the frame to its source address in the per-source table and drop it
//! if the source is blocked or goes over its packet or byte rate.
//!
//! Modules: [`maps`] (every map, with who reads and writes it), [`parse`] (bounds-checked
//! header cursor), [`limit`] (per-source rate limiting), [`lists`] (allow and deny lists),
//! [`admission`] (the defence against random-source floods), [`prefix`] (prefix limits),
//! [`atomic`] (atomic adds).
#![no_std]
#![no_main]
// For the atomic add intrinsic (see `atomic`). The eBPF build runs with RUSTC_BOOTSTRAP=1 for
// -Z build-std already (filter-user/build.rs).
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "atomic intrinsics, see above")]

mod admission;
mod atomic;
mod limit;
mod lists;
mod maps;
mod parse;
mod prefix;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    macros::xdp,
    programs::XdpContext,
};
use filter_common::{Class, Outcome};

/// The program operators attach: returns `XDP_DROP` or `XDP_PASS`, never aborts.
#[xdp]
pub fn floodwall(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    // The fail policy lives here, in one place: a frame we cannot parse far enough to know
    // its source is counted as malformed and passed (a filter must not break traffic it does
    // not understand); everything else gets the outcome the limiter chose.
    let (class, outcome) = match parse::source_of(&ctx) {
        Ok(parse::Parsed::Source {
            key,
            v4,
            class,
            l4_ok,
        }) => {
            let outcome = limit::charge(&key, v4, class, len);
            // A frame whose source is known but whose L4 header is truncated is still
            // charged to its source (otherwise truncation would be a way around the limits)
            // and, when passed, counted as malformed.
            if !l4_ok && outcome as u32 == Outcome::Passed as u32 {
                (class, Outcome::Malformed)
            } else {
                (class, outcome)
            }
        }
        Ok(parse::Parsed::NonIp) => (Class::Other, Outcome::NonIp),
        Err(parse::Malformed) => (Class::Other, Outcome::Malformed),
    };
    maps::count(class, outcome, len);
    if outcome.is_drop() {
        XDP_DROP
    } else {
        XDP_PASS
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach here; this only satisfies no_std.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
