//! SYN protection while the daemon runs: the cookie stage turned on and off for ports, from
//! the configuration, `floodwall syn-protect`, reloads and, with `auto`, by the daemon
//! itself when a SYN flood goes over the SYN ceiling.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use anyhow::bail;
use filter_common::{Class, Outcome};
use log::{info, warn};

use super::{SAMPLE_INTERVAL, Shared, lock};
use crate::{
    control::{EventKind, EventRecord, SynProtectView},
    limits::ClassName,
    maps::FilterMaps,
    stats::Totals,
    syn::{self, SynProtect, SysctlPolicy, host, host::SynHost},
};

/// Untracked SYNs over the SYN ceiling in one sample interval that turn `auto` on: a few,
/// not one, so that a short burst of new users does not.
const AUTO_ON_DROPS: u64 = 100;

/// What one interface's SYN protection is doing.
pub(super) struct SynState {
    /// What the operator asked for.
    setting: SynProtect,
    /// The ports the program protects now (empty: none).
    active: BTreeSet<u16>,
    /// The namespace's values as last read, when turning on.
    host: Option<SynHost>,
    /// Times `auto` turned the cookies on, and off.
    auto_on: u64,
    auto_off: u64,
    /// When `auto` last saw a flood.
    last_flood: Option<Instant>,
    /// Untracked SYNs counted at the last tick: over the ceiling, and in all.
    last_counts: Option<(u64, u64)>,
}

impl SynState {
    pub(super) fn new(setting: SynProtect) -> Self {
        Self {
            setting,
            active: BTreeSet::new(),
            host: None,
            auto_on: 0,
            auto_off: 0,
            last_flood: None,
            last_counts: None,
        }
    }

    /// What the operator asked for.
    pub(super) fn setting(&self) -> &SynProtect {
        &self.setting
    }

    /// The setting, as `stats` shows it: `auto (on: 80,443)`, `80`, `off`.
    pub(super) fn describe(&self) -> String {
        match (&self.setting, self.active.is_empty()) {
            (SynProtect::Auto, true) => "auto (off)".to_owned(),
            (SynProtect::Auto, false) => format!("auto (on: {})", syn::join_ports(&self.active)),
            (setting, _) => setting.to_string(),
        }
    }
}

/// What turning the stage on and off works on: one interface's maps, and whether its
/// program has the stage.
struct Stage<'a> {
    iface: &'a str,
    maps: &'a FilterMaps,
    available: &'a Result<(), String>,
    sysctls: SysctlPolicy,
}

impl<'a> Stage<'a> {
    fn of(shared: &'a Shared) -> Self {
        Self {
            iface: &shared.iface,
            maps: &shared.maps,
            available: &shared.syn_cookies,
            sysctls: shared.syn_sysctls,
        }
    }

    /// Makes `ports` the protected ports (none turns the stage off) in the maps: what the
    /// namespace must have first, then the ports and the SYN-ACKs' values. The stage's
    /// flag goes with the next write of the limits, which the caller makes.
    fn set_ports(&self, state: &mut SynState, ports: &BTreeSet<u16>) -> anyhow::Result<()> {
        if ports.is_empty() {
            self.maps.set_syn_protect(None)?;
            state.active.clear();
            return Ok(());
        }
        if let Err(why) = self.available {
            bail!("syn-protect is refused: {why}");
        }
        match self.sysctls {
            SysctlPolicy::Set => {
                if let Some(was) = host::ensure_syncookies()? {
                    info!(
                        "syn-protect on {}: set net.ipv4.tcp_syncookies from {was} to 2 in its \
                         namespace: the kernel must accept the cookie ACKs of the SYN-ACKs \
                         sent from XDP (it then answers every SYN that reaches it with a \
                         cookie too)",
                        self.iface
                    );
                }
            }
            SysctlPolicy::Keep => {
                let now = host::syncookies_value()?;
                if now != 2 {
                    warn!(
                        "syn-protect on {}: net.ipv4.tcp_syncookies is {now} and kept so \
                         (--syn-sysctls keep): the kernel issues cookies only while a \
                         listener's SYN queue is full, so most SYNs fall back to the SYN \
                         ceiling (counted as syn_cookie_refused)",
                        self.iface
                    );
                }
            }
        }
        let host = SynHost::read(self.iface)?;
        self.maps
            .set_syn_protect(Some((syn::synack_values(&host), ports)))?;
        if state.active != *ports {
            info!(
                "syn-protect on {} for TCP port(s) {}: SYN-ACKs from XDP with MSS {} (IPv4) / \
                 {} (IPv6), TTL {}, hop limit {}, no timestamp",
                self.iface,
                syn::join_ports(ports),
                host.mss_v4,
                host.mss_v6,
                host.ttl,
                host.hop_limit,
            );
        }
        state.active.clone_from(ports);
        state.host = Some(host);
        Ok(())
    }
}

