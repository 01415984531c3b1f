//! The daemon: load, attach (or take over what an earlier daemon left attached), serve the
//! control sockets, log blocks, reload its config. It never detaches: the program and its
//! state stay pinned when the daemon stops (see [`crate::pin`]).

use std::{
    collections::HashSet,
    fs::{File, OpenOptions},
    future::Future,
    os::unix::fs::PermissionsExt as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use aya::maps::{MapData, RingBuf};
use filter_common::{Class, Outcome, map_names};
use log::{error, info, warn};
use nix::fcntl::{Flock, FlockArg};
use tokio::{
    io::unix::AsyncFd,
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
    task::JoinSet,
};

use crate::{
    config::{DaemonConfig, InterfaceConfig, Reloader},
    control::{
        Access, LimitsView, MAX_REQUEST_BYTES, Request, Response, StatsView, TableStats,
        socket_path,
    },
    events::{self, BlockBook, EventKind, EventRecord},
    limits::Limits,
    lists::{self, ListKind, ListMaps, Prefix},
    loader::{self, AttachMode, LoadOptions},
    maps::{FilterMaps, monotonic_now_ns},
    metrics,
    pin::{PinDir, Takeover},
    stats::{ClassStats, Sample, SourceView, addr_key, key_addr, outcome_stats, top_sources},
};

/// How often the daemon samples the counters for `stats` rates and expires blocks.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// How often the daemon walks the table: to count its sources (the tracked-sources gauge)
/// and to rebuild the tracked-source filter from it (see
/// [`FilterMaps::rebuild_tracked_filter`]). A walk of up to a million keys, too dear for
/// every second.
pub const COUNT_INTERVAL: Duration = Duration::from_secs(10);

/// A reload request: answered with the changes applied, or why nothing was.
type ReloadReply = oneshot::Sender<Result<Vec<String>, String>>;

/// What the tasks of one protected interface share.
struct Shared {
    iface: String,
    attach_mode: AttachMode,
    started: Instant,
    maps: FilterMaps,
    lists: ListMaps,
    max_sources: u32,
    /// The limits as the operator set them; the map holds their kernel form.
    limits: Mutex<Limits>,
    /// The last two counter samples: rates are the difference.
    samples: Mutex<(Option<Sample>, Option<Sample>)>,
    blocks: Mutex<BlockBook>,
    /// Sources in the table as last counted.
    tracked: std::sync::atomic::AtomicU64,
    /// Who may read and change what (reloadable, the same on every interface).
    access: Arc<Mutex<Access>>,
    /// Where `floodwall reload` requests go.
    reload: mpsc::Sender<ReloadReply>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind, still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the daemon until `shutdown` completes. The program stays attached afterwards.
///
/// `reloader` reads the config again on SIGHUP and `floodwall reload`; without one, reloads
/// are refused.
///
/// # Errors
/// If an interface does not exist, its program cannot be loaded or attached, a control
/// socket cannot be created, or another daemon protects one of the interfaces.
pub async fn run(
    config: DaemonConfig,
    reloader: Option<Arc<Reloader>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    if config.interfaces.is_empty() {
        bail!("no interface to protect: give --iface or list interfaces in the config");
    }
    // Checked before anything else, so a typo leaves nothing behind.
    let mut seen = HashSet::new();
    for spec in &config.interfaces {
        if nix::net::if_::if_nametoindex(spec.name.as_str()).is_err() {
            bail!("interface {} does not exist", spec.name);
        }
        if !seen.insert(&spec.name) {
            bail!("interface {} is named twice", spec.name);
        }
    }
    let _locks = config
        .interfaces
        .iter()
        .map(|spec| lock_interface(&config.run_dir, &spec.name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Name what an old kernel lacks before the verifier gets a chance to say it obscurely.
    let probe = crate::probe::probe();
    probe.log_fallbacks();
    probe.require()?;

    let access = Arc::new(Mutex::new(config.access));
    let (reload_tx, reload_rx) = mpsc::channel::<ReloadReply>(4);
    let mut tasks = JoinSet::new();
    let mut protected = Vec::new();
    let mut rings = Vec::new();
    for spec in &config.interfaces {
        let (shared, ring) = protect(spec, &config, Arc::clone(&access), reload_tx.clone())?;
        protected.push(shared);
        rings.push(ring);
    }
    // The sockets come last: a socket means its daemon protects every interface it was
    // given.
    for (shared, ring) in protected.iter().zip(rings) {
        let listener = bind_socket(&config, &shared.iface)?;
        tasks.spawn(serve(listener, Arc::clone(shared)));
        tasks.spawn(watch_events(ring, Arc::clone(shared)));
        tasks.spawn(sample_loop(Arc::clone(shared)));
    }
    tasks.spawn(serve_metrics(config.metrics_addr, protected.clone()));
    tasks.spawn(reload_loop(
        reload_rx,
        reload_tx.clone(),
        reloader,
        config.clone(),
        protected.clone(),
    ));

    let result = tokio::select! {
        () = shutdown => Ok(()),
        Some(finished) = tasks.join_next() => match finished {
            Ok(r) => r.and_then(|()| Err(anyhow!("a daemon task stopped unexpectedly"))),
            Err(e) => Err(anyhow!("a daemon task failed: {e}")),
        },
    };
    tasks.abort_all();
    for spec in &config.interfaces {
        let _ = std::fs::remove_file(socket_path(&config.run_dir, &spec.name));
        info!(
            "floodwall stays attached to {} and keeps enforcing; `floodwall detach --iface {}` \
             removes it",
            spec.name, spec.name
        );
    }
    result
}

/// Loads the program for one interface with its pinned state and attaches it, taking over
/// the program an earlier daemon left attached without a moment unprotected.
fn protect(
    spec: &InterfaceConfig,
    config: &DaemonConfig,
    access: Arc<Mutex<Access>>,
    reload: mpsc::Sender<ReloadReply>,
) -> anyhow::Result<(Arc<Shared>, RingBuf<MapData>)> {
    let iface = spec.name.as_str();
    let pins = PinDir::new(&config.pin_root, iface);
    pins.prepare()?;
    let takeover = pins.takeover()?;
    let plan = pins.plan_maps(config.fresh_state)?;
    let prepared = (|| {
        let mut loaded = loader::load(&LoadOptions {
            max_sources: config.max_sources,
            test_clock: false,
            list_capacity: config.list_capacity,
            max_prefixes: config.max_prefixes,
            pin_maps: Some(plan.dir().to_owned()),
        })?;
        let lists = ListMaps::take(&mut loaded.ebpf)?;
        if !config.allow.is_empty() {
            lists.add(ListKind::Allow, &config.allow, None)?;
        }
        if !config.deny.is_empty() {
            lists.add(ListKind::Deny, &config.deny, None)?;
        }
        loaded.maps.set_list_presence(lists.nonempty()?.flag_bits());
        loaded.maps.write_limits(&config.limits.to_kernel())?;
        anyhow::Ok((loaded, lists))
    })();
    let (mut loaded, lists) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            pins.abandon(&plan);
            return Err(e.context(format!("cannot protect {iface}")));
        }
    };
    let attach_mode = match pins.attach(&mut loaded.ebpf, &takeover, spec.xdp_mode) {
        Ok(mode) => mode,
        Err(e) => {
            pins.abandon(&plan);
            return Err(e);
        }
    };
    pins.commit(&plan)?;
    let ring = RingBuf::try_from(
        loaded
            .ebpf
            .take_map(map_names::EVENTS)
            .ok_or_else(|| anyhow!("the XDP object has no map named {}", map_names::EVENTS))?,
    )
    .context("map FW_EVENTS is not a ring buffer")?;

    let mut blocks = BlockBook::default();
    let adopted = match (&takeover, &plan) {
        (Takeover::Replace { .. }, crate::pin::MapsPlan::Reuse(_)) => {
            let now = monotonic_now_ns()?;
            let mut blocked = 0usize;
            for (key, state) in loaded.maps.all_sources()? {
                if state.blocked_until_ns > now {
                    blocks.adopt(key_addr(&key), state.blocked_until_ns);
                    blocked += 1;
                }
            }
            Some(blocked)
        }
        _ => None,
    };
    match adopted {
        Some(blocked) => info!(
            "floodwall took over {iface} without detaching ({attach_mode} mode): kept {blocked} \
             blocked sources, {} allowlist and {} denylist entries, and the counters",
            lists.len(ListKind::Allow)?,
            lists.len(ListKind::Deny)?
        ),
        None => info!(
            "floodwall protects {iface} ({attach_mode} mode, table of {} sources): {}",
            config.max_sources,
            config.limits.describe()
        ),
    }
    let shared = Arc::new(Shared {
        iface: iface.to_owned(),
        attach_mode,
        started: Instant::now(),
        maps: loaded.maps,
        lists,
        max_sources: config.max_sources,
        limits: Mutex::new(config.limits),
        samples: Mutex::new((None, None)),
        blocks: Mutex::new(blocks),
        tracked: std::sync::atomic::AtomicU64::new(0),
        access,
        reload,
    });
    // The object (and with it the program fd) may go: the pinned link holds the program.
    drop(loaded.ebpf);
    Ok((shared, ring))
}

fn bind_socket(config: &DaemonConfig, iface: &str) -> anyhow::Result<UnixListener> {
    let socket = socket_path(&config.run_dir, iface);
    // We hold the interface lock, so a socket file left here is a dead daemon's.
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot create the control socket {}", socket.display()))?;
    std::fs::set_permissions(
        &socket,
        std::fs::Permissions::from_mode(config.access.socket_mode()),
    )
    .with_context(|| format!("cannot set the mode of {}", socket.display()))?;
    Ok(listener)
}

/// Takes the per-interface lock, so that two daemons never fight over one interface.
///
/// # Errors
/// If another process holds it, or the lock file cannot be opened.
pub fn lock_interface(run_dir: &std::path::Path, iface: &str) -> anyhow::Result<Flock<File>> {
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    let path = run_dir.join(format!("{iface}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            anyhow!(
                "another floodwall daemon already protects {iface} (it holds {})",
                path.display()
            )
        } else {
            anyhow!("cannot lock {}: {errno}", path.display())
        }
    })
}

