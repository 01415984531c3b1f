//! Rules by packet shape, end to end: UDP floods from thousands of sources, each under any
//! per-source limit, against a UDP service whose user goes on being answered once one rule,
//! added live with the CLI, drops the flood; a rule of the config file applied by reload;
//! a rule that expires; what the counters, the journal and Prometheus say.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use floodwall::rules::RuleView;
use floodwall_tests::{
    flood,
    lab::{Daemon, Lab, Proc, poll_until},
    udp,
};

#[path = "common/udp_lab.rs"]
mod udp_lab;

use udp_lab::{METRICS, PORT, new_lab, service_addr, stop};

/// The daemon of [`udp_lab::start_daemon`], signatures off: these tests are about the
/// operator's rules (`e2e_signatures` has the daemon's own).
fn start<'l>(lab: &'l Lab, extra: &[&str]) -> Daemon<'l> {
    let mut args = vec!["--signatures", "off"];
    args.extend(extra);
    udp_lab::start_daemon(lab, &args)
}

/// A UDP flood at the service from 4,096 sources (see `flood::spawn_udp_flood`).
fn spawn_flood(lab: &Lab, name: &str, udp_and_payload: &str) -> Proc {
    flood::spawn_udp_flood(lab, name, udp_and_payload).expect("trafgen must start")
}

fn rules(daemon: &Daemon) -> Vec<RuleView> {
    daemon.rules().expect("rules list --json")
}

fn udp_passed(daemon: &Daemon) -> u64 {
    let stats = daemon.stats().expect("stats --json");
    stats
        .classes
        .iter()
        .find(|c| c.class == "udp")
        .map_or(0, |c| {
            c.outcomes
                .iter()
                .filter(|o| o.outcome == "passed")
                .map(|o| o.packets)
                .sum()
        })
}

/// Waits until the flood reaches the server (the UDP class passes packets fast); `false`
/// if it never does (trafgen may send nothing under emulation).
fn flood_arrives(daemon: &Daemon) -> bool {
    let start = udp_passed(daemon);
    poll_until(Duration::from_secs(10), Duration::from_millis(200), || {
        udp_passed(daemon) > start + 2_000
    })
}

/// An Ethernet frame: UDP from `src` to the server (198.18.0.1), 4 bytes of payload.
fn udp_frame(src: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, [198, 18, 0, 1], 64)
        .udp(sport, dport)
        .write(&mut frame, &[1, 2, 3, 4])
        .expect("a UDP frame");
    frame
}

fn succeeded(out: &std::process::Output, what: &str) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} must succeed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The service's user, while the flood goes on: at least 99 % answered.
fn assert_served(lab: &Lab, when: &str) -> udp::Answers {
    udp::assert_served(lab, service_addr(lab), when)
}

