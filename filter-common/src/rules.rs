//! Rules by packet shape: what the daemon compiles `floodwall rules` into, and what the
//! rules stage's program reads.
//!
//! An operator's rule (its match, action, priority) becomes one or more [`RuleEntry`]s:
//! one per combination of the protocols and port ranges it names, since a lookup key holds
//! one of each. Every entry of a rule points back to the rule's slot ([`RuleEntry::rule`]),
//! which indexes its counters and its rate state.
//!
//! # The index
//! A packet can only match an entry in one of four buckets ([`RuleBucketKey`]): its
//! protocol and destination port, its protocol and source port, its protocol, or the
//! bucket of entries that name no protocol. Each bucket lists its entries in rule order
//! (priority, then id), so the first entry that matches in a bucket is the bucket's
//! answer, and the earliest of the four answers decides. Before the tail call into the
//! stage, the main program tests four bits of [`map_names::RULE_INDEX`](crate::map_names)
//! (see [`rule_index_bit`]): a packet whose buckets are all empty costs four array reads and
//! never reaches the stage, however many rules there are.
//!
//! Every bucket has a fixed position, its bit's ([`rule_bucket_position`]). The stage finds
//! a bucket with two array reads, no hash lookup: its slot in
//! [`map_names::RULE_BUCKET_AT`](crate::map_names::RULE_BUCKET_AT) at its position, then
//! the bucket at that slot of [`map_names::RULE_BUCKETS`](crate::map_names::RULE_BUCKETS).
//! The buckets' slots come in two halves, as the entries do: the daemon writes a new set
//! into the half that nothing points to, then switches each position's slot (one word),
//! so the program reads the old bucket or the new one, never a bucket half written.

use crate::RateParams;

/// Name of the rules stage's program, which the main program tail-calls through
/// [`map_names::STAGES`](crate::map_names::STAGES) (slot [`RULES_STAGE`]) for a packet that
/// may match a rule: it decides the rules, and tail-calls [`AFTER_RULES_PROGRAM_NAME`] for
/// the rest of the policy.
pub const RULES_PROGRAM_NAME: &str = "floodwall_rules";

/// Slot of [`RULES_PROGRAM_NAME`] in `FW_STAGES`.
pub const RULES_STAGE: u32 = 1;

/// Name of the program that decides the rest of the policy for a packet the rules stage
/// leaves undecided (`monitor`, or under a rule's rate): the rules stage tail-calls it. A
/// program of its own so that the rules stage's program holds the rules only: with the
/// rest of the policy inlined after them, the verifier walked the policy once for every
/// state the rules left, over its 1,000,000 instructions.
pub const AFTER_RULES_PROGRAM_NAME: &str = "floodwall_after_rules";

/// Slot of [`AFTER_RULES_PROGRAM_NAME`] in `FW_STAGES`.
pub const AFTER_RULES_STAGE: u32 = 2;

/// Rules a daemon holds (slots of the counters and the rate state).
pub const MAX_RULES: u32 = 4096;

/// Entries of all rules together, after each rule is expanded into one an index key.
pub const MAX_RULE_ENTRIES: u32 = 8192;

/// Entries one rule may expand into (protocols × source port ranges × destination port
/// ranges, each range within one bucket).
pub const MAX_ENTRIES_PER_RULE: usize = 64;

/// Entries a bucket holds: how many rules may share one protocol and port, or name no port.
/// The program walks at most this many a bucket, so it bounds the work per packet.
pub const BUCKET_ENTRIES: usize = 16;

/// Buckets a rule set may fill (the slots of one half of `FW_RULE_BUCKETS`).
pub const MAX_RULE_BUCKETS: u32 = 8192;

/// Slots of `FW_RULE_BUCKETS`: two halves of [`MAX_RULE_BUCKETS`].
pub const RULE_BUCKET_SLOTS: u32 = 2 * MAX_RULE_BUCKETS;

/// Port ranges at most this wide go into the buckets of their ports, one a port; wider
/// ones into their protocol's bucket.
pub const MAX_EXPANDED_PORTS: u32 = 16;

/// Payload bytes a rule may compare.
pub const RULE_PAYLOAD_BYTES: usize = 16;

/// Largest offset, from the start of the L4 payload, of the bytes a rule compares: the
/// program reads at most this far into the payload (and the bytes must be in the frame).
pub const MAX_RULE_PAYLOAD_OFFSET: u16 = 1460;

/// Per-source state of `per-source` rules (LRU).
pub const MAX_RULE_SOURCES: u32 = 65_536;

