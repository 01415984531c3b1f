//! Every map of the program. Names and value types come from `filter_common`, so the daemon
//! and the object agree on them; the ELF contract test checks the built object.

use aya_ebpf::{
    Global,
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use filter_common::{
    AFTER_RULES_STAGE, BLOCK_CACHE_SLOTS, BlockCacheSlot, BlockEvent, CEILING_SLOTS,
    COUNTER_ENTRIES, Class, ClassState, ClockSample, Counter, DEFAULT_LIST_CAPACITY,
    DEFAULT_MAX_PREFIXES, DEFAULT_MAX_SOURCES, EVENTS_BYTES, KnownSourceKey, LimitsConfig,
    ListEntry, MAX_KNOWN_SOURCES, MAX_RULE_ENTRIES, MAX_RULE_SOURCES, MAX_RULES, Outcome,
    PrefixKey, PrefixState, RULE_BUCKET_POSITIONS, RULE_BUCKET_SLOTS, RULE_INDEX_WORDS,
    RULES_STAGE, RuleBucket, RuleCounters, RuleEntry, RuleRateState, RuleRecord, RuleSourceKey,
    RuleSourceState, SAMPLES_BYTES, SERVICE_SLOTS, SKETCH_ROWS, SOURCE_WAYS, STAGE_SLOTS,
    SYN_COOKIE_STAGE, SYN_PORT_WORDS, SYN_STAT_SLOTS, SampleBudget, SampleStride, SketchRow,
    SourceKey, SourceSlot, SynStat, TABLE_STAT_SLOTS, TRACKED_CHUNKS, TrackedChunk,
};

/// The source table: each source's state in a slot of its set (`filter_common::source_set`,
/// `SOURCE_WAYS` slots a set; `table`). Written by this program, which inserts a source into
/// the least recently active slot of its set and then updates its state in place; read by
/// the daemon through a mapping of the array, which it also writes (whole slots) to remove
/// sources. An array, not a hash: its lookups are inlined by the verifier, where a hash
/// lookup is a call into the kernel and two more inside it, the most expensive part of a
/// tracked packet (the README's Performance section has the numbers). The daemon sets the
/// capacity at load time (`FW_SOURCE_SETS` sets).
#[map(name = "FW_SOURCES")]
pub static FW_SOURCES: Array<SourceSlot> =
    Array::with_max_entries(DEFAULT_MAX_SOURCES, BPF_F_MMAPABLE);

/// The number of sets of `FW_SOURCES` (`filter_common::SOURCE_SETS_GLOBAL`), set at load time
/// with its capacity: a constant to the verifier.
#[unsafe(no_mangle)]
static FW_SOURCE_SETS: Global<u32> = Global::new(DEFAULT_MAX_SOURCES / SOURCE_WAYS);

/// The number of sets of the source table.
#[inline(always)]
pub fn source_sets() -> u32 {
    FW_SOURCE_SETS.load()
}

/// Per-class TATs of tracked sources, only while a per-source class limit is set
/// (`list_flags::CLASS_LIMITS`). Key: as `FW_SOURCES`. Written by this program (created with
/// a source's first classed packet, in place after that); the daemon deletes entries that
/// are idle (every TAT in the past, which reads the same as no entry) or whose source has
/// left `FW_SOURCES`. Not preallocated: a configuration without class limits pays no memory
/// for it. The daemon sets the capacity at load time, equal to `FW_SOURCES`'s.
#[map(name = "FW_CLASS_STATE")]
pub static FW_CLASS_STATE: HashMap<SourceKey, ClassState> =
    HashMap::with_max_entries(DEFAULT_MAX_SOURCES, BPF_F_NO_PREALLOC);

/// Element 0: the limits and mode. Written by the daemon, read here on every packet.
#[map(name = "FW_LIMITS")]
pub static FW_LIMITS: Array<LimitsConfig> = Array::with_max_entries(1, 0);

/// Packets and bytes by class and outcome (`Class::counter_index`), per CPU (no atomics, no
/// shared cache lines); the daemon sums the CPUs.
#[map(name = "FW_COUNTERS")]
pub static FW_COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(COUNTER_ENTRIES, 0);

/// Allowlist, IPv4: key prefix length + prefix in wire order. Written by the daemon; this
/// program adds to the entries' hit counters. The daemon sets the capacity at load time.
#[map(name = "FW_ALLOW_V4")]
pub static FW_ALLOW_V4: LpmTrie<[u8; 4], ListEntry> =
    LpmTrie::with_max_entries(DEFAULT_LIST_CAPACITY, 0);

/// Allowlist, IPv6 (as `FW_ALLOW_V4`).
#[map(name = "FW_ALLOW_V6")]
pub static FW_ALLOW_V6: LpmTrie<[u8; 16], ListEntry> =
    LpmTrie::with_max_entries(DEFAULT_LIST_CAPACITY, 0);

/// Denylist, IPv4 (as `FW_ALLOW_V4`; entries may expire).
#[map(name = "FW_DENY_V4")]
pub static FW_DENY_V4: LpmTrie<[u8; 4], ListEntry> =
    LpmTrie::with_max_entries(DEFAULT_LIST_CAPACITY, 0);

/// Denylist, IPv6.
#[map(name = "FW_DENY_V6")]
pub static FW_DENY_V6: LpmTrie<[u8; 16], ListEntry> =
    LpmTrie::with_max_entries(DEFAULT_LIST_CAPACITY, 0);

/// The admission sketch, per CPU: recent packets of sources not in `FW_SOURCES`, so that
/// only sources that send more than a few packets take a table entry. Read and written by
/// this program only.
#[map(name = "FW_SKETCH")]
pub static FW_SKETCH: PerCpuArray<SketchRow> = PerCpuArray::with_max_entries(SKETCH_ROWS, 0);

/// Per-prefix state (`PrefixKey` → `PrefixState`), for the prefix scopes that have limits.
/// Written by this program in place; LRU, so that new prefixes evict old ones.
#[map(name = "FW_PREFIXES")]
pub static FW_PREFIXES: LruHashMap<PrefixKey, PrefixState> =
    LruHashMap::with_max_entries(DEFAULT_MAX_PREFIXES, 0);

/// Per-CPU counters of the source table: inserts and refused inserts (slots
/// `TABLE_INSERTS`, `TABLE_INSERT_FAILURES`). The daemon shows them in `stats`.
#[map(name = "FW_TABLE_STATS")]
pub static FW_TABLE_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(TABLE_STAT_SLOTS, 0);

/// The tracked-source filter: a bit per hash of the sources that may be in `FW_SOURCES`
/// (see `table`). Set by this program before every insert, never cleared by it; the daemon
/// rebuilds it from the table. A shared array (not per CPU): a source inserted on one CPU
/// must be found on every other.
#[map(name = "FW_TRACKED")]
pub static FW_TRACKED: Array<TrackedChunk> = Array::with_max_entries(TRACKED_CHUNKS, 0);

/// Per-CPU GCRA TATs of this program only: the ceilings by class, for packets of untracked
/// sources, then the admission, SYN-ACK and cookie-admission budgets.
#[map(name = "FW_CEILINGS")]
pub static FW_CEILINGS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CEILING_SLOTS, 0);

