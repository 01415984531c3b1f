//! Announcements upstream, in the daemon: the book (kept in the run directory, so that it
//! outlives the process), the loop that makes the speaker announce what the book says
//! (level-triggered: each pass reads the speaker back and corrects it, so a lost command
//! or a restarted speaker heals itself), the requests, and the stop.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use log::{info, warn};
use tokio::sync::Notify;

use super::{Shared, lock};
use crate::{
    clock::unix_now_ms,
    control::Response,
    lists::Prefix,
    upstream::{
        Announced, FlowRoute, Gobgp, HeldBackView, NewAnnouncement, OnStop, Origin, Route, Safety,
        SpeakerView, UpstreamBook, UpstreamConfig, UpstreamError, UpstreamView, plan,
    },
};

/// An automatic announcement: interface, signature, destination (`None`: the interface has
/// no protected address).
type AutoKey = (String, u32, Option<Prefix>);

/// What became of an automatic announcement tried.
#[derive(Clone, Debug)]
enum AutoTried {
    /// Announced, or refused for good (it is not tried again while its signature lasts).
    Settled,
    /// Held back by a cap, or by an allowlist that could not be read: tried again each
    /// second, and shown by `upstream show` (logged once).
    HeldBack(HeldBackView),
}

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
    /// Announcements refused since the start, by safety rule.
    refused: Mutex<BTreeMap<String, u64>>,
    /// The automatic announcements tried: (interface, signature, destination), and whether
    /// a cap held them back (they are tried again each second, logged once).
    auto_tried: Mutex<HashMap<AutoKey, AutoTried>>,
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
            refused: Mutex::new(BTreeMap::new()),
            auto_tried: Mutex::new(HashMap::new()),
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
            lock(&self.refused).clone(),
            lock(&self.auto_tried)
                .values()
                .filter_map(|t| match t {
                    AutoTried::HeldBack(view) => Some(view.clone()),
                    AutoTried::Settled => None,
                })
                .collect(),
            unix_now_ms(),
        )
    }

    /// Changes the book with `change`, and keeps it only if it is saved: all or nothing.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut UpstreamBook) -> Result<T, UpstreamError>,
    ) -> anyhow::Result<T> {
        let mut book = lock(&self.book);
        let mut next = book.clone();
        let out = change(&mut next).inspect_err(|e| {
            if let UpstreamError::Refused { rule, .. } = e {
                *lock(&self.refused)
                    .entry(rule.name().to_owned())
                    .or_default() += 1;
            }
        })?;
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
        let now = unix_now_ms();
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
                lock(&self.book).withdraw_all_now(unix_now_ms());
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
    let allowlist = shared.allowlist_prefixes()?;
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
    let id =
        upstream.change(|book| book.announce(&upstream.config, new, &allowlist, unix_now_ms()))?;
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
    upstream.change(|book| book.withdraw(ids, unix_now_ms()))?;
    info!("upstream: withdrawal of {ids:?} asked");
    Ok(Response::UpstreamWithdrawn { ids: ids.to_vec() })
}

/// The automatic announcements: every second, on each interface receiving more than
/// `upstream.auto_above`, its signatures in force are announced for its addresses inside
/// the protected prefixes; an automatic announcement is withdrawn with its signature.
pub(super) async fn auto_loop(
    upstream: Arc<Upstream>,
    protected: Vec<Arc<Shared>>,
) -> anyhow::Result<()> {
    let Some(above) = upstream.config.auto_above else {
        return std::future::pending().await;
    };
    let thresholds: Vec<Option<u64>> = protected
        .iter()
        .map(|shared| {
            let bps = above.bps(line_rate_bps(&shared.iface));
            match bps {
                Some(bps) => info!(
                    "upstream: {}'s signatures go upstream by themselves above {bps} bits/s",
                    shared.iface
                ),
                None => warn!(
                    "upstream: {} reports no line rate: upstream.auto_above = {above:?} \
                     cannot apply to it (give a bit rate instead)",
                    shared.iface
                ),
            }
            bps
        })
        .collect();
    let mut tick = tokio::time::interval(super::SAMPLE_INTERVAL);
    loop {
        tick.tick().await;
        for (shared, bps) in protected.iter().zip(&thresholds) {
            if let Some(bps) = bps {
                upstream.auto(shared, *bps);
            }
        }
    }
}

