//! The rules stage against `rules test`'s matcher: for random rule sets and frames, the XDP
//! program (main program, rules stage, after-rules program, through `BPF_PROG_TEST_RUN`)
//! must decide as `RuleSet::first_match` over `TestPacket::from_frame` says, frame by
//! frame, and count each rule's matches and drops as it says.
//!
//! The two are written apart: the program's matcher in `filter-ebpf/src/rules.rs` over its
//! parser, the dry run's in `filter-user/src/rules/dry_run.rs` over `rules/frame.rs`. The
//! frame's class and whether its L4 header is whole come from the reference model's parser
//! (`floodwall_tests::model`).
//!
//! Each phase writes a new rule set: rules drawn from a pool of frames (some of each frame's
//! fields, exact or as a range, now and then one changed so that it misses), with random
//! actions among `drop`, `allow` and `monitor`, and priorities that tie. Its frames are the
//! pool's and new ones, well-formed and mutated. Limits are off, so what the rules leave
//! undecided passes (or, with its L4 header cut short, is malformed).

use std::{collections::HashMap, fmt::Write as _, net::IpAddr};

use filter_common::{COUNTER_SLOTS, Class, LimitsConfig, Outcome, list_flags};
use floodwall::{
    limits::{FilterMode, Limits, LimitsChange},
    rules::{Action, NewRule, Origin, RuleMaps, RuleSet, TestPacket},
};
use floodwall_tests::{
    frames::Rng,
    model::{Parsed, XDP_DROP, XDP_PASS, parse},
};

use super::{OFF, Pinned, Program, mutate, shaped, spoofed};

/// Phases, each with its own rule set.
const PHASES: usize = 24;
/// Frames a rule set is drawn from, and that come back among the phase's frames.
const POOL: usize = 48;

/// The outcome the program must count for a frame, and the rule that decides it.
struct Expected {
    verdict: u32,
    slot: u32,
    rule: Option<u32>,
}

#[test]
fn the_rules_decide_as_rules_test_on_every_frame() {
    if !floodwall_tests::privileged("the_rules_decide_as_rules_test_on_every_frame") {
        return;
    }
    let settings = super::settings();
    // A third of the main test's frames: each costs a rules stage and a counter read.
    let frames_per_phase = (settings.frames / 3 / PHASES).max(100);
    let mut rng = Rng::new(settings.seed ^ 0x5275_6c65);
    let _pinned = Pinned::here();
    let (mut program, mut rule_maps) = load(settings.frames);

    let mut current = RuleSet::default();
    let (mut checked, mut decided_by_rules) = (0_usize, 0_usize);
    let mut by_action: HashMap<String, usize> = HashMap::new();
    for phase in 0..PHASES {
        let pool: Vec<Vec<u8>> = (0..POOL).map(|_| frame(&mut rng)).collect();
        // Every rule of the last phase goes, the new ones come: ids are new, slots are
        // reused, and a reused slot's counters start at zero.
        let ids: Vec<u32> = current.rules().iter().map(|r| r.id).collect();
        let emptied = if ids.is_empty() {
            current.clone()
        } else {
            current
                .with_removed(&ids)
                .expect("remove the last phase's rules")
        };
        let next = emptied
            .with_added(&new_rules(&mut rng, &pool), 0)
            .expect("the drawn rules are valid")
            .0;
        rule_maps
            .write(&current, &next)
            .unwrap_or_else(|e| panic!("phase {phase}: the rules must be written: {e}"));
        current = next;
        let mut matched: HashMap<u32, (u64, u64)> = HashMap::new();
        for n in 0..frames_per_phase {
            let frame = if rng.chance(500) {
                rng.pick(&pool).clone()
            } else {
                frame(&mut rng)
            };
            let expected = expect(&current, &frame);
            let before = program.counter(expected.slot);
            let verdict = program.run(&frame);
            let after = program.counter(expected.slot);
            let rule = expected.rule.and_then(|id| current.get(id));
            let hex = frame.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            });
            assert!(
                verdict == expected.verdict && after.packets == before.packets + 1,
                "phase {phase}, frame {n} (seed {:#x}): the program returned {verdict} and \
                 counted {} in slot {}; rules test says {} in that slot, by {}\n\
                 frame {hex}\npacket {:?}\nrules:\n{}",
                settings.seed,
                after.packets - before.packets,
                expected.slot,
                expected.verdict,
                rule.map_or_else(
                    || "no rule".to_owned(),
                    |r| format!("rule {} `{}`", r.id, r.spec)
                ),
                TestPacket::from_frame(&frame).map(|p| p.to_string()),
                describe(&current),
            );
            if let Some(rule) = rule {
                let counts = matched.entry(rule.slot).or_default();
                counts.0 += 1;
                if rule.spec.action == Action::Drop {
                    counts.1 += 1;
                }
                decided_by_rules += 1;
                let action = rule.spec.action.to_string();
                *by_action.entry(action).or_default() += 1;
            }
            checked += 1;
        }
        check_rule_counters(phase, &current, &rule_maps, &matched);
    }
    println!(
        "rules differential: {checked} frames over {PHASES} rule sets, {decided_by_rules} met \
         a rule ({by_action:?}; seed {:#x})",
        settings.seed
    );
    for action in ["drop", "allow", "monitor"] {
        assert!(
            by_action.contains_key(action),
            "no frame met a `{action}` rule"
        );
    }
    assert!(
        decided_by_rules > checked / 10,
        "too few frames met a rule to test the rules: {decided_by_rules} of {checked}"
    );
}

