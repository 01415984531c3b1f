//! The background tasks of a protected interface: counter samples and expiry, block
//! events from the ring buffer, and the metrics endpoint's snapshots.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use anyhow::{Context as _, anyhow};
use aya::maps::{MapData, RingBuf};
use filter_common::{Class, Outcome};
use log::{info, warn};
use tokio::io::unix::AsyncFd;

use super::{COUNT_INTERVAL, SAMPLE_INTERVAL, Shared, lock};
use crate::{
    control::{EventKind, EventRecord},
    events,
    lists::ListKind,
    metrics,
};

/// Samples the counters every [`SAMPLE_INTERVAL`] (for the rates of `stats`), counts the
/// table every [`COUNT_INTERVAL`], expires blocks and denylist entries, and reports lost
/// events.
pub(super) async fn sample_loop(shared: Arc<Shared>) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
    let mut last_lost = shared.maps.events_lost()?;
    let mut last_count: Option<Instant> = None;
    loop {
        ticker.tick().await;
        if last_count.is_none_or(|at| at.elapsed() >= COUNT_INTERVAL) {
            last_count = Some(Instant::now());
            let counter = Arc::clone(&shared);
            let count = tokio::task::spawn_blocking(move || counter.maps.maintain_table())
                .await
                .map_err(|e| anyhow!("counting the table failed: {e}"))??;
            shared.tracked.store(count, Ordering::Relaxed);
        }
        let sample = shared.maps.sample()?;
        {
            let mut samples = lock(&shared.samples);
            samples.0 = samples.1.take();
            samples.1 = Some(sample);
        }
        lock(&shared.blocks).expire(sample.at_ns);
        super::syn::auto_tick(&shared, &sample.totals);
        super::rules::tick(&shared, sample.at_ns)?;
        let lost = shared.maps.events_lost()?;
        if lost > last_lost {
            let line = format!("{} events lost: the ring buffer was full", lost - last_lost);
            warn!("{line}");
            lock(&shared.blocks).record(EventRecord::now(EventKind::EventsLost, None, line));
            last_lost = lost;
        }
        let expired = shared.lists.expire(sample.at_ns)?;
        if !expired.is_empty() {
            for prefix in &expired {
                let line = format!("denylist entry {prefix} expired");
                info!("{line}");
                lock(&shared.blocks).record(EventRecord::now(
                    EventKind::Unblock,
                    Some(prefix.to_string()),
                    line,
                ));
            }
            shared.sync_list_presence()?;
        }
    }
}

/// Reads block events from the ring buffer into the record of blocks.
pub(super) async fn watch_events(
    ring: RingBuf<MapData>,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    // SAFETY: `register` needs the fd to stay open while registered: the ring buffer owns its
    // fd and the AsyncFd owns the ring buffer, so the fd lives exactly as long as the
    // registration.
    let mut ring = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow!("cannot poll the event ring buffer: {e}"))?;
    loop {
        let mut guard = ring
            .readable_mut()
            .await
            .context("polling the event ring buffer failed")?;
        let limits = *lock(&shared.limits);
        while let Some(item) = guard.get_inner_mut().next() {
            match events::decode(&item) {
                Some(event) => lock(&shared.blocks).on_event(&event, &limits),
                None => warn!("ignoring a short event of {} bytes", item.len()),
            }
        }
        guard.clear_ready();
    }
}

/// Serves Prometheus metrics on `addr`, if given; else never completes.
pub(super) async fn serve_metrics(
    addr: Option<std::net::SocketAddr>,
    protected: Vec<Arc<Shared>>,
) -> anyhow::Result<()> {
    let Some(addr) = addr else {
        return std::future::pending().await;
    };
    let read: Arc<metrics::SnapshotFn> = Arc::new(move || {
        protected
            .iter()
            .map(|shared| Ok((shared.iface.clone(), metrics_snapshot(shared)?)))
            .collect()
    });
    metrics::serve(addr, read).await
}

fn metrics_snapshot(shared: &Shared) -> anyhow::Result<metrics::Snapshot> {
    let upstream = shared.upstream.as_ref().map(|u| u.view());
    let totals = shared.maps.totals()?;
    let counters = Class::ALL
        .iter()
        .flat_map(|&class| {
            Outcome::ALL.iter().map(move |&outcome| {
                let c = totals.get_class(class, outcome);
                (class.name(), outcome.name(), c.packets, c.bytes)
            })
        })
        .collect();
    let table = shared.maps.table_stats()?;
    let mut list_entries = Vec::new();
    for (kind, name) in [(ListKind::Allow, "allow"), (ListKind::Deny, "deny")] {
        let counts = shared.lists.counts(kind)?;
        list_entries.push((name, "ipv4", counts.v4 as u64));
        list_entries.push((name, "ipv6", counts.v6 as u64));
    }
    let (syn, rules) = (super::syn_counters(shared)?, super::rules::views(shared)?);
    let (attacks, services) = {
        let detector = lock(&shared.detector);
        let services = detector
            .baseline
            .services()
            .into_iter()
            .map(|(service, b)| {
                let now = detector.rates_now().get(&service).map(|r| r.0);
                (service.to_string(), now, b.pps)
            })
            .collect();
        (detector.counts(), services)
    };
    Ok(metrics::Snapshot {
        counters,
        events_lost: shared.maps.events_lost()?,
        blocked_sources: lock(&shared.blocks).len() as u64,
        table_capacity: u64::from(shared.max_sources),
        tracked_sources: shared.tracked.load(Ordering::Relaxed),
        table_inserts: table.inserts,
        table_insert_failures: table.insert_failures,
        table_evictions: table.evictions,
        list_entries,
        syn,
        rules,
        attacks,
        services,
        upstream,
        fleet: shared.fleet.as_ref().map(|f| f.metrics()),
    })
}
