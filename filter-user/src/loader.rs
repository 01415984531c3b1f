//! Loading the XDP object and attaching it to an interface.

use std::io;

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
use filter_common::{PROGRAM_NAME, TEST_CLOCK_GLOBAL, map_names};
use log::warn;

use crate::maps::FilterMaps;

/// The XDP object, built by `build.rs` from `filter-ebpf` and embedded in the binary.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/floodwall"));

/// How to load the object.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Capacity of the per-source table.
    pub max_sources: u32,
    /// Take time from `LimitsConfig::test_now_ns` (tests only).
    pub test_clock: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_sources: filter_common::DEFAULT_MAX_SOURCES,
            test_clock: false,
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
}

/// Loads the object and the XDP program into the kernel.
///
/// # Errors
/// If the kernel refuses a map or the program; the verifier's log is part of the error.
pub fn load(options: LoadOptions) -> anyhow::Result<Loaded> {
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
    loader.map_max_entries(map_names::SOURCES, options.max_sources);
    if options.test_clock {
        loader.override_global(TEST_CLOCK_GLOBAL, &1u32, true);
    }
    let mut ebpf = loader
        .load(EBPF_OBJECT)
        .context("failed to load the floodwall XDP object")?;
    let program = xdp_program(&mut ebpf, PROGRAM_NAME)?;
    program
        .load()
        .map_err(explain_load_error)
        .context("the kernel refused the XDP program")?;
    let maps = FilterMaps::take(&mut ebpf)?;
    Ok(Loaded { ebpf, maps })
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
