//! End-to-end tests of the fleet (`[fleet]`): two floodwall daemons, each protecting its own
//! host of one namespace lab, sharing blocks through a real `nats-server` (Debian's 2.9.10,
//! `JetStream`) on a third host. Run with `--test-threads=1` (shared kernel state); each test
//! removes its lab and stops every process it started.
//!
//! Hosts: the lab's server is node `a` (198.18.0.1); attacker 0 (198.18.0.10) is the
//! flooding source; attacker 1 (198.18.0.11) is node `b`; attacker 2 (198.18.0.12) runs the
//! broker; attacker 3 (198.18.0.13) is a partner that node `b` allowlists.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use floodwall::{control::Response, lists::ListEntryView};
use floodwall_tests::lab::{Broker, Daemon, Host, Lab, Proc, poll_until};

/// How long a peer's block may take to arrive (the issue asks for a second; the poll and a
/// loaded machine get some slack).
const PROPAGATION: Duration = Duration::from_secs(2);

fn require_nats_server() {
    let found = std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "nats-server must be installed for the fleet tests (apt-get install nats-server; \
         `cargo xtask setup` installs it)"
    );
}

/// A config file for a node: its interface and `[fleet]`.
fn node_config(lab: &Lab, host: &Host, node: &str, broker: &Broker) -> String {
    let path: PathBuf = lab.dir().join(format!("{node}.toml"));
    let text = format!(
        "[[interface]]\nname = \"{}\"\n\n[fleet]\nbroker = \"{}\"\nnode = \"{node}\"\n\
         max_block = \"1h\"\n",
        host.iface,
        broker.url()
    );
    std::fs::write(&path, text).expect("the config file must be written");
    path.to_string_lossy().into_owned()
}

fn start_node<'lab>(
    lab: &'lab Lab,
    host: &Host,
    node: &str,
    broker: &Broker,
    limits: &[&str],
) -> Daemon<'lab> {
    let config = node_config(lab, host, node, broker);
    let mut args = vec!["--config", config.as_str()];
    args.extend_from_slice(limits);
    let daemon = if host.name == lab.server().name {
        lab.start_floodwall(&args)
    } else {
        lab.start_floodwall_on(host, &lab.dir().join(format!("run-{node}")), &args)
    }
    .unwrap_or_else(|e| panic!("floodwall must start on {}: {e:#}", host.name));
    let connected = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        daemon.log().contains("fleet: connected")
    });
    assert!(
        connected,
        "node {node} must connect to the broker: {}",
        daemon.log()
    );
    daemon
}

fn deny_entries(daemon: &Daemon) -> Vec<ListEntryView> {
    match daemon
        .query(&["deny", "list"])
        .expect("deny list --json must answer")
    {
        Response::ListEntries { entries, .. } => entries,
        other => panic!("deny list answered {other:?}"),
    }
}

fn deny_entry(daemon: &Daemon, addr: &str) -> Option<ListEntryView> {
    let prefix = format!("{addr}/32");
    deny_entries(daemon)
        .into_iter()
        .find(|e| e.prefix.to_string() == prefix)
}

/// A UDP flood of about 1000 packets a second from `from` to `to`, `count` packets.
fn flood(lab: &Lab, from: &Host, to: &Host, count: u32) -> Proc {
    let count = count.to_string();
    let target = to.ipv4.to_string();
    lab.spawn(
        from,
        &format!("hping3-{}-{}", from.name, to.name),
        &[
            "timeout",
            "--kill-after=2",
            "20",
            "hping3",
            "-q",
            "-c",
            &count,
            "-i",
            "u1000",
            "--udp",
            "-p",
            "9",
            &target,
        ],
    )
    .expect("hping3 must start")
}

fn finish(lab: &Lab, proc: &Proc) {
    lab.wait(proc, Duration::from_secs(25))
        .expect("hping3 must end within its time bound");
}

