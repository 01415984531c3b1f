//! `floodwall-flood-bench`: end-to-end throughput of floodwall under a flood of random
//! spoofed sources, against a bare `XDP_DROP` program in the same run, while a legitimate
//! client is served.
//!
//! The target (issue 3, raised by issue 9): with a flood of at least 1,000,000 distinct random
//! sources, the receive rate on veth with floodwall stays at or above 0.65 × the rate with a
//! bare `XDP_DROP` program, and a legitimate client keeps at least 99 % of its requests
//! served.
//!
//! Run as root:
//! `cargo run --release -p floodwall-tests --bin floodwall-flood-bench [-- --check --json]`.
//!
//! # Method
//! - A namespace lab (`floodwall_tests::lab`): nginx on the server, a client, the server's
//!   veth `fwlab-srv`, whose peer is a port of the lab's bridge.
//! - The flood: [`floodwall_tests::flood::LiveGenerator`], a tiny XDP program run with
//!   `BPF_PROG_TEST_RUN` in live-frame mode from the switch namespace, on one pinned CPU.
//!   Every frame is a 70-byte IPv6/UDP datagram to the server's port 9 with a new random
//!   source in `2001:2:0:1::/64` (a random 64-bit interface identifier per frame, from the
//!   kernel's PRNG: among N frames the expected number of repeats is about N²/2^65, none at
//!   these counts, so sources sent = frames sent). IPv6, because `198.18.0.0/15` has only
//!   131,072 IPv4 addresses. Its verdict is `XDP_TX`, which live mode turns into a redirect out
//!   of the bridge port into the server's veth, past the bridge: the flood meets the server's
//!   XDP program at the speed of `ndo_xdp_xmit`, not of the bridge's skb path. The veth's
//!   receive side (its NAPI poll and XDP program, and the stack for passed packets) runs on
//!   the generator's CPU, in the softirq that the transmit raises, as on the one-CPU setup
//!   of `PEERS.md`; so the rates measured are end to end, generator included, and the ratio
//!   compares two whole paths that differ only in the server's program.
//! - One CPU for everything: the lab's processes (nginx, the daemon) and the client run on
//!   the generator's CPU too. A client packet sent from another CPU would move the veth's
//!   NAPI poll there while the generator keeps its ring full, and the phase would measure two
//!   CPUs. The floodwall phase so also carries the client's and nginx's work, which the
//!   `XDP_DROP` phase (where nobody is served) does not: the ratio errs against floodwall.
//!   The client is a thread of this process (`floodwall_tests::http::Visitor`), not a curl
//!   process per request, whose start-up (milliseconds of dynamic linking, 40 times a
//!   second) was most of that work.
//! - Phase 1, the yardstick: floodwall's `floodwall_drop` program (`return XDP_DROP`) attached
//!   in driver mode to `fwlab-srv`. Phase 2: `floodwall run --xdp-mode driver` (default limits
//!   unless `--floodwall-arg` says otherwise) on the same interface, with the legitimate client
//!   making requests over IPv4 and IPv6 through the lab's bridge for the whole measured window,
//!   after it made some before the flood (so that it is a tracked source).
//! - Receive rate: the interface's received-frame counter (`ip -s link`), which on a veth with
//!   native XDP counts every frame the program ran on, over a window that starts after a
//!   warm-up. For floodwall, its own counters (`floodwall stats`, all outcomes) are reported
//!   beside it as a check. Frames the veth's ring could not take are counted as received
//!   drops and reported separately: they never reached the program.
//! - Generator rate: frames the generator sent over its whole run.
//!
//! # `--syn`: a SYN flood answered with cookies
//! The same lab and method with a random-source IPv6 SYN flood (Linux's options) to nginx's
//! port 80 ([`LiveGenerator::syn_frame`]). The yardstick is a bare reflector from floodwall's
//! object (`floodwall_reflect`: swap the MAC addresses, `XDP_TX`); floodwall runs with
//! `--syn-protect 80` and answers each SYN with a cookie SYN-ACK. What is measured is the
//! answers: the frames the server's veth sends back, counted where they arrive, on the
//! bridge port, which runs an `XDP_DROP` sink (a frame sent back with `XDP_TX` reaches a veth
//! peer only if the peer runs XDP; the sink also keeps the answers, to spoofed addresses,
//! from flooding the bridge). Target: at least half the reflector's rate, and the answers
//! per second are the SYNs one CPU answers end to end, generator included.
//!
//! Every phase is bounded (`--seconds` ≤ 25 plus a one-second warm-up); the lab, with every
//! process and namespace, is removed at the end, also on error.

