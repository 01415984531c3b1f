//! End-to-end tests of the fleet (`[fleet]`): two floodwall daemons, each protecting its own
//! host of one namespace lab, sharing blocks through a real `nats-server` (Debian's 2.9.10,
//! `JetStream`) on a third host. Run with `--test-threads=1` (shared kernel state); each test
//! removes its lab and stops every process it started.
//!
//! Hosts: the lab's server is node `a` (198.18.0.1); attacker 0 (198.18.0.10) is the
//! flooding source; attacker 1 (198.18.0.11) is node `b`; attacker 2 (198.18.0.12) runs the
//! broker; attacker 3 (198.18.0.13) is a partner that node `b` allowlists. In the signature
//! test attacker 0 runs trafgen, whose packets come from 198.19.0.0/20 (see
//! [`floodwall_tests::flood::spawn_udp_flood`]), and the lab's client is node `a`'s user.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use floodwall::{
    control::Response,
    lists::ListEntryView,
    rules::{Origin, RuleView},
};
use floodwall_tests::{
    flood,
    lab::{Broker, Daemon, Host, Lab, Proc, poll_until},
    udp,
};

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

/// A config file for a node: its interface and `[fleet]`, with `fleet` (more keys of it).
fn node_config(lab: &Lab, host: &Host, node: &str, broker: &Broker, fleet: &str) -> String {
    let path: PathBuf = lab.dir().join(format!("{node}.toml"));
    let text = format!(
        "[[interface]]\nname = \"{}\"\n\n[fleet]\nbroker = \"{}\"\nnode = \"{node}\"\n{fleet}",
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
    start_node_capped(lab, host, node, broker, "1h", limits)
}

/// [`start_node`] with `max_block` in its `[fleet]`.
fn start_node_capped<'lab>(
    lab: &'lab Lab,
    host: &Host,
    node: &str,
    broker: &Broker,
    max_block: &str,
    limits: &[&str],
) -> Daemon<'lab> {
    let config = node_config(
        lab,
        host,
        node,
        broker,
        &format!("max_block = \"{max_block}\"\n"),
    );
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

/// Where node `b` serves its metrics: its own address, port 9478.
fn metrics_addr(host_b: &Host) -> String {
    format!("{}:9478", host_b.ipv4)
}

/// Node `b`: a per-source limit nothing here reaches, metrics at [`metrics_addr`].
fn start_b<'lab>(lab: &'lab Lab, host_b: &Host, broker: &Broker, max_block: &str) -> Daemon<'lab> {
    let metrics = metrics_addr(host_b);
    start_node_capped(
        lab,
        host_b,
        "b",
        broker,
        max_block,
        &["--pps", "100000", "--metrics-addr", &metrics],
    )
}

/// Whether node `b`'s metrics have the line `line`, as scraped from the lab's client.
fn b_metrics_have(lab: &Lab, host_b: &Host, line: &str) -> bool {
    b_metric(
        lab,
        host_b,
        line.rsplit_once(' ').map_or(line, |(name, _)| name),
    )
    .is_some_and(|v| Some(v) == line.rsplit_once(' ').map(|(_, v)| v.to_owned()))
}

/// Node `b`'s metrics have each of `lines`.
fn assert_b_metrics(lab: &Lab, host_b: &Host, lines: &[&str]) {
    for line in lines {
        assert!(
            b_metrics_have(lab, host_b, line),
            "b's metrics must say `{line}`: {}",
            lab.scrape_metrics(&metrics_addr(host_b))
        );
    }
}

