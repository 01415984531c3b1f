//! Signatures: from an attack's samples and its service's baseline, the most specific rule
//! that matches nearly all of the flood and almost none of normal traffic.
//!
//! The flood is the attack's excess: of the packets to the service in the attack's second,
//! the share above what the baseline expects. A field's value is a candidate when the
//! attack's samples have it often enough to cover [`MIN_FLOOD_COVERAGE`] of that excess;
//! it separates when the baseline has it at most [`MAX_BASELINE_SHARE`] of the time. A
//! signature needs one separating value, of a field other than the TTL (a TTL tells only
//! how far away the senders are: a crowd of new users from one region shares one that the
//! baseline never saw); every other candidate that keeps the coverage, the TTL included,
//! joins it, so that the rule is as narrow as the flood allows. With no separating value
//! there is no signature, and the miner says why, telling apart a flood whose packets the
//! baseline does not know (random lengths or payloads: the daemon then protects the
//! service's known sources) from traffic shaped like the baseline's (a flash crowd: left
//! alone). Deterministic: the same samples and baseline give the same signature.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

use super::baseline::{Field, Service, ServiceBaseline};
use crate::rules::{Action, PayloadMatch, PortRange, RuleSpec, TcpFlags, TestPacket, ValueRange};

/// The share of the flood (the excess) a signature must match.
pub const MIN_FLOOD_COVERAGE: f64 = 0.9;

/// The share of the baseline a signature may match at most.
pub const MAX_BASELINE_SHARE: f64 = 0.005;

/// The fewest samples of an attack a signature is mined from.
pub const MIN_SAMPLES: usize = 20;

/// The fewest sources a signature's matching samples must come from. Fewer are the
/// per-source limits' to hold, and a signature of one source is most likely a busy user's:
/// a few of its samples, weighted by a flooded CPU's packets, can look like thousands of
/// packets a second.
pub const MIN_SOURCES: usize = 8;

/// A field tells normal packets from others only where the baseline's known values hold at
/// least this share of its packets (the users' query lengths do; DNS's random query ids in
/// the first payload bytes do not).
pub const MIN_KNOWN_SHARE: f64 = 0.9;

/// Where a field tells, a value the baseline has at most this share of is unusual.
pub const MAX_USUAL_SHARE: f64 = 0.001;

/// Traffic without a signature is a flood the baseline does not know, not a crowd of
/// users, when at least this share of its excess is unusual in its length or payload.
pub const MIN_UNUSUAL_SHARE: f64 = 0.5;

/// A signature: the rule, and how well it fits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// The service attacked.
    pub service: Service,
    /// The field values the rule names (beyond the service), in [`Field::ALL`] order.
    pub values: Vec<(Field, u32)>,
    /// The rule: the service, the values, and the action.
    pub rule: RuleSpec,
    /// The share of the flood's samples it matches (0 to 1).
    pub flood_coverage: f64,
    /// At most this share of the baseline matches it (0 to 1).
    pub baseline_coverage: f64,
}

/// Why no signature was found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum NoSignature {
    /// Too few samples of the attack.
    TooFewSamples(usize),
    /// No field's value is common to the flood and rare in the baseline: each field's
    /// most common value in the flood, with its share of the flood's samples and of the
    /// baseline. Its packets are unlike the baseline's all the same (random lengths or
    /// payloads).
    NoSeparatingField(Vec<String>),
    /// The packets look like the baseline's: only this share of them has a length or a
    /// payload the baseline does not know. A flash crowd, as far as the samples tell.
    LooksNormal(f64),
    /// No field separates, and the service's baseline knows no source to spare.
    NoKnownSources(String),
    /// What sets the traffic apart comes from this many sources, fewer than
    /// [`MIN_SOURCES`]: the per-source limits' to hold.
    FewSources(usize),
    /// No field separates, and the baseline's lengths and payloads vary too much to tell a
    /// flood from users: nothing is dropped, and the traffic is never learned as normal.
    CannotTell,
}

impl NoSignature {
    /// Which reason it is, for saying each kind once an attack.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::TooFewSamples(_) => "too-few-samples",
            Self::NoSeparatingField(_) => "no-separating-field",
            Self::LooksNormal(_) => "looks-normal",
            Self::NoKnownSources(_) => "no-known-sources",
            Self::CannotTell => "cannot-tell",
            Self::FewSources(_) => "few-sources",
        }
    }
}

