//! `floodwall-demo`: floodwall against a real flood, in a lab of network namespaces.
//!
//! Builds a lab (nginx on the server, one legitimate client, three attackers), starts
//! `floodwall run` on the server's interface, floods the server from the attackers with
//! hping3 (SYN, UDP and ICMP, each at most 100,000 packets and 10 s) while the client fetches
//! pages, then reports what was sent, dropped and served, and what floodwall says about the
//! offenders. The lab is removed at the end, on failure, and on Ctrl-C or SIGTERM.
//!
//! Needs root. `cargo xtask demo` runs it with `FLOODWALL_BIN` set; otherwise it uses the
//! `floodwall` binary built beside it. Exits 0 if floodwall blocked every attacker and the
//! client was served (at least 99% of its requests), 1 if not, 130 if interrupted.

use std::{
    fmt::Write as _,
    net::IpAddr,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use filter_common::Outcome;
use floodwall_tests::lab::{self, Daemon, Host, Lab, Proc, hping3_sent, http_tally, packets};

/// Per-source packet limit the daemon runs with; its burst is `auto`, one second of it.
const PPS: u64 = 1_000;
/// Most packets each attacker sends.
const FLOOD_PACKETS: u64 = 100_000;
/// Longest a flood lasts.
const FLOOD_TIME: Duration = Duration::from_secs(10);
/// Rounds of the client (one request over IPv4 and one over IPv6 each), and the pause
/// between them: enough to span the flood.
const CLIENT_ROUNDS: u32 = 250;
const CLIENT_PAUSE: Duration = Duration::from_millis(30);
/// Longest the client runs.
const CLIENT_TIME: Duration = Duration::from_mins(1);
/// Share of legitimate requests that must be served for the demo to pass.
const MIN_SERVED: f64 = 0.99;

/// The attacks, one per attacker: hping3 flags and what they do.
const ATTACKS: [(&[&str], &str); 3] = [
    (&["--faster", "-S", "-p", "80"], "TCP SYN flood to port 80"),
    (&["--faster", "--udp", "-p", "53"], "UDP flood to port 53"),
    (&["--faster", "--icmp"], "ICMP echo flood"),
];

/// Set by SIGINT, SIGTERM or SIGHUP; the demo checks it wherever it waits.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    // Only an atomic store: the one kind of thing a signal handler may safely do.
    STOP.store(true, Ordering::SeqCst);
}

/// Catches SIGINT, SIGTERM and SIGHUP, so that the demo removes its lab instead of dying
/// with namespaces and processes left behind. The lab's processes run in their own process
/// groups, so a Ctrl-C at the terminal reaches only the demo, which stops them in order.
fn catch_signals() -> anyhow::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler is
        // async-signal-safe (one atomic store) and lives for the whole program.
        let installed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&raw mut action.sa_mask);
            libc::sigaction(signal, &raw const action, std::ptr::null_mut())
        };
        if installed != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot handle signal {signal}"));
        }
    }
    Ok(())
}

/// The error that ends the demo early on a signal.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

fn check_stop() -> anyhow::Result<()> {
    if STOP.load(Ordering::SeqCst) {
        eprintln!("\ninterrupted: stopping the lab's processes and removing its namespaces");
        return Err(Interrupted.into());
    }
    Ok(())
}

/// Sleeps `duration`, waking early on a signal.
fn pause(duration: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + duration;
    while Instant::now() < end {
        check_stop()?;
        std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
    }
    check_stop()
}

