//! The Prometheus endpoint (`--metrics-addr`): counters by interface, class and outcome,
//! gauges of blocked sources, table use and list sizes, read from the maps at each scrape.
//! The exposition format is `prometheus-client`'s (`OpenMetrics` text).

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

/// What one scrape reports, read by the daemon.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `(class, outcome, packets, bytes)` for every class and outcome.
    pub counters: Vec<(&'static str, &'static str, u64, u64)>,
    /// Ring buffer events lost.
    pub events_lost: u64,
    /// Sources blocked now (as the daemon knows from block events).
    pub blocked_sources: u64,
    /// Capacity of the per-source table.
    pub table_capacity: u64,
    /// Sources in the table, as of the daemon's last count (every
    /// [`crate::daemon::COUNT_INTERVAL`]).
    pub tracked_sources: u64,
    /// Sources inserted into the table.
    pub table_inserts: u64,
    /// Inserts refused (a set full of blocked sources).
    pub table_insert_failures: u64,
    /// Inserts that took another source's slot.
    pub table_evictions: u64,
    /// `(list, family, entries)`.
    pub list_entries: Vec<(&'static str, &'static str, u64)>,
    /// `(event, count)`: the cookie stage's counters and the kernel's own cookie counters.
    pub syn: Vec<(&'static str, u64)>,
    /// Each rule's counters.
    pub rules: Vec<crate::rules::RuleView>,
    /// Attacks, signatures and samples.
    pub attacks: crate::traffic::detect::DetectorCounts,
    /// `(service, packets a second now if there is a reading, packets a second normally)`
    /// of each service the baseline has.
    pub services: Vec<(String, Option<f64>, f64)>,
    /// Announcements upstream (the daemon's, the same on every interface); `None`: off.
    pub upstream: Option<crate::upstream::UpstreamView>,
    /// The fleet (the daemon's, the same on every interface); `None`: no `[fleet]`.
    pub fleet: Option<FleetMetrics>,
}

/// What the fleet reports (`[fleet]`), once per daemon.
#[derive(Clone, Debug, Default)]
pub struct FleetMetrics {
    /// Whether the broker is connected and the bucket watched.
    pub connected: bool,
    /// Peers' blocks in force here.
    pub applied_blocks: u64,
    /// Peers' signatures in force here.
    pub applied_signatures: u64,
    /// `(reason, count)`: peers' entries refused since the daemon started.
    pub refused: Vec<(&'static str, u64)>,
}

/// Reads a snapshot of every protected interface at scrape time.
pub type SnapshotFn = dyn Fn() -> anyhow::Result<Vec<(String, Snapshot)>> + Send + Sync;

/// Reads one number of a snapshot.
type Field = fn(&Snapshot) -> u64;

struct FilterCollector {
    read: Arc<SnapshotFn>,
}

impl std::fmt::Debug for FilterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterCollector").finish_non_exhaustive()
    }
}

