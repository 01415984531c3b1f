//! What normal traffic looks like, per service (protocol and destination port): its rate,
//! and how often each value of the fields a rule can match occurs (length, TTL, source
//! port, TCP flags, the first payload bytes). Learned from the program's packet samples,
//! one second at a time; shown by `floodwall baseline`, kept across daemon restarts in a
//! file of the run directory.
//!
//! Rates come from the program's per-service counters (`super::counted`); for a service
//! they do not cover yet (its first moments), from the samples scaled by the packets the
//! program counted in the same second: the samples are a fixed budget of each refill
//! period, so a service's share of the samples is roughly its share of the packets.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
    path::Path,
};

use serde::{Deserialize, Serialize};

use super::sample::Sampled;
use crate::rules::TestPacket;

/// The services a baseline keeps at most; over it, the quietest goes.
pub const MAX_SERVICES: usize = 256;

/// The values a field's histogram keeps at most; over it, the rarest goes.
pub const MAX_VALUES: usize = 64;

/// Sources a service's baseline knows at most; over it, those seen longest ago go (a
/// tenth at once).
pub const MAX_KNOWN_PER_SERVICE: usize = 4_096;

/// Seconds over which the rate is averaged once the baseline is older than that; until
/// then, the mean of the seconds seen (so that a baseline of 15 seconds is already one).
pub const RATE_HORIZON_S: f64 = 60.0;

/// Per second, how much of the histograms' past weight stays (a half-life of about ten
/// minutes).
pub const DECAY_PER_S: f64 = 0.998_845;

/// A service: IP protocol and destination port (0 for protocols without ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Service {
    /// IP protocol number.
    pub proto: u8,
    /// Destination port; 0 without ports.
    pub port: u16,
}

impl Service {
    /// The service a packet goes to.
    #[must_use]
    pub fn of(packet: &TestPacket) -> Self {
        Self {
            proto: packet.proto,
            port: packet.ports.map_or(0, |(_, dport)| dport),
        }
    }
}

impl std::str::FromStr for Service {
    type Err = String;

    /// `udp/53`, `tcp/443`, `icmp`, `icmpv6`, or `proto/47` (a protocol without ports), as
    /// `Display` writes them.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{text}` is not a service: write udp/PORT, tcp/PORT, icmp, icmpv6 or proto/N (e.g. udp/53)"
            )
        };
        let lower = text.trim().to_ascii_lowercase();
        let (name, digits) = lower.split_once('/').unwrap_or((lower.as_str(), ""));
        let number = || digits.parse::<u16>().map_err(|_| bad());
        Ok(match (name, digits) {
            ("icmp", "") => Self { proto: 1, port: 0 },
            ("icmpv6", "") => Self { proto: 58, port: 0 },
            ("udp" | "tcp", _) => Self {
                proto: if name == "udp" { 17 } else { 6 },
                port: number()?,
            },
            ("proto", _) => {
                let proto = u8::try_from(number()?).map_err(|_| bad())?;
                if matches!(proto, 6 | 17) {
                    return Err(format!(
                        "`{text}`: protocol {proto} has ports: write {}/PORT",
                        if proto == 6 { "tcp" } else { "udp" }
                    ));
                }
                Self { proto, port: 0 }
            }
            _ => return Err(bad()),
        })
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.proto {
            6 => "tcp",
            17 => "udp",
            1 => return f.write_str("icmp"),
            58 => return f.write_str("icmpv6"),
            other => return write!(f, "proto/{other}"),
        };
        write!(f, "{name}/{}", self.port)
    }
}

/// How often each value of one field occurs, with the past weighing less and less.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Weight by value, at most [`MAX_VALUES`] of them.
    values: BTreeMap<u32, f64>,
    /// The weight of every value seen, those dropped included.
    total: f64,
}

