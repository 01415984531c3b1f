//! The kernel/user contract of floodwall.
//!
//! Everything that crosses the boundary between the XDP program (`filter-ebpf`) and the
//! daemon (`filter-user`) is defined here and only here: program and map names, the
//! `#[repr(C)]` types stored in maps and sent through the event ring buffer, and the list of
//! outcomes that index the per-CPU counters.
//!
//! # Byte order
//! Addresses stay in wire (network) order as byte arrays: `[u8; 16]`, with IPv4 sources
//! stored as IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) so that one
//! table and one key type serve both families. Counters, times and thresholds are host-order
//! integers.
//!
//! # Layout stability
//! Every map type has explicit padding and a compile-time size assertion: maps can outlive a
//! daemon (pinned maps, upgrades), so a silent layout change would corrupt state.
//! No `bool` and no Rust enums are stored in maps; enumerations travel as `u32` and are
//! decoded with `TryFrom<u32>` on the user side.
//!
//! # Time
//! All `*_ns` fields are nanoseconds on the program's clock: the kernel's tick counter
//! (`bpf_jiffies64()`, which the verifier turns into a plain load, where
//! `bpf_ktime_get_ns()` is a helper call; the README's Performance section has its cost) scaled
//! and shifted by the daemon so that it reads like `CLOCK_MONOTONIC`, to within one tick
//! (see [`LimitsConfig::clock_mul_ns`]). Its resolution is one tick (1 to 10 ms), which is
//! why bursts must last at least [`MIN_BURST_NS`] at their rate.
#![no_std]

mod rules;
mod sample;
mod syn;
pub use rules::*;
pub use sample::*;
pub use syn::*;

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "floodwall";

/// Name of the SYN-cookie stage's program: the part of the policy for a SYN or ACK to a
/// protected port from a source not admitted to the table, which [`PROGRAM_NAME`] reaches
/// by tail call through [`map_names::STAGES`] (slot [`SYN_COOKIE_STAGE`]). A program of its
/// own because the verifier walks each copy of inlined code once for every state that
/// reaches it: inlined, the stage took [`PROGRAM_NAME`] from 215,000 verified instructions
/// to 861,000 of the kernel's 1,000,000.
pub const SYN_COOKIE_PROGRAM_NAME: &str = "floodwall_syncookie";

/// Slot of [`SYN_COOKIE_PROGRAM_NAME`] in [`map_names::STAGES`].
pub const SYN_COOKIE_STAGE: u32 = 0;

/// Slots of [`map_names::STAGES`]: the SYN-cookie stage, the rules stage
/// ([`RULES_STAGE`]) and the policy after the rules ([`AFTER_RULES_STAGE`]).
pub const STAGE_SLOTS: u32 = 3;

/// Name of a trivial `XDP_DROP` program shipped in the same object. Benchmarks measure it in
/// the same run as [`PROGRAM_NAME`] to express costs as a ratio to the cheapest possible XDP
/// program on the same machine.
pub const BASELINE_PROGRAM_NAME: &str = "floodwall_drop";

/// Name of a bare reflector in the same object (swap the MAC addresses, `XDP_TX`): the
/// yardstick of the SYN-cookie path, which answers in place too.
pub const REFLECTOR_PROGRAM_NAME: &str = "floodwall_reflect";

/// Name of a program that returns `XDP_DROP` after [`YARDSTICK_CALLS`] calls of a helper
/// the kernel does not inline (`bpf_get_prandom_u32`): benchmarks measure it beside
/// [`BASELINE_PROGRAM_NAME`] to show what a call costs on the machine, the price of every
/// hash-map lookup and stage the program makes.
pub const CALLS_PROGRAM_NAME: &str = "floodwall_calls";

/// Helper calls [`CALLS_PROGRAM_NAME`] makes.
pub const YARDSTICK_CALLS: u32 = 4;

/// Name of a program that samples the program clock and `bpf_ktime_get_ns()` into
/// [`map_names::CLOCK`]; the daemon runs it with `BPF_PROG_TEST_RUN` to calibrate the clock.
pub const CLOCK_PROGRAM_NAME: &str = "floodwall_clock";

/// Name of the load-time global that switches the program to the test clock
/// ([`LimitsConfig::test_now_ns`]). Zero in production, where the verifier removes the test
/// branch as dead code because the global lives in a frozen read-only map.
pub const TEST_CLOCK_GLOBAL: &str = "FW_TEST_CLOCK";

/// Name of the load-time global that turns the SYN-cookie stage's code on: the daemon sets
/// it where the kernel has the stage's helpers (Linux 6.0+). Zero elsewhere, where the
/// verifier removes the stage as dead code and so never sees the helpers it would reject:
/// the rest of the program loads on older kernels.
pub const SYN_COOKIES_GLOBAL: &str = "FW_SYN_COOKIES";

