//! Applying peers' entries: a block as an expiring denylist entry on every interface, a
//! signature as a rule of the fleet's origin on each, all or nothing and under the local
//! safety rules (the allowlist, the cap on entries, `max_block`); and taking them away
//! when their node withdraws them or they end.

use std::{sync::Arc, time::Duration};

use log::{info, warn};

use super::Fleet;
use crate::{
    clock::unix_now_ms,
    daemon::{Shared, lock},
    fleet::{Applied, Key, PeerEntry, PeerError, allowlisted},
    lists::{ListKind, Prefix},
    maps::monotonic_now_ns,
    rules::{NewRule, Origin, RuleSpec},
};

/// Applies a peer's entry on every interface, all or nothing.
pub(super) fn apply(
    fleet: &Fleet,
    protected: &[Arc<Shared>],
    key: &Key,
    value: &[u8],
) -> Result<(), PeerError> {
    let entry = crate::fleet::decode(key, value, unix_now_ms(), fleet.config.max_block)?;
    let name = key.encode();
    let now_ns = monotonic_now_ns().unwrap_or(0);
    let already = lock(&fleet.applied).get(key).cloned();
    if already.is_none() && lock(&fleet.applied).len() >= fleet.config.max_entries {
        return Err(PeerError::OverCap {
            key: name,
            max: fleet.config.max_entries,
        });
    }
    match entry {
        PeerEntry::Block { prefix, remaining } => apply_block(
            fleet,
            protected,
            key,
            already.is_some(),
            prefix,
            remaining,
            now_ns,
        ),
        PeerEntry::Signature { rule, remaining } => apply_signature(
            fleet,
            protected,
            key,
            already.as_ref(),
            *rule,
            remaining,
            now_ns,
        ),
    }
}

/// Applies a peer's block: a denylist entry on every interface, all or nothing.
fn apply_block(
    fleet: &Fleet,
    protected: &[Arc<Shared>],
    key: &Key,
    already: bool,
    prefix: Prefix,
    remaining: Duration,
    now_ns: u64,
) -> Result<(), PeerError> {
    let name = key.encode();
    if !fleet.config.share_blocks {
        return Err(PeerError::NotShared {
            key: name,
            kind: "blocks",
        });
    }
    check_allowlist(protected, &name, &prefix, &prefix.to_string())?;
    let fleet_holds = lock(&fleet.applied)
        .values()
        .any(|a| matches!(a, Applied::Block { prefix: p, .. } if *p == prefix));
    if !fleet_holds {
        for shared in protected {
            if !shared
                .lists
                .listed(ListKind::Deny, &[prefix])
                .unwrap_or_default()
                .is_empty()
            {
                return Err(PeerError::ListedLocally { key: name, prefix });
            }
        }
    }
    let expires_ns = expires_after(now_ns, remaining);
    let mut done: Vec<Arc<Shared>> = Vec::new();
    for shared in protected {
        let added = shared
            .lists
            .add(ListKind::Deny, &[prefix], Some(expires_ns))
            .map_err(anyhow::Error::from)
            .and_then(|_| shared.sync_list_presence());
        if let Err(e) = added {
            // Undo the interfaces done; the error is this node's, not the peer's.
            for shared in &done {
                remove_block(shared, prefix);
            }
            warn!("fleet: cannot apply {name} on {}: {e:#}", shared.iface);
            return Ok(());
        }
        done.push(Arc::clone(shared));
    }
    if !already {
        note(
            protected,
            &format!(
                "fleet: {} blocked {prefix}: denylisted for {}",
                key.node(),
                humantime::format_duration(Duration::from_secs(remaining.as_secs()))
            ),
        );
    }
    lock(&fleet.applied).insert(key.clone(), Applied::Block { prefix, expires_ns });
    Ok(())
}

