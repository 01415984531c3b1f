//! Mitigations announced upstream: FlowSpec routes (RFC 8955) made from rules, and blackhole
//! routes (RFC 7999) for single addresses, sent to the upstream router by a GoBGP daemon
//! that floodwall drives (`[upstream]` in the config file).
//!
//! Plain data here, the speaker apart:
//! - this module: the configuration ([`UpstreamConfig`]), the book of announcements
//!   ([`UpstreamBook`]: what the operator asked, checked against every safety rule before
//!   it is kept) and [`plan`], which compares the book with what the speaker announces and
//!   says what to add and withdraw;
//! - `flowspec`: a route in the `gobgp` client's words and in a normal form;
//! - `gobgp`: the speaker, through the `gobgp` client (GoBGP's API), with a time bound on
//!   every call.
//!
//! # Safety
//! Everything is checked when an announcement is asked, so that a refusal names its reason
//! and changes nothing: the destination inside a protected prefix, within the prefix length
//! bounds; no allowlisted source matched; at most `max_routes` at once and
//! `max_new_per_minute` new ones a minute; an expiry on every route, no sooner than
//! `min_hold`. In dry-run (the default), nothing reaches the speaker.
//!
//! # When floodwall stops
//! A clean stop withdraws every route (`on_stop = "withdraw"`, the default) or leaves them
//! (`keep`) with their expiries in the state file. After a crash, or a `keep` stop, the
//! routes stay in GoBGP (a daemon of its own) until floodwall starts again; it reads its
//! state file, withdraws what expired meanwhile and announces what is missing. A speaker that
//! restarts (and so forgot everything) is healed the same way within `reconcile_every`.

mod flowspec;
mod gobgp;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

pub use self::{
    flowspec::{Component, FlowAction, FlowRoute, Route},
    gobgp::{Announced, Gobgp},
};
use crate::lists::{Family, Prefix};

/// Why an upstream request was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No `[upstream]` section.
    #[error("upstream announcements are off: the config file has no [upstream] section")]
    Off,
    /// A route FlowSpec cannot express (the message says why).
    #[error("{0}")]
    Inexpressible(String),
    /// A safety rule refused it.
    #[error("{message}")]
    Refused {
        /// Which rule.
        rule: Safety,
        /// What it says.
        message: String,
    },
    /// No announcement has this id.
    #[error("no announcement has id {0} (see `floodwall upstream show`)")]
    UnknownId(u32),
}

/// The safety rules, each a reason to refuse an announcement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Safety {
    /// The destination is not inside the protected prefixes.
    Protected,
    /// The destination's prefix length is out of bounds.
    PrefixLen,
    /// The route would match allowlisted traffic.
    Allowlist,
    /// The asked life is out of bounds.
    Expiry,
    /// The same route is already announced.
    Duplicate,
    /// Over `max_routes`.
    MaxRoutes,
    /// Over `max_new_per_minute`.
    MaxNewPerMinute,
}

impl Safety {
    /// Its name, as metrics and `upstream show` say it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Protected => "protected",
            Self::PrefixLen => "prefix_len",
            Self::Allowlist => "allowlist",
            Self::Expiry => "expiry",
            Self::Duplicate => "duplicate",
            Self::MaxRoutes => "max_routes",
            Self::MaxNewPerMinute => "max_new_per_minute",
        }
    }
}

/// A refusal by `rule`.
fn refuse<T>(rule: Safety, message: String) -> Result<T, UpstreamError> {
    Err(UpstreamError::Refused { rule, message })
}

/// What happens to the routes when the daemon stops cleanly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStop {
    /// Withdrawn before the daemon exits.
    #[default]
    Withdraw,
    /// Left announced, each until its expiry, which the next start enforces.
    Keep,
}

