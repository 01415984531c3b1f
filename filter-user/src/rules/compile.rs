//! A rule set in the kernel's form: [`RuleEntry`]s, the buckets of the index and its bits
//! (see `filter_common`'s `rules` module). Checked against every kernel bound here, before
//! anything is written, so that a set that does not fit is refused whole.

use std::{collections::BTreeMap, net::IpAddr};

use filter_common::{
    BUCKET_ENTRIES, MAX_ENTRIES_PER_RULE, MAX_EXPANDED_PORTS, MAX_RULE_BUCKETS, MAX_RULE_ENTRIES,
    RULE_INDEX_WORDS, RULE_PAYLOAD_BYTES, RateParams, RuleBucket, RuleBucketKey, RuleEntry,
    SourceKey, bucket_kind, rule_bucket_position, rule_fields, rule_index_bit,
};

use super::{Action, PortRange, Rule, RuleError, RuleRate, RuleSpec, syntax};
use crate::{
    limits::{NS_PER_SEC, kernel::gcra_params},
    lists::Prefix,
};

/// Entries of one half of `FW_RULES`: a new set is written into the half the program does
/// not read, and the buckets then switch to it, so that no packet sees an entry half
/// written.
pub const HALF_ENTRIES: u32 = MAX_RULE_ENTRIES / 2;

/// The shortest burst of a rule's rate: the program clock's resolution is a tick.
const MIN_WINDOW_NS: u64 = 100_000_000;

/// A rule set in the kernel's form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compiled {
    /// Entries by index into `FW_RULES` (all in one half).
    pub entries: Vec<(u32, RuleEntry)>,
    /// The buckets.
    pub buckets: BTreeMap<RuleBucketKey, RuleBucket>,
    /// `FW_RULE_INDEX`.
    pub index: Vec<u64>,
    /// The half of `FW_RULES` and `FW_RULE_BUCKETS` the set goes into.
    pub half: u32,
}

impl Compiled {
    /// Each bucket with its position (its element of `FW_RULE_BUCKET_AT`) and its slot in
    /// `FW_RULE_BUCKETS` (in the set's half, in key order).
    pub fn placed(&self) -> impl Iterator<Item = (u32, u32, &RuleBucket)> {
        self.buckets
            .iter()
            .zip(0..)
            .filter_map(|((key, bucket), i)| {
                Some((
                    rule_bucket_position(*key)?,
                    self.half * MAX_RULE_BUCKETS + i,
                    bucket,
                ))
            })
    }
}

