//! Stage: rules by packet shape, a program of its own (`filter_common::RULES_PROGRAM_NAME`)
//! that the main program tail-calls for a packet one of whose index buckets holds entries,
//! after it found those buckets and kept the packet's shape for it ([`keep_shape`]). It
//! finds the first rule that matches ([`first_match`]), counts it, and applies its action; what the action leaves undecided goes on to the rest of the policy,
//! a program of its own (`filter_common::AFTER_RULES_PROGRAM_NAME`) that the stage
//! tail-calls ([`go_on`]).
//!
//! The index and the entries are `filter_common`'s `rules` module; the daemon compiles
//! operators' rules into them.

use aya_ebpf::{
    bindings::{
        BPF_NOEXIST,
        xdp_action::{XDP_DROP, XDP_PASS},
    },
    helpers::generated::bpf_xdp_load_bytes,
    programs::XdpContext,
};
use filter_common::{
    COST_SHIFT, COUNTER_SLOTS, KnownSourceKey, LimitsConfig, Mode, NO_RULE, Outcome,
    RULE_PAYLOAD_BYTES, RuleAction, RuleBucket, RuleBucketKey, RuleEntry, RuleSourceKey,
    RuleSourceState, SourceKey, bucket_kind, index_bit_at, rule_bucket_position, rule_fields,
};

use crate::{
    atomic, gcra,
    maps::{
        self, FW_KNOWN_SOURCES, FW_RULE_BUCKET_AT, FW_RULE_BUCKETS, FW_RULE_INDEX, FW_RULE_RATES,
        FW_RULE_SOURCES, FW_RULE_STATS, FW_RULES, FW_SHAPE, FW_STAGES,
    },
    packet::Packet,
    parse::{self, IndexKeys, L4_ICMP, L4_PORTS, L4_TCP, Shape, Source},
    sample,
};

/// The positions of the packet's four buckets (`filter_common::rule_bucket_position`), most
/// specific first; [`NO_BUCKET`] for a bucket it cannot have (a port bucket of a packet
/// without ports, or of a protocol without them). Computed as numbers, not built as keys on
/// the stack: a key written a byte at a time and read back as a word stalls the load.
#[inline(always)]
fn bucket_positions(s: &IndexKeys) -> [u32; 4] {
    let ports = s.l4 & L4_PORTS != 0;
    let position = |kind, port| {
        let key = RuleBucketKey {
            kind: if ports { kind } else { bucket_kind::NONE },
            proto: s.proto,
            port,
        };
        rule_bucket_position(key).unwrap_or(NO_BUCKET)
    };
    let any = RuleBucketKey {
        kind: bucket_kind::ANY,
        proto: 0,
        port: 0,
    };
    let proto = RuleBucketKey {
        kind: bucket_kind::PROTO,
        proto: s.proto,
        port: 0,
    };
    [
        position(bucket_kind::DPORT, s.dport),
        position(bucket_kind::SPORT, s.sport),
        rule_bucket_position(proto).unwrap_or(NO_BUCKET),
        rule_bucket_position(any).unwrap_or(NO_BUCKET),
    ]
}

/// What [`bucket_positions`] gives for a bucket the packet cannot have: its index bit is
/// never set.
const NO_BUCKET: u32 = u32::MAX;

/// Whether the bucket at `position` holds entries: its bit in `FW_RULE_INDEX` is set.
#[inline(always)]
fn indexed(position: u32) -> bool {
    let (word, bit) = index_bit_at(position);
    FW_RULE_INDEX.get(word).is_some_and(|w| w & bit != 0)
}

/// Tail-calls the rules stage's program. Returns only if that program is not in its slot;
/// the packet then goes on without rules.
#[inline(always)]
pub fn enter(pkt: &Packet) {
    // SAFETY: the context is this run's; a tail call that succeeds does not return.
    unsafe { FW_STAGES.tail_call(pkt.ctx, maps::rules_slot()) };
}

/// Tail-calls the program of the policy after the rules
/// (`filter_common::AFTER_RULES_PROGRAM_NAME`). Returns only if it is not in its slot.
#[inline(always)]
fn go_on(ctx: &XdpContext) {
    // SAFETY: the context is this run's; a tail call that succeeds does not return.
    unsafe { FW_STAGES.tail_call(ctx, maps::after_rules_slot()) };
}