/// Serves reloads, from SIGHUP and from `floodwall reload`, one at a time.
async fn reload_loop(
    mut requests: mpsc::Receiver<ReloadReply>,
    sighup_tx: mpsc::Sender<ReloadReply>,
    reloader: Option<Arc<Reloader>>,
    mut current: DaemonConfig,
    protected: Vec<Arc<Shared>>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            info!("SIGHUP: reloading the config");
            let (reply, answer) = oneshot::channel();
            if sighup_tx.send(reply).await.is_err() {
                return;
            }
            // The outcome is logged by the reload itself.
            let _ = answer.await;
        }
    });
    while let Some(reply) = requests.recv().await {
        let outcome = match &reloader {
            None => {
                Err("this daemon runs without a config file: there is nothing to reload".to_owned())
            }
            Some(reloader) => {
                let reloader = Arc::clone(reloader);
                let old = current.clone();
                let protected = protected.clone();
                tokio::task::spawn_blocking(move || {
                    let next = reloader()?;
                    let changes = apply_reload(&protected, &old, &next)?;
                    anyhow::Ok((next, changes))
                })
                .await
                .unwrap_or_else(|e| Err(anyhow!("the reload failed: {e}")))
                .map(|(next, changes)| {
                    current = next;
                    changes
                })
                .map_err(|e| format!("{e:#}"))
            }
        };
        match &outcome {
            Ok(changes) if changes.is_empty() => info!("reload: the config is unchanged"),
            Ok(changes) => {
                for line in changes {
                    info!("reload: {line}");
                }
            }
            Err(e) => error!("reload refused, nothing changed: {e}"),
        }
        let _ = reply.send(outcome);
    }
    Ok(())
}

