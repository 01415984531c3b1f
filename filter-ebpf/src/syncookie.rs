//! Stage, for untracked sources on protected ports: SYN cookies.
//!
//! A random-source SYN flood is all new sources, so the SYN ceiling is what stops it; but a
//! new user's SYN then competes with the flood for the ceiling and may wait a second for its
//! retransmit. Here instead a SYN of an untracked source to a protected port is answered in
//! place with a SYN-ACK (`XDP_TX`) whose sequence number is a SYN cookie, issued through the
//! listening socket (`bpf_tcp_gen_syncookie`, which also keeps the listener's "recent
//! overflow" stamp fresh, without which the kernel refuses cookie ACKs). Spoofed sources
//! never answer and leave nothing behind. A real client answers with an ACK that returns the
//! cookie: that proves its address, so its source is admitted to the table and the ACK
//! passed to the kernel, whose own cookie code (`tcp_syncookies=2`) builds the connection.
//!
//! The SYN-ACK carries one option, the MSS. No timestamp, and so no window scale or SACK
//! either: the kernel decodes those from a cookie timestamp's low bits, and a timestamp's
//! value must agree with the kernel's per-connection offset, which XDP cannot compute
//! unless `tcp_timestamps=2`. A cookie connection therefore has an unscaled 64 KiB window;
//! once a client is admitted its next connections go through the kernel with every option.
//!
//! Anything this stage cannot serve (no listener, the kernel refuses a cookie, the SYN-ACK
//! budget spent, IPv4 options or IPv6 extension headers) falls back to the untracked path,
//! counted in `FW_SYN_STATS` by why.
//!
//! The stage runs as a program of its own, `floodwall_syncookie`, which the main program
//! tail-calls (`FW_STAGES`) for the packets [`may_answer`] picks out: a copy of it inlined
//! at its call site was walked by the verifier once for every state reaching it, and took
//! the main program to 861,000 of the kernel's 1,000,000 verified instructions. The stage's
//! program parses the frame again (a tail call carries only the context) and counts the
//! outcome itself.

use aya_ebpf::{
    bindings::{BPF_TCP_LISTEN, bpf_sock_tuple},
    helpers::generated::{
        bpf_sk_lookup_tcp, bpf_sk_release, bpf_tcp_gen_syncookie, bpf_tcp_raw_check_syncookie_ipv4,
        bpf_tcp_raw_check_syncookie_ipv6, bpf_xdp_adjust_tail, bpf_xdp_load_bytes,
    },
    programs::XdpContext,
};
use filter_common::{
    COOKIE_SLOT, COST_SHIFT, Class, Outcome, RateParams, SynStat, VERIFIED_SLOT, list_flags,
    syn_port_bit,
};

use crate::{
    gcra,
    maps::{self, FW_CEILINGS, FW_STAGES, FW_SYN_PORTS},
    packet::Packet,
    table::{self, Charge, Insert},
};

/// TCP flag bits (byte 13 of the header).
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;
/// The MSS option's kind (RFC 9293).
const OPT_MSS: u8 = 2;
/// The stack copy of a TCP header: room for the largest, 60 bytes.
const TCP_BUF: usize = 64;
/// Window of the SYN-ACK: never scaled (RFC 7323 §2.2), and not zero, which would stall the
/// client's first data until a window probe.
const SYNACK_WINDOW: u16 = 65_535;
/// TCP header length of the SYN-ACK: 20 bytes and the MSS option.
const SYNACK_TCP_LEN: usize = 24;
const IPV4_LEN: usize = 20;
/// Sizes of `bpf_sock_tuple`'s IPv4 and IPv6 members.
const IPV4_TUPLE: u32 = 12;
const IPV6_TUPLE: u32 = 36;
const IPV6_LEN: usize = 40;
const IPPROTO_TCP: u8 = 6;

