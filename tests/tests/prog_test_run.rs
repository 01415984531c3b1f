//! The real XDP program, loaded into this kernel and run with `BPF_PROG_TEST_RUN` on crafted
//! frames: parsing of every header case, rate limits, blocks and their expiry, monitor mode,
//! counters and block events. Time comes from the test clock (`FW_TEST_CLOCK`), so rates and
//! expiry are deterministic.

#![expect(
    clippy::large_types_passed_by_value,
    reason = "limit changes are built inline at each call; clarity over a 288-byte copy"
)]

use aya::{
    maps::{MapData, RingBuf},
    programs::{TestRun as _, TestRunOptions},
};
use etherparse::{PacketBuilder, VlanId};
use filter_common::{
    AFTER_RULES_PROGRAM_NAME, BlockEvent, Class, Counter, LimitKind, LimitsConfig, Outcome,
    PROGRAM_NAME, RULES_PROGRAM_NAME, SYN_COOKIE_PROGRAM_NAME, SourceKey, SourceState, map_names,
    xdp_action::{DROP as XDP_DROP, PASS as XDP_PASS},
};
use floodwall::{
    events,
    limits::{Burst, ClassName, FilterMode, Limits, LimitsChange, Rate, ScopeName},
    lists::ListKind,
    loader::{self, LoadOptions, Loaded},
};
use floodwall_tests::privileged;

const SEC: u64 = 1_000_000_000;
/// The test clock starts here; any non-zero time works.
const START_NS: u64 = 1_000 * SEC;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const SERVER4: [u8; 4] = [198, 18, 0, 1];
const SERVER6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const ATTACKER4: [u8; 4] = [198, 18, 0, 10];
const OTHER4: [u8; 4] = [198, 18, 0, 11];
const ATTACKER6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];

/// Ethernet + IPv4 header lengths, where the IPv4 header and L4 start in a plain frame.
const ETH_LEN: usize = 14;
const IP4_LEN: usize = 20;
const IP6_LEN: usize = 40;

/// The program loaded with the test clock, its maps, and the current test time.
struct Harness {
    loaded: Loaded,
    limits: Limits,
    now_ns: u64,
    events: Option<RingBuf<MapData>>,
}

impl Harness {
    fn new(change: LimitsChange) -> Self {
        Self::loaded(change, true)
    }

    /// The harness, with the rules stage's programs unless `without_rules`.
    fn loaded(change: LimitsChange, without_rules: bool) -> Self {
        Self::loaded_as(change, &Self::options(without_rules))
    }

    /// How the harness loads the object.
    fn options(without_rules: bool) -> LoadOptions {
        LoadOptions {
            max_sources: 4096,
            test_clock: true,
            // Small tables: every test loads its own program, and the source table and the
            // prefixes' LRU map are allocated in full at load time.
            max_prefixes: 4096,
            // The rules' tests load the rules stage (see `rules`); the others spare the
            // verifier's time (most of a load's).
            without_rules,
            ..LoadOptions::default()
        }
    }

    /// The harness, loaded with `options`.
    fn loaded_as(change: LimitsChange, options: &LoadOptions) -> Self {
        let loaded = loader::load(options).expect("the XDP program must load with the test clock");
        let limits = Limits::default().apply(&change).expect("valid test limits");
        let mut harness = Self {
            loaded,
            limits,
            now_ns: START_NS,
            events: None,
        };
        harness.write_limits();
        let ring = harness
            .loaded
            .ebpf
            .take_map(map_names::EVENTS)
            .expect("events map");
        harness.events = Some(RingBuf::try_from(ring).expect("events map is a ring buffer"));
        harness
    }

    fn write_limits(&self) {
        let config = LimitsConfig {
            test_now_ns: self.now_ns,
            ..self.limits.to_kernel()
        };
        self.loaded
            .maps
            .write_limits(&config)
            .expect("write limits");
    }

    fn change_limits(&mut self, change: LimitsChange) {
        self.limits = self.limits.apply(&change).expect("valid test limits");
        self.write_limits();
    }

    fn advance(&mut self, ns: u64) {
        self.now_ns += ns;
        self.write_limits();
    }

    fn run(&mut self, frame: &[u8]) -> u32 {
        let program = loader::xdp_program(&mut self.loaded.ebpf, PROGRAM_NAME).expect("program");
        program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..TestRunOptions::new()
            })
            .expect("BPF_PROG_TEST_RUN must run the program")
            .return_value
    }

    fn run_n(&mut self, frame: &[u8], n: usize) -> Vec<u32> {
        (0..n).map(|_| self.run(frame)).collect()
    }

    fn count(&self, outcome: Outcome) -> Counter {
        self.loaded.maps.totals().expect("counters").get(outcome)
    }

    fn packets(&self, outcome: Outcome) -> u64 {
        self.count(outcome).packets
    }

    fn state(&self, key: SourceKey) -> Option<SourceState> {
        self.loaded.maps.source(&key).expect("source lookup")
    }

    fn events(&mut self) -> Vec<BlockEvent> {
        let ring = self.events.as_mut().expect("ring");
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            out.push(events::decode(&item).expect("a whole block event"));
        }
        out
    }
}

/// Per-source limits with every source admitted to the table at its first packet (the
/// admission sketch has its own tests).
fn limits(pps: u64, burst: u64) -> LimitsChange {
    LimitsChange {
        pps: Some(Rate::PerSecond(pps)),
        burst_packets: Some(Burst::Exactly(burst)),
        block_for_ms: Some(10_000),
        admit_packets: Some(1),
        ..LimitsChange::default()
    }
}

fn build(builder: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    builder()
}

fn udp4(src: [u8; 4]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4(src, SERVER4, 64)
        .udp(40_000, 53);
    let mut frame = Vec::new();
    b.write(&mut frame, &[0u8; 18]).expect("build frame");
    frame
}

fn udp6(src: [u8; 16]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv6(src, SERVER6, 64)
        .udp(40_000, 53);
    let mut frame = Vec::new();
    b.write(&mut frame, &[0u8; 18]).expect("build frame");
    frame
}

/// Inserts `options` (a multiple of 4 bytes) after the fixed IPv4 header and fixes IHL and
/// total length (checksums do not matter to the program).
fn with_ipv4_options(mut frame: Vec<u8>, options: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let ip = ETH_LEN;
    let ihl = frame[ip] & 0x0f;
    frame[ip] = 0x40 | (ihl + u8::try_from(options.len() / 4).expect("small"));
    let tot = u16::from_be_bytes([frame[ip + 2], frame[ip + 3]])
        + u16::try_from(options.len()).expect("small");
    frame[ip + 2..ip + 4].copy_from_slice(&tot.to_be_bytes());
    frame.splice(ip + IP4_LEN..ip + IP4_LEN, options.iter().copied());
    frame
}

