//! Attacks: a service whose rate leaves its baseline is under attack; the detector mines
//! the flood's signature, has it put in force, mines again when the flood changes shape,
//! and has each signature withdrawn once what it matches is back under the baseline.
//!
//! One call a second ([`Detector::second`]). The rules themselves are the daemon's
//! ([`Mitigator`]): the detector says which to add and which to remove, and keeps the
//! record that `floodwall attacks` shows.
//!
//! Beside this module: `config` (the settings) with `thresholds` (the ones an operator
//! sets), and `record` (the attacks as `floodwall attacks` shows them).

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    time::SystemTime,
};

use filter_common::Outcome;

use super::{
    baseline::{Baseline, Second, Service},
    mine::{self, NoSignature, Signature},
    sample::Sampled,
};
use crate::rules::{Action, RuleRate, RuleSpec, TestPacket};

/// The least rate a `source unknown` signature leaves the sources its service's baseline
/// does not know, packets a second: room for new users of a quiet service.
pub const MIN_UNKNOWN_SHARE_PPS: f64 = 100.0;

mod config;
mod record;
mod thresholds;

pub use config::{DetectConfig, SignatureMode};
pub use record::{
    AttackRecord, CapturedFrame, MAX_FRAMES_KEPT, MAX_SOURCES_COUNTED, SignatureRecord,
};
pub use thresholds::{Threshold, Thresholds};

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

/// Seconds a second of traffic waits before the baseline learns it. A flood that ramps up
/// (or whose first second was read short) can be under the attack threshold for a second
/// or two before it is detected: waiting, those seconds are left out with the attack's.
pub const LEARN_LAG_S: usize = 2;

/// A second of traffic waiting to be learned ([`LEARN_LAG_S`]).
#[derive(Debug)]
struct Unlearned {
    samples: Vec<Sampled>,
    packets_by_cpu: Vec<u64>,
    counted: BTreeMap<Service, (f64, f64)>,
    /// Its services that are not to be learned.
    not_normal: BTreeSet<Service>,
}

/// Seconds an attack's traffic must look like the baseline's (no signature, no field the
/// baseline does not know) before the baseline learns it: a lasting rise of normal traffic
/// becomes the new normal, and the attack ends once the baseline has caught up.
pub const ADOPT_AFTER_S: u64 = 60;

/// Seconds a service's baseline must have before a second far over it is kept out of it.
pub const MIN_SECONDS_TO_COMPARE: u64 = 3;

/// Attacks kept in the record, ended ones included.
pub const MAX_ATTACKS_KEPT: usize = 64;

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
    /// Signatures put in force since the daemon started.
    signatures_total: u64,
    /// Samples taken in since the daemon started.
    samples_total: u64,
    /// The last seconds, oldest first, waiting to be learned.
    unlearned: VecDeque<Unlearned>,
    /// Each service's packets and bits a second in the last second.
    rates_now: BTreeMap<Service, (f64, f64)>,
}

/// The detector's numbers, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectorCounts {
    /// Attacks detected since the daemon started.
    pub attacks_total: u64,
    /// Attacks on now.
    pub attacks_active: u64,
    /// Signatures put in force since the daemon started.
    pub signatures_total: u64,
    /// Signatures in force now.
    pub signatures_in_force: u64,
    /// Packet samples taken in since the daemon started.
    pub samples_total: u64,
    /// Seconds of traffic the baseline has learned.
    pub baseline_seconds: u64,
}

