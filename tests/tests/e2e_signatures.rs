//! Attacks and signatures, end to end: the daemon learns a UDP service's traffic from its
//! user, then floods from thousands of sources, each far under the per-source limit, hit
//! the service. Nobody writes a rule: the daemon finds what the flood's packets share and
//! the user's do not, puts a rule of its own in force, and takes it away when the flood
//! ends. The user is answered throughout.

use std::time::{Duration, Instant};

use floodwall::{rules::Origin, traffic::view::AttacksView};
use floodwall_tests::{
    flood,
    lab::{Daemon, Lab, Proc, poll_until},
    udp,
};

#[path = "common/udp_lab.rs"]
mod udp_lab;

// The daemon as an operator starts it: signatures as `extra` says (by default, on).
use udp_lab::{METRICS, PORT, new_lab, service_addr, start_daemon as start, stop};

fn attacks(daemon: &Daemon) -> AttacksView {
    daemon.attacks().expect("attacks --json")
}

/// The user's queries for 12 s at 100 a second, all answered: the baseline (10 s are
/// needed before anything is enforced), which must then show the service.
fn learn_baseline(lab: &Lab, daemon: &Daemon) {
    let before = udp::query(lab.client(), service_addr(lab), 1_200, 100).expect("queries");
    assert!(before.share() >= 0.99, "before the flood: {before:?}");
    let baseline = daemon.baseline().expect("baseline --json");
    let service = baseline
        .services
        .iter()
        .find(|s| s.service == format!("udp/{PORT}"))
        .unwrap_or_else(|| panic!("the baseline has the service: {baseline:?}"));
    assert!(
        baseline.learned_s >= 10 && service.pps > 20.0,
        "{baseline:?}"
    );
    let text = daemon.cli_ok(&["baseline"]);
    assert!(
        text.contains(&format!("udp/{PORT}")) && text.contains("ready"),
        "{text}"
    );
}

/// Starts the flood while the user goes on querying, and waits up to 10 s for a rule of
/// the daemon's in force: how long after the flood's start it came, if it did.
fn flood_until_mitigated(
    lab: &Lab,
    daemon: &Daemon,
    name: &str,
    udp: &str,
) -> (Proc, Option<Duration>) {
    let started = Instant::now();
    let flood = flood::spawn_udp_flood(lab, name, udp).expect("trafgen must start");
    let mut mitigated = None;
    std::thread::scope(|scope| {
        let user = scope.spawn(|| udp::query(lab.client(), service_addr(lab), 300, 100));
        if poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            !daemon.rules().expect("rules").is_empty()
        }) {
            mitigated = Some(started.elapsed());
        }
        let _ = user.join();
    });
    (flood, mitigated)
}

/// Packets of the UDP class: (passed, dropped by a rule).
fn udp_outcomes(daemon: &Daemon) -> (u64, u64) {
    let get = |outcome| daemon.class_packets("udp", outcome).expect("stats");
    (get("passed"), get("dropped_rule"))
}

/// From 3 s after the flood started: the user is answered at 99 %, and 95 % of the flood
/// is dropped. In the VM, from 6 s: under emulation the service takes seconds to work
/// off the flood's packets that its socket queued before the signature came (one run lost
/// 12 queries of 1,000 from 3 s on).
fn assert_served_and_dropped(lab: &Lab, daemon: &Daemon, flooded_at: Instant) {
    let from = Duration::from_secs(if floodwall_tests::in_vm() { 6 } else { 3 });
    std::thread::sleep(from.saturating_sub(flooded_at.elapsed()));
    let (passed_from, dropped_from) = udp_outcomes(daemon);
    let during = udp::assert_served(lab.client(), service_addr(lab), "with the signature");
    let (passed_to, dropped_to) = udp_outcomes(daemon);
    let dropped = dropped_to - dropped_from;
    let passed = (passed_to - passed_from).saturating_sub(during.sent);
    #[expect(clippy::cast_precision_loss, reason = "a ratio")]
    let share = dropped as f64 / (dropped + passed).max(1) as f64;
    println!(
        "flood from 3 s on: {dropped} dropped, {passed} passed ({:.2} %)",
        share * 100.0
    );
    assert!(
        share >= 0.95,
        "95 % of the flood must be dropped: {dropped} of {}",
        dropped + passed
    );
}

