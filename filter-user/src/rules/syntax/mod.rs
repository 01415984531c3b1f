//! The text of a rule: `udp sport 123 len 468-1500 drop`, parsed into a [`RuleSpec`] with
//! errors that name the field and the problem, and written back in one canonical order.
//!
//! A rule is words: fields (`KEYWORD VALUE`, or a protocol's name alone) in any order, and
//! one action. Every field is optional, but a rule must name at least one; a field a rule
//! names twice is an error, never a silent override.

use std::{fmt, str::FromStr};

use filter_common::{MAX_RULE_PAYLOAD_OFFSET, RULE_PAYLOAD_BYTES};

use super::{Action, PayloadMatch, PortRange, RuleRate, RuleSpec, TcpFlags, ValueRange};
use crate::lists::{Family, Prefix};

/// Protocol numbers with names.
pub(super) const ICMP: u8 = 1;
pub(super) const TCP: u8 = 6;
pub(super) const UDP: u8 = 17;
pub(super) const ICMPV6: u8 = 58;

/// TCP flag names, by bit.
const TCP_FLAG_NAMES: [(&str, u8); 8] = [
    ("fin", 0x01),
    ("syn", 0x02),
    ("rst", 0x04),
    ("psh", 0x08),
    ("ack", 0x10),
    ("urg", 0x20),
    ("ece", 0x40),
    ("cwr", 0x80),
];

/// Fragment kinds, by `filter_common::fragment` bit.
const FRAGMENT_NAMES: [(&str, u8); 3] = [
    ("none", filter_common::fragment::NONE),
    ("first", filter_common::fragment::FIRST),
    ("later", filter_common::fragment::LATER),
];

/// Why a rule's text was refused. The message names the field and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleSyntaxError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, RuleSyntaxError> {
    Err(RuleSyntaxError(message.into()))
}

impl FromStr for RuleSpec {
    type Err = RuleSyntaxError;

    fn from_str(text: &str) -> Result<Self, RuleSyntaxError> {
        if text.trim().is_empty() {
            return err(
                "the rule is empty: write what it matches and its action, e.g. `udp sport 123 drop`",
            );
        }
        let mut spec = Self::default();
        let mut action: Option<Action> = None;
        let mut seen: Vec<&'static str> = Vec::new();
        let mut words = text.split_whitespace();
        while let Some(word) = words.next() {
            let lower = word.to_ascii_lowercase();
            // The field (or action) this word starts, and whether it takes a value.
            let field: &'static str = match lower.as_str() {
                "from" => "from",
                "to" => "to",
                "proto" | "tcp" | "udp" | "icmp" | "icmpv6" => "proto",
                "sport" => "sport",
                "dport" => "dport",
                "icmp-type" => "icmp-type",
                "icmp-code" => "icmp-code",
                "flags" => "flags",
                "len" => "len",
                "dscp" => "dscp",
                "frag" => "frag",
                "ttl" => "ttl",
                "payload" => "payload",
                "source" => "source",
                "drop" | "allow" | "monitor" | "rate-limit" | "per-source" => "action",
                _ => {
                    return err(format!(
                        "`{word}` is not a field or an action of a rule (fields: from, to, \
                         proto (or tcp, udp, icmp, icmpv6), sport, dport, icmp-type, icmp-code, \
                         flags, len, dscp, frag, ttl, payload, source; actions: drop, allow, monitor, \
                         rate-limit RATE, per-source RATE)"
                    ));
                }
            };
            if seen.contains(&field) {
                return err(if field == "action" {
                    format!("a rule has one action: `{word}` is a second one")
                } else {
                    format!("`{field}` is given twice: give it once (a list where it takes one)")
                });
            }
            seen.push(field);
            let mut value = || {
                words.next().ok_or_else(|| {
                    RuleSyntaxError(format!("`{word}` needs a value: {}", expects(&lower)))
                })
            };
            match lower.as_str() {
                "tcp" => spec.protos = vec![TCP],
                "udp" => spec.protos = vec![UDP],
                "icmp" => spec.protos = vec![ICMP],
                "icmpv6" => spec.protos = vec![ICMPV6],
                "drop" => action = Some(Action::Drop),
                "allow" => action = Some(Action::Allow),
                "monitor" => action = Some(Action::Monitor),
                "rate-limit" => action = Some(Action::RateLimit(rate(&lower, value()?)?)),
                "per-source" => action = Some(Action::PerSource(rate(&lower, value()?)?)),
                field => spec.set(field, value()?)?,
            }
        }
        let Some(action) = action else {
            return err(
                "a rule needs an action: drop, allow, monitor, rate-limit RATE or per-source RATE",
            );
        };
        spec.action = action;
        spec.check()?;
        Ok(spec)
    }
}

