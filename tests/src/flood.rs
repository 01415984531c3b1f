//! Spoofed floods for the end-to-end tests and the flood benchmark: floods whose source
//! addresses are made up, from inside the lab's own ranges only.
//!
//! Two generators:
//! - [`spawn_trafgen`] runs trafgen (netsniff-ng) on an attacker with a packet configuration
//!   from [`syn_flood_v4`], [`udp_rotation_v4`] or [`udp_random_v6`]. Its frames are crafted
//!   whole, Ethernet header included, so the destination MAC must be the server's
//!   ([`mac_address`]): the lab's bridge forwards them to the server like any other frame.
//!   About 130,000 packets/s on one CPU here.
//! - [`LiveGenerator`] runs a tiny XDP program of its own through `BPF_PROG_TEST_RUN` in
//!   live-frame mode (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux 5.18): the kernel runs it on copies
//!   of one frame and sends every frame it returns `XDP_TX` for out of the test's ingress
//!   interface, as a driver would. The program writes a random interface identifier into
//!   each frame's IPv6 source address first, so every frame comes from a new source. Millions
//!   of frames per second on one CPU; used by `floodwall-flood-bench`.
//!
//! Spoofed sources stay inside the benchmarking ranges (`198.18.0.0/15`, `2001:2::/48`) and
//! outside the subnets of the lab's hosts (`198.18.0.0/24`, `2001:2::/64`), so no flood frame
//! claims to come from a real lab host, and the server has no route back to any of them:
//! whatever it answers to a spoofed source dies in its own routing table.

use std::{
    ffi::CString,
    fs::File,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};

use crate::lab::{Host, Lab, Proc};

/// How many addresses [`syn_flood_v4`] draws its sources from: `198.18.0.0/15` without the
/// `x.x.0.0/24` blocks, that is 2 × 255 × 256.
pub const SPOOFED_V4_SPACE: u64 = 2 * 255 * 256;

/// The /64 the IPv6 floods take their sources from (inside `2001:2::/48`, beside the lab's
/// own `2001:2::/64`).
pub const SPOOFED_V6_PREFIX: [u16; 4] = [0x2001, 0x0002, 0x0000, 0x0001];

/// The MAC address of `host`'s lab interface, as `ip` prints it (`aa:bb:cc:dd:ee:ff`).
///
/// # Errors
/// If `ip link show` fails or prints no address.
pub fn mac_address(lab: &Lab, host: &Host) -> anyhow::Result<String> {
    let link = ip_link_json(lab, host, false)?;
    link["address"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("ip link show {} printed no address: {link}", host.iface))
}

/// [`mac_address`] as bytes.
///
/// # Errors
/// As [`mac_address`], or if the address is not six hex bytes.
pub fn mac_bytes(lab: &Lab, host: &Host) -> anyhow::Result<[u8; 6]> {
    let text = mac_address(lab, host)?;
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("`{text}` is not a MAC address"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("`{text}` is not a MAC address"))
}

/// Interface counters as `ip -s link` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Frames received. On a veth with a native XDP program this counts every frame the
    /// program ran on, whatever its verdict (`veth_xdp_rcv()` adds them to `xdp_packets`,
    /// which `veth_get_stats64()` reports as received).
    pub rx_packets: u64,
    /// Frames lost on the way in. On a veth this includes frames its peer could not queue
    /// to it (`peer_tq_xdp_xmit_err`: its ring of 256 frames was full).
    pub rx_dropped: u64,
}

/// The counters of `host`'s lab interface.
///
/// # Errors
/// If `ip -s link show` fails or prints no counters.
pub fn link_counters(lab: &Lab, host: &Host) -> anyhow::Result<LinkCounters> {
    let link = ip_link_json(lab, host, true)?;
    let rx = &link["stats64"]["rx"];
    let field = |name: &str| {
        rx[name]
            .as_u64()
            .with_context(|| format!("ip -s link show {} has no rx {name}: {link}", host.iface))
    };
    Ok(LinkCounters {
        rx_packets: field("packets")?,
        rx_dropped: field("dropped")?,
    })
}

fn ip_link_json(lab: &Lab, host: &Host, stats: bool) -> anyhow::Result<serde_json::Value> {
    let mut argv = vec!["ip", "-j"];
    if stats {
        argv.push("-s");
    }
    argv.extend(["link", "show", "dev", &host.iface]);
    let out = lab.run_in(host, &argv)?;
    ensure!(
        out.status.success(),
        "{argv:?} in {} failed: {}",
        host.name,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let mut links: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{argv:?} printed no JSON list"))?;
    ensure!(links.len() == 1, "{argv:?} printed {} links", links.len());
    Ok(links.swap_remove(0))
}

// ---- trafgen -------------------------------------------------------------------------------

/// An error naming the package to install if trafgen is not on `PATH`.
///
/// # Errors
/// If trafgen (Debian package netsniff-ng) is not installed.
pub fn require_trafgen() -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ensure!(
        std::env::split_paths(&path).any(|dir| dir.join("trafgen").is_file()),
        "spoofed floods need trafgen, which is not installed (package netsniff-ng)"
    );
    Ok(())
}

/// A trafgen packet configuration: TCP SYNs to port 80 of `dst` from random sources in
/// `198.18.0.0/15` outside the `x.x.0.0/24` blocks ([`SPOOFED_V4_SPACE`] addresses), with
/// random ports, sequence numbers and IP ids. trafgen recomputes the checksums of every
/// header whose fields it randomises.
#[must_use]
pub fn syn_flood_v4(dst_mac: &str, dst: Ipv4Addr) -> String {
    syn_flood_v4_above(dst_mac, dst, 1)
}

