//! End-to-end tests of operating floodwall: the daemon dies (kill -9) in the middle of a
//! flood and starts again, restarts and upgrades under traffic, refuses pinned state it
//! cannot adopt, reloads its config file (and refuses a bad one), lets groups read or
//! change, and protects several interfaces.
//!
//! Root only; run with `--test-threads=1` like the other end-to-end tests. Each test builds
//! its own lab (its own bpffs for the pinned state, see `Lab::pin_root`) and removes it.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
    process::Output,
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::Duration,
};

use aya::maps::{Map, MapData, PerCpuArray};
use filter_common::{Class, Counter, MAP_LAYOUT_VERSION, Outcome, map_names};
use floodwall::{control::Response, limits::Rate};
use floodwall_tests::lab::{self, Daemon, Lab, http_tally, poll_until};

/// The packet limit; hping3 `--faster` goes far over it, also under emulation.
const PPS: &str = "500";

fn new_lab(attackers: usize) -> Lab {
    Lab::new(attackers).expect("the namespace lab must build")
}

fn start<'lab>(lab: &'lab Lab, args: &[&str]) -> Daemon<'lab> {
    lab.start_floodwall(args)
        .expect("floodwall run must start and open its control socket")
}

fn start_nginx(lab: &Lab) {
    lab.start_nginx().expect("nginx must start");
    lab.http_get(lab.client(), false)
        .expect("the client must reach nginx before any test traffic");
}

fn succeeded(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} must succeed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output, what: &str, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} must fail");
    assert!(
        stderr.contains(expected),
        "{what} must say `{expected}`, it said: {stderr}"
    );
}

fn blocked(daemon: &Daemon) -> BTreeSet<IpAddr> {
    daemon.blocked_addrs().expect("blocked list answers")
}

fn deny_entries(daemon: &Daemon) -> Vec<String> {
    match daemon.query(&["deny", "list"]).expect("deny list answers") {
        Response::ListEntries { entries, .. } => {
            entries.iter().map(|e| e.prefix.to_string()).collect()
        }
        other => panic!("deny list answered {other:?}"),
    }
}

fn pps_limit(daemon: &Daemon) -> Rate {
    daemon.limits().expect("limits show answers").limits.pps
}

/// The server interface's pinned state (`PIN_ROOT/IFACE`).
fn pins(lab: &Lab) -> PathBuf {
    lab.pin_root().join(&lab.server().iface)
}

/// Packets of `class` with `outcome`, summed over CPUs, read from the pinned counters: what
/// the program did, with or without a daemon.
fn pinned_packets(lab: &Lab, class: Class, outcome: Outcome) -> u64 {
    let path = pins(lab)
        .join(format!("maps-v{MAP_LAYOUT_VERSION}"))
        .join(map_names::COUNTERS);
    let data = MapData::from_pin(&path)
        .unwrap_or_else(|e| panic!("{} must be pinned: {e}", path.display()));
    let counters: PerCpuArray<MapData, Counter> =
        PerCpuArray::try_from(Map::PerCpuArray(data)).expect("FW_COUNTERS is a per-CPU array");
    counters
        .get(&class.counter_index(outcome), 0)
        .expect("the counter exists")
        .iter()
        .map(|c| c.packets)
        .sum()
}

/// The id of the stages array pinned for the attached program (`FW_STAGES`), and checks
/// that no start left one waiting for its attach.
fn stages_id(lab: &Lab) -> u32 {
    assert!(
        !pins(lab).join("stages-new").exists(),
        "a start that attached leaves no stages waiting"
    );
    aya::maps::MapInfo::from_pin(pins(lab).join("stages"))
        .expect("the attached program's stages are pinned")
        .id()
}

fn prog_id(lab: &Lab) -> u32 {
    lab.xdp_prog_id(lab.server(), &lab.server().iface)
        .expect("ip link show works")
        .expect("an XDP program must be attached to the server")
}