/// The protected ports, a bit each (`filter_common::syn_port_bit`). Written by the daemon,
/// read here for SYNs and ACKs of untracked sources while `list_flags::SYN_PROTECT` is set.
#[map(name = "FW_SYN_PORTS")]
pub static FW_SYN_PORTS: Array<u64> = Array::with_max_entries(SYN_PORT_WORDS, 0);

/// Per-CPU counters of the cookie stage by `SynStat`: what it did besides a packet's
/// outcome (why a SYN fell back to the ceiling, ACKs with bad cookies). The daemon sums them.
#[map(name = "FW_SYN_STATS")]
pub static FW_SYN_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(SYN_STAT_SLOTS, 0);

/// Block events for the daemon's log. One per block, so bounded by the number of sources
/// that get blocked; when full, the event is lost and counted in `FW_EVENTS_LOST`.
#[map(name = "FW_EVENTS")]
pub static FW_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// Packet samples for the daemon (`filter_common::PacketSample`), as many as the budget
/// below allows; when full, a sample is left out.
#[map(name = "FW_SAMPLES")]
pub static FW_SAMPLES: RingBuf = RingBuf::with_byte_size(SAMPLES_BYTES, 0);

/// Element 0: samples this CPU may still take, and how they are spread over the packets
/// that are due (see `FW_SAMPLE_STRIDE`); counted down here, refilled by the daemon.
#[map(name = "FW_SAMPLE_BUDGET")]
pub static FW_SAMPLE_BUDGET: PerCpuArray<SampleBudget> = PerCpuArray::with_max_entries(1, 0);

