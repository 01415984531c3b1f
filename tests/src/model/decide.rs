//! The program's decision (`filter-ebpf/src/{main,limit,admission,prefix,lists,maps}.rs`)
//! over plain Rust state: the same limits, lists, source table, tracked-source filter,
//! block cache, admission sketch, ceilings, prefix table and test clock, for a program that
//! runs on one CPU (the per-CPU maps are that CPU's) with tables that never evict.
//!
//! Each function names the program's function it mirrors; the arithmetic is the program's,
//! wrapping where the BPF code wraps. The hashes and masks are `filter_common`'s own.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use filter_common::{
    ADMISSION_SLOT, BLOCK_CACHE_SLOTS, CLASSES, COST_SHIFT, COUNTER_ENTRIES, Class, Counter,
    EventType, LimitKind, LimitsConfig, Mode, Outcome, PREFIX_SCOPES, PrefixKey, RATE_WINDOW_NS,
    SKETCH_EPOCH_SHIFT, SKETCH_WIDTH, SourceKey, TRACKED_BITS_LOG2, block_cache_slot, list_flags,
    prefix_scopes, sketch_bucket, tracked_bit,
};

use super::parse::{Parsed, parse};

pub use filter_common::xdp_action::{DROP as XDP_DROP, PASS as XDP_PASS};

/// Largest count a sketch bucket holds (`untracked::COUNT_MASK`).
const COUNT_MASK: u32 = 0x00ff_ffff;
/// Bits of the IPv4-mapped prefix (`prefix::V4_MAPPED_BITS`).
const V4_MAPPED_BITS: u32 = 96;

/// A tracked source's state: the fields of `filter_common::SourceState` the program reads
/// and writes, kept here in the model's own type so that a change of the map's layout does
/// not change the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceState {
    /// Packet-rate TAT; while blocked, when the block started.
    pub packet_tat_ns: u64,
    /// Byte-rate TAT.
    pub byte_tat_ns: u64,
    /// Blocked until then, if non-zero.
    pub blocked_until_ns: u64,
    /// Per-class packet TATs.
    pub class_tat_ns: [u64; CLASSES],
    /// Reporting window: start, packets, bytes, and the previous window's packets and bytes.
    pub window_start_ns: u64,
    /// See `window_start_ns`.
    pub window_packets: u64,
    /// See `window_start_ns`.
    pub window_bytes: u64,
    /// See `window_start_ns`.
    pub prev_window_packets: u64,
    /// See `window_start_ns`.
    pub prev_window_bytes: u64,
}

/// A prefix's GCRA state (`filter_common::PrefixState`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixState {
    /// Packet-rate TAT.
    pub packet_tat_ns: u64,
    /// Byte-rate TAT.
    pub byte_tat_ns: u64,
    /// Per-class packet TATs.
    pub class_tat_ns: [u64; CLASSES],
}

/// Which list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum List {
    /// The allowlist.
    Allow,
    /// The denylist.
    Deny,
}

/// A list entry: a prefix of one family, its expiry and hit counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// The prefix.
    pub net: IpAddr,
    /// Its length.
    pub len: u8,
    /// Expiry on the program clock; zero: never.
    pub expires_ns: u64,
    /// Packets that matched it.
    pub hit_packets: u64,
    /// Their bytes.
    pub hit_bytes: u64,
}

impl ListEntry {
    /// The entry's prefix bits, left-aligned in 16 bytes (IPv4 in the first four).
    fn bits(&self) -> [u8; 16] {
        family_bytes(self.net)
    }
}

/// An address's bytes, left-aligned in 16 bytes (IPv4 in the first four).
fn family_bytes(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => {
            let mut out = [0u8; 16];
            out[..4].copy_from_slice(&a.octets());
            out
        }
        IpAddr::V6(a) => a.octets(),
    }
}

