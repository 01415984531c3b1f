//! The file's keys reach the result, its errors name the key, the sample stays valid.

use std::path::{Path, PathBuf};

use filter_common::{DEFAULT_LIST_CAPACITY, DEFAULT_MAX_PREFIXES, DEFAULT_MAX_SOURCES};
use nix::unistd::Gid;

use super::*;
use crate::limits::{Burst, ClassName, FilterMode, Limits, Rate};

/// A directory with list files; configuration texts are parsed as if they were there.
fn corpus_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/config_corpus")
        .join(file)
}

pub(super) fn parse_ok(text: &str) -> DaemonFile {
    parse(&corpus_path("test.toml"), text)
        .unwrap_or_else(|e| panic!("expected a valid file, got: {e}\n{text}"))
}

fn parse_err(text: &str) -> String {
    match parse(&corpus_path("test.toml"), text) {
        Ok(file) => panic!("expected an error, got {file:?}\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn prefixes(list: &[&str]) -> Vec<Prefix> {
    list.iter()
        .map(|p| p.parse().expect("test prefixes are valid"))
        .collect()
}

pub(super) const MINIMAL: &str = "[[interface]]\nname = \"eth0\"\n";

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one file with every key, and one assertion per key"
)]
fn every_key_reaches_the_result() {
    let file = parse_ok(
        r#"
[daemon]
xdp_mode = "skb"
metrics_addr = "[::1]:9477"
max_sources = 4096
list_capacity = 1024
max_prefixes = 2048
admin_group = "root"
read_group = 4
run_dir = "/run/fw-test"

[[interface]]
name = "eth0"
[[interface]]
name = "veth-fw1"
xdp_mode = "driver"

[limits]
pps = "20k"
burst_packets = 40000
bps = "1G"
burst_bytes = "10M"
block_for = "90s"
mode = "monitor"
admit_after = 2
admit_rate = "unlimited"
deny_mode = "monitor"
monitor_classes = ["udp", "icmp"]
[limits.class_pps]
syn = "50"
tcp = 1000
udp = "2k"
icmp = 10
fragment = "5"
other = "unlimited"
[limits.ceiling]
syn = "20k"
tcp = "unlimited"
udp = 30000
icmp = "1k"
fragment = "2k"
other = "3k"
[limits.prefix.v4]
len = 22
pps = "30k"
bps = "100M"
class_pps = { syn = "2k" }
[limits.prefix.v6]
len = 56
pps = 40000
[limits.prefix.v6-wide]
len = 40
bps = "1G"
class_pps = { udp = "5k", other = 100 }

[allow]
prefixes = ["198.18.0.0/16"]
files = ["lists/good-allow.txt"]
[deny]
prefixes = ["2001:2::/48", "198.18.99.7"]
"#,
    );
    let gid = |n| Gid::from_raw(n);
    assert_eq!(
        file.interfaces,
        [
            InterfaceConfig {
                name: "eth0".into(),
                xdp_mode: AttachMode::Skb,
            },
            InterfaceConfig {
                name: "veth-fw1".into(),
                xdp_mode: AttachMode::Driver,
            },
        ],
        "an interface without xdp_mode takes [daemon] xdp_mode"
    );
    assert_eq!(file.metrics_addr, Some("[::1]:9477".parse().expect("addr")));
    assert_eq!(
        (file.max_sources, file.list_capacity, file.max_prefixes),
        (4096, 1024, 2048)
    );
    assert_eq!(
        file.admin_group,
        Some(GroupRef {
            name: Some("root".into()),
            gid: gid(0),
        })
    );
    assert_eq!(
        file.read_group,
        Some(GroupRef {
            name: None,
            gid: gid(4),
        })
    );
    assert_eq!(file.run_dir, Some(PathBuf::from("/run/fw-test")));
    assert_eq!(
        file.allow,
        prefixes(&["198.18.0.0/16", "198.18.7.0/24", "2001:2:0:9::/64"]),
        "inline and file entries together, sorted, each once"
    );
    assert_eq!(file.deny, prefixes(&["198.18.99.7/32", "2001:2::/48"]));

    let per_second = Rate::PerSecond;
    let l = file.limits;
    assert_eq!(l.pps, per_second(20_000));
    assert_eq!(l.burst_packets, Burst::Exactly(40_000));
    assert_eq!(l.bps, per_second(1_000_000_000));
    assert_eq!(l.burst_bytes, Burst::Exactly(10_000_000));
    assert_eq!(l.block_for_ms, 90_000);
    assert_eq!(l.mode, FilterMode::Monitor);
    assert_eq!(l.admit_packets, 2);
    assert_eq!(l.admit_rate, Rate::Unlimited);
    assert_eq!(l.deny_mode, FilterMode::Monitor);
    assert_eq!(
        l.monitor_classes,
        [false, false, true, true, false, false],
        "udp and icmp, in class index order"
    );
    assert_eq!(
        l.class_pps,
        [
            per_second(50),
            per_second(1_000),
            per_second(2_000),
            per_second(10),
            per_second(5),
            Rate::Unlimited
        ]
    );
    assert_eq!(
        l.ceiling_pps,
        [
            per_second(20_000),
            Rate::Unlimited,
            per_second(30_000),
            per_second(1_000),
            per_second(2_000),
            per_second(3_000)
        ]
    );
    assert_eq!(l.prefix_len, [22, 56, 40]);
    assert_eq!(
        l.prefix_pps,
        [per_second(30_000), per_second(40_000), Rate::Unlimited]
    );
    assert_eq!(
        l.prefix_bps,
        [
            per_second(100_000_000),
            Rate::Unlimited,
            per_second(1_000_000_000)
        ]
    );
    let unlimited = [Rate::Unlimited; filter_common::CLASSES];
    let mut v4_classes = unlimited;
    v4_classes[ClassName::Syn.index()] = per_second(2_000);
    let mut wide_classes = unlimited;
    wide_classes[ClassName::Udp.index()] = per_second(5_000);
    wide_classes[ClassName::Other.index()] = per_second(100);
    assert_eq!(l.prefix_class_pps, [v4_classes, unlimited, wide_classes]);
}

