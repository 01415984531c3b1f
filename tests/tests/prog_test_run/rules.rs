//! Rules by packet shape, in the kernel: each match field at its boundaries, each action,
//! the order of rules and the allowlist, the counters. The daemon's compiler writes the
//! rules (`floodwall::rules`), as it does in production.

use etherparse::{PacketBuilder, VlanId};
use filter_common::{Class, Outcome, RuleCounters, SourceKey, list_flags};
use floodwall::{
    limits::{LimitsChange, Rate},
    lists::ListKind,
    loader::LoadOptions,
    rules::{NewRule, Origin, RuleMaps, RuleSet, TestPacket},
    traffic::{
        baseline::{Baseline, Second, Service},
        counted::ServiceCounters,
        known::KnownSources,
        sample::Sampled,
    },
};

use super::{
    ATTACKER4, ATTACKER6, CLIENT_MAC, ETH_LEN, Harness, OTHER4, SERVER_MAC, SERVER4, SERVER6,
    XDP_DROP, XDP_PASS, pin_to_cpu, privileged, with_ipv6_ext,
};

/// The harness with the rules' maps.
struct Rules {
    h: Harness,
    maps: RuleMaps,
    set: RuleSet,
}

impl Rules {
    fn new(change: LimitsChange) -> Self {
        Self::of(Harness::loaded(change, false))
    }

    fn of(mut h: Harness) -> Self {
        let maps = RuleMaps::take(&mut h.loaded.ebpf).expect("the rules' maps");
        Self {
            h,
            maps,
            set: RuleSet::default(),
        }
    }

    /// Adds rules (text, priority); returns their ids.
    fn add(&mut self, rules: &[(&str, u16)]) -> Vec<u32> {
        let new: Vec<NewRule> = rules
            .iter()
            .map(|(text, priority)| NewRule {
                spec: text.parse().unwrap_or_else(|e| panic!("{text}: {e}")),
                priority: *priority,
                comment: None,
                for_ms: None,
                origin: Origin::Cli,
            })
            .collect();
        let (next, ids) = self.set.with_added(&new, self.h.now_ns).expect("add rules");
        self.maps.write(&self.set, &next).expect("write rules");
        self.set = next;
        self.h.loaded.maps.set_list_presence(list_flags::RULES);
        self.h.write_limits();
        ids
    }

    fn remove(&mut self, ids: &[u32]) {
        let next = self.set.with_removed(ids).expect("remove rules");
        self.maps.write(&self.set, &next).expect("write rules");
        self.set = next;
    }

    fn counters(&self, id: u32) -> RuleCounters {
        let slot = self.set.get(id).expect("rule").slot;
        self.maps.counters(slot).expect("counters")
    }

    fn run(&mut self, frame: &[u8]) -> u32 {
        self.h.run(frame)
    }

    /// Whether `frame` matches the only rule, a `drop`: dropped as a rule drop.
    fn drops(&mut self, frame: &[u8]) -> bool {
        let before = self.h.packets(Outcome::DroppedRule);
        let verdict = self.run(frame);
        let dropped = self.h.packets(Outcome::DroppedRule) > before;
        assert_eq!(dropped, verdict == XDP_DROP, "a drop is a rule's drop here");
        dropped
    }
}

/// No limits that drop: only rules decide.
fn open() -> LimitsChange {
    LimitsChange {
        pps: Some(Rate::Unlimited),
        bps: Some(Rate::Unlimited),
        admit_packets: Some(1),
        ..LimitsChange::default()
    }
}

fn udp4_with(src: [u8; 4], sport: u16, dport: u16, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4(src, SERVER4, ttl)
        .udp(sport, dport)
        .write(&mut frame, payload)
        .expect("build");
    frame
}

fn udp4(sport: u16, dport: u16) -> Vec<u8> {
    udp4_with(ATTACKER4, sport, dport, 64, &[0; 18])
}

fn udp6(sport: u16, dport: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv6(ATTACKER6, SERVER6, 64)
        .udp(sport, dport)
        .write(&mut frame, &[0; 18])
        .expect("build");
    frame
}