/// `[upstream]`: how floodwall reaches its BGP speaker and what it may announce.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamConfig {
    /// GoBGP's API, as `gobgp --target` takes it (`unix:///run/gobgpd.sock`, `host:port`).
    pub gobgp_api: String,
    /// The `gobgp` client.
    pub gobgp_client: PathBuf,
    /// Compute and show announcements, send none.
    pub dry_run: bool,
    /// Destinations must lie inside one of these.
    pub protected: Vec<Prefix>,
    /// Allowed destination prefix lengths, IPv4 (shortest, longest).
    pub prefix_len_v4: (u8, u8),
    /// The same for IPv6.
    pub prefix_len_v6: (u8, u8),
    /// Most routes announced at once.
    pub max_routes: usize,
    /// Most new routes a minute.
    pub max_new_per_minute: usize,
    /// A route stays at least this long (a withdrawal waits for it).
    pub min_hold: Duration,
    /// Life of an announcement that names none.
    pub expiry: Duration,
    /// Longest life an announcement may ask.
    pub max_expiry: Duration,
    /// What a clean stop does.
    pub on_stop: OnStop,
    /// The blackhole community.
    pub blackhole_community: (u16, u16),
    /// How often the speaker is read back and corrected.
    pub reconcile_every: Duration,
    /// Signatures in force on an interface that receives more than this are announced
    /// upstream by themselves (a flood nearing the uplink's line rate, which no filter on
    /// the server can help with); `None`: only the operator announces.
    pub auto_above: Option<AutoAbove>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            gobgp_api: String::new(),
            gobgp_client: PathBuf::from("gobgp"),
            dry_run: true,
            protected: Vec::new(),
            prefix_len_v4: (24, 32),
            prefix_len_v6: (48, 128),
            max_routes: 8,
            max_new_per_minute: 10,
            min_hold: Duration::from_secs(30),
            expiry: Duration::from_mins(10),
            max_expiry: Duration::from_hours(24),
            on_stop: OnStop::Withdraw,
            blackhole_community: (65535, 666),
            reconcile_every: Duration::from_secs(2),
            auto_above: None,
        }
    }
}

impl UpstreamConfig {
    /// Checks the values together (each was checked alone by the config reader).
    ///
    /// # Errors
    /// A message naming the key and the problem.
    pub fn check(&self) -> Result<(), String> {
        if self.gobgp_api.is_empty() {
            return Err("upstream.gobgp_api is missing (e.g. \"unix:///run/gobgpd.sock\")".into());
        }
        if self.protected.is_empty() {
            return Err("upstream.protected is empty: name the prefixes routes may cover".into());
        }
        for (key, (low, high), bits) in [
            ("prefix_len_v4", self.prefix_len_v4, 32),
            ("prefix_len_v6", self.prefix_len_v6, 128),
        ] {
            if low > high || high > bits || low == 0 {
                return Err(format!(
                    "upstream.{key} is [{low}, {high}]: it must be [shortest, longest] with \
                     1 <= shortest <= longest <= {bits}"
                ));
            }
        }
        if self.max_routes == 0 || self.max_new_per_minute == 0 {
            return Err("upstream.max_routes and max_new_per_minute must be at least 1".into());
        }
        if self.expiry < self.min_hold || self.max_expiry < self.expiry {
            return Err(format!(
                "upstream: min_hold ({}) <= expiry ({}) <= max_expiry ({}) must hold",
                humantime::format_duration(self.min_hold),
                humantime::format_duration(self.expiry),
                humantime::format_duration(self.max_expiry)
            ));
        }
        if self.reconcile_every.is_zero() {
            return Err("upstream.reconcile_every must be longer than zero".into());
        }
        Ok(())
    }

    /// The speaker this config names.
    #[must_use]
    pub fn speaker(&self) -> Gobgp {
        Gobgp::new(self.gobgp_client.clone(), self.gobgp_api.clone())
    }
}

/// The received rate above which signatures go upstream by themselves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AutoAbove {
    /// Bits a second (`"8gbps"`).
    Bps(u64),
    /// A share of the interface's line rate, as its driver reports it (`"80%"`).
    LineRate(f64),
}