/// The program with its rules' programs, limits off, and the rules' maps.
fn load(frames: usize) -> (Program, RuleMaps) {
    let mut program = Program::load_with_rules(frames);
    let rule_maps = RuleMaps::take(&mut program.loaded.ebpf).expect("the rules' maps");
    let limits = Limits::default()
        .apply(&LimitsChange {
            pps: OFF,
            bps: OFF,
            mode: Some(FilterMode::Enforce),
            ..LimitsChange::default()
        })
        .expect("limits")
        .to_kernel();
    program
        .loaded
        .maps
        .write_limits(&LimitsConfig {
            list_flags: limits.list_flags | list_flags::RULES,
            ..limits
        })
        .expect("write limits");

    (program, rule_maps)
}

/// Each rule's matched and dropped packets, as the program counted them, against what the
/// phase's frames should have given it.
fn check_rule_counters(
    phase: usize,
    set: &RuleSet,
    rule_maps: &RuleMaps,
    matched: &HashMap<u32, (u64, u64)>,
) {
    for rule in set.rules() {
        let counters = rule_maps.counters(rule.slot).expect("rule counters");
        assert_eq!(
            (counters.matched_packets, counters.dropped_packets),
            matched.get(&rule.slot).copied().unwrap_or_default(),
            "phase {phase}: rule {} `{}`: matched and dropped packets",
            rule.id,
            rule.spec
        );
    }
}

/// A frame of the traffic: well-formed, or mutated (which also varies TTL, DSCP, ports,
/// flags and payload bytes, which the generator keeps fixed).
fn frame(rng: &mut Rng) -> Vec<u8> {
    let src = spoofed(rng);
    let built = shaped(rng, src).build();
    if rng.chance(450) {
        mutate(rng, built)
    } else {
        built
    }
}

