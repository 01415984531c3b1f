//! The program's per-service counters (`FW_SERVICE_COUNTERS`): every IP packet counted once
//! by its service's slot (`filter_common::service_slot`), whatever the program decided. They
//! give each service's rate exactly, where the samples (a fixed budget of each refill
//! period) only estimate it, and give it for a service whose packets the budget missed.
//!
//! A sample whose capture ends before its TCP or UDP ports (a long chain of IPv6 extension
//! headers, long IPv4 options) names port 0, where the program counted its real port: its
//! service keeps the samples' estimate ([`ports_unseen`]).
//!
//! The daemon reads only the slots of the services it watches: those its baseline has and
//! those the samples show. A slot is read first when its service shows up (mid-second, as
//! the samples come in), then at the end of every second; a slot no service has asked for
//! in [`FORGET_AFTER`] is no longer read.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
};
use filter_common::{Counter, fragment, map_names, service_slot};

use super::{baseline::Service, sample::Sampled};

/// A slot no service asked for in this long is no longer read.
pub const FORGET_AFTER: Duration = Duration::from_mins(1);

/// The shortest time between two readings of a slot that gives it a rate: a slot first read
/// at the very end of a second waits for the next.
pub const MIN_WINDOW: Duration = Duration::from_millis(200);

/// Packets and bits a second.
pub type Rate = (f64, f64);

/// The slot of `service`.
#[must_use]
pub fn slot_of(service: Service) -> u32 {
    service_slot(service.proto, service.port)
}

/// A slot's last reading, all CPUs summed.
#[derive(Clone, Copy, Debug)]
struct Reading {
    at: Instant,
    packets: u64,
    bytes: u64,
    /// When a service last asked for the slot.
    asked: Instant,
}

/// The per-service counters and the last reading of each slot watched.
pub struct ServiceCounters {
    map: PerCpuArray<MapData, Counter>,
    readings: BTreeMap<u32, Reading>,
}

impl ServiceCounters {
    /// Takes the map out of a loaded object.
    ///
    /// # Errors
    /// If the map is missing or of another type.
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let name = map_names::SERVICE_COUNTERS;
        let map = ebpf
            .take_map(name)
            .ok_or_else(|| anyhow!("the XDP object has no map named {name}"))?;
        let map = PerCpuArray::try_from(map)
            .with_context(|| format!("map {name} is not a per-CPU array of counters"))?;
        Ok(Self {
            map,
            readings: BTreeMap::new(),
        })
    }

    /// Packets and bytes counted in `service`'s slot so far, all CPUs together (the
    /// services that share the slot with it included).
    ///
    /// # Errors
    /// If the slot cannot be read.
    pub fn counted(&self, service: Service) -> anyhow::Result<(u64, u64)> {
        self.read(slot_of(service))
    }

    fn read(&self, slot: u32) -> anyhow::Result<(u64, u64)> {
        let values = self.map.get(&slot, 0).with_context(|| {
            format!("cannot read slot {slot} of {}", map_names::SERVICE_COUNTERS)
        })?;
        Ok(values.iter().fold((0, 0), |(p, b), c| {
            (p.wrapping_add(c.packets), b.wrapping_add(c.bytes))
        }))
    }

    /// Reads, for the first time, the slots of those of `services` not watched yet, and
    /// marks all of them asked for.
    ///
    /// # Errors
    /// If a slot cannot be read; the slots read before it are watched.
    pub fn watch(&mut self, services: impl IntoIterator<Item = Service>) -> anyhow::Result<()> {
        let now = Instant::now();
        for slot in services.into_iter().map(slot_of) {
            if let Some(reading) = self.readings.get_mut(&slot) {
                reading.asked = now;
                continue;
            }
            let (packets, bytes) = self.read(slot)?;
            self.readings.insert(
                slot,
                Reading {
                    at: Instant::now(),
                    packets,
                    bytes,
                    asked: now,
                },
            );
        }
        Ok(())
    }

    /// Each watched slot's rate since its last reading, read now; a slot read less than
    /// [`MIN_WINDOW`] ago keeps its reading for the next call. Slots not asked for in
    /// [`FORGET_AFTER`] are forgotten.
    ///
    /// # Errors
    /// If a slot cannot be read.
    pub fn rates(&mut self) -> anyhow::Result<BTreeMap<u32, Rate>> {
        let now = Instant::now();
        self.readings
            .retain(|_, r| now.saturating_duration_since(r.asked) < FORGET_AFTER);
        let mut rates = BTreeMap::new();
        let slots: Vec<u32> = self.readings.keys().copied().collect();
        for slot in slots {
            let (packets, bytes) = self.read(slot)?;
            let at = Instant::now();
            let Some(last) = self.readings.get_mut(&slot) else {
                continue;
            };
            let window = at.saturating_duration_since(last.at);
            if window < MIN_WINDOW {
                continue;
            }
            let seconds = window.as_secs_f64();
            #[expect(clippy::cast_precision_loss, reason = "rates, not exact counts")]
            let rate = (
                packets.wrapping_sub(last.packets) as f64 / seconds,
                bytes.wrapping_sub(last.bytes) as f64 * 8.0 / seconds,
            );
            rates.insert(slot, rate);
            *last = Reading {
                at,
                packets,
                bytes,
                asked: last.asked,
            };
        }
        Ok(rates)
    }
}