impl Collector for FilterCollector {
    #[expect(clippy::too_many_lines, reason = "one metric family after another")]
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshots = match (self.read)() {
            Ok(snapshots) => snapshots,
            Err(e) => {
                log::warn!("metrics scrape failed: {e:#}");
                return Err(std::fmt::Error);
            }
        };
        {
            let mut family = encoder.encode_descriptor(
                "floodwall_packets",
                "Packets seen by the XDP program, by class and outcome.",
                None,
                MetricType::Counter,
            )?;
            for (iface, snapshot) in &snapshots {
                for (class, outcome, packets, _) in &snapshot.counters {
                    let labels = [
                        ("iface", iface.as_str()),
                        ("class", class),
                        ("outcome", outcome),
                    ];
                    ConstCounter::new(*packets).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "floodwall_bytes",
                "Bytes seen by the XDP program, by class and outcome.",
                None,
                MetricType::Counter,
            )?;
            for (iface, snapshot) in &snapshots {
                for (class, outcome, _, bytes) in &snapshot.counters {
                    let labels = [
                        ("iface", iface.as_str()),
                        ("class", class),
                        ("outcome", outcome),
                    ];
                    ConstCounter::new(*bytes).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let counters: [(&str, &str, Field); 7] = [
            (
                "floodwall_attacks",
                "Attacks detected: services far over their baseline.",
                |s| s.attacks.attacks_total,
            ),
            (
                "floodwall_signatures",
                "Signatures of attacks put in force as rules.",
                |s| s.attacks.signatures_total,
            ),
            (
                "floodwall_packet_samples",
                "Packet samples the program handed the daemon.",
                |s| s.attacks.samples_total,
            ),
            (
                "floodwall_events_lost",
                "Events the ring buffer had no room for.",
                |s| s.events_lost,
            ),
            (
                "floodwall_table_inserts",
                "Sources inserted into the per-source table.",
                |s| s.table_inserts,
            ),
            (
                "floodwall_table_insert_failures",
                "Per-source table inserts refused: every slot of the source's set held a \
                 blocked source.",
                |s| s.table_insert_failures,
            ),
            (
                "floodwall_table_evictions",
                "Per-source table inserts that took another source's slot.",
                |s| s.table_evictions,
            ),
        ];
        {
            let mut family = encoder.encode_descriptor(
                "floodwall_syn_events",
                "SYN protection: why SYNs of untracked sources fell back to the SYN ceiling, \
                 ACKs without a valid cookie, and the kernel's own SYN-cookie counters \
                 (kernel_*) in the interface's network namespace.",
                None,
                MetricType::Counter,
            )?;
            for (iface, snapshot) in &snapshots {
                for (event, count) in &snapshot.syn {
                    ConstCounter::new(*count).encode(
                        family.encode_family(&[("iface", iface.as_str()), ("event", event)])?,
                    )?;
                }
            }
        }
        for (name, help, field) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (iface, snapshot) in &snapshots {
                ConstCounter::new(field(snapshot))
                    .encode(family.encode_family(&[("iface", iface.as_str())])?)?;
            }
        }
        let gauges: [(&str, &str, Field); 6] = [
            ("floodwall_attacks_active", "Attacks on now.", |s| {
                s.attacks.attacks_active
            }),
            (
                "floodwall_signatures_in_force",
                "Signatures of attacks in force now.",
                |s| s.attacks.signatures_in_force,
            ),
            (
                "floodwall_baseline_seconds",
                "Seconds of traffic the baseline has learned.",
                |s| s.attacks.baseline_seconds,
            ),
            ("floodwall_blocked_sources", "Sources blocked now.", |s| {
                s.blocked_sources
            }),
            (
                "floodwall_tracked_sources",
                "Sources in the per-source table (counted every 10 s).",
                |s| s.tracked_sources,
            ),
            (
                "floodwall_table_capacity",
                "Capacity of the per-source table.",
                |s| s.table_capacity,
            ),
        ];
        for (name, help, field) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (iface, snapshot) in &snapshots {
                #[expect(
                    clippy::cast_possible_wrap,
                    reason = "gauges are i64; these stay far below"
                )]
                ConstGauge::new(field(snapshot) as i64)
                    .encode(family.encode_family(&[("iface", iface.as_str())])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "floodwall_table_fill_ratio",
                "Tracked sources over the table's capacity, 0 to 1.",
                None,
                MetricType::Gauge,
            )?;
            for (iface, snapshot) in &snapshots {
                #[expect(clippy::cast_precision_loss, reason = "a ratio")]
                let fill = snapshot.tracked_sources as f64 / snapshot.table_capacity.max(1) as f64;
                ConstGauge::new(fill)
                    .encode(family.encode_family(&[("iface", iface.as_str())])?)?;
            }
        }
        for (name, help, bytes) in [
            (
                "floodwall_rule_packets",
                "Packets each rule matched, and of those the ones it dropped (result).",
                false,
            ),
            (
                "floodwall_rule_bytes",
                "Bytes of the packets each rule matched, and of those it dropped (result).",
                true,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (iface, snapshot) in &snapshots {
                for rule in &snapshot.rules {
                    let id = rule.id.to_string();
                    for (result, packets, byte_count) in [
                        ("matched", rule.matched_packets, rule.matched_bytes),
                        ("dropped", rule.dropped_packets, rule.dropped_bytes),
                    ] {
                        let labels = [
                            ("iface", iface.as_str()),
                            ("rule", id.as_str()),
                            ("result", result),
                        ];
                        ConstCounter::new(if bytes { byte_count } else { packets })
                            .encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "floodwall_service_packets_per_second",
                "Packets a second to each service the baseline has (protocol and destination \
                 port): in the last second as the program counted them (rate=\"now\"), and \
                 as the baseline learned them (rate=\"normal\").",
                None,
                MetricType::Gauge,
            )?;
            for (iface, snapshot) in &snapshots {
                for (service, now, normal) in &snapshot.services {
                    let rates = [("now", *now), ("normal", Some(*normal))];
                    for (rate, value) in rates.iter().filter_map(|(r, v)| Some((*r, (*v)?))) {
                        let labels = [
                            ("iface", iface.as_str()),
                            ("service", service.as_str()),
                            ("rate", rate),
                        ];
                        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }
        if let Some(view) = snapshots.iter().find_map(|(_, s)| s.upstream.as_ref()) {
            encode_upstream(&mut encoder, view)?;
        }
        if let Some(fleet) = snapshots.iter().find_map(|(_, s)| s.fleet.as_ref()) {
            encode_fleet(&mut encoder, fleet)?;
        }
        let mut family = encoder.encode_descriptor(
            "floodwall_list_entries",
            "Prefixes on the allowlist and denylist.",
            None,
            MetricType::Gauge,
        )?;
        for (iface, snapshot) in &snapshots {
            for (list, fam, entries) in &snapshot.list_entries {
                let labels = [("iface", iface.as_str()), ("list", list), ("family", fam)];
                #[expect(clippy::cast_possible_wrap, reason = "at most a few million entries")]
                ConstGauge::new(*entries as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The upstream gauges: once, not per interface (one daemon has one speaker).
fn encode_upstream(
    encoder: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    view: &crate::upstream::UpstreamView,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "floodwall_upstream_routes",
        "Announcements upstream by state: announced by the speaker, pending, withdrawing, \
         or dry_run (computed, never sent).",
        None,
        MetricType::Gauge,
    )?;
    for (state, n) in crate::upstream::state_counts(view) {
        #[expect(clippy::cast_possible_wrap, reason = "a few routes")]
        ConstGauge::new(n as i64).encode(family.encode_family(&[("state", state)])?)?;
    }
    let family = encoder.encode_descriptor(
        "floodwall_upstream_speaker_up",
        "1 if the last read-back of the BGP speaker (GoBGP) worked, else 0.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(i64::from(view.speaker.reachable)).encode(family)?;
    let mut family = encoder.encode_descriptor(
        "floodwall_upstream_refused",
        "Announcements refused by each safety rule since the daemon started.",
        None,
        MetricType::Counter,
    )?;
    for (rule, n) in &view.refused {
        ConstCounter::new(*n).encode(family.encode_family(&[("rule", rule.as_str())])?)?;
    }
    Ok(())
}

/// The fleet's gauges and counters: once, not per interface (one daemon is one node).
fn encode_fleet(
    encoder: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    fleet: &FleetMetrics,
) -> Result<(), std::fmt::Error> {
    let family = encoder.encode_descriptor(
        "floodwall_fleet_connected",
        "1 if the broker is connected and the fleet's bucket watched, else 0.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(i64::from(fleet.connected)).encode(family)?;
    let mut family = encoder.encode_descriptor(
        "floodwall_fleet_applied",
        "Peers' entries in force here, by kind: block (denylist entries) or signature \
         (rules).",
        None,
        MetricType::Gauge,
    )?;
    for (kind, n) in [
        ("block", fleet.applied_blocks),
        ("signature", fleet.applied_signatures),
    ] {
        #[expect(clippy::cast_possible_wrap, reason = "at most max_entries")]
        ConstGauge::new(n as i64).encode(family.encode_family(&[("kind", kind)])?)?;
    }
    let mut family = encoder.encode_descriptor(
        "floodwall_fleet_refused",
        "Peers' entries refused, by reason, since the daemon started.",
        None,
        MetricType::Counter,
    )?;
    for (reason, n) in &fleet.refused {
        ConstCounter::new(*n).encode(family.encode_family(&[("reason", *reason)])?)?;
    }
    Ok(())
}

/// The exposition text for one scrape.
///
/// # Errors
/// If the snapshot cannot be read.
pub fn render(read: Arc<SnapshotFn>) -> anyhow::Result<String> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(FilterCollector { read }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|_| anyhow::anyhow!("cannot encode the metrics (see the log)"))?;
    Ok(text)
}

/// Serves `GET /metrics` on `addr` until the future is dropped.
///
/// # Errors
/// If the address cannot be bound.
pub async fn serve(addr: SocketAddr, read: Arc<SnapshotFn>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    log::info!("metrics on http://{addr}/metrics");
    loop {
        let (stream, _) = listener.accept().await.context("metrics accept failed")?;
        let read = Arc::clone(&read);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let read = Arc::clone(&read);
                async move {
                    let response = if request.uri().path() == "/metrics" {
                        match tokio::task::spawn_blocking(move || render(read)).await {
                            Ok(Ok(text)) => reply(
                                StatusCode::OK,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                text,
                            ),
                            Ok(Err(e)) => reply(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "text/plain",
                                format!("{e:#}\n"),
                            ),
                            Err(e) => reply(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "text/plain",
                                format!("{e}\n"),
                            ),
                        }
                    } else {
                        reply(
                            StatusCode::NOT_FOUND,
                            "text/plain",
                            "try /metrics\n".to_owned(),
                        )
                    };
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                log::debug!("metrics connection: {e}");
            }
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_text_follows_prometheus_conventions() {
        let read: Arc<SnapshotFn> = Arc::new(|| {
            let eth0 = Snapshot {
                counters: vec![("udp", "dropped_blocked", 1_000, 64_000)],
                blocked_sources: 3,
                table_capacity: 1 << 20,
                tracked_sources: 1 << 18,
                list_entries: vec![("deny", "ipv4", 2)],
                services: vec![
                    ("udp/53".to_owned(), Some(250_000.0), 80.5),
                    ("tcp/443".to_owned(), None, 3.0),
                ],
                attacks: crate::traffic::detect::DetectorCounts {
                    attacks_total: 2,
                    attacks_active: 1,
                    signatures_in_force: 1,
                    ..Default::default()
                },
                upstream: Some(crate::upstream::UpstreamView {
                    dry_run: false,
                    gobgp_api: "unix:///run/gobgpd.sock".into(),
                    protected: Vec::new(),
                    max_routes: 8,
                    speaker: crate::upstream::SpeakerView {
                        reachable: true,
                        ..Default::default()
                    },
                    announcements: Vec::new(),
                    refused: [("max_routes".to_owned(), 2)].into_iter().collect(),
                    held_back: Vec::new(),
                }),
                ..Snapshot::default()
            };
            let eth1 = Snapshot {
                blocked_sources: 7,
                ..eth0.clone()
            };
            Ok(vec![("eth0".to_owned(), eth0), ("eth1".to_owned(), eth1)])
        });
        let text = render(read).expect("renders");
        assert_eq!(
            text.matches("# TYPE floodwall_blocked_sources gauge")
                .count(),
            1,
            "one family for all interfaces:\n{text}"
        );
        for expected in [
            "# TYPE floodwall_packets counter",
            r#"floodwall_packets_total{iface="eth0",class="udp",outcome="dropped_blocked"} 1000"#,
            r#"floodwall_bytes_total{iface="eth0",class="udp",outcome="dropped_blocked"} 64000"#,
            "# TYPE floodwall_blocked_sources gauge",
            r#"floodwall_blocked_sources{iface="eth0"} 3"#,
            r#"floodwall_blocked_sources{iface="eth1"} 7"#,
            r#"floodwall_tracked_sources{iface="eth0"} 262144"#,
            r#"floodwall_table_fill_ratio{iface="eth0"} 0.25"#,
            r#"floodwall_list_entries{iface="eth0",list="deny",family="ipv4"} 2"#,
            r#"floodwall_attacks_total{iface="eth0"} 2"#,
            r#"floodwall_attacks_active{iface="eth0"} 1"#,
            r#"floodwall_signatures_in_force{iface="eth0"} 1"#,
            "# TYPE floodwall_service_packets_per_second gauge",
            r#"floodwall_upstream_routes{state="announced"} 0"#,
            "floodwall_upstream_speaker_up 1",
            r#"floodwall_upstream_refused_total{rule="max_routes"} 2"#,
            r#"floodwall_service_packets_per_second{iface="eth0",service="udp/53",rate="now"} 250000.0"#,
            r#"floodwall_service_packets_per_second{iface="eth0",service="udp/53",rate="normal"} 80.5"#,
            r#"floodwall_service_packets_per_second{iface="eth0",service="tcp/443",rate="normal"} 3.0"#,
            "# EOF",
        ] {
            assert!(
                text.contains(expected),
                "metrics must contain `{expected}`:\n{text}"
            );
        }
        assert!(
            !text.contains(r#"service="tcp/443",rate="now""#),
            "no reading, no gauge:\n{text}"
        );
    }

    #[test]
    fn the_fleet_is_reported_once_per_daemon() {
        let read: Arc<SnapshotFn> = Arc::new(|| {
            let eth0 = Snapshot {
                fleet: Some(FleetMetrics {
                    connected: true,
                    applied_blocks: 3,
                    applied_signatures: 1,
                    refused: vec![("allowlisted", 2)],
                }),
                ..Snapshot::default()
            };
            Ok(vec![
                ("eth0".to_owned(), eth0.clone()),
                ("eth1".to_owned(), eth0),
            ])
        });
        let text = render(read).expect("renders");
        for expected in [
            "# TYPE floodwall_fleet_connected gauge",
            "floodwall_fleet_connected 1",
            "# TYPE floodwall_fleet_applied gauge",
            r#"floodwall_fleet_applied{kind="block"} 3"#,
            r#"floodwall_fleet_applied{kind="signature"} 1"#,
            "# TYPE floodwall_fleet_refused counter",
            r#"floodwall_fleet_refused_total{reason="allowlisted"} 2"#,
        ] {
            assert_eq!(
                text.lines().filter(|l| *l == expected).count(),
                1,
                "metrics must contain `{expected}` once (one node, not one per interface):\n{text}"
            );
        }
        let none = render(Arc::new(|| {
            Ok(vec![("eth0".to_owned(), Snapshot::default())])
        }))
        .expect("renders");
        assert!(
            !none.contains("floodwall_fleet"),
            "no [fleet], no fleet metrics:\n{none}"
        );
    }
}