/// [`syn_flood_v4`] from the `x.x.N.0/24` blocks with `N >= first_block` only, so that the
/// blocks below stay free for addresses a test gives its users.
#[must_use]
pub fn syn_flood_v4_above(dst_mac: &str, dst: Ipv4Addr, first_block: u8) -> String {
    format!(
        "{{
  eth(da={dst_mac}),
  ipv4(sa=198.18.1.0, sa[1]=drnd(18, 19), sa[2]=drnd({first_block}, 255), sa[3]=drnd(), da={dst}, ttl=64, id=drnd()),
  tcp(sp=drnd(1024, 65535), dp=80, seq=drnd(), syn, window=64240)
}}
"
    )
}

/// A trafgen packet configuration: UDP datagrams to `dst_port` of `dst` whose source walks
/// round-robin through the 256 addresses of the /24 `net` (its last octet is ignored), so
/// that each address sends one packet in 256.
#[must_use]
pub fn udp_rotation_v4(dst_mac: &str, dst: Ipv4Addr, net: Ipv4Addr, dst_port: u16) -> String {
    let [a, b, c, _] = net.octets();
    format!(
        "{{
  eth(da={dst_mac}),
  ipv4(sa={a}.{b}.{c}.0, sa[3]=dinc(), da={dst}, ttl=64, id=drnd()),
  udp(sp=drnd(1024, 65535), dp={dst_port}),
  fill(0x66, 18)
}}
"
    )
}

/// A trafgen packet configuration: UDP datagrams to `dst_port` of `dst` from random
/// addresses of the /64 [`SPOOFED_V6_PREFIX`] (random 64-bit interface identifiers: every
/// packet a new source).
#[must_use]
pub fn udp_random_v6(dst_mac: &str, dst: Ipv6Addr, dst_port: u16) -> String {
    let [p0, p1, p2, p3] = SPOOFED_V6_PREFIX;
    format!(
        "{{
  eth(da={dst_mac}),
  ipv6(sa={p0:x}:{p1:x}:{p2:x}:{p3:x}::1, sa[8:4]=drnd(), sa[12:4]=drnd(), da={dst}, hl=64),
  udp(sp=drnd(1024, 65535), dp={dst_port}),
  fill(0x66, 8)
}}
"
    )
}

/// Starts trafgen on `from`, sending the frames of `config` out of its lab interface: at most
/// `count` packets, for at most `max_time`, as fast as it can on one CPU. trafgen is told
/// to leave the machine's socket memory settings and interrupt affinities alone (it tunes
/// both by default). See [`trafgen_sent`].
///
/// # Errors
/// If the configuration cannot be written or trafgen cannot be started.
pub fn spawn_trafgen(
    lab: &Lab,
    from: &Host,
    name: &str,
    config: &str,
    count: u64,
    max_time: Duration,
) -> anyhow::Result<Proc> {
    spawn_trafgen_at(lab, from, name, config, count, max_time, None)
}

/// [`spawn_trafgen`] at `pps` packets per second, if given, instead of as fast as it can.
///
/// # Errors
/// As [`spawn_trafgen`].
pub fn spawn_trafgen_at(
    lab: &Lab,
    from: &Host,
    name: &str,
    config: &str,
    count: u64,
    max_time: Duration,
    pps: Option<u64>,
) -> anyhow::Result<Proc> {
    let pace = pps.map_or(Pace::Fastest, Pace::Rate);
    spawn_trafgen_paced(lab, from, name, config, count, max_time, pace)
}

/// How fast trafgen sends.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// As fast as it can.
    Fastest,
    /// At most this many packets a second (`--rate`). It spreads nothing: trafgen sends
    /// each second's packets as fast as it can, then sleeps out the rest of the second
    /// (`shaper_delay()` in trafgen.c).
    Rate(u64),
    /// This long after every packet (`--gap`: it sleeps after each `sendto`, and the
    /// timer's slack adds some 50 µs to each sleep), so that the packets come evenly
    /// spread.
    Gap(Duration),
}

/// [`spawn_trafgen`] at `pace`.
///
/// # Errors
/// As [`spawn_trafgen`].
pub fn spawn_trafgen_paced(
    lab: &Lab,
    from: &Host,
    name: &str,
    config: &str,
    count: u64,
    max_time: Duration,
    pace: Pace,
) -> anyhow::Result<Proc> {
    let path = lab.dir().join(format!("{name}.trafgen"));
    std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))?;
    let mut argv = vec![
        "timeout".to_owned(),
        "--kill-after=2".to_owned(),
        max_time.as_secs().max(1).to_string(),
        "trafgen".to_owned(),
        "--dev".to_owned(),
        from.iface.clone(),
        "--conf".to_owned(),
        path.display().to_string(),
        "--num".to_owned(),
        count.to_string(),
        "--cpus".to_owned(),
        "1".to_owned(),
        "--notouch-irq".to_owned(),
        "--no-cpu-stats".to_owned(),
    ];
    // On a real machine trafgen leaves the socket memory sysctls alone. In the test VM
    // (`FLOODWALL_VM`, a throwaway guest) it may raise them as it does by default: with the
    // defaults, emulation often makes its TX ring flush fail with EAGAIN.
    if !crate::in_vm() {
        argv.push("--no-sock-mem".to_owned());
    }
    match pace {
        Pace::Fastest => {}
        Pace::Rate(pps) => argv.extend(["--rate".to_owned(), format!("{pps}pps")]),
        Pace::Gap(gap) => argv.extend(["--gap".to_owned(), format!("{}ns", gap.as_nanos())]),
    }
    lab.spawn(from, name, &argv)
}