/// Every IP packet judged, by `filter_common::service_slot` of its protocol and destination
/// port, per CPU. Written here once a packet (in the main program, before any tail call);
/// read by the daemon for each service's rate.
#[map(name = "FW_SERVICE_COUNTERS")]
pub static FW_SERVICE_COUNTERS: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(SERVICE_SLOTS, 0);

/// Element 0: events the ring buffer had no room for, per CPU.
#[map(name = "FW_EVENTS_LOST")]
pub static FW_EVENTS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Recently blocked sources by `block_cache_slot(addr)`: checked before `FW_SOURCES`, since
/// an array lookup is inlined where a hash lookup is a helper call. Written here when a
/// source is blocked; the daemon clears a slot when it unblocks its source.
#[map(name = "FW_BLOCK_CACHE")]
pub static FW_BLOCK_CACHE: Array<BlockCacheSlot> = Array::with_max_entries(BLOCK_CACHE_SLOTS, 0);

/// The stages that are programs of their own, by slot (`filter_common::SYN_COOKIE_STAGE`).
/// Written by the daemon at load time; this program tail-calls them.
#[map(name = "FW_STAGES")]
pub static FW_STAGES: ProgramArray = ProgramArray::with_max_entries(STAGE_SLOTS, 0);

/// The SYN-cookie stage's slot in `FW_STAGES` (`filter_common::SYN_COOKIE_STAGE`), kept in
/// writable global data so that the verifier cannot take it for a constant. With a constant
/// slot the JIT compiles a direct tail call, and patches the jump in the running program's
/// code each time the slot is set; a daemon restarted mid-flood sets it while the program
/// runs, and in the 6.12 test VM a CPU running the program hit the patching's int3 and the
/// kernel panicked. A slot read from memory gets the indirect tail call, which follows a
/// slot update through one pointer swap. Never written.
#[unsafe(no_mangle)]
static mut FW_SYN_COOKIE_SLOT: u32 = SYN_COOKIE_STAGE;

/// See `FW_SYN_COOKIE_SLOT`.
#[inline(always)]
pub fn syn_cookie_slot() -> u32 {
    // SAFETY: a read of a global that nothing writes; volatile so that it stays a load.
    unsafe { core::ptr::read_volatile(&raw const FW_SYN_COOKIE_SLOT) }
}

/// The rules' entries (`filter_common::RuleEntry`), by index. Written by the daemon (an
/// entry before any bucket names it); read by the rules stage.
#[map(name = "FW_RULES")]
pub static FW_RULES: Array<RuleEntry> = Array::with_max_entries(MAX_RULE_ENTRIES, 0);

/// The rules' index: each bucket's entries in rule order, in two halves. Written by the
/// daemon (a set into the half nothing points to); read by the rules stage at the slot
/// `FW_RULE_BUCKET_AT` gives. An array, not a hash keyed by the bucket: its lookup the
/// verifier inlines, where a hash's is a call.
#[map(name = "FW_RULE_BUCKETS")]
pub static FW_RULE_BUCKETS: Array<RuleBucket> = Array::with_max_entries(RULE_BUCKET_SLOTS, 0);