/// The config's list entries to add and remove, by list.
fn list_changes(
    old: &DaemonConfig,
    new: &DaemonConfig,
) -> [(ListKind, Vec<Prefix>, Vec<Prefix>); 2] {
    [
        (ListKind::Allow, &old.allow, &new.allow),
        (ListKind::Deny, &old.deny, &new.deny),
    ]
    .map(|(kind, old, new)| {
        let old_set: HashSet<&Prefix> = old.iter().collect();
        let new_set: HashSet<&Prefix> = new.iter().collect();
        let added: Vec<Prefix> = new
            .iter()
            .filter(|p| !old_set.contains(p))
            .copied()
            .collect();
        let removed: Vec<Prefix> = old
            .iter()
            .filter(|p| !new_set.contains(p))
            .copied()
            .collect();
        (kind, added, removed)
    })
}

/// Applies a reloaded config to every interface, all or nothing; returns the changes.
///
/// # Errors
/// If a setting changed that only a restart can change, or a list change does not fit: then
/// nothing is changed (what was applied before the failure is undone).
fn apply_reload(
    protected: &[Arc<Shared>],
    old: &DaemonConfig,
    new: &DaemonConfig,
) -> anyhow::Result<Vec<String>> {
    let need_restart = old.restart_only_changes(new);
    if !need_restart.is_empty() {
        bail!(
            "{} changed: a reload changes limits, lists and access; this takes a restart",
            need_restart.join(", ")
        );
    }
    let plans = list_changes(old, new);
    // What the operator edited, key by key. Only a daemon with a config file has a reloader,
    // so both sides have one.
    let changes = match (&old.file, &new.file) {
        (Some(old_file), Some(new_file)) => crate::config::diff(old_file, new_file),
        _ => Vec::new(),
    };
    // Undo steps of what was applied, run in reverse if a later step fails.
    let mut undo: Vec<Box<dyn FnOnce() -> anyhow::Result<()> + '_>> = Vec::new();
    let result = (|| {
        for shared in protected {
            for (kind, added, removed) in &plans {
                if !added.is_empty() {
                    // Entries the operator listed by hand before stay when undoing.
                    let before: HashSet<Prefix> =
                        shared.lists.listed(*kind, added)?.into_iter().collect();
                    shared.lists.add(*kind, added, None)?;
                    let fresh: Vec<Prefix> = added
                        .iter()
                        .filter(|p| !before.contains(p))
                        .copied()
                        .collect();
                    undo.push(Box::new(move || {
                        shared
                            .lists
                            .remove_listed(*kind, &fresh)
                            .map(|_| ())
                            .map_err(Into::into)
                    }));
                }
                // An entry the operator already removed by hand is gone either way.
                let removed = shared.lists.remove_listed(*kind, removed)?;
                if !removed.is_empty() {
                    undo.push(Box::new(move || {
                        shared
                            .lists
                            .add(*kind, &removed, None)
                            .map(|_| ())
                            .map_err(Into::into)
                    }));
                }
            }
            sync_list_presence_with(shared, &new.limits)?;
            let previous = *lock(&shared.limits);
            *lock(&shared.limits) = new.limits;
            undo.push(Box::new(move || {
                *lock(&shared.limits) = previous;
                sync_list_presence_with(shared, &previous)
            }));
        }
        anyhow::Ok(())
    })();
    if let Err(e) = result {
        for step in undo.into_iter().rev() {
            if let Err(undo_error) = step() {
                error!("reload: undoing a step failed: {undo_error:#}");
            }
        }
        return Err(e);
    }
    if let Some(shared) = protected.first() {
        *lock(&shared.access) = new.access;
    }
    for shared in protected {
        lock(&shared.blocks).record(EventRecord::now(
            EventKind::ListChange,
            None,
            format!("config reloaded: {} changes", changes.len()),
        ));
    }
    Ok(changes)
}

