//! Attacks: a service whose rate leaves its baseline is under attack; the detector mines
//! the flood's signature, has it put in force, mines again when the flood changes shape,
//! and has each signature withdrawn once what it matches is back under the baseline.
//!
//! One call a second ([`Detector::second`]). The rules themselves are the daemon's
//! ([`Mitigator`]): the detector says which to add and which to remove, and keeps the
//! record that `floodwall attacks` shows.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::SystemTime,
};

use filter_common::Outcome;
use serde::{Deserialize, Serialize};

use super::{
    baseline::{Baseline, Field, Second, Service},
    mine::{self, Signature},
};
use crate::rules::{Action, TestPacket};

/// How the detector acts on what it finds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureMode {
    /// Signatures are put in force as `drop` rules.
    #[default]
    Enforce,
    /// Signatures are put in as `monitor` rules: computed, logged and counted, nothing
    /// dropped.
    Monitor,
    /// No detection.
    Off,
}

impl std::fmt::Display for SignatureMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Enforce => "enforce",
            Self::Monitor => "monitor",
            Self::Off => "off",
        })
    }
}

/// The detector's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectConfig {
    /// What signatures do.
    pub mode: SignatureMode,
    /// A service is under attack when its rate is over this many times its baseline...
    pub factor: f64,
    /// ...and over this many packets a second.
    pub floor_pps: f64,
    /// Seconds of traffic learned before anything is enforced.
    pub min_baseline_s: u64,
    /// Seconds a signature's matches must stay under the baseline before it is withdrawn
    /// (and an attack's rate before it ends).
    pub quiet_s: u64,
    /// Signatures in force at most, all attacks together.
    pub max_rules: usize,
    /// Fields signatures must not use.
    pub forbidden: Vec<Field>,
    /// Every signature's rule expires after this long even if never withdrawn, in ms.
    pub rule_for_ms: u64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            mode: SignatureMode::Enforce,
            factor: 4.0,
            floor_pps: 2_000.0,
            min_baseline_s: 10,
            quiet_s: 10,
            max_rules: 8,
            forbidden: Vec::new(),
            rule_for_ms: 10 * 60 * 1000,
        }
    }
}

/// What puts signatures in force: the daemon's rules.
pub trait Mitigator {
    /// Puts the signature's rule in force; its id, or why not.
    ///
    /// # Errors
    /// Why the rule was not added.
    fn install(&mut self, signature: &Signature) -> Result<u32, String>;
    /// Removes the rule `id`.
    ///
    /// # Errors
    /// Why it could not be removed.
    fn withdraw(&mut self, id: u32) -> Result<(), String>;
}

/// A signature an attack put in force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignatureRecord {
    /// The signature.
    pub signature: Signature,
    /// Its rule's id.
    pub rule_id: u32,
    /// When it was put in force (RFC 3339, UTC).
    pub installed: String,
    /// When it was withdrawn.
    pub withdrawn: Option<String>,
    /// Packets its rule matched, as last read.
    pub matched_packets: u64,
    /// Seconds in a row its matches were under the baseline.
    #[serde(skip)]
    quiet_s: u64,
}

/// Most sources an attack record counts one by one.
pub const MAX_SOURCES_COUNTED: usize = 65_536;

/// Attacks kept in the record, ended ones included.
pub const MAX_ATTACKS_KEPT: usize = 64;

/// An attack on one service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackRecord {
    /// Its id, counted from 1.
    pub id: u32,
    /// The service.
    pub service: Service,
    /// When it was detected (RFC 3339, UTC).
    pub started: String,
    /// When it ended.
    pub ended: Option<String>,
    /// The service's baseline rate when it started, packets a second.
    pub baseline_pps: f64,
    /// The highest rate seen, packets a second.
    pub peak_pps: f64,
    /// Distinct sources seen in its samples (counted up to [`MAX_SOURCES_COUNTED`]).
    pub sources_seen: usize,
    /// Its signatures, one per vector, oldest first.
    pub signatures: Vec<SignatureRecord>,
    /// Why no signature could be put in force, when that happened.
    pub notes: Vec<String>,
    #[serde(skip)]
    sources: BTreeSet<IpAddr>,
    /// Seconds in a row its rate was back under the attack's threshold.
    #[serde(skip)]
    calm_s: u64,
}

impl AttackRecord {
    /// Whether it is still on.
    #[must_use]
    pub fn active(&self) -> bool {
        self.ended.is_none()
    }

    fn in_force(&self) -> impl Iterator<Item = &SignatureRecord> {
        self.signatures.iter().filter(|s| s.withdrawn.is_none())
    }

