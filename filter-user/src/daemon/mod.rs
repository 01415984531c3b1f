//! The daemon: load, attach (or take over what an earlier daemon left attached), serve the
//! control sockets, log blocks, reload its config. It never detaches: the program and its
//! state stay pinned when the daemon stops (see [`crate::pin`]).
//!
//! - this module: [`run`], the lifecycle, and what the tasks of one interface share;
//! - `interface`: protect one interface: load, fill the maps, attach or take over;
//! - `reload`: reloads, applied to every interface all or nothing;
//! - `tasks`: the background tasks: counter samples, block events, metrics;
//! - `server`: the control server: accept, check access, answer requests;
//! - `traffic`: packet samples, the baseline, attacks and their signatures;
//! - `upstream`: announcements to a BGP speaker (`[upstream]`);
//! - `fleet`: blocks and signatures shared with other nodes through a broker (`[fleet]`).

use std::{
    collections::HashSet,
    fs::{File, OpenOptions},
    future::Future,
    os::unix::fs::PermissionsExt as _,
    sync::{Arc, Mutex, MutexGuard, PoisonError, atomic::AtomicU64},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use log::info;
use nix::fcntl::{Flock, FlockArg};
use tokio::{net::UnixListener, sync::mpsc, task::JoinSet};

use crate::{
    config::{DaemonConfig, Reloader},
    control::{Access, socket_path},
    events::BlockBook,
    limits::Limits,
    lists::ListMaps,
    loader::AttachMode,
    maps::FilterMaps,
    stats::Sample,
};

mod fleet;
mod interface;
mod reload;
mod rules;
mod server;
mod syn;
mod tasks;
mod traffic;
mod upstream;

use reload::ReloadReply;

/// How often the daemon samples the counters for `stats` rates and expires blocks.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// How often the daemon walks the table: to count its sources (the tracked-sources gauge)
/// and to rebuild the tracked-source filter from it (see
/// [`FilterMaps::maintain_table`]). A walk of up to a million keys, too dear for
/// every second.
pub const COUNT_INTERVAL: Duration = Duration::from_secs(10);

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
    tracked: AtomicU64,
    /// Who may read and change what (reloadable, the same on every interface).
    access: Arc<Mutex<Access>>,
    /// Where `floodwall reload` requests go.
    reload: mpsc::Sender<ReloadReply>,
    /// SYN protection: the setting and what it protects now.
    syn: Mutex<syn::SynState>,
    /// Whether the program has the SYN-cookie stage: `Err` says why not.
    syn_cookies: Result<(), String>,
    /// Whether SYN protection may set the namespace's sysctl.
    syn_sysctls: crate::syn::SysctlPolicy,
    /// The rules and their maps.
    rules: Mutex<rules::RulesState>,
    /// The baseline and the attacks (`traffic`).
    detector: Mutex<crate::traffic::detect::Detector>,
    /// Announcements upstream, the same for every interface; `None`: no `[upstream]`.
    upstream: Option<Arc<upstream::Upstream>>,
    /// Sharing with the fleet, the same for every interface; `None`: no `[fleet]`.
    fleet: Option<Arc<fleet::Fleet>>,
}

/// The cookie stage's counters and the kernel's own cookie counters, for `stats` and the
/// metrics. The kernel's are those of the daemon's namespace, the interface's.
fn syn_counters(shared: &Shared) -> anyhow::Result<Vec<(&'static str, u64)>> {
    let mut counters: Vec<(&'static str, u64)> = shared
        .maps
        .syn_stats()?
        .into_iter()
        .map(|(stat, count)| (stat.name(), count))
        .collect();
    // A namespace without /proc/net/netstat has no kernel counters to show.
    if let Ok(kernel) = crate::syn::host::KernelCookies::read() {
        counters.extend([
            ("kernel_syncookies_sent", kernel.sent),
            ("kernel_syncookies_recv", kernel.recv),
            ("kernel_syncookies_failed", kernel.failed),
            ("kernel_listen_overflows", kernel.listen_overflows),
        ]);
    }
    Ok(counters)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind, still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// The allowlist's prefixes now, which every announcement upstream and every peer's
    /// entry is checked against.
    fn allowlist_prefixes(&self) -> anyhow::Result<Vec<crate::lists::Prefix>> {
        let now_ns = crate::maps::monotonic_now_ns()?;
        Ok(self
            .lists
            .list(crate::lists::ListKind::Allow, now_ns)?
            .into_iter()
            .map(|e| e.prefix)
            .collect())
    }

    /// Tells the data path which list tries hold entries (it skips empty ones).
    fn sync_list_presence(&self) -> anyhow::Result<()> {
        let limits = *lock(&self.limits);
        self.sync_list_presence_with(&limits)
    }

    /// [`Shared::sync_list_presence`], writing `limits` with it. The rules' bit goes with
    /// the lists' (it says the same: a stage with nothing to do is skipped).
    fn sync_list_presence_with(&self, limits: &Limits) -> anyhow::Result<()> {
        let rules = if lock(&self.rules).any() {
            filter_common::list_flags::RULES
        } else {
            0
        };
        let bits = self.lists.nonempty()?.flag_bits() | rules;
        self.maps.set_list_presence(bits);
        self.maps.write_limits(&limits.to_kernel())
    }
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

    let upstream = config
        .upstream
        .clone()
        .map(|u| upstream::Upstream::start(u, &config.run_dir))
        .transpose()?;
    let fleet = config
        .fleet
        .clone()
        .map(|f| Arc::new(fleet::Fleet::new(f, &config.run_dir)));
    let access = Arc::new(Mutex::new(config.access));
    let (reload_tx, reload_rx) = mpsc::channel::<ReloadReply>(4);
    let mut tasks = JoinSet::new();
    let mut protected = Vec::new();
    let mut rings = Vec::new();
    for spec in &config.interfaces {
        let (shared, ring, traffic) = interface::protect(
            spec,
            &config,
            Arc::clone(&access),
            reload_tx.clone(),
            upstream.clone(),
            fleet.clone(),
        )?;
        protected.push(shared);
        rings.push((ring, traffic));
    }
    // The sockets come last: a socket means its daemon protects every interface it was
    // given.
    for (shared, (ring, traffic)) in protected.iter().zip(rings) {
        let listener = bind_socket(&config, &shared.iface)?;
        tasks.spawn(server::serve(listener, Arc::clone(shared)));
        tasks.spawn(tasks::watch_events(ring, Arc::clone(shared)));
        tasks.spawn(tasks::sample_loop(Arc::clone(shared)));
        tasks.spawn(traffic::traffic_loop(
            traffic,
            Arc::clone(shared),
            traffic::baseline_path(&config.run_dir, &shared.iface),
        ));
    }
    tasks.spawn(tasks::serve_metrics(config.metrics_addr, protected.clone()));
    if let Some(upstream) = &upstream {
        tasks.spawn(upstream::reconcile_loop(Arc::clone(upstream)));
        tasks.spawn(upstream::auto_loop(Arc::clone(upstream), protected.clone()));
    }
    if let Some(fleet) = &fleet {
        tasks.spawn(fleet::fleet_loop(Arc::clone(fleet), protected.clone()));
    }
    tasks.spawn(reload::reload_loop(
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
    if let Some(upstream) = &upstream {
        upstream.stop().await;
    }
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