impl fmt::Display for NoSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooFewSamples(n) => write!(
                f,
                "{n} samples of the attack, fewer than the {MIN_SAMPLES} a signature needs"
            ),
            Self::NoSeparatingField(closest) => write!(
                f,
                "no field separates the flood from normal traffic (no value of len, \
                 sport, flags or payload is common in the flood and rare in the baseline; \
                 the flood's most common: {})",
                closest.join(", ")
            ),
            Self::FewSources(n) => write!(
                f,
                "what sets the traffic apart comes from {n} sources, fewer than the \
                 {MIN_SOURCES} a signature needs: the per-source limits hold so few"
            ),
            Self::CannotTell => f.write_str(
                "no field separates the flood from normal traffic, and the service's lengths \
                 and payloads vary too much to tell a flood from its users: nothing is dropped",
            ),
            Self::NoKnownSources(service) => write!(
                f,
                "no field separates the flood, and no known source of {service} can be spared \
                 (its baseline knows none, or it has no port): nothing is dropped"
            ),
            Self::LooksNormal(unusual) => write!(
                f,
                "the traffic looks like the service's normal traffic (only {:.1} % of it has \
                 a length or payload the baseline does not know): a flash crowd of users, \
                 not a flood, as far as the samples tell; nothing is dropped",
                unusual * 100.0
            ),
        }
    }
}

/// The signature as a router upstream can match it (a FlowSpec route): without the fields
/// FlowSpec has no component for (the TTL, the payload, whether the source is known), so
/// broader than the signature. `None` when what remains may match normal traffic: at least
/// one remaining value must be one the baseline has at most [`MAX_BASELINE_SHARE`] of the
/// time (a rule matching it matches no more than that share), or when the action has no
/// FlowSpec form (a packet rate).
#[must_use]
pub fn upstream_form(
    signature: &Signature,
    baseline: Option<&ServiceBaseline>,
) -> Option<RuleSpec> {
    let separates = signature
        .values
        .iter()
        .filter(|(field, _)| matches!(field, Field::Len | Field::Sport | Field::Flags))
        .any(|(field, value)| {
            baseline
                .and_then(|b| b.fields.get(field))
                .map_or(0.0, |h| h.share(*value))
                <= MAX_BASELINE_SHARE
        });
    let expressible_action = match signature.rule.action {
        Action::Drop => true,
        Action::RateLimit(rate) => rate.pps.is_none() && rate.bps.is_some(),
        _ => false,
    };
    (separates && expressible_action).then(|| RuleSpec {
        ttl: None,
        payload: None,
        known_source: None,
        ..signature.rule.clone()
    })
}

/// What to mine from.
#[derive(Clone, Copy, Debug)]
pub struct Attack<'a> {
    /// The service.
    pub service: Service,
    /// The samples of packets to it in the attack (IP packets only).
    pub samples: &'a [&'a TestPacket],
    /// The share of them that is flood: (rate - baseline rate) / rate.
    pub excess_share: f64,
    /// The service's baseline (`None`: a service never seen before, whose normal traffic is
    /// none).
    pub baseline: Option<&'a ServiceBaseline>,
    /// Fields the operator forbids signatures to use.
    pub forbidden: &'a [Field],
    /// The action of the rule.
    pub action: Action,
}