/// Which fields of a [`RuleEntry`] it matches on; a field whose bit is clear matches
/// anything.
pub mod rule_fields {
    /// `src` under `src_mask`.
    pub const SRC: u32 = 1;
    /// `dst` under `dst_mask`.
    pub const DST: u32 = 1 << 1;
    /// `proto`.
    pub const PROTO: u32 = 1 << 2;
    /// `sport` (a TCP or UDP packet with its header).
    pub const SPORT: u32 = 1 << 3;
    /// `dport`.
    pub const DPORT: u32 = 1 << 4;
    /// `icmp_type` (an ICMP or `ICMPv6` packet with its header).
    pub const ICMP_TYPE: u32 = 1 << 5;
    /// `icmp_code`.
    pub const ICMP_CODE: u32 = 1 << 6;
    /// `tcp_flags` under `tcp_flags_mask` (a TCP packet with its header).
    pub const TCP_FLAGS: u32 = 1 << 7;
    /// `length`: the IP packet's length (IPv4 total length, IPv6 payload length + 40).
    pub const LENGTH: u32 = 1 << 8;
    /// `dscp`: a bit for each DSCP value that matches.
    pub const DSCP: u32 = 1 << 9;
    /// `fragment`: bits of [`super::fragment`].
    pub const FRAGMENT: u32 = 1 << 10;
    /// `ttl`: IPv4 TTL or IPv6 hop limit.
    pub const TTL: u32 = 1 << 11;
    /// `payload` under `payload_mask`, at `payload_offset` from the start of the L4 payload.
    pub const PAYLOAD: u32 = 1 << 12;
    /// `source_known`: whether `FW_KNOWN_SOURCES` holds the packet's source for the
    /// packet's service ([`super::KnownSourceKey`]). Not a `FlowSpec` component: a rule that
    /// names it cannot be announced upstream.
    pub const SOURCE_KNOWN: u32 = 1 << 13;
}

/// Sources the daemon's baseline saw use a service before an attack, at most.
pub const MAX_KNOWN_SOURCES: u32 = 65_536;

/// Key of `FW_KNOWN_SOURCES`: a source and the service (protocol and destination port)
/// the baseline saw it use. The value is a `u8`, one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KnownSourceKey {
    /// The source, as a [`SourceKey`](crate::SourceKey) holds it.
    pub addr: [u8; 16],
    /// Destination port, host order; zero for a packet without ports.
    pub port: u16,
    /// IP protocol.
    pub proto: u8,
    /// Zero.
    pub pad: u8,
}
const _: () = assert!(core::mem::size_of::<KnownSourceKey>() == 20);

/// Bits of [`RuleEntry::fragment`] and of a packet's fragment kind.
pub mod fragment {
    /// Not a fragment.
    pub const NONE: u8 = 1;
    /// The first fragment (offset 0, more to come): it has the L4 header.
    pub const FIRST: u8 = 1 << 1;
    /// A later fragment: no L4 header, so no ports, flags, types or payload to match.
    pub const LATER: u8 = 1 << 2;
}

/// What a matching packet gets.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// Dropped.
    Drop = 0,
    /// Dropped over the rule's rate (all its matches together, across CPUs); under it,
    /// on to the rest of the policy.
    RateLimit = 1,
    /// Dropped over the rule's rate per source (each source's matches); under it, on to
    /// the rest of the policy.
    PerSource = 2,
    /// Counted; on to the rest of the policy.
    Monitor = 3,
    /// Passed: nothing after the rule (denylist, blocks, limits) applies.
    Allow = 4,
}

impl TryFrom<u8> for RuleAction {
    type Error = u8;

    fn try_from(value: u8) -> Result<Self, u8> {
        Ok(match value {
            0 => Self::Drop,
            1 => Self::RateLimit,
            2 => Self::PerSource,
            3 => Self::Monitor,
            4 => Self::Allow,
            other => return Err(other),
        })
    }
}

