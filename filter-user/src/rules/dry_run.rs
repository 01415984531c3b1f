//! `floodwall rules test`: which rule a packet would meet, decided in userspace by the
//! rules' semantics (the same the XDP program's `rules.rs` applies), so that an operator can
//! check a rule before a flood does.
//!
//! A packet is described in the rules' own words, with one value a field:
//! `udp from 198.19.3.4 to 198.18.0.1 sport 123 dport 7777 len 468 ttl 57`.

use std::{fmt, net::IpAddr, str::FromStr};

use filter_common::{RULE_PAYLOAD_BYTES, fragment};

use super::{
    Action, PayloadMatch, Rule, RuleSet, RuleSpec, RuleSyntaxError, TcpFlags, ValueRange, syntax,
};
use crate::lists::Prefix;

/// A packet as `rules test` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestPacket {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol.
    pub proto: u8,
    /// Ports (TCP, UDP).
    pub ports: Option<(u16, u16)>,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// TCP flags.
    pub tcp_flags: u8,
    /// IP length.
    pub len: u16,
    /// DSCP.
    pub dscp: u8,
    /// A `filter_common::fragment` bit.
    pub fragment: u8,
    /// TTL or hop limit.
    pub ttl: u8,
    /// The first bytes of the L4 payload, at an offset (the rest zero).
    pub payload: Option<PayloadMatch>,
    /// Whether the service's baseline saw its source before (`source known` in a
    /// description; for a frame, what the daemon's baseline says: `rules test --frame`
    /// asks it, a frame read on its own is unknown).
    pub known_source: bool,
}

fn single<T: Copy + PartialEq + std::fmt::Display>(
    field: &str,
    range: Option<ValueRange<T>>,
    default: T,
) -> Result<T, RuleSyntaxError> {
    match range {
        None => Ok(default),
        Some(r) if r.low == r.high => Ok(r.low),
        Some(r) => Err(RuleSyntaxError(format!(
            "`{field}`: a packet has one value, not the range {}-{}",
            r.low, r.high
        ))),
    }
}

impl FromStr for TestPacket {
    type Err = RuleSyntaxError;

    /// The rule syntax without an action, one value a field; `from` and `to` are addresses.
    fn from_str(text: &str) -> Result<Self, RuleSyntaxError> {
        let spec: RuleSpec = format!("{text} monitor").parse()?;
        let (Some(src), Some(dst)) = (spec.src, spec.dst) else {
            return Err(RuleSyntaxError(
                "a packet needs `from ADDRESS` and `to ADDRESS`".to_owned(),
            ));
        };
        for (field, prefix) in [("from", src), ("to", dst)] {
            if prefix.prefix_len() != prefix.family().bits() {
                return Err(RuleSyntaxError(format!(
                    "`{field}`: a packet has an address, not the prefix {prefix}"
                )));
            }
        }
        let proto = match spec.protos.as_slice() {
            [p] => *p,
            _ => {
                return Err(RuleSyntaxError(
                    "a packet has one protocol: tcp, udp, icmp, icmpv6 or proto N".to_owned(),
                ));
            }
        };
        let port = |field: &str, list: &[super::PortRange]| match list {
            [] => Ok(0),
            [r] => single(field, Some(*r), 0),
            _ => Err(RuleSyntaxError(format!("`{field}`: a packet has one port"))),
        };
        let ports = matches!(proto, syntax::TCP | syntax::UDP)
            .then(|| {
                Ok::<_, RuleSyntaxError>((
                    port("sport", &spec.sports)?,
                    port("dport", &spec.dports)?,
                ))
            })
            .transpose()?;
        let icmp = matches!(proto, syntax::ICMP | syntax::ICMPV6)
            .then(|| (spec.icmp_type.unwrap_or(0), spec.icmp_code.unwrap_or(0)));
        let dscp = match spec.dscp.as_slice() {
            [] => 0,
            [d] => *d,
            _ => return Err(RuleSyntaxError("`dscp`: a packet has one".to_owned())),
        };
        let frag = spec.fragment.unwrap_or(fragment::NONE);
        if frag.count_ones() != 1 {
            return Err(RuleSyntaxError("`frag`: a packet is one kind".to_owned()));
        }
        Ok(Self {
            src: src.addr(),
            dst: dst.addr(),
            proto,
            ports: if frag == fragment::LATER { None } else { ports },
            icmp: if frag == fragment::LATER { None } else { icmp },
            tcp_flags: spec.tcp_flags.map_or(0, |f| f.value),
            len: single("len", spec.length, 64)?,
            dscp,
            fragment: frag,
            ttl: single("ttl", spec.ttl, 64)?,
            payload: spec.payload,
            known_source: spec.known_source.unwrap_or(false),
        })
    }
}

