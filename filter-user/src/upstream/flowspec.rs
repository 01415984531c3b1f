//! A route for the upstream router: a FlowSpec route (RFC 8955) made from a rule's match
//! fields, or a blackhole route (RFC 7999) for one address; in the words of the `gobgp`
//! client, and in a normal form that GoBGP's JSON read-back is compared with.
//!
//! The normal form is the NLRI's components as RFC 8955 encodes them, each operator byte
//! without its length bits (GoBGP picks the value's length): two routes are the same route
//! exactly when their normal forms are equal, whatever order or spelling made them.

use std::{fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::UpstreamError;
use crate::{
    lists::{Family, Prefix},
    rules::{Action, RuleSpec, TcpFlags, ValueRange},
};

/// What the upstream router does with a FlowSpec route's traffic.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowAction {
    /// Drops it (traffic-rate 0).
    Discard,
    /// Drops what goes over this many bytes a second (traffic-rate, RFC 8955 7.3).
    RateLimit {
        /// The rate, in bytes a second (FlowSpec's unit: `rate-limit 8mbps` is 1,000,000).
        bytes_per_second: f32,
    },
}

impl FlowAction {
    /// The traffic-rate value on the wire: 0 is discard.
    #[must_use]
    pub fn rate(self) -> f32 {
        match self {
            Self::Discard => 0.0,
            Self::RateLimit { bytes_per_second } => bytes_per_second,
        }
    }
}

/// A FlowSpec route: the rule's match (its destination inside a protected prefix) and what
/// the router does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowRoute {
    /// The match, with `dst` set and only fields FlowSpec has; its action says nothing
    /// (see `action`).
    pub spec: RuleSpec,
    /// What the router does.
    pub action: FlowAction,
}

/// A route floodwall announces.
#[expect(
    clippy::large_enum_variant,
    reason = "a handful of routes, each cloned once per pass"
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Route {
    /// A FlowSpec route.
    Flowspec(FlowRoute),
    /// A unicast route for one address with the blackhole community: the router drops all
    /// traffic to it.
    Blackhole {
        /// The address (a /32 or /128 route).
        addr: IpAddr,
        /// The community, e.g. (65535, 666).
        community: (u16, u16),
    },
}

/// One component of a FlowSpec NLRI in normal form: its type, and its value (a prefix's
/// text, or the operator-value pairs with the operators' length bits cleared).
pub type Component = (u8, String);

/// Mask of an operator byte without its length bits (RFC 8955 4.2.1.1: end-of-list, and,
/// and the comparison or bitmask bits).
const OP_WITHOUT_LEN: u8 = 0xC7;
const END: u8 = 0x80;
const AND: u8 = 0x40;
const LT: u8 = 0x04;
const GT: u8 = 0x02;
const EQ: u8 = 0x01;
/// Bitmask operators: the NOT bit and the MATCH bit.
const NOT: u8 = 0x02;
const MATCH: u8 = 0x01;

/// TCP flag letters as the `gobgp` client writes them, by bit.
const FLAG_LETTERS: [(u8, char); 8] = [
    (0x01, 'F'),
    (0x02, 'S'),
    (0x04, 'R'),
    (0x08, 'P'),
    (0x10, 'A'),
    (0x20, 'U'),
    (0x40, 'E'),
    (0x80, 'C'),
];

