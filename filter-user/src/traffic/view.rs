//! What `floodwall baseline` and `floodwall attacks` show: the views the daemon sends
//! (`--json` prints them as they are) and their text.

use std::fmt::{self, Display, Formatter};

use serde::{Deserialize, Serialize};

use super::{
    baseline::Field,
    detect::{AttackRecord, Detector, SignatureMode},
};

/// The values of a field shown at most.
const TOP_VALUES: usize = 3;

/// `floodwall baseline`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineView {
    /// What signatures do.
    pub mode: SignatureMode,
    /// Seconds of traffic watched (the last two are learned once no attack claims them).
    pub learned_s: u64,
    /// Seconds needed before anything is enforced.
    pub min_baseline_s: u64,
    /// The services, busiest first.
    pub services: Vec<ServiceView>,
}

/// One service's baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    /// `udp/53`, `tcp/443`, `icmp`.
    pub service: String,
    /// IP protocol.
    pub proto: u8,
    /// Destination port (0 without ports).
    pub port: u16,
    /// Packets a second, averaged.
    pub pps: f64,
    /// Bits a second, averaged.
    pub bps: f64,
    /// Packets a second in the last second, as the program counted them (or the samples
    /// estimated them); `None` while there is no reading yet.
    #[serde(default)]
    pub now_pps: Option<f64>,
    /// Bits a second in the last second.
    #[serde(default)]
    pub now_bps: Option<f64>,
    /// Seconds in which it was seen.
    pub learned_s: u64,
    /// Samples learned from.
    pub samples: u64,
    /// Sources seen using it (those a `source unknown` signature spares).
    #[serde(default)]
    pub known_sources: usize,
    /// Its most common values, by field.
    pub fields: Vec<FieldView>,
}

/// A field's most common values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldView {
    /// The field (`len`, `ttl`, `sport`, `flags`, `payload`).
    pub field: String,
    /// Values (as a rule writes them) and their shares (0 to 1), most common first.
    pub top: Vec<(String, f64)>,
}

impl BaselineView {
    /// The view of the detector's baseline, with each service's rate in the last second.
    #[must_use]
    pub fn new(detector: &Detector) -> Self {
        let (config, now) = (&detector.config, detector.rates_now());
        Self {
            mode: config.mode,
            learned_s: detector.watched_s(),
            min_baseline_s: config.min_baseline_s,
            services: detector
                .baseline
                .services()
                .into_iter()
                .map(|(service, b)| ServiceView {
                    service: service.to_string(),
                    proto: service.proto,
                    port: service.port,
                    pps: b.pps,
                    bps: b.bps,
                    now_pps: now.get(&service).map(|r| r.0),
                    now_bps: now.get(&service).map(|r| r.1),
                    learned_s: b.learned_s,
                    samples: b.samples,
                    known_sources: b.known.len(),
                    fields: Field::ALL
                        .iter()
                        .filter_map(|field| {
                            let h = b.fields.get(field)?;
                            Some(FieldView {
                                field: field.name().to_owned(),
                                top: h
                                    .top(TOP_VALUES)
                                    .into_iter()
                                    .map(|(v, share)| (field.value_text(v), share))
                                    .collect(),
                            })
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl Display for BaselineView {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let state = if self.learned_s >= self.min_baseline_s {
            "ready"
        } else {
            "learning"
        };
        writeln!(
            f,
            "baseline: {}s of traffic learned ({state}: {}s needed), signatures: {}",
            self.learned_s,
            self.min_baseline_s,
            mode_name(self.mode)
        )?;
        if self.services.is_empty() {
            return writeln!(f, "no service seen yet");
        }
        writeln!(
            f,
            "{:<12} {:>10} {:>12} {:>10} {:>8} {:>8}  most common values",
            "service", "packets/s", "bits/s", "now pps", "seen", "sources"
        )?;
        for s in &self.services {
            let fields: Vec<String> = s
                .fields
                .iter()
                .map(|field| {
                    let values: Vec<String> = field
                        .top
                        .iter()
                        .map(|(v, share)| format!("{v} {:.0}%", share * 100.0))
                        .collect();
                    format!("{} {}", field.field, values.join(", "))
                })
                .collect();
            writeln!(
                f,
                "{:<12} {:>10.1} {:>12.0} {:>10} {:>7}s {:>8}  {}",
                s.service,
                s.pps,
                s.bps,
                s.now_pps
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}")),
                s.learned_s,
                s.known_sources,
                fields.join("; ")
            )?;
        }
        Ok(())
    }
}

/// `floodwall attacks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttacksView {
    /// What signatures do.
    pub mode: SignatureMode,
    /// The attacks, oldest first.
    pub attacks: Vec<AttackRecord>,
}

fn mode_name(mode: SignatureMode) -> String {
    match mode {
        SignatureMode::Monitor => "monitor (computed and counted, not enforced)".to_owned(),
        other => other.to_string(),
    }
}

impl Display for AttacksView {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "signatures: {}", mode_name(self.mode))?;
        if self.attacks.is_empty() {
            return writeln!(f, "no attack seen");
        }
        for a in &self.attacks {
            let end = a
                .ended
                .as_ref()
                .map_or_else(|| "on now".to_owned(), |e| format!("ended {e}"));
            writeln!(
                f,
                "attack {} on {}: started {}, {end}; peak {:.0} packets/s (baseline {:.0}), {} \
                 sources seen",
                a.id, a.service, a.started, a.peak_pps, a.baseline_pps, a.sources_seen
            )?;
            for s in &a.signatures {
                let state = s
                    .withdrawn
                    .as_ref()
                    .map(|w| format!("withdrawn {w}"))
                    .or_else(|| s.kept.as_ref().map(|k| format!("kept by the operator {k}")))
                    .unwrap_or_else(|| "in force".to_owned());
                writeln!(
                    f,
                    "  rule {} ({state}, from {}): {}\n    matches {:.1} % of the flood, at most \
                     {:.2} % of the baseline; matched {} packets",
                    s.rule_id,
                    s.installed,
                    s.signature.rule,
                    s.signature.flood_coverage * 100.0,
                    s.signature.baseline_coverage * 100.0,
                    s.matched_packets
                )?;
            }
            for note in &a.notes {
                writeln!(f, "  {note}")?;
            }
        }
        Ok(())
    }
}