/// Whether the packet, of a source not admitted to the table, is one this stage may answer:
/// a SYN or another TCP segment to a protected port, with the stage on. Cheap, so that the
/// main program tail-calls the stage only for these.
#[inline(always)]
pub fn may_answer(pkt: &Packet) -> bool {
    if !maps::syn_cookies_available()
        || !pkt.flag(list_flags::SYN_PROTECT)
        || !matches!(pkt.class, Class::Syn | Class::Tcp)
    {
        return false;
    }
    let mut dport = [0u8; 2];
    #[expect(clippy::cast_possible_truncation, reason = "offsets are small")]
    // SAFETY: two bytes of stack; the helper checks the frame's bounds.
    let loaded = unsafe {
        bpf_xdp_load_bytes(
            pkt.ctx.ctx,
            (pkt.at.l4 + 2) as u32,
            dport.as_mut_ptr().cast(),
            2,
        )
    };
    loaded == 0 && protected(u16::from_be_bytes(dport))
}

/// Tail-calls the stage's program (`filter_common::SYN_COOKIE_PROGRAM_NAME`), which decides
/// the packet with [`answer`]. Returns only if that program is not in its slot.
#[inline(always)]
pub fn enter(pkt: &Packet) {
    // SAFETY: the context is this run's; a tail call that succeeds does not return.
    unsafe { FW_STAGES.tail_call(pkt.ctx, maps::syn_cookie_slot()) };
}

/// The outcome of a SYN or ACK of an untracked source to a protected port, or `None` for
/// the untracked path's ceiling.
#[inline(always)]
pub fn answer(pkt: &Packet) -> Option<Outcome> {
    if !maps::syn_cookies_available() || !pkt.flag(list_flags::SYN_PROTECT) {
        return None;
    }
    match pkt.class {
        Class::Syn => syn(pkt),
        Class::Tcp => ack(pkt),
        _ => None,
    }
}

/// The TCP header of a packet whose IP header has no options or extension headers, with
/// its IP header's offset and length; `None` otherwise.
#[inline(always)]
fn plain_tcp(pkt: &Packet) -> Option<(usize, usize, usize)> {
    // The parser's offsets are small (Ethernet, two VLAN tags); the mask tells the verifier.
    let l3 = pkt.at.l3 & 0x3f;
    let ip_len = if pkt.v4 { IPV4_LEN } else { IPV6_LEN };
    if pkt.at.l4 != l3 + ip_len {
        return None;
    }
    Some((l3, ip_len, l3 + ip_len))
}

/// A pointer to `len` bytes at `off` if they lie inside the frame.
#[inline(always)]
fn at(ctx: &XdpContext, off: usize, len: usize) -> Option<*mut u8> {
    // Bounded here, in the register the pointer math uses. The offsets come from the
    // per-CPU copy of the parser's results (`maps::parsed`), whose bounds the verifier does
    // not know, and the 6.1 verifier also drops a bound the program checked when the value
    // goes through the stack on its way here. Headers this stage reads start within the
    // first 512 bytes; the volatile read keeps LLVM from folding the mask into a check
    // made earlier.
    // SAFETY: a read of a local.
    let off = unsafe { core::ptr::read_volatile(&raw const off) } & 0x1ff;
    let start = ctx.data() + off;
    if start + len > ctx.data_end() {
        return None;
    }
    Some(start as *mut u8)
}

/// Whether `port` (host order) is protected.
#[inline(always)]
fn protected(port: u16) -> bool {
    let (word, bit) = syn_port_bit(port);
    FW_SYN_PORTS.get(word).is_some_and(|w| w & bit != 0)
}

/// Takes one from this CPU's budget in `slot`, if it has room.
#[inline(always)]
fn take(pkt: &Packet, slot: u32, params: RateParams) -> bool {
    if params.cost_fp == 0 {
        return true;
    }
    let Some(tat) = FW_CEILINGS.get_ptr_mut(slot) else {
        return true;
    };
    // SAFETY: this CPU's element of a per-CPU array.
    !unsafe { gcra::step_local(tat, pkt.now, params.cost_fp >> COST_SHIFT, params.window_ns) }
}

