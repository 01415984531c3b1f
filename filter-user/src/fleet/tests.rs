use std::{net::IpAddr, time::Duration};

use super::*;

fn addr(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

const HOUR: Duration = Duration::from_hours(1);

#[test]
fn keys_round_trip_and_ipv6_has_no_colon() {
    for key in [
        Key::Block {
            node: "srv1".into(),
            addr: addr("198.18.0.10"),
        },
        Key::Block {
            node: "srv-2_b".into(),
            addr: addr("2001:2:0:90::10"),
        },
        Key::Signature {
            node: "srv1".into(),
            iface: "eth0".into(),
            id: 17,
        },
    ] {
        let text = key.encode();
        assert!(!text.contains(':'), "NATS keys cannot hold ':': {text}");
        assert_eq!(Key::parse(&text), Ok(key), "{text} must read back");
    }
    assert_eq!(
        Key::Block {
            node: "a".into(),
            addr: addr("2001:2::10")
        }
        .encode(),
        "a.block.v6.2001-2--10"
    );
}

#[test]
fn bad_keys_are_named() {
    for (key, why) in [
        ("srv1", "no node"),
        ("srv 1.block.v4.198.18.0.1", "only letters"),
        ("srv1.block.v4.198.18.0.300", "IPv4"),
        ("srv1.block.v6.2001:2::1", "'-'"),
        ("srv1.block.v6.zz", "IPv6"),
        ("srv1.sig.eth0.x", "rule id"),
        ("srv1.sig.eth0", "interface"),
        ("srv1.other.1", "neither"),
    ] {
        let e = Key::parse(key).expect_err(key).to_string();
        assert!(e.contains(why), "{key}: {e}");
        assert!(e.starts_with("key `"), "the key is named: {e}");
    }
}

fn block_key() -> Key {
    Key::Block {
        node: "srv1".into(),
        addr: addr("198.18.0.10"),
    }
}

#[test]
fn a_peers_block_is_capped_and_checked() {
    let value = br#"{"v":1,"addr":"198.18.0.10","until":1010000,"iface":"eth0"}"#;
    let entry = decode(&block_key(), value, 1_000_000, HOUR).expect("valid");
    assert_eq!(
        entry,
        PeerEntry::Block {
            prefix: "198.18.0.10/32".parse().expect("prefix"),
            remaining: Duration::from_secs(10)
        }
    );
    // max_block caps what the peer asks for.
    let long = br#"{"v":1,"addr":"198.18.0.10","until":99000000,"iface":"eth0"}"#;
    let PeerEntry::Block { remaining, .. } =
        decode(&block_key(), long, 1_000_000, Duration::from_secs(5)).expect("valid")
    else {
        panic!("a block")
    };
    assert_eq!(remaining, Duration::from_secs(5));
    for (value, reason) in [
        (
            &br#"{"v":1,"addr":"198.18.0.11","until":1010000,"iface":"eth0"}"#[..],
            "mismatch",
        ),
        (
            br#"{"v":2,"addr":"198.18.0.10","until":1010000,"iface":"eth0"}"#,
            "version",
        ),
        (
            br#"{"v":1,"addr":"198.18.0.10","until":999999,"iface":"eth0"}"#,
            "ended",
        ),
        (br#"{"v":1,"addr":"198.18.0.10"}"#, "bad_value"),
        (b"not json", "bad_value"),
        (
            br#"{"v":1,"addr":"198.18.0.10","until":1010000,"iface":"eth0","x":1}"#,
            "bad_value",
        ),
    ] {
        let e = decode(&block_key(), value, 1_000_000, HOUR).expect_err("refused");
        assert_eq!(e.reason(), reason, "{e}");
        assert!(e.to_string().contains("srv1.block.v4.198.18.0.10"), "{e}");
    }
    let huge = vec![b' '; MAX_VALUE_BYTES + 1];
    let e = decode(&block_key(), &huge, 0, HOUR).expect_err("too large");
    assert_eq!(e.reason(), "too_large");
}

#[test]
fn a_peers_signature_must_be_a_rule() {
    let key = Key::Signature {
        node: "srv1".into(),
        iface: "eth0".into(),
        id: 3,
    };
    let value = br#"{"v":1,"rule":"proto udp dport 53 drop","until":2000}"#;
    let PeerEntry::Signature { rule, remaining } = decode(&key, value, 1000, HOUR).expect("valid")
    else {
        panic!("a signature")
    };
    assert_eq!(rule.to_string(), "udp dport 53 drop");
    assert_eq!(remaining, Duration::from_secs(1));
    let bad = br#"{"v":1,"rule":"proto banana","until":2000}"#;
    let e = decode(&key, bad, 1000, HOUR).expect_err("not a rule");
    assert_eq!(e.reason(), "bad_rule", "{e}");
}

#[test]
fn the_allowlist_wins() {
    let allow: Vec<Prefix> = ["198.18.0.0/28", "2001:2::/48"]
        .iter()
        .map(|p| p.parse().expect("prefix"))
        .collect();
    let inside: Prefix = "198.18.0.10/32".parse().expect("prefix");
    let outside: Prefix = "198.18.0.20/32".parse().expect("prefix");
    assert_eq!(allowlisted(&inside, &allow), Some(allow[0]));
    assert_eq!(allowlisted(&outside, &allow), None);
}

#[test]
fn settings_are_checked() {
    let ok = FleetConfig {
        broker: "nats://198.18.0.253:4222".into(),
        node: "srv1".into(),
        ..FleetConfig::default()
    };
    assert_eq!(ok.check(), Ok(()));
    for (change, expected) in [
        (
            FleetConfig {
                broker: String::new(),
                ..ok.clone()
            },
            "broker is required",
        ),
        (
            FleetConfig {
                broker: "http://x:1".into(),
                ..ok.clone()
            },
            "nats://",
        ),
        (
            FleetConfig {
                broker: "nats://x".into(),
                ..ok.clone()
            },
            "port",
        ),
        (
            FleetConfig {
                node: "srv.1".into(),
                ..ok.clone()
            },
            "node `srv.1` has `.`",
        ),
        (
            FleetConfig {
                max_entries: 0,
                ..ok.clone()
            },
            "max_entries",
        ),
        (
            FleetConfig {
                max_block: Duration::ZERO,
                ..ok.clone()
            },
            "max_block",
        ),
    ] {
        let e = change.check().expect_err(expected);
        assert!(e.contains(expected), "{e}");
    }
}

#[test]
fn the_applied_file_keeps_what_is_in_force_in_its_own_boot() {
    let block = Key::Block {
        node: "web2".into(),
        addr: addr("198.18.7.7"),
    };
    let signature = Key::Signature {
        node: "web2".into(),
        iface: "eth0".into(),
        id: 3,
    };
    let applied: std::collections::BTreeMap<Key, Applied> = [
        (
            block.clone(),
            Applied::Block {
                prefix: "198.18.7.7/32".parse().expect("prefix"),
                expires_ns: 5_000,
            },
        ),
        (
            signature.clone(),
            Applied::Signature {
                spec: Box::new("udp dport 53 len 512 drop".parse().expect("rule")),
                rules: vec![("eth0".into(), 9)],
                expires_ns: 9_000,
            },
        ),
    ]
    .into_iter()
    .collect();
    let text = serde_json::to_string(&AppliedFile::of("boot-a", &applied)).expect("json");
    assert!(text.contains("udp dport 53 len 512 drop"), "{text}");
    let read = || serde_json::from_str::<AppliedFile>(&text).expect("read back");
    assert_eq!(read().in_force("boot-a", 1_000), applied);
    // Ended ones are left out; another boot's file is empty.
    assert_eq!(
        read()
            .in_force("boot-a", 6_000)
            .into_keys()
            .collect::<Vec<_>>(),
        [signature]
    );
    assert!(read().in_force("boot-b", 1_000).is_empty());
    // A rule that does not parse is an error that names it.
    let bad = text.replace("udp dport 53 len 512 drop", "udp dport 99999 drop");
    let e = serde_json::from_str::<AppliedFile>(&bad).expect_err("a bad rule");
    assert!(e.to_string().contains("udp dport 99999"), "{e}");
}
