//! The packaged systemd unit's capability set (`packaging/floodwall.service`) is exactly
//! what the daemon needs: with those capabilities and no others it protects an interface,
//! answers the CLI and, restarted, takes over its pinned program; without any one of them it
//! cannot start.
//!
//! systemd is not needed: the tests run the daemon under `setpriv` with the unit's
//! `CapabilityBoundingSet` as its bounding, inheritable and ambient sets, as root, which is
//! what systemd does for the unit (uid 0, no `User=`). The unit file is compiled into this
//! test, so the VM runs of `cargo xtask test` check it on each tested kernel too.
//!
//! The tests need root, and share kernel state (namespaces, XDP): run them with
//! `--test-threads=1`. Each builds its own lab, removed when the test ends, also when it
//! fails.

use std::time::Duration;

use filter_common::Outcome;
use floodwall_tests::lab::{Daemon, Lab, hping3_sent, packets};

/// The packaged unit, as the Debian package installs it.
const UNIT: &str = include_str!("../../packaging/floodwall.service");

/// Probe packets sent through the protected interface, far below any default limit.
const PROBES: u64 = 20;
/// Upper bound of the probe run (`timeout` stops hping3 then); it takes 0.2 s.
const PROBE_MAX_TIME: Duration = Duration::from_secs(10);

/// The capabilities of the unit's `CapabilityBoundingSet=` line, in setpriv's spelling
/// (`cap_bpf`).
fn unit_capabilities() -> Vec<String> {
    let lines: Vec<&str> = UNIT
        .lines()
        .filter_map(|l| l.trim().strip_prefix("CapabilityBoundingSet="))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "packaging/floodwall.service must have exactly one CapabilityBoundingSet= line"
    );
    let caps: Vec<String> = lines[0]
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    assert!(
        !caps.is_empty() && caps.iter().all(|c| c.starts_with("cap_")),
        "CapabilityBoundingSet= must list capabilities by name (CAP_BPF ...), got {caps:?}"
    );
    caps
}

/// `setpriv` holding exactly `caps` (as root: the bounding set is what a root process
/// keeps across exec; inheritable and ambient match the unit's `AmbientCapabilities`).
fn setpriv(caps: &[String]) -> Vec<String> {
    let set: String = std::iter::once("-all".to_owned())
        .chain(
            caps.iter()
                .map(|c| format!("+{}", c.trim_start_matches("cap_"))),
        )
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "setpriv".to_owned(),
        format!("--bounding-set={set}"),
        format!("--inh-caps={set}"),
        format!("--ambient-caps={set}"),
        "--".to_owned(),
    ]
}

fn new_lab() -> Lab {
    Lab::new(0).expect("the namespace lab must build (root, iproute2, hping3, util-linux)")
}

fn start_with<'lab>(lab: &'lab Lab, caps: &[String]) -> anyhow::Result<Daemon<'lab>> {
    let wrapper = setpriv(caps);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    lab.start_floodwall_under(&wrapper, lab.run_dir(), &[])
}

#[test]
fn the_units_capabilities_are_enough_to_protect_an_interface() {
    if !floodwall_tests::privileged("the_units_capabilities_are_enough_to_protect_an_interface") {
        return;
    }
    let caps = unit_capabilities();
    let lab = new_lab();
    let daemon = start_with(&lab, &caps).unwrap_or_else(|e| {
        panic!("floodwall run must start with only the unit's capabilities {caps:?}: {e:#}")
    });
    assert!(
        lab.xdp_attached(lab.server())
            .expect("ip link show must work"),
        "with {caps:?} the daemon must attach its XDP program to {}",
        lab.server().iface
    );

    let probe = lab
        .spawn_hping3(
            lab.client(),
            &["--icmp", "-i", "u10000"],
            PROBES,
            PROBE_MAX_TIME,
        )
        .expect("hping3 must start");
    lab.wait(&probe, PROBE_MAX_TIME + Duration::from_secs(5))
        .expect("hping3 must end within its time bound");
    let sent = hping3_sent(&probe).expect("hping3 must say how many packets it sent");
    let seen = daemon
        .stats()
        .expect("floodwall stats must answer over the control socket");
    assert!(
        packets(&seen, Outcome::Passed) >= sent,
        "the filter must see and pass the {sent} probe packets, stats say {seen:?}"
    );

    let status = daemon
        .stop(libc::SIGTERM)
        .expect("the daemon must exit after SIGTERM");
    assert!(
        status.success(),
        "with {caps:?} the daemon must exit 0 on SIGTERM, got {status}; log:\n{}",
        daemon.log()
    );
    assert!(
        lab.xdp_attached(lab.server())
            .expect("ip link show must work"),
        "the program must stay attached (pinned) when the daemon exits"
    );

    // A restart (`systemctl restart`, an upgrade) adopts the pinned maps and link.
    let again = start_with(&lab, &caps).unwrap_or_else(|e| {
        panic!("with only {caps:?} a new daemon must take over the pinned program: {e:#}")
    });
    again
        .stats()
        .expect("the daemon that took over must answer floodwall stats");
    let status = again
        .stop(libc::SIGTERM)
        .expect("the daemon must exit after SIGTERM");
    assert!(
        status.success(),
        "with {caps:?} the daemon that took over must exit 0, got {status}; log:\n{}",
        again.log()
    );
    again.detach().expect("floodwall detach must work");
    assert!(
        !lab.xdp_attached(lab.server())
            .expect("ip link show must work"),
        "floodwall detach must remove the program"
    );
}

#[test]
fn each_of_the_units_capabilities_is_needed() {
    if !floodwall_tests::privileged("each_of_the_units_capabilities_is_needed") {
        return;
    }
    let caps = unit_capabilities();
    let lab = new_lab();
    for dropped in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != dropped).cloned().collect();
        match start_with(&lab, &fewer) {
            Ok(daemon) => panic!(
                "without {dropped} (only {fewer:?}) the daemon must fail to start, but it \
                 runs; drop {dropped} from the unit. Log:\n{}",
                daemon.log()
            ),
            Err(e) => {
                let why = format!("{e:#}");
                // Its own error line, so that a setpriv that failed to run it does not pass.
                assert!(
                    why.contains("exited at start") && why.contains("ERROR"),
                    "without {dropped} the daemon must start, then refuse with an error: {why}"
                );
                let first = why
                    .lines()
                    .find(|l| l.contains("ERROR"))
                    .unwrap_or_default();
                eprintln!("without {dropped}: {first}");
            }
        }
        assert!(
            !lab.xdp_attached(lab.server())
                .expect("ip link show must work"),
            "without {dropped} nothing may stay attached"
        );
    }
}
