//! The differential test of the data path: the real XDP program, run through
//! `BPF_PROG_TEST_RUN` with the test clock, against the reference model
//! (`floodwall_tests::model`), frame by frame.
//!
//! A seeded generator makes well-formed, mutated, truncated and random frames from a pool of
//! sources (IPv4 in 198.18.0.0/15, IPv6 in `2001:2::/48`, some sharing a /24 or a /64), new
//! sources and spoofed ones, over a clock the test steps. Scenarios (each a fresh program
//! load) and their phases (limits and lists rewritten) reach every limit: per source, per
//! class, blocks and their expiry, the block cache, admission and its budget, ceilings,
//! prefix limits, allow and deny lists with expiry, monitor modes.
//!
//! For every frame, the verdict and the one outcome counter it increments (class and
//! outcome) must be the model's: the counter the model predicts is read after each frame,
//! and every counter, the events and the table's insert count are compared every
//! `FLOODWALL_DIFF_CHECK_EVERY` frames and at the end of each scenario, so a frame counted
//! twice or in a second counter is caught within that window (rerun with
//! `FLOODWALL_DIFF_CHECK_EVERY=1` to find the frame).
//!
//! Environment: `FLOODWALL_DIFF_SEED` (a number, or `random`), `FLOODWALL_DIFF_FRAMES`
//! (frames per run: 120,000, or 30,000 in the test VM), `FLOODWALL_DIFF_CHECK_EVERY`.

#![expect(
    clippy::large_types_passed_by_value,
    reason = "limit changes are built inline in the scenarios; clarity over a copy"
)]

use std::{
    collections::{HashSet, VecDeque},
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use aya::{
    Ebpf,
    maps::{Map, MapData, PerCpuArray, RingBuf},
    programs::{TestRun as _, TestRunOptions},
};
use filter_common::{
    CLASSES, COUNTER_ENTRIES, COUNTER_SLOTS, Class, Counter, LimitsConfig, Outcome, PROGRAM_NAME,
    SourceKey, block_cache_slot, map_names, tracked_bit,
};
use floodwall::{
    events,
    limits::{Burst, FilterMode, Limits, LimitsChange, Rate},
    lists::{ListKind, ListMaps, Prefix},
    loader::{self, LoadOptions, Loaded},
};
use floodwall_tests::{
    frames::{
        self, Ext, Fragment, Frame, Ip, Rng, Transport,
        consts::{
            ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_LLDP, IPPROTO_ESP, IPPROTO_GRE,
            IPPROTO_NONE, IPPROTO_SCTP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN,
        },
    },
    model::{Decision, Event, List, Model, Parsed, XDP_DROP},
    privileged,
};

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const US: u64 = 1_000;
/// The test clock starts here (any non-zero time works).
const START_NS: u64 = 1_000 * SEC;
/// The seed CI runs with.
const DEFAULT_SEED: u64 = 0x000F_100D_3A11_2026;
const DEFAULT_FRAMES: usize = 120_000;
/// In the test VM: the same scenarios with fewer frames each. There the test checks that
/// the kernel agrees with the model on that kernel's verifier and helpers, which every
/// scenario's first thousands of frames already exercise; the host runs the full count.
/// Under emulation 120,000 frames took 87 s a kernel.
const VM_FRAMES: usize = 30_000;
const DEFAULT_CHECK_EVERY: usize = 256;
/// Table capacities far above the sources and prefixes a run creates (about one every
/// ten frames), so that no table evicts: the model has no eviction.
const MIN_CAPACITY: u32 = 1 << 16;
/// Source-table slots per frame of a run: the table evicts when one set
/// (`filter_common::SOURCE_WAYS` slots) fills, so it needs room far beyond the sources'
/// number for no set of a run's random sources to fill. At one source every ten frames, 80
/// slots a source leave a set of four holding 0.05 sources on average: the chance that any
/// of the sets receives five is about one in a thousand runs.
const SOURCE_SLOTS_PER_FRAME: usize = 8;
/// The longest frame: `BPF_PROG_TEST_RUN` takes an XDP frame of at most a page less the
/// headroom and the shared info (3,520 bytes on x86-64) in one buffer; longer ones would
/// need multi-buffer XDP, which the program does not declare.
const MAX_FRAME: usize = 3_000;

/// What to run, from the environment.
#[path = "differential/rules.rs"]
mod rules;

#[derive(Clone, Copy, Debug)]
struct Settings {
    seed: u64,
    frames: usize,
    check_every: usize,
}

fn settings() -> Settings {
    let seed = match std::env::var("FLOODWALL_DIFF_SEED").as_deref() {
        Err(_) | Ok("") => DEFAULT_SEED,
        Ok("random") => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            #[expect(clippy::cast_possible_truncation, reason = "any bits make a seed")]
            let seed = nanos as u64 ^ u64::from(std::process::id()).rotate_left(32);
            seed
        }
        Ok(text) => parse_number(text)
            .unwrap_or_else(|| panic!("FLOODWALL_DIFF_SEED={text} is not a number or `random`")),
    };
    let count = |name: &str, default: usize| match std::env::var(name) {
        Ok(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("{name}={text} is not a positive number")),
        Err(_) => default,
    };
    Settings {
        seed,
        frames: count(
            "FLOODWALL_DIFF_FRAMES",
            if floodwall_tests::in_vm() {
                VM_FRAMES
            } else {
                DEFAULT_FRAMES
            },
        ),
        check_every: count("FLOODWALL_DIFF_CHECK_EVERY", DEFAULT_CHECK_EVERY),
    }
}

fn parse_number(text: &str) -> Option<u64> {
    text.strip_prefix("0x").map_or_else(
        || text.parse().ok(),
        |hex| u64::from_str_radix(hex, 16).ok(),
    )
}

// ---------------------------------------------------------------------------------------
// The program under test.

/// The program loaded with the test clock, the maps the test reads, and the limits it
/// writes.
struct Program {
    loaded: Loaded,
    lists: ListMaps,
    counters: PerCpuArray<MapData, Counter>,
    events: RingBuf<MapData>,
}

impl Program {
    fn load(frames: usize) -> Self {
        Self::load_as(frames, true)
    }

    /// With the rules' programs, for the rules' test.
    fn load_with_rules(frames: usize) -> Self {
        Self::load_as(frames, false)
    }

    fn load_as(frames: usize, without_rules: bool) -> Self {
        // At most about one new source or prefix every four frames.
        let capacity = u32::try_from(frames / 2)
            .unwrap_or(u32::MAX)
            .next_power_of_two()
            .max(MIN_CAPACITY);
        let sources = u32::try_from(frames * SOURCE_SLOTS_PER_FRAME)
            .unwrap_or(u32::MAX)
            .next_power_of_two()
            .max(MIN_CAPACITY);
        let mut loaded = loader::load(&LoadOptions {
            max_sources: sources,
            test_clock: true,
            max_prefixes: capacity,
            // The model does not decide rules: its test runs the program without them (the
            // rules' test, `rules::`, has its own model).
            without_rules,
            ..LoadOptions::default()
        })
        .expect("the XDP program must load with the test clock");
        let lists = ListMaps::take(&mut loaded.ebpf).expect("list maps");
        let ring = loaded.ebpf.take_map(map_names::EVENTS).expect("events map");
        let events = RingBuf::try_from(ring).expect("events map is a ring buffer");
        let counters = counters_map(&mut loaded.ebpf);
        Self {
            loaded,
            lists,
            counters,
            events,
        }
    }