/// Mines the signature of `attack`.
///
/// # Errors
/// [`NoSignature`] says why there is none.
pub fn mine(attack: &Attack<'_>) -> Result<Signature, NoSignature> {
    let n = attack.samples.len();
    if n < MIN_SAMPLES {
        return Err(NoSignature::TooFewSamples(n));
    }
    #[expect(clippy::cast_precision_loss, reason = "sample counts")]
    let needed = MIN_FLOOD_COVERAGE * attack.excess_share.clamp(0.0, 1.0) * n as f64;
    let baseline_share = |field: Field, value: u32| {
        attack
            .baseline
            .and_then(|b| b.fields.get(&field))
            .map_or(0.0, |h| h.share(value))
    };
    // Each field's most common value in the flood, if common enough: candidates.
    let mut candidates: Vec<(Field, u32, usize, f64)> = Vec::new();
    let mut closest = Vec::new();
    for field in Field::ALL {
        if attack.forbidden.contains(&field) {
            continue;
        }
        let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
        for packet in attack.samples {
            if let Some(value) = field.value(packet) {
                *counts.entry(value).or_default() += 1;
            }
        }
        // Most common first; ties by the smaller value (deterministic).
        if let Some((&value, &count)) = counts.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        {
            let share = baseline_share(field, value);
            #[expect(clippy::cast_precision_loss, reason = "sample counts")]
            let flood_share = count as f64 / n as f64;
            closest.push(format!(
                "{} {} in {:.1} % of it and {:.2} % of the baseline",
                field.name(),
                field.value_text(value),
                flood_share * 100.0,
                share * 100.0
            ));
            #[expect(clippy::cast_precision_loss, reason = "sample counts")]
            if count as f64 >= needed && count > 0 {
                candidates.push((field, value, count, share));
            }
        }
    }
    // The separating candidate that covers the most of the flood, and rarest in the
    // baseline on a tie.
    let Some(&first) = candidates
        .iter()
        .filter(|c| c.3 <= MAX_BASELINE_SHARE && c.0 != Field::Ttl)
        .max_by(|a, b| a.2.cmp(&b.2).then(b.3.total_cmp(&a.3)))
    else {
        return Err(match unusual_share(attack) {
            None => NoSignature::CannotTell,
            Some(unusual) if unusual >= MIN_UNUSUAL_SHARE * attack.excess_share.clamp(0.0, 1.0) => {
                NoSignature::NoSeparatingField(closest)
            }
            Some(unusual) => NoSignature::LooksNormal(unusual),
        });
    };
    let mut chosen = vec![(first.0, first.1)];
    let matching = |values: &[(Field, u32)]| {
        attack
            .samples
            .iter()
            .filter(|p| values.iter().all(|&(f, v)| f.value(p) == Some(v)))
            .count()
    };
    let mut covered = matching(&chosen);
    // The others, most common first, while the flood stays covered.
    let mut rest: Vec<_> = candidates.iter().filter(|c| c.0 != first.0).collect();
    rest.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    for c in rest {
        let mut with = chosen.clone();
        with.push((c.0, c.1));
        let count = matching(&with);
        #[expect(clippy::cast_precision_loss, reason = "sample counts")]
        if count as f64 >= needed {
            chosen = with;
            covered = count;
        }
    }
    let sources = sources_of(attack.samples, &chosen);
    if sources < MIN_SOURCES {
        return Err(NoSignature::FewSources(sources));
    }
    chosen.sort_by_key(|&(f, _)| f);
    let baseline_coverage = chosen
        .iter()
        .map(|&(f, v)| baseline_share(f, v))
        .fold(1.0, f64::min);
    let payload = payload_prefix(attack.samples, &chosen);
    #[expect(clippy::cast_precision_loss, reason = "sample counts")]
    let flood_coverage = if needed > 0.0 {
        (covered as f64 / (needed / MIN_FLOOD_COVERAGE)).min(1.0)
    } else {
        1.0
    };
    Ok(Signature {
        service: attack.service,
        rule: rule(attack.service, &chosen, payload.as_deref(), attack.action),
        values: chosen,
        flood_coverage,
        baseline_coverage,
    })
}

/// The share of the samples with a length or payload that the baseline does not know, of
/// those fields (not forbidden) where its known values hold [`MIN_KNOWN_SHARE`] of its
/// packets; a packet without the field (no payload) is not unusual in it. A service without
/// a baseline knows nothing: all of it is unusual. `None` where no field tells (lengths and
/// payloads vary among the users too: encrypted or random traffic).
fn unusual_share(attack: &Attack<'_>) -> Option<f64> {
    let Some(baseline) = attack.baseline else {
        return Some(1.0);
    };
    let telling: Vec<(Field, &super::baseline::Histogram)> = [Field::Len, Field::Payload]
        .into_iter()
        .filter(|f| !attack.forbidden.contains(f))
        .filter_map(|f| Some((f, baseline.fields.get(&f)?)))
        .filter(|(_, h)| h.known_share() >= MIN_KNOWN_SHARE)
        .collect();
    if telling.is_empty() {
        return None;
    }
    let unusual = attack
        .samples
        .iter()
        .filter(|p| {
            telling.iter().any(|(f, h)| {
                f.value(p)
                    .is_some_and(|value| h.share(value) <= MAX_USUAL_SHARE)
            })
        })
        .count();
    #[expect(clippy::cast_precision_loss, reason = "sample counts")]
    let share = unusual as f64 / attack.samples.len().max(1) as f64;
    Some(share)
}

