//! Protecting one interface: load the program with its pinned state, fill the lists and
//! the limits, attach, or take over the program an earlier daemon left attached without a
//! moment unprotected, and adopt the blocks it left.

use std::{
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::Instant,
};

use anyhow::{Context as _, anyhow};
use aya::maps::{MapData, RingBuf};
use filter_common::map_names;
use log::{info, warn};
use tokio::sync::mpsc;

use super::{Shared, reload::ReloadReply};
use crate::{
    config::{DaemonConfig, InterfaceConfig},
    control::Access,
    events::BlockBook,
    lists::{ListKind, ListMaps},
    loader::{self, LoadOptions},
    maps::monotonic_now_ns,
    pin::{MapsPlan, PinDir, Takeover},
    rules::RuleMaps,
    traffic::{TrafficMaps, baseline::Baseline, detect::Detector},
};

/// Loads the program for one interface with its pinned state and attaches it, taking over
/// the program an earlier daemon left attached without a moment unprotected.
pub(super) fn protect(
    spec: &InterfaceConfig,
    config: &DaemonConfig,
    access: Arc<Mutex<Access>>,
    reload: mpsc::Sender<ReloadReply>,
    upstream: Option<Arc<super::upstream::Upstream>>,
    fleet: Option<Arc<super::fleet::Fleet>>,
) -> anyhow::Result<(Arc<Shared>, RingBuf<MapData>, TrafficMaps)> {
    let iface = spec.name.as_str();
    let pins = PinDir::new(&config.pin_root, iface);
    pins.prepare()?;
    let takeover = pins.takeover()?;
    let plan = pins.plan_maps(config.fresh_state)?;
    let prepared = prepare(iface, config, &plan);
    let (mut loaded, lists, syn, rules) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            pins.abandon(&plan);
            return Err(e.context(format!("cannot protect {iface}")));
        }
    };
    let attach_mode = match pins
        .stage_stages(&loaded.ebpf)
        .and_then(|()| pins.attach(&mut loaded.ebpf, &takeover, spec.xdp_mode))
    {
        Ok(mode) => mode,
        Err(e) => {
            pins.abandon(&plan);
            return Err(e);
        }
    };
    pins.commit_stages()?;
    pins.commit(&plan)?;
    let ring = RingBuf::try_from(
        loaded
            .ebpf
            .take_map(map_names::EVENTS)
            .ok_or_else(|| anyhow!("the XDP object has no map named {}", map_names::EVENTS))?,
    )
    .context("map FW_EVENTS is not a ring buffer")?;
    let traffic = TrafficMaps::take(&mut loaded.ebpf)?;
    let baseline_file = super::traffic::baseline_path(&config.run_dir, iface);
    let mut baseline = Baseline::load(&baseline_file).unwrap_or_else(|e| {
        warn!("{iface}: starting with an empty baseline: {e:#}");
        Baseline::default()
    });
    traffic.known.adopt_into(&mut baseline);
    if baseline.learned_s > 0 {
        info!(
            "{iface}: kept the baseline of {}s of traffic from {}",
            baseline.learned_s,
            baseline_file.display()
        );
    }

    let mut blocks = BlockBook::default();
    let adopted = match (&takeover, &plan) {
        (Takeover::Replace { .. }, MapsPlan::Reuse(_)) => {
            let now = monotonic_now_ns()?;
            let mut blocked = 0usize;
            for (key, state) in loaded.maps.all_sources()? {
                if state.blocked_until_ns > now {
                    blocks.adopt(key.ip(), state.blocked_until_ns);
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
        tracked: AtomicU64::new(0),
        access,
        reload,
        syn: Mutex::new(syn),
        syn_cookies: loaded.syn_cookies.clone(),
        syn_sysctls: config.syn_sysctls,
        rules: Mutex::new(rules),
        detector: Mutex::new(Detector::new(config.signatures.clone(), baseline)),
        upstream,
        fleet,
    });
    // The object (and with it the program fd) may go: the pinned link holds the program.
    drop(loaded.ebpf);
    Ok((shared, ring, traffic))
}

/// Loads the program with the maps of `plan` and fills them as `config` says, before it is
/// attached: the lists, SYN protection, the limits.
fn prepare(
    iface: &str,
    config: &DaemonConfig,
    plan: &MapsPlan,
) -> anyhow::Result<(
    loader::Loaded,
    ListMaps,
    super::syn::SynState,
    super::rules::RulesState,
)> {
    let mut loaded = loader::load(&LoadOptions {
        max_sources: config.max_sources,
        test_clock: false,
        list_capacity: config.list_capacity,
        max_prefixes: config.max_prefixes,
        pin_maps: Some(plan.dir().to_owned()),
        without_syn_cookies: false,
        without_rules: false,
        without_sampling: false,
    })?;
    let lists = ListMaps::take(&mut loaded.ebpf)?;
    if !config.allow.is_empty() {
        lists.add(ListKind::Allow, &config.allow, None)?;
    }
    if !config.deny.is_empty() {
        lists.add(ListKind::Deny, &config.deny, None)?;
    }
    let rules = super::rules::RulesState::start(
        RuleMaps::take(&mut loaded.ebpf)?,
        &config.rules,
        monotonic_now_ns()?,
    )?;
    let rules_bit = if rules.any() {
        filter_common::list_flags::RULES
    } else {
        0
    };
    loaded
        .maps
        .set_list_presence(lists.nonempty()?.flag_bits() | rules_bit);
    let syn = super::syn::start(
        iface,
        &loaded.maps,
        &loaded.syn_cookies,
        config.syn_protect.clone(),
        config.syn_sysctls,
    )?;
    loaded.maps.write_limits(&config.limits.to_kernel())?;
    Ok((loaded, lists, syn, rules))
}
