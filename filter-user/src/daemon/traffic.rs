//! The traffic task of a protected interface: takes the program's packet samples, refills
//! their budget, and once a second hands them to the detector, which learns the baseline,
//! detects attacks and has their signatures put in force and withdrawn as rules.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::anyhow;
use filter_common::SAMPLE_REFILL_MS;
use log::{info, warn};

use super::{Shared, lock};
use crate::{
    control::{EventKind, EventRecord},
    maps::monotonic_now_ns,
    rules::{NewRule, Origin},
    traffic::{
        TrafficMaps,
        baseline::{Second, Service},
        counted::{self, ServiceCounters},
        detect::{Happened, Mitigator, Observed},
        known::KnownSources,
        mine::Signature,
        sample::Sampled,
    },
};

/// Priority of signatures' rules: after the operator's (`DEFAULT_PRIORITY` is 100).
pub const SIGNATURE_PRIORITY: u16 = 1_000;

/// Samples kept for one second at most (more than the budget lets through on 64 CPUs).
const MAX_SAMPLES_PER_SECOND: usize = 200_000;

/// How often the baseline is written to its file.
const SAVE_INTERVAL: Duration = Duration::from_secs(30);

/// Where the baseline of `iface` is kept across restarts.
#[must_use]
pub fn baseline_path(run_dir: &std::path::Path, iface: &str) -> PathBuf {
    run_dir.join(format!("{iface}.baseline.json"))
}

/// Runs the traffic task until the daemon stops.
pub(super) async fn traffic_loop(
    maps: TrafficMaps,
    shared: Arc<Shared>,
    baseline_file: PathBuf,
) -> anyhow::Result<()> {
    let TrafficMaps {
        mut sampler,
        mut known,
        mut counters,
    } = maps;
    let mut refill = tokio::time::interval(Duration::from_millis(SAMPLE_REFILL_MS));
    refill.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut pending: Vec<Sampled> = Vec::new();
    let mut undecoded = 0usize;
    let mut second_started = Instant::now();
    let mut saved = Instant::now();
    let mut counted = Counted::read(&shared)?;
    loop {
        refill.tick().await;
        let (drained, bad) = sampler.drain();
        undecoded += bad;
        // A service new to the samples is counted from now on, mid-second: its first
        // second's rate is then the program's count, not the samples' estimate.
        let services = drained
            .iter()
            .filter_map(|s| s.packet.as_ref().map(Service::of));
        if let Err(e) = counters.watch(services) {
            warn!("{}: {e:#}", shared.iface);
        }
        let room = MAX_SAMPLES_PER_SECOND.saturating_sub(pending.len());
        pending.extend(drained.into_iter().take(room));
        sampler.refill()?;
        if second_started.elapsed() < Duration::from_secs(1) {
            continue;
        }
        second_started = Instant::now();
        if undecoded > 0 {
            warn!("{}: {undecoded} samples did not decode", shared.iface);
            undecoded = 0;
        }
        let second = std::mem::take(&mut pending);
        let shared_now = Arc::clone(&shared);
        let packets_by_cpu;
        (counted, packets_by_cpu, known, counters) = tokio::task::spawn_blocking(move || {
            let (counted, rates) = one_second(&shared_now, &second, &counted, &mut counters)?;
            sync_known(&shared_now, &mut known);
            anyhow::Ok((counted, rates, known, counters))
        })
        .await
        .map_err(|e| anyhow!("the traffic task failed: {e}"))??;
        sampler.pace(&packets_by_cpu);
        if saved.elapsed() >= SAVE_INTERVAL {
            saved = Instant::now();
            let baseline = lock(&shared.detector).baseline.clone();
            if let Err(e) = baseline.save(&baseline_file) {
                warn!("{}: cannot keep the baseline: {e:#}", shared.iface);
            }
        }
    }
}

/// The program's packet counters by CPU, all classes and outcomes together, and when they
/// were read.
#[derive(Clone)]
struct Counted {
    at: Instant,
    packets_by_cpu: Vec<u64>,
}

impl Counted {
    fn read(shared: &Shared) -> anyhow::Result<Self> {
        Ok(Self {
            at: Instant::now(),
            packets_by_cpu: shared.maps.packets_by_cpu()?,
        })
    }

    /// Packets a second on each CPU from `self` to `now`.
    fn rate_until(&self, now: &Self) -> Vec<u64> {
        let elapsed_ns = now.at.saturating_duration_since(self.at).as_nanos().max(1);
        now.packets_by_cpu
            .iter()
            .enumerate()
            .map(|(cpu, &packets)| {
                let before = self.packets_by_cpu.get(cpu).copied().unwrap_or(0);
                let d = packets.wrapping_sub(before);
                u64::try_from(u128::from(d) * 1_000_000_000 / elapsed_ns).unwrap_or(u64::MAX)
            })
            .collect()
    }
}