/// Reflection: NTP servers' answers (UDP from port 123, 468 bytes) from 4,096 addresses,
/// each far under the per-source limit, at the service. One rule added while the flood
/// runs, `udp sport 123 drop`, drops it in the driver, and the service's user, who sends
/// from an ephemeral port, goes on being answered; the rule's counters and Prometheus say
/// what it dropped, and the journal that it matched.
#[test]
fn a_reflection_flood_is_stopped_by_one_rule_added_live() {
    if !floodwall_tests::privileged("a_reflection_flood_is_stopped_by_one_rule_added_live") {
        return;
    }
    let lab = new_lab();
    let _service = udp::Service::start(lab.server(), PORT).expect("the UDP service");
    let daemon = start(&lab, &[]);
    assert_served(&lab, "before the flood");
    let flood = spawn_flood(
        &lab,
        "reflection",
        &format!("udp(sp=123, dp={PORT}),\n  fill(0x17, 440)"),
    );
    if !flood_arrives(&daemon) {
        stop(&lab, &flood);
        assert!(floodwall_tests::in_vm(), "the flood must reach the server");
        return;
    }
    let out = daemon
        .cli(&[
            "rules",
            "add",
            "udp",
            "sport",
            "123",
            "drop",
            "--comment",
            "NTP reflection",
        ])
        .expect("cli");
    assert!(
        succeeded(&out, "rules add").contains("added rule 1"),
        "rules add says which rule"
    );
    assert_served(&lab, "with the rule");
    stop(&lab, &flood);
    let rule = rules(&daemon).into_iter().next().expect("the rule");
    println!("rule: {rule:?}");
    assert_eq!(rule.rule, "udp sport 123 drop");
    assert_eq!(rule.comment.as_deref(), Some("NTP reflection"));
    assert!(
        rule.matched_packets > 10_000,
        "the rule must match the flood: {rule:?}"
    );
    assert_eq!(
        rule.dropped_packets, rule.matched_packets,
        "a drop rule drops all it matches"
    );
    let blocked = daemon.blocked().expect("blocked list");
    assert!(
        blocked.is_empty(),
        "no source went over its limit: the rule did the work: {blocked:?}"
    );
    let events = succeeded(&daemon.cli(&["events"]).expect("cli"), "events");
    assert!(
        events.contains("rule 1 matched its first packet"),
        "the journal says the rule matched: {events}"
    );
    let text = lab.scrape_metrics(METRICS);
    let iface = &lab.server().iface;
    let line =
        format!(r#"floodwall_rule_packets_total{{iface="{iface}",rule="1",result="dropped"}} "#);
    let value: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metrics must have `{line}`:\n{text}"));
    assert!(value >= rule.dropped_packets, "Prometheus counts the drops");
}

/// Junk: 64 bytes of the same junk from 4,096 addresses with random source ports, at the
/// service's port. One rule on the payload's first bytes, added while the flood runs,
/// drops it; the user's queries, to the same port, do not match and are answered.
#[test]
fn a_junk_payload_flood_is_stopped_by_one_rule_on_its_bytes() {
    if !floodwall_tests::privileged("a_junk_payload_flood_is_stopped_by_one_rule_on_its_bytes") {
        return;
    }
    let lab = new_lab();
    let _service = udp::Service::start(lab.server(), PORT).expect("the UDP service");
    let daemon = start(&lab, &[]);
    let flood = spawn_flood(
        &lab,
        "junk",
        &format!("udp(sp=drnd(1024, 65535), dp={PORT}),\n  fill(0x66, 64)"),
    );
    if !flood_arrives(&daemon) {
        stop(&lab, &flood);
        assert!(floodwall_tests::in_vm(), "the flood must reach the server");
        return;
    }
    let rule = format!("udp dport {PORT} payload 0:66666666 drop");
    let words: Vec<&str> = rule.split(' ').collect();
    let mut args = vec!["rules", "add"];
    args.extend(&words);
    succeeded(&daemon.cli(&args).expect("cli"), "rules add");
    assert_served(&lab, "with the payload rule");
    stop(&lab, &flood);
    let view = rules(&daemon).into_iter().next().expect("the rule");
    println!("rule: {view:?}");
    assert!(view.matched_packets > 10_000, "{view:?}");
    assert_eq!(view.dropped_packets, view.matched_packets);
}

/// A rule of the config file comes with a reload, and goes with the next; a rule added
/// with `--for` expires by itself; rules the CLI added stay through reloads; a bad rule
/// in the file is refused naming it, and nothing changes.
#[test]
fn config_rules_come_and_go_with_reloads_and_rules_expire() {
    if !floodwall_tests::privileged("config_rules_come_and_go_with_reloads_and_rules_expire") {
        return;
    }
    let lab = Lab::new(0).expect("the namespace lab must build");
    let file = lab.dir().join("floodwall.toml");
    let config = |rules: &str| {
        format!(
            "[[interface]]\nname = \"{}\"\n\n[limits]\npps = \"5k\"\n{rules}",
            lab.server().iface
        )
    };
    let write = |text: &str| std::fs::write(&file, text).expect("write config");
    write(&config(""));
    let file_arg = file.to_string_lossy().into_owned();
    let daemon = lab
        .start_floodwall(&["--xdp-mode", "driver", "--config", &file_arg])
        .expect("floodwall must start");
    assert!(rules(&daemon).is_empty());
    succeeded(
        &daemon
            .cli(&["rules", "add", "tcp", "dport", "23", "drop"])
            .expect("cli"),
        "rules add",
    );
    write(&config(
        "\n[[rules]]\nrule = \"udp sport 19 drop\"\ncomment = \"chargen\"\n\n[[rules]]\nrule = \"icmp icmp-type 8 len 1000-65535 rate-limit 10pps\"\npriority = 10\n",
    ));
    let out = succeeded(&daemon.cli(&["reload"]).expect("cli"), "reload");
    assert!(out.contains("added from the config"), "{out}");
    let texts =
        |daemon: &Daemon| -> Vec<String> { rules(daemon).into_iter().map(|r| r.rule).collect() };
    assert_eq!(
        texts(&daemon),
        [
            "icmp icmp-type 8 len 1000-65535 rate-limit 10pps",
            "tcp dport 23 drop",
            "udp sport 19 drop"
        ],
        "by priority, then id"
    );
    // A bad rule: refused, naming the file, the rule and the field; nothing changes.
    write(&config("\n[[rules]]\nrule = \"udp sport 70000 drop\"\n"));
    let out = daemon.cli(&["reload"]).expect("cli");
    assert!(!out.status.success());
    let message =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        message.contains("rules[0].rule") && message.contains("`sport`: 70000 is over 65535"),
        "{message}"
    );
    assert_eq!(texts(&daemon).len(), 3);
    // A dry run says which rule a packet would meet.
    let out = succeeded(
        &daemon
            .cli(&[
                "rules",
                "test",
                "udp",
                "from",
                "198.19.3.4",
                "to",
                "198.18.0.1",
                "sport",
                "19",
                "dport",
                "5000",
            ])
            .expect("cli"),
        "rules test",
    );
    assert!(
        out.contains("meets rule 2") && out.contains("udp sport 19 drop"),
        "{out}"
    );
    let out = succeeded(
        &daemon
            .cli(&[
                "rules",
                "test",
                "udp",
                "from",
                "198.19.3.4",
                "to",
                "198.18.0.1",
                "sport",
                "20",
            ])
            .expect("cli"),
        "rules test",
    );
    assert!(out.contains("meets no rule"), "{out}");
    a_captured_frame_is_tested_as_the_program_reads_it(&daemon);
    // The file's rules go with it; the CLI's stays.
    write(&config(""));
    succeeded(&daemon.cli(&["reload"]).expect("cli"), "reload");
    assert_eq!(texts(&daemon), ["tcp dport 23 drop"]);
    expires_and_bad_input_changes_nothing(&daemon);
}