/// The value of `name` (with its labels) in node `b`'s metrics, if there.
fn b_metric(lab: &Lab, host_b: &Host, name: &str) -> Option<String> {
    lab.scrape_metrics(&metrics_addr(host_b))
        .lines()
        .find_map(|l| Some(l.strip_prefix(name)?.strip_prefix(' ')?.to_owned()))
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
    let b = start_b(&lab, host_b, &broker, "1h");
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
    let blocked = match b.query(&["blocked", "list"]).expect("blocked list --json") {
        Response::Sources { sources, .. } => sources,
        other => panic!("blocked list answered {other:?}"),
    };
    assert!(
        blocked
            .iter()
            .any(|v| v.addr.to_string() == src && v.fleet.as_deref() == Some("a")),
        "`blocked list` must show a's block with its node: {blocked:?}"
    );
    let text = b.cli_ok(&["blocked", "list"]);
    assert!(text.contains("by the fleet (node a"), "{text}");
    let out = b.cli(&["blocked", "remove", &src]).expect("cli");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("node a") && stderr.contains("deny remove"),
        "`blocked remove` of a peer's block must say whose it is and what ends it: {stderr}"
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
    // One refusal, or more if a renewed its block while the flood went on.
    let refused = b_metric(
        &lab,
        host_b,
        r#"floodwall_fleet_refused_total{reason="allowlisted"}"#,
    );
    assert!(
        refused
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n >= 1),
        "b's metrics must count the refusal: {}",
        lab.scrape_metrics(&metrics_addr(host_b))
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

/// A node that starts late gets the blocks in force, as many as its `max_entries` allows:
/// the one over the cap is refused, named. Stopped and started again (the pinned
/// denylist keeps the block), it still knows the block as the fleet's: `deny list` names
/// node `a`, it is not refused as the operator's, and it goes when `a` unblocks the source.
#[test]
fn a_node_that_starts_late_gets_the_current_blocks_and_keeps_knowing_them() {
    if !floodwall_tests::privileged(
        "a_node_that_starts_late_gets_the_current_blocks_and_keeps_knowing_them",
    ) {
        return;
    }
    require_nats_server();
    let lab = Lab::new(4).expect("the namespace lab must build");
    let [source, other, host_b, broker_host] = [
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
    finish(&lab, &block_on_a(&lab, &a, source).1);
    // Published before b exists.
    std::thread::sleep(Duration::from_secs(1));
    let config = node_config(&lab, host_b, "b", &broker, "max_entries = 1\n");
    let run_b = lab.dir().join("run-b");
    let start_b = || {
        lab.start_floodwall_on(host_b, &run_b, &["--config", &config, "--pps", "100000"])
            .expect("floodwall must start on b")
    };
    let b = start_b();
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

    // A second block is one over b's cap: refused, named, never listed.
    finish(&lab, &block_on_a(&lab, &a, other).1);
    let capped = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        b.log().contains("(fleet.max_entries)")
    });
    assert!(
        capped,
        "b must refuse a's second block by its cap: {}",
        b.log()
    );
    assert!(deny_entry(&b, &other.ipv4.to_string()).is_none());

    // b stops and starts again: the pinned denylist still holds a's block, and b knows it
    // as a's.
    b.stop(libc::SIGTERM).expect("b stops");
    let b = start_b();
    let connected = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        b.log().contains("fleet: connected")
    });
    assert!(connected, "b must connect again: {}", b.log());
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        b.log().contains("still in force") && !b.log().contains("already in the local denylist"),
        "b must know a's block as the fleet's after its restart: {}",
        b.log()
    );
    assert_eq!(
        deny_entry(&b, &src).and_then(|e| e.origin).as_deref(),
        Some("a"),
        "`deny list` must still name node a"
    );
    let out = a.cli_ok(&["blocked", "remove", &src]);
    assert!(out.contains(&src), "blocked remove on a: {out}");
    let gone = poll_until(PROPAGATION, Duration::from_millis(20), || {
        deny_entry(&b, &src).is_none()
    });
    assert!(
        gone,
        "after its restart b must drop the block a ended: {}",
        b.log()
    );
    lab.kill_broker(&mut broker).expect("nats-server must stop");
}