/// What a keyword's value looks like, for the error of one that is missing.
fn expects(keyword: &str) -> &'static str {
    match keyword {
        "from" => "a prefix, e.g. 198.18.0.0/15",
        "to" => "a prefix, e.g. 198.18.0.0/24",
        "proto" => "a protocol list, e.g. tcp,udp or 47",
        "sport" | "dport" => "ports, e.g. 53 or 80,443 or 1024-65535",
        "icmp-type" | "icmp-code" => "a number, 0 to 255",
        "flags" => "flags, e.g. syn,!ack",
        "len" => "a length or range, e.g. 64 or 468-1500",
        "dscp" => "DSCP values, e.g. 46 or 8,10",
        "frag" => "fragment kinds: none, first, later",
        "ttl" => "a TTL or range, e.g. 1-16",
        "payload" => "OFFSET:HEX[/MASK], e.g. 0:0badc0de",
        "source" => "known or unknown (whether the service's baseline saw the source)",
        _ => "a rate, e.g. 1000pps or 10mbps or 1000pps,10mbps",
    }
}

impl RuleSpec {
    /// Sets the field `keyword` from its value's text.
    fn set(&mut self, keyword: &str, value: &str) -> Result<(), RuleSyntaxError> {
        match keyword {
            "from" => self.src = Some(prefix("from", value)?),
            "to" => self.dst = Some(prefix("to", value)?),
            "proto" => self.protos = protocols(value)?,
            "sport" => self.sports = ports("sport", value)?,
            "dport" => self.dports = ports("dport", value)?,
            "icmp-type" => self.icmp_type = Some(byte("icmp-type", value)?),
            "icmp-code" => self.icmp_code = Some(byte("icmp-code", value)?),
            "flags" => self.tcp_flags = Some(tcp_flags(value)?),
            "len" => self.length = Some(range16("len", value)?),
            "dscp" => self.dscp = dscp(value)?,
            "frag" => self.fragment = Some(fragments(value)?),
            "ttl" => self.ttl = Some(range8("ttl", value)?),
            "source" => self.known_source = Some(known(value)?),
            _ => self.payload = Some(payload(value)?),
        }
        Ok(())
    }

    /// The checks across fields: what no packet can have, or what the kernel cannot match.
    fn check(&self) -> Result<(), RuleSyntaxError> {
        if self.src.is_none()
            && self.dst.is_none()
            && self.protos.is_empty()
            && self.sports.is_empty()
            && self.dports.is_empty()
            && self.icmp_type.is_none()
            && self.icmp_code.is_none()
            && self.tcp_flags.is_none()
            && self.length.is_none()
            && self.dscp.is_empty()
            && self.fragment.is_none()
            && self.ttl.is_none()
            && self.payload.is_none()
            && self.known_source.is_none()
        {
            return err(
                "the rule names no field, so it would match every packet: name at least one (e.g. udp, dport 53)",
            );
        }
        if let (Some(src), Some(dst)) = (self.src, self.dst)
            && src.family() != dst.family()
        {
            return err(format!(
                "`from {src}` and `to {dst}` are of different families: no packet has both"
            ));
        }
        let family = self.src.or(self.dst).map(|p| p.family());
        let named = |p: u8| self.protos.contains(&p);
        let only = |allowed: &[u8]| {
            !self.protos.is_empty() && self.protos.iter().all(|p| allowed.contains(p))
        };
        if (!self.sports.is_empty() || !self.dports.is_empty()) && !only(&[TCP, UDP]) {
            let field = if self.sports.is_empty() {
                "dport"
            } else {
                "sport"
            };
            return err(format!(
                "`{field}` needs the protocol to be tcp or udp (or both: proto tcp,udp): {}",
                self.proto_words()
            ));
        }
        if (self.icmp_type.is_some() || self.icmp_code.is_some()) && !only(&[ICMP, ICMPV6]) {
            let field = if self.icmp_type.is_some() {
                "icmp-type"
            } else {
                "icmp-code"
            };
            return err(format!(
                "`{field}` needs the protocol to be icmp or icmpv6: {}",
                self.proto_words()
            ));
        }
        if self.tcp_flags.is_some() && !only(&[TCP]) {
            return err(format!(
                "`flags` needs the protocol to be tcp: {}",
                self.proto_words()
            ));
        }
        if family == Some(Family::V4) && named(ICMPV6) {
            return err("icmpv6 is IPv6's, and the rule's prefixes are IPv4: use icmp");
        }
        if family == Some(Family::V6) && named(ICMP) {
            return err("icmp is IPv4's, and the rule's prefixes are IPv6: use icmpv6");
        }
        let needs_l4 = !self.sports.is_empty()
            || !self.dports.is_empty()
            || self.icmp_type.is_some()
            || self.icmp_code.is_some()
            || self.tcp_flags.is_some()
            || self.payload.is_some();
        if needs_l4 && self.fragment == Some(filter_common::fragment::LATER) {
            return err(
                "`frag later` has no L4 header, so no ports, icmp-type, flags or payload: drop one of them",
            );
        }
        if self.payload.is_some() && self.protos.is_empty() {
            return err(
                "`payload` needs a protocol (its offset counts from the start of the L4 payload): add tcp, udp, icmp or proto N",
            );
        }
        Ok(())
    }

