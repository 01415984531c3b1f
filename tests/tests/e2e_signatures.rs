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

/// The thresholds of the tests that do not measure the defaults: a baseline of 5 s and a
/// quiet time of 3 s, so that each spends less time learning and withdrawing.
const QUICK: [&str; 4] = ["--signature-min-baseline", "5s", "--signature-quiet", "3s"];

/// The user's queries at 100 a second, all answered, for 2 s more than the daemon needs
/// before anything is enforced (`min_baseline_s`): the baseline, which must then show the
/// service.
fn learn_baseline_for(lab: &Lab, daemon: &Daemon, min_baseline_s: u64) {
    let queries = (min_baseline_s + 2) * 100;
    let (before, now_pps) = std::thread::scope(|scope| {
        let user = scope.spawn(|| udp::query(lab.client(), service_addr(lab), queries, 100));
        // While the user queries (at least 7 s): the last second's rate, as the program
        // counted it (once the queries end, the last second has none).
        std::thread::sleep(Duration::from_secs(3));
        let mut now_pps = None;
        poll_until(Duration::from_secs(3), Duration::from_millis(200), || {
            now_pps = daemon.baseline().ok().and_then(|b| {
                b.services
                    .iter()
                    .find(|s| s.service == format!("udp/{PORT}"))
                    .and_then(|s| s.now_pps)
            });
            now_pps.is_some_and(|pps| (50.0..=200.0).contains(&pps))
        });
        (user.join().expect("the user's thread"), now_pps)
    });
    let before = before.expect("queries");
    assert!(before.share() >= 0.99, "before the flood: {before:?}");
    assert!(
        now_pps.is_some_and(|pps| (50.0..=200.0).contains(&pps)),
        "the user's 100 queries a second, counted in the last second: {now_pps:?}"
    );
    let baseline = daemon.baseline().expect("baseline --json");
    let service = baseline
        .services
        .iter()
        .find(|s| s.service == format!("udp/{PORT}"))
        .unwrap_or_else(|| panic!("the baseline has the service: {baseline:?}"));
    assert!(
        baseline.learned_s >= min_baseline_s && service.pps > 20.0,
        "{baseline:?}"
    );
    let text = daemon.cli_ok(&["baseline"]);
    assert!(
        text.contains(&format!("udp/{PORT}")) && text.contains("ready"),
        "{text}"
    );
}

/// [`learn_baseline_for`] the default 10 s.
fn learn_baseline(lab: &Lab, daemon: &Daemon) {
    learn_baseline_for(lab, daemon, 10);
}