#[test]
fn kill_9_mid_flood_lets_nothing_through_and_a_new_daemon_adopts_the_state() {
    if !floodwall_tests::privileged(
        "kill_9_mid_flood_lets_nothing_through_and_a_new_daemon_adopts_the_state",
    ) {
        return;
    }
    let lab = new_lab(1);
    start_nginx(&lab);
    let args = ["--pps", PPS, "--block-for", "10m"];
    let daemon = start(&lab, &args);
    succeeded(
        &daemon.cli(&["deny", "add", "198.18.99.0/24"]).expect("cli"),
        "deny add",
    );
    let attacker = &lab.attackers()[0];
    let flood = lab
        .spawn_hping3(
            attacker,
            &["--faster", "--udp", "-p", "9"],
            400_000,
            Duration::from_mins(1),
        )
        .expect("hping3 starts");
    assert!(
        poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
            blocked(&daemon).contains(&IpAddr::V4(attacker.ipv4))
        }),
        "the UDP flood must get its source blocked"
    );
    let client = lab
        .spawn_http_client(40, Duration::from_millis(100), Duration::from_secs(90))
        .expect("client starts");

    lab.signal(daemon.proc(), libc::SIGKILL);
    lab.wait(daemon.proc(), Duration::from_secs(10))
        .expect("kill -9 ends the daemon");
    assert!(
        lab.xdp_attached(lab.server()).expect("ip link"),
        "the program must stay attached when the daemon is killed"
    );
    // Without a daemon, the flood keeps being dropped and none of it passes.
    let passed = pinned_packets(&lab, Class::Udp, Outcome::Passed);
    let dropped = pinned_packets(&lab, Class::Udp, Outcome::DroppedBlocked);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        pinned_packets(&lab, Class::Udp, Outcome::Passed),
        passed,
        "no flood packet may pass while the daemon is dead"
    );
    let dropped_dead = pinned_packets(&lab, Class::Udp, Outcome::DroppedBlocked);
    assert!(
        lab.try_wait(&flood).is_none() && dropped_dead > dropped,
        "the flood must go on during the window and be dropped ({dropped} -> {dropped_dead})"
    );

    let again = start(&lab, &args);
    let log = again.log();
    assert!(
        log.contains("took over") && log.contains("kept 1 blocked sources"),
        "the new daemon must adopt the attached program and its blocks: {log}"
    );
    assert!(
        blocked(&again).contains(&IpAddr::V4(attacker.ipv4)),
        "the block must survive the restart"
    );
    assert_eq!(deny_entries(&again), ["198.18.99.0/24"], "lists survive");
    let stats = again.stats().expect("stats");
    assert!(
        lab::packets(&stats, Outcome::DroppedBlocked) >= dropped_dead,
        "counters go on from where they were, not from zero"
    );
    lab.stop(&flood, libc::SIGTERM, Duration::from_secs(5))
        .expect("hping3 stops");
    lab.wait(&client, Duration::from_secs(90))
        .expect("the client ends");
    let tally = http_tally(&client);
    assert!(
        tally.ratio() >= 0.99,
        "the client must be served throughout: {tally:?}"
    );
    again.stop(libc::SIGTERM).expect("stops");
    again.detach().expect("detach");
}