#[test]
fn a_minimal_file_gives_the_defaults() {
    let file = parse_ok(MINIMAL);
    assert_eq!(file.limits, Limits::default());
    assert_eq!(
        (file.max_sources, file.list_capacity, file.max_prefixes),
        (
            DEFAULT_MAX_SOURCES,
            DEFAULT_LIST_CAPACITY,
            DEFAULT_MAX_PREFIXES
        )
    );
    assert_eq!(file.interfaces[0].xdp_mode, AttachMode::Auto);
    assert_eq!(
        (file.metrics_addr, &file.admin_group, &file.run_dir),
        (None, &None, &None)
    );
    assert!(file.allow.is_empty() && file.deny.is_empty());
}

#[test]
fn rates_and_bursts_may_be_integers_or_strings() {
    let as_integers = parse_ok(&format!(
        "{MINIMAL}[limits]\npps = 20000\nburst_packets = 30000\nbps = 100000000\n\
         admit_rate = 7000\n[limits.ceiling]\nsyn = 1500\n"
    ));
    let as_strings = parse_ok(&format!(
        "{MINIMAL}[limits]\npps = \"20k\"\nburst_packets = \"30k\"\nbps = \"100M\"\n\
         admit_rate = \"7k\"\n[limits.ceiling]\nsyn = \"1.5k\"\n"
    ));
    assert_eq!(as_integers.limits, as_strings.limits);
    assert_eq!(as_integers.limits.pps, Rate::PerSecond(20_000));
    assert_eq!(
        as_integers.limits.ceiling_pps[ClassName::Syn.index()],
        Rate::PerSecond(1_500)
    );
    let err = parse_err(&format!("{MINIMAL}[limits]\npps = 0\n"));
    assert!(
        err.contains("test.toml:4:7: limits.pps: must be at least 1 (use `unlimited`"),
        "an integer zero is refused like \"0\": {err}"
    );
    let err = parse_err(&format!("{MINIMAL}[limits]\npps = 1.5\n"));
    assert!(
        err.contains(
            "limits.pps: invalid type: floating point `1.5`, expected an integer or a string"
        ),
        "{err}"
    );
}