/// Compiles `rules` into entries in `half` (0 or 1) of `FW_RULES`.
///
/// # Errors
/// A rule that expands into more than [`MAX_ENTRIES_PER_RULE`] entries, a set of more than
/// [`HALF_ENTRIES`] entries, or a bucket of more than [`BUCKET_ENTRIES`] entries; the
/// message names the rules.
pub fn compile(rules: &[Rule], half: u32) -> Result<Compiled, RuleError> {
    let mut sorted: Vec<&Rule> = rules.iter().collect();
    sorted.sort_by_key(|r| r.rank());
    let mut out = Compiled {
        index: vec![0; RULE_INDEX_WORDS as usize],
        half,
        ..Compiled::default()
    };
    let mut owners: BTreeMap<RuleBucketKey, Vec<u32>> = BTreeMap::new();
    for (order, rule) in sorted.iter().enumerate() {
        let expanded = expand(&rule.spec);
        if expanded.len() > MAX_ENTRIES_PER_RULE {
            return Err(RuleError::Capacity(format!(
                "rule {} expands into {} kernel entries (protocols × source ports × destination \
                 ports), over {MAX_ENTRIES_PER_RULE}: use port ranges or split it",
                rule.id,
                expanded.len()
            )));
        }
        for (proto, sport, dport) in expanded {
            let index = u32::try_from(out.entries.len()).unwrap_or(u32::MAX);
            if index >= HALF_ENTRIES {
                return Err(RuleError::Capacity(format!(
                    "the rules need more than {HALF_ENTRIES} kernel entries: remove some, or \
                     merge rules that differ only in ports"
                )));
            }
            let at = half * HALF_ENTRIES + index;
            let entry = entry(
                rule,
                u32::try_from(order).unwrap_or(u32::MAX),
                proto,
                sport,
                dport,
            );
            for key in bucket_keys(proto, sport, dport) {
                let bucket = out.buckets.entry(key).or_default();
                let len = bucket.len as usize;
                let ids = owners.entry(key).or_default();
                if !ids.contains(&rule.id) {
                    ids.push(rule.id);
                }
                if len == BUCKET_ENTRIES {
                    return Err(RuleError::Capacity(format!(
                        "more than {BUCKET_ENTRIES} rule entries share {} (rules {}): merge \
                         some, e.g. into one rule with a port or prefix list",
                        describe(key),
                        ids.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                bucket.entries[len] = u16::try_from(at).unwrap_or(u16::MAX);
                bucket.len += 1;
                if let Some((word, bit)) = rule_index_bit(key)
                    && let Some(w) = out.index.get_mut(word as usize)
                {
                    *w |= bit;
                }
            }
            out.entries.push((at, entry));
        }
    }
    if out.buckets.len() > MAX_RULE_BUCKETS as usize {
        return Err(RuleError::Capacity(format!(
            "the rules fill {} kernel buckets (one for each protocol and single port they \
             name), over {MAX_RULE_BUCKETS}: name fewer single ports (a range wider than \
             {MAX_EXPANDED_PORTS} ports takes one bucket, its protocol's)",
            out.buckets.len()
        )));
    }
    Ok(out)
}

/// What a bucket holds, for messages.
fn describe(key: RuleBucketKey) -> String {
    let proto = match key.proto {
        syntax::TCP => "tcp".to_owned(),
        syntax::UDP => "udp".to_owned(),
        p => format!("protocol {p}"),
    };
    match key.kind {
        bucket_kind::DPORT => format!("{proto} dport {}", key.port),
        bucket_kind::SPORT => format!("{proto} sport {}", key.port),
        bucket_kind::PROTO => format!("{proto} with no single port"),
        _ => "no protocol".to_owned(),
    }
}

/// One entry for each protocol × source range × destination range the rule names.
fn expand(spec: &RuleSpec) -> Vec<(Option<u8>, Option<PortRange>, Option<PortRange>)> {
    let protos: Vec<Option<u8>> = if spec.protos.is_empty() {
        vec![None]
    } else {
        spec.protos.iter().copied().map(Some).collect()
    };
    let ranges = |list: &[PortRange]| -> Vec<Option<PortRange>> {
        if list.is_empty() {
            vec![None]
        } else {
            list.iter().copied().map(Some).collect()
        }
    };
    let (sports, dports) = (ranges(&spec.sports), ranges(&spec.dports));
    let mut out = Vec::new();
    for &p in &protos {
        for &s in &sports {
            for &d in &dports {
                out.push((p, s, d));
            }
        }
    }
    out
}

/// The buckets an entry goes into: a port bucket for each port of a narrow destination (or
/// else source) range, or its protocol's, or the any-protocol bucket.
fn bucket_keys(
    proto: Option<u8>,
    sport: Option<PortRange>,
    dport: Option<PortRange>,
) -> Vec<RuleBucketKey> {
    let Some(proto) = proto else {
        return vec![RuleBucketKey {
            kind: bucket_kind::ANY,
            proto: 0,
            port: 0,
        }];
    };
    let narrow = |r: Option<PortRange>| {
        r.filter(|r| u32::from(r.high) - u32::from(r.low) < MAX_EXPANDED_PORTS)
    };
    let ports = |kind, r: PortRange| {
        (r.low..=r.high)
            .map(|port| RuleBucketKey { kind, proto, port })
            .collect()
    };
    if let Some(r) = narrow(dport) {
        return ports(bucket_kind::DPORT, r);
    }
    if let Some(r) = narrow(sport) {
        return ports(bucket_kind::SPORT, r);
    }
    vec![RuleBucketKey {
        kind: bucket_kind::PROTO,
        proto,
        port: 0,
    }]
}

/// A prefix as key words and mask words (IPv4 mapped into IPv6, as the source table).
fn prefix_words(prefix: &Prefix) -> ([u64; 2], [u64; 2]) {
    let (addr, bits) = match prefix.addr() {
        IpAddr::V4(a) => (
            a.to_ipv6_mapped().octets(),
            96 + u32::from(prefix.prefix_len()),
        ),
        IpAddr::V6(a) => (a.octets(), u32::from(prefix.prefix_len())),
    };
    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
    (
        SourceKey::from_ipv6(addr).words(),
        SourceKey::from_ipv6(mask.to_be_bytes()).words(),
    )
}

/// GCRA parameters of a rate (zero cost: no limit), with a burst of a tenth of a second.
fn rate_params(rate: Option<u64>, unit_ns: u128) -> RateParams {
    match rate {
        None => RateParams::default(),
        Some(n) => {
            let (cost_fp, _) = gcra_params(unit_ns, n, n);
            let cost_ns = cost_fp >> filter_common::COST_SHIFT;
            RateParams {
                cost_fp,
                window_ns: MIN_WINDOW_NS.max(cost_ns),
            }
        }
    }
}

fn entry(
    rule: &Rule,
    order: u32,
    proto: Option<u8>,
    sport: Option<PortRange>,
    dport: Option<PortRange>,
) -> RuleEntry {
    let spec = &rule.spec;
    let mut e = RuleEntry {
        order,
        rule: rule.slot,
        action: spec.action.kernel() as u8,
        ..RuleEntry::default()
    };
    let mut set = |bit: u32| e.fields |= bit;
    if let Some(src) = &spec.src {
        set(rule_fields::SRC);
        (e.src, e.src_mask) = prefix_words(src);
    }
    if let Some(dst) = &spec.dst {
        set(rule_fields::DST);
        (e.dst, e.dst_mask) = prefix_words(dst);
    }
    if let Some(p) = proto {
        set(rule_fields::PROTO);
        e.proto = p;
    }
    if let Some(r) = sport {
        set(rule_fields::SPORT);
        e.sport = [r.low, r.high];
    }
    if let Some(r) = dport {
        set(rule_fields::DPORT);
        e.dport = [r.low, r.high];
    }
    if let Some(t) = spec.icmp_type {
        set(rule_fields::ICMP_TYPE);
        e.icmp_type = t;
    }
    if let Some(c) = spec.icmp_code {
        set(rule_fields::ICMP_CODE);
        e.icmp_code = c;
    }
    if let Some(f) = spec.tcp_flags {
        set(rule_fields::TCP_FLAGS);
        (e.tcp_flags, e.tcp_flags_mask) = (f.value, f.mask);
    }
    if let Some(r) = spec.length {
        set(rule_fields::LENGTH);
        e.length = [r.low, r.high];
    }
    if !spec.dscp.is_empty() {
        set(rule_fields::DSCP);
        e.dscp = spec.dscp.iter().fold(0, |bits, &d| bits | 1 << d);
    }
    if let Some(f) = spec.fragment {
        set(rule_fields::FRAGMENT);
        e.fragment = f;
    }
    if let Some(r) = spec.ttl {
        set(rule_fields::TTL);
        e.ttl = [r.low, r.high];
    }
    if let Some(known) = spec.known_source {
        set(rule_fields::SOURCE_KNOWN);
        e.source_known = u8::from(known);
    }
    if let Some(p) = &spec.payload {
        set(rule_fields::PAYLOAD);
        e.payload_offset = p.offset;
        let len = p.bytes.len().min(RULE_PAYLOAD_BYTES);
        e.payload_len = u8::try_from(len).unwrap_or(0);
        e.payload[..len].copy_from_slice(&p.bytes[..len]);
        e.payload_mask[..len].copy_from_slice(&p.mask[..len]);
    }
    let rate = match spec.action {
        Action::RateLimit(rate) | Action::PerSource(rate) => rate,
        _ => RuleRate::default(),
    };
    e.packet_rate = rate_params(rate.pps, NS_PER_SEC);
    // A byte costs 8 bit-times.
    e.byte_rate = rate_params(rate.bps, 8 * NS_PER_SEC);
    e
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::rules::Origin;

    fn rule(id: u32, priority: u16, text: &str) -> Rule {
        Rule {
            id,
            priority,
            spec: text.parse().expect("a valid rule"),
            comment: None,
            expires_ns: None,
            origin: Origin::Cli,
            slot: id,
        }
    }

    #[test]
    fn a_port_rule_goes_into_its_port_bucket_and_sets_its_bit() {
        let c = compile(&[rule(1, 100, "udp dport 53 drop")], 0).expect("compiles");
        let key = RuleBucketKey {
            kind: bucket_kind::DPORT,
            proto: 17,
            port: 53,
        };
        assert_eq!(c.buckets[&key].len, 1);
        let (word, bit) = rule_index_bit(key).expect("a bit");
        assert_eq!(c.index[word as usize], bit);
        assert_eq!(c.entries.len(), 1);
        assert_eq!(c.entries[0].1.dport, [53, 53]);
    }

    #[test]
    fn a_set_over_the_buckets_is_refused_and_a_set_that_fits_fills_its_half() {
        // A rule of 64 ranges of 16 ports each: 1,024 single-port buckets.
        let rule_of = |n: u32| {
            let ranges: Vec<String> = (0..64)
                .map(|i| {
                    let low = 1024 + 1024 * n + 16 * i;
                    format!("{low}-{}", low + 15)
                })
                .collect();
            rule(n + 1, 100, &format!("udp dport {} drop", ranges.join(",")))
        };
        let rules: Vec<Rule> = (0..9).map(rule_of).collect();
        let err = compile(&rules, 0).expect_err("9,216 buckets");
        assert!(
            err.to_string().contains("9216 kernel buckets") && err.to_string().contains("8192"),
            "{err}"
        );
        let c = compile(&rules[..8], 1).expect("8,192 buckets fit");
        let placed: Vec<(u32, u32, &RuleBucket)> = c.placed().collect();
        assert_eq!(placed.len(), 8192);
        let (positions, slots): (BTreeSet<u32>, BTreeSet<u32>) =
            placed.iter().map(|&(p, s, _)| (p, s)).unzip();
        assert_eq!((positions.len(), slots.len()), (8192, 8192));
        assert!(
            slots
                .iter()
                .all(|s| (MAX_RULE_BUCKETS..2 * MAX_RULE_BUCKETS).contains(s))
        );
        for (position, _, bucket) in placed {
            let (word, bit) = filter_common::index_bit_at(position);
            assert_ne!(c.index[word as usize] & bit, 0, "position {position}");
            assert_eq!(bucket.len, 1);
        }
    }

    #[test]
    fn lists_expand_and_wide_ranges_go_to_the_protocol_bucket() {
        let c = compile(
            &[rule(1, 100, "proto tcp,udp sport 123,1024-65535 drop")],
            1,
        )
        .expect("compiles");
        assert_eq!(c.entries.len(), 4);
        assert!(c.entries.iter().all(|(at, _)| *at >= HALF_ENTRIES));
        assert!(c.buckets.contains_key(&RuleBucketKey {
            kind: bucket_kind::SPORT,
            proto: 6,
            port: 123
        }));
        assert!(c.buckets.contains_key(&RuleBucketKey {
            kind: bucket_kind::PROTO,
            proto: 17,
            port: 0
        }));
    }

    #[test]
    fn buckets_are_in_priority_then_id_order() {
        let c = compile(
            &[
                rule(3, 100, "udp dport 53 drop"),
                rule(1, 200, "udp dport 53 len 100-200 drop"),
                rule(2, 100, "udp dport 53 monitor"),
            ],
            0,
        )
        .expect("compiles");
        let bucket = c.buckets.values().next().expect("one bucket");
        let slots: Vec<u32> = bucket.entries[..bucket.len as usize]
            .iter()
            .map(|&i| {
                c.entries
                    .iter()
                    .find(|(at, _)| *at == u32::from(i))
                    .expect("entry")
                    .1
                    .rule
            })
            .collect();
        assert_eq!(slots, [2, 3, 1]);
    }

    #[test]
    fn a_full_bucket_is_refused_naming_it() {
        let rules: Vec<Rule> = (0..=u32::try_from(BUCKET_ENTRIES).expect("small"))
            .map(|i| rule(i, 100, &format!("udp dport 53 len {} drop", i + 1)))
            .collect();
        let e = compile(&rules, 0).expect_err("over the bucket");
        assert!(e.to_string().contains("udp dport 53"), "{e}");
    }

    #[test]
    fn prefixes_become_mapped_words_and_masks() {
        let c = compile(&[rule(1, 1, "from 198.18.0.0/15 drop")], 0).expect("compiles");
        let e = c.entries[0].1;
        let (key, mask) = prefix_words(&"198.18.0.0/15".parse().expect("prefix"));
        assert_eq!((e.src, e.src_mask), (key, mask));
        assert_eq!(
            SourceKey::from_ipv4([198, 19, 1, 2]).words()[1] & mask[1],
            key[1]
        );
        assert_ne!(
            SourceKey::from_ipv4([198, 20, 1, 2]).words()[1] & mask[1],
            key[1]
        );
    }
}