fn tcp4(dport: u16, syn: bool, ack: bool) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4(ATTACKER4, SERVER4, 64)
        .tcp(40_000, dport, 1, 64_000);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(1);
    }
    let mut frame = Vec::new();
    b.write(&mut frame, &[]).expect("build");
    frame
}

fn icmp4(kind: u8, code: u8) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4(ATTACKER4, SERVER4, 64)
        .icmpv4_raw(kind, code, [0; 4])
        .write(&mut frame, &[0; 8])
        .expect("build");
    frame
}

/// Sets the IPv4 fragment field (flags and offset).
fn with_frags(mut frame: Vec<u8>, frags: u16) -> Vec<u8> {
    frame[ETH_LEN + 6..ETH_LEN + 8].copy_from_slice(&frags.to_be_bytes());
    frame
}

/// Sets the IPv4 TOS byte's DSCP.
fn with_dscp(mut frame: Vec<u8>, dscp: u8) -> Vec<u8> {
    frame[ETH_LEN + 1] = dscp << 2;
    frame
}

/// The IP length of a UDP/IPv4 frame with `payload` bytes: 28 + payload.
fn udp4_len(ip_len: usize) -> Vec<u8> {
    udp4_with(ATTACKER4, 1000, 53, 64, &vec![0; ip_len - 28])
}

#[test]
fn ports_match_at_both_ends_of_their_ranges_and_in_lists() {
    if !privileged("ports_match_at_both_ends_of_their_ranges_and_in_lists") {
        return;
    }
    let mut r = Rules::new(open());
    r.add(&[
        ("udp sport 100-200 drop", 100),
        ("udp dport 53,80 drop", 100),
    ]);
    for (sport, dport, dropped) in [
        (99, 9, false),
        (100, 9, true),
        (200, 9, true),
        (201, 9, false),
        (9, 53, true),
        (9, 80, true),
        (9, 54, false),
    ] {
        assert_eq!(
            r.drops(&udp4(sport, dport)),
            dropped,
            "sport {sport} dport {dport}"
        );
    }
    // The same ports over TCP are another protocol.
    assert!(!r.drops(&tcp4(53, false, true)));
}

#[test]
fn prefixes_match_by_source_and_destination_in_both_families() {
    if !privileged("prefixes_match_by_source_and_destination_in_both_families") {
        return;
    }
    let mut r = Rules::new(open());
    r.add(&[
        ("from 198.18.0.8/30 udp drop", 100),
        ("from 2001:2::10/128 drop", 100),
        ("to 198.18.0.2 drop", 100),
    ]);
    // ATTACKER4 is .10, inside .8/30; OTHER4 (.11) too; .12 is not.
    assert!(r.drops(&udp4(1, 2)));
    assert!(r.drops(&udp4_with(OTHER4, 1, 2, 64, &[0; 4])));
    assert!(!r.drops(&udp4_with([198, 18, 0, 12], 1, 2, 64, &[0; 4])));
    assert!(r.drops(&udp6(1, 2)));
    let mut to_other = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4([198, 18, 0, 12], [198, 18, 0, 2], 64)
        .udp(1, 2)
        .write(&mut to_other, &[0; 4])
        .expect("build");
    assert!(r.drops(&to_other));
}

#[test]
fn length_ttl_dscp_and_fragments_match_at_their_limits() {
    if !privileged("length_ttl_dscp_and_fragments_match_at_their_limits") {
        return;
    }
    let mut r = Rules::new(open());
    let ids = r.add(&[("udp len 100-200 drop", 100)]);
    for (len, dropped) in [(99, false), (100, true), (200, true), (201, false)] {
        assert_eq!(r.drops(&udp4_len(len)), dropped, "IP length {len}");
    }
    r.remove(&ids);
    let ids = r.add(&[("ttl 1-16 drop", 100)]);
    for (ttl, dropped) in [(1, true), (16, true), (17, false), (64, false)] {
        assert_eq!(
            r.drops(&udp4_with(ATTACKER4, 1, 2, ttl, &[0; 4])),
            dropped,
            "ttl {ttl}"
        );
    }
    r.remove(&ids);
    let ids = r.add(&[("dscp 46,8 drop", 100)]);
    for (dscp, dropped) in [(46, true), (8, true), (0, false), (47, false)] {
        assert_eq!(
            r.drops(&with_dscp(udp4(1, 2), dscp)),
            dropped,
            "dscp {dscp}"
        );
    }
    r.remove(&ids);
    r.add(&[("udp frag later drop", 100), ("frag first drop", 100)]);
    assert!(!r.drops(&udp4(1, 2)), "not a fragment");
    assert!(r.drops(&with_frags(udp4(1, 2), 0x2000)), "first fragment");
    assert!(r.drops(&with_frags(udp4(1, 2), 0x0010)), "later fragment");
}