use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use aya::{
    EbpfLoader,
    programs::{Xdp, XdpMode},
};
use clap::Parser;
use filter_common::{BASELINE_PROGRAM_NAME, REFLECTOR_PROGRAM_NAME, map_names};
use floodwall::{control::StatsView, loader::EBPF_OBJECT};
use floodwall_tests::{
    bench,
    flood::{self, LinkCounters, LiveGenerator, NetnsGuard},
    http::Visitor,
    lab::{HttpTally, Lab},
};
use serde_json::json;

/// The target: floodwall's receive rate over the `XDP_DROP` program's.
const TARGET_RATIO: f64 = 0.65;
/// With `--syn`: floodwall's rate of answers over the reflector's.
const TARGET_SYN_RATIO: f64 = 0.5;
/// The port of the SYN flood: nginx's.
const SYN_PORT: u16 = 80;
/// The flood: at least this many distinct sources.
const MIN_DISTINCT_SOURCES: u64 = 1_000_000;
/// Share of the client's requests that must be served.
const MIN_SERVED_SHARE: f64 = 0.99;
/// How long the flood runs before the measured window starts (JIT, caches, the ring).
const WARMUP: Duration = Duration::from_secs(1);
/// The UDP port the flood goes to (discard: nothing listens there).
const FLOOD_PORT: u16 = 9;
/// Most sources `floodwall top` lists: a table that shows this many may hold more.
const TOP_LIMIT: usize = 100_000;
/// Longest the kernel should spend in one generator call, so that a stop is seen soon.
const CALL_TIME: Duration = Duration::from_millis(100);

/// Measures floodwall's end-to-end throughput under a random-source flood on veth.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Length of each measured window, after a one-second warm-up.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=25))]
    seconds: u64,
    /// Rounds (each: the `XDP_DROP` phase, then the floodwall phase); medians are reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
    rounds: u32,
    /// CPU of the generator (and so of the receive side), where the lab's processes run too
    /// (see the method). Default: the last CPU this process may use.
    #[arg(long)]
    cpu: Option<usize>,
    /// Frames per live-frame batch (the kernel transmits and flushes per batch).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=i64::from(flood::MAX_BATCH)))]
    batch: u32,
    /// Extra argument for `floodwall run`, e.g. `--floodwall-arg=--admit-after=8`;
    /// repeatable.
    #[arg(long, allow_hyphen_values = true)]
    floodwall_arg: Vec<String>,
    /// Exit 1 when a target is missed: the ratio, the distinct sources, the client.
    #[arg(long)]
    check: bool,
    /// Print the results as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// A SYN flood answered with cookies, against a bare reflector (see the method).
    #[arg(long)]
    syn: bool,
}

impl Args {
    /// The yardstick program's name, for people.
    fn baseline_label(&self) -> &'static str {
        if self.syn { "reflector" } else { "XDP_DROP" }
    }

    /// The ratio the phase must reach.
    fn target(&self) -> f64 {
        if self.syn {
            TARGET_SYN_RATIO
        } else {
            TARGET_RATIO
        }
    }
}

/// Exit codes: 0 on success, 1 when `--check` finds a missed target, 2 on an error.
fn main() -> ExitCode {
    let args = Args::parse();
    bench::main(env!("CARGO_BIN_NAME"), || run(&args))
}

/// Where the flood goes in: the bridge port that is the peer of the server's veth, in the
/// lab's switch namespace.
struct Entry {
    /// The switch namespace.
    netns: String,
    /// The bridge port.
    port: String,
    /// The frame to send copies of.
    frame: Vec<u8>,
    /// With `--syn`, where the answers are counted: the bridge port, as a host of the
    /// switch's namespace.
    sink: Option<floodwall_tests::lab::Host>,
}

