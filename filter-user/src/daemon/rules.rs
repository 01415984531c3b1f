//! The daemon's rules: adopted from the pinned state, changed by requests and reloads all
//! or nothing, expired, and watched for their first match.

use std::{collections::BTreeSet, net::IpAddr};

use anyhow::anyhow;
use log::info;

use super::{Shared, lock};
use crate::{
    control::{EventKind, EventRecord, Response, RuleView, SourceView},
    maps::monotonic_now_ns,
    rules::{Action, NewRule, Origin, Rule, RuleError, RuleMaps, RuleSet, TestPacket, parse_hex},
};

/// A daemon's rules and their maps.
pub(super) struct RulesState {
    set: RuleSet,
    maps: RuleMaps,
    /// Rules seen matching, for the first-match event.
    matched: BTreeSet<u32>,
    /// Sources seen blocked under `per-source` rules (source, rule slot), for the block
    /// event.
    blocked: BTreeSet<(IpAddr, u32)>,
}

impl RulesState {
    /// The rules a daemon before left in the pinned maps (none in fresh ones), with the
    /// config file's `rules` applied over them.
    pub(super) fn start(maps: RuleMaps, config: &[NewRule], now_ns: u64) -> anyhow::Result<Self> {
        let adopted = maps.recorded()?;
        let mut state = Self {
            set: RuleSet::from_rules(adopted),
            maps,
            matched: BTreeSet::new(),
            // Blocks a daemon before saw are not announced again.
            blocked: BTreeSet::new(),
        };
        state.blocked = state
            .maps
            .blocked_sources(now_ns)
            .into_iter()
            .map(|(addr, slot, _)| (addr, slot))
            .collect();
        for rule in state.set.rules() {
            if state.maps.counters(rule.slot)?.matched_packets > 0 {
                state.matched.insert(rule.id);
            }
        }
        state.replace_config(config, now_ns)?;
        Ok(state)
    }

    /// The signatures in force: their ids and what they match.
    pub(super) fn signatures(&self) -> Vec<(u32, crate::rules::RuleSpec)> {
        self.set
            .rules()
            .iter()
            .filter(|r| r.origin == crate::rules::Origin::Signature)
            .map(|r| (r.id, r.spec.clone()))
            .collect()
    }

    /// The rules of one origin.
    pub(super) fn of_origin(&self, origin: Origin) -> Vec<Rule> {
        self.set
            .rules()
            .iter()
            .filter(|r| r.origin == origin)
            .cloned()
            .collect()
    }

    /// What rule `id` matches and does, if there is one.
    pub(super) fn spec(&self, id: u32) -> Option<crate::rules::RuleSpec> {
        self.set.get(id).map(|r| r.spec.clone())
    }

    /// Whether any rule is loaded (the program's `RULES` flag).
    pub(super) fn any(&self) -> bool {
        !self.set.rules().is_empty()
    }

    /// Makes the config file's rules exactly `config`: rules of the file that are no longer
    /// in it go, new ones come; the others keep their ids and counters. Returns the lines
    /// that say what changed.
    pub(super) fn replace_config(
        &mut self,
        config: &[NewRule],
        now_ns: u64,
    ) -> Result<Vec<String>, RuleError> {
        let same = |r: &Rule, n: &NewRule| {
            r.spec == n.spec && r.priority == n.priority && r.comment == n.comment
        };
        let gone: Vec<u32> = self
            .set
            .rules()
            .iter()
            .filter(|r| r.origin == Origin::Config && !config.iter().any(|n| same(r, n)))
            .map(|r| r.id)
            .collect();
        let new: Vec<NewRule> = config
            .iter()
            .filter(|n| {
                !self
                    .set
                    .rules()
                    .iter()
                    .any(|r| r.origin == Origin::Config && same(r, n))
            })
            .cloned()
            .collect();
        let mut next = self.set.clone();
        let mut lines = Vec::new();
        if !gone.is_empty() {
            next = next.with_removed(&gone)?;
            lines.extend(
                gone.iter()
                    .map(|id| format!("rule {id} removed (not in the config)")),
            );
        }
        if !new.is_empty() {
            let (added, ids) = next.with_added(&new, now_ns)?;
            next = added;
            lines.extend(ids.iter().map(|id| {
                let rule = next.get(*id).map_or(String::new(), |r| r.spec.to_string());
                format!("rule {id} added from the config: {rule}")
            }));
        }
        if next != self.set {
            self.commit(next)?;
        }
        Ok(lines)
    }

    /// Writes `next` and keeps it.
    fn commit(&mut self, next: RuleSet) -> Result<(), RuleError> {
        self.maps.write(&self.set, &next)?;
        self.matched.retain(|id| next.get(*id).is_some());
        self.set = next;
        Ok(())
    }

    /// The rules with their counters, by priority then id.
    pub(super) fn views(&self, now_ns: u64) -> anyhow::Result<Vec<RuleView>> {
        let mut rules: Vec<&Rule> = self.set.rules().iter().collect();
        rules.sort_by_key(|r| r.rank());
        rules
            .into_iter()
            .map(|r| Ok(RuleView::new(r, &self.maps.counters(r.slot)?, now_ns)))
            .collect()
    }
}