    fn run(&mut self, frame: &[u8]) -> u32 {
        let program = loader::xdp_program(&mut self.loaded.ebpf, PROGRAM_NAME).expect("program");
        program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..TestRunOptions::new()
            })
            .expect("BPF_PROG_TEST_RUN must run the program")
            .return_value
    }

    /// One `FW_COUNTERS` slot, summed over CPUs (only the pinned one changes).
    fn counter(&self, index: u32) -> Counter {
        let per_cpu = self.counters.get(&index, 0).expect("counter lookup");
        per_cpu.iter().fold(Counter::default(), |sum, c| Counter {
            packets: sum.packets + c.packets,
            bytes: sum.bytes + c.bytes,
        })
    }

    fn all_counters(&self) -> Vec<Counter> {
        (0..COUNTER_ENTRIES).map(|i| self.counter(i)).collect()
    }

    fn drain_events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(item) = self.events.next() {
            let event = events::decode(&item).expect("a whole event record");
            out.push(Event::from_kernel(&event));
        }
        out
    }
}

/// A second handle on `FW_COUNTERS` (the first belongs to `FilterMaps`, whose `totals` reads
/// all 96 slots): found among the program's maps by name, so a frame's check reads one slot.
fn counters_map(ebpf: &mut Ebpf) -> PerCpuArray<MapData, Counter> {
    let program = loader::xdp_program(ebpf, PROGRAM_NAME).expect("program");
    let ids = program
        .info()
        .expect("program info")
        .map_ids()
        .expect("the program's map ids")
        .expect("the kernel reports the program's maps");
    for id in ids {
        let data = MapData::from_id(id).expect("map by id");
        let name = data.info().expect("map info");
        if name.name_as_str() == Some(map_names::COUNTERS) {
            return PerCpuArray::try_from(Map::PerCpuArray(data)).expect("counters map type");
        }
    }
    panic!("the program uses no map named {}", map_names::COUNTERS);
}

/// Pins this thread to the CPU it runs on for its lifetime, and restores its affinity on
/// drop: the sketch, ceilings and counters are per CPU, and `BPF_PROG_TEST_RUN` runs the
/// program on the caller's CPU, so the model (one CPU's state) holds only on one CPU.
struct Pinned {
    cpu: usize,
    previous: libc::cpu_set_t,
}

impl Pinned {
    fn here() -> Self {
        // SAFETY: cpu_set_t is plain data; the calls read and write only the sets passed;
        // pid 0 is this thread.
        unsafe {
            let mut previous: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &raw mut previous),
                0,
                "read this thread's CPU affinity"
            );
            let cpu = usize::try_from(libc::sched_getcpu()).expect("sched_getcpu");
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            assert_eq!(
                libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set),
                0,
                "pin to CPU {cpu}"
            );
            Self { cpu, previous }
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: as in `here`.
        unsafe {
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const self.previous);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sources and frames.

/// The pool of sources that come back: a few per /24 and per /64, a few alone.
const POOL_V4: [[u8; 4]; 15] = [
    [198, 18, 1, 10],
    [198, 18, 1, 11],
    [198, 18, 1, 12],
    [198, 18, 1, 13],
    [198, 18, 1, 14],
    [198, 18, 1, 15],
    [198, 18, 1, 16],
    [198, 18, 1, 17],
    [198, 18, 2, 20],
    [198, 18, 2, 21],
    [198, 18, 2, 22],
    [198, 18, 2, 23],
    [198, 19, 7, 5],
    [198, 19, 200, 9],
    [198, 18, 77, 1],
];
const POOL_V6: [&str; 12] = [
    "2001:2:0:1::a",
    "2001:2:0:1::b",
    "2001:2:0:1::c",
    "2001:2:0:1::d",
    "2001:2:0:1::e",
    "2001:2:0:1::f",
    "2001:2:0:1:8000::1",
    "2001:2:0:2::20",
    "2001:2:0:2::21",
    "2001:2:0:2::22",
    "2001:2:0:100::5",
    "2001:2:ff00::9",
];
/// Indexes into the pool (IPv4 first) of sources that send most, in bursts.
const HEAVY: [usize; 5] = [0, 8, 15, 22, 12];

/// How a phase's traffic is made.
#[derive(Clone, Copy, Debug)]
struct Mix {
    /// Weights of the frame kinds: pool source, new source sending a few packets, spoofed
    /// source (one packet), mutated frame, random bytes, not IP.
    pool: u64,
    newcomer: u64,
    spoofed: u64,
    mutated: u64,
    random: u64,
    non_ip: u64,
    /// Chance per frame (per mille) that a burst from one source starts.
    burst: u64,
    /// Mean gap between frames.
    mean_gap_ns: u64,
    /// Chance per frame (per 100,000) of a jump of the clock (blocks expire, epochs turn).
    jump: u64,
    /// The clock's resolution: the program's real clock moves in kernel ticks, so many
    /// packets share one time and GCRA meets its bounds exactly; 1 ns otherwise.
    tick_ns: u64,
}

const MIX: Mix = Mix {
    pool: 60,
    newcomer: 12,
    spoofed: 8,
    mutated: 14,
    random: 3,
    non_ip: 3,
    burst: 4,
    mean_gap_ns: 200 * US,
    jump: 30,
    tick_ns: 1,
};

/// Spoofed floods: mostly sources the table does not know.
const FLOOD_MIX: Mix = Mix {
    pool: 35,
    newcomer: 25,
    spoofed: 25,
    mutated: 10,
    random: 3,
    non_ip: 2,
    burst: 3,
    mean_gap_ns: 100 * US,
    jump: 30,
    tick_ns: 1,
};

/// A dense random-source flood.
const SPOOF_MIX: Mix = Mix {
    pool: 15,
    newcomer: 25,
    spoofed: 55,
    mutated: 3,
    random: 1,
    non_ip: 1,
    burst: 1,
    mean_gap_ns: 20 * US,
    jump: 10,
    tick_ns: 1,
};

/// [`MIX`] on a clock of 4 ms ticks (`HZ=250`).
const TICK_MIX: Mix = Mix {
    tick_ns: 4 * MS,
    ..MIX
};

/// [`FLOOD_MIX`] on a clock of 10 ms ticks (`HZ=100`).
const TICK_FLOOD_MIX: Mix = Mix {
    tick_ns: 10 * MS,
    ..FLOOD_MIX
};

struct BurstState {
    src: IpAddr,
    left: u32,
    transport: Option<Transport>,
}

/// The frame generator: a sequence of (gap before the frame, frame).
struct Traffic {
    rng: Rng,
    pool: Vec<IpAddr>,
    /// Indexes into `pool` of the sources that send most, in bursts.
    heavy: Vec<usize>,
    newcomers: Vec<(IpAddr, u32)>,
    queue: VecDeque<Vec<u8>>,
    burst: Option<BurstState>,
    mix: Mix,
}

impl Traffic {
    fn new(seed: u64) -> Self {
        let mut pool: Vec<IpAddr> = POOL_V4.iter().map(|a| IpAddr::from(*a)).collect();
        pool.extend(
            POOL_V6
                .iter()
                .map(|a| IpAddr::V6(a.parse().expect("pool address"))),
        );
        let (cache_partners, bit_partners) = colliders(&pool);
        // The block cache partners are heavy too, so that both get blocked at once and
        // take each other's slot.
        let mut heavy = HEAVY.to_vec();
        heavy.extend(pool.len()..pool.len() + cache_partners.len());
        pool.extend(cache_partners);
        pool.extend(bit_partners);
        Self {
            rng: Rng::new(seed),
            pool,
            heavy,
            newcomers: Vec::new(),
            queue: VecDeque::new(),
            burst: None,
            mix: MIX,
        }
    }