fn main() -> ExitCode {
    if let Err(e) = catch_signals() {
        eprintln!("floodwall-demo: {e:#}");
        return ExitCode::FAILURE;
    }
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) if e.is::<Interrupted>() => ExitCode::from(130),
        Err(e) => {
            eprintln!("floodwall-demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The demo; the lab lives inside, so it is gone by the time this returns (or unwinds).
fn run() -> anyhow::Result<bool> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo needs root (CAP_BPF and CAP_NET_ADMIN, to load XDP and make namespaces)");
    }
    let bin = floodwall_tests::floodwall_bin();
    lab::require_tools()?;
    println!("floodwall demo ({})", bin.display());

    let lab = Lab::new(ATTACKS.len())?;
    print_lab(&lab);
    check_stop()?;
    lab.start_nginx()?;
    lab.http_get(lab.client(), false)
        .context("the client cannot reach nginx before the demo starts")?;
    let daemon = lab.start_floodwall(&["--pps", &PPS.to_string(), "--block-for", "60s"])?;
    let mode = daemon.stats()?.xdp_mode;
    println!(
        "floodwall protects {} in the server namespace ({mode} mode): {PPS} packets/s per source, \
         burst {PPS}, offenders blocked for 60 s\n",
        lab.server().iface
    );

    let client = lab.spawn_http_client(CLIENT_ROUNDS, CLIENT_PAUSE, CLIENT_TIME)?;
    pause(Duration::from_secs(1))?;
    println!(
        "flooding: {} attackers, at most {FLOOD_PACKETS} packets or {} s each; the client keeps fetching pages",
        ATTACKS.len(),
        FLOOD_TIME.as_secs()
    );
    let mut floods = Vec::new();
    for (attacker, (flags, _)) in lab.attackers().iter().zip(ATTACKS) {
        floods.push(lab.spawn_hping3(attacker, flags, FLOOD_PACKETS, FLOOD_TIME)?);
    }
    watch(&lab, &daemon, &floods, &client)?;
    // The flood is over; the client finishes its rounds.
    wait(&lab, &client, CLIENT_TIME + Duration::from_secs(5))?;
    report(&lab, &daemon, &floods, &client)
}

fn print_lab(lab: &Lab) {
    println!("lab {} (removed at exit):", lab.name());
    for host in lab.hosts() {
        println!(
            "  {:<10} {:<12} {:<14} {}",
            host.name, host.iface, host.ipv4, host.ipv6
        );
    }
}

/// Waits for `proc` to exit, up to `timeout`, waking on a signal.
fn wait(lab: &Lab, proc: &Proc, timeout: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + timeout;
    while lab.try_wait(proc).is_none() {
        if Instant::now() >= end {
            bail!("{} still runs after {} s", proc.name(), timeout.as_secs());
        }
        pause(Duration::from_millis(100))?;
    }
    Ok(())
}

/// Prints floodwall's counters once a second until every flood has ended.
fn watch(lab: &Lab, daemon: &Daemon, floods: &[Proc], client: &Proc) -> anyhow::Result<()> {
    let start = Instant::now();
    let deadline = FLOOD_TIME + Duration::from_secs(5);
    while floods.iter().any(|f| lab.try_wait(f).is_none()) {
        if start.elapsed() > deadline {
            bail!(
                "hping3 still runs {} s after its time bound",
                deadline.as_secs()
            );
        }
        pause(Duration::from_secs(1))?;
        let stats = daemon.stats()?;
        let rate = |o: Outcome| {
            stats
                .outcomes
                .iter()
                .find(|s| s.outcome == o.name())
                .map_or(0.0, |s| s.pps)
        };
        let tally = http_tally(client);
        println!(
            "  t={:>2}s  dropping {:>7.0} packets/s (dropped {:>9} so far)  passing {:>5.0} packets/s  client served {}/{}",
            start.elapsed().as_secs(),
            rate(Outcome::DroppedBlocked) + rate(Outcome::DroppedRateLimit),
            thousands(lab::dropped_packets(&stats)),
            rate(Outcome::Passed),
            tally.served,
            tally.attempted,
        );
    }
    Ok(())
}

/// Prints the report; returns whether the demo passed.
fn report(lab: &Lab, daemon: &Daemon, floods: &[Proc], client: &Proc) -> anyhow::Result<bool> {
    let mut failures = Vec::new();
    println!("\n== report ==");
    report_attack(lab, daemon, floods, &mut failures)?;
    let served = report_client(lab, client, &mut failures);
    report_offenders(lab, daemon, &mut failures)?;

    let exit = daemon.stop(libc::SIGTERM)?;
    let stayed = lab.xdp_attached(lab.server())?;
    let code = exit
        .code()
        .map_or_else(|| exit.to_string(), |c| format!("exit code {c}"));
    println!(
        "daemon: {code} after SIGTERM; XDP program {} (pinned: the server stays protected)",
        if stayed { "still attached" } else { "GONE" }
    );
    daemon.detach()?;
    let attached = lab.xdp_attached(lab.server())?;
    println!(
        "floodwall detach: XDP program {}",
        if attached {
            "STILL ATTACHED"
        } else {
            "removed"
        }
    );
    if !exit.success() || !stayed || attached {
        failures.push(
            "the daemon did not exit cleanly leaving its program attached, or detach failed"
                .to_owned(),
        );
    }

    if failures.is_empty() {
        println!("\nPASS: every attacker blocked, {served} of legitimate requests served");
        return Ok(true);
    }
    let mut text = String::from("\nFAIL:");
    for failure in &failures {
        let _ = write!(text, "\n  - {failure}");
    }
    println!("{text}\nfloodwall's log:\n{}", daemon.log());
    Ok(false)
}