/// Adds rules, all or nothing; their ids. Says nothing (the caller does).
pub(super) fn add_quietly(shared: &Shared, new: &[NewRule], now: u64) -> anyhow::Result<Vec<u32>> {
    let ids = {
        let mut state = lock(&shared.rules);
        let (next, ids) = state.set.with_added(new, now)?;
        state.commit(next)?;
        ids
    };
    shared.sync_list_presence()?;
    Ok(ids)
}

/// Moves rule `id`'s expiry to `expires_ns`. Says nothing (the caller does).
pub(super) fn set_expiry_quietly(shared: &Shared, id: u32, expires_ns: u64) -> anyhow::Result<()> {
    let mut state = lock(&shared.rules);
    let next = state.set.with_expiry(id, expires_ns)?;
    state.commit(next)?;
    Ok(())
}

/// Removes rules, all or nothing. Says nothing (the caller does).
pub(super) fn remove_quietly(shared: &Shared, ids: &[u32]) -> anyhow::Result<()> {
    {
        let mut state = lock(&shared.rules);
        let next = state.set.with_removed(ids)?;
        state.commit(next)?;
    }
    shared.sync_list_presence()
}

/// Adds rules, all or nothing.
pub(super) fn add(shared: &Shared, new: &[NewRule]) -> anyhow::Result<Response> {
    let ids = add_quietly(shared, new, monotonic_now_ns()?)?;
    for id in &ids {
        let text = lock(&shared.rules)
            .set
            .get(*id)
            .map_or(String::new(), |r| r.spec.to_string());
        note(shared, *id, format!("rule {id} added: {text}"));
    }
    Ok(Response::RulesChanged {
        added: ids,
        removed: Vec::new(),
        kept: Vec::new(),
    })
}

/// Removes rules, all or nothing.
pub(super) fn remove(shared: &Shared, ids: &[u32]) -> anyhow::Result<Response> {
    remove_quietly(shared, ids)?;
    for id in ids {
        note(shared, *id, format!("rule {id} removed"));
    }
    Ok(Response::RulesChanged {
        added: Vec::new(),
        removed: ids.to_vec(),
        kept: Vec::new(),
    })
}

/// Keeps signatures as the operator's rules, all or nothing; the detector lets go of them.
/// The detector's lock is taken first, as its second does (it withdraws rules under it), so
/// that it cannot withdraw a rule between the change and its letting go.
pub(super) fn keep(shared: &Shared, ids: &[u32], for_ms: Option<u64>) -> anyhow::Result<Response> {
    {
        let mut detector = lock(&shared.detector);
        {
            let mut state = lock(&shared.rules);
            let next = state.set.with_kept(ids, for_ms, monotonic_now_ns()?)?;
            state.commit(next)?;
        }
        detector.let_go(ids, std::time::SystemTime::now());
    }
    let how = for_ms.map_or_else(
        || "lasting".to_owned(),
        |ms| {
            format!(
                "for {}",
                humantime::format_duration(std::time::Duration::from_millis(ms))
            )
        },
    );
    for id in ids {
        note(
            shared,
            *id,
            format!("rule {id} kept as the operator's own ({how}): no longer withdrawn"),
        );
    }
    Ok(Response::RulesChanged {
        added: Vec::new(),
        removed: Vec::new(),
        kept: ids.to_vec(),
    })
}

/// Packets matched so far by each of the rules `ids` that exist, by id.
pub(super) fn matched_packets(
    shared: &Shared,
    ids: &BTreeSet<u32>,
) -> anyhow::Result<std::collections::BTreeMap<u32, u64>> {
    let state = lock(&shared.rules);
    let mut matched = std::collections::BTreeMap::new();
    for rule in state.set.rules().iter().filter(|r| ids.contains(&r.id)) {
        matched.insert(rule.id, state.maps.counters(rule.slot)?.matched_packets);
    }
    Ok(matched)
}

/// Every rule with its counters, by priority.
pub(super) fn views(shared: &Shared) -> anyhow::Result<Vec<RuleView>> {
    lock(&shared.rules).views(monotonic_now_ns()?)
}

/// The rules and their counters; with `id`, that rule only.
pub(super) fn list(shared: &Shared, id: Option<u32>) -> anyhow::Result<Response> {
    let now = monotonic_now_ns()?;
    let mut rules = lock(&shared.rules).views(now)?;
    if let Some(id) = id {
        rules.retain(|r| r.id == id);
        if rules.is_empty() {
            return Err(RuleError::UnknownId(id).into());
        }
    }
    Ok(Response::Rules { rules })
}

/// The rule a described packet would meet.
pub(super) fn test(shared: &Shared, packet: &str) -> anyhow::Result<Response> {
    let described: TestPacket = packet.parse().map_err(|e| anyhow!("`{packet}`: {e}"))?;
    first_match(shared, &described, packet.to_owned())
}