    /// Queues every truncation of a few frames of different shapes, from 14 bytes (the
    /// least `BPF_PROG_TEST_RUN` takes) to whole.
    fn queue_truncations(&mut self) {
        let src = |t: &mut Self, v4: bool| loop {
            let a = *t.rng.pick(&t.pool);
            if a.is_ipv4() == v4 {
                return a;
            }
        };
        let mut templates = Vec::new();
        let s = src(self, true);
        templates.push(Frame {
            vlans: vec![ETH_P_8021AD, ETH_P_8021Q],
            ip: ip_of(s, 3, Fragment::Whole, vec![]),
            transport: Transport::Tcp {
                flags: TCP_SYN,
                option_words: 3,
            },
            payload: 2,
        });
        let s = src(self, true);
        templates.push(Frame {
            vlans: vec![],
            ip: ip_of(s, 0, Fragment::First, vec![]),
            transport: Transport::Udp,
            payload: 1,
        });
        let s = src(self, true);
        templates.push(Frame {
            vlans: vec![ETH_P_8021Q],
            ip: ip_of(s, 1, Fragment::Whole, vec![]),
            transport: Transport::Icmp,
            payload: 0,
        });
        let s = src(self, false);
        templates.push(Frame {
            vlans: vec![],
            ip: ip_of(
                s,
                0,
                Fragment::Whole,
                vec![
                    Ext::HopByHop(0),
                    Ext::Ah(1),
                    Ext::Fragment {
                        offset: 0,
                        more: true,
                    },
                ],
            ),
            transport: Transport::Tcp {
                flags: TCP_ACK,
                option_words: 1,
            },
            payload: 0,
        });
        let s = src(self, false);
        templates.push(Frame {
            vlans: vec![ETH_P_8021Q],
            ip: ip_of(s, 0, Fragment::Whole, vec![Ext::DstOpts(1)]),
            transport: Transport::Icmpv6,
            payload: 0,
        });
        let s = src(self, false);
        templates.push(Frame {
            vlans: vec![],
            ip: ip_of(s, 0, Fragment::Whole, vec![]),
            transport: Transport::Udp,
            payload: 3,
        });
        for template in templates {
            let bytes = template.build();
            for len in 14..=bytes.len() {
                self.queue.push_back(bytes[..len].to_vec());
            }
        }
    }

    fn next(&mut self) -> (u64, Vec<u8>) {
        let (gap, mut frame) = self.next_whole();
        frame.truncate(MAX_FRAME);
        (gap, frame)
    }

    fn next_whole(&mut self) -> (u64, Vec<u8>) {
        let rng = &mut self.rng;
        let mut gap = if rng.chance(200) {
            0 // several frames within one tick of the kernel clock
        } else {
            rng.below(2 * self.mix.mean_gap_ns + 1)
        };
        if rng.below(100_000) < self.mix.jump {
            gap += rng.range(100 * MS, 3 * SEC);
        }
        if let Some(frame) = self.queue.pop_front() {
            return (gap / 4, frame);
        }
        if let Some(burst) = &mut self.burst {
            burst.left -= 1;
            let (src, transport) = (burst.src, burst.transport);
            if burst.left == 0 {
                self.burst = None;
            }
            let mut frame = shaped(&mut self.rng, src);
            if let Some(t) = transport {
                frame.transport = t;
            }
            return (self.rng.below(30 * US), frame.build());
        }
        if self.rng.chance(self.mix.burst) {
            let src = if self.rng.chance(700) {
                self.pool[*self.rng.pick(&self.heavy)]
            } else {
                *self.rng.pick(&self.pool)
            };
            let transport = self
                .rng
                .chance(500)
                .then(|| shaped(&mut self.rng, src).transport);
            let left = u32::try_from(self.rng.range(10, 150)).expect("small");
            self.burst = Some(BurstState {
                src,
                left,
                transport,
            });
        }
        let m = self.mix;
        let kind = self
            .rng
            .weighted(&[m.pool, m.newcomer, m.spoofed, m.mutated, m.random, m.non_ip]);
        let frame = match kind {
            0 => {
                let src = self.pool_source();
                shaped(&mut self.rng, src).build()
            }
            1 => {
                let src = self.newcomer();
                shaped(&mut self.rng, src).build()
            }
            2 => {
                let src = spoofed(&mut self.rng);
                shaped(&mut self.rng, src).build()
            }
            3 => {
                let src = if self.rng.chance(700) {
                    self.pool_source()
                } else {
                    self.newcomer()
                };
                let frame = shaped(&mut self.rng, src).build();
                mutate(&mut self.rng, frame)
            }
            4 => {
                let len = if self.rng.chance(900) {
                    self.rng.range(14, 200)
                } else {
                    self.rng.range(14, 1_514)
                };
                frames::random_bytes(&mut self.rng, usize::try_from(len).expect("small"))
            }
            _ => {
                let ether_type = *self.rng.pick(&[ETH_P_ARP, ETH_P_LLDP, 0x0842, 0x88e5]);
                let vlans = random_vlans(&mut self.rng, false);
                let payload = usize::try_from(self.rng.range(0, 60)).expect("small");
                frames::non_ip(&mut self.rng, &vlans, ether_type, payload)
            }
        };
        (gap, frame)
    }

    fn pool_source(&mut self) -> IpAddr {
        // The heavy sources send a third of the pool's frames.
        if self.rng.chance(330) {
            self.pool[*self.rng.pick(&self.heavy)]
        } else {
            *self.rng.pick(&self.pool)
        }
    }

    /// A source that sends a few packets and is then gone: the admission sketch's business.
    fn newcomer(&mut self) -> IpAddr {
        if self.newcomers.len() < 24 || self.rng.chance(150) {
            let src = spoofed(&mut self.rng);
            let packets = u32::try_from(self.rng.range(1, 9)).expect("small");
            self.newcomers.push((src, packets));
        }
        let i = self.rng.index(self.newcomers.len());
        let (src, left) = &mut self.newcomers[i];
        let src = *src;
        *left -= 1;
        if *left == 0 {
            self.newcomers.swap_remove(i);
        }
        src
    }
}

/// Sources that share a block cache slot or a tracked-filter bit with a pool source, so
/// that blocked sources evict each other from the cache and an untracked source's packets
/// take the table path because of its neighbour's bit. Searched in fixed ranges, so the
/// same on every run.
fn colliders(pool: &[IpAddr]) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let keys: Vec<[u8; 16]> = pool.iter().map(|a| key_of(*a).addr).collect();
    // 198.18.0.0/15, and 2001:2:0:3::/64 (its first 2^18 addresses), as table keys.
    let v4 = || (0u32..1 << 17).map(|i| SourceKey::from_ipv4(i.to_be_bytes()).addr);
    let v4 = move || {
        v4().map(|mut a| {
            a[12] = 198;
            a[13] = 18 + (a[13] & 1);
            a
        })
    };
    let v6 = (0u32..1 << 18).map(|i| {
        let mut a = [0x20, 0x01, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0];
        a[12..].copy_from_slice(&i.to_be_bytes());
        a
    });
    let mut cache_partners = Vec::new();
    // Block cache: a partner for each heavy IPv4 source.
    for &h in &HEAVY {
        if pool[h].is_ipv6() {
            continue;
        }
        let slot = block_cache_slot(&SourceKey { addr: keys[h] });
        cache_partners.extend(
            v4().find(|a| *a != keys[h] && block_cache_slot(&SourceKey { addr: *a }) == slot)
                .map(|a| IpAddr::from([a[12], a[13], a[14], a[15]])),
        );
    }
    // Tracked filter: partners of any pool source.
    let bits: HashSet<(u32, usize, u64)> = keys
        .iter()
        .map(|addr| tracked_bit(&SourceKey { addr: *addr }))
        .collect();
    let bit_partners = v4()
        .chain(v6)
        .filter(|a| bits.contains(&tracked_bit(&SourceKey { addr: *a })) && !keys.contains(a))
        .take(6)
        .map(|a| {
            let v6 = Ipv6Addr::from(a);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        })
        .collect();
    (cache_partners, bit_partners)
}

fn key_of(addr: IpAddr) -> SourceKey {
    match addr {
        IpAddr::V4(a) => SourceKey::from_ipv4(a.octets()),
        IpAddr::V6(a) => SourceKey::from_ipv6(a.octets()),
    }
}