impl fmt::Display for TestPacket {
    /// The packet in the rules' words, one value a field, as `FromStr` reads them: the
    /// fields it has, and of its payload the first bytes a rule compares at once.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = |addr: IpAddr| {
            let bits = if addr.is_ipv4() { 32 } else { 128 };
            Prefix::new(addr, bits).ok()
        };
        let port = |v| ValueRange { low: v, high: v };
        let payload = self.payload.as_ref().map(|p| {
            let n = p.bytes.len().min(RULE_PAYLOAD_BYTES);
            PayloadMatch {
                offset: p.offset,
                bytes: p.bytes[..n].to_vec(),
                mask: p.mask[..n].to_vec(),
            }
        });
        let spec = RuleSpec {
            src: host(self.src),
            dst: host(self.dst),
            protos: vec![self.proto],
            sports: self.ports.map(|(s, _)| port(s)).into_iter().collect(),
            dports: self.ports.map(|(_, d)| port(d)).into_iter().collect(),
            icmp_type: self.icmp.map(|(t, _)| t),
            icmp_code: self.icmp.map(|(_, c)| c),
            tcp_flags: (self.proto == syntax::TCP && self.ports.is_some() && self.tcp_flags != 0)
                .then_some(TcpFlags {
                    value: self.tcp_flags,
                    mask: self.tcp_flags,
                }),
            length: Some(ValueRange {
                low: self.len,
                high: self.len,
            }),
            dscp: vec![self.dscp],
            fragment: Some(self.fragment),
            ttl: Some(ValueRange {
                low: self.ttl,
                high: self.ttl,
            }),
            payload: payload.filter(|p| !p.bytes.is_empty()),
            known_source: self.known_source.then_some(true),
            action: Action::Monitor,
        };
        let text = spec.to_string();
        f.write_str(text.strip_suffix(" monitor").unwrap_or(&text))
    }
}

impl RuleSpec {
    /// Whether `p` has everything this rule names: the XDP program's test, field by field.
    #[must_use]
    pub fn matches(&self, p: &TestPacket) -> bool {
        let within = |v: u16, r: &super::PortRange| r.low <= v && v <= r.high;
        self.src.is_none_or(|prefix| prefix.contains(p.src))
            && self.dst.is_none_or(|prefix| prefix.contains(p.dst))
            && (self.protos.is_empty() || self.protos.contains(&p.proto))
            && (self.sports.is_empty()
                || p.ports
                    .is_some_and(|(s, _)| self.sports.iter().any(|r| within(s, r))))
            && (self.dports.is_empty()
                || p.ports
                    .is_some_and(|(_, d)| self.dports.iter().any(|r| within(d, r))))
            && self
                .icmp_type
                .is_none_or(|t| p.icmp.is_some_and(|(kind, _)| kind == t))
            && self
                .icmp_code
                .is_none_or(|c| p.icmp.is_some_and(|(_, code)| code == c))
            && self.tcp_flags.is_none_or(|f| {
                p.proto == syntax::TCP && p.ports.is_some() && p.tcp_flags & f.mask == f.value
            })
            && self
                .length
                .is_none_or(|r| r.low <= p.len && p.len <= r.high)
            && (self.dscp.is_empty() || self.dscp.contains(&p.dscp))
            && self.fragment.is_none_or(|f| f & p.fragment != 0)
            && self.ttl.is_none_or(|r| r.low <= p.ttl && p.ttl <= r.high)
            && self
                .known_source
                .is_none_or(|known| known == p.known_source)
            && self
                .payload
                .as_ref()
                .is_none_or(|want| payload_matches(want, p))
    }
}