/// Inserts IPv6 extension headers (each `(type, bytes)`, already sized) before L4.
fn with_ipv6_ext(mut frame: Vec<u8>, headers: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let ip = ETH_LEN;
    let l4_proto = frame[ip + 6];
    let mut chain = Vec::new();
    for (i, (_, bytes)) in headers.iter().enumerate() {
        let mut h = bytes.clone();
        h[0] = headers.get(i + 1).map_or(l4_proto, |next| next.0);
        chain.extend(h);
    }
    frame[ip + 6] = headers[0].0;
    let plen = u16::from_be_bytes([frame[ip + 4], frame[ip + 5]])
        + u16::try_from(chain.len()).expect("small");
    frame[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
    frame.splice(ip + IP6_LEN..ip + IP6_LEN, chain);
    frame
}

/// An 8-byte options-style extension header (hop-by-hop, destination options, routing).
fn ext8() -> Vec<u8> {
    vec![0, 0, 1, 4, 0, 0, 0, 0] // next (filled in), length 0, PadN padding
}

fn frag6(offset_units: u16, more: bool) -> Vec<u8> {
    let field = (offset_units << 3) | u16::from(more);
    let [a, b] = field.to_be_bytes();
    vec![0, 0, a, b, 0, 0, 0, 1]
}

fn set_ipv4_fragment(frame: &mut [u8], offset_units: u16, more: bool) {
    let field = (offset_units & 0x1fff) | if more { 0x2000 } else { 0 };
    frame[ETH_LEN + 6..ETH_LEN + 8].copy_from_slice(&field.to_be_bytes());
}

#[test]
fn ipv4_udp_under_its_limit_passes_and_is_tracked() {
    if !privileged("ipv4_udp_under_its_limit_passes_and_is_tracked") {
        return;
    }
    let mut h = Harness::new(limits(100, 10));
    let frame = udp4(ATTACKER4);
    assert_eq!(
        h.run(&frame),
        XDP_PASS,
        "a fresh source under its limit must pass"
    );
    assert_eq!(
        h.count(Outcome::Passed),
        Counter {
            packets: 1,
            bytes: frame.len() as u64
        }
    );
    let state = h
        .state(SourceKey::from_ipv4(ATTACKER4))
        .expect("the source must be tracked");
    assert_eq!(state.window_packets, 1);
    assert_eq!(state.blocked_until_ns, 0);
}

#[test]
fn burst_then_rate_limit_then_block_with_an_event() {
    if !privileged("burst_then_rate_limit_then_block_with_an_event") {
        return;
    }
    let mut h = Harness::new(limits(100, 10));
    let frame = udp4(ATTACKER4);
    let verdicts = h.run_n(&frame, 12);
    assert_eq!(
        verdicts[..10],
        [XDP_PASS; 10],
        "the burst of 10 packets must pass at once"
    );
    assert_eq!(verdicts[10], XDP_DROP, "the 11th packet exceeds the burst");
    assert_eq!(verdicts[11], XDP_DROP, "the source is blocked now");
    assert_eq!(h.packets(Outcome::Passed), 10);
    assert_eq!(
        h.packets(Outcome::DroppedRateLimit),
        1,
        "one packet crossed the limit"
    );
    assert_eq!(
        h.packets(Outcome::DroppedBlocked),
        1,
        "later packets hit the block"
    );
    let state = h.state(SourceKey::from_ipv4(ATTACKER4)).expect("tracked");
    assert_eq!(
        state.blocked_until_ns,
        START_NS + 10 * SEC,
        "blocked for block-for (10 s)"
    );

    let events = h.events();
    assert_eq!(events.len(), 1, "exactly one block event per block");
    let e = events[0];
    assert_eq!(e.addr, SourceKey::from_ipv4(ATTACKER4).addr);
    assert_eq!(LimitKind::try_from(e.limit_kind), Ok(LimitKind::Packets));
    assert_eq!(e.blocked_until_ns, START_NS + 10 * SEC);
    assert_eq!(
        e.window_packets, 11,
        "the event carries the window the rate is computed from"
    );

    // Other sources are not affected by this block.
    assert_eq!(
        h.run(&udp4(OTHER4)),
        XDP_PASS,
        "another source must not suffer from the block"
    );
}

#[test]
fn a_source_at_its_sustained_rate_is_never_dropped() {
    if !privileged("a_source_at_its_sustained_rate_is_never_dropped") {
        return;
    }
    let mut h = Harness::new(limits(100, 5));
    let frame = udp4(ATTACKER4);
    // Use the whole burst, then send exactly at the rate (one packet per 10 ms) for 30 s.
    assert_eq!(h.run_n(&frame, 5), [XDP_PASS; 5]);
    for i in 0..3_000 {
        h.advance(10_000_000);
        assert_eq!(
            h.run(&frame),
            XDP_PASS,
            "packet {i} at exactly 100 pps must pass"
        );
    }
    assert_eq!(
        h.packets(Outcome::DroppedRateLimit) + h.packets(Outcome::DroppedBlocked),
        0
    );
    // With the burst used up, anything faster than the rate is over the limit at once.
    h.advance(9_000_000);
    assert_eq!(
        h.run(&frame),
        XDP_DROP,
        "1 ms early with no burst left is over the limit"
    );
    // After the block and a pause the burst is full again; 11% over the rate, it lasts
    // until the burst is used: after k packets the TAT runs k + 9 ms ahead, > 50 ms at k = 42.
    h.advance(20 * SEC);
    let mut dropped_at = None;
    for i in 0..100 {
        h.advance(9_000_000);
        if h.run(&frame) == XDP_DROP {
            dropped_at = Some(i);
            break;
        }
    }
    let i = dropped_at.expect("a source 11% over its rate must be dropped eventually");
    assert_eq!(
        i, 41,
        "the 42nd packet 1 ms early exceeds a burst of 5 at 100 pps"
    );
}

#[test]
fn a_block_expires_by_itself_and_the_source_starts_afresh() {
    if !privileged("a_block_expires_by_itself_and_the_source_starts_afresh") {
        return;
    }
    let mut h = Harness::new(LimitsChange {
        block_for_ms: Some(2_000),
        ..limits(100, 3)
    });
    let frame = udp4(ATTACKER4);
    assert_eq!(h.run_n(&frame, 4), [XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP]);
    h.advance(2 * SEC - 1);
    assert_eq!(
        h.run(&frame),
        XDP_DROP,
        "still blocked 1 ns before the block ends"
    );
    h.advance(1);
    assert_eq!(
        h.run_n(&frame, 3),
        [XDP_PASS; 3],
        "after the block a full burst passes again"
    );
    assert_eq!(
        h.state(SourceKey::from_ipv4(ATTACKER4))
            .expect("tracked")
            .blocked_until_ns,
        0
    );
    assert_eq!(h.run(&frame), XDP_DROP, "and the limit still holds");
}

#[test]
fn the_byte_rate_is_limited_too() {
    if !privileged("the_byte_rate_is_limited_too") {
        return;
    }
    // 8000 bytes/s with a burst of 2000 bytes; no packet limit.
    let mut h = Harness::new(LimitsChange {
        pps: Some(Rate::Unlimited),
        bps: Some(Rate::PerSecond(64_000)),
        burst_bytes: Some(Burst::Exactly(2_000)),
        admit_packets: Some(1),
        ..LimitsChange::default()
    });
    let frame = udp4(ATTACKER4); // 60 bytes
    assert_eq!(frame.len(), 60);
    let verdicts = h.run_n(&frame, 40);
    let passed = verdicts.iter().filter(|&&v| v == XDP_PASS).count();
    assert_eq!(passed, 33, "2000 bytes of burst is 33 frames of 60 bytes");
    let events = h.events();
    assert_eq!(
        LimitKind::try_from(events[0].limit_kind),
        Ok(LimitKind::Bytes),
        "the byte limit was the one exceeded"
    );
}

#[test]
fn monitor_mode_counts_what_it_would_drop_and_drops_nothing() {
    if !privileged("monitor_mode_counts_what_it_would_drop_and_drops_nothing") {
        return;
    }
    let mut h = Harness::new(LimitsChange {
        mode: Some(FilterMode::Monitor),
        ..limits(100, 10)
    });
    let frame = udp4(ATTACKER4);
    assert_eq!(
        h.run_n(&frame, 15),
        [XDP_PASS; 15],
        "monitor mode never drops"
    );
    assert_eq!(h.packets(Outcome::Passed), 10);
    assert_eq!(h.packets(Outcome::MonitorRateLimit), 1);
    assert_eq!(h.packets(Outcome::MonitorBlocked), 4);
    assert_eq!(
        h.packets(Outcome::DroppedRateLimit) + h.packets(Outcome::DroppedBlocked),
        0
    );
    // Switching to enforce takes effect on the next packet: the source is marked blocked.
    h.change_limits(LimitsChange {
        mode: Some(FilterMode::Enforce),
        ..LimitsChange::default()
    });
    assert_eq!(
        h.run(&frame),
        XDP_DROP,
        "enforce mode drops the source monitor mode blocked"
    );
}

#[test]
fn a_limit_change_applies_to_the_next_packet() {
    if !privileged("a_limit_change_applies_to_the_next_packet") {
        return;
    }
    let mut h = Harness::new(limits(1_000, 1_000));
    let frame = udp4(ATTACKER4);
    assert_eq!(h.run_n(&frame, 50), [XDP_PASS; 50]);
    // 50 packets put the TAT 50 ms ahead; at 100 pps one more costs 10 ms, more than a
    // burst of 5 (50 ms) allows.
    h.change_limits(limits(100, 5));
    assert_eq!(
        h.run(&frame),
        XDP_DROP,
        "the new, lower limit applies to the very next packet"
    );
}

#[test]
fn ipv6_sources_are_limited_by_their_own_address() {
    if !privileged("ipv6_sources_are_limited_by_their_own_address") {
        return;
    }
    let mut h = Harness::new(limits(100, 4));
    let frame = udp6(ATTACKER6);
    assert_eq!(
        h.run_n(&frame, 6),
        [XDP_PASS, XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP]
    );
    let state = h
        .state(SourceKey::from_ipv6(ATTACKER6))
        .expect("the IPv6 source must be tracked");
    assert!(state.blocked_until_ns > START_NS);
    assert_eq!(h.events()[0].addr, ATTACKER6);
}

#[test]
fn the_limit_holds_across_cpus() {
    if !privileged("the_limit_holds_across_cpus") {
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(
        cpus >= 2,
        "this test needs two CPUs to mean anything; the machine has {cpus}"
    );
    let mut h = Harness::new(limits(100, 20));
    let frame = udp4(ATTACKER4);
    let mut passed = 0;
    // Alternate the CPU the program runs on (BPF_PROG_TEST_RUN runs on the caller's CPU).
    for i in 0..40 {
        let _cpu = pin_to_cpu(i % 2);
        passed += usize::from(h.run(&frame) == XDP_PASS);
    }
    assert_eq!(
        passed, 20,
        "a burst of 20 must hold in total over two CPUs, not per CPU"
    );
}

/// Runs this thread on `cpu` until the guard is dropped, and on every CPU again then, also
/// when the test fails (`BPF_PROG_TEST_RUN` runs the program on the caller's CPU, so per-CPU
/// state is that CPU's).
fn pin_to_cpu(cpu: usize) -> OnCpu {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it; pid 0 is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set),
            0,
            "pin to CPU {cpu}"
        );
    }
    OnCpu
}

/// See [`pin_to_cpu`].
#[must_use = "the thread goes back to every CPU when this is dropped"]
struct OnCpu;

impl Drop for OnCpu {
    fn drop(&mut self) {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        // SAFETY: as in `pin_to_cpu`.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for cpu in 0..cpus {
                libc::CPU_SET(cpu, &mut set);
            }
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set);
        }
    }
}