    fn note(&mut self, line: String) -> Option<String> {
        if self.notes.contains(&line) {
            return None;
        }
        self.notes.push(line.clone());
        Some(line)
    }
}

/// What one second did, for the log and the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Happened {
    /// An attack started.
    Started(String),
    /// A signature was put in force, or replaced by a new one.
    Mitigated(String),
    /// No signature (or one that could not be put in force): why.
    Unmitigated(String),
    /// A signature was withdrawn.
    Withdrawn(String),
    /// An attack ended.
    Ended(String),
}

/// The baseline, the attacks, and what is in force.
#[derive(Debug, Default)]
pub struct Detector {
    /// The settings.
    pub config: DetectConfig,
    /// What normal looks like.
    pub baseline: Baseline,
    attacks: Vec<AttackRecord>,
    next_id: u32,
}

/// One second as the detector sees it.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// The samples and counts.
    pub second: Second<'a>,
    /// When.
    pub at: SystemTime,
    /// Matched packets so far of each rule, by id (signatures' rules at least).
    pub rule_matches: &'a BTreeMap<u32, u64>,
}

impl Detector {
    /// A detector with `config`, starting from `baseline`.
    #[must_use]
    pub fn new(config: DetectConfig, baseline: Baseline) -> Self {
        Self {
            config,
            baseline,
            attacks: Vec::new(),
            next_id: 1,
        }
    }

    /// The attacks, oldest first.
    #[must_use]
    pub fn attacks(&self) -> &[AttackRecord] {
        &self.attacks
    }

    /// The ids of the rules the detector has in force.
    #[must_use]
    pub fn rules_in_force(&self) -> BTreeSet<u32> {
        self.attacks
            .iter()
            .flat_map(AttackRecord::in_force)
            .map(|s| s.rule_id)
            .collect()
    }

    /// Takes one second in: detects, mines, puts in force, withdraws, learns.
    pub fn second(&mut self, seen: Observed<'_>, rules: &mut dyn Mitigator) -> Vec<Happened> {
        let mut happened = Vec::new();
        let now = Now {
            at: humantime::format_rfc3339_seconds(seen.at).to_string(),
            rates: seen.second.rates(),
            seen,
        };
        if self.baseline.learned_s >= self.config.min_baseline_s
            && self.config.mode != SignatureMode::Off
        {
            self.start_attacks(&now, &mut happened);
        }
        let mut room = self
            .config
            .max_rules
            .saturating_sub(self.rules_in_force().len());
        let judge = Judge {
            config: &self.config,
            baseline: &self.baseline,
            now: &now,
        };
        for attack in self.attacks.iter_mut().filter(|a| a.active()) {
            judge.attack_second(attack, rules, &mut room, &mut happened);
        }
        // Not learned: the services under attack, and those far over their baseline even
        // if under the floor (a flood that starts slowly must not become normal).
        let mut not_normal: BTreeSet<Service> = self
            .attacks
            .iter()
            .filter(|a| a.active())
            .map(|a| a.service)
            .collect();
        not_normal.extend(now.rates.iter().filter_map(|(service, &(pps, _))| {
            let b = self.baseline.get(service)?;
            (b.learned_s >= self.config.min_baseline_s && pps > self.config.factor * b.pps.max(1.0))
                .then_some(*service)
        }));
        self.baseline.learn(seen.second, &not_normal);
        // Forget the oldest ended attacks.
        while self.attacks.len() > MAX_ATTACKS_KEPT {
            match self.attacks.iter().position(|a| !a.active()) {
                Some(i) => self.attacks.remove(i),
                None => break,
            };
        }
        happened
    }

    /// Starts an attack on every service over its threshold that has none on.
    fn start_attacks(&mut self, now: &Now<'_>, happened: &mut Vec<Happened>) {
        for (service, &(pps, _)) in &now.rates {
            if pps <= threshold(*service, &self.baseline, &self.config)
                || self
                    .attacks
                    .iter()
                    .any(|a| a.active() && a.service == *service)
            {
                continue;
            }
            let baseline_pps = self.baseline.get(service).map_or(0.0, |b| b.pps);
            let id = self.next_id;
            self.next_id += 1;
            happened.push(Happened::Started(format!(
                "attack {id} on {service}: {pps:.0} packets/s, its baseline {baseline_pps:.0}"
            )));
            self.attacks.push(AttackRecord {
                id,
                service: *service,
                started: now.at.clone(),
                ended: None,
                baseline_pps,
                peak_pps: pps,
                sources_seen: 0,
                signatures: Vec::new(),
                notes: Vec::new(),
                sources: BTreeSet::new(),
                calm_s: 0,
            });
        }
    }
}