async fn sample_loop(shared: Arc<Shared>) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
    let mut last_lost = shared.maps.events_lost()?;
    let mut last_count: Option<Instant> = None;
    loop {
        ticker.tick().await;
        if last_count.is_none_or(|at| at.elapsed() >= COUNT_INTERVAL) {
            last_count = Some(Instant::now());
            let counter = Arc::clone(&shared);
            let count = tokio::task::spawn_blocking(move || counter.maps.rebuild_tracked_filter())
                .await
                .map_err(|e| anyhow!("counting the table failed: {e}"))??;
            shared
                .tracked
                .store(count, std::sync::atomic::Ordering::Relaxed);
        }
        let sample = shared.maps.sample()?;
        {
            let mut samples = lock(&shared.samples);
            samples.0 = samples.1.take();
            samples.1 = Some(sample);
        }
        lock(&shared.blocks).expire(sample.at_ns);
        let lost = shared.maps.events_lost()?;
        if lost > last_lost {
            let line = format!("{} events lost: the ring buffer was full", lost - last_lost);
            warn!("{line}");
            lock(&shared.blocks).record(EventRecord::now(EventKind::EventsLost, None, line));
            last_lost = lost;
        }
        let expired = shared.lists.expire(sample.at_ns)?;
        if !expired.is_empty() {
            for prefix in &expired {
                let line = format!("denylist entry {prefix} expired");
                info!("{line}");
                lock(&shared.blocks).record(EventRecord::now(
                    EventKind::Unblock,
                    Some(prefix.to_string()),
                    line,
                ));
            }
            sync_list_presence(&shared)?;
        }
    }
}