/// Whether the packet's payload has `want`'s bytes under its mask (a described payload is
/// its bytes at its offset, zeros elsewhere, and long enough to hold what it names).
fn payload_matches(want: &PayloadMatch, p: &TestPacket) -> bool {
    let Some(have) = &p.payload else {
        return false;
    };
    let byte = |at: usize| -> Option<u8> {
        let offset = usize::from(have.offset);
        if at < offset {
            Some(0)
        } else {
            have.bytes.get(at - offset).copied()
        }
    };
    (p.ports.is_some() || p.icmp.is_some() || p.proto != syntax::TCP)
        && want
            .bytes
            .iter()
            .zip(&want.mask)
            .enumerate()
            .all(|(i, (b, m))| {
                byte(usize::from(want.offset) + i).is_some_and(|have| have & m == *b)
            })
}

impl RuleSet {
    /// The rule `p` meets first (by priority, then id), if any.
    #[must_use]
    pub fn first_match(&self, p: &TestPacket) -> Option<&Rule> {
        let mut rules: Vec<&Rule> = self.rules().iter().collect();
        rules.sort_by_key(|r| r.rank());
        rules.into_iter().find(|r| r.spec.matches(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{NewRule, Origin};

    fn set(rules: &[(&str, u16)]) -> RuleSet {
        let new: Vec<NewRule> = rules
            .iter()
            .map(|(text, priority)| NewRule {
                spec: text.parse().expect("valid"),
                priority: *priority,
                comment: None,
                for_ms: None,
                origin: Origin::Cli,
            })
            .collect();
        RuleSet::default().with_added(&new, 0).expect("adds").0
    }

    fn packet(text: &str) -> TestPacket {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn the_first_rule_by_priority_that_matches_is_found() {
        let rules = set(&[
            ("udp dport 53 drop", 200),
            ("from 198.19.0.0/16 udp sport 123 drop", 100),
            ("udp dport 7777 payload 0:6666/ffff drop", 100),
        ]);
        let id = |text: &str| rules.first_match(&packet(text)).map(|r| r.id);
        assert_eq!(
            id("udp from 198.19.3.4 to 198.18.0.1 sport 123 dport 53 len 468"),
            Some(2)
        );
        assert_eq!(
            id("udp from 198.18.3.4 to 198.18.0.1 sport 123 dport 53"),
            Some(1)
        );
        assert_eq!(
            id("udp from 198.18.3.4 to 198.18.0.1 sport 9 dport 7777 payload 0:666601"),
            Some(3)
        );
        assert_eq!(
            id("udp from 198.18.3.4 to 198.18.0.1 sport 9 dport 7777"),
            None
        );
        assert_eq!(
            id("tcp from 198.19.3.4 to 198.18.0.1 sport 123 dport 53"),
            None
        );
    }

    #[test]
    fn a_packet_is_described_with_one_value_a_field() {
        for (text, expected) in [
            ("udp to 198.18.0.1 dport 53", "needs `from ADDRESS`"),
            ("udp from 198.18.0.0/24 to 198.18.0.1", "not the prefix"),
            (
                "proto tcp,udp from 198.18.0.5 to 198.18.0.1",
                "one protocol",
            ),
            (
                "udp from 198.18.0.5 to 198.18.0.1 len 10-20",
                "not the range",
            ),
            ("udp from 198.18.0.5 to 198.18.0.1 sport 1,2", "one port"),
        ] {
            let e = text.parse::<TestPacket>().expect_err(text).to_string();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }
}