/// The rate over which a service is under attack, packets a second.
fn threshold(service: Service, baseline: &Baseline, config: &DetectConfig) -> f64 {
    let normal = baseline.get(&service).map_or(0.0, |b| b.pps);
    (config.factor * normal.max(1.0)).max(config.floor_pps)
}

/// One second, with what is derived from it once.
struct Now<'a> {
    seen: Observed<'a>,
    /// `seen.at`, RFC 3339.
    at: String,
    rates: BTreeMap<Service, (f64, f64)>,
}

/// What an attack's second is judged by.
struct Judge<'a> {
    config: &'a DetectConfig,
    baseline: &'a Baseline,
    now: &'a Now<'a>,
}

impl Judge<'_> {
    /// One second of an attack that is on: its record, its signatures' withdrawal, a new
    /// signature for what they leave, its end.
    fn attack_second(
        &self,
        attack: &mut AttackRecord,
        rules: &mut dyn Mitigator,
        room: &mut usize,
        happened: &mut Vec<Happened>,
    ) {
        let service = attack.service;
        let pps = self.now.rates.get(&service).map_or(0.0, |r| r.0);
        let limit = threshold(service, self.baseline, self.config);
        attack.peak_pps = attack.peak_pps.max(pps);
        attack.calm_s = if pps > limit { 0 } else { attack.calm_s + 1 };
        // The flood's packets: the service's, less the allowlisted (never dropped).
        let packets: Vec<(&TestPacket, Outcome, f64)> = self
            .now
            .seen
            .second
            .by_service()
            .filter(|(s, sample, _, _)| *s == service && sample.outcome != Outcome::Allowed)
            .map(|(_, sample, p, weight)| (p, sample.outcome, weight))
            .collect();
        for (p, _, _) in &packets {
            if attack.sources.len() < MAX_SOURCES_COUNTED {
                attack.sources.insert(p.src);
            }
        }
        attack.sources_seen = attack.sources.len();
        self.withdraw_quiet(attack, rules, happened);
        // What nothing handles yet: neither dropped (by an operator's rule, a block, a
        // list) nor matched by a signature of this attack (which, in monitor mode, does
        // not drop). If that is still a flood, mine its signature.
        let uncovered: Vec<(&TestPacket, f64)> = packets
            .iter()
            .filter(|(p, outcome, _)| {
                !outcome.is_drop() && !attack.in_force().any(|s| s.signature.rule.matches(p))
            })
            .map(|(p, _, weight)| (*p, *weight))
            .collect();
        let uncovered_pps: f64 = uncovered.iter().map(|(_, w)| w).sum();
        let uncovered: Vec<&TestPacket> = uncovered.into_iter().map(|(p, _)| p).collect();
        if uncovered_pps > limit {
            self.mitigate(attack, &uncovered, uncovered_pps, rules, room, happened);
        }
        if attack.calm_s >= self.config.quiet_s && attack.in_force().next().is_none() {
            attack.ended = Some(self.now.at.clone());
            happened.push(Happened::Ended(format!(
                "attack {} on {service} ended: peak {:.0} packets/s, {} sources seen, {} \
                 signatures",
                attack.id,
                attack.peak_pps,
                attack.sources_seen,
                attack.signatures.len()
            )));
        }
    }

    /// Withdraws the attack's signatures whose matches have been under the baseline for the
    /// quiet time.
    fn withdraw_quiet(
        &self,
        attack: &mut AttackRecord,
        rules: &mut dyn Mitigator,
        happened: &mut Vec<Happened>,
    ) {
        let normal = self.baseline.get(&attack.service).map_or(0.0, |b| b.pps);
        for sig in attack
            .signatures
            .iter_mut()
            .filter(|s| s.withdrawn.is_none())
        {
            let total = self
                .now
                .seen
                .rule_matches
                .get(&sig.rule_id)
                .copied()
                .unwrap_or(0);
            #[expect(clippy::cast_precision_loss, reason = "rates")]
            let matched_pps = total.saturating_sub(sig.matched_packets) as f64;
            sig.matched_packets = total.max(sig.matched_packets);
            sig.quiet_s = if matched_pps <= normal.max(1.0) {
                sig.quiet_s + 1
            } else {
                0
            };
            if sig.quiet_s < self.config.quiet_s {
                continue;
            }
            let line = match rules.withdraw(sig.rule_id) {
                Ok(()) => format!(
                    "attack {}: signature rule {} withdrawn, its matches back under the \
                     baseline for {}s: {}",
                    attack.id, sig.rule_id, sig.quiet_s, sig.signature.rule
                ),
                // Gone already (an operator removed it, or it expired).
                Err(e) => format!("attack {}: rule {} is gone: {e}", attack.id, sig.rule_id),
            };
            sig.withdrawn = Some(self.now.at.clone());
            happened.push(Happened::Withdrawn(line));
        }
    }

    /// Mines the signature of the attack's packets that no signature matches, and puts it
    /// in force if there is room; says once why not otherwise.
    fn mitigate(
        &self,
        attack: &mut AttackRecord,
        uncovered: &[&TestPacket],
        uncovered_pps: f64,
        rules: &mut dyn Mitigator,
        room: &mut usize,
        happened: &mut Vec<Happened>,
    ) {
        let normal = self.baseline.get(&attack.service).map_or(0.0, |b| b.pps);
        let action = match self.config.mode {
            SignatureMode::Monitor => Action::Monitor,
            _ => Action::Drop,
        };
        let mined = mine::mine(&mine::Attack {
            service: attack.service,
            samples: uncovered,
            excess_share: ((uncovered_pps - normal) / uncovered_pps).clamp(0.0, 1.0),
            baseline: self.baseline.get(&attack.service),
            forbidden: &self.config.forbidden,
            action,
        });
        let refused = match mined {
            Err(why) => format!("attack {}: {why}", attack.id),
            Ok(_) if *room == 0 => format!(
                "attack {}: a signature was found but {} automatic rules are in force \
                 already, the most allowed",
                attack.id, self.config.max_rules
            ),
            Ok(signature) => match rules.install(&signature) {
                Ok(rule_id) => {
                    *room -= 1;
                    happened.push(Happened::Mitigated(format!(
                        "attack {}: signature rule {rule_id} in force, matching {:.0} % of the \
                         flood and at most {:.2} % of the baseline: {}",
                        attack.id,
                        signature.flood_coverage * 100.0,
                        signature.baseline_coverage * 100.0,
                        signature.rule
                    )));
                    attack.signatures.push(SignatureRecord {
                        signature,
                        rule_id,
                        installed: self.now.at.clone(),
                        withdrawn: None,
                        matched_packets: 0,
                        quiet_s: 0,
                    });
                    return;
                }
                Err(e) => format!("attack {}: the signature was refused: {e}", attack.id),
            },
        };
        if let Some(line) = attack.note(refused) {
            happened.push(Happened::Unmitigated(line));
        }
    }
}