    /// The protocol part of the rule, for messages.
    fn proto_words(&self) -> String {
        if self.protos.is_empty() {
            "the rule names no protocol".to_owned()
        } else {
            format!("the rule says `proto {}`", protocol_list(&self.protos))
        }
    }
}

/// `source`'s value: `known` or `unknown`.
fn known(value: &str) -> Result<bool, RuleSyntaxError> {
    match value.to_ascii_lowercase().as_str() {
        "known" => Ok(true),
        "unknown" => Ok(false),
        _ => err(format!(
            "`source`: `{value}` is neither `known` nor `unknown` (whether the service's \
             baseline saw the source)"
        )),
    }
}

fn prefix(field: &str, text: &str) -> Result<Prefix, RuleSyntaxError> {
    text.parse::<Prefix>()
        .map_err(|e| RuleSyntaxError(format!("`{field}`: {e}")))
}

fn number(field: &str, text: &str, max: u64) -> Result<u64, RuleSyntaxError> {
    let n: u64 = text.parse().map_err(|_| {
        RuleSyntaxError(format!("`{field}`: `{text}` is not a number (0 to {max})"))
    })?;
    if n > max {
        return err(format!("`{field}`: {n} is over {max}"));
    }
    Ok(n)
}

fn byte(field: &str, text: &str) -> Result<u8, RuleSyntaxError> {
    number(field, text, 255).map(|n| u8::try_from(n).unwrap_or(u8::MAX))
}

/// `N` or `N-M`, as `[low, high]`.
fn range(field: &str, text: &str, max: u64) -> Result<(u64, u64), RuleSyntaxError> {
    let (low, high) = if let Some((low, high)) = text.split_once('-') {
        (number(field, low, max)?, number(field, high, max)?)
    } else {
        let n = number(field, text, max)?;
        (n, n)
    };
    if low > high {
        return err(format!(
            "`{field}`: the range {text} is empty ({low} is over {high})"
        ));
    }
    Ok((low, high))
}

fn range16(field: &str, text: &str) -> Result<ValueRange<u16>, RuleSyntaxError> {
    let (low, high) = range(field, text, u64::from(u16::MAX))?;
    let cast = |n: u64| u16::try_from(n).unwrap_or(u16::MAX);
    Ok(ValueRange {
        low: cast(low),
        high: cast(high),
    })
}

fn range8(field: &str, text: &str) -> Result<ValueRange<u8>, RuleSyntaxError> {
    let (low, high) = range(field, text, 255)?;
    let cast = |n: u64| u8::try_from(n).unwrap_or(u8::MAX);
    Ok(ValueRange {
        low: cast(low),
        high: cast(high),
    })
}

/// A comma-separated list with no empty items.
fn items<'a>(field: &str, text: &'a str) -> Result<Vec<&'a str>, RuleSyntaxError> {
    let items: Vec<&str> = text.split(',').collect();
    if items.iter().any(|i| i.is_empty()) {
        return err(format!(
            "`{field}`: `{text}` has an empty item (a list is comma-separated, no spaces)"
        ));
    }
    Ok(items)
}

fn ports(field: &str, text: &str) -> Result<Vec<PortRange>, RuleSyntaxError> {
    let mut ranges: Vec<PortRange> = Vec::new();
    for item in items(field, text)? {
        let r = range16(field, item)?;
        if ranges.contains(&r) {
            return err(format!("`{field}`: {item} is listed twice"));
        }
        ranges.push(r);
    }
    Ok(ranges)
}