/// Map names, as they appear in the object file (at most 15 bytes: `BPF_OBJ_NAME_LEN`).
pub mod map_names {
    /// Array of [`SourceSlot`](crate::SourceSlot)s in sets of
    /// [`SOURCE_WAYS`](crate::SOURCE_WAYS) ([`source_set`](crate::source_set)), mappable
    /// (`BPF_F_MMAPABLE`): the source table.
    pub const SOURCES: &str = "FW_SOURCES";
    /// Hash (not preallocated): [`SourceKey`](crate::SourceKey) →
    /// [`ClassState`](crate::ClassState), the per-class TATs of tracked sources.
    pub const CLASS_STATE: &str = "FW_CLASS_STATE";
    /// Array of one [`LimitsConfig`](crate::LimitsConfig).
    pub const LIMITS: &str = "FW_LIMITS";
    /// Per-CPU array of [`Counter`](crate::Counter) indexed by
    /// [`Class::counter_index`](crate::Class::counter_index).
    pub const COUNTERS: &str = "FW_COUNTERS";
    /// Ring buffer of [`BlockEvent`](crate::BlockEvent).
    pub const EVENTS: &str = "FW_EVENTS";
    /// Per-CPU array of one `u64`: events the ring buffer had no room for.
    pub const EVENTS_LOST: &str = "FW_EVENTS_LOST";
    /// Array of [`BLOCK_CACHE_SLOTS`](crate::BLOCK_CACHE_SLOTS)
    /// [`BlockCacheSlot`](crate::BlockCacheSlot)s.
    pub const BLOCK_CACHE: &str = "FW_BLOCK_CACHE";
    /// Array of one [`ClockSample`](crate::ClockSample), written by the clock program.
    pub const CLOCK: &str = "FW_CLOCK";
    /// LPM trie: `Key<[u8; 4]>` (prefix length, IPv4 prefix in wire order) →
    /// [`ListEntry`](crate::ListEntry). Sources that are never dropped.
    pub const ALLOW_V4: &str = "FW_ALLOW_V4";
    /// LPM trie: `Key<[u8; 16]>` → [`ListEntry`](crate::ListEntry). IPv6 allowlist.
    pub const ALLOW_V6: &str = "FW_ALLOW_V6";
    /// LPM trie: `Key<[u8; 4]>` → [`ListEntry`](crate::ListEntry). Sources always dropped.
    pub const DENY_V4: &str = "FW_DENY_V4";
    /// LPM trie: `Key<[u8; 16]>` → [`ListEntry`](crate::ListEntry). IPv6 denylist.
    pub const DENY_V6: &str = "FW_DENY_V6";
    /// Per-CPU array of [`SKETCH_ROWS`](crate::SKETCH_ROWS) [`SketchRow`](crate::SketchRow)s.
    pub const SKETCH: &str = "FW_SKETCH";
    /// Per-CPU array of one `u64` TAT per class, then the admission budget's
    /// ([`ADMISSION_SLOT`](crate::ADMISSION_SLOT)): per-CPU GCRA state.
    pub const CEILINGS: &str = "FW_CEILINGS";
    /// LRU hash: [`PrefixKey`](crate::PrefixKey) → [`PrefixState`](crate::PrefixState).
    pub const PREFIXES: &str = "FW_PREFIXES";
    /// Per-CPU array of [`TABLE_STAT_SLOTS`](crate::TABLE_STAT_SLOTS) `u64`: source table
    /// inserts and failed inserts.
    pub const TABLE_STATS: &str = "FW_TABLE_STATS";
    /// Array of [`TRACKED_CHUNKS`](crate::TRACKED_CHUNKS)
    /// [`TrackedChunk`](crate::TrackedChunk)s: a bit per hash of the sources that may be in
    /// `FW_SOURCES`, so that a packet of a source that is not skips the table lookup.
    pub const TRACKED: &str = "FW_TRACKED";
    /// Array of [`SYN_PORT_WORDS`](crate::SYN_PORT_WORDS) `u64`: the ports whose SYNs of
    /// untracked sources are answered with cookies ([`syn_port_bit`](crate::syn_port_bit)).
    pub const SYN_PORTS: &str = "FW_SYN_PORTS";
    /// Per-CPU array of [`SYN_STAT_SLOTS`](crate::SYN_STAT_SLOTS) `u64`, by
    /// [`SynStat`](crate::SynStat).
    pub const SYN_STATS: &str = "FW_SYN_STATS";
    /// Program array of [`STAGE_SLOTS`](crate::STAGE_SLOTS): the stages that are programs
    /// of their own, reached by tail call. Pinned, but not with the maps (`PINNED`): each
    /// loaded program keeps an array of its own, pinned beside its link
    /// (`floodwall::pin`), since the kernel empties a program array when no process or pin
    /// holds it, and the attached program would lose its stages when the daemon exits. Not
    /// shared between builds: the stages read the per-CPU copy of the parser's results that
    /// the main program of their own object wrote, so an older program attached during an
    /// upgrade must go on calling its own stages until the new one replaces it.
    pub const STAGES: &str = "FW_STAGES";
    /// Array of [`MAX_RULE_ENTRIES`](crate::MAX_RULE_ENTRIES)
    /// [`RuleEntry`](crate::RuleEntry)s, the rules' entries, by index.
    pub const RULES: &str = "FW_RULES";
    /// Array of [`RULE_BUCKET_SLOTS`](crate::RULE_BUCKET_SLOTS)
    /// [`RuleBucket`](crate::RuleBucket)s in two halves, the rules' index; a bucket's slot
    /// is in [`RULE_BUCKET_AT`].
    pub const RULE_BUCKETS: &str = "FW_RULE_BUCKETS";
    /// Array of [`RULE_BUCKET_POSITIONS`](crate::RULE_BUCKET_POSITIONS) `u32`: at a bucket's
    /// position ([`rule_bucket_position`](crate::rule_bucket_position)), its slot in
    /// [`RULE_BUCKETS`], read only where [`RULE_INDEX`] has the bucket's bit.
    pub const RULE_BUCKET_AT: &str = "FW_RULE_BUCKET_AT";
    /// Array of [`RULE_INDEX_WORDS`](crate::RULE_INDEX_WORDS) `u64`: a bit for each bucket
    /// that holds entries ([`rule_index_bit`](crate::rule_index_bit)).
    pub const RULE_INDEX: &str = "FW_RULE_INDEX";
    /// Per-CPU array of [`MAX_RULES`](crate::MAX_RULES)
    /// [`RuleCounters`](crate::RuleCounters), by rule slot.
    pub const RULE_STATS: &str = "FW_RULE_STATS";
    /// Array of [`MAX_RULES`](crate::MAX_RULES) [`RuleRateState`](crate::RuleRateState), by
    /// rule slot: the TATs of `rate-limit` rules.
    pub const RULE_RATES: &str = "FW_RULE_RATES";
    /// LRU hash: [`RuleSourceKey`](crate::RuleSourceKey) →
    /// [`RuleSourceState`](crate::RuleSourceState), sources under `per-source` rules.
    pub const RULE_SOURCES: &str = "FW_RULE_SOURCES";
    /// Array of [`MAX_RULES`](crate::MAX_RULES) [`RuleRecord`](crate::RuleRecord)s, by rule
    /// slot: the daemon's own record of its rules, which the program never reads.
    pub const RULE_RECORDS: &str = "FW_RULE_RECORDS";
    /// Hash: [`KnownSourceKey`](crate::KnownSourceKey) → `u8`, the sources each service's
    /// baseline saw, which rules match with `source known|unknown`. The daemon writes it;
    /// pinned, so that a rule protecting them goes on doing so without a daemon.
    pub const KNOWN_SOURCES: &str = "FW_KNOWN_SOURCES";
    /// Ring buffer of [`PacketSample`](crate::PacketSample)s. Not pinned: samples matter
    /// only to the daemon that reads them.
    pub const SAMPLES: &str = "FW_SAMPLES";
    /// Per-CPU array of one [`SampleBudget`](crate::SampleBudget): samples this CPU may
    /// still take before the daemon's next refill (see [`crate::SAMPLES_PER_REFILL`]), and
    /// how they are spread. Not pinned.
    pub const SAMPLE_BUDGET: &str = "FW_SAMPLE_BUDGET";
    /// Per-CPU array of [`SERVICE_SLOTS`](crate::SERVICE_SLOTS)
    /// [`Counter`](crate::Counter)s by [`service_slot`](crate::service_slot): every IP
    /// packet, by service. Not pinned: the daemon reads rates, differences of two readings
    /// of the same map.
    pub const SERVICE_COUNTERS: &str = "FW_SERVICE_COUNTERS";

    /// The maps the daemon pins in bpffs, so that the program keeps its state (and keeps
    /// enforcing) while no daemon runs, and a new daemon or a new build takes it over.
    /// `FW_CLOCK` is left out: it only holds the calibration samples of the moment.
    pub const PINNED: &[&str] = &[
        SOURCES,
        CLASS_STATE,
        LIMITS,
        COUNTERS,
        EVENTS,
        EVENTS_LOST,
        BLOCK_CACHE,
        ALLOW_V4,
        ALLOW_V6,
        DENY_V4,
        DENY_V6,
        SKETCH,
        CEILINGS,
        PREFIXES,
        TABLE_STATS,
        TRACKED,
        SYN_PORTS,
        SYN_STATS,
        RULES,
        RULE_BUCKETS,
        RULE_BUCKET_AT,
        RULE_INDEX,
        RULE_STATS,
        RULE_RATES,
        RULE_SOURCES,
        RULE_RECORDS,
        KNOWN_SOURCES,
    ];
}

/// Version of the maps' layout: the names, types, key and value types above and the meaning
/// of every field. Pinned maps live in a directory named after it (`maps-v{N}`), and a new
/// build adopts pinned state only when the versions match. Bump it with any change to a
/// shared type or map; the test `a_layout_change_bumps_the_version` is the tripwire for the
/// changes that alter a size.
pub const MAP_LAYOUT_VERSION: u32 = 10;

/// Default capacity of the per-source table.
pub const DEFAULT_MAX_SOURCES: u32 = 1 << 20;

/// Slots of a set of the source table: a source lives in one of the slots of its set
/// ([`source_set`]), so a lookup compares at most this many keys.
pub const SOURCE_WAYS: u32 = 4;

/// Sets of a source table for `max_sources` sources: enough to hold them all, rounded up
/// to whole sets.
#[must_use]
pub const fn source_sets(max_sources: u32) -> u32 {
    max_sources.div_ceil(SOURCE_WAYS)
}

/// The name of the program's global that holds the source table's number of sets
/// ([`source_sets`]), set at load time beside the table's capacity.
pub const SOURCE_SETS_GLOBAL: &str = "FW_SOURCE_SETS";

/// The set of `key` in a source table of `sets` sets (its slots are `set * SOURCE_WAYS`
/// and the next `SOURCE_WAYS - 1`): a 32-bit mix of the key scaled to `sets` by a multiply
/// and a shift, so any number of sets works and no division is needed.
#[must_use]
#[inline(always)]
pub const fn source_set(key: &SourceKey, sets: u32) -> u32 {
    let [w0, w1, w2, w3] = key.halves();
    let mixed = (w0.rotate_left(9) ^ w1.rotate_left(19) ^ w2.rotate_left(29) ^ w3)
        .wrapping_mul(0x85EB_CA77);
    let mixed = (mixed ^ (mixed >> 15)).wrapping_mul(0xC2B2_AE3D);
    let mixed = mixed ^ (mixed >> 13);
    ((mixed as u64 * sets as u64) >> 32) as u32
}

/// Size of the event ring buffer in bytes (a power of two and a multiple of the page size).
pub const EVENTS_BYTES: u32 = 256 * 1024;