/// A broker that asks nodes to sign in (`nats-server --user --pass`): a node with the user
/// and its password (from `fleet.password_file`) connects and gets a peer's block; a node
/// with a wrong password is refused, says so by name, and protects with what it has (its
/// control socket answers, its own limits hold); a config that names a password file that
/// is not there is refused before anything starts.
#[test]
fn nodes_sign_in_to_a_broker_that_asks() {
    if !floodwall_tests::privileged("nodes_sign_in_to_a_broker_that_asks") {
        return;
    }
    require_nats_server();
    let lab = Lab::new(4).expect("the namespace lab must build");
    let [source, host_b, broker_host, host_c] = [
        &lab.attackers()[0],
        &lab.attackers()[1],
        &lab.attackers()[2],
        &lab.attackers()[3],
    ];
    let mut broker = lab
        .start_broker_with(
            broker_host,
            &["--user", "floodwall", "--pass", "s3cret-fleet"],
        )
        .expect("nats-server must start");
    let secret = |name: &str, text: &str| {
        let path = lab.dir().join(name);
        std::fs::write(&path, text).expect("the password file");
        path.to_string_lossy().into_owned()
    };
    let right = secret("right.pass", "s3cret-fleet\n");
    let wrong = secret("wrong.pass", "guess\n");
    let signed = |host: &Host, node: &str, password_file: &str| {
        node_config(
            &lab,
            host,
            node,
            &broker,
            &format!("user = \"floodwall\"\npassword_file = \"{password_file}\"\n"),
        )
    };
    let config_a = signed(lab.server(), "a", &right);
    let a = lab
        .start_floodwall(&["--config", &config_a, "--pps", "200", "--block-for", "60s"])
        .expect("floodwall must start on a");
    let config_b = signed(host_b, "b", &right);
    let b = lab
        .start_floodwall_on(host_b, &lab.dir().join("run-b"), &["--config", &config_b])
        .expect("floodwall must start on b");
    let config_c = signed(host_c, "c", &wrong);
    let c = lab
        .start_floodwall_on(host_c, &lab.dir().join("run-c"), &["--config", &config_c])
        .expect("floodwall must start on c, broker or not");
    for (name, node) in [("a", &a), ("b", &b)] {
        let connected = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            node.log().contains("fleet: connected")
        });
        assert!(connected, "node {name} must sign in: {}", node.log());
    }
    let refused = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        c.log().contains("refused this node's sign-in")
    });
    assert!(
        refused,
        "node c must say the broker refused it: {}",
        c.log()
    );
    assert!(!c.log().contains("fleet: connected"), "{}", c.log());
    // c protects without the fleet: its control socket answers.
    assert!(deny_entries(&c).is_empty());

    let (_, flood_a) = block_on_a(&lab, &a, source);
    let src = source.ipv4.to_string();
    let arrived = poll_until(PROPAGATION, Duration::from_millis(20), || {
        deny_entry(&b, &src).is_some()
    });
    finish(&lab, &flood_a);
    assert!(arrived, "b, signed in, must get a's block: {}", b.log());
    assert!(
        deny_entry(&c, &src).is_none(),
        "c, refused, gets nothing from the fleet"
    );

    // `config check` says how a node signs in, never the secret.
    let out = std::process::Command::new(floodwall_tests::floodwall_bin())
        .args(["config", "check", &config_b])
        .output()
        .expect("floodwall config check runs");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && summary.contains("signs in as floodwall")
            && !summary.contains("s3cret-fleet"),
        "{summary}"
    );

    // A password file that is not there: refused at start, naming the key and the file.
    let missing = lab.dir().join("missing.pass");
    let config_d = signed(host_c, "d", &missing.to_string_lossy());
    let out = std::process::Command::new(floodwall_tests::floodwall_bin())
        .args(["config", "check", &config_d])
        .output()
        .expect("floodwall check-config runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("fleet.password_file")
            && stderr.contains("missing.pass"),
        "a missing password file must be named: {stderr}"
    );
    lab.kill_broker(&mut broker).expect("nats-server must stop");
}