impl Entry {
    /// The lab names its switch namespace `<lab>-sw` and the bridge port of host
    /// `fwlab-<x>` `sw-<x>` (see `lab/mod.rs`); checked here, so that a renaming there fails
    /// loudly instead of flooding nothing.
    fn find(lab: &Lab, syn: bool) -> anyhow::Result<Self> {
        let netns = format!("{}-sw", lab.name());
        let port = format!("sw-{}", lab.server().iface.trim_start_matches("fwlab-"));
        let _inside = NetnsGuard::enter(&netns)
            .with_context(|| format!("the lab's switch namespace is not {netns}"))?;
        flood::ifindex(&port)
            .with_context(|| format!("the server's bridge port is not {port} in {netns}"))?;
        let (src_mac, dst_mac) = (
            [0x02, 0, 0, 0, 0, 0xf1],
            flood::mac_bytes(lab, lab.server())?,
        );
        let (frame, sink) = if syn {
            let sink = floodwall_tests::lab::Host {
                name: "switch".to_owned(),
                netns: netns.clone(),
                iface: port.clone(),
                ..lab.server().clone()
            };
            let frame = LiveGenerator::syn_frame(src_mac, dst_mac, lab.server().ipv6, SYN_PORT)?;
            (frame, Some(sink))
        } else {
            let frame = LiveGenerator::frame(src_mac, dst_mac, lab.server().ipv6, FLOOD_PORT)?;
            (frame, None)
        };
        Ok(Self {
            netns,
            port,
            frame,
            sink,
        })
    }
}

/// What the generator did in one phase.
#[derive(Clone, Copy, Debug, Default)]
struct Generated {
    frames: u64,
    secs: f64,
}

impl Generated {
    fn rate(&self) -> f64 {
        per_second(self.frames, self.secs)
    }
}