async fn serve_metrics(
    addr: Option<std::net::SocketAddr>,
    protected: Vec<Arc<Shared>>,
) -> anyhow::Result<()> {
    let Some(addr) = addr else {
        return std::future::pending().await;
    };
    let read: Arc<metrics::SnapshotFn> = Arc::new(move || {
        protected
            .iter()
            .map(|shared| Ok((shared.iface.clone(), metrics_snapshot(shared)?)))
            .collect()
    });
    metrics::serve(addr, read).await
}

fn metrics_snapshot(shared: &Shared) -> anyhow::Result<metrics::Snapshot> {
    let totals = shared.maps.totals()?;
    let counters = Class::ALL
        .iter()
        .flat_map(|&class| {
            Outcome::ALL.iter().map(move |&outcome| {
                let c = totals.get_class(class, outcome);
                (class.name(), outcome.name(), c.packets, c.bytes)
            })
        })
        .collect();
    let (table_inserts, table_insert_failures) = shared.maps.table_stats()?;
    let mut list_entries = Vec::new();
    for (kind, name) in [(ListKind::Allow, "allow"), (ListKind::Deny, "deny")] {
        let counts = shared.lists.counts(kind)?;
        list_entries.push((name, "ipv4", counts.v4 as u64));
        list_entries.push((name, "ipv6", counts.v6 as u64));
    }
    Ok(metrics::Snapshot {
        counters,
        events_lost: shared.maps.events_lost()?,
        blocked_sources: lock(&shared.blocks).len() as u64,
        table_capacity: u64::from(shared.max_sources),
        tracked_sources: shared.tracked.load(std::sync::atomic::Ordering::Relaxed),
        table_inserts,
        table_insert_failures,
        list_entries,
    })
}

/// Tells the data path which list tries hold entries (it skips empty ones).
fn sync_list_presence(shared: &Shared) -> anyhow::Result<()> {
    let limits = *lock(&shared.limits);
    sync_list_presence_with(shared, &limits)
}

/// [`sync_list_presence`] writing `limits` with it.
fn sync_list_presence_with(shared: &Shared, limits: &Limits) -> anyhow::Result<()> {
    let bits = shared.lists.nonempty()?.flag_bits();
    shared.maps.set_list_presence(bits);
    shared.maps.write_limits(&limits.to_kernel())
}

async fn watch_events(ring: RingBuf<MapData>, shared: Arc<Shared>) -> anyhow::Result<()> {
    // SAFETY: `register` needs the fd to stay open while registered: the ring buffer owns its
    // fd and the AsyncFd owns the ring buffer, so the fd lives exactly as long as the
    // registration.
    let mut ring = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow!("cannot poll the event ring buffer: {e}"))?;
    loop {
        let mut guard = ring
            .readable_mut()
            .await
            .context("polling the event ring buffer failed")?;
        let limits = *lock(&shared.limits);
        while let Some(item) = guard.get_inner_mut().next() {
            match events::decode(&item) {
                Some(event) => lock(&shared.blocks).on_event(&event, &limits),
                None => warn!("ignoring a short event of {} bytes", item.len()),
            }
        }
        guard.clear_ready();
    }
}

async fn serve(listener: UnixListener, shared: Arc<Shared>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener
            .accept()
            .await
            .context("control socket accept failed")?;
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, shared).await {
                log::debug!("control connection: {e:#}");
            }
        });
    }
}