/// The UDP service's port on node `a` (as `e2e_signatures`).
const PORT: u16 = 7777;

/// The first of `daemon`'s rules of `origin`, if any.
fn rule_of(daemon: &Daemon, origin: Origin) -> Option<RuleView> {
    daemon
        .rules()
        .expect("rules list --json must answer")
        .into_iter()
        .find(|r| r.origin == origin)
}

/// Node `a`'s flags in the signature test besides [`udp::FLOOD_TEST_DAEMON`]'s, as
/// `e2e_signatures`' quick tests: a baseline of 5 s, a quiet time of 3 s.
const SIGNATURE_NODE_A: [&str; 4] = ["--signature-min-baseline", "5s", "--signature-quiet", "3s"];

/// `on_b`, node `b`'s fleet rule, is `signature`, node `a`'s, as the fleet applies it, and
/// `b`'s metrics count it.
fn assert_in_force_on_b(
    lab: &Lab,
    host_b: &Host,
    b: &Daemon,
    signature: &RuleView,
    on_b: &RuleView,
) {
    println!("on b: {on_b:?}");
    assert_eq!(
        on_b.rule, signature.rule,
        "b must enforce the very rule a found"
    );
    assert!(
        on_b.comment
            .as_deref()
            .is_some_and(|c| c.starts_with("from a ")),
        "b's rule must name node a: {on_b:?}"
    );
    assert!(
        on_b.expires_in_ms.is_some(),
        "a peer's signature must expire on its own if the peer goes: {on_b:?}"
    );
    assert!(
        rule_of(b, Origin::Signature).is_none(),
        "b, not flooded, must find no signature of its own"
    );
    let text = b.cli_ok(&["rules", "list"]);
    assert!(
        text.contains(&signature.rule) && text.contains("from a"),
        "`rules list` on b must show the rule and its node: {text}"
    );
    assert_b_metrics(
        lab,
        host_b,
        &[
            "floodwall_fleet_connected 1",
            r#"floodwall_fleet_applied{kind="signature"} 1"#,
        ],
    );
}

/// While `a` keeps its signature, past the 4 s (`max_block`) that `b` holds a peer's entry
/// for, `b` keeps the very rule it applied (`id`): `a` puts its signature again, and `b`
/// moves the rule's end.
fn assert_renewed_on_b(a: &Daemon, b: &Daemon, id: u32) {
    std::thread::sleep(Duration::from_secs(6));
    if rule_of(a, Origin::Signature).is_none() {
        // The flood ended early (trafgen's packets all sent): nothing to renew.
        eprintln!("a withdrew its signature within 6 s: its renewal on b is not shown");
        return;
    }
    let on_b = rule_of(b, Origin::Fleet);
    assert!(
        on_b.as_ref()
            .is_some_and(|r| r.id == id && r.expires_in_ms.is_some_and(|ms| ms <= 4_000)),
        "b must keep rule {id}, renewed to end within max_block (4 s), while a keeps its \
         signature: {on_b:?}\n{}",
        b.log()
    );
}