#[test]
fn list_files_are_relative_to_the_config_file() {
    let text = "[[interface]]\nname = \"eth0\"\n[allow]\nfiles = [\"lists/good-allow.txt\"]\n";
    let file = parse(&corpus_path("elsewhere.toml"), text).expect("relative to the corpus");
    assert_eq!(file.allow, prefixes(&["198.18.7.0/24", "2001:2:0:9::/64"]));
    let err = parse(Path::new("/nonexistent-dir/floodwall.toml"), text)
        .expect_err("no list file there")
        .to_string();
    assert!(
        err.contains("/nonexistent-dir/lists/good-allow.txt"),
        "the list file is looked up next to the config file: {err}"
    );
    let absolute = corpus_path("lists/good-allow.txt");
    let text = format!("{MINIMAL}[deny]\nfiles = [\"{}\"]\n", absolute.display());
    let file = parse(Path::new("/nonexistent-dir/floodwall.toml"), &text)
        .expect("absolute paths are taken as they are");
    assert_eq!(file.deny.len(), 2);
}

#[test]
fn list_entries_are_kept_once_and_sorted_and_overlaps_are_reported() {
    let file = parse_ok(&format!(
        "{MINIMAL}[allow]\nprefixes = [\"2001:2:0:9::/64\", \"198.18.7.0/24\", \"198.18.7.0/24\"]\n\
         files = [\"lists/good-allow.txt\", \"lists/good-allow.txt\"]\n\
         [deny]\nprefixes = [\"198.18.7.0/24\", \"198.18.7.128/25\", \"198.18.8.0/24\", \"2001:2::/48\"]\n"
    ));
    assert_eq!(file.allow, prefixes(&["198.18.7.0/24", "2001:2:0:9::/64"]));
    assert_eq!(
        file.shadowed_deny_entries(),
        prefixes(&["198.18.7.0/24", "198.18.7.128/25"]),
        "the same prefix and one inside an allowed one are shadowed; a wider one is not"
    );
}

#[test]
fn lists_beyond_their_capacity_are_refused() {
    let err = parse_err(&format!(
        "[daemon]\nlist_capacity = 1\n{MINIMAL}[deny]\nprefixes = [\"198.18.1.0/24\", \"198.18.2.0/24\", \"2001:2::/48\"]\n"
    ));
    assert!(
        err.contains("test.toml:5:1: deny: 2 IPv4 prefixes do not fit daemon.list_capacity 1"),
        "{err}"
    );
}

#[test]
fn cross_field_limit_errors_point_at_the_key_that_causes_them() {
    let err = parse_err(&format!(
        "{MINIMAL}[limits]\npps = 1000\nburst_packets = 10\n"
    ));
    assert!(
        err.contains(
            "test.toml:5:17: limits.burst_packets: 10 lasts less than 30 ms at the rate of 1000"
        ),
        "neither alone is wrong; the burst is named: {err}"
    );
    let err = parse_err(&format!(
        "{MINIMAL}[limits]\nburst_packets = 20000\npps = 1000\n[limits.prefix.v6]\nlen = 129\n"
    ));
    assert!(
        err.contains(
            "test.toml:7:7: limits.prefix.v6.len: 129 is out of range: it must be between 1 and 128"
        ),
        "{err}"
    );
}

#[test]
fn positions_count_characters_and_errors_never_panic() {
    let err = parse_err("# é€\n[[interface]]\nname = \"eth0\"\n[limits]\nmode = \"düster\"\n");
    assert!(
        err.contains("test.toml:5:8: limits.mode: `düster` is not a mode (enforce, monitor)"),
        "{err}"
    );
    // Every prefix of a valid file is valid or an error, never a panic.
    let sample = include_str!("../../../packaging/floodwall.toml");
    for (end, _) in sample.char_indices() {
        let _ = parse(&corpus_path("cut.toml"), &sample[..end]);
    }
}

#[test]
fn limits_take_exactly_the_settings_keys() {
    let err = parse_err(&format!("{MINIMAL}[limits]\nburst = 5\n"));
    assert!(
        err.contains(
            "test.toml:4:1: limits.burst: unknown field `burst`, expected one of `pps`, \
             `burst_packets`, `bps`"
        ),
        "{err}"
    );
    let err = parse_err(&format!("{MINIMAL}[limits.prefix.v4]\nlength = 22\n"));
    assert!(
        err.contains(
            "limits.prefix.v4.length: unknown field `length`, expected one of `len`, `pps`, \
             `bps`, `class_pps`"
        ),
        "{err}"
    );
    let err = parse_err(&format!("{MINIMAL}[limits]\nclass_pps = 5\n"));
    assert!(
        err.contains("test.toml:4:13: limits.class_pps: invalid type: integer, expected a table"),
        "{err}"
    );
    let err = parse_err(&format!("limits = \"fast\"\n{MINIMAL}"));
    assert!(
        err.contains("limits: invalid type: string, expected a table"),
        "{err}"
    );
    let err = parse_err(&format!("{MINIMAL}[limits]\nadmit_after = \"4\"\n"));
    assert!(
        err.contains("limits.admit_after: invalid type: string \"4\", expected u32"),
        "{err}"
    );
    let file = parse_ok(&format!(
        "{MINIMAL}[limits.class_pps]\n[limits.prefix.v4]\nclass_pps = {{}}\n"
    ));
    assert_eq!(file.limits, Limits::default(), "empty tables set nothing");
}

