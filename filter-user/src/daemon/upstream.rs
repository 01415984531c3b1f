//! Announcements upstream, in the daemon: the book (kept in the run directory, so that it
//! outlives the process), the loop that makes the speaker announce what the book says
//! (level-triggered: each pass reads the speaker back and corrects it, so a lost command
//! or a restarted speaker heals itself), the requests, and the stop.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use log::{info, warn};
use tokio::sync::Notify;

use super::{Shared, lock};
use crate::{
    control::Response,
    lists::{ListKind, Prefix},
    upstream::{
        Announced, FlowRoute, Gobgp, NewAnnouncement, OnStop, Origin, Route, SpeakerView,
        UpstreamBook, UpstreamConfig, UpstreamError, UpstreamView, plan,
    },
};

/// Longest a clean stop waits for the speaker to withdraw.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon's upstream state, shared by every interface's control socket.
pub(crate) struct Upstream {
    config: UpstreamConfig,
    speaker: Gobgp,
    state_path: PathBuf,
    book: Mutex<UpstreamBook>,
    /// The speaker's last read-back, and how it went.
    last: Mutex<(Option<Announced>, SpeakerView)>,
    /// Wakes the loop after a change, so that it does not wait for its next pass.
    wake: Notify,
}

/// Now, in Unix milliseconds.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Upstream {
    /// The upstream state of a daemon whose run directory is `run_dir`: the book its last
    /// run left, if any.
    ///
    /// # Errors
    /// If the state file exists and cannot be read.
    pub(crate) fn start(config: UpstreamConfig, run_dir: &Path) -> anyhow::Result<Arc<Self>> {
        let state_path = run_dir.join("upstream.json");
        let book = UpstreamBook::load(&state_path)?;
        if !book.announcements().is_empty() {
            info!(
                "upstream: {} announcements from the last run ({}); expired ones are withdrawn",
                book.announcements().len(),
                state_path.display()
            );
        }
        if config.dry_run {
            info!("upstream: dry run: announcements are computed and shown, none is sent");
        }
        Ok(Arc::new(Self {
            speaker: config.speaker(),
            config,
            state_path,
            book: Mutex::new(book),
            last: Mutex::new((None, SpeakerView::default())),
            wake: Notify::new(),
        }))
    }

    /// `upstream show`.
    pub(crate) fn view(&self) -> UpstreamView {
        let book = lock(&self.book);
        let last = lock(&self.last);
        UpstreamView::new(
            &self.config,
            &book,
            last.0.as_ref(),
            last.1.clone(),
            now_ms(),
        )
    }

    /// Changes the book with `change`, and keeps it only if it is saved: all or nothing.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut UpstreamBook) -> Result<T, UpstreamError>,
    ) -> anyhow::Result<T> {
        let mut book = lock(&self.book);
        let mut next = book.clone();
        let out = change(&mut next)?;
        next.save(&self.state_path)?;
        *book = next;
        drop(book);
        self.wake.notify_one();
        Ok(out)
    }

    /// One pass: read the speaker back, announce what is missing, withdraw what ended,
    /// forget what is gone.
    async fn reconcile(&self) {
        let announced = match self.speaker.announced().await {
            Ok(a) => a,
            Err(e) => {
                let message = format!("{e:#}");
                let mut last = lock(&self.last);
                if last.1.error.as_deref() != Some(&message) {
                    warn!("upstream: the speaker cannot be read: {message}");
                }
                last.1 = SpeakerView {
                    reachable: false,
                    error: Some(message),
                    foreign_routes: 0,
                };
                return;
            }
        };
        let now = now_ms();
        let todo = if self.config.dry_run {
            crate::upstream::Plan::default()
        } else {
            plan(&lock(&self.book), &self.config, &announced, now)
        };
        let mut error = None;
        for route in &todo.add {
            match self.speaker.add(route).await {
                Ok(()) => info!("upstream: announced {route}"),
                Err(e) => error = Some(format!("{e:#}")),
            }
        }
        for route in &todo.withdraw {
            match self.speaker.withdraw(route).await {
                Ok(()) => info!("upstream: withdrew {route}"),
                Err(e) => error = Some(format!("{e:#}")),
            }
        }
        let announced = if todo.add.is_empty() && todo.withdraw.is_empty() {
            announced
        } else {
            match self.speaker.announced().await {
                Ok(a) => a,
                Err(e) => {
                    error = Some(format!("{e:#}"));
                    announced
                }
            }
        };
        if let Some(e) = &error {
            warn!("upstream: {e}");
        }
        {
            let mut book = lock(&self.book);
            let before = book.announcements().len();
            // In dry run nothing was sent: what ended is simply gone.
            let sent = if self.config.dry_run {
                &Announced::default()
            } else {
                &announced
            };
            book.forget_gone(&self.config, sent, now);
            if book.announcements().len() != before
                && let Err(e) = book.save(&self.state_path)
            {
                warn!("upstream: {e:#}");
            }
            let routes: Vec<&Route> = book.announcements().iter().map(|a| &a.route).collect();
            let foreign = announced.foreign(&routes);
            *lock(&self.last) = (
                Some(announced),
                SpeakerView {
                    reachable: true,
                    error,
                    foreign_routes: foreign,
                },
            );
        }
    }

    /// What a clean stop does: withdraw everything (bounded in time), or keep it.
    pub(crate) async fn stop(&self) {
        if self.config.dry_run {
            return;
        }
        match self.config.on_stop {
            OnStop::Keep => {
                let n = lock(&self.book).announcements().len();
                if n > 0 {
                    info!(
                        "upstream: {n} routes stay announced until their expiry \
                         (upstream.on_stop = \"keep\"); the next start enforces it"
                    );
                }
            }
            OnStop::Withdraw => {
                lock(&self.book).withdraw_all_now(now_ms());
                if tokio::time::timeout(STOP_TIMEOUT, self.reconcile())
                    .await
                    .is_err()
                {
                    warn!("upstream: the speaker did not withdraw within {STOP_TIMEOUT:?}");
                }
                if let Err(e) = lock(&self.book).save(&self.state_path) {
                    warn!("upstream: {e:#}");
                }
            }
        }
    }
}