#[test]
fn tcp_flags_icmp_and_protocols_match_under_their_masks() {
    if !privileged("tcp_flags_icmp_and_protocols_match_under_their_masks") {
        return;
    }
    let mut r = Rules::new(open());
    let ids = r.add(&[("tcp flags syn,!ack drop", 100)]);
    assert!(r.drops(&tcp4(80, true, false)), "SYN");
    assert!(
        !r.drops(&tcp4(80, true, true)),
        "SYN-ACK: ack must be clear"
    );
    assert!(!r.drops(&tcp4(80, false, true)), "ACK");
    r.remove(&ids);
    let ids = r.add(&[("icmp icmp-type 8 icmp-code 0 drop", 100)]);
    assert!(r.drops(&icmp4(8, 0)));
    assert!(!r.drops(&icmp4(8, 1)));
    assert!(!r.drops(&icmp4(0, 0)));
    r.remove(&ids);
    r.add(&[("proto 47 drop", 100)]);
    let mut gre = udp4(1, 2);
    gre[ETH_LEN + 9] = 47;
    assert!(r.drops(&gre));
    assert!(!r.drops(&udp4(1, 2)));
}

#[test]
fn payload_bytes_match_under_their_mask_at_their_offset() {
    if !privileged("payload_bytes_match_under_their_mask_at_their_offset") {
        return;
    }
    let mut r = Rules::new(open());
    r.add(&[("udp payload 4:0f00ff/0f00ff drop", 100)]);
    let frame = |bytes: [u8; 3]| {
        let mut payload = vec![0u8; 10];
        payload[4..7].copy_from_slice(&bytes);
        udp4_with(ATTACKER4, 1, 2, 64, &payload)
    };
    assert!(r.drops(&frame([0x0f, 0x00, 0xff])));
    // Bits outside the mask do not matter; those inside do.
    assert!(r.drops(&frame([0xff, 0x77, 0xff])));
    assert!(!r.drops(&frame([0x0e, 0x00, 0xff])));
    assert!(!r.drops(&frame([0x0f, 0x00, 0xfe])));
    // A payload too short to hold the bytes does not match.
    assert!(!r.drops(&udp4_with(ATTACKER4, 1, 2, 64, &[0x0f; 5])));
}

#[test]
fn rules_see_through_vlan_tags_and_ipv6_extension_headers() {
    if !privileged("rules_see_through_vlan_tags_and_ipv6_extension_headers") {
        return;
    }
    let mut r = Rules::new(open());
    r.add(&[("udp dport 53 drop", 100)]);
    let mut tagged = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .single_vlan(VlanId::try_new(7).expect("vlan id"))
        .ipv4(ATTACKER4, SERVER4, 64)
        .udp(1, 53)
        .write(&mut tagged, &[0; 8])
        .expect("build");
    assert!(r.drops(&tagged));
    let hop_by_hop = (0u8, vec![0, 0, 1, 4, 0, 0, 0, 0]);
    let dest_opts = (60u8, vec![0, 0, 1, 4, 0, 0, 0, 0]);
    assert!(r.drops(&with_ipv6_ext(udp6(1, 53), &[hop_by_hop, dest_opts])));
    assert!(!r.drops(&udp6(1, 54)));
}