/// Stops the watcher however the scope ends, a failed assertion included (else the
/// scope would wait for it forever).
struct Done<'a>(&'a AtomicBool);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn restarts_and_upgrades_under_traffic_lose_no_request_and_leave_no_gap() {
    if !floodwall_tests::privileged(
        "restarts_and_upgrades_under_traffic_lose_no_request_and_leave_no_gap",
    ) {
        return;
    }
    let lab = new_lab(0);
    start_nginx(&lab);
    let first = start(&lab, &["--pps", PPS]);
    let mut ids = vec![prog_id(&lab)];
    let mut stages = vec![stages_id(&lab)];
    // What builds before session 15 left: the stages pinned with the maps, shared by every
    // program since. The next start must leave the program before its own stages, and
    // remove this pin once its program is attached.
    let shared = pins(&lab)
        .join(format!("maps-v{MAP_LAYOUT_VERSION}"))
        .join(map_names::STAGES);
    MapData::from_pin(pins(&lab).join("stages"))
        .expect("the stages")
        .pin(&shared)
        .expect("pin the stages where older builds did");
    let done = AtomicBool::new(false);
    let gaps = AtomicU32::new(0);
    let samples = AtomicU32::new(0);
    std::thread::scope(|scope| {
        let _done = Done(&done);
        // Watches the interface the whole time: any sample without an XDP program is a gap.
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                match lab.xdp_prog_id(lab.server(), &lab.server().iface) {
                    Ok(Some(_)) => {}
                    _ => {
                        gaps.fetch_add(1, Ordering::Relaxed);
                    }
                }
                samples.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let client = lab
            .spawn_http_client(60, Duration::from_millis(50), Duration::from_mins(2))
            .expect("client starts");
        first.stop(libc::SIGTERM).expect("stops");
        // A restart, a crash and restart, and an upgrade that starts from fresh state: each
        // swaps a newly loaded program into the pinned link.
        for (how, extra) in [
            ("restart", None),
            ("kill -9 and restart", None),
            ("fresh start", Some("--fresh-state")),
        ] {
            let mut args = vec!["--pps", PPS];
            args.extend(extra);
            let daemon = start(&lab, &args);
            let id = prog_id(&lab);
            assert!(
                !ids.contains(&id),
                "{how}: a new program must replace the old one ({ids:?}, now {id})"
            );
            ids.push(id);
            let stages_now = stages_id(&lab);
            assert!(
                !stages.contains(&stages_now),
                "{how}: the new program pins stages of its own ({stages:?}, now {stages_now})"
            );
            stages.push(stages_now);
            assert!(!shared.exists(), "{how}: the shared stages pin is gone");
            std::thread::sleep(Duration::from_millis(500));
            if how.starts_with("kill") {
                lab.signal(daemon.proc(), libc::SIGKILL);
                lab.wait(daemon.proc(), Duration::from_secs(10))
                    .expect("killed");
            } else {
                daemon.stop(libc::SIGTERM).expect("stops");
            }
        }
        lab.wait(&client, Duration::from_mins(2))
            .expect("the client ends");
        done.store(true, Ordering::Relaxed);
        let tally = http_tally(&client);
        assert_eq!(
            tally.served, tally.attempted,
            "no request may be lost to a restart: {tally:?}"
        );
        assert!(tally.attempted >= 100, "the client ran: {tally:?}");
    });
    assert!(samples.load(Ordering::Relaxed) > 50, "the watcher ran");
    assert_eq!(
        gaps.load(Ordering::Relaxed),
        0,
        "the interface must never be without the program"
    );
    let last = lab.start_floodwall(&[]).expect("starts");
    last.stop(libc::SIGTERM).expect("stops");
    last.detach().expect("detach");
}

#[test]
fn pinned_state_of_another_layout_or_size_is_refused_unless_fresh() {
    if !floodwall_tests::privileged(
        "pinned_state_of_another_layout_or_size_is_refused_unless_fresh",
    ) {
        return;
    }
    let lab = new_lab(0);
    let daemon = start(&lab, &["--pps", PPS]);
    daemon.stop(libc::SIGTERM).expect("stops");
    let id = prog_id(&lab);
    let refused = |args: &[&str], expected: &str| {
        let proc = lab
            .spawn_floodwall(lab.run_dir(), lab.pin_root(), &lab.server().iface, args)
            .expect("spawns");
        let status = lab
            .wait(&proc, Duration::from_mins(1))
            .expect("a refused start exits");
        assert!(!status.success(), "{args:?} must be refused");
        assert!(
            proc.stderr().contains(expected),
            "{args:?} must say `{expected}`: {}",
            proc.stderr()
        );
        assert_eq!(
            prog_id(&lab),
            id,
            "a refused start leaves the attached program alone"
        );
    };
    refused(
        &["--max-sources", "4096"],
        "the pinned state has max-sources 1048576 (FW_SOURCES), this start asks for 4096",
    );
    // What an older build with another layout would have left behind.
    let current = pins(&lab).join(format!("maps-v{MAP_LAYOUT_VERSION}"));
    let older = pins(&lab).join("maps-v0");
    std::fs::rename(&current, &older).expect("rename in bpffs");
    refused(&[], "has another map layout (maps-v0)");

    let fresh = start(&lab, &["--fresh-state"]);
    assert_ne!(prog_id(&lab), id, "the fresh start replaces the program");
    assert!(current.exists() && !older.exists(), "old state removed");
    fresh.stop(libc::SIGTERM).expect("stops");
    fresh.detach().expect("detach");
    assert!(!Path::new(&pins(&lab)).exists(), "detach removes the pins");
}