/// One second: counts, the detector, and what it did said in the log and the journal.
/// The counters are read here, at the end of the second the samples come from, so that
/// each sample stands for the packets of its own second. Returns them, with the second's
/// packets a second by CPU.
fn one_second(
    shared: &Shared,
    samples: &[Sampled],
    before: &Counted,
    counters: &mut ServiceCounters,
) -> anyhow::Result<(Counted, Vec<u64>)> {
    let now = Counted::read(shared)?;
    let packets_by_cpu = before.rate_until(&now);
    let estimated = Second {
        samples,
        packets_by_cpu: &packets_by_cpu,
        counted: &BTreeMap::new(),
    }
    .estimated_rates();
    let counted = service_rates(shared, counters, samples, &estimated).unwrap_or_else(|e| {
        warn!("{}: {e:#}", shared.iface);
        BTreeMap::new()
    });
    let rule_matches = signature_matches(shared)?;
    let happened = {
        let mut detector = lock(&shared.detector);
        let mut rules = DaemonRules {
            shared,
            for_ms: detector.config.rule_for_ms,
        };
        detector.second(
            Observed {
                second: Second {
                    samples,
                    packets_by_cpu: &packets_by_cpu,
                    counted: &counted,
                },
                at: SystemTime::now(),
                rule_matches: &rule_matches,
            },
            &mut rules,
        )
    };
    for event in happened {
        let line = match event {
            Happened::Started(l)
            | Happened::Mitigated(l)
            | Happened::Withdrawn(l)
            | Happened::Ended(l) => {
                info!("{}: {l}", shared.iface);
                l
            }
            Happened::Unmitigated(l) => {
                warn!("{}: {l}", shared.iface);
                l
            }
        };
        lock(&shared.blocks).record(EventRecord::now(EventKind::Attack, None, line));
    }
    Ok((now, packets_by_cpu))
}

/// The rates of the services the baseline has and of those in this second's samples
/// (`estimated`), from the program's per-service counters. A service of the baseline is
/// watched from this second on: it has a rate from the next. A service that samples name
/// without their ports keeps its estimate ([`counted::ports_unseen`]).
fn service_rates(
    shared: &Shared,
    counters: &mut ServiceCounters,
    samples: &[Sampled],
    estimated: &BTreeMap<Service, (f64, f64)>,
) -> anyhow::Result<BTreeMap<Service, (f64, f64)>> {
    let mut services: BTreeSet<Service> = lock(&shared.detector)
        .baseline
        .services()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    counters.watch(services.iter().copied())?;
    let slots = counters.rates()?;
    services.extend(estimated.keys().copied());
    for unseen in counted::ports_unseen(samples) {
        services.remove(&unseen);
    }
    Ok(counted::split(&slots, &services, estimated))
}

/// Writes the baseline's known sources into the kernel if they changed. A failed write is
/// logged and tried again the next second: the rest of the task goes on.
fn sync_known(shared: &Shared, known: &mut KnownSources) {
    let detector = lock(&shared.detector);
    if let Err(e) = known.sync(&detector.baseline) {
        warn!("{}: {e:#}", shared.iface);
    }
}

/// Matched packets of the rules the detector has in force, by id.
fn signature_matches(shared: &Shared) -> anyhow::Result<BTreeMap<u32, u64>> {
    let ids = lock(&shared.detector).rules_in_force();
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    super::rules::matched_packets(shared, &ids)
}

/// The daemon's rules, as the detector's [`Mitigator`].
struct DaemonRules<'a> {
    shared: &'a Shared,
    /// How long a signature's rule lasts at most.
    for_ms: u64,
}

impl Mitigator for DaemonRules<'_> {
    fn install(&mut self, signature: &Signature) -> Result<u32, String> {
        let new = NewRule {
            spec: signature.rule.clone(),
            priority: SIGNATURE_PRIORITY,
            comment: Some(format!("signature for {}", signature.service)),
            for_ms: Some(self.for_ms),
            origin: Origin::Signature,
        };
        let now = monotonic_now_ns().map_err(|e| format!("{e:#}"))?;
        let ids =
            super::rules::add_quietly(self.shared, &[new], now).map_err(|e| format!("{e:#}"))?;
        ids.first()
            .copied()
            .ok_or_else(|| "no rule was added".to_owned())
    }

    fn withdraw(&mut self, id: u32) -> Result<(), String> {
        super::rules::remove_quietly(self.shared, &[id]).map_err(|e| format!("{e:#}"))
    }
}
