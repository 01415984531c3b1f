//! What the daemon's responses carry, as `--json` prints them: the protocol's views of the
//! limits, the statistics, the sources, the lists and the event journal.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::limits::Limits;
/// A list entry as `allow list` and `deny list` show it; made where the lists are.
pub use crate::lists::ListEntryView;
/// A rule as `rules list` shows it; made where the rules are.
pub use crate::rules::RuleView;

/// The limits with their bursts resolved, as `limits show` prints them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitsView {
    /// The interface.
    pub iface: String,
    /// The limits as set.
    pub limits: Limits,
    /// Packet burst in packets (`auto` resolved), if there is a packet limit.
    pub effective_burst_packets: Option<u64>,
    /// Byte burst in bytes, if there is a byte limit.
    pub effective_burst_bytes: Option<u64>,
}

impl LimitsView {
    /// The view of `limits` on `iface`.
    #[must_use]
    pub fn new(iface: String, limits: Limits) -> Self {
        Self {
            iface,
            effective_burst_packets: limits.effective_burst_packets(),
            effective_burst_bytes: limits.effective_burst_bytes(),
            limits,
        }
    }
}

/// Counters and rates, as `stats` prints them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsView {
    /// The interface.
    pub iface: String,
    /// XDP attach mode in use.
    pub xdp_mode: String,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Length of the interval the rates are measured over, in seconds.
    pub interval_secs: f64,
    /// Per outcome, all classes together.
    pub outcomes: Vec<OutcomeStats>,
    /// Per class and outcome.
    pub classes: Vec<ClassStats>,
    /// Block events lost because the ring buffer was full.
    pub events_lost: u64,
    /// The per-source table.
    pub table: TableStats,
    /// SYN protection.
    pub syn: SynStatsView,
}

/// `floodwall syn-protect show`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynProtectView {
    /// The setting: `auto`, `off` or the ports.
    pub setting: String,
    /// The ports protected now.
    pub active_ports: Vec<u16>,
    /// Why the program has no cookie stage (a kernel without its helpers); `None`: it has.
    pub unavailable: Option<String>,
    /// `net.ipv4.tcp_syncookies` in the interface's namespace now.
    pub tcp_syncookies: Option<u8>,
    /// The MSS the SYN-ACKs advertise over IPv4, once turned on.
    pub mss_v4: Option<u16>,
    /// The same over IPv6.
    pub mss_v6: Option<u16>,
    /// SYN-ACKs per second at most (`--syn-cookie-rate`).
    pub cookie_rate: String,
    /// Sources per second a cookie may admit at most (`--syn-admit-rate`).
    pub verified_rate: String,
    /// Times `auto` turned it on.
    pub auto_on: u64,
    /// Times `auto` turned it off.
    pub auto_off: u64,
    /// The cookie stage's counters and the kernel's, as in `stats`.
    pub counters: Vec<(String, u64)>,
}

/// SYN protection in `stats`: the ports, the cookie stage's counters and the kernel's own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynStatsView {
    /// `--syn-protect` as it is now (`off`, or the ports).
    pub protect: String,
    /// `(name, count)`: why SYNs fell back to the ceiling, ACKs without a valid cookie
    /// (`filter_common::SynStat`), then the kernel's `SyncookiesSent`, `SyncookiesRecv`,
    /// `SyncookiesFailed` and `ListenOverflows` in the interface's namespace.
    pub counters: Vec<(String, u64)>,
}

impl StatsView {
    /// The sum over several interfaces: packets, bytes and rates added outcome by outcome
    /// (every view lists the same outcomes and classes in the same order).
    #[must_use]
    pub fn total(views: &[StatsView]) -> StatsView {
        fn add(into: &mut [OutcomeStats], from: &[OutcomeStats]) {
            for (a, b) in into.iter_mut().zip(from) {
                a.packets += b.packets;
                a.bytes += b.bytes;
                a.pps += b.pps;
                a.bps += b.bps;
            }
        }
        let mut total = views.first().cloned().unwrap_or_else(|| StatsView {
            iface: String::new(),
            xdp_mode: String::new(),
            uptime_secs: 0,
            interval_secs: 0.0,
            outcomes: Vec::new(),
            classes: Vec::new(),
            events_lost: 0,
            table: TableStats {
                capacity: 0,
                inserts: 0,
                insert_failures: 0,
                evictions: 0,
            },
            syn: SynStatsView::default(),
        });
        total.iface = format!("total of {}", views.len());
        "-".clone_into(&mut total.xdp_mode);
        for view in views.iter().skip(1) {
            add(&mut total.outcomes, &view.outcomes);
            for (a, b) in total.classes.iter_mut().zip(&view.classes) {
                add(&mut a.outcomes, &b.outcomes);
            }
            total.uptime_secs = total.uptime_secs.min(view.uptime_secs);
            total.interval_secs = total.interval_secs.max(view.interval_secs);
            total.events_lost += view.events_lost;
            total.table.capacity = total.table.capacity.saturating_add(view.table.capacity);
            total.table.inserts += view.table.inserts;
            total.table.insert_failures += view.table.insert_failures;
            total.table.evictions += view.table.evictions;
            for (a, b) in total.syn.counters.iter_mut().zip(&view.syn.counters) {
                a.1 += b.1;
            }
        }
        total
    }
}