/// One entry of a rule: what a packet must have, and what the rule does.
///
/// Addresses are [`SourceKey`](crate::SourceKey) words (IPv4 mapped into IPv6), masked:
/// a packet matches when its address under the mask equals the entry's. Ranges are
/// inclusive, `[low, high]`, host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleEntry {
    /// Source prefix, masked.
    pub src: [u64; 2],
    /// Source prefix mask.
    pub src_mask: [u64; 2],
    /// Destination prefix, masked.
    pub dst: [u64; 2],
    /// Destination prefix mask.
    pub dst_mask: [u64; 2],
    /// Payload bytes, masked.
    pub payload: [u8; RULE_PAYLOAD_BYTES],
    /// Payload mask.
    pub payload_mask: [u8; RULE_PAYLOAD_BYTES],
    /// `rate-limit`, `per-source`: packets (zero cost: no packet limit).
    pub packet_rate: RateParams,
    /// `rate-limit`, `per-source`: bits, charged per byte (zero cost: no bit limit).
    pub byte_rate: RateParams,
    /// DSCP values that match, a bit each.
    pub dscp: u64,
    /// Rank of the rule: lower decides first (priority, then id).
    pub order: u32,
    /// The rule's slot: its counters in `FW_RULE_STATS`, its state in `FW_RULE_RATES`.
    pub rule: u32,
    /// Bits of [`rule_fields`].
    pub fields: u32,
    /// Source port range.
    pub sport: [u16; 2],
    /// Destination port range.
    pub dport: [u16; 2],
    /// IP length range.
    pub length: [u16; 2],
    /// Offset of the payload bytes from the start of the L4 payload.
    pub payload_offset: u16,
    /// IP protocol (next header after any extension headers).
    pub proto: u8,
    /// [`RuleAction`] as `u8`.
    pub action: u8,
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub icmp_code: u8,
    /// TCP flags that must be set, of those in the mask.
    pub tcp_flags: u8,
    /// TCP flags compared.
    pub tcp_flags_mask: u8,
    /// Bits of [`fragment`].
    pub fragment: u8,
    /// TTL or hop-limit range.
    pub ttl: [u8; 2],
    /// How many payload bytes are compared (1 to [`RULE_PAYLOAD_BYTES`]): the packet must
    /// have them all.
    pub payload_len: u8,
    /// With [`rule_fields::SOURCE_KNOWN`]: 1, the packet's source must be known for its
    /// service; 0, it must not be.
    pub source_known: u8,
    /// Zero.
    pub pad: [u8; 11],
}
const _: () = assert!(core::mem::size_of::<RuleEntry>() == 184);

/// Which bucket of the index.
pub mod bucket_kind {
    /// Protocol and destination port.
    pub const DPORT: u8 = 0;
    /// Protocol and source port.
    pub const SPORT: u8 = 1;
    /// Protocol, any port.
    pub const PROTO: u8 = 2;
    /// No protocol named.
    pub const ANY: u8 = 3;
    /// No bucket: what a packet without ports has in place of its port buckets.
    pub const NONE: u8 = 0xff;
}

/// Which bucket: zero `proto` and `port` where the kind names none; its place in the maps
/// is its [`rule_bucket_position`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleBucketKey {
    /// A [`bucket_kind`].
    pub kind: u8,
    /// IP protocol.
    pub proto: u8,
    /// Port, host order.
    pub port: u16,
}
const _: () = assert!(core::mem::size_of::<RuleBucketKey>() == 4);

/// The entries of a bucket, by index into `FW_RULES`, in rule order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleBucket {
    /// How many of `entries` are used.
    pub len: u32,
    /// Entry indices; the first `len` count.
    pub entries: [u16; BUCKET_ENTRIES],
}
const _: () = assert!(core::mem::size_of::<RuleBucket>() == 4 + 2 * BUCKET_ENTRIES);

/// The four bitmaps of ports with a port bucket (TCP and UDP, destination and source),
/// then a bitmap of the protocols with a protocol bucket, then one word whose bit 0 says
/// that the any-protocol bucket has entries.
pub const RULE_INDEX_WORDS: u32 = 4 * 1024 + 4 + 1;
const PORT_WORDS: u32 = 1024;
const PROTO_WORDS_AT: u32 = 4 * PORT_WORDS;
/// The word of [`map_names::RULE_INDEX`](crate::map_names::RULE_INDEX) whose bit 0 says
/// that rules name no protocol.
pub const RULE_ANY_WORD: u32 = PROTO_WORDS_AT + 4;

/// Positions of buckets: one for each bit of the index, the length of
/// [`map_names::RULE_BUCKET_AT`](crate::map_names::RULE_BUCKET_AT).
pub const RULE_BUCKET_POSITIONS: u32 = RULE_INDEX_WORDS * 64;

/// The position of a bucket: its bit's in `FW_RULE_INDEX` (word × 64 + bit), and its
/// element of `FW_RULE_BUCKET_AT`; `None` for a port bucket of a protocol other than TCP
/// and UDP (which have no ports), and for [`bucket_kind::NONE`].
#[must_use]
pub const fn rule_bucket_position(key: RuleBucketKey) -> Option<u32> {
    let proto_map = match key.proto {
        6 => 0,
        17 => 1,
        _ => 2,
    };
    match key.kind {
        bucket_kind::DPORT | bucket_kind::SPORT => {
            if proto_map == 2 {
                return None;
            }
            let map = (key.kind as u32) * 2 + proto_map;
            Some(map * PORT_WORDS * 64 + key.port as u32)
        }
        bucket_kind::PROTO => Some(PROTO_WORDS_AT * 64 + key.proto as u32),
        bucket_kind::ANY => Some(RULE_ANY_WORD * 64),
        _ => None,
    }
}