/// Runs one frame from a source the table does not know, and returns the verdict, the one
/// outcome it was counted under, and whether its source is tracked afterwards.
fn outcome_of(h: &mut Harness, frame: &[u8], key: Option<SourceKey>) -> (u32, Outcome, bool) {
    for k in [
        SourceKey::from_ipv4(ATTACKER4),
        SourceKey::from_ipv6(ATTACKER6),
    ] {
        h.loaded.maps.remove_source(&k).expect("forget the source");
    }
    let before = h.loaded.maps.totals().expect("counters");
    let verdict = h.run(frame);
    let after = h.loaded.maps.totals().expect("counters");
    let counted: Vec<Outcome> = Outcome::ALL
        .into_iter()
        .filter(|&o| after.get(o).packets != before.get(o).packets)
        .collect();
    assert_eq!(
        counted.len(),
        1,
        "exactly one outcome counted, got {counted:?}"
    );
    let tracked = key.is_some_and(|k| h.state(k).is_some());
    (verdict, counted[0], tracked)
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one table of cases, read top to bottom"
)]
fn parsing_cases_get_the_right_outcome() {
    if !privileged("parsing_cases_get_the_right_outcome") {
        return;
    }
    let v4 = SourceKey::from_ipv4(ATTACKER4);
    let v6 = SourceKey::from_ipv6(ATTACKER6);
    let plain = udp4(ATTACKER4);

    let tcp_syn = build(|| {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .ipv4(ATTACKER4, SERVER4, 64)
            .tcp(40_000, 80, 1, 64_240)
            .syn();
        let mut f = Vec::new();
        b.write(&mut f, &[]).expect("frame");
        f
    });
    let icmp = build(|| {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .ipv4(ATTACKER4, SERVER4, 64)
            .icmpv4_echo_request(1, 1);
        let mut f = Vec::new();
        b.write(&mut f, &[0u8; 8]).expect("frame");
        f
    });
    let icmp6 = build(|| {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .ipv6(ATTACKER6, SERVER6, 64)
            .icmpv6_echo_request(1, 1);
        let mut f = Vec::new();
        b.write(&mut f, &[0u8; 8]).expect("frame");
        f
    });
    let vlan1 = build(|| {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .single_vlan(VlanId::try_new(10).expect("vid"))
            .ipv4(ATTACKER4, SERVER4, 64)
            .udp(40_000, 53);
        let mut f = Vec::new();
        b.write(&mut f, &[0u8; 18]).expect("frame");
        f
    });
    let vlan2 = build(|| {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .double_vlan(
                VlanId::try_new(100).expect("vid"),
                VlanId::try_new(10).expect("vid"),
            )
            .ipv6(ATTACKER6, SERVER6, 64)
            .udp(40_000, 53);
        let mut f = Vec::new();
        b.write(&mut f, &[0u8; 18]).expect("frame");
        f
    });
    // A third tag: insert another 802.1Q tag after the two of vlan2.
    let mut vlan3 = vlan2.clone();
    vlan3.splice(ETH_LEN + 8..ETH_LEN + 8, [0x00, 0x05, 0x81, 0x00]);
    vlan3[ETH_LEN + 6..ETH_LEN + 8].copy_from_slice(&[0x81, 0x00]);

    let arp = {
        let mut f = vec![0u8; 42];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&CLIENT_MAC);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        f
    };

    let mut truncated_ipv4 = plain[..ETH_LEN + 10].to_vec();
    truncated_ipv4.resize(ETH_LEN + 10, 0);
    let mut bad_ihl = plain.clone();
    bad_ihl[ETH_LEN] = 0x44; // IHL 4 words < 20 bytes
    let mut bad_version = plain.clone();
    bad_version[ETH_LEN] = 0x55;
    let options = with_ipv4_options(plain.clone(), &[1, 1, 1, 0]); // NOP NOP NOP EOL
    let truncated_options = {
        let f = with_ipv4_options(plain.clone(), &[1; 40]); // IHL 15: 60-byte header
        f[..ETH_LEN + 40].to_vec() // the frame ends inside the options
    };
    let truncated_udp = plain[..ETH_LEN + IP4_LEN + 4].to_vec();
    let non_first_fragment = {
        let mut f = plain[..ETH_LEN + IP4_LEN + 4].to_vec(); // 4 payload bytes: no UDP header
        set_ipv4_fragment(&mut f, 100, false);
        f
    };
    let first_fragment_truncated = {
        let mut f = plain[..ETH_LEN + IP4_LEN + 4].to_vec();
        set_ipv4_fragment(&mut f, 0, true);
        f
    };
    let tcp_bad_doff = {
        let mut f = tcp_syn.clone();
        f[ETH_LEN + IP4_LEN + 12] = 0x40; // data offset 4 words < 20 bytes
        f
    };
    let tcp_truncated_options = {
        let mut f = tcp_syn.clone();
        f[ETH_LEN + IP4_LEN + 12] = 0xf0; // data offset 60 bytes, frame has 20
        f
    };
    let truncated_icmp = icmp[..ETH_LEN + IP4_LEN + 4].to_vec();
    let v6_plain = udp6(ATTACKER6);
    let truncated_ipv6 = v6_plain[..ETH_LEN + 30].to_vec();
    let v6_ext = with_ipv6_ext(v6_plain.clone(), &[(0, ext8()), (60, ext8()), (43, ext8())]);
    let v6_frag_first = with_ipv6_ext(v6_plain.clone(), &[(0, ext8()), (44, frag6(0, true))]);
    let v6_frag_later = {
        let f = with_ipv6_ext(v6_plain.clone(), &[(44, frag6(100, false))]);
        f[..ETH_LEN + IP6_LEN + 8 + 2].to_vec() // payload too short for UDP: fine, no L4 there
    };
    let v6_too_many_ext = with_ipv6_ext(
        v6_plain.clone(),
        &[
            (0, ext8()),
            (60, ext8()),
            (60, ext8()),
            (60, ext8()),
            (60, ext8()),
            (60, ext8()),
            (60, ext8()),
        ],
    );
    // Six extension headers, the most the parser walks through: the transport after them is
    // still read.
    let v6_six_ext = with_ipv6_ext(
        v6_plain.clone(),
        &[
            (0, ext8()),
            (60, ext8()),
            (60, ext8()),
            (60, ext8()),
            (60, ext8()),
            (60, ext8()),
        ],
    );
    // A header cut short after a first-fragment header: still a fragment.
    let v6_frag_then_truncated = {
        let f = with_ipv6_ext(v6_plain.clone(), &[(44, frag6(0, true)), (60, ext8())]);
        f[..=ETH_LEN + IP6_LEN + 8].to_vec()
    };
    let v6_ext_truncated = {
        let f = with_ipv6_ext(v6_plain.clone(), &[(0, ext8())]);
        f[..=ETH_LEN + IP6_LEN].to_vec()
    };
    let mut bad_v6_version = v6_plain.clone();
    bad_v6_version[ETH_LEN] = 0x40;

    let cases: Vec<(&str, Vec<u8>, Outcome, Option<SourceKey>)> = vec![
        ("IPv4 UDP", plain.clone(), Outcome::Passed, Some(v4)),
        ("IPv4 TCP SYN", tcp_syn, Outcome::Passed, Some(v4)),
        ("IPv4 ICMP echo", icmp, Outcome::Passed, Some(v4)),
        ("IPv6 ICMPv6 echo", icmp6, Outcome::Passed, Some(v6)),
        ("one 802.1Q tag", vlan1, Outcome::Passed, Some(v4)),
        (
            "802.1ad + 802.1Q tags, IPv6",
            vlan2,
            Outcome::Passed,
            Some(v6),
        ),
        ("three VLAN tags", vlan3, Outcome::Malformed, None),
        ("ARP", arp, Outcome::NonIp, None),
        (
            "Ethernet header only",
            plain[..ETH_LEN].to_vec(),
            Outcome::Malformed,
            None,
        ),
        (
            "IPv4 header truncated",
            truncated_ipv4,
            Outcome::Malformed,
            None,
        ),
        ("IPv4 IHL below 5", bad_ihl, Outcome::Malformed, None),
        ("IP version 5", bad_version, Outcome::Malformed, None),
        ("IPv4 with options", options, Outcome::Passed, Some(v4)),
        (
            "IPv4 options truncated",
            truncated_options,
            Outcome::Malformed,
            None,
        ),
        (
            "UDP header truncated",
            truncated_udp,
            Outcome::Malformed,
            Some(v4),
        ),
        (
            "non-first IPv4 fragment",
            non_first_fragment,
            Outcome::Passed,
            Some(v4),
        ),
        (
            "first IPv4 fragment, UDP truncated",
            first_fragment_truncated,
            Outcome::Malformed,
            Some(v4),
        ),
        (
            "TCP data offset below 5",
            tcp_bad_doff,
            Outcome::Malformed,
            Some(v4),
        ),
        (
            "TCP options truncated",
            tcp_truncated_options,
            Outcome::Malformed,
            Some(v4),
        ),
        (
            "ICMP truncated",
            truncated_icmp,
            Outcome::Malformed,
            Some(v4),
        ),
        ("IPv6 UDP", v6_plain, Outcome::Passed, Some(v6)),
        (
            "IPv6 header truncated",
            truncated_ipv6,
            Outcome::Malformed,
            None,
        ),
        (
            "IPv6 version field 4",
            bad_v6_version,
            Outcome::Malformed,
            None,
        ),
        (
            "IPv6 hop-by-hop, dest options, routing",
            v6_ext,
            Outcome::Passed,
            Some(v6),
        ),
        (
            "IPv6 first fragment",
            v6_frag_first,
            Outcome::Passed,
            Some(v6),
        ),
        (
            "IPv6 non-first fragment",
            v6_frag_later,
            Outcome::Passed,
            Some(v6),
        ),
        (
            "IPv6 seven extension headers",
            v6_too_many_ext,
            Outcome::Malformed,
            Some(v6),
        ),
        (
            "IPv6 extension header truncated",
            v6_ext_truncated,
            Outcome::Malformed,
            Some(v6),
        ),
        (
            "IPv6 six extension headers",
            v6_six_ext,
            Outcome::Passed,
            Some(v6),
        ),
        (
            "IPv6 header cut short after a first-fragment header",
            v6_frag_then_truncated.clone(),
            Outcome::Malformed,
            Some(v6),
        ),
    ];
    // One program for every case: each case forgets the test sources first and looks at
    // what its one frame changed.
    let mut h = Harness::new(limits(100, 10));
    for (name, frame, expected, key) in cases {
        let (verdict, outcome, tracked) = outcome_of(&mut h, &frame, key);
        assert_eq!(verdict, XDP_PASS, "{name}: a single packet must pass");
        assert_eq!(outcome, expected, "{name}: outcome");
        assert_eq!(tracked, key.is_some(), "{name}: the source must be charged");
    }
    let before = class_packets(&h, Class::Fragment, Outcome::Malformed);
    outcome_of(&mut h, &v6_frag_then_truncated, Some(v6));
    assert_eq!(
        class_packets(&h, Class::Fragment, Outcome::Malformed),
        before + 1,
        "a header cut short after a fragment header is counted as a fragment"
    );
}