/// An event the program sends through its ring buffer, with the fields a change of the
/// reporting windows would leave alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// `EventType` as `u32`.
    pub event_type: u32,
    /// The source.
    pub addr: [u8; 16],
    /// Block events: `LimitKind` as `u32`; zero otherwise.
    pub limit_kind: u32,
    /// Block events: the mode; zero otherwise.
    pub mode: u32,
    /// Block events: the end of the block; zero otherwise.
    pub blocked_until_ns: u64,
    /// When.
    pub now_ns: u64,
    /// List hit events: the entry's hit count; block events: not compared (zero here).
    pub hits: u64,
    /// Block events: the class of the packet; zero otherwise.
    pub class: u32,
}

impl Event {
    /// The comparable part of an event read from the ring buffer.
    #[must_use]
    pub fn from_kernel(event: &filter_common::BlockEvent) -> Self {
        let block = event.event_type == EventType::Block as u32;
        Self {
            event_type: event.event_type,
            addr: event.addr,
            limit_kind: event.limit_kind,
            mode: event.mode,
            blocked_until_ns: event.blocked_until_ns,
            now_ns: event.now_ns,
            hits: if block { 0 } else { event.window_packets },
            class: event.class,
        }
    }
}

/// The model's decision on one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What the parser found.
    pub parsed: Parsed,
    /// The class counted.
    pub class: Class,
    /// The outcome counted.
    pub outcome: Outcome,
}

impl Decision {
    /// The XDP verdict.
    #[must_use]
    pub const fn verdict(&self) -> u32 {
        if self.outcome.is_drop() {
            XDP_DROP
        } else {
            XDP_PASS
        }
    }

    /// The `FW_COUNTERS` index counted.
    #[must_use]
    pub const fn counter_index(&self) -> u32 {
        self.class.counter_index(self.outcome)
    }
}

/// The program and its maps, as plain data.
pub struct Model {
    /// `FW_LIMITS[0]` as last written (with the test clock in `test_now_ns` and the list
    /// presence bits in `list_flags`).
    pub limits: LimitsConfig,
    sources: HashMap<SourceKey, SourceState>,
    prefixes: HashMap<PrefixKey, PrefixState>,
    tracked: Vec<u64>,
    block_cache: HashMap<u32, ([u8; 16], u64)>,
    sketch: [Vec<u32>; 2],
    ceilings: [u64; CLASSES + 1],
    lists: HashMap<(List, bool), Vec<ListEntry>>,
    counters: Vec<Counter>,
    events: Vec<Event>,
    paths: BTreeMap<&'static str, u64>,
}

impl Model {
    /// A freshly loaded program: every map empty, `limits` in `FW_LIMITS`.
    #[must_use]
    pub fn new(limits: LimitsConfig) -> Self {
        Self {
            limits,
            sources: HashMap::new(),
            prefixes: HashMap::new(),
            tracked: vec![0; (1usize << TRACKED_BITS_LOG2) / 64],
            block_cache: HashMap::new(),
            sketch: [vec![0; SKETCH_WIDTH], vec![0; SKETCH_WIDTH]],
            ceilings: [0; CLASSES + 1],
            lists: HashMap::new(),
            counters: vec![Counter::default(); COUNTER_ENTRIES as usize],
            events: Vec::new(),
            paths: BTreeMap::new(),
        }
    }

    /// The counters (`FW_COUNTERS` of this CPU), by `Class::counter_index`.
    #[must_use]
    pub fn counters(&self) -> &[Counter] {
        &self.counters
    }