/// The services that `samples` name without having seen their ports: TCP or UDP, not a
/// later fragment, with no ports in the capture. The program counted those packets under
/// their real ports, so the counters cannot give these services' rates.
#[must_use]
pub fn ports_unseen(samples: &[Sampled]) -> BTreeSet<Service> {
    samples
        .iter()
        .filter_map(|s| s.packet.as_ref())
        .filter(|p| matches!(p.proto, 6 | 17) && p.ports.is_none() && p.fragment != fragment::LATER)
        .map(Service::of)
        .collect()
}

/// Each service's rate from its slot's: a slot that one of `services` alone has is that
/// service's; a slot several share is split among them by their rates as the samples
/// estimate them (`estimated`), evenly where the samples saw none of them. A slot none of
/// `services` has is left out.
#[must_use]
pub fn split(
    slot_rates: &BTreeMap<u32, Rate>,
    services: &BTreeSet<Service>,
    estimated: &BTreeMap<Service, Rate>,
) -> BTreeMap<Service, Rate> {
    let mut sharing: BTreeMap<u32, Vec<Service>> = BTreeMap::new();
    for &service in services {
        sharing.entry(slot_of(service)).or_default().push(service);
    }
    let mut out = BTreeMap::new();
    for (slot, &(pps, bps)) in slot_rates {
        let Some(those) = sharing.get(slot) else {
            continue;
        };
        let guess = |s: &Service| estimated.get(s).copied().unwrap_or_default();
        let sampled = those
            .iter()
            .map(guess)
            .fold((0.0, 0.0), |(p, b), (sp, sb)| (p + sp, b + sb));
        #[expect(clippy::cast_precision_loss, reason = "a handful of services")]
        let even = 1.0 / those.len() as f64;
        for service in those {
            let (p, b) = guess(service);
            let share = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { even };
            out.insert(
                *service,
                (pps * share(p, sampled.0), bps * share(b, sampled.1)),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(port: u16) -> Service {
        Service { proto: 17, port }
    }

    #[test]
    fn a_sample_without_its_ports_keeps_its_service_out_of_the_counters() {
        use crate::traffic::test_packets::{sampled, udp as packet};
        let whole = sampled(packet([1, 1], (1_000, 53), 60, 64, &[]));
        let mut cut = whole.clone();
        if let Some(p) = cut.packet.as_mut() {
            p.ports = None;
        }
        let mut later = cut.clone();
        if let Some(p) = later.packet.as_mut() {
            p.fragment = fragment::LATER;
        }
        assert_eq!(ports_unseen(&[whole, cut, later]), BTreeSet::from([udp(0)]));
    }

    #[test]
    fn a_slot_of_its_own_is_the_service_rate_whatever_the_samples_say() {
        let services = BTreeSet::from([udp(53), udp(123)]);
        let slots = BTreeMap::from([
            (slot_of(udp(53)), (250_000.0, 1e9)),
            (slot_of(udp(123)), (80.0, 64_000.0)),
            // A slot none of the services has: another service's.
            (slot_of(Service { proto: 6, port: 80 }), (10.0, 1.0)),
        ]);
        // The samples saw udp/53 only, and far under its rate.
        let estimated = BTreeMap::from([(udp(53), (5_000.0, 2e7))]);
        let rates = split(&slots, &services, &estimated);
        assert_eq!(
            rates,
            BTreeMap::from([(udp(53), (250_000.0, 1e9)), (udp(123), (80.0, 64_000.0)),])
        );
    }

    #[test]
    fn a_shared_slot_is_split_by_the_samples_or_evenly_without_them() {
        // 5,000 and 5,000 + 4,096 share a slot.
        let (a, b) = (udp(5_000), udp(5_000 + 4_096));
        assert_eq!(slot_of(a), slot_of(b));
        let services = BTreeSet::from([a, b]);
        let slots = BTreeMap::from([(slot_of(a), (1_000.0, 8_000.0))]);
        let estimated = BTreeMap::from([(a, (30.0, 100.0)), (b, (10.0, 300.0))]);
        let rates = split(&slots, &services, &estimated);
        assert_eq!(rates[&a], (750.0, 2_000.0));
        assert_eq!(rates[&b], (250.0, 6_000.0));
        let rates = split(&slots, &services, &BTreeMap::new());
        assert_eq!(rates[&a], (500.0, 4_000.0));
        assert_eq!(rates[&b], (500.0, 4_000.0));
    }
}