impl AutoAbove {
    /// Parses `800mbps` or `80%`.
    ///
    /// # Errors
    /// A message naming the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        if let Some(percent) = lower.strip_suffix('%') {
            return match percent.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Ok(Self::LineRate(p / 100.0)),
                _ => Err(format!(
                    "`{text}` is not a share of the line rate (1% to 100%)"
                )),
            };
        }
        lower
            .strip_suffix("bps")
            .and_then(|n| crate::limits::parse_count(n).ok())
            .filter(|bps| *bps > 0)
            .map(Self::Bps)
            .ok_or_else(|| {
                format!("`{text}` is not a bit rate above zero or a share of the line rate (e.g. \"800mbps\", \"80%\")")
            })
    }

    /// The threshold in bits a second for an interface of `line_bps` (`None`: its driver
    /// reports no speed).
    #[must_use]
    pub fn bps(self, line_bps: Option<u64>) -> Option<u64> {
        match self {
            Self::Bps(bps) => Some(bps),
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "a share of a link speed"
            )]
            Self::LineRate(share) => line_bps.map(|l| (l as f64 * share) as u64),
        }
    }
}

/// Who asked for an announcement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `floodwall upstream announce` with a rule's text or a blackhole.
    Operator,
    /// `floodwall upstream announce --rule ID`.
    Rule(u32),
    /// The daemon, for a signature in force on an interface that received more than
    /// `upstream.auto_above`; withdrawn with the signature.
    Signature {
        /// The interface.
        iface: String,
        /// The signature's rule id there.
        rule: u32,
    },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Operator => f.write_str("operator"),
            Self::Rule(id) => write!(f, "rule {id}"),
            Self::Signature { iface, rule } => write!(f, "signature {rule} on {iface}"),
        }
    }
}

/// One announcement the book holds. Times are Unix milliseconds: they outlive the daemon
/// (the state file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    /// Its id, unique in the book.
    pub id: u32,
    /// The route.
    pub route: Route,
    /// Who asked.
    pub origin: Origin,
    /// When it was asked.
    pub added_ms: u64,
    /// When it expires.
    pub expires_ms: u64,
    /// When the operator withdrew it (it goes at `added_ms + min_hold` at the soonest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_ms: Option<u64>,
}

impl Announcement {
    /// When it stops being wanted upstream.
    #[must_use]
    pub fn ends_ms(&self, min_hold: Duration) -> u64 {
        let hold_end = self.added_ms + duration_ms(min_hold);
        match self.withdrawn_ms {
            Some(at) => at.max(hold_end).min(self.expires_ms),
            None => self.expires_ms,
        }
    }

    /// Whether it is wanted upstream at `now_ms`.
    #[must_use]
    pub fn live(&self, now_ms: u64, min_hold: Duration) -> bool {
        now_ms < self.ends_ms(min_hold)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An announcement asked of the book.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAnnouncement {
    /// The route.
    pub route: Route,
    /// Who asked.
    pub origin: Origin,
    /// Its life; `None`: the config's `expiry`.
    pub for_ms: Option<u64>,
}

/// The announcements, live and ended (an ended one stays until the speaker no longer has
/// it), as kept in the state file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpstreamBook {
    next_id: u32,
    announcements: Vec<Announcement>,
    /// When the recent ones were added, for the per-minute cap.
    recent_ms: VecDeque<u64>,
}

impl UpstreamBook {
    /// Every announcement kept, by id.
    #[must_use]
    pub fn announcements(&self) -> &[Announcement] {
        &self.announcements
    }