/// Junk: 64 bytes of the same junk from 4,096 addresses with random source ports, at the
/// service's port, where the user sends 48-byte queries. Within two seconds a rule of the
/// daemon's matches the flood's payload, length and TTL, and not the user's queries; the
/// user is served, the flood dropped. When the flood stops, the rule is withdrawn after
/// its quiet time and the attack ends; `attacks` and the journal tell it all.
#[test]
fn a_junk_flood_gets_a_signature_of_its_own() {
    if !floodwall_tests::privileged("a_junk_flood_gets_a_signature_of_its_own") {
        return;
    }
    let lab = new_lab();
    let _service = udp::Service::start(lab.server(), PORT).expect("the UDP service");
    let daemon = start(&lab, &[]);
    learn_baseline(&lab, &daemon);
    let flooded_at = Instant::now();
    let (flood, mitigated_after) = flood_until_mitigated(
        &lab,
        &daemon,
        "junk",
        &format!("udp(sp=drnd(1024, 65535), dp={PORT}),\n  fill(0x66, 64)"),
    );
    let Some(mitigated_after) = mitigated_after else {
        stop(&lab, &flood);
        // Under emulation trafgen may send too little for an attack.
        assert!(
            floodwall_tests::in_vm() && udp_outcomes(&daemon).0 < 20_000,
            "a rule must be in force once the flood arrives: {:?}",
            attacks(&daemon)
        );
        return;
    };
    println!("a signature was in force {mitigated_after:?} after the flood started");
    let rule = daemon.rules().expect("rules").remove(0);
    println!("signature: {rule:?}");
    assert_eq!(rule.origin, Origin::Signature);
    assert!(
        rule.rule.starts_with(&format!(
            "udp dport {PORT} len 92 ttl 57 payload 0:66666666"
        )),
        "the signature names the flood's shape: {rule:?}"
    );
    assert_served_and_dropped(&lab, &daemon, flooded_at);
    if !floodwall_tests::in_vm() {
        assert!(
            mitigated_after <= Duration::from_millis(2_500),
            "a signature must be in force within 2 s of the flood (and trafgen's start): \
             {mitigated_after:?}"
        );
    }
    stop(&lab, &flood);
    assert_withdrawn_and_ended(&daemon, 1);
    let attack = &attacks(&daemon).attacks[0];
    assert!(attack.sources_seen > 100, "{attack:?}");
    let signature = &attack.signatures[0];
    assert!(signature.matched_packets > 10_000, "{signature:?}");
    assert!(signature.signature.flood_coverage >= 0.9, "{signature:?}");
    let text = daemon.cli_ok(&["attacks"]);
    assert!(text.contains(&format!("attack 1 on udp/{PORT}")), "{text}");
    assert_pcap_of_junk(&lab, &daemon);
    let text = lab.scrape_metrics(METRICS);
    let iface = &lab.server().iface;
    for line in [
        format!(r#"floodwall_attacks_total{{iface="{iface}"}} 1"#),
        format!(r#"floodwall_signatures_total{{iface="{iface}"}} 1"#),
        format!(r#"floodwall_attacks_active{{iface="{iface}"}} 0"#),
        format!(r#"floodwall_signatures_in_force{{iface="{iface}"}} 0"#),
    ] {
        assert!(text.contains(&line), "metrics must have `{line}`:\n{text}");
    }
    let events = daemon.cli_ok(&["events"]);
    assert!(
        events.contains(&format!("attack 1 on udp/{PORT}"))
            && events.contains("signature rule 1 in force")
            && events.contains("signature rule 1 withdrawn")
            && events.contains("attack 1 on udp/7777 ended"),
        "the journal tells the attack: {events}"
    );
}

/// `attacks --pcap 1`: a pcap file of the attack's samples, nearly all of them the junk
/// flood's frames (106 bytes, the payload's 0x66 from byte 42 on), each whole.
fn assert_pcap_of_junk(lab: &Lab, daemon: &Daemon) {
    let path = lab.dir().join("attack-1.pcap");
    let path_text = path.display().to_string();
    let said = daemon.cli_ok(&["attacks", "--pcap", "1", "--out", &path_text]);
    assert!(said.contains("samples of attack 1"), "{said}");
    let bytes = std::fs::read(&path).expect("the pcap file");
    assert_eq!(
        bytes.get(..4),
        Some(&0xa1b2_c3d4u32.to_ne_bytes()[..]),
        "a pcap file"
    );
    // Records: 16-byte headers (seconds, microseconds, captured length, length), then data.
    let word =
        |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("four bytes")) as usize;
    let (mut at, mut records, mut junk) = (24, 0, 0);
    while at + 16 <= bytes.len() {
        let (captured, len) = (word(at + 8), word(at + 12));
        let data = &bytes[at + 16..at + 16 + captured];
        records += 1;
        if len == 106 && captured == 106 && data[42..].iter().all(|&b| b == 0x66) {
            junk += 1;
        }
        at += 16 + captured;
    }
    assert_eq!(at, bytes.len(), "whole records");
    println!("pcap: {records} samples, {junk} of the junk flood");
    assert!(
        records > 100 && junk * 10 >= records * 9,
        "{records} samples, {junk} junk"
    );
}

/// After the flood: every rule of the daemon's withdrawn and every attack ended, with
/// `signatures` signatures in all.
fn assert_withdrawn_and_ended(daemon: &Daemon, signatures: usize) {
    assert!(
        poll_until(Duration::from_secs(30), Duration::from_millis(500), || {
            daemon.rules().expect("rules").is_empty()
        }),
        "the signatures must be withdrawn: {:?}",
        attacks(daemon)
    );
    assert!(
        poll_until(Duration::from_secs(5), Duration::from_millis(200), || {
            attacks(daemon).attacks.iter().all(|a| a.ended.is_some())
        }),
        "the attack must end: {:?}",
        attacks(daemon)
    );
    let view = attacks(daemon);
    println!("attacks: {view:?}");
    let found: usize = view.attacks.iter().map(|a| a.signatures.len()).sum();
    assert_eq!(found, signatures, "{view:?}");
}

/// In `monitor`, the signature is computed and put in as a `monitor` rule: it counts the
/// flood and drops nothing.
#[test]
fn in_monitor_mode_a_signature_counts_and_drops_nothing() {
    if !floodwall_tests::privileged("in_monitor_mode_a_signature_counts_and_drops_nothing") {
        return;
    }
    let lab = new_lab();
    let _service = udp::Service::start(lab.server(), PORT).expect("the UDP service");
    let daemon = start(&lab, &["--signatures", "monitor"]);
    learn_baseline(&lab, &daemon);
    let (flood, mitigated_after) = flood_until_mitigated(
        &lab,
        &daemon,
        "junk-monitored",
        &format!("udp(sp=drnd(1024, 65535), dp={PORT}),\n  fill(0x66, 64)"),
    );
    std::thread::sleep(Duration::from_secs(2));
    stop(&lab, &flood);
    if mitigated_after.is_none() {
        assert!(
            floodwall_tests::in_vm(),
            "a monitor rule must come: {:?}",
            attacks(&daemon)
        );
        return;
    }
    let rule = daemon.rules().expect("rules").remove(0);
    println!("monitor signature: {rule:?}");
    assert!(rule.rule.ends_with(" monitor"), "{rule:?}");
    assert!(
        rule.matched_packets > 1_000,
        "it counts the flood: {rule:?}"
    );
    assert_eq!(rule.dropped_packets, 0, "{rule:?}");
    assert_eq!(udp_outcomes(&daemon).1, 0, "nothing dropped by a rule");
    assert!(
        daemon
            .cli_ok(&["attacks"])
            .contains("monitor (computed and counted, not enforced)")
    );
}

/// Attackers rotate vectors: an NTP-style reflection (UDP from port 123, 468 bytes) first,
/// then, half way, a junk flood. Each gets its own signature; the user is served 3 s after
/// each starts; the reflection's rule is withdrawn once it stops matching, the junk's once
/// the flood ends, and it was one attack with two signatures.
#[test]
fn a_flood_that_changes_shape_gets_a_second_signature() {
    if !floodwall_tests::privileged("a_flood_that_changes_shape_gets_a_second_signature") {
        return;
    }
    let lab = new_lab();
    let _service = udp::Service::start(lab.server(), PORT).expect("the UDP service");
    let daemon = start(&lab, &[]);
    learn_baseline(&lab, &daemon);
    let first_at = Instant::now();
    let (reflection, mitigated) = flood_until_mitigated(
        &lab,
        &daemon,
        "reflection",
        &format!("udp(sp=123, dp={PORT}),\n  fill(0x17, 440)"),
    );
    if mitigated.is_none() {
        stop(&lab, &reflection);
        assert!(
            floodwall_tests::in_vm(),
            "a rule must come: {:?}",
            attacks(&daemon)
        );
        return;
    }
    let first = daemon.rules().expect("rules").remove(0);
    assert!(
        first.rule.starts_with(&format!(
            "udp sport 123 dport {PORT} len 468 ttl 57 payload 0:1717"
        )),
        "{first:?}"
    );
    assert_served_and_dropped(&lab, &daemon, first_at);
    // The attackers switch.
    stop(&lab, &reflection);
    let second_at = Instant::now();
    let junk = flood::spawn_udp_flood(
        &lab,
        "junk-after",
        &format!("udp(sp=drnd(1024, 65535), dp={PORT}),\n  fill(0x66, 64)"),
    )
    .expect("trafgen must start");
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
            daemon
                .rules()
                .expect("rules")
                .iter()
                .any(|r| r.rule.contains("payload 0:6666"))
        }),
        "the new vector must get its own signature: {:?}",
        attacks(&daemon)
    );
    println!("second signature after {:?}", second_at.elapsed());
    assert_served_and_dropped(&lab, &daemon, second_at);
    stop(&lab, &junk);
    assert_withdrawn_and_ended(&daemon, 2);
    let view = attacks(&daemon);
    assert_eq!(view.attacks.len(), 1, "one attack, two vectors: {view:?}");
}