/// A UDP flood at the server from 4,096 sources (198.19.0.0/20) with TTL 57, as fast as
/// trafgen can on the host (20,000 packets/s in the VM, under emulation), for at most 40 s
/// or 5,000,000 packets: `udp_and_payload` is trafgen's UDP header and what follows it.
///
/// # Errors
/// If the server's MAC cannot be read or trafgen cannot start.
pub fn spawn_udp_flood(lab: &Lab, name: &str, udp_and_payload: &str) -> anyhow::Result<Proc> {
    let config = udp_flood_config(lab, udp_and_payload)?;
    spawn_trafgen_at(
        lab,
        &lab.attackers()[0],
        name,
        &config,
        5_000_000,
        Duration::from_secs(40),
        crate::in_vm().then_some(20_000),
    )
}

/// [`spawn_udp_flood`] with a gap of `gap` after every packet, evenly spread (see
/// [`Pace::Gap`]: the rate comes out under `1 / gap`), for at most `max_time`: a
/// flood that rises to a rate the service can answer, such as a crowd of new users.
///
/// # Errors
/// As [`spawn_udp_flood`].
pub fn spawn_udp_flood_paced(
    lab: &Lab,
    name: &str,
    udp_and_payload: &str,
    gap: Duration,
    max_time: Duration,
) -> anyhow::Result<Proc> {
    let config = udp_flood_config(lab, udp_and_payload)?;
    // No more packets than an exact gap would send in `max_time`.
    let count = max_time.as_nanos() / gap.as_nanos().max(1);
    spawn_trafgen_paced(
        lab,
        &lab.attackers()[0],
        name,
        &config,
        u64::try_from(count).unwrap_or(u64::MAX),
        max_time,
        Pace::Gap(gap),
    )
}

/// The trafgen configuration of [`spawn_udp_flood`] and [`spawn_udp_flood_paced`]: one
/// packet to the server's MAC and address from 4,096 sources (198.19.0.0/20) with TTL 57,
/// then `udp_and_payload`. Several of them make a configuration that sends each in turn.
///
/// # Errors
/// If the server's MAC cannot be read.
pub fn udp_flood_config(lab: &Lab, udp_and_payload: &str) -> anyhow::Result<String> {
    let mac = mac_address(lab, lab.server())?;
    Ok(format!(
        "{{\n  eth(da={mac}),\n  ipv4(sa=198.19.0.0, sa[2]=drnd(0, 15), sa[3]=drnd(), da={}, \
         ttl=57, id=drnd()),\n  {udp_and_payload}\n}}\n",
        lab.server().ipv4
    ))
}

/// trafgen payload elements for a datagram like a query of [`crate::udp::query`]'s, byte for
/// byte in its form: `query `, a three-digit number that changes from packet to packet (100
/// to 999, as a user's counter reads), spaces to [`crate::udp::QUERY_BYTES`]. What a new
/// user of the service sends: nothing in its length or payload tells it from the known
/// users' queries.
#[must_use]
pub fn udp_query_lookalike() -> String {
    // One one-byte runtime counter a digit, stepping 1 (over 1 to 9), 3 and 7 (over 0 to 9,
    // both prime to 10): 90 different numbers before they repeat, not `111`, `222`, ...
    const PREFIX: &str = "query ";
    const DIGITS: usize = 3;
    let pad = crate::udp::QUERY_BYTES - PREFIX.len() - DIGITS;
    format!(
        "\"{PREFIX}\", dinc(0x31, 0x39), dinc(0x30, 0x39, 3), dinc(0x30, 0x39, 7), \
         fill(0x20, {pad})"
    )
}

/// Packets a trafgen run sent, from the statistics it prints when it ends (also when
/// `timeout` stops it): `   600000 packets outgoing`. `None` if it printed none.
#[must_use]
pub fn trafgen_sent(proc: &Proc) -> Option<u64> {
    (proc.stdout() + &proc.stderr()).lines().find_map(outgoing)
}

/// Packets `host`'s lab interface has transmitted (its `tx_packets` counter), read inside
/// its namespace.
///
/// # Errors
/// If the counter cannot be read.
pub fn tx_packets(lab: &Lab, host: &Host) -> anyhow::Result<u64> {
    let path = format!("/sys/class/net/{}/statistics/tx_packets", host.iface);
    // sh's own `read`: the VM has no `cat`.
    let out = lab.run_in(
        host,
        &[
            "sh",
            "-c",
            r#"read n < "$1" && echo "$n""#,
            "sh",
            path.as_str(),
        ],
    )?;
    anyhow::ensure!(
        out.status.success(),
        "cannot read {path} in {}: {}",
        host.netns,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("{path} is not a number"))
}

/// The count of trafgen's statistics line `   600000 packets outgoing`.
fn outgoing(line: &str) -> Option<u64> {
    line.trim()
        .strip_suffix("packets outgoing")?
        .trim()
        .parse()
        .ok()
}

/// The expected number of distinct values among `draws` uniform draws from `space` values:
/// `space × (1 − (1 − 1/space)^draws)`.
#[must_use]
#[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
pub fn expected_distinct(space: u64, draws: u64) -> f64 {
    let space = space as f64;
    space * (1.0 - (-(draws as f64) / space).exp())
}

// ---- namespaces and CPUs --------------------------------------------------------------------

/// The calling thread inside a network namespace; back in its former one on drop. Only the
/// calling thread moves (`setns(2)` on a network namespace is per thread), so the rest of
/// the process, and every command it starts, stays where it was.
pub struct NetnsGuard {
    former: OwnedFd,
}