#[test]
fn malformed_packets_from_a_known_source_still_count_against_its_limit() {
    if !privileged("malformed_packets_from_a_known_source_still_count_against_its_limit") {
        return;
    }
    let mut h = Harness::new(limits(100, 5));
    let truncated_udp = udp4(ATTACKER4)[..ETH_LEN + IP4_LEN + 4].to_vec();
    let verdicts = h.run_n(&truncated_udp, 7);
    assert_eq!(
        verdicts,
        [
            XDP_PASS, XDP_PASS, XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP
        ],
        "truncation is no way around the limit"
    );
    assert_eq!(h.packets(Outcome::Malformed), 5);
}

fn tcp4(src: [u8; 4], syn: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC).ipv4(src, SERVER4, 64);
    let b = if syn {
        b.tcp(40_000, 80, 1, 64_240).syn()
    } else {
        b.tcp(40_000, 80, 1, 64_240).ack(1)
    };
    let mut frame = Vec::new();
    b.write(&mut frame, &[]).expect("build frame");
    frame
}

fn class_packets(h: &Harness, class: Class, outcome: Outcome) -> u64 {
    h.loaded
        .maps
        .totals()
        .expect("counters")
        .get_class(class, outcome)
        .packets
}

#[test]
fn packets_are_counted_by_class() {
    if !privileged("packets_are_counted_by_class") {
        return;
    }
    let mut h = Harness::new(limits(1_000, 1_000));
    let mut fragment = udp4(ATTACKER4);
    set_ipv4_fragment(&mut fragment, 0, true);
    let icmp = {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .ipv4(ATTACKER4, SERVER4, 64)
            .icmpv4_echo_request(1, 1);
        let mut f = Vec::new();
        b.write(&mut f, &[0u8; 8]).expect("frame");
        f
    };
    for (frame, class) in [
        (tcp4(ATTACKER4, true), Class::Syn),
        (tcp4(ATTACKER4, false), Class::Tcp),
        (udp4(ATTACKER4), Class::Udp),
        (icmp, Class::Icmp),
        (fragment, Class::Fragment),
    ] {
        assert_eq!(h.run(&frame), XDP_PASS);
        assert_eq!(
            class_packets(&h, class, Outcome::Passed),
            1,
            "one passed packet counted in class {}",
            class.name()
        );
    }
}

#[test]
fn a_class_limit_blocks_a_source_flooding_that_class() {
    if !privileged("a_class_limit_blocks_a_source_flooding_that_class") {
        return;
    }
    let mut change = limits(10_000, 10_000);
    change.class_pps[ClassName::Syn.index()] = Some(Rate::PerSecond(100));
    let mut h = Harness::new(change);
    let udp = udp4(ATTACKER4);
    assert_eq!(
        h.run_n(&udp, 150),
        [XDP_PASS; 150],
        "UDP is not held to the SYN limit"
    );
    let syn = tcp4(ATTACKER4, true);
    let verdicts = h.run_n(&syn, 101);
    assert_eq!(
        verdicts[..100],
        [XDP_PASS; 100],
        "a one-second burst of 100 SYNs passes"
    );
    assert_eq!(
        verdicts[100], XDP_DROP,
        "the 101st SYN exceeds the SYN limit"
    );
    assert_eq!(class_packets(&h, Class::Syn, Outcome::DroppedRateLimit), 1);
    let event = h.events()[0];
    assert_eq!(
        LimitKind::try_from(event.limit_kind),
        Ok(LimitKind::ClassPackets)
    );
    assert_eq!(Class::try_from(event.class), Ok(Class::Syn));
    assert_eq!(
        h.run(&udp),
        XDP_DROP,
        "the blocked source is blocked for every class"
    );
}

#[test]
fn a_class_in_monitor_mode_counts_but_passes() {
    if !privileged("a_class_in_monitor_mode_counts_but_passes") {
        return;
    }
    let mut change = limits(10_000, 10_000);
    change.class_pps[ClassName::Syn.index()] = Some(Rate::PerSecond(100));
    change.monitor_classes[ClassName::Syn.index()] = Some(true);
    let mut h = Harness::new(change);
    let syn = tcp4(ATTACKER4, true);
    assert_eq!(
        h.run_n(&syn, 120),
        [XDP_PASS; 120],
        "a monitored class never drops"
    );
    assert_eq!(class_packets(&h, Class::Syn, Outcome::MonitorRateLimit), 1);
    assert_eq!(class_packets(&h, Class::Syn, Outcome::MonitorBlocked), 19);
    // The source is marked blocked; its UDP (enforced) is dropped.
    assert_eq!(
        h.run(&udp4(ATTACKER4)),
        XDP_DROP,
        "other classes still enforce"
    );
}

/// A distinct source address per `i`, inside 198.18.0.0/15.
fn spoofed(i: u32) -> [u8; 4] {
    let [_, b, c, d] = i.to_be_bytes();
    [198, 18 + (b & 1), c, d]
}

#[test]
fn new_sources_are_admitted_only_after_a_few_packets() {
    if !privileged("new_sources_are_admitted_only_after_a_few_packets") {
        return;
    }
    let mut h = Harness::new(LimitsChange {
        admit_packets: Some(4),
        ..limits(100, 10)
    });
    let _cpu = pin_to_cpu(0); // the sketch is per CPU
    let frame = udp4(ATTACKER4);
    let key = SourceKey::from_ipv4(ATTACKER4);
    assert_eq!(h.run_n(&frame, 3), [XDP_PASS; 3]);
    assert!(
        h.state(key).is_none(),
        "three packets do not earn a table entry"
    );
    assert_eq!(h.run(&frame), XDP_PASS);
    assert!(
        h.state(key).is_some(),
        "the fourth packet admits the source"
    );
    // A random-source flood, one packet per source, leaves the table alone.
    for i in 0..5_000 {
        h.run(&udp4(spoofed(i + 1_000)));
    }
    let tracked = h.loaded.maps.all_sources().expect("walk").len();
    assert_eq!(
        tracked, 1,
        "5000 one-packet sources must not take table entries"
    );
}

#[test]
fn the_ceiling_caps_untracked_sources_and_spares_tracked_ones() {
    if !privileged("the_ceiling_caps_untracked_sources_and_spares_tracked_ones") {
        return;
    }
    let cpus = u64::from(floodwall::limits::online_cpus());
    let mut change = LimitsChange {
        admit_packets: Some(1_000_000),
        ..limits(10_000, 10_000)
    };
    change.ceiling_pps[ClassName::Udp.index()] = Some(Rate::PerSecond(20 * cpus));
    let mut h = Harness::new(change);
    let _cpu = pin_to_cpu(0); // the ceiling is shared out per CPU
    // A legitimate source that is already tracked.
    h.loaded
        .maps
        .put_source(&SourceKey::from_ipv4(OTHER4), &SourceState::default())
        .expect("put source");
    let verdicts: Vec<u32> = (0..40).map(|i| h.run(&udp4(spoofed(i + 1_000)))).collect();
    let passed = verdicts.iter().filter(|&&v| v == XDP_PASS).count();
    assert_eq!(
        passed, 20,
        "a ceiling of 20/s per CPU with a one-second burst lets 20 through"
    );
    assert_eq!(class_packets(&h, Class::Udp, Outcome::DroppedCeiling), 20);
    assert_eq!(
        h.run_n(&udp4(OTHER4), 50),
        [XDP_PASS; 50],
        "tracked sources ignore the ceiling"
    );
    assert_eq!(
        h.run(&tcp4(spoofed(99), false)),
        XDP_PASS,
        "other classes have their own ceiling"
    );
    // The ceiling refills with time: 50 ms at 20/s is one more packet.
    h.advance(50_000_000);
    assert_eq!(h.run(&udp4(spoofed(500))), XDP_PASS);
    assert_eq!(h.run(&udp4(spoofed(501))), XDP_DROP);
}

/// A harness with its list tries, and the presence bits the daemon would set.
fn with_lists(change: LimitsChange) -> (Harness, floodwall::lists::ListMaps) {
    let mut h = Harness::new(change);
    let lists = floodwall::lists::ListMaps::take(&mut h.loaded.ebpf).expect("list maps");
    (h, lists)
}

fn sync_presence(h: &Harness, lists: &floodwall::lists::ListMaps) {
    let bits = lists.nonempty().expect("presence").flag_bits();
    h.loaded.maps.set_list_presence(bits);
    h.write_limits();
}

fn prefixes(texts: &[&str]) -> Vec<floodwall::lists::Prefix> {
    texts.iter().map(|t| t.parse().expect("prefix")).collect()
}