/// A SYN of an untracked source: answered with a cookie SYN-ACK, or `None` for the ceiling.
#[inline(always)]
fn syn(pkt: &Packet) -> Option<Outcome> {
    let ctx = pkt.ctx;
    // Where the parser found the TCP header, behind IP options or extension headers too,
    // so that a SYN the stage cannot answer is counted as such.
    let tcp = at(ctx, pkt.at.l4 & 0xff, 20)?;
    // SAFETY: `at` checked that the 20-byte TCP header lies inside the frame.
    let (dport, flags) = unsafe { (u16::from_be_bytes([*tcp.add(2), *tcp.add(3)]), *tcp.add(13)) };
    if !protected(dport) {
        return None;
    }
    let Some((l3, _, l4)) = plain_tcp(pkt) else {
        maps::count_syn(SynStat::Unsupported);
        return None;
    };
    if flags & (SYN | ACK | RST | FIN) != SYN {
        maps::count_syn(SynStat::Unsupported);
        return None;
    }
    if pkt.monitor() {
        // Monitor mode never sends.
        return Some(Outcome::MonitorSynCookie);
    }
    if !take(pkt, COOKIE_SLOT, pkt.limits.syn.cookie_rate) {
        maps::count_syn(SynStat::OverBudget);
        return None;
    }
    let cookie = match issue_cookie(ctx, pkt.v4, l3, l4) {
        Ok(cookie) => cookie,
        Err(stat) => {
            maps::count_syn(stat);
            return None;
        }
    };
    if write_synack(pkt, l3, l4, cookie).is_none() {
        // The frame could not be resized: nothing was sent.
        maps::count_syn(SynStat::Unsupported);
        return None;
    }
    Some(Outcome::SynCookieSent)
}

/// Issues the cookie for the SYN at `l3`/`l4` through its listening socket: the kernel's
/// own cookie (with the MSS class it reads from the SYN's options), which its
/// `cookie_v4_check` accepts.
#[inline(always)]
fn issue_cookie(ctx: &XdpContext, v4: bool, l3: usize, l4: usize) -> Result<u32, SynStat> {
    let tcp = at(ctx, l4, 20).ok_or(SynStat::Unsupported)?;
    // SAFETY: `at` checked the TCP header.
    let data_offset = unsafe { *tcp.add(12) } >> 4;
    if data_offset < 5 {
        return Err(SynStat::Unsupported);
    }
    // SAFETY: `bpf_sock_tuple` is plain integers; all-zero is a valid value.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    // SAFETY: `at` checked both headers; the union members are plain integers; the tuple
    // is initialised and its size given (a constant for each family, for the verifier);
    // BPF_F_CURRENT_NETNS is -1 as the helper's u64 (it checks for a negative s32).
    let sk = unsafe {
        let ports = (
            core::ptr::read_unaligned(tcp.cast::<u16>()),
            core::ptr::read_unaligned(tcp.add(2).cast::<u16>()),
        );
        if v4 {
            let ip = at(ctx, l3, IPV4_LEN).ok_or(SynStat::Unsupported)?;
            let t = &mut tuple.__bindgen_anon_1.ipv4;
            t.saddr = core::ptr::read_unaligned(ip.add(12).cast::<u32>());
            t.daddr = core::ptr::read_unaligned(ip.add(16).cast::<u32>());
            (t.sport, t.dport) = ports;
            bpf_sk_lookup_tcp(ctx.ctx.cast(), &raw mut tuple, IPV4_TUPLE, u64::MAX, 0)
        } else {
            let ip = at(ctx, l3, IPV6_LEN).ok_or(SynStat::Unsupported)?;
            let t = &mut tuple.__bindgen_anon_1.ipv6;
            t.saddr = core::ptr::read_unaligned(ip.add(8).cast::<[u32; 4]>());
            t.daddr = core::ptr::read_unaligned(ip.add(24).cast::<[u32; 4]>());
            (t.sport, t.dport) = ports;
            bpf_sk_lookup_tcp(ctx.ctx.cast(), &raw mut tuple, IPV6_TUPLE, u64::MAX, 0)
        }
    };
    if sk.is_null() {
        return Err(SynStat::NoListener);
    }
    // One straight block from lookup to release: every path releases the reference.
    // SAFETY: `sk` is a non-null socket from the lookup.
    let result = if unsafe { (*sk).state } == BPF_TCP_LISTEN {
        // The helper parses the header (its MSS option) from a copy on the stack, of the
        // header's own length: one arm a length, so that every length the verifier sees is
        // a constant (older verifiers cannot carry a checked variable length to the call).
        match data_offset {
            5 => gen_cookie::<20>(ctx, sk.cast(), v4, l3, l4),
            6 => gen_cookie::<24>(ctx, sk.cast(), v4, l3, l4),
            7 => gen_cookie::<28>(ctx, sk.cast(), v4, l3, l4),
            8 => gen_cookie::<32>(ctx, sk.cast(), v4, l3, l4),
            9 => gen_cookie::<36>(ctx, sk.cast(), v4, l3, l4),
            10 => gen_cookie::<40>(ctx, sk.cast(), v4, l3, l4),
            11 => gen_cookie::<44>(ctx, sk.cast(), v4, l3, l4),
            12 => gen_cookie::<48>(ctx, sk.cast(), v4, l3, l4),
            13 => gen_cookie::<52>(ctx, sk.cast(), v4, l3, l4),
            14 => gen_cookie::<56>(ctx, sk.cast(), v4, l3, l4),
            _ => gen_cookie::<60>(ctx, sk.cast(), v4, l3, l4),
        }
    } else {
        NOT_LISTENING
    };
    // SAFETY: `sk` came from a successful lookup and is released once.
    unsafe { bpf_sk_release(sk.cast()) };
    match result {
        NOT_LISTENING => Err(SynStat::NoListener),
        NOT_LOADED => Err(SynStat::Unsupported),
        r if r < 0 => Err(SynStat::Refused),
        // The cookie is the low 32 bits (the MSS class the high ones).
        r => Ok(u32::try_from(r & 0xffff_ffff).unwrap_or_default()),
    }
}