/// What the program must do with `frame` under `set`.
fn expect(set: &RuleSet, frame: &[u8]) -> Expected {
    let slot = |class: Class, outcome: Outcome| class as u32 * COUNTER_SLOTS + outcome as u32;
    let (class, l4_ok) = match parse(frame) {
        Parsed::Source { class, l4_ok, .. } => (class, l4_ok),
        Parsed::NonIp => {
            return Expected {
                verdict: XDP_PASS,
                slot: slot(Class::Other, Outcome::NonIp),
                rule: None,
            };
        }
        Parsed::Malformed => {
            return Expected {
                verdict: XDP_PASS,
                slot: slot(Class::Other, Outcome::Malformed),
                rule: None,
            };
        }
    };
    let packet = TestPacket::from_frame(frame).unwrap_or_else(|e| {
        panic!("the model's parser found a source, rules test's did not ({e}) in {frame:02x?}")
    });
    let passed = if l4_ok {
        Outcome::Passed
    } else {
        Outcome::Malformed
    };
    match set.first_match(&packet) {
        Some(rule) => {
            let (verdict, outcome) = match rule.spec.action {
                Action::Drop => (XDP_DROP, Outcome::DroppedRule),
                Action::Allow => (XDP_PASS, Outcome::AllowedRule),
                _ => (XDP_PASS, passed),
            };
            Expected {
                verdict,
                slot: slot(class, outcome),
                rule: Some(rule.id),
            }
        }
        None => Expected {
            verdict: XDP_PASS,
            slot: slot(class, passed),
            rule: None,
        },
    }
}

/// The rules of a phase: 1 to 24, each from a frame of the pool that has a source.
fn new_rules(rng: &mut Rng, pool: &[Vec<u8>]) -> Vec<NewRule> {
    let packets: Vec<TestPacket> = pool
        .iter()
        .filter_map(|f| TestPacket::from_frame(f).ok())
        .collect();
    let wanted = usize::try_from(rng.range(1, 24)).expect("small");
    let mut rules = Vec::new();
    // A drawn rule the syntax refuses (conflicting fields) is drawn again; the bound keeps a
    // pool without packets from looping.
    for _ in 0..wanted * 8 {
        if rules.len() == wanted || packets.is_empty() {
            break;
        }
        let packet = rng.pick(&packets).clone();
        let text = rule_text(rng, &packet);
        let priority = u16::try_from(rng.range(1, 4)).expect("small");
        // A rule the set has already (same text, same priority) is refused as a duplicate.
        if let Ok(spec) = text.parse::<floodwall::rules::RuleSpec>()
            && !rules
                .iter()
                .any(|r: &NewRule| r.priority == priority && r.spec == spec)
        {
            rules.push(NewRule {
                spec,
                priority,
                comment: None,
                for_ms: None,
                origin: Origin::Cli,
            });
        }
    }
    rules
}

/// A rule with some of `p`'s fields, exact or as a range around its value, now and then
/// one of them moved off it, and a random action.
fn rule_text(rng: &mut Rng, p: &TestPacket) -> String {
    let mut words = Vec::new();
    // Each field is named with this chance (per mille); one rule in four names none beside
    // its protocol.
    let sparse = rng.chance(250);
    let name = |rng: &mut Rng| !sparse && rng.chance(300);
    if name(rng) {
        words.push(format!("from {}", prefix(rng, p.src)));
    }
    if name(rng) {
        words.push(format!("to {}", prefix(rng, p.dst)));
    }
    if rng.chance(850) {
        words.push(format!("proto {}", moved(rng, u64::from(p.proto), 255)));
    }
    l4_words(rng, p, sparse, &mut words);
    if name(rng) {
        words.push(format!(
            "len {}",
            value_or_range(rng, u64::from(p.len), 65_535)
        ));
    }
    if name(rng) {
        words.push(format!("dscp {}", moved(rng, u64::from(p.dscp), 63)));
    }
    if name(rng) {
        let frag = match p.fragment {
            filter_common::fragment::FIRST => "first",
            filter_common::fragment::LATER => "later",
            _ => "none",
        };
        words.push(format!("frag {frag}"));
    }
    if name(rng) {
        words.push(format!(
            "ttl {}",
            value_or_range(rng, u64::from(p.ttl), 255)
        ));
    }
    if let Some(payload) = p.payload.as_ref().filter(|_| name(rng)) {
        let offset = usize::try_from(rng.below(24)).expect("small");
        let len = usize::try_from(rng.range(1, 16)).expect("small");
        let mut bytes: Vec<u8> = (0..len)
            .map(|i| payload.bytes.get(offset + i).copied().unwrap_or(0))
            .collect();
        if rng.chance(80) {
            bytes[0] ^= 0x20;
        }
        let hex = |b: &[u8]| {
            b.iter().fold(String::new(), |mut s, x| {
                let _ = write!(s, "{x:02x}");
                s
            })
        };
        let mask: Vec<u8> = (0..len)
            .map(|_| if rng.chance(700) { 0xff } else { rng.byte() })
            .collect();
        let masked: Vec<u8> = bytes.iter().zip(&mask).map(|(b, m)| b & m).collect();
        words.push(format!("payload {offset}:{}/{}", hex(&masked), hex(&mask)));
    }
    words.push((*rng.pick(&["drop", "drop", "allow", "monitor"])).to_owned());
    words.join(" ")
}