#[expect(clippy::cast_precision_loss, reason = "packet counts")]
fn per_second(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// Runs the generator on `cpu` from the switch namespace until `stop`, or `limit` passes.
fn generate(
    generator: &LiveGenerator,
    entry: &Entry,
    cpu: usize,
    batch: u32,
    stop: &AtomicBool,
    limit: Duration,
) -> anyhow::Result<Generated> {
    bench::pin_thread(cpu)?;
    let _inside = NetnsGuard::enter(&entry.netns)?;
    let ifindex = flood::ifindex(&entry.port)?;
    let start = Instant::now();
    let mut frames = 0u64;
    let mut repeat: u32 = 1 << 16;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
        let took = generator.send(ifindex, &entry.frame, repeat, batch)?;
        frames += u64::from(repeat);
        // Size the next call to take about CALL_TIME at the rate just seen.
        let rate = per_second(u64::from(repeat), took.as_secs_f64().max(1e-6));
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "clamped to a u32 range"
        )]
        {
            repeat = (rate * CALL_TIME.as_secs_f64()).clamp(1024.0, 16_777_216.0) as u32;
        }
    }
    Ok(Generated {
        frames,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// Floods while `measure` runs on this thread; stops the flood when it returns.
fn with_flood<T>(
    generator: &LiveGenerator,
    entry: &Entry,
    args: &Args,
    cpu: usize,
    measure: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(Generated, T)> {
    let stop = AtomicBool::new(false);
    let limit = WARMUP + Duration::from_secs(args.seconds) + Duration::from_secs(4);
    std::thread::scope(|scope| {
        let flood = scope.spawn(|| generate(generator, entry, cpu, args.batch, &stop, limit));
        let measured = measure();
        stop.store(true, Ordering::Relaxed);
        let generated = flood
            .join()
            .map_err(|_| anyhow::anyhow!("the generator thread panicked"))?
            .context("the generator failed")?;
        Ok((generated, measured?))
    })
}

/// Receive counters over a window.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    rx: u64,
    rx_dropped: u64,
    secs: f64,
}

impl Window {
    fn between(before: (LinkCounters, Instant), after: (LinkCounters, Instant)) -> Self {
        Self {
            rx: after.0.rx_packets - before.0.rx_packets,
            rx_dropped: after.0.rx_dropped - before.0.rx_dropped,
            secs: (after.1 - before.1).as_secs_f64(),
        }
    }

    fn rx_rate(&self) -> f64 {
        per_second(self.rx, self.secs)
    }

    fn dropped_rate(&self) -> f64 {
        per_second(self.rx_dropped, self.secs)
    }
}

/// What a phase counts: frames the server's veth received, or with `--syn` the answers
/// that arrived at the sink.
fn counters(lab: &Lab, entry: &Entry) -> anyhow::Result<(LinkCounters, Instant)> {
    let host = entry.sink.as_ref().unwrap_or(lab.server());
    Ok((flood::link_counters(lab, host)?, Instant::now()))
}

/// Phase 1: the `XDP_DROP` program.
struct BaselinePhase {
    generated: Generated,
    window: Window,
}

/// Attaches floodwall's `XDP_DROP` program to the server's interface in driver mode, floods,
/// detaches.
fn baseline_phase(
    lab: &Lab,
    generator: &LiveGenerator,
    entry: &Entry,
    args: &Args,
    cpu: usize,
) -> anyhow::Result<BaselinePhase> {
    // The drop program uses no map; keep the object's per-source table small.
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(map_names::SOURCES, 1)
        .load(EBPF_OBJECT)
        .context("failed to load the floodwall object")?;
    let name = if args.syn {
        REFLECTOR_PROGRAM_NAME
    } else {
        BASELINE_PROGRAM_NAME
    };
    let program: &mut Xdp = ebpf
        .program_mut(name)
        .with_context(|| format!("the object has no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))?;
    program
        .load()
        .with_context(|| format!("the kernel refused {name}"))?;
    let server = lab.server();
    // Attach and detach from inside the server's namespace, where its interface is.
    let link = {
        let _inside = NetnsGuard::enter(&server.netns)?;
        program
            .attach(&server.iface, XdpMode::Driver)
            .with_context(|| {
                format!("failed to attach {name} to {} in driver mode", server.iface)
            })?
    };
    let measured = with_flood(generator, entry, args, cpu, || {
        std::thread::sleep(WARMUP);
        let before = counters(lab, entry)?;
        std::thread::sleep(Duration::from_secs(args.seconds));
        Ok(Window::between(before, counters(lab, entry)?))
    });
    {
        let _inside = NetnsGuard::enter(&server.netns)?;
        program
            .detach(link)
            .with_context(|| format!("failed to detach {name} from {}", server.iface))?;
    }
    let (generated, window) = measured?;
    Ok(BaselinePhase { generated, window })
}

/// Phase 2: floodwall.
struct FloodwallPhase {
    generated: Generated,
    window: Window,
    /// Packets floodwall counted in the window, all outcomes, and the window's length.
    counted: u64,
    counted_secs: f64,
    /// Packets per outcome in the window (outcomes with packets).
    outcomes: Vec<(String, u64)>,
    /// Sources in floodwall's table after the flood (`top`, which lists at most
    /// [`TOP_LIMIT`]).
    tracked_after: usize,
    /// Table inserts and evictions in the window.
    inserts: u64,
    evictions: u64,
    /// Whether the client's two addresses were tracked before the flood.
    client_tracked: bool,
    client: HttpTally,
}

fn total_packets(stats: &StatsView) -> u64 {
    stats.outcomes.iter().map(|o| o.packets).sum()
}

fn floodwall_phase(
    lab: &Lab,
    generator: &LiveGenerator,
    entry: &Entry,
    args: &Args,
    cpu: usize,
) -> anyhow::Result<FloodwallPhase> {
    let mut run_args = vec!["--xdp-mode", "driver"];
    if args.syn {
        // No SYN-ACK budget: the phase measures the path, as the reflector has none.
        run_args.extend(["--syn-protect", "80", "--syn-cookie-rate", "unlimited"]);
    }
    run_args.extend(args.floodwall_arg.iter().map(String::as_str));
    let daemon = lab
        .start_floodwall(&run_args)
        .context("floodwall run must start")?;
    // The client becomes a tracked source before the flood, as an established visitor.
    for _ in 0..3 {
        for ipv6 in [false, true] {
            lab.http_get(lab.client(), ipv6)
                .context("the client must be served before the flood")?;
        }
    }
    let top = daemon.top(100).context("floodwall top")?;
    let client_tracked = [
        std::net::IpAddr::V4(lab.client().ipv4),
        std::net::IpAddr::V6(lab.client().ipv6),
    ]
    .iter()
    .all(|addr| top.iter().any(|s| s.addr == *addr));

    let servers = vec![
        SocketAddr::from((lab.server().ipv4, 80)),
        SocketAddr::from((lab.server().ipv6, 80)),
    ];
    let client = Visitor::start(lab.client(), servers, Duration::from_millis(50))
        .context("the client's request loop must start")?;
    let measured = with_flood(generator, entry, args, cpu, || {
        std::thread::sleep(WARMUP);
        let before = counters(lab, entry)?;
        let stats_before = (daemon.stats()?, Instant::now());
        std::thread::sleep(Duration::from_secs(args.seconds));
        let after = counters(lab, entry)?;
        let stats_after = (daemon.stats()?, Instant::now());
        // Stop the client while the flood still runs: every request it made was made
        // during the flood.
        let tally = client.stop();
        Ok((
            Window::between(before, after),
            stats_before,
            stats_after,
            tally,
        ))
    });
    let (generated, (window, stats_before, stats_after, tally)) = measured?;
    // The outcomes, then (with --syn) the cookie stage's own counters, that changed.
    let outcomes = stats_after
        .0
        .outcomes
        .iter()
        .zip(&stats_before.0.outcomes)
        .map(|(a, b)| (a.outcome.clone(), a.packets - b.packets))
        .chain(
            stats_after
                .0
                .syn
                .counters
                .iter()
                .zip(&stats_before.0.syn.counters)
                .map(|(a, b)| (a.0.clone(), a.1 - b.1)),
        )
        .filter(|(_, n)| *n > 0)
        .collect();
    let tracked_after = daemon
        .top(u32::try_from(TOP_LIMIT).context("top limit")?)
        .context("floodwall top --limit 100000")?
        .len();
    daemon
        .stop(libc::SIGTERM)
        .context("floodwall must stop on SIGTERM")?;
    // The program stays attached after the daemon; the next phase needs the interface.
    daemon.detach().context("floodwall detach")?;
    Ok(FloodwallPhase {
        generated,
        window,
        counted: total_packets(&stats_after.0) - total_packets(&stats_before.0),
        counted_secs: (stats_after.1 - stats_before.1).as_secs_f64(),
        outcomes,
        tracked_after,
        inserts: stats_after.0.table.inserts - stats_before.0.table.inserts,
        evictions: stats_after.0.table.evictions - stats_before.0.table.evictions,
        client_tracked,
        client: tally,
    })
}

/// One round's results.
struct Round {
    baseline: BaselinePhase,
    floodwall: FloodwallPhase,
}

impl Round {
    fn ratio(&self) -> f64 {
        let base = self.baseline.window.rx_rate();
        if base > 0.0 {
            self.floodwall.window.rx_rate() / base
        } else {
            0.0
        }
    }

    fn json(&self) -> serde_json::Value {
        let b = &self.baseline;
        let f = &self.floodwall;
        json!({
            "baseline": {
                "generator_frames": b.generated.frames,
                "generator_pps": b.generated.rate(),
                "rx_pps": b.window.rx_rate(),
                "rx_dropped_pps": b.window.dropped_rate(),
                "window_secs": b.window.secs,
            },
            "floodwall": {
                "generator_frames": f.generated.frames,
                "generator_pps": f.generated.rate(),
                "rx_pps": f.window.rx_rate(),
                "rx_dropped_pps": f.window.dropped_rate(),
                "counted_pps": per_second(f.counted, f.counted_secs),
                "window_secs": f.window.secs,
                "outcomes": f.outcomes.iter().map(|(o, n)| (o.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "tracked_sources_after": f.tracked_after,
                "table_inserts": f.inserts,
                "table_evictions": f.evictions,
                "client_tracked_before_flood": f.client_tracked,
                "client_requests": f.client.attempted,
                "client_served": f.client.served,
            },
            "distinct_sources": f.generated.frames,
            "ratio": self.ratio(),
        })
    }

    fn print(&self, n: u32, args: &Args) {
        let b = &self.baseline;
        let f = &self.floodwall;
        let (base, what) = (
            args.baseline_label(),
            if args.syn { "answered" } else { "received" },
        );
        println!("round {n}");
        println!(
            "  generator            {:>12.0} frames/s ({base} phase), {:>12.0} (floodwall phase)",
            b.generated.rate(),
            f.generated.rate()
        );
        println!(
            "  {base:<10} {what}  {:>12.0} frames/s   ring drops {:>10.0}/s",
            b.window.rx_rate(),
            b.window.dropped_rate()
        );
        println!(
            "  floodwall  {what}  {:>12.0} frames/s   ring drops {:>10.0}/s   floodwall counted {:.0}/s",
            f.window.rx_rate(),
            f.window.dropped_rate(),
            per_second(f.counted, f.counted_secs)
        );
        println!(
            "  ratio                {:>12.3}   (target >= {})",
            self.ratio(),
            args.target()
        );
        println!(
            "  distinct sources     {:>12}   (random /64 interface identifiers, floodwall phase)",
            f.generated.frames
        );
        let outcomes: Vec<String> = f.outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
        println!("  floodwall outcomes   {}", outcomes.join(", "));
        let at_least = if f.tracked_after >= TOP_LIMIT {
            "at least "
        } else {
            ""
        };
        println!(
            "  table                {} inserts, {} evictions in the window; {at_least}{} sources \
             after the flood; client tracked before it: {}",
            f.inserts, f.evictions, f.tracked_after, f.client_tracked
        );
        println!(
            "  client               {} of {} requests served ({:.1} %)",
            f.client.served,
            f.client.attempted,
            100.0 * f.client.ratio()
        );
    }

    fn client_ok(&self) -> bool {
        self.floodwall.client.attempted > 0 && self.floodwall.client.ratio() >= MIN_SERVED_SHARE
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn run(args: &Args) -> anyhow::Result<bool> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for namespaces)"
    );
    if bench::allowed_cpus()?.len() < 2 {
        eprintln!(
            "warning: one CPU only: the generator shares it with nginx, the client and the daemon"
        );
    }
    bench::warn_if_bpf_stats_enabled();
    // Everything on the generator's CPU (see the method in the crate doc): the lab's
    // processes inherit this thread's affinity.
    let cpu = bench::pin_to_cpu(args.cpu)?;
    let lab = Lab::new(0).context("the namespace lab must build")?;
    lab.start_nginx().context("nginx must start")?;
    lab.http_get(lab.client(), false)
        .context("the client must reach nginx before the benchmark")?;
    let entry = Entry::find(&lab, args.syn)?;
    let generator = if args.syn {
        LiveGenerator::load_syn(&entry.frame)?
    } else {
        LiveGenerator::load()?
    };
    // With --syn, the answers end at the bridge port's sink (see the method).
    let _sink = entry
        .sink
        .as_ref()
        .map(|sink| flood::PeerXdp::attach_sink(&sink.netns, &sink.iface))
        .transpose()?;

    let mut rounds = Vec::new();
    for n in 1..=args.rounds {
        let baseline = baseline_phase(&lab, &generator, &entry, args, cpu)
            .with_context(|| format!("round {n}, XDP_DROP phase"))?;
        let floodwall = floodwall_phase(&lab, &generator, &entry, args, cpu)
            .with_context(|| format!("round {n}, floodwall phase"))?;
        let round = Round {
            baseline,
            floodwall,
        };
        if !args.json {
            round.print(n, args);
        }
        rounds.push(round);
    }

    let ratio = median(rounds.iter().map(Round::ratio).collect());
    let distinct = rounds
        .iter()
        .map(|r| r.floodwall.generated.frames)
        .min()
        .unwrap_or(0);
    let client_ok = rounds.iter().all(Round::client_ok);
    let met = ratio >= args.target() && distinct >= MIN_DISTINCT_SOURCES && client_ok;
    if args.json {
        let report = json!({
            "cpu": cpu,
            "seconds": args.seconds,
            "batch": args.batch,
            "floodwall_args": args.floodwall_arg,
            "rounds": rounds.iter().map(Round::json).collect::<Vec<_>>(),
            "median_ratio": ratio,
            "target_ratio": args.target(),
            "syn": args.syn,
            "min_distinct_sources": distinct,
            "client_served_everywhere": client_ok,
            "targets_met": met,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("failed to encode JSON")?
        );
    } else {
        println!(
            "median ratio {ratio:.3} (target >= {}); fewest distinct sources in a floodwall \
             phase {distinct} (target >= {MIN_DISTINCT_SOURCES}); client served >= 99 % in every round: \
             {client_ok}; targets {}",
            args.target(),
            if met { "met" } else { "MISSED" }
        );
    }
    Ok(!args.check || met)
}