/// One second as the detector sees it.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// The samples and counts.
    pub second: Second<'a>,
    /// When.
    pub at: SystemTime,
    /// Matched packets so far of each rule, by id: every signature's rule the daemon still
    /// has (one missing is gone: expired, or removed by the operator).
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
            signatures_total: 0,
            samples_total: 0,
            unlearned: VecDeque::new(),
            rates_now: BTreeMap::new(),
        }
    }

    /// Each service's packets and bits a second in the last second.
    #[must_use]
    pub fn rates_now(&self) -> &BTreeMap<Service, (f64, f64)> {
        &self.rates_now
    }

    /// Seconds of traffic watched: learned, and waiting to be ([`LEARN_LAG_S`]).
    #[must_use]
    pub fn watched_s(&self) -> u64 {
        self.baseline.learned_s + self.unlearned.len() as u64
    }

    /// The detector's numbers.
    #[must_use]
    pub fn counts(&self) -> DetectorCounts {
        DetectorCounts {
            attacks_total: u64::from(self.next_id - 1),
            attacks_active: self.attacks.iter().filter(|a| a.active()).count() as u64,
            signatures_total: self.signatures_total,
            signatures_in_force: self.rules_in_force().len() as u64,
            samples_total: self.samples_total,
            baseline_seconds: self.watched_s(),
        }
    }

    /// The attacks, oldest first.
    #[must_use]
    pub fn attacks(&self) -> &[AttackRecord] {
        &self.attacks
    }

    /// The frames kept of attack `id` (its first [`MAX_FRAMES_KEPT`] samples), or `None`
    /// for an attack the record does not hold.
    #[must_use]
    pub fn frames(&self, id: u32) -> Option<&[CapturedFrame]> {
        self.attacks
            .iter()
            .find(|a| a.id == id)
            .map(|a| a.captured.as_slice())
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

    /// The operator kept the rules `ids` as their own (`rules keep`): their signatures are
    /// no longer the detector's to withdraw, nor counted among those in force.
    pub fn let_go(&mut self, ids: &[u32], at: SystemTime) {
        let at = humantime::format_rfc3339_seconds(at).to_string();
        for sig in self
            .attacks
            .iter_mut()
            .flat_map(|a| a.signatures.iter_mut())
            .filter(|s| ids.contains(&s.rule_id) && s.withdrawn.is_none())
        {
            sig.kept = Some(at.clone());
        }
    }

    /// Takes one second in: detects, mines, puts in force, withdraws, learns.
    pub fn second(&mut self, seen: Observed<'_>, rules: &mut dyn Mitigator) -> Vec<Happened> {
        let mut happened = Vec::new();
        self.samples_total += seen.second.samples.len() as u64;
        let now = Now {
            at: humantime::format_rfc3339_seconds(seen.at).to_string(),
            unix_ns: seen
                .at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            rates: seen.second.rates(),
            seen,
        };
        if self.watched_s() >= self.config.min_baseline_s && self.config.mode != SignatureMode::Off
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
        let room_before = room;
        for attack in self.attacks.iter_mut().filter(|a| a.active()) {
            judge.attack_second(attack, rules, &mut room, &mut happened);
        }
        self.signatures_total += (room_before - room) as u64;
        self.learn_late(seen.second, &now.rates);
        self.rates_now.clone_from(&now.rates);
        // Forget the oldest ended attacks.
        while self.attacks.len() > MAX_ATTACKS_KEPT {
            match self.attacks.iter().position(|a| !a.active()) {
                Some(i) => self.attacks.remove(i),
                None => break,
            };
        }
        happened
    }

    /// Puts the second in line to be learned ([`LEARN_LAG_S`]) and learns the one that has
    /// waited long enough. Not learned: the services under attack (in the waiting seconds
    /// too: a flood may have started in them, under the threshold), and those far over a
    /// baseline of a few seconds, even under the floor or before detection is ready (a
    /// flood that starts slowly, or before the minimum baseline, must not become normal);
    /// but an attack that has long looked normal is learned ([`ADOPT_AFTER_S`]).
    fn learn_late(&mut self, second: Second<'_>, rates: &BTreeMap<Service, (f64, f64)>) {
        let active = || self.attacks.iter().filter(|a| a.active());
        let adopted: BTreeSet<Service> = active()
            .filter(|a| a.normal_s >= ADOPT_AFTER_S)
            .map(|a| a.service)
            .collect();
        let attacked: BTreeSet<Service> = active()
            .map(|a| a.service)
            .filter(|s| !adopted.contains(s))
            .collect();
        let mut not_normal = attacked.clone();
        not_normal.extend(rates.iter().filter_map(|(service, &(pps, _))| {
            let b = self.baseline.get(service)?;
            (b.learned_s >= MIN_SECONDS_TO_COMPARE
                && pps > self.config.factor * b.pps.max(1.0)
                && !adopted.contains(service))
            .then_some(*service)
        }));
        for waiting in &mut self.unlearned {
            waiting.not_normal.extend(attacked.iter().copied());
        }
        self.unlearned.push_back(Unlearned {
            samples: second.samples.to_vec(),
            packets_by_cpu: second.packets_by_cpu.to_vec(),
            counted: second.counted.clone(),
            not_normal,
        });
        while self.unlearned.len() > LEARN_LAG_S {
            let Some(due) = self.unlearned.pop_front() else {
                break;
            };
            self.baseline.learn(
                Second {
                    samples: &due.samples,
                    packets_by_cpu: &due.packets_by_cpu,
                    counted: &due.counted,
                },
                &due.not_normal,
            );
        }
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
            self.attacks.push(AttackRecord::new(
                id,
                *service,
                now.at.clone(),
                baseline_pps,
                pps,
            ));
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
    /// `seen.at`, in ns since the Unix epoch.
    unix_ns: u64,
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
            .map(|(_, sample, p, weight)| {
                if attack.captured.len() < MAX_FRAMES_KEPT {
                    attack.captured.push(CapturedFrame {
                        at_unix_ns: self.now.unix_ns,
                        frame_len: sample.frame_len,
                        hex: crate::rules::to_hex(&sample.frame),
                    });
                }
                (p, sample.outcome, weight)
            })
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
            .filter(|(p, outcome, _)| !outcome.is_drop() && !attack.covers(p))
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
            .filter(|s| s.withdrawn.is_none() && s.kept.is_none())
        {
            // A rule the daemon no longer has expired or was removed by the operator: what
            // it matched is uncovered again from this second on, and mined again.
            let Some(&total) = self.now.seen.rule_matches.get(&sig.rule_id) else {
                sig.withdrawn = Some(self.now.at.clone());
                happened.push(Happened::Withdrawn(format!(
                    "attack {}: signature rule {} is gone (it expired, or was removed)",
                    attack.id, sig.rule_id
                )));
                continue;
            };
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

    /// Where no field tells the flood from the users: a signature that spares the sources
    /// the service's baseline knows and holds the others, together, to the service's
    /// normal rate (at least [`MIN_UNKNOWN_SHARE_PPS`]); `None` if the baseline knows none.
    fn spare_known(
        &self,
        service: Service,
        uncovered: &[&TestPacket],
        normal_pps: f64,
    ) -> Option<Signature> {
        // A TCP or UDP service without a port is the fragments' and the cut-short headers':
        // a rule without a port would hold every port's unknown sources.
        if matches!(service.proto, 6 | 17) && service.port == 0 {
            return None;
        }
        if self.baseline.get(&service)?.known.is_empty() {
            return None;
        }
        let unknown = uncovered
            .iter()
            .filter(|p| !self.baseline.knows(&service, p.src))
            .count();
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a rate, positive and far below 2^53"
        )]
        let rate = normal_pps.max(MIN_UNKNOWN_SHARE_PPS).ceil() as u64;
        let action = if self.config.monitors(service) {
            Action::Monitor
        } else {
            Action::RateLimit(RuleRate {
                pps: Some(rate),
                bps: None,
            })
        };
        let rule = RuleSpec {
            known_source: Some(false),
            ..mine::rule(service, &[], None, action)
        };
        #[expect(clippy::cast_precision_loss, reason = "sample counts")]
        let flood_coverage = unknown as f64 / uncovered.len().max(1) as f64;
        Some(Signature {
            service,
            values: Vec::new(),
            rule,
            flood_coverage,
            baseline_coverage: 0.0,
        })
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
        let action = if self.config.monitors(attack.service) {
            Action::Monitor
        } else {
            Action::Drop
        };
        let mined = match mine::mine(&mine::Attack {
            service: attack.service,
            samples: uncovered,
            excess_share: ((uncovered_pps - normal) / uncovered_pps).clamp(0.0, 1.0),
            baseline: self.baseline.get(&attack.service),
            forbidden: &self.config.forbidden,
            action,
        }) {
            Err(why @ NoSignature::NoSeparatingField(_)) => {
                // In the notes; the log says it with the rule that spares the known sources,
                // or, without one, with the reason.
                attack.note(why.kind(), format!("attack {}: {why}", attack.id));
                self.spare_known(attack.service, uncovered, normal)
                    .ok_or_else(|| NoSignature::NoKnownSources(attack.service.to_string()))
            }
            other => other,
        };
        attack.normal_s = if matches!(mined, Err(NoSignature::LooksNormal(_)))
            && attack.in_force().next().is_none()
        {
            attack.normal_s + 1
        } else {
            0
        };
        if attack.normal_s == ADOPT_AFTER_S
            && let Some(line) = attack.note(
                "adopted",
                format!(
                    "attack {}: its traffic has looked like normal traffic for \
                     {ADOPT_AFTER_S}s: the baseline learns it as the new normal",
                    attack.id
                ),
            )
        {
            happened.push(Happened::Unmitigated(line));
        }
        let (kind, refused) = match mined {
            Err(why) => (why.kind(), format!("attack {}: {why}", attack.id)),
            Ok(_) if *room == 0 => (
                "cap",
                format!(
                    "attack {}: a signature was found but {} automatic rules are in force \
                     already, the most allowed",
                    attack.id, self.config.max_rules
                ),
            ),
            Ok(signature) => match rules.install(&signature) {
                Ok(rule_id) => {
                    *room -= 1;
                    let spares = if signature.rule.known_source == Some(false) {
                        "no field separates the flood, the sources the baseline knows are \
                         spared: "
                    } else {
                        ""
                    };
                    happened.push(Happened::Mitigated(format!(
                        "attack {}: {spares}signature rule {rule_id} in force, matching {:.0} % \
                         of the flood and at most {:.2} % of the baseline: {}",
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
                        kept: None,
                        matched_packets: 0,
                        quiet_s: 0,
                    });
                    return;
                }
                Err(e) => (
                    "refused",
                    format!("attack {}: the signature was refused: {e}", attack.id),
                ),
            },
        };
        if let Some(line) = attack.note(kind, refused) {
            happened.push(Happened::Unmitigated(line));
        }
    }
}

#[cfg(test)]
mod tests;