impl Histogram {
    fn add(&mut self, value: u32) {
        *self.values.entry(value).or_default() += 1.0;
        self.total += 1.0;
        if self.values.len() > MAX_VALUES
            && let Some(rarest) = self
                .values
                .iter()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(v, _)| *v)
        {
            self.values.remove(&rarest);
        }
    }

    fn decay(&mut self, factor: f64) {
        self.total *= factor;
        for weight in self.values.values_mut() {
            *weight *= factor;
        }
    }

    /// The share of packets with `value` (0 to 1).
    #[must_use]
    pub fn share(&self, value: u32) -> f64 {
        if self.total <= 0.0 {
            return 0.0;
        }
        self.values.get(&value).copied().unwrap_or(0.0) / self.total
    }

    /// The share of packets whose value the histogram keeps (0 to 1): near 1 where a
    /// few values make the field, low where it is random (the rest were dropped).
    #[must_use]
    pub fn known_share(&self) -> f64 {
        if self.total <= 0.0 {
            return 0.0;
        }
        self.values.values().sum::<f64>() / self.total
    }

    /// The `n` most common values with their shares, most common first (ties by value).
    #[must_use]
    pub fn top(&self, n: usize) -> Vec<(u32, f64)> {
        let mut all: Vec<(u32, f64)> = self
            .values
            .iter()
            .map(|(&v, &w)| {
                (
                    v,
                    if self.total > 0.0 {
                        w / self.total
                    } else {
                        0.0
                    },
                )
            })
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

/// The fields of a packet a baseline keeps histograms of.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Field {
    /// IP length.
    Len,
    /// TTL or hop limit.
    Ttl,
    /// Source port.
    Sport,
    /// TCP flags.
    Flags,
    /// The first four bytes of the L4 payload, big-endian.
    Payload,
}

impl Field {
    /// Every field, in the order they are shown.
    pub const ALL: [Self; 5] = [
        Self::Len,
        Self::Ttl,
        Self::Sport,
        Self::Flags,
        Self::Payload,
    ];

    /// The value of this field in `packet`, if it has one.
    #[must_use]
    pub fn value(self, packet: &TestPacket) -> Option<u32> {
        match self {
            Self::Len => Some(u32::from(packet.len)),
            Self::Ttl => Some(u32::from(packet.ttl)),
            Self::Sport => packet.ports.map(|(sport, _)| u32::from(sport)),
            Self::Flags => (packet.proto == 6).then_some(u32::from(packet.tcp_flags)),
            Self::Payload => packet.payload.as_ref().and_then(|p| {
                let head: [u8; 4] = p.bytes.get(..4)?.try_into().ok()?;
                (p.offset == 0).then_some(u32::from_be_bytes(head))
            }),
        }
    }

    /// A value of this field as a rule writes it.
    #[must_use]
    pub fn value_text(self, value: u32) -> String {
        match self {
            Self::Payload => format!("0:{value:08x}"),
            Self::Flags => format!("0x{value:02x}"),
            _ => value.to_string(),
        }
    }

    /// The name operators see (as in the rule syntax where there is one).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Len => "len",
            Self::Ttl => "ttl",
            Self::Sport => "sport",
            Self::Flags => "flags",
            Self::Payload => "payload",
        }
    }
}

/// One service's baseline.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceBaseline {
    /// Packets a second, averaged (see [`RATE_HORIZON_S`]).
    pub pps: f64,
    /// Bits a second, averaged likewise.
    pub bps: f64,
    /// Seconds of traffic learned from (seconds in which the service was sampled).
    pub learned_s: u64,
    /// Samples learned from.
    pub samples: u64,
    /// Histograms by field.
    pub fields: BTreeMap<Field, Histogram>,
    /// The sources seen using the service while it was not attacked, each with the
    /// baseline's second ([`Baseline::learned_s`]) it was last seen in: the sources a
    /// `source unknown` rule spares when no field tells a flood from its users.
    #[serde(default)]
    pub known: BTreeMap<IpAddr, u64>,
}

impl ServiceBaseline {
    fn learn_second(&mut self, pps: f64, bps: f64) {
        self.learned_s += 1;
        // The mean of the seconds seen until the horizon, then an exponential average.
        #[expect(clippy::cast_precision_loss, reason = "seconds, far below 2^52")]
        let weight = 1.0 / (self.learned_s as f64).min(RATE_HORIZON_S);
        self.pps += (pps - self.pps) * weight;
        self.bps += (bps - self.bps) * weight;
    }

    fn idle_second(&mut self) {
        let weight = 1.0 / RATE_HORIZON_S;
        self.pps -= self.pps * weight;
        self.bps -= self.bps * weight;
    }
}

/// Every service's baseline.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Seconds learned, all services together.
    #[serde(default)]
    pub learned_s: u64,
    #[serde(with = "as_list")]
    services: BTreeMap<Service, ServiceBaseline>,
    /// Changed whenever a service's known sources do (for the daemon's copy in the
    /// kernel).
    #[serde(skip)]
    known_changes: u64,
}

