//! The detector over made-up seconds of samples, with a fake rule holder.

#![expect(
    clippy::cast_possible_truncation,
    clippy::float_cmp,
    reason = "test values are small; a rate that must not change is compared exactly"
)]
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::{
    rules::RuleSpec,
    traffic::{
        sample::Sampled,
        test_packets::{self, sampled},
    },
};

const PORT: u16 = 7777;

/// Rules as the daemon would hold them: ids from 1, and what each matched, counted by
/// the test as the kernel would.
#[derive(Default)]
struct Rules {
    next: u32,
    in_force: BTreeMap<u32, RuleSpec>,
    matches: BTreeMap<u32, u64>,
    refuse: bool,
}

impl Mitigator for Rules {
    fn install(&mut self, signature: &Signature) -> Result<u32, String> {
        if self.refuse {
            return Err("the rule table is full".into());
        }
        self.next += 1;
        self.in_force.insert(self.next, signature.rule.clone());
        Ok(self.next)
    }
    fn withdraw(&mut self, id: u32) -> Result<(), String> {
        self.in_force
            .remove(&id)
            .map(|_| ())
            .ok_or_else(|| format!("no rule {id}"))
    }
}

fn udp(src: u8, sport: u16, len: u16, payload: &[u8]) -> Sampled {
    sampled(test_packets::udp([1, src], (sport, PORT), len, 64, payload))
}

fn user(i: u16) -> Sampled {
    udp(1, 40_000 + i, 40 + i % 20, &[b'q', i as u8, 0, 7])
}

struct Run {
    detector: Detector,
    rules: Rules,
    /// The services' rates as the per-service counters give them (none: the samples'
    /// estimate).
    counted: BTreeMap<Service, (f64, f64)>,
    t: u64,
    log: Vec<Happened>,
}

impl Run {
    fn new(config: DetectConfig) -> Self {
        Self {
            detector: Detector::new(config, Baseline::default()),
            rules: Rules::default(),
            counted: BTreeMap::new(),
            t: 0,
            log: Vec::new(),
        }
    }

    /// One second: `users` samples of the users and `flood` of `make`, standing for
    /// `packets`; the rules in force count what they match (scaled likewise).
    fn second(
        &mut self,
        users: u16,
        flood: u16,
        packets: u64,
        make: &dyn Fn(u16) -> Sampled,
    ) -> Vec<Happened> {
        let mut samples: Vec<Sampled> = (0..users).map(user).collect();
        samples.extend((0..flood).map(make));
        let scale = packets / samples.len().max(1) as u64;
        for (id, rule) in &self.rules.in_force {
            let n = samples
                .iter()
                .filter(|s| s.packet.as_ref().is_some_and(|p| rule.matches(p)))
                .count() as u64;
            *self.rules.matches.entry(*id).or_default() += n * scale;
        }
        self.t += 1;
        let matches = self.rules.matches.clone();
        let happened = self.detector.second(
            Observed {
                second: Second {
                    samples: &samples,
                    packets_by_cpu: &[packets],
                    counted: &self.counted,
                },
                at: UNIX_EPOCH + Duration::from_secs(1_800_000_000 + self.t),
                rule_matches: &matches,
            },
            &mut self.rules,
        );
        self.log.extend(happened.clone());
        happened
    }
}

fn junk(i: u16) -> Sampled {
    udp((i % 200) as u8, 1024 + i, 92, &[0x66; 16])
}

fn other_junk(i: u16) -> Sampled {
    udp((i % 200) as u8, 1024 + i, 300, &[0xab; 16])
}