    /// How often each branch of the decision was taken: what a run covered.
    #[must_use]
    pub fn paths(&self) -> &BTreeMap<&'static str, u64> {
        &self.paths
    }

    fn path(&mut self, name: &'static str) {
        *self.paths.entry(name).or_default() += 1;
    }

    /// Takes the events sent since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// A tracked source's state.
    #[must_use]
    pub fn source(&self, key: &SourceKey) -> Option<&SourceState> {
        self.sources.get(key)
    }

    /// How many sources the table holds.
    #[must_use]
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// How many prefixes the prefix table holds.
    #[must_use]
    pub fn prefix_count(&self) -> usize {
        self.prefixes.len()
    }

    /// The prefix states of `key`'s prefixes, for a reproducer.
    #[must_use]
    pub fn prefixes_of(&self, key: &SourceKey) -> Vec<(PrefixKey, PrefixState)> {
        self.prefixes
            .iter()
            .filter(|(p, _)| {
                let bits = if p.scope as usize == prefix_scopes::V4 {
                    V4_MAPPED_BITS + p.len
                } else {
                    p.len
                };
                key.masked(bits).addr == p.addr
            })
            .map(|(p, s)| (*p, *s))
            .collect()
    }

    /// The block cache slot of `key`: its address and deadline.
    #[must_use]
    pub fn block_cache_slot(&self, key: &SourceKey) -> ([u8; 16], u64) {
        self.block_cache
            .get(&block_cache_slot(key))
            .copied()
            .unwrap_or_default()
    }

    /// The ceiling TATs by class, then the admission budget's.
    #[must_use]
    pub fn ceilings(&self) -> [u64; CLASSES + 1] {
        self.ceilings
    }

    /// `key`'s sketch buckets as stored (epoch in the top 8 bits).
    #[must_use]
    pub fn sketch_cells(&self, key: &SourceKey) -> [u32; 2] {
        [
            self.sketch[0][sketch_bucket(key, 0)],
            self.sketch[1][sketch_bucket(key, 1)],
        ]
    }

    /// Adds a prefix to a list, as `ListMaps::add` does: a prefix already listed gets the
    /// new expiry (zero: never) and keeps its hit counters.
    pub fn list_add(&mut self, list: List, net: IpAddr, len: u8, expires_ns: u64) {
        let entries = self.lists.entry((list, net.is_ipv4())).or_default();
        if let Some(entry) = entries.iter_mut().find(|e| e.net == net && e.len == len) {
            entry.expires_ns = expires_ns;
        } else {
            entries.push(ListEntry {
                net,
                len,
                expires_ns,
                hit_packets: 0,
                hit_bytes: 0,
            });
        }
    }

    /// Removes a prefix from a list; whether it was listed.
    pub fn list_remove(&mut self, list: List, net: IpAddr, len: u8) -> bool {
        let entries = self.lists.entry((list, net.is_ipv4())).or_default();
        let before = entries.len();
        entries.retain(|e| !(e.net == net && e.len == len));
        entries.len() != before
    }

    /// The entries of a list, both families.
    #[must_use]
    pub fn list_entries(&self, list: List) -> Vec<ListEntry> {
        [true, false]
            .iter()
            .filter_map(|v4| self.lists.get(&(list, *v4)))
            .flatten()
            .copied()
            .collect()
    }

    /// The `list_flags` presence bits of the lists as they are (what the daemon writes).
    #[must_use]
    pub fn list_presence(&self) -> u32 {
        let nonempty = |list, v4| self.lists.get(&(list, v4)).is_some_and(|e| !e.is_empty());
        [
            (List::Allow, true, list_flags::ALLOW_V4),
            (List::Allow, false, list_flags::ALLOW_V6),
            (List::Deny, true, list_flags::DENY_V4),
            (List::Deny, false, list_flags::DENY_V6),
        ]
        .iter()
        .filter(|(list, v4, _)| nonempty(*list, *v4))
        .fold(0, |bits, (_, _, bit)| bits | bit)
    }

    /// Runs one frame: `floodwall` in main.rs.
    pub fn run(&mut self, frame: &[u8]) -> Decision {
        let len = frame.len() as u64;
        let parsed = parse(frame);
        let (class, outcome) = match parsed {
            Parsed::Source {
                key,
                v4,
                class,
                l4_ok,
            } => {
                let outcome = self.charge(&key, v4, class, len);
                if !l4_ok && outcome == Outcome::Passed {
                    (class, Outcome::Malformed)
                } else {
                    (class, outcome)
                }
            }
            Parsed::NonIp => (Class::Other, Outcome::NonIp),
            Parsed::Malformed => (Class::Other, Outcome::Malformed),
        };
        let counter = &mut self.counters[class.counter_index(outcome) as usize];
        counter.packets += 1;
        counter.bytes += len;
        Decision {
            parsed,
            class,
            outcome,
        }
    }

    /// `decide` in main.rs with the stages it calls (`lists`, `block_cache`, `untracked`,
    /// `tracked`).
    #[expect(
        clippy::too_many_lines,
        reason = "mirrors the program's stages in one function, to read them side by side"
    )]
    fn charge(&mut self, key: &SourceKey, v4: bool, class: Class, len: u64) -> Outcome {
        let limits = self.limits;
        let now = limits.test_now_ns;
        let monitor = limits.mode == Mode::Monitor as u32
            || limits.monitor_classes & (1 << class as u32) != 0;
        let flags = limits.list_flags;

        let allow_bit = if v4 {
            list_flags::ALLOW_V4
        } else {
            list_flags::ALLOW_V6
        };
        if flags & allow_bit != 0 && self.list_matches(List::Allow, key, v4, now, len) {
            self.path("allowlist: listed");
            return Outcome::Allowed;
        }

        let blocked = if monitor {
            Outcome::MonitorBlocked
        } else {
            Outcome::DroppedBlocked
        };
        let maybe_tracked = self.maybe_tracked(key);
        if maybe_tracked {
            let (addr, until) = self.block_cache_slot(key);
            if now < until && addr == key.addr {
                self.path("blocked: in the block cache");
                return blocked;
            }
        }

        let deny_bit = if v4 {
            list_flags::DENY_V4
        } else {
            list_flags::DENY_V6
        };
        if flags & deny_bit != 0 && self.list_matches(List::Deny, key, v4, now, len) {
            self.path("denylist: listed");
            return if monitor || flags & list_flags::DENY_MONITOR != 0 {
                Outcome::MonitorDenied
            } else {
                Outcome::DroppedDenied
            };
        }

        let prefixes_active = limits.prefixes.iter().any(|p| p.active != 0);
        if !prefixes_active && !maybe_tracked {
            if self.admits(key, now) {
                self.path("new source, short path: admitted");
                self.mark_tracked(key);
                self.insert_source(key, class, now, len);
                return Outcome::Passed;
            }
            self.path("new source, short path: untracked");
            return self.untracked(class, now, monitor, Outcome::Passed);
        }

        if let Some(state) = self.sources.get_mut(key) {
            if state.blocked_until_ns != 0 {
                if now < state.blocked_until_ns {
                    self.path("blocked: in the table, not in the cache");
                    return blocked;
                }
                // The block expired: a full burst again.
                state.blocked_until_ns = 0;
                state.packet_tat_ns = now;
                state.byte_tat_ns = now;
                state.class_tat_ns = [now; CLASSES];
                self.path("blocked: the block expired");
            }
        } else {
            if !prefixes_active {
                self.path("new source, table path: a neighbour's tracked bit");
            }
            if !self.admits(key, now) {
                self.path("new source, table path: untracked");
                return self.untracked(class, now, monitor, Outcome::Passed);
            }
            self.path("new source, table path: admitted");
            self.mark_tracked(key);
            // BPF_NOEXIST on a key that is not there: the insert succeeds (the table is
            // large enough never to evict or refuse).
            self.sources.insert(
                *key,
                SourceState {
                    packet_tat_ns: now,
                    byte_tat_ns: now,
                    window_start_ns: now,
                    class_tat_ns: [now; CLASSES],
                    ..SourceState::default()
                },
            );
        }

        let state = self.sources.get_mut(key).expect("tracked just above");
        let exceeded = exceeded_limit(state, &limits, class, now, len);
        count_in_window(state, now, len);
        let Some(kind) = exceeded else {
            let over = self.prefix_over_limit(key, v4, class, now, len);
            if over {
                self.path("prefix: over its limit");
            }
            return if !over {
                Outcome::Passed
            } else if monitor {
                Outcome::MonitorPrefixLimit
            } else {
                Outcome::DroppedPrefixLimit
            };
        };
        self.path(match kind {
            LimitKind::ClassPackets => "limit: class packets exceeded",
            LimitKind::Packets => "limit: packets exceeded",
            LimitKind::Bytes => "limit: bytes exceeded",
        });
        self.block(key, class, now, kind);
        if monitor {
            Outcome::MonitorRateLimit
        } else {
            Outcome::DroppedRateLimit
        }
    }

    /// `untracked::admits`: whether a source not in the table gets an entry now. `&&` and
    /// `||` short-circuit as in the program: the sketch counts only when more than one
    /// packet is needed and the budget is open; the budget is taken only when the sketch
    /// says yes.
    fn admits(&mut self, key: &SourceKey, now: u64) -> bool {
        (self.limits.admit_packets <= 1
            || (self.admission_open(now)
                && self.count_and_estimate(key, now) >= self.limits.admit_packets))
            && self.take_admission(now)
    }

    /// `table::insert` with `Charge::Now`: a new source charged with its first packet.
    fn insert_source(&mut self, key: &SourceKey, class: Class, now: u64, len: u64) {
        if self.sources.contains_key(key) {
            // -EEXIST: the packet goes uncharged.
            self.path("new source, short path: already in the table");
            return;
        }
        let limits = &self.limits;
        let mut fresh = SourceState {
            packet_tat_ns: now.wrapping_add(limits.packet_cost_fp >> COST_SHIFT),
            byte_tat_ns: now.wrapping_add(len.wrapping_mul(limits.byte_cost_fp) >> COST_SHIFT),
            window_start_ns: now,
            window_packets: 1,
            window_bytes: len,
            class_tat_ns: [now; CLASSES],
            ..SourceState::default()
        };
        fresh.class_tat_ns[class as usize] =
            now.wrapping_add(limits.class_packets[class as usize].cost_fp >> COST_SHIFT);
        self.sources.insert(*key, fresh);
    }

    /// `untracked::ceiling`.
    fn untracked(&mut self, class: Class, now: u64, monitor: bool, passed: Outcome) -> Outcome {
        if !self.over_ceiling(class, now) {
            passed
        } else if monitor {
            self.path("ceiling: over");
            Outcome::MonitorCeiling
        } else {
            self.path("ceiling: over");
            Outcome::DroppedCeiling
        }
    }

    /// `tracked::block`: blocks the source and fills its block cache slot.
    fn block(&mut self, key: &SourceKey, class: Class, now: u64, kind: LimitKind) {
        let until = now.wrapping_add(self.limits.block_ns);
        let state = self
            .sources
            .get_mut(key)
            .expect("blocking a tracked source");
        if state.blocked_until_ns > now {
            return;
        }
        state.blocked_until_ns = until;
        state.packet_tat_ns = now;
        self.block_cache
            .insert(block_cache_slot(key), (key.addr, until));
        debug_assert!(block_cache_slot(key) < BLOCK_CACHE_SLOTS);
        self.events.push(Event {
            event_type: EventType::Block as u32,
            addr: key.addr,
            limit_kind: kind as u32,
            mode: self.limits.mode,
            blocked_until_ns: until,
            now_ns: now,
            hits: 0,
            class: class as u32,
        });
    }

    /// `maps::maybe_tracked`.
    fn maybe_tracked(&self, key: &SourceKey) -> bool {
        let (word, mask) = Self::tracked_word(key);
        self.tracked[word] & mask != 0
    }

    /// `maps::mark_tracked`.
    fn mark_tracked(&mut self, key: &SourceKey) {
        let (word, mask) = Self::tracked_word(key);
        self.tracked[word] |= mask;
    }

    /// Whether `key`'s bit in the tracked-source filter is set.
    #[must_use]
    pub fn is_marked(&self, key: &SourceKey) -> bool {
        self.maybe_tracked(key)
    }

    fn tracked_word(key: &SourceKey) -> (usize, u64) {
        let (chunk, word, mask) = tracked_bit(key);
        let words_per_chunk = filter_common::TRACKED_CHUNK_WORDS;
        (chunk as usize * words_per_chunk + word, mask)
    }

    /// `untracked::count_and_estimate`.
    fn count_and_estimate(&mut self, key: &SourceKey, now: u64) -> u32 {
        let epoch = ((now >> SKETCH_EPOCH_SHIFT) & 0xff) as u32;
        let (ia, ib) = (sketch_bucket(key, 0), sketch_bucket(key, 1));
        let count = |cell: u32| {
            if cell >> 24 == epoch {
                cell & COUNT_MASK
            } else {
                0
            }
        };
        let (count_a, count_b) = (count(self.sketch[0][ia]), count(self.sketch[1][ib]));
        let estimate = count_a.min(count_b);
        let next = if estimate < COUNT_MASK {
            estimate + 1
        } else {
            COUNT_MASK
        };
        if count_a < next {
            self.sketch[0][ia] = (epoch << 24) | next;
        }
        if count_b < next {
            self.sketch[1][ib] = (epoch << 24) | next;
        }
        next
    }

    /// `untracked::take_budget`.
    fn take_admission(&mut self, now: u64) -> bool {
        let params = self.limits.admit_rate;
        if params.cost_fp == 0 {
            return true;
        }
        !gcra_step(
            &mut self.ceilings[ADMISSION_SLOT as usize],
            now,
            params.cost_fp >> COST_SHIFT,
            params.window_ns,
        )
    }

    /// `untracked::budget_open`.
    fn admission_open(&self, now: u64) -> bool {
        let params = self.limits.admit_rate;
        if params.cost_fp == 0 {
            return true;
        }
        let tat = self.ceilings[ADMISSION_SLOT as usize];
        let start = tat.max(now);
        start
            .wrapping_add(params.cost_fp >> COST_SHIFT)
            .wrapping_sub(now)
            <= params.window_ns
    }

    /// `untracked::ceiling`'s GCRA step.
    fn over_ceiling(&mut self, class: Class, now: u64) -> bool {
        let params = self.limits.ceilings[class as usize];
        if params.cost_fp == 0 {
            return false;
        }
        gcra_step(
            &mut self.ceilings[class as usize],
            now,
            params.cost_fp >> COST_SHIFT,
            params.window_ns,
        )
    }

    /// `prefix::over_limit`.
    fn prefix_over_limit(
        &mut self,
        key: &SourceKey,
        v4: bool,
        class: Class,
        now: u64,
        len: u64,
    ) -> bool {
        for scope in 0..PREFIX_SCOPES {
            if (scope == prefix_scopes::V4) != v4 {
                continue;
            }
            let params = self.limits.prefixes[scope];
            if params.active == 0 {
                continue;
            }
            let bits = if v4 {
                V4_MAPPED_BITS + params.len
            } else {
                params.len
            };
            let prefix = PrefixKey {
                scope: u32::try_from(scope).expect("scope < 3"),
                len: params.len,
                addr: key.masked(bits).addr,
            };
            let state = self.prefixes.entry(prefix).or_insert(PrefixState {
                packet_tat_ns: now,
                byte_tat_ns: now,
                class_tat_ns: [now; CLASSES],
            });
            let class_params = params.class_packets[class as usize];
            let over = (params.packets.cost_fp != 0
                && gcra_take(
                    &mut state.packet_tat_ns,
                    now,
                    params.packets.cost_fp >> COST_SHIFT,
                    params.packets.window_ns,
                ))
                || (params.bytes.cost_fp != 0
                    && gcra_take(
                        &mut state.byte_tat_ns,
                        now,
                        len.wrapping_mul(params.bytes.cost_fp) >> COST_SHIFT,
                        params.bytes.window_ns,
                    ))
                || (class_params.cost_fp != 0
                    && gcra_take(
                        &mut state.class_tat_ns[class as usize],
                        now,
                        class_params.cost_fp >> COST_SHIFT,
                        class_params.window_ns,
                    ));
            if over {
                return true;
            }
        }
        false
    }

    /// `lists::matches`: the longest listed prefix that holds the source, unless it has
    /// expired (a shorter prefix holding it too does not count then, as in the LPM trie).
    fn list_matches(&mut self, list: List, key: &SourceKey, v4: bool, now: u64, len: u64) -> bool {
        let addr = if v4 {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&key.addr[12..16]);
            a
        } else {
            key.addr
        };
        let Some(entries) = self.lists.get_mut(&(list, v4)) else {
            return false;
        };
        let holds = |e: &ListEntry| {
            let bits = u32::from(e.len);
            SourceKey { addr }.masked(bits).addr == SourceKey { addr: e.bits() }.masked(bits).addr
        };
        let Some(longest) = (0..entries.len())
            .filter(|&i| holds(&entries[i]))
            .max_by_key(|&i| entries[i].len)
        else {
            return false;
        };
        let entry = entries[longest];
        if entry.expires_ns != 0 && now >= entry.expires_ns {
            let shorter = entries.iter().any(|e| e.len < entry.len && holds(e));
            self.path(if shorter {
                "lists: the longest match expired, a shorter one holds"
            } else {
                "lists: the match expired"
            });
            return false;
        }
        let entry = &mut entries[longest];
        entry.hit_packets += 1;
        entry.hit_bytes += len;
        let hits = entry.hit_packets;
        if hits.is_power_of_two() {
            self.events.push(Event {
                event_type: match list {
                    List::Allow => EventType::AllowHit,
                    List::Deny => EventType::DenyHit,
                } as u32,
                addr: key.addr,
                limit_kind: 0,
                mode: 0,
                blocked_until_ns: 0,
                now_ns: now,
                hits,
                class: 0,
            });
        }
        true
    }
}