/// How many sources the samples with every value of `chosen` come from.
fn sources_of(samples: &[&TestPacket], chosen: &[(Field, u32)]) -> usize {
    samples
        .iter()
        .filter(|p| chosen.iter().all(|&(f, v)| f.value(p) == Some(v)))
        .map(|p| p.src)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// With the payload's first four bytes chosen: as many of the first bytes (up to the 16 a
/// rule compares) as every matching sample shares.
fn payload_prefix(samples: &[&TestPacket], chosen: &[(Field, u32)]) -> Option<Vec<u8>> {
    chosen.iter().find(|(f, _)| *f == Field::Payload)?;
    let payloads: Vec<&[u8]> = samples
        .iter()
        .filter(|p| chosen.iter().all(|&(f, v)| f.value(p) == Some(v)))
        .filter_map(|p| p.payload.as_ref().map(|m| m.bytes.as_slice()))
        .collect();
    let first = payloads.first()?;
    let mut len = 4;
    while len < filter_common::RULE_PAYLOAD_BYTES
        && first.len() > len
        && payloads.iter().all(|p| p.get(len) == Some(&first[len]))
    {
        len += 1;
    }
    Some(first[..len].to_vec())
}

/// The rule of a signature: the service's protocol and port, and `values`.
pub(super) fn rule(
    service: Service,
    values: &[(Field, u32)],
    payload: Option<&[u8]>,
    action: Action,
) -> RuleSpec {
    let mut spec = RuleSpec {
        protos: vec![service.proto],
        action,
        ..RuleSpec::default()
    };
    if service.port != 0 {
        spec.dports = vec![PortRange {
            low: service.port,
            high: service.port,
        }];
    }
    for &(field, value) in values {
        match field {
            Field::Len => {
                let v = u16::try_from(value).unwrap_or(u16::MAX);
                spec.length = Some(ValueRange { low: v, high: v });
            }
            Field::Ttl => {
                let v = u8::try_from(value).unwrap_or(u8::MAX);
                spec.ttl = Some(ValueRange { low: v, high: v });
            }
            Field::Sport => {
                let v = u16::try_from(value).unwrap_or(u16::MAX);
                spec.sports = vec![PortRange { low: v, high: v }];
            }
            Field::Flags => {
                spec.tcp_flags = Some(TcpFlags {
                    value: u8::try_from(value).unwrap_or(u8::MAX),
                    mask: 0xff,
                });
            }
            Field::Payload => {
                let bytes = payload.map_or_else(|| value.to_be_bytes().to_vec(), <[u8]>::to_vec);
                spec.payload = Some(PayloadMatch {
                    offset: 0,
                    mask: vec![0xff; bytes.len()],
                    bytes,
                });
            }
        }
    }
    spec
}

#[cfg(test)]
#[expect(clippy::cast_possible_truncation, reason = "test values are small")]
mod tests {
    use super::*;
    use crate::traffic::{
        baseline::{Baseline, Second},
        sample::Sampled,
        test_packets::{self, sampled},
    };

    const PORT: u16 = 7777;

    /// A UDP packet to the service, each from a source of its own (floods come from
    /// thousands).
    fn udp(sport: u16, len: u16, ttl: u8, payload: &[u8]) -> TestPacket {
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        test_packets::udp(n.to_be_bytes(), (sport, PORT), len, ttl, payload)
    }

    /// A user's queries: lengths 40 to 60, TTL 64, random ports, payloads "q" + a counter.
    fn users(n: u16) -> Vec<TestPacket> {
        (0..n)
            .map(|i| {
                let payload = [b'q', (i % 251) as u8, (i % 7) as u8, 1, 2];
                udp(30_000 + i, 40 + i % 21, 64, &payload)
            })
            .collect()
    }

    fn baseline_of(packets: &[TestPacket]) -> Baseline {
        let mut b = Baseline::default();
        for chunk in packets.chunks(10) {
            let samples: Vec<Sampled> = chunk.iter().cloned().map(sampled).collect();
            b.learn(
                Second {
                    samples: &samples,
                    packets_by_cpu: &[10],
                    counted: &std::collections::BTreeMap::new(),
                },
                &std::collections::BTreeSet::new(),
            );
        }
        b
    }

    fn service() -> Service {
        Service {
            proto: 17,
            port: PORT,
        }
    }

    fn mine_from(
        flood: &[TestPacket],
        users: &[TestPacket],
        baseline: &Baseline,
    ) -> Result<Signature, NoSignature> {
        let all: Vec<&TestPacket> = flood.iter().chain(users).collect();
        #[expect(clippy::cast_precision_loss, reason = "test counts")]
        let excess_share = flood.len() as f64 / all.len() as f64;
        mine(&Attack {
            service: service(),
            samples: &all,
            excess_share,
            baseline: baseline.get(&service()),
            forbidden: &[],
            action: Action::Drop,
        })
    }

    #[test]
    fn a_junk_payload_flood_gets_its_bytes_its_length_and_its_ttl() {
        let baseline = baseline_of(&users(600));
        let junk = [0x66u8; 64];
        let flood: Vec<TestPacket> = (0..400u16)
            .map(|i| udp(1024 + i * 97, 92, 57, &junk))
            .collect();
        let sig = mine_from(&flood, &users(10), &baseline).expect("a signature");
        assert_eq!(
            sig.rule.to_string(),
            format!(
                "udp dport {PORT} len 92 ttl 57 payload 0:66666666666666666666666666666666 drop"
            )
        );
        assert!(sig.flood_coverage >= 0.99, "{sig:?}");
        assert!(sig.baseline_coverage <= MAX_BASELINE_SHARE, "{sig:?}");
        // The same samples, the same signature.
        assert_eq!(mine_from(&flood, &users(10), &baseline), Ok(sig.clone()));
        // Every flood packet matches it, no user's does.
        assert!(flood.iter().all(|p| sig.rule.matches(p)));
        assert!(users(600).iter().all(|p| !sig.rule.matches(p)));
    }

    #[test]
    fn upstream_a_signature_loses_what_flowspec_lacks_only_while_the_rest_still_separates() {
        let baseline = baseline_of(&users(600));
        let junk = [0x66u8; 64];
        let flood: Vec<TestPacket> = (0..400u16)
            .map(|i| udp(1024 + i * 97, 92, 57, &junk))
            .collect();
        let sig = mine_from(&flood, &users(10), &baseline).expect("a signature");
        let upstream = upstream_form(&sig, baseline.get(&service())).expect("its length separates");
        assert_eq!(
            upstream.to_string(),
            format!("udp dport {PORT} len 92 drop")
        );
        // A flood of the users' own length, told only by its payload: upstream, without
        // the payload, the rule would match the users too.
        let users_len = users(1)[0].len;
        let flood: Vec<TestPacket> = (0..400u16)
            .map(|i| udp(1024 + i * 97, users_len, 64, &junk))
            .collect();
        let sig = mine_from(&flood, &users(10), &baseline).expect("a signature");
        assert!(sig.rule.payload.is_some(), "{sig:?}");
        assert_eq!(upstream_form(&sig, baseline.get(&service())), None);
    }

    #[test]
    fn a_reflection_flood_is_told_by_its_source_port_and_size() {
        let baseline = baseline_of(&users(600));
        // NTP answers: from port 123, 468 bytes, payloads that differ after the first byte,
        // TTLs of many paths.
        let flood: Vec<TestPacket> = (0..300u16)
            .map(|i| {
                udp(
                    123,
                    468,
                    40 + (i % 20) as u8,
                    &[0x24, (i % 256) as u8, 3, 4],
                )
            })
            .collect();
        let sig = mine_from(&flood, &users(5), &baseline).expect("a signature");
        assert_eq!(
            sig.rule.to_string(),
            format!("udp sport 123 dport {PORT} len 468 drop")
        );
    }

    #[test]
    fn a_flood_shaped_like_the_users_has_no_signature_and_a_forbidden_field_is_not_used() {
        let baseline = baseline_of(&users(600));
        // A flash crowd: more of the same, from new users further away (a TTL the
        // baseline never saw, which alone is no signature).
        let crowd: Vec<TestPacket> = users(400)
            .into_iter()
            .map(|p| TestPacket { ttl: 50, ..p })
            .collect();
        let Err(NoSignature::LooksNormal(unusual)) = mine_from(&crowd, &[], &baseline) else {
            panic!("a flash crowd has no signature");
        };
        assert!(unusual < 0.01, "{unusual}");
        // Random lengths and payloads, the users' TTL.
        let random: Vec<TestPacket> = (0..400u16)
            .map(|i| {
                udp(
                    1024 + i,
                    28 + (i * 37) % 1400,
                    64,
                    &[(i * 13) as u8, (i * 7) as u8, i as u8, 9],
                )
            })
            .collect();
        let Err(why @ NoSignature::NoSeparatingField(_)) = mine_from(&random, &[], &baseline)
        else {
            panic!("random lengths and payloads have no signature, and are unusual");
        };
        assert!(
            why.to_string()
                .contains("ttl 64 in 100.0 % of it and 100.00 % of the baseline"),
            "{why}"
        );
        // A junk flood whose only tell is its payload, with payloads forbidden.
        let junk: Vec<TestPacket> = (0..400u16)
            .map(|i| udp(1024 + i, 40 + i % 21, 64, &[0x66; 8]))
            .collect();
        let all: Vec<&TestPacket> = junk.iter().collect();
        let attack = Attack {
            service: service(),
            samples: &all,
            excess_share: 1.0,
            baseline: baseline.get(&service()),
            forbidden: &[Field::Payload],
            action: Action::Drop,
        };
        assert!(matches!(mine(&attack), Err(NoSignature::LooksNormal(_))));
        assert!(
            mine(&Attack {
                forbidden: &[],
                ..attack
            })
            .is_ok()
        );
        // Too few samples.
        let few: Vec<&TestPacket> = all[..5].to_vec();
        assert_eq!(
            mine(&Attack {
                samples: &few,
                forbidden: &[],
                ..attack
            }),
            Err(NoSignature::TooFewSamples(5))
        );
    }

    #[test]
    fn a_signature_needs_its_packets_from_several_sources() {
        let baseline = baseline_of(&users(600));
        // One user's queries, sampled in step with the refills: set apart by their source
        // port, but one source.
        let one: Vec<TestPacket> = (0..400u16)
            .map(|_| test_packets::udp([9, 9], (61_000, PORT), 76, 64, b"query 1"))
            .collect();
        assert_eq!(
            mine_from(&one, &[], &baseline),
            Err(NoSignature::FewSources(1))
        );
    }

    #[test]
    fn where_the_users_lengths_and_payloads_vary_a_flood_of_random_ones_cannot_be_told() {
        // Users of an encrypted protocol: lengths and payloads all over the place.
        let varied = |n: u16, seed: u16| -> Vec<TestPacket> {
            (0..n)
                .map(|i| {
                    let x = i.wrapping_mul(7919).wrapping_add(seed);
                    udp(
                        30_000 + i,
                        60 + x % 1300,
                        64,
                        &[(x >> 3) as u8, (x >> 5) as u8, x as u8, (x >> 8) as u8],
                    )
                })
                .collect()
        };
        let baseline = baseline_of(&varied(600, 0));
        assert_eq!(
            mine_from(&varied(400, 17), &[], &baseline),
            Err(NoSignature::CannotTell)
        );
    }

    #[test]
    fn a_service_never_seen_before_takes_the_floods_own_shape() {
        let flood: Vec<TestPacket> = (0..100u16)
            .map(|i| udp(2000 + i, 60, 50, &[1, 2, 3, 4, i as u8]))
            .collect();
        let all: Vec<&TestPacket> = flood.iter().collect();
        let sig = mine(&Attack {
            service: service(),
            samples: &all,
            excess_share: 1.0,
            baseline: None,
            forbidden: &[],
            action: Action::Monitor,
        })
        .expect("a signature");
        assert_eq!(
            sig.rule.to_string(),
            format!("udp dport {PORT} len 60 ttl 50 payload 0:01020304 monitor")
        );
    }
}
