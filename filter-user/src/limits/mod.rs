//! The limits as the operator states them: plain data, no kernel objects.
//!
//! - [`Limits`]: every limit, validated; [`LimitsChange`]: some of them, to apply.
//! - [`setting`]: the vocabulary: each [`Setting`] with its flag, config key, label, kind
//!   and bounds, from which errors, the config file, the reload diff and `limits show`
//!   derive.
//! - [`value`]: the values: [`Rate`], [`Burst`], [`ClassName`], [`ScopeName`],
//!   [`FilterMode`], and their text forms.
//! - [`validate`]: [`LimitError`] and the checks that raise it.
//! - [`flags`]: [`LimitArgs`], the limit flags of `run` and `limits set`.
//! - [`kernel`]: the translation into the [`filter_common::LimitsConfig`] the XDP program
//!   reads (GCRA costs and windows).

use std::time::Duration;

use filter_common::{CLASSES, PREFIX_SCOPES};
use serde::{Deserialize, Serialize};

pub mod flags;
pub mod kernel;
pub mod setting;
pub mod validate;
pub mod value;

pub use flags::LimitArgs;
pub use kernel::online_cpus;
pub use setting::{Bounds, Kind, Setting, Value};
pub use validate::{LimitError, LimitProblem};
pub use value::{
    Burst, ClassName, FilterMode, Rate, ScopeName, parse_burst, parse_class_rate, parse_count,
    parse_duration_ms, parse_rate, parse_scope_class_rate, parse_scope_len, parse_scope_rate,
};

pub(crate) const NS_PER_SEC: u128 = 1_000_000_000;

/// Bounds of what floodwall accepts; each one is named in the error for a value outside it.
pub const MAX_PPS: u64 = 1_000_000_000;
/// Below 8 bit/s one byte would cost more than a second; above 1 Tbit/s no NIC is faster.
pub const MIN_BPS: u64 = 8;
/// See [`MIN_BPS`].
pub const MAX_BPS: u64 = 1_000_000_000_000;
/// A byte burst smaller than one full-size Ethernet payload would block sources for sending a
/// single large packet.
pub const MIN_BURST_BYTES: u64 = 1_500;
/// The longest burst, in time at the sustained rate.
pub const MAX_BURST_TIME: Duration = Duration::from_hours(1);
/// Shortest and longest block.
pub const MIN_BLOCK: Duration = Duration::from_secs(1);
/// See [`MIN_BLOCK`].
pub const MAX_BLOCK: Duration = Duration::from_hours(30 * 24);

/// Default prefix lengths by scope.
pub const DEFAULT_PREFIX_LENS: [u32; PREFIX_SCOPES] = [24, 64, 48];

/// Default ceilings on packets of untracked sources, by class (see the admission module of
/// the XDP program): generous for a server's new clients, a hard cap on a spoofed flood.
pub const DEFAULT_CEILINGS: [u64; CLASSES] = [50_000, 100_000, 100_000, 10_000, 10_000, 10_000];

/// Default rate of new table entries (all CPUs together): a busy server's new clients fit;
/// a flood that fills the admission sketch cannot churn a million-entry table with it.
pub const DEFAULT_ADMIT_RATE: u64 = 5_000;

/// Default SYN-ACKs per second the cookie stage may send in total: they go to addresses that
/// may be spoofed, so this bounds the backscatter.
pub const DEFAULT_SYN_COOKIE_RATE: u64 = 1_000_000;

/// Default sources per second a valid cookie may admit to the table in total.
pub const DEFAULT_SYN_ADMIT_RATE: u64 = 50_000;

/// Default time without a SYN flood after which `--syn-protect auto` turns cookies off.
pub const DEFAULT_SYN_AUTO_QUIET: Duration = Duration::from_mins(1);
/// Shortest and longest such time.
pub const MIN_SYN_AUTO_QUIET: Duration = Duration::from_secs(1);
/// See [`MIN_SYN_AUTO_QUIET`].
pub const MAX_SYN_AUTO_QUIET: Duration = Duration::from_hours(24);

/// Default number of packets a new source must show before it gets a table entry.
pub const DEFAULT_ADMIT_PACKETS: u32 = 4;

/// Largest admission threshold: a sketch bucket counts up to 2^24 − 1 packets per epoch.
pub const MAX_ADMIT_PACKETS: u32 = (1 << 24) - 1;