/// A `per-source` rule blocks a source that goes over it, under that rule only: `blocked
/// list` shows it with the rule, the journal says so, and `blocked remove` ends it.
#[test]
fn a_per_source_rule_blocks_a_source_under_it_and_says_so() {
    if !floodwall_tests::privileged("a_per_source_rule_blocks_a_source_under_it_and_says_so") {
        return;
    }
    let lab = new_lab();
    let _service = udp::Service::start(lab.server(), PORT).expect("the UDP service");
    let daemon = start(&lab, &[]);
    let port = PORT.to_string();
    let out = daemon
        .cli(&["rules", "add", "udp", "dport", &port, "per-source", "50pps"])
        .expect("cli");
    succeeded(&out, "rules add");
    // 600 queries at 300 a second: over 50 a second within the first.
    let answers = udp::query(lab.client(), service_addr(&lab), 600, 300).expect("the queries");
    println!("over the rule's rate: {answers:?}");
    assert!(
        answers.answered < answers.sent / 2,
        "most queries over the rate are dropped: {answers:?}"
    );
    let client = IpAddr::V4(lab.client().ipv4);
    let under_rule = |daemon: &Daemon| {
        daemon
            .blocked()
            .is_ok_and(|b| b.iter().any(|s| s.addr == client && s.rule == Some(1)))
    };
    assert!(
        under_rule(&daemon),
        "blocked list shows the source under rule 1"
    );
    let out = succeeded(
        &daemon.cli(&["blocked", "list"]).expect("cli"),
        "blocked list",
    );
    assert!(out.contains("blocked under rule 1"), "{out}");
    // The daemon notices a rule's block at its next sample, every second.
    let noted = poll_until(Duration::from_secs(5), Duration::from_millis(200), || {
        daemon.cli(&["events"]).is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout).contains(&format!("rule 1 blocked {client} for"))
        })
    });
    assert!(noted, "the journal says rule 1 blocked {client}");
    // Its packets of other shapes are not the rule's business: a query to another port
    // reaches the server (no service there, so nobody answers, but the rule does not drop it).
    let dropped_before = rules(&daemon)[0].dropped_packets;
    let other = SocketAddr::new(IpAddr::V4(lab.server().ipv4), PORT + 1);
    let _ = udp::query(lab.client(), other, 20, 100).expect("queries to another port");
    assert_eq!(
        rules(&daemon)[0].dropped_packets,
        dropped_before,
        "the rule drops only its own shape"
    );
    succeeded(
        &daemon
            .cli(&["blocked", "remove", &client.to_string()])
            .expect("cli"),
        "blocked remove",
    );
    assert!(!under_rule(&daemon), "blocked remove ends the rule's block");
    let again = udp::query(lab.client(), service_addr(&lab), 20, 10).expect("the queries");
    assert_eq!(
        again.answered, again.sent,
        "unblocked, it is answered again"
    );
}