/// The interface's line rate in bits a second, as its driver reports it
/// (`/sys/class/net/IFACE/speed`, in Mbit/s; -1 or missing: unknown).
fn line_rate_bps(iface: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/speed"))
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|mbps| *mbps > 0)
        .map(|mbps| mbps * 1_000_000)
}

/// Bits a second the interface received over the last sample interval (every packet the
/// program saw, whatever it decided).
fn received_bps(shared: &Shared) -> Option<u64> {
    let samples = lock(&shared.samples);
    let (Some(before), Some(now)) = (&samples.0, &samples.1) else {
        return None;
    };
    let bytes = |s: &crate::stats::Sample| -> u64 {
        filter_common::Outcome::ALL
            .iter()
            .map(|o| s.totals.get(*o).bytes)
            .sum()
    };
    let elapsed_ns = now.at_ns.checked_sub(before.at_ns).filter(|ns| *ns > 0)?;
    let bits = bytes(now).saturating_sub(bytes(before)).saturating_mul(8);
    Some(
        u64::try_from(u128::from(bits) * 1_000_000_000 / u128::from(elapsed_ns))
            .unwrap_or(u64::MAX),
    )
}

/// The signatures in force on `shared` (`in_force`: their rules) as a router upstream can
/// match them (see [`crate::traffic::mine::upstream_form`]), with the action they have
/// here; `None` for one that cannot go upstream.
fn upstream_forms(
    shared: &Shared,
    in_force: &[(u32, crate::rules::RuleSpec)],
) -> Vec<(u32, Option<crate::rules::RuleSpec>)> {
    let detector = lock(&shared.detector);
    detector
        .attacks()
        .iter()
        .filter(|a| a.ended.is_none())
        .flat_map(|a| a.signatures.iter().map(move |s| (a, s)))
        .filter_map(|(attack, record)| {
            let (_, installed) = in_force.iter().find(|(id, _)| *id == record.rule_id)?;
            let form = crate::traffic::mine::upstream_form(
                &record.signature,
                detector.baseline.get(&attack.service),
            )
            .map(|spec| crate::rules::RuleSpec {
                action: installed.action,
                ..spec
            });
            Some((record.rule_id, form))
        })
        .collect()
}

/// The interface's own addresses inside the protected prefixes, as host prefixes.
fn protected_addresses(iface: &str, protected: &[Prefix]) -> Vec<Prefix> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out: Vec<Prefix> = addrs
        .filter(|a| a.interface_name == iface)
        .filter_map(|a| {
            let addr = a.address?;
            let ip: IpAddr = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(addr.as_sockaddr_in6()?.ip())
            };
            Some(Prefix::host(ip))
        })
        .filter(|p| protected.iter().any(|q| q.covers(p)))
        .collect();
    out.sort_unstable_by_key(ToString::to_string);
    out.dedup();
    out
}

impl Upstream {
    /// Withdraws the automatic announcements of `shared`'s signatures that ended, whatever
    /// the rate.
    fn withdraw_ended(
        &self,
        shared: &Shared,
        signatures: &[(u32, crate::rules::RuleSpec)],
        now: u64,
    ) {
        let ended: Vec<u32> = lock(&self.book)
            .announcements()
            .iter()
            .filter(|a| a.withdrawn_ms.is_none() && a.live(now, self.config.min_hold))
            .filter(|a| match &a.origin {
                Origin::Signature { iface, rule } if *iface == shared.iface => {
                    !signatures.iter().any(|(id, _)| id == rule)
                }
                _ => false,
            })
            .map(|a| a.id)
            .collect();
        if ended.is_empty() {
            return;
        }
        match self.change(|book| book.withdraw(&ended, now)) {
            Ok(()) => info!(
                "upstream: signatures ended on {}: withdrawing {ended:?}",
                shared.iface
            ),
            Err(e) => warn!("upstream: {e:#}"),
        }
    }