impl FlowRoute {
    /// The route for `spec` (a rule's text), to `to` if given (it must lie inside the
    /// rule's own destination, if the rule has one).
    ///
    /// # Errors
    /// If the rule has no destination and `to` is not given, or a field or action FlowSpec
    /// has no form for.
    pub fn from_rule(spec: &RuleSpec, to: Option<Prefix>) -> Result<Self, UpstreamError> {
        let dst = match (spec.dst, to) {
            (Some(own), Some(to)) if !own.covers(&to) => {
                return Err(UpstreamError::Inexpressible(format!(
                    "`to {to}` is not inside the rule's destination {own}"
                )));
            }
            (_, Some(to)) => to,
            (Some(own), None) => own,
            (None, None) => {
                return Err(UpstreamError::Inexpressible(
                    "a route upstream needs a destination inside the protected prefixes: \
                     give `to PREFIX` in the rule or `--to PREFIX`"
                        .to_owned(),
                ));
            }
        };
        if let Some(src) = spec.src
            && src.family() != dst.family()
        {
            return Err(UpstreamError::Inexpressible(format!(
                "the source {src} and the destination {dst} are of different families"
            )));
        }
        let unsupported = [
            (spec.ttl.is_some(), "ttl"),
            (spec.payload.is_some(), "payload"),
            (spec.known_source.is_some(), "source known|unknown"),
            (spec.fragment.is_some(), "frag"),
        ];
        if let Some((_, field)) = unsupported.iter().find(|(set, _)| *set) {
            return Err(UpstreamError::Inexpressible(format!(
                "FlowSpec has no `{field}` component: the upstream router cannot match it \
                 (announce a rule without it; floodwall still matches it on this server)"
            )));
        }
        let action = match spec.action {
            Action::Drop => FlowAction::Discard,
            Action::RateLimit(rate) => match rate.bps {
                #[expect(
                    clippy::cast_precision_loss,
                    reason = "FlowSpec carries the rate as a 32-bit float"
                )]
                Some(bps) if bps >= 8 => FlowAction::RateLimit {
                    bytes_per_second: (bps / 8) as f32,
                },
                _ => {
                    return Err(UpstreamError::Inexpressible(
                        "FlowSpec limits bytes, not packets: give the rate in bits, of at \
                         least 8bps (e.g. `rate-limit 10mbps`)"
                            .to_owned(),
                    ));
                }
            },
            Action::Allow | Action::Monitor | Action::PerSource(_) => {
                return Err(UpstreamError::Inexpressible(
                    "only `drop` and `rate-limit RATE` have a FlowSpec action (discard, \
                     traffic-rate)"
                        .to_owned(),
                ));
            }
        };
        let spec = RuleSpec {
            dst: Some(dst),
            action: Action::Drop,
            ..spec.clone()
        };
        Ok(Self { spec, action })
    }

    /// The destination prefix.
    ///
    /// # Panics
    /// Never: [`FlowRoute::from_rule`] always sets it.
    #[must_use]
    pub fn dst(&self) -> Prefix {
        self.spec.dst.expect("a FlowRoute always has a destination")
    }

    /// `gobgp`'s address family: `ipv4-flowspec` or `ipv6-flowspec`.
    #[must_use]
    pub fn family(&self) -> &'static str {
        match self.dst().family() {
            Family::V4 => "ipv4-flowspec",
            Family::V6 => "ipv6-flowspec",
        }
    }

    /// The NLRI in normal form, components by type.
    #[must_use]
    pub fn nlri(&self) -> Vec<Component> {
        let s = &self.spec;
        let mut out = vec![(1, self.dst().to_string())];
        if let Some(src) = s.src {
            out.push((2, src.to_string()));
        }
        let eq = |values: &[u8]| ranges(&values.iter().map(|v| range(*v)).collect::<Vec<_>>());
        if !s.protos.is_empty() {
            out.push((3, eq(&s.protos)));
        }
        if !s.dports.is_empty() {
            out.push((5, ranges(&s.dports)));
        }
        if !s.sports.is_empty() {
            out.push((6, ranges(&s.sports)));
        }
        if let Some(t) = s.icmp_type {
            out.push((7, eq(&[t])));
        }
        if let Some(c) = s.icmp_code {
            out.push((8, eq(&[c])));
        }
        if let Some(flags) = s.tcp_flags {
            out.push((9, normal(&flag_items(flags))));
        }
        if let Some(len) = s.length {
            out.push((10, ranges(&[len])));
        }
        if !s.dscp.is_empty() {
            out.push((11, eq(&s.dscp)));
        }
        out
    }

    /// The `match ... then ...` words of `gobgp global rib -a FAMILY add|del`.
    #[must_use]
    pub fn words(&self) -> Vec<String> {
        let s = &self.spec;
        let mut w: Vec<String> = vec!["match".into(), "destination".into()];
        w.push(self.dst().to_string());
        if let Some(src) = s.src {
            w.extend(["source".into(), src.to_string()]);
        }
        let eq_words = |values: &[u8]| values.iter().map(|v| format!("=={v}")).collect();
        let mut field = |name: &str, values: Vec<String>| {
            if !values.is_empty() {
                w.push(name.to_owned());
                w.extend(values);
            }
        };
        field("protocol", eq_words(&s.protos));
        field("destination-port", range_words(&s.dports));
        field("source-port", range_words(&s.sports));
        field(
            "icmp-type",
            s.icmp_type.map(|t| eq_words(&[t])).unwrap_or_default(),
        );
        field(
            "icmp-code",
            s.icmp_code.map(|c| eq_words(&[c])).unwrap_or_default(),
        );
        field("tcp-flags", s.tcp_flags.map(flag_words).unwrap_or_default());
        field(
            "packet-length",
            s.length.map(|l| range_words(&[l])).unwrap_or_default(),
        );
        field("dscp", eq_words(&s.dscp));
        w.push("then".into());
        match self.action {
            FlowAction::Discard => w.push("discard".into()),
            FlowAction::RateLimit { bytes_per_second } => {
                w.extend(["rate-limit".into(), format!("{bytes_per_second}")]);
            }
        }
        w
    }
}