/// What `issue_cookie` makes of a socket that is not a listener (an established one on the
/// same tuple), and of a header that could not be copied: no helper returns these.
const NOT_LISTENING: i64 = i64::MIN;
const NOT_LOADED: i64 = i64::MIN + 1;

/// The kernel's cookie for the SYN whose `N`-byte TCP header is at `l4`, through the
/// listener `sk`: the header copied to the stack, then `bpf_tcp_gen_syncookie`.
#[inline(always)]
fn gen_cookie<const N: usize>(
    ctx: &XdpContext,
    sk: *mut core::ffi::c_void,
    v4: bool,
    l3: usize,
    l4: usize,
) -> i64 {
    let mut header = [0u64; TCP_BUF / 8];
    #[expect(
        clippy::cast_possible_truncation,
        reason = "offsets and lengths are small"
    )]
    // SAFETY: `header` holds 64 bytes, at least `N`; the helper checks the frame's bounds;
    // `sk` is a listener from a lookup, `ip` a checked IP header of the length given.
    unsafe {
        if bpf_xdp_load_bytes(ctx.ctx, l4 as u32, header.as_mut_ptr().cast(), N as u32) != 0 {
            return NOT_LOADED;
        }
        // Each family its own call: every length the verifier sees is a constant.
        if v4 {
            let Some(ip) = at(ctx, l3, IPV4_LEN) else {
                return NOT_LOADED;
            };
            bpf_tcp_gen_syncookie(
                sk,
                ip.cast(),
                IPV4_LEN as u32,
                header.as_mut_ptr().cast(),
                N as u32,
            )
        } else {
            let Some(ip) = at(ctx, l3, IPV6_LEN) else {
                return NOT_LOADED;
            };
            bpf_tcp_gen_syncookie(
                sk,
                ip.cast(),
                IPV6_LEN as u32,
                header.as_mut_ptr().cast(),
                N as u32,
            )
        }
    }
}

