//! The fleet, in the daemon (`[fleet]`): publish this node's blocks and signatures to the
//! broker's key-value bucket, watch every node's keys, and apply the peers' entries as
//! expiring denylist entries and rules, under the local safety rules.
//!
//! The broker is never needed for protection: what was applied stays applied (until it
//! expires) while the broker is away, and a node with no broker protects with its own
//! blocks. After a reconnect the node publishes its state again and reads the bucket anew.
//!
//! Traps of nats-server 2.9 (Debian 12's) with async-nats 0.51, each verified:
//! - `create_key_value` cannot read 2.9's account info: the bucket's stream is created as
//!   async-nats would (`kv_stream`), then opened with `get_key_value`;
//! - `watch_with_history(">")` gives the current value of every key, then every change;
//!   `watch_all` gives only changes;
//! - per-key TTLs are ignored and a bucket's `max_age` expiry emits nothing: every value
//!   carries `until`, and what is applied expires on its own (the denylist's and the
//!   rules' expiry);
//! - ':' is not allowed in keys (see `crate::fleet::Key`);
//! - after a broker restart the watch yields an error item, then goes on: errors are
//!   logged, not fatal.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt as _;
use log::{info, warn};

use super::{Shared, lock};
use crate::{
    control::{EventKind, EventRecord},
    fleet::{
        BlockEntry, FleetConfig, Key, PeerEntry, PeerError, SignatureEntry, VERSION, allowlisted,
        unix_now_ms,
    },
    lists::{ListKind, Prefix},
    maps::monotonic_now_ns,
    rules::{NewRule, Origin, RuleSpec},
};

/// How often own state is compared with what was published, and applied entries pruned.
const TICK: Duration = Duration::from_millis(250);

/// How long a put or delete may take before it is retried on a later tick.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// The most puts and deletes per tick: a flood of spoofed sources blocks many, and the
/// broker is shared.
const OPS_PER_TICK: usize = 200;

/// The bucket's `max_age`: only its garbage collector (values carry `until`).
const BUCKET_MAX_AGE: Duration = Duration::from_hours(24);

/// Watch errors in a row after which the watch is made again.
const MAX_WATCH_ERRORS: u32 = 3;

/// A peer's entry in force here.
#[derive(Clone, Debug)]
enum Applied {
    /// A denylist entry on every interface.
    Block { prefix: Prefix, expires_ns: u64 },
    /// A rule on each interface: (interface, rule id).
    Signature {
        spec: Box<RuleSpec>,
        rules: Vec<(String, u32)>,
        expires_ns: u64,
    },
}

impl Applied {
    const fn expires_ns(&self) -> u64 {
        match self {
            Self::Block { expires_ns, .. } | Self::Signature { expires_ns, .. } => *expires_ns,
        }
    }
}

/// The daemon's fleet state, shared by every interface.
pub(super) struct Fleet {
    config: FleetConfig,
    applied: Mutex<BTreeMap<Key, Applied>>,
    /// Whether the broker is connected and the bucket watched (logged on change).
    connected: AtomicBool,
    /// Peers' entries refused, by reason.
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

impl Fleet {
    pub(super) fn new(config: FleetConfig) -> Self {
        info!(
            "fleet: node {} shares {}through {} (bucket {})",
            config.node,
            match (config.share_blocks, config.share_signatures) {
                (true, true) => "blocks and signatures ",
                (true, false) => "blocks ",
                (false, true) => "signatures ",
                (false, false) => "nothing ",
            },
            config.broker,
            config.bucket
        );
        Self {
            config,
            applied: Mutex::new(BTreeMap::new()),
            connected: AtomicBool::new(false),
            refused: Mutex::new(BTreeMap::new()),
        }
    }

    /// The node whose block put each denylist prefix here, for `deny list`.
    pub(super) fn block_origins(&self) -> HashMap<Prefix, String> {
        lock(&self.applied)
            .iter()
            .filter_map(|(key, applied)| match applied {
                Applied::Block { prefix, .. } => Some((*prefix, key.node().to_owned())),
                Applied::Signature { .. } => None,
            })
            .collect()
    }