/// Keeps the packet's shape in this CPU's `FW_SHAPE` for the rules stage, which then
/// matches on it without parsing the frame again; returns which of its buckets
/// ([`bucket_positions`]) hold entries (bit `i`: bucket `i`; four array reads), which the
/// main program keeps in its copy of the parser's results: the packet enters the stage if
/// any does, and the stage does not read the index again. Called by the main program
/// while there are rules, for every IP packet, before the policy. The IP header's fields
/// of the shape are read here, only for a packet that enters (see `parse::Shape`); one
/// whose header cannot be read again (not reached: the parser read it) does not enter.
#[inline(always)]
pub fn keep_shape(ctx: &XdpContext, source: &Source) -> u32 {
    let mut buckets = 0;
    for (i, position) in bucket_positions(&source.shape.index())
        .into_iter()
        .enumerate()
    {
        if indexed(position) {
            buckets |= 1 << i;
        }
    }
    if buckets == 0 {
        return 0;
    }
    let Some(kept) = FW_SHAPE.get_ptr_mut(0) else {
        return 0;
    };
    // Completed on the stack and stored whole: filled in place in the map, the shape had
    // the verifier walk a third more of the main program.
    let mut shape = source.shape;
    if !parse::ip_fields_into(ctx, source.at.l3, source.v4, &mut shape) {
        return 0;
    }
    // SAFETY: this CPU's element of a per-CPU array; XDP runs with preemption disabled.
    unsafe { *kept = shape };
    buckets
}

/// The rules stage's program: decides the rules from the copies the main program left in
/// this CPU's maps (the parser's results and the packet's shape, [`Seen`]), and counts the
/// outcome, or tail-calls the rest of the policy ([`go_on`]) for a packet the rules leave
/// undecided.
#[inline(always)]
pub fn stage(ctx: &XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let (Some(parsed), Some(shape), Some(limits)) =
        (maps::parsed(), FW_SHAPE.get(0), maps::limits())
    else {
        // One-element arrays: not reached. Pass, as the policy would.
        return XDP_PASS;
    };
    // SAFETY: this CPU's element of a per-CPU array, which the main program wrote before
    // the tail call; nothing else writes it meanwhile.
    let parsed = unsafe { &*parsed };
    let seen = Seen {
        key: parsed.key,
        shape,
        buckets: parsed.rule_buckets,
        len,
        class: parsed.class,
    };
    let now = maps::now_ns(limits);
    match decide(ctx, &seen, limits, now) {
        Some((outcome, rule_slot)) => {
            // Dropped or allowed by a rule: never `Passed`, which `judge` would count as
            // malformed for a truncated header.
            maps::count_at(seen.class * COUNTER_SLOTS + outcome as u32, seen.len);
            if parsed.sample_due {
                sample::take(ctx, seen.class, outcome as u32, rule_slot);
            }
            if outcome.is_drop() {
                XDP_DROP
            } else {
                XDP_PASS
            }
        }
        None => {
            go_on(ctx);
            // The after-rules program is not in its slot: pass, as with no policy.
            maps::count_at(
                seen.class * COUNTER_SLOTS + Outcome::Passed as u32,
                seen.len,
            );
            if parsed.sample_due {
                sample::take(ctx, seen.class, Outcome::Passed as u32, NO_RULE);
            }
            XDP_PASS
        }
    }
}

/// What the rules match a packet on, and what its count needs: read from the copies the
/// main program wrote into this CPU's maps (`FW_PARSED`, `FW_SHAPE`).
///
/// The stage works from those copies, not from a parser's values: read back from a map,
/// every field is a number the verifier knows nothing about, so the parser's many exits
/// (one for each header layout and class, each with its own exact values) are one state
/// before the bucket walks. Worked from the parser's values, each exit was walked through
/// every bucket, over the verifier's 1,000,000 instructions.
struct Seen<'a> {
    key: SourceKey,
    shape: &'a Shape,
    /// Which of the packet's buckets hold entries, as the main program found
    /// ([`keep_shape`]).
    buckets: u32,
    len: u64,
    class: u32,
}