#[test]
fn the_sample_shows_every_setting_of_limits() {
    let sample = include_str!("../../../packaging/floodwall.toml");
    let limits = &sample[sample.find("\n[limits]\n").expect("a [limits] table")..];
    for setting in crate::limits::Setting::SCALARS {
        let key = setting.key();
        assert!(
            limits.contains(&format!("\n{key} = ")) || limits.contains(&format!("\n#{key} = ")),
            "packaging/floodwall.toml must show limits.{key} with its default"
        );
    }
}

#[test]
fn the_sample_parses_and_holds_the_defaults() {
    let sample = include_str!("../../../packaging/floodwall.toml");
    let path = Path::new("/etc/floodwall/floodwall.toml");
    let shipped = parse(path, sample).unwrap_or_else(|e| panic!("the sample must parse: {e}"));
    let defaults = DaemonFile {
        path: path.to_owned(),
        interfaces: vec![InterfaceConfig {
            name: "eth0".into(),
            xdp_mode: AttachMode::Auto,
        }],
        limits: Limits::default(),
        max_sources: DEFAULT_MAX_SOURCES,
        list_capacity: DEFAULT_LIST_CAPACITY,
        max_prefixes: DEFAULT_MAX_PREFIXES,
        metrics_addr: None,
        admin_group: None,
        read_group: None,
        run_dir: None,
        syn_protect: None,
        syn_sysctls: None,
        signatures: None,
        signature_forbid: None,
        signature_monitor: None,
        signature_thresholds: crate::traffic::detect::Thresholds::default(),
        allow: Vec::new(),
        deny: Vec::new(),
        rules: Vec::new(),
        upstream: None,
        fleet: None,
    };
    assert_eq!(
        shipped, defaults,
        "the sample's active values are the defaults"
    );

    // Each `#key = value` line shows the key's default: uncommented, they change nothing
    // (run_dir then names the default directory instead of leaving it unset).
    let uncommented: String = sample
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    assert!(
        uncommented.len() < sample.len(),
        "some lines were uncommented"
    );
    let all_keys = parse(path, &uncommented)
        .unwrap_or_else(|e| panic!("the sample with every default uncommented must parse: {e}"));
    assert_eq!(
        all_keys,
        DaemonFile {
            run_dir: Some(PathBuf::from(crate::control::DEFAULT_RUN_DIR)),
            syn_protect: Some(crate::syn::SynProtect::Auto),
            syn_sysctls: Some(crate::syn::SysctlPolicy::Set),
            signatures: Some(crate::traffic::detect::SignatureMode::Enforce),
            signature_forbid: Some(Vec::new()),
            signature_monitor: Some(Vec::new()),
            signature_thresholds: crate::traffic::detect::Thresholds {
                signature_factor: Some(4.0),
                signature_floor: Some(2000.0),
                signature_min_baseline: Some(10.0),
                signature_quiet: Some(10.0),
                signature_max_rules: Some(8.0),
            },
            ..defaults
        }
    );
    let detect = crate::traffic::detect::DetectConfig::default();
    assert_eq!(
        all_keys.signature_thresholds.apply(detect.clone()),
        detect,
        "the sample's thresholds are the defaults"
    );
}