#[test]
fn the_counted_rate_wins_over_the_samples_estimate_both_ways() {
    let service = Service {
        proto: 17,
        port: PORT,
    };
    let mut run = Run::new(DetectConfig::default());
    run.counted.insert(service, (100.0, 100.0 * 60.0 * 8.0));
    for _ in 0..10 {
        assert!(run.second(100, 0, 100, &junk).is_empty());
    }
    // The samples' estimate says 1,000 times the normal rate (the CPU counted 100,000
    // packets), the counters say normal: the packets were another service's.
    assert!(run.second(100, 0, 100_000, &junk).is_empty());
    // The samples look normal, the counters say 100,000 a second: an attack, even with
    // none of the flood in the samples.
    run.counted.insert(service, (100_000.0, 1e8));
    let flooded = run.second(100, 0, 100, &junk);
    assert!(matches!(flooded[0], Happened::Started(_)), "{flooded:?}");
    let attack = &run.detector.attacks()[0];
    assert_eq!(attack.peak_pps, 100_000.0);
}

#[test]
fn a_flood_is_found_mitigated_replaced_when_it_changes_and_withdrawn_when_it_ends() {
    let mut run = Run::new(DetectConfig::default());
    // Normal: 100 packets a second, all sampled, for the minimum baseline.
    for _ in 0..10 {
        assert!(run.second(100, 0, 100, &junk).is_empty());
    }
    // The flood: 100,000 packets a second, its samples 90 % junk.
    let first = run.second(2, 1998, 100_000, &junk);
    assert!(matches!(first[0], Happened::Started(_)), "{first:?}");
    assert!(matches!(first[1], Happened::Mitigated(_)), "{first:?}");
    let rule = run
        .rules
        .in_force
        .values()
        .next()
        .expect("a rule in force")
        .to_string();
    assert_eq!(
        rule,
        format!("udp dport {PORT} len 92 ttl 64 payload 0:66666666666666666666666666666666 drop")
    );
    let baseline_pps = run
        .detector
        .baseline
        .get(&Service {
            proto: 17,
            port: PORT,
        })
        .expect("learned")
        .pps;
    // While it goes on, the one signature covers it, and the baseline learns nothing.
    for _ in 0..5 {
        assert!(run.second(2, 1998, 100_000, &junk).is_empty());
    }
    let attack = &run.detector.attacks()[0];
    assert!(attack.active() && attack.signatures.len() == 1 && attack.peak_pps >= 100_000.0);
    assert!(attack.sources_seen >= 200);
    assert_eq!(
        run.detector
            .baseline
            .get(&Service {
                proto: 17,
                port: PORT
            })
            .expect("kept")
            .pps,
        baseline_pps
    );
    // It changes shape: a second signature, the first stays while it still matches.
    let changed = run.second(2, 1998, 100_000, &other_junk);
    assert!(
        matches!(&changed[..], [Happened::Mitigated(_)]),
        "{changed:?}"
    );
    assert_eq!(run.rules.in_force.len(), 2);
    // The old vector is gone: its rule is withdrawn after the quiet time (counted from
    // the second the flood changed).
    for _ in 0..8 {
        assert!(run.second(2, 1998, 100_000, &other_junk).is_empty());
    }
    let withdrawn = run.second(2, 1998, 100_000, &other_junk);
    assert!(
        matches!(&withdrawn[..], [Happened::Withdrawn(_)]),
        "{withdrawn:?}"
    );
    assert_eq!(run.rules.in_force.len(), 1);
    // The flood stops: the last rule goes after the quiet time, and the attack ends.
    for _ in 0..9 {
        assert!(run.second(100, 0, 100, &junk).is_empty());
    }
    let end = run.second(100, 0, 100, &junk);
    assert!(
        matches!(&end[..], [Happened::Withdrawn(_), Happened::Ended(_)]),
        "{end:?}"
    );
    assert!(run.rules.in_force.is_empty());
    let attack = &run.detector.attacks()[0];
    assert_eq!(attack.signatures.len(), 2);
    assert!(
        attack
            .signatures
            .iter()
            .all(|s| s.withdrawn.is_some() && s.matched_packets > 0)
    );
    // Normal traffic is learned again.
    run.second(100, 0, 100, &junk);
    assert!(run.detector.baseline.learned_s > 30);
}