#[test]
fn the_denylist_drops_and_counts_hits_per_entry() {
    if !privileged("the_denylist_drops_and_counts_hits_per_entry") {
        return;
    }
    let (mut h, lists) = with_lists(limits(100_000, 100_000));
    lists
        .add(
            ListKind::Deny,
            &prefixes(&["198.18.0.0/28", "2001:2::/120"]),
            None,
        )
        .expect("add");
    sync_presence(&h, &lists);
    assert_eq!(
        h.run_n(&udp4(ATTACKER4), 3),
        [XDP_DROP; 3],
        "198.18.0.10 is in 198.18.0.0/28"
    );
    assert_eq!(
        h.run_n(&udp6(ATTACKER6), 2),
        [XDP_DROP; 2],
        "2001:2::10 is in 2001:2::/120"
    );
    assert_eq!(
        h.run(&udp4([198, 18, 0, 20])),
        XDP_PASS,
        "198.18.0.20 is outside the /28"
    );
    assert_eq!(h.packets(Outcome::DroppedDenied), 5);
    let entries = lists.list(ListKind::Deny, h.now_ns).expect("list");
    let hits: Vec<(String, u64)> = entries
        .iter()
        .map(|e| (e.prefix.to_string(), e.hit_packets))
        .collect();
    assert_eq!(
        hits,
        [
            ("198.18.0.0/28".to_owned(), 3),
            ("2001:2::/120".to_owned(), 2)
        ]
    );
    assert!(
        h.state(SourceKey::from_ipv4(ATTACKER4)).is_none(),
        "denied sources take no table entry"
    );
    // Summary events at the 1st and 2nd hit of each entry (powers of two).
    let hit_events = h
        .events()
        .iter()
        .filter(|e| {
            filter_common::EventType::try_from(e.event_type)
                == Ok(filter_common::EventType::DenyHit)
        })
        .count();
    assert_eq!(
        hit_events, 4,
        "hits 1 and 2 of the v4 entry and of the v6 entry"
    );
}

#[test]
fn the_allowlist_wins_over_the_denylist_and_every_limit() {
    if !privileged("the_allowlist_wins_over_the_denylist_and_every_limit") {
        return;
    }
    let (mut h, lists) = with_lists(limits(100, 3));
    lists
        .add(ListKind::Deny, &prefixes(&["198.18.0.0/24"]), None)
        .expect("add deny");
    lists
        .add(ListKind::Allow, &prefixes(&["198.18.0.10"]), None)
        .expect("add allow");
    sync_presence(&h, &lists);
    assert_eq!(
        h.run_n(&udp4(ATTACKER4), 50),
        [XDP_PASS; 50],
        "allowlisted: never dropped"
    );
    assert_eq!(h.packets(Outcome::Allowed), 50);
    assert_eq!(
        h.run(&udp4(OTHER4)),
        XDP_DROP,
        "the rest of the /24 is denied"
    );
    // Removing the allow entry makes the deny entry apply.
    lists
        .remove(ListKind::Allow, &prefixes(&["198.18.0.10"]))
        .expect("remove");
    sync_presence(&h, &lists);
    assert_eq!(h.run(&udp4(ATTACKER4)), XDP_DROP);
}

#[test]
fn denylist_entries_expire_and_can_be_monitored() {
    if !privileged("denylist_entries_expire_and_can_be_monitored") {
        return;
    }
    let (mut h, lists) = with_lists(limits(100_000, 100_000));
    lists
        .add(
            ListKind::Deny,
            &prefixes(&["198.18.0.10"]),
            Some(h.now_ns + 10 * SEC),
        )
        .expect("add");
    sync_presence(&h, &lists);
    assert_eq!(h.run(&udp4(ATTACKER4)), XDP_DROP);
    h.change_limits(LimitsChange {
        deny_mode: Some(FilterMode::Monitor),
        ..LimitsChange::default()
    });
    assert_eq!(
        h.run(&udp4(ATTACKER4)),
        XDP_PASS,
        "a monitored denylist drops nothing"
    );
    assert_eq!(h.packets(Outcome::MonitorDenied), 1);
    h.change_limits(LimitsChange {
        deny_mode: Some(FilterMode::Enforce),
        ..LimitsChange::default()
    });
    h.advance(10 * SEC);
    assert_eq!(
        h.run(&udp4(ATTACKER4)),
        XDP_PASS,
        "an expired entry no longer applies"
    );
    let expired = lists.expire(h.now_ns).expect("expire");
    assert_eq!(expired.len(), 1, "and the daemon's sweep deletes it");
}

#[test]
fn a_source_rotating_inside_its_prefix_is_limited_as_one() {
    if !privileged("a_source_rotating_inside_its_prefix_is_limited_as_one") {
        return;
    }
    let mut change = limits(1_000, 1_000);
    change.prefix_pps[ScopeName::V4.index()] = Some(Rate::PerSecond(100));
    let mut h = Harness::new(change);
    // 256 addresses of 198.19.7.0/24, 2 packets each: every source is far under its own
    // limit, but the /24 sends 512 packets against a burst of 100.
    let mut passed = 0;
    for i in 0..512u32 {
        let last = u8::try_from(i % 256).expect("byte");
        passed += usize::from(h.run(&udp4([198, 19, 7, last])) == XDP_PASS);
    }
    assert_eq!(
        passed, 100,
        "the /24 passes its one-second burst of 100 packets, no more"
    );
    assert_eq!(h.packets(Outcome::DroppedPrefixLimit), 412);
    assert_eq!(
        h.run(&udp4([198, 19, 8, 1])),
        XDP_PASS,
        "another /24 is not affected"
    );
    assert!(
        h.loaded
            .maps
            .all_sources()
            .expect("walk")
            .iter()
            .all(|(_, s)| s.blocked_until_ns == 0),
        "a prefix limit drops the excess; it blocks no source"
    );
    // Dropped packets did not use up the rate: 10 ms later exactly one more passes.
    h.advance(10_000_000);
    assert_eq!(h.run(&udp4([198, 19, 7, 1])), XDP_PASS);
    assert_eq!(h.run(&udp4([198, 19, 7, 2])), XDP_DROP);
}

#[test]
fn ipv6_prefixes_are_limited_at_both_levels_and_per_class() {
    if !privileged("ipv6_prefixes_are_limited_at_both_levels_and_per_class") {
        return;
    }
    let mut change = limits(1_000, 1_000);
    change.prefix_pps[ScopeName::V6.index()] = Some(Rate::PerSecond(50));
    change.prefix_class_pps[ScopeName::V6Wide.index()][ClassName::Udp.index()] =
        Some(Rate::PerSecond(80));
    let mut h = Harness::new(change);
    // Rotating through 2001:2:0:1::/64: held to the /64's 50.
    let v6 = |net: u8, host: u8| udp6([0x20, 0x01, 0, 2, 0, 0, 0, net, 0, 0, 0, 0, 0, 0, 0, host]);
    let passed = (0..100u8).filter(|&i| h.run(&v6(1, i)) == XDP_PASS).count();
    assert_eq!(passed, 50, "the /64 passes its burst of 50");
    // Other /64s of the same /48: each has its own 50, the /48 allows 80 UDP in all, of
    // which the first /64 used 50.
    let passed = (0..100u8).filter(|&i| h.run(&v6(2, i)) == XDP_PASS).count();
    assert_eq!(
        passed, 30,
        "the /48's UDP limit of 80 leaves 30 for a second /64"
    );
    assert_eq!(h.packets(Outcome::DroppedPrefixLimit), 120);
}

#[test]
fn monitor_mode_covers_ceilings_and_prefix_limits() {
    if !privileged("monitor_mode_covers_ceilings_and_prefix_limits") {
        return;
    }
    let cpus = u64::from(floodwall::limits::online_cpus());
    let mut change = LimitsChange {
        mode: Some(FilterMode::Monitor),
        admit_packets: Some(1_000_000),
        ..limits(10_000, 10_000)
    };
    change.ceiling_pps[ClassName::Udp.index()] = Some(Rate::PerSecond(10 * cpus));
    let mut h = Harness::new(change);
    let _cpu = pin_to_cpu(0);
    let verdicts: Vec<u32> = (0..20).map(|i| h.run(&udp4(spoofed(i + 2_000)))).collect();
    assert_eq!(
        verdicts, [XDP_PASS; 20],
        "monitor mode drops nothing at the ceiling"
    );
    assert_eq!(class_packets(&h, Class::Udp, Outcome::MonitorCeiling), 10);

    let mut change = LimitsChange {
        mode: Some(FilterMode::Monitor),
        ..limits(10_000, 10_000)
    };
    change.prefix_bps[ScopeName::V4.index()] = Some(Rate::PerSecond(8 * 3_000));
    let mut h = Harness::new(change);
    // 3000 bytes of burst for the /24: 50 frames of 60 bytes.
    let verdicts: Vec<u32> = (0..60u8).map(|i| h.run(&udp4([198, 19, 9, i]))).collect();
    assert_eq!(verdicts, [XDP_PASS; 60]);
    assert_eq!(
        h.packets(Outcome::MonitorPrefixLimit),
        10,
        "the byte limit of the /24 counts 10 over"
    );
}

#[test]
fn an_allowlisted_ipv6_source_passes_even_when_blocked_before() {
    if !privileged("an_allowlisted_ipv6_source_passes_even_when_blocked_before") {
        return;
    }
    let (mut h, lists) = with_lists(limits(100, 3));
    let frame = udp6(ATTACKER6);
    assert_eq!(h.run_n(&frame, 5)[4], XDP_DROP, "blocked by its rate");
    lists
        .add(ListKind::Allow, &prefixes(&["2001:2::/64"]), None)
        .expect("add");
    sync_presence(&h, &lists);
    assert_eq!(
        h.run_n(&frame, 20),
        [XDP_PASS; 20],
        "the allowlist wins over a block"
    );
    assert_eq!(h.packets(Outcome::Allowed), 20);
}