/// What each attacker sent (hping3's count) and what floodwall dropped (`stats`).
fn report_attack(
    lab: &Lab,
    daemon: &Daemon,
    floods: &[Proc],
    failures: &mut Vec<String>,
) -> anyhow::Result<()> {
    let counters = daemon.stats()?;
    println!("attack:");
    let (mut total_sent, mut over_burst) = (0, 0);
    for ((attacker, flood), (_, what)) in lab.attackers().iter().zip(floods).zip(ATTACKS) {
        let sent = hping3_sent(flood);
        total_sent += sent.unwrap_or(0);
        over_burst += sent.unwrap_or(0).saturating_sub(PPS);
        let sent = sent.map_or_else(|| "an unknown number of".to_owned(), thousands);
        let (name, addr) = (&attacker.name, attacker.ipv4);
        println!("  {name:<10} {addr:<14} {what:<26} sent {sent} packets");
    }
    let rate_limited = packets(&counters, Outcome::DroppedRateLimit);
    let of_blocked = packets(&counters, Outcome::DroppedBlocked);
    let dropped = rate_limited + of_blocked;
    println!(
        "  total sent {}, dropped by floodwall {} ({}): {} over the limit, {} from blocked sources",
        thousands(total_sent),
        thousands(dropped),
        percent(dropped, total_sent),
        thousands(rate_limited),
        thousands(of_blocked)
    );
    // What passes before a block is each attacker's burst plus its rate while it used it:
    // the rest, give or take, must be dropped.
    if dropped * 10 < over_burst * 8 {
        failures.push(format!(
            "only {} of the {} flood packets beyond the bursts were dropped",
            thousands(dropped),
            thousands(over_burst)
        ));
    }
    Ok(())
}

/// How the legitimate client fared; returns the share served, for the verdict.
fn report_client(lab: &Lab, client: &Proc, failures: &mut Vec<String>) -> String {
    let tally = http_tally(client);
    let served = percent(tally.served, tally.attempted);
    let (v4, v6) = (lab.client().ipv4, lab.client().ipv6);
    println!("legitimate client ({v4}, {v6}):");
    println!(
        "  {} of {} requests served ({served})",
        tally.served, tally.attempted
    );
    if tally.attempted == 0 || tally.ratio() < MIN_SERVED {
        failures.push(format!(
            "the client was served {} of {} requests, below 99%",
            tally.served, tally.attempted
        ));
    }
    served
}

/// What floodwall says about the sources (`top`, `blocked list`).
fn report_offenders(lab: &Lab, daemon: &Daemon, failures: &mut Vec<String>) -> anyhow::Result<()> {
    println!("top sources (floodwall top):");
    for source in daemon.top(5)? {
        let state = source.blocked_remaining_ms.map_or_else(
            || "tracked".to_owned(),
            |ms| format!("blocked, {} s left", ms.div_ceil(1000)),
        );
        let addr = source.addr.to_string();
        println!(
            "  {addr:<26} {:>9.0} packets/s  {state:<18} {}",
            source.pps,
            role(lab, source.addr)
        );
    }
    let blocked = daemon.blocked()?;
    let names: Vec<String> = blocked.iter().map(|s| s.addr.to_string()).collect();
    let names = if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    };
    println!("blocked sources (floodwall blocked list): {names}");
    for attacker in lab.attackers() {
        if !blocked.iter().any(|s| s.addr == IpAddr::V4(attacker.ipv4)) {
            failures.push(format!(
                "{} ({}) is not blocked",
                attacker.name, attacker.ipv4
            ));
        }
    }
    for addr in [IpAddr::V4(lab.client().ipv4), IpAddr::V6(lab.client().ipv6)] {
        if blocked.iter().any(|s| s.addr == addr) {
            failures.push(format!("the legitimate client ({addr}) is blocked"));
        }
    }
    Ok(())
}

/// Which host of the lab an address is.
fn role(lab: &Lab, addr: IpAddr) -> String {
    let is = |h: &Host| addr == IpAddr::V4(h.ipv4) || addr == IpAddr::V6(h.ipv6);
    lab.hosts()
        .find(|h| is(h))
        .map_or_else(String::new, |h| h.name.clone())
}

/// `part` as a percentage of `whole`, one decimal.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_owned();
    }
    #[expect(clippy::cast_precision_loss, reason = "a percentage for display")]
    let share = part as f64 * 100.0 / whole as f64;
    format!("{share:.1}%")
}

/// 1234567 as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