    fn auto(&self, shared: &Shared, above_bps: u64) {
        let in_force = lock(&shared.rules).signatures();
        let now = unix_now_ms();
        self.withdraw_ended(shared, &in_force, now);
        // A signature that ended is no longer wanted upstream, held back or not.
        lock(&self.auto_tried).retain(|(iface, rule, dst), _| {
            *iface != shared.iface || dst.is_none() || in_force.iter().any(|(id, _)| id == rule)
        });
        if in_force.is_empty() || received_bps(shared).is_none_or(|bps| bps <= above_bps) {
            return;
        }
        let signatures = upstream_forms(shared, &in_force);
        let addresses = protected_addresses(&shared.iface, &self.config.protected);
        if addresses.is_empty() {
            let mut tried = lock(&self.auto_tried);
            if tried
                .insert((shared.iface.clone(), 0, None), AutoTried::Settled)
                .is_none()
            {
                warn!(
                    "upstream: {} receives over upstream.auto_above, but has no address inside \
                     the protected prefixes: nothing to announce",
                    shared.iface
                );
            }
            return;
        }
        for (rule, spec) in signatures {
            for dst in &addresses {
                self.auto_one(shared, rule, spec.as_ref(), *dst, now);
            }
        }
    }

    /// Announces signature `rule` (in its upstream form `spec`, if it has one) for `dst`,
    /// unless it was tried already.
    fn auto_one(
        &self,
        shared: &Shared,
        rule: u32,
        spec: Option<&crate::rules::RuleSpec>,
        dst: Prefix,
        now: u64,
    ) {
        // Each (signature, address) is tried once, or each second while a cap
        // holds it back (logged once).
        let key = (shared.iface.clone(), rule, Some(dst));
        let held_before = match lock(&self.auto_tried).get(&key) {
            Some(AutoTried::Settled) => return,
            Some(AutoTried::HeldBack(_)) => true,
            None => false,
        };
        let origin = Origin::Signature {
            iface: shared.iface.clone(),
            rule,
        };
        let flow = spec
            .ok_or_else(|| {
                UpstreamError::Inexpressible(
                    "without the fields FlowSpec lacks (TTL, payload, known source) \
                     it would match normal traffic"
                        .to_owned(),
                )
            })
            .and_then(|spec| FlowRoute::from_rule(spec, Some(dst)));
        let route = match flow {
            Ok(flow) => Route::Flowspec(flow),
            Err(e) => {
                lock(&self.auto_tried).insert(key, AutoTried::Settled);
                warn!(
                    "upstream: signature {rule} on {} is not announced: {e}",
                    shared.iface
                );
                return;
            }
        };
        let held = |by: &str| {
            AutoTried::HeldBack(HeldBackView {
                route: route.to_string(),
                origin: origin.to_string(),
                by: by.to_owned(),
            })
        };
        // The allowlist always wins: unread, nothing is announced.
        let allowlist = match shared.allowlist_prefixes() {
            Ok(allowlist) => allowlist,
            Err(e) => {
                lock(&self.auto_tried).insert(key, held("an unreadable allowlist"));
                if !held_before {
                    warn!(
                        "upstream: signature {rule} on {} is not announced while the \
                         allowlist cannot be read: {e:#}",
                        shared.iface
                    );
                }
                return;
            }
        };
        let text = route.to_string();
        let tried_with = held("");
        let new = NewAnnouncement {
            route,
            origin,
            for_ms: None,
        };
        let result = self.change(|book| book.announce(&self.config, new, &allowlist, now));
        let cap = match result
            .as_ref()
            .map_err(|e| e.downcast_ref::<UpstreamError>())
        {
            Err(Some(UpstreamError::Refused {
                rule: cap @ (Safety::MaxRoutes | Safety::MaxNewPerMinute),
                ..
            })) => Some(*cap),
            _ => None,
        };
        let tried = match (cap, tried_with) {
            (Some(cap), AutoTried::HeldBack(view)) => AutoTried::HeldBack(HeldBackView {
                by: cap.name().to_owned(),
                ..view
            }),
            _ => AutoTried::Settled,
        };
        lock(&self.auto_tried).insert(key, tried);
        match result {
            Ok(id) => info!(
                "upstream: {} receives over upstream.auto_above: announcement {id} \
                 for signature {rule}: {text}",
                shared.iface
            ),
            Err(_) if held_before && cap.is_some() => {}
            Err(e) => warn!(
                "upstream: signature {rule} on {} is not announced: {e:#}",
                shared.iface
            ),
        }
    }
}
