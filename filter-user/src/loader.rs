//! Loading the XDP object and attaching it to an interface.

use std::io;

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
use aya::{
    maps::{Array, MapData, ProgramArray},
    programs::{TestRun as _, TestRunOptions},
};
use filter_common::{
    AFTER_RULES_PROGRAM_NAME, AFTER_RULES_STAGE, CLOCK_PROGRAM_NAME, ClockSample, PROGRAM_NAME,
    RULES_PROGRAM_NAME, RULES_STAGE, SAMPLING_GLOBAL, SYN_COOKIE_PROGRAM_NAME, SYN_COOKIE_STAGE,
    SYN_COOKIES_GLOBAL, TEST_CLOCK_GLOBAL, map_names,
};
use log::warn;

use crate::maps::{ClockParams, FilterMaps};

/// The XDP object, built by `build.rs` from `filter-ebpf` and embedded in the binary.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/floodwall"));

/// How to load the object.
#[derive(Clone, Debug)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent switches, each one test's or the bench's, not states of one thing"
)]
pub struct LoadOptions {
    /// Capacity of the per-source table.
    pub max_sources: u32,
    /// Take time from `LimitsConfig::test_now_ns` (tests only).
    pub test_clock: bool,
    /// Capacity of each of the four list tries (allow, deny; IPv4, IPv6).
    pub list_capacity: u32,
    /// Capacity of the prefix table.
    pub max_prefixes: u32,
    /// Pin the state maps in this bpffs directory, reusing the maps pinned there (see
    /// [`crate::pin`]); `None` keeps them private to this process.
    pub pin_maps: Option<std::path::PathBuf>,
    /// Leave the SYN-cookie stage out even where the kernel has its helpers (tests: what an
    /// older kernel loads).
    pub without_syn_cookies: bool,
    /// Leave the rules stage's programs out of `FW_STAGES` (tests that set no rule: the
    /// main program never tail-calls them then, and loading them is most of the verifier's
    /// work).
    pub without_rules: bool,
    /// Leave the packet sampling code out (`filter_common::SAMPLING_GLOBAL`): the bench's
    /// yardstick of what sampling costs a packet. The daemon always samples.
    pub without_sampling: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_sources: filter_common::DEFAULT_MAX_SOURCES,
            test_clock: false,
            list_capacity: filter_common::DEFAULT_LIST_CAPACITY,
            max_prefixes: filter_common::DEFAULT_MAX_PREFIXES,
            pin_maps: None,
            without_syn_cookies: false,
            without_rules: false,
            without_sampling: false,
        }
    }
}

/// A loaded (not yet attached) filter: the object, whose program is loaded into the kernel,
/// and its maps.
pub struct Loaded {
    /// The object; holds the program and the ring buffer until taken.
    pub ebpf: Ebpf,
    /// The maps the daemon uses.
    pub maps: FilterMaps,
    /// Whether the SYN-cookie stage is in the loaded program: `Err` says why not (a kernel
    /// without its helpers).
    pub syn_cookies: Result<(), String>,
}

