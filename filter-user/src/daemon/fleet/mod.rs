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

mod apply;
mod publish;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{anyhow, bail};
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt as _;
use log::{info, warn};

use self::{
    apply::{apply, prune, withdraw},
    publish::{Put, delete, own_state, publish},
};
use super::{Shared, lock};
use crate::{
    control::{EventKind, EventRecord},
    fleet::{Applied, AppliedFile, FleetConfig, Key, PeerError, SignIn},
    lists::Prefix,
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

/// How often a first connection to the broker is tried until one works.
const RECONNECT_EVERY: Duration = Duration::from_secs(2);

/// The file in the run directory that keeps the peers' entries in force here.
const APPLIED_FILE: &str = "fleet-applied.json";

/// Watch errors in a row after which the watch is made again.
const MAX_WATCH_ERRORS: u32 = 3;

/// The daemon's fleet state, shared by every interface.
pub(super) struct Fleet {
    config: FleetConfig,
    applied: Mutex<BTreeMap<Key, Applied>>,
    /// Where `applied` is kept (see [`AppliedFile`]), and what was written there last.
    applied_path: PathBuf,
    saved: Mutex<BTreeMap<Key, Applied>>,
    /// This boot's id, which the file is written with.
    boot_id: String,
    /// Whether the last write failed (logged once until one works).
    save_failed: AtomicBool,
    /// Whether the broker is connected and the bucket watched (logged on change).
    connected: AtomicBool,
    /// Peers' entries refused, by reason.
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

impl Fleet {
    /// The fleet of a daemon whose run directory is `run_dir`, with the peers' entries a
    /// daemon before it applied and left in force. A file that cannot be read is logged
    /// and left for the next write: the bucket's snapshot applies the entries again.
    pub(super) fn new(config: FleetConfig, run_dir: &Path) -> Self {
        let applied_path = run_dir.join(APPLIED_FILE);
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|id| id.trim().to_owned())
            .unwrap_or_default();
        let applied = match crate::state_file::load::<AppliedFile>(
            &applied_path,
            "the fleet's applied entries",
        ) {
            Ok(file) => file.in_force(
                &boot_id,
                crate::maps::monotonic_now_ns().unwrap_or(u64::MAX),
            ),
            Err(e) => {
                warn!("fleet: {e:#}; starting without it");
                BTreeMap::new()
            }
        };
        if !applied.is_empty() {
            info!(
                "fleet: {} peers' entries applied by the daemon before are still in force",
                applied.len()
            );
        }
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
            saved: Mutex::new(applied.clone()),
            applied: Mutex::new(applied),
            applied_path,
            boot_id,
            save_failed: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            refused: Mutex::new(BTreeMap::new()),
        }
    }

    /// The node whose block put each denylist prefix here, for `deny list`.
    pub(super) fn block_origins(&self) -> HashMap<Prefix, String> {
        self.blocks()
            .into_iter()
            .map(|(prefix, node, _)| (prefix, node))
            .collect()
    }

    /// The peers' blocks applied here: (source, node, end on the monotonic clock), for
    /// `blocked list`.
    pub(super) fn blocks(&self) -> Vec<(Prefix, String, u64)> {
        lock(&self.applied)
            .iter()
            .filter_map(|(key, applied)| match applied {
                Applied::Block { prefix, expires_ns } => {
                    Some((*prefix, key.node().to_owned(), *expires_ns))
                }
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

    /// Writes the applied entries to the run directory if they changed since the last
    /// write (each tick: a crash loses at most a tick's changes, which the bucket's
    /// snapshot brings back).
    fn persist(&self) {
        let now = lock(&self.applied).clone();
        let mut saved = lock(&self.saved);
        if *saved == now {
            return;
        }
        match crate::state_file::save(&AppliedFile::of(&self.boot_id, &now), &self.applied_path) {
            Ok(()) => {
                *saved = now;
                self.save_failed.store(false, Ordering::Relaxed);
            }
            Err(e) => {
                if !self.save_failed.swap(true, Ordering::Relaxed) {
                    warn!("fleet: {e:#}; tried again each tick");
                }
            }
        }
    }

    fn refuse(&self, protected: &[Arc<Shared>], error: &PeerError) {
        *lock(&self.refused).entry(error.reason()).or_insert(0) += 1;
        let line = format!("fleet: refused {error}");
        warn!("{line}");
        record(protected, &line);
    }
}

/// Records `line` in every interface's event journal (`floodwall events`).
fn record(protected: &[Arc<Shared>], line: &str) {
    for shared in protected {
        lock(&shared.blocks).record(EventRecord::now(
            EventKind::ListChange,
            None,
            line.to_owned(),
        ));
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

/// The broker's client, once a first connection worked: until then each attempt that
/// fails is logged once by its reason (the broker unreachable, or this node's sign-in
/// refused) and tried again, and the node protects with what it has meanwhile. After the
/// first connection the client reconnects by itself.
async fn connect(fleet: &Fleet) -> async_nats::Client {
    let options = match &fleet.config.sign_in {
        SignIn::Anonymous => async_nats::ConnectOptions::new(),
        SignIn::Password { user, password } => async_nats::ConnectOptions::with_user_and_password(
            user.clone(),
            password.expose().to_owned(),
        ),
        SignIn::Token(token) => async_nats::ConnectOptions::with_token(token.expose().to_owned()),
    }
    .name(format!("floodwall {}", fleet.config.node))
    .connection_timeout(Duration::from_secs(2))
    .max_reconnects(None);
    let broker = &fleet.config.broker;
    let mut said = None;
    loop {
        match options.clone().connect(broker.as_str()).await {
            Ok(client) => return client,
            Err(e) => {
                let refused = matches!(
                    e.kind(),
                    async_nats::ConnectErrorKind::AuthorizationViolation
                        | async_nats::ConnectErrorKind::Authentication
                );
                let why = if refused {
                    format!(
                        "the broker {broker} refused this node's sign-in ({e}): check fleet.user, \
                         fleet.password_file or fleet.token_file against the broker's \
                         authorization"
                    )
                } else {
                    format!("the broker {broker} is not reachable ({e})")
                };
                if said.as_ref() != Some(&why) {
                    warn!("fleet: {why}; the node protects with what it has and tries again");
                    said = Some(why);
                }
            }
        }
        prune(fleet);
        fleet.persist();
        tokio::time::sleep(RECONNECT_EVERY).await;
    }
}

/// Runs the fleet: connects, and reconnects, for ever. It never fails the daemon: without a
/// broker the node protects with what it has.
pub(super) async fn fleet_loop(
    fleet: Arc<Fleet>,
    protected: Vec<Arc<Shared>>,
) -> anyhow::Result<()> {
    let client = connect(&fleet).await;
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
        fleet.persist();
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
                fleet.persist();
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
}
