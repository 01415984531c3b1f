//! The rule syntax: what parses, how it prints back, and what is refused with which error.

use super::*;

#[test]
fn rules_print_canonically_and_parse_back() {
    for (text, canonical) in [
        ("udp sport 123 drop", "udp sport 123 drop"),
        ("DROP udp  sport 123", "udp sport 123 drop"),
        (
            "from 198.18.0.0/15 to 198.19.0.0/24 proto tcp,udp dport 53,1000-1010 monitor",
            "from 198.18.0.0/15 to 198.19.0.0/24 proto tcp,udp dport 53,1000-1010 monitor",
        ),
        (
            "tcp flags syn,!ack ttl 1-16 allow",
            "tcp flags syn,!ack ttl 1-16 allow",
        ),
        (
            "icmp icmp-type 8 icmp-code 0 len 1000-65535 rate-limit 100pps",
            "icmp icmp-type 8 icmp-code 0 len 1000-65535 rate-limit 100pps",
        ),
        (
            "udp payload 0:0xDEADbeef per-source 10kpps,1mbps",
            "udp payload 0:deadbeef per-source 10000pps,1000000bps",
        ),
        (
            "udp payload 4:00ff/00ff dscp 46,8 frag none,first drop",
            "udp dscp 46,8 frag none,first payload 4:00ff/00ff drop",
        ),
        ("proto 47 drop", "proto 47 drop"),
        (
            "source UNKNOWN udp dport 7777 rate-limit 100pps",
            "udp dport 7777 source unknown rate-limit 100pps",
        ),
        ("source known allow", "source known allow"),
        (
            "from 2001:2::/48 icmpv6 icmp-type 128 drop",
            "from 2001:2::/48 icmpv6 icmp-type 128 drop",
        ),
    ] {
        let spec: RuleSpec = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(spec.to_string(), canonical, "{text}");
        assert_eq!(
            canonical.parse::<RuleSpec>().expect("canonical parses"),
            spec
        );
    }
}

/// Each invalid rule is refused with its own message, which names the field.
#[test]
fn invalid_rules_are_refused_each_with_its_own_error() {
    let cases: &[(&str, &str)] = &[
        ("", "the rule is empty"),
        ("drop", "names no field"),
        ("udp sport 123", "needs an action"),
        ("udp sport 123 drop allow", "one action"),
        ("udp sport 123 sport 53 drop", "`sport` is given twice"),
        ("udp tcp drop", "`proto` is given twice"),
        ("udp sport drop", "not a number"),
        ("udp sport", "needs a value"),
        ("udp sport 65536 drop", "65536 is over 65535"),
        ("udp sport 100-50 drop", "range 100-50 is empty"),
        ("udp sport 53,,54 drop", "empty item"),
        ("udp sport 53,53 drop", "listed twice"),
        (
            "icmp dport 80 drop",
            "`dport` needs the protocol to be tcp or udp",
        ),
        ("sport 53 drop", "the rule names no protocol"),
        (
            "udp icmp-type 8 drop",
            "`icmp-type` needs the protocol to be icmp",
        ),
        ("icmp icmp-type 256 drop", "`icmp-type`: 256 is over 255"),
        ("udp flags syn drop", "`flags` needs the protocol to be tcp"),
        ("tcp flags syn,bogus drop", "`bogus` is not a TCP flag"),
        ("tcp flags syn,!syn drop", "syn is named twice"),
        ("len 70000 drop", "`len`: 70000 is over 65535"),
        ("ttl 300 drop", "`ttl`: 300 is over 255"),
        (
            "udp source seen drop",
            "`source`: `seen` is neither `known` nor `unknown`",
        ),
        (
            "udp drop source",
            "`source` needs a value: known or unknown",
        ),
        ("ttl 20-10 drop", "`ttl`: the range 20-10 is empty"),
        ("dscp 64 drop", "`dscp`: 64 is over 63"),
        ("frag middle drop", "`middle` is not a fragment kind"),
        (
            "udp dport 53 frag later drop",
            "`frag later` has no L4 header",
        ),
        ("udp payload 2000:00 drop", "`payload`: 2000 is over 1460"),
        ("udp payload 0:abc drop", "odd number of hex digits"),
        ("udp payload 0:zz drop", "is not hex"),
        (
            "udp payload 0:00112233445566778899aabbccddeeff00 drop",
            "17 bytes, at most 16",
        ),
        (
            "udp payload 0:0011/ff drop",
            "the mask has 1 bytes and the value 2",
        ),
        ("udp payload 0:00/00 drop", "the mask is all zero"),
        (
            "udp payload 0:ff/0f drop",
            "byte 0 has bits outside its mask",
        ),
        ("udp payload 0 drop", "is not OFFSET:HEX"),
        ("payload 0:00 drop", "`payload` needs a protocol"),
        ("from 198.18.0.1/24 drop", "`from`:"),
        ("to 198.18.0.0/33 drop", "`to`:"),
        (
            "from 198.18.0.0/24 to 2001:2::/48 drop",
            "different families",
        ),
        ("from 198.18.0.0/24 icmpv6 drop", "icmpv6 is IPv6's"),
        ("from 2001:2::/48 icmp drop", "icmp is IPv4's"),
        ("proto gre drop", "`gre` is not a protocol"),
        ("proto 256 drop", "`proto`: 256 is over 255"),
        ("udp rate-limit 1000 ", "has no unit"),
        ("udp rate-limit 0pps", "zero"),
        ("udp rate-limit 10pps,20pps", "two packet rates"),
        ("udp per-source", "needs a value"),
        (
            "udp dport 53 reject",
            "`reject` is not a field or an action",
        ),
    ];
    let mut messages = std::collections::BTreeSet::new();
    for (text, expected) in cases {
        let e = text
            .parse::<RuleSpec>()
            .expect_err(&format!("`{text}` must be refused"));
        let message = e.to_string();
        assert!(
            message.contains(expected),
            "`{text}`: `{message}` does not say `{expected}`"
        );
        messages.insert(message);
    }
    assert!(cases.len() >= 30);
    assert!(
        messages.len() + 5 >= cases.len(),
        "the errors must tell the cases apart"
    );
}
