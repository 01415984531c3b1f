//! Rules by packet shape: what operators write (`floodwall rules add udp sport 123 drop`),
//! the set a daemon holds, and its kernel form.
//!
//! Plain data first, kernel last, as `lists`:
//! - this module: the vocabulary ([`RuleSpec`] and its parts, [`Rule`]) and [`RuleError`];
//! - `syntax`: a rule's text, parsed with errors that name the field, and printed back;
//! - `file`: rule files (`rules load`), a rule a line;
//! - `dry_run`: `rules test`: which rule a described packet meets, decided in userspace;
//! - `frame`: `rules test --frame`: a captured frame read into such a packet, as the XDP
//!   program's parser reads it;
//! - `set`: [`RuleSet`], the rules of one daemon: add, remove, expire, all or nothing;
//! - `compile`: a set in the kernel's form (entries, buckets, index bits), checked against
//!   the kernel's bounds before anything is written;
//! - `kernel`: [`RuleMaps`], which writes a compiled set into the program's maps and reads
//!   the counters back.
//!
//! # Semantics
//! The allowlist wins over rules; rules come before everything else, and among rules the
//! first that matches decides (by priority, lower first, then by id). `drop` drops; `allow`
//! passes the packet past everything after it (denylist, blocks, limits); `monitor` counts
//! and lets the rest of the policy decide; `rate-limit` drops what goes over the rule's rate
//! (all its matches together, across CPUs) and lets the rest decide the others;
//! `per-source` does so per source, and a source over it is blocked under that rule for the
//! limits' block time.

mod compile;
mod dry_run;
mod file;
mod frame;
mod kernel;
mod set;
mod syntax;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use self::{
    compile::{Compiled, compile},
    dry_run::TestPacket,
    file::parse_rule_file,
    frame::{FrameError, MAX_FRAME_BYTES, parse_hex, to_hex},
    kernel::RuleMaps,
    set::{NewRule, RuleSet},
    syntax::RuleSyntaxError,
};
use crate::lists::Prefix;

/// Default priority of a rule: room to put rules before and after it.
pub const DEFAULT_PRIORITY: u16 = 100;

/// Longest comment, in bytes.
pub const MAX_COMMENT_BYTES: usize = 128;

/// An inclusive range, `low` to `high`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ValueRange<T> {
    /// First value.
    pub low: T,
    /// Last value.
    pub high: T,
}

/// A port range.
pub type PortRange = ValueRange<u16>;

/// TCP flags: those of `mask` must be as in `value`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    /// Flags that must be set.
    pub value: u8,
    /// Flags compared.
    pub mask: u8,
}

/// Bytes of the L4 payload at an offset, under a mask.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PayloadMatch {
    /// Offset from the start of the L4 payload.
    pub offset: u16,
    /// The bytes (masked).
    pub bytes: Vec<u8>,
    /// The mask, as long as `bytes`.
    pub mask: Vec<u8>,
}

/// A rule's rate: packets/s, bits/s, or both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleRate {
    /// Packets per second.
    pub pps: Option<u64>,
    /// Bits per second.
    pub bps: Option<u64>,
}

/// What a matching packet gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    /// Dropped.
    #[default]
    Drop,
    /// Passed, past everything after the rule.
    Allow,
    /// Counted; the rest of the policy decides.
    Monitor,
    /// The excess over the rate (all matches together) dropped.
    RateLimit(RuleRate),
    /// The excess over the rate per source dropped, and the source blocked under the rule.
    PerSource(RuleRate),
}

impl Action {
    /// The kernel's form.
    #[must_use]
    pub const fn kernel(self) -> filter_common::RuleAction {
        use filter_common::RuleAction as K;
        match self {
            Self::Drop => K::Drop,
            Self::Allow => K::Allow,
            Self::Monitor => K::Monitor,
            Self::RateLimit(_) => K::RateLimit,
            Self::PerSource(_) => K::PerSource,
        }
    }
}

/// What a rule matches and what it does: its text (see `syntax`). Every field is optional;
/// lists (protocols, ports, DSCP) match any of their items.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleSpec {
    /// Source prefix.
    pub src: Option<Prefix>,
    /// Destination prefix.
    pub dst: Option<Prefix>,
    /// IP protocols.
    pub protos: Vec<u8>,
    /// Source port ranges.
    pub sports: Vec<PortRange>,
    /// Destination port ranges.
    pub dports: Vec<PortRange>,
    /// ICMP type.
    pub icmp_type: Option<u8>,
    /// ICMP code.
    pub icmp_code: Option<u8>,
    /// TCP flags.
    pub tcp_flags: Option<TcpFlags>,
    /// IP length range.
    pub length: Option<ValueRange<u16>>,
    /// DSCP values.
    pub dscp: Vec<u8>,
    /// `filter_common::fragment` bits.
    pub fragment: Option<u8>,
    /// TTL or hop-limit range.
    pub ttl: Option<ValueRange<u8>>,
    /// Payload bytes.
    pub payload: Option<PayloadMatch>,
    /// `source known` (true) or `source unknown` (false): whether the service's baseline
    /// saw the packet's source before (`floodwall baseline`). Not a `FlowSpec` component.
    pub known_source: Option<bool>,
    /// The action.
    pub action: Action,
}