/// The services as a list of pairs: JSON's keys are strings.
mod as_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize as _, Deserializer, Serializer};

    use super::{Service, ServiceBaseline};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<Service, ServiceBaseline>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<Service, ServiceBaseline>, D::Error> {
        Ok(
            Vec::<(Service, ServiceBaseline)>::deserialize(deserializer)?
                .into_iter()
                .collect(),
        )
    }
}

/// Forgets the tenth of `known` seen longest ago (ties by address), and more down to the
/// cap.
fn forget_oldest(known: &mut BTreeMap<IpAddr, u64>) {
    let keep = MAX_KNOWN_PER_SERVICE - MAX_KNOWN_PER_SERVICE / 10;
    let mut by_age: Vec<(u64, IpAddr)> = known.iter().map(|(a, &at)| (at, *a)).collect();
    by_age.sort_unstable();
    for (_, addr) in &by_age[..known.len().saturating_sub(keep)] {
        known.remove(addr);
    }
}

/// One second of traffic: the samples taken in it, the packets the program counted in it
/// on each CPU (every outcome), and the services' rates its per-service counters gave.
#[derive(Clone, Copy, Debug)]
pub struct Second<'a> {
    /// The samples.
    pub samples: &'a [Sampled],
    /// Packets the program counted, by CPU.
    pub packets_by_cpu: &'a [u64],
    /// Packets and bits a second of the services the per-service counters cover.
    pub counted: &'a BTreeMap<Service, (f64, f64)>,
}

impl Second<'_> {
    /// The IP samples with the service each goes to and the packets it stands for.
    pub fn by_service(&self) -> impl Iterator<Item = (Service, &Sampled, &TestPacket, f64)> {
        let weights = self.weights();
        self.samples.iter().filter_map(move |s| {
            let weight = weights
                .get(usize::try_from(s.cpu).unwrap_or(usize::MAX))
                .copied()
                .unwrap_or(1.0);
            s.packet.as_ref().map(|p| (Service::of(p), s, p, weight))
        })
    }

    /// How many packets a sample of each CPU stands for: the packets that CPU counted over
    /// the samples it took (at least one: a counter read a moment apart from the samples
    /// may lag them). By CPU, because each CPU has its own budget: a CPU that sees few
    /// packets samples them all, one under a flood only a few of them.
    #[must_use]
    pub fn weights(&self) -> Vec<f64> {
        let mut taken: Vec<u64> = vec![0; self.packets_by_cpu.len()];
        for s in self.samples {
            if let Some(n) = taken.get_mut(usize::try_from(s.cpu).unwrap_or(usize::MAX)) {
                *n += 1;
            }
        }
        #[expect(clippy::cast_precision_loss, reason = "rates, not exact counts")]
        taken
            .iter()
            .zip(self.packets_by_cpu)
            .map(|(&n, &packets)| {
                if n == 0 {
                    1.0
                } else {
                    (packets as f64 / n as f64).max(1.0)
                }
            })
            .collect()
    }

    /// Each service's packets and bits a second, as counted where the counters cover it,
    /// else estimated from the samples.
    #[must_use]
    pub fn rates(&self) -> BTreeMap<Service, (f64, f64)> {
        let mut rates = self.estimated_rates();
        rates.extend(self.counted.iter().map(|(s, r)| (*s, *r)));
        rates
    }

    /// Each service's packets and bits a second, estimated from the samples alone.
    #[must_use]
    pub fn estimated_rates(&self) -> BTreeMap<Service, (f64, f64)> {
        let mut rates: BTreeMap<Service, (f64, f64)> = BTreeMap::new();
        for (service, sample, _, weight) in self.by_service() {
            let entry = rates.entry(service).or_default();
            entry.0 += weight;
            entry.1 += weight * f64::from(sample.frame_len) * 8.0;
        }
        rates
    }
}

impl Baseline {
    /// Learns one second of traffic, except for the services in `under_attack`: an
    /// attack's traffic is not normal.
    pub fn learn(&mut self, second: Second<'_>, under_attack: &BTreeSet<Service>) {
        self.learned_s += 1;
        let rates = second.rates();
        for (service, sample, packet, _) in second.by_service() {
            if under_attack.contains(&service) {
                continue;
            }
            let baseline = self.services.entry(service).or_default();
            baseline.samples += 1;
            // A source the program dropped (a block, a list, a rule) is not a user.
            if !sample.outcome.is_drop()
                && baseline.known.insert(packet.src, self.learned_s).is_none()
            {
                self.known_changes += 1;
            }
            for field in Field::ALL {
                if let Some(value) = field.value(packet) {
                    baseline.fields.entry(field).or_default().add(value);
                }
            }
        }
        for (service, baseline) in &mut self.services {
            if under_attack.contains(service) {
                continue;
            }
            for histogram in baseline.fields.values_mut() {
                histogram.decay(DECAY_PER_S);
            }
            match rates.get(service) {
                Some(&(pps, bps)) => baseline.learn_second(pps, bps),
                None => baseline.idle_second(),
            }
            if baseline.known.len() > MAX_KNOWN_PER_SERVICE {
                forget_oldest(&mut baseline.known);
                self.known_changes += 1;
            }
        }
        self.prune();
    }

