//! End-to-end tests of announcing upstream: floodwall drives a real GoBGP daemon (`gobgpd`,
//! through the `gobgp` client) in the server namespace, which peers with a real BIRD 2 on
//! the lab's router; every assertion reads what BIRD received (see `floodwall_tests::lab::
//! Upstream`). FlowSpec routes (RFC 8955) for rules, blackhole routes (RFC 7999) for a
//! whole address, with floodwall's guards: the protected prefixes, prefix lengths, fields
//! FlowSpec cannot express, the allowlist, the caps, a minimum hold and expiry, a dry run,
//! and what happens when either daemon crashes or floodwall stops.
//!
//! The first test checks the fixture itself, with the `gobgp` CLI and no floodwall. The
//! rest test floodwall's `[upstream]` config section and `floodwall upstream` commands
//! through their text and JSON only.
//!
//! Root only; needs gobgpd (package gobgpd) and BIRD (package bird2). Run with
//! `--test-threads=1` like the other end-to-end tests; each test builds its own lab and
//! removes it, daemons and files included.

use std::{
    collections::BTreeSet,
    process::Output,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use floodwall_tests::lab::{
    BLACKHOLE, Daemon, Lab, Proc, Rib, TrafficAction, Upstream, poll_until,
};
use serde_json::Value;

/// How long a change may take to reach the router: a reconcile period (`reconcile_every =
/// "1s"` in every config here), a `gobgp` call, and a BGP update, which BIRD has within
/// milliseconds. The rest is for slow machines.
const ARRIVE: Duration = Duration::from_secs(5);
/// How long a "nothing reaches the router" check watches: three reconcile periods.
const SETTLE: Duration = Duration::from_secs(3);

/// The NTP reflection rule of most tests, and its FlowSpec components as BIRD prints them.
const NTP_RULE: [&str; 8] = [
    "udp",
    "sport",
    "123",
    "len",
    "468",
    "to",
    "198.18.0.1/32",
    "drop",
];
const NTP_FLOW: &str = "dst 198.18.0.1/32; proto 17; sport 123; length 468;";

/// FlowSpec components as BIRD prints them, of the other routes the tests announce.
const DNS_FLOW: &str = "dst 198.18.0.1/32; proto 17; sport 53;";
const MDNS_FLOW: &str = "dst 2001:2::1/128; next header 17; dport 5353;";
const LDAP_FLOW: &str = "dst 198.18.0.1/32; proto 17; sport 389;";
const MEMCACHED_FLOW: &str = "dst 198.18.0.1/32; proto 17; sport 11211;";
const CHARGEN_FLOW: &str = "dst 198.18.0.1/32; proto 17; sport 19;";
/// A route from the attackers' /31 only (198.18.0.10 and .11), which holds no allowlisted
/// source.
const PARTNER_SAFE_FLOW: &str = "dst 198.18.0.1/32; src 198.18.0.10/31; proto 17; sport 123;";
/// The self-check's route, as gobgp takes it and as BIRD prints it.
const NTP_MATCH: [&str; 6] = [
    "destination",
    "198.18.0.1/32",
    "protocol",
    "udp",
    "source-port",
    "123",
];
const NTP_PLAIN_FLOW: &str = "dst 198.18.0.1/32; proto 17; sport 123;";

fn new_lab() -> Lab {
    Lab::with_router(0).expect("the namespace lab with a router must build")
}

fn start_upstream(lab: &Lab) -> Upstream<'_> {
    Upstream::start(lab).expect("BIRD and gobgpd must start and peer")
}

/// Writes floodwall's config file: the server interface and an `[upstream]` section that
/// points at the lab's gobgpd, protects the lab's prefixes and reconciles every second,
/// plus `settings` (more `[upstream]` keys). Its path.
fn write_config(lab: &Lab, upstream: &Upstream, settings: &str) -> String {
    let path = lab.dir().join("floodwall.toml");
    let text = format!(
        "[[interface]]\nname = \"{iface}\"\n\n[upstream]\ngobgp_api = \"{api}\"\n\
         protected = [\"198.18.0.0/24\", \"2001:2::/64\"]\nreconcile_every = \"1s\"\n{settings}",
        iface = lab.server().iface,
        api = upstream.gobgp_api(),
    );
    std::fs::write(&path, text).expect("write floodwall's config file");
    path.to_string_lossy().into_owned()
}

fn start<'lab>(lab: &'lab Lab, config: &str) -> Daemon<'lab> {
    lab.start_floodwall(&["--config", config])
        .expect("floodwall run must start with the upstream config and open its control socket")
}

fn stop(daemon: &Daemon) {
    daemon
        .stop(libc::SIGTERM)
        .expect("floodwall stops on SIGTERM");
    daemon.detach().expect("detach");
}

/// `floodwall ARGS`, which must succeed; its output is not needed.
fn run_ok(daemon: &Daemon, args: &[&str]) {
    let _ = daemon.cli_ok(args);
}

/// `floodwall upstream announce ARGS`, whatever its exit status.
fn try_announce(daemon: &Daemon, args: &[&str]) -> Output {
    let mut all = vec!["upstream", "announce"];
    all.extend(args);
    all.push("--json");
    daemon.cli(&all).expect("the CLI must run")
}