/// Length of the reporting window behind the per-source rates that `top` shows.
pub const RATE_WINDOW_NS: u64 = 1_000_000_000;

/// Fixed-point shift of the per-packet and per-byte costs in [`LimitsConfig`]: costs are
/// nanoseconds × 2^16, so that byte costs below one nanosecond (over 8 Gbit/s) stay exact
/// enough and the data path needs a shift, not a division.
pub const COST_SHIFT: u32 = 16;

/// The shortest burst, in time at the sustained rate: a few ticks of the coarsest kernel
/// clock (HZ = 100), since all packets within one tick see the same time.
pub const MIN_BURST_NS: u64 = 30_000_000;

/// Slots of the blocked-source cache (a power of two).
pub const BLOCK_CACHE_SLOTS: u32 = 1 << 16;

/// Maximum number of VLAN tags (802.1Q and 802.1ad) the parser walks through.
pub const MAX_VLAN_TAGS: usize = 2;

/// Maximum number of IPv6 extension headers the parser walks through before it gives up
/// and counts the packet as malformed.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;

/// Key of the per-source table: the source address in wire order, IPv4 mapped into IPv6.
///
/// Aligned to 8 bytes (its size stays 16, so the maps' key size does not change): the BPF
/// backend may not combine byte loads into wider ones at an unknown alignment, so a key
/// aligned to 1 was built, hashed and compared a byte at a time. [`SourceKey::words`]
/// reads it as two native-order 64-bit words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SourceKey {
    /// The address, network byte order.
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<SourceKey>() == 16);
const _: () = assert!(core::mem::align_of::<SourceKey>() == 8);

impl SourceKey {
    /// The key of an IPv4 source given in wire order.
    #[must_use]
    #[inline(always)]
    pub const fn from_ipv4(octets: [u8; 4]) -> Self {
        Self {
            addr: [
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2],
                octets[3],
            ],
        }
    }

    /// The key of an IPv4 source whose four wire-order bytes were loaded as one native-order
    /// `u32` (a single load from the packet): the same key as [`SourceKey::from_ipv4`].
    #[must_use]
    #[inline(always)]
    pub const fn from_ipv4_word(word: u32) -> Self {
        // Bytes 8..12 are 00 00 ff ff, bytes 12..16 the address (little-endian words, see
        // `halves`).
        Self::from_words([0, 0xffff_0000 | ((word as u64) << 32)])
    }

    /// The key of an address: IPv4 addresses are IPv4-mapped.
    #[must_use]
    pub const fn from_ip(addr: core::net::IpAddr) -> Self {
        match addr {
            core::net::IpAddr::V4(v4) => Self::from_ipv4(v4.octets()),
            core::net::IpAddr::V6(v6) => Self::from_ipv6(v6.octets()),
        }
    }

    /// The address of the key: IPv4-mapped keys are IPv4 addresses.
    #[must_use]
    pub const fn ip(&self) -> core::net::IpAddr {
        let v6 = core::net::Ipv6Addr::from_octets(self.addr);
        match v6.to_ipv4_mapped() {
            Some(v4) => core::net::IpAddr::V4(v4),
            None => core::net::IpAddr::V6(v6),
        }
    }

    /// The key of an IPv6 source given in wire order.
    #[must_use]
    #[inline(always)]
    pub const fn from_ipv6(octets: [u8; 16]) -> Self {
        Self { addr: octets }
    }

    /// The address as two native-order words (bytes 0..8 and 8..16), the form the hashes
    /// and comparisons of the data path use.
    #[must_use]
    #[inline(always)]
    pub const fn words(&self) -> [u64; 2] {
        // SAFETY: `SourceKey` is 16 bytes aligned to 8 (asserted above), so it can be read
        // as two u64; every bit pattern is a valid u64.
        unsafe { *(&raw const *self).cast::<[u64; 2]>() }
    }

    /// The key whose [`words`](Self::words) are `words`.
    #[must_use]
    #[inline(always)]
    pub const fn from_words(words: [u64; 2]) -> Self {
        // SAFETY: as in `words`: same size, and a key is plain bytes.
        unsafe { core::mem::transmute::<[u64; 2], Self>(words) }
    }

    /// The key masked to its first `bits` bits in wire order (prefix keys). Word by word,
    /// with two branches at most: the verifier walks every branch of the data path, and a
    /// byte loop here multiplied its states.
    #[must_use]
    #[inline(always)]
    pub const fn masked(&self, bits: u32) -> Self {
        let [a, b] = self.words();
        let first = if bits < 64 { bits } else { 64 };
        let second = bits.saturating_sub(64);
        Self::from_words([a & word_mask(first), b & word_mask(second)])
    }

    /// The four native-order 32-bit words the hashes mix (bytes 0..4, 4..8, 8..12, 12..16).
    #[inline(always)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "splitting words into halves"
    )]
    const fn halves(&self) -> [u32; 4] {
        let [a, b] = self.words();
        // Native order is little-endian on every target floodwall builds for (x86-64,
        // aarch64, bpfel): the low half of a word holds its first four bytes.
        [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32]
    }
}
/// The native-order mask of a word's first `bits` bits in wire order (`bits` at most 64):
/// the big-endian mask with its bytes swapped into the little-endian word.
#[inline(always)]
const fn word_mask(bits: u32) -> u64 {
    if bits == 0 {
        0
    } else {
        (u64::MAX << (64 - bits)).swap_bytes()
    }
}

#[cfg(not(target_endian = "little"))]
compile_error!("SourceKey::halves assumes a little-endian target");

/// State of one tracked source. Written by the XDP program only, read by the daemon.
///
/// Rate limiting is GCRA (the virtual-scheduling form of a token bucket): each packet moves
/// the source's theoretical arrival time (TAT) forward by its cost; the packet exceeds the
/// limit when the TAT runs more than the burst window ahead of now. The TATs are advanced with
/// atomic adds, so the limit holds in total across CPUs.
///
/// 48 bytes: with its key, a slot of the table ([`SourceSlot`]) is one 64-byte cache line.
/// A tracked packet reads and writes its source's state. The per-class TATs, which only
/// class limits need, live in their own table ([`ClassState`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceState {
    /// Packet-rate TAT. While the source is blocked, when the block started: a block sets it
    /// (the TAT means nothing while every packet is dropped, and an expired block starts
    /// the TATs again from now), so that the windows, which freeze with the block, are
    /// rated as of then. Read it as such through [`SourceState::blocked_at_ns`].
    pub packet_tat_ns: u64,
    /// Byte-rate TAT.
    pub byte_tat_ns: u64,
    /// While non-zero and in the future, every packet from the source is dropped.
    pub blocked_until_ns: u64,
    /// Start of the current reporting window.
    pub window_start_ns: u64,
    /// Bytes counted in the current reporting window, saturating (at 4 GiB a window: 34
    /// Gbit/s from one source; the windows only report, the limits are the TATs).
    pub window_bytes: u32,
    /// Bytes of the previous window, zero if it was idle.
    pub prev_window_bytes: u32,
    /// Packets counted in the current reporting window (blocked packets are not counted:
    /// the blocked fast path writes nothing shared).
    pub window_packets: u32,
    /// Packets of the previous window.
    pub prev_window_packets: u32,
}

impl SourceState {
    /// When the source's block started, if it is blocked (see `packet_tat_ns`).
    #[must_use]
    pub const fn blocked_at_ns(&self) -> u64 {
        self.packet_tat_ns
    }
}
const _: () = assert!(core::mem::size_of::<SourceState>() == 48);

/// One slot of the source table (`FW_SOURCES`): a source and its state. A slot that holds
/// no source is all zeros; the daemon empties a slot by writing zeros. A zero key is also
/// the key of `::`, the unspecified IPv6 source (only duplicate-address detection sends
/// from it): that source reads an empty slot of its set as its own, with idle state.
///
/// Occupied: [`SourceSlot::holds_source`]. Written by the program (a new source's slot: its
/// state first, its key last; then its state in place) and the daemon (whole slots, to
/// remove a source).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceSlot {
    /// The source.
    pub key: SourceKey,
    /// Its state.
    pub state: SourceState,
}
const _: () = assert!(core::mem::size_of::<SourceSlot>() == 64);