async fn serve_connection(stream: UnixStream, shared: Arc<Shared>) -> anyhow::Result<()> {
    let peer = crate::control::peer_of(&stream)?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64 + 1));
    let mut line = String::new();
    let response = match reader.read_line(&mut line).await {
        Err(e) => Response::Error {
            message: format!("cannot read the request: {e}"),
        },
        Ok(_) if line.len() > MAX_REQUEST_BYTES => Response::Error {
            message: format!("request longer than {MAX_REQUEST_BYTES} bytes"),
        },
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::Error {
                message: format!("invalid request: {e}"),
            },
            Ok(request) if lock(&shared.access).check(&peer, &request).is_err() => {
                Response::Error {
                    message: lock(&shared.access)
                        .check(&peer, &request)
                        .err()
                        .unwrap_or_default(),
                }
            }
            Ok(Request::Reload) => {
                let (reply, answer) = oneshot::channel();
                if shared.reload.send(reply).await.is_err() {
                    Response::Error {
                        message: "the daemon is shutting down".to_owned(),
                    }
                } else {
                    match answer.await {
                        Ok(Ok(changes)) => Response::Reloaded { changes },
                        Ok(Err(message)) => Response::Error { message },
                        Err(_) => Response::Error {
                            message: "the reload was abandoned".to_owned(),
                        },
                    }
                }
            }
            Ok(Request::Events { follow }) => {
                let (backlog, followers) = lock(&shared.blocks).subscribe();
                if follow {
                    return follow_events(write, backlog, followers).await;
                }
                Response::Events { events: backlog }
            }
            Ok(request) => {
                let shared = Arc::clone(&shared);
                tokio::task::spawn_blocking(move || handle(&shared, &request))
                    .await
                    .unwrap_or_else(|e| Err(anyhow!("request handler failed: {e}")))
                    .unwrap_or_else(|e| Response::Error {
                        message: format!("{e:#}"),
                    })
            }
        },
    };
    let mut out = serde_json::to_string(&response).context("cannot encode the response")?;
    out.push('\n');
    write
        .write_all(out.as_bytes())
        .await
        .context("cannot send the response")?;
    Ok(())
}

/// Streams the journal, then each new event, one response line each, until the client
/// goes away.
async fn follow_events(
    mut write: tokio::net::unix::OwnedWriteHalf,
    backlog: Vec<EventRecord>,
    mut followers: tokio::sync::broadcast::Receiver<EventRecord>,
) -> anyhow::Result<()> {
    use tokio::sync::broadcast::error::RecvError;
    let mut events = backlog;
    loop {
        let mut out =
            serde_json::to_string(&Response::Events { events }).context("cannot encode events")?;
        out.push('\n');
        if write.write_all(out.as_bytes()).await.is_err() {
            return Ok(()); // the follower went away
        }
        events = match followers.recv().await {
            Ok(event) => vec![event],
            Err(RecvError::Lagged(skipped)) => vec![EventRecord::now(
                EventKind::EventsLost,
                None,
                format!("{skipped} events skipped: this follower read too slowly"),
            )],
            Err(RecvError::Closed) => return Ok(()),
        };
    }
}