/// `floodwall upstream announce ARGS`, which must succeed: the new announcement's id.
fn announce(daemon: &Daemon, args: &[&str]) -> u64 {
    let out = try_announce(daemon, args);
    assert!(
        out.status.success(),
        "upstream announce {args:?} must succeed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "upstream announce --json must print JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    answer["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("upstream announce --json must give the id: {answer}"))
}

/// `floodwall upstream announce ARGS` must be refused, with an error that names the problem
/// (any of `names`, case aside).
fn refused(daemon: &Daemon, args: &[&str], names: &[&str]) {
    let out = try_announce(daemon, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "upstream announce {args:?} must be refused, it printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lower = stderr.to_lowercase();
    assert!(
        names.iter().any(|n| lower.contains(&n.to_lowercase())),
        "the refusal of {args:?} must name the problem (one of {names:?}), it said: {stderr}"
    );
}

/// `floodwall upstream show --json`.
fn show(daemon: &Daemon) -> Value {
    let out = daemon.cli_ok(&["upstream", "show", "--json"]);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("upstream show --json must print JSON ({e}): {out}"))
}

/// An announcement as `upstream show --json` lists it, without its countdown (which moves).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Listed {
    id: u64,
    kind: String,
    route: String,
    origin: String,
    state: String,
}

fn listed(show: &Value) -> Vec<Listed> {
    let text = |a: &Value, field: &str| {
        a[field]
            .as_str()
            .unwrap_or_else(|| panic!("an announcement must have a text `{field}`: {a}"))
            .to_owned()
    };
    let mut all: Vec<Listed> = show["announcements"]
        .as_array()
        .unwrap_or_else(|| panic!("upstream show must list `announcements`: {show}"))
        .iter()
        .map(|a| {
            assert!(
                a["expires_in_s"].is_u64(),
                "an announcement must say when it expires: {a}"
            );
            Listed {
                id: a["id"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("an announcement must have an id: {a}")),
                kind: text(a, "kind"),
                route: text(a, "route"),
                origin: text(a, "origin"),
                state: text(a, "state"),
            }
        })
        .collect();
    all.sort();
    all
}

/// The announcement `id` in `upstream show`.
fn listed_one(daemon: &Daemon, id: u64) -> Option<Listed> {
    listed(&show(daemon)).into_iter().find(|a| a.id == id)
}

/// Polls `upstream show` until announcement `id` is in `state`.
fn wait_state(daemon: &Daemon, id: u64, state: &str) {
    let mut last = None;
    let reached = poll_until(ARRIVE, Duration::from_millis(200), || {
        last = listed_one(daemon, id);
        last.as_ref().is_some_and(|a| a.state == state)
    });
    assert!(
        reached,
        "announcement {id} must be {state} within {ARRIVE:?}, upstream show has {last:?}"
    );
}

/// What the router holds, as a set that does not depend on BIRD's listing order.
fn held(rib: &Rib) -> BTreeSet<String> {
    rib.flow4
        .iter()
        .chain(&rib.flow6)
        .map(|r| format!("{r:?}"))
        .chain(rib.unicast4.iter().map(|r| format!("{r:?}")))
        .collect()
}

fn wait_rib(
    upstream: &Upstream,
    timeout: Duration,
    what: &str,
    done: impl FnMut(&Rib) -> bool,
) -> Rib {
    upstream
        .wait_rib(timeout, done)
        .unwrap_or_else(|e| panic!("{what}: {e:#}"))
}

fn rib_holds(
    upstream: &Upstream,
    duration: Duration,
    what: &str,
    holds: impl FnMut(&Rib) -> bool,
) -> Rib {
    upstream
        .rib_holds_for(duration, holds)
        .unwrap_or_else(|e| panic!("{what}: {e:#}"))
}

/// Time left until `deadline` (zero once past).
fn until(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// `gobgp ARGS` against the lab's gobgpd, which must succeed.
fn gobgp_ok(upstream: &Upstream, args: &[&str]) {
    let out = upstream.gobgp(args).expect("gobgp runs");
    assert!(
        out.status.success(),
        "gobgp {args:?} must succeed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `global rib -a FAMILY VERB match NLRI... THEN...`, gobgp's FlowSpec command.
fn flowspec_args<'a>(
    family: &'a str,
    verb: &'a str,
    nlri: &[&'a str],
    then: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["global", "rib", "-a", family, verb, "match"];
    args.extend(nlri);
    args.extend(then);
    args
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn the_fixture_carries_gobgp_announcements_to_the_router() {
    if !floodwall_tests::privileged("the_fixture_carries_gobgp_announcements_to_the_router") {
        return;
    }
    let lab = new_lab();
    let mut upstream = start_upstream(&lab);
    let add_ntp = flowspec_args("ipv4-flowspec", "add", &NTP_MATCH, &["then", "discard"]);
    gobgp_ok(&upstream, &add_ntp);
    let rib = wait_rib(&upstream, ARRIVE, "the discard route must arrive", |rib| {
        rib.flow(NTP_PLAIN_FLOW).is_some()
    });
    assert_eq!(
        rib.flow(NTP_PLAIN_FLOW).and_then(|r| r.action),
        Some(TrafficAction::Discard),
        "`then discard` is a traffic-rate of 0:\n{rib}"
    );

    // A rate (bytes/s), an IPv6 route and a blackhole, as floodwall will send them.
    gobgp_ok(
        &upstream,
        &flowspec_args(
            "ipv4-flowspec",
            "add",
            &[
                "destination",
                "198.18.0.1/32",
                "protocol",
                "udp",
                "source-port",
                "53",
            ],
            &["then", "rate-limit", "125000"],
        ),
    );
    gobgp_ok(
        &upstream,
        &flowspec_args(
            "ipv6-flowspec",
            "add",
            &[
                "destination",
                "2001:2::1/128",
                "protocol",
                "udp",
                "destination-port",
                "5353",
            ],
            &["then", "discard"],
        ),
    );
    gobgp_ok(
        &upstream,
        &[
            "global",
            "rib",
            "-a",
            "ipv4",
            "add",
            "198.18.0.1/32",
            "community",
            "65535:666",
        ],
    );
    let rib = wait_rib(&upstream, ARRIVE, "all four routes must arrive", |rib| {
        rib.mitigations() == 4
    });
    assert_eq!(
        rib.flow("dst 198.18.0.1/32; proto 17; sport 53;")
            .and_then(|r| r.action),
        Some(TrafficAction::RateLimit(125_000.0)),
        "rate-limit 125000 is 125000 bytes/s:\n{rib}"
    );
    assert_eq!(
        rib.flow("dst 2001:2::1/128; next header 17; dport 5353;")
            .and_then(|r| r.action),
        Some(TrafficAction::Discard),
        "{rib}"
    );
    assert_eq!(
        rib.unicast("198.18.0.1/32").map(|r| r.communities.clone()),
        Some(vec![BLACKHOLE]),
        "{rib}"
    );

    // An exact delete withdraws that route only.
    gobgp_ok(
        &upstream,
        &flowspec_args("ipv4-flowspec", "del", &NTP_MATCH, &[]),
    );
    let rib = wait_rib(&upstream, ARRIVE, "the deleted route must leave", |rib| {
        rib.flow(NTP_PLAIN_FLOW).is_none()
    });
    assert_eq!(
        rib.mitigations(),
        3,
        "only the deleted route leaves:\n{rib}"
    );

    // A crash of gobgpd withdraws everything (no graceful restart), and a gobgpd started
    // again over its stale socket peers again, with nothing to send.
    upstream.kill_gobgpd().expect("kill -9 of gobgpd");
    assert!(
        upstream.gobgp_socket().exists(),
        "kill -9 leaves the socket"
    );
    wait_rib(
        &upstream,
        ARRIVE,
        "a crash of gobgpd must withdraw everything",
        |rib| rib.mitigations() == 0,
    );
    assert!(
        !upstream.established().expect("birdc"),
        "the session is down"
    );
    upstream
        .start_gobgpd()
        .expect("gobgpd starts over its stale socket");
    upstream
        .wait_established(Duration::from_secs(20))
        .expect("the session comes back");
    rib_holds(
        &upstream,
        Duration::from_secs(1),
        "a new gobgpd sends nothing",
        |rib| rib.mitigations() == 0,
    );
    gobgp_ok(&upstream, &add_ntp);
    wait_rib(&upstream, ARRIVE, "the new gobgpd announces", |rib| {
        rib.flow(NTP_PLAIN_FLOW).is_some()
    });
    gobgp_ok(
        &upstream,
        &["global", "rib", "del", "all", "-a", "ipv4-flowspec"],
    );
    wait_rib(&upstream, ARRIVE, "del all withdraws it", |rib| {
        rib.flow4.is_empty()
    });
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one operator session, read top to bottom"
)]
fn announcements_reach_the_router_and_leave_on_withdraw_and_expiry() {
    if !floodwall_tests::privileged(
        "announcements_reach_the_router_and_leave_on_withdraw_and_expiry",
    ) {
        return;
    }
    let lab = new_lab();
    let upstream = start_upstream(&lab);
    // min_hold 4 s: long enough to tell it from a 1 s expiry plus a 1 s reconcile period.
    let config = write_config(
        &lab,
        &upstream,
        "dry_run = false\nmin_hold = \"4s\"\nmax_routes = 10\n",
    );
    let daemon = start(&lab, &config);

    let asked = Instant::now();
    let ntp = announce(&daemon, &NTP_RULE);
    let rib = wait_rib(
        &upstream,
        ARRIVE,
        "the NTP route must reach the router",
        |rib| rib.flow(NTP_FLOW).is_some(),
    );
    println!(
        "the route was at the router {:?} after `upstream announce` was run",
        asked.elapsed()
    );
    assert_eq!(
        rib.flow(NTP_FLOW).and_then(|r| r.action),
        Some(TrafficAction::Discard),
        "drop is FlowSpec's discard:\n{rib}"
    );

    // 8 Mbit/s is 1 MB/s: FlowSpec's rate is in bytes.
    let dns = announce(
        &daemon,
        &[
            "udp",
            "sport",
            "53",
            "to",
            "198.18.0.1/32",
            "rate-limit",
            "8mbps",
        ],
    );
    let rib = wait_rib(
        &upstream,
        ARRIVE,
        "the DNS route must reach the router",
        |rib| rib.flow(DNS_FLOW).is_some(),
    );
    match rib.flow(DNS_FLOW).and_then(|r| r.action) {
        Some(TrafficAction::RateLimit(rate)) => assert!(
            (rate - 1_000_000.0).abs() < 1.0,
            "rate-limit 8mbps must be 1000000 bytes/s, the router has {rate}"
        ),
        other => panic!("rate-limit must be a traffic-rate, the router has {other:?}"),
    }

    let mdns = announce(
        &daemon,
        &["udp", "dport", "5353", "to", "2001:2::1/128", "drop"],
    );
    let rib = wait_rib(
        &upstream,
        ARRIVE,
        "the IPv6 route must reach the router",
        |rib| rib.flow(MDNS_FLOW).is_some(),
    );
    assert_eq!(rib.flow6.len(), 1, "{rib}");

    // An existing rule's match, aimed at the server.
    run_ok(&daemon, &["rules", "add", "udp", "sport", "389", "drop"]);
    let rule = daemon
        .rules()
        .expect("rules list")
        .into_iter()
        .find(|r| r.rule == "udp sport 389 drop")
        .expect("the rule just added");
    let rule_id = rule.id.to_string();
    let ldap = announce(&daemon, &["--rule", &rule_id, "--to", "198.18.0.1/32"]);
    let rib = wait_rib(
        &upstream,
        ARRIVE,
        "the rule's route must reach the router",
        |rib| rib.flow(LDAP_FLOW).is_some(),
    );
    assert_eq!(
        rib.flow(LDAP_FLOW).and_then(|r| r.action),
        Some(TrafficAction::Discard),
        "{rib}"
    );
    assert_eq!(
        rib.mitigations(),
        4,
        "four announcements, four routes:\n{rib}"
    );

    for id in [ntp, dns, mdns, ldap] {
        wait_state(&daemon, id, "announced");
    }
    let shown = show(&daemon);
    assert_eq!(shown["dry_run"], Value::Bool(false), "{shown}");
    assert_eq!(shown["speaker"]["reachable"], Value::Bool(true), "{shown}");
    assert!(shown["speaker"]["error"].is_null(), "{shown}");
    let all = listed(&shown);
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.iter().all(|a| a.kind == "flowspec"), "{all:?}");
    let origin = |id| all.iter().find(|a| a.id == id).map(|a| a.origin.as_str());
    assert_eq!(origin(ntp), Some("operator"));
    assert_eq!(origin(ldap), Some(format!("rule {rule_id}").as_str()));

    // Withdrawn routes leave the router (after min_hold at the latest); the others stay.
    run_ok(
        &daemon,
        &["upstream", "withdraw", &ntp.to_string(), &dns.to_string()],
    );
    let rib = wait_rib(
        &upstream,
        ARRIVE + Duration::from_secs(4),
        "withdrawn routes must leave the router",
        |rib| rib.flow(NTP_FLOW).is_none() && rib.flow(DNS_FLOW).is_none(),
    );
    assert!(
        rib.flow(MDNS_FLOW).is_some() && rib.flow(LDAP_FLOW).is_some(),
        "the others stay:\n{rib}"
    );
    // A withdrawn announcement may be listed as ending until the speaker no longer has it.
    let mut ids = BTreeSet::new();
    let forgotten = poll_until(ARRIVE, Duration::from_millis(200), || {
        ids = listed(&show(&daemon)).iter().map(|a| a.id).collect();
        ids == BTreeSet::from([mdns, ldap])
    });
    assert!(
        forgotten,
        "withdrawn announcements must leave upstream show once gone upstream: {ids:?}"
    );

    // `--for 6s`: there for (nearly) all of it, gone after.
    let announced = Instant::now();
    announce(
        &daemon,
        &[
            "udp",
            "sport",
            "11211",
            "to",
            "198.18.0.1/32",
            "drop",
            "--for",
            "6s",
        ],
    );
    wait_rib(&upstream, ARRIVE, "the 6 s route must arrive", |rib| {
        rib.flow(MEMCACHED_FLOW).is_some()
    });
    rib_holds(
        &upstream,
        until(announced + Duration::from_secs(4)),
        "a 6 s route must stay for its 6 s",
        |rib| rib.flow(MEMCACHED_FLOW).is_some(),
    );
    wait_rib(
        &upstream,
        until(announced + Duration::from_secs(6) + ARRIVE),
        "a 6 s route must leave when it expires",
        |rib| rib.flow(MEMCACHED_FLOW).is_none(),
    );

    // `--for 1s` under min_hold 4s: floodwall may refuse it, or hold the route for 4 s; it
    // must not withdraw it after 1 s.
    let announced = Instant::now();
    let out = try_announce(
        &daemon,
        &[
            "udp",
            "sport",
            "19",
            "to",
            "198.18.0.1/32",
            "drop",
            "--for",
            "1s",
        ],
    );
    if out.status.success() {
        wait_rib(&upstream, ARRIVE, "the 1 s route must arrive", |rib| {
            rib.flow(CHARGEN_FLOW).is_some()
        });
        rib_holds(
            &upstream,
            until(announced + Duration::from_secs(3)),
            "a route must stay for min_hold (4 s), not leave after its 1 s",
            |rib| rib.flow(CHARGEN_FLOW).is_some(),
        );
        wait_rib(
            &upstream,
            until(announced + Duration::from_secs(4) + ARRIVE),
            "a route held for min_hold must leave after it",
            |rib| rib.flow(CHARGEN_FLOW).is_none(),
        );
    } else {
        eprintln!(
            "`--for 1s` under min_hold 4s was refused: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        rib_holds(&upstream, SETTLE, "a refused route is not sent", |rib| {
            rib.flow(CHARGEN_FLOW).is_none()
        });
    }
    stop(&daemon);
}

#[test]
fn a_dry_run_shows_what_it_would_announce_and_sends_nothing() {
    if !floodwall_tests::privileged("a_dry_run_shows_what_it_would_announce_and_sends_nothing") {
        return;
    }
    let lab = new_lab();
    let upstream = start_upstream(&lab);
    // No `dry_run` key: a dry run is the default.
    let config = write_config(&lab, &upstream, "");
    let daemon = start(&lab, &config);

    let flow = announce(&daemon, &NTP_RULE);
    let blackhole = announce(&daemon, &["--blackhole", "198.18.0.1"]);
    let shown = show(&daemon);
    assert_eq!(
        shown["dry_run"],
        Value::Bool(true),
        "dry_run is the default: {shown}"
    );
    let all = listed(&shown);
    assert_eq!(all.len(), 2, "{all:?}");
    for (id, kind) in [(flow, "flowspec"), (blackhole, "blackhole")] {
        let a = all
            .iter()
            .find(|a| a.id == id)
            .unwrap_or_else(|| panic!("announcement {id} must be listed: {all:?}"));
        assert_eq!(a.kind, kind, "{a:?}");
        assert_eq!(a.state, "dry_run", "nothing is sent in a dry run: {a:?}");
    }
    let route = &all.iter().find(|a| a.id == flow).expect("listed").route;
    assert!(
        route.contains("198.18.0.1/32"),
        "the listing shows the route it would send: {route}"
    );
    rib_holds(&upstream, SETTLE, "a dry run must send nothing", |rib| {
        rib.mitigations() == 0
    });
    stop(&daemon);
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn caps_and_refusals_leave_the_router_alone() {
    if !floodwall_tests::privileged("caps_and_refusals_leave_the_router_alone") {
        return;
    }
    let lab = new_lab();
    let upstream = start_upstream(&lab);
    // The prefix lengths are bounds, [shortest, longest]: these make the protected /24 and
    // /64 themselves too wide, so that a length is refused for its own reason.
    let config = write_config(
        &lab,
        &upstream,
        "dry_run = false\nmax_routes = 2\nmin_hold = \"1s\"\n\
         prefix_len_v4 = [28, 32]\nprefix_len_v6 = [96, 128]\n",
    );
    let daemon = start(&lab, &config);
    // Refusals first, under the cap, so that each is refused for its own reason.
    let ntp = announce(&daemon, &NTP_RULE);
    let before = wait_rib(
        &upstream,
        ARRIVE,
        "the NTP route must reach the router",
        |rib| rib.flow(NTP_FLOW).is_some(),
    );
    wait_state(&daemon, ntp, "announced");
    let shown_before = listed(&show(&daemon));
    let refusals: [(&[&str], &[&str]); 7] = [
        (
            &["udp", "sport", "123", "to", "198.19.0.1/32", "drop"][..],
            &["protected"][..],
        ),
        (
            &["udp", "sport", "123", "to", "198.18.0.0/24", "drop"],
            &["prefix length", "prefix_len", "/24"],
        ),
        (
            &["udp", "dport", "53", "to", "2001:2::/64", "drop"],
            &["prefix length", "prefix_len", "/64"],
        ),
        (
            &["udp", "ttl", "1-16", "to", "198.18.0.1/32", "drop"],
            &["ttl"],
        ),
        (
            &[
                "udp",
                "payload",
                "0:deadbeef",
                "to",
                "198.18.0.1/32",
                "drop",
            ],
            &["payload"],
        ),
        (
            &[
                "udp",
                "dport",
                "7777",
                "source",
                "unknown",
                "to",
                "198.18.0.1/32",
                "drop",
            ],
            &["source"],
        ),
        (&["--blackhole", "198.19.0.1"], &["protected"]),
    ];
    for (args, names) in refusals {
        refused(&daemon, args, names);
    }
    rib_holds(
        &upstream,
        SETTLE,
        "refused announcements must change nothing at the router",
        |rib| held(rib) == held(&before),
    );
    assert_eq!(
        listed(&show(&daemon)),
        shown_before,
        "refused announcements must change nothing in upstream show"
    );

    // max_routes 2: a third route is refused, or kept back (`suppressed`); never sent.
    let at_most_two = |rib: &Rib| rib.mitigations() <= 2;
    announce(
        &daemon,
        &["udp", "sport", "53", "to", "198.18.0.1/32", "drop"],
    );
    let third = try_announce(
        &daemon,
        &["udp", "sport", "389", "to", "198.18.0.1/32", "drop"],
    );
    eprintln!(
        "a third route over max_routes 2: {} {}{}",
        third.status,
        String::from_utf8_lossy(&third.stdout).trim(),
        String::from_utf8_lossy(&third.stderr).trim()
    );
    wait_rib(
        &upstream,
        ARRIVE,
        "two routes must reach the router",
        |rib| {
            assert!(at_most_two(rib), "never more than max_routes (2):\n{rib}");
            rib.mitigations() == 2
        },
    );
    rib_holds(
        &upstream,
        SETTLE,
        "never more than max_routes (2)",
        at_most_two,
    );
    stop(&daemon);
}

#[test]
fn allowlisted_sources_are_never_blocked_upstream() {
    if !floodwall_tests::privileged("allowlisted_sources_are_never_blocked_upstream") {
        return;
    }
    let lab = new_lab();
    let upstream = start_upstream(&lab);
    let config = write_config(&lab, &upstream, "dry_run = false\nmin_hold = \"1s\"\n");
    let daemon = start(&lab, &config);
    run_ok(&daemon, &["allow", "add", &lab.client().ipv4.to_string()]);

    // A route without `from` drops every source, the client's too.
    refused(&daemon, &NTP_RULE, &["allow"]);
    refused(
        &daemon,
        &[
            "from",
            "198.18.0.0/24",
            "udp",
            "sport",
            "123",
            "to",
            "198.18.0.1/32",
            "drop",
        ],
        &["allow"],
    );
    rib_holds(&upstream, SETTLE, "refused routes are not sent", |rib| {
        rib.mitigations() == 0
    });
    assert!(listed(&show(&daemon)).is_empty(), "nothing is listed");

    // The attackers' /31 (198.18.0.10-11) does not hold the client (198.18.0.2).
    announce(
        &daemon,
        &[
            "from",
            "198.18.0.10/31",
            "udp",
            "sport",
            "123",
            "to",
            "198.18.0.1/32",
            "drop",
        ],
    );
    let rib = wait_rib(
        &upstream,
        ARRIVE,
        "a route from other sources must be sent",
        |rib| rib.flow(PARTNER_SAFE_FLOW).is_some(),
    );
    assert_eq!(rib.mitigations(), 1, "{rib}");
    stop(&daemon);
}

#[test]
fn announcements_outlive_crashes_and_leave_on_a_clean_stop() {
    if !floodwall_tests::privileged("announcements_outlive_crashes_and_leave_on_a_clean_stop") {
        return;
    }
    let lab = new_lab();
    let mut upstream = start_upstream(&lab);
    let config = write_config(
        &lab,
        &upstream,
        "dry_run = false\non_stop = \"withdraw\"\nmin_hold = \"1s\"\n",
    );
    let daemon = start(&lab, &config);
    let id = announce(&daemon, &NTP_RULE);
    let present = |rib: &Rib| rib.flow(NTP_FLOW).is_some();
    wait_rib(
        &upstream,
        ARRIVE,
        "the route must reach the router",
        present,
    );

    // gobgpd crashes: the router drops the route with the session. floodwall sees the
    // speaker gone, and announces again, unasked, once a new gobgpd is up (with an empty
    // RIB).
    upstream.kill_gobgpd().expect("kill -9 of gobgpd");
    wait_rib(
        &upstream,
        ARRIVE,
        "a crash of gobgpd withdraws its routes",
        |rib| rib.mitigations() == 0,
    );
    // Unreachable with an error: `reachable: false` alone is also the state before the
    // first read-back.
    let mut last = Value::Null;
    let noticed = poll_until(ARRIVE, Duration::from_millis(200), || {
        last = show(&daemon);
        last["speaker"]["reachable"] == Value::Bool(false) && last["speaker"]["error"].is_string()
    });
    assert!(
        noticed,
        "upstream show must report the speaker unreachable, and why: {last}"
    );
    upstream.start_gobgpd().expect("gobgpd starts again");
    upstream
        .wait_established(Duration::from_secs(20))
        .expect("the session comes back");
    wait_rib(
        &upstream,
        ARRIVE,
        "floodwall must announce again to a restarted gobgpd, unasked",
        present,
    );
    wait_state(&daemon, id, "announced");

    // floodwall crashes: gobgpd still runs and keeps the route. A new floodwall with the
    // same config and run dir takes the announcement over, without a gap at the router.
    lab.signal(daemon.proc(), libc::SIGKILL);
    lab.wait(daemon.proc(), Duration::from_secs(10))
        .expect("kill -9 ends floodwall");
    let done = AtomicBool::new(false);
    let readings = AtomicUsize::new(0);
    let gaps = AtomicUsize::new(0);
    let daemon = std::thread::scope(|scope| {
        // Watches the router through the whole restart.
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if let Ok(rib) = upstream.rib() {
                    readings.fetch_add(1, Ordering::Relaxed);
                    if !present(&rib) {
                        gaps.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        std::thread::sleep(SETTLE);
        let again = start(&lab, &config);
        std::thread::sleep(SETTLE);
        done.store(true, Ordering::Relaxed);
        again
    });
    assert!(readings.load(Ordering::Relaxed) > 20, "the watcher ran");
    assert_eq!(
        gaps.load(Ordering::Relaxed),
        0,
        "the route must stay at the router while floodwall is dead and when it starts again"
    );
    wait_state(&daemon, id, "announced");

    // A clean stop with on_stop = "withdraw" takes the route back; gobgpd and the session
    // stay, so the withdrawal is floodwall's.
    daemon
        .stop(libc::SIGTERM)
        .expect("floodwall stops on SIGTERM");
    wait_rib(
        &upstream,
        ARRIVE,
        "on_stop = withdraw must withdraw on SIGTERM",
        |rib| rib.mitigations() == 0,
    );
    let gobgpd = upstream.gobgpd().expect("gobgpd runs");
    assert!(lab.try_wait(gobgpd).is_none(), "gobgpd still runs");
    assert!(
        upstream.established().expect("birdc"),
        "the session is still up"
    );
    daemon.detach().expect("detach");
}

#[test]
fn a_blackhole_takes_the_address_offline_until_it_expires() {
    if !floodwall_tests::privileged("a_blackhole_takes_the_address_offline_until_it_expires") {
        return;
    }
    let lab = new_lab();
    let upstream = start_upstream(&lab);
    let config = write_config(&lab, &upstream, "dry_run = false\nmin_hold = \"1s\"\n");
    let daemon = start(&lab, &config);

    refused(&daemon, &["--blackhole", "198.19.0.1"], &["protected"]);
    rib_holds(
        &upstream,
        Duration::from_secs(2),
        "a refused blackhole is not sent",
        |rib| rib.unicast4.is_empty(),
    );

    let announced = Instant::now();
    let out = daemon.cli_ok(&[
        "upstream",
        "announce",
        "--blackhole",
        "198.18.0.1",
        "--for",
        "5s",
    ]);
    assert!(
        out.contains("198.18.0.1") && out.to_lowercase().contains("offline"),
        "a blackhole must say that it takes the address offline: {out}"
    );
    let rib = wait_rib(
        &upstream,
        ARRIVE,
        "the blackhole must reach the router",
        |rib| rib.blackholes().count() > 0,
    );
    let holes: Vec<&str> = rib.blackholes().map(|r| r.prefix.as_str()).collect();
    assert_eq!(
        holes,
        ["198.18.0.1/32"],
        "exactly the address, nothing wider:\n{rib}"
    );
    assert!(rib.flow4.is_empty() && rib.flow6.is_empty(), "{rib}");
    let all = listed(&show(&daemon));
    assert!(
        all.len() == 1 && all[0].kind == "blackhole",
        "upstream show lists the blackhole: {all:?}"
    );

    rib_holds(
        &upstream,
        until(announced + Duration::from_secs(3)),
        "a 5 s blackhole must stay for its 5 s",
        |rib| rib.unicast("198.18.0.1/32").is_some(),
    );
    wait_rib(
        &upstream,
        until(announced + Duration::from_secs(5) + ARRIVE),
        "a 5 s blackhole must leave when it expires",
        |rib| rib.blackholes().count() == 0,
    );
    stop(&daemon);
}

/// The UDP service of the signature test, and its port.
const SERVICE_PORT: u16 = 7777;
/// The junk flood's route as BIRD prints it: the signature without what FlowSpec lacks
/// (its TTL and payload), aimed at the server's address.
const JUNK_FLOW: &str = "dst 198.18.0.1/32; proto 17; dport 7777; length 92;";

/// The signature's route is held back by `max_routes` while the flood goes on: `upstream
/// show` lists it with its cap, and the router does not have it. Stops `flood` if not.
fn assert_held_back_by_max_routes(lab: &Lab, daemon: &Daemon, upstream: &Upstream, flood: &Proc) {
    let mut shown = Value::Null;
    let held_back = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        shown = show(daemon);
        shown["held_back"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["by"] == "max_routes"))
    });
    let rib = upstream.rib().expect("birdc");
    if !held_back {
        let _ = lab.stop(flood, libc::SIGINT, Duration::from_secs(5));
    }
    assert!(
        held_back,
        "the signature's route must be held back by max_routes: {shown}\n{}",
        daemon.log()
    );
    let held = &shown["held_back"][0];
    assert!(
        held["route"].as_str().is_some_and(|r| r.contains("len 92"))
            && held["origin"]
                .as_str()
                .is_some_and(|o| o.starts_with("signature ")),
        "the held-back route is the signature's: {shown}"
    );
    assert!(
        rib.flow(JUNK_FLOW).is_none() && rib.mitigations() == 1,
        "nothing over the cap reaches the router: {rib}"
    );
    let text = daemon.cli_ok(&["upstream", "show"]);
    assert!(
        text.contains("held back") && text.contains("max_routes"),
        "{text}"
    );
}

/// `auto_above` as a share of the line rate: a junk flood from thousands of sources gets a
/// signature (the daemon's own rule, see `e2e_signatures`); the server receives far more
/// than `auto_above`, so the signature is wanted upstream, as the router can match it
/// (length, not TTL or payload), for each of the server's own addresses. The operator's
/// route fills `max_routes` (1): the signature's are held back, and `upstream show` says
/// by which cap; once the operator withdraws theirs, one of them goes upstream by itself. It leaves
/// the router with the signature once the flood ends.
#[test]
fn a_signature_goes_upstream_by_itself_while_the_link_is_flooded() {
    if !floodwall_tests::privileged("a_signature_goes_upstream_by_itself_while_the_link_is_flooded")
    {
        return;
    }
    floodwall_tests::flood::require_trafgen().expect("trafgen must be installed");
    let lab = Lab::with_router(1).expect("the namespace lab with a router must build");
    let upstream = start_upstream(&lab);
    let config = write_config(
        &lab,
        &upstream,
        // 0.1 % of the veth's 10 Gbit/s line rate: 10 Mbit/s, far under the flood (about
        // 80 Mbit/s here), far over the user's queries.
        "dry_run = false\nmin_hold = \"1s\"\nauto_above = \"0.1%\"\nmax_routes = 1\n",
    );
    let service_addr = std::net::SocketAddr::new(lab.server().ipv4.into(), SERVICE_PORT);
    let _service =
        floodwall_tests::udp::Service::start(lab.server(), SERVICE_PORT).expect("the UDP service");
    let daemon = lab
        .start_floodwall(&[
            "--config",
            &config,
            "--pps",
            "2000",
            "--signature-min-baseline",
            "5s",
            "--signature-quiet",
            "3s",
        ])
        .expect("floodwall starts");
    // The user's queries at 100 a second teach the baseline; under auto_above nothing goes
    // upstream.
    let before =
        floodwall_tests::udp::query(lab.client(), service_addr, 700, 100).expect("queries");
    assert!(before.share() >= 0.99, "{before:?}");
    // The operator's route, the one `max_routes` allows; under auto_above nothing else.
    let operator = announce(&daemon, &NTP_RULE);
    wait_rib(
        &upstream,
        ARRIVE,
        "the operator's route must reach the router",
        |rib| rib.mitigations() == 1 && rib.flow(NTP_FLOW).is_some(),
    );

    let flood = floodwall_tests::flood::spawn_udp_flood(
        &lab,
        "junk",
        &format!("udp(sp=drnd(1024, 65535), dp={SERVICE_PORT}),\n  fill(0x66, 64)"),
    )
    .expect("trafgen starts");
    assert_held_back_by_max_routes(&lab, &daemon, &upstream, &flood);

    // The operator withdraws theirs: the signature's goes up by itself.
    let withdrawn = daemon
        .cli(&["upstream", "withdraw", &operator.to_string()])
        .expect("cli");
    assert!(withdrawn.status.success(), "{withdrawn:?}");
    let started = Instant::now();
    let arrived = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        upstream
            .rib()
            .is_ok_and(|rib| rib.flow(JUNK_FLOW).is_some())
    });
    let took = started.elapsed();
    let listed = show(&daemon);
    let rib = upstream.rib().expect("birdc");
    let _ = lab.stop(&flood, libc::SIGINT, Duration::from_secs(5));
    assert!(
        arrived,
        "the signature must reach the router: {listed}\n{rib}\n{}",
        daemon.log()
    );
    println!("the junk flood's signature reached the router {took:?} after the withdrawal");
    assert_eq!(
        rib.flow(JUNK_FLOW).and_then(|r| r.action),
        Some(TrafficAction::Discard),
        "{rib}"
    );
    let origins: Vec<String> = listed["announcements"]
        .as_array()
        .expect("announcements")
        .iter()
        .filter(|a| a["id"] != operator)
        .filter_map(|a| a["origin"].as_str().map(str::to_owned))
        .collect();
    assert!(
        !origins.is_empty() && origins.iter().all(|o| o.starts_with("signature ")),
        "the announcements are the signature's: {listed}"
    );
    // The server's IPv6 address wants the same route: one route is all the cap allows.
    assert!(
        listed["held_back"].as_array().is_some_and(|h| h.len() == 1
            && h[0]["route"]
                .as_str()
                .is_some_and(|r| r.contains("to 2001:2::1/128"))),
        "the IPv4 route went up, the IPv6 one is still held back: {listed}"
    );
    // The flood ends: after the quiet time the signature goes, and its route with it.
    wait_rib(
        &upstream,
        Duration::from_secs(30),
        "the route must leave the router with its signature",
        |rib| rib.mitigations() == 0,
    );
    stop(&daemon);
}

