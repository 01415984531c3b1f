//! The control socket: how the CLI talks to a running daemon.
//!
//! One Unix stream socket per protected interface, `RUN_DIR/IFACE.sock`. Requests and
//! responses are single JSON lines. Every request is checked against the peer's credentials
//! as the kernel reports them (`SO_PEERCRED` for the uid, `SO_PEERGROUPS` for the groups),
//! see [`Access`].

//!
//! - this module: the protocol, [`Request`] and [`Response`];
//! - [`view`]: what the responses carry (limits, statistics, sources, list entries);
//! - [`access`]: who may make which request;
//! - [`client`]: the CLI's side: find a daemon's socket, send a request.
//!
//! The daemon's side, the server, is `daemon::server`.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    limits::{FilterMode, LimitsChange},
    lists::{ListKind, Prefix},
};

pub mod access;
pub mod client;
pub mod view;

pub use access::{Access, Peer, peer_of};
pub use client::{all_sockets, call, call_streaming, find_socket};
pub use view::{
    ClassStats, EventKind, EventRecord, LimitsView, ListEntryView, OutcomeStats, RuleView,
    SourceView, StatsView, SynProtectView, SynStatsView, TableStats,
};

/// Default directory of control sockets and lock files.
pub const DEFAULT_RUN_DIR: &str = "/run/floodwall";

/// Largest request line the daemon reads; longer ones are refused. Room for a bulk load of
/// a full list (131,072 prefixes of up to 43 characters, JSON-quoted).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// The refusal of a `limits set` that sets nothing, by the CLI or the daemon.
pub const NOTHING_TO_CHANGE: &str =
    "nothing to change: give at least one limit flag (see `floodwall limits set --help`)";

/// A request from the CLI.
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived request per connection"
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The current limits.
    LimitsShow,
    /// Change some limits (root only).
    LimitsSet {
        /// What to change.
        change: LimitsChange,
    },
    /// Counters and rates.
    Stats,
    /// The busiest tracked sources.
    Top {
        /// How many.
        limit: usize,
    },
    /// Blocked sources.
    BlockedList,
    /// Unblock a source (root only).
    BlockedRemove {
        /// The source.
        addr: IpAddr,
    },
    /// Add prefixes to a list, all or nothing (root only).
    ListAdd {
        /// Which list.
        list: ListKind,
        /// The prefixes.
        prefixes: Vec<Prefix>,
        /// Denylist only: the entries expire after this many milliseconds.
        for_ms: Option<u64>,
    },
    /// Remove prefixes from a list, all or nothing (root only).
    ListRemove {
        /// Which list.
        list: ListKind,
        /// The prefixes.
        prefixes: Vec<Prefix>,
    },
    /// A list's entries with their hit counters.
    ListShow {
        /// Which list.
        list: ListKind,
    },
    /// The event journal; with `follow`, then every new event as it happens.
    Events {
        /// Keep the connection open and stream new events.
        follow: bool,
    },
    /// Read the config file again and apply it, all or nothing (root or admin group).
    Reload,
    /// SYN protection: the setting, what it protects now, its counters.
    SynProtectShow,
    /// Change SYN protection (root only).
    SynProtectChange {
        /// The change.
        change: crate::syn::SynProtectChange,
    },
    /// Add rules, all or nothing (root only).
    RulesAdd {
        /// The rules.
        rules: Vec<RuleRequest>,
    },
    /// Remove rules by id, all or nothing (root only).
    RulesRemove {
        /// Their ids.
        ids: Vec<u32>,
    },
    /// Signatures made the operator's own rules, all or nothing (root only).
    RulesKeep {
        /// Their ids.
        ids: Vec<u32>,
        /// They expire after this many milliseconds; `None`: they last.
        #[serde(default)]
        for_ms: Option<u64>,
    },
    /// The rules with their counters.
    RulesList,
    /// One rule with its counters.
    RulesShow {
        /// Its id.
        id: u32,
    },
    /// Which rule a packet would meet (`rules test`).
    RulesTest {
        /// The packet, in the rules' words with one value a field.
        packet: String,
    },
    /// Which rule a captured frame would meet (`rules test --frame`).
    RulesTestFrame {
        /// The frame from its Ethernet header on, in hex.
        frame: String,
    },
    /// What normal traffic looks like, per service.
    Baseline,
    /// The attacks seen and their signatures.
    Attacks,
    /// The samples kept of one attack (`attacks --pcap`).
    AttackFrames {
        /// The attack's id.
        id: u32,
    },
    /// Announcements upstream and the speaker.
    UpstreamShow,
    /// Announce a route upstream (root only). Exactly one of `rule`, `rule_id`, `blackhole`.
    UpstreamAnnounce {
        /// A rule's text (`udp sport 123 to 198.18.0.1 drop`).
        #[serde(default)]
        rule: Option<String>,
        /// An existing rule's id: its match.
        #[serde(default)]
        rule_id: Option<u32>,
        /// A blackhole for this address.
        #[serde(default)]
        blackhole: Option<IpAddr>,
        /// The destination, for a rule without one or narrower than its own.
        #[serde(default)]
        to: Option<Prefix>,
        /// It ends after this many milliseconds; `None`: the config's expiry.
        #[serde(default)]
        for_ms: Option<u64>,
    },
    /// Withdraw announcements by id, all or nothing (root only).
    UpstreamWithdraw {
        /// Their ids.
        ids: Vec<u32>,
    },
}