/// The word and bit of a bucket in `FW_RULE_INDEX` (see [`rule_bucket_position`]).
#[must_use]
pub const fn rule_index_bit(key: RuleBucketKey) -> Option<(u32, u64)> {
    match rule_bucket_position(key) {
        Some(position) => Some(index_bit_at(position)),
        None => None,
    }
}

/// The word and bit of `FW_RULE_INDEX` for a bucket's position.
#[must_use]
pub const fn index_bit_at(position: u32) -> (u32, u64) {
    (position / 64, 1 << (position % 64))
}

/// A rule's counters, per CPU: the daemon sums them (and takes the earliest first and the
/// latest last match). Passed = matched - dropped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleCounters {
    /// Packets that matched.
    pub matched_packets: u64,
    /// Their bytes (frame length).
    pub matched_bytes: u64,
    /// Packets the rule dropped (in monitor mode: would have dropped).
    pub dropped_packets: u64,
    /// Their bytes.
    pub dropped_bytes: u64,
    /// The first match on this CPU (program clock); zero: none yet.
    pub first_ns: u64,
    /// The last match on this CPU.
    pub last_ns: u64,
}
const _: () = assert!(core::mem::size_of::<RuleCounters>() == 48);

/// A `rate-limit` rule's shared TATs (all CPUs charge them, as a source's).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleRateState {
    /// Packet TAT.
    pub packet_tat_ns: u64,
    /// Byte TAT.
    pub byte_tat_ns: u64,
}
const _: () = assert!(core::mem::size_of::<RuleRateState>() == 16);

/// Key of `FW_RULE_SOURCES`: a source under a `per-source` rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleSourceKey {
    /// The source.
    pub addr: [u8; 16],
    /// The rule's slot.
    pub rule: u32,
    /// Zero.
    pub pad: u32,
}
const _: () = assert!(core::mem::size_of::<RuleSourceKey>() == 24);

/// A source's state under a `per-source` rule: its TATs, and its block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleSourceState {
    /// Packet TAT.
    pub packet_tat_ns: u64,
    /// Byte TAT.
    pub byte_tat_ns: u64,
    /// Blocked for this rule until then (program clock); zero: not blocked.
    pub blocked_until_ns: u64,
}
const _: () = assert!(core::mem::size_of::<RuleSourceState>() == 24);

/// Bytes of a [`RuleRecord`]'s text.
pub const RULE_RECORD_BYTES: usize = 504;

/// A rule as the daemon knows it (id, priority, text, comment, expiry; JSON), by rule slot,
/// so that a daemon that takes over the pinned state knows the rules the program enforces.
/// The program never reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleRecord {
    /// Bytes of `text` used; zero: the slot is free.
    pub len: u32,
    /// Zero.
    pub pad: u32,
    /// The JSON.
    pub text: [u8; RULE_RECORD_BYTES],
}
const _: () = assert!(core::mem::size_of::<RuleRecord>() == 512);

#[cfg(test)]
mod tests {
    use super::*;

    const fn key(kind: u8, proto: u8, port: u16) -> RuleBucketKey {
        RuleBucketKey { kind, proto, port }
    }

    /// Golden values: pinned `FW_RULE_INDEX` and `FW_RULE_BUCKET_AT` are addressed by these
    /// positions, so a new build must compute the ones the build that pinned them did.
    #[test]
    fn bucket_positions_are_the_index_bits() {
        use bucket_kind::{ANY, DPORT, NONE, PROTO, SPORT};
        let cases = [
            (key(DPORT, 6, 0), Some(0)),
            (key(DPORT, 17, 53), Some(65_589)),
            (key(SPORT, 6, 123), Some(131_195)),
            (key(SPORT, 17, 65_535), Some(262_143)),
            (key(PROTO, 1, 0), Some(262_145)),
            (key(PROTO, 255, 0), Some(262_399)),
            (key(ANY, 0, 0), Some(262_400)),
            (key(DPORT, 1, 80), None),
            (key(NONE, 6, 80), None),
        ];
        for (k, want) in cases {
            assert_eq!(rule_bucket_position(k), want, "{k:?}");
            let bit = want.map(|p| (p / 64, 1u64 << (p % 64)));
            assert_eq!(rule_index_bit(k), bit, "{k:?}");
        }
        assert_eq!(rule_index_bit(key(ANY, 0, 0)), Some((RULE_ANY_WORD, 1)));
        const { assert!(262_400 < RULE_BUCKET_POSITIONS) };
    }
}