/// `tracked::exceeded_limit`: advances the class, packet and byte TATs in turn, stopping at
/// the first limit exceeded.
fn exceeded_limit(
    state: &mut SourceState,
    limits: &LimitsConfig,
    class: Class,
    now: u64,
    len: u64,
) -> Option<LimitKind> {
    let params = limits.class_packets[class as usize];
    if params.cost_fp != 0
        && gcra_exceeds(
            &mut state.class_tat_ns[class as usize],
            now,
            params.cost_fp >> COST_SHIFT,
            params.window_ns,
        )
    {
        return Some(LimitKind::ClassPackets);
    }
    if limits.packet_cost_fp != 0
        && gcra_exceeds(
            &mut state.packet_tat_ns,
            now,
            limits.packet_cost_fp >> COST_SHIFT,
            limits.packet_window_ns,
        )
    {
        return Some(LimitKind::Packets);
    }
    if limits.byte_cost_fp != 0
        && gcra_exceeds(
            &mut state.byte_tat_ns,
            now,
            len.wrapping_mul(limits.byte_cost_fp) >> COST_SHIFT,
            limits.byte_window_ns,
        )
    {
        return Some(LimitKind::Bytes);
    }
    None
}

/// `gcra::charge`: an idle TAT restarts from now.
fn gcra_exceeds(tat: &mut u64, now: u64, cost: u64, window: u64) -> bool {
    if *tat < now {
        *tat = now.wrapping_add(cost);
    } else {
        *tat = tat.wrapping_add(cost);
    }
    tat.saturating_sub(now) > window
}

