//! End-to-end tests of the allowlist, the denylist and the event journal: the real
//! `floodwall` daemon and CLI in a namespace lab, real floods from hping3, a real client.
//! Run with `--test-threads=1` (shared kernel state); each test removes its lab.

use std::{io::Write as _, time::Duration};

use filter_common::Outcome;
use floodwall::control::Response;
use floodwall_tests::lab::{Daemon, Lab, Proc, hping3_sent, http_tally, packets};

const FLOOD_MAX_TIME: Duration = Duration::from_secs(20);

fn lab_with_server(attackers: usize) -> Lab {
    let lab = Lab::new(attackers).expect("the namespace lab must build");
    lab.start_nginx().expect("nginx must start");
    lab
}

fn sent(lab: &Lab, proc: &Proc) -> u64 {
    lab.wait(proc, FLOOD_MAX_TIME + Duration::from_secs(5))
        .expect("hping3 must end within its time bound");
    hping3_sent(proc).expect("hping3 must say how many packets it sent")
}

fn ok(daemon: &Daemon, args: &[&str]) -> String {
    let out = daemon.cli(args).expect("the CLI must run");
    assert!(
        out.status.success(),
        "floodwall {args:?} must succeed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(daemon: &Daemon, args: &[&str], expected: &str) {
    let out = daemon.cli(args).expect("the CLI must run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "floodwall {args:?} must fail");
    assert!(
        stderr.contains(expected),
        "floodwall {args:?} must say `{expected}`, said: {stderr}"
    );
}

fn list_entries(daemon: &Daemon, list: &str) -> Vec<floodwall::lists::ListEntryView> {
    match daemon
        .query(&[list, "list"])
        .expect("list --json must answer")
    {
        Response::ListEntries { entries, .. } => entries,
        other => panic!("{list} list answered {other:?}"),
    }
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one operator session, read top to bottom"
)]
fn a_denylisted_network_is_dropped_and_an_allowlisted_partner_passes_every_limit() {
    if !floodwall_tests::privileged(
        "a_denylisted_network_is_dropped_and_an_allowlisted_partner_passes_every_limit",
    ) {
        return;
    }
    let lab = lab_with_server(2);
    let daemon = lab
        .start_floodwall(&[
            "--xdp-mode",
            "driver",
            "--pps",
            "500",
            "--metrics-addr",
            "198.18.0.1:9477",
        ])
        .expect("floodwall must start");
    let [denied, partner] = [&lab.attackers()[0], &lab.attackers()[1]];

    // A bulk load with one bad line changes nothing and names file and line.
    let dir = lab.dir().join("lists");
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("bad.txt");
    let mut f = std::fs::File::create(&bad).expect("file");
    writeln!(f, "# known bad networks\n198.18.0.0/28\n198.19.0.1/24").expect("write");
    let bad_path = bad.to_string_lossy().into_owned();
    fails(
        &daemon,
        &["deny", "load", &bad_path],
        "bad.txt:3: 198.19.0.1/24 has host bits set",
    );
    assert!(
        list_entries(&daemon, "deny").is_empty(),
        "a refused load adds nothing"
    );

    // The denylisted /31 holds both attackers (198.18.0.10 and .11); the partner (.11) is
    // also allowlisted, which wins, and floods far above the 500 packets/s limit.
    let good = dir.join("good.txt");
    std::fs::write(&good, "198.18.0.10/31  # attacker network\n").expect("write");
    ok(
        &daemon,
        &["deny", "load", &good.to_string_lossy(), "--for", "10m"],
    );
    ok(&daemon, &["allow", "add", &partner.ipv4.to_string()]);
    fails(
        &daemon,
        &["allow", "add", "198.18.0.0/24", "--for", "1m"],
        "allowlist entries do not expire",
    );

    let client = lab
        .spawn_http_client(100, Duration::from_millis(20), Duration::from_secs(40))
        .expect("curl loop");
    let floods = [
        lab.spawn_hping3(
            denied,
            &["--faster", "--udp", "-p", "53"],
            20_000,
            FLOOD_MAX_TIME,
        )
        .expect("hping3"),
        lab.spawn_hping3(
            partner,
            &["--faster", "--udp", "-p", "53"],
            20_000,
            FLOOD_MAX_TIME,
        )
        .expect("hping3"),
    ];
    let sent_denied = sent(&lab, &floods[0]);
    let sent_partner = sent(&lab, &floods[1]);
    lab.wait(&client, Duration::from_secs(45))
        .expect("client ends");

    let tally = http_tally(&client);
    assert!(
        tally.ratio() >= 0.99,
        "the client must be served: {}/{}",
        tally.served,
        tally.attempted
    );
    let stats = daemon.stats().expect("stats");
    let denied_drops = packets(&stats, Outcome::DroppedDenied);
    let allowed = packets(&stats, Outcome::Allowed);
    assert!(
        denied_drops >= sent_denied,
        "every packet of the denylisted attacker must be dropped: {denied_drops} of {sent_denied}"
    );
    assert!(
        allowed >= sent_partner,
        "every packet of the allowlisted partner must pass: {allowed} of {sent_partner}"
    );
    assert!(
        daemon.blocked().expect("blocked").is_empty(),
        "nobody is blocked: lists decided"
    );
    let entries = list_entries(&daemon, "deny");
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0].hit_packets >= sent_denied,
        "the entry counts its hits: {:?}",
        entries[0]
    );
    assert!(
        entries[0].expires_in_ms.is_some_and(|ms| ms > 500_000),
        "it expires in ~10 min"
    );

    // A Prometheus scrape shows the same, by class and outcome.
    let text = lab.scrape_metrics("198.18.0.1:9477");
    let iface = &lab.server().iface;
    for expected in [
        format!(
            r#"floodwall_packets_total{{iface="{iface}",class="udp",outcome="dropped_denied"}}"#
        ),
        format!(r#"floodwall_packets_total{{iface="{iface}",class="udp",outcome="allowed"}}"#),
        format!(r#"floodwall_list_entries{{iface="{iface}",list="deny",family="ipv4"}} 1"#),
    ] {
        assert!(
            text.contains(&expected),
            "metrics must contain `{expected}`:\n{text}"
        );
    }

    // The journal has the list changes and hit summaries.
    let out = ok(&daemon, &["events", "--json"]);
    assert!(
        out.contains("\"kind\":\"list_change\""),
        "events must show the list changes: {out}"
    );
    assert!(
        out.contains("\"kind\":\"list_hits\""),
        "events must show list hits: {out}"
    );

    // Removing the deny entry lets the attacker's traffic through again.
    fails(
        &daemon,
        &["deny", "remove", "198.18.0.10/32"],
        "198.18.0.10/32",
    );
    ok(&daemon, &["deny", "remove", "198.18.0.10/31"]);
    assert!(list_entries(&daemon, "deny").is_empty());
}