#[test]
fn reload_applies_a_good_file_and_a_bad_one_changes_nothing() {
    if !floodwall_tests::privileged("reload_applies_a_good_file_and_a_bad_one_changes_nothing") {
        return;
    }
    let lab = new_lab(0);
    let file = lab.dir().join("floodwall.toml");
    let write = |text: &str| std::fs::write(&file, text).expect("write config");
    let config = |pps: &str, deny: &str, extra: &str| {
        format!(
            "[[interface]]\nname = \"{}\"\n\n[limits]\npps = \"{pps}\"\n\n[deny]\nprefixes = [\"{deny}\"]\n{extra}",
            lab.server().iface
        )
    };
    write(&config("5k", "198.18.77.0/24", ""));
    let file_arg = file.to_string_lossy().into_owned();
    let daemon = start(&lab, &["--config", &file_arg]);
    assert_eq!(pps_limit(&daemon), Rate::PerSecond(5_000));
    assert_eq!(deny_entries(&daemon), ["198.18.77.0/24"]);

    write(&config("7k", "198.18.78.0/24", ""));
    let out = succeeded(&daemon.cli(&["reload"]).expect("cli"), "reload");
    for expected in [
        "limits.pps: 5000/s -> 7000/s",
        "deny: + 198.18.78.0/24",
        "deny: - 198.18.77.0/24",
    ] {
        assert!(
            out.contains(expected),
            "reload must report `{expected}`: {out}"
        );
    }
    assert_eq!(pps_limit(&daemon), Rate::PerSecond(7_000));
    assert_eq!(deny_entries(&daemon), ["198.18.78.0/24"]);

    // A bad file, by SIGHUP: refused, logged, nothing changed, the daemon runs on.
    write(&config("9k", "198.18.79.0/24", "bogus = 1\n"));
    lab.signal(daemon.proc(), libc::SIGHUP);
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            daemon.log().contains("reload refused, nothing changed")
        }),
        "a bad file must be refused in the log: {}",
        daemon.log()
    );
    assert!(daemon.log().contains("deny.bogus"), "{}", daemon.log());
    assert!(lab.try_wait(daemon.proc()).is_none(), "the daemon runs on");
    assert_eq!(pps_limit(&daemon), Rate::PerSecond(7_000));
    assert_eq!(deny_entries(&daemon), ["198.18.78.0/24"]);
    failed(
        &daemon.cli(&["reload"]).expect("cli"),
        "reload of a bad file",
        "floodwall.toml:9:1: deny.bogus: unknown field `bogus`",
    );
    // A setting only a restart can change is refused whole, with the limit change in it.
    write(&format!(
        "{}\n[daemon]\nmax_sources = 4096\n",
        config("9k", "198.18.79.0/24", "")
    ));
    failed(
        &daemon.cli(&["reload"]).expect("cli"),
        "reload of a new table size",
        "max_sources changed",
    );
    assert_eq!(pps_limit(&daemon), Rate::PerSecond(7_000));
    assert_eq!(deny_entries(&daemon), ["198.18.78.0/24"]);
    daemon.stop(libc::SIGTERM).expect("stops");
    daemon.detach().expect("detach");
}

/// The groups of the access test, numeric: it needs no entries in /etc/group.
const ADMIN: &str = "61001";
/// See [`ADMIN`].
const READER: &str = "61002";