#[test]
fn nothing_is_enforced_before_the_minimum_baseline_or_when_off() {
    let mut run = Run::new(DetectConfig::default());
    for _ in 0..9 {
        run.second(100, 0, 100, &junk);
    }
    assert!(
        run.second(2, 1998, 100_000, &junk).is_empty(),
        "9 s of baseline"
    );
    let mut off = Run::new(DetectConfig {
        mode: SignatureMode::Off,
        ..DetectConfig::default()
    });
    for _ in 0..20 {
        off.second(100, 0, 100, &junk);
    }
    assert!(off.second(2, 1998, 100_000, &junk).is_empty());
    assert!(off.detector.attacks().is_empty());
}

#[test]
fn monitor_mode_puts_in_monitor_rules_and_caps_and_refusals_are_said_once() {
    let mut run = Run::new(DetectConfig {
        mode: SignatureMode::Monitor,
        ..DetectConfig::default()
    });
    for _ in 0..10 {
        run.second(100, 0, 100, &junk);
    }
    run.second(2, 1998, 100_000, &junk);
    let rule = run
        .rules
        .in_force
        .values()
        .next()
        .expect("a rule")
        .to_string();
    assert!(rule.ends_with(" monitor"), "{rule}");

    let mut capped = Run::new(DetectConfig {
        max_rules: 0,
        ..DetectConfig::default()
    });
    for _ in 0..10 {
        capped.second(100, 0, 100, &junk);
    }
    let said = capped.second(2, 1998, 100_000, &junk);
    assert!(
        matches!(&said[..], [Happened::Started(_), Happened::Unmitigated(l)] if l.contains("the most allowed")),
        "{said:?}"
    );
    assert!(
        capped.second(2, 1998, 100_000, &junk).is_empty(),
        "said once"
    );

    let mut refused = Run::new(DetectConfig::default());
    refused.rules.refuse = true;
    for _ in 0..10 {
        refused.second(100, 0, 100, &junk);
    }
    let said = refused.second(2, 1998, 100_000, &junk);
    assert!(
        matches!(&said[..], [Happened::Started(_), Happened::Unmitigated(l)] if l.contains("table is full")),
        "{said:?}"
    );
}

#[test]
fn a_flash_crowd_is_an_attack_without_a_signature() {
    let mut run = Run::new(DetectConfig::default());
    for _ in 0..10 {
        run.second(100, 0, 100, &junk);
    }
    // Twentyfold more of the users' own shape.
    let said = run.second(200, 0, 2_000 * 20, &junk);
    assert!(
        matches!(&said[..], [Happened::Started(_), Happened::Unmitigated(l)] if l.contains("flash crowd")),
        "{said:?}"
    );
    assert!(run.rules.in_force.is_empty());
}

#[test]
fn a_flood_that_starts_before_the_baseline_is_ready_is_not_learned_and_then_detected() {
    let mut run = Run::new(DetectConfig::default());
    // Five seconds of the user, then the flood, before the 10 s of a ready baseline.
    for _ in 0..5 {
        run.second(100, 0, 100, &junk);
    }
    for _ in 0..5 {
        assert!(
            run.second(2, 1998, 100_000, &junk).is_empty(),
            "not ready yet"
        );
    }
    let baseline = run
        .detector
        .baseline
        .get(&Service {
            proto: 17,
            port: PORT,
        })
        .expect("the user's");
    assert!(
        baseline.pps < 200.0,
        "the flood was not learned: {baseline:?}"
    );
    // Ready after 10 s: the flood is an attack, and its signature comes.
    let said = run.second(2, 1998, 100_000, &junk);
    assert!(
        matches!(&said[..], [Happened::Started(_), Happened::Mitigated(_)]),
        "{said:?}"
    );
}