impl SourceSlot {
    /// Whether the slot holds a source: a non-zero key, or the zero key of `::` once that
    /// source has started a reporting window (the program starts one with its first packet).
    #[must_use]
    pub const fn holds_source(&self) -> bool {
        let [a, b] = self.key.words();
        a | b != 0 || self.state.window_start_ns != 0
    }

    /// When the slot's source last showed activity, for the choice of a slot to reuse: the
    /// start of its reporting window (set by its first packet of each window), or the end
    /// of its block if that is later. Zero for an empty slot.
    #[must_use]
    #[inline(always)]
    pub const fn last_active_ns(&self) -> u64 {
        let (window, block) = (self.state.window_start_ns, self.state.blocked_until_ns);
        if block > window { block } else { window }
    }
}

/// Per-class packet-rate TATs of one tracked source (`FW_CLASS_STATE`), kept apart from
/// [`SourceState`] because only per-source class limits use them: the program looks them
/// up only while such a limit is set ([`list_flags::CLASS_LIMITS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassState {
    /// Per-class packet-rate TATs, by [`Class`].
    pub class_tat_ns: [u64; CLASSES],
}
const _: () = assert!(core::mem::size_of::<ClassState>() == 48);

/// What the data path does with a packet over a limit.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Drop it.
    #[default]
    Enforce = 0,
    /// Count what would have been dropped, drop nothing.
    Monitor = 1,
}

impl TryFrom<u32> for Mode {
    type Error = u32;
    fn try_from(value: u32) -> Result<Self, u32> {
        match value {
            0 => Ok(Self::Enforce),
            1 => Ok(Self::Monitor),
            other => Err(other),
        }
    }
}

/// The limits the data path enforces, element 0 of the `FW_LIMITS` array. Written by the
/// daemon, read by the XDP program on every packet, so a change takes effect on the next one.
///
/// Ordered by use: the first cache line holds what every tracked packet reads (clock, flags,
/// per-source packet and byte limits); the per-class, ceiling, admission and prefix
/// parameters follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Nanoseconds per kernel tick: the program's time is
    /// `jiffies × clock_mul_ns − clock_offset_ns` (wrapping).
    pub clock_mul_ns: u64,
    /// See [`clock_mul_ns`](Self::clock_mul_ns).
    pub clock_offset_ns: u64,
    /// [`list_flags`] bits: which lists hold entries, which optional stages are on.
    pub list_flags: u32,
    /// [`Mode`] as `u32`.
    pub mode: u32,
    /// Nanoseconds per packet × 2^[`COST_SHIFT`]; zero disables the packet limit.
    pub packet_cost_fp: u64,
    /// Packet burst tolerance: how far the packet TAT may run ahead of now.
    pub packet_window_ns: u64,
    /// Nanoseconds per byte × 2^[`COST_SHIFT`]; zero disables the byte limit.
    pub byte_cost_fp: u64,
    /// Byte burst tolerance.
    pub byte_window_ns: u64,
    /// How long a source that exceeded a limit stays blocked.
    pub block_ns: u64,
    /// Bit `1 << class`: that class only monitors.
    pub monitor_classes: u32,
    /// Packets a new source must show in the admission sketch (this second, this CPU)
    /// before it gets a table entry; 0 or 1 admits at once.
    pub admit_packets: u32,
    /// Current time for a program loaded with [`TEST_CLOCK_GLOBAL`] set; ignored otherwise.
    pub test_now_ns: u64,
    /// Per-CPU rate of new table entries: however many sources pass the admission sketch,
    /// at most this many get an entry, so a flood cannot churn the table and evict the state
    /// of established clients. Zero cost: unlimited.
    pub admit_rate: RateParams,
    /// Per-source packet limits by [`Class`].
    pub class_packets: [RateParams; CLASSES],
    /// Per-CPU ceilings by [`Class`] on packets of untracked sources (not yet admitted to
    /// the table, or not insertable): the daemon divides the operator's total by the
    /// number of CPUs, because a shared counter would be one cache line written by every CPU
    /// at flood rate.
    pub ceilings: [RateParams; CLASSES],
    /// Limits by prefix scope ([`prefix_scopes`]).
    pub prefixes: [PrefixLimits; PREFIX_SCOPES],
    /// SYN-ACKs of the cookie stage, while [`list_flags::SYN_PROTECT`] is set.
    pub syn: SynProtectConfig,
}
const _: () = assert!(core::mem::size_of::<LimitsConfig>() == 96 + 2 * 96 + 3 * 136 + 40);

/// `FW_CEILINGS` slot of the admission budget's TAT (after the classes' slots).
#[expect(clippy::cast_possible_truncation, reason = "CLASSES is 6")]
pub const ADMISSION_SLOT: u32 = CLASSES as u32;
/// `FW_CEILINGS` slot of the SYN-ACK budget's TAT.
pub const COOKIE_SLOT: u32 = ADMISSION_SLOT + 1;
/// `FW_CEILINGS` slot of the cookie-verified admission budget's TAT.
pub const VERIFIED_SLOT: u32 = ADMISSION_SLOT + 2;
/// Number of `FW_CEILINGS` slots.
pub const CEILING_SLOTS: u32 = ADMISSION_SLOT + 3;

impl LimitsConfig {
    /// The [`list_flags::DERIVED`] bits these limits call for.
    #[must_use]
    pub fn derived_flags(&self) -> u32 {
        let mut flags = 0;
        if self.prefixes.iter().any(|p| p.active != 0) {
            flags |= list_flags::PREFIX_LIMITS;
        }
        if self.class_packets.iter().any(|c| c.cost_fp != 0) {
            flags |= list_flags::CLASS_LIMITS;
        }
        flags
    }

    /// These limits with their derived flags set from their own fields (and the others kept).
    #[must_use]
    pub fn with_derived_flags(mut self) -> Self {
        self.list_flags = (self.list_flags & !list_flags::DERIVED) | self.derived_flags();
        self
    }

    /// The program's time for a tick count.
    #[must_use]
    #[inline(always)]
    pub const fn clock_ns(&self, jiffies: u64) -> u64 {
        jiffies
            .wrapping_mul(self.clock_mul_ns)
            .wrapping_sub(self.clock_offset_ns)
    }
}

/// One slot of the blocked-source cache: an array the program checks before the per-source
/// table, because an array lookup is inlined by the verifier while a hash lookup is a helper
/// call. A slot holds the last source blocked that hashed to it; a collision
/// only means a miss, and the table decides.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockCacheSlot {
    /// The blocked source, as in [`SourceKey`].
    pub addr: [u8; 16],
    /// When its block ends; zero for an empty slot.
    pub blocked_until_ns: u64,
}
const _: () = assert!(core::mem::size_of::<BlockCacheSlot>() == 24);

/// The blocked-source cache slot of an address: a multiplicative hash of its four 32-bit
/// words. Shared by the program and the daemon (which clears slots on unblock).
#[must_use]
#[inline(always)]
pub const fn block_cache_slot(key: &SourceKey) -> u32 {
    let [w0, w1, w2, w3] = key.halves();
    let mixed = (w0 ^ w1.rotate_left(7) ^ w2.rotate_left(13) ^ w3.rotate_left(19))
        .wrapping_mul(0x9E37_79B1);
    (mixed >> 16) & (BLOCK_CACHE_SLOTS - 1)
}

/// What the clock program records: the tick counter and `CLOCK_MONOTONIC` at one instant.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockSample {
    /// `bpf_jiffies64()`.
    pub jiffies: u64,
    /// `bpf_ktime_get_ns()`.
    pub monotonic_ns: u64,
}
const _: () = assert!(core::mem::size_of::<ClockSample>() == 16);