#[test]
fn the_admission_budget_bounds_table_churn() {
    if !privileged("the_admission_budget_bounds_table_churn") {
        return;
    }
    let cpus = u64::from(floodwall::limits::online_cpus());
    let mut h = Harness::new(LimitsChange {
        admit_rate: Some(Rate::PerSecond(50 * cpus)),
        ..limits(10_000, 10_000)
    });
    let _cpu = pin_to_cpu(0);
    // Every source is admitted at its first packet, but only 50 a second on this CPU.
    for i in 0..200 {
        assert_eq!(
            h.run(&udp4(spoofed(i + 3_000))),
            XDP_PASS,
            "untracked packets still pass"
        );
    }
    let tracked = h.loaded.maps.all_sources().expect("walk").len();
    assert_eq!(tracked, 50, "a one-second budget of 50 entries");
    h.advance(100_000_000);
    for i in 0..10 {
        h.run(&udp4(spoofed(9_000 + i)));
    }
    let tracked = h.loaded.maps.all_sources().expect("walk").len();
    assert_eq!(tracked, 55, "100 ms later the budget has 5 more");
}

#[test]
fn a_flood_of_distinct_sources_does_not_fill_the_table() {
    if !privileged("a_flood_of_distinct_sources_does_not_fill_the_table") {
        return;
    }
    // Default admission: 4 packets, 5000 entries a second in all. 60,000 sources send one
    // packet each, twice: far more distinct sources than the sketch has buckets, so it
    // over-counts and would admit most of them; the admission budget (5000/s shared out
    // per CPU) is what keeps them from churning the table.
    let cpus = u64::from(floodwall::limits::online_cpus());
    let mut h = Harness::new(LimitsChange {
        admit_packets: None,
        ..limits(10_000, 10_000)
    });
    let _cpu = pin_to_cpu(0);
    for round in 0..2 {
        for i in 0..60_000 {
            h.run(&udp4(spoofed(i)));
        }
        let tracked = h.loaded.maps.all_sources().expect("walk").len() as u64;
        let budget = floodwall::limits::DEFAULT_ADMIT_RATE / cpus;
        assert!(
            tracked <= budget,
            "round {round}: {tracked} of 60000 sources tracked, over the budget of {budget}"
        );
    }
}

/// The source table holds a source in one of the `SOURCE_WAYS` slots of its set. In a table
/// of one set, a new source takes the slot of the least recently active source that is not
/// blocked; while every slot holds a blocked source, a new source is refused (a full
/// table: held to its class's ceiling), until a block ends.
#[test]
fn a_full_set_gives_its_least_recently_active_slot_and_never_a_blocked_one() {
    if !privileged("a_full_set_gives_its_least_recently_active_slot_and_never_a_blocked_one") {
        return;
    }
    let _cpu = pin_to_cpu(0);
    let mut h = Harness::loaded_as(
        limits(100, 10),
        &LoadOptions {
            max_sources: filter_common::SOURCE_WAYS,
            ..Harness::options(true)
        },
    );
    let sources: [[u8; 4]; 6] = [1, 2, 3, 4, 5, 6].map(|host| [198, 18, 7, host]);
    let tracked = |h: &Harness, i: usize| h.state(SourceKey::from_ipv4(sources[i])).is_some();
    // Four sources, two seconds apart: each starts its reporting window as it arrives.
    for source in &sources[..4] {
        assert_eq!(h.run(&udp4(*source)), XDP_PASS);
        h.advance(2 * SEC);
    }
    assert_eq!(h.loaded.maps.all_sources().expect("walk").len(), 4);
    // Blocked (its 11th packet in a burst of 10), the first source counts as active until
    // its block ends: it keeps its slot.
    assert_eq!(h.run_n(&udp4(sources[0]), 11)[10], XDP_DROP);
    assert_eq!(h.run(&udp4(sources[4])), XDP_PASS);
    assert!(tracked(&h, 4), "the fifth source has a slot");
    assert!(tracked(&h, 0), "the blocked source keeps its slot");
    assert!(
        !tracked(&h, 1),
        "the least recently active source gave up its slot"
    );
    assert!(tracked(&h, 2) && tracked(&h, 3));
    let table = |h: &Harness| h.loaded.maps.table_stats().expect("table counters");
    assert_eq!((table(&h).inserts, table(&h).evictions), (5, 1));
    // Every slot blocked: the sixth source is refused, and counted as a full table.
    for i in [2, 3, 4] {
        assert_eq!(
            h.run_n(&udp4(sources[i]), 11)[10],
            XDP_DROP,
            "source {i} blocked"
        );
    }
    assert_eq!(
        h.run(&udp4(sources[5])),
        XDP_PASS,
        "held to the ceiling, unlimited here"
    );
    assert_eq!(h.packets(Outcome::TableFull), 1);
    assert_eq!(table(&h).insert_failures, 1);
    assert!(!tracked(&h, 5));
    // Once the blocks end (10 s), the slots are free to take again.
    h.advance(11 * SEC);
    assert_eq!(h.run(&udp4(sources[5])), XDP_PASS);
    assert!(tracked(&h, 5), "a slot whose block ended is taken");
    assert_eq!((table(&h).inserts, table(&h).evictions), (6, 2));
    assert_eq!(h.loaded.maps.all_sources().expect("walk").len(), 4);
}

#[test]
fn untracked_sources_skip_the_table_and_a_lost_filter_bit_heals() {
    if !privileged("untracked_sources_skip_the_table_and_a_lost_filter_bit_heals") {
        return;
    }
    let mut h = Harness::new(LimitsChange {
        admit_packets: Some(3),
        ..limits(100, 10)
    });
    let key = SourceKey::from_ipv4(ATTACKER4);
    let frame = udp4(ATTACKER4);
    // Not admitted yet: no bit, no entry; the packets pass under the ceiling.
    assert_eq!(h.run_n(&frame, 2), [XDP_PASS; 2]);
    assert!(!h.loaded.maps.is_marked(&key).expect("filter"));
    assert!(h.state(key).is_none(), "not admitted after 2 of 3 packets");
    // The admitting packet marks it and inserts it, charged with that packet.
    assert_eq!(h.run(&frame), XDP_PASS);
    assert!(h.loaded.maps.is_marked(&key).expect("filter"));
    let state = h.state(key).expect("admitted at its third packet");
    assert_eq!(state.window_packets, 1, "the admitting packet is counted");
    assert_eq!(
        state.packet_tat_ns,
        START_NS + SEC / 100,
        "and charged: one packet's cost at 100 packets/s"
    );
    // Tracked now: its burst of 10 (one used) then a block, by its own state.
    let verdicts = h.run_n(&frame, 10);
    assert_eq!(verdicts[..9], [XDP_PASS; 9]);
    assert_eq!(
        verdicts[9], XDP_DROP,
        "the 11th charged packet exceeds the burst"
    );
    assert!(h.state(key).expect("tracked").blocked_until_ns > START_NS);

    // A lost bit (two CPUs setting bits of one word at once): the blocked source looks new
    // for one packet; admission finds its entry (the insert says it exists) and sets the
    // bit again, and the block holds from the next packet on.
    h.loaded.maps.unmark(&key).expect("clear the bit");
    assert_eq!(
        h.run(&frame),
        XDP_PASS,
        "one packet looks new and heals the bit"
    );
    assert!(h.loaded.maps.is_marked(&key).expect("filter"));
    assert_eq!(h.run_n(&frame, 3), [XDP_DROP; 3], "blocked again");
    let other = SourceKey::from_ipv4(OTHER4);
    assert!(!h.loaded.maps.is_marked(&other).expect("filter"));
    assert!(h.state(other).is_none());

    // A tracked source that is not blocked, its bit lost: its next packet goes through
    // admission (its sketch count is high), finds its entry and marks it again, once
    // uncharged; the packet after that is charged to its state again.
    let other_frame = udp4(OTHER4);
    assert_eq!(h.run_n(&other_frame, 3), [XDP_PASS; 3]);
    let before = h.state(other).expect("admitted").window_packets;
    h.loaded.maps.unmark(&other).expect("clear the bit");
    assert_eq!(h.run(&other_frame), XDP_PASS);
    assert!(
        h.loaded.maps.is_marked(&other).expect("filter"),
        "marked again"
    );
    assert_eq!(
        h.state(other).expect("still tracked").window_packets,
        before
    );
    assert_eq!(h.run(&other_frame), XDP_PASS);
    assert_eq!(
        h.state(other).expect("tracked").window_packets,
        before + 1,
        "charged to its own state again"
    );
}

#[test]
fn the_daemon_rebuilds_the_filter_from_the_table() {
    if !privileged("the_daemon_rebuilds_the_filter_from_the_table") {
        return;
    }
    let mut h = Harness::new(limits(100, 10));
    let (kept, gone) = (
        SourceKey::from_ipv4(ATTACKER4),
        SourceKey::from_ipv4(OTHER4),
    );
    h.run(&udp4(ATTACKER4));
    h.run(&udp4(OTHER4));
    assert!(h.loaded.maps.is_marked(&kept).expect("filter"));
    assert!(h.loaded.maps.is_marked(&gone).expect("filter"));
    // Gone from the table (as an eviction would take it): its bit stays until the
    // rebuild, which keeps the bit of the source still there.
    assert!(h.loaded.maps.remove_source(&gone).expect("remove"));
    assert_eq!(h.loaded.maps.rebuild_tracked_filter().expect("rebuild"), 1);
    assert!(h.loaded.maps.is_marked(&kept).expect("filter"));
    assert!(!h.loaded.maps.is_marked(&gone).expect("filter"), "cleared");
    // The source still in the table is still limited by its own state.
    let verdicts = h.run_n(&udp4(ATTACKER4), 10);
    assert_eq!(verdicts[9], XDP_DROP, "its 11th packet exceeds its burst");
}

/// SYN cookies from XDP (`--syn-protect`), through the real helpers: each test runs in a
/// network namespace of its own thread, with a listener and `tcp_syncookies=2` there (the
/// program's socket lookup sees the namespace of the test run's loopback device).
#[path = "prog_test_run/rules.rs"]
mod rules;

#[path = "prog_test_run/samples.rs"]
mod samples;

mod syn_cookies {
    use std::{collections::BTreeSet, net::TcpListener, process::Command};