/// The SYN protection of a daemon that starts on `iface`, set in `maps` before the program
/// is attached (the caller writes the limits next). With `auto`, ports that the pinned state
/// of an earlier daemon protects stay protected: a restart in the middle of a flood leaves
/// no gap, and the flood's end turns them off as usual.
///
/// # Errors
/// If protection is asked for and cannot be had; nothing is protected then.
pub(super) fn start(
    iface: &str,
    maps: &FilterMaps,
    available: &Result<(), String>,
    setting: SynProtect,
    sysctls: SysctlPolicy,
) -> anyhow::Result<SynState> {
    let stage = Stage {
        iface,
        maps,
        available,
        sysctls,
    };
    let mut syn = SynState::new(setting);
    if let (SynProtect::Auto, Err(why)) = (&syn.setting, available) {
        info!("syn-protect auto on {iface} will stay off: {why}");
    }
    let ports = match &syn.setting {
        SynProtect::Ports(ports) => ports.clone(),
        SynProtect::Auto if available.is_ok() => maps.pinned_syn_ports()?,
        SynProtect::Auto | SynProtect::Off => BTreeSet::new(),
    };
    stage
        .set_ports(&mut syn, &ports)
        .map_err(|e| e.context(format!("--syn-protect {}", syn.setting)))?;
    if syn.setting == SynProtect::Auto && !ports.is_empty() {
        syn.last_flood = Some(Instant::now());
        info!(
            "syn-protect auto on {iface}: the earlier daemon had it on for port(s) {}: kept on \
             until the flood has been over for a while (--syn-auto-quiet)",
            syn::join_ports(&ports)
        );
    }
    Ok(syn)
}

/// Makes `ports` the protected ports, the flag and limits included.
fn protect(shared: &Shared, state: &mut SynState, ports: &BTreeSet<u16>) -> anyhow::Result<()> {
    Stage::of(shared).set_ports(state, ports)?;
    shared.sync_list_presence()
}

/// Applies `setting`: its ports, none for `off`, none until a flood for `auto`. Returns the
/// setting before; on an error nothing changed.
pub(super) fn apply(shared: &Shared, setting: SynProtect) -> anyhow::Result<SynProtect> {
    let mut state = lock(&shared.syn);
    let ports = match &setting {
        SynProtect::Ports(ports) => ports.clone(),
        // A running auto keeps what it protects now.
        SynProtect::Auto if state.setting == SynProtect::Auto => state.active.clone(),
        SynProtect::Off | SynProtect::Auto => BTreeSet::new(),
    };
    let before = state.active.clone();
    if let Err(e) = protect(shared, &mut state, &ports) {
        // Back to what was protected (the namespace part cannot have failed for it then).
        let _ = protect(shared, &mut state, &before);
        return Err(e);
    }
    state.last_flood = None;
    Ok(std::mem::replace(&mut state.setting, setting))
}

/// What `floodwall syn-protect show` prints.
pub(super) fn view(shared: &Shared) -> anyhow::Result<SynProtectView> {
    let counters = super::syn_counters(shared)?
        .into_iter()
        .map(|(name, count)| (name.to_owned(), count))
        .collect();
    let limits = *lock(&shared.limits);
    let state = lock(&shared.syn);
    Ok(SynProtectView {
        setting: state.setting.to_string(),
        active_ports: state.active.iter().copied().collect(),
        unavailable: shared.syn_cookies.clone().err(),
        tcp_syncookies: host::syncookies_value().ok(),
        mss_v4: state.host.map(|h| h.mss_v4),
        mss_v6: state.host.map(|h| h.mss_v6),
        cookie_rate: limits.syn_cookie_rate.to_string(),
        verified_rate: limits.syn_admit_rate.to_string(),
        auto_on: state.auto_on,
        auto_off: state.auto_off,
        counters,
    })
}