/// The per-source limits, validated. The only way to build one is [`Limits::default`] plus
/// [`Limits::apply`], which validates the result as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Packets per second per source.
    pub pps: Rate,
    /// Packet burst.
    pub burst_packets: Burst,
    /// Bits per second per source.
    pub bps: Rate,
    /// Byte burst.
    pub burst_bytes: Burst,
    /// How long a source over a limit stays blocked, in milliseconds.
    pub block_for_ms: u64,
    /// Enforce or monitor.
    pub mode: FilterMode,
    /// Packets per second per source, by class (index: [`ClassName::index`]).
    pub class_pps: [Rate; CLASSES],
    /// Ceiling on untracked sources' packets per second in total, by class.
    pub ceiling_pps: [Rate; CLASSES],
    /// Packets a new source must show before it gets a table entry (1: at once).
    pub admit_packets: u32,
    /// New table entries per second, in total over the CPUs.
    pub admit_rate: Rate,
    /// SYN-ACKs per second of the cookie stage, in total over the CPUs.
    pub syn_cookie_rate: Rate,
    /// Sources per second a valid cookie admits to the table, in total over the CPUs.
    pub syn_admit_rate: Rate,
    /// How long untracked SYNs must stay under half the SYN ceiling before
    /// `--syn-protect auto` turns cookies off, in milliseconds.
    pub syn_auto_quiet_ms: u64,
    /// Classes that only monitor (by index).
    pub monitor_classes: [bool; CLASSES],
    /// Whether the denylist drops or only counts.
    pub deny_mode: FilterMode,
    /// Prefix length by scope ([`ScopeName::index`]).
    pub prefix_len: [u32; PREFIX_SCOPES],
    /// Packets per second per prefix, by scope.
    pub prefix_pps: [Rate; PREFIX_SCOPES],
    /// Bits per second per prefix, by scope.
    pub prefix_bps: [Rate; PREFIX_SCOPES],
    /// Packets per second per prefix and class, by scope.
    pub prefix_class_pps: [[Rate; CLASSES]; PREFIX_SCOPES],
}

impl Default for Limits {
    /// 10,000 packets per second with a one-second burst, no byte limit, blocks of 60 s,
    /// enforcing.
    fn default() -> Self {
        Self {
            pps: Rate::PerSecond(10_000),
            burst_packets: Burst::Auto,
            bps: Rate::Unlimited,
            burst_bytes: Burst::Auto,
            block_for_ms: 60_000,
            mode: FilterMode::Enforce,
            class_pps: [Rate::Unlimited; CLASSES],
            ceiling_pps: DEFAULT_CEILINGS.map(Rate::PerSecond),
            admit_packets: DEFAULT_ADMIT_PACKETS,
            admit_rate: Rate::PerSecond(DEFAULT_ADMIT_RATE),
            syn_cookie_rate: Rate::PerSecond(DEFAULT_SYN_COOKIE_RATE),
            syn_admit_rate: Rate::PerSecond(DEFAULT_SYN_ADMIT_RATE),
            syn_auto_quiet_ms: u64::try_from(DEFAULT_SYN_AUTO_QUIET.as_millis())
                .unwrap_or(u64::MAX),
            monitor_classes: [false; CLASSES],
            deny_mode: FilterMode::Enforce,
            prefix_len: DEFAULT_PREFIX_LENS,
            prefix_pps: [Rate::Unlimited; PREFIX_SCOPES],
            prefix_bps: [Rate::Unlimited; PREFIX_SCOPES],
            prefix_class_pps: [[Rate::Unlimited; CLASSES]; PREFIX_SCOPES],
        }
    }
}

