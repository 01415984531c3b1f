//! Kernel feature probes, run by the daemon before it loads the XDP program, so that a kernel
//! too old for floodwall gets a message that names what it lacks, instead of a verifier log.
//!
//! Each probe asks the kernel the way libbpf's `libbpf_probe_bpf_*` do (through aya's
//! `aya::sys` probes): create a tiny map of a type, or load a two-instruction XDP program
//! that calls a helper. No probe attaches anything or leaves anything behind.
//!
//! Every feature here is one the program cannot do without today, so a missing one stops the
//! daemon before loading, with [`ProbeError`] naming each missing feature, the kernel version
//! that brought it and what floodwall uses it for. A feature the program learns to do without
//! gets a [`Fallback::Degrade`] saying what the daemon does instead, which
//! [`Probe::log_fallbacks`] logs at start.
//!
//! Usage, in `daemon::run` before `loader::load`:
//!
//! ```ignore
//! let probe = floodwall::probe::probe();
//! probe.log_fallbacks();
//! probe.require()?; // ProbeError: "this kernel (5.4.0) lacks ...; floodwall needs ..."
//! ```
//!
//! # Minimum kernel version
//! 5.8, for BPF ring buffers ([`Feature::RingBuf`]).

use std::fmt;

use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{BpfHelper, is_helper_supported, is_map_supported, is_program_supported},
};

/// A kernel feature floodwall uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// XDP programs.
    XdpProgram,
    /// LRU hash maps: the per-source and per-prefix tables.
    LruHash,
    /// LPM tries: the allowlist and denylist.
    LpmTrie,
    /// Per-CPU arrays: counters and the admission sketch.
    PerCpuArray,
    /// BPF ring buffers: block events and list-hit summaries to the daemon.
    RingBuf,
    /// `bpf_ringbuf_output` from XDP.
    RingbufOutput,
    /// `bpf_jiffies64` from XDP: the program's clock.
    Jiffies64,
    /// `bpf_ktime_get_ns` from XDP: the clock calibration sample.
    KtimeGetNs,
}

/// Every feature, probed in this order (the program type first: without it nothing else
/// can be probed from XDP).
pub const FEATURES: [Feature; 8] = [
    Feature::XdpProgram,
    Feature::LruHash,
    Feature::LpmTrie,
    Feature::PerCpuArray,
    Feature::RingBuf,
    Feature::RingbufOutput,
    Feature::Jiffies64,
    Feature::KtimeGetNs,
];

/// What the daemon does on a kernel without a feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// Nothing it can do: it stops before loading the program.
    Required,
    /// It runs without the feature, doing this instead (logged at start).
    Degrade(&'static str),
}