/// The rule a captured frame (hex) would meet; the answer describes the packet in words,
/// with `source known` where the baseline knows its source for its service (as the kernel
/// reads `FW_KNOWN_SOURCES`, which the daemon writes from the baseline).
pub(super) fn test_frame(shared: &Shared, frame: &str) -> anyhow::Result<Response> {
    let bytes = parse_hex(frame)?;
    let mut packet = TestPacket::from_frame(&bytes)?;
    packet.known_source = lock(&shared.detector)
        .baseline
        .knows(&crate::traffic::baseline::Service::of(&packet), packet.src);
    first_match(shared, &packet, packet.to_string())
}

/// The rule `packet` would meet, as the answer to `rules test`.
fn first_match(shared: &Shared, packet: &TestPacket, words: String) -> anyhow::Result<Response> {
    let now = monotonic_now_ns()?;
    let state = lock(&shared.rules);
    let rule = match state.set.first_match(packet) {
        Some(rule) => Some(RuleView::new(rule, &state.maps.counters(rule.slot)?, now)),
        None => None,
    };
    Ok(Response::RuleTest {
        packet: words,
        rule,
    })
}

/// Once a sample: removes expired rules, and records each rule's first match.
pub(super) fn tick(shared: &Shared, now_ns: u64) -> anyhow::Result<()> {
    let (expired, first, new_blocks) = {
        let mut state = lock(&shared.rules);
        let expired = state.set.expired(now_ns);
        if !expired.is_empty() {
            let next = state
                .set
                .with_removed(&expired)
                .map_err(|e| anyhow!("cannot expire rules: {e}"))?;
            state.commit(next)?;
        }
        let mut first = Vec::new();
        for rule in state.set.rules() {
            if !state.matched.contains(&rule.id)
                && state.maps.counters(rule.slot)?.matched_packets > 0
            {
                first.push((rule.id, rule.spec.to_string()));
            }
        }
        state.matched.extend(first.iter().map(|(id, _)| *id));
        // The walk reads the whole per-source map (up to 65,536 entries): only while a
        // `per-source` rule can have filled it.
        let per_source = state
            .set
            .rules()
            .iter()
            .any(|r| matches!(r.spec.action, Action::PerSource(_)));
        let blocks = if per_source {
            state.maps.blocked_sources(now_ns)
        } else {
            Vec::new()
        };
        let now_blocked: BTreeSet<(IpAddr, u32)> = blocks
            .iter()
            .map(|(addr, slot, _)| (*addr, *slot))
            .collect();
        let new_blocks: Vec<(u32, String)> = blocks
            .iter()
            .filter(|(addr, slot, _)| !state.blocked.contains(&(*addr, *slot)))
            .filter_map(|(addr, slot, until)| {
                let rule = state.set.rules().iter().find(|r| r.slot == *slot)?;
                Some((
                    rule.id,
                    format!(
                        "rule {} blocked {addr} for {}s: {}",
                        rule.id,
                        until.saturating_sub(now_ns).div_ceil(1_000_000_000),
                        rule.spec
                    ),
                ))
            })
            .collect();
        state.blocked = now_blocked;
        (expired, first, new_blocks)
    };
    if !expired.is_empty() {
        shared.sync_list_presence()?;
    }
    for id in expired {
        note(shared, id, format!("rule {id} expired"));
    }
    for (id, text) in first {
        note(
            shared,
            id,
            format!("rule {id} matched its first packet: {text}"),
        );
    }
    for (id, line) in new_blocks {
        note(shared, id, line);
    }
    Ok(())
}

/// The sources blocked now under `per-source` rules, as `blocked list` shows them.
pub(super) fn blocked(shared: &Shared, now_ns: u64) -> Vec<SourceView> {
    let state = lock(&shared.rules);
    state
        .maps
        .blocked_sources(now_ns)
        .into_iter()
        .filter_map(|(addr, slot, until)| {
            let rule = state.set.rules().iter().find(|r| r.slot == slot)?;
            Some(SourceView {
                addr,
                pps: 0.0,
                bps: 0.0,
                blocked: true,
                blocked_remaining_ms: Some((until - now_ns) / 1_000_000),
                rule: Some(rule.id),
                fleet: None,
            })
        })
        .collect()
}

/// Ends `addr`'s blocks under `per-source` rules (`blocked remove`); how many there were.
pub(super) fn unblock(shared: &Shared, addr: IpAddr, now_ns: u64) -> anyhow::Result<usize> {
    let mut state = lock(&shared.rules);
    let ended = state.maps.unblock(addr, now_ns)?;
    state.blocked.retain(|(a, _)| *a != addr);
    Ok(ended)
}

/// Logs a rule event and records it in the journal.
fn note(shared: &Shared, id: u32, line: String) {
    info!("{}: {line}", shared.iface);
    lock(&shared.blocks).record(EventRecord::now(
        EventKind::Rule,
        Some(format!("rule {id}")),
        line,
    ));
}