/// A change to some of the limits; `None` keeps the current value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsChange {
    /// New packet rate.
    pub pps: Option<Rate>,
    /// New packet burst.
    pub burst_packets: Option<Burst>,
    /// New bit rate.
    pub bps: Option<Rate>,
    /// New byte burst.
    pub burst_bytes: Option<Burst>,
    /// New block time in milliseconds.
    pub block_for_ms: Option<u64>,
    /// New mode.
    pub mode: Option<FilterMode>,
    /// New per-source class rates.
    pub class_pps: [Option<Rate>; CLASSES],
    /// New class ceilings.
    pub ceiling_pps: [Option<Rate>; CLASSES],
    /// New admission threshold.
    pub admit_packets: Option<u32>,
    /// New admission rate.
    pub admit_rate: Option<Rate>,
    /// New SYN-ACK rate.
    pub syn_cookie_rate: Option<Rate>,
    /// New cookie admission rate.
    pub syn_admit_rate: Option<Rate>,
    /// New quiet time of `auto`, in milliseconds.
    pub syn_auto_quiet_ms: Option<u64>,
    /// Classes to switch to monitor (`Some(true)`) or enforce (`Some(false)`).
    pub monitor_classes: [Option<bool>; CLASSES],
    /// New denylist mode.
    pub deny_mode: Option<FilterMode>,
    /// New prefix lengths.
    pub prefix_len: [Option<u32>; PREFIX_SCOPES],
    /// New prefix packet rates.
    pub prefix_pps: [Option<Rate>; PREFIX_SCOPES],
    /// New prefix bit rates.
    pub prefix_bps: [Option<Rate>; PREFIX_SCOPES],
    /// New prefix class rates.
    pub prefix_class_pps: [[Option<Rate>; CLASSES]; PREFIX_SCOPES],
}

impl LimitsChange {
    /// Whether the change changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Limits {
    /// Applies `change` and validates the result as a whole: on error nothing changes.
    ///
    /// # Errors
    /// A [`LimitError`] naming the first value that is out of its bounds.
    pub fn apply(&self, change: &LimitsChange) -> Result<Self, LimitError> {
        let next = Self {
            pps: change.pps.unwrap_or(self.pps),
            burst_packets: change.burst_packets.unwrap_or(self.burst_packets),
            bps: change.bps.unwrap_or(self.bps),
            burst_bytes: change.burst_bytes.unwrap_or(self.burst_bytes),
            block_for_ms: change.block_for_ms.unwrap_or(self.block_for_ms),
            mode: change.mode.unwrap_or(self.mode),
            class_pps: merge(self.class_pps, change.class_pps),
            ceiling_pps: merge(self.ceiling_pps, change.ceiling_pps),
            admit_packets: change.admit_packets.unwrap_or(self.admit_packets),
            admit_rate: change.admit_rate.unwrap_or(self.admit_rate),
            syn_cookie_rate: change.syn_cookie_rate.unwrap_or(self.syn_cookie_rate),
            syn_admit_rate: change.syn_admit_rate.unwrap_or(self.syn_admit_rate),
            syn_auto_quiet_ms: change.syn_auto_quiet_ms.unwrap_or(self.syn_auto_quiet_ms),
            monitor_classes: merge(self.monitor_classes, change.monitor_classes),
            deny_mode: change.deny_mode.unwrap_or(self.deny_mode),
            prefix_len: merge(self.prefix_len, change.prefix_len),
            prefix_pps: merge(self.prefix_pps, change.prefix_pps),
            prefix_bps: merge(self.prefix_bps, change.prefix_bps),
            prefix_class_pps: [0, 1, 2]
                .map(|i| merge(self.prefix_class_pps[i], change.prefix_class_pps[i])),
        };
        next.validate()?;
        Ok(next)
    }

    /// The packet burst in packets, `auto` resolved.
    #[must_use]
    pub fn effective_burst_packets(&self) -> Option<u64> {
        let pps = self.pps.per_second()?;
        Some(match self.burst_packets {
            Burst::Auto => pps,
            Burst::Exactly(n) => n,
        })
    }

    /// The byte burst in bytes, `auto` resolved (one second of the bit rate, at least
    /// [`MIN_BURST_BYTES`]).
    #[must_use]
    pub fn effective_burst_bytes(&self) -> Option<u64> {
        let bps = self.bps.per_second()?;
        Some(match self.burst_bytes {
            Burst::Auto => (bps / 8).max(MIN_BURST_BYTES),
            Burst::Exactly(n) => n,
        })
    }

    /// The block time.
    #[must_use]
    pub fn block_for(&self) -> Duration {
        Duration::from_millis(self.block_for_ms)
    }

    /// How long `--syn-protect auto` waits without a SYN flood before it turns cookies off.
    #[must_use]
    pub fn syn_auto_quiet(&self) -> Duration {
        Duration::from_millis(self.syn_auto_quiet_ms)
    }
}

fn merge<T: Copy, const N: usize>(current: [T; N], change: [Option<T>; N]) -> [T; N] {
    let mut next = current;
    for (slot, new) in next.iter_mut().zip(change) {
        if let Some(new) = new {
            *slot = new;
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let limits = Limits::default();
        assert_eq!(limits.apply(&LimitsChange::default()), Ok(limits));
    }
}