fn protocols(text: &str) -> Result<Vec<u8>, RuleSyntaxError> {
    let mut protos = Vec::new();
    for item in items("proto", text)? {
        let p = match item.to_ascii_lowercase().as_str() {
            "tcp" => TCP,
            "udp" => UDP,
            "icmp" => ICMP,
            "icmpv6" => ICMPV6,
            other => {
                if other.parse::<u64>().is_err() {
                    return err(format!(
                        "`proto`: `{item}` is not a protocol (tcp, udp, icmp, icmpv6 or a number 0 to 255)"
                    ));
                }
                byte("proto", other)?
            }
        };
        if protos.contains(&p) {
            return err(format!("`proto`: {item} is listed twice"));
        }
        protos.push(p);
    }
    Ok(protos)
}

fn tcp_flags(text: &str) -> Result<TcpFlags, RuleSyntaxError> {
    let mut flags = TcpFlags::default();
    for item in items("flags", text)? {
        let (clear, name) = match item.strip_prefix('!') {
            Some(name) => (true, name),
            None => (false, item),
        };
        let Some(&(_, bit)) = TCP_FLAG_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        else {
            return err(format!(
                "`flags`: `{name}` is not a TCP flag (fin, syn, rst, psh, ack, urg, ece, cwr; !ack: ack clear)"
            ));
        };
        if flags.mask & bit != 0 {
            return err(format!("`flags`: {name} is named twice"));
        }
        flags.mask |= bit;
        if !clear {
            flags.value |= bit;
        }
    }
    Ok(flags)
}

fn dscp(text: &str) -> Result<Vec<u8>, RuleSyntaxError> {
    let mut values = Vec::new();
    for item in items("dscp", text)? {
        let v = u8::try_from(number("dscp", item, 63)?).unwrap_or(0);
        if values.contains(&v) {
            return err(format!("`dscp`: {v} is listed twice"));
        }
        values.push(v);
    }
    Ok(values)
}

fn fragments(text: &str) -> Result<u8, RuleSyntaxError> {
    let mut bits = 0;
    for item in items("frag", text)? {
        let Some(&(_, bit)) = FRAGMENT_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(item))
        else {
            return err(format!(
                "`frag`: `{item}` is not a fragment kind (none, first, later)"
            ));
        };
        if bits & bit != 0 {
            return err(format!("`frag`: {item} is listed twice"));
        }
        bits |= bit;
    }
    Ok(bits)
}

fn hex(field: &str, text: &str) -> Result<Vec<u8>, RuleSyntaxError> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if digits.is_empty() {
        return err(format!("`{field}`: no hex bytes after the `:`"));
    }
    if !digits.len().is_multiple_of(2) {
        return err(format!(
            "`{field}`: `{text}` has an odd number of hex digits (two a byte)"
        ));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| RuleSyntaxError(format!("`{field}`: `{text}` is not hex (0-9, a-f)")))
        })
        .collect()
}

fn payload(text: &str) -> Result<PayloadMatch, RuleSyntaxError> {
    let Some((offset, rest)) = text.split_once(':') else {
        return err(format!(
            "`payload`: `{text}` is not OFFSET:HEX[/MASK] (e.g. 0:0badc0de, 4:00ff/00ff)"
        ));
    };
    let offset = u16::try_from(number(
        "payload",
        offset,
        u64::from(MAX_RULE_PAYLOAD_OFFSET),
    )?)
    .unwrap_or(MAX_RULE_PAYLOAD_OFFSET);
    let (bytes, mask) = match rest.split_once('/') {
        Some((bytes, mask)) => (hex("payload", bytes)?, Some(hex("payload mask", mask)?)),
        None => (hex("payload", rest)?, None),
    };
    if bytes.len() > RULE_PAYLOAD_BYTES {
        return err(format!(
            "`payload`: {} bytes, at most {RULE_PAYLOAD_BYTES} can be compared",
            bytes.len()
        ));
    }
    let mask = match mask {
        Some(mask) if mask.len() != bytes.len() => {
            return err(format!(
                "`payload`: the mask has {} bytes and the value {}: give as many",
                mask.len(),
                bytes.len()
            ));
        }
        Some(mask) => mask,
        None => vec![0xff; bytes.len()],
    };
    if mask.iter().all(|&m| m == 0) {
        return err("`payload`: the mask is all zero, so it compares nothing");
    }
    if let Some(i) = bytes.iter().zip(&mask).position(|(b, m)| b & !m != 0) {
        return err(format!(
            "`payload`: byte {i} has bits outside its mask, which no packet can match"
        ));
    }
    Ok(PayloadMatch {
        offset,
        bytes,
        mask,
    })
}