fn range<T: Copy>(v: T) -> ValueRange<T> {
    ValueRange { low: v, high: v }
}

/// Operator-value items of a list of ranges, any of which matches.
fn range_items<T: Copy + Into<u64>>(list: &[ValueRange<T>]) -> Vec<(u8, u64)> {
    let mut items = Vec::new();
    for r in list {
        let (low, high) = (r.low.into(), r.high.into());
        if low == high {
            items.push((EQ, low));
        } else {
            items.push((GT | EQ, low));
            items.push((AND | LT | EQ, high));
        }
    }
    items
}

/// The normal form of a list of ranges.
fn ranges<T: Copy + Into<u64>>(list: &[ValueRange<T>]) -> String {
    normal(&range_items(list))
}

/// Items in normal form: `op:value` with the last item's end-of-list bit set.
fn normal(items: &[(u8, u64)]) -> String {
    let last = items.len().saturating_sub(1);
    items
        .iter()
        .enumerate()
        .map(|(i, (op, v))| {
            let op = if i == last { op | END } else { *op };
            format!("{}:{v}", op & OP_WITHOUT_LEN)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A list of ranges in the client's words: `==53`, `>=1024&<=65535`.
fn range_words<T: Copy + Into<u64> + fmt::Display>(list: &[ValueRange<T>]) -> Vec<String> {
    list.iter()
        .map(|r| {
            if r.low.into() == r.high.into() {
                format!("=={}", r.low)
            } else {
                format!(">={}&<={}", r.low, r.high)
            }
        })
        .collect()
}

/// TCP flags as bitmask items: those that must be set (all of them: MATCH), then those
/// that must be clear (none of them: NOT).
fn flag_items(flags: TcpFlags) -> Vec<(u8, u64)> {
    let set = flags.value & flags.mask;
    let clear = flags.mask & !flags.value;
    let mut items = Vec::new();
    if set != 0 {
        items.push((MATCH, u64::from(set)));
    }
    if clear != 0 {
        let and = if items.is_empty() { 0 } else { AND };
        items.push((and | NOT, u64::from(clear)));
    }
    items
}

/// TCP flags in the client's words: `=S&!A` (SYN set and ACK clear).
fn flag_words(flags: TcpFlags) -> Vec<String> {
    let letters = |bits: u8| -> String {
        FLAG_LETTERS
            .iter()
            .filter(|(bit, _)| bits & bit != 0)
            .map(|(_, l)| *l)
            .collect()
    };
    let set = flags.value & flags.mask;
    let clear = flags.mask & !flags.value;
    let mut parts = Vec::new();
    if set != 0 {
        parts.push(format!("={}", letters(set)));
    }
    if clear != 0 {
        parts.push(format!("!{}", letters(clear)));
    }
    vec![parts.join("&")]
}

/// The normal form of one component of GoBGP's JSON (`{"type": 5, "value": [{"op": 145,
/// "value": 53}]}`, or a prefix: `{"type": 1, "value": {"prefix": "198.18.0.1/32"}}`).
///
/// # Errors
/// If the JSON is not of that shape.
pub fn component_of_json(json: &serde_json::Value) -> Result<Component, String> {
    let kind = json
        .get("type")
        .and_then(serde_json::Value::as_u64)
        .and_then(|t| u8::try_from(t).ok())
        .ok_or_else(|| format!("a FlowSpec component without a type: {json}"))?;
    let value = json
        .get("value")
        .ok_or_else(|| format!("a FlowSpec component without a value: {json}"))?;
    if let Some(prefix) = value.get("prefix").and_then(serde_json::Value::as_str) {
        let prefix: Prefix = prefix
            .parse()
            .map_err(|e| format!("a FlowSpec prefix `{prefix}`: {e}"))?;
        return Ok((kind, prefix.to_string()));
    }
    let items = value
        .as_array()
        .ok_or_else(|| format!("a FlowSpec component of an unknown shape: {json}"))?
        .iter()
        .map(|item| {
            let op = item.get("op").and_then(serde_json::Value::as_u64);
            let v = item.get("value").and_then(serde_json::Value::as_u64);
            match (op.and_then(|o| u8::try_from(o).ok()), v) {
                (Some(op), Some(v)) => Ok(format!("{}:{v}", op & OP_WITHOUT_LEN)),
                _ => Err(format!("a FlowSpec item of an unknown shape: {item}")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((kind, items.join(",")))
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flowspec(flow) => {
                // The rule's text without its action, then FlowSpec's action.
                let text = flow.spec.to_string();
                let text = text.strip_suffix(" drop").unwrap_or(&text);
                match flow.action {
                    FlowAction::Discard => write!(f, "flowspec {text} discard"),
                    FlowAction::RateLimit { bytes_per_second } => {
                        write!(f, "flowspec {text} rate-limit {bytes_per_second} bytes/s")
                    }
                }
            }
            Self::Blackhole { addr, community } => write!(
                f,
                "blackhole {} community {}:{}",
                Prefix::host(*addr),
                community.0,
                community.1
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(text: &str) -> FlowRoute {
        FlowRoute::from_rule(&text.parse().expect("a rule"), None).expect("a route")
    }

    #[test]
    fn the_normal_form_is_what_gobgp_reads_back_for_the_same_route() {
        // GoBGP 3.10's JSON for `match destination 198.18.0.1/32 protocol 17
        // destination-port '>=1024&<=65535' '==53' packet-length '>=100&<=200'`.
        let json: serde_json::Value = serde_json::from_str(
            r#"[{"type":1,"value":{"prefix":"198.18.0.1/32"}},
                {"type":3,"value":[{"op":129,"value":17}]},
                {"type":5,"value":[{"op":19,"value":1024},{"op":85,"value":65535},{"op":129,"value":53}]},
                {"type":10,"value":[{"op":3,"value":100},{"op":197,"value":200}]}]"#,
        )
        .expect("json");
        let read: Vec<Component> = json
            .as_array()
            .expect("array")
            .iter()
            .map(|c| component_of_json(c).expect("a component"))
            .collect();
        let ours = route("udp dport 1024-65535,53 len 100-200 to 198.18.0.1 rate-limit 8kbps");
        assert_eq!(ours.nlri(), read);
        assert_eq!(
            ours.words().join(" "),
            "match destination 198.18.0.1/32 protocol ==17 destination-port \
             >=1024&<=65535 ==53 packet-length >=100&<=200 then rate-limit 1000"
        );
    }

    #[test]
    fn tcp_flags_read_back_as_gobgp_encodes_set_and_clear_bits() {
        // `tcp-flags '=S&!A'` read back: [{op 1, S}, {op 194, A}].
        let json: serde_json::Value = serde_json::from_str(
            r#"{"type":9,"value":[{"op":1,"value":2},{"op":194,"value":16}]}"#,
        )
        .expect("json");
        let ours = route("tcp flags syn,!ack to 198.18.0.1 drop");
        assert_eq!(
            ours.nlri()[2],
            component_of_json(&json).expect("a component")
        );
        assert!(
            ours.words()
                .join(" ")
                .contains("tcp-flags =S&!A then discard")
        );
    }

    #[test]
    fn fields_and_actions_flowspec_lacks_are_refused_by_name() {
        let refused = |text: &str, to: Option<&str>| {
            FlowRoute::from_rule(
                &text.parse().expect("a rule"),
                to.map(|t| t.parse().expect("a prefix")),
            )
            .expect_err("refused")
            .to_string()
        };
        assert!(refused("udp ttl 64 to 198.18.0.1 drop", None).contains("`ttl`"));
        assert!(refused("udp payload 0:ab to 198.18.0.1 drop", None).contains("`payload`"));
        assert!(refused("udp dport 53 drop", None).contains("needs a destination"));
        assert!(refused("udp to 198.18.0.1 rate-limit 1000pps", None).contains("not packets"));
        assert!(refused("udp to 198.18.0.1 allow", None).contains("`drop`"));
        assert!(refused("udp to 198.18.0.0/24 drop", Some("198.18.1.1")).contains("not inside"));
        let narrowed = FlowRoute::from_rule(
            &"udp to 198.18.0.0/24 drop".parse().expect("a rule"),
            Some("198.18.0.7".parse().expect("a prefix")),
        )
        .expect("a narrower destination");
        assert_eq!(narrowed.dst().to_string(), "198.18.0.7/32");
    }

    #[test]
    fn a_route_prints_as_its_rule_with_flowspecs_action() {
        let flow = route("udp sport 123 to 198.18.0.1 rate-limit 8mbps");
        assert_eq!(
            Route::Flowspec(flow).to_string(),
            "flowspec to 198.18.0.1/32 udp sport 123 rate-limit 1000000 bytes/s"
        );
    }
}
