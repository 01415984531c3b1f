//! The detector's settings: what signatures do ([`SignatureMode`]) and the thresholds
//! ([`DetectConfig`]), with the defaults an operator may change (`thresholds`).

use serde::{Deserialize, Serialize};

use crate::traffic::baseline::{Field, Service};

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
    /// Services whose signatures only count (`monitor`), whatever the mode.
    pub monitor_services: Vec<Service>,
}

impl DetectConfig {
    /// Whether `service`'s signatures only count.
    #[must_use]
    pub fn monitors(&self, service: Service) -> bool {
        self.mode == SignatureMode::Monitor || self.monitor_services.contains(&service)
    }
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
            monitor_services: Vec::new(),
        }
    }
}