/// A rule to add, as the CLI sends it: the daemon parses the text, so that a request
/// from any client is checked the same way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRequest {
    /// The rule's text (`udp sport 123 drop`).
    pub rule: String,
    /// Its priority; `None`: the default.
    #[serde(default)]
    pub priority: Option<u16>,
    /// The operator's note.
    #[serde(default)]
    pub comment: Option<String>,
    /// It expires after this many milliseconds.
    #[serde(default)]
    pub for_ms: Option<u64>,
}

impl Request {
    /// Whether the request changes anything (and so needs root).
    #[must_use]
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            Self::LimitsSet { .. }
                | Self::BlockedRemove { .. }
                | Self::ListAdd { .. }
                | Self::ListRemove { .. }
                | Self::Reload
                | Self::SynProtectChange { .. }
                | Self::RulesAdd { .. }
                | Self::RulesRemove { .. }
                | Self::RulesKeep { .. }
                | Self::UpstreamAnnounce { .. }
                | Self::UpstreamWithdraw { .. }
        )
    }
}

/// A response from the daemon.
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived response per connection"
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// The limits (after a change, the new ones).
    Limits(LimitsView),
    /// Counters and rates.
    Stats(StatsView),
    /// Sources, busiest first.
    Sources {
        /// The mode now: in monitor mode a "blocked" source is only marked, not dropped.
        mode: FilterMode,
        /// The sources.
        sources: Vec<SourceView>,
    },
    /// A source was unblocked.
    Unblocked {
        /// The source.
        addr: IpAddr,
    },
    /// A list changed.
    ListChanged {
        /// Which list.
        list: ListKind,
        /// Prefixes added.
        added: usize,
        /// Prefixes already listed whose expiry changed.
        updated: usize,
        /// Prefixes already listed as asked.
        unchanged: usize,
        /// Prefixes removed.
        removed: usize,
    },
    /// A list's entries.
    ListEntries {
        /// Which list.
        list: ListKind,
        /// The entries, by prefix.
        entries: Vec<ListEntryView>,
    },
    /// Events (one response line each when following).
    Events {
        /// The events, oldest first.
        events: Vec<EventRecord>,
    },
    /// The config was reloaded.
    Reloaded {
        /// The changes applied, one line each (none: the config was unchanged).
        changes: Vec<String>,
    },
    /// SYN protection (after a change, as it is now).
    SynProtect(SynProtectView),
    /// Rules were added or removed.
    RulesChanged {
        /// Ids of the rules added.
        added: Vec<u32>,
        /// Ids of the rules removed.
        removed: Vec<u32>,
        /// Ids of the signatures kept as the operator's rules.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kept: Vec<u32>,
    },
    /// The rules, by priority then id.
    Rules {
        /// The rules.
        rules: Vec<RuleView>,
    },
    /// The rule a packet would meet (`None`: no rule; the rest of the policy decides).
    RuleTest {
        /// The packet as asked.
        packet: String,
        /// The rule.
        rule: Option<RuleView>,
    },
    /// The baseline.
    Baseline(crate::traffic::view::BaselineView),
    /// The attacks.
    Attacks(crate::traffic::view::AttacksView),
    /// The samples kept of one attack, oldest first.
    AttackFrames {
        /// The attack's id.
        id: u32,
        /// Its frames.
        frames: Vec<crate::traffic::detect::CapturedFrame>,
    },
    /// Announcements upstream and the speaker.
    Upstream(crate::upstream::UpstreamView),
    /// An announcement was kept; the loop sends it (unless in dry run).
    UpstreamAnnounced {
        /// Its id.
        id: u32,
        /// The route.
        route: String,
        /// Nothing is sent: the daemon runs upstream in dry run.
        dry_run: bool,
        /// What the operator must know (a blackhole takes the address offline).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Announcements were withdrawn (each goes when its hold time is over).
    UpstreamWithdrawn {
        /// Their ids.
        ids: Vec<u32>,
    },
    /// The request was refused or failed; nothing changed.
    Error {
        /// Why.
        message: String,
    },
}

/// The socket of the daemon on `iface`.
#[must_use]
pub fn socket_path(run_dir: &Path, iface: &str) -> PathBuf {
    run_dir.join(format!("{iface}.sock"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Rate;

    #[test]
    fn requests_round_trip_as_one_json_line() {
        let request = Request::LimitsSet {
            change: LimitsChange {
                pps: Some(Rate::PerSecond(500)),
                ..LimitsChange::default()
            },
        };
        let line = serde_json::to_string(&request).expect("encodes");
        assert!(!line.contains('\n'));
        assert_eq!(
            serde_json::from_str::<Request>(&line).expect("decodes"),
            request
        );
        assert!(request.is_change());
        assert!(!Request::Stats.is_change());
    }

    #[test]
    fn unknown_requests_are_errors_that_name_them() {
        let err = serde_json::from_str::<Request>(r#"{"request":"format_disk"}"#).unwrap_err();
        assert!(err.to_string().contains("format_disk"), "{err}");
    }
}