/// Loads the object and the XDP program into the kernel.
///
/// # Errors
/// If the kernel refuses a map or the program; the verifier's log is part of the error.
pub fn load(options: &LoadOptions) -> anyhow::Result<Loaded> {
    if options.max_sources == 0 {
        bail!("max-sources must be at least 1");
    }
    // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones use memcg. Raising
    // the limit is best-effort: without CAP_SYS_RESOURCE it fails, and on new kernels it
    // does not matter.
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) } != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK: {}",
            io::Error::last_os_error()
        );
    }
    let mut loader = EbpfLoader::new();
    if options.list_capacity == 0 {
        bail!("list-capacity must be at least 1");
    }
    if options.max_prefixes == 0 {
        bail!("max-prefixes must be at least 1");
    }
    // The table in whole sets, and the program told how many (a constant to its verifier).
    let sets = filter_common::source_sets(options.max_sources);
    loader.map_max_entries(map_names::SOURCES, source_slots(options.max_sources));
    loader.override_global(filter_common::SOURCE_SETS_GLOBAL, &sets, true);
    loader.map_max_entries(map_names::CLASS_STATE, options.max_sources);
    loader.map_max_entries(map_names::PREFIXES, options.max_prefixes);
    for list in [
        map_names::ALLOW_V4,
        map_names::ALLOW_V6,
        map_names::DENY_V4,
        map_names::DENY_V6,
    ] {
        loader.map_max_entries(list, options.list_capacity);
    }
    if options.test_clock {
        loader.override_global(TEST_CLOCK_GLOBAL, &1u32, true);
    }
    if options.without_sampling {
        loader.override_global(SAMPLING_GLOBAL, &0u32, true);
    }
    // The cookie stage's code only where the kernel has its helpers: elsewhere it is dead
    // code to the verifier and the rest of the program loads (syn-protect is refused then).
    let syn_cookies = if options.without_syn_cookies {
        Err("left out on request".to_owned())
    } else {
        crate::probe::syn_cookie_helpers().map_err(|e| format!("{e:#}"))
    };
    if syn_cookies.is_ok() {
        loader.override_global(SYN_COOKIES_GLOBAL, &1u32, true);
    }
    if let Some(dir) = &options.pin_maps {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for name in map_names::PINNED {
            loader.map_pin_path(name, dir.join(name));
        }
    }
    let mut ebpf = loader
        .load(EBPF_OBJECT)
        .context("failed to load the floodwall XDP object")?;
    if options.pin_maps.is_some() {
        // A pinned map is reused as it is: aya does not compare it with the object's
        // definition. Sizes are checked when the maps are taken; capacities here.
        check_capacities(&ebpf, options)?;
    }
    let program = xdp_program(&mut ebpf, PROGRAM_NAME)?;
    program
        .load()
        .map_err(explain_load_error)
        .context("the kernel refused the XDP program")?;
    install_stages(&mut ebpf, options.without_rules)?;
    let maps = FilterMaps::take(&mut ebpf)?;
    if !options.test_clock {
        maps.set_clock(calibrate_clock(&mut ebpf)?);
    }
    Ok(Loaded {
        ebpf,
        maps,
        syn_cookies,
    })
}

/// Loads the stages that are programs of their own and puts them in their slots of
/// `FW_STAGES`, where the main program (loaded first: it owns the array) tail-calls them.
/// The array is this object's own, never one pinned by an earlier daemon: a stage reads
/// the per-CPU copy of the parser's results that its own object's main program wrote, so
/// the program still attached must go on calling its own stages until this one replaces
/// it (the daemon pins this array beside the link: `pin::PinDir::stage_stages`).
fn install_stages(ebpf: &mut Ebpf, without_rules: bool) -> anyhow::Result<()> {
    let stages = [
        (SYN_COOKIE_PROGRAM_NAME, SYN_COOKIE_STAGE, "SYN-cookie"),
        (RULES_PROGRAM_NAME, RULES_STAGE, "rules"),
        (AFTER_RULES_PROGRAM_NAME, AFTER_RULES_STAGE, "after-rules"),
    ];
    let count = if without_rules { 1 } else { stages.len() };
    for (name, slot, what) in stages.into_iter().take(count) {
        let stage = xdp_program(ebpf, name)?;
        stage
            .load()
            .map_err(explain_load_error)
            .with_context(|| format!("the kernel refused the {what} stage's program"))?;
        let fd = stage
            .fd()
            .with_context(|| format!("the {what} stage's program has no descriptor"))?
            .try_clone()
            .with_context(|| format!("cannot duplicate the {what} stage's descriptor"))?;
        let map = ebpf
            .map_mut(map_names::STAGES)
            .with_context(|| format!("the XDP object has no map {}", map_names::STAGES))?;
        ProgramArray::try_from(map)
            .with_context(|| format!("{} is not a program array", map_names::STAGES))?
            .set(slot, &fd, 0)
            .with_context(|| format!("cannot put the {what} stage in {}", map_names::STAGES))?;
    }
    Ok(())
}

