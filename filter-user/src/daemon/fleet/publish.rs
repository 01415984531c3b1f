//! Publishing this node's state to the bucket: its blocks and signatures as fleet
//! entries, put when new or changed, put again before peers' copies run out, deleted
//! when they end.

use std::{collections::HashMap, sync::Arc};

use async_nats::jetstream::kv;
use log::warn;

use super::{Fleet, OP_TIMEOUT, OPS_PER_TICK};
use crate::{
    clock::unix_now_ms,
    daemon::{Shared, lock},
    fleet::{BlockEntry, Key, SignatureEntry, VERSION},
    maps::monotonic_now_ns,
    rules::Origin,
};

/// This node's entries now: key → (value, until in Unix ms).
pub(super) fn own_state(fleet: &Fleet, protected: &[Arc<Shared>]) -> HashMap<Key, (Vec<u8>, u64)> {
    let mut own = HashMap::new();
    let (Ok(now_ns), wall_ms) = (monotonic_now_ns(), unix_now_ms()) else {
        return own;
    };
    let until_of = |expires_ns: u64| wall_ms + expires_ns.saturating_sub(now_ns) / 1_000_000;
    let node = &fleet.config.node;
    for shared in protected {
        if fleet.config.share_blocks {
            for (addr, until_ns) in lock(&shared.blocks).blocks() {
                if until_ns <= now_ns {
                    continue;
                }
                let until = until_of(until_ns);
                let value = BlockEntry {
                    v: VERSION,
                    addr,
                    until,
                    iface: shared.iface.clone(),
                };
                if let Ok(bytes) = serde_json::to_vec(&value) {
                    let key = Key::Block {
                        node: node.clone(),
                        addr,
                    };
                    // Blocked on two interfaces: the later end wins.
                    if own.get(&key).is_none_or(|(_, u)| *u < until) {
                        own.insert(key, (bytes, until));
                    }
                }
            }
        }
        if fleet.config.share_signatures {
            for rule in lock(&shared.rules).of_origin(Origin::Signature) {
                let max_ms = u64::try_from(fleet.config.max_block.as_millis()).unwrap_or(u64::MAX);
                // A signature without an end is published for max_block and refreshed.
                let until = rule.expires_ns.map_or(wall_ms + max_ms, until_of);
                let value = SignatureEntry {
                    v: VERSION,
                    rule: rule.spec.to_string(),
                    until,
                };
                if let Ok(bytes) = serde_json::to_vec(&value) {
                    own.insert(
                        Key::Signature {
                            node: node.clone(),
                            iface: shared.iface.clone(),
                            id: rule.id,
                        },
                        (bytes, until),
                    );
                }
            }
        }
    }
    own
}

/// What this session put for a key, in Unix ms.
#[derive(Clone, Copy, Debug)]
pub(super) struct Put {
    /// The value's end.
    until: u64,
    /// When it was put.
    at: u64,
}

/// Whether a key put as `old` (if it was) must be put again for `until` at `now` (Unix
/// ms): it is new, or its end moved by more than a second (a block renewed), or peers cap
/// it at `max_block_ms` and half of that has passed since it was put, so that their copies
/// are renewed before they run out.
fn must_put(old: Option<Put>, until: u64, now: u64, max_block_ms: u64) -> bool {
    let Some(old) = old else {
        return true;
    };
    if old.until.abs_diff(until) > 1000 {
        return true;
    }
    let capped = until.saturating_sub(old.at) > max_block_ms;
    capped && now.saturating_sub(old.at) >= max_block_ms / 2
}

/// Puts what is new or changed, deletes what ended.
pub(super) async fn publish(
    fleet: &Fleet,
    protected: &[Arc<Shared>],
    store: &kv::Store,
    published: &mut HashMap<Key, Put>,
) {
    let own = own_state(fleet, protected);
    let max_block_ms = u64::try_from(fleet.config.max_block.as_millis()).unwrap_or(u64::MAX);
    let mut ops = 0;
    for (key, (value, until)) in &own {
        if ops >= OPS_PER_TICK {
            return;
        }
        let now = unix_now_ms();
        if !must_put(published.get(key).copied(), *until, now, max_block_ms) {
            continue;
        }
        ops += 1;
        let name = key.encode();
        match tokio::time::timeout(OP_TIMEOUT, store.put(&name, value.clone().into())).await {
            Ok(Ok(_)) => {
                published.insert(
                    key.clone(),
                    Put {
                        until: *until,
                        at: now,
                    },
                );
            }
            Ok(Err(e)) => warn!("fleet: cannot publish {name}: {e}"),
            Err(_) => warn!("fleet: publishing {name} timed out; it is retried"),
        }
    }
    let ended: Vec<Key> = published
        .keys()
        .filter(|k| !own.contains_key(*k))
        .cloned()
        .collect();
    for key in ended {
        if ops >= OPS_PER_TICK {
            return;
        }
        ops += 1;
        if delete(store, &key).await {
            published.remove(&key);
        }
    }
}

pub(super) async fn delete(store: &kv::Store, key: &Key) -> bool {
    let name = key.encode();
    match tokio::time::timeout(OP_TIMEOUT, store.delete(&name)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            warn!("fleet: cannot delete {name}: {e}");
            false
        }
        Err(_) => {
            warn!("fleet: deleting {name} timed out; it is retried");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_put_again_when_it_changes_or_before_peers_copies_run_out() {
        let hour = 3_600_000;
        let t0 = 1_000_000_000;
        assert!(must_put(None, t0 + 60_000, t0, hour), "a new key is put");
        let short = Some(Put {
            until: t0 + 60_000,
            at: t0,
        });
        assert!(
            !must_put(short, t0 + 60_500, t0 + 30_000, hour),
            "an end within a second of the one put is not put again"
        );
        assert!(
            must_put(short, t0 + 90_000, t0 + 30_000, hour),
            "a renewed block is put again"
        );
        assert!(
            !must_put(short, t0 + 60_000, t0 + 59_000, hour),
            "a value peers keep to its end is put once"
        );
        // A block of a day: peers keep it for an hour, so it is put again every half hour,
        // whatever time it has left.
        let long = Some(Put {
            until: t0 + 24 * hour,
            at: t0,
        });
        assert!(!must_put(long, t0 + 24 * hour, t0 + hour / 2 - 1, hour));
        assert!(
            must_put(long, t0 + 24 * hour, t0 + hour / 2, hour),
            "a value peers cap must be put again before their copies end"
        );
    }
}