    use aya::programs::{TestRun as _, TestRunOptions};
    use etherparse::{PacketBuilder, TcpOptionElement};
    use filter_common::{Outcome, PROGRAM_NAME, SourceKey, SynStat};
    use floodwall::{
        limits::{FilterMode, LimitsChange},
        loader,
        syn::{self, host::SynHost},
    };

    use super::{ATTACKER4, CLIENT_MAC, Harness, OTHER4, SERVER_MAC, SERVER4, SERVER6};

    use filter_common::xdp_action::{PASS as XDP_PASS, TX as XDP_TX};
    const PORT: u16 = 8080;
    const CLOSED_PORT: u16 = 8081;
    const CLIENT_PORT: u16 = 40_000;
    const CLIENT_SEQ: u32 = 0x1234_5678;
    const HOST: SynHost = SynHost {
        mss_v4: 1460,
        mss_v6: 1440,
        ttl: 64,
        hop_limit: 64,
    };

    /// Moves this thread into a new network namespace with loopback up, `tcp_syncookies=2`
    /// and a dual-stack listener on `PORT`; returns the listener (it must stay open).
    fn namespace_with_listener(syncookies: u8) -> TcpListener {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare the netns");
        // A child inherits the namespace of the thread that forks it.
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("run ip");
        assert!(up.success(), "loopback up");
        std::fs::write(
            "/proc/sys/net/ipv4/tcp_syncookies",
            format!("{syncookies}\n"),
        )
        .expect("set tcp_syncookies in the test namespace");
        TcpListener::bind(("::", PORT)).expect("listen")
    }

    /// The harness with `PORT` and `CLOSED_PORT` protected.
    fn protected(change: LimitsChange) -> Harness {
        let harness = Harness::new(change);
        let ports = BTreeSet::from([PORT, CLOSED_PORT]);
        harness
            .loaded
            .maps
            .set_syn_protect(Some((syn::synack_values(&HOST), &ports)))
            .expect("set syn-protect");
        harness.write_limits();
        harness
    }