/// Refuses pinned maps whose capacity differs from the one asked for: the operator asked
/// for another size, and a map cannot be resized in place.
fn check_capacities(ebpf: &Ebpf, options: &LoadOptions) -> anyhow::Result<()> {
    let wanted = [
        (
            map_names::SOURCES,
            source_slots(options.max_sources),
            "max-sources",
        ),
        (map_names::CLASS_STATE, options.max_sources, "max-sources"),
        (map_names::PREFIXES, options.max_prefixes, "max-prefixes"),
        (map_names::ALLOW_V4, options.list_capacity, "list-capacity"),
        (map_names::ALLOW_V6, options.list_capacity, "list-capacity"),
        (map_names::DENY_V4, options.list_capacity, "list-capacity"),
        (map_names::DENY_V6, options.list_capacity, "list-capacity"),
    ];
    for (name, capacity, option) in wanted {
        let map = ebpf
            .map(name)
            .ok_or_else(|| anyhow!("the XDP object has no map named {name}"))?;
        let pinned = match map {
            aya::maps::Map::Array(m)
            | aya::maps::Map::LruHashMap(m)
            | aya::maps::Map::HashMap(m)
            | aya::maps::Map::LpmTrie(m) => m.info()?.max_entries(),
            _ => bail!("map {name} has an unexpected type"),
        };
        if pinned != capacity {
            bail!(
                "the pinned state has {option} {pinned} ({name}), this start asks for {capacity}: \
                 a map cannot be resized in place. Keep {option} at {pinned}, or start with \
                 --fresh-state to start from empty state at the new size"
            );
        }
    }
    Ok(())
}

/// Slots of the source table for `max_sources` sources: whole sets
/// (`filter_common::source_sets`).
fn source_slots(max_sources: u32) -> u32 {
    filter_common::source_sets(max_sources) * filter_common::SOURCE_WAYS
}

/// Kernel tick rates (`CONFIG_HZ`) Linux can be built with.
const TICK_RATES: [u64; 4] = [100, 250, 300, 1_000];

/// How long the calibration watches the tick counter.
const CALIBRATION_SPAN: std::time::Duration = std::time::Duration::from_millis(120);

/// Works out the program clock: the kernel's tick rate and the offset that makes
/// `ticks × ns per tick − offset` read like `CLOCK_MONOTONIC`, from two samples of both
/// clocks taken in the kernel by the clock program.
///
/// # Errors
/// If the clock program cannot run or the tick rate is not one Linux supports.
pub fn calibrate_clock(ebpf: &mut Ebpf) -> anyhow::Result<ClockParams> {
    xdp_program(ebpf, CLOCK_PROGRAM_NAME)?
        .load()
        .map_err(explain_load_error)
        .context("the kernel refused the clock program")?;
    let samples: Array<MapData, ClockSample> = Array::try_from(
        ebpf.take_map(map_names::CLOCK)
            .ok_or_else(|| anyhow!("the XDP object has no map named {}", map_names::CLOCK))?,
    )
    .context("map FW_CLOCK has an unexpected layout")?;
    let sample = |ebpf: &mut Ebpf| -> anyhow::Result<ClockSample> {
        // Any frame will do: the program only reads the clocks.
        let frame = [0u8; 64];
        xdp_program(ebpf, CLOCK_PROGRAM_NAME)?
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                ..TestRunOptions::new()
            })
            .context("cannot run the clock program")?;
        samples.get(&0, 0).context("cannot read the clock sample")
    };
    let first = sample(ebpf)?;
    std::thread::sleep(CALIBRATION_SPAN);
    let second = sample(ebpf)?;
    clock_params(first, second)
}