/// Handles one request. Runs on a blocking thread: table walks take a while.
#[expect(
    clippy::too_many_lines,
    reason = "one arm per request, read top to bottom"
)]
fn handle(shared: &Shared, request: &Request) -> anyhow::Result<Response> {
    match request.clone() {
        Request::LimitsShow => Ok(Response::Limits(limits_view(shared, &lock(&shared.limits)))),
        Request::LimitsSet { change } => {
            if change.is_empty() {
                bail!(
                    "nothing to change: give at least one limit flag (see `floodwall limits set --help`)"
                );
            }
            let mut limits = lock(&shared.limits);
            let next = limits.apply(&change)?;
            shared.maps.write_limits(&next.to_kernel())?;
            let changes: Vec<String> = limits
                .differences(&next)
                .iter()
                .map(|(setting, from, to)| format!("{setting} {from} -> {to}"))
                .collect();
            info!("limits changed on {}: {}", shared.iface, changes.join(", "));
            *limits = next;
            Ok(Response::Limits(limits_view(shared, &next)))
        }
        Request::Stats => {
            let current = shared.maps.sample()?;
            let previous = lock(&shared.samples).1;
            // Rates over the last sampling interval: between the sampler's last sample and
            // now (or its last two, if the last one is very recent).
            let (cur, prev) = match previous {
                Some(p) if current.at_ns.saturating_sub(p.at_ns) >= 200_000_000 => {
                    (current, Some(p))
                }
                _ => {
                    let samples = lock(&shared.samples);
                    (samples.1.unwrap_or(current), samples.0)
                }
            };
            #[expect(clippy::cast_precision_loss, reason = "seconds for display")]
            let interval_secs =
                prev.map_or(0.0, |p| cur.at_ns.saturating_sub(p.at_ns) as f64 / 1e9);
            // Totals are as of now, rates as of the interval.
            let outcomes = outcome_stats(&current, &cur, prev.as_ref(), None);
            let classes = Class::ALL
                .iter()
                .map(|&class| ClassStats {
                    class: class.name().to_owned(),
                    outcomes: outcome_stats(&current, &cur, prev.as_ref(), Some(class)),
                })
                .collect();
            Ok(Response::Stats(StatsView {
                classes,
                iface: shared.iface.clone(),
                xdp_mode: shared.attach_mode.to_string(),
                uptime_secs: shared.started.elapsed().as_secs(),
                interval_secs,
                outcomes,
                events_lost: shared.maps.events_lost()?,
                table: {
                    let (inserts, insert_failures) = shared.maps.table_stats()?;
                    TableStats {
                        capacity: shared.max_sources,
                        inserts,
                        insert_failures,
                        evictions: inserts.saturating_sub(u64::from(shared.max_sources)),
                    }
                },
            }))
        }
        Request::Top { limit } => {
            let sources = source_views(shared)?;
            Ok(Response::Sources {
                mode: lock(&shared.limits).mode,
                sources: top_sources(sources, limit),
            })
        }
        Request::BlockedList => {
            let mut sources: Vec<SourceView> = source_views(shared)?
                .into_iter()
                .filter(|s| s.blocked)
                .collect();
            sources.sort_by_key(|s| s.addr);
            Ok(Response::Sources {
                mode: lock(&shared.limits).mode,
                sources,
            })
        }
        Request::ListAdd {
            list,
            prefixes,
            for_ms,
        } => {
            let expires = for_ms
                .map(|ms| {
                    lists::expiry_after(monotonic_now_ns()?, std::time::Duration::from_millis(ms))
                        .map_err(anyhow::Error::from)
                })
                .transpose()?;
            let report = shared.lists.add(list, &prefixes, expires)?;
            sync_list_presence(shared)?;
            let line = format!(
                "{list}: {} added, {} updated, {} unchanged{}",
                report.added,
                report.updated,
                report.unchanged,
                for_ms.map_or(String::new(), |ms| format!(
                    ", expiring in {}",
                    humantime::format_duration(std::time::Duration::from_millis(ms))
                ))
            );
            info!("{line}");
            lock(&shared.blocks).record(EventRecord::now(EventKind::ListChange, None, line));
            Ok(Response::ListChanged {
                list,
                added: report.added,
                updated: report.updated,
                unchanged: report.unchanged,
                removed: 0,
            })
        }
        Request::ListRemove { list, prefixes } => {
            let removed = shared.lists.remove(list, &prefixes)?;
            sync_list_presence(shared)?;
            let line = format!("{list}: {removed} removed");
            info!("{line}");
            lock(&shared.blocks).record(EventRecord::now(EventKind::ListChange, None, line));
            Ok(Response::ListChanged {
                list,
                added: 0,
                updated: 0,
                unchanged: 0,
                removed,
            })
        }
        Request::ListShow { list } => Ok(Response::ListEntries {
            list,
            entries: shared.lists.list(list, monotonic_now_ns()?)?,
        }),
        Request::Events { .. } | Request::Reload => {
            bail!("served by the connection handler")
        }
        Request::BlockedRemove { addr } => {
            let key = addr_key(addr);
            let now = monotonic_now_ns()?;
            match shared.maps.source(&key)? {
                Some(state) if state.blocked_until_ns > now => {
                    shared.maps.remove_source(&key)?;
                    lock(&shared.blocks).on_removed(addr, now);
                    Ok(Response::Unblocked { addr })
                }
                _ => bail!("{addr} is not blocked"),
            }
        }
    }
}

fn limits_view(shared: &Shared, limits: &Limits) -> LimitsView {
    LimitsView {
        iface: shared.iface.clone(),
        effective_burst_packets: limits.effective_burst_packets(),
        effective_burst_bytes: limits.effective_burst_bytes(),
        limits: *limits,
    }
}

fn source_views(shared: &Shared) -> anyhow::Result<Vec<SourceView>> {
    let now = monotonic_now_ns()?;
    Ok(shared
        .maps
        .all_sources()?
        .iter()
        .map(|(key, state)| SourceView::new(key, state, now))
        .collect())
}