/// A spoofed source: anywhere in 198.18.0.0/15 or in `2001:2:0:8000::/49`.
fn spoofed(rng: &mut Rng) -> IpAddr {
    if rng.chance(600) {
        IpAddr::from([198, 18 + u8::from(rng.chance(500)), rng.byte(), rng.byte()])
    } else {
        let mut a = [0u8; 16];
        rng.fill(&mut a);
        a[..6].copy_from_slice(&[0x20, 0x01, 0, 2, 0, 0]);
        a[6] |= 0x80;
        IpAddr::from(a)
    }
}

fn ip_of(src: IpAddr, option_words: u8, fragment: Fragment, ext: Vec<Ext>) -> Ip {
    match src {
        IpAddr::V4(a) => Ip::V4 {
            src: a.octets(),
            option_words,
            fragment,
        },
        IpAddr::V6(a) => Ip::V6 {
            src: a.octets(),
            ext,
        },
    }
}

fn random_vlans(rng: &mut Rng, allow_three: bool) -> Vec<u16> {
    let n = match rng.below(1000) {
        0..700 => 0,
        700..900 => 1,
        900..990 => 2,
        _ if allow_three => 3,
        _ => 2,
    };
    (0..n)
        .map(|_| *rng.pick(&[ETH_P_8021Q, ETH_P_8021AD]))
        .collect()
}

/// A well-formed frame from `src` of a random shape.
fn shaped(rng: &mut Rng, src: IpAddr) -> Frame {
    let v4 = src.is_ipv4();
    let transport = match rng.weighted(&[20, 22, 25, 15, 10]) {
        0 => Transport::Tcp {
            flags: TCP_SYN | if rng.chance(200) { TCP_FIN } else { 0 },
            option_words: u8::try_from(rng.below(6)).expect("small"),
        },
        1 => Transport::Tcp {
            flags: *rng.pick(&[
                TCP_ACK,
                TCP_ACK | TCP_PSH,
                TCP_SYN | TCP_ACK,
                TCP_RST,
                TCP_FIN | TCP_ACK,
                0,
            ]),
            option_words: u8::try_from(rng.below(4)).expect("small"),
        },
        2 => Transport::Udp,
        3 => {
            // Mostly the family's own ICMP; the other one now and then.
            if v4 == rng.chance(100) {
                Transport::Icmpv6
            } else {
                Transport::Icmp
            }
        }
        _ => {
            let unknown = rng_proto(rng);
            Transport::Raw(*rng.pick(&[
                IPPROTO_GRE,
                IPPROTO_ESP,
                IPPROTO_SCTP,
                IPPROTO_NONE,
                unknown,
            ]))
        }
    };
    let fragment = match rng.below(100) {
        0..86 => Fragment::Whole,
        86..93 => Fragment::First,
        _ => Fragment::Later {
            offset: u16::try_from(rng.range(1, 0x1fff)).expect("13 bits"),
            more: rng.chance(500),
        },
    };
    let option_words = if rng.chance(150) {
        u8::try_from(rng.range(1, 10)).expect("small")
    } else {
        0
    };
    let ext = if v4 || rng.chance(600) {
        vec![]
    } else {
        let n = if rng.chance(900) {
            rng.range(1, 3)
        } else {
            rng.range(4, 7)
        };
        (0..n).map(|_| random_ext(rng)).collect()
    };
    let payload = match rng.below(100) {
        0..70 => rng.below(64),
        70..95 => rng.range(64, 600),
        _ => rng.range(600, 1_400),
    };
    Frame {
        vlans: random_vlans(rng, true),
        ip: ip_of(src, option_words, fragment, ext),
        transport,
        payload: usize::try_from(payload).expect("small"),
    }
}

/// A protocol number the parser does not know.
fn rng_proto(rng: &mut Rng) -> u8 {
    loop {
        let p = rng.byte();
        if ![0, 1, 6, 17, 43, 44, 51, 58, 60].contains(&p) {
            return p;
        }
    }
}

fn random_ext(rng: &mut Rng) -> Ext {
    let len = u8::try_from(if rng.chance(900) {
        rng.below(3)
    } else {
        rng.range(3, 30)
    })
    .expect("small");
    match rng.below(5) {
        0 => Ext::HopByHop(len),
        1 => Ext::Routing(len),
        2 => Ext::DstOpts(len),
        3 => Ext::Ah(len + 1),
        _ => Ext::Fragment {
            offset: if rng.chance(600) {
                0
            } else {
                u16::try_from(rng.range(1, 0x1fff)).expect("13 bits")
            },
            more: rng.chance(600),
        },
    }
}

/// Breaks a well-formed frame: truncation, bit flips, a special byte, extra bytes.
fn mutate(rng: &mut Rng, mut frame: Vec<u8>) -> Vec<u8> {
    let headers = 110;
    match rng.below(6) {
        0 => frame.truncate(usize::try_from(rng.range(14, frame.len() as u64)).expect("small")),
        1 => {
            let flips = rng_count(rng);
            frames::flip_bits(rng, &mut frame, flips, headers);
        }
        2 => frames::poke_byte(rng, &mut frame, headers),
        3 => {
            let extra = usize::try_from(rng.range(1, 64)).expect("small");
            let start = frame.len();
            frame.resize(start + extra, 0);
            rng.fill(&mut frame[start..]);
        }
        4 => {
            frames::poke_byte(rng, &mut frame, headers);
            frames::flip_bits(rng, &mut frame, 1, headers);
        }
        _ => {
            let flips = rng_count(rng);
            frames::flip_bits(rng, &mut frame, flips, headers);
            frame.truncate(usize::try_from(rng.range(14, frame.len() as u64)).expect("small"));
        }
    }
    if frame.len() < 14 {
        frame.resize(14, 0);
    }
    frame
}

fn rng_count(rng: &mut Rng) -> usize {
    usize::try_from(rng.range(1, 3)).expect("small")
}

// ---------------------------------------------------------------------------------------
// Scenarios.