/// `1000pps`, `10mbps`, `1000pps,10mbps`: SI prefixes k, m (M), g (G).
fn rate(field: &str, text: &str) -> Result<RuleRate, RuleSyntaxError> {
    let mut rate = RuleRate::default();
    for item in items(field, text)? {
        let lower = item.to_ascii_lowercase();
        let (number_text, packets) = if let Some(n) = lower.strip_suffix("pps") {
            (n, true)
        } else if let Some(n) = lower.strip_suffix("bps") {
            (n, false)
        } else {
            return err(format!(
                "`{field}`: `{item}` has no unit: packets/s end in pps (1000pps, 10kpps), bits/s in bps (10mbps)"
            ));
        };
        let n = crate::limits::parse_count(number_text)
            .map_err(|e| RuleSyntaxError(format!("`{field}`: {e}")))?;
        let slot = if packets {
            &mut rate.pps
        } else {
            &mut rate.bps
        };
        if slot.is_some() {
            return err(format!(
                "`{field}`: two {} rates",
                if packets { "packet" } else { "bit" }
            ));
        }
        *slot = Some(n);
    }
    Ok(rate)
}

fn protocol_name(p: u8) -> String {
    match p {
        TCP => "tcp".to_owned(),
        UDP => "udp".to_owned(),
        ICMP => "icmp".to_owned(),
        ICMPV6 => "icmpv6".to_owned(),
        n => n.to_string(),
    }
}

fn protocol_list(protos: &[u8]) -> String {
    protos
        .iter()
        .map(|&p| protocol_name(p))
        .collect::<Vec<_>>()
        .join(",")
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for RuleSpec {
    /// The canonical text: fields in a fixed order, then the action. Parsing it gives the
    /// same spec back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words: Vec<String> = Vec::new();
        if let Some(src) = self.src {
            words.push(format!("from {src}"));
        }
        if let Some(dst) = self.dst {
            words.push(format!("to {dst}"));
        }
        match self.protos.as_slice() {
            [] => {}
            [p] if matches!(*p, TCP | UDP | ICMP | ICMPV6) => words.push(protocol_name(*p)),
            protos => words.push(format!("proto {}", protocol_list(protos))),
        }
        if !self.sports.is_empty() {
            words.push(format!("sport {}", list(&self.sports)));
        }
        if !self.dports.is_empty() {
            words.push(format!("dport {}", list(&self.dports)));
        }
        if let Some(t) = self.icmp_type {
            words.push(format!("icmp-type {t}"));
        }
        if let Some(c) = self.icmp_code {
            words.push(format!("icmp-code {c}"));
        }
        if let Some(flags) = self.tcp_flags {
            let names: Vec<String> = TCP_FLAG_NAMES
                .iter()
                .filter(|(_, bit)| flags.mask & bit != 0)
                .map(|(name, bit)| {
                    if flags.value & bit != 0 {
                        (*name).to_owned()
                    } else {
                        format!("!{name}")
                    }
                })
                .collect();
            words.push(format!("flags {}", names.join(",")));
        }
        if let Some(len) = self.length {
            words.push(format!("len {len}"));
        }
        if !self.dscp.is_empty() {
            words.push(format!("dscp {}", list(&self.dscp)));
        }
        if let Some(bits) = self.fragment {
            let names: Vec<&str> = FRAGMENT_NAMES
                .iter()
                .filter(|(_, bit)| bits & bit != 0)
                .map(|(name, _)| *name)
                .collect();
            words.push(format!("frag {}", names.join(",")));
        }
        if let Some(ttl) = self.ttl {
            words.push(format!("ttl {ttl}"));
        }
        if let Some(known) = self.known_source {
            words.push(format!(
                "source {}",
                if known { "known" } else { "unknown" }
            ));
        }
        if let Some(p) = &self.payload {
            let hex = super::to_hex;
            if p.mask.iter().all(|&m| m == 0xff) {
                words.push(format!("payload {}:{}", p.offset, hex(&p.bytes)));
            } else {
                words.push(format!(
                    "payload {}:{}/{}",
                    p.offset,
                    hex(&p.bytes),
                    hex(&p.mask)
                ));
            }
        }
        words.push(self.action.to_string());
        f.write_str(&words.join(" "))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Drop => f.write_str("drop"),
            Self::Allow => f.write_str("allow"),
            Self::Monitor => f.write_str("monitor"),
            Self::RateLimit(rate) => write!(f, "rate-limit {rate}"),
            Self::PerSource(rate) => write!(f, "per-source {rate}"),
        }
    }
}

impl fmt::Display for RuleRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [(self.pps, "pps"), (self.bps, "bps")]
            .into_iter()
            .filter_map(|(n, unit)| n.map(|n| format!("{n}{unit}")))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl<T: fmt::Display + PartialEq> fmt::Display for ValueRange<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

#[cfg(test)]
mod tests;