/// `rules test --frame`: a captured frame, read as the program reads it, meets the rule its
/// words would (rule 2, `udp sport 19 drop`), and is said in words; bad hex and a cut frame
/// are refused by name.
fn a_captured_frame_is_tested_as_the_program_reads_it(daemon: &Daemon) {
    let frame = udp_frame([198, 19, 3, 4], 19, 5000);
    let hex: Vec<String> = frame.iter().map(|b| format!("{b:02x}")).collect();
    let out = succeeded(
        &daemon
            .cli(&["rules", "test", "--frame", &hex.join(":")])
            .expect("cli"),
        "rules test --frame",
    );
    assert!(
        out.contains("meets rule 2")
            && out.contains("from 198.19.3.4/32 to 198.18.0.1/32 udp sport 19 dport 5000"),
        "{out}"
    );
    let digits = hex.concat();
    for (bad, expected) in [
        ("0x45", "'x' at character 2 is not"),
        (&digits[..27], "an odd number"),
        (&digits[..40], "malformed (IPv4 header cut short)"),
    ] {
        let out = daemon.cli(&["rules", "test", "--frame", bad]).expect("cli");
        let message = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && message.contains(expected),
            "{bad}: {message}"
        );
    }
}

/// A rule added with `--for` expires by itself, and says so in the journal; bad rules on
/// the CLI are refused, naming the problem, and change nothing.
fn expires_and_bad_input_changes_nothing(daemon: &Daemon) {
    let texts =
        |daemon: &Daemon| -> Vec<String> { rules(daemon).into_iter().map(|r| r.rule).collect() };
    // Expiry.
    succeeded(
        &daemon
            .cli(&["rules", "add", "udp", "dport", "9", "drop", "--for", "2s"])
            .expect("cli"),
        "rules add --for",
    );
    assert_eq!(texts(daemon).len(), 2);
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(200), || {
            texts(daemon).len() == 1
        }),
        "the rule must expire: {:?}",
        texts(daemon)
    );
    let events = succeeded(&daemon.cli(&["events"]).expect("cli"), "events");
    assert!(events.contains("expired"), "the journal says so: {events}");
    // Bad input on the CLI changes nothing either.
    for (args, expected) in [
        (
            &["rules", "add", "udp", "sport", "123"][..],
            "needs an action",
        ),
        (
            &["rules", "add", "icmp", "dport", "80", "drop"],
            "needs the protocol to be tcp or udp",
        ),
        (&["rules", "remove", "99"], "no rule has id 99"),
        (&["rules", "show", "99"], "no rule has id 99"),
    ] {
        let out = daemon.cli(args).expect("cli");
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(text.contains(expected), "{args:?}: {text}");
    }
    assert_eq!(texts(daemon), ["tcp dport 23 drop"]);
}
