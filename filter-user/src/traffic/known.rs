//! The sources each service's baseline knows, copied into the program's
//! `FW_KNOWN_SOURCES` for rules that name `source known|unknown`: a signature that protects
//! a service's users where no field tells its flood from them
//! (`udp dport 7777 source unknown rate-limit 100pps`).
//!
//! The daemon writes the map; the program only reads it. The map is pinned, so that such a
//! rule keeps sparing the known sources while no daemon runs; a new daemon writes its own
//! baseline's sources over what it finds.

use std::collections::BTreeSet;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{HashMap, MapData},
};
use filter_common::{KnownSourceKey, MAX_KNOWN_SOURCES, SourceKey, map_names};

use super::baseline::{Baseline, Service};
use crate::maps::{remove_key, take};

/// The map, and what this daemon knows it holds.
pub struct KnownSources {
    map: HashMap<MapData, KnownSourceKey, u8>,
    written: BTreeSet<KnownSourceKey>,
    /// [`Baseline::known_changes`] when last written; `None`: never.
    synced: Option<u64>,
}

impl KnownSources {
    /// Takes the map out of a loaded object, with what a daemon before wrote into it.
    ///
    /// # Errors
    /// If the map is missing or has another layout.
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let map: HashMap<MapData, KnownSourceKey, u8> = take(ebpf, map_names::KNOWN_SOURCES)?;
        let written = map.keys().filter_map(Result::ok).collect();
        Ok(Self {
            map,
            written,
            synced: None,
        })
    }

    /// Makes the map hold `baseline`'s known sources (the busiest services' first, up to
    /// [`MAX_KNOWN_SOURCES`]); nothing to do while they have not changed.
    ///
    /// # Errors
    /// If the kernel refuses a write; the next call tries again.
    pub fn sync(&mut self, baseline: &Baseline) -> anyhow::Result<()> {
        if self.synced == Some(baseline.known_changes()) {
            return Ok(());
        }
        let wanted = keys(baseline);
        for gone in self.written.difference(&wanted) {
            remove_key(&mut self.map, gone).context("cannot delete a known source")?;
        }
        self.written.retain(|k| wanted.contains(k));
        for new in wanted.difference(&self.written) {
            self.map
                .insert(new, 1, 0)
                .context("cannot write a known source")?;
        }
        self.written = wanted;
        self.synced = Some(baseline.known_changes());
        Ok(())
    }

    /// Makes `baseline` know the sources a daemon before wrote into the (pinned) map, so
    /// that a baseline file that is older than the map, or lost, does not take away the
    /// sources a `source unknown` rule in force spares.
    pub fn adopt_into(&self, baseline: &mut Baseline) {
        for key in &self.written {
            let service = Service {
                proto: key.proto,
                port: key.port,
            };
            baseline.know(service, SourceKey { addr: key.addr }.ip());
        }
    }
}

/// The keys of `baseline`'s known sources, the busiest services' first, up to
/// [`MAX_KNOWN_SOURCES`].
#[must_use]
pub fn keys(baseline: &Baseline) -> BTreeSet<KnownSourceKey> {
    let mut keys = BTreeSet::new();
    for (service, b) in baseline.services() {
        for &src in b.known.keys() {
            if keys.len() >= MAX_KNOWN_SOURCES as usize {
                return keys;
            }
            keys.insert(KnownSourceKey {
                addr: SourceKey::from_ip(src).addr,
                port: service.port,
                proto: service.proto,
                pad: 0,
            });
        }
    }
    keys
}