/// Each bucket's slot in `FW_RULE_BUCKETS`, at its position
/// (`filter_common::rule_bucket_position`). Written by the daemon (a position before its
/// bit is set); read by the rules stage where the bucket's bit is set.
#[map(name = "FW_RULE_BUCKET_AT")]
pub static FW_RULE_BUCKET_AT: Array<u32> = Array::with_max_entries(RULE_BUCKET_POSITIONS, 0);

/// A bit for each bucket that holds entries (`filter_common::rule_index_bit`). Written by
/// the daemon; read by the main program to skip the rules stage.
#[map(name = "FW_RULE_INDEX")]
pub static FW_RULE_INDEX: Array<u64> = Array::with_max_entries(RULE_INDEX_WORDS, 0);

/// Each rule's counters, per CPU, by rule slot. Written by the rules stage; read (and
/// zeroed for a new rule) by the daemon.
#[map(name = "FW_RULE_STATS")]
pub static FW_RULE_STATS: PerCpuArray<RuleCounters> = PerCpuArray::with_max_entries(MAX_RULES, 0);

/// The TATs of `rate-limit` rules, by rule slot, shared by the CPUs. Written by the rules
/// stage; zeroed for a new rule by the daemon.
#[map(name = "FW_RULE_RATES")]
pub static FW_RULE_RATES: Array<RuleRateState> = Array::with_max_entries(MAX_RULES, 0);

/// Sources under `per-source` rules: their TATs and blocks. Written by the rules stage; the
/// daemon deletes a rule's entries when it removes the rule.
#[map(name = "FW_RULE_SOURCES")]
pub static FW_RULE_SOURCES: LruHashMap<RuleSourceKey, RuleSourceState> =
    LruHashMap::with_max_entries(MAX_RULE_SOURCES, 0);

/// The sources each service's baseline saw, for rules that name `source known|unknown`:
/// key [`KnownSourceKey`] (the address in wire order, IPv4 mapped into IPv6, as a
/// `SourceKey`; the destination port in host order, zero without ports; the protocol),
/// value a `u8`, one. Written by the daemon only; the rules stage reads it. Not
/// preallocated: most daemons hold few.
#[map(name = "FW_KNOWN_SOURCES")]
pub static FW_KNOWN_SOURCES: HashMap<KnownSourceKey, u8> =
    HashMap::with_max_entries(MAX_KNOWN_SOURCES, BPF_F_NO_PREALLOC);

/// This CPU's copy of what the parser found out about the packet being judged. The policy
/// reads it back from here rather than from the parser's registers: a value read from a
/// map is a number the verifier knows nothing about, so the parser's many exits (one for
/// each header layout, each with its own exact offsets and flags) become one state, and the
/// policy is verified once instead of once for each of them.
#[map(name = "FW_PARSED")]
static FW_PARSED: PerCpuArray<Parsed> = PerCpuArray::with_max_entries(1, 0);

/// An element of `FW_PARSED`: what the policy needs of the parser's results, with the
/// class as a number. Not the shape: the rules stage has it from `FW_SHAPE`.
pub struct Parsed {
    pub key: SourceKey,
    pub at: crate::parse::Offsets,
    pub v4: bool,
    pub l4_ok: bool,
    /// Whether the packet is due for a sample (`sample_due`), for the stage that counts it.
    pub sample_due: bool,
    /// Which of the packet's rule buckets hold entries (`rules::keep_shape`).
    pub rule_buckets: u32,
    pub class: u32,
}

/// This CPU's element of `FW_PARSED`.
#[inline(always)]
pub fn parsed() -> Option<*mut Parsed> {
    FW_PARSED.get_ptr_mut(0)
}