#[test]
fn a_flood_the_operators_rules_already_drop_gets_no_signature() {
    let mut run = Run::new(DetectConfig::default());
    for _ in 0..10 {
        run.second(100, 0, 100, &junk);
    }
    let dropped = |i: u16| Sampled {
        outcome: Outcome::DroppedRule,
        rule_slot: Some(0),
        ..junk(i)
    };
    let said = run.second(2, 1998, 100_000, &dropped);
    assert!(matches!(&said[..], [Happened::Started(_)]), "{said:?}");
    assert!(run.rules.in_force.is_empty());
}

#[test]
fn a_flood_no_field_separates_is_held_to_the_normal_rate_but_for_the_known_sources() {
    let mut run = Run::new(DetectConfig::default());
    for _ in 0..10 {
        run.second(100, 0, 100, &junk);
    }
    let service = Service {
        proto: 17,
        port: PORT,
    };
    let user_src = user(0).packet.expect("a packet").src;
    assert!(run.detector.baseline.knows(&service, user_src));
    // Random lengths and payloads from sources the baseline never saw.
    let random = |i: u16| {
        udp(
            2 + (i % 200) as u8,
            1024 + i,
            28 + i.wrapping_mul(37) % 1400,
            &[
                i.wrapping_mul(13) as u8,
                i.wrapping_mul(7) as u8,
                i as u8,
                9,
            ],
        )
    };
    let said = run.second(2, 1998, 100_000, &random);
    assert!(
        matches!(&said[..], [
            Happened::Started(_),
            Happened::Mitigated(line)
        ] if line.contains("no field separates")),
        "{said:?}"
    );
    assert!(
        run.detector.attacks()[0]
            .notes
            .iter()
            .any(|n| n.contains("no field separates")),
        "the attack keeps the reason: {:?}",
        run.detector.attacks()[0]
    );
    let rule = run
        .rules
        .in_force
        .values()
        .next()
        .expect("a rule")
        .to_string();
    assert_eq!(
        rule,
        format!("udp dport {PORT} source unknown rate-limit 100pps")
    );
    let signature = &run.detector.attacks()[0].signatures[0].signature;
    assert!(signature.flood_coverage >= 0.99, "{signature:?}");
    // Its sources were not learned as known while it went on.
    assert!(
        !run.detector
            .baseline
            .knows(&service, random(5).packet.expect("a packet").src)
    );

    // In monitor mode the same signature only counts.
    let mut watched = Run::new(DetectConfig {
        mode: SignatureMode::Monitor,
        ..DetectConfig::default()
    });
    for _ in 0..10 {
        watched.second(100, 0, 100, &junk);
    }
    watched.second(2, 1998, 100_000, &random);
    let rule = watched
        .rules
        .in_force
        .values()
        .next()
        .expect("a rule")
        .to_string();
    assert_eq!(rule, format!("udp dport {PORT} source unknown monitor"));
}

#[test]
fn a_signature_the_operator_kept_is_no_longer_withdrawn_and_the_attack_ends() {
    let mut run = Run::new(DetectConfig::default());
    for _ in 0..10 {
        run.second(100, 0, 100, &junk);
    }
    run.second(2, 1998, 100_000, &junk);
    let id = *run.rules.in_force.keys().next().expect("a rule");
    run.detector
        .let_go(&[id], UNIX_EPOCH + Duration::from_secs(1_800_000_100));
    assert!(run.detector.rules_in_force().is_empty());
    // The flood goes on: the kept rule still covers it, nothing is mined again.
    let said = run.second(2, 1998, 100_000, &junk);
    assert!(
        said.is_empty(),
        "a kept signature still covers its flood: {said:?}"
    );
    // The flood ends: quiet for long past the quiet time, the rule stays, the attack ends.
    for _ in 0..30 {
        run.second(100, 0, 100, &junk);
    }
    assert!(run.rules.in_force.contains_key(&id), "{:?}", run.log);
    let attack = &run.detector.attacks()[0];
    assert!(!attack.active(), "{attack:?}");
    assert!(attack.signatures[0].kept.is_some() && attack.signatures[0].withdrawn.is_none());
}