#[test]
fn groups_decide_who_may_read_and_who_may_change() {
    if !floodwall_tests::privileged("groups_decide_who_may_read_and_who_may_change") {
        return;
    }
    let lab = new_lab(0);
    let daemon = start(
        &lab,
        &["--pps", PPS, "--admin-group", ADMIN, "--read-group", READER],
    );
    let as_user = |group: Option<&str>, args: &[&str]| {
        let groups: Vec<u32> = group
            .map(|g| g.parse().expect("a gid"))
            .into_iter()
            .collect();
        daemon.cli_as(61000, &groups, args).expect("setpriv runs")
    };
    failed(
        &as_user(None, &["stats"]),
        "stats by a user in no group",
        "uid 61000 is in neither floodwall group",
    );
    succeeded(&as_user(Some(READER), &["stats"]), "stats by a reader");
    failed(
        &as_user(Some(READER), &["limits", "set", "--pps", "600"]),
        "limits set by a reader",
        "only root and members of group 61001 may change floodwall (you are uid 61000)",
    );
    assert_eq!(pps_limit(&daemon), Rate::PerSecond(500), "nothing changed");
    succeeded(
        &as_user(Some(ADMIN), &["limits", "set", "--pps", "600"]),
        "limits set by an admin",
    );
    assert_eq!(pps_limit(&daemon), Rate::PerSecond(600));
    daemon.stop(libc::SIGTERM).expect("stops");
    daemon.detach().expect("detach");
}