#[test]
fn the_first_rule_by_priority_decides_and_the_allowlist_wins() {
    if !privileged("the_first_rule_by_priority_decides_and_the_allowlist_wins") {
        return;
    }
    let mut r = Rules::new(open());
    let ids = r.add(&[
        ("udp dport 53 drop", 200),
        ("from 198.18.0.8/30 allow", 100),
        ("udp monitor", 50),
    ]);
    // `monitor` (priority 50) comes first but only counts: the allow rule, next by
    // priority in another bucket, is not consulted (first match decides), so the packet
    // goes on through the policy and passes.
    assert_eq!(r.run(&udp4(1, 53)), XDP_PASS);
    assert_eq!(r.counters(ids[2]).matched_packets, 1);
    assert_eq!(r.counters(ids[0]).matched_packets, 0);
    r.remove(&[ids[2]]);
    // Now the allow rule (100) comes before the drop (200).
    assert_eq!(r.run(&udp4(1, 53)), XDP_PASS);
    assert_eq!(r.h.packets(Outcome::AllowedRule), 1);
    // Another source meets the drop rule.
    assert_eq!(
        r.run(&udp4_with([198, 18, 0, 20], 1, 53, 64, &[0; 4])),
        XDP_DROP
    );
    // The allowlist wins over every rule.
    r.h.loaded
        .maps
        .set_list_presence(list_flags::RULES | list_flags::ALLOW_V4);
    floodwall::lists::ListMaps::take(&mut r.h.loaded.ebpf)
        .expect("lists")
        .add(
            ListKind::Allow,
            &["198.18.0.20/32".parse().expect("prefix")],
            None,
        )
        .expect("allow");
    r.h.write_limits();
    assert_eq!(
        r.run(&udp4_with([198, 18, 0, 20], 1, 53, 64, &[0; 4])),
        XDP_PASS
    );
    assert_eq!(r.h.packets(Outcome::Allowed), 1);
}

#[test]
fn an_allow_rule_passes_a_denylisted_source_and_monitor_mode_only_counts() {
    if !privileged("an_allow_rule_passes_a_denylisted_source_and_monitor_mode_only_counts") {
        return;
    }
    let mut r = Rules::new(open());
    r.add(&[("udp dport 53 allow", 100), ("udp dport 54 drop", 100)]);
    r.h.loaded
        .maps
        .set_list_presence(list_flags::RULES | list_flags::DENY_V4);
    floodwall::lists::ListMaps::take(&mut r.h.loaded.ebpf)
        .expect("lists")
        .add(
            ListKind::Deny,
            &["198.18.0.0/24".parse().expect("prefix")],
            None,
        )
        .expect("deny");
    r.h.write_limits();
    assert_eq!(
        r.run(&udp4(1, 53)),
        XDP_PASS,
        "the allow rule comes before the denylist"
    );
    assert_eq!(r.run(&udp4(1, 55)), XDP_DROP, "no rule: the denylist drops");
    r.h.change_limits(LimitsChange {
        mode: Some(floodwall::limits::FilterMode::Monitor),
        ..LimitsChange::default()
    });
    assert_eq!(r.run(&udp4(1, 54)), XDP_PASS, "monitor mode drops nothing");
    assert_eq!(r.h.packets(Outcome::MonitorRule), 1);
}