    /// A number that changes whenever a service's known sources do.
    #[must_use]
    pub fn known_changes(&self) -> u64 {
        self.known_changes
    }

    /// Makes `service`'s baseline know `src` (seen now), if it does not yet.
    pub fn know(&mut self, service: Service, src: IpAddr) {
        let now = self.learned_s;
        let known = &mut self.services.entry(service).or_default().known;
        if known.len() < MAX_KNOWN_PER_SERVICE && !known.contains_key(&src) {
            known.insert(src, now);
            self.known_changes += 1;
        }
    }

    /// Whether `service`'s baseline knows `src`.
    #[must_use]
    pub fn knows(&self, service: &Service, src: IpAddr) -> bool {
        self.services
            .get(service)
            .is_some_and(|b| b.known.contains_key(&src))
    }

    fn prune(&mut self) {
        while self.services.len() > MAX_SERVICES {
            let quietest = self
                .services
                .iter()
                .min_by(|a, b| a.1.pps.total_cmp(&b.1.pps))
                .map(|(s, _)| *s);
            match quietest {
                Some(s) => self.services.remove(&s),
                None => break,
            };
            self.known_changes += 1;
        }
    }

    /// A service's baseline.
    #[must_use]
    pub fn get(&self, service: &Service) -> Option<&ServiceBaseline> {
        self.services.get(service)
    }

    /// Every service, busiest first.
    #[must_use]
    pub fn services(&self) -> Vec<(Service, &ServiceBaseline)> {
        let mut all: Vec<_> = self.services.iter().map(|(s, b)| (*s, b)).collect();
        all.sort_by(|a, b| b.1.pps.total_cmp(&a.1.pps).then(a.0.cmp(&b.0)));
        all
    }