/// [`learn_baseline_for`] the [`QUICK`] 5 s.
fn learn_quick_baseline(lab: &Lab, daemon: &Daemon) {
    learn_baseline_for(lab, daemon, 5);
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
    let during = udp::assert_served(lab, service_addr(lab), "with the signature");
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
    // The default thresholds but the quiet time (it only makes the end come later).
    let daemon = start(&lab, &["--signature-quiet", "3s"]);
    learn_baseline(&lab, &daemon);
    let flooded_at = Instant::now();
    let udp_before = udp_outcomes(&daemon);
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
    let udp_after = udp_outcomes(&daemon);
    let flood_s = flooded_at.elapsed().as_secs_f64();
    assert_withdrawn_and_ended(&daemon, 1);
    let attack = &attacks(&daemon).attacks[0];
    assert!(attack.sources_seen > 100, "{attack:?}");
    // The attack's peak is the program's count of the service's busiest second: at least
    // the flood's mean rate as the class counters saw it (a little under: a second's
    // reading may straddle two).
    #[expect(clippy::cast_precision_loss, reason = "rates")]
    let mean_pps = ((udp_after.0 + udp_after.1) - (udp_before.0 + udp_before.1)) as f64 / flood_s;
    println!("peak {:.0} packets/s, mean {mean_pps:.0}", attack.peak_pps);
    assert!(
        attack.peak_pps >= 0.9 * mean_pps,
        "{attack:?}, mean {mean_pps}"
    );
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
        format!(
            r#"floodwall_service_packets_per_second{{iface="{iface}",service="udp/{PORT}",rate="normal"}}"#
        ),
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
/// flood and drops nothing. The operator keeps it (`rules keep`): it outlasts the flood as
/// their own lasting rule.
#[test]
fn in_monitor_mode_a_signature_counts_and_drops_nothing() {
    if !floodwall_tests::privileged("in_monitor_mode_a_signature_counts_and_drops_nothing") {
        return;
    }
    let lab = new_lab();
    let _service = udp::Service::start(lab.server(), PORT).expect("the UDP service");
    let daemon = start(&lab, &[&QUICK[..], &["--signatures", "monitor"]].concat());
    learn_quick_baseline(&lab, &daemon);
    let (flood, mitigated_after) = flood_until_mitigated(
        &lab,
        &daemon,
        "junk-monitored",
        &format!("udp(sp=drnd(1024, 65535), dp={PORT}),\n  fill(0x66, 64)"),
    );
    std::thread::sleep(Duration::from_secs(2));
    if mitigated_after.is_none() {
        stop(&lab, &flood);
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
    // The operator keeps it: past the flood and the quiet time it stays, as theirs.
    let said = daemon.cli_ok(&["rules", "keep", &rule.id.to_string()]);
    assert!(said.contains(&format!("kept rule {}", rule.id)), "{said}");
    stop(&lab, &flood);
    std::thread::sleep(Duration::from_secs(6));
    let kept = daemon.rules().expect("rules");
    assert!(
        matches!(&kept[..], [r] if r.id == rule.id && r.origin == Origin::Cli && r.expires_in_ms.is_none()),
        "a kept signature is the operator's lasting rule: {kept:?}"
    );
    assert!(
        daemon.cli_ok(&["attacks"]).contains("kept by the operator"),
        "{:?}",
        attacks(&daemon)
    );
}

/// Attackers rotate vectors: an NTP-style reflection (UDP from port 123, 468 bytes) first,
/// then, half way, a junk flood. Each gets its own signature; the user is served 3 s after
/// each starts; the reflection's rule is withdrawn once it stops matching, the junk's once
/// the flood ends, and it was one attack with two signatures.
#[test]
fn a_flood_that_changes_shape_gets_a_second_signature() {
    /// Packets of the new vector passed (nothing else is sent to the service meanwhile):
    /// a fraction of a second of it, even under emulation.
    const NEW_VECTOR_ARRIVED: u64 = 2_000;
    if !floodwall_tests::privileged("a_flood_that_changes_shape_gets_a_second_signature") {
        return;
    }
    let lab = new_lab();
    let _service = udp::Service::start(lab.server(), PORT).expect("the UDP service");
    let daemon = start(&lab, &QUICK);
    learn_quick_baseline(&lab, &daemon);
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
    // The attackers switch: the new vector starts, and the old one stops once the new one
    // arrives (passed: the first signature does not match it), so that the service is
    // flooded throughout, as one attack. Stopping the old vector first left a gap as long
    // as trafgen takes to start: under emulation longer than the quiet time of 3 s, and
    // the first attack ended. Stopping it only once the new vector had its signature
    // starved the new one in the VM (two trafgens on one attacker: 1,300 packets a second
    // of the new vector, too few to be an attack).
    let (passed_before, _) = udp_outcomes(&daemon);
    let second_at = Instant::now();
    let junk = flood::spawn_udp_flood(
        &lab,
        "junk-after",
        &format!("udp(sp=drnd(1024, 65535), dp={PORT}),\n  fill(0x66, 64)"),
    )
    .expect("trafgen must start");
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
            udp_outcomes(&daemon).0 >= passed_before + NEW_VECTOR_ARRIVED
        }),
        "the new vector must arrive: {} packets passed since it started",
        udp_outcomes(&daemon).0 - passed_before
    );
    stop(&lab, &reflection);
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

/// The gap trafgen leaves after each packet of the flash crowd: about 5,000 packets a
/// second here, not 10,000 (each sleep runs over by the timer's slack, and each send
/// carries the receiving veth's work), some fifty times the user's 100 queries a second and
/// well over the floor of 2,000 under which no service is under attack (twentyfold the
/// baseline would be the floor itself, and might go unseen). Evenly spread, as a crowd of
/// independent users sends: at 5,000 a second in one burst each second (trafgen's
/// `--rate`), the service's socket overflowed and lost the user's queries with the crowd's.
const CROWD_GAP: Duration = Duration::from_micros(100);

/// How long the flash crowd lasts.
const CROWD_FOR: Duration = Duration::from_secs(8);