impl Serialize for RuleSpec {
    /// As its text.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RuleSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a rule came from: the config file's rules are replaced by a reload, the CLI's are
/// kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `floodwall rules add|load`.
    #[default]
    Cli,
    /// `[[rules]]` of the config file.
    Config,
    /// A signature the daemon found for an attack (`floodwall attacks`), withdrawn by it
    /// when the attack ends.
    Signature,
    /// A signature another node of the fleet found (`[fleet]`); its comment names the
    /// node. Removed when that node withdraws it, or when it expires.
    Fleet,
}

/// A rule a daemon holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Its id, unique in the daemon, never reused while it runs.
    pub id: u32,
    /// Lower decides first; ties by id.
    pub priority: u16,
    /// What it matches and does.
    pub spec: RuleSpec,
    /// The operator's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When it is removed (program clock); `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ns: Option<u64>,
    /// Where it came from.
    #[serde(default)]
    pub origin: Origin,
    /// Its slot: counters and rate state in the kernel.
    pub slot: u32,
}

impl Rule {
    /// The rank the kernel compares: priority, then id.
    #[must_use]
    pub fn rank(&self) -> (u16, u32) {
        (self.priority, self.id)
    }
}

/// Why a rule change was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The rule's text.
    #[error("{0}")]
    Syntax(#[from] RuleSyntaxError),
    /// No rule has this id.
    #[error("no rule has id {0} (see `floodwall rules list`)")]
    UnknownId(u32),
    /// An id named twice in one request.
    #[error("rule {0} is named twice")]
    DuplicateId(u32),
    /// The comment.
    #[error("the comment is {0} bytes, over {MAX_COMMENT_BYTES}, or has control characters")]
    BadComment(usize),
    /// A zero `--for`.
    #[error("`--for` must be longer than zero")]
    ZeroDuration,
    /// `rules keep` of a rule that is not a signature.
    #[error("rule {0} is not a signature (only signatures are kept: see `floodwall attacks`)")]
    NotASignature(u32),
    /// Nothing to add or remove.
    #[error("no rule given")]
    Empty,
    /// Over a kernel bound (the message says which).
    #[error("{0}")]
    Capacity(String),
    /// The kernel refused a write.
    #[error("the kernel refused a rule map update: {0}")]
    Map(String),
}

/// A rule as `rules list` and `rules show` print it: the rule and its counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleView {
    /// Its id.
    pub id: u32,
    /// Its priority.
    pub priority: u16,
    /// Its text.
    pub rule: String,
    /// The operator's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Where it came from.
    pub origin: Origin,
    /// Milliseconds until it expires; `None`: never.
    pub expires_in_ms: Option<u64>,
    /// Packets that matched it.
    pub matched_packets: u64,
    /// Their bytes.
    pub matched_bytes: u64,
    /// Packets it dropped (in monitor mode: would have).
    pub dropped_packets: u64,
    /// Their bytes.
    pub dropped_bytes: u64,
    /// Packets it passed on (matched, not dropped).
    pub passed_packets: u64,
    /// Milliseconds since its first match; `None`: none yet.
    pub first_match_ms_ago: Option<u64>,
    /// Milliseconds since its last match.
    pub last_match_ms_ago: Option<u64>,
}

impl RuleView {
    /// The view of `rule` with `counters`, at `now_ns` (program clock).
    #[must_use]
    pub fn new(rule: &Rule, counters: &filter_common::RuleCounters, now_ns: u64) -> Self {
        let ago = |t: u64| (t != 0).then(|| now_ns.saturating_sub(t) / 1_000_000);
        Self {
            id: rule.id,
            priority: rule.priority,
            rule: rule.spec.to_string(),
            comment: rule.comment.clone(),
            origin: rule.origin,
            expires_in_ms: rule
                .expires_ns
                .map(|t| t.saturating_sub(now_ns) / 1_000_000),
            matched_packets: counters.matched_packets,
            matched_bytes: counters.matched_bytes,
            dropped_packets: counters.dropped_packets,
            dropped_bytes: counters.dropped_bytes,
            passed_packets: counters
                .matched_packets
                .saturating_sub(counters.dropped_packets),
            first_match_ms_ago: ago(counters.first_ns),
            last_match_ms_ago: ago(counters.last_ns),
        }
    }
}