/// The clock parameters from two samples (pure arithmetic, see [`calibrate_clock`]).
///
/// # Errors
/// If the samples do not show one of the tick rates Linux supports.
pub fn clock_params(first: ClockSample, second: ClockSample) -> anyhow::Result<ClockParams> {
    let ticks = second.jiffies.wrapping_sub(first.jiffies);
    let span_ns = second.monotonic_ns.saturating_sub(first.monotonic_ns);
    if span_ns == 0 {
        bail!("cannot calibrate the kernel clock: no time passed between two samples");
    }
    let measured_hz = u128::from(ticks) * 1_000_000_000 / u128::from(span_ns);
    let hz = TICK_RATES
        .into_iter()
        .min_by_key(|&hz| u128::from(hz).abs_diff(measured_hz))
        .unwrap_or(250);
    // Within 10% of a real tick rate, or the measurement is not one.
    if u128::from(hz).abs_diff(measured_hz) * 10 > u128::from(hz) {
        bail!(
            "cannot calibrate the kernel clock: {ticks} ticks in {span_ns} ns is no tick rate \
             Linux supports (100, 250, 300 or 1000 Hz)"
        );
    }
    let mul_ns = 1_000_000_000 / hz;
    // The offset from the sample whose tick count lagged least behind `CLOCK_MONOTONIC`: a
    // busy machine can deliver a tick late, and an offset taken in that instant would have
    // the program clock run ahead of `CLOCK_MONOTONIC` by as much ever after (blocks would
    // then show more time left than they were given).
    let offset = |s: ClockSample| s.jiffies.wrapping_mul(mul_ns).wrapping_sub(s.monotonic_ns);
    #[expect(
        clippy::cast_possible_wrap,
        reason = "the two offsets differ by a lag, far less than 2^63 ns: compared as signed"
    )]
    let offset_ns = if (offset(first).wrapping_sub(offset(second)) as i64) > 0 {
        offset(first)
    } else {
        offset(second)
    };
    Ok(ClockParams { mul_ns, offset_ns })
}

/// The XDP program `name` of a loaded object.
///
/// # Errors
/// If there is no such program or it is not XDP.
pub fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("the XDP object has no program named {name}"))?
        .try_into()
        .with_context(|| format!("program {name} is not an XDP program"))
}

fn explain_load_error(err: ProgramError) -> anyhow::Error {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            anyhow!("{io_error}; verifier log:\n{verifier_log}")
        }
        other => other.into(),
    }
}

/// Where to run the program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachMode {
    /// Native (driver) mode if the driver supports it, else generic (skb) mode with a warning.
    #[default]
    Auto,
    /// Native XDP in the driver: the packet is dropped before the kernel allocates anything.
    Driver,
    /// Generic XDP, after the kernel built an skb: works everywhere, costs more.
    Skb,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Driver => "driver",
            Self::Skb => "skb",
        })
    }
}

/// Attaches the floodwall program to `iface`; returns the link and the mode used.
///
/// This is the one place that calls aya's attach: its signature changes between releases.
///
/// # Errors
/// If the interface does not exist, already carries an XDP program, or refuses the mode.
pub fn attach(
    ebpf: &mut Ebpf,
    iface: &str,
    mode: AttachMode,
) -> anyhow::Result<(XdpLinkId, AttachMode)> {
    if nix::net::if_::if_nametoindex(iface).is_err() {
        bail!("interface {iface} does not exist");
    }
    let program = xdp_program(ebpf, PROGRAM_NAME)?;
    let try_mode = |program: &mut Xdp, mode: AttachMode| {
        let xdp_mode = match mode {
            AttachMode::Driver | AttachMode::Auto => XdpMode::Driver,
            AttachMode::Skb => XdpMode::Skb,
        };
        program
            .attach(iface, xdp_mode)
            .map_err(|e| attach_error(iface, mode, &e))
    };
    match mode {
        AttachMode::Driver | AttachMode::Skb => Ok((try_mode(program, mode)?, mode)),
        AttachMode::Auto => match try_mode(program, AttachMode::Driver) {
            Ok(link) => Ok((link, AttachMode::Driver)),
            Err(AttachError::Busy(e)) => Err(e),
            Err(AttachError::Other(e)) => {
                warn!(
                    "{iface} does not take XDP in driver mode ({e:#}); falling back to generic \
                     (skb) mode, which drops packets later and at a higher cost"
                );
                Ok((
                    try_mode(program, AttachMode::Skb).map_err(AttachError::into_inner)?,
                    AttachMode::Skb,
                ))
            }
        },
    }
}