impl Feature {
    /// What it is, for people.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::XdpProgram => "XDP programs",
            Self::LruHash => "LRU hash maps",
            Self::LpmTrie => "LPM trie maps",
            Self::PerCpuArray => "per-CPU array maps",
            Self::RingBuf => "BPF ring buffers",
            Self::RingbufOutput => "the bpf_ringbuf_output helper in XDP",
            Self::Jiffies64 => "the bpf_jiffies64 helper in XDP",
            Self::KtimeGetNs => "the bpf_ktime_get_ns helper in XDP",
        }
    }

    /// The mainline kernel release that brought it.
    #[must_use]
    pub fn since(self) -> &'static str {
        match self {
            Self::XdpProgram => "4.8",
            Self::LruHash => "4.10",
            Self::LpmTrie => "4.11",
            Self::PerCpuArray => "4.6",
            Self::RingBuf | Self::RingbufOutput => "5.8",
            Self::Jiffies64 => "5.5",
            Self::KtimeGetNs => "4.1",
        }
    }

    /// What floodwall uses it for.
    #[must_use]
    pub fn used_for(self) -> &'static str {
        match self {
            Self::XdpProgram => "the filter itself",
            Self::LruHash => "the per-source and per-prefix tables",
            Self::LpmTrie => "the allowlist and the denylist",
            Self::PerCpuArray => "the counters and the admission sketch",
            Self::RingBuf | Self::RingbufOutput => {
                "block events and list-hit summaries to the daemon"
            }
            Self::Jiffies64 => "the program's clock (rates, blocks and their expiry)",
            Self::KtimeGetNs => "calibrating the program's clock",
        }
    }

    /// What the daemon does without it. Every feature is required today: the program uses
    /// each unconditionally, and the verifier rejects a program that calls a helper or
    /// names a map type the kernel does not know.
    #[must_use]
    pub fn fallback(self) -> Fallback {
        Fallback::Required
    }

    fn probe(self) -> Result<bool, String> {
        let map = |t| is_map_supported(t).map_err(|e| e.to_string());
        let helper = |h| is_helper_supported(ProgramType::Xdp, h).map_err(|e| e.to_string());
        match self {
            Self::XdpProgram => is_program_supported(ProgramType::Xdp).map_err(|e| e.to_string()),
            Self::LruHash => map(MapType::LruHash),
            Self::LpmTrie => map(MapType::LpmTrie),
            Self::PerCpuArray => map(MapType::PerCpuArray),
            Self::RingBuf => map(MapType::RingBuf),
            Self::RingbufOutput => helper(BpfHelper::BPF_FUNC_ringbuf_output),
            Self::Jiffies64 => helper(BpfHelper::BPF_FUNC_jiffies64),
            Self::KtimeGetNs => helper(BpfHelper::BPF_FUNC_ktime_get_ns),
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (Linux {}+, for {})",
            self.name(),
            self.since(),
            self.used_for()
        )
    }
}

/// How one probe came out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The kernel has it.
    Present,
    /// The kernel lacks it.
    Missing,
    /// The probe itself failed (say, `EPERM` without `CAP_BPF`): the feature may or may not be
    /// there, so the daemon goes on and lets loading tell.
    Unknown(String),
}

/// The outcome of every probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The kernel's release (`uname -r`), for messages.
    pub release: String,
    /// Each feature and how its probe came out, in [`FEATURES`] order.
    pub results: Vec<(Feature, Status)>,
}

/// Probes every feature of [`FEATURES`] on the running kernel. Needs the privileges that
/// loading needs (`CAP_BPF`, or root); without them every status is [`Status::Unknown`].
#[must_use]
pub fn probe() -> Probe {
    let results = FEATURES
        .iter()
        .map(|&feature| {
            let status = match feature.probe() {
                Ok(true) => Status::Present,
                Ok(false) => Status::Missing,
                Err(e) => Status::Unknown(e),
            };
            (feature, status)
        })
        .collect();
    Probe {
        release: kernel_release(),
        results,
    }
}

/// `uname -r`, or `unknown` without procfs.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |r| r.trim().to_owned())
}

/// Features the kernel lacks that floodwall cannot run without.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ProbeError {
    /// The kernel's release.
    pub release: String,
    /// The missing features.
    pub missing: Vec<Feature>,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let missing: Vec<String> = self.missing.iter().map(ToString::to_string).collect();
        // The newest release among the missing features is the least the kernel needs.
        let needed = self
            .missing
            .iter()
            .map(|m| m.since())
            .max_by_key(|v| version_key(v))
            .unwrap_or("5.8");
        write!(
            f,
            "this kernel ({}) lacks {}; floodwall needs Linux {needed} or later",
            self.release,
            missing.join(", ")
        )
    }
}

