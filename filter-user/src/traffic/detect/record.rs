//! What `floodwall attacks` shows of an attack: its record, its signatures, the frames it
//! keeps for a pcap file. Plain data; the detector (the module above) fills it.

use std::{collections::BTreeSet, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::{
    rules::TestPacket,
    traffic::{baseline::Service, mine::Signature},
};

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
    /// When the operator kept its rule as their own (`rules keep`): the detector no longer
    /// withdraws it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
    /// Packets its rule matched, as last read.
    pub matched_packets: u64,
    /// Seconds in a row its matches were under the baseline.
    #[serde(skip)]
    pub(super) quiet_s: u64,
}

/// Samples of an attack kept for its pcap file.
pub const MAX_FRAMES_KEPT: usize = 2_000;

/// A sample's frame, as an attack keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedFrame {
    /// When its second ended, in ns since the Unix epoch.
    pub at_unix_ns: u64,
    /// The frame's whole length.
    pub frame_len: u32,
    /// Its first bytes, in hex.
    pub hex: String,
}

/// Most sources an attack record counts one by one.
pub const MAX_SOURCES_COUNTED: usize = 65_536;

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
    pub(super) sources: BTreeSet<IpAddr>,
    /// Its first samples, as captured (for `attacks --pcap`).
    #[serde(skip)]
    pub(super) captured: Vec<CapturedFrame>,
    /// Seconds in a row its rate was back under the attack's threshold.
    #[serde(skip)]
    pub(super) calm_s: u64,
    /// Seconds in a row its traffic was mined and looked like the baseline's, with no
    /// signature in force (a flash crowd); a second in which it was not mined (under the
    /// threshold) neither counts nor breaks the row. From [`ADOPT_AFTER_S`](super::ADOPT_AFTER_S) on, the baseline
    /// learns it as the new normal.
    #[serde(skip)]
    pub(super) normal_s: u64,
    /// The kinds of note said already.
    #[serde(skip)]
    pub(super) noted: BTreeSet<&'static str>,
}

impl AttackRecord {
    /// An attack on `service` that starts now (`started`), at `pps` over a baseline of
    /// `baseline_pps`.
    pub(super) fn new(
        id: u32,
        service: Service,
        started: String,
        baseline_pps: f64,
        pps: f64,
    ) -> Self {
        Self {
            id,
            service,
            started,
            ended: None,
            baseline_pps,
            peak_pps: pps,
            sources_seen: 0,
            signatures: Vec::new(),
            notes: Vec::new(),
            sources: BTreeSet::new(),
            captured: Vec::new(),
            calm_s: 0,
            normal_s: 0,
            noted: BTreeSet::new(),
        }
    }

    /// Whether it is still on.
    #[must_use]
    pub fn active(&self) -> bool {
        self.ended.is_none()
    }

    /// The signatures whose rules the detector has in force (not withdrawn, not kept).
    pub(super) fn in_force(&self) -> impl Iterator<Item = &SignatureRecord> {
        self.signatures
            .iter()
            .filter(|s| s.withdrawn.is_none() && s.kept.is_none())
    }

    /// Whether a signature matches `p` and handles it: any not withdrawn, those the
    /// operator kept included (a kept `monitor` rule still covers what it counts).
    pub(super) fn covers(&self, p: &TestPacket) -> bool {
        self.signatures
            .iter()
            .any(|s| s.withdrawn.is_none() && s.signature.rule.matches(p))
    }

    /// Keeps `line` in the notes if nothing of its `kind` is there yet (numbers in a line
    /// change from second to second: each kind is said once an attack); the line if kept.
    pub(super) fn note(&mut self, kind: &'static str, line: String) -> Option<String> {
        if !self.noted.insert(kind) {
            return None;
        }
        self.notes.push(line.clone());
        Some(line)
    }
}