#[test]
fn thresholds_are_read_as_their_flags_are_and_refused_naming_the_key() {
    let file = parse_ok(&format!(
        "[daemon]\nsignature_factor = 2.5\nsignature_quiet = \"3s\"\nsignature_max_rules = 16\n{MINIMAL}"
    ));
    let t = file.signature_thresholds;
    assert_eq!(
        (
            t.signature_factor,
            t.signature_quiet,
            t.signature_max_rules,
            t.signature_floor
        ),
        (Some(2.5), Some(3.0), Some(16.0), None)
    );
    for (line, says) in [
        ("signature_factor = 1", "daemon.signature_factor"),
        ("signature_quiet = \"forever\"", "is not a duration"),
        ("signature_max_rules = 100", "1 to 64"),
    ] {
        let err = parse(
            Path::new("/etc/floodwall/floodwall.toml"),
            &format!("[daemon]\n{line}\n{MINIMAL}"),
        )
        .expect_err(line)
        .to_string();
        assert!(err.contains(says), "{line}: {err}");
    }
}

#[test]
fn signatures_take_a_mode_and_forbidden_fields() {
    let file = parse_ok(&format!(
        "[daemon]\nsignatures = \"monitor\"\nsignature_forbid = [\"payload\", \"ttl\"]\n\
         signature_monitor = [\"udp/53\", \"ICMP\"]\n{MINIMAL}"
    ));
    assert_eq!(
        file.signature_monitor,
        Some(vec![
            crate::traffic::baseline::Service {
                proto: 17,
                port: 53
            },
            crate::traffic::baseline::Service { proto: 1, port: 0 },
        ])
    );
    assert_eq!(
        file.signatures,
        Some(crate::traffic::detect::SignatureMode::Monitor)
    );
    assert_eq!(
        file.signature_forbid,
        Some(vec![
            crate::traffic::baseline::Field::Payload,
            crate::traffic::baseline::Field::Ttl
        ])
    );
}

#[test]
fn upstream_keys_reach_the_result_and_bad_values_are_named() {
    let file = parse_ok(&format!(
        "{MINIMAL}[upstream]\ngobgp_api = \"unix:///run/gobgpd.sock\"\ndry_run = false\n\
         protected = [\"198.18.0.0/24\", \"2001:2::/48\"]\nprefix_len_v4 = [28, 32]\n\
         max_routes = 3\nmax_new_per_minute = 5\nmin_hold = \"5s\"\nexpiry = \"2m\"\n\
         max_expiry = \"1h\"\non_stop = \"keep\"\nblackhole_community = \"65000:666\"\n\
         reconcile_every = \"1s\"\nauto_above = \"80%\"\n"
    ));
    let u = file.upstream.expect("an [upstream]");
    assert_eq!(u.gobgp_api, "unix:///run/gobgpd.sock");
    assert!(!u.dry_run);
    assert_eq!(u.protected, prefixes(&["198.18.0.0/24", "2001:2::/48"]));
    assert_eq!((u.prefix_len_v4, u.prefix_len_v6), ((28, 32), (48, 128)));
    assert_eq!((u.max_routes, u.max_new_per_minute), (3, 5));
    assert_eq!(u.min_hold, std::time::Duration::from_secs(5));
    assert_eq!(u.on_stop, crate::upstream::OnStop::Keep);
    assert_eq!(u.blackhole_community, (65000, 666));
    assert_eq!(
        u.auto_above,
        Some(crate::upstream::AutoAbove::LineRate(0.8))
    );
    // Dry run unless turned off.
    let quiet = parse_ok(&format!(
        "{MINIMAL}[upstream]\ngobgp_api = \"unix:///x\"\nprotected = [\"198.18.0.0/24\"]\n"
    ));
    assert!(quiet.upstream.expect("an [upstream]").dry_run);
    let base = "[upstream]\ngobgp_api = \"unix:///x\"\nprotected = [\"198.18.0.0/24\"]\n";
    for (extra, expected) in [
        ("max_routes = 0\n", "upstream.max_routes"),
        ("on_stop = \"linger\"\n", "upstream.on_stop"),
        (
            "blackhole_community = \"666\"\n",
            "upstream.blackhole_community",
        ),
        ("min_hold = \"soon\"\n", "upstream.min_hold"),
        ("prefix_len_v4 = [33, 8]\n", "prefix_len_v4"),
        ("expiry = \"1s\"\n", "min_hold"),
        ("auto_above = \"fast\"\n", "upstream.auto_above"),
        ("speed = 3\n", "speed"),
    ] {
        let e = parse_err(&format!("{MINIMAL}{base}{extra}"));
        assert!(e.contains(expected), "{extra}: {e}");
    }
    let e = parse_err(&format!(
        "{MINIMAL}[upstream]\nprotected = [\"198.18.0.0/24\"]\n"
    ));
    assert!(e.contains("gobgp_api"), "{e}");
    let e = parse_err(&format!(
        "{MINIMAL}[upstream]\ngobgp_api = \"unix:///x\"\nprotected = [\"198.18.0.0/33\"]\n"
    ));
    assert!(e.contains("upstream.protected"), "{e}");
}