/// `"5.10"` -> `(5, 10)`, to compare releases as numbers.
fn version_key(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

impl Probe {
    /// The features the kernel lacks.
    pub fn missing(&self) -> impl Iterator<Item = Feature> + '_ {
        self.results
            .iter()
            .filter(|(_, status)| *status == Status::Missing)
            .map(|&(feature, _)| feature)
    }

    /// Logs, at warn level, each missing feature the daemon can do without and what it does
    /// instead, and each probe that could not tell.
    pub fn log_fallbacks(&self) {
        for (feature, status) in &self.results {
            match (status, feature.fallback()) {
                (Status::Missing, Fallback::Degrade(instead)) => log::warn!(
                    "this kernel ({}) lacks {feature}; floodwall {instead}",
                    self.release
                ),
                (Status::Unknown(why), _) => log::warn!(
                    "cannot tell whether this kernel ({}) has {feature}: {why}",
                    self.release
                ),
                _ => {}
            }
        }
    }

    /// Ok if the kernel has every feature floodwall cannot do without.
    ///
    /// # Errors
    /// [`ProbeError`] naming each missing required feature.
    pub fn require(&self) -> Result<(), ProbeError> {
        let missing: Vec<Feature> = self
            .missing()
            .filter(|f| f.fallback() == Fallback::Required)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ProbeError {
                release: self.release.clone(),
                missing,
            })
        }
    }
}

/// Whether the kernel has the helpers of the SYN-cookie stage (Linux 6.0+): socket lookup
/// and release, listener-bound cookies, and the raw cookie check.
///
/// # Errors
/// Which helper is missing, and that syn-protect needs Linux 6.0 or later.
pub fn syn_cookie_helpers() -> anyhow::Result<()> {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    for (helper, name) in [
        (BpfHelper::BPF_FUNC_sk_lookup_tcp, "bpf_sk_lookup_tcp"),
        (BpfHelper::BPF_FUNC_sk_release, "bpf_sk_release"),
        (
            BpfHelper::BPF_FUNC_tcp_gen_syncookie,
            "bpf_tcp_gen_syncookie",
        ),
        (
            BpfHelper::BPF_FUNC_tcp_raw_check_syncookie_ipv4,
            "bpf_tcp_raw_check_syncookie_ipv4",
        ),
        (
            BpfHelper::BPF_FUNC_tcp_raw_check_syncookie_ipv6,
            "bpf_tcp_raw_check_syncookie_ipv6",
        ),
    ] {
        match is_helper_supported(ProgramType::Xdp, helper) {
            Ok(true) => {}
            Ok(false) => anyhow::bail!(
                "this kernel ({release}) lacks {name} for XDP: SYN cookies from XDP need \
                 Linux 6.0 or later"
            ),
            Err(e) => anyhow::bail!("cannot probe {name} for XDP: {e}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe_with(missing: &[Feature]) -> Probe {
        Probe {
            release: "5.4.0-42-generic".to_owned(),
            results: FEATURES
                .iter()
                .map(|&f| {
                    let status = if missing.contains(&f) {
                        Status::Missing
                    } else {
                        Status::Present
                    };
                    (f, status)
                })
                .collect(),
        }
    }

    #[test]
    fn a_kernel_with_everything_passes() {
        assert_eq!(probe_with(&[]).require(), Ok(()));
    }

    #[test]
    fn missing_features_are_named_with_their_release_and_use() {
        let err = probe_with(&[Feature::RingBuf, Feature::Jiffies64])
            .require()
            .unwrap_err();
        assert_eq!(err.missing, [Feature::RingBuf, Feature::Jiffies64]);
        assert_eq!(
            err.to_string(),
            "this kernel (5.4.0-42-generic) lacks BPF ring buffers (Linux 5.8+, for block \
             events and list-hit summaries to the daemon), the bpf_jiffies64 helper in XDP \
             (Linux 5.5+, for the program's clock (rates, blocks and their expiry)); floodwall \
             needs Linux 5.8 or later"
        );
    }

    #[test]
    fn an_unknown_status_does_not_stop_the_daemon() {
        let mut probe = probe_with(&[]);
        probe.results[4].1 = Status::Unknown("Operation not permitted".to_owned());
        assert_eq!(probe.require(), Ok(()));
    }

    #[test]
    fn releases_compare_as_numbers() {
        assert!(version_key("5.10") > version_key("5.8"));
        assert!(version_key("4.11") < version_key("5.5"));
    }
}