/// Node `a` learns its UDP service's traffic, then a junk flood hits the service (as in
/// `e2e_signatures`): the signature `a` puts in force is in force on `b` within the bound,
/// the same rule with the fleet's origin and a comment naming `a`, and goes from `b` when
/// `a` withdraws it after the flood.
#[test]
fn a_signature_found_on_one_node_is_in_force_on_the_other_and_withdrawn_with_it() {
    if !floodwall_tests::privileged(
        "a_signature_found_on_one_node_is_in_force_on_the_other_and_withdrawn_with_it",
    ) {
        return;
    }
    require_nats_server();
    flood::require_trafgen().expect("trafgen must be installed");
    let lab = Lab::new(3).expect("the namespace lab must build");
    // Attacker 0 is trafgen's (spawn_udp_flood sends from it, at the server).
    let [host_b, broker_host] = [&lab.attackers()[1], &lab.attackers()[2]];
    let mut broker = lab
        .start_broker(broker_host)
        .expect("nats-server must start");
    let _service = udp::Service::start(lab.server(), PORT).expect("the UDP service");
    let service = SocketAddr::new(IpAddr::V4(lab.server().ipv4), PORT);
    // Peers keep each other's entries at most 4 s: a must renew its signature on b.
    let flags = [&udp::FLOOD_TEST_DAEMON[..], &SIGNATURE_NODE_A].concat();
    let a = start_node_capped(&lab, lab.server(), "a", &broker, "4s", &flags);
    let b = start_b(&lab, host_b, &broker, "4s");

    // The user's queries at 100 a second for 7 s: a's baseline.
    let before = udp::query(lab.client(), service, 700, 100).expect("the user's queries");
    assert!(before.share() >= 0.99, "before the flood: {before:?}");

    // 1. The flood: a finds a signature; b has it within the bound.
    let flood = flood::spawn_udp_flood(
        &lab,
        "junk",
        &format!("udp(sp=drnd(1024, 65535), dp={PORT}),\n  fill(0x66, 64)"),
    )
    .expect("trafgen must start");
    let stop_flood = || {
        let _ = lab.stop(&flood, libc::SIGINT, Duration::from_secs(5));
    };
    let mut found = None;
    poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        found = rule_of(&a, Origin::Signature);
        found.is_some()
    });
    let found_at = Instant::now();
    let Some(signature) = found else {
        stop_flood();
        // Under emulation trafgen may send too little for an attack (as e2e_signatures).
        assert!(
            floodwall_tests::in_vm(),
            "a must put a signature in force once the flood arrives: {}",
            a.log()
        );
        eprintln!("no signature on a under emulation: nothing to share");
        lab.kill_broker(&mut broker).expect("nats-server must stop");
        return;
    };
    println!("a's signature: {signature:?}");
    let mut on_b = None;
    let arrived = poll_until(PROPAGATION, Duration::from_millis(20), || {
        on_b = rule_of(&b, Origin::Fleet);
        on_b.is_some()
    });
    let took = found_at.elapsed();
    if !arrived {
        stop_flood();
    }
    assert!(
        arrived,
        "b must put a's signature in force within {PROPAGATION:?}: {}",
        b.log()
    );
    eprintln!("a's signature was in force on b {took:?} after a's `rules list` showed it");
    let on_b = on_b.expect("found");
    assert_in_force_on_b(&lab, host_b, &b, &signature, &on_b);
    assert_renewed_on_b(&a, &b, on_b.id);

    // 2. The flood ends: a withdraws its signature after its quiet time, and b follows.
    stop_flood();
    let withdrawn = poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
        rule_of(&a, Origin::Signature).is_none()
    });
    let withdrawn_at = Instant::now();
    assert!(
        withdrawn,
        "a must withdraw its signature once the flood ends: {}",
        a.log()
    );
    let gone = poll_until(PROPAGATION, Duration::from_millis(20), || {
        rule_of(&b, Origin::Fleet).is_none()
    });
    assert!(
        gone,
        "b must withdraw a's signature within {PROPAGATION:?} of a: {}",
        b.log()
    );
    eprintln!("a's withdrawal reached b in {:?}", withdrawn_at.elapsed());
    assert_b_metrics(
        &lab,
        host_b,
        &[r#"floodwall_fleet_applied{kind="signature"} 0"#],
    );
    assert!(
        b.log().contains("fleet: a's signature") && b.log().contains("withdrawn by its node"),
        "b's log must say a withdrew its signature: {}",
        b.log()
    );
    lab.kill_broker(&mut broker).expect("nats-server must stop");
}