#[cfg(test)]
#[expect(
    clippy::cast_possible_truncation,
    clippy::float_cmp,
    reason = "test values are small; a rate that must not change is compared exactly"
)]
mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr},
        time::{Duration, UNIX_EPOCH},
    };

    use filter_common::{Class, Outcome};

    use super::*;
    use crate::{
        rules::{PayloadMatch, RuleSpec},
        traffic::sample::Sampled,
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
        Sampled {
            packet: Some(TestPacket {
                src: IpAddr::V4(Ipv4Addr::new(198, 19, 1, src)),
                dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                proto: 17,
                ports: Some((sport, PORT)),
                icmp: None,
                tcp_flags: 0,
                len,
                dscp: 0,
                fragment: filter_common::fragment::NONE,
                ttl: 64,
                payload: Some(PayloadMatch {
                    offset: 0,
                    bytes: payload.to_vec(),
                    mask: vec![0xff; payload.len()],
                }),
            }),
            frame_len: u32::from(len) + 14,
            class: Class::Udp,
            outcome: Outcome::Passed,
            rule_slot: None,
            cpu: 0,
            frame: Vec::new(),
        }
    }

    fn user(i: u16) -> Sampled {
        udp(1, 40_000 + i, 40 + i % 20, &[b'q', i as u8, 0, 7])
    }

    struct Run {
        detector: Detector,
        rules: Rules,
        t: u64,
        log: Vec<Happened>,
    }

    impl Run {
        fn new(config: DetectConfig) -> Self {
            Self {
                detector: Detector::new(config, Baseline::default()),
                rules: Rules::default(),
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
            format!(
                "udp dport {PORT} len 92 ttl 64 payload 0:66666666666666666666666666666666 drop"
            )
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
            matches!(&said[..], [Happened::Started(_), Happened::Unmitigated(l)] if l.contains("no field separates")),
            "{said:?}"
        );
        assert!(run.rules.in_force.is_empty());
    }
}