/// `on_stop = "keep"`: a clean stop leaves the route at the router; it outlives its expiry
/// while floodwall is down (GoBGP has no expiry of its own), and the next start, reading
/// the announcements it kept, withdraws it.
#[test]
fn kept_routes_outlive_a_stop_and_the_next_start_withdraws_what_expired() {
    if !floodwall_tests::privileged(
        "kept_routes_outlive_a_stop_and_the_next_start_withdraws_what_expired",
    ) {
        return;
    }
    let lab = new_lab();
    let upstream = start_upstream(&lab);
    let config = write_config(
        &lab,
        &upstream,
        "dry_run = false\non_stop = \"keep\"\nmin_hold = \"1s\"\n",
    );
    let daemon = start(&lab, &config);
    let mut args = NTP_RULE.to_vec();
    args.extend(["--for", "6s"]);
    let asked = Instant::now();
    announce(&daemon, &args);
    let present = |rib: &Rib| rib.flow(NTP_FLOW).is_some();
    wait_rib(
        &upstream,
        ARRIVE,
        "the route must reach the router",
        present,
    );
    daemon
        .stop(libc::SIGTERM)
        .expect("floodwall stops on SIGTERM");
    upstream
        .rib_holds_for(SETTLE, present)
        .expect("on_stop = keep leaves the route at the router");
    // Past its expiry, with no floodwall to withdraw it.
    std::thread::sleep(Duration::from_secs(7).saturating_sub(asked.elapsed()));
    assert!(
        present(&upstream.rib().expect("birdc")),
        "nothing withdrew it meanwhile"
    );
    let again = start(&lab, &config);
    wait_rib(
        &upstream,
        ARRIVE,
        "the next start must withdraw what expired while floodwall was down",
        |rib| rib.mitigations() == 0,
    );
    stop(&again);
}