#[test]
fn a_service_in_monitor_gets_monitor_signatures_while_others_are_enforced() {
    let service: Service = "UDP/7777".parse().expect("a service");
    assert_eq!(service.to_string(), format!("udp/{PORT}"));
    for bad in ["dns", "udp/", "udp/70000", "proto/6", "icmp/1"] {
        assert!(bad.parse::<Service>().is_err(), "{bad}");
    }
    assert_eq!(
        "proto/47".parse::<Service>().map(|s| s.to_string()),
        Ok("proto/47".into())
    );
    let mut run = Run::new(DetectConfig {
        monitor_services: vec![service],
        ..DetectConfig::default()
    });
    for _ in 0..10 {
        run.second(100, 0, 100, &junk);
    }
    run.second(2, 1998, 100_000, &junk);
    let rule = run
        .rules
        .in_force
        .values()
        .next()
        .expect("a rule")
        .to_string();
    assert!(rule.ends_with(" monitor"), "{rule}");
}

#[test]
fn a_lasting_flash_crowd_becomes_the_new_normal_and_its_attack_ends() {
    let mut run = Run::new(DetectConfig::default());
    for _ in 0..10 {
        run.second(100, 0, 100, &junk);
    }
    let service = Service {
        proto: 17,
        port: PORT,
    };
    let before = run.detector.baseline.get(&service).expect("learned").pps;
    // Twentyfold of the users' own shape, for minutes.
    for _ in 1..ADOPT_AFTER_S {
        run.second(200, 0, 4_000, &junk);
    }
    assert_eq!(
        run.detector.baseline.get(&service).expect("kept").pps,
        before,
        "not learned before {ADOPT_AFTER_S}s"
    );
    for _ in 0..120 {
        run.second(200, 0, 4_000, &junk);
    }
    let attack = &run.detector.attacks()[0];
    assert!(!attack.active(), "{attack:?}");
    assert!(
        attack.notes.iter().any(|n| n.contains("new normal")),
        "{attack:?}"
    );
    assert!(run.detector.baseline.get(&service).expect("learned").pps > 1_000.0);
    assert!(run.rules.in_force.is_empty());
}

#[test]
fn a_signature_whose_rule_expired_under_the_flood_is_mined_again_at_once() {
    let mut run = Run::new(DetectConfig::default());
    for _ in 0..10 {
        run.second(100, 0, 100, &junk);
    }
    run.second(2, 1998, 100_000, &junk);
    run.second(2, 1998, 100_000, &junk);
    let id = *run.rules.in_force.keys().next().expect("a rule");
    // The daemon expires it.
    run.rules.in_force.remove(&id);
    run.rules.matches.remove(&id);
    let said = run.second(2, 1998, 100_000, &junk);
    assert!(
        matches!(&said[..], [Happened::Withdrawn(gone), Happened::Mitigated(_)] if gone.contains("is gone")),
        "{said:?}"
    );
    assert_eq!(run.rules.in_force.len(), 1);
}

#[test]
fn the_first_packets_of_a_flood_under_the_threshold_are_not_learned() {
    let mut run = Run::new(DetectConfig::default());
    for _ in 0..10 {
        run.second(100, 0, 100, &junk);
    }
    // The flood's first packets, at the end of a second: far under any threshold.
    assert!(run.second(100, 20, 120, &junk).is_empty());
    // Then the flood: its signature is found, its values unknown to the baseline.
    let said = run.second(2, 1998, 100_000, &junk);
    assert!(
        matches!(&said[..], [Happened::Started(_), Happened::Mitigated(_)]),
        "{said:?}"
    );
    let service = Service {
        proto: 17,
        port: PORT,
    };
    let len = run
        .detector
        .baseline
        .get(&service)
        .and_then(|b| b.fields.get(&crate::traffic::baseline::Field::Len))
        .map_or(0.0, |h| h.share(92));
    assert!(len == 0.0, "the junk's length was learned: {len}");
}