/// Applies a peer's signature: a rule on every interface, all or nothing.
fn apply_signature(
    fleet: &Fleet,
    protected: &[Arc<Shared>],
    key: &Key,
    already: Option<&Applied>,
    rule: RuleSpec,
    remaining: Duration,
    now_ns: u64,
) -> Result<(), PeerError> {
    let name = key.encode();
    if !fleet.config.share_signatures {
        return Err(PeerError::NotShared {
            key: name,
            kind: "signatures",
        });
    }
    if let Some(src) = &rule.src {
        check_allowlist(protected, &name, src, &format!("the rule's source {src}"))?;
    }
    let expires_ns = expires_after(now_ns, remaining);
    if let Some(Applied::Signature {
        spec,
        rules,
        expires_ns: was,
    }) = already
        && **spec == rule
    {
        // The same rule again: the snapshot after a reconnect, or a refresh, which moves
        // its end (its node puts it again before max_block would end it here).
        if expires_ns > was.saturating_add(1_000_000_000) {
            renew_signature(fleet, protected, key, rules, expires_ns);
        }
        return Ok(());
    }
    if let Some(old) = already {
        withdraw(fleet, protected, key, old, "replaced by its node");
    }
    let Key::Signature { node, iface, id } = key else {
        return Ok(());
    };
    let new = NewRule {
        spec: rule.clone(),
        priority: crate::daemon::traffic::SIGNATURE_PRIORITY,
        comment: Some(format!("from {node} (signature {id} on {iface})")),
        for_ms: Some(
            u64::try_from(remaining.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        ),
        origin: Origin::Fleet,
    };
    let mut rules = Vec::new();
    for shared in protected {
        match crate::daemon::rules::add_quietly(shared, std::slice::from_ref(&new), now_ns) {
            Ok(ids) => rules.extend(ids.into_iter().map(|i| (shared.iface.clone(), i))),
            Err(e) => {
                remove_rules(protected, &rules);
                warn!("fleet: cannot apply {name} on {}: {e:#}", shared.iface);
                return Ok(());
            }
        }
    }
    note(
        protected,
        &format!("fleet: {node} found a signature: rule `{rule}` in force"),
    );
    lock(&fleet.applied).insert(
        key.clone(),
        Applied::Signature {
            spec: Box::new(rule),
            rules,
            expires_ns,
        },
    );
    Ok(())
}

/// Moves the end of a peer's signature in force here, on every interface.
fn renew_signature(
    fleet: &Fleet,
    protected: &[Arc<Shared>],
    key: &Key,
    rules: &[(String, u32)],
    expires_ns: u64,
) {
    for (iface, id) in rules {
        let Some(shared) = protected.iter().find(|s| s.iface == *iface) else {
            continue;
        };
        if let Err(e) = crate::daemon::rules::set_expiry_quietly(shared, *id, expires_ns) {
            // It expired, or the operator removed it.
            warn!("fleet: cannot renew rule {id} on {iface}: {e:#}");
        }
    }
    if let Some(Applied::Signature {
        expires_ns: end, ..
    }) = lock(&fleet.applied).get_mut(key)
    {
        *end = expires_ns;
    }
}

fn expires_after(now_ns: u64, remaining: Duration) -> u64 {
    now_ns.saturating_add(u64::try_from(remaining.as_nanos()).unwrap_or(u64::MAX))
}

fn check_allowlist(
    protected: &[Arc<Shared>],
    name: &str,
    prefix: &Prefix,
    what: &str,
) -> Result<(), PeerError> {
    for shared in protected {
        let allow = shared
            .allowlist_prefixes()
            .map_err(|e| PeerError::AllowlistUnread {
                key: name.to_owned(),
                why: format!("{e:#}"),
            })?;
        if let Some(allowed) = allowlisted(prefix, &allow) {
            return Err(PeerError::Allowlisted {
                key: name.to_owned(),
                what: what.to_owned(),
                allowed,
            });
        }
    }
    Ok(())
}

/// Removes what a peer's entry put in place (it is already out of the book).
pub(super) fn withdraw(
    fleet: &Fleet,
    protected: &[Arc<Shared>],
    key: &Key,
    applied: &Applied,
    why: &str,
) {
    match applied {
        Applied::Block { prefix, .. } => {
            // Another peer may block the same source: its entry stays.
            let other = lock(&fleet.applied).values().find_map(|a| match a {
                Applied::Block {
                    prefix: p,
                    expires_ns,
                } if p == prefix => Some(*expires_ns),
                _ => None,
            });
            for shared in protected {
                match other {
                    Some(expires_ns) => {
                        let _ = shared
                            .lists
                            .add(ListKind::Deny, &[*prefix], Some(expires_ns));
                    }
                    None => remove_block(shared, *prefix),
                }
            }
            note(
                protected,
                &format!("fleet: {}'s block of {prefix} {why}", key.node()),
            );
        }
        Applied::Signature { spec, rules, .. } => {
            remove_rules(protected, rules);
            note(
                protected,
                &format!("fleet: {}'s signature `{spec}` {why}", key.node()),
            );
        }
    }
}

fn remove_block(shared: &Shared, prefix: Prefix) {
    match shared.lists.remove_listed(ListKind::Deny, &[prefix]) {
        Ok(_) => {
            if let Err(e) = shared.sync_list_presence() {
                warn!("fleet: {e:#}");
            }
        }
        Err(e) => warn!("fleet: cannot remove {prefix} on {}: {e}", shared.iface),
    }
}

fn remove_rules(protected: &[Arc<Shared>], rules: &[(String, u32)]) {
    for (iface, id) in rules {
        let Some(shared) = protected.iter().find(|s| s.iface == *iface) else {
            continue;
        };
        // It may have expired, or the operator removed it.
        let present = lock(&shared.rules)
            .of_origin(Origin::Fleet)
            .iter()
            .any(|r| r.id == *id);
        if present && let Err(e) = crate::daemon::rules::remove_quietly(shared, &[*id]) {
            warn!("fleet: cannot remove rule {id} on {iface}: {e:#}");
        }
    }
}

/// Forgets the applied entries that expired (the denylist and the rules drop them by
/// themselves).
pub(super) fn prune(fleet: &Fleet) {
    let Ok(now_ns) = monotonic_now_ns() else {
        return;
    };
    lock(&fleet.applied).retain(|_, a| a.expires_ns() > now_ns);
}

/// Logs `line` and records it in every interface's journal.
fn note(protected: &[Arc<Shared>], line: &str) {
    info!("{line}");
    super::record(protected, line);
}