    /// The fleet's metrics now.
    pub(super) fn metrics(&self) -> crate::metrics::FleetMetrics {
        let (mut applied_blocks, mut applied_signatures) = (0, 0);
        for applied in lock(&self.applied).values() {
            match applied {
                Applied::Block { .. } => applied_blocks += 1,
                Applied::Signature { .. } => applied_signatures += 1,
            }
        }
        crate::metrics::FleetMetrics {
            connected: self.connected.load(Ordering::Relaxed),
            applied_blocks,
            applied_signatures,
            refused: lock(&self.refused)
                .iter()
                .map(|(reason, n)| (*reason, *n))
                .collect(),
        }
    }

    fn refuse(&self, protected: &[Arc<Shared>], error: &PeerError) {
        *lock(&self.refused).entry(error.reason()).or_insert(0) += 1;
        let line = format!("fleet: refused {error}");
        warn!("{line}");
        for shared in protected {
            lock(&shared.blocks).record(EventRecord::now(
                EventKind::ListChange,
                None,
                line.clone(),
            ));
        }
    }
}

/// The stream of a KV bucket, as async-nats' `create_key_value` would make it (which
/// cannot talk to nats-server 2.9: see the module doc).
fn kv_stream(bucket: &str) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: BUCKET_MAX_AGE,
        storage: jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    }
}

async fn open_bucket(js: &jetstream::Context, bucket: &str) -> anyhow::Result<kv::Store> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    js.create_stream(kv_stream(bucket))
        .await
        .map_err(|e| anyhow!("cannot create the bucket {bucket}: {e}"))?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| anyhow!("cannot open the bucket {bucket}: {e}"))
}

/// Runs the fleet: connects, and reconnects, for ever. It never fails the daemon: without a
/// broker the node protects with what it has.
pub(super) async fn fleet_loop(
    fleet: Arc<Fleet>,
    protected: Vec<Arc<Shared>>,
) -> anyhow::Result<()> {
    let options = async_nats::ConnectOptions::new()
        .name(format!("floodwall {}", fleet.config.node))
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .max_reconnects(None);
    let client = options
        .connect(fleet.config.broker.as_str())
        .await
        .with_context(|| format!("fleet: cannot use the broker {}", fleet.config.broker))?;
    let js = jetstream::new(client.clone());
    let mut said_down = false;
    loop {
        if client.connection_state() == async_nats::connection::State::Connected {
            said_down = false;
            if let Err(e) = session(&fleet, &protected, &client, &js).await {
                warn!("fleet: {e:#}; the node keeps what it applied and tries again");
            }
        } else if !said_down {
            said_down = true;
            warn!(
                "fleet: the broker {} is not reachable; the node keeps what it applied",
                fleet.config.broker
            );
        }
        fleet.connected.store(false, Ordering::Relaxed);
        prune(&fleet);
        tokio::time::sleep(TICK).await;
    }
}

/// One connected session: read the bucket (everything, then changes), publish own state.
/// Ends with an error when the connection or the watch is lost.
async fn session(
    fleet: &Fleet,
    protected: &[Arc<Shared>],
    client: &async_nats::Client,
    js: &jetstream::Context,
) -> anyhow::Result<()> {
    let bucket = &fleet.config.bucket;
    let store = tokio::time::timeout(OP_TIMEOUT * 2, open_bucket(js, bucket))
        .await
        .map_err(|_| anyhow!("opening the bucket {bucket} timed out"))??;
    let mut watch = store
        .watch_with_history(">")
        .await
        .map_err(|e| anyhow!("cannot watch the bucket {bucket}: {e}"))?;
    fleet.connected.store(true, Ordering::Relaxed);
    info!(
        "fleet: connected to {}, watching bucket {bucket}",
        fleet.config.broker
    );
    // What this session put. A new session publishes everything again.
    let mut published: HashMap<Key, Put> = HashMap::new();
    let mut ticker = tokio::time::interval(TICK);
    let mut errors = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                prune(fleet);
                if client.connection_state() != async_nats::connection::State::Connected {
                    bail!("the connection to the broker was lost");
                }
                publish(fleet, protected, &store, &mut published).await;
            }
            item = watch.next() => match item {
                None => bail!("the watch of bucket {bucket} ended"),
                Some(Err(e)) => {
                    errors += 1;
                    warn!("fleet: watch: {e}");
                    if errors >= MAX_WATCH_ERRORS {
                        bail!("the watch failed {errors} times in a row");
                    }
                }
                Some(Ok(entry)) => {
                    errors = 0;
                    on_entry(fleet, protected, &store, &entry).await;
                }
            }
        }
    }
}