    /// Adds an announcement if every safety rule allows it; returns its id. `allowlist`:
    /// the allowlist's prefixes now.
    ///
    /// # Errors
    /// The rule it breaks; the book is unchanged.
    pub fn announce(
        &mut self,
        config: &UpstreamConfig,
        new: NewAnnouncement,
        allowlist: &[Prefix],
        now_ms: u64,
    ) -> Result<u32, UpstreamError> {
        let dst = match &new.route {
            Route::Flowspec(flow) => flow.dst(),
            Route::Blackhole { addr, .. } => Prefix::host(*addr),
        };
        if !config.protected.iter().any(|p| p.covers(&dst)) {
            let protected: Vec<String> = config.protected.iter().map(ToString::to_string).collect();
            return refuse(
                Safety::Protected,
                format!(
                    "{dst} is not inside the protected prefixes ({}): floodwall announces \
                 nothing for addresses that are not the operator's",
                    protected.join(", ")
                ),
            );
        }
        let (low, high) = match dst.family() {
            Family::V4 => config.prefix_len_v4,
            Family::V6 => config.prefix_len_v6,
        };
        if !(low..=high).contains(&dst.prefix_len()) {
            return refuse(
                Safety::PrefixLen,
                format!(
                    "{dst} is a /{}; upstream routes for {} must be /{low} to /{high} \
                 (upstream.prefix_len_{})",
                    dst.prefix_len(),
                    dst.family(),
                    if dst.family() == Family::V4 {
                        "v4"
                    } else {
                        "v6"
                    }
                ),
            );
        }
        if let Route::Flowspec(flow) = &new.route
            && let Some(allowed) = allowlist.iter().find(|a| match flow.spec.src {
                Some(src) => src.covers(a) || a.covers(&src),
                None => a.family() == dst.family(),
            })
        {
            let whose = flow
                .spec
                .src
                .map_or_else(|| "every source".to_owned(), |s| format!("sources {s}"));
            return refuse(
                Safety::Allowlist,
                format!(
                    "the route matches {whose}, and {allowed} is allowlisted: the allowlist \
                 wins (narrow the route with `from PREFIX`)"
                ),
            );
        }
        if let Route::Blackhole { addr, .. } = &new.route
            && let Some(allowed) = allowlist.iter().find(|a| a.contains(*addr))
        {
            // Not a source match, but an allowlisted partner may be this very address.
            return refuse(
                Safety::Allowlist,
                format!("{addr} is inside the allowlisted {allowed}: the allowlist wins"),
            );
        }
        self.check_live(config, &new, now_ms)?;
        let for_ms = new.for_ms.unwrap_or(duration_ms(config.expiry));
        let within_minute = |t: &u64| now_ms < t + 60_000;
        self.next_id += 1;
        let id = self.next_id;
        self.recent_ms.retain(within_minute);
        self.recent_ms.push_back(now_ms);
        self.announcements.push(Announcement {
            id,
            route: new.route,
            origin: new.origin,
            added_ms: now_ms,
            expires_ms: now_ms + for_ms,
            withdrawn_ms: None,
        });
        Ok(id)
    }

    /// The checks against what the book holds: the expiry, a route twice, the caps.
    fn check_live(
        &self,
        config: &UpstreamConfig,
        new: &NewAnnouncement,
        now_ms: u64,
    ) -> Result<(), UpstreamError> {
        let for_ms = new.for_ms.unwrap_or(duration_ms(config.expiry));
        if for_ms < duration_ms(config.min_hold) || for_ms > duration_ms(config.max_expiry) {
            return refuse(
                Safety::Expiry,
                format!(
                    "`--for` must be from upstream.min_hold ({}) to upstream.max_expiry ({})",
                    humantime::format_duration(config.min_hold),
                    humantime::format_duration(config.max_expiry)
                ),
            );
        }
        let live: Vec<&Announcement> = self
            .announcements
            .iter()
            .filter(|a| a.live(now_ms, config.min_hold))
            .collect();
        if let Some(same) = live.iter().find(|a| same_target(&a.route, &new.route)) {
            return refuse(
                Safety::Duplicate,
                format!(
                    "announcement {} already covers this match ({}); withdraw it first",
                    same.id, same.route
                ),
            );
        }
        // Routes not yet confirmed gone upstream count too: the router may still hold them.
        let held = self.announcements.len().max(live.len());
        if held >= config.max_routes {
            return refuse(
                Safety::MaxRoutes,
                format!(
                    "{held} routes are announced or still being withdrawn, the most \
                 upstream.max_routes allows ({})",
                    config.max_routes
                ),
            );
        }
        let within_minute = |t: &u64| now_ms < t + 60_000;
        let recent = self.recent_ms.iter().filter(|t| within_minute(t)).count();
        if recent >= config.max_new_per_minute {
            return refuse(
                Safety::MaxNewPerMinute,
                format!(
                    "{recent} routes were announced in the last minute, the most \
                 upstream.max_new_per_minute allows ({}); try again later",
                    config.max_new_per_minute
                ),
            );
        }
        Ok(())
    }