/// Sums the `N` bytes at `p` as 16-bit big-endian words into a one's complement accumulator.
///
/// # Safety
/// `p` must point to `N` readable bytes.
#[inline(always)]
unsafe fn sum_words<const N: usize>(p: *const u8, mut sum: u32) -> u32 {
    let mut i = 0;
    while i + 1 < N {
        // SAFETY: the caller guarantees the bytes.
        sum += u32::from(unsafe { u16::from_be_bytes([*p.add(i), *p.add(i + 1)]) });
        i += 2;
    }
    sum
}

/// Folds a one's complement accumulator to the 16-bit checksum.
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    #[expect(clippy::cast_possible_truncation, reason = "folded to 16 bits above")]
    !(sum as u16)
}

/// Writes `bytes` at `p`.
///
/// # Safety
/// `p` must point to `N` writable bytes.
#[inline(always)]
unsafe fn put<const N: usize>(p: *mut u8, bytes: [u8; N]) {
    // SAFETY: the caller guarantees the bytes; `[u8; N]` has no alignment.
    unsafe { core::ptr::write_unaligned(p.cast::<[u8; N]>(), bytes) };
}

/// Rewrites the SYN in place into the SYN-ACK carrying `cookie`, written straight into the
/// frame (the stack is kept for the helpers' arguments); `None` if the frame could not be
/// resized, and nothing was changed then.
#[inline(always)]
fn write_synack(pkt: &Packet, l3: usize, l4: usize, cookie: u32) -> Option<()> {
    let ctx = pkt.ctx;
    let syn = &pkt.limits.syn;
    let tcp = at(ctx, l4, 20)?;
    // SAFETY: `at` checked the 20-byte TCP header.
    let (sport, dport, client_seq) = unsafe {
        (
            core::ptr::read_unaligned(tcp.cast::<[u8; 2]>()),
            core::ptr::read_unaligned(tcp.add(2).cast::<[u8; 2]>()),
            u32::from_be_bytes(core::ptr::read_unaligned(tcp.add(4).cast::<[u8; 4]>())),
        )
    };

    // Resize the frame to the SYN-ACK's length (a SYN has 0 to 40 bytes of options, and
    // may carry padding or data).
    let old_len = ctx.data_end() - ctx.data();
    #[expect(
        clippy::cast_possible_wrap,
        clippy::cast_possible_truncation,
        reason = "frames are far shorter than 2 GiB"
    )]
    let delta = (l4 + SYNACK_TCP_LEN) as i32 - old_len as i32;
    // SAFETY: the context pointer of this program's run.
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return None;
    }

    // The resize moved data_end: every pointer is taken again.
    let eth = at(ctx, 0, 12)?;
    // SAFETY: `at` checked the two addresses.
    unsafe {
        let (dst, src) = (
            core::ptr::read_unaligned(eth.cast::<[u8; 6]>()),
            core::ptr::read_unaligned(eth.add(6).cast::<[u8; 6]>()),
        );
        put(eth, src);
        put(eth.add(6), dst);
    }
    #[expect(clippy::cast_possible_truncation, reason = "24 bytes")]
    let tcp_len = SYNACK_TCP_LEN as u16;
    let pseudo = if pkt.v4 {
        let ip = at(ctx, l3, IPV4_LEN)?;
        // SAFETY: `at` checked the 20-byte IP header.
        unsafe {
            let (src, dst) = (
                core::ptr::read_unaligned(ip.add(12).cast::<[u8; 4]>()),
                core::ptr::read_unaligned(ip.add(16).cast::<[u8; 4]>()),
            );
            #[expect(clippy::cast_possible_truncation, reason = "20 bytes")]
            let tot_len = (IPV4_LEN as u16 + tcp_len).to_be_bytes();
            // Version and length, TOS; length; ID; don't fragment; TTL, protocol; checksum.
            put(ip, [0x45, 0, tot_len[0], tot_len[1], 0, 0, 0x40, 0]);
            put(ip.add(8), [syn.ttl, IPPROTO_TCP, 0, 0]);
            put(ip.add(12), dst);
            put(ip.add(16), src);
            let check = fold(sum_words::<IPV4_LEN>(ip, 0));
            put(ip.add(10), check.to_be_bytes());
            sum_words::<8>(ip.add(12), u32::from(IPPROTO_TCP) + u32::from(tcp_len))
        }
    } else {
        let ip = at(ctx, l3, IPV6_LEN)?;
        // SAFETY: `at` checked the 40-byte IP header.
        unsafe {
            let (src, dst) = (
                core::ptr::read_unaligned(ip.add(8).cast::<[u8; 16]>()),
                core::ptr::read_unaligned(ip.add(24).cast::<[u8; 16]>()),
            );
            let payload = tcp_len.to_be_bytes();
            put(
                ip,
                [
                    0x60,
                    0,
                    0,
                    0,
                    payload[0],
                    payload[1],
                    IPPROTO_TCP,
                    syn.hop_limit,
                ],
            );
            put(ip.add(8), dst);
            put(ip.add(24), src);
            sum_words::<32>(ip.add(8), u32::from(IPPROTO_TCP) + u32::from(tcp_len))
        }
    };

    let th = at(ctx, l4, SYNACK_TCP_LEN)?;
    let mss = if pkt.v4 { syn.mss_v4 } else { syn.mss_v6 }.to_be_bytes();
    let window = SYNACK_WINDOW.to_be_bytes();
    #[expect(clippy::cast_possible_truncation, reason = "24 bytes")]
    let doff = ((SYNACK_TCP_LEN / 4) as u8) << 4;
    // SAFETY: `at` checked the 24-byte header.
    unsafe {
        put(th, [dport[0], dport[1], sport[0], sport[1]]);
        put(th.add(4), cookie.to_be_bytes());
        put(th.add(8), client_seq.wrapping_add(1).to_be_bytes());
        put(
            th.add(12),
            [doff, SYN | ACK, window[0], window[1], 0, 0, 0, 0],
        );
        put(th.add(20), [OPT_MSS, 4, mss[0], mss[1]]);
        let check = fold(sum_words::<SYNACK_TCP_LEN>(th, pseudo));
        put(th.add(16), check.to_be_bytes());
    }
    Some(())
}