/// This CPU's copy of the packet's shape, what rules match on besides the source: written
/// by the main program while there are rules (`rules::keep_shape`), read by the rules
/// stage, which so does not parse the frame again. The program's own: the daemon never
/// reads it.
#[map(name = "FW_SHAPE")]
pub static FW_SHAPE: PerCpuArray<crate::parse::Shape> = PerCpuArray::with_max_entries(1, 0);

/// The daemon's record of its rules, by rule slot; this program never reads it, but it
/// lives here so that it is created, and pinned, with the others.
#[map(name = "FW_RULE_RECORDS")]
pub static FW_RULE_RECORDS: Array<RuleRecord> = Array::with_max_entries(MAX_RULES, 0);

/// The rules stage's slot in `FW_STAGES` (`filter_common::RULES_STAGE`), in writable global
/// data for the reason `FW_SYN_COOKIE_SLOT` is. Never written.
#[unsafe(no_mangle)]
static mut FW_RULES_SLOT: u32 = RULES_STAGE;

/// See `FW_RULES_SLOT`.
#[inline(always)]
pub fn rules_slot() -> u32 {
    // SAFETY: a read of a global that nothing writes; volatile so that it stays a load.
    unsafe { core::ptr::read_volatile(&raw const FW_RULES_SLOT) }
}

/// The after-rules program's slot in `FW_STAGES` (`filter_common::AFTER_RULES_STAGE`), in
/// writable global data for the reason `FW_SYN_COOKIE_SLOT` is. Never written.
#[unsafe(no_mangle)]
static mut FW_AFTER_RULES_SLOT: u32 = AFTER_RULES_STAGE;

/// See `FW_AFTER_RULES_SLOT`.
#[inline(always)]
pub fn after_rules_slot() -> u32 {
    // SAFETY: a read of a global that nothing writes; volatile so that it stays a load.
    unsafe { core::ptr::read_volatile(&raw const FW_AFTER_RULES_SLOT) }
}

/// Element 0: written by the clock program only, read by the daemon to calibrate the clock.
#[map(name = "FW_CLOCK")]
pub static FW_CLOCK: Array<ClockSample> = Array::with_max_entries(1, 0);

/// Non-zero: take "now" from `LimitsConfig::test_now_ns` instead of the kernel clock, so
/// tests can step time. Set only by tests at load time; in production it is zero in a frozen
/// read-only map and the verifier prunes the test branch.
#[unsafe(no_mangle)]
static FW_TEST_CLOCK: Global<u32> = Global::new(0);

/// Non-zero: the kernel has the SYN-cookie stage's helpers (set by the daemon at load
/// time, `filter_common::SYN_COOKIES_GLOBAL`). Zero: the verifier prunes the stage.
#[unsafe(no_mangle)]
static FW_SYN_COOKIES: Global<u32> = Global::new(0);

/// Whether the SYN-cookie stage's code is on (see `FW_SYN_COOKIES`).
#[inline(always)]
pub fn syn_cookies_available() -> bool {
    FW_SYN_COOKIES.load() != 0
}

/// The current limits. `None` only if the array lookup failed, which it cannot for index 0
/// of a one-element array; callers pass the packet then.
#[inline(always)]
pub fn limits() -> Option<&'static LimitsConfig> {
    FW_LIMITS.get(0)
}

/// Now on the program clock (see `filter_common`'s crate doc), or the test clock.
#[inline(always)]
pub fn now_ns(limits: &LimitsConfig) -> u64 {
    if FW_TEST_CLOCK.load() != 0 {
        return limits.test_now_ns;
    }
    // SAFETY: bpf_jiffies64 takes no arguments and has no preconditions.
    limits.clock_ns(unsafe { aya_ebpf::helpers::bpf_jiffies64() })
}

/// Records the clock pair the daemon calibrates from.
#[inline(always)]
pub fn sample_clock() {
    if let Some(sample) = FW_CLOCK.get_ptr_mut(0) {
        // SAFETY: the helpers take no arguments; the pointer comes from a successful array
        // lookup.
        unsafe {
            (*sample).jiffies = aya_ebpf::helpers::bpf_jiffies64();
            (*sample).monotonic_ns = aya_ebpf::helpers::bpf_ktime_get_ns();
        }
    }
}