/// The outcome of the first matching rule's action and that rule's slot, or `None` where it
/// leaves the packet to the rest of the policy (no rule matched, `monitor`, or under a
/// rule's rate).
#[inline(always)]
fn decide(
    ctx: &XdpContext,
    seen: &Seen,
    limits: &LimitsConfig,
    now: u64,
) -> Option<(Outcome, u32)> {
    let entry = first_match(ctx, seen)?;
    let counters = FW_RULE_STATS.get_ptr_mut(entry.rule);
    if let Some(c) = counters {
        // SAFETY: this CPU's element of a per-CPU array.
        unsafe {
            (*c).matched_packets += 1;
            (*c).matched_bytes += seen.len;
            if (*c).first_ns == 0 {
                (*c).first_ns = now;
            }
            (*c).last_ns = now;
        }
    }
    let monitor = limits.mode == Mode::Monitor as u32
        || limits.monitor_classes & (1 << (seen.class & 31)) != 0;
    let drop_as = |dropped, monitored| if monitor { monitored } else { dropped };
    let dropped = match RuleAction::try_from(entry.action) {
        Ok(RuleAction::Drop) => drop_as(Outcome::DroppedRule, Outcome::MonitorRule),
        Ok(RuleAction::Allow) => return Some((Outcome::AllowedRule, entry.rule)),
        Ok(RuleAction::RateLimit) if over_rate(seen, entry, now) => {
            drop_as(Outcome::DroppedRuleRate, Outcome::MonitorRuleRate)
        }
        Ok(RuleAction::PerSource) if over_source_rate(seen, entry, limits, now) => {
            drop_as(Outcome::DroppedRuleRate, Outcome::MonitorRuleRate)
        }
        _ => return None,
    };
    if let Some(c) = counters {
        // SAFETY: as above.
        unsafe {
            (*c).dropped_packets += 1;
            (*c).dropped_bytes += seen.len;
        }
    }
    Some((dropped, entry.rule))
}

/// The entry of the earliest rule that matches, of the packet's buckets.
#[inline(always)]
fn first_match(ctx: &XdpContext, seen: &Seen) -> Option<&'static RuleEntry> {
    let mut best: Option<&'static RuleEntry> = None;
    for (i, position) in bucket_positions(&seen.shape.index())
        .into_iter()
        .enumerate()
    {
        // The main program read the index: its bits are not read again.
        if seen.buckets & (1 << i) == 0 {
            continue;
        }
        // Two array reads, each inlined by the verifier: the bucket's slot at its position,
        // then the bucket. The daemon writes a bucket into a slot nothing points to and
        // then switches the position (one word), so this is the old bucket or the new one.
        let Some(bucket) = FW_RULE_BUCKET_AT
            .get(position)
            .and_then(|&slot| FW_RULE_BUCKETS.get(slot))
        else {
            continue;
        };
        let before = best.map_or(u32::MAX, |entry| entry.order);
        if let Some(found) = first_in(ctx, seen, bucket, before) {
            best = Some(found);
        }
    }
    best
}

/// The first entry of `bucket` that matches and comes before `before`.
///
/// Inlined: a BPF-to-BPF call is costly on machines whose returns go through a mitigation
/// thunk, and every packet a rule decides made this one (the README's Performance section
/// has the measurement, `cargo xtask bench`'s 1,000th rule's case).
#[inline(always)]
fn first_in(
    ctx: &XdpContext,
    seen: &Seen,
    bucket: &RuleBucket,
    before: u32,
) -> Option<&'static RuleEntry> {
    for (i, &index) in bucket.entries.iter().enumerate() {
        if i >= bucket.len as usize {
            break;
        }
        let entry = FW_RULES.get(u32::from(index))?;
        // The bucket is in rule order: nothing further in it comes before `before`.
        if entry.order >= before {
            break;
        }
        if matches(ctx, seen, entry) {
            return Some(entry);
        }
    }
    None
}