#[test]
fn one_daemon_protects_several_interfaces_with_stats_per_interface_and_in_total() {
    if !floodwall_tests::privileged(
        "one_daemon_protects_several_interfaces_with_stats_per_interface_and_in_total",
    ) {
        return;
    }
    let lab = new_lab(0);
    start_nginx(&lab);
    let server = lab.server();
    // A second interface in the server's namespace.
    for argv in [
        [
            "ip", "link", "add", "fwx0", "type", "veth", "peer", "name", "fwx1",
        ]
        .as_slice(),
        &["ip", "link", "set", "fwx0", "up"],
        &["ip", "link", "set", "fwx1", "up"],
    ] {
        let out = lab.run_in(server, argv).expect("ip runs");
        succeeded(&out, &argv.join(" "));
    }
    let daemon = start(
        &lab,
        &[
            "--iface",
            "fwx0",
            "--pps",
            PPS,
            "--metrics-addr",
            "198.18.0.1:9478",
        ],
    );
    assert!(
        lab.xdp_prog_id(server, "fwx0").expect("ip").is_some(),
        "the second interface must carry the program too"
    );
    for _ in 0..5 {
        lab.http_get(lab.client(), false).expect("served");
    }
    let out = succeeded(
        &daemon.cli(&["stats", "--json"]).expect("cli"),
        "stats of all interfaces",
    );
    let all: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let ifaces: Vec<&str> = all["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .filter_map(|v| v["iface"].as_str())
        .collect();
    assert_eq!(ifaces, ["fwlab-srv", "fwx0"], "{out}");
    let passed = |v: &serde_json::Value| {
        v["outcomes"]
            .as_array()
            .expect("outcomes")
            .iter()
            .find(|o| o["outcome"] == "passed")
            .and_then(|o| o["packets"].as_u64())
            .expect("passed packets")
    };
    let per_iface: u64 = all["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .map(passed)
        .sum();
    assert!(per_iface >= 10, "the client's packets were counted: {out}");
    assert_eq!(passed(&all["total"]), per_iface, "the total adds up");
    let out = succeeded(
        &daemon
            .cli(&["stats", "--iface", "fwx0", "--json"])
            .expect("cli"),
        "stats of one interface",
    );
    assert!(out.contains("\"iface\": \"fwx0\""), "{out}");
    let text = lab.scrape_metrics("198.18.0.1:9478");
    for iface in ["fwlab-srv", "fwx0"] {
        assert!(
            text.contains(&format!("floodwall_blocked_sources{{iface=\"{iface}\"}}")),
            "metrics must have {iface}: {text}"
        );
    }
    daemon.stop(libc::SIGTERM).expect("stops");
    for iface in ["fwlab-srv", "fwx0"] {
        succeeded(
            &daemon.cli(&["detach", "--iface", iface]).expect("cli"),
            "detach",
        );
    }
}

/// `floodwall syn-protect show --json`'s view.
fn syn_protect(daemon: &Daemon, args: &[&str]) -> floodwall::control::SynProtectView {
    let mut all = vec!["syn-protect"];
    all.extend(args);
    match daemon.query(&all).expect("syn-protect answers") {
        Response::SynProtect(view) => view,
        other => panic!("syn-protect answered {other:?}"),
    }
}

/// `floodwall syn-protect` changes the protected ports while the daemon runs, all or
/// nothing: a port to remove that is not protected, or a bad port, changes nothing and says
/// why; `off` turns it off; `auto` (the default) protects nothing until a flood. Turning it
/// on sets `tcp_syncookies=2` in the interface's namespace.
#[test]
fn syn_protect_commands_change_the_ports_all_or_nothing() {
    if !floodwall_tests::privileged("syn_protect_commands_change_the_ports_all_or_nothing") {
        return;
    }
    let lab = new_lab(0);
    let daemon = start(&lab, &[]);
    let view = syn_protect(&daemon, &["show"]);
    assert_eq!(
        (view.setting.as_str(), view.active_ports.len()),
        ("auto", 0)
    );
    assert_eq!(view.unavailable, None, "this kernel has the helpers");

    let view = syn_protect(&daemon, &["set", "80,443"]);
    assert_eq!(view.setting, "80,443");
    assert_eq!(view.active_ports, [80, 443]);
    assert_eq!(view.tcp_syncookies, Some(2));
    assert!(view.mss_v4.is_some_and(|mss| mss >= 1200), "{view:?}");

    failed(
        &daemon
            .cli(&["syn-protect", "remove", "443,22"])
            .expect("cli"),
        "removing a port that is not protected",
        "not protected: 22",
    );
    failed(
        &daemon.cli(&["syn-protect", "add", "80,0"]).expect("cli"),
        "a bad port",
        "`0` is not a TCP port",
    );
    failed(
        &daemon
            .cli(&["syn-protect", "remove", "80,443"])
            .expect("cli"),
        "removing every port",
        "no port would be left",
    );
    assert_eq!(syn_protect(&daemon, &["show"]).active_ports, [80, 443]);

    let view = syn_protect(&daemon, &["add", "8080"]);
    assert_eq!(view.active_ports, [80, 443, 8080]);
    let view = syn_protect(&daemon, &["remove", "443"]);
    assert_eq!(view.active_ports, [80, 8080]);
    let text = succeeded(
        &daemon.cli(&["syn-protect", "show"]).expect("cli"),
        "syn-protect show",
    );
    assert!(
        text.contains("syn-protect 80,8080: cookies from XDP for port(s) 80,8080"),
        "{text}"
    );
    assert_eq!(daemon.stats().expect("stats").syn.protect, "80,8080");

    let view = syn_protect(&daemon, &["off"]);
    assert_eq!((view.setting.as_str(), view.active_ports.len()), ("off", 0));
    let view = syn_protect(&daemon, &["auto"]);
    assert_eq!(
        (view.setting.as_str(), view.active_ports.len()),
        ("auto", 0)
    );
    assert!(
        daemon.log().contains("syn-protect changed on"),
        "changes are logged"
    );
}

/// `--syn-sysctls keep`: SYN protection turns on without touching `tcp_syncookies`, and the
/// daemon says what that costs.
#[test]
fn a_kept_sysctl_is_left_alone_and_its_cost_said() {
    if !floodwall_tests::privileged("a_kept_sysctl_is_left_alone_and_its_cost_said") {
        return;
    }
    let lab = new_lab(0);
    let sysctl = || {
        let out = lab
            .run_in(lab.server(), &["sysctl", "-n", "net.ipv4.tcp_syncookies"])
            .expect("read the sysctl");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let before = sysctl();
    assert_ne!(before, "2", "a new namespace starts without it");
    let daemon = start(&lab, &["--syn-protect", "80", "--syn-sysctls", "keep"]);
    assert_eq!(sysctl(), before, "kept");
    assert!(
        daemon.log().contains("kept so (--syn-sysctls keep)"),
        "the cost is said: {}",
        daemon.log()
    );
    assert_eq!(syn_protect(&daemon, &["show"]).active_ports, [80]);
}