    /// Reads a baseline saved by [`Baseline::save`]; an absent file is an empty baseline.
    ///
    /// # Errors
    /// If the file cannot be read or is not a baseline.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        crate::state_file::load(path, "a floodwall baseline")
    }

    /// Writes the baseline to `path` (through a temporary file and a rename, so that a
    /// crash leaves the old file or the new one).
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        crate::state_file::save(self, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::test_packets::{self as packets, sampled};
    use filter_common::Outcome;

    fn udp(sport: u16, dport: u16, len: u16) -> Sampled {
        sampled(packets::udp([0, 10], (sport, dport), len, 64, &[]))
    }

    /// One second of `samples` standing for `packets`, on one CPU, nothing under attack.
    fn learn(b: &mut Baseline, samples: &[Sampled], packets: u64) {
        b.learn(
            Second {
                samples,
                packets_by_cpu: &[packets],
                counted: &BTreeMap::new(),
            },
            &BTreeSet::new(),
        );
    }

    const DNS: Service = Service {
        proto: 17,
        port: 53,
    };

    #[test]
    fn rates_scale_the_samples_by_the_packets_counted() {
        let mut b = Baseline::default();
        // 10 samples, 3 of them to udp/53, standing for 1,000 packets.
        let mut samples: Vec<Sampled> = (0..7).map(|_| udp(40_000, 9, 100)).collect();
        samples.extend((0..3).map(|_| udp(40_000, 53, 60)));
        learn(&mut b, &samples, 1_000);
        let dns = b.get(&DNS).expect("udp/53");
        assert!((dns.pps - 300.0).abs() < 1e-9, "{}", dns.pps);
        assert!((dns.bps - 300.0 * 74.0 * 8.0).abs() < 1e-6);
        assert_eq!(dns.learned_s, 1);
        let busiest = b.services()[0].0;
        assert_eq!(busiest.to_string(), "udp/9");
    }

    #[test]
    fn fields_are_learned_as_shares_and_the_rate_as_a_mean_then_an_average() {
        let mut b = Baseline::default();
        for second in 0..20u64 {
            let samples = vec![udp(5_000, 53, 60), udp(5_001, 53, 80)];
            learn(&mut b, &samples, 2 + second % 2 * 2);
        }
        let dns = b.get(&DNS).expect("udp/53");
        assert_eq!(dns.learned_s, 20);
        assert_eq!(dns.samples, 40);
        // Seconds of 2 and 4 packets, alternating: the mean.
        assert!((dns.pps - 3.0).abs() < 1e-9, "{}", dns.pps);
        let len = &dns.fields[&Field::Len];
        assert!((len.share(60) - 0.5).abs() < 1e-9);
        assert_eq!(len.top(1)[0].0, 60, "ties go to the smaller value");
        assert!(!dns.fields.contains_key(&Field::Flags), "UDP has no flags");
        // A quiet second lowers the rate.
        learn(&mut b, &[], 0);
        assert!(
            b.get(&Service {
                proto: 17,
                port: 53
            })
            .expect("kept")
            .pps < 3.0
        );
    }

    #[test]
    fn a_histogram_keeps_the_common_values_and_a_baseline_its_busiest_services() {
        let mut h = Histogram::default();
        for v in 0..200u32 {
            h.add(v % 100);
            h.add(7);
        }
        assert!(h.values.len() <= MAX_VALUES);
        assert_eq!(h.top(1)[0].0, 7);
        assert!((h.share(7) - 202.0 / 400.0).abs() < 1e-9);

        let mut b = Baseline::default();
        let samples: Vec<Sampled> = (0..300u16).map(|port| udp(1, port, 60)).collect();
        learn(&mut b, &samples, 300);
        assert_eq!(b.services().len(), MAX_SERVICES);
    }

    #[test]
    fn a_baseline_survives_a_save_and_a_load() {
        let dir = std::env::temp_dir().join(format!("fw-baseline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("b.json");
        assert_eq!(Baseline::load(&path).expect("absent"), Baseline::default());
        let mut b = Baseline::default();
        learn(&mut b, &[udp(1, 53, 60)], 5);
        b.save(&path).expect("save");
        let loaded = Baseline::load(&path).expect("load");
        assert_eq!(loaded.services(), b.services());
        assert_eq!(loaded.learned_s, b.learned_s);
        std::fs::write(&path, b"{").expect("write");
        let err = Baseline::load(&path).expect_err("not JSON");
        assert!(
            format!("{err:#}").contains("is not a floodwall baseline"),
            "{err:#}"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn known_sources_are_the_passed_ones_of_normal_seconds_the_longest_unseen_going_first() {
        let from = |a: u8, b: u8, outcome| Sampled {
            outcome,
            ..sampled(packets::udp([a, b], (40_000, 53), 60, 64, &[]))
        };
        let mut b = Baseline::default();
        let changes = b.known_changes();
        learn(
            &mut b,
            &[
                from(0, 1, Outcome::Passed),
                from(0, 2, Outcome::DroppedBlocked),
            ],
            2,
        );
        let src = |a: u8, c: u8| from(a, c, Outcome::Passed).packet.expect("ip").src;
        assert!(b.knows(&DNS, src(0, 1)));
        assert!(!b.knows(&DNS, src(0, 2)), "a dropped source is no user");
        assert_ne!(b.known_changes(), changes);
        // Under attack, nothing is learned.
        b.learn(
            Second {
                samples: &[from(0, 3, Outcome::Passed)],
                packets_by_cpu: &[1],
                counted: &BTreeMap::new(),
            },
            &BTreeSet::from([DNS]),
        );
        assert!(!b.knows(&DNS, src(0, 3)));
        // Over the cap, a tenth goes, the longest unseen first: the first source, seen
        // again last, stays.
        for a in 1..=17u8 {
            let samples: Vec<Sampled> = (0..=255u8).map(|c| from(a, c, Outcome::Passed)).collect();
            learn(&mut b, &samples, 256);
        }
        learn(&mut b, &[from(0, 1, Outcome::Passed)], 1);
        let known = &b.get(&DNS).expect("udp/53").known;
        assert!(known.len() <= MAX_KNOWN_PER_SERVICE, "{}", known.len());
        assert!(b.knows(&DNS, src(0, 1)) && b.knows(&DNS, src(17, 9)));
        assert!(!b.knows(&DNS, src(1, 9)), "among the longest unseen");
        // Sources a daemon before wrote into the kernel are known again, once.
        let changes = b.known_changes();
        b.know(DNS, src(1, 9));
        b.know(DNS, src(1, 9));
        assert!(b.knows(&DNS, src(1, 9)));
        assert_eq!(b.known_changes(), changes + 1);
    }
}