/// Whether the packet has everything `e` names.
#[inline(always)]
fn matches(ctx: &XdpContext, seen: &Seen, e: &RuleEntry) -> bool {
    let (s, f) = (&seen.shape, e.fields);
    let has = |bit: u32| f & bit != 0;
    let within = |v: u16, range: [u16; 2]| range[0] <= v && v <= range[1];
    if has(rule_fields::SRC) && !masked_equal(seen.key.words(), e.src_mask, e.src) {
        return false;
    }
    if has(rule_fields::DST) && !masked_equal(s.dst.words(), e.dst_mask, e.dst) {
        return false;
    }
    if has(rule_fields::PROTO) && s.proto != e.proto {
        return false;
    }
    if has(rule_fields::SPORT | rule_fields::DPORT)
        && (s.l4 & L4_PORTS == 0
            || (has(rule_fields::SPORT) && !within(s.sport, e.sport))
            || (has(rule_fields::DPORT) && !within(s.dport, e.dport)))
    {
        return false;
    }
    if has(rule_fields::ICMP_TYPE | rule_fields::ICMP_CODE)
        && (s.l4 & L4_ICMP == 0
            || (has(rule_fields::ICMP_TYPE) && s.icmp_type != e.icmp_type)
            || (has(rule_fields::ICMP_CODE) && s.icmp_code != e.icmp_code))
    {
        return false;
    }
    if has(rule_fields::TCP_FLAGS)
        && (s.l4 & L4_TCP == 0 || s.tcp_flags & e.tcp_flags_mask != e.tcp_flags)
    {
        return false;
    }
    if has(rule_fields::LENGTH) && !within(s.ip_len, e.length) {
        return false;
    }
    if has(rule_fields::DSCP) && (e.dscp >> (s.dscp & 63)) & 1 == 0 {
        return false;
    }
    if has(rule_fields::FRAGMENT) && s.fragment & e.fragment == 0 {
        return false;
    }
    if has(rule_fields::TTL) && !(e.ttl[0] <= s.ttl && s.ttl <= e.ttl[1]) {
        return false;
    }
    if has(rule_fields::SOURCE_KNOWN) && known_source(seen) != (e.source_known != 0) {
        return false;
    }
    !has(rule_fields::PAYLOAD) || payload_matches(ctx, s, e)
}

/// Whether the daemon's baseline saw the packet's source use the packet's service.
/// Inlined, as [`payload_matches`] (see there).
#[inline(always)]
fn known_source(seen: &Seen) -> bool {
    let s = &seen.shape;
    let key = KnownSourceKey {
        addr: seen.key.addr,
        port: if s.l4 & L4_PORTS != 0 { s.dport } else { 0 },
        proto: s.proto,
        pad: 0,
    };
    // SAFETY: the value is a plain byte; only its presence is read.
    unsafe { FW_KNOWN_SOURCES.get(&key) }.is_some()
}

/// Whether `words` under `mask` equal `want` (which is masked already).
#[inline(always)]
fn masked_equal(words: [u64; 2], mask: [u64; 2], want: [u64; 2]) -> bool {
    words[0] & mask[0] == want[0] && words[1] & mask[1] == want[1]
}

/// Whether the payload bytes `e` compares are in the frame and equal its own under its
/// mask. Read with `bpf_xdp_load_bytes`, which checks the bounds at a variable offset.
///
/// Inlined into each of the bucket walk's rounds, not a BPF-to-BPF call, for the reason
/// [`first_in`] is; LLVM shares the rounds' stack, and the verifier walks the rules program
/// in well under half its budget (test `every_program_leaves_the_verifier_half_its_budget`).
#[inline(always)]
fn payload_matches(ctx: &XdpContext, s: &Shape, e: &RuleEntry) -> bool {
    if s.payload_at == 0 {
        return false;
    }
    let len = e.payload_len;
    if len == 0 || usize::from(len) > RULE_PAYLOAD_BYTES {
        return false;
    }
    // 1 to 16 in a form the verifier can follow (it loses the checks above across the
    // registers LLVM picks, and refuses a length that may be zero).
    let len = (u32::from(len) - 1) % 16 + 1;
    // Zeroed with two stores LLVM keeps: a plain `[0; 2]` it made into a call of a
    // `memset` of its own, a BPF-to-BPF call for every payload compared.
    let mut words = core::mem::MaybeUninit::<[u64; 2]>::uninit();
    let words = {
        let at = words.as_mut_ptr().cast::<u64>();
        // SAFETY: both words lie inside `words`; once written, it is initialized.
        unsafe {
            core::ptr::write_volatile(at, 0);
            core::ptr::write_volatile(at.add(1), 0);
            words.assume_init_mut()
        }
    };
    let at = u32::from(s.payload_at) + u32::from(e.payload_offset);
    // SAFETY: `len` bytes of stack (at most its 16); the helper checks the frame's bounds.
    let loaded = unsafe { bpf_xdp_load_bytes(ctx.ctx, at, words.as_mut_ptr().cast(), len) };
    if loaded != 0 {
        return false;
    }
    // The entry's bytes as words, read in place from the map value.
    let word = |bytes: &[u8; RULE_PAYLOAD_BYTES], i: usize| {
        // SAFETY: `i` is 0 or 1: both words lie inside the 16 bytes.
        unsafe { core::ptr::read_unaligned(bytes.as_ptr().add(8 * i).cast::<[u8; 8]>()) }
    };
    masked_equal(
        *words,
        [
            u64::from_ne_bytes(word(&e.payload_mask, 0)),
            u64::from_ne_bytes(word(&e.payload_mask, 1)),
        ],
        [
            u64::from_ne_bytes(word(&e.payload, 0)),
            u64::from_ne_bytes(word(&e.payload, 1)),
        ],
    )
}