/// The loop: a pass every `reconcile_every`, and at once after a change.
pub(super) async fn reconcile_loop(upstream: Arc<Upstream>) -> anyhow::Result<()> {
    loop {
        upstream.reconcile().await;
        tokio::select! {
            () = tokio::time::sleep(upstream.config.reconcile_every) => {}
            () = upstream.wake.notified() => {}
        }
    }
}

/// What `upstream announce` asks.
pub(crate) enum AnnounceWhat {
    /// A rule's text.
    Rule(String),
    /// An existing rule's match.
    RuleId(u32),
    /// A blackhole for one address.
    Blackhole(IpAddr),
}

fn upstream_of(shared: &Shared) -> Result<&Arc<Upstream>, UpstreamError> {
    shared.upstream.as_ref().ok_or(UpstreamError::Off)
}

/// `upstream show`.
pub(super) fn show(shared: &Shared) -> anyhow::Result<Response> {
    Ok(Response::Upstream(upstream_of(shared)?.view()))
}

/// `upstream announce`.
pub(super) fn announce(
    shared: &Shared,
    what: AnnounceWhat,
    to: Option<Prefix>,
    for_ms: Option<u64>,
) -> anyhow::Result<Response> {
    let upstream = upstream_of(shared)?;
    let (route, origin) = match what {
        AnnounceWhat::Rule(text) => {
            let spec = text.parse().map_err(|e| anyhow::anyhow!("`{text}`: {e}"))?;
            (
                Route::Flowspec(FlowRoute::from_rule(&spec, to)?),
                Origin::Operator,
            )
        }
        AnnounceWhat::RuleId(id) => {
            let spec = lock(&shared.rules).spec(id).ok_or_else(|| {
                anyhow::anyhow!("no rule has id {id} (see `floodwall rules list`)")
            })?;
            (
                Route::Flowspec(FlowRoute::from_rule(&spec, to)?),
                Origin::Rule(id),
            )
        }
        AnnounceWhat::Blackhole(addr) => {
            if to.is_some() {
                anyhow::bail!("`--to` goes with a rule, not with `--blackhole`");
            }
            (
                Route::Blackhole {
                    addr,
                    community: upstream.config.blackhole_community,
                },
                Origin::Operator,
            )
        }
    };
    let allowlist: Vec<Prefix> = shared
        .lists
        .list(ListKind::Allow, crate::maps::monotonic_now_ns()?)?
        .into_iter()
        .map(|e| e.prefix)
        .collect();
    let text = route.to_string();
    let note = match &route {
        Route::Blackhole { addr, .. } => Some(format!(
            "the upstream router drops ALL traffic to {addr}: this takes {addr} offline \
             until the route ends"
        )),
        Route::Flowspec(_) => None,
    };
    let new = NewAnnouncement {
        route,
        origin,
        for_ms,
    };
    let id = upstream.change(|book| book.announce(&upstream.config, new, &allowlist, now_ms()))?;
    info!("upstream: announcement {id} asked: {text}");
    Ok(Response::UpstreamAnnounced {
        id,
        route: text,
        dry_run: upstream.config.dry_run,
        note,
    })
}

/// `upstream withdraw`.
pub(super) fn withdraw(shared: &Shared, ids: &[u32]) -> anyhow::Result<Response> {
    let upstream = upstream_of(shared)?;
    if ids.is_empty() {
        anyhow::bail!("no announcement given");
    }
    upstream.change(|book| book.withdraw(ids, now_ms()))?;
    info!("upstream: withdrawal of {ids:?} asked");
    Ok(Response::UpstreamWithdrawn { ids: ids.to_vec() })
}