/// An ACK of an untracked source to a protected port: if it returns a valid cookie, its
/// source is admitted (`CookieVerified`); otherwise `None` for the untracked path.
#[inline(always)]
fn ack(pkt: &Packet) -> Option<Outcome> {
    let ctx = pkt.ctx;
    let (l3, _, l4) = plain_tcp(pkt)?;
    let tcp = at(ctx, l4, 20)?;
    // SAFETY: `at` checked the 20-byte TCP header.
    let (dport, flags) = unsafe { (u16::from_be_bytes([*tcp.add(2), *tcp.add(3)]), *tcp.add(13)) };
    if flags & (SYN | ACK | RST) != ACK || !protected(dport) {
        return None;
    }
    // SAFETY: `at` checked the TCP header; the IP header before it is whole (`plain_tcp`).
    let valid = unsafe {
        if pkt.v4 {
            let ip = at(ctx, l3, IPV4_LEN)?;
            bpf_tcp_raw_check_syncookie_ipv4(ip.cast(), tcp.cast()) == 0
        } else {
            let ip = at(ctx, l3, IPV6_LEN)?;
            bpf_tcp_raw_check_syncookie_ipv6(ip.cast(), tcp.cast()) == 0
        }
    };
    if !valid {
        maps::count_syn(SynStat::CookieInvalid);
        return None;
    }
    if !take(pkt, VERIFIED_SLOT, pkt.limits.syn.verified_rate) {
        maps::count_syn(SynStat::VerifiedOverBudget);
        return None;
    }
    match table::insert(pkt, Charge::Now) {
        Insert::Added | Insert::Exists => Some(Outcome::CookieVerified),
        Insert::Refused => None,
    }
}