/// `rule_text`'s words of the L4 header: ports, TCP flags, ICMP type and code.
fn l4_words(rng: &mut Rng, p: &TestPacket, sparse: bool, words: &mut Vec<String>) {
    let name = |rng: &mut Rng| !sparse && rng.chance(300);
    if let Some((sport, dport)) = p.ports {
        if name(rng) {
            words.push(format!(
                "sport {}",
                value_or_range(rng, u64::from(sport), 65_535)
            ));
        }
        if rng.chance(500) {
            words.push(format!(
                "dport {}",
                value_or_range(rng, u64::from(dport), 65_535)
            ));
        }
        if p.proto == 6 && name(rng) {
            let mask = rng.byte() | 1;
            let want = p.tcp_flags & mask;
            let flags: Vec<String> = ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"]
                .iter()
                .enumerate()
                .filter(|(bit, _)| mask & (1 << bit) != 0)
                .map(|(bit, flag)| {
                    if want & (1 << bit) != 0 {
                        (*flag).to_owned()
                    } else {
                        format!("!{flag}")
                    }
                })
                .collect();
            words.push(format!("flags {}", flags.join(",")));
        }
    }
    if let Some((kind, code)) = p.icmp {
        if name(rng) {
            words.push(format!("icmp-type {}", moved(rng, u64::from(kind), 255)));
        }
        if name(rng) {
            words.push(format!("icmp-code {}", moved(rng, u64::from(code), 255)));
        }
    }
}

/// `v`, now and then moved off by a little (within `0..=max`), so that a rule misses.
fn moved(rng: &mut Rng, v: u64, max: u64) -> u64 {
    if rng.chance(80) {
        (v + rng.range(1, 3)) % (max + 1)
    } else {
        v
    }
}

/// `v` (now and then moved off), as a value or a range around it within `0..=max`.
fn value_or_range(rng: &mut Rng, v: u64, max: u64) -> String {
    let v = if rng.chance(80) {
        (v + rng.range(1, 9)) % (max + 1)
    } else {
        v
    };
    if rng.chance(500) {
        v.to_string()
    } else {
        let low = v.saturating_sub(rng.below(8));
        let high = (v + rng.below(8)).min(max);
        format!("{low}-{high}")
    }
}

/// A prefix of `addr`: its own address or a shorter prefix of it (host bits cleared).
fn prefix(rng: &mut Rng, addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => {
            let len = u32::try_from(rng.range(8, 32)).expect("small");
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            format!("{}/{len}", std::net::Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let len = u32::try_from(rng.range(16, 128)).expect("small");
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            format!("{}/{len}", std::net::Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// The rules in force, one a line, for a mismatch's report.
fn describe(set: &RuleSet) -> String {
    let mut rules: Vec<_> = set.rules().iter().collect();
    rules.sort_by_key(|r| r.rank());
    rules.iter().fold(String::new(), |mut s, r| {
        let _ = writeln!(s, "  {} (priority {}): {}", r.id, r.priority, r.spec);
        s
    })
}