/// Why a packet was passed or dropped: the index into the per-CPU counter array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Parsed, under every limit: passed.
    Passed = 0,
    /// Dropped: this packet took its source over a limit (the source is now blocked).
    DroppedRateLimit = 1,
    /// Dropped: its source is blocked.
    DroppedBlocked = 2,
    /// Passed: headers truncated or inconsistent, or beyond what the parser walks.
    Malformed = 3,
    /// Passed: neither IPv4 nor IPv6 (ARP, LLDP, ...).
    NonIp = 4,
    /// Passed in monitor mode; enforce mode would have dropped it for its rate.
    MonitorRateLimit = 5,
    /// Passed in monitor mode; enforce mode would have dropped it as blocked.
    MonitorBlocked = 6,
    /// Passed: the source could not be added to the table (insert failed).
    TableFull = 7,
    /// Passed: the source is on the allowlist, which wins over every limit and list.
    Allowed = 8,
    /// Dropped: the source is on the denylist.
    DroppedDenied = 9,
    /// Passed in monitor mode; enforce mode would have dropped it as denylisted.
    MonitorDenied = 10,
    /// Dropped: an untracked source's packet over its class's ceiling.
    DroppedCeiling = 11,
    /// Passed in monitor mode; enforce mode would have dropped it for its class's ceiling.
    MonitorCeiling = 12,
    /// Dropped: its source's prefix (e.g. its /24) is over the prefix's limit.
    DroppedPrefixLimit = 13,
    /// Passed in monitor mode; enforce mode would have dropped it for its prefix's limit.
    MonitorPrefixLimit = 14,
    /// Sent back (`XDP_TX`): a SYN of an untracked source to a protected port, answered
    /// with a cookie SYN-ACK.
    SynCookieSent = 15,
    /// Passed: an ACK that returned a valid cookie; its source is admitted to the table.
    CookieVerified = 16,
    /// Passed in monitor mode; enforce mode would have answered it with a cookie SYN-ACK.
    MonitorSynCookie = 17,
    /// Dropped by a `drop` rule.
    DroppedRule = 18,
    /// Passed in monitor mode; enforce mode would have dropped it by a `drop` rule.
    MonitorRule = 19,
    /// Dropped over a `rate-limit` or `per-source` rule's rate.
    DroppedRuleRate = 20,
    /// Passed in monitor mode; enforce mode would have dropped it over a rule's rate.
    MonitorRuleRate = 21,
    /// Passed by an `allow` rule, which wins over everything after it.
    AllowedRule = 22,
}

/// Number of counter slots: room for more outcomes without changing the map's size.
pub const COUNTER_SLOTS: u32 = 32;

impl Outcome {
    /// Every outcome, in index order.
    pub const ALL: [Self; 23] = [
        Self::Passed,
        Self::DroppedRateLimit,
        Self::DroppedBlocked,
        Self::Malformed,
        Self::NonIp,
        Self::MonitorRateLimit,
        Self::MonitorBlocked,
        Self::TableFull,
        Self::Allowed,
        Self::DroppedDenied,
        Self::MonitorDenied,
        Self::DroppedCeiling,
        Self::MonitorCeiling,
        Self::DroppedPrefixLimit,
        Self::MonitorPrefixLimit,
        Self::SynCookieSent,
        Self::CookieVerified,
        Self::MonitorSynCookie,
        Self::DroppedRule,
        Self::MonitorRule,
        Self::DroppedRuleRate,
        Self::MonitorRuleRate,
        Self::AllowedRule,
    ];

    /// A stable `snake_case` name for output and metrics.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::DroppedRateLimit => "dropped_rate_limit",
            Self::DroppedBlocked => "dropped_blocked",
            Self::Malformed => "malformed",
            Self::NonIp => "non_ip",
            Self::MonitorRateLimit => "monitor_rate_limit",
            Self::MonitorBlocked => "monitor_blocked",
            Self::TableFull => "table_full",
            Self::Allowed => "allowed",
            Self::DroppedDenied => "dropped_denied",
            Self::MonitorDenied => "monitor_denied",
            Self::DroppedCeiling => "dropped_ceiling",
            Self::MonitorCeiling => "monitor_ceiling",
            Self::DroppedPrefixLimit => "dropped_prefix_limit",
            Self::MonitorPrefixLimit => "monitor_prefix_limit",
            Self::SynCookieSent => "syn_cookie_sent",
            Self::CookieVerified => "cookie_verified",
            Self::MonitorSynCookie => "monitor_syn_cookie",
            Self::DroppedRule => "dropped_rule",
            Self::MonitorRule => "monitor_rule",
            Self::DroppedRuleRate => "dropped_rule_rate",
            Self::MonitorRuleRate => "monitor_rule_rate",
            Self::AllowedRule => "allowed_rule",
        }
    }

    /// Whether the packet was answered in place and sent back out (`XDP_TX`).
    #[must_use]
    pub const fn is_sent_back(self) -> bool {
        matches!(self, Self::SynCookieSent)
    }

    /// Whether the packet was dropped.
    #[must_use]
    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            Self::DroppedRateLimit
                | Self::DroppedBlocked
                | Self::DroppedDenied
                | Self::DroppedCeiling
                | Self::DroppedPrefixLimit
                | Self::DroppedRule
                | Self::DroppedRuleRate
        )
    }
}

impl TryFrom<u32> for Outcome {
    type Error = u32;
    fn try_from(value: u32) -> Result<Self, u32> {
        Self::ALL
            .iter()
            .copied()
            .find(|o| *o as u32 == value)
            .ok_or(value)
    }
}

/// Protocol classes: each has its own per-source limit, ceiling and monitor switch, and
/// its own row of counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// TCP with SYN and without ACK: connection attempts.
    Syn = 0,
    /// Every other TCP segment.
    Tcp = 1,
    /// UDP.
    Udp = 2,
    /// `ICMP` and `ICMPv6`.
    Icmp = 3,
    /// IPv4 and IPv6 fragments, first or not.
    Fragment = 4,
    /// Everything else, including non-IP frames and frames too short to classify.
    Other = 5,
}

/// Number of classes.
pub const CLASSES: usize = 6;

impl Class {
    /// Every class, in index order.
    pub const ALL: [Self; CLASSES] = [
        Self::Syn,
        Self::Tcp,
        Self::Udp,
        Self::Icmp,
        Self::Fragment,
        Self::Other,
    ];

    /// A stable name for the CLI, output and metrics.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Syn => "syn",
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::Fragment => "fragment",
            Self::Other => "other",
        }
    }

    /// The class of index `index` (`Class::Other` for one out of range), by a match: for
    /// the XDP program, which reads classes back from memory as numbers.
    #[must_use]
    #[inline(always)]
    pub const fn from_index(index: u32) -> Self {
        match index {
            0 => Self::Syn,
            1 => Self::Tcp,
            2 => Self::Udp,
            3 => Self::Icmp,
            4 => Self::Fragment,
            _ => Self::Other,
        }
    }

    /// The index of the counter of `outcome` for this class in `FW_COUNTERS`.
    #[must_use]
    #[inline(always)]
    pub const fn counter_index(self, outcome: Outcome) -> u32 {
        self as u32 * COUNTER_SLOTS + outcome as u32
    }
}

impl TryFrom<u32> for Class {
    type Error = u32;
    fn try_from(value: u32) -> Result<Self, u32> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| *c as u32 == value)
            .ok_or(value)
    }
}

/// Number of entries of `FW_COUNTERS`: a row of [`COUNTER_SLOTS`] outcomes per class.
#[expect(clippy::cast_possible_truncation, reason = "CLASSES is 6")]
pub const COUNTER_ENTRIES: u32 = CLASSES as u32 * COUNTER_SLOTS;

/// A rate limit as the data path applies it: GCRA cost per unit and burst window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateParams {
    /// Nanoseconds per unit × 2^[`COST_SHIFT`]; zero: no limit.
    pub cost_fp: u64,
    /// How far the TAT may run ahead of now.
    pub window_ns: u64,
}
const _: () = assert!(core::mem::size_of::<RateParams>() == 16);

pub mod xdp_action {
    //! The verdicts an XDP program returns (`enum xdp_action`), for the daemon, the tests and
    //! the benchmarks, which have no kernel headers; the XDP program takes them from
    //! `aya_ebpf::bindings`, and checks at compile time that the two agree.
    /// An error: the frame is dropped and a trace point fires.
    pub const ABORTED: u32 = 0;
    /// Dropped.
    pub const DROP: u32 = 1;
    /// Passed on to the stack.
    pub const PASS: u32 = 2;
    /// Sent back out of the interface it came in on.
    pub const TX: u32 = 3;
    /// Sent elsewhere (`bpf_redirect`).
    pub const REDIRECT: u32 = 4;
}