/// This node's entries now: key → (value, until in Unix ms).
fn own_state(fleet: &Fleet, protected: &[Arc<Shared>]) -> HashMap<Key, (Vec<u8>, u64)> {
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
struct Put {
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
async fn publish(
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

async fn delete(store: &kv::Store, key: &Key) -> bool {
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

/// One entry from the watch.
async fn on_entry(fleet: &Fleet, protected: &[Arc<Shared>], store: &kv::Store, entry: &kv::Entry) {
    let key = match Key::parse(&entry.key) {
        Ok(key) => key,
        Err(e) => {
            if entry.operation == kv::Operation::Put {
                fleet.refuse(protected, &e);
            }
            return;
        }
    };
    if key.node() == fleet.config.node {
        // Our own key: one left from before (a block that ended while the broker was away,
        // or a daemon before this one) goes.
        if entry.operation == kv::Operation::Put && !own_state(fleet, protected).contains_key(&key)
        {
            delete(store, &key).await;
        }
        return;
    }
    match entry.operation {
        kv::Operation::Put => {
            if let Err(e) = apply(fleet, protected, &key, &entry.value) {
                fleet.refuse(protected, &e);
            }
        }
        kv::Operation::Delete | kv::Operation::Purge => {
            let removed = lock(&fleet.applied).remove(&key);
            if let Some(applied) = removed {
                withdraw(fleet, protected, &key, &applied, "withdrawn by its node");
            }
        }
    }
}

/// Applies a peer's entry on every interface, all or nothing.
fn apply(
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
        priority: super::traffic::SIGNATURE_PRIORITY,
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
        match super::rules::add_quietly(shared, std::slice::from_ref(&new), now_ns) {
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
        if let Err(e) = super::rules::set_expiry_quietly(shared, *id, expires_ns) {
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
    let now_ns = monotonic_now_ns().unwrap_or(0);
    for shared in protected {
        let allow: Vec<Prefix> = shared
            .lists
            .list(ListKind::Allow, now_ns)
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.prefix)
            .collect();
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
fn withdraw(fleet: &Fleet, protected: &[Arc<Shared>], key: &Key, applied: &Applied, why: &str) {
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
        if present && let Err(e) = super::rules::remove_quietly(shared, &[*id]) {
            warn!("fleet: cannot remove rule {id} on {iface}: {e:#}");
        }
    }
}

/// Forgets the applied entries that expired (the denylist and the rules drop them by
/// themselves).
fn prune(fleet: &Fleet) {
    let Ok(now_ns) = monotonic_now_ns() else {
        return;
    };
    lock(&fleet.applied).retain(|_, a| a.expires_ns() > now_ns);
}

fn note(protected: &[Arc<Shared>], line: &str) {
    info!("{line}");
    for shared in protected {
        lock(&shared.blocks).record(EventRecord::now(
            EventKind::ListChange,
            None,
            line.to_owned(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_stream_is_a_kv_stream() {
        let c = kv_stream("floodwall");
        assert_eq!(c.name, "KV_floodwall");
        assert_eq!(c.subjects, ["$KV.floodwall.>"]);
        assert_eq!(c.max_messages_per_subject, 1);
        assert!(c.allow_rollup && c.deny_delete && c.allow_direct);
    }

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