/// An attach failure, split by whether another XDP program is in the way.
enum AttachError {
    Busy(anyhow::Error),
    Other(anyhow::Error),
}

impl AttachError {
    fn into_inner(self) -> anyhow::Error {
        match self {
            Self::Busy(e) | Self::Other(e) => e,
        }
    }
}

impl From<AttachError> for anyhow::Error {
    fn from(e: AttachError) -> Self {
        e.into_inner()
    }
}

fn attach_error(iface: &str, mode: AttachMode, err: &ProgramError) -> AttachError {
    let errno = std::iter::successors(Some(err as &dyn std::error::Error), |e| e.source())
        .find_map(|e| {
            e.downcast_ref::<io::Error>()
                .and_then(io::Error::raw_os_error)
        });
    if matches!(errno, Some(libc::EBUSY | libc::EEXIST)) {
        return AttachError::Busy(anyhow!(
            "{iface} already carries an XDP program; floodwall will not replace it \
             (remove it first, e.g. `ip link set dev {iface} xdp off`)"
        ));
    }
    AttachError::Other(anyhow!(
        "failed to attach XDP program to {iface} in {mode} mode: {err}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(jiffies: u64, monotonic_ns: u64) -> ClockSample {
        ClockSample {
            jiffies,
            monotonic_ns,
        }
    }

    #[test]
    fn the_tick_rate_is_recognised_and_the_clock_lines_up_with_monotonic() {
        // 30 ticks in 120 ms: 250 Hz, 4 ms a tick; jiffies start near 2^32 as on Linux.
        let start = (1u64 << 32) - 75_000;
        let params = clock_params(
            sample(start, 5_000_000_000),
            sample(start + 30, 5_120_000_000),
        )
        .expect("250 Hz");
        assert_eq!(params.mul_ns, 4_000_000);
        let program_now = (start + 30)
            .wrapping_mul(params.mul_ns)
            .wrapping_sub(params.offset_ns);
        assert_eq!(
            program_now, 5_120_000_000,
            "the program clock reads like CLOCK_MONOTONIC"
        );
        let later = (start + 280)
            .wrapping_mul(params.mul_ns)
            .wrapping_sub(params.offset_ns);
        assert_eq!(later, 6_120_000_000, "and advances 4 ms a tick");
    }

    /// A tick delivered late in one sample does not set the clock: the offset comes from
    /// the sample whose ticks lagged least, so the program clock never reads ahead.
    #[test]
    fn a_late_tick_in_either_sample_does_not_move_the_clock_ahead() {
        let start = (1u64 << 32) - 75_000;
        let on_time = |at_ns: u64| sample(start + (at_ns - 5_000_000_000) / 4_000_000, at_ns);
        // 8 ms late: the tick count of 2 ticks ago.
        let late = |at_ns: u64| {
            let mut s = on_time(at_ns);
            s.jiffies -= 2;
            s
        };
        for (first, second) in [
            (late(5_000_000_000), on_time(5_120_000_000)),
            (on_time(5_000_000_000), late(5_120_000_000)),
        ] {
            let params = clock_params(first, second).expect("250 Hz within 10 %");
            let program_now = (start + 30)
                .wrapping_mul(params.mul_ns)
                .wrapping_sub(params.offset_ns);
            assert_eq!(program_now, 5_120_000_000, "{first:?} {second:?}");
        }
    }

    #[test]
    fn an_impossible_tick_rate_is_an_error() {
        let err = clock_params(sample(0, 0), sample(60, 120_000_000)).unwrap_err();
        assert!(
            err.to_string().contains("no tick rate Linux supports"),
            "{err}"
        );
        assert!(
            clock_params(sample(0, 7), sample(0, 7)).is_err(),
            "no time passed"
        );
    }
}