/// `gcra::take`: as `gcra::charge`, taking the cost back when over.
fn gcra_take(tat: &mut u64, now: u64, cost: u64, window: u64) -> bool {
    if gcra_exceeds(tat, now, cost, window) {
        *tat = tat.wrapping_sub(cost);
        return true;
    }
    false
}

/// `gcra::step_local`: strict GCRA on a per-CPU TAT, no charge when over.
fn gcra_step(tat: &mut u64, now: u64, cost: u64, window: u64) -> bool {
    let start = (*tat).max(now);
    let next = start.wrapping_add(cost);
    if next.wrapping_sub(now) > window {
        return true;
    }
    *tat = next;
    false
}

/// `tracked::count_in_window`.
fn count_in_window(s: &mut SourceState, now: u64, len: u64) {
    let age = now.wrapping_sub(s.window_start_ns);
    if age >= RATE_WINDOW_NS {
        let adjacent = age < 2 * RATE_WINDOW_NS;
        s.prev_window_packets = if adjacent { s.window_packets } else { 0 };
        s.prev_window_bytes = if adjacent { s.window_bytes } else { 0 };
        s.window_start_ns = now;
        s.window_packets = 0;
        s.window_bytes = 0;
    }
    s.window_packets += 1;
    // The program's window counts bytes in a saturating u32.
    s.window_bytes = s.window_bytes.saturating_add(len).min(u64::from(u32::MAX));
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use filter_common::{Class, LimitsConfig, Outcome, RateParams, list_flags};

    use super::{List, Model};
    use crate::frames::{Fragment, Frame, Ip, Transport};

    const SEC: u64 = 1_000_000_000;
    const SRC: [u8; 4] = [198, 18, 1, 7];

    fn udp(src: [u8; 4]) -> Vec<u8> {
        Frame {
            vlans: vec![],
            ip: Ip::V4 {
                src,
                option_words: 0,
                fragment: Fragment::Whole,
            },
            transport: Transport::Udp,
            payload: 10,
        }
        .build()
    }

    /// 10 packets a second with a burst of 5, blocks of 2 s, everybody admitted at once.
    fn limits() -> LimitsConfig {
        LimitsConfig {
            packet_cost_fp: (SEC / 10) << 16,
            packet_window_ns: SEC / 2,
            block_ns: 2 * SEC,
            admit_packets: 1,
            test_now_ns: 1_000 * SEC,
            ..LimitsConfig::default()
        }
    }

    fn outcomes(model: &mut Model, frame: &[u8], n: usize) -> Vec<Outcome> {
        (0..n).map(|_| model.run(frame).outcome).collect()
    }

    #[test]
    fn a_burst_then_a_block_that_expires() {
        let mut model = Model::new(limits());
        let frame = udp(SRC);
        let mut expected = vec![Outcome::Passed; 5];
        expected.push(Outcome::DroppedRateLimit);
        expected.push(Outcome::DroppedBlocked);
        // Within one instant: the burst of 5 (the first packet charged at admission), then
        // the block.
        assert_eq!(outcomes(&mut model, &frame, 7), expected);
        assert_eq!(model.take_events().len(), 1, "one block event");
        model.limits.test_now_ns += 2 * SEC;
        assert_eq!(model.run(&frame).outcome, Outcome::Passed, "block over");
        assert_eq!(
            model.counters()[Class::Udp.counter_index(Outcome::Passed) as usize].packets,
            6
        );
    }

    #[test]
    fn untracked_sources_are_held_to_the_ceiling() {
        let mut model = Model::new(LimitsConfig {
            admit_packets: 3,
            ceilings: [RateParams {
                cost_fp: (SEC / 2) << 16,
                window_ns: SEC,
            }; 6],
            ..limits()
        });
        let frame = udp(SRC);
        // Two untracked packets fill the ceiling (a burst of one second at 2/s); the third
        // is the sketch's third count, which admits the source, and tracked sources skip
        // the ceiling. Another new source's packet is then over it.
        assert_eq!(
            outcomes(&mut model, &frame, 3),
            [Outcome::Passed, Outcome::Passed, Outcome::Passed]
        );
        assert_eq!(model.source_count(), 1);
        let other = udp([198, 18, 1, 8]);
        assert_eq!(model.run(&other).outcome, Outcome::DroppedCeiling);
    }

    #[test]
    fn an_expired_longest_match_hides_a_shorter_one() {
        let mut model = Model::new(limits());
        let net = |a: [u8; 4]| IpAddr::V4(Ipv4Addr::from(a));
        model.list_add(List::Deny, net([198, 18, 1, 0]), 24, 0);
        model.list_add(List::Deny, net(SRC), 32, 1_001 * SEC);
        model.limits.list_flags = model.list_presence();
        assert_eq!(model.limits.list_flags, list_flags::DENY_V4);
        let frame = udp(SRC);
        assert_eq!(model.run(&frame).outcome, Outcome::DroppedDenied);
        model.limits.test_now_ns = 1_001 * SEC;
        assert_eq!(
            model.run(&frame).outcome,
            Outcome::Passed,
            "the /32 has expired and the trie answers with it, not with the /24"
        );
        let hits: Vec<u64> = model
            .list_entries(List::Deny)
            .iter()
            .map(|e| e.hit_packets)
            .collect();
        assert_eq!(hits, [0, 1]);
    }
}