/// How full the per-source table is and how it churns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    /// Sources it holds at most.
    pub capacity: u32,
    /// Sources inserted since the program was loaded.
    pub inserts: u64,
    /// Inserts refused: every slot of the source's set held a blocked source (the packets
    /// were passed as `table_full`, under the ceilings).
    pub insert_failures: u64,
    /// Inserts that took the slot of another source (the least recently active of its set).
    pub evictions: u64,
}

/// One outcome's totals and its rate over the last sampling interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutcomeStats {
    /// Outcome name (`passed`, `dropped_blocked`, ...).
    pub outcome: String,
    /// Whether packets of this outcome were dropped.
    pub dropped: bool,
    /// Packets since the program was loaded.
    pub packets: u64,
    /// Bytes since the program was loaded.
    pub bytes: u64,
    /// Packets per second over the last interval.
    pub pps: f64,
    /// Bits per second over the last interval.
    pub bps: f64,
}

/// One class's outcomes, as `stats` shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassStats {
    /// Class name (`syn`, `udp`, ...).
    pub class: String,
    /// Its outcomes.
    pub outcomes: Vec<OutcomeStats>,
}

/// One tracked source as `top` and `blocked list` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceView {
    /// The source.
    pub addr: IpAddr,
    /// Recent packets per second (while blocked: the rate when it was blocked, since blocked
    /// packets are not counted per source).
    pub pps: f64,
    /// Recent bits per second.
    pub bps: f64,
    /// Whether it is blocked now.
    pub blocked: bool,
    /// Milliseconds left of the block.
    pub blocked_remaining_ms: Option<u64>,
    /// The `per-source` rule it is blocked under (only that rule's packets are dropped);
    /// `None` for a block by the limits (all its packets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    /// The peer whose block this is, applied here as a denylist entry (`deny list`, all
    /// its packets); `None` for this node's own blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A source was blocked (or would have been, in monitor mode).
    Block,
    /// A block ended or was removed.
    Unblock,
    /// List entries matched traffic since the last summary.
    ListHits,
    /// The data path lost events because the ring buffer was full.
    EventsLost,
    /// The operator changed a list.
    ListChange,
    /// SYN protection turned itself on or off (`auto`).
    SynProtect,
    /// A rule was added, removed or expired, or matched its first packet.
    Rule,
    /// An attack started or ended, or its signature was put in force, replaced or
    /// withdrawn (`floodwall attacks`).
    Attack,
}

/// One entry of the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// When the daemon recorded it (RFC 3339, UTC).
    pub time: String,
    /// What happened.
    pub kind: EventKind,
    /// The source or prefix concerned, if any.
    pub subject: Option<String>,
    /// A sentence for people.
    pub message: String,
}

impl EventRecord {
    /// A record stamped now.
    #[must_use]
    pub fn now(kind: EventKind, subject: Option<String>, message: String) -> Self {
        Self {
            time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            kind,
            subject,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_adds_interfaces_outcome_by_outcome() {
        let view = |iface: &str, packets: u64, inserts: u64| StatsView {
            iface: iface.to_owned(),
            xdp_mode: "driver".to_owned(),
            uptime_secs: packets,
            interval_secs: 1.0,
            outcomes: vec![OutcomeStats {
                outcome: "passed".to_owned(),
                dropped: false,
                packets,
                bytes: packets * 64,
                pps: 1.0,
                bps: 8.0,
            }],
            classes: Vec::new(),
            events_lost: 1,
            table: TableStats {
                capacity: 100,
                inserts,
                insert_failures: 0,
                evictions: 0,
            },
            syn: SynStatsView {
                protect: "off".to_owned(),
                counters: vec![("cookie_invalid".to_owned(), packets)],
            },
        };
        let total = StatsView::total(&[view("eth0", 10, 3), view("eth1", 5, 4)]);
        assert_eq!(total.iface, "total of 2");
        assert_eq!(total.outcomes[0].packets, 15);
        assert_eq!(total.outcomes[0].bytes, 15 * 64);
        assert!((total.outcomes[0].pps - 2.0).abs() < f64::EPSILON);
        assert_eq!(
            (total.events_lost, total.table.inserts, total.table.capacity),
            (2, 7, 200)
        );
        assert_eq!(total.uptime_secs, 5, "the youngest daemon's uptime");
    }
}