    /// Withdraws announcements by id, all or nothing; each goes when its hold time is over.
    ///
    /// # Errors
    /// If an id is unknown or already withdrawn; the book is unchanged.
    pub fn withdraw(&mut self, ids: &[u32], now_ms: u64) -> Result<(), UpstreamError> {
        for id in ids {
            match self.announcements.iter().find(|a| a.id == *id) {
                Some(a) if a.withdrawn_ms.is_none() => {}
                _ => return Err(UpstreamError::UnknownId(*id)),
            }
        }
        for a in &mut self.announcements {
            if ids.contains(&a.id) {
                a.withdrawn_ms = Some(now_ms);
            }
        }
        Ok(())
    }

    /// Withdraws every announcement now, hold time or not (a clean stop).
    pub fn withdraw_all_now(&mut self, now_ms: u64) {
        for a in &mut self.announcements {
            a.expires_ms = a.expires_ms.min(now_ms);
        }
    }

    /// Forgets ended announcements the speaker no longer has.
    pub fn forget_gone(&mut self, config: &UpstreamConfig, announced: &Announced, now_ms: u64) {
        let live: Vec<Route> = self
            .announcements
            .iter()
            .filter(|a| a.live(now_ms, config.min_hold))
            .map(|a| a.route.clone())
            .collect();
        // An ended one whose route a live one now holds is that one's business.
        self.announcements.retain(|a| {
            a.live(now_ms, config.min_hold)
                || (announced.has(&a.route).is_some()
                    && !live.iter().any(|r| same_target(r, &a.route)))
        });
    }

    /// Reads the book from `path`; an empty book if there is none.
    ///
    /// # Errors
    /// If the file cannot be read or parsed.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        crate::state_file::load(path, "an upstream book of floodwall's")
    }

    /// Writes the book to `path` atomically (a new file renamed over the old).
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        crate::state_file::save(self, path)
    }
}

/// Whether two routes are the same NLRI (the router would take one for the other).
fn same_target(a: &Route, b: &Route) -> bool {
    match (a, b) {
        (Route::Flowspec(x), Route::Flowspec(y)) => x.nlri() == y.nlri(),
        (Route::Blackhole { addr: x, .. }, Route::Blackhole { addr: y, .. }) => x == y,
        _ => false,
    }
}

/// What to change at the speaker.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Routes to announce (new, or with another action than the speaker has).
    pub add: Vec<Route>,
    /// Routes to withdraw.
    pub withdraw: Vec<Route>,
}

/// Compares the book with what the speaker announces: live announcements it lacks are
/// added; ended ones it still has are withdrawn. Routes the book never held are left
/// alone (another user of the speaker may own them); `upstream show` counts them.
#[must_use]
pub fn plan(
    book: &UpstreamBook,
    config: &UpstreamConfig,
    announced: &Announced,
    now_ms: u64,
) -> Plan {
    let mut plan = Plan::default();
    let (live, ended): (Vec<&Announcement>, Vec<&Announcement>) = book
        .announcements()
        .iter()
        .partition(|a| a.live(now_ms, config.min_hold));
    for a in &live {
        if announced.has(&a.route) != Some(true) {
            plan.add.push(a.route.clone());
        }
    }
    // An ended route is withdrawn unless a live one is the same route (announced again
    // after a withdrawal): withdrawing it would take the live one away.
    for a in ended {
        if announced.has(&a.route).is_some()
            && !live.iter().any(|l| same_target(&l.route, &a.route))
        {
            plan.withdraw.push(a.route.clone());
        }
    }
    plan
}

/// The kind of an announcement's route, as `upstream show --json` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// A FlowSpec route (RFC 8955): the match of a rule, with its action.
    Flowspec,
    /// A blackhole route (RFC 7999) for one address.
    Blackhole,
}

/// The state of one announcement, as `upstream show` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteState {
    /// The speaker announces it.
    Announced,
    /// Wanted, not (yet) at the speaker.
    Pending,
    /// Ended, still at the speaker.
    Withdrawing,
    /// Dry-run: computed, never sent.
    DryRun,
}