impl NetnsGuard {
    /// Moves the calling thread into the named namespace (`/run/netns/NAME`, as
    /// `ip netns add` makes them).
    ///
    /// # Errors
    /// If either namespace cannot be opened or entered.
    pub fn enter(netns: &str) -> anyhow::Result<Self> {
        let former: OwnedFd = File::open("/proc/thread-self/ns/net")
            .context("cannot open this thread's network namespace")?
            .into();
        let path = format!("/run/netns/{netns}");
        let target = File::open(&path).with_context(|| format!("cannot open {path}"))?;
        setns(&target, &path)?;
        Ok(Self { former })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // SAFETY: setns takes a valid open fd (ours) and a flag; it has no memory effects.
        let back = unsafe { libc::setns(self.former.as_raw_fd(), libc::CLONE_NEWNET) };
        // Going on in the wrong namespace would act on the wrong interfaces.
        assert!(
            back == 0,
            "cannot return to the former network namespace: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn setns(file: &File, what: &str) -> anyhow::Result<()> {
    // SAFETY: as in `NetnsGuard::drop`.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "cannot enter the network namespace {what}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The index of interface `name` in the calling thread's network namespace.
///
/// # Errors
/// If there is no such interface.
pub fn ifindex(name: &str) -> anyhow::Result<u32> {
    let c_name = CString::new(name).context("an interface name has no NUL byte")?;
    // SAFETY: if_nametoindex reads the NUL-terminated string we own.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    ensure!(
        index != 0,
        "no interface {name}: {}",
        std::io::Error::last_os_error()
    );
    Ok(index)
}

// ---- the live-frame generator ---------------------------------------------------------------

/// `BPF_PROG_LOAD` and `BPF_PROG_TEST_RUN` (`enum bpf_cmd`, `include/uapi/linux/bpf.h`).
const BPF_PROG_LOAD: libc::c_long = 5;
/// See [`BPF_PROG_LOAD`].
const BPF_PROG_TEST_RUN: libc::c_long = 10;
/// `BPF_PROG_TYPE_XDP`.
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`: run the program on real frames and carry out its verdicts.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// Largest live-frame batch the kernel takes (`TEST_XDP_MAX_BATCH`).
pub const MAX_BATCH: u32 = 256;

/// Offset of the interface identifier (the low 64 bits) of the IPv6 source address in a
/// frame of [`LiveGenerator::frame`]: 14 bytes of Ethernet, 8 into the IPv6 header, 8 into
/// the address.
const SOURCE_IID_OFFSET: i16 = 14 + 8 + 8;
/// Offset of the UDP payload: Ethernet, IPv6, UDP headers.
const PAYLOAD_OFFSET: i16 = 14 + 40 + 8;
/// Offset of the TCP sequence number in a frame of [`LiveGenerator::syn_frame`]; the
/// acknowledgment number follows it.
const SYN_SEQ_OFFSET: i16 = 14 + 40 + 4;
/// Length of a frame of [`LiveGenerator::syn_frame`]: Ethernet, IPv6, TCP with 20 bytes of
/// options.
pub const SYN_FRAME_LEN: usize = 14 + 40 + 40;
/// Length of the generated frames: the headers and 8 bytes of payload.
pub const FRAME_LEN: usize = PAYLOAD_OFFSET as usize + 8;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Insn {
    code: u8,
    /// `src_reg << 4 | dst_reg`.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// `BPF_FUNC_get_prandom_u32`.
const HELPER_PRANDOM_U32: i32 = 7;
/// `XDP_DROP`, `XDP_TX`, as an instruction's immediate.
const XDP_DROP: i32 = filter_common::xdp_action::DROP.cast_signed();
/// See [`XDP_DROP`].
const XDP_TX: i32 = filter_common::xdp_action::TX.cast_signed();

/// The generator program. Per frame: two calls to `bpf_get_prandom_u32()` (the kernel's
/// per-CPU PRNG) give a random 64-bit interface identifier, written into the IPv6 source
/// address; the bitwise complement of each word goes into the UDP payload, so the frame's
/// one's-complement sum, and with it the UDP checksum computed over the template, stays
/// right (each 16-bit word and its complement add up to 0xffff, one's-complement zero).
/// Then `XDP_TX`, which live-frame mode turns into a redirect out of the ingress interface.
/// A frame shorter than [`FRAME_LEN`] is dropped.
///
/// The program is a handful of instructions, written out here rather than added to the
/// product's eBPF crate: it is test equipment, and the product's object should hold only
/// what is attached to a server or measured as a yardstick.
fn generator_program() -> Vec<Insn> {
    generator_program_at(SOURCE_IID_OFFSET, PAYLOAD_OFFSET)
}

/// [`generator_program`] writing the source's complement at `complement_at` (and 4 bytes
/// on) instead of into a UDP payload: for the SYN frames, into the TCP sequence and
/// acknowledgment numbers (a SYN's acknowledgment number means nothing without ACK).
/// Frames must reach 8 bytes past `complement_at`.
fn generator_program_at(iid_at: i16, complement_at: i16) -> Vec<Insn> {
    const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    const STX_W: u8 = 0x63; // BPF_STX | BPF_MEM | BPF_W
    const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
    const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const ADD64_K: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K
    const XOR32_K: u8 = 0xa4; // BPF_ALU | BPF_XOR | BPF_K
    const JGT_X: u8 = 0x2d; // BPF_JMP | BPF_JGT | BPF_X
    const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
    const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
    let len = i32::from(complement_at) + 8;
    let (r0, r1, r2, r6, r7) = (0, 1, 2, 6, 7);
    vec![
        insn(LDX_W, r6, r1, 0, 0),    // r6 = ctx->data
        insn(LDX_W, r7, r1, 4, 0),    // r7 = ctx->data_end
        insn(MOV64_X, r2, r6, 0, 0),  // r2 = data
        insn(ADD64_K, r2, 0, 0, len), // r2 += FRAME_LEN
        insn(JGT_X, r2, r7, 10, 0),   // if r2 > data_end goto drop
        insn(CALL, 0, 0, 0, HELPER_PRANDOM_U32),
        insn(STX_W, r6, r0, iid_at, 0),
        insn(XOR32_K, r0, 0, 0, -1),
        insn(STX_W, r6, r0, complement_at, 0),
        insn(CALL, 0, 0, 0, HELPER_PRANDOM_U32),
        insn(STX_W, r6, r0, iid_at + 4, 0),
        insn(XOR32_K, r0, 0, 0, -1),
        insn(STX_W, r6, r0, complement_at + 4, 0),
        insn(MOV64_K, r0, 0, 0, XDP_TX),
        insn(EXIT, 0, 0, 0, 0),
        insn(MOV64_K, r0, 0, 0, XDP_DROP), // drop:
        insn(EXIT, 0, 0, 0, 0),
    ]
}

/// Loads a raw XDP program; the kernel's verifier log is in the error.
fn load_xdp(insns: &[Insn], name: [u8; 16]) -> anyhow::Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: u32::try_from(insns.len()).context("program length")?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: u32::try_from(log.len()).context("log size")?,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
    };
    let fd = sys_bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        anyhow::anyhow!(
            "the kernel refused a test program: {e}; verifier log:\n{}",
            String::from_utf8_lossy(&log[..end])
        )
    })?;
    let fd = i32::try_from(fd).context("a file descriptor fits an int")?;
    // SAFETY: BPF_PROG_LOAD returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `BPF_LINK_CREATE` and the `BPF_XDP` attach type.
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_XDP: u32 = 37;

/// `union bpf_attr` for `BPF_LINK_CREATE`, up to the fields we set.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// An `XDP_PASS` program attached to a veth (in driver mode, through a BPF link), for as
/// long as this lives. A frame a program sends back with `XDP_TX` from one end of a veth
/// pair reaches the other end only if that end runs an XDP program of its own, which gives
/// it the NAPI instance the frame is queued to: the lab puts this on the switch side of the
/// server's link so that floodwall's SYN-ACKs get through. Test equipment, like the
/// generator (see [`generator_program`]).
pub struct PeerXdp {
    _link: OwnedFd,
}

impl PeerXdp {
    /// Attaches the pass program to `iface` of network namespace `netns`.
    ///
    /// # Errors
    /// If the program cannot be loaded, the namespace entered or the link created.
    pub fn attach(netns: &str, iface: &str) -> anyhow::Result<Self> {
        Self::attach_returning(netns, iface, 2, *b"fw_peer_pass\0\0\0\0")
    }

    /// As [`PeerXdp::attach`], but the program drops the answers to the SYN generator's
    /// frames (IPv6 TCP to its source port, 40000) and passes everything else: a sink that
    /// counts them (in the interface's receive counter, with everything else) and keeps
    /// them, addressed to made-up sources, from flooding the bridge.
    ///
    /// # Errors
    /// As [`PeerXdp::attach`].
    pub fn attach_sink(netns: &str, iface: &str) -> anyhow::Result<Self> {
        Self::attach_program(netns, iface, &sink_program(), *b"fw_peer_sink\0\0\0\0")
    }

    fn attach_returning(
        netns: &str,
        iface: &str,
        verdict: i32,
        name: [u8; 16],
    ) -> anyhow::Result<Self> {
        const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
        const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
        Self::attach_program(
            netns,
            iface,
            &[insn(MOV64_K, 0, 0, 0, verdict), insn(EXIT, 0, 0, 0, 0)],
            name,
        )
    }

    fn attach_program(
        netns: &str,
        iface: &str,
        insns: &[Insn],
        name: [u8; 16],
    ) -> anyhow::Result<Self> {
        let prog = load_xdp(insns, name)?;
        let _inside = NetnsGuard::enter(netns)?;
        let mut attr = LinkCreateAttr {
            prog_fd: u32::try_from(prog.as_raw_fd()).context("program fd")?,
            target_ifindex: ifindex(iface)?,
            attach_type: BPF_XDP,
            flags: 0,
        };
        let fd = sys_bpf(BPF_LINK_CREATE, &mut attr)
            .with_context(|| format!("cannot attach an XDP program to {iface} in {netns}"))?;
        let fd = i32::try_from(fd).context("a file descriptor fits an int")?;
        // SAFETY: BPF_LINK_CREATE returned a new file descriptor that nothing else owns.
        let link = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { _link: link })
    }
}

/// The SYN generator: as [`generator_program`], but it first writes the whole `template`
/// frame back, at its own length, before it sets the random source. A live-frame run
/// recycles its pages without copying the frame again, and an answer in place (the SYN-ACK
/// that floodwall or the reflector writes over the SYN, and resizes) would otherwise come
/// back to the generator as the next frame's content.
///
/// # Errors
/// If the template is not [`SYN_FRAME_LEN`] bytes.
fn syn_generator_program(template: &[u8]) -> anyhow::Result<Vec<Insn>> {
    const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    const ST_W: u8 = 0x62; // BPF_ST | BPF_MEM | BPF_W
    const ST_H: u8 = 0x6a; // BPF_ST | BPF_MEM | BPF_H
    const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
    const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const SUB64_X: u8 = 0x1f; // BPF_ALU64 | BPF_SUB | BPF_X
    const ADD64_K: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K
    const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
    const JGT_X: u8 = 0x2d; // BPF_JMP | BPF_JGT | BPF_X
    const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
    const HELPER_ADJUST_TAIL: i32 = 65;
    ensure!(
        template.len() == SYN_FRAME_LEN,
        "the SYN template has {} bytes, not {SYN_FRAME_LEN}",
        template.len()
    );
    // Two bytes of padding past the template: a live-frame run updates the frame it sends
    // from the program's context only when the frame's end differs from the one it started
    // with, and a recycled page's frame may carry another length (the answer's).
    let len = i32::try_from(SYN_FRAME_LEN + 2).context("frame length")?;
    let (r0, r1, r2, r6, r7, r8) = (0, 1, 2, 6, 7, 8);
    let mut p = vec![
        insn(MOV64_X, r8, r1, 0, 0), // r8 = ctx
        insn(LDX_W, r6, r1, 0, 0),   // r6 = ctx->data
        insn(LDX_W, r7, r1, 4, 0),   // r7 = ctx->data_end
        insn(MOV64_K, r2, 0, 0, len),
        insn(SUB64_X, r7, r6, 0, 0), // r7 = the frame's length now
        insn(SUB64_X, r2, r7, 0, 0), // r2 = SYN_FRAME_LEN - that
        insn(JEQ_K, r2, 0, 0, 0),    // patched below: if r2 == 0 skip the resize
    ];
    let skip_at = p.len() - 1;
    p.extend([
        insn(MOV64_X, r1, r8, 0, 0),
        insn(CALL, 0, 0, 0, HELPER_ADJUST_TAIL),
        insn(JNE_K, r0, 0, 0, 0), // patched below: if the resize failed goto drop
    ]);
    let fail_at = p.len() - 1;
    p[skip_at].off = i16::try_from(p.len() - skip_at - 1).context("jump")?;
    p.extend([
        insn(LDX_W, r6, r8, 0, 0), // the pointers again, after the resize
        insn(LDX_W, r7, r8, 4, 0),
        insn(MOV64_X, r2, r6, 0, 0),
        insn(ADD64_K, r2, 0, 0, len),
        insn(JGT_X, r2, r7, 0, 0), // patched below: if data + len > data_end goto drop
    ]);
    let bounds_at = p.len() - 1;
    // The template, four bytes a store, then the last two.
    let words = template.chunks_exact(4);
    let tail = words.remainder();
    for (i, word) in words.enumerate() {
        let imm = i32::from_le_bytes(word.try_into().context("a word")?);
        p.push(insn(
            ST_W,
            r6,
            0,
            i16::try_from(i * 4).context("offset")?,
            imm,
        ));
    }
    ensure!(tail.len() == 2, "the SYN template ends in a half word");
    let imm = i32::from(u16::from_le_bytes([tail[0], tail[1]]));
    let off = i16::try_from(SYN_FRAME_LEN - 2).context("offset")?;
    p.push(insn(ST_H, r6, 0, off, imm));
    p.push(insn(ST_H, r6, 0, off + 2, 0)); // the padding
    // Then the random source, as the UDP generator does; its last instructions are
    // `XDP_TX; exit; drop: XDP_DROP; exit`, after its own bounds check, which holds.
    let random = generator_program_at(SOURCE_IID_OFFSET, SYN_SEQ_OFFSET);
    p.extend_from_slice(&random[5..]);
    let drop_at = p.len() - 2;
    for at in [fail_at, bounds_at] {
        p[at].off = i16::try_from(drop_at - at - 1).context("jump")?;
    }
    Ok(p)
}

/// The sink of [`PeerXdp::attach_sink`]: `XDP_DROP` for an IPv6 TCP frame to port 40000
/// (the SYN generator's source port), `XDP_PASS` for anything else.
fn sink_program() -> Vec<Insn> {
    const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    const LDX_H: u8 = 0x69; // BPF_LDX | BPF_MEM | BPF_H
    const LDX_B: u8 = 0x71; // BPF_LDX | BPF_MEM | BPF_B
    const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
    const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const ADD64_K: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K
    const JGT_X: u8 = 0x2d; // BPF_JMP | BPF_JGT | BPF_X
    const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
    const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
    const XDP_PASS: i32 = filter_common::xdp_action::PASS.cast_signed();
    // Loads are little-endian: 0x86dd on the wire reads 0xdd86, port 40000 (0x9c40) 0x409c.
    let (r0, r1, r2, r3, r6, r7) = (0, 1, 2, 3, 6, 7);
    vec![
        insn(LDX_W, r6, r1, 0, 0),   // r6 = ctx->data
        insn(LDX_W, r7, r1, 4, 0),   // r7 = ctx->data_end
        insn(MOV64_X, r2, r6, 0, 0), // r2 = data
        insn(ADD64_K, r2, 0, 0, 58), // r2 += Ethernet, IPv6 and 4 bytes of TCP
        insn(JGT_X, r2, r7, 8, 0),   // if r2 > data_end goto pass
        insn(LDX_H, r3, r6, 12, 0),  // the ethertype
        insn(JNE_K, r3, 0, 6, 0xdd86),
        insn(LDX_B, r3, r6, 20, 0), // IPv6 next header
        insn(JNE_K, r3, 0, 4, 6),
        insn(LDX_H, r3, r6, 56, 0), // TCP destination port
        insn(JNE_K, r3, 0, 2, 0x409c),
        insn(MOV64_K, r0, 0, 0, XDP_DROP),
        insn(EXIT, 0, 0, 0, 0),
        insn(MOV64_K, r0, 0, 0, XDP_PASS), // pass:
        insn(EXIT, 0, 0, 0, 0),
    ]
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to the fields we set (the kernel zero-fills the
/// rest of a shorter attribute).
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `union bpf_attr` for `BPF_PROG_TEST_RUN`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

/// `struct xdp_md`, the context a test run passes in: frame offsets and the ingress
/// interface.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed `bpf_attr` prefix of the size we pass;
    // the kernel reads it and writes back only inside it.
    let ret =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<T>()) };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The live-frame flood generator (see the [module docs](self)): a loaded generator
/// program. Share it between threads by reference; each thread runs its own test runs.
pub struct LiveGenerator {
    prog: OwnedFd,
}

impl LiveGenerator {
    /// Loads the generator program.
    ///
    /// # Errors
    /// If the kernel refuses it (not root; the verifier's log is in the error).
    pub fn load() -> anyhow::Result<Self> {
        Ok(Self {
            prog: load_xdp(&generator_program(), *b"fw_flood_gen\0\0\0\0")?,
        })
    }

    /// Loads the SYN generator: as [`LiveGenerator::load`], for frames of
    /// [`LiveGenerator::syn_frame`].
    ///
    /// # Errors
    /// As [`LiveGenerator::load`].
    /// `template` is the frame of [`LiveGenerator::syn_frame`] the program rewrites every
    /// frame from, two bytes of padding after it (see [`syn_generator_program`]); send that
    /// frame too.
    pub fn load_syn(template: &[u8]) -> anyhow::Result<Self> {
        Ok(Self {
            prog: load_xdp(
                &syn_generator_program(template)?,
                *b"fw_syn_gen\0\0\0\0\0\0",
            )?,
        })
    }

    /// The SYN the SYN generator sends copies of: Ethernet from `src_mac` to `dst_mac`, IPv6
    /// from [`SPOOFED_V6_PREFIX`] with a zero interface identifier to `dst`, TCP SYN from port
    /// 40000 to `dst_port` with Linux's options (MSS, SACK permitted, timestamp, no-op,
    /// window scale), its sequence and acknowledgment numbers all ones (the program writes
    /// the identifier's complement there), its checksum computed over all of it.
    ///
    /// # Errors
    /// If the frame cannot be built.
    pub fn syn_frame(
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        dst: Ipv6Addr,
        dst_port: u16,
    ) -> anyhow::Result<Vec<u8>> {
        use etherparse::TcpOptionElement as Opt;
        let [p0, p1, p2, p3] = SPOOFED_V6_PREFIX;
        let src = Ipv6Addr::new(p0, p1, p2, p3, 0, 0, 0, 0);
        let mut tcp = etherparse::TcpHeader::new(40_000, dst_port, u32::MAX, 64_240);
        tcp.syn = true;
        tcp.acknowledgment_number = u32::MAX;
        tcp.set_options(&[
            Opt::MaximumSegmentSize(1440),
            Opt::SelectiveAcknowledgementPermitted,
            Opt::Timestamp(1_000, 0),
            Opt::Noop,
            Opt::WindowScale(7),
        ])
        .map_err(|e| anyhow::anyhow!("the SYN's options: {e:?}"))?;
        let builder = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv6(src.octets(), dst.octets(), 64)
            .tcp_header(tcp);
        let mut frame = Vec::with_capacity(builder.size(0));
        builder
            .write(&mut frame, &[])
            .context("cannot build the SYN")?;
        ensure!(
            frame.len() == SYN_FRAME_LEN,
            "the SYN has {} bytes",
            frame.len()
        );
        Ok(frame)
    }

    /// The frame the generator sends copies of: Ethernet from `src_mac` to `dst_mac`, IPv6
    /// from [`SPOOFED_V6_PREFIX`] with a zero interface identifier (which the program
    /// overwrites) to `dst`, UDP from port 40000 to `dst_port` with 8 bytes of `0xff`
    /// payload (which the program overwrites with the identifier's complement), its checksum
    /// computed over all of it. [`FRAME_LEN`] bytes.
    ///
    /// # Errors
    /// If the frame cannot be built.
    pub fn frame(
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        dst: Ipv6Addr,
        dst_port: u16,
    ) -> anyhow::Result<Vec<u8>> {
        let [p0, p1, p2, p3] = SPOOFED_V6_PREFIX;
        let src = Ipv6Addr::new(p0, p1, p2, p3, 0, 0, 0, 0);
        let builder = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv6(src.octets(), dst.octets(), 64)
            .udp(40_000, dst_port);
        let payload = [0xffu8; 8];
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        builder
            .write(&mut frame, &payload)
            .context("cannot build the generator frame")?;
        ensure!(
            frame.len() == FRAME_LEN,
            "the frame has {} bytes",
            frame.len()
        );
        Ok(frame)
    }

    /// Sends `repeat` copies of `frame`, each with a new random source (see
    /// [`generator_program`]), out of interface `ifindex` of the calling thread's network
    /// namespace, in batches of `batch` (at most [`MAX_BATCH`]). Runs on the calling CPU,
    /// and so does the receive side of a veth peer (its NAPI poll runs from the softirq that
    /// the transmit raises). Returns the time the kernel took (it bounds the run between
    /// batches with `need_resched()`, but not otherwise: size `repeat` for the time wanted).
    ///
    /// # Errors
    /// If the kernel refuses the run (no such interface, or a kernel without live frames).
    pub fn send(
        &self,
        ifindex: u32,
        frame: &[u8],
        repeat: u32,
        batch: u32,
    ) -> anyhow::Result<Duration> {
        let len = u32::try_from(frame.len()).context("frame length")?;
        // Live frames take the frame from data_in and want the context's end offset to be
        // the frame's length (`xdp_convert_md_to_buff()`).
        let ctx = XdpMd {
            data_end: len,
            ingress_ifindex: ifindex,
            ..XdpMd::default()
        };
        let mut attr = TestRunAttr {
            prog_fd: u32::try_from(self.prog.as_raw_fd()).context("fd")?,
            data_size_in: len,
            data_in: frame.as_ptr() as u64,
            repeat,
            ctx_size_in: u32::try_from(size_of::<XdpMd>()).context("ctx size")?,
            ctx_in: std::ptr::from_ref(&ctx) as u64,
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: batch,
            ..TestRunAttr::default()
        };
        sys_bpf(BPF_PROG_TEST_RUN, &mut attr)
            .context("BPF_PROG_TEST_RUN with live frames failed (Linux 5.18+ and root needed)")?;
        // The kernel reports the mean time per repetition.
        Ok(Duration::from_nanos(
            u64::from(attr.duration) * u64::from(repeat),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one's-complement sum of the UDP pseudo-header and datagram of an IPv6 frame:
    /// 0xffff when its checksum is right.
    fn udp6_sum(frame: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut add = |bytes: &[u8]| {
            for pair in bytes.chunks(2) {
                let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
                sum += u32::from(word);
            }
        };
        add(&frame[22..54]); // source and destination
        let udp = &frame[54..];
        add(&u32::try_from(udp.len()).unwrap().to_be_bytes());
        add(&[0, 0, 0, 17]);
        add(udp);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        u16::try_from(sum).unwrap()
    }

    #[test]
    fn the_rewritten_frames_keep_a_valid_udp_checksum() {
        let mut frame = LiveGenerator::frame(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            "2001:2::1".parse().unwrap(),
            9,
        )
        .unwrap();
        assert_eq!(udp6_sum(&frame), 0xffff, "the template's checksum is right");
        let iid = SOURCE_IID_OFFSET as usize;
        let payload = PAYLOAD_OFFSET as usize;
        for (a, b) in [(0u32, 0u32), (0xdead_beef, 0x0123_4567), (u32::MAX, 1)] {
            // What the program does, with its little-endian stores.
            frame[iid..iid + 4].copy_from_slice(&a.to_le_bytes());
            frame[payload..payload + 4].copy_from_slice(&(!a).to_le_bytes());
            frame[iid + 4..iid + 8].copy_from_slice(&b.to_le_bytes());
            frame[payload + 4..payload + 8].copy_from_slice(&(!b).to_le_bytes());
            assert_eq!(
                udp6_sum(&frame),
                0xffff,
                "a source of {a:#x}{b:08x} must keep the checksum right"
            );
            let src: [u8; 16] = frame[22..38].try_into().unwrap();
            let [p0, p1, p2, p3] = SPOOFED_V6_PREFIX;
            let prefix = Ipv6Addr::new(p0, p1, p2, p3, 0, 0, 0, 0).octets();
            assert_eq!(src[..8], prefix[..8], "the source stays in its /64");
        }
    }

    #[test]
    fn the_generator_jumps_land_on_the_drop_path() {
        let program = generator_program();
        let (at, jump) = program
            .iter()
            .enumerate()
            .find(|(_, i)| i.code == 0x2d)
            .unwrap();
        let target = at + 1 + usize::try_from(jump.off).unwrap();
        assert_eq!(
            program[target].imm, XDP_DROP,
            "the bounds check jumps to the drop path"
        );
        assert_eq!(target + 2, program.len(), "the drop path ends the program");
    }

    #[test]
    fn trafgen_statistics_parse() {
        assert_eq!(outgoing("     600000 packets outgoing"), Some(600_000));
        assert_eq!(outgoing("  32400000 bytes outgoing"), None);
        assert_eq!(outgoing("Running! Hang up with ^C!"), None);
    }

    #[test]
    fn distinct_draws_approach_the_space() {
        assert!((expected_distinct(1000, 1) - 1.0).abs() < 0.001);
        assert!(expected_distinct(SPOOFED_V4_SPACE, 10 * SPOOFED_V4_SPACE) > 0.9999 * 130_560.0);
    }

    #[test]
    fn the_query_lookalike_has_a_querys_length() {
        let elements = udp_query_lookalike();
        assert!(
            elements.starts_with("\"query \", dinc(0x31, 0x39)"),
            "{elements}"
        );
        // "query " and three digits, then the padding: 48 bytes in all, as a user's query.
        assert!(elements.ends_with("fill(0x20, 39)"), "{elements}");
    }

    #[test]
    fn configurations_name_the_lab_ranges() {
        let syn = syn_flood_v4("aa:bb:cc:dd:ee:ff", Ipv4Addr::new(198, 18, 0, 1));
        assert!(syn.contains("sa[1]=drnd(18, 19)") && syn.contains("sa[2]=drnd(1, 255)"));
        let udp = udp_rotation_v4(
            "aa:bb:cc:dd:ee:ff",
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(198, 19, 7, 0),
            9,
        );
        assert!(udp.contains("sa=198.19.7.0, sa[3]=dinc()"));
        let v6 = udp_random_v6("aa:bb:cc:dd:ee:ff", "2001:2::1".parse().unwrap(), 9);
        assert!(v6.contains("sa=2001:2:0:1::1, sa[8:4]=drnd(), sa[12:4]=drnd()"));
    }
}