/// A list operation at the start of a phase.
#[derive(Clone, Copy, Debug)]
enum ListOp {
    /// Adds a prefix; deny entries may expire this many seconds after the phase starts.
    Add(List, &'static str, Option<u64>),
    /// Removes a prefix.
    Remove(List, &'static str),
    /// Deletes the expired denylist entries, as the daemon's sweep does.
    Expire,
}

struct Phase {
    weight: usize,
    change: LimitsChange,
    lists: Vec<ListOp>,
    mix: Mix,
}

struct Scenario {
    name: &'static str,
    phases: Vec<Phase>,
}

/// A rate as a change sets it.
#[expect(clippy::unnecessary_wraps, reason = "a change's fields are options")]
fn per_second(n: u64) -> Option<Rate> {
    Some(Rate::PerSecond(n))
}

const OFF: Option<Rate> = Some(Rate::Unlimited);

/// Every setting, so that a scenario starts from known limits whatever the defaults are.
fn base(pps: u64, burst: u64, admit_packets: u32) -> LimitsChange {
    LimitsChange {
        pps: per_second(pps),
        burst_packets: Some(Burst::Exactly(burst)),
        bps: OFF,
        burst_bytes: Some(Burst::Auto),
        block_for_ms: Some(1_500),
        mode: Some(FilterMode::Enforce),
        class_pps: [OFF; CLASSES],
        ceiling_pps: [OFF; CLASSES],
        admit_packets: Some(admit_packets),
        admit_rate: OFF,
        syn_cookie_rate: OFF,
        syn_admit_rate: OFF,
        syn_auto_quiet_ms: Some(60_000),
        monitor_classes: [Some(false); CLASSES],
        deny_mode: Some(FilterMode::Enforce),
        prefix_len: [Some(24), Some(64), Some(48)],
        prefix_pps: [OFF; 3],
        prefix_bps: [OFF; 3],
        prefix_class_pps: [[OFF; CLASSES]; 3],
    }
}

fn phase(weight: usize, change: LimitsChange) -> Phase {
    Phase {
        weight,
        change,
        lists: vec![],
        mix: MIX,
    }
}

fn with(f: impl FnOnce(&mut LimitsChange)) -> LimitsChange {
    let mut change = LimitsChange::default();
    f(&mut change);
    change
}

const fn c(class: Class) -> usize {
    class as usize
}

#[expect(clippy::too_many_lines, reason = "the scenarios, read top to bottom")]
fn scenarios(rng: &mut Rng) -> Vec<Scenario> {
    let per_source = Scenario {
        name: "per-source limits, blocks, monitor modes",
        phases: vec![
            phase(6, base(300, 30, 1)),
            phase(
                4,
                with(|l| {
                    l.class_pps[c(Class::Syn)] = per_second(5);
                    l.class_pps[c(Class::Icmp)] = per_second(10);
                    l.bps = per_second(160_000);
                    l.burst_bytes = Some(Burst::Exactly(3_000));
                }),
            ),
            phase(
                3,
                with(|l| {
                    l.mode = Some(FilterMode::Monitor);
                }),
            ),
            phase(
                3,
                with(|l| {
                    l.mode = Some(FilterMode::Enforce);
                    l.monitor_classes[c(Class::Udp)] = Some(true);
                    l.monitor_classes[c(Class::Fragment)] = Some(true);
                }),
            ),
            // Round costs (1 ms a packet, 10 ms a TCP segment) on a ticking clock: the
            // bursts end exactly on their bounds.
            Phase {
                mix: TICK_MIX,
                ..phase(
                    4,
                    with(|l| {
                        l.pps = per_second(1_000);
                        l.burst_packets = Some(Burst::Auto);
                        l.class_pps[c(Class::Tcp)] = per_second(100);
                        l.class_pps[c(Class::Syn)] = OFF;
                        l.class_pps[c(Class::Icmp)] = OFF;
                        l.block_for_ms = Some(3_000);
                        l.monitor_classes = [Some(false); CLASSES];
                        l.bps = per_second(2_000_000);
                        l.burst_bytes = Some(Burst::Auto);
                    }),
                )
            },
        ],
    };
    let mut ceilings = [OFF; CLASSES];
    for (class, rate) in [
        (Class::Syn, 400),
        (Class::Tcp, 800),
        (Class::Udp, 800),
        (Class::Icmp, 200),
        (Class::Fragment, 200),
        (Class::Other, 200),
    ] {
        ceilings[c(class)] = per_second(rate);
    }
    let flood = |weight, change| Phase {
        mix: FLOOD_MIX,
        ..phase(weight, change)
    };
    let tick_flood = |weight, change| Phase {
        mix: TICK_FLOOD_MIX,
        ..phase(weight, change)
    };
    let admission = Scenario {
        name: "admission, its budget, ceilings",
        phases: vec![
            flood(
                5,
                LimitsChange {
                    ceiling_pps: ceilings,
                    admit_rate: per_second(200),
                    block_for_ms: Some(1_000),
                    ..base(500, 50, 4)
                },
            ),
            tick_flood(
                3,
                with(|l| {
                    l.admit_packets = Some(2);
                    l.admit_rate = per_second(50);
                }),
            ),
            flood(
                3,
                with(|l| {
                    l.monitor_classes[c(Class::Syn)] = Some(true);
                    l.monitor_classes[c(Class::Udp)] = Some(true);
                }),
            ),
            flood(
                2,
                with(|l| {
                    l.mode = Some(FilterMode::Monitor);
                }),
            ),
            tick_flood(
                3,
                with(|l| {
                    l.mode = Some(FilterMode::Enforce);
                    l.monitor_classes = [Some(false); CLASSES];
                    l.admit_packets = Some(1);
                    l.admit_rate = per_second(30);
                }),
            ),
            flood(
                3,
                with(|l| {
                    l.admit_packets = Some(6);
                    l.admit_rate = OFF;
                    l.ceiling_pps[c(Class::Udp)] = per_second(100);
                    l.ceiling_pps[c(Class::Syn)] = per_second(50);
                    l.pps = per_second(200);
                    l.burst_packets = Some(Burst::Exactly(20));
                }),
            ),
            // Tens of thousands of sources an epoch: the sketch's buckets fill, and only
            // its estimates (conservative update, epochs) decide who is admitted.
            Phase {
                mix: SPOOF_MIX,
                ..phase(
                    3,
                    with(|l| {
                        l.admit_packets = Some(8);
                        l.ceiling_pps = [OFF; CLASSES];
                    }),
                )
            },
        ],
    };
    let prefixes = Scenario {
        name: "prefix limits",
        phases: vec![
            Phase {
                mix: TICK_MIX,
                ..phase(
                    5,
                    LimitsChange {
                        prefix_pps: [per_second(200), per_second(125), OFF],
                        block_for_ms: Some(1_000),
                        ..base(400, 40, 2)
                    },
                )
            },
            phase(
                4,
                with(|l| {
                    l.prefix_class_pps[0][c(Class::Udp)] = per_second(50);
                    l.prefix_class_pps[1][c(Class::Syn)] = per_second(20);
                    l.prefix_bps[0] = per_second(800_000);
                    l.prefix_bps[2] = per_second(1_600_000);
                }),
            ),
            phase(
                3,
                with(|l| {
                    l.mode = Some(FilterMode::Monitor);
                }),
            ),
            phase(
                4,
                with(|l| {
                    l.mode = Some(FilterMode::Enforce);
                    l.prefix_len = [Some(28), Some(80), Some(56)];
                    l.prefix_pps[2] = per_second(300);
                    l.monitor_classes[c(Class::Icmp)] = Some(true);
                    l.ceiling_pps[c(Class::Other)] = per_second(100);
                }),
            ),
            phase(
                3,
                with(|l| {
                    l.prefix_pps = [OFF; 3];
                    l.prefix_bps = [OFF; 3];
                    l.prefix_class_pps = [[OFF; CLASSES]; 3];
                    l.admit_packets = Some(3);
                    l.monitor_classes[c(Class::Icmp)] = Some(false);
                }),
            ),
        ],
    };
    let lists = Scenario {
        name: "allow and deny lists",
        phases: vec![
            Phase {
                lists: vec![
                    ListOp::Add(List::Allow, "198.18.1.16/30", None),
                    ListOp::Add(List::Allow, "2001:2:0:2::21/128", None),
                    ListOp::Add(List::Deny, "198.18.2.0/24", None),
                    // Inside the /24: once expired, the trie still answers with it, and
                    // the /24 no longer applies to that address.
                    ListOp::Add(List::Deny, "198.18.2.21/32", Some(3)),
                    ListOp::Add(List::Deny, "198.19.0.0/16", Some(60)),
                    ListOp::Add(List::Deny, "2001:2:0:1::c/127", Some(5)),
                ],
                ..phase(
                    5,
                    LimitsChange {
                        block_for_ms: Some(2_000),
                        ..base(300, 30, 1)
                    },
                )
            },
            phase(
                3,
                with(|l| {
                    l.deny_mode = Some(FilterMode::Monitor);
                }),
            ),
            Phase {
                lists: vec![
                    ListOp::Add(List::Allow, "198.18.1.10/32", None),
                    ListOp::Add(List::Deny, "2001:2:0:2::/64", Some(2)),
                ],
                ..phase(
                    3,
                    with(|l| {
                        l.mode = Some(FilterMode::Monitor);
                        l.deny_mode = Some(FilterMode::Enforce);
                    }),
                )
            },
            Phase {
                lists: vec![
                    ListOp::Expire,
                    ListOp::Remove(List::Deny, "198.18.2.0/24"),
                    ListOp::Add(List::Deny, "2001:2::/48", Some(2)),
                    ListOp::Add(List::Deny, "198.18.1.8/29", Some(4)),
                ],
                ..phase(
                    3,
                    with(|l| {
                        l.mode = Some(FilterMode::Enforce);
                        l.monitor_classes[c(Class::Udp)] = Some(true);
                    }),
                )
            },
            Phase {
                lists: vec![
                    ListOp::Remove(List::Allow, "198.18.1.16/30"),
                    ListOp::Remove(List::Allow, "2001:2:0:2::21/128"),
                    ListOp::Remove(List::Allow, "198.18.1.10/32"),
                    ListOp::Expire,
                ],
                ..phase(
                    3,
                    with(|l| {
                        l.monitor_classes[c(Class::Udp)] = Some(false);
                        l.pps = per_second(150);
                        l.burst_packets = Some(Burst::Exactly(15));
                    }),
                )
            },
        ],
    };
    let random = Scenario {
        name: "random limits and lists",
        phases: (0..6)
            .map(|_| Phase {
                weight: 3,
                change: random_limits(rng),
                lists: random_list_ops(rng),
                mix: *rng.pick(&[MIX, FLOOD_MIX, TICK_MIX, TICK_FLOOD_MIX]),
            })
            .collect(),
    };
    vec![per_source, admission, prefixes, lists, random]
}

/// Any valid limits, drawn at random.
fn random_limits(rng: &mut Rng) -> LimitsChange {
    let rate = |rng: &mut Rng, per_mille, lo, hi| {
        if rng.chance(per_mille) {
            per_second(rng.range(lo, hi))
        } else {
            OFF
        }
    };
    let mut change = base(100, 10, 1);
    change.pps = rate(rng, 800, 50, 3_000);
    if let Some(Rate::PerSecond(pps)) = change.pps {
        change.burst_packets = Some(if rng.chance(300) {
            Burst::Auto
        } else {
            Burst::Exactly(rng.range((pps * 3).div_ceil(100), pps * 2))
        });
    }
    change.bps = rate(rng, 400, 80_000, 8_000_000);
    if let Some(Rate::PerSecond(bps)) = change.bps {
        let per_cent = rng.range(3, 200);
        change.burst_bytes = Some(Burst::Exactly((bps / 8 * per_cent / 100).max(1_500)));
    }
    for class in 0..CLASSES {
        change.class_pps[class] = rate(rng, 250, 10, 500);
        change.ceiling_pps[class] = rate(rng, 500, 50, 2_000);
        change.monitor_classes[class] = Some(rng.chance(100));
    }
    change.admit_packets = Some(u32::try_from(rng.range(1, 6)).expect("small"));
    change.admit_rate = rate(rng, 500, 10, 500);
    change.mode = Some(if rng.chance(200) {
        FilterMode::Monitor
    } else {
        FilterMode::Enforce
    });
    change.deny_mode = Some(if rng.chance(200) {
        FilterMode::Monitor
    } else {
        FilterMode::Enforce
    });
    change.block_for_ms = Some(rng.range(1_000, 4_000));
    let lens = [(16, 32), (32, 128), (32, 64)];
    for (scope, (lo, hi)) in lens.into_iter().enumerate() {
        change.prefix_len[scope] = Some(u32::try_from(rng.range(lo, hi)).expect("small"));
        if rng.chance(350) {
            change.prefix_pps[scope] = rate(rng, 700, 50, 1_000);
            change.prefix_bps[scope] = rate(rng, 300, 400_000, 4_000_000);
            for class in 0..CLASSES {
                change.prefix_class_pps[scope][class] = rate(rng, 200, 10, 300);
            }
        }
    }
    change
}

/// Prefixes the random scenario adds and removes, around the pool's sources.
const LIST_PREFIXES: [&str; 14] = [
    "198.18.1.0/24",
    "198.18.1.8/29",
    "198.18.1.12/30",
    "198.18.1.10/32",
    "198.18.2.0/23",
    "198.18.0.0/15",
    "198.19.0.0/16",
    "2001:2:0:1::/64",
    "2001:2:0:1::8/125",
    "2001:2::/48",
    "2001:2:0:2::20/127",
    "2001:2:0:2::21/128",
    "2001:2:0:100::/56",
    "2001:2:8000::/33",
];

fn random_list_ops(rng: &mut Rng) -> Vec<ListOp> {
    let mut ops = Vec::new();
    for _ in 0..rng.range(0, 4) {
        let prefix = *rng.pick(&LIST_PREFIXES);
        let op = match rng.below(5) {
            0 => ListOp::Add(List::Allow, prefix, None),
            1 | 2 => ListOp::Add(
                List::Deny,
                prefix,
                rng.chance(600).then(|| rng.range(1, 10)),
            ),
            3 => ListOp::Remove(*rng.pick(&[List::Allow, List::Deny]), prefix),
            _ => ListOp::Expire,
        };
        ops.push(op);
    }
    ops
}

// ---------------------------------------------------------------------------------------
// The comparison.

/// What happened to one frame, kept for the reproducer.
#[derive(Clone, Debug)]
struct Seen {
    index: usize,
    now_ns: u64,
    decision: Decision,
    frame_len: usize,
}

/// The run: one program load for every scenario (a load costs seconds of verifier time,
/// ten times that under emulation), the model, the clock.
struct Run {
    settings: Settings,
    scenario: &'static str,
    phase: usize,
    program: Program,
    model: Model,
    limits: Limits,
    kernel: LimitsConfig,
    /// The test clock: `clock_ns` rounded down to the phase's tick.
    now_ns: u64,
    clock_ns: u64,
    tick_ns: u64,
    written: Option<LimitsConfig>,
    /// Frames run so far.
    index: usize,
    last_full_check: usize,
    history: VecDeque<Seen>,
}

impl Run {
    fn new(settings: Settings) -> Self {
        let limits = Limits::default();
        let kernel = limits.to_kernel();
        Self {
            settings,
            scenario: "",
            phase: 0,
            program: Program::load(settings.frames),
            model: Model::new(kernel),
            limits,
            kernel,
            now_ns: START_NS,
            clock_ns: START_NS,
            tick_ns: 1,
            written: None,
            index: 0,
            last_full_check: 0,
            history: VecDeque::new(),
        }
    }

    /// A scenario starts with empty lists (its first phase sets every limit).
    fn start_scenario(&mut self, name: &'static str) {
        self.scenario = name;
        for list in [List::Allow, List::Deny] {
            for entry in self.model.list_entries(list) {
                let kind = match list {
                    List::Allow => ListKind::Allow,
                    List::Deny => ListKind::Deny,
                };
                let prefix = Prefix::new(entry.net, entry.len).expect("prefix");
                self.program
                    .lists
                    .remove(kind, &[prefix])
                    .expect("list remove");
                self.model.list_remove(list, entry.net, entry.len);
            }
        }
    }

    fn start_phase(&mut self, number: usize, phase: &Phase) {
        self.phase = number;
        self.tick_ns = phase.mix.tick_ns;
        self.limits = self
            .limits
            .apply(&phase.change)
            .unwrap_or_else(|e| panic!("phase {number} of {}: {e}", self.scenario));
        self.kernel = self.limits.to_kernel();
        for op in &phase.lists {
            self.list_op(*op);
        }
        let presence = self.program.lists.nonempty().expect("presence").flag_bits();
        assert_eq!(
            presence,
            self.model.list_presence(),
            "the lists hold what the model holds"
        );
    }

    fn list_op(&mut self, op: ListOp) {
        let kind = |list| match list {
            List::Allow => ListKind::Allow,
            List::Deny => ListKind::Deny,
        };
        match op {
            ListOp::Add(list, text, expires_in) => {
                let (net, len) = parse_prefix(text);
                let expires = expires_in.map(|s| self.now_ns + s * SEC);
                self.program
                    .lists
                    .add(kind(list), &[prefix_of(text)], expires)
                    .expect("list add");
                self.model.list_add(list, net, len, expires.unwrap_or(0));
            }
            ListOp::Remove(list, text) => {
                let (net, len) = parse_prefix(text);
                if self.model.list_remove(list, net, len) {
                    self.program
                        .lists
                        .remove(kind(list), &[prefix_of(text)])
                        .expect("list remove");
                }
            }
            ListOp::Expire => {
                let now = self.now_ns;
                let expired = self.program.lists.expire(now).expect("expire");
                let due: Vec<_> = self
                    .model
                    .list_entries(List::Deny)
                    .into_iter()
                    .filter(|e| e.expires_ns != 0 && e.expires_ns <= now)
                    .collect();
                for entry in &due {
                    self.model.list_remove(List::Deny, entry.net, entry.len);
                }
                assert_eq!(
                    expired.len(),
                    due.len(),
                    "the daemon's sweep deletes the entries the model has expired"
                );
            }
        }
    }

    fn advance(&mut self, gap_ns: u64) {
        self.clock_ns += gap_ns;
        self.now_ns = self.now_ns.max(self.clock_ns / self.tick_ns * self.tick_ns);
    }

    /// Writes the limits with the clock when either changed.
    fn sync_limits(&mut self) {
        let config = LimitsConfig {
            test_now_ns: self.now_ns,
            list_flags: self.kernel.list_flags | self.model.list_presence(),
            ..self.kernel
        };
        if self.written != Some(config) {
            self.program
                .loaded
                .maps
                .write_limits(&config)
                .expect("write limits");
            self.model.limits = config;
            self.written = Some(config);
        }
    }

    fn step(&mut self, frame: &[u8]) {
        self.sync_limits();
        let decision = self.model.run(frame);
        let verdict = self.program.run(frame);
        let index = decision.counter_index();
        let counted = self.program.counter(index);
        let expected = self.model.counters()[index as usize];
        if verdict != decision.verdict() || counted != expected {
            self.mismatch(frame, &decision, verdict, counted);
        }
        self.history.push_back(Seen {
            index: self.index,
            now_ns: self.now_ns,
            decision,
            frame_len: frame.len(),
        });
        if self.history.len() > 12 {
            self.history.pop_front();
        }
        self.index += 1;
        if self.index.is_multiple_of(self.settings.check_every) {
            self.full_check();
        }
    }

    /// Compares every counter, the events and the table's inserts since the last check.
    fn full_check(&mut self) {
        let program = self.program.all_counters();
        let model = self.model.counters();
        let mut diffs = String::new();
        for (i, (p, m)) in program.iter().zip(model).enumerate() {
            if p != m {
                let _ = writeln!(
                    diffs,
                    "  counter {}: program {p:?}, model {m:?}",
                    slot_name(i)
                );
            }
        }
        let events_p = self.program.drain_events();
        let events_m = self.model.take_events();
        if events_p != events_m {
            let _ = writeln!(diffs, "  events sent by the program:");
            for e in &events_p {
                let _ = writeln!(diffs, "    {}", event_text(e));
            }
            let _ = writeln!(diffs, "  events the model expects:");
            for e in &events_m {
                let _ = writeln!(diffs, "    {}", event_text(e));
            }
        }
        let table = self.program.loaded.maps.table_stats().expect("table stats");
        if table.inserts != self.model.source_count() as u64
            || table.insert_failures != 0
            || table.evictions != 0
        {
            let _ = writeln!(
                diffs,
                "  table: program inserted {} sources ({} refused, {} evicted), model {}",
                table.inserts,
                table.insert_failures,
                table.evictions,
                self.model.source_count()
            );
        }
        assert!(
            diffs.is_empty(),
            "differential test: program and model differ in frames {}..{} of the run \
             (scenario \"{}\", phase {}); seed {:#x}\n{diffs}\
             rerun with FLOODWALL_DIFF_SEED={:#x} FLOODWALL_DIFF_CHECK_EVERY=1 to stop at the \
             frame",
            self.last_full_check,
            self.index,
            self.scenario,
            self.phase,
            self.settings.seed,
            self.settings.seed,
        );
        self.last_full_check = self.index;
    }

    /// The checks at the end of a scenario: everything above and the list hit counters.
    fn finish_scenario(&mut self) {
        self.full_check();
        for (list, kind) in [(List::Allow, ListKind::Allow), (List::Deny, ListKind::Deny)] {
            let mut program: Vec<(Prefix, u64, u64)> = self
                .program
                .lists
                .list(kind, self.now_ns)
                .expect("list")
                .into_iter()
                .map(|v| (v.prefix, v.hit_packets, v.hit_bytes))
                .collect();
            let mut model: Vec<(Prefix, u64, u64)> = self
                .model
                .list_entries(list)
                .into_iter()
                .filter(|e| e.expires_ns == 0 || self.now_ns < e.expires_ns)
                .map(|e| {
                    (
                        Prefix::new(e.net, e.len).expect("prefix"),
                        e.hit_packets,
                        e.hit_bytes,
                    )
                })
                .collect();
            program.sort();
            model.sort();
            assert_eq!(
                program, model,
                "{list:?} hit counters of scenario \"{}\" (seed {:#x})",
                self.scenario, self.settings.seed
            );
        }
    }

    /// The checks at the end of the run: the table never evicted, no event was lost.
    fn finish(&mut self) -> Vec<Counter> {
        let tracked = self.program.loaded.maps.all_sources().expect("walk").len();
        assert_eq!(
            tracked,
            self.model.source_count(),
            "the source table evicted nobody"
        );
        assert_eq!(
            self.program.loaded.maps.events_lost().expect("events lost"),
            0,
            "no event lost"
        );
        self.model.counters().to_vec()
    }

    fn mismatch(&self, frame: &[u8], decision: &Decision, verdict: u32, counted: Counter) -> ! {
        let mut before: Vec<Counter> = self.model.counters().to_vec();
        let i = decision.counter_index() as usize;
        before[i].packets -= 1;
        before[i].bytes -= frame.len() as u64;
        let after = self.program.all_counters();
        let program_counted: Vec<String> = after
            .iter()
            .zip(&before)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| {
                format!(
                    "{} (+{} packets, +{} bytes)",
                    slot_name(i),
                    a.packets.wrapping_sub(b.packets),
                    a.bytes.wrapping_sub(b.bytes)
                )
            })
            .collect();
        let mut out = String::new();
        let s = self.settings;
        let _ = writeln!(
            out,
            "differential test: the program and the model disagree on frame {} of the run \
             (scenario \"{}\", phase {})",
            self.index, self.scenario, self.phase
        );
        let _ = writeln!(
            out,
            "reproduce: FLOODWALL_DIFF_SEED={:#x} FLOODWALL_DIFF_FRAMES={} \
             FLOODWALL_DIFF_CHECK_EVERY={} (CPU {})",
            s.seed,
            s.frames,
            s.check_every,
            Pinned::current_cpu()
        );
        let _ = writeln!(out, "frame ({} bytes): {}", frame.len(), hex(frame));
        let _ = writeln!(out, "parsed by the model: {:?}", decision.parsed);
        let _ = writeln!(
            out,
            "model:   {} class {} outcome {}",
            verdict_name(decision.verdict()),
            decision.class.name(),
            decision.outcome.name()
        );
        let _ = writeln!(
            out,
            "program: {} counted in {:?} (the predicted counter reads {counted:?}, the model \
             {:?})",
            verdict_name(verdict),
            program_counted,
            self.model.counters()[i]
        );
        let _ = writeln!(out, "clock: {} ns", self.now_ns);
        if let Parsed::Source { key, .. } = decision.parsed {
            let _ = writeln!(
                out,
                "source {}: model state (after the frame) {:#?}",
                addr_text(&key),
                self.model.source(&key)
            );
            let _ = writeln!(
                out,
                "program state {:#?}",
                self.program.loaded.maps.source(&key).ok().flatten()
            );
            let _ = writeln!(
                out,
                "tracked bit: model {}, program {:?}; block cache slot {} (model): {:?}; sketch \
                 cells (model): {:x?}; prefixes (model): {:#?}",
                self.model.is_marked(&key),
                self.program.loaded.maps.is_marked(&key).ok(),
                block_cache_slot(&key),
                self.model.block_cache_slot(&key),
                self.model.sketch_cells(&key),
                self.model.prefixes_of(&key)
            );
        }
        let _ = writeln!(
            out,
            "ceiling and admission TATs (model): {:?}",
            self.model.ceilings()
        );
        let _ = writeln!(out, "limits: {:?}", self.model.limits);
        let _ = writeln!(out, "the frames before it:");
        for seen in &self.history {
            let _ = writeln!(
                out,
                "  #{} at {} ns, {} bytes: {:?} -> {} {}",
                seen.index,
                seen.now_ns,
                seen.frame_len,
                seen.decision.parsed,
                seen.decision.class.name(),
                seen.decision.outcome.name()
            );
        }
        panic!("{out}");
    }
}

impl Pinned {
    fn current_cpu() -> i32 {
        // SAFETY: sched_getcpu has no preconditions.
        unsafe { libc::sched_getcpu() }
    }
}

fn slot_name(index: usize) -> String {
    let slots = COUNTER_SLOTS as usize;
    let class = Class::ALL
        .get(index / slots)
        .map_or("?", |c| c.name())
        .to_owned();
    let outcome = u32::try_from(index % slots)
        .ok()
        .and_then(|o| Outcome::try_from(o).ok())
        .map_or_else(
            || format!("slot {}", index % slots),
            |o| o.name().to_owned(),
        );
    format!("{class}/{outcome}")
}

fn event_text(e: &Event) -> String {
    format!(
        "type {} source {} kind {} mode {} until {} at {} hits {} class {}",
        e.event_type,
        addr_text(&SourceKey { addr: e.addr }),
        e.limit_kind,
        e.mode,
        e.blocked_until_ns,
        e.now_ns,
        e.hits,
        e.class
    )
}

fn verdict_name(verdict: u32) -> &'static str {
    match verdict {
        XDP_DROP => "XDP_DROP",
        2 => "XDP_PASS",
        _ => "another verdict",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn addr_text(key: &SourceKey) -> String {
    let v6 = Ipv6Addr::from(key.addr);
    v6.to_ipv4_mapped()
        .map_or_else(|| v6.to_string(), |v4: Ipv4Addr| v4.to_string())
}

fn parse_prefix(text: &str) -> (IpAddr, u8) {
    let (addr, len) = text.split_once('/').expect("a prefix with a length");
    (
        addr.parse().expect("prefix address"),
        len.parse().expect("prefix length"),
    )
}

fn prefix_of(text: &str) -> Prefix {
    text.parse().expect("prefix")
}

// ---------------------------------------------------------------------------------------
// The test.

/// Outcomes that must be reached in a full run (`TableFull` cannot be: the tables never
/// fill).
const MUST_REACH: [Outcome; 14] = [
    Outcome::Passed,
    Outcome::Allowed,
    Outcome::DroppedBlocked,
    Outcome::DroppedDenied,
    Outcome::MonitorDenied,
    Outcome::DroppedRateLimit,
    Outcome::MonitorRateLimit,
    Outcome::DroppedCeiling,
    Outcome::MonitorCeiling,
    Outcome::DroppedPrefixLimit,
    Outcome::MonitorPrefixLimit,
    Outcome::MonitorBlocked,
    Outcome::Malformed,
    Outcome::NonIp,
];

#[test]
fn the_program_decides_as_the_model_on_every_frame() {
    if !privileged("the_program_decides_as_the_model_on_every_frame") {
        return;
    }
    let settings = settings();
    let started = Instant::now();
    let pinned = Pinned::here();
    let mut rng = Rng::new(settings.seed);
    let scenarios = scenarios(&mut rng);
    let total_weight: usize = scenarios
        .iter()
        .flat_map(|s| &s.phases)
        .map(|p| p.weight)
        .sum();
    let mut traffic = Traffic::new(rng.next_u64());
    let generator = started.elapsed();
    let mut run = Run::new(settings);
    let load = started.elapsed().saturating_sub(generator);
    let mut frames_left = settings.frames;
    for scenario in &scenarios {
        run.start_scenario(scenario.name);
        traffic.queue_truncations();
        for (number, phase) in scenario.phases.iter().enumerate() {
            run.start_phase(number, phase);
            traffic.mix = phase.mix;
            let frames = (settings.frames * phase.weight / total_weight)
                .max(1)
                .min(frames_left);
            for _ in 0..frames {
                let (gap, frame) = traffic.next();
                run.advance(gap);
                run.step(&frame);
            }
            frames_left -= frames;
        }
        run.finish_scenario();
    }
    let reached = run.finish();
    let elapsed = started.elapsed();
    let timing = format!(
        "{:.1} s: generator {:.1} s, program load {:.1} s, frames {:.1} s",
        elapsed.as_secs_f64(),
        generator.as_secs_f64(),
        load.as_secs_f64(),
        elapsed.saturating_sub(generator + load).as_secs_f64()
    );
    print_summary(settings, run.index, &reached, &timing, pinned.cpu);
    println!(
        "pool: {} sources ({} heavy), colliders {:?}",
        traffic.pool.len(),
        traffic.heavy.len(),
        &traffic.pool[POOL_V4.len() + POOL_V6.len()..]
    );
    println!(
        "tables at the end: {} sources, {} prefixes",
        run.model.source_count(),
        run.model.prefix_count()
    );
    println!("branches of the decision taken (model):");
    for (path, n) in run.model.paths() {
        println!("  {path:<56}{n:>9}");
    }
    drop(pinned);
    if settings.frames >= DEFAULT_FRAMES / 2 {
        let by_outcome = |o: Outcome| -> u64 {
            Class::ALL
                .iter()
                .map(|c| reached[c.counter_index(o) as usize].packets)
                .sum()
        };
        let missed: Vec<&str> = MUST_REACH
            .iter()
            .filter(|o| by_outcome(**o) == 0)
            .map(|o| o.name())
            .collect();
        assert!(
            missed.is_empty(),
            "outcomes never reached (seed {:#x}): {missed:?}",
            settings.seed
        );
        let by_class = |c: Class| -> u64 {
            Outcome::ALL
                .iter()
                .map(|o| reached[c.counter_index(*o) as usize].packets)
                .sum()
        };
        for class in Class::ALL {
            assert!(
                by_class(class) > 0,
                "class {} never reached (seed {:#x})",
                class.name(),
                settings.seed
            );
        }
    }
}

fn print_summary(settings: Settings, frames: usize, reached: &[Counter], timing: &str, cpu: usize) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "differential test: {frames} frames, seed {:#x}, all agreed ({timing}; CPU {cpu}, \
         full checks every {} frames)",
        settings.seed, settings.check_every
    );
    let _ = write!(out, "{:<22}", "outcome");
    for class in Class::ALL {
        let _ = write!(out, "{:>9}", class.name());
    }
    let _ = writeln!(out, "{:>9}", "total");
    for outcome in Outcome::ALL {
        let _ = write!(out, "{:<22}", outcome.name());
        let mut total = 0;
        for class in Class::ALL {
            let n = reached[class.counter_index(outcome) as usize].packets;
            total += n;
            let _ = write!(out, "{n:>9}");
        }
        let _ = writeln!(out, "{total:>9}");
    }
    println!("{out}");
}