/// Charges a `rate-limit` rule's shared TATs; whether the packet is over either rate (it
/// is then not charged).
#[inline(always)]
fn over_rate(seen: &Seen, e: &RuleEntry, now: u64) -> bool {
    let Some(state) = FW_RULE_RATES.get_ptr_mut(e.rule) else {
        return false;
    };
    // SAFETY: a pointer from a successful lookup into an array; the fields are aligned u64s.
    unsafe {
        charge_both(
            seen,
            e,
            now,
            &raw mut (*state).packet_tat_ns,
            &raw mut (*state).byte_tat_ns,
        )
    }
}

/// Charges the packet and byte TATs with `take` (the excess is not charged); whether
/// either is over.
///
/// # Safety
/// Both must point to aligned `u64`s in live map values.
#[inline(always)]
unsafe fn charge_both(
    seen: &Seen,
    e: &RuleEntry,
    now: u64,
    packets: *mut u64,
    bytes: *mut u64,
) -> bool {
    let packet_cost = e.packet_rate.cost_fp >> COST_SHIFT;
    // SAFETY: the caller guarantees both pointers.
    unsafe {
        if packet_cost != 0 && gcra::take(packets, now, packet_cost, e.packet_rate.window_ns) {
            return true;
        }
        if e.byte_rate.cost_fp != 0 {
            let cost = (seen.len * e.byte_rate.cost_fp) >> COST_SHIFT;
            if gcra::take(bytes, now, cost, e.byte_rate.window_ns) {
                if packet_cost != 0 {
                    // Give the packet's cost back too: it does not pass.
                    atomic::add(packets, packet_cost.wrapping_neg());
                }
                return true;
            }
        }
    }
    false
}

/// Charges the source's TATs under a `per-source` rule; whether the packet is over them
/// or the source is blocked under the rule. A source that goes over is blocked, under
/// this rule only, for the block time of the limits.
#[inline(always)]
fn over_source_rate(seen: &Seen, e: &RuleEntry, limits: &LimitsConfig, now: u64) -> bool {
    let key = RuleSourceKey {
        addr: seen.key.addr,
        rule: e.rule,
        pad: 0,
    };
    let state = match FW_RULE_SOURCES.get_ptr_mut(&key) {
        Some(state) => state,
        None => {
            let fresh = RuleSourceState {
                packet_tat_ns: now,
                byte_tat_ns: now,
                blocked_until_ns: 0,
            };
            // A full map evicts its least recently used source; a failed insert lets the
            // packet through this rule (fail open, as the source table).
            let _ = FW_RULE_SOURCES.insert(&key, &fresh, u64::from(BPF_NOEXIST));
            match FW_RULE_SOURCES.get_ptr_mut(&key) {
                Some(state) => state,
                None => return false,
            }
        }
    };
    // SAFETY: a pointer from a successful lookup; the fields are aligned u64s.
    unsafe {
        let until = (*state).blocked_until_ns;
        if until > now {
            return true;
        }
        if charge_both(
            seen,
            e,
            now,
            &raw mut (*state).packet_tat_ns,
            &raw mut (*state).byte_tat_ns,
        ) {
            (*state).blocked_until_ns = now + limits.block_ns;
            (*state).packet_tat_ns = now;
            (*state).byte_tat_ns = now;
            return true;
        }
    }
    false
}