/// Bits of [`LimitsConfig::list_flags`]: which lists hold entries (the program skips empty
/// tries, since an LPM lookup is a helper call), whether the denylist only monitors, and
/// which optional stages have limits set (so that a packet reads one word, not the
/// parameters of every class and scope, to learn that it can skip them).
pub mod list_flags {
    /// `FW_ALLOW_V4` holds entries.
    pub const ALLOW_V4: u32 = 1;
    /// `FW_ALLOW_V6` holds entries.
    pub const ALLOW_V6: u32 = 1 << 1;
    /// `FW_DENY_V4` holds entries.
    pub const DENY_V4: u32 = 1 << 2;
    /// `FW_DENY_V6` holds entries.
    pub const DENY_V6: u32 = 1 << 3;
    /// Denylist hits are counted, not dropped.
    pub const DENY_MONITOR: u32 = 1 << 4;
    /// A prefix scope has a limit (some [`PrefixLimits::active`](crate::PrefixLimits) is
    /// set): the program charges prefixes.
    pub const PREFIX_LIMITS: u32 = 1 << 5;
    /// A per-source class limit is set (some `class_packets` cost is non-zero): the program
    /// keeps per-class TATs in `FW_CLASS_STATE`.
    pub const CLASS_LIMITS: u32 = 1 << 6;
    /// The bits above that follow from the limits themselves, not from the lists.
    pub const DERIVED: u32 = PREFIX_LIMITS | CLASS_LIMITS;
    /// Some port is protected (`FW_SYN_PORTS` is not empty): the program answers SYNs of
    /// untracked sources to protected ports with cookies. Set by the daemon with the ports.
    pub const SYN_PROTECT: u32 = 1 << 7;
    /// Rules are loaded: the program tests the rules' index for each packet. Set by the
    /// daemon with the rules.
    pub const RULES: u32 = 1 << 8;
}

/// Prefix scopes: the levels at which sources are also limited as groups, so that a
/// source rotating addresses inside its prefix is limited as one.
pub mod prefix_scopes {
    /// IPv4 prefixes (default /24).
    pub const V4: usize = 0;
    /// IPv6 prefixes, narrow (default /64: one customer's network).
    pub const V6: usize = 1;
    /// IPv6 prefixes, wide (default /48: one site).
    pub const V6_WIDE: usize = 2;
}
/// Number of prefix scopes.
pub const PREFIX_SCOPES: usize = 3;

/// Default capacity of the prefix table.
pub const DEFAULT_MAX_PREFIXES: u32 = 1 << 18;

/// The limits of one prefix scope.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixLimits {
    /// Prefix length within the family (IPv4: 0..=32, IPv6: 0..=128).
    pub len: u32,
    /// Non-zero when any limit below is set: the program skips inactive scopes.
    pub active: u32,
    /// Packets per second of the whole prefix.
    pub packets: RateParams,
    /// Bytes per second of the whole prefix.
    pub bytes: RateParams,
    /// Packets per second of the whole prefix, by class.
    pub class_packets: [RateParams; CLASSES],
}
const _: () = assert!(core::mem::size_of::<PrefixLimits>() == 136);

/// Key of the prefix table: the scope and the source address masked to the scope's length
/// (IPv4 mapped, wire order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PrefixKey {
    /// One of [`prefix_scopes`].
    pub scope: u32,
    /// Prefix length within the family.
    pub len: u32,
    /// The masked address.
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<PrefixKey>() == 24);

/// GCRA state of one prefix (as [`SourceState`], without blocks: a prefix over its limit
/// loses its excess packets, its sources are not blocked for it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixState {
    /// Packet-rate TAT.
    pub packet_tat_ns: u64,
    /// Byte-rate TAT.
    pub byte_tat_ns: u64,
    /// Per-class packet-rate TATs.
    pub class_tat_ns: [u64; CLASSES],
}
const _: () = assert!(core::mem::size_of::<PrefixState>() == 64);

/// Slots of `FW_TABLE_STATS`.
pub const TABLE_STAT_SLOTS: u32 = 3;
/// `FW_TABLE_STATS` slot: sources inserted into the table.
pub const TABLE_INSERTS: u32 = 0;
/// `FW_TABLE_STATS` slot: inserts refused (every slot of the source's set held a blocked
/// source).
pub const TABLE_INSERT_FAILURES: u32 = 1;
/// `FW_TABLE_STATS` slot: inserts that took the slot of another source (evictions).
pub const TABLE_EVICTIONS: u32 = 2;

/// Width of each row of the admission sketch (a power of two).
pub const SKETCH_WIDTH: usize = 4096;
/// Rows of the admission sketch.
pub const SKETCH_ROWS: u32 = 2;
/// Sketch counters carry the epoch they count in, in their top 8 bits: a counter from an
/// older epoch reads as zero, so the sketch never needs clearing.
pub const SKETCH_EPOCH_SHIFT: u32 = 30;

/// One row of the per-CPU admission sketch (a count-min sketch of recent packets by source).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SketchRow {
    /// `epoch << 24 | count` per bucket.
    pub buckets: [u32; SKETCH_WIDTH],
}
const _: () = assert!(core::mem::size_of::<SketchRow>() == 4 * SKETCH_WIDTH);

/// The sketch bucket of an address in row `row`: a multiplicative hash with a per-row
/// constant.
#[must_use]
#[inline(always)]
pub const fn sketch_bucket(key: &SourceKey, row: u32) -> usize {
    let [w0, w1, w2, w3] = key.halves();
    let seed = if row == 0 { 0x85EB_CA6B } else { 0xC2B2_AE35 };
    let mixed =
        (w0.rotate_left(3) ^ w1.rotate_left(11) ^ w2.rotate_left(17) ^ w3).wrapping_mul(seed) ^ row;
    ((mixed ^ (mixed >> 15)).wrapping_mul(0x2C1B_3C6D) >> 12) as usize & (SKETCH_WIDTH - 1)
}

/// Bits of the tracked-source filter (`FW_TRACKED`), as a power of two: 2^21 bits, 256 KiB,
/// small enough to stay in a core's L2 cache where the source table's buckets (16 MiB at a
/// million sources) do not; the README's Performance section has the sizes measured. The
/// price of fewer bits: the fuller the table, the more bits are set, and that share of new
/// sources' packets takes the table lookup after all.
pub const TRACKED_BITS_LOG2: u32 = 21;
/// 64-bit words in one chunk (one array element) of the filter: 4 KiB.
pub const TRACKED_CHUNK_WORDS: usize = 512;
/// Bits in one chunk.
const TRACKED_CHUNK_BITS: u32 = 64 * 512;
const _: () = assert!(TRACKED_CHUNK_BITS as usize == 64 * TRACKED_CHUNK_WORDS);
/// Chunks (array elements) of the filter.
pub const TRACKED_CHUNKS: u32 = (1 << TRACKED_BITS_LOG2) / TRACKED_CHUNK_BITS;

/// One chunk of the tracked-source filter.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackedChunk {
    /// Bits, one per hash value; set: a source with that hash may be in the table.
    pub words: [u64; TRACKED_CHUNK_WORDS],
}
const _: () = assert!(core::mem::size_of::<TrackedChunk>() == 4096);

/// Where an address's bit is in the tracked-source filter: (chunk, word, mask). The same
/// multiplicative mixing as [`sketch_bucket`] with its own constant, keeping the top
/// [`TRACKED_BITS_LOG2`] bits.
#[must_use]
#[inline(always)]
pub const fn tracked_bit(key: &SourceKey) -> (u32, usize, u64) {
    let [w0, w1, w2, w3] = key.halves();
    let mixed = (w0.rotate_left(5) ^ w1.rotate_left(13) ^ w2.rotate_left(23) ^ w3)
        .wrapping_mul(0x27D4_EB2F);
    let bit = (mixed ^ (mixed >> 16)).wrapping_mul(0x165_667B1) >> (32 - TRACKED_BITS_LOG2);
    (
        bit / TRACKED_CHUNK_BITS,
        (bit / 64) as usize % TRACKED_CHUNK_WORDS,
        1u64 << (bit % 64),
    )
}

/// Packets and bytes of one outcome on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes (frame length as seen by XDP).
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Counter>() == 16);

/// Which limit a source exceeded.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// Packets per second.
    Packets = 0,
    /// Bytes (bits) per second.
    Bytes = 1,
    /// Packets per second of one class ([`BlockEvent::class`]).
    ClassPackets = 2,
}

impl TryFrom<u32> for LimitKind {
    type Error = u32;
    fn try_from(value: u32) -> Result<Self, u32> {
        match value {
            0 => Ok(Self::Packets),
            1 => Ok(Self::Bytes),
            2 => Ok(Self::ClassPackets),
            other => Err(other),
        }
    }
}