/// One announcement as `upstream show` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnouncementView {
    /// Its id.
    pub id: u32,
    /// Which kind of route.
    pub kind: RouteKind,
    /// The route's text.
    pub route: String,
    /// Who asked.
    pub origin: String,
    /// Where it stands.
    pub state: RouteState,
    /// Seconds until it ends (expiry, or a withdrawal after its hold).
    pub expires_in_s: u64,
}

/// The speaker as last seen.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpeakerView {
    /// Whether the last read-back worked.
    pub reachable: bool,
    /// Why not.
    pub error: Option<String>,
    /// Routes the speaker announces that floodwall did not ask for.
    pub foreign_routes: usize,
}

/// `upstream show`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpstreamView {
    /// Nothing is sent.
    pub dry_run: bool,
    /// The speaker's API.
    pub gobgp_api: String,
    /// The protected prefixes.
    pub protected: Vec<Prefix>,
    /// Most routes at once.
    pub max_routes: usize,
    /// The speaker.
    pub speaker: SpeakerView,
    /// The announcements, live and ending, by id.
    pub announcements: Vec<AnnouncementView>,
    /// Announcements refused since the daemon started, by safety rule.
    pub refused: BTreeMap<String, u64>,
    /// Automatic announcements wanted but held back by a cap, tried again each second
    /// while their signature is in force and traffic is over `auto_above`.
    #[serde(default)]
    pub held_back: Vec<HeldBackView>,
}

/// An automatic announcement a cap holds back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBackView {
    /// The route that would be announced.
    pub route: String,
    /// Whose it would be (`signature N on IFACE`).
    pub origin: String,
    /// The cap: `max_routes` or `max_new_per_minute`.
    pub by: String,
}

impl UpstreamView {
    /// The view of `book` against the speaker's last read-back.
    #[must_use]
    pub fn new(
        config: &UpstreamConfig,
        book: &UpstreamBook,
        announced: Option<&Announced>,
        speaker: SpeakerView,
        refused: BTreeMap<String, u64>,
        held_back: Vec<HeldBackView>,
        now_ms: u64,
    ) -> Self {
        let announcements = book
            .announcements()
            .iter()
            .map(|a| {
                let live = a.live(now_ms, config.min_hold);
                let has = announced.and_then(|s| s.has(&a.route)) == Some(true);
                let state = match (config.dry_run, live, has) {
                    (true, _, _) => RouteState::DryRun,
                    (false, true, true) => RouteState::Announced,
                    (false, true, false) => RouteState::Pending,
                    (false, false, _) => RouteState::Withdrawing,
                };
                AnnouncementView {
                    id: a.id,
                    kind: match a.route {
                        Route::Flowspec(_) => RouteKind::Flowspec,
                        Route::Blackhole { .. } => RouteKind::Blackhole,
                    },
                    route: a.route.to_string(),
                    origin: a.origin.to_string(),
                    state,
                    expires_in_s: a
                        .ends_ms(config.min_hold)
                        .saturating_sub(now_ms)
                        .div_ceil(1000),
                }
            })
            .collect();
        Self {
            dry_run: config.dry_run,
            gobgp_api: config.gobgp_api.clone(),
            protected: config.protected.clone(),
            max_routes: config.max_routes,
            speaker,
            announcements,
            refused,
            held_back,
        }
    }
}

/// Counts of announcements by state, for the metrics.
#[must_use]
pub fn state_counts(view: &UpstreamView) -> BTreeMap<&'static str, usize> {
    let mut counts: BTreeMap<&'static str, usize> = [
        ("announced", 0),
        ("pending", 0),
        ("withdrawing", 0),
        ("dry_run", 0),
        ("held_back", view.held_back.len()),
    ]
    .into_iter()
    .collect();
    for a in &view.announcements {
        let key = match a.state {
            RouteState::Announced => "announced",
            RouteState::Pending => "pending",
            RouteState::Withdrawing => "withdrawing",
            RouteState::DryRun => "dry_run",
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// The speaker's routes by normal form, for [`Announced::has`].
pub type RouteIndex = HashMap<Vec<Component>, f32>;

#[cfg(test)]
mod tests;
