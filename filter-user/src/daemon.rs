//! The daemon: load, attach, serve the control socket, log blocks, detach on shutdown.

use std::{
    fs::{File, OpenOptions},
    future::Future,
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use aya::maps::{MapData, RingBuf};
use filter_common::{Class, Outcome, map_names};
use log::{info, warn};
use nix::fcntl::{Flock, FlockArg};
use tokio::{
    io::unix::AsyncFd,
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
};

use crate::{
    config::Limits,
    control::{
        LimitsView, MAX_REQUEST_BYTES, Request, Response, StatsView, TableStats, socket_path,
    },
    events::{self, BlockBook, EventKind, EventRecord},
    lists::{self, ListKind, ListMaps},
    loader::{self, AttachMode, LoadOptions},
    maps::{FilterMaps, monotonic_now_ns},
    metrics,
    stats::{ClassStats, Sample, SourceView, addr_key, outcome_stats, top_sources},
};

/// How often the daemon samples the counters for `stats` rates and expires blocks.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// What `floodwall run` was asked to do.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Interface to protect.
    pub iface: String,
    /// XDP attach mode.
    pub attach_mode: AttachMode,
    /// Initial limits.
    pub limits: Limits,
    /// Capacity of the per-source table.
    pub max_sources: u32,
    /// Capacity of each list trie.
    pub list_capacity: u32,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Directory of the control socket and lock file.
    pub run_dir: PathBuf,
}

/// What the tasks of a running daemon share.
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
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind, still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the daemon until `shutdown` completes, then detaches the program.
///
/// # Errors
/// If the program cannot be loaded or attached, the control socket cannot be created, or
/// another daemon protects the same interface.
pub async fn run(config: DaemonConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // Checked before taking the lock, so a typo leaves no lock file behind.
    if nix::net::if_::if_nametoindex(config.iface.as_str()).is_err() {
        bail!("interface {} does not exist", config.iface);
    }
    let _lock = lock_interface(&config)?;
    // Name what an old kernel lacks before the verifier gets a chance to say it obscurely.
    let probe = crate::probe::probe();
    probe.log_fallbacks();
    probe.require()?;
    let mut loaded = loader::load(LoadOptions {
        max_sources: config.max_sources,
        test_clock: false,
        list_capacity: config.list_capacity,
        ..LoadOptions::default()
    })?;
    let lists = ListMaps::take(&mut loaded.ebpf)?;
    loaded.maps.write_limits(&config.limits.to_kernel())?;
    let (link, attach_mode) = loader::attach(&mut loaded.ebpf, &config.iface, config.attach_mode)?;
    info!(
        "floodwall protects {} ({} mode, table of {} sources): {}",
        config.iface,
        attach_mode,
        config.max_sources,
        describe_limits(&config.limits)
    );
    let ring = RingBuf::try_from(
        loaded
            .ebpf
            .take_map(map_names::EVENTS)
            .ok_or_else(|| anyhow!("the XDP object has no map named {}", map_names::EVENTS))?,
    )
    .context("map FW_EVENTS is not a ring buffer")?;

    let shared = Arc::new(Shared {
        iface: config.iface.clone(),
        attach_mode,
        started: Instant::now(),
        maps: loaded.maps,
        lists,
        max_sources: config.max_sources,
        limits: Mutex::new(config.limits),
        samples: Mutex::new((None, None)),
        blocks: Mutex::new(BlockBook::default()),
    });

    let socket = socket_path(&config.run_dir, &config.iface);
    // We hold the interface lock, so a socket file left here is a dead daemon's.
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot create the control socket {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set the mode of {}", socket.display()))?;

    let result = tokio::select! {
        () = shutdown => Ok(()),
        r = serve(listener, Arc::clone(&shared)) => r,
        r = watch_events(ring, Arc::clone(&shared)) => r,
        r = sample_loop(Arc::clone(&shared)) => r,
        r = serve_metrics(config.metrics_addr, Arc::clone(&shared)) => r,
    };
    let _ = std::fs::remove_file(&socket);
    let detached = loader::xdp_program(&mut loaded.ebpf, filter_common::PROGRAM_NAME)
        .and_then(|p| p.detach(link).context("failed to detach"));
    match &detached {
        Ok(()) => info!("detached from {}", config.iface),
        Err(e) => warn!("{e:#}"),
    }
    result.and(detached)
}

/// Takes the per-interface lock, so that two daemons never fight over one interface.
fn lock_interface(config: &DaemonConfig) -> anyhow::Result<Flock<File>> {
    std::fs::create_dir_all(&config.run_dir)
        .with_context(|| format!("cannot create {}", config.run_dir.display()))?;
    let path = config.run_dir.join(format!("{}.lock", config.iface));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            anyhow!(
                "another floodwall daemon already protects {} (it holds {})",
                config.iface,
                path.display()
            )
        } else {
            anyhow!("cannot lock {}: {errno}", path.display())
        }
    })
}

fn describe_limits(limits: &Limits) -> String {
    let rate = |r: crate::config::Rate, unit: &str| match r {
        crate::config::Rate::Unlimited => format!("no {unit} limit"),
        crate::config::Rate::PerSecond(n) => format!("{n} {unit}/s"),
    };
    format!(
        "{} (burst {}), {} (burst {}), block for {}, {}",
        rate(limits.pps, "packets"),
        limits
            .effective_burst_packets()
            .map_or_else(|| "-".to_owned(), |b| b.to_string()),
        rate(limits.bps, "bit"),
        limits
            .effective_burst_bytes()
            .map_or_else(|| "-".to_owned(), |b| format!("{b} bytes")),
        humantime::format_duration(limits.block_for()),
        limits.mode,
    )
}

async fn sample_loop(shared: Arc<Shared>) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
    let mut last_lost = shared.maps.events_lost()?;
    loop {
        ticker.tick().await;
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
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let Some(addr) = addr else {
        return std::future::pending().await;
    };
    let iface = shared.iface.clone();
    let read: Arc<metrics::SnapshotFn> = Arc::new(move || metrics_snapshot(&shared));
    metrics::serve(addr, iface, read).await
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
        table_inserts,
        table_insert_failures,
        list_entries,
    })
}

/// Tells the data path which list tries hold entries (it skips empty ones).
fn sync_list_presence(shared: &Shared) -> anyhow::Result<()> {
    let bits = shared.lists.nonempty()?.flag_bits();
    shared.maps.set_list_presence(bits);
    let limits = *lock(&shared.limits);
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
    let uid = stream
        .peer_cred()
        .context("cannot read the peer's credentials")?
        .uid();
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
            Ok(request) if request.is_change() && uid != 0 => Response::Error {
                message: format!(
                    "permission denied: only root may change floodwall (you are uid {uid})"
                ),
            },
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
            info!(
                "limits changed on {}: {} (was: {})",
                shared.iface,
                describe_limits(&next),
                describe_limits(&limits)
            );
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
        Request::Events { .. } => bail!("events are served by the connection handler"),
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