/// Sent through the ring buffer when a source becomes blocked. One per block: the CPU that
/// swaps `blocked_until_ns` from "not blocked" sends it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockEvent {
    /// The source, as in [`SourceKey`].
    pub addr: [u8; 16],
    /// [`LimitKind`] as `u32`.
    pub limit_kind: u32,
    /// [`Mode`] at the time of the block.
    pub mode: u32,
    /// When the block ends.
    pub blocked_until_ns: u64,
    /// When the block started.
    pub now_ns: u64,
    /// The source's reporting window at the time of the block, for the rate it was seen at.
    pub window_start_ns: u64,
    /// Packets in that window.
    pub window_packets: u64,
    /// Bytes in that window.
    pub window_bytes: u64,
    /// Packets of the window before.
    pub prev_window_packets: u64,
    /// Bytes of the window before.
    pub prev_window_bytes: u64,
    /// The [`Class`] of the packet that crossed the limit.
    pub class: u32,
    /// [`EventType`] as `u32`.
    pub event_type: u32,
}

/// What a ring buffer record reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// A source was blocked (all fields).
    Block = 0,
    /// An allowlist entry matched the source in `addr` for the `window_packets`-th time;
    /// sent at powers of two, so an entry sends a few dozen events in its life, not one
    /// per packet.
    AllowHit = 1,
    /// As `AllowHit`, for the denylist.
    DenyHit = 2,
}

impl TryFrom<u32> for EventType {
    type Error = u32;
    fn try_from(value: u32) -> Result<Self, u32> {
        match value {
            0 => Ok(Self::Block),
            1 => Ok(Self::AllowHit),
            2 => Ok(Self::DenyHit),
            other => Err(other),
        }
    }
}
const _: () = assert!(core::mem::size_of::<BlockEvent>() == 88);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], Copy, made of integers and byte arrays, with
    // explicit padding: every bit pattern is a valid value.
    unsafe impl aya::Pod for super::KnownSourceKey {}
    unsafe impl aya::Pod for super::SourceKey {}
    unsafe impl aya::Pod for super::SourceState {}
    unsafe impl aya::Pod for super::SourceSlot {}
    unsafe impl aya::Pod for super::ClassState {}
    unsafe impl aya::Pod for super::LimitsConfig {}
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::BlockEvent {}
    unsafe impl aya::Pod for super::BlockCacheSlot {}
    unsafe impl aya::Pod for super::ClockSample {}
    unsafe impl aya::Pod for super::ListEntry {}
    unsafe impl aya::Pod for super::RateParams {}
    unsafe impl aya::Pod for super::SketchRow {}
    unsafe impl aya::Pod for super::PrefixKey {}
    unsafe impl aya::Pod for super::PrefixState {}
    unsafe impl aya::Pod for super::PrefixLimits {}
    unsafe impl aya::Pod for super::TrackedChunk {}
    unsafe impl aya::Pod for super::SynProtectConfig {}
    unsafe impl aya::Pod for super::RuleEntry {}
    unsafe impl aya::Pod for super::RuleBucketKey {}
    unsafe impl aya::Pod for super::RuleBucket {}
    unsafe impl aya::Pod for super::RuleCounters {}
    unsafe impl aya::Pod for super::RuleRateState {}
    unsafe impl aya::Pod for super::RuleSourceKey {}
    unsafe impl aya::Pod for super::RuleSourceState {}
    unsafe impl aya::Pod for super::RuleRecord {}
    unsafe impl aya::Pod for super::PacketSample {}
    unsafe impl aya::Pod for super::SampleBudget {}
    unsafe impl aya::Pod for super::SampleStride {}
}

/// Default capacity of each list (allow and deny, IPv4 and IPv6), in prefixes.
pub const DEFAULT_LIST_CAPACITY: u32 = 131_072;

/// The value of an allowlist or denylist entry (an LPM trie keyed by prefix length and the
/// prefix in wire order, `aya`'s `lpm_trie::Key<[u8; 4]>` or `Key<[u8; 16]>`). Written by
/// the daemon (insert, expiry); the program adds to the hit counters with atomic adds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListEntry {
    /// Packets that matched this entry.
    pub hit_packets: u64,
    /// Bytes of those packets.
    pub hit_bytes: u64,
    /// When the entry stops applying (program clock); zero: never. The program ignores an
    /// expired entry; the daemon deletes it.
    pub expires_ns: u64,
}
const _: () = assert!(core::mem::size_of::<ListEntry>() == 24);

/// Name under which `cargo xtask setup` links the eBPF toolchain into rustup, and under which
/// `filter-user/build.rs` uses it. A build concern rather than a kernel one, kept here so the
/// two sides cannot disagree.
pub const BPF_TOOLCHAIN: &str = "floodwall-bpf";

// `Outcome::ALL` and `Class::ALL` list every variant in index order (their counters and
// names are found by index), and the outcomes fit a class's row of counter slots. A variant
// added to an enum must be added to its `ALL` (the exhaustive `name()` matches point there).
const _: () = {
    let mut i = 0;
    while i < Outcome::ALL.len() {
        assert!(
            Outcome::ALL[i] as usize == i,
            "Outcome::ALL must be in index order"
        );
        i += 1;
    }
    assert!(Outcome::ALL.len() <= COUNTER_SLOTS as usize);
    let mut i = 0;
    while i < CLASSES {
        assert!(
            Class::ALL[i] as usize == i,
            "Class::ALL must be in index order"
        );
        i += 1;
    }
    assert!(
        core::mem::size_of::<BlockEvent>().is_multiple_of(8),
        "ring buffer records are 8-aligned"
    );
};