/// A flash crowd: thousands of new users, each sending a few queries a second just like the
/// user's (the same 48 bytes of `query N` and spaces), together some fifty times the
/// service's normal rate, from further away (TTL 57 where the user's is 64). The daemon sees
/// an attack, but nothing except the TTL tells the crowd from the service's normal traffic,
/// and a TTL alone is no signature: it notes a flash crowd and puts no rule in force. Rules
/// drop at most 1 % of the crowd (none, in fact), and the user is answered throughout.
#[test]
fn a_flash_crowd_gets_no_signature() {
    if !floodwall_tests::privileged("a_flash_crowd_gets_no_signature") {
        return;
    }
    let lab = new_lab();
    let _service = udp::Service::start(lab.server(), PORT).expect("the UDP service");
    let daemon = start(&lab, &QUICK);
    learn_quick_baseline(&lab, &daemon);
    let attacker = &lab.attackers()[0];
    let tx_before = flood::tx_packets(&lab, attacker).expect("the attacker's tx counter");
    let (_, dropped_before) = udp_outcomes(&daemon);
    let started = Instant::now();
    let crowd = flood::spawn_udp_flood_paced(
        &lab,
        "crowd",
        &format!(
            "udp(sp=drnd(1024, 65535), dp={PORT}),\n  {}",
            flood::udp_query_lookalike()
        ),
        CROWD_GAP,
        CROWD_FOR,
    )
    .expect("trafgen must start");
    // While the crowd comes, the user queries, and every rule of the daemon's in force is
    // caught: until a second after the crowd is gone (the detector judges once a second).
    let mut signature = None;
    let answers = std::thread::scope(|scope| {
        // As `udp::assert_served` queries; judged below, once what was seen is printed.
        let user = scope.spawn(|| udp::query(lab.client(), service_addr(&lab), 1_000, 200));
        let mut gone_at = None;
        let deadline = CROWD_FOR + Duration::from_secs(5);
        while !user.is_finished()
            || gone_at.is_none_or(|at: Instant| at.elapsed() < Duration::from_secs(1))
        {
            if signature.is_none() {
                signature = daemon
                    .rules()
                    .expect("rules")
                    .into_iter()
                    .find(|r| r.origin == Origin::Signature);
            }
            if gone_at.is_none()
                && (lab.try_wait(&crowd).is_some() || started.elapsed() >= deadline)
            {
                gone_at = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        user.join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            .expect("the user's queries")
    });
    stop(&lab, &crowd);
    let sent = flood::trafgen_sent(&crowd).unwrap_or_else(|| {
        flood::tx_packets(&lab, attacker).expect("the attacker's tx counter") - tx_before
    });
    let (_, dropped_after) = udp_outcomes(&daemon);
    let dropped = dropped_after - dropped_before;
    let view = attacks(&daemon);
    let attack = view
        .attacks
        .iter()
        .find(|a| a.service.to_string() == format!("udp/{PORT}"));
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    let rate = sent as f64 / CROWD_FOR.as_secs_f64();
    println!(
        "flash crowd: {sent} packets (about {rate:.0}/s), {dropped} dropped by rules; the \
         user: {} of {} answered, p99 {:?}",
        answers.answered, answers.sent, answers.p99
    );
    println!("attacks: {view:?}");
    assert!(
        signature.is_none(),
        "no signature may be put in force against a flash crowd: {signature:?}\n{view:?}"
    );
    assert!(
        dropped * 100 <= sent,
        "rules must drop at most 1 % of the flash crowd: {dropped} of {sent}"
    );
    assert!(
        answers.share() >= 0.99,
        "in the flash crowd, the service's user must be answered at 99 %: {answers:?}"
    );
    let Some(attack) = attack else {
        // Under emulation trafgen may send too little for an attack.
        assert!(
            floodwall_tests::in_vm() && dropped == 0,
            "the flash crowd ({sent} packets in {CROWD_FOR:?}) must be seen as an attack: \
             {view:?}"
        );
        return;
    };
    assert!(
        attack.signatures.is_empty(),
        "no signature for a flash crowd: {attack:?}"
    );
    assert!(
        attack
            .notes
            .iter()
            .any(|n| n.contains("normal traffic") && n.contains("flash crowd")),
        "the attack's notes must say it looks like a flash crowd: {attack:?}"
    );
}

/// Random payloads and lengths: no field tells the flood from the user, but the baseline
/// knows the user's address. The daemon says no field separates, and its signature spares
/// the known source and holds every other to the service's normal rate: the user is
/// answered, nearly all of the flood dropped.
#[test]
fn random_payloads_and_lengths_spare_the_known_sources() {
    if !floodwall_tests::privileged("random_payloads_and_lengths_spare_the_known_sources") {
        return;
    }
    let lab = new_lab();
    let _service = udp::Service::start(lab.server(), PORT).expect("the UDP service");
    let daemon = start(&lab, &QUICK);
    learn_quick_baseline(&lab, &daemon);
    let baseline = daemon.baseline().expect("baseline --json");
    assert!(
        baseline
            .services
            .iter()
            .any(|s| s.port == PORT && s.known_sources >= 1),
        "the baseline knows the user: {baseline:?}"
    );
    let flooded_at = Instant::now();
    let flood = spawn_random_flood(&lab);
    let mut mitigated_after = None;
    std::thread::scope(|scope| {
        let user = scope.spawn(|| udp::query(lab.client(), service_addr(&lab), 300, 100));
        if poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            !daemon.rules().expect("rules").is_empty()
        }) {
            mitigated_after = Some(flooded_at.elapsed());
        }
        let _ = user.join();
    });
    let Some(mitigated_after) = mitigated_after else {
        stop(&lab, &flood);
        assert!(
            floodwall_tests::in_vm() && udp_outcomes(&daemon).0 < 20_000,
            "a rule must be in force once the flood arrives: {:?}",
            attacks(&daemon)
        );
        return;
    };
    let rule = daemon.rules().expect("rules").remove(0);
    println!("in force {mitigated_after:?} after the flood started: {rule:?}");
    assert_eq!(rule.origin, Origin::Signature);
    assert!(
        rule.rule
            .starts_with(&format!("udp dport {PORT} source unknown rate-limit ")),
        "{rule:?}"
    );
    let from = Duration::from_secs(if floodwall_tests::in_vm() { 6 } else { 3 });
    std::thread::sleep(from.saturating_sub(flooded_at.elapsed()));
    let dropped = || {
        daemon
            .class_packets("udp", "dropped_rule_rate")
            .expect("stats")
            + daemon.class_packets("udp", "dropped_rule").expect("stats")
    };
    let (passed_from, dropped_from) = (udp_outcomes(&daemon).0, dropped());
    let during = udp::assert_served(&lab, service_addr(&lab), "sparing the known");
    let (passed, dropped) = (
        (udp_outcomes(&daemon).0 - passed_from).saturating_sub(during.sent),
        dropped() - dropped_from,
    );
    #[expect(clippy::cast_precision_loss, reason = "a ratio")]
    let share = dropped as f64 / (dropped + passed).max(1) as f64;
    println!(
        "random flood from 3 s on: {dropped} dropped, {passed} passed ({:.2} %); the user: \
         {during:?}",
        share * 100.0
    );
    assert!(share >= 0.95, "95 % of the flood must be dropped: {share}");
    let attack = &attacks(&daemon).attacks[0];
    assert!(
        attack
            .notes
            .iter()
            .any(|n| n.contains("no field separates")),
        "the attack says why: {attack:?}"
    );
    stop(&lab, &flood);
    assert_withdrawn_and_ended(&daemon, 1);
}

/// A flood at the service from 4,096 sources (198.19.0.0/20), TTL 57, random source
/// ports, and random payloads of eight lengths, from 16 to 1,400 bytes, in turn.
fn spawn_random_flood(lab: &Lab) -> Proc {
    let packets = [16, 77, 180, 333, 512, 760, 1_024, 1_400]
        .iter()
        .map(|len| {
            flood::udp_flood_config(
                lab,
                &format!("udp(sp=drnd(1024, 65535), dp={PORT}),\n  drnd({len})"),
            )
        })
        .collect::<anyhow::Result<String>>()
        .expect("the flood's configuration");
    flood::spawn_trafgen_at(
        lab,
        &lab.attackers()[0],
        "random",
        &packets,
        5_000_000,
        Duration::from_secs(40),
        floodwall_tests::in_vm().then_some(20_000),
    )
    .expect("trafgen must start")
}