    /// A Linux-style SYN: MSS, SACK permitted, timestamp, no-op, window scale.
    fn syn_v4(src: [u8; 4], dport: u16) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .ipv4(src, SERVER4, 64)
            .tcp(CLIENT_PORT, dport, CLIENT_SEQ, 64_240)
            .syn()
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::SelectiveAcknowledgementPermitted,
                TcpOptionElement::Timestamp(1_000, 0),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(7),
            ])
            .expect("options fit");
        let mut frame = Vec::new();
        builder.write(&mut frame, &[]).expect("build");
        frame
    }

    fn ack_v4(src: [u8; 4], ack: u32) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .ipv4(src, SERVER4, 64)
            .tcp(CLIENT_PORT, PORT, CLIENT_SEQ.wrapping_add(1), 502)
            .ack(ack);
        let mut frame = Vec::new();
        builder.write(&mut frame, &[]).expect("build");
        frame
    }

    /// Runs the program on `frame`; its verdict and the frame it left.
    fn run_out(harness: &mut Harness, frame: &[u8]) -> (u32, Vec<u8>) {
        let program = loader::xdp_program(&mut harness.loaded.ebpf, PROGRAM_NAME).expect("program");
        let mut out = vec![0u8; 256];
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            })
            .expect("BPF_PROG_TEST_RUN must run the program");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    /// The one's complement sum of `bytes` as 16-bit words, folded.
    fn sum(bytes: &[u8], mut acc: u32) -> u32 {
        for pair in bytes.chunks(2) {
            acc += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc
    }

    fn syn_stat(harness: &Harness, stat: SynStat) -> u64 {
        harness
            .loaded
            .maps
            .syn_stats()
            .expect("syn stats")
            .into_iter()
            .find(|(s, _)| *s == stat)
            .map_or(0, |(_, n)| n)
    }

    /// Checks the SYN-ACK at `l3` of `out` for `syn` (IPv4 when `v4`): addresses and ports
    /// swapped, SYN|ACK, ack = seq + 1, one MSS option, both checksums; returns the cookie.
    fn check_synack(out: &[u8], syn: &[u8], v4: bool, mss: u16) -> u32 {
        check_synack_at(out, syn, 14, v4, mss)
    }

    /// [`check_synack`] for a frame whose IP header starts at `l3` (after VLAN tags).
    fn check_synack_at(out: &[u8], syn: &[u8], l3: usize, v4: bool, mss: u16) -> u32 {
        assert_eq!(&out[0..6], &syn[6..12], "destination MAC is the client's");
        assert_eq!(&out[6..12], &syn[0..6], "source MAC is the server's");
        assert_eq!(&out[12..l3], &syn[12..l3], "the VLAN tags stay");
        let (ip_len, src, dst) = if v4 {
            assert_eq!(sum(&out[l3..l3 + 20], 0), 0xffff, "IPv4 header checksum");
            assert_eq!(
                &out[l3 + 12..l3 + 16],
                &syn[l3 + 16..l3 + 20],
                "from the server"
            );
            assert_eq!(
                &out[l3 + 16..l3 + 20],
                &syn[l3 + 12..l3 + 16],
                "to the client"
            );
            assert_eq!(
                u16::from_be_bytes([out[l3 + 2], out[l3 + 3]]),
                44,
                "total length"
            );
            assert_eq!(out[l3 + 8], HOST.ttl);
            (20, l3 + 12..l3 + 16, l3 + 16..l3 + 20)
        } else {
            assert_eq!(
                &out[l3 + 8..l3 + 24],
                &syn[l3 + 24..l3 + 40],
                "from the server"
            );
            assert_eq!(
                &out[l3 + 24..l3 + 40],
                &syn[l3 + 8..l3 + 24],
                "to the client"
            );
            assert_eq!(
                u16::from_be_bytes([out[l3 + 4], out[l3 + 5]]),
                24,
                "payload length"
            );
            assert_eq!(out[l3 + 7], HOST.hop_limit);
            (40, l3 + 8..l3 + 24, l3 + 24..l3 + 40)
        };
        let tcp = &out[l3 + ip_len..];
        assert_eq!(tcp.len(), 24, "a 24-byte TCP header and nothing after it");
        let syn_tcp = &syn[l3 + ip_len..];
        assert_eq!(&tcp[0..2], &syn_tcp[2..4], "ports swapped");
        assert_eq!(&tcp[2..4], &syn_tcp[0..2], "ports swapped");
        assert_eq!(
            u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
            CLIENT_SEQ + 1,
            "acknowledges the SYN"
        );
        assert_eq!(tcp[12] >> 4, 6, "data offset");
        assert_eq!(tcp[13], 0x12, "SYN|ACK");
        assert_ne!(u16::from_be_bytes([tcp[14], tcp[15]]), 0, "a window");
        assert_eq!(
            &tcp[20..24],
            &[2, 4, mss.to_be_bytes()[0], mss.to_be_bytes()[1]],
            "the MSS option"
        );
        let pseudo_sum = sum(&out[src], sum(&out[dst], 6 + 24));
        assert_eq!(sum(tcp, pseudo_sum), 0xffff, "TCP checksum");
        u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]])
    }

    /// A SYN or (with `ack`) an ACK from `src` (an IPv4 or IPv6 address of the lab), with a
    /// VLAN tag if `vlan`, the SYN with `options`.
    fn segment(
        src: std::net::IpAddr,
        vlan: Option<u16>,
        options: &[TcpOptionElement],
        ack: Option<u32>,
    ) -> Vec<u8> {
        use etherparse::{IpHeaders, Ipv4Header, Ipv6Header, PacketBuilder};
        let eth = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC);
        let ip = match src {
            std::net::IpAddr::V4(a) => IpHeaders::Ipv4(
                Ipv4Header::new(0, 64, etherparse::IpNumber::TCP, a.octets(), SERVER4)
                    .expect("header"),
                etherparse::Ipv4Extensions::default(),
            ),
            std::net::IpAddr::V6(a) => IpHeaders::Ipv6(
                Ipv6Header {
                    hop_limit: 64,
                    source: a.octets(),
                    destination: SERVER6,
                    ..Ipv6Header::default()
                },
                etherparse::Ipv6Extensions::default(),
            ),
        };
        let step = match vlan {
            Some(id) => eth
                .single_vlan(super::VlanId::try_new(id).expect("vid"))
                .ip(ip),
            None => eth.ip(ip),
        };
        let tcp = match ack {
            Some(ack) => step
                .tcp(CLIENT_PORT, PORT, CLIENT_SEQ.wrapping_add(1), 502)
                .ack(ack),
            None => step
                .tcp(CLIENT_PORT, PORT, CLIENT_SEQ, 64_240)
                .syn()
                .options(options)
                .expect("options fit"),
        };
        let mut frame = Vec::new();
        tcp.write(&mut frame, &[]).expect("build");
        frame
    }

    #[test]
    fn a_syn_gets_a_cookie_synack_and_its_ack_admits_the_source() {
        if !floodwall_tests::privileged("a_syn_gets_a_cookie_synack_and_its_ack_admits_the_source")
        {
            return;
        }
        let _listener = namespace_with_listener(2);
        let mut harness = protected(LimitsChange::default());

        let syn = syn_v4(ATTACKER4, PORT);
        let (verdict, out) = run_out(&mut harness, &syn);
        assert_eq!(verdict, XDP_TX, "answered from XDP");
        let cookie = check_synack(&out, &syn, true, HOST.mss_v4);
        assert_eq!(harness.packets(Outcome::SynCookieSent), 1);
        assert_eq!(
            harness.state(SourceKey::from_ip(ATTACKER4.into())),
            None,
            "a SYN alone admits nothing"
        );

        // A tampered cookie from another source: not admitted, the untracked path.
        let (verdict, _) = run_out(&mut harness, &ack_v4(OTHER4, cookie ^ 0x100));
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(syn_stat(&harness, SynStat::CookieInvalid), 1);
        assert_eq!(harness.packets(Outcome::CookieVerified), 0);

        // The real client's ACK returns the cookie: admitted, passed to the kernel.
        let (verdict, _) = run_out(&mut harness, &ack_v4(ATTACKER4, cookie.wrapping_add(1)));
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(harness.packets(Outcome::CookieVerified), 1);
        assert!(
            harness
                .state(SourceKey::from_ip(ATTACKER4.into()))
                .is_some(),
            "the source is tracked now"
        );
        // A tracked source's SYN goes to the kernel like any tracked packet.
        let (verdict, _) = run_out(&mut harness, &syn);
        assert_eq!(verdict, XDP_PASS);
    }

    #[test]
    fn what_the_cookie_path_cannot_serve_falls_back_to_the_ceiling() {
        if !floodwall_tests::privileged(
            "what_the_cookie_path_cannot_serve_falls_back_to_the_ceiling",
        ) {
            return;
        }
        let _listener = namespace_with_listener(1);
        let mut harness = protected(LimitsChange::default());
        // No listener on the port.
        let (verdict, _) = run_out(&mut harness, &syn_v4(ATTACKER4, CLOSED_PORT));
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(syn_stat(&harness, SynStat::NoListener), 1);
        // tcp_syncookies=1: the kernel refuses to issue a cookie without a full queue.
        let (verdict, _) = run_out(&mut harness, &syn_v4(OTHER4, PORT));
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(syn_stat(&harness, SynStat::Refused), 1);
        // An unprotected port: not the stage's business.
        let (verdict, _) = run_out(&mut harness, &syn_v4(OTHER4, 22));
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(harness.packets(Outcome::SynCookieSent), 0);
    }

    /// Without the helpers (a kernel before 6.0) the program leaves the stage out and
    /// still loads: the verifier never sees the helpers, because the code that calls them
    /// is dead for it. Here the stage is left out on request, where the helpers exist: the
    /// program the kernel keeps is smaller, and a protected port's SYN takes the ceiling.
    #[test]
    fn without_the_helpers_the_stage_is_left_out_and_the_program_still_loads() {
        if !floodwall_tests::privileged(
            "without_the_helpers_the_stage_is_left_out_and_the_program_still_loads",
        ) {
            return;
        }
        let _listener = namespace_with_listener(2);
        let size = |loaded: &mut floodwall::loader::Loaded| {
            loader::xdp_program(&mut loaded.ebpf, PROGRAM_NAME)
                .expect("program")
                .info()
                .expect("program info")
                .size_translated()
                .expect("the translated size")
        };
        let mut without = loader::load(&loader::LoadOptions {
            max_sources: 1024,
            max_prefixes: 1024,
            test_clock: true,
            without_syn_cookies: true,
            without_rules: true,
            ..loader::LoadOptions::default()
        })
        .expect("the program must load without the stage");
        assert!(without.syn_cookies.is_err());
        let mut harness = protected(LimitsChange::default());
        assert!(harness.loaded.syn_cookies.is_ok());
        assert!(
            size(&mut without) < size(&mut harness.loaded),
            "the stage's code must be gone"
        );
        let (verdict, _) = run_out(&mut harness, &syn_v4(ATTACKER4, PORT));
        assert_eq!(verdict, XDP_TX, "with the stage, a cookie");
    }

    /// Every option set a SYN may carry, both families, and a VLAN tag: a valid SYN-ACK
    /// (bytes, checksums, the one MSS option), and the ACK that returns its cookie admits
    /// the source.
    #[test]
    fn every_option_set_and_a_vlan_tag_get_a_synack_whose_ack_admits() {
        use TcpOptionElement::{
            MaximumSegmentSize as Mss, Noop, SelectiveAcknowledgementPermitted as Sack,
            Timestamp as Ts, WindowScale as Ws,
        };
        if !floodwall_tests::privileged(
            "every_option_set_and_a_vlan_tag_get_a_synack_whose_ack_admits",
        ) {
            return;
        }
        let _listener = namespace_with_listener(2);
        let mut harness = protected(LimitsChange::default());
        let option_sets: [&[TcpOptionElement]; 4] = [
            &[],
            &[Mss(1400)],
            &[Mss(1460), Sack, Ts(7, 0), Noop, Ws(7)],
            &[Mss(1460), Noop, Noop, Ts(7, 0)],
        ];
        let mut sources = (1u8..).map(|n| {
            [
                std::net::IpAddr::from([198, 18, 7, n]),
                std::net::IpAddr::from([0x2001, 2, 0, 7, 0, 0, 0, u16::from(n)]),
            ]
        });
        let mut cases = Vec::new();
        for options in option_sets {
            let [v4, v6] = sources.next().expect("a source");
            cases.push((v4, None, options));
            cases.push((v6, None, options));
        }
        let [vlan_v4, vlan_v6] = sources.next().expect("a source");
        cases.push((vlan_v4, Some(10), option_sets[2]));
        cases.push((vlan_v6, Some(20), option_sets[1]));
        for (n, (src, vlan, options)) in cases.into_iter().enumerate() {
            let syn = segment(src, vlan, options, None);
            let (verdict, out) = run_out(&mut harness, &syn);
            assert_eq!(verdict, XDP_TX, "{src} {vlan:?} {options:?}: a SYN-ACK");
            let l3 = if vlan.is_some() { 18 } else { 14 };
            let mss = if src.is_ipv4() {
                HOST.mss_v4
            } else {
                HOST.mss_v6
            };
            let cookie = check_synack_at(&out, &syn, l3, src.is_ipv4(), mss);
            let ack = segment(src, vlan, &[], Some(cookie.wrapping_add(1)));
            let (verdict, _) = run_out(&mut harness, &ack);
            assert_eq!(verdict, XDP_PASS);
            assert_eq!(
                harness.packets(Outcome::CookieVerified),
                n as u64 + 1,
                "{src} {vlan:?} {options:?}: its cookie admits it"
            );
            assert!(harness.state(SourceKey::from_ip(src)).is_some());
        }
    }

    /// IPv4 options (the SYN-ACK would have to carry or drop them) and a spent SYN-ACK
    /// budget fall back to the SYN ceiling, counted by why.
    #[test]
    fn ip_options_and_a_spent_budget_fall_back_to_the_ceiling() {
        if !floodwall_tests::privileged("ip_options_and_a_spent_budget_fall_back_to_the_ceiling") {
            return;
        }
        let _listener = namespace_with_listener(2);
        let mut harness = protected(LimitsChange::default());
        // Four bytes of options (no-ops and an end) after the fixed header.
        let mut with_options = syn_v4(ATTACKER4, PORT);
        with_options.splice(34..34, [1, 1, 1, 0]);
        with_options[14] = 0x46;
        let total = u16::from_be_bytes([with_options[16], with_options[17]]) + 4;
        with_options[16..18].copy_from_slice(&total.to_be_bytes());
        let (verdict, _) = run_out(&mut harness, &with_options);
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(syn_stat(&harness, SynStat::Unsupported), 1);

        let mut harness = protected(LimitsChange {
            syn_cookie_rate: Some(floodwall::limits::Rate::PerSecond(1)),
            ..LimitsChange::default()
        });
        let mut verdicts = Vec::new();
        for n in 1..=3 {
            verdicts.push(run_out(&mut harness, &syn_v4([198, 18, 8, n], PORT)).0);
        }
        assert!(
            verdicts.contains(&XDP_PASS),
            "a budget of one a second cannot answer three SYNs at once: {verdicts:?}"
        );
        assert!(syn_stat(&harness, SynStat::OverBudget) >= 1);
    }

    #[test]
    fn monitor_mode_never_sends_a_synack() {
        if !floodwall_tests::privileged("monitor_mode_never_sends_a_synack") {
            return;
        }
        let _listener = namespace_with_listener(2);
        let mut harness = protected(LimitsChange {
            mode: Some(FilterMode::Monitor),
            ..LimitsChange::default()
        });
        let (verdict, _) = run_out(&mut harness, &syn_v4(ATTACKER4, PORT));
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(harness.packets(Outcome::MonitorSynCookie), 1);
        assert_eq!(harness.packets(Outcome::SynCookieSent), 0);
    }
}

/// Each program the daemon loads stays under half the verifier's budget of 1,000,000
/// processed instructions on this kernel, so that the stages still to come have room and
/// older verifiers (which prune less) still accept it.
#[test]
fn every_program_leaves_the_verifier_half_its_budget() {
    const BUDGET: u32 = 1_000_000;
    if !privileged("every_program_leaves_the_verifier_half_its_budget") {
        return;
    }
    let mut loaded = loader::load(&LoadOptions {
        max_sources: 4096,
        test_clock: true,
        max_prefixes: 4096,
        ..LoadOptions::default()
    })
    .expect("the XDP program must load with the test clock");
    for name in [
        PROGRAM_NAME,
        SYN_COOKIE_PROGRAM_NAME,
        RULES_PROGRAM_NAME,
        AFTER_RULES_PROGRAM_NAME,
    ] {
        let program = loader::xdp_program(&mut loaded.ebpf, name).expect("program");
        let info = program.info().expect("program info");
        // The kernel reports it from Linux 5.16 on.
        let Some(verified) = info.verified_instruction_count() else {
            eprintln!("this kernel does not report verified instructions; not checked");
            return;
        };
        println!("{name}: {verified} instructions verified");
        assert!(
            verified < BUDGET / 2,
            "{name} took {verified} of the verifier's {BUDGET} instructions: split a stage into \
             a program of its own (see filter_common::SYN_COOKIE_PROGRAM_NAME)"
        );
    }
}