#[cfg(test)]
mod layout_tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "one table of every shared size and offset"
    )]
    fn a_layout_change_bumps_the_version() {
        // When this fails, a shared type changed: bump MAP_LAYOUT_VERSION (pinned state of the
        // old layout must not be adopted) and record the new sizes and offsets here.
        let sizes = [
            size_of::<SourceKey>(),
            size_of::<SourceState>(),
            size_of::<SourceSlot>(),
            SOURCE_WAYS as usize,
            size_of::<ClassState>(),
            size_of::<LimitsConfig>(),
            size_of::<BlockCacheSlot>(),
            size_of::<PrefixKey>(),
            size_of::<PrefixState>(),
            size_of::<PrefixLimits>(),
            size_of::<SketchRow>(),
            size_of::<Counter>(),
            size_of::<BlockEvent>(),
            size_of::<ListEntry>(),
            BLOCK_CACHE_SLOTS as usize,
            SKETCH_ROWS as usize,
            COUNTER_ENTRIES as usize,
            size_of::<TrackedChunk>(),
            TRACKED_CHUNKS as usize,
            STAGE_SLOTS as usize,
            map_names::PINNED.len(),
            size_of::<RuleEntry>(),
            size_of::<RuleBucketKey>(),
            size_of::<RuleBucket>(),
            size_of::<RuleCounters>(),
            size_of::<RuleRateState>(),
            size_of::<RuleSourceKey>(),
            size_of::<RuleSourceState>(),
            size_of::<RuleRecord>(),
            size_of::<KnownSourceKey>(),
            RULE_INDEX_WORDS as usize,
            MAX_RULES as usize,
            MAX_RULE_ENTRIES as usize,
            BUCKET_ENTRIES,
            RULE_BUCKET_SLOTS as usize,
            RULE_BUCKET_POSITIONS as usize,
        ];
        let source_state = [
            offset_of!(SourceState, packet_tat_ns),
            offset_of!(SourceState, byte_tat_ns),
            offset_of!(SourceState, blocked_until_ns),
            offset_of!(SourceState, window_start_ns),
            offset_of!(SourceState, window_bytes),
            offset_of!(SourceState, prev_window_bytes),
            offset_of!(SourceState, window_packets),
            offset_of!(SourceState, prev_window_packets),
        ];
        let limits = [
            offset_of!(LimitsConfig, clock_mul_ns),
            offset_of!(LimitsConfig, clock_offset_ns),
            offset_of!(LimitsConfig, list_flags),
            offset_of!(LimitsConfig, mode),
            offset_of!(LimitsConfig, packet_cost_fp),
            offset_of!(LimitsConfig, packet_window_ns),
            offset_of!(LimitsConfig, byte_cost_fp),
            offset_of!(LimitsConfig, byte_window_ns),
            offset_of!(LimitsConfig, block_ns),
            offset_of!(LimitsConfig, monitor_classes),
            offset_of!(LimitsConfig, admit_packets),
            offset_of!(LimitsConfig, test_now_ns),
            offset_of!(LimitsConfig, admit_rate),
            offset_of!(LimitsConfig, class_packets),
            offset_of!(LimitsConfig, ceilings),
            offset_of!(LimitsConfig, prefixes),
            offset_of!(LimitsConfig, syn),
        ];
        let others = [
            offset_of!(RuleEntry, packet_rate),
            offset_of!(RuleEntry, order),
            offset_of!(RuleEntry, sport),
            offset_of!(RuleEntry, proto),
            offset_of!(RuleEntry, payload_len),
            offset_of!(RuleEntry, source_known),
            offset_of!(KnownSourceKey, port),
            offset_of!(BlockCacheSlot, blocked_until_ns),
            offset_of!(PrefixKey, addr),
            offset_of!(PrefixLimits, packets),
            offset_of!(PrefixLimits, class_packets),
            offset_of!(BlockEvent, blocked_until_ns),
            offset_of!(BlockEvent, class),
            offset_of!(ListEntry, expires_ns),
            offset_of!(SynProtectConfig, verified_rate),
            offset_of!(SynProtectConfig, mss_v4),
            offset_of!(SynProtectConfig, mss_v6),
            offset_of!(SynProtectConfig, ttl),
            offset_of!(SynProtectConfig, hop_limit),
        ];
        // Layout 10: the source table an array of slots in sets (layout 9 had an LRU hash).
        // Layout 9: the rules' buckets an array in two halves, found through
        // `FW_RULE_BUCKET_AT` (layout 8 had them in a hash). Layout 8 pinned 27 maps until
        // `FW_STAGES` left the set, which did not bump the version (a build that does not
        // pin it removes that pin, `pin::PinDir::commit_stages`).
        assert_eq!(
            (MAP_LAYOUT_VERSION, sizes, source_state, limits, others),
            (
                10,
                [
                    16, 48, 64, 4, 48, 736, 24, 24, 64, 136, 16384, 16, 88, 24, 65536, 2, 192,
                    4096, 64, 3, 27, 184, 4, 36, 48, 16, 24, 24, 512, 20, 4101, 4096, 8192, 16,
                    16384, 262_464
                ],
                [0, 8, 16, 24, 32, 36, 40, 44],
                [
                    0, 8, 16, 20, 24, 32, 40, 48, 56, 64, 68, 72, 80, 96, 192, 288, 696
                ],
                [
                    96, 136, 148, 162, 171, 172, 16, 16, 8, 8, 40, 24, 80, 16, 16, 32, 34, 36, 37
                ],
            ),
            "record the sizes and offsets, and bump MAP_LAYOUT_VERSION"
        );
    }

    /// Golden values: pinned state (the block cache, the tracked filter, the sketch) is
    /// addressed by these hashes, so a new build must compute the same ones as the build
    /// that pinned it. Computed with the byte-wise versions of layout 2.
    #[test]
    fn the_hashes_of_pinned_state_do_not_change() {
        let v4 = SourceKey::from_ipv4([198, 18, 0, 10]);
        let v6 = SourceKey::from_ipv6([0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        let ones = SourceKey::from_ipv6([0xff; 16]);
        let zero = SourceKey::default();
        let hashes = |k: &SourceKey| {
            (
                block_cache_slot(k),
                sketch_bucket(k, 0),
                sketch_bucket(k, 1),
                tracked_bit(k),
            )
        };
        assert_eq!(hashes(&v4), (7935, 2020, 2409, (28, 178, 8_388_608)));
        assert_eq!(hashes(&v6), (7489, 655, 3974, (49, 29, 16_384)));
        assert_eq!(hashes(&ones), (0, 0, 435, (0, 0, 1)));
        assert_eq!(hashes(&zero), (0, 0, 435, (0, 0, 1)));
        let sets = source_sets(DEFAULT_MAX_SOURCES);
        assert_eq!(
            [v4, v6, ones, zero].map(|k| source_set(&k, sets)),
            [201_348, 256_912, 0, 0]
        );
    }

    /// The sets of many sources stay in range for any number of sets, and spread over them:
    /// no set of a table for 16,384 sources gets more than twice its share of 4,096
    /// consecutive addresses (a /20 of IPv4, or of IPv6's last bits).
    #[test]
    fn sources_spread_over_the_sets() {
        for sets in [1, 3, 1_000, source_sets(DEFAULT_MAX_SOURCES)] {
            for i in 0..2_000u32 {
                assert!(source_set(&SourceKey::from_ipv4(i.to_be_bytes()), sets) < sets);
            }
        }
        assert_eq!(source_sets(4_097), 1_025, "rounded up to whole sets");
        let sets = source_sets(1 << 14);
        for family in [false, true] {
            let mut per_set = [0u32; 1 << 12];
            for i in 0..(1u32 << 12) {
                let [_, _, c, d] = i.to_be_bytes();
                let key = if family {
                    SourceKey::from_ipv6([0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, c, d])
                } else {
                    SourceKey::from_ipv4([198, 18, c, d])
                };
                per_set[source_set(&key, sets) as usize] += 1;
            }
            let fullest = per_set.iter().max().copied().unwrap_or(0);
            assert!(fullest <= 2 * SOURCE_WAYS, "{fullest} sources in one set");
        }
    }

    #[test]
    fn keys_round_trip_addresses_of_both_families() {
        for addr in [
            core::net::IpAddr::from([198, 18, 0, 7]),
            core::net::IpAddr::from([0x2001, 2, 0, 0, 0, 0, 0, 7]),
            core::net::IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
        ] {
            assert_eq!(SourceKey::from_ip(addr).ip(), addr, "{addr}");
        }
        assert_eq!(
            SourceKey::from_ip(core::net::IpAddr::from([198, 18, 0, 7])).addr[10..],
            [0xff, 0xff, 198, 18, 0, 7],
            "IPv4 keys are IPv4-mapped, wire order"
        );
    }

    #[test]
    fn keys_from_words_are_keys_from_bytes() {
        let octets = [198, 18, 0, 10];
        assert_eq!(
            SourceKey::from_ipv4_word(u32::from_ne_bytes(octets)),
            SourceKey::from_ipv4(octets)
        );
        let key = SourceKey::from_ipv6([0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        assert_eq!(SourceKey::from_words(key.words()), key);
    }

    #[test]
    fn masking_keeps_the_first_bits_in_wire_order() {
        // The plain byte-by-byte definition, as the oracle.
        let reference = |addr: &[u8; 16], bits: u32| {
            let mut out = [0u8; 16];
            for (i, (out, byte)) in out.iter_mut().zip(addr).enumerate() {
                let start = u32::try_from(i).expect("small") * 8;
                *out = if bits >= start + 8 {
                    *byte
                } else if bits > start {
                    byte & !(0xffu8 >> (bits - start))
                } else {
                    0
                };
            }
            out
        };
        for key in [
            SourceKey::from_ipv4([198, 18, 0, 10]),
            SourceKey::from_ipv6([0xff; 16]),
            SourceKey::from_ipv6([
                0x20, 1, 0, 2, 0xab, 0xcd, 0, 0, 0, 0, 0, 0, 0, 0x12, 0, 0x10,
            ]),
        ] {
            for bits in 0..=128 {
                assert_eq!(
                    key.masked(bits).addr,
                    reference(&key.addr, bits),
                    "{key:?} masked to {bits} bits"
                );
            }
        }
    }

    #[test]
    fn derived_flags_follow_the_limits() {
        let mut limits = LimitsConfig {
            list_flags: list_flags::ALLOW_V4 | list_flags::PREFIX_LIMITS,
            ..LimitsConfig::default()
        };
        assert_eq!(limits.with_derived_flags().list_flags, list_flags::ALLOW_V4);
        limits.prefixes[prefix_scopes::V6].active = 1;
        limits.class_packets[Class::Syn as usize].cost_fp = 1;
        assert_eq!(
            limits.with_derived_flags().list_flags,
            list_flags::ALLOW_V4 | list_flags::PREFIX_LIMITS | list_flags::CLASS_LIMITS
        );
    }
}