#[test]
fn fleet_keys_reach_the_result_and_bad_values_are_named() {
    let file = parse_ok(&format!(
        "{MINIMAL}[fleet]\nbroker = \"nats://198.18.0.253:4222\"\nnode = \"srv1\"\n\
         share_signatures = false\nmax_entries = 50\nmax_block = \"10m\"\n"
    ));
    let f = file.fleet.expect("a [fleet]");
    assert_eq!(
        (f.broker.as_str(), f.node.as_str(), f.bucket.as_str()),
        ("nats://198.18.0.253:4222", "srv1", "floodwall")
    );
    assert!(f.share_blocks && !f.share_signatures);
    assert_eq!(f.max_entries, 50);
    assert_eq!(f.max_block, std::time::Duration::from_mins(10));
    assert!(parse_ok(MINIMAL).fleet.is_none(), "no [fleet]: no fleet");
    let base = "[fleet]\nbroker = \"nats://198.18.0.253:4222\"\n";
    for (extra, expected) in [
        ("node = \"srv.1\"\n", "fleet.node"),
        ("node = \"a\"\nbucket = \"a b\"\n", "fleet.bucket"),
        ("node = \"a\"\nmax_entries = 0\n", "fleet.max_entries"),
        ("node = \"a\"\nmax_block = \"later\"\n", "fleet.max_block"),
        ("node = \"a\"\nmax_block = \"0s\"\n", "max_block"),
        ("node = \"a\"\nspeed = 3\n", "speed"),
        ("", "node is required"),
    ] {
        let e = parse_err(&format!("{MINIMAL}{base}{extra}"));
        assert!(e.contains(expected), "{extra}: {e}");
    }
    let e = parse_err(&format!(
        "{MINIMAL}[fleet]\nbroker = \"http://x:1\"\nnode = \"a\"\n"
    ));
    assert!(e.contains("fleet.broker"), "{e}");
}

#[test]
fn fleet_sign_in_reads_its_secret_from_a_file_and_takes_one_way() {
    let dir = std::env::temp_dir().join(format!("floodwall-fleet-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let (pass, token, empty) = (
        file("pass", "hunter2\nignored\n"),
        file("token", " t0ken \n"),
        file("empty", "\n"),
    );
    let base = "[fleet]\nbroker = \"nats://198.18.0.253:4222\"\nnode = \"a\"\n";
    let sign_in = |extra: &str| {
        parse_ok(&format!("{MINIMAL}{base}{extra}"))
            .fleet
            .expect("a [fleet]")
            .sign_in
    };
    assert_eq!(sign_in(""), crate::fleet::SignIn::Anonymous);
    let crate::fleet::SignIn::Password { user, password } =
        sign_in(&format!("user = \"fw\"\npassword_file = \"{pass}\"\n"))
    else {
        panic!("a user and a password");
    };
    assert_eq!((user.as_str(), password.expose()), ("fw", "hunter2"));
    assert!(
        !format!("{password:?}").contains("hunter2"),
        "a secret stays out of Debug"
    );
    let crate::fleet::SignIn::Token(t) = sign_in(&format!("token_file = \"{token}\"\n")) else {
        panic!("a token");
    };
    assert_eq!(t.expose(), "t0ken");
    let missing = dir.join("missing").display().to_string();
    for (extra, expected) in [
        ("user = \"fw\"\n".to_owned(), "needs fleet.password_file"),
        (format!("password_file = \"{pass}\"\n"), "needs fleet.user"),
        (
            format!("user = \"fw\"\npassword_file = \"{pass}\"\ntoken_file = \"{token}\"\n"),
            "one way to sign in",
        ),
        (format!("token_file = \"{empty}\"\n"), "is empty"),
        (
            format!("user = \"fw\"\npassword_file = \"{missing}\"\n"),
            "fleet.password_file",
        ),
        (
            format!("user = \"\"\npassword_file = \"{pass}\"\n"),
            "fleet.user",
        ),
    ] {
        let e = parse_err(&format!("{MINIMAL}{base}{extra}"));
        assert!(e.contains(expected), "{extra}: {e}");
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}