#[test]
fn a_rate_limit_holds_for_all_matches_together_across_cpus() {
    if !privileged("a_rate_limit_holds_for_all_matches_together_across_cpus") {
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(
        cpus >= 2,
        "this test needs two CPUs; the machine has {cpus}"
    );
    let mut r = Rules::new(open());
    // 100 packets/s with a burst of a tenth of a second: 10 packets at once.
    let ids = r.add(&[("udp dport 53 rate-limit 100pps", 100)]);
    let mut passed = 0;
    for i in 0..40 {
        let _cpu = pin_to_cpu(i % 2);
        // Two sources: the limit is the rule's, not a source's.
        let src = if i % 4 < 2 { ATTACKER4 } else { OTHER4 };
        passed += usize::from(r.run(&udp4_with(src, 1, 53, 64, &[0; 8])) == XDP_PASS);
    }
    assert_eq!(
        passed, 10,
        "a burst of 10 in total over two CPUs and two sources"
    );
    assert_eq!(r.h.packets(Outcome::DroppedRuleRate), 30);
    // A tenth of a second later, 10 more.
    r.h.advance(100_000_000);
    let passed = (0..20).filter(|_| r.run(&udp4(1, 53)) == XDP_PASS).count();
    assert_eq!(passed, 10);
    let c = r.counters(ids[0]);
    assert_eq!((c.matched_packets, c.dropped_packets), (60, 40));
}

#[test]
fn a_per_source_rule_limits_and_blocks_each_source_on_its_own() {
    if !privileged("a_per_source_rule_limits_and_blocks_each_source_on_its_own") {
        return;
    }
    let mut r = Rules::new(LimitsChange {
        block_for_ms: Some(10_000),
        ..open()
    });
    r.add(&[("udp dport 53 per-source 100pps", 100)]);
    let a = udp4_with(ATTACKER4, 1, 53, 64, &[0; 8]);
    let b = udp4_with(OTHER4, 1, 53, 64, &[0; 8]);
    let passed_a = (0..20).filter(|_| r.run(&a) == XDP_PASS).count();
    assert_eq!(passed_a, 10, "a burst of 10 for the first source");
    assert_eq!(
        (0..10).filter(|_| r.run(&b) == XDP_PASS).count(),
        10,
        "the second source has its own"
    );
    // The first source is blocked under the rule for the block time, not just limited.
    r.h.advance(1_000_000_000);
    assert_eq!(r.run(&a), XDP_DROP, "blocked for 10 s");
    assert_eq!(r.run(&udp4(1, 54)), XDP_PASS, "other shapes of it pass");
    r.h.advance(10_000_000_000);
    assert_eq!(r.run(&a), XDP_PASS, "the block ends");
}

#[test]
fn counters_say_what_matched_what_was_dropped_and_when() {
    if !privileged("counters_say_what_matched_what_was_dropped_and_when") {
        return;
    }
    let mut r = Rules::new(open());
    let ids = r.add(&[("udp dport 53 drop", 100), ("udp dport 54 monitor", 100)]);
    let frame = udp4(1, 53);
    r.run(&frame);
    r.h.advance(5_000_000);
    r.run(&frame);
    r.run(&udp4(1, 54));
    let drop = r.counters(ids[0]);
    assert_eq!(drop.matched_packets, 2);
    assert_eq!(drop.dropped_packets, 2);
    assert_eq!(drop.matched_bytes, 2 * frame.len() as u64);
    assert_eq!(drop.last_ns - drop.first_ns, 5_000_000);
    let monitor = r.counters(ids[1]);
    assert_eq!((monitor.matched_packets, monitor.dropped_packets), (1, 0));
    // A rule removed and another added in its slot starts from zero.
    r.remove(&[ids[0]]);
    let new = r.add(&[("udp dport 55 drop", 100)]);
    assert_eq!(r.counters(new[0]), RuleCounters::default());
}

#[test]
fn with_no_rule_in_its_buckets_a_packet_skips_the_rules_stage() {
    if !privileged("with_no_rule_in_its_buckets_a_packet_skips_the_rules_stage") {
        return;
    }
    let mut r = Rules::new(open());
    // A thousand rules on other ports: the packet's buckets are empty.
    let rules: Vec<String> = (1000..2000)
        .map(|p| format!("udp dport {p} drop"))
        .collect();
    let refs: Vec<(&str, u16)> = rules.iter().map(|t| (t.as_str(), 100)).collect();
    r.add(&refs);
    assert_eq!(r.run(&udp4(1, 53)), XDP_PASS);
    assert_eq!(
        r.run(&udp4(1, 1999)),
        XDP_DROP,
        "the thousandth rule matches"
    );
}

/// Each new set goes into the half of the buckets the program does not read, and each
/// bucket's position then points to it: sets written one after another (so into both
/// halves, twice) each decide alone, and a bucket that went is not read, although its
/// position still points into the other half.
#[test]
fn rule_sets_written_one_after_another_each_decide_alone() {
    if !privileged("rule_sets_written_one_after_another_each_decide_alone") {
        return;
    }
    let mut r = Rules::new(open());
    let mut previous = Vec::new();
    for (round, port) in [53u16, 54, 53, 55, 54].into_iter().enumerate() {
        // The new rule first, then the old one goes: two writes a round.
        let ids = r.add(&[(&format!("udp dport {port} drop"), 100)]);
        if !previous.is_empty() {
            r.remove(&previous);
        }
        previous = ids;
        for other in [53u16, 54, 55] {
            assert_eq!(
                r.drops(&udp4(1, other)),
                other == port,
                "round {round}: only dport {port} is dropped, not {other}"
            );
        }
    }
}

/// A packet a rule decided is sampled with the rule's slot and its outcome.
#[test]
fn a_sample_names_the_rule_that_decided_its_packet() {
    if !privileged("a_sample_names_the_rule_that_decided_its_packet") {
        return;
    }
    let _cpu = pin_to_cpu(0);
    let mut r = Rules::new(open());
    let mut samples_of =
        floodwall::traffic::sample::Sampler::take(&mut r.h.loaded.ebpf).expect("sample maps");
    let ids = r.add(&[("udp dport 9 drop", 100), ("udp dport 10 allow", 100)]);
    samples_of.set_budget(2).expect("budget");
    assert_eq!(r.run(&udp4(40_000, 9)), XDP_DROP);
    assert_eq!(r.run(&udp4(40_000, 10)), XDP_PASS);
    let (samples, _) = samples_of.drain();
    let slot = |id| r.set.get(id).expect("rule").slot;
    let seen: Vec<_> = samples.iter().map(|s| (s.outcome, s.rule_slot)).collect();
    assert_eq!(
        seen,
        [
            (Outcome::DroppedRule, Some(slot(ids[0]))),
            (Outcome::AllowedRule, Some(slot(ids[1])))
        ]
    );
}

/// The rules stage samples only the packets the main program found due: at a stride of
/// one in four, the 4th and the 8th of eight packets a rule drops.
#[test]
fn the_rules_stage_samples_only_the_packets_due() {
    if !privileged("the_rules_stage_samples_only_the_packets_due") {
        return;
    }
    let _cpu = pin_to_cpu(0);
    let mut r = Rules::new(open());
    let mut samples_of =
        floodwall::traffic::sample::Sampler::take(&mut r.h.loaded.ebpf).expect("sample maps");
    r.add(&[("udp dport 9 drop", 100)]);
    samples_of.set_budget(100).expect("budget");
    samples_of
        .set_stride(filter_common::SampleStride { shift: 2, phase: 0 })
        .expect("stride");
    for sport in 1..=8 {
        assert_eq!(r.run(&udp4(sport, 9)), XDP_DROP);
    }
    let (samples, _) = samples_of.drain();
    let sports: Vec<_> = samples
        .iter()
        .map(|s| {
            s.packet
                .as_ref()
                .and_then(|p| p.ports)
                .map(|(sport, _)| sport)
        })
        .collect();
    assert_eq!(sports, [Some(4), Some(8)]);
}

/// `source known|unknown`: whether the daemon's baseline saw the source use the packet's
/// service (protocol and destination port), as the daemon writes it into the kernel.
#[test]
fn source_known_and_unknown_follow_what_the_baseline_saw_use_the_service() {
    if !privileged("source_known_and_unknown_follow_what_the_baseline_saw_use_the_service") {
        return;
    }
    let mut r = Rules::new(open());
    let mut known = KnownSources::take(&mut r.h.loaded.ebpf).expect("the known sources' map");
    let seen: TestPacket = format!(
        "udp from {} to {} sport 1 dport 53",
        std::net::Ipv4Addr::from(ATTACKER4),
        std::net::Ipv4Addr::from(SERVER4)
    )
    .parse()
    .expect("a packet");
    let sample = Sampled {
        frame_len: 60,
        packet: Some(seen),
        class: Class::Udp,
        outcome: Outcome::Passed,
        rule_slot: None,
        cpu: 0,
        frame: Vec::new(),
    };
    let mut baseline = Baseline::default();
    baseline.learn(
        Second {
            samples: &[sample],
            packets_by_cpu: &[1],
            counted: &std::collections::BTreeMap::new(),
        },
        &std::collections::BTreeSet::new(),
    );
    known.sync(&baseline).expect("write the known sources");
    let ids = r.add(&[("udp dport 53,54 source unknown drop", 100)]);
    let from = |src, dport| udp4_with(src, 1, dport, 64, &[0; 8]);
    assert!(!r.drops(&from(ATTACKER4, 53)), "a known source passes");
    assert!(r.drops(&from(OTHER4, 53)), "an unknown source is dropped");
    assert!(
        r.drops(&from(ATTACKER4, 54)),
        "a source is known for the service it was seen using only"
    );
    r.remove(&ids);
    r.add(&[("udp dport 53 source known drop", 100)]);
    assert!(r.drops(&from(ATTACKER4, 53)), "`source known` matches it");
    assert!(!r.drops(&from(OTHER4, 53)), "and not the others");
    // A baseline that no longer knows it: the kernel follows.
    known
        .sync(&Baseline::default())
        .expect("write the known sources");
    assert!(!r.drops(&from(ATTACKER4, 53)), "forgotten, it is unknown");
}

/// The per-service counters: every IP packet once, by its protocol and destination port,
/// whichever stage decided it (the main program, the rules stage, the policy after the
/// rules), in both families; TCP and UDP of one port apart.
#[test]
fn every_packet_is_counted_once_by_its_service_whatever_decides_it() {
    if !privileged("every_packet_is_counted_once_by_its_service_whatever_decides_it") {
        return;
    }
    let mut r = Rules::new(open());
    let counters = ServiceCounters::take(&mut r.h.loaded.ebpf).expect("the counters");
    r.add(&[("udp dport 9 drop", 100), ("udp dport 10 allow", 100)]);
    let service = |proto, port| Service { proto, port };
    let (dropped, allowed, after) = (udp4(1, 9), udp6(1, 10), udp4(1, 11));
    let (syn, ping) = (tcp4(9, true, false), icmp4(8, 0));
    for (frame, times) in [
        (&dropped, 3),
        (&allowed, 2),
        (&after, 4),
        (&syn, 5),
        (&ping, 6),
    ] {
        for _ in 0..times {
            r.run(frame);
        }
    }
    let len = |f: &Vec<u8>, n: u64| (n, n * f.len() as u64);
    let cases = [
        (service(17, 9), len(&dropped, 3)),
        (service(17, 10), len(&allowed, 2)),
        (service(17, 11), len(&after, 4)),
        (service(6, 9), len(&syn, 5)),
        (service(1, 0), len(&ping, 6)),
        (service(17, 12), (0, 0)),
    ];
    for (service, expected) in cases {
        assert_eq!(
            counters.counted(service).expect("read"),
            expected,
            "{service}"
        );
    }
    // A frame that is not IP has no service.
    let mut arp = udp4(1, 9);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    r.run(&arp);
    assert_eq!(
        counters.counted(service(17, 9)).expect("read"),
        len(&dropped, 3)
    );
}

/// The service a sample names is the one its packet was counted under, whatever the
/// frame's shape: both families, TCP, UDP, ICMP, an IPv6 extension header, IPv4 and IPv6
/// later fragments (no ports: port 0 on both sides), and an IPv6 frame whose extension
/// headers push its ports past the sample's 128 bytes (the daemon keeps that one on the
/// samples' estimate: `counted::ports_unseen`).
#[test]
fn a_sample_names_the_service_its_packet_was_counted_under() {
    if !privileged("a_sample_names_the_service_its_packet_was_counted_under") {
        return;
    }
    let mut r = Rules::new(open());
    let counters = ServiceCounters::take(&mut r.h.loaded.ebpf).expect("the counters");
    let mut samples_of =
        floodwall::traffic::sample::Sampler::take(&mut r.h.loaded.ebpf).expect("sample maps");
    let long_ext = {
        // Destination options of 72 bytes (length 8 units of 8, after the first 8).
        let mut h = vec![0u8; 72];
        h[1] = 8;
        h
    };
    let shapes: [(&str, Vec<u8>, bool); 8] = [
        ("udp4", udp4(1, 53), true),
        ("udp6", udp6(1, 5_353), true),
        ("tcp4", tcp4(443, true, false), true),
        ("icmp4", icmp4(8, 0), true),
        (
            "udp6 with a hop-by-hop header",
            with_ipv6_ext(udp6(1, 9_999), &[(0, super::ext8())]),
            true,
        ),
        (
            "udp4, later fragment",
            with_frags(udp4(1, 53), 0x0010),
            true,
        ),
        (
            "udp6, later fragment",
            with_ipv6_ext(udp6(1, 53), &[(44, super::frag6(2, false))]),
            true,
        ),
        (
            "udp6, ports past the capture",
            with_ipv6_ext(udp6(1, 9_999), &[(60, long_ext)]),
            false,
        ),
    ];
    for (name, frame, seen) in shapes {
        samples_of.set_budget(1).expect("budget");
        r.run(&frame);
        let (samples, _) = samples_of.drain();
        let packet = samples[0].packet.clone().expect("an IP packet");
        let service = Service::of(&packet);
        let unseen = floodwall::traffic::counted::ports_unseen(&samples);
        assert_eq!(unseen.is_empty(), seen, "{name}: {packet:?}");
        if seen {
            let (before, _) = counters.counted(service).expect("read");
            r.run(&frame);
            let (after, _) = counters.counted(service).expect("read");
            assert_eq!(after - before, 1, "{name}: counted as {service}");
        }
    }
    // The frame whose ports the sample did not see was counted under its real port.
    let (n, _) = counters
        .counted(Service {
            proto: 17,
            port: 9_999,
        })
        .expect("read");
    assert!(n >= 3, "udp/9999: {n}");
}

/// A pin directory in bpffs for one test, removed when dropped.
struct PinnedState(std::path::PathBuf);

impl PinnedState {
    fn new(name: &str) -> Self {
        let pins = floodwall::pin::PinDir::new(
            std::path::Path::new("/sys/fs/bpf/floodwall-test"),
            &format!("{name}-{}", std::process::id()),
        );
        pins.prepare().expect("bpffs and the test's directory");
        Self(pins.dir().join("maps"))
    }
}

impl Drop for PinnedState {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
            // The root too, once no other test's directory is in it.
            if let Some(root) = dir.parent() {
                let _ = std::fs::remove_dir(root);
            }
        }
    }
}