/// One tick of `auto`, after each counter sample: turns the cookies on for the ports with
/// listeners when untracked SYNs go over the SYN ceiling, and off once they have stayed
/// under half of it for `--syn-auto-quiet`. While on, it also follows new listeners and
/// puts `tcp_syncookies` back if someone reset it.
pub(super) fn auto_tick(shared: &Shared, totals: &Totals) {
    let mut state = lock(&shared.syn);
    // Without the stage (a kernel before 6.0) auto has nothing to turn on; `start` said so.
    if state.setting != SynProtect::Auto || shared.syn_cookies.is_err() {
        state.last_counts = None;
        return;
    }
    let syn = |outcome| totals.get_class(Class::Syn, outcome).packets;
    let over = syn(Outcome::DroppedCeiling) + syn(Outcome::MonitorCeiling);
    let untracked = over + syn(Outcome::SynCookieSent) + syn(Outcome::MonitorSynCookie);
    let Some((last_over, last_untracked)) = state.last_counts.replace((over, untracked)) else {
        return;
    };
    let (over, untracked) = (
        over.saturating_sub(last_over),
        untracked.saturating_sub(last_untracked),
    );
    let (ceiling, quiet) = {
        let limits = lock(&shared.limits);
        (
            limits.ceiling_pps[ClassName::Syn.index()].per_second(),
            limits.syn_auto_quiet(),
        )
    };
    let interval_ms = u64::try_from(SAMPLE_INTERVAL.as_millis()).unwrap_or(u64::MAX);
    let per_tick = |rate: u64| rate.saturating_mul(interval_ms) / 1000;
    let flooding = over >= AUTO_ON_DROPS || ceiling.is_some_and(|c| untracked > per_tick(c) / 2);
    let now = Instant::now();
    if flooding {
        state.last_flood = Some(now);
    }
    let result = if state.active.is_empty() {
        if over < AUTO_ON_DROPS {
            return;
        }
        turn_on(shared, &mut state, over)
    } else if state.last_flood.is_some_and(|at| at.elapsed() >= quiet) {
        turn_off(shared, &mut state, quiet)
    } else {
        keep_on(shared, &mut state)
    };
    if let Err(e) = result {
        warn!("syn-protect auto on {}: {e:#}", shared.iface);
    }
}

fn turn_on(shared: &Shared, state: &mut SynState, over: u64) -> anyhow::Result<()> {
    let ports = host::listening_ports()?;
    if ports.is_empty() {
        return Ok(());
    }
    protect(shared, state, &ports)?;
    state.auto_on += 1;
    let line = format!(
        "syn-protect auto: on for port(s) {}: {over} SYNs of new sources went over the SYN \
         ceiling in the last second (a SYN flood); new sources' SYNs get cookies from XDP",
        syn::join_ports(&ports)
    );
    info!("{line}");
    lock(&shared.blocks).record(EventRecord::now(EventKind::SynProtect, None, line));
    Ok(())
}

fn turn_off(shared: &Shared, state: &mut SynState, quiet: Duration) -> anyhow::Result<()> {
    protect(shared, state, &BTreeSet::new())?;
    state.auto_off += 1;
    state.last_flood = None;
    let line = format!(
        "syn-protect auto: off: no SYN flood for {}; new sources' SYNs are held to the SYN \
         ceiling again",
        humantime::format_duration(quiet)
    );
    info!("{line}");
    lock(&shared.blocks).record(EventRecord::now(EventKind::SynProtect, None, line));
    Ok(())
}

fn keep_on(shared: &Shared, state: &mut SynState) -> anyhow::Result<()> {
    let reset = shared.syn_sysctls == SysctlPolicy::Set && !host::syncookies_always()?;
    if reset {
        warn!(
            "syn-protect on {}: net.ipv4.tcp_syncookies was changed from 2; setting it again",
            shared.iface
        );
    }
    // New listeners are protected too (a listener that went away costs nothing: its SYNs
    // fall back to the ceiling as "no listener"), and a new MTU changes the MSS.
    let ports: BTreeSet<u16> = host::listening_ports()?
        .union(&state.active)
        .copied()
        .collect();
    let host_changed = state.host != Some(SynHost::read(&shared.iface)?);
    if ports != state.active || reset || host_changed {
        protect(shared, state, &ports)?;
    }
    Ok(())
}