/// Floods node `a` from `source` until `a` blocks it; returns when it did, and the flood
/// (still running: wait for it with [`finish`]).
fn block_on_a(lab: &Lab, a: &Daemon, source: &Host) -> (Instant, Proc) {
    let proc = flood(lab, source, lab.server(), 1500);
    let blocked = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        a.blocked_addrs()
            .is_ok_and(|b| b.contains(&std::net::IpAddr::V4(source.ipv4)))
    });
    let at = Instant::now();
    if !blocked {
        finish(lab, &proc);
    }
    assert!(
        blocked,
        "node a must block {} flooding over its limit: {}",
        source.ipv4,
        a.log()
    );
    (at, proc)
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one fleet's life, read top to bottom: propagation, the allowlist, the broker \
              killed and back, expiry"
)]
fn a_block_on_one_node_is_enforced_on_the_other_and_follows_it() {
    if !floodwall_tests::privileged("a_block_on_one_node_is_enforced_on_the_other_and_follows_it") {
        return;
    }
    require_nats_server();
    let lab = Lab::new(4).expect("the namespace lab must build");
    let [source, host_b, broker_host, partner] = [
        &lab.attackers()[0],
        &lab.attackers()[1],
        &lab.attackers()[2],
        &lab.attackers()[3],
    ];
    let mut broker = lab
        .start_broker(broker_host)
        .expect("nats-server must start");
    let a = start_node(
        &lab,
        lab.server(),
        "a",
        &broker,
        &["--pps", "200", "--block-for", "60s"],
    );
    let b = start_node(&lab, host_b, "b", &broker, &["--pps", "100000"]);
    let out = b.cli_ok(&["allow", "add", &partner.ipv4.to_string()]);
    assert!(out.contains("added"), "allow add on b: {out}");

    // 1. A source a blocks is denylisted on b within the bound, tagged with its origin,
    // and b drops it.
    let (blocked_at, flood_a) = block_on_a(&lab, &a, source);
    let src = source.ipv4.to_string();
    let arrived = poll_until(PROPAGATION, Duration::from_millis(20), || {
        deny_entry(&b, &src).is_some()
    });
    let took = blocked_at.elapsed();
    assert!(
        arrived,
        "b must denylist {src} within {PROPAGATION:?} of a's block: {}",
        b.log()
    );
    eprintln!("a's block reached b's denylist in {took:?}");
    finish(&lab, &flood_a);
    let entry = deny_entry(&b, &src).expect("listed");
    assert_eq!(
        entry.origin.as_deref(),
        Some("a"),
        "b's entry must name node a: {entry:?}"
    );
    assert!(
        entry
            .expires_in_ms
            .is_some_and(|ms| ms > 30_000 && ms <= 60_000),
        "b's entry must end when a's block does (60 s): {entry:?}"
    );
    let text = b.cli_ok(&["deny", "list"]);
    assert!(
        text.contains(&format!("{src}/32")) && text.contains("(fleet: a)"),
        "`deny list` must show the origin: {text}"
    );
    let to_b = flood(&lab, source, host_b, 100);
    finish(&lab, &to_b);
    let hits = deny_entry(&b, &src).map_or(0, |e| e.hit_packets);
    assert!(
        hits >= 50,
        "b must drop the source a blocked (hits of its denylist entry): {hits}"
    );

    // 2. A peer's block of a source b allowlists is refused, with a message naming it.
    finish(&lab, &block_on_a(&lab, &a, partner).1);
    let partner_addr = partner.ipv4.to_string();
    let refused = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        b.log().contains("covered by the local allowlist entry")
    });
    assert!(
        refused,
        "b must refuse a's block of its allowlisted partner: {}",
        b.log()
    );
    assert!(
        deny_entry(&b, &partner_addr).is_none(),
        "an allowlisted source must never be denylisted by a peer"
    );

    // 3. The broker dies (kill -9): both nodes keep protecting with what they have. A block
    // that ends meanwhile reaches b once the broker is back.
    lab.kill_broker(&mut broker)
        .expect("nats-server must die on SIGKILL");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        deny_entry(&b, &src).is_some(),
        "b must keep a's block while the broker is away"
    );
    let out = a.cli_ok(&["blocked", "remove", &src]);
    assert!(out.contains(&src), "blocked remove on a: {out}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        deny_entry(&b, &src).is_some(),
        "without a broker, b cannot learn of the unblock yet"
    );
    lab.restart_broker(&mut broker)
        .expect("nats-server must start again");
    let caught_up = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        deny_entry(&b, &src).is_none()
    });
    assert!(
        caught_up,
        "after the broker is back, b must drop the block a ended: {}",
        b.log()
    );

    // 4. Expiry: a short block on a ends on b too.
    let out = a.cli_ok(&["limits", "set", "--block-for", "3s"]);
    assert!(!out.is_empty(), "limits set on a: {out}");
    finish(&lab, &block_on_a(&lab, &a, source).1);
    let arrived = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        deny_entry(&b, &src).is_some()
    });
    assert!(arrived, "a's new block must reach b: {}", b.log());
    let entry = deny_entry(&b, &src).expect("listed");
    assert!(
        entry.expires_in_ms.is_some_and(|ms| ms <= 3_000),
        "b's entry must end with a's 3 s block: {entry:?}"
    );
    let gone = poll_until(Duration::from_secs(6), Duration::from_millis(100), || {
        deny_entry(&b, &src).is_none()
    });
    assert!(gone, "b's entry must expire with a's block");
    lab.kill_broker(&mut broker).expect("nats-server must stop");
}

#[test]
fn a_node_that_starts_late_gets_the_current_blocks() {
    if !floodwall_tests::privileged("a_node_that_starts_late_gets_the_current_blocks") {
        return;
    }
    require_nats_server();
    let lab = Lab::new(3).expect("the namespace lab must build");
    let [source, host_b, broker_host] = [
        &lab.attackers()[0],
        &lab.attackers()[1],
        &lab.attackers()[2],
    ];
    let mut broker = lab
        .start_broker(broker_host)
        .expect("nats-server must start");
    let a = start_node(
        &lab,
        lab.server(),
        "a",
        &broker,
        &["--pps", "200", "--block-for", "60s"],
    );
    finish(&lab, &block_on_a(&lab, &a, source).1);
    // Published before b exists.
    std::thread::sleep(Duration::from_secs(1));
    let b = start_node(&lab, host_b, "b", &broker, &["--pps", "100000"]);
    let src = source.ipv4.to_string();
    let arrived = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        deny_entry(&b, &src).is_some()
    });
    assert!(
        arrived,
        "a late joiner must get the blocks already in force: {}",
        b.log()
    );
    assert_eq!(
        deny_entry(&b, &src).and_then(|e| e.origin).as_deref(),
        Some("a")
    );
    lab.kill_broker(&mut broker).expect("nats-server must stop");
}