/// A daemon that starts while an earlier one's program is attached loads its program with
/// the pinned maps, and only then swaps it in. Until then the attached program must go on
/// calling its own stages: they read the per-CPU copy of the parser's results that their
/// own main program wrote. Another object's stages would read their object's copy, which
/// holds another packet or none, and decide this one by it (here: charge it to the source
/// `::`).
#[test]
fn an_attached_program_keeps_its_own_stages_while_a_new_one_loads_with_its_maps() {
    if !privileged("an_attached_program_keeps_its_own_stages_while_a_new_one_loads_with_its_maps") {
        return;
    }
    let _cpu = pin_to_cpu(0);
    let pinned = PinnedState::new("stages");
    let options = LoadOptions {
        pin_maps: Some(pinned.0.clone()),
        ..Harness::options(false)
    };
    let mut attached = Rules::of(Harness::loaded_as(open(), &options));
    // A rule in udp/53's bucket that the frames below do not match: they go through the
    // rules stage to the policy after it, a program of its own.
    attached.add(&[("udp dport 53 ttl 1 drop", 100)]);
    assert_eq!(attached.run(&udp4(40_000, 53)), XDP_PASS);
    // The new daemon's load, with the same pinned maps.
    let _starting = floodwall::loader::load(&options).expect("the second load");
    let frame = udp4_with(OTHER4, 40_000, 53, 64, &[0; 18]);
    assert_eq!(attached.run(&frame), XDP_PASS);
    assert!(
        attached.h.state(SourceKey::from_ipv4(OTHER4)).is_some(),
        "the packet is charged to its own source"
    );
    assert!(
        attached.h.state(SourceKey::default()).is_none(),
        "no packet is charged to a source read from another program's copy"
    );
}