/// Adds one packet of `len` bytes to this CPU's counter for `class` and `outcome`.
#[inline(always)]
pub fn count(class: Class, outcome: Outcome, len: u64) {
    if let Some(counter) = FW_COUNTERS.get_ptr_mut(class.counter_index(outcome)) {
        // SAFETY: the pointer comes from a successful lookup in a per-CPU array: it is valid,
        // aligned, and only this CPU touches this copy (XDP runs with preemption disabled).
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len;
        }
    }
}

/// Adds one packet of `len` bytes to this CPU's counter of the service (protocol and
/// destination port) it goes to; returns the counter's packets now (zero: no counter,
/// which cannot happen, a slot is always in range).
#[inline(always)]
pub fn count_service(proto: u8, dport: u16, len: u64) -> u64 {
    match FW_SERVICE_COUNTERS.get_ptr_mut(filter_common::service_slot(proto, dport)) {
        // SAFETY: as in `count`.
        Some(counter) => unsafe {
            let packets = (*counter).packets + 1;
            (*counter).packets = packets;
            (*counter).bytes += len;
            packets
        },
        None => 0,
    }
}

/// Which packets of a service are due for a sample (`filter_common::SampleStride`). In a
/// data section of its own, which aya makes a one-element array of its own: the daemon
/// writes it while the program runs, and the program reads it with one load, no lookup.
#[unsafe(link_section = ".data.sample")]
#[unsafe(no_mangle)]
static mut FW_SAMPLE_STRIDE: SampleStride = SampleStride { shift: 0, phase: 0 };

/// One: the sampling code is in the program (the object's value, which the daemon keeps).
/// Zero (`filter_common::SAMPLING_GLOBAL`, set at load time by the bench only): the
/// verifier removes it as dead code, the yardstick of sampling's cost.
#[unsafe(no_mangle)]
static FW_SAMPLING: Global<u32> = Global::new(1);

/// Whether the packet that brought its service's count on this CPU to `count` is due for
/// a sample (always false without the sampling code).
#[inline(always)]
pub fn sample_due(count: u64) -> bool {
    // SAFETY: a read of a global the daemon writes whole; a torn read while it changes
    // only moves which packet is due. Volatile: it changes under the program.
    sampling() && unsafe { core::ptr::read_volatile(&raw const FW_SAMPLE_STRIDE) }.due(count)
}

/// Whether the sampling code is in the program (see `FW_SAMPLING`): a packet without a
/// service is always due then.
#[inline(always)]
pub fn sampling() -> bool {
    FW_SAMPLING.load() != 0
}

/// Adds one packet of `len` bytes to this CPU's counter at `index`
/// (`Class::counter_index`), for a stage that knows its class only as a number.
#[inline(always)]
pub fn count_at(index: u32, len: u64) {
    if let Some(counter) = FW_COUNTERS.get_ptr_mut(index) {
        // SAFETY: as in `count`.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len;
        }
    }
}

/// Sends an event, counting it as lost when the ring buffer is full.
#[inline(always)]
pub fn send_event(event: &BlockEvent) {
    if FW_EVENTS.output::<BlockEvent>(event, 0).is_err()
        && let Some(lost) = FW_EVENTS_LOST.get_ptr_mut(0)
    {
        // SAFETY: as in `count`: a per-CPU array element owned by this CPU.
        unsafe { *lost += 1 };
    }
}

/// Adds one to this CPU's count of `stat`.
#[inline(always)]
pub fn count_syn(stat: SynStat) {
    if let Some(slot) = FW_SYN_STATS.get_ptr_mut(stat as u32) {
        // SAFETY: as in `count`: a per-CPU array element owned by this CPU.
        unsafe { *slot += 1 };
    }
}
